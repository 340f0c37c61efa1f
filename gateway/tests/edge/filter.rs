//! The API filter through the running gateway: refused transactions and queries get a
//! nodeos-shaped 400 with a stable reason, are counted per reason, and never reach the
//! upstream; what passes reaches it re-encoded, with query limits clamped.

use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use rempart_core::key::PrivateKey;
use rempart_core::transaction::{
    Action, Compression, PackedTransaction, PermissionLevel, SignedTransaction, Transaction,
};
use rempart_core::{Checksum256, Name, TimePointSec};
use serde_json::{Value, json};

use crate::support::*;

const WIF: &str = "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3";

fn now() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as u32
}

/// A signed, packed transaction with one action `account::name`, expiring `ahead` s from now.
fn transaction(account: &str, name: &str, ahead: i64, compression: Compression) -> Value {
    let n = |s: &str| Name::from_str(s).expect("name");
    let mut t = Transaction::default();
    t.header.expiration = TimePointSec((i64::from(now()) + ahead) as u32);
    t.actions = vec![Action {
        account: n(account),
        name: n(name),
        authorization: vec![PermissionLevel { actor: n("alice"), permission: n("active") }],
        data: rempart_core::Bytes(vec![7; 16]),
    }];
    let mut s = SignedTransaction::new(t);
    s.sign(&PrivateKey::from_str(WIF).expect("key"), &Checksum256::default());
    serde_json::to_value(PackedTransaction::from_signed(&s, compression)).expect("json")
}

async fn post(c: &mut Client, h2: bool, path: &str, body: &Value) -> Answer {
    let uri = if h2 { format!("https://localhost{path}") } else { path.to_owned() };
    let mut b = Request::post(uri).header("content-type", "text/plain");
    if !h2 {
        b = b.header("host", "localhost");
    }
    c.send(b.body(Full::new(Bytes::from(body.to_string()))).expect("req")).await
}

