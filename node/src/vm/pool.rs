//! Admission to the engine's instance pool: the pooling allocator reserves a fixed number of
//! instance slots (memory, table, fiber stack) when the VM starts, and an action that found no
//! free slot would fail inside wasmtime. Here every [`super::Vm::apply`] takes a slot first: when
//! all are held by other threads it waits its turn (FIFO is not promised, progress is), and when
//! the calling thread itself holds one (an action started from inside another) it gets a typed
//! error at once instead of waiting for itself forever.
//!
//! This module only counts slots; it never runs code, never times out and never decides anything
//! about a transaction.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;

use super::VmError;

#[derive(Debug, Default)]
struct Held {
    /// The thread of each slot in use (a thread appears once per slot it holds).
    holders: Vec<ThreadId>,
    /// Threads blocked in [`Slots::acquire`].
    waiting: usize,
}

/// The slots of one VM.
#[derive(Debug)]
pub(crate) struct Slots {
    limit: usize,
    held: Mutex<Held>,
    freed: Condvar,
}

/// One slot, given back on drop.
#[derive(Debug)]
pub(crate) struct Slot<'a> {
    slots: &'a Slots,
    thread: ThreadId,
}

impl Slots {
    /// `limit` slots (at least one).
    pub(crate) fn new(limit: u32) -> Slots {
        Slots {
            limit: limit.max(1) as usize,
            held: Mutex::new(Held::default()),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        // The counters stay consistent even if a holder panicked while the lock was held.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A free slot, waiting for one while other threads hold them all.
    pub(crate) fn acquire(&self) -> Result<Slot<'_>, VmError> {
        let thread = std::thread::current().id();
        let mut held = self.lock();
        loop {
            if held.holders.len() < self.limit {
                held.holders.push(thread);
                return Ok(Slot { slots: self, thread });
            }
            if held.holders.contains(&thread) {
                return Err(VmError::Busy { slots: self.limit as u32 });
            }
            held.waiting += 1;
            held = self.freed.wait(held).unwrap_or_else(|e| e.into_inner());
            held.waiting -= 1;
        }
    }

    /// Threads waiting for a slot now.
    pub(crate) fn waiting(&self) -> usize {
        self.lock().waiting
    }

    /// Slots in use now.
    pub(crate) fn in_use(&self) -> usize {
        self.lock().holders.len()
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut held = self.slots.lock();
        if let Some(i) = held.holders.iter().position(|t| *t == self.thread) {
            held.holders.swap_remove(i);
        }
        drop(held);
        self.slots.freed.notify_one();
    }
}
