//! `GateLayer` under a tonic server, end to end over real TCP on 127.0.0.1.
//!
//! The service and client are written by hand around tonic's `Grpc` helpers, with a
//! hand-derived `prost::Message`, so no `protoc` and no build script are needed.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use gate_tower::GateLayer;
use http::uri::PathAndQuery;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;
use tower::{Service, service_fn};

mod support;
use support::InFlight;

/// The one message of the `Echo` service.
#[derive(Clone, PartialEq, prost::Message)]
struct Message {
    #[prost(uint64, tag = "1")]
    id: u64,
}

const SERVICE: &str = "gate.test.Echo";
const SAY: &str = "/gate.test.Echo/Say";

/// A hand-written tonic service: `Say` echoes its message after `go` turns true.
#[derive(Clone)]
struct Echo {
    tracker: Arc<InFlight>,
    go: watch::Receiver<bool>,
}

impl NamedService for Echo {
    const NAME: &'static str = SERVICE;
}

impl Service<http::Request<Body>> for Echo {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let echo = self.clone();
        Box::pin(async move {
            if request.uri().path() != SAY {
                return Ok(Status::unimplemented(request.uri().path().to_owned()).into_http());
            }
            let say = service_fn(move |request: tonic::Request<Message>| {
                let Echo { tracker, mut go } = echo.clone();
                async move {
                    tracker.enter();
                    go.wait_for(|go| *go).await.expect("test still running");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    tracker.leave();
                    Ok::<_, Status>(tonic::Response::new(request.into_inner()))
                }
            });
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Message, Message>::default());
            Ok(grpc.unary(say, request).await)
        })
    }
}

async fn serve(layer: GateLayer, echo: Echo) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        Server::builder()
            .layer(layer)
            .add_service(echo)
            .serve_with_incoming(incoming),
    );
    addr
}

/// The hand-written client side of `Say`.
async fn say(channel: Channel, id: u64) -> Result<u64, Status> {
    let mut client = tonic::client::Grpc::new(channel);
    client
        .ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let response = client
        .unary(
            tonic::Request::new(Message { id }),
            PathAndQuery::from_static(SAY),
            ProstCodec::<Message, Message>::default(),
        )
        .await?;
    Ok(response.into_inner().id)
}

async fn connect(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_calls_get_resource_exhausted() {
    const LIMIT: usize = 2;
    const CALLS: usize = 20;
    let (go, go_rx) = watch::channel(false);
    let tracker = Arc::new(InFlight::new());
    let layer = GateLayer::new(LIMIT).max_wait(Duration::ZERO);
    let echo = Echo {
        tracker: Arc::clone(&tracker),
        go: go_rx,
    };
    let channel = connect(serve(layer.clone(), echo).await).await;

    let mut calls = JoinSet::new();
    for id in 0..CALLS as u64 {
        calls.spawn(say(channel.clone(), id));
    }
    // The admitted calls wait in the server until every refused one has been answered.
    let mut results = Vec::new();
    while results.len() < CALLS - LIMIT {
        results.push(calls.join_next().await.unwrap().unwrap());
    }
    for result in &results {
        let status = result.as_ref().expect_err("only refusals finish early");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(status.message(), "gate is full");
    }
    go.send(true).unwrap();
    let admitted = calls.join_all().await;
    assert_eq!(admitted.len(), LIMIT);
    assert!(admitted.iter().all(Result::is_ok), "{admitted:?}");
    assert_eq!(tracker.completed(), LIMIT);
    assert_eq!(layer.stats().rejected, (CALLS - LIMIT) as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_calls_all_succeed_within_the_limit() {
    const LIMIT: usize = 3;
    const CALLS: usize = 40;
    let (_go, go_rx) = watch::channel(true);
    let tracker = Arc::new(InFlight::new());
    let layer = GateLayer::new(LIMIT)
        .max_wait(Duration::from_secs(30))
        .max_waiters(CALLS);
    let echo = Echo {
        tracker: Arc::clone(&tracker),
        go: go_rx,
    };
    let channel = connect(serve(layer.clone(), echo).await).await;

    let mut calls = JoinSet::new();
    for id in 0..CALLS as u64 {
        let channel = channel.clone();
        calls.spawn(async move { (id, say(channel, id).await) });
    }
    for (id, result) in calls.join_all().await {
        assert_eq!(result.unwrap(), id);
    }
    let max = tracker.peak();
    assert!(
        max <= LIMIT,
        "{max} calls ran at once; the limit is {LIMIT}"
    );
    assert_eq!(tracker.completed(), CALLS);
    let stats = layer.stats();
    assert_eq!(stats.admitted, CALLS as u64);
    assert_eq!((stats.rejected, stats.timed_out), (0, 0));
}
