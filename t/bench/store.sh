#!/bin/sh
# Benchmark of one ninesd node (not a test; docs/benchmarks.md has the figures).
#
#   t/bench/store.sh [BUILD_DIR] [SECONDS]
#
# Starts ninesd on a free loopback port with a fresh data directory, then with
# `nines load` at 64 connections, closed loop:
#   1. PutItem of 100-byte values over 100,000 keys (8 partitions),
#   2. GetItem of the same keys,
#   3. an open-loop mix (50% reads) at a fixed rate, latency from each
#      request's intended start.
# The load generator runs on the same 2 cores as the node. Bounded: three
# runs of SECONDS (default 10) each; the node is stopped by its pid.
set -e
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-${NINES_BUILD:-$top/build}}
secs=${2:-10}
nines="$build/bin/nines"
ninesd="$build/bin/ninesd"
[ -x "$nines" ] && [ -x "$ninesd" ] || { echo "build first: $build/bin" >&2; exit 1; }
tmp=$(mktemp -d /tmp/nines-bench-store.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$tmp/cluster.yaml" <<YAML
cluster: bench
auth: none
partitions: 8
nodes:
  - {id: n1, az: az1, rack: r1, api: 127.0.0.1:$port, peer: 127.0.0.1:$((port + 1)), data: $tmp/n1}
YAML
"$ninesd" --cluster "$tmp/cluster.yaml" --node n1 2>"$tmp/ninesd.log" &
pid=$!
for i in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1 && break
  sleep 0.05
done
url="http://127.0.0.1:$port"
echo "ninesd $(git -C "$top" rev-parse --short HEAD 2>/dev/null) on $(nproc) cores, $(uname -r); load generator on the same machine"
echo
echo "== PutItem, 64 connections, closed loop, ${secs}s"
"$nines" load --endpoint "$url" --create --op put --concurrency 64 --duration "$secs" --warmup 1 --keys 100000 --value-size 100
echo
echo "== GetItem, 64 connections, closed loop, ${secs}s"
"$nines" load --endpoint "$url" --op get --concurrency 64 --duration "$secs" --warmup 1 --keys 100000
echo
echo "== mix 50% GetItem, open loop at 10000/s, ${secs}s"
"$nines" load --endpoint "$url" --op mix --read-ratio 0.5 --rate 10000 --concurrency 64 --duration "$secs" --keys 100000
