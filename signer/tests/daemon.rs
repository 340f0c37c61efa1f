//! The real `rempart-signer` binary with the soft backend: signing over Unix and TCP, replays,
//! refusals, garbage, pipelined, out-of-order and split frames, the CLI's exit codes, and
//! kill -9 at random points (never two different signatures for one height).

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rand_core::RngCore;
use rempart_core::BlockTimestamp;
use rempart_core::key::Signature;
use rempart_core::protocol::{
    ErrorCode, ErrorResponse, FrameDecoder, Request, Response, SignBlockRequest, encode_frame,
};
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
fn a_second_signer_on_the_same_state_is_refused_and_the_first_keeps_serving() {
    let s = setup(None, DEV_PUB, "");
    s.guard_init();
    let mut first = s.spawn(&[]);
    // Each signer trusts its own watermark: two on one state could sign two blocks at a height.
    let out = Command::new(BIN).args(["run", "--policy"]).arg(&s.policy).output().unwrap();
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another process") && err.contains(".lock"), "{err}");
    // Nor may `guard init` write beside a running signer.
    let out =
        Command::new(BIN).args(["guard", "init", "--policy"]).arg(&s.policy).output().unwrap();
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another process"));
    // The refused start touched nothing: the first still answers on its socket.
    let mut raw = std::os::unix::net::UnixStream::connect(&s.socket).unwrap();
    raw.write_all(&encode_frame(&Request::PublicKeys { request_id: 1 }).unwrap()).unwrap();
    let mut buf = [0u8; 64];
    assert!(raw.read(&mut buf).unwrap() > 0);
    // Once it stops, the lock is free again.
    assert_eq!(first.terminate().code(), Some(0));
    drop(s.spawn(&[]));
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

/// Frames pipelined in one stream, sent one byte per write, with heights out of order and a
/// response frame where a request belongs: every frame is answered, in order, with its own
/// request id; the lower height and the other digest at a signed height are refused; the
/// replay gets the stored signature.
#[test]
fn pipelined_out_of_order_and_split_frames_are_answered_in_order() {
    let s = setup(None, DEV_PUB, "");
    s.guard_init();
    let _d = s.spawn(&[]);
    let base = now_slot().0 - 50;
    let sign = |id: u64, n: u32, salt: u8| {
        let mut r = request(&s.key, n, BlockTimestamp(base + n), salt);
        r.request_id = id;
        Request::SignBlock(r)
    };
    let mut bytes = Vec::new();
    for r in [Request::Status { request_id: 1 }, sign(2, 3, 1), sign(3, 2, 1), sign(4, 3, 1)] {
        bytes.extend(encode_frame(&r).unwrap());
    }
    bytes.extend(encode_frame(&sign(5, 3, 2)).unwrap());
    let stray = Response::Error(ErrorResponse {
        request_id: 9,
        code: ErrorCode::Busy,
        message: "a response, sent to the signer".into(),
    });
    bytes.extend(encode_frame(&stray).unwrap());
    bytes.extend(encode_frame(&Request::PublicKeys { request_id: 6 }).unwrap());

    let mut stream = std::os::unix::net::UnixStream::connect(&s.socket).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for b in &bytes {
        stream.write_all(std::slice::from_ref(b)).unwrap();
    }
    let mut decoder = FrameDecoder::new();
    let mut pending = Vec::new();
    let mut answers = Vec::new();
    let mut buf = [0u8; 4096];
    while answers.len() < 7 {
        let mut input = &pending[..];
        let decoded = decoder.decode::<Response>(&mut input).unwrap();
        let used = pending.len() - input.len();
        pending.drain(..used);
        match decoded {
            Some(r) => answers.push(r),
            None if !pending.is_empty() => {}
            None => {
                let n = stream.read(&mut buf).unwrap();
                assert!(n > 0, "closed after {} answers: {answers:?}", answers.len());
                pending.extend_from_slice(&buf[..n]);
            }
        }
    }
    let ids: Vec<u64> = answers.iter().map(Response::request_id).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 0, 6], "{answers:?}");
    let code = |r: &Response| match r {
        Response::Error(e) => Some(e.code),
        _ => None,
    };
    assert!(matches!(&answers[0], Response::Status(st) if st.last_signed.is_empty()));
    let Response::Signature(first) = &answers[1] else { panic!("{answers:?}") };
    assert_eq!(first.block_num, 3);
    assert_eq!(code(&answers[2]), Some(ErrorCode::DoubleSign), "height 2 after 3");
    let Response::Signature(again) = &answers[3] else { panic!("{answers:?}") };
    assert_eq!(again.signature, first.signature, "the replay gets the stored signature");
    assert_eq!(code(&answers[4]), Some(ErrorCode::DoubleSign), "another digest at height 3");
    assert_eq!(code(&answers[5]), Some(ErrorCode::Malformed), "a response is not a request");
    assert!(
        matches!(&answers[6], Response::PublicKeys { keys, .. } if keys[0].block_signing_key == s.key)
    );
}

