//! The FIFO queue of tasks waiting for permits.
//!
//! Waiters live in a slab (`Vec<Slot>`) threaded into a doubly linked list by index, so
//! removing a cancelled waiter from the middle is O(1) and no allocation happens per wait
//! once the slab has grown to the peak queue length. Everything here runs under the gate's
//! mutex, with one exception: each waiter shares a [`WaitCell`] with its slot, through which
//! it learns without the lock that it was granted or closed.
//!
//! Nothing here drops a [`Waker`]: a waker's drop may run user code (a custom executor's, or
//! one that holds a permit of this very gate), and running it under the gate's lock could
//! deadlock. Every waker that leaves a slot is handed back to the caller, who drops or wakes
//! it after the lock is released (tokio-rs/tokio#5429 was this bug in tokio).
//!
//! When the queue empties, the slab and the spare cells beyond [`KEEP`] are given back to
//! the allocator, so a gate that once queued many waiters does not hold their memory for
//! ever.

use std::collections::VecDeque;
use std::task::Waker;

use tokio::time::Instant;

use crate::sync::{Arc, AtomicU8, Ordering};

/// Index meaning "no slot".
const NIL: usize = usize::MAX;

/// Slots (and spare cells) a queue keeps once it is empty; beyond this, memory goes back to
/// the allocator. At 64 slots of about 100 bytes, an idle gate holds a few KiB at most.
pub(crate) const KEEP: usize = 64;

/// The key a waiter uses to find its slot again; valid while its cell says `Queued`.
pub(crate) type Key = usize;

/// What a waiter finds in its cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Still in the queue.
    Queued = 0,
    /// Taken off the queue with its permits assigned: the waiter owns them.
    Granted = 1,
    /// Taken off the queue because the gate closed.
    Closed = 2,
}

/// The part of a waiter's slot the waiter reads without the lock. It is only written under
/// the lock, and only away from `Queued`.
#[derive(Debug)]
pub(crate) struct WaitCell {
    status: AtomicU8,
}

impl WaitCell {
    fn new() -> Self {
        Self {
            status: AtomicU8::new(Status::Queued as u8),
        }
    }

    pub(crate) fn status(&self) -> Status {
        match self.status.load(Ordering::Acquire) {
            0 => Status::Queued,
            1 => Status::Granted,
            _ => Status::Closed,
        }
    }

    fn set(&self, status: Status) {
        self.status.store(status as u8, Ordering::Release);
    }
}

#[derive(Debug)]
enum Slot {
    Free {
        next_free: usize,
    },
    Queued {
        needed: usize,
        timing: Option<Timing>,
        waker: Option<Waker>,
        prev: usize,
        next: usize,
        cell: Arc<WaitCell>,
    },
}

/// When a timed waiter joined the queue, and how many waiters its wait stands for (see
/// [`Recorder::sample`](crate::stats::Recorder::sample)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) since: Instant,
    pub(crate) weight: u64,
}

/// A waiter taken off the front of the queue.
#[derive(Debug)]
pub(crate) struct Granted {
    pub(crate) waker: Option<Waker>,
    pub(crate) timing: Option<Timing>,
}

#[derive(Debug)]
pub(crate) struct WaitList {
    slots: Vec<Slot>,
    head: usize,
    tail: usize,
    /// The most recently freed slot, heading a stack of free slots: reusing the slot freed
    /// last keeps the queue's working set in cache.
    free_head: usize,
    len: usize,
    /// Cells of waiters that left the queue, oldest first. Once its waiter has let go of a
    /// cell (it does as soon as it sees its status), the next waiter reuses it, so a busy
    /// gate does not allocate a cell per wait.
    spares: VecDeque<Arc<WaitCell>>,
}

impl WaitList {
    pub(crate) const fn new() -> Self {
        Self {
            slots: Vec::new(),
            head: NIL,
            tail: NIL,
            free_head: NIL,
            len: 0,
            spares: VecDeque::new(),
        }
    }

    /// Number of queued waiters.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues a waiter needing `needed` permits at the back.
    pub(crate) fn push_back(
        &mut self,
        needed: usize,
        timing: Option<Timing>,
        waker: Waker,
    ) -> (Key, Arc<WaitCell>) {
        let key = match self.free_head {
            NIL => {
                self.slots.push(Slot::Free { next_free: NIL });
                self.slots.len() - 1
            }
            key => {
                let Slot::Free { next_free } = self.slots[key] else {
                    unreachable!("free list points at a used slot")
                };
                self.free_head = next_free;
                key
            }
        };
        let cell = self.spare_cell();
        self.slots[key] = Slot::Queued {
            needed,
            timing,
            waker: Some(waker),
            prev: self.tail,
            next: NIL,
            cell: cell.clone(),
        };
        match self.tail {
            NIL => self.head = key,
            tail => self.set_next(tail, key),
        }
        self.tail = key;
        self.len += 1;
        (key, cell)
    }

