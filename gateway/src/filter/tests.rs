use std::str::FromStr;

use bytes::Bytes;
use rempart_core::key::PrivateKey;
use rempart_core::transaction::{
    Action, Compression, PackedTransaction, PermissionLevel, SignedTransaction, Transaction,
};
use rempart_core::{Checksum256, Name, TimePointSec};
use serde_json::{Value, json};

use super::*;

const NOW: TimePointSec = TimePointSec(1_700_000_000);
const WIF: &str = "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3";

fn policy() -> FilterPolicy {
    FilterPolicy {
        max_transaction_bytes: 4096,
        max_actions: 3,
        max_context_free_actions: 1,
        max_signatures: 2,
        max_expiration_ahead_secs: 3600,
        max_transactions_per_push: 2,
        blocked: vec!["eosio::setcode".parse().expect("p"), "evil".parse().expect("p")],
        allowed: Vec::new(),
        max_query_limit: 100,
        over_limit: OverLimit::Clamp,
        max_bound_chars: 64,
    }
}

fn action(account: &str, name: &str) -> Action {
    Action {
        account: Name::from_str(account).expect("name"),
        name: Name::from_str(name).expect("name"),
        authorization: vec![PermissionLevel {
            actor: Name::from_str("alice").expect("name"),
            permission: Name::from_str("active").expect("name"),
        }],
        data: rempart_core::Bytes(vec![1, 2, 3]),
    }
}

fn trx(actions: Vec<Action>, expiration: u32) -> Transaction {
    let mut t = Transaction::default();
    t.header.expiration = TimePointSec(expiration);
    t.actions = actions;
    t
}

fn packed(t: Transaction, signatures: usize, compression: Compression) -> PackedTransaction {
    let mut s = SignedTransaction::new(t);
    let key = PrivateKey::from_str(WIF).expect("key");
    let chain = Checksum256::default();
    for _ in 0..signatures {
        s.sign(&key, &chain);
    }
    PackedTransaction::from_signed(&s, compression)
}

fn body(p: &PackedTransaction) -> Bytes {
    Bytes::from(serde_json::to_vec(p).expect("json"))
}

fn push(b: Bytes) -> Result<Passed, Rejection> {
    policy().inspect("/v1/chain/push_transaction", b, NOW)
}

fn ok_trx() -> Transaction {
    trx(vec![action("eosio.token", "transfer")], NOW.0 + 60)
}

#[test]
fn a_good_transaction_passes_in_both_compressions_and_is_forwarded_as_checked() {
    for c in [Compression::None, Compression::Zlib] {
        let p = packed(ok_trx(), 1, c);
        let passed = push(body(&p)).expect("passes");
        assert_eq!(passed.decision, "checked");
        let forwarded: PackedTransaction = serde_json::from_slice(&passed.body).expect("json");
        assert_eq!(forwarded, p);
    }
}

#[test]
fn every_transaction_endpoint_is_inspected_whatever_the_spelling() {
    let bad = body(&packed(trx(vec![action("evil", "x")], NOW.0 + 60), 1, Compression::None));
    for path in [
        "/v1/chain/push_transaction",
        "/v1/chain/send_transaction",
        "/v1/chain/Push_Transaction",
        "/v1/chain/send_transaction/",
    ] {
        let r = policy().inspect(path, bad.clone(), NOW);
        assert_eq!(r.map_err(|e| e.reason()), Err("action_blocked"), "{path}");
    }
    let wrapped =
        Bytes::from(format!("{{\"transaction\":{}}}", String::from_utf8_lossy(&bad)).into_bytes());
    for path in [
        "/v1/chain/send_transaction2",
        "/v1/chain/compute_transaction",
        "/v1/chain/send_read_only_transaction",
    ] {
        let r = policy().inspect(path, wrapped.clone(), NOW);
        assert_eq!(r.map_err(|e| e.reason()), Err("action_blocked"), "{path}");
        let r = policy().inspect(path, bad.clone(), NOW);
        assert_eq!(r.map_err(|e| e.reason()), Err("bad_json"), "{path} wants the wrapper");
    }
    assert!(!inspects("/v1/chain/get_info"));
    let other = policy().inspect("/v1/chain/get_info", Bytes::from_static(b"{"), NOW);
    assert_eq!(other.expect("not inspected").decision, "none");
}

