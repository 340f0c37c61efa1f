use rempart_core::key::PrivateKey;

use super::*;

fn setup() -> (tempfile::TempDir, Guard, GuardKey, PrivateKey) {
    let dir = tempfile::tempdir().unwrap();
    let guard = Guard::new(dir.path());
    let private = PrivateKey::generate(rempart_core::key::KeyType::K1);
    let key = GuardKey {
        chain_id: Checksum256([7; 32]),
        producer: Name::from_const("eosio"),
        key: private.public_key(),
    };
    (dir, guard, key, private)
}

fn intent(block_num: u32, slot: u32, d: u8) -> Intent {
    Intent {
        block_num,
        slot: BlockTimestamp(slot),
        digest: Checksum256([d; 32]),
        audit_seq: 4,
        audit_hash: "ab".repeat(32),
    }
}

/// Makes `intent` durable over `state`, as the signer does before signing it.
fn write_intent(
    guard: &Guard,
    state: &GuardState,
    outcome: Option<&Outcome>,
    intent: Intent,
) -> GuardState {
    let next = state.with_intent(outcome, intent);
    guard.write_state(&next).unwrap();
    next
}

#[test]
fn missing_state_fails_closed_and_says_what_to_do() {
    let (_d, guard, key, _) = setup();
    let err = guard.load(&key).unwrap_err();
    assert!(matches!(err, GuardError::Missing { .. }));
    assert!(err.to_string().contains("guard init"), "{err}");
}

#[test]
fn init_refuses_to_overwrite() {
    let (_d, guard, key, _) = setup();
    guard.init(&key, 0, BlockTimestamp(0)).unwrap();
    assert!(matches!(guard.init(&key, 0, BlockTimestamp(0)), Err(GuardError::AlreadyExists(_))));
}

#[test]
fn replay_double_sign_and_regression() {
    let (_d, guard, key, private) = setup();
    guard.init(&key, 0, BlockTimestamp(0)).unwrap();
    let state = guard.load(&key).unwrap();
    let first = intent(10, 100, 1);
    assert_eq!(
        Guard::check(&state, None, 10, BlockTimestamp(100), &first.digest).unwrap(),
        Decision::Sign
    );
    write_intent(&guard, &state, None, first.clone());
    let sig = private.sign(&first.digest);
    let released = Outcome::Released(sig);

    // From disk, as after a restart that found the signature in the audit log.
    let state = guard.load(&key).unwrap();
    assert_eq!(state.intent.as_ref(), Some(&first));
    assert_eq!(
        Guard::check(&state, Some(&released), 10, BlockTimestamp(100), &first.digest).unwrap(),
        Decision::Replay(sig)
    );
    let other = Checksum256([2; 32]);
    for (block, slot) in [(10, 100), (9, 99), (11, 100), (10, 101), (5, 200)] {
        for outcome in [Some(&released), None] {
            let err = Guard::check(&state, outcome, block, BlockTimestamp(slot), &other);
            assert_eq!(err.unwrap_err().reason(), "double_sign", "{block}/{slot}");
        }
    }
    assert_eq!(
        Guard::check(&state, Some(&released), 11, BlockTimestamp(101), &other).unwrap(),
        Decision::Sign
    );

    // The next intent moves the released one, with its signature, into `last`.
    let next = write_intent(&guard, &state, Some(&released), intent(11, 101, 2));
    let last = next.last.clone().unwrap();
    assert_eq!((last.block_num, last.signature), (10, Some(sig)));
    assert_eq!(guard.load(&key).unwrap(), next);
    // Block 11 never released: block 10 still replays, and 11 may be signed another way.
    let never = Outcome::NotReleased;
    assert_eq!(
        Guard::check(&next, Some(&never), 10, BlockTimestamp(100), &first.digest).unwrap(),
        Decision::Replay(sig)
    );
    assert_eq!(
        Guard::check(&next, Some(&never), 11, BlockTimestamp(102), &other).unwrap(),
        Decision::Sign
    );
    assert_eq!(
        Guard::check(&next, Some(&never), 11, BlockTimestamp(101), &Checksum256([2; 32])).unwrap(),
        Decision::SignIntent
    );
    assert_eq!(
        Guard::check(&next, Some(&never), 10, BlockTimestamp(102), &other).unwrap_err().reason(),
        "double_sign"
    );
}

