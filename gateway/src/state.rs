//! The gateway's live state: the policy in force with the limiters and pools built from it
//! (swapped atomically on reload), and what outlives reloads (metrics, connection counts,
//! certificates, the TLS configuration).
//!
//! A new [`Runtime`] is built completely before it is stored, so a request always sees one
//! consistent policy. Limiter and node state carry over wherever the policy did not change them.

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;

use crate::ban::Bans;
use crate::conn::ConnTracker;
use crate::document::Loaded;
use crate::limit::{ClientKey, Limiters};
use crate::metrics::{Gauges, Metrics, NodeGauge};
use crate::policy::{Access, Policy};
use crate::tls::CertResolver;
use crate::upstream::{self, Pool};

/// What one policy makes: the policy, its limiters and its pools.
#[derive(Debug)]
pub struct Runtime {
    /// The policy in force.
    pub policy: Arc<Policy>,
    /// Its rate limiters.
    pub limiters: Arc<Limiters>,
    /// Its pools, in the policy's order.
    pub pools: Vec<Arc<Pool>>,
    /// The documents it serves.
    pub documents: Loaded,
}

impl Runtime {
    /// Builds the runtime of `policy` for `workers` worker threads, reusing from `old` the
    /// limiters whose quota and the pools whose settings are unchanged, and the state of nodes
    /// that stay. Health checks are started for new pools (this needs a tokio runtime).
    pub fn build(
        policy: Policy,
        documents: Loaded,
        old: Option<&Runtime>,
        workers: usize,
    ) -> Runtime {
        let limiters = match old {
            Some(o) => Arc::new(o.limiters.rebuilt(&policy)),
            None => Arc::new(Limiters::new(&policy)),
        };
        let pools = policy
            .pools()
            .iter()
            .map(|cfg| {
                let prev = old.and_then(|o| o.pools.iter().find(|p| p.config.name == cfg.name));
                match prev {
                    Some(p) if p.config == *cfg => p.clone(),
                    _ => {
                        let pool = Arc::new(Pool::new(cfg, prev.map(|p| p.as_ref()), workers));
                        upstream::spawn_health(&pool);
                        pool
                    }
                }
            })
            .collect();
        Runtime { policy: Arc::new(policy), limiters, pools, documents }
    }
}

thread_local! {
    /// The runtime in force as this thread's requests hold it (see [`Shared::current`]).
    static CURRENT: RefCell<Weak<Arc<Runtime>>> = const { RefCell::new(Weak::new()) };
}

/// State shared by every task of the gateway.
#[derive(Debug)]
pub struct Shared {
    /// The runtime in force.
    pub runtime: ArcSwap<Runtime>,
    /// Metrics.
    pub metrics: Metrics,
    /// Open connections.
    pub conns: Arc<ConnTracker>,
    /// Offenders and bans.
    pub bans: Arc<Bans>,
    /// Bans given since the last exchange with the fleet (`[limits.shared]`).
    pub new_bans: crate::fleet::NewBans,
    /// HTTP-01 challenges in progress, answered on the redirect listener.
    pub challenges: crate::acme::Challenges,
    /// Wakes the ACME task when a reload changed the certificates.
    pub acme_wake: tokio::sync::Notify,
    /// Certificates by server name.
    pub resolver: Arc<CertResolver>,
    /// The TLS configuration new connections use.
    pub tls_config: ArcSwap<ServerConfig>,
    /// The crypto provider.
    pub provider: Arc<CryptoProvider>,
    /// Worker threads serving the TLS listener.
    pub workers: usize,
    /// At a stop, how long a used HTTP/1 connection keeps waiting for one more request
    /// before it is closed when idle (see `Config::close_idle_after`).
    pub close_idle_after: Duration,
}

impl Shared {
    /// Counts a refusal decided against a client (a request refused with the client at
    /// fault, an answer it would not take) towards a ban under `access`. Trusted clients are
    /// never banned.
    pub fn violation(&self, client: IpAddr, key: ClientKey, trusted: bool, access: &Access) {
        if !trusted && self.bans.violation(key, access) {
            self.metrics.ban();
            self.new_bans.push(key, access.ban);
            tracing::warn!(client = %client, "client banned after repeated refusals");
        }
    }

    /// The runtime in force, for one request to hold until it ends.
    ///
    /// Requests of one thread share one handle on it, so that taking and dropping it touch a
    /// count no other worker uses (a clone of the `Arc` in `runtime` would move its count
    /// between the workers' cores on every request). The thread keeps only a weak reference:
    /// once its requests have ended nothing holds a runtime that a reload replaced.
    pub fn current(&self) -> Arc<Arc<Runtime>> {
        let now = self.runtime.load();
        CURRENT.with(|held| {
            let mut held = held.borrow_mut();
            if let Some(rt) = held.upgrade()
                && Arc::ptr_eq(&*rt, &*now)
            {
                return rt;
            }
            let rt = Arc::new(arc_swap::Guard::into_inner(now));
            *held = Arc::downgrade(&rt);
            rt
        })
    }

    /// Live values for the metrics page.
    pub fn gauges(&self) -> Gauges {
        let rt = self.runtime.load();
        let mut nodes = Vec::new();
        for pool in &rt.pools {
            for (i, n) in pool.nodes().iter().enumerate() {
                nodes.push(NodeGauge {
                    pool: pool.config.name.clone(),
                    node: n.addr.to_string(),
                    up: pool.is_up(i),
                    in_flight: n.in_flight(),
                    head_block: n.head_block(),
                });
            }
        }
        Gauges {
            connections_open: u64::from(self.conns.open()),
            tracked_clients: rt.limiters.tracked() as u64,
            limiter_overflowed: rt.limiters.overflowed(),
            banned: self.bans.banned() as u64,
            send_waiting_bytes: self.conns.waiting() as u64,
            nodes,
            certificates: self
                .resolver
                .expiries()
                .into_iter()
                .map(|(name, end)| {
                    let left = end.map(|end| match end.duration_since(SystemTime::now()) {
                        Ok(left) => left.as_secs_f64().floor(),
                        Err(past) => -past.duration().as_secs_f64().floor(),
                    });
                    (name, left)
                })
                .collect(),
        }
    }

    /// Whether every pool has at least one node up.
    pub fn healthy(&self) -> bool {
        let rt = self.runtime.load();
        rt.pools.iter().all(|p| (0..p.nodes().len()).any(|i| p.is_up(i)))
    }
}
