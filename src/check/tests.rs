use super::*;

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// A copy of the shipped policies, with `edit` applied to one file, in a directory laid out
/// like the repository (so relative paths to ../certs hold).
fn copy_with(file: &str, edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(policies.join("seccomp")).unwrap();
    std::fs::create_dir_all(dir.path().join("certs")).unwrap();
    for f in
        ["signer.toml", "node.toml", "gateway.toml", "genesis.json", "seccomp/signer.x86_64.json"]
    {
        let text = std::fs::read_to_string(shipped().join(f)).unwrap();
        let text = if f == file { edit(text) } else { text };
        std::fs::write(policies.join(f), text).unwrap();
    }
    for f in ["ca.pem", "server.pem", "server.key"] {
        std::fs::copy(shipped().join("../certs").join(f), dir.path().join("certs").join(f))
            .unwrap();
    }
    dir
}

#[test]
fn the_shipped_policies_agree() {
    let report = check_dir(&shipped());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.ok.len(), 3, "{:?}", report.ok);
}

#[test]
fn a_signer_on_another_chain_is_reported() {
    let dir = copy_with("signer.toml", |t| t.replace("777b4f129d0f", "877b4f129d0f"));
    let report = check_dir(&dir.path().join("policies"));
    assert!(
        matches!(report.errors.as_slice(), [CheckError::ChainMismatch { .. }]),
        "{:?}",
        report.errors
    );
}

#[test]
fn a_producer_key_the_signer_does_not_sign_with_is_reported() {
    let other = rempart_core::key::PrivateKey::generate(rempart_core::key::KeyType::K1)
        .public_key()
        .to_string();
    let dir = copy_with("signer.toml", |t| {
        t.replace("PUB_K1_6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5BoDq63", &other)
    });
    let report = check_dir(&dir.path().join("policies"));
    assert!(
        report.errors.iter().any(|e| matches!(e, CheckError::KeyNotInSigner { .. })),
        "{:?}",
        report.errors
    );
}

#[test]
fn a_gateway_pool_pointing_nowhere_and_a_wrong_signer_address_are_reported() {
    let dir = copy_with("gateway.toml", |t| {
        t.replace("nodes = [\"127.0.0.1:8888\"]", "nodes = [\"127.0.0.1:8899\"]")
    });
    let report = check_dir(&dir.path().join("policies"));
    assert!(
        matches!(report.errors.as_slice(), [CheckError::PoolNodeUnknown { .. }]),
        "{:?}",
        report.errors
    );
    let dir = copy_with("node.toml", |t| {
        t.replace("unix:../var/signer/signer.sock", "unix:/tmp/other.sock")
    });
    let report = check_dir(&dir.path().join("policies"));
    assert!(
        matches!(report.errors.as_slice(), [CheckError::SignerUnreachable { .. }]),
        "{:?}",
        report.errors
    );
}

#[test]
fn an_invalid_file_is_reported_with_its_own_programs_explanation() {
    let dir = copy_with("node.toml", |t| t.replace("[limits]", "[limits]\nnot_a_key = 1"));
    let report = check_dir(&dir.path().join("policies"));
    assert!(
        report.errors.iter().any(
            |e| matches!(e, CheckError::Invalid { reason, .. } if reason.contains("not_a_key"))
        ),
        "{:?}",
        report.errors
    );
}

#[test]
fn a_tunnel_signer_without_the_reader_policy_beside_its_own_gets_a_warning_not_an_error() {
    let production = shipped().join("production");
    let reader = format!("wg-stats-reader.{}.json", std::env::consts::ARCH);
    // The example as shipped: its seccomp/ directory is installed on the host, not here.
    let report = check_dir(&production);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(
        report.warnings.iter().any(|w| w.contains("signer.toml")
            && w.contains(&production.join("seccomp").join(&reader).display().to_string())
            && w.contains("per-peer")),
        "{:?}",
        report.warnings
    );
    // Installed as the README says: both seccomp policies side by side, no warning.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("seccomp")).unwrap();
    std::fs::copy(production.join("signer.toml"), dir.path().join("signer.toml")).unwrap();
    for f in ["signer.x86_64.json", reader.as_str()] {
        std::fs::copy(shipped().join("seccomp").join(f), dir.path().join("seccomp").join(f))
            .unwrap();
    }
    let report = check_dir(dir.path());
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert!(report.ok.iter().any(|l| l.contains("signer policy")), "{:?}", report.ok);
    // Without the reader's file: the warning names it.
    std::fs::remove_file(dir.path().join("seccomp").join(&reader)).unwrap();
    let report = check_dir(dir.path());
    assert!(
        matches!(report.warnings.as_slice(), [w] if w.contains(&reader)),
        "{:?}",
        report.warnings
    );
}
