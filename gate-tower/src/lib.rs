//! Tower middleware that caps how many requests run at once with a [`gate_core::Gate`] (or
//! caps their rate, adaptively, with a [`gate_core::Limiter`]), and answers overload the way
//! HTTP and gRPC clients understand.
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, body::Body, http::{Request, StatusCode, header::RETRY_AFTER}, routing::get};
//! use gate_tower::GateLayer;
//! use tower::ServiceExt;
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() {
//!     // At most 2 requests in the handler; others wait up to 1 s, at most 4 of them.
//!     let layer = GateLayer::new(2).max_wait(Duration::from_secs(1)).max_waiters(4);
//!     let app = Router::new().route("/", get(|| async { "hello" })).layer(layer.clone());
//!
//!     let response = app.clone().oneshot(Request::new(Body::empty())).await.unwrap();
//!     assert_eq!(response.status(), StatusCode::OK);
//!     // The permit is held until the body has been read (or dropped).
//!     assert_eq!(layer.stats().in_flight, 1);
//!     let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
//!     assert_eq!(body, "hello");
//!     assert_eq!(layer.stats().in_flight, 0);
//!
//!     // Both permits taken elsewhere (the gate is shared) and no waiting allowed: refused.
//!     let busy = (layer.gate().unwrap().try_acquire().unwrap(), layer.gate().unwrap().try_acquire().unwrap());
//!     let impatient = Router::new()
//!         .route("/", get(|| async { "hello" }))
//!         .layer(layer.clone().max_wait(Duration::ZERO));
//!     let response = impatient.oneshot(Request::new(Body::empty())).await.unwrap();
//!     assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
//!     assert_eq!(response.headers()[RETRY_AFTER], "1");
//!     drop(busy);
//!
//!     let stats = layer.stats();
//!     assert_eq!((stats.in_flight, stats.rejected), (0, 1));
//! }
//! ```
//!
//! # What it does
//!
//! - [`GateLayer`] wraps services in a [`GateService`]. All of them, and their clones, share
//!   the layer's gate, which can also be an `Arc<Gate>` or a `&'static Gate` shared with other
//!   layers and `#[gated]` functions. The limit holds however the layer is attached in axum:
//!   `Router::layer`, `Router::route_layer` or `get(handler).layer(..)`.
//! - A permit is taken per request in `call`, never in `poll_ready`, so idle keep-alive
//!   connections pin nothing, and a waiting request reserves nothing in the inner service.
//!   Waiting is bounded by time: `max_wait`, and a request that would not get in within it
//!   at the rate the queue drains is refused at once; `max_waiters` caps memory.
//! - Refused HTTP requests get `503 Service Unavailable` with `Retry-After`; refused gRPC
//!   requests get a trailers-only `RESOURCE_EXHAUSTED` response, and gRPC-Web requests the
//!   same status in a gRPC-Web trailers frame. The hint is the queue's drain time. Other
//!   tower services can fail with an [`Overloaded`] error instead
//!   ([`GateLayer::refuse_with_error`]), and still learn from HTTP responses ([`Answer`]).
//!   Refusals log at `DEBUG`, with a periodic `WARN` summary.
//! - By default a response holds its permit until its [`body::ResponseBody`] has been sent
//!   or dropped, so streamed responses count until their last chunk; a body its client has
//!   stopped reading gives the permit back after [`GateLayer::body_idle_timeout`].
//! - A dropped response future, a failed or panicking inner service, or a dropped body never
//!   leaks a permit: permits are released by `Drop`.
//! - Instead of a gate, a layer can draw from a [`gate_core::Limiter`]
//!   ([`GateLayer::with_limiter`], [`GateLayer::with_rate`], [`GateLayer::adaptive`]): a
//!   concurrency limit, a rate limit or both, fixed or adaptive. The limiter then learns from
//!   every response: an HTTP 429 or 503, or a gRPC `RESOURCE_EXHAUSTED` or `UNAVAILABLE`, is
//!   a [`Pushback`] that shrinks an adaptive limit, and its `Retry-After` (or
//!   `grpc-retry-pushback-ms`) pauses new admissions for everyone sharing the limiter.
//!
//! # Limiting calls to an upstream
//!
//! The same layer works on the client side. In front of an API that allows 10 calls a
//! second and answers `429 Too Many Requests` with `Retry-After` when pushed, one 429 holds
//! back every caller sharing the limiter until the time it names:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use gate_core::Limiter;
//! use gate_core::rate::Rate;
//! use gate_tower::GateLayer;
//! use http::{Request, Response, StatusCode, header::RETRY_AFTER};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let limiter = Arc::new(Limiter::with_rate(Rate::per_second(10)));
//! let layer = GateLayer::with_limiter(Arc::clone(&limiter))
//!     .max_wait(Duration::MAX)
//!     .hold_until_body_end(false);
//! // Stands in for an HTTP client calling the upstream.
//! let upstream = service_fn(|_: Request<String>| async {
//!     let response = Response::builder()
//!         .status(StatusCode::TOO_MANY_REQUESTS)
//!         .header(RETRY_AFTER, "3")
//!         .body(())
//!         .unwrap();
//!     Ok::<_, std::convert::Infallible>(response)
//! });
//! let client = layer.layer(upstream);
//!
//! let start = tokio::time::Instant::now();
//! let response = client.clone().oneshot(Request::new(String::new())).await.unwrap();
//! assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert!(limiter.paused_until().is_some());
//! // The next call, from anyone sharing the limiter, waits out the pause.
//! client.oneshot(Request::new(String::new())).await.unwrap();
//! assert_eq!(start.elapsed(), Duration::from_secs(3));
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod answer;
pub mod body;
mod drain;
pub mod future;
pub mod keyed;
mod layer;
mod pushback;
mod queue;
mod refusal;
mod report;
mod service;
mod source;

pub use answer::Answer;
pub use keyed::{KeyedGateLayer, KeyedGateService};
pub use layer::GateLayer;
pub use pushback::Pushback;
pub use refusal::{BoxError, Overloaded, Reject, Respond};
pub use service::GateService;
