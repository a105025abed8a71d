//! The flags of `cargo run --example mock_llm`.

use std::fmt;
use std::time::Duration;

use super::MockConfig;

/// The `--help` text.
pub const USAGE: &str = "\
A mock OpenAI API on 127.0.0.1 with OpenAI's limits, for trying clients offline.

Usage: cargo run --example mock_llm -- [OPTIONS]

Options:
  --rpm N                requests a minute (500)
  --tpm N                tokens a minute, charged as prompt + max_tokens on admission and
                         refunded down to the usage when done (150000)
  --concurrency N        requests served at once (8)
  --port P               port on 127.0.0.1 (0: a free one)
  --latency-ms N         mean time per completion (250)
  --request-bucket N     requests that may come back to back (the rpm: a minute's worth)
  --token-bucket N       tokens that may be charged back to back (the tpm)
  --default-max-tokens N charged when a request sets no max_tokens (1024)
  --quota N              tokens in all, then 429 insufficient_quota (none)
  --error-one-in N       a 500 for the first request of one prompt in N (none)
  --stall-one-in N       stall the first request of one prompt in N ... (none)
  --stall-ms N           ... for this long (10000)
  -h, --help             this text";

/// A flag was wrong, or `--help` was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UsageError {
    /// `--help`.
    Help,
    /// The message says what was wrong.
    Invalid(String),
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Help => f.write_str(USAGE),
            Self::Invalid(msg) => write!(f, "{msg}\n\n{USAGE}"),
        }
    }
}

impl std::error::Error for UsageError {}

/// What `mock_llm` was asked to serve.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The server's limits.
    pub config: MockConfig,
    /// The port on 127.0.0.1; 0 for a free one.
    pub port: u16,
}

impl Options {
    /// Reads the flags (without the program name).
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Self, UsageError> {
        let (mut rpm, mut tpm, mut concurrency) = (500u32, 150_000u64, 8usize);
        let (mut request_bucket, mut token_bucket) = (None, None);
        let mut port = 0;
        let mut latency = Duration::from_millis(250);
        let mut default_max_tokens = 1_024;
        let (mut quota, mut error_one_in, mut stall_one_in) = (None, None, None);
        let mut stall = Duration::from_secs(10);
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            if flag == "-h" || flag == "--help" {
                return Err(UsageError::Help);
            }
            let value = args
                .next()
                .ok_or_else(|| UsageError::Invalid(format!("`{flag}` needs a value")))?;
            match flag.as_str() {
                "--rpm" => rpm = positive(&flag, &value)?,
                "--tpm" => tpm = positive(&flag, &value)?,
                "--concurrency" => concurrency = positive(&flag, &value)?,
                "--port" => port = number(&flag, &value)?,
                "--latency-ms" => latency = Duration::from_millis(number(&flag, &value)?),
                "--request-bucket" => request_bucket = Some(positive(&flag, &value)?),
                "--token-bucket" => token_bucket = Some(positive(&flag, &value)?),
                "--default-max-tokens" => default_max_tokens = positive(&flag, &value)?,
                "--quota" => quota = Some(number(&flag, &value)?),
                "--error-one-in" => error_one_in = Some(positive(&flag, &value)?),
                "--stall-one-in" => stall_one_in = Some(positive(&flag, &value)?),
                "--stall-ms" => stall = Duration::from_millis(number(&flag, &value)?),
                other => return Err(UsageError::Invalid(format!("unknown flag `{other}`"))),
            }
        }
        let mut config = MockConfig::per_minute(rpm, tpm, concurrency);
        config.burst = request_bucket.unwrap_or(rpm);
        config.token_burst = token_bucket.unwrap_or(tpm);
        config.latency = latency;
        config.default_max_tokens = default_max_tokens;
        config.quota = quota;
        config.error_one_in = error_one_in;
        config.stall_one_in = stall_one_in.map(|n| (n, stall));
        Ok(Self { config, port })
    }
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, UsageError> {
    value
        .parse()
        .map_err(|_| UsageError::Invalid(format!("`{flag}` needs a number, got `{value}`")))
}

fn positive<T: std::str::FromStr + Default + PartialEq>(
    flag: &str,
    value: &str,
) -> Result<T, UsageError> {
    let n: T = number(flag, value)?;
    if n == T::default() {
        return Err(UsageError::Invalid(format!("`{flag}` must be at least 1")));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn flags_set_the_limits() {
        let o = Options::from_args(args(&[
            "--rpm",
            "600",
            "--tpm",
            "180000",
            "--concurrency",
            "8",
            "--port",
            "8080",
            "--latency-ms",
            "100",
            "--quota",
            "5000",
        ]))
        .unwrap();
        assert_eq!(o.port, 8080);
        let c = &o.config;
        assert_eq!((c.burst, c.rate_per_sec), (600, 10.0));
        assert_eq!((c.token_burst, c.token_rate_per_sec), (180_000, 3_000.0));
        assert_eq!(c.max_concurrent, 8);
        assert_eq!(c.latency, Duration::from_millis(100));
        assert_eq!(c.quota, Some(5_000));
        let small = Options::from_args(args(&["--token-bucket", "3000", "--request-bucket", "10"]))
            .unwrap();
        assert_eq!((small.config.burst, small.config.token_burst), (10, 3_000));
        assert_eq!(small.config.token_rate_per_sec, 2_500.0);
    }

    #[test]
    fn bad_flags_say_what_is_wrong() {
        let err = |list: &[&str]| Options::from_args(args(list)).unwrap_err();
        assert_eq!(err(&["--help"]), UsageError::Help);
        assert!(
            err(&["--rpm"])
                .to_string()
                .contains("`--rpm` needs a value")
        );
        assert!(err(&["--rpm", "x"]).to_string().contains("needs a number"));
        assert!(err(&["--tpm", "0"]).to_string().contains("at least 1"));
        assert!(
            err(&["--nope", "1"])
                .to_string()
                .contains("unknown flag `--nope`")
        );
    }
}
