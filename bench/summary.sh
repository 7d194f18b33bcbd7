#!/usr/bin/env bash
# GET /v1/me/summary (issue 8: "p99 <= 5 ms at 2,000 req/s"): seeds BENCH_CUSTOMERS customers,
# each with two accounts and BENCH_MOVEMENTS movements spread over them, gets an access token
# for each (legacy password grant, scope banking:read), then loads GET /v1/me/summary at a
# fixed rate, open loop (bench/summary.mjs: latency from the scheduled time, tokens taken
# round-robin so every customer's profile cache entry and accounts are in play), and prints
# p50/p99 against the goal. With build-bench/bench_loadgen (a C open-loop generator) it
# measures /healthz first in the same run as the floor, then the summary.
#
#   bench/summary.sh [BUILD_DIR]     (default build-bench)
# Environment: BENCH_RATE (2000), BENCH_SECONDS (20), BENCH_CUSTOMERS (20),
# BENCH_MOVEMENTS (40 per customer), BENCH_THREADS (server event loops, 2).
set -euo pipefail
cd "$(dirname "$0")/.."
b=${1:-build-bench}
bin=$b/boveda
rate=${BENCH_RATE:-2000}
seconds=${BENCH_SECONDS:-20}
customers=${BENCH_CUSTOMERS:-20}
movements=${BENCH_MOVEMENTS:-40}
threads=${BENCH_THREADS:-2}
for tool in node curl openssl; do
    command -v "$tool" >/dev/null || { echo "summary.sh: $tool not found (scripts/install-deps --bench)" >&2; exit 1; }
done
[[ -x $bin ]] || { echo "summary.sh: $bin not built" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/boveda-summary-bench.XXXXXX")
pid=
cleanup() {
    [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
export BOVEDA_DATA_DIR=$tmp/data BOVEDA_ADMIN_TOKEN=$(openssl rand -hex 24) BOVEDA_LOG_LEVEL=warn \
    BOVEDA_MFA_LOGIN_POLICY=enrolled
BOVEDA_HTTP_LISTEN=127.0.0.1:$port BOVEDA_THREADS=$threads "$bin" serve 2>"$tmp/server.log" &
pid=$!
api=http://127.0.0.1:$port
for _ in $(seq 100); do curl -sf "$api/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "$api/readyz" >/dev/null || { cat "$tmp/server.log" >&2; exit 1; }

loadgen=$b/bench_loadgen
if [[ -x $loadgen ]]; then
    # seed, then the C open-loop generator: GET /healthz first (the floor this machine and
    # generator give at that rate, same run), then the summary
    node bench/summary.mjs "$api" "$bin" "$customers" "$movements" "$rate" "$seconds" "$tmp/tokens"
    echo "GET /healthz (baseline):      $("$loadgen" 127.0.0.1 "$port" /healthz "$rate" "$seconds" 16)"
    out=$("$loadgen" 127.0.0.1 "$port" /v1/me/summary "$rate" "$seconds" 16 "$tmp/tokens")
    echo "GET /v1/me/summary:           $out"
    p99=$(sed -n 's/.* p99 \([0-9.]*\) ms.*/\1/p' <<<"$out")
    met=$(awk -v p="$p99" 'BEGIN { print (p != "" && p <= 5.0) ? "met" : "NOT met" }')
    echo "  goal p99 <= 5 ms at $rate req/s: $met"
else
    node bench/summary.mjs "$api" "$bin" "$customers" "$movements" "$rate" "$seconds"
fi
