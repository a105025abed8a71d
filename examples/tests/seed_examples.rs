//! Runs each of the seed's examples (the files `cargo run --example NAME` runs, included here
//! as modules) and checks what it printed and measured. Those without sockets run on paused
//! time, so their seconds of sleeping take no time and their timings are exact.

use std::time::Duration;

use examples::Out;

// Each example's `main` is not called here: the tests call its `run` with their own `Out`.
#[allow(dead_code)]
#[path = "../examples/adaptive.rs"]
pub mod adaptive;
#[allow(dead_code)]
#[path = "../examples/api_calls.rs"]
pub mod api_calls;
#[allow(dead_code)]
#[path = "../examples/basic_gate.rs"]
pub mod basic_gate;
#[allow(dead_code)]
#[path = "../examples/llm_client.rs"]
pub mod llm_client;
#[allow(dead_code)]
#[path = "../examples/with_vs_without.rs"]
pub mod with_vs_without;

#[tokio::test(start_paused = true)]
async fn basic_gate_lets_three_in_at_a_time_and_everyone_runs_zones_one_and_three() {
    let out = Out::silent();
    let outcome = basic_gate::run(&basic_gate::Config::default(), &out).await;
    assert_eq!(
        outcome,
        basic_gate::Outcome {
            elapsed: Duration::from_secs(4),
            peak_inside: 3
        }
    );
    let lines = out.lines();
    // The seed's listing groups the six "Started" lines first; asyncio, like this port,
    // prints a worker's "Inside" right after its "Started" while a permit is free, because
    // taking a free permit does not yield.
    let expected = [
        "[t=0.0s] Worker-0: Started! Approaching the gate...",
        "[t=0.0s] Worker-0: Inside the gate! Working on expensive task...",
        "[t=0.0s] Worker-1: Started! Approaching the gate...",
        "[t=0.0s] Worker-1: Inside the gate! Working on expensive task...",
        "[t=0.0s] Worker-2: Started! Approaching the gate...",
        "[t=0.0s] Worker-2: Inside the gate! Working on expensive task...",
        "[t=0.0s] Worker-3: Started! Approaching the gate...",
        "[t=0.0s] Worker-4: Started! Approaching the gate...",
        "[t=0.0s] Worker-5: Started! Approaching the gate...",
        "[t=2.0s] Worker-0: Finished expensive work, exiting gate.",
        "[t=2.0s] Worker-0: Past the gate, all done!",
        "[t=2.0s] Worker-1: Finished expensive work, exiting gate.",
        "[t=2.0s] Worker-1: Past the gate, all done!",
        "[t=2.0s] Worker-2: Finished expensive work, exiting gate.",
        "[t=2.0s] Worker-2: Past the gate, all done!",
        "[t=2.0s] Worker-3: Inside the gate! Working on expensive task...",
        "[t=2.0s] Worker-4: Inside the gate! Working on expensive task...",
        "[t=2.0s] Worker-5: Inside the gate! Working on expensive task...",
        "[t=4.0s] Worker-3: Finished expensive work, exiting gate.",
        "[t=4.0s] Worker-3: Past the gate, all done!",
    ];
    assert_eq!(&lines[..expected.len()], expected);
    assert!(
        lines
            .last()
            .unwrap()
            .contains("done in 4.0s = 2 rounds of 2.0s")
    );
}

#[tokio::test(start_paused = true)]
async fn api_calls_take_four_rounds_of_the_call_time() {
    let out = Out::silent();
    let outcome = api_calls::run(&api_calls::Config::default(), &out).await;
    assert_eq!(outcome.elapsed, Duration::from_secs(4));
    assert_eq!(outcome.rounds, 4.0);
    assert_eq!(outcome.peak_in_flight, 5);
    let expected: Vec<String> = (0..20)
        .map(|i| format!("Response for request {i}"))
        .collect();
    assert_eq!(outcome.responses, expected);
    let lines = out.lines();
    let starts_at_zero = lines
        .iter()
        .filter(|l| l.starts_with("[t=0.0s]") && l.ends_with("Starting API call"))
        .count();
    assert_eq!(starts_at_zero, 5, "the first round is 5 calls");
    assert!(lines.contains(&"✓ Completed 20 API calls in 4.00 seconds".to_owned()));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("makespan = 4.00 × the call time"))
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_gate_forty_fail_and_with_a_gate_of_ten_none_do() {
    let out = Out::silent();
    let outcome = with_vs_without::run(&with_vs_without::Config::default(), &out).await;
    assert_eq!(outcome.failed_without, 40);
    assert!(
        outcome.peak_without > 10,
        "the server was pushed past its limit"
    );
    assert_eq!(outcome.failed_with, 0);
    assert_eq!(outcome.peak_with, 10);
    let lines = out.lines();
    assert!(lines.contains(&"   Failed requests: 40".to_owned()));
    assert!(lines.contains(&"   Failed requests: 0".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn adaptive_one_gate_keeps_the_limit_and_the_seeds_swap_breaks_it() {
    let out = Out::silent();
    let runs = adaptive::run(&adaptive::Config::default(), &out).await;
    let [one_gate, faithful, owned] = &runs[..] else {
        panic!("three runs")
    };

    assert_eq!(one_gate.variant, adaptive::Variant::OneGate);
    assert_eq!(one_gate.finished, 100);
    assert_eq!((one_gate.successes, one_gate.failures), (90, 10));
    assert_eq!(one_gate.over_limit, 0, "nobody got in above the limit");
    assert!(one_gate.peak_in_flight <= one_gate.highest_limit);
    assert!(one_gate.highest_limit > 10, "the limit did grow");
    assert_eq!(
        one_gate.free_at_end, one_gate.final_limit,
        "no permit lost or duplicated"
    );

    // The seed's code as written: releases go to the new semaphore; callers queued on the
    // old one are never woken.
    assert_eq!(faithful.variant, adaptive::Variant::SeedFaithful);
    assert!(faithful.finished < 100, "{faithful:?}");
    assert_ne!(faithful.free_at_end, faithful.final_limit, "{faithful:?}");

    // With owned permits nobody hangs, but the new semaphore ignores the old holders.
    assert_eq!(owned.variant, adaptive::Variant::SeedOwnedPermits);
    assert_eq!(owned.finished, 100);
    assert!(owned.over_limit > 0, "{owned:?}");

    let lines = out.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("📈 Increasing limit to 15"))
    );
    assert!(lines.iter().any(|l| l.contains("STUCK")));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("(none lost, none duplicated)"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_client_retries_through_timeouts_and_errors_and_answers_every_prompt() {
    let out = Out::silent();
    let outcome = llm_client::run(&llm_client::Config::default(), &out)
        .await
        .expect("mock server starts");
    assert_eq!((outcome.successes, outcome.failures), (50, 0));
    assert!(outcome.server.server_errors > 0, "{outcome:?}");
    assert!(
        outcome.attempts > 50,
        "some attempts were retried: {outcome:?}"
    );
    assert_eq!(outcome.server.completed, 50);
    let lines = out.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("🔁 Retrying (attempt 2)"))
    );
    assert!(lines.iter().any(|l| l.contains("server error 500")));
    assert!(lines.contains(&"   ✓ Successful: 50".to_owned()));
}
