//! The baseline: the OpenAI Cookbook's `examples/api_request_parallel_processor.py`, the
//! script people run for this job, reimplemented step for step so that it can be measured
//! in the same harness as `llm_batch`. Its weaknesses are kept on purpose:
//!
//! - **A whole minute of burst.** Both capacities start full (`max_requests_per_minute`
//!   requests and `max_tokens_per_minute` tokens), so the first minute's quota goes out
//!   at once, as fast as the 1 ms main loop spawns requests.
//! - **No concurrency cap** beyond aiohttp's default connector (100 connections), which
//!   [`AIOHTTP_CONNECTIONS`] stands for.
//! - **Estimates never corrected**: a request is charged `prompt + n × max_tokens` (15 if
//!   unset) when sent and never settled from `usage`; the server's headers are not read.
//! - **Retries without backoff**: a failed request goes straight back on the retry queue
//!   and is sent again as soon as the local capacity allows, `max_attempts` in all.
//! - **A 15 s pause keyed on the error's contents**: the current script pauses (all new
//!   requests, for 15 s after the last such error) only when `error.code == "429"`, a code
//!   the API does not send (it sends `rate_limit_exceeded`), so it never pauses
//!   ([`PauseOn::ErrorCode429`]); earlier revisions matched `"Rate limit"` in the message
//!   ([`PauseOn::RateLimitMessage`]), which does pause.
//! - **Completion order**: each result is appended as `[request, response, metadata?]` when
//!   it arrives, so the output is not in input order and carries no index.
//! - **One process, no resume.**
//!
//! Token counts stand in for tiktoken's `cl100k_base` with a character count / 4, rounded
//! up, per string (the same rule the server charges by, so the baseline's estimates are no
//! worse than tiktoken's would be).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::{Instant, sleep};

/// aiohttp's `TCPConnector` default `limit`: the only cap on requests in flight.
pub const AIOHTTP_CONNECTIONS: usize = 100;

/// `seconds_to_pause_after_rate_limit_error`.
pub const PAUSE_AFTER_RATE_LIMIT_ERROR: Duration = Duration::from_secs(15);

/// `seconds_to_sleep_each_loop`.
pub const SLEEP_EACH_LOOP: Duration = Duration::from_millis(1);

/// Which errors the script takes for rate-limit errors (and pauses after).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PauseOn {
    /// `error["error"]["code"] == "429"`: the current script.
    #[default]
    ErrorCode429,
    /// `"Rate limit" in error["error"]["message"]`: earlier revisions.
    RateLimitMessage,
}

/// The script's arguments.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--request_url`, e.g. `http://127.0.0.1:8080/v1/chat/completions`.
    pub request_url: String,
    /// `--api_key`.
    pub api_key: Option<String>,
    /// `--max_requests_per_minute`.
    pub max_requests_per_minute: f64,
    /// `--max_tokens_per_minute`.
    pub max_tokens_per_minute: f64,
    /// `--max_attempts` (5 by default).
    pub max_attempts: u32,
    /// Which script revision's rate-limit test.
    pub pause_on: PauseOn,
    /// The script's minute: 60 s. Harnesses shorten it, with the mock's clock, to run a
    /// minute's schedule in seconds; the 15 s pause and the 1 ms loop shrink with it.
    pub minute: Duration,
}

/// `StatusTracker`, plus the attempts made (the script does not count them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusTracker {
    /// `num_tasks_started`.
    pub num_tasks_started: u64,
    /// `num_tasks_in_progress`: the script ends when it reaches 0.
    pub num_tasks_in_progress: u64,
    /// `num_tasks_succeeded`.
    pub num_tasks_succeeded: u64,
    /// `num_tasks_failed`.
    pub num_tasks_failed: u64,
    /// `num_rate_limit_errors`.
    pub num_rate_limit_errors: u64,
    /// `num_api_errors`, excluding rate-limit errors.
    pub num_api_errors: u64,
    /// `num_other_errors`.
    pub num_other_errors: u64,
    /// Requests sent.
    pub attempts: u64,
    /// `time_of_last_rate_limit_error`.
    pub time_of_last_rate_limit_error: Option<Instant>,
}

/// `APIRequest`.
#[derive(Debug)]
struct ApiRequest {
    request_json: Map<String, Value>,
    token_consumption: f64,
    attempts_left: u32,
    metadata: Option<Value>,
    result: Vec<Value>,
}

