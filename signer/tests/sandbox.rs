//! The sandbox on a real process: each test spawns `rempart-signer sandbox-probe` (sandboxing
//! the test harness itself would prove nothing and break it), which applies the sandbox the
//! daemon applies with the shipped seccomp policy, then attempts one action. The tests assert
//! exactly how the process ends: exit code and message, or the signal that killed it.
//!
//! Tests that need root (clearing the capability bounding set, locking memory with
//! CAP_IPC_LOCK) fail when `CI=true` and the user is not root, and are skipped with a printed
//! reason elsewhere; the others run as any user.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rempart_signer::sandbox::probe::{EXIT_REFUSED, EXIT_SANDBOX};

mod common;
use common::line_channel;

const SIGSYS: i32 = 31;
const DEADLINE: Duration = Duration::from_secs(60);

fn policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/seccomp/signer.x86_64.json")
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Whether a test that needs root may run; panics under CI when it may not.
fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} needs root (capability bounding set, CAP_IPC_LOCK) and CI=true: run CI as root"
    );
    eprintln!("{test}: not root, skipping the bounding-set and locked-memory checks");
    false
}

/// A state directory and, beside it, a file the sandboxed process must not reach.
struct Dirs {
    _tmp: tempfile::TempDir,
    state: PathBuf,
    outside: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let outside = tmp.path().join("outside.txt");
    std::fs::write(&outside, b"not for the signer\n").unwrap();
    Dirs { _tmp: tmp, state, outside }
}

/// Memory locking that works for this user: `current` as root, otherwise off.
fn memory_lock() -> &'static str {
    if is_root() { "current" } else { "dangerous_off" }
}

fn probe_command(dirs: &Dirs, action: &str, extra: &[&str]) -> Command {
    probe_command_with(dirs, &policy(), action, extra)
}

fn probe_command_with(dirs: &Dirs, policy: &Path, action: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rempart-signer"));
    cmd.arg("sandbox-probe")
        .arg("--state-dir")
        .arg(&dirs.state)
        .arg("--seccomp")
        .arg(policy)
        .args(["--memory-lock", memory_lock(), "--try", action])
        .args(extra)
        .stdin(Stdio::null());
    cmd
}

/// Kills the probe by PID if a test ends while it still runs.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs the probe to its end, with a deadline.
fn probe(dirs: &Dirs, action: &str, extra: &[&str]) -> Output {
    let child = probe_command(dirs, action, extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let mut stdout = running.0.stdout.take().unwrap();
    let mut stderr = running.0.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        let _ = stderr.read_to_end(&mut err);
        let _ = tx.send((out, err));
    });
    let (stdout, stderr) = rx.recv_timeout(DEADLINE).expect("the probe finished in time");
    let status = running.0.wait().unwrap();
    Output { status, stdout, stderr }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(out: &Output) -> String {
    format!("status {:?}\nstdout: {}\nstderr: {}", out.status, text(&out.stdout), text(&out.stderr))
}

/// The sandbox was applied in full before the action.
fn assert_sandboxed(out: &Output) {
    let err = text(&out.stderr);
    assert!(err.contains("sandbox on: landlock ABI"), "{}", describe(out));
    assert!(err.contains("fully enforced"), "{}", describe(out));
    assert!(err.contains("3 seccomp filter(s), kill on violation"), "{}", describe(out));
}

fn assert_killed_by_sigsys(status: ExitStatus, out: &Output) {
    assert_eq!(status.signal(), Some(SIGSYS), "{}", describe(out));
    assert!(!status.core_dumped(), "RLIMIT_CORE=0 and not dumpable: no core file");
}

#[test]
fn writing_state_still_works() {
    let d = dirs();
    let out = probe(&d, "write-state", &[]);
    assert_sandboxed(&out);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(text(&out.stdout).contains("write-state: ok"), "{}", describe(&out));
    assert_eq!(std::fs::read(d.state.join("probe-state")).unwrap(), b"probe\n");
    assert!(!d.state.join("probe-state.tmp").exists());
}

#[test]
fn threads_can_still_start() {
    let d = dirs();
    let out = probe(&d, "thread", &[]);
    assert_sandboxed(&out);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(text(&out.stdout).contains("a thread ran and returned 42"), "{}", describe(&out));
}

/// A panic is contained as before the sandbox, with backtraces asked for: printing one needs
/// `getcwd`, which the filter kills (a CI run lost a signer that way at a SIGTERM).
#[test]
fn a_panicking_thread_does_not_end_the_process_even_with_backtraces_on() {
    let d = dirs();
    for backtrace in ["0", "1", "full"] {
        let mut cmd = probe_command(&d, "panic", &[]);
        let out = cmd.env("RUST_BACKTRACE", backtrace).output().unwrap();
        assert_sandboxed(&out);
        assert_eq!(out.status.code(), Some(0), "RUST_BACKTRACE={backtrace}: {}", describe(&out));
        assert!(text(&out.stdout).contains("panic: ok"), "{}", describe(&out));
        let err = text(&out.stderr);
        assert!(
            err.contains("thread 'probe-panic'")
                && err.contains("panicked at")
                && err.contains("the probe panics on purpose"),
            "{}",
            describe(&out)
        );
    }
}

