//! [`RedisLimiter`]: a concurrency limit, a rate and a pause kept in Redis and shared by
//! every process that uses the same key.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gate_core::{AcquireError, Stats, WaitLimits};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use crate::adaptive::Share;
use crate::background::{self, Backend, Command, Commands, Job, Lease, Topic};
use crate::instance::{Instance, Reclaim};
use crate::permit::Held;
use crate::script::{self, Acquire, Keys, Plan, Reply, Verdict};
use crate::stats::{Ended, Record, Seen};
use crate::throttle::Throttle;
use crate::{BuildError, FailurePolicy, RedisLimiterBuilder, RedisPermit, Unavailable};

/// A limit kept in Redis, shared by every process that builds one with the same
/// [key](RedisLimiterBuilder::key): one concurrency limit, one rate and one pause for the
/// whole fleet, through the same [`Admission`](gate_core::Admission) API as a local
/// [`Limiter`](gate_core::Limiter). See the [crate docs](crate) for what Redis can and cannot
/// promise.
///
/// # Admission
///
/// Each admission is one script run atomically in Redis, with Redis's clock, in this order:
///
/// 1. **Pause.** While a pushback from any process holds (a key with a TTL), nobody is
///    admitted; the caller waits for the pause to end.
/// 2. **Concurrency.** Expired permits (of holders that crashed) are dropped; if fewer than
///    the limit are held and no earlier waiter is owed the free permit, one is taken.
///    Otherwise the caller joins the queue in Redis, in arrival order across all processes,
///    and waits to be woken by a release (announced by pub/sub, about one round trip after
///    it), with a slow fallback poll every quarter lease for lost messages. Each look keeps
///    the caller's place for half a lease more, so the place of a waiter that crashed lapses
///    within half a lease, and the callers behind it move up.
/// 3. **Rate and tokens.** The rate's cell and, with a
///    [token budget](RedisLimiterBuilder::tokens), the caller's estimate of tokens are taken
///    with GCRA, all at once, only together with the permit: a caller refused by either
///    takes nothing, and waits until the cells are due. The permit
///    [settles](gate_core::Report::settle) the tokens with what the attempt used, in the
///    background: the unused part goes back to every process, the excess is owed by all.
///
/// An uncontended admission is one round trip; releasing never makes the caller wait for
/// one (it is sent in the background).
///
/// # Leases
///
/// A permit is held in Redis under a lease ([`lease`](RedisLimiterBuilder::lease)), renewed
/// by one background task for all of the limiter's permits every third of it. A holder that
/// crashes keeps its permits until the lease runs out, and no longer; one that stalls or is
/// cut off longer than the lease loses them, and its permits say so
/// ([`RedisPermit::lease_lost`], and a warning in the log at most once a minute).
///
/// # Cancellation
///
/// Dropping an admission's future gives back its place in the queue and any permit it may
/// have been granted, in the background. A permit granted by a call whose answer never
/// arrived (a timeout, a cancellation racing the reply) is at worst held until its lease
/// expires, never longer.
///
/// # Runtime
///
/// The limiter's background task (releases, renewals, the subscription) runs on the tokio
/// runtime it was built in, and lives as long as the limiter or any of its permits. Build it
/// in the runtime that uses it: a limiter whose runtime has shut down admits by Redis still,
/// but its permits are freed only when their leases run out.
///
/// # Through gate-core
///
/// It is an [`Admission`](gate_core::Admission) and an
/// [`OwnedAdmission`](gate_core::OwnedAdmission), so it works with
/// [`Retry::call`](gate_core::Retry::call), [`Batch`](gate_core::Batch), `#[gated(limiter =
/// X)]` (with `X` a `static LazyLock<RedisLimiter>`) and gate-tower's layer. Its
/// [`try_admit`](gate_core::Admission::try_admit) always misses (every admission needs a round
/// trip), so callers go through `admit_with`; its [`snapshot`](gate_core::Admission::snapshot)
/// is [`stats`](Self::stats): the shared state as Redis last answered this process, and
/// this process's own counts. The fleet's concurrency limit is not adapted automatically: a
/// process that wants to change it for everyone calls [`set_limit`](Self::set_limit). Built
/// with [`adaptive`](RedisLimiterBuilder::adaptive), each process adapts its own share under
/// that ceiling from its attempts' outcomes, as a local adaptive limiter does (see there
/// for why the share, and not the limit in Redis, is what adapts).
#[derive(Clone)]
pub struct RedisLimiter {
    shared: Arc<Shared>,
}

