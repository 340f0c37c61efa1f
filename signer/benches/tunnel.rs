//! Sign-request latency over the WireGuard tunnel against TCP loopback and the Unix socket, in
//! the same run, as BENCHMARKS.md reports it (issue 7's target: the tunnel adds under 0.5 ms at
//! p99): `cargo bench -p rempart-signer --bench tunnel` (root: it makes network namespaces).
//!
//! Each round starts a fresh release `rempart-signer` (soft backend, sandboxed as in
//! production, state on disk) for each transport in turn, so that the three see the same
//! machine at the same time: on this host over its Unix socket and over TCP loopback, then in
//! a network namespace of its own behind its `[wireguard]` interface, with the client in a
//! second namespace, joined by a veth pair, reaching the signer's tunnel address through its own
//! interface of the same userspace implementation. `REMPART_BENCH_WG` lists the `[wireguard]
//! userspace` values to compare, one tunnel row each, interleaved round by round (default
//! `auto`, what a deployment gets: boringtun when `boringtun-cli` is on `PATH`, else
//! wireguard-go; `wireguard-go,boringtun` compares both); each row names the program found
//! behind the signer's interface, not the one asked for. The measurement is
//! `support/measure.rs`, shared with `latency.rs`. It touches nothing outside its temp
//! directories and the namespaces it makes (removed at the end, WireGuard processes killed by
//! PID) and kills its daemons by PID. `REMPART_BENCH_ROUNDS` (default 5 rounds of 200 requests
//! per transport) sets the length; `REMPART_BENCH_GAP_MS` paces requests as in `latency.rs`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/measure.rs"]
mod measure;
#[path = "../../tests/support/netns.rs"]
mod netns;

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use measure::{Sample, Stream};
use rempart_signer::wireguard::{WgKey, generate_key_file};

const SIGNER_TUNNEL: &str = "10.98.0.1";
const CLIENT_TUNNEL: &str = "10.98.0.2";
const SIGNER_VETH: &str = "10.99.0.1";
const CLIENT_VETH: &str = "10.99.0.2";
const SIGNER_WG_PORT: u16 = 51820;
const CLIENT_WG_PORT: u16 = 51821;
const SIGNER_TCP_PORT: u16 = 7010;

/// The two namespaces, the client's side of the tunnel (up for the whole run) and the signer's
/// WireGuard key (each round's signer brings its interface up again from its policy).
struct Tunnel {
    _net: netns::Net,
    /// The `[wireguard] userspace` value: "auto", "wireguard-go" or "boringtun".
    userspace: String,
    signer_ns: String,
    client_ns: String,
    signer_if: String,
    keys: tempfile::TempDir,
    client_wg: WgKey,
}

fn tunnel(userspace: &str) -> Tunnel {
    let mut net = netns::Net::new("rbt");
    let signer_ns = net.namespace("s");
    let client_ns = net.namespace("c");
    net.veth(&signer_ns, &format!("{SIGNER_VETH}/24"), &client_ns, &format!("{CLIENT_VETH}/24"));
    let signer_if = net.interface("s");
    let client_if = net.interface("c");
    let keys = tempfile::tempdir().unwrap();
    let signer_wg = generate_key_file(&keys.path().join("signer-wg.key")).unwrap();
    let client_key = keys.path().join("client-wg.key");
    let client_wg = generate_key_file(&client_key).unwrap();
    let endpoint = format!("{SIGNER_VETH}:{SIGNER_WG_PORT}");
    let signer_wg = signer_wg.to_string();
    // The client runs what the signer's side gets (`auto`: boringtun-cli when on PATH).
    let program = match userspace {
        "boringtun" => on_path("boringtun-cli").expect("REMPART_BENCH_WG: boringtun-cli on PATH"),
        "auto" => on_path("boringtun-cli").unwrap_or_else(|| "wireguard-go".into()),
        _ => "wireguard-go".into(),
    };
    net.userspace(
        &program,
        &client_ns,
        &client_if,
        &client_key,
        CLIENT_WG_PORT,
        &format!("{CLIENT_TUNNEL}/24"),
        &[netns::WgPeer {
            public_key: &signer_wg,
            address: SIGNER_TUNNEL,
            endpoint: Some(&endpoint),
        }],
    );
    Tunnel {
        _net: net,
        userspace: userspace.into(),
        signer_ns,
        client_ns,
        signer_if,
        keys,
        client_wg,
    }
}

/// `name` in a directory of `$PATH`.
fn on_path(name: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .and_then(|p| p.to_str().map(str::to_string))
}

