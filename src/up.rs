//! `rempart up`: the whole perimeter on one machine, for development and evaluation. It writes
//! a development configuration under one data directory on first start (from the policies
//! embedded in this binary), then runs a signer, a producer, two api nodes and the gateway on
//! https://127.0.0.1:8443 as separate processes, waits until each is ready, prints how to reach
//! it, streams the children's logs and stops them all, in reverse order, on Ctrl-C or when one
//! of them dies. Its children stop by themselves when it is killed outright: each reads a pipe
//! from `up` as its stdin and stops when that pipe closes (`--exit-with-stdin`).
//!
//! It must never touch a data directory's chain once created (a second start resumes it), never
//! use its development keys for anything but a development chain, and never leave a child
//! running when it returns.

use std::ffi::OsString;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::{Args, ValueEnum};

pub mod hsm;
pub mod layout;
pub mod probe;
pub mod supervise;

use layout::{
    API_LISTEN, DEV_PRIVATE_KEY, DEV_PUBLIC_KEY, GATEWAY_ADMIN, GATEWAY_TLS, Layout,
    PRODUCER_LISTEN,
};
use supervise::{Stop, Supervisor};

/// The head a fresh chain reaches before `up` calls it ready: eosjs and wharfkit take the block
/// three behind the head as their TaPoS reference (`blocksBehind: 3`) and set the expiration from
/// its time; below block 5 that is the genesis block, whose 2024 timestamp would make every
/// transaction expired at birth (the gateway and the chain both refuse it).
const CLIENT_READY_HEAD: u64 = 5;

/// Exit status when a child died or did not become ready (the others were stopped).
pub const EXIT_CHILD: u8 = 1;
/// Exit status for a configuration that cannot be written or read (sysexits EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;
/// Exit status when a program or tool it needs is missing (sysexits EX_UNAVAILABLE).
pub const EXIT_UNAVAILABLE: u8 = 69;

/// The programs `up` starts, found next to the `rempart` binary.
const PROGRAMS: [&str; 3] = ["rempart-signer", "rempart-node", "rempart-gateway"];

/// Arguments of `rempart up`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct UpArgs {
    /// Data directory (configuration, keys, chain state). Default: $XDG_DATA_HOME/rempart, or
    /// ~/.local/share/rempart.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Keep the block key in an HSM instead of a key file (first start only).
    #[arg(long, value_enum, value_name = "KIND")]
    pub hsm: Option<Hsm>,
}

/// HSMs `rempart up` can prepare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[non_exhaustive]
pub enum Hsm {
    /// A SoftHSM2 token (needs softhsm2-util and libsofthsm2.so).
    Softhsm,
}

/// Why `rempart up` could not bring the perimeter up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A shipped policy no longer has a key `up` adjusts.
    #[error(
        "the embedded policy has no [{section}] {key}: this build of rempart is inconsistent; \
         rebuild it from one checkout"
    )]
    Template {
        /// The TOML section.
        section: String,
        /// The key.
        key: String,
    },
    /// The data directory could not be chosen.
    #[error("no data directory: set --data DIR, XDG_DATA_HOME or HOME")]
    NoDataDir,
    /// A program `up` starts is missing.
    #[error(
        "{program} is not next to this rempart binary in {dir}: build the workspace with \
         `cargo build --release --workspace` and run target/release/rempart up"
    )]
    MissingProgram {
        /// The program.
        program: String,
        /// Where it was looked for.
        dir: PathBuf,
    },
    /// A port the perimeter needs is taken.
    #[error(
        "{addr} is already in use: another `rempart up` (or another program) holds it; stop it \
         first"
    )]
    PortInUse {
        /// The address.
        addr: String,
    },
    /// A setup step failed.
    #[error("{0}")]
    Setup(String),
}

impl UpError {
    fn io(path: &Path, source: io::Error) -> UpError {
        UpError::Io { path: path.to_owned(), source }
    }

    /// The exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            UpError::MissingProgram { .. } => EXIT_UNAVAILABLE,
            UpError::Template { .. } | UpError::Io { .. } => EXIT_CONFIG,
            _ => EXIT_CHILD,
        }
    }
}

/// The default data directory: `$XDG_DATA_HOME/rempart`, else `~/.local/share/rempart`.
pub fn default_data_dir() -> Option<PathBuf> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    nonempty("XDG_DATA_HOME")
        .map(|d| d.join("rempart"))
        .or_else(|| nonempty("HOME").map(|h| h.join(".local/share/rempart")))
}

