//! What holding the permit in the response body costs per response and per frame, the body
//! read to its end as a server sends it: with the reader-idle timer (the default), without it
//! (`body_idle_timeout(Duration::MAX)`, a body that only carries its permit), releasing at the
//! head, and no layer. A unary gRPC-like answer (a data frame, then trailers: the body goes on
//! after its first frame, so it sets a timer) and a 64-frame stream.
//!
//! Run with: cargo bench -p benches --bench body

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::future::poll_fn;
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use gate_tower::GateLayer;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame};
use tokio::runtime::Runtime;
use tower::layer::util::Identity;
use tower::{Layer, Service, ServiceExt, service_fn};

const LIMIT: usize = 64;

/// `data` ready data frames, then trailers if `trailers`.
#[derive(Debug, Clone)]
struct Frames {
    data: usize,
    trailers: bool,
}

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(if self.data > 0 {
            self.data -= 1;
            Some(Ok(Frame::data(Bytes::from_static(b"chunk"))))
        } else if self.trailers {
            self.trailers = false;
            Some(Ok(Frame::trailers(HeaderMap::new())))
        } else {
            None
        })
    }

    fn is_end_stream(&self) -> bool {
        self.data == 0 && !self.trailers
    }
}

/// Drives `iters` requests through `service` one after another, reading each body to its
/// end, and returns the time taken.
async fn drive<S, B>(mut service: S, iters: u64) -> Duration
where
    S: Service<Request<String>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body + Unpin,
    B::Error: std::fmt::Debug,
{
    let start = Instant::now();
    for _ in 0..iters {
        let ready = service.ready().await.unwrap();
        let mut body = ready
            .call(Request::new(String::new()))
            .await
            .unwrap()
            .into_body();
        while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            black_box(frame.unwrap());
        }
    }
    start.elapsed()
}

fn bodies(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    for (name, frames) in [
        (
            "unary",
            Frames {
                data: 1,
                trailers: true,
            },
        ),
        (
            "stream_64",
            Frames {
                data: 64,
                trailers: false,
            },
        ),
    ] {
        let mut group = c.benchmark_group(format!("body_{name}"));
        let service = service_fn(move |_: Request<String>| {
            let frames = frames.clone();
            async move { Ok::<_, Infallible>(Response::new(frames)) }
        });
        let line =
            |group: &mut criterion::BenchmarkGroup<'_, _>, line: &str, rt: &Runtime, layer| {
                group.bench_function(line, |b| {
                    b.iter_custom(|iters| {
                        rt.block_on(drive(GateLayer::layer(&layer, service.clone()), iters))
                    });
                });
            };
        group.bench_function("no_layer", |b| {
            b.iter_custom(|iters| {
                rt.block_on(drive(Identity::new().layer(service.clone()), iters))
            });
        });
        line(
            &mut group,
            "gate_layer_release_at_head",
            &rt,
            GateLayer::new(LIMIT).hold_until_body_end(false),
        );
        line(
            &mut group,
            "gate_layer_no_idle_timer",
            &rt,
            GateLayer::new(LIMIT).body_idle_timeout(Duration::MAX),
        );
        line(&mut group, "gate_layer", &rt, GateLayer::new(LIMIT));
        group.finish();
    }
}

criterion_group!(benches, bodies);
criterion_main!(benches);
