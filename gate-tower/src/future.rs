//! [`ResponseFuture`]: the future of a [`GateService`](crate::GateService) call.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use gate_core::{AcquireError, Outcome};
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::Answer;
use crate::body::{Hold, ResponseBody};
use crate::drain::{self, Drain};
use crate::layer::{GateLayer, Policy};
use crate::queue::SUMMARY_PERIOD;
use crate::refusal::{self, BoxError, Overloaded, Protocol, RateLimited, Reject, Respond};
use crate::report::GatePermit;
use crate::source::{Acquiring, Denied, Source};

pin_project! {
    /// Response future of [`GateService`](crate::GateService): waits for a permit, then
    /// drives its clone of the inner service ready, calls it and runs its future while the
    /// permit is held. If the inner service fails to become ready, the future fails with its
    /// error.
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
        /// Waiting for a permit, then for the inner service to be ready, holding a clone of
        /// the inner service and the request it will get. Boxed: only a request that has to
        /// wait pays for keeping them, and the future stays small to move on the
        /// uncontended path.
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
    /// The permit, once granted, while the inner service is driven ready.
    permit: Option<GatePermit>,
    /// A clone of the inner service that has not been driven ready, so that it reserves
    /// nothing (a `Buffer`'s slot, say) while the request waits; and the request.
    call: Option<(S, Req)>,
    source: Source,
    policy: Policy,
    protocol: Protocol,
}

/// The inner service's answer, and the permit if nobody has taken it yet.
type Answered<S, Req> = (
    Result<<S as Service<Req>>::Response, <S as Service<Req>>::Error>,
    Option<GatePermit>,
);

/// What polling a call until it answers gives: its answer, or why it did not run.
type Polled<S, Req> = Result<Answered<S, Req>, Stop<<S as Service<Req>>::Error>>;

/// Why a call did not run.
enum Stop<E> {
    /// The gate refused it.
    Refused(Refusal),
    /// Admitted, the inner service failed to become ready.
    NotReady(E),
}

/// What a refusal needs to know to answer.
#[derive(Debug, Clone)]
struct Refusal {
    /// What the request spoke, which decides the shape of the answer.
    protocol: Protocol,
    retry_after: Duration,
    /// Refused by a rate limit, which the answer describes.
    rate: Option<RateLimited>,
}

impl Refusal {
    /// The answer to a request `denied` by `source`, logged and counted as such.
    #[cold]
    fn new(denied: Denied, protocol: Protocol, source: &Source, policy: &Policy) -> Self {
        match denied {
            Denied::Refused(reason) => Self {
                protocol,
                retry_after: refused(reason, source, policy),
                rate: None,
            },
            Denied::RateLimited(rate) => Self {
                protocol,
                retry_after: rate_refused(&rate, source),
                rate: Some(rate),
            },
        }
    }
}

