//! The mock against what OpenAI's clients expect of OpenAI, over real TCP on 127.0.0.1:
//! streaming as Server-Sent Events, content parts and tool calls, 400s, headers, the token
//! budget charged on admission and refunded on completion, "Request too large",
//! `insufficient_quota`, the request rate's window, and `/v1/models`. Thresholds are loose
//! where real time is involved: each test's timing margin is hundreds of milliseconds.

use std::time::Duration;

use examples::client::{ApiError, ChatClient};
use examples::mock::{MockConfig, MockServer, estimate_tokens, usage_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A server with limits that do not bind unless a test sets them.
fn roomy() -> MockConfig {
    MockConfig {
        max_concurrent: 100,
        rate_per_sec: 1_000.0,
        burst: 1_000,
        token_rate_per_sec: 1_000_000.0,
        token_burst: 1_000_000,
        latency: Duration::from_millis(20),
        ..MockConfig::default()
    }
}

async fn post(server: &MockServer, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/chat/completions", server.base_url()))
        .json(body)
        .send()
        .await
        .expect("the mock answers")
}

fn ask(prompt: &str, max_tokens: u64) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
    })
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .to_str()
        .expect("ascii")
}

/// Reads Go's duration format (`6m0s`, `1.5s`, `20ms`) as OpenAI sends it.
fn go_duration(text: &str) -> Duration {
    let mut total = 0.0;
    let mut rest = text;
    assert!(!rest.is_empty());
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or_else(|| panic!("no unit in {text}"));
        let value: f64 = rest[..digits].parse().unwrap_or_else(|_| panic!("{text}"));
        rest = &rest[digits..];
        let (_, len, scale) = [
            ("ms", 2, 0.001),
            ("h", 1, 3600.0),
            ("m", 1, 60.0),
            ("s", 1, 1.0),
        ]
        .into_iter()
        .find(|(unit, _, _)| rest.starts_with(unit))
        .unwrap_or_else(|| panic!("bad unit in {text}"));
        total += value * scale;
        rest = &rest[len..];
    }
    Duration::from_secs_f64(total)
}

/// The rate-limit headers every chat-completions answer carries, parsed.
#[derive(Debug)]
struct Limits {
    limit_requests: u64,
    limit_tokens: u64,
    remaining_requests: u64,
    remaining_tokens: u64,
    reset_requests: Duration,
    reset_tokens: Duration,
}

fn limits(response: &reqwest::Response) -> Limits {
    let n = |name: &str| -> u64 { header(response, name).parse().expect(name) };
    Limits {
        limit_requests: n("x-ratelimit-limit-requests"),
        limit_tokens: n("x-ratelimit-limit-tokens"),
        remaining_requests: n("x-ratelimit-remaining-requests"),
        remaining_tokens: n("x-ratelimit-remaining-tokens"),
        reset_requests: go_duration(header(response, "x-ratelimit-reset-requests")),
        reset_tokens: go_duration(header(response, "x-ratelimit-reset-tokens")),
    }
}

fn assert_request_id(response: &reqwest::Response) {
    let id = header(response, "x-request-id");
    assert!(
        id.len() == 36 && id.starts_with("req_") && id[4..].chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
}

/// An SSE body's events' `data`, as the EventSource spec reads them: events end at a blank
/// line, `data:` lines (one optional space after the colon) join with newlines, comments
/// (`:`) and other fields are skipped.
fn sse_data(body: &str) -> Vec<String> {
    let mut events = Vec::new();
    let mut data: Option<String> = None;
    for line in body.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            events.extend(data.take());
        } else if let Some(value) = line.strip_prefix("data:") {
            let value = value.strip_prefix(' ').unwrap_or(value);
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_owned()),
            }
        }
    }
    assert!(data.is_none(), "the stream ended inside an event");
    events
}

