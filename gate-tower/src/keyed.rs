//! [`KeyedGateLayer`]: a limit per key (an API key, a client address, a path), the key read
//! from each request, and the extractors that read it.

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use gate_core::keyed::{self, KeyedAdmission, KeyedAdmitError, KeyedGate, KeyedLimiter};
use gate_core::{BoxPermit, Stats, Unlimited, WaitLimits};
use http::{HeaderName, HeaderValue, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::body::ResponseBody;
use crate::future::ResponseFuture;
use crate::layer::{GateLayer, queue_cap};
use crate::refusal::{Protocol, RateLeft, RateLimited};
use crate::report::{GatePermit, Rated};
use crate::service::GateService;
use crate::source::{self, Denied, KeyedAdmit};

/// The longest key [`Header`] and [`Path`] take from a request, in bytes: a longer value is
/// no key, and the request goes to the default bucket. Keys are held in memory for as long
/// as their key is (up to the keyed gate's `max_keys`), so a client must not choose their
/// size.
pub const MAX_KEY_LEN: usize = 256;

/// Reads the key a request is limited by. `None` sends the request to the layer's default
/// bucket.
///
/// Implemented by [`Header`], [`ClientIp`], [`Path`], and any
/// `Fn(&Request<B>) -> Option<K>`.
pub trait ExtractKey<B> {
    /// The key.
    type Key;

    /// The key of `request`, if it has one.
    fn extract_key(&self, request: &Request<B>) -> Option<Self::Key>;
}

impl<B, K, F> ExtractKey<B> for F
where
    F: Fn(&Request<B>) -> Option<K>,
{
    type Key = K;

    fn extract_key(&self, request: &Request<B>) -> Option<K> {
        self(request)
    }
}

/// Keys requests by the value of a header, such as an API key: the first value of that
/// name without the spaces and tabs around it, if that is not empty and at most
/// [`MAX_KEY_LEN`] bytes (its bytes as they are, UTF-8 or not).
///
/// The whitespace around a field's value is not part of it (RFC 9110, section 5.5). HTTP/1
/// parsers drop it, HTTP/2 and HTTP/3 carry it: without trimming, `a` sent over HTTP/1 and
/// `a ` over HTTP/2 would be two tenants, and a client could pad its key into as many
/// buckets as it liked. A value of only whitespace is no key, as an empty one is.
#[derive(Debug, Clone)]
pub struct Header {
    name: HeaderName,
}

impl Header {
    /// Keys requests by header `name`.
    pub const fn new(name: HeaderName) -> Self {
        Self { name }
    }
}

impl<B> ExtractKey<B> for Header {
    type Key = HeaderValue;

    fn extract_key(&self, request: &Request<B>) -> Option<HeaderValue> {
        let value = request.headers().get(&self.name)?;
        let key = value.as_bytes().trim_ascii();
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return None;
        }
        if key.len() == value.len() {
            // What nearly every request sends: a clone shares the value's bytes.
            return Some(value.clone());
        }
        // The bytes of a valid value without its ends are a valid value.
        HeaderValue::from_bytes(key).ok()
    }
}

/// Keys requests by the client's IP address (not its port: one client, many connections),
/// read from a `SocketAddr` in the request's extensions, which the server put there. Behind
/// a proxy this is the proxy's address: key by its forwarding header instead, with a
/// closure that trusts only your proxy's.
///
/// axum keeps the address in a `ConnectInfo<SocketAddr>` instead (served with
/// `into_make_service_with_connect_info::<SocketAddr>()`); key by it with a closure, which
/// spares this crate a dependency on axum:
///
/// ```
/// use std::net::{IpAddr, Ipv4Addr, SocketAddr};
/// use std::sync::Arc;
/// use axum::{Router, body::Body, extract::ConnectInfo, http::Request, routing::get};
/// use gate_core::keyed::KeyedGate;
/// use gate_tower::KeyedGateLayer;
///
/// let client_ip = |request: &Request<Body>| {
///     let info = request.extensions().get::<ConnectInfo<SocketAddr>>()?;
///     Some(info.0.ip())
/// };
/// let unknown = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
/// let layer = KeyedGateLayer::new(Arc::new(KeyedGate::new(4)), client_ip, unknown);
/// let app = Router::new().route("/", get(|| async { "hello" })).layer(layer);
/// let service = app.into_make_service_with_connect_info::<SocketAddr>();
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientIp {
    _p: (),
}

