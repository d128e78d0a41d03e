# nines scrub, live compare, on a real three-node cluster:
# a clean cluster scrubs clean (exit 0, every partition compared at a
# marker); a scrub while writes run at full speed finds nothing (no false
# positive at any load); a replica that lost an item at rest (deleted from
# its LMDB file while the node was stopped, its digest rebuilt from what is
# left) is found: exit 1, the table, the partition, the replica and the one
# bucket named; a stopped node makes the scrub undecided (exit 2), never
# clean; bad usage exits 2.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use JSON::PP;
use Nines qw(new_cluster start_member stop_node kill_node ddb cluster_status wait_until bin);

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

sub scrub {
    my (@args) = @_;
    my $json = "$cl->{dir}/scrub.json";
    unlink $json;
    my $out = `$nines scrub --cluster $cf --json $json --timeout 30 @args 2>&1`;
    my $rc = $? >> 8;
    my $j = -s $json ? eval { decode_json(Nines::slurp($json)) } : undef;
    return ($rc, $out, $j);
}

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
my $env = "$n3->{dir}/n3/state";
# The whole environment through mdb_dump -a / mdb_load (lmdb-utils has no
# delete; hex dumps): one record of partition 0 left out, and the partition's digest
# record (key = the group name alone) too, so that the node rebuilds digest
# and buckets from what is left when it opens (markers stay).
my $dump = `mdb_dump -a '$env'`; # hex: mdb_load misreads some -p (printable) dumps
is($?, 0, 'mdb_dump -a of n3\'s environment');
my @sec = split /(?<=DATA=END\n)/, $dump;
my ($victim, $pairs, $dropped_digest) = (undef, 0, 0);
for my $sec (@sec) {
    my ($name) = $sec =~ /^database=(.*)$/m;
    next unless defined $name;
    my ($head, $body) = $sec =~ /\A(.*?HEADER=END\n)(.*)DATA=END\n\z/s or die 'mdb_dump format';
    my @l = split /\n/, $body;
    if ($name eq $g->{group}) {
        $pairs = @l / 2;
        $victim = $l[20];
        splice @l, 20, 2;
    } elsif ($name eq '_digest') {
        my @keep;
        for (my $i = 0; $i < @l; $i += 2) {
            if ($l[$i] eq ' ' . unpack('H*', $g->{group})) { $dropped_digest++; next }
            push @keep, $l[$i], $l[$i + 1];
        }
        @l = @keep;
    }
    $sec = $head . join('', map { "$_\n" } @l) . "DATA=END\n";
}
ok($pairs >= 50, "partition 0 holds $pairs items on n3; one is left out");
is($dropped_digest, 1, 'the partition\'s digest record is left out');
open my $f, '>', "$cl->{dir}/n3.dump" or die;
print $f @sec;
close $f;
mkdir "$cl->{dir}/n3-new";
my $lo = `mdb_load -f '$cl->{dir}/n3.dump' '$cl->{dir}/n3-new' 2>&1`;
is($?, 0, 'mdb_load into a new environment') or diag $lo;
unlink "$env/lock.mdb";
rename("$cl->{dir}/n3-new/data.mdb", "$env/data.mdb") or die "rename: $!";

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
is($f[0]{items} + 1, $f[0]{majority_items}, '... one item fewer than the majority');
is(ref $f[0]{buckets} && scalar @{ $f[0]{buckets} }, 1, '... in exactly one bucket') or diag $out;
like($out, qr/FINDING scrubbed partition 0: replica n3 differs/, 'the summary names it');

# Bad usage.
($rc, $out) = (system("$nines scrub --table x >/dev/null 2>&1") >> 8, '');
is($rc, 2, 'no --cluster: exit 2');
$out = `$nines scrub --cluster $cl->{dir}/nosuch.yaml 2>&1`;
is($? >> 8, 2, 'a missing cluster file: exit 2');
like($out, qr/nosuch\.yaml/, '... naming it');
done_testing();
