//! A real etcd (Debian's etcd-server) for the tests of the guard shared by standby signers:
//! one member on free loopback ports with its data in a given directory, killed and reaped when
//! dropped. Included by path from the signer's tests and benchmarks and from the node's tests;
//! it depends on `std` only.
#![allow(dead_code, unreachable_pub, reason = "each including test uses a different part")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running etcd.
pub struct Etcd {
    pub child: Child,
    /// Its client port on 127.0.0.1 (the JSON gateway).
    pub port: u16,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

use rempart_core::testing::free_port;

impl Etcd {
    /// `etcd` on `PATH`; `None` (the test skips, saying why) when it is missing, a failure under
    /// `CI=true`, where tests/run.sh installs it.
    pub fn program() -> Option<PathBuf> {
        let found = std::env::var_os("PATH")
            .and_then(|p| std::env::split_paths(&p).map(|d| d.join("etcd")).find(|p| p.is_file()));
        if found.is_none() {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            assert!(!ci, "CI=true but etcd is missing: apt-get install etcd-server");
            eprintln!("SKIPPED: etcd is not installed (Debian package etcd-server)");
        }
        found
    }

    /// Starts `program` with its data under `dir`; returns once it is healthy (it has a leader
    /// and serves reads), not merely once its port accepts: a fresh member accepts at once but
    /// holds requests until it has elected itself, which on a slow disk can outlast a signer's
    /// etcd timeout, and a signer that cannot reach its shared guard at start stops (exit 75).
    pub fn start(program: &Path, dir: &Path) -> Etcd {
        let (port, peer) = (free_port(), free_port());
        let client = format!("http://127.0.0.1:{port}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.join("etcd.log")).expect("etcd log");
        let child = Command::new(program)
            .args(["--name", "t", "--data-dir"])
            .arg(dir.join("etcd"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("t={peer_url}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        let mut e = Etcd { child, port };
        // Polled every 20 ms, up to 1000 times (a count, not a clock: the node's tests forbid
        // reading one outside the producer's); each poll waits at most 1 s for its answer.
        let mut last = String::from("no connection");
        for _ in 0..1000 {
            if let Ok(Some(status)) = e.child.try_wait() {
                let log = std::fs::read_to_string(dir.join("etcd.log")).unwrap_or_default();
                panic!("etcd exited ({status}) before it was healthy; its log:\n{log}");
            }
            match e.health() {
                Ok(body) if body.contains("\"health\":\"true\"") => return e,
                Ok(body) => last = body,
                Err(err) => last = err.to_string(),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = std::fs::read_to_string(dir.join("etcd.log")).unwrap_or_default();
        panic!("etcd was not healthy after 1000 polls (last: {last}); its log:\n{log}");
    }

    /// etcd's answer to `GET /health` (head and body).
    fn health(&self) -> std::io::Result<String> {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(1)))?;
        s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        Ok(answer)
    }

    /// Kills it now (the test goes on without it).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