#[tokio::test]
async fn a_stream_is_server_sent_events_shaped_as_openai_sends_them() {
    let server = MockServer::start(roomy()).await.unwrap();
    let prompt = "Write a haiku about rivers";
    let plain: Value = post(&server, &ask(prompt, 300)).await.json().await.unwrap();

    let mut body = ask(prompt, 300);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let mut response = post(&server, &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(header(&response, "content-type").starts_with("text/event-stream"));
    assert_request_id(&response);
    limits(&response);
    // Read as it comes, chunk by chunk.
    let mut text = String::new();
    let mut reads = 0;
    while let Some(chunk) = response.chunk().await.unwrap() {
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        reads += 1;
    }
    assert!(reads > 1, "a stream, not one body");
    let events = sse_data(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).expect("each event is JSON"))
        .collect();
    let id = &chunks[0]["id"];
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(&chunk["id"], id);
        assert_eq!(chunk["model"], "gpt-4o-mini");
    }
    let (usage_chunk, with_choices) = chunks.split_last().unwrap();
    // Role first, then content, then the finish reason; usage: null on each of them.
    assert_eq!(with_choices[0]["choices"][0]["delta"]["role"], "assistant");
    let (last, content_chunks) = with_choices[1..].split_last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["choices"][0]["delta"], json!({}));
    let content: String = content_chunks
        .iter()
        .map(|c| {
            assert!(c["choices"][0]["finish_reason"].is_null());
            c["choices"][0]["delta"]["content"].as_str().unwrap()
        })
        .collect();
    assert!(
        with_choices
            .iter()
            .all(|c| c["usage"].is_null() && c.get("usage").is_some())
    );
    assert_eq!(content, plain["choices"][0]["message"]["content"]);
    assert_eq!(
        content_chunks.len() as u64,
        plain["usage"]["completion_tokens"]
    );
    // The last chunk: no choices, the usage.
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(
        usage_chunk["usage"]["total_tokens"],
        plain["usage"]["total_tokens"]
    );
    assert_eq!(
        plain["usage"]["total_tokens"].as_u64(),
        Some(usage_for(prompt, 300))
    );

    // Without include_usage: no usage field and no usage chunk.
    body["stream_options"] = json!({"include_usage": false});
    let text = post(&server, &body).await.text().await.unwrap();
    let events = sse_data(&text);
    let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(last.get("usage").is_none());
    let stats = server.stats();
    assert_eq!((stats.completed, stats.requests), (3, 3));
    assert_eq!(stats.tokens_spent(), stats.completed_tokens);
}

#[tokio::test]
async fn content_parts_tool_calls_and_tool_messages_are_served() {
    let server = MockServer::start(roomy()).await.unwrap();
    let body = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Answer briefly."}]},
            {"role": "user", "content": [{"type": "text", "text": "What is the weather in Oslo?"}]},
            {"role": "assistant", "content": null, "tool_calls": [{
                "id": "call_abc", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"},
            }]},
            {"role": "tool", "tool_call_id": "call_abc", "content": "light rain, 7 C"},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
        "temperature": 0.2,
        "max_completion_tokens": 64,
    });
    let response = post(&server, &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["object"], "chat.completion");
    assert_eq!(reply["model"], "gpt-4o");
    assert_eq!(reply["choices"][0]["message"]["role"], "assistant");
    let text = "Answer briefly.\nWhat is the weather in Oslo?\nget_weather\n{\"city\":\"Oslo\"}\nlight rain, 7 C";
    assert_eq!(
        reply["usage"]["prompt_tokens"].as_u64(),
        Some(estimate_tokens(text))
    );
    assert!(reply["usage"]["completion_tokens"].as_u64().unwrap() <= 64);
}

#[tokio::test]
async fn malformed_bodies_get_openai_400s() {
    let server = MockServer::start(roomy()).await.unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/chat/completions", server.base_url()))
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_request_id(&response);
    limits(&response);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert!(error["error"]["param"].is_null() && error["error"]["code"].is_null());
    assert!(error["error"]["message"].as_str().unwrap().contains("JSON"));

    let wrong = json!({"model": "m", "messages": [{"role": "user", "content": 42}]});
    let error: Value = post(&server, &wrong).await.json().await.unwrap();
    assert_eq!(
        error,
        json!({"error": {
            "message": "Invalid type for 'messages[0].content': expected one of a string or \
                        array of objects, but got an integer instead.",
            "type": "invalid_request_error",
            "param": "messages[0].content",
            "code": "invalid_type",
        }})
    );
    let stats = server.stats();
    assert_eq!((stats.bad_requests, stats.completed), (2, 0));
    assert!(stats.admissions.is_empty(), "a 400 is not charged");
}