impl ClientIp {
    /// Keys requests by their client's IP address.
    pub const fn new() -> Self {
        Self { _p: () }
    }
}

impl<B> ExtractKey<B> for ClientIp {
    type Key = IpAddr;

    fn extract_key(&self, request: &Request<B>) -> Option<IpAddr> {
        request.extensions().get::<SocketAddr>().map(SocketAddr::ip)
    }
}

/// Keys requests by their URI's path (without the query), if it is at most
/// [`MAX_KEY_LEN`] bytes. Paths come from clients: bound what they can make with the keyed
/// gate's `max_keys`, or key by a route's fixed part with a closure.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path {
    _p: (),
}

impl Path {
    /// Keys requests by their path.
    pub const fn new() -> Self {
        Self { _p: () }
    }
}

impl<B> ExtractKey<B> for Path {
    type Key = String;

    fn extract_key(&self, request: &Request<B>) -> Option<String> {
        let path = request.uri().path();
        (path.len() <= MAX_KEY_LEN).then(|| path.to_owned())
    }
}

/// A [`KeyedAdmission`] with its type erased, so that the layer's type names only its key
/// and its extractor.
trait AnyKeyed<K>: Send + Sync {
    /// Admits `key` at once, refuses it, or says what to wait for within `limits`; with
    /// `advertise`, a permit carries what its key's rate had left, for the response.
    fn admit(&self, key: K, limits: WaitLimits, advertise: bool) -> KeyedAdmit;
}

/// Any [`KeyedAdmission`], behind [`AnyKeyed`].
struct Source<A>(Arc<A>);

impl<K, A: KeyedAdmission<K>> AnyKeyed<K> for Source<A> {
    fn admit(&self, key: K, limits: WaitLimits, advertise: bool) -> KeyedAdmit {
        match self.0.admit_key(key, limits) {
            keyed::KeyedAdmit::Admitted(permit) => {
                KeyedAdmit::Now(rated(&*self.0, permit, advertise))
            }
            keyed::KeyedAdmit::Refused(refused) => KeyedAdmit::Denied(denied(refused)),
            keyed::KeyedAdmit::Wait(wait) => {
                let source = Arc::clone(&self.0);
                KeyedAdmit::Wait(Box::pin(async move {
                    match wait.await {
                        Ok(permit) => Ok(rated(&*source, permit, advertise)),
                        Err(refused) => Err(denied(refused)),
                    }
                }))
            }
        }
    }
}

/// How the layer answers a keyed source's refusal: `429` for a rate's, as a gate's
/// otherwise.
fn denied(refused: KeyedAdmitError) -> Denied {
    match refused {
        KeyedAdmitError::RateLimited(rate) => {
            Denied::RateLimited(RateLimited::new(rate.rate(), rate.wait()))
        }
        other => Denied::Refused(other.into()),
    }
}

/// A keyed source's permit, with what its key's rate had left if that is to be advertised
/// (and the source knows).
fn rated<K, A: KeyedAdmission<K>>(source: &A, permit: A::Permit, advertise: bool) -> GatePermit {
    let left = advertise.then(|| source.rate_left(&permit)).flatten();
    let permit = BoxPermit::new(permit);
    match left {
        Some(left) => GatePermit::Rated(Box::new(Rated {
            permit,
            left: RateLeft::new(left.rate(), left.next(), left.remaining()),
        })),
        None => GatePermit::Any(permit),
    }
}