/// What every spawned `call_api` shares.
#[derive(Debug)]
struct Shared {
    session: reqwest::Client,
    connections: Semaphore,
    config: Config,
    retry_queue: mpsc::UnboundedSender<ApiRequest>,
    save: Mutex<File>,
    status: Mutex<StatusTracker>,
}

impl Shared {
    fn status(&self) -> std::sync::MutexGuard<'_, StatusTracker> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `append_to_jsonl`.
    fn append(&self, data: &Value) {
        let mut file = self.save.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = writeln!(file, "{data}");
    }
}

/// `process_api_requests_from_file`: sends every request of `requests` (chat-completions
/// bodies, each with an optional `"metadata"`) and appends the results to `save_path` in
/// completion order. Returns the tracker as it stood at the end.
pub async fn process_api_requests(
    requests: impl IntoIterator<Item = Map<String, Value>>,
    save_path: &Path,
    config: Config,
) -> io::Result<StatusTracker> {
    let (retry_queue, mut retries) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        session: reqwest::Client::new(),
        connections: Semaphore::new(AIOHTTP_CONNECTIONS),
        save: Mutex::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(save_path)?,
        ),
        status: Mutex::new(StatusTracker::default()),
        retry_queue,
        config,
    });
    let (max_rpm, max_tpm) = (
        shared.config.max_requests_per_minute,
        shared.config.max_tokens_per_minute,
    );
    let minute = shared.config.minute.as_secs_f64().max(1e-9);
    let scale = minute / 60.0;
    let (pause, tick) = (
        PAUSE_AFTER_RATE_LIMIT_ERROR.mul_f64(scale),
        SLEEP_EACH_LOOP.mul_f64(scale),
    );
    let mut next_request: Option<ApiRequest> = None;
    let mut available_request_capacity = max_rpm;
    let mut available_token_capacity = max_tpm;
    let mut last_update_time = Instant::now();
    let mut file_not_finished = true;
    let mut requests = requests.into_iter();
    loop {
        // get next request (if one is not already waiting for capacity)
        if next_request.is_none() {
            if let Ok(request) = retries.try_recv() {
                next_request = Some(request);
            } else if file_not_finished {
                match requests.next() {
                    Some(mut request_json) => {
                        let token_consumption = num_tokens_consumed_from_request(&request_json);
                        let metadata = request_json.remove("metadata");
                        next_request = Some(ApiRequest {
                            request_json,
                            token_consumption,
                            attempts_left: shared.config.max_attempts,
                            metadata,
                            result: Vec::new(),
                        });
                        let mut status = shared.status();
                        status.num_tasks_started += 1;
                        status.num_tasks_in_progress += 1;
                    }
                    None => file_not_finished = false,
                }
            }
        }

        // update available capacity
        let current_time = Instant::now();
        let seconds_since_update = (current_time - last_update_time).as_secs_f64();
        available_request_capacity =
            (available_request_capacity + max_rpm * seconds_since_update / minute).min(max_rpm);
        available_token_capacity =
            (available_token_capacity + max_tpm * seconds_since_update / minute).min(max_tpm);
        last_update_time = current_time;

        // if enough capacity available, call API
        if let Some(request) = &mut next_request
            && available_request_capacity >= 1.0
            && available_token_capacity >= request.token_consumption
        {
            available_request_capacity -= 1.0;
            available_token_capacity -= request.token_consumption;
            request.attempts_left -= 1;
            let request = next_request.take().expect("just matched");
            tokio::spawn(call_api(request, Arc::clone(&shared)));
        }

        // if all tasks are finished, break
        if shared.status().num_tasks_in_progress == 0 {
            break;
        }

        // main loop sleeps briefly so concurrent tasks can run
        sleep(tick).await;

        // if a rate limit error was hit recently, pause to cool down
        let last_error = shared.status().time_of_last_rate_limit_error;
        if let Some(last_error) = last_error {
            let since = last_error.elapsed();
            if since < pause {
                sleep(pause - since).await;
            }
        }
    }
    let status = shared.status().clone();
    Ok(status)
}

