//! The gateway's tasks: the TLS listener, the redirect-only plain listener, the admin
//! listener, policy and certificate reloads, limiter housekeeping, and graceful shutdown.
//!
//! The TLS listener is served by `Config::workers` threads, each with its own single-thread
//! runtime accepting on the same listening socket (the calling runtime is worker 0): a
//! connection, its requests and its upstream connections stay on one thread from accept to
//! close, as in HAProxy's and nginx's event loops, with no wake-ups across threads. A worker
//! holding more open connections than the least busy one plus one stops accepting until that
//! changes, so a burst of new connections is spread evenly (as HAProxy gives each new
//! connection to its least loaded thread) instead of going to whichever worker wakes first.
//! With `Config::cpus` each worker is pinned to a CPU of its own (`--pin-workers`).
//!
//! Connections over a cap are closed before the handshake; HTTP/1 connections pass through the
//! framing scanner; reloads validate completely before anything is swapped, and a failed
//! reload leaves everything as it was. Nothing here exits the process.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rempart_core::backoff::AcceptBackoff;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;

use crate::acme;
use crate::ban::Bans;
use crate::conn::{Awaiting, ConnGuard, EdgeIo};
use crate::document::{DocumentError, Loaded};
use crate::framing::Scanner;
use crate::handover::{self, HandoverError, Predecessor, Received, Role};
use crate::http2;
use crate::limit::ClientKey;
use crate::metrics::Metrics;
use crate::policy::{Policy, PolicyError};
use crate::proxy::{self, ConnCtx, Downstream};
use crate::proxy_header;
use crate::state::{Runtime, Shared};
use crate::tls::{self, CertResolver, CertStore, FileStamps, TlsError};

#[cfg(test)]
mod tests;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The certificates of the policy could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The policy could not be loaded.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A document could not be loaded.
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}; is another process using it?")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: io::Error,
    },
    /// The listeners could not be taken over from the running gateway.
    #[error(transparent)]
    Handover(#[from] HandoverError),
    /// A worker thread could not be started.
    #[error("cannot start gateway worker thread {index}: {source}; lower --workers")]
    Worker {
        /// The worker's index.
        index: usize,
        /// The I/O error.
        source: io::Error,
    },
    /// The workers cannot each have a CPU of their own (`--pin-workers`).
    #[error("--pin-workers: {0}")]
    Affinity(String),
}

/// The bound sockets the gateway serves.
#[derive(Debug)]
pub struct Listeners {
    /// Public TLS listener.
    pub tls: TcpListener,
    /// Optional redirect-only plain-HTTP listener.
    pub redirect: Option<TcpListener>,
    /// Admin listener (`/metrics`, `/healthz`).
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds the addresses of `policy`.
    pub async fn bind(policy: &Policy) -> Result<Listeners, GatewayError> {
        let l = policy.listeners();
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr).await.map_err(|source| GatewayError::Bind { addr, source })
        };
        Ok(Listeners {
            tls: bind(l.tls).await?,
            redirect: match l.redirect {
                Some(a) => Some(bind(a).await?),
                None => None,
            },
            admin: bind(l.admin).await?,
        })
    }

    /// Takes the listening sockets of the gateway answering on `path` (see [`handover`]):
    /// each one on the address `policy` names is kept, any other is closed, and an address of
    /// `policy` that came with no socket is bound afresh. The returned [`Predecessor`] must be
    /// completed once the gateway serves.
    ///
    /// [`handover`]: crate::handover
    pub async fn take_over(
        policy: &Policy,
        path: &std::path::Path,
    ) -> Result<(Listeners, Predecessor), GatewayError> {
        let (received, predecessor) = handover::receive(path)?;
        let l = policy.listeners();
        let mut received: Vec<Option<Received>> = received.into_iter().map(Some).collect();
        let mut listener = async |role: Role, addr: SocketAddr| {
            let kept = received
                .iter_mut()
                .find(|r| r.as_ref().is_some_and(|r| r.role == role && r.addr == addr))
                .and_then(Option::take);
            match kept {
                Some(r) => {
                    let from_std = |l: std::net::TcpListener| {
                        l.set_nonblocking(true)?;
                        TcpListener::from_std(l)
                    };
                    from_std(r.listener).map_err(|source| GatewayError::Bind { addr, source })
                }
                None => {
                    tracing::info!(?role, %addr, "no socket handed over for this address: binding");
                    TcpListener::bind(addr)
                        .await
                        .map_err(|source| GatewayError::Bind { addr, source })
                }
            }
        };
        let listeners = Listeners {
            tls: listener(Role::Tls, l.tls).await?,
            redirect: match l.redirect {
                Some(a) => Some(listener(Role::Redirect, a).await?),
                None => None,
            },
            admin: listener(Role::Admin, l.admin).await?,
        };
        for r in received.into_iter().flatten() {
            let (role, addr) = (r.role, r.addr);
            tracing::info!(?role, %addr, "the policy no longer listens here: closing the socket");
        }
        Ok((listeners, predecessor))
    }
}

