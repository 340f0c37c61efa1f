//! Counters and histograms of the gateway, rendered in the Prometheus text format for the
//! admin listener.
//!
//! Labels come only from the policy (route class, pool, node) and from fixed sets (status,
//! fault, reason), never from request data, so a client cannot grow the label space.
//!
//! What every request counts is kept per worker thread and merged when the page is rendered:
//! one lock shared by the workers would move its cache lines between their cores on every
//! request, and a worker descheduled while holding it would stall the others. Counts of
//! refusals and reloads, rarer, share one lock.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::Fault;
use crate::upstream::{self, Padded};

#[cfg(test)]
mod tests;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default, Debug, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    total: u64,
}

/// One node's health, for rendering.
#[derive(Debug, Clone)]
pub struct NodeGauge {
    /// Pool name.
    pub pool: String,
    /// Node address.
    pub node: String,
    /// Whether the node takes requests now.
    pub up: bool,
    /// Requests in flight to it.
    pub in_flight: usize,
    /// Its last reported head block number.
    pub head_block: u64,
}

/// Values read from the live state when metrics are rendered.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Open downstream connections.
    pub connections_open: u64,
    /// Clients tracked by the rate limiters.
    pub tracked_clients: u64,
    /// Checks that fell into the shared overflow bucket.
    pub limiter_overflowed: u64,
    /// Clients banned now.
    pub banned: u64,
    /// Bytes of HTTP/2 answers waiting on clients that keep their window closed.
    pub send_waiting_bytes: u64,
    /// Upstream nodes.
    pub nodes: Vec<NodeGauge>,
    /// Certificates in service: first server name, seconds until the end of validity
    /// (negative once expired; `None` when the certificate shows no end).
    pub certificates: Vec<(String, Option<f64>)>,
}

/// Requests answered in one route class.
#[derive(Default, Debug, Clone)]
struct ClassStats {
    /// By status and fault.
    answered: BTreeMap<(u16, &'static str), u64>,
    latency: Histogram,
}

impl ClassStats {
    fn add(&mut self, other: &ClassStats) {
        for (k, v) in &other.answered {
            *self.answered.entry(*k).or_default() += v;
        }
        let (h, o) = (&mut self.latency, &other.latency);
        for (c, oc) in h.counts.iter_mut().zip(o.counts) {
            *c += oc;
        }
        h.sum += o.sum;
        h.total += o.total;
    }
}

/// Answered requests by route class, of one worker: looked up by `&str`, so counting a
/// request allocates nothing once its class has been seen.
type Answered = Padded<Mutex<BTreeMap<String, ClassStats>>>;

/// The gateway's metrics.
#[derive(Debug)]
pub struct Metrics {
    /// Per worker thread ([`upstream::worker`]), merged when rendered.
    requests: Box<[Answered]>,
    limited: Mutex<BTreeMap<(String, &'static str), u64>>,
    filtered: Mutex<BTreeMap<(String, &'static str), u64>>,
    clamped: Mutex<BTreeMap<String, u64>>,
    refused: Mutex<BTreeMap<&'static str, u64>>,
    slow_readers: Mutex<BTreeMap<&'static str, u64>>,
    reloads: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    retries: AtomicU64,
    ejections: AtomicU64,
    tls_failures: AtomicU64,
    bans: AtomicU64,
    acme_issued: AtomicU64,
    acme_failed: AtomicU64,
    fleet_ok: AtomicU64,
    fleet_failed: AtomicU64,
    fleet_clients: AtomicU64,
    fleet_bans_sent: AtomicU64,
    fleet_bans_received: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(1)
    }
}

fn bump<K: Ord>(m: &Mutex<BTreeMap<K, u64>>, k: K) {
    if let Ok(mut m) = m.lock() {
        *m.entry(k).or_default() += 1;
    }
}

impl Metrics {
    /// Metrics of a gateway with `workers` worker threads.
    pub fn new(workers: usize) -> Self {
        Metrics {
            requests: (0..workers.max(1)).map(|_| Padded::default()).collect(),
            limited: Mutex::default(),
            filtered: Mutex::default(),
            clamped: Mutex::default(),
            refused: Mutex::default(),
            slow_readers: Mutex::default(),
            reloads: Mutex::default(),
            retries: AtomicU64::default(),
            ejections: AtomicU64::default(),
            tls_failures: AtomicU64::default(),
            bans: AtomicU64::default(),
            acme_issued: AtomicU64::default(),
            acme_failed: AtomicU64::default(),
            fleet_ok: AtomicU64::default(),
            fleet_failed: AtomicU64::default(),
            fleet_clients: AtomicU64::default(),
            fleet_bans_sent: AtomicU64::default(),
            fleet_bans_received: AtomicU64::default(),
        }
    }

