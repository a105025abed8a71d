//! Run with: cargo run --example tonic_server
//!
//! A gRPC server behind a `GateLayer`, with a hand-written service and client (a hand-derived
//! `prost::Message`, so no `protoc` and no build script). At most 4 calls run at once, up to 4
//! more wait for at most 300 ms; every other call gets `RESOURCE_EXHAUSTED`.
//!
//! It serves `gate.example.Greeter/Greet` on 127.0.0.1:50051 until stopped. With `--smoke` it
//! serves on a free port, makes 30 concurrent calls with its own client, prints what happened
//! and exits.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use gate_tower::GateLayer;
use http::uri::PathAndQuery;
use tokio::task::JoinSet;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;
use tower::{Service, service_fn};

/// Request and reply of `Greet`, as `protoc` would have generated them from
/// `message Greeting { string name = 1; }`.
#[derive(Clone, PartialEq, prost::Message)]
struct Greeting {
    #[prost(string, tag = "1")]
    name: String,
}

const GREET: &str = "/gate.example.Greeter/Greet";

/// The server side of `gate.example.Greeter`, written by hand: routes `Greet` to a
/// 100 ms handler that records how many calls run at once.
#[derive(Clone, Default)]
struct Greeter {
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
}

impl NamedService for Greeter {
    const NAME: &'static str = "gate.example.Greeter";
}

impl Service<http::Request<Body>> for Greeter {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let greeter = self.clone();
        Box::pin(async move {
            if request.uri().path() != GREET {
                return Ok(Status::unimplemented(request.uri().path().to_owned()).into_http());
            }
            let greet = service_fn(move |request: tonic::Request<Greeting>| {
                let greeter = greeter.clone();
                async move {
                    let now = greeter.now.fetch_add(1, Ordering::SeqCst) + 1;
                    greeter.max.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    greeter.now.fetch_sub(1, Ordering::SeqCst);
                    let name = request.into_inner().name;
                    Ok::<_, Status>(tonic::Response::new(Greeting {
                        name: format!("hello, {name}"),
                    }))
                }
            });
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Greeting, Greeting>::default());
            Ok(grpc.unary(greet, request).await)
        })
    }
}

/// The client side of `Greet`, written by hand.
async fn greet(channel: Channel, name: String) -> Result<String, Status> {
    let mut client = tonic::client::Grpc::new(channel);
    client
        .ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let reply = client
        .unary(
            tonic::Request::new(Greeting { name }),
            PathAndQuery::from_static(GREET),
            ProstCodec::<Greeting, Greeting>::default(),
        )
        .await?;
    Ok(reply.into_inner().name)
}

#[tokio::main]
async fn main() {
    let smoke = std::env::args().any(|arg| arg == "--smoke");
    let layer = GateLayer::new(4)
        .max_wait(Duration::from_millis(300))
        .max_waiters(4);
    let greeter = Greeter::default();
    let server = Server::builder()
        .layer(layer.clone())
        .add_service(greeter.clone());

    if !smoke {
        tracing_subscriber::fmt().init();
        let addr: SocketAddr = "127.0.0.1:50051".parse().unwrap();
        println!("serving gate.example.Greeter on {addr}");
        server.serve(addr).await.unwrap();
        return;
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(server.serve_with_incoming(incoming));
    println!("smoke run against gRPC server at {addr}");

    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut calls = JoinSet::new();
    for i in 0..30 {
        calls.spawn(greet(channel.clone(), format!("caller {i}")));
    }
    let (mut ok, mut exhausted) = (0, 0);
    for result in calls.join_all().await {
        match result {
            Ok(reply) => {
                assert!(reply.starts_with("hello, caller "));
                ok += 1;
            }
            Err(status) if status.code() == Code::ResourceExhausted => exhausted += 1,
            Err(status) => panic!("unexpected status: {status:?}"),
        }
    }
    let max = greeter.max.load(Ordering::SeqCst);
    println!(
        "30 concurrent calls: {ok} succeeded, {exhausted} got RESOURCE_EXHAUSTED; \
         at most {max} ran at once (limit 4)"
    );
    let stats = layer.stats();
    println!(
        "gate: admitted {}, refused {} (queue full) + {} (waited too long)",
        stats.admitted, stats.rejected, stats.timed_out
    );
    assert!(max <= 4);
    assert_eq!(ok + exhausted, 30);
    assert!(ok >= 4);
}
