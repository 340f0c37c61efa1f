use super::*;

#[test]
fn ec_point_forms() {
    let mut der = vec![0x04, 0x41, 0x04];
    der.extend([1u8; 64]);
    assert_eq!(ec_point_bytes(&der).unwrap().len(), 65);
    assert_eq!(ec_point_bytes(&der[2..]).unwrap().len(), 65);
    assert!(ec_point_bytes(&der[..10]).is_none());
    assert!(ec_point_bytes(&[]).is_none());
}

#[test]
fn curves() {
    assert_eq!(curve_of(&hex::decode("06052b8104000a").unwrap()), Some(KeyType::K1));
    assert_eq!(curve_of(EC_PARAMS_R1), Some(KeyType::R1));
    assert_eq!(curve_of(&[0x06, 0x03, 1, 2, 3]), None);
}

#[test]
fn pin_file_must_be_private_and_is_never_echoed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pin");
    std::fs::write(&path, "s3cr3t-pin\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = read_pin(&PinSource::File(path.clone())).unwrap_err();
    assert!(err.to_string().contains("chmod 600"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(read_pin(&PinSource::File(path)).unwrap().as_str(), "s3cr3t-pin");
    let err = read_pin(&PinSource::Env("REMPART_TEST_SURELY_UNSET_VARIABLE".into())).unwrap_err();
    assert!(err.to_string().contains("REMPART_TEST_SURELY_UNSET_VARIABLE"));
}

#[test]
fn missing_module_is_a_clear_error() {
    let config = Pkcs11Config {
        module: "/nonexistent/libnothing.so".into(),
        token_label: "t".into(),
        pin: PinSource::Env("PATH".into()),
        keys: vec![KeySelector::Label("k".into())],
    };
    let err = Pkcs11Backend::open(&config).err().unwrap();
    assert!(matches!(err, KeyringError::Module { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/libnothing.so"));
}