#[test]
fn send_transaction2_and_push_transactions_are_checked_element_by_element() {
    let good = packed(ok_trx(), 1, Compression::Zlib);
    let bad = packed(trx(vec![action("eosio", "setcode")], NOW.0 + 60), 1, Compression::None);
    let wrap = |p: &PackedTransaction| {
        Bytes::from(
            json!({"return_failure_trace": true, "retry_trx": false, "extra": 1, "transaction": p})
                .to_string(),
        )
    };
    let f = policy();
    let passed = f.inspect("/v1/chain/send_transaction2", wrap(&good), NOW).expect("passes");
    let v: Value = serde_json::from_slice(&passed.body).expect("json");
    assert_eq!(v["return_failure_trace"], json!(true));
    assert!(v.get("extra").is_none(), "unknown fields are not forwarded");
    let r = f.inspect("/v1/chain/send_transaction2", wrap(&bad), NOW);
    assert_eq!(r.map_err(|e| e.reason()), Err("action_blocked"));

    let many = |ps: &[&PackedTransaction]| Bytes::from(serde_json::to_vec(ps).expect("json"));
    let path = "/v1/chain/push_transactions";
    assert!(f.inspect(path, many(&[&good, &good]), NOW).is_ok());
    let r = f.inspect(path, many(&[&good, &bad]), NOW);
    assert_eq!(r.map_err(|e| e.reason()), Err("action_blocked"));
    let r = f.inspect(path, many(&[&good, &good, &good]), NOW);
    assert_eq!(r.map_err(|e| e.reason()), Err("too_many_transactions"), "counted before decoding");
}

#[test]
fn counts_are_bounded() {
    let four = trx((0..4).map(|_| action("eosio.token", "transfer")).collect(), NOW.0 + 60);
    assert_eq!(
        push(body(&packed(four, 1, Compression::None))),
        Err(Rejection::TooManyActions { count: 4, limit: 3 })
    );
    assert_eq!(
        push(body(&packed(trx(vec![], NOW.0 + 60), 1, Compression::None))),
        Err(Rejection::NoActions)
    );
    let mut cfa = ok_trx();
    cfa.context_free_actions = vec![action("eosio.null", "nonce"), action("eosio.null", "nonce")];
    assert_eq!(
        push(body(&packed(cfa, 1, Compression::None))),
        Err(Rejection::TooManyContextFreeActions { count: 2, limit: 1 })
    );
    // Three signatures are counted before any is parsed.
    let mut p = packed(ok_trx(), 1, Compression::None);
    let mut v: Value = serde_json::to_value(&p).expect("json");
    v["signatures"] = json!(["a", "b", "c"]);
    assert_eq!(
        push(Bytes::from(v.to_string())),
        Err(Rejection::TooManySignatures { count: 3, limit: 2 })
    );
    p.signatures.truncate(0);
    assert!(push(body(&p)).is_ok(), "read-only and unsigned bodies are the node's business");
}

#[test]
fn the_expiration_window_uses_the_gateway_clock() {
    let at = |exp: u32| push(body(&packed(trx(vec![action("a", "b")], exp), 1, Compression::None)));
    assert!(at(NOW.0).is_ok(), "expiring this second is still valid");
    assert!(at(NOW.0 + 3600).is_ok());
    assert_eq!(at(NOW.0 - 1).map_err(|e| e.reason()), Err("tx_expired"));
    assert_eq!(at(NOW.0 + 3601).map_err(|e| e.reason()), Err("tx_expiration_too_far"));
    assert_eq!(at(u32::MAX).map_err(|e| e.reason()), Err("tx_expiration_too_far"));
}

#[test]
fn blocklist_then_allowlist() {
    let send = |f: &FilterPolicy, a: Action| {
        f.inspect(
            "/v1/chain/send_transaction",
            body(&packed(trx(vec![a], NOW.0 + 60), 1, Compression::None)),
            NOW,
        )
        .map_err(|e| e.to_string())
    };
    let f = policy();
    assert!(send(&f, action("eosio", "setcode")).expect_err("blocked").contains("eosio::setcode"));
    assert!(send(&f, action("eosio", "setabi")).is_ok(), "only setcode of eosio is blocked");
    assert!(send(&f, action("evil", "anything")).is_err(), "a whole contract is blocked");
    let mut f = policy();
    f.allowed = vec!["eosio.token".parse().expect("p"), "eosio::buyram".parse().expect("p")];
    assert!(send(&f, action("eosio.token", "transfer")).is_ok());
    assert!(send(&f, action("eosio", "buyram")).is_ok());
    let e = send(&f, action("eosio", "sellram")).expect_err("not allowed");
    assert!(e.contains("eosio::sellram"), "{e}");
    // A context-free action is checked too.
    let mut t = ok_trx();
    t.context_free_actions = vec![action("evil", "x")];
    assert_eq!(
        push(body(&packed(t, 1, Compression::None))).map_err(|e| e.reason()),
        Err("action_blocked")
    );
}

