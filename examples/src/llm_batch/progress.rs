//! The progress bar on stderr: lines done of the input's, requests and tokens per minute,
//! failures and 429s, read live from the [`Counters`].

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use super::summary::Counters;

const TEMPLATE: &str = "{wide_bar:.cyan/blue} {pos}/{len} [{elapsed_precise}] ETA {eta} | \
                        {rpm} req/min, {tpm} tok/min | {failed} failed, {refused} 429";

/// For an input whose length is not known beforehand (a pipe): no bar, no ETA.
const SPINNER_TEMPLATE: &str = "{spinner} {pos} done [{elapsed_precise}] | \
                                {rpm} req/min, {tpm} tok/min | {failed} failed, {refused} 429";

/// A bar tied to a run's counters; hidden when stderr is not a terminal.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar of `total` lines (a spinner if unknown), `done` of them answered already, on
    /// stderr.
    pub fn stderr(total: Option<u64>, done: u64, counters: &Arc<Counters>) -> Self {
        let progress = Self::with_target(total, done, counters, ProgressDrawTarget::stderr());
        if !progress.bar.is_hidden() {
            // Keep the per-minute figures moving while nothing finishes.
            progress.bar.enable_steady_tick(Duration::from_millis(250));
        }
        progress
    }

    /// The same bar drawn to `target`.
    pub fn with_target(
        total: Option<u64>,
        done: u64,
        counters: &Arc<Counters>,
        target: ProgressDrawTarget,
    ) -> Self {
        let per_minute = |read: fn(&Counters) -> u64| {
            let counters = Arc::clone(counters);
            move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let minutes = state.elapsed().as_secs_f64() / 60.0;
                let n = read(&counters) as f64;
                let _ = write!(w, "{:.0}", if minutes > 0.0 { n / minutes } else { 0.0 });
            }
        };
        let count = |read: fn(&Counters) -> u64| {
            let counters = Arc::clone(counters);
            move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}", read(&counters));
            }
        };
        let template = if total.is_some() {
            TEMPLATE
        } else {
            SPINNER_TEMPLATE
        };
        let style = ProgressStyle::with_template(template)
            .expect("the templates are valid")
            .progress_chars("=> ")
            .with_key(
                "rpm",
                per_minute(|c| c.succeeded.load(Relaxed) + c.failed.load(Relaxed)),
            )
            .with_key("tpm", per_minute(Counters::tokens))
            .with_key("failed", count(|c| c.failed.load(Relaxed)))
            .with_key("refused", count(|c| c.refused_429.load(Relaxed)));
        let bar = ProgressBar::with_draw_target(total, target).with_style(style);
        bar.set_position(done);
        bar.reset_eta();
        Self { bar }
    }

    /// One more line answered.
    pub fn inc(&self) {
        self.bar.inc(1);
    }

    /// Leaves the final state on screen.
    pub fn finish(&self) {
        self.bar.abandon();
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Mutex;

    use indicatif::TermLike;

    use super::*;

    /// A terminal that keeps the last line drawn.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<String>>);

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            160
        }
        fn move_cursor_up(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> io::Result<()> {
            self.write_str(s)
        }
        fn write_str(&self, s: &str) -> io::Result<()> {
            if !s.trim().is_empty() {
                *self.0.lock().unwrap() = s.to_owned();
            }
            Ok(())
        }
        fn clear_line(&self) -> io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn bar_shows_lines_rates_failures_and_429s() {
        let screen = Screen::default();
        let counters = Arc::new(Counters::default());
        let target = ProgressDrawTarget::term_like(Box::new(screen.clone()));
        let progress = Progress::with_target(Some(10), 4, &counters, target);
        counters.failed.store(1, Relaxed);
        counters.refused_429.store(3, Relaxed);
        progress.inc();
        let line = screen.0.lock().unwrap().clone();
        assert!(line.contains(" 5/10 "), "{line:?}");
        assert!(line.contains("req/min"), "{line:?}");
        assert!(line.contains("tok/min"), "{line:?}");
        assert!(line.contains("1 failed, 3 429"), "{line:?}");
        progress.finish();

        let target = ProgressDrawTarget::term_like(Box::new(screen.clone()));
        let spinner = Progress::with_target(None, 0, &counters, target);
        spinner.inc();
        let line = screen.0.lock().unwrap().clone();
        assert!(line.contains(" 1 done "), "{line:?}");
        assert!(!line.contains("ETA"), "{line:?}");
    }
}
