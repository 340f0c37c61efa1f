//! End to end through the real chain: a producer chain (blocks made on real UTC slots, signed
//! with the genesis key) serving the private protocol, an api node that follows it with its own
//! chain (verifying and re-applying every block) and serves the chain API, and the real clients
//! — eosjs 22.1.0 and @wharfkit/session 1.7.0 under node — creating accounts, turning active
//! permissions into 2-of-3 multisigs and using them, with one signature of three refused.
//!
//! This test must never pass without having run the clients: when node or the npm packages are
//! missing it fails under `CI=true` and says what to install; elsewhere it says why it returned.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rempart_core::key::{KeyType, PrivateKey};
use rempart_core::{BlockTimestamp, TimePoint};
use rempart_node::api::ApiContext;
use rempart_node::chain::Chain;
use rempart_node::config::Limits;
use rempart_node::genesis::Genesis;
use rempart_node::peer::{
    self, FollowConfig, FollowStatus, FollowerState, HeadNotifier, ProducerService, PushClient,
    wire,
};
use rempart_node::store::Store;
use serde_json::{Value, json};
use tokio::net::TcpListener;

#[path = "clients/runner.rs"]
mod runner;

const EOSIO_WIF: &str = "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("node/ sits in the repository").into()
}

/// The Python with pyntelope 0.8.6: `$PYNTELOPE_PYTHON`, else `python3`. `None` (after saying
/// why, or failing under `CI=true`) when pyntelope cannot be imported.
fn pyntelope_python() -> Option<String> {
    let python = std::env::var("PYNTELOPE_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import pyntelope"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    let missing = format!(
        "{python} cannot import pyntelope: pip install pyntelope==0.8.6 (in a virtualenv; it \
         needs pydantic 1) and set PYNTELOPE_PYTHON to that venv's python"
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("the pyntelope push cannot run: {missing}");
    }
    eprintln!("skipping the pyntelope push: {missing}");
    None
}

/// Real UTC, for the test's slot loop (block execution never sees it: only as a slot).
#[allow(clippy::disallowed_methods, reason = "the test producer's slot clock")]
fn now() -> TimePoint {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    TimePoint(i64::try_from(since.as_micros()).unwrap_or(i64::MAX))
}

fn until(slot: BlockTimestamp) -> Duration {
    Duration::from_micros(u64::try_from(slot.to_time_point().0 - now().0).unwrap_or(0))
}

/// The producer's slot loop, signing with the genesis key: start the block one slot ahead,
/// seal it when its slot begins, tell the block streams.
async fn produce(
    chain: Arc<Chain>,
    heads: HeadNotifier,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let key: PrivateKey = EOSIO_WIF.parse().expect("key");
    loop {
        let slot =
            BlockTimestamp::from_time_point(now()).next().max(chain.info().head_block_time.next());
        let c = chain.clone();
        let started = tokio::task::spawn_blocking(move || c.start_block(slot)).await.expect("join");
        if started.is_err() {
            continue;
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => {
                chain.abort_block();
                return;
            }
            () = tokio::time::sleep(until(slot)) => {}
        }
        let c = chain.clone();
        let k = key.clone();
        let done =
            tokio::task::spawn_blocking(move || c.finish_block(|req| Ok(k.sign(&req.digest()))))
                .await
                .expect("join");
        match done {
            Ok(b) => heads.notify(b.block_num),
            Err(e) => panic!("the test producer failed a block: {e}"),
        }
    }
}

fn open_chain(dir: &Path, genesis: &Genesis) -> Arc<Chain> {
    std::fs::create_dir_all(dir).expect("dir");
    let store = Arc::new(Store::open(&dir.join("state.redb")).expect("store"));
    Arc::new(Chain::open(store, genesis, Limits::default()).expect("chain"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_create_accounts_and_use_a_two_of_three_multisig_through_producer_and_api() {
    if !runner::clients_available("the end-to-end client test") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("rempart-api-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let genesis = Genesis::load(&repo_root().join("policies/genesis.json")).expect("genesis");
    let producer = open_chain(&dir.join("producer"), &genesis);
    let api_chain = open_chain(&dir.join("api"), &genesis);
    let chain_id = producer.chain_id();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let plistener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let paddr = plistener.local_addr().expect("addr");
    let heads = HeadNotifier::new(producer.info().head_block_num);
    let service = Arc::new(ProducerService {
        store: producer.store().clone(),
        chain_id,
        sink: producer.clone(),
        heads: heads.clone(),
        max_frame_bytes: wire::DEFAULT_MAX_FRAME_BYTES,
    });
    tokio::spawn(peer::serve_producer(plistener, service, stopped(stop_rx.clone())));
    let slot_loop = tokio::spawn(produce(producer.clone(), heads, stop_rx.clone()));

    let state = Arc::new(FollowerState::default());
    let follower = tokio::spawn(peer::follow(
        FollowConfig::new(paddr, chain_id),
        api_chain.clone(),
        state.clone(),
        stopped(stop_rx.clone()),
    ));
    let ctx = Arc::new(ApiContext::new(
        api_chain.store().clone(),
        Limits::default(),
        Some(PushClient::new(paddr, chain_id, wire::DEFAULT_MAX_FRAME_BYTES)),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(rempart_node::api::serve(listener, ctx, stopped(stop_rx.clone())));
    // The api node must be following before clients read TaPoS from it, and eosjs's reference
    // block (head - 3) must be a real-time block, not the genesis block of 2024.
    let mut w = state.watch();
    tokio::time::timeout(
        Duration::from_secs(20),
        w.wait_for(|s| matches!(s, FollowStatus::Following { head } if *head >= 6)),
    )
    .await
    .unwrap_or_else(|_| panic!("the api node did not follow: {:?}", state.status()))
    .expect("state");

    let keys: Vec<String> = (0..3)
        .map(|_| PrivateKey::generate(KeyType::K1).to_wif().expect("wif").to_string())
        .collect();
    let url_for_python = url.clone();
    let request = json!({"url": url, "chain_id": chain_id, "eosio_wif": EOSIO_WIF, "keys": keys});
    let out = tokio::task::spawn_blocking(move || runner::run("api_e2e.cjs", &request))
        .await
        .expect("join");

    let created = runner::step(&out, "eosjs_newaccount");
    assert_eq!(created["processed"]["receipt"]["status"], "executed");
    assert_eq!(created["processed"]["action_traces"][0]["act"]["data"]["name"], "alice");
    runner::step(&out, "eosjs_multisig");
    runner::step(&out, "alice_is_multisig_on_the_api_node");
    let refused = &runner::step(&out, "eosjs_one_of_three_refused")["refused"];
    assert_eq!(refused["error"]["code"], 3_090_003, "one key of three: {refused}");
    let two = runner::step(&out, "eosjs_two_of_three");
    assert_eq!(two["processed"]["receipt"]["status"], "executed");
    runner::step(&out, "trade_exists_on_the_api_node");
    let history = runner::step(&out, "history_of_the_multisig_transaction");
    assert_eq!(history["id"], two["transaction_id"]);
    assert_eq!(history["trx"]["trx"]["signatures"].as_array().map(Vec::len), Some(2));
    runner::step(&out, "wharfkit_newaccount");
    let w2 = runner::step(&out, "wharfkit_two_of_three");
    assert_eq!(w2["processed"]["receipt"]["status"], "executed", "{w2}");
    runner::step(&out, "bob_link_on_the_api_node");

    // pyntelope: compression false, expiration from its own clock, TaPoS from the LIB.
    if let Some(python) = pyntelope_python() {
        let request = json!({"url": url_for_python, "wif": EOSIO_WIF}).to_string();
        let script = repo_root().join("node/tests/clients/pyntelope_push.py");
        let output = tokio::task::spawn_blocking(move || {
            let mut child = Command::new(python)
                .arg(script)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run python");
            child.stdin.take().expect("stdin").write_all(request.as_bytes()).expect("request");
            child.wait_with_output().expect("python output")
        })
        .await
        .expect("join");
        let out: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "python printed no JSON ({e}): {}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
        let pushed = &out["ok"];
        assert_eq!(pushed["processed"]["receipt"]["status"], "executed", "pyntelope: {out}");
        assert_eq!(pushed["processed"]["action_traces"][0]["act"]["data"]["code"], "alice");
    }

    // The api node re-applied every block: both chains agree on the head it reached.
    let api_head = api_chain.info();
    let on_producer = producer.store().read().expect("read").block_id(api_head.head_block_num);
    assert_eq!(on_producer.expect("id"), Some(api_head.head_block_id));
    assert!(matches!(state.status(), FollowStatus::Following { .. }));

    let _ = stop_tx.send(true);
    slot_loop.await.expect("slot loop");
    follower.await.expect("join").expect("follower stopped cleanly");
    drop((producer, api_chain));
    let _ = std::fs::remove_dir_all(dir);
}
