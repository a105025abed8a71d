//! A picture of a run (`--plot run.svg` in the demo and `llm_batch`): over time, for each
//! run, the concurrency limit and the requests in flight, the requests and tokens a minute
//! against the server's limits (dashed), and the 429s as marks.
//!
//! [`record`] samples a run while it goes: every [`EVERY`] it reads the run's own counters
//! (a [`Reading`]: totals and gauges, never one entry per request), so a timeline costs a
//! few atomic loads per sample and its memory is bounded by [`MAX_SAMPLES`] whatever the
//! run's length (a long run keeps every second sample and samples half as often). Rates
//! are worked out from the recorded totals when the picture is drawn ([`write()`]), with
//! plotters' SVG backend.

mod draw;

use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

/// How often [`record`] samples a run: every 100 ms.
pub const EVERY: Duration = Duration::from_millis(100);

/// The most samples a [`Timeline`] keeps: past it, every second one is dropped and the
/// sampling interval doubles.
pub const MAX_SAMPLES: usize = 2_048;

/// What a run's counters say at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reading {
    /// The concurrency limit in force (a fixed gate's, or what an adaptive limit is at
    /// now); `None` for a run with none.
    pub limit: Option<usize>,
    /// Requests on the wire now, if the run knows (a quota shared through Redis holds its
    /// permits there).
    pub in_flight: Option<usize>,
    /// Requests sent so far (every attempt).
    pub requests: u64,
    /// Tokens the server reported as used so far (`usage.total_tokens`).
    pub tokens: u64,
    /// 429 answers so far.
    pub refused: u64,
}

/// One sample: a reading and when it was taken, from the start of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Time since the run started.
    pub at: Duration,
    /// What the counters said.
    pub reading: Reading,
}

/// A run's samples, at most [`MAX_SAMPLES`], in time order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    every: Duration,
    samples: Vec<Sample>,
}

impl Default for Timeline {
    fn default() -> Self {
        Self::new(EVERY)
    }
}

impl Timeline {
    /// An empty timeline to be sampled every `every` (at least a millisecond).
    pub fn new(every: Duration) -> Self {
        Self {
            every: every.max(Duration::from_millis(1)),
            samples: Vec::new(),
        }
    }

    /// Adds a sample taken `at` after the start (not before the last one). At
    /// [`MAX_SAMPLES`], every second sample is dropped first and the interval doubles; the
    /// totals of those kept are exact, so rates over them stay right.
    pub fn push(&mut self, at: Duration, reading: Reading) {
        let at = self.samples.last().map_or(at, |last| at.max(last.at));
        if self.samples.len() >= MAX_SAMPLES {
            let mut index = 0;
            self.samples.retain(|_| {
                index += 1;
                index % 2 == 1
            });
            self.every = self.every.saturating_mul(2);
        }
        self.samples.push(Sample { at, reading });
    }

    /// The samples, in time order.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// The interval between samples now.
    pub fn every(&self) -> Duration {
        self.every
    }

    /// How long the run took, from its first sample to its last.
    pub fn duration(&self) -> Duration {
        self.samples.last().map_or(Duration::ZERO, |last| last.at)
    }
}

/// Runs `run` to its end, reading `read` at its start, every [`EVERY`] (less often past
/// [`MAX_SAMPLES`]) and at its end; returns its output and the timeline.
pub async fn record<F, R>(mut read: R, run: F) -> (F::Output, Timeline)
where
    F: Future,
    R: FnMut() -> Reading,
{
    let mut timeline = Timeline::new(EVERY);
    let start = Instant::now();
    timeline.push(Duration::ZERO, read());
    let mut run = pin!(run);
    let mut every = timeline.every();
    let mut ticks = ticker(start, every);
    loop {
        tokio::select! {
            biased;
            output = &mut run => {
                timeline.push(start.elapsed(), read());
                return (output, timeline);
            }
            _ = ticks.tick() => {
                timeline.push(start.elapsed(), read());
                if timeline.every() != every {
                    every = timeline.every();
                    ticks = ticker(Instant::now(), every);
                }
            }
        }
    }
}

fn ticker(from: Instant, every: Duration) -> tokio::time::Interval {
    let mut ticks = tokio::time::interval_at(from + every, every);
    // A late tick is taken late, not made up for with a burst of samples.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks
}

