//! `llm_batch` end to end against the mock on 127.0.0.1: order, metadata, the summary,
//! stopping and resuming, bad input, and the command line's exit statuses.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use examples::llm_batch::args::Args;
use examples::llm_batch::resume::ResumeError;
use examples::llm_batch::stop::Stop;
use examples::llm_batch::summary::Stopped;
use examples::llm_batch::{RunError, cli, run};
use examples::mock::{MockConfig, MockServer};
use serde_json::{Value, json};

fn testdir(name: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "llm_batch-it-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn request(i: usize) -> String {
    json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": format!("Write a haiku about line {i}")}],
        "max_tokens": 50,
        "metadata": {"id": i},
    })
    .to_string()
}

fn write_input(path: &Path, lines: impl IntoIterator<Item = String>) {
    let mut text = String::new();
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

fn args(dir: &Path, server: &MockServer) -> Args {
    Args {
        input: dir.join("in.jsonl"),
        output: dir.join("out.jsonl"),
        base_url: server.base_url(),
        rpm: 60_000,
        tpm: 10_000_000,
        concurrency: 8,
        retries: 5,
        resume: false,
        redis: None,
        key: "default".into(),
        instance: None,
        api_key: None,
        period: Duration::from_secs(60),
    }
}

fn output(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn fast_mock() -> MockConfig {
    MockConfig {
        max_concurrent: 8,
        rate_per_sec: 1_000.0,
        burst: 1_000,
        latency: Duration::from_millis(20),
        ..MockConfig::default()
    }
}

/// Asserts that `lines` are records 0..n, each answered, with the metadata echoed.
fn assert_complete(lines: &[Value], n: usize) {
    assert_eq!(lines.len(), n);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["index"], i, "line {i} out of order");
        assert_eq!(line["metadata"], json!({"id": i}));
        assert_eq!(line["response"]["object"], "chat.completion", "{line}");
    }
}

#[tokio::test]
async fn every_line_is_answered_in_input_order_with_its_metadata() {
    let dir = testdir("order");
    let server = MockServer::start(fast_mock()).await.unwrap();
    let args = args(&dir, &server);
    write_input(&args.input, (0..60).map(request));
    let finished = run(&args, &Stop::new(), false).await.unwrap();
    assert_complete(&output(&args.output), 60);
    let summary = finished.summary;
    assert_eq!(
        (summary.succeeded, summary.failed, summary.skipped),
        (60, 0, 0)
    );
    assert_eq!(summary.attempts, server.stats().requests);
    assert!(summary.total_tokens > 0 && summary.prompt_tokens > 0);
    assert_eq!(summary.exit_code(), 0);
    assert!(
        !dir.join("out.jsonl.pending").exists(),
        "the journal is gone"
    );

    // A finished output is not overwritten by accident...
    match run(&args, &Stop::new(), false).await {
        Err(RunError::Resume(ResumeError::Exists(path))) => assert_eq!(path, args.output),
        other => panic!("{other:?}"),
    }
    // ...and resuming it sends nothing.
    let before = server.stats().requests;
    let resumed = Args {
        resume: true,
        ..args.clone()
    };
    let again = run(&resumed, &Stop::new(), false).await.unwrap();
    assert_eq!((again.summary.skipped, again.summary.attempts), (60, 0));
    assert_eq!(server.stats().requests, before);
    assert_complete(&output(&args.output), 60);
}