    /// Counts a finished request (in the current worker's share).
    pub fn request(&self, class: &str, status: u16, fault: Fault, latency: Duration) {
        let shard = &self.requests[upstream::worker() % self.requests.len()].0;
        if let Ok(mut m) = shard.lock() {
            if !m.contains_key(class) {
                m.insert(class.to_owned(), ClassStats::default());
            }
            let Some(stats) = m.get_mut(class) else { return };
            *stats.answered.entry((status, fault.label())).or_default() += 1;
            let h = &mut stats.latency;
            let s = latency.as_secs_f64();
            for (i, b) in BUCKETS.iter().enumerate() {
                if s <= *b {
                    h.counts[i] += 1;
                }
            }
            h.sum += s;
            h.total += 1;
        }
    }

    /// Counts a rate-limited request.
    pub fn limited(&self, class: &str, scope: &'static str) {
        bump(&self.limited, (class.to_owned(), scope));
    }

    /// Counts a request refused by the API filter, by reason code.
    pub fn filtered(&self, class: &str, reason: &'static str) {
        bump(&self.filtered, (class.to_owned(), reason));
    }

    /// Counts a query whose limit the API filter lowered.
    pub fn clamped(&self, class: &str) {
        bump(&self.clamped, class.to_owned());
    }

    /// Counts a connection closed at once (`total_cap`, `client_cap`, `tls_timeout`, …).
    pub fn refused(&self, reason: &'static str) {
        bump(&self.refused, reason);
    }

    /// Counts an answer (or a connection) given up because its client did not take it.
    pub fn slow_reader(&self, reason: &'static str) {
        bump(&self.slow_readers, reason);
    }

    /// Counts a reload attempt of `what` (`policy`, `certificates`) with `result`.
    pub fn reload(&self, what: &'static str, result: &'static str) {
        bump(&self.reloads, (what, result));
    }

