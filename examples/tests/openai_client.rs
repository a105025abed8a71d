//! Runs `examples/openai_client.rs` (included as a module) against the mock with small
//! numbers, and checks its glue: async-openai retries nothing itself, so gate sees every
//! 429 and retries it; a spent quota or an oversized request is not retried at all.

use std::time::Duration;

use async_openai::error::{ApiError, ApiErrorResponse, OpenAIError};
use examples::Out;
use gate_core::{Retry, Signal};
use http::StatusCode;

#[allow(dead_code)]
#[path = "../examples/openai_client.rs"]
pub mod openai_client;

use openai_client::{Config, signal};

#[tokio::test]
async fn every_prompt_is_answered_and_every_429_reaches_gate() {
    let config = Config {
        prompts: 24,
        server: examples::mock::MockConfig {
            latency: Duration::from_millis(50),
            ..Config::default().server
        },
        ..Config::default()
    };
    let out = Out::silent();
    let summary = openai_client::run(&config, &out).await.unwrap();
    assert_eq!((summary.succeeded, summary.failed), (24, 0), "{summary:?}");
    // gate is told twice the server's rate: some requests are refused, and each refusal is
    // an attempt gate saw (async-openai's own retry layer would have hidden them).
    assert!(summary.rate_limited > 0, "{summary:?}");
    assert_eq!(summary.attempts, 24 + summary.rate_limited, "{summary:?}");
    // Each 429 paused everyone for its `retry-after-ms`: far fewer refusals than prompts.
    assert!(summary.rate_limited <= 12, "{summary:?}");
    assert!(out.lines().last().unwrap().starts_with("24 of 24 answered"));
}

fn api_error(status: StatusCode, kind: &str, code: Option<&str>, message: &str) -> OpenAIError {
    OpenAIError::ApiError(ApiErrorResponse {
        status_code: status,
        api_error: ApiError {
            message: message.into(),
            r#type: Some(kind.into()),
            code: code.map(Into::into),
            ..ApiError::default()
        },
    })
}

#[test]
fn the_signal_sorts_openais_errors() {
    let rate = api_error(
        StatusCode::TOO_MANY_REQUESTS,
        "requests",
        Some("rate_limit_exceeded"),
        "Rate limit reached for requests",
    );
    assert_eq!(signal(&rate), Signal::overload(None));
    let quota = api_error(
        StatusCode::TOO_MANY_REQUESTS,
        "insufficient_quota",
        Some("insufficient_quota"),
        "You exceeded your current quota",
    );
    assert_eq!(signal(&quota), Signal::PERMANENT);
    let context = api_error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        Some("context_length_exceeded"),
        "This model's maximum context length is 8192 tokens",
    );
    assert_eq!(signal(&context), Signal::PERMANENT);
    let bad = api_error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        None,
        "bad",
    );
    assert_eq!(signal(&bad), Signal::NONE);
    assert_eq!(
        signal(&OpenAIError::InvalidArgument("no model".into())),
        Signal::NONE
    );
}

#[tokio::test(start_paused = true)]
async fn a_spent_quota_is_not_retried() {
    // Regression (langchainjs#1929): a 429 `insufficient_quota` was retried like a rate limit.
    let policy = Retry::builder(8)
        .fixed(Duration::from_secs(1))
        .honor_retry_after_with(signal)
        .build()
        .unwrap();
    let err = policy
        .run(|| async {
            Err::<(), _>(api_error(
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                Some("insufficient_quota"),
                "You exceeded your current quota",
            ))
        })
        .await
        .unwrap_err();
    assert_eq!(err.attempts(), 1);
    assert!(err.is_permanent());
}
