//! [`RedisKeyedLimiter`]: one shared limit per key (a tenant, an API key, a client), each
//! kept in Redis under its own hash-tagged keys, all on one connection and one background
//! task, with the keys held in this process's memory bounded as gate-core's keyed limits are.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::mem;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use gate_core::keyed::{DEFAULT_MAX_IDLE, DEFAULT_MAX_KEYS, KeyedAcquireError};
use gate_core::rate::Rate;
use gate_core::{AcquireError, Admission, OwnedAdmission, WaitLimits};
use tokio::sync::{Notify, oneshot};

use crate::background::{self, Topic};
use crate::limiter::{Hub, Refused, Settings, Shared};
use crate::script::escape;
use crate::{BuildError, RedisLimiter, RedisLimiterBuilder, RedisPermit};

/// How many keys each new key's sweep looks at (as gate-core's `KeyedLimiter`): more than
/// one, so that the keys in memory shrink back after a burst of new keys.
const SWEEP: usize = 3;

/// How many more keys a new key at the cap looks at for an idle one before it is refused.
const SWEEP_AT_CAP: usize = 16;

/// How many wake-up lists the keys share: a release of one key wakes the waiters of the
/// keys in its list only (about one key in 64), not every waiter of the keyed limiter.
const WAKE_SHARDS: usize = 64;

/// How a key is written into its Redis keys.
type Render<K> = dyn Fn(&K) -> String + Send + Sync;

