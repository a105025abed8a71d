//! Implementation detail of `gate-core`: the `#[gated]` attribute. Use it through
//! `gate_core::gated`, which is re-exported when `gate-core`'s default `macros` feature is on.

mod args;
mod duration;
mod expand;
mod plan;

use proc_macro::TokenStream;

/// Limits how many calls of an `async fn` run at once (and how often they start), and
/// optionally retries it.
///
/// ```
/// use gate_core::{Backpressure, Elapsed, Gate, gated};
/// # use std::time::Duration;
/// # #[derive(Debug)] struct ApiError;
/// # impl From<Elapsed> for ApiError { fn from(_: Elapsed) -> Self { ApiError } }
/// # impl Backpressure for ApiError {
/// #     fn is_overload(&self) -> bool { false }
/// #     fn retry_after(&self) -> Option<Duration> { None }
/// # }
/// # #[derive(Debug, PartialEq)] struct Verdict;
/// # struct Client;
/// # impl Client {
/// #     async fn complete(&self, prompt: &str) -> Result<String, ApiError> { Ok(prompt.into()) }
/// #     async fn embed(&self, text: &str) -> Result<Vec<f32>, ApiError> { Ok(vec![1.0]) }
/// #     async fn moderate(&self, text: &str) -> Result<Verdict, ApiError> { Ok(Verdict) }
/// # }
///
/// #[gated(limit = 10, retry = 3)]
/// async fn complete(client: &Client, prompt: &str) -> Result<String, ApiError> {
///     client.complete(prompt).await
/// }
///
/// static OPENAI: Gate = Gate::new(10);
///
/// #[gated(gate = OPENAI, retry = 3, backoff = "exponential", wait = "500ms",
///         max_delay = "10s", timeout = "30s")]
/// async fn embed(client: &Client, text: &str) -> Result<Vec<f32>, ApiError> {
///     client.embed(text).await
/// }
///
/// // 500 a minute, at a concurrency that AIMD finds, pausing when the server says 429.
/// #[gated(rate = "500/min", adaptive = "aimd", limit = 50, backpressure = true, retry = 5)]
/// async fn moderate(client: &Client, text: &str) -> Result<Verdict, ApiError> {
///     client.moderate(text).await
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// # assert_eq!(complete(&Client, "hi").await.unwrap(), "hi");
/// # assert_eq!(embed(&Client, "hi").await.unwrap(), [1.0]);
/// # assert_eq!(moderate(&Client, "hi").await.unwrap(), Verdict);
/// # }
/// ```
///
/// Each call waits for a permit of the function's gate, runs the body while holding it, and
/// releases it when the body finishes, returns early, fails with `?`, panics, or is dropped.
/// The signature is untouched: only the body changes, so methods (`&self`, `&mut self`,
/// `self: Arc<Self>`), generics, lifetimes, `impl Trait` and `async fn` in trait impls work
/// as written. The generated future is `Send` whenever the original body's is, and the
/// success path allocates nothing.
///
/// A function needs a limit: limits of its own (`limit`, `rate`, `tokens`, `adaptive`, alone
/// or together), or a shared `gate` or `limiter`. Every other argument is optional.
///
/// Every call is admitted through `gate_core::Admission`, whatever the source: with `limit`
/// alone, the function's own `static Gate`; with `rate`, `tokens` or `adaptive`, its own
/// `Limiter` (a concurrency limit, a rate limit, a token budget, with a pause shared by
/// everyone behind it when the server pushes back, and an optional adaptive limit that
/// learns from how each attempt ends); with `gate` or `limiter`, any admission you declared,
/// your own sources of permits included. The expansion is shown under *Equivalent code*
/// below.
///
/// # Arguments
///
/// | Argument | What it does | Needs |
/// |---|---|---|
/// | `limit = N` | at most `N` calls at once (a `static Gate` of its own) | |
/// | `gate = PATH` | shares a gate you declared | |
/// | `rate = "500/min"` | at most so many calls start per period | |
/// | `burst = N` | lets `N` calls of the rate start back to back | `rate` |
/// | `tokens = "180000/min"` | a token budget: each call reserves its `cost` | `cost` |
/// | `cost = EXPR` | the call's token estimate, a `u64` from the arguments | `tokens` or `limiter` |
/// | `usage = f` | reads the tokens used from the `Ok` value, in place of `TokenUsage` | `cost` |
/// | `adaptive = "aimd"` | a concurrency limit that finds the server's capacity | |
/// | `limiter = PATH` | shares a `Limiter` (or any admission) you declared | |
/// | `backpressure = true` | honours `Retry-After`, pauses the limiter | `Backpressure` |
/// | `retry = N` | up to `N` retries after the first attempt | a `Result` |
/// | `backoff`, `wait`, `max_delay`, `jitter` | the delay between attempts | `retry` |
/// | `timeout = "30s"` | cancels an attempt past it | `From<Elapsed>` or `timeout_error` |
/// | `timeout_error = f` | makes a timeout's error, for another crate's error type | `timeout` |
/// | `retry_if = f` | which errors to retry | `retry` |
/// | `crate = "path"` | where `gate-core` is, if renamed | |
///
/// ## `limit = N`
///
/// The function gets a gate of its own with `N` permits (`N` is an integer literal of at
/// least 1), held in a `static` inside the function. So it is shared by every call, by every
/// clone of `self`, **and by every instantiation of a generic function**: `fetch::<A>` and
/// `fetch::<B>` wait on the same `N` permits. (A default method of a trait likewise has one
/// gate for all implementors.) For a gate per instance or per type, use
/// `Gate::acquire` by hand.
///
/// With `rate`, `limit` is the limiter's concurrency limit; with `adaptive`, it is the most
/// the adaptive limit may grow to.
///
/// ## `gate = PATH`
///
/// Uses a gate you declared, so that several functions share one limit. It must live as long
/// as the program: a `static Gate`, a `static LazyLock<Gate>`, or a `static LazyLock<Arc<Gate>>`.
/// A `const` gate is rejected at compile time ("temporary value dropped while borrowed"),
/// since it would be a new gate at every call and limit nothing.
///
/// `gate` and `limiter` take the same thing, any `'static` `gate_core::Admission`, and expand
/// to the same code: the macro cannot see the type, and does not need to. They are two names
/// so that the attribute says what it shares: `gate` a fixed concurrency limit, `limiter`
/// anything that learns from how attempts end (a `Limiter`, or a source of your own). The one
/// difference is what each name lets you write beside it: `backpressure = true` without
/// `retry` is accepted with `limiter`, which reports overloads, and refused with `gate`,
/// which ignores them.
///
/// A shared gate can refuse a permit, which a function's own gate never does: once it is
/// closed (`Gate::close`), or, for
/// a gate built with `max_wait` or `max_waiters`, when a caller waits too long or finds the
/// queue full. The function's signature has no room for that error, so **the call panics**
/// with `` `#[gated]` function `NAME` could not get a permit: gate closed `` (or the other
/// reason). Close a shared gate only when no more calls are wanted, or call
/// `Gate::acquire` by hand to handle refusals.
///
/// ## `rate = "COUNT/PERIOD"`
///
/// At most `COUNT` calls start per `PERIOD`, spread evenly (one every `PERIOD / COUNT`):
/// `"500/min"`, `"10/s"`, `"3/h"`, `"100/10s"`, in any form that `Rate::parse` accepts. In
/// every window of time of length `T`, at most `burst + COUNT × T / PERIOD` calls start.
/// With `limit = N` as well, at most `N` run at once. Each attempt of a retried call takes
/// its own turn.
///
/// The text is checked by `Rate::parse` itself, in a `const` the expansion evaluates when
/// the program is compiled, so a malformed rate is a compile error on the literal
/// (`` evaluation panicked: invalid `rate`: unknown unit after `/`; ... ``).
///
/// The function's limiter is a `static LazyLock<Limiter>` inside it, built on the first
/// call: like a `limit`, it is **shared by every call, every clone of `self` and every
/// instantiation of a generic function**. For one rate across several functions, declare a
/// limiter and use `limiter = NAME`.
///
/// ## `burst = N`
///
/// Lets up to `N` calls of a `rate` start back to back (1 unless given; at least 1). The rate
/// over a long time does not change: a burst is paid back by a quiet spell. Needs `rate`.
/// The burst may be written in the rate's text instead, as `Rate`'s `Display` writes it
/// (`rate = "10/s (burst 4)"`), but not in both places.
///
/// ## `tokens = "COUNT/PERIOD"` and `cost = EXPR`
///
/// A token budget beside the request rate, as LLM APIs count them (OpenAI: tokens per
/// minute, charged from `prompt + max_tokens` when a request is admitted): the function's
/// limiter gets `LimiterBuilder::tokens`, a bucket that holds the whole period's count
/// (180,000 for `"180000/min"`), or the burst if the text gives one (`"180000/min (burst
/// 30000)"`). The text is checked like a `rate`'s, on the literal, when the program is
/// compiled. `tokens` works alone or with `limit`, `rate` and `adaptive`.
///
/// `cost` is what one call is expected to spend, a `u64` expression over the arguments
/// (`cost = estimate(&prompt)`, `cost = prompt.len() as u64 / 4 + max_tokens`), **evaluated
/// once per call**, before the first attempt; every attempt reserves it as it is admitted
/// (`Limiter::acquire_tokens`), after the pause, the permit and the rate. `cost` is needed
/// with `tokens`, and works alone with a `limiter = NAME` built with `.tokens(..)`; a shared
/// limiter without a token budget ignores it (as every source without one does: a `Gate`,
/// `Unlimited`), so `cost` with `gate` is a compile error.
///
/// Each success is **settled** with what it reports it used, so that later calls wait for
/// the tokens really spent, not the estimate: the function's `Ok` type implements
/// `gate_core::TokenUsage`, or `usage` reads it (below). Settling refunds what the call did
/// not use and charges what it used beyond its estimate. A success that reports `None`, a
/// failed attempt (an `Err`, a timeout) and an attempt cancelled with its call keep the
/// estimate charged: the request may have reached the server, which counts it. With
/// `backpressure = true`, an error that says the server refused (a 429,
/// `Backpressure::is_overload`) is settled at 0 instead: a server does not charge a request
/// it refused. A call cancelled while it waits for tokens has reserved none.
///
/// A cost the budget can never admit, larger than its bucket (or a computed cost of 0), is
/// refused at once rather than waited for ever: as for every refusal, the call **panics**,
/// `` `#[gated]` function `NAME` could not get a permit: ... `` with the reason. Where an
/// estimate may exceed the bucket, cap it (`cost = estimate(&p).min(180_000)`: settling
/// charges the excess after the call), or check it before calling.
///
/// `cost` needs a function that returns a `Result` (an `Ok` value to settle from); the `Ok`
/// type not implementing `TokenUsage` is a compile error on the return type that names
/// `usage`.
///
/// ```
/// use gate_core::{TokenUsage, gated};
/// # #[derive(Debug)] struct ApiError;
/// # struct Client;
/// # impl Client {
/// #     async fn chat(&self, p: &str) -> Result<Completion, ApiError> {
/// #         Ok(Completion { text: p.into(), total_tokens: 3 })
/// #     }
/// # }
///
/// struct Completion {
///     text: String,
///     total_tokens: u64,
/// }
///
/// impl TokenUsage for Completion {
///     fn tokens_used(&self) -> Option<u64> {
///         Some(self.total_tokens)
///     }
/// }
///
/// /// About 4 characters a token, plus the most the answer may take.
/// fn estimate(prompt: &str) -> u64 {
///     prompt.len() as u64 / 4 + 256
/// }
///
/// #[gated(limit = 8, rate = "500/min", tokens = "180000/min", cost = estimate(prompt))]
/// async fn chat(client: &Client, prompt: &str) -> Result<Completion, ApiError> {
///     client.chat(prompt).await
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() { assert_eq!(chat(&Client, "hi").await.unwrap().text, "hi"); }
/// ```
///
/// ## `usage = path::to::function`
///
/// Reads how many tokens a success used: a `fn(&T) -> Option<u64>`, `T` the `Ok` type (or a
/// closure that captures nothing), in place of `TokenUsage::tokens_used`. For a response
/// type of another crate, such as async-openai's `CreateChatCompletionResponse`, the orphan
/// rule forbids `impl TokenUsage` in your crate; this needs no impl. `usage = |_| None`
/// settles nothing and keeps every estimate charged. Needs `cost`.
///
/// ```
/// # use std::sync::LazyLock;
/// # use gate_core::rate::Rate;
/// # use gate_core::{Limiter, gated};
/// # mod other_crate {
/// #     #[derive(Debug)] pub struct ApiError;
/// #     pub struct Usage { pub total_tokens: u32 }
/// #     pub struct Response { pub usage: Option<Usage> }
/// # }
/// use other_crate::{ApiError, Response}; // no `TokenUsage`, and none can be written here
/// # async fn send(_: &str) -> Result<Response, ApiError> {
/// #     Ok(Response { usage: Some(other_crate::Usage { total_tokens: 7 }) })
/// # }
///
/// static OPENAI: LazyLock<Limiter> = LazyLock::new(|| {
///     Limiter::builder()
///         .concurrency(8)
///         .rate(Rate::per_minute(500))
///         .tokens(Rate::per_minute(180_000))
///         .build()
///         .unwrap()
/// });
///
/// #[gated(limiter = OPENAI, cost = prompt.len() as u64 / 4 + 256,
///         usage = |r: &Response| r.usage.as_ref().map(|u| u64::from(u.total_tokens)))]
/// async fn chat(prompt: &str) -> Result<Response, ApiError> {
///     send(prompt).await
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// #     chat("hello").await.unwrap();
/// #     assert_eq!(OPENAI.token_limit().unwrap().remaining(), 180_000 - 7);
/// # }
/// ```
///
/// ## `adaptive = "aimd" | "gradient"`
//////
/// A concurrency limit that finds the server's capacity from how each attempt ends, through
/// `gate_core::adaptive`: `"aimd"` (`Aimd`) for servers that refuse when overloaded (429,
/// 503), `"gradient"` (`Gradient`) for servers that slow down.
/// It starts at 10 and stays between 1 and `limit = N` (or 1,000 without a `limit`; it
/// starts at `N` if `N` is below 10). May be combined with `rate`.
///
/// It learns from `Result`s, so the function must return one. Each attempt reports how it
/// ended: `Ok` is a success; `Err` is an overload if the error says so (see
/// `backpressure`), and otherwise a failure that says nothing about load; an attempt cut by
/// `timeout` counts as an overload. A call dropped by its caller reports nothing. Without
/// `backpressure`, only timeouts shrink the limit.
///
/// Cannot be used with `gate`: a shared `Gate` has a fixed size. For an adaptive limit shared
/// by several functions, build a `Limiter` with `.adaptive(..)` and use `limiter = NAME`.
///
/// ## `limiter = PATH`
///
/// Uses a limiter you declared, so that several functions share one concurrency limit,
/// rate, pause and adaptive limit: a `static LazyLock<Limiter>` or a
/// `static LazyLock<Arc<Limiter>>`. It sets its own limits, so `limit`, `gate`, `rate`,
/// `burst`, `tokens` and `adaptive` cannot be used with it; `cost` reserves from its token
/// budget.
///
/// ```
/// use std::sync::LazyLock;
/// use gate_core::rate::Rate;
/// use gate_core::{Backpressure, Limiter, gated};
/// # use std::time::Duration;
/// # #[derive(Debug)] struct ApiError;
/// # impl Backpressure for ApiError {
/// #     fn is_overload(&self) -> bool { false }
/// #     fn retry_after(&self) -> Option<Duration> { None }
/// # }
/// # #[derive(Debug)] struct Issue;
///
/// static GITHUB: LazyLock<Limiter> = LazyLock::new(|| {
///     Limiter::builder().concurrency(8).rate(Rate::per_hour(5_000)).build().unwrap()
/// });
///
/// #[gated(limiter = GITHUB, retry = 3, backpressure = true)]
/// async fn issues(repo: &str) -> Result<Vec<Issue>, ApiError> {
///     # let _ = repo;
///     Ok(Vec::new())
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// # assert!(issues("gate").await.unwrap().is_empty());
/// # assert_eq!(GITHUB.stats().admitted, 1);
/// # }
/// ```
///
/// Any other `'static` admission works the same way: a `static LazyLock<MySource>` for any
/// `MySource: gate_core::Admission` (a limit shared through Redis, a token budget) needs no
/// change to the macro. Each attempt of a retried call is reported through its permit
/// (`gate_core::Report::finish`), so such a source sees every attempt end.
///
/// Like a shared gate, a closed limiter (or one built with `max_wait` or `max_waiters`) can
/// refuse a permit, and then the call panics (see `gate`).
///
/// A function that returns a `Result` reports each attempt's outcome to the limiter when it
/// has `retry`, `timeout` or `backpressure`; without them, the attempt's permit is released
/// without a report (as if cancelled), so the limiter's rate and pauses apply but its
/// adaptive limit learns nothing from that function.
///
/// ## `backpressure = true`
///
/// The function's error type implements `gate_core::Backpressure`, so an error can say "the
/// server is overloaded, come back after `Retry-After`". The function must return a
/// `Result`, and the error type must implement `Backpressure` (a compile error on the
/// return type says so). It builds the retry policy with `RetryBuilder::honor_retry_after`:
///
/// - with a limiter (`rate`, `adaptive`, `limiter`), an overload error is reported as
///   `Outcome::Overload`: it pauses new admissions for everyone sharing the limiter until
///   its `Retry-After`, and shrinks an adaptive limit;
/// - with `retry`, the next attempt waits at least the error's `Retry-After`, even when the
///   backoff is shorter.
///
/// A `Retry-After` is untrusted input, so both are capped at 60 seconds: a limiter pauses
/// for at most a minute, however long the hint (`Duration::MAX` included), and a hint longer
/// than a minute ends the call at once, returning that error unchanged rather than sleeping
/// through it (a spent daily quota may say "come back in 20 hours"). For other caps, declare
/// a limiter with `Limiter::builder().max_pause(..)` and use `limiter = NAME`, or write the
/// retry by hand with `RetryBuilder::max_retry_after`.
///
/// With a `Gate` and no `retry` it would do nothing, which is a compile error.
///
/// ## `retry = N`
///
/// Retries up to `N` times after the first attempt (so at most `N + 1` attempts; `N` is at
/// least 1). Only for functions returning a `Result`, decided through the type system, so
/// aliases such as `std::io::Result<T>` and `anyhow::Result<T>` work; anything else is a
/// compile error on the return type. A `?` or `return Err(..)` in the body ends the attempt,
/// not the call.
///
/// The permit is held for one attempt and released during the backoff, so a failing caller
/// never blocks healthy ones. When the retries run out, the function returns the last error
/// unchanged.
///
/// **The body runs again for each attempt.** It borrows the arguments afresh each time, so
/// it must not consume them: `fn f(body: String)` whose body calls `send(body)` is a compile
/// error ("value moved here, in previous iteration of loop", pointing at `async` and at
/// `retry`); pass `body.clone()` or take `&str`. Changes an attempt makes to a `mut`
/// argument or through `&mut self` are seen by the next attempt.
///
/// ## `backoff = "fixed" | "exponential"`
///
/// How the delay between attempts grows; `"fixed"` unless given. `"exponential"` starts at
/// `wait` and doubles each retry, up to `max_delay`; it requires `wait`. Needs `retry`.
///
/// ## `wait = "DURATION"`
///
/// The delay before the first retry (and before every retry with a fixed backoff). Zero
/// (the default) retries at once. Needs `retry`.
///
/// ## `max_delay = "DURATION"`
///
/// The cap on an exponential backoff's delay, at least `wait`; without it the delay keeps
/// doubling. Needs `backoff = "exponential"`. (`max_wait` is a different thing: the time a
/// caller may wait for a permit, set on a shared gate with `Gate::builder(n).max_wait(..)`.)
///
/// ## `jitter = true | false`
///
/// Draws each delay uniformly between zero and the backoff ("full jitter"), so callers that
/// failed together do not retry together. Off unless given. Needs `retry`.
///
/// ## `timeout = "DURATION"`
///
/// Cancels an attempt that runs longer than this (greater than zero) and counts it as a
/// failed attempt, which is always retried. The time spent waiting for a permit does not
/// count. The function must return a `Result` whose error type can say "timed out": when
/// the last attempt times out, the function returns `E::from(Elapsed)`, or what
/// `timeout_error` makes. Works with or without `retry` (without, it is one attempt). Under
/// a limiter, a timed-out attempt is reported as `Outcome::TimedOut`, a sign of overload.
///
/// ## `timeout_error = path::to::function`
///
/// Makes the error a timed-out last attempt returns: a `fn(gate_core::Elapsed) -> E` (or a
/// closure that captures nothing), in place of `E::from`. For an error type of another
/// crate, such as async-openai's `OpenAIError`, the orphan rule forbids
/// `impl From<Elapsed> for OpenAIError` in your crate; this needs no impl. Needs `timeout`.
///
/// ```
/// use gate_core::{Elapsed, gated};
/// # mod other_crate { #[derive(Debug)] pub enum ApiError { Timeout(String) } }
/// use other_crate::ApiError; // no `From<Elapsed>`, and none can be written here
/// # struct Client;
/// # impl Client { async fn chat(&self, p: &str) -> Result<String, ApiError> { Ok(p.into()) } }
///
/// #[gated(limit = 8, retry = 2, timeout = "30s",
///         timeout_error = |elapsed: Elapsed| ApiError::Timeout(elapsed.to_string()))]
/// async fn chat(client: &Client, prompt: &str) -> Result<String, ApiError> {
///     client.chat(prompt).await
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() { assert_eq!(chat(&Client, "hi").await.unwrap(), "hi"); }
/// ```
///
/// ## `retry_if = path::to::predicate`
///
/// A `fn(&E) -> bool` (or a closure that captures nothing) deciding which errors to retry;
/// an error it rejects is returned at once. Every error is retried unless given. Timeouts are
/// retried regardless. Needs `retry`.
///
/// ## `crate = "path"`
///
/// The path of `gate-core` if the dependency was renamed (`crate = "gate"`); `::gate_core`
/// unless given.
///
/// ## Durations
///
/// String literals of a whole number and a unit: `"500ms"`, `"2s"`, `"1m"`, `"1h"`
/// (underscores may group digits). They are parsed when the macro runs, so a bad one is a
/// compile error on that literal.
///
/// # Equivalent code without `#[gated]`
///
/// `#[gated(limit = 10)]` turns
///
/// ```
/// # use gate_core::gated;
/// #[gated(limit = 10)]
/// async fn fetch(id: u32) -> String {
///     format!("item {id}")
/// }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// #     assert_eq!(fetch(1).await, "item 1");
/// # });
/// ```
///
/// into what you would write by hand with `Admission::admit` (for a `Gate`, the same as
/// `Gate::acquire`):
///
/// ```
/// use gate_core::{Admission, Gate};
///
/// async fn fetch(id: u32) -> String {
///     let gate = {
///         static GATE: Gate = Gate::new(10);
///         &GATE
///     };
///     let _permit = match gate.admit().await {
///         Ok(permit) => permit,
///         Err(error) => panic!("`#[gated]` function `fetch` could not get a permit: {error}"),
///     };
///     { format!("item {id}") }
/// }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// #     assert_eq!(fetch(1).await, "item 1");
/// # });
/// ```
///
/// A `gate = NAME` or `limiter = NAME` takes `&NAME` in place of the `static`, as a
/// `&'static` admission of any type. `#[gated(gate = OPENAI, retry = 3, wait = "500ms",
/// timeout = "30s")]` on `async fn embed(text: &str) -> Result<Vec<f32>, ApiError>` becomes
/// a loop that makes each attempt a fresh `async` block borrowing the arguments, with the
/// permit held only around it, over `gate_core::retry::Attempts`, the state of the call
/// between attempts (the same that `Retry::call` keeps):
///
/// ```
/// use std::time::Duration;
/// use gate_core::retry::{Attempt, Attempts, Step};
/// use gate_core::{Admission, Elapsed, Gate, Retry};
/// # #[derive(Debug)] struct ApiError;
/// # impl From<Elapsed> for ApiError { fn from(_: Elapsed) -> Self { ApiError } }
///
/// static OPENAI: Gate = Gate::new(10);
///
/// async fn embed(text: &str) -> Result<Vec<f32>, ApiError> {
///     let gate = &OPENAI;
///     let policy = Retry::fixed(3, Duration::from_millis(500));
///     let mut attempts = Attempts::new();
///     loop {
///         let permit = gate.admit().await.unwrap_or_else(|e| panic!("... {e}"));
///         // The body, cancelled after 30 s.
///         let attempt = Attempt::within(Duration::from_secs(30), async {
///             Ok(vec![text.len() as f32])
///         })
///         .await;
///         // Reports the attempt through its permit, which releases it, then decides:
///         // the success, the last error, `ApiError::from(Elapsed)`, or a backoff.
///         match attempts.next_timed(permit, attempt, &policy) {
///             Step::Done(returned) => return returned,
///             Step::Wait(delay) => tokio::time::sleep(delay).await,
///         }
///     }
/// }
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// #     assert_eq!(embed("four").await.unwrap(), [4.0]);
/// # });
/// ```
///
/// With a limiter the loop is the same, and what the permit is told counts: a success, an
/// overload (which, with `Retry-After`, pauses the limiter) or a timeout. `#[gated(rate =
/// "500/min", adaptive = "aimd", limit = 50, backpressure = true, timeout = "30s")]` on the
/// same function gives it a limiter of its own and a policy that honours `Retry-After`:
///
/// ```
/// use std::sync::LazyLock;
/// use std::time::Duration;
/// use gate_core::adaptive::Aimd;
/// use gate_core::rate::Rate;
/// use gate_core::retry::{Attempt, Attempts, Step};
/// use gate_core::{Admission, Backpressure, Elapsed, Limiter, Retry};
/// # #[derive(Debug)] struct ApiError;
/// # impl From<Elapsed> for ApiError { fn from(_: Elapsed) -> Self { ApiError } }
/// # impl Backpressure for ApiError {
/// #     fn is_overload(&self) -> bool { false }
/// #     fn retry_after(&self) -> Option<Duration> { None }
/// # }
///
/// async fn embed(text: &str) -> Result<Vec<f32>, ApiError> {
///     let limiter = {
///         // Checked when the program is compiled.
///         const RATE: Rate = match Rate::parse("500/min") {
///             Ok(rate) => rate,
///             Err(_) => panic!("invalid `rate`: ..."),
///         };
///         // Built on the first call; shared by every call and every instantiation.
///         static LIMITER: LazyLock<Limiter> = LazyLock::new(|| {
///             let aimd = Aimd::builder().initial(10).max(50).build().unwrap();
///             Limiter::builder().adaptive(aimd).rate(RATE).build().unwrap()
///         });
///         &LIMITER
///     };
///     let policy = Retry::builder(0).honor_retry_after().build().unwrap();
///     let mut attempts = Attempts::new();
///     loop {
///         let permit = limiter.admit().await.unwrap_or_else(|e| panic!("... {e}"));
///         let attempt = Attempt::within(Duration::from_secs(30), async {
///             Ok(vec![text.len() as f32])
///         })
///         .await;
///         match attempts.next_timed(permit, attempt, &policy) {
///             Step::Done(returned) => return returned,
///             Step::Wait(delay) => tokio::time::sleep(delay).await,
///         }
///     }
/// }
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// #     assert_eq!(embed("four").await.unwrap(), [4.0]);
/// # });
/// ```
///
/// With `cost = EXPR`, the cost is computed once, before the loop (`let cost: u64 = EXPR;`),
/// each attempt is admitted with `limiter.admit_tokens_with(cost, limiter.wait_limits())`
/// (`Admission::admit_tokens_with`) into a `mut permit`, and a success settles it before
/// `attempts` is asked:
///
/// ```
/// # use gate_core::{Report, TokenUsage};
/// # fn settle<T: TokenUsage, E>(permit: &mut impl Report, returned: &Result<T, E>) {
/// if let Ok(value) = returned
///     && let Some(used) = value.tokens_used() // or the function's `usage`
/// {
///     permit.settle(used);
/// }
/// # }
/// ```
///
/// Without `timeout`, the attempt is the `async` block awaited and `attempts.next` decides;
/// with `timeout_error = f`, `attempts.next_timed_or_else(permit, attempt, &policy, f)`
/// decides. Without `retry`, `timeout`, `adaptive`, `backpressure` or `cost`, there is no
/// loop: the permit is
/// held around the body and dropped unreported, as for `limit = 10` above. Dropping the call
/// while an attempt runs drops its permit unreported too: a cancelled attempt says nothing
/// about the server.
///
/// The real expansion uses absolute paths into `gate_core::__private`, names its locals
/// `__gate_*` with hygiene so that the body can neither see nor shadow them, and adds a
/// never-taken `return` typed by the function's return type, so that a type error in the
/// body is reported against your code and your return type. It parses only the function's
/// signature: the body is kept as the tokens you wrote, so a syntax error in it is reported
/// by the compiler alone.
///
/// # Pitfalls
///
/// ## A function that calls itself deadlocks at its limit
///
/// A call holds its permit until its body finishes, and that includes the time it spends
/// awaiting a call of itself. With `limit = 1`, the inner call waits for the permit the
/// outer call holds, and neither ever finishes: no error, no panic, just a call that hangs.
/// With `limit = N`, `N` outer calls that each recurse hang in the same way, and so do
/// functions sharing one `gate` or `limiter` that call each other. An `adaptive` limit can
/// fall to 1 at any time, so recursion under it hangs sooner or later.
///
/// ```no_run
/// # use gate_core::gated;
/// # struct Url; struct Page; #[derive(Debug)] struct Error;
/// # impl Page { fn links(&self) -> Vec<Url> { Vec::new() } }
/// # async fn fetch(_: &Url) -> Result<Page, Error> { Ok(Page) }
/// // Hangs: the inner `crawl` waits for the permit its caller holds.
/// #[gated(limit = 1)]
/// async fn crawl(url: Url) -> Result<(), Error> {
///     for link in fetch(&url).await?.links() {
///         Box::pin(crawl(link)).await?;
///     }
///     Ok(())
/// }
/// ```
///
/// Hold the permit outside the recursion. Either limit only the leaf, the call that the
/// limit protects, so that its permit is released before the recursion goes deeper:
///
/// ```
/// # use gate_core::gated;
/// # struct Url; struct Page; #[derive(Debug)] struct Error;
/// # impl Page { fn links(&self) -> Vec<Url> { Vec::new() } }
/// #[gated(limit = 1)]
/// async fn fetch(url: &Url) -> Result<Page, Error> {
///     # let _ = url;
///     Ok(Page) // the request
/// }
///
/// async fn crawl(url: Url) -> Result<(), Error> {
///     for link in fetch(&url).await?.links() {
///         Box::pin(crawl(link)).await?;
///     }
///     Ok(())
/// }
/// ```
///
/// or take the permit once, in a gated entry point, and recurse in a function that is not
/// gated (or is gated by a separate `gate` of its own, which the outer permit does not
/// hold):
///
/// ```
/// # use gate_core::gated;
/// # struct Url; struct Page; #[derive(Debug)] struct Error;
/// # impl Page { fn links(&self) -> Vec<Url> { Vec::new() } }
/// # async fn fetch_page(_: &Url) -> Result<Page, Error> { Ok(Page) }
/// #[gated(limit = 1)]
/// async fn crawl(url: Url) -> Result<(), Error> {
///     crawl_under_permit(url).await
/// }
///
/// async fn crawl_under_permit(url: Url) -> Result<(), Error> {
///     for link in fetch_page(&url).await?.links() {
///         Box::pin(crawl_under_permit(link)).await?;
///     }
///     Ok(())
/// }
/// ```
///
/// # Compile errors
///
/// Mistakes are reported on the offending token, and the function is still emitted so that
/// the rest of the program compiles: a function that is not `async`, is `const` or `extern`,
/// or has no body; an item that is not a function; an unknown argument (with the valid ones,
/// and "did you mean" for a close misspelling); a duplicate argument; `limit = 0` or a
/// `limit` that is not an integer; both of `limit` and `gate`, or no limit at all; `rate` or
/// `adaptive`, `tokens` or `cost` with `gate`; `limiter` with `limit`, `gate`, `rate`,
/// `burst`, `tokens` or `adaptive`; an unknown adaptive algorithm; `burst` without `rate`;
/// `tokens` without `cost`, `cost` without `tokens` or `limiter`, `cost = 0`, a cost that is
/// not a `u64` (on the expression), `usage` without `cost`; `retry`, `timeout`, `adaptive`,
/// `backpressure` or `cost` on a function that does not return a `Result`; `backpressure` on
/// an error type that does not implement `Backpressure`, or with nothing to act on; `cost`
/// on an `Ok` type that does not implement `TokenUsage`, without `usage`; `timeout` on an
/// error type without `From<Elapsed>` and without `timeout_error` (the message names
/// `timeout_error` first), `timeout_error` without `timeout`; retry options without
/// `retry`; a malformed, negative or zero duration where one is not allowed; a malformed
/// rate or token budget (when the program is compiled, on the literal); a `gate` or
/// `limiter` that is a `const` or not an admission (on the path).
///
/// A syntax error inside the body is left to the compiler: `#[gated]` parses only the
/// signature, so the compiler's error is the only one.
#[proc_macro_attribute]
pub fn gated(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::gated(args.into(), item.into()).into()
}
