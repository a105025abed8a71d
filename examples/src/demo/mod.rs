//! The demo: one batch of prompts pushed at a rate- and concurrency-limited API in several
//! ways, each with a progress bar, then a table of what each way got done.
//!
//! By default it starts a mock OpenAI-compatible API on 127.0.0.1 ([`crate::mock`]), so it
//! needs no key and no network; the token-budget row runs against a second mock, the same but
//! for a token limit that binds ([`Config::token_server`]). `--base-url` points the same client at a real endpoint.
//! Run `cargo run --release --example demo -- --help` for the flags.

pub mod replicas;
mod strategies;
mod table;

pub use strategies::{Knobs, Pushed, Strategy};
pub use table::Table;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gate_core::rate::Rate;

use crate::Out;
use crate::client::{ChatClient, ClientError};
use crate::mock::{MockConfig, MockServer, ServerStats, usage_for};
use crate::plot::{self, PlotError};

/// What to run, from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// Prompts in the batch.
    pub prompts: usize,
    /// The mock server's limits and latency (ignored with `base_url`).
    pub server: MockConfig,
    /// A real OpenAI-compatible endpoint instead of the mock, like `http://host:port/v1`.
    pub base_url: Option<String>,
    /// The environment variable holding the API key for `base_url`.
    pub api_key_env: String,
    /// The model to ask.
    pub model: String,
    /// The rate limit the client believes it has (defaults to the mock's).
    pub client_rate: Option<u32>,
    /// Tokens a minute the mock allows for the strategies that run against a binding token
    /// limit ([`Strategy::binds_on_tokens`]); the other strategies' mock does not bind on
    /// tokens.
    pub server_tpm: u64,
    /// Tokens that mock lets be charged back to back (its token bucket).
    pub server_token_bucket: u64,
    /// The tokens a minute the client believes it has (defaults to the mock's).
    pub client_tpm: Option<u64>,
    /// Scale of client-side waits and timeouts (`--fast` makes everything 10 times quicker).
    pub time_scale: f64,
    /// Strategies to run, in order.
    pub strategies: Vec<Strategy>,
    /// Whether to draw progress bars (they hide themselves anyway when stderr is not a
    /// terminal).
    pub progress: bool,
    /// `--plot FILE`: where to write an SVG picture of the run (see [`crate::plot`]).
    pub plot: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            prompts: 150,
            server: MockConfig::default(),
            base_url: None,
            api_key_env: "OPENAI_API_KEY".into(),
            model: "gpt-4o-mini".into(),
            client_rate: None,
            server_tpm: 36_000,
            server_token_bucket: 600,
            client_tpm: None,
            time_scale: 1.0,
            strategies: Strategy::ALL.to_vec(),
            progress: true,
            plot: None,
        }
    }
}

/// The `--help` text.
pub const USAGE: &str = "\
Pushes a batch of prompts at an OpenAI-compatible API in several ways and prints a table.
With no --base-url it starts a mock API on 127.0.0.1 (no key, no network).

Usage: cargo run --release --example demo -- [OPTIONS]