/// A limit in Redis per key, each made from one template (a rate, a token budget, a
/// concurrency limit with leases, a pause: whatever a [`RedisLimiterBuilder`] sets), shared
/// by every process that builds a keyed limiter with the same prefix on the same Redis. It
/// is to [`RedisLimiter`] what gate-core's [`KeyedLimiter`](gate_core::keyed::KeyedLimiter)
/// is to [`Limiter`](gate_core::Limiter).
///
/// - **One limit per key, in Redis.** Key `k` of a keyed limiter whose template has the
///   [key](RedisLimiterBuilder::key) `PREFIX` is the limit named `PREFIX:k` (`k` written
///   with `Display`, as its bytes by [`builder_bytes`](Self::builder_bytes), or by the
///   function given to [`builder_with`](Self::builder_with)), so its
///   keys are `gate:{PREFIX:k}:rate`, `:held` and so on: hash-tagged per key, each tenant
///   lives in one Redis Cluster slot, and different tenants spread over the slots. A `%`,
///   `{` or `}` in the prefix or the key is written `%25`, `%7B`, `%7D`, so that no key can
///   move its tenant's hash tag or pass for another key. A [`RedisLimiter`] with the key
///   `PREFIX:k` shares key `k`'s limit.
/// - **One connection, one background task.** Every key's admissions go through one
///   multiplexed connection; releases, renewals and pauses of all keys go through one task,
///   the renewals as one call per key holding permits, every third of the lease; one
///   subscription (to the pattern of the keys' release channels) wakes the waiters of the
///   key a release was for, and of the few keys that share its wake-up list.
/// - **Redis forgets idle keys by itself.** Every key has a TTL, as for a
///   [`RedisLimiter`]: the rate's state expires once its bucket is full again, permits and
///   places in the queue with their leases, a [`set_limit`](RedisLimiter::set_limit)'s
///   limit after the template's [`idle_ttl`](RedisLimiterBuilder::idle_ttl). A tenant
///   nobody uses vanishes from Redis without anyone deleting it.
/// - **This process's memory is bounded, without help**, by gate-core's keyed rules: a key
///   is held in memory from its first use; it is *idle* once no permit of it is out here
///   and nobody here waits for one (its state is in Redis, so forgetting it loses nothing);
///   up to [`max_idle`](RedisKeyedLimiterBuilder::max_idle) keys (default
///   [`DEFAULT_MAX_IDLE`]) are kept whatever their state, beyond that each new key moves a
///   clock sweep over the next 3 keys in memory and evicts the idle ones; at most
///   [`max_keys`](RedisKeyedLimiterBuilder::max_keys) (default [`DEFAULT_MAX_KEYS`]) are
///   held, and a new key at the cap with no idle key in reach (16 more looked at) is
///   refused at once with [`KeyedAcquireError::TooManyKeys`] rather than grown into.
///
/// With a [global](RedisKeyedLimiterBuilder::global) limit (a [`RedisLimiter`] of its own),
/// every admission also takes a permit of it, after its key's.
///
/// Admissions of one key are a [`RedisLimiter`]'s: the same order (pause, concurrency,
/// rate and tokens), leases, cancellation and errors; an unreachable Redis answers by the
/// template's [`FailurePolicy`](crate::FailurePolicy) (a `Local` limiter is then one
/// limiter for all keys together, this process's share of the whole fleet's traffic). After
/// one key's call fails, every key answers by the policy for
/// [`RECHECK_AFTER`](RedisLimiter::RECHECK_AFTER): it is one Redis.
///
/// # Examples
///
/// Ten requests a second and two at once per tenant, for the whole fleet:
///
/// ```
/// use std::time::Duration;
/// use gate_core::rate::Rate;
/// use gate_redis::{RedisKeyedLimiter, RedisLimiter};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = redis::Client::open("redis://127.0.0.1:6379/")?;
/// let template = RedisLimiter::builder(client)
///     .key("tenants")
///     .rate(Rate::per_second(10))
///     .concurrency(2)
///     .idle_ttl(Duration::from_secs(600));
/// let tenants: RedisKeyedLimiter<String> = RedisKeyedLimiter::builder(template)
///     .max_keys(10_000)
///     .build()?;
/// assert_eq!(tenants.redis_name(&"org-1".to_string()), "tenants:org-1");
/// # Ok(())
/// # }
/// ```
///
/// One key's view, as an [`Admission`], for [`Retry::call`](gate_core::Retry::call),
/// [`Batch`](gate_core::Batch) or `#[gated(limiter = ..)]`:
///
/// ```no_run
/// # use std::sync::Arc;
/// # use gate_core::rate::Rate;
/// # use gate_redis::{RedisKeyedLimiter, RedisLimiter};
/// # async fn call_the_api() -> Result<String, std::io::Error> { Ok(String::new()) }
/// # #[tokio::main]
/// # async fn main() {
/// # let client = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
/// # let template = RedisLimiter::builder(client).key("models").rate(Rate::per_second(10));
/// let models = Arc::new(RedisKeyedLimiter::<&str>::new(template).unwrap());
/// let gpt = models.handle("gpt-5");
/// let answer = gate_core::Retry::new(3).call(&gpt, || call_the_api()).await;
/// # let _ = answer;
/// # }
/// ```
pub struct RedisKeyedLimiter<K, S = RandomState> {
    hub: Hub,
    /// The template: every key's limits; its key is the prefix.
    settings: Settings,
    /// The template's rate, as it was given, which a rate refusal states.
    pub(crate) rate: Option<Rate>,
    /// The limit every admission also takes a permit of, after its key's.
    global: Option<RedisLimiter>,
    render: Box<Render<K>>,
    max_keys: usize,
    max_idle: usize,
    /// The keys' wake-up lists, by the hash of their release channel under `shard_hasher`.
    wake: Arc<[Arc<Notify>]>,
    shard_hasher: RandomState,
    runtime: tokio::runtime::Handle,
    subscribed: AtomicBool,
    subscription: Mutex<Option<oneshot::Receiver<()>>>,
    /// Dropped with the keyed limiter, which stops the subscription.
    _stop: oneshot::Sender<()>,
    table: Mutex<Table<K, S>>,
}

/// The keys in memory, behind the keyed limiter's lock.
struct Table<K, S> {
    index: HashMap<K, u32, S>,
    entries: Vec<Option<Entry<K>>>,
    /// Free slots of `entries`.
    free: Vec<u32>,
    /// Where the clock sweep looks next.
    hand: usize,
}

/// One key's limit.
struct Entry<K> {
    /// The key again, to take it out of the index when it is evicted.
    key: K,
    shared: Arc<Shared>,
    /// Used since the sweep last passed.
    referenced: bool,
}

impl<K: fmt::Display> RedisKeyedLimiter<K> {
    /// A limit per key, each with `template`'s limits (its key is the prefix), keys written
    /// with `Display`, with the default caps on keys in memory.
    pub fn new(template: RedisLimiterBuilder) -> Result<Self, BuildError> {
        Self::builder(template).build()
    }

