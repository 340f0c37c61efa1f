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

#[test]
fn signer_is_an_endpoint_and_relative_sockets_follow_the_file() {
    let text = |signer: &str| {
        format!(
            r#"genesis = "g.json"
[producer]
data_dir = "p"
name = "eosio"
private_listen = "127.0.0.1:9876"
signer = "{signer}"
[api]
data_dir = "a"
http_listen = "127.0.0.1:8888"
producer = "127.0.0.1:9876"
"#
        )
    };
    let c = Config::parse(&text("unix:s.sock"), Path::new("n.toml"), Path::new("/etc/r"))
        .expect("unix socket");
    assert_eq!(c.producer.signer, "unix:/etc/r/s.sock");
    let c =
        Config::parse(&text("10.8.0.1:7010"), Path::new("n.toml"), Path::new(".")).expect("tcp");
    assert_eq!(c.producer.signer, "10.8.0.1:7010");
    let err = Config::parse(&text("signer.example"), Path::new("n.toml"), Path::new("."))
        .expect_err("neither");
    assert!(err.to_string().contains("producer.signer"), "{err}");
}

#[test]
fn a_dev_signing_key_in_the_node_is_no_longer_accepted() {
    let text = r#"genesis = "g.json"
[producer]
data_dir = "p"
name = "eosio"
private_listen = "127.0.0.1:9876"
dangerous_dev_signing_key = "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3"
[api]
data_dir = "a"
http_listen = "127.0.0.1:8888"
producer = "127.0.0.1:9876"
"#;
    let err = Config::parse(text, Path::new("n.toml"), Path::new(".")).expect_err("removed key");
    assert!(err.to_string().contains("dangerous_dev_signing_key"), "{err}");
}
