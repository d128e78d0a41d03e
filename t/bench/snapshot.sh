#!/bin/sh
# Benchmark (not a test; figures in docs/benchmarks.md, "Catch-up by
# snapshot stream"): how fast a follower is rebuilt from its leader's
# snapshot stream, against `cp` of the leader's LMDB file on the same disk.
#
#   t/bench/snapshot.sh [SIZE_MB] [RATE]      (defaults: 1024 and 100MiB)
#
# A three-node cluster on loopback (NINES_BUILD or ./build), one table of
# one partition filled with SIZE_MB of 16 KB items (BatchWriteItem), n3
# killed (SIGKILL), 400 more writes so the others compact past it, n3
# restarted: the time until it has applied the leader's commit index and the
# stream's own figures (from both logs) are printed, then `cp` of the
# leader's data.mdb (+ sync) as the physical reference, and the ratio.
# Client latency: an open-loop PutItem load (`nines load`, 200/s, 8
# connections, 1 KB values, a second table of one partition, n1 and n2's
# endpoints) runs for 10 s just before n3 restarts and again during its
# catch-up; both p99s are printed.
# Bounded: every wait has a deadline; the nodes are stopped by pid.
set -e
top=$(cd "$(dirname "$0")/../.." && pwd)
export NINES_BUILD=${NINES_BUILD:-$top/build}
export SNAP_MB=${1:-1024} SNAP_RATE=${2:-100MiB}
exec perl -I"$top/t/lib" - <<'PERL'
use strict;
use warnings;
use Time::HiRes qw(time sleep);
use Nines qw(new_cluster start_member stop_node kill_node ddb cluster_status wait_until);

my ($mb, $rate) = ($ENV{SNAP_MB}, $ENV{SNAP_RATE});
my $cl = new_cluster(nodes => 3, azs => 3,
                     extra => "storage: {compact_entries: 300, snapshot_rate: $rate, map_size: 64GiB}\n");
my @nodes = @{ $cl->{nodes} };
my ($n1, $n2, $n3) = @nodes;
start_member($_) for @nodes;
END { kill_node($_) for grep { $_->{pid} } @nodes }
my $st;
wait_until(10, sub { ($st) = ddb($n1, 'CreateTable', { TableName => 'bench', BillingMode => 'PAY_PER_REQUEST',
    NinesPartitions => 1, AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }],
    KeySchema => [{ AttributeName => "pk", KeyType => "HASH" }] }); $st == 200 }) or die "CreateTable: $st";
wait_until(10, sub { ($st) = ddb($n1, 'CreateTable', { TableName => 'client', BillingMode => 'PAY_PER_REQUEST',
    NinesPartitions => 1, AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }],
    KeySchema => [{ AttributeName => "pk", KeyType => "HASH" }] }); $st == 200 }) or die "CreateTable: $st";
