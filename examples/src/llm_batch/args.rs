//! The command line: [`Args::parse`] and [`USAGE`].

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// What `--help` prints.
pub const USAGE: &str = "\
llm_batch: push a JSONL file of chat-completions requests through an OpenAI-compatible API
within its request and token quotas, writing one result per line, in input order.

Usage: llm_batch --input FILE --output FILE --base-url URL --rpm N --tpm N
                 [--concurrency N] [--retries N] [--resume]
                 [--redis URL [--key NAME] [--instance NAME]] [--plot FILE]

  --input FILE      one chat-completions request body per line; an optional \"metadata\"
                    field is not sent and is echoed in the output
  --output FILE     one {\"index\", \"metadata\", \"response\" | \"error\"} object per input line
  --base-url URL    e.g. http://127.0.0.1:8080/v1 (requests go to URL/chat/completions)
  --rpm N           the account's requests per minute
  --tpm N           the account's tokens per minute
  --concurrency N   most requests in flight at once; AIMD finds the server's limit below
                    it (default 32)
  --retries N       retries per line after its first attempt (default 5)
  --resume          continue an output left by an interrupted or killed run: lines already
                    answered are not sent again
  --redis URL       share the quota (requests, tokens, concurrency, pauses) with every
                    llm_batch that uses the same Redis and --key, e.g. redis://127.0.0.1/;
                    --rpm, --tpm and --concurrency are then the whole fleet's; a Redis
                    that does not answer at the start is an error (exit status 1)
  --key NAME        the shared quota's name (default: default), e.g. the API key's project
  --instance NAME   this run's name in the fleet, the same when it is started again with
                    --resume and used by no other live run, so that a restarted run takes
                    back at once the permits its killed predecessor held (default: the
                    host's name and the output file's absolute path, HOST:PATH)
  --plot FILE       also draw the run as an SVG: over time, the concurrency limit, requests
                    in flight, requests and tokens a minute against --rpm and --tpm, 429s

The API key is read from OPENAI_API_KEY (optional, e.g. for a local mock).
The last line on stdout is a JSON summary. Exit status: 0 when every line succeeded,
1 when some failed (or the run was interrupted), 2 on bad usage or input.";

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// `--input`: the requests, one JSON object per line.
    pub input: PathBuf,
    /// `--output`: the results, one JSON object per input line, in input order.
    pub output: PathBuf,
    /// `--base-url`: where `/chat/completions` is, like `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// `--rpm`: requests per minute.
    pub rpm: u32,
    /// `--tpm`: tokens per minute.
    pub tpm: u32,
    /// `--concurrency`: the ceiling of the adaptive concurrency limit.
    pub concurrency: usize,
    /// `--retries`: retries per line after the first attempt.
    pub retries: u32,
    /// `--resume`: continue the output of an earlier run.
    pub resume: bool,
    /// `--redis`: the Redis that shares the quota with other processes, if any.
    pub redis: Option<String>,
    /// `--key`: the shared quota's name.
    pub key: String,
    /// `--instance`: this run's name in the fleet, if given (see [`quota::instance`] for
    /// the default).
    ///
    /// [`quota::instance`]: super::quota::instance
    pub instance: Option<String>,
    /// From `OPENAI_API_KEY`, sent as `Authorization: Bearer` when set.
    pub api_key: Option<String>,
    /// The period `rpm` and `tpm` count over: a minute. Not a flag: harnesses shorten it,
    /// with the mock's clock, to run a minute's schedule in seconds; backoff shrinks with it.
    pub period: Duration,
}

impl Args {
    /// The default `--concurrency`.
    pub const DEFAULT_CONCURRENCY: usize = 32;
    /// The default `--retries`.
    pub const DEFAULT_RETRIES: u32 = 5;

