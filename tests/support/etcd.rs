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

    /// Starts `program` with its data under `dir`; returns once it accepts connections.
    pub fn start(program: &Path, dir: &Path) -> Etcd {
        let (port, peer) = (free_port(), free_port());
        let client = format!("http://127.0.0.1:{port}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new(program)
            .args(["--name", "t", "--data-dir"])
            .arg(dir.join("etcd"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("t={peer_url}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        let e = Etcd { child, port };
        // Polled every 20 ms for up to 20 s (a count, not a clock: the node's tests forbid
        // reading one outside the producer's).
        for _ in 0..1000 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return e;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("etcd did not accept connections within 20 s");
    }

    /// Kills it now (the test goes on without it).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
