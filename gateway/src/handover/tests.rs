use std::os::unix::net::UnixListener as StdUnixListener;

use tokio::net::TcpListener;

use super::*;
use crate::server::Listeners;

async fn listeners() -> Listeners {
    let bind = async || TcpListener::bind("127.0.0.1:0").await.expect("bind");
    Listeners { tls: bind().await, redirect: Some(bind().await), admin: bind().await }
}

/// `receive` blocks: it runs on the blocking pool, as it would before the runtime serves.
async fn receive_off_thread(path: &Path) -> Result<(Vec<Received>, Predecessor), HandoverError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || receive(&path)).await.expect("join")
}

#[tokio::test]
async fn a_successor_gets_every_listening_socket_then_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("handover.sock");
    let l = listeners().await;
    let socket = HandoverSocket::bind(&path).expect("bind");
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the handover socket is the owner's only");
    let bans = Arc::new(Bans::new(10));
    let banned = ClientKey::V4(0x7f00_0002);
    assert_eq!(bans.restore([(banned, Duration::from_secs(300))]), 1);
    let offering =
        tokio::spawn(socket.serve(Sockets::of(&l).expect("dup"), bans, Serving::default()));

    let (received, mut predecessor) = receive_off_thread(&path).await.expect("receive");
    let carried = predecessor.take_bans();
    assert_eq!(carried.len(), 1, "the ban is carried");
    assert_eq!(carried[0].0, banned);
    assert!(carried[0].1 > Duration::from_secs(290) && carried[0].1 <= Duration::from_secs(300));
    let got: Vec<(Role, SocketAddr)> = received.iter().map(|r| (r.role, r.addr)).collect();
    let want = [
        (Role::Tls, l.tls.local_addr().unwrap()),
        (Role::Redirect, l.redirect.as_ref().unwrap().local_addr().unwrap()),
        (Role::Admin, l.admin.local_addr().unwrap()),
    ];
    assert_eq!(got, want);
    assert_eq!(predecessor.pid(), std::process::id());

    // The very socket: a connection to the old listener is accepted from the received one.
    let tls = received.into_iter().next().expect("tls").listener;
    tls.set_nonblocking(true).expect("nonblocking");
    let tls = TcpListener::from_std(tls).expect("tokio listener");
    let client = tokio::net::TcpStream::connect(l.tls.local_addr().unwrap()).await.expect("c");
    let (accepted, peer) = tls.accept().await.expect("accept on the received socket");
    assert_eq!(peer, client.local_addr().unwrap());
    drop(accepted);

    // The old side ends once the new one serves, and gives up the path to it.
    let next = predecessor.complete().await.expect("complete");
    assert_eq!(offering.await.expect("join"), std::process::id());
    assert_eq!(next.path(), path);
    let stream = StdUnixStream::connect(&path).expect("the successor answers on the path");
    drop(stream);
}

#[tokio::test]
async fn failed_attempts_leave_the_sockets_on_offer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("handover.sock");
    let l = listeners().await;
    let socket = HandoverSocket::bind(&path).expect("bind");
    let offering = tokio::spawn(socket.serve(
        Sockets::of(&l).unwrap(),
        Arc::new(Bans::new(10)),
        Serving::default(),
    ));

    // Someone speaking another protocol.
    let mut stranger = UnixStream::connect(&path).await.expect("connect");
    stranger.write_all(b"GET / HTTP/1.1\r\n\r\n").await.expect("write");
    // Closed (reset, as its last bytes are left unread) without a byte in answer.
    let mut rest = Vec::new();
    match stranger.read_to_end(&mut rest).await {
        Ok(_) => assert!(rest.is_empty(), "nothing is offered to a stranger"),
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
    }

    // A successor that takes the sockets and dies before serving.
    let (received, predecessor) = receive_off_thread(&path).await.expect("receive");
    assert_eq!(received.len(), 3);
    drop((received, predecessor));

    // The old listeners still accept, and a real successor still gets everything.
    let client = tokio::net::TcpStream::connect(l.tls.local_addr().unwrap()).await.expect("c");
    let (_, peer) = l.tls.accept().await.expect("the old gateway still accepts");
    assert_eq!(peer, client.local_addr().unwrap());
    assert!(!offering.is_finished());
    let (received, predecessor) = receive_off_thread(&path).await.expect("receive again");
    assert_eq!(received.len(), 3);
    predecessor.complete().await.expect("complete");
    offering.await.expect("join");
}

