//! Unit tests of admin commands and approvals, with real P-256 signatures.

use super::*;
use crate::key::PrivateKey;

const NOW: TimePointSec = TimePointSec(1_800_000_000);

fn command(action: AdminAction) -> AdminCommand {
    AdminCommand {
        signer_id: "bp1.signer".parse().unwrap(),
        chain_id: Checksum256::hash(b"chain"),
        action,
        expires: TimePointSec(NOW.0 + 3600),
        nonce: Nonce([7; 16]),
    }
}

fn rotate() -> AdminCommand {
    command(AdminAction::Rotate { producer: "producer1".parse().unwrap(), key_type: KeyType::K1 })
}

fn admins(n: usize) -> Vec<PrivateKey> {
    (0..n).map(|_| PrivateKey::generate(KeyType::R1)).collect()
}

fn approve(key: &PrivateKey, cmd: &AdminCommand) -> Approval {
    Approval { key: key.public_key(), signature: key.sign(&cmd.digest()) }
}

fn publics(keys: &[PrivateKey]) -> Vec<PublicKey> {
    keys.iter().map(PrivateKey::public_key).collect()
}

#[test]
fn every_action_round_trips_through_the_codec() {
    let key = PrivateKey::generate(KeyType::R1).public_key();
    let actions = [
        AdminAction::AddKey { producer: "a".parse().unwrap(), key_type: KeyType::R1 },
        AdminAction::Rotate { producer: "b".parse().unwrap(), key_type: KeyType::K1 },
        AdminAction::Retire { producer: "c".parse().unwrap(), key, destroy: true },
        AdminAction::Pause,
        AdminAction::Resume,
        AdminAction::ReplacePolicy { sha256: Checksum256::hash(b"policy") },
    ];
    for action in actions {
        let cmd = command(action);
        let bytes = cmd.packed();
        assert_eq!(codec::from_bytes::<AdminCommand>(&bytes).unwrap(), cmd);
    }
}

#[test]
fn packed_layout_is_fixed() {
    let cmd = command(AdminAction::Pause);
    let bytes = cmd.packed();
    // name (8) + chain id (32) + tag (1) + expires (4) + nonce (16)
    assert_eq!(bytes.len(), 61);
    assert_eq!(bytes[40], 3);
    assert_eq!(&bytes[41..45], &(NOW.0 + 3600).to_le_bytes());
    assert_eq!(&bytes[45..], &[7; 16]);
    assert_eq!(cmd.digest(), Checksum256::hash_parts(&[DIGEST_DOMAIN, &bytes]));
}

#[test]
fn unknown_action_tag_and_trailing_bytes_are_refused() {
    let mut bytes = command(AdminAction::Pause).packed();
    bytes[40] = 9;
    let err = codec::from_bytes::<AdminCommand>(&bytes).unwrap_err();
    assert!(matches!(err.root(), DecodeError::UnknownTag { what: "admin action", tag: 9, .. }));
    let mut bytes = command(AdminAction::Pause).packed();
    bytes.push(0);
    assert!(codec::from_bytes::<AdminCommand>(&bytes).is_err());
}

#[test]
fn truncated_input_never_panics() {
    let cmd = ApprovedCommand {
        command: rotate(),
        approvals: admins(2).iter().map(|k| approve(k, &rotate())).collect(),
    };
    let bytes = codec::to_bytes(&cmd);
    for n in 0..bytes.len() {
        assert!(codec::from_bytes::<ApprovedCommand>(&bytes[..n]).is_err());
    }
    assert_eq!(codec::from_bytes::<ApprovedCommand>(&bytes).unwrap(), cmd);
}

#[test]
fn two_of_three_distinct_valid_approvals_pass() {
    let keys = admins(3);
    let cmd = rotate();
    let approvals = [approve(&keys[0], &cmd), approve(&keys[2], &cmd)];
    let ok = verify_approvals(&cmd, &approvals, &publics(&keys), 2, NOW).unwrap();
    assert_eq!(ok, vec![keys[0].public_key(), keys[2].public_key()]);
}

