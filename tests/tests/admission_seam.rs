//! The admission seam: a source of permits written here, knowing nothing of gate-macros or
//! gate-tower, works with `#[gated(limiter = X)]`, `GateLayer::with_admission`, `Batch` and
//! `Retry::call`, and learns how every attempt ended through its permits.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use gate_core::Batch;
use gate_core::{
    AcquireError, Admission, Gate, Outcome, OwnedAdmission, OwnedPermit, Permit, Report, Retry,
    Stats, WaitLimits, gated,
};
use gate_tower::GateLayer;
use http::{Request, Response, StatusCode};
use tower::{Layer, ServiceExt, service_fn};

/// A toy source: a gate that counts what it admits, what it refuses and how attempts ended.
#[derive(Debug)]
struct Counting {
    gate: Arc<Gate>,
    admitted: AtomicUsize,
    ended: Arc<Mutex<Vec<Outcome>>>,
    pushbacks: Arc<Mutex<Vec<Duration>>>,
}

impl Counting {
    fn new(limit: usize) -> Self {
        Self {
            gate: Arc::new(Gate::new(limit)),
            admitted: AtomicUsize::new(0),
            ended: Arc::default(),
            pushbacks: Arc::default(),
        }
    }

    fn admitted(&self) -> usize {
        self.admitted.load(Ordering::SeqCst)
    }

    fn ended(&self) -> Vec<Outcome> {
        self.ended.lock().unwrap().clone()
    }

    fn counted<P>(&self, permit: P) -> Counted<P> {
        self.admitted.fetch_add(1, Ordering::SeqCst);
        Counted {
            _permit: permit,
            ended: Arc::clone(&self.ended),
            pushbacks: Arc::clone(&self.pushbacks),
        }
    }
}

/// A permit of [`Counting`]: the gate's, and where to write how the attempt ended.
#[derive(Debug)]
struct Counted<P> {
    _permit: P,
    ended: Arc<Mutex<Vec<Outcome>>>,
    pushbacks: Arc<Mutex<Vec<Duration>>>,
}

impl<P> Report for Counted<P> {
    fn finish(self, outcome: Outcome) {
        self.ended.lock().unwrap().push(outcome);
    }

    fn pushback(&self, retry_after: Duration) {
        self.pushbacks.lock().unwrap().push(retry_after);
    }
}

impl Admission for Counting {
    type Permit<'a> = Counted<Permit<'a>>;

    async fn admit_with(&self, limits: WaitLimits) -> Result<Self::Permit<'_>, AcquireError> {
        let permit = self.gate.acquire_with(1, limits).await?;
        Ok(self.counted(permit))
    }

    fn try_admit(&self) -> Option<Self::Permit<'_>> {
        self.gate.try_acquire_uncontended().map(|p| self.counted(p))
    }

    fn capacity(&self) -> Option<usize> {
        Some(self.gate.limit())
    }

    fn snapshot(&self) -> Option<Stats> {
        Some(self.gate.stats())
    }
}

impl OwnedAdmission for Counting {
    type OwnedPermit = Counted<OwnedPermit>;

    async fn admit_owned_with(
        self: Arc<Self>,
        limits: WaitLimits,
    ) -> Result<Self::OwnedPermit, AcquireError> {
        let permit = Arc::clone(&self.gate).acquire_owned_with(1, limits).await?;
        Ok(self.counted(permit))
    }

    fn try_admit_owned(self: &Arc<Self>) -> Option<Self::OwnedPermit> {
        let permit = self.gate.try_acquire_owned_uncontended()?;
        Some(self.counted(permit))
    }
}

#[tokio::test(start_paused = true)]
async fn retry_call_admits_each_attempt_and_reports_how_it_ended() {
    let source = Counting::new(2);
    let policy = Retry::fixed(2, Duration::from_millis(10));
    let mut calls = 0;
    let answer = policy
        .call(&source, || {
            calls += 1;
            let n = calls;
            async move { if n < 3 { Err("busy") } else { Ok(n) } }
        })
        .await;
    assert_eq!(answer.ok(), Some(3));
    assert_eq!(source.admitted(), 3);
    assert_eq!(
        source.ended(),
        [Outcome::Failed, Outcome::Failed, Outcome::Success]
    );
    assert_eq!(source.gate.available_permits(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_batch_reads_its_capacity_and_stats() {
    let source = Counting::new(3);
    let peak = AtomicUsize::new(0);
    let running = AtomicUsize::new(0);
    let report = Batch::new(&source)
        .run(0..20u32, |n| {
            let (peak, running) = (&peak, &running);
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, Infallible>(n)
            }
        })
        .await;
    assert_eq!(report.summary.succeeded, 20);
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    assert_eq!(source.admitted(), 20);
    assert_eq!(report.summary.gate.map(|stats| stats.admitted), Some(20));
}

static TOY: LazyLock<Counting> = LazyLock::new(|| Counting::new(1));

#[gated(limiter = TOY, retry = 1, wait = "10ms")]
async fn flaky(fail: bool) -> Result<u32, &'static str> {
    if fail { Err("no") } else { Ok(7) }
}

#[tokio::test(start_paused = true)]
async fn gated_draws_from_the_source_and_reports_each_attempt() {
    assert_eq!(flaky(false).await, Ok(7));
    assert_eq!(flaky(true).await, Err("no"));
    assert_eq!(TOY.admitted(), 3);
    assert_eq!(
        TOY.ended(),
        [Outcome::Success, Outcome::Failed, Outcome::Failed]
    );
}

#[tokio::test(start_paused = true)]
async fn a_layer_over_the_source_limits_and_reports_answers() {
    let source = Arc::new(Counting::new(1));
    let layer = GateLayer::with_admission(Arc::clone(&source)).max_wait(Duration::ZERO);
    let service = layer.layer(service_fn(|request: Request<String>| async move {
        let status = match request.body().as_str() {
            "busy" => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::OK,
        };
        let response = Response::builder()
            .status(status)
            .header("retry-after", "2")
            .body(String::new())
            .unwrap();
        Ok::<_, Infallible>(response)
    }));

    let ok = service
        .clone()
        .oneshot(Request::new("hi".into()))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    drop(ok);
    let busy = service
        .clone()
        .oneshot(Request::new("busy".into()))
        .await
        .unwrap();
    assert_eq!(busy.status(), StatusCode::TOO_MANY_REQUESTS);
    // The pushback is passed on with the head, before the body ends.
    assert_eq!(*source.pushbacks.lock().unwrap(), [Duration::from_secs(2)]);

    // The permit is held by the streaming body: a second request is refused.
    let refused = service
        .clone()
        .oneshot(Request::new("hi".into()))
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    drop(busy);
    assert_eq!(
        source.ended(),
        [
            Outcome::Success,
            Outcome::Overload {
                retry_after: Some(Duration::from_secs(2))
            }
        ]
    );
    assert_eq!(source.admitted(), 2);
    let stats = layer.stats();
    assert_eq!((stats.admitted, stats.rejected, stats.in_flight), (2, 1, 0));
    assert_eq!(layer.gate().map(Gate::limit), None);
}