#[tokio::test]
async fn bind_replaces_only_a_stale_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("handover.sock");

    // Left by a gateway that is gone: nothing answers, so it is replaced.
    drop(StdUnixListener::bind(&path).expect("stale"));
    let live = HandoverSocket::bind(&path).expect("a stale socket file is replaced");

    // A live one is not.
    let e = HandoverSocket::bind(&path).expect_err("a live gateway answers there");
    assert!(e.to_string().contains("--take-over"), "{e}");
    drop(live);
    assert!(!path.exists(), "a gateway that stops leaves no socket file");

    let file = dir.path().join("file");
    std::fs::write(&file, b"x").expect("write");
    let e = HandoverSocket::bind(&file).expect_err("a regular file");
    assert!(e.to_string().contains("not a socket"), "{e}");
    assert_eq!(std::fs::read(&file).expect("read"), b"x", "the file is left alone");

    let e = receive(&dir.path().join("nothing")).expect_err("nothing there");
    // The kind `serve --take-over` reads as "nobody to take over from: bind".
    assert!(
        matches!(&e, HandoverError::Connect { source, .. } if source.kind() == io::ErrorKind::NotFound),
        "{e}"
    );
}

/// A hand-made offerer on `path`: reads the successor's first line, then sends `line` with
/// `fds` attached, or closes the connection when `line` is empty.
fn offer_once(path: &Path, line: &'static [u8], fds: Vec<OwnedFd>) -> std::thread::JoinHandle<()> {
    let listener = StdUnixListener::bind(path).expect("bind");
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut hello = [0u8; HELLO.len()];
        stream.read_exact(&mut hello).expect("hello");
        assert_eq!(hello, HELLO);
        if line.is_empty() {
            return;
        }
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
        assert!(control.push(SendAncillaryMessage::ScmRights(&borrowed)));
        rustix::net::sendmsg(&stream, &[IoSlice::new(line)], &mut control, SendFlags::empty())
            .expect("sendmsg");
        // Nothing more will come; held open until the successor has judged the offer.
        stream.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let _ = stream.read(&mut [0u8; 16]);
    })
}

#[test]
fn a_successor_checks_what_it_is_handed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listening = || OwnedFd::from(std::net::TcpListener::bind("127.0.0.1:0").expect("bind"));
    let connected = || {
        let server = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        OwnedFd::from(std::net::TcpStream::connect(server.local_addr().unwrap()).expect("c"))
    };
    let cases: Vec<(&'static [u8], Vec<OwnedFd>, &str)> = vec![
        (b"", vec![], "without an answer"),
        (
            b"{\"pid\":1,\"sockets\":[\"tls\",\"admin\"]}\n",
            vec![listening()],
            "names 2 sockets but 1",
        ),
        (b"{\"pid\":1,\"sockets\":[\"tls\"]}\n", vec![connected()], "not a listening socket"),
        (
            b"{\"pid\":1,\"sockets\":[\"tls\",\"tls\"]}\n",
            vec![listening(), listening()],
            "two sockets",
        ),
        (b"{\"pid\":1,\"sockets\":[\"tls\"],\"x\":1}\n", vec![listening()], "not a handover offer"),
        (b"{\"pid\":1,\"sockets\":[\"tls\"]}", vec![listening()], "before its newline"),
    ];
    for (i, (line, fds, why)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("offer{i}.sock"));
        let offerer = offer_once(&path, line, fds);
        let e = receive(&path).expect_err(why);
        assert!(e.to_string().contains(why), "{why}: {e}");
        offerer.join().expect("offerer");
    }
}

/// An offer carrying many bans is far longer than one read: it is read whole.
#[tokio::test]
async fn a_long_offer_is_read_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("handover.sock");
    let l = listeners().await;
    let bans = Arc::new(Bans::new(200_000));
    let many = (0..100_000u32).map(|i| (ClientKey::V4(i), Duration::from_secs(60)));
    assert_eq!(bans.restore(many), 100_000);
    let socket = HandoverSocket::bind(&path).expect("bind");
    let offering = tokio::spawn(socket.serve(Sockets::of(&l).unwrap(), bans, Serving::default()));
    let (received, mut predecessor) = receive_off_thread(&path).await.expect("receive");
    assert_eq!(received.len(), 3);
    assert_eq!(predecessor.take_bans().len(), 100_000);
    predecessor.complete().await.expect("complete");
    offering.await.expect("join");
}
