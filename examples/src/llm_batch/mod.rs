//! `llm_batch`: a JSONL file of chat-completions requests pushed through an
//! OpenAI-compatible API within its request and token quotas, one result per line, in
//! input order; what `cargo run --example llm_batch` runs.
//!
//! - [`args`]: the command line. [`cli`]: the program (parse, run, print, exit status).
//! - [`input`]: the requests, read lazily, each with its token estimate.
//! - [`runner`]: one line through the [`quota`] (a [`Limiter`](gate_core::Limiter): adaptive
//!   concurrency, request rate, token budget settled from `usage`, corrected from the
//!   server's `x-ratelimit-*` headers; or, with `--redis`, the same shared by every process
//!   through gate-redis) and the retry policy. [`error`] classifies failures.
//! - [`output`]: the ordered writer and its journal; [`resume`]: reading them back.
//! - [`summary`] and [`progress`]: what the run did, at the end and while it runs.
//! - [`cookbook`]: the OpenAI Cookbook's `api_request_parallel_processor.py`, reimplemented
//!   as the baseline; [`harness`]: both against the mock, with the figures.
//!
//! # Memory
//!
//! Lines are read only when there is room: at most [`window`] lines are between the
//! oldest unanswered one and the newest one read, so the lines in flight and the answers
//! held for an earlier line are both bounded, whatever the input's length. (gate's
//! [`Batch`](gate_core::Batch) keeps every result for its report, which a million-line
//! file cannot afford; this loop writes each result out instead.)

pub mod args;
pub mod cli;
pub mod cookbook;
pub mod error;
pub mod harness;
pub mod input;
pub mod output;
pub mod progress;
pub mod quota;
pub mod resume;
pub mod runner;
pub mod stop;
pub mod summary;

use std::fmt;
use std::io;
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;

use args::Args;
use input::{Input, InputError, parse_line};
use output::OrderedWriter;
use progress::Progress;
use quota::Quota;
use resume::{ResumeError, Resumed};
use runner::Runner;
use stop::Stop;
use summary::{Counters, Stopped, Summary};

/// Lines between the oldest unanswered one and the newest one read: 256, or four times
/// `concurrency` if more.
pub fn window(concurrency: usize) -> usize {
    concurrency.saturating_mul(4).max(256)
}

/// How a run ended: its summary, and the line that stopped it if one could not be parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// The JSON summary.
    pub summary: Summary,
    /// The bad line, if the run stopped at one.
    pub input_error: Option<InputError>,
}

