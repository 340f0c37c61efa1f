//! Unit tests of the admin CLI steps that need no YubiKey: building and writing proposals.

use clap::Parser;

use super::*;
use crate::cli::{Cli, Command};

const CHAIN: &str = "abababababababababababababababababababababababababababababababab";

fn propose_args(extra: &[&str]) -> ProposeArgs {
    let mut words = vec![
        "rempart",
        "admin",
        "propose",
        "--signer-id",
        "bp1.signer",
        "--chain-id",
        CHAIN,
        "--out",
        "unused.json",
    ];
    words.extend_from_slice(extra);
    match Cli::try_parse_from(words).expect("parses").command {
        Command::Admin(AdminArgs { step: AdminStep::Propose(a) }) => a,
        other => panic!("parsed as {other:?}"),
    }
}

#[test]
fn actions_take_exactly_their_flags() {
    let a = propose_args(&["--action", "rotate", "--producer", "eosio", "--key-type", "R1"]);
    assert_eq!(
        action_from_args(&a).unwrap(),
        AdminAction::Rotate { producer: "eosio".parse().unwrap(), key_type: KeyType::R1 }
    );
    let a = propose_args(&["--action", "rotate"]);
    assert!(matches!(
        action_from_args(&a),
        Err(AdminCliError::ActionArgs { action: "rotate", problem: "needs --producer" })
    ));
    let a = propose_args(&["--action", "pause", "--producer", "eosio"]);
    assert!(matches!(action_from_args(&a), Err(AdminCliError::ActionArgs { .. })));
    let a = propose_args(&["--action", "retire", "--producer", "eosio"]);
    assert!(matches!(
        action_from_args(&a),
        Err(AdminCliError::ActionArgs { problem: "needs --key", .. })
    ));
    let a = propose_args(&["--action", "replace-policy", "--policy-sha256", CHAIN]);
    assert!(matches!(action_from_args(&a), Ok(AdminAction::ReplacePolicy { .. })));
    let a = propose_args(&["--action", "resume", "--destroy"]);
    assert!(matches!(action_from_args(&a), Err(AdminCliError::ActionArgs { .. })));
}

#[test]
fn propose_writes_a_file_that_reads_back_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = propose_args(&["--action", "pause", "--expires-in", "600"]);
    a.out = dir.path().join("p.json");
    let mut out = Vec::new();
    assert_eq!(propose(&a, &mut out, TimePointSec(1_000)).unwrap(), 0);
    let p = read_proposal(&a.out).unwrap();
    assert_eq!(p.command.action, AdminAction::Pause);
    assert_eq!(p.command.expires, TimePointSec(1_600));
    assert!(p.approvals.is_empty());
    assert!(String::from_utf8(out).unwrap().contains("PAUSE all signing"));
    let err = propose(&a, &mut Vec::new(), TimePointSec(1_000)).unwrap_err();
    assert!(matches!(err, AdminCliError::Exists(_)), "{err}");
    assert_eq!(err.exit_code(), EXIT_DATA);
}

#[test]
fn two_proposals_get_different_nonces() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = propose_args(&["--action", "resume"]);
    a.out = dir.path().join("a.json");
    propose(&a, &mut Vec::new(), TimePointSec(1)).unwrap();
    a.out = dir.path().join("b.json");
    propose(&a, &mut Vec::new(), TimePointSec(1)).unwrap();
    let (x, y) = (read_proposal(&dir.path().join("a.json")), read_proposal(&a.out));
    assert_ne!(x.unwrap().command.nonce, y.unwrap().command.nonce);
}

#[test]
fn expiry_out_of_range_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["0", "604801"] {
        let mut a = propose_args(&["--action", "pause", "--expires-in", bad]);
        a.out = dir.path().join(format!("{bad}.json"));
        let err = propose(&a, &mut Vec::new(), TimePointSec(1)).unwrap_err();
        assert!(matches!(err, AdminCliError::Usage(_)), "{err}");
        assert!(!a.out.exists());
    }
}

#[test]
fn replace_atomically_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.json");
    std::fs::write(&path, "old").unwrap();
    replace_atomically(&path, "new").unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_tampered_file_is_refused_with_exit_65() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = propose_args(&["--action", "pause"]);
    a.out = dir.path().join("p.json");
    propose(&a, &mut Vec::new(), TimePointSec(1)).unwrap();
    let text = std::fs::read_to_string(&a.out).unwrap();
    std::fs::write(&a.out, text.replace("\"pause\"", "\"resume\"")).unwrap();
    let err = read_proposal(&a.out).unwrap_err();
    assert!(err.to_string().contains("do not approve it"), "{err}");
    assert_eq!(err.exit_code(), EXIT_DATA);
}

#[cfg(not(feature = "yubikey"))]
#[test]
fn without_the_feature_card_steps_say_how_to_get_it() {
    let cli = Cli::try_parse_from(["rempart", "admin", "enroll"]).unwrap();
    let Command::Admin(args) = cli.command else { panic!() };
    let err = run(&args, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, AdminCliError::NoYubikeySupport));
    assert_eq!(err.exit_code(), EXIT_UNAVAILABLE);
}
