//! [`GateLayer`]: the configuration that wraps services in a [`GateService`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use gate_core::adaptive::LimitAlgorithm;
use gate_core::rate::Rate;
use gate_core::{Admission, Gate, Limiter, OwnedAdmission, Stats, WaitLimits};
use tower_layer::Layer;

use crate::body::Hold;
use crate::refusal::{Reject, Respond};
use crate::service::GateService;
use crate::source::Source;

/// What every future of a layer's services needs to know; copied into each.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub(crate) limits: WaitLimits,
    /// A fixed hint for refusals, or `None` to derive it from the queue's drain time.
    pub(crate) retry_after: Option<Duration>,
    pub(crate) hold_until_body_end: bool,
    /// How long a body holding a permit may wait for its reader; `None`: as long as it takes.
    pub(crate) body_idle: Option<Duration>,
}

impl Policy {
    /// Until when a response keeps its permit.
    #[inline]
    pub(crate) fn hold(&self) -> Hold {
        if self.hold_until_body_end {
            Hold::Body {
                idle: self.body_idle,
            }
        } else {
            Hold::Head
        }
    }
}

/// Waits longer than this are treated as unbounded: the timer could not represent them.
const FOREVER: Duration = Duration::from_secs(60 * 60 * 24 * 365 * 30);

