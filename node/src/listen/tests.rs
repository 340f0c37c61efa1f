use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rempart_core::backoff::AcceptBackoff;

use super::accept_with;

fn emfile() -> std::io::Error {
    std::io::Error::from_raw_os_error(24)
}

#[tokio::test(start_paused = true)]
async fn a_failing_accept_backs_off_instead_of_spinning() {
    let calls = Arc::new(AtomicU64::new(0));
    let counted = calls.clone();
    let mut backoff = AcceptBackoff::new();
    let accept = move || {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Err::<(), _>(emfile()) }
    };
    // Ten seconds of (paused, auto-advancing) time: waits of 10, 20, … 640 ms, then 1 s each.
    let ended =
        tokio::time::timeout(Duration::from_secs(10), accept_with(accept, &mut backoff, "t")).await;
    assert!(ended.is_err(), "it keeps trying");
    let n = calls.load(Ordering::SeqCst);
    assert!((15..=17).contains(&n), "{n} accept calls in 10 s");
}

#[tokio::test(start_paused = true)]
async fn the_connection_after_a_burst_of_failures_is_returned_and_the_pause_resets() {
    let calls = Arc::new(AtomicU64::new(0));
    let counted = calls.clone();
    let accept = move || {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        async move { if n < 3 { Err(emfile()) } else { Ok(n) } }
    };
    let mut backoff = AcceptBackoff::new();
    #[expect(clippy::disallowed_methods, reason = "the test's paused clock, not block execution")]
    let started = tokio::time::Instant::now();
    assert_eq!(accept_with(accept, &mut backoff, "t").await, 3);
    // 10 + 20 + 40 ms of pauses, then the fourth call succeeded.
    assert_eq!(started.elapsed(), Duration::from_millis(70));
    assert_eq!(backoff.failed(), (AcceptBackoff::FIRST, true), "the next burst starts over");
}