/// How the gateway runs, beyond the policy itself.
#[derive(Debug, Clone)]
pub struct Config {
    /// The policy file, watched for changes and re-read on `reload`; `None` = no reloads.
    pub policy_file: Option<PathBuf>,
    /// Notified (e.g. on SIGHUP) to re-read the policy file.
    pub reload: Arc<Notify>,
    /// How often the policy file is checked for changes.
    pub watch_interval: Duration,
    /// Longest wait for open connections to finish at shutdown.
    pub drain_timeout: Duration,
    /// Threads serving the TLS listener, the calling runtime's thread included (at least 1).
    pub workers: usize,
    /// The CPU each worker is pinned to: worker `i` (the calling thread is worker 0) to
    /// `cpus[i]`. Empty: none is pinned and the kernel places them. See [`worker_cpus`].
    pub cpus: Vec<usize>,
    /// At a stop, how long a used HTTP/1 connection keeps waiting for one more request (its
    /// answer then closes it) before it is closed when idle. Closing an idle keep-alive
    /// connection races with a request its client may be sending; after this long unused, the
    /// client was most likely done with it.
    pub close_idle_after: Duration,
    /// The offenders and bans to start with and share (with a handover socket, which carries
    /// them to a successor); `None` starts from none.
    pub bans: Option<Arc<Bans>>,
    /// Filled with the gateway's state once it serves, for a handover to take the rate-limit
    /// buckets from.
    pub serving: Option<crate::handover::Serving>,
    /// Rate-limit buckets a predecessor carried, taken over before serving.
    pub buckets: Vec<crate::limit::CarriedBucket>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            policy_file: None,
            reload: Arc::new(Notify::new()),
            watch_interval: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(10),
            workers: 1,
            cpus: Vec::new(),
            close_idle_after: Duration::from_secs(1),
            bans: None,
            serving: None,
            buckets: Vec::new(),
        }
    }
}

