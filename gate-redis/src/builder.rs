//! [`RedisLimiterBuilder`]: a shared limit's name, limits, lease, timeout and failure policy.

use std::sync::Arc;
use std::time::Duration;

use gate_core::adaptive::LimitAlgorithm;
use gate_core::rate::Rate;
use gate_core::{Limiter, WaitLimits};

use crate::instance::{Instance, MAX_NAME};
use crate::limiter::Settings;
use crate::{BuildError, FailurePolicy, RedisLimiter};

/// Builds a [`RedisLimiter`]; see [`RedisLimiter::builder`].
///
/// Every process that builds a limiter with the same [`key`](Self::key) on the same Redis
/// shares its limits. The limits themselves travel with each call (a concurrency limit
/// changed with [`RedisLimiter::set_limit`] is stored in Redis and wins), so processes should
/// be built with the same rate and limit.
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct RedisLimiterBuilder {
    client: redis::Client,
    key: String,
    rate: Option<Rate>,
    tokens: Option<Rate>,
    concurrency: Option<usize>,
    lease: Duration,
    timeout: Duration,
    max_pause: Duration,
    idle_ttl: Duration,
    wait_limits: WaitLimits,
    on_failure: FailurePolicy,
    adaptive: Option<Box<dyn LimitAlgorithm>>,
    instance: Option<String>,
}

impl RedisLimiterBuilder {
    pub(crate) fn new(client: redis::Client) -> Self {
        Self {
            client,
            key: String::from("default"),
            rate: None,
            tokens: None,
            concurrency: None,
            lease: RedisLimiter::DEFAULT_LEASE,
            timeout: RedisLimiter::DEFAULT_TIMEOUT,
            max_pause: Limiter::DEFAULT_MAX_PAUSE,
            idle_ttl: RedisLimiter::DEFAULT_IDLE_TTL,
            wait_limits: WaitLimits::UNBOUNDED,
            on_failure: FailurePolicy::default(),
            adaptive: None,
            instance: None,
        }
    }