#[test]
fn sizes_are_bounded_before_and_during_inflation() {
    let mut big = ok_trx();
    big.actions[0].data = rempart_core::Bytes(vec![0; 5000]);
    for c in [Compression::None, Compression::Zlib] {
        let p = packed(big.clone(), 1, c);
        assert_eq!(push(body(&p)), Err(Rejection::TooBig { limit: 4096 }), "{c:?}");
    }
    // A zlib bomb: about a kilobyte that inflates to a megabyte.
    let mut bomb = ok_trx();
    bomb.actions[0].data = rempart_core::Bytes(vec![0; 1 << 20]);
    let p = packed(bomb, 0, Compression::Zlib);
    assert!(p.packed_trx.0.len() < 4096, "{}", p.packed_trx.0.len());
    assert_eq!(push(body(&p)), Err(Rejection::TooBig { limit: 4096 }));
}

#[test]
fn malformed_bodies_are_refused_never_passed() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "bad_json"),
        (b"not json", "bad_json"),
        (b"[]", "bad_json"),
        (b"{\"signatures\":[]}", "bad_json"),
        (b"{\"packed_trx\":\"zz\"}", "bad_json"),
        (b"{\"packed_trx\":\"00\"}", "bad_transaction"),
        (b"{\"packed_trx\":\"00\",\"compression\":7}", "bad_json"),
        (b"{\"packed_trx\":\"00\",\"compression\":\"zlib\"}", "bad_transaction"),
        (b"{\"packed_trx\":\"00\",\"signatures\":[\"SIG_K1_nope\"]}", "bad_transaction"),
    ];
    for (b, reason) in cases {
        let r = push(Bytes::from_static(b));
        assert_eq!(r.map_err(|e| e.reason()), Err(*reason), "{}", String::from_utf8_lossy(b));
    }
    // Trailing bytes after the packed transaction.
    let mut p = packed(ok_trx(), 1, Compression::None);
    p.packed_trx.0.push(0);
    assert_eq!(push(body(&p)).map_err(|e| e.reason()), Err("bad_transaction"));
    // A duplicate key is refused rather than read one way here and another upstream.
    let good = body(&packed(ok_trx(), 1, Compression::None));
    let text = String::from_utf8(good.to_vec()).expect("utf8");
    let dup = text.replacen('{', "{\"packed_trx\":\"00\",", 1);
    assert_eq!(push(Bytes::from(dup)).map_err(|e| e.reason()), Err("bad_json"));
}

fn query(f: &FilterPolicy, path: &str, v: Value) -> Result<(Value, &'static str), Rejection> {
    let p = f.inspect(path, Bytes::from(v.to_string()), NOW)?;
    Ok((serde_json::from_slice(&p.body).expect("json"), p.decision))
}

#[test]
fn query_limits_are_clamped_or_rejected() {
    let rows = "/v1/chain/get_table_rows";
    let f = policy();
    let (v, d) = query(&f, rows, json!({"code": "eosio", "limit": 50})).expect("ok");
    assert_eq!((v["limit"].clone(), d), (json!(50), "checked"));
    let (v, d) = query(&f, rows, json!({"code": "eosio", "limit": 100000})).expect("ok");
    assert_eq!((v["limit"].clone(), d), (json!(100), "clamped"));
    assert_eq!(v["code"], json!("eosio"));
    let (v, d) = query(&f, rows, json!({"limit": "99999999999999999999999"})).expect("ok");
    assert_eq!((v["limit"].clone(), d), (json!(100), "clamped"));
    let (_, d) = query(&f, rows, json!({})).expect("nodeos default 10 is under the cap");
    assert_eq!(d, "checked");
    let empty = f.inspect(rows, Bytes::new(), NOW).expect("empty body is {}");
    assert_eq!(&empty.body[..], b"{}");

    let mut r = policy();
    r.over_limit = OverLimit::Reject;
    assert_eq!(
        query(&r, rows, json!({"limit": 101})),
        Err(Rejection::LimitTooHigh { field: "limit", value: 101, limit: 100 })
    );
    r.max_query_limit = 5;
    assert_eq!(
        query(&r, rows, json!({})).map_err(|e| e.reason()),
        Err("query_limit_too_high"),
        "an absent limit is nodeos's default, 10"
    );
    assert_eq!(
        query(&r, "/v1/chain/get_producers", json!({"limit": 5})).map(|x| x.1),
        Ok("checked")
    );

    for bad in [json!(-1), json!(1.5), json!("ten"), json!(true), json!([1])] {
        let e = query(&f, rows, json!({"limit": bad}));
        assert_eq!(e.map_err(|e| e.reason()), Err("bad_query"), "{bad}");
    }
}

