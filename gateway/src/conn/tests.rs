use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn caps_per_client_and_total() {
    let t = Arc::new(ConnTracker::default());
    let a = ClientKey::V4(1);
    let b = ClientKey::V4(2);
    let g1 = t.admit(a, 2, 3).expect("1");
    let g2 = t.admit(a, 2, 3).expect("2");
    assert_eq!(t.admit(a, 2, 3).err(), Some(Refusal::Client));
    let g3 = t.admit(b, 2, 3).expect("3");
    assert_eq!(t.admit(b, 2, 3).err(), Some(Refusal::Total));
    assert_eq!(t.open(), 3);
    drop(g1);
    let _g4 = t.admit(a, 2, 3).expect("freed");
    drop((g2, g3));
    assert_eq!(t.open(), 1);
}

#[tokio::test(start_paused = true)]
async fn idle_connection_times_out_and_active_one_does_not() {
    let (client, server) = tokio::io::duplex(1024);
    let (mut io, _flag, _) =
        EdgeIo::new(server, Duration::from_secs(10), Duration::from_secs(10), None);
    let mut client = client;
    let writer = tokio::spawn(async move {
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            client.write_all(b"x").await.expect("write");
        }
        client
    });
    let mut buf = [0u8; 8];
    for _ in 0..5 {
        assert_eq!(io.read(&mut buf).await.expect("active"), 1);
    }
    let _client = writer.await.expect("join");
    let start = Instant::now();
    let err = io.read(&mut buf).await.expect_err("idle");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert_eq!(start.elapsed(), Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn a_client_that_dribbles_its_reads_is_cut_at_the_send_timeout_one_that_reads_is_not() {
    // The client reads one byte every 5 s: progress well within the idle timeout, but the
    // answer never drains.
    let (mut client, server) = tokio::io::duplex(1024);
    let (mut io, _flag, timed_out) =
        EdgeIo::new(server, Duration::from_secs(60), Duration::from_secs(30), None);
    let reader = tokio::spawn(async move {
        let mut b = [0u8; 1];
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            if client.read(&mut b).await.unwrap_or(0) == 0 {
                return;
            }
        }
    });
    let start = Instant::now();
    let err = io.write_all(&[b'x'; 64 * 1024]).await.expect_err("cut");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert_eq!(start.elapsed(), Duration::from_secs(30));
    assert!(timed_out.load(Ordering::Relaxed));
    drop(io);
    reader.await.expect("reader");

    // A client that reads everything, however long the connection lives, is never cut: the
    // clock restarts whenever the writes have drained.
    let (mut client, server) = tokio::io::duplex(1024);
    let (mut io, _flag, timed_out) =
        EdgeIo::new(server, Duration::from_secs(60), Duration::from_secs(30), None);
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        let mut b = [0u8; 1024];
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            match client.read(&mut b).await {
                Ok(0) | Err(_) => return all.len(),
                Ok(n) => all.extend_from_slice(&b[..n]),
            }
        }
    });
    for _ in 0..20 {
        // 2 KiB each time: two seconds of the client's pace, 40 s in all.
        io.write_all(&[b'y'; 2048]).await.expect("write");
        io.flush().await.expect("flush");
    }
    io.shutdown().await.expect("shutdown");
    drop(io);
    assert_eq!(reader.await.expect("reader"), 20 * 2048);
    assert!(!timed_out.load(Ordering::Relaxed));
}

#[tokio::test]
async fn scanner_flags_through_the_wrapper() {
    let (mut client, server) = tokio::io::duplex(1024);
    let (mut io, flag, _) = EdgeIo::new(
        server,
        Duration::from_secs(10),
        Duration::from_secs(10),
        Some(Scanner::new(8192)),
    );
    client
        .write_all(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 256];
    let n = io.read(&mut buf).await.expect("read");
    assert!(n > 0);
    let f = flag.get().expect("flagged");
    assert_eq!(f.request, 0);
}

/// Counts the writes that reach the stream beneath the wrapper.
#[derive(Default)]
struct CountingWriter {
    writes: usize,
    bytes: Vec<u8>,
}

impl AsyncWrite for CountingWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.writes += 1;
        this.bytes.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Flushes `io`, counting the times the flush returned `Pending` (scheduler passes held).
async fn flush_counting_passes(io: &mut EdgeIo<CountingWriter>) -> u32 {
    let mut pending = 0;
    std::future::poll_fn(|cx| match Pin::new(&mut *io).poll_flush(cx) {
        Poll::Pending => {
            pending += 1;
            Poll::Pending
        }
        Poll::Ready(r) => Poll::Ready(r),
    })
    .await
    .expect("flush");
    pending
}

// Paused, the clock stays still: the count of passes, not MAX_HOLD, ends the hold.
#[tokio::test(start_paused = true)]
async fn a_flush_waits_longer_for_streams_still_without_answer_but_not_forever() {
    let awaiting = Awaiting::default();
    let (io, _flag, _) = EdgeIo::new(
        CountingWriter::default(),
        Duration::from_secs(10),
        Duration::from_secs(10),
        None,
    );
    let mut io = io.coalescing(awaiting.clone());

    // No stream waits: the flush is held for one pass, then written in one write.
    io.write_all(b"first").await.expect("write");
    io.write_all(b" answer").await.expect("write");
    assert_eq!(flush_counting_passes(&mut io).await, 1);
    assert_eq!((io.inner.writes, io.inner.bytes.as_slice()), (1, b"first answer".as_slice()));

    // A stream still waits (and never answers): held for the most passes, then written.
    let waiting = awaiting.start();
    io.write_all(b", second").await.expect("write");
    assert_eq!(flush_counting_passes(&mut io).await, MAX_HOLD_PASSES);
    assert_eq!(
        (io.inner.writes, io.inner.bytes.as_slice()),
        (2, b"first answer, second".as_slice())
    );

    // Its answer ready, the next flush is back to one pass.
    drop(waiting);
    assert_eq!(awaiting.count(), 0);
    io.write_all(b".").await.expect("write");
    assert_eq!(flush_counting_passes(&mut io).await, 1);
    assert_eq!(io.inner.writes, 3);
}
