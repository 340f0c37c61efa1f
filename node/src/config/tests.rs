use super::*;

#[test]
fn shipped_policy_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/node.toml");
    let c = Config::load(&path).expect("policies/node.toml must be valid");
    assert_eq!(c.producer.name, Name::from_const("eosio"));
    assert!(c.genesis.ends_with("genesis.json"));
    assert_eq!(c.limits, Limits::default());
}

#[test]
fn unknown_key_is_rejected_with_position() {
    let text = "genesis = \"g.json\"\nbogus = 1\n";
    let err = Config::parse(text, Path::new("n.toml"), Path::new(".")).expect_err("bogus key");
    let msg = err.to_string();
    assert!(msg.contains("bogus") && msg.contains("line 2"), "{msg}");
}

#[test]
fn signer_must_be_set_once() {
    let text = r#"genesis = "g.json"
[producer]
data_dir = "p"
name = "eosio"
private_listen = "127.0.0.1:9876"
[api]
data_dir = "a"
http_listen = "127.0.0.1:8888"
producer = "127.0.0.1:9876"
"#;
    let err = Config::parse(text, Path::new("n.toml"), Path::new(".")).expect_err("no signer");
    assert!(err.to_string().contains("producer.signer"), "{err}");
}