    /// The name of the shared limit (`"default"` unless set): processes that use the same
    /// name on the same Redis share one limit. Its keys are `gate:{NAME}:...`, hash-tagged
    /// so that they live in one Redis Cluster slot, with `%`, `{` and `}` in the name
    /// written `%25`, `%7B` and `%7D` (so `a}{b` is `gate:{a%7D%7Bb}:...`, not in the slot
    /// of `a`); [`RedisLimiter::key`] answers the name as given.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
    }

    /// Admits at most `rate` callers (GCRA, with the rate's burst), counted across every
    /// process. Redis's clock counts microseconds: the time an admission books is rounded
    /// up to a whole one, so that rounding never lets the limit run faster than asked.
    pub fn rate(mut self, rate: Rate) -> Self {
        self.rate = Some(rate);
        self
    }

    /// A token budget shared by every process: at most `rate` tokens a period, reserved on
    /// admission ([`RedisLimiter::acquire_tokens_with`], or
    /// [`Admission::admit_tokens_with`](gate_core::Admission::admit_tokens_with)) and
    /// settled by the permit with what the attempt used, as gate-core's
    /// [`LimiterBuilder::tokens`](gate_core::LimiterBuilder::tokens) (same rules, same
    /// bucket: the rate's burst if above 1, else the whole period's count).
    ///
    /// The interval between tokens is kept in nanoseconds and Redis's clock counts
    /// microseconds: what one reservation or settlement books is rounded up to a whole
    /// microsecond, once for all its tokens (less than a microsecond an admission, not one
    /// a token: 180,000 tokens a 6 s minute are 33.3 µs apart, which rounding each up to
    /// 34 would slow by 2%), so that rounding never lets the budget run faster than asked.
    pub fn tokens(mut self, rate: Rate) -> Self {
        self.tokens = Some(rate.token_bucket());
        self
    }

    /// At most `limit` permits held at once across every process (until
    /// [`set_limit`](RedisLimiter::set_limit) changes it for all of them). A zero limit
    /// admits nobody.
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency = Some(limit);
        self
    }

    /// This process's share of the concurrency, adapted by `algorithm` from how its own
    /// attempts end (gate-core's [`Aimd`] for servers that refuse when overloaded,
    /// [`Gradient`] for those that slow down), as gate-core's
    /// [`LimiterBuilder::adaptive`](gate_core::LimiterBuilder::adaptive) adapts a local
    /// limiter's. A caller takes a seat of the share first, in this process, then the
    /// fleet's permit in Redis: the [`concurrency`](Self::concurrency) limit (if set) stays
    /// the fleet's ceiling, and the share only limits this process below it.
    ///
    /// The share learns from attempts [finished](gate_core::Report::finish) with their
    /// [`Outcome`](gate_core::Outcome) ([`Retry::call`](gate_core::Retry::call) and
    /// [`Batch`](gate_core::Batch) report each); a permit dropped unreported teaches it
    /// nothing. Only attempts the fleet admitted count as running, so a share does not grow
    /// while callers wait for the fleet's ceiling rather than for the server. It never goes
    /// below one permit. A share is not a shared limit: the builder still needs a rate, a
    /// token budget or a concurrency limit ([`BuildError::NoLimit`]).
    ///
    /// Why each process adapts its own share, rather than the limit in Redis: under a 429
    /// storm every process sees the refusals at once, and N processes each cutting the one
    /// shared limit would cut it N times; each cutting its own share once cuts the fleet's
    /// total once, by the backoff factor, with no round trip added. The shares then probe
    /// upward together, N times faster than one process would.
    ///
    /// ```
    /// use gate_core::adaptive::Aimd;
    /// use gate_redis::RedisLimiter;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379/")?;
    /// // At most 32 at once in the fleet; each process finds its own share, up to all 32.
    /// let limiter = RedisLimiter::builder(client)
    ///     .key("openai:org-1")
    ///     .concurrency(32)
    ///     .adaptive(Aimd::builder().initial(4).max(32).build()?)
    ///     .build()?;
    /// assert_eq!(limiter.share_limit(), Some(4));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// [`Aimd`]: gate_core::adaptive::Aimd
    /// [`Gradient`]: gate_core::adaptive::Gradient
    pub fn adaptive(mut self, algorithm: impl LimitAlgorithm + 'static) -> Self {
        self.adaptive = Some(Box::new(algorithm));
        self
    }

    /// How long a permit stays held in Redis without renewal ([`DEFAULT_LEASE`]
    /// unless set). A live holder renews every third of it in the background; a holder that
    /// crashes frees its permits when the lease runs out, and no sooner (unless it has an
    /// [instance](Self::instance) name, and a process of that name starts again). Longer leases
    /// survive longer stalls; shorter ones free a crashed holder's permits sooner.
    ///
    /// [`DEFAULT_LEASE`]: RedisLimiter::DEFAULT_LEASE
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Names this process among the fleet with a name that stays the same across its
    /// restarts and that no other live process uses (a StatefulSet pod's name, a host and
    /// a worker slot, a batch job's output file), so that a restarted process takes back at
    /// once what its predecessor held when it crashed, instead of waiting for the
    /// [lease](Self::lease) to run out (none unless set).
    ///
    /// The first admission of each limit removes, in one script, every permit and every
    /// place in the queue that an earlier process of this name left in Redis, and wakes the
    /// fleet's waiters if that freed any. It is the one way a permit comes back before its
    /// lease ends, and it is sound only if the name is unique among live processes: a
    /// second live process of the same name has its permits taken from it when the other
    /// starts (its renewal then [reports them lost](crate::RedisPermit::lease_lost), the
    /// fleet's limit may be exceeded until they end). Limiters of one process never take
    /// each other's permits, whatever their names. If Redis cannot be reached for it, the
    /// leases free them as they would without a name.
    ///
    /// A name of 1 to 256 bytes, else [`build`](Self::build) fails with
    /// [`BuildError::Instance`].
    pub fn instance(mut self, name: impl Into<String>) -> Self {
        self.instance = Some(name.into());
        self
    }

    /// The longest any one Redis call may take ([`DEFAULT_TIMEOUT`] unless set); past it
    /// the [failure policy](Self::on_failure) applies.
    ///
    /// [`DEFAULT_TIMEOUT`]: RedisLimiter::DEFAULT_TIMEOUT
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What to do while Redis cannot be reached ([`FailurePolicy::Closed`] unless set).
    pub fn on_failure(mut self, policy: FailurePolicy) -> Self {
        self.on_failure = policy;
        self
    }

    /// The longest one pushback pauses every process for (gate-core's
    /// [`Limiter::DEFAULT_MAX_PAUSE`], 60 s, unless set): a server's `Retry-After` of a day
    /// pauses the fleet for this long. At most [`RedisLimiter::MAX_PAUSE`] (one day), which a
    /// longer value is cut to.
    pub fn max_pause(mut self, max_pause: Duration) -> Self {
        self.max_pause = max_pause;
        self
    }

    /// How long the limit's keys outlive their last use ([`DEFAULT_IDLE_TTL`] unless set),
    /// between two leases and [`RedisLimiter::MAX_IDLE_TTL`] (a year), to which a value out
    /// of range is brought; a limit nobody uses vanishes from Redis. Keys that hold time-bound state (permits,
    /// places in the queue, the pause, the rate's state) expire with that state, sooner.
    ///
    /// [`DEFAULT_IDLE_TTL`]: RedisLimiter::DEFAULT_IDLE_TTL
    pub fn idle_ttl(mut self, idle_ttl: Duration) -> Self {
        self.idle_ttl = idle_ttl;
        self
    }

    /// The longest [`admit`](gate_core::Admission::admit) waits in all (unbounded unless
    /// set), as gate-core's limiters bound it.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.wait_limits.max_wait = Some(max_wait);
        self
    }

    /// The most callers queued in Redis, across every process, behind which
    /// [`admit`](gate_core::Admission::admit) refuses at once (unbounded unless set).
    pub fn max_waiters(mut self, max_waiters: usize) -> Self {
        self.wait_limits.max_waiters = max_waiters;
        self
    }

    /// Builds the limiter. It connects lazily, on its first admission, so building needs
    /// no server; it does need a tokio runtime, on which its background task runs.
    pub fn build(mut self) -> Result<RedisLimiter, BuildError> {
        let adaptive = self.adaptive.take();
        let settings = self.into_settings()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        RedisLimiter::from_settings(settings, adaptive, &runtime)
    }

    /// The rate given to [`rate`](Self::rate), if any.
    pub(crate) fn rate_limit(&self) -> Option<Rate> {
        self.rate
    }

    /// Whether [`adaptive`](Self::adaptive) was called.
    pub(crate) fn is_adaptive(&self) -> bool {
        self.adaptive.is_some()
    }

    /// The settings checked and brought within range, for a limiter or a keyed limiter's
    /// template.
    pub(crate) fn into_settings(self) -> Result<Settings, BuildError> {
        if self.rate.is_none() && self.tokens.is_none() && self.concurrency.is_none() {
            return Err(BuildError::NoLimit);
        }
        if !(RedisLimiter::MIN_LEASE..=RedisLimiter::MAX_LEASE).contains(&self.lease) {
            return Err(BuildError::Lease);
        }
        let instance = match self.instance.as_deref() {
            None => None,
            Some(name) if (1..=MAX_NAME).contains(&name.len()) => {
                Some(Arc::new(Instance::new(name)))
            }
            Some(_) => return Err(BuildError::Instance),
        };
        let rate = self.rate.map(nanos).transpose()?;
        let tokens = self.tokens.map(nanos).transpose()?;
        Ok(Settings {
            client: self.client,
            key: self.key,
            rate,
            tokens,
            concurrency: self.concurrency,
            lease: self.lease,
            timeout: self.timeout,
            max_pause: self.max_pause.min(RedisLimiter::MAX_PAUSE),
            idle_ttl: self
                .idle_ttl
                .clamp(self.lease * 2, RedisLimiter::MAX_IDLE_TTL),
            wait_limits: self.wait_limits,
            on_failure: self.on_failure,
            instance,
        })
    }
}

