//! `--plot run.svg`: the demo and `llm_batch` each run a short scripted run against the
//! mock on 127.0.0.1 and write a picture of it, which parses as SVG and holds each run's
//! panels, series and labels; a file in a directory that does not exist is a clear error
//! before the run, not a panic after it.

use std::path::{Path, PathBuf};

use examples::Out;
use examples::demo::{self, Config, DemoError, Strategy};
use examples::llm_batch::args::Args;
use examples::llm_batch::stop::Stop;
use examples::llm_batch::{RunError, run_plotted};
use examples::mock::{MockConfig, MockServer};

/// The colours the picture draws its series in (plot/draw.rs).
const LIMIT: &str = "#1F77B4";
const IN_FLIGHT: &str = "#FF7F0E";
const RATE: &str = "#2CA02C";
const REFUSED: &str = "#D62728";
const SERVER: &str = "#5A5A5A";

fn testdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gate-plot-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// What an SVG file holds: its texts, and how many polylines it draws in each colour.
struct Drawn {
    texts: Vec<String>,
    strokes: std::collections::HashMap<String, usize>,
}

impl Drawn {
    fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).expect("the plot was written");
        let doc = roxmltree::Document::parse(&text).expect("the plot is well-formed XML");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg", "the root is <svg>");
        assert_eq!(
            root.tag_name().namespace(),
            Some("http://www.w3.org/2000/svg")
        );
        let mut strokes = std::collections::HashMap::new();
        let mut texts = Vec::new();
        for node in root.descendants().filter(|n| n.is_element()) {
            match node.tag_name().name() {
                "text" => texts.push(node.text().unwrap_or_default().trim().to_owned()),
                "polyline" | "line" => {
                    let stroke = node.attribute("stroke").unwrap_or_default().to_owned();
                    *strokes.entry(stroke).or_default() += 1;
                }
                _ => {}
            }
        }
        Self { texts, strokes }
    }

    fn has_text(&self, wanted: &str) -> bool {
        self.texts.iter().any(|t| t == wanted)
    }

    /// A panel's title, whether its server's limit is drawn or off the scale (which depends
    /// on how fast this machine ran it).
    fn has_title(&self, start: &str) -> bool {
        self.texts.iter().any(|t| t.starts_with(start))
    }

    fn count(&self, stroke: &str) -> usize {
        self.strokes.get(stroke).copied().unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_draws_a_row_per_strategy() {
    let dir = testdir("demo");
    let path = dir.join("run.svg");
    let mut config = Config::from_args(args(&[
        "--prompts",
        "24",
        "--fast",
        "--no-progress",
        "--only",
        "no-limit,adaptive,tokens",
    ]))
    .unwrap();
    config.plot = Some(path.clone());
    let report = demo::run(&config, &Out::silent())
        .await
        .expect("the demo runs");

    let drawn = Drawn::read(&path);
    for strategy in [
        Strategy::NoLimit,
        Strategy::RateAdaptive,
        Strategy::TokenBudget,
    ] {
        let name = strategy.name();
        // The mock's limits, in each panel's title: 8 at once, 200 a second, and the
        // token-budget row's 360,000 tokens a minute (`--fast`).
        assert!(
            drawn.has_text(&format!("{name}: at once (server: 8)")),
            "{name}: {:?}",
            drawn.texts
        );
        assert!(
            drawn.has_title(&format!("{name}: requests/min (server: 12k")),
            "{name}: {:?}",
            drawn.texts
        );
    }
    assert!(
        drawn.has_title("rate + tokens + adaptive: tokens/min (server: 360k"),
        "{:?}",
        drawn.texts
    );
    assert!(drawn.has_text("time (s)"));
    assert!(drawn.has_text("requests at once"));
    assert!(drawn.has_text("tokens/min"));
    assert!(drawn.has_text("429s a minute"));
    // A limit line for each limiter row, in-flight and rate lines for every row (three
    // panels' worth of rates), the server's dashed lines, and the no-limit row's 429s
    // (24 prompts at once against 8 at once: up to 16 refused, fewer when a loaded machine
    // spreads the 24 out, on this test's real clock) as crosses.
    assert!(drawn.count(LIMIT) >= 2, "{:?}", drawn.strokes);
    assert!(drawn.count(IN_FLIGHT) >= 3, "{:?}", drawn.strokes);
    assert!(drawn.count(RATE) >= 6, "{:?}", drawn.strokes);
    assert!(drawn.count(SERVER) >= 3, "{:?}", drawn.strokes);
    let no_limit = &report.rows[0];
    assert!(no_limit.rate_limited >= 1, "{no_limit:?}");
    assert!(drawn.count(REFUSED) >= 2, "{:?}", drawn.strokes);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_demo_refuses_a_plot_in_a_missing_directory_before_it_runs() {
    let dir = testdir("demo-missing");
    let path = dir.join("no-such-directory").join("run.svg");
    let mut config =
        Config::from_args(args(&["--prompts", "2", "--fast", "--no-progress"])).unwrap();
    config.plot = Some(path.clone());
    let started = std::time::Instant::now();
    let e = demo::run(&config, &Out::silent()).await.unwrap_err();
    assert!(matches!(e, DemoError::Plot(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "cannot write the plot to `{}`: its directory does not exist",
            path.display()
        )
    );
    // Before the run: no strategy ran.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(!path.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_demo_takes_the_plot_flag() {
    let config = Config::from_args(args(&["--plot", "out/run.svg"])).unwrap();
    assert_eq!(config.plot, Some(PathBuf::from("out/run.svg")));
    assert!(Config::from_args(args(&["--plot"])).is_err());
}

fn llm_batch_args(dir: &Path, server: &MockServer) -> Args {
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    let mut text = String::new();
    for i in 0..30 {
        let line = serde_json::json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": format!("Write a haiku about line {i}")}],
            "max_tokens": 50,
        });
        text.push_str(&format!("{line}\n"));
    }
    std::fs::write(&input, text).unwrap();
    Args::parse(args(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--base-url",
        &server.base_url(),
        "--rpm",
        "6000",
        "--tpm",
        "1000000",
        "--concurrency",
        "8",
    ]))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_batch_draws_its_run() {
    let dir = testdir("llm_batch");
    let server = MockServer::start(MockConfig {
        max_concurrent: 4,
        rate_per_sec: 200.0,
        burst: 4,
        latency: std::time::Duration::from_millis(20),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let args = llm_batch_args(&dir, &server);
    let path = dir.join("run.svg");
    let finished = run_plotted(&args, &Stop::new(), false, Some(&path))
        .await
        .expect("the run goes");
    assert_eq!(finished.summary.succeeded, 30);

    let drawn = Drawn::read(&path);
    assert!(
        drawn.has_title("llm_batch: requests/min (server: 6.0k"),
        "{:?}",
        drawn.texts
    );
    assert!(
        drawn.has_title("llm_batch: tokens/min (server: 1.0M"),
        "{:?}",
        drawn.texts
    );
    assert!(drawn.has_text("llm_batch: at once"), "{:?}", drawn.texts);
    // The adaptive limit and the limiter's permits out, recorded from the run.
    assert!(drawn.count(LIMIT) >= 1, "{:?}", drawn.strokes);
    assert!(drawn.count(IN_FLIGHT) >= 1, "{:?}", drawn.strokes);
    assert!(drawn.count(RATE) >= 2, "{:?}", drawn.strokes);
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn llm_batch_refuses_a_plot_in_a_missing_directory_before_it_runs() {
    let dir = testdir("llm_batch-missing");
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    let args = llm_batch_args(&dir, &server);
    let path = dir.join("missing").join("run.svg");
    let e = run_plotted(&args, &Stop::new(), false, Some(&path))
        .await
        .unwrap_err();
    assert!(matches!(e, RunError::Plot(_)), "{e:?}");
    assert!(e.to_string().contains("directory does not exist"), "{e}");
    // Nothing was sent, nothing written.
    assert_eq!(server.stats().requests, 0);
    assert!(!args.output.exists());
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
