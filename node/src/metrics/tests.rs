use super::*;

#[test]
fn renders_every_value_with_its_role_and_writes_atomically() {
    let m = Metrics::default();
    m.block(7, 7, 3, 120);
    m.block(8, 8, 2, 80);
    m.missed_slots.fetch_add(1, Ordering::Relaxed);
    let text = m.render("producer");
    assert!(text.contains("rempart_node_head_block_num{role=\"producer\"} 8\n"), "{text}");
    assert!(text.contains("rempart_node_transactions_total{role=\"producer\"} 5\n"));
    assert!(text.contains("rempart_node_missed_slots_total{role=\"producer\"} 1\n"));
    assert!(text.contains("rempart_node_block_microseconds_total{role=\"producer\"} 200\n"));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node.prom");
    m.write_file(&path, "producer");
    assert_eq!(std::fs::read_to_string(&path).expect("written"), text);
    assert!(!dir.path().join("node.prom.tmp").exists());
}

#[test]
fn transactions_per_second_covers_the_last_ten_seconds_of_blocks() {
    let m = Metrics::default();
    let t0 = clock::instant();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let tps = |m: &Metrics, s: u64| m.transactions_per_second_at(at(s));
    assert_eq!(tps(&m, 0), 0.0);
    // 40 transactions at t0, then 60 at t0+5 s: 100 in the window, 10 per second.
    m.block_at(at(0), 2, 2, 40, 10);
    m.block_at(at(5), 3, 3, 60, 10);
    assert_eq!(tps(&m, 5), 10.0);
    assert_eq!(tps(&m, 10), 10.0, "a block exactly one window old still counts");
    // Past the window, the first block no longer counts; later, none does.
    assert_eq!(tps(&m, 11), 6.0);
    assert_eq!(tps(&m, 16), 0.0, "an idle chain reads 0");
    // The counter is not a window: it keeps every transaction.
    assert_eq!(m.transactions.load(Ordering::Relaxed), 100);
    // Only the window's blocks are kept, however many came before.
    for i in 0..1000 {
        m.block_at(at(20) + Duration::from_millis(i * 20), 4, 4, 1, 10);
    }
    assert!(m.recent.lock().expect("lock").len() <= 501);
    let text = m.render_at(at(60), "api");
    assert!(text.contains("# TYPE rempart_node_transactions_per_second gauge\n"), "{text}");
    assert!(text.contains("rempart_node_transactions_per_second{role=\"api\"} 0\n"), "{text}");
    m.block_at(at(61), 5, 5, 25, 10);
    let text = m.render_at(at(61), "api");
    assert!(text.contains("rempart_node_transactions_per_second{role=\"api\"} 2.5\n"), "{text}");
}

#[test]
fn each_signer_has_its_readiness_and_failovers_are_counted() {
    let m = Metrics::default();
    assert!(!m.render("producer").contains("rempart_node_signer_ready"), "none before a probe");
    let probe = |endpoint: &str, ready| SignerProbe {
        endpoint: endpoint.into(),
        ready: AtomicU64::new(ready),
    };
    let _ = m.signers.set(vec![probe("unix:/run/a \"b\".sock", 0), probe("10.98.0.3:7010", 1)]);
    m.signer_failovers.fetch_add(2, Ordering::Relaxed);
    m.signer_in_use.store(1, Ordering::Relaxed);
    let text = m.render("producer");
    for line in [
        "rempart_node_signer_ready{role=\"producer\",signer=\"0\",endpoint=\"unix:/run/a \\\"b\\\".sock\"} 0\n",
        "rempart_node_signer_ready{role=\"producer\",signer=\"1\",endpoint=\"10.98.0.3:7010\"} 1\n",
        "rempart_node_signer_failovers_total{role=\"producer\"} 2\n",
        "rempart_node_signer_in_use{role=\"producer\"} 1\n",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
}
