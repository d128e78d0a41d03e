#!/bin/sh
exec "$(dirname "$0")/../ctest.sh" tap_selftest "$@"