    /// Permits needed by the waiter at the front, if any.
    pub(crate) fn front_needed(&self) -> Option<usize> {
        match self.slots.get(self.head) {
            Some(Slot::Queued { needed, .. }) => Some(*needed),
            _ => None,
        }
    }

    /// Takes the front waiter off the queue and tells it that it was granted.
    pub(crate) fn grant_front(&mut self) -> Granted {
        let key = self.head;
        let (waker, timing) = self.unlink_and_free(key, Status::Granted);
        Granted { waker, timing }
    }

    /// Takes every waiter off the queue, telling each the gate closed, and hands each waker
    /// to `wake`.
    pub(crate) fn close_all(&mut self, mut wake: impl FnMut(Waker)) {
        while self.head != NIL {
            let (waker, _) = self.unlink_and_free(self.head, Status::Closed);
            if let Some(waker) = waker {
                wake(waker);
            }
        }
    }

    /// Stores `waker` for a queued waiter unless it would wake the same task already, and
    /// returns the waker it displaced, for the caller to drop after releasing the lock.
    #[must_use = "a displaced waker must be dropped after the lock is released"]
    pub(crate) fn register(&mut self, key: Key, waker: &Waker) -> Option<Waker> {
        match &mut self.slots[key] {
            Slot::Queued {
                waker: Some(old), ..
            } if old.will_wake(waker) => None,
            Slot::Queued { waker: slot, .. } => slot.replace(waker.clone()),
            Slot::Free { .. } => None,
        }
    }

    /// Takes a waiter that gave up off the queue, returning its stored waker for the caller
    /// to drop after releasing the lock. Its cell must still say `Queued`.
    #[must_use = "a removed waiter's waker must be dropped after the lock is released"]
    pub(crate) fn remove(&mut self, key: Key) -> Option<Waker> {
        self.unlink_and_free(key, Status::Queued).0
    }

    /// Is `key` the front of the queue?
    pub(crate) fn is_front(&self, key: Key) -> bool {
        self.head == key
    }

    /// Takes `key` off the queue, tells its waiter `status` (unless it stays `Queued`: a
    /// waiter that gave up), and keeps its cell as a spare, without touching its count.
    fn unlink_and_free(&mut self, key: Key, status: Status) -> (Option<Waker>, Option<Timing>) {
        let slot = std::mem::replace(
            &mut self.slots[key],
            Slot::Free {
                next_free: self.free_head,
            },
        );
        self.free_head = key;
        let Slot::Queued {
            waker,
            prev,
            next,
            cell,
            timing,
            ..
        } = slot
        else {
            unreachable!("unlinking a slot that is not queued")
        };
        match prev {
            NIL => self.head = next,
            prev => self.set_next(prev, next),
        }
        match next {
            NIL => self.tail = prev,
            next => self.set_prev(next, prev),
        }
        self.len -= 1;
        if status != Status::Queued {
            cell.set(status);
        }
        self.spares.push_back(cell);
        if self.len == 0 {
            self.release_memory();
        }
        (waker, timing)
    }

    /// Called when the queue has just emptied: no key is valid any more, so every slot can
    /// go, and memory past [`KEEP`] slots and spares goes back to the allocator. A queue that
    /// grows past `KEEP` again pays a few reallocations, amortised over as many waits.
    fn release_memory(&mut self) {
        self.slots.clear();
        self.head = NIL;
        self.tail = NIL;
        self.free_head = NIL;
        if self.slots.capacity() > KEEP {
            self.slots.shrink_to(KEEP);
        }
        if self.spares.len() > KEEP {
            // The newest spares may still be held by waiters that were just granted; the
            // oldest are the ones most likely free to reuse. Keep those.
            self.spares.truncate(KEEP);
        }
        if self.spares.capacity() > 2 * KEEP {
            self.spares.shrink_to(KEEP);
        }
    }

