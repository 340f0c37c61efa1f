//! The real `rempart-signer` binary with the soft backend: signing over Unix and TCP, replays,
//! refusals, garbage, the CLI's exit codes, and kill -9 at random points (never two different
//! signatures for one height).

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use rand_core::RngCore;
use rempart_core::BlockTimestamp;
use rempart_core::key::Signature;
use rempart_core::protocol::ErrorCode;
use rempart_signer::client::{Client, ClientError, Endpoint};

fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(5)
}

#[test]
fn start_without_guard_state_fails_closed() {
    let s = setup(None, DEV_PUB, "");
    let out = Command::new(BIN).args(["run", "--policy"]).arg(&s.policy).output().unwrap();
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("guard init"), "{err}");
}

#[test]
fn check_reports_line_and_column_with_exit_64() {
    let s = setup(None, DEV_PUB, "");
    let out = Command::new(BIN).arg("check").arg(&s.policy).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&s.policy).unwrap().replace("127.0.0.1:", "0.0.0.0:");
    std::fs::write(&s.policy, text).unwrap();
    let out = Command::new(BIN).arg("check").arg(&s.policy).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("signer.toml:16:7") && err.contains("wildcard"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signs_over_unix_and_tcp_refuses_and_survives_garbage() {
    let s = setup(None, DEV_PUB, "");
    s.guard_init();
    let _d = s.spawn(&[]);
    let mut unix = Client::new(Endpoint::Unix(s.socket.clone()));
    let mut tcp = Client::new(format!("127.0.0.1:{}", s.tcp_port).parse().unwrap());

    let keys = unix.public_keys(deadline()).await.unwrap();
    assert_eq!(keys[0].block_signing_key, s.key);

    // Garbage on a raw connection: an error frame, and the daemon keeps serving others.
    let mut raw = std::os::unix::net::UnixStream::connect(&s.socket).unwrap();
    raw.write_all(&[5, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]).unwrap();
    let mut head = [0u8; 4];
    raw.read_exact(&mut head).unwrap();
    assert!(u32::from_le_bytes(head) > 0);
    let mut raw2 = std::os::unix::net::UnixStream::connect(&s.socket).unwrap();
    raw2.write_all(&[0xff, 0xff, 0xff, 0x7f]).unwrap(); // 2 GiB announced: closed

    let mut slot = now_slot();
    let mut unix_lat = Vec::new();
    let mut tcp_lat = Vec::new();
    for n in 2..202u32 {
        slot = BlockTimestamp(slot.0 + 1);
        let (c, lat) =
            if n % 2 == 0 { (&mut unix, &mut unix_lat) } else { (&mut tcp, &mut tcp_lat) };
        let req = request(&s.key, n, BlockTimestamp(slot.0 - 100), 1);
        let t = Instant::now();
        let r = c.sign_block(req.clone(), deadline()).await.unwrap();
        lat.push(t.elapsed());
        assert!(r.signature.verify(&req.digest(), &s.key));
    }
    let last_slot = BlockTimestamp(slot.0 - 100);
    let last = request(&s.key, 201, last_slot, 1);
    let first = unix.sign_block(last.clone(), deadline()).await.unwrap();
    let again = tcp.sign_block(last.clone(), deadline()).await.unwrap();
    assert_eq!(first.signature, again.signature, "a replay returns the stored signature");

    let refused = |e: ClientError| e.code();
    let other = request(&s.key, 201, last_slot, 9);
    assert_eq!(
        refused(unix.sign_block(other, deadline()).await.unwrap_err()),
        Some(ErrorCode::DoubleSign)
    );
    let lower = request(&s.key, 150, BlockTimestamp(last_slot.0 + 5), 9);
    assert_eq!(
        refused(unix.sign_block(lower, deadline()).await.unwrap_err()),
        Some(ErrorCode::DoubleSign)
    );
    let future = request(&s.key, 300, BlockTimestamp(now_slot().0 + 7200), 1);
    assert_eq!(
        refused(tcp.sign_block(future, deadline()).await.unwrap_err()),
        Some(ErrorCode::ClockSkew)
    );
    let mut wrong_chain = request(&s.key, 300, BlockTimestamp(last_slot.0 + 1), 1);
    wrong_chain.chain_id.0[0] ^= 1;
    assert_eq!(
        refused(tcp.sign_block(wrong_chain, deadline()).await.unwrap_err()),
        Some(ErrorCode::WrongChain)
    );
    let stranger: rempart_core::key::PublicKey =
        rempart_core::key::PrivateKey::generate(rempart_core::key::KeyType::R1).public_key();
    let unknown = request(&stranger, 300, BlockTimestamp(last_slot.0 + 1), 1);
    assert_eq!(
        refused(tcp.sign_block(unknown, deadline()).await.unwrap_err()),
        Some(ErrorCode::UnknownKey)
    );

    let status = unix.status(deadline()).await.unwrap();
    assert_eq!(status.last_signed[0].block_num, 201);
    assert_eq!(status.refusals, 5);

    let out = Command::new(BIN).args(["audit", "verify"]).arg(s.audit_log()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    for (name, lat) in [("unix", &mut unix_lat), ("tcp", &mut tcp_lat)] {
        lat.sort();
        println!(
            "soft backend over {name}: p50 {:?} p99 {:?} ({} signatures, debug build)",
            lat[lat.len() / 2],
            lat[lat.len() * 99 / 100],
            lat.len()
        );
    }
}

/// kill -9 at random points while a client signs increasing heights and replays the last
/// request: one height never gets two different signatures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loop_never_double_signs() {
    let s = setup(None, DEV_PUB, "");
    s.guard_init();
    let mut seen: BTreeMap<u32, Signature> = BTreeMap::new();
    let mut rng = rand_core::OsRng;
    // Slots start 55 s in the past and move one per new height: within the 60 s skew for the
    // whole run.
    let mut slot = BlockTimestamp(now_slot().0 - 110);
    let mut height = 1u32;
    let mut last_req = None;
    let started = Instant::now();
    let cycles = 200;
    let mut answered_after_kill = 0;
    for cycle in 0..cycles {
        let d = s.spawn(&[]);
        let kill_after = Duration::from_micros(u64::from(rng.next_u32() % 40_000));
        let endpoint = Endpoint::Unix(s.socket.clone());
        let key = s.key;
        let replay = last_req.clone();
        let next_height = height;
        let next_slot = slot;
        let worker = tokio::spawn(async move {
            let mut client = Client::new(endpoint);
            let mut got = Vec::new();
            let dl = tokio::time::Instant::now() + Duration::from_secs(2);
            if let Some(r) = replay {
                match client.sign_block(r, dl).await {
                    Ok(resp) => got.push((Some((resp.block_num, resp.signature)), None)),
                    Err(_) => return got,
                }
            }
            let (mut h, mut sl) = (next_height, next_slot);
            for _ in 0..2 {
                h += 1;
                sl = BlockTimestamp(sl.0 + 1);
                let req = request(&key, h, sl, 1);
                match client.sign_block(req.clone(), dl).await {
                    Ok(resp) => got.push((Some((resp.block_num, resp.signature)), Some((req, sl)))),
                    Err(_) => {
                        // Unanswered: it is the request to replay next cycle.
                        got.push((None, Some((req, sl))));
                        return got;
                    }
                }
            }
            got
        });
        tokio::time::sleep(kill_after).await;
        drop(d); // SIGKILL by PID, reaped
        let got = worker.await.unwrap();
        for (answer, req) in got {
            if let Some((r, sl)) = req {
                let h = r.header.block_num();
                if h > height {
                    height = h;
                    slot = sl;
                }
                last_req = Some(r);
            }
            let Some((block_num, sig)) = answer else { continue };
            if let Some(prev) = seen.get(&block_num) {
                assert_eq!(*prev, sig, "cycle {cycle}: two signatures for block {block_num}");
                answered_after_kill += 1;
            } else {
                seen.insert(block_num, sig);
            }
        }
    }
    println!(
        "{cycles} kill -9 cycles in {:?}: {} heights signed, {answered_after_kill} replays identical",
        started.elapsed(),
        seen.len()
    );
    assert!(seen.len() > 20, "too few signatures to mean anything: {}", seen.len());
    let out = Command::new(BIN).args(["audit", "verify"]).arg(s.audit_log()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
