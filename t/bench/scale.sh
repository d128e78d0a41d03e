#!/bin/sh
# Idle cost of partitions (issue 21, quiescence: store/raft.h): on a fresh
# three-node local cluster with N partitions (tables of at most 1,000
# partitions each), once idle: each ninesd's CPU over 10 s (/proc/PID/stat,
# % of one core), its RSS, how many replicas sleep; then kill -9 of the node
# leading the most partitions and the time until every partition is led
# again (polled through NinesAdmin.Status every ~50 ms plus the time a
# status of N groups takes).
#   t/bench/scale.sh [SIZES...]       default: 0 1000 10000
# NINES_BUILD picks the build (default ./build). NINES_NO_QUIESCE=1 measures
# the same with every group ticking (before quiescence). NINES_SCALE_SECS
# sets the measurement window (default 10).
# NINES_SCALE_LOAD=ROUNDS (N > 0): before the failover, PutItem beside the
# N idle partitions against a second, bare 3-node cluster started beside it:
# one 8-partition table in each, closed loop (`nines load`, 64 connections,
# 200-byte values over 100,000 keys, NINES_SCALE_LOAD_SECS s per run,
# default 8), ROUNDS rounds alternating which cluster goes first; each run's
# throughput and p99, medians, and the paired per-round differences.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
export NINES_BUILD="${NINES_BUILD:-$top/build}"
[ $# -gt 0 ] || set -- 0 1000 10000
for n in "$@"; do
    NINES_SCALE_PARTS=$n timeout 3600 perl -I"$top/t/lib" -x "$0" || echo "partitions $n: failed ($?)"
done
exit 0

#!perl
use strict;
use warnings;
use POSIX ();
use JSON::PP;
use Time::HiRes qw(time sleep);
use Nines qw(new_cluster start_member kill_node ddb cluster_status wait_until);

my $N = $ENV{NINES_SCALE_PARTS} // 0;
my $SECS = $ENV{NINES_SCALE_SECS} || 10;
my $HZ = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;
my $PER = 1000;
my $ntab = int(($N + $PER - 1) / $PER);
my $max_tables = 256 + int($N / 8) + 16;
my $cl = new_cluster(nodes => 3, azs => 3,
                     extra => "storage: {max_tables: $max_tables}\n");
my @nodes = @{ $cl->{nodes} };
my @bare_nodes; # NINES_SCALE_LOAD's second cluster
$| = 1;
start_member($_) for @nodes;
END { local $?; kill_node($_) for grep { $_->{pid} } @nodes, @bare_nodes }
$SIG{$_} = sub { exit 1 } for qw(INT TERM); # END stops the nodes

sub cpu_secs {
    my ($pid) = @_;
    open my $f, '<', "/proc/$pid/stat" or return 0;
    my $l = <$f>;
    $l =~ s/^.*\)\s+//;
    my @f = split ' ', $l;
    return ($f[11] + $f[12]) / $HZ;
}
sub rss_mb {
    my ($pid) = @_;
    open my $f, '<', "/proc/$pid/status" or return 0;
    while (my $l = <$f>) { return $1 / 1024 if $l =~ /^VmRSS:\s+(\d+)/ }
    return 0;
}
# Counts from each node's status summary ({"Groups": false}: no list of
# every group, which is megabytes at 100,000 partitions). They include the
# metadata group: N partitions are all led when N + 1 groups are.
sub census {
    my (%by, $led, $asleep, $total);
    ($led, $asleep, $total) = (0, 0, 0);
    for my $m (grep { $_->{pid} } @nodes) {
        my $s = cluster_status($m, body => '{"Groups":false}', timeout => 10) or next;
        my $u = $s->{summary} or next;
        $led += $u->{leading};
        $asleep += $u->{asleep};
        $total += $u->{groups};
        $by{ $m->{id} } = $u->{leading};
    }
    return { led => $led, asleep => $asleep, members => $total, by => \%by };
}

wait_until(30, sub { my ($st) = ddb($nodes[0], 'ListTables', {}); $st == 200 })
    or die "the metadata group does not serve\n";
