use super::*;

const GOOD: &str = r#"
[chain]
id = "3b58354cd4af30f0d59f1d9754a71a4c049a425dd9dad6a8ed858ca5d9a4e0b4"
max_clock_skew_ms = 1000

[[producers]]
account = "eosio"
key = "PUB_K1_6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5BoDq63"

[backend]
kind = "pkcs11"

[backend.pkcs11]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "rempart"
pin_env = "PIN"
keys = [{ label = "k1" }, { id = "0a0b" }]

[listen]
unix_socket = "/run/s.sock"
allowed_uids = [1000]
tcp = "10.98.0.1:7010"
tcp_allowed_peers = ["10.98.0.2"]

[state]
dir = "/var/lib/signer"
audit_log = "/var/lib/signer/audit.jsonl"

[wireguard]
interface = "wg-signer"
private_key_file = "/etc/rempart/wg.key"
listen_port = 51820
address = "10.98.0.1/24"

[[wireguard.peers]]
public_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
address = "10.98.0.2"
"#;

fn parse(text: &str) -> Result<Policy, PolicyError> {
    Policy::from_toml(Path::new("/etc/rempart/signer.toml"), text)
}

fn invalid_at(text: &str) -> (usize, usize, String) {
    match parse(text) {
        Err(PolicyError::Invalid { line, column, message, .. })
        | Err(PolicyError::Parse { line, column, message, .. }) => (line, column, message),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn good_policy_parses_with_defaults() {
    let p = parse(GOOD).unwrap();
    assert_eq!(p.producers.len(), 1);
    assert_eq!(p.producers[0].account.to_string(), "eosio");
    assert!(!p.dangerous_dev_chain);
    assert_eq!(p.max_clock_skew, Duration::from_millis(1000));
    assert_eq!(p.limits.max_connections, 16);
    assert_eq!(p.audit_segment_bytes, 64 << 20);
    let BackendConfig::Pkcs11(c) = &p.backend else { panic!("pkcs11 expected") };
    assert_eq!(c.pin, PinSource::Env("PIN".into()));
    assert_eq!(c.keys, vec![KeySelector::Label("k1".into()), KeySelector::Id(vec![10, 11])]);
    assert_eq!(p.listen.tcp.unwrap().to_string(), "10.98.0.1:7010");
    assert!(p.key_for(Name::from_const("eosio")).is_some());
    assert!(p.key_for(Name::from_const("alice")).is_none());
}

#[test]
fn shipped_default_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/signer.toml");
    let p = Policy::load(&path).unwrap();
    assert!(p.dangerous_dev_chain);
    assert!(matches!(p.backend, BackendConfig::Soft(_)));
    assert!(p.state_dir.is_absolute() && p.state_dir.ends_with("var/signer"));
}

#[test]
fn unknown_key_is_reported_with_line_and_column() {
    let text = GOOD.replace("max_clock_skew_ms = 1000", "max_clock_skew_ms = 1000\nsurprise = 1");
    let (line, column, message) = invalid_at(&text);
    assert_eq!((line, column), (5, 1), "{message}");
    assert!(message.contains("surprise"), "{message}");
}

#[test]
fn wildcard_tcp_is_refused_at_its_position() {
    let text = GOOD.replace("10.98.0.1:7010", "0.0.0.0:7010");
    let (line, column, message) = invalid_at(&text);
    assert_eq!((line, column), (22, 7));
    assert!(message.contains("wildcard"), "{message}");
    let text = GOOD.replace("\"10.98.0.1:7010\"", "\"[::]:7010\"");
    assert!(invalid_at(&text).2.contains("wildcard"));
}

#[test]
fn soft_backend_needs_dangerous_dev_chain() {
    let text =
        GOOD.replace("kind = \"pkcs11\"", "kind = \"soft\"\n[backend.soft]\nkey_files = [\"/k\"]");
    let (_, _, message) = invalid_at(&text);
    assert!(message.contains("dangerous_dev_chain"), "{message}");
    let text = text.replace("[chain]", "[chain]\ndangerous_dev_chain = true");
    assert!(matches!(parse(&text).unwrap().backend, BackendConfig::Soft(_)));
}

#[test]
fn bad_values_are_refused() {
    for (from, to, needle) in [
        ("max_clock_skew_ms = 1000", "max_clock_skew_ms = 0", "max_clock_skew_ms"),
        ("3b58354c", "zz58354c", "hex"),
        ("account = \"eosio\"", "account = \"EOSIO\"", "EOSIO"),
        ("PUB_K1_6MRy", "PUB_K1_7MRy", "producer key"),
        ("pin_env = \"PIN\"", "", "pin_file or pin_env"),
        ("pin_env = \"PIN\"", "pin_env = \"PIN\"\npin_file = \"/p\"", "not both"),
        ("allowed_uids = [1000]", "", "allowed_uids"),
        (
            "tcp_allowed_peers = [\"10.98.0.2\"]",
            "tcp_allowed_peers = [\"10.98.0.3\"]",
            "tcp_allowed_peers",
        ),
        ("keys = [{ label = \"k1\" }, { id = \"0a0b\" }]", "keys = []", "keys is empty"),
        ("{ id = \"0a0b\" }", "{ id = \"zz\" }", "not hex"),
        ("kind = \"pkcs11\"", "kind = \"tpm\"", "unknown backend"),
        ("audit.jsonl\"", "audit.jsonl\"\naudit_segment_mib = 0", "audit_segment_mib"),
    ] {
        assert!(GOOD.contains(from), "{from}");
        let (_, _, message) = invalid_at(&GOOD.replace(from, to));
        assert!(message.contains(needle), "{from} -> {to}: {message}");
    }
}

#[test]
fn duplicate_producer_is_refused() {
    let text = GOOD.replace(
        "[backend]",
        "[[producers]]\naccount = \"eosio\"\nkey = \"PUB_K1_6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5BoDq63\"\n[backend]",
    );
    assert!(invalid_at(&text).2.contains("twice"));
}

#[test]
fn relative_paths_resolve_against_the_policy_directory() {
    let text = GOOD.replace("\"/var/lib/signer\"", "\"../var/signer\"");
    let p = parse(&text).unwrap();
    assert_eq!(p.state_dir, PathBuf::from("/etc/var/signer"));
}

#[test]
fn line_column_counts_characters() {
    assert_eq!(line_column("ab\ncé\nx", 0), (1, 1));
    assert_eq!(line_column("ab\ncé\nx", 3), (2, 1));
    assert_eq!(line_column("ab\ncé\nx", 7), (3, 1));
    assert_eq!(line_column("ab", 99), (1, 3));
}
