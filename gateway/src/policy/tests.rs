use super::*;

const SHIPPED: &str = include_str!("../../../policies/gateway.toml");

fn parse(text: &str) -> Result<Policy, PolicyError> {
    Policy::parse(text, Path::new("/etc/rempart/gateway.toml"))
}

fn invalid_at(text: &str) -> (usize, usize, String) {
    match parse(text) {
        Err(PolicyError::Invalid { line, column, message, .. })
        | Err(PolicyError::Syntax { line, column, message, .. }) => (line, column, message),
        other => panic!("expected a positioned error, got {other:?}"),
    }
}

/// Line (1-based) of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).expect("needle") + 1
}

#[test]
fn shipped_policy_is_valid() {
    let p = parse(SHIPPED).expect("the shipped policy must validate");
    assert_eq!(p.listeners().tls.port(), 8443);
    assert!(p.listeners().redirect.is_some());
    assert!(is_private(p.listeners().admin.ip()));
    assert_eq!(p.pools()[0].balancing, Balancing::LeastConnections);
    assert_eq!(p.limits().client_prefix_v6, 64);
    assert_eq!(p.tls().certificates[0].cert, Path::new("/etc/rempart/../certs/server.pem"));
    let r = p.route("/v1/chain/get_info").expect("get_info allowed");
    assert!(r.retry);
    assert_eq!(p.classes()[r.class].name, "read");
    assert!(!p.route("/v1/chain/push_transaction").expect("push").retry);
    assert!(p.route("/v1/producer/pause").is_none());
    assert!(p.route("/v1/chain/get_info/x").is_none());
}

#[test]
fn unknown_key_is_rejected_with_its_position() {
    let text = SHIPPED.replace("max_lag_blocks = 10", "max_lag_blocks = 10\nmax_lag_blokcs = 3");
    let (line, column, message) = invalid_at(&text);
    assert_eq!(line, line_of(&text, "max_lag_blokcs"));
    assert_eq!(column, 1);
    assert!(message.contains("max_lag_blokcs"), "{message}");
}

#[test]
fn syntax_error_has_line_and_column() {
    let text = SHIPPED.replace("per_client = 64", "per_client = = 64");
    let (line, column, _) = invalid_at(&text);
    assert_eq!(line, line_of(&text, "per_client = = 64"));
    assert!(column > 1);
}

#[test]
fn wrong_type_has_position() {
    let text = SHIPPED.replace("per_client = 64", "per_client = \"many\"");
    let (line, column, _) = invalid_at(&text);
    assert_eq!(line, line_of(&text, "per_client = \"many\""));
    assert_eq!(column, 14);
}

#[test]
fn forbidden_routes_are_refused() {
    for path in [
        "/v1/producer/pause",
        "/v1/net/connect",
        "/v1/db_size/get",
        "/v1/producer/*",
        "/v1/*",
        "/*",
        "/v1/PRODUCER/pause",
        "/v1/test_control/kill_node_on_producer",
        "/v1/wallet/unlock",
        "/v1/keosd/stop",
        "/v1/txn_test_gen/start_generation",
    ] {
        let text =
            SHIPPED.replacen("path = \"/v1/chain/get_info\"", &format!("path = \"{path}\""), 1);
        let (line, column, message) = invalid_at(&text);
        assert_eq!(line, line_of(&text, &format!("path = \"{path}\"")), "{path}");
        assert_eq!(column, 8, "{path}");
        assert!(message.contains("never be public"), "{path}: {message}");
    }
}

#[test]
fn allowed_prefix_routes_match_longest() {
    let text =
        SHIPPED.replacen("path = \"/v1/history/get_actions\"", "path = \"/v1/history/*\"", 1);
    let p = parse(&text).expect("valid");
    assert!(p.route("/v1/history/get_actions").is_some());
    assert!(p.route("/v1/history/get_transaction").is_some());
    assert!(p.route("/v1/historyx").is_none());
}

#[test]
fn non_canonical_route_is_refused() {
    for path in
        ["v1/chain/get_info", "/v1/chain/../net/x", "/v1//chain", "/v1/chain/get%20x", "/v1/ch*ain"]
    {
        let text =
            SHIPPED.replacen("path = \"/v1/chain/get_info\"", &format!("path = \"{path}\""), 1);
        assert!(parse(&text).is_err(), "{path} accepted");
    }
}

