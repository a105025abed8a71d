//! The axum app and its lifecycle.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};

use super::format::duration;
use super::openai::{self, ChatRequest, Reply};
use super::{Admitted, MockConfig, ServerStats, TokenBucket};

/// A running mock API; stops when dropped or [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    config: MockConfig,
    state: Mutex<Limits>,
    /// Prompts seen, by hash, so faults hit only a prompt's first request.
    seen: Mutex<HashSet<u64>>,
    /// Numbers every response, for `x-request-id`.
    responses: AtomicU64,
}

/// Every limit and counter, decided under one lock so a request is admitted by all the
/// limits or by none, and the stats always add up.
#[derive(Debug)]
struct Limits {
    requests: TokenBucket,
    tokens: TokenBucket,
    serving: usize,
    /// Where [`Admitted`] times count from.
    epoch: Instant,
    /// Bumped by each reset, so a request admitted before one does not refund after it.
    generation: u64,
    stats: ServerStats,
}

/// What `x-ratelimit-*` says, read under the lock that decided the request.
#[derive(Debug, Clone, Copy)]
struct RateHeaders {
    limit_requests: u64,
    limit_tokens: u64,
    remaining_requests: u64,
    remaining_tokens: u64,
    reset_requests: Duration,
    reset_tokens: Duration,
}

/// Why a well-formed request was refused.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// The quota is spent.
    Quota,
    /// `prompt + max_tokens` exceeds the token bucket.
    TooLarge { requested: u64 },
    /// `max_concurrent` are being served.
    Concurrency { wait: Duration },
    /// The request bucket is empty.
    Requests { wait: Duration },
    /// The token bucket holds less than `requested`.
    Tokens { wait: Duration, requested: u64 },
}

impl MockServer {
    /// Binds 127.0.0.1 on a free port and serves until dropped.
    pub async fn start(config: MockConfig) -> io::Result<Self> {
        Self::start_on(config, 0).await
    }

