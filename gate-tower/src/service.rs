//! [`GateService`]: the middleware itself.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use gate_core::{Gate, Limiter, Stats, WaitLimits};
use http::{Request, Response};
use tower_service::Service;

use crate::Answer;
use crate::body::ResponseBody;
use crate::future::ResponseFuture;
use crate::layer::{GateLayer, Policy};
use crate::refusal::{BoxError, Protocol, Reject, Respond};
use crate::source::{Acquiring, Denied, KeyedAdmit, Source};

/// Lets at most the gate's limit of requests run at once through `S` (or whatever a
/// limiter's limits allow); built by [`GateLayer`], which documents the behaviour.
///
/// `poll_ready` only asks the inner service: no permit is taken until a request is called.
/// `call` takes a free permit at once and calls the inner service. When it has to wait, the
/// [`ResponseFuture`] takes a *clone* of the inner service, one not driven ready, and drives
/// it ready once a permit is granted: so a waiting request reserves nothing in the inner
/// service (a slot of a [`Buffer`](https://docs.rs/tower/latest/tower/buffer/struct.Buffer.html),
/// say), and the service that was made ready is left for the caller, which in axum, hyper
/// and tonic drops it after the call. Clones share the gate.
///
/// # Why `S: Clone`
///
/// A request that waits must be able to call the inner service later, while the caller
/// goes on using the `GateService` (or drops it). That takes a handle of its own, so `S`
/// must be `Clone`, as for tower's `Buffer`-style middleware and for every axum and tonic
/// service. A service that cannot be cloned (one owning a connection, say) goes behind a
/// `tower::buffer::Buffer`, which is `Clone` and, with the gate in front, only ever holds
/// the requests already admitted:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::convert::Infallible;
/// use std::task::{Context, Poll};
/// use gate_tower::GateLayer;
/// use http::{Request, Response};
/// use tower::buffer::Buffer;
/// use tower::{Layer, Service, ServiceExt};
///
/// /// Owns something that cannot be cloned.
/// struct Connection(Box<u32>);
///
/// impl Service<Request<()>> for Connection {
///     type Response = Response<String>;
///     type Error = Infallible;
///     type Future = std::future::Ready<Result<Response<String>, Infallible>>;
///
///     fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
///         Poll::Ready(Ok(()))
///     }
///
///     fn call(&mut self, _: Request<()>) -> Self::Future {
///         std::future::ready(Ok(Response::new(format!("connection {}", self.0))))
///     }
/// }
///
/// let layer = GateLayer::new(4).refuse_with_error();
/// let service = layer.layer(Buffer::new(Connection(Box::new(7)), 4));
/// let response = service.oneshot(Request::new(())).await.unwrap();
/// assert_eq!(response.body(), "connection 7");
/// # }
/// ```
pub struct GateService<S, M = Respond> {
    inner: S,
    source: Source,
    policy: Policy,
    _mode: PhantomData<fn() -> M>,
}

impl<S> GateService<S, Respond> {
    /// Wraps `inner` with a new gate of `limit` permits and the defaults of
    /// [`GateLayer::new`].
    ///
    /// # Panics
    ///
    /// If `limit` exceeds [`Gate::MAX_PERMITS`].
    #[track_caller]
    pub fn new(inner: S, limit: usize) -> Self {
        tower_layer::Layer::layer(&GateLayer::new(limit), inner)
    }
}