/// What the server allows, for the dashed lines; `None` where it is not known (a real
/// endpoint's concurrency, say).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Requests it serves at once.
    pub concurrency: Option<usize>,
    /// Requests a minute.
    pub requests_per_min: Option<f64>,
    /// Tokens a minute.
    pub tokens_per_min: Option<f64>,
}

/// One run to draw: a row of the picture.
#[derive(Debug, Clone)]
pub struct Run {
    /// Its name, the row's title (the demo's strategy).
    pub label: String,
    /// The server's limits during it.
    pub limits: Limits,
    /// What was recorded.
    pub timeline: Timeline,
}

/// The picture could not be written.
#[derive(Debug)]
#[non_exhaustive]
pub enum PlotError {
    /// The file's directory does not exist (checked before a run, so that a long run is
    /// not lost to a typo).
    NoDirectory {
        /// The file asked for.
        path: PathBuf,
    },
    /// Writing the file failed.
    Write {
        /// The file asked for.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// plotters could not draw the picture.
    Draw(String),
}

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDirectory { path } => write!(
                f,
                "cannot write the plot to `{}`: its directory does not exist",
                path.display()
            ),
            Self::Write { path, source } => {
                write!(f, "cannot write the plot to `{}`: {source}", path.display())
            }
            Self::Draw(e) => write!(f, "cannot draw the plot: {e}"),
        }
    }
}

impl std::error::Error for PlotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Write { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Checks that `path` can be a new file: its directory exists and it is not a directory.
/// Call it before the run; [`write()`] can still fail (a read-only directory, a full disk).
pub fn check_path(path: &Path) -> Result<(), PlotError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(PlotError::NoDirectory {
            path: path.to_owned(),
        });
    }
    if path.is_dir() {
        return Err(PlotError::Write {
            path: path.to_owned(),
            source: io::Error::new(io::ErrorKind::IsADirectory, "it is a directory"),
        });
    }
    Ok(())
}

/// Draws `runs` (a row each) under `title` as SVG.
pub fn render(title: &str, runs: &[Run]) -> Result<String, PlotError> {
    draw::svg(title, runs).map_err(|e| PlotError::Draw(e.to_string()))
}

/// Draws `runs` (a row each) under `title` and writes the SVG to `path`.
pub fn write(path: &Path, title: &str, runs: &[Run]) -> Result<(), PlotError> {
    check_path(path)?;
    let svg = render(title, runs)?;
    std::fs::write(path, svg).map_err(|source| PlotError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(requests: u64) -> Reading {
        Reading {
            requests,
            ..Reading::default()
        }
    }

    #[test]
    fn a_full_timeline_keeps_every_second_sample_and_samples_half_as_often() {
        let mut timeline = Timeline::new(EVERY);
        for i in 0..MAX_SAMPLES as u64 + 1 {
            timeline.push(EVERY * i as u32, reading(i));
        }
        assert_eq!(timeline.samples().len(), MAX_SAMPLES / 2 + 1);
        assert_eq!(timeline.every(), EVERY * 2);
        // The totals kept are the ones read then: a rate over them is exact.
        for pair in timeline.samples().windows(2) {
            assert_eq!(pair[1].reading.requests - pair[0].reading.requests, 2);
        }
        assert_eq!(timeline.duration(), EVERY * MAX_SAMPLES as u32);
    }

    #[tokio::test(start_paused = true)]
    async fn record_samples_at_a_fixed_interval_and_at_the_end() {
        let (output, timeline) = record(|| reading(7), async {
            tokio::time::sleep(Duration::from_millis(1_050)).await;
            42
        })
        .await;
        assert_eq!(output, 42);
        let at: Vec<u128> = timeline
            .samples()
            .iter()
            .map(|s| s.at.as_millis())
            .collect();
        let mut expected: Vec<u128> = (0..=10).map(|i| i * 100).collect();
        expected.push(1_050);
        assert_eq!(at, expected);
    }

    #[test]
    fn a_missing_directory_is_refused_before_the_run() {
        let path = std::env::temp_dir().join("no-such-dir-for-plots/run.svg");
        let e = check_path(&path).unwrap_err();
        assert!(matches!(e, PlotError::NoDirectory { .. }), "{e:?}");
        assert!(e.to_string().contains("directory does not exist"), "{e}");
        assert!(check_path(Path::new("run.svg")).is_ok());
    }
}
