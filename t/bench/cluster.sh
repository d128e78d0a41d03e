#!/bin/sh
# Benchmark of a 3-node local nines cluster against a 3-member local etcd 3.4
# (not a test: it prints figures; docs/benchmarks.md explains them).
#
#   t/bench/cluster.sh [BUILD_DIR] [SECONDS] [FAILOVER_TRIES] [ROUNDS]
#
# 1. nines: a cluster file with 3 nodes in 3 AZs on loopback ports, data in a
#    temp dir, `nines cluster up`. etcd (/usr/bin/etcd, Debian etcd-server):
#    three members on loopback ports, temp data dirs. Both stay up.
# 2. For each operation -- PutItem / put, GetItem ConsistentRead /
#    linearizable range, eventually consistent GetItem / serializable range --
#    ROUNDS (default 5) rounds of one nines run then one etcd run, SECONDS
#    each (default 10), with `nines load` at 64 connections, closed loop,
#    100-byte values over 10,000 keys, connections spread over the three
#    members (etcd through its v3 JSON gateway, `nines load --target etcd`).
#    Alternating runs keeps the ratio honest on a machine whose speed drifts
#    (a shared VM): each round's ratio compares runs a few seconds apart.
#    The idle cluster costs the other a little CPU (measured: nines about
#    56 ms/s, etcd about 30 ms/s, of 2,000).
# 3. A table: per operation the median ops/s and p50/p99 of each system over
#    the rounds, and the median and range of the per-round ratios.
# 4. Failover: FAILOVER_TRIES (default 20) times kill -9 a partition leader
#    and time the first successful write to that partition through another
#    node (t/bench/cluster_failover.c); median, min, max.
#
# Bounded: 6 x ROUNDS load runs of SECONDS, failover tries bounded by 30 s
# each; every process is stopped by pid (nines cluster down; etcd by its pids).
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-${NINES_BUILD:-$top/build}}
secs=${2:-10}
tries=${3:-20}
rounds=${4:-5}
nines="$build/bin/nines"
ninesd="$build/bin/ninesd"
failover="$build/t/cluster_failover"
etcd=/usr/bin/etcd
conc=64
keys=10000
vsize=100
[ -x "$nines" ] && [ -x "$ninesd" ] || { echo "build first: $build/bin" >&2; exit 1; }
[ -x "$etcd" ] || { echo "$etcd missing (Debian package etcd-server)" >&2; exit 1; }
command -v jq >/dev/null || { echo "jq missing" >&2; exit 1; }
tmp=$(mktemp -d /tmp/nines-bench-cluster.XXXXXX)
epids=""
cleanup() {
  "$nines" cluster down --config "$tmp/cluster.yaml" --timeout 10 >/dev/null 2>&1
  for p in $epids; do kill "$p" 2>/dev/null; done
  for p in $epids; do wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Free loopback ports, n at a time (bound together so none repeats).
ports() {
  python3 -c 'import socket,sys
ss=[socket.socket() for _ in range(int(sys.argv[1]))]
[s.bind(("127.0.0.1",0)) for s in ss]
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}
set -- $(ports 6)
cat > "$tmp/cluster.yaml" <<YAML
cluster: bench
auth: none
partitions: 8
nodes:
  - {id: n1, az: az1, rack: r1, api: 127.0.0.1:$1, peer: 127.0.0.1:$2, data: $tmp/n1}
  - {id: n2, az: az2, rack: r1, api: 127.0.0.1:$3, peer: 127.0.0.1:$4, data: $tmp/n2}
  - {id: n3, az: az3, rack: r1, api: 127.0.0.1:$5, peer: 127.0.0.1:$6, data: $tmp/n3}
YAML
nodes="http://127.0.0.1:$1,http://127.0.0.1:$3,http://127.0.0.1:$5"
echo "nines $(git -C "$top" rev-parse --short HEAD 2>/dev/null) vs $($etcd --version | head -1);" \
     "$(nproc) cores, load generator on the same machine; $conc connections, ${secs} s per run," \
     "$vsize-byte values, $keys keys, $rounds alternating rounds per operation"

replicated=1
if ! "$nines" cluster up --config "$tmp/cluster.yaml" --timeout 60 2>"$tmp/up.err"; then
  replicated=0
  echo "NOTE: nines cluster up failed: $(grep -v 'left running' "$tmp/up.err" | head -2)"
  echo "NOTE: measuring nines on node n1 alone (unreplicated) until it works"
  nodes="http://127.0.0.1:$1"
fi

# run NAME ARGS...: one load run, JSON summary to $tmp/NAME.json, one line out.
run() {
  name=$1; shift
  "$nines" load --json --concurrency $conc --duration "$secs" --keys $keys \
      --value-size $vsize "$@" > "$tmp/$name.json" 2>"$tmp/$name.err" ||
      { echo "$name: nines load failed: $(cat "$tmp/$name.err")"; return; }
  jq -r --arg n "$name" '.ops | to_entries[0] | "\($n): \(.value.ok) ok, \(.value.errors) errors, "
      + "\(.value.ops_per_s | floor) ops/s, p50 \(.value.latency_ms.p50) ms, p99 \(.value.latency_ms.p99) ms"
      + (if .value.errors > 0 then ", errors: \(.value.errors_by_type | tostring)" else "" end)' \
      "$tmp/$name.json"
}

# The nines table first (it must exist on every node before the runs).
"$nines" load --concurrency 8 --duration 1 --keys $keys --value-size $vsize \
    --endpoint "$nodes" --create --table bench --op put >/dev/null 2>"$tmp/create.err" ||
    { echo "nines: creating the table failed: $(cat "$tmp/create.err")"; exit 1; }

# etcd: three members, each client URL on its own port.
set -- $(ports 6)
ecluster="e1=http://127.0.0.1:$2,e2=http://127.0.0.1:$4,e3=http://127.0.0.1:$6"
eurls="http://127.0.0.1:$1,http://127.0.0.1:$3,http://127.0.0.1:$5"
i=1
for pair in "$1 $2" "$3 $4" "$5 $6"; do
  set -- $pair
  "$etcd" --name e$i --data-dir "$tmp/etcd$i" \
      --listen-client-urls http://127.0.0.1:$1 --advertise-client-urls http://127.0.0.1:$1 \
      --listen-peer-urls http://127.0.0.1:$2 --initial-advertise-peer-urls http://127.0.0.1:$2 \
      --initial-cluster "$ecluster" --initial-cluster-state new --initial-cluster-token bench \
      --log-level error > "$tmp/etcd$i.log" 2>&1 &
  epids="$epids $!"
  i=$((i + 1))
done
ok=0
for i in $(seq 150); do
  if curl -sf -X POST "${eurls%%,*}/v3/kv/put" -d '{"key":"cHJvYmU=","value":"eA=="}' \
      >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.1
done
[ $ok = 1 ] || { echo "etcd did not come up"; tail -5 "$tmp"/etcd*.log; exit 1; }

for op in put cget get; do
  case $op in
    put) nargs="--op put"; eargs="--op put" ;;
    cget) nargs="--mix cget=1"; eargs="--mix cget=1" ;;
    get) nargs="--op get"; eargs="--op get" ;;
  esac
  r=1
  while [ $r -le $rounds ]; do
    run nines-$op-$r --endpoint "$nodes" --table bench $nargs
    run etcd-$op-$r --target etcd --endpoints "$eurls" $eargs
    r=$((r + 1))
  done
