//! [`ResponseBody`]: a response body that can carry the request's permit to its end, and
//! gives it back when its reader stops reading.

use std::fmt;
use std::future::{Future, poll_fn};
use std::mem;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker, ready};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::report::GatePermit;

pin_project! {
    /// The body of a response from a [`GateService`](crate::GateService): the inner service's
    /// body, or the short body of a refusal.
    ///
    /// With [`GateLayer::hold_until_body_end`](crate::GateLayer::hold_until_body_end) (the
    /// default), the request's permit lives here and is released as soon as the body has
    /// yielded its last frame, failed, or been dropped (the client went away), so a streamed
    /// response counts against the limit until its last byte.
    ///
    /// # Stalled readers
    ///
    /// A permit held for a client that stopped reading would be pinned for as long as the
    /// client likes, and a few such clients would lock everyone else out. So when this body has
    /// handed out a frame and is not asked for the next one within the layer's
    /// [`body_idle_timeout`](crate::GateLayer::body_idle_timeout) (default 10 s), it releases
    /// its permit and goes on streaming without it. Only the reader's silence counts: while
    /// the body waits for the inner body to produce its next frame (a token stream, server-sent
    /// events), the reader is waiting too, and the permit stays however long that takes. A
    /// server polls a body only when it can send more (HTTP/2 flow control, a full socket), so
    /// a client reading slower than the body produces also leaves frames untaken; a client
    /// that reads large chunks at a trickle loses the permit once one chunk takes longer than
    /// the timeout.
    ///
    /// The release is driven by a timer of tokio's (to its resolution, a millisecond), without
    /// polling the body; the runtime needs its timer enabled, as for `max_wait`, and a body
    /// polled outside a tokio runtime keeps its permit to the end. Bodies that end with the
    /// frame that a poll yields first never set a timer; others pay for one timer, and per
    /// frame for a clock read.
    ///
    /// With a [`Limiter`](gate_core::Limiter), the call's outcome is reported when the permit
    /// is released here: the outcome its head said, an overload if gRPC trailers carry
    /// `RESOURCE_EXHAUSTED` or `UNAVAILABLE`, or a failure if the body fails. Trailers that
    /// come after a stalled reader's permit was released are not seen.
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        /// The inner service's body, with the permit while one is held.
        Inner { #[pin] body: B, held: Held },
        /// A refusal's body: its one chunk, until it is taken.
        Refused { data: Option<Bytes> },
    }
}

/// Until when a response keeps its request's permit, as the layer's policy says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Released with the response head.
    Head,
    /// Held until the body ends, or until its reader has left a frame untaken for `idle`
    /// (`None`: never).
    Body { idle: Option<Duration> },
}

/// The permit a body holds, if any.
enum Held {
    /// None: released, or never held.
    Nothing,
    /// Held by the body alone: it has not yet handed out a frame and gone on.
    Here {
        permit: GatePermit,
        idle: Option<Duration>,
    },
    /// Held in a slot that a timer can empty when the reader stalls. Boxed: only a body that
    /// goes on after a frame pays for the timer.
    Watched { watch: Pin<Box<Watch>> },
}

pin_project! {
    /// The timer of a body whose reader may stall, and the slot it releases.
    struct Watch {
        #[pin]
        sleep: Sleep,
        idle: Duration,
        // Whether the timer holds `waker`: it gives it away when it fires.
        registered: bool,
        slot: Arc<Slot>,
        // Wakes `slot`: the timer's waker, built once.
        waker: Waker,
    }
}

/// A held permit that either the body or its timer may release.
///
/// `state` decides who may touch the permit: the body, from the moment it is polled until it
/// hands out a frame ([`POLLED`]); the timer, while the body waits for its reader
/// ([`WAITING`]). The mutex only makes that exclusive access expressible; it is never
/// contended.
struct Slot {
    state: AtomicU8,
    permit: Mutex<Option<GatePermit>>,
}

/// The resolution of tokio's timer: a deadline extended by less is left as it is.
const TIMER_RESOLUTION: Duration = Duration::from_millis(1);

