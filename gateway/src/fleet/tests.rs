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
