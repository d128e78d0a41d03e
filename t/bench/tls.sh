#!/bin/sh
# Benchmark: the cost of mutual TLS between the nodes on replicated PutItem
# (not a test: it prints figures; docs/benchmarks.md, "TLS").
#
#   t/bench/tls.sh [BUILD_DIR] [SECONDS] [ROUNDS] [WHAT] [CLIENTS]
#
# WHAT is `all` (default: TLS on peers and on the API, `nines load` over
# HTTPS trusting the cluster's ca.pem with --ca-bundle) or `peers` (TLS
# between the nodes only, the API over plain HTTP in both clusters).
#
# Two 3-node local clusters run side by side on loopback ports: "plain"
# (no tls) and "tls" (the cluster.yaml of `nines cluster certs`, peers over
# mutual TLS). ROUNDS (default 5) alternating rounds of one PutItem run on
# each, SECONDS each (default 10), `nines load` at 64 connections, 100-byte
# values over 10,000 keys, connections spread over the three nodes, split
# over CLIENTS (default 2) `nines load` processes: one process is a single
# event loop, and over HTTPS on a 2-core machine that loop, not the store,
# is what saturates first (its TLS costs it twice the CPU per request).
# Each round also prints the CPU the servers and the clients spent per
# 1,000 writes.
# Alternating keeps the ratio honest on a machine whose speed drifts: each
# round compares runs seconds apart. The idle cluster costs the other a
# little CPU, the same for both.
#
# Bounded: 2 x ROUNDS runs of SECONDS; every process is stopped by pid
# (nines cluster down).
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-${NINES_BUILD:-$top/build}}
secs=${2:-10}
rounds=${3:-5}
what=${4:-all}
clients=${5:-2}
case $what in all|peers) ;; *) echo "WHAT: all or peers" >&2; exit 2;; esac
case $clients in 1|2|4|8) ;; *) echo "CLIENTS: 1, 2, 4 or 8" >&2; exit 2;; esac
nines="$build/bin/nines"
[ -x "$nines" ] || { echo "build first: $build/bin" >&2; exit 1; }
command -v jq >/dev/null || { echo "jq missing" >&2; exit 1; }
tmp=$(mktemp -d /tmp/nines-bench-tls.XXXXXX)
cleanup() {
  "$nines" cluster down --config "$tmp/plain.yaml" --timeout 10 >/dev/null 2>&1
  "$nines" cluster down --config "$tmp/certs/cluster.yaml" --timeout 10 >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ports() {
  python3 -c 'import socket,sys
ss=[socket.socket() for _ in range(int(sys.argv[1]))]
[s.bind(("127.0.0.1",0)) for s in ss]
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}
# cluster_file NAME DIR PORTS...: a 3-node cluster file.
cluster_file() {
  name=$1; d=$2; shift 2
  cat <<YAML
cluster: $name
auth: none
partitions: 8
nodes:
  - {id: n1, az: az1, rack: r1, api: 127.0.0.1:$1, peer: 127.0.0.1:$2, data: $d/n1}
  - {id: n2, az: az2, rack: r1, api: 127.0.0.1:$3, peer: 127.0.0.1:$4, data: $d/n2}
  - {id: n3, az: az3, rack: r1, api: 127.0.0.1:$5, peer: 127.0.0.1:$6, data: $d/n3}
YAML
}
set -- $(ports 12)
cluster_file plain "$tmp/p" $1 $2 $3 $4 $5 $6 > "$tmp/plain.yaml"
plain="http://127.0.0.1:$1,http://127.0.0.1:$3,http://127.0.0.1:$5"
shift 6
cluster_file tls "$tmp/t" $1 $2 $3 $4 $5 $6 > "$tmp/tls-src.yaml"
"$nines" cluster certs --config "$tmp/tls-src.yaml" --out "$tmp/certs" >/dev/null || exit 1
if [ "$what" = peers ]; then
  sed -i 's/peers: true, api: true/peers: true, api: false/' "$tmp/certs/cluster.yaml"
  tlsn="http://127.0.0.1:$1,http://127.0.0.1:$3,http://127.0.0.1:$5"
else
  tlsn="https://127.0.0.1:$1,https://127.0.0.1:$3,https://127.0.0.1:$5"
fi
export AWS_CA_BUNDLE="$tmp/certs/ca.pem" # nines load: trust the cluster's CA
for f in "$tmp/plain.yaml" "$tmp/certs/cluster.yaml"; do
  "$nines" cluster up --config "$f" --timeout 60 >/dev/null || { echo "cluster up $f failed"; exit 1; }
done
echo "nines $(git -C "$top" rev-parse --short HEAD 2>/dev/null); $(nproc) cores, load on the" \
     "same machine; PutItem, 64 connections, ${secs} s per run, $rounds alternating rounds;" \
     "TLS on: $what"
for ep in "$plain" "$tlsn"; do
  "$nines" load --concurrency 8 --duration 1 --keys 10000 --value-size 100 --endpoint "$ep" \
      --create --table bench --op put >/dev/null 2>"$tmp/create.err" ||
      { echo "creating the table failed: $(cat "$tmp/create.err")"; exit 1; }
done
# CPU ticks (user + system) the cluster's three ninesd processes used so far.
server_ticks() {
  t=0
  for pf in "$1"/n1/ninesd.pid "$1"/n2/ninesd.pid "$1"/n3/ninesd.pid; do
    pid=$(cat "$pf" 2>/dev/null) || continue
    set -- $(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null)
    [ $# -ge 13 ] && t=$((t + ${12} + ${13}))
  done
  echo $t
}
hz=$(getconf CLK_TCK)
run() {
  name=$1; dir=$2; shift 2
  s0=$(server_ticks "$dir")
  c0=$(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat)
  i=1
  while [ $i -le "$clients" ]; do
    "$nines" load --json --concurrency $((64 / clients)) --duration "$secs" --keys 10000 \
        --value-size 100 --table bench --op put "$@" > "$tmp/$name.$i.json" 2>"$tmp/$name.$i.err" &
    i=$((i + 1))
  done
  wait
  s1=$(server_ticks "$dir")
  c1=$(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat)
  for f in "$tmp/$name".*.json; do
    [ -s "$f" ] || { echo "$name: nines load failed: $(cat "${f%.json}.err")"; return; }
  done
  # The clients' figures summed (ok, ops/s), the worst p50/p99; CPU per
  # 1,000 writes: what each request costs, which the machine's other load
  # changes far less than it changes ops/s.
  jq -s '{ops: {put: {ok: (map(.ops | to_entries[0].value.ok) | add),
                      errors: (map(.ops | to_entries[0].value.errors) | add),
                      ops_per_s: (map(.ops | to_entries[0].value.ops_per_s) | add),
                      latency_ms: {p50: (map(.ops | to_entries[0].value.latency_ms.p50) | max),
                                   p99: (map(.ops | to_entries[0].value.latency_ms.p99) | max)}}}}' \
      "$tmp/$name".*.json > "$tmp/$name.json"
  jq -r --arg n "$name" --argjson s $((s1 - s0)) --argjson c $((c1 - c0)) --argjson hz "$hz" \
      '.ops | to_entries[0] | "\($n): \(.value.ok) ok, \(.value.errors) errors, "
      + "\(.value.ops_per_s | floor) ops/s, p50 \(.value.latency_ms.p50) ms, p99 \(.value.latency_ms.p99) ms, "
      + "CPU ms per 1000 writes: servers \(($s / $hz * 1e6 / ([.value.ok,1]|max)) | floor), "
      + "clients \(($c / $hz * 1e6 / ([.value.ok,1]|max)) | floor)"' \
      "$tmp/$name.json"
}
r=1
while [ $r -le $rounds ]; do
  run plain-$r "$tmp/p" --endpoint "$plain"
  run tls-$r "$tmp/t" --endpoint "$tlsn"
  r=$((r + 1))
done
# Per round: tls ops/s over plain ops/s; medians.
for r in $(seq $rounds); do
  a=$(jq '.ops | to_entries[0].value.ops_per_s' "$tmp/plain-$r.json" 2>/dev/null)
  b=$(jq '.ops | to_entries[0].value.ops_per_s' "$tmp/tls-$r.json" 2>/dev/null)
  [ -n "$a" ] && [ -n "$b" ] && echo "$b $a" | awk '{printf "%.3f\n", $1/$2}'
done | sort -n > "$tmp/ratios"
n=$(wc -l < "$tmp/ratios")
[ "$n" -gt 0 ] && echo "tls/plain PutItem throughput per round: median $(sed -n "$(( (n + 1) / 2 ))p" "$tmp/ratios")," \
  "range $(head -1 "$tmp/ratios")..$(tail -1 "$tmp/ratios") ($n rounds)"