/// `APIRequest.call_api`.
async fn call_api(mut request: ApiRequest, shared: Arc<Shared>) {
    let response = {
        let _connection = shared.connections.acquire().await;
        shared.status().attempts += 1;
        let mut post = shared
            .session
            .post(&shared.config.request_url)
            .json(&request.request_json);
        if let Some(key) = &shared.config.api_key {
            post = post.bearer_auth(key);
        }
        match post.send().await {
            Ok(response) => response.json::<Value>().await,
            Err(e) => Err(e),
        }
    };
    let error = match response {
        Ok(response) if response.get("error").is_some() => {
            let mut status = shared.status();
            status.num_api_errors += 1;
            let inner = &response["error"];
            let is_rate_limit = match shared.config.pause_on {
                PauseOn::ErrorCode429 => inner.get("code").map(|code| code == "429"),
                PauseOn::RateLimitMessage => inner
                    .get("message")
                    .and_then(Value::as_str)
                    .map(|m| m.contains("Rate limit")),
            };
            match is_rate_limit {
                Some(true) => {
                    status.time_of_last_rate_limit_error = Some(Instant::now());
                    status.num_rate_limit_errors += 1;
                    status.num_api_errors -= 1;
                }
                Some(false) => {}
                // Python's KeyError inside the `try`: counted as an exception too.
                None => status.num_other_errors += 1,
            }
            response
        }
        Ok(response) => {
            let data = with_metadata(json!([request.request_json, response]), &request);
            shared.append(&data);
            let mut status = shared.status();
            status.num_tasks_in_progress -= 1;
            status.num_tasks_succeeded += 1;
            return;
        }
        Err(e) => {
            shared.status().num_other_errors += 1;
            Value::String(e.to_string())
        }
    };
    request.result.push(error);
    if request.attempts_left > 0 {
        let _ = shared.retry_queue.send(request);
    } else {
        let errors: Vec<Value> = request
            .result
            .iter()
            .map(|e| Value::String(e.to_string()))
            .collect();
        let data = with_metadata(json!([request.request_json, errors]), &request);
        shared.append(&data);
        let mut status = shared.status();
        status.num_tasks_in_progress -= 1;
        status.num_tasks_failed += 1;
    }
}

/// `[request, result, metadata]` if the metadata is truthy, else `[request, result]`.
fn with_metadata(mut data: Value, request: &ApiRequest) -> Value {
    let truthy = match &request.metadata {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Object(m)) => !m.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
    };
    if truthy && let (Value::Array(items), Some(metadata)) = (&mut data, &request.metadata) {
        items.push(metadata.clone());
    }
    data
}

/// `len(encoding.encode(value))`, by the character count / 4 stand-in.
fn encoded_len(value: &Value) -> f64 {
    match value {
        Value::String(s) => s.chars().count().div_ceil(4) as f64,
        other => other.to_string().chars().count().div_ceil(4) as f64,
    }
}

/// `num_tokens_consumed_from_request` for chat completions: 4 per message plus its
/// values' tokens (one less for a `name`), 2 for the reply's priming, plus
/// `n × max_tokens` (15 if unset).
pub fn num_tokens_consumed_from_request(request_json: &Map<String, Value>) -> f64 {
    let max_tokens = request_json
        .get("max_tokens")
        .and_then(Value::as_f64)
        .unwrap_or(15.0);
    let n = request_json.get("n").and_then(Value::as_f64).unwrap_or(1.0);
    let completion_tokens = n * max_tokens;
    let mut num_tokens = 0.0;
    for message in request_json
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        num_tokens += 4.0;
        for (key, value) in message.as_object().into_iter().flatten() {
            num_tokens += encoded_len(value);
            if key == "name" {
                num_tokens -= 1.0;
            }
        }
    }
    num_tokens += 2.0;
    num_tokens + completion_tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_counted_as_the_script_counts_them() {
        let request = json!({
            "messages": [
                {"role": "system", "content": "12345678"},
                {"role": "user", "name": "bob", "content": "hi"},
            ],
            "max_tokens": 100,
        });
        let Value::Object(request) = request else {
            unreachable!()
        };
        // (4 + 2 + 2) + (4 + 1 + 1 - 1 + 1) + 2 + 100.
        assert_eq!(num_tokens_consumed_from_request(&request), 116.0);
        let mut no_max = request.clone();
        no_max.remove("max_tokens");
        no_max.insert("n".into(), json!(2));
        assert_eq!(num_tokens_consumed_from_request(&no_max), 16.0 + 30.0);
    }

    #[test]
    fn metadata_is_appended_only_when_truthy() {
        let request = |metadata| ApiRequest {
            request_json: Map::new(),
            token_consumption: 0.0,
            attempts_left: 0,
            metadata,
            result: Vec::new(),
        };
        let data = json!([{}, {}]);
        assert_eq!(with_metadata(data.clone(), &request(None)), data);
        assert_eq!(with_metadata(data.clone(), &request(Some(json!({})))), data);
        assert_eq!(
            with_metadata(data, &request(Some(json!({"id": 1})))),
            json!([{}, {}, {"id": 1}])
        );
    }
}