Options:
  --prompts N              prompts in the batch (150)
  --server-rate N          mock: requests per second it admits (20)
  --server-burst N         mock: requests it admits back to back (8)
  --server-concurrency N   mock: requests it serves at once (8)
  --latency-ms N           mock: mean time per completion (250)
  --server-tpm N           mock of the token-budget row: tokens a minute (36000)
  --server-token-bucket N  mock of the token-budget row: tokens back to back (600)
  --fast                   ten times faster: mock latency / 10, rates x 10, client waits / 10
  --base-url URL           a real endpoint instead, like https://api.openai.com/v1
  --api-key-env VAR        environment variable holding the key (OPENAI_API_KEY)
  --model NAME             model to ask (gpt-4o-mini)
  --rate N                 requests per second the client is allowed (the mock's rate)
  --tpm N                  tokens a minute the client is allowed (the mock's)
  --only a,b               strategies to run: no-limit, fixed, retry-after, adaptive, tokens
  --no-progress            no progress bars
  --plot FILE              also draw the run as an SVG: per strategy, over time, the
                           concurrency limit and requests in flight, requests and tokens a
                           minute against the server's limits, 429s as marks
  --replicas N             instead: N worker processes against one mock, each keeping the
                           quota to itself, then sharing it through Redis (needs
                           redis-server on PATH)
  -h, --help               this text";

/// Why the demo could not run.
#[derive(Debug)]
#[non_exhaustive]
pub enum DemoError {
    /// A flag was wrong; the message says which.
    Usage(String),
    /// `--help` was asked for.
    Help,
    /// The base URL cannot be used.
    Client(ClientError),
    /// The mock server could not start.
    Io(std::io::Error),
    /// `--plot` names a file that cannot be written.
    Plot(PlotError),
}

impl fmt::Display for DemoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(msg) => write!(f, "{msg}\n\n{USAGE}"),
            Self::Help => f.write_str(USAGE),
            Self::Client(e) => e.fmt(f),
            Self::Io(e) => write!(f, "cannot start the mock server: {e}"),
            Self::Plot(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for DemoError {}

impl Config {
    /// Reads the flags (without the program name).
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Self, DemoError> {
        let mut config = Self::default();
        let mut fast = false;
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .ok_or_else(|| DemoError::Usage(format!("`{name}` needs a value")))
            };
            match flag.as_str() {
                "-h" | "--help" => return Err(DemoError::Help),
                "--fast" => fast = true,
                "--no-progress" => config.progress = false,
                "--prompts" => config.prompts = number(&flag, &value(&flag)?)?,
                "--server-rate" => {
                    config.server.rate_per_sec = f64::from(number::<u32>(&flag, &value(&flag)?)?)
                }
                "--server-burst" => config.server.burst = number(&flag, &value(&flag)?)?,
                "--server-concurrency" => {
                    config.server.max_concurrent = number(&flag, &value(&flag)?)?
                }
                "--latency-ms" => {
                    config.server.latency = Duration::from_millis(number(&flag, &value(&flag)?)?)
                }
                "--base-url" => config.base_url = Some(value(&flag)?),
                "--api-key-env" => config.api_key_env = value(&flag)?,
                "--model" => config.model = value(&flag)?,
                "--rate" => config.client_rate = Some(number(&flag, &value(&flag)?)?),
                "--server-tpm" => config.server_tpm = number(&flag, &value(&flag)?)?,
                "--server-token-bucket" => {
                    config.server_token_bucket = number(&flag, &value(&flag)?)?
                }
                "--tpm" => config.client_tpm = Some(number(&flag, &value(&flag)?)?),
                "--plot" => config.plot = Some(PathBuf::from(value(&flag)?)),
                "--only" => {
                    config.strategies = value(&flag)?
                        .split(',')
                        .map(|name| {
                            Ok(match name.trim() {
                                "no-limit" => Strategy::NoLimit,
                                "fixed" => Strategy::FixedGate,
                                "retry-after" => Strategy::GateRetryAfter,
                                "adaptive" => Strategy::RateAdaptive,
                                "tokens" => Strategy::TokenBudget,
                                other => {
                                    return Err(DemoError::Usage(format!(
                                        "unknown strategy `{other}`; expected no-limit, fixed, retry-after, adaptive or tokens"
                                    )));
                                }
                            })
                        })
                        .collect::<Result<_, _>>()?;
                }
                other => return Err(DemoError::Usage(format!("unknown flag `{other}`"))),
            }
        }
        if fast {
            config = config.fast();
        }
        if config.server.rate_per_sec < 1.0
            || config.server.max_concurrent == 0
            || config.server_tpm == 0
            || config.server_token_bucket == 0
        {
            return Err(DemoError::Usage(
                "the server's rates, token bucket and concurrency must be at least 1".into(),
            ));
        }
        Ok(config)
    }

    /// Ten times faster: the mock's latency / 10 and rates × 10 (its token buckets as they
    /// were), client waits / 10.
    pub fn fast(mut self) -> Self {
        self.server.latency /= 10;
        self.server.rate_per_sec *= 10.0;
        self.server.token_rate_per_sec *= 10.0;
        self.server_tpm = self.server_tpm.saturating_mul(10);
        self.time_scale /= 10.0;
        self
    }

    /// The mock for the strategies that [bind on tokens](Strategy::binds_on_tokens): the
    /// same as [`server`](Self::server) but with [`server_tpm`](Self::server_tpm) tokens a
    /// minute and a bucket of [`server_token_bucket`](Self::server_token_bucket).
    pub fn token_server(&self) -> MockConfig {
        MockConfig {
            token_rate_per_sec: self.server_tpm as f64 / 60.0,
            token_burst: self.server_token_bucket,
            ..self.server.clone()
        }
    }

    /// The client's token budget: the server's tokens a minute, and its bucket less 2%.
    ///
    /// The 2% is for the network: a request reaches the server a moment after the client
    /// charged it, and a server whose bucket is full meanwhile does not refill, so a client
    /// with exactly the server's bucket runs that moment's tokens ahead of it and gets the
    /// odd 429 at the limit.
    fn client_tokens(&self) -> Rate {
        let per_min = self.client_tpm.unwrap_or(self.server_tpm);
        let per_min = u32::try_from(per_min).unwrap_or(u32::MAX).max(1);
        let bucket = self.server_token_bucket - (self.server_token_bucket / 50).max(1);
        let bucket = u32::try_from(bucket).unwrap_or(u32::MAX).max(2);
        Rate::per_minute(per_min).burst(bucket)
    }

    fn client_rate(&self) -> Rate {
        let per_sec = self
            .client_rate
            .unwrap_or(self.server.rate_per_sec.round() as u32)
            .max(1);
        Rate::per_second(per_sec).burst(self.server.burst.max(1))
    }
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, DemoError> {
    value
        .parse()
        .map_err(|_| DemoError::Usage(format!("`{flag}` needs a number, got `{value}`")))
}

/// One strategy's results.
#[derive(Debug, Clone)]
pub struct Row {
    /// The strategy.
    pub strategy: Strategy,
    /// Prompts answered.
    pub succeeded: usize,
    /// Prompts that gave up.
    pub failed: usize,
    /// Attempts made, first ones included.
    pub attempts: u64,
    /// Attempts beyond each prompt's first.
    pub retries: u64,
    /// 429 answers received.
    pub rate_limited: u64,
    /// Time for the whole batch.
    pub elapsed: Duration,
    /// The fastest any client could have finished all the prompts against the mock's limits,
    /// divided by the time taken; `None` if prompts were lost (or against a real server,
    /// whose limits are not known).
    pub efficiency: Option<f64>,
    /// What the mock server saw during this strategy.
    pub server: Option<ServerStats>,
}

/// Everything the demo measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Prompts per strategy.
    pub prompts: usize,
    /// One row per strategy run.
    pub rows: Vec<Row>,
    /// The mock's limits, when the mock was used.
    pub server: Option<MockConfig>,
}

impl Report {
    /// The results table.
    pub fn table(&self) -> Table<'_> {
        Table { rows: &self.rows }
    }
}

