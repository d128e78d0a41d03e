#!/bin/sh
# Runs the C test binary named $1 from the build tree ($NINES_BUILD, default
# ./build next to t/). Each t/<area>/<name>.t is a two-line wrapper around this.
top=$(cd "$(dirname "$0")/.." && pwd)
build=${NINES_BUILD:-$top/build}
bin="$build/t/$1"
shift
if [ ! -x "$bin" ]; then
  echo "1..0 # SKIP $bin not built (run make test)"
  exit 0
fi
export NINES_TOP="$top" NINES_BUILD="$build"
# A hung test fails instead of hanging the suite.
exec timeout --kill-after=10 "${NINES_TEST_TIMEOUT:-900}" "$bin" "$@"
