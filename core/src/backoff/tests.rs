use std::time::Duration;

use super::AcceptBackoff;

#[test]
fn doubles_to_one_second_logs_once_and_resets() {
    let mut b = AcceptBackoff::new();
    let waits: Vec<(u64, bool)> = (0..9)
        .map(|_| {
            let (d, log) = b.failed();
            (u64::try_from(d.as_millis()).unwrap(), log)
        })
        .collect();
    assert_eq!(
        waits,
        [
            (10, true),
            (20, false),
            (40, false),
            (80, false),
            (160, false),
            (320, false),
            (640, false),
            (1000, false),
            (1000, false)
        ]
    );
    assert_eq!(b.succeeded(), 9);
    assert_eq!(b.failed(), (Duration::from_millis(10), true), "a new burst is logged again");
    assert_eq!(b.succeeded(), 1);
    assert_eq!(b.succeeded(), 0);
}