/// Runs the gateway on `listeners` with `policy` until `shutdown` completes, then stops
/// accepting and lets open connections finish (at most `drain_timeout`).
pub async fn run(
    listeners: Listeners,
    policy: Policy,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), GatewayError> {
    // Stamps are taken before anything is read, so a change made while starting is noticed.
    let cert_stamps = FileStamps::of(policy.tls());
    let policy_stamp = config.policy_file.as_deref().and_then(file_stamp);
    let provider = tls::provider();
    acme::placeholders(policy.tls()).map_err(|e| TlsError::Acme(e.to_string()))?;
    let store = CertStore::load(&provider, policy.tls())?;
    let resolver = Arc::new(CertResolver::new(store));
    let tls_config = tls::server_config(provider.clone(), resolver.clone(), policy.tls())?;
    let bans = config.bans.clone().unwrap_or_else(|| Arc::new(Bans::new(0)));
    bans.set_cap(policy.access().max_tracked_offenders);
    let documents = Loaded::load(policy.documents())?;
    let workers = config.workers.max(1);
    let runtime = Runtime::build(policy, documents, None, workers);
    if !config.buckets.is_empty() {
        let taken = runtime.limiters.restore(&config.buckets);
        tracing::info!(offered = config.buckets.len(), taken, "rate-limit buckets carried over");
    }
    let sharing = runtime.policy.limits().shared.is_some();
    let shared = Arc::new(Shared {
        runtime: ArcSwap::from_pointee(runtime),
        metrics: Metrics::new(workers),
        conns: Arc::default(),
        new_bans: crate::fleet::NewBans::new(sharing),
        bans,
        challenges: Default::default(),
        acme_wake: Default::default(),
        resolver,
        tls_config: ArcSwap::new(tls_config),
        provider,
        workers,
        close_idle_after: config.close_idle_after,
    });
    if let Some(serving) = &config.serving {
        let _ = serving.set(Arc::downgrade(&shared));
    }
    let graceful = Arc::new(Graceful::new());

    if let Some(&cpu) = config.cpus.first() {
        // Threads started from here on inherit this CPU; each other worker moves to its own.
        pin_thread(cpu).map_err(|e| GatewayError::Affinity(format!("CPU {cpu}: {e}")))?;
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let balance = Arc::new(Balance::new(workers));
    let mut others = Vec::new();
    let tls_listener = if workers > 1 {
        let addr = listeners
            .tls
            .local_addr()
            .map_err(|source| GatewayError::Worker { index: 0, source })?;
        let listener =
            listeners.tls.into_std().map_err(|source| GatewayError::Bind { addr, source })?;
        for index in 1..workers {
            let clone =
                listener.try_clone().map_err(|source| GatewayError::Bind { addr, source })?;
            let spread = (balance.clone(), index);
            others.push(spawn_worker(clone, shared.clone(), spread, stopped.clone(), &config)?);
        }
        TcpListener::from_std(listener).map_err(|source| GatewayError::Bind { addr, source })?
    } else {
        listeners.tls
    };

    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(accept_tls(
        tls_listener,
        shared.clone(),
        graceful.clone(),
        (balance, 0),
    )));
    if let Some(l) = listeners.redirect {
        tasks.push(tokio::spawn(accept_redirect(l, shared.clone(), graceful.clone())));
    }
    tasks.push(tokio::spawn(accept_admin(listeners.admin, shared.clone())));
    tasks.push(tokio::spawn(watch_policy(shared.clone(), config.clone(), policy_stamp)));
    tasks.push(tokio::spawn(watch_certificates(shared.clone(), cert_stamps)));
    tasks.push(tokio::spawn(housekeeping(shared.clone())));
    tasks.push(tokio::spawn(acme::maintain(shared.clone())));
    tasks.push(tokio::spawn(crate::fleet::share(shared.clone())));

    shutdown.await;
    tracing::info!("shutting down: no new connections, draining open ones");
    let _ = stop.send(true);
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        // Cancelled tasks drop their listeners and their handle on `graceful`.
        let _ = t.await;
    }
    if tokio::time::timeout(config.drain_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!("drain timeout: closing the remaining connections");
    }
    for done in others {
        // Each worker drains its own connections within the same timeout.
        let _ = done.await;
    }
    Ok(())
}

