//! Run with: cargo run --example readme
//!
//! Every Rust snippet of README.md, compiled, as axum keeps its `examples/readme`. Each
//! snippet sits here as README prints it, under a `README: <section>` comment, with what it
//! leaves out (the client, its error, the handler, the gRPC service) written around it;
//! `examples/tests/readme.rs` checks that README's snippets still appear here word for word
//! (whitespace aside), and runs this file's [`run`].
//!
//! [`run`] runs them against each other on 127.0.0.1: README's axum router serves an
//! OpenAI-shaped `POST /v1/chat/completions`, README's `#[gated]` functions and batch call it,
//! and README's tonic line serves a gRPC service that one call goes through. No network.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use examples::client::ChatClient;
use gate_core::{Backpressure, Batch, Elapsed, Retry};
use gate_tower::GateLayer;
use http::uri::PathAndQuery;
use serde_json::{Value, json};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::{Endpoint, Server};
use tonic_prost::ProstCodec;
use tower::{Service, service_fn};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    run().await
}

/// Serves README's router and gRPC service on 127.0.0.1 and calls each of README's snippets
/// once.
pub async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // README's axum router, on a free port.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router()).await });
    let client = Client::new(http)?;

    // README's two `#[gated]` functions.
    println!(
        "complete: {}",
        complete(&client, "Write a haiku about the sea").await?
    );
    println!("moderate: {:?}", moderate(&client, "hello").await?);

    // README's batch.
    let prompts: Vec<String> = (0..5).map(|i| format!("Write a haiku #{i}")).collect();
    let total = prompts.len();
    let succeeded = batch(&client, prompts).await;
    println!("batch: {succeeded} of {total} succeeded");

    // README's tonic line, on a free port found by binding it, then one call through it.
    let grpc = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let server = tokio::spawn(serve_grpc(Greeter, grpc));
    call_greeter(grpc).await?;
    println!("grpc: one call through the gate answered");
    server.abort();
    Ok(())
}

// README: Calling a rate-limited API
use gate_core::gated;

// The real problem: 500 requests a minute, a concurrency nobody knows, 429s beyond it.
// AIMD finds the concurrency, the rate is never exceeded, and one 429's Retry-After pauses
// every caller, not just the one that got it.
#[gated(
    rate = "500/min",
    adaptive = "aimd",
    limit = 50,
    backpressure = true,
    retry = 5
)]
async fn moderate(client: &Client, text: &str) -> Result<Verdict, ApiError> {
    client.moderate(text).await
}

// README: What Python's `asyncio.Semaphore(10)` + tenacity + `tqdm_asyncio.gather` becomes
use gate_core::Gate;

// One gate for every caller of the API, like a module-level asyncio.Semaphore(10).
static OPENAI: Gate = Gate::new(10);

// tenacity's @retry(stop=stop_after_attempt(4), wait=wait_fixed(2)) around `async with sem:`,
// plus asyncio.wait_for(..., 30) per attempt. The permit is held for one attempt and
// released while the call backs off, so a failing caller never blocks healthy ones.
#[gated(gate = OPENAI, retry = 3, wait = "2s", timeout = "30s")]
async fn complete(client: &Client, prompt: &str) -> Result<String, ApiError> {
    client.chat(prompt).await
}

// README: `tqdm_asyncio.gather(*coros)` is a `Batch`
async fn batch(client: &Client, prompts: Vec<String>) -> usize {
    let report = Batch::new(&OPENAI)
        .retry(Retry::fixed(3, Duration::from_secs(2)))
        .run(prompts, |prompt| async move { client.chat(&prompt).await })
        .await;
    println!("{}", report.summary); // succeeded, failed, retries, elapsed, wait percentiles
    report.summary.succeeded
}

// README: On the server side, one line caps what an axum or tonic service runs at once
#[allow(clippy::let_and_return)] // README names the router `app`
fn router() -> Router {
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .layer(GateLayer::new(64).max_wait(Duration::from_secs(2)));
    app
}