    /// Starts a keyed limiter on `template` whose caps on keys in memory can be set; keys
    /// are written with `Display`.
    pub fn builder(template: RedisLimiterBuilder) -> RedisKeyedLimiterBuilder<K> {
        Self::builder_with(template, |key: &K| key.to_string())
    }
}

impl<K: AsRef<[u8]>> RedisKeyedLimiter<K> {
    /// Like [`builder`](Self::builder), for keys that are bytes, UTF-8 or not: an
    /// `http::HeaderValue` (what gate-tower's `Header` extractor reads), a `Vec<u8>`, a
    /// `String`. Each key is written as its bytes, printable ASCII as it is and any other
    /// byte, and `\`, as `\xNN` (two upper-case hex digits): API key `a b` is `a b`,
    /// `caf\xc3\xa9` is `caf\xC3\xA9`, `\` is `\x5C`. Distinct byte strings are distinct
    /// limits, however they were meant to be read (a lossy conversion to text would make
    /// every key that is not UTF-8 one limit, which any tenant could spend). A name in
    /// Redis is as long as its key written out (up to four characters a byte, `%7B` for a
    /// `{`): bound keys that come from the network (gate-tower's `Header` takes at most 256
    /// bytes).
    ///
    /// ```
    /// use gate_redis::{RedisKeyedLimiter, RedisLimiter};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = redis::Client::open("redis://127.0.0.1:6379/")?;
    /// let template = RedisLimiter::builder(client).key("tenants").concurrency(2);
    /// let tenants: RedisKeyedLimiter<Vec<u8>> = RedisKeyedLimiter::builder_bytes(template).build()?;
    /// assert_eq!(tenants.redis_name(&b"org 1".to_vec()), "tenants:org 1");
    /// assert_eq!(tenants.redis_name(&b"\xff".to_vec()), "tenants:\\xFF");
    /// assert_eq!(tenants.redis_name(&b"\\xFF".to_vec()), "tenants:\\x5CxFF");
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder_bytes(template: RedisLimiterBuilder) -> RedisKeyedLimiterBuilder<K> {
        Self::builder_with(template, |key: &K| bytes_text(key.as_ref()))
    }
}

impl<K> RedisKeyedLimiter<K> {
    /// Like [`builder`](Self::builder), writing each key with `render` (called once when the
    /// key comes into memory, never under the keyed limiter's lock): for keys without
    /// `Display`, or to write a long key short (a hash of it). Two keys `render` writes the
    /// same share one limit: write bytes with [`builder_bytes`](Self::builder_bytes), not
    /// with a lossy conversion to text.
    pub fn builder_with(
        template: RedisLimiterBuilder,
        render: impl Fn(&K) -> String + Send + Sync + 'static,
    ) -> RedisKeyedLimiterBuilder<K> {
        RedisKeyedLimiterBuilder {
            template,
            global: None,
            render: Box::new(render),
            max_keys: DEFAULT_MAX_KEYS,
            max_idle: DEFAULT_MAX_IDLE,
            hasher: RandomState::new(),
        }
    }
}

impl<K, S> RedisKeyedLimiter<K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher,
{
    /// Waits for admission by `key`'s limit, within the template's wait limits.
    ///
    /// Fails with [`KeyedAcquireError::TooManyKeys`] at the cap with no idle key to evict,
    /// and otherwise as a [`RedisLimiter`] fails. Cancel-safe, as a [`RedisLimiter`]'s
    /// admission is.
    pub async fn acquire(&self, key: &K) -> Result<RedisPermit, KeyedAcquireError> {
        self.acquire_with(key, self.settings.wait_limits).await
    }

    /// Like [`acquire`](Self::acquire), within `limits` instead of the template's.
    pub async fn acquire_with(
        &self,
        key: &K,
        limits: WaitLimits,
    ) -> Result<RedisPermit, KeyedAcquireError> {
        let shared = self.find_or_make(key)?;
        Ok(admit(shared, self.global_shared(), limits, None).await?)
    }

