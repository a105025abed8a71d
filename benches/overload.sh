#!/usr/bin/env bash
# Goodput and served latency of `GateLayer::new(16)` (its defaults) and of tower's
# `ConcurrencyLimitLayer::new(16)` in front of a 20 ms handler (about 800 requests a second
# of capacity), under the `load` example on 127.0.0.1:
#
#   burst        160 requests at once
#   bursty 2x    160 workers x 10/s for 5 s (1,600/s offered, in synchronized ticks)
#   sustained 5x 1,000 workers x 4/s, and 2,000 x 2/s, for 5 s (4,000/s offered)
#
# usage: benches/overload.sh
#
# The server runs on core 0 with one tokio worker and the load on core 1. Every run is
# bounded: at most 20,000 requests, about 8 s.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p benches --example overload_server --example load
server=target/release/examples/overload_server
load=target/release/examples/load
port=4200
for scenario in "160 0 0" "160 10 5" "1000 4 5" "2000 2 5"; do
  for mode in gate climit; do
    TOKIO_WORKER_THREADS=1 taskset -c 0 "$server" "$mode" "$port" &
    pid=$!
    sleep 0.4
    echo "[$scenario] $mode: $(taskset -c 1 "$load" "$port" $scenario)"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    port=$((port + 1))
  done
done
