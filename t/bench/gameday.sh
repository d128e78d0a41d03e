#!/bin/sh
# Benchmark of the game-day runner (not a test; docs/gameday.md has the
# figures).
#
#   t/bench/gameday.sh [BUILD_DIR] [SEED]
#
# Brings up a 6-host lab (3 AZs, 2 racks), runs playbooks/power-off-random.yaml
# (10 rounds: a random node off for 5-20 s under 200 requests/s, then
# wait_healthy) with SEED (default 1), and prints the total time (target
# <= 5 minutes) and the per-round recovery time (power off -> first
# successful write to the partitions with a replica on that node), median
# and max, from report.json. Bounded: the run has a 15-minute deadline;
# the lab is taken down on exit.
set -e
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-${NINES_BUILD:-$top/build}}
seed=${2:-1}
nines="$build/bin/nines"
ninesd="$build/bin/ninesd"
[ -x "$nines" ] && [ -x "$ninesd" ] || { echo "build first: $build/bin/nines, ninesd" >&2; exit 1; }
if "$nines" --help | grep -q '^  gameday '; then
  gameday="$nines gameday"
elif [ -x "$build/t/gameday_bin" ]; then
  gameday="$build/t/gameday_bin"
else
  echo "no nines gameday and no $build/t/gameday_bin" >&2; exit 1
fi
tmp=$(mktemp -d /tmp/nines-bench-gameday.XXXXXX)
cleanup() {
  [ -e "$tmp/lab/lab.state" ] && "$nines" lab down --dir "$tmp/lab" >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

"$nines" lab up --hosts 6 --azs 3 --racks 2 --dir "$tmp/lab" >/dev/null 2>&1
start=$(date +%s.%N)
status=0
timeout --kill-after=30 900 $gameday run "$top/playbooks/power-off-random.yaml" \
  --inventory "$tmp/lab/inventory.yaml" --seed "$seed" --report "$tmp/report" \
  --ninesd "$ninesd" >"$tmp/out" 2>"$tmp/err" || status=$?
end=$(date +%s.%N)
cat "$tmp/out"
python3 - "$tmp/report/report.json" "$start" "$end" "$status" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
total = float(sys.argv[3]) - float(sys.argv[2])
rec = [s["recovery_s"] for s in r["steps"] if s["kind"] == "power_off" and s.get("recovery_s") is not None]
offs = [s for s in r["steps"] if s["kind"] == "power_off"]
rec.sort()
med = (rec[len(rec) // 2] if len(rec) % 2 else (rec[len(rec) // 2 - 1] + rec[len(rec) // 2]) / 2) if rec else float("nan")
print(f"bench gameday: seed {r['seed']}, exit {sys.argv[4]}, passed {r['passed']}")
print(f"  total {total:.1f} s (target <= 300 s), of which the runner {r['elapsed_s']:.1f} s")
print(f"  power-offs {len(offs)}, holds {sum(s.get('hold_s', 0) for s in offs):.1f} s in all")
print(f"  recovery per round (s): " + " ".join(f"{x:.3f}" for x in rec))
print(f"  recovery median {med:.3f} s, max {max(rec) if rec else float('nan'):.3f} s, rounds with a recovery {len(rec)}/{len(offs)}")
print(f"  traffic ok {r['traffic']['ok']}, errors {r['traffic']['errors']}")
EOF
exit "$status"