#[test]
fn absurd_bounds_and_positions_are_refused() {
    let f = policy();
    let rows = "/v1/chain/get_table_rows";
    assert!(query(&f, rows, json!({"lower_bound": "alice", "upper_bound": 12})).is_ok());
    for bad in [json!("x".repeat(65)), json!({"a": 1}), json!([1, 2])] {
        let e = query(&f, "/v1/chain/get_table_by_scope", json!({"lower_bound": bad}));
        assert_eq!(e.map_err(|e| e.reason()), Err("bad_query"));
    }
    let actions = "/v1/history/get_actions";
    let (v, d) = query(&f, actions, json!({"account_name": "a", "pos": -1, "offset": -20}))
        .expect("ordinary paging");
    assert_eq!((v["offset"].clone(), d), (json!(-20), "checked"));
    let (v, d) = query(&f, actions, json!({"pos": -1, "offset": -5000})).expect("clamped");
    assert_eq!((v["offset"].clone(), d), (json!(-100), "clamped"));
    for bad in [
        json!({"pos": -2}),
        json!({"pos": 1u64 << 40}),
        json!({"offset": "x"}),
        json!({"offset": 1.5}),
        json!({"offset": i64::MIN}),
    ] {
        assert_eq!(
            query(&f, actions, bad.clone()).map_err(|e| e.reason()),
            Err("bad_query"),
            "{bad}"
        );
    }
    let (v, _) =
        query(&f, rows, serde_json::from_str::<Value>("{\"limit\":1,\"limit\":500}").expect("j"))
            .expect("the last duplicate is the one checked and forwarded");
    assert_eq!(v["limit"], json!(100));
}

#[test]
fn patterns_parse_and_print() {
    let p: ActionPattern = "eosio.token::transfer".parse().expect("pattern");
    assert_eq!(p.to_string(), "eosio.token::transfer");
    assert_eq!("eosio".parse::<ActionPattern>().expect("p").action, None);
    for bad in ["", "::x", "eosio::", "Eosio", "a::b::c", "toolongnameforeosio"] {
        assert!(bad.parse::<ActionPattern>().is_err(), "{bad:?}");
    }
}

#[test]
fn every_reason_is_listed_and_answers_nodeos_codes() {
    let all = [
        Rejection::BadJson(String::new()),
        Rejection::BadTransaction(String::new()),
        Rejection::TooBig { limit: 1 },
        Rejection::NoActions,
        Rejection::TooManyActions { count: 2, limit: 1 },
        Rejection::TooManyContextFreeActions { count: 2, limit: 1 },
        Rejection::TooManySignatures { count: 2, limit: 1 },
        Rejection::Expired { expiration: NOW, now: NOW },
        Rejection::ExpirationTooFar { expiration: NOW, now: NOW, limit_secs: 1 },
        Rejection::Blocked(String::new()),
        Rejection::NotAllowed(String::new()),
        Rejection::TooManyTransactions { count: 2, limit: 1 },
        Rejection::LimitTooHigh { field: "limit", value: 2, limit: 1 },
        Rejection::BadQuery(String::new()),
    ];
    let reasons: Vec<&str> = all.iter().map(Rejection::reason).collect();
    assert_eq!(reasons, Rejection::REASONS);
    assert_eq!(Rejection::Expired { expiration: NOW, now: NOW }.nodeos_code(), 3_040_005);
    assert!(all.iter().all(|r| (3_040_000..3_070_000).contains(&r.nodeos_code())));
}

/// A query is forwarded re-serialised (one value per key, so the node cannot read a duplicate
/// key the filter did not check). A number in it must come out as the same number: serde_json
/// parses floats exactly only with `float_roundtrip` (found by the `gateway_filter` fuzz
/// target, whose input this is).
#[test]
fn a_forwarded_query_keeps_its_numbers_exactly_and_passes_again_unchanged() {
    let digits = format!("-{}00", "5".repeat(120)).replacen('5', "2", 1);
    let body = format!(r#"{{"affset": {digits}, "account_name": "alice"}}"#);
    let f = policy();
    let passed = f.inspect("/v1/history/get_actions", Bytes::from(body), NOW).expect("passes");
    let sent: Value = serde_json::from_slice(&passed.body).expect("json");
    let exact: f64 = digits.parse().expect("a float");
    assert_eq!(sent["affset"].as_f64(), Some(exact), "{}", String::from_utf8_lossy(&passed.body));
    let again = f.inspect("/v1/history/get_actions", passed.body.clone(), NOW).expect("passes");
    assert_eq!(again.body, passed.body);
}
