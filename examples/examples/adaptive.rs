//! Run with: cargo run --example adaptive
//!
//! The seed's Example 5, corrected: an adaptive limit that resizes ONE gate with
//! [`Gate::set_limit`], next to two ports of the seed's version, which swaps in a new
//! semaphore on every change.
//!
//! The seed's `AdaptiveSemaphore` grows its limit by 5 after every 10 successes and shrinks
//! it by 5 after every 3 failures, and it does so by *replacing* its semaphore:
//! `self.sem = Semaphore(self.limit)`. That breaks the limit in two ways:
//!
//! - **Permits are duplicated.** Callers holding permits of the old semaphore keep running,
//!   but the new semaphore does not know about them and hands out `limit` fresh permits, so
//!   up to *old holders + new limit* run at once, above any limit ever set.
//! - **Permits are lost.** `__aexit__` releases `self.sem`, which by then is the *new*
//!   semaphore: it swells past its limit, while callers queued on the old one wait for
//!   releases that never come. Under `asyncio.gather` they wait forever.
//!
//! A semaphore's count only means something while every permit taken from it is given back to
//! it. The fix is to keep one gate and change its limit: [`Gate::set_limit`] grows at once and
//! shrinks as permits come back, and each permit returns to the gate it came from. Then the
//! number in flight never exceeds the highest limit set so far, and after a shrink no caller
//! gets in until the excess has drained.
//!
//! This example runs the corrected version ([`AdaptiveGate`]) and, for comparison, two ports
//! of the seed's: [`Variant::SeedFaithful`] (release goes to the current semaphore, as in the
//! Python) and [`Variant::SeedOwnedPermits`] (what an RAII port does: release goes to the old
//! one).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use examples::Out;
use examples::seed::Gauge;
use futures_util::future::join_all;
use gate_core::Gate;
use tokio::sync::Semaphore;
use tokio::time::{Instant, sleep, timeout};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    run(&Config::default(), &Out::stdout()).await;
}

/// The seed's numbers, plus an arrival gap: calls arrive one every `arrival` (a stream of
/// requests) rather than all at once, so callers that come after a resize meet the new limit.
#[derive(Debug, Clone)]
pub struct Config {
    /// Calls to make.
    pub calls: usize,
    /// Time between two calls' arrivals.
    pub arrival: Duration,
    /// How long a call takes.
    pub call_time: Duration,
    /// Every call whose id is a multiple of this fails (the seed's 10%).
    pub fail_every: usize,
    /// How the limit moves.
    pub policy: Policy,
    /// How long to wait for a version that may never finish.
    pub patience: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            calls: 100,
            arrival: Duration::from_millis(5),
            call_time: Duration::from_millis(100),
            fail_every: 10,
            policy: Policy::default(),
            patience: Duration::from_secs(2),
        }
    }
}

/// The seed's adaptation: +`step` after every `grow_after` successes up to `max`, −`step`
/// after every `shrink_after` failures down to `min`.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// The limit at the start.
    pub initial: usize,
    /// How much one adjustment moves the limit.
    pub step: usize,
    /// Never below this.
    pub min: usize,
    /// Never above this.
    pub max: usize,
    /// Successes between two increases.
    pub grow_after: usize,
    /// Failures between two decreases.
    pub shrink_after: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            initial: 10,
            step: 5,
            min: 5,
            max: 50,
            grow_after: 10,
            shrink_after: 3,
        }
    }
}

/// Success and failure counts, and the limit they lead to.
#[derive(Debug, Clone, Copy)]
struct Counts {
    limit: usize,
    successes: usize,
    failures: usize,
}

impl Counts {
    /// Records one outcome; returns the old and new limit if it changed.
    fn record(&mut self, ok: bool, policy: &Policy) -> Option<(usize, usize)> {
        let before = self.limit;
        if ok {
            self.successes += 1;
            if self.successes.is_multiple_of(policy.grow_after) && self.limit < policy.max {
                self.limit = (self.limit + policy.step).min(policy.max);
            }
        } else {
            self.failures += 1;
            if self.failures.is_multiple_of(policy.shrink_after) && self.limit > policy.min {
                self.limit = self.limit.saturating_sub(policy.step).max(policy.min);
            }
        }
        (self.limit != before).then_some((before, self.limit))
    }
}

