//! The FIFO queue of tasks waiting for permits.
//!
//! Waiters live in a slab (`Vec<Slot>`) threaded into a doubly linked list by index, so
//! removing a cancelled waiter from the middle is O(1), a slot is reused once its owner lets
//! it go, and no allocation happens per wait once the slab has grown to the peak queue length.
//! Everything here runs under the gate's mutex; there is no unsafe code and no atomics.

use std::task::Waker;

/// Index meaning "no slot".
const NIL: usize = usize::MAX;

/// The key a waiter uses to find its slot again.
pub(crate) type Key = usize;

/// What the owner of a slot finds when it looks at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Still in the queue.
    Queued,
    /// Taken off the queue with its permits assigned; the owner must take or return them.
    Granted,
    /// Taken off the queue because the gate closed.
    Closed,
}

#[derive(Debug)]
enum Slot {
    Free {
        next_free: usize,
    },
    Queued {
        needed: usize,
        waker: Option<Waker>,
        prev: usize,
        next: usize,
    },
    Granted,
    Closed,
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
    pub(crate) fn push_back(&mut self, needed: usize, waker: Waker) -> Key {
        let slot = Slot::Queued {
            needed,
            waker: Some(waker),
            prev: self.tail,
            next: NIL,
        };
        let key = if self.free == NIL {
            self.slots.push(slot);
            self.slots.len() - 1
        } else {
            let key = self.free;
            let Slot::Free { next_free } = self.slots[key] else {
                unreachable!("free list points at a used slot")
            };
            self.free = next_free;
            self.slots[key] = slot;
            key
        };
        match self.tail {
            NIL => self.head = key,
            tail => self.set_next(tail, key),
        }
        self.tail = key;
        self.len += 1;
        key
    }

    /// Permits needed by the waiter at the front, if any.
    pub(crate) fn front_needed(&self) -> Option<usize> {
        match self.slots.get(self.head) {
            Some(Slot::Queued { needed, .. }) => Some(*needed),
            _ => None,
        }
    }

    /// Takes the front waiter off the queue, marks it granted and returns its waker.
    pub(crate) fn grant_front(&mut self) -> Option<Waker> {
        let key = self.head;
        let waker = self.unlink(key);
        self.slots[key] = Slot::Granted;
        waker
    }

    /// Takes every waiter off the queue, marking them closed, and hands each waker to `wake`.
    pub(crate) fn close_all(&mut self, mut wake: impl FnMut(Waker)) {
        while self.head != NIL {
            let key = self.head;
            let waker = self.unlink(key);
            self.slots[key] = Slot::Closed;
            if let Some(waker) = waker {
                wake(waker);
            }
        }
    }

    /// What the owner of `key` finds.
    pub(crate) fn status(&self, key: Key) -> Status {
        match self.slots[key] {
            Slot::Queued { .. } => Status::Queued,
            Slot::Granted => Status::Granted,
            Slot::Closed => Status::Closed,
            Slot::Free { .. } => unreachable!("a waiter looked at a slot it had released"),
        }
    }

    /// Stores `waker` for a queued waiter unless it would wake the same task already.
    pub(crate) fn register(&mut self, key: Key, waker: &Waker) {
        if let Slot::Queued {
            waker: Some(old), ..
        } = &mut self.slots[key]
        {
            if !old.will_wake(waker) {
                old.clone_from(waker);
            }
        }
    }

    /// Gives the slot back, unlinking it if it was still queued. Returns its status before.
    pub(crate) fn release(&mut self, key: Key) -> Status {
        let status = self.status(key);
        if status == Status::Queued {
            self.unlink(key);
        }
        self.slots[key] = Slot::Free {
            next_free: self.free,
        };
        self.free = key;
        status
    }

    /// Is `key` the front of the queue?
    pub(crate) fn is_front(&self, key: Key) -> bool {
        self.head == key
    }

    fn unlink(&mut self, key: Key) -> Option<Waker> {
        let Slot::Queued {
            waker, prev, next, ..
        } = &mut self.slots[key]
        else {
            unreachable!("unlinking a slot that is not queued")
        };
        let (prev, next, waker) = (*prev, *next, waker.take());
        match prev {
            NIL => self.head = next,
            prev => self.set_next(prev, next),
        }
        match next {
            NIL => self.tail = prev,
            next => self.set_prev(next, prev),
        }
        self.len -= 1;
        waker
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn noop() -> Waker {
        Waker::noop().clone()
    }

    #[test]
    fn fifo_and_removal_from_the_middle() {
        let mut list = WaitList::new();
        let a = list.push_back(1, noop());
        let b = list.push_back(2, noop());
        let c = list.push_back(3, noop());
        assert_eq!(list.len(), 3);
        assert_eq!(list.release(b), Status::Queued);
        assert_eq!(list.front_needed(), Some(1));
        list.grant_front();
        assert_eq!(list.status(a), Status::Granted);
        assert_eq!(list.front_needed(), Some(3));
        assert!(list.is_front(c));
        // The freed slot of `b` is reused.
        let d = list.push_back(4, noop());
        assert_eq!(d, b);
        list.close_all(drop);
        assert_eq!(list.status(c), Status::Closed);
        assert_eq!(list.status(d), Status::Closed);
        assert!(list.is_empty());
        assert_eq!(list.front_needed(), None);
    }
}