/// What the builder checked, for [`RedisLimiter::from_settings`].
pub(crate) struct Settings {
    pub(crate) client: redis::Client,
    pub(crate) key: String,
    /// The rate's interval and tolerance, in nanoseconds.
    pub(crate) rate: Option<(u64, u64)>,
    /// The token budget's interval and tolerance, in nanoseconds.
    pub(crate) tokens: Option<(u64, u64)>,
    pub(crate) concurrency: Option<usize>,
    pub(crate) lease: Duration,
    pub(crate) timeout: Duration,
    pub(crate) max_pause: Duration,
    pub(crate) idle_ttl: Duration,
    pub(crate) wait_limits: WaitLimits,
    pub(crate) on_failure: FailurePolicy,
    /// This process's name in the fleet, if it has one.
    pub(crate) instance: Option<Arc<Instance>>,
}

/// The limiter's state, shared by its clones and its permits.
pub(crate) struct Shared {
    pub(crate) backend: Arc<Backend>,
    acquire: Arc<Acquire>,
    set_limit: Arc<redis::Script>,
    key: String,
    rate: Option<(u64, u64)>,
    tokens: Option<(u64, u64)>,
    /// The limit given to the builder, used while Redis holds none set by `set_limit`.
    concurrency: Option<usize>,
    /// The concurrency limit Redis answered with last.
    limit: AtomicUsize,
    pub(crate) max_pause: Duration,
    idle_ttl: Duration,
    wait_limits: WaitLimits,
    pub(crate) on_failure: FailurePolicy,
    /// This process's adaptive share, taken before the fleet's permit.
    pub(crate) share: Option<Arc<Share>>,
    /// Until when Redis is not asked, after a failed call: shared by the limits on one
    /// connection, so that a Redis found down costs one timeout, not one per key.
    down_until: Arc<Mutex<Option<Instant>>>,
    down_log: Arc<Throttle>,
    commands: Commands,
    runtime: tokio::runtime::Handle,
    /// Whether the subscription to releases was started (on the first admission).
    subscribed: AtomicBool,
    /// The limit's own subscription, not yet started; `None` for a key of a keyed limiter,
    /// whose one subscription serves all its keys.
    subscription: Mutex<Option<Subscription>>,
    /// Dropped with the limiter, which stops its own subscription.
    _stop: Option<oneshot::Sender<()>>,
    /// How every permit id handed out on the connection starts.
    id_prefix: Arc<str>,
    /// What the first admission takes back from earlier processes of this instance.
    reclaim: Option<Reclaim>,
    /// Counts the ids handed out on the connection, by every limit on it: a key of a keyed
    /// limiter evicted and made again must not hand out an id its last incarnation used,
    /// whose release may still be on its way.
    ids: Arc<AtomicU64>,
    /// The id of every admission of a limiter without a concurrency limit (none is held).
    no_id: Arc<str>,
}

/// A limit's own subscription to its release channel, started on its first admission.
pub(crate) struct Subscription {
    pub(crate) client: redis::Client,
    pub(crate) stop: oneshot::Receiver<()>,
}

/// What the limits on one connection share: the connection, the scripts, the background
/// task, and what the last call said of Redis's health. A [`RedisLimiter`] has one of its
/// own; the keys of a [`RedisKeyedLimiter`](crate::RedisKeyedLimiter) share one.
pub(crate) struct Hub {
    conn: ConnectionManager,
    /// The acquire script of the limits' one configuration.
    acquire: Arc<Acquire>,
    set_limit: Arc<redis::Script>,
    release: Arc<redis::Script>,
    renew: Arc<redis::Script>,
    pause: Arc<redis::Script>,
    settle: Arc<redis::Script>,
    observe: Arc<redis::Script>,
    commands: Commands,
    runtime: tokio::runtime::Handle,
    down_until: Arc<Mutex<Option<Instant>>>,
    down_log: Arc<Throttle>,
    lost_log: Arc<Throttle>,
    id_prefix: Arc<str>,
    instance: Option<Arc<Instance>>,
    ids: Arc<AtomicU64>,
}

impl Hub {
    /// See [`RedisLimiter::flush`].
    pub(crate) async fn flush(&self) {
        background::flush(&self.commands).await;
    }

