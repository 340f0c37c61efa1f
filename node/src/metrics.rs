//! The node's counters and gauges, written as Prometheus text to a file after every block
//! (a node exporter's textfile collector, or any scraper, reads it). With `[wireguard]` the
//! tunnel's per-peer health (last handshake and its age, bytes each way, stale flag) follows,
//! and the roles also rewrite the file every statistics interval so a stale tunnel shows while
//! no block comes.
//!
//! Transactions per second is a gauge over the blocks counted in the last [`TPS_WINDOW`] of
//! monotonic time (not the block timestamps: an api node catching up shows how fast it
//! re-applies), so a scraper needs no rate() and an idle chain reads 0 once the window passes.
//!
//! The file is replaced atomically (temporary file, fsync, rename), so a reader never sees half
//! of it. Counting must never block or fail a block: a metrics write error is logged and the
//! chain goes on.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::producer::clock;

use rempart_signer::wireguard::health::TunnelHealth;

/// What the node counts.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Head block number.
    pub head: AtomicU64,
    /// Last irreversible block number.
    pub lib: AtomicU64,
    /// Blocks this node produced (producer) or applied (api).
    pub blocks: AtomicU64,
    /// Slots this producer should have filled and did not.
    pub missed_slots: AtomicU64,
    /// Times the producer moved to the next of its signers (the one in use did not answer or
    /// could not sign).
    pub signer_failovers: AtomicU64,
    /// Which signer the producer asks: 0 for `producer.signer`, then the standby signers in
    /// their order.
    pub signer_in_use: AtomicU64,
    /// Transactions in the blocks produced or applied.
    pub transactions: AtomicU64,
    /// Transactions in the last block.
    pub last_block_transactions: AtomicU64,
    /// Time spent on the last block (seal and sign, or verify and re-apply), µs.
    pub last_block_us: AtomicU64,
    /// Total time spent on blocks, µs (rate() over it gives the apply load).
    pub block_us_total: AtomicU64,
    /// Each signer's readiness as last probed (the producer role; set once at start).
    pub signers: OnceLock<Vec<SignerProbe>>,
    /// The private network's health, when `[wireguard]` is configured (set once at start).
    pub tunnel: OnceLock<Arc<TunnelHealth>>,
    /// When each block of the last [`TPS_WINDOW`] was counted, and its transactions.
    recent: Mutex<VecDeque<(Instant, u64)>>,
}

/// What the producer last learnt of one of its signers (see `crate::producer::probe`).
#[derive(Debug)]
pub struct SignerProbe {
    /// Its address, as configured.
    pub endpoint: String,
    /// Answered, not paused, and holding the producer's signing key: `1`; else `0`.
    pub ready: AtomicU64,
}

/// How far back the transactions-per-second gauge looks.
pub const TPS_WINDOW: Duration = Duration::from_secs(10);

impl Metrics {
    /// Records one block of `transactions` that took `us` microseconds.
    pub fn block(&self, head: u32, lib: u32, transactions: usize, us: u64) {
        self.block_at(clock::instant(), head, lib, transactions, us);
    }

    /// [`Metrics::block`] counted at `now`.
    fn block_at(&self, now: Instant, head: u32, lib: u32, transactions: usize, us: u64) {
        self.head.store(u64::from(head), Ordering::Relaxed);
        self.lib.store(u64::from(lib), Ordering::Relaxed);
        self.blocks.fetch_add(1, Ordering::Relaxed);
        let n = transactions as u64;
        self.transactions.fetch_add(n, Ordering::Relaxed);
        self.last_block_transactions.store(n, Ordering::Relaxed);
        self.last_block_us.store(us, Ordering::Relaxed);
        self.block_us_total.fetch_add(us, Ordering::Relaxed);
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.push_back((now, n));
        prune(&mut recent, now);
    }

    /// Transactions per second over the blocks counted in the [`TPS_WINDOW`] before `now`.
    fn transactions_per_second_at(&self, now: Instant) -> f64 {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        prune(&mut recent, now);
        let sum: u64 = recent.iter().map(|(_, n)| n).sum();
        sum as f64 / TPS_WINDOW.as_secs_f64()
    }

