//! `gate = PATH` and `limiter = PATH` take any `'static` admission: a `static Gate`, a
//! `LazyLock` of a gate, a limiter or an `Arc` of one, and a source of one's own, with no
//! warning added (`warnings` and `unused` are denied).

#![deny(warnings, unused, rust_2018_idioms, unused_qualifications)]

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use gate_core::{AcquireError, Admission, Gate, Limiter, Permit, WaitLimits, gated};

static PLAIN: Gate = Gate::new(2);
static LAZY: LazyLock<Gate> = LazyLock::new(|| Gate::new(2));
static LAZY_ARC: LazyLock<Arc<Gate>> = LazyLock::new(|| Arc::new(Gate::new(2)));
static LIMITER: LazyLock<Limiter> = LazyLock::new(|| Limiter::new(2));
static LIMITER_ARC: LazyLock<Arc<Limiter>> = LazyLock::new(|| Arc::new(Limiter::new(2)));

/// A source of permits of one's own: a gate that counts whom it lets through.
struct Counting {
    gate: Gate,
    admitted: AtomicU64,
}

impl Admission for Counting {
    type Permit<'a> = Permit<'a>;

    async fn admit_with(&self, limits: WaitLimits) -> Result<Permit<'_>, AcquireError> {
        let permit = self.gate.admit_with(limits).await?;
        self.admitted.fetch_add(1, Ordering::Relaxed);
        Ok(permit)
    }

    fn try_admit(&self) -> Option<Permit<'_>> {
        self.gate.try_admit()
    }
}

static OWN: LazyLock<Counting> = LazyLock::new(|| Counting {
    gate: Gate::new(2),
    admitted: AtomicU64::new(0),
});

#[gated(gate = PLAIN)]
async fn plain() -> u32 {
    1
}

#[gated(gate = LAZY)]
async fn lazy() -> u32 {
    2
}

#[gated(gate = LAZY_ARC, retry = 1)]
async fn lazy_arc() -> Result<u32, ()> {
    Ok(3)
}

#[gated(limiter = LIMITER)]
async fn limiter() -> u32 {
    4
}

#[gated(limiter = LIMITER_ARC, timeout = "1s")]
async fn limiter_arc() -> Result<u32, gate_core::Elapsed> {
    Ok(5)
}

#[gated(limiter = OWN, retry = 2)]
async fn own() -> Result<u32, ()> {
    Ok(6)
}

#[gated(gate = OWN)]
async fn own_as_gate() -> u32 {
    7
}

fn assert_send<F: Future + Send>(f: F) -> F {
    f
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async {
        assert_eq!(plain().await, 1);
        assert_eq!(lazy().await, 2);
        assert_eq!(lazy_arc().await, Ok(3));
        assert_eq!(limiter().await, 4);
        assert_eq!(limiter_arc().await.unwrap(), 5);
        assert_eq!(assert_send(own()).await, Ok(6));
        assert_eq!(own_as_gate().await, 7);
        assert_eq!(OWN.admitted.load(Ordering::Relaxed), 2);
        assert_eq!(PLAIN.stats().admitted, 1);
        assert_eq!(LIMITER_ARC.stats().admitted, 1);
    });
}