#[tokio::test]
async fn a_stopped_run_resumes_without_sending_any_line_twice() {
    let dir = testdir("stop");
    let config = MockConfig {
        latency: Duration::from_millis(40),
        ..fast_mock()
    };
    let server = MockServer::start(config).await.unwrap();
    let args = args(&dir, &server);
    write_input(&args.input, (0..120).map(request));
    let stop = Stop::new();
    let watcher = tokio::spawn({
        let (stop, output) = (stop.clone(), args.output.clone());
        async move {
            loop {
                let lines = std::fs::read_to_string(&output).map_or(0, |t| t.lines().count());
                if lines >= 20 {
                    stop.stop(Stopped::Interrupted);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let first = run(&args, &stop, false).await.unwrap();
    watcher.await.unwrap();
    assert_eq!(first.summary.stopped, Some(Stopped::Interrupted));
    assert_eq!(first.summary.exit_code(), 1);
    let written = output(&args.output).len();
    assert!((20..120).contains(&written), "{written} lines written");

    let resumed = Args {
        resume: true,
        ..args.clone()
    };
    let second = run(&resumed, &Stop::new(), false).await.unwrap();
    assert_eq!(second.summary.exit_code(), 0);
    assert_eq!(second.summary.skipped, first.summary.succeeded);
    assert_eq!(
        first.summary.succeeded + second.summary.succeeded,
        120,
        "every line answered once"
    );
    assert_complete(&output(&args.output), 120);
    // Attempts on the wire at the stop finished and were kept: nothing was asked twice.
    assert_eq!(server.stats().completed, 120);
}

#[tokio::test]
async fn a_bad_line_stops_the_run_with_its_number_and_resume_continues_after_the_fix() {
    let dir = testdir("bad");
    let server = MockServer::start(fast_mock()).await.unwrap();
    let args = args(&dir, &server);
    let lines = |bad: bool| {
        (0..30).map(move |i| {
            if bad && i == 11 {
                "{\"model\": \"m\", \"messages\": [".to_owned()
            } else {
                request(i)
            }
        })
    };
    write_input(&args.input, lines(true));
    let finished = run(&args, &Stop::new(), false).await.unwrap();
    let error = finished.input_error.expect("line 12 is bad");
    assert_eq!(error.line, 12);
    assert!(
        error.to_string().starts_with("input line 12: not JSON"),
        "{error}"
    );
    assert_eq!(finished.summary.exit_code(), 2);
    assert_eq!(finished.summary.stopped, Some(Stopped::BadInput));
    // Everything before the bad line was answered; nothing after it was sent.
    assert_complete(&output(&args.output), 11);
    assert_eq!(server.stats().requests, 11);

    write_input(&args.input, lines(false));
    let resumed = Args {
        resume: true,
        ..args.clone()
    };
    let finished = run(&resumed, &Stop::new(), false).await.unwrap();
    assert_eq!(finished.summary.exit_code(), 0);
    assert_complete(&output(&args.output), 30);
}

#[tokio::test]
async fn a_line_the_server_rejects_is_an_error_line_and_exit_status_1() {
    let dir = testdir("rejected");
    let server = MockServer::start(fast_mock()).await.unwrap();
    let args = args(&dir, &server);
    // The mock answers 400 for a message without content.
    let broken = json!({"model": "m", "messages": [{"role": "user"}], "metadata": "x"});
    write_input(&args.input, [request(0), broken.to_string(), request(2)]);
    let finished = run(&args, &Stop::new(), false).await.unwrap();
    let lines = output(&args.output);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["index"], 1);
    assert_eq!(lines[1]["metadata"], "x");
    assert_eq!(lines[1]["error"]["type"], "rejected", "{}", lines[1]);
    assert_eq!(lines[1]["error"]["status"], 400);
    assert_eq!(lines[1]["error"]["attempts"], 1, "a 400 is not retried");
    assert!(lines[2]["response"].is_object());
    assert_eq!(
        (finished.summary.succeeded, finished.summary.failed),
        (2, 1)
    );
    assert_eq!(finished.summary.exit_code(), 1);
}

#[tokio::test]
async fn a_line_larger_than_the_token_budget_fails_at_once_without_a_request() {
    let dir = testdir("too-large");
    let server = MockServer::start(fast_mock()).await.unwrap();
    let args = Args {
        tpm: 10_000,
        ..args(&dir, &server)
    };
    let huge = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                      "max_tokens": 20_000});
    write_input(&args.input, [request(0), huge.to_string(), request(2)]);
    let finished = run(&args, &Stop::new(), false).await.unwrap();
    let lines = output(&args.output);
    assert_eq!(
        lines[1]["error"]["type"], "request_too_large",
        "{}",
        lines[1]
    );
    assert_eq!(lines[1]["error"]["attempts"], 0);
    assert_eq!(lines[1]["error"]["status"], Value::Null);
    assert!(
        lines[1]["error"]["body"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("more than the 10000"),
        "{}",
        lines[1]
    );
    assert_eq!(server.stats().requests, 2, "only the two others were sent");
    assert_eq!(
        (finished.summary.succeeded, finished.summary.failed),
        (2, 1)
    );
}

#[tokio::test]
async fn insufficient_quota_stops_the_batch_and_is_not_retried() {
    let dir = testdir("quota");
    let config = MockConfig {
        max_concurrent: 1,
        // About ten requests' worth.
        quota: Some(600),
        ..fast_mock()
    };
    let server = MockServer::start(config).await.unwrap();
    let args = Args {
        concurrency: 1,
        ..args(&dir, &server)
    };
    write_input(&args.input, (0..50).map(request));
    let finished = run(&args, &Stop::new(), false).await.unwrap();
    let summary = finished.summary;
    assert_eq!(
        summary.stopped,
        Some(Stopped::InsufficientQuota),
        "{summary:?}"
    );
    assert_eq!(summary.exit_code(), 1);
    assert_eq!(summary.failed, 1, "one line says why; the others are left");
    let lines = output(&args.output);
    let last = lines.last().unwrap();
    assert_eq!(last["error"]["type"], "insufficient_quota", "{last}");
    assert_eq!(last["error"]["attempts"], 1, "not retried");
    assert!(lines.len() < 50);
    let stats = server.stats();
    assert_eq!(stats.rejected_quota, 1, "{stats:?}");
    assert_eq!(stats.requests, lines.len() as u64);
}

#[tokio::test]
async fn the_command_line_exits_0_1_or_2() {
    let words = |line: &str| {
        line.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(cli::main(words("--help"), None).await, 0);
    assert_eq!(cli::main(words("--input x"), None).await, 2);
    let dir = testdir("cli");
    let missing = format!(
        "--input {} --output {} --base-url http://127.0.0.1:9/v1 --rpm 1 --tpm 1",
        dir.join("missing.jsonl").display(),
        dir.join("out.jsonl").display()
    );
    assert_eq!(cli::main(words(&missing), None).await, 2, "no such input");

    let server = MockServer::start(fast_mock()).await.unwrap();
    let input = dir.join("in.jsonl");
    write_input(&input, (0..5).map(request));
    let line = format!(
        "--input {} --output {} --base-url {} --rpm 6000 --tpm 1000000",
        input.display(),
        dir.join("out.jsonl").display(),
        server.base_url()
    );
    assert_eq!(cli::main(words(&line), Some("sk-test".into())).await, 0);
    assert_complete(&output(&dir.join("out.jsonl")), 5);
}

// Regression: with no Redis at `--redis` (a mistyped port), the run waited by its failure
// policy without a word, for ever.
#[tokio::test]
async fn a_redis_that_does_not_answer_at_the_start_is_an_error_at_once() {
    let dir = testdir("no-redis");
    let input = dir.join("in.jsonl");
    write_input(&input, (0..2).map(request));
    // A port nothing listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = MockServer::start(fast_mock()).await.unwrap();
    let args = Args {
        redis: Some(format!("redis://127.0.0.1:{port}/")),
        ..args(&dir, &server)
    };
    let started = tokio::time::Instant::now();
    let error = tokio::time::timeout(Duration::from_secs(10), run(&args, &Stop::new(), false))
        .await
        .expect("the run waited for a Redis that was never there")
        .unwrap_err();
    assert!(matches!(error, RunError::NoRedis(_)), "{error:?}");
    assert!(error.to_string().contains("no Redis answers at"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        !dir.join("out.jsonl").exists(),
        "a run that did not start wrote its output"
    );
}

/// A server that answers at once, except the line whose prompt says "stall", which waits
/// while `stalling` is set; it counts the requests it has received.
mod stalling {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Duration;

    use axum::Router;
    use axum::extract::State;
    use axum::routing::post;
    use serde_json::{Value, json};

    pub(crate) struct Server {
        pub(crate) requests: AtomicU64,
        pub(crate) stalling: AtomicBool,
    }

    async fn complete(State(server): State<Arc<Server>>, body: String) -> axum::Json<Value> {
        server.requests.fetch_add(1, Ordering::SeqCst);
        while body.contains("stall") && server.stalling.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        axum::Json(json!({
            "object": "chat.completion",
            "choices": [{"message": {"role": "assistant", "content": "ok"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }))
    }

    pub(crate) async fn start() -> (String, Arc<Server>) {
        let server = Arc::new(Server {
            requests: AtomicU64::new(0),
            stalling: AtomicBool::new(true),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .with_state(Arc::clone(&server));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (base, server)
    }
}

#[tokio::test]
async fn a_stalled_line_holds_back_reading_at_the_window_not_the_whole_input() {
    let dir = testdir("window");
    let (base_url, server) = stalling::start().await;
    let args = Args {
        input: dir.join("in.jsonl"),
        output: dir.join("out.jsonl"),
        base_url,
        rpm: 1_000_000,
        tpm: 100_000_000,
        concurrency: 16,
        retries: 0,
        resume: false,
        redis: None,
        key: "default".into(),
        instance: None,
        api_key: None,
        period: Duration::from_secs(60),
    };
    let n = 2_000;
    write_input(
        &args.input,
        (0..n).map(|i| {
            if i == 0 {
                request(0).replace("haiku", "stall")
            } else {
                request(i)
            }
        }),
    );
    let window = examples::llm_batch::window(args.concurrency) as u64;
    let run = tokio::spawn({
        let args = args.clone();
        async move { run(&args, &Stop::new(), false).await }
    });
    // Every line within the window is sent and answered; none beyond it is read.
    let requests = || server.requests.load(Ordering::SeqCst);
    while requests() < window {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(requests(), window, "lines read past the window");
    assert_eq!(
        std::fs::read_to_string(&args.output).unwrap(),
        "",
        "line 0 first"
    );
    server.stalling.store(false, Ordering::SeqCst);
    let finished = run.await.unwrap().unwrap();
    assert_eq!(finished.summary.succeeded, n as u64);
    let lines = output(&args.output);
    assert_eq!(lines.len(), n);
    assert!(lines.iter().enumerate().all(|(i, l)| l["index"] == i));
}

#[tokio::test]
async fn a_second_ctrl_c_drops_what_is_in_flight_and_keeps_what_is_answered() {
    let dir = testdir("abort");
    let (base_url, server) = stalling::start().await;
    let args = Args {
        input: dir.join("in.jsonl"),
        output: dir.join("out.jsonl"),
        base_url,
        rpm: 1_000_000,
        tpm: 100_000_000,
        concurrency: 8,
        retries: 0,
        resume: false,
        redis: None,
        key: "default".into(),
        instance: None,
        api_key: None,
        period: Duration::from_secs(60),
    };
    let n = 50;
    write_input(
        &args.input,
        (0..n).map(|i| {
            if i == 0 {
                request(0).replace("haiku", "stall")
            } else {
                request(i)
            }
        }),
    );
    let stop = Stop::new();
    let run_task = tokio::spawn({
        let (args, stop) = (args.clone(), stop.clone());
        async move { run(&args, &stop, false).await }
    });
    let journal = dir.join("out.jsonl.pending");
    let held = || std::fs::read_to_string(&journal).map_or(0, |t| t.lines().count());
    // Line 0 hangs on the server; the 49 others are answered and held for it.
    while held() < n - 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.stop(Stopped::Interrupted);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !run_task.is_finished(),
        "a first stop waits for what is on the wire"
    );
    stop.abort(Stopped::Interrupted);
    let finished = tokio::time::timeout(Duration::from_secs(5), run_task)
        .await
        .expect("an abort ends the run at once")
        .unwrap()
        .unwrap();
    assert_eq!(finished.summary.stopped, Some(Stopped::Interrupted));
    assert_eq!(finished.summary.succeeded, n as u64 - 1);
    assert_eq!(std::fs::read_to_string(&args.output).unwrap(), "");
    assert_eq!(held(), n - 1, "the answers are kept");

    // Resumed, only line 0, dropped on the wire, is sent again.
    server.stalling.store(false, Ordering::SeqCst);
    let resumed = Args {
        resume: true,
        ..args.clone()
    };
    let again = run(&resumed, &Stop::new(), false).await.unwrap();
    assert_eq!(
        (again.summary.skipped, again.summary.succeeded),
        (n as u64 - 1, 1)
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), n as u64 + 1);
    let lines = output(&args.output);
    assert_eq!(lines.len(), n);
    assert!(lines.iter().enumerate().all(|(i, l)| l["index"] == i));
}