#[test]
fn execve_kills_the_process_with_sigsys() {
    let d = dirs();
    let out = probe(&d, "execve", &[]);
    assert_sandboxed(&out);
    assert_killed_by_sigsys(out.status, &out);
    assert!(!text(&out.stderr).contains("refused"), "{}", describe(&out));
}

#[test]
fn ptrace_kills_the_process_with_sigsys() {
    let d = dirs();
    let out = probe(&d, "ptrace", &[]);
    assert_sandboxed(&out);
    assert_killed_by_sigsys(out.status, &out);
}

#[test]
fn a_new_socket_kills_the_process_with_sigsys() {
    let d = dirs();
    let out = probe(&d, "socket", &[]);
    assert_sandboxed(&out);
    assert_killed_by_sigsys(out.status, &out);
}

#[test]
fn a_syslog_socket_is_refused_with_eacces_not_killed() {
    // A PKCS#11 module that logs an error must not kill the signer; it still gets no socket.
    let d = dirs();
    let out = probe(&d, "syslog", &[]);
    assert_sandboxed(&out);
    assert_eq!(out.status.code(), Some(i32::from(EXIT_REFUSED)), "{}", describe(&out));
    let err = text(&out.stderr);
    assert!(err.contains("syslog: refused: Permission denied (os error 13)"), "{err}");
}

#[test]
fn a_new_process_kills_the_process_with_sigsys() {
    // posix_spawn: clone3 is answered ENOSYS, then clone without CLONE_THREAD is killed.
    let d = dirs();
    let out = probe(&d, "fork", &[]);
    assert_sandboxed(&out);
    assert_killed_by_sigsys(out.status, &out);
}

#[test]
fn a_shell_sees_status_159() {
    let d = dirs();
    let probe = probe_command(&d, "execve", &[]);
    let args: Vec<_> = probe.get_args().collect();
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg("\"$0\" \"$@\" 2>/dev/null; echo \"status=$?\"")
        .arg(probe.get_program())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout).trim(), "status=159", "{}", describe(&out));
}

#[test]
fn opening_a_file_outside_the_state_directory_is_refused() {
    let d = dirs();
    // Readable by this user: what stops the probe is landlock, not file permissions.
    assert!(std::fs::read(&d.outside).is_ok());
    let target = d.outside.to_str().unwrap();
    let out = probe(&d, "open-outside", &["--target", target]);
    assert_sandboxed(&out);
    assert_eq!(out.status.code(), Some(i32::from(EXIT_REFUSED)), "{}", describe(&out));
    let err = text(&out.stderr);
    assert!(err.contains("open-outside: refused: Permission denied (os error 13)"), "{err}");
}