    /// Parses the arguments after the program name (`--flag value` or `--flag=value`).
    /// The API key is not an argument: set [`api_key`](Self::api_key) from the environment.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, UsageError> {
        let mut input = None;
        let mut output = None;
        let mut base_url = None;
        let mut rpm = None;
        let mut tpm = None;
        let mut concurrency = None;
        let mut retries = None;
        let mut resume = false;
        let mut redis = None;
        let mut key = None;
        let mut instance = None;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value)),
                _ => (arg.clone(), None),
            };
            let mut value = || match inline {
                Some(value) => Ok(value.to_owned()),
                None => args
                    .next()
                    .ok_or_else(|| UsageError::new(format!("`{flag}` needs a value"))),
            };
            match flag.as_str() {
                "-h" | "--help" => return Err(UsageError::Help),
                "--input" => set(&mut input, &flag, PathBuf::from(value()?))?,
                "--output" => set(&mut output, &flag, PathBuf::from(value()?))?,
                "--base-url" => set(&mut base_url, &flag, http_url(value()?)?)?,
                "--rpm" => set(&mut rpm, &flag, positive(&flag, &value()?)?)?,
                "--tpm" => set(&mut tpm, &flag, positive(&flag, &value()?)?)?,
                "--concurrency" => set(&mut concurrency, &flag, positive(&flag, &value()?)?)?,
                "--retries" => set(&mut retries, &flag, number(&flag, &value()?)?)?,
                "--redis" => set(&mut redis, &flag, redis_url(value()?)?)?,
                "--key" => set(&mut key, &flag, value()?)?,
                "--instance" => set(&mut instance, &flag, instance_name(value()?)?)?,
                "--resume" if inline.is_none() => resume = true,
                "--resume" => return Err(UsageError::new("`--resume` takes no value")),
                other => {
                    return Err(UsageError::new(format!(
                        "unknown argument `{other}`; see --help"
                    )));
                }
            }
        }
        let required = |name: &str| UsageError::new(format!("`{name}` is required; see --help"));
        Ok(Self {
            input: input.ok_or_else(|| required("--input"))?,
            output: output.ok_or_else(|| required("--output"))?,
            base_url: base_url.ok_or_else(|| required("--base-url"))?,
            rpm: rpm.ok_or_else(|| required("--rpm"))?,
            tpm: tpm.ok_or_else(|| required("--tpm"))?,
            concurrency: concurrency.unwrap_or(Self::DEFAULT_CONCURRENCY),
            retries: retries.unwrap_or(Self::DEFAULT_RETRIES),
            resume,
            key: match (&redis, key) {
                (None, Some(_)) => return Err(UsageError::new("`--key` needs `--redis`")),
                (_, key) => key.unwrap_or_else(|| String::from("default")),
            },
            instance: match (&redis, instance) {
                (None, Some(_)) => return Err(UsageError::new("`--instance` needs `--redis`")),
                (_, instance) => instance,
            },
            redis,
            api_key: None,
            period: Duration::from_secs(60),
        })
    }
}

/// An instance name as gate-redis takes it: 1 to 256 bytes.
fn instance_name(value: String) -> Result<String, UsageError> {
    if (1..=256).contains(&value.len()) {
        Ok(value)
    } else {
        Err(UsageError::new(
            "`--instance` needs a name of 1 to 256 bytes",
        ))
    }
}

/// A `redis://` URL.
fn redis_url(value: String) -> Result<String, UsageError> {
    match reqwest::Url::parse(&value) {
        Ok(url) if url.scheme() == "redis" && url.has_host() => Ok(value),
        _ => Err(UsageError::new(format!(
            "`--redis` needs a redis:// URL, got `{value}`"
        ))),
    }
}

/// An `http://` or `https://` URL.
fn http_url(value: String) -> Result<String, UsageError> {
    match reqwest::Url::parse(&value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(value),
        _ => Err(UsageError::new(format!(
            "`--base-url` needs an http:// or https:// URL, got `{value}`"
        ))),
    }
}

/// Each flag once: a second `--rpm` is more likely a mistake than an override.
fn set<T>(slot: &mut Option<T>, flag: &str, value: T) -> Result<(), UsageError> {
    if slot.replace(value).is_some() {
        return Err(UsageError::new(format!("`{flag}` given twice")));
    }
    Ok(())
}

fn number<T: FromStr>(flag: &str, value: &str) -> Result<T, UsageError> {
    value
        .parse()
        .map_err(|_| UsageError::new(format!("`{flag}` needs a whole number, got `{value}`")))
}

fn positive<T: FromStr + PartialEq + Default>(flag: &str, value: &str) -> Result<T, UsageError> {
    let n: T = number(flag, value)?;
    if n == T::default() {
        return Err(UsageError::new(format!("`{flag}` must be at least 1")));
    }
    Ok(n)
}

/// The command line could not be used (exit status 2), or `--help` was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UsageError {
    /// `-h` or `--help`: print [`USAGE`] and exit 0.
    Help,
    /// What is wrong, in a sentence.
    Invalid(String),
}

