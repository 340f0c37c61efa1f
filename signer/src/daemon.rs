//! Start-up and shutdown of `rempart-signer run`, in the order the sandbox requires.
//!
//! [`Daemon::prepare`] runs on the only thread: policy, keys, guard states, audit log, then the
//! listeners bound with `std`. [`Daemon::sandbox`] applies `crate::sandbox::apply` (still one
//! thread). Only then does `main` build the tokio runtime and call [`Daemon::serve`], which
//! converts the listeners and serves until shutdown. Nothing here may start a thread before the
//! sandbox, serve before it, or go on after any step failed.

use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rempart_core::backoff::AcceptBackoff;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::audit::AuditEvent;
use crate::keyring::{Backend, Keyring, KeyringError};
use crate::metrics::Metrics;
use crate::policy::{BackendConfig, Policy, PolicyError};
use crate::sandbox::{SandboxConfig, SandboxError, SandboxReport};
use crate::server::{self, ConnectionLimits, PeerRules, Protocol, ServerError, Signer};

/// Why the daemon could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The policy is invalid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The key backend could not be opened.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// The signer refused to start (keys, guard, audit).
    #[error(transparent)]
    Server(#[from] ServerError),
    /// A listener could not be bound.
    #[error("cannot listen on {what}: {source}")]
    Listen {
        /// The address or path.
        what: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The sandbox could not be applied; the daemon must not serve.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The backend is not compiled into this build.
    #[error("the {0} backend is not compiled into this build of rempart-signer")]
    BackendMissing(&'static str),
    /// The WireGuard interface could not be set up.
    #[error(transparent)]
    WireGuard(#[from] crate::wireguard::WireGuardError),
    /// The guard shared with standby signers (etcd) cannot be reached, or its connection was
    /// lost: the supervisor should start the signer again (exit code 75).
    #[error(transparent)]
    SharedGuard(#[from] crate::shared_guard::ClaimError),
}

impl DaemonError {
    /// The process exit code for this error (sysexits: 64 config, 69 unavailable, 70 software,
    /// 71 OS, 65 data).
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::Policy(_) | DaemonError::BackendMissing(_) => 64,
            DaemonError::Keyring(_) => 69,
            DaemonError::Server(ServerError::KeyNotHeld { .. }) => 64,
            DaemonError::Server(_) => 65,
            DaemonError::Listen { .. } => 71,
            DaemonError::Sandbox(_) => 70,
            DaemonError::SharedGuard(_) => 75,
            DaemonError::WireGuard(e) => match e {
                crate::wireguard::WireGuardError::Configure { .. }
                | crate::wireguard::WireGuardError::Ip { .. }
                | crate::wireguard::WireGuardError::BindToDevice { .. }
                | crate::wireguard::WireGuardError::Stats { .. } => 69,
                _ => 64,
            },
        }
    }
}

/// Opens the key backend named by the policy.
pub fn open_backend(policy: &Policy) -> Result<Box<dyn Backend>, DaemonError> {
    match &policy.backend {
        #[cfg(feature = "pkcs11")]
        BackendConfig::Pkcs11(c) => Ok(Box::new(crate::keyring::pkcs11::Pkcs11Backend::open(c)?)),
        #[cfg(not(feature = "pkcs11"))]
        BackendConfig::Pkcs11(_) => Err(DaemonError::BackendMissing("pkcs11")),
        #[cfg(feature = "soft")]
        BackendConfig::Soft(c) => Ok(Box::new(crate::keyring::soft::SoftBackend::open(
            &c.key_files,
            policy.dangerous_dev_chain,
        )?)),
        #[cfg(not(feature = "soft"))]
        BackendConfig::Soft(_) => Err(DaemonError::BackendMissing("soft")),
        #[cfg(feature = "yubikey")]
        BackendConfig::Yubikey(c) => {
            Ok(Box::new(crate::keyring::yubikey::YubikeyBackend::open(c)?))
        }
        #[cfg(not(feature = "yubikey"))]
        BackendConfig::Yubikey(_) => Err(DaemonError::BackendMissing("yubikey")),
    }
}

/// A daemon ready to sandbox and serve.
#[derive(Debug)]
pub struct Daemon {
    signer: Arc<Signer>,
    unix: Option<(std::os::unix::net::UnixListener, PathBuf)>,
    tcp: Option<std::net::TcpListener>,
    metrics_listener: Option<std::net::TcpListener>,
    tunnel: Option<Tunnel>,
    keosd_unix: Option<(std::os::unix::net::UnixListener, PathBuf)>,
    keosd_tcp: Option<std::net::TcpListener>,
}

/// The WireGuard statistics reader opened before the sandbox, and what to compare it against.
#[derive(Debug)]
struct Tunnel {
    reader: crate::wireguard::health::StatsReader,
    expected: crate::wireguard::health::Expected,
    interval: std::time::Duration,
}

/// Creates or updates the WireGuard interface (before the TCP listener binds its address and
/// before the sandbox forbids new sockets and programs) and opens its statistics reader.
fn tunnel_up(policy: &Policy) -> Result<Option<Tunnel>, DaemonError> {
    let Some(wg) = &policy.wireguard else { return Ok(None) };
    #[cfg(feature = "wireguard")]
    {
        let iface = crate::wireguard::Interface::up(wg)?;
        let s = &policy.sandbox;
        let reader = if s.dangerous_disabled {
            iface.stats_reader(false)?
        } else {
            let process = crate::wireguard::reader::ReaderProcess::current(
                &s.seccomp_policy,
                s.memory_lock,
                s.dangerous_allow_no_landlock,
            )
            .map_err(|message| crate::wireguard::WireGuardError::Stats {
                interface: wg.interface.clone(),
                message,
            })?;
            iface.sandboxed_stats_reader(&process)?
        };
        let expected = crate::wireguard::health::Expected::from_config(wg);
        Ok(Some(Tunnel { reader, expected, interval: wg.stats_interval }))
    }
    #[cfg(not(feature = "wireguard"))]
    {
        let _ = wg;
        Err(DaemonError::BackendMissing("wireguard"))
    }
}

fn bind_unix(path: &Path) -> Result<std::os::unix::net::UnixListener, DaemonError> {
    let err = |source| DaemonError::Listen { what: path.display().to_string(), source };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(err(std::io::Error::other("a non-socket file is in the way")));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(err(std::io::Error::other(
                "another process is serving this socket (is a signer already running?)",
            )));
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    Ok(listener)
}

impl Daemon {
    /// Loads and validates the policy, opens keys, guard states and the audit log, and binds
    /// the listeners. Single-threaded.
    pub fn prepare(policy_path: &Path) -> Result<Daemon, DaemonError> {
        let text = std::fs::read(policy_path)
            .map_err(|source| PolicyError::Read { path: policy_path.to_path_buf(), source })?;
        let policy = Policy::load(policy_path)?;
        if policy.dangerous_dev_chain {
            tracing::warn!(
                "DANGEROUS: the policy marks chain {} as a development chain \
                 (dangerous_dev_chain = true)",
                policy.chain_id
            );
        }
        if matches!(policy.backend, BackendConfig::Soft(_)) {
            tracing::warn!(
                "DANGEROUS: signing with the soft backend: private keys are in files and in this \
                 process's memory. Development chains only; production keys belong in an HSM"
            );
        }
        // Before anything changes outside this process: a second signer on this state stops
        // here, not after reconfiguring the tunnel or logging in to the HSM.
        let state_lock =
            crate::guard::Guard::new(&policy.state_dir).lock().map_err(ServerError::from)?;
        let metrics = Arc::new(Metrics::default());
        // The tunnel first: its statistics reader may be a child process, which should inherit
        // no descriptor a key backend opened (a PKCS#11 module may open without O_CLOEXEC).
        let tunnel = tunnel_up(&policy)?;
        let backend = open_backend(&policy)?;
        let keyring = Keyring::new(backend, policy.limits.max_sign_attempts, metrics.clone())?;
        let chain_id = policy.chain_id;
        let signer = Signer::with_lock(policy, keyring, metrics, state_lock)?;
        // Before the sandbox, which forbids new sockets: the connection is kept for good.
        if let Some(config) = &signer.policy().shared_guard {
            let shared = crate::shared_guard::SharedGuard::connect(config)?;
            tracing::info!(etcd = %config.etcd, name = %config.name, "shared double-sign guard: etcd answers");
            signer.set_shared_guard(Arc::new(shared));
        }
        signer
            .audit(&AuditEvent::PolicyLoad {
                path: policy_path.display().to_string(),
                sha256: hex::encode(Sha256::digest(&text)),
                chain_id: chain_id.to_string(),
            })
            .map_err(ServerError::from)?;
        let policy = signer.policy();
        let unix = match &policy.listen.unix_socket {
            Some(p) => Some((bind_unix(p)?, p.clone())),
            None => None,
        };
        let bind_tcp = |addr: std::net::SocketAddr| {
            let err = |source| DaemonError::Listen { what: addr.to_string(), source };
            let l = std::net::TcpListener::bind(addr).map_err(err)?;
            l.set_nonblocking(true).map_err(err)?;
            Ok::<_, DaemonError>(l)
        };
        let tcp = policy.listen.tcp.map(bind_tcp).transpose()?;
        #[cfg(feature = "wireguard")]
        if let (Some(l), Some(wg)) = (&tcp, &policy.wireguard) {
            crate::wireguard::bind_to_interface(l, &wg.interface)?;
        }
        let metrics_listener = policy.metrics.listen.map(bind_tcp).transpose()?;
        let (mut keosd_unix, mut keosd_tcp) = (None, None);
        if let Some(k) = &policy.keosd_compat {
            tracing::warn!(
                keys = ?k.keys.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "DANGEROUS: [keosd_compat] signs bare digests for these keys; the double-sign \
                 guard cannot check them"
            );
            if let Some(p) = &k.unix_socket {
                keosd_unix = Some((bind_unix(p)?, p.clone()));
            }
            keosd_tcp = k.tcp.map(bind_tcp).transpose()?;
            #[cfg(feature = "wireguard")]
            if let (Some(l), Some(wg)) = (&keosd_tcp, &policy.wireguard) {
                crate::wireguard::bind_to_interface(l, &wg.interface)?;
            }
        }
        Ok(Daemon {
            signer: Arc::new(signer),
            unix,
            tcp,
            metrics_listener,
            tunnel,
            keosd_unix,
            keosd_tcp,
        })
    }

    /// The TCP address actually bound (useful with port 0).
    pub fn tcp_addr(&self) -> Option<std::net::SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The keosd-compatible TCP address actually bound.
    pub fn keosd_tcp_addr(&self) -> Option<std::net::SocketAddr> {
        self.keosd_tcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The metrics address actually bound.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The sandbox seam: applies `crate::sandbox::apply` with the policy's settings. Must run
    /// on the only thread, after [`Daemon::prepare`], before the runtime starts. Returns `None`
    /// when the policy sets `dangerous_disabled`.
    pub fn sandbox(&self) -> Result<Option<SandboxReport>, DaemonError> {
        let policy = self.signer.policy();
        let s = &policy.sandbox;
        if s.dangerous_disabled {
            tracing::warn!("DANGEROUS: the sandbox is disabled ([sandbox] dangerous_disabled)");
            return Ok(None);
        }
        let mut cfg = SandboxConfig::new(&policy.state_dir, &s.seccomp_policy);
        cfg.read_only_paths = s.read_only_paths.clone();
        cfg.read_write_paths = s.read_write_paths.clone();
        for extra in [Some(&policy.audit_log), policy.metrics.file.as_ref()].into_iter().flatten() {
            if let Some(dir) = extra.parent()
                && !dir.starts_with(&policy.state_dir)
                && !cfg.read_write_paths.iter().any(|p| dir.starts_with(p))
            {
                cfg.read_write_paths.push(dir.to_path_buf());
            }
        }
        cfg.memory_lock = s.memory_lock;
        cfg.dangerous_allow_no_landlock = s.dangerous_allow_no_landlock;
        let report = crate::sandbox::apply(&cfg)?;
        tracing::info!("{report}");
        Ok(Some(report))
    }

    /// Serves until `shutdown` resolves, then audits the stop and removes the socket file.
    /// Must run inside a tokio runtime.
    pub async fn serve(self, shutdown: impl Future<Output = String>) -> Result<(), DaemonError> {
        let signer = self.signer;
        let policy = signer.policy().clone();
        let limits = ConnectionLimits {
            request_timeout: policy.limits.request_timeout,
            idle_timeout: policy.limits.idle_timeout,
        };
        let mut uids = policy.listen.allowed_uids.clone();
        if policy.listen.allow_own_uid {
            uids.insert(rustix::process::geteuid().as_raw());
        }
        let rules = Arc::new(PeerRules {
            allowed_uids: uids,
            tcp_allowed_peers: policy.listen.tcp_allowed_peers.clone(),
        });
        let slots = Arc::new(Semaphore::new(policy.limits.max_connections));
        let mut tasks = tokio::task::JoinSet::new();
        let listen_err = |what: String| move |source| DaemonError::Listen { what, source };
        // The framed protocol's listeners, then the keosd endpoint's: the same accept loop.
        let mut listeners = vec![(self.unix, self.tcp, Protocol::Frames(signer.clone()))];
        if let Some(k) = &policy.keosd_compat {
            let service = Arc::new(crate::keosd::Service::new(signer.clone(), k));
            listeners.push((self.keosd_unix, self.keosd_tcp, Protocol::Keosd(service)));
        }
        let mut socket_paths = Vec::new();
        for (unix, tcp, protocol) in listeners {
            if let Some((l, path)) = unix {
                let l = tokio::net::UnixListener::from_std(l)
                    .map_err(listen_err(path.display().to_string()))?;
                let p = protocol.clone();
                tasks.spawn(server::serve_unix(l, p, rules.clone(), slots.clone(), limits));
                socket_paths.push(path);
            }
            if let Some(l) = tcp {
                // Named from the protocol, not the socket: the sandbox allows no getsockname.
                let what = match protocol {
                    Protocol::Frames(_) => "tcp",
                    Protocol::Keosd(_) => "keosd tcp",
                };
                let l = tokio::net::TcpListener::from_std(l).map_err(listen_err(what.into()))?;
                tasks.spawn(server::serve_tcp(l, protocol, rules.clone(), slots.clone(), limits));
            }
        }
        if let Some(l) = self.metrics_listener {
            let l = tokio::net::TcpListener::from_std(l).map_err(listen_err("metrics".into()))?;
            tasks.spawn(serve_metrics(l, signer.metrics().clone()));
        }
        if let Some(t) = self.tunnel {
            let health = signer.metrics().wireguard.clone();
            tasks
                .spawn(crate::wireguard::health::monitor(t.reader, t.expected, health, t.interval));
        }
        if let Some(file) = policy.metrics.file.clone() {
            let m = signer.metrics().clone();
            tasks.spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    if let Err(e) = m.write_file(&file) {
                        tracing::warn!(error = %e, path = %file.display(), "cannot write metrics");
                    }
                }
            });
        }
        let start = AuditEvent::Start {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            backend: signer.keyring().kind().to_string(),
            keys: signer.keyring().public_keys().iter().map(ToString::to_string).collect(),
            dangerous_dev_chain: policy.dangerous_dev_chain,
        };
        signer.audit(&start).map_err(ServerError::from)?;
        tracing::info!(
            keys = ?start_keys(&signer),
            unix = ?socket_paths,
            "rempart-signer serving chain {}",
            policy.chain_id
        );
        let shared = signer.shared_guard().cloned();
        if let Some(g) = shared.clone() {
            tasks.spawn(async move {
                loop {
                    tokio::time::sleep(crate::shared_guard::PING_EVERY).await;
                    let g = g.clone();
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || g.ping()).await {
                        tracing::error!(error = %e, "shared guard ping failed");
                    }
                }
            });
        }
        let lost = async {
            match &shared {
                Some(g) => g.lost().await,
                None => std::future::pending().await,
            }
        };
        let (reason, lost) = tokio::select! {
            reason = shutdown => (reason, false),
            () = lost => ("the shared guard's connection to etcd was lost".to_string(), true),
        };
        tasks.abort_all();
        for p in &socket_paths {
            let _ = std::fs::remove_file(p);
        }
        // Requests being answered finish first (within the request timeout), then the stop
        // line closes the audit log: nothing is signed after it. Connections waiting for a
        // request close at once; one in the middle of a request finishes it (refused as
        // stopping if it would sign) and closes.
        let stopped = signer.stop(&reason, policy.limits.request_timeout).await;
        // Every connection's task ends before the runtime does: a task that was answering on
        // its own thread (`block_in_place`) would otherwise go on after the runtime's timers
        // were shut down, and tokio panics there.
        let all = u32::try_from(policy.limits.max_connections).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout(policy.limits.request_timeout, slots.acquire_many(all));
        if drained.await.is_err() {
            tracing::warn!(
                "connections still open {:?} after the stop; the process ends anyway",
                policy.limits.request_timeout
            );
        }
        stopped.map_err(ServerError::from)?;
        tracing::info!("rempart-signer stopped: {reason}");
        if lost && let Some(g) = &shared {
            return Err(DaemonError::SharedGuard(crate::shared_guard::ClaimError::Unavailable {
                etcd: g.etcd(),
                why: "the connection was lost".into(),
            }));
        }
        Ok(())
    }
}

