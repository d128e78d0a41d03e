#!/bin/sh
# Benchmark (not a test; figures in docs/benchmarks.md, "Replacing
# replicas"): how long moving a node's replicas takes, per partition and
# per GB, and what clients see meanwhile.
#
#   t/bench/replace.sh [ROUNDS] [MB] [PARTITIONS] [SECONDS]
#                      (defaults: 20, 256, 8, 300; NINES_BUILD or ./build)
#
# A 6-node local cluster (3 AZs, loopback), one table of PARTITIONS
# partitions filled with MB of 4 KB items (`nines load`), then ROUNDS
# rounds of `nines cluster replace NODE` (every partition NODE holds at
# once), NODE taken in turn from the nodes holding replicas, while `nines
# load` runs closed-loop PutItem at 8 connections over the nodes for
# SECONDS (rounds stop 20 s before it ends). Prints
# per round the partitions moved and the seconds the command took, then
# the per-partition replacement times (median, max, as the command reports
# them: from ReplaceReplica accepted to the old member's slot cleared),
# the bytes a new member received per second (its partition's share of
# MB over its replacement time), and the load's errors by type and p99.
# Bounded: every wait has a deadline, nodes are stopped by pid; NINES_KEEP=1
# keeps the data and logs.
set -e
top=$(cd "$(dirname "$0")/../.." && pwd)
export NINES_BUILD=${NINES_BUILD:-$top/build}
export REPL_ROUNDS=${1:-20} REPL_MB=${2:-256} REPL_PARTS=${3:-8} REPL_SECS=${4:-300}
exec perl -I"$top/t/lib" - <<'PERL'
use strict;
use warnings;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use Nines qw(new_cluster start_member stop_node kill_node ddb wait_until bin slurp);
use Moves qw(placement holders);

my ($rounds, $mb, $parts, $secs) = map { 0 + $_ } @ENV{qw(REPL_ROUNDS REPL_MB REPL_PARTS REPL_SECS)};
my $cl = new_cluster(nodes => 6, azs => 3, extra => "storage: {compact_entries: 20000}\n");
my @nodes = @{ $cl->{nodes} };
start_member($_) for @nodes;
my @kids;
END {
    kill 'TERM', $_ for @kids;
    waitpid $_, 0 for @kids;
    kill_node($_) for grep { $_->{pid} } @nodes;
}
my $eps = join ',', map { $_->{url} } @nodes;
my $nines = bin('nines');
my $items = int($mb * 1024 * 1024 / 4096);
my $t0 = time;
system("$nines load --endpoint $eps --table bench --create --partitions $parts --op put "
       . "--keys $items --requests $items --duration 600 --value-size 4000 --concurrency 16 "
       . "--seed 7 > $cl->{dir}/fill.txt 2>&1") == 0 or die "fill failed:\n" . slurp("$cl->{dir}/fill.txt");
printf "replace: 6 nodes, %d partitions, %d MB (%d items of 4 KB) written in %.1f s; %d cores, load %.2f\n",
    $parts, $mb, $items, time - $t0, `nproc` + 0, (split ' ', `cat /proc/loadavg`)[0];

# Client traffic for the whole run.
my $lp = fork // die;
if ($lp == 0) {
    exec "$nines load --endpoint $eps --table bench --op put --keys 100000 --value-size 200 "
       . "--concurrency 8 --duration $secs --seed 9 > $cl->{dir}/load.txt 2>&1";
    die;
}
push @kids, $lp;
my $load_end = time + $secs;
sleep 2;

my (@per_part, @rates);
my $part_mb = $mb / $parts;
for my $r (1 .. $rounds) {
    last if time > $load_end - 20;
    my $h = holders(placement('bench', @nodes));
    my @cands = sort { keys %{ $h->{$b} } <=> keys %{ $h->{$a} } || $a cmp $b } keys %$h;
    my $x = $cands[($r - 1) % @cands];
    my $n = keys %{ $h->{$x} };
    my $s0 = time;
    my $out = `$nines cluster replace $x --config $cl->{path} --parallel $parts --timeout 600 2>&1`;
    my $rc = $? >> 8;
    my $took = time - $s0;
    my @t = $out =~ /replaced by \S+ \(([\d.]+) s\)/g;
    push @per_part, @t;
    push @rates, map { $_ > 0 ? $part_mb / $_ : () } @t;
    printf "round %2d: %s -> %d partitions moved in %.1f s (exit %d)\n", $r, $x, scalar @t, $took, $rc;
    print $out if $rc;
}
waitpid $lp, 0; # it ends by itself after SECONDS
@kids = ();
sub quant { my ($p, @v) = @_; my @s = sort { $a <=> $b } @v; @s ? $s[int($p * $#s + 0.5)] : 0 }
printf "per partition: %d replacements, median %.2f s, max %.2f s (%.0f MB each)\n",
    scalar @per_part, quant(0.5, @per_part), quant(1, @per_part), $part_mb;
printf "new member fed at median %.1f MB/s, min %.1f MB/s: %.1f s per GB at the median\n",
    quant(0.5, @rates), quant(0, @rates), quant(0.5, @rates) ? 1024 / quant(0.5, @rates) : 0;
print "client load during the run: " . (slurp("$cl->{dir}/load.txt") =~ s/\n+\z//r) . "\n";
PERL