#[test]
fn a_symlink_inside_the_state_directory_does_not_lead_outside() {
    let d = dirs();
    let link = d.state.join("escape");
    std::os::unix::fs::symlink(&d.outside, &link).unwrap();
    let out = probe(&d, "open-outside", &["--target", link.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(i32::from(EXIT_REFUSED)), "{}", describe(&out));
    assert!(text(&out.stderr).contains("(os error 13)"), "{}", describe(&out));
}

#[test]
fn a_read_only_path_can_be_read_but_not_written() {
    let d = dirs();
    let target = d.outside.to_str().unwrap();
    let out = probe(&d, "open-outside", &["--target", target, "--read-only", target]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(text(&out.stdout).contains("read 19 bytes"), "{}", describe(&out));

    let out = probe(&d, "write-outside", &["--target", target, "--read-only", target]);
    assert_eq!(out.status.code(), Some(i32::from(EXIT_REFUSED)), "{}", describe(&out));
    let err = text(&out.stderr);
    assert!(err.contains("write-outside: refused: Permission denied (os error 13)"), "{err}");
    assert_eq!(std::fs::read(&d.outside).unwrap(), b"not for the signer\n");
}

#[test]
fn a_read_write_path_can_be_written() {
    let d = dirs();
    let target = d.outside.to_str().unwrap();
    let out = probe(&d, "write-outside", &["--target", target, "--read-write", target]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let written = std::fs::read_to_string(&d.outside).unwrap();
    assert_eq!(written, "not for the signer\nwritten by the probe\n");
}

#[test]
fn the_sandbox_refuses_a_process_that_already_has_threads() {
    let d = dirs();
    let out = probe(&d, "write-state", &["--start-thread-first"]);
    assert_eq!(out.status.code(), Some(i32::from(EXIT_SANDBOX)), "{}", describe(&out));
    let err = text(&out.stderr);
    assert!(err.contains("the process has 2 threads: apply the sandbox before"), "{err}");
    assert!(!d.state.join("probe-state").exists(), "the action must not run");
}

#[test]
fn an_uncommented_policy_is_refused_before_anything_changes() {
    let d = dirs();
    let bad = d.state.join("bad.json");
    let doc = r#"{"allowlist": {"mismatch_action": "kill_process", "match_action": "allow",
                  "filter": [{"syscall": "read"}]}}"#;
    std::fs::write(&bad, doc).unwrap();
    let out = probe_command_with(&d, &bad, "write-state", &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(i32::from(EXIT_SANDBOX)), "{}", describe(&out));
    assert!(text(&out.stderr).contains("allows `read` without a `comment`"), "{}", describe(&out));
}

#[test]
fn memory_lock_all_needs_an_unlimited_memlock_limit() {
    let d = dirs();
    // A finite hard limit, as most machines have by default. Only CAP_SYS_RESOURCE can raise
    // it back; without it the strict default must refuse rather than crash later.
    let probe = probe_command(&d, "none", &["--memory-lock", "all"]);
    let args: Vec<_> = probe.get_args().collect();
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg("ulimit -l 1024 && exec \"$0\" \"$@\"")
        .arg(probe.get_program())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if has_effective_cap(24) {
        // CAP_SYS_RESOURCE: the sandbox raised the limit and locked everything.
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        assert!(text(&out.stderr).contains("memory lock all"), "{}", describe(&out));
    } else {
        assert_eq!(out.status.code(), Some(i32::from(EXIT_SANDBOX)), "{}", describe(&out));
        let err = text(&out.stderr);
        assert!(err.contains("memory_lock = \"all\" needs RLIMIT_MEMLOCK unlimited"), "{err}");
        assert!(err.contains("hard 1048576 bytes"), "{err}");
    }
}

/// Whether this (test) process has capability `bit` in its effective set.
fn has_effective_cap(bit: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hex = status_field(&status, "CapEff").unwrap();
    u64::from_str_radix(&hex, 16).unwrap() & (1 << bit) != 0
}

fn status_field(status: &str, name: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(|v| v.trim().to_owned()))
}

/// The serving path under the full sandbox: a multi-threaded tokio runtime started after it,
/// one Unix and one TCP connection accepted and echoed, state persisted from the blocking pool;
/// and, while it waits, the kernel's own view of the process.
#[test]
fn a_sandboxed_runtime_still_serves_unix_and_tcp() {
    let root = root_or_skip("a_sandboxed_runtime_still_serves_unix_and_tcp");
    let d = dirs();
    let child = probe_command(&d, "echo", &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let pid = running.0.id();
    let stdout = running.0.stdout.take().unwrap();
    let rx = line_channel(stdout);
    let Ok(ready) = rx.recv_timeout(DEADLINE) else {
        let _ = running.0.kill();
        let status = running.0.wait().unwrap();
        let mut stderr = String::new();
        running.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        panic!("the probe never said it was ready: {status:?}\n{stderr}");
    };
    let tcp_addr = ready.strip_prefix("ready tcp=").expect("ready line").to_owned();

    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name| status_field(&status, name).unwrap_or_default();
    assert_eq!(field("NoNewPrivs"), "1");
    assert_eq!(field("Seccomp"), "2", "filter mode");
    assert_eq!(field("Seccomp_filters"), "3");
    let threads: u32 = field("Threads").parse().unwrap();
    assert!(threads > 1, "the runtime's workers were started after the sandbox");
    for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(field(set), "0000000000000000", "{set}");
    }
    if root {
        assert_eq!(field("CapBnd"), "0000000000000000");
        let locked: u64 = field("VmLck").trim_end_matches(" kB").trim().parse().unwrap();
        assert!(locked > 0, "memory_lock current locked the mapped pages");
    }

    let mut unix = std::os::unix::net::UnixStream::connect(d.state.join("probe.sock")).unwrap();
    unix.set_read_timeout(Some(DEADLINE)).unwrap();
    unix.write_all(b"over unix\n").unwrap();
    let mut back = String::new();
    unix.read_to_string(&mut back).unwrap();
    assert_eq!(back, "over unix\n");

    let mut tcp = std::net::TcpStream::connect(&tcp_addr).unwrap();
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    tcp.write_all(b"over tcp\n").unwrap();
    let mut back = String::new();
    tcp.read_to_string(&mut back).unwrap();
    assert_eq!(back, "over tcp\n");

    let done = rx.recv_timeout(DEADLINE).expect("the probe reported its result");
    assert!(done.starts_with("echo: ok: echoed \"over unix\""), "{done}");
    let exit = running.0.wait().unwrap();
    let mut stderr = String::new();
    running.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(exit.code(), Some(0), "{exit:?}: {stderr}");
    assert_eq!(std::fs::read(d.state.join("echo-state")).unwrap(), b"echo\n");
}

