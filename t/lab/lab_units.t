#!/bin/sh
exec "$(dirname "$0")/../ctest.sh" lab_units "$@"
