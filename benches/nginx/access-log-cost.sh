#!/usr/bin/env bash
# What the access log costs per request, in instructions (callgrind: the
# same count whatever else the machine is doing): the pinned HS256 revgate
# of benches/nginx/revgate-hs256.toml with the log off, then
# revgate-hs256-log.toml with it on, each under wrk load while callgrind
# counts for 12 s; divides by the requests counted in between.
# Needs: cargo build --release, nginx, wrk, valgrind, curl, bc.
set -u
cd "$(dirname "$0")/../.."
P=/tmp/revgate-bench-cg
rm -rf $P; mkdir -p $P /tmp/revgate-bench-nginx
taskset -c 0 nginx -p $P/ -e stderr -c "$PWD/benches/nginx/upstream.conf" & up=$!
TOKEN=$(target/release/revgate mint --config benches/nginx/revgate-hs256.toml --sub bench --ttl 1h)
reqs() { curl -s http://127.0.0.1:$1/metrics | awk -F' ' '/^revgate_requests_total\{route="\/",outcome="forwarded"\}/ {print $2}'; }
one() { # name config port adminport
  RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$P/cg.$1.%p target/release/revgate --config $2 2>$P/vg.$1.log &
  local pid=$!
  for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:$4/healthz && break; sleep 0.2; done
  taskset -c 1 wrk -t1 -c16 -d25s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:$3/ > /dev/null &
  local w=$!
  sleep 4
  local r0=$(reqs $4)
  callgrind_control -i on $pid > /dev/null
  sleep 12
  callgrind_control -i off $pid > /dev/null
  local r1=$(reqs $4)
  wait $w
  callgrind_control -d $pid > /dev/null
  sleep 1
  kill -TERM $pid; wait $pid 2>/dev/null
  local ir=$(cat $P/cg.$1.* | awk '/^summary:/ {s+=$2} /^totals:/ {t+=$2} END {print (s>0?s:t)}')
  echo "$1: $((r1-r0)) requests, $ir instructions, $(echo "$ir/($r1-$r0)" | bc) instructions/request"
}
one off benches/nginx/revgate-hs256.toml 8082 9902
one on benches/nginx/revgate-hs256-log.toml 8083 9903
kill $up; pkill -f "nginx -p $P" 2>/dev/null