/// A [`Layer`] that lets at most `limit` requests run at once through the services it wraps,
/// queueing a bounded number of others for a bounded time and answering the rest.
///
/// - **One gate.** The layer holds a [`Gate`]; every service it wraps, and every clone of those
///   services, draws from it. Cloning the layer does not create a new gate. So the limit holds
///   however often a framework calls [`Layer::layer`] or clones the service: in axum through
///   `Router::layer`, `Router::route_layer` and `get(handler).layer(..)` alike.
/// - **Permits per request.** A permit is taken when a request is called, not in
///   `poll_ready`: a service made ready and never called (an idle keep-alive connection)
///   holds nothing. The request waits in the gate's fair FIFO queue.
/// - **Waiting is bounded by time.** A request waits at most [`max_wait`](Self::max_wait)
///   (default [`DEFAULT_MAX_WAIT`](Self::DEFAULT_MAX_WAIT), 1 s; zero refuses at once). And
///   it is refused at once, rather than after waiting in vain, when at the rate this
///   layer's waiters have recently been admitted (over about the last second) it would not
///   get in within three quarters of `max_wait` (a margin for the estimate's error and the
///   time a request takes to reach the gate), or when none has been admitted for
///   `max_wait`. So a burst the server drains within `max_wait` is queued and served whole,
///   while sustained overload is refused at the door and the requests served wait at most
///   `max_wait`. Until the layer has seen as many waiters through as the gate's limit (at
///   least four) it has no rate to go by, and only `max_wait` and the count bound apply.
/// - **A memory cap.** At most [`max_waiters`](Self::max_waiters) requests wait (default
///   64 per permit of the gate's limit when the layer is built, at least 1,024 and at most
///   65,536), however fast the queue drains: this bounds memory, not latency. These bounds
///   are the layer's own and apply even on a shared gate built with other ones.
/// - **Refusals are answered.** In the default [`Respond`] mode, a refused HTTP request gets
///   `503 Service Unavailable` with `Retry-After`, and a gRPC request
///   (`content-type: application/grpc...`) gets a trailers-only response with status
///   `RESOURCE_EXHAUSTED` and `grpc-retry-pushback-ms`, so tonic clients see
///   `Code::ResourceExhausted`. A gRPC-Web request (`application/grpc-web...`) gets the
///   same status in a gRPC-Web trailers frame, in the request's content type, which browser
///   clients read. The hint is the time the queue takes to drain, unless
///   [`retry_after`](Self::retry_after) fixes it. The inner service's error type is kept:
///   an axum `Router` takes the layer as it is. [`refuse_with_error`](Self::refuse_with_error)
///   switches to the [`Reject`] mode for non-HTTP services.
/// - **Refusals are normal under overload, and logged so.** Each emits a `tracing` event at
///   `DEBUG` (target `gate_tower`); while they go on, a summary with their count comes at
///   `WARN` at most every 10 seconds. They are counted in [`stats`](Self::stats).
/// - **Refused bodies are read.** Before answering a refusal in [`Respond`] mode, the layer
///   reads what is left of the request's body, up to 64 KiB or 64 frames and waiting at most
///   100 ms for it, and only then drops it. An HTTP/2 server (hyper's h2) charges each small
///   DATA frame it receives against a per-connection budget and gives the charge back only
///   when the frame is read; the frames of a body dropped before the client's `END_STREAM`
///   are never read, and a busy channel whose refusals leak that budget is closed with
///   `GOAWAY(ENHANCE_YOUR_CALM)`, failing its admitted calls too. A unary gRPC call sends its
///   message right behind its headers, so reading it costs a refusal next to nothing; a
///   client that sends nothing until it hears back is answered after the 100 ms, and one
///   that sent `Expect: 100-continue` at once, its body unread and never invited. This is why
///   [`Respond`] mode takes requests whose body implements [`http_body::Body`].
/// - **Streaming.** By default the permit is held until the response body has been sent to
///   its end or dropped; see [`hold_until_body_end`](Self::hold_until_body_end). A client
///   that stops reading gets no hold on it: a body left unread for
///   [`body_idle_timeout`](Self::body_idle_timeout) (default 10 s) gives its permit back and
///   streams on without it, while a body waiting for its own producer keeps it.
/// - **Rate, adaptive and backpressure.** Built with a [`Limiter`] instead of a gate
///   ([`with_limiter`](Self::with_limiter), [`with_rate`](Self::with_rate),
///   [`adaptive`](Self::adaptive)), the layer caps concurrency, rate or both, and reports how
///   each call ended, so that an adaptive limit follows the inner service's capacity and an
///   overload answer (HTTP 429 or 503, gRPC `RESOURCE_EXHAUSTED` or `UNAVAILABLE`) with
///   `Retry-After` pauses everyone sharing the limiter. The plain-gate path pays nothing for
///   this: a gate learns nothing, so no response is inspected.
///
/// # Examples
///
/// Ten requests at a time for a whole axum app; an eleventh waits up to a second, and if
/// twenty already wait (or those waiting would not be through within the second) it gets a
/// 503 at once:
///
/// ```
/// use std::time::Duration;
/// use axum::{Router, routing::get};
/// use gate_tower::GateLayer;
///
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(GateLayer::new(10).max_wait(Duration::from_secs(1)).max_waiters(20));
/// ```
///
/// One limit shared by two routers (and anything else holding the `Arc`):
///
/// ```
/// use std::sync::Arc;
/// use axum::{Router, routing::get};
/// use gate_core::Gate;
/// use gate_tower::GateLayer;
///
/// let database = Arc::new(Gate::new(32));
/// let layer = GateLayer::with_gate(Arc::clone(&database));
/// let users: Router = Router::new().route("/users", get(|| async { "[]" })).layer(layer.clone());
/// let orders: Router = Router::new().route("/orders", get(|| async { "[]" })).layer(layer);
/// let app = users.merge(orders);
/// assert_eq!(database.stats().in_flight, 0);
/// ```
pub struct GateLayer<M = Respond> {
    source: Source,
    policy: Policy,
    _mode: PhantomData<fn() -> M>,
}

impl GateLayer<Respond> {
    /// How long a request waits for a permit unless [`max_wait`](Self::max_wait) says
    /// otherwise: one second, long enough for a burst to drain and short enough that under
    /// sustained overload the requests served are not the ones whose clients gave up.
    pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(1);

    /// The hint a refusal carries, unless [`retry_after`](Self::retry_after) fixes one,
    /// before the layer has seen a waiter through and so has no drain time to send.
    pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

    /// How long a response body holding a permit may wait for its reader to take the next
    /// frame unless [`body_idle_timeout`](Self::body_idle_timeout) says otherwise.
    pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

    /// A layer with a new gate of `limit` permits.
    ///
    /// # Panics
    ///
    /// If `limit` exceeds [`Gate::MAX_PERMITS`].
    #[track_caller]
    pub fn new(limit: usize) -> Self {
        Self::with_gate(Arc::new(Gate::new(limit)))
    }

