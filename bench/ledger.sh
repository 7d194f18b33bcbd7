#!/usr/bin/env bash
# The ledger over HTTP (issue 4), then the in-process engine benchmark (bench_ledger).
#   (a) POST /v1/ledger/transfers, keep-alive, 64 connections (wrk + bench/ledger_post.lua:
#       unique references, random pairs among 1,000 funded accounts): transfers/s and p99;
#   (b) at the same time GET /v1/accounts/{id}/movements?limit=4 at a fixed 2,000 req/s
#       (build-bench/bench_loadgen, or bench/rate_get.mjs without it; open loop): achieved
#       rate and p99 while the transfers run as fast as the server takes them;
#   (c) with bench_loadgen: the same reads while transfers arrive at 8,000/s (the HTTP goal's
#       rate, open loop, 64 connections), with the latency of those transfers.
#
#   bench/ledger.sh [BUILD_DIR]     (default build-bench)
# Environment: BENCH_DURATION (default 10s).
set -euo pipefail
cd "$(dirname "$0")/.."
b=${1:-build-bench}
bin=$b/boveda
duration=${BENCH_DURATION:-10s}
accounts=1000
for tool in wrk node curl; do
    command -v "$tool" >/dev/null || { echo "ledger.sh: $tool not found (scripts/install-deps --bench)" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/boveda-ledger-bench.XXXXXX")
pid=
cleanup() {
    [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
token=$(openssl rand -hex 24)
BOVEDA_DATA_DIR=$tmp/data BOVEDA_HTTP_LISTEN=127.0.0.1:$port BOVEDA_ADMIN_TOKEN=$token BOVEDA_THREADS=2 \
    BOVEDA_LOG_LEVEL=warn "$bin" serve 2>"$tmp/server.log" &
pid=$!
api=http://127.0.0.1:$port
for _ in $(seq 100); do curl -sf "$api/readyz" >/dev/null && break; sleep 0.1; done

# accounts: one internal funding account, $accounts customer accounts funded in one batch
node - "$api" "$token" "$accounts" >"$tmp/accounts.lua" <<'JS'
const [api, token, n] = process.argv.slice(2);
const h = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
const post = async (path, body) => {
  const r = await fetch(api + path, { method: 'POST', headers: h, body: JSON.stringify(body) });
  if (r.status >= 300) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.json();
};
const bank = await post('/v1/accounts', { type: 'internal', currency: 'USD', holder_name: 'Bank', allow_negative: true });
const ids = [];
for (let i = 0; i < Number(n); i++)
  ids.push((await post('/v1/accounts', { type: 'checking', currency: 'USD', holder_name: `Bench ${i}` })).id);
await post('/v1/ledger/batches', { transfers: ids.map((id, i) => ({ debit_account: bank.id, credit_account: id,
  amount: '1000000.00', currency: 'USD', reference: `fund-${i}` })) });
console.log(`accounts = {${ids.map((i) => `"${i}"`).join(',')}}`);
JS

cat >"$tmp/post.lua" <<EOF2
dofile("$tmp/accounts.lua")
local counter = 0
local tid = 0
function setup(thread) tid = tid + 1; thread:set("tid", tid) end
function init(args) math.randomseed(os.time() + tid * 7919) end
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $token"
wrk.headers["Content-Type"] = "application/json"
function request()
  counter = counter + 1
  local d = math.random(#accounts)
  local c = math.random(#accounts - 1)
  if c >= d then c = c + 1 end
  local body = string.format('{"debit_account":"%s","credit_account":"%s","amount":"1.25","currency":"USD","reference":"b-%d-%d-%d"}',
    accounts[d], accounts[c], tid, counter, os.time())
  return wrk.format(nil, "/v1/ledger/transfers", nil, body)
end
EOF2
mapfile -t paths < <(grep -o '"[0-9a-f-]*"' "$tmp/accounts.lua" | tr -d '"' | head -200 |
    sed 's|.*|/v1/accounts/&/movements?limit=4|')

wrk -t2 -c64 -d"$duration" --latency -s "$tmp/post.lua" "$api" >"$tmp/post.wrk" &
wpid=$!
sleep 1
if [[ -x $b/bench_loadgen ]]; then # the C open-loop generator leaves the cores to the server
    printf '%s\n' "${paths[@]}" >"$tmp/paths"
    printf '%s\n' "$token" >"$tmp/token"
    "$b/bench_loadgen" 127.0.0.1 "${api##*:}" "@$tmp/paths" 2000 "$(( ${duration%s} - 2 ))" 16 "$tmp/token" \
        >"$tmp/mov.txt" || true
else
    node bench/rate_get.mjs "$api" "$token" 2000 "$(( ${duration%s} - 2 ))" "${paths[@]}" >"$tmp/mov.txt"
fi
wait $wpid
summary() { # FILE -> "req/s p99 non2xx"
    awk '/^Requests\/sec:/ {r=$2} $1=="99%" {p=$2} /Non-2xx/ {e=$NF} END {printf "%s req/s, p99 %s%s\n", r, p, e ? ", non-2xx " e : ""}' "$1"
}
echo "POST /v1/ledger/transfers, 64 connections:        $(summary "$tmp/post.wrk")   (goal >= 8000/s, p99 <= 25ms)"
echo "GET movements?limit=4 meanwhile at 2,000/s:       $(cat "$tmp/mov.txt")   (transfers saturating the cores)"

# (c) the same reads while transfers arrive at the goal's rate, 8,000/s (open loop) instead
# of as fast as the server takes them
if [[ -x $b/bench_loadgen ]]; then
    node - "$tmp/accounts.lua" "$(openssl rand -hex 4)" >"$tmp/posts" <<'JS'
const [file, run] = process.argv.slice(2);
const ids = require('fs').readFileSync(file, 'utf8').match(/"[0-9a-f-]{36}"/g).map((s) => s.slice(1, -1));
for (let i = 0; i < 2000; i++) {
  const d = Math.floor(Math.random() * ids.length);
  let c = Math.floor(Math.random() * (ids.length - 1));
  if (c >= d) c++;
  console.log(`/v1/ledger/transfers\t{"debit_account":"${ids[d]}","credit_account":"${ids[c]}","amount":"1.25",` +
    `"currency":"USD","reference":"r-${run}-{n}"}`);
}
JS
    secs=$(( ${duration%s} ))
    "$b/bench_loadgen" 127.0.0.1 "${api##*:}" "POST@$tmp/posts" 8000 "$secs" 64 "$tmp/token" >"$tmp/post8k.txt" &
    lpid=$!
    sleep 1
    "$b/bench_loadgen" 127.0.0.1 "${api##*:}" "@$tmp/paths" 2000 "$(( secs - 2 ))" 16 "$tmp/token" \
        >"$tmp/mov8k.txt" || true
    wait $lpid || true
    echo "POST /v1/ledger/transfers at 8,000/s (open loop): $(cat "$tmp/post8k.txt")"
    echo "GET movements?limit=4 meanwhile at 2,000/s:       $(cat "$tmp/mov8k.txt")   (goal p99 <= 5ms)"
fi
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=

echo
"$b/bench_ledger"
