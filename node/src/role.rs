//! The two ways to run a node, wired from a validated configuration:
//!
//! - [`run_producer`]: the chain, the slot loop ([`crate::producer`]) and the private listener
//!   ([`crate::peer::serve_producer`]) that serves blocks to api nodes and accepts the
//!   transactions they forward. No public listener.
//! - [`run_api`]: the chain as a follower ([`crate::peer::follow`]), which verifies and
//!   re-applies every block, and the chain API ([`crate::api::serve`]). With
//!   `api.private_listen`, it also serves its own verified blocks over the same private
//!   protocol and relays the pushes that arrive there to the node it follows, so that another
//!   api node can follow it exactly as it follows a producer.
//!
//! With `[wireguard]`, both roles bring the interface up ([`crate::tunnel`]) before anything
//! listens, and every private listener is tied to the tunnel interface and serves only the
//! configured peers' tunnel addresses.
//!
//! Both stop cleanly when `shutdown` flips to `true`. This module only connects parts; it makes
//! no chain decision and never exits the process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{ApiContext, serve};
use crate::chain::{Chain, ChainError, ChainOptions};
use crate::config::Config;
use crate::genesis::Genesis;
use crate::metrics::Metrics;
use crate::peer::{self, FollowConfig, FollowerState, HeadNotifier, ProducerService, PushClient};
use crate::producer::{self, ProducerError, ProducerOptions, clock};
use crate::store::{Store, StoreError};
use crate::tunnel::{self, PeerFilter, Tunnel, TunnelError};

/// Why a role stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoleError {
    /// The data directory could not be created.
    #[error("cannot create data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    /// The state database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The chain could not open.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// A listener could not bind.
    #[error("cannot listen on {0}: {1}; is another node running?")]
    Bind(std::net::SocketAddr, std::io::Error),
    /// The slot loop stopped.
    #[error(transparent)]
    Producer(#[from] ProducerError),
    /// The follower stopped (a block failed verification).
    #[error(transparent)]
    Follow(#[from] peer::PeerError),
    /// A server failed.
    #[error("{0}")]
    Server(String),
    /// The private network could not be set up.
    #[error(transparent)]
    Tunnel(#[from] TunnelError),
}

/// Brings the `[wireguard]` interface up (when configured), starts its health monitor, hands
/// its health to `metrics` and, with a metrics file, rewrites the file every statistics
/// interval so a stale tunnel shows even while no block comes. Returns the tunnel and the
/// background tasks to stop with the role.
async fn tunnel_up(
    config: &Config,
    metrics: &Arc<Metrics>,
    metrics_file: Option<PathBuf>,
    role: &'static str,
) -> Result<(Option<Tunnel>, Vec<tokio::task::JoinHandle<()>>), RoleError> {
    let Some(wg) = &config.wireguard else { return Ok((None, Vec::new())) };
    let t = Tunnel::up(wg).await?;
    let _ = metrics.tunnel.set(t.health());
    let mut tasks = vec![t.monitor()?];
    if let Some(file) = metrics_file {
        let m = metrics.clone();
        let every = wg.stats_interval;
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                m.write_file(&file, role);
            }
        }));
    }
    Ok((Some(t), tasks))
}