impl<S, M> GateService<S, M> {
    pub(crate) fn from_parts(inner: S, source: Source, policy: Policy) -> Self {
        Self {
            inner,
            source,
            policy,
            _mode: PhantomData,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The gate this service draws from, if its source has one: the layer's gate, or a
    /// limiter's; see [`GateLayer::gate`].
    pub fn gate(&self) -> Option<&Gate> {
        self.source.gate()
    }

    /// The limiter this service draws from, if it was built with one.
    pub fn limiter(&self) -> Option<&Arc<Limiter>> {
        self.source.get_limiter()
    }

    /// A snapshot of the gate's statistics, as [`GateLayer::stats`] gives them.
    pub fn stats(&self) -> Stats {
        self.source.stats()
    }

    /// Starts a call: takes a permit if one is free (no waker is needed for that) and calls
    /// the inner service at once, without cloning it; otherwise the response future waits,
    /// and the real waker replaces the no-op one at its first poll.
    ///
    /// `protocol` reads what a request speaks, which only a refusal needs to know: the
    /// uncontended path never asks.
    #[inline]
    pub(crate) fn start<Req>(
        &mut self,
        request: Req,
        protocol: fn(&Req) -> Protocol,
    ) -> ResponseFuture<S, Req, M>
    where
        S: Service<Req> + Clone,
    {
        match self.source.try_acquire_uncontended() {
            Some(permit) => ResponseFuture::called(self.inner.call(request), permit, &self.policy),
            None => self.start_contended(request, protocol),
        }
    }

    /// [`start`](Self::start) when nothing could be admitted without a future (a gate's
    /// lock-free path had no permit, or a limiter has a pause, a rate cell or a queue to
    /// wait for): the source may still admit at once, refuse, or queue the request.
    #[inline(never)]
    fn start_contended<Req>(
        &mut self,
        request: Req,
        protocol: fn(&Req) -> Protocol,
    ) -> ResponseFuture<S, Req, M>
    where
        S: Service<Req> + Clone,
    {
        let acquire = self.source.acquire(self.policy.limits);
        self.start_waiting(request, protocol, acquire)
    }

    /// Starts a call that waits for `acquire`: polls it once, since the source may still
    /// admit at once or refuse, and otherwise hands it to the response future.
    pub(crate) fn start_waiting<Req>(
        &mut self,
        request: Req,
        protocol: fn(&Req) -> Protocol,
        mut acquire: Acquiring,
    ) -> ResponseFuture<S, Req, M>
    where
        S: Service<Req> + Clone,
    {
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut acquire).poll(&mut cx) {
            Poll::Ready(Ok(permit)) => {
                ResponseFuture::called(self.inner.call(request), permit, &self.policy)
            }
            Poll::Ready(Err(reason)) => {
                let protocol = protocol(&request);
                ResponseFuture::refused(reason, &self.source, &self.policy, protocol, request)
            }
            Poll::Pending => {
                let protocol = protocol(&request);
                // A clone not driven ready: the ready `self.inner` keeps its reservation
                // for the caller, who drops it or calls it next.
                let service = self.inner.clone();
                let source = self.source.clone();
                ResponseFuture::new(acquire, service, request, source, self.policy, protocol)
            }
        }
    }
}

impl<S> GateService<S, Respond> {
    /// Starts a keyed layer's call, from what its key's admission said.
    pub(crate) fn start_keyed<Req>(
        &mut self,
        request: Req,
        protocol: fn(&Req) -> Protocol,
        admit: impl FnOnce(WaitLimits) -> KeyedAdmit,
    ) -> ResponseFuture<S, Req, Respond>
    where
        S: Service<Req> + Clone,
    {
        match admit(self.policy.limits) {
            KeyedAdmit::Now(permit) => {
                ResponseFuture::called(self.inner.call(request), permit, &self.policy)
            }
            KeyedAdmit::Wait(future) => {
                self.start_waiting(request, protocol, Acquiring::keyed(future))
            }
            KeyedAdmit::Denied(denied) => {
                // A rate refusal counts itself, wherever it comes from.
                if let Denied::Refused(_) = denied {
                    self.source.queue().reject();
                }
                let protocol = protocol(&request);
                ResponseFuture::refused(denied, &self.source, &self.policy, protocol, request)
            }
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GateService<S, Respond>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ReqBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, Request<ReqBody>, Respond>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        self.start(request, |request| Protocol::of(request.headers()))
    }
}

impl<S, Req> Service<Req> for GateService<S, Reject>
where
    S: Service<Req> + Clone,
    S::Response: Answer,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, Reject>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        self.start(request, |_| Protocol::Http)
    }
}

impl<S: Clone, M> Clone for GateService<S, M> {
    fn clone(&self) -> Self {
        Self::from_parts(self.inner.clone(), self.source.clone(), self.policy)
    }
}

impl<S: fmt::Debug, M> fmt::Debug for GateService<S, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GateService")
            .field("inner", &self.inner)
            .field("source", &self.source)
            .field("max_wait", &self.policy.limits.max_wait)
            .field("max_waiters", &self.policy.limits.max_waiters)
            .finish_non_exhaustive()
    }
}
