#!/bin/sh
# Soak (not a test; figures in docs/benchmarks.md, "Leader churn under
# load"): a saturated 3-node cluster with no fault injected must hold no
# election.
#
#   t/bench/churn.sh [SECONDS] [CONNECTIONS] [PARTITIONS]
#                    (defaults: 600, 64, 8; NINES_BUILD or ./build)
#
# A 3-node local cluster (3 AZs, loopback), one table of PARTITIONS
# partitions (PARTITIONS + 1 groups with the metadata group), then two
# phases of SECONDS/2 each of closed-loop PutItem at CONNECTIONS connections
# spread over the three nodes (`nines load`): 100-byte values, then 3 KB
# values. It prints per phase ops/s, p50/p99 and errors by type, the groups
# whose term changed (NinesAdmin.Status of every node before and after each
# phase, and a sampler every 2 s that also catches a leader change), and
# the elections the node logs name with their cause (ninesd logs every
# election timeout and check-quorum step-down with what the member saw).
# Last line: "churn: E errors, T term changes" (0 and 0 is the goal).
# Bounded: each phase by its duration (nines load stops itself), every
# wait has a deadline, nodes are stopped by pid. NINES_KEEP=1 keeps the
# data and logs.
set -e
top=$(cd "$(dirname "$0")/../.." && pwd)
export NINES_BUILD=${NINES_BUILD:-$top/build}
export CHURN_SECS=${1:-600} CHURN_CONNS=${2:-64} CHURN_PARTS=${3:-8}
exec perl -I"$top/t/lib" - <<'PERL'
use strict;
use warnings;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use Nines qw(new_cluster start_member stop_node kill_node ddb cluster_status group_terms wait_until bin);

my ($secs, $conns, $parts) = map { 0 + $_ } @ENV{qw(CHURN_SECS CHURN_CONNS CHURN_PARTS)};
my $phase_secs = int($secs / 2) || 1;
my $cl = new_cluster(nodes => 3, azs => 3);
my @nodes = @{ $cl->{nodes} };
start_member($_) for @nodes;
END { kill_node($_) for grep { $_->{pid} } @nodes }
my $st;
wait_until(20, sub { ($st) = ddb($nodes[0], 'CreateTable', { TableName => 'churn',
    BillingMode => 'PAY_PER_REQUEST', NinesPartitions => $parts,
    AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }],
    KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' }] }); $st == 200 })
    or die "CreateTable: $st\n";
# Every group has a leader and a quorum before anything is measured.
sub terms { group_terms(@nodes) } # group -> [highest term, its leader]
wait_until(30, sub { my $t = terms();
    scalar(keys %$t) == $parts + 1 && !grep({ !defined $_->[1] } values %$t) })
    or die "not every group has a leader\n";
my $endpoints = join ',', map { $_->{url} } @nodes;
printf "churn: 3 nodes, %d partitions, %d connections, 2 phases of %d s; %d cores, load %.2f\n",
    $parts, $conns, $phase_secs, `nproc` + 0, (split ' ', `cat /proc/loadavg`)[0];

my ($errors, $changes) = (0, 0);
my $log_mark = { map { $_->{id} => -s $_->{log} // 0 } @nodes };
for my $ph ([100, '100 B'], [3000, '3 KB']) {
    my ($vsize, $label) = @$ph;
    my $t0 = terms();
    my $out = "$cl->{dir}/load-$vsize.json";
    my $pid = fork // die;
    if (!$pid) {
        open STDOUT, '>', $out or die;
        open STDERR, '>', "$out.err" or die;
        exec bin('nines'), 'load', '--json', '--endpoint', $endpoints, '--table', 'churn',
            '--op', 'put', '--concurrency', $conns, '--duration', $phase_secs, '--keys', 100000,
            '--value-size', $vsize, '--seed', $vsize;
        die "exec: $!";
    }
    # Sampler: a leader that changes between samples is counted even when
    # the term is the same (it cannot be, but it costs nothing to look).
    my %leader;
    my $moves = 0;
    my $end = time + $phase_secs + 60;
    while (time < $end) {
        last if waitpid($pid, WNOHANG) == $pid;
        my $t = terms();
        for my $g (keys %$t) {
            my $l = $t->{$g}[1] // next;
            $moves++ if defined $leader{$g} && $leader{$g} ne $l;
            $leader{$g} = $l;
        }
        sleep 2;
    }
    if (kill 0, $pid) { kill 'KILL', $pid; waitpid $pid, 0; print "nines load overran\n" }
    my $t1 = terms();
    my $j = eval { decode_json(Nines::slurp($out)) } or die "no load summary: " . Nines::slurp("$out.err");
    my $o = $j->{ops}{put} // (values %{ $j->{ops} })[0];
    my @moved = grep { $t1->{$_}[0] != ($t0->{$_}[0] // 0) } sort keys %$t1;
    my $ch = 0;
    $ch += $t1->{$_}[0] - ($t0->{$_}[0] // 0) for @moved;
    $errors += $o->{errors};
    $changes += $ch;
    printf "%-6s %7d ok, %4d errors, %6.0f ops/s, p50 %.1f ms, p99 %.1f ms%s\n", $label, $o->{ok},
        $o->{errors}, $o->{ops_per_s}, $o->{latency_ms}{p50}, $o->{latency_ms}{p99},
        $o->{errors} ? ' ' . encode_json($o->{errors_by_type}) : '';
    printf "%-6s %d term change(s) in %d of %d groups%s; %d leader move(s) seen by the sampler\n",
        $label, $ch, scalar @moved, scalar keys %$t1,
        @moved ? ' (' . join(', ', map { "$_ $t0->{$_}[0]->$t1->{$_}[0]" } @moved) . ')' : '',
        $moves;
}
# What the nodes logged about elections during the run.
for my $m (@nodes) {
    open my $f, '<', $m->{log} or next;
    seek $f, $log_mark->{ $m->{id} }, 0;
    my @l = grep { /election timeout|stepped down|check-quorum|driver round|campaign/ } <$f>;
    printf "%s: %d election line(s)%s", $m->{id}, scalar @l, @l ? ":\n" : "\n";
    print "  $_" for @l[0 .. ($#l < 19 ? $#l : 19)];
}
for my $m (@nodes) { stop_node($m) }
print "churn: $errors errors, $changes term changes\n";
exit($errors || $changes ? 1 : 0);
PERL
