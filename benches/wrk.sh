#!/usr/bin/env bash
# Throughput of an axum hello world with GateLayer and with tower's ConcurrencyLimitLayer,
# as a fraction of the same server with no layer, under `wrk -t1 -c64` on 127.0.0.1.
#
# usage: benches/wrk.sh [ROUNDS] [SECONDS]        (needs wrk: apt-get install -y wrk)
#
# The server runs on core 0 with one tokio worker and wrk on core 1, so they do not steal
# each other's core. Each round runs the three servers in a rotated order, and the ratios
# are taken within a round, so that drift in the machine's speed cancels out. Per-round
# ratios on a shared 2-core VM spread by +-10%: read the median and the pooled figure.
set -euo pipefail
rounds=${1:-12}
seconds=${2:-5}
cd "$(dirname "$0")/.."
cargo build -q --release -p benches --example hello_server
server=target/release/examples/hello_server
modes=(none gate climit)
port=4100
results=$(mktemp)
for ((r = 0; r < rounds; r++)); do
  for k in 0 1 2; do
    mode=${modes[$(((r + k) % 3))]}
    TOKIO_WORKER_THREADS=1 taskset -c 0 "$server" "$mode" "$port" &
    pid=$!
    sleep 0.4
    rps=$(taskset -c 1 wrk -t1 -c64 -d"${seconds}s" "http://127.0.0.1:$port/" | awk '/Requests\/sec/ {print $2}')
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    echo "$r $mode $rps" | tee -a "$results"
    port=$((port + 1))
  done
done
python3 - "$results" <<'PY'
import collections, statistics, sys
by = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    r, mode, rps = line.split()
    by[r][mode] = float(rps)
for layer in ("gate", "climit"):
    ratios = [d[layer] / d["none"] for d in by.values()]
    pooled = sum(d[layer] for d in by.values()) / sum(d["none"] for d in by.values())
    print(f"{layer:6} / none: median {statistics.median(ratios):.3f}, pooled {pooled:.3f}, "
          f"rounds {min(ratios):.3f}..{max(ratios):.3f}")
PY
rm -f "$results"
