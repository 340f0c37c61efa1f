//! The admin ceremony through real PC/SC: `rempart admin` (the real binary, feature `yubikey`)
//! drives virtual PIV cards (tests/vcard) plugged into a private pcscd. Three cards with
//! different keys enroll, two approve a rotation, and rempart-core's check accepts it at
//! threshold 2 and refuses it with one approval, with a non-admin's approval, or after a
//! tampered edit; a wrong PIN signs nothing.
#![cfg(feature = "yubikey")]

mod admin_support;

use admin_support::{Lab, PIN, reader, rempart, rempart_ok, write_secret};
use rempart_core::TimePointSec;
use rempart_core::admin::{AdminError, Proposal, verify_approvals};
use rempart_core::key::PublicKey;

const CHAIN: &str = "3b58354cd4af30f0d59f1d9754a71a4c049a425dd9dad6a8ed858ca5d9a4e0b4";

fn enroll(slot: usize) -> PublicKey {
    let out = rempart_ok(&["admin", "enroll", "--reader", &reader(slot)]);
    let key = out.trim();
    assert!(key.starts_with("PUB_R1_"), "{out}");
    key.parse().expect("a valid R1 key")
}

fn approve(lab: &Lab, file: &str, slot: usize, pin_file: &str) -> std::process::Output {
    let file = lab.path(file);
    let pin = lab.path(pin_file);
    rempart(&[
        "admin",
        "approve",
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
    write_secret(&lab.path("pin"), &format!("{PIN}\n"));
    write_secret(&lab.path("bad-pin"), "654321\n");
    std::fs::write(lab.path("open-pin"), format!("{PIN}\n")).unwrap();

    // Three admins, three cards: A and B plugged in, then C swapped in for B.
    lab.plug(0, "card-a", 1);
    lab.plug(1, "card-b", 2);
    let ka = enroll(0);
    let kb = enroll(1);
    lab.plug(1, "card-c", 3);
    let kc = enroll(1);
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
}
