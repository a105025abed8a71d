//! The limiters' background work, so that no caller waits for it: releases, pauses and
//! cancelled places in the queue (sent as soon as asked), lease renewals (one task for all of
//! the permits of every limit on one connection, every third of the lease), and the
//! subscription that wakes waiters when a permit is released anywhere.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::script::{Keys, RELEASE_BATCH};
use crate::stats::{Record, Seen};
use crate::throttle::Throttle;

/// What the background task is asked to send.
#[derive(Debug)]
pub(crate) enum Command {
    /// Release a permit, or a waiter's place in the queue, held under this id.
    Release(Arc<str>),
    /// Pause the limit for this many milliseconds (already capped).
    Pause(u64),
    /// Settle a token reservation: charge this many more token cells (positive) or give
    /// them back (negative), already bounded.
    Settle(i64),
    /// Lower the shared buckets to what a server said remains: the observe script's
    /// arguments. Sent by `RedisLimiter::observe`, with the `http` feature.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    Observe([i64; 6]),
    /// The limit now holds permits under leases (it held none): renew them from now on.
    Held,
}

/// What the background task is sent: a limit's command, or a flush.
pub(crate) enum Job {
    /// A command for this limit.
    For(Arc<Backend>, Command),
    /// Answer once every call sent in the background before this job (releases,
    /// settlements, pauses, observations, by any limit on the connection) has ended.
    Flush(oneshot::Sender<()>),
}

/// Where the limits on one connection send their commands, each with the limit it is for.
pub(crate) type Commands = mpsc::UnboundedSender<Job>;

/// Waits until every call sent in the background through `commands` before it has ended
/// (see [`RedisLimiter::flush`](crate::RedisLimiter::flush)).
pub(crate) async fn flush(commands: &Commands) {
    let (done, ended) = oneshot::channel();
    // The worker is gone only with the runtime, which then leaves nothing to wait for.
    if commands.send(Job::Flush(done)).is_ok() {
        let _ = ended.await;
    }
}

/// One permit's lease, as its holder and the renewal task see it.
#[derive(Debug)]
pub(crate) struct Lease {
    pub(crate) id: Arc<str>,
    /// Set once the lease is known lost: expired in Redis before it was renewed, or not
    /// renewed in time for this process to know it is still held.
    pub(crate) lost: AtomicBool,
    /// When the lease runs out at the latest, as far as this process knows: the time the
    /// last successful renewal (or the admission) was sent, plus the lease.
    pub(crate) expires: Mutex<Instant>,
}

/// The permits this process holds, by id, for the renewal task.
pub(crate) type Leases = Mutex<HashMap<Arc<str>, Arc<Lease>, BuildHasherDefault<IdHasher>>>;

/// FNV-1a, for the ids this process makes itself (no caller chooses them, so nothing can
/// flood the map): each admission and each release hashes one, and SipHash, the map's
/// default, costs several times as much on a 20-byte id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Default for IdHasher {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// What the background tasks need of one limit, apart from the limiter itself, so that
/// releases sent by the last permit still go out after the limiter is gone. The connection
/// and the scripts are handles shared by every limit on the connection.
#[derive(Debug)]
pub(crate) struct Backend {
    pub(crate) conn: ConnectionManager,
    pub(crate) keys: Keys,
    pub(crate) timeout: Duration,
    pub(crate) lease: Duration,
    pub(crate) release: Arc<redis::Script>,
    pub(crate) renew: Arc<redis::Script>,
    pub(crate) pause: Arc<redis::Script>,
    pub(crate) settle: Arc<redis::Script>,
    pub(crate) observe: Arc<redis::Script>,
    /// The token budget's interval in nanoseconds (0 without one).
    pub(crate) token_interval: u64,
    /// What Redis last said of the limit, and this process's counts.
    pub(crate) record: Record,
    pub(crate) leases: Leases,
    /// Notified on every release announced on the limit's channel, and whenever the
    /// subscription is lost (so waiters look again rather than miss a release). A keyed
    /// limiter's keys share a few of these, by the hash of their channel.
    pub(crate) wake: Arc<Notify>,
    /// Shared by the limits on the connection: one warning a minute for all of them.
    pub(crate) lost_log: Arc<Throttle>,
}