/// Starts worker thread `index`: a single-thread runtime accepting TLS connections on its
/// copy of the listening socket until `stop` turns true, then draining them. The receiver
/// answers when the worker is done.
fn spawn_worker(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    (balance, index): (Arc<Balance>, usize),
    mut stop: tokio::sync::watch::Receiver<bool>,
    config: &Config,
) -> Result<tokio::sync::oneshot::Receiver<()>, GatewayError> {
    let worker_err = |source| GatewayError::Worker { index, source };
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(worker_err)?;
    let drain_timeout = config.drain_timeout;
    let cpu = config.cpus.get(index).copied();
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("gateway-worker-{index}"))
        .spawn(move || {
            if let Some(cpu) = cpu
                && let Err(e) = pin_thread(cpu)
            {
                // `worker_cpus` checked the CPU was allowed: only a change of the process's
                // affinity since then gets here. The worker serves unpinned rather than not.
                tracing::error!(worker = index, cpu, error = %e, "worker not pinned to its CPU");
            }
            crate::upstream::set_worker(index);
            rt.block_on(async move {
                let graceful = Arc::new(Graceful::new());
                match TcpListener::from_std(listener) {
                    Ok(listener) => {
                        let accepting = tokio::spawn(accept_tls(
                            listener,
                            shared,
                            graceful.clone(),
                            (balance, index),
                        ));
                        let _ = stop.wait_for(|stopped| *stopped).await;
                        accepting.abort();
                        let _ = accepting.await;
                    }
                    Err(e) => tracing::error!(worker = index, error = %e, "worker cannot accept"),
                }
                let _ = tokio::time::timeout(drain_timeout, graceful.shutdown()).await;
            });
            let _ = done.send(());
        })
        .map_err(worker_err)?;
    Ok(finished)
}

/// The CPUs `--pin-workers` gives the workers: the first `workers` CPUs this process may run
/// on (its affinity mask, as `taskset` or systemd's `CPUAffinity=` set it), one per worker.
///
/// Pinned, the workers keep a core each under load. Unpinned, the kernel sometimes runs two
/// of them on one core, where they take turns in slices of a few milliseconds and every
/// connection of the one waiting stalls that long (BENCHMARKS.md, stop 26). Pin only where the
/// gateway has these CPUs to itself: a pinned worker cannot move away from a core another
/// busy process holds.
pub fn worker_cpus(workers: usize) -> Result<Vec<usize>, GatewayError> {
    let allowed = rustix::thread::sched_getaffinity(None)
        .map_err(|e| GatewayError::Affinity(format!("cannot read this process's CPUs: {e}")))?;
    let cpus: Vec<usize> =
        (0..rustix::thread::CpuSet::MAX_CPU).filter(|&c| allowed.is_set(c)).take(workers).collect();
    if cpus.len() < workers {
        return Err(GatewayError::Affinity(format!(
            "{workers} workers need a CPU each, and this process may run on {} (lower --workers)",
            cpus.len()
        )));
    }
    Ok(cpus)
}

/// Pins the calling thread to `cpu`.
fn pin_thread(cpu: usize) -> io::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).map_err(io::Error::from)
}

fn client_key(shared: &Shared, peer: SocketAddr) -> ClientKey {
    let rt = shared.runtime.load();
    let l = rt.policy.limits();
    ClientKey::of(peer.ip(), l.client_prefix_v4, l.client_prefix_v6)
}

/// A connection let in: its client key, whether it is trusted, and its place.
struct Admitted {
    key: ClientKey,
    trusted: bool,
    guard: ConnGuard,
}

fn admit(shared: &Shared, peer: SocketAddr) -> Option<Admitted> {
    let key = client_key(shared, peer);
    let rt = shared.runtime.load();
    let access = rt.policy.access();
    if access.refuses(peer.ip()) {
        shared.metrics.refused("denied");
        return None;
    }
    let trusted = access.is_trusted(peer.ip());
    if !trusted && shared.bans.is_banned(key) {
        shared.metrics.refused("banned");
        return None;
    }
    let c = rt.policy.connections();
    match shared.conns.admit(key, c.per_client, c.total) {
        Ok(guard) => Some(Admitted { key, trusted, guard }),
        Err(r) => {
            shared.metrics.refused(r.label());
            None
        }
    }
}

