//! The sandboxed signer's WireGuard statistics on boringtun, read by a confined child process.
//!
//! boringtun answers one UAPI request per connection, and the signer's sandbox forbids opening
//! another socket. So before the sandbox closes, the signer starts itself again as the hidden
//! `rempart-signer wg-stats-reader --socket PATH …` ([`StatsChild::spawn`]), with its stdin and
//! stdout as pipes and its environment cleared. The child confines itself at once with the
//! signer's own sandbox code ([`crate::sandbox::apply`]): parent-death signal, RLIMIT_CORE=0,
//! not dumpable, memory locked, no_new_privs, landlock granting nothing but reading the UAPI
//! directory, every capability dropped, and its own seccomp allowlist
//! (`policies/seccomp/wg-stats-reader.x86_64.json`, beside the signer's: [`policy_beside`]),
//! which allows Unix stream sockets and `connect` and little else. It then says whether it is
//! confined in a first frame, which the signer waits for before its own sandbox closes (a child
//! that cannot confine itself exits; the signer then runs without statistics and says why).
//!
//! The protocol on the pipes: the signer writes one request byte (a sequence number, never 0);
//! the child connects to the UAPI socket, sends `get=1`, reads the answer up to its blank line
//! (at most 1 MiB, [`super::health::uapi_answer`]), removes the `private_key` and
//! `preshared_key` lines, and writes back a frame: the request byte, 0 (answer) or 1 (error
//! text), a big-endian u32 length, then that many bytes. The first frame (number 0) is the
//! child's report on its own confinement. The signer reads frames on a thread started after its
//! sandbox, waits for the answer with a deadline, and drops answers that come after their
//! deadline. It parses the answer with [`super::health::parse_uapi`] as it parses wireguard-go's.
//!
//! The child exits when its stdin reaches end of file (the signer closed it or died) and is
//! killed by the kernel when the signer's main thread ends (parent-death signal). The sandboxed
//! signer cannot start a new child, nor kill or reap one (its seccomp policy has no `kill` and
//! no `wait4`): a dead child is an error in `Status`, the metrics and the log until the signer is
//! restarted, and the exited child is reaped by init once the signer exits.
//!
//! This module must never let a private or preshared key cross the pipe, never let the signer
//! wait on the pipe without a deadline once it serves, and never run the child unconfined: it
//! answers nothing before its sandbox is fully applied.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::sandbox::probe::{EXIT_REFUSED, EXIT_SANDBOX, EXIT_USAGE};
use crate::sandbox::{MemoryLock, SandboxConfig};

/// The hidden subcommand of `rempart-signer` that runs the child.
pub const SUBCOMMAND: &str = "wg-stats-reader";

/// How long the signer waits for one answer once it serves.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// The frame status of an answer.
const ANSWER: u8 = 0;
/// The frame status of an error text.
const ERROR: u8 = 1;
/// A frame header: request byte, status, u32 length.
const HEADER: usize = 6;

/// The seccomp policy of the child, beside the signer's own (`signer_policy`):
/// `wg-stats-reader.ARCH.json` in the same directory.
pub fn policy_beside(signer_policy: &Path) -> PathBuf {
    signer_policy.with_file_name(format!("wg-stats-reader.{}.json", std::env::consts::ARCH))
}

/// The warning `check` gives for a signer `policy` whose tunnel would have no per-peer
/// counters on boringtun because the child's seccomp policy ([`policy_beside`] the signer's) is
/// not installed; `None` when nothing is lost (no `[wireguard]`, the sandbox disabled, or the
/// file there). A warning, never an error: the signer runs without it, and on wireguard-go or
/// the kernel it does not need it.
pub fn missing_policy_warning(policy: &crate::policy::Policy) -> Option<String> {
    let needed = policy.wireguard.is_some() && !policy.sandbox.dangerous_disabled;
    missing_policy(needed, &policy.sandbox.seccomp_policy)
}

