//! Several `llm_batch` runs against one API, as a fleet of replicas: each keeping the whole
//! quota to itself, the fleet is refused in bulk; sharing it through Redis (`--redis`,
//! `--key`), the fleet stays within it and loses nothing. Against a redis-server of the
//! test's own on 127.0.0.1.
//!
//! The schedule is the issue's ten times faster; `LLM_BATCH_SPEEDUP=K` runs it `K` times
//! faster instead (1: the real speed, about 16 s a fleet), for the figures printed.

#[path = "../../gate-redis/tests/support/mod.rs"]
mod redis_support;

use examples::llm_batch::harness::{Figures, Scenario, run_fleet, speedup_from_env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_sharing_its_quota_through_redis_stays_within_it() {
    let dir = std::env::temp_dir().join(format!("llm_batch-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = redis_support::server();
    let url = server.url();
    let scenario = Scenario::issue().speedup(speedup_from_env(10.0));
    let (alone, _) = run_fleet(&scenario, &dir, 3, None).await.unwrap();
    let (shared, parts) = run_fleet(&scenario, &dir, 3, Some((&url, "fleet-test")))
        .await
        .unwrap();
    eprintln!("{}\n{alone}\n{shared}", Figures::HEADER);
    if let Some(parts) = parts {
        eprintln!("shared: {parts}");
    }

    assert_eq!(shared.answered, 240, "{shared}");
    assert!(shared.refused_pct() <= 5.0, "{shared}");
    assert!(shared.over_ideal_pct() <= 40.0, "{shared}");
    // Each replica alone asks for three times the quota: the server refuses in bulk.
    assert!(
        alone.refused_pct() >= 3.0 * shared.refused_pct().max(1.0),
        "{alone}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