    /// Waits for admission by `key`'s limit of an attempt that will spend about `estimate`
    /// tokens of its [token budget](RedisLimiterBuilder::tokens), within `limits`; see
    /// [`RedisLimiter::acquire_tokens_with`].
    pub async fn acquire_tokens_with(
        &self,
        key: &K,
        estimate: u64,
        limits: WaitLimits,
    ) -> Result<RedisPermit, KeyedAcquireError> {
        let shared = self.find_or_make(key)?;
        Ok(admit(shared, self.global_shared(), limits, Some(estimate)).await?)
    }

    /// `key`'s limit as a [`RedisLimiter`], made if it is new: to pause one tenant, set its
    /// concurrency limit or tell it what a server said. Holding it keeps the key in memory.
    pub fn limiter(&self, key: &K) -> Result<RedisLimiter, KeyedAcquireError> {
        let shared = self.find_or_make(key)?;
        Ok(RedisLimiter::from_arc(shared))
    }

    /// One key's view of this keyed limiter, an [`Admission`] and an [`OwnedAdmission`].
    /// It finds the key's limit on each admission, so holding it keeps nothing in memory.
    pub fn handle(self: &Arc<Self>, key: K) -> RedisKeyHandle<K, S> {
        RedisKeyHandle {
            keyed: Arc::clone(self),
            key,
        }
    }

    /// The name of `key`'s limit in Redis (its keys are `gate:{NAME}:...`): the prefix, a
    /// colon and the key as written, with `%`, `{` and `}` escaped.
    pub fn redis_name(&self, key: &K) -> String {
        name(&self.settings.key, &(self.render)(key))
    }

    /// Keys held in this process's memory right now.
    pub fn len(&self) -> usize {
        self.lock().index.len()
    }

    /// Waits until every call sent to Redis in the background for any key so far has
    /// ended, as [`RedisLimiter::flush`] does (whose docs say why to call it before the
    /// process exits, and how long it can take).
    pub async fn flush(&self) {
        self.hub.flush().await;
    }

    /// Whether no key is held in memory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `key` is held in memory.
    pub fn contains_key(&self, key: &K) -> bool {
        self.lock().index.contains_key(key)
    }

    /// The most keys held in memory at once.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// The template's key: the prefix of every key's limit.
    pub fn prefix(&self) -> &str {
        &self.settings.key
    }

    /// The limit every admission also takes a permit of, if one was
    /// [set](RedisKeyedLimiterBuilder::global).
    pub fn global(&self) -> Option<&RedisLimiter> {
        self.global.as_ref()
    }

    /// The bounds [`acquire`](Self::acquire) waits within: the template's.
    pub fn wait_limits(&self) -> WaitLimits {
        self.settings.wait_limits
    }

    /// The limit of `key`, made if it is new (written with the lock released: `render` is
    /// user code), after a sweep that evicts idle keys.
    pub(crate) fn find_or_make(&self, key: &K) -> Result<Arc<Shared>, KeyedAcquireError> {
        self.subscribe();
        if let Some(found) = self.lock().touch(key) {
            return Ok(found);
        }
        let name = name(&self.settings.key, &(self.render)(key));
        let wake = |channel: &str| self.wake_of(channel);
        let shared = Arc::new(self.hub.limit(&self.settings, name, wake, None));
        let key = key.clone();
        let mut evicted = Vec::new();
        let made = {
            let mut table = self.lock();
            if let Some(found) = table.touch(&key) {
                Ok(found)
            } else {
                if table.index.len() >= self.max_idle {
                    table.sweep(SWEEP, &mut evicted);
                }
                if table.index.len() >= self.max_keys {
                    table.sweep(SWEEP_AT_CAP, &mut evicted);
                }
                if table.index.len() >= self.max_keys {
                    Err(KeyedAcquireError::TooManyKeys)
                } else {
                    Ok(table.insert(key, shared))
                }
            }
        };
        // Evicted keys and limits (and an unused new one) drop here, unlocked.
        drop(evicted);
        made
    }

    fn lock(&self) -> MutexGuard<'_, Table<K, S>> {
        // User code never runs under the lock except `K`'s `Hash` and `Eq`.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K, S> RedisKeyedLimiter<K, S> {
    pub(crate) fn global_shared(&self) -> Option<Arc<Shared>> {
        self.global
            .as_ref()
            .map(|global| Arc::clone(global.shared()))
    }

