//! Two sandboxed signers holding the same key share the double-sign guard through a real etcd
//! (Debian's etcd-server): whichever signs a height first, the other may sign only that very
//! block there, never another; a lost etcd stops signing and the daemon (exit code 75).

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use common::etcd::Etcd;
use common::*;
use rempart_core::BlockTimestamp;
use rempart_core::protocol::ErrorCode;
use rempart_signer::client::{Client, ClientError, Endpoint};

fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(5)
}

/// One POST to etcd's JSON gateway: (status, body).
fn etcd_post(port: u16, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: \
         close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()))
}

fn signer(port: u16, name: &str) -> Setup {
    let extra = format!(
        "[shared_guard]\netcd = \"127.0.0.1:{port}\"\nprefix = \"/rempart/guard/\"\n\
         name = \"{name}\"\ntimeout_ms = 2000"
    );
    let s = setup_in(None, None, DEV_PUB, &sandbox_toml(&[]), &extra);
    s.guard_init();
    s
}

fn refused(
    r: Result<rempart_core::protocol::SignBlockResponse, ClientError>,
) -> (ErrorCode, String) {
    match r {
        Err(ClientError::Refused { code, message }) => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_signers_never_sign_two_blocks_at_one_height() {
    let Some(program) = Etcd::program() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = Etcd::start(&program, dir.path());
    let (status, _) = etcd_post(etcd.port, "/v3/maintenance/status", "{}").unwrap();
    assert_eq!(status, 200, "etcd's JSON gateway answers");
    let (a, b) = (signer(etcd.port, "signer-a"), signer(etcd.port, "signer-b"));
    let mut da = a.spawn(&[]);
    let mut db = b.spawn(&[]);
    let mut ca = Client::new(Endpoint::Unix(a.socket.clone()));
    let mut cb = Client::new(Endpoint::Unix(b.socket.clone()));
    let base = now_slot();
    let at = |n: u32| BlockTimestamp(base.0 - 100 + n);

    // a signs block 10; b may sign that very block again (a failover retry), not another one.
    let block10 = request(&a.key, 10, at(10), 1);
    let sig = ca.sign_block(block10.clone(), deadline()).await.expect("a signs block 10");
    assert!(sig.signature.verify(&block10.digest(), &a.key));
    let fork10 = request(&a.key, 10, at(10), 2);
    let (code, message) = refused(cb.sign_block(fork10.clone(), deadline()).await);
    assert_eq!(code, ErrorCode::DoubleSign);
    assert!(message.contains("claimed by signer \"signer-a\""), "{message}");
    // b claimed while its intent was written and its key signed: nothing of the fork left b,
    // not even an audit line with its signature, and after a kill -9 its intent on disk stops
    // nothing (the audit log says it was never released).
    let fork_digest = fork10.digest().to_string();
    let signed_fork = |log: &str| {
        log.lines().any(|l| l.contains("\"event\":\"signature\"") && l.contains(&fork_digest))
    };
    assert!(!signed_fork(&std::fs::read_to_string(b.audit_log()).unwrap()));
    drop(db);
    db = b.spawn(&[]);
    cb = Client::new(Endpoint::Unix(b.socket.clone()));
    let (code, message) = refused(cb.sign_block(fork10, deadline()).await);
    assert_eq!(code, ErrorCode::DoubleSign, "the fork is refused after the restart too");
    assert!(message.contains("claimed by signer \"signer-a\""), "by etcd's record: {message}");
    let again = cb.sign_block(block10.clone(), deadline()).await.expect("the same block");
    assert!(again.signature.verify(&block10.digest(), &b.key));
    // Nor another block at a lower height or the same slot.
    let (code, _) = refused(cb.sign_block(request(&a.key, 9, at(9), 1), deadline()).await);
    assert_eq!(code, ErrorCode::DoubleSign);
    let (code, _) = refused(cb.sign_block(request(&a.key, 11, at(10), 1), deadline()).await);
    assert_eq!(code, ErrorCode::DoubleSign);

    // b moves on to 11; a, behind, learns it from etcd and refuses its own fork of 11.
    let block11 = request(&a.key, 11, at(11), 1);
    cb.sign_block(block11, deadline()).await.expect("b signs block 11");
    let (code, message) = refused(ca.sign_block(request(&a.key, 11, at(11), 3), deadline()).await);
    assert_eq!(code, ErrorCode::DoubleSign);
    assert!(message.contains("signer \"signer-b\""), "{message}");
    ca.sign_block(request(&a.key, 12, at(12), 1), deadline()).await.expect("a signs block 12");

    // Both asked at once for different blocks at each of 30 heights: one wins each height.
    for n in 20..50u32 {
        let (ra, rb) = tokio::join!(
            ca.sign_block(request(&a.key, n, at(n), 1), deadline()),
            cb.sign_block(request(&a.key, n, at(n), 2), deadline()),
        );
        match (&ra, &rb) {
            (Ok(_), Err(ClientError::Refused { code: ErrorCode::DoubleSign, .. }))
            | (Err(ClientError::Refused { code: ErrorCode::DoubleSign, .. }), Ok(_)) => {}
            _ => panic!("height {n}: {ra:?} and {rb:?}"),
        }
    }

    // Refusals are audited with their reason.
    let log = std::fs::read_to_string(b.audit_log()).unwrap();
    assert!(log.contains("\"reason\":\"shared_double_sign\""), "{log}");
    assert!(!signed_fork(&log), "no signature of the refused fork was audited");
    drop(db);

    // etcd gone: a refuses (fails closed), then stops with 75 for its supervisor to restart it.
    etcd.kill();
    let (code, message) = refused(ca.sign_block(request(&a.key, 60, at(60), 1), deadline()).await);
    assert_eq!(code, ErrorCode::Internal);
    assert!(message.contains("cannot be asked"), "{message}");
    let status = da.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(75), "{}", da.rest().join("\n"));
    let log = std::fs::read_to_string(a.audit_log()).unwrap();
    assert!(log.contains("shared guard's connection to etcd was lost"), "the stop is audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_claimed_in_time_may_be_signed_again_late_and_no_other_may() {
    let Some(program) = Etcd::program() else { return };
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(&program, dir.path());
    // a allows 60 s of clock skew; b only 1 s, so every block below is too old for b's clock.
    let (a, b) = (signer(etcd.port, "signer-a"), signer(etcd.port, "signer-b"));
    let policy = std::fs::read_to_string(&b.policy).unwrap();
    assert!(policy.contains("max_clock_skew_ms = 60000"), "{policy}");
    std::fs::write(
        &b.policy,
        policy.replace("max_clock_skew_ms = 60000", "max_clock_skew_ms = 1000"),
    )
    .unwrap();
    let (_da, _db) = (a.spawn(&[]), b.spawn(&[]));
    let mut ca = Client::new(Endpoint::Unix(a.socket.clone()));
    let mut cb = Client::new(Endpoint::Unix(b.socket.clone()));
    let ten_s_ago = |n: u32| BlockTimestamp(now_slot().0 - 20 + n);

    // a signed block 10 and went silent; the producer sends it to b, ten seconds late.
    let block10 = request(&a.key, 10, ten_s_ago(0), 1);
    ca.sign_block(block10.clone(), deadline()).await.expect("a signs block 10 in time");
    let late = cb.sign_block(block10.clone(), deadline()).await.expect("b signs it late");
    assert!(late.signature.verify(&block10.digest(), &b.key));

    // Nothing else: not another block at that height (b's own guard now holds it), and no other
    // block that old (the record does not name it: the clock limit holds).
    let fork = request(&a.key, 10, block10.header.timestamp, 2);
    let (code, message) = refused(cb.sign_block(fork, deadline()).await);
    assert_eq!(code, ErrorCode::DoubleSign, "{message}");
    let (code, message) =
        refused(cb.sign_block(request(&a.key, 11, ten_s_ago(1), 1), deadline()).await);
    assert_eq!(code, ErrorCode::ClockSkew, "{message}");
}

#[test]
fn a_signer_whose_etcd_does_not_answer_does_not_start() {
    let port = free_port();
    let s = signer(port, "signer-a");
    let out = Command::new(BIN).args(["run", "--policy"]).arg(&s.policy).output().unwrap();
    assert_eq!(out.status.code(), Some(75));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect"), "{err}");
}

#[test]
fn check_refuses_a_bad_shared_guard_section_at_its_line() {
    let s = signer(2379, "signer-a");
    assert_check_refuses(
        &s.policy,
        Some("[shared_guard]"),
        &[
            ("prefix = \"/rempart/guard/\"", "prefix = \"rempart\"", "start and end with /"),
            ("name = \"signer-a\"", "name = \"signer a\"", "without spaces"),
            ("timeout_ms = 2000", "timeout_ms = 0", "1..=10000"),
            ("etcd = \"127.0.0.1:2379\"", "etcd = \"0.0.0.0:2379\"", "etcd's address and port"),
            ("timeout_ms = 2000", "timeout_ms = 2000\nlease = 5", "unknown field"),
        ],
    );
}
