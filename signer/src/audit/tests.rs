use std::sync::Arc;

use super::*;

fn stop(reason: &str) -> AuditEvent {
    AuditEvent::Stop { reason: reason.into() }
}

#[test]
fn appended_log_verifies_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path).unwrap();
    assert!(log.is_empty());
    log.append(&stop("a")).unwrap();
    log.append(&stop("b")).unwrap();
    drop(log);
    let mut log = AuditLog::open(&path).unwrap();
    assert_eq!(log.len(), 2);
    log.append(&stop("c")).unwrap();
    let v = verify(&path).unwrap();
    assert_eq!(v.lines, 3);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.lines().next().unwrap().contains(GENESIS_PREV));
    assert!(text.contains("\"event\":\"stop\""));
}

fn broken_line(path: &Path) -> u64 {
    match verify(path) {
        Err(AuditError::Broken { line, .. }) => line,
        other => panic!("expected a broken log, got {other:?}"),
    }
}

#[test]
fn tampering_is_found_at_the_right_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path).unwrap();
    for r in ["a", "b", "c", "d"] {
        log.append(&stop(r)).unwrap();
    }
    drop(log);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();

    let write = |ls: &[&str], tail: &str| std::fs::write(&path, ls.join("\n") + tail).unwrap();
    // Removed line 2: line 2 (formerly 3) no longer chains.
    write(&[lines[0], lines[2], lines[3]], "\n");
    assert_eq!(broken_line(&path), 2);
    // Edited line 3: line 4 breaks (its prev no longer matches).
    let edited = lines[2].replace("\"c\"", "\"x\"");
    write(&[lines[0], lines[1], &edited, lines[3]], "\n");
    assert_eq!(broken_line(&path), 4);
    // Swapped lines.
    write(&[lines[1], lines[0], lines[2], lines[3]], "\n");
    assert_eq!(broken_line(&path), 1);
    // Cut last line.
    write(&lines, "");
    assert_eq!(broken_line(&path), 4);
    // Garbage.
    write(&[lines[0], "{not json"], "\n");
    assert_eq!(broken_line(&path), 2);
    // The daemon refuses to append to a broken log.
    assert!(matches!(AuditLog::open(&path), Err(AuditError::RefuseToAppend { line: 2, .. })));
}

#[test]
fn lines_from_many_threads_make_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let writer = Arc::new(AuditWriter::new(AuditLog::open(&path).unwrap()));
    let callers: Vec<_> = (0..4)
        .map(|t| {
            let w = writer.clone();
            std::thread::spawn(move || {
                for i in 0..10 {
                    let (written, took) = w.append(&stop(&format!("line {t}/{i}")));
                    written.unwrap();
                    assert!(took > Duration::ZERO);
                }
            })
        })
        .collect();
    for c in callers {
        c.join().unwrap();
    }
    let verified = verify(&path).unwrap();
    assert_eq!(verified.lines, 40);
    assert_eq!(writer.position(), (40, verified.last_hash));
    let text = std::fs::read_to_string(&path).unwrap();
    for t in 0..4 {
        for i in 0..10 {
            assert_eq!(text.matches(&format!("\"line {t}/{i}\"")).count(), 1);
        }
    }
}

#[test]
fn open_reading_shows_every_line_with_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path).unwrap();
    for i in 0..3 {
        log.append(&stop(&format!("s{i}"))).unwrap();
    }
    let (seq, last) = log.position();
    drop(log);
    let mut seen = Vec::new();
    let log = AuditLog::open_reading(&path, &mut |l| {
        seen.push((l.seq, l.hash.to_string(), l.value["reason"].as_str().unwrap().to_string()));
    })
    .unwrap();
    assert_eq!(log.position(), (seq, last.clone()));
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2], (3, last, "s2".to_string()));
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 2, 3]);
}

