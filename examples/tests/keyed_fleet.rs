//! Two replicas of an axum server over 127.0.0.1, each with its own `KeyedGateLayer` over
//! its own `RedisKeyedLimiter`, sharing per-tenant limits through one redis-server of the
//! test's own: a flooding API key gets the fleet's quota once, not once per replica, and is
//! told so with `429` and the RateLimit fields, while another key's paced requests are all
//! served; a key's concurrency limit holds across both replicas; keys that are not UTF-8,
//! or that hold `{`, `}`, `%` or `\\`, are limited apart, here and in the axum example, whose
//! bad arguments and unreachable `--redis` are answered with messages.

#[path = "../../gate-redis/tests/support/mod.rs"]
mod redis_support;

#[allow(dead_code)]
#[path = "../examples/axum_server.rs"]
mod axum_server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::{Router, routing::get};
use bytes::Bytes;
use gate_core::rate::Rate;
use gate_redis::{RedisKeyedLimiter, RedisLimiter, RedisLimiterBuilder};
use gate_tower::KeyedGateLayer;
use gate_tower::keyed::Header;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// One replica: a `RedisKeyedLimiter` of its own on `template`, keyed by `x-api-key`, in
/// front of `app`, served on a free port of 127.0.0.1.
async fn replica(template: RedisLimiterBuilder, max_wait: Duration, app: Router) -> SocketAddr {
    let tenants = RedisKeyedLimiter::builder_bytes(template).build().unwrap();
    let layer = KeyedGateLayer::with_admission(
        Arc::new(tenants),
        Header::new(http::HeaderName::from_static("x-api-key")),
        HeaderValue::from_static(""),
    )
    .max_wait(max_wait);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app.layer(layer);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// The status and headers of a GET to `/` of `addr` as API key `key`, its body read.
async fn get_as(client: &HttpClient, addr: SocketAddr, key: &[u8]) -> http::response::Parts {
    get_path_as(client, addr, "/", key).await
}

/// The status and headers of a GET to `path` of `addr` as API key `key` (its bytes as they
/// are, UTF-8 or not), its body read.
async fn get_path_as(
    client: &HttpClient,
    addr: SocketAddr,
    path: &str,
    key: &[u8],
) -> http::response::Parts {
    let request = Request::get(format!("http://{addr}{path}"))
        .header("x-api-key", HeaderValue::from_bytes(key).unwrap())
        .body(Empty::new())
        .unwrap();
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    body.collect().await.unwrap();
    parts
}

fn header<'a>(parts: &'a http::response::Parts, name: &str) -> &'a str {
    parts
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", parts.headers))
        .to_str()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_key_gets_the_fleets_rate_once_and_a_paced_key_is_served() {
    const BURST: u32 = 5;
    const PER_SECOND: u32 = 10;
    const FLOOD: Duration = Duration::from_secs(2);
    let server = redis_support::server();
    let rate = Rate::per_second(PER_SECOND).burst(BURST);
    let prefix = redis_support::key("keyed-fleet-rate");
    let template = || {
        RedisLimiter::builder(server.client())
            .key(&prefix)
            .rate(rate)
    };
    let app = || Router::new().route("/", get(|| async { "hello\n" }));
    let replicas = [
        replica(template(), Duration::ZERO, app()).await,
        replica(template(), Duration::ZERO, app()).await,
    ];
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();

    let started = Instant::now();
    // Eight flooding clients, each alternating between the replicas, as fast as answered.
    let floods: Vec<_> = (0..8)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move {
                let (mut admitted, mut refused) = (0_u64, 0_u64);
                let mut i = n;
                while started.elapsed() < FLOOD {
                    let parts = get_as(&client, replicas[i % 2], b"flood").await;
                    i += 1;
                    match parts.status {
                        StatusCode::OK => admitted += 1,
                        StatusCode::TOO_MANY_REQUESTS => {
                            refused += 1;
                            // The next cell is at most 100 ms away: one second, rounded up.
                            assert_eq!(header(&parts, "retry-after"), "1");
                            assert_eq!(header(&parts, "ratelimit-policy"), "\"default\";q=10;w=1");
                            assert_eq!(header(&parts, "ratelimit"), "\"default\";r=0;t=1");
                        }
                        other => panic!("unexpected answer to the flood: {other}"),
                    }
                }
                (admitted, refused)
            })
        })
        .collect();
    // Meanwhile another key sends four a second, alternating between the replicas: within
    // its rate, so every one is served, and told what it has left.
    let mut paced = Vec::new();
    for i in 0..8 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        paced.push(get_as(&client, replicas[i % 2], b"paced").await);
    }
    let (mut admitted, mut refused) = (0, 0);
    for flood in floods {
        let (a, r) = flood.await.unwrap();
        admitted += a;
        refused += r;
    }
    let elapsed = started.elapsed();

    for parts in &paced {
        assert_eq!(parts.status, StatusCode::OK, "{parts:?}");
        assert_eq!(header(parts, "ratelimit-policy"), "\"default\";q=10;w=1");
        assert!(header(parts, "ratelimit").starts_with("\"default\";r="));
    }
    // The fleet's bound over the whole run, with one cell of slack for the clock's grain;
    // each replica on its own would admit about twice as many.
    let bound = f64::from(BURST) + f64::from(PER_SECOND) * elapsed.as_secs_f64() + 1.0;
    println!("flood: {admitted} admitted, {refused} refused in {elapsed:?} (bound {bound:.1})");
    assert!(admitted as f64 <= bound, "{admitted} admitted > {bound}");
    assert!(
        admitted as f64 >= 0.6 * (bound - 1.0),
        "{admitted} admitted: the rate is not used"
    );
    assert!(refused > admitted, "the flood was refused: {refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_concurrency_limit_holds_across_replicas() {
    const LIMIT: usize = 3;
    const REQUESTS: usize = 30;
    let server = redis_support::server();
    let prefix = redis_support::key("keyed-fleet-concurrency");
    let in_flight = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let app = || {
        let in_flight = Arc::clone(&in_flight);
        Router::new().route(
            "/",
            get(move || async move {
                let (now, max) = &*in_flight;
                let seen = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(seen, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(40)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                "done\n"
            }),
        )
    };
    let template = || {
        RedisLimiter::builder(server.client())
            .key(&prefix)
            .concurrency(LIMIT)
    };
    let wait = Duration::from_secs(20);
    let replicas = [
        replica(template(), wait, app()).await,
        replica(template(), wait, app()).await,
    ];
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let requests: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { get_as(&client, replicas[i % 2], b"busy").await.status })
        })
        .collect();
    let served = tokio::time::timeout(Duration::from_secs(30), async {
        let mut served = 0;
        for request in requests {
            served += usize::from(request.await.unwrap() == StatusCode::OK);
        }
        served
    })
    .await
    .expect("every request is answered");
    let max = in_flight.1.load(Ordering::SeqCst);
    println!("{served} of {REQUESTS} served, at most {max} at once (limit {LIMIT})");
    assert_eq!(
        served, REQUESTS,
        "every request waits its turn and is served"
    );
    assert!(max <= LIMIT, "{max} in flight over both replicas");
    assert_eq!(max, LIMIT, "the limit was reached");
    // Releases go to Redis in the background, within a round trip or so.
    let key = format!("{prefix}:busy");
    let released = redis_support::eventually(Duration::from_secs(5), || {
        redis_support::held(server, &key) == 0
    });
    assert!(released.await, "every permit is given back");
}

