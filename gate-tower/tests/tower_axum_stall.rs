//! Clients that request a large body and stop reading it, against axum over real TCP on
//! 127.0.0.1: once the layer's body idle timeout has passed, they no longer lock anyone out.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use gate_tower::GateLayer;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, sleep, timeout};

mod bodies;
use bodies::Endless;

const LIMIT: usize = 4;
const IDLE: Duration = Duration::from_secs(1);
/// Small socket buffers, so that a client that stops reading stalls the server quickly.
const SOCKET_BUFFER: u32 = 8 * 1024;

async fn serve(layer: GateLayer) -> SocketAddr {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(SOCKET_BUFFER).unwrap();
    socket.bind((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
    let listener = socket.listen(64).unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route(
            "/download",
            get(|| async { Body::new(Endless(&[b'x'; 64 * 1024])) }),
        )
        .route("/", get(|| async { "hello" }))
        .layer(layer);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Requests the download, reads its first bytes, and then stops reading: the connection
/// stays open.
async fn stall(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(SOCKET_BUFFER).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream
        .write_all(b"GET /download HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0; 64];
    stream.read_exact(&mut head).await.unwrap();
    assert!(head.starts_with(b"HTTP/1.1 200 OK"), "{head:?}");
    stream
}

async fn get_root(addr: SocketAddr) -> StatusCode {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let request = Request::get(format!("http://{addr}/"))
        .body(Empty::new())
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    response.into_body().collect().await.unwrap();
    status
}

// Clients that stopped reading a large body held every permit for as long as they stayed
// connected, and everyone else got 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_reading_do_not_lock_others_out_after_the_idle_time() {
    let layer = GateLayer::new(LIMIT)
        .max_wait(Duration::ZERO)
        .body_idle_timeout(IDLE);
    let addr = serve(layer.clone()).await;

    // No permit can come back before the idle time has passed since the first request.
    let start = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..LIMIT {
        stalled.push(stall(addr).await);
    }
    // While the stalled bodies still hold the permits, others are refused.
    assert_eq!(layer.stats().in_flight, LIMIT);
    assert_eq!(get_root(addr).await, StatusCode::SERVICE_UNAVAILABLE);

    // Once the server has had to stop sending and the idle time has passed, the permits are
    // back, with the stalled connections still open.
    let released = timeout(Duration::from_secs(5), async {
        while layer.stats().in_flight > 0 {
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(released.is_ok(), "still held: {:?}", layer.stats());
    assert!(start.elapsed() >= IDLE);
    for _ in 0..2 * LIMIT {
        assert_eq!(get_root(addr).await, StatusCode::OK);
    }

    // The stalled downloads go on without their permits once their clients read again.
    let mut more = vec![0; 256 * 1024];
    for stream in &mut stalled {
        stream.read_exact(&mut more).await.unwrap();
    }
    assert_eq!(layer.stats().in_flight, 0);
}
