use super::*;

#[test]
fn the_next_slot_is_after_the_head_now_and_the_last_attempt() {
    let now = BlockTimestamp::from_time_point(clock::now());
    let s = next_slot(BlockTimestamp(0), None);
    assert!(s > now && s.0 <= now.0 + 2, "{s:?} vs {now:?}");
    // A head in the future (clock behind the chain) wins.
    let ahead = BlockTimestamp(now.0 + 100);
    assert_eq!(next_slot(ahead, None), ahead.next());
    // A slot already attempted is never attempted again.
    let last = BlockTimestamp(now.0 + 10);
    assert_eq!(next_slot(BlockTimestamp(0), Some(last)), last.next());
}

#[test]
fn until_is_zero_for_a_slot_that_began() {
    assert_eq!(clock::until(BlockTimestamp(0)), Duration::ZERO);
    let later = BlockTimestamp::from_time_point(clock::now()).next().next();
    let d = clock::until(later);
    assert!(d > Duration::from_millis(400) && d <= Duration::from_millis(1000), "{d:?}");
}