#[test]
fn one_approval_is_below_a_threshold_of_two() {
    let keys = admins(3);
    let cmd = rotate();
    let err = verify_approvals(&cmd, &[approve(&keys[1], &cmd)], &publics(&keys), 2, NOW);
    assert_eq!(err, Err(AdminError::BelowThreshold { have: 1, need: 2 }));
    let err = verify_approvals(&cmd, &[], &publics(&keys), 1, NOW);
    assert_eq!(err, Err(AdminError::BelowThreshold { have: 0, need: 1 }));
}

#[test]
fn the_same_admin_twice_is_refused() {
    let keys = admins(3);
    let cmd = rotate();
    let a = approve(&keys[0], &cmd);
    // A second, different signature by the same key still counts once: refused.
    let b = approve(&keys[0], &cmd);
    let err = verify_approvals(&cmd, &[a, b], &publics(&keys), 2, NOW);
    assert_eq!(err, Err(AdminError::DuplicateAdmin(keys[0].public_key())));
}

#[test]
fn an_approval_by_a_non_admin_is_refused() {
    let keys = admins(3);
    let outsider = PrivateKey::generate(KeyType::R1);
    let cmd = rotate();
    let approvals = [approve(&keys[0], &cmd), approve(&outsider, &cmd)];
    let err = verify_approvals(&cmd, &approvals, &publics(&keys), 2, NOW);
    assert_eq!(err, Err(AdminError::UnknownAdmin(outsider.public_key())));
}

#[test]
fn a_tampered_command_fails_every_approval() {
    let keys = admins(2);
    let cmd = rotate();
    let approvals = [approve(&keys[0], &cmd), approve(&keys[1], &cmd)];
    let mut tampered = cmd.clone();
    tampered.action = AdminAction::Pause;
    let err = verify_approvals(&tampered, &approvals, &publics(&keys), 2, NOW);
    assert_eq!(err, Err(AdminError::BadSignature(keys[0].public_key())));
    let mut tampered = cmd;
    tampered.nonce.0[0] ^= 1;
    let err = verify_approvals(&tampered, &approvals, &publics(&keys), 2, NOW);
    assert_eq!(err, Err(AdminError::BadSignature(keys[0].public_key())));
}

#[test]
fn a_signature_under_another_key_name_is_refused() {
    let keys = admins(2);
    let cmd = rotate();
    let forged = Approval { key: keys[1].public_key(), signature: keys[0].sign(&cmd.digest()) };
    let err = verify_approvals(&cmd, &[approve(&keys[0], &cmd), forged], &publics(&keys), 2, NOW);
    assert_eq!(err, Err(AdminError::BadSignature(keys[1].public_key())));
}

#[test]
fn expiry_is_enforced_both_ways() {
    let keys = admins(1);
    let cmd = rotate();
    let approvals = [approve(&keys[0], &cmd)];
    let at_expiry = cmd.expires;
    assert!(verify_approvals(&cmd, &approvals, &publics(&keys), 1, at_expiry).is_ok());
    let after = TimePointSec(cmd.expires.0 + 1);
    assert_eq!(
        verify_approvals(&cmd, &approvals, &publics(&keys), 1, after),
        Err(AdminError::Expired { expires: cmd.expires, now: after })
    );
    let mut far = cmd.clone();
    far.expires = TimePointSec(NOW.0 + MAX_VALIDITY_SECS + 1);
    let approvals = [approve(&keys[0], &far)];
    assert!(matches!(
        verify_approvals(&far, &approvals, &publics(&keys), 1, NOW),
        Err(AdminError::ExpiryTooFar { .. })
    ));
}

#[test]
fn zero_threshold_and_too_many_approvals_are_refused() {
    let keys = admins(1);
    let cmd = rotate();
    assert_eq!(
        verify_approvals(&cmd, &[], &publics(&keys), 0, NOW),
        Err(AdminError::ZeroThreshold)
    );
    let many = vec![approve(&keys[0], &cmd); MAX_APPROVALS + 1];
    assert!(matches!(
        verify_approvals(&cmd, &many, &publics(&keys), 1, NOW),
        Err(AdminError::TooManyApprovals { .. })
    ));
}

