//! Runs the demo with small numbers (`--prompts 40 --fast`) against its mock server and
//! checks that the table adds up (every prompt, attempt and 429 is accounted for on both
//! sides), that the limiter that keeps within the server's limits loses nothing, and that
//! pushing everything at once does not work.

use examples::Out;
use examples::demo::{self, Config, Strategy};

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_with_small_numbers_adds_up() {
    let config = Config::from_args(args(&["--prompts", "40", "--fast", "--no-progress"]))
        .expect("valid flags");
    let out = Out::silent();
    let report = demo::run(&config, &out).await.expect("the demo runs");
    let server = report.server.as_ref().expect("the mock was used");

    assert_eq!(report.rows.len(), Strategy::ALL.len());
    for row in &report.rows {
        let seen = row.server.as_ref().expect("mock stats");
        let name = row.strategy.name();
        assert_eq!(
            row.succeeded + row.failed,
            40,
            "{name}: every prompt counted once"
        );
        assert_eq!(
            row.attempts,
            40 + row.retries,
            "{name}: attempts = prompts + retries"
        );
        assert_eq!(
            seen.requests, row.attempts,
            "{name}: the server saw every attempt"
        );
        assert_eq!(
            seen.completed, row.succeeded as u64,
            "{name}: each success is one 200"
        );
        assert_eq!(
            seen.rejected(),
            row.rate_limited,
            "{name}: each 429 was counted"
        );
        assert!(row.rate_limited <= row.attempts, "{name}");
        assert!(
            seen.peak_concurrency <= server.max_concurrent,
            "{name}: the mock enforces its limit"
        );
        if row.strategy.stays_within_limits() {
            assert_eq!(row.failed, 0, "{name} lost prompts: {row:?}");
            // Pacing at the server's own rate leaves only the odd 429 from network jitter.
            assert!(
                row.rate_limited * 4 <= row.succeeded as u64,
                "{name} hit the limits: {row:?}"
            );
            let efficiency = row.efficiency.expect("nothing lost, so an efficiency");
            assert!(
                efficiency > 0.05 && efficiency <= 1.05,
                "{name}: {efficiency}"
            );
        }
        // An efficiency is shown exactly when nothing was lost.
        assert_eq!(row.efficiency.is_some(), row.failed == 0, "{name}");
    }
    let no_limit = &report.rows[0];
    assert_eq!(no_limit.strategy, Strategy::NoLimit);
    assert_eq!(no_limit.retries, 0);
    // 40 at once against 8 slots: most are refused (how many depends on how fast the
    // first ones finish while the rest connect), and every failure is a 429.
    assert!(
        no_limit.failed >= 10,
        "all at once against a limit of {}: {no_limit:?}",
        server.max_concurrent
    );
    assert_eq!(no_limit.failed as u64, no_limit.rate_limited);

    // The printed table holds the same figures.
    let lines = out.lines();
    for row in &report.rows {
        let printed = lines
            .iter()
            .find(|l| l.starts_with(&format!("| {} ", row.strategy.name())))
            .unwrap_or_else(|| panic!("no table row for {}", row.strategy));
        let cells: Vec<&str> = printed.split('|').map(str::trim).collect();
        assert_eq!(cells[2], row.succeeded.to_string());
        assert_eq!(cells[3], row.failed.to_string());
        assert_eq!(cells[4], row.retries.to_string());
        assert_eq!(cells[5], row.rate_limited.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_budget_loses_nothing_against_a_binding_token_limit() {
    let config = Config::from_args(args(&[
        "--prompts",
        "40",
        "--only",
        "tokens",
        "--no-progress",
    ]))
    .expect("valid flags");
    let report = demo::run(&config, &Out::silent())
        .await
        .expect("the demo runs");
    let [row] = report.rows.as_slice() else {
        panic!("one row: {:?}", report.rows)
    };
    let seen = row.server.as_ref().expect("mock stats");
    let limits = config.token_server();
    assert_eq!(
        limits.binding_limit(40, seen.completed_tokens),
        "tokens",
        "the token limit binds: {limits:?}"
    );
    assert_eq!((row.succeeded, row.failed), (40, 0), "{row:?}");
    assert!(row.rate_limited <= 1, "{row:?}");
    let efficiency = row.efficiency.expect("nothing lost");
    assert!(
        efficiency >= 0.95,
        "{efficiency} of the binding limit: {row:?}"
    );
    // The mock kept its own limit whatever the client did.
    for secs in [1, 2] {
        let window = std::time::Duration::from_secs(secs);
        let bound = limits.token_burst + (limits.token_rate_per_sec * secs as f64) as u64;
        assert!(seen.most_tokens_in(window) <= bound, "{secs}s");
    }
}

#[test]
fn flags_are_checked() {
    assert!(matches!(
        Config::from_args(args(&["--prompts", "many"])),
        Err(demo::DemoError::Usage(_))
    ));
    assert!(matches!(
        Config::from_args(args(&["--help"])),
        Err(demo::DemoError::Help)
    ));
    let c = Config::from_args(args(&["--only", "fixed,adaptive", "--server-rate", "5"])).unwrap();
    assert_eq!(c.strategies, [Strategy::FixedGate, Strategy::RateAdaptive]);
    assert_eq!(c.server.rate_per_sec, 5.0);
    let fast = Config::from_args(args(&["--fast"])).unwrap();
    assert_eq!(fast.server.latency, Config::default().server.latency / 10);
}

#[tokio::test]
async fn an_https_base_url_is_taken() {
    // TLS is compiled in: an https endpoint is a client like any other (built here, never
    // contacted: the tests reach 127.0.0.1 only).
    let config =
        Config::from_args(args(&["--base-url", "https://api.example.invalid/v1"])).unwrap();
    assert_eq!(
        config.base_url.as_deref(),
        Some("https://api.example.invalid/v1")
    );
    let client = examples::client::ChatClient::new("https://api.example.invalid/v1", None, "m");
    assert!(client.is_ok());
}