    /// A layer with a new gate of `limit` permits named `name`: the `gate.name` of its logs,
    /// of the gate's `gate.wait` spans and of its metrics (see
    /// [`GateBuilder::name`](gate_core::GateBuilder::name)). A layer over a shared gate or
    /// limiter carries that one's name.
    ///
    /// ```
    /// use gate_tower::GateLayer;
    ///
    /// let layer = GateLayer::named("search", 16);
    /// assert_eq!(layer.name(), Some("search"));
    /// ```
    ///
    /// # Panics
    ///
    /// If `limit` exceeds [`Gate::MAX_PERMITS`].
    #[track_caller]
    pub fn named(name: &'static str, limit: usize) -> Self {
        let gate = Gate::builder(limit)
            .name(name)
            .build()
            .expect("GateLayer::named: the limit exceeds Gate::MAX_PERMITS");
        Self::with_gate(Arc::new(gate))
    }

    /// A layer drawing from `gate`, shared with whoever else holds it. The gate's own
    /// `max_wait` and `max_waiters` are not used: the layer's are.
    pub fn with_gate(gate: Arc<Gate>) -> Self {
        let max_waiters = queue_cap(gate.limit());
        Self::from_source(Source::owned(gate), max_waiters)
    }

    /// A layer drawing from a `static` gate, for instance one that a `#[gated]` function or
    /// another part of the program also uses.
    ///
    /// ```
    /// use gate_core::Gate;
    /// use gate_tower::GateLayer;
    ///
    /// static BACKEND: Gate = Gate::new(8);
    ///
    /// let layer = GateLayer::with_static_gate(&BACKEND);
    /// assert_eq!(layer.gate().unwrap().limit(), 8);
    /// ```
    pub fn with_static_gate(gate: &'static Gate) -> Self {
        Self::from_source(Source::static_gate(gate), queue_cap(gate.limit()))
    }

    /// A layer drawing from `limiter`: a concurrency limit, a rate limit or both, fixed or
    /// adaptive, with a pause shared by everyone who holds the limiter, and which learns how
    /// every call ended.
    ///
    /// # Admission
    ///
    /// A request is admitted as [`Limiter::acquire_owned`] admits a caller: it waits out a
    /// pause, queues for a concurrency permit, then waits for its rate cell. The layer's
    /// bounds cover all of it: [`max_wait`](Self::max_wait) limits the whole admission (and,
    /// as for a gate, a request that would not get in within it at the rate this layer's
    /// waiters have been admitted is refused at once), and
    /// [`max_waiters`](Self::max_waiters) counts the requests of this layer (and its clones)
    /// that wait at any step. A request that can be admitted at once is never refused. The
    /// limiter's own wait bounds, if it was built with some, apply as well. The default
    /// `max_waiters` is a memory cap, as for a gate: 64 per permit of the concurrency limit
    /// (the adaptive limit's initial one), at least 1,024 and at most 65,536; with a rate, at
    /// most as many requests as the rate admits in
    /// [`DEFAULT_MAX_WAIT`](Self::DEFAULT_MAX_WAIT); with neither, unbounded (a request then
    /// waits only for a pause, and at most `max_wait`).
    ///
    /// # What the limiter learns
    ///
    /// Each admitted call reports one [`Outcome`](gate_core::Outcome) to the limiter:
    ///
    /// | the inner service                                         | reports                    |
    /// |-----------------------------------------------------------|----------------------------|
    /// | answered HTTP 429 or 503                                  | `Overload`, `Retry-After`  |
    /// | answered `grpc-status` 8 or 14, in a trailers-only response or, while the body holds the permit, in its trailers | `Overload`, `grpc-retry-pushback-ms` |
    /// | answered anything else                                    | `Success`                  |
    /// | failed (`Err`), or the response body failed               | `Failed`                   |
    /// | never answered: the response future was dropped, or the service panicked | nothing |
    ///
    /// [`Pushback`](crate::Pushback) documents how the signals and their hints are read. An
    /// overload with a hint pauses the limiter *as soon as the response head arrives*, for
    /// every request sharing the limiter: requests already waiting keep waiting (up to
    /// `max_wait`), new ones queue behind the pause. This is what makes a client-side layer in
    /// front of a rate-limited upstream back off for everyone on one 429. An overload, with
    /// or without a hint, shrinks an adaptive limit; successes grow it.
    ///
    /// The outcome is reported when the permit is released, so that an adaptive limit's
    /// latency covers what the permit covered: with
    /// [`hold_until_body_end`](Self::hold_until_body_end) (the default), when the body has
    /// yielded its last frame, failed, or been dropped (a body dropped unread still reports
    /// its head's outcome: the server did answer); otherwise with the response head.
    ///
    /// In [`Reject`] mode ([`refuse_with_error`](Self::refuse_with_error)) the inner service
    /// may answer anything that implements [`Answer`](crate::Answer): an HTTP response is
    /// read by the same table (its head only, since the permit goes with the head in this
    /// mode), so a client-side layer in front of an HTTP client learns from 429s and 503s in
    /// either mode; other values are successes, and an `Err` reports `Failed`.
    ///
    /// Refusals by the layer's own bounds are counted in [`stats`](Self::stats) with the
    /// limiter's gate's.
    ///
    /// # Examples
    ///
    /// A client-side stack in front of an API that allows 500 calls a minute, 8 at a time,
    /// and sometimes answers 429 with `Retry-After`:
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use gate_core::Limiter;
    /// use gate_core::rate::Rate;
    /// use gate_tower::GateLayer;
    ///
    /// let api = Arc::new(
    ///     Limiter::builder()
    ///         .concurrency(8)
    ///         .rate(Rate::per_minute(500))
    ///         .build()
    ///         .unwrap(),
    /// );
    /// // By default, as many may wait as the rate admits in a second, plus its burst of 1.
    /// assert_eq!(GateLayer::with_limiter(Arc::clone(&api)).wait_limits().max_waiters, 9);
    /// // A client has nowhere else to send a call: let every caller wait as long as it takes.
    /// let layer = GateLayer::with_limiter(api)
    ///     .max_wait(Duration::MAX)
    ///     .max_waiters(usize::MAX);
    /// assert_eq!(layer.limiter().unwrap().limit(), Some(8));
    /// ```
    pub fn with_limiter(limiter: Arc<Limiter>) -> Self {
        let max_waiters = default_max_waiters(&limiter);
        Self::from_source(Source::limiter(limiter), max_waiters)
    }

