//! The uncontended acquire + release of `benches/adaptive.rs`, one contender per run, for
//! counting instructions under callgrind: a count does not move with the machine's load as
//! a time does.
//!
//! Run with: cargo build --release -p benches --example adaptive_instructions, then
//! `valgrind --tool=callgrind target/release/examples/adaptive_instructions NAME` for each
//! NAME of `gate`, `limiter_fixed`, `limiter_aimd` and `limiter_aimd_full`; the difference
//! between `NAME` and `NAME --warm` (the contender built, nothing acquired) is the cost of
//! 1,000,000 acquires and releases. Each future is polled in place with a no-op waker, so
//! no runtime's cost is in the count.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use gate_core::adaptive::Aimd;
use gate_core::{Gate, Limiter, Outcome};

const ATTEMPTS: u64 = 1_000_000;

/// Polls `future` once, which must be ready.
fn ready<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("an uncontended acquire waited"),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().expect("a contender's name");
    let attempts = if args.next().as_deref() == Some("--warm") {
        0
    } else {
        ATTEMPTS
    };
    let aimd = |initial, max| {
        let aimd = Aimd::builder().initial(initial).max(max).build().unwrap();
        Limiter::builder().adaptive(aimd).build().unwrap()
    };
    let attempt: Box<dyn Fn()> = match name.as_str() {
        "gate" => {
            let gate = Gate::new(64);
            Box::new(move || drop(ready(black_box(&gate).acquire()).unwrap()))
        }
        "limiter_fixed" | "limiter_aimd" | "limiter_aimd_full" => {
            let limiter = match name.as_str() {
                "limiter_fixed" => Limiter::new(64),
                "limiter_aimd" => aimd(64, 1_000),
                _ => aimd(1, 1),
            };
            Box::new(move || {
                let permit = ready(black_box(&limiter).acquire()).unwrap();
                permit.finish(Outcome::Success);
            })
        }
        other => panic!("unknown contender {other}"),
    };
    for _ in 0..attempts {
        attempt();
    }
}
