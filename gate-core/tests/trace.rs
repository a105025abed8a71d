//! With the `tracing` feature, a caller that queues gets a `gate.wait` span with its gate's
//! name, permits, outcome and time waited; one admitted at once gets none; retries are
//! events with their attempt number and delay. Read through a small capturing layer.
#![cfg(feature = "tracing")]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gate_core::{AcquireError, Gate, Retry};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span or event as captured: its name, level and fields (values as `Debug` text).
#[derive(Debug, Clone, Default)]
struct Captured {
    name: String,
    level: String,
    fields: BTreeMap<String, String>,
    closed: bool,
}

impl Visit for Captured {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.fields
            .insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.fields
            .insert(field.name().to_owned(), value.to_owned());
    }
}

#[derive(Clone, Default)]
struct Capture {
    spans: Arc<Mutex<BTreeMap<u64, Captured>>>,
    events: Arc<Mutex<Vec<Captured>>>,
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut span = Captured {
            name: attrs.metadata().name().to_owned(),
            level: attrs.metadata().level().to_string(),
            ..Captured::default()
        };
        attrs.record(&mut span);
        self.spans.lock().unwrap().insert(id.into_u64(), span);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some(span) = self.spans.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(span);
        }
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut captured = Captured {
            name: event.metadata().name().to_owned(),
            level: event.metadata().level().to_string(),
            ..Captured::default()
        };
        event.record(&mut captured);
        self.events.lock().unwrap().push(captured);
    }

    fn on_close(&self, id: Id, _: Context<'_, S>) {
        if let Some(span) = self.spans.lock().unwrap().get_mut(&id.into_u64()) {
            span.closed = true;
        }
    }
}

fn capture() -> (Capture, tracing::subscriber::DefaultGuard) {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    (capture, tracing::subscriber::set_default(subscriber))
}

fn waits(capture: &Capture) -> Vec<Captured> {
    let spans = capture.spans.lock().unwrap();
    spans
        .values()
        .filter(|s| s.name == "gate.wait")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_caller_that_queues_gets_a_wait_span_with_its_outcome() {
    let (capture, _guard) = capture();
    let gate = Gate::builder(1)
        .name("openai")
        .max_wait(Duration::from_secs(1))
        .build()
        .unwrap();
    let held = gate.acquire().await.unwrap();
    assert!(waits(&capture).is_empty(), "the fast path makes no span");

    let mut waiter = tokio_test::task::spawn(gate.acquire_many(1));
    assert!(waiter.poll().is_pending());
    tokio::time::advance(Duration::from_millis(250)).await;
    drop(held);
    let permit = waiter.await.unwrap();

    let spans = waits(&capture);
    assert_eq!(spans.len(), 1, "{spans:?}");
    let span = &spans[0];
    assert_eq!(span.level, "DEBUG");
    assert!(span.closed);
    assert_eq!(span.fields["gate.name"], "openai");
    assert_eq!(span.fields["permits"], "1");
    assert_eq!(span.fields["outcome"], "admitted");
    assert_eq!(span.fields["waited"], "250ms");

    // A second waiter times out; a third is dropped while it waits.
    let refused = gate.acquire().await.unwrap_err();
    assert_eq!(refused, AcquireError::TimedOut);
    let mut dropped = tokio_test::task::spawn(gate.acquire());
    assert!(dropped.poll().is_pending());
    drop(dropped);
    drop(permit);

    let outcomes: Vec<_> = waits(&capture)
        .iter()
        .map(|s| (s.fields["outcome"].clone(), s.closed))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("admitted".to_owned(), true),
            ("timed_out".to_owned(), true),
            ("cancelled".to_owned(), true)
        ]
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_unnamed_gate_spans_without_a_name() {
    let (capture, _guard) = capture();
    let gate = Gate::new(0);
    let mut waiter = tokio_test::task::spawn(gate.acquire());
    assert!(waiter.poll().is_pending());
    gate.close();
    assert_eq!(waiter.await.unwrap_err(), AcquireError::Closed);
    let spans = waits(&capture);
    assert_eq!(spans.len(), 1);
    assert!(!spans[0].fields.contains_key("gate.name"));
    assert_eq!(spans[0].fields["outcome"], "closed");
}

#[derive(Debug)]
struct Busy;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retries_are_debug_events_with_attempt_and_delay() {
    let (capture, _guard) = capture();
    let gate = Gate::new(1);
    let policy = Retry::fixed(2, Duration::from_millis(40));
    let result: Result<(), _> = policy.call(&gate, || async { Err(Busy) }).await;
    assert!(result.is_err());
    let events = capture.events.lock().unwrap().clone();
    let seen: Vec<_> = events
        .iter()
        .map(|e| {
            assert_eq!(e.level, "DEBUG", "{e:?}");
            (
                e.fields["attempt"].clone(),
                e.fields.get("delay").cloned(),
                e.fields["outcome"].clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "1".to_owned(),
                Some("40ms".to_owned()),
                "retried".to_owned()
            ),
            (
                "2".to_owned(),
                Some("40ms".to_owned()),
                "retried".to_owned()
            ),
            ("3".to_owned(), None, "gave_up".to_owned()),
        ]
    );
}

/// One call at a time, through the function's own gate.
#[cfg(feature = "macros")]
#[gate_core::gated(limit = 1)]
async fn one_at_a_time(wait: Duration) {
    tokio::time::sleep(wait).await;
}

#[cfg(feature = "macros")]
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_gated_function_s_own_gate_is_named_after_its_path() {
    let (capture, _guard) = capture();
    let first = one_at_a_time(Duration::from_millis(30));
    let second = one_at_a_time(Duration::ZERO);
    tokio::join!(first, second);
    let spans = waits(&capture);
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(spans[0].fields["gate.name"], "trace::one_at_a_time");
    assert_eq!(spans[0].fields["waited"], "30ms");
}