#[test]
fn the_shipped_policy_never_allows_what_the_sandbox_exists_to_stop() {
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(policy()).unwrap()).unwrap();
    let allowlist = doc["allowlist"]["filter"].as_array().unwrap();
    let allowed: Vec<&str> = allowlist.iter().map(|r| r["syscall"].as_str().unwrap()).collect();
    // `socket` is listed once, for syslog(3)'s AF_UNIX datagram socket only, and a filter
    // answers exactly that with EACCES: no socket is ever created.
    let sockets: Vec<&serde_json::Value> =
        allowlist.iter().filter(|r| r["syscall"] == "socket").collect();
    assert_eq!(sockets.len(), 1);
    let unix_dgram = |args: &serde_json::Value| {
        args[0]["index"] == 0
            && args[0]["op"] == "eq"
            && args[0]["val"] == 1
            && args[1]["index"] == 1
            && args[1]["op"]["masked_eq"] == 15
            && args[1]["val"] == 2
    };
    assert!(unix_dgram(&sockets[0]["args"]), "{}", sockets[0]);
    let refusal = &doc["syslog_eacces"];
    assert_eq!(refusal["match_action"]["errno"], 13);
    assert_eq!(refusal["mismatch_action"], "allow");
    assert!(unix_dgram(&refusal["filter"][0]["args"]), "{refusal}");
    assert_eq!(refusal["filter"].as_array().unwrap().len(), 1);
    for forbidden in [
        "execve",
        "execveat",
        "ptrace",
        "connect",
        "bind",
        "listen",
        "fork",
        "vfork",
        "mount",
        "umount2",
        "pivot_root",
        "chroot",
        "unshare",
        "setns",
        "setuid",
        "setgid",
        "setreuid",
        "setregid",
        "setresuid",
        "setresgid",
        "capset",
        "seccomp",
        "bpf",
        "process_vm_readv",
        "process_vm_writev",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "perf_event_open",
        "userfaultfd",
        "io_uring_setup",
        "memfd_create",
        "open_by_handle_at",
        "name_to_handle_at",
        "kill",
        "tkill",
        "tgkill",
        "keyctl",
        "add_key",
        "request_key",
        "mlock",
        "munlockall",
        "open",
        "creat",
    ] {
        assert!(!allowed.contains(&forbidden), "the allowlist must not list {forbidden}");
    }
    // Threads only: every clone entry checks its flags.
    for rule in allowlist.iter().filter(|r| r["syscall"] == "clone") {
        assert!(rule["args"].as_array().is_some_and(|a| !a.is_empty()), "clone without flags");
    }
    // No executable memory.
    for name in ["mmap", "mprotect"] {
        let rule = allowlist.iter().find(|r| r["syscall"] == name).unwrap();
        assert_eq!(rule["args"][0]["op"]["masked_eq"], 4, "{name} must mask PROT_EXEC");
        assert_eq!(rule["args"][0]["val"], 0, "{name} must require PROT_EXEC clear");
    }
}

