//! The clients of the end-to-end suite, each a real program run inside a namespace: curl for
//! plain requests (through the gateway's TLS, trusting only the development CA, from a chosen
//! source address so that two clients are two rate-limit keys), eosjs under node for
//! transactions, and curl again for the gateway's admin listener and the api nodes' private API.
//!
//! Every call is bounded in time (curl --max-time, a deadline on node) and returns what the
//! program printed; it never retries on its own, so the test sees every failure.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use super::net::Net;

/// The gateway's public address inside the edge namespace.
pub(crate) const GATEWAY: &str = "https://127.0.0.1:8443";
/// The gateway's admin listener inside the edge namespace.
const ADMIN: &str = "http://127.0.0.1:9100";

/// GET on the gateway's admin listener: the body when the answer is 200.
pub(crate) fn admin(edge: &str, path: &str) -> Option<String> {
    let out = Net::command(edge, "curl")
        .args(["-sf", "--max-time", "3", &format!("{ADMIN}{path}")])
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A value of the gateway's metrics: the sum over lines starting with `prefix`.
pub(crate) fn gateway_metric(edge: &str, prefix: &str) -> f64 {
    let text = admin(edge, "/metrics").unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.trim().parse::<f64>().ok())
        .sum()
}

/// One POST through the gateway from `source`: the status (0 when no HTTP answer) and body.
pub(crate) fn post(edge: &str, ca: &Path, source: &str, path: &str, body: &str) -> (u16, String) {
    let out = Net::command(edge, "curl")
        .args(["-s", "--max-time", "5", "--interface", source, "--cacert"])
        .arg(ca)
        .args(["-X", "POST", "-d", body, "-w", "\n%{http_code}", &format!("{GATEWAY}{path}")])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// `count` get_info requests from `source` over one keep-alive TLS connection (curl's URL
/// glob), at most `rate` a second when given; one HTTP status per line on the channel as they
/// complete (0 when the connection failed).
pub(crate) struct Batch {
    child: Child,
    /// Status codes, in order.
    pub(crate) codes: mpsc::Receiver<u16>,
}

impl Batch {
    /// Starts the batch.
    pub(crate) fn start(
        edge: &str,
        ca: &Path,
        source: &str,
        count: u32,
        rate: Option<u32>,
    ) -> Batch {
        let mut cmd = Net::command(edge, "curl");
        cmd.args(["-s", "--max-time", "5", "--interface", source, "--cacert"]).arg(ca);
        if let Some(r) = rate {
            cmd.args(["--rate", &format!("{r}/s")]);
        }
        cmd.args([
            "-X",
            "POST",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}\n",
            &format!("{GATEWAY}/v1/chain/get_info?n=[1-{count}]"),
        ]);
        let mut child =
            cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn curl");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, codes) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line.trim().parse().unwrap_or(0)).is_err() {
                    break;
                }
            }
        });
        Batch { child, codes }
    }

    /// Every status of the batch, waiting at most `limit` for it to end.
    pub(crate) fn finish(mut self, limit: Duration) -> Vec<u16> {
        let mut all = Vec::new();
        let end = std::time::Instant::now() + limit;
        while let Ok(c) =
            self.codes.recv_timeout(end.saturating_duration_since(std::time::Instant::now()))
        {
            all.push(c);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        all
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `script` (in tests/e2e) under node inside `edge` with eosjs, trusting `ca`; `request`
/// on stdin, its one JSON answer parsed.
pub(crate) fn eosjs(edge: &str, ca: &Path, script: &str, request: &Value) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let modules = root.join("tests/clients/node_modules");
    assert!(
        modules.join("eosjs").is_dir(),
        "{} has no eosjs: run `npm ci` in tests/clients",
        modules.display()
    );
    let mut child = Net::command(edge, "node")
        .arg(root.join("tests/e2e").join(script))
        .env("NODE_PATH", &modules)
        .env("NODE_EXTRA_CA_CERTS", ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("write request");
    let out = child.wait_with_output().expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("{script}: {e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr))
    })
}

/// POST to an api node's private HTTP API from the edge namespace (not through the gateway).
pub(crate) fn api(edge: &str, addr: &str, path: &str, body: &str) -> Option<Value> {
    let out = Net::command(edge, "curl")
        .args(["-sf", "--max-time", "3", "-X", "POST", "-d", body, &format!("http://{addr}{path}")])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}
