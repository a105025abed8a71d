//! [`Drain`]: a refused request's body, read to its end (within bounds) before the refusal is
//! sent.
//!
//! An HTTP/2 server that stops reading a request body early, by dropping it before the
//! client's `END_STREAM`, keeps receiving the DATA frames already on their way. h2 charges
//! every small DATA frame against a connection-wide budget and gives the charge back only
//! when the application reads the frame; the frames of a dropped body are never read, so
//! each refusal that drops a gRPC message still in flight leaks a little of the budget, and
//! once it is spent h2 closes the whole connection with
//! `GOAWAY(ENHANCE_YOUR_CALM, "too_many_data_frames")`, failing every call on it, admitted
//! ones too. Reading the refused request's body to its end returns every charge; a unary call
//! sends its message right behind its headers, so this costs a refusal next to nothing.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http::HeaderMap;
use http::header::EXPECT;
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

/// Most bytes of a refused request's body read before it is dropped anyway.
const MAX_BYTES: usize = 64 * 1024;

/// Most frames of a refused request's body read before it is dropped anyway: a body of
/// empty frames must not keep a refusal busy.
const MAX_FRAMES: usize = 64;

/// Longest a refusal waits for the rest of the request's body (a client that sends nothing
/// until it hears back, a stalled upload) before it is answered and the body is dropped.
const MAX_WAIT: Duration = Duration::from_millis(100);

pin_project! {
    /// Reads a body to its end, an error, [`MAX_BYTES`], [`MAX_FRAMES`] or [`MAX_WAIT`],
    /// whichever comes first; the caller then drops it.
    pub(crate) struct Drain<B> {
        #[pin]
        body: B,
        bytes: usize,
        frames: usize,
        // Set when the body first has nothing ready: most bodies never need it.
        deadline: Option<Pin<Box<Sleep>>>,
    }
}

impl<B> Drain<B> {
    pub(crate) fn new(body: B) -> Self {
        Self {
            body,
            bytes: 0,
            frames: 0,
            deadline: None,
        }
    }

    /// The body (the request) being drained.
    pub(crate) fn get_ref(&self) -> &B {
        &self.body
    }
}

/// Whether a request waits for `100 Continue` before it sends its body: then nothing is on
/// its way to be drained, and reading the body would only make the server (hyper) invite the
/// upload that the refusal is there to spare.
pub(crate) fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

impl<B: Body> Future for Drain<B> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        while !this.body.is_end_stream() && *this.bytes < MAX_BYTES && *this.frames < MAX_FRAMES {
            match this.body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    *this.frames += 1;
                    if let Some(data) = frame.data_ref() {
                        *this.bytes = this.bytes.saturating_add(data.remaining());
                    }
                }
                Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(()),
                Poll::Pending => {
                    // Without a runtime there is no timer: answer now rather than never.
                    if this.deadline.is_none() && tokio::runtime::Handle::try_current().is_err() {
                        return Poll::Ready(());
                    }
                    let deadline = this
                        .deadline
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(MAX_WAIT)));
                    return deadline.as_mut().poll(cx);
                }
            }
        }
        Poll::Ready(())
    }
}
