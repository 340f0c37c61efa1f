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
fn lines_from_the_writer_thread_and_the_caller_make_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let writer = Arc::new(AuditWriter::new(AuditLog::open(&path).unwrap()));
    // Several callers at once, each handing a line to the writer thread and writing one
    // directly: every line is written once, and the hash chain holds.
    let callers: Vec<_> = (0..4)
        .map(|t| {
            let w = writer.clone();
            std::thread::spawn(move || {
                for i in 0..10 {
                    let pending = w.start(stop(&format!("pending {t}/{i}")));
                    let (direct, _) = w.append(&stop(&format!("direct {t}/{i}")));
                    direct.unwrap();
                    let (written, took) = pending.wait();
                    written.unwrap();
                    assert!(took > Duration::ZERO);
                }
            })
        })
        .collect();
    for c in callers {
        c.join().unwrap();
    }
    assert_eq!(verify(&path).unwrap().lines, 80);
    let text = std::fs::read_to_string(&path).unwrap();
    for t in 0..4 {
        for i in 0..10 {
            assert_eq!(text.matches(&format!("\"pending {t}/{i}\"")).count(), 1);
        }
    }
}

#[test]
fn a_withdrawn_line_is_written_once_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let writer = AuditWriter::new(AuditLog::open(&path).unwrap());
    let mut written = 0;
    for i in 0..20 {
        match writer.start(stop(&format!("maybe {i}"))).withdraw() {
            None => {}
            Some((r, _)) => {
                r.unwrap();
                written += 1;
            }
        }
        assert_eq!(verify(&path).unwrap().lines, written);
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.matches("maybe").count(), usize::try_from(written).unwrap());
}