    /// The Prometheus text exposition of every value, labelled with the node's `role`.
    pub fn render(&self, role: &str) -> String {
        self.render_at(clock::instant(), role)
    }

    /// [`Metrics::render`] with the transactions-per-second window ending at `now`.
    fn render_at(&self, now: Instant, role: &str) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let rows: [(&str, &str, &str, u64); 11] = [
            ("rempart_node_head_block_num", "gauge", "Head block number.", g(&self.head)),
            (
                "rempart_node_lib_block_num",
                "gauge",
                "Last irreversible block number.",
                g(&self.lib),
            ),
            (
                "rempart_node_blocks_total",
                "counter",
                "Blocks produced or applied.",
                g(&self.blocks),
            ),
            (
                "rempart_node_missed_slots_total",
                "counter",
                "Slots this producer did not fill (signer late, refusing or unreachable through \
                 the tunnel, node behind).",
                g(&self.missed_slots),
            ),
            (
                "rempart_node_signer_failovers_total",
                "counter",
                "Times the producer moved on to its next signer because the one in use did not \
                 answer or could not sign.",
                g(&self.signer_failovers),
            ),
            (
                "rempart_node_signer_in_use",
                "gauge",
                "The signer the producer asks: 0 is producer.signer, 1 and up the \
                 standby_signers in their order.",
                g(&self.signer_in_use),
            ),
            (
                "rempart_node_transactions_total",
                "counter",
                "Transactions in blocks produced or applied (rate() gives tx/s).",
                g(&self.transactions),
            ),
            (
                "rempart_node_last_block_transactions",
                "gauge",
                "Transactions in the last block.",
                g(&self.last_block_transactions),
            ),
            (
                "rempart_node_last_block_microseconds",
                "gauge",
                "Time spent on the last block: seal and sign, or verify and re-apply.",
                g(&self.last_block_us),
            ),
            (
                "rempart_node_block_microseconds_total",
                "counter",
                "Total time spent on blocks.",
                g(&self.block_us_total),
            ),
            (
                "rempart_node_log_lines_dropped_total",
                "counter",
                "Log lines dropped because the log's reader fell behind (blocks never wait for \
                 the log).",
                rempart_core::log::dropped_lines(),
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, v) in rows {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{role=\"{role}\"}} {v}\n"
            ));
        }
        let name = "rempart_node_transactions_per_second";
        out.push_str(&format!(
            "# HELP {name} Transactions in the blocks produced or applied in the last {} s, \
             per second.\n# TYPE {name} gauge\n{name}{{role=\"{role}\"}} {}\n",
            TPS_WINDOW.as_secs(),
            self.transactions_per_second_at(now)
        ));
        if let Some(signers) = self.signers.get() {
            let name = "rempart_node_signer_ready";
            out.push_str(&format!(
                "# HELP {name} Whether the signer answered the last probe, is not paused and \
                 holds the producer's signing key (signer 0 is producer.signer, then the \
                 standby_signers).\n# TYPE {name} gauge\n"
            ));
            for (i, s) in signers.iter().enumerate() {
                let endpoint = s.endpoint.replace('\\', "\\\\").replace('"', "\\\"");
                out.push_str(&format!(
                    "{name}{{role=\"{role}\",signer=\"{i}\",endpoint=\"{endpoint}\"}} {}\n",
                    g(&s.ready)
                ));
            }
        }
        if let Some(t) = self.tunnel.get() {
            t.render(&mut out);
        }
        out
    }

    /// Replaces `path` with the current values (atomically); errors are logged, not returned.
    pub fn write_file(&self, path: &Path, role: &str) {
        if let Err(e) = write_atomic(path, self.render(role).as_bytes()) {
            tracing::warn!(path = %path.display(), error = %e, "metrics file not written");
        }
    }
}

/// Drops the blocks counted before the window that ends at `now`.
fn prune(recent: &mut VecDeque<(Instant, u64)>, now: Instant) {
    while recent.front().is_some_and(|(at, _)| now.saturating_duration_since(*at) > TPS_WINDOW) {
        recent.pop_front();
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = PathBuf::from(path);
    tmp.as_mut_os_string().push(".tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests;
