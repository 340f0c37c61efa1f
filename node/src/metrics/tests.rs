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
