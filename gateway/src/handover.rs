//! Seamless restarts: a running gateway hands its listening sockets to its successor (a new
//! binary, or the same one with listeners moved), then stops accepting and drains.
//!
//! The kernel queues new connections on a listening socket, not on a process. While both
//! processes hold the socket, each connection is accepted by exactly one of them, and none is
//! refused in between, unlike a stop-then-start that closes the port for as long as the restart
//! takes. HAProxy's `-x` and nginx's binary upgrade rest on the same property.
//!
//! The exchange runs on a Unix stream socket (`serve --handover PATH`, mode 0600) that only the
//! gateway's own user, or root, may use: both sides check the other's credentials.
//! 1. The successor sends `rempart-gateway handover 1\n`.
//! 2. The running gateway answers one JSON line naming its sockets, with the sockets attached
//!    (`SCM_RIGHTS`), and the clients it has banned with the time each ban has left: an
//!    upgrade does not lift them.
//! 3. The successor checks each one: it must be a listening TCP socket. A socket on the address
//!    its own policy names is kept; any other is closed, and the policy's address is bound
//!    afresh. The successor starts serving, then sends `ready\n`.
//! 4. The running gateway gives up the handover path and answers `released\n`. Then it stops
//!    accepting and drains its connections. The successor listens on the path for the next
//!    upgrade.
//!
//! A successor that fails before step 3, or never gets there, leaves the running gateway
//! serving and answering handovers as before.