impl UsageError {
    fn new(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Help => f.write_str("help requested"),
            Self::Invalid(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for UsageError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Args, UsageError> {
        Args::parse(line.split_whitespace().map(str::to_owned))
    }

    const REQUIRED: &str = "--input in.jsonl --output out.jsonl --base-url http://h/v1 --rpm 600";

    #[test]
    fn parses_every_flag_in_both_forms() {
        let args = parse(&format!(
            "{REQUIRED} --tpm=180000 --concurrency 8 --retries=0 --resume"
        ))
        .unwrap();
        assert_eq!(
            args,
            Args {
                input: "in.jsonl".into(),
                output: "out.jsonl".into(),
                base_url: "http://h/v1".into(),
                rpm: 600,
                tpm: 180_000,
                concurrency: 8,
                retries: 0,
                resume: true,
                redis: None,
                key: "default".into(),
                instance: None,
                api_key: None,
                period: Duration::from_secs(60),
            }
        );
        let shared = parse(&format!(
            "{REQUIRED} --tpm 1 --redis redis://127.0.0.1:6379/ --key org-1 --instance pod-3"
        ))
        .unwrap();
        assert_eq!(shared.redis.as_deref(), Some("redis://127.0.0.1:6379/"));
        assert_eq!(shared.key, "org-1");
        assert_eq!(shared.instance.as_deref(), Some("pod-3"));
        let defaults = parse(&format!("{REQUIRED} --tpm 1")).unwrap();
        assert_eq!(defaults.concurrency, Args::DEFAULT_CONCURRENCY);
        assert_eq!(defaults.retries, Args::DEFAULT_RETRIES);
        assert!(!defaults.resume);
    }

    #[test]
    fn says_what_is_wrong() {
        let invalid = |line: &str| match parse(line) {
            Err(UsageError::Invalid(message)) => message,
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(invalid(REQUIRED), "`--tpm` is required; see --help");
        assert_eq!(
            invalid(&format!("{REQUIRED} --tpm 0")),
            "`--tpm` must be at least 1"
        );
        assert_eq!(
            invalid(&format!("{REQUIRED} --tpm lots")),
            "`--tpm` needs a whole number, got `lots`"
        );
        assert_eq!(
            invalid(&format!("{REQUIRED} --tpm 1 --rpm 5")),
            "`--rpm` given twice"
        );
        assert_eq!(
            invalid(&format!("{REQUIRED} --tpm 1 --rmp 5")),
            "unknown argument `--rmp`; see --help"
        );
        assert_eq!(
            invalid(&format!("{REQUIRED} --tpm")),
            "`--tpm` needs a value"
        );
        assert_eq!(
            invalid(&format!("{REQUIRED} --tpm 1 --resume=yes")),
            "`--resume` takes no value"
        );
        assert_eq!(
            invalid(&format!("{REQUIRED} --tpm 1 --concurrency -3")),
            "`--concurrency` needs a whole number, got `-3`"
        );
        assert_eq!(
            invalid(&format!("{REQUIRED} --tpm 1 --key org-1")),
            "`--key` needs `--redis`"
        );
        assert_eq!(
            invalid(&format!("{REQUIRED} --tpm 1 --instance pod-3")),
            "`--instance` needs `--redis`"
        );
        assert_eq!(
            invalid(&format!(
                "{REQUIRED} --tpm 1 --redis redis://h/ --instance={}",
                "x".repeat(257)
            )),
            "`--instance` needs a name of 1 to 256 bytes"
        );
        assert_eq!(
            invalid(&format!("{REQUIRED} --tpm 1 --redis http://h/")),
            "`--redis` needs a redis:// URL, got `http://h/`"
        );
        assert_eq!(parse("--rpm 1 --help"), Err(UsageError::Help));
        let url = |url: &str| invalid(&format!("--input i --output o --base-url {url}"));
        assert!(matches!(
            parse(&format!("{REQUIRED} --tpm 1")
                .replace("http://h/v1", "https://api.openai.com/v1")),
            Ok(Args { base_url, .. }) if base_url == "https://api.openai.com/v1"
        ));
        assert_eq!(
            url("localhost:8080"),
            "`--base-url` needs an http:// or https:// URL, got `localhost:8080`"
        );
    }
}