/// The next connection. Out of file descriptors or on a transient error, `accept` is retried
/// after a pause of 10 ms doubling to 1 s (logged once per burst) instead of spinning, and the
/// connections already open keep being served.
async fn accept(listener: &TcpListener, backoff: &mut AcceptBackoff) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(x) => {
                let failures = backoff.succeeded();
                if failures > 0 {
                    tracing::info!(failures, "accept works again");
                }
                return x;
            }
            Err(e) => {
                let (wait, log) = backoff.failed();
                if log {
                    tracing::warn!(
                        error = %e,
                        "accept failed; retrying with a growing pause, further failures of this \
                         burst are not logged"
                    );
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Tells open connections to finish and waits until they have: each connection holds a
/// watcher, turned true at shutdown; a connection then finishes its requests in flight and
/// closes (HTTP/1 after the current request, HTTP/2 with a GOAWAY), dropping its watcher.
#[derive(Debug)]
struct Graceful(watch::Sender<bool>);

impl Graceful {
    fn new() -> Self {
        Graceful(watch::Sender::new(false))
    }

    /// A watcher for one connection.
    fn watcher(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }

    /// Signals every connection, then waits until all have closed.
    async fn shutdown(&self) {
        self.0.send_replace(true);
        self.0.closed().await;
    }
}

/// Runs a hyper HTTP/1 connection until it ends, or until `stop` turns true: then every answer
/// closes the connection (`Connection: close`, see `ConnCtx::stopping`), and the connection
/// is closed when idle, so that the drain ends.
///
/// Closing an idle keep-alive connection races with a request its client may be sending at
/// that moment, which would be lost (a `push_transaction` is not retried). So an idle
/// connection is closed only once unused for `idle_grace` after the stop: a client still using
/// it sends its next request within that time and gets the answer that closes it. A connection
/// that has brought no request yet (`untouched`) was most likely accepted just as the gateway
/// stopped accepting (a handover), its first request on the way: it is waited for, within the
/// header read timeout.
async fn watched<I, S>(
    conn: http1::Connection<I, S>,
    mut stop: watch::Receiver<bool>,
    untouched: impl Fn() -> bool,
    idle_grace: Duration,
) -> Result<(), hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<Incoming>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => return r,
        _ = stop.wait_for(|s| *s) => {}
    }
    if untouched() {
        return conn.await;
    }
    if !idle_grace.is_zero() {
        tokio::select! {
            r = conn.as_mut() => return r,
            _ = tokio::time::sleep(idle_grace) => {}
        }
    }
    conn.as_mut().graceful_shutdown();
    conn.await
}

/// The open connections of each worker, so that none takes more than its share.
#[derive(Debug)]
struct Balance {
    open: Vec<AtomicUsize>,
    /// Notified whenever a worker's count goes down or another worker's goes up.
    changed: Notify,
}

/// A connection counted for its worker until dropped.
struct Held {
    balance: Arc<Balance>,
    worker: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.balance.open[self.worker].fetch_sub(1, Ordering::Relaxed);
        if self.balance.open.len() > 1 {
            self.balance.changed.notify_waiters();
        }
    }
}

impl Balance {
    fn new(workers: usize) -> Self {
        Balance {
            open: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
            changed: Notify::new(),
        }
    }

    /// Whether `worker` holds more than one connection beyond the least busy worker.
    fn ahead(&self, worker: usize) -> bool {
        let mine = self.open[worker].load(Ordering::Relaxed);
        let least = self.open.iter().map(|n| n.load(Ordering::Relaxed)).min().unwrap_or(0);
        mine > least + 1
    }

    /// Returns once `worker` may accept: at once unless it is ahead of the others.
    async fn turn(&self, worker: usize) {
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if !self.ahead(worker) {
                return;
            }
            changed.await;
        }
    }

    /// Counts a new connection of `worker`.
    fn hold(self: &Arc<Self>, worker: usize) -> Held {
        self.open[worker].fetch_add(1, Ordering::Relaxed);
        if self.open.len() > 1 {
            self.changed.notify_waiters();
        }
        Held { balance: self.clone(), worker }
    }
}