    /// Bytes this queue holds on the heap for its slots and spare cells (not counting the
    /// allocator's own overhead).
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.spares.capacity() * std::mem::size_of::<Arc<WaitCell>>()
            + self.spares.len() * std::mem::size_of::<WaitCell>()
    }

    /// A cell for a new waiter: the oldest spare if its last waiter has let go of it (the
    /// usual case), else a new one. Spares still held past a bound are let go, so the list
    /// stays short.
    fn spare_cell(&mut self) -> Arc<WaitCell> {
        if let Some(oldest) = self.spares.front()
            && Arc::strong_count(oldest) == 1
        {
            let cell = self.spares.pop_front().expect("checked above");
            cell.set(Status::Queued);
            return cell;
        }
        if self.spares.len() > self.slots.len() + 8 {
            self.spares.pop_front();
        }
        Arc::new(WaitCell::new())
    }

    fn set_next(&mut self, key: Key, to: usize) {
        if let Slot::Queued { next, .. } = &mut self.slots[key] {
            *next = to;
        }
    }

    fn set_prev(&mut self, key: Key, to: usize) {
        if let Slot::Queued { prev, .. } = &mut self.slots[key] {
            *prev = to;
        }
    }
}

#[cfg(all(test, not(gate_loom)))]
mod tests {
    use super::*;

    fn push(list: &mut WaitList, needed: usize) -> (Key, Arc<WaitCell>) {
        list.push_back(needed, None, Waker::noop().clone())
    }

    #[test]
    fn fifo_and_removal_from_the_middle() {
        let mut list = WaitList::new();
        let (_, a) = push(&mut list, 1);
        let (b, _) = push(&mut list, 2);
        let (c, c_cell) = push(&mut list, 3);
        assert_eq!(list.len(), 3);
        drop(list.remove(b));
        assert_eq!(list.front_needed(), Some(1));
        list.grant_front();
        assert_eq!(a.status(), Status::Granted);
        assert_eq!(list.front_needed(), Some(3));
        assert!(list.is_front(c));
        let (_, d_cell) = push(&mut list, 4);
        assert_eq!(list.slots.len(), 3, "freed slots are reused");
        list.close_all(drop);
        assert_eq!(c_cell.status(), Status::Closed);
        assert_eq!(d_cell.status(), Status::Closed);
        assert!(list.is_empty());
        assert_eq!(list.front_needed(), None);
    }

    // Regression: a queue never gave memory back; after 10^5 waiters drained, a gate still
    // held 12.9 MB (128 bytes per former waiter) until it was dropped.
    #[test]
    fn an_emptied_queue_gives_its_memory_back() {
        let mut list = WaitList::new();
        let idle = list.heap_bytes();
        let cells: Vec<_> = (0..100_000).map(|_| push(&mut list, 1).1).collect();
        assert!(list.heap_bytes() > 100_000 * std::mem::size_of::<Slot>());
        while !list.is_empty() {
            list.grant_front();
        }
        drop(cells);
        let kept = list.heap_bytes();
        assert!(
            kept <= idle + KEEP * (std::mem::size_of::<Slot>() + 64),
            "an empty queue still holds {kept} bytes"
        );
        // And it still works, reusing what it kept.
        let (key, _) = push(&mut list, 2);
        assert!(list.is_front(key));
        assert_eq!(list.front_needed(), Some(2));
    }

    // Regression: replacing a waker or removing a waiter dropped the old waker under the
    // gate's lock; a waker whose drop re-enters the gate deadlocked.
    #[test]
    fn displaced_wakers_are_handed_back_not_dropped() {
        use std::task::Wake;

        struct Task;
        impl Wake for Task {
            fn wake(self: std::sync::Arc<Self>) {}
        }
        let a = std::sync::Arc::new(Task);
        let b = std::sync::Arc::new(Task);
        let (wa, wb) = (Waker::from(a.clone()), Waker::from(b.clone()));
        let mut list = WaitList::new();
        let (key, _) = list.push_back(1, None, wa.clone());
        assert!(
            list.register(key, &wa).is_none(),
            "same task: nothing displaced"
        );
        let displaced = list
            .register(key, &wb)
            .expect("another task displaces the waker");
        assert!(displaced.will_wake(&wa));
        let removed = list.remove(key).expect("the stored waker comes back");
        assert!(removed.will_wake(&wb));
        assert_eq!(std::sync::Arc::strong_count(&a), 3, "ours, wa, displaced");
        drop((displaced, removed));
        assert_eq!(std::sync::Arc::strong_count(&a), 2);
    }

    #[test]
    fn a_cell_is_reused_only_once_its_waiter_let_go() {
        let mut list = WaitList::new();
        let (_, first) = push(&mut list, 1);
        list.grant_front();
        // The granted waiter still holds its cell: the next waiter gets a fresh one.
        let (_, second) = push(&mut list, 1);
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(first.status(), Status::Granted);
        assert_eq!(second.status(), Status::Queued);
        let first_ptr = Arc::as_ptr(&first);
        drop(first);
        // Now the oldest spare is unshared and comes back reset.
        let (_, third) = push(&mut list, 1);
        assert_eq!(Arc::as_ptr(&third), first_ptr);
        assert_eq!(third.status(), Status::Queued);
    }
}
