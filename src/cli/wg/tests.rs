use std::os::unix::fs::PermissionsExt;

use clap::Parser;

use crate::cli::{Cli, run};

fn keygen(path: &std::path::Path) -> (u8, String, String) {
    let cli = Cli::try_parse_from(["rempart", "wg", "keygen", "--out", path.to_str().unwrap()])
        .expect("the command line parses");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(&cli, &mut out, &mut err).expect("writing to a Vec cannot fail");
    (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
}

#[test]
fn keygen_writes_a_0600_key_and_prints_the_public_key_that_the_signer_derives() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wg.key");
    let (code, out, err) = keygen(&path);
    assert_eq!(code, 0, "{err}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let printed: rempart_signer::wireguard::WgKey = out.trim().parse().unwrap();
    let read = rempart_signer::wireguard::read_private_key(&path).unwrap();
    assert_eq!(read.public(), printed);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!out.contains(text.trim()), "the private key must never be printed");
    assert!(!err.contains(text.trim()), "the private key must never be printed");
}

#[test]
fn keygen_refuses_to_overwrite_and_leaves_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wg.key");
    std::fs::write(&path, "old\n").unwrap();
    let (code, out, err) = keygen(&path);
    assert_eq!(code, super::EXIT_CANT_CREATE);
    assert!(out.is_empty());
    assert!(err.contains("already exists; refusing to overwrite"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\n");
}

#[test]
fn keygen_into_a_missing_directory_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing/wg.key");
    let (code, _, err) = keygen(&path);
    assert_eq!(code, super::EXIT_CANT_CREATE);
    assert!(err.contains("cannot create the key file"), "{err}");
}
