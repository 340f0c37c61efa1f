use std::os::unix::fs::PermissionsExt;

use rempart_core::key::KeyType;

use super::*;

const WIF: &str = "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3";
const PUB: &str = "PUB_K1_6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5BoDq63";

fn write_key(dir: &Path, mode: u32, text: &str) -> std::path::PathBuf {
    let path = dir.join("dev.key");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn loads_a_private_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_key(dir.path(), 0o600, &format!("{WIF}\n"));
    let b = SoftBackend::open(&[&path], true).unwrap();
    assert_eq!(b.public_keys()[0].to_string(), PUB);
    let digest = [3u8; 32];
    let rs = b.sign_raw(&b.public_keys()[0], &digest).unwrap();
    let sig = rempart_core::key::Signature::from_raw_rs(
        KeyType::K1,
        &rs,
        &Checksum256(digest),
        &b.public_keys()[0],
    )
    .unwrap();
    assert!(sig.verify(&Checksum256(digest), &b.public_keys()[0]));
}

#[test]
fn loose_mode_and_production_chain_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_key(dir.path(), 0o640, WIF);
    let err = SoftBackend::open(&[&path], true).err().unwrap();
    assert!(err.to_string().contains("chmod 600"), "{err}");
    assert!(!err.to_string().contains(WIF));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = SoftBackend::open(&[&path], false).err().unwrap();
    assert!(err.to_string().contains("dangerous_dev_chain"), "{err}");
}

#[test]
fn garbage_key_file_error_does_not_quote_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_key(dir.path(), 0o600, "PVT_K1_notakey");
    let err = SoftBackend::open(&[&path], true).err().unwrap();
    assert!(!err.to_string().contains("notakey"), "{err}");
}