/// The run could not start, or could not write.
#[derive(Debug)]
#[non_exhaustive]
pub enum RunError {
    /// The input could not be opened or read.
    Input(io::Error),
    /// The output could not be written.
    Output(io::Error),
    /// The output cannot be resumed or would be overwritten.
    Resume(ResumeError),
    /// `--redis` names no usable Redis.
    Redis(gate_redis::BuildError),
    /// No Redis answered at `--redis` when the run started (a mistyped URL or port, or no
    /// server): what went wrong and what to do.
    NoRedis(String),
    /// `--plot` names a file that cannot be written.
    Plot(crate::plot::PlotError),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Input(e) => write!(f, "cannot read the input: {e}"),
            Self::Output(e) => write!(f, "cannot write the output: {e}"),
            Self::Resume(e) => e.fmt(f),
            Self::Redis(e) => write!(f, "cannot use --redis: {e}"),
            Self::NoRedis(message) => write!(f, "cannot use --redis: {message}"),
            Self::Plot(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RunError {}

/// Runs `args` to the end of the input, or until `stop` (see [`Stop`]), drawing a progress
/// bar on stderr if `progress`.
pub async fn run(args: &Args, stop: &Stop, progress: bool) -> Result<Finished, RunError> {
    run_plotted(args, stop, progress, None).await
}

/// Like [`run`], and with `plot` writes an SVG picture of the run there (see
/// [`crate::plot`]): the concurrency limit, requests in flight, and requests and tokens a
/// minute against `--rpm` and `--tpm`, sampled while it runs. A `plot` that cannot be
/// written is refused before the run starts.
pub async fn run_plotted(
    args: &Args,
    stop: &Stop,
    progress: bool,
    plot: Option<&std::path::Path>,
) -> Result<Finished, RunError> {
    if let Some(path) = plot {
        crate::plot::check_path(path).map_err(RunError::Plot)?;
    }
    // Before any file is touched: a run that cannot start leaves none behind.
    if let Some(url) = &args.redis {
        crate::redis_server::reach(url)
            .await
            .map_err(RunError::NoRedis)?;
    }
    let resumed = if args.resume {
        resume::recover(&args.output).map_err(RunError::Resume)?
    } else {
        resume::check_fresh(&args.output).map_err(RunError::Resume)?;
        Resumed::default()
    };
    let skipped = resumed.answered();
    let total = input::count_lines(&args.input).map_err(RunError::Input)?;
    let mut input = Input::open(&args.input).await.map_err(RunError::Input)?;
    let mut writer = OrderedWriter::open(&args.output, resumed.written, resumed.held)
        .map_err(RunError::Output)?;
    let quota = match &args.redis {
        None => Quota::local(args.rpm, args.tpm, args.period, args.concurrency),
        Some(url) => Quota::shared(
            url,
            &args.key,
            quota::instance(args.instance.as_deref(), &args.output).as_deref(),
            args.rpm,
            args.tpm,
            args.period,
            args.concurrency,
        )
        .map_err(RunError::Redis)?,
    };
    let counters = Arc::new(Counters::default());
    let timeline = plot.map(|_| plotted::start(&counters, &quota));
    let runner = Runner::new(
        &args.base_url,
        args.api_key.clone(),
        quota.clone(),
        runner::policy(args.retries, args.period),
        Arc::clone(&counters),
        stop.clone(),
    );
    let bar = progress.then(|| Progress::stderr(total, skipped, &counters));
    let window = window(args.concurrency);
    let start = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let mut input_error = None;
    let mut exhausted = false;
    loop {
        // Read while there is room and nothing said stop.
        while !exhausted
            && stop.reason().is_none()
            && input.position() < writer.next().saturating_add(window as u64)
        {
            let line = match input.next_raw().await {
                None => {
                    exhausted = true;
                    break;
                }
                Some(Ok((index, _))) if writer.is_answered(index) => continue,
                Some(Ok((index, text))) => parse_line(index, &text),
                Some(Err(e)) => Err(e),
            };
            match line {
                Ok(line) => in_flight.push(runner.run(line)),
                // Read no further; the lines before it are still answered.
                Err(e) => {
                    input_error = Some(e);
                    exhausted = true;
                }
            }
        }
        let answered = tokio::select! {
            biased;
            () = stop.aborted() => break,
            answered = in_flight.next() => answered,
        };
        match answered {
            Some(Some(record)) => {
                writer.push(&record).map_err(RunError::Output)?;
                if let Some(bar) = &bar {
                    bar.inc();
                }
            }
            // Stopped before it was answered: left for `--resume`.
            Some(None) => {}
            None => break,
        }
    }
    drop(in_flight);
    // The last releases reach Redis before the process exits, not a lease later.
    quota.flush().await;
    writer.finish().map_err(RunError::Output)?;
    if let Some(bar) = &bar {
        bar.finish();
    }
    let stopped = stop
        .reason()
        .or(input_error.is_some().then_some(Stopped::BadInput));
    let summary = counters.summary(skipped, start.elapsed(), stopped);
    if let (Some(path), Some(timeline)) = (plot, timeline) {
        plotted::finish(path, timeline, args)
            .await
            .map_err(RunError::Plot)?;
    }
    Ok(Finished {
        summary,
        input_error,
    })
}

/// `--plot`: the run's timeline, recorded beside it, drawn at its end.
mod plotted {
    use std::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::Ordering::Relaxed;

    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    use super::args::Args;
    use super::quota::Quota;
    use super::summary::Counters;
    use crate::plot::{self, Limits, PlotError, Reading, Timeline};

    pub(super) type Recording = (oneshot::Sender<()>, JoinHandle<Timeline>);

    /// Samples the run's counters and its quota's concurrency limit until told to stop.
    pub(super) fn start(counters: &Arc<Counters>, quota: &Quota) -> Recording {
        let (counters, quota) = (Arc::clone(counters), quota.clone());
        let read = move || Reading {
            limit: match &quota {
                Quota::Local(limiter) => limiter.limit(),
                Quota::Shared(limiter) => limiter.limit(),
            },
            in_flight: quota.limiter().map(|limiter| limiter.stats().in_flight),
            requests: counters.attempts.load(Relaxed),
            tokens: counters.tokens(),
            refused: counters.refused_429.load(Relaxed),
        };
        let (done, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move { plot::record(read, stopped).await.1 });
        (done, task)
    }

    /// Stops the sampling and writes the picture to `path`.
    pub(super) async fn finish(
        path: &Path,
        (done, task): Recording,
        args: &Args,
    ) -> Result<(), PlotError> {
        let _ = done.send(());
        let timeline = task
            .await
            .map_err(|e| PlotError::Draw(format!("the run's sampler stopped: {e}")))?;
        let minute = args.period.as_secs_f64() / 60.0;
        let run = plot::Run {
            label: "llm_batch".into(),
            limits: Limits {
                concurrency: None,
                requests_per_min: Some(f64::from(args.rpm) / minute),
                tokens_per_min: Some(f64::from(args.tpm) / minute),
            },
            timeline,
        };
        let title = format!(
            "llm_batch: {} against {} (--rpm {}, --tpm {})",
            args.input.display(),
            args.base_url,
            args.rpm,
            args.tpm
        );
        plot::write(path, &title, &[run])
    }
}

/// A fresh directory for a test's files, under the system's temporary directory.
#[cfg(test)]
pub(crate) fn testdir(name: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "llm_batch-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}
