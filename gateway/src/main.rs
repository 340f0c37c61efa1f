//! The `rempart-gateway` binary: argument parsing, logging setup and exit codes around the
//! library. It must stay thin: no gateway logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use rempart_gateway::ban::Bans;
use rempart_gateway::handover::{HandoverError, HandoverSocket, Predecessor, Sockets};
use rempart_gateway::{Config, GatewayError, Listeners, Policy, run};
use tokio::signal::unix::{SignalKind, signal};

/// mimalloc instead of glibc's allocator: the request path allocates and frees many small
/// buffers (headers, frames, records) from thread-local heaps, where glibc's arenas spent a
/// tenth of the gateway's user time under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for an invalid configuration (sysexits EX_USAGE).
const EXIT_CONFIG: u8 = 64;
/// Exit code for a runtime failure (sysexits EX_SOFTWARE).
const EXIT_RUNTIME: u8 = 70;

#[derive(Parser)]
#[command(name = "rempart-gateway", version, about = "TLS edge of the rempart perimeter")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a policy file: prints OK, or the error with its line and column (exit 64).
    Check {
        /// The policy file.
        file: PathBuf,
    },
    /// Serve: listen on the policy's addresses until SIGINT or SIGTERM; SIGHUP or a change of
    /// the file reloads the policy.
    Serve {
        /// The policy file.
        #[arg(long, default_value = "policies/gateway.toml")]
        policy: PathBuf,
        /// Stop as on SIGTERM when stdin reaches end of file: `rempart up` holds the other end
        /// of the pipe, so the gateway never outlives it, even when it is killed with SIGKILL.
        #[arg(long, hide = true)]
        exit_with_stdin: bool,
        /// Threads serving TLS connections, each with its own event loop (default: one per
        /// CPU core).
        #[arg(long)]
        workers: Option<usize>,
        /// Pin each worker to a CPU of its own: the first CPUs this process may run on (set
        /// them with `taskset` or systemd's `CPUAffinity=`). For a machine, or CPUs, the
        /// gateway has to itself: pinned workers keep a core each under load instead of
        /// sometimes taking turns on one (which doubled the HTTP/1.1 p99 latency in
        /// BENCHMARKS.md).
        #[arg(long)]
        pin_workers: bool,
        /// Unix socket (created mode 0600) on which a successor started with `--take-over` may
        /// take the listening sockets, for an upgrade or a restart that refuses no connection.
        #[arg(long, value_name = "PATH")]
        handover: Option<PathBuf>,
        /// Take the listening sockets of the gateway answering on `--handover` instead of
        /// binding them; it then stops accepting, drains its connections and exits. With none
        /// answering there (the first start), bind them.
        #[arg(long, requires = "handover")]
        take_over: bool,
    },
    /// Write a development CA and a localhost server certificate (never for production).
    DevCert {
        /// Directory to write ca.pem, server.pem and server.key into.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { file } => match Policy::load(&file) {
            Ok(_) => {
                println!("OK");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Serve { policy, exit_with_stdin, workers, pin_workers, handover, take_over } => {
            let handover = handover.map(|path| Handover { path, take_over });
            serve(policy, exit_with_stdin, workers, pin_workers, handover)
        }
        Command::DevCert { out } => match rempart_gateway::dev_cert::write_dev_certs(&out) {
            Ok(files) => {
                println!(
                    "wrote {}, {} and {} (development only)",
                    files.ca.display(),
                    files.cert.display(),
                    files.key.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_RUNTIME)
            }
        },
    }
}

