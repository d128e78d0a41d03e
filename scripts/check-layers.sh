#!/bin/sh
# check-layers.sh — checks the layer rule over every #include "dir/..." of
# the tree (docs/architecture.md; CMakeLists.txt's link lines say the same).
#
#   lib <- net <- proto <- store                      (the server)
#   lib <- labfs                                       (the FUSE daemon)
#   lib <- net <- proto <- checkers <- load
#   {net, labfs} <- fault <- lab
#   proto <- {cluster, canary, scrubber}
#   lib <- net <- archive <- {store, scrubber}        (the WAL archive)
#   {load, fault, cluster, canary, checkers} <- gameday <- demo <- cli
#
# A folder may include itself and the folders listed after it in RULES
# below, nothing else: the store includes no toolkit folder, no toolkit
# folder includes store/. Every top-level folder that holds C code must
# have a line, so a new folder is placed in the rule before it builds.
#
# usage: scripts/check-layers.sh [TREE]   (default: the repository root)
# Exit 0 when every include is allowed; 1 with one line per violation,
# "FILE:LINE: ...", on stderr; 2 on a usage error.

# folder   folders it may include besides itself ("*": any folder)
RULES='
lib
net       lib
labfs     lib
archive   net lib
proto     net lib
store     archive proto net lib
checkers  proto net lib
load      checkers proto net lib
fault     labfs net lib
lab       fault labfs net lib
cluster   proto net lib
canary    checkers proto net lib
scrubber  archive checkers proto net lib
gameday   load fault cluster canary checkers proto labfs net lib
demo      gameday lab cluster canary load fault checkers labfs proto net lib
cli       demo gameday lab canary scrubber archive cluster load fault checkers labfs proto net lib
fuzz      *
t         *
'

set -u
tree=${1:-$(cd "$(dirname "$0")/.." && pwd)}
if [ ! -d "$tree" ]; then
    echo "usage: $0 [TREE]" >&2
    exit 2
fi
cd "$tree" || exit 2

# Build directories and hidden folders (.git) are not part of the tree.
find . -path './build*' -prune -o -path './.*' -prune -o \
    -type f \( -name '*.c' -o -name '*.h' \) -print | sed 's#^\./##' | sort |
    awk -v rules="$RULES" '
    BEGIN {
        n = split(rules, lines, "\n")
        for (i = 1; i <= n; i++) {
            k = split(lines[i], w, /[ \t]+/)
            if (k == 0 || w[1] == "")
                continue
            known[w[1]] = 1
            allowed[w[1]] = " "
            for (j = 2; j <= k; j++)
                allowed[w[1]] = allowed[w[1]] w[j] " "
        }
        bad = 0
    }
    {
        file = $0
        if (index(file, "/") == 0) {
            printf "%s:1: C file at the top of the tree: put it in a folder of the layer table\n", file > "/dev/stderr"
            bad++
            next
        }
        dir = substr(file, 1, index(file, "/") - 1)
        if (!(dir in known)) {
            printf "%s:1: folder %s/ is not in the layer table (scripts/check-layers.sh RULES)\n", file, dir > "/dev/stderr"
            bad++
            next
        }
        ln = 0
        while ((getline line < file) > 0) {
            ln++
            if (line !~ /^[ \t]*#[ \t]*include[ \t]*"/)
                continue
            inc = line
            sub(/^[ \t]*#[ \t]*include[ \t]*"/, "", inc)
            sub(/".*$/, "", inc)
            if (index(inc, "/") == 0)
                continue # a file next to the includer
            to = substr(inc, 1, index(inc, "/") - 1)
            if (to == dir || allowed[dir] == " * ")
                continue
            if (!(to in known)) {
                printf "%s:%d: includes %s from folder %s/, which is not in the layer table\n", file, ln, inc, to > "/dev/stderr"
                bad++
            } else if (index(allowed[dir], " " to " ") == 0) {
                printf "%s:%d: forbidden edge %s -> %s (includes %s); %s/ may include:%s\n", file, ln, dir, to, inc, dir, allowed[dir] == " " ? " nothing but itself" : allowed[dir] > "/dev/stderr"
                bad++
            }
        }
        close(file)
    }
    END {
        if (bad) {
            printf "check-layers: %d forbidden include(s)\n", bad > "/dev/stderr"
            exit 1
        }
    }'
