//! `rempart up` and `rempart check` as an operator runs them: the real binaries as processes.
//!
//! `up` brings the perimeter up in a temporary data directory; the gateway answers `get_info` over
//! TLS trusting the generated CA (curl --cacert) and the head advances; the summary it prints is
//! true (the chain id is get_info's, the endpoints and data directory are where the perimeter is,
//! the eosio key is a key pair that the `eosio` account holds, and the curl and eosjs examples run
//! as printed); SIGINT stops every child in reverse start order (checked by pid); a second start
//! resumes the chain, and a second `up` beside it is refused because the ports are taken; SIGKILL
//! of `up` itself leaves no child running (they see their stdin pipe close); a third start resumes
//! again; killing one child makes `up` stop the others and exit 1; with SoftHSM2 installed, `--hsm
//! softhsm` signs through a token, eosjs and wharfkit run the 2-of-3 multisig script
//! (node/tests/clients/api_e2e.cjs) through the gateway, and SIGTERM stops it all. The README's
//! walkthrough script (eosjs through the gateway: accounts, the token contract, a transfer) runs
//! as written against the first start, and its balance is still there after the restart. The
//! perimeter uses fixed ports (8443, 9100, 8888, 8889, 9876), so the `up` scenario is one test.
//! Waits poll with deadlines; nothing sleeps to synchronise.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// `rempart up` as a child: killed by pid on drop, its output lines on a channel.
struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rempart() -> &'static str {
    env!("CARGO_BIN_EXE_rempart")
}

/// The three programs `up` starts, built next to `rempart` (a no-op when fresh), unless the
/// suite's workspace build made them (`REMPART_UP_NO_BUILD`, set by tests/run.sh): a build here
/// would relink them with this package's features while other tests run them.
fn build_programs() {
    if rempart::up::no_build() {
        return;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build").current_dir(env!("CARGO_MANIFEST_DIR"));
    if Path::new(rempart()).parent().is_some_and(|d| d.ends_with("release")) {
        cmd.arg("--release");
    }
    for p in ["rempart-signer", "rempart-node", "rempart-gateway"] {
        cmd.args(["-p", p, "--bin", p]);
    }
    let out = cmd.output().expect("run cargo");
    assert!(out.status.success(), "cargo build: {}", String::from_utf8_lossy(&out.stderr));
}

fn start(data: &Path) -> Up {
    start_with(data, &[])
}

fn start_with(data: &Path, extra: &[&str]) -> Up {
    let mut child = Command::new(rempart())
        .args(["up", "--data"])
        .arg(data)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rempart up");
    let (tx, lines) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    Up { child, lines, log: Vec::new() }
}

impl Up {
    /// Reads output until a line satisfies `want`; panics with the output at the deadline.
    fn wait_line(&mut self, what: &str, limit: Duration, want: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now()).min(Duration::from_secs(1));
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) if Instant::now() >= end => {
                    panic!("no {what} within {limit:?}; output:\n{}", self.tail())
                }
                Err(_) => {
                    if let Some(status) = self.child.try_wait().expect("try_wait") {
                        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) {
                            self.log.push(line);
                        }
                        panic!("rempart up exited ({status}) before {what}:\n{}", self.tail());
                    }
                }
            }
        }
    }

    /// The last summary printed: from "rempart is up" to its closing line.
    fn summary(&self) -> Vec<String> {
        let from = self.log.iter().rposition(|l| l.starts_with("rempart is up")).expect("summary");
        let to = from
            + self.log[from..]
                .iter()
                .position(|l| l.starts_with("Ctrl-C stops everything"))
                .expect("the summary's end");
        self.log[from..=to].to_vec()
    }

    fn tail(&self) -> String {
        let from = self.log.len().saturating_sub(80);
        self.log[from..].join("\n")
    }

    /// Waits for "rempart is up" and the whole summary after it; returns the children's pids
    /// by name.
    fn ready(&mut self) -> Vec<(String, i32)> {
        self.wait_line("readiness", Duration::from_secs(300), |l| l.starts_with("rempart is up"));
        let line = self.wait_line("the process list", Duration::from_secs(5), |l| {
            l.trim_start().starts_with("processes")
        });
        self.wait_line("the summary's end", Duration::from_secs(5), |l| {
            l.starts_with("Ctrl-C stops everything")
        });
        let pids: Vec<(String, i32)> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.parse().expect("pid")))
            .collect();
        let names: Vec<&str> = pids.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["signer", "producer", "api1", "api2", "gateway"]);
        pids
    }

    /// Waits for `up` to exit; its exit code.
    fn exit_code(&mut self, limit: Duration) -> i32 {
        let end = Instant::now() + limit;
        loop {
            while let Ok(line) = self.lines.try_recv() {
                self.log.push(line);
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Its last lines: until the pipes close (EOF), within the deadline.
                while let Ok(line) =
                    self.lines.recv_timeout(end.saturating_duration_since(Instant::now()))
                {
                    self.log.push(line);
                }
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < end, "up still running after {limit:?}:\n{}", self.tail());
            // Poll the child's state; the deadline bounds the wait.
            let _ = self.lines.recv_timeout(Duration::from_millis(50)).map(|l| self.log.push(l));
        }
    }

    fn signal(&self, sig: Signal) {
        let pid = Pid::from_raw(self.child.id() as i32).expect("pid");
        kill_process(pid, sig).expect("signal rempart up");
    }
}

