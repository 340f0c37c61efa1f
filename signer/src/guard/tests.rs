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

fn signed(private: &PrivateKey, block_num: u32, slot: u32, d: u8) -> SignedBlock {
    let digest = Checksum256([d; 32]);
    SignedBlock { block_num, slot: BlockTimestamp(slot), digest, signature: private.sign(&digest) }
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
    let mut state = guard.load(&key).unwrap();
    let first = signed(&private, 10, 100, 1);
    assert_eq!(
        Guard::check(&state, 10, BlockTimestamp(100), &first.digest).unwrap(),
        Decision::Sign
    );
    guard.commit(&mut state, first.clone()).unwrap();

    // From disk, as after a restart.
    let state = guard.load(&key).unwrap();
    assert_eq!(
        Guard::check(&state, 10, BlockTimestamp(100), &first.digest).unwrap(),
        Decision::Replay(first.signature)
    );
    let other = Checksum256([2; 32]);
    for (block, slot) in [(10, 100), (9, 99), (11, 100), (10, 101), (5, 200)] {
        let err = Guard::check(&state, block, BlockTimestamp(slot), &other).unwrap_err();
        assert_eq!(err.reason(), "double_sign", "{block}/{slot}");
    }
    assert_eq!(Guard::check(&state, 11, BlockTimestamp(101), &other).unwrap(), Decision::Sign);
}

#[test]
fn floor_is_respected() {
    let (_d, guard, key, _) = setup();
    guard.init(&key, 50, BlockTimestamp(500)).unwrap();
    let state = guard.load(&key).unwrap();
    let d = Checksum256([1; 32]);
    assert_eq!(
        Guard::check(&state, 50, BlockTimestamp(501), &d).unwrap_err().reason(),
        "below_floor"
    );
    assert_eq!(
        Guard::check(&state, 51, BlockTimestamp(500), &d).unwrap_err().reason(),
        "below_floor"
    );
    assert_eq!(Guard::check(&state, 51, BlockTimestamp(501), &d).unwrap(), Decision::Sign);
}

#[test]
fn corrupt_state_fails_closed() {
    let (_d, guard, key, private) = setup();
    guard.init(&key, 0, BlockTimestamp(0)).unwrap();
    let mut state = guard.load(&key).unwrap();
    guard.commit(&mut state, signed(&private, 3, 3, 3)).unwrap();
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