    /// A layer drawing from any [`OwnedAdmission`]: a limit shared by many processes
    /// through Redis, a per-key limit, a source of your own. It is admitted and learns as a
    /// limiter does (see [`with_limiter`](Self::with_limiter), which is this for a
    /// [`Limiter`]): the layer's bounds cover the whole admission, and each admitted call
    /// reports one [`Outcome`](gate_core::Outcome) through its permit, an overload's
    /// `Retry-After` as soon as the response head arrives
    /// ([`Report::pushback`](gate_core::Report::pushback)).
    ///
    /// The default [`max_waiters`](Self::max_waiters) is the memory cap of a gate of the
    /// source's [`capacity`](gate_core::Admission::capacity) (64 per permit, at least 1,024
    /// and at most 65,536), or 1,024 if it does not say.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use gate_core::Limiter;
    /// use gate_tower::GateLayer;
    ///
    /// let layer = GateLayer::with_admission(Arc::new(Limiter::new(8)));
    /// assert_eq!(layer.stats().limit, 8);
    /// ```
    pub fn with_admission<A: OwnedAdmission>(admission: Arc<A>) -> Self {
        let max_waiters = queue_cap(admission.capacity().unwrap_or(1));
        Self::from_source(Source::admission(admission), max_waiters)
    }

    /// A layer with a new [`Limiter`] that lets requests start at `rate` and puts no bound on
    /// how many run at once; see [`with_limiter`](Self::with_limiter).
    ///
    /// ```
    /// use gate_core::rate::Rate;
    /// use gate_tower::GateLayer;
    ///
    /// const RATE: Rate = match Rate::parse("500/min") {
    ///     Ok(rate) => rate,
    ///     Err(_) => panic!("not a rate"),
    /// };
    /// let layer = GateLayer::with_rate(RATE);
    /// assert_eq!(layer.limiter().unwrap().rate_limit().unwrap().rate(), RATE);
    /// // As many as 500/min admits in the default 1 s wait, plus the burst of 1.
    /// assert_eq!(layer.wait_limits().max_waiters, 9);
    /// ```
    pub fn with_rate(rate: Rate) -> Self {
        Self::with_limiter(Arc::new(Limiter::with_rate(rate)))
    }

