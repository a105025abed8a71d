//! [`ResponseBody`]: a response body that can carry the request's permit to its end.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::permit::GatePermit;

pin_project! {
    /// The body of a response from a [`GateService`](crate::GateService): the inner service's
    /// body, or the short body of a refusal.
    ///
    /// With [`GateLayer::hold_until_body_end`](crate::GateLayer::hold_until_body_end) (the
    /// default), the request's permit lives here and is released as soon as the body has
    /// yielded its last frame, failed, or been dropped (the client went away), so a streamed
    /// response counts against the limit until its last byte.
    ///
    /// With a [`Limiter`](gate_core::Limiter), the call's outcome is reported when the permit
    /// is released here: the outcome its head said, an overload if gRPC trailers carry
    /// `RESOURCE_EXHAUSTED` or `UNAVAILABLE`, or a failure if the body fails.
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        /// The inner service's body, with the permit while one is held.
        Inner { #[pin] body: B, permit: Option<GatePermit> },
        /// A refusal's body: its one chunk, until it is taken.
        Refused { data: Option<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B, permit: Option<GatePermit>) -> Self {
        Self {
            kind: Kind::Inner { body, permit },
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
        matches!(
            &self.kind,
            Kind::Inner {
                permit: Some(_),
                ..
            }
        )
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
            KindProj::Inner { mut body, permit } => {
                let frame = ready!(body.as_mut().poll_frame(cx));
                match &frame {
                    Some(Ok(frame)) => {
                        if let (Some(permit), Some(trailers)) =
                            (permit.as_mut(), frame.trailers_ref())
                        {
                            permit.observe_trailers(trailers);
                        }
                        if body.is_end_stream() {
                            drop(permit.take());
                        }
                    }
                    Some(Err(_)) => {
                        if let Some(mut permit) = permit.take() {
                            permit.fail();
                        }
                    }
                    None => drop(permit.take()),
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
            Kind::Inner { body, permit } => f
                .debug_struct("ResponseBody")
                .field("body", body)
                .field("holds_permit", &permit.is_some())
                .finish(),
            Kind::Refused { data } => f
                .debug_struct("ResponseBody")
                .field("refused", data)
                .finish(),
        }
    }
}
