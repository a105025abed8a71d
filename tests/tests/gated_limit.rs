//! `#[gated(limit = N)]` and `#[gated(gate = G)]` at run time: how many calls run at once,
//! what shares a gate, and what happens when a shared gate closes.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use gate_core::{Gate, gated};

mod support;
use support::InFlight;

static THREE: InFlight = InFlight::new();

#[gated(limit = 3)]
async fn limited(i: usize) -> usize {
    THREE.visit(Duration::from_millis(10)).await;
    i * 2
}

#[tokio::test(start_paused = true)]
async fn a_limit_3_function_called_50_times_at_once_runs_at_most_3() {
    let tasks: Vec<_> = (0..50).map(|i| tokio::spawn(limited(i))).collect();
    let mut sum = 0;
    for task in tasks {
        sum += task.await.unwrap();
    }
    assert_eq!(sum, (0..50).map(|i| i * 2).sum::<usize>());
    assert_eq!(THREE.peak(), 3, "the gate must fill up, and never overflow");
}

static SHARED: Gate = Gate::new(2);
static SHARED_SEEN: InFlight = InFlight::new();

#[gated(gate = SHARED)]
async fn first_user() {
    SHARED_SEEN.visit(Duration::from_millis(5)).await;
}

#[gated(gate = SHARED)]
async fn second_user(label: &str) -> &str {
    SHARED_SEEN.visit(Duration::from_millis(5)).await;
    label
}

#[tokio::test(start_paused = true)]
async fn a_shared_gate_caps_two_functions_together() {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        if i % 2 == 0 {
            tasks.spawn(first_user());
        } else {
            tasks.spawn(async {
                assert_eq!(second_user("x").await, "x");
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(SHARED_SEEN.peak(), 2);
    assert_eq!(SHARED.stats().admitted, 40);
    assert_eq!(SHARED.available_permits(), 2);
}

static LAZY: LazyLock<Gate> = LazyLock::new(|| Gate::new(1));
static LAZY_ARC: LazyLock<Arc<Gate>> = LazyLock::new(|| Arc::new(Gate::new(1)));

#[gated(gate = LAZY)]
async fn through_lazy_lock() -> usize {
    LAZY.available_permits()
}

#[gated(gate = LAZY_ARC)]
async fn through_lazy_arc() -> usize {
    LAZY_ARC.available_permits()
}

#[tokio::test]
async fn lazy_and_arc_gates_hold_a_permit_during_the_body() {
    assert_eq!(through_lazy_lock().await, 0);
    assert_eq!(LAZY.available_permits(), 1);
    assert_eq!(through_lazy_arc().await, 0);
    assert_eq!(LAZY_ARC.available_permits(), 1);
}

/// Reports how many permits of its own gate were free while it ran.
#[gated(limit = 2)]
async fn generic<T: std::fmt::Debug + Send>(value: T, hold: &tokio::sync::Notify) -> String {
    hold.notified().await;
    format!("{value:?}")
}

#[tokio::test]
async fn every_instantiation_of_a_generic_function_shares_one_gate() {
    let hold = tokio::sync::Notify::new();
    let a = tokio_test::task::spawn(generic(1u8, &hold));
    let b = tokio_test::task::spawn(generic("two", &hold));
    let c = tokio_test::task::spawn(generic(3.0f64, &hold));
    let (mut a, mut b, mut c) = (a, b, c);
    assert!(a.poll().is_pending());
    assert!(b.poll().is_pending());
    // `u8`, `&str` and `f64` instantiations: the third waits for a permit of the same gate.
    assert!(c.poll().is_pending());
    hold.notify_waiters();
    assert_eq!(a.poll(), std::task::Poll::Ready("1".to_owned()));
    // `b` was woken by the notification it waited on; `c` now holds `a`'s permit.
    assert!(c.is_woken());
    assert!(c.poll().is_pending(), "c waits on the notification next");
    hold.notify_waiters();
    assert_eq!(b.poll(), std::task::Poll::Ready("\"two\"".to_owned()));
    assert_eq!(c.poll(), std::task::Poll::Ready("3.0".to_owned()));
}

struct Client {
    calls: usize,
    seen: InFlight,
}

impl Client {
    #[gated(limit = 1)]
    async fn get(&self, path: &str) -> String {
        self.seen.visit(Duration::from_millis(1)).await;
        format!("GET {path}")
    }

    #[gated(limit = 1)]
    async fn bump(&mut self) -> usize {
        self.calls += 1;
        tokio::task::yield_now().await;
        self.calls
    }

    #[gated(limit = 1)]
    async fn shared(self: Arc<Self>) -> usize {
        self.seen.visit(Duration::from_millis(1)).await;
        Arc::strong_count(&self)
    }
}

#[tokio::test(start_paused = true)]
async fn methods_keep_their_receivers() {
    let mut client = Client {
        calls: 0,
        seen: InFlight::new(),
    };
    assert_eq!(client.bump().await, 1);
    assert_eq!(client.bump().await, 2);
    let client = Arc::new(client);
    let gets = (0..10).map(|i| {
        let client = Arc::clone(&client);
        tokio::spawn(async move { client.get(&format!("/{i}")).await })
    });
    for (i, get) in gets.enumerate() {
        assert_eq!(get.await.unwrap(), format!("GET /{i}"));
    }
    assert_eq!(client.seen.peak(), 1);
    assert_eq!(Arc::clone(&client).shared().await, 2);
}

static CLOSING: Gate = Gate::new(1);

#[gated(gate = CLOSING)]
async fn on_a_closed_gate() -> u32 {
    7
}

#[tokio::test]
async fn a_closed_shared_gate_panics_naming_the_function() {
    assert_eq!(on_a_closed_gate().await, 7);
    CLOSING.close();
    let panic = tokio::spawn(on_a_closed_gate()).await.unwrap_err();
    let message = panic.into_panic();
    let message = message
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert_eq!(
        message,
        "`#[gated]` function `on_a_closed_gate` could not get a permit: gate closed"
    );
}

#[gated(limit = 1)]
async fn early_exit(fail: bool) -> Result<u32, String> {
    if fail {
        return Err("early".to_owned());
    }
    let n: u32 = "41".parse().map_err(|_| "parse".to_owned())?;
    Ok(n + 1)
}

#[tokio::test]
async fn early_return_and_question_mark_release_the_permit() {
    assert_eq!(early_exit(true).await, Err("early".to_owned()));
    assert_eq!(early_exit(false).await, Ok(42));
    assert_eq!(early_exit(false).await, Ok(42), "the permit came back");
}

fn assert_send<F: std::future::Future + Send>(f: F) -> F {
    f
}

#[tokio::test]
async fn the_generated_future_is_send_when_the_body_is() {
    assert_eq!(assert_send(limited(1)).await, 2);
    assert_eq!(assert_send(early_exit(false)).await, Ok(42));
}
