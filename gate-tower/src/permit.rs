//! The gate a layer draws from, and what it hands out: one shape for `Arc<Gate>` and
//! `&'static Gate`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use gate_core::{Acquire, AcquireError, AcquireOwned, Gate, OwnedPermit, Permit, WaitLimits};
use pin_project_lite::pin_project;

/// A gate shared by a layer, every service it wraps and every clone of those.
#[derive(Debug, Clone)]
pub(crate) enum SharedGate {
    /// A gate behind an `Arc`, made by the layer or handed to it.
    Owned(Arc<Gate>),
    /// A `static` gate, for instance one a `#[gated]` function also uses.
    Static(&'static Gate),
}

impl SharedGate {
    #[inline]
    pub(crate) fn get(&self) -> &Gate {
        match self {
            Self::Owned(gate) => gate,
            Self::Static(gate) => gate,
        }
    }

    /// Starts waiting for one permit within `limits`; nothing happens until it is polled.
    #[inline]
    pub(crate) fn acquire(&self, limits: WaitLimits) -> Acquiring {
        match self {
            Self::Owned(gate) => Acquiring::Owned {
                future: Arc::clone(gate).acquire_owned_with(1, limits),
            },
            Self::Static(gate) => Acquiring::Static {
                future: gate.acquire_with(1, limits),
            },
        }
    }
}

pin_project! {
    /// Waiting for one permit of a [`SharedGate`]. Cancel-safe, as gate-core's futures are.
    #[derive(Debug)]
    #[project = AcquiringProj]
    pub(crate) enum Acquiring {
        Owned { #[pin] future: AcquireOwned },
        Static { #[pin] future: Acquire<'static> },
    }
}

impl Future for Acquiring {
    type Output = Result<GatePermit, AcquireError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AcquiringProj::Owned { future } => future
                .poll(cx)
                .map_ok(|permit| GatePermit::Owned { _permit: permit }),
            AcquiringProj::Static { future } => future
                .poll(cx)
                .map_ok(|permit| GatePermit::Static { _permit: permit }),
        }
    }
}

/// One permit of a [`SharedGate`], released when dropped. Held only for its `Drop`.
#[derive(Debug)]
pub(crate) enum GatePermit {
    Owned { _permit: OwnedPermit },
    Static { _permit: Permit<'static> },
}
