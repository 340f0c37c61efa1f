//! The apply thread's own CPU time, shared by the node's benches: what Leap calls "apply-thread
//! CPU per transaction", independent of the other threads and processes sharing the cores. It
//! reads only this process's /proc entries.

use std::time::Duration;

/// CPU time the apply thread (named `rempart-apply`) has used, from the kernel's schedstat
/// (nanoseconds on CPU): what the apply thread spends, whatever else runs on the machine.
pub(crate) fn apply_thread_cpu() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Duration::ZERO };
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() == "rempart-apply" {
            let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            let ns = stat.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0);
            return Duration::from_nanos(ns);
        }
    }
    Duration::ZERO
}
