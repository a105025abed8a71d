//! [`BoxAdmission`] and [`BoxPermit`]: any owned admission, and its permits, behind one type.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Admission, Outcome, OwnedAdmission, Report};
use crate::{AcquireError, Stats, WaitLimits};

/// A boxed admission, as [`BoxAdmission`] hands it out.
type BoxAdmit = Pin<Box<dyn Future<Output = Result<BoxPermit, AcquireError>> + Send>>;

/// Any [`OwnedAdmission`] behind one type, for a holder that cannot be generic over its
/// source: a tower layer that holds a [`Limiter`](crate::Limiter), a limit shared through
/// Redis or a per-key limit, all as the same type.
///
/// Cheap to clone (an `Arc`). It is itself an [`Admission`] and an [`OwnedAdmission`], so it
/// goes wherever they go. Erasing costs a virtual call per admission and a box per permit
/// handed out and per admission that waits; a holder that knows its source's type (a
/// `Retry::call(&limiter, ..)`) pays none of it.
///
/// ```
/// use std::sync::Arc;
/// use gate_core::{Admission, BoxAdmission, Gate, Limiter, Outcome, Report};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let sources = [
///     BoxAdmission::new(Arc::new(Gate::new(2))),
///     BoxAdmission::new(Arc::new(Limiter::new(3))),
/// ];
/// for source in &sources {
///     let permit = source.admit().await.unwrap();
///     permit.finish(Outcome::Success);
/// }
/// assert_eq!(sources[1].capacity(), Some(3));
/// # }
/// ```
#[derive(Clone)]
pub struct BoxAdmission {
    inner: Arc<dyn Erased>,
}

impl BoxAdmission {
    /// Erases `admission`'s type.
    pub fn new<A: OwnedAdmission>(admission: Arc<A>) -> Self {
        Self {
            inner: Arc::new(admission),
        }
    }

    /// Like [`Admission::admit_with`], as a future whose type can be named, for a holder
    /// that stores it (a tower response future).
    pub fn admit_boxed(
        &self,
        limits: WaitLimits,
    ) -> Pin<Box<dyn Future<Output = Result<BoxPermit, AcquireError>> + Send>> {
        self.inner.admit_with(limits)
    }

    /// Like [`Admission::admit_tokens_with`], as a future whose type can be named.
    pub fn admit_tokens_boxed(
        &self,
        tokens: u64,
        limits: WaitLimits,
    ) -> Pin<Box<dyn Future<Output = Result<BoxPermit, AcquireError>> + Send>> {
        self.inner.admit_tokens_with(tokens, limits)
    }
}

impl Admission for BoxAdmission {
    type Permit<'a> = BoxPermit;

    fn admit_with(
        &self,
        limits: WaitLimits,
    ) -> impl Future<Output = Result<BoxPermit, AcquireError>> + Send {
        self.inner.admit_with(limits)
    }

    fn admit_tokens_with(
        &self,
        tokens: u64,
        limits: WaitLimits,
    ) -> impl Future<Output = Result<BoxPermit, AcquireError>> + Send {
        self.inner.admit_tokens_with(tokens, limits)
    }

    #[inline]
    fn try_admit(&self) -> Option<BoxPermit> {
        self.inner.try_admit()
    }

    fn wait_limits(&self) -> WaitLimits {
        self.inner.wait_limits()
    }

    fn capacity(&self) -> Option<usize> {
        self.inner.capacity()
    }

    fn snapshot(&self) -> Option<Stats> {
        self.inner.snapshot()
    }
}

impl OwnedAdmission for BoxAdmission {
    type OwnedPermit = BoxPermit;

    fn admit_owned_with(
        self: Arc<Self>,
        limits: WaitLimits,
    ) -> impl Future<Output = Result<BoxPermit, AcquireError>> + Send + 'static {
        self.inner.admit_with(limits)
    }

    fn admit_owned_tokens_with(
        self: Arc<Self>,
        tokens: u64,
        limits: WaitLimits,
    ) -> impl Future<Output = Result<BoxPermit, AcquireError>> + Send + 'static {
        self.inner.admit_tokens_with(tokens, limits)
    }

    #[inline]
    fn try_admit_owned(self: &Arc<Self>) -> Option<BoxPermit> {
        self.inner.try_admit()
    }
}

