//! Property: through any mix of acquire, try_acquire, poll, cancel and release over a few
//! keys, with weights, priority classes and tight caps, a keyed gate conserves permits at
//! both levels, never exceeds either limit or `max_keys`, and strands nobody who fits.

use std::hash::RandomState;
use std::task::Poll;

use gate_core::keyed::{KeyedAcquire, KeyedGate, KeyedPermit, Priority};
use proptest::prelude::*;
use tokio_test::task::{Spawn, spawn};

const PER_KEY: usize = 2;
const GLOBAL: usize = 3;
const MAX_KEYS: usize = 4;
const KEYS: u8 = 6;

#[derive(Debug, Clone)]
enum Op {
    /// Start an acquire of this key and poll it once.
    Acquire(u8),
    /// Try to take a permit of this key at once.
    TryAcquire(u8),
    /// Poll every woken pending acquire.
    PollWoken,
    /// Drop the pending acquire at this index (modulo the count), wherever it is.
    Cancel(usize),
    /// Drop the held permit at this index.
    Release(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (0..KEYS).prop_map(Op::Acquire),
        10 => (0..KEYS).prop_map(Op::TryAcquire),
        20 => Just(Op::PollWoken),
        15 => any::<usize>().prop_map(Op::Cancel),
        30 => any::<usize>().prop_map(Op::Release),
    ]
}

type Gate = KeyedGate<u8, RandomState>;

struct Model<'a> {
    gate: &'a Gate,
    pending: Vec<(u8, Spawn<KeyedAcquire<'a, 'static, u8, RandomState>>)>,
    held: Vec<(u8, KeyedPermit<'a, u8, RandomState>)>,
}

static KEY_REFS: [u8; KEYS as usize] = [0, 1, 2, 3, 4, 5];

impl Model<'_> {
    fn poll_woken(&mut self) {
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].1.is_woken() {
                match self.pending[i].1.poll() {
                    Poll::Pending => i += 1,
                    Poll::Ready(done) => {
                        let (key, _) = self.pending.swap_remove(i);
                        // Unbounded waits end only in a permit.
                        self.held
                            .push((key, done.expect("an unbounded wait ends admitted")));
                    }
                }
            } else {
                i += 1;
            }
        }
    }

    /// Permits out for `key` (any key if `None`): held, or granted to a waiter that was
    /// woken for it and has not collected it yet (a wake-up only ever means a grant here).
    fn out(&self, key: Option<u8>) -> usize {
        let held = self
            .held
            .iter()
            .filter(|(k, _)| key.is_none_or(|key| *k == key));
        let granted = self
            .pending
            .iter()
            .filter(|(k, task)| task.is_woken() && key.is_none_or(|key| *k == key));
        held.count() + granted.count()
    }

    fn check(&self) {
        let gate = self.gate;
        assert_eq!(gate.in_flight(), self.out(None));
        assert!(gate.in_flight() <= GLOBAL);
        assert!(gate.len() <= MAX_KEYS);
        for key in 0..KEYS {
            assert_eq!(gate.key_in_flight(&key), self.out(Some(key)), "key {key}");
            assert!(self.out(Some(key)) <= PER_KEY);
        }
        let queued = self.pending.iter().filter(|(_, task)| !task.is_woken());
        assert_eq!(gate.waiting(), queued.count());
        // Nobody who fits is stranded: a waiter's key, or the whole gate, is full.
        for (key, task) in &self.pending {
            if !task.is_woken() {
                assert!(
                    gate.key_in_flight(key) == PER_KEY || gate.in_flight() == GLOBAL,
                    "a waiter of {key} could be admitted: {} of its own, {} in all",
                    gate.key_in_flight(key),
                    gate.in_flight()
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn permits_are_conserved_at_both_levels(ops in prop::collection::vec(op(), 1..120)) {
        let gate: Gate = KeyedGate::builder(PER_KEY)
            .global(GLOBAL)
            .max_keys(MAX_KEYS)
            .max_idle(1)
            .weight(|key| u32::from(*key % 3) + 1)
            .priority(|key| if key % 2 == 0 { Priority::Batch } else { Priority::Interactive })
            .batch_every(2)
            .build()
            .unwrap();
        let mut model = Model { gate: &gate, pending: Vec::new(), held: Vec::new() };
        for op in ops {
            match op {
                Op::Acquire(key) => {
                    let mut task = spawn(gate.acquire(&KEY_REFS[key as usize]));
                    match task.poll() {
                        Poll::Pending => model.pending.push((key, task)),
                        Poll::Ready(Ok(permit)) => model.held.push((key, permit)),
                        // Too many keys, all busy: refused at once.
                        Poll::Ready(Err(_)) => assert_eq!(gate.len(), MAX_KEYS),
                    }
                }
                Op::TryAcquire(key) => {
                    if let Ok(permit) = gate.try_acquire(&key) {
                        model.held.push((key, permit));
                    }
                }
                Op::PollWoken => model.poll_woken(),
                Op::Cancel(i) if !model.pending.is_empty() => {
                    let i = i % model.pending.len();
                    drop(model.pending.swap_remove(i));
                }
                Op::Release(i) if !model.held.is_empty() => {
                    let i = i % model.held.len();
                    drop(model.held.swap_remove(i));
                }
                Op::Cancel(_) | Op::Release(_) => {}
            }
            model.check();
        }
        // Everything given back: every key's whole limit, and the global one, are there.
        model.pending.clear();
        model.held.clear();
        prop_assert_eq!((gate.in_flight(), gate.waiting()), (0, 0));
        prop_assert!(gate.len() <= 1);
        let all: Vec<_> = (0..GLOBAL).map(|i| gate.try_acquire(&(i as u8 / 2)).unwrap()).collect();
        prop_assert!(gate.try_acquire(&KEYS).is_err());
        drop(all);
    }
}