/// An answer (block, signature) and, for a new height, the request sent with its slot.
type Exchange = (Option<(u32, Signature)>, Option<(SignBlockRequest, BlockTimestamp)>);

/// What one kill -9 cycle's worker sent and got.
#[derive(Default)]
struct Journal {
    got: Vec<Exchange>,
    forget_replay: bool,
}

/// kill -9 at random points while a client signs increasing heights and replays the last
/// request: one height never gets two different signatures. The soft backend's signatures are
/// deterministic (RFC 6979), so this proves the guard's refusals; the SoftHSM2 run below proves
/// that a replay after a crash gets the released signature back, not a fresh one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loop_never_double_signs() {
    let s = setup(None, DEV_PUB, "");
    s.guard_init();
    kill_9_loop(&s, &[], 200).await;
}

/// The same with SoftHSM2 R1, whose every signature is new (a random nonce): a replay answered
/// with anything but the signature already released would show here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loop_with_an_hsm_replays_the_released_signature() {
    let Some(hsm) = softhsm() else { return };
    let key = hsm.new_key("r1", "eosio-r1");
    let s = setup(Some(&pkcs11_backend("T", "eosio-r1", SOFTHSM_MODULE)), &key, "");
    s.guard_init();
    kill_9_loop(&s, &hsm.env(), 100).await;
}

