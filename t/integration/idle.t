# Idle partitions cost nothing (issue 21, quiescence: store/raft.h). A
# three-node cluster with a table of ~1,000 partitions: once idle, the
# groups sleep (NinesAdmin.Status says so) and each ninesd burns less than
# NINES_IDLE_CPU_PCT (default 6) % of a core over 10 s (/proc/PID/stat).
# Measured on the 2-core lab machine: ~2 % (an empty cluster: ~1.7 %);
# with every group ticking every 10 ms (NINES_NO_QUIESCE=1): ~10 %. Then
# kill -9 of the node that leads the most partitions, while they sleep:
# every partition gets a leader on the two others, a strongly consistent
# Scan (which reads every partition from its leader) and PutItem/GetItem
# answer, all within NINES_IDLE_BOUND (default 30) s.
#
# NINES_IDLE_PARTS (default 1000) changes the size.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time sleep);
use Nines qw(new_cluster start_member kill_node ddb cluster_status wait_until);

my $PARTS = $ENV{NINES_IDLE_PARTS} || 1000;
my $CPU_PCT = $ENV{NINES_IDLE_CPU_PCT} || 6;
my $BOUND = $ENV{NINES_IDLE_BOUND} || 30;
my $HZ = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;

plan skip_all => 'needs /proc' unless -r "/proc/$$/stat";

my $cl = new_cluster(nodes => 3, azs => 3);
my @nodes = @{ $cl->{nodes} };
start_member($_) for @nodes;
END { local $?; kill_node($_) for grep { $_->{pid} } @nodes }

# utime + stime of a process, in seconds.
sub cpu_secs {
    my ($pid) = @_;
    open my $f, '<', "/proc/$pid/stat" or return undef;
    my $l = <$f>;
    $l =~ s/^.*\)\s+//;    # past "pid (comm)"
    my @f = split ' ', $l; # f[0] is field 3 (state)
    return ($f[11] + $f[12]) / $HZ;
}

# Per live node: groups of table 'big' it reports, how many it leads, how
# many sleep; and which partitions some node leads.
sub census {
    my (%led, %seen, %by);
    my ($asleep, $total) = (0, 0);
    for my $m (grep { $_->{pid} } @nodes) {
        my $s = cluster_status($m) or next;
        for my $g (@{ $s->{groups} }) {
            next unless defined $g->{table} && $g->{table} eq 'big';
            $seen{ $g->{group} } = 1;
            $total++;
            $asleep++ if $g->{quiescent};
            if ($g->{role} eq 'leader') {
                $led{ $g->{group} } = 1;
                $by{ $m->{id} }++;
            }
        }
    }
    return { seen => scalar(keys %seen), led => scalar(keys %led), asleep => $asleep,
             members => $total, by => \%by };
}

my ($st, $r);
ok(wait_until(20, sub { ($st, $r) = ddb($nodes[0], 'ListTables', {}); $st == 200 }),
   'the metadata group serves') or diag explain $r;
($st, $r) = ddb($nodes[1], 'CreateTable', {
    TableName => 'big', BillingMode => 'PAY_PER_REQUEST',
    Tags => [{ Key => 'nines:partitions', Value => "$PARTS" }],
    AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }],
    KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' }] });
is($st, 200, "CreateTable of $PARTS partitions") or diag explain $r;
my $c;
ok(wait_until(120, sub { $c = census(); $c->{led} == $PARTS }),
   "every one of $PARTS partitions has a leader") or diag explain $c;

# A few writes, so the groups have something to commit before they sleep.
my %want;
for my $k (1 .. 12) {
    my $ok = wait_until(20, sub {
        ($st, $r) = ddb($nodes[$k % 3], 'PutItem', { TableName => 'big',
            Item => { pk => { S => "key$k" }, v => { N => "$k" } } });
        $st == 200 });
    $want{"key$k"} = $k if $ok;
}
is(scalar keys %want, 12, '12 PutItems acknowledged') or diag explain $r;

