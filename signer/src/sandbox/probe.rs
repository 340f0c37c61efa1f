//! The sandbox probe behind the hidden `rempart-signer sandbox-probe` subcommand: applies the
//! sandbox exactly as the daemon does, then attempts one named action, so that tests (which
//! must not sandbox their own harness) can spawn it and check how the process ends.
//!
//! `sandbox-probe --state-dir D --seccomp FILE --try ACTION [--target PATH]
//! [--memory-lock all|current|dangerous_off] [--read-only P]… [--read-write P]…
//! [--dangerous-allow-no-landlock] [--start-thread-first]`.
//!
//! Actions: `none`, `write-state`, `thread`, `echo`, `panic` (a thread panics and the process
//! lives on, backtraces asked for or not: what the signer must still do);
//! `open-outside` (read `--target`), `write-outside` (append to it), `execve`, `ptrace`,
//! `socket` (TCP), `syslog` (a Unix datagram socket, refused with EACCES rather than killed),
//! `fork` (what it must not). Outcomes: exit 0 when the action worked;
//! [`EXIT_REFUSED`] with `ACTION: refused: …` on stderr when a system call returned an error;
//! killed by SIGSYS when seccomp stopped it; [`EXIT_SANDBOX`] when the sandbox could not be
//! applied; [`EXIT_USAGE`] on bad arguments.
//! It must never run an action before the sandbox is fully applied.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use super::{MemoryLock, SandboxConfig};

/// Exit status when the attempted action failed with an error (it was refused, not killed).
pub const EXIT_REFUSED: u8 = 3;
/// Exit status when the sandbox itself could not be applied.
pub const EXIT_SANDBOX: u8 = 70;
/// Exit status for bad arguments.
pub const EXIT_USAGE: u8 = 64;

/// Why the probe's arguments were rejected or its action failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// A bad command line.
    #[error("sandbox-probe: {0}")]
    Usage(String),
    /// The action failed.
    #[error("{action}: refused: {source}")]
    Refused {
        /// The action.
        action: &'static str,
        /// The error the kernel returned.
        #[source]
        source: std::io::Error,
    },
}

/// The action to try once the sandbox is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    None,
    WriteState,
    Thread,
    Echo,
    Panic,
    OpenOutside,
    WriteOutside,
    Execve,
    Ptrace,
    Socket,
    Syslog,
    Fork,
}

impl Action {
    const ALL: [(&'static str, Action); 12] = [
        ("none", Action::None),
        ("write-state", Action::WriteState),
        ("thread", Action::Thread),
        ("echo", Action::Echo),
        ("panic", Action::Panic),
        ("open-outside", Action::OpenOutside),
        ("write-outside", Action::WriteOutside),
        ("execve", Action::Execve),
        ("ptrace", Action::Ptrace),
        ("socket", Action::Socket),
        ("syslog", Action::Syslog),
        ("fork", Action::Fork),
    ];

    fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, a)| *a == self).map_or("?", |(n, _)| n)
    }
}

struct Args {
    config: SandboxConfig,
    /// The state directory (also in `config`).
    state_dir: PathBuf,
    action: Action,
    target: PathBuf,
    /// Start a thread before applying, to prove [`super::apply`] refuses a threaded process.
    thread_first: bool,
}

