# Archive retention (docs/archive.md): the leader of each partition keeps
# what rebuilding any point of the last `retention` needs — the newest
# snapshot uploaded before the window, proved whole first — and deletes
# the pieces and snapshots before it (manifest first). What is left still
# verifies (restorable from that snapshot) and still rebuilds the
# partition exactly.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use File::Temp qw(tempdir);
use Test::More;
use Nines qw(new_cluster start_member stop_node kill_node ddb cluster_status wait_until bin json
             slurp);

my $ad = tempdir('nines-ret-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{NINES_KEEP});
my $url = "file://$ad";
my $cl = new_cluster(nodes => 3, azs => 3,
    extra => "archive: {url: '$url', seal_after: 1s, verify_after: 1s, snapshot_every: 100, "
           . "retention: 3s}\n");
my @nodes = @{ $cl->{nodes} };
start_member($_) for @nodes;
END { kill_node($_) for grep { $_->{pid} } @nodes }
my ($st);
wait_until(15, sub { ($st) = ddb($nodes[0], 'CreateTable', { TableName => 'kept',
    BillingMode => 'PAY_PER_REQUEST', NinesPartitions => 1,
    AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }],
    KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' }] }); $st == 200 });
is($st, 200, 'table created (one partition)');
my $ok = 0;
for my $i (1 .. 700) {
    my $s;
    wait_until(10, sub { ($s) = ddb($nodes[$i % 3], 'PutItem', { TableName => 'kept',
        Item => { pk => { S => 'k' . ($i % 400) }, v => { N => "$i" } } }); $s == 200 });
    $ok++ if $s == 200;
    select undef, undef, undef, 0.01;
}
is($ok, 700, '700 writes (400 keys)');
my ($g) = map { $_->{group} } grep { ($_->{table} // '') eq 'kept' } @{ cluster_status($nodes[0])->{groups} };
sub firsts { sort map { m{/(\d+)-\d+\.json$} ? $1 + 0 : () } glob("$ad/$g/log/*.json") }
my $first = wait_until(30, sub { my @f = firsts(); @f && $f[0] > 1 ? $f[0] : undef });
ok($first, "old pieces were deleted: the log now starts at entry " . ($first // '?'));
my @snaps = glob("$ad/$g/snap/*.json");
ok(@snaps >= 1, scalar(@snaps) . ' snapshot(s) kept');
my $expired = 0;
$expired += (cluster_status($_)->{archive}{expired} // 0) for @nodes;
cmp_ok($expired, '>', 0, "the status counts the objects retention deleted ($expired)");
ok(!(grep { !-e s/\.json$/.piece/r } glob("$ad/$g/log/*.json")), 'no manifest is left without its object');
# Let the last writes be archived, then prove and rebuild what is left.
sleep 4;
my $out = `@{[bin('nines')]} archive verify $url 2>&1`;
is($? >> 8, 0, 'what retention left verifies (rebuildable from a snapshot)') or diag $out;
my ($last) = reverse sort { $a <=> $b } map { m{-(\d+)\.json$} ? $1 + 0 : () } glob("$ad/$g/log/*.json");
my $ref = `@{[bin('nines')]} reference $url --group $g --upto $last --key pk:S 2>&1`;
is($? >> 8, 0, 'nines reference from what is left') or diag $ref;
like($ref, qr/from snapshot [1-9]\d*.*: 400 items/, '... from a snapshot: the 400 items') or diag $ref;
for my $m (@nodes) { is(stop_node($m), 0, "$m->{id} stopped cleanly") }
done_testing;