impl fmt::Debug for BoxAdmission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt_debug(f)
    }
}

/// What [`BoxAdmission`] calls: an [`OwnedAdmission`]'s methods, object-safe. Implemented
/// for the `Arc` of one, so that its owned methods have the `Arc` they take.
trait Erased: Send + Sync {
    fn admit_with(&self, limits: WaitLimits) -> BoxAdmit;
    fn admit_tokens_with(&self, tokens: u64, limits: WaitLimits) -> BoxAdmit;
    fn try_admit(&self) -> Option<BoxPermit>;
    fn wait_limits(&self) -> WaitLimits;
    fn capacity(&self) -> Option<usize>;
    fn snapshot(&self) -> Option<Stats>;
    fn fmt_debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

impl<A: OwnedAdmission> Erased for Arc<A> {
    fn admit_with(&self, limits: WaitLimits) -> BoxAdmit {
        let admit = Arc::clone(self).admit_owned_with(limits);
        Box::pin(async move { admit.await.map(BoxPermit::new) })
    }

    fn admit_tokens_with(&self, tokens: u64, limits: WaitLimits) -> BoxAdmit {
        let admit = Arc::clone(self).admit_owned_tokens_with(tokens, limits);
        Box::pin(async move { admit.await.map(BoxPermit::new) })
    }

    #[inline]
    fn try_admit(&self) -> Option<BoxPermit> {
        A::try_admit_owned(self).map(BoxPermit::new)
    }

    fn wait_limits(&self) -> WaitLimits {
        (**self).wait_limits()
    }

    fn capacity(&self) -> Option<usize> {
        (**self).capacity()
    }

    fn snapshot(&self) -> Option<Stats> {
        (**self).snapshot()
    }

    fn fmt_debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxAdmission")
            .field("source", &std::any::type_name::<A>())
            .finish_non_exhaustive()
    }
}

/// Any [`Report`] permit behind one type, from a [`BoxAdmission`] or [`BoxPermit::new`].
///
/// Beside finishing it at once, a holder that learns how the attempt ended before it lets
/// go of the permit (a response head, seen while its body still streams) can
/// [`note`](Self::note) the outcome: the permit reports the last one noted when it is
/// dropped. Dropped with nothing noted and not finished, it reports nothing, as any permit
/// of a cancelled attempt.
///
/// An overload noted with a `Retry-After` is reported with what is left of it when the
/// permit drops (none once it has passed), so that a holder which passed the hint on at
/// once ([`Report::pushback`]) does not extend the pause by reporting it again.
#[must_use = "the permit is released as soon as it is dropped"]
pub struct BoxPermit {
    inner: Box<dyn ErasedPermit>,
}

impl BoxPermit {
    /// Erases `permit`'s type.
    pub fn new<P: Report + Send + 'static>(permit: P) -> Self {
        Self {
            inner: Box::new(Noted {
                permit: Some(permit),
                noted: None,
                noted_at: None,
            }),
        }
    }

    /// Notes how the attempt ended, to be reported when the permit is dropped; a later note
    /// replaces an earlier one. A `Retry-After` in an overload counts down from now.
    #[inline]
    pub fn note(&mut self, outcome: Outcome) {
        self.inner.note(outcome);
    }

    /// The outcome noted last, if any, as it was noted.
    #[inline]
    pub fn noted(&self) -> Option<Outcome> {
        self.inner.noted()
    }
}

impl Report for BoxPermit {
    /// Reports `outcome` (whatever was noted before) and releases the permit.
    #[inline]
    fn finish(self, outcome: Outcome) {
        self.inner.finish(outcome);
    }

    #[inline]
    fn pushback(&self, retry_after: Duration) {
        self.inner.pushback(retry_after);
    }

    #[inline]
    fn settle(&mut self, used: u64) {
        self.inner.settle(used);
    }
}

impl fmt::Debug for BoxPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxPermit")
            .field("noted", &self.noted())
            .finish_non_exhaustive()
    }
}

