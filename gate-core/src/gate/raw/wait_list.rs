//! The FIFO queue of tasks waiting for permits.
//!
//! Waiters live in a slab (`Vec<Slot>`) threaded into a doubly linked list by index, so
//! removing a cancelled waiter from the middle is O(1) and no allocation happens per wait
//! once the slab has grown to the peak queue length. Everything here runs under the gate's
//! mutex, with one exception: [`Served`], one word per gate through which every waiter
//! learns without the lock that it was granted or closed.
//!
//! A waiter learns that from its ticket, not from a cell of its own: each waiter takes the
//! next ticket when it queues, and the queue is granted strictly in order, so a waiter still
//! queued has been granted exactly when the last ticket served has reached its own. Waiters
//! that leave the queue early (cancelled, timed out) are skipped over, which does not change
//! that: only a waiter removes itself, and then it no longer asks. So a wait allocates
//! nothing and touches no atomic of its own; the one the releaser writes sits beside the
//! lock it holds anyway.
//!
//! Nothing here drops a [`Waker`]: a waker's drop may run user code (a custom executor's, or
//! one that holds a permit of this very gate), and running it under the gate's lock could
//! deadlock. Every waker that leaves a slot is handed back to the caller, who drops or wakes
//! it after the lock is released (tokio-rs/tokio#5429 was this bug in tokio).
//!
//! When the queue empties, the slab beyond [`KEEP`] slots is given back to the allocator, so
//! a gate that once queued many waiters does not hold their memory for ever.

use std::task::Waker;

use tokio::time::Instant;

use crate::sync::{AtomicU64, Ordering};

/// Index meaning "no slot".
const NIL: u32 = u32::MAX;

/// The most waiters one queue holds, whatever its [`WaitLimits`](crate::WaitLimits) say:
/// slots are numbered in 32 bits, one value meaning none. A full queue's slots alone would
/// take 256 GiB.
pub(crate) const MAX_LEN: usize = NIL as usize;

/// Slots a queue keeps once it is empty; beyond this, memory goes back to the allocator. At
/// 64 slots of 64 bytes, an idle gate holds 4 KiB at most.
pub(crate) const KEEP: usize = 64;

/// The key a waiter uses to find its slot again; valid while it is [`Status::Queued`].
pub(crate) type Key = u32;

/// A waiter's place in the order of service, the number of waiters queued before it plus
/// one. At a billion waits a second, 63 bits last 292 years.
pub(crate) type Ticket = u64;

/// What a waiter finds in [`Served`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Still in the queue.
    Queued,
    /// Taken off the queue with its permits assigned: the waiter owns them.
    Granted,
    /// Taken off the queue because the gate closed.
    Closed,
}

/// The last ticket granted and whether the gate closed, in one word that waiters read
/// without the lock. Only the lock holder writes it.
#[derive(Debug)]
pub(crate) struct Served {
    word: AtomicU64,
}

impl Served {
    /// Set once the gate closed; below it, the last ticket granted.
    const CLOSED: u64 = 1 << 63;

    crate::sync::const_unless_loom! {
        pub(crate) const fn new() -> Self {
            Self {
                word: AtomicU64::new(0),
            }
        }
    }

    /// Where the waiter holding `ticket` stands. A waiter must ask only while it has not
    /// removed itself from the queue.
    #[inline]
    pub(crate) fn status(&self, ticket: Ticket) -> Status {
        // Acquire: pairs with the lock holder's Release store, so a waiter that reads its
        // grant sees every change the grant made.
        let word = self.word.load(Ordering::Acquire);
        if word & !Self::CLOSED >= ticket {
            Status::Granted
        } else if word & Self::CLOSED != 0 {
            Status::Closed
        } else {
            Status::Queued
        }
    }

    /// Records that every waiter up to `ticket` was served. Called under the lock, in
    /// ticket order.
    fn grant(&self, ticket: Ticket) {
        // Relaxed load: only the lock holder writes the word.
        let closed = self.word.load(Ordering::Relaxed) & Self::CLOSED;
        self.word.store(closed | ticket, Ordering::Release);
    }

    /// Records that the gate closed: everyone not yet granted is failed. Called under the
    /// lock.
    fn close(&self) {
        let word = self.word.load(Ordering::Relaxed);
        self.word.store(word | Self::CLOSED, Ordering::Release);
    }
}

/// One waiter's place in the slab: 64 bytes, aligned to a cache line, so that queueing a
/// waiter and granting it each touch one line.
#[derive(Debug)]
#[repr(align(64))]
struct Slot {
    /// The waker to wake on a grant; `None` once the slot is free.
    waker: Option<Waker>,
    timing: Option<Timing>,
    needed: usize,
    ticket: Ticket,
    /// The neighbours in the queue while queued; while free, `next` is the next free slot.
    prev: Key,
    next: Key,
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
    /// The permits it asked for, now its own.
    pub(crate) needed: usize,
    pub(crate) waker: Option<Waker>,
    pub(crate) timing: Option<Timing>,
}

