#!/bin/sh
exec "$(dirname "$0")/../ctest.sh" fault_kinds "$@"
