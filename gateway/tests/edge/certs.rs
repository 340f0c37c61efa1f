//! Certificates are reloaded when their files change; a broken pair keeps the old one serving.

use std::time::Duration;

use rempart_gateway::dev_cert;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_certificates_are_served_and_broken_ones_refused() {
    let up = Upstream::start("a").await;
    let dir = std::env::temp_dir().join(format!("rempart-gw-certs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::copy(repo().join("certs/server.pem"), &cert).expect("copy");
    std::fs::copy(repo().join("certs/server.key"), &key).expect("copy");
    let text = policy_text(&[up.addr], &[("reload_interval_ms = 5000", "reload_interval_ms = 50")])
        .replace(
            &repo().join("certs/server.pem").display().to_string(),
            &cert.display().to_string(),
        )
        .replace(
            &repo().join("certs/server.key").display().to_string(),
            &key.display().to_string(),
        );
    let gw = Gateway::start(&text).await;
    let old_ca = client_config(&[b"http/1.1"]);
    tls_connect(gw.tls, old_ca.clone()).await.expect("dev CA accepted");

    let (ca2, cert2, key2) = dev_cert::generate(&["localhost"]).expect("generate");
    std::fs::write(&key, key2).expect("write key");
    std::fs::write(&cert, cert2).expect("write cert");
    let new_ca = client_config_trusting(&ca2);
    wait_for("new certificate served", Duration::from_secs(5), async || {
        tls_connect(gw.tls, new_ca.clone()).await.is_ok()
    })
    .await;
    assert!(tls_connect(gw.tls, old_ca).await.is_err(), "old certificate still served");

    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        .expect("write");
    wait_for("broken pair refused", Duration::from_secs(5), async || {
        gw.metric("rempart_gateway_reloads_total{what=\"certificates\",result=\"rejected\"}").await
            >= 1.0
    })
    .await;
    tls_connect(gw.tls, new_ca).await.expect("previous certificate still served");
    gw.stop().await;
    std::fs::remove_dir_all(dir).ok();
}

/// An ACME CA that cannot be reached: the gateway starts on a placeholder for the ACME names,
/// counts the failed order, and serves everything else as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_acme_ca_leaves_the_gateway_serving_on_a_placeholder() {
    let up = Upstream::start("a").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let closed = free_port();
    let entry = format!(
        "[[tls.certificates]]\nserver_names = [\"acme.test\"]\n\
         cert = \"{cert}\"\nkey = \"{key}\"\n[tls.certificates.acme]\n\
         directory = \"https://127.0.0.1:{closed}/dir\"\ncontact = []\n\
         account = \"{account}\"\nrenew_days_before = 30\n\n[[pools]]",
        cert = dir.path().join("acme.pem").display(),
        key = dir.path().join("acme.key").display(),
        account = dir.path().join("account.json").display(),
    );
    let gw = Gateway::start(&policy_text(&[up.addr], &[("[[pools]]", &entry)])).await;
    wait_for("the failed order", Duration::from_secs(20), async || {
        gw.metric("rempart_gateway_acme_orders_total{result=\"failed\"}").await >= 1.0
    })
    .await;
    assert_eq!(gw.metric("rempart_gateway_acme_orders_total{result=\"issued\"}").await, 0.0);
    assert!(dir.path().join("acme.pem").exists(), "the placeholder is in place");
    assert!(!dir.path().join("account.json").exists(), "no account without a CA");
    let mut c = Client::connect(gw.tls, true).await;
    assert_eq!(c.post("/v1/chain/get_info", "{}").await.status, 200);
    gw.stop().await;
}

/// Each certificate in service reports the seconds it has left, so that an alert fires before
/// a renewal that keeps failing (certbot's or the gateway's own) lets it expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_certificate_reports_the_time_it_has_left() {
    let up = Upstream::start("a").await;
    let gw = Gateway::start(&policy_text(&[up.addr], &[])).await;
    let left = rempart_gateway::acme::expires_in(&repo().join("certs/server.pem"))
        .expect("the development certificate's end")
        .as_secs_f64();
    assert!(left > 0.0, "the development certificate has expired: run `rempart-gateway dev-cert`");
    let reported =
        gw.metric("rempart_gateway_certificate_expiry_seconds{name=\"localhost\"}").await;
    assert!((reported - left).abs() < 60.0, "reported {reported}, the file says {left}");
    gw.stop().await;
}
