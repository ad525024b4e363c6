#!/usr/bin/env bash
# TLS termination, revgate next to nginx in one run, the same certificate
# (ECDSA P-256, written to /tmp/revgate-bench-tls/), pinned: both proxies
# and the nginx upstream on core 0, the clients on core 1.
#   keep-alive:  wrk -t1 -c64 -d10s --latency       requests/s and p99, TLS 1.3
#   new conn:    the same with "Connection: close"  one handshake per request;
#                wrk resumes the session where the server allows (both do)
#   full:        openssl s_time -new                full handshakes (never
#                resumed) with one request each, one client, sequential
#   h2:          h2load -c64 -m1                    HTTP/2 over TLS (ALPN h2),
#                64 connections, one stream at a time each
# The upstream is benches/nginx/upstream.conf moved to 127.0.0.1:9100, so
# this runs beside the cleartext comparison's :9000.
# Needs: cargo build --release, nginx (with ssl), wrk, openssl, curl,
# h2load (nghttp2-client).
set -u
cd "$(dirname "$0")/../.."
T=/tmp/revgate-bench-tls
P=/tmp/revgate-bench-nginx
D=${REVGATE_BENCH_DURATION:-10}
mkdir -p $T $P
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -keyout $T/key.pem -out $T/cert.pem -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
sed -e 's/127.0.0.1:9000/127.0.0.1:9100/' -e 's/upstream.pid/upstream-tls.pid/' \
  benches/nginx/upstream.conf > $T/upstream.conf
taskset -c 0 nginx -p $P/ -e stderr -c $T/upstream.conf & up=$!
taskset -c 0 nginx -p $P/ -e stderr -c "$PWD/benches/nginx/proxy-tls.conf" & ng=$!
RUST_LOG=warn taskset -c 0 target/release/revgate --config benches/nginx/revgate-tls.toml & rg=$!
for port in 8443 8444; do
  for i in $(seq 100); do
    curl -s -o /dev/null --cacert $T/cert.pem https://localhost:$port/ && break
    sleep 0.1
  done
done
# s_time sends "GET <www> HTTP/1.0"; this makes it an HTTP/1.1 request with
# a Host (revgate refuses a request without one), closed after the answer.
WWW=$'/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Pad:'
for target in nginx:8443 revgate:8444; do
  name=${target%:*}; port=${target#*:}
  url=https://localhost:$port/
  echo "== $name keep-alive"
  taskset -c 1 wrk -t1 -c64 -d${D}s --latency $url | grep -E 'Requests/sec|99%|Non-2xx|errors'
  echo "== $name new connection per request"
  taskset -c 1 wrk -t1 -c64 -d${D}s --latency -H 'Connection: close' $url | grep -E 'Requests/sec|99%|Non-2xx|errors'
  echo "== $name full handshakes"
  taskset -c 1 openssl s_time -connect localhost:$port -new -time $D -CAfile $T/cert.pem -www "$WWW" 2>&1 \
    | grep -E 'real seconds'
  echo "== $name HTTP/2 over TLS"
  taskset -c 1 h2load -c64 -m1 -D$D $url | grep -E 'finished in|requests:|status codes|time for request'
done
kill $rg $ng $up
wait 2>/dev/null
