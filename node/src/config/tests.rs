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

/// A minimal valid file whose producer signs through `signer`.
fn minimal(signer: &str) -> String {
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
}

#[test]
fn signer_is_an_endpoint_and_relative_sockets_follow_the_file() {
    let text = minimal;
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

const PUB_A: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

fn with_wireguard(private_listen: &str, wireguard: &str) -> String {
    format!(
        r#"genesis = "g.json"
[producer]
data_dir = "p"
name = "eosio"
private_listen = "{private_listen}"
signer = "10.98.0.1:7010"
[api]
data_dir = "a"
http_listen = "127.0.0.1:8888"
producer = "10.98.0.2:9876"
{wireguard}"#
    )
}

const WG: &str = r#"[wireguard]
interface = "wgnode0"
private_key_file = "wg.key"
listen_port = 51821
address = "10.98.0.2/24"
[[wireguard.peers]]
public_key = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
address = "10.98.0.1"
endpoint = "192.0.2.1:51820"
"#;

#[test]
fn wireguard_section_is_validated_and_paths_follow_the_file() {
    let c = Config::parse(
        &with_wireguard("10.98.0.2:9876", WG),
        Path::new("n.toml"),
        Path::new("/etc/r"),
    )
    .expect("valid [wireguard]");
    let wg = c.wireguard.expect("section kept");
    assert_eq!(wg.interface, "wgnode0");
    assert_eq!(wg.private_key_file, Path::new("/etc/r/wg.key"));
    assert_eq!(wg.peers.len(), 1);
    assert_eq!(wg.peers[0].public_key.to_string(), PUB_A);
    assert_eq!(c.producer.private_listen, "10.98.0.2:9876".parse().expect("addr"));
}

#[test]
fn private_listen_must_be_the_tunnel_address_with_wireguard() {
    for (listen, why) in [
        ("0.0.0.0:9876", "wildcard"),
        ("[::]:9876", "wildcard"),
        ("10.98.0.3:9876", "not the WireGuard tunnel address"),
        ("127.0.0.1:9876", "not the WireGuard tunnel address"),
    ] {
        let err = Config::parse(&with_wireguard(listen, WG), Path::new("n.toml"), Path::new("."))
            .expect_err(listen);
        let msg = err.to_string();
        // Line 5 column 18 is where the private_listen value starts.
        assert!(msg.starts_with("n.toml:5:18: producer.private_listen"), "{listen}: {msg}");
        assert!(msg.contains(why), "{listen}: {msg}");
    }
}

#[test]
fn private_listen_must_be_loopback_without_wireguard() {
    for listen in ["0.0.0.0:9876", "10.98.0.2:9876", "[::]:9876"] {
        let err = Config::parse(&with_wireguard(listen, ""), Path::new("n.toml"), Path::new("."))
            .expect_err(listen);
        let msg = err.to_string();
        assert!(msg.contains("n.toml:5:18") && msg.contains("private_listen"), "{msg}");
    }
    Config::parse(&with_wireguard("127.0.0.1:9876", ""), Path::new("n.toml"), Path::new("."))
        .expect("loopback without a tunnel");
    Config::parse(&with_wireguard("[::1]:9876", ""), Path::new("n.toml"), Path::new("."))
        .expect("IPv6 loopback without a tunnel");
}

#[test]
fn bad_wireguard_values_are_refused_with_their_position() {
    let cases = [
        (WG.replace("wgnode0", "wg node"), "not a valid interface name", 12),
        (WG.replace("10.98.0.2/24", "10.98.0.2"), "no prefix length", 15),
        (WG.replace("address = \"10.98.0.1\"", "address = \"10.97.0.1\""), "inside the tunnel", 18),
        (WG.replace(PUB_A, "short"), "not a WireGuard key", 17),
        (WG.replace("private_key_file = \"wg.key\"", "private_key_file = \"\""), "empty", 13),
        (
            WG.split("[[wireguard.peers]]").next().expect("head").to_string(),
            "no [[wireguard.peers]]",
            11,
        ),
    ];
    for (wg, why, line) in cases {
        let err = Config::parse(
            &with_wireguard("10.98.0.2:9876", &wg),
            Path::new("n.toml"),
            Path::new("."),
        )
        .expect_err(why);
        let msg = err.to_string();
        assert!(msg.contains(why), "{why}: {msg}");
        assert!(msg.starts_with(&format!("n.toml:{line}:")), "{why}: {msg}");
    }
    let err = Config::parse(
        &with_wireguard("10.98.0.2:9876", &WG.replace("listen_port", "port")),
        Path::new("n.toml"),
        Path::new("."),
    )
    .expect_err("unknown key");
    assert!(err.to_string().contains("port"), "{err}");
}

#[test]
fn api_producer_must_be_reached_through_the_tunnel() {
    let text = with_wireguard("10.98.0.2:9876", WG);
    // The api node's own file: its producer is a peer.
    let api = text.replace("producer = \"10.98.0.2:9876\"", "producer = \"10.98.0.1:9876\"");
    Config::parse(&api, Path::new("n.toml"), Path::new(".")).expect("a peer's tunnel address");
    for outside in ["192.0.2.1:9876", "127.0.0.1:9876", "10.98.0.7:9876"] {
        let bad =
            text.replace("producer = \"10.98.0.2:9876\"", &format!("producer = \"{outside}\""));
        let err = Config::parse(&bad, Path::new("n.toml"), Path::new(".")).expect_err(outside);
        let msg = err.to_string();
        assert!(msg.starts_with("n.toml:10:12: api.producer"), "{outside}: {msg}");
        assert!(msg.contains("through the tunnel"), "{msg}");
    }
}

#[test]
fn a_tcp_signer_is_reached_through_the_tunnel_or_on_this_host() {
    let text = with_wireguard("10.98.0.2:9876", WG)
        .replace("producer = \"10.98.0.2:9876\"", "producer = \"10.98.0.1:9876\"");
    for ok in ["10.98.0.1:7010", "127.0.0.1:7010", "unix:s.sock"] {
        let t = text.replace("signer = \"10.98.0.1:7010\"", &format!("signer = \"{ok}\""));
        Config::parse(&t, Path::new("n.toml"), Path::new(".")).expect(ok);
    }
    let t = text.replace("signer = \"10.98.0.1:7010\"", "signer = \"192.0.2.9:7010\"");
    let err = Config::parse(&t, Path::new("n.toml"), Path::new(".")).expect_err("outside");
    let msg = err.to_string();
    assert!(msg.contains("producer.signer") && msg.contains("peer's tunnel address"), "{msg}");
}

#[test]
fn standby_signers_are_endpoints_listed_once_and_reached_through_the_tunnel() {
    let standby = |list: &str| {
        minimal("unix:s.sock").replace(
            "signer = \"unix:s.sock\"",
            &format!("signer = \"unix:s.sock\"\nstandby_signers = [{list}]"),
        )
    };
    let parse = |t: &str| Config::parse(t, Path::new("n.toml"), Path::new("/etc/r"));
    let c = parse(&standby("\"unix:b.sock\", \"10.8.0.2:7010\"")).expect("two standbys");
    assert_eq!(c.producer.standby_signers, ["unix:/etc/r/b.sock", "10.8.0.2:7010"]);
    assert!(parse(&minimal("unix:s.sock")).expect("none").producer.standby_signers.is_empty());
    for (list, why) in [
        ("\"unix:s.sock\"", "listed twice"),
        ("\"10.8.0.2:7010\", \"10.8.0.2:7010\"", "listed twice"),
        ("\"signer.example\"", "neither"),
        ("\"unix:1\", \"unix:2\", \"unix:3\", \"unix:4\", \"unix:5\"", "at most 4"),
    ] {
        let msg = parse(&standby(list)).expect_err(list).to_string();
        assert!(msg.contains("producer.standby_signers") && msg.contains(why), "{list}: {msg}");
    }
    let wg = with_wireguard("10.98.0.2:9876", WG)
        .replace("producer = \"10.98.0.2:9876\"", "producer = \"10.98.0.1:9876\"");
    let outside = wg.replace(
        "signer = \"10.98.0.1:7010\"",
        "signer = \"10.98.0.1:7010\"\nstandby_signers = [\"192.0.2.9:7010\"]",
    );
    let msg = parse(&outside).expect_err("outside the tunnel").to_string();
    assert!(msg.contains("producer.standby_signers") && msg.contains("tunnel"), "{msg}");
}

/// A minimal valid file with these `[limits]` lines.
fn with_limits(limits: &str) -> String {
    format!("{}[limits]\n{limits}\n", minimal("unix:s.sock"))
}

#[test]
fn code_and_abi_limits_sit_below_the_transaction_limit() {
    let parse =
        |limits: &str| Config::parse(&with_limits(limits), Path::new("n.toml"), Path::new("."));
    let c = parse("max_transaction_bytes = 1000\nmax_code_bytes = 999\nmax_abi_bytes = 10")
        .expect("below");
    assert_eq!((c.limits.max_code_bytes, c.limits.max_abi_bytes), (999, 10));
    for (field, other) in [("max_code_bytes", "max_abi_bytes"), ("max_abi_bytes", "max_code_bytes")]
    {
        let err = parse(&format!("max_transaction_bytes = 1000\n{other} = 10\n{field} = 1000"))
            .expect_err("at the transaction limit");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("limits.{field}: must be below limits.max_transaction_bytes")),
            "{msg}"
        );
    }
}

