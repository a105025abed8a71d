//! `demo --replicas 3`: three worker processes (this test binary, re-executed in worker
//! mode, which runs what the demo's workers run) against one mock, each keeping the whole
//! quota to itself, then sharing it through a redis-server of the demo's own on 127.0.0.1.
//! Alone, the fleet asks for three times the quota and the server refuses in bulk; shared,
//! nothing is lost and hardly anything refused.

use examples::Out;
use examples::demo::replicas;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Some(status) = replicas::run_if_worker(&runtime, &args) {
        std::process::exit(i32::from(status));
    }
    // Under `cargo test`, the harness's own arguments (filters) are ignored.
    let out = Out::capture();
    let rows = runtime.block_on(replicas::run(3, &out)).unwrap();
    for line in out.lines() {
        eprintln!("{line}");
    }
    let (alone, shared) = (&rows[0], &rows[1]);
    assert_eq!(shared.lost(), 0, "{shared}");
    assert!(shared.refused_fraction() <= 0.05, "{shared}");
    assert!(
        alone.refused_fraction() >= 0.15
            && alone.refused_fraction() > 3.0 * shared.refused_fraction(),
        "{alone}"
    );
    println!("demo_replicas: ok");
}