#[test]
fn an_intent_of_unknown_outcome_counts_as_signed() {
    let (_d, guard, key, _) = setup();
    guard.init(&key, 0, BlockTimestamp(0)).unwrap();
    let state = guard.load(&key).unwrap();
    let state = write_intent(&guard, &state, None, intent(20, 200, 5));
    // Not even the same block again: its signature may be out there, and is not known.
    let err = Guard::check(&state, None, 20, BlockTimestamp(200), &Checksum256([5; 32]));
    let err = err.unwrap_err();
    assert_eq!(err.reason(), "guard_unconfirmed");
    assert!(err.to_string().contains("--min-block 19 --min-slot 200"), "{err}");
    // Nor any other at or below it.
    for (block, slot) in [(20, 201), (19, 199), (21, 200)] {
        let err = Guard::check(&state, None, block, BlockTimestamp(slot), &Checksum256([6; 32]));
        assert_eq!(err.unwrap_err().reason(), "double_sign", "{block}/{slot}");
    }
    // Moving on, it becomes `last` without a signature, and is still never signed over.
    let next = state.with_intent(None, intent(21, 201, 7));
    assert_eq!(next.last.as_ref().map(|l| (l.block_num, l.signature)), Some((20, None)));
    let err = Guard::check(
        &next,
        Some(&Outcome::NotReleased),
        20,
        BlockTimestamp(202),
        &Checksum256([6; 32]),
    );
    assert_eq!(err.unwrap_err().reason(), "double_sign");
}

#[test]
fn version_1_state_still_loads_and_replays() {
    let (_d, guard, key, private) = setup();
    let digest = Checksum256([3; 32]);
    let sig = private.sign(&digest);
    let v1 = GuardState {
        version: 1,
        chain_id: key.chain_id,
        producer: key.producer,
        key: key.key,
        floor_block: 0,
        floor_slot: BlockTimestamp(0),
        last: Some(SignedBlock {
            block_num: 7,
            slot: BlockTimestamp(70),
            digest,
            signature: Some(sig),
        }),
        intent: None,
    };
    let body = serde_json::to_string(&v1).unwrap();
    assert!(!body.contains("intent"), "{body}");
    let text = format!("{body}\nsha256:{}\n", hex::encode(Sha256::digest(body.as_bytes())));
    std::fs::write(guard.path(&key), text).unwrap();
    let state = guard.load(&key).unwrap();
    assert_eq!(
        Guard::check(&state, None, 7, BlockTimestamp(70), &digest).unwrap(),
        Decision::Replay(sig)
    );
    assert_eq!(
        Guard::check(&state, None, 7, BlockTimestamp(71), &Checksum256([4; 32]))
            .unwrap_err()
            .reason(),
        "double_sign"
    );
}

#[test]
fn floor_is_respected() {
    let (_d, guard, key, _) = setup();
    guard.init(&key, 50, BlockTimestamp(500)).unwrap();
    let state = guard.load(&key).unwrap();
    let d = Checksum256([1; 32]);
    assert_eq!(
        Guard::check(&state, None, 50, BlockTimestamp(501), &d).unwrap_err().reason(),
        "below_floor"
    );
    assert_eq!(
        Guard::check(&state, None, 51, BlockTimestamp(500), &d).unwrap_err().reason(),
        "below_floor"
    );
    assert_eq!(Guard::check(&state, None, 51, BlockTimestamp(501), &d).unwrap(), Decision::Sign);
}

