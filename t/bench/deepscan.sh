#!/bin/sh
# The deep scrub's scan rate on one core against the physical reference, in
# one run (not a test; figures in docs/benchmarks.md, "The scrubber"):
#
#   t/bench/deepscan.sh [ITEMS] [VALUE_BYTES] [ROUNDS]   (defaults 1000000, 50, 3)
#
# build/t/deepscan fills a new LMDB environment with ITEMS items (16-byte
# keys, VALUE_BYTES-byte values) as the applier writes them (item and
# digest in one transaction); then, ROUNDS times: a deep scan of the
# partition unthrottled on one thread (deepscrub_scan), and `sha256sum` of
# the same data.mdb, the page cache warm for both. The ratio compares MB/s
# of the same file: the partition's LMDB pages for the scan, the file for
# sha256sum. Bounded by ITEMS; the directory is removed at the end.
set -e
items=${1:-1000000}
vbytes=${2:-50}
rounds=${3:-3}
build=${NINES_BUILD:-$(cd "$(dirname "$0")/../.." && pwd)/build}
bin="$build/t/deepscan"
[ -x "$bin" ] || { echo "deepscan.sh: $bin not built (make build)" >&2; exit 2; }
dir=$(mktemp -d /tmp/nines-deepscan-XXXXXX)
trap 'rm -rf "$dir"' EXIT
"$bin" fill "$dir" "$items" "$vbytes"
size=$(stat -c %s "$dir/data.mdb")
echo "data.mdb: $(echo "$size" | awk '{printf "%.1f MB", $1 / 1e6}')"
cat "$dir/data.mdb" >/dev/null
r=1
while [ "$r" -le "$rounds" ]; do
    line=$("$bin" scan "$dir")
    echo "round $r $line"
    scan_mbs=$(echo "$line" | sed -n 's/.* \([0-9.]*\) MB\/s of pages.*/\1/p')
    t0=$(date +%s.%N)
    sha256sum "$dir/data.mdb" >/dev/null
    t1=$(date +%s.%N)
    echo "$t0 $t1 $size $scan_mbs" | awk '{s = $2 - $1; m = $3 / 1e6 / s;
        printf "round %d sha256sum: %.3f s, %.1f MB/s; scan / sha256sum = %.2f\n", '"$r"', s, m, $4 / m}'
    r=$((r + 1))
done
