//! [`Admission`]: where permits come from, kept apart from the policies that use them.
//!
//! Retry and backoff are written against this trait, not against [`Gate`], so the same policy
//! runs over a local gate, a [`Limiter`](crate::Limiter) (rate, adaptive and backpressure), a
//! gate shared by many processes, a per-key gate, or no gate at all.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::{AcquireError, Gate, Permit};

/// Something that admits callers: a local [`Gate`], or any other source of permits.
///
/// `admit` waits until the caller may proceed and returns a guard that holds the admission
/// until dropped.
pub trait Admission {
    /// Held while the caller is admitted; dropping it lets the next caller in.
    type Permit<'a>
    where
        Self: 'a;

    /// Waits for admission.
    fn admit(&self) -> impl Future<Output = Result<Self::Permit<'_>, AcquireError>> + Send;

    /// Reports how the attempt made under `permit` ended, then releases the permit.
    ///
    /// [`Retry::call`](crate::Retry::call) calls this once per attempt, so adaptive limits
    /// and shared pauses (see [`Limiter`](crate::Limiter)) learn from every attempt, not from
    /// whole retry chains. A permit dropped without being reported (an attempt cancelled by
    /// its caller) says nothing about the server and is not counted. The default releases
    /// the permit and ignores the outcome.
    fn release<'a>(&'a self, permit: Self::Permit<'a>, outcome: Outcome) {
        let _ = outcome;
        drop(permit);
    }
}

/// How one attempt made under an [`Admission`] ended, as reported to
/// [`Admission::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The attempt succeeded.
    Success,
    /// The server said it is overloaded (an error whose
    /// [`Backpressure::is_overload`](crate::Backpressure::is_overload) is true), perhaps
    /// with a time to stay away.
    Overload {
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// The attempt ran past its timeout and was cancelled: a sign of overload.
    TimedOut,
    /// The attempt failed in a way that says nothing about load (a 404, a parse error).
    Failed,
}

impl Admission for Gate {
    type Permit<'a> = Permit<'a>;

    fn admit(&self) -> impl Future<Output = Result<Permit<'_>, AcquireError>> + Send {
        self.acquire()
    }
}

impl<A: Admission + ?Sized + Sync> Admission for &A {
    type Permit<'a>
        = A::Permit<'a>
    where
        Self: 'a;

    fn admit(&self) -> impl Future<Output = Result<Self::Permit<'_>, AcquireError>> + Send {
        (**self).admit()
    }

    fn release<'a>(&'a self, permit: Self::Permit<'a>, outcome: Outcome) {
        (**self).release(permit, outcome);
    }
}

impl<A: Admission + ?Sized + Send + Sync> Admission for Arc<A> {
    type Permit<'a>
        = A::Permit<'a>
    where
        Self: 'a;

    fn admit(&self) -> impl Future<Output = Result<Self::Permit<'_>, AcquireError>> + Send {
        (**self).admit()
    }

    fn release<'a>(&'a self, permit: Self::Permit<'a>, outcome: Outcome) {
        (**self).release(permit, outcome);
    }
}

/// Admits everyone at once: retry without any limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unlimited;

impl Admission for Unlimited {
    type Permit<'a> = ();

    fn admit(&self) -> impl Future<Output = Result<(), AcquireError>> + Send {
        std::future::ready(Ok(()))
    }
}
