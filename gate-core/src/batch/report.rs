//! [`BatchReport`] and [`Summary`]: what a batch returns.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use crate::{RetryError, Stats};

/// Every item's result, in input order, and a [`Summary`] of the run.
///
/// `results[i]` is the outcome of the `i`-th item: its value, or a [`RetryError`] saying how
/// many attempts it made and what ended the last one. One item's failure never hides
/// another's result (Python's `gather(..., return_exceptions=True)`).
#[derive(Debug)]
#[non_exhaustive]
pub struct BatchReport<T, E> {
    /// One result per item, in the order the items came in.
    pub results: Vec<Result<T, RetryError<E>>>,
    /// Counts, timing and the gate's wait-time distribution.
    pub summary: Summary,
}

impl<T, E> BatchReport<T, E> {
    /// Whether every item succeeded.
    pub fn all_succeeded(&self) -> bool {
        self.summary.failed == 0
    }

    /// The successful values, in input order.
    pub fn successes(&self) -> impl Iterator<Item = &T> {
        self.results.iter().filter_map(|r| r.as_ref().ok())
    }

    /// The failures with the index of their item, in input order.
    pub fn failures(&self) -> impl Iterator<Item = (usize, &RetryError<E>)> {
        self.results
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().err().map(|e| (i, e)))
    }

    /// The results alone, in input order.
    pub fn into_results(self) -> Vec<Result<T, RetryError<E>>> {
        self.results
    }
}

/// What a batch did: counts, timing, and the gate's statistics at the end.
///
/// `succeeded + failed == total`, and `attempts == total + retries` unless items were refused
/// by a closed gate before their first attempt. `Display` prints it in two lines:
///
/// ```text
/// api: 100 items in 4.01s (24.9/s): 98 succeeded, 2 failed, 7 retries
///   gate: limit 5, 107 admitted, wait p50 1.98s, p90 3.5s, p99 3.9s, max 4.0s
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Summary {
    /// The batch's label, if it was given one.
    pub label: Option<Cow<'static, str>>,
    /// Items run.
    pub total: usize,
    /// Items whose last attempt succeeded.
    pub succeeded: usize,
    /// Items that gave up.
    pub failed: usize,
    /// Attempts made, first attempts included.
    pub attempts: u64,
    /// Attempts beyond each item's first.
    pub retries: u64,
    /// Wall time from the first item to the last result (tokio's clock, so paused time in
    /// tests gives exact figures).
    pub elapsed: Duration,
    /// The admission's statistics when the batch ended, if it keeps any. They cover the
    /// gate's whole life: give a batch its own gate for figures of that batch alone.
    pub gate: Option<Stats>,
}

impl Summary {
    /// Items finished per second of [`elapsed`](Self::elapsed); zero for an empty or
    /// instant batch.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.total as f64 / secs
        } else {
            0.0
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(label) = &self.label {
            write!(f, "{label}: ")?;
        }
        let items = if self.total == 1 { "item" } else { "items" };
        let retries = if self.retries == 1 {
            "retry"
        } else {
            "retries"
        };
        write!(
            f,
            "{} {items} in {} ({:.1}/s): {} succeeded, {} failed, {} {retries}",
            self.total,
            Seconds(self.elapsed),
            self.rate(),
            self.succeeded,
            self.failed,
            self.retries,
        )?;
        if let Some(stats) = &self.gate {
            let w = &stats.wait;
            write!(
                f,
                "\n  gate: limit {}, {} admitted, wait p50 {}, p90 {}, p99 {}, max {}",
                stats.limit,
                stats.admitted,
                Seconds(w.p50),
                Seconds(w.p90),
                Seconds(w.p99),
                Seconds(w.max),
            )?;
        }
        Ok(())
    }
}

/// A duration printed with a unit that suits its size: `850µs`, `12.5ms`, `4.01s`.
struct Seconds(Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs_f64();
        if self.0.is_zero() {
            f.write_str("0s")
        } else if secs < 1e-3 {
            write!(f, "{:.0}µs", secs * 1e6)
        } else if secs < 1.0 {
            write!(f, "{:.1}ms", secs * 1e3)
        } else {
            write!(f, "{secs:.2}s")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Summary {
        Summary {
            label: Some("api".into()),
            total: 100,
            succeeded: 98,
            failed: 2,
            attempts: 107,
            retries: 7,
            elapsed: Duration::from_millis(4_000),
            gate: None,
        }
    }

    #[test]
    fn display_reads_as_one_line_without_gate_stats() {
        assert_eq!(
            summary().to_string(),
            "api: 100 items in 4.00s (25.0/s): 98 succeeded, 2 failed, 7 retries"
        );
    }

    #[test]
    fn display_adds_the_gate_line() {
        let gate = crate::Gate::new(5);
        drop(gate.try_acquire().unwrap());
        let s = Summary {
            gate: Some(gate.stats()),
            ..summary()
        };
        let text = s.to_string();
        let second = text.lines().nth(1).expect("two lines");
        assert_eq!(
            second,
            "  gate: limit 5, 1 admitted, wait p50 0s, p90 0s, p99 0s, max 0s"
        );
    }

    #[test]
    fn durations_pick_a_readable_unit() {
        let show = |d| Seconds(d).to_string();
        assert_eq!(show(Duration::from_micros(850)), "850µs");
        assert_eq!(show(Duration::from_micros(12_500)), "12.5ms");
        assert_eq!(show(Duration::from_millis(4_010)), "4.01s");
    }

    #[test]
    fn rate_of_an_instant_batch_is_zero() {
        let s = Summary {
            elapsed: Duration::ZERO,
            ..summary()
        };
        assert_eq!(s.rate(), 0.0);
    }
}
