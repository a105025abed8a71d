//! [`Quota`]: where a line's admission comes from: this process's own [`Limiter`], or a
//! [`RedisLimiter`] that every `llm_batch` with the same `--redis` and `--key` shares.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gate_core::adaptive::Aimd;
use gate_core::hint::{ServerLimits, Window};
use gate_core::rate::Rate;
use gate_core::{
    AcquireError, Admission, Limiter, Outcome, OwnedAdmission, OwnedLimiterPermit, Report,
    WaitLimits,
};
use gate_redis::{BuildError, FailurePolicy, RedisLimiter, RedisPermit};

/// The longest `Retry-After` honoured, by a retry and by the limiter's pause alike: a
/// token window refills within a minute, so a longer hint is a mistake or a spent daily
/// quota, and ends the line (which `--resume` can send again later).
pub const MAX_HINT: Duration = Duration::from_secs(120);

/// The limits the lines go out under.
#[derive(Debug, Clone)]
pub enum Quota {
    /// This process alone: adaptive concurrency, request rate and token budget, in memory.
    Local(Arc<Limiter>),
    /// Shared by every process that uses the same Redis and key: one concurrency limit,
    /// one request rate, one token budget and one pause for the fleet.
    Shared(Arc<RedisLimiter>),
}

impl Quota {
    /// One [`Limiter`] with a request rate of `rpm` and a token budget of `tpm` per `period`
    /// (a minute), and an AIMD concurrency limit of at most `concurrency`, starting at 8 or
    /// less.
    ///
    /// Both buckets hold a whole period's worth, as OpenAI's do (its headers count
    /// `x-ratelimit-remaining-requests` down from the minute's limit): a client that held
    /// less would leave the server's burst unused, and the makespan longer than the limits
    /// allow. What keeps the start from being a flood (the Cookbook script's flaw) is the
    /// concurrency limit; what keeps the buckets honest when other clients share the key is
    /// [`observe`](Self::observe).
    pub fn local(rpm: u32, tpm: u32, period: Duration, concurrency: usize) -> Self {
        let limiter = Limiter::builder()
            .adaptive(aimd(concurrency))
            .rate(per(rpm, period).burst(rpm))
            .tokens(per(tpm, period))
            .max_pause(MAX_HINT)
            .build()
            .expect("an adaptive limit within Gate::MAX_PERMITS");
        Self::Local(Arc::new(limiter))
    }

    /// The same limits kept in Redis at `url` under `key`, shared by every process that
    /// names them. `concurrency` is the fleet's ceiling, and each process adapts its own
    /// share below it with the same AIMD as [`local`](Self::local), from its own attempts
    /// (gate-redis's [`adaptive`](gate_redis::RedisLimiterBuilder::adaptive): under a 429
    /// storm each process cuts its share once, so the fleet's total is cut once). While
    /// Redis is unreachable a process admits nobody (gate-redis's default, fail closed: the
    /// quota is the fleet's, no process can keep it alone), then resumes when Redis answers.
    ///
    /// A killed process's permits come back when their lease runs out: 10 s (gate-redis's
    /// default) for a `period` of a minute, shorter in proportion for a shorter period, to
    /// at least 1 s. Sooner, with an `instance` (see [`instance`]): the process started
    /// again under the same name takes them back with its first admission.
    ///
    /// Needs a tokio runtime.
    pub fn shared(
        url: &str,
        key: &str,
        instance: Option<&str>,
        rpm: u32,
        tpm: u32,
        period: Duration,
        concurrency: usize,
    ) -> Result<Self, BuildError> {
        let client = redis::Client::open(url).map_err(BuildError::Redis)?;
        let builder = RedisLimiter::builder(client);
        let builder = match instance {
            Some(name) => builder.instance(name),
            None => builder,
        };
        let limiter = builder
            .key(format!("llm_batch:{key}"))
            .concurrency(concurrency.max(1))
            .adaptive(aimd(concurrency))
            .lease(lease(period))
            .rate(per(rpm, period).burst(rpm))
            .tokens(per(tpm, period))
            .max_pause(MAX_HINT)
            .on_failure(FailurePolicy::Closed)
            .build()?;
        Ok(Self::Shared(Arc::new(limiter)))
    }

    /// Waits until what a shared quota sent to Redis in the background (the releases of
    /// the permits dropped, settlements) has arrived ([`RedisLimiter::flush`]), so that a
    /// run that ends leaves nothing held for the rest of the fleet; nothing to wait for in
    /// one process.
    pub async fn flush(&self) {
        if let Self::Shared(limiter) = self {
            limiter.flush().await;
        }
    }

    /// The in-process limiter, if the quota is not shared.
    pub fn limiter(&self) -> Option<&Limiter> {
        match self {
            Self::Local(limiter) => Some(limiter),
            Self::Shared(_) => None,
        }
    }