/// A last line cut short by a crash (kill -9 between two pages of its write, or a power loss)
/// was never acknowledged: opening the log keeps its bytes in a file beside it, cuts it off and
/// records that, so the daemon starts again and the chain verifies. `verify` still reports it
/// while it is there, and a log whose last line is complete but bad still refuses.
#[test]
fn a_torn_last_line_is_moved_aside_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path).unwrap();
    for r in ["a", "b", "c"] {
        log.append(&stop(r)).unwrap();
    }
    drop(log);
    let whole = std::fs::read(&path).unwrap();
    // A fourth line cut after its first 30 bytes, then one cut just before its newline.
    for cut in [30usize, 0] {
        let good = std::fs::read(&path).unwrap();
        let n = verify(&path).unwrap().lines;
        let line =
            format!(r#"{{"seq":{},"time_ms":1,"event":"stop","reason":"d","prev":"x"}}"#, n + 1);
        let torn = if cut == 0 { line.as_bytes() } else { &line.as_bytes()[..cut] };
        std::fs::write(&path, [&good[..], torn].concat()).unwrap();
        assert_eq!(broken_line(&path), n + 1);

        let mut log = AuditLog::open(&path).unwrap();
        assert_eq!(log.len(), n + 1, "the cut is recorded as the next line");
        log.append(&stop("after")).unwrap();
        drop(log);
        assert_eq!(verify(&path).unwrap().lines, n + 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(std::str::from_utf8(&good).unwrap()), "no complete line changes");
        let event: serde_json::Value =
            serde_json::from_str(text.lines().nth(n as usize).unwrap()).unwrap();
        assert_eq!(event["event"], "torn_tail");
        assert_eq!(event["line"], n + 1);
        assert_eq!(event["bytes"], torn.len());
        assert_eq!(event["sha256"], hex::encode(Sha256::digest(torn)));
        let saved = std::fs::read(event["saved_to"].as_str().unwrap()).unwrap();
        assert_eq!(saved, torn, "the torn bytes are kept as they were");
    }
    assert!(std::fs::read(&path).unwrap().starts_with(&whole));

    // A complete last line that does not chain is not a torn write.
    let good = std::fs::read(&path).unwrap();
    std::fs::write(&path, [&good[..], b"{\"seq\":99}\n"].concat()).unwrap();
    assert!(matches!(AuditLog::open(&path), Err(AuditError::RefuseToAppend { .. })));
    // Nor is an unterminated tail longer than any line the signer writes.
    std::fs::write(&path, [&good[..], &vec![b'x'; MAX_LINE + 1][..]].concat()).unwrap();
    assert!(matches!(AuditLog::open(&path), Err(AuditError::RefuseToAppend { .. })));
    assert_eq!(std::fs::read(&path).unwrap().len(), good.len() + MAX_LINE + 1, "left as found");
}

fn sealed_files(path: &Path) -> Vec<PathBuf> {
    sealed_logs(path).unwrap()
}

#[test]
fn a_full_log_is_sealed_and_the_chain_carries_on_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open_segmented(&path, Some(300), false, &mut |_| {}).unwrap();
    for i in 0..20 {
        log.append(&stop(&format!("reason {i}"))).unwrap();
    }
    let (seq, last) = log.position();
    let stats = log.stats();
    drop(log);
    let sealed = sealed_files(&path);
    assert!(sealed.len() >= 5, "{sealed:?}");
    assert_eq!(stats.seals(), sealed.len() as u64);
    assert_eq!(stats.seal_failures(), 0);
    assert_eq!(stats.live_bytes(), std::fs::metadata(&path).unwrap().len());
    // Each sealed file is named by its last seq and holds about the size asked for.
    for f in &sealed {
        let v = verify(f).unwrap();
        let name = f.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, format!("audit.jsonl.{:012}", v.first_seq + v.lines - 1));
        assert!(std::fs::metadata(f).unwrap().len() < 300 + 200, "{name}");
    }
    // The live log starts with a continued line naming the newest sealed file.
    let live = verify(&path).unwrap();
    assert_eq!(live.continues.as_deref(), sealed.last().unwrap().file_name().unwrap().to_str());
    assert_eq!(live.last_hash, last);
    // All of them verify as one chain from seq 1, and every event is in it once.
    let mut all = sealed.clone();
    all.push(path.clone());
    let chain = verify_chain(&all).unwrap();
    assert_eq!((chain.first_seq, chain.first_seq + chain.lines - 1), (1, seq));
    assert_eq!(chain.first_prev, GENESIS_PREV);
    let text: String = all.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
    for i in 0..20 {
        assert_eq!(text.matches(&format!("\"reason {i}\"")).count(), 1);
    }
    // A file left out, or two out of order, breaks the chain at the file that follows.
    let skipped = [&all[..1], &all[2..]].concat();
    match verify_chain(&skipped) {
        Err(AuditError::Broken { path: p, line: 1, reason }) => {
            assert_eq!(p, all[2]);
            assert!(reason.contains("does not continue"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Reopened, the log starts where it ended, reading only the live file.
    let mut seen = Vec::new();
    let mut log =
        AuditLog::open_segmented(&path, Some(300), false, &mut |l| seen.push(l.seq)).unwrap();
    assert_eq!(seen.first().copied(), Some(live.first_seq));
    assert_eq!(log.position(), (seq, last));
    log.append(&stop("after")).unwrap();
    drop(log);
    let mut all = sealed_files(&path);
    all.push(path.clone());
    assert_eq!(verify_chain(&all).unwrap().first_seq, 1);
}

#[test]
fn history_shows_the_sealed_file_before_the_live_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open_segmented(&path, Some(400), false, &mut |_| {}).unwrap();
    for i in 0..12 {
        log.append(&stop(&format!("{i}"))).unwrap();
    }
    drop(log);
    let sealed = sealed_files(&path);
    let before = verify(sealed.last().unwrap()).unwrap();
    let mut seen = Vec::new();
    AuditLog::open_segmented(&path, Some(400), true, &mut |l| seen.push(l.seq)).unwrap();
    // The sealed file's lines, then the live log's, in order, each once.
    assert_eq!(seen.first().copied(), Some(before.first_seq));
    assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "{seen:?}");
    assert_eq!(seen.last().copied(), Some(12 + sealed.len() as u64));

    // Another file under the sealed log's name (it does not end where the live log begins)
    // is left out: only the live log's lines are shown, and the log still opens.
    let other = dir.path().join("other.jsonl");
    let mut log = AuditLog::open(&other).unwrap();
    log.append(&stop("elsewhere")).unwrap();
    drop(log);
    std::fs::rename(&other, sealed.last().unwrap()).unwrap();
    let mut seen = Vec::new();
    AuditLog::open_segmented(&path, Some(400), true, &mut |l| seen.push(l.seq)).unwrap();
    assert_eq!(seen.first().copied(), Some(verify(&path).unwrap().first_seq));
}

#[test]
fn a_crash_while_sealing_loses_no_line_and_the_chain_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open_segmented(&path, None, false, &mut |_| {}).unwrap();
    for i in 0..5 {
        log.append(&stop(&format!("{i}"))).unwrap();
    }
    let (seq, last) = log.position();
    drop(log);
    // Crash after the new log was written but before it took over: the leftover goes, and the
    // log goes on as it was.
    let next = dir.path().join("audit.jsonl.next");
    std::fs::write(&next, "{\"half\":").unwrap();
    let log = AuditLog::open_segmented(&path, None, false, &mut |_| {}).unwrap();
    assert!(!next.exists());
    assert_eq!(log.position(), (seq, last.clone()));
    drop(log);
    // Crash after the log was renamed sealed but before the new one took over: the next open
    // carries on from the sealed file.
    let sealed = dir.path().join(format!("audit.jsonl.{seq:012}"));
    std::fs::rename(&path, &sealed).unwrap();
    let mut seen = 0;
    let mut log = AuditLog::open_segmented(&path, None, false, &mut |_| seen += 1).unwrap();
    assert_eq!(seen, 5, "the sealed file is read to find where the chain ends");
    assert_eq!(log.position().0, seq + 1);
    log.append(&stop("after")).unwrap();
    drop(log);
    let live = verify(&path).unwrap();
    assert_eq!(live.continues.as_deref(), sealed.file_name().unwrap().to_str());
    assert_eq!(live.first_prev, last);
    assert_eq!(verify_chain(&[sealed, path]).unwrap().lines, 7);
}