/// Runs `rempart up`: progress and the children's logs on `out`, failures on `err`.
///
/// # Errors
///
/// Returns the I/O error when `out` or `err` cannot be written.
pub fn run(args: &UpArgs, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<u8> {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            writeln!(err, "rempart up: cannot start the async runtime: {e}")?;
            return Ok(EXIT_CHILD);
        }
    };
    match runtime.block_on(up(args, out)) {
        Ok(code) => Ok(code),
        Err(e) => {
            writeln!(err, "rempart up: {e}")?;
            Ok(e.exit_code())
        }
    }
}

/// The three programs, by name.
struct Programs {
    signer: PathBuf,
    node: PathBuf,
    gateway: PathBuf,
}

async fn up(args: &UpArgs, out: &mut dyn Write) -> Result<u8, UpError> {
    let root = match &args.data {
        Some(d) => d.clone(),
        None => default_data_dir().ok_or(UpError::NoDataDir)?,
    };
    std::fs::create_dir_all(&root).map_err(|e| UpError::io(&root, e))?;
    let root = root.canonicalize().map_err(|e| UpError::io(&root, e))?;
    let layout = Layout::new(root);
    let programs = programs(out)?;
    for addr in [GATEWAY_TLS, GATEWAY_ADMIN, PRODUCER_LISTEN, API_LISTEN[0], API_LISTEN[1]] {
        if std::net::TcpListener::bind(addr).is_err() {
            return Err(UpError::PortInUse { addr: addr.into() });
        }
    }
    if layout.marker().exists() {
        say(out, &format!("resuming the chain in {}", layout.root.display()));
        if args.hsm.is_some() {
            say(out, "--hsm applies to a first start only: this data directory keeps its backend");
        }
    } else {
        say(out, &format!("first start: writing the configuration in {}", layout.root.display()));
        prepare(&layout, args.hsm, &programs, out)?;
    }
    let genesis = rempart_node::genesis::Genesis::load(&layout.genesis())
        .map_err(|e| UpError::Setup(e.to_string()))?;
    let chain_id = genesis.chain_id().to_string();
    let mut env: Vec<(&str, OsString)> = Vec::new();
    let softhsm_conf = layout.softhsm().join("softhsm2.conf");
    if softhsm_conf.exists() {
        env.push(("SOFTHSM2_CONF", softhsm_conf.into_os_string()));
    }

    let mut sup = Supervisor::new()?;
    let started = start_all(&mut sup, &layout, &programs, &env, &chain_id, out).await;
    let stop = match started {
        Ok(()) => {
            summary(out, &layout, &chain_id, &sup);
            sup.watch(out).await
        }
        Err(stop) => stop,
    };
    let code = match &stop {
        Stop::Signal(sig) => {
            say(out, &format!("{sig}: stopping everything"));
            0
        }
        Stop::Died(name, status) => {
            say(out, &format!("{name} exited ({status}): stopping the others"));
            EXIT_CHILD
        }
        Stop::Timeout(what) => {
            say(out, &format!("{what} did not happen in time: stopping everything"));
            EXIT_CHILD
        }
    };
    let killed = sup.stop_all(out).await;
    if !killed.is_empty() {
        say(out, &format!("had to kill: {}", killed.join(", ")));
    }
    say(out, "all stopped");
    Ok(code)
}

fn say(out: &mut dyn Write, line: &str) {
    let _ = writeln!(out, "{:>8} | {line}", "up");
    let _ = out.flush();
}

fn arg_list(items: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    items.iter().map(|a| a.as_ref().to_os_string()).collect()
}

