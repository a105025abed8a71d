//! [`Gradient`]: a latency-based limit that holds a slowing server at its knee.

use std::time::Duration;

use super::bounds::{Bounds, bounds_setters};
use super::{AdaptiveError, LimitAlgorithm, Sample, check_factor};

/// A latency-based limit in the family of TCP Vegas and Netflix's Gradient2, for servers
/// that queue and slow down instead of refusing.
///
/// Samples are grouped into windows of about one round trip (`limit` samples, at least
/// four). At the end of each window:
///
/// - **Measure.** The window's latency is its *fastest* successful attempt, and the
///   baseline is the fastest window seen: minima are little moved by jitter, whereas a mean
///   compared with a minimum reads jitter as queueing.
/// - **Decide.** If the window's latency is within `tolerance` (1.25 unless set) of the
///   baseline, the server is not queueing: the limit grows by `sqrt(limit)` — but only if
///   the gate was full during the window, so a caller that is itself the bottleneck never
///   inflates the limit. Above the tolerance, the limit is scaled by
///   `tolerance × baseline / latency` (never below half). An overload signal or a timeout in
///   the window multiplies it by 0.9 instead.
/// - **Re-measure the baseline.** Once every `probe_interval` windows (500 unless set) the
///   limit is halved for two windows: the first drains the server's queue, the second
///   measures the unloaded latency, which replaces the baseline. Between probes the baseline
///   only ever falls.
/// - **Zero latencies.** An attempt that took no measurable time (a paused clock in tests, a
///   cached answer, a clock coarser than the call) is faster than the clock can tell. It
///   shows no queueing: a window of only such successes counts as within tolerance, and
///   grows the limit if the gate was full. But it is never the window's latency nor the
///   baseline, against which every later window would look infinitely slow.
///
/// This avoids the known failure modes of its relatives:
///
/// - *Growth without bound under modest overload* (concurrency-limits PR #134): growth needs
///   both a queue-free window and a full gate, and the baseline cannot rise between probes.
/// - *The baseline creeping upward* (Envoy #11579): a baseline re-learnt from loaded windows
///   learns the queue. Here it is only ever re-learnt at half the limit, after a drain.
/// - *Cancellations counted as drops* (concurrency-limits PR #146): cancelled attempts are
///   never samples, and errors that say nothing about load are ignored.
/// - *Growth while app-limited*: see above.
/// - *A zero latency read as the worst queueing*, which halved the limit every window down
///   to the minimum: see above.
///
/// ```
/// use gate_core::adaptive::Gradient;
///
/// let gradient = Gradient::builder().initial(20).max(500).tolerance(1.5).build().unwrap();
/// # let _ = gradient;
/// ```
#[derive(Debug, Clone)]
pub struct Gradient {
    bounds: Bounds,
    tolerance: f64,
    probe_interval: u64,
    limit: f64,
    baseline: Option<Duration>,
    window: Window,
    windows: u64,
    probe: Probe,
}

/// Samples of the current window.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    samples: usize,
    /// The fastest success that took a measurable time.
    fastest: Option<Duration>,
    /// Whether a success took no measurable time.
    instant: bool,
    full: bool,
    dropped: bool,
}

/// Where the baseline probe is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Probe {
    /// Not probing.
    Off,
    /// At half the limit, letting the server's queue drain.
    Draining { saved: f64 },
    /// At half the limit, measuring the unloaded latency.
    Measuring { saved: f64 },
}

impl Gradient {
    /// A gradient limit with the default settings: start at 10, between 1 and 1,000,
    /// tolerance 1.25, a baseline probe every 500 windows.
    pub fn new() -> Self {
        Self::builder().build().expect("the defaults are valid")
    }

    /// Starts configuring a gradient limit.
    pub const fn builder() -> GradientBuilder {
        GradientBuilder {
            bounds: Bounds::DEFAULT,
            tolerance: 1.25,
            probe_interval: 500,
        }
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        let limit = match self.probe {
            Probe::Off => self.limit,
            Probe::Draining { .. } | Probe::Measuring { .. } => self.limit / 2.0,
        };
        self.bounds.permits(limit)
    }

