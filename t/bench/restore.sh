#!/bin/sh
# Benchmark of the WAL archive's offline side (not a test: it prints
# figures; docs/benchmarks.md explains them): the reference replica's
# replay rate against the live store's apply rate, and a point-in-time
# restore of a table of a million items or more.
#
#   t/bench/restore.sh [BUILD_DIR] [WRITES] [KEYS]
#
# 1. A 3-node cluster (`nines cluster up`) with a file:// archive
#    (seal_after 5s, snapshot_every 10,000,000: no snapshot, so the
#    reference replays every entry from the start), one table of 8
#    partitions.
# 2. WRITES PutItems (default 2,000,000) of 20-byte values over KEYS keys
#    (default 2,000,000: about 1.26 M distinct items), `nines load` at 64
#    connections, closed loop: the live apply rate is its ops/s (every
#    node applies every write: each holds a replica of every partition).
# 3. Once every node reports the archive caught up: `nines reference` of
#    each partition at its archived end, timed (one process, one core):
#    entries/s and MB/s of archived pieces replayed, items rebuilt.
# 4. RestoreTableToPointInTime with UseLatestRestorableTime into a new
#    table, timed until its DescribeTable says ACTIVE with the restore no
#    longer in progress; the restored item count (a Scan with Select COUNT
#    through every partition) must equal the source's.
#
# Bounded: the load by WRITES and 3,600 s, every wait by a timeout; every
# process is stopped by pid (nines cluster down).
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-${NINES_BUILD:-$top/build}}
writes=${2:-2000000}
keys=${3:-2000000}
nines="$build/bin/nines"
[ -x "$nines" ] && [ -x "$build/bin/ninesd" ] || { echo "build first: $build/bin" >&2; exit 1; }
command -v jq >/dev/null || { echo "jq missing" >&2; exit 1; }
tmp=$(mktemp -d /tmp/nines-bench-restore.XXXXXX)
cleanup() {
  "$nines" cluster down --config "$tmp/cluster.yaml" --timeout 20 >/dev/null 2>&1
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
set -- $(ports 6)
cat > "$tmp/cluster.yaml" <<YAML
cluster: restorebench
auth: none
partitions: 8
archive: {url: 'file://$tmp/archive', seal_after: 5s, verify_after: 5s, snapshot_every: 10000000}
nodes:
  - {id: n1, az: az1, rack: r1, api: 127.0.0.1:$1, peer: 127.0.0.1:$2, data: $tmp/n1}
  - {id: n2, az: az2, rack: r1, api: 127.0.0.1:$3, peer: 127.0.0.1:$4, data: $tmp/n2}
  - {id: n3, az: az3, rack: r1, api: 127.0.0.1:$5, peer: 127.0.0.1:$6, data: $tmp/n3}
YAML
api1=http://127.0.0.1:$1
nodes="http://127.0.0.1:$1,http://127.0.0.1:$3,http://127.0.0.1:$5"
urls="http://127.0.0.1:$1 http://127.0.0.1:$3 http://127.0.0.1:$5"
echo "nines $(git -C "$top" rev-parse --short HEAD 2>/dev/null); $(nproc) cores;" \
     "$writes writes of 20-byte values over $keys keys, 8 partitions, 3 nodes"
"$nines" cluster up --config "$tmp/cluster.yaml" --timeout 60 >/dev/null 2>"$tmp/up.err" ||
  { echo "nines cluster up failed: $(head -3 "$tmp/up.err")"; exit 1; }

call() { # call URL TARGET BODY
  curl -s -m 30 -X POST "$1/" -H "X-Amz-Target: $2" \
      -H 'Content-Type: application/x-amz-json-1.0' -d "$3"
}

t0=$(date +%s.%N)
"$nines" load --json --concurrency 64 --duration 3600 --requests "$writes" --keys "$keys" \
    --value-size 20 --endpoint "$nodes" --create --partitions 8 --table src --op put \
    > "$tmp/load.json" 2>"$tmp/load.err" || { echo "nines load failed: $(cat "$tmp/load.err")"; exit 1; }
jq -r '.ops | to_entries[0] | "load: \(.value.ok) ok, \(.value.errors) errors, "
    + "\(.value.ops_per_s | floor) writes/s (the live apply rate), p99 \(.value.latency_ms.p99) ms"' \
    "$tmp/load.json"
rate=$(jq -r '.ops | to_entries[0].value.ops_per_s' "$tmp/load.json")

# The archive catches up (every node).
caught=0
for i in $(seq 600); do
  lag=0
  for u in $urls; do
    s=$(call "$u" NinesAdmin.Status '{"Groups": false}' | jq -r '(.archive.behind_entries // 1) + (.archive.pending_pieces // 1)')
    [ "$s" = 0 ] || lag=1
  done
  [ $lag = 0 ] && { caught=1; break; }
  sleep 1
done
[ $caught = 1 ] || echo "NOTE: the archive did not report caught up within 600 s"
"$nines" archive verify "file://$tmp/archive" | tail -1
echo "archive: $(du -sh "$tmp/archive" | cut -f1), $(find "$tmp/archive" -name '*.piece' | wc -l) pieces"

# The reference of every partition at its archived end, one at a time.
total_e=0; total_s=0; total_b=0; total_i=0
for g in $(ls "$tmp/archive"); do
  end=$(ls "$tmp/archive/$g/log" | sed -n 's/^[0-9]*-\([0-9]*\)\.json$/\1/p' | sort -n | tail -1)
  bytes=$(cat "$tmp/archive/$g/log"/*.piece | wc -c)
  "$nines" reference "file://$tmp/archive" --group "$g" --upto "$(echo "$end" | sed "s/^0*//")" --key pk:S \
      --json "$tmp/ref-$g.json" > "$tmp/ref-$g.out" 2>&1 || { echo "$g: $(cat "$tmp/ref-$g.out")"; continue; }
  e=$(jq -r .Entries "$tmp/ref-$g.json"); s=$(jq -r .Seconds "$tmp/ref-$g.json"); it=$(jq -r .Items "$tmp/ref-$g.json")
  echo "reference $g: $e entries, $it items, $(awk -v b=$bytes 'BEGIN{printf "%.1f", b/1048576}') MiB of pieces in ${s} s"
  total_e=$((total_e + e)); total_i=$((total_i + it)); total_b=$((total_b + bytes))
  total_s=$(awk -v a=$total_s -v b=$s 'BEGIN{print a+b}')
done
awk -v e=$total_e -v s=$total_s -v b=$total_b -v r=$rate -v i=$total_i 'BEGIN{
  printf "reference replay: %d entries (%d items) in %.1f s: %.0f entries/s, %.1f MiB/s on one core; the live cluster applied %.0f writes/s (%.1fx)\n",
    e, i, s, e/s, b/1048576/s, r, (e/s)/r }'

# Point-in-time restore of the whole table, at the latest restorable time.
sleep 12 # past the window's end: seal_after + 2 x verify_after + 1 s
src_items=$(call "$api1" DynamoDB_20120810.DescribeTable '{"TableName":"src"}' | jq -r .Table.ItemCount)
r0=$(date +%s.%N)
call "$api1" DynamoDB_20120810.RestoreTableToPointInTime \
    '{"SourceTableName":"src","TargetTableName":"restored","UseLatestRestorableTime":true}' > "$tmp/restore.json"
jq -e .TableDescription >/dev/null "$tmp/restore.json" || { echo "restore refused: $(cat "$tmp/restore.json")"; exit 1; }
done_=0
for i in $(seq 3600); do
  d=$(call "$api1" DynamoDB_20120810.DescribeTable '{"TableName":"restored"}')
  st=$(echo "$d" | jq -r '.Table.TableStatus + " " + (.Table.RestoreSummary.RestoreInProgress | tostring)')
  err=$(echo "$d" | jq -r '.Table.RestoreSummary.NinesRestoreError // empty')
  [ -n "$err" ] && { echo "restore failed: $err"; break; }
  [ "$st" = "ACTIVE false" ] && { done_=1; break; }
  sleep 1
done
r1=$(date +%s.%N)
items=$(call "$api1" DynamoDB_20120810.DescribeTable '{"TableName":"restored"}' | jq -r .Table.ItemCount)
awk -v a=$r0 -v b=$r1 -v n=$items -v s=$src_items -v ok=$done_ 'BEGIN{
  printf "restore: %s, %d items (source %d) in %.1f s: %.0f items/s\n", ok ? "complete" : "NOT complete", n, s, b-a, n/(b-a) }'
