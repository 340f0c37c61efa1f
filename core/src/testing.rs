//! Helpers for the workspace's tests (feature `test-support`, enabled by dev-dependencies only).

use std::collections::HashSet;
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Child;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand_core::RngCore;

/// Lowest port [`free_port`] hands out: below it sit well-known and registered services a
/// developer's machine may run.
const LOWEST: u16 = 10_000;

/// Ports this process has handed out already (a test asking for four ports gets four).
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A TCP port on 127.0.0.1 that nothing listens on now, for a program the test starts to bind
/// (a test cannot hand an external program its socket).
///
/// The port is taken below the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`), at random. A port that `bind(":0")` gave and
/// the test then closed is an ephemeral one: until the program binds it, any process's
/// outgoing connection may take it as its local port, and the program then fails with
/// `EADDRINUSE`. Below the range only an explicit bind takes a port. The same process is never
/// given one port twice; test processes running side by side each draw from about twenty
/// thousand ports.
pub fn free_port() -> u16 {
    let ephemeral_from = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let (low, high) = (LOWEST, ephemeral_from.max(LOWEST + 1));
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    for _ in 0..1_000 {
        let span = u32::from(high - low);
        let offset = u16::try_from(rand_core::OsRng.next_u32() % span).expect("span fits a u16");
        let port = low + offset;
        if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no free TCP port between {low} and {high} on 127.0.0.1 after 1 000 tries");
}

/// Waits until the program `daemon` accepts connections on the Unix socket `socket`, polling.
/// Panics at once with its exit status and `log` (where its stderr goes) if it exits first,
/// and after `timeout` if it never listens.
pub fn wait_unix_listening(daemon: &mut Child, socket: &Path, log: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while UnixStream::connect(socket).is_err() {
        let ended = daemon.try_wait().expect("wait for the daemon");
        assert!(
            ended.is_none() && Instant::now() < deadline,
            "the program never listened on {} ({}): {}",
            socket.display(),
            ended.map_or_else(|| format!("still running after {timeout:?}"), |s| s.to_string()),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let ephemeral_from: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .expect("read ip_local_port_range")
            .split_whitespace()
            .next()
            .expect("range start")
            .parse()
            .expect("a port");
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice: {ports:?}");
        for port in ports {
            assert!((LOWEST..ephemeral_from.max(LOWEST + 1)).contains(&port), "port {port}");
            TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
        }
    }

    /// A per-test directory under the system's temporary one (core has no tempfile crate),
    /// removed when dropped, also while a test unwinds.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("rempart-core-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("scratch directory");
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_listening_program_is_waited_for_no_longer() {
        let scratch = Scratch::new("listening");
        let dir = &scratch.0;
        let socket = dir.join("s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("sleep");
        let started = Instant::now();
        wait_unix_listening(&mut child, &socket, &dir.join("log"), Duration::from_secs(30));
        assert!(started.elapsed() < Duration::from_secs(5));
        child.kill().expect("kill");
        child.wait().expect("reap");
    }

    #[test]
    #[should_panic(expected = "exit status: 3): it said why")]
    fn a_program_that_exits_first_fails_the_wait_with_its_status_and_log() {
        let scratch = Scratch::new("exits");
        let dir = &scratch.0;
        let log = dir.join("log");
        std::fs::write(&log, "it said why").expect("log");
        let mut child =
            std::process::Command::new("sh").args(["-c", "exit 3"]).spawn().expect("sh");
        wait_unix_listening(&mut child, &dir.join("s.sock"), &log, Duration::from_secs(30));
    }
}
