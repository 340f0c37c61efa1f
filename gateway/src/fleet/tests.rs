use super::*;

#[test]
fn keys_name_the_prefix_class_table_and_client() {
    assert_eq!(
        key_name("rempart:", "read", false, &ClientKey::V4(0x7f00_0001)),
        "rempart:read:c:4:7f000001"
    );
    assert_eq!(
        key_name("p:", "push", true, &ClientKey::V6(0x2001_0db8_0000_0001)),
        "p:push:t:6:20010db800000001"
    );
}

#[test]
fn a_password_file_others_can_read_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("redis.pass");
    std::fs::write(&path, "s3cret\nignored\n").expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = read_password(&path).expect_err("mode 644 refused").to_string();
    assert!(err.contains("mode 644") && err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert_eq!(read_password(&path).expect("mode 600 read"), "s3cret");
    std::fs::write(&path, "\n").expect("write");
    let err = read_password(&path).expect_err("empty refused").to_string();
    assert!(err.contains("first line is empty"), "{err}");
}

#[test]
fn new_bans_are_noted_only_while_limits_are_shared_and_up_to_a_bound() {
    let bans = NewBans::new(false);
    bans.push(ClientKey::V4(1), Duration::from_secs(1));
    assert!(bans.take().is_empty(), "not shared: nothing noted");
    bans.enable(true);
    for i in 0..(MAX_NEW_BANS as u32 + 5) {
        bans.push(ClientKey::V4(i), Duration::from_secs(1));
    }
    let taken = bans.take();
    assert_eq!(taken.len(), MAX_NEW_BANS);
    assert_eq!(taken[0], (ClientKey::V4(0), Duration::from_secs(1)));
    assert!(bans.take().is_empty(), "taken once");
    bans.push(ClientKey::V4(1), Duration::from_secs(1));
    bans.enable(false);
    assert!(bans.take().is_empty(), "turning sharing off forgets what waits");
}

#[test]
fn ban_keys_are_per_client_not_per_class() {
    assert_eq!(ban_key_name("r:", &ClientKey::V4(0x7f00_0001)), "r:ban:4:7f000001");
    assert_eq!(ban_key_name("r:", &ClientKey::V6(1)), "r:ban:6:0000000000000001");
}
