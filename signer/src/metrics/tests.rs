use super::*;

#[test]
fn render_has_counters_refusals_and_histograms() {
    let m = Metrics::default();
    m.signatures.fetch_add(3, Ordering::Relaxed);
    m.refused("double_sign");
    m.refused("double_sign");
    m.refused("wrong_chain");
    m.hsm_latency.observe(Duration::from_micros(300));
    m.hsm_latency.observe(Duration::from_millis(3));
    let text = m.render();
    assert!(text.contains("rempart_signer_signatures_total 3"));
    assert!(text.contains("rempart_signer_refusals_total{reason=\"double_sign\"} 2"));
    assert!(text.contains("rempart_signer_refusals_total{reason=\"wrong_chain\"} 1"));
    assert!(text.contains("rempart_signer_hsm_seconds_bucket{le=\"0.00025\"} 0"));
    assert!(text.contains("rempart_signer_hsm_seconds_bucket{le=\"0.0005\"} 1"));
    assert!(text.contains("rempart_signer_hsm_seconds_bucket{le=\"+Inf\"} 2"));
    assert!(text.contains("rempart_signer_hsm_seconds_count 2"));
    assert_eq!(m.refusals("double_sign"), 2);
}