/// Runs the demo: starts the mock unless `base_url` is set, pushes the prompts each way,
/// prints the table.
pub async fn run(config: &Config, out: &Out) -> Result<Report, DemoError> {
    // A plot that cannot be written is found out now, not after the run.
    if let Some(path) = &config.plot {
        plot::check_path(path).map_err(DemoError::Plot)?;
    }
    let mock = match &config.base_url {
        Some(_) => None,
        None => Some(
            MockServer::start(config.server.clone())
                .await
                .map_err(DemoError::Io)?,
        ),
    };
    let (base_url, api_key) = match (&config.base_url, &mock) {
        (Some(url), _) => (url.clone(), std::env::var(&config.api_key_env).ok()),
        (None, Some(mock)) => (mock.base_url(), None),
        (None, None) => unreachable!("a mock is started when no base url is given"),
    };
    let client = ChatClient::new(&base_url, api_key, &config.model).map_err(DemoError::Client)?;
    // The strategies that budget tokens run against a mock whose token limit binds.
    let token_mock = match &config.base_url {
        None if config.strategies.iter().any(|s| s.binds_on_tokens()) => Some(
            MockServer::start(config.token_server())
                .await
                .map_err(DemoError::Io)?,
        ),
        _ => None,
    };
    let token_client = match &token_mock {
        Some(mock) => {
            ChatClient::new(&mock.base_url(), None, &config.model).map_err(DemoError::Client)?
        }
        None => client.clone(),
    };

    let topics = ["ocean", "mountain", "forest", "desert", "city"];
    let prompts: Vec<Arc<str>> = (0..config.prompts)
        .map(|i| {
            Arc::from(format!(
                "Write a haiku about {} #{i}",
                topics[i % topics.len()]
            ))
        })
        .collect();

    let tokens: u64 = prompts
        .iter()
        .map(|p| usage_for(p, client.max_tokens()))
        .sum();
    match &mock {
        Some(mock) => {
            let s = mock.config();
            out.line(format!(
                "Mock OpenAI-compatible API on {}: {} requests/s (burst {}), {} at once, ~{}ms per completion; 429 + Retry-After beyond any limit.",
                mock.base_url(),
                s.rate_per_sec,
                s.burst,
                s.max_concurrent,
                s.latency.as_millis(),
            ));
            out.line(format!(
                "The fastest any client could finish {} prompts: {}.\n",
                config.prompts,
                table::secs(s.ideal_makespan(config.prompts, tokens))
            ));
            if let Some(token_mock) = &token_mock {
                let t = token_mock.config();
                out.line(format!(
                    "The token-budget row runs against the same mock limited to {} tokens a minute ({} back to back), charged as prompt + max_tokens on admission and refunded down to the usage: {} tokens in all, the fastest {}.\n",
                    t.token_rate_per_sec * 60.0,
                    t.token_burst,
                    tokens,
                    table::secs(t.ideal_makespan(config.prompts, tokens))
                ));
            }
        }
        None => out.line(format!(
            "Endpoint {} (model {}, key from ${}: {}).\n",
            client.endpoint(),
            config.model,
            config.api_key_env,
            if std::env::var_os(&config.api_key_env).is_some() {
                "set"
            } else {
                "not set"
            },
        )),
    }

    let knobs = Knobs {
        time_scale: config.time_scale,
        rate: config.client_rate(),
        tokens: config.client_tokens(),
        progress: config.progress,
    };
    let mut rows = Vec::new();
    let mut runs = Vec::new();
    for &strategy in &config.strategies {
        let (mock, client) = if strategy.binds_on_tokens() {
            (token_mock.as_ref().or(mock.as_ref()), &token_client)
        } else {
            (mock.as_ref(), &client)
        };
        if let Some(mock) = mock {
            mock.reset();
        }
        out.line(format!("▶ {}: {}", strategy.name(), strategy.description()));
        let pushed = strategy.run(&prompts, client, &knobs).await;
        let s = &pushed.summary;
        let server = mock.map(MockServer::stats);
        let efficiency = mock.filter(|_| s.failed == 0).map(|mock| {
            let tokens = server.as_ref().map_or(0, |seen| seen.completed_tokens);
            let ideal = mock.config().ideal_makespan(s.total, tokens);
            if s.elapsed.is_zero() {
                1.0
            } else {
                ideal.as_secs_f64() / s.elapsed.as_secs_f64()
            }
        });
        out.line(format!("  {s}"));
        if config.plot.is_some() {
            runs.push(plot::Run {
                label: strategy.name().to_owned(),
                limits: mock.map_or_else(plot::Limits::default, |mock| limits(mock.config())),
                timeline: pushed.timeline.clone(),
            });
        }
        rows.push(Row {
            strategy,
            succeeded: s.succeeded,
            failed: s.failed,
            attempts: s.attempts,
            retries: s.retries,
            rate_limited: pushed.rate_limited,
            elapsed: s.elapsed,
            efficiency,
            server,
        });
    }
    let report = Report {
        prompts: config.prompts,
        rows,
        server: mock.as_ref().map(|m| m.config().clone()),
    };
    out.line(format!("\n{}", report.table()));
    if mock.is_some() {
        out.line(
            "efficiency: the fastest any client could finish every prompt within the server's limits, \
             divided by the time taken; \"-\" where prompts were lost.",
        );
    }
    if let Some(token_mock) = token_mock {
        token_mock.shutdown().await;
    }
    if let Some(mock) = mock {
        mock.shutdown().await;
    }
    if let Some(path) = &config.plot {
        let title = match &report.server {
            Some(s) => format!(
                "gate demo: {} prompts, mock API at {} requests/s, {} at once, ~{} ms each",
                config.prompts,
                s.rate_per_sec,
                s.max_concurrent,
                s.latency.as_millis()
            ),
            None => format!("gate demo: {} prompts against {}", config.prompts, base_url),
        };
        plot::write(path, &title, &runs).map_err(DemoError::Plot)?;
        out.line(format!("Plot written to {}.", path.display()));
    }
    Ok(report)
}

/// A mock's limits, for the plot's dashed lines.
fn limits(mock: &MockConfig) -> plot::Limits {
    plot::Limits {
        concurrency: Some(mock.max_concurrent),
        requests_per_min: Some(mock.rate_per_sec * 60.0),
        tokens_per_min: Some(mock.token_rate_per_sec * 60.0),
    }
}
