//! [`ResponseFuture`]: the future of a [`GateService`](crate::GateService) call.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use gate_core::{AcquireError, Outcome};
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::body::{Hold, ResponseBody};
use crate::drain::{self, Drain};
use crate::layer::Policy;
use crate::overload::{self, BoxError, Overloaded, Reject, Respond};
use crate::permit::{Acquiring, GatePermit};

pin_project! {
    /// Response future of [`GateService`](crate::GateService): waits for a permit, then calls
    /// the inner service and runs its future while the permit is held.
    ///
    /// Dropping it at any point gives back what it holds: its place in the gate's queue, or
    /// its permit. If the inner future fails or panics, the permit is released as this future
    /// is dropped or unwound. In [`Respond`] mode a successful response carries the permit in
    /// its [`ResponseBody`] when the layer holds permits until the body ends.
    ///
    /// With a [`Limiter`](gate_core::Limiter), the call's outcome is reported with its permit
    /// (see [`GateLayer::with_limiter`](crate::GateLayer::with_limiter)); dropped before the
    /// inner service answered, it reports nothing.
    pub struct ResponseFuture<S, Req, M = Respond>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req, S::Future>,
        // Until when a response body carries the permit. The rest of the policy lives where
        // a wait or a refusal needs it, so that the uncontended path moves a small future.
        hold: Hold,
        _mode: PhantomData<fn() -> M>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req, F> {
        /// Waiting for a permit, holding the ready inner service and the request it will get.
        /// Boxed: only a request that has to wait pays for keeping them, and the future stays
        /// small to move on the uncontended path.
        Waiting { waiting: Box<Waiting<S, Req>> },
        /// Admitted: the inner service's future runs; the permit is kept here so it is dropped
        /// when the future completes or is dropped.
        Called { #[pin] future: F, permit: Option<GatePermit> },
        /// Refused, at once in `call` or after waiting; the inner service never saw the
        /// request. In [`Respond`] mode its body is read to its end (within bounds) before
        /// the refusal is answered. Boxed: it is as large as a request.
        Refused { refusal: Refusal, drain: Option<Pin<Box<Drain<Req>>>> },
    }
}

/// A request waiting for its permit.
struct Waiting<S, Req> {
    acquire: Acquiring,
    call: Option<(S, Req)>,
    policy: Policy,
    grpc: bool,
}

/// The inner service's answer, and the permit if nobody has taken it yet.
type Answered<S, Req> = (
    Result<<S as Service<Req>>::Response, <S as Service<Req>>::Error>,
    Option<GatePermit>,
);

/// What a refusal needs to know to answer.
#[derive(Debug, Clone, Copy)]
struct Refusal {
    /// Whether the request was gRPC, which decides the shape of the answer.
    grpc: bool,
    retry_after: std::time::Duration,
}

impl<S, Req, M> ResponseFuture<S, Req, M>
where
    S: Service<Req>,
{
    pub(crate) fn new(
        acquire: Acquiring,
        service: S,
        request: Req,
        policy: Policy,
        grpc: bool,
    ) -> Self {
        Self {
            state: State::Waiting {
                waiting: Box::new(Waiting {
                    acquire,
                    call: Some((service, request)),
                    policy,
                    grpc,
                }),
            },
            hold: policy.hold(),
            _mode: PhantomData,
        }
    }

    /// A call admitted at once: the inner service is already running, and nothing can be
    /// refused any more.
    #[inline]
    pub(crate) fn called(future: S::Future, permit: GatePermit, policy: &Policy) -> Self {
        Self {
            state: State::Called {
                future,
                permit: Some(permit),
            },
            hold: policy.hold(),
            _mode: PhantomData,
        }
    }

    /// A call refused at once; `request` is kept to be drained.
    pub(crate) fn refused(reason: AcquireError, policy: &Policy, grpc: bool, request: Req) -> Self {
        refused(reason, policy);
        Self {
            state: State::Refused {
                refusal: Refusal {
                    grpc,
                    retry_after: policy.retry_after,
                },
                drain: Some(Box::pin(Drain::new(request))),
            },
            hold: policy.hold(),
            _mode: PhantomData,
        }
    }

    /// Drives the wait for a permit, calling the inner service once one is granted: ready
    /// with `Ok` once the call runs (at once, for a call admitted in `call`), with the
    /// refusal if the gate refused.
    #[inline]
    fn poll_admitted(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Refusal>> {
        match self.as_mut().project().state.project() {
            StateProj::Called { .. } => Poll::Ready(Ok(())),
            StateProj::Refused { refusal, .. } => Poll::Ready(Err(*refusal)),
            StateProj::Waiting { .. } => self.poll_waiting(cx),
        }
    }

    #[inline(never)]
    fn poll_waiting(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Refusal>> {
        let mut state = self.project().state;
        let StateProj::Waiting { waiting } = state.as_mut().project() else {
            unreachable!("only a waiting future waits")
        };
        match ready!(Pin::new(&mut waiting.acquire).poll(cx)) {
            Ok(permit) => {
                let (mut service, request) = waiting
                    .call
                    .take()
                    .expect("ResponseFuture polled after it completed");
                let future = service.call(request);
                state.set(State::Called {
                    future,
                    permit: Some(permit),
                });
                Poll::Ready(Ok(()))
            }
            Err(reason) => {
                // Let go of the inner service now, not when the caller drops this future;
                // the request stays to be drained.
                let request = waiting.call.take().map(|(_, request)| request);
                refused(reason, &waiting.policy);
                let refusal = Refusal {
                    grpc: waiting.grpc,
                    retry_after: waiting.policy.retry_after,
                };
                state.set(State::Refused {
                    refusal,
                    drain: request.map(|request| Box::pin(Drain::new(request))),
                });
                Poll::Ready(Err(refusal))
            }
        }
    }

    /// Polls the inner service's future, once the call runs: its result, and the permit if
    /// nobody has taken it yet.
    #[inline]
    fn poll_called(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Answered<S, Req>, Refusal>> {
        if let Err(refusal) = ready!(self.as_mut().poll_admitted(cx)) {
            return Poll::Ready(Err(refusal));
        }
        let StateProj::Called { future, permit } = self.project().state.project() else {
            unreachable!("admitted above")
        };
        let result = ready!(future.poll(cx));
        Poll::Ready(Ok((result, permit.take())))
    }
}

/// The event every refusal emits.
#[cold]
fn refused(reason: AcquireError, policy: &Policy) {
    tracing::warn!(
        target: "gate_tower",
        %reason,
        max_wait = ?policy.limits.max_wait,
        max_waiters = policy.limits.max_waiters,
        "request refused: gate is full",
    );
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, Request<ReqBody>, Respond>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: Body,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            // The call runs: answer straight from the inner future's output, so that the
            // response is moved as few times as possible.
            let this = self.as_mut().project();
            if let StateProj::Called { future, permit } = this.state.project() {
                return Poll::Ready(match ready!(future.poll(cx)) {
                    Ok(response) => Ok(respond(response, permit.take(), *this.hold)),
                    Err(error) => {
                        report(permit.take(), Outcome::Failed);
                        Err(error)
                    }
                });
            }
            if let Err(refusal) = ready!(self.as_mut().poll_admitted(cx)) {
                // Read the rest of the refused request first: an HTTP/2 server that drops a
                // body before the client's `END_STREAM` ends up closing the connection.
                if let StateProj::Refused { drain, .. } = self.as_mut().project().state.project()
                    && let Some(request) = drain
                {
                    if !drain::expects_continue(request.get_ref().headers()) {
                        ready!(request.as_mut().poll(cx));
                    }
                    *drain = None;
                }
                return Poll::Ready(Ok(overload::refusal(refusal.grpc, refusal.retry_after)));
            }
        }
    }
}

/// The inner service's response, its body carrying the permit if it is held to the end.
#[inline(always)]
fn respond<B>(
    response: Response<B>,
    mut permit: Option<GatePermit>,
    hold: Hold,
) -> Response<ResponseBody<B>> {
    if let Some(permit) = &mut permit {
        permit.observe_head(response.status(), response.headers());
    }
    if hold == Hold::Head {
        drop(permit.take());
    }
    response.map(|body| ResponseBody::inner(body, permit, hold))
}

/// Reports how a call ended to a limiter's permit, and releases it.
#[inline]
fn report(permit: Option<GatePermit>, outcome: Outcome) {
    if let Some(mut permit) = permit {
        permit.set_outcome(outcome);
    }
}

impl<S, Req> Future for ResponseFuture<S, Req, Reject>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match ready!(self.poll_called(cx)) {
            Ok((result, permit)) => {
                let outcome = match &result {
                    Ok(_) => Outcome::Success,
                    Err(_) => Outcome::Failed,
                };
                report(permit, outcome);
                result.map_err(Into::into)
            }
            Err(_) => Err(Box::new(Overloaded::new())),
        })
    }
}

impl<S, Req, M> fmt::Debug for ResponseFuture<S, Req, M>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Waiting { .. } => "Waiting",
            State::Called { .. } => "Called",
            State::Refused { .. } => "Refused",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("hold", &self.hold)
            .finish_non_exhaustive()
    }
}