/// A [`Layer`] that limits requests per key, the key read from each request by an
/// [`ExtractKey`] (a [`Header`] such as an API key, the [`ClientIp`], the [`Path`], or a
/// closure), so that one tenant's flood cannot starve the others.
///
/// - **Per key, from a keyed gate or limiter.** [`new`](Self::new) draws from a
///   [`KeyedGate`]: a concurrency limit per key, under its optional global limit, served in
///   turn between keys when the global limit binds. [`with_limiter`](Self::with_limiter)
///   draws from a [`KeyedLimiter`]: a [`Limiter`](gate_core::Limiter) per key (a rate, a
///   concurrency limit, or both). Both keep memory bounded as their docs say. Cloning the
///   layer shares them.
/// - **Or from any [`KeyedAdmission`]**, with [`with_admission`](Self::with_admission):
///   gate-redis's `RedisKeyedLimiter` keeps each key's limit in Redis, so that every
///   replica of a server shares it (a tenant gets its five a second from the fleet, not
///   five from each replica), refused and advertised as from a keyed limiter. gate-redis's
///   crate docs show the layer over it.
/// - **The default bucket.** A request the extractor finds no key in goes to the key given
///   as `default_key`: all keyless requests share its one limit, as if they had sent that
///   key. Pick a key no client can send (an empty header value is no key, so
///   `HeaderValue::from_static("")` is a safe default for [`Header`]).
/// - **Waiting is bounded** as in [`GateLayer`]: [`max_wait`](Self::max_wait) (default 1 s)
///   for each request, and [`max_waiters`](Self::max_waiters) *per key* (a flooding key fills
///   its own queue, not the others'). The layer's refusal of a request predicted not to get
///   in within `max_wait`, which in a [`GateLayer`] reads the one queue's drain rate, does
///   not apply: with all keys in one estimate, a flood of one key would get the other keys'
///   requests refused at the door. A keyed limiter's keys wait within the layer's bounds,
///   not their template's.
/// - **Refusals are answered.** A request refused for concurrency (its key's queue full,
///   `max_wait` passed, or a new key when the gate holds `max_keys` busy keys) gets
///   `503 Service Unavailable` with `Retry-After`, as from a [`GateLayer`]. A request whose
///   key's rate has no cell free within `max_wait` is refused at once with
///   `429 Too Many Requests`, `Retry-After` (the seconds until the next cell, rounded up),
///   and the fields of the IETF draft (draft-ietf-httpapi-ratelimit-headers):
///   `RateLimit-Policy: "default";q=<count>;w=<seconds>` (the rate, its period rounded up to
///   whole seconds) and `RateLimit: "default";r=0;t=<seconds>`. gRPC requests get
///   `RESOURCE_EXHAUSTED` in both cases, with `grpc-retry-pushback-ms`. Waits advertised are
///   capped at `i32::MAX` milliseconds, as [`GateLayer::retry_after`] says.
/// - **Admitted requests are told what is left.** With a keyed limiter whose keys have a
///   rate, an admitted request's response carries the same two fields: `RateLimit-Policy`
///   as above and `RateLimit: "default";r=<remaining>;t=<seconds>`, where `r` is what the
///   key's rate had left once this request took its cell, and `t` the seconds until its
///   next cell is free (rounded up: the wait for it when none is left, one interval between
///   cells while some are, 0 with the bucket full). `r` counts the rate's burst, which may
///   hold more than the policy's `q` (one a day with a burst of 100 states `q=1;w=86400`
///   and, its bucket full, `r=99` after a request): the quota is what comes back per
///   window, the burst what may be spent at once. The draft lets a server send the fields
///   on any response; they are sent by default because they are what lets a client slow
///   down before it is refused, and [`rate_limit_headers(false)`](Self::rate_limit_headers)
///   turns them off. A response whose inner service set either field keeps its own and
///   gets neither of the layer's (a policy of one limit beside the state of another would
///   mislead). A keyed gate has no rate and sends none.
/// - **Everything else is [`GateLayer`]'s:** a permit per request taken in `call`, held until
///   the response body ends (see [`hold_until_body_end`](Self::hold_until_body_end)) or its
///   reader stalls, refused bodies read before answering, refusals logged at `DEBUG` with a
///   periodic `WARN` summary, nothing leaked on cancellation or panic.
///
/// # Examples
///
/// Two requests at a time per API key, eight in all; requests without an `x-api-key` share
/// one bucket:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use axum::{Router, body::Body, http::{HeaderValue, Request, StatusCode}, routing::get};
/// use gate_core::keyed::KeyedGate;
/// use gate_tower::KeyedGateLayer;
/// use gate_tower::keyed::Header;
/// use tower::ServiceExt;
///
/// let tenants = Arc::new(KeyedGate::builder(2).global(8).build().unwrap());
/// let layer = KeyedGateLayer::new(
///     Arc::clone(&tenants),
///     Header::new("x-api-key".parse().unwrap()),
///     HeaderValue::from_static(""),
/// )
/// .max_wait(Duration::ZERO);
/// let app = Router::new().route("/", get(|| async { "hello" })).layer(layer);
///
/// // Tenant "a" has both its permits out: its next request is refused, "b"'s is served.
/// let a = HeaderValue::from_static("a");
/// let _busy = (tenants.try_acquire(&a).unwrap(), tenants.try_acquire(&a).unwrap());
/// let request = |key| Request::get("/").header("x-api-key", key).body(Body::empty()).unwrap();
/// let refused = app.clone().oneshot(request("a")).await.unwrap();
/// assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
/// let served = app.oneshot(request("b")).await.unwrap();
/// assert_eq!(served.status(), StatusCode::OK);
/// # }
/// ```
///
/// Ten requests a second per client address, answered `429` beyond that, keyed by a closure:
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use std::net::{IpAddr, Ipv4Addr, SocketAddr};
/// use std::sync::Arc;
/// use axum::{Router, body::Body, http::{Request, StatusCode}, routing::get};
/// use gate_core::{Limiter, keyed::KeyedLimiter, rate::Rate};
/// use gate_tower::KeyedGateLayer;
/// use tower::ServiceExt;
///
/// let clients = Arc::new(KeyedLimiter::new(|| Limiter::with_rate(Rate::per_second(10))));
/// let layer = KeyedGateLayer::with_limiter(
///     clients,
///     |request: &Request<Body>| request.extensions().get::<SocketAddr>().map(|a| a.ip()),
///     IpAddr::V4(Ipv4Addr::UNSPECIFIED),
/// );
/// let app = Router::new().route("/", get(|| async { "hello" })).layer(layer);
///
/// let from = |port| {
///     let mut request = Request::new(Body::empty());
///     request.extensions_mut().insert(SocketAddr::from(([192, 0, 2, 1], port)));
///     request
/// };
/// assert_eq!(app.clone().oneshot(from(1000)).await.unwrap().status(), StatusCode::OK);
/// // The same client on another connection: its next cell is 100 ms away, within the 1 s
/// // `max_wait`, so it waits and is served.
/// assert_eq!(app.clone().oneshot(from(1001)).await.unwrap().status(), StatusCode::OK);
/// # }
/// ```
///
/// The same layer over any source of limits per API key, a local keyed limiter or one
/// shared through Redis by every replica:
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use axum::{Router, body::Body, http::{HeaderValue, Request, StatusCode}, routing::get};
/// use gate_core::{Limiter, keyed::{KeyedAdmission, KeyedLimiter}, rate::Rate};
/// use gate_tower::{KeyedGateLayer, keyed::Header};
/// use tower::ServiceExt;
///
/// fn per_api_key<A: KeyedAdmission<HeaderValue>>(tenants: Arc<A>) -> Router {
///     let key = Header::new("x-api-key".parse().unwrap());
///     let layer = KeyedGateLayer::with_admission(tenants, key, HeaderValue::from_static(""))
///         .max_wait(Duration::ZERO);
///     Router::new().route("/", get(|| async { "hello" })).layer(layer)
/// }
///
/// let app = per_api_key(Arc::new(KeyedLimiter::new(|| Limiter::with_rate(Rate::per_second(1)))));
/// let request = || Request::get("/").header("x-api-key", "a").body(Body::empty()).unwrap();
/// assert_eq!(app.clone().oneshot(request()).await.unwrap().status(), StatusCode::OK);
/// let refused = app.oneshot(request()).await.unwrap();
/// assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
/// assert_eq!(refused.headers()["ratelimit"], "\"default\";r=0;t=1");
/// # }
/// ```
pub struct KeyedGateLayer<K, E> {
    layer: GateLayer,
    keys: Arc<dyn AnyKeyed<K>>,
    extract: E,
    default_key: K,
    advertise: bool,
}