fn policy(up: &Upstream) -> String {
    policy_text(
        &[up.addr],
        &[
            ("blocked = []", "blocked = [\"eosio::setcode\", \"evil\"]"),
            ("max_query_limit = 1000", "max_query_limit = 100"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_transactions_never_reach_the_upstream() {
    let up = Upstream::start("a").await;
    let gw = Gateway::start(&policy(&up)).await;
    for h2 in [false, true] {
        // One connection for everything: a filtered refusal leaves it usable.
        let mut c = Client::connect(gw.tls, h2).await;
        let cases = [
            (
                "/v1/chain/push_transaction",
                transaction("eosio", "setcode", 60, Compression::None),
                "action_blocked",
                3_040_000,
            ),
            (
                "/v1/chain/send_transaction",
                transaction("evil", "drain", 60, Compression::Zlib),
                "action_blocked",
                3_040_000,
            ),
            (
                "/v1/chain/push_transaction",
                transaction("eosio.token", "transfer", -10, Compression::None),
                "tx_expired",
                3_040_005,
            ),
            (
                "/v1/chain/push_transaction",
                transaction("eosio.token", "transfer", 7200, Compression::None),
                "tx_expiration_too_far",
                3_040_006,
            ),
            (
                "/v1/chain/send_transaction2",
                json!({"retry_trx": true, "transaction": transaction("evil", "x", 60, Compression::None)}),
                "action_blocked",
                3_040_000,
            ),
            (
                "/v1/chain/push_transactions",
                json!([
                    transaction("eosio.token", "transfer", 60, Compression::None),
                    transaction("evil", "x", 60, Compression::None)
                ]),
                "action_blocked",
                3_040_000,
            ),
            (
                "/v1/chain/push_transaction",
                json!({"packed_trx": "00"}),
                "bad_transaction",
                3_040_001,
            ),
            ("/v1/chain/push_transaction", json!({"signatures": []}), "bad_json", 3_040_000),
        ];
        for (path, body, reason, code) in &cases {
            let a = post(&mut c, h2, path, body).await;
            assert_eq!(a.status, 400, "{path} {reason}: {}", a.body);
            let e = a.json();
            assert_eq!(e["code"], 400);
            assert_eq!(e["error"]["name"], *reason, "{}", a.body);
            assert_eq!(e["error"]["code"], *code);
            assert!(e["error"]["details"][0]["message"].as_str().is_some_and(|m| !m.is_empty()));
            assert!(a.headers.get("connection").is_none(), "{path}: the connection is kept");
        }
        assert_eq!(up.requests(), 0, "a refused transaction reached the upstream");
    }
    let blocked =
        gw.metric("rempart_gateway_filtered_total{class=\"push\",reason=\"action_blocked\"}").await;
    assert_eq!(blocked, 8.0);
    assert_eq!(
        gw.metric("rempart_gateway_filtered_total{class=\"push\",reason=\"tx_expired\"}").await,
        2.0
    );

    // A good transaction passes, re-encoded from what was checked.
    let mut c = Client::connect(gw.tls, true).await;
    let good = transaction("eosio.token", "transfer", 60, Compression::Zlib);
    let mut sent = good.clone();
    sent["extra"] = json!("not forwarded");
    let a = post(&mut c, true, "/v1/chain/push_transaction", &sent).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let forwarded: Value =
        serde_json::from_str(a.json()["body"].as_str().expect("echoed body")).expect("json");
    assert_eq!(forwarded, good);
    assert_eq!(up.requests(), 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expensive_queries_are_clamped_and_absurd_ones_refused() {
    let up = Upstream::start("a").await;
    let gw = Gateway::start(&policy(&up)).await;
    let mut c = Client::connect(gw.tls, true).await;
    let a = post(
        &mut c,
        true,
        "/v1/chain/get_table_rows",
        &json!({"code": "eosio.token", "table": "accounts", "scope": "alice", "limit": 1_000_000, "json": true}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let forwarded: Value =
        serde_json::from_str(a.json()["body"].as_str().expect("body")).expect("json");
    assert_eq!(forwarded["limit"], 100);
    assert_eq!(forwarded["table"], "accounts");
    let a = post(
        &mut c,
        true,
        "/v1/history/get_actions",
        &json!({"account_name": "alice", "pos": -1, "offset": -100000}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(gw.metric("rempart_gateway_filter_clamped_total{class=\"heavy\"}").await, 2.0);
    let a =
        post(&mut c, true, "/v1/chain/get_table_rows", &json!({"lower_bound": "x".repeat(500)}))
            .await;
    assert_eq!(
        (a.status, a.json()["error"]["name"].clone()),
        (400, json!("bad_query")),
        "{}",
        a.body
    );
    let a = post(&mut c, true, "/v1/chain/get_table_rows", &json!({"limit": -5})).await;
    assert_eq!(a.status, 400);
    assert_eq!(up.requests(), 2);

    // With over_limit = "reject" the same query is refused.
    std::fs::write(
        &gw.policy_file,
        policy(&up).replace("over_limit = \"clamp\"", "over_limit = \"reject\""),
    )
    .expect("write");
    gw.reload.notify_one();
    wait_for("the reload", std::time::Duration::from_secs(5), async || {
        gw.metric("rempart_gateway_reloads_total{what=\"policy\",result=\"ok\"}").await >= 1.0
    })
    .await;
    let a = post(&mut c, true, "/v1/chain/get_table_rows", &json!({"limit": 101})).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.json()["error"]["name"], "query_limit_too_high");
    assert_eq!(up.requests(), 2);
    gw.stop().await;
}

/// Access-log lines of the gateway, captured by a JSON subscriber installed once per process.
static LOG: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        LOG.lock().expect("log").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let sub = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(|| LogWriter)
            .finish();
        tracing::subscriber::set_global_default(sub).expect("the only subscriber");
    });
}

/// The access-log entries (their `fields`) of requests from `client`.
fn access_log(client: &str) -> Vec<Value> {
    let text = String::from_utf8_lossy(&LOG.lock().expect("log")).into_owned();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "rempart_gateway::access" && v["fields"]["client"] == client)
        .map(|v| v["fields"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_records_the_filter_decision() {
    capture_logs();
    let up = Upstream::start("a").await;
    let gw = Gateway::start(&policy(&up)).await;
    let source = std::net::Ipv4Addr::new(127, 0, 0, 9);
    let mut c = Client::connect_from(source, gw.tls, true).await.expect("tls");
    let blocked = transaction("evil", "x", 60, Compression::None);
    assert_eq!(post(&mut c, true, "/v1/chain/push_transaction", &blocked).await.status, 400);
    let good = transaction("eosio.token", "transfer", 60, Compression::None);
    assert_eq!(post(&mut c, true, "/v1/chain/push_transaction", &good).await.status, 200);
    let q = json!({"limit": 5000});
    assert_eq!(post(&mut c, true, "/v1/chain/get_table_rows", &q).await.status, 200);
    assert_eq!(post(&mut c, true, "/v1/chain/get_info", &json!({})).await.status, 200);
    let log = access_log("127.0.0.9");
    let got: Vec<(u64, &str, &str, &str)> = log
        .iter()
        .map(|f| {
            (
                f["status"].as_u64().unwrap_or(0),
                f["route"].as_str().unwrap_or(""),
                f["reason"].as_str().unwrap_or(""),
                f["filter"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (400, "push", "action_blocked", "action_blocked"),
            (200, "push", "ok", "checked"),
            (200, "heavy", "ok", "clamped"),
            (200, "read", "ok", "none"),
        ],
        "{log:#?}"
    );
    gw.stop().await;
}
