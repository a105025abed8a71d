//! `GateLayer` under a tonic server far past its capacity, over real TCP on 127.0.0.1: one
//! channel, many concurrent unary calls, and no error but `RESOURCE_EXHAUSTED`.
//!
//! The server keeps HTTP/2's default connection window of 64 KiB rather than hyper's 1 MiB:
//! h2's budget for small DATA frames is half the window, so a leak of it shows within
//! seconds instead of minutes.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use gate_tower::GateLayer;
use http::uri::PathAndQuery;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;
use tower::{Service, service_fn};

/// The one message of the `Echo` service.
#[derive(Clone, PartialEq, prost::Message)]
struct Message {
    #[prost(bytes = "vec", tag = "1")]
    payload: Vec<u8>,
}

const SERVICE: &str = "gate.test.Echo";
const SAY: &str = "/gate.test.Echo/Say";

/// `Say` echoes its message after a short pause, as a handler that does some work.
#[derive(Clone)]
struct Echo;

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
        Box::pin(async move {
            let say = service_fn(|request: tonic::Request<Message>| async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                Ok::<_, Status>(tonic::Response::new(request.into_inner()))
            });
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Message, Message>::default());
            Ok(grpc.unary(say, request).await)
        })
    }
}

/// HTTP/2's own default connection window.
const WINDOW: u32 = 65_535;

async fn serve(layer: GateLayer) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        Server::builder()
            .initial_connection_window_size(WINDOW)
            .layer(layer)
            .add_service(Echo)
            .serve_with_incoming(incoming),
    );
    addr
}

async fn say(channel: Channel, payload: Vec<u8>) -> Result<Message, Status> {
    let mut client = tonic::client::Grpc::new(channel);
    client
        .ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let response = client
        .unary(
            tonic::Request::new(Message { payload }),
            PathAndQuery::from_static(SAY),
            ProstCodec::<Message, Message>::default(),
        )
        .await?;
    Ok(response.into_inner())
}

/// What a load run saw.
#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    exhausted: u64,
    other: Vec<Status>,
}

// Refusals dropped the request body before the client's END_STREAM; the DATA frames still
// on their way were never read, h2 never gave back what it charged for them, and once a
// connection's budget was spent it sent GOAWAY(ENHANCE_YOUR_CALM, "too_many_data_frames"),
// failing every call on the channel, admitted ones too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_busy_channel_sees_no_error_but_resource_exhausted() {
    const LIMIT: usize = 4;
    // Sixteen times as many callers as permits, each calling again as soon as it is answered.
    const CALLERS: usize = 16 * LIMIT;
    const RUN: Duration = Duration::from_secs(5);
    let layer = GateLayer::new(LIMIT).max_wait(Duration::ZERO);
    let addr = serve(layer.clone()).await;
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    let deadline = Instant::now() + RUN;
    let mut callers = JoinSet::new();
    for caller in 0..CALLERS {
        let channel = channel.clone();
        callers.spawn(async move {
            let mut tally = Tally::default();
            // Under h2's 256-byte threshold for a small DATA frame, as most gRPC messages are.
            let payload = vec![caller as u8; 100];
            while Instant::now() < deadline && tally.other.len() < 4 {
                match say(channel.clone(), payload.clone()).await {
                    Ok(message) => {
                        assert_eq!(message.payload, payload);
                        tally.ok += 1;
                    }
                    Err(status) if status.code() == Code::ResourceExhausted => tally.exhausted += 1,
                    Err(status) => tally.other.push(status),
                }
            }
            tally
        });
    }
    let mut total = Tally::default();
    for tally in callers.join_all().await {
        total.ok += tally.ok;
        total.exhausted += tally.exhausted;
        total.other.extend(tally.other);
    }
    let seen = format!(
        "{} answered, {} refused, {} other errors",
        total.ok,
        total.exhausted,
        total.other.len()
    );
    assert!(
        total.other.is_empty(),
        "{seen}: {:?}",
        &total.other[..total.other.len().min(3)]
    );
    // The run did overload the server, and still served.
    assert!(total.exhausted > total.ok && total.ok > 0, "{seen}");
}
