use super::*;

#[test]
fn loads_objects_and_refuses_the_rest() {
    let dir = std::env::temp_dir().join(format!("rempart-gw-docs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let write = |name: &str, text: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let bp = write("bp.json", br#"{"producer_account_name":"rempart"}"#);
    let docs = Documents { bp_json: Some(bp), chains_json: None };
    let loaded = Loaded::load(&docs).expect("load");
    assert_eq!(
        loaded.get("/bp.json").map(|b| b.as_ref()),
        Some(&br#"{"producer_account_name":"rempart"}"#[..])
    );
    assert!(loaded.get("/chains.json").is_none());
    assert!(loaded.get("/other").is_none());
    for (name, text) in
        [("array.json", &b"[1]"[..]), ("broken.json", b"{"), ("big.json", &[b' '; 70_000][..])]
    {
        let docs = Documents { bp_json: None, chains_json: Some(write(name, text)) };
        assert!(Loaded::load(&docs).is_err(), "{name}");
    }
    let docs = Documents { bp_json: Some(dir.join("missing.json")), chains_json: None };
    assert!(matches!(Loaded::load(&docs), Err(DocumentError::Read { .. })));
    std::fs::remove_dir_all(dir).ok();
}
