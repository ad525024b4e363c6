#!/usr/bin/env bash
# The pinned comparison of docs/benchmarks.md in one run: nginx upstream
# and the proxies on core 0, wrk on core 1, `wrk -t1 -c64 -d10s --latency`,
# rounds interleaved (nginx, revgate, [second revgate], nginx, ...).
#
#   benches/nginx/compare.sh                       # target/release/revgate
#   benches/nginx/compare.sh NEW_BIN OLD_BIN       # two builds side by side
#   REVOKED=0 ROUNDS=3 DURATION=5s LOG=1 H2=1 OFFSET=1000 benches/nginx/compare.sh
#
# REVOKED (default 1000000) revocations are loaded into each revgate
# through its admin API first (revoke-1m.lua). LOG=1 adds the pair with
# both proxies writing an access log to a file (proxy-log.conf,
# revgate-hs256-log.toml); H2=1 the pair over h2c with h2load
# (proxy-h2c.conf; `apt-get install -y nghttp2-client`). OFFSET moves every
# port of the configs by that much (a second run on the same machine).
# Prints one line per run: req/s, p50, p99, and the proxy's CPU time per
# request (user + system ticks of its process over the run, divided by the
# requests: steadier than req/s on a shared machine); each revgate's VmRSS
# at the end. Needs: nginx, wrk, curl, taskset, perl; a release build.
set -u
cd "$(dirname "$0")/../.."
P=/tmp/revgate-bench-nginx${OFFSET:+-$OFFSET}
BIN=${1:-target/release/revgate}
OTHER=${2:-}
ROUNDS=${ROUNDS:-2}
D=${DURATION:-10s}
REVOKED=${REVOKED:-1000000}
OFFSET=${OFFSET:-0}
ADMIN_TOKEN=revgate-bench-admin-token-not-for-production
mkdir -p $P
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
}
trap cleanup EXIT

# port N moved by OFFSET
port() { echo $(($1 + OFFSET)); }
# FILE [EXTRA]: a copy of a config with every 127.0.0.1 port moved by
# OFFSET (+ EXTRA, for a second revgate) and its own access-log file
conf() {
  local out="$P/${2:-0}-$(basename "$1")"
  perl -pe "s/127\.0\.0\.1:(\d+)/'127.0.0.1:'.(\$1 == 9000 ? \$1+$OFFSET : \$1+$OFFSET+${2:-0})/ge; s#revgate-access\.log#revgate-access-${2:-0}.log#; s#/tmp/revgate-bench-nginx/#$P/#" "$1" > "$out"
  echo "$out"
}
# until the URL answers, for at most 20 s
ready() {
  for _ in $(seq 200); do curl -s -o /dev/null "$@" && return 0; sleep 0.1; done
  echo "no answer from $*" >&2; exit 1
}
# NAME BINARY CONFIG: a pinned revgate, its pid in pid_NAME
start_revgate() {
  RUST_LOG=warn taskset -c 0 "$2" --config "$3" & pids+=($!)
  eval "pid_$1=$!"
}
# NAME CONFIG: a pinned nginx, its worker's pid in pid_NAME
start_nginx() {
  taskset -c 0 nginx -p $P/ -e stderr -c "$2" & pids+=($!)
  local master=$!
  for _ in $(seq 100); do
    local w; w=$(pgrep -P $master | head -1)
    [ -n "$w" ] && { eval "pid_$1=$w"; return; }
    sleep 0.1
  done
}

start_nginx up "$(conf benches/nginx/upstream.conf)"
start_nginx nginx "$(conf benches/nginx/proxy.conf)"
start_revgate a "$BIN" "$(conf benches/nginx/revgate-hs256.toml)"
[ -n "$OTHER" ] && start_revgate b "$OTHER" "$(conf benches/nginx/revgate-hs256.toml 10)"
if [ "${LOG:-0}" = 1 ]; then
  start_nginx nginxlog "$(conf benches/nginx/proxy-log.conf)"
  start_revgate alog "$BIN" "$(conf benches/nginx/revgate-hs256-log.toml)"
  [ -n "$OTHER" ] && start_revgate blog "$OTHER" "$(conf benches/nginx/revgate-hs256-log.toml 10)"