async fn start_all(
    sup: &mut Supervisor,
    layout: &Layout,
    programs: &Programs,
    env: &[(&str, OsString)],
    chain_id: &str,
    out: &mut dyn Write,
) -> Result<(), Stop> {
    let spawn_failed = |e: UpError| Stop::Died("up".into(), e.to_string());
    let signer_toml = layout.signer_toml();
    sup.spawn(
        "signer",
        &programs.signer,
        &arg_list(&[
            &"--log-format",
            &"json",
            &"run",
            &"--policy",
            &signer_toml,
            &"--exit-with-stdin",
        ]),
        env,
        out,
    )
    .map_err(spawn_failed)?;
    let socket = layout.signer_socket();
    sup.wait_until("the signer's socket accepting", Duration::from_secs(30), out, || {
        probe::unix_accepts(&socket)
    })
    .await?;

    let producer_toml = layout.node_toml(0);
    let metrics = layout.producer_metrics();
    let _ = std::fs::remove_file(&metrics);
    sup.spawn(
        "producer",
        &programs.node,
        &arg_list(&[
            &"--log-format",
            &"json",
            &"run",
            &"--role",
            &"producer",
            &"--config",
            &producer_toml,
            &"--exit-with-stdin",
        ]),
        &[],
        out,
    )
    .map_err(spawn_failed)?;
    let mut first: Option<u64> = None;
    sup.wait_until("the producer's head advancing", Duration::from_secs(60), out, || {
        let head = probe::metrics_head(&metrics);
        let ready = match (first, head) {
            (Some(f), Some(h)) => h > f,
            (None, Some(h)) => {
                first = Some(h);
                false
            }
            _ => false,
        };
        std::future::ready(ready)
    })
    .await?;

    for i in 1..=2 {
        let config = layout.node_toml(i);
        let name = format!("api{i}");
        sup.spawn(
            &name,
            &programs.node,
            &arg_list(&[
                &"--log-format",
                &"json",
                &"run",
                &"--role",
                &"api",
                &"--config",
                &config,
                &"--exit-with-stdin",
            ]),
            &[],
            out,
        )
        .map_err(spawn_failed)?;
        let addr: SocketAddr = API_LISTEN[i - 1].parse().expect("a constant address");
        // Ready once it serves this chain and has caught up with the producer (the gateway
        // takes a node lagging by more than max_lag_blocks out of its pool).
        let metrics = &metrics;
        sup.wait_until(
            &format!("{name} serving chain {chain_id}, caught up with the producer"),
            Duration::from_secs(120),
            out,
            || async move {
                let produced = probe::metrics_head(metrics).unwrap_or(0);
                probe::get_info(addr)
                    .await
                    .is_some_and(|(id, head)| id == chain_id && head + 2 >= produced)
            },
        )
        .await?;
    }

    let gateway_toml = layout.gateway_toml();
    sup.spawn(
        "gateway",
        &programs.gateway,
        &arg_list(&[&"serve", &"--policy", &gateway_toml, &"--exit-with-stdin"]),
        &[],
        out,
    )
    .map_err(spawn_failed)?;
    let admin: SocketAddr = GATEWAY_ADMIN.parse().expect("a constant address");
    sup.wait_until("the gateway answering /healthz", Duration::from_secs(30), out, || {
        probe::healthz(admin)
    })
    .await?;
    // Everything serves by now; on a fresh chain, wait for the block clients need before the
    // summary invites them to transact.
    let metrics = &metrics;
    sup.wait_until(
        &format!("block {CLIENT_READY_HEAD}, the first a client's TaPoS can reference"),
        Duration::from_secs(30),
        out,
        || std::future::ready(probe::metrics_head(metrics).is_some_and(|h| h >= CLIENT_READY_HEAD)),
    )
    .await?;
    Ok(())
}

