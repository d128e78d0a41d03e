#!/bin/sh
# Benchmark of `nines check` (not a test; docs/checkers.md has the figures).
#
#   t/bench/checkers.sh [BUILD_DIR]
#
# 1. Histories of 10^4, 10^5 and 10^6 operations over 10,000 keys (fewer
#    keys for the small ones: 100 ops per key), 50 processes, 1% info ops:
#    wall time, CPU time, operations per second, peak RSS.
# 2. The largest single-key concurrency resolved within 10 s: a single-key
#    history of 20,000 operations at 4, 6, 8, ... processes until the check
#    says unknown or takes longer than 10 s.
# Bounded: at most 3 + 16 checks, each capped by --time-limit.
set -e
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-${NINES_BUILD:-$top/build}}
nines="$build/bin/nines"
[ -x "$nines" ] || { echo "build first: $nines" >&2; exit 1; }
tmp=$(mktemp -d /tmp/nines-bench-checkers.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

measure() { # measure FILE ARGS... -> "wall user sys rss_kb exit"
  f=$1; shift
  set +e
  /usr/bin/time -f '%e %U %S %M' -o "$tmp/time" "$nines" check --quiet "$@" "$f"
  rc=$?
  set -e
  echo "$(tail -n 1 "$tmp/time") $rc"
}

echo "== throughput (50 processes, 1% info, 100 ops per key, up to 10,000 keys)"
printf '%10s %8s %8s %8s %8s %10s %10s %6s\n' ops keys wall_s user_s sys_s ops/s_wall rss_MiB exit
for n in 10000 100000 1000000; do
  keys=$((n / 100)); [ $keys -gt 10000 ] && keys=10000
  "$nines" histgen --ops $n --keys $keys --processes 50 --info-rate 0.01 --seed 1 -o "$tmp/h.jsonl"
  set -- $(measure "$tmp/h.jsonl" --time-limit 60)
  printf '%10s %8s %8s %8s %8s %10.0f %10.1f %6s\n' $n $keys $1 $2 $3 \
    "$(echo "$n / ($1 + 0.0001)" | bc -l)" "$(echo "$4 / 1024" | bc -l)" $5
done

echo "== single key, 20,000 ops, 1% info: largest concurrency resolved in 10 s"
printf '%10s %8s %8s %10s %6s\n' processes wall_s user_s rss_MiB exit
best=0
for p in 4 6 8 10 12 14 16 18 20 24 28 32 40 48 56 64; do
  "$nines" histgen --ops 20000 --keys 1 --processes $p --info-rate 0.01 --seed 1 -o "$tmp/k.jsonl"
  set -- $(measure "$tmp/k.jsonl" --time-limit 10)
  printf '%10s %8s %8s %10.1f %6s\n' $p $1 $2 "$(echo "$4 / 1024" | bc -l)" $5
  if [ "$5" = 0 ] && [ "$(echo "$1 <= 10" | bc)" = 1 ]; then best=$p; else break; fi
done
echo "largest single-key concurrency resolved within 10 s: $best processes"
