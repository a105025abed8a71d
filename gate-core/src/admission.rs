//! [`Admission`]: where permits come from, kept apart from the policies that use them.
//!
//! Retry, backoff and (later) rate and adaptive policies are written against this trait, not
//! against [`Gate`], so the same policy runs over a local gate, a gate shared by many
//! processes, a per-key gate, or no gate at all.

use std::future::Future;
use std::sync::Arc;

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
}

impl<A: Admission + ?Sized + Send + Sync> Admission for Arc<A> {
    type Permit<'a>
        = A::Permit<'a>
    where
        Self: 'a;

    fn admit(&self) -> impl Future<Output = Result<Self::Permit<'_>, AcquireError>> + Send {
        (**self).admit()
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
