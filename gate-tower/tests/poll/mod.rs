//! Helpers shared by the poll-level tests of the tower layer.

use std::fmt::Debug;

use tokio_test::{assert_ready_ok, task};
use tower_test::mock::Spawn;

/// Drives `service` to readiness and calls it with `request`, returning the response future
/// to poll by hand.
pub(crate) fn spawn_call<S, Req>(service: &mut Spawn<S>, request: Req) -> task::Spawn<S::Future>
where
    S: tower::Service<Req>,
    S::Error: Debug,
{
    assert_ready_ok!(service.poll_ready());
    task::spawn(service.call(request))
}

/// An empty request body that names its request: `GateLayer` answers HTTP, so its requests
/// carry an `http_body::Body`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Id(pub(crate) u32);

impl http_body::Body for Id {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        std::task::Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        true
    }
}
