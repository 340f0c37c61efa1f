//! The keosd-compatible `sign_digest` endpoint of the real, sandboxed `rempart-signer`, asked
//! by curl the way nodeos's KEOSD signature provider asks: `POST /v1/wallet/sign_digest` with
//! `["<digest hex>", "<public key>"]`, over its Unix socket and over TCP with keep-alive.

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use rempart_core::checksum::Checksum256;
use rempart_core::key::{PublicKey, Signature};

/// A key that is valid but not the producer's (the public key of WIF 5HpHagT65TZzG1PH3CSu63k8DbpvD8s5ip4nEB3kEsreAnchuDf).
const OTHER_PUB: &str = "EOS859gxfnXyUriMgUeThh1fWv3oqcpLFyHa3TfFYC4PK2HqhToVM";
const MIN_INTERVAL_MS: u64 = 300;

fn keosd_setup() -> (Setup, u16) {
    let port = free_port();
    let extra = format!(
        "[keosd_compat]\ndangerous_bare_digests = true\nunix_socket = \"keosd.sock\"\n\
         tcp = \"127.0.0.1:{port}\"\nkeys = [\"{DEV_PUB}\"]\nmin_interval_ms = {MIN_INTERVAL_MS}\n\
         [metrics]\nfile = \"state/metrics.prom\""
    );
    (setup_in(None, None, DEV_PUB, &sandbox_toml(&[]), &extra), port)
}