    /// Connects lazily to the Redis of `settings` and starts the background task on
    /// `runtime`, which runs until every limit made by [`limit`](Self::limit) and all their
    /// permits are gone.
    pub(crate) fn new(
        settings: &Settings,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Self, BuildError> {
        // Each call is bounded as a whole (connecting included) by `Backend::invoke`.
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(Some(settings.timeout))
            .set_number_of_retries(2)
            .set_max_delay(settings.timeout);
        let conn = {
            let _enter = runtime.enter();
            ConnectionManager::new_lazy_with_config(settings.client.clone(), config)
                .map_err(BuildError::Redis)?
        };
        let (commands, receiver) = mpsc::unbounded_channel();
        runtime.spawn(background::worker(settings.lease, receiver));
        Ok(Self {
            conn,
            acquire: Arc::new(Acquire::new(Plan {
                rate: settings.rate,
                tokens: settings.tokens,
                concurrency: settings
                    .concurrency
                    .map(|limit| u64::try_from(limit).unwrap_or(u64::MAX)),
                lease_ms: millis(settings.lease),
                idle_ms: millis(settings.idle_ttl),
            })),
            set_limit: Arc::new(script::set_limit()),
            release: Arc::new(script::release()),
            renew: Arc::new(script::renew()),
            pause: Arc::new(script::pause()),
            settle: Arc::new(script::settle()),
            observe: Arc::new(script::observe()),
            commands,
            runtime: runtime.clone(),
            down_until: Arc::default(),
            down_log: Arc::default(),
            lost_log: Arc::default(),
            id_prefix: {
                let nonce = RandomState::new().hash_one(std::process::id());
                let instance = settings.instance.as_ref().map_or("", |i| i.prefix());
                Arc::from(format!("{instance}{nonce:016x}-"))
            },
            instance: settings.instance.clone(),
            ids: Arc::default(),
        })
    }

    /// The state of the limit named `key` on this connection, with the limits of
    /// `settings`; its waiters are woken through what `wake` gives for its release channel,
    /// which its own `subscription` (if it has one) notifies.
    pub(crate) fn limit(
        &self,
        settings: &Settings,
        key: String,
        wake: impl FnOnce(&str) -> Arc<Notify>,
        subscription: Option<Subscription>,
    ) -> Shared {
        let keys = Keys::new(&key);
        let wake = wake(&keys.channel);
        let backend = Arc::new(Backend {
            conn: self.conn.clone(),
            keys,
            timeout: settings.timeout,
            lease: settings.lease,
            release: Arc::clone(&self.release),
            renew: Arc::clone(&self.renew),
            pause: Arc::clone(&self.pause),
            settle: Arc::clone(&self.settle),
            observe: Arc::clone(&self.observe),
            token_interval: settings.tokens.map_or(0, |(interval, _)| interval),
            record: Record::new(),
            leases: Mutex::default(),
            wake,
            lost_log: Arc::clone(&self.lost_log),
        });
        Shared {
            backend,
            acquire: Arc::clone(&self.acquire),
            set_limit: Arc::clone(&self.set_limit),
            key,
            rate: settings.rate,
            tokens: settings.tokens,
            concurrency: settings.concurrency,
            limit: AtomicUsize::new(settings.concurrency.unwrap_or(0)),
            max_pause: settings.max_pause,
            idle_ttl: settings.idle_ttl,
            wait_limits: settings.wait_limits,
            on_failure: settings.on_failure.clone(),
            share: None,
            down_until: Arc::clone(&self.down_until),
            down_log: Arc::clone(&self.down_log),
            commands: self.commands.clone(),
            runtime: self.runtime.clone(),
            subscribed: AtomicBool::new(false),
            subscription: Mutex::new(subscription),
            _stop: None,
            id_prefix: Arc::clone(&self.id_prefix),
            reclaim: self
                .instance
                .as_ref()
                .filter(|_| settings.concurrency.is_some())
                .map(|instance| Reclaim::new(Arc::clone(instance))),
            ids: Arc::clone(&self.ids),
            no_id: Arc::from(""),
        }
    }
}

impl RedisLimiter {
    /// The lease of a permit unless [set](RedisLimiterBuilder::lease): 10 seconds, long
    /// enough to ride out a Redis failover or a long GC pause, short enough that a crashed
    /// holder's permits come back soon.
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

    /// The shortest lease accepted: 100 ms (renewals every third of it must be able to
    /// make a round trip).
    pub const MIN_LEASE: Duration = Duration::from_millis(100);

    /// The longest lease accepted: one day.
    pub const MAX_LEASE: Duration = Duration::from_secs(86_400);

    /// The longest one Redis call may take unless [set](RedisLimiterBuilder::timeout):
    /// 250 ms, some hundred round trips on a local network, so that only a Redis that is
    /// down, failing over or overloaded hits it.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

    /// How long the keys of an unused limit stay in Redis unless
    /// [set](RedisLimiterBuilder::idle_ttl): one hour (at least two leases).
    pub const DEFAULT_IDLE_TTL: Duration = Duration::from_secs(3_600);

    /// The longest [`max_pause`](RedisLimiterBuilder::max_pause) accepted: one day.
    pub const MAX_PAUSE: Duration = Duration::from_secs(86_400);

    /// The longest [`idle_ttl`](RedisLimiterBuilder::idle_ttl) accepted: a year.
    pub const MAX_IDLE_TTL: Duration = Duration::from_secs(365 * 86_400);

    /// How long a limiter answers by its [`FailurePolicy`] without asking Redis, after a
    /// call failed: one second.
    pub const RECHECK_AFTER: Duration = Duration::from_secs(1);

    /// The longest burst span (`burst × interval`) a rate may have: about 35 years, so that
    /// the script's arithmetic in microseconds stays within 2^53, where Lua's doubles count
    /// them exactly.
    pub const MAX_RATE_SPAN: Duration = Duration::from_secs(1 << 30);

