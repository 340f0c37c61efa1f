//! Test harness: a small hyper upstream that answers `get_info` and echoes everything else,
//! the gateway started in-process on 127.0.0.1:0 with a policy written to a temp dir, and TLS
//! clients that trust the development CA.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rempart_gateway::{Config, Listeners, Policy, run};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub(crate) const SHIPPED: &str = include_str!("../../../policies/gateway.toml");

pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Polls `cond` every 10 ms until it holds or `deadline` passes.
pub(crate) async fn wait_for(what: &str, deadline: Duration, mut cond: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !cond().await {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Upstream

/// What an upstream saw.
#[derive(Default)]
pub(crate) struct Seen {
    /// Requests other than get_info.
    pub(crate) requests: AtomicU64,
    /// get_info calls (health checks and proxied).
    pub(crate) get_info: AtomicU64,
    /// The last request's headers (name → values).
    pub(crate) last_headers: Mutex<BTreeMap<String, Vec<String>>>,
    /// Requests other than get_info being answered now, and the most at once.
    pub(crate) busy: AtomicU64,
    pub(crate) most_busy: AtomicU64,
}

/// Counts a request being answered until dropped.
struct Busy<'a>(&'a Seen);

impl<'a> Busy<'a> {
    fn start(seen: &'a Seen) -> Self {
        let now = seen.busy.fetch_add(1, Ordering::SeqCst) + 1;
        seen.most_busy.fetch_max(now, Ordering::SeqCst);
        Busy(seen)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    pub(crate) seen: Arc<Seen>,
    pub(crate) head_block: Arc<AtomicU64>,
    pub(crate) head_age_ms: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub(crate) async fn start(id: &'static str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Seen::default());
        let head_block = Arc::new(AtomicU64::new(100));
        let head_age_ms = Arc::new(AtomicU64::new(0));
        let (s, h, a) = (seen.clone(), head_block.clone(), head_age_ms.clone());
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let (s, h, a) = (s.clone(), h.clone(), a.clone());
                conns.spawn(async move {
                    let svc =
                        service_fn(move |req| answer(id, s.clone(), h.clone(), a.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Upstream { addr, seen, head_block, head_age_ms, task }
    }

    /// Stops listening and cuts every open connection; once it returns no connection of this
    /// upstream answers again (the task owning them has been dropped, which cancels them).
    pub(crate) async fn kill(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    pub(crate) fn requests(&self) -> u64 {
        self.seen.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    id: &'static str,
    seen: Arc<Seen>,
    head: Arc<AtomicU64>,
    age: Arc<AtomicU64>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    if parts.uri.path() == "/v1/chain/get_info" {
        seen.get_info.fetch_add(1, Ordering::SeqCst);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as u64;
        let t = now - age.load(Ordering::SeqCst);
        let json = serde_json::json!({
            "server_version": "test",
            "chain_id": "00",
            "head_block_num": head.load(Ordering::SeqCst),
            "head_block_time": format_time(t),
            "node": id,
        });
        return Ok(Response::new(Full::new(Bytes::from(json.to_string()))));
    }
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let _busy = Busy::start(&seen);
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in &parts.headers {
        headers
            .entry(k.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    *seen.last_headers.lock().expect("lock") = headers.clone();
    if parts.uri.path() == "/v1/chain/slow" {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    if parts.uri.path() == "/v1/chain/big" {
        // An answer of the size the request's `x-answer-bytes` asks for.
        let n = parts
            .headers
            .get("x-answer-bytes")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        return Ok(Response::new(Full::new(Bytes::from(vec![b'x'; n]))));
    }
    if parts.uri.path() == "/v1/chain/fail" {
        let mut r = Response::new(Full::new(Bytes::from_static(b"{}")));
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        return Ok(r);
    }
    let json = serde_json::json!({
        "node": id,
        "path": parts.uri.path(),
        "method": parts.method.as_str(),
        "headers": headers,
        "body_len": body.len(),
        "body": String::from_utf8_lossy(&body),
    });
    let mut r = Response::new(Full::new(Bytes::from(json.to_string())));
    r.headers_mut().insert("connection", "keep-alive, x-upstream-secret".parse().expect("hv"));
    r.headers_mut().insert("x-upstream-secret", "1".parse().expect("hv"));
    r.headers_mut().insert("keep-alive", "timeout=5".parse().expect("hv"));
    Ok(r)
}

/// `2024-01-01T00:00:50.000` for ms since the epoch (UTC).
fn format_time(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // civil from days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

// ---------------------------------------------------------------------------------------------
// Gateway

pub(crate) struct Gateway {
    pub(crate) tls: SocketAddr,
    pub(crate) redirect: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) policy_file: PathBuf,
    pub(crate) reload: Arc<Notify>,
    dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

static DIRS: AtomicU64 = AtomicU64::new(0);

/// The shipped policy with these nodes, absolute certificate paths and test-friendly limits;
/// `edit` changes more.
pub(crate) fn policy_text(nodes: &[SocketAddr], edit: &[(&str, &str)]) -> String {
    let certs = repo().join("certs");
    let nodes: Vec<String> = nodes.iter().map(|n| format!("\"{n}\"")).collect();
    let mut text = SHIPPED
        .replace("nodes = [\"127.0.0.1:8888\"]", &format!("nodes = [{}]", nodes.join(", ")))
        .replace("../certs/server.pem", &certs.join("server.pem").display().to_string())
        .replace("../certs/server.key", &certs.join("server.key").display().to_string())
        .replace("per_second = 50", "per_second = 100000")
        .replace("burst = 100\n", "burst = 100000\n")
        .replace("global_per_second = 20000", "global_per_second = 1000000")
        .replace("global_burst = 5000", "global_burst = 1000000")
        .replace("ban_after = 100", "ban_after = 1000000");
    for (from, to) in edit {
        assert!(text.contains(from), "policy has no {from:?}");
        text = text.replacen(from, to, 1);
    }
    text
}

impl Gateway {
    pub(crate) async fn start(policy: &str) -> Gateway {
        Gateway::start_with_workers(policy, 1).await
    }

    /// A gateway whose TLS listener is served by `workers` threads.
    pub(crate) async fn start_with_workers(policy: &str, workers: usize) -> Gateway {
        let dir = std::env::temp_dir().join(format!(
            "rempart-gw-edge-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let policy_file = dir.join("gateway.toml");
        std::fs::write(&policy_file, policy).expect("write policy");
        let policy = Policy::load(&policy_file).expect("valid test policy");
        let bind = || async { TcpListener::bind("127.0.0.1:0").await.expect("bind") };
        let listeners =
            Listeners { tls: bind().await, redirect: Some(bind().await), admin: bind().await };
        let tls = listeners.tls.local_addr().expect("addr");
        let redirect = listeners.redirect.as_ref().expect("r").local_addr().expect("addr");
        let admin = listeners.admin.local_addr().expect("addr");
        let config = Config {
            policy_file: Some(policy_file.clone()),
            watch_interval: Duration::from_millis(50),
            drain_timeout: Duration::from_secs(2),
            // Short, so that tests stopping with idle clients open do not wait long; the
            // behaviour is the same as with the binary's 1 s.
            close_idle_after: Duration::from_millis(200),
            workers,
            ..Config::default()
        };
        let reload = config.reload.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            run(listeners, policy, config, async {
                let _ = stopped.await;
            })
            .await
            .expect("gateway run");
        });
        let gw = Gateway { tls, redirect, admin, policy_file, reload, dir, stop: Some(stop), task };
        wait_for("admin listener", Duration::from_secs(5), async || {
            TcpStream::connect(admin).await.is_ok()
        })
        .await;
        gw
    }

    pub(crate) async fn metrics(&self) -> String {
        let (status, body) = plain_get(self.admin, "/metrics").await;
        assert_eq!(status, 200);
        body
    }

    /// The value of the metric line starting with `prefix` (0 if absent).
    pub(crate) async fn metric(&self, prefix: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    pub(crate) async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

pub(crate) use rempart_core::testing::free_port;

/// `rempart-gateway serve` in its own process (killed when dropped), on free loopback ports,
/// with the test policy for `nodes` plus `edit`, once its admin listener answers.
pub(crate) struct ServedBinary {
    pub(crate) child: tokio::process::Child,
    pub(crate) pid: rustix::process::Pid,
    pub(crate) tls: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) text: String,
    pub(crate) policy_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl ServedBinary {
    pub(crate) async fn start(nodes: &[SocketAddr], edit: &[(&str, &str)]) -> ServedBinary {
        Self::start_with(nodes, edit, false).await
    }

    /// As [`ServedBinary::start`]; with `logging`, the process logs at `info` (an access-log
    /// line per request) into a pipe kept in `child.stdout`, which nothing reads unless the
    /// test does.
    pub(crate) async fn start_with(
        nodes: &[SocketAddr],
        edit: &[(&str, &str)],
        logging: bool,
    ) -> ServedBinary {
        Self::launch(nodes, edit, logging, &[]).await
    }

    /// As [`ServedBinary::start`], with `args` added to `serve`'s.
    pub(crate) async fn start_args(
        nodes: &[SocketAddr],
        edit: &[(&str, &str)],
        args: &[&std::ffi::OsStr],
    ) -> ServedBinary {
        Self::launch(nodes, edit, false, args).await
    }

    async fn launch(
        nodes: &[SocketAddr],
        edit: &[(&str, &str)],
        logging: bool,
        args: &[&std::ffi::OsStr],
    ) -> ServedBinary {
        let (tls_port, admin_port) = (free_port(), free_port());
        let (tls_line, admin_line) = (
            format!("tls = \"127.0.0.1:{tls_port}\""),
            format!("admin = \"127.0.0.1:{admin_port}\""),
        );
        let mut all = vec![
            ("tls = \"127.0.0.1:8443\"", tls_line.as_str()),
            ("redirect = \"127.0.0.1:8080\"", "# no redirect listener"),
            ("admin = \"127.0.0.1:9100\"", admin_line.as_str()),
        ];
        all.extend_from_slice(edit);
        let text = policy_text(nodes, &all);
        let dir = tempfile::tempdir().expect("tempdir");
        let policy_file = dir.path().join("gateway.toml");
        std::fs::write(&policy_file, &text).expect("write policy");
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rempart-gateway"))
            .arg("serve")
            .arg("--policy")
            .arg(&policy_file)
            .args(args)
            .env("RUST_LOG", if logging { "info" } else { "warn" })
            .stdout(if logging {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .kill_on_drop(true)
            .spawn()
            .expect("start rempart-gateway");
        let pid = rustix::process::Pid::from_raw(child.id().expect("pid") as i32).expect("pid");
        let tls: SocketAddr = ([127, 0, 0, 1], tls_port).into();
        let admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();
        wait_for("the binary's admin listener", Duration::from_secs(20), async || {
            if let Some(status) = child.try_wait().expect("wait") {
                panic!("rempart-gateway exited ({status}) before listening; policy:\n{text}");
            }
            TcpStream::connect(admin).await.is_ok()
        })
        .await;
        ServedBinary { child, pid, tls, admin, text, policy_file, _dir: dir }
    }

    /// Another `rempart-gateway serve` on this one's policy file with `args` added (a
    /// successor taking over, say), killed when dropped. Waits for nothing.
    pub(crate) fn successor(&self, args: &[&std::ffi::OsStr]) -> tokio::process::Child {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_rempart-gateway"))
            .arg("serve")
            .arg("--policy")
            .arg(&self.policy_file)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the successor")
    }

    /// The process's resident memory, in bytes.
    pub(crate) fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid.as_raw_nonzero()))
            .expect("read /proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        kib * 1024
    }
}

/// GET over plain HTTP/1.1 (admin and redirect listeners).
pub(crate) async fn plain_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.expect("handshake");
    tokio::spawn(conn);
    let req =
        Request::get(path).header("host", "localhost").body(Full::new(Bytes::new())).expect("req");
    let resp = send.send_request(req).await.expect("send");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

// ---------------------------------------------------------------------------------------------
// TLS clients

pub(crate) fn client_config(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    client_config_versions(alpn, rustls::DEFAULT_VERSIONS)
}

pub(crate) fn client_config_versions(
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_file(repo().join("certs/ca.pem")).expect("ca");
    roots.add(ca).expect("add ca");
    let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

pub(crate) async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(config).connect(ServerName::try_from("localhost").expect("name"), tcp).await
}

/// A simple answer.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// An HTTP/1.1 or HTTP/2 client on one TLS connection.
pub(crate) enum Client {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Client {
    pub(crate) async fn connect(addr: SocketAddr, h2: bool) -> Client {
        Client::connect_from(std::net::Ipv4Addr::LOCALHOST, addr, h2).await.expect("tls")
    }

    /// A client whose connection comes from `source` (any 127.0.0.0/8 address).
    pub(crate) async fn connect_from(
        source: std::net::Ipv4Addr,
        addr: SocketAddr,
        h2: bool,
    ) -> std::io::Result<Client> {
        let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
        let tls = tls_connect_from(source, addr, client_config(alpn)).await?;
        Client::over(tls, h2).await
    }

    /// A client whose connection comes from `balancer` and starts with a PROXY v2 header
    /// naming `client`.
    pub(crate) async fn connect_proxied(
        balancer: std::net::Ipv4Addr,
        client: SocketAddr,
        addr: SocketAddr,
    ) -> std::io::Result<Client> {
        use tokio::io::AsyncWriteExt;
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.bind(SocketAddr::from((balancer, 0)))?;
        let mut tcp = sock.connect(addr).await?;
        tcp.write_all(&rempart_gateway::proxy_header::encode(client, addr)).await?;
        let tls = TlsConnector::from(client_config(&[b"http/1.1"]))
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await?;
        Client::over(tls, false).await
    }

    async fn over(tls: TlsStream<TcpStream>, h2: bool) -> std::io::Result<Client> {
        let io = TokioIo::new(tls);
        if h2 {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(conn);
            Ok(Client::H2(send))
        } else {
            let (send, conn) =
                hyper::client::conn::http1::handshake(io).await.map_err(std::io::Error::other)?;
            tokio::spawn(conn);
            Ok(Client::H1(send))
        }
    }

    pub(crate) async fn send(&mut self, req: Request<Full<Bytes>>) -> Answer {
        let resp = match self {
            Client::H1(s) => {
                s.ready().await.expect("ready");
                s.send_request(req).await.expect("response")
            }
            Client::H2(s) => {
                s.ready().await.expect("ready");
                s.send_request(req).await.expect("response")
            }
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        Answer { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
    }

    pub(crate) async fn post(&mut self, path: &str, body: &'static str) -> Answer {
        let uri = match self {
            Client::H1(_) => path.to_owned(),
            Client::H2(_) => format!("https://localhost{path}"),
        };
        let mut b = Request::post(uri);
        if matches!(self, Client::H1(_)) {
            b = b.header("host", "localhost");
        }
        self.send(b.body(Full::new(Bytes::from_static(body.as_bytes()))).expect("req")).await
    }
}

/// A TLS connection from a chosen loopback source address (127.0.0.0/8 all reach the host).
pub(crate) async fn tls_connect_from(
    source: std::net::Ipv4Addr,
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(SocketAddr::from((source, 0)))?;
    let tcp = sock.connect(addr).await?;
    // Without it, a request whose HEADERS and DATA frames go in two writes waits for the
    // delayed ACK of the first (40 ms), which caps a client sending one request at a time.
    tcp.set_nodelay(true)?;
    TlsConnector::from(config).connect(ServerName::try_from("localhost").expect("name"), tcp).await
}

/// A client config trusting the CA in `ca_pem`.
pub(crate) fn client_config_trusting(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("ca")).expect("add ca");
    let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(rustls::DEFAULT_VERSIONS)
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}