async fn accept_tls(
    listener: TcpListener,
    shared: Arc<Shared>,
    graceful: Arc<Graceful>,
    (balance, worker): (Arc<Balance>, usize),
) {
    let mut backoff = AcceptBackoff::new();
    loop {
        if balance.open.len() > 1 {
            balance.turn(worker).await;
        }
        let (tcp, peer) = accept(&listener, &mut backoff).await;
        let _ = tcp.set_nodelay(true);
        let held = balance.hold(worker);
        if shared.runtime.load().policy.access().expects_proxy_header(peer.ip()) {
            let serving = serve_proxied(tcp, peer, shared.clone(), graceful.watcher());
            tokio::spawn(async move {
                serving.await;
                drop(held);
            });
            continue;
        }
        let Some(admitted) = admit(&shared, peer) else {
            drop(tcp);
            continue;
        };
        let serving = serve_tls(tcp, peer, admitted, shared.clone(), graceful.watcher());
        tokio::spawn(async move {
            serving.await;
            drop(held);
        });
    }
}

/// A connection from a trusted balancer: the PROXY v2 header names the client, who is then
/// admitted and served like a direct one.
async fn serve_proxied(
    mut tcp: TcpStream,
    balancer: SocketAddr,
    shared: Arc<Shared>,
    watcher: watch::Receiver<bool>,
) {
    let deadline = shared.runtime.load().policy.connections().tls_handshake_timeout;
    let client = match tokio::time::timeout(deadline, proxy_header::read(&mut tcp, balancer)).await
    {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => {
            shared.metrics.refused("proxy_header");
            tracing::warn!(balancer = %balancer, error = %e, "PROXY header refused");
            return;
        }
        Err(_) => {
            shared.metrics.refused("proxy_header");
            return;
        }
    };
    let Some(admitted) = admit(&shared, client) else {
        return;
    };
    serve_tls(tcp, client, admitted, shared, watcher).await;
}

async fn serve_tls(
    tcp: TcpStream,
    peer: SocketAddr,
    admitted: Admitted,
    shared: Arc<Shared>,
    watcher: watch::Receiver<bool>,
) {
    let Admitted { key, trusted, guard } = admitted;
    let conns = shared.runtime.load().policy.connections().clone();
    let acceptor = TlsAcceptor::from(shared.tls_config.load_full());
    // The handshake's future and each protocol's are boxed: held inline, they made every
    // connection's task about 21 KiB, the largest part of an idle connection's memory.
    let handshake =
        Box::pin(tokio::time::timeout(conns.tls_handshake_timeout, acceptor.accept(tcp)));
    let tls = match handshake.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            shared.metrics.tls_failure();
            tracing::debug!(client = %peer.ip(), error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            shared.metrics.tls_failure();
            shared.metrics.refused("tls_timeout");
            return;
        }
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    let scanner = (!h2).then(|| Scanner::new(conns.max_header_bytes));
    let (io, flag, send_timed_out) =
        EdgeIo::new(tls, conns.idle_timeout, conns.send_timeout, scanner);
    let awaiting = Awaiting::default();
    let io = if h2 { io.coalescing(awaiting.clone()) } else { io };
    let mut ctx = ConnCtx::new(peer, key, trusted, (!h2).then_some(flag));
    if h2 {
        // Trusted clients (a partner's backend behind one address) are held only to the
        // total.
        let per_client = if trusted { usize::MAX } else { conns.send_wait_bytes_per_client };
        ctx.holds = Some(guard.send_account(per_client, conns.send_wait_bytes_total));
    } else {
        // Once the gateway stops, every HTTP/1 answer closes its connection (see `watched`).
        ctx.stopping = Some(watcher.clone());
    }
    let conn = Arc::new(Downstream { shared: shared.clone(), ctx });
    if h2 {
        if let Err(e) = Box::pin(http2::serve(io, conn, &conns, watcher, awaiting)).await {
            tracing::debug!(client = %peer.ip(), error = %e, "connection ended with an error");
        }
    } else {
        let seen = conn.clone();
        let untouched = move || seen.ctx.requests.load(Ordering::Relaxed) == 0;
        let svc = service_fn(move |req| proxy::handle(conn.clone(), req));
        let mut b = http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(conns.header_read_timeout)
            .max_header_size(conns.max_header_bytes)
            .keep_alive(true);
        let grace = shared.close_idle_after;
        let serving = watched(b.serve_connection(TokioIo::new(io), svc), watcher, untouched, grace);
        if let Err(e) = Box::pin(serving).await {
            tracing::debug!(client = %peer.ip(), error = %e, "connection ended with an error");
        }
    }
    if send_timed_out.load(Ordering::Relaxed) {
        shared.metrics.slow_reader("connection_timeout");
        shared.violation(peer.ip(), key, trusted, shared.runtime.load().policy.access());
    }
    drop(guard);
}