impl<K, E> KeyedGateLayer<K, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// A layer drawing from `gate`, a concurrency limit per key, shared with whoever else
    /// holds it; `extract` reads each request's key, and requests without one go to
    /// `default_key`'s bucket.
    pub fn new<H>(gate: Arc<KeyedGate<K, H>>, extract: E, default_key: K) -> Self
    where
        H: BuildHasher + Send + Sync + 'static,
    {
        let handle = Arc::new(gate.handle(default_key.clone()));
        let max_waiters = queue_cap(gate.per_key_limit());
        let layer = GateLayer::from_source(source::Source::admission(handle), max_waiters);
        Self::from_parts(layer, Arc::new(Source(gate)), extract, default_key)
    }

    /// A layer drawing from `limiter`, a [`Limiter`](gate_core::Limiter) per key; see
    /// [`new`](Self::new) for `extract` and `default_key`. A request whose key's rate has
    /// no cell free within [`max_wait`](Self::max_wait) is answered `429` at once; a key's
    /// limiter also learns from its responses, as a
    /// [`GateLayer::with_limiter`] limiter does (an upstream's `Retry-After` pauses that key).
    pub fn with_limiter<H>(limiter: Arc<KeyedLimiter<K, H>>, extract: E, default_key: K) -> Self
    where
        H: BuildHasher + Send + Sync + 'static,
    {
        Self::with_admission(limiter, extract, default_key)
    }

    /// A layer drawing from any [`KeyedAdmission`]: a limit per key kept elsewhere, such as
    /// gate-redis's `RedisKeyedLimiter`, whose keys' limits every replica of a server shares
    /// (see the layer's docs for an example); see [`new`](Self::new) for `extract` and
    /// `default_key`. Its refusals are answered as a keyed limiter's: `429` with the
    /// `RateLimit` fields for a rate with no cell within [`max_wait`](Self::max_wait),
    /// `503` otherwise; its admitted responses carry the `RateLimit` fields of what the
    /// source says its key's rate has left ([`KeyedAdmission::rate_left`]). Each key waits
    /// in the source's own queue, at most [`max_waiters`](Self::max_waiters) of a key
    /// (default 1,024).
    pub fn with_admission<A>(source: Arc<A>, extract: E, default_key: K) -> Self
    where
        A: KeyedAdmission<K>,
    {
        let unlimited = source::Source::admission(Arc::new(Unlimited));
        let layer = GateLayer::from_source(unlimited, queue_cap(1));
        Self::from_parts(layer, Arc::new(Source(source)), extract, default_key)
    }

    fn from_parts(
        layer: GateLayer,
        keys: Arc<dyn AnyKeyed<K>>,
        extract: E,
        default_key: K,
    ) -> Self {
        Self {
            layer,
            keys,
            extract,
            default_key,
            advertise: true,
        }
    }
}

