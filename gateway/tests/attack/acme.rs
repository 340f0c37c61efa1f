//! A certificate from a real ACME CA: Let's Encrypt's test server, pebble, validates
//! `localhost` over HTTP-01 on the gateway's redirect listener. The gateway binary starts on a
//! self-signed placeholder, obtains the certificate, loads it and serves it.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use crate::support::{
    Upstream, client_config_trusting, free_port, plain_get, policy_text, tls_connect, wait_for,
};
use crate::tools;

/// GET `path` from `addr` over HTTPS, trusting `ca_pem`, with SNI `localhost`.
async fn https_get(addr: SocketAddr, ca_pem: &str, path: &str) -> std::io::Result<(u16, String)> {
    let tls = tls_connect(addr, client_config_trusting(ca_pem)).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    let req = Request::get(path).header("host", "localhost").body(Empty::<Bytes>::new());
    let resp = send.send_request(req.expect("req")).await.map_err(std::io::Error::other)?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(std::io::Error::other)?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_is_obtained_from_pebble_over_http_01_and_served() {
    let Some(pebble) = tools::find("pebble", "pebble") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();

    // Pebble's own HTTPS (its directory and management API), for `localhost`.
    let (pebble_ca, pebble_cert, pebble_key) =
        rempart_gateway::dev_cert::generate(&["localhost"]).expect("pebble's certificate");
    for (name, text) in [("pebble-ca.pem", &pebble_ca), ("pebble.pem", &pebble_cert)] {
        std::fs::write(d.join(name), text).expect("write");
    }
    std::fs::write(d.join("pebble.key"), &pebble_key).expect("write");
    let (directory, management, http_01) = (free_port(), free_port(), free_port());
    let config = serde_json::json!({ "pebble": {
        "listenAddress": format!("127.0.0.1:{directory}"),
        "managementListenAddress": format!("127.0.0.1:{management}"),
        "certificate": d.join("pebble.pem"),
        "privateKey": d.join("pebble.key"),
        "httpPort": http_01,
        "tlsPort": free_port(),
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false,
    }});
    std::fs::write(d.join("pebble.json"), config.to_string()).expect("write");
    let mut ca = tokio::process::Command::new(pebble)
        .arg("-config")
        .arg(d.join("pebble.json"))
        .args(["-strict", "false"])
        // Validate at once, and never reject a good nonce (pebble rejects 5% by default to
        // exercise clients' retries; instant-acme retries, but the test wants no noise).
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start pebble");
    wait_for("pebble's directory", Duration::from_secs(20), async || {
        tokio::net::TcpStream::connect(("127.0.0.1", directory)).await.is_ok()
    })
    .await;

    // The gateway: `localhost` from ACME, answered on the redirect listener pebble checks.
    let up = Upstream::start("a").await;
    let (tls_port, admin_port) = (free_port(), free_port());
    let acme_dir = d.join("acme");
    let acme_entry = format!(
        "[[tls.certificates]]\n\
         server_names = [\"localhost\"]\n\
         cert = \"{cert}\"\n\
         key = \"{key}\"\n\
         [tls.certificates.acme]\n\
         directory = \"https://localhost:{directory}/dir\"\n\
         contact = [\"mailto:ops@example.com\"]\n\
         account = \"{account}\"\n\
         renew_days_before = 30\n\
         directory_ca = \"{ca}\"\n\n[[pools]]",
        cert = acme_dir.join("localhost.pem").display(),
        key = acme_dir.join("localhost.key").display(),
        account = acme_dir.join("account.json").display(),
        ca = d.join("pebble-ca.pem").display(),
    );
    let text = policy_text(
        &[up.addr],
        &[
            ("tls = \"127.0.0.1:8443\"", &format!("tls = \"127.0.0.1:{tls_port}\"")),
            ("redirect = \"127.0.0.1:8080\"", &format!("redirect = \"127.0.0.1:{http_01}\"")),
            ("admin = \"127.0.0.1:9100\"", &format!("admin = \"127.0.0.1:{admin_port}\"")),
            ("reload_interval_ms = 5000", "reload_interval_ms = 200"),
            ("server_names = [\"localhost\", \"127.0.0.1\"]", "server_names = [\"127.0.0.1\"]"),
            ("[[pools]]", &acme_entry),
        ],
    );
    std::fs::write(d.join("gateway.toml"), &text).expect("write policy");
    let mut gateway = tokio::process::Command::new(env!("CARGO_BIN_EXE_rempart-gateway"))
        .arg("serve")
        .arg("--policy")
        .arg(d.join("gateway.toml"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start rempart-gateway");
    let admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();
    wait_for("the gateway's admin listener", Duration::from_secs(20), async || {
        assert!(gateway.try_wait().expect("wait").is_none(), "the gateway exited:\n{text}");
        tokio::net::TcpStream::connect(admin).await.is_ok()
    })
    .await;
    let issued = "rempart_gateway_acme_orders_total{result=\"issued\"} 1";
    wait_for("the ACME certificate", Duration::from_secs(90), async || {
        assert!(gateway.try_wait().expect("wait").is_none(), "the gateway exited:\n{text}");
        assert!(ca.try_wait().expect("wait").is_none(), "pebble exited");
        let failed = "rempart_gateway_acme_orders_total{result=\"failed\"} 0";
        match plain_get(admin, "/metrics").await {
            (200, m) => {
                assert!(m.contains(failed), "an ACME order failed (see the gateway's log)");
                m.contains(issued)
            }
            _ => false,
        }
    })
    .await;

    // The certificate chains to pebble's root (made at its start), and the gateway serves it
    // once the certificate watcher has loaded it.
    let management: SocketAddr = ([127, 0, 0, 1], management).into();
    let (status, root) = https_get(management, &pebble_ca, "/roots/0").await.expect("root");
    assert_eq!(status, 200, "{root}");
    let gateway_tls: SocketAddr = ([127, 0, 0, 1], tls_port).into();
    wait_for("the gateway to serve the ACME certificate", Duration::from_secs(10), async || {
        https_get(gateway_tls, &root, "/v1/chain/get_info").await.is_ok()
    })
    .await;
    let (status, body) = https_get(gateway_tls, &root, "/v1/chain/get_info").await.expect("served");
    assert!((200..500).contains(&status), "{status}: {body}");
    let mode = std::fs::metadata(acme_dir.join("account.json")).expect("account").permissions();
    assert_eq!(mode.mode() & 0o777, 0o600, "the ACME account key is the owner's only");
    let mode = std::fs::metadata(acme_dir.join("localhost.key")).expect("key").permissions();
    assert_eq!(mode.mode() & 0o777, 0o600);
}