#[derive(Debug)]
pub(crate) struct WaitList {
    slots: Vec<Slot>,
    head: Key,
    tail: Key,
    /// The most recently freed slot, heading a stack of free slots: reusing the slot freed
    /// last keeps the queue's working set in cache.
    free_head: Key,
    len: usize,
    /// The ticket the last waiter to queue took.
    last_ticket: Ticket,
}

impl WaitList {
    pub(crate) const fn new() -> Self {
        Self {
            slots: Vec::new(),
            head: NIL,
            tail: NIL,
            free_head: NIL,
            len: 0,
            last_ticket: 0,
        }
    }

    /// Number of queued waiters.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether a waiter may queue behind those already queued, given that at most
    /// `max_waiters` may (and never more than [`MAX_LEN`]).
    #[inline]
    pub(crate) fn has_room(&self, max_waiters: usize) -> bool {
        self.len < max_waiters.min(MAX_LEN)
    }

    /// Queues a waiter needing `needed` permits at the back; it asks [`Served`] with the
    /// ticket returned. There must be room ([`has_room`](Self::has_room)).
    #[inline]
    pub(crate) fn push_back(
        &mut self,
        needed: usize,
        timing: Option<Timing>,
        waker: Waker,
    ) -> (Key, Ticket) {
        self.last_ticket += 1;
        let ticket = self.last_ticket;
        let slot = Slot {
            waker: Some(waker),
            timing,
            needed,
            ticket,
            prev: self.tail,
            next: NIL,
        };
        let key = match self.free_head {
            NIL => {
                // Free slots are reused first, so the slab is no longer than the queue has
                // been, which `has_room` keeps below `MAX_LEN`: the key is never `NIL`.
                let key = self.slots.len() as Key;
                debug_assert_ne!(key, NIL, "a queue past MAX_LEN");
                self.slots.push(slot);
                key
            }
            key => {
                let free = &mut self.slots[key as usize];
                debug_assert!(free.waker.is_none(), "the free list points at a used slot");
                self.free_head = free.next;
                // A free slot holds no waker: overwriting it drops none under the lock.
                *free = slot;
                key
            }
        };
        match self.tail {
            NIL => self.head = key,
            tail => self.slots[tail as usize].next = key,
        }
        self.tail = key;
        self.len += 1;
        (key, ticket)
    }

    /// Permits needed by the waiter at the front, if any.
    #[inline]
    pub(crate) fn front_needed(&self) -> Option<usize> {
        match self.head {
            NIL => None,
            head => Some(self.slots[head as usize].needed),
        }
    }

    /// Takes the front waiter off the queue (there must be one) and tells it, through
    /// `served`, that it was granted.
    #[inline]
    pub(crate) fn grant_front(&mut self, served: &Served) -> Granted {
        let key = self.head;
        let slot = &mut self.slots[key as usize];
        let granted = Granted {
            needed: slot.needed,
            waker: slot.waker.take(),
            timing: slot.timing,
        };
        let (ticket, next) = (slot.ticket, slot.next);
        slot.next = self.free_head;
        self.free_head = key;
        self.head = next;
        match next {
            NIL => self.tail = NIL,
            next => self.slots[next as usize].prev = NIL,
        }
        served.grant(ticket);
        self.shorten();
        granted
    }

    /// Takes every waiter off the queue, telling them through `served` that the gate
    /// closed, and hands each waker to `wake`.
    pub(crate) fn close_all(&mut self, served: &Served, mut wake: impl FnMut(Waker)) {
        served.close();
        while self.head != NIL {
            if let Some(waker) = self.remove(self.head) {
                wake(waker);
            }
        }
    }

    /// Stores `waker` for a queued waiter unless it would wake the same task already, and
    /// returns the waker it displaced, for the caller to drop after releasing the lock.
    #[must_use = "a displaced waker must be dropped after the lock is released"]
    pub(crate) fn register(&mut self, key: Key, waker: &Waker) -> Option<Waker> {
        match &mut self.slots[key as usize].waker {
            Some(old) if old.will_wake(waker) => None,
            slot => slot.replace(waker.clone()),
        }
    }

    /// Takes a waiter that gave up off the queue, returning its stored waker for the caller
    /// to drop after releasing the lock. It must still be [`Status::Queued`].
    #[must_use = "a removed waiter's waker must be dropped after the lock is released"]
    pub(crate) fn remove(&mut self, key: Key) -> Option<Waker> {
        let slot = &mut self.slots[key as usize];
        let waker = slot.waker.take();
        let (prev, next) = (slot.prev, slot.next);
        slot.next = self.free_head;
        self.free_head = key;
        match prev {
            NIL => self.head = next,
            prev => self.slots[prev as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            next => self.slots[next as usize].prev = prev,
        }
        self.shorten();
        waker
    }

    /// Is `key` the front of the queue?
    pub(crate) fn is_front(&self, key: Key) -> bool {
        self.head == key
    }

    /// Counts a waiter gone from the queue, whose slot is already on the free list.
    #[inline]
    fn shorten(&mut self) {
        self.len -= 1;
        if self.len == 0 {
            self.release_memory();
        }
    }

    /// Called when the queue has just emptied: no key is valid any more, so every slot can
    /// go, and memory past [`KEEP`] slots goes back to the allocator. A queue that grows past
    /// `KEEP` again pays a few reallocations, amortised over as many waits.
    #[cold]
    fn release_memory(&mut self) {
        self.slots.clear();
        self.head = NIL;
        self.tail = NIL;
        self.free_head = NIL;
        if self.slots.capacity() > KEEP {
            self.slots.shrink_to(KEEP);
        }
    }

    /// Bytes this queue holds on the heap (not counting the allocator's own overhead).
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
    }
}