my $t0 = time;
for my $i (1 .. $ntab) {
    my $p = $i < $ntab ? $PER : $N - $PER * ($ntab - 1);
    my ($st, $r);
    wait_until(120, sub {
        ($st, $r) = ddb($nodes[$i % 3], 'CreateTable', {
            TableName => "scale$i", BillingMode => 'PAY_PER_REQUEST',
            Tags => [{ Key => 'nines:partitions', Value => "$p" }],
            AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }],
            KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' }] });
        $st == 200 || ($st == 400 && ref $r && ($r->{__type} // '') =~ /ResourceInUse/) })
        or die "CreateTable scale$i: $st " . encode_json($r) . "\n";
    # One table at a time: its groups elect (and fall asleep) before the
    # next thousand start (creating them back to back storms past ~10,000
    # partitions on a 2-core machine: the driver falls behind). A status
    # of many groups is heavy: poll every second.
    my $so_far = ($i < $ntab ? $i * $PER : $N) + 1;
    wait_until(300, sub { sleep 1; my $x = census(); $x->{led} >= $so_far })
        or die "scale$i: not every partition led within 300 s\n";
}
my $c;
wait_until(600, sub { $c = census(); $c->{led} >= $N + 1 }) or die "only $c->{led} of $N + 1 led\n";
my $t_led = time - $t0;
# Idle: wait for the groups to sleep (or 60 s when they never do).
my $want_asleep = 0.95 * 3 * ($N + 1);
wait_until($ENV{NINES_NO_QUIESCE} ? 5 : 120, sub { $c = census(); $c->{asleep} >= $want_asleep });
sleep 2;
# Per thread (by name) too, summed over the nodes: where the idle CPU goes.
sub thread_secs {
    my %t;
    for my $m (@nodes) {
        for my $d (glob "/proc/$m->{pid}/task/*") {
            open my $f, '<', "$d/stat" or next;
            my $l = <$f>;
            my ($comm) = $l =~ /\((.*)\)/;
            $l =~ s/^.*\)\s+//;
            my @f = split ' ', $l;
            $t{$comm} += ($f[11] + $f[12]) / $HZ;
        }
    }
    return \%t;
}
my %c0 = map { $_->{id} => cpu_secs($_->{pid}) } @nodes;
my $th0 = thread_secs();
my $ts = time;
sleep $SECS;
my $dt = time - $ts;
my @cpu = map { 100 * (cpu_secs($_->{pid}) - $c0{ $_->{id} }) / $dt } @nodes;
my $th1 = thread_secs();
my @th = sort { $b->[1] <=> $a->[1] }
         map { [$_, 100 * ($th1->{$_} - ($th0->{$_} // 0)) / $dt / 3] } keys %$th1;
my @rss = map { rss_mb($_->{pid}) } @nodes;
$c = census();
printf "partitions %6d  tables %3d  led after %6.1f s  asleep %6d of %6d replicas (with the metadata group's)  idle CPU %%core %5.1f %5.1f %5.1f  RSS MB %6.0f %6.0f %6.0f%s\n",
    $N, $ntab, $t_led, $c->{asleep}, $c->{members}, @cpu, @rss,
    $ENV{NINES_NO_QUIESCE} ? '  (NINES_NO_QUIESCE)' : '';
printf "partitions %6d  per node, by thread (%%core): %s\n", $N,
    join(', ', map { sprintf '%s %.2f', @$_ } grep { $_->[1] >= 0.05 } @th[0 .. ($#th < 5 ? $#th : 5)]);
exit 0 unless $N;

my $nines = Nines::bin('nines');
sub eps { join ',', map { $_->{url} } @{ $_[0]{nodes} } }
sub load_json {
    my ($lc, @args) = @_;
    my $out = `$nines load --endpoint @{[eps($lc)]} --json @args 2>/dev/null`;
    return eval { decode_json($out) };
}
sub median { my @s = sort { $a <=> $b } @_; return $s[int(@s / 2)] }
if (my $rounds = $ENV{NINES_SCALE_LOAD}) {
    my $secs = $ENV{NINES_SCALE_LOAD_SECS} || 8;
    my $bare = new_cluster(nodes => 3, azs => 3);
    @bare_nodes = @{ $bare->{nodes} };
    start_member($_) for @bare_nodes;
    my %cls = (crowded => $cl, bare => $bare);
    for my $c ($cl, $bare) {
        my $j;
        wait_until(120, sub { $j = load_json($c, qw(--create --table load --partitions 8 --op put),
                                             qw(--concurrency 8 --duration 1 --keys 100000));
                              $j && $j->{ops}{put}{ok} });
        die "cannot load a cluster\n" unless $j && $j->{ops}{put}{ok};
    }
    my (%ops, %p99);
    for my $r (1 .. $rounds) {
        for my $which ($r % 2 ? qw(crowded bare) : qw(bare crowded)) {
            my $j = load_json($cls{$which}, '--table', 'load', '--op', 'put', '--concurrency', 64,
                              '--duration', $secs, '--warmup', 1, '--keys', 100000,
                              '--value-size', 200, '--seed', $r);
            my $o = $j && $j->{ops}{put} or die "load failed\n";
            push @{ $ops{$which} }, $o->{ops_per_s};
            push @{ $p99{$which} }, $o->{latency_ms}{p99};
            printf "partitions %6d  round %2d %-7s: %6.0f PutItem/s  p50 %6.2f ms  p99 %6.2f ms  errors %d\n",
                $N, $r, $which, $o->{ops_per_s}, $o->{latency_ms}{p50}, $o->{latency_ms}{p99}, $o->{errors};
        }
    }
    my @tr = sort { $a <=> $b } map { 100 * (1 - $ops{crowded}[$_] / $ops{bare}[$_]) } 0 .. $rounds - 1;
    my @pr = sort { $a <=> $b } map { 100 * ($p99{crowded}[$_] / $p99{bare}[$_] - 1) } 0 .. $rounds - 1;
    printf "partitions %6d  PutItem beside them: median %.0f/s p99 %.2f ms; bare cluster %.0f/s p99 %.2f ms; " .
           "paired by round (median, min..max): throughput %.1f %% lower (%.1f..%.1f), p99 %.1f %% higher (%.1f..%.1f)\n",
        $N, median(@{ $ops{crowded} }), median(@{ $p99{crowded} }), median(@{ $ops{bare} }),
        median(@{ $p99{bare} }), median(@tr), $tr[0], $tr[-1], median(@pr), $pr[0], $pr[-1];
    kill_node($_) for @bare_nodes;
    @bare_nodes = ();
    wait_until(120, sub { $c = census(); $c->{led} >= $N + 1 });
}

# Failover of a node whose groups sleep.
my ($victim) = sort { ($c->{by}{ $b->{id} } // 0) <=> ($c->{by}{ $a->{id} } // 0) } @nodes;
my $nled = $c->{by}{ $victim->{id} } // 0;
my $t1 = time;
kill_node($victim);
my $ok = wait_until(300, sub { $c = census(); $c->{led} >= $N + 1 });
printf "partitions %6d  kill -9 of %s (leading %d %s partitions): all led again after %s\n",
    $N, $victim->{id}, $nled, $ENV{NINES_NO_QUIESCE} ? 'busy' : 'sleeping',
    $ok ? sprintf('%.2f s', time - $t1) : "more than 300 s ($c->{led} led)";
