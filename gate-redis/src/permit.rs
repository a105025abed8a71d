//! [`RedisPermit`]: one admission by a [`RedisLimiter`](crate::RedisLimiter).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gate_core::{Outcome, OwnedLimiterPermit, Report};

use crate::FailurePolicy;
use crate::adaptive::Running;
use crate::background::{Command, Lease};
use crate::limiter::Shared;

/// Held while the caller is admitted by a [`RedisLimiter`](crate::RedisLimiter); dropping it
/// releases the permit in the background, without waiting for Redis.
///
/// [Finishing](Report::finish) it with [`Outcome::Overload`] and a `retry_after`, or a
/// [`pushback`](Report::pushback), pauses every process that shares the limit.
///
/// A permit of a [`RedisKeyedLimiter`](crate::RedisKeyedLimiter) with a
/// [global](crate::RedisKeyedLimiterBuilder::global) limit also holds the global limit's
/// permit: it is released, finished and settled with the key's. A pushback pauses the key
/// only (pause the global limiter itself to pause every key).
#[must_use = "the permit is released as soon as it is dropped"]
pub struct RedisPermit {
    shared: Arc<Shared>,
    held: Held,
    /// Tokens reserved from the shared budget (a local fallback permit keeps its own).
    tokens: u64,
    /// The global limit's permit, for a keyed limiter's permit under one.
    global: Option<Box<RedisPermit>>,
    /// The seat of this process's adaptive share, if the limiter has one.
    share: Option<Running>,
}

/// Where the permit came from.
pub(crate) enum Held {
    /// From Redis: the lease of a permit of the concurrency limit, if the limit has one.
    Shared(Option<Arc<Lease>>),
    /// From the local limiter of [`FailurePolicy::Local`], while Redis was unreachable.
    Local(OwnedLimiterPermit),
    /// Admitted without limit by [`FailurePolicy::Open`], while Redis was unreachable.
    Open,
}

impl RedisPermit {
    pub(crate) fn new(shared: Arc<Shared>, held: Held, tokens: u64) -> Self {
        Self {
            shared,
            held,
            tokens,
            global: None,
            share: None,
        }
    }

    /// The state of the limit it was admitted by (a keyed limiter's key's).
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Holds `global`'s permit with this one, released and reported with it.
    pub(crate) fn with_global(mut self, global: RedisPermit) -> Self {
        self.global = Some(Box::new(global));
        self
    }

    /// The same permit, holding `share`'s seat of the adaptive share until it ends.
    pub(crate) fn in_share(mut self, share: Option<Running>) -> Self {
        self.share = share;
        self
    }

    /// Tokens this attempt holds reserved from the shared budget: the estimate, or what the
    /// last [`settle`](Report::settle) said (for a local fallback permit, its limiter's).
    pub fn tokens(&self) -> u64 {
        match &self.held {
            Held::Local(permit) => permit.tokens(),
            _ => self.tokens,
        }
    }

    /// Whether Redis admitted this permit; `false` for one handed out by the
    /// [`FailurePolicy`] while Redis could not be reached.
    pub fn is_shared(&self) -> bool {
        matches!(self.held, Held::Shared(_))
    }

    /// Whether this permit's lease was lost: Redis dropped it before this process renewed
    /// it (a stall or a partition longer than the lease), or this process could not renew it
    /// in time to know it is still held. Another process may then have been admitted in its
    /// place, so work that must not overlap should stop. Checked by the renewal task every
    /// third of the lease; always `false` for a permit not held in Redis.
    pub fn lease_lost(&self) -> bool {
        match &self.held {
            Held::Shared(Some(lease)) => lease.lost.load(Ordering::Acquire),
            _ => false,
        }
    }
}

impl Report for RedisPermit {
    /// Pauses every process sharing the limit if the server said how long to stay away, then
    /// releases the permit; this process's adaptive share, if any, learns from the outcome,
    /// and a local fallback permit also reports to its limiter.
    fn finish(mut self, outcome: Outcome) {
        if let Some(global) = self.global.take() {
            // A server's time to stay away pauses the key, not every key.
            let outcome = match outcome {
                Outcome::Overload { .. } => Outcome::Overload { retry_after: None },
                other => other,
            };
            global.finish(outcome);
        }
        if let Some(share) = self.share.take() {
            share.finish(outcome);
        }
        if let Outcome::Overload {
            retry_after: Some(retry_after),
        } = outcome
        {
            self.pushback(retry_after);
        }
        if matches!(self.held, Held::Local(_))
            && let Held::Local(permit) = std::mem::replace(&mut self.held, Held::Open)
        {
            permit.finish(outcome);
        }
    }

    /// Pauses every process sharing the limit for `retry_after`, capped at the limiter's
    /// `max_pause`, in the background (and the local fallback limiter, if there is one).
    fn pushback(&self, retry_after: Duration) {
        if let FailurePolicy::Local(local) = &self.shared.on_failure {
            local.pause_for(retry_after);
        }
        self.shared
            .send(Command::Pause(self.shared.pause_millis(retry_after)));
    }

    /// Settles the token reservation with what the attempt `used`, in the background
    /// (gate-core's [rules](gate_core::LimiterPermit::settle): not settled, the estimate
    /// stays charged); a local fallback permit settles with its limiter.
    fn settle(&mut self, used: u64) {
        if let Some(global) = &mut self.global {
            global.settle(used);
        }
        match &mut self.held {
            Held::Shared(_) => self.shared.settle(&mut self.tokens, used),
            Held::Local(permit) => permit.settle(used),
            Held::Open => {}
        }
    }
}

impl Drop for RedisPermit {
    fn drop(&mut self) {
        if let Held::Shared(Some(lease)) = &self.held {
            let removed = self.shared.backend.leases.lock().unwrap().remove(&lease.id);
            drop(removed);
            self.shared.send(Command::Release(Arc::clone(&lease.id)));
        }
    }
}

impl fmt::Debug for RedisPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPermit")
            .field("shared", &self.is_shared())
            .field("lease_lost", &self.lease_lost())
            .field("global", &self.global)
            .finish_non_exhaustive()
    }
}
