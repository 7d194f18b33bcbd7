#!/usr/bin/env bash
# GET /healthz on Bóveda vs nginx's `return 200`, same load generator, connections and
# worker-thread count, one after the other on this machine.
#
#   bench/http.sh [BOVEDA_BINARY]      (default build-bench/boveda)
#
# Environment: BENCH_DURATION (wrk -d, default 10s), BENCH_CONNECTIONS (default 64),
# BENCH_THREADS (server threads and wrk threads, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build-bench/boveda}
duration=${BENCH_DURATION:-10s}
conns=${BENCH_CONNECTIONS:-64}
threads=${BENCH_THREADS:-2}

for tool in wrk nginx node; do
    command -v "$tool" >/dev/null || { echo "http.sh: $tool not found (scripts/install-deps --bench)" >&2; exit 1; }
done
[[ -x $bin ]] || { echo "http.sh: $bin not built" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/boveda-bench.XXXXXX")
boveda_pid=
nginx_pid=
cleanup() {
    [[ -n $boveda_pid ]] && kill "$boveda_pid" 2>/dev/null && wait "$boveda_pid" 2>/dev/null
    [[ -n $nginx_pid ]] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
    node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# Waits until url answers 200 (at most ~10 s).
wait_up() {
    local url=$1
    for _ in $(seq 100); do
        if node -e 'fetch(process.argv[1]).then(r=>process.exit(r.status===200?0:1),()=>process.exit(1))' "$url"; then
            return 0
        fi
        sleep 0.1
    done
    echo "http.sh: $url did not come up" >&2
    return 1
}

# run_wrk NAME URL: prints "NAME req/s p99" into $tmp/NAME.result.
run_wrk() {
    local name=$1 url=$2
    wrk -t"$threads" -c"$conns" -d1s "$url" >/dev/null # warm-up
    wrk -t"$threads" -c"$conns" -d"$duration" --latency "$url" >"$tmp/$name.wrk"
    local rps p99 errors
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$tmp/$name.wrk")
    p99=$(awk '$1 == "99%" {print $2}' "$tmp/$name.wrk")
    errors=$(grep -E 'Non-2xx|Socket errors' "$tmp/$name.wrk" || true)
    echo "$rps $p99" >"$tmp/$name.result"
    [[ -z $errors ]] || echo "  $name: $errors"
}

# --- Bóveda ---
port=$(free_port)
BOVEDA_DATA_DIR=$tmp/data BOVEDA_HTTP_LISTEN=127.0.0.1:$port BOVEDA_THREADS=$threads \
    BOVEDA_LOG_LEVEL=warn "$bin" serve 2>"$tmp/boveda.log" &
boveda_pid=$!
wait_up "http://127.0.0.1:$port/healthz" || { cat "$tmp/boveda.log" >&2; exit 1; }
run_wrk boveda "http://127.0.0.1:$port/healthz"
kill "$boveda_pid"
wait "$boveda_pid" || true
boveda_pid=

# --- nginx ---
nport=$(free_port)
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx/nginx.conf" <<CONF
worker_processes $threads;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_timeout 65;
    keepalive_requests 100000000;
    client_body_temp_path $tmp/nginx/body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    server {
        listen 127.0.0.1:$nport;
        location /healthz {
            default_type application/json;
            return 200 '{"status":"ok"}';
        }
    }
}
CONF
nginx -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx/nginx.conf" &
nginx_pid=$!
wait_up "http://127.0.0.1:$nport/healthz" || { cat "$tmp/nginx/error.log" >&2; exit 1; }
run_wrk nginx "http://127.0.0.1:$nport/healthz"
kill "$nginx_pid"
wait "$nginx_pid" || true
nginx_pid=

read -r b_rps b_p99 <"$tmp/boveda.result"
read -r n_rps n_p99 <"$tmp/nginx.result"
echo "GET /healthz: wrk -t$threads -c$conns -d$duration, $threads server threads, HTTP/1.1 keep-alive"
printf '  %-8s %12s req/s   p99 %s\n' boveda "$b_rps" "$b_p99" nginx "$n_rps" "$n_p99"
awk -v b="$b_rps" -v n="$n_rps" 'BEGIN {
    r = b / n
    printf "  ratio boveda/nginx: %.2f (goal >= 0.80): %s\n", r, (r >= 0.8 ? "met" : "NOT met")
}'
