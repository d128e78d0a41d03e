#!/bin/sh
# Time from CreateTable of N partitions on a fresh three-node local cluster
# until every partition and the metadata group have a leader, and again
# after kill -9 of every node and a restart (issue 21). Runs
# t/integration/bigtable.t once per size and prints its measurements.
#   t/bench/bigtable.sh [SIZES...]     default: 256 1024
# NINES_BUILD picks the build (default ./build); NINES_BIGTABLE_BOUND the
# bound in seconds (default 60).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
export NINES_BUILD="${NINES_BUILD:-$top/build}"
[ $# -gt 0 ] || set -- 256 1024
for n in "$@"; do
    out=$(NINES_BIGTABLE_PARTS=$n timeout 600 prove -v "$top/t/integration/bigtable.t" 2>&1 || true)
    created=$(printf '%s\n' "$out" | sed -n 's/.*measured: .* led \([0-9.-]*\) s after CreateTable.*/\1/p')
    restarted=$(printf '%s\n' "$out" | sed -n 's/.*measured: .* led \([0-9.-]*\) s after the restart.*/\1/p')
    result=$(printf '%s\n' "$out" | sed -n 's/^Result: //p')
    printf 'partitions %5d  all led after CreateTable %8s s  after kill -9 + restart %8s s  (%s)\n' \
        "$n" "${created:--}" "${restarted:--}" "${result:-?}"
    printf '%s\n' "$out" | grep -E '^# (after|CreateTable answered)' || true
done