    /// A builder for a limiter on the Redis that `client` connects to.
    ///
    /// ```
    /// use std::time::Duration;
    /// use gate_core::rate::Rate;
    /// use gate_redis::{FailurePolicy, RedisLimiter};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379/")?;
    /// let limiter = RedisLimiter::builder(client)
    ///     .key("openai:org-1")
    ///     .rate(Rate::per_minute(500))
    ///     .concurrency(20)
    ///     .lease(Duration::from_secs(30))
    ///     .on_failure(FailurePolicy::Open)
    ///     .build()?;
    /// assert_eq!(limiter.key(), "openai:org-1");
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder(client: redis::Client) -> RedisLimiterBuilder {
        RedisLimiterBuilder::new(client)
    }

    pub(crate) fn from_settings(
        settings: Settings,
        adaptive: Option<Box<dyn gate_core::adaptive::LimitAlgorithm>>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Self, BuildError> {
        let hub = Hub::new(&settings, runtime)?;
        let (stop_sender, stop) = oneshot::channel();
        let subscription = Subscription {
            client: settings.client.clone(),
            stop,
        };
        // Redis's names escape `%`, `{` and `}`, so that a name cannot close the hash tag
        // early and put its keys in another name's slot; `key()` answers the name as given.
        let name = script::escape(&settings.key);
        let shared = hub.limit(&settings, name, |_| Arc::default(), Some(subscription));
        Ok(Self::from_arc(Arc::new(Shared {
            _stop: Some(stop_sender),
            key: settings.key.clone(),
            share: adaptive.map(|algorithm| Arc::new(Share::new(algorithm))),
            ..shared
        })))
    }

    /// The limiter over a limit's state (a key of a keyed limiter's, say).
    pub(crate) fn from_arc(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The name of the shared limit.
    pub fn key(&self) -> &str {
        &self.shared.key
    }

    /// The concurrency limit Redis answered with last (the builder's until the first
    /// admission, then whatever [`set_limit`](Self::set_limit) stored), or `None` for a
    /// limiter with a rate only.
    pub fn limit(&self) -> Option<usize> {
        self.shared.concurrency?;
        Some(self.shared.limit.load(Ordering::Relaxed))
    }

    /// Sets the concurrency limit for every process that shares this key, until the key
    /// goes unused for the [idle TTL](RedisLimiterBuilder::idle_ttl) (then each falls back
    /// to the limit it was built with). Raising it wakes the waiters in every process;
    /// lowering it takes no permit back: holders finish, and nobody is admitted until fewer
    /// than the new limit are held.
    pub async fn set_limit(&self, limit: usize) -> Result<(), Unavailable> {
        let shared = &self.shared;
        let keys = &shared.backend.keys;
        let mut invocation = shared.set_limit.prepare_invoke();
        invocation
            .key(&keys.limit)
            .arg(limit)
            .arg(millis(shared.idle_ttl))
            .arg(&keys.channel);
        shared.backend.invoke::<i64>(&invocation).await?;
        shared.limit.store(limit, Ordering::Relaxed);
        Ok(())
    }

    /// Pauses every process that shares this key for `duration`, capped at the
    /// [`max_pause`](RedisLimiterBuilder::max_pause), unless a longer pause already holds;
    /// waits for Redis to store it. A permit's [`pushback`](gate_core::Report::pushback) does
    /// the same in the background.
    pub async fn pause_for(&self, duration: Duration) -> Result<(), Unavailable> {
        let millis = self.shared.pause_millis(duration);
        if let FailurePolicy::Local(local) = &self.shared.on_failure {
            local.pause_for(duration);
        }
        self.shared.backend.set_pause(millis).await
    }

    /// The bounds [`admit`](gate_core::Admission::admit) waits within.
    pub fn wait_limits(&self) -> WaitLimits {
        self.shared.wait_limits
    }

    /// Waits for admission within `limits` (see [`Admission::admit_with`]). A rate or token
    /// budget whose next cell Redis says is due after `max_wait` is refused at once with
    /// [`AcquireError::TimedOut`] (counted as rejected), not after waiting `max_wait` out.
    ///
    /// [`Admission::admit_with`]: gate_core::Admission::admit_with
    pub async fn acquire_with(&self, limits: WaitLimits) -> Result<RedisPermit, AcquireError> {
        Arc::clone(&self.shared).admit(limits, None).await
    }

    /// Waits for admission of an attempt that will spend about `estimate` tokens of the
    /// shared [token budget](RedisLimiterBuilder::tokens), within `limits`; the permit
    /// [settles](gate_core::Report::settle) the reservation in the background. The same
    /// rules as gate-core's [`Limiter::acquire_tokens`](gate_core::Limiter::acquire_tokens):
    /// without a budget the estimate is ignored; with one, 0 fails at once with
    /// [`AcquireError::ZeroCost`] and more than the bucket holds with
    /// [`AcquireError::TooLarge`].
    pub async fn acquire_tokens_with(
        &self,
        estimate: u64,
        limits: WaitLimits,
    ) -> Result<RedisPermit, AcquireError> {
        Arc::clone(&self.shared).admit(limits, Some(estimate)).await
    }

    /// Corrects the shared limits from what a response's rate-limit headers say, for every
    /// process, as gate-core's [`Limiter::observe`](gate_core::Limiter::observe) does for
    /// one: the request rate's and the token budget's free cells are lowered to at most the
    /// server's `remaining` (never raised), and a `retry_after` pauses the fleet within
    /// [`max_pause`](RedisLimiterBuilder::max_pause). Sent in the background; the local
    /// fallback limiter, if there is one, is corrected too.
    #[cfg(feature = "http")]
    pub fn observe(&self, limits: &gate_core::hint::ServerLimits) {
        self.shared.observe(limits);
    }

    /// The most tokens one reservation may ask for: the budget's bucket, or `None` without
    /// a budget.
    pub fn token_capacity(&self) -> Option<u64> {
        self.shared.token_capacity()
    }

    /// Waits until every call this process has sent to Redis in the background so far
    /// has ended: the releases of the permits dropped before it (and of the waiters' places
    /// given up), token settlements, pauses and observed limits, of every limit on this
    /// limiter's connection. Call it before the process exits. The background task ends
    /// with the runtime, so a permit dropped just before an exit would otherwise stay held
    /// in Redis, for the whole fleet, until its lease runs out.
    ///
    /// A call that fails is sent again a few times, an eighth of the lease apart, so with
    /// Redis unreachable this takes up to about half a lease (plus the timeouts): bound it
    /// with `tokio::time::timeout` if the exit cannot wait. Permits still held are not
    /// released by it.
    pub async fn flush(&self) {
        background::flush(&self.shared.commands).await;
    }

    /// What this limiter has seen and done, without a round trip: the shared state as the
    /// last reply from Redis to this process showed it, and this process's own counts.
    ///
    /// - `limit`, `in_flight` and `waiting` are the concurrency limit in force, the permits
    ///   held and the callers queued across every process, as Redis answered this process's
    ///   latest admission or release (0 for those it never read: a rate only, or nothing
    ///   asked yet). They are as old as that answer: other processes' admissions and
    ///   releases since are not in them, and a process that asks rarely sees them rarely.
    ///   "Latest" is the latest reply read: Redis answers calls in the order they were
    ///   sent, but two calls in flight at once (two releases, or a release beside an
    ///   admission) are read by the tasks that sent them in either order, so until the
    ///   next reply the counts may be the earlier call's.
    /// - `admitted`, `rejected`, `timed_out`, `cancelled` and `wait` count this process's
    ///   admissions (those by the [`FailurePolicy`] included), as a local limiter's
    ///   [`Stats`] do. A refusal because Redis is out of reach under
    ///   [`FailurePolicy::Closed`] counts as rejected. The wait quantiles come from a
    ///   log-linear histogram, within 12.5%.
    ///
    /// [`rate_remaining`](Self::rate_remaining) and
    /// [`tokens_remaining`](Self::tokens_remaining) are cached the same way. This is what
    /// [`Admission::snapshot`](gate_core::Admission::snapshot) returns.
    pub fn stats(&self) -> Stats {
        let limit = self.limit().unwrap_or(0);
        self.shared.backend.record.stats(limit)
    }

    /// The shared rate's free cells after this process's latest admission that checked it,
    /// or `None` before any (or without a rate). As stale as [`stats`](Self::stats): other
    /// processes' admissions since are not counted, nor the cells that came back since.
    pub fn rate_remaining(&self) -> Option<u64> {
        self.shared.rate?;
        self.shared.backend.record.rate_free()
    }

    /// The shared token budget's free tokens after this process's latest admission that
    /// reserved some, or `None` before any (or without a budget); as stale as
    /// [`rate_remaining`](Self::rate_remaining).
    pub fn tokens_remaining(&self) -> Option<u64> {
        self.shared.tokens?;
        self.shared.backend.record.tokens_free()
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("key", &self.shared.key)
            .field("concurrency", &self.limit())
            .field("rate", &self.shared.rate.is_some())
            .field("lease", &self.shared.backend.lease)
            .field("on_failure", &self.shared.on_failure)
            .finish_non_exhaustive()
    }
}

/// A waiter's id, given back in the background unless admission succeeded: its place in
/// the queue, or a permit granted by a call whose answer was never read.
struct Pending<'a> {
    shared: &'a Shared,
    id: Option<Arc<str>>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.shared.send(Command::Release(id));
        }
    }
}