#[test]
fn public_admin_listener_is_refused() {
    for addr in ["0.0.0.0:9100", "8.8.8.8:9100", "[::]:9100", "[2001:db8::1]:9100"] {
        let text = SHIPPED.replace("admin = \"127.0.0.1:9100\"", &format!("admin = \"{addr}\""));
        let (line, column, message) = invalid_at(&text);
        assert_eq!(line, line_of(&text, "admin = "), "{addr}");
        assert_eq!(column, 9);
        assert!(message.contains("loopback or private"), "{message}");
    }
    for addr in ["10.1.2.3:9100", "192.168.1.1:9100", "[::1]:9100", "[fd00::1]:9100"] {
        let text = SHIPPED.replace("admin = \"127.0.0.1:9100\"", &format!("admin = \"{addr}\""));
        assert!(parse(&text).is_ok(), "{addr}");
    }
}

#[test]
fn undefined_references_are_refused() {
    let text = SHIPPED.replacen("class = \"read\"", "class = \"reed\"", 1);
    let (_, _, message) = invalid_at(&text);
    assert!(message.contains("reed"), "{message}");
    let text = SHIPPED.replacen("pool = \"api\"", "pool = \"apu\"", 1);
    let (_, _, message) = invalid_at(&text);
    assert!(message.contains("apu"), "{message}");
}

#[test]
fn bad_values_are_refused() {
    for (from, to) in [
        ("client_prefix_v4 = 32", "client_prefix_v4 = 33"),
        ("client_prefix_v6 = 64", "client_prefix_v6 = 65"),
        ("per_second = 50", "per_second = 0"),
        ("header_read_timeout_ms = 5000", "header_read_timeout_ms = 0"),
        ("idle_timeout_ms = 60000", "idle_timeout_ms = 1000"),
        ("max_attempts = 2", "max_attempts = 0"),
        ("nodes = [\"127.0.0.1:8888\"]", "nodes = []"),
        ("nodes = [\"127.0.0.1:8888\"]", "nodes = [\"localhost:8888\"]"),
        ("balancing = \"least_connections\"", "balancing = \"random\""),
        ("server_names = [\"localhost\", \"127.0.0.1\"]", "server_names = [\"bad name\"]"),
        ("total = 20000", "total = 1"),
        ("send_timeout_ms = 30000", "send_timeout_ms = 0"),
        ("max_in_flight_per_node = 1000", "max_in_flight_per_node = 0"),
        ("queue_timeout_ms = 1000", "queue_timeout_ms = 0"),
        ("send_wait_bytes_per_client = 4194304", "send_wait_bytes_per_client = 1000"),
        ("send_wait_bytes_total = 268435456", "send_wait_bytes_total = 4194303"),
    ] {
        let text = SHIPPED.replacen(from, to, 1);
        assert_ne!(text, SHIPPED, "{from} not found");
        let (line, _, message) = invalid_at(&text);
        let needle = to.split(" =").next().expect("key");
        assert_eq!(line, line_of(&text, to), "{to}: {message} (key {needle})");
    }
}

#[test]
fn duplicate_route_is_refused() {
    let text = format!("{SHIPPED}\n[[routes]]\npath = \"/v1/chain/get_info\"\nclass = \"read\"\n");
    let (line, _, message) = invalid_at(&text);
    assert_eq!(line, text.lines().count() - 1);
    assert!(message.contains("twice"), "{message}");
}

#[test]
fn line_col_counts_characters() {
    assert_eq!(line_col("ab\ncé\nx", 0), (1, 1));
    assert_eq!(line_col("ab\ncé\nx", 3), (2, 1));
    assert_eq!(line_col("ab\ncé\nx", 7), (3, 1));
    assert_eq!(line_col("ab\ncé\nx", 4), (2, 2));
}

#[test]
fn canonical_paths() {
    assert!(is_canonical_path("/v1/chain/get_info"));
    assert!(is_canonical_path("/"));
    assert!(is_canonical_path("/v1/chain/"));
    assert!(!is_canonical_path("/v1/./chain"));
    assert!(!is_canonical_path("/v1/../chain"));
    assert!(!is_canonical_path("/v1//chain"));
    assert!(!is_canonical_path("/v1/chain%2fx"));
    assert!(!is_canonical_path("/v1/chain;x"));
    assert!(!is_canonical_path("v1"));
}

#[test]
fn cidrs_parse_and_match() {
    let c: Cidr = "10.0.0.0/8".parse().expect("v4");
    assert!(c.contains("10.1.2.3".parse().expect("ip")));
    assert!(c.contains("::ffff:10.1.2.3".parse().expect("ip")));
    assert!(!c.contains("11.0.0.1".parse().expect("ip")));
    let one: Cidr = "192.0.2.7".parse().expect("host");
    assert!(one.contains("192.0.2.7".parse().expect("ip")));
    assert!(!one.contains("192.0.2.8".parse().expect("ip")));
    let v6: Cidr = "2001:db8::/32".parse().expect("v6");
    assert!(v6.contains("2001:db8:1::1".parse().expect("ip")));
    assert!(!v6.contains("2001:db9::1".parse().expect("ip")));
    let all: Cidr = "0.0.0.0/0".parse().expect("all v4");
    assert!(all.contains("8.8.8.8".parse().expect("ip")));
    assert!(!all.contains("2001:db8::1".parse().expect("ip")));
    for bad in ["10.0.0.1/8", "10.0.0.0/33", "2001:db8::/129", "nope", "10.0.0.0/x"] {
        assert!(bad.parse::<Cidr>().is_err(), "{bad}");
    }
}

