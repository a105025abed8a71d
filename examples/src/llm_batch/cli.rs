//! The program: parses the command line, runs, prints the summary last on stdout, and
//! returns the exit status. `examples/llm_batch.rs` is this and a tokio runtime.

use std::io::Write;

use super::args::{Args, USAGE, UsageError};
use super::stop::Stop;
use super::summary::Stopped;
use super::{RunError, run};

/// Runs the program with `args` (after the program name) and the API key from the
/// environment, if any. Ctrl-C once stops admitting lines and lets the attempts on the
/// wire finish; twice drops them too; either way what is answered is written, and
/// `--resume` continues. Returns the exit status: 0, 1 or 2 (see [`USAGE`]).
pub async fn main(args: impl IntoIterator<Item = String>, api_key: Option<String>) -> u8 {
    let mut args = match Args::parse(args) {
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
    let finished = run(&args, &stop, true).await;
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
        Err(e @ (RunError::Resume(_) | RunError::Input(_))) => {
            eprintln!("llm_batch: {e}");
            2
        }
        Err(e) => {
            eprintln!("llm_batch: {e}");
            1
        }
    }
}