/// The real daemon with the shipped signer.toml and seccomp policy (soft key, development
/// chain): it must sign, replay, refuse and stop on SIGTERM without ever dying by SIGSYS,
/// which is how a system call missing from the allowlist would show.
#[test]
fn the_daemon_signs_under_the_shipped_sandbox() {
    use rempart_core::block::BlockHeader;
    use rempart_core::key::PublicKey;
    use rempart_core::protocol::SignBlockRequest;
    use rempart_core::{BlockTimestamp, Checksum256, Name, TimePoint};
    use rempart_signer::client::{Client, Endpoint};

    if !root_or_skip("the_daemon_signs_under_the_shipped_sandbox") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let etc = tmp.path().join("etc");
    let state = tmp.path().join("var/signer");
    std::fs::create_dir_all(etc.join("seccomp")).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    std::fs::copy(policies.join("signer.toml"), etc.join("signer.toml")).unwrap();
    std::fs::copy(policy(), etc.join("seccomp/signer.x86_64.json")).unwrap();
    let key_file = state.join("dev.key");
    std::fs::write(&key_file, "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3\n").unwrap();
    std::fs::set_permissions(&key_file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .unwrap();
    let toml = std::fs::read_to_string(etc.join("signer.toml")).unwrap();
    let chain_id = toml
        .lines()
        .find_map(|l| l.trim().strip_prefix("id = \"")?.strip_suffix('"'))
        .expect("the shipped policy names its chain")
        .to_owned();
    let bin = env!("CARGO_BIN_EXE_rempart-signer");
    let policy_arg = etc.join("signer.toml");
    let init = Command::new(bin)
        .args(["guard", "init", "--policy"])
        .arg(&policy_arg)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", describe(&init));

    let child = Command::new(bin)
        .args(["run", "--policy"])
        .arg(&policy_arg)
        .env("REMPART_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut daemon = Running(child);
    let stderr = daemon.0.stderr.take().unwrap();
    let rx = line_channel(stderr);
    let mut log = Vec::new();
    while !log.last().is_some_and(|l: &String| l.contains("serving chain")) {
        match rx.recv_timeout(DEADLINE) {
            Ok(line) => log.push(line),
            Err(_) => {
                let status = daemon.0.try_wait().unwrap();
                panic!("the daemon did not start serving ({status:?}):\n{}", log.join("\n"));
            }
        }
    }
    assert!(log.iter().any(|l| l.contains("sandbox on: landlock ABI")), "{}", log.join("\n"));

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (first, again) = runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut client = Client::new(Endpoint::Unix(state.join("signer.sock")));
        client.connect(deadline).await.unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let millis = i64::try_from(now.as_millis()).unwrap();
        let request = SignBlockRequest {
            request_id: 1,
            chain_id: chain_id.parse::<Checksum256>().unwrap(),
            header: BlockHeader {
                timestamp: BlockTimestamp::from_time_point(TimePoint::from_millis(millis)),
                producer: "eosio".parse::<Name>().unwrap(),
                ..BlockHeader::default()
            },
            blockroot_merkle_root: Checksum256::default(),
            pending_schedule_hash: Checksum256::default(),
            signing_key: "PUB_K1_6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5BoDq63"
                .parse::<PublicKey>()
                .unwrap(),
        };
        let first = client.sign_block(request.clone(), deadline).await.unwrap();
        let again = client.sign_block(request, deadline).await.unwrap();
        (first, again)
    });
    assert_eq!(first.block_num, 1);
    assert_eq!(first.signature, again.signature, "a replay gets the stored signature");

    rustix::process::kill_process(
        rustix::process::Pid::from_child(&daemon.0),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    // Its stderr closes when it exits: wait for that with the deadline, then reap it.
    let mut rest = Vec::new();
    loop {
        match rx.recv_timeout(DEADLINE) {
            Ok(line) => rest.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("the daemon did not stop on SIGTERM"),
        }
    }
    let status = daemon.0.wait().unwrap();
    assert_eq!(status.signal(), None, "killed: {status:?}\n{}", rest.join("\n"));
    assert_eq!(status.code(), Some(0), "{}", rest.join("\n"));
    assert!(!state.join("signer.sock").exists(), "the socket file is removed on stop");
}

/// Signs `count` increasing heights from `first` (slots following the clock) over the Unix
/// socket and TCP alternately; returns the last block number the signer reports signed.
fn sign_through(
    s: &common::Setup,
    first: u32,
    count: u32,
) -> Result<u32, rempart_signer::client::ClientError> {
    use rempart_core::BlockTimestamp;
    use rempart_signer::client::{Client, Endpoint};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut unix = Client::new(Endpoint::Unix(s.socket.clone()));
        let mut tcp = Client::new(format!("127.0.0.1:{}", s.tcp_port).parse().unwrap());
        // Slots follow the clock and the height: later calls stay above earlier ones.
        let base = common::now_slot().0 - 60;
        for n in first..first + count {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let client = if n % 2 == 0 { &mut unix } else { &mut tcp };
            let req = common::request(&s.key, n, BlockTimestamp(base + n), 1);
            let r = client.sign_block(req.clone(), deadline).await?;
            assert_eq!(r.signature.recover(&req.digest()).unwrap(), s.key);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let status = unix.status(deadline).await?;
        Ok(status.last_signed[0].block_num)
    })
}

/// The real daemon, sandboxed with the shipped seccomp policy and landlock, signing with the
/// soft backend and with SoftHSM2 (K1 and R1) over Unix and TCP; it then stops cleanly on
/// SIGTERM. SoftHSM2 re-reads its token directory at each signature, so the directory is a
/// read-only path of the sandbox, with its configuration file and the module.
#[test]
fn the_daemon_signs_sandboxed_with_soft_and_softhsm2() {
    let Some(hsm) = common::softhsm() else { return };
    let conf = hsm.conf.clone();
    let module = Path::new(common::SOFTHSM_MODULE);
    let mut runs = vec![("soft".to_string(), None, common::DEV_PUB.to_string())];
    for kt in ["k1", "r1"] {
        let label = format!("eosio-{kt}");
        let key = hsm.new_key(kt, &label);
        runs.push((
            kt.to_string(),
            Some(common::pkcs11_backend("T", &label, common::SOFTHSM_MODULE)),
            key,
        ));
    }
    for (name, backend, key) in runs {
        let sandbox = common::sandbox_toml(&[&hsm.tokens, &conf, module]);
        let s = common::setup_in(None, backend.as_deref(), &key, &sandbox, "");
        s.guard_init();
        let mut d = s.spawn_with(&hsm.env(), &[]);
        let log = d.wait_line("serving chain", DEADLINE);
        let on = log.iter().any(|l| l.contains("sandbox on: landlock ABI") && l.contains("fully"));
        assert!(on, "{}", log.join("\n"));
        let last = sign_through(&s, 2, 20).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(last, 21, "{name}");
        let status = d.terminate();
        assert_eq!(status.signal(), None, "{name}: {status:?}\n{}", d.lines().join("\n"));
        assert_eq!(status.code(), Some(0), "{name}");
    }
}