impl<S, Req, M> ResponseFuture<S, Req, M>
where
    S: Service<Req>,
{
    /// A call that has to wait: `service` is a clone of the inner service that has not been
    /// driven ready.
    pub(crate) fn new(
        acquire: Acquiring,
        service: S,
        request: Req,
        source: Source,
        policy: Policy,
        protocol: Protocol,
    ) -> Self {
        Self {
            state: State::Waiting {
                waiting: Box::new(Waiting {
                    acquire,
                    permit: None,
                    call: Some((service, request)),
                    source,
                    policy,
                    protocol,
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
    pub(crate) fn refused(
        denied: Denied,
        source: &Source,
        policy: &Policy,
        protocol: Protocol,
        request: Req,
    ) -> Self {
        let refusal = Refusal::new(denied, protocol, source, policy);
        Self::refusing(refusal, policy, request)
    }

    /// A call answered with `refusal` once what is left of `request`'s body is drained.
    fn refusing(refusal: Refusal, policy: &Policy, request: Req) -> Self {
        Self {
            state: State::Refused {
                refusal,
                drain: Some(Box::pin(Drain::new(request))),
            },
            hold: policy.hold(),
            _mode: PhantomData,
        }
    }

    /// Drives the wait for a permit and then for the inner service's readiness, calling it
    /// once both are there: ready with `Ok` once the call runs (at once, for a call admitted
    /// in `call`), with why not otherwise.
    #[inline]
    fn poll_admitted(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Stop<S::Error>>> {
        match self.as_mut().project().state.project() {
            StateProj::Called { .. } => Poll::Ready(Ok(())),
            StateProj::Refused { refusal, .. } => Poll::Ready(Err(Stop::Refused(refusal.clone()))),
            StateProj::Waiting { .. } => self.poll_waiting(cx),
        }
    }

    #[inline(never)]
    fn poll_waiting(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Stop<S::Error>>> {
        let mut state = self.project().state;
        let StateProj::Waiting { waiting } = state.as_mut().project() else {
            unreachable!("only a waiting future waits")
        };
        if waiting.permit.is_none() {
            match ready!(Pin::new(&mut waiting.acquire).poll(cx)) {
                Ok(permit) => waiting.permit = Some(permit),
                Err(denied) => {
                    // Let go of the inner service now, not when the caller drops this
                    // future; the request stays to be drained.
                    let request = waiting.call.take().map(|(_, request)| request);
                    let protocol = waiting.protocol.clone();
                    let refusal = Refusal::new(denied, protocol, &waiting.source, &waiting.policy);
                    state.set(State::Refused {
                        refusal: refusal.clone(),
                        drain: request.map(|request| Box::pin(Drain::new(request))),
                    });
                    return Poll::Ready(Err(Stop::Refused(refusal)));
                }
            }
        }
        let (service, _) = waiting
            .call
            .as_mut()
            .expect("ResponseFuture polled after it completed");
        if let Err(error) = ready!(service.poll_ready(cx)) {
            drop(waiting.call.take());
            report(waiting.permit.take(), Outcome::Failed);
            return Poll::Ready(Err(Stop::NotReady(error)));
        }
        let (mut service, request) = waiting.call.take().expect("checked above");
        let permit = waiting.permit.take();
        let future = service.call(request);
        state.set(State::Called { future, permit });
        Poll::Ready(Ok(()))
    }

    /// Polls the inner service's future, once the call runs: its result, and the permit if
    /// nobody has taken it yet.
    #[inline]
    fn poll_called(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Polled<S, Req>> {
        if let Err(stop) = ready!(self.as_mut().poll_admitted(cx)) {
            return Poll::Ready(Err(stop));
        }
        let StateProj::Called { future, permit } = self.project().state.project() else {
            unreachable!("admitted above")
        };
        let result = ready!(future.poll(cx));
        Poll::Ready(Ok((result, permit.take())))
    }
}

/// What a rate refusal does: an event at `DEBUG`, counted and summarised with the
/// layer's other refusals; the wait it advises is the time until its key's next cell.
#[cold]
fn rate_refused(rate: &RateLimited, source: &Source) -> Duration {
    tracing::debug!(
        target: "gate_tower",
        wait = ?rate.wait(),
        gate.name = source.name(),
        "request refused: rate limited",
    );
    let queue = source.queue();
    queue.reject();
    if let Some(refused) = queue.summary().refused() {
        tracing::warn!(
            target: "gate_tower",
            refused,
            gate.name = source.name(),
            limit = ?source.capacity(),
            period = ?SUMMARY_PERIOD,
            "requests refused since the last summary: gate is full",
        );
    }
    rate.wait()
}

/// What every refusal does: an event at `DEBUG`, a summary at `WARN` at most every
/// [`SUMMARY_PERIOD`] while refusals go on; and the wait the answer advises, either the
/// layer's fixed [`retry_after`](crate::GateLayer::retry_after) or the time the queue takes
/// to drain (at least a millisecond; [`GateLayer::DEFAULT_RETRY_AFTER`] before the layer has
/// seen a waiter through).
#[cold]
fn refused(reason: AcquireError, source: &Source, policy: &Policy) -> Duration {
    tracing::debug!(
        target: "gate_tower",
        %reason,
        gate.name = source.name(),
        max_wait = ?policy.limits.max_wait,
        max_waiters = policy.limits.max_waiters,
        "request refused: gate is full",
    );
    let queue = source.queue();
    if let Some(refused) = queue.summary().refused() {
        tracing::warn!(
            target: "gate_tower",
            refused,
            gate.name = source.name(),
            limit = ?source.capacity(),
            period = ?SUMMARY_PERIOD,
            "requests refused since the last summary: gate is full",
        );
    }
    policy.retry_after.unwrap_or_else(|| {
        queue
            .drain_time()
            .map_or(GateLayer::DEFAULT_RETRY_AFTER, |drain| {
                drain.max(Duration::from_millis(1))
            })
    })
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
            match ready!(self.as_mut().poll_admitted(cx)) {
                Ok(()) => {}
                Err(Stop::Refused(refusal)) => {
                    // Read the rest of the refused request first: an HTTP/2 server that
                    // drops a body before the client's `END_STREAM` ends up closing the
                    // connection.
                    if let StateProj::Refused { drain, .. } =
                        self.as_mut().project().state.project()
                        && let Some(request) = drain
                    {
                        if !drain::expects_continue(request.get_ref().headers()) {
                            ready!(request.as_mut().poll(cx));
                        }
                        *drain = None;
                    }
                    let response = match &refusal.rate {
                        None => refusal::refusal(&refusal.protocol, refusal.retry_after),
                        Some(rate) => refusal::rate_limited(&refusal.protocol, rate),
                    };
                    return Poll::Ready(Ok(response));
                }
                Err(Stop::NotReady(error)) => return Poll::Ready(Err(error)),
            }
        }
    }
}

/// The inner service's response, its body carrying the permit if it is held to the end.
#[inline(always)]
fn respond<B>(
    mut response: Response<B>,
    mut permit: Option<GatePermit>,
    hold: Hold,
) -> Response<ResponseBody<B>> {
    if let Some(permit) = &mut permit {
        permit.observe_head(response.status(), response.headers());
        permit.advertise(response.headers_mut());
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
    S::Response: Answer,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match ready!(self.poll_called(cx)) {
            Ok((result, permit)) => {
                // Regression: an HTTP client's 429 or 503 counted as a success here, so a
                // client-side layer in this mode never paused nor backed off.
                let outcome = match &result {
                    Ok(response) => response.outcome(),
                    Err(_) => Outcome::Failed,
                };
                report(permit, outcome);
                result.map_err(Into::into)
            }
            Err(Stop::Refused(_)) => Err(Box::new(Overloaded::new())),
            Err(Stop::NotReady(error)) => Err(error.into()),
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
