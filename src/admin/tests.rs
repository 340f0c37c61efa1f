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
        Command::Admin(AdminArgs { step: AdminStep::Propose(a), .. }) => a,
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
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("audit.jsonl");
    let cli =
        Cli::try_parse_from(["rempart", "admin", "enroll", "--audit"]).map(|_| ()).unwrap_err();
    assert!(cli.to_string().contains("value is required"), "{cli}");
    let words = ["rempart", "admin", "enroll", "--audit", journal.to_str().unwrap()];
    let Command::Admin(args) = Cli::try_parse_from(words).unwrap().command else { panic!() };
    let err = run(&args, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, AdminCliError::NoYubikeySupport));
    assert_eq!(err.exit_code(), EXIT_UNAVAILABLE);
}

fn admin_args(words: &[&str]) -> AdminArgs {
    let words = [&["rempart", "admin"][..], words].concat();
    match Cli::try_parse_from(words).expect("parses").command {
        Command::Admin(a) => a,
        other => panic!("parsed as {other:?}"),
    }
}

fn journal_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn steps_and_refusals_go_to_a_journal_the_signer_verifies() {
    let dir = tempfile::tempdir().unwrap();
    // The directory is created (the default one may not exist yet).
    let journal = dir.path().join("data/rempart/admin-audit.jsonl");
    let j = journal.to_str().unwrap();
    let out = dir.path().join("p.json");
    let o = out.to_str().unwrap();
    let propose = ["--signer-id", "bp1.signer", "--chain-id", CHAIN, "--action", "pause"];
    let args = admin_args(&[&["propose", "--audit", j, "--out", o][..], &propose].concat());
    assert_eq!(run(&args, &mut Vec::new()).unwrap(), 0);
    let p = read_proposal(&out).unwrap();
    // Never overwriting is a refusal, on record.
    let err = run(&args, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, AdminCliError::Exists(_)));
    // A signer that cannot be reached: refused, on record with the command it carried.
    let sock = dir.path().join("none.sock");
    let endpoint = format!("unix:{}", sock.display());
    let args = admin_args(&["submit", o, "--signer", &endpoint, "--audit", j]);
    assert_eq!(run(&args, &mut Vec::new()).unwrap_err().exit_code(), EXIT_UNAVAILABLE);

    let lines = journal_lines(&journal);
    let steps: Vec<&str> = lines.iter().map(|l| l["step"].as_str().unwrap()).collect();
    assert_eq!(steps, ["propose", "propose_refused", "submit_refused"]);
    assert!(lines.iter().all(|l| l["event"] == "admin"));
    assert_eq!(lines[0]["digest"], p.command.digest().to_string().as_str());
    assert_eq!(lines[2]["nonce"], p.command.nonce.to_string().as_str());
    assert_eq!(lines[2]["action"], "pause");
    assert!(lines[1]["message"].as_str().unwrap().contains("already exists"));
    assert!(lines[2]["peer"].as_str().unwrap().contains(&endpoint));
    let verified = rempart_signer::audit::verify(&journal).unwrap();
    assert_eq!(verified.lines, 3);

    // A broken journal stops the step before it does anything.
    let text = std::fs::read_to_string(&journal).unwrap();
    std::fs::write(&journal, text.replacen("propose_refused", "propose", 1)).unwrap();
    let other = dir.path().join("q.json");
    let q = other.to_str().unwrap();
    let args = admin_args(&[&["propose", "--audit", j, "--out", q][..], &propose].concat());
    let err = run(&args, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, AdminCliError::Audit(_)), "{err}");
    assert_eq!(err.exit_code(), EXIT_IO);
    assert!(!other.exists());
}

/// A step killed in the middle of its journal write leaves a last line without its newline:
/// the next step sets it aside, records that, and runs.
#[test]
fn a_journal_line_cut_by_a_crash_does_not_stop_the_next_step() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("admin-audit.jsonl");
    let j = journal.to_str().unwrap();
    let propose = ["--signer-id", "bp1.signer", "--chain-id", CHAIN, "--action", "pause"];
    let step = |out: &str| {
        let o = dir.path().join(out);
        let args = admin_args(
            &[&["propose", "--audit", j, "--out", o.to_str().unwrap()][..], &propose].concat(),
        );
        run(&args, &mut Vec::new())
    };
    assert_eq!(step("p.json").unwrap(), 0);
    let mut text = std::fs::read(&journal).unwrap();
    text.extend_from_slice(br#"{"seq":2,"time_ms":1,"event":"admin","st"#);
    std::fs::write(&journal, &text).unwrap();
    assert_eq!(step("q.json").unwrap(), 0);
    assert!(dir.path().join("q.json").exists());
    let lines = journal_lines(&journal);
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["admin", "torn_tail", "admin"]);
    assert_eq!(rempart_signer::audit::verify(&journal).unwrap().lines, 3);
}

#[test]
fn help_names_the_audit_journal_and_its_default() {
    use clap::CommandFactory as _;
    let mut cmd = Cli::command();
    let admin = cmd.find_subcommand_mut("admin").unwrap();
    let help = admin.render_long_help().to_string();
    assert!(help.contains("--audit <FILE>"), "{help}");
    assert!(help.contains("rempart-signer audit verify"), "{help}");
    assert!(help.contains("~/.local/share/rempart"), "{help}");
}
