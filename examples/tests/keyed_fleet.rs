//! Two replicas of an axum server over 127.0.0.1, each with its own `KeyedGateLayer` over
//! its own `RedisKeyedLimiter`, sharing per-tenant limits through one redis-server of the
//! test's own: a flooding API key gets the fleet's quota once, not once per replica, and is
//! told so with `429` and the RateLimit fields, while another key's paced requests are all
//! served; a key's concurrency limit holds across both replicas.

#[path = "../../gate-redis/tests/support/mod.rs"]
mod redis_support;

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
    let render = |key: &HeaderValue| String::from_utf8_lossy(key.as_bytes()).into_owned();
    let tenants = RedisKeyedLimiter::builder_with(template, render)
        .build()
        .unwrap();
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
async fn get_as(client: &HttpClient, addr: SocketAddr, key: &str) -> http::response::Parts {
    let request = Request::get(format!("http://{addr}/"))
        .header("x-api-key", key)
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
                    let parts = get_as(&client, replicas[i % 2], "flood").await;
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
        paced.push(get_as(&client, replicas[i % 2], "paced").await);
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
            tokio::spawn(async move { get_as(&client, replicas[i % 2], "busy").await.status })
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
