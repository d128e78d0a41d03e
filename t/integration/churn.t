# No leader churn under saturated load: a 3-node cluster under closed-loop
# PutItem of 3 KB items at 64 connections (`nines load`), no fault
# injected, holds no election: every request succeeds and the term of
# every group stays what it was. The second half adds what a saturated
# machine does to a node (measured on this 2-core VM: a node's driver
# thread unscheduled for 100-300 ms): every 2 s one node, in turn, is
# stopped for 150 ms (SIGSTOP/SIGCONT). Before the fix (E = 100 ms, timers
# firing on the ticks a stall owed before the messages that arrived during
# it, a leader silent while its write waited for the disk) every group
# changed term several times in such a run; docs/replication.md,
# "Elections under load". Bounded: the load stops itself after LOAD_SECS,
# every wait has a deadline.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);
use Nines qw(new_cluster start_member stop_node kill_node ddb cluster_status group_terms wait_until bin);

my $LOAD_SECS = 40;   # 15 s saturated only, then stalls every 2 s
my $STALL_S = 0.15;
my $PARTS = 8;
my $cl = new_cluster(nodes => 3, azs => 3);
my @nodes = @{ $cl->{nodes} };
start_member($_) for @nodes;
END {
    for (grep { $_->{pid} } @nodes) { kill 'CONT', $_->{pid}; kill_node($_) }
}

my $st;
wait_until(20, sub { ($st) = ddb($nodes[0], 'CreateTable', { TableName => 'churn',
    BillingMode => 'PAY_PER_REQUEST', NinesPartitions => $PARTS,
    AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }],
    KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' }] }); $st == 200 });
is($st, 200, "table of $PARTS partitions created");

sub terms { group_terms(@nodes) } # group -> [highest term, its leader]
my $t0 = wait_until(30, sub { my $t = terms();
    (scalar(keys %$t) == $PARTS + 1 && !grep({ !defined $_->[1] } values %$t)) ? $t : undef });
ok($t0, 'every group (' . ($PARTS + 1) . ') has a leader') or BAIL_OUT('no leaders');
my %leads;
$leads{ $_->[1] }++ for values %$t0;
note('leaders: ' . join(', ', map { "$_ $leads{$_}" } sort keys %leads));
# Warm the table's key space and the connections a little (a quiet second).
sleep 1;
$t0 = terms();

my %mark = map { $_->{id} => -s $_->{log} // 0 } @nodes;
my $out = "$cl->{dir}/load.json";
my $pid = fork // die "fork: $!";
if (!$pid) {
    open STDOUT, '>', $out or die;
    open STDERR, '>', "$out.err" or die;
    exec bin('nines'), 'load', '--json', '--endpoint', join(',', map { $_->{url} } @nodes),
        '--table', 'churn', '--op', 'put', '--concurrency', 64, '--duration', $LOAD_SECS,
        '--keys', 20000, '--value-size', 3000;
    die "exec: $!";
}
my $t_start = time;
my ($stalls, $i) = (0, 0);
while (time < $t_start + $LOAD_SECS + 30) {
    last if waitpid($pid, WNOHANG) == $pid;
    my $el = time - $t_start;
    if ($el > 15 && $el < $LOAD_SECS - 3) {
        my $m = $nodes[ $i++ % @nodes ];
        kill 'STOP', $m->{pid};
        sleep $STALL_S;
        kill 'CONT', $m->{pid};
        $stalls++;
        sleep 2 - $STALL_S;
    } else {
        sleep 0.2;
    }
}
if (kill 0, $pid) { kill 'KILL', $pid; waitpid $pid, 0; fail('nines load overran its duration') }
note("$stalls stalls of ${STALL_S} s");
cmp_ok($stalls, '>=', 8, "$stalls nodes stalled for ${STALL_S} s in turn");

my $j = eval { decode_json(Nines::slurp($out)) };
ok($j, 'nines load reported') or diag Nines::slurp("$out.err");
my $o = $j ? ($j->{ops}{put} // {}) : {};
note(sprintf('%d ok, %d errors, %.0f ops/s, p50 %.1f ms, p99 %.1f ms', $o->{ok} // 0,
    $o->{errors} // -1, $o->{ops_per_s} // 0, $o->{latency_ms}{p50} // 0, $o->{latency_ms}{p99} // 0));
cmp_ok($o->{ok} // 0, '>', 200 * $LOAD_SECS, 'the cluster was loaded (' . ($o->{ok} // 0) . ' writes)');
is($o->{errors} // -1, 0, 'no request failed') or diag explain $o->{errors_by_type};

my $t1 = wait_until(10, sub { my $t = terms(); scalar(keys %$t) == $PARTS + 1 ? $t : undef });
my @changed = grep { $t1->{$_}[0] != $t0->{$_}[0] } sort keys %$t0;
is(scalar @changed, 0, 'no group changed term (' . join(', ', map { "$_ $t0->{$_}[0]" } sort keys %$t0) . ')')
    or diag join("\n", map { "$_: term $t0->{$_}[0] -> $t1->{$_}[0]" } @changed);
my @moved = grep { ($t1->{$_}[1] // '') ne $t0->{$_}[1] } sort keys %$t0;
is(scalar @moved, 0, 'no group changed leader')
    or diag join("\n", map { "$_: " . $t0->{$_}[1] . ' -> ' . ($t1->{$_}[1] // 'none') } @moved);
for my $m (@nodes) {
    my @l = grep { /election timeout|stepped down/ } split /\n/,
        substr(Nines::slurp($m->{log}), $mark{ $m->{id} });
    is(scalar @l, 0, "$m->{id} logged no election timeout or step-down") or diag join("\n", @l[0 .. ($#l < 5 ? $#l : 5)]);
}
for my $m (@nodes) { is(stop_node($m), 0, "$m->{id} stops cleanly") }
done_testing();
