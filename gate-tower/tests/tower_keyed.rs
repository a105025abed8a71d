//! `KeyedGateLayer` in axum, end to end over real TCP on 127.0.0.1: a limit per API key (or
//! client address), a default bucket for requests without one, and the answers refusals get.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::routing::get;
use bytes::Bytes;
use gate_core::Limiter;
use gate_core::keyed::{KeyedGate, KeyedLimiter};
use gate_core::rate::Rate;
use gate_tower::KeyedGateLayer;
use gate_tower::keyed::Header;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinSet;

mod support;
use support::InFlight;

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// Requests in the handler, per API key.
#[derive(Default)]
struct PerKey {
    keys: HashMap<&'static str, InFlight>,
    all: InFlight,
}

/// A handler that stays in flight for 20 ms, counted under its API key.
async fn busy(State(counts): State<Arc<PerKey>>, headers: HeaderMap) -> &'static str {
    let key = headers
        .get("x-api-key")
        .map_or("", |key| key.to_str().unwrap());
    let counter = &counts.keys[key];
    counter.enter();
    counts.all.enter();
    tokio::time::sleep(Duration::from_millis(20)).await;
    counts.all.leave();
    counter.leave();
    "done"
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends one GET with these headers and reads the whole response.
async fn fetch(
    client: &HttpClient,
    addr: SocketAddr,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Bytes) {
    let mut request = Request::get(format!("http://{addr}/"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client.request(request.body(Empty::new()).unwrap()).await;
    let response = response.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

fn api_key() -> Header {
    Header::new("x-api-key".parse().unwrap())
}

fn no_key() -> HeaderValue {
    HeaderValue::from_static("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_key_does_not_starve_another() {
    const PER_KEY: usize = 4;
    const FLOOD: usize = 100;
    const TURNS: usize = 5;
    // The global limit binds: the flood alone could take every permit.
    let gate = Arc::new(KeyedGate::builder(PER_KEY).global(PER_KEY).build().unwrap());
    let layer = KeyedGateLayer::new(Arc::clone(&gate), api_key(), no_key())
        .max_wait(Duration::from_secs(30))
        .max_waiters(FLOOD);
    let counts = Arc::new(PerKey {
        keys: [("flood", InFlight::new()), ("polite", InFlight::new())].into(),
        all: InFlight::new(),
    });
    let app = Router::new()
        .route("/", get(busy))
        .with_state(Arc::clone(&counts))
        .layer(layer);
    let addr = serve(app).await;

    let mut flood = JoinSet::new();
    for _ in 0..FLOOD {
        flood.spawn(async move { fetch(&client(), addr, &[("x-api-key", "flood")]).await.0 });
    }
    // Wait until the flood holds every permit and has a queue behind it.
    let start = Instant::now();
    while gate.waiting() < FLOOD / 2 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the flood never queued"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    let polite = client();
    let mut slowest = Duration::ZERO;
    for _ in 0..TURNS {
        let sent = Instant::now();
        let (status, _, _) = fetch(&polite, addr, &[("x-api-key", "polite")]).await;
        assert_eq!(status, StatusCode::OK);
        slowest = slowest.max(sent.elapsed());
    }
    let flood_served_meanwhile = counts.keys["flood"].completed();

    let statuses = flood.join_all().await;
    assert!(statuses.iter().all(|status| *status == StatusCode::OK));
    // Each polite request waited about one turn (one 20 ms handler), not for the flood's
    // queue (100 requests, 4 at a time: half a second); the bounds are loose for a busy
    // machine.
    assert!(slowest < Duration::from_millis(400), "{slowest:?}");
    assert!(
        flood_served_meanwhile < FLOOD - FLOOD / 4,
        "the flood was served first: {flood_served_meanwhile} of {FLOOD}"
    );
    assert!(counts.keys["flood"].peak() <= PER_KEY);
    assert!(counts.all.peak() <= PER_KEY);
    assert_eq!(gate.in_flight(), 0);
}

#[tokio::test]
async fn a_concurrency_refusal_is_a_503_for_its_key_only() {
    let gate = Arc::new(KeyedGate::new(1));
    let layer = KeyedGateLayer::new(Arc::clone(&gate), api_key(), no_key())
        .max_wait(Duration::ZERO)
        .retry_after(Duration::from_secs(2));
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(layer);
    let addr = serve(app).await;
    let client = client();

    let held = gate.try_acquire(&HeaderValue::from_static("a")).unwrap();
    let (status, headers, _) = fetch(&client, addr, &[("x-api-key", "a")]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[RETRY_AFTER], "2");
    assert!(!headers.contains_key("ratelimit"));
    let grpc = [("x-api-key", "a"), ("content-type", "application/grpc")];
    let (status, headers, _) = fetch(&client, addr, &grpc).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["grpc-status"], "8");
    assert_eq!(headers["grpc-retry-pushback-ms"], "2000");

    let (status, _, body) = fetch(&client, addr, &[("x-api-key", "b")]).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello"[..]));
    drop(held);
    let (status, _, _) = fetch(&client, addr, &[("x-api-key", "a")]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_rate_refusal_is_a_429_with_the_ratelimit_fields() {
    // Two a minute per key: a second request right after the first waits 30 s for its
    // cell, past `max_wait`, and is answered at once.
    let limiter = Arc::new(KeyedLimiter::new(|| {
        Limiter::with_rate(Rate::per_minute(2))
    }));
    let layer = KeyedGateLayer::with_limiter(Arc::clone(&limiter), api_key(), no_key())
        .max_wait(Duration::from_secs(1));
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(layer.clone());
    let addr = serve(app).await;
    let client = client();

    let (status, _, _) = fetch(&client, addr, &[("x-api-key", "a")]).await;
    assert_eq!(status, StatusCode::OK);
    let sent = Instant::now();
    let (status, headers, _) = fetch(&client, addr, &[("x-api-key", "a")]).await;
    assert!(
        sent.elapsed() < Duration::from_millis(500),
        "the refusal waited"
    );
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers[RETRY_AFTER], "30");
    assert_eq!(headers["ratelimit-policy"], r#""default";q=2;w=60"#);
    assert_eq!(headers["ratelimit"], r#""default";r=0;t=30"#);
    assert_eq!(headers[CONTENT_TYPE], "text/plain; charset=utf-8");
    let grpc = [("x-api-key", "a"), ("content-type", "application/grpc")];
    let (status, headers, _) = fetch(&client, addr, &grpc).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["grpc-status"], "8");
    let pushback: u64 = headers["grpc-retry-pushback-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((29_000..=30_000).contains(&pushback), "{pushback}");

    // Another key has its own rate.
    let (status, _, _) = fetch(&client, addr, &[("x-api-key", "b")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(layer.stats().rejected, 2);
}

#[tokio::test]
async fn requests_without_a_key_share_the_default_bucket() {
    let gate = Arc::new(KeyedGate::new(1));
    let layer =
        KeyedGateLayer::new(Arc::clone(&gate), api_key(), no_key()).max_wait(Duration::ZERO);
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(layer);
    let addr = serve(app).await;
    let client = client();

    let held = gate.try_acquire(&no_key()).unwrap();
    // No header, an empty one, and one too long to be a key all go to the default bucket.
    let long = "k".repeat(gate_tower::keyed::MAX_KEY_LEN + 1);
    for headers in [
        &[][..],
        &[("x-api-key", "")],
        &[("x-api-key", long.as_str())],
    ] {
        let (status, _, _) = fetch(&client, addr, headers).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{headers:?}");
    }
    let (status, _, _) = fetch(&client, addr, &[("x-api-key", "a")]).await;
    assert_eq!(status, StatusCode::OK);
    drop(held);
    let (status, _, _) = fetch(&client, addr, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!gate.contains_key(&HeaderValue::from_static("k")));
}

#[tokio::test]
async fn a_closure_keys_by_axum_connect_info() {
    let gate = Arc::new(KeyedGate::new(1));
    let unknown = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let client_ip = |request: &Request<Body>| {
        let info = request.extensions().get::<ConnectInfo<SocketAddr>>()?;
        Some(info.0.ip())
    };
    let layer = KeyedGateLayer::new(Arc::clone(&gate), client_ip, unknown).max_wait(Duration::ZERO);
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    let client = client();

    let (status, _, _) = fetch(&client, addr, &[]).await;
    assert_eq!(status, StatusCode::OK);
    // The client's address is the key: held, it refuses; the default bucket is not it.
    let held = gate.try_acquire(&IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
    let (status, _, _) = fetch(&client, addr, &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    drop(held);
    let _default = gate.try_acquire(&unknown).unwrap();
    let (status, _, _) = fetch(&client, addr, &[]).await;
    assert_eq!(status, StatusCode::OK);
}

/// A keyed limiter of six a minute per key, in bursts of three: one cell every 10 s.
fn six_a_minute() -> Arc<KeyedLimiter<HeaderValue>> {
    Arc::new(KeyedLimiter::new(|| {
        Limiter::with_rate(Rate::per_minute(6).burst(3))
    }))
}

#[tokio::test]
async fn an_admitted_request_carries_what_its_keys_rate_had_left() {
    let layer =
        KeyedGateLayer::with_limiter(six_a_minute(), api_key(), no_key()).max_wait(Duration::ZERO);
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(layer);
    let addr = serve(app).await;
    let client = client();

    // Three cells in the bucket: each admission leaves one fewer, and the next comes back
    // within one interval (10 s); the last one waits for it.
    for remaining in [2, 1, 0] {
        let (status, headers, _) = fetch(&client, addr, &[("x-api-key", "a")]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["ratelimit-policy"], r#""default";q=6;w=60"#);
        let state = format!(r#""default";r={remaining};t=10"#);
        assert_eq!(headers["ratelimit"], state.as_str());
    }
    let (status, headers, _) = fetch(&client, addr, &[("x-api-key", "a")]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["ratelimit"], r#""default";r=0;t=10"#);
    // Another key has its whole bucket.
    let (_, headers, _) = fetch(&client, addr, &[("x-api-key", "b")]).await;
    assert_eq!(headers["ratelimit"], r#""default";r=2;t=10"#);
}

#[tokio::test]
async fn the_inner_services_own_ratelimit_fields_are_kept() {
    let upstream = || async {
        (
            [("ratelimit", r#""upstream";r=41;t=3"#)],
            "hello from upstream",
        )
    };
    let layer = KeyedGateLayer::with_limiter(six_a_minute(), api_key(), no_key());
    let app = Router::new().route("/", get(upstream)).layer(layer);
    let addr = serve(app).await;
    let (status, headers, _) = fetch(&client(), addr, &[("x-api-key", "a")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["ratelimit"], r#""upstream";r=41;t=3"#);
    assert_eq!(headers.get_all("ratelimit").iter().count(), 1);
    // Not a policy of ours beside a state of theirs.
    assert!(!headers.contains_key("ratelimit-policy"));
}

#[tokio::test]
async fn ratelimit_fields_on_success_can_be_turned_off_and_a_gate_sends_none() {
    let layer =
        KeyedGateLayer::with_limiter(six_a_minute(), api_key(), no_key()).rate_limit_headers(false);
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(layer);
    let addr = serve(app).await;
    let (status, headers, _) = fetch(&client(), addr, &[("x-api-key", "a")]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!headers.contains_key("ratelimit"));
    assert!(!headers.contains_key("ratelimit-policy"));

    // A keyed gate limits concurrency, not a rate: it has nothing to advertise.
    let gate = Arc::new(KeyedGate::new(2));
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(KeyedGateLayer::new(gate, api_key(), no_key()));
    let addr = serve(app).await;
    let (status, headers, _) = fetch(&client(), addr, &[("x-api-key", "a")]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!headers.contains_key("ratelimit"));
}

/// Whether `value` is a structured-field item `"default"` with exactly the integer
/// parameters `keys`, in order (RFC 9651's syntax for these fields).
fn is_rate_item(value: &str, keys: &[&str]) -> bool {
    let Some(params) = value.strip_prefix(r#""default""#) else {
        return false;
    };
    let params: Vec<&str> = params.split(';').collect();
    params[0].is_empty()
        && params.len() == keys.len() + 1
        && params[1..].iter().zip(keys).all(|(param, key)| {
            param.split_once('=').is_some_and(|(name, n)| {
                name == *key
                    && !n.is_empty()
                    && n.len() <= 15
                    && n.bytes().all(|b| b.is_ascii_digit())
            })
        })
}

#[tokio::test]
async fn the_ratelimit_fields_read_as_a_plain_http_client_sees_them() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let layer = KeyedGateLayer::with_limiter(six_a_minute(), api_key(), no_key());
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(layer);
    let addr = serve(app).await;
    // What `curl -i -H 'x-api-key: a' http://ADDR/` sends, and the bytes it gets back.
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\
         x-api-key: a\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert_eq!(body, "hello");
    let mut lines = head.split("\r\n");
    assert_eq!(lines.next(), Some("HTTP/1.1 200 OK"));
    let fields: Vec<(String, &str)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.to_ascii_lowercase(), value.trim_start())
        })
        .collect();
    let field = |wanted: &str| {
        let found: Vec<&str> = fields
            .iter()
            .filter(|(name, _)| name == wanted)
            .map(|(_, value)| *value)
            .collect();
        assert_eq!(found.len(), 1, "{wanted}: {found:?}");
        found[0]
    };
    let policy = field("ratelimit-policy");
    assert!(is_rate_item(policy, &["q", "w"]), "{policy}");
    let state = field("ratelimit");
    assert!(is_rate_item(state, &["r", "t"]), "{state}");
    assert_eq!(state, r#""default";r=2;t=10"#);
}
