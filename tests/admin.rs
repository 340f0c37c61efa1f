//! The admin ceremony through real PC/SC: `rempart admin` (the real binary, feature `yubikey`)
//! drives virtual PIV cards (tests/vcard) plugged into a private pcscd. Three cards with
//! different keys enroll, two approve a rotation, and rempart-core's check accepts it at
//! threshold 2 and refuses it with one approval, with a non-admin's approval, or after a
//! tampered edit; a wrong PIN signs nothing. `enroll --adopt` keeps the key a card holds and
//! refuses an empty slot. Every step and refusal lands in the admin audit journal, which
//! `rempart-signer audit verify` accepts.
#![cfg(feature = "yubikey")]

mod admin_support;

use admin_support::{Lab, PIN, reader, rempart, rempart_ok, signer_binary, write_secret};
use rempart_core::TimePointSec;
use rempart_core::admin::{AdminError, Proposal, verify_approvals};
use rempart_core::key::PublicKey;
use std::process::Command;

const CHAIN: &str = "3b58354cd4af30f0d59f1d9754a71a4c049a425dd9dad6a8ed858ca5d9a4e0b4";

/// The audit journal every step of these tests writes to.
const JOURNAL: &str = "admin-audit.jsonl";

fn enroll(lab: &Lab, slot: usize) -> PublicKey {
    let journal = lab.path(JOURNAL);
    let out = rempart_ok(&[
        "admin",
        "--audit",
        journal.to_str().unwrap(),
        "enroll",
        "--reader",
        &reader(slot),
    ]);
    let key = out.trim();
    assert!(key.starts_with("PUB_R1_"), "{out}");
    key.parse().expect("a valid R1 key")
}

fn approve(lab: &Lab, file: &str, slot: usize, pin_file: &str) -> std::process::Output {
    let file = lab.path(file);
    let pin = lab.path(pin_file);
    let journal = lab.path(JOURNAL);
    rempart(&[
        "admin",
        "approve",
        "--audit",
        journal.to_str().unwrap(),
        file.to_str().unwrap(),
        "--reader",
        &reader(slot),
        "--pin-file",
        pin.to_str().unwrap(),
    ])
}