    /// A layer with a new [`Limiter`] whose concurrency limit `algorithm` adjusts from how
    /// calls end (see [`with_limiter`](Self::with_limiter) for what it learns), starting at
    /// the algorithm's initial limit. Combine it with a rate through [`Limiter::builder`].
    ///
    /// ```
    /// use gate_core::adaptive::Aimd;
    /// use gate_tower::GateLayer;
    ///
    /// let layer = GateLayer::adaptive(Aimd::builder().initial(20).max(200).build().unwrap());
    /// assert_eq!(layer.gate().unwrap().limit(), 20);
    /// ```
    ///
    /// # Panics
    ///
    /// If the algorithm's initial limit exceeds [`Gate::MAX_PERMITS`].
    #[track_caller]
    pub fn adaptive(algorithm: impl LimitAlgorithm + 'static) -> Self {
        let limiter = Limiter::builder()
            .adaptive(algorithm)
            .build()
            .expect("GateLayer::adaptive: the initial limit exceeds Gate::MAX_PERMITS");
        Self::with_limiter(Arc::new(limiter))
    }

    pub(crate) fn from_source(source: Source, max_waiters: usize) -> Self {
        Self {
            source,
            policy: Policy {
                limits: WaitLimits {
                    max_wait: Some(Self::DEFAULT_MAX_WAIT),
                    max_waiters,
                },
                retry_after: None,
                hold_until_body_end: true,
                body_idle: Some(Self::DEFAULT_BODY_IDLE_TIMEOUT),
            },
            _mode: PhantomData,
        }
    }

    /// Fails refused requests with a boxed [`Overloaded`](crate::Overloaded) error instead of
    /// answering them, for tower services that do not speak HTTP. The services' error type
    /// becomes [`BoxError`](crate::BoxError). HTTP and gRPC servers (axum, tonic) want the
    /// default mode instead: there a refusal is a response the client understands, while an
    /// error would only close the stream or become an opaque `UNKNOWN` status.
    ///
    /// The inner service's response type must implement [`Answer`](crate::Answer), which
    /// says what a response tells the limiter: HTTP responses are read for 429s and 503s
    /// (so a client-side layer in this mode learns from its upstream), plain values are
    /// successes, and a type of your own takes a one-line impl. The permit is released when
    /// the inner service answers.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use gate_tower::{GateLayer, Overloaded};
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// let layer = GateLayer::new(1).max_wait(Duration::ZERO).refuse_with_error();
    /// let held = layer.gate().unwrap().try_acquire().unwrap();
    /// let service = layer.layer(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
    /// let error = service.oneshot(1).await.unwrap_err();
    /// assert!(error.downcast_ref::<Overloaded>().is_some());
    /// # drop(held); }
    /// ```
    pub fn refuse_with_error(self) -> GateLayer<Reject> {
        GateLayer {
            source: self.source,
            policy: self.policy,
            _mode: PhantomData,
        }
    }