#[test]
fn a_seal_that_fails_keeps_appending_to_the_same_log_and_is_tried_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open_segmented(&path, Some(200), false, &mut |_| {}).unwrap();
    log.append(&stop("a")).unwrap();
    log.append(&stop("b")).unwrap();
    // A file already holds the name the seal would take: sealed files are never overwritten.
    let taken = dir.path().join(format!("audit.jsonl.{:012}", log.position().0));
    std::fs::write(&taken, "not ours").unwrap();
    log.append(&stop("c")).unwrap();
    assert_eq!((log.stats().seals(), log.stats().seal_failures()), (0, 1));
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), "not ours");
    assert!(!dir.path().join("audit.jsonl.next").exists());
    // The seal is tried again a sixteenth of the size later (under the next seq's name), and
    // a new log half-written by an earlier failed seal does not stand in its way.
    std::fs::write(dir.path().join("audit.jsonl.next"), "{\"half\":").unwrap();
    log.append(&stop("d")).unwrap();
    assert_eq!((log.stats().seals(), log.stats().seal_failures()), (1, 1));
    drop(log);
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), "not ours");
    let sealed = dir.path().join("audit.jsonl.000000000003");
    assert_eq!(verify(&sealed).unwrap().lines, 3);
    let v = verify(&path).unwrap();
    assert_eq!((v.first_seq, v.continues.as_deref()), (4, Some("audit.jsonl.000000000003")));
    assert_eq!(verify_chain(&[sealed, path]).unwrap().lines, 5);
}

#[test]
fn a_continued_line_anywhere_but_first_breaks_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path).unwrap();
    log.append(&stop("a")).unwrap();
    log.append(&AuditEvent::Continued { from: "audit.jsonl.000000000009".into() }).unwrap();
    drop(log);
    // In place it chains like any other line; what it cannot do is restart the chain there.
    assert_eq!(verify(&path).unwrap().first_seq, 1);
    let text = std::fs::read_to_string(&path).unwrap();
    let second = text.lines().nth(1).unwrap().replace("\"seq\":2", "\"seq\":10");
    std::fs::write(&path, format!("{}\n{second}\n", text.lines().next().unwrap())).unwrap();
    assert_eq!(broken_line(&path), 2);
}