/// [`missing_policy_warning`] for a signer whose seccomp policy is `signer_policy`; `needed`:
/// it has `[wireguard]` and a sandbox.
fn missing_policy(needed: bool, signer_policy: &Path) -> Option<String> {
    let reader = policy_beside(signer_policy);
    if !needed || reader.is_file() {
        return None;
    }
    Some(format!(
        "[wireguard] is configured but {} is missing: on boringtun (what userspace = \"auto\" \
         picks when boringtun-cli is on PATH) this signer cannot start the child that reads the \
         tunnel's per-peer handshake age and byte counters, so Status and the metrics lose \
         them (it still signs; wireguard-go and the kernel do not need the file); install \
         policies/seccomp/wg-stats-reader.{}.json there, beside {}",
        reader.display(),
        std::env::consts::ARCH,
        signer_policy.display()
    ))
}

/// How to start and confine the child: the program (the signer itself) and the signer's
/// sandbox settings that the child applies to itself too.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReaderProcess {
    /// The `rempart-signer` executable (the running one: `std::env::current_exe`).
    pub program: PathBuf,
    /// The child's seccomp policy ([`policy_beside`] the signer's).
    pub seccomp_policy: PathBuf,
    /// How the child locks its memory (it holds the UAPI answer, private key included, until
    /// it removes that line).
    pub memory_lock: MemoryLock,
    /// Whether the child may run on a kernel without landlock (the signer's setting).
    pub dangerous_allow_no_landlock: bool,
}

impl ReaderProcess {
    /// The child run from `program` with the seccomp policy at `seccomp_policy`, every page
    /// locked and landlock required (set the public fields to change that).
    pub fn new(program: impl Into<PathBuf>, seccomp_policy: impl Into<PathBuf>) -> ReaderProcess {
        ReaderProcess {
            program: program.into(),
            seccomp_policy: seccomp_policy.into(),
            memory_lock: MemoryLock::All,
            dangerous_allow_no_landlock: false,
        }
    }

    /// The settings for the running program, with the signer's seccomp policy path (the
    /// child's is [`policy_beside`] it), memory lock and landlock settings.
    pub fn current(
        signer_policy: &Path,
        memory_lock: MemoryLock,
        dangerous_allow_no_landlock: bool,
    ) -> Result<ReaderProcess, String> {
        let program = std::env::current_exe()
            .map_err(|e| format!("cannot find the running rempart-signer executable: {e}"))?;
        let mut process = ReaderProcess::new(program, policy_beside(signer_policy));
        process.memory_lock = memory_lock;
        process.dangerous_allow_no_landlock = dangerous_allow_no_landlock;
        Ok(process)
    }
}

/// One frame from the child.
#[derive(Debug)]
struct Frame {
    request: u8,
    body: Result<String, String>,
}

/// Reads one frame; `None` at end of file before a frame starts. Refuses a frame longer than a
/// UAPI answer may be, an unknown status, or text that is not UTF-8.
fn read_frame(from: &mut impl Read) -> Result<Option<Frame>, String> {
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        match from.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err("the pipe ended inside a frame header".into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read the pipe: {e}")),
        }
    }
    let [request, status, l0, l1, l2, l3] = header;
    let len = u64::from(u32::from_be_bytes([l0, l1, l2, l3]));
    if len > super::health::MAX_ANSWER {
        return Err(format!(
            "a frame of {len} bytes, over the {} limit",
            super::health::MAX_ANSWER
        ));
    }
    let mut body = Vec::new();
    from.take(len).read_to_end(&mut body).map_err(|e| format!("cannot read the pipe: {e}"))?;
    if body.len() as u64 != len {
        return Err("the pipe ended inside a frame".into());
    }
    let text = String::from_utf8(body).map_err(|_| "a frame that is not UTF-8".to_string())?;
    let body = match status {
        ANSWER => Ok(text),
        ERROR => Err(text),
        other => return Err(format!("a frame with unknown status {other}")),
    };
    Ok(Some(Frame { request, body }))
}

