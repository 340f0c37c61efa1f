//! The pause after a failed `accept`, shared by every program's accept loops.
//!
//! `accept` fails when the process is out of file descriptors (EMFILE), the system is out of
//! them (ENFILE) or of memory, and keeps failing until a connection closes. A loop that retries
//! at once spins a core and writes a warning per turn; one that sleeps a fixed time and warns on
//! every failure still floods the log. [`AcceptBackoff`] waits 10 ms, doubling to 1 s, resets
//! after a success, and tells the loop to log only the first failure of a burst (and the
//! recovery, with the count). It is arithmetic only: the loop does the sleeping and the logging.

use std::time::Duration;

#[cfg(test)]
mod tests;

/// The wait after a failed `accept`: 10 ms doubling to 1 s, back to 10 ms after a success.
/// Only the first failure of a burst is to be logged (and the recovery, with the count).
#[derive(Debug, Clone)]
pub struct AcceptBackoff {
    next: Duration,
    failures: u64,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff::new()
    }
}

impl AcceptBackoff {
    /// The first wait of a burst of failures.
    pub const FIRST: Duration = Duration::from_millis(10);
    /// The longest wait.
    pub const MAX: Duration = Duration::from_secs(1);

    /// A backoff with no failure recorded.
    pub fn new() -> AcceptBackoff {
        AcceptBackoff { next: Self::FIRST, failures: 0 }
    }

    /// Records a failure; returns how long to wait and whether this one is to be logged.
    pub fn failed(&mut self) -> (Duration, bool) {
        let wait = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        self.failures += 1;
        (wait, self.failures == 1)
    }

    /// Records a success; returns how many failures the burst it ends had.
    pub fn succeeded(&mut self) -> u64 {
        self.next = Self::FIRST;
        std::mem::take(&mut self.failures)
    }
}
