#!/bin/sh
exec "$(dirname "$0")/../ctest.sh" test_group_conf "$@"