/// Which implementation to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// One [`Gate`], resized with [`Gate::set_limit`].
    OneGate,
    /// The seed's code: acquire from the current semaphore, release to whatever semaphore is
    /// current at exit, replace the semaphore on every change.
    SeedFaithful,
    /// The seed's idea with owned permits: each permit returns to its own semaphore, but the
    /// semaphore is still replaced on every change.
    SeedOwnedPermits,
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The implementation run.
    pub variant: Variant,
    /// Calls that finished (successfully or not) before the patience ran out.
    pub finished: usize,
    /// Calls that succeeded.
    pub successes: usize,
    /// Calls that failed.
    pub failures: usize,
    /// The limit at the end.
    pub final_limit: usize,
    /// The highest limit ever set.
    pub highest_limit: usize,
    /// Most calls in flight at once.
    pub peak_in_flight: usize,
    /// Admissions that found more calls in flight than the highest limit set so far.
    pub over_limit: usize,
    /// Permits free in the (current) gate or semaphore once everything settled.
    pub free_at_end: usize,
}

/// The corrected `AdaptiveSemaphore`: one gate, resized in place.
#[derive(Debug)]
pub struct AdaptiveGate {
    gate: Gate,
    policy: Policy,
    counts: Mutex<Counts>,
    highest: AtomicUsize,
}

impl AdaptiveGate {
    /// A gate starting at `policy.initial` permits.
    pub fn new(policy: Policy) -> Self {
        Self {
            gate: Gate::new(policy.initial),
            policy,
            counts: Mutex::new(Counts {
                limit: policy.initial,
                successes: 0,
                failures: 0,
            }),
            highest: AtomicUsize::new(policy.initial),
        }
    }

    /// Runs `work` holding a permit, then adapts the limit to its outcome.
    pub async fn run<T, E>(
        &self,
        work: impl Future<Output = Result<T, E>>,
        on_change: impl FnOnce(usize, usize, usize),
    ) -> Result<T, E> {
        let result = self.gate.run(work).await.expect("the gate is never closed");
        let change = self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(result.is_ok(), &self.policy);
        if let Some((before, limit)) = change {
            // Raise the "highest so far" mark before the gate can admit anyone under it.
            self.highest.fetch_max(limit, SeqCst);
            self.gate.set_limit(limit).expect("limits stay small");
            on_change(before, limit, self.gate.stats().in_flight);
        }
        result
    }

    /// The gate, for its stats.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }
}

/// The seed's `AdaptiveSemaphore`, ported as written (for comparison only: it is broken).
#[derive(Debug)]
struct SeedAdaptiveSemaphore {
    sem: Mutex<Arc<Semaphore>>,
    policy: Policy,
    counts: Mutex<Counts>,
    highest: AtomicUsize,
    owned_permits: bool,
}

impl SeedAdaptiveSemaphore {
    fn current(&self) -> Arc<Semaphore> {
        Arc::clone(&self.sem.lock().unwrap_or_else(PoisonError::into_inner))
    }

    async fn run<T, E>(&self, work: impl Future<Output = Result<T, E>>) -> Result<T, E> {
        let result = if self.owned_permits {
            let _permit = self.current().acquire_owned().await.expect("never closed");
            work.await
            // `_permit` goes back to the semaphore it came from, which may have been replaced.
        } else {
            // `await self.sem.acquire()` ...
            self.current()
                .acquire()
                .await
                .expect("never closed")
                .forget();
            let result = work.await;
            // ... `self.sem.release()`: whichever semaphore is current *now*.
            self.current().add_permits(1);
            result
        };
        let change = self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(result.is_ok(), &self.policy);
        if let Some((_, limit)) = change {
            self.highest.fetch_max(limit, SeqCst);
            // `self.sem = Semaphore(self.limit)`: the holders of the old one are forgotten.
            *self.sem.lock().unwrap_or_else(PoisonError::into_inner) =
                Arc::new(Semaphore::new(limit));
        }
        result
    }
}

/// Runs the corrected version, then the seed's, and prints what each did.
pub async fn run(config: &Config, out: &Out) -> Vec<Run> {
    let mut runs = Vec::new();
    for variant in [
        Variant::OneGate,
        Variant::SeedFaithful,
        Variant::SeedOwnedPermits,
    ] {
        runs.push(run_variant(config, variant, out).await);
    }
    runs
}