impl Backend {
    /// Runs `invocation` within the timeout.
    pub(crate) async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, crate::Unavailable> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, invocation.invoke_async(&mut conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(crate::Unavailable::error(error)),
            Err(_) => Err(crate::Unavailable::timed_out()),
        }
    }

    /// Runs `command`, an `EVALSHA` of `script`, within the timeout, loading the script
    /// first if Redis does not have it (`NOSCRIPT`), as [`invoke`](Self::invoke) does.
    ///
    /// A connection found dropped (Redis restarted, or the network cut an idle connection)
    /// is made again by the connection manager, and the command is sent once more on the
    /// new one, within the same timeout: otherwise the first admission after a restart
    /// would fail, and the failure policy would answer for [`RECHECK_AFTER`] though Redis
    /// is up. If the first send had reached Redis and only its answer was lost, the
    /// second spends the admission's rate and tokens again, and a permit it finds full may
    /// wait for its own lease: never more admitted than the limits allow.
    ///
    /// [`RECHECK_AFTER`]: crate::RedisLimiter::RECHECK_AFTER
    pub(crate) async fn invoke_command<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
        script: &redis::Script,
    ) -> Result<T, crate::Unavailable> {
        let mut conn = self.conn.clone();
        let call = async {
            let mut sent_again = false;
            loop {
                match command.query_async(&mut conn).await {
                    Err(error)
                        if error.kind()
                            == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                    {
                        script.load_async(&mut conn).await?;
                        return command.query_async(&mut conn).await;
                    }
                    Err(error) if !sent_again && error.is_unrecoverable_error() => {
                        tracing::debug!(%error, "gate-redis: connection dropped; sending again");
                        sent_again = true;
                    }
                    done => return done,
                }
            }
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(crate::Unavailable::error(error)),
            Err(_) => Err(crate::Unavailable::timed_out()),
        }
    }

    async fn release(&self, ids: &[Arc<str>]) -> Result<(), crate::Unavailable> {
        let keys = &self.keys;
        let mut invocation = self.release.prepare_invoke();
        invocation
            .key(&keys.held)
            .key(&keys.queue)
            .key(&keys.queue_expiry)
            .arg(&keys.channel);
        for id in ids {
            invocation.arg(&**id);
        }
        let (_, held, waiting): (i64, i64, i64) = self.invoke(&invocation).await?;
        self.record.saw(Seen {
            held: u64::try_from(held).ok(),
            waiting: u64::try_from(waiting).ok(),
            ..Seen::default()
        });
        Ok(())
    }

    pub(crate) async fn set_pause(&self, millis: u64) -> Result<(), crate::Unavailable> {
        let mut invocation = self.pause.prepare_invoke();
        invocation.key(&self.keys.pause).arg(millis);
        self.invoke::<i64>(&invocation).await.map(drop)
    }

    /// Releases `ids` in one call, sending it again a few times if it fails: a release that
    /// never arrives costs the permits the rest of their lease, never more.
    async fn release_all(self: Arc<Self>, ids: Vec<Arc<str>>) {
        for attempt in 0..RELEASE_ATTEMPTS {
            match self.release(&ids).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::debug!(%error, attempt, "gate-redis: release failed");
                    tokio::time::sleep(self.lease / 8).await;
                }
            }
        }
    }

    /// Settles a token reservation by `cells`, sending it again a few times if it fails: a
    /// settlement that never arrives leaves the reservation as it was taken.
    async fn settle_tokens(self: Arc<Self>, cells: i64) {
        for attempt in 0..RELEASE_ATTEMPTS {
            let mut invocation = self.settle.prepare_invoke();
            invocation
                .key(&self.keys.tokens)
                .arg(cells)
                .arg(self.token_interval);
            match self.invoke::<i64>(&invocation).await {
                Ok(_) => return,
                Err(error) => {
                    tracing::debug!(%error, attempt, "gate-redis: settlement failed");
                    tokio::time::sleep(self.lease / 8).await;
                }
            }
        }
    }

    async fn lower_buckets(self: Arc<Self>, args: [i64; 6]) {
        let mut invocation = self.observe.prepare_invoke();
        invocation.key(&self.keys.rate).key(&self.keys.tokens);
        for arg in args {
            invocation.arg(arg);
        }
        if let Err(error) = self.invoke::<i64>(&invocation).await {
            tracing::debug!(%error, "gate-redis: could not share what the server said remains");
        }
    }

    async fn share_pause(self: Arc<Self>, millis: u64) {
        if let Err(error) = self.set_pause(millis).await {
            tracing::debug!(%error, "gate-redis: could not share a pause");
        }
    }

    /// Renews every lease this process holds, in one call, and reports those that were
    /// lost.
    async fn renew_all(self: Arc<Self>) {
        let held: Vec<Arc<Lease>> = self.leases.lock().unwrap().values().cloned().collect();
        if held.is_empty() {
            return;
        }
        let sent = Instant::now();
        let mut invocation = self.renew.prepare_invoke();
        invocation
            .key(&self.keys.held)
            .arg(u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX));
        for lease in &held {
            invocation.arg(&*lease.id);
        }
        let lost: Vec<Arc<Lease>> = match self.invoke::<Vec<String>>(&invocation).await {
            Ok(lost) => held
                .into_iter()
                .filter(|lease| {
                    let gone = lost.iter().any(|id| **id == *lease.id);
                    if !gone {
                        *lease.expires.lock().unwrap() = sent + self.lease;
                    }
                    gone
                })
                .collect(),
            Err(error) => {
                tracing::debug!(%error, "gate-redis: lease renewal failed");
                let now = Instant::now();
                held.into_iter()
                    .filter(|lease| *lease.expires.lock().unwrap() <= now)
                    .collect()
            }
        };
        if lost.is_empty() {
            return;
        }
        {
            let mut leases = self.leases.lock().unwrap();
            for lease in &lost {
                lease.lost.store(true, Ordering::Release);
                leases.remove(&lease.id);
            }
        }
        if self.lost_log.allow() {
            tracing::warn!(
                key = %self.keys.held,
                lost = lost.len(),
                "gate-redis: permits' leases ran out before they were renewed; other processes \
                 may be admitted in their place (a stall or a partition longer than the lease)"
            );
        } else {
            tracing::debug!(lost = lost.len(), "gate-redis: permits' leases lost");
        }
    }
}

