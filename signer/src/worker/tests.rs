use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;

#[test]
fn every_job_runs_exactly_once_whoever_takes_it() {
    let worker = Arc::new(Worker::new("test-worker"));
    let runs = Arc::new(AtomicU32::new(0));
    let callers: Vec<_> = (0..4)
        .map(|t| {
            let (w, runs) = (worker.clone(), runs.clone());
            std::thread::spawn(move || {
                for i in 0..50u32 {
                    let r = runs.clone();
                    let ticket = w.run(move || {
                        r.fetch_add(1, Ordering::SeqCst);
                        t * 1000 + i
                    });
                    assert_eq!(ticket.wait(), Ok(t * 1000 + i));
                }
            })
        })
        .collect();
    for c in callers {
        c.join().unwrap();
    }
    assert_eq!(runs.load(Ordering::SeqCst), 200);
}

#[test]
fn a_withdrawn_job_runs_once_or_never() {
    let worker = Worker::new("test-worker");
    let runs = Arc::new(AtomicU32::new(0));
    let mut reported = 0;
    for _ in 0..100 {
        let r = runs.clone();
        match worker.run(move || r.fetch_add(1, Ordering::SeqCst)).withdraw() {
            None => {}
            Some(result) => {
                result.unwrap();
                reported += 1;
            }
        }
        // The job either ran (and withdraw waited for it) or never will.
        assert_eq!(runs.load(Ordering::SeqCst), reported);
    }
}

#[test]
fn a_job_that_panics_is_reported_and_the_next_job_gets_a_new_thread() {
    let worker = Worker::new("test-worker");
    // Hand the job over and wait until the worker has taken it, so that `wait` cannot run it
    // on this thread.
    let (started_tx, started) = mpsc::channel();
    let ticket = worker.run(move || {
        started_tx.send(()).unwrap();
        panic!("boom")
    });
    started.recv().unwrap();
    let gone: Result<(), WorkerGone> = ticket.wait();
    assert_eq!(gone, Err(WorkerGone("test-worker")));
    assert!(gone.unwrap_err().to_string().contains("test-worker"));
    assert_eq!(worker.run(|| 7).wait(), Ok(7));
}

#[test]
fn an_abandoned_job_that_has_not_started_never_runs() {
    let worker = Worker::new("test-worker");
    // Keep the thread busy so that the next job is still queued when it is abandoned.
    let (release_tx, release) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel();
    let busy = worker.run(move || {
        started_tx.send(()).unwrap();
        release.recv().unwrap();
    });
    started.recv().unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    worker.run(move || r.fetch_add(1, Ordering::SeqCst)).abandon();
    release_tx.send(()).unwrap();
    busy.wait().unwrap();
    // A job queued after the abandoned one has run, so the abandoned one had its turn.
    assert_eq!(worker.run(|| 1).wait(), Ok(1));
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}
