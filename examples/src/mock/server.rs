//! The axum app and its lifecycle.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};

use super::{MockConfig, TokenBucket};

/// What the mock has seen since it started or was last [`reset`](MockServer::reset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Requests received.
    pub requests: u64,
    /// Requests answered 200 with a completion.
    pub completed: u64,
    /// Requests answered 429 because `max_concurrent` were already being served.
    pub rejected_concurrency: u64,
    /// Requests answered 429 because the rate limit's bucket was empty.
    pub rejected_rate: u64,
    /// Requests answered 500 by fault injection.
    pub server_errors: u64,
    /// Requests stalled by fault injection.
    pub stalled: u64,
    /// Requests answered 400 (malformed body).
    pub bad_requests: u64,
    /// Most requests being served at once.
    pub peak_concurrency: usize,
}

impl ServerStats {
    /// All 429 answers.
    pub fn rejected(&self) -> u64 {
        self.rejected_concurrency + self.rejected_rate
    }
}

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
    limits: Mutex<Limits>,
    requests: AtomicU64,
    completed: AtomicU64,
    rejected_concurrency: AtomicU64,
    rejected_rate: AtomicU64,
    server_errors: AtomicU64,
    stalled: AtomicU64,
    bad_requests: AtomicU64,
    peak: AtomicUsize,
    /// Prompts seen, by hash, so faults hit only a prompt's first request.
    seen: Mutex<HashSet<u64>>,
}

/// Both limits, decided under one lock so a request is either admitted by both or by none.
#[derive(Debug)]
struct Limits {
    bucket: TokenBucket,
    serving: usize,
}

/// Why a request was refused, and when to come back.
enum Refusal {
    Concurrency(Duration),
    Rate(Duration),
}

impl MockServer {
    /// Binds 127.0.0.1 on a free port and serves until dropped.
    pub async fn start(config: MockConfig) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            limits: Mutex::new(Limits {
                bucket: TokenBucket::new(config.rate_per_sec, config.burst),
                serving: 0,
            }),
            config,
            requests: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            rejected_concurrency: AtomicU64::new(0),
            rejected_rate: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            stalled: AtomicU64::new(0),
            bad_requests: AtomicU64::new(0),
            peak: AtomicUsize::new(0),
            seen: Mutex::new(HashSet::new()),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat_completions))
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
        let s = &self.shared;
        ServerStats {
            requests: s.requests.load(SeqCst),
            completed: s.completed.load(SeqCst),
            rejected_concurrency: s.rejected_concurrency.load(SeqCst),
            rejected_rate: s.rejected_rate.load(SeqCst),
            server_errors: s.server_errors.load(SeqCst),
            stalled: s.stalled.load(SeqCst),
            bad_requests: s.bad_requests.load(SeqCst),
            peak_concurrency: s.peak.load(SeqCst),
        }
    }

    /// Zeroes the counters and refills the rate bucket, so the next client starts fresh.
    /// Requests still being served keep their slots.
    pub fn reset(&self) {
        let s = &self.shared;
        for counter in [
            &s.requests,
            &s.completed,
            &s.rejected_concurrency,
            &s.rejected_rate,
            &s.server_errors,
            &s.stalled,
            &s.bad_requests,
        ] {
            counter.store(0, SeqCst);
        }
        let mut limits = s.lock();
        s.peak.store(limits.serving, SeqCst);
        limits.bucket.refill(Instant::now());
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
    fn lock(&self) -> std::sync::MutexGuard<'_, Limits> {
        self.limits.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a request under both limits, or says why not.
    fn admit(self: &Arc<Self>) -> Result<Serving, Refusal> {
        let mut limits = self.lock();
        if limits.serving >= self.config.max_concurrent {
            // Nobody knows when a slot frees; half a completion is a fair guess.
            return Err(Refusal::Concurrency(self.config.latency / 2));
        }
        limits
            .bucket
            .try_take(Instant::now())
            .map_err(Refusal::Rate)?;
        limits.serving += 1;
        self.peak.fetch_max(limits.serving, SeqCst);
        Ok(Serving(Arc::clone(self)))
    }
}

impl Shared {
    /// The faults to inject for `prompt`: only on its first request, for the prompts the
    /// configured hashes pick.
    fn faults_for(&self, prompt: &str) -> (Option<Duration>, bool) {
        let config = &self.config;
        if config.stall_one_in.is_none() && config.error_one_in.is_none() {
            return (None, false);
        }
        let hash = {
            let mut h = DefaultHasher::new();
            prompt.hash(&mut h);
            h.finish()
        };
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

/// A request being served; frees its slot when dropped (also if the client goes away).
struct Serving(Arc<Shared>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.lock().serving -= 1;
    }
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    model: String,
    messages: Vec<ChatMessage>,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    content: String,
}

async fn chat_completions(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let n = shared.requests.fetch_add(1, SeqCst) + 1;
    let _serving = match shared.admit() {
        Ok(serving) => serving,
        Err(Refusal::Concurrency(wait)) => {
            shared.rejected_concurrency.fetch_add(1, SeqCst);
            return too_many_requests(wait, "concurrency");
        }
        Err(Refusal::Rate(wait)) => {
            shared.rejected_rate.fetch_add(1, SeqCst);
            return too_many_requests(wait, "requests");
        }
    };
    let request: ChatRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            shared.bad_requests.fetch_add(1, SeqCst);
            let body =
                json!({"error": {"message": e.to_string(), "type": "invalid_request_error"}});
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
    };
    let prompt = request.messages.last().map_or("", |m| m.content.as_str());
    let (stall, error) = shared.faults_for(prompt);
    if let Some(stall) = stall {
        shared.stalled.fetch_add(1, SeqCst);
        sleep(stall).await;
    }
    if error {
        shared.server_errors.fetch_add(1, SeqCst);
        let body = json!({"error": {"message": "the server had an error", "type": "server_error"}});
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response();
    }
    sleep(shared.config.latency.mul_f64(spread(n))).await;

    let topic = prompt.rsplit(' ').next().unwrap_or("nothing");
    let content = format!(
        "Mock haiku about {topic}:\nrequests in a line,\nthe gate lets ten through at once,\nnone are turned away."
    );
    let prompt_tokens = prompt.split_whitespace().count();
    let completion_tokens = content.split_whitespace().count();
    shared.completed.fetch_add(1, SeqCst);
    axum::Json(json!({
        "id": format!("chatcmpl-mock-{n}"),
        "object": "chat.completion",
        "created": 0,
        "model": request.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }))
    .into_response()
}

/// 429 with both `Retry-After` (whole seconds, rounded up, as HTTP defines it) and
/// `retry-after-ms` (as OpenAI sends), and an OpenAI-style error body.
fn too_many_requests(wait: Duration, kind: &str) -> Response {
    let millis = wait.as_millis().max(1);
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let body = json!({"error": {
        "message": format!("Rate limit reached for {kind}. Please try again in {millis}ms."),
        "type": kind,
        "code": "rate_limit_exceeded",
    }});
    let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    headers.insert(
        "retry-after-ms",
        HeaderValue::from(u64::try_from(millis).unwrap_or(u64::MAX)),
    );
    response
}

/// A deterministic factor in 0.6..1.4 for request `n`, so latencies vary like a real API's.
fn spread(n: u64) -> f64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    0.6 + 0.8 * (z % 10_000) as f64 / 10_000.0
}