fn propose(lab: &Lab, name: &str, action: &[&str]) -> Proposal {
    let out = lab.path(name);
    let mut args = vec![
        "admin",
        "propose",
        "--signer-id",
        "bp1.signer",
        "--chain-id",
        CHAIN,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(action);
    rempart_ok(&args);
    read(lab, name)
}

fn read(lab: &Lab, name: &str) -> Proposal {
    Proposal::from_json(&std::fs::read_to_string(lab.path(name)).unwrap()).unwrap()
}

fn now() -> TimePointSec {
    let s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    TimePointSec(u32::try_from(s.as_secs()).unwrap())
}

#[test]
fn two_of_three_virtual_yubikeys_approve_a_rotation() {
    let Some(mut lab) = Lab::start() else { return };
    let signer = signer_binary();
    write_secret(&lab.path("pin"), &format!("{PIN}\n"));
    write_secret(&lab.path("bad-pin"), "654321\n");
    std::fs::write(lab.path("open-pin"), format!("{PIN}\n")).unwrap();

    // Three admins, three cards: A and B plugged in, then C swapped in for B.
    lab.plug(0, "card-a", 1);
    lab.plug(1, "card-b", 2);
    let ka = enroll(&lab, 0);
    let kb = enroll(&lab, 1);
    lab.plug(1, "card-c", 3);
    let kc = enroll(&lab, 1);
    assert!(ka != kb && kb != kc && ka != kc, "three distinct admin keys");
    let admins = [ka, kb, kc];

    let p = propose(&lab, "rotate.json", &["--action", "rotate", "--producer", "eosio"]);
    assert!(p.approvals.is_empty());

    // A PIN file other users can read is refused before the card is asked.
    let before = std::fs::read(lab.path("rotate.json")).unwrap();
    let out = approve(&lab, "rotate.json", 0, "open-pin");
    assert_eq!(out.status.code(), Some(65), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));

    // A wrong PIN: refused by the card, exit 77, the file untouched.
    let out = approve(&lab, "rotate.json", 0, "bad-pin");
    assert_eq!(out.status.code(), Some(77), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused the PIN"));
    assert_eq!(std::fs::read(lab.path("rotate.json")).unwrap(), before);
    // Both refusals are in the journal, tied to the command, and it verifies.
    let lines = journal_lines(&lab);
    let refused: Vec<_> = lines.iter().filter(|l| l["step"] == "approve_refused").collect();
    assert_eq!(refused.len(), 2, "{lines:?}");
    assert!(refused[0]["message"].as_str().unwrap().contains("chmod 600"));
    let wrong_pin = refused[1];
    assert!(wrong_pin["message"].as_str().unwrap().contains("refused the PIN"), "{wrong_pin}");
    assert_eq!(wrong_pin["event"], "admin");
    assert_eq!(wrong_pin["action"], "rotate");
    assert_eq!(wrong_pin["digest"], p.command.digest().to_string().as_str());
    assert!(!wrong_pin.to_string().contains(PIN) && !wrong_pin.to_string().contains("654321"));
    assert_verifies(&lab, &signer, lines.len());

    // A approves (PIN right this time: the retry counter resets).
    let out = approve(&lab, "rotate.json", 0, "pin");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("rotate producer eosio"));
    let one = read(&lab, "rotate.json");
    assert_eq!(one.approvals.len(), 1);
    assert_eq!(one.approvals[0].key, ka);
    assert_eq!(
        verify_approvals(&one.command, &one.approvals, &admins, 2, now()),
        Err(AdminError::BelowThreshold { have: 1, need: 2 })
    );

    // A again: the same admin never counts twice.
    let out = approve(&lab, "rotate.json", 0, "pin");
    assert_eq!(out.status.code(), Some(65), "{}", String::from_utf8_lossy(&out.stderr));

    // C (in slot 1 now) approves: two of three.
    let out = approve(&lab, "rotate.json", 1, "pin");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let two = read(&lab, "rotate.json");
    assert_eq!(two.approvals.iter().map(|a| a.key).collect::<Vec<_>>(), vec![ka, kc]);
    assert_eq!(verify_approvals(&two.command, &two.approvals, &admins, 2, now()), Ok(vec![ka, kc]));

    // Card B plugged in again keeps its key (state survives unplugging).
    lab.plug(1, "card-b", 2);
    let p2 = propose(&lab, "pause.json", &["--action", "pause"]);
    let out = approve(&lab, "pause.json", 1, "pin");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(read(&lab, "pause.json").approvals[0].key, kb);

    // B is not an admin of a signer that lists only A and C.
    let bp = read(&lab, "pause.json");
    assert_eq!(
        verify_approvals(&p2.command, &bp.approvals, &[ka, kc], 1, now()),
        Err(AdminError::UnknownAdmin(kb))
    );

    // A tampered copy of the approved rotation (the readable fields and the packed command both
    // rewritten to a pause) fails on the approvals.
    let mut tampered = two.clone();
    tampered.command.action = rempart_core::admin::AdminAction::Pause;
    std::fs::write(lab.path("tampered.json"), tampered.to_json()).unwrap();
    let out = rempart(&["admin", "show", lab.path("tampered.json").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not verify"), "{out:?}");

    // `enroll --adopt` keeps the key card B holds; an empty slot has nothing to adopt.
    let journal = lab.path(JOURNAL);
    // The virtual card, like firmware before 5.2.3, does not report the key without the PIN.
    let pin = lab.path("pin");
    let adopt = |slot: usize| {
        rempart(&[
            "admin",
            "enroll",
            "--adopt",
            "--reader",
            &reader(slot),
            "--pin-file",
            pin.to_str().unwrap(),
            "--audit",
            journal.to_str().unwrap(),
        ])
    };
    let out = adopt(1);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), kb.to_string());
    let out = approve(&lab, "pause.json", 1, "pin");
    assert_eq!(out.status.code(), Some(65), "B's adopted key already approved this pause");
    lab.plug(1, "card-d", 4);
    let out = adopt(1);
    assert_eq!(out.status.code(), Some(65), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no P-256 key"), "{out:?}");
    let fresh = enroll(&lab, 1);
    assert!(!admins.contains(&fresh));
    let out = adopt(1);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), fresh.to_string());

    let lines = journal_lines(&lab);
    let steps: Vec<&str> = lines.iter().map(|l| l["step"].as_str().unwrap()).collect();
    assert_eq!(steps.iter().filter(|s| **s == "enroll").count(), 6, "{steps:?}");
    assert_eq!(steps.iter().filter(|s| **s == "enroll_refused").count(), 1, "{steps:?}");
    assert_eq!(steps.iter().filter(|s| **s == "approve").count(), 3, "{steps:?}");
    assert_eq!(steps.iter().filter(|s| **s == "approve_refused").count(), 4, "{steps:?}");
    assert_verifies(&lab, &signer, lines.len());

    // An edited journal no longer verifies, and `rempart admin` refuses to append to it.
    let text = std::fs::read_to_string(&journal).unwrap();
    std::fs::write(&journal, text.replacen("approve_refused", "approve", 1)).unwrap();
    let out = Command::new(&signer).args(["audit", "verify"]).arg(&journal).output();
    assert_eq!(out.unwrap().status.code(), Some(65));
    let out = adopt(1);
    assert_eq!(out.status.code(), Some(74), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("audit journal"), "{out:?}");
    assert!(out.stdout.is_empty(), "nothing done with a broken journal");
}

/// The journal's lines, parsed.
fn journal_lines(lab: &Lab) -> Vec<serde_json::Value> {
    std::fs::read_to_string(lab.path(JOURNAL))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `rempart-signer audit verify` accepts the journal with `lines` lines.
fn assert_verifies(lab: &Lab, signer: &std::path::Path, lines: usize) {
    let out =
        Command::new(signer).args(["audit", "verify"]).arg(lab.path(JOURNAL)).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!(" {lines} line(s)")), "{text}");
}
