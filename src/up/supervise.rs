//! The children of `rempart up`: each started as its own process (in its own process group, so
//! that a terminal's Ctrl-C reaches `up` alone and `up` decides the order), its stdout and
//! stderr streamed as readable lines prefixed with its name, its exit noticed at once.
//!
//! The supervisor never leaves a child running behind it: it stops them in reverse start order
//! (SIGTERM, then SIGKILL after a deadline), and `kill_on_drop` covers an early return. When `up`
//! itself is killed (SIGKILL, nothing runs), each child still notices: its stdin is a pipe whose
//! only writer is this supervisor, and the programs started with `--exit-with-stdin` stop as on
//! SIGTERM when it reaches end of file. It only signals the process ids it started, and never
//! after it has seen the child exit.

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::UpError;

/// How long a child has to stop after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// Pause between two readiness attempts.
const POLL: Duration = Duration::from_millis(100);

/// What a child reported.
enum Event {
    Log(usize, String),
    Exited(usize, String),
}

/// Why the perimeter is coming down.
#[derive(Debug)]
pub enum Stop {
    /// The operator sent SIGINT or SIGTERM to `up`.
    Signal(&'static str),
    /// A child exited on its own: its name and exit status.
    Died(String, String),
    /// A child did not become ready in time: what was awaited.
    Timeout(String),
}

/// The running children.
pub struct Supervisor {
    names: Vec<String>,
    pids: Vec<u32>,
    /// The write end of each child's stdin, held open until the supervisor is dropped (or the
    /// process dies): its closing is what tells a child started with `--exit-with-stdin` to stop.
    stdins: Vec<Option<tokio::process::ChildStdin>>,
    exited: Vec<bool>,
    tx: mpsc::UnboundedSender<Event>,
    rx: mpsc::UnboundedReceiver<Event>,
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Supervisor {
    /// A supervisor with no children; from now on SIGINT and SIGTERM are its to handle.
    pub fn new() -> Result<Supervisor, UpError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let sig = |k| signal(k).map_err(|e| UpError::Setup(format!("signal handlers: {e}")));
        Ok(Supervisor {
            names: Vec::new(),
            pids: Vec::new(),
            stdins: Vec::new(),
            exited: Vec::new(),
            tx,
            rx,
            int: sig(SignalKind::interrupt())?,
            term: sig(SignalKind::terminate())?,
        })
    }

    /// The name and process id of every child started so far.
    pub fn children(&self) -> impl Iterator<Item = (&str, u32)> {
        self.names.iter().map(String::as_str).zip(self.pids.iter().copied())
    }