    /// The unloaded latency the limit compares against, once measured.
    pub fn baseline(&self) -> Option<Duration> {
        self.baseline
    }

    fn end_window(&mut self, window: Window) {
        self.windows += 1;
        match self.probe {
            Probe::Draining { saved } => {
                self.probe = Probe::Measuring { saved };
                return;
            }
            Probe::Measuring { saved } => {
                if let Some(fastest) = window.fastest {
                    self.baseline = Some(fastest);
                }
                self.limit = saved;
                self.probe = Probe::Off;
                return;
            }
            Probe::Off => {}
        }
        if window.dropped {
            self.limit *= 0.9;
        } else if let Some(fastest) = window.fastest {
            let baseline = match self.baseline {
                Some(baseline) if baseline <= fastest => baseline,
                _ => {
                    self.baseline = Some(fastest);
                    fastest
                }
            };
            // `fastest` is never zero (see `update`).
            let ratio = baseline.as_secs_f64() * self.tolerance / fastest.as_secs_f64();
            if ratio >= 1.0 {
                self.grow_if(window.full);
            } else {
                self.limit *= ratio.max(0.5);
            }
        } else if window.instant {
            // Successes faster than the clock can tell: no sign of queueing.
            self.grow_if(window.full);
        }
        self.limit = self.bounds.clamp(self.limit);
        if self.probe_interval > 0 && self.windows.is_multiple_of(self.probe_interval) {
            self.probe = Probe::Draining { saved: self.limit };
        }
    }

    /// Grows the limit after a window without queueing, if the gate was full during it.
    fn grow_if(&mut self, full: bool) {
        if full {
            self.limit += self.limit.sqrt().max(1.0);
        }
    }
}

impl Default for Gradient {
    fn default() -> Self {
        Self::new()
    }
}

impl LimitAlgorithm for Gradient {
    fn initial_limit(&self) -> usize {
        self.bounds.initial
    }

    fn update(&mut self, sample: &Sample) -> usize {
        if sample.outcome == crate::Outcome::Failed {
            return self.limit();
        }
        let window = &mut self.window;
        window.samples += 1;
        window.full |= sample.in_flight >= sample.limit;
        if sample.is_drop() {
            window.dropped = true;
        } else if sample.latency.is_zero() {
            window.instant = true;
        } else {
            window.fastest = Some(match window.fastest {
                Some(fastest) => fastest.min(sample.latency),
                None => sample.latency,
            });
        }
        if window.samples >= self.limit().max(4) {
            let window = std::mem::take(&mut self.window);
            self.end_window(window);
        }
        self.limit()
    }
}

/// Configures a [`Gradient`] limit; [`build`](Self::build) validates it.
#[derive(Debug, Clone, Copy)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct GradientBuilder {
    bounds: Bounds,
    tolerance: f64,
    probe_interval: u64,
}

impl GradientBuilder {
    bounds_setters!();

    /// How much slower than the baseline a window may be before the limit shrinks (1.25
    /// unless set; from 1 to 10). Higher keeps more requests queued at the server.
    pub const fn tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Windows between baseline probes (500 unless set); zero never probes, so the
    /// baseline only ever falls.
    pub const fn probe_interval(mut self, windows: u64) -> Self {
        self.probe_interval = windows;
        self
    }