/// The listeners: bound, or taken from a running gateway (with its [`Predecessor`] to complete).
/// With `--handover`, also copies of them to hand over in turn, and the handover socket, which
/// a successor binds only after its predecessor has released the path.
async fn start_listening(
    policy: &Policy,
    handover: Option<Handover>,
) -> Result<(Listeners, Option<Predecessor>, Option<(Option<HandoverSocket>, Sockets)>), GatewayError>
{
    let Some(h) = handover else {
        return Ok((Listeners::bind(policy).await?, None, None));
    };
    let taken = if h.take_over {
        match Listeners::take_over(policy, &h.path).await {
            Ok(taken) => Some(taken),
            // Nobody to take over from (the first start, or after a crash): bind. A gateway
            // that still holds the ports without answering makes the bind fail, as it should.
            Err(GatewayError::Handover(HandoverError::Connect { source, .. }))
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                tracing::info!(
                    path = %h.path.display(),
                    "no gateway answers on the handover socket: binding the listeners"
                );
                None
            }
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    let (listeners, predecessor, socket) = match taken {
        Some((listeners, predecessor)) => (listeners, Some(predecessor), None),
        None => {
            let listeners = Listeners::bind(policy).await?;
            (listeners, None, Some(HandoverSocket::bind(&h.path)?))
        }
    };
    let sockets = Sockets::of(&listeners).map_err(|e| HandoverError::Bind {
        path: h.path.clone(),
        reason: format!("cannot keep copies of the listening sockets to hand over: {e}"),
    })?;
    Ok((listeners, predecessor, Some((socket, sockets))))
}

/// With `enabled` (`--exit-with-stdin`), resolves once stdin, a pipe from `rempart up`, reaches
/// end of file or fails: `up` has exited, even by SIGKILL. Read on the runtime, without a thread.
/// Without `enabled`, or when stdin is not a pipe (logged), never resolves.
async fn stdin_closed(enabled: bool) {
    use std::os::fd::AsFd;
    use tokio::io::AsyncReadExt;
    if enabled {
        let stdin = std::io::stdin().as_fd().try_clone_to_owned();
        match stdin.and_then(tokio::net::unix::pipe::Receiver::from_owned_fd) {
            Ok(mut pipe) => {
                let mut buf = [0u8; 256];
                while !matches!(pipe.read(&mut buf).await, Ok(0) | Err(_)) {}
                return;
            }
            Err(e) => tracing::warn!(error = %e, "--exit-with-stdin ignored: stdin is no pipe"),
        }
    }
    std::future::pending::<()>().await
}

/// `--handover PATH` and `--take-over`.
struct Handover {
    path: PathBuf,
    take_over: bool,
}

fn serve(
    file: PathBuf,
    exit_with_stdin: bool,
    workers: Option<usize>,
    pin_workers: bool,
    handover: Option<Handover>,
) -> ExitCode {
    // Its own thread writes the log: a stalled reader of stdout costs log lines, counted in the
    // metrics, never the serving (see `rempart_core::log`).
    let (log, _flushed_at_exit) = rempart_core::log::background(std::io::stdout(), "gateway-log");
    tracing_subscriber::fmt()
        .json()
        .with_writer(log)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .init();
    let policy = match Policy::load(&file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let workers = workers
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1)
        .max(1);
    let cpus = if pin_workers {
        match rempart_gateway::server::worker_cpus(workers) {
            Ok(cpus) => cpus,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    } else {
        Vec::new()
    };
    // This thread is worker 0 and also runs the admin listener, health checks and reloads;
    // `run` starts the other workers, each on its own single-thread runtime.
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all();
    if !cpus.is_empty()
        && let Ok(allowed) = rustix::thread::sched_getaffinity(None)
    {
        // The runtime's blocking threads (the ACME client's name lookups, say) start from
        // worker 0, pinned by then: they go back to every CPU the process may use.
        builder.on_thread_start(move || {
            let _ = rustix::thread::sched_setaffinity(None, &allowed);
        });
    }
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    rt.block_on(async move {
        let (listeners, mut predecessor, handover) = match start_listening(&policy, handover).await
        {
            Ok(started) => started,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(EXIT_RUNTIME);
            }
        };
        // Shared with the handover socket, which carries the bans to a successor; a successor
        // starts with its predecessor's.
        let bans = Arc::new(Bans::new(policy.access().max_tracked_offenders));
        let mut buckets = Vec::new();
        if let Some(p) = predecessor.as_mut() {
            let carried = p.take_bans();
            let offered = carried.len();
            let taken = bans.restore(carried);
            tracing::info!(predecessor = p.pid(), offered, taken, "bans carried over");
            buckets = p.take_buckets();
        }
        // Filled by `run` once it serves: the handover socket takes the buckets from it.
        let serving = rempart_gateway::handover::Serving::default();
        let config = Config {
            policy_file: Some(file),
            workers,
            cpus,
            bans: Some(bans.clone()),
            serving: Some(serving.clone()),
            buckets,
            ..Config::default()
        };
        let reload = config.reload.clone();
        // Installed before anything is served: SIGHUP's default action ends the process, so a
        // reload asked for as soon as the listeners answer must already find the handler.
        let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            eprintln!("cannot install signal handlers");
            return ExitCode::from(EXIT_RUNTIME);
        };
        // `run` polls this only once it serves: the moment to tell a predecessor to stop.
        let shutdown = async move {
            let mut handover = handover;
            if let Some(p) = predecessor {
                let pid = p.pid();
                match p.complete().await {
                    Ok(socket) => {
                        tracing::info!(predecessor = pid, "took over its listeners; it drains");
                        handover = handover.map(|(_, sockets)| (Some(socket), sockets));
                    }
                    Err(e) => tracing::warn!(
                        predecessor = pid,
                        error = %e,
                        "serving, but this gateway cannot be taken over in turn until restarted"
                    ),
                }
            }
            let taken = async move {
                match handover {
                    Some((Some(socket), sockets)) => socket.serve(sockets, bans, serving).await,
                    _ => std::future::pending().await,
                }
            };
            let closed = stdin_closed(exit_with_stdin);
            tokio::pin!(closed, taken);
            loop {
                tokio::select! {
                    _ = hup.recv() => reload.notify_one(),
                    _ = term.recv() => return,
                    _ = int.recv() => return,
                    _ = &mut closed => {
                        tracing::info!("stdin closed: stopping");
                        return;
                    }
                    successor = &mut taken => {
                        tracing::info!(successor, "listeners handed over: draining, then exiting");
                        return;
                    }
                }
            }
        };
        match run(listeners, policy, config, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(
                e @ (GatewayError::Tls(_) | GatewayError::Policy(_) | GatewayError::Document(_)),
            ) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_CONFIG)
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_RUNTIME)
            }
        }
    })
}