/// Runs one implementation.
pub async fn run_variant(config: &Config, variant: Variant, out: &Out) -> Run {
    let in_flight = Arc::new(Gauge::default());
    let over_limit = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let start = Instant::now();

    // The work: `call_time` of sleep, failing for every `fail_every`-th id. It checks, on
    // entry, how many calls are inside against the highest limit set so far.
    let call = |id: usize, highest: &AtomicUsize| {
        let (inside, now) = in_flight.enter();
        if now > highest.load(SeqCst) {
            over_limit.fetch_add(1, SeqCst);
        }
        async move {
            let _inside = inside;
            sleep(config.call_time).await;
            if id.is_multiple_of(config.fail_every) {
                Err(format!("random failure {id}"))
            } else {
                Ok(id)
            }
        }
    };
    let arrive = |id: usize| sleep(config.arrival * u32::try_from(id).unwrap_or(u32::MAX));

    let outcome = match variant {
        Variant::OneGate => {
            out.line("✅ One gate, resized with Gate::set_limit:");
            let gate = AdaptiveGate::new(config.policy);
            let calls = (0..config.calls).map(|id| {
                let (gate, finished) = (&gate, &finished);
                async move {
                    arrive(id).await;
                    let r = gate
                        .run(
                            async { call(id, &gate.highest).await },
                            |before, limit, now| {
                                let verb = if limit > before {
                                    "📈 Increasing"
                                } else {
                                    "📉 Decreasing"
                                };
                                out.line(format!(
                                    "   [t={:.2}s] {verb} limit to {limit} ({now} in flight)",
                                    start.elapsed().as_secs_f64()
                                ));
                            },
                        )
                        .await;
                    finished.fetch_add(1, SeqCst);
                    r
                }
            });
            let results = timeout(config.patience, join_all(calls)).await;
            let counts = *gate.counts.lock().unwrap_or_else(PoisonError::into_inner);
            let highest = gate.highest.load(SeqCst);
            let free = gate.gate().available_permits();
            (results.is_ok(), counts, highest, free)
        }
        Variant::SeedFaithful | Variant::SeedOwnedPermits => {
            let owned = variant == Variant::SeedOwnedPermits;
            out.line(if owned {
                "\n❌ The seed's version with owned permits (each returns to its own, replaced, semaphore):"
            } else {
                "\n❌ The seed's version as written (release goes to whichever semaphore is current):"
            });
            let sem = SeedAdaptiveSemaphore {
                sem: Mutex::new(Arc::new(Semaphore::new(config.policy.initial))),
                policy: config.policy,
                counts: Mutex::new(Counts {
                    limit: config.policy.initial,
                    successes: 0,
                    failures: 0,
                }),
                highest: AtomicUsize::new(config.policy.initial),
                owned_permits: owned,
            };
            let calls = (0..config.calls).map(|id| {
                let (sem, finished) = (&sem, &finished);
                async move {
                    arrive(id).await;
                    let r = sem.run(async { call(id, &sem.highest).await }).await;
                    finished.fetch_add(1, SeqCst);
                    r
                }
            });
            let results = timeout(config.patience, join_all(calls)).await;
            let counts = *sem.counts.lock().unwrap_or_else(PoisonError::into_inner);
            let highest = sem.highest.load(SeqCst);
            let free = sem.current().available_permits();
            (results.is_ok(), counts, highest, free)
        }
    };
    let (completed, counts, highest_limit, free_at_end) = outcome;
    let run = Run {
        variant,
        finished: finished.load(SeqCst),
        successes: counts.successes,
        failures: counts.failures,
        final_limit: counts.limit,
        highest_limit,
        peak_in_flight: in_flight.peak(),
        over_limit: over_limit.load(SeqCst),
        free_at_end,
    };
    out.line("   📊 Final Stats:");
    out.line(format!("      Successes: {}", run.successes));
    out.line(format!("      Failures: {}", run.failures));
    out.line(format!("      Final limit: {}", run.final_limit));
    if !completed {
        out.line(format!(
            "      STUCK: after {:.1}s only {} of {} calls finished; the rest wait on a semaphore no release reaches",
            config.patience.as_secs_f64(),
            run.finished,
            config.calls
        ));
    }
    out.line(format!(
        "      Peak in flight: {} (highest limit ever set: {}); admissions above the limit: {}",
        run.peak_in_flight, run.highest_limit, run.over_limit
    ));
    out.line(format!(
        "      Permits free at the end: {} for a limit of {}{}",
        run.free_at_end,
        run.final_limit,
        if run.free_at_end == run.final_limit && completed {
            " (none lost, none duplicated)"
        } else {
            ""
        }
    ));
    run
}
