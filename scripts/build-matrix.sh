#!/usr/bin/env bash
# Builds nines (every target, tests included, -Werror) in the standard CMake
# build types with gcc and clang, each in build-matrix/<compiler>-<type>/.
#   scripts/build-matrix.sh                      all four types, both compilers
#   scripts/build-matrix.sh Release              one type, both compilers
#   COMPILERS=gcc scripts/build-matrix.sh Debug  one type, one compiler
# Exits non-zero naming the first combination that failed; its log is kept
# in build-matrix/<compiler>-<type>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
types=("$@")
[ ${#types[@]} -gt 0 ] || types=(Debug Release RelWithDebInfo MinSizeRel)
read -r -a compilers <<<"${COMPILERS:-gcc clang}"
jobs=${JOBS:-$(nproc)}
mkdir -p build-matrix
for cc in "${compilers[@]}"; do
  for bt in "${types[@]}"; do
    dir="build-matrix/$cc-$bt"
    log="build-matrix/$cc-$bt.log"
    start=$(date +%s)
    if CC=$cc cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$bt" >"$log" 2>&1 &&
       cmake --build "$dir" -j "$jobs" >>"$log" 2>&1; then
      echo "build-matrix: $cc $bt ok ($(( $(date +%s) - start )) s)"
    else
      echo "build-matrix: $cc $bt FAILED; the first errors ($log):" >&2
      grep -m 20 -E 'error|warning' "$log" >&2 || tail -n 20 "$log" >&2
      exit 1
    fi
  done
done