    /// Counts a retry on another node.
    pub fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a passive ejection.
    pub fn ejection(&self) {
        self.ejections.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an ACME order that ended with `result`: `issued` or `failed`.
    pub fn acme(&self, result: &str) {
        let c = if result == "issued" { &self.acme_issued } else { &self.acme_failed };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an exchange of shared limits with Redis, and the clients it carried.
    pub fn fleet_exchange(&self, ok: bool, clients: u64) {
        let c = if ok { &self.fleet_ok } else { &self.fleet_failed };
        c.fetch_add(1, Ordering::Relaxed);
        self.fleet_clients.fetch_add(clients, Ordering::Relaxed);
    }

    /// Counts bans recorded in the fleet, and bans taken from it.
    pub fn fleet_bans(&self, sent: u64, received: u64) {
        self.fleet_bans_sent.fetch_add(sent, Ordering::Relaxed);
        self.fleet_bans_received.fetch_add(received, Ordering::Relaxed);
    }

    /// Counts a new ban.
    pub fn ban(&self) {
        self.bans.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed TLS handshake.
    pub fn tls_failure(&self) {
        self.tls_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Reload count of `what` with `result`.
    pub fn reloads(&self, what: &'static str, result: &'static str) -> u64 {
        self.reloads.lock().map(|m| m.get(&(what, result)).copied().unwrap_or(0)).unwrap_or(0)
    }

    /// The Prometheus text exposition.
    pub fn render(&self, g: &Gauges) -> String {
        let mut o = String::new();
        let _ = self.render_into(&mut o, g);
        o
    }

    /// Every worker's answered requests, merged.
    fn answered(&self) -> BTreeMap<String, ClassStats> {
        let mut all: BTreeMap<String, ClassStats> = BTreeMap::new();
        for shard in &self.requests {
            let Ok(m) = shard.0.lock() else { continue };
            for (class, stats) in m.iter() {
                match all.get_mut(class.as_str()) {
                    Some(sum) => sum.add(stats),
                    None => {
                        all.insert(class.clone(), stats.clone());
                    }
                }
            }
        }
        all
    }

    fn render_into(&self, o: &mut String, g: &Gauges) -> std::fmt::Result {
        let answered = self.answered();
        writeln!(
            o,
            "# HELP rempart_gateway_requests_total Requests answered, by route class, status and fault."
        )?;
        writeln!(o, "# TYPE rempart_gateway_requests_total counter")?;
        for (class, (status, fault), v) in
            answered.iter().flat_map(|(c, s)| s.answered.iter().map(move |(k, v)| (c, k, v)))
        {
            writeln!(
                o,
                "rempart_gateway_requests_total{{class=\"{class}\",status=\"{status}\",fault=\"{fault}\"}} {v}"
            )?;
        }
        writeln!(o, "# HELP rempart_gateway_limited_total Requests refused by a rate limit.")?;
        writeln!(o, "# TYPE rempart_gateway_limited_total counter")?;
        if let Ok(m) = self.limited.lock() {
            for ((class, scope), v) in m.iter() {
                writeln!(
                    o,
                    "rempart_gateway_limited_total{{class=\"{class}\",scope=\"{scope}\"}} {v}"
                )?;
            }
        }
        writeln!(
            o,
            "# HELP rempart_gateway_filtered_total Requests refused by the API filter, by reason."
        )?;
        writeln!(o, "# TYPE rempart_gateway_filtered_total counter")?;
        if let Ok(m) = self.filtered.lock() {
            for ((class, reason), v) in m.iter() {
                writeln!(
                    o,
                    "rempart_gateway_filtered_total{{class=\"{class}\",reason=\"{reason}\"}} {v}"
                )?;
            }
        }
        writeln!(
            o,
            "# HELP rempart_gateway_filter_clamped_total Queries whose limit the API filter lowered."
        )?;
        writeln!(o, "# TYPE rempart_gateway_filter_clamped_total counter")?;
        if let Ok(m) = self.clamped.lock() {
            for (class, v) in m.iter() {
                writeln!(o, "rempart_gateway_filter_clamped_total{{class=\"{class}\"}} {v}")?;
            }
        }
        writeln!(
            o,
            "# HELP rempart_gateway_request_duration_seconds Time from request head to response head."
        )?;
        writeln!(o, "# TYPE rempart_gateway_request_duration_seconds histogram")?;
        for (class, h) in answered.iter().map(|(c, s)| (c, &s.latency)) {
            for (i, b) in BUCKETS.iter().enumerate() {
                writeln!(
                    o,
                    "rempart_gateway_request_duration_seconds_bucket{{class=\"{class}\",le=\"{b}\"}} {}",
                    h.counts[i]
                )?;
            }
            writeln!(
                o,
                "rempart_gateway_request_duration_seconds_bucket{{class=\"{class}\",le=\"+Inf\"}} {}",
                h.total
            )?;
            writeln!(
                o,
                "rempart_gateway_request_duration_seconds_sum{{class=\"{class}\"}} {}",
                h.sum
            )?;
            writeln!(
                o,
                "rempart_gateway_request_duration_seconds_count{{class=\"{class}\"}} {}",
                h.total
            )?;
        }
        writeln!(o, "# HELP rempart_gateway_connections_open Downstream connections open.")?;
        writeln!(o, "# TYPE rempart_gateway_connections_open gauge")?;
        writeln!(o, "rempart_gateway_connections_open {}", g.connections_open)?;
        writeln!(
            o,
            "# HELP rempart_gateway_connections_refused_total Connections closed at once, by reason."
        )?;
        writeln!(o, "# TYPE rempart_gateway_connections_refused_total counter")?;
        if let Ok(m) = self.refused.lock() {
            for (reason, v) in m.iter() {
                writeln!(
                    o,
                    "rempart_gateway_connections_refused_total{{reason=\"{reason}\"}} {v}"
                )?;
            }
        }
        writeln!(
            o,
            "# HELP rempart_gateway_slow_readers_total Answers reset, or connections closed, because the client did not take them (slow-read defence), by reason."
        )?;
        writeln!(o, "# TYPE rempart_gateway_slow_readers_total counter")?;
        if let Ok(m) = self.slow_readers.lock() {
            for (reason, v) in m.iter() {
                writeln!(o, "rempart_gateway_slow_readers_total{{reason=\"{reason}\"}} {v}")?;
            }
        }
        writeln!(
            o,
            "# HELP rempart_gateway_send_waiting_bytes Bytes of HTTP/2 answers held for clients whose flow-control window is closed."
        )?;
        writeln!(o, "# TYPE rempart_gateway_send_waiting_bytes gauge")?;
        writeln!(o, "rempart_gateway_send_waiting_bytes {}", g.send_waiting_bytes)?;
        writeln!(
            o,
            "# HELP rempart_gateway_certificate_expiry_seconds Seconds until each certificate in service expires, by its first server name."
        )?;
        writeln!(o, "# TYPE rempart_gateway_certificate_expiry_seconds gauge")?;
        for (name, left) in &g.certificates {
            if let Some(left) = left {
                let name = name.replace('\\', "\\\\").replace('"', "\\\"");
                writeln!(
                    o,
                    "rempart_gateway_certificate_expiry_seconds{{name=\"{name}\"}} {left}"
                )?;
            }
        }
        writeln!(
            o,
            "# HELP rempart_gateway_tls_handshake_failures_total TLS handshakes that failed or timed out."
        )?;
        writeln!(o, "# TYPE rempart_gateway_tls_handshake_failures_total counter")?;
        writeln!(
            o,
            "rempart_gateway_tls_handshake_failures_total {}",
            self.tls_failures.load(Ordering::Relaxed)
        )?;
        writeln!(
            o,
            "# HELP rempart_gateway_limiter_tracked_clients Client keys held by the rate limiters."
        )?;
        writeln!(o, "# TYPE rempart_gateway_limiter_tracked_clients gauge")?;
        writeln!(o, "rempart_gateway_limiter_tracked_clients {}", g.tracked_clients)?;
        writeln!(
            o,
            "# HELP rempart_gateway_limiter_overflow_total Checks of clients beyond the tracking cap (shared bucket)."
        )?;
        writeln!(o, "# TYPE rempart_gateway_limiter_overflow_total counter")?;
        writeln!(o, "rempart_gateway_limiter_overflow_total {}", g.limiter_overflowed)?;
        writeln!(o, "# HELP rempart_gateway_bans_total Clients banned after repeated refusals.")?;
        writeln!(o, "# TYPE rempart_gateway_bans_total counter")?;
        writeln!(o, "rempart_gateway_bans_total {}", self.bans.load(Ordering::Relaxed))?;
        writeln!(
            o,
            "# HELP rempart_gateway_acme_orders_total ACME certificate orders, by how they ended."
        )?;
        writeln!(o, "# TYPE rempart_gateway_acme_orders_total counter")?;
        for (result, c) in [("issued", &self.acme_issued), ("failed", &self.acme_failed)] {
            writeln!(
                o,
                "rempart_gateway_acme_orders_total{{result=\"{result}\"}} {}",
                c.load(Ordering::Relaxed)
            )?;
        }
        writeln!(
            o,
            "# HELP rempart_gateway_shared_limit_exchanges_total Exchanges of per-client counts with the Redis shared by the gateways ([limits.shared]), by outcome."
        )?;
        writeln!(o, "# TYPE rempart_gateway_shared_limit_exchanges_total counter")?;
        for (result, c) in [("ok", &self.fleet_ok), ("failed", &self.fleet_failed)] {
            writeln!(
                o,
                "rempart_gateway_shared_limit_exchanges_total{{result=\"{result}\"}} {}",
                c.load(Ordering::Relaxed)
            )?;
        }
        writeln!(
            o,
            "# HELP rempart_gateway_shared_limit_clients_total Client buckets sent to and updated from the shared Redis."
        )?;
        writeln!(o, "# TYPE rempart_gateway_shared_limit_clients_total counter")?;
        writeln!(
            o,
            "rempart_gateway_shared_limit_clients_total {}",
            self.fleet_clients.load(Ordering::Relaxed)
        )?;
        writeln!(
            o,
            "# HELP rempart_gateway_shared_bans_total Bans this gateway recorded in the shared Redis (sent), and clients it banned because another gateway had (received)."
        )?;
        writeln!(o, "# TYPE rempart_gateway_shared_bans_total counter")?;
        for (direction, c) in
            [("sent", &self.fleet_bans_sent), ("received", &self.fleet_bans_received)]
        {
            writeln!(
                o,
                "rempart_gateway_shared_bans_total{{direction=\"{direction}\"}} {}",
                c.load(Ordering::Relaxed)
            )?;
        }
        writeln!(o, "# HELP rempart_gateway_banned_clients Clients banned now.")?;
        writeln!(o, "# TYPE rempart_gateway_banned_clients gauge")?;
        writeln!(o, "rempart_gateway_banned_clients {}", g.banned)?;
        writeln!(
            o,
            "# HELP rempart_gateway_upstream_up Whether a node takes requests (health check passed, not ejected)."
        )?;
        writeln!(o, "# TYPE rempart_gateway_upstream_up gauge")?;
        for n in &g.nodes {
            writeln!(
                o,
                "rempart_gateway_upstream_up{{pool=\"{}\",node=\"{}\"}} {}",
                n.pool,
                n.node,
                u8::from(n.up)
            )?;
        }
        writeln!(o, "# HELP rempart_gateway_upstream_in_flight Requests in flight to a node.")?;
        writeln!(o, "# TYPE rempart_gateway_upstream_in_flight gauge")?;
        for n in &g.nodes {
            writeln!(
                o,
                "rempart_gateway_upstream_in_flight{{pool=\"{}\",node=\"{}\"}} {}",
                n.pool, n.node, n.in_flight
            )?;
        }
        writeln!(
            o,
            "# HELP rempart_gateway_upstream_head_block Head block number reported by a node."
        )?;
        writeln!(o, "# TYPE rempart_gateway_upstream_head_block gauge")?;
        for n in &g.nodes {
            writeln!(
                o,
                "rempart_gateway_upstream_head_block{{pool=\"{}\",node=\"{}\"}} {}",
                n.pool, n.node, n.head_block
            )?;
        }
        writeln!(
            o,
            "# HELP rempart_gateway_upstream_retries_total Reads retried on another node."
        )?;
        writeln!(o, "# TYPE rempart_gateway_upstream_retries_total counter")?;
        writeln!(
            o,
            "rempart_gateway_upstream_retries_total {}",
            self.retries.load(Ordering::Relaxed)
        )?;
        writeln!(
            o,
            "# HELP rempart_gateway_upstream_ejections_total Passive ejections of a node after a failure."
        )?;
        writeln!(o, "# TYPE rempart_gateway_upstream_ejections_total counter")?;
        writeln!(
            o,
            "rempart_gateway_upstream_ejections_total {}",
            self.ejections.load(Ordering::Relaxed)
        )?;
        writeln!(
            o,
            "# HELP rempart_gateway_reloads_total Policy and certificate reloads, by result."
        )?;
        writeln!(o, "# TYPE rempart_gateway_reloads_total counter")?;
        if let Ok(m) = self.reloads.lock() {
            for ((what, result), v) in m.iter() {
                writeln!(
                    o,
                    "rempart_gateway_reloads_total{{what=\"{what}\",result=\"{result}\"}} {v}"
                )?;
            }
        }
        writeln!(
            o,
            "# HELP rempart_gateway_log_lines_dropped_total Log lines dropped because the log's \
             reader fell behind (serving never waits for the log)."
        )?;
        writeln!(o, "# TYPE rempart_gateway_log_lines_dropped_total counter")?;
        let dropped = rempart_core::log::dropped_lines();
        writeln!(o, "rempart_gateway_log_lines_dropped_total {dropped}")?;
        Ok(())
    }
}