fn summary(out: &mut dyn Write, layout: &Layout, chain_id: &str, sup: &Supervisor) {
    let ca = layout.ca();
    let ca = ca.display();
    let pids: Vec<String> = sup.children().map(|(n, p)| format!("{n}={p}")).collect();
    let text = format!(
        "
rempart is up — a DEVELOPMENT chain: its keys are public knowledge, never use them for value.

  chain id     {chain_id}
  gateway      https://{GATEWAY_TLS}  (trust {ca})
  metrics      http://{GATEWAY_ADMIN}/metrics, /healthz
  api nodes    http://{api1}, http://{api2}  (private: clients go through the gateway)
  producer     eosio, private address {PRODUCER_LISTEN}; signer at unix:{socket}
  eosio key    {DEV_PRIVATE_KEY}  (public {DEV_PUBLIC_KEY})
  data         {data}
  processes    {pids}

Try it:
  curl --cacert {ca} -X POST https://{GATEWAY_TLS}/v1/chain/get_info

  NODE_EXTRA_CA_CERTS={ca} node -e '
    const {{ Api, JsonRpc }} = require(\"eosjs\");
    const {{ JsSignatureProvider }} = require(\"eosjs/dist/eosjs-jssig\");
    const rpc = new JsonRpc(\"https://{GATEWAY_TLS}\", {{ fetch }});
    const api = new Api({{ rpc, signatureProvider: new JsSignatureProvider([\"{DEV_PRIVATE_KEY}\"]) }});
    rpc.get_info().then(i => console.log(i.chain_id, i.head_block_num));'

Ctrl-C stops everything; `rempart up --data {data}` again resumes this chain.
",
        api1 = API_LISTEN[0],
        api2 = API_LISTEN[1],
        socket = layout.signer_socket().display(),
        data = layout.root.display(),
        pids = pids.join(" "),
    );
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Set (to anything but empty or `0`) when the programs next to `rempart` are built and must
/// be used as they are: the test suite sets it once its workspace build made them.
pub const NO_BUILD_ENV: &str = "REMPART_UP_NO_BUILD";

/// Whether [`NO_BUILD_ENV`] asks `up` (and the test helpers that start the programs) not to
/// build them.
pub fn no_build() -> bool {
    std::env::var_os(NO_BUILD_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Finds the programs next to this binary. When this binary lives in the target directory of
/// the checkout it was built from, `cargo build` (a no-op when fresh) builds them first with the
/// same profile, so that `cargo run --release -- up` works from a fresh checkout, unless
/// [`NO_BUILD_ENV`] is set.
fn programs(out: &mut dyn Write) -> Result<Programs, UpError> {
    let exe = std::env::current_exe().map_err(|e| UpError::io(Path::new("rempart"), e))?;
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = dir.parent().and_then(|t| t.canonicalize().ok());
    let ours = manifest.join("target").canonicalize().ok();
    let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if !no_build() && target.is_some() && target == ours && matches!(profile, "debug" | "release") {
        say(out, "building rempart-signer, rempart-node and rempart-gateway (cargo build)");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.arg("build").current_dir(manifest);
        if profile == "release" {
            cmd.arg("--release");
        }
        for p in PROGRAMS {
            cmd.args(["-p", p, "--bin", p]);
        }
        let status = cmd.status().map_err(|e| UpError::Setup(format!("cannot run cargo: {e}")))?;
        if !status.success() {
            return Err(UpError::Setup(format!(
                "cargo build of {} failed ({status})",
                PROGRAMS.join(", ")
            )));
        }
    }
    let find = |p: &str| {
        let path = dir.join(p);
        if path.is_file() {
            Ok(path)
        } else {
            Err(UpError::MissingProgram { program: p.into(), dir: dir.clone() })
        }
    };
    Ok(Programs {
        signer: find(PROGRAMS[0])?,
        node: find(PROGRAMS[1])?,
        gateway: find(PROGRAMS[2])?,
    })
}

/// Runs a setup command to completion; its output on failure becomes the error.
fn setup_command(what: &str, cmd: &mut Command) -> Result<String, UpError> {
    let output = cmd.output().map_err(|e| UpError::Setup(format!("{what}: cannot run it: {e}")))?;
    if !output.status.success() {
        return Err(UpError::Setup(format!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// First start: every file, the node data directories and the signer's guard state.
fn prepare(
    layout: &Layout,
    hsm: Option<Hsm>,
    programs: &Programs,
    out: &mut dyn Write,
) -> Result<(), UpError> {
    let state = layout.signer_state();
    std::fs::create_dir_all(&state).map_err(|e| UpError::io(&state, e))?;
    layout::write_seccomp(layout)?;
    for i in 0..=2 {
        layout::write(&layout.node_toml(i), &layout::node_config(i)?)?;
    }
    layout::write(&layout.gateway_toml(), &layout::gateway_config()?)?;
    layout::write_certs(layout)?;
    match hsm {
        None => {
            layout::write(&layout.genesis(), layout::GENESIS_JSON)?;
            layout::write(&layout.signer_toml(), layout::SIGNER_TOML)?;
            layout::write_secret(&state.join("dev.key"), &format!("{DEV_PRIVATE_KEY}\n"))?;
        }
        Some(Hsm::Softhsm) => {
            let key = hsm::prepare_softhsm(layout, programs, out)?;
            say(out, &format!("block key generated in the SoftHSM2 token: {key}"));
        }
    }
    // A first start interrupted half-way is completed, never redone: the guard state and the
    // chain state are created once.
    let signer_toml = layout.signer_toml();
    let guarded = std::fs::read_dir(&state)
        .map_err(|e| UpError::io(&state, e))?
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with("guard-"));
    if !guarded {
        setup_command(
            "rempart-signer guard init",
            Command::new(&programs.signer).args(["guard", "init", "--policy"]).arg(&signer_toml),
        )?;
    }
    for (i, role) in [(0, "producer"), (1, "api"), (2, "api")] {
        if layout.node_data(i).exists() {
            continue;
        }
        let config = layout.node_toml(i);
        let line = setup_command(
            &format!("rempart-node init --role {role}"),
            Command::new(&programs.node).args(["init", "--role", role, "--config"]).arg(&config),
        )?;
        say(out, line.trim());
    }
    std::fs::write(layout.marker(), "written by rempart up; remove the directory to start over\n")
        .map_err(|e| UpError::io(&layout.marker(), e))
}

#[cfg(test)]
mod tests;