/// A SoftHSM2 token removed while the sandboxed daemon runs: the module is re-initialised
/// inside the sandbox (configuration and token directory are read-only paths), the request is
/// refused with a clear error and the daemon keeps serving.
#[test]
fn a_token_removed_under_the_sandbox_is_an_error_not_a_crash() {
    let Some(hsm) = common::softhsm() else { return };
    let key = hsm.new_key("k1", "eosio-k1");
    let module = Path::new(common::SOFTHSM_MODULE);
    let sandbox = common::sandbox_toml(&[&hsm.tokens, &hsm.conf, module]);
    let backend = common::pkcs11_backend("T", "eosio-k1", common::SOFTHSM_MODULE);
    let s = common::setup_in(None, Some(&backend), &key, &sandbox, "");
    s.guard_init();
    let mut d = s.spawn_with(&hsm.env(), &[]);
    d.wait_line("serving chain", DEADLINE);
    assert_eq!(sign_through(&s, 2, 2).unwrap(), 3);
    let token = std::fs::read_dir(&hsm.tokens).unwrap().next().unwrap().unwrap().path();
    let away = hsm.dir.path().join("away");
    std::fs::rename(&token, &away).unwrap();
    let err = sign_through(&s, 4, 1).unwrap_err();
    let died = |d: &mut common::Daemon| match d.child.try_wait().unwrap() {
        Some(status) => format!("the daemon died: {status:?}\n{}", d.lines().join("\n")),
        None => "the daemon runs".to_string(),
    };
    let msg = err.to_string();
    assert!(msg.contains("no token labelled \"T\" is present"), "{msg}; {}", died(&mut d));
    assert!(d.running(), "{}", died(&mut d));
    std::fs::rename(&away, &token).unwrap();
    assert_eq!(sign_through(&s, 4, 2).unwrap(), 5, "signing resumes when the token is back");
    let status = d.terminate();
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", d.lines().join("\n"));
}

/// SoftHSM2's token directory left out of the sandbox's read-only paths: landlock denies the
/// module's read of it at signing time, the module's attempt to syslog that error gets EACCES
/// (not a kill), and the request is refused with a backend error; the daemon keeps serving
/// and nothing is signed.
#[test]
fn a_token_directory_outside_the_sandbox_is_refused_not_signed() {
    let Some(hsm) = common::softhsm() else { return };
    let key = hsm.new_key("k1", "eosio-k1");
    let sandbox = common::sandbox_toml(&[]);
    let backend = common::pkcs11_backend("T", "eosio-k1", common::SOFTHSM_MODULE);
    let s = common::setup_in(None, Some(&backend), &key, &sandbox, "");
    s.guard_init();
    let mut d = s.spawn_with(&hsm.env(), &[]);
    d.wait_line("serving chain", DEADLINE);
    let err = sign_through(&s, 2, 1).unwrap_err();
    assert_eq!(err.code(), Some(rempart_core::protocol::ErrorCode::Backend), "{err}");
    assert!(d.running(), "{err}; {:?}\n{}", d.child.try_wait(), d.lines().join("\n"));
    let state = std::fs::read_to_string(
        std::fs::read_dir(s.state_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "state"))
            .unwrap(),
    )
    .unwrap();
    assert!(state.contains("\"last\":null"), "{state}");
    assert_eq!(d.terminate().code(), Some(0));
}

/// The read-only paths a SoftHSM2 daemon adds open no hole: the probe, sandboxed with the
/// daemon's settings for that deployment (its token directory, configuration and module
/// readable), is still killed by SIGSYS for execve and a TCP socket, and still refused a file
/// outside those paths.
#[test]
fn a_softhsm2_sandbox_still_kills_violations() {
    let Some(hsm) = common::softhsm() else { return };
    let d = dirs();
    let ro = [hsm.tokens.to_str().unwrap(), hsm.conf.to_str().unwrap(), common::SOFTHSM_MODULE];
    let extra = ["--read-only", ro[0], "--read-only", ro[1], "--read-only", ro[2]];
    for action in ["execve", "socket", "ptrace"] {
        let out = probe(&d, action, &extra);
        assert_sandboxed(&out);
        assert_killed_by_sigsys(out.status, &out);
    }
    let mut args = extra.to_vec();
    args.extend(["--target", d.outside.to_str().unwrap()]);
    let out = probe(&d, "open-outside", &args);
    assert_eq!(out.status.code(), Some(i32::from(EXIT_REFUSED)), "{}", describe(&out));
    let token_file = std::fs::read_dir(&hsm.tokens).unwrap().next().unwrap().unwrap().path();
    let mut args = extra.to_vec();
    let target = token_file.join("generation");
    args.extend(["--target", target.to_str().unwrap()]);
    let out = probe(&d, "write-outside", &args);
    assert_eq!(out.status.code(), Some(i32::from(EXIT_REFUSED)), "{}", describe(&out));
}

