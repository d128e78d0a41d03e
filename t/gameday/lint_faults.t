#!/bin/sh
exec "$(dirname "$0")/../ctest.sh" lint_faults "$@"