#[tokio::test]
async fn every_answer_carries_parseable_rate_limit_headers() {
    // One request a second (3 back to back), 60 tokens a second (600 in the bucket): what
    // refills during the test is a rounding error.
    let config = MockConfig {
        rate_per_sec: 1.0,
        burst: 3,
        token_rate_per_sec: 60.0,
        token_burst: 600,
        latency: Duration::from_millis(10),
        ..roomy()
    };
    let server = MockServer::start(config).await.unwrap();
    let prompt = "Tell me about tides";
    let charge = estimate_tokens(prompt) + 100;
    let response = post(&server, &ask(prompt, 100)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_request_id(&response);
    let after_one = limits(&response);
    assert_eq!((after_one.limit_requests, after_one.limit_tokens), (3, 600));
    assert_eq!(after_one.remaining_requests, 2);
    // The headers are read when the request is admitted: its whole charge is out.
    assert_eq!(after_one.remaining_tokens, 600 - charge);
    assert!(after_one.reset_requests <= Duration::from_secs(1));
    let full_in = Duration::from_secs_f64(charge as f64 / 60.0);
    // Rounded up to the millisecond.
    assert!(
        after_one.reset_tokens.abs_diff(full_in) <= Duration::from_millis(1),
        "{after_one:?}"
    );
    post(&server, &ask(prompt, 100)).await;
    post(&server, &ask(prompt, 100)).await;
    let refused = post(&server, &ask(prompt, 100)).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_request_id(&refused);
    let at_limit = limits(&refused);
    assert_eq!(at_limit.remaining_requests, 0);
    let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
    let retry_after_ms: u64 = header(&refused, "retry-after-ms").parse().unwrap();
    assert!(retry_after >= 1 && retry_after * 1_000 >= retry_after_ms && retry_after_ms <= 1_000);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["type"], "requests");
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Rate limit reached for gpt-4o-mini in organization org-mock on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in "),
        "{error}"
    );
    assert_eq!(server.stats().rejected_rate, 1);
}

#[tokio::test]
async fn a_concurrency_refusal_is_a_requests_429() {
    let config = MockConfig {
        max_concurrent: 1,
        latency: Duration::from_millis(800),
        ..roomy()
    };
    let server = MockServer::start(config).await.unwrap();
    let slow = tokio::spawn({
        let url = server.base_url();
        async move {
            reqwest::Client::new()
                .post(format!("{url}/chat/completions"))
                .json(&ask("hold the slot", 10))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    while server.stats().admissions.is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let refused = post(&server, &ask("no room", 10)).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header(&refused, "retry-after-ms").parse::<u64>().unwrap() >= 1);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(
        error["error"]["type"], "requests",
        "OpenAI has no `concurrency` type"
    );
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("concurrent requests")
    );
    assert_eq!(slow.await.unwrap(), StatusCode::OK);
    let stats = server.stats();
    assert_eq!((stats.rejected_concurrency, stats.rejected_rate), (1, 0));
    assert_eq!(stats.peak_concurrency, 1);
}

#[tokio::test]
async fn tokens_are_charged_on_admission_and_refunded_on_completion() {
    // 1,000 tokens in the bucket, refilled at 1 a second: only refunds make room.
    let config = MockConfig {
        token_rate_per_sec: 1.0,
        token_burst: 1_000,
        latency: Duration::from_millis(800),
        ..roomy()
    };
    let server = MockServer::start(config).await.unwrap();
    let big = |i: usize| ask(&format!("Write a long essay on topic {i}"), 400);
    let url = server.base_url();
    let send = |body: Value| {
        let url = url.clone();
        tokio::spawn(async move {
            let response = reqwest::Client::new()
                .post(format!("{url}/chat/completions"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        })
    };
    // Two big requests take 2 x (8 + 400) of the 1,000 tokens while they run...
    let running = [send(big(1)), send(big(2))];
    while server.stats().admissions.len() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // ... so a third big one is refused for tokens, while a small one passes.
    let refused = post(&server, &big(3)).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limits(&refused).remaining_tokens < 400);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["type"], "tokens");
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("on tokens per min (TPM)")
    );
    let small = post(&server, &ask("Hi", 10)).await;
    assert_eq!(small.status(), StatusCode::OK);
    let mut used = 0;
    for running in running {
        let (status, reply) = running.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        used += reply["usage"]["total_tokens"].as_u64().unwrap();
    }
    // Their unused max_tokens came back: a big one fits again.
    let again = post(&server, &big(4)).await;
    assert_eq!(again.status(), StatusCode::OK);

    let stats = server.stats();
    assert_eq!(stats.rejected_tokens, 1);
    assert_eq!(stats.admissions.len(), 4);
    let first_two: u64 = stats.admissions[..2].iter().map(|a| a.charged).sum();
    let refunded_two: u64 = stats.admissions[..2].iter().map(|a| a.refunded).sum();
    assert_eq!(
        first_two,
        2 * (estimate_tokens("Write a long essay on topic 1") + 400)
    );
    assert_eq!(first_two - refunded_two, used, "refunded down to the usage");
    assert!(
        stats
            .admissions
            .iter()
            .all(|a| a.finished.is_some_and(|f| f >= a.at))
    );
    assert_eq!(stats.tokens_spent(), stats.completed_tokens);
    assert_eq!(
        stats.tokens_refunded,
        stats.admissions.iter().map(|a| a.refunded).sum::<u64>()
    );
}

