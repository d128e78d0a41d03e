#!/bin/sh
# Benchmark of labfs (not a test; docs/labfs.md has the figures).
#
#   t/bench/labfs.sh [BUILD_DIR] [MIB]
#
# Sequential 4 KiB appends with an fdatasync every 64 KiB, MIB MiB per run
# (default 32), on a labfs mount and on its backing directory directly, in
# the same run: three rounds alternating direct / labfs (the best of each is
# reported, so a burst of other load on the machine hurts neither side), then
# the ratio labfs / direct (the target is >= 30%). Also the same appends
# with labfs mounted --no-backing-sync (fsync stops at labfs's own memory ->
# backing page cache step). Bounded: 3 x 3 runs of MIB MiB; the mount is
# unmounted and the directory removed on exit.
set -e
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-${NINES_BUILD:-$top/build}}
mib=${2:-32}
nines="$build/bin/nines"
[ -x "$nines" ] || { echo "build first: $build/bin/nines" >&2; exit 1; }
[ -w /dev/fuse ] || { echo "/dev/fuse is not usable" >&2; exit 1; }
tmp=$(mktemp -d /tmp/nines-bench-labfs.XXXXXX)
cleanup() {
  for m in "$tmp/m" "$tmp/m2"; do
    "$nines" labfs umount "$m" >/dev/null 2>&1 || umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
mkdir -p "$tmp/b" "$tmp/m" "$tmp/b2" "$tmp/m2" "$tmp/direct"
"$nines" labfs mount "$tmp/b" "$tmp/m" >/dev/null
"$nines" labfs mount --no-backing-sync "$tmp/b2" "$tmp/m2" >/dev/null

# Prints MiB/s of appending $mib MiB to $1 (4 KiB writes, fdatasync / 64 KiB).
run() {
  python3 - "$1" "$mib" <<'PY'
import os, sys, time
path, mib = sys.argv[1], int(sys.argv[2])
buf = b'\xab' * 4096
n = mib * 256
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
t0 = time.monotonic()
for i in range(1, n + 1):
    os.write(fd, buf)
    if i % 16 == 0:
        os.fdatasync(fd)
os.fdatasync(fd)
dt = time.monotonic() - t0
os.close(fd)
os.unlink(path)
print("%.1f" % (mib / dt))
PY
}

best() { printf '%s\n' "$@" | sort -g | tail -1; }
d1=$(run "$tmp/direct/f"); l1=$(run "$tmp/m/f"); n1=$(run "$tmp/m2/f")
d2=$(run "$tmp/direct/f"); l2=$(run "$tmp/m/f"); n2=$(run "$tmp/m2/f")
d3=$(run "$tmp/direct/f"); l3=$(run "$tmp/m/f"); n3=$(run "$tmp/m2/f")
d=$(best "$d1" "$d2" "$d3"); l=$(best "$l1" "$l2" "$l3"); n=$(best "$n1" "$n2" "$n3")
echo "sequential 4 KiB appends, fdatasync every 64 KiB, $mib MiB per run (best of 3):"
echo "  direct (backing fs):          $d MiB/s   runs: $d1 $d2 $d3"
echo "  labfs:                        $l MiB/s   runs: $l1 $l2 $l3"
echo "  labfs --no-backing-sync:      $n MiB/s   runs: $n1 $n2 $n3"
python3 -c "import sys; d,l,n=map(float,sys.argv[1:]); print('  ratio labfs/direct: %.0f%% (target >= 30%%); no-backing-sync/direct: %.0f%%' % (100*l/d, 100*n/d))" "$d" "$l" "$n"
