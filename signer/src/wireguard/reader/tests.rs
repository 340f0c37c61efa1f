use super::*;

/// A UAPI answer with both kinds of secret, keys shortened to what the filter looks at.
const ANSWER_WITH_SECRETS: &str = "private_key=e84b5a6d\nlisten_port=51820\npublic_key=\
    b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33\npreshared_key=18851509\n\
    rx_bytes=2224\ntx_bytes=38333\nerrno=0\n\n";

#[test]
fn secrets_never_survive_the_filter() {
    let kept = without_secrets(ANSWER_WITH_SECRETS);
    assert!(!kept.contains("e84b5a6d"), "{}", kept.as_str());
    assert!(!kept.contains("18851509"), "{}", kept.as_str());
    assert!(!kept.contains("private_key") && !kept.contains("preshared_key"));
    assert!(kept.starts_with("listen_port=51820\npublic_key=b859"), "{}", kept.as_str());
    assert!(kept.ends_with("errno=0\n\n"), "the blank line that ends the answer stays");
    let peers = super::super::health::parse_uapi(&kept, std::time::SystemTime::now()).unwrap();
    assert_eq!((peers.len(), peers[0].rx_bytes, peers[0].tx_bytes), (1, 2224, 38333));
}

#[test]
fn frames_round_trip() {
    let mut bytes = frame(7, Ok("errno=0\n\n"));
    bytes.extend(frame(8, Err("cannot connect")));
    let mut r = bytes.as_slice();
    let a = read_frame(&mut r).unwrap().unwrap();
    assert_eq!((a.request, a.body), (7, Ok("errno=0\n\n".to_string())));
    let b = read_frame(&mut r).unwrap().unwrap();
    assert_eq!((b.request, b.body), (8, Err("cannot connect".to_string())));
    assert!(read_frame(&mut r).unwrap().is_none(), "end of file between frames");
}

#[test]
fn bad_frames_are_errors_not_allocations() {
    // A length over the UAPI limit is refused before any allocation.
    let mut huge = vec![1, ANSWER];
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(read_frame(&mut huge.as_slice()).unwrap_err().contains("over the"));
    let mut status = frame(1, Ok("x"));
    status[1] = 9;
    assert!(read_frame(&mut status.as_slice()).unwrap_err().contains("unknown status 9"));
    let cut = frame(1, Ok("errno=0\n\n"));
    assert!(read_frame(&mut &cut[..cut.len() - 1]).unwrap_err().contains("inside a frame"));
    assert!(read_frame(&mut &cut[..3]).unwrap_err().contains("frame header"));
    let mut latin1 = frame(1, Ok("ab"));
    latin1[HEADER] = 0xff;
    assert!(read_frame(&mut latin1.as_slice()).unwrap_err().contains("UTF-8"));
}

#[test]
fn a_long_error_text_is_cut() {
    let long = "e".repeat(10_000);
    let f = read_frame(&mut frame(2, Err(&long)).as_slice()).unwrap().unwrap();
    assert_eq!(f.body.unwrap_err().len(), 4096);
}

#[test]
fn arguments_are_checked() {
    let args = |v: &[&str]| parse(v.iter().map(OsString::from).collect());
    assert!(args(&["--seccomp", "p.json"]).err().unwrap().contains("--socket is required"));
    assert!(args(&["--socket"]).err().unwrap().contains("needs a value"));
    assert!(
        args(&["--socket", "s", "--seccomp", "p", "--try", "fork"])
            .err()
            .unwrap()
            .contains("unknown action")
    );
    let ok =
        args(&["--socket", "/run/wireguard/x.sock", "--seccomp", "p", "--memory-lock", "current"])
            .unwrap();
    assert_eq!((ok.attempt, ok.memory_lock), (Try::Serve, MemoryLock::Current));
    assert_eq!(
        policy_beside(Path::new("/etc/rempart/seccomp/signer.x86_64.json")),
        Path::new(&format!("/etc/rempart/seccomp/wg-stats-reader.{}.json", std::env::consts::ARCH))
    );
}

#[test]
fn a_missing_reader_policy_is_a_warning_naming_the_file_and_what_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let signer = dir.path().join("signer.x86_64.json");
    let reader = policy_beside(&signer);
    let warning = missing_policy(true, &signer).expect("a warning when the file is missing");
    assert!(warning.contains(&reader.display().to_string()), "{warning}");
    assert!(warning.contains("per-peer") && warning.contains("still signs"), "{warning}");
    assert!(!warning.contains("error"), "a warning, worded as one: {warning}");
    assert_eq!(missing_policy(false, &signer), None, "no [wireguard] or no sandbox: no child");
    std::fs::write(&reader, "{}").unwrap();
    assert_eq!(missing_policy(true, &signer), None, "installed");
}