#[tokio::test]
async fn a_request_larger_than_the_token_bucket_is_too_large() {
    let config = MockConfig {
        token_burst: 1_000,
        ..roomy()
    };
    let server = MockServer::start(config).await.unwrap();
    let response = post(&server, &ask("Summarise everything", 2_000)).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        response.headers().get("retry-after").is_none(),
        "waiting does not help"
    );
    limits(&response);
    let error: Value = response.json().await.unwrap();
    assert_eq!(
        error,
        json!({"error": {
            "message": "Request too large for gpt-4o-mini in organization org-mock on tokens per \
                        min (TPM): Limit 1000, Requested 2005. The input or output tokens must \
                        be reduced in order to run successfully. Visit \
                        https://platform.openai.com/account/rate-limits to learn more.",
            "type": "tokens",
            "param": null,
            "code": "rate_limit_exceeded",
        }})
    );
    // The client sees it as not worth retrying.
    let small = MockConfig {
        token_burst: 20,
        ..roomy()
    };
    let tiny = MockServer::start(small).await.unwrap();
    let client = ChatClient::new(&tiny.base_url(), None, "gpt-4o-mini").unwrap();
    let err = client.complete("hello").await.unwrap_err();
    assert!(
        matches!(err, ApiError::TooLarge { .. }) && !err.is_transient(),
        "{err}"
    );
    assert_eq!(server.stats().rejected_too_large, 1);
    assert_eq!(server.stats().rejected(), 1);
    assert_eq!(tiny.stats().rejected_too_large, 1);
}

#[tokio::test]
async fn past_its_quota_the_key_gets_insufficient_quota() {
    let config = MockConfig {
        quota: Some(100),
        ..roomy()
    };
    let server = MockServer::start(config).await.unwrap();
    let client = ChatClient::new(&server.base_url(), None, "gpt-4o-mini").unwrap();
    let mut served = 0;
    let err = loop {
        match client.chat("Count to three").await {
            Ok(_) => served += 1,
            Err(e) => break e,
        }
        assert!(served < 100, "the quota never ran out");
    };
    assert!(
        matches!(err, ApiError::QuotaExceeded { .. }) && !err.is_transient(),
        "{err}"
    );
    let stats = server.stats();
    assert!(stats.tokens_spent() >= 100);
    // The last request admitted was admitted with less than the quota spent.
    let last = stats.admissions.last().unwrap();
    assert!(stats.tokens_spent() - (last.charged - last.refunded) < 100);
    let response = post(&server, &ask("again", 10)).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get("retry-after").is_none());
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "insufficient_quota");
    assert_eq!(error["error"]["code"], "insufficient_quota");
    assert!(error["error"]["param"].is_null());
    assert_eq!(server.stats().rejected_quota, 2);
    assert_eq!(server.stats().completed, served);
}

