#!/bin/sh
# The set digest's cost on the write path, in-process (not a test; figures
# in docs/benchmarks.md, "The scrubber"):
#
#   t/bench/digest_upkeep.sh [KEYS] [VALUE_BYTES] [ROUNDS]   (defaults 100000, 200, 5)
#
# build/t/deepscan upkeep: an LMDB environment of KEYS items, then ROUNDS
# rounds of 4 x KEYS overwrites each way: without the digest, with it
# written per item (digest_update), and with it written once per
# transaction as the applier does (digest_pending). Once with 3 writes per
# transaction (a lightly loaded partition: the applier commits every 5 ms)
# and once with 30. CPU time of the writing thread per item write, best of
# ROUNDS. No network, no consensus, no fsync (MDB_NOSYNC): the digest's
# share of a replicated PutItem is smaller (t/bench/scrub.sh part a).
# Bounded by KEYS; the directory is removed at the end.
set -e
keys=${1:-100000}
vbytes=${2:-200}
rounds=${3:-5}
build=${NINES_BUILD:-$(cd "$(dirname "$0")/../.." && pwd)/build}
bin="$build/t/deepscan"
[ -x "$bin" ] || { echo "digest_upkeep.sh: $bin not built (make build)" >&2; exit 2; }
for batch in 3 30; do
    dir=$(mktemp -d /tmp/nines-upkeep-XXXXXX)
    "$bin" upkeep "$dir" "$keys" "$vbytes" "$batch" "$rounds" | tail -n 1
    rm -rf "$dir"
done