/// The body is being polled, or waits for its inner body to produce a frame.
const POLLED: u8 = 0;
/// The body handed out a frame and waits for its reader to ask for the next.
const WAITING: u8 = 1;
/// The timer released the permit: the reader left a frame untaken for too long.
const RELEASED: u8 = 2;

impl Slot {
    fn permit(&self) -> MutexGuard<'_, Option<GatePermit>> {
        self.permit.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the permit out; the caller drops it after the lock is released.
    fn take(&self) -> Option<GatePermit> {
        self.permit().take()
    }
}

impl Wake for Slot {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    /// The timer fired: release the permit if the reader still has not come back.
    fn wake_by_ref(self: &Arc<Self>) {
        if self
            .state
            .compare_exchange(WAITING, RELEASED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let permit = self.take();
            if permit.is_some() {
                tracing::debug!(
                    target: "gate_tower",
                    "response body not read for its idle timeout: permit released",
                );
            }
            drop(permit);
        }
    }
}

impl Held {
    fn is_held(&self) -> bool {
        match self {
            Self::Nothing => false,
            Self::Here { .. } => true,
            Self::Watched { watch } => watch.slot.permit().is_some(),
        }
    }

    /// The body is polled: its reader is back, and the timer may no longer release the
    /// permit. If it already has, the timer goes.
    #[inline]
    fn resume(&mut self) {
        if let Self::Watched { watch } = self {
            let state = watch.slot.state.swap(POLLED, Ordering::AcqRel);
            if state == RELEASED {
                *self = Self::Nothing;
            }
        }
    }

    /// The body handed out a frame and is not at its end: from now on, the reader's silence
    /// counts.
    #[inline]
    fn wait_for_reader(&mut self) {
        match self {
            Self::Nothing | Self::Here { idle: None, .. } => {}
            Self::Here { idle: Some(_), .. } => self.watch(),
            Self::Watched { watch } => {
                if !watch.as_mut().arm() {
                    self.release();
                }
            }
        }
    }

    /// Moves the permit into a slot its own timer can empty, and arms the timer.
    #[cold]
    fn watch(&mut self) {
        // Without a runtime there is no timer: the permit stays to the end.
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let Self::Here {
            permit,
            idle: Some(idle),
        } = mem::replace(self, Self::Nothing)
        else {
            unreachable!("only a permit held here is watched")
        };
        let slot = Arc::new(Slot {
            state: AtomicU8::new(POLLED),
            permit: Mutex::new(Some(permit)),
        });
        let waker = Waker::from(Arc::clone(&slot));
        let sleep = tokio::time::sleep(idle);
        let mut watch = Box::pin(Watch {
            sleep,
            idle,
            registered: false,
            slot,
            waker,
        });
        *self = if watch.as_mut().arm() {
            Self::Watched { watch }
        } else {
            drop(watch);
            Self::Nothing
        };
    }

    /// Notes an overload signalled in gRPC trailers on the permit, if it is still held.
    fn observe_trailers(&mut self, trailers: &HeaderMap) {
        match self {
            Self::Nothing => {}
            Self::Here { permit, .. } => permit.observe_trailers(trailers),
            Self::Watched { watch } => {
                // The body is being polled, so the timer keeps off the permit: noting the
                // outcome (which may pause a limiter) happens outside the slot's lock.
                let mut permit = watch.slot.take();
                if let Some(permit) = &mut permit {
                    permit.observe_trailers(trailers);
                }
                *watch.slot.permit() = permit;
            }
        }
    }

    /// The body failed: the call failed, and the permit goes.
    fn fail(&mut self) {
        if let Some(mut permit) = self.take() {
            permit.fail();
        }
    }

    /// The body ended: the permit goes.
    fn release(&mut self) {
        drop(self.take());
    }

    fn take(&mut self) -> Option<GatePermit> {
        match mem::replace(self, Self::Nothing) {
            Self::Nothing => None,
            Self::Here { permit, .. } => Some(permit),
            Self::Watched { watch } => watch.slot.take(),
        }
    }
}

