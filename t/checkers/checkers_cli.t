#!/bin/sh
# `nines check` end to end: exit codes 0/1/2/3, the summary, --json, --html
# (self-contained, capped in size on a large history).
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${NINES_BUILD:-$top/build}
nines="$build/bin/nines"
if [ ! -x "$nines" ]; then
  echo "1..0 # SKIP $nines not built (run make test)"
  exit 0
fi
tmp=$(mktemp -d /tmp/nines-checkers-cli.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
n=0
fails=0
t() { # t DESCRIPTION COMMAND...
  desc=$1; shift
  n=$((n + 1))
  if "$@"; then echo "ok $n - $desc"; else echo "not ok $n - $desc"; fails=$((fails + 1)); fi
}
code() { # code EXPECTED COMMAND... : runs it, compares the exit code
  want=$1; shift
  "$@" >"$tmp/out" 2>"$tmp/err"
  got=$?
  [ "$got" = "$want" ] || { echo "# exit $got, wanted $want"; sed 's/^/# /' "$tmp/err" | head -5; return 1; }
}

"$nines" histgen --ops 3000 --keys 4 --processes 8 --cas-rate 0.2 --info-rate 0.05 --seed 7 -o "$tmp/good.jsonl"
"$nines" histgen --ops 3000 --keys 4 --processes 8 --info-rate 0.05 --seed 7 --anomaly stale-read -o "$tmp/bad.jsonl" 2>/dev/null

t "valid history exits 0" code 0 "$nines" check "$tmp/good.jsonl"
t "summary says VALID" grep -q '^verdict: VALID' "$tmp/out"
t "invalid history exits 1" code 1 "$nines" check --json "$tmp/bad.json" --html "$tmp/bad.html" "$tmp/bad.jsonl"
t "summary names the first op" grep -q 'first operation that cannot be linearized' "$tmp/out"
t "summary classifies it" grep -q 'stale read:' "$tmp/out"
t "summary lists concurrent ops" grep -q 'concurrent with it:' "$tmp/out"
t "summary lists possible states" grep -q 'states possible just before it: v' "$tmp/out"
t "summary fits one screen" test "$(wc -l <"$tmp/out")" -le 40
t "JSON is valid and complete" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["verdict"] == "invalid" and d["exit_code"] == 1
f = d["linearizability"]["first"]
assert f["kind"] == "stale-read" and f["op"]["f"] == "read" and f["possible_states"]
assert d["anomaly_counts"]["stale-read"] == 1
' "$tmp/bad.json"
t "HTML is self-contained" sh -c "grep -q '<svg' '$tmp/bad.html' && grep -q 'class=\"bad\"' '$tmp/bad.html' && ! grep -qi '<script\|src=\|href=' '$tmp/bad.html'"

# a large single-key history keeps the page small
"$nines" histgen --ops 60000 --keys 1 --processes 6 --info-rate 0.01 --seed 3 --anomaly phantom -o "$tmp/big.jsonl" 2>/dev/null
t "large invalid history exits 1" code 1 "$nines" check --html "$tmp/big.html" "$tmp/big.jsonl"
t "HTML capped in size ($(wc -c <"$tmp/big.html") bytes)" test "$(wc -c <"$tmp/big.html")" -lt 150000
t "HTML draws at most 200 ops" test "$(grep -c '<rect' "$tmp/big.html")" -le 200

# unknown: 40 concurrent writes then two reads that cannot both hold
i=0; : >"$tmp/hard.jsonl"
while [ $i -lt 40 ]; do echo "{\"process\":$i,\"type\":\"invoke\",\"f\":\"write\",\"value\":$i}" >>"$tmp/hard.jsonl"; i=$((i + 1)); done
i=0
while [ $i -lt 40 ]; do echo "{\"process\":$i,\"type\":\"ok\",\"f\":\"write\",\"value\":$i}" >>"$tmp/hard.jsonl"; i=$((i + 1)); done
cat >>"$tmp/hard.jsonl" <<'H'
{"process":99,"type":"invoke","f":"read"}
{"process":99,"type":"ok","f":"read","value":1}
{"process":99,"type":"invoke","f":"read"}
{"process":99,"type":"ok","f":"read","value":2}
H
t "search bound exits 2" code 2 "$nines" check --time-limit 0.3 --json "$tmp/hard.json" "$tmp/hard.jsonl"
t "unknown names the key and window" grep -q 'unknown: key (the register) (42 ops): time limit hit; events' "$tmp/out"
t "unknown in JSON" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
u = d["linearizability"]["unknown"][0]
assert d["verdict"] == "unknown" and u["reason"] == "time limit" and u["window"][1] >= u["window"][0]
' "$tmp/hard.json"
t "memory bound exits 2" code 2 "$nines" check --memory-limit 2 "$tmp/hard.jsonl"

printf '{"process":1,"type":"invoke","f":"read"}\n{"process":1,"type":"ok" "f":"read"}\n' >"$tmp/broken.jsonl"
t "malformed JSONL exits 3" code 3 "$nines" check "$tmp/broken.jsonl"
t "with file, line and column" grep -q 'broken.jsonl:2:26:' "$tmp/err"
printf '[{:process 1 :type :invoke :f :read}\n {:process 1, :type :ok :f :read :value "x}]\n' >"$tmp/broken.edn"
t "malformed EDN exits 3" code 3 "$nines" check "$tmp/broken.edn"
t "with line and column" grep -q 'line 2, column 41' "$tmp/err"
t "missing file exits 3" code 3 "$nines" check "$tmp/nope.jsonl"
t "bad option exits 3" code 3 "$nines" check --model nonsense "$tmp/good.jsonl"
t "EDN with --initial" code 0 "$nines" check --initial 0 "$top/t/checkers/data/small.edn"
# Every delete writes nil: a nil read must not be pinned to someone else's
# later delete (a false read-your-writes violation, found by nines load --history).
t "deletes and eventually consistent reads: valid" code 0 "$nines" check "$top/t/checkers/data/deletes-and-ec-reads.jsonl"
t "a read of the value before this process's own delete is a read-your-writes violation" \
  code 1 "$nines" check "$top/t/checkers/data/ryw-after-delete.jsonl"
t "... named as such" grep -q '1 read-your-writes' "$tmp/out"

# Nothing to check is valid (Knossos' verdict too): only nemesis events, or none.
printf '[{:process :nemesis, :type :info, :f :start, :value nil}\n {:process :nemesis, :type :info, :f :stop, :value nil}]\n' >"$tmp/nemesis.edn"
t "a history of nemesis events only exits 0" code 0 "$nines" check "$tmp/nemesis.edn"
t "... and says nothing was checked" grep -q 'valid: nothing to check (no client operations; 2 events)' "$tmp/out"
printf '[]\n' >"$tmp/empty.edn"
t "an empty EDN history exits 0" code 0 "$nines" check "$tmp/empty.edn"
: >"$tmp/empty.jsonl"
t "an empty JSONL history exits 0" code 0 "$nines" check "$tmp/empty.jsonl"

# Several histories in one run: one verdict line each, the worst exit code.
t "several valid histories exit 0" code 0 "$nines" check "$tmp/good.jsonl" "$tmp/nemesis.edn" "$top/t/checkers/data/small.edn"
t "... one verdict line each" test "$(grep -c ': valid' "$tmp/out")" -eq 3
t "... and a tally" grep -q '^nines check: 3 histories: 3 valid, 0 invalid, 0 unknown, 0 input errors$' "$tmp/out"
t "valid + invalid + unknown exit 1 (invalid is worse than unknown)" \
  code 1 "$nines" check --time-limit 0.3 "$tmp/hard.jsonl" "$tmp/good.jsonl" "$tmp/bad.jsonl"
t "... each named with its verdict" sh -c "grep -q 'hard.jsonl: unknown' '$tmp/out' && grep -q 'good.jsonl: valid' '$tmp/out' && grep -q 'bad.jsonl: invalid' '$tmp/out'"
t "valid + unknown exit 2" code 2 "$nines" check --time-limit 0.3 "$tmp/good.jsonl" "$tmp/hard.jsonl"
t "an input error among them exits 3, and the others are still checked" \
  code 3 "$nines" check "$tmp/bad.jsonl" "$tmp/broken.jsonl" "$tmp/good.jsonl"
t "... the others' verdicts printed" sh -c "grep -q 'bad.jsonl: invalid' '$tmp/out' && grep -q 'good.jsonl: valid' '$tmp/out' && grep -q 'broken.jsonl: input error' '$tmp/out'"
t "... the bad file's error with line and column" grep -q 'broken.jsonl:2:26:' "$tmp/err"
t "--json with several histories is refused" code 3 "$nines" check --json "$tmp/x.json" "$tmp/good.jsonl" "$tmp/bad.jsonl"
t "... saying why" grep -q 'take one history' "$tmp/err"
# A corpus of hundreds in one process.
i=0
while [ $i -lt 200 ]; do cp "$tmp/nemesis.edn" "$tmp/corpus-$i.edn"; i=$((i + 1)); done
"$nines" histgen --ops 300 --keys 2 --processes 4 --seed 11 -o "$tmp/corpus-g.jsonl"
"$nines" histgen --ops 300 --keys 2 --processes 4 --seed 11 --anomaly stale-read -o "$tmp/corpus-b.jsonl" 2>/dev/null
t "202 histories in one run: the one invalid one decides (exit 1)" code 1 "$nines" check "$tmp"/corpus-*
t "... 202 verdict lines and the tally" sh -c "test \$(grep -c '^$tmp/corpus-' '$tmp/out') -eq 202 && grep -q '202 histories: 201 valid, 1 invalid' '$tmp/out'"

echo "1..$n"
[ $fails -eq 0 ]
