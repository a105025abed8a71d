//! [`Admission`] through a reference, an `Arc` and a `LazyLock`: whatever points at an
//! admission admits as it does, so `&gate`, `Arc<Limiter>` and a `static LazyLock<Limiter>`
//! can be passed where an admission is wanted.

use std::future::Future;
use std::sync::{Arc, LazyLock};

use super::Admission;
use crate::{AcquireError, Stats, WaitLimits};

/// Implements [`Admission`] for a pointer type by forwarding every method to its target.
macro_rules! forward {
    (impl<$a:ident $(, $f:ident)?> for $pointer:ty where $($bounds:tt)*) => {
        impl<$a $(, $f)?> Admission for $pointer
        where
            $($bounds)*
        {
            type Permit<'p>
                = $a::Permit<'p>
            where
                Self: 'p;

            #[inline]
            fn admit_with(
                &self,
                limits: WaitLimits,
            ) -> impl Future<Output = Result<Self::Permit<'_>, AcquireError>> + Send {
                (**self).admit_with(limits)
            }

            #[inline]
            fn admit_tokens_with(
                &self,
                tokens: u64,
                limits: WaitLimits,
            ) -> impl Future<Output = Result<Self::Permit<'_>, AcquireError>> + Send {
                (**self).admit_tokens_with(tokens, limits)
            }

            #[inline]
            fn try_admit(&self) -> Option<Self::Permit<'_>> {
                (**self).try_admit()
            }

            #[inline]
            fn admit(&self) -> impl Future<Output = Result<Self::Permit<'_>, AcquireError>> + Send {
                (**self).admit()
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
        }
    };
}

forward!(impl<A> for &A where A: Admission + ?Sized);
forward!(impl<A> for Arc<A> where A: Admission + ?Sized);
forward!(impl<A, F> for LazyLock<A, F> where A: Admission, F: FnOnce() -> A + Send);
