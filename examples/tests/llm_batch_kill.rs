//! `llm_batch --resume` after a real `kill -9`: this test runs the tool as a child process
//! (itself, re-executed in child mode, which calls what `examples/llm_batch.rs` calls),
//! kills it with SIGKILL mid-batch, resumes, and checks that the output holds every line
//! once, in order, and that the server answered at most the requests in flight at the kill
//! twice. No test harness (`harness = false`): `main` is the test.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use examples::mock::{MockConfig, MockServer};
use serde_json::{Value, json};

/// Set in the child's environment: run the tool with the arguments given.
const CHILD: &str = "LLM_BATCH_KILL_CHILD";

const LINES: usize = 150;
const CONCURRENCY: usize = 4;

fn main() -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    if std::env::var_os(CHILD).is_some() {
        let code = runtime.block_on(examples::llm_batch::cli::main(
            std::env::args().skip(1),
            None,
        ));
        return ExitCode::from(code);
    }
    runtime.block_on(kill_then_resume());
    println!("test kill_nine_then_resume ... ok");
    println!("1 passed, 0 failed");
    ExitCode::SUCCESS
}

fn tool(args: &[String]) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("the test's own path"));
    command
        .args(args)
        .env(CHILD, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    command
}

fn lines(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |bytes| bytes.iter().filter(|&&b| b == b'\n').count())
}

async fn kill_then_resume() {
    let dir = std::env::temp_dir().join(format!("llm_batch-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    let mut text = String::new();
    for i in 0..LINES {
        let request = json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": format!("Line {i} of the batch")}],
            "max_tokens": 40,
            "metadata": {"id": i},
        });
        text.push_str(&format!("{request}\n"));
    }
    std::fs::write(&input, text).unwrap();

    let server = MockServer::start(MockConfig {
        max_concurrent: CONCURRENCY,
        rate_per_sec: 1_000.0,
        burst: 1_000,
        latency: Duration::from_millis(30),
        // One prompt in 8 stalls for ten completions' time, so that answers arrive out of
        // order and the killed run holds some in its journal.
        stall_one_in: Some((8, Duration::from_millis(300))),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let args: Vec<String> = [
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--base-url",
        &server.base_url(),
        "--rpm",
        "60000",
        "--tpm",
        "10000000",
        "--concurrency",
        &CONCURRENCY.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    // Kill it with SIGKILL once a third of the lines are written and some answers are
    // held, journalled, for a line still in flight.
    let journal = dir.join("out.jsonl.pending");
    let mut child = tool(&args).spawn().expect("the child starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines(&output) < LINES / 3 || lines(&journal) == 0 {
        assert!(
            Instant::now() < deadline,
            "the child wrote too little in 60 s"
        );
        assert!(child.try_wait().unwrap().is_none(), "the child ended early");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed: {status:?}");
    let at_kill = lines(&output);
    assert!(at_kill < LINES, "killed before the end ({at_kill} lines)");
    // The server sees the dropped connections end the requests in flight.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answered_before = server.stats().completed;

    // Resume in a new process.
    let mut resume = args.clone();
    resume.push("--resume".into());
    let finished = tool(&resume).output().expect("the resumed child runs");
    assert!(
        finished.status.success(),
        "resume exited {:?}",
        finished.status
    );
    let stdout = String::from_utf8(finished.stdout).unwrap();
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    // The journal's answers count as done.
    assert!(
        summary["skipped"].as_u64().unwrap() > at_kill as u64,
        "{summary}"
    );
    assert_eq!(
        summary["skipped"].as_u64().unwrap() + summary["succeeded"].as_u64().unwrap(),
        LINES as u64,
        "{summary}"
    );

    // Every line once, in order, answered.
    let text = std::fs::read_to_string(&output).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), LINES);
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record["index"], i);
        assert_eq!(record["metadata"], json!({"id": i}));
        assert!(record["response"].is_object(), "line {i}: {record}");
    }
    assert!(!journal.exists());
    // Answers the killed run got but had not written in order were kept in the journal:
    // only the requests on the wire at the kill (at most the concurrency) were asked again.
    let answered = server.stats().completed;
    let repeated = answered - LINES as u64;
    assert!(
        repeated <= CONCURRENCY as u64,
        "{repeated} lines answered twice (killed run: {answered_before}, in all {answered})"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