use std::io::{self, BufRead, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketType,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{UnixListener, UnixStream};

use crate::ban::Bans;
use crate::limit::{CarriedBucket, ClientKey};
use crate::state::Shared;

#[cfg(test)]
mod tests;

/// The successor's first line: the protocol and its version.
const HELLO: &[u8] = b"rempart-gateway handover 1\n";
/// The successor serves on the sockets it took.
const READY: &[u8] = b"ready\n";
/// The running gateway has given up the handover path.
const RELEASED: &[u8] = b"released\n";
/// Longest line of the exchange, except the offer.
const MAX_LINE: usize = 4096;
/// Longest offer: about 45 bytes per ban carried, for up to a million.
const MAX_OFFER: u64 = 64 << 20;
/// Most sockets one exchange carries: TLS, redirect and admin.
const MAX_SOCKETS: usize = 3;
/// Most rate-limit buckets an offer carries (about 70 bytes each in the offer).
const MAX_BUCKETS: usize = 200_000;
/// How long either side waits for the other's next line, except for `ready`.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the running gateway waits for its successor to start serving (certificates loaded,
/// workers started).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a handover could not be made or offered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandoverError {
    /// Nothing answers on the handover path.
    #[error("cannot take over through {path}: {source}")]
    Connect {
        /// The handover path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The exchange with the other gateway failed.
    #[error("handover through {path} failed: {reason}")]
    Exchange {
        /// The handover path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The handover path cannot be listened on.
    #[error("cannot listen for handovers on {path}: {reason}")]
    Bind {
        /// The handover path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// What a listening socket serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The public TLS listener.
    Tls,
    /// The redirect-only plain-HTTP listener.
    Redirect,
    /// The admin listener.
    Admin,
}

/// Step 2: the sockets attached, in this order, and the bans in force.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Offer {
    /// The offering gateway's process id, for the logs.
    pid: u32,
    /// What each attached socket serves.
    sockets: Vec<Role>,
    /// The clients banned, and for how much longer.
    #[serde(default)]
    bans: Vec<CarriedBan>,
    /// The rate-limit buckets that are not full again. Left out when there are none, so that
    /// a gateway from before buckets were carried can still take over then (it refuses fields
    /// it does not know).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    buckets: Vec<CarriedBucket>,
}

/// The running gateway's state, once it serves: where a handover takes the rate-limit buckets
/// from. `run` fills it (`Config::serving`).
pub type Serving = Arc<std::sync::OnceLock<std::sync::Weak<Shared>>>;

/// A ban carried to the successor.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CarriedBan {
    key: ClientKey,
    /// Milliseconds it has left.
    ms: u64,
}

/// Copies of the running gateway's listening sockets, kept to hand over. Dropping them closes
/// nothing the gateway still serves on.
#[derive(Debug)]
pub struct Sockets(Vec<(Role, OwnedFd)>);

impl Sockets {
    /// Duplicates each listening socket of `listeners`.
    pub fn of(listeners: &crate::server::Listeners) -> io::Result<Sockets> {
        let mut held = vec![(Role::Tls, listeners.tls.as_fd().try_clone_to_owned()?)];
        if let Some(r) = &listeners.redirect {
            held.push((Role::Redirect, r.as_fd().try_clone_to_owned()?));
        }
        held.push((Role::Admin, listeners.admin.as_fd().try_clone_to_owned()?));
        Ok(Sockets(held))
    }
}

/// A listening socket received from the running gateway.
#[derive(Debug)]
pub struct Received {
    /// What it served there.
    pub role: Role,
    /// Its local address.
    pub addr: SocketAddr,
    /// The socket, blocking mode as received.
    pub listener: std::net::TcpListener,
}

/// The Unix socket a running gateway answers handover requests on.
#[derive(Debug)]
pub struct HandoverSocket {
    listener: UnixListener,
    path: PathBuf,
    /// Device and inode of the socket file, so that only our own file is ever removed.
    file: (u64, u64),
}

impl HandoverSocket {
    /// Listens on `path`, mode 0600. A socket file that nothing answers on (left by a gateway
    /// that is gone) is replaced; a socket a live gateway answers on, or any other file, is an
    /// error. Must run inside a tokio runtime.
    pub fn bind(path: &Path) -> Result<HandoverSocket, HandoverError> {
        let fail = |reason: String| HandoverError::Bind { path: path.to_owned(), reason };
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                if StdUnixStream::connect(path).is_ok() {
                    return Err(fail(
                        "a running gateway answers there; start with --take-over to replace it"
                            .into(),
                    ));
                }
                std::fs::remove_file(path)
                    .map_err(|e| fail(format!("cannot remove the stale socket file: {e}")))?;
            }
            Ok(_) => return Err(fail("the path exists and is not a socket".into())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e.to_string())),
        }
        let listener = UnixListener::bind(path).map_err(|e| fail(e.to_string()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| fail(format!("cannot restrict it to mode 0600: {e}")))?;
        let meta = std::fs::symlink_metadata(path).map_err(|e| fail(e.to_string()))?;
        Ok(HandoverSocket { listener, path: path.to_owned(), file: (meta.dev(), meta.ino()) })
    }

    /// The path listened on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers handover requests until a successor has taken `sockets` (and the bans of
    /// `bans`) and serves on them; then gives up the path and returns the successor's process
    /// id. A failed attempt is logged, and the gateway keeps serving and answering.
    pub async fn serve(self, sockets: Sockets, bans: Arc<Bans>, serving: Serving) -> u32 {
        let mut backoff = rempart_core::backoff::AcceptBackoff::default();
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => {
                    backoff.succeeded();
                    stream
                }
                Err(e) => {
                    let (wait, log) = backoff.failed();
                    if log {
                        tracing::warn!(path = %self.path.display(), error = %e,
                            "cannot accept on the handover socket; retrying");
                    }
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            match hand_over(stream, &sockets, &bans, &serving).await {
                Ok((mut stream, pid)) => {
                    // Stops listening and removes the socket file before saying so.
                    drop(self);
                    // The successor binds the path once it reads this, or when it sees the
                    // connection close.
                    let _ = tokio::time::timeout(STEP_TIMEOUT, stream.write_all(RELEASED)).await;
                    return pid;
                }
                Err(reason) => tracing::warn!(
                    path = %self.path.display(),
                    %reason,
                    "handover failed; this gateway keeps serving"
                ),
            }
        }
    }
}