    /// Binds 127.0.0.1:`port` (0 for a free one) and serves until dropped.
    pub async fn start_on(config: MockConfig, port: u16) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let now = Instant::now();
        let shared = Arc::new(Shared {
            state: Mutex::new(Limits {
                requests: TokenBucket::new(config.rate_per_sec, config.burst),
                tokens: TokenBucket::with_capacity(config.token_rate_per_sec, config.token_burst),
                serving: 0,
                epoch: now,
                generation: 0,
                stats: ServerStats::default(),
            }),
            config,
            seen: Mutex::new(HashSet::new()),
            responses: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/models", get(models))
            .route("/v1/models/{id}", get(model))
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(
                Arc::clone(&shared),
                stamp_request_id,
            ))
            .with_state(Arc::clone(&shared));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                eprintln!("mock server stopped: {e}");
            }
        });
        Ok(Self {
            addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The OpenAI-style base URL: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Its limits.
    pub fn config(&self) -> &MockConfig {
        &self.shared.config
    }

    /// What it has seen.
    pub fn stats(&self) -> ServerStats {
        self.shared.lock().stats.clone()
    }

    /// Zeroes the counters, the admission log and the quota spent, and fills both buckets,
    /// so the next client starts fresh. Requests still being served keep their slots; their
    /// refunds no longer reach the buckets.
    pub fn reset(&self) {
        let mut limits = self.shared.lock();
        let now = Instant::now();
        limits.requests.refill(now);
        limits.tokens.refill(now);
        limits.epoch = now;
        limits.generation += 1;
        limits.stats = ServerStats {
            peak_concurrency: limits.serving,
            ..ServerStats::default()
        };
    }

    /// Stops accepting, lets requests in progress finish, and waits for the server to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Limits> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a request that may spend `charge` tokens under every limit, or says why not;
    /// either way with the headers that describe the limits after the decision.
    fn admit(self: &Arc<Self>, charge: u64) -> (Result<Serving, Refusal>, RateHeaders) {
        let config = &self.config;
        let mut guard = self.lock();
        // Read under the lock, so the buckets see time in order.
        let now = Instant::now();
        let limits = &mut *guard;
        let decision = if config
            .quota
            .is_some_and(|quota| limits.stats.tokens_spent() >= quota)
        {
            limits.stats.rejected_quota += 1;
            Err(Refusal::Quota)
        } else if charge > limits.tokens.capacity() {
            limits.stats.rejected_too_large += 1;
            Err(Refusal::TooLarge { requested: charge })
        } else if limits.serving >= config.max_concurrent {
            limits.stats.rejected_concurrency += 1;
            // Nobody knows when a slot frees; half a completion is a fair guess.
            Err(Refusal::Concurrency {
                wait: config.latency / 2,
            })
        } else if let Err(wait) = limits.requests.try_take(now) {
            limits.stats.rejected_rate += 1;
            Err(Refusal::Requests { wait })
        } else if let Err(wait) = limits.tokens.try_take_n(charge, now) {
            // The request cell is given back: a refused request is not charged.
            limits.requests.refund(1, now);
            limits.stats.rejected_tokens += 1;
            Err(Refusal::Tokens {
                wait,
                requested: charge,
            })
        } else {
            limits.serving += 1;
            let stats = &mut limits.stats;
            stats.peak_concurrency = stats.peak_concurrency.max(limits.serving);
            stats.tokens_charged = stats.tokens_charged.saturating_add(charge);
            let logged = stats.admissions.len() < MAX_LOGGED;
            if logged {
                stats.admissions.push(Admitted {
                    at: now.saturating_duration_since(limits.epoch),
                    charged: charge,
                    refunded: 0,
                    finished: None,
                });
            }
            Ok(Serving {
                shared: Arc::clone(self),
                generation: limits.generation,
                // Past the log's end once it is full: the refund is then not logged.
                index: if logged {
                    stats.admissions.len() - 1
                } else {
                    usize::MAX
                },
                charged: charge,
                used: charge,
            })
        };
        (decision, limits.headers(now))
    }

    /// The headers as they stand, for an answer that admitted nothing.
    fn headers(&self) -> RateHeaders {
        let mut limits = self.lock();
        limits.headers(Instant::now())
    }

    /// The faults to inject for `prompt`: only on its first request, for the prompts the
    /// configured hashes pick.
    fn faults_for(&self, prompt: &str) -> (Option<Duration>, bool) {
        let config = &self.config;
        if config.stall_one_in.is_none() && config.error_one_in.is_none() {
            return (None, false);
        }
        let hash = openai::hash(prompt);
        let first = self
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(hash);
        if !first {
            return (None, false);
        }
        let picks = |one_in: u64, salt: u64| one_in > 0 && (hash ^ salt).is_multiple_of(one_in);
        let stall = config
            .stall_one_in
            .and_then(|(one_in, stall)| picks(one_in, 0).then_some(stall));
        let error = config
            .error_one_in
            .is_some_and(|one_in| picks(one_in.max(1), 0x5EED));
        (stall, error)
    }
}

impl Limits {
    fn headers(&mut self, now: Instant) -> RateHeaders {
        RateHeaders {
            limit_requests: self.requests.capacity(),
            limit_tokens: self.tokens.capacity(),
            remaining_requests: self.requests.remaining(now),
            remaining_tokens: self.tokens.remaining(now),
            reset_requests: self.requests.until_full(now),
            reset_tokens: self.tokens.until_full(now),
        }
    }
}

/// An admitted request: holds its concurrency slot and its token charge; when dropped (also
/// if the client goes away) frees the slot and refunds `charged - used`.
#[derive(Debug)]
struct Serving {
    shared: Arc<Shared>,
    generation: u64,
    index: usize,
    charged: u64,
    /// What the request keeps charged: the whole charge until its reply is known, then
    /// `prompt + completion`.
    used: u64,
}

impl Serving {
    /// Counts a 200 that reported `total` tokens.
    fn completed(&self, total: u64) {
        let mut limits = self.shared.lock();
        if limits.generation == self.generation {
            limits.stats.completed += 1;
            limits.stats.completed_tokens = limits.stats.completed_tokens.saturating_add(total);
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let refund = self.charged.saturating_sub(self.used);
        let mut limits = self.shared.lock();
        let now = Instant::now();
        limits.serving -= 1;
        if limits.generation != self.generation {
            return;
        }
        limits.tokens.refund(refund, now);
        let at = now.saturating_duration_since(limits.epoch);
        let stats = &mut limits.stats;
        stats.tokens_refunded = stats.tokens_refunded.saturating_add(refund);
        if let Some(admitted) = stats.admissions.get_mut(self.index) {
            admitted.refunded = refund;
            admitted.finished = Some(at);
        }
    }
}

/// Every response gets an `x-request-id` (`req_` and 32 hex digits, as OpenAI's).
async fn stamp_request_id(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let n = shared.responses.fetch_add(1, Relaxed);
    let mut response = next.run(request).await;
    let id = format!("req_{:016x}{:016x}", mix(n), mix(n ^ 0x0123_4567_89AB_CDEF));
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

async fn chat_completions(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let n = {
        let mut limits = shared.lock();
        limits.stats.requests += 1;
        limits.stats.requests
    };
    let request = match openai::parse(&body) {
        Ok(request) => request,
        Err(invalid) => {
            shared.lock().stats.bad_requests += 1;
            let mut response =
                (StatusCode::BAD_REQUEST, axum::Json(invalid.body())).into_response();
            shared.headers().apply(response.headers_mut());
            return response;
        }
    };
    let prompt_tokens = request.prompt_tokens();
    let max_tokens = request
        .max_tokens
        .unwrap_or(shared.config.default_max_tokens);
    let charge = prompt_tokens.saturating_add(max_tokens);
    let (admitted, headers) = shared.admit(charge);
    let mut serving = match admitted {
        Ok(serving) => serving,
        Err(refusal) => {
            let mut response = refused(refusal, &request.model, &shared.config, &headers);
            headers.apply(response.headers_mut());
            return response;
        }
    };
    let (stall, error) = shared.faults_for(&request.last);
    if let Some(stall) = stall {
        shared.lock().stats.stalled += 1;
        sleep(stall).await;
    }
    if error {
        shared.lock().stats.server_errors += 1;
        // The prompt was read; nothing was written.
        serving.used = prompt_tokens;
        drop(serving);
        let body = openai::error_body(
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        );
        let mut response = (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response();
        headers.apply(response.headers_mut());
        return response;
    }
    let reply = Reply::to(&request, max_tokens);
    serving.used = prompt_tokens + reply.tokens();
    // Saturating: a latency of centuries from the command line is served as centuries.
    let latency = Duration::try_from_secs_f64(shared.config.latency.as_secs_f64() * spread(n))
        .unwrap_or(Duration::MAX);
    let id = format!("chatcmpl-mock-{n}");
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut response = if request.stream {
        stream(serving, request, reply, prompt_tokens, latency, id, created)
    } else {
        sleep(latency).await;
        serving.completed(serving.used);
        drop(serving);
        let body = openai::completion(&id, created, &request.model, &reply, prompt_tokens);
        axum::Json(body).into_response()
    };
    headers.apply(response.headers_mut());
    response
}

/// The reply as Server-Sent Events: after half the latency the role, then the words over the
/// other half (in up to 8 bursts), the finish reason, the usage if asked for, `[DONE]`. The
/// request keeps its slot until the last event is sent or the client goes away.
fn stream(
    serving: Serving,
    request: ChatRequest,
    reply: Reply,
    prompt_tokens: u64,
    latency: Duration,
    id: String,
    created: u64,
) -> Response {
    let model = request.model.as_str();
    let event = |chunk: Value| format!("data: {chunk}\n\n");
    let chunk = |delta: Value, finish: Option<&str>| {
        event(openai::chunk(
            &id,
            created,
            model,
            delta,
            finish,
            request.include_usage,
        ))
    };
    const BURSTS: usize = 8;
    let per_burst = reply.words.len().div_ceil(BURSTS).max(1);
    let bursts = reply.words.len().div_ceil(per_burst).max(1);
    let gap = (latency / 2) / u32::try_from(bursts).unwrap_or(u32::MAX);
    let mut events: Vec<(Duration, String)> = Vec::with_capacity(bursts + 1);
    events.push((
        latency / 2,
        chunk(
            json!({"role": "assistant", "content": "", "refusal": null}),
            None,
        ),
    ));
    for (b, words) in reply.words.chunks(per_burst).enumerate() {
        let text: String = words
            .iter()
            .enumerate()
            .map(|(i, word)| {
                let content = if b == 0 && i == 0 {
                    word.clone()
                } else {
                    format!(" {word}")
                };
                chunk(json!({"content": content}), None)
            })
            .collect();
        events.push((gap, text));
    }
    let mut tail = chunk(json!({}), Some(reply.finish_reason));
    if request.include_usage {
        tail.push_str(&event(openai::usage_chunk(
            &id,
            created,
            model,
            prompt_tokens,
            reply.tokens(),
        )));
    }
    tail.push_str("data: [DONE]\n\n");
    events.push((Duration::ZERO, tail));
    let last = events.len() - 1;
    let events = futures_util::stream::unfold(
        (events.into_iter().enumerate(), Some(serving)),
        move |(mut events, mut serving)| async move {
            let (i, (wait, text)) = events.next()?;
            if !wait.is_zero() {
                sleep(wait).await;
            }
            if i == last
                && let Some(serving) = serving.take()
            {
                serving.completed(serving.used);
            }
            Some((Ok::<_, io::Error>(Bytes::from(text)), (events, serving)))
        },
    );
    let mut response = Response::new(Body::from_stream(events));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

impl RateHeaders {
    fn apply(&self, headers: &mut HeaderMap) {
        let mut put = |name: &'static str, value: String| {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        };
        put(
            "x-ratelimit-limit-requests",
            self.limit_requests.to_string(),
        );
        put("x-ratelimit-limit-tokens", self.limit_tokens.to_string());
        put(
            "x-ratelimit-remaining-requests",
            self.remaining_requests.to_string(),
        );
        put(
            "x-ratelimit-remaining-tokens",
            self.remaining_tokens.to_string(),
        );
        put("x-ratelimit-reset-requests", duration(self.reset_requests));
        put("x-ratelimit-reset-tokens", duration(self.reset_tokens));
    }
}

/// The most admissions [`ServerStats::admissions`] logs (about 40 MiB); later ones are
/// counted but not logged, so a mock left running for weeks does not fill memory.
const MAX_LOGGED: usize = 1 << 20;

const LIMITS_PAGE: &str = "Visit https://platform.openai.com/account/rate-limits to learn more.";

/// The 429 for `refusal`, as OpenAI words it.
fn refused(refusal: Refusal, model: &str, config: &MockConfig, headers: &RateHeaders) -> Response {
    let org = "in organization org-mock";
    let (message, kind, code, wait) = match refusal {
        Refusal::Quota => (
            "You exceeded your current quota, please check your plan and billing details. For \
             more information on this error, read the docs: \
             https://platform.openai.com/docs/guides/error-codes/api-errors."
                .to_owned(),
            "insufficient_quota",
            "insufficient_quota",
            None,
        ),
        Refusal::TooLarge { requested } => (
            format!(
                "Request too large for {model} {org} on tokens per min (TPM): Limit {}, \
                 Requested {requested}. The input or output tokens must be reduced in order to \
                 run successfully. {LIMITS_PAGE}",
                headers.limit_tokens
            ),
            "tokens",
            "rate_limit_exceeded",
            None,
        ),
        Refusal::Concurrency { wait } => (
            format!(
                "Rate limit reached for {model} {org} on concurrent requests: Limit {0}, Used \
                 {0}, Requested 1. Please try again in {1}. {LIMITS_PAGE}",
                config.max_concurrent,
                duration(wait)
            ),
            "requests",
            "rate_limit_exceeded",
            Some(wait),
        ),
        Refusal::Requests { wait } => (
            format!(
                "Rate limit reached for {model} {org} on requests per min (RPM): Limit {}, Used \
                 {}, Requested 1. Please try again in {}. {LIMITS_PAGE}",
                headers.limit_requests,
                headers.limit_requests - headers.remaining_requests.min(headers.limit_requests),
                duration(wait)
            ),
            "requests",
            "rate_limit_exceeded",
            Some(wait),
        ),
        Refusal::Tokens { wait, requested } => (
            format!(
                "Rate limit reached for {model} {org} on tokens per min (TPM): Limit {}, Used \
                 {}, Requested {requested}. Please try again in {}. {LIMITS_PAGE}",
                headers.limit_tokens,
                headers.limit_tokens - headers.remaining_tokens.min(headers.limit_tokens),
                duration(wait)
            ),
            "tokens",
            "rate_limit_exceeded",
            Some(wait),
        ),
    };
    let body = openai::error_body(&message, kind, None, Some(code));
    let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    if let Some(wait) = wait {
        // Whole seconds rounded up, as HTTP defines `Retry-After`; milliseconds as OpenAI
        // adds them. A day at most, though no bucket here needs that long.
        let wait = wait.min(Duration::from_secs(86_400));
        let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
        let millis =
            (wait.as_millis() + u128::from(!wait.subsec_nanos().is_multiple_of(1_000_000))).max(1);
        let headers = response.headers_mut();
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        headers.insert(
            "retry-after-ms",
            HeaderValue::from(u64::try_from(millis).unwrap_or(u64::MAX)),
        );
    }
    response
}

async fn models() -> Response {
    let data: Vec<Value> = openai::MODELS.iter().map(|id| openai::model(id)).collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

async fn model(Path(id): Path<String>) -> Response {
    if openai::MODELS.contains(&id.as_str()) {
        return axum::Json(openai::model(&id)).into_response();
    }
    let body = openai::error_body(
        &format!("The model '{id}' does not exist or you do not have access to it."),
        "invalid_request_error",
        Some("model"),
        Some("model_not_found"),
    );
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

async fn not_found(request: Request) -> Response {
    let body = openai::error_body(
        &format!(
            "Invalid URL ({} {})",
            request.method(),
            request.uri().path()
        ),
        "invalid_request_error",
        None,
        None,
    );
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

/// A deterministic factor in 0.6..1.4 for request `n`, so latencies vary like a real API's.
fn spread(n: u64) -> f64 {
    0.6 + 0.8 * (mix(n) % 10_000) as f64 / 10_000.0
}

/// splitmix64's finaliser.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
