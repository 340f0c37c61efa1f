//! Policy reloads: a valid file is applied atomically, an invalid one keeps the old policy,
//! and limiter state survives.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;

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
    assert_eq!(
        up.seen.busy.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the drain ended before the request in flight was answered"
    );
    assert_eq!(in_flight.await.expect("join"), 200, "in-flight request was cut");
    assert!(
        tls_connect(tls, client_config(&[b"http/1.1"])).await.is_err(),
        "a new connection was accepted after shutdown"
    );
}

/// Requests that reach a stopping gateway on connections it has already accepted are answered,
/// not lost. A connection with no request yet was most likely accepted just before the stop (in
/// a handover, say), its request on the way: it is answered with `Connection: close`. A used
/// keep-alive connection is not closed under a request its client may be sending: it is left
/// `close_idle_after` (here 200 ms) to bring one, then closed when idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_shutdown_requests_on_open_connections_are_still_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start("a").await;
    let gw = Gateway::start(&policy_text(&[up.addr], &[])).await;
    let tls = gw.tls;
    let cfg = client_config(&[b"http/1.1"]);
    let request =
        b"POST /v1/chain/get_info HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}";
    let mut used = tls_connect(tls, cfg.clone()).await.expect("tls");
    used.write_all(request).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = used.read(&mut buf).await.expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    let mut fresh = tls_connect(tls, cfg).await.expect("tls");
    // An idle HTTP/2 connection: like a used HTTP/1 one, it is left `close_idle_after` to
    // bring a request, then gets its GOAWAY and closes.
    let h2 = tls_connect(tls, client_config(&[b"h2"])).await.expect("tls");
    let (_send, h2_conn) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(h2),
    )
    .await
    .expect("h2 handshake");
    let h2_closed = tokio::spawn(h2_conn);

    let stopping = tokio::spawn(gw.stop());
    // The stop is sent to the connections before the listener closes.
    wait_for("the listener to close at the stop", Duration::from_secs(5), async || {
        tokio::net::TcpStream::connect(tls).await.is_err()
    })
    .await;
    // Well within the 200 ms left to used HTTP/1 connections.
    for (name, conn) in [("used", &mut used), ("fresh", &mut fresh)] {
        conn.write_all(request).await.expect("write");
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut answer))
            .await
            .expect("the connection closes after its answer");
        let answer = String::from_utf8_lossy(&answer).to_lowercase();
        assert!(answer.starts_with("http/1.1 200"), "{name}: {answer}");
        if name == "fresh" {
            assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), h2_closed)
        .await
        .expect("the idle HTTP/2 connection is closed after the stop");
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("the drain ends with the connections")
        .expect("join");
}

/// HTTP/2 connections are served by the gateway's own driver (not hyper's server): at
/// shutdown a stream in flight still gets its answer, and the connection then closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_http2_streams_in_flight() {
    let up = Upstream::start("a").await;
    let gw = Gateway::start(&policy_text(
        &[up.addr],
        &[("path = \"/v1/history/get_actions\"", "path = \"/v1/chain/slow\"")],
    ))
    .await;
    let mut c = Client::connect(gw.tls, true).await;
    let in_flight = tokio::spawn(async move { c.post("/v1/chain/slow", "{}").await.status });
    wait_for("request reached the upstream", Duration::from_secs(5), async || up.requests() == 1)
        .await;
    gw.stop().await;
    // `run` returns once the drain is over: by then the stream must have had its answer. A
    // binary exits at that point, cutting whatever is still open.
    assert_eq!(
        up.seen.busy.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the drain ended before the stream in flight was answered"
    );
    assert_eq!(in_flight.await.expect("join"), 200, "in-flight HTTP/2 stream was cut");
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

/// The value of the metric line starting with `prefix` on `admin` (0 if absent).
async fn admin_metric(admin: std::net::SocketAddr, prefix: &str) -> f64 {
    let (status, body) = plain_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Rewrites `file` with `text` (same length as before) and puts its old modification time
/// back, so the gateway's file watcher sees no change and only a signal can cause a reload.
fn rewrite_unnoticed(file: &std::path::Path, text: &str) {
    let before = std::fs::metadata(file).expect("stat");
    assert_eq!(before.len(), text.len() as u64, "the rewrite must keep the length");
    std::fs::write(file, text).expect("write");
    let f = std::fs::File::options().write(true).open(file).expect("open");
    f.set_modified(before.modified().expect("mtime")).expect("restore mtime");
}

/// The real binary, a real SIGHUP: a valid change takes effect on a connection opened before
/// it, an invalid file is refused and the policy in force stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_running_binary_and_open_connections_survive() {
    let up = Upstream::start("a").await;
    let served = ServedBinary::start(&[up.addr], &[]).await;
    let (text, file, pid, tls, admin) =
        (served.text.clone(), served.policy_file.clone(), served.pid, served.tls, served.admin);
    let mut child = served.child;
    let mut c = Client::connect(tls, false).await;
    wait_for("the upstream admitted by health checks", Duration::from_secs(10), async || {
        c.post("/v1/chain/get_block", "{}").await.status == 200
    })
    .await;
    let ok = "rempart_gateway_reloads_total{what=\"policy\",result=\"ok\"}";
    let rejected = "rempart_gateway_reloads_total{what=\"policy\",result=\"rejected\"}";

    // A valid change of the same length, invisible to the file watcher: get_block leaves the
    // allowlist, get_bloxk joins it; only the signal can make the gateway read it.
    let changed =
        text.replacen("path = \"/v1/chain/get_block\"", "path = \"/v1/chain/get_bloxk\"", 1);
    assert_ne!(changed, text);
    rewrite_unnoticed(&file, &changed);
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).expect("send SIGHUP");
    wait_for("the reload after SIGHUP", Duration::from_secs(10), async || {
        admin_metric(admin, ok).await >= 1.0
    })
    .await;
    assert_eq!(c.post("/v1/chain/get_block", "{}").await.status, 403, "old policy still served");
    assert_eq!(c.post("/v1/chain/get_bloxk", "{}").await.status, 200, "new route not served");

    // An invalid file (an unknown key): refused, the policy in force stays, the same
    // connection keeps being served.
    let invalid = changed.replacen("per_client = 64", "per_clixnt = 64", 1);
    assert_ne!(invalid, changed);
    rewrite_unnoticed(&file, &invalid);
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).expect("send SIGHUP");
    wait_for("the refused reload after SIGHUP", Duration::from_secs(10), async || {
        admin_metric(admin, rejected).await >= 1.0
    })
    .await;
    assert_eq!(admin_metric(admin, ok).await, 1.0);
    assert_eq!(c.post("/v1/chain/get_block", "{}").await.status, 403);
    assert_eq!(c.post("/v1/chain/get_bloxk", "{}").await.status, 200);
    assert!(child.try_wait().expect("wait").is_none(), "the gateway exited on SIGHUP");

    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("send SIGTERM");
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("the gateway stops on SIGTERM")
        .expect("wait");
    assert!(status.success(), "exit status {status}");
}