fn start_keys(signer: &Signer) -> Vec<String> {
    signer.keyring().public_keys().iter().map(ToString::to_string).collect()
}

/// Serves `GET /metrics` (anything else: 404) on the loopback admin listener.
async fn serve_metrics(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut backoff = AcceptBackoff::new();
    loop {
        let mut s = match listener.accept().await {
            Ok((s, _)) => {
                backoff.succeeded();
                s
            }
            Err(e) => {
                // Out of file descriptors, say: pause instead of spinning.
                let (wait, log) = backoff.failed();
                if log {
                    tracing::warn!(error = %e, "metrics listener: accept failed; retrying with a growing pause");
                }
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let read = tokio::time::timeout(std::time::Duration::from_secs(2), s.read(&mut buf));
            let Ok(Ok(n)) = read.await else { return };
            let head = &buf[..n];
            let resp = if head.starts_with(b"GET /metrics ") {
                let body = m.render();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
            };
            let _ = s.write_all(resp.as_bytes()).await;
        });
    }
}

/// With `enabled` (`--exit-with-stdin`), resolves once stdin reaches end of file or cannot be
/// read: the process holding the other end of the pipe (`rempart up`) has exited, even by
/// SIGKILL. Without, never resolves. The blocking read runs on a thread of its own, started when
/// the future is first polled (so, in the signer, after the sandbox: the thread is confined like
/// the others), and the process does not wait for it when it exits. `rempart-node` uses it too.
pub async fn stdin_closed(enabled: bool) {
    if !enabled {
        return std::future::pending().await;
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 256];
        let mut stdin = std::io::stdin().lock();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        drop(tx);
    });
    let _ = rx.await;
}
