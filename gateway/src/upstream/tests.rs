use std::time::Duration;

use super::*;

fn pool(balancing: Balancing, n: u16) -> Pool {
    capped(balancing, n, 1000)
}

/// A pool whose nodes each take at most `cap` requests at once.
fn capped(balancing: Balancing, n: u16, cap: usize) -> Pool {
    let cfg = policy::Pool {
        name: "api".into(),
        nodes: (0..n).map(|i| SocketAddr::from(([127, 0, 0, 1], 10_000 + i))).collect(),
        balancing,
        connect_timeout: Duration::from_millis(100),
        max_attempts: 2,
        health_interval: Duration::from_secs(1),
        health_timeout: Duration::from_millis(500),
        max_head_age: Duration::from_secs(10),
        max_lag_blocks: 5,
        eject_base: Duration::from_secs(1),
        eject_max: Duration::from_secs(8),
        max_idle_per_node: 4,
        max_in_flight_per_node: cap,
        queue_timeout: Duration::from_millis(200),
    };
    Pool::new(&cfg, None, 1)
}

impl<'a> Pick<'a> {
    /// The node chosen and its count, or a panic naming what was found instead.
    fn expect(self, what: &str) -> (usize, InFlight<'a>) {
        match self {
            Pick::Node(i, g) => (i, g),
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn round_robin_spreads_evenly_and_skips_tried() {
    let p = pool(Balancing::RoundRobin, 3);
    let mut counts = [0; 3];
    for _ in 0..30 {
        let (i, _g) = p.pick(&[]).expect("node");
        counts[i] += 1;
    }
    assert_eq!(counts, [10, 10, 10]);
    for _ in 0..10 {
        let (i, _g) = p.pick(&[0, 2]).expect("node");
        assert_eq!(i, 1);
    }
    assert!(matches!(p.pick(&[0, 1, 2]), Pick::NoNode));
}

#[test]
fn least_connections_prefers_idle_nodes() {
    let p = pool(Balancing::LeastConnections, 3);
    let (a, ga) = p.pick(&[]).expect("a");
    let (b, gb) = p.pick(&[]).expect("b");
    let (c, _gc) = p.pick(&[]).expect("c");
    assert_ne!(a, b);
    assert!(c != a && c != b);
    drop(gb);
    let (d, _gd) = p.pick(&[]).expect("d");
    assert_eq!(d, b);
    drop(ga);
}

#[test]
fn failure_ejects_with_backoff_and_success_resets() {
    let p = pool(Balancing::RoundRobin, 2);
    p.failure(0);
    assert!(!p.is_up(0));
    for _ in 0..10 {
        assert_eq!(p.pick(&[]).expect("node").0, 1);
    }
    let until = p.nodes[0].ejected_until_ms.load(Ordering::Relaxed);
    let span1 = until - now_ms();
    assert!(span1 <= 1000 && span1 > 900, "{span1}");
    p.failure(0);
    let span2 = p.nodes[0].ejected_until_ms.load(Ordering::Relaxed) - now_ms();
    assert!(span2 > 1900 && span2 <= 2000, "{span2}");
    for _ in 0..10 {
        p.failure(0);
    }
    let span = p.nodes[0].ejected_until_ms.load(Ordering::Relaxed) - now_ms();
    assert!(span <= 8000 && span > 7900, "{span}");
    p.success(0);
    assert_eq!(p.nodes[0].failures.load(Ordering::Relaxed), 0);
}

#[test]
fn reload_keeps_node_state() {
    let p = pool(Balancing::RoundRobin, 2);
    p.failure(1);
    let q = Pool::new(&p.config, Some(&p), 2);
    assert!(!q.is_up(1));
    assert!(Arc::ptr_eq(&p.nodes[1], &q.nodes[1]));
    // A place freed by a request of the replaced pool wakes requests queued in the new one.
    assert!(Arc::ptr_eq(&p.queue, &q.queue));
}

#[test]
fn head_info_parses_nodeos_times() {
    let info = parse_head_info(
        br#"{"head_block_num":42,"head_block_time":"2024-01-01T00:00:50.500","chain_id":"x"}"#,
    )
    .expect("info");
    assert_eq!(info.head_block_num, 42);
    assert_eq!(info.head_block_time_ms, 1_704_067_250_500);
    assert_eq!(parse_block_time_ms("1970-01-01T00:00:00"), Some(0));
    assert_eq!(parse_block_time_ms("2000-02-29T12:00:00.000Z"), Some(951_825_600_000));
    assert!(parse_block_time_ms("2024-13-01T00:00:00").is_none());
    assert!(parse_block_time_ms("yesterday").is_none());
    assert!(parse_head_info(br#"{"head_block_num":"x"}"#).is_err());
}

#[test]
fn nodes_at_their_cap_are_passed_over_then_the_pool_is_busy() {
    for balancing in [Balancing::RoundRobin, Balancing::LeastConnections] {
        let p = capped(balancing, 2, 2);
        let mut held: Vec<_> = (0..4).map(|_| p.pick(&[]).expect("below the cap")).collect();
        assert_eq!(p.nodes[0].in_flight() + p.nodes[1].in_flight(), 4);
        assert!(matches!(p.pick(&[]), Pick::Busy), "{balancing:?}");
        // A node out of the pool does not make it busy: only nodes that could serve count.
        p.failure(0);
        p.failure(1);
        assert!(matches!(p.pick(&[]), Pick::NoNode));
        p.nodes[0].ejected_until_ms.store(0, Ordering::Relaxed);
        p.nodes[1].ejected_until_ms.store(0, Ordering::Relaxed);
        let on_1 = held.iter().position(|(i, _)| *i == 1).expect("one on node 1");
        drop(held.remove(on_1));
        assert_eq!(p.pick(&[]).expect("a place freed").0, 1);
        drop(held);
    }
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_takes_the_first_place_freed_or_gives_up_at_the_queue_timeout() {
    let p = std::sync::Arc::new(capped(Balancing::LeastConnections, 1, 1));
    let (_, held) = p.pick(&[]).expect("the only place");
    // Nothing frees: busy after exactly the queue timeout.
    let start = tokio::time::Instant::now();
    assert!(matches!(p.pick_queued(&[]).await, Pick::Busy));
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    // Freed after 50 ms: the queued request gets the place then.
    let q = p.clone();
    let waiter = tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let got = matches!(q.pick_queued(&[]).await, Pick::Node(0, _));
        (got, start.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(held);
    let (got, waited) = waiter.await.expect("task");
    assert!(got);
    assert_eq!(waited, Duration::from_millis(50));
    assert_eq!(p.nodes[0].in_flight(), 0, "the waiter's place was released with it");
    assert_eq!(p.queue.waiting.load(Ordering::Relaxed), 0);
}
