use super::*;
use crate::dev_cert;
use crate::policy::Certificate;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rempart-gw-tls-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

#[test]
fn sni_picks_the_named_certificate_and_falls_back_to_the_first() {
    let dir = temp_dir("sni");
    let (_, a_cert, a_key) = dev_cert::generate(&["a.example"]).expect("gen");
    let (_, b_cert, b_key) = dev_cert::generate(&["b.example", "*.c.example"]).expect("gen");
    let tls = Tls {
        reload_interval: std::time::Duration::from_secs(1),
        session_cache_entries: 16,
        certificates: vec![
            Certificate {
                server_names: vec!["a.example".into()],
                cert: write(&dir, "a.pem", &a_cert),
                key: write(&dir, "a.key", &a_key),
                acme: None,
            },
            Certificate {
                server_names: vec!["b.example".into(), "*.c.example".into()],
                cert: write(&dir, "b.pem", &b_cert),
                key: write(&dir, "b.key", &b_key),
                acme: None,
            },
        ],
    };
    let store = CertStore::load(&provider(), &tls).expect("load");
    let a = store.pick(Some("a.example"));
    let b = store.pick(Some("B.example"));
    assert_ne!(a.cert[0], b.cert[0]);
    assert_eq!(store.pick(Some("x.c.example")).cert[0], b.cert[0]);
    assert_eq!(store.pick(Some("y.x.c.example")).cert[0], a.cert[0]);
    assert_eq!(store.pick(None).cert[0], a.cert[0]);
    assert_eq!(store.pick(Some("other.example")).cert[0], a.cert[0]);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn mismatched_key_and_garbage_are_refused() {
    let dir = temp_dir("bad");
    let (_, a_cert, _) = dev_cert::generate(&["a.example"]).expect("gen");
    let (_, _, b_key) = dev_cert::generate(&["b.example"]).expect("gen");
    let cert = write(&dir, "a.pem", &a_cert);
    let key = write(&dir, "b.key", &b_key);
    let p = provider();
    assert!(matches!(load_certified_key(&p, &cert, &key), Err(TlsError::Mismatch { .. })));
    let junk = write(&dir, "junk.pem", "not a pem file");
    assert!(matches!(load_certified_key(&p, &junk, &key), Err(TlsError::Certificate { .. })));
    assert!(matches!(load_certified_key(&p, &cert, &junk), Err(TlsError::Key { .. })));
    assert!(matches!(
        load_certified_key(&p, &dir.join("missing.pem"), &key),
        Err(TlsError::Certificate { .. })
    ));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn only_forward_secret_aead_suites() {
    let p = provider();
    assert_eq!(p.cipher_suites.len(), 9);
    for s in &p.cipher_suites {
        let name = format!("{:?}", s.suite());
        assert!(name.starts_with("TLS13_") || name.starts_with("TLS_ECDHE_"), "{name}");
        assert!(name.contains("GCM") || name.contains("CHACHA20_POLY1305"), "{name}");
    }
}
