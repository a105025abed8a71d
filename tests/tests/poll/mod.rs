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