#[test]
fn access_lists_are_validated_with_positions() {
    let text = SHIPPED.replace("deny = []", "deny = [\"10.0.0.1/8\"]");
    let (line, column, message) = invalid_at(&text);
    assert_eq!((line, column), (line_of(&text, "deny = [\"10.0.0.1/8\"]"), 9));
    assert!(message.contains("host bits"), "{message}");
    let text = SHIPPED
        .replace("deny = []", "deny = [\"203.0.113.0/24\"]")
        .replace("allow = []", "allow = [\"203.0.0.0/16\", \"2001:db8::/32\"]");
    let p = parse(&text).expect("valid");
    let a = p.access();
    assert!(a.refuses("203.0.113.9".parse().expect("ip")));
    assert!(!a.refuses("203.0.1.9".parse().expect("ip")));
    assert!(a.refuses("198.51.100.1".parse().expect("ip")));
    assert!(!a.refuses("2001:db8::5".parse().expect("ip")));
}

#[test]
fn the_filter_section_is_validated_with_positions() {
    let p = parse(SHIPPED).expect("shipped");
    assert_eq!(p.filter().over_limit, crate::filter::OverLimit::Clamp);
    assert!(p.filter().blocked.is_empty());
    let text = SHIPPED.replace("blocked = []", "blocked = [\"eosio::setcode\", \"evil\"]");
    let p = parse(&text).expect("valid blocklist");
    assert_eq!(p.filter().blocked.len(), 2);
    assert_eq!(p.filter().blocked[0].to_string(), "eosio::setcode");
    let cases = [
        ("blocked = []", "blocked = [\"eosio\", \"Bad::x\"]", "Bad::x", "eosio.token::transfer"),
        ("blocked = []", "blocked = [\"a\", \"a\"]", "listed twice", ""),
        ("allowed = []", "allowed = [\"eosio::\"]", "empty name", ""),
        ("max_actions = 32", "max_actions = 0", "at least 1", ""),
        ("max_signatures = 8", "max_signatures = 0", "at least 1", ""),
        ("max_query_limit = 1000", "max_query_limit = 0", "at least 1", ""),
        ("max_expiration_ahead_s = 3600", "max_expiration_ahead_s = 0", "between 1", ""),
        ("max_transaction_bytes = 262144", "max_transaction_bytes = 9999999", "1048576", ""),
        ("over_limit = \"clamp\"", "over_limit = \"drop\"", "clamp", ""),
    ];
    for (from, to, says, also) in cases {
        let text = SHIPPED.replace(from, to);
        let (line, column, message) = invalid_at(&text);
        assert_eq!(line, line_of(&text, to), "{to}: {message}");
        assert!(column > 1, "{to}");
        assert!(message.contains(says) && message.contains(also), "{to}: {message}");
    }
    let text = SHIPPED
        .replace("blocked = []", "blocked = [\"eosio\"]")
        .replace("allowed = []", "allowed = [\"eosio\"]");
    let (line, _, message) = invalid_at(&text);
    assert_eq!(line, line_of(&text, "allowed = [\"eosio\"]"));
    assert!(message.contains("both blocked and allowed"), "{message}");
    let text = SHIPPED.replace("over_limit = \"clamp\"\n", "");
    let (_, _, message) = invalid_at(&text);
    assert!(message.contains("over_limit"), "a missing key is named: {message}");
}

/// A second certificate, from ACME.
const ACME_ENTRY: &str = "\n[[tls.certificates]]\nserver_names = [\"api.example.com\"]\n\
cert = \"tls/api.pem\"\nkey = \"tls/api.key\"\n[tls.certificates.acme]\n\
directory = \"https://acme-v02.api.letsencrypt.org/directory\"\n\
contact = [\"mailto:ops@example.com\"]\naccount = \"tls/acme-account.json\"\n\
renew_days_before = 30\n";

/// The shipped policy with [`ACME_ENTRY`], `edit` made in the entry if it is there, else in
/// the rest (the shipped file's comments show the same keys).
fn with_acme(edit: (&str, &str)) -> String {
    let (entry, rest) = if ACME_ENTRY.contains(edit.0) {
        (ACME_ENTRY.replacen(edit.0, edit.1, 1), SHIPPED.to_owned())
    } else {
        let rest = SHIPPED.replacen(edit.0, edit.1, 1);
        assert_ne!(rest, SHIPPED, "{} not found", edit.0);
        (ACME_ENTRY.to_owned(), rest)
    };
    rest.replacen("\n[[pools]]", &format!("{entry}\n[[pools]]"), 1)
}