#[cfg(all(test, not(gate_loom)))]
mod tests {
    use super::*;

    fn push(list: &mut WaitList, needed: usize) -> (Key, Ticket) {
        list.push_back(needed, None, Waker::noop().clone())
    }

    #[test]
    fn fifo_and_removal_from_the_middle() {
        let served = Served::new();
        let mut list = WaitList::new();
        let (_, a) = push(&mut list, 1);
        let (b, b_ticket) = push(&mut list, 2);
        let (c, c_ticket) = push(&mut list, 3);
        assert_eq!(list.len(), 3);
        drop(list.remove(b));
        assert_eq!(list.front_needed(), Some(1));
        list.grant_front(&served);
        assert_eq!(served.status(a), Status::Granted);
        assert_eq!(served.status(c_ticket), Status::Queued);
        assert_eq!(list.front_needed(), Some(3));
        assert!(list.is_front(c));
        let (_, d) = push(&mut list, 4);
        assert_eq!(list.slots.len(), 3, "freed slots are reused");
        // The removed waiter's ticket is skipped over: granting the next serves it alone.
        list.grant_front(&served);
        assert_eq!(served.status(c_ticket), Status::Granted);
        assert!(b_ticket < c_ticket);
        assert_eq!(served.status(d), Status::Queued);
        list.close_all(&served, drop);
        assert_eq!(served.status(d), Status::Closed);
        // A grant made before the close stands.
        assert_eq!(served.status(c_ticket), Status::Granted);
        assert!(list.is_empty());
        assert_eq!(list.front_needed(), None);
    }

    #[test]
    fn tickets_are_served_in_order_whatever_leaves_the_queue() {
        let served = Served::new();
        let mut list = WaitList::new();
        let waiters: Vec<_> = (0..6).map(|_| push(&mut list, 1)).collect();
        // Waiters 1 and 4 give up; the rest are granted one by one, in order.
        drop(list.remove(waiters[1].0));
        drop(list.remove(waiters[4].0));
        for granted in [0, 2, 3, 5] {
            list.grant_front(&served);
            for (i, (_, ticket)) in waiters.iter().enumerate() {
                if i == 1 || i == 4 {
                    continue;
                }
                let expected = if i <= granted {
                    Status::Granted
                } else {
                    Status::Queued
                };
                assert_eq!(served.status(*ticket), expected, "waiter {i}");
            }
        }
        assert!(list.is_empty());
        // The queue emptied and gave its slots back; tickets still count on.
        let (_, next) = push(&mut list, 1);
        assert!(next > waiters[5].1);
        assert_eq!(served.status(next), Status::Queued);
    }

    // Regression: a queue never gave memory back; after 10^5 waiters drained, a gate still
    // held 12.9 MB (128 bytes per former waiter) until it was dropped.
    #[test]
    fn an_emptied_queue_gives_its_memory_back() {
        let served = Served::new();
        let mut list = WaitList::new();
        let idle = list.heap_bytes();
        for _ in 0..100_000 {
            push(&mut list, 1);
        }
        assert!(list.heap_bytes() > 100_000 * std::mem::size_of::<Slot>());
        while !list.is_empty() {
            list.grant_front(&served);
        }
        let kept = list.heap_bytes();
        assert!(
            kept <= idle + KEEP * std::mem::size_of::<Slot>(),
            "an empty queue still holds {kept} bytes"
        );
        // And it still works, reusing what it kept.
        let (key, _) = push(&mut list, 2);
        assert!(list.is_front(key));
        assert_eq!(list.front_needed(), Some(2));
    }

    #[test]
    fn a_queue_never_outgrows_its_keys() {
        let mut list = WaitList::new();
        assert!(list.has_room(usize::MAX));
        assert!(!list.has_room(0));
        push(&mut list, 1);
        assert!(list.has_room(2) && !list.has_room(1));
        // Slot keys are 32 bits: whatever the limits say, the queue stops one short of the
        // key that means none (counted, not filled: that would take 256 GiB).
        list.len = MAX_LEN - 1;
        assert!(list.has_room(usize::MAX));
        list.len = MAX_LEN;
        assert!(!list.has_room(usize::MAX));
        list.len = 1;
    }

    #[test]
    fn a_slot_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Slot>(), 64);
        assert_eq!(std::mem::align_of::<Slot>(), 64);
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
}