/// Times a failed release is sent again, an eighth of the lease apart.
const RELEASE_ATTEMPTS: u32 = 4;

/// Runs until every sender is gone (every limit on the connection and all their permits):
/// sends the commands as they come, concurrently, the releases of one limit that arrived
/// together in one call, answers a flush once every call sent before it has ended, and
/// renews the leases of every limit that holds some every third of the lease.
pub(crate) async fn worker(lease: Duration, mut commands: mpsc::UnboundedReceiver<Job>) {
    let mut renewals = tokio::time::interval(lease / 3);
    renewals.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(RELEASE_BATCH);
    // The limits that hold permits under leases, by address: kept until a renewal finds
    // them holding none (a limit that takes one again says so with `Command::Held`).
    let mut holding: HashMap<usize, Arc<Backend>> = HashMap::new();
    // The calls sent since the last flush (a flush waits for them, and for the flush
    // before it, so that flushes end in order).
    let mut sent: JoinSet<()> = JoinSet::new();
    loop {
        tokio::select! {
            received = commands.recv_many(&mut batch, RELEASE_BATCH) => {
                if received == 0 {
                    // The last calls run on without the worker (a `JoinSet` dropped would
                    // cancel them: the last permits' releases among them).
                    sent.detach_all();
                    return;
                }
                while sent.try_join_next().is_some() {}
                let mut released: Vec<(Arc<Backend>, Vec<Arc<str>>)> = Vec::new();
                for job in batch.drain(..) {
                    let (backend, command) = match job {
                        Job::For(backend, command) => (backend, command),
                        Job::Flush(done) => {
                            // The releases that came before it in this batch go first.
                            for (backend, ids) in released.drain(..) {
                                sent.spawn(backend.release_all(ids));
                            }
                            let mut before = std::mem::take(&mut sent);
                            sent.spawn(async move {
                                while before.join_next().await.is_some() {}
                                let _ = done.send(());
                            });
                            continue;
                        }
                    };
                    match command {
                        Command::Release(id) => {
                            match released.iter_mut().find(|(b, _)| Arc::ptr_eq(b, &backend)) {
                                Some((_, ids)) => ids.push(id),
                                None => released.push((backend, vec![id])),
                            }
                        }
                        Command::Held => {
                            holding.insert(Arc::as_ptr(&backend) as usize, backend);
                        }
                        Command::Pause(millis) => {
                            sent.spawn(backend.share_pause(millis));
                        }
                        Command::Settle(cells) => {
                            sent.spawn(backend.settle_tokens(cells));
                        }
                        Command::Observe(args) => {
                            sent.spawn(backend.lower_buckets(args));
                        }
                    }
                }
                for (backend, ids) in released {
                    sent.spawn(backend.release_all(ids));
                }
            }
            _ = renewals.tick() => {
                // Checked here, in the one task that adds to `holding`, so that a limit that
                // takes a permit after this check is added back by its `Held`.
                holding.retain(|_, backend| !backend.leases.lock().unwrap().is_empty());
                for backend in holding.values() {
                    tokio::spawn(Arc::clone(backend).renew_all());
                }
            }
        }
    }
}

/// What a subscription listens to.
#[derive(Debug)]
pub(crate) enum Topic {
    /// One limit's release channel.
    Channel(String),
    /// The release channels of every key of a keyed limiter.
    Pattern(String),
}

/// Keeps a subscription to `topic` until `stop` fires (its limiter is dropped), calling
/// `wake` with the channel of each message, and with `None` whenever the subscription is
/// lost or made again (so that waiters look again rather than miss a release).
pub(crate) async fn subscriber(
    client: redis::Client,
    timeout: Duration,
    topic: Topic,
    wake: impl Fn(Option<&str>) + Send + 'static,
    mut stop: oneshot::Receiver<()>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let subscribed = tokio::time::timeout(timeout, async {
            let mut pubsub = client.get_async_pubsub().await?;
            match &topic {
                Topic::Channel(channel) => pubsub.subscribe(channel).await?,
                Topic::Pattern(pattern) => pubsub.psubscribe(pattern).await?,
            }
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        if let Ok(Ok(pubsub)) = subscribed {
            backoff = Duration::from_millis(50);
            // Releases made before the subscription was in place are not lost on anyone.
            wake(None);
            let mut messages = pubsub.into_on_message();
            loop {
                tokio::select! {
                    message = messages.next() => match message {
                        Some(message) => wake(Some(message.get_channel_name())),
                        None => break,
                    },
                    _ = &mut stop => return,
                }
            }
        }
        wake(None);
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = &mut stop => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}