fn parse(args: Vec<OsString>) -> Result<Args, ProbeError> {
    let usage = |m: String| ProbeError::Usage(m);
    let mut state_dir = None;
    let mut seccomp = None;
    let mut action = None;
    let mut target = PathBuf::from("/etc/passwd");
    let mut memory_lock = MemoryLock::All;
    let mut read_only = Vec::new();
    let mut read_write = Vec::new();
    let mut allow_no_landlock = false;
    let mut thread_first = false;
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let flag = flag.to_string_lossy().into_owned();
        match flag.as_str() {
            "--dangerous-allow-no-landlock" => {
                allow_no_landlock = true;
                continue;
            }
            "--start-thread-first" => {
                thread_first = true;
                continue;
            }
            _ => {}
        }
        let value = it.next().ok_or_else(|| usage(format!("{flag} needs a value")))?;
        match flag.as_str() {
            "--state-dir" => state_dir = Some(PathBuf::from(value)),
            "--seccomp" => seccomp = Some(PathBuf::from(value)),
            "--target" => target = PathBuf::from(value),
            "--read-only" => read_only.push(PathBuf::from(value)),
            "--read-write" => read_write.push(PathBuf::from(value)),
            "--memory-lock" => {
                memory_lock = value.to_string_lossy().parse().map_err(|e| usage(format!("{e}")))?;
            }
            "--try" => {
                let v = value.to_string_lossy();
                let found = Action::ALL.iter().find(|(n, _)| *n == v).map(|(_, a)| *a);
                let names: Vec<_> = Action::ALL.iter().map(|(n, _)| *n).collect();
                action = Some(found.ok_or_else(|| {
                    usage(format!("unknown action `{v}`; one of {}", names.join(", ")))
                })?);
            }
            other => return Err(usage(format!("unknown argument `{other}`"))),
        }
    }
    let state_dir = state_dir.ok_or_else(|| usage("--state-dir is required".to_owned()))?;
    let seccomp = seccomp.ok_or_else(|| usage("--seccomp is required".to_owned()))?;
    let action = action.ok_or_else(|| usage("--try is required".to_owned()))?;
    let mut config = SandboxConfig::new(&state_dir, seccomp);
    config.memory_lock = memory_lock;
    config.read_only_paths = read_only;
    config.read_write_paths = read_write;
    config.dangerous_allow_no_landlock = allow_no_landlock;
    Ok(Args { config, state_dir, action, target, thread_first })
}

/// Runs the probe with the arguments that follow `sandbox-probe`. Call it from `main` before
/// any thread or runtime exists.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let args = match parse(args) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // The echo listeners are bound before the sandbox, as the daemon binds its own.
    let listeners = match args.action {
        Action::Echo => match bind_echo(&args.state_dir) {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        _ => None,
    };
    // Parked until the process exits; it only has to exist while `apply` counts threads.
    let _early = args.thread_first.then(|| std::thread::spawn(std::thread::park));
    match super::apply(&args.config) {
        Ok(report) => eprintln!("{report}"),
        Err(e) => {
            eprintln!("sandbox-probe: {e}");
            return ExitCode::from(EXIT_SANDBOX);
        }
    }
    let result = match (args.action, listeners) {
        (Action::Echo, Some(listeners)) => echo(listeners, &args.state_dir),
        (action, _) => attempt(action, &args.state_dir, &args.target),
    };
    match result {
        Ok(what) => {
            println!("{}: ok: {what}", args.action.name());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_REFUSED)
        }
    }
}

fn refused(action: Action) -> impl FnOnce(std::io::Error) -> ProbeError {
    move |source| ProbeError::Refused { action: action.name(), source }
}

fn attempt(action: Action, state_dir: &Path, target: &Path) -> Result<String, ProbeError> {
    let err = refused(action);
    match action {
        Action::None | Action::Echo => Ok("sandbox applied".to_owned()),
        Action::WriteState => write_state(state_dir, "probe-state", b"probe\n")
            .map(|()| "wrote, fsync'd and renamed a file in the state directory".to_owned())
            .map_err(err),
        Action::Thread => std::thread::Builder::new()
            .name("probe-thread".to_owned())
            .spawn(|| 42)
            .map_err(err)?
            .join()
            .map(|n| format!("a thread ran and returned {n}"))
            .map_err(|_| ProbeError::Usage("the probe thread panicked".to_owned())),
        Action::Panic => match std::thread::Builder::new()
            .name("probe-panic".to_owned())
            .spawn(|| panic!("the probe panics on purpose"))
            .map_err(err)?
            .join()
        {
            Err(_) => Ok("a thread panicked and the process lives on".to_owned()),
            Ok(()) => Err(ProbeError::Usage("the probe thread did not panic".to_owned())),
        },
        Action::OpenOutside => {
            let mut buf = Vec::new();
            File::open(target).and_then(|mut f| f.read_to_end(&mut buf)).map_err(err)?;
            Ok(format!("read {} bytes from {}", buf.len(), target.display()))
        }
        Action::WriteOutside => {
            let mut file = OpenOptions::new().append(true).open(target).map_err(err)?;
            file.write_all(b"written by the probe\n").map_err(refused(action))?;
            Ok(format!("appended to {}", target.display()))
        }
        Action::Execve => Err(err(Command::new("/bin/true").exec())),
        Action::Ptrace => nix::sys::ptrace::traceme()
            .map(|()| "PTRACE_TRACEME succeeded".to_owned())
            .map_err(|e| err(e.into())),
        Action::Socket => {
            use rustix::net::{AddressFamily, SocketType, socket};
            socket(AddressFamily::INET, SocketType::STREAM, None)
                .map(|_| "created a TCP socket".to_owned())
                .map_err(|e| err(e.into()))
        }
        Action::Syslog => {
            // What glibc's syslog(3) does first, as a PKCS#11 module logging an error would.
            use rustix::net::{AddressFamily, SocketFlags, SocketType, socket_with};
            socket_with(AddressFamily::UNIX, SocketType::DGRAM, SocketFlags::CLOEXEC, None)
                .map(|_| "created a Unix datagram socket".to_owned())
                .map_err(|e| err(e.into()))
        }
        Action::Fork => {
            let status = Command::new("/bin/true").status().map_err(err)?;
            Ok(format!("a child process ran: {status}"))
        }
    }
}

