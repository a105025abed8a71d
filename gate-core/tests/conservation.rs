//! Property: through any mix of acquire, try_acquire, cancel, release, resize and close,
//! permits are conserved, admissions respect the limit, and nobody who fits is stranded.

use gate_core::{Acquire, Gate, Permit};
use proptest::prelude::*;
use tokio_test::task::{Spawn, spawn};

#[derive(Debug, Clone)]
enum Op {
    /// Start an acquire of `n` permits and poll it once.
    Acquire(usize),
    /// Try to take `n` permits without waiting.
    TryAcquire(usize),
    /// Poll the pending acquire at this index (modulo the count) again.
    Poll(usize),
    /// Drop the pending acquire at this index, at whatever point it has reached.
    Cancel(usize),
    /// Drop the held permit at this index.
    Release(usize),
    /// Resize the gate.
    SetLimit(usize),
    /// Close the gate.
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (1..=3usize).prop_map(Op::Acquire),
        10 => (1..=3usize).prop_map(Op::TryAcquire),
        10 => any::<usize>().prop_map(Op::Poll),
        15 => any::<usize>().prop_map(Op::Cancel),
        30 => any::<usize>().prop_map(Op::Release),
        8 => (0..=6usize).prop_map(Op::SetLimit),
        1 => Just(Op::Close),
    ]
}

struct Pending<'a> {
    needed: usize,
    task: Spawn<Acquire<'a>>,
}

struct Model<'a> {
    gate: &'a Gate,
    limit: usize,
    closed: bool,
    pending: Vec<Pending<'a>>,
    held: Vec<Permit<'a>>,
}

impl<'a> Model<'a> {
    fn held_permits(&self) -> usize {
        self.held.iter().map(Permit::num_permits).sum()
    }

    /// Polls a pending acquire; if it completed, checks the admission and records it.
    fn poll(&mut self, i: usize) {
        use std::task::Poll;
        match self.pending[i].task.poll() {
            Poll::Pending => {}
            Poll::Ready(result) => {
                let p = self.pending.remove(i);
                match result {
                    Ok(permit) => {
                        assert_eq!(permit.num_permits(), p.needed);
                        assert!(!self.closed, "admitted after close");
                        self.held.push(permit);
                        assert!(
                            self.held_permits() <= self.limit,
                            "admitted past the limit: {} held, limit {}",
                            self.held_permits(),
                            self.limit
                        );
                    }
                    Err(_) => assert!(self.closed, "a waiter failed on an open gate"),
                }
            }
        }
    }

    /// Lets every woken waiter collect what it was given.
    fn settle(&mut self) {
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].task.is_woken() {
                let before = self.pending.len();
                self.poll(i);
                if self.pending.len() < before {
                    continue;
                }
            }
            i += 1;
        }
    }

    fn check(&self) {
        let stats = self.gate.stats();
        assert_eq!(
            stats.in_flight,
            self.held_permits(),
            "permits not conserved"
        );
        assert_eq!(stats.waiting, self.pending.len(), "queue length differs");
        assert_eq!(stats.limit, self.limit);
        if let Some(head) = self.pending.first() {
            // Strict FIFO: the head waits only while it does not fit.
            assert!(
                self.closed || self.held_permits() + head.needed > self.limit,
                "head waiter stranded: needs {}, {} held, limit {}",
                head.needed,
                self.held_permits(),
                self.limit
            );
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Acquire(n) => {
                self.pending.push(Pending {
                    needed: n,
                    task: spawn(self.gate.acquire_many(n)),
                });
                self.poll(self.pending.len() - 1);
            }
            Op::TryAcquire(n) => match self.gate.try_acquire_many(n) {
                Ok(permit) => {
                    assert!(self.pending.is_empty(), "try_acquire barged past the queue");
                    self.held.push(permit);
                    assert!(self.held_permits() <= self.limit);
                }
                Err(_) => assert!(
                    self.closed || !self.pending.is_empty() || self.held_permits() + n > self.limit,
                    "try_acquire refused permits that were free"
                ),
            },
            Op::Poll(i) if !self.pending.is_empty() => {
                let i = i % self.pending.len();
                self.poll(i);
            }
            Op::Cancel(i) if !self.pending.is_empty() => {
                let i = i % self.pending.len();
                drop(self.pending.remove(i));
            }
            Op::Release(i) if !self.held.is_empty() => {
                let i = i % self.held.len();
                drop(self.held.swap_remove(i));
            }
            Op::SetLimit(limit) => {
                self.gate.set_limit(limit).unwrap();
                self.limit = limit;
            }
            Op::Close => {
                self.gate.close();
                self.closed = true;
            }
            Op::Poll(_) | Op::Cancel(_) | Op::Release(_) => {}
        }
        self.settle();
        self.check();
    }
}

fn run(initial: usize, ops: Vec<Op>) {
    let gate = Gate::new(initial);
    let mut model = Model {
        gate: &gate,
        limit: initial,
        closed: false,
        pending: Vec::new(),
        held: Vec::new(),
    };
    for op in ops {
        model.apply(op);
    }
    let Model { pending, held, .. } = model;
    drop(pending);
    drop(held);
    let stats = gate.stats();
    assert_eq!((stats.in_flight, stats.waiting), (0, 0));
    assert_eq!(gate.available_permits(), stats.limit);
}

proptest! {
    // 500 cases x 2,000 operations = 10^6 operations per default run.
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn permits_are_conserved(initial in 0..=5usize, ops in proptest::collection::vec(op(), 2000)) {
        run(initial, ops);
    }
}