/// A rate's interval and tolerance in nanoseconds (gate-core's, rounded up), if its burst
/// span stays within [`RedisLimiter::MAX_RATE_SPAN`].
fn nanos(rate: Rate) -> Result<(u64, u64), BuildError> {
    let interval = rate.interval().as_nanos().max(1);
    let span = interval.saturating_mul(u128::from(rate.burst_size()));
    if span > RedisLimiter::MAX_RATE_SPAN.as_nanos() {
        return Err(BuildError::RateTooSlow);
    }
    // `span` bounds both, and is below 2^63.
    let interval = interval as u64;
    Ok((interval, interval * (u64::from(rate.burst_size()) - 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(instance: String) -> Result<RedisLimiter, BuildError> {
        // No server is needed: the limiter connects on its first admission.
        let client = redis::Client::open("redis://127.0.0.1:1/").unwrap();
        RedisLimiter::builder(client)
            .concurrency(1)
            .instance(instance)
            .build()
    }

    #[tokio::test]
    async fn an_instance_name_is_one_to_256_bytes() {
        assert!(matches!(build(String::new()), Err(BuildError::Instance)));
        assert!(matches!(build("é".repeat(129)), Err(BuildError::Instance)));
        assert!(build("w".repeat(256)).is_ok());
        assert!(build(String::from("pod-0/worker:3")).is_ok());
    }
}