impl<K, E> KeyedGateLayer<K, E> {
    /// How long a request may wait for its key's permit; see [`GateLayer::max_wait`]. With
    /// a keyed limiter, also how long a request may be kept for its key's next rate cell
    /// before it is answered `429` instead.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.layer = self.layer.max_wait(max_wait);
        self
    }

    /// How many requests *of one key* may wait for a permit (default 64 per permit of the
    /// per-key limit, at least 1,024); see [`GateLayer::max_waiters`].
    pub fn max_waiters(mut self, max_waiters: usize) -> Self {
        self.layer = self.layer.max_waiters(max_waiters);
        self
    }

    /// A fixed `Retry-After` for concurrency refusals; see [`GateLayer::retry_after`]. Rate
    /// refusals always advertise the time until the key's next cell.
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.layer = self.layer.retry_after(retry_after);
        self
    }

    /// Whether a response keeps its permit until its body ends; see
    /// [`GateLayer::hold_until_body_end`].
    pub fn hold_until_body_end(mut self, hold: bool) -> Self {
        self.layer = self.layer.hold_until_body_end(hold);
        self
    }

    /// How long a response body holding a permit may wait for its reader; see
    /// [`GateLayer::body_idle_timeout`].
    pub fn body_idle_timeout(mut self, idle: Duration) -> Self {
        self.layer = self.layer.body_idle_timeout(idle);
        self
    }

    /// Whether an admitted request's response carries the `RateLimit` and
    /// `RateLimit-Policy` fields of its key's rate (on unless turned off; only a keyed
    /// limiter whose keys have a rate has any to send). See the layer's docs.
    pub fn rate_limit_headers(mut self, advertise: bool) -> Self {
        self.advertise = advertise;
        self
    }

    /// The bounds on waiting each request gets (`max_waiters` per key).
    pub fn wait_limits(&self) -> WaitLimits {
        self.layer.wait_limits()
    }

    /// The refusals this layer made at once (`rejected`: a key's queue full, a new key with
    /// no room for it, a rate refusal), and for a keyed gate a key's `limit`. How many
    /// requests each key has in flight or waiting is the keyed gate's to say
    /// ([`KeyedGate::key_in_flight`], [`KeyedGate::waiting`]).
    pub fn stats(&self) -> Stats {
        self.layer.stats()
    }
}

impl<S, K: Clone, E: Clone> Layer<S> for KeyedGateLayer<K, E> {
    type Service = KeyedGateService<S, K, E>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedGateService {
            service: self.layer.layer(inner),
            keys: Arc::clone(&self.keys),
            extract: self.extract.clone(),
            default_key: self.default_key.clone(),
            advertise: self.advertise,
        }
    }
}