#[test]
fn transaction_cpu_budget_is_read_and_bounded() {
    let parse =
        |limits: &str| Config::parse(&with_limits(limits), Path::new("n.toml"), Path::new("."));
    let c = parse("max_transaction_fuel = 1234").expect("a small budget");
    assert_eq!(c.limits.max_transaction_fuel, 1234);
    assert_eq!(c.limits.max_code_bytes, Limits::default().max_code_bytes, "others keep defaults");
    let c = parse("").expect("absent: the default");
    assert_eq!(c.limits.max_transaction_fuel, crate::vm::VmConfig::default().max_transaction_fuel);
    let err = parse("max_transaction_fuel = 0").expect_err("zero");
    assert!(err.to_string().contains("limits.max_transaction_fuel: must be greater"), "{err}");
    let err = parse("max_transaction_fuel = 500000001").expect_err("too big");
    assert!(err.to_string().contains("at most 500000000"), "{err}");
    let err = parse("max_transaction_fuel = -1").expect_err("negative");
    assert!(err.to_string().contains("max_transaction_fuel"), "{err}");
    let err = parse("max_transaction_cpu = 5").expect_err("misspelt");
    assert!(err.to_string().contains("max_transaction_cpu"), "{err}");
}

#[test]
fn production_policies_carry_the_transaction_cpu_budget() {
    for file in ["node-api.toml", "node-producer.toml", "../node.toml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/production").join(file);
        let text = std::fs::read_to_string(&path).expect("policy file");
        assert!(text.contains("\nmax_transaction_fuel = 50000000\n"), "{}", path.display());
    }
}