    /// Starts `program args` as child `name`, with `env` added to its environment and a pipe
    /// from this supervisor as its stdin (pass `--exit-with-stdin` for the child to stop when
    /// `up` is gone).
    pub fn spawn(
        &mut self,
        name: &str,
        program: &Path,
        args: &[OsString],
        env: &[(&str, OsString)],
        out: &mut dyn Write,
    ) -> Result<(), UpError> {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| UpError::io(program, e))?;
        let idx = self.names.len();
        let pid = child.id().unwrap_or(0);
        self.names.push(name.to_string());
        self.pids.push(pid);
        self.stdins.push(child.stdin.take());
        self.exited.push(false);
        let _ = writeln!(out, "{:>8} | started {name} (pid {pid})", "up");
        if let Some(stdout) = child.stdout.take() {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let _ = tx.send(Event::Log(idx, line));
                }
            });
        }
        if let Some(stderr) = child.stderr.take() {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let _ = tx.send(Event::Log(idx, line));
                }
            });
        }
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(s) => s.to_string(),
                Err(e) => format!("cannot be waited for: {e}"),
            };
            let _ = tx.send(Event::Exited(idx, status));
        });
        Ok(())
    }

    /// Handles one event: prints a log line, or records an exit and returns it.
    fn handle(&mut self, event: Event, out: &mut dyn Write) -> Option<(String, String)> {
        match event {
            Event::Log(idx, line) => {
                let _ = writeln!(out, "{:>8} | {}", self.names[idx], readable(&line));
                None
            }
            Event::Exited(idx, status) => {
                self.exited[idx] = true;
                self.stdins[idx] = None;
                Some((self.names[idx].clone(), status))
            }
        }
    }

    /// Polls `probe` until it answers true, streaming logs meanwhile; fails when a child exits,
    /// a signal arrives or `limit` passes.
    pub async fn wait_until<F, Fut>(
        &mut self,
        what: &str,
        limit: Duration,
        out: &mut dyn Write,
        mut probe: F,
    ) -> Result<(), Stop>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + limit;
        let mut attempt = Box::pin(delayed(Duration::ZERO, probe()));
        loop {
            tokio::select! {
                Some(event) = self.rx.recv() => {
                    if let Some((name, status)) = self.handle(event, out) {
                        return Err(Stop::Died(name, status));
                    }
                }
                _ = self.int.recv() => return Err(Stop::Signal("SIGINT")),
                _ = self.term.recv() => return Err(Stop::Signal("SIGTERM")),
                ready = &mut attempt => {
                    if ready {
                        return Ok(());
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(Stop::Timeout(what.to_string()));
                    }
                    attempt = Box::pin(delayed(POLL, probe()));
                }
            }
        }
    }

    /// Streams logs until a signal arrives or a child exits.
    pub async fn watch(&mut self, out: &mut dyn Write) -> Stop {
        loop {
            tokio::select! {
                Some(event) = self.rx.recv() => {
                    if let Some((name, status)) = self.handle(event, out) {
                        return Stop::Died(name, status);
                    }
                }
                _ = self.int.recv() => return Stop::Signal("SIGINT"),
                _ = self.term.recv() => return Stop::Signal("SIGTERM"),
            }
        }
    }

    /// Stops every running child in reverse start order: SIGTERM, then SIGKILL after
    /// [`STOP_GRACE`]. Returns the names of children that had to be killed.
    pub async fn stop_all(&mut self, out: &mut dyn Write) -> Vec<String> {
        let mut killed = Vec::new();
        for idx in (0..self.names.len()).rev() {
            if self.exited[idx] {
                continue;
            }
            let name = self.names[idx].clone();
            let _ = writeln!(out, "{:>8} | stopping {name} (pid {})", "up", self.pids[idx]);
            self.signal(idx, Signal::TERM);
            if !self.wait_exit(idx, STOP_GRACE, out).await {
                let _ = writeln!(out, "{:>8} | {name} ignored SIGTERM: killing it", "up");
                self.signal(idx, Signal::KILL);
                self.wait_exit(idx, STOP_GRACE, out).await;
                killed.push(name);
            }
        }
        killed
    }

    fn signal(&self, idx: usize, sig: Signal) {
        if self.exited[idx] {
            return;
        }
        if let Some(pid) = i32::try_from(self.pids[idx]).ok().and_then(Pid::from_raw) {
            let _ = kill_process(pid, sig);
        }
    }

    /// Streams logs until child `idx` has exited (true) or `limit` passes (false). Exits of
    /// other children are recorded and reported.
    async fn wait_exit(&mut self, idx: usize, limit: Duration, out: &mut dyn Write) -> bool {
        let deadline = tokio::time::sleep(limit);
        tokio::pin!(deadline);
        while !self.exited[idx] {
            tokio::select! {
                event = self.rx.recv() => match event {
                    Some(event) => {
                        if let Some((name, status)) = self.handle(event, out) {
                            let _ = writeln!(out, "{:>8} | {name} stopped: {status}", "up");
                        }
                    }
                    None => return false,
                },
                _ = &mut deadline => return false,
            }
        }
        true
    }
}

async fn delayed<F: Future<Output = bool>>(pause: Duration, probe: F) -> bool {
    tokio::time::sleep(pause).await;
    probe.await
}

/// A log line made readable: a JSON log record (tracing's format) becomes
/// `LEVEL message key=value …`; any other line is kept as it is.
pub fn readable(line: &str) -> String {
    let Ok(serde_json::Value::Object(record)) = serde_json::from_str::<serde_json::Value>(line)
    else {
        return line.to_string();
    };
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut parts = Vec::new();
    if let Some(level) = record.get("level") {
        parts.push(format!("{:<5}", text(level)));
    }
    let fields = record.get("fields").and_then(serde_json::Value::as_object);
    if let Some(msg) = fields.and_then(|f| f.get("message")).or_else(|| record.get("message")) {
        parts.push(text(msg));
    }
    for (k, v) in fields.into_iter().flatten().filter(|(k, _)| *k != "message") {
        parts.push(format!("{k}={}", text(v)));
    }
    for (k, v) in record.iter() {
        if !matches!(k.as_str(), "level" | "fields" | "message" | "timestamp" | "target") {
            parts.push(format!("{k}={}", text(v)));
        }
    }
    parts.join(" ")
}
