//! `--pin-workers`: each worker thread on a CPU of its own.

use std::ffi::OsStr;
use std::time::Duration;

use http::Request;
use http_body_util::Full;

use crate::support::{Client, ServedBinary, Upstream, wait_for};

/// The CPUs this test process may run on, as `Cpus_allowed_list` writes them, and as a list.
fn allowed_cpus() -> Vec<usize> {
    let set = rustix::thread::sched_getaffinity(None).expect("sched_getaffinity");
    (0..rustix::thread::CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect()
}

/// Each thread of `pid`: (name, the CPUs it may run on as a list).
fn threads(pid: rustix::process::Pid) -> Vec<(String, Vec<usize>)> {
    let dir = format!("/proc/{}/task", pid.as_raw_nonzero());
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("read task directory") {
        let path = entry.expect("task entry").path();
        let name = std::fs::read_to_string(path.join("comm")).expect("comm").trim().to_owned();
        let status = std::fs::read_to_string(path.join("status")).expect("status");
        let list = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .expect("Cpus_allowed_list")
            .trim()
            .to_owned();
        out.push((name, parse_cpu_list(&list)));
    }
    out
}

/// "0-2,4" → [0, 1, 2, 4].
fn parse_cpu_list(list: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                cpus.extend(a.parse::<usize>().expect("cpu")..=b.parse::<usize>().expect("cpu"))
            }
            None => cpus.push(part.parse().expect("cpu")),
        }
    }
    cpus
}

/// Worker 0 (the main thread) and worker 1 each hold one of the first two CPUs the process may
/// use, the other threads keep them all, and both protocols are served.
#[tokio::test]
async fn pinned_workers_each_hold_a_cpu_of_their_own() {
    let allowed = allowed_cpus();
    assert!(allowed.len() >= 2, "needs two CPUs, this process may use {allowed:?}");
    let up = Upstream::start("a").await;
    let args = [OsStr::new("--workers"), OsStr::new("2"), OsStr::new("--pin-workers")];
    let gw = ServedBinary::start_args(&[up.addr], &[], &args).await;

    // Answered, so worker 0 is past its pinning (its admin listener answers earlier).
    for h2 in [false, true] {
        let mut client = Client::connect(gw.tls, h2).await;
        let req = Request::get("https://localhost/v1/chain/get_info")
            .body(Full::default())
            .expect("request");
        assert_eq!(client.send(req).await.status, 200, "h2 = {h2}");
    }
    let cpus_of = |name: &str| threads(gw.pid).into_iter().find(|(n, _)| n == name).map(|(_, c)| c);
    assert_eq!(cpus_of("rempart-gateway"), Some(vec![allowed[0]]), "worker 0");
    // Worker 1 pins itself as its thread starts, which nothing here waits for.
    wait_for("worker 1 on its CPU", Duration::from_secs(10), async || {
        // `comm` keeps 15 bytes of "gateway-worker-1".
        cpus_of("gateway-worker-") == Some(vec![allowed[1]])
    })
    .await;
    // The log writer was started before any pinning.
    assert_eq!(cpus_of("gateway-log"), Some(allowed.clone()), "{:?}", threads(gw.pid));
}

/// Unpinned (the default), every thread may run on every CPU of the process.
#[tokio::test]
async fn workers_are_not_pinned_by_default() {
    let allowed = allowed_cpus();
    let up = Upstream::start("a").await;
    let args = [OsStr::new("--workers"), OsStr::new("2")];
    let gw = ServedBinary::start_args(&[up.addr], &[], &args).await;
    // Answered, so worker 0 is past the point where it would pin itself; and worker 1 exists.
    let mut client = Client::connect(gw.tls, false).await;
    let req =
        Request::get("https://localhost/v1/chain/get_info").body(Full::default()).expect("request");
    assert_eq!(client.send(req).await.status, 200);
    wait_for("worker 1's thread", Duration::from_secs(10), async || {
        threads(gw.pid).iter().any(|(n, _)| n == "gateway-worker-")
    })
    .await;
    for (name, cpus) in threads(gw.pid) {
        assert_eq!(cpus, allowed, "thread {name}");
    }
}

/// More workers than CPUs cannot each have one: refused at start, with the count in the error.
#[tokio::test]
async fn more_pinned_workers_than_cpus_is_refused() {
    let allowed = allowed_cpus();
    let up = Upstream::start("a").await;
    // A gateway to borrow a valid policy file from.
    let gw = ServedBinary::start(&[up.addr], &[]).await;
    let workers = (allowed.len() + 1).to_string();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rempart-gateway"))
        .args([OsStr::new("serve"), OsStr::new("--policy"), gw.policy_file.as_os_str()])
        .args(["--workers", &workers, "--pin-workers"])
        .output()
        .await
        .expect("run");
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--pin-workers")
            && err.contains(&format!("{workers} workers need a CPU each"))
            && err.contains(&format!("may run on {}", allowed.len())),
        "{err}"
    );
}
