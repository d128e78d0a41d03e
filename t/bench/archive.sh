#!/bin/sh
# The cost of ninesd's WAL archiver on the write path of a 3-node local
# cluster (not a test: it prints figures; store/archiver.h, docs/archive.md):
#
#   t/bench/archive.sh [BUILD_DIR] [SECONDS] [ROUNDS]   (defaults build, 10, 5)
#
# 1. Two clusters from one cluster file (3 nodes in 3 AZs on loopback ports,
#    data in a temp dir): A plain, B the same plus
#      archive: {url: file://TMP/archive, seal_after: 10s, piece_size: 4MiB,
#                verify_after: 5s}
#    (the defaults, written out). Both are brought up once with `nines
#    cluster up` and stay up, each idle while the other is measured, as
#    t/bench/cluster.sh keeps nines and etcd: a cluster brought up per round
#    would measure its first seconds (elections, leases, cold caches), B
#    would restart its archiver every round, and one long-lived archive is
#    what `nines archive verify` should prove at the end. The price is the
#    idle cluster's CPU, printed (both measured idle at the end).
# 2. The same table on both (8 partitions, PAY_PER_REQUEST), then ROUNDS
#    rounds of one run on A then one on B: `nines load` PutItem, 64
#    connections, closed loop, 100-byte values over 10,000 keys, SECONDS
#    each, connections spread over the three nodes. Alternating keeps the
#    ratio honest on a machine whose speed drifts: each round's ratio
#    compares runs a few seconds apart.
#    During each run and after it, NinesAdmin.Status ({"Groups": false}) of
#    the three nodes is polled every second (on A too, so both pay for the
#    polling): B's archive lag is the max over the nodes of
#    archive.behind_entries (and the sum of pending_pieces). After A's run
#    the script waits 15 s; after B's, it reads the lag 15 s after the run
#    ended, then polls on until every node reports 0 behind and 0 pending
#    (at most 30 s after the run: "drained"), so B's tail of work does not
#    land in A's next run. The ninesd CPU (utime+stime of the three
#    processes, /proc) from the start of each run to 15 s after it is
#    divided by the run's successful PutItems: CPU per write, cluster-wide.
# 3. B's archive: every node caught up (bounded 60 s), `nines archive
#    verify` (its verdict line), the archive's size (du) and piece count
#    (log manifests), the archive counters summed over the nodes.
# 4. A table: per round ops/s, p99, CPU per write of each, the ratios
#    archived/plain, B's lag and counters; the medians and range of the
#    ratios. Rounds during which some other ninesd ran on the machine (a
#    test someone else started) are flagged: their figures are disturbed.
#
# Bounded: 2 x ROUNDS load runs of SECONDS, waits of 15 s (A) and at most
# 30 s (B) after each, 60 s for cluster up, 60 s for the final catch-up.
# Both clusters are stopped by `nines cluster down` (pid files) and the temp
# dir (data and archive) removed on exit, Ctrl-C included.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-${NINES_BUILD:-$top/build}}
secs=${2:-10}
rounds=${3:-5}
nines="$build/bin/nines"
ninesd="$build/bin/ninesd"
conc=64
keys=10000
vsize=100
parts=8
[ -x "$nines" ] && [ -x "$ninesd" ] || { echo "build first: $build/bin" >&2; exit 1; }
command -v jq >/dev/null || { echo "jq missing" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl missing" >&2; exit 1; }
tmp=$(mktemp -d /tmp/nines-bench-archive.XXXXXX)
arch="$tmp/archive"
poller=""
cleanup() {
  if [ -n "$poller" ]; then kill "$poller" 2>/dev/null; wait "$poller" 2>/dev/null; fi
  for c in a b; do
    [ -f "$tmp/$c.yaml" ] &&
        "$nines" cluster down --config "$tmp/$c.yaml" --timeout 10 >/dev/null 2>&1
  done
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
# conf NAME P1..P6: the cluster file body of cluster NAME (data in $tmp/NAME).
conf() {
  c=$1; shift
  cat <<YAML
cluster: bench-$c
auth: none
partitions: $parts
nodes:
  - {id: n1, az: az1, rack: r1, api: 127.0.0.1:$1, peer: 127.0.0.1:$2, data: $tmp/$c/n1}
  - {id: n2, az: az2, rack: r1, api: 127.0.0.1:$3, peer: 127.0.0.1:$4, data: $tmp/$c/n2}
  - {id: n3, az: az3, rack: r1, api: 127.0.0.1:$5, peer: 127.0.0.1:$6, data: $tmp/$c/n3}
YAML
}
set -- $(ports 12)
conf a "$1" "$2" "$3" "$4" "$5" "$6" > "$tmp/a.yaml"
nodes_a="http://127.0.0.1:$1,http://127.0.0.1:$3,http://127.0.0.1:$5"
shift 6
{ conf b "$@"
  echo "archive: {url: 'file://$arch', seal_after: 10s, piece_size: 4MiB, verify_after: 5s}"
} > "$tmp/b.yaml"
nodes_b="http://127.0.0.1:$1,http://127.0.0.1:$3,http://127.0.0.1:$5"

echo "nines $(git -C "$top" rev-parse --short HEAD 2>/dev/null), WAL archiver cost;" \
     "$(nproc) cores, Linux $(uname -r), load generator on the same machine;" \
     "$conc connections, ${secs} s per run, $vsize-byte values, $keys keys," \
     "$rounds alternating rounds (A plain, B archived)"

for c in a b; do
  "$nines" cluster up --config "$tmp/$c.yaml" --ninesd "$ninesd" --timeout 60 \
      >"$tmp/up-$c.out" 2>"$tmp/up-$c.err" ||
      { echo "cluster $c: nines cluster up failed: $(head -3 "$tmp/up-$c.err")"; exit 1; }
done
for c in a b; do
  eval "eps=\$nodes_$c"
  "$nines" load --concurrency 8 --duration 1 --keys $keys --value-size $vsize \
      --endpoint "$eps" --create --partitions $parts --table bench --op put \
      >/dev/null 2>"$tmp/create-$c.err" ||
      { echo "cluster $c: creating the table failed: $(cat "$tmp/create-$c.err")"; exit 1; }
done

# status EPS: one JSON array, NinesAdmin.Status of every node that answered.
status() {
  for u in $(echo "$1" | tr , ' '); do
    curl -s --max-time 1 -X POST -H 'X-Amz-Target: NinesAdmin.Status' \
        -H 'Content-Type: application/x-amz-json-1.0' -d '{"Groups": false}' "$u/"
    echo
  done | jq -cs '[.[] | objects]' 2>/dev/null || echo '[]'
}
# lag EPS: "BEHIND PENDING NODES": max behind_entries, sum of pending_pieces,
# how many nodes answered with an archive object.
lag() {
  status "$1" | jq -r '[.[] | .archive | objects] |
      "\([.[].behind_entries] | max // 0) \([.[].pending_pieces] | add // 0) \(length)"'
}
# poll EPS FILE: every second until $tmp/stop exists (bounded 600 s), a line
# "SECONDS_SINCE_START BEHIND PENDING NODES" per sample.
poll() {
  t0=$(date +%s)
  while [ ! -e "$tmp/stop" ] && [ $(($(date +%s) - t0)) -lt 600 ]; do
    echo "$(($(date +%s) - t0)) $(lag "$1")" >> "$2"
    sleep 1
  done
}
start_poll() { rm -f "$tmp/stop"; poll "$1" "$2" & poller=$!; }
stop_poll() { touch "$tmp/stop"; wait "$poller" 2>/dev/null; poller=""; }
# cpu C: CPU ticks (utime + stime) of cluster C's three ninesd, from /proc.
cpu() {
  t=0
  for n in n1 n2 n3; do
    p=$(cat "$tmp/$1/$n/ninesd.pid" 2>/dev/null)
    [ -n "$p" ] && [ -r "/proc/$p/stat" ] || continue
    t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
  done
  echo $t
}
hz=$(getconf CLK_TCK)
# others: ninesd processes on the machine that are not this script's (a test
# run by someone else disturbs the figures; the table flags such rounds).
others() { ps -eo args= | grep '[n]inesd' | grep -vc "$tmp"; }

# run C R: one load run on cluster C, round R; the JSON to $tmp/C-R.json,
# one line out; lag samples to $tmp/C-R.lag, CPU ticks to $tmp/C-R.cpu.
run() {
  c=$1; rr=$2; eval "eps=\$nodes_$c"
  start_poll "$eps" "$tmp/$c-$rr.lag"
  o0=$(others); c0=$(cpu "$c"); s0=$(date +%s)
  "$nines" load --json --concurrency $conc --duration "$secs" --keys $keys \
      --value-size $vsize --endpoint "$eps" --table bench --op put \
      > "$tmp/$c-$rr.json" 2>"$tmp/$c-$rr.err" ||
      { echo "$c round $rr: nines load failed: $(cat "$tmp/$c-$rr.err")"; rm -f "$tmp/$c-$rr.json"; }
  s1=$(date +%s); o1=$(others)
  echo $((s1 - s0)) > "$tmp/$c-$rr.runsecs"
  sleep 15
  o2=$(others)
  printf '%s\n' "$o0" "$o1" "$o2" | sort -n | tail -1 > "$tmp/$c-$rr.others"
  cpu_after=$(cpu "$c")
  echo $((cpu_after - c0)) > "$tmp/$c-$rr.cpu"
  if [ $c = b ]; then
    lag "$eps" > "$tmp/$c-$rr.lag15"
    # Until drained (every node 0 behind, 0 pending), at most 30 s after the
    # run; the time from the poller's samples (1 s resolution).
    while [ $(($(date +%s) - s1)) -le 30 ]; do
      set -- $(tail -1 "$tmp/$c-$rr.lag")
      if [ "$2" = 0 ] && [ "$3" = 0 ] && [ "$4" = 3 ]; then break; fi
      sleep 1
    done
    awk -v e="$(cat "$tmp/$c-$rr.runsecs")" '$1 > e && $2 == 0 && $3 == 0 && $4 == 3 { print $1 - e; f = 1; exit }
        END { if (!f) print ">30" }' "$tmp/$c-$rr.lag" > "$tmp/$c-$rr.drained"
    status "$eps" | jq -c '[.[] | .archive | objects] |
        {uploaded: ([.[].uploaded] | add), verified: ([.[].verified] | add),
         taken_over: ([.[].taken_over] | add), mismatches: ([.[].mismatches] | add),
         errors: ([.[].errors] | add), last_error: ([.[].last_error | select(. != null and . != "")] | first)}' \
        > "$tmp/$c-$rr.counters"
  fi
  stop_poll
  [ -s "$tmp/$c-$rr.json" ] && jq -r --arg n "$c round $rr" --argjson cpu "$(cat "$tmp/$c-$rr.cpu")" \
      --argjson hz "$hz" '.ops | to_entries[0] | "\($n): \(.value.ok) ok, \(.value.errors) errors, "
      + "\(.value.ops_per_s | floor) ops/s, p50 \(.value.latency_ms.p50) ms, p99 \(.value.latency_ms.p99) ms, "
      + "ninesd CPU \($cpu / $hz * 100 | floor / 100) s"
      + (if .value.errors > 0 then ", errors: \(.value.errors_by_type | tostring)" else "" end)' \
      "$tmp/$c-$rr.json"
  if [ $c = b ]; then
    echo "  lag: max $(awk -v e="$(cat "$tmp/$c-$rr.runsecs")" '$1 <= e && $2 > m { m = $2 } END { print m + 0 }' \
        "$tmp/$c-$rr.lag") entries during the run, $(cut -d' ' -f1 "$tmp/$c-$rr.lag15") (pending" \
        "$(cut -d' ' -f2 "$tmp/$c-$rr.lag15")) 15 s after, drained after $(cat "$tmp/$c-$rr.drained") s;" \
        "totals $(cat "$tmp/$c-$rr.counters")"
  fi
}

r=1
while [ $r -le $rounds ]; do
  run a $r
  run b $r
  r=$((r + 1))
done

# B caught up everywhere, then idle CPU of both, then the proof.
ok=0
for i in $(seq 60); do
  set -- $(lag "$nodes_b")
  if [ "$1" = 0 ] && [ "$2" = 0 ] && [ "$3" = 3 ]; then ok=1; break; fi
  sleep 1
done
[ $ok = 1 ] || echo "NOTE: B's archive not caught up 60 s after the last run: $(lag "$nodes_b")"
ia=$(cpu a); ib=$(cpu b); sleep 10; ia=$(($(cpu a) - ia)); ib=$(($(cpu b) - ib))
final=$(status "$nodes_b")
"$nines" archive verify "file://$arch" --json "$tmp/verify.json" > "$tmp/verify.out" 2>&1
vrc=$?
metric=$(for u in $(echo "$nodes_b" | tr , ' '); do
           curl -s --max-time 2 "$u/metrics" | awk '$1 == "nines_archive_behind_entries" { print $2 }'
         done | sort -n | tail -1)

# The table: one line per round, then medians and ranges of the ratios.
echo
echo "A plain, B archived (same cluster file + archive:); ratio = B / A of the same round;" \
     "CPU = ninesd user+sys of the 3 nodes per successful PutItem, run start to 15 s after"
printf '%-5s %9s %9s %9s %9s %7s %7s %8s %8s %7s %7s   %9s %9s %7s %12s\n' round "A ops/s" "B ops/s" \
    "A p99" "B p99" "ops x" "p99 x" "A us/op" "B us/op" "CPU x" "" "B lag max" "at +15 s" drained "other ninesd"
rows="$tmp/rows"
: > "$rows"
r=1
while [ $r -le $rounds ]; do
  a="$tmp/a-$r.json"; b="$tmp/b-$r.json"
  if [ -s "$a" ] && [ -s "$b" ]; then
    set -- $(jq -rn --argjson ca "$(cat "$tmp/a-$r.cpu")" --argjson cb "$(cat "$tmp/b-$r.cpu")" \
        --argjson hz "$hz" '[inputs | .ops | to_entries[0].value] as [$a, $b] |
        [$a.ops_per_s, $b.ops_per_s, $a.latency_ms.p99, $b.latency_ms.p99,
         (if $a.ok > 0 then $ca / $hz * 1e6 / $a.ok else 0 end),
         (if $b.ok > 0 then $cb / $hz * 1e6 / $b.ok else 0 end)] | @tsv' "$a" "$b")
    lmax=$(awk -v e="$(cat "$tmp/b-$r.runsecs")" '$1 <= e && $2 > m { m = $2 } END { print m + 0 }' \
           "$tmp/b-$r.lag")
    l15=$(cut -d' ' -f1 "$tmp/b-$r.lag15")
    oth=$(cat "$tmp/a-$r.others" "$tmp/b-$r.others" | sort -n | tail -1)
    echo "$r $1 $2 $3 $4 $5 $6 $lmax $l15 $(cat "$tmp/b-$r.drained") $oth" >> "$rows"
  else
    echo "$r: missing figures (a load run failed, see above)"
  fi
  r=$((r + 1))
done
awk '{ printf "%-5s %9d %9d %9.2f %9.2f %6.3fx %6.3fx %8.1f %8.1f %6.3fx %7s   %9d %9d %6ss %12d\n",
              $1, $2, $3, $4, $5, $3 / $2, $5 / $4, $6, $7, $7 / $6, "", $8, $9, $10, $11 }' "$rows"
busy=$(awk '$11 > 0 { printf "%s%s", s, $1; s = " " }' "$rows")
[ -z "$busy" ] || echo "NOTE: other ninesd processes (not this script's) ran during round(s) $busy:" \
    "those figures are disturbed"
# medrange EXPR [FORMAT]: "median (min-max)" of an awk expression over the rows.
medrange() {
  awk "{ print $1 }" "$rows" | sort -g | awk -v f="${2:-%.3f}" '{ v[NR] = $1 } END {
      if (NR == 0) { print "n/a"; exit }
      printf f " (" f "-" f ")", v[int((NR + 1) / 2)], v[1], v[NR] }'
}
echo "medians over $(wc -l < "$rows") rounds (range): throughput B/A $(medrange '$3 / $2')," \
     "p99 B/A $(medrange '$5 / $4'), CPU per write B/A $(medrange '$7 / $6')"
echo "  ops/s A $(medrange '$2' %d), B $(medrange '$3' %d); p99 ms A $(medrange '$4' %.1f)," \
     "B $(medrange '$5' %.1f); CPU us/write A $(medrange '$6' %.0f), B $(medrange '$7' %.0f)"
echo "B lag (max over nodes of archive.behind_entries): max during a run $(medrange '$8' %d)," \
     "15 s after a run $(medrange '$9' %d) entries; drained (0 behind, 0 pending everywhere)" \
     "$(cut -d' ' -f10 "$rows" | tr '\n' ' ')s after each run"
echo "idle CPU (10 s, after the rounds): A $((ia * 1000 / hz / 10)) ms/s," \
     "B $((ib * 1000 / hz / 10)) ms/s (of $(($(nproc) * 1000)))"
echo
echo "B's archiver at the end (summed over the 3 nodes): $(echo "$final" | jq -c '[.[] | .archive | objects] |
    {behind_entries: ([.[].behind_entries] | max), pending_pieces: ([.[].pending_pieces] | add),
     uploaded: ([.[].uploaded] | add), verified: ([.[].verified] | add),
     taken_over: ([.[].taken_over] | add), mismatches: ([.[].mismatches] | add),
     errors: ([.[].errors] | add), released_unarchived: ([.[].released_unarchived] | add),
     snapshots: ([.[].snapshots] | add)}')"
echo "/metrics nines_archive_behind_entries (max over nodes): ${metric:-missing}"
pieces=$(find "$arch" -path '*/log/*.json' 2>/dev/null | wc -l)
echo "archive: $(du -sh "$arch" 2>/dev/null | cut -f1) in $(find "$arch" -type f | wc -l) files," \
     "$pieces log pieces, $(jq '.groups | length' "$tmp/verify.json" 2>/dev/null) groups"
echo "nines archive verify (exit $vrc): $(grep -c '^PROBLEM' "$tmp/verify.out") PROBLEM line(s)," \
     "$(grep -c '^INCOMPLETE' "$tmp/verify.out") INCOMPLETE; verdict:"
grep -E ': (VERIFIED|PROBLEMS)$' "$tmp/verify.out" | sed 's/^/  /'
grep -q ': VERIFIED$' "$tmp/verify.out" || { echo "NOT VERIFIED:"; head -5 "$tmp/verify.out"; }
warn=$(cat "$tmp"/b/n*/ninesd.log 2>/dev/null | grep -E 'WARN|ERROR')
echo "B's ninesd logs: $(printf '%s' "$warn" | grep -c .) WARN/ERROR line(s)," \
     "$(printf '%s' "$warn" | grep -c archive) of them naming the archive"
printf '%s' "$warn" | head -5 | cut -c1-200 | sed 's/^/  /'