my $eps = join ',', map { "http://127.0.0.1:$_->{port}" } $n1, $n2;
my $nines = Nines::bin('nines');
# client_load(FILE): 10 s of open-loop PutItem in the background; returns the pid.
sub client_load {
    my ($out) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDOUT, '>', $out or die;
        open STDERR, '>', '/dev/null';
        exec $nines, 'load', '--endpoint', $eps, '--table', 'client', '--op', 'put', '--rate', '200',
            '--concurrency', '8', '--duration', '10', '--keys', '10000', '--value-size', '1000',
            '--timeout', '10000', '--json';
        exit 127;
    }
    return $pid;
}
sub p99_of {
    my $j = eval { Nines::json()->decode(Nines::slurp($_[0])) } or return 'n/a';
    my ($o) = values %{ $j->{ops} };
    return sprintf "%.1f ms (p50 %.1f ms, %d ok, %d errors)", $o->{latency_ms}{p99}, $o->{latency_ms}{p50}, $o->{ok}, $o->{errors};
}
my $pad = 'z' x 16000;
my $items = int($mb * 1024 * 1024 / 16050) + 1;
sub batch {
    my ($from, $to, $p) = @_;
    my %todo = (bench => [map { { PutRequest => { Item => { pk => { S => "k$_" }, pad => { S => $p } } } } } ($from .. $to)]);
    for (1 .. 200) {
        my ($s, $r) = ddb($n1, 'BatchWriteItem', { RequestItems => \%todo });
        if ($s == 200) {
            my $u = $r->{UnprocessedItems} // {};
            return unless $u->{bench} && @{ $u->{bench} };
            %todo = %$u;
        }
        sleep 0.05;
    }
    die "a batch never went through";
}
my $t0 = time;
for (my $i = 1; $i <= $items; $i += 25) { batch($i, $i + 24 > $items ? $items : $i + 24, $pad) }
printf "filled %d items of 16 KB (%.0f MB) in %.0f s\n", $items, $items * 16050 / 1048576, time - $t0;
kill_node($n3);
for (my $i = 1; $i <= 400; $i += 25) { batch($items + $i, $items + $i + 24, 'x') }
sub grp { my $s = cluster_status($_[0]) or return; (grep { ($_->{table} // '') eq 'bench' } @{ $s->{groups} })[0] }
wait_until(60, sub { my ($a, $b) = (grp($n1), grp($n2)); $a && $b && $a->{first_index} > 300 && $b->{first_index} > 300 })
    or die "no compaction";
# Restart n1 and n2 so their transports' queued appends for n3 are gone:
# n3 can then only catch up by the snapshot stream.
for my $m ($n1, $n2) { stop_node($m); start_member($m) }
wait_until(30, sub { grep { my $g = grp($_); $g && $g->{role} eq 'leader' } $n1, $n2 }) or die "no leader";
waitpid(client_load("$cl->{dir}/client-before.json"), 0);
$t0 = time;
start_member($n3);
my $during = client_load("$cl->{dir}/client-during.json");
my $caught = wait_until(3600, sub {
    my ($a, $b) = (grp($n3), grp($n1));
    $a && $b && $a->{applied} >= $b->{commit} - 2 && $a->{first_index} > 300 });
my $secs = time - $t0;
die "n3 did not catch up\n" unless $caught;
waitpid($during, 0);
printf "client PutItem p99 (200/s open loop, 10 s): before the catch-up %s; during it %s\n",
    p99_of("$cl->{dir}/client-before.json"), p99_of("$cl->{dir}/client-during.json");
my $log = Nines::slurp($n3->{log});
# The largest stream n3 received is the bench partition's (the client
# table's group may have sent one too).
my ($bytes, $ssecs, $smbps) = (0);
while ($log =~ /received from member \d+ and verified: (\d+) bytes in ([\d.]+) s \(([\d.]+) MB\/s\)/g) {
    ($bytes, $ssecs, $smbps) = ($1, $2, $3) if $1 > $bytes;
}
die "no stream in n3's log\n" unless $bytes;
printf "catch-up of n3: %.1f s from its start to applied == leader's commit\n", $secs;
printf "snapshot stream: %d bytes (%.0f MB) in %s s = %s MB/s (receiver's log; rate limit %s)\n",
    $bytes, $bytes / 1048576, $ssecs, $smbps, $rate;
my ($leader) = grep({ my $g = grp($_); $g && $g->{role} eq 'leader' } $n1, $n2);
$leader //= $n1;
my $src = "$leader->{dir}/$leader->{id}/state/data.mdb";
my $dst = "$cl->{dir}/copy.mdb";
system('sync');
my $c0 = time;
system('cp', $src, $dst) == 0 or die "cp";
system('sync');
my $csecs = time - $c0;
my $size = -s $src;
printf "cp of the leader's data.mdb (%.0f MB) + sync: %.1f s = %.0f MB/s\n", $size / 1048576, $csecs,
    $size / 1048576 / $csecs;
printf "ratio: stream %.2fx of cp (MB/s), catch-up %.2fx cp's time\n",
    $smbps / ($size / 1048576 / $csecs), $secs / $csecs;
unlink $dst;
stop_node($_) for @nodes;
PERL
