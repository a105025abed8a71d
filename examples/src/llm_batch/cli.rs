//! The program: parses the command line, runs, prints the summary last on stdout, and
//! returns the exit status. `examples/llm_batch.rs` is this and a tokio runtime.

use std::io::Write;
use std::path::PathBuf;

use super::args::{Args, USAGE, UsageError};
use super::stop::Stop;
use super::summary::Stopped;
use super::{RunError, run_plotted};

/// Runs the program with `args` (after the program name) and the API key from the
/// environment, if any. Ctrl-C once stops admitting lines and lets the attempts on the
/// wire finish; twice drops them too; either way what is answered is written, and
/// `--resume` continues. Returns the exit status: 0, 1 or 2 (see [`USAGE`]).
pub async fn main(args: impl IntoIterator<Item = String>, api_key: Option<String>) -> u8 {
    let parsed = take_plot(args.into_iter().collect()).and_then(|(args, plot)| {
        let args = Args::parse(args)?;
        Ok((args, plot))
    });
    let (mut args, plot) = match parsed {
        Ok(args) => args,
        Err(UsageError::Help) => {
            println!("{USAGE}");
            return 0;
        }
        Err(e) => {
            eprintln!("llm_batch: {e}");
            return 2;
        }
    };
    args.api_key = api_key.filter(|key| !key.is_empty());
    let stop = Stop::new();
    let signals = tokio::spawn({
        let stop = stop.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "\nllm_batch: stopping: no new lines; Ctrl-C again to drop those in flight"
                );
                stop.stop(Stopped::Interrupted);
            }
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.abort(Stopped::Interrupted);
            }
        }
    });
    let finished = run_plotted(&args, &stop, true, plot.as_deref()).await;
    signals.abort();
    match finished {
        Ok(finished) => {
            if let Some(e) = &finished.input_error {
                eprintln!("llm_batch: {e}");
            }
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{}", finished.summary.to_line());
            let _ = stdout.flush();
            finished.summary.exit_code()
        }
        Err(
            e @ (RunError::Resume(_) | RunError::Input(_) | RunError::Redis(_) | RunError::Plot(_)),
        ) => {
            eprintln!("llm_batch: {e}");
            2
        }
        Err(e) => {
            eprintln!("llm_batch: {e}");
            1
        }
    }
}

/// Takes `--plot FILE` (or `--plot=FILE`) out of `args`: the program's, not the run's, so
/// [`Args`] stays the run's settings.
fn take_plot(args: Vec<String>) -> Result<(Vec<String>, Option<PathBuf>), UsageError> {
    let mut rest = Vec::with_capacity(args.len());
    let mut plot = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let value = match arg.strip_prefix("--plot") {
            Some("") => Some(
                args.next()
                    .ok_or_else(|| UsageError::Invalid("`--plot` needs a value".into()))?,
            ),
            Some(inline) if inline.starts_with('=') => Some(inline[1..].to_owned()),
            _ => None,
        };
        match value {
            Some(_) if plot.is_some() => {
                return Err(UsageError::Invalid("`--plot` given twice".into()));
            }
            Some(value) => plot = Some(PathBuf::from(value)),
            None => rest.push(arg),
        }
    }
    Ok((rest, plot))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn plot_is_taken_out_of_the_run_arguments() {
        let (rest, plot) =
            take_plot(strings(&["--rpm", "5", "--plot", "run.svg", "--resume"])).unwrap();
        assert_eq!(rest, strings(&["--rpm", "5", "--resume"]));
        assert_eq!(plot, Some(PathBuf::from("run.svg")));
        let (_, plot) = take_plot(strings(&["--plot=a.svg"])).unwrap();
        assert_eq!(plot, Some(PathBuf::from("a.svg")));
        assert!(take_plot(strings(&["--plot"])).is_err());
        assert!(take_plot(strings(&["--plot", "a", "--plot", "b"])).is_err());
    }
}
