use std::path::Path;

use rempart_core::key::{KeyType, PrivateKey};
use rempart_core::{BlockTimestamp, Name};

use super::*;
use crate::guard::{Guard, GuardKey};
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::server::testing::{policy_text, ring};

struct Fixture {
    _dir: tempfile::TempDir,
    service: Service,
    key: PublicKey,
}

fn fixture(min_interval_ms: u64) -> Fixture {
    let private = PrivateKey::generate(KeyType::K1);
    let key = private.public_key();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[keosd_compat]\ndangerous_bare_digests = true\nunix_socket = \"/unused-keosd.sock\"\n\
         keys = [\"{key}\"]\nmin_interval_ms = {min_interval_ms}\n"
    );
    let text = policy_text(dir.path(), &key, &extra);
    let policy = Policy::from_toml(Path::new("/t/signer.toml"), &text).unwrap();
    let gkey = GuardKey { chain_id: policy.chain_id, producer: Name::from_const("eosio"), key };
    Guard::new(dir.path()).init(&gkey, 0, BlockTimestamp(0)).unwrap();
    let config = policy.keosd_compat.clone().expect("[keosd_compat]");
    let metrics = Arc::new(Metrics::default());
    let signer = Signer::new(policy, ring(vec![private], &metrics), metrics).unwrap();
    Fixture { service: Service::new(Arc::new(signer), &config), _dir: dir, key }
}

fn body(digest: &Checksum256, key: &PublicKey) -> Vec<u8> {
    format!("[\"{digest}\",\"{key}\"]").into_bytes()
}

fn name(answer: &Answer) -> String {
    let v: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    v["error"]["name"].as_str().unwrap_or("").to_owned()
}

#[test]
fn signs_replays_and_keeps_the_interval() {
    let f = fixture(60_000);
    let d1 = Checksum256::hash(b"block 1");
    let a = f.service.sign_digest(&body(&d1, &f.key), "test");
    assert_eq!(a.status, 200, "{}", a.body);
    let sig: Signature = serde_json::from_str::<String>(&a.body).unwrap().parse().unwrap();
    assert_eq!(sig.recover(&d1).unwrap(), f.key);
    assert_eq!(f.service.sign_digest(&body(&d1, &f.key), "test"), a, "a retry gets the same");
    let d2 = Checksum256::hash(b"block 2");
    let refused = f.service.sign_digest(&body(&d2, &f.key), "test");
    assert_eq!((refused.status, name(&refused).as_str()), (403, "keosd_too_soon"));
    assert_eq!(f.service.signer().metrics().refusals("keosd_too_soon"), 1);
    assert_eq!(
        f.service.signer().metrics().digest_signatures.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn a_pause_stops_it() {
    let f = fixture(0);
    f.service.signer().set_paused(true);
    let d = Checksum256::hash(b"block");
    let a = f.service.sign_digest(&body(&d, &f.key), "test");
    assert_eq!((a.status, name(&a).as_str()), (403, "paused"));
    f.service.signer().set_paused(false);
    assert_eq!(f.service.sign_digest(&body(&d, &f.key), "test").status, 200);
}

#[test]
fn request_heads_are_read_strictly() {
    let ok = b"POST /v1/wallet/sign_digest HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    let head = parse_head(ok).unwrap().unwrap();
    assert_eq!(
        head,
        Head {
            method: "POST".into(),
            path: PATH.into(),
            content_length: Some(5),
            close: false,
            head_len: ok.len() - 5,
        }
    );
    for cut in 0..ok.len() - 5 {
        assert_eq!(parse_head(&ok[..cut]), Ok(None), "prefix of {cut}");
    }
    let old = parse_head(b"POST / HTTP/1.0\r\n\r\n").unwrap().unwrap();
    assert!(old.close, "HTTP/1.0 closes unless asked otherwise");
    let close = parse_head(b"POST / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap().unwrap();
    assert!(close.close);
    let refused = |wire: &[u8]| parse_head(wire).expect_err("refused").status;
    assert_eq!(refused(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), 411);
    assert_eq!(refused(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), 400);
    assert_eq!(refused(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"), 400);
    assert_eq!(refused(b"POST / HTTP/1.1\r\nBad Header\r\n\r\n"), 400);
    let mut long = b"POST / HTTP/1.1\r\nX: ".to_vec();
    long.extend(std::iter::repeat_n(b'a', MAX_HEAD));
    assert_eq!(refused(&long), 413);
}