/// Counts an admission dropped before it ended as cancelled.
struct Watch<'a> {
    record: &'a Record,
    ended: bool,
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.record.ended(Ended::Cancelled);
        }
    }
}

impl Shared {
    pub(crate) fn send(&self, command: Command) {
        // The worker is gone only with the runtime: the lease then frees the permit.
        let _ = self
            .commands
            .send(Job::For(Arc::clone(&self.backend), command));
    }

    pub(crate) fn pause_millis(&self, duration: Duration) -> u64 {
        millis(duration.min(self.max_pause)).max(1)
    }

    fn next_id(&self) -> Arc<str> {
        id(&self.id_prefix, self.ids.fetch_add(1, Ordering::Relaxed))
    }

    /// Starts the subscription to releases, once.
    fn subscribe(&self) {
        if self.concurrency.is_none()
            || self.subscribed.load(Ordering::Acquire)
            || self.subscribed.swap(true, Ordering::AcqRel)
        {
            return;
        }
        if let Some(Subscription { client, stop }) = self.subscription.lock().unwrap().take() {
            let backend = Arc::clone(&self.backend);
            let channel = Topic::Channel(backend.keys.channel.clone());
            let wake = move |_: Option<&str>| backend.wake.notify_waiters();
            self.runtime.spawn(background::subscriber(
                client,
                self.backend.timeout,
                channel,
                wake,
                stop,
            ));
        }
    }

