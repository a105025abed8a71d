//! What a layer hands out, [`GatePermit`], and how it reports the answer a call got: the rules
//! by which a response head, its trailers and its body's end become one [`Outcome`].

use gate_core::{BoxPermit, Outcome, OwnedPermit, Permit, Report};
use http::{HeaderMap, StatusCode};

use crate::pushback::{self, Pushback};
use crate::refusal::{self, RateLeft};

/// One permit of a [`Source`](crate::source::Source), released when dropped.
///
/// A gate's permit is held only for its `Drop`: a gate learns nothing, so no response is
/// inspected for it. Any other source's permit notes what the call's answer said and reports
/// it when dropped; it is boxed (by gate-core's `BoxPermit`), so that the gates' permits, and
/// the futures and bodies holding them, stay small.
#[derive(Debug)]
pub(crate) enum GatePermit {
    Owned {
        _permit: OwnedPermit,
    },
    Static {
        _permit: Permit<'static>,
    },
    Any(BoxPermit),
    /// A keyed limiter's permit, with what its key's rate had left, which the response
    /// advertises. Boxed, so that the other permits stay as small as they were.
    Rated(Box<Rated>),
}

/// A permit and what its key's rate had left when it was granted.
#[derive(Debug)]
pub(crate) struct Rated {
    pub(crate) permit: BoxPermit,
    pub(crate) left: RateLeft,
}

impl GatePermit {
    /// A source's permit that learns from the answer, if this is one.
    #[inline]
    fn boxed(&mut self) -> Option<&mut BoxPermit> {
        match self {
            Self::Any(permit) => Some(permit),
            Self::Rated(rated) => Some(&mut rated.permit),
            Self::Owned { .. } | Self::Static { .. } => None,
        }
    }

    /// Adds the `RateLimit` fields of what the key's rate had left to an admitted request's
    /// response, for a keyed limiter's permit; nothing for any other.
    #[inline]
    pub(crate) fn advertise(&self, headers: &mut HeaderMap) {
        if let Self::Rated(rated) = self {
            refusal::advertise_rate(headers, &rated.left);
        }
    }

    /// Notes the outcome a response head says. An overload with a `Retry-After` is passed on
    /// at once (the source pauses everyone sharing it), even if the permit is held until the
    /// body ends.
    #[inline]
    pub(crate) fn observe_head(&mut self, status: StatusCode, headers: &HeaderMap) {
        if let Some(permit) = self.boxed() {
            observe(permit, pushback::outcome_of_head(status, headers));
        }
    }

    /// Notes an overload signalled in gRPC trailers, which outranks the head's success.
    #[inline]
    pub(crate) fn observe_trailers(&mut self, trailers: &HeaderMap) {
        if let Some(permit) = self.boxed() {
            observe_trailers(permit, trailers);
        }
    }

    /// Notes how the call ended, replacing what was noted before.
    #[inline]
    pub(crate) fn set_outcome(&mut self, outcome: Outcome) {
        if let Some(permit) = self.boxed() {
            observe(permit, outcome);
        }
    }

    /// Notes that the call failed after its head (its body did), unless the head already
    /// said the server was overloaded.
    #[inline]
    pub(crate) fn fail(&mut self) {
        if let Some(permit) = self.boxed() {
            fail(permit);
        }
    }
}

/// Notes `outcome`, passing a server's `Retry-After` on at once. The permit reports the
/// overload when it drops with what is left of the hint, which extends nothing.
#[inline(never)]
fn observe(permit: &mut BoxPermit, outcome: Outcome) {
    if let Outcome::Overload {
        retry_after: Some(retry_after),
    } = outcome
    {
        permit.pushback(retry_after);
    }
    permit.note(outcome);
}

#[inline(never)]
fn observe_trailers(permit: &mut BoxPermit, trailers: &HeaderMap) {
    if let Some(overload) = Pushback::from_trailers(trailers) {
        observe(permit, overload.outcome());
    }
}

#[inline(never)]
fn fail(permit: &mut BoxPermit) {
    if !matches!(permit.noted(), Some(Outcome::Overload { .. })) {
        permit.note(Outcome::Failed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use http::HeaderValue;

    use super::*;

    /// What a permit told its source, in order.
    type Log = Arc<Mutex<Vec<String>>>;

    struct Recording(Log);

    impl Report for Recording {
        fn finish(self, outcome: Outcome) {
            self.0.lock().unwrap().push(format!("finish {outcome:?}"));
        }

        fn pushback(&self, retry_after: Duration) {
            self.0
                .lock()
                .unwrap()
                .push(format!("pushback {retry_after:?}"));
        }
    }

    fn permit() -> (Log, GatePermit) {
        let log = Log::default();
        let permit = GatePermit::Any(BoxPermit::new(Recording(Arc::clone(&log))));
        (log, permit)
    }

    fn told(log: &Log) -> Vec<String> {
        log.lock().unwrap().clone()
    }

    fn grpc_status(code: &'static str) -> HeaderMap {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static(code));
        trailers
    }

    #[test]
    fn a_drop_with_nothing_noted_reports_nothing() {
        let (log, permit) = permit();
        drop(permit);
        assert!(told(&log).is_empty());
    }

    #[test]
    fn a_success_head_reports_success_when_the_permit_goes() {
        let (log, mut permit) = permit();
        permit.observe_head(StatusCode::OK, &HeaderMap::new());
        assert!(told(&log).is_empty(), "nothing before the permit goes");
        drop(permit);
        assert_eq!(told(&log), ["finish Success"]);
    }

    #[test]
    fn an_overload_in_trailers_outranks_the_heads_success() {
        let (log, mut permit) = permit();
        permit.observe_head(StatusCode::OK, &HeaderMap::new());
        permit.observe_trailers(&grpc_status("8"));
        drop(permit);
        assert_eq!(told(&log), ["finish Overload { retry_after: None }"]);
    }

    #[test]
    fn trailers_without_an_overload_leave_the_head_standing() {
        let (log, mut permit) = permit();
        permit.observe_head(StatusCode::OK, &HeaderMap::new());
        permit.observe_trailers(&grpc_status("0"));
        drop(permit);
        assert_eq!(told(&log), ["finish Success"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_is_passed_on_at_the_head_and_reported_at_the_end_with_what_is_left() {
        let (log, mut permit) = permit();
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("3"));
        permit.observe_head(StatusCode::TOO_MANY_REQUESTS, &headers);
        assert_eq!(told(&log), ["pushback 3s"]);
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(permit);
        assert_eq!(
            told(&log),
            ["pushback 3s", "finish Overload { retry_after: Some(2s) }"]
        );
    }

    #[test]
    fn a_body_failing_after_an_overload_head_stays_an_overload() {
        let (log, mut permit) = permit();
        permit.observe_head(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new());
        permit.fail();
        drop(permit);
        assert_eq!(told(&log), ["finish Overload { retry_after: None }"]);
    }

    #[test]
    fn a_body_failing_after_a_success_head_is_a_failure() {
        let (log, mut permit) = permit();
        permit.observe_head(StatusCode::OK, &HeaderMap::new());
        permit.fail();
        drop(permit);
        assert_eq!(told(&log), ["finish Failed"]);
    }

    #[test]
    fn a_gates_permit_inspects_nothing() {
        let gate = Arc::new(gate_core::Gate::new(1));
        let mut permit = GatePermit::Owned {
            _permit: Arc::clone(&gate).try_acquire_owned().unwrap(),
        };
        permit.observe_head(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new());
        permit.fail();
        assert_eq!(gate.available_permits(), 0);
        drop(permit);
        assert_eq!(gate.available_permits(), 1);
    }
}
