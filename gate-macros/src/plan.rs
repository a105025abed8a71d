//! [`Plan`]: what the expansion does, once the arguments are known to fit together.
//!
//! [`Args`](crate::args::Args) holds what was written; [`Args::plan`](crate::args::Args::plan)
//! checks it and returns a `Plan`, in which every combination the expansion cannot handle is
//! unrepresentable: one source of permits, a retry policy or none, and each delay setting only
//! where it means something. `expand` matches on it and never re-checks an argument.

use proc_macro2::Span;
use syn::{Expr, LitStr, Path};

use crate::args::{AdaptiveKind, Arg};
use crate::duration::Millis;

/// How a `#[gated]` function is admitted and retried.
pub(crate) struct Plan {
    /// The path of gate-core (`crate = "..."`), `::gate_core` unless given.
    pub(crate) krate: Option<Path>,
    /// Where each call's permit comes from.
    pub(crate) admission: Source,
    /// The retry policy each call runs under: `None` runs the body once, under one permit.
    pub(crate) policy: Option<Policy>,
}

/// Where a function's permits come from. Every source is an `Admission` taken as
/// `&'static`; they differ only in where it is declared.
pub(crate) enum Source {
    /// `limit = N` alone: a `static Gate` of the function's own, `Gate::new(N)`.
    OwnGate { limit: Arg<u64> },
    /// `rate`, `adaptive` (and `limit` with them): a `static LazyLock<Limiter>` of the
    /// function's own, built on its first call.
    OwnLimiter {
        /// The concurrency limit, or with `adaptive` the most it may grow to.
        limit: Option<Arg<u64>>,
        rate: Option<RateSpec>,
        /// `tokens = "..."`: the token budget beside the request rate.
        tokens: Option<Arg<LitStr>>,
        adaptive: Option<Arg<AdaptiveKind>>,
    },
    /// `gate = PATH` or `limiter = PATH`: a `'static` admission declared elsewhere.
    Shared { path: Arg<Path> },
}

/// `rate = "..."` and its `burst`.
pub(crate) struct RateSpec {
    pub(crate) text: Arg<LitStr>,
    pub(crate) burst: Option<Arg<u32>>,
}

/// The retry policy of a function that returns a `Result`.
pub(crate) struct Policy {
    /// The argument that asked for the policy (`retry`, `timeout`, `adaptive` or
    /// `backpressure`) and its key's span, where "needs a `Result`" and a body moved in a
    /// previous attempt are reported.
    pub(crate) key: (&'static str, Span),
    /// `retry = N`: retries after the first attempt; none unless given.
    pub(crate) retries: Option<Arg<u32>>,
    /// The delay between attempts.
    pub(crate) delay: Delay,
    pub(crate) jitter: Option<Arg<bool>>,
    /// `timeout = "..."`: each attempt is cancelled past it.
    pub(crate) timeout: Option<Arg<Millis>>,
    /// `timeout_error = ...`: the `fn(Elapsed) -> E` that makes a timeout's error, in place
    /// of `E::from`. Only with `timeout`.
    pub(crate) timeout_error: Option<Arg<Expr>>,
    pub(crate) retry_if: Option<Arg<Expr>>,
    /// `backpressure = true`: the policy honours `Retry-After`.
    pub(crate) backpressure: bool,
    /// `cost = ...`: each attempt reserves it from a token budget (the function's own
    /// `tokens`, or a shared limiter's) and is settled from its `Ok` value.
    pub(crate) cost: Option<TokenCost>,
}

/// `cost = EXPR` and how a success says what it used.
pub(crate) struct TokenCost {
    /// The estimate, a `u64` expression over the arguments, evaluated once per call.
    pub(crate) expr: Arg<Expr>,
    /// `usage = ...`: a `fn(&T) -> Option<u64>` in place of `TokenUsage::tokens_used`.
    pub(crate) usage: Option<Arg<Expr>>,
}

/// How long to wait between attempts.
pub(crate) enum Delay {
    /// No `wait`: retry at once.
    Immediate,
    /// `wait` with a fixed backoff.
    Fixed(Arg<Millis>),
    /// `backoff = "exponential"` from `wait`, doubling up to `max_delay` (unbounded unless
    /// given).
    Exponential {
        wait: Arg<Millis>,
        max: Option<Arg<Millis>>,
    },
}
