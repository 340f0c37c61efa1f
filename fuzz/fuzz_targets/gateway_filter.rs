//! Fuzzes the gateway's API filter (`FilterPolicy::inspect`), which reads request bodies from
//! the Internet: the first byte picks the endpoint and what a query over its cap does, the rest
//! is the body. It must never panic. What it lets through is JSON, and is a fixed point: the
//! body it forwards passes the same filter again, unchanged, so what an api node receives is
//! exactly what was checked.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rempart_core::TimePointSec;
use rempart_gateway::filter::{FilterPolicy, OverLimit};

/// Every endpoint the filter inspects, and one it does not.
const PATHS: [&str; 12] = [
    "/v1/chain/push_transaction",
    "/v1/chain/send_transaction",
    "/v1/chain/send_transaction2",
    "/v1/chain/compute_transaction",
    "/v1/chain/send_read_only_transaction",
    "/v1/chain/push_transactions",
    "/v1/chain/get_table_rows",
    "/v1/chain/get_table_by_scope",
    "/v1/chain/get_producers",
    "/v1/chain/get_activated_protocol_features",
    "/v1/history/get_actions",
    "/v1/chain/get_info",
];

const NOW: TimePointSec = TimePointSec(1_700_000_000);

fn policy(over_limit: OverLimit) -> FilterPolicy {
    FilterPolicy {
        max_transaction_bytes: 4096,
        max_actions: 4,
        max_context_free_actions: 1,
        max_signatures: 2,
        max_expiration_ahead_secs: 3600,
        max_transactions_per_push: 3,
        blocked: vec!["eosio::setcode".parse().expect("pattern"), "evil".parse().expect("pattern")],
        allowed: Vec::new(),
        max_query_limit: 100,
        over_limit,
        max_bound_chars: 64,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&select, body)) = data.split_first() else {
        return;
    };
    let path = PATHS[usize::from(select & 0x0f) % PATHS.len()];
    let over_limit = if select & 0x80 == 0 { OverLimit::Clamp } else { OverLimit::Reject };
    let filter = policy(over_limit);
    let Ok(passed) = filter.inspect(path, Bytes::copy_from_slice(body), NOW) else {
        return;
    };
    if !rempart_gateway::filter::inspects(path) {
        assert_eq!(&passed.body[..], body, "a path the filter does not inspect was changed");
        return;
    }
    serde_json::from_slice::<serde_json::Value>(&passed.body).expect("a passed body is JSON");
    let again = filter
        .inspect(path, passed.body.clone(), NOW)
        .unwrap_or_else(|r| panic!("the forwarded body of {path} fails the filter: {r}"));
    assert_eq!(again.body, passed.body, "the forwarded body of {path} is not a fixed point");
});