/// Whether a process with this pid still runs. A zombie does not: it has exited, and once `up`
/// is killed its children's zombies wait for whichever process inherits them to reap them.
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) S …": the state follows the last parenthesis (comm may contain one).
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

/// A POST through the gateway's TLS, trusting the generated CA only: the JSON answer.
fn through_gateway(ca: &Path, path: &str, body: &str) -> Option<serde_json::Value> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--cacert"])
        .arg(ca)
        .args(["-X", "POST", &format!("https://127.0.0.1:8443{path}"), "-d", body])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The gateway's get_info: the head block number.
fn head_through_gateway(ca: &Path) -> Option<u64> {
    through_gateway(ca, "/v1/chain/get_info", "{}")?.get("head_block_num")?.as_u64()
}

/// The value of one `  label    value` line of the summary.
fn field<'a>(summary: &'a [String], label: &str) -> &'a str {
    summary
        .iter()
        .find_map(|l| l.strip_prefix("  ")?.strip_prefix(label)?.strip_prefix(' '))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label:?} line in the summary:\n{}", summary.join("\n")))
}

/// What the first start prints is true: the chain id is the one the gateway serves, the
/// endpoints are where the perimeter listens, the eosio key is a key pair that the chain's
/// `eosio` account holds, and the curl and eosjs examples run as printed (eosjs when installed).
fn check_summary(summary: &[String], data: &Path, ca: &Path) {
    let text = summary.join("\n");
    let served = poll("get_info's chain id", Duration::from_secs(30), || {
        through_gateway(ca, "/v1/chain/get_info", "{}")?.get("chain_id")?.as_str().map(String::from)
    });
    let chain_id = field(summary, "chain id");
    assert_eq!(chain_id, served, "{text}");
    assert_eq!(chain_id.len(), 64, "{text}");
    let ca_shown = ca.canonicalize().expect("the CA file");
    let ca_shown = ca_shown.to_str().expect("a UTF-8 path");
    assert_eq!(
        field(summary, "gateway"),
        format!("https://127.0.0.1:8443  (trust {ca_shown})"),
        "{text}"
    );
    assert_eq!(field(summary, "metrics"), "http://127.0.0.1:9100/metrics, /healthz", "{text}");
    assert!(
        field(summary, "api nodes").starts_with("http://127.0.0.1:8888, http://127.0.0.1:8889 "),
        "{text}"
    );
    assert!(field(summary, "producer").contains("127.0.0.1:9876"), "{text}");
    let data = data.canonicalize().expect("the data directory");
    assert_eq!(Path::new(field(summary, "data")), data, "{text}");

    // The eosio key: "WIF  (public KEY)", a pair, and the key eosio's permissions hold.
    let (private, public) = field(summary, "eosio key")
        .split_once("  (public ")
        .and_then(|(k, p)| Some((k, p.strip_suffix(')')?)))
        .unwrap_or_else(|| panic!("the eosio key line: {text}"));
    let wif = private;
    let private: rempart_core::key::PrivateKey = private.parse().expect("a private key");
    let public: rempart_core::key::PublicKey = public.parse().expect("a public key");
    assert_eq!(private.public_key(), public, "the printed keys are not a pair: {text}");
    let account = poll("eosio's account", Duration::from_secs(30), || {
        through_gateway(ca, "/v1/chain/get_account", r#"{"account_name":"eosio"}"#)
            .filter(|v| v.get("permissions").is_some())
    });
    let keys: Vec<rempart_core::key::PublicKey> = account["permissions"]
        .as_array()
        .expect("permissions")
        .iter()
        .flat_map(|p| p["required_auth"]["keys"].as_array().cloned().unwrap_or_default())
        .filter_map(|k| k["key"].as_str()?.parse().ok())
        .collect();
    assert!(!keys.is_empty() && keys.iter().all(|k| *k == public), "{account}\n{text}");

    // The curl example, run as printed.
    let curl = summary
        .iter()
        .map(|l| l.trim())
        .find(|l| l.starts_with("curl "))
        .unwrap_or_else(|| panic!("no curl example: {text}"));
    let words: Vec<&str> = curl.split_whitespace().collect();
    assert_eq!(words.get(1..3), Some(&["--cacert", ca_shown][..]), "{text}");
    let out = Command::new(words[0]).args(&words[1..]).args(["-sS", "--max-time", "5"]).output();
    let out = out.expect("run curl");
    assert!(out.status.success(), "{curl}: {}", String::from_utf8_lossy(&out.stderr));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("get_info's JSON");
    assert_eq!(info["chain_id"], chain_id, "{curl}");

    // The eosjs example: `NODE_EXTRA_CA_CERTS=CA node -e '<script>'` over several lines.
    let start = summary
        .iter()
        .position(|l| l.trim_start().starts_with("NODE_EXTRA_CA_CERTS="))
        .unwrap_or_else(|| panic!("no eosjs example: {text}"));
    let example = summary[start..].join("\n");
    let example = example.trim_start();
    let (env, script) = example.split_once(" node -e '").expect("node -e '...'");
    let script = &script[..script.find('\'').expect("the script's closing quote")];
    let extra_ca = env.strip_prefix("NODE_EXTRA_CA_CERTS=").expect("the CA variable");
    assert_eq!(extra_ca, ca_shown, "{text}");
    assert!(script.contains("require(\"eosjs\")") && script.contains(wif));
    if !eosjs_installed() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("node")
        .args(["-e", script])
        .env("NODE_EXTRA_CA_CERTS", extra_ca)
        .env("NODE_PATH", root.join("tests/clients/node_modules"))
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the eosjs example failed:\n{script}\n{stdout}{stderr}");
    let printed: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(printed.len(), 2, "{stdout}{stderr}");
    assert_eq!(printed[0], chain_id, "{stdout}");
    assert!(printed[1].parse::<u64>().is_ok_and(|h| h > 0), "{stdout}");
}

/// Whether the npm clients are installed; under CI=true their absence fails.
fn eosjs_installed() -> bool {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if root.join("tests/clients/node_modules/eosjs").is_dir() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "eosjs is missing (npm ci in tests/clients) and CI=true"
    );
    eprintln!("skipped the eosjs examples: run `npm ci` in tests/clients");
    false
}

