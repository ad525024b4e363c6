#!/usr/bin/env bash
# Resident bytes per idle keep-alive connection, nginx next to revgate in
# one run: 10,000 client connections (N), each sends one request (with an
# HS256 bearer token, which nginx ignores) and then idles; the growth of
# the proxy's VmRSS (/proc/PID/status) is divided by N. The load bench does
# the connecting and measuring (`--idle N --pid PID --target URL`).
#
#   cargo build --release && cargo bench --no-run --bench load
#   benches/nginx/idle-memory.sh [N]
#
# Needs: nginx, curl, taskset; `ulimit -n` above N + 100 (the script raises
# the soft limit to the hard one).
set -u
cd "$(dirname "$0")/../.."
N=${1:-10000}
P=/tmp/revgate-bench-nginx
BIN=${BIN:-target/release/revgate}
mkdir -p $P
ulimit -n "$(ulimit -Hn)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
}
trap cleanup EXIT
ready() {
  for _ in $(seq 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "no answer from $1" >&2; exit 1
}
taskset -c 0 nginx -p $P/ -e stderr -c "$PWD/benches/nginx/upstream.conf" & pids+=($!)
taskset -c 0 nginx -p $P/ -e stderr -c "$PWD/benches/nginx/proxy-idle.conf" & pids+=($!)
nginx_master=$!
RUST_LOG=warn taskset -c 0 "$BIN" --config benches/nginx/revgate-idle.toml & pids+=($!)
revgate=$!
ready http://127.0.0.1:9000/
ready http://127.0.0.1:8087/
ready http://127.0.0.1:9908/healthz
# nginx's connections live in its (one) worker process.
nginx_worker=$(pgrep -P "$nginx_master" | head -1)
TOKEN=$("$BIN" mint --config benches/nginx/revgate-idle.toml --sub bench --ttl 1h)
LOAD=$(ls -t target/release/deps/load-* | grep -v '\.d$' | head -1)
for t in "nginx $nginx_worker 8087" "revgate $revgate 8088"; do
  set -- $t
  echo "== $1 (pid $2)"
  taskset -c 1 "$LOAD" --bench --client-threads 1 --idle "$N" --pid "$2" \
    -H "Authorization: Bearer $TOKEN" --target "http://127.0.0.1:$3/" | grep -v '^$'
done
