//! `rempart up --hsm softhsm`: a SoftHSM2 token of its own under the data directory, the block
//! key generated inside it by `rempart-signer keygen`, and the genesis and signer policy made to
//! agree with that key (the chain id then differs from the shipped one).
//!
//! The token's PINs are random and kept in files of mode 0600; they never appear on a command
//! line or in the output. It must never touch the system's SoftHSM2 tokens: every call runs with
//! SOFTHSM2_CONF pointing at the data directory's own configuration.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::layout::{self, Layout, quoted, set_key};
use super::{Programs, UpError, say, setup_command};

/// Where libsofthsm2.so is found on common distributions.
const MODULES: [&str; 4] = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
];

/// The token label and the key's label.
const TOKEN: &str = "rempart";
const KEY_LABEL: &str = "eosio-k1";

fn module() -> Result<PathBuf, UpError> {
    MODULES.iter().map(PathBuf::from).find(|p| p.is_file()).ok_or_else(|| {
        UpError::Setup(format!(
            "--hsm softhsm: libsofthsm2.so is not in {}; install SoftHSM2 (Debian: apt-get \
             install softhsm2) or start without --hsm",
            MODULES.join(", ")
        ))
    })
}

/// A random PIN (16 hex digits from the kernel's generator).
fn random_pin() -> Result<String, UpError> {
    let mut bytes = [0u8; 8];
    let mut f = std::fs::File::open("/dev/urandom")
        .map_err(|e| UpError::io(Path::new("/dev/urandom"), e))?;
    std::io::Read::read_exact(&mut f, &mut bytes)
        .map_err(|e| UpError::io(Path::new("/dev/urandom"), e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Creates the token, the key, the genesis and the signer policy; returns the block key.
pub(super) fn prepare_softhsm(
    layout: &Layout,
    programs: &Programs,
    out: &mut dyn Write,
) -> Result<String, UpError> {
    let module = module()?;
    let dir = layout.softhsm();
    let tokens = dir.join("tokens");
    if std::fs::read_dir(&tokens).is_ok_and(|mut d| d.next().is_some()) {
        return Err(UpError::Setup(format!(
            "{} holds a token from a first start that did not finish; delete {} and start again",
            tokens.display(),
            layout.root.display()
        )));
    }
    std::fs::create_dir_all(&tokens).map_err(|e| UpError::io(&tokens, e))?;
    let conf = dir.join("softhsm2.conf");
    layout::write(
        &conf,
        &format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )?;
    let pin = random_pin()?;
    let so_pin = random_pin()?;
    let pin_file = layout.signer_state().join("hsm.pin");
    layout::write_secret(&pin_file, &format!("{pin}\n"))?;
    layout::write_secret(&dir.join("so.pin"), &format!("{so_pin}\n"))?;
    say(out, &format!("creating the SoftHSM2 token {TOKEN:?} in {}", tokens.display()));
    // softhsm2-util takes PINs as arguments only; its command line is visible to this user's
    // processes for the instant it runs, on a development machine.
    setup_command(
        "softhsm2-util --init-token",
        Command::new("softhsm2-util").env("SOFTHSM2_CONF", &conf).args([
            "--init-token",
            "--free",
            "--label",
            TOKEN,
            "--so-pin",
            &so_pin,
            "--pin",
            &pin,
        ]),
    )?;

    // The signer policy: pkcs11 backend, the token's files readable inside the sandbox.
    let mut text = set_key(layout::SIGNER_TOML, "backend", "kind", Some(&quoted("pkcs11")))?;
    text = set_key(&text, "backend.soft", "key_files", None)?;
    text = text.replace("\n[backend.soft]\n", "\n[backend.pkcs11]\n");
    text = set_key(
        &text,
        "backend.pkcs11",
        "keys",
        Some(&format!("[{{ label = {} }}]", quoted(KEY_LABEL))),
    )?;
    text = set_key(&text, "backend.pkcs11", "pin_file", Some(&quoted("../var/signer/hsm.pin")))?;
    text = set_key(&text, "backend.pkcs11", "token_label", Some(&quoted(TOKEN)))?;
    text =
        set_key(&text, "backend.pkcs11", "module", Some(&quoted(&module.display().to_string())))?;
    let readable =
        [tokens.display().to_string(), conf.display().to_string(), module.display().to_string()];
    let readable = readable.iter().map(|p| quoted(p)).collect::<Vec<_>>().join(", ");
    text = set_key(&text, "sandbox", "read_only_paths", Some(&format!("[{readable}]")))?;
    let signer_toml = layout.signer_toml();
    layout::write(&signer_toml, &text)?;

    let key = setup_command(
        "rempart-signer keygen",
        Command::new(&programs.signer)
            .env("SOFTHSM2_CONF", &conf)
            .args(["keygen", "--key-type", "k1", "--label", KEY_LABEL, "--policy"])
            .arg(&signer_toml),
    )?;
    let key = key.trim().to_string();

    // The genesis schedules the HSM key; the eosio account keeps the development key.
    let mut genesis: serde_json::Value = serde_json::from_str(layout::GENESIS_JSON)
        .map_err(|e| UpError::Setup(format!("embedded genesis: {e}")))?;
    let slot = genesis
        .pointer_mut("/initial_schedule/producers/0/block_signing_key")
        .ok_or_else(|| UpError::Setup("embedded genesis has no producer".into()))?;
    *slot = serde_json::Value::String(key.clone());
    let genesis_text = serde_json::to_string_pretty(&genesis)
        .map_err(|e| UpError::Setup(format!("genesis: {e}")))?;
    layout::write(&layout.genesis(), &genesis_text)?;
    let chain_id = rempart_node::genesis::Genesis::load(&layout.genesis())
        .map_err(|e| UpError::Setup(e.to_string()))?
        .chain_id()
        .to_string();
    text = set_key(&text, "chain", "id", Some(&quoted(&chain_id)))?;
    text = set_key(&text, "producers", "key", Some(&quoted(&key)))?;
    layout::write(&signer_toml, &text)?;
    Ok(key)
}
