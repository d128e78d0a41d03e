# nines scrub, live compare, on a real three-node cluster:
# a clean cluster scrubs clean (exit 0, every partition compared at a
# marker); a scrub while writes run at full speed finds nothing (no false
# positive at any load); a replica that lost an item at rest (deleted from
# its LMDB file while the node was stopped, its digest rebuilt from what is
# left) is found: exit 1, the table, the partition, the replica and the one
# bucket named, and the drill-down names the key (kind missing); a
# stopped node makes the scrub undecided (exit 2), never clean; bad usage
# exits 2.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use JSON::PP;
use Nines qw(new_cluster start_member stop_node kill_node ddb cluster_status wait_until bin
             lmdb_edit_items run_scrub);

-x '/usr/bin/mdb_dump' && -x '/usr/bin/mdb_load' or plan skip_all => 'lmdb-utils missing';
my $cl = new_cluster(nodes => 3, azs => 3);
my @nodes = @{ $cl->{nodes} };
my ($n1, $n2, $n3) = @nodes;
start_member($_) for @nodes;
END { local $?; kill_node($_) for grep { $_->{pid} } @nodes }
my $nines = bin('nines');
my $cf = $cl->{path};

my ($st, $r);
wait_until(20, sub { ($st, $r) = ddb($n1, 'CreateTable', { TableName => 'scrubbed', BillingMode => 'PAY_PER_REQUEST',
    NinesPartitions => 4, AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }],
    KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' }] }); $st == 200 });
is($st, 200, 'table of 4 partitions created') or diag explain $r;
my $ok = 0;
for my $i (1 .. 400) {
    my $s;
    wait_until(10, sub { ($s) = ddb($nodes[$i % 3], 'PutItem', { TableName => 'scrubbed',
        Item => { pk => { S => "k$i" }, v => { N => "$i" } } }); $s == 200 });
    $ok++ if $s == 200;
}
is($ok, 400, '400 items written');

sub scrub { run_scrub($cl, @_) }

my ($rc, $out, $j) = scrub();
is($rc, 0, 'a clean cluster scrubs clean: exit 0') or diag $out;
like($out, qr/4 partition\(s\), 4 compared at a marker, 0 finding\(s\), 0 undecided/,
     'every partition compared at a marker') or diag $out;
is(ref $j && scalar @{ $j->{findings} }, 0, 'the JSON report has no finding');
is($j && $j->{compared}, 4, '... and says 4 compared');

# A scrub while writes run at full speed.
my $pid = fork // die;
if (!$pid) {
    exec $nines, 'load', '--endpoint', join(',', map { "http://127.0.0.1:$_->{port}" } @nodes),
        '--table', 'scrubbed', '--op', 'put', '--duration', '8', '--concurrency', '16', '--keys', '2000';
    exit 127;
}
sleep 2;
my @busy;
push @busy, [scrub()] for 1 .. 3;
waitpid($pid, 0);
is(scalar(grep { $_->[0] == 0 } @busy), 3, 'three scrubs during saturated writes: all clean')
    or diag join "\n", map { $_->[1] } @busy;

# One item lost at rest on n3: its LMDB record deleted while n3 is stopped,
# and the digest rebuilt from what is left (as the node does for a replica
# without one), so n3's digest is honest about its data.
my $s3 = cluster_status($n3);
my ($g) = grep { ($_->{table} // '') eq 'scrubbed' && $_->{partition} == 0 } @{ $s3->{groups} };
ok($g, "n3 holds partition 0 ($g->{group})");
is(stop_node($n3), 0, 'n3 stopped');
# One record of partition 0 left out (the 11th), and the partition's digest
# record with it, so that the node rebuilds digest and buckets from what is
# left when it opens (markers stay).
my ($pairs, $nth, $lost) = (0, 0);
my $dropped = lmdb_edit_items($n3, $g->{group},
    sub { $pairs++; ++$nth == 11 ? do { $lost = $_[0]; undef } : $_[0] });
ok($pairs >= 50, "partition 0 holds $pairs items on n3; one is left out");
is($dropped, 1, 'one item dropped at rest (mdb_dump -a / mdb_load)');

# Stopped: the scrub cannot decide, and says so.
($rc, $out, $j) = scrub();
is($rc, 2, 'with n3 stopped: exit 2 (undecided), not clean') or diag $out;
like($out, qr/UNDECIDED.*n3|node n3 did not report/, '... naming n3') or diag $out;

start_member($n3);
wait_until(30, sub { my $s = cluster_status($n3); $s && grep { ($_->{table} // '') eq 'scrubbed' && ($_->{role} // '') =~ /leader|follower/ } @{ $s->{groups} } });
($rc, $out, $j) = scrub('--table', 'scrubbed');
is($rc, 1, 'the lost item is found: exit 1') or diag $out;
my @f = $j ? @{ $j->{findings} } : ();
is(scalar @f, 1, 'exactly one finding') or diag $out;
is($f[0]{replica}, 'n3', '... on replica n3');
is($f[0]{partition}, 0, '... in partition 0');
is($f[0]{table}, 'scrubbed', '... of table scrubbed');
is($f[0]{kind}, 'missing', '... kind missing');
is_deeply($f[0]{key}, { pk => $lost->{pk} }, "... the lost item's key ($lost->{pk}{S})");
my @d = $j ? @{ $j->{partitions_differing} } : ();
is($d[0]{items} + 1, $d[0]{majority_items}, 'the partition on n3: one item fewer than the majority');
is(ref $d[0]{buckets} && scalar @{ $d[0]{buckets} }, 1, '... in exactly one bucket') or diag $out;
like($out, qr/FINDING scrubbed partition 0: replica n3 missing key \{"pk":\{"S":"$lost->{pk}{S}"\}\}/,
     'the summary names it');

# Bad usage.
($rc, $out) = (system("$nines scrub --table x >/dev/null 2>&1") >> 8, '');
is($rc, 2, 'no --cluster: exit 2');
$out = `$nines scrub --cluster $cl->{dir}/nosuch.yaml 2>&1`;
is($? >> 8, 2, 'a missing cluster file: exit 2');
like($out, qr/nosuch\.yaml/, '... naming it');
done_testing();