/// The shipped seccomp policy of the signer's WireGuard statistics reader
/// (`rempart-signer wg-stats-reader`, the child that reads boringtun for the sandboxed signer).
#[cfg(feature = "wireguard")]
fn reader_policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/seccomp/wg-stats-reader.x86_64.json")
}

/// A UAPI answer as wireguard-go gives it: the device's private key and a peer's preshared key
/// in it, neither of which may reach the signer.
#[cfg(feature = "wireguard")]
const UAPI_ANSWER: &str = "private_key=e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a\n\
listen_port=51820\n\
public_key=b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33\n\
preshared_key=188515093e952f5f22e865cef3012e72f8b5f0b598ac0309d5dacce3b70fcf52\n\
endpoint=10.99.0.2:51821\n\
last_handshake_time_sec=1700000000\n\
last_handshake_time_nsec=0\n\
rx_bytes=2224\n\
tx_bytes=38333\n\
allowed_ip=10.98.0.2/32\n\
errno=0\n\
\n";

/// A fake UAPI socket at `dir/wgtest.sock` that answers every connection's `get=1` with
/// [`UAPI_ANSWER`] (one request per connection, as boringtun does).
#[cfg(feature = "wireguard")]
fn fake_uapi(dir: &Path) -> PathBuf {
    let path = dir.join("wgtest.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\n\n") && conn.read(&mut byte).is_ok_and(|n| n == 1) {
                request.push(byte[0]);
            }
            assert_eq!(request, b"get=1\n\n");
            let _ = conn.write_all(UAPI_ANSWER.as_bytes());
        }
    });
    path
}

/// `rempart-signer wg-stats-reader` for the UAPI socket `socket` with the shipped policy.
#[cfg(feature = "wireguard")]
fn reader_command(socket: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rempart-signer"));
    cmd.arg("wg-stats-reader")
        .arg("--socket")
        .arg(socket)
        .arg("--seccomp")
        .arg(reader_policy())
        .args(["--memory-lock", memory_lock()]);
    cmd
}

/// The child that reads WireGuard statistics for the sandboxed signer confines itself: landlock
/// fully enforced with its own one-filter seccomp allowlist, and once confined it is killed
/// by SIGSYS (no core) when it tries to run a program, create a TCP socket or open a file.
#[cfg(feature = "wireguard")]
#[test]
fn the_wireguard_statistics_reader_is_confined() {
    let d = dirs();
    let socket = d.state.join("wgtest.sock");
    for action in ["execve", "socket", "open-outside"] {
        let out = reader_command(&socket)
            .args(["--try", action, "--target"])
            .arg(&d.outside)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert!(err.contains("wg-stats-reader: sandbox on: landlock ABI"), "{}", describe(&out));
        assert!(err.contains("fully enforced; 1 seccomp filter(s)"), "{}", describe(&out));
        assert_killed_by_sigsys(out.status, &out);
        assert!(!err.contains("not for the signer"), "{action}");
    }
    // A policy it cannot read: it says so and exits, confined to nothing and serving nothing.
    let out = Command::new(env!("CARGO_BIN_EXE_rempart-signer"))
        .args(["wg-stats-reader", "--socket"])
        .arg(&socket)
        .args(["--seccomp", "/nonexistent/wg-stats-reader.json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(i32::from(EXIT_SANDBOX)), "{}", describe(&out));
    assert!(text(&out.stderr).contains("cannot confine itself"), "{}", describe(&out));
}

/// The reader's shipped policy: Unix stream sockets only, and none of the calls that would let
/// it run a program, open a file, debug or signal another process, or start one.
#[cfg(feature = "wireguard")]
#[test]
fn the_reader_policy_allows_unix_stream_sockets_and_little_else() {
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reader_policy()).unwrap()).unwrap();
    assert_eq!(doc.as_object().unwrap().len(), 1, "one filter: the allowlist");
    let rules = doc["allowlist"]["filter"].as_array().unwrap();
    let allowed: Vec<&str> = rules.iter().map(|r| r["syscall"].as_str().unwrap()).collect();
    for forbidden in [
        "execve",
        "execveat",
        "open",
        "openat",
        "openat2",
        "ptrace",
        "fork",
        "vfork",
        "clone",
        "clone3",
        "kill",
        "tkill",
        "tgkill",
        "bind",
        "listen",
        "accept4",
        "socketpair",
        "mprotect",
        "prctl",
        "seccomp",
    ] {
        assert!(!allowed.contains(&forbidden), "{forbidden} is allowed: {allowed:?}");
    }
    let sockets: Vec<&serde_json::Value> =
        rules.iter().filter(|r| r["syscall"] == "socket").collect();
    assert_eq!(sockets.len(), 1);
    let args = &sockets[0]["args"];
    assert!(args[0]["index"] == 0 && args[0]["op"] == "eq" && args[0]["val"] == 1, "AF_UNIX");
    assert!(args[1]["index"] == 1 && args[1]["op"]["masked_eq"] == 15 && args[1]["val"] == 1);
    assert!(rules.iter().all(|r| r["comment"].as_str().is_some_and(|c| !c.is_empty())));
}

