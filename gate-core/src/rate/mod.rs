//! Rate limits: "500 per minute", with an explicit burst.
//!
//! A [`Rate`] is the quota (`"500/min"`, `Rate::per_second(10).burst(5)`); a [`RateLimit`]
//! enforces it with the generic cell rate algorithm, whose arithmetic is the pure
//! [`Gcra::step`], apart from where its state is stored. To combine a rate with a concurrency
//! limit and server backpressure, use a [`Limiter`](crate::Limiter).

mod clock;
mod gcra;
mod limit;
mod quota;

#[cfg(feature = "quanta")]
pub use clock::QuantaClock;
pub(crate) use clock::instant_after;
pub use clock::{Clock, LimiterClock, TokioClock};
pub use gcra::{Decision, Gcra};
pub(crate) use limit::Booking;
pub use limit::{NotUntil, RateLimit, UntilReady};
pub use quota::{ParseRateError, Rate, RateError};