impl<K: Clone, E: Clone> Clone for KeyedGateLayer<K, E> {
    fn clone(&self) -> Self {
        Self {
            layer: self.layer.clone(),
            keys: Arc::clone(&self.keys),
            extract: self.extract.clone(),
            default_key: self.default_key.clone(),
            advertise: self.advertise,
        }
    }
}

impl<K: fmt::Debug, E> fmt::Debug for KeyedGateLayer<K, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedGateLayer")
            .field("layer", &self.layer)
            .field("default_key", &self.default_key)
            .field("rate_limit_headers", &self.advertise)
            .finish_non_exhaustive()
    }
}

/// Limits the requests through `S` per key; built by [`KeyedGateLayer`], which documents
/// the behaviour. Its calls are [`GateService`]'s, each drawing from its request's key.
pub struct KeyedGateService<S, K, E> {
    service: GateService<S>,
    keys: Arc<dyn AnyKeyed<K>>,
    extract: E,
    default_key: K,
    advertise: bool,
}

impl<S, K, E> KeyedGateService<S, K, E> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        self.service.get_ref()
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        self.service.get_mut()
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.service.into_inner()
    }
}

impl<S, K, E, ReqBody, ResBody> Service<Request<ReqBody>> for KeyedGateService<S, K, E>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ReqBody: http_body::Body,
    E: ExtractKey<ReqBody, Key = K>,
    K: Clone,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, Request<ReqBody>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.service.get_mut().poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let key = self
            .extract
            .extract_key(&request)
            .unwrap_or_else(|| self.default_key.clone());
        let (keys, advertise) = (&self.keys, self.advertise);
        self.service.start_keyed(
            request,
            |request| Protocol::of(request.headers()),
            |limits| keys.admit(key, limits, advertise),
        )
    }
}

impl<S: Clone, K: Clone, E: Clone> Clone for KeyedGateService<S, K, E> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            keys: Arc::clone(&self.keys),
            extract: self.extract.clone(),
            default_key: self.default_key.clone(),
            advertise: self.advertise,
        }
    }
}