impl Drop for HandoverSocket {
    /// Removes the socket file, if it is still ours: a gateway that stops leaves none behind.
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && (meta.dev(), meta.ino()) == self.file
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Steps 1 to 3 on the running gateway's side: returns the connection and the successor's
/// process id once it serves, or why it does not.
async fn hand_over(
    mut stream: UnixStream,
    sockets: &Sockets,
    bans: &Bans,
    serving: &Serving,
) -> Result<(UnixStream, u32), String> {
    let cred = stream.peer_cred().map_err(|e| format!("no peer credentials: {e}"))?;
    let pid = cred.pid().map_or(0, |p| p.unsigned_abs());
    let me = rustix::process::geteuid().as_raw();
    if cred.uid() != me && cred.uid() != 0 {
        return Err(format!(
            "refused process {pid} of uid {}: only uid {me} or root may take over",
            cred.uid()
        ));
    }
    let hello = read_line(&mut stream, STEP_TIMEOUT).await?;
    if hello != HELLO {
        return Err(format!(
            "process {pid} does not speak handover version 1 (it sent {:?})",
            String::from_utf8_lossy(&hello)
        ));
    }
    let bans: Vec<CarriedBan> = bans
        .active()
        .into_iter()
        .map(|(key, left)| CarriedBan {
            key,
            ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
        })
        .collect();
    let carried = bans.len();
    let buckets = serving
        .get()
        .and_then(std::sync::Weak::upgrade)
        .map(|shared| shared.runtime.load().limiters.export(MAX_BUCKETS))
        .unwrap_or_default();
    let carried_buckets = buckets.len();
    let offer = Offer {
        pid: std::process::id(),
        sockets: sockets.0.iter().map(|s| s.0).collect(),
        bans,
        buckets,
    };
    let mut line = serde_json::to_vec(&offer).map_err(|e| e.to_string())?;
    line.push(b'\n');
    let fds: Vec<BorrowedFd<'_>> = sockets.0.iter().map(|s| s.1.as_fd()).collect();
    tokio::time::timeout(STEP_TIMEOUT, send_with_fds(&mut stream, &line, &fds))
        .await
        .map_err(|_| format!("process {pid} does not read"))?
        .map_err(|e| format!("cannot send the sockets to process {pid}: {e}"))?;
    tracing::info!(
        successor = pid,
        bans = carried,
        buckets = carried_buckets,
        "listening sockets, bans and rate-limit buckets sent; waiting for the successor to serve"
    );
    let ready = read_line(&mut stream, READY_TIMEOUT).await?;
    if ready != READY {
        return Err(format!(
            "process {pid} took the sockets but did not start serving (it sent {:?})",
            String::from_utf8_lossy(&ready)
        ));
    }
    Ok((stream, pid))
}

/// Sends `bytes` with `fds` attached to their first byte.
async fn send_with_fds(
    stream: &mut UnixStream,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let sent = stream
        .async_io(Interest::WRITABLE, || {
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !control.push(SendAncillaryMessage::ScmRights(fds)) {
                return Err(io::Error::other("too many sockets for one message"));
            }
            let iov = [IoSlice::new(bytes)];
            Ok(rustix::net::sendmsg(&*stream, &iov, &mut control, SendFlags::NOSIGNAL)?)
        })
        .await?;
    // The sockets went with the first byte; the rest, if any, is plain.
    stream.write_all(&bytes[sent..]).await
}

/// Reads one line, `\n` included, of at most [`MAX_LINE`] bytes, within `limit`. An empty
/// result means the peer closed the connection.
async fn read_line(stream: &mut UnixStream, limit: Duration) -> Result<Vec<u8>, String> {
    let read = async {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\n") {
            if line.len() >= MAX_LINE {
                return Err(format!("a line longer than {MAX_LINE} bytes"));
            }
            match stream.read(&mut byte).await {
                Ok(0) => return Ok(line),
                Ok(_) => line.push(byte[0]),
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(line)
    };
    match tokio::time::timeout(limit, read).await {
        Ok(Ok(line)) if line.is_empty() => Err("the peer closed the connection".into()),
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} s", limit.as_secs())),
    }
}

/// The running gateway a successor is taking over from, until [`Predecessor::complete`].
#[derive(Debug)]
pub struct Predecessor {
    stream: StdUnixStream,
    pid: u32,
    path: PathBuf,
    bans: Vec<(ClientKey, Duration)>,
    buckets: Vec<CarriedBucket>,
}

impl Predecessor {
    /// The predecessor's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The clients it had banned, with the time each ban has left.
    pub fn take_bans(&mut self) -> Vec<(ClientKey, Duration)> {
        std::mem::take(&mut self.bans)
    }

    /// Its clients' rate-limit buckets that were not full again.
    pub fn take_buckets(&mut self) -> Vec<CarriedBucket> {
        std::mem::take(&mut self.buckets)
    }

