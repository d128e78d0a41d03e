#!/bin/sh
exec "$(dirname "$0")/../ctest.sh" checkers_edn "$@"
