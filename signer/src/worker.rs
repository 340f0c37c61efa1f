//! A thread that does one piece of work while the caller does another: the signer writes a
//! block's guard intent here while the HSM signs it on the request's own thread, and a second
//! HSM session tries a K1 signature here while the first tries one on the request's thread.
//!
//! Whoever gets to a job first runs it: the worker thread, or the caller in [`Ticket::wait`]
//! when the thread has not taken it yet. So a worker that is slow to be scheduled, busy with
//! another request's job, or that could not be started at all (the thread is started at the
//! first job, after the sandbox is in place) never makes a request wait longer than doing the
//! work itself would. A job runs exactly once or, if withdrawn before it started, never. This
//! module never drops a job's result silently: a worker that died inside a job is an error the
//! caller must treat as "not done".

use std::sync::{Arc, Mutex, mpsc};

#[cfg(test)]
mod tests;

/// The worker thread stopped inside a job (a panic): whether the job's effect happened is
/// unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the {0} thread stopped before saying whether its work was done")]
pub struct WorkerGone(pub &'static str);

type Job<T> = Box<dyn FnOnce() -> T + Send>;
/// What the thread runs: a job plus sending its result back.
type Task = Box<dyn FnOnce() + Send>;
type Slot<T> = Arc<Mutex<Option<Job<T>>>>;

fn take<T>(slot: &Slot<T>) -> Option<Job<T>> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// One named thread, started at the first [`Worker::run`], running jobs in order. Dropping the
/// worker waits for the job in progress (and those queued) to finish: nothing it was given
/// outlives it.
#[derive(Debug)]
pub struct Worker {
    name: &'static str,
    jobs: Mutex<Option<mpsc::Sender<Task>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// A job handed to a [`Worker`]: [`Ticket::wait`] for its result.
#[must_use = "the work is known done only once `wait` returns"]
pub struct Ticket<T> {
    name: &'static str,
    job: Slot<T>,
    done: mpsc::Receiver<T>,
}

impl<T> std::fmt::Debug for Ticket<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("worker", &self.name).finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker whose thread, once started, is called `name`. Starts no thread.
    pub fn new(name: &'static str) -> Worker {
        Worker { name, jobs: Mutex::new(None), thread: Mutex::new(None) }
    }

    /// Hands `f` to the thread (started now if it is not running) and returns at once.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Ticket<T> {
        let slot: Slot<T> = Arc::new(Mutex::new(Some(Box::new(f))));
        let (tx, done) = mpsc::sync_channel(1);
        let theirs = slot.clone();
        let mut job: Task = Box::new(move || {
            if let Some(f) = take(&theirs) {
                let _ = tx.send(f());
            }
        });
        let ticket = Ticket { name: self.name, job: slot, done };
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(queue) = jobs.as_ref() {
            match queue.send(job) {
                Ok(()) => return ticket,
                // The thread is gone (a job panicked): start another.
                Err(mpsc::SendError(back)) => job = back,
            }
        }
        let (queue, rx) = mpsc::channel::<Task>();
        let spawned = std::thread::Builder::new().name(self.name.into()).spawn(move || {
            for job in rx {
                job();
            }
        });
        match spawned {
            Ok(handle) => {
                // If this fails the job is still in its slot, and `wait` runs it.
                let _ = queue.send(job);
                *jobs = Some(queue);
                // A thread replaced here has stopped (its job panicked): nothing to wait for.
                *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
            }
            Err(e) => {
                tracing::warn!(worker = self.name, error = %e, "cannot start a worker thread; its jobs run on the caller's thread");
                *jobs = None;
            }
        }
        ticket
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the queue ends the thread's loop once the jobs already given are done.
        drop(self.jobs.get_mut().unwrap_or_else(|e| e.into_inner()).take());
        let thread = self.thread.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = thread
            && handle.thread().id() != std::thread::current().id()
        {
            let _ = handle.join();
        }
    }
}

impl<T> Ticket<T> {
    /// The job's result: run here and now if the thread has not taken it yet, else waited for.
    pub fn wait(self) -> Result<T, WorkerGone> {
        if let Some(f) = take(&self.job) {
            return Ok(f());
        }
        self.done.recv().map_err(|_| WorkerGone(self.name))
    }

    /// The result is not wanted: the job never runs if it has not started; if it has, it
    /// finishes on the worker's thread and its result is dropped there.
    pub fn abandon(self) {
        drop(take(&self.job));
    }

    /// Takes the job back if it has not started (`None`: it never ran); otherwise waits for it
    /// as [`Ticket::wait`] does.
    pub fn withdraw(self) -> Option<Result<T, WorkerGone>> {
        if take(&self.job).is_some() {
            return None;
        }
        Some(self.done.recv().map_err(|_| WorkerGone(self.name)))
    }
}
