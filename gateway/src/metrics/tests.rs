use super::*;

#[test]
fn renders_counters_histogram_and_gauges() {
    let m = Metrics::default();
    m.request("read", 200, Fault::None, Duration::from_millis(3));
    m.request("read", 200, Fault::None, Duration::from_millis(30));
    m.request("read", 502, Fault::Upstream, Duration::from_millis(1));
    m.limited("read", "client");
    m.refused("client_cap");
    m.slow_reader("stream_timeout");
    m.reload("policy", "rejected");
    let text = m.render(&Gauges {
        connections_open: 3,
        tracked_clients: 7,
        limiter_overflowed: 0,
        banned: 0,
        send_waiting_bytes: 65536,
        nodes: vec![NodeGauge {
            pool: "api".into(),
            node: "127.0.0.1:1".into(),
            up: true,
            in_flight: 2,
            head_block: 9,
        }],
        certificates: vec![
            ("api.example".into(), Some(86_400.0)),
            ("odd\"name".into(), Some(-5.0)),
            ("no.end".into(), None),
        ],
    });
    for want in [
        "rempart_gateway_requests_total{class=\"read\",status=\"200\",fault=\"none\"} 2",
        "rempart_gateway_requests_total{class=\"read\",status=\"502\",fault=\"upstream\"} 1",
        "rempart_gateway_limited_total{class=\"read\",scope=\"client\"} 1",
        "rempart_gateway_slow_readers_total{reason=\"stream_timeout\"} 1",
        "rempart_gateway_send_waiting_bytes 65536",
        "rempart_gateway_request_duration_seconds_bucket{class=\"read\",le=\"0.005\"} 2",
        "rempart_gateway_request_duration_seconds_bucket{class=\"read\",le=\"+Inf\"} 3",
        "rempart_gateway_connections_open 3",
        "rempart_gateway_connections_refused_total{reason=\"client_cap\"} 1",
        "rempart_gateway_upstream_up{pool=\"api\",node=\"127.0.0.1:1\"} 1",
        "rempart_gateway_reloads_total{what=\"policy\",result=\"rejected\"} 1",
        "rempart_gateway_certificate_expiry_seconds{name=\"api.example\"} 86400",
        "rempart_gateway_certificate_expiry_seconds{name=\"odd\\\"name\"} -5",
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
    assert!(!text.contains("no.end"), "a certificate without an end is not reported");
    assert_eq!(m.reloads("policy", "rejected"), 1);
}

#[test]
fn counts_of_every_worker_are_merged() {
    let m = Metrics::new(2);
    std::thread::scope(|s| {
        for worker in 0..2 {
            let m = &m;
            s.spawn(move || {
                upstream::set_worker(worker);
                m.request("read", 200, Fault::None, Duration::from_millis(3));
                m.request("write", 429, Fault::Downstream, Duration::from_millis(30));
            });
        }
    });
    let text = m.render(&Gauges::default());
    for want in [
        "rempart_gateway_requests_total{class=\"read\",status=\"200\",fault=\"none\"} 2",
        "rempart_gateway_requests_total{class=\"write\",status=\"429\",fault=\"downstream\"} 2",
        "rempart_gateway_request_duration_seconds_bucket{class=\"read\",le=\"0.005\"} 2",
        "rempart_gateway_request_duration_seconds_bucket{class=\"write\",le=\"0.025\"} 0",
        "rempart_gateway_request_duration_seconds_count{class=\"write\"} 2",
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
}
