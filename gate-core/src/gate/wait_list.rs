//! The FIFO queue of tasks waiting for permits.
//!
//! Waiters live in a slab (`Vec<Slot>`) threaded into a doubly linked list by index, so
//! removing a cancelled waiter from the middle is O(1) and no allocation happens per wait
//! once the slab has grown to the peak queue length. Everything here runs under the gate's
//! mutex, with one exception: each waiter shares a [`WaitCell`] with its slot, through which
//! it learns without the lock that it was granted or closed.

use std::task::Waker;

use tokio::time::Instant;

use crate::sync::{Arc, AtomicU8, Ordering};

/// Index meaning "no slot".
const NIL: usize = usize::MAX;

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
        /// The cell of the last waiter here, reused once that waiter has let go of it.
        spare: Option<Arc<WaitCell>>,
    },
    Queued {
        needed: usize,
        since: Instant,
        waker: Option<Waker>,
        prev: usize,
        next: usize,
        cell: Arc<WaitCell>,
    },
}

/// A waiter taken off the front of the queue.
#[derive(Debug)]
pub(crate) struct Granted {
    pub(crate) waker: Option<Waker>,
    pub(crate) since: Instant,
}

#[derive(Debug)]
pub(crate) struct WaitList {
    slots: Vec<Slot>,
    head: usize,
    tail: usize,
    free: usize,
    len: usize,
}

impl WaitList {
    pub(crate) const fn new() -> Self {
        Self {
            slots: Vec::new(),
            head: NIL,
            tail: NIL,
            free: NIL,
            len: 0,
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
        since: Instant,
        waker: Waker,
    ) -> (Key, Arc<WaitCell>) {
        let (key, spare) = match self.free {
            NIL => {
                self.slots.push(Slot::Free {
                    next_free: NIL,
                    spare: None,
                });
                (self.slots.len() - 1, None)
            }
            key => {
                let Slot::Free { next_free, spare } = &mut self.slots[key] else {
                    unreachable!("free list points at a used slot")
                };
                self.free = *next_free;
                (key, spare.take())
            }
        };
        let cell = match spare {
            // Nobody else holds it any more: its owner saw its final status and let go.
            Some(cell) if Arc::strong_count(&cell) == 1 => {
                cell.set(Status::Queued);
                cell
            }
            _ => Arc::new(WaitCell::new()),
        };
        self.slots[key] = Slot::Queued {
            needed,
            since,
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
        let (cell, waker, since) = self.unlink_and_free(key);
        cell.set(Status::Granted);
        Granted { waker, since }
    }

    /// Takes every waiter off the queue, telling each the gate closed, and hands each waker
    /// to `wake`.
    pub(crate) fn close_all(&mut self, mut wake: impl FnMut(Waker)) {
        while self.head != NIL {
            let (cell, waker, _) = self.unlink_and_free(self.head);
            cell.set(Status::Closed);
            if let Some(waker) = waker {
                wake(waker);
            }
        }
    }

    /// Stores `waker` for a queued waiter unless it would wake the same task already.
    pub(crate) fn register(&mut self, key: Key, waker: &Waker) {
        if let Slot::Queued {
            waker: Some(old), ..
        } = &mut self.slots[key]
            && !old.will_wake(waker)
        {
            old.clone_from(waker);
        }
    }

    /// Takes a waiter that gave up off the queue. Its cell must still say `Queued`.
    pub(crate) fn remove(&mut self, key: Key) {
        self.unlink_and_free(key);
    }

    /// Is `key` the front of the queue?
    pub(crate) fn is_front(&self, key: Key) -> bool {
        self.head == key
    }

    fn unlink_and_free(&mut self, key: Key) -> (Arc<WaitCell>, Option<Waker>, Instant) {
        let slot = std::mem::replace(
            &mut self.slots[key],
            Slot::Free {
                next_free: self.free,
                spare: None,
            },
        );
        self.free = key;
        let Slot::Queued {
            waker,
            prev,
            next,
            cell,
            since,
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
        if let Slot::Free { spare, .. } = &mut self.slots[key] {
            *spare = Some(cell.clone());
        }
        (cell, waker, since)
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
        list.push_back(needed, Instant::now(), Waker::noop().clone())
    }

    #[test]
    fn fifo_and_removal_from_the_middle() {
        let mut list = WaitList::new();
        let (_, a) = push(&mut list, 1);
        let (b, _) = push(&mut list, 2);
        let (c, c_cell) = push(&mut list, 3);
        assert_eq!(list.len(), 3);
        list.remove(b);
        assert_eq!(list.front_needed(), Some(1));
        list.grant_front();
        assert_eq!(a.status(), Status::Granted);
        assert_eq!(list.front_needed(), Some(3));
        assert!(list.is_front(c));
        let (d, d_cell) = push(&mut list, 4);
        list.close_all(drop);
        assert_eq!(c_cell.status(), Status::Closed);
        assert_eq!(d_cell.status(), Status::Closed);
        assert!(list.is_empty());
        assert_eq!(list.front_needed(), None);
        assert!(d < 3, "a freed slot is reused");
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
        list.grant_front();
        let second_ptr = Arc::as_ptr(&second);
        drop(second);
        // Now the slot's spare is unshared and comes back reset.
        let (_, third) = push(&mut list, 1);
        assert_eq!(Arc::as_ptr(&third), second_ptr);
        assert_eq!(third.status(), Status::Queued);
    }
}