    /// Waits for a line's admission with `tokens` reserved.
    pub async fn admit(&self, tokens: u64) -> Result<QuotaPermit, AcquireError> {
        match self {
            Self::Local(limiter) => Arc::clone(limiter)
                .admit_owned_tokens_with(tokens, limiter.wait_limits())
                .await
                .map(QuotaPermit::Local),
            Self::Shared(limiter) => limiter
                .admit_tokens_with(tokens, WaitLimits::UNBOUNDED)
                .await
                .map(QuotaPermit::Shared),
        }
    }

    /// The server's view wins: what a response's rate-limit headers say remains lowers the
    /// buckets (never raises them), for this process or, shared, for every process. (The
    /// server's `Retry-After` pauses through the retry policy's report of the attempt.)
    pub fn observe(&self, limits: &ServerLimits) {
        let limits = ServerLimits {
            retry_after: None,
            ..*limits
        };
        match self {
            Self::Local(limiter) => limiter.observe(&limits),
            Self::Shared(limiter) => limiter.observe(&limits),
        }
    }

    /// [`observe`](Self::observe) for headers that describe the server's buckets as they
    /// were `age` ago: a server counts what remains when it admits a request, and the
    /// answer arrives a completion later (a quarter of a second, the mock's mean, is 750
    /// tokens at 180,000 a minute). Each window's `remaining` is credited with the refill the
    /// server itself announces (`limit - remaining` by `reset`) over `age`, up to `limit`;
    /// a window without both is taken as it is.
    ///
    /// Counted from the send, `age` exceeds the headers' true age by the trip to the server,
    /// so the credit may be that much too large. It only ever makes the lowering shallower:
    /// the buckets are never raised above what the limiter (or Redis) counts itself. Taken
    /// as of the arrival instead, every answer would set the fleet's budget back by the
    /// refill during its own completion: the shared fleet came 3% later than the limits
    /// allowed at ten times the speed.
    pub fn observe_aged(&self, limits: &ServerLimits, age: Duration) {
        let aged = |window: Window| Window {
            remaining: window
                .remaining
                .map(|remaining| credited(window, remaining, age)),
            ..window
        };
        self.observe(&ServerLimits {
            requests: aged(limits.requests),
            tokens: aged(limits.tokens),
            input_tokens: aged(limits.input_tokens),
            output_tokens: aged(limits.output_tokens),
            ..*limits
        });
    }
}

/// `remaining` in `window` after `age` more of its refill: `limit - remaining` over
/// `reset`, at most `limit` (hostile values saturate, to less credit, never more).
fn credited(window: Window, remaining: u64, age: Duration) -> u64 {
    let (Some(limit), Some(reset)) = (window.limit, window.reset) else {
        return remaining;
    };
    if remaining >= limit || reset.is_zero() {
        return remaining;
    }
    let missing = limit - remaining;
    let refilled = u128::from(missing).saturating_mul(age.as_nanos()) / reset.as_nanos();
    let refilled = u64::try_from(refilled.min(u128::from(missing))).unwrap_or(missing);
    remaining + refilled
}

