//! `#[gated]` over an admission of one's own: a toy source that counts whom it admits and
//! records what each permit is told, shared through `limiter = PATH` and `gate = PATH` with no
//! change to the macro. Each attempt of a retried call is reported through its permit; a call
//! without a policy, and a call dropped mid-attempt, report nothing.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use gate_core::{
    AcquireError, Admission, Backpressure, Elapsed, Gate, Outcome, Permit, Report, WaitLimits,
    gated,
};

/// A gate that counts admissions and keeps what its permits are told.
struct Recording {
    gate: Gate,
    admitted: AtomicUsize,
    told: Mutex<Vec<Outcome>>,
}

impl Recording {
    fn new(permits: usize) -> Self {
        Self {
            gate: Gate::new(permits),
            admitted: AtomicUsize::new(0),
            told: Mutex::new(Vec::new()),
        }
    }

    fn take(&self) -> Vec<Outcome> {
        std::mem::take(&mut *self.told.lock().unwrap())
    }
}

/// A permit of [`Recording`]: the gate's, plus where to write what it is told.
struct Recorded<'a> {
    _permit: Permit<'a>,
    told: &'a Mutex<Vec<Outcome>>,
}

impl Report for Recorded<'_> {
    fn finish(self, outcome: Outcome) {
        self.told.lock().unwrap().push(outcome);
    }
}

impl Admission for Recording {
    type Permit<'a> = Recorded<'a>;

    async fn admit_with(&self, limits: WaitLimits) -> Result<Recorded<'_>, AcquireError> {
        let permit = self.gate.admit_with(limits).await?;
        self.admitted.fetch_add(1, Ordering::SeqCst);
        Ok(Recorded {
            _permit: permit,
            told: &self.told,
        })
    }

    fn try_admit(&self) -> Option<Recorded<'_>> {
        let permit = self.gate.try_admit()?;
        self.admitted.fetch_add(1, Ordering::SeqCst);
        Some(Recorded {
            _permit: permit,
            told: &self.told,
        })
    }
}

#[derive(Debug, PartialEq)]
enum ApiError {
    Busy,
    Overloaded,
    TimedOut,
}

impl Backpressure for ApiError {
    fn is_overload(&self) -> bool {
        *self == ApiError::Overloaded
    }

    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

impl From<Elapsed> for ApiError {
    fn from(_: Elapsed) -> Self {
        ApiError::TimedOut
    }
}

static RETRIED: LazyLock<Recording> = LazyLock::new(|| Recording::new(2));
static FAILURES: AtomicU32 = AtomicU32::new(0);

#[gated(limiter = RETRIED, retry = 3, backpressure = true)]
async fn flaky() -> Result<u32, ApiError> {
    match FAILURES.fetch_add(1, Ordering::SeqCst) {
        0 => Err(ApiError::Busy),
        1 => Err(ApiError::Overloaded),
        n => Ok(n),
    }
}

#[tokio::test]
async fn each_attempt_of_a_retried_call_is_admitted_and_reported_by_the_source() {
    assert_eq!(flaky().await, Ok(2));
    assert_eq!(RETRIED.admitted.load(Ordering::SeqCst), 3);
    assert_eq!(
        RETRIED.take(),
        [
            Outcome::Failed,
            Outcome::Overload { retry_after: None },
            Outcome::Success
        ]
    );
    assert_eq!(RETRIED.gate.available_permits(), 2, "every permit released");
}

static TIMED: LazyLock<Recording> = LazyLock::new(|| Recording::new(1));

#[gated(gate = TIMED, retry = 1, timeout = "1s")]
async fn slow() -> Result<(), ApiError> {
    tokio::time::sleep(Duration::from_secs(5)).await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_is_reported_as_timed_out_through_gate_too() {
    assert_eq!(slow().await, Err(ApiError::TimedOut));
    assert_eq!(TIMED.admitted.load(Ordering::SeqCst), 2);
    assert_eq!(TIMED.take(), [Outcome::TimedOut, Outcome::TimedOut]);
}

static PLAIN: LazyLock<Recording> = LazyLock::new(|| Recording::new(1));

#[gated(limiter = PLAIN)]
async fn plain(x: u32) -> u32 {
    assert_eq!(
        PLAIN.gate.available_permits(),
        0,
        "the permit is held in the body"
    );
    x + 1
}

#[tokio::test]
async fn without_a_policy_the_permit_is_held_for_the_body_and_dropped_unreported() {
    assert_eq!(plain(1).await, 2);
    assert_eq!(plain(2).await, 3);
    assert_eq!(PLAIN.admitted.load(Ordering::SeqCst), 2);
    assert_eq!(PLAIN.take(), [], "nothing says whether the call succeeded");
    assert_eq!(PLAIN.gate.available_permits(), 1);
}

static CANCELLED: LazyLock<Recording> = LazyLock::new(|| Recording::new(1));

#[gated(limiter = CANCELLED, retry = 2)]
async fn endless() -> Result<(), ApiError> {
    std::future::pending::<()>().await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_mid_attempt_reports_nothing_and_frees_its_permit() {
    let dropped = tokio::time::timeout(Duration::from_secs(1), endless()).await;
    assert!(dropped.is_err());
    assert_eq!(CANCELLED.admitted.load(Ordering::SeqCst), 1);
    assert_eq!(CANCELLED.take(), []);
    assert_eq!(CANCELLED.gate.available_permits(), 1);
}