#[tokio::test]
async fn admissions_stay_within_the_request_rate_in_any_window() {
    // 5 back to back, then 20 a second; 40 requests pushed as fast as they go.
    let config = MockConfig {
        rate_per_sec: 20.0,
        burst: 5,
        latency: Duration::from_millis(1),
        ..roomy()
    };
    let server = MockServer::start(config).await.unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", server.base_url());
    let started = std::time::Instant::now();
    while server.stats().completed < 15 && started.elapsed() < Duration::from_secs(10) {
        let response = client
            .post(&url)
            .json(&ask("ping", 5))
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let wait: u64 = header(&response, "retry-after-ms").parse().unwrap();
            assert!(wait <= 50, "one request refills in 50ms, not {wait}ms");
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }
    let stats = server.stats();
    assert_eq!(stats.completed, 15);
    for window_ms in [0, 50, 100, 250, 500] {
        let window = Duration::from_millis(window_ms);
        let most = stats.most_requests_in(window);
        let bound = 5 + (20.0 * window.as_secs_f64()).floor() as u64;
        assert!(most <= bound, "{most} in {window_ms}ms, beyond {bound}");
    }
    let tokens = stats.most_tokens_in(Duration::from_secs(1));
    assert!(tokens <= stats.tokens_charged && tokens > 0);
}

#[tokio::test]
async fn models_are_listed_as_openai_lists_them() {
    let server = MockServer::start(roomy()).await.unwrap();
    let client = reqwest::Client::new();
    let response = client
        .get(format!("{}/models", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_request_id(&response);
    let list: Value = response.json().await.unwrap();
    assert_eq!(list["object"], "list");
    let data = list["data"].as_array().unwrap();
    assert!(data.iter().any(|m| m["id"] == "gpt-4o-mini"));
    for model in data {
        assert_eq!(model["object"], "model");
        assert!(model["created"].is_u64() && model["owned_by"].is_string());
    }
    let one: Value = client
        .get(format!("{}/models/gpt-4o-mini", server.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one, data[0]);
    let missing = client
        .get(format!("{}/models/gpt-9", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_request_id(&missing);
    let error: Value = missing.json().await.unwrap();
    assert_eq!(error["error"]["code"], "model_not_found");
    let nowhere = client
        .get(format!("{}/nowhere", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(nowhere.status(), StatusCode::NOT_FOUND);
    assert_request_id(&nowhere);
    let error: Value = nowhere.json().await.unwrap();
    assert_eq!(error["error"]["message"], "Invalid URL (GET /v1/nowhere)");
}

#[test]
fn go_durations_parse() {
    assert_eq!(go_duration("6m0s"), Duration::from_secs(360));
    assert_eq!(go_duration("1.5s"), Duration::from_millis(1_500));
    assert_eq!(go_duration("20ms"), Duration::from_millis(20));
    assert_eq!(go_duration("1h2m3s"), Duration::from_secs(3_723));
}

#[tokio::test]
async fn async_openai_streams_from_the_mock() {
    use async_openai::Client;
    use async_openai::config::OpenAIConfig;
    use async_openai::types::chat::{
        ChatCompletionRequestUserMessage, ChatCompletionStreamOptions,
        CreateChatCompletionRequestArgs,
    };
    use futures_util::StreamExt;

    let server = MockServer::start(roomy()).await.unwrap();
    let config = OpenAIConfig::new()
        .with_api_base(server.base_url())
        .with_api_key("mock");
    let client = Client::with_config(config);
    let prompt = "Write a haiku about crabs";
    let request = CreateChatCompletionRequestArgs::default()
        .model("gpt-4o-mini")
        .messages([ChatCompletionRequestUserMessage::from(prompt).into()])
        .max_completion_tokens(40u32)
        .stream_options(ChatCompletionStreamOptions {
            include_usage: Some(true),
            include_obfuscation: None,
        })
        .build()
        .unwrap();
    let mut stream = client.chat().create_stream(request).await.unwrap();
    let (mut text, mut chunks, mut usage) = (String::new(), 0, None);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("every chunk parses");
        chunks += 1;
        for choice in &chunk.choices {
            text.push_str(choice.delta.content.as_deref().unwrap_or_default());
        }
        usage = usage.or(chunk.usage);
    }
    let usage = usage.expect("the last chunk has the usage");
    assert!(chunks > 3, "{chunks} chunks");
    assert!(text.starts_with("Mock haiku about crabs:"), "{text}");
    assert_eq!(u64::from(usage.total_tokens), usage_for(prompt, 40));
    assert_eq!(
        u64::from(usage.completion_tokens),
        text.split_whitespace().count() as u64
    );
}