/// Encodes one frame (an error text is cut to 4 KiB).
fn frame(request: u8, body: Result<&str, &str>) -> Vec<u8> {
    let (status, text) = match body {
        Ok(t) => (ANSWER, t),
        Err(t) => (ERROR, t.get(..4096).unwrap_or(t)),
    };
    let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(HEADER + text.len());
    out.push(request);
    out.push(status);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    out
}

/// The UAPI answer without its `private_key` and `preshared_key` lines (the only secrets a
/// `get=1` answer holds), in memory that is zeroed when dropped.
pub(super) fn without_secrets(answer: &str) -> Zeroizing<String> {
    let mut kept = Zeroizing::new(String::with_capacity(answer.len()));
    for line in answer.split_inclusive('\n') {
        if !line.starts_with("private_key=") && !line.starts_with("preshared_key=") {
            kept.push_str(line);
        }
    }
    kept
}

/// The signer's end: the child, its pipes, and the thread that reads its frames.
#[derive(Debug)]
pub struct StatsChild {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Until the first request, which hands it to the reading thread (started then, after
    /// the signer's sandbox: a thread before it would escape landlock).
    stdout: Option<ChildStdout>,
    frames: Option<Receiver<Result<Frame, String>>>,
    request: u8,
    /// Why the child is gone, once it is (for good: it cannot be started again).
    gone: Option<String>,
    timeout: Duration,
}

impl StatsChild {
    /// Starts the child for the UAPI socket at `socket` and waits for its report that it is
    /// confined. Call it before the signer's sandbox closes (it executes a program) and from
    /// the thread that lives as long as the process (the child is killed when it ends).
    pub fn spawn(process: &ReaderProcess, socket: &Path) -> Result<StatsChild, String> {
        let mut command = Command::new(&process.program);
        command
            .arg(SUBCOMMAND)
            .arg("--socket")
            .arg(socket)
            .arg("--seccomp")
            .arg(&process.seccomp_policy)
            .args(["--memory-lock", process.memory_lock.as_str()]);
        if process.dangerous_allow_no_landlock {
            command.arg("--dangerous-allow-no-landlock");
        }
        // No environment: the signer's may hold a PKCS#11 PIN.
        let mut child = command
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {} {SUBCOMMAND}: {e}", process.program.display()))?;
        let (Some(stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the statistics reader process has no pipes".into());
        };
        // Before the sandbox, on the only thread: the child answers at once, or exits.
        let why = match read_frame(&mut stdout) {
            Ok(Some(Frame { request: 0, body: Ok(_) })) => None,
            Ok(Some(Frame { body: Err(e), .. })) => Some(e),
            Ok(Some(_)) => Some("its first frame is not its report".into()),
            Ok(None) => Some("it exited at once (its stderr is in this log)".into()),
            Err(e) => Some(e),
        };
        if let Some(why) = why {
            drop(stdin);
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the WireGuard statistics reader process did not start: {why}"));
        }
        Ok(StatsChild {
            child,
            stdin: Some(stdin),
            stdout: Some(stdout),
            frames: None,
            request: 0,
            gone: None,
            timeout: ANSWER_TIMEOUT,
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Records that the child is gone and returns the error every later read repeats.
    fn gone(&mut self, why: &str) -> String {
        let text = format!(
            "the WireGuard statistics reader process (pid {}) is gone ({why}); the sandboxed \
             signer cannot start another: restart the signer to have tunnel counters again \
             (signing is not affected)",
            self.child.id()
        );
        self.gone = Some(text.clone());
        text
    }

    /// One UAPI `get=1` answer (without secrets) through the child, within its deadline.
    pub fn answer(&mut self) -> Result<String, String> {
        if let Some(why) = &self.gone {
            return Err(why.clone());
        }
        if self.frames.is_none() {
            let Some(stdout) = self.stdout.take() else { return Err(self.gone("no pipe")) };
            let (tx, rx) = sync_channel(4);
            let started = std::thread::Builder::new()
                .name("wg-stats-pipe".into())
                .spawn(move || forward(stdout, &tx));
            if let Err(e) = started {
                return Err(self.gone(&format!("cannot start the thread reading its pipe: {e}")));
            }
            self.frames = Some(rx);
        }
        self.request = self.request.wrapping_add(1).max(1);
        let request = self.request;
        let written = match self.stdin.as_mut() {
            Some(stdin) => stdin.write_all(&[request]).and_then(|()| stdin.flush()),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        };
        if let Err(e) = written {
            return Err(self.gone(&format!("cannot write to it: {e}")));
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(frames) = &self.frames else { return Err(self.gone("no pipe")) };
            match frames.recv_timeout(left) {
                Ok(Ok(Frame { request: r, body })) if r == request => return body,
                // The answer to a request that timed out.
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(self.gone(&e)),
                Err(RecvTimeoutError::Disconnected) => return Err(self.gone("its pipe closed")),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "the WireGuard statistics reader process (pid {}) did not answer within \
                         {} s; is the userspace WireGuard program stuck?",
                        self.child.id(),
                        self.timeout.as_secs()
                    ));
                }
            }
        }
    }
}

impl Drop for StatsChild {
    /// Closes the child's stdin: it exits at end of file (the sandboxed signer may neither kill
    /// nor reap it; the kernel kills it when the signer's main thread ends).
    fn drop(&mut self) {
        self.stdin.take();
    }
}

/// The reading thread: forwards frames until the pipe ends or breaks, then says why.
fn forward(mut stdout: ChildStdout, to: &SyncSender<Result<Frame, String>>) {
    loop {
        let next = match read_frame(&mut stdout) {
            Ok(Some(f)) => Ok(f),
            Ok(None) => Err("it exited".to_string()),
            Err(e) => Err(e),
        };
        let last = next.is_err();
        if to.send(next).is_err() || last {
            return;
        }
    }
}

/// What the child's hidden probe mode tries once it is confined, instead of serving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Try {
    Execve,
    OpenOutside,
    TcpSocket,
    Serve,
}

struct Args {
    socket: PathBuf,
    seccomp: PathBuf,
    memory_lock: MemoryLock,
    allow_no_landlock: bool,
    attempt: Try,
    target: PathBuf,
}

fn parse(args: Vec<OsString>) -> Result<Args, String> {
    let mut socket = None;
    let mut seccomp = None;
    let mut memory_lock = MemoryLock::All;
    let mut allow_no_landlock = false;
    let mut attempt = Try::Serve;
    let mut target = PathBuf::from("/etc/passwd");
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let flag = flag.to_string_lossy().into_owned();
        if flag == "--dangerous-allow-no-landlock" {
            allow_no_landlock = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--socket" => socket = Some(PathBuf::from(value)),
            "--seccomp" => seccomp = Some(PathBuf::from(value)),
            "--target" => target = PathBuf::from(value),
            "--memory-lock" => {
                memory_lock = value.to_string_lossy().parse().map_err(|e| format!("{e}"))?;
            }
            "--try" => {
                attempt = match value.to_string_lossy().as_ref() {
                    "execve" => Try::Execve,
                    "open-outside" => Try::OpenOutside,
                    "socket" => Try::TcpSocket,
                    other => {
                        return Err(format!(
                            "unknown action `{other}`: one of execve, open-outside, socket"
                        ));
                    }
                };
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Args {
        socket: socket.ok_or("--socket is required")?,
        seccomp: seccomp.ok_or("--seccomp is required")?,
        memory_lock,
        allow_no_landlock,
        attempt,
        target,
    })
}

/// The child: `rempart-signer wg-stats-reader --socket PATH --seccomp FILE [--memory-lock M]
/// [--dangerous-allow-no-landlock] [--try execve|open-outside|socket [--target PATH]]`. Call
/// it from `main` before any thread exists. Exit 0 at end of stdin, [`EXIT_SANDBOX`] when it
/// cannot confine itself, [`EXIT_USAGE`] on bad arguments; with `--try`, exit 0 when the action
/// worked, [`EXIT_REFUSED`] when it failed with an error, or death by SIGSYS.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let args = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{SUBCOMMAND}: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut out = std::io::stdout().lock();
    let confined = confine(&args);
    let hello = match &confined {
        Ok(report) => frame(0, Ok(report)),
        Err(e) => frame(0, Err(e)),
    };
    let told = out.write_all(&hello).and_then(|()| out.flush());
    match confined {
        Ok(report) => eprintln!("{SUBCOMMAND}: {report}"),
        Err(e) => {
            eprintln!("{SUBCOMMAND}: {e}");
            return ExitCode::from(EXIT_SANDBOX);
        }
    }
    if told.is_err() {
        return ExitCode::SUCCESS;
    }
    if args.attempt != Try::Serve {
        return match attempt(args.attempt, &args.target) {
            Ok(what) => {
                eprintln!("{SUBCOMMAND}: {what}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{SUBCOMMAND}: refused: {e}");
                ExitCode::from(EXIT_REFUSED)
            }
        };
    }
    let mut stdin = std::io::stdin().lock();
    let mut request = [0u8; 1];
    loop {
        match stdin.read(&mut request) {
            Ok(0) => return ExitCode::SUCCESS,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return ExitCode::SUCCESS,
        }
        let body = query(&args.socket);
        let reply = frame(request[0], body.as_ref().map(|a| a.as_str()).map_err(String::as_str));
        if out.write_all(&reply).and_then(|()| out.flush()).is_err() {
            return ExitCode::SUCCESS;
        }
    }
}

/// The child's sandbox: the signer's steps, with no state directory, the UAPI directory
/// readable and the child's own seccomp policy. The parent-death signal comes first, so that
/// the child never outlives a signer that died without closing the pipe.
fn confine(args: &Args) -> Result<String, String> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|e| format!("cannot set the parent-death signal: {e}"))?;
    let dir =
        args.socket.parent().filter(|d| !d.as_os_str().is_empty()).ok_or_else(|| {
            format!("{} is not a socket path in a directory", args.socket.display())
        })?;
    let mut cfg = SandboxConfig::without_state_dir(&args.seccomp);
    cfg.read_only_paths = vec![dir.to_path_buf()];
    cfg.memory_lock = args.memory_lock;
    cfg.dangerous_allow_no_landlock = args.allow_no_landlock;
    crate::sandbox::apply(&cfg)
        .map(|report| report.to_string())
        .map_err(|e| format!("the WireGuard statistics reader cannot confine itself: {e}"))
}

/// One UAPI exchange on a fresh connection, secrets removed before anything leaves.
fn query(socket: &Path) -> Result<Zeroizing<String>, String> {
    let stream = super::interface::connect_uapi_at(socket)?;
    let answer = Zeroizing::new(super::health::uapi_answer(&stream)?);
    Ok(without_secrets(&answer))
}

/// The probe mode's action, after the sandbox.
fn attempt(what: Try, target: &Path) -> Result<String, std::io::Error> {
    match what {
        Try::Execve => {
            use std::os::unix::process::CommandExt as _;
            Err(Command::new("/bin/true").exec())
        }
        Try::OpenOutside => {
            let mut text = Vec::new();
            std::fs::File::open(target)?.read_to_end(&mut text)?;
            Ok(format!("read {} bytes from {}", text.len(), target.display()))
        }
        Try::TcpSocket => {
            use rustix::net::{AddressFamily, SocketType, socket};
            socket(AddressFamily::INET, SocketType::STREAM, None)?;
            Ok("created a TCP socket".into())
        }
        Try::Serve => Ok("nothing tried".into()),
    }
}

#[cfg(test)]
mod tests;