    /// The wake-up list of the key whose release channel is `channel`.
    fn wake_of(&self, channel: &str) -> Arc<Notify> {
        Arc::clone(&self.wake[shard(&self.shard_hasher, channel)])
    }

    /// Starts the subscription to every key's release channel, once, if the template has a
    /// concurrency limit (only its waiters wait for releases).
    fn subscribe(&self) {
        // Read before it is written: every admission passes here.
        if self.settings.concurrency.is_none()
            || self.subscribed.load(Ordering::Acquire)
            || self.subscribed.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let Some(stop) = self.subscription.lock().unwrap().take() else {
            return;
        };
        let pattern = format!(
            "gate:{{{}:*}}:released",
            glob_escape(&escape(&self.settings.key))
        );
        let wake = Arc::clone(&self.wake);
        let hasher = self.shard_hasher.clone();
        let on_message = move |channel: Option<&str>| match channel {
            Some(channel) => wake[shard(&hasher, channel)].notify_waiters(),
            None => wake.iter().for_each(|wake| wake.notify_waiters()),
        };
        self.runtime.spawn(background::subscriber(
            self.settings.client.clone(),
            self.settings.timeout,
            Topic::Pattern(pattern),
            on_message,
            stop,
        ));
    }
}

/// Admission by a key's limit, then by the global one (if any) within what is left of
/// `limits.max_wait`: both permits or neither (the key's is released in the background if
/// the global limit refuses; the key's rate cell stays taken, erring slow).
async fn admit(
    key: Arc<Shared>,
    global: Option<Arc<Shared>>,
    limits: WaitLimits,
    estimate: Option<u64>,
) -> Result<RedisPermit, AcquireError> {
    Ok(admit_rated(key, global, limits, estimate).await?)
}

/// Like [`admit`], with a key's rate that has no cell within `limits.max_wait` refused at
/// once with its wait.
pub(crate) async fn admit_rated(
    key: Arc<Shared>,
    global: Option<Arc<Shared>>,
    limits: WaitLimits,
    estimate: Option<u64>,
) -> Result<RedisPermit, Refused> {
    let started = tokio::time::Instant::now();
    let permit = key.admit_rated(limits, estimate).await?;
    let Some(global) = global else {
        return Ok(permit);
    };
    // Past the caller's bound, the global limit gets one look that does not wait.
    let limits = WaitLimits {
        max_wait: limits
            .max_wait
            .map(|max_wait| max_wait.saturating_sub(started.elapsed())),
        ..limits
    };
    // The global limit's rate is not the key's, whose policy a rate refusal states: past
    // the deadline it refuses as a time-out does.
    let global = global.admit(limits, estimate).await?;
    Ok(permit.with_global(global))
}

/// The name of key `rendered`'s limit under `prefix`, each escaped.
fn name(prefix: &str, rendered: &str) -> String {
    format!("{}:{}", escape(prefix), escape(rendered))
}

/// `bytes` as text, one to one: printable ASCII but `\\` as it is, any other byte as `\\xNN`.
fn bytes_text(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut text = String::with_capacity(bytes.len());
    for &byte in bytes {
        if byte != b'\\' && (b' '..=b'~').contains(&byte) {
            text.push(char::from(byte));
        } else {
            text.push_str("\\x");
            text.push(char::from(HEX[usize::from(byte >> 4)]));
            text.push(char::from(HEX[usize::from(byte & 0xF)]));
        }
    }
    text
}

/// `text` with the characters Redis's glob patterns give a meaning escaped.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The wake-up list of a release channel.
fn shard(hasher: &RandomState, channel: &str) -> usize {
    // The remainder of a division by 64 fits.
    (hasher.hash_one(channel) % WAKE_SHARDS as u64) as usize
}

impl<K: Hash + Eq + Clone, S: BuildHasher> Table<K, S> {
    /// The limit of a key in memory, marked as used.
    fn touch(&mut self, key: &K) -> Option<Arc<Shared>> {
        let slot = *self.index.get(key)?;
        let entry = self.entries[slot as usize]
            .as_mut()
            .expect("a key in memory has an entry");
        entry.referenced = true;
        Some(Arc::clone(&entry.shared))
    }

