//! [`ResponseFuture`]: the future of a [`GateService`](crate::GateService) call.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use gate_core::{AcquireError, Outcome};
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::body::ResponseBody;
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
        policy: Policy,
        // Whether the request was gRPC, which decides the shape of a refusal.
        grpc: bool,
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
        /// Refused at once, in `call`; the inner service never saw the request.
        Refused,
    }
}

/// A request waiting for its permit.
struct Waiting<S, Req> {
    acquire: Acquiring,
    call: Option<(S, Req)>,
}

/// How a call ended, before the mode decides what the caller sees.
enum Ended<T> {
    /// The inner service ran; its result, and the permit if nobody has dropped it yet.
    Done(T, Option<GatePermit>),
    /// The gate refused the request; the inner service never saw it.
    Refused,
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
                }),
            },
            policy,
            grpc,
            _mode: PhantomData,
        }
    }

    /// A call admitted at once: the inner service is already running, and nothing can be
    /// refused any more, so whether it is gRPC no longer matters.
    pub(crate) fn called(future: S::Future, permit: GatePermit, policy: Policy) -> Self {
        Self {
            state: State::Called {
                future,
                permit: Some(permit),
            },
            policy,
            grpc: false,
            _mode: PhantomData,
        }
    }

    /// A call refused at once.
    pub(crate) fn refused(reason: AcquireError, policy: Policy, grpc: bool) -> Self {
        refused(reason, &policy);
        Self {
            state: State::Refused,
            policy,
            grpc,
            _mode: PhantomData,
        }
    }

    fn poll_outcome(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Ended<Result<S::Response, S::Error>>> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Waiting { waiting } => {
                    match ready!(Pin::new(&mut waiting.acquire).poll(cx)) {
                        Ok(permit) => {
                            let (mut service, request) = waiting
                                .call
                                .take()
                                .expect("ResponseFuture polled after it completed");
                            let future = service.call(request);
                            this.state.set(State::Called {
                                future,
                                permit: Some(permit),
                            });
                        }
                        Err(reason) => {
                            // Let go of the request (and its body) now, not when the caller
                            // drops this future.
                            drop(waiting.call.take());
                            refused(reason, this.policy);
                            return Poll::Ready(Ended::Refused);
                        }
                    }
                }
                StateProj::Called { future, permit } => {
                    let result = ready!(future.poll(cx));
                    return Poll::Ready(Ended::Done(result, permit.take()));
                }
                StateProj::Refused => return Poll::Ready(Ended::Refused),
            }
        }
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
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let ended = ready!(self.as_mut().poll_outcome(cx));
        let this = self.project();
        Poll::Ready(match ended {
            Ended::Done(Ok(response), mut permit) => {
                if let Some(permit) = &mut permit {
                    permit.observe_head(response.status(), response.headers());
                }
                let permit = if this.policy.hold_until_body_end {
                    permit
                } else {
                    drop(permit);
                    None
                };
                Ok(response.map(|body| ResponseBody::inner(body, permit)))
            }
            Ended::Done(Err(error), permit) => {
                report(permit, Outcome::Failed);
                Err(error)
            }
            Ended::Refused => Ok(overload::refusal(*this.grpc, this.policy.retry_after)),
        })
    }
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
        Poll::Ready(match ready!(self.poll_outcome(cx)) {
            Ended::Done(result, permit) => {
                let outcome = match &result {
                    Ok(_) => Outcome::Success,
                    Err(_) => Outcome::Failed,
                };
                report(permit, outcome);
                result.map_err(Into::into)
            }
            Ended::Refused => Err(Box::new(Overloaded::new())),
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
            State::Refused => "Refused",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("grpc", &self.grpc)
            .finish_non_exhaustive()
    }
}