/// API keys a lossy or a careless rendering would confuse: two that are not UTF-8, what
/// `String::from_utf8_lossy` makes of both (U+FFFD), the text of an escape, and hash-tag
/// characters with their percent-encoding.
const CONFUSABLE_KEYS: [&[u8]; 8] = [
    b"\xff",
    b"\xfe",
    b"\xef\xbf\xbd",
    b"\\xFF",
    b"}",
    b"%7D",
    b"a}{b",
    b"a b",
];

/// Sends two requests as each of `keys` in turn to `path` of `addr`, whose limit is one
/// request a minute per key: each key's first is served, its second refused, whatever the
/// keys before it spent.
async fn each_key_has_its_own_limit(addr: SocketAddr, path: &str, keys: &[&[u8]]) {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    for key in keys {
        let first = get_path_as(&client, addr, path, key).await;
        assert_eq!(first.status, StatusCode::OK, "key {key:?}'s first request");
        let second = get_path_as(&client, addr, path, key).await;
        assert_eq!(
            second.status,
            StatusCode::TOO_MANY_REQUESTS,
            "key {key:?}'s second request"
        );
    }
}

// Regression: keys were written into Redis with `String::from_utf8_lossy`, so every API key
// that is not UTF-8 (`\xff`, `\xfe`) shared one limit with the others and with the key
// `\xef\xbf\xbd` (U+FFFD): one tenant could spend another's quota.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_that_are_not_utf8_or_hold_hash_tags_are_limited_apart() {
    let server = redis_support::server();
    let prefix = redis_support::key("keyed-fleet-bytes");
    let template = RedisLimiter::builder(server.client())
        .key(&prefix)
        .rate(Rate::per_minute(1));
    let app = Router::new().route("/", get(|| async { "hello\n" }));
    let addr = replica(template, Duration::ZERO, app).await;
    each_key_has_its_own_limit(addr, "/", &CONFUSABLE_KEYS).await;
    // Every key has its own limit in Redis, each in its own hash tag.
    let mut connection = server.connection();
    let names: Vec<String> = redis::cmd("KEYS")
        .arg(format!("gate:{{{prefix}:*"))
        .query(&mut connection)
        .unwrap();
    assert_eq!(names.len(), CONFUSABLE_KEYS.len(), "{names:?}");
    for name in &names {
        let tag = &name["gate:{".len()..name.rfind('}').unwrap()];
        assert!(!tag.contains(['{', '}']), "{name}");
    }
}