    fn insert(&mut self, key: K, shared: Arc<Shared>) -> Arc<Shared> {
        let entry = Entry {
            key: key.clone(),
            shared: Arc::clone(&shared),
            referenced: true,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.entries[slot as usize] = Some(entry);
                slot
            }
            None => {
                self.entries.push(Some(entry));
                u32::try_from(self.entries.len() - 1).expect("at most max_keys entries")
            }
        };
        self.index.insert(key, slot);
        shared
    }

    /// Moves the clock hand over up to `steps` keys in memory: a key used since the hand
    /// last passed loses its mark, an unmarked idle key is evicted into `evicted`.
    fn sweep(&mut self, steps: usize, evicted: &mut Vec<(K, Arc<Shared>)>) {
        let len = self.entries.len();
        let mut looked = 0;
        for _ in 0..len {
            if looked == steps {
                break;
            }
            self.hand = (self.hand + 1) % len;
            let Some(entry) = &mut self.entries[self.hand] else {
                continue;
            };
            looked += 1;
            if mem::take(&mut entry.referenced) {
                continue;
            }
            // No permit out and no admission under way here: only the table holds the
            // limit (callers get their clones under this lock, so the count cannot rise
            // meanwhile). Its state is in Redis, which keeps it as long as it matters.
            if Arc::strong_count(&entry.shared) == 1 {
                let entry = self.entries[self.hand].take().expect("checked above");
                self.index.remove(&entry.key);
                self.free.push(self.hand as u32);
                evicted.push((entry.key, entry.shared));
            }
        }
    }
}

impl<K, S> fmt::Debug for RedisKeyedLimiter<K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisKeyedLimiter")
            .field("prefix", &self.settings.key)
            .field("concurrency", &self.settings.concurrency)
            .field("rate", &self.settings.rate.is_some())
            .field("global", &self.global)
            .field("max_keys", &self.max_keys)
            .field("max_idle", &self.max_idle)
            .finish_non_exhaustive()
    }
}

/// Builds a [`RedisKeyedLimiter`], from [`RedisKeyedLimiter::builder`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct RedisKeyedLimiterBuilder<K, S = RandomState> {
    template: RedisLimiterBuilder,
    global: Option<RedisLimiter>,
    render: Box<Render<K>>,
    max_keys: usize,
    max_idle: usize,
    hasher: S,
}

impl<K, S> RedisKeyedLimiterBuilder<K, S> {
    /// The most keys held in memory at once (at least 1; default [`DEFAULT_MAX_KEYS`]).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys.clamp(1, u32::MAX as usize);
        self
    }

    /// How many keys are kept, idle or not, before new keys start sweeping idle ones out
    /// (default [`DEFAULT_MAX_IDLE`], at most `max_keys`).
    pub fn max_idle(mut self, max_idle: usize) -> Self {
        self.max_idle = max_idle;
        self
    }

    /// Every admission, of any key, also takes a permit of `global` (a limit of the whole
    /// fleet across keys: an API's quota for the organisation, say), after its key's and
    /// within what is left of the same wait bound. Both are held, released and reported
    /// together; if `global` refuses, the key's permit is given back (its rate cell stays
    /// taken: the key errs slow). The global limit has its own connection and task.
    ///
    /// The global limit serves its waiters in arrival order, but a caller queues for it
    /// only once it holds its key's permit: with a per-key concurrency limit `n`, a key
    /// has at most `n` callers in the global queue, so a tenant with 10,000 requests
    /// queued delays another by at most `n` places per busy key, not by its backlog.
    pub fn global(mut self, global: RedisLimiter) -> Self {
        self.global = Some(global);
        self
    }

    /// Hashes keys in memory with `hasher` instead of std's [`RandomState`] (keys often
    /// come from the network: keep a keyed hasher for those).
    pub fn hasher<S2>(self, hasher: S2) -> RedisKeyedLimiterBuilder<K, S2> {
        RedisKeyedLimiterBuilder {
            template: self.template,
            global: self.global,
            render: self.render,
            max_keys: self.max_keys,
            max_idle: self.max_idle,
            hasher,
        }
    }

    /// Builds the keyed limiter, with the template's checks (see
    /// [`RedisLimiterBuilder::build`]; a template made adaptive is refused with
    /// [`BuildError::AdaptivePerKey`]). It connects lazily, on its first admission; it
    /// needs a tokio runtime, on which its background task runs. No key's limit is made
    /// until the key is first used.
    pub fn build(self) -> Result<RedisKeyedLimiter<K, S>, BuildError> {
        if self.template.is_adaptive() {
            return Err(BuildError::AdaptivePerKey);
        }
        let rate = self.template.rate_limit();
        let settings = self.template.into_settings()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let hub = Hub::new(&settings, &runtime)?;
        let (stop_sender, stop) = oneshot::channel();
        Ok(RedisKeyedLimiter {
            hub,
            settings,
            rate,
            global: self.global,
            render: self.render,
            max_keys: self.max_keys,
            max_idle: self.max_idle.min(self.max_keys),
            wake: (0..WAKE_SHARDS).map(|_| Arc::new(Notify::new())).collect(),
            shard_hasher: RandomState::new(),
            runtime,
            subscribed: AtomicBool::new(false),
            subscription: Mutex::new(Some(stop)),
            _stop: stop_sender,
            table: Mutex::new(Table {
                index: HashMap::with_hasher(self.hasher),
                entries: Vec::new(),
                free: Vec::new(),
                hand: 0,
            }),
        })
    }
}