    /// Whether Redis is to be asked, or a recent failure says to answer by the policy.
    fn redis_is_down(&self) -> bool {
        let mut down = self.down_until.lock().unwrap();
        match *down {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                *down = None;
                false
            }
            None => false,
        }
    }

    fn redis_failed(&self, error: &Unavailable) {
        *self.down_until.lock().unwrap() = Some(Instant::now() + RedisLimiter::RECHECK_AFTER);
        if self.down_log.allow() {
            tracing::warn!(
                key = %self.key,
                %error,
                policy = ?self.on_failure,
                "gate-redis: redis is unreachable; admitting by the failure policy until it answers"
            );
        } else {
            tracing::debug!(key = %self.key, %error, "gate-redis: redis call failed");
        }
    }

    #[cfg(feature = "http")]
    fn observe(&self, limits: &gate_core::hint::ServerLimits) {
        if let FailurePolicy::Local(local) = &self.on_failure {
            local.observe(limits);
        }
        let remaining = |limit: Option<(u64, u64)>, remaining: Option<u64>| {
            let (Some((interval, tolerance)), Some(remaining)) = (limit, remaining) else {
                return [-1, 0, 0];
            };
            let cells = tolerance / interval.max(1);
            let clamp = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
            [
                clamp(remaining.min(cells + 1)),
                clamp(interval),
                clamp(cells),
            ]
        };
        let requests = remaining(self.rate, limits.requests.remaining);
        let tokens = remaining(
            self.tokens,
            limits.tokens.remaining.or(limits.input_tokens.remaining),
        );
        if requests[0] >= 0 || tokens[0] >= 0 {
            let [a, b, c] = requests;
            let [d, e, f] = tokens;
            self.send(Command::Observe([a, b, c, d, e, f]));
        }
        if let Some(retry_after) = limits.retry_after {
            self.send(Command::Pause(self.pause_millis(retry_after)));
        }
    }

    /// The token budget's bucket: `tolerance / interval + 1` cells.
    pub(crate) fn token_capacity(&self) -> Option<u64> {
        self.tokens
            .map(|(interval, tolerance)| tolerance / interval.max(1) + 1)
    }

    /// The token cells an admission for `estimate` books, as gate-core's limiter decides
    /// it: none without a budget or an estimate, else the estimate if the bucket holds it.
    fn token_cost(&self, estimate: Option<u64>) -> Result<u64, AcquireError> {
        let (Some(capacity), Some(estimate)) = (self.token_capacity(), estimate) else {
            return Ok(0);
        };
        match estimate {
            0 => Err(AcquireError::ZeroCost),
            requested if requested > capacity => Err(AcquireError::TooLarge {
                requested,
                capacity,
            }),
            tokens => Ok(tokens),
        }
    }

    /// Settles a reservation of `reserved` tokens with what the attempt `used`, in the
    /// background: the difference, bounded so that the script's arithmetic stays exact.
    pub(crate) fn settle(&self, reserved: &mut u64, used: u64) {
        let Some((interval, _)) = self.tokens else {
            return;
        };
        // A debt of more than `MAX_RATE_SPAN` is not kept: the budget errs as far as that.
        let most =
            i64::try_from(RedisLimiter::MAX_RATE_SPAN.as_nanos() / u128::from(interval.max(1)))
                .unwrap_or(i64::MAX);
        let cells = i128::from(used) - i128::from(*reserved);
        let cells = i64::try_from(cells.clamp(-i128::from(most), i128::from(most)))
            .expect("clamped to an i64");
        *reserved = used;
        if cells != 0 {
            self.send(Command::Settle(cells));
        }
    }

    pub(crate) async fn admit(
        self: Arc<Self>,
        limits: WaitLimits,
        estimate: Option<u64>,
    ) -> Result<RedisPermit, AcquireError> {
        self.admit_rated(limits, estimate).await.map_err(Into::into)
    }

    /// Like [`admit`](Self::admit), with a rate that has no cell within the caller's
    /// `max_wait` refused at once with the wait Redis gave for it.
    pub(crate) async fn admit_rated(
        self: Arc<Self>,
        limits: WaitLimits,
        estimate: Option<u64>,
    ) -> Result<RedisPermit, Refused> {
        let tokens = self.token_cost(estimate)?;
        let started = Instant::now();
        let mut watch = Watch {
            record: &self.backend.record,
            ended: false,
        };
        let (admitted, ended) = match limits.max_wait {
            Some(max_wait) if !max_wait.is_zero() => {
                match tokio::time::timeout(max_wait, self.admit_in_share(limits, tokens)).await {
                    Ok(admitted) => (admitted, None),
                    Err(_) => (Err(AcquireError::TimedOut.into()), Some(Ended::TimedOut)),
                }
            }
            _ => (self.admit_in_share(limits, tokens).await, None),
        };
        watch.ended = true;
        // Every error but the deadline's is a refusal without waiting for it.
        let ended = ended.unwrap_or(match admitted {
            Ok(_) => Ended::Admitted(started.elapsed()),
            Err(_) => Ended::Rejected,
        });
        self.backend.record.ended(ended);
        admitted
    }

    /// Admission with a seat of this process's adaptive share taken first, if it has one.
    async fn admit_in_share(
        self: &Arc<Self>,
        limits: WaitLimits,
        tokens: u64,
    ) -> Result<RedisPermit, Refused> {
        let seat = match &self.share {
            Some(share) => Some(share.seat(limits).await?),
            None => None,
        };
        let permit = self.admit_within(limits, tokens).await?;
        Ok(permit.in_share(seat.map(crate::adaptive::Seat::run)))
    }

    /// Admission, with the caller's time bound applied outside.
    async fn admit_within(
        self: &Arc<Self>,
        limits: WaitLimits,
        tokens: u64,
    ) -> Result<RedisPermit, Refused> {
        if self.redis_is_down() {
            return Ok(self.fall_back(limits, tokens).await?);
        }
        let deadline = limits
            .max_wait
            .and_then(|max_wait| Instant::now().checked_add(max_wait));
        self.subscribe();
        if let Some(reclaim) = &self.reclaim {
            reclaim.once(&self.backend).await;
        }
        let may_wait = limits.max_wait != Some(Duration::ZERO) && limits.max_waiters > 0;
        // Only a permit of the concurrency limit needs an id (and only its waiters a wake-up).
        let id = match self.concurrency {
            Some(_) => self.next_id(),
            None => Arc::clone(&self.no_id),
        };
        let mut pending = Pending {
            shared: self,
            id: self.concurrency.map(|_| Arc::clone(&id)),
        };
        let poll = self.backend.lease / 4;
        let mut queued = false;
        loop {
            let notified = self.backend.wake.notified();
            tokio::pin!(notified);
            if self.concurrency.is_some() {
                notified.as_mut().enable();
            }
            let sent = Instant::now();
            let acquire = self.call_acquire(&id, may_wait, limits.max_waiters, tokens);
            let verdict = match acquire.await {
                Ok(verdict) => verdict,
                Err(error) => {
                    self.redis_failed(&error);
                    drop(pending);
                    return Ok(self.fall_back(limits, tokens).await?);
                }
            };
            let wait = match verdict {
                Verdict::Admitted => {
                    pending.id = None;
                    return Ok(self.admitted(id, sent, tokens));
                }
                Verdict::QueueFull => return Err(AcquireError::QueueFull.into()),
                Verdict::Never => return Err(AcquireError::TimedOut.into()),
                // No use waiting for a cell due after the caller's deadline.
                Verdict::RateWait { micros } if past(deadline, micros) => {
                    return Err(Refused::Rate(Duration::from_micros(micros)));
                }
                _ if !may_wait => return Err(AcquireError::TimedOut.into()),
                Verdict::Full { .. } => {
                    queued = true;
                    tokio::select! {
                        () = &mut notified => {}
                        () = tokio::time::sleep(poll) => {}
                    }
                    continue;
                }
                Verdict::RateWait { micros } => Duration::from_micros(micros),
                Verdict::Paused { millis } => Duration::from_millis(millis),
            };
            // A queued waiter looks again before its place in the queue expires.
            let wait = if queued { wait.min(poll) } else { wait };
            tokio::time::sleep(wait).await;
        }
    }

    async fn call_acquire(
        &self,
        id: &str,
        may_wait: bool,
        max_waiters: usize,
        tokens: u64,
    ) -> Result<Verdict, Unavailable> {
        let command = self
            .acquire
            .command(&self.backend.keys, id, may_wait, max_waiters, tokens);
        let reply: redis::Value = self
            .backend
            .invoke_command(&command, self.acquire.script())
            .await?;
        let reply = Reply::parse(&reply, self.acquire.plan());
        if let Some(limit) = reply.limit {
            self.limit.store(
                usize::try_from(limit).unwrap_or(usize::MAX),
                Ordering::Relaxed,
            );
        }
        self.backend.record.saw(Seen {
            held: reply.held,
            waiting: reply.waiting,
            rate_free: reply.rate_free,
            tokens_free: reply.tokens_free,
        });
        Ok(reply.verdict)
    }

    /// The permit for `id`, admitted by a call sent at `sent` with `tokens` reserved.
    fn admitted(self: &Arc<Self>, id: Arc<str>, sent: Instant, tokens: u64) -> RedisPermit {
        let lease = self.concurrency.map(|_| {
            let lease = Arc::new(Lease {
                id: Arc::clone(&id),
                lost: AtomicBool::new(false),
                // Counted from before the call was sent: never later than Redis's expiry.
                expires: Mutex::new(sent + self.backend.lease),
            });
            let first = {
                let mut leases = self.backend.leases.lock().unwrap();
                let first = leases.is_empty();
                leases.insert(id, Arc::clone(&lease));
                first
            };
            if first {
                self.send(Command::Held);
            }
            lease
        });
        RedisPermit::new(Arc::clone(self), Held::Shared(lease), tokens)
    }

    /// Admission by the failure policy, while Redis cannot be reached.
    /// The local limiter is asked for the same `tokens` (and applies its own budget, if it
    /// has one); an open admission reserves none.
    async fn fall_back(
        self: &Arc<Self>,
        limits: WaitLimits,
        tokens: u64,
    ) -> Result<RedisPermit, AcquireError> {
        match &self.on_failure {
            FailurePolicy::Closed => Err(AcquireError::Unavailable),
            FailurePolicy::Open => Ok(RedisPermit::new(Arc::clone(self), Held::Open, 0)),
            FailurePolicy::Local(local) => {
                // The caller's time bound is applied around the whole admission.
                let limits = WaitLimits {
                    max_wait: limits.max_wait.filter(|wait| wait.is_zero()),
                    max_waiters: limits.max_waiters,
                };
                let local = Arc::clone(local);
                let permit = match tokens {
                    0 => local.acquire_owned_with(limits).await?,
                    tokens => local.acquire_owned_tokens_with(tokens, limits).await?,
                };
                Ok(RedisPermit::new(Arc::clone(self), Held::Local(permit), 0))
            }
        }
    }
}