/// What crosses the pipe from the reader to the signer never holds the private key or a
/// preshared key, though the UAPI answer does: checked on the raw bytes of the pipe, then
/// through the signer's end ([`StatsChild`]). Killing the reader gives a clear, lasting error.
#[cfg(feature = "wireguard")]
#[test]
fn the_wireguard_statistics_reader_never_passes_a_key_and_its_death_is_clear() {
    use rempart_signer::wireguard::health::parse_uapi;
    use rempart_signer::wireguard::reader::{ReaderProcess, StatsChild};
    let d = dirs();
    let socket = fake_uapi(&d.state);
    let mut child = reader_command(&socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut running = Running(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stdout.read_to_end(&mut all);
        let _ = tx.send(all);
    });
    stdin.write_all(&[1, 2]).unwrap();
    drop(stdin);
    let piped = rx.recv_timeout(DEADLINE).expect("the reader answered and exited");
    let status = running.0.wait().unwrap();
    assert_eq!(status.code(), Some(0), "it exits at the end of its stdin");
    let seen = String::from_utf8_lossy(&piped);
    assert!(!seen.contains("e84b5a6d2717c1003a13b4"), "the private key crossed: {seen}");
    assert!(!seen.contains("188515093e952f5f22e865"), "the preshared key crossed: {seen}");
    assert!(!seen.contains("private_key") && !seen.contains("preshared_key"), "{seen}");
    assert_eq!(seen.matches("rx_bytes=2224").count(), 2, "two requests, two answers: {seen}");

    let mut process = ReaderProcess::new(env!("CARGO_BIN_EXE_rempart-signer"), reader_policy());
    process.memory_lock = memory_lock().parse().unwrap();
    let mut reader = StatsChild::spawn(&process, &socket).expect("the reader starts confined");
    for _ in 0..3 {
        let answer = reader.answer().expect("an answer through the reader");
        assert!(!answer.contains("e84b5a6d") && !answer.contains("188515093e"), "{answer}");
        let peers = parse_uapi(&answer, std::time::SystemTime::now()).unwrap();
        assert_eq!((peers.len(), peers[0].rx_bytes, peers[0].tx_bytes), (1, 2224, 38333));
    }
    let pid = rustix::process::Pid::from_raw(i32::try_from(reader.pid()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    let first = reader.answer().unwrap_err();
    assert!(first.contains("statistics reader process"), "{first}");
    assert!(first.contains("is gone") && first.contains("restart the signer"), "{first}");
    assert_eq!(reader.answer().unwrap_err(), first, "the error lasts: no new child is started");

    // Dropped (the signer stops), the reader sees the end of its stdin and exits: it is left a
    // zombie for its parent (here the harness; init once the signer has exited) to reap.
    let dropped = StatsChild::spawn(&process, &socket).expect("another reader");
    let stat = format!("/proc/{}/stat", dropped.pid());
    drop(dropped);
    common::wait_for("the dropped reader to exit", Duration::from_secs(10), || {
        std::fs::read_to_string(&stat)
            .is_ok_and(|s| s.rsplit(')').next().unwrap().trim_start().starts_with('Z'))
    });

    // A userspace WireGuard that accepts and never answers: each read is an error within the
    // reader's socket timeout (2 s), not a hang, and the reader stays usable.
    let silent = d.state.join("silent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&silent).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let mut stuck = StatsChild::spawn(&process, &silent).expect("a reader of the silent socket");
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let e = stuck.answer().unwrap_err();
        assert!(e.contains("UAPI read"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }

    // A reader that cannot confine itself is an error at start, not a reader.
    let broken = ReaderProcess::new(env!("CARGO_BIN_EXE_rempart-signer"), "/nonexistent.json");
    let e = StatsChild::spawn(&broken, &socket).unwrap_err();
    assert!(e.contains("did not start") && e.contains("cannot read seccomp policy"), "{e}");
}