impl<K, S> fmt::Debug for RedisKeyedLimiterBuilder<K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisKeyedLimiterBuilder")
            .field("template", &self.template)
            .field("global", &self.global)
            .field("max_keys", &self.max_keys)
            .field("max_idle", &self.max_idle)
            .finish_non_exhaustive()
    }
}

/// One key of a shared [`RedisKeyedLimiter`], from [`RedisKeyedLimiter::handle`]: an
/// [`Admission`] and an [`OwnedAdmission`], so [`Retry::call`](gate_core::Retry::call),
/// [`Batch`](gate_core::Batch), `#[gated(limiter = ..)]` and gate-tower's layer admit
/// through it as through a [`RedisLimiter`].
///
/// Its refusals read as [`AcquireError`]s: [`TooManyKeys`](KeyedAcquireError::TooManyKeys)
/// as [`AcquireError::QueueFull`]. Like a [`RedisLimiter`] its
/// [`try_admit`](Admission::try_admit) always misses (every admission takes a round trip);
/// its [`capacity`](Admission::capacity) is the template's concurrency limit.
pub struct RedisKeyHandle<K, S = RandomState> {
    keyed: Arc<RedisKeyedLimiter<K, S>>,
    key: K,
}

impl<K, S> RedisKeyHandle<K, S> {
    /// The key this handle admits for.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// The keyed limiter it admits through.
    pub fn keyed(&self) -> &Arc<RedisKeyedLimiter<K, S>> {
        &self.keyed
    }
}

impl<K: Clone, S> Clone for RedisKeyHandle<K, S> {
    fn clone(&self) -> Self {
        Self {
            keyed: Arc::clone(&self.keyed),
            key: self.key.clone(),
        }
    }
}

impl<K: fmt::Debug, S> fmt::Debug for RedisKeyHandle<K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisKeyHandle")
            .field("key", &self.key)
            .field("keyed", &self.keyed)
            .finish()
    }
}

impl<K, S> RedisKeyHandle<K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher,
{
    /// Admission of this key for `estimate` tokens (`None`: a plain admission).
    fn admit_key(
        &self,
        limits: WaitLimits,
        estimate: Option<u64>,
    ) -> impl Future<Output = Result<RedisPermit, AcquireError>> + Send + use<K, S> {
        let found = self.keyed.find_or_make(&self.key);
        let global = self.keyed.global_shared();
        async move {
            match found {
                Ok(shared) => admit(shared, global, limits, estimate).await,
                Err(error) => Err(error.into()),
            }
        }
    }
}

impl<K, S> Admission for RedisKeyHandle<K, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    S: BuildHasher + Send + Sync,
{
    type Permit<'a>
        = RedisPermit
    where
        Self: 'a;