/// The id `{prefix}{n}` (the prefix is `[INSTANCE/INCARNATION/]NONCE-`, the nonce in
/// hex), written by hand: it is made on every admission, and the formatting machinery
/// costs several times as much.
fn id(prefix: &str, n: u64) -> Arc<str> {
    let mut digits = [0_u8; 20];
    let mut rest = n;
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let digits = std::str::from_utf8(&digits[start..]).expect("ASCII digits");
    // One allocation, the `Arc`'s: the id is put together on the stack when it fits (a
    // prefix without an instance name always does).
    let mut id = [0_u8; 96];
    let len = prefix.len() + digits.len();
    match id.get_mut(..len) {
        Some(buf) => {
            buf[..prefix.len()].copy_from_slice(prefix.as_bytes());
            buf[prefix.len()..].copy_from_slice(digits.as_bytes());
            Arc::from(std::str::from_utf8(buf).expect("a prefix and ASCII digits"))
        }
        None => Arc::from([prefix, digits].concat()),
    }
}

/// Why an admission gave no permit.
#[derive(Debug)]
pub(crate) enum Refused {
    /// As an [`Admission`](gate_core::Admission) refuses.
    Acquire(AcquireError),
    /// The rate's next cell is due this long from now, after the caller's `max_wait`.
    Rate(Duration),
}

impl From<AcquireError> for Refused {
    fn from(error: AcquireError) -> Self {
        Self::Acquire(error)
    }
}

/// A rate refusal is the time-out the caller would have waited for, without the wait.
impl From<Refused> for AcquireError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::Acquire(error) => error,
            Refused::Rate(_) => AcquireError::TimedOut,
        }
    }
}

/// Whether a cell due in `micros` (from Redis: any `u64`) comes after `deadline`.
fn past(deadline: Option<Instant>, micros: u64) -> bool {
    deadline.is_some_and(|deadline| {
        Instant::now()
            .checked_add(Duration::from_micros(micros))
            .is_none_or(|due| due > deadline)
    })
}

/// Whole milliseconds of `duration`, saturating.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_id_is_the_prefix_and_the_count() {
        for (prefix, n) in [
            ("0000000000000000-", 0),
            ("0000000000000001-", 9),
            ("pod-0/00000000deadbeef/00000000000000aa-", 10),
            ("ffffffffffffffff-", u64::MAX),
            ("", 12_345),
            (&"x".repeat(300), 7),
        ] {
            assert_eq!(&*super::id(prefix, n), format!("{prefix}{n}"));
        }
    }
}
