#!/usr/bin/env bash
# OAuth benchmarks (issue 5), same machine, same run, same load generator (wrk + Lua POST):
#   1. client_credentials grants/s (ES256 JWT access tokens): Bóveda vs oidc-provider
#      configured equivalently (bench/oidc-provider-baseline.mjs)  goal >= 10x and >= 1000/s/core
#      Both servers run at once (each idle while the other is measured) and are measured in
#      alternating rounds, so that a slow spell of a shared machine does not fall on one only;
#      each figure is the mean of its rounds.
#   2. introspection/s of a Bóveda access token                   goal >= 5000/s
#   3. idle resident memory of Bóveda after the runs               goal <= 64 MB
#   4. bench_oauth: JWT validation and password logins (in-process)
#
#   bench/oauth.sh [BUILD_DIR]     (default build-bench; needs boveda and bench_oauth built)
# Environment: BENCH_DURATION (default 10s: per measurement, a grant round takes half of it),
# BENCH_ROUNDS (3), BENCH_CONNECTIONS (64), BENCH_THREADS (2).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-bench}
bin=$build/boveda
duration=${BENCH_DURATION:-10s}
rounds=${BENCH_ROUNDS:-3}
round_duration=$(( (${duration%s} + 1) / 2 ))s
conns=${BENCH_CONNECTIONS:-64}
threads=${BENCH_THREADS:-2}
cores=$(nproc)

for tool in wrk node jq; do
    command -v "$tool" >/dev/null || { echo "oauth.sh: $tool not found" >&2; exit 1; }
done
[[ -x $bin ]] || { echo "oauth.sh: $bin not built" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/boveda-oauth-bench.XXXXXX")
boveda_pid=
node_pid=
cleanup() {
    [[ -n $boveda_pid ]] && kill "$boveda_pid" 2>/dev/null && wait "$boveda_pid" 2>/dev/null
    [[ -n $node_pid ]] && kill "$node_pid" 2>/dev/null && wait "$node_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
    node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
wait_up() {
    for _ in $(seq 200); do
        curl -sf -o /dev/null "$1" && return 0
        sleep 0.05
    done
    echo "oauth.sh: $1 did not come up" >&2
    exit 1
}
# wrk with a POST body and Basic auth; prints requests/s of 200 answers only.
post_rate() { # url body basic_user basic_pass [duration]
    cat >"$tmp/post.lua" <<LUA
wrk.method = "POST"
wrk.body = "$2"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic $(printf '%s:%s' "$3" "$4" | base64 -w0)"
LUA
    out=$(wrk -t"$threads" -c"$conns" -d"${5:-$duration}" -s "$tmp/post.lua" "$1")
    # wrk's own summary counts the answers that were not 2xx (a Lua response() callback
    # would make wrk parse every response into Lua, costing it CPU that the server under
    # test then lacks on a shared machine)
    errors=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    [[ -z $errors ]] || { echo "oauth.sh: $errors non-2xx answers from $1" >&2; echo "$out" >&2; exit 1; }
    echo "$out" | awk '/Requests\/sec/ {print $2}'
}

# --- Bóveda ---
port=$(free_port)
export BOVEDA_DATA_DIR=$tmp/data BOVEDA_HTTP_LISTEN=127.0.0.1:$port BOVEDA_THREADS=$threads \
       BOVEDA_LOG_LEVEL=warn BOVEDA_ADMIN_TOKEN=
client=$("$bin" admin clients create --name bench --grant client_credentials --scope "ledger:read ledger:write" --json)
cid=$(echo "$client" | jq -r .client_id)
csec=$(echo "$client" | jq -r .client_secret)
"$bin" serve 2>"$tmp/boveda.log" &
boveda_pid=$!
wait_up "http://127.0.0.1:$port/healthz"

# --- oidc-provider ---
nport=$(free_port)
node bench/oidc-provider-baseline.mjs "$nport" bench-client bench-secret-0123456789abcdefghij 2>"$tmp/node.log" &
node_pid=$!
wait_up "http://127.0.0.1:$nport/.well-known/openid-configuration"

# --- grants, alternating rounds ---
boveda_runs=() node_runs=()
for ((r = 0; r < rounds; r++)); do
    boveda_runs+=("$(post_rate "http://127.0.0.1:$port/oauth2/token" "grant_type=client_credentials" "$cid" "$csec" \
        "$round_duration")")
    node_runs+=("$(post_rate "http://127.0.0.1:$nport/token" \
        "grant_type=client_credentials&scope=ledger%3Aread%20ledger%3Awrite" \
        bench-client bench-secret-0123456789abcdefghij "$round_duration")")
done
kill "$node_pid"; wait "$node_pid" 2>/dev/null || true; node_pid=
mean() { printf '%s\n' "$@" | awk '{s += $1} END {printf "%.0f", s / NR}'; }
boveda_cc=$(mean "${boveda_runs[@]}")
node_cc=$(mean "${node_runs[@]}")

at=$(curl -s -u "$cid:$csec" -d grant_type=client_credentials "http://127.0.0.1:$port/oauth2/token" | jq -r .access_token)
boveda_intro=$(post_rate "http://127.0.0.1:$port/oauth2/introspect" "token=$at" "$cid" "$csec")
sleep 2
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$boveda_pid/status")
kill "$boveda_pid"; wait "$boveda_pid" 2>/dev/null || true; boveda_pid=

ratio=$(awk -v a="$boveda_cc" -v b="$node_cc" 'BEGIN {printf "%.1f", a / b}')
per_core=$(awk -v a="$boveda_cc" -v c="$cores" 'BEGIN {printf "%.0f", a / c}')
cat <<OUT
OAuth benchmark ($cores cores, wrk -t$threads -c$conns, server threads $threads)
  client_credentials grants/s   rounds of $round_duration, alternating: Bóveda ${boveda_runs[*]}; oidc-provider ${node_runs[*]}
                                Bóveda $boveda_cc   oidc-provider $node_cc   ratio ${ratio}x (goal >= 10x)
                                Bóveda per core $per_core/s (goal >= 1000)
  introspection/s               Bóveda $boveda_intro (-d$duration; goal >= 5000)
  idle RSS after the runs       $((rss_kb / 1024)) MB (goal <= 64 MB)
OUT
"$build/bench_oauth" --seconds 2 --logins 40 2>/dev/null