    /// Validates the settings: `1 <= min <= initial <= max`, `1 <= tolerance <= 10`.
    pub fn build(self) -> Result<Gradient, AdaptiveError> {
        self.bounds.check()?;
        check_factor(self.tolerance, 1.0, 10.0)?;
        Ok(Gradient {
            bounds: self.bounds,
            tolerance: self.tolerance,
            probe_interval: self.probe_interval,
            limit: self.bounds.initial as f64,
            baseline: None,
            window: Window::default(),
            windows: 0,
            probe: Probe::Off,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Outcome;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Feeds one window of `n` full successes with latencies from `latency`.
    fn window(g: &mut Gradient, latency: Duration, full: bool) {
        let limit = g.limit();
        let in_flight = if full { limit } else { limit / 2 };
        for _ in 0..limit.max(4) {
            g.update(&Sample::new(Outcome::Success, latency, in_flight, limit));
        }
    }

    #[test]
    fn grows_while_latency_holds_and_the_gate_is_full() {
        let mut g = Gradient::builder()
            .initial(16)
            .probe_interval(0)
            .build()
            .unwrap();
        window(&mut g, ms(100), true);
        assert_eq!(g.limit(), 20);
        window(&mut g, ms(110), true);
        assert!(g.limit() > 20);
    }

    #[test]
    fn does_not_grow_while_app_limited() {
        let mut g = Gradient::builder()
            .initial(16)
            .probe_interval(0)
            .build()
            .unwrap();
        for _ in 0..50 {
            window(&mut g, ms(100), false);
        }
        assert_eq!(g.limit(), 16);
    }

    #[test]
    fn shrinks_in_proportion_to_queueing() {
        let mut g = Gradient::builder()
            .initial(40)
            .probe_interval(0)
            .build()
            .unwrap();
        window(&mut g, ms(100), false);
        // Twice the baseline: scaled by 1.25 / 2.
        window(&mut g, ms(200), true);
        assert_eq!(g.limit(), 25);
    }

    #[test]
    fn the_baseline_never_creeps_up_between_probes() {
        // Regression (Envoy #11579): a baseline re-learnt under load learns the queue.
        let mut g = Gradient::builder()
            .initial(20)
            .probe_interval(0)
            .build()
            .unwrap();
        window(&mut g, ms(100), true);
        for _ in 0..1000 {
            window(&mut g, ms(200), true);
        }
        assert_eq!(g.baseline(), Some(ms(100)));
        assert!(g.limit() <= 20);
    }

    #[test]
    fn a_probe_halves_the_limit_then_relearns_the_baseline() {
        let mut g = Gradient::builder()
            .initial(20)
            .probe_interval(3)
            .build()
            .unwrap();
        window(&mut g, ms(100), false);
        window(&mut g, ms(100), false);
        window(&mut g, ms(100), false);
        assert_eq!(g.limit(), 10, "probing at half the limit");
        window(&mut g, ms(300), false);
        window(&mut g, ms(150), false);
        assert_eq!(g.baseline(), Some(ms(150)));
        assert_eq!(g.limit(), 20);
    }

    #[test]
    fn zero_latencies_are_not_read_as_queueing() {
        // Regression: a zero latency (paused clock, cached answer, coarse clock) read as the
        // worst queueing and halved the limit every window down to 1.
        let mut g = Gradient::builder()
            .initial(16)
            .probe_interval(0)
            .build()
            .unwrap();
        for _ in 0..20 {
            window(&mut g, Duration::ZERO, false);
        }
        assert_eq!(g.limit(), 16, "app-limited: held");
        assert_eq!(g.baseline(), None);
        window(&mut g, Duration::ZERO, true);
        assert_eq!(g.limit(), 20, "full and not queueing: grown");
    }

    #[test]
    fn one_zero_sample_does_not_poison_the_baseline() {
        // Regression: one zero latency became the baseline, so every later window looked
        // infinitely slow and halved the limit until the next probe.
        let mut g = Gradient::builder()
            .initial(16)
            .probe_interval(0)
            .build()
            .unwrap();
        window(&mut g, ms(100), false);
        g.update(&Sample::new(Outcome::Success, Duration::ZERO, 8, 16));
        for _ in 0..20 {
            window(&mut g, ms(100), false);
        }
        assert_eq!(g.baseline(), Some(ms(100)));
        assert_eq!(g.limit(), 16);
    }

    #[test]
    fn ignores_errors_that_say_nothing_about_load() {
        let mut g = Gradient::builder()
            .initial(8)
            .probe_interval(0)
            .build()
            .unwrap();
        for _ in 0..100 {
            assert_eq!(g.update(&Sample::new(Outcome::Failed, ms(1), 8, 8)), 8);
        }
    }
}
