//! A refused request's body is read to its end, within bounds, before the refusal is
//! answered: at the poll level, on tokio's paused clock.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use gate_tower::GateLayer;
use gate_tower::body::ResponseBody;
use http::header::{EXPECT, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::{Layer, Service, service_fn};

/// A request body that counts the frames taken from it: `chunks` of `size` bytes, all ready,
/// or fed from a channel.
struct Upload {
    taken: Arc<AtomicUsize>,
    source: Source,
}

enum Source {
    Ready { chunks: Option<usize>, size: usize },
    Fed(mpsc::Receiver<Bytes>),
}

impl Upload {
    /// `chunks` ready chunks of `size` bytes; `None`: without end.
    fn ready(chunks: Option<usize>, size: usize) -> (Self, Arc<AtomicUsize>) {
        Self::new(Source::Ready { chunks, size })
    }

    fn new(source: Source) -> (Self, Arc<AtomicUsize>) {
        let taken = Arc::new(AtomicUsize::new(0));
        let upload = Self {
            taken: Arc::clone(&taken),
            source,
        };
        (upload, taken)
    }
}

impl Body for Upload {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        let chunk = match &mut this.source {
            Source::Ready { chunks, size } => match chunks {
                Some(0) => None,
                _ => {
                    if let Some(left) = chunks {
                        *left -= 1;
                    }
                    Some(Bytes::from(vec![0; *size]))
                }
            },
            Source::Fed(rx) => std::task::ready!(rx.poll_recv(cx)),
        };
        if chunk.is_some() {
            this.taken.fetch_add(1, Ordering::SeqCst);
        }
        Poll::Ready(chunk.map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        matches!(
            self.source,
            Source::Ready {
                chunks: Some(0),
                ..
            }
        )
    }
}

/// A service behind a limit-1 layer that waits up to `max_wait`, and the layer.
fn limited(
    max_wait: Duration,
) -> (
    impl Service<Request<Upload>, Response = Response<ResponseBody<String>>, Error = Infallible>,
    GateLayer,
) {
    let layer = GateLayer::new(1).max_wait(max_wait);
    let service = layer.layer(service_fn(|_: Request<Upload>| async {
        Ok::<_, Infallible>(Response::new(String::from("admitted")))
    }));
    (service, layer)
}

#[tokio::test(start_paused = true)]
async fn a_refusal_waits_for_the_rest_of_the_request_body() {
    let (tx, rx) = mpsc::channel(1);
    let (upload, taken) = Upload::new(Source::Fed(rx));
    let (mut service, layer) = limited(Duration::ZERO);
    let _held = layer.gate().unwrap().try_acquire().unwrap();
    let mut refusal = task::spawn(service.call(Request::new(upload)));

    // The client's message is still on its way: the refusal waits for it.
    assert_pending!(refusal.poll());
    tx.send(Bytes::from_static(b"message")).await.unwrap();
    assert!(refusal.is_woken());
    assert_pending!(refusal.poll());
    assert_eq!(taken.load(Ordering::SeqCst), 1);
    // END_STREAM: answered.
    drop(tx);
    assert!(refusal.is_woken());
    let response = assert_ready_ok!(refusal.poll());
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(start_paused = true)]
async fn a_request_body_that_does_not_end_delays_a_refusal_by_100_ms_at_most() {
    let (_tx, rx) = mpsc::channel(1);
    let (upload, _) = Upload::new(Source::Fed(rx));
    let (mut service, layer) = limited(Duration::ZERO);
    let _held = layer.gate().unwrap().try_acquire().unwrap();
    let start = Instant::now();
    let response = service.call(Request::new(upload)).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn a_large_request_body_is_read_up_to_64_kib() {
    let (upload, taken) = Upload::ready(None, 16 * 1024);
    let (mut service, layer) = limited(Duration::ZERO);
    let _held = layer.gate().unwrap().try_acquire().unwrap();
    let response = service.call(Request::new(upload)).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(taken.load(Ordering::SeqCst), 4);

    // Tiny frames stop at 64 of them.
    let (upload, taken) = Upload::ready(None, 1);
    let response = service.call(Request::new(upload)).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(taken.load(Ordering::SeqCst), 64);
}

#[tokio::test(start_paused = true)]
async fn a_request_refused_after_waiting_is_drained_too() {
    let (upload, taken) = Upload::ready(Some(3), 100);
    let (mut service, layer) = limited(Duration::from_secs(1));
    let _held = layer.gate().unwrap().try_acquire().unwrap();
    let start = Instant::now();
    let response = service.call(Request::new(upload)).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(taken.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn an_admitted_request_body_is_left_to_the_inner_service() {
    let (upload, taken) = Upload::ready(Some(3), 100);
    let (mut service, _layer) = limited(Duration::ZERO);
    let response = service.call(Request::new(upload)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(taken.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_request_that_expects_100_continue_is_refused_at_once_unread() {
    let (_tx, rx) = mpsc::channel(1);
    let (upload, taken) = Upload::new(Source::Fed(rx));
    let (mut service, layer) = limited(Duration::ZERO);
    let _held = layer.gate().unwrap().try_acquire().unwrap();
    let mut request = Request::new(upload);
    request
        .headers_mut()
        .insert(EXPECT, HeaderValue::from_static("100-Continue"));
    let mut refusal = task::spawn(service.call(request));
    let response = assert_ready_ok!(refusal.poll());
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(taken.load(Ordering::SeqCst), 0);
}
