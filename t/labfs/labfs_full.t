#!/bin/sh
exec "$(dirname "$0")/../ctest.sh" labfs_full "$@"