done
for p in $epids; do kill "$p" 2>/dev/null; done
for p in $epids; do wait "$p" 2>/dev/null; done
epids=""

echo
[ $replicated = 1 ] || echo "(nines column: ONE unreplicated node — cluster up failed, see NOTE above)"
echo "medians over $rounds rounds; ratio = nines ops/s / etcd ops/s of the same round"
printf '%-30s %11s %11s %7s %13s   %9s %9s   %9s %9s\n' run "nines ops/s" "etcd ops/s" ratio \
    "ratio range" "nines p50" "etcd p50" "nines p99" "etcd p99"
for op in put:"PutItem / put" cget:"ConsistentRead / linearizable" \
          get:"eventual get / serializable"; do
  k=${op%%:*}; label=${op#*:}
  files=""
  r=1
  while [ $r -le $rounds ]; do
    n="$tmp/nines-$k-$r.json"; e="$tmp/etcd-$k-$r.json"
    [ -s "$n" ] && [ -s "$e" ] && files="$files $n $e"
    r=$((r + 1))
  done
  [ -n "$files" ] || { echo "$label: missing figures"; continue; }
  # shellcheck disable=SC2086
  jq -rn --arg l "$label" '
    def med: sort | if length == 0 then null else .[(length - 1) / 2 | floor] end;
    [inputs | .ops | to_entries[0].value] as $all |
    [range(0; $all | length; 2) | $all[.]] as $n | [range(1; $all | length; 2) | $all[.]] as $e |
    [range(0; $n | length) | if $e[.].ops_per_s > 0 then $n[.].ops_per_s / $e[.].ops_per_s
                                else empty end] as $ratio |
    [$l, ([$n[].ops_per_s] | med | floor), ([$e[].ops_per_s] | med | floor),
     (($ratio | med) * 100 | floor) / 100,
     "\(($ratio | min) * 100 | floor / 100)-\(($ratio | max) * 100 | floor / 100)",
     ([$n[].latency_ms.p50] | med), ([$e[].latency_ms.p50] | med),
     ([$n[].latency_ms.p99] | med), ([$e[].latency_ms.p99] | med)] | @tsv' $files |
  awk -F'\t' '{ printf "%-30.30s %11s %11s %6sx %13s   %9.2f %9.2f   %9.2f %9.2f\n",
                 $1, $2, $3, $4, $5, $6, $7, $8, $9 }'
done
echo "(latencies in ms)"

echo
if [ "$tries" -lt 1 ]; then
  echo "failover: not measured (FAILOVER_TRIES is 0)"
elif [ $replicated = 0 ]; then
  echo "failover: not measured (needs a replicated cluster and NinesAdmin.Status)"
elif [ ! -x "$failover" ]; then
  echo "failover: not measured ($failover not built)"
else
  echo "failover: $tries tries of kill -9 of a partition leader -> first successful write"
  "$failover" --config "$tmp/cluster.yaml" --table bench --ninesd "$ninesd" --tries "$tries" \
      > "$tmp/failover.out" 2>"$tmp/failover.err"
  grep '^try' "$tmp/failover.out" | sed 's/^/  /'
  cat "$tmp/failover.err"
  grep '^{' "$tmp/failover.out" | jq -r \
      '"failover: median \(.median_ms) ms, min \(.min_ms) ms, max \(.max_ms) ms over \(.tries) tries"'
fi