impl Watch {
    /// Starts counting the reader's silence: the timer fires `idle` from now unless the body
    /// is polled first. `false` if it already fired (an `idle` of zero): the permit is to go
    /// now.
    ///
    /// Per frame this is a clock read and, at most once a millisecond (the timer's
    /// resolution), an extension of the timer's deadline, which tokio makes without a lock.
    /// The waker is registered again only when the timer may have fired and given it away.
    #[inline]
    fn arm(self: Pin<&mut Self>) -> bool {
        let this = self.project();
        let now = Instant::now();
        let Some(deadline) = now.checked_add(*this.idle) else {
            return true;
        };
        let mut sleep = this.sleep;
        let current = sleep.deadline();
        // A timer past its deadline, or about to reach it, has fired or may be firing: it
        // keeps no waker. One further away still holds the waker it was last polled with.
        let unregistered = !*this.registered || current <= now + TIMER_RESOLUTION;
        if unregistered || deadline >= current + TIMER_RESOLUTION {
            sleep.as_mut().reset(deadline);
        }
        if unregistered {
            // Unconstrained: a task out of its cooperative budget would otherwise get
            // `Pending` without the waker registered.
            let mut cx = Context::from_waker(this.waker);
            let poll = pin!(tokio::task::unconstrained(poll_fn(|cx| {
                sleep.as_mut().poll(cx)
            })))
            .poll(&mut cx);
            if poll.is_ready() {
                return false;
            }
            *this.registered = true;
        }
        this.slot.state.store(WAITING, Ordering::Release);
        true
    }
}

impl<B> ResponseBody<B> {
    /// The inner service's body, holding `permit` as `hold` says.
    #[inline]
    pub(crate) fn inner(body: B, permit: Option<GatePermit>, hold: Hold) -> Self {
        let held = match (permit, hold) {
            (Some(permit), Hold::Body { idle }) => Held::Here { permit, idle },
            (_, Hold::Head) | (None, _) => Held::Nothing,
        };
        Self {
            kind: Kind::Inner { body, held },
        }
    }

    pub(crate) fn refused(data: Option<Bytes>) -> Self {
        Self {
            kind: Kind::Refused { data },
        }
    }

    /// The inner service's body, or `None` for the body of a refusal.
    pub fn get_ref(&self) -> Option<&B> {
        match &self.kind {
            Kind::Inner { body, .. } => Some(body),
            Kind::Refused { .. } => None,
        }
    }

    /// Whether this body still holds a permit of the gate.
    pub fn holds_permit(&self) -> bool {
        match &self.kind {
            Kind::Inner { held, .. } => held.is_held(),
            Kind::Refused { .. } => false,
        }
    }

    /// Whether this is the body of a refused request rather than the inner service's.
    pub fn is_refusal(&self) -> bool {
        matches!(self.kind, Kind::Refused { .. })
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { mut body, held } => {
                held.resume();
                let frame = ready!(body.as_mut().poll_frame(cx));
                match &frame {
                    Some(Ok(frame)) => {
                        if let Some(trailers) = frame.trailers_ref() {
                            held.observe_trailers(trailers);
                        }
                        if body.is_end_stream() {
                            held.release();
                        } else {
                            held.wait_for_reader();
                        }
                    }
                    Some(Err(_)) => held.fail(),
                    None => held.release(),
                }
                Poll::Ready(frame)
            }
            KindProj::Refused { data } => {
                Poll::Ready(data.take().map(|data| Ok(Frame::data(data.into()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body, .. } => body.is_end_stream(),
            Kind::Refused { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body, .. } => body.size_hint(),
            Kind::Refused { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |data| data.len() as u64))
            }
        }
    }
}

impl<B: fmt::Debug> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Inner { body, held } => f
                .debug_struct("ResponseBody")
                .field("body", body)
                .field("holds_permit", &held.is_held())
                .finish(),
            Kind::Refused { data } => f
                .debug_struct("ResponseBody")
                .field("refused", data)
                .finish(),
        }
    }
}