/// `rempart-node check`: validates the configuration (its `[wireguard]` section and the
/// private listeners of both roles included), the genesis it names, and the WireGuard private-key
/// file. Returns a one-line summary, or every refusal found, each saying what to fix. Opens no
/// socket and touches no interface.
pub fn check(path: &Path) -> Result<String, Vec<String>> {
    let config = Config::load(path).map_err(|e| vec![e.to_string()])?;
    let mut errors = Vec::new();
    let chain_id = match Genesis::load(&config.genesis) {
        Ok(g) => Some(g.chain_id()),
        Err(e) => {
            errors.push(e.to_string());
            None
        }
    };
    let key = match &config.wireguard {
        Some(wg) => match tunnel::check_key(wg) {
            Ok(k) => Some((wg, k)),
            Err(e) => {
                errors.push(e.to_string());
                None
            }
        },
        None => None,
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut summary = format!("{}: ok", path.display());
    if let Some(id) = chain_id {
        summary.push_str(&format!("; chain {id}"));
    }
    match key {
        Some((wg, k)) => summary.push_str(&format!(
            "; WireGuard {} at {} with {} peer(s), public key {k}",
            wg.interface,
            wg.address,
            wg.peers.len()
        )),
        None => summary.push_str("; no [wireguard]: private listener on loopback"),
    }
    if let Some(listen) = config.api.private_listen {
        summary.push_str(&format!("; api node serves followers on {listen}"));
    }
    Ok(summary)
}

/// Resolves when `rx` turns `true` (or its sender is gone).
pub async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

fn open_chain(
    dir: &Path,
    genesis: &Genesis,
    config: &Config,
    producer: bool,
) -> Result<Arc<Chain>, RoleError> {
    std::fs::create_dir_all(dir).map_err(|e| RoleError::DataDir(dir.display().to_string(), e))?;
    let store = Arc::new(Store::open(&dir.join("state.redb"))?);
    let options = ChainOptions {
        limits: config.limits.clone(),
        sign_intent: producer.then(|| dir.join("sign-intent.bin")),
    };
    Ok(Arc::new(Chain::open_with(store, genesis, options)?))
}

/// Runs the producer role until `shutdown` turns `true`.
pub async fn run_producer(
    config: &Config,
    genesis: &Genesis,
    shutdown: watch::Receiver<bool>,
) -> Result<(), RoleError> {
    let p = &config.producer;
    let chain = open_chain(&p.data_dir, genesis, config, true)?;
    let info = chain.info();
    tracing::info!(
        chain_id = %info.chain_id,
        head = info.head_block_num,
        producer = %p.name,
        signer = %p.signer,
        "producer starting"
    );
    let metrics = Arc::new(Metrics::default());
    let (tunnel, tasks) = tunnel_up(config, &metrics, p.metrics_file.clone(), "producer").await?;
    let heads = HeadNotifier::new(info.head_block_num);
    let server = serve_private(
        p.private_listen,
        config,
        tunnel.as_ref(),
        &chain,
        chain.clone(),
        heads.clone(),
        stopped(shutdown.clone()),
    )
    .await?;
    // A missed slot names the tunnel when a signer sits behind a stale handshake.
    let signer_tunnel = tunnel.as_ref().map(|t| {
        let ips: Vec<_> = std::iter::once(&p.signer)
            .chain(&p.standby_signers)
            .filter_map(|s| Some(s.parse::<SocketAddr>().ok()?.ip()))
            .collect();
        (t.health(), t.name().to_string(), ips)
    });
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    metrics.head.store(u64::from(info.head_block_num), relaxed);
    metrics.lib.store(u64::from(info.last_irreversible_block_num), relaxed);
    let metrics_file = p.metrics_file.clone();
    let m = metrics.clone();
    let on_block = move |b: Option<&crate::chain::BlockSummary>| {
        if let Some(b) = b {
            heads.notify(b.block_num);
        } else if let Some((health, iface, ips)) = &signer_tunnel {
            for ip in ips {
                if let Some(reason) = tunnel::stale_reason(health, iface, *ip) {
                    tracing::error!(
                        signer = %ip,
                        "slot missed, the signer is behind the tunnel: {reason}"
                    );
                }
            }
        }
        if let Some(f) = &metrics_file {
            m.write_file(f, "producer");
        }
    };
    let opts = ProducerOptions {
        name: p.name,
        signer: p.signer.clone(),
        standby_signers: p.standby_signers.clone(),
        sign_timeout: p.sign_timeout,
    };
    let result = producer::run(chain, opts, metrics, on_block, stopped(shutdown)).await;
    server.abort();
    tasks.iter().for_each(tokio::task::JoinHandle::abort);
    result.map_err(RoleError::from)
}

/// Binds `listen` (tied to the tunnel when there is one) and serves `chain`'s blocks and
/// `pushes` there, to the configured WireGuard peers only (loopback without a tunnel).
async fn serve_private(
    listen: SocketAddr,
    config: &Config,
    tunnel: Option<&Tunnel>,
    chain: &Chain,
    pushes: Arc<dyn peer::PushHandler>,
    heads: HeadNotifier,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, RoleError> {
    let listener = TcpListener::bind(listen).await.map_err(|e| RoleError::Bind(listen, e))?;
    if let Some(t) = tunnel {
        t.bind_listener(&listener)?;
    }
    let filter = PeerFilter::new(config.wireguard.as_ref());
    let service = Arc::new(ProducerService {
        store: chain.store().clone(),
        chain_id: chain.chain_id(),
        sink: pushes,
        heads,
        max_frame_bytes: peer::wire::DEFAULT_MAX_FRAME_BYTES,
    });
    Ok(tokio::spawn(peer::serve_producer_from(
        listener,
        service,
        move |peer| filter.allows(peer),
        shutdown,
    )))
}

/// Runs the api role until `shutdown` turns `true` or a block fails verification.
pub async fn run_api(
    config: &Config,
    genesis: &Genesis,
    shutdown: watch::Receiver<bool>,
) -> Result<(), RoleError> {
    let a = &config.api;
    let chain = open_chain(&a.data_dir, genesis, config, false)?;
    let info = chain.info();
    tracing::info!(chain_id = %info.chain_id, head = info.head_block_num, producer = %a.producer,
        "api node starting");
    let metrics = Arc::new(Metrics::default());
    let (tunnel, mut tasks) = tunnel_up(config, &metrics, a.metrics_file.clone(), "api").await?;
    let listener =
        TcpListener::bind(a.http_listen).await.map_err(|e| RoleError::Bind(a.http_listen, e))?;
    let push = PushClient::new(a.producer, chain.chain_id(), peer::wire::DEFAULT_MAX_FRAME_BYTES);
    // Followers of this node: its own verified blocks, and their pushes relayed upstream.
    let relay = match a.private_listen {
        None => None,
        Some(listen) => {
            let heads = HeadNotifier::new(info.head_block_num);
            let mut committed = chain.watch();
            let notify = heads.clone();
            tasks.push(tokio::spawn(async move {
                while committed.changed().await.is_ok() {
                    let head = committed.borrow_and_update().head_block_num;
                    notify.notify(head);
                }
            }));
            tracing::info!(%listen, "api node serving followers");
            let upstream = Arc::new(push.clone());
            let s = stopped(shutdown.clone());
            Some(serve_private(listen, config, tunnel.as_ref(), &chain, upstream, heads, s).await?)
        }
    };
    let ctx = Arc::new(ApiContext::new(chain.store().clone(), config.limits.clone(), Some(push)));
    let server = tokio::spawn(serve(listener, ctx, stopped(shutdown.clone())));

    // Metrics follow the chain's head; the time per block is measured around apply_block.
    let sink = Arc::new(TimedSink { chain: chain.clone(), metrics: metrics.clone() });
    if let Some(file) = a.metrics_file.clone() {
        let m = metrics.clone();
        let mut heads = chain.watch();
        tokio::spawn(async move {
            while heads.changed().await.is_ok() {
                m.write_file(&file, "api");
            }
        });
    }
    let state = Arc::new(FollowerState::default());
    let cfg = FollowConfig::new(a.producer, chain.chain_id());
    let result = peer::follow(cfg, sink, state, stopped(shutdown)).await;
    server.abort();
    if let Some(relay) = relay {
        relay.abort();
    }
    tasks.iter().for_each(tokio::task::JoinHandle::abort);
    result.map_err(RoleError::from)
}

/// The chain as a block sink, timing each block for the metrics.
struct TimedSink {
    chain: Arc<Chain>,
    metrics: Arc<Metrics>,
}

impl peer::BlockSink for TimedSink {
    fn next_block_num(&self) -> Result<u32, String> {
        Ok(self.chain.info().head_block_num + 1)
    }

    fn apply_block(&self, block: &rempart_core::block::SignedBlock) -> Result<(), String> {
        let started = clock::instant();
        let s = self.chain.apply_block(block).map_err(|e| e.to_string())?;
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.metrics.block(s.block_num, s.block_num, s.transactions, us);
        Ok(())
    }
}