#[test]
fn api_private_listen_is_optional_and_bound_like_the_producers() {
    let text = with_wireguard("10.98.0.2:9876", WG)
        .replace("producer = \"10.98.0.2:9876\"", "producer = \"10.98.0.1:9876\"");
    let c = Config::parse(&text, Path::new("n.toml"), Path::new(".")).expect("no listener");
    assert_eq!(c.api.private_listen, None);
    let with = |listen: &str, text: &str| {
        text.replace("[wireguard]", &format!("private_listen = \"{listen}\"\n[wireguard]"))
    };
    let c = Config::parse(&with("10.98.0.2:9877", &text), Path::new("n.toml"), Path::new("."))
        .expect("the tunnel address");
    assert_eq!(c.api.private_listen, Some("10.98.0.2:9877".parse().expect("addr")));
    for (listen, why) in [
        ("0.0.0.0:9877", "wildcard"),
        ("127.0.0.1:9877", "not the WireGuard tunnel address"),
        ("10.98.0.1:9877", "not the WireGuard tunnel address"),
    ] {
        let err = Config::parse(&with(listen, &text), Path::new("n.toml"), Path::new("."))
            .expect_err(listen);
        let msg = err.to_string();
        // Line 11 column 18 is where the api's private_listen value starts.
        assert!(msg.starts_with("n.toml:11:18: api.private_listen"), "{listen}: {msg}");
        assert!(msg.contains(why), "{listen}: {msg}");
    }
    // Without [wireguard]: loopback only, as for the producer.
    let plain = with_wireguard("127.0.0.1:9876", "");
    let add = |listen: &str| format!("{plain}private_listen = \"{listen}\"\n");
    let c = Config::parse(&add("127.0.0.1:9877"), Path::new("n.toml"), Path::new("."))
        .expect("loopback without a tunnel");
    assert_eq!(c.api.private_listen, Some("127.0.0.1:9877".parse().expect("addr")));
    let err = Config::parse(&add("10.98.0.2:9877"), Path::new("n.toml"), Path::new("."))
        .expect_err("not loopback");
    assert!(err.to_string().contains("api.private_listen"), "{err}");
}