fi
[ "${H2:-0}" = 1 ] && start_nginx nginxh2 "$(conf benches/nginx/proxy-h2c.conf)"
ready http://127.0.0.1:$(port 9000)/
ready http://127.0.0.1:$(port 8080)/
ready http://127.0.0.1:$(port 9902)/healthz
[ -n "$OTHER" ] && ready http://127.0.0.1:$(port 9912)/healthz
if [ "${LOG:-0}" = 1 ]; then
  ready http://127.0.0.1:$(port 8084)/
  ready http://127.0.0.1:$(port 9903)/healthz
  [ -n "$OTHER" ] && ready http://127.0.0.1:$(port 9913)/healthz
fi
[ "${H2:-0}" = 1 ] && ready --http2-prior-knowledge http://127.0.0.1:$(port 8086)/
TOKEN=$("$BIN" mint --config benches/nginx/revgate-hs256.toml --sub bench --ttl 2h)

if [ "$REVOKED" -gt 0 ]; then
  for admin in $(port 9902) ${OTHER:+$(port 9912)}; do
    ADMIN_TOKEN=$ADMIN_TOKEN REVOKE_COUNT=$REVOKED taskset -c 1 wrk -t1 -c32 -d60s \
      -s benches/nginx/revoke-1m.lua http://127.0.0.1:$admin/admin/revocations > $P/revoke-$admin.txt
    echo "admin :$admin: $(curl -s http://127.0.0.1:$admin/metrics | grep '^revgate_revocation_entries ')"
  done
fi

# user + system ticks of process PID
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# NAME PID URL [wrk args]: one wrk run, one line
run() {
  local name=$1 pid=$2 url=$3; shift 3
  local out t0 t1
  t0=$(ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c64 -d"$D" --latency "$@" "$url")
  t1=$(ticks "$pid")
  local rps p50 p99 n non2xx cpu
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  cpu=$(awk -v t=$((t1 - t0)) -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
  printf '%-40s %10s req/s  p50 %8s  p99 %8s  cpu %6s us/req %s\n' "$name" "$rps" "$p50" "$p99" "$cpu" "${non2xx:+ non-2xx $non2xx}"
}
# NAME PID URL [h2load args]: one h2load run (h2c, 64 clients, one stream each)
run_h2() {
  local name=$1 pid=$2 url=$3; shift 3
  local out t0 t1
  t0=$(ticks "$pid")
  out=$(taskset -c 1 h2load -t1 -c64 -m1 -D"${D%s}" "$@" "$url" 2>&1)
  t1=$(ticks "$pid")
  local rps ok n cpu
  rps=$(awk '/^finished in/ {gsub(",", "", $4); print $4}' <<<"$out")
  n=$(awk '/^requests:/ {print $8}' <<<"$out")
  ok=$(awk '/^status codes:/ {print $3, $4}' <<<"$out")
  cpu=$(awk -v t=$((t1 - t0)) -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN {if (n > 0) printf "%.2f", t / hz * 1e6 / n}')
  printf '%-40s %10s req/s  (h2load: %s 2xx)  cpu %6s us/req\n' "$name" "$rps" "$ok" "$cpu"
}

AUTH="Authorization: Bearer $TOKEN"
for r in $(seq "$ROUNDS"); do
  echo "round $r"
  run "nginx plain proxy" $pid_nginx http://127.0.0.1:$(port 8080)/
  run "revgate HS256 ($BIN)" $pid_a http://127.0.0.1:$(port 8082)/ -H "$AUTH"
  [ -n "$OTHER" ] && run "revgate HS256 ($OTHER)" $pid_b http://127.0.0.1:$(port 8092)/ -H "$AUTH"
  if [ "${LOG:-0}" = 1 ]; then
    run "nginx proxy, log to file" $pid_nginxlog http://127.0.0.1:$(port 8084)/
    run "revgate HS256, log to file ($BIN)" $pid_alog http://127.0.0.1:$(port 8083)/ -H "$AUTH"
    [ -n "$OTHER" ] && run "revgate HS256, log to file ($OTHER)" $pid_blog http://127.0.0.1:$(port 8093)/ -H "$AUTH"
  fi
  if [ "${H2:-0}" = 1 ]; then
    run_h2 "nginx plain proxy, h2c" $pid_nginxh2 http://127.0.0.1:$(port 8086)/
    run_h2 "revgate HS256, h2c ($BIN)" $pid_a http://127.0.0.1:$(port 8082)/ -H "$AUTH"
    [ -n "$OTHER" ] && run_h2 "revgate HS256, h2c ($OTHER)" $pid_b http://127.0.0.1:$(port 8092)/ -H "$AUTH"
  fi
done
for v in pid_a pid_b; do
  [ -n "${!v:-}" ] && echo "$v VmRSS: $(awk '/^VmRSS/ {print $2, $3}' /proc/${!v}/status)"
done