/// What [`BoxPermit`] calls: a [`Report`] permit with the outcome noted for its drop.
trait ErasedPermit: Send {
    fn finish(self: Box<Self>, outcome: Outcome);
    fn note(&mut self, outcome: Outcome);
    fn noted(&self) -> Option<Outcome>;
    fn pushback(&self, retry_after: Duration);
    fn settle(&mut self, used: u64);
}

/// A permit and the outcome to report when it drops; nothing is reported if none was noted.
struct Noted<P: Report> {
    /// `None` only while dropping.
    permit: Option<P>,
    noted: Option<Outcome>,
    /// When an overload with a hint was noted, from which the hint counts down.
    noted_at: Option<Instant>,
}

impl<P: Report + Send> ErasedPermit for Noted<P> {
    fn finish(mut self: Box<Self>, outcome: Outcome) {
        if let Some(permit) = self.permit.take() {
            permit.finish(outcome);
        }
    }

    #[inline]
    fn note(&mut self, outcome: Outcome) {
        self.noted = Some(outcome);
        self.noted_at = match outcome {
            Outcome::Overload {
                retry_after: Some(_),
            } => Some(Instant::now()),
            _ => None,
        };
    }

    #[inline]
    fn noted(&self) -> Option<Outcome> {
        self.noted
    }

    fn pushback(&self, retry_after: Duration) {
        if let Some(permit) = &self.permit {
            permit.pushback(retry_after);
        }
    }

    fn settle(&mut self, used: u64) {
        if let Some(permit) = &mut self.permit {
            permit.settle(used);
        }
    }
}

impl<P: Report> Drop for Noted<P> {
    #[inline]
    fn drop(&mut self) {
        let (Some(permit), Some(outcome)) = (self.permit.take(), self.noted) else {
            return;
        };
        let outcome = match (outcome, self.noted_at) {
            (
                Outcome::Overload {
                    retry_after: Some(hint),
                },
                Some(at),
            ) => Outcome::Overload {
                retry_after: Some(hint.saturating_sub(at.elapsed())).filter(|left| !left.is_zero()),
            },
            (outcome, _) => outcome,
        };
        permit.finish(outcome);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A permit that records what it was told.
    struct Recording(Arc<Mutex<Vec<String>>>);

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

    fn recording() -> (Arc<Mutex<Vec<String>>>, BoxPermit) {
        let log = Arc::new(Mutex::new(Vec::new()));
        (Arc::clone(&log), BoxPermit::new(Recording(log)))
    }

    #[test]
    fn a_permit_dropped_with_nothing_noted_reports_nothing() {
        let (log, permit) = recording();
        drop(permit);
        assert!(log.lock().unwrap().is_empty());
    }

    #[test]
    fn the_last_outcome_noted_is_reported_on_drop() {
        let (log, mut permit) = recording();
        permit.note(Outcome::Success);
        permit.note(Outcome::Failed);
        assert_eq!(permit.noted(), Some(Outcome::Failed));
        drop(permit);
        assert_eq!(*log.lock().unwrap(), ["finish Failed"]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_overload_hint_is_reported_with_what_is_left_of_it() {
        let (log, mut permit) = recording();
        permit.note(Outcome::Overload {
            retry_after: Some(Duration::from_secs(3)),
        });
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(permit);
        let (later, mut expired) = recording();
        expired.note(Outcome::Overload {
            retry_after: Some(Duration::from_secs(3)),
        });
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(expired);
        assert_eq!(
            *log.lock().unwrap(),
            ["finish Overload { retry_after: Some(2s) }"]
        );
        assert_eq!(
            *later.lock().unwrap(),
            ["finish Overload { retry_after: None }"]
        );
    }

    #[test]
    fn finishing_reports_its_outcome_over_a_note_and_pushback_goes_through_at_once() {
        let (log, mut permit) = recording();
        permit.note(Outcome::Failed);
        permit.pushback(Duration::from_secs(2));
        assert_eq!(*log.lock().unwrap(), ["pushback 2s"]);
        permit.finish(Outcome::TimedOut);
        assert_eq!(*log.lock().unwrap(), ["pushback 2s", "finish TimedOut"]);
    }
}
