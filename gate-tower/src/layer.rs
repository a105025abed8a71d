//! [`GateLayer`]: the configuration that wraps services in a [`GateService`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use gate_core::{Gate, Stats, WaitLimits};
use tower_layer::Layer;

use crate::overload::{Reject, Respond};
use crate::permit::SharedGate;
use crate::service::GateService;

/// What every future of a layer's services needs to know; copied into each.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub(crate) limits: WaitLimits,
    pub(crate) retry_after: Duration,
    pub(crate) hold_until_body_end: bool,
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
/// - **Bounded waiting.** A request waits at most [`max_wait`](Self::max_wait) (default
///   [`DEFAULT_MAX_WAIT`](Self::DEFAULT_MAX_WAIT), 5 s; zero refuses at once) and only if fewer
///   than [`max_waiters`](Self::max_waiters) already wait (default twice the gate's limit when
///   the layer is built). These bounds are the layer's own and apply even on a shared gate
///   built with other ones. An unbounded queue under overload only turns a burst into a
///   backlog of requests whose clients have already given up.
/// - **Refusals are answered.** In the default [`Respond`] mode, a refused HTTP request gets
///   `503 Service Unavailable` with `Retry-After` (see [`retry_after`](Self::retry_after)),
///   and a gRPC request (`content-type: application/grpc...`) gets a trailers-only response
///   with status `RESOURCE_EXHAUSTED`, so tonic clients see `Code::ResourceExhausted`. The
///   inner service's error type is kept: an axum `Router` takes the layer as it is.
///   [`refuse_with_error`](Self::refuse_with_error) switches to the [`Reject`] mode for
///   non-HTTP services. Every refusal emits a `tracing` event at `WARN` (target `gate_tower`)
///   and is counted in the gate's [`stats`](Self::stats).
/// - **Streaming.** By default the permit is held until the response body has been sent to
///   its end or dropped; see [`hold_until_body_end`](Self::hold_until_body_end).
///
/// # Examples
///
/// Ten requests at a time for a whole axum app; an eleventh waits up to a second, and if
/// twenty already wait it gets a 503 at once:
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
    gate: SharedGate,
    policy: Policy,
    _mode: PhantomData<fn() -> M>,
}

impl GateLayer<Respond> {
    /// How long a request waits for a permit unless [`max_wait`](Self::max_wait) says
    /// otherwise.
    pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(5);

    /// The `Retry-After` a refusal carries unless [`retry_after`](Self::retry_after) says
    /// otherwise.
    pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

    /// A layer with a new gate of `limit` permits.
    ///
    /// # Panics
    ///
    /// If `limit` exceeds [`Gate::MAX_PERMITS`].
    #[track_caller]
    pub fn new(limit: usize) -> Self {
        Self::with_gate(Arc::new(Gate::new(limit)))
    }

    /// A layer drawing from `gate`, shared with whoever else holds it. The gate's own
    /// `max_wait` and `max_waiters` are not used: the layer's are.
    pub fn with_gate(gate: Arc<Gate>) -> Self {
        Self::from_shared(SharedGate::Owned(gate))
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
    /// assert_eq!(layer.gate().limit(), 8);
    /// ```
    pub fn with_static_gate(gate: &'static Gate) -> Self {
        Self::from_shared(SharedGate::Static(gate))
    }

    fn from_shared(gate: SharedGate) -> Self {
        let max_waiters = gate.get().limit().saturating_mul(2);
        Self {
            gate,
            policy: Policy {
                limits: WaitLimits {
                    max_wait: Some(Self::DEFAULT_MAX_WAIT),
                    max_waiters,
                },
                retry_after: Self::DEFAULT_RETRY_AFTER,
                hold_until_body_end: true,
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
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use gate_tower::{GateLayer, Overloaded};
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// let layer = GateLayer::new(1).max_wait(Duration::ZERO).refuse_with_error();
    /// let held = layer.gate().try_acquire().unwrap();
    /// let service = layer.layer(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
    /// let error = service.oneshot(1).await.unwrap_err();
    /// assert!(error.downcast_ref::<Overloaded>().is_some());
    /// # drop(held); }
    /// ```
    pub fn refuse_with_error(self) -> GateLayer<Reject> {
        GateLayer {
            gate: self.gate,
            policy: self.policy,
            _mode: PhantomData,
        }
    }

    /// How long a refused client should wait before trying again: sent as `Retry-After` (in
    /// whole seconds, rounded up) and as gRPC's `grpc-retry-pushback-ms`. Defaults to
    /// [`DEFAULT_RETRY_AFTER`](Self::DEFAULT_RETRY_AFTER), one second.
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.policy.retry_after = retry_after;
        self
    }

    /// Whether a response keeps its permit until its body has been sent to the end (or
    /// dropped), rather than releasing it once the inner service has produced the response
    /// head. Defaults to `true`: a streamed response (server-sent events, an LLM's tokens, a
    /// large download) is work in flight until its last chunk. Pass `false` to count only the
    /// handler's own run, as tower's `ConcurrencyLimit` does.
    pub fn hold_until_body_end(mut self, hold: bool) -> Self {
        self.policy.hold_until_body_end = hold;
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
    /// once. Zero never queues.
    pub fn max_waiters(mut self, max_waiters: usize) -> Self {
        self.policy.limits.max_waiters = max_waiters;
        self
    }

    /// The gate this layer draws from.
    pub fn gate(&self) -> &Gate {
        self.gate.get()
    }

    /// A snapshot of the gate's statistics: requests in flight and waiting, admitted, refused
    /// (`rejected` for a full queue, `timed_out` for `max_wait`), and wait times.
    pub fn stats(&self) -> Stats {
        self.gate.get().stats()
    }

    /// The bounds on waiting each request gets.
    pub fn wait_limits(&self) -> WaitLimits {
        self.policy.limits
    }
}

impl<S, M> Layer<S> for GateLayer<M> {
    type Service = GateService<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        GateService::from_parts(inner, self.gate.clone(), self.policy)
    }
}

impl<M> Clone for GateLayer<M> {
    fn clone(&self) -> Self {
        Self {
            gate: self.gate.clone(),
            policy: self.policy,
            _mode: PhantomData,
        }
    }
}

impl<M> fmt::Debug for GateLayer<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GateLayer")
            .field("gate", self.gate.get())
            .field("max_wait", &self.policy.limits.max_wait)
            .field("max_waiters", &self.policy.limits.max_waiters)
            .field("retry_after", &self.policy.retry_after)
            .field("hold_until_body_end", &self.policy.hold_until_body_end)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_bound_the_wait_and_the_queue() {
        let layer = GateLayer::new(16);
        assert_eq!(
            layer.wait_limits(),
            WaitLimits {
                max_wait: Some(Duration::from_secs(5)),
                max_waiters: 32,
            }
        );
        let shared = GateLayer::with_gate(Arc::new(Gate::new(3)));
        assert_eq!(shared.wait_limits().max_waiters, 6);
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
        let _permit = layer.gate().try_acquire().unwrap();
        assert_eq!(clone.stats().in_flight, 1);
        assert!(std::ptr::eq(layer.gate(), clone.gate()));
    }
}
