//! The whole perimeter of the end-to-end suite: the files `rempart up` writes (its layout and
//! config generation from the `rempart` library, adjusted for four namespaces and WireGuard),
//! a SoftHSM2 token holding the block key, and the five processes — signer, producer, two api
//! nodes, gateway — each started in its namespace, with its log in `logs/NAME.log`.
//!
//! Every file lives in one temporary directory and every process is a [`Proc`] killed by PID on
//! drop. It never writes outside that directory (SOFTHSM2_CONF points into it) and never uses
//! the development key for anything but this throw-away chain.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rempart::up::layout::{self, Layout, quoted, set_key};
use rempart_signer::wireguard::{WgKey, generate_key_file};

use super::net::{
    API_TUNNEL, API_VETH, Net, PRODUCER_API_VETH, PRODUCER_SIGNER_VETH, PRODUCER_TUNNEL, Proc,
    SIGNER_TUNNEL, SIGNER_VETH, wait_for,
};

/// The producer's private listener (blocks and forwarded pushes), on its tunnel address.
pub(crate) const PRODUCER_PRIVATE: &str = "10.98.0.1:9876";
/// The signer's TCP listener, on its tunnel address.
pub(crate) const SIGNER_TCP: &str = "10.98.0.4:7010";
/// The api nodes' HTTP listeners, on the api namespace's edge link.
pub(crate) const API_HTTP: [&str; 2] = ["10.96.0.2:8888", "10.96.0.2:8889"];
const PRODUCER_WG_PORT: u16 = 51830;
const API_WG_PORT: u16 = 51831;
const SIGNER_WG_PORT: u16 = 51832;
const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN: &str = "rempart-e2e";
const KEY_LABEL: &str = "eosio-k1";
const USER_PIN: &str = "1234";

/// The three programs, built next to this test binary.
pub(crate) struct Programs {
    signer: PathBuf,
    node: PathBuf,
    gateway: PathBuf,
}

impl Programs {
    /// Builds them (a no-op when fresh) with this test binary's profile, unless the suite's
    /// workspace build made them (`REMPART_UP_NO_BUILD`, set by tests/run.sh): a build here
    /// would relink them with other features while other tests run them.
    pub(crate) fn build() -> Programs {
        let exe = std::env::current_exe().expect("test binary path");
        let dir = exe.parent().and_then(Path::parent).expect("target profile directory");
        let programs = Programs {
            signer: dir.join("rempart-signer"),
            node: dir.join("rempart-node"),
            gateway: dir.join("rempart-gateway"),
        };
        if rempart::up::no_build() {
            return programs;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.arg("build").current_dir(env!("CARGO_MANIFEST_DIR"));
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        for p in ["rempart-signer", "rempart-node", "rempart-gateway"] {
            cmd.args(["-p", p, "--bin", p]);
        }
        let out = cmd.output().expect("run cargo");
        assert!(out.status.success(), "cargo build: {}", String::from_utf8_lossy(&out.stderr));
        programs
    }
}

/// Which process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Part {
    /// The signer (signer namespace).
    Signer,
    /// The producer (producer namespace).
    Producer,
    /// Api node 1 or 2 (api namespace).
    Api(usize),
    /// The gateway (edge namespace).
    Gateway,
}

impl Part {
    fn name(self) -> String {
        match self {
            Part::Signer => "signer".into(),
            Part::Producer => "producer".into(),
            Part::Api(i) => format!("api{i}"),
            Part::Gateway => "gateway".into(),
        }
    }
}

/// The written perimeter and its running processes.
pub(crate) struct Perimeter {
    /// Where everything lives (`rempart up`'s layout).
    pub(crate) layout: Layout,
    /// The chain id (the genesis schedules the HSM key, so it is not the shipped one).
    pub(crate) chain_id: String,
    programs: Programs,
    procs: HashMap<Part, Proc>,
    namespaces: HashMap<Part, String>,
    softhsm_conf: PathBuf,
    _dir: tempfile::TempDir,
}

