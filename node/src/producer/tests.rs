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

#[test]
fn a_block_is_given_up_only_when_every_signer_that_may_hold_it_refused_it() {
    let (b, c) = (Checksum256([1; 32]), Checksum256([2; 32]));
    let mut u = Unanswered::default();
    // One signer: its refusal is final, its silence is not.
    assert_eq!(u.record(b, 0, Asked::Refused), None);
    assert_eq!(u.record(b, 0, Asked::NoAnswer), None);
    assert_eq!(u.record(b, 0, Asked::Refused), None, "the silent one itself refused");
    // Signer 0 silent, then signer 1 refuses: 0 may hold it, so the block is not given up.
    assert_eq!(u.record(b, 0, Asked::NoAnswer), None);
    assert_eq!(u.record(b, 1, Asked::Refused), Some(0));
    assert_eq!(u.record(b, 1, Asked::NoAnswer), None);
    assert_eq!(u.record(b, 0, Asked::Refused), Some(1), "1 was silent since");
    assert_eq!(u.record(b, 1, Asked::Refused), None);
    // A signature settles it; another block starts over.
    assert_eq!(u.record(b, 2, Asked::NoAnswer), None);
    assert_eq!(u.record(b, 0, Asked::Signed), None);
    assert_eq!(u.record(b, 1, Asked::Refused), None);
    assert_eq!(u.record(b, 2, Asked::NoAnswer), None);
    assert_eq!(u.record(c, 1, Asked::Refused), None, "block c was never unanswered");
    assert!(u.tracks(&c) && !u.tracks(&b));
    // A block sent again after a restart: any signer may hold it.
    u.start(b, 0..3);
    assert_eq!(u.record(b, 0, Asked::Refused), Some(1));
    assert_eq!(u.record(b, 1, Asked::Refused), Some(2));
    assert_eq!(u.record(b, 2, Asked::Refused), None);
}

#[test]
fn only_silence_and_signers_that_cannot_sign_move_the_producer_on() {
    let refused = |code| ClientError::Refused { code, message: String::new() };
    assert!(fails_over(&ClientError::Timeout { endpoint: "x".into(), last: None }));
    assert!(fails_over(&ClientError::BadAnswer("x".into())));
    for code in [ErrorCode::Backend, ErrorCode::Internal, ErrorCode::Busy, ErrorCode::UnknownKey] {
        assert!(fails_over(&refused(code)), "{code:?}");
    }
    for code in [ErrorCode::DoubleSign, ErrorCode::Paused] {
        assert!(!fails_over(&refused(code)), "{code:?}");
    }
}