    /// Step 3's end and step 4: tells the predecessor that this gateway serves, waits until it
    /// has given up the handover path (or is gone), then listens there. Must run inside a
    /// tokio runtime.
    pub async fn complete(self) -> Result<HandoverSocket, HandoverError> {
        let fail = |reason: String| HandoverError::Exchange { path: self.path.clone(), reason };
        self.stream.set_nonblocking(true).map_err(|e| fail(e.to_string()))?;
        let mut stream = UnixStream::from_std(self.stream).map_err(|e| fail(e.to_string()))?;
        match tokio::time::timeout(STEP_TIMEOUT, stream.write_all(READY)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(fail(format!("cannot tell the predecessor: {e}"))),
            Err(_) => return Err(fail("the predecessor does not read".into())),
        }
        match read_line(&mut stream, STEP_TIMEOUT).await {
            Ok(line) if line == RELEASED => {}
            Ok(line) => {
                return Err(fail(format!(
                    "the predecessor answered {:?} instead of releasing the path",
                    String::from_utf8_lossy(&line)
                )));
            }
            // Gone without a word (killed, say): its socket file is stale, and bind replaces it.
            Err(reason) => tracing::warn!(%reason, "the predecessor did not confirm the handover"),
        }
        HandoverSocket::bind(&self.path)
    }
}

/// Steps 1 and 2 on the successor's side: the listening sockets of the gateway answering on
/// `path`, each checked to be a listening TCP socket. Blocking; the exchange has a deadline.
pub fn receive(path: &Path) -> Result<(Vec<Received>, Predecessor), HandoverError> {
    let fail = |reason: String| HandoverError::Exchange { path: path.to_owned(), reason };
    let stream = StdUnixStream::connect(path)
        .map_err(|source| HandoverError::Connect { path: path.to_owned(), source })?;
    stream
        .set_read_timeout(Some(STEP_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(STEP_TIMEOUT)))
        .map_err(|e| fail(e.to_string()))?;
    let cred = rustix::net::sockopt::socket_peercred(&stream)
        .map_err(|e| fail(format!("no peer credentials: {e}")))?;
    let me = rustix::process::geteuid();
    if cred.uid != me && !cred.uid.is_root() {
        return Err(fail(format!(
            "the process answering there runs as uid {}, not as uid {} or root",
            cred.uid.as_raw(),
            me.as_raw()
        )));
    }
    (&stream).write_all(HELLO).map_err(|e| fail(format!("cannot ask: {e}")))?;

    let mut buf = vec![0u8; MAX_LINE];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        &stream,
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|e| fail(format!("no answer: {e}")))?;
    // Taken at once, so that every received descriptor is owned (and closed on error).
    let fds: Vec<OwnedFd> = control
        .drain()
        .flat_map(|m| match m {
            RecvAncillaryMessage::ScmRights(fds) => fds.collect(),
            _ => Vec::new(),
        })
        .collect();
    if got.flags.contains(ReturnFlags::CTRUNC) {
        return Err(fail(format!("more than {MAX_SOCKETS} sockets offered")));
    }
    if got.bytes == 0 {
        return Err(fail(
            "the running gateway closed the connection without an answer; its log says why".into(),
        ));
    }
    buf.truncate(got.bytes);
    if !buf.ends_with(b"\n") {
        // Nothing follows the offer until `ready`: the buffer cannot read past it.
        let mut rest = io::BufReader::new(&stream).take(MAX_OFFER);
        rest.read_until(b'\n', &mut buf).map_err(|e| fail(format!("the answer stops: {e}")))?;
        if !buf.ends_with(b"\n") {
            return Err(fail(format!(
                "the answer ends before its newline, or is longer than {MAX_OFFER} bytes"
            )));
        }
    }
    let offer: Offer = serde_json::from_slice(&buf)
        .map_err(|e| fail(format!("the answer is not a handover offer: {e}")))?;
    if offer.sockets.len() != fds.len() {
        return Err(fail(format!(
            "the offer names {} sockets but {} came with it",
            offer.sockets.len(),
            fds.len()
        )));
    }
    let mut received: Vec<Received> = Vec::with_capacity(fds.len());
    for (role, fd) in offer.sockets.into_iter().zip(fds) {
        if received.iter().any(|r| r.role == role) {
            return Err(fail(format!("two sockets offered for {role:?}")));
        }
        let listening = rustix::net::sockopt::socket_type(&fd)
            .ok()
            .filter(|t| *t == SocketType::STREAM)
            .and_then(|_| rustix::net::sockopt::socket_acceptconn(&fd).ok())
            .unwrap_or(false);
        if !listening {
            return Err(fail(format!("the {role:?} socket offered is not a listening socket")));
        }
        let listener = std::net::TcpListener::from(fd);
        let addr = listener
            .local_addr()
            .map_err(|e| fail(format!("the {role:?} socket offered is not TCP: {e}")))?;
        received.push(Received { role, addr, listener });
    }
    let bans = offer.bans.into_iter().map(|b| (b.key, Duration::from_millis(b.ms))).collect();
    let buckets = offer.buckets;
    Ok((received, Predecessor { stream, pid: offer.pid, path: path.to_owned(), bans, buckets }))
}
