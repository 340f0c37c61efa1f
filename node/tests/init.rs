//! `rempart-node init` as a real process: it creates the data directory, is idempotent, and
//! refuses a data directory that belongs to another chain.

use std::path::Path;
use std::process::Command;

fn write_config(dir: &Path, genesis_ts: &str) -> std::path::PathBuf {
    let genesis = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/genesis.json"),
    )
    .expect("genesis")
    .replace("2024-01-01T00:00:00.000", genesis_ts);
    std::fs::write(dir.join("genesis.json"), genesis).expect("write genesis");
    let toml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/node.toml"),
    )
    .expect("node.toml")
    .replace("../var/node/producer", "data/producer")
    .replace("../var/node/api", "data/api");
    let path = dir.join("node.toml");
    std::fs::write(&path, toml).expect("write config");
    path
}

fn init(config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rempart-node"))
        .args(["init", "--role", "producer", "--config"])
        .arg(config)
        .output()
        .expect("run rempart-node")
}

#[test]
fn init_is_idempotent_and_refuses_another_chain() {
    let dir = std::env::temp_dir().join(format!("rempart-node-init-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = write_config(&dir, "2024-01-01T00:00:00.000");
    let first = init(&config);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let second = init(&config);
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    assert_eq!(first.stdout, second.stdout, "same chain id both times");
    // Another genesis, same data directory: refused.
    write_config(&dir, "2024-01-02T00:00:00.000");
    let third = init(&config);
    assert!(!third.status.success());
    assert!(String::from_utf8_lossy(&third.stderr).contains("belongs to chain"));
    // A broken config is a usage error (64).
    std::fs::write(&config, "bogus = 1\n").expect("write");
    assert_eq!(init(&config).status.code(), Some(64));
    let _ = std::fs::remove_dir_all(dir);
}