fn poll<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        // The poll interval of a deadline-bounded wait, not a synchronisation.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The README's eosjs walkthrough, extracted as an operator would paste it, run from the
/// checkout against the running perimeter; returns false (skipped) when eosjs is not installed.
fn readme_walkthrough(ca: &Path) -> bool {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !eosjs_installed() {
        return false;
    }
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let open = "cat > /tmp/transfer.cjs <<'EOF'\n";
    let start = readme.find(open).expect("the walkthrough script in README.md") + open.len();
    let len = readme[start..].find("\nEOF\n").expect("the script's end");
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("transfer.cjs");
    std::fs::write(&script, &readme[start..start + len]).expect("write the script");
    let out = Command::new("node")
        .arg(&script)
        .current_dir(root)
        .env("NODE_PATH", root.join("tests/clients/node_modules"))
        .env("NODE_EXTRA_CA_CERTS", ca)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the README walkthrough failed:\n{stdout}{stderr}");
    assert!(stdout.contains("bob: 25.0000 SYS"), "{stdout}{stderr}");
    true
}

/// bob's SYS balance through the gateway.
fn bob_balance(ca: &Path) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--cacert"])
        .arg(ca)
        .args(["-X", "POST", "https://127.0.0.1:8443/v1/chain/get_currency_balance", "-d"])
        .arg(r#"{"code":"eosio.token","account":"bob","symbol":"SYS"}"#)
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(v.get(0)?.as_str()?.to_string())
}

fn have_curl() -> bool {
    let ok = Command::new("curl").arg("--version").stdout(Stdio::null()).status().is_ok();
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "curl is missing and CI=true");
        eprintln!("skipped: curl is not installed (apt-get install curl)");
    }
    ok
}

