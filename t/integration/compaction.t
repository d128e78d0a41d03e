# Log compaction and catch-up by snapshot on a three-node cluster: a replica
# that was down while the others compacted their logs past what it has gets
# the leader's snapshot (a copy of the partition's LMDB data) and then the
# log; compacted nodes restart from their SNAPSHOT file and WAL tail.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Nines qw(new_cluster start_member stop_node kill_node ddb cluster_status wait_until);

my $cl = new_cluster(nodes => 3, azs => 3,
                     extra => "storage: {compact_entries: 300, wal_segment_size: 64KiB}\n");
my @nodes = @{ $cl->{nodes} };
my ($n1, $n2, $n3) = @nodes;
start_member($_) for @nodes;
END { kill_node($_) for grep { $_->{pid} } @nodes }

my ($st, $r);
wait_until(10, sub { ($st) = ddb($n1, 'CreateTable', { TableName => 'compact', BillingMode => 'PAY_PER_REQUEST',
    NinesPartitions => 1, AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }],
    KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' }] }); $st == 200 });
is($st, 200, 'table created');
sub put_range {
    my ($from, $to) = @_;
    my $ok = 0;
    for my $i ($from .. $to) {
        my ($s);
        wait_until(5, sub { ($s) = ddb($n1, 'PutItem', { TableName => 'compact',
            Item => { pk => { S => "k$i" }, v => { N => "$i" }, pad => { S => 'x' x 200 } } }); $s == 200 });
        $ok++ if $s == 200;
    }
    return $ok;
}
is(put_range(1, 200), 200, '200 writes with all three nodes up');
is(stop_node($n3), 0, 'n3 stopped');
is(put_range(201, 1500), 1300, '1300 more writes while n3 is down');

sub group_of {
    my ($m) = @_;
    my $s = cluster_status($m) or return undef;
    my ($g) = grep { ($_->{table} // '') eq 'compact' } @{ $s->{groups} };
    return $g;
}
# Both live replicas compact past what n3 holds, so whichever leads must
# send it a snapshot.
my $compacted = wait_until(10, sub {
    my ($a, $b) = (group_of($n1), group_of($n2));
    $a && $b && $a->{first_index} > 300 && $b->{first_index} > 300 ? $a : undef });
ok($compacted, 'n1 and n2 compacted their logs (n1\'s starts at ' . ($compacted ? $compacted->{first_index} : '?') . ')');
# The state at the compaction point is LMDB itself (synced first): the
# SNAPSHOT file records only where the log continues from.
my ($snapfile) = glob("$n1->{dir}/n1/groups/p.*.0/SNAPSHOT");
ok($snapfile && -s $snapfile == 64, 'its SNAPSHOT file records the compaction point (metadata only: a 64-byte header)');
# Every group's entries share the node log (64 KiB segments here): the
# writes filled several, and the compactions (the idle metadata group's too,
# asked to once the log grew past 4 segments) let the old ones go.
my $segs = wait_until(10, sub {
    my @f = glob("$n1->{dir}/n1/log/*.wal");
    @f <= 5 ? scalar(@f) : undef });
ok($segs, 'n1\'s node log released its old segments (' . ($segs // 'too many') . ' left)')
    or diag join(' ', glob("$n1->{dir}/n1/log/*.wal"));
my $nl = (cluster_status($n1) // {})->{node_log} // {};
cmp_ok($nl->{records} // 0, '>=', 1500, 'NinesAdmin.Status counts the node log\'s records ('
       . ($nl->{records} // 'none') . ')');
my @segfiles = glob("$n1->{dir}/n1/log/*.wal");
is($nl->{segments}, scalar(@segfiles), '... and its segments, as on disk');
is($nl->{streams}, 2, '... and its streams (the metadata group and the one partition)');
my ($first_seg) = sort glob("$n1->{dir}/n1/log/*.wal");
ok($first_seg && $first_seg !~ m{/0+1\.wal$}, 'the first segment is gone');

# Restart n1 and n2 (from SNAPSHOT + WAL tail): whatever their transports
# still queued for n3 is gone, so n3 can only catch up by snapshot.
for my $m ($n1, $n2) {
    is(stop_node($m), 0, "$m->{id} stopped");
    start_member($m);
}
is(put_range(1501, 1600), 100, 'writes continue after both restarted from their snapshots');
start_member($n3);
my $caught = wait_until(20, sub {
    my ($a, $b) = (group_of($n3), group_of($n1));
    $a && $b && $a->{applied} >= 1600 && $a->{applied} >= $b->{commit} - 5 ? $a : undef });
ok($caught, 'n3 catches up (applied ' . ($caught ? $caught->{applied} : '?') . ')');
like(Nines::slurp($n3->{log}), qr/installed the leader's snapshot/, '... from the leader\'s snapshot');
my ($snap3) = glob("$n3->{dir}/n3/groups/p.*.0/SNAPSHOT");
ok($snap3 && -s $snap3 > 200 * 200, '... whose SNAPSHOT file holds the partition\'s data (streamed in chunks)');
cmp_ok($caught->{first_index}, '>', 1, '... its log starts after the snapshot');

# n3 serves eventually consistent reads from its own replica: everything is there.
my ($ss, $scan) = ddb($n3, 'Scan', { TableName => 'compact', Select => 'COUNT' });
is($scan->{Count}, 1600, 'n3\'s replica holds all 1600 items');
my $bad = 0;
for my $i (1, 2, 150, 200, 201, 777, 1499, 1500) {
    my ($s, $g) = ddb($n3, 'GetItem', { TableName => 'compact', Key => { pk => { S => "k$i" } } });
    $bad++ unless $g->{Item} && $g->{Item}{v}{N} == $i;
}
is($bad, 0, '... with the right values');

is(put_range(1601, 1700), 100, 'writes continue');
my ($cs, $cscan);
wait_until(10, sub { ($cs, $cscan) = ddb($n1, 'Scan', { TableName => 'compact', ConsistentRead => JSON::PP::true,
                                                        Select => 'COUNT' }); $cs == 200 });
is($cscan->{Count}, 1700, 'a consistent scan through n1 counts 1700');
for my $m (@nodes) { is(stop_node($m), 0, "$m->{id} stops cleanly") }
done_testing();