#[test]
fn corrupt_state_fails_closed() {
    let (_d, guard, key, _) = setup();
    guard.init(&key, 0, BlockTimestamp(0)).unwrap();
    let state = guard.load(&key).unwrap();
    write_intent(&guard, &state, None, intent(3, 3, 3));
    let path = guard.path(&key);
    let text = std::fs::read_to_string(&path).unwrap();

    let flipped = text.replacen("\"block_num\":3", "\"block_num\":2", 1);
    assert_ne!(flipped, text);
    for bad in [flipped, String::new(), text[..text.len() / 2].to_string(), "x\ny\n".into()] {
        std::fs::write(&path, bad).unwrap();
        let err = guard.load(&key).unwrap_err();
        assert!(matches!(err, GuardError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("--min-block"), "{err}");
    }
}

#[test]
fn state_of_another_key_is_refused() {
    let (_d, guard, key, _) = setup();
    guard.init(&key, 0, BlockTimestamp(0)).unwrap();
    let other = GuardKey { producer: Name::from_const("alice"), ..key.clone() };
    std::fs::copy(guard.path(&key), guard.path(&other)).unwrap();
    assert!(matches!(guard.load(&other), Err(GuardError::Corrupt { .. })));
}

#[test]
fn state_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let (_d, guard, key, _) = setup();
    let path = guard.init(&key, 0, BlockTimestamp(0)).unwrap();
    assert_eq!(std::fs::metadata(path).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn a_prepared_temporary_file_is_overwritten_and_renamed_into_place() {
    use std::os::unix::fs::MetadataExt;
    let (_d, guard, key, private) = setup();
    guard.init(&key, 0, BlockTimestamp(0)).unwrap();
    let path = guard.path(&key);
    let tmp = guard.temp_path(&path);
    let mut state = guard.load(&key).unwrap();
    for block in 1..5u32 {
        let released = state.intent.as_ref().map(|i| Outcome::Released(private.sign(&i.digest)));
        state = state.with_intent(released.as_ref(), intent(block, block * 10, 1));
        guard.prepare(&key).unwrap();
        let prepared = std::fs::metadata(&tmp).unwrap();
        guard.write_state(&state).unwrap();
        let written = std::fs::metadata(&path).unwrap();
        assert_eq!(guard.load(&key).unwrap(), state, "block {block}");
        assert!(!tmp.exists(), "renamed into place");
        if block > 2 {
            // From the third intent on (a `last` and an intent) each state is as big as the
            // one before: the prepared file itself became the state.
            assert_eq!(written.len(), prepared.len(), "block {block}");
            assert_eq!(written.ino(), prepared.ino(), "block {block}");
        }
        assert_eq!(
            usize::try_from(written.len()).unwrap() % PAD,
            73,
            "a padded body, then the checksum line"
        );
    }
    // A stale temporary file of another size (a crash while preparing) is made anew.
    std::fs::write(&tmp, b"torn").unwrap();
    guard.prepare(&key).unwrap();
    assert_eq!(std::fs::metadata(&tmp).unwrap().len(), std::fs::metadata(&path).unwrap().len());
    std::fs::write(&tmp, b"torn").unwrap();
    let next = state.with_intent(None, intent(9, 90, 2));
    guard.write_state(&next).unwrap();
    assert_eq!(guard.load(&key).unwrap(), next);
}

#[test]
fn a_write_never_waits_for_a_prepare_in_progress() {
    let (_d, guard, key, _) = setup();
    guard.init(&key, 0, BlockTimestamp(0)).unwrap();
    let state = guard.load(&key).unwrap();
    guard.prepare(&key).unwrap();
    let tmp = guard.temp_path(&guard.path(&key));
    // As if `prepare` held the temporary file right now (the same thread may not lock it
    // twice, so a write that waited would hang here).
    let preparing = guard.temp.lock().unwrap();
    let next = state.with_intent(None, intent(1, 10, 1));
    guard.write_state(&next).unwrap();
    drop(preparing);
    assert_eq!(guard.load(&key).unwrap(), next);
    assert!(tmp.exists(), "the prepared file is left for the next write");
}
