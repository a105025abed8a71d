//! Implementation detail of `gate-core`: the `#[gated]` attribute. Use it through
//! `gate_core::gated`, which is re-exported when `gate-core`'s default `macros` feature is on.

mod args;
mod duration;
mod expand;

use proc_macro::TokenStream;

/// Limits how many calls of an `async fn` run at once (and how often they start), and
/// optionally retries it.
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
///
/// // 500 a minute, at a concurrency that AIMD finds, pausing when the server says 429.
/// #[gated(rate = "500/min", adaptive = "aimd", limit = 50, backpressure = true, retry = 5)]
/// async fn moderate(client: &Client, text: &str) -> Result<Verdict, ApiError> {
///     client.moderate(text).await
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
/// A function needs a limit: limits of its own (`limit`, `rate`, `adaptive`, alone or
/// together), or a shared `gate` or `limiter`. Every other argument is optional.
///
/// With `limit` alone (or `gate`), calls wait on a `Gate`, expanded exactly as shown under
/// *Equivalent code* below. With `rate` or `adaptive` (or `limiter`), they wait on a `Limiter`: a
/// concurrency limit, a rate limit, or both, with a pause shared by everyone behind it when
/// the server pushes back, and an optional adaptive limit that learns from how each attempt
/// ends.
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
/// With `rate`, `limit` is the limiter's concurrency limit; with `adaptive`, it is the most
/// the adaptive limit may grow to.
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
/// ## `adaptive = "aimd" | "gradient"`
///
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
/// Uses a `Limiter` you declared, so that several functions share one concurrency limit,
/// rate, pause and adaptive limit: a `static LazyLock<Limiter>` (or a
/// `static LazyLock<Arc<Limiter>>`, reached by deref). It sets its own limits, so `limit`,
/// `gate`, `rate`, `burst` and `adaptive` cannot be used with it.
///
/// ```ignore
/// static GITHUB: LazyLock<Limiter> = LazyLock::new(|| {
///     Limiter::builder().concurrency(8).rate(Rate::per_hour(5_000)).build().unwrap()
/// });
///
/// #[gated(limiter = GITHUB, retry = 3, backpressure = true)]
/// async fn issues(repo: &str) -> Result<Vec<Issue>, ApiError> { ... }
/// ```
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
/// count. The function must return a `Result` whose error type implements
/// `From<gate_core::Elapsed>`: when the last attempt times out, the function returns
/// `E::from(Elapsed)`. Works with or without `retry` (without, it is one attempt). Under a
/// limiter, a timed-out attempt is reported as `Outcome::TimedOut`, a sign of overload.
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
/// With a limiter, the same loop takes a `LimiterPermit` and reports each attempt through it
/// before backing off. `#[gated(rate = "500/min", adaptive = "aimd", limit = 50,
/// backpressure = true, timeout = "30s")]` on the same function becomes:
///
/// ```ignore
/// async fn embed(text: &str) -> Result<Vec<f32>, ApiError> {
///     let limiter: &'static Limiter = {
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
///     let mut attempts = Attempts::default();
///     loop {
///         let delay = {
///             let permit = limiter.acquire().await.unwrap_or_else(|e| panic!(/* as above */));
///             let outcome = tokio::time::timeout(Duration::from_secs(30), async { /* body */ }).await;
///             // Ok: `permit.finish(Outcome::Success)`; Err(e): `permit.finish(policy.outcome(&e))`
///             // (an overload with `Retry-After` pauses the limiter); timed out:
///             // `permit.finish(Outcome::TimedOut)`. Then, as above:
///             match attempts.next(permit, outcome, &policy, /* retry_if */) {
///                 Step::Done(result) => return result,
///                 Step::Wait(delay) => delay,
///             }
///         }; // The permit was released by `finish`, before any backoff.
///         tokio::time::sleep(delay).await;
///     }
/// }
/// ```
///
/// Dropping the call while an attempt runs drops its permit unreported: a cancelled attempt
/// says nothing about the server.
///
/// The real expansion uses absolute paths into `gate_core::__private`, names its locals
/// `__gate_*` with hygiene so that the body can neither see nor shadow them, and adds a
/// never-taken `return` typed by the function's return type, so that a type error in the
/// body is reported against your code and your return type.
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
/// ```ignore
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
/// ```ignore
/// #[gated(limit = 1)]
/// async fn fetch(url: &Url) -> Result<Page, Error> { /* the request */ }
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
/// ```ignore
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
/// `adaptive` with `gate`; `limiter` with `limit`, `gate`, `rate`, `burst` or `adaptive`;
/// an unknown adaptive algorithm; `burst` without `rate`; `retry`, `timeout`, `adaptive` or
/// `backpressure` on a function that does not return a `Result`; `backpressure` on an error
/// type that does not implement `Backpressure`, or with nothing to act on; retry options
/// without `retry`; a malformed, negative or zero duration where one is not allowed; a
/// malformed rate (when the program is compiled, on the literal).
#[proc_macro_attribute]
pub fn gated(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::gated(args.into(), item.into()).into()
}