    /// A fixed time for a refused client to wait before trying again, sent as `Retry-After`
    /// (in whole seconds, rounded up) and as gRPC's `grpc-retry-pushback-ms` (in
    /// milliseconds, rounded up). Both are capped at `i32::MAX` milliseconds (about 24.8
    /// days), which every client's integer parser reads: `Duration::MAX` sends
    /// `Retry-After: 2147484`.
    ///
    /// By default the hint is derived for each refusal: the time the queue of waiting
    /// requests takes to drain at the rate it has recently been draining, at least a
    /// millisecond (so `Retry-After` is at least 1), or
    /// [`DEFAULT_RETRY_AFTER`](Self::DEFAULT_RETRY_AFTER) before the layer has seen a waiter
    /// through. A gate whose queue drains in 20 ms then asks gRPC clients back in 20 ms, not
    /// a second.
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.policy.retry_after = Some(retry_after);
        self
    }

    /// Whether a response keeps its permit until its body has been sent to the end (or
    /// dropped), rather than releasing it once the inner service has produced the response
    /// head. Defaults to `true`: a streamed response (server-sent events, an LLM's tokens, a
    /// large download) is work in flight until its last chunk. Pass `false` to count only the
    /// handler's own run, as tower's `ConcurrencyLimit` does.
    ///
    /// A body whose reader stops reading gives its permit back after
    /// [`body_idle_timeout`](Self::body_idle_timeout).
    pub fn hold_until_body_end(mut self, hold: bool) -> Self {
        self.policy.hold_until_body_end = hold;
        self
    }

    /// How long a response body that holds its permit (see
    /// [`hold_until_body_end`](Self::hold_until_body_end)) may wait for its reader: once it
    /// has handed out a frame, if it is not asked for the next one within `idle`, it releases
    /// the permit and goes on streaming without it. Defaults to
    /// [`DEFAULT_BODY_IDLE_TIMEOUT`](Self::DEFAULT_BODY_IDLE_TIMEOUT), 10 s; a duration too
    /// long for the timer (such as `Duration::MAX`) never releases early.
    ///
    /// Without it, a few clients that request a large or endless body and stop reading (or
    /// read at a trickle) would hold every permit for as long as they like, and everyone else
    /// would be refused. Only the reader's silence counts, never the producer's: a body waiting
    /// for its next frame from the inner service (a token stream, server-sent events every few
    /// seconds) keeps its permit to its end, since its reader is waiting too. See
    /// [`ResponseBody`](crate::body::ResponseBody#stalled-readers).
    ///
    /// Why 10 s, shorter than nginx's 60 s `send_timeout`: that one closes the connection,
    /// while this only stops counting a response against the limit. Releasing too early
    /// costs little (the limit is briefly exceeded by a response whose work is done and which
    /// is only being sent); releasing too late locks others out. A healthy client takes data
    /// within a second or two, and 10 s keeps a stalled reader's hold on a permit within
    /// twice the default [`max_wait`](Self::max_wait) that a queued request waits for one.
    ///
    /// ```
    /// use std::time::Duration;
    /// use gate_tower::GateLayer;
    ///
    /// // Large downloads to slow clients: count them for up to 30 s of silence.
    /// let layer = GateLayer::new(16).body_idle_timeout(Duration::from_secs(30));
    /// ```
    pub fn body_idle_timeout(mut self, idle: Duration) -> Self {
        self.policy.body_idle = (idle < FOREVER).then_some(idle);
        self
    }
}

impl<M> GateLayer<M> {
    /// How long a request may wait for a permit before it is refused. Zero refuses at once
    /// when no permit is free; a duration too long for the timer (such as `Duration::MAX`)
    /// waits without bound.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.policy.limits.max_wait = (max_wait < FOREVER).then_some(max_wait);
        self
    }

    /// How many requests may wait for a permit: a request arriving when `max_waiters` already
    /// wait on the gate (through this layer or any other user of a shared gate) is refused at
    /// once. Zero never queues. This is a memory cap: the wait itself is bounded by
    /// [`max_wait`](GateLayer::max_wait), before a request queues as well as while it waits.
    pub fn max_waiters(mut self, max_waiters: usize) -> Self {
        self.policy.limits.max_waiters = max_waiters;
        self
    }

    /// The gate this layer draws from, if its source has one: the layer's own or shared
    /// gate, or, for a layer built with a [`Limiter`], the limiter's (at
    /// [`Gate::MAX_PERMITS`] if the limiter has no concurrency limit). A layer over another
    /// admission ([`with_admission`](GateLayer::with_admission)) has none.
    pub fn gate(&self) -> Option<&Gate> {
        self.source.gate()
    }

    /// The name of the gate or limiter this layer draws from, if it has one: the
    /// `gate.name` of the layer's logs.
    pub fn name(&self) -> Option<&'static str> {
        self.source.name()
    }

    /// The limiter this layer draws from, if it was built with one
    /// ([`with_limiter`](GateLayer::with_limiter), [`with_rate`](GateLayer::with_rate),
    /// [`adaptive`](GateLayer::adaptive)).
    pub fn limiter(&self) -> Option<&Arc<Limiter>> {
        self.source.get_limiter()
    }

    /// A snapshot of the gate's statistics: requests in flight and waiting, admitted, refused
    /// (`rejected` for a full queue, or one that would not drain within `max_wait`;
    /// `timed_out` for `max_wait`), and wait times. The refusals include the layer's own.
    /// With a limiter, `waiting` counts the requests queued for a concurrency permit.
    pub fn stats(&self) -> Stats {
        self.source.stats()
    }

    /// The bounds on waiting each request gets.
    pub fn wait_limits(&self) -> WaitLimits {
        self.policy.limits
    }
}

