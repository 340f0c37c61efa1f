//! The end-to-end suite's network, built with the shared `tests/support/netns.rs`: four network
//! namespaces — edge (the gateway and the public clients), api (two api nodes), producer and
//! signer — joined by veth pairs, addresses only inside them, the WireGuard interface names the
//! parts create, and the processes the suite starts in them.
//!
//! Everything created here is removed on drop even when the test fails: processes are killed by
//! PID, and the shared module's `Net` kills the wireguard-go processes behind this run's
//! interfaces (by exact command line, then PID) and deletes the namespaces. It must never touch
//! an interface, namespace or process it did not create.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::netns;

/// The edge namespace's end of the edge–api link (the gateway reaches the api nodes from it).
pub(crate) const EDGE_VETH: &str = "10.96.0.1";
/// The api namespace's end of the edge–api link (the api nodes' HTTP listeners).
pub(crate) const API_EDGE_VETH: &str = "10.96.0.2";
/// The producer's end of the api–producer link (WireGuard's outer address).
pub(crate) const PRODUCER_API_VETH: &str = "10.99.0.1";
/// The api namespace's end of the api–producer link.
pub(crate) const API_VETH: &str = "10.99.0.2";
/// The producer's end of the producer–signer link.
pub(crate) const PRODUCER_SIGNER_VETH: &str = "10.97.0.1";
/// The signer's end of the producer–signer link.
pub(crate) const SIGNER_VETH: &str = "10.97.0.2";
/// Tunnel addresses.
pub(crate) const PRODUCER_TUNNEL: &str = "10.98.0.1";
/// The api namespace's tunnel address (both api nodes use it).
pub(crate) const API_TUNNEL: &str = "10.98.0.2";
/// The signer's tunnel address.
pub(crate) const SIGNER_TUNNEL: &str = "10.98.0.4";

/// Polls `cond` until it holds; panics at the deadline with `what` and `log()`.
pub(crate) fn wait_for(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
    log: impl Fn() -> String,
) {
    let end = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < end, "timed out ({timeout:?}) waiting for {what}\n{}", log());
        // The poll interval of a deadline-bounded wait, not a synchronisation.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed (SIGKILL, by PID) and reaped on drop.
pub(crate) struct Proc(pub(crate) Child);

impl Proc {
    /// SIGKILL now and reap.
    pub(crate) fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Whether it is still running.
    pub(crate) fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The four namespaces and their links; the WireGuard interface names the parts will create.
pub(crate) struct Net {
    /// The gateway and the clients.
    pub(crate) edge: String,
    /// The two api nodes.
    pub(crate) api: String,
    /// The producer.
    pub(crate) producer: String,
    /// The signer.
    pub(crate) signer: String,
    /// WireGuard interface of the producer.
    pub(crate) producer_wg: String,
    /// WireGuard interface of the api namespace (brought up by api node 1).
    pub(crate) api_wg: String,
    /// WireGuard interface of the signer.
    pub(crate) signer_wg: String,
    /// Owns all of it; removes it on drop.
    _net: netns::Net,
}

impl Net {
    /// Creates the namespaces and the veth links.
    pub(crate) fn new() -> Net {
        let mut net = netns::Net::new("re");
        let edge = net.namespace("edge");
        let api = net.namespace("api");
        let producer = net.namespace("prod");
        let signer = net.namespace("sign");
        let cidr = |a: &str| format!("{a}/24");
        net.veth(&edge, &cidr(EDGE_VETH), &api, &cidr(API_EDGE_VETH));
        net.veth(&producer, &cidr(PRODUCER_API_VETH), &api, &cidr(API_VETH));
        net.veth(&producer, &cidr(PRODUCER_SIGNER_VETH), &signer, &cidr(SIGNER_VETH));
        Net {
            producer_wg: net.interface("p"),
            api_wg: net.interface("a"),
            signer_wg: net.interface("s"),
            edge,
            api,
            producer,
            signer,
            _net: net,
        }
    }

    /// A command that runs `program` inside namespace `ns`.
    pub(crate) fn command(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).arg(program);
        c
    }
}