async fn accept_redirect(listener: TcpListener, shared: Arc<Shared>, graceful: Arc<Graceful>) {
    let mut backoff = AcceptBackoff::new();
    loop {
        let (tcp, peer) = accept(&listener, &mut backoff).await;
        let Some(Admitted { guard, .. }) = admit(&shared, peer) else {
            continue;
        };
        let rt = shared.runtime.load();
        let port = rt.policy.listeners().tls.port();
        let timeout = rt.policy.connections().header_read_timeout;
        let watcher = graceful.watcher();
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let answer = match acme_challenge(&shared, &req) {
                    Some(answer) => answer,
                    None => redirect(&req, port),
                };
                async move { Ok::<_, std::convert::Infallible>(answer) }
            });
            let mut b = http1::Builder::new();
            b.timer(TokioTimer::new()).header_read_timeout(timeout).keep_alive(false);
            // One request per connection (no keep-alive): until it has come, the connection
            // is as good as new, and its request is waited for.
            let conn = b.serve_connection(TokioIo::new(tcp), svc);
            let _ = watched(conn, watcher, || true, Duration::ZERO).await;
            drop(guard);
        });
    }
}

/// The answer to an ACME HTTP-01 challenge (`GET /.well-known/acme-challenge/TOKEN`): the key
/// authorization of a challenge in progress, or 404. `None` for any other request.
fn acme_challenge(shared: &Shared, req: &Request<Incoming>) -> Option<Response<Full<Bytes>>> {
    let token = req.uri().path().strip_prefix(acme::CHALLENGE_PATH)?;
    if req.method() != http::Method::GET {
        return None;
    }
    let mut resp = match shared.challenges.answer(token) {
        Some(key_authorization) => Response::new(Full::new(Bytes::from(key_authorization))),
        None => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"no such challenge\n")));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    };
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Some(resp)
}

/// The answer of the plain listener: 308 to the same host and path over HTTPS.
pub fn redirect(req: &Request<Incoming>, tls_port: u16) -> Response<Full<Bytes>> {
    redirect_target(req.headers().get(header::HOST), req.uri(), tls_port)
}

fn redirect_target(
    host: Option<&HeaderValue>,
    uri: &http::Uri,
    tls_port: u16,
) -> Response<Full<Bytes>> {
    let host =
        host.and_then(|h| h.to_str().ok()).and_then(|h| h.parse::<http::uri::Authority>().ok());
    let Some(host) = host else {
        let mut r = Response::new(Full::new(Bytes::from_static(b"Host header required\n")));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    };
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    let location = if tls_port == 443 {
        format!("https://{}{pq}", host.host())
    } else {
        format!("https://{}:{tls_port}{pq}", host_for_url(host.host()))
    };
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn host_for_url(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() }
}

async fn accept_admin(listener: TcpListener, shared: Arc<Shared>) {
    let mut backoff = AcceptBackoff::new();
    loop {
        let (tcp, _) = accept(&listener, &mut backoff).await;
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(admin(&shared, &req)) }
            });
            let mut b = http1::Builder::new();
            b.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(5));
            let _ = b.serve_connection(TokioIo::new(tcp), svc).await;
        });
    }
}