async fn kill_9_loop(s: &Setup, env: &[(&str, &str)], cycles: u32) {
    let mut seen: BTreeMap<u32, Signature> = BTreeMap::new();
    let mut rng = rand_core::OsRng;
    // Slots start 55 s in the past and move at least one per new height, never more than 50 s
    // from the clock: within the 60 s skew for the whole run.
    let mut slot = BlockTimestamp(now_slot().0 - 110);
    let mut height = 1u32;
    let mut last_req = None;
    let started = Instant::now();
    let mut answered_after_kill = 0;
    for cycle in 0..cycles {
        let d = s.spawn(env);
        let kill_after = Duration::from_micros(u64::from(rng.next_u32() % 40_000));
        let endpoint = Endpoint::Unix(s.socket.clone());
        let key = s.key;
        let replay = last_req.clone();
        let next_height = height;
        let next_slot = slot;
        // Odd cycles kill just after a fresh signature (so heights advance even on a loaded
        // machine where the daemon may not answer within 40 ms); even cycles at any point.
        let (signed_tx, mut signed_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        // What the worker sent and got, recorded as it happens: the worker is aborted right
        // after the kill (its client would otherwise retry until its deadline). A request is
        // recorded before it is sent, so an unanswered one is replayed next cycle.
        let journal: Arc<Mutex<Journal>> = Arc::default();
        let j = journal.clone();
        let worker = tokio::spawn(async move {
            let mut client = Client::new(endpoint);
            let dl = tokio::time::Instant::now() + Duration::from_secs(10);
            if let Some(r) = replay {
                match client.sign_block(r, dl).await {
                    Ok(resp) => {
                        j.lock().unwrap().got.push((Some((resp.block_num, resp.signature)), None))
                    }
                    // The guard answers a signed request before the clock is checked: a
                    // request too old for the clock was never signed, and is dropped.
                    Err(e) if e.code() == Some(ErrorCode::ClockSkew) => {
                        j.lock().unwrap().forget_replay = true;
                    }
                    Err(_) => return,
                }
            }
            let (mut h, mut sl) = (next_height, next_slot);
            for _ in 0..2 {
                // Slots follow the clock (a loaded machine may take minutes for the loop) and
                // stay inside the 60 s skew the policy allows.
                let now = now_slot().0;
                if sl.0 + 1 > now + 100 {
                    break;
                }
                h += 1;
                sl = BlockTimestamp((sl.0 + 1).max(now - 100));
                let req = request(&key, h, sl, 1);
                let entry = {
                    let mut j = j.lock().unwrap();
                    j.got.push((None, Some((req.clone(), sl))));
                    j.got.len() - 1
                };
                match client.sign_block(req, dl).await {
                    Ok(resp) => {
                        j.lock().unwrap().got[entry].0 = Some((resp.block_num, resp.signature));
                        let _ = signed_tx.send(());
                    }
                    Err(_) => return,
                }
            }
        });
        if cycle % 2 == 1 {
            // Ends with None when the worker stops without a fresh signature.
            let _ = tokio::time::timeout(Duration::from_secs(10), signed_rx.recv()).await;
            let jitter = u64::from(rng.next_u32() % 2_000);
            tokio::time::sleep(Duration::from_micros(jitter)).await;
        } else {
            tokio::time::sleep(kill_after).await;
        }
        drop(d); // SIGKILL by PID, reaped
        worker.abort();
        let _ = worker.await;
        let Journal { got, forget_replay } = std::mem::take(&mut *journal.lock().unwrap());
        if forget_replay {
            last_req = None;
        }
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
    // The last kill may have cut the log's last line: one more start sets it aside.
    assert_eq!(s.start_and_stop(env).code(), Some(0));
    let out = Command::new(BIN).args(["audit", "verify"]).arg(s.audit_log()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let log = std::fs::read_to_string(s.audit_log()).unwrap();
    println!("audit lines cut by a kill and set aside: {}", log.matches("\"torn_tail\"").count());
}

/// A kill -9 between two pages of an audit write, or a power loss, leaves the log's last line
/// without its newline. That line was never acknowledged, so the signer starts again: the bytes
/// go to a file beside the log, and the log records it. Found by the kill -9 loop above, where
/// the next start used to refuse (exit 65) until an operator moved the whole log aside.
#[test]
fn a_signer_starts_again_after_a_crash_cut_its_last_audit_line() {
    let s = setup(None, DEV_PUB, "");
    s.guard_init();
    assert_eq!(s.start_and_stop(&[]).code(), Some(0));
    let verify = || Command::new(BIN).args(["audit", "verify"]).arg(s.audit_log()).output();
    let before = std::fs::read(s.audit_log()).unwrap();
    let lines = before.iter().filter(|&&b| b == b'\n').count();
    let torn = format!(r#"{{"seq":{},"time_ms":17"#, lines + 1);
    std::fs::write(s.audit_log(), [&before[..], torn.as_bytes()].concat()).unwrap();
    let out = verify().unwrap();
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cut by a crash"));

    let mut d = s.spawn(&[]);
    let log = d.wait_line("serving chain", Duration::from_secs(20)).join("\n");
    assert!(log.contains("cut short by a crash"), "{log}");
    d.terminate_cleanly();
    let out = verify().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = std::fs::read_to_string(s.audit_log()).unwrap();
    assert!(after.as_bytes().starts_with(&before));
    let event: serde_json::Value = serde_json::from_str(after.lines().nth(lines).unwrap()).unwrap();
    assert_eq!(event["event"], "torn_tail");
    assert_eq!(event["line"], lines + 1);
    let saved = std::fs::read(event["saved_to"].as_str().unwrap()).unwrap();
    assert_eq!(saved, torn.as_bytes());
}

/// A write to the audit log that fails half-way (here the file-size limit, set on the running
/// signer with prlimit, cuts a signature's line short) releases nothing and ends nothing: the
/// signer catches SIGXFSZ, refuses the block, and once the disk takes writes again its next
/// line goes where the cut one began, so the chain stays whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_audit_write_releases_nothing_and_leaves_the_chain_whole() {
    let s = setup(None, DEV_PUB, "");
    s.guard_init();
    let mut d = s.spawn(&[]);
    d.wait_line("serving chain", Duration::from_secs(20));
    let mut c = Client::new(Endpoint::Unix(s.socket.clone()));
    let slot = BlockTimestamp(now_slot().0 - 10);
    c.sign_block(request(&s.key, 2, slot, 1), deadline()).await.unwrap();
    let len = std::fs::metadata(s.audit_log()).unwrap().len();
    let pid = d.child.id().to_string();
    let prlimit = |limit: String| {
        let out = Command::new("prlimit")
            // The soft limit only: raising a hard limit needs CAP_SYS_RESOURCE.
            .args(["--pid", &pid, &format!("--fsize={limit}:unlimited")])
            .output()
            .expect("prlimit (util-linux) runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    prlimit(format!("{}", len + 40));

    let e = c.sign_block(request(&s.key, 3, BlockTimestamp(slot.0 + 1), 1), deadline()).await;
    let e = e.expect_err("nothing is released when its audit line cannot be written");
    assert_eq!(e.code(), Some(ErrorCode::Internal), "{e}");
    assert!(e.to_string().contains("File too large"), "{e}");
    assert!(d.running(), "SIGXFSZ does not end the signer");
    assert_eq!(std::fs::metadata(s.audit_log()).unwrap().len(), len + 40, "a line was cut");
    let log = d.wait_line("file-size limit", Duration::from_secs(10)).join("\n");
    assert!(log.contains("SIGXFSZ"), "{log}");

    prlimit("unlimited".into());
    let r = c.sign_block(request(&s.key, 4, BlockTimestamp(slot.0 + 2), 1), deadline()).await;
    assert_eq!(r.unwrap().block_num, 4);
    d.terminate_cleanly();
    let out = Command::new(BIN).args(["audit", "verify"]).arg(s.audit_log()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(s.audit_log()).unwrap();
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let signed: Vec<u64> = lines
        .iter()
        .filter(|l| l["event"] == "signature")
        .map(|l| l["block_num"].as_u64().unwrap())
        .collect();
    assert_eq!(signed, [2, 4], "block 3 was never released, so never recorded as signed");
    assert!(!text.contains("torn_tail"), "the running signer undid the cut itself");
}

/// A log reader that stalls (a log shipper down, a container runtime's blocking log driver)
/// costs log lines, never signatures: with its stderr a pipe nothing reads, the sandboxed
/// signer logs a warning for each of 20 000 bad frames (a full pipe after a few hundred, its
/// log queue after 16 384), keeps answering them, signs a block in time, counts the lines it
/// dropped in its metrics, and still stops cleanly. Written in place, the first full pipe
/// blocked every thread at its next line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_log_reader_never_holds_up_signing() {
    const BAD_FRAMES: usize = 20_000;
    const PER_CONNECTION: usize = 8;
    let s = sandboxed_with_metrics();
    s.guard_init();
    let (mut d, _unread) = s.spawn_with_stalled_log();
    let socket = s.socket.clone();
    let flood = tokio::task::spawn_blocking(move || {
        let bad = [5u8, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff].repeat(PER_CONNECTION);
        for _ in 0..BAD_FRAMES / PER_CONNECTION {
            let mut raw = std::os::unix::net::UnixStream::connect(&socket).unwrap();
            raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            raw.write_all(&bad).unwrap();
            // Each bad frame is answered with an error frame, then the connection is closed.
            let mut answers = Vec::new();
            raw.read_to_end(&mut answers)
                .expect("the signer stopped answering while nothing read its log");
            assert!(answers.len() >= PER_CONNECTION * 5, "{} bytes answered", answers.len());
        }
    });
    flood.await.unwrap();

    let mut c = Client::new(Endpoint::Unix(s.socket.clone()));
    let req = request(&s.key, 2, BlockTimestamp(now_slot().0 - 100), 1);
    let signed = c.sign_block(req.clone(), deadline()).await.unwrap();
    assert!(signed.signature.verify(&req.digest(), &s.key));

    let mut dropped = 0;
    wait_for("dropped log lines in the metrics", Duration::from_secs(20), || {
        dropped = s.metric("rempart_signer_log_lines_dropped_total").unwrap_or(0);
        dropped > 0
    });
    assert!(dropped < BAD_FRAMES as u64, "{dropped} lines dropped");
    d.terminate_cleanly();
    let out = Command::new(BIN).args(["audit", "verify"]).arg(s.audit_log()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The audit log is sealed at its configured size while the sandboxed signer signs, and the
/// chain carries on in a new log: every file verifies as one chain from seq 1, a restart
/// after kill -9 carries on from the live log alone, and a crash between sealing and the new
/// log taking over loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_is_sealed_at_its_size_and_the_chain_carries_on() {
    let s = sandboxed_with_metrics();
    let policy = std::fs::read_to_string(&s.policy).unwrap();
    let policy = policy.replace(
        "audit_log = \"state/audit.jsonl\"",
        "audit_log = \"state/audit.jsonl\"\naudit_segment_mib = 1",
    );
    std::fs::write(&s.policy, policy).unwrap();
    s.guard_init();
    let sealed = || rempart_signer::audit::sealed_logs(&s.audit_log()).unwrap();
    let verify_all = || {
        let mut files = sealed();
        files.push(s.audit_log());
        Command::new(BIN).args(["audit", "verify"]).args(&files).output().unwrap()
    };

    let mut d = s.spawn(&[]);
    let mut c = Client::new(Endpoint::Unix(s.socket.clone()));
    // Signatures, and refusals (audited too) of blocks an hour ahead, until the log is sealed.
    let mut n = 2u32;
    // One slot per signature, from 50 s back: well inside the allowed skew.
    let slot = |n: u32| BlockTimestamp(now_slot().0 - 100 + n);
    let mut refused = 0;
    while sealed().is_empty() {
        assert!(refused < 10_000, "no sealed audit log after {refused} refusals");
        let ahead = request(&s.key, 1_000_000, BlockTimestamp(now_slot().0 + 7200), 1);
        c.sign_block(ahead, deadline()).await.unwrap_err();
        refused += 1;
        if refused % 100 == 0 {
            let req = request(&s.key, n, slot(n), 1);
            c.sign_block(req, deadline()).await.unwrap();
            n += 1;
        }
    }
    let first = sealed();
    assert_eq!(first.len(), 1);
    let size = std::fs::metadata(&first[0]).unwrap().len();
    assert!((1 << 20..(1 << 20) + 4096).contains(&size), "sealed at {size} bytes");
    let out = verify_all();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("(seq 1..="), "{said}");
    // The metrics say so: one seal, none failed, and the live log's size.
    wait_for("the seal in the metrics", Duration::from_secs(20), || {
        s.metric("rempart_signer_audit_seals_total") == Some(1)
            && s.metric("rempart_signer_audit_seal_failures_total") == Some(0)
            && s.metric("rempart_signer_audit_log_bytes").is_some_and(|b| b > 0 && b < 1 << 20)
    });

    // kill -9, then a start that reads the live log only, and signs on.
    drop(d);
    d = s.spawn(&[]);
    let log = d.wait_line("serving chain", Duration::from_secs(20)).join("\n");
    assert!(!log.contains("does not reach back"), "{log}");
    let req = request(&s.key, n, slot(n), 1);
    c.sign_block(req, deadline()).await.unwrap();
    n += 1;
    d.terminate_cleanly();

    // A crash after the live log was renamed sealed, before the new one took over.
    let live = verify_all();
    assert!(live.status.success());
    let last_seq = {
        let text = std::fs::read_to_string(s.audit_log()).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        v["seq"].as_u64().unwrap()
    };
    let moved = s.state_dir().join(format!("audit.jsonl.{last_seq:012}"));
    std::fs::rename(s.audit_log(), &moved).unwrap();
    let mut d = s.spawn(&[]);
    let log = d.wait_line("serving chain", Duration::from_secs(20)).join("\n");
    assert!(log.contains("carries on from the newest sealed log"), "{log}");
    let req = request(&s.key, n, slot(n), 1);
    c.sign_block(req, deadline()).await.unwrap();
    d.terminate_cleanly();
    assert_eq!(sealed().len(), 2);
    let out = verify_all();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 files"));
}
