#!/bin/sh
exec "$(dirname "$0")/../ctest.sh" report_html "$@"