// The same through the axum example's `/tenant` over Redis (five a second per key, a burst
// of five): a flood of one key that is not UTF-8 leaves another's five untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_axum_examples_tenants_over_redis_keep_byte_keys_apart() {
    let server = redis_support::server();
    let tenants = axum_server::tenant_layer(Some(server.client()));
    let app = Router::new()
        .route("/tenant", get(|| async { "hello, tenant\n" }))
        .layer(tenants);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    for key in [&b"\xff"[..], b"\xfe", b"\xef\xbf\xbd"] {
        let served = {
            let mut served = 0;
            for _ in 0..7 {
                let parts = get_path_as(&client, addr, "/tenant", key).await;
                served += usize::from(parts.status == StatusCode::OK);
            }
            served
        };
        // A sixth may come due while seven are sent.
        assert!(
            (5..=6).contains(&served),
            "key {key:?} has a burst of five of its own: {served}"
        );
    }
}

// Regression: `axum_server` panicked on a bad `--port` or `--redis` (`expect("a redis://
// URL")`), or a flag without its value; a misspelt flag was ignored.
#[test]
fn the_axum_examples_arguments_are_checked_with_messages() {
    let parse = |args: &[&str]| axum_server::Args::parse(args.iter().map(|arg| arg.to_string()));
    let parsed = parse(&["--redis", "redis://127.0.0.1:1/", "--port", "3001"]).unwrap();
    assert_eq!(parsed.port, Some(3001));
    assert_eq!(parsed.redis.as_deref(), Some("redis://127.0.0.1:1/"));
    assert_eq!(parse(&[]).unwrap(), axum_server::Args::default());
    for (args, message) in [
        (&["--port", "abc"][..], "--port takes a port number"),
        (&["--port", "70000"], "--port takes a port number"),
        (&["--redis"], "--redis needs a value"),
        (&["--prot", "3001"], "unknown argument \"--prot\""),
    ] {
        let error = parse(args).unwrap_err();
        assert!(error.starts_with(message), "{args:?}: {error}");
    }
}

// A `--redis` that is no URL, or that no Redis answers, is said so at start, within the
// ping's 2 s; one that answers is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_axum_examples_redis_is_checked_at_start() {
    let error = examples::redis_server::reach("localhost:6379")
        .await
        .unwrap_err();
    assert!(error.starts_with("--redis takes a URL"), "{error}");
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("redis://127.0.0.1:{closed}/");
    let started = Instant::now();
    let error = examples::redis_server::reach(&url).await.unwrap_err();
    assert!(
        error.starts_with(&format!("no Redis answers at {url}")),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        examples::redis_server::reach(&redis_support::server().url())
            .await
            .is_ok()
    );
}