# Idle: the groups fall asleep (2E = 600 ms of idleness after their last
# entry; a few seconds on a loaded machine).
ok(wait_until(60, sub { $c = census(); $c->{asleep} >= 0.95 * 3 * $PARTS }),
   'at least 95 % of the partition replicas sleep once idle')
    or diag explain { asleep => $c->{asleep}, members => $c->{members} };
note("replicas asleep: $c->{asleep} of $c->{members}");

# Idle CPU of each node over 10 s.
my %c0 = map { $_->{id} => cpu_secs($_->{pid}) } @nodes;
my $t0 = time;
sleep 10;
my $dt = time - $t0;
for my $m (@nodes) {
    my $pct = 100 * (cpu_secs($m->{pid}) - $c0{ $m->{id} }) / $dt;
    cmp_ok($pct, '<', $CPU_PCT, sprintf('%s idle with %d partitions: %.1f %% of a core (bound %d %%)',
                                         $m->{id}, $PARTS, $pct, $CPU_PCT));
}
$c = census();
cmp_ok($c->{asleep}, '>=', 0.95 * 3 * $PARTS, 'still asleep after the measurement');

# kill -9 of the node leading the most partitions, while its groups sleep.
my ($victim) = sort { ($c->{by}{ $b->{id} } // 0) <=> ($c->{by}{ $a->{id} } // 0) } @nodes;
my $nled = $c->{by}{ $victim->{id} } // 0;
cmp_ok($nled, '>', 0, "$victim->{id} leads $nled sleeping partitions");
my @alive = grep { $_ != $victim } @nodes;
my $t1 = time;
kill_node($victim);
ok(wait_until($BOUND, sub { $c = census(); $c->{led} == $PARTS }),
   "after kill -9 of $victim->{id}, every partition has a leader again within $BOUND s")
    or diag explain { led => $c->{led} };
my $failover = time - $t1;
note(sprintf 'measured: %d sleeping partitions of %s led elsewhere %.2f s after kill -9',
             $nled, $victim->{id}, $failover);

# A consistent Scan reads every partition from its leader: sleeping
# leaders must wake for their lease.
my (%got, $pages);
my $scanned = wait_until($BOUND, sub {
    my %g;
    my $start;
    $pages = 0;
    for (1 .. 10 * $PARTS) {
        ($st, $r) = ddb($alive[0], 'Scan', { TableName => 'big', ConsistentRead => JSON::PP::true,
            ($start ? (ExclusiveStartKey => $start) : ()) });
        return 0 unless $st == 200;
        $pages++;
        $g{ $_->{pk}{S} } = $_->{v}{N} for @{ $r->{Items} };
        $start = $r->{LastEvaluatedKey} or last;
    }
    %got = %g;
    return 1;
});
ok($scanned, "a consistent Scan of every partition answers within $BOUND s") or diag explain $r;
is_deeply(\%got, \%want, 'and returns every item written before the crash');
my $t2 = time;
my $good = 0;
for my $k (101 .. 140) {
    my $n = $alive[$k % 2];
    my $ok = wait_until($BOUND, sub {
        ($st, $r) = ddb($n, 'PutItem', { TableName => 'big',
            Item => { pk => { S => "key$k" }, v => { N => "$k" } } });
        return 0 unless $st == 200;
        ($st, $r) = ddb($alive[1 - $k % 2], 'GetItem', { TableName => 'big',
            ConsistentRead => JSON::PP::true, Key => { pk => { S => "key$k" } } });
        $st == 200 && $r->{Item} && $r->{Item}{v}{N} == $k });
    $good++ if $ok;
}
is($good, 40, '40 fresh keys: PutItem on one survivor, consistent GetItem on the other');
cmp_ok(time - $t1, '<', 3 * $BOUND, 'all of it within the bounds after the crash');

for my $m (@alive) {
    my $log = Nines::slurp($m->{log});
    unlike($log, qr/ASSERT|invariant|AddressSanitizer|runtime error/, "$m->{id}: no assertion in its log");
}
done_testing();