#[test]
fn up_serves_stops_resumes_and_stops_everything_when_a_child_dies() {
    if !have_curl() {
        return;
    }
    build_programs();
    let data = tempfile::tempdir().expect("tempdir");
    let ca: PathBuf = data.path().join("certs/ca.pem");

    // First start: served over TLS, the head advances.
    let mut up = start(data.path());
    let pids = up.ready();
    let first =
        poll("get_info through the gateway", Duration::from_secs(30), || head_through_gateway(&ca));
    check_summary(&up.summary(), data.path(), &ca);
    let later = poll("the head to advance", Duration::from_secs(30), || {
        head_through_gateway(&ca).filter(|h| *h > first)
    });
    let walked = readme_walkthrough(&ca);
    // Ctrl-C: every child stops, in reverse start order, `up` exits 0.
    up.signal(Signal::INT);
    assert_eq!(up.exit_code(Duration::from_secs(90)), 0, "{}", up.tail());
    for (name, pid) in &pids {
        assert!(!alive(*pid), "{name} (pid {pid}) outlived rempart up");
    }
    assert!(up.log.iter().any(|l| l.contains("all stopped")), "{}", up.tail());
    let stopped: Vec<&str> = up
        .log
        .iter()
        .filter_map(|l| l.split_once("| stopping ")?.1.split_whitespace().next())
        .collect();
    assert_eq!(stopped, ["gateway", "api2", "api1", "producer", "signer"], "{}", up.tail());
    drop(up);

    // Second start: the same chain, resumed.
    let mut up = start(data.path());
    let pids = up.ready();
    assert!(up.log.iter().any(|l| l.contains("resuming the chain")), "{}", up.tail());
    let resumed =
        poll("get_info after the restart", Duration::from_secs(30), || head_through_gateway(&ca));
    assert!(resumed >= later, "resumed at {resumed}, below {later} before the restart");
    if walked {
        let balance =
            poll("bob's balance after the restart", Duration::from_secs(30), || bob_balance(&ca));
        assert_eq!(balance, "25.0000 SYS");
    }

    // A second `up` while this one runs is refused: the ports are taken.
    let other = tempfile::tempdir().expect("tempdir");
    let out = Command::new(rempart()).args(["up", "--data"]).arg(other.path()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is already in use"), "{err}");

    // `up` killed outright (no handler runs): every child notices its stdin pipe closing and
    // stops by itself.
    up.signal(Signal::KILL);
    up.exit_code(Duration::from_secs(10));
    poll("every child to stop after up was killed", Duration::from_secs(60), || {
        pids.iter().all(|(_, pid)| !alive(*pid)).then_some(())
    });
    drop(up);

    // Third start after that: the same chain again.
    let mut up = start(data.path());
    let pids = up.ready();
    assert!(up.log.iter().any(|l| l.contains("resuming the chain")), "{}", up.tail());
    poll("get_info after up was killed", Duration::from_secs(30), || {
        head_through_gateway(&ca).filter(|h| *h >= resumed)
    });

    // One child dies: the others are stopped, `up` exits non-zero and says who died.
    let (_, api2) = pids.iter().find(|(n, _)| n == "api2").expect("api2").clone();
    kill_process(Pid::from_raw(api2).expect("pid"), Signal::KILL).expect("kill api2");
    let code = up.exit_code(Duration::from_secs(90));
    assert_eq!(code, 1, "{}", up.tail());
    assert!(up.log.iter().any(|l| l.contains("api2 exited")), "{}", up.tail());
    for (name, pid) in &pids {
        assert!(!alive(*pid), "{name} (pid {pid}) outlived rempart up");
    }

    // With SoftHSM2: the block key is made in a token, the genesis schedules it (another chain),
    // blocks are signed through PKCS#11; SIGTERM stops everything as Ctrl-C does.
    if !have_softhsm() {
        return;
    }
    let hsm_data = tempfile::tempdir().expect("tempdir");
    let mut up = start_with(hsm_data.path(), &["--hsm", "softhsm"]);
    let pids = up.ready();
    assert!(up.log.iter().any(|l| l.contains("block key generated in the SoftHSM2 token")));
    let ca = hsm_data.path().join("certs/ca.pem");
    let first = poll("get_info through the gateway (HSM)", Duration::from_secs(30), || {
        head_through_gateway(&ca)
    });
    poll("the head to advance (HSM)", Duration::from_secs(30), || {
        head_through_gateway(&ca).filter(|h| *h > first)
    });
    multisig_through_the_perimeter(&ca);
    up.signal(Signal::TERM);
    assert_eq!(up.exit_code(Duration::from_secs(90)), 0, "{}", up.tail());
    for (name, pid) in &pids {
        assert!(!alive(*pid), "{name} (pid {pid}) outlived rempart up");
    }
    let policies = hsm_data.path().join("policies");
    let out = Command::new(rempart()).arg("check").arg(&policies).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// node/tests/clients/api_e2e.cjs against the running perimeter (blocks signed by the real
/// rempart-signer through SoftHSM2, reached through the gateway's TLS): eosjs and wharfkit make
/// an account, turn its active permission into a 2-of-3 multisig and use it; one key of three
/// is refused.
fn multisig_through_the_perimeter(ca: &Path) {
    use rempart_core::key::{KeyType, PrivateKey};
    if !eosjs_installed() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let info = through_gateway(ca, "/v1/chain/get_info", "{}").expect("get_info");
    let keys: Vec<String> = (0..3)
        .map(|_| PrivateKey::generate(KeyType::K1).to_wif().expect("wif").to_string())
        .collect();
    let request = serde_json::json!({
        "url": "https://127.0.0.1:8443",
        "chain_id": info["chain_id"],
        "eosio_wif": rempart::up::layout::DEV_PRIVATE_KEY,
        "keys": keys,
    });
    let mut child = Command::new("node")
        .arg(root.join("node/tests/clients/api_e2e.cjs"))
        .env("NODE_PATH", root.join("tests/clients/node_modules"))
        .env("NODE_EXTRA_CA_CERTS", ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node");
    std::io::Write::write_all(
        &mut child.stdin.take().expect("stdin"),
        request.to_string().as_bytes(),
    )
    .expect("request");
    let output = child.wait_with_output().expect("node output");
    let out: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "api_e2e.cjs printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let ok = |name: &str| -> serde_json::Value {
        let v = &out[name];
        assert!(v.get("error").is_none() && !v["ok"].is_null(), "{name} failed: {out}");
        v["ok"].clone()
    };
    assert_eq!(ok("eosjs_newaccount")["processed"]["receipt"]["status"], "executed");
    ok("eosjs_multisig");
    ok("alice_is_multisig_on_the_api_node");
    assert_eq!(ok("eosjs_one_of_three_refused")["refused"]["error"]["code"], 3_090_003);
    assert_eq!(ok("eosjs_two_of_three")["processed"]["receipt"]["status"], "executed");
    ok("trade_exists_on_the_api_node");
    ok("wharfkit_newaccount");
    assert_eq!(ok("wharfkit_two_of_three")["processed"]["receipt"]["status"], "executed");
}

fn have_softhsm() -> bool {
    let ok = Command::new("softhsm2-util").arg("--version").output().is_ok()
        && Path::new("/usr/lib/softhsm/libsofthsm2.so").exists();
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "SoftHSM2 is missing and CI=true");
        eprintln!(
            "skipped the --hsm softhsm part: SoftHSM2 is not installed (apt-get install softhsm2)"
        );
    }
    ok
}

#[test]
fn check_passes_on_the_shipped_policies_and_explains_a_broken_cross_reference() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(rempart()).arg("check").arg(root.join("policies")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A copy whose gateway pool points where no api node listens.
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(policies.join("seccomp")).unwrap();
    std::fs::create_dir_all(dir.path().join("certs")).unwrap();
    for f in ["signer.toml", "node.toml", "genesis.json", "seccomp/signer.x86_64.json"] {
        std::fs::copy(root.join("policies").join(f), policies.join(f)).unwrap();
    }
    for f in ["ca.pem", "server.pem", "server.key"] {
        std::fs::copy(root.join("certs").join(f), dir.path().join("certs").join(f)).unwrap();
    }
    let gateway = std::fs::read_to_string(root.join("policies/gateway.toml")).unwrap();
    let broken = gateway.replace("nodes = [\"127.0.0.1:8888\"]", "nodes = [\"127.0.0.1:8899\"]");
    assert_ne!(broken, gateway, "the shipped gateway policy changed shape");
    std::fs::write(policies.join("gateway.toml"), broken).unwrap();
    let out = Command::new(rempart()).arg("check").arg(&policies).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("127.0.0.1:8899") && err.contains("http_listen"), "{err}");
}