/// The guard's way to persist: temp file, fsync, rename, fsync the directory.
fn write_state(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()?;
    let back = std::fs::read(dir.join(name))?;
    if back == bytes { Ok(()) } else { Err(std::io::Error::other("state file read back differs")) }
}

struct EchoListeners {
    unix: std::os::unix::net::UnixListener,
    tcp: std::net::TcpListener,
    /// Read before the sandbox: the policy has no getsockname.
    tcp_addr: std::net::SocketAddr,
}

fn bind_echo(state_dir: &Path) -> Result<EchoListeners, ProbeError> {
    let err = refused(Action::Echo);
    let path = state_dir.join("probe.sock");
    let unix = std::os::unix::net::UnixListener::bind(&path).map_err(err)?;
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").map_err(refused(Action::Echo))?;
    let tcp_addr = tcp.local_addr().map_err(refused(Action::Echo))?;
    Ok(EchoListeners { unix, tcp, tcp_addr })
}

/// The serving path: a multi-threaded tokio runtime started after the sandbox accepts one Unix
/// and one TCP connection, echoes a line on each, and persists state from the blocking pool.
fn echo(listeners: EchoListeners, state_dir: &Path) -> Result<String, ProbeError> {
    let err = || refused(Action::Echo);
    listeners.unix.set_nonblocking(true).map_err(err())?;
    listeners.tcp.set_nonblocking(true).map_err(err())?;
    let tcp_addr = listeners.tcp_addr;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(err())?;
    let state_dir = state_dir.to_path_buf();
    let served = runtime.block_on(async move {
        let unix = tokio::net::UnixListener::from_std(listeners.unix)?;
        let tcp = tokio::net::TcpListener::from_std(listeners.tcp)?;
        println!("ready tcp={tcp_addr}");
        std::io::stdout().flush()?;
        let (unix_stream, _) = unix.accept().await?;
        let uid = unix_stream.peer_cred()?.uid();
        let unix_line =
            tokio::spawn(echo_line(unix_stream)).await.map_err(std::io::Error::other)??;
        let (tcp_stream, peer) = tcp.accept().await?;
        tcp_stream.set_nodelay(true)?;
        let tcp_line =
            tokio::spawn(echo_line(tcp_stream)).await.map_err(std::io::Error::other)??;
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        tokio::task::spawn_blocking(move || write_state(&state_dir, "echo-state", b"echo\n"))
            .await
            .map_err(std::io::Error::other)??;
        Ok::<_, std::io::Error>(format!(
            "echoed {unix_line:?} to uid {uid} over unix and {tcp_line:?} to {peer} over tcp"
        ))
    });
    drop(runtime);
    served.map_err(err())
}

async fn echo_line<S>(stream: S) -> std::io::Result<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut stream = tokio::io::BufReader::new(stream);
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    stream.get_mut().write_all(line.as_bytes()).await?;
    stream.get_mut().shutdown().await?;
    Ok(line.trim_end().to_owned())
}
