//! The batch's progress bar, drawn with indicatif on stderr.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use super::run::Counters;

/// Done / total, rate, ETA, and failures and retries read live from the batch's counters.
const TEMPLATE: &str = "{prefix}{wide_bar:.cyan/blue} {pos}/{len} [{elapsed_precise}] \
                        {rate:.dim} ETA {eta} | {failed} failed, {retries} retries";

/// For sources whose length is unknown: no bar, no ETA.
const SPINNER_TEMPLATE: &str = "{prefix}{spinner} {pos} done [{elapsed_precise}] {rate:.dim} | {failed} failed, {retries} retries";

/// A progress bar tied to a batch's counters.
#[derive(Debug)]
pub(super) struct Bar {
    bar: ProgressBar,
}

impl Bar {
    /// A bar on stderr, hidden when stderr is not a terminal or `TERM` is `dumb`.
    pub(super) fn stderr(
        total: Option<u64>,
        label: Option<&str>,
        counters: &Arc<Counters>,
    ) -> Self {
        let bar = Self::with_target(total, label, counters, ProgressDrawTarget::stderr());
        if !bar.bar.is_hidden() {
            // Redraw while nothing finishes (every item backing off), so the live counts
            // and the elapsed time keep moving.
            bar.bar.enable_steady_tick(Duration::from_millis(200));
        }
        bar
    }

    pub(super) fn with_target(
        total: Option<u64>,
        label: Option<&str>,
        counters: &Arc<Counters>,
        target: ProgressDrawTarget,
    ) -> Self {
        let template = if total.is_some() {
            TEMPLATE
        } else {
            SPINNER_TEMPLATE
        };
        let failed = Arc::clone(counters);
        let retries = Arc::clone(counters);
        let style = ProgressStyle::with_template(template)
            .expect("the batch templates are valid")
            .progress_chars("=> ")
            .with_key(
                "rate",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.1}/s", state.per_sec());
                },
            )
            .with_key(
                "failed",
                move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{}", failed.failed.load(Relaxed));
                },
            )
            .with_key(
                "retries",
                move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{}", retries.retries.load(Relaxed));
                },
            );
        let bar = ProgressBar::with_draw_target(total, target).with_style(style);
        if let Some(label) = label {
            bar.set_prefix(format!("{label} "));
        }
        Self { bar }
    }

    /// Counts one finished item and redraws if the refresh rate allows.
    pub(super) fn inc(&self) {
        self.bar.inc(1);
    }

    /// Leaves the final state on screen.
    pub(super) fn finish(&self) {
        self.bar.finish();
    }

    /// Whether the bar draws nothing (stderr is not a terminal).
    #[cfg(test)]
    pub(super) fn is_hidden(&self) -> bool {
        self.bar.is_hidden()
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        // A batch dropped mid-way leaves its bar as it stood rather than clearing the line.
        if !self.bar.is_finished() {
            self.bar.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, IsTerminal};
    use std::sync::Mutex;

    use indicatif::TermLike;

    use super::*;

    /// A terminal that records the last line drawn.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<String>>);

    impl Screen {
        fn last(&self) -> String {
            self.0.lock().unwrap().clone()
        }
    }

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            120
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
    fn bar_shows_done_total_and_live_failures_and_retries() {
        let screen = Screen::default();
        let counters = Arc::new(Counters::default());
        let target = ProgressDrawTarget::term_like(Box::new(screen.clone()));
        let bar = Bar::with_target(Some(10), Some("api"), &counters, target);
        assert!(!bar.is_hidden());

        counters.failed.store(1, Relaxed);
        counters.retries.store(2, Relaxed);
        bar.inc();
        bar.inc();
        bar.inc();
        let line = screen.last();
        assert!(line.starts_with("api "), "{line:?}");
        assert!(line.contains(" 3/10 "), "{line:?}");
        assert!(line.contains("1 failed, 2 retries"), "{line:?}");
        assert!(line.contains("ETA"), "{line:?}");

        counters.retries.store(5, Relaxed);
        bar.inc();
        assert!(screen.last().contains("1 failed, 5 retries"));
    }

    #[test]
    fn unknown_length_draws_a_spinner_with_counts() {
        let screen = Screen::default();
        let counters = Arc::new(Counters::default());
        let target = ProgressDrawTarget::term_like(Box::new(screen.clone()));
        let bar = Bar::with_target(None, None, &counters, target);
        bar.inc();
        let line = screen.last();
        assert!(line.contains(" 1 done "), "{line:?}");
        assert!(line.contains("0 failed, 0 retries"), "{line:?}");
    }

    #[test]
    fn stderr_bar_is_hidden_exactly_when_stderr_is_not_a_terminal() {
        let counters = Arc::new(Counters::default());
        let bar = Bar::stderr(Some(3), None, &counters);
        // indicatif (through console) treats an unset `TERM` as dumb on Unix.
        let dumb = std::env::var("TERM").map_or(cfg!(unix), |t| t == "dumb");
        assert_eq!(bar.is_hidden(), !io::stderr().is_terminal() || dumb);
        bar.finish();
    }
}