impl<S: fmt::Debug, K: fmt::Debug, E> fmt::Debug for KeyedGateService<S, K, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedGateService")
            .field("service", &self.service)
            .field("default_key", &self.default_key)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use gate_core::rate::Rate;

    use super::*;

    fn request() -> Request<()> {
        Request::new(())
    }

    #[test]
    fn a_header_key_is_its_bytes_within_the_bound() {
        let header = Header::new(HeaderName::from_static("x-api-key"));
        let mut request = request();
        assert_eq!(header.extract_key(&request), None);
        let raw = HeaderValue::from_bytes(b"k\xff").unwrap();
        request.headers_mut().insert("x-api-key", raw.clone());
        assert_eq!(header.extract_key(&request), Some(raw));
        let longest = HeaderValue::try_from("k".repeat(MAX_KEY_LEN)).unwrap();
        request.headers_mut().insert("x-api-key", longest.clone());
        assert_eq!(header.extract_key(&request), Some(longest));
        let long = HeaderValue::try_from("k".repeat(MAX_KEY_LEN + 1)).unwrap();
        request.headers_mut().insert("x-api-key", long);
        assert_eq!(header.extract_key(&request), None);
        request
            .headers_mut()
            .insert("x-api-key", HeaderValue::from_static(""));
        assert_eq!(header.extract_key(&request), None);
    }

    // Regression: HTTP/1 parsers drop the whitespace around a field's value, HTTP/2 keeps it,
    // so `a\t` over HTTP/2 was another tenant than `a` over HTTP/1 (a new bucket for every
    // variant a client pads its key with), and a key of only whitespace was a tenant.
    #[test]
    fn a_header_keys_surrounding_whitespace_is_not_part_of_it() {
        let header = Header::new(HeaderName::from_static("x-api-key"));
        let mut request = request();
        for (sent, key) in [
            (&b"a"[..], Some(&b"a"[..])),
            (b" a\t", Some(b"a")),
            (b"\t a b \t", Some(b"a b")),
            (b"\xff ", Some(b"\xff")),
            (b" \t ", None),
        ] {
            let value = HeaderValue::from_bytes(sent).unwrap();
            request.headers_mut().insert("x-api-key", value);
            let found = header.extract_key(&request);
            assert_eq!(found.as_ref().map(HeaderValue::as_bytes), key, "{sent:?}");
        }
        let padded = format!(" {} ", "k".repeat(MAX_KEY_LEN));
        request
            .headers_mut()
            .insert("x-api-key", HeaderValue::try_from(padded).unwrap());
        let found = header.extract_key(&request).unwrap();
        assert_eq!(
            found.len(),
            MAX_KEY_LEN,
            "the bound is on the key, not its padding"
        );
    }

    #[test]
    fn the_client_ip_drops_the_port() {
        let mut request = request();
        assert_eq!(ClientIp::new().extract_key(&request), None);
        request
            .extensions_mut()
            .insert(SocketAddr::from(([192, 0, 2, 7], 4433)));
        let ip = IpAddr::from([192, 0, 2, 7]);
        assert_eq!(ClientIp::new().extract_key(&request), Some(ip));
    }

    #[test]
    fn a_path_key_leaves_out_the_query() {
        let mut request = request();
        *request.uri_mut() = "/v1/chat?model=x".parse().unwrap();
        assert_eq!(
            Path::new().extract_key(&request).as_deref(),
            Some("/v1/chat")
        );
        *request.uri_mut() = format!("/{}", "p".repeat(MAX_KEY_LEN)).parse().unwrap();
        assert_eq!(Path::new().extract_key(&request), None);
    }

    /// A source that, like a store a round trip away, answers only from its future: key
    /// `"out"` has no cell left for a minute, any other key is admitted with 7 cells left.
    struct Remote;

    impl KeyedAdmission<&'static str> for Remote {
        type Permit = gate_core::OwnedPermit;

        fn admit_key(
            self: &Arc<Self>,
            key: &'static str,
            _limits: WaitLimits,
        ) -> keyed::KeyedAdmit<
            Self::Permit,
            impl Future<Output = Result<Self::Permit, KeyedAdmitError>> + Send + 'static,
        > {
            keyed::KeyedAdmit::Wait(async move {
                tokio::task::yield_now().await;
                if key == "out" {
                    let wait = Duration::from_millis(59_500);
                    let refused = keyed::RateLimited::new(Rate::per_minute(10), wait);
                    return Err(KeyedAdmitError::RateLimited(refused));
                }
                Ok(Arc::new(gate_core::Gate::new(1))
                    .try_acquire_owned()
                    .unwrap())
            })
        }

        fn rate_left(&self, _: &Self::Permit) -> Option<keyed::RateLeft> {
            let next = Duration::from_secs(6);
            Some(keyed::RateLeft::new(Rate::per_minute(10), 7, next))
        }
    }

    // A rate refusal that comes from the source's future (after a round trip to a store),
    // not at once, is answered as a local one: `429` with its wait and the RateLimit fields.
    #[tokio::test]
    async fn a_rate_refusal_found_after_waiting_is_a_429() {
        use tower::ServiceExt;

        let hello = tower::service_fn(|_: Request<String>| async {
            Ok::<_, std::convert::Infallible>(Response::new(String::from("hello")))
        });
        let by_key = |request: &Request<String>| request.headers().get("k").map(|_| "out");
        let layer = KeyedGateLayer::with_admission(Arc::new(Remote), by_key, "in");
        let service = layer.layer(hello);

        let refused = service.clone().oneshot(request_with_key()).await.unwrap();
        assert_eq!(refused.status(), http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()["retry-after"], "60");
        assert_eq!(
            refused.headers()["ratelimit-policy"],
            "\"default\";q=10;w=60"
        );
        assert_eq!(refused.headers()["ratelimit"], "\"default\";r=0;t=60");

        let served = service.oneshot(Request::new(String::new())).await.unwrap();
        assert_eq!(served.status(), http::StatusCode::OK);
        assert_eq!(served.headers()["ratelimit"], "\"default\";r=7;t=6");
        assert_eq!(layer.stats().rejected, 1);
    }

    fn request_with_key() -> Request<String> {
        let mut request = Request::new(String::new());
        request
            .headers_mut()
            .insert("k", HeaderValue::from_static("1"));
        request
    }

    #[test]
    fn a_closure_is_an_extractor() {
        let by_method = |request: &Request<()>| Some(request.method().clone());
        assert_eq!(by_method.extract_key(&request()), Some(http::Method::GET));
    }
}
