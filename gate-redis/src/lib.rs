//! gate's limits kept in Redis: one concurrency limit, one rate, one token budget and one
//! pause shared by every process that uses the same key, through the same API as a local
//! limiter.
//!
//! An API key's quota belongs to the whole fleet: four replicas each limiting themselves to
//! 500 a minute send 2,000 a minute. A [`RedisLimiter`] with the same
//! [key](RedisLimiterBuilder::key) in each of them keeps the fleet at 500.
//!
//! ```
//! use std::time::Duration;
//! use gate_core::rate::Rate;
//! use gate_core::{Admission, Limiter};
//! use gate_redis::{FailurePolicy, RedisLimiter};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Built without contacting Redis: it connects on its first admission.
//! let client = redis::Client::open("redis://127.0.0.1:6379/")?;
//! let limiter = RedisLimiter::builder(client)
//!     .key("openai:org-1")
//!     .rate(Rate::per_minute(500).burst(20))
//!     .concurrency(16)
//!     .lease(Duration::from_secs(10))
//!     .timeout(Duration::from_millis(250))
//!     // 4 replicas expected: each keeps a quarter while Redis is away.
//!     .on_failure(FailurePolicy::local(Limiter::new(16 / 4)))
//!     .build()?;
//! assert_eq!(limiter.capacity(), Some(16));
//! # Ok(())
//! # }
//! ```
//!
//! It is an [`Admission`](gate_core::Admission) and an
//! [`OwnedAdmission`](gate_core::OwnedAdmission), so it goes wherever a
//! [`Limiter`](gate_core::Limiter) goes:
//!
//! ```no_run
//! # use gate_core::rate::Rate;
//! # use gate_redis::RedisLimiter;
//! # async fn call_the_api() -> Result<String, std::io::Error> { Ok(String::new()) }
//! # #[tokio::main]
//! # async fn main() {
//! # let client = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
//! # let limiter = RedisLimiter::builder(client).rate(Rate::per_second(10)).build().unwrap();
//! let answer = gate_core::Retry::new(3).call(&limiter, || call_the_api()).await;
//! # let _ = answer;
//! # }
//! ```
//!
//! # A limit per key
//!
//! [`RedisKeyedLimiter`] keeps one such limit per key (a tenant, an API key, a model), all
//! made from one template and shared by the fleet key by key: tenant `k` under the prefix
//! `P` is the limit `P:k`, in one Redis Cluster slot of its own. Every key goes through one
//! connection and one background task; idle tenants vanish from Redis by their TTLs, and
//! from this process's memory by gate-core's keyed rules (an idle cap, a hard cap that
//! refuses new keys rather than grow).
//!
//! It is a [`KeyedAdmission`](gate_core::keyed::KeyedAdmission), so gate-tower's
//! `KeyedGateLayer` limits a server's requests per API key by it, every replica sharing each
//! key's limit: a key's rate with no cell within the layer's `max_wait` is answered `429`
//! with `Retry-After` (Redis's wait, capped at `i32::MAX` milliseconds) and the IETF
//! `RateLimit-Policy` / `RateLimit` fields, admitted answers carry what the key's rate had
//! left as Redis last told this process, and a key's concurrency limit holds across the
//! fleet (`examples/tests/keyed_fleet.rs`: two axum replicas on one redis-server).
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use gate_core::rate::Rate;
//! use gate_redis::{RedisKeyedLimiter, RedisLimiter};
//! use gate_tower::{KeyedGateLayer, keyed::Header};
//! use http::HeaderValue;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = redis::Client::open("redis://127.0.0.1:6379/")?;
//! // Five a second and two at once per API key, for every replica together.
//! let template = RedisLimiter::builder(client)
//!     .key("api-keys")
//!     .rate(Rate::per_second(5))
//!     .concurrency(2);
//! // A header's bytes as text (two keys that are not UTF-8 may share a limit).
//! let render = |key: &HeaderValue| String::from_utf8_lossy(key.as_bytes()).into_owned();
//! let tenants = RedisKeyedLimiter::builder_with(template, render).build()?;
//! let layer = KeyedGateLayer::with_admission(
//!     Arc::new(tenants),
//!     Header::new("x-api-key".parse()?),
//!     HeaderValue::from_static(""),
//! )
//! .max_wait(Duration::from_millis(100));
//! let hello = |_: http::Request<String>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hello")))
//! };
//! let service = tower::ServiceBuilder::new().layer(layer).service_fn(hello);
//! # let _ = service;
//! # Ok(())
//! # }
//! ```
//!
//! # How it decides
//!
//! Redis decides, with Redis's clock: every admission is one Lua script, run atomically on
//! the limit's keys and reading the time from `TIME` inside the script, so no client clock
//! and no read-compute-write from a client is involved. An uncontended admission is one
//! round trip (`EVALSHA`, loading the script on `NOSCRIPT`); a release is sent in the
//! background (a process about to exit calls [`RedisLimiter::flush`], so that its last
//! releases are not lost with its runtime and their permits held for a lease). See
//! [`RedisLimiter`] for the order of admission, the leases and the queue.
//!
//! The keys of a limit named `NAME` are `gate:{NAME}:rate`, `:tokens`, `:pause`, `:held`, `:queue`,
//! `:queue-expiry`, `:limit`, `:tickets` and `:state`, and its channel `gate:{NAME}:released`. The
//! hash tag `{NAME}` keeps them in one Redis Cluster slot (`%`, `{` and `}` in `NAME` are
//! written `%25`, `%7B` and `%7D`, so that no name closes the tag early and lands in another
//! name's slot, and two names stay two limits). Every key has a TTL: a limit
//! nobody uses vanishes.
//!
//! # What Redis can and cannot promise
//!
//! - **One Redis, or a cluster slot with no failover:** the limits hold exactly across every
//!   process. Concurrency is never exceeded while holders renew their leases; rate
//!   admissions in any window of length `T` number at most `burst + rate × T`.
//! - **Replication is asynchronous:** a failover to a replica can lose the last updates (a
//!   permit just taken, the latest rate cells, a pause). Over-admission after a failover is
//!   bounded by what was lost: at most the permits held (each freed at the latest when its
//!   holder releases it or its lease ends) and the rate cells taken in the replication lag.
//! - **A holder that stalls longer than its lease** (a pause, a partition) loses its permit,
//!   and another process may be admitted in its place; the holder is told
//!   ([`RedisPermit::lease_lost`]). A crashed holder's permits are freed when their lease
//!   runs out, and no sooner; its waiters' places in the queue lapse within half a lease.
//!   The one exception is a holder with an
//!   [instance name](RedisLimiterBuilder::instance): the next process of that name takes
//!   back what it left with its first admission.
//! - **While Redis is unreachable** (no answer within the
//!   [timeout](RedisLimiterBuilder::timeout)), admissions follow the [`FailurePolicy`]:
//!   closed by default, open, or a local limiter. Nothing hangs past the timeout, and
//!   sharing resumes by itself once Redis answers again.
//!
//! A pushback ([`Report::pushback`](gate_core::Report::pushback), or a permit finished with
//! [`Outcome::Overload`](gate_core::Outcome::Overload) and a `retry_after`) pauses every
//! process, capped at the [`max_pause`](RedisLimiterBuilder::max_pause) (60 s by default).
//!
//! Refusing because Redis is unreachable is reported as
//! [`AcquireError::Unavailable`](gate_core::AcquireError::Unavailable), apart from a limiter
//! that was closed: a later admission asks Redis again.
//!
//! # Adaptive limits
//!
//! With [`adaptive`](RedisLimiterBuilder::adaptive), each process adapts its own share of the
//! concurrency from its own attempts' outcomes (gate-core's
//! [`Aimd`](gate_core::adaptive::Aimd) or [`Gradient`](gate_core::adaptive::Gradient)), under
//! the limit in Redis, which stays the fleet's ceiling. The share adapts, not the limit in
//! Redis, because a 429 storm refuses every process at once: N processes each cutting one
//! shared limit would cut it N times, while each cutting its own share cuts the fleet's total
//! once, with no round trip added.

mod adaptive;
mod admission;
mod background;
mod builder;
mod error;
mod failure;
mod instance;
mod keyed;
mod keyed_admission;
mod limiter;
mod permit;
mod script;
mod stats;
mod throttle;

/// The tests' own redis-server, shared with the integration tests.
#[cfg(test)]
#[path = "../tests/support/mod.rs"]
mod support;

pub use builder::RedisLimiterBuilder;
pub use error::{BuildError, Unavailable};
pub use failure::FailurePolicy;
pub use keyed::{RedisKeyHandle, RedisKeyedLimiter, RedisKeyedLimiterBuilder};
pub use limiter::RedisLimiter;
pub use permit::RedisPermit;

/// The redis-rs crate this one is built on, for [`redis::Client`].
pub use redis;
