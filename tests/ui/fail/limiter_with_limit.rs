//! A shared `limiter` sets its own limits: `limit`, `gate`, `rate`, `burst` and `adaptive`
//! beside it are each an error on their key.

use std::sync::LazyLock;

use gate_core::{Limiter, gated};

static API: LazyLock<Limiter> = LazyLock::new(|| Limiter::new(4));

#[gated(limiter = API, limit = 10)]
async fn with_limit() {}

#[gated(limiter = API, rate = "10/s", burst = 2, adaptive = "aimd")]
async fn with_rate_and_adaptive() -> Result<(), ()> {
    Ok(())
}

#[gated(limiter = "API")]
async fn not_a_path() {}

fn main() {}