// README: the same section, its tonic line
async fn serve_grpc(greeter: Greeter, addr: SocketAddr) -> Result<(), tonic::transport::Error> {
    Server::builder()
        .layer(GateLayer::new(64))
        .add_service(greeter)
        .serve(addr)
        .await?;
    Ok(())
}

// What the snippets leave out.

/// README's API client: a chat-completions client with a moderation call on top.
#[derive(Debug, Clone)]
struct Client(ChatClient);

/// README's API error: the client's, or an attempt that ran out of time. `timeout = "30s"`
/// needs `From<Elapsed>` to report the last attempt's timeout, and `backpressure = true` needs
/// `Backpressure` to read a 429's `Retry-After`.
#[derive(Debug)]
enum ApiError {
    /// The server or the connection failed.
    Api(examples::client::ApiError),
    /// The attempt took longer than its timeout.
    TimedOut(Elapsed),
}

impl From<Elapsed> for ApiError {
    fn from(elapsed: Elapsed) -> Self {
        Self::TimedOut(elapsed)
    }
}

impl Backpressure for ApiError {
    fn is_overload(&self) -> bool {
        matches!(self, Self::Api(e) if e.is_overload())
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api(e) => e.retry_after(),
            Self::TimedOut(_) => None,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Api(e) => e.fmt(f),
            Self::TimedOut(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ApiError {}

/// What `moderate` decides about a text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// Nothing to flag.
    Allowed,
    /// The model flagged the text.
    Flagged,
}

impl Client {
    fn new(addr: SocketAddr) -> Result<Self, examples::client::ClientError> {
        ChatClient::new(&format!("http://{addr}/v1"), None, "gpt-4o-mini").map(Self)
    }

    async fn chat(&self, prompt: &str) -> Result<String, ApiError> {
        self.0.complete(prompt).await.map_err(ApiError::Api)
    }

    async fn moderate(&self, text: &str) -> Result<Verdict, ApiError> {
        let prompt = format!("Flag or allow: {text}");
        let answer = self.0.complete(&prompt).await.map_err(ApiError::Api)?;
        Ok(if answer.contains("flag") {
            Verdict::Flagged
        } else {
            Verdict::Allowed
        })
    }
}

/// README's `chat` handler: an OpenAI-shaped answer that echoes the last message.
async fn chat(axum::Json(request): axum::Json<Value>) -> axum::Json<Value> {
    let prompt = request["messages"][0]["content"]
        .as_str()
        .unwrap_or_default();
    axum::Json(json!({
        "choices": [{ "message": { "role": "assistant", "content": format!("echo: {prompt}") } }]
    }))
}

/// README's `greeter`: a gRPC service whose one method, `Greet`, takes and returns an empty
/// message.
#[derive(Debug, Clone)]
struct Greeter;

const GREET: &str = "/gate.readme.Greeter/Greet";

impl NamedService for Greeter {
    const NAME: &'static str = "gate.readme.Greeter";
}

impl Service<http::Request<Body>> for Greeter {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        Box::pin(async move {
            if request.uri().path() != GREET {
                let path = request.uri().path().to_owned();
                return Ok(tonic::Status::unimplemented(path).into_http());
            }
            let greet = service_fn(|_: tonic::Request<()>| async {
                Ok::<_, tonic::Status>(tonic::Response::new(()))
            });
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<(), ()>::default());
            Ok(grpc.unary(greet, request).await)
        })
    }
}

/// Calls `Greet` once, waiting up to a second for the server to start listening.
async fn call_greeter(addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?;
    let mut tries = 0;
    let channel = loop {
        match endpoint.connect().await {
            Ok(channel) => break channel,
            Err(_) if tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await?;
    client
        .unary(
            tonic::Request::new(()),
            PathAndQuery::from_static(GREET),
            ProstCodec::<(), ()>::default(),
        )
        .await?;
    Ok(())
}