/// A run's name in the fleet: `--instance` if given, else `HOST:PATH`, the host's name and
/// the output file's absolute path (its directory's symbolic links resolved), which a
/// `--resume` of the run gives again and no other live run has (two runs writing one file
/// at once would garble it anyway). `None` (permits of a killed run then come back with
/// their lease) when the host's name cannot be read.
pub fn instance(given: Option<&str>, output: &Path) -> Option<String> {
    if let Some(name) = given {
        return Some(name.to_owned());
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()?;
    let host = host.trim();
    let path = std::path::absolute(output).ok()?;
    let path = match (path.parent(), path.file_name()) {
        (Some(dir), Some(file)) => {
            std::fs::canonicalize(dir).map_or(path.clone(), |d| d.join(file))
        }
        _ => path,
    };
    let name = format!("{host}:{}", path.display());
    // gate-redis takes 1 to 256 bytes: a longer path keeps its end, which differs most.
    let cut = name.len().saturating_sub(256);
    let start = (cut..name.len()).find(|&i| name.is_char_boundary(i))?;
    (!host.is_empty()).then(|| name[start..].to_owned())
}

/// The AIMD concurrency limit of at most `concurrency` (at least 1), starting at 8 or less.
fn aimd(concurrency: usize) -> Aimd {
    let concurrency = concurrency.max(1);
    Aimd::builder()
        .initial(concurrency.min(8))
        .min(1)
        .max(concurrency)
        .build()
        .expect("1 <= initial <= max")
}

/// A shared permit's lease for a quota counted over `period`: gate-redis's default
/// (10 s) for a minute, in proportion for a shorter one, between 1 s and the default.
pub fn lease(period: Duration) -> Duration {
    RedisLimiter::DEFAULT_LEASE
        .mul_f64(period.as_secs_f64() / 60.0)
        .clamp(Duration::from_secs(1), RedisLimiter::DEFAULT_LEASE)
}

/// `count` per `period`, at least 1 in at least a nanosecond.
fn per(count: u32, period: Duration) -> Rate {
    Rate::new(count.max(1), period.max(Duration::from_nanos(1)))
        .expect("a positive count over a positive period")
}

/// One line's admission, from either kind of [`Quota`].
#[derive(Debug)]
pub enum QuotaPermit {
    /// From this process's limiter.
    Local(OwnedLimiterPermit),
    /// From the limiter shared through Redis.
    Shared(RedisPermit),
}

impl Report for QuotaPermit {
    fn finish(self, outcome: Outcome) {
        match self {
            Self::Local(permit) => permit.finish(outcome),
            Self::Shared(permit) => permit.finish(outcome),
        }
    }

    fn pushback(&self, retry_after: Duration) {
        match self {
            Self::Local(permit) => Report::pushback(permit, retry_after),
            Self::Shared(permit) => permit.pushback(retry_after),
        }
    }

    fn settle(&mut self, used: u64) {
        match self {
            Self::Local(permit) => permit.settle(used),
            Self::Shared(permit) => permit.settle(used),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_permits_lease_shrinks_with_the_period_within_bounds() {
        assert_eq!(lease(Duration::from_secs(60)), RedisLimiter::DEFAULT_LEASE);
        assert_eq!(lease(Duration::from_secs(12)), Duration::from_secs(2));
        assert_eq!(lease(Duration::from_secs(3)), Duration::from_secs(1));
        assert_eq!(lease(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(lease(Duration::MAX), RedisLimiter::DEFAULT_LEASE);
    }

    #[test]
    fn a_runs_instance_is_the_given_name_or_its_host_and_output_path() {
        assert_eq!(
            instance(Some("pod-3"), Path::new("out.jsonl")).as_deref(),
            Some("pod-3")
        );
        let dir = std::env::temp_dir();
        let derived = instance(None, &dir.join("out.jsonl")).unwrap();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let expected = std::fs::canonicalize(&dir).unwrap().join("out.jsonl");
        assert_eq!(derived, format!("{}:{}", host.trim(), expected.display()));
        // The same file named another way is the same instance.
        let absolute = std::env::current_dir().unwrap().join("out.jsonl");
        assert_eq!(
            instance(None, Path::new("out.jsonl")),
            instance(None, &absolute)
        );
        // At most 256 bytes, keeping the end of a long path.
        let long = dir.join("d".repeat(300)).join("out.jsonl");
        let cut = instance(None, &long).unwrap();
        assert_eq!(cut.len(), 256);
        assert!(cut.ends_with("/out.jsonl"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_servers_remaining_is_credited_with_its_refill_since_the_request_was_sent() {
        let quota = Quota::local(600, 180_000, Duration::from_secs(60), 8);
        let tokens = quota.limiter().unwrap().token_limit().unwrap();
        // 1,000 left, 179,000 missing at 3 a millisecond: full in 59.67 s.
        let limits = |remaining: u64, reset: Duration| ServerLimits {
            tokens: Window {
                limit: Some(180_000),
                remaining: Some(remaining),
                reset: Some(reset),
            },
            ..ServerLimits::default()
        };
        let full_in = Duration::from_micros(59_666_667);
        // Said a second ago: 3,000 have come back since.
        quota.observe_aged(&limits(1_000, full_in), Duration::from_secs(1));
        assert!(
            (3_990..=4_000).contains(&tokens.remaining()),
            "{}",
            tokens.remaining()
        );
        // Said just now: taken as it is.
        quota.observe_aged(&limits(1_000, full_in), Duration::ZERO);
        assert!((1_000..=1_001).contains(&tokens.remaining()));
        // Never raised, whatever the age; hostile values saturate.
        quota.observe_aged(&limits(0, full_in), Duration::MAX);
        quota.observe_aged(&limits(5_000, Duration::ZERO), Duration::from_secs(1));
        let hostile = ServerLimits {
            tokens: Window {
                limit: Some(u64::MAX),
                remaining: Some(10),
                reset: Some(Duration::from_nanos(1)),
            },
            ..ServerLimits::default()
        };
        quota.observe_aged(&hostile, Duration::MAX);
        assert!((1_000..=1_001).contains(&tokens.remaining()));
        // Without a reset there is no refill to credit.
        let unknown = ServerLimits {
            tokens: Window {
                remaining: Some(500),
                ..Window::default()
            },
            ..ServerLimits::default()
        };
        quota.observe_aged(&unknown, Duration::from_secs(10));
        assert!((500..=501).contains(&tokens.remaining()));
    }

    #[tokio::test]
    async fn a_shared_quota_adapts_its_share_under_the_fleets_ceiling() {
        let quota = Quota::shared(
            "redis://127.0.0.1:1/",
            "unused",
            Some("pod-0"),
            600,
            180_000,
            Duration::from_secs(60),
            20,
        )
        .unwrap();
        let Quota::Shared(limiter) = quota else {
            panic!("shared");
        };
        // Built without contacting Redis.
        assert_eq!(
            (limiter.limit(), limiter.share_limit()),
            (Some(20), Some(8))
        );
    }
}