    fn admit_with(
        &self,
        limits: WaitLimits,
    ) -> impl Future<Output = Result<RedisPermit, AcquireError>> + Send {
        self.admit_key(limits, None)
    }

    fn admit_tokens_with(
        &self,
        tokens: u64,
        limits: WaitLimits,
    ) -> impl Future<Output = Result<RedisPermit, AcquireError>> + Send {
        self.admit_key(limits, Some(tokens))
    }

    /// Always `None`, as [`RedisLimiter`]'s: every admission takes a round trip.
    fn try_admit(&self) -> Option<RedisPermit> {
        None
    }

    fn wait_limits(&self) -> WaitLimits {
        self.keyed.wait_limits()
    }

    /// The template's concurrency limit, or the global one if smaller; `None` for rates
    /// only.
    fn capacity(&self) -> Option<usize> {
        let key = self.keyed.settings.concurrency;
        let global = self.keyed.global.as_ref().and_then(RedisLimiter::limit);
        match (key, global) {
            (Some(key), Some(global)) => Some(key.min(global)),
            (key, global) => key.or(global),
        }
    }
}

impl<K, S> OwnedAdmission for RedisKeyHandle<K, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    type OwnedPermit = RedisPermit;

    fn admit_owned_with(
        self: Arc<Self>,
        limits: WaitLimits,
    ) -> impl Future<Output = Result<RedisPermit, AcquireError>> + Send + 'static {
        self.admit_key(limits, None)
    }

    fn admit_owned_tokens_with(
        self: Arc<Self>,
        tokens: u64,
        limits: WaitLimits,
    ) -> impl Future<Output = Result<RedisPermit, AcquireError>> + Send + 'static {
        self.admit_key(limits, Some(tokens))
    }

    /// Always `None`, as [`Admission::try_admit`].
    fn try_admit_owned(self: &Arc<Self>) -> Option<RedisPermit> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::Keys;

    #[test]
    fn escaping_keeps_hash_tags_closed_and_keys_apart() {
        assert_eq!(name("tenants", "org-1"), "tenants:org-1");
        assert_eq!(name("t", "a}b{c"), "t:a%7Db%7Bc");
        // `%` is escaped too, so an escaped form cannot pass for another key.
        assert_ne!(name("t", "%7D"), name("t", "}"));
        assert_eq!(name("t{x}", "k"), "t%7Bx%7D:k");
        let keys = Keys::new(&name("t", "}{"));
        assert!(
            !keys.rate["gate:{".len()..].contains(['{']),
            "{}",
            keys.rate
        );
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn bytes_are_written_as_printable_ascii_and_escapes() {
        assert_eq!(bytes_text(b"org 1~"), "org 1~");
        assert_eq!(bytes_text(b"\xff\xfe"), "\\xFF\\xFE");
        assert_eq!(bytes_text(b"\\xFF"), "\\x5CxFF");
        assert_eq!(bytes_text(b"\t\x7f\x00"), "\\x09\\x7F\\x00");
        assert_eq!(bytes_text("é".as_bytes()), "\\xC3\\xA9");
        assert_eq!(name("t", &bytes_text(b"}{")), "t:%7D%7B");
    }

    /// Bytes of escapes (`\\xFF`, `%7D`) and bytes that are escaped.
    const CONFUSABLE: [u8; 13] = *b"\\xF5C%7D{}\xff\xfe ";

    proptest::proptest! {
        // Regression: keys that are not UTF-8 were written lossily (the axum example and
        // its tests), and shared one limit. Distinct byte strings get distinct names.
        // Bytes drawn from those an escape is written with, so that near misses are tried.
        #[test]
        fn distinct_bytes_are_distinct_names(
            a in proptest::collection::vec(proptest::sample::select(CONFUSABLE.to_vec()), 0..8),
            b in proptest::collection::vec(proptest::sample::select(CONFUSABLE.to_vec()), 0..8),
        ) {
            let (x, y) = (name("t", &bytes_text(&a)), name("t", &bytes_text(&b)));
            proptest::prop_assert_eq!(a == b, x == y, "{:?} {:?}", x, y);
        }
    }
}