/// One round through the tunnel: a fresh sandboxed signer in its namespace, listening on its
/// tunnel address only.
/// Returns the samples, the elapsed time and the implementation found behind the signer's
/// interface.
fn tunnel_round(t: &Tunnel) -> (Vec<Sample>, Duration, &'static str) {
    let wireguard = format!(
        "[wireguard]\ninterface = \"{}\"\nprivate_key_file = \"signer-wg.key\"\n\
         listen_port = {SIGNER_WG_PORT}\naddress = \"{SIGNER_TUNNEL}/24\"\n\
         userspace = \"{}\"\n\
         [[wireguard.peers]]\npublic_key = \"{}\"\naddress = \"{CLIENT_TUNNEL}\"\n\
         endpoint = \"{CLIENT_VETH}:{CLIENT_WG_PORT}\"\n",
        t.signer_if, t.userspace, t.client_wg
    );
    let sandbox = common::sandbox_toml(&[]);
    let s = common::setup_in(
        Some(&measure::state_parent()),
        None,
        common::DEV_PUB,
        &sandbox,
        &wireguard,
    );
    let key: PathBuf = s.dir.path().join("signer-wg.key");
    std::fs::copy(t.keys.path().join("signer-wg.key"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = std::fs::read_to_string(&s.policy).unwrap();
    let loopback =
        format!("tcp = \"127.0.0.1:{}\"\ntcp_allowed_peers = [\"127.0.0.1\"]", s.tcp_port);
    assert!(text.contains(&loopback));
    let text = text.replace(&loopback, &format!("tcp = \"{SIGNER_TUNNEL}:{SIGNER_TCP_PORT}\""));
    std::fs::write(&s.policy, text).unwrap();
    s.guard_init();
    // `ip netns exec` executes the signer in place: the child's PID is the signer's.
    let mut child = Command::new("ip")
        .args(["netns", "exec", &t.signer_ns, common::BIN, "--log-format", "json", "run"])
        .arg("--policy")
        .arg(&s.policy)
        .env(measure::TIMING_LOG.0, measure::TIMING_LOG.1)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = common::line_channel(child.stderr.take().unwrap());
    let mut d = common::Daemon { child, log };
    common::wait_for("the signer's Unix socket", Duration::from_secs(20), || {
        assert!(d.running(), "the signer exited:\n{}", d.lines().join("\n"));
        std::os::unix::net::UnixStream::connect(&s.socket).is_ok()
    });
    measure::wait_for_tunnel_stats(&s.socket);
    let to = format!("{SIGNER_TUNNEL}:{SIGNER_TCP_PORT}").parse().unwrap();
    // The first SYN can wait for a handshake: retry with a deadline.
    let stream = netns::inside(&t.client_ns, || {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            match netns::connect(Some(CLIENT_TUNNEL), to, Duration::from_secs(2)) {
                Ok(s) => return s,
                Err(e) => assert!(Instant::now() < end, "no connection through the tunnel: {e}"),
            }
        }
    });
    stream.set_nodelay(true).unwrap();
    let found = netns::userspace_processes(&t.signer_if);
    assert_eq!(found.len(), 1, "one userspace WireGuard behind {}: {found:?}", t.signer_if);
    let (samples, elapsed) = measure::round(&mut d, Stream::Tcp(stream), &s.key);
    (samples, elapsed, found[0].1)
}

fn main() {
    if !netns::namespaces_or_skip("the tunnel latency bench") {
        return;
    }
    let rounds: usize =
        std::env::var("REMPART_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("load average before: {}", load.trim());
    eprintln!("state directories under {}", measure::state_parent().display());
    let wanted = std::env::var("REMPART_BENCH_WG").unwrap_or_else(|_| "auto".into());
    let tunnels: Vec<Tunnel> = wanted
        .split(',')
        .map(|w| {
            let w = w.trim();
            assert!(
                ["auto", "wireguard-go", "boringtun"].contains(&w),
                "REMPART_BENCH_WG: {w:?} is none of auto, wireguard-go, boringtun"
            );
            tunnel(w)
        })
        .collect();
    let mut names = vec!["Unix socket".to_string(), "TCP loopback".to_string()];
    let mut results: Vec<(Vec<Sample>, Duration)> =
        vec![(Vec::new(), Duration::ZERO); 2 + tunnels.len()];
    let mut found: Vec<Vec<&str>> = vec![Vec::new(); tunnels.len()];
    for _ in 0..rounds {
        for (i, r) in results.iter_mut().enumerate() {
            let (s, e) = match i {
                0 => measure::local(None, common::DEV_PUB, None, false),
                1 => measure::local(None, common::DEV_PUB, None, true),
                _ => {
                    let (s, e, program) = tunnel_round(&tunnels[i - 2]);
                    if !found[i - 2].contains(&program) {
                        found[i - 2].push(program);
                    }
                    (s, e)
                }
            };
            r.0.extend(s);
            r.1 += e;
        }
    }
    names.extend(found.iter().map(|f| format!("WireGuard tunnel ({})", f.join(" + "))));
    measure::header();
    for (name, (samples, elapsed)) in names.iter().zip(&results) {
        measure::row("soft K1", name, samples, *elapsed);
    }
    println!();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (name, tunnel) in names.iter().zip(&results).skip(2) {
        for (what, f) in [
            ("round trip", measure::p50_p99 as fn(&[Sample]) -> (Duration, Duration)),
            ("transport part", measure::transport_p50_p99),
        ] {
            let (tcp50, tcp99) = f(&results[1].0);
            let (wg50, wg99) = f(&tunnel.0);
            println!(
                "{name} adds {:.3} ms at p50 and {:.3} ms at p99 to the {what} over TCP \
                 loopback (target: under 0.5 ms at p99)",
                ms(wg50) - ms(tcp50),
                ms(wg99) - ms(tcp99)
            );
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("load average after: {}", load.trim());
    drop(tunnels);
}