/// One `[wireguard]` section with its peers (public key, tunnel address, endpoint).
fn wireguard(
    iface: &str,
    key_file: &str,
    port: u16,
    me: &str,
    peers: &[(WgKey, &str, String)],
) -> String {
    let mut s = format!(
        "\n[wireguard]\ninterface = \"{iface}\"\nprivate_key_file = \"{key_file}\"\n\
         listen_port = {port}\naddress = \"{me}/24\"\nstats_interval_secs = 1\n"
    );
    for (key, address, endpoint) in peers {
        s.push_str(&format!(
            "\n[[wireguard.peers]]\npublic_key = \"{key}\"\naddress = \"{address}\"\n\
             endpoint = \"{endpoint}\"\npersistent_keepalive_secs = 1\n"
        ));
    }
    s
}

fn set(text: &str, section: &str, key: &str, value: &str) -> String {
    set_key(text, section, key, Some(&quoted(value))).expect("the shipped file has the section")
}

fn checked(what: &str, cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Perimeter {
    /// Writes every file of the perimeter and initialises the guard and the three chains.
    pub(crate) fn write(net: &Net) -> Perimeter {
        let programs = Programs::build();
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(dir.path().to_path_buf());
        let p = |f: &str| layout.root.join(f);
        std::fs::create_dir_all(p("logs")).expect("logs");
        std::fs::create_dir_all(layout.signer_state()).expect("signer state");
        // Both allowlists: the signer runs on boringtun where it is on PATH, and its tunnel
        // counters come from the reader child confined by the second.
        layout::write_seccomp(&layout).expect("seccomp");
        layout::write_certs(&layout).expect("certificates");

        // WireGuard keys: producer ⇄ signer and producer ⇄ api (one interface per namespace).
        std::fs::create_dir_all(p("var/wg")).expect("wg dir");
        let producer_key = generate_key_file(&p("var/wg/producer.key")).expect("wg key");
        let api_key = generate_key_file(&p("var/wg/api.key")).expect("wg key");
        let signer_key = generate_key_file(&p("var/wg/signer.key")).expect("wg key");

        // Nodes: `up`'s configurations, moved onto the tunnel and the edge link.
        for i in 0..=2 {
            let mut text = layout::node_config(i).expect("node config");
            text = set(&text, "api", "producer", PRODUCER_PRIVATE);
            text = set_key(&text, "producer", "sign_timeout_ms", Some("400")).expect("key");
            match i {
                0 => {
                    text = set(&text, "producer", "signer", SIGNER_TCP);
                    text = set(&text, "producer", "private_listen", PRODUCER_PRIVATE);
                    text.push_str(&wireguard(
                        &net.producer_wg,
                        "../var/wg/producer.key",
                        PRODUCER_WG_PORT,
                        PRODUCER_TUNNEL,
                        &[
                            (api_key, API_TUNNEL, format!("{API_VETH}:{API_WG_PORT}")),
                            (signer_key, SIGNER_TUNNEL, format!("{SIGNER_VETH}:{SIGNER_WG_PORT}")),
                        ],
                    ));
                }
                i => {
                    text = set(&text, "api", "http_listen", API_HTTP[i - 1]);
                    text = set(&text, "api", "metrics_file", &format!("../var/node/api{i}.prom"));
                    if i == 1 {
                        // Api node 1 brings the namespace's tunnel up; api node 2 uses it.
                        text =
                            set(&text, "producer", "private_listen", &format!("{API_TUNNEL}:9876"));
                        text.push_str(&wireguard(
                            &net.api_wg,
                            "../var/wg/api.key",
                            API_WG_PORT,
                            API_TUNNEL,
                            &[(
                                producer_key,
                                PRODUCER_TUNNEL,
                                format!("{PRODUCER_API_VETH}:{PRODUCER_WG_PORT}"),
                            )],
                        ));
                    }
                }
            }
            layout::write(&layout.node_toml(i), &text).expect("node.toml");
        }

        // The gateway: `up`'s policy with the pool on the edge link.
        let nodes = API_HTTP.iter().map(|a| quoted(a)).collect::<Vec<_>>().join(", ");
        let gateway = layout::gateway_config().expect("gateway config");
        let gateway =
            set_key(&gateway, "pools", "nodes", Some(&format!("[{nodes}]"))).expect("key");
        layout::write(&layout.gateway_toml(), &gateway).expect("gateway.toml");

        // SoftHSM2: a token of this run's own, the block key generated inside it.
        let tokens = p("softhsm/tokens");
        std::fs::create_dir_all(&tokens).expect("tokens");
        let softhsm_conf = p("softhsm/softhsm2.conf");
        std::fs::write(
            &softhsm_conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .expect("softhsm2.conf");
        checked(
            "softhsm2-util --init-token",
            Command::new("softhsm2-util").env("SOFTHSM2_CONF", &softhsm_conf).args([
                "--init-token",
                "--free",
                "--label",
                TOKEN,
                "--so-pin",
                "5678",
                "--pin",
                USER_PIN,
            ]),
        );
        layout::write_secret(&layout.signer_state().join("hsm.pin"), &format!("{USER_PIN}\n"))
            .expect("pin");
        let readable = [
            tokens.display().to_string(),
            softhsm_conf.display().to_string(),
            SOFTHSM_MODULE.into(),
        ];
        let signer_toml = |chain: &str, key: &str| {
            format!(
                r#"[chain]
id = "{chain}"
dangerous_dev_chain = true
max_clock_skew_ms = 1500
[[producers]]
account = "eosio"
key = "{key}"
[backend]
kind = "pkcs11"
[backend.pkcs11]
module = "{SOFTHSM_MODULE}"
token_label = "{TOKEN}"
pin_file = "../var/signer/hsm.pin"
keys = [{{ label = "{KEY_LABEL}" }}]
[listen]
unix_socket = "../var/signer/signer.sock"
allow_own_uid = true
tcp = "{SIGNER_TCP}"
[state]
dir = "../var/signer"
audit_log = "../var/signer/audit.jsonl"
[metrics]
file = "../var/signer/metrics.prom"
[sandbox]
seccomp_policy = "seccomp/signer.x86_64.json"
memory_lock = "current"
read_only_paths = [{readable}]
{wireguard}"#,
                readable = readable.iter().map(|r| quoted(r)).collect::<Vec<_>>().join(", "),
                wireguard = wireguard(
                    &net.signer_wg,
                    "../var/wg/signer.key",
                    SIGNER_WG_PORT,
                    SIGNER_TUNNEL,
                    &[(
                        producer_key,
                        PRODUCER_TUNNEL,
                        format!("{PRODUCER_SIGNER_VETH}:{PRODUCER_WG_PORT}")
                    )],
                ),
            )
        };
        let shipped: serde_json::Value =
            serde_json::from_str(layout::GENESIS_JSON).expect("embedded genesis");
        let shipped_chain = genesis_chain_id(&layout, &shipped);
        layout::write(
            &layout.signer_toml(),
            &signer_toml(
                &shipped_chain,
                "PUB_K1_6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5BoDq63",
            ),
        )
        .expect("signer.toml");
        let key = checked(
            "rempart-signer keygen",
            Command::new(&programs.signer)
                .env("SOFTHSM2_CONF", &softhsm_conf)
                .args(["keygen", "--key-type", "k1", "--label", KEY_LABEL, "--policy"])
                .arg(layout.signer_toml()),
        );
        let key = key.trim().to_string();
        let mut genesis = shipped;
        *genesis
            .pointer_mut("/initial_schedule/producers/0/block_signing_key")
            .expect("genesis producer") = serde_json::Value::String(key.clone());
        let chain_id = genesis_chain_id(&layout, &genesis);
        layout::write(&layout.signer_toml(), &signer_toml(&chain_id, &key)).expect("signer.toml");

        checked(
            "rempart-signer guard init",
            Command::new(&programs.signer)
                .env("SOFTHSM2_CONF", &softhsm_conf)
                .args(["guard", "init", "--policy"])
                .arg(layout.signer_toml()),
        );
        for (i, role) in [(0, "producer"), (1, "api"), (2, "api")] {
            checked(
                &format!("rempart-node init --role {role}"),
                Command::new(&programs.node)
                    .args(["init", "--role", role, "--config"])
                    .arg(layout.node_toml(i)),
            );
        }
        let namespaces = HashMap::from([
            (Part::Signer, net.signer.clone()),
            (Part::Producer, net.producer.clone()),
            (Part::Api(1), net.api.clone()),
            (Part::Api(2), net.api.clone()),
            (Part::Gateway, net.edge.clone()),
        ]);
        Perimeter {
            layout,
            chain_id,
            programs,
            procs: HashMap::new(),
            namespaces,
            softhsm_conf,
            _dir: dir,
        }
    }

    /// The signer program (for its offline subcommands).
    pub(crate) fn signer_program(&self) -> &Path {
        &self.programs.signer
    }

    /// A file under the data directory.
    pub(crate) fn path(&self, f: &str) -> PathBuf {
        self.layout.root.join(f)
    }

    /// The log of one part (every start appends to it).
    pub(crate) fn log(&self, part: Part) -> String {
        std::fs::read_to_string(self.path(&format!("logs/{}.log", part.name()))).unwrap_or_default()
    }

    /// The tail of every log, for failure messages.
    pub(crate) fn logs(&self) -> String {
        let parts = [Part::Signer, Part::Producer, Part::Api(1), Part::Api(2), Part::Gateway];
        parts
            .iter()
            .map(|p| {
                let log = self.log(*p);
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(25)..].join("\n");
                format!("--- {}:\n{tail}\n", p.name())
            })
            .collect()
    }

    /// Starts one part in its namespace (its log appended to).
    pub(crate) fn spawn(&mut self, part: Part) {
        let ns = &self.namespaces[&part];
        let mut cmd = match part {
            Part::Signer => {
                let mut c = Net::command(ns, &self.programs.signer);
                c.env("SOFTHSM2_CONF", &self.softhsm_conf)
                    .args(["--log-format", "text", "run", "--policy"])
                    .arg(self.layout.signer_toml());
                c
            }
            Part::Producer | Part::Api(_) => {
                let (i, role) = match part {
                    Part::Api(i) => (i, "api"),
                    _ => (0, "producer"),
                };
                let mut c = Net::command(ns, &self.programs.node);
                c.args(["--log-format", "text", "run", "--role", role, "--config"])
                    .arg(self.layout.node_toml(i));
                c
            }
            Part::Gateway => {
                let mut c = Net::command(ns, &self.programs.gateway);
                c.args(["serve", "--policy"]).arg(self.layout.gateway_toml());
                c
            }
        };
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(&format!("logs/{}.log", part.name())))
            .expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn");
        self.procs.insert(part, Proc(child));
    }

    /// SIGKILL one part (by PID) and reap it.
    pub(crate) fn kill(&mut self, part: Part) {
        if let Some(mut p) = self.procs.remove(&part) {
            p.kill();
        }
    }

    /// Sends a signal to a running part.
    pub(crate) fn signal(&self, part: Part, signal: rustix::process::Signal) {
        let pid = self.procs[&part].0.id();
        let pid = rustix::process::Pid::from_raw(pid as i32).expect("pid");
        rustix::process::kill_process(pid, signal).expect("signal");
    }

    /// Panics with the logs if a part that should run has exited.
    pub(crate) fn assert_running(&mut self) {
        let dead: Vec<String> = self
            .procs
            .iter_mut()
            .filter_map(|(part, p)| (!p.running()).then(|| part.name()))
            .collect();
        assert!(dead.is_empty(), "exited: {dead:?}\n{}", self.logs());
    }

    /// The producer's metrics file.
    pub(crate) fn producer_metrics(&self) -> PathBuf {
        self.layout.producer_metrics()
    }

    /// An api node's metrics file.
    pub(crate) fn api_metrics(&self, i: usize) -> PathBuf {
        self.path(&format!("var/node/api{i}.prom"))
    }

    /// Starts everything in order, each part waited for before the next.
    pub(crate) fn start(&mut self) {
        self.spawn(Part::Signer);
        let socket = self.layout.signer_socket();
        wait_for(
            "the signer's socket",
            Duration::from_secs(30),
            || std::os::unix::net::UnixStream::connect(&socket).is_ok(),
            || self.logs(),
        );
        self.spawn(Part::Producer);
        let producer = self.producer_metrics();
        wait_for(
            "blocks signed through the tunnel",
            Duration::from_secs(60),
            || head(&producer) >= 3,
            || self.logs(),
        );
        // The sandboxed signer reads its tunnel's per-peer counters: on boringtun (what `auto`
        // picks where it is on PATH, as tests/run.sh puts it) through its reader child,
        // confined by the allowlist installed beside its own.
        let boringtun = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("boringtun-cli").is_file()));
        let signer_log = self.log(Part::Signer);
        let up = signer_log.lines().find(|l| l.contains("WireGuard interface up"));
        let expected = if boringtun { "boringtun" } else { "wireguard-go" };
        assert!(up.is_some_and(|l| l.contains(expected)), "{expected} expected:\n{signer_log}");
        let signer_metrics = self.path("var/signer/metrics.prom");
        wait_for(
            "the signer's tunnel statistics",
            Duration::from_secs(20),
            || metric(&signer_metrics, "rempart_wireguard_stats_up{") == Some(1.0),
            || {
                format!(
                    "{}\n{}",
                    std::fs::read_to_string(&signer_metrics).unwrap_or_default(),
                    self.logs()
                )
            },
        );
        for i in 1..=2 {
            self.spawn(Part::Api(i));
            let api = self.api_metrics(i);
            wait_for(
                &format!("api node {i} following the producer"),
                Duration::from_secs(60),
                || head(&api) + 2 >= head(&producer) && head(&api) >= 3,
                || self.logs(),
            );
        }
        self.spawn(Part::Gateway);
        let edge = self.namespaces[&Part::Gateway].clone();
        wait_for(
            "the gateway's /healthz",
            Duration::from_secs(30),
            || super::client::admin(&edge, "/healthz").is_some(),
            || self.logs(),
        );
        self.assert_running();
    }
}

/// The chain id of a genesis document (written to a scratch file and loaded by the node's code).
fn genesis_chain_id(layout: &Layout, genesis: &serde_json::Value) -> String {
    let text = serde_json::to_string_pretty(genesis).expect("genesis json");
    layout::write(&layout.genesis(), &text).expect("genesis.json");
    rempart_node::genesis::Genesis::load(&layout.genesis()).expect("genesis").chain_id().to_string()
}

/// A value from a Prometheus text file: the first line starting with `prefix`.
pub(crate) fn metric(file: &Path, prefix: &str) -> Option<f64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.trim().parse().ok())
}

/// A node's head block number from its metrics file (0 before it has one).
pub(crate) fn head(file: &Path) -> u64 {
    metric(file, "rempart_node_head_block_num{").map_or(0, |v| v as u64)
}

/// The producer's missed slots.
pub(crate) fn missed(file: &Path) -> u64 {
    metric(file, "rempart_node_missed_slots_total{").map_or(0, |v| v as u64)
}