fn admin(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match req.uri().path() {
        "/metrics" => {
            (StatusCode::OK, "text/plain; version=0.0.4", shared.metrics.render(&shared.gauges()))
        }
        "/healthz" if shared.healthy() => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/healthz" => {
            (StatusCode::SERVICE_UNAVAILABLE, "text/plain", "no upstream node is up\n".to_owned())
        }
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".to_owned()),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

/// Re-reads the policy file; on success swaps the runtime (and certificates if they changed),
/// on failure keeps everything and says why.
pub fn reload(shared: &Shared, file: &std::path::Path) -> Result<(), String> {
    let policy = Policy::load(file).map_err(|e| e.to_string())?;
    let old = shared.runtime.load_full();
    if policy.listeners() != old.policy.listeners() {
        tracing::warn!(
            "listener addresses changed in the policy: they take effect on restart only"
        );
    }
    // Everything that can fail is loaded first; only then is anything swapped.
    let mut certificates = None;
    let mut tls_config = None;
    if policy.tls() != old.policy.tls() {
        acme::placeholders(policy.tls()).map_err(|e| e.to_string())?;
        certificates =
            Some(CertStore::load(&shared.provider, policy.tls()).map_err(|e| e.to_string())?);
        if policy.tls().session_cache_entries != old.policy.tls().session_cache_entries {
            tls_config = Some(
                tls::server_config(shared.provider.clone(), shared.resolver.clone(), policy.tls())
                    .map_err(|e| e.to_string())?,
            );
        }
    }
    let documents = Loaded::load(policy.documents()).map_err(|e| e.to_string())?;
    let certificates_changed = certificates.is_some();
    if let Some(store) = certificates {
        shared.resolver.replace(store);
    }
    if let Some(config) = tls_config {
        shared.tls_config.store(config);
    }
    let runtime = Runtime::build(policy, documents, Some(&old), shared.workers);
    shared.bans.set_cap(runtime.policy.access().max_tracked_offenders);
    shared.runtime.store(Arc::new(runtime));
    if certificates_changed {
        shared.acme_wake.notify_one();
    }
    Ok(())
}

fn reload_and_report(shared: &Shared, file: &std::path::Path) {
    match reload(shared, file) {
        Ok(()) => {
            shared.metrics.reload("policy", "ok");
            tracing::info!(file = %file.display(), "policy reloaded");
        }
        Err(e) => {
            shared.metrics.reload("policy", "rejected");
            tracing::error!(file = %file.display(), error = %e, "policy reload refused; the previous policy stays in force");
        }
    }
}

type FileStamp = (std::time::SystemTime, u64);

fn file_stamp(file: &std::path::Path) -> Option<FileStamp> {
    let m = std::fs::metadata(file).ok()?;
    Some((m.modified().ok()?, m.len()))
}

async fn watch_policy(shared: Arc<Shared>, config: Config, mut last: Option<FileStamp>) {
    let Some(file) = config.policy_file.clone() else {
        return;
    };
    let mut tick = tokio::time::interval(config.watch_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = config.reload.notified() => {
                last = file_stamp(&file);
                reload_and_report(&shared, &file);
            }
            _ = tick.tick() => {
                let now = file_stamp(&file);
                if now != last {
                    last = now;
                    reload_and_report(&shared, &file);
                }
            }
        }
    }
}

async fn watch_certificates(shared: Arc<Shared>, mut last: FileStamps) {
    loop {
        let interval = shared.runtime.load().policy.tls().reload_interval;
        tokio::time::sleep(interval).await;
        let rt = shared.runtime.load_full();
        let now = FileStamps::of(rt.policy.tls());
        if now == last {
            continue;
        }
        last = now;
        match CertStore::load(&shared.provider, rt.policy.tls()) {
            Ok(store) => {
                shared.resolver.replace(store);
                shared.metrics.reload("certificates", "ok");
                tracing::info!("certificates reloaded");
            }
            Err(e) => {
                shared.metrics.reload("certificates", "rejected");
                tracing::error!(error = %e, "certificate reload refused; the previous certificates stay in service");
            }
        }
    }
}

async fn housekeeping(shared: Arc<Shared>) {
    loop {
        let interval = shared.runtime.load().policy.limits().retain_interval;
        tokio::time::sleep(interval).await;
        let rt = shared.runtime.load();
        rt.limiters.retain_recent();
        shared.bans.retain(rt.policy.access());
    }
}