impl<S, M> Layer<S> for GateLayer<M> {
    type Service = GateService<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        GateService::from_parts(inner, self.source.clone(), self.policy)
    }
}

impl<M> Clone for GateLayer<M> {
    fn clone(&self) -> Self {
        Self {
            source: self.source.clone(),
            policy: self.policy,
            _mode: PhantomData,
        }
    }
}

impl<M> fmt::Debug for GateLayer<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GateLayer")
            .field("source", &self.source)
            .field("max_wait", &self.policy.limits.max_wait)
            .field("max_waiters", &self.policy.limits.max_waiters)
            .field("retry_after", &self.policy.retry_after)
            .field("hold_until_body_end", &self.policy.hold_until_body_end)
            .field("body_idle_timeout", &self.policy.body_idle)
            .finish()
    }
}

/// The default `max_waiters` of a layer drawing from a gate of `limit` permits: 64 per
/// permit, at least 1,024 and at most 65,536. A memory cap, not the queue's real bound,
/// which is time.
pub(crate) fn queue_cap(limit: usize) -> usize {
    limit.saturating_mul(64).clamp(1024, 65_536)
}

/// The default `max_waiters` of a layer drawing from `limiter`: the memory cap of its
/// concurrency limit, and with a rate at most what the rate admits in the default
/// `max_wait`; with neither, no bound.
fn default_max_waiters(limiter: &Limiter) -> usize {
    let by_limit = limiter.limit().map_or(usize::MAX, queue_cap);
    let Some(rate) = limiter.rate_limit().map(|limit| limit.rate()) else {
        return by_limit;
    };
    let cells = u128::from(rate.count()) * GateLayer::DEFAULT_MAX_WAIT.as_nanos()
        / rate.period().as_nanos().max(1);
    let burst = usize::try_from(rate.burst_size()).unwrap_or(usize::MAX);
    let by_rate = usize::try_from(cells)
        .unwrap_or(usize::MAX)
        .saturating_add(burst);
    by_limit.min(by_rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_bound_the_wait_and_cap_the_queue() {
        let layer = GateLayer::new(16);
        assert_eq!(
            layer.wait_limits(),
            WaitLimits {
                max_wait: Some(Duration::from_secs(1)),
                max_waiters: 1024,
            }
        );
        let shared = GateLayer::with_gate(Arc::new(Gate::new(100)));
        assert_eq!(shared.wait_limits().max_waiters, 6400);
        let huge = GateLayer::with_gate(Arc::new(Gate::new(Gate::MAX_PERMITS)));
        assert_eq!(huge.wait_limits().max_waiters, 65_536);
    }

    #[test]
    fn a_limiter_layer_caps_its_queue_as_a_gate_layer_does() {
        let limiter = Arc::new(Limiter::new(16));
        assert_eq!(
            GateLayer::with_limiter(limiter).wait_limits().max_waiters,
            1024
        );
        let adaptive = gate_core::adaptive::Aimd::builder().initial(20).build();
        let layer = GateLayer::adaptive(adaptive.unwrap());
        assert_eq!(layer.wait_limits().max_waiters, 1280);
        let unlimited = Arc::new(Limiter::builder().build().unwrap());
        assert_eq!(
            GateLayer::with_limiter(unlimited).wait_limits().max_waiters,
            usize::MAX
        );
    }

    #[test]
    fn a_wait_too_long_for_the_timer_is_unbounded() {
        let layer = GateLayer::new(1).max_wait(Duration::MAX);
        assert_eq!(layer.wait_limits().max_wait, None);
        let layer = layer.max_wait(Duration::from_secs(3600));
        assert_eq!(
            layer.wait_limits().max_wait,
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn clones_share_the_gate() {
        let layer = GateLayer::new(2);
        let clone = layer.clone().max_waiters(0);
        let _permit = layer.gate().unwrap().try_acquire().unwrap();
        assert_eq!(clone.stats().in_flight, 1);
        assert!(std::ptr::eq(layer.gate().unwrap(), clone.gate().unwrap()));
    }
}