/// curl's answer to a POST of `body` to `path` over `socket`: (status, body).
fn curl(socket: &std::path::Path, path: &str, body: &str, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["--silent", "--max-time", "10", "--unix-socket"])
        .arg(socket)
        .args(["--header", "Content-Type: application/json", "--data-binary", body])
        .args(["--write-out", "\n%{http_code}"])
        .args(extra)
        .arg(format!("http://localhost{path}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("status line");
    (status.parse().expect("status"), body.to_owned())
}

fn digest(n: u8) -> Checksum256 {
    Checksum256::hash(&[n; 8])
}

fn ask(socket: &std::path::Path, d: &Checksum256, key: &str) -> (u16, String) {
    curl(socket, "/v1/wallet/sign_digest", &format!("[\"{d}\",\"{key}\"]"), &[])
}

fn signature(body: &str) -> Signature {
    let text: String = serde_json::from_str(body).expect("a JSON string");
    text.parse().expect("a signature")
}

#[test]
fn nodeos_shaped_requests_are_signed_checked_and_audited() {
    if !ci() && which("curl").is_none() {
        eprintln!("SKIPPED: curl is not installed");
        return;
    }
    let (s, tcp_port) = keosd_setup();
    s.guard_init();
    let mut d = s.spawn(&[]);
    d.wait_line("serving chain", Duration::from_secs(20));
    let socket = s.dir.path().join("keosd.sock");
    let key: PublicKey = DEV_PUB.parse().unwrap();

    // The first digest: a canonical signature by the producer's key. The signer records when
    // it signed somewhere between these two instants, so the interval it measures is at most
    // the time since `sent_first`: the bound both checks below need.
    let sent_first = Instant::now();
    let (status, body) = ask(&socket, &digest(1), DEV_PUB);
    assert_eq!(status, 200, "{body}");
    let first = signature(&body);
    assert_eq!(first.recover(&digest(1)).unwrap(), key);
    assert!(first.is_canonical());

    // The same digest again (nodeos retrying), by the key's legacy name: the same signature.
    let legacy = key.to_legacy_string().unwrap();
    let (status, body) = ask(&socket, &digest(1), &legacy);
    assert_eq!((status, signature(&body)), (200, first), "{body}");

    // Another digest before min_interval_ms: refused, keosd-shaped.
    let (status, body) = ask(&socket, &digest(2), DEV_PUB);
    let too_soon = sent_first.elapsed() < Duration::from_millis(MIN_INTERVAL_MS);
    if too_soon {
        assert_eq!(status, 403, "{body}");
        let err: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(err["code"], 403);
        assert_eq!(err["error"]["name"], "keosd_too_soon");
        assert!(
            err["error"]["details"][0]["message"].as_str().unwrap().contains("min_interval_ms")
        );
    }
    // …and signed once the interval has passed.
    let mut answer = (0, String::new());
    wait_for("the interval to pass", Duration::from_secs(5), || {
        answer = ask(&socket, &digest(2), DEV_PUB);
        answer.0 == 200
    });
    assert!(sent_first.elapsed() >= Duration::from_millis(MIN_INTERVAL_MS));
    assert_eq!(signature(&answer.1).recover(&digest(2)).unwrap(), key);

    // Refusals: a key not enabled, bad bodies, other methods and paths, chunked bodies.
    let (status, body) = ask(&socket, &digest(3), OTHER_PUB);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("keosd_key_not_enabled"), "{body}");
    for bad in ["{}", "[\"00\",\"PUB_K1_x\"]", "[1,2]", "not json", "[\"zz\", \"EOS1\"]"] {
        let (status, body) = curl(&socket, "/v1/wallet/sign_digest", bad, &[]);
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("bad_request"), "{bad}: {body}");
    }
    let (status, _) = curl(&socket, "/v1/wallet/list_keys", "[]", &[]);
    assert_eq!(status, 404);
    let (status, _) = curl(&socket, "/v1/wallet/sign_digest", "", &["--get"]);
    assert_eq!(status, 405);
    let (status, _) = curl(
        &socket,
        "/v1/wallet/sign_digest",
        &format!("[\"{}\",\"{DEV_PUB}\"]", digest(4)),
        &["--header", "Transfer-Encoding: chunked"],
    );
    assert_eq!(status, 411);

    // Over TCP: two requests on one kept-alive connection (how nodeos's client reuses one).
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", tcp_port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for _ in 0..2 {
        let body = format!("[\"{}\",\"{DEV_PUB}\"]", digest(2));
        let req = format!(
            "POST /v1/wallet/sign_digest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: \
             application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(req.as_bytes()).unwrap();
        let (status, body) = read_response(&mut conn);
        assert_eq!(status, 200, "{body}");
        assert_eq!(signature(&body).recover(&digest(2)).unwrap(), key);
    }

    // Counted and audited, with the peer; the audit chain verifies.
    wait_for("the metrics file to count both", Duration::from_secs(5), || {
        s.metric("rempart_signer_digest_signatures_total") == Some(2)
    });
    d.terminate();
    let log = std::fs::read_to_string(s.audit_log()).unwrap();
    let digests: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == "digest_signature")
        .collect();
    assert_eq!(digests.len(), 5, "two new, three repeated:\n{log}");
    assert_eq!(digests.iter().filter(|v| v["replay"] == false).count(), 2);
    assert!(digests.iter().any(|v| v["peer"].as_str().unwrap().starts_with("tcp:127.0.0.1:")));
    assert!(digests.iter().any(|v| v["peer"].as_str().unwrap().starts_with("unix:uid=")));
    assert!(log.contains("\"reason\":\"keosd_too_soon\"") || !too_soon);
    assert!(log.contains("\"reason\":\"keosd_key_not_enabled\""));
    let verify = Command::new(BIN).args(["audit", "verify"]).arg(s.audit_log()).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
}

/// One HTTP/1.1 response with a Content-Length body: (status, body).
fn read_response(conn: &mut std::net::TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).unwrap();
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(head.contains("Connection: keep-alive"), "{head}");
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).unwrap();
    (status, String::from_utf8(body).unwrap())
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|p| p.is_file()))
}

#[test]
fn the_endpoint_is_refused_unless_the_policy_says_it_signs_bare_digests() {
    let (s, _) = keosd_setup();
    let (key_from, key_to) =
        (format!("keys = [\"{DEV_PUB}\"]"), format!("keys = [\"{OTHER_PUB}\"]"));
    assert_check_refuses(
        &s.policy,
        Some("[keosd_compat]"),
        &[
            (
                "dangerous_bare_digests = true",
                "dangerous_bare_digests = false",
                "dangerous_bare_digests = true",
            ),
            (&key_from, &key_to, "no [[producers]] key"),
            ("keys = [", "keys = [] #", "keys is empty"),
            ("min_interval_ms = 300", "min_interval_ms = 70000", "0..=60000"),
            ("unix_socket = \"keosd.sock\"", "unix_socket = \"signer.sock\"", "[listen]'s socket"),
        ],
    );
}
