use super::*;

/// A certificate made by rcgen valid until `(y, m, d)` 12:34:56 UTC.
fn cert_until(y: i32, m: u8, d: u8) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::new(vec!["a.example".to_owned()]).expect("params");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after =
        rcgen::date_time_ymd(y, m, d) + Duration::from_secs(12 * 3600 + 34 * 60 + 56);
    let key = rcgen::KeyPair::generate().expect("key");
    params.self_signed(&key).expect("cert").der().to_vec()
}

fn unix(days: u64, secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(days * 86_400 + secs)
}

#[test]
fn the_end_of_validity_is_read_from_the_certificate() {
    let at = 12 * 3600 + 34 * 60 + 56;
    // UTCTime up to 2049, GeneralizedTime from 2050 (RFC 5280).
    assert_eq!(not_after(&cert_until(2026, 3, 1)), Some(unix(20_513, at)));
    assert_eq!(not_after(&cert_until(2049, 12, 31)), Some(unix(29_219, at)));
    assert_eq!(not_after(&cert_until(2050, 1, 1)), Some(unix(29_220, at)));
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    // Anything else is no answer, never a panic.
    let good = cert_until(2030, 6, 15);
    for cut in 0..good.len() {
        let _ = not_after(&good[..cut]);
    }
    assert_eq!(not_after(b"\x30\x84\xff\xff\xff\xff"), None);
    assert_eq!(not_after(&[]), None);
}

#[test]
fn placeholders_are_written_once_and_are_due_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let acme = Acme {
        directory: "https://ca.invalid/dir".into(),
        contact: vec![],
        account: dir.path().join("account.json"),
        renew_before: Duration::from_secs(86_400),
        directory_ca: None,
    };
    let tls = Tls {
        reload_interval: Duration::from_secs(1),
        session_cache_entries: 1,
        certificates: vec![Certificate {
            server_names: vec!["api.example".into()],
            cert: dir.path().join("tls/api.pem"),
            key: dir.path().join("tls/api.key"),
            acme: Some(acme.clone()),
        }],
    };
    assert_eq!(placeholders(&tls).expect("written"), 1);
    let c = &tls.certificates[0];
    let mode = std::fs::metadata(&c.key).expect("key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key is the owner's only");
    let left = expires_in(&c.cert).expect("readable");
    assert!(left <= acme.renew_before, "a placeholder is renewed at once: {left:?}");
    // The gateway can load it.
    let provider = crate::tls::provider();
    crate::tls::CertStore::load(&provider, &tls).expect("the placeholder loads");
    // Existing files are never replaced.
    let before = std::fs::read(&c.cert).expect("read");
    assert_eq!(placeholders(&tls).expect("nothing to write"), 0);
    assert_eq!(std::fs::read(&c.cert).expect("read"), before);
}

#[test]
fn challenges_answer_only_the_tokens_in_progress() {
    let c = Challenges::default();
    c.put("tok1", "tok1.thumb");
    assert_eq!(c.answer("tok1").as_deref(), Some("tok1.thumb"));
    assert_eq!(c.answer("tok2"), None);
    c.remove(&["tok1".to_owned()]);
    assert_eq!(c.answer("tok1"), None);
}
