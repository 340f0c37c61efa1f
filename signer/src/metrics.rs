//! Counters and histograms of the signer, rendered as Prometheus text: signatures, replays,
//! refusals by reason, HSM latency, guard fsync latency, request latency, canonical retries.
//!
//! Rendering is plain text built here (a few dozen lines do not earn a dependency). The admin
//! listener serves `GET /metrics` on a loopback address only and answers nothing else; the file
//! form is rewritten atomically. Metrics never carry key material or request contents beyond
//! the producer name.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[cfg(test)]
mod tests;

/// Bucket upper bounds in seconds.
const BUCKETS: [f64; 13] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{b}\"}} {}",
                self.counts[i].load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Every metric of the signer.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Signatures freshly made and released.
    pub signatures: AtomicU64,
    /// Repeated requests answered from the guard state.
    pub replays: AtomicU64,
    /// Bare digests signed for the keosd-compatible endpoint (`[keosd_compat]`).
    pub digest_signatures: AtomicU64,
    /// K1 signatures the HSM had to make again because fc would call them non-canonical.
    pub canonical_retries: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Frames that could not be decoded.
    pub bad_frames: AtomicU64,
    /// HSM (or soft key) signing call latency.
    pub hsm_latency: Histogram,
    /// Guard commit (write, fsync, rename, fsync dir) latency.
    pub guard_latency: Histogram,
    /// Audit append (write, fsync) latency.
    pub audit_latency: Histogram,
    /// Whole SignBlock request latency inside the signer.
    pub request_latency: Histogram,
    /// Claims in the guard shared with standby signers (`[shared_guard]`), etcd round trip
    /// included.
    pub shared_guard_latency: Histogram,
    /// WireGuard peer health (handshake age, transfer counters), when a tunnel is configured.
    pub wireguard: std::sync::Arc<crate::wireguard::health::TunnelHealth>,
    /// The audit log's live size and seals, once it is open.
    pub audit: std::sync::OnceLock<std::sync::Arc<crate::audit::AuditStats>>,
    refusals: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// Counts one refusal with a stable reason label.
    pub fn refused(&self, reason: &'static str) {
        let mut m = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(reason).or_default() += 1;
    }

    /// Refusals counted for `reason`.
    pub fn refusals(&self, reason: &str) -> u64 {
        let m = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        m.get(reason).copied().unwrap_or(0)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        };
        counter(
            &mut out,
            "rempart_signer_signatures_total",
            "Signatures made and released.",
            &self.signatures,
        );
        counter(
            &mut out,
            "rempart_signer_replays_total",
            "Repeated requests answered from the guard state.",
            &self.replays,
        );
        counter(
            &mut out,
            "rempart_signer_digest_signatures_total",
            "Bare digests signed for the keosd-compatible endpoint ([keosd_compat]), which the double-sign guard cannot check.",
            &self.digest_signatures,
        );
        counter(
            &mut out,
            "rempart_signer_canonical_retries_total",
            "K1 signatures made again because they were not canonical.",
            &self.canonical_retries,
        );
        counter(
            &mut out,
            "rempart_signer_connections_total",
            "Connections accepted.",
            &self.connections,
        );
        counter(
            &mut out,
            "rempart_signer_bad_frames_total",
            "Frames that could not be decoded.",
            &self.bad_frames,
        );
        let _ = writeln!(out, "# HELP rempart_signer_refusals_total Requests refused, by reason.");
        let _ = writeln!(out, "# TYPE rempart_signer_refusals_total counter");
        {
            let m = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
            for (reason, n) in m.iter() {
                let _ = writeln!(out, "rempart_signer_refusals_total{{reason=\"{reason}\"}} {n}");
            }
        }
        self.hsm_latency.render(
            &mut out,
            "rempart_signer_hsm_seconds",
            "Latency of one HSM signing call.",
        );
        self.guard_latency.render(
            &mut out,
            "rempart_signer_guard_commit_seconds",
            "Latency of a durable guard state write.",
        );
        self.audit_latency.render(
            &mut out,
            "rempart_signer_audit_append_seconds",
            "Latency of an audit append.",
        );
        self.request_latency.render(
            &mut out,
            "rempart_signer_request_seconds",
            "Latency of a SignBlock request inside the signer.",
        );
        if self.shared_guard_latency.count.load(Ordering::Relaxed) > 0 {
            self.shared_guard_latency.render(
                &mut out,
                "rempart_signer_shared_guard_seconds",
                "Claims in the guard shared with standby signers ([shared_guard]), etcd included.",
            );
        }
        if let Some(a) = self.audit.get() {
            let _ = writeln!(
                out,
                "# HELP rempart_signer_audit_log_bytes Bytes in the live audit log (sealed at \
                 [state] audit_segment_mib).\n\
                 # TYPE rempart_signer_audit_log_bytes gauge\n\
                 rempart_signer_audit_log_bytes {}\n\
                 # HELP rempart_signer_audit_seals_total Audit logs sealed since the start.\n\
                 # TYPE rempart_signer_audit_seals_total counter\n\
                 rempart_signer_audit_seals_total {}\n\
                 # HELP rempart_signer_audit_seal_failures_total Seals that failed (the log stays \
                 in use and grows).\n\
                 # TYPE rempart_signer_audit_seal_failures_total counter\n\
                 rempart_signer_audit_seal_failures_total {}",
                a.live_bytes(),
                a.seals(),
                a.seal_failures()
            );
        }
        let _ = writeln!(
            out,
            "# HELP rempart_signer_log_lines_dropped_total Log lines dropped because the \
             reader of stderr fell behind.\n\
             # TYPE rempart_signer_log_lines_dropped_total counter\n\
             rempart_signer_log_lines_dropped_total {}",
            rempart_core::log::dropped_lines()
        );
        self.wireguard.render(&mut out);
        out
    }

    /// Rewrites `path` atomically with the current exposition.
    pub fn write_file(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.render())?;
        std::fs::rename(&tmp, path)
    }
}