#[test]
fn target_is_checked() {
    let cmd = rotate();
    assert!(cmd.check_target(cmd.signer_id, &cmd.chain_id).is_ok());
    let other: Name = "other".parse().unwrap();
    assert!(matches!(cmd.check_target(other, &cmd.chain_id), Err(AdminError::WrongSigner { .. })));
    assert!(matches!(
        cmd.check_target(cmd.signer_id, &Checksum256::ZERO),
        Err(AdminError::WrongChain { .. })
    ));
}

#[test]
fn proposal_file_round_trips_with_approvals() {
    let keys = admins(2);
    let mut p = Proposal::new(rotate());
    p.add_approval(approve(&keys[0], &p.command)).unwrap();
    p.add_approval(approve(&keys[1], &p.command)).unwrap();
    let text = p.to_json();
    assert!(text.contains("\"kind\": \"rotate\""), "{text}");
    assert!(text.contains("PUB_R1_"), "{text}");
    let back = Proposal::from_json(&text).unwrap();
    assert_eq!(back, p);
    let bytes = back.to_request_bytes();
    let decoded: ApprovedCommand = codec::from_bytes(&bytes).unwrap();
    assert_eq!(decoded.command, p.command);
    assert_eq!(decoded.approvals, p.approvals);
}

#[test]
fn proposal_refuses_a_duplicate_or_invalid_approval() {
    let keys = admins(2);
    let mut p = Proposal::new(rotate());
    p.add_approval(approve(&keys[0], &p.command)).unwrap();
    assert_eq!(
        p.add_approval(approve(&keys[0], &p.command)),
        Err(AdminError::DuplicateAdmin(keys[0].public_key()))
    );
    let other = command(AdminAction::Resume);
    assert_eq!(
        p.add_approval(approve(&keys[1], &other)),
        Err(AdminError::BadSignature(keys[1].public_key()))
    );
}

#[test]
fn edited_readable_fields_are_detected() {
    let p = Proposal::new(rotate());
    let text = p.to_json();
    let edited = text.replace("\"kind\": \"rotate\"", "\"kind\": \"add_key\"");
    assert_ne!(edited, text);
    assert_eq!(Proposal::from_json(&edited), Err(AdminError::Mismatch { field: "action" }));
    let edited = text.replace("producer1", "producer2");
    assert_eq!(Proposal::from_json(&edited), Err(AdminError::Mismatch { field: "action" }));
}

#[test]
fn an_edited_packed_command_invalidates_the_approvals() {
    let keys = admins(1);
    let mut p = Proposal::new(rotate());
    p.add_approval(approve(&keys[0], &p.command)).unwrap();
    // Rewrite both the packed command and the readable fields consistently: only the
    // signatures can catch it.
    let mut changed = p.clone();
    changed.command.action = AdminAction::Pause;
    let forged = changed.to_json();
    assert_eq!(Proposal::from_json(&forged), Err(AdminError::BadSignature(keys[0].public_key())));
}

#[test]
fn malformed_files_give_typed_errors() {
    assert!(matches!(Proposal::from_json("{"), Err(AdminError::Json(_))));
    let text = Proposal::new(rotate()).to_json();
    let wrong_format = text.replace(PROPOSAL_FORMAT, "other/1");
    assert!(matches!(Proposal::from_json(&wrong_format), Err(AdminError::Json(_))));
    let p = Proposal::new(rotate());
    let bad_hex = text.replace(&hex::encode(p.command.packed()), "zz");
    assert!(matches!(Proposal::from_json(&bad_hex), Err(AdminError::Json(_))));
    let short = text.replace(&hex::encode(p.command.packed()), "00");
    assert!(matches!(Proposal::from_json(&short), Err(AdminError::Decode(_))));
    let extra = text.replacen('{', "{\"surprise\": 1,", 1);
    assert!(matches!(Proposal::from_json(&extra), Err(AdminError::Json(_))));
}

#[test]
fn display_shows_what_is_approved() {
    let text = rotate().to_string();
    assert!(text.contains("rotate producer producer1's block-signing key"), "{text}");
    assert!(text.contains("bp1.signer"), "{text}");
    let cmd = command(AdminAction::Retire {
        producer: "p".parse().unwrap(),
        key: PrivateKey::generate(KeyType::K1).public_key(),
        destroy: true,
    });
    assert!(cmd.to_string().contains("DESTROY"));
}
