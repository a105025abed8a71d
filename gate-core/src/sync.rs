//! The synchronisation primitives the gate is built on, swapped for loom's when the gate is
//! model-checked (`RUSTFLAGS="--cfg gate_loom" cargo test -p gate-core --test loom`).

#[cfg(gate_loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
#[cfg(gate_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

#[cfg(not(gate_loom))]
pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
#[cfg(not(gate_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

/// Defines a function that is `const` except under loom, whose `Mutex::new` is not.
macro_rules! const_unless_loom {
    ($(#[$attr:meta])* $vis:vis const fn $($rest:tt)*) => {
        #[cfg(not(gate_loom))]
        $(#[$attr])* $vis const fn $($rest)*
        #[cfg(gate_loom)]
        $(#[$attr])* $vis fn $($rest)*
    };
}

pub(crate) use const_unless_loom;