#[test]
fn an_acme_certificate_is_read_and_checked() {
    let p = parse(&with_acme(("", ""))).expect("valid");
    let c = &p.tls().certificates[1];
    let acme = c.acme.as_ref().expect("acme");
    assert_eq!(acme.account, Path::new("/etc/rempart/tls/acme-account.json"));
    assert_eq!(acme.renew_before, Duration::from_secs(30 * 86_400));
    assert_eq!(acme.contact, ["mailto:ops@example.com"]);
    assert!(p.tls().certificates[0].acme.is_none());

    for (edit, why) in [
        (("directory = \"https://", "directory = \"http://"), "https://"),
        (("server_names = [\"api.example.com\"]", "server_names = [\"*.example.com\"]"), "HTTP-01"),
        (("contact = [\"mailto:ops@example.com\"]", "contact = [\"ops@example.com\"]"), "mailto:"),
        (("renew_days_before = 30", "renew_days_before = 0"), "between 1 and 60"),
        (("renew_days_before = 30", "renew_days_before = 61"), "between 1 and 60"),
        (("redirect = \"127.0.0.1:8080\"", "# no redirect"), "listeners.redirect"),
        (("renew_days_before = 30", "renew_days_before = 30\nstaging = true"), "staging"),
    ] {
        let (line, _, message) = invalid_at(&with_acme(edit));
        assert!(message.contains(why), "{edit:?}: {message}");
        assert!(line > 1, "{edit:?}: positioned");
    }
}

const SHARED: &str = "[limits.shared]\nredis = \"10.98.0.10:6379\"\nusername = \"gw\"\n\
    password_file = \"redis.pass\"\nkey_prefix = \"rempart:\"\nsync_interval_ms = 100\n\
    timeout_ms = 250\n";

fn with_shared(shared: &str) -> String {
    SHIPPED.replace("global_burst = 5000\n", &format!("global_burst = 5000\n{shared}"))
}

#[test]
fn shared_limits_are_read() {
    let p = parse(&with_shared(SHARED)).expect("valid");
    let s = p.limits().shared.as_ref().expect("shared");
    assert_eq!(s.redis, "10.98.0.10:6379");
    assert_eq!(s.username.as_deref(), Some("gw"));
    assert_eq!(s.password_file.as_deref(), Some(Path::new("/etc/rempart/redis.pass")));
    assert_eq!(s.key_prefix, "rempart:");
    assert_eq!(
        (s.sync_interval, s.timeout),
        (Duration::from_millis(100), Duration::from_millis(250))
    );
    assert!(parse(SHIPPED).expect("shipped").limits().shared.is_none());
}

#[test]
fn bad_shared_limits_are_refused_where_they_are() {
    let cases = [
        ("redis = \"10.98.0.10:6379\"", "redis = \"10.98.0.10\"", "must be host:port"),
        ("redis = \"10.98.0.10:6379\"", "redis = \"redis://x:6379/0\"", "must be host:port"),
        ("redis = \"10.98.0.10:6379\"", "redis = \":6379\"", "must be host:port"),
        ("key_prefix = \"rempart:\"", "key_prefix = \"\"", "1 to 64 characters"),
        ("key_prefix = \"rempart:\"", "key_prefix = \"a b\"", "1 to 64 characters"),
        ("sync_interval_ms = 100", "sync_interval_ms = 5", "between 10 and 10000"),
        ("sync_interval_ms = 100", "sync_interval_ms = 20000", "between 10 and 10000"),
        ("timeout_ms = 250", "timeout_ms = 5000", "at most 10 sync intervals"),
        ("timeout_ms = 250", "timeout_ms = 0", "more than 0 ms"),
        ("username = \"gw\"", "username = \"\"", "must not be empty"),
        ("timeout_ms = 250", "timeout_ms = 250\nmaster = \"x\"", "unknown field"),
    ];
    for (from, to, want) in cases {
        let text = with_shared(&SHARED.replace(from, to));
        let (line, _, message) = invalid_at(&text);
        assert!(message.contains(want), "{to}: {message}");
        assert_eq!(line, line_of(&text, to.lines().last().expect("line")), "{to}: {message}");
    }
    let text = with_shared(&SHARED.replace("password_file = \"redis.pass\"\n", ""));
    let (_, _, message) = invalid_at(&text);
    assert!(message.contains("username needs a password_file"), "{message}");
}
