//! Policy reloads: a valid file is applied atomically, an invalid one keeps the old policy,
//! and limiter state survives.

use std::time::Duration;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_reload_keeps_the_old_policy_and_valid_reload_applies() {
    let up = Upstream::start("a").await;
    let text = policy_text(
        &[up.addr],
        &[("per_second = 100000\nburst = 100000", "per_second = 1\nburst = 2")],
    );
    let gw = Gateway::start(&text).await;
    let mut c = Client::connect(gw.tls, false).await;
    assert_eq!(c.post("/v1/chain/get_block", "{}").await.status, 200);
    assert_eq!(c.post("/v1/chain/get_block", "{}").await.status, 200);
    assert_eq!(c.post("/v1/chain/get_block", "{}").await.status, 429);

    // An invalid file: refused, the old policy keeps serving.
    std::fs::write(&gw.policy_file, text.replace("per_client = 64", "per_client = 64\nbogus = 1"))
        .expect("write");
    gw.reload.notify_one();
    wait_for("rejected reload", Duration::from_secs(5), async || {
        gw.metric("rempart_gateway_reloads_total{what=\"policy\",result=\"rejected\"}").await >= 1.0
    })
    .await;
    assert_eq!(
        gw.metric("rempart_gateway_reloads_total{what=\"policy\",result=\"ok\"}").await,
        0.0
    );
    assert_eq!(c.post("/v1/chain/get_table_rows", "{}").await.status, 200);

    // A valid change (get_block removed): applied; the read class kept its limiter state.
    let changed =
        text.replacen("path = \"/v1/chain/get_block\"", "path = \"/v1/chain/get_blocks\"", 1);
    std::fs::write(&gw.policy_file, &changed).expect("write");
    wait_for("applied reload", Duration::from_secs(5), async || {
        gw.metric("rempart_gateway_reloads_total{what=\"policy\",result=\"ok\"}").await >= 1.0
    })
    .await;
    assert_eq!(c.post("/v1/chain/get_block", "{}").await.status, 403);
    assert_eq!(c.post("/v1/chain/get_blocks", "{}").await.status, 429, "limiter state was lost");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_requests_in_flight_and_refuses_new_connections() {
    let up = Upstream::start("a").await;
    let gw = Gateway::start(&policy_text(
        &[up.addr],
        &[("path = \"/v1/history/get_actions\"", "path = \"/v1/chain/slow\"")],
    ))
    .await;
    let tls = gw.tls;
    let mut c = Client::connect(tls, false).await;
    let in_flight = tokio::spawn(async move { c.post("/v1/chain/slow", "{}").await.status });
    wait_for("request reached the upstream", Duration::from_secs(5), async || up.requests() == 1)
        .await;
    gw.stop().await;
    assert_eq!(in_flight.await.expect("join"), 200, "in-flight request was cut");
    assert!(
        tls_connect(tls, client_config(&[b"http/1.1"])).await.is_err(),
        "a new connection was accepted after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bp_json_and_chains_json_are_served_from_files_and_reloaded() {
    use bytes::Bytes;
    use http::Request;
    use http_body_util::Full;
    let up = Upstream::start("a").await;
    let dir = std::env::temp_dir().join(format!("rempart-gw-docs-edge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let bp = dir.join("bp.json");
    std::fs::write(&bp, r#"{"producer_account_name":"rempart1"}"#).expect("write");
    let text = policy_text(
        &[up.addr],
        &[("# bp_json = \"bp.json\"", &format!("bp_json = \"{}\"", bp.display()))],
    );
    let gw = Gateway::start(&text).await;
    let mut c = Client::connect(gw.tls, true).await;
    let get = |p: &str| {
        Request::get(format!("https://localhost{p}")).body(Full::new(Bytes::new())).expect("req")
    };
    let a = c.send(get("/bp.json")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["producer_account_name"], "rempart1");
    assert_eq!(a.headers["access-control-allow-origin"], "*");
    assert_eq!(c.send(get("/chains.json")).await.status, 403);

    // A broken document refuses the whole reload.
    std::fs::write(&bp, "[not an object]").expect("write");
    gw.reload.notify_one();
    wait_for("rejected reload", Duration::from_secs(5), async || {
        gw.metric("rempart_gateway_reloads_total{what=\"policy\",result=\"rejected\"}").await >= 1.0
    })
    .await;
    assert_eq!(c.send(get("/bp.json")).await.json()["producer_account_name"], "rempart1");
    std::fs::write(&bp, r#"{"producer_account_name":"rempart2"}"#).expect("write");
    gw.reload.notify_one();
    wait_for("applied reload", Duration::from_secs(5), async || {
        gw.metric("rempart_gateway_reloads_total{what=\"policy\",result=\"ok\"}").await >= 1.0
    })
    .await;
    assert_eq!(c.send(get("/bp.json")).await.json()["producer_account_name"], "rempart2");
    assert_eq!(up.requests(), 0);
    gw.stop().await;
    std::fs::remove_dir_all(dir).ok();
}
