//! Implementation detail of `gate-core`: the `#[gated]` attribute. Use it through
//! `gate_core::gated`, which is re-exported when `gate-core`'s default `macros` feature is on.

mod args;
mod duration;
mod expand;

use proc_macro::TokenStream;

/// Limits how many calls of an `async fn` run at once, and optionally retries it.
///
/// ```ignore
/// use gate_core::{gated, Gate};
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
/// ```
///
/// Each call waits for a permit of the function's gate, runs the body while holding it, and
/// releases it when the body finishes, returns early, fails with `?`, panics, or is dropped.
/// The signature is untouched: only the body changes, so methods (`&self`, `&mut self`,
/// `self: Arc<Self>`), generics, lifetimes, `impl Trait` and `async fn` in trait impls work
/// as written. The generated future is `Send` whenever the original body's is, and the
/// success path allocates nothing.
///
/// Exactly one of `limit` and `gate` is required. Every other argument is optional.
///
/// # Arguments
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
/// ## `gate = PATH`
///
/// Uses a gate you declared, so that several functions share one limit. It must live as long
/// as the program: a `static Gate`, a `static LazyLock<Gate>`, or a `static LazyLock<Arc<Gate>>`
/// (reached by deref). A `const` gate is rejected at compile time ("temporary value dropped
/// while borrowed"), since it would be a new gate at every call and limit nothing.
///
/// A shared gate can refuse a permit, which a function's own gate never does: once it is
/// closed (`Gate::close`), or, for
/// a gate built with `max_wait` or `max_waiters`, when a caller waits too long or finds the
/// queue full. The function's signature has no room for that error, so **the call panics**
/// with `` `#[gated]` function `NAME` could not get a permit: gate closed `` (or the other
/// reason). Close a shared gate only when no more calls are wanted, or call
/// `Gate::acquire` by hand to handle refusals.
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
/// count. The function must return a `Result` whose error type implements
/// `From<gate_core::Elapsed>`: when the last attempt times out, the function returns
/// `E::from(Elapsed)`. Works with or without `retry` (without, it is one attempt).
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
/// ```ignore
/// #[gated(limit = 10)]
/// async fn fetch(id: u32) -> String {
///     format!("item {id}")
/// }
/// ```
///
/// into what you would write by hand with `Gate::acquire`:
///
/// ```ignore
/// async fn fetch(id: u32) -> String {
///     let gate: &'static Gate = {
///         static GATE: Gate = Gate::new(10);
///         &GATE
///     };
///     let _permit = match gate.acquire().await {
///         Ok(permit) => permit,
///         Err(error) => panic!("`#[gated]` function `fetch` could not get a permit: {error}"),
///     };
///     { format!("item {id}") }
/// }
/// ```
///
/// and `#[gated(gate = OPENAI, retry = 3, wait = "500ms", timeout = "30s")]` on
/// `async fn embed(text: &str) -> Result<Vec<f32>, ApiError>` into a loop that makes each
/// attempt a fresh `async` block borrowing the arguments, with the permit held only around
/// it. `Attempts` stands for what `Retry::call` does between attempts (count them, apply
/// `retry_if`, compute the backoff):
///
/// ```ignore
/// async fn embed(text: &str) -> Result<Vec<f32>, ApiError> {
///     let gate: &'static Gate = &OPENAI;
///     let policy = Retry::fixed(3, Duration::from_millis(500));
///     let mut attempts = Attempts::default();
///     loop {
///         let outcome = {
///             let _permit = gate.acquire().await.unwrap_or_else(|e| panic!(/* as above */));
///             // The body, cancelled after 30 s.
///             tokio::time::timeout(Duration::from_secs(30), async { /* body */ }).await
///         }; // The permit is released here, before any backoff.
///         let delay = match attempts.next(outcome, &policy, /* retry_if */) {
///             Step::Done(result) => return result, // Ok, last error, or E::from(Elapsed)
///             Step::Wait(delay) => delay,
///         };
///         tokio::time::sleep(delay).await;
///     }
/// }
/// ```
///
/// The real expansion uses absolute paths into `gate_core::__private`, names its locals
/// `__gate_*` with hygiene so that the body can neither see nor shadow them, and adds a
/// never-taken `return` typed by the function's return type, so that a type error in the
/// body is reported against your code and your return type.
///
/// # Compile errors
///
/// Mistakes are reported on the offending token, and the function is still emitted so that
/// the rest of the program compiles: a function that is not `async`, is `const` or `extern`,
/// or has no body; an item that is not a function; an unknown argument (with the valid ones,
/// and "did you mean" for a close misspelling); a duplicate argument; `limit = 0` or a
/// `limit` that is not an integer; both or neither of `limit` and `gate`; `retry` or
/// `timeout` on a function that does not return a `Result`; retry options without `retry`;
/// a malformed, negative or zero duration where one is not allowed.
#[proc_macro_attribute]
pub fn gated(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::gated(args.into(), item.into()).into()
}
