# A follower catches up on a partition larger than the transport's per-peer
# queue (16 MiB): the leader's snapshot travels as a stream of bounded
# chunks (store/snapstream.h), never as one message the queue refuses whole.
# Three nodes, one partition of ~18 MiB, kill -9 one node, more writes so the
# others compact past it, restart it: it is rebuilt from the stream, holds
# every item, and no client write failed on the way.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Nines qw(new_cluster start_member stop_node kill_node ddb cluster_status wait_until);

my $cl = new_cluster(nodes => 3, azs => 3,
                     extra => "storage: {compact_entries: 300, snapshot_rate: 200MiB}\n");
my @nodes = @{ $cl->{nodes} };
my ($n1, $n2, $n3) = @nodes;
start_member($_) for @nodes;
END { kill_node($_) for grep { $_->{pid} } @nodes }

my ($st, $r);
wait_until(10, sub { ($st) = ddb($n1, 'CreateTable', { TableName => 'big', BillingMode => 'PAY_PER_REQUEST',
    NinesPartitions => 1, AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }],
    KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' }] }); $st == 200 });
is($st, 200, 'table created');

my $pad = 'y' x 3000;
my $failed = 0;
# Batches of 25 items of ~3 KB; a batch is retried while the group elects,
# but every batch must eventually succeed: a failure counts.
sub put_batch {
    my ($from, $to, $via) = @_;
    my @req = map { { PutRequest => { Item => { pk => { S => "k$_" }, v => { N => "$_" },
                                                pad => { S => $pad } } } } } ($from .. $to);
    my %todo = (big => \@req);
    for my $try (1 .. 100) {
        my ($s, $b) = ddb($via, 'BatchWriteItem', { RequestItems => \%todo });
        if ($s == 200) {
            my $un = $b->{UnprocessedItems} // {};
            return 1 unless $un->{big} && @{ $un->{big} };
            %todo = %$un;
        }
        select(undef, undef, undef, 0.05);
    }
    $failed++;
    return 0;
}
sub put_range {
    my ($from, $to, $via) = @_;
    my $ok = 1;
    for (my $i = $from; $i <= $to; $i += 25) {
        my $j = $i + 24 > $to ? $to : $i + 24;
        $ok &&= put_batch($i, $j, $via);
    }
    return $ok;
}

sub group_of {
    my ($m) = @_;
    my $s = cluster_status($m) or return undef;
    my ($g) = grep { ($_->{table} // '') eq 'big' } @{ $s->{groups} };
    return $g;
}

ok(put_range(1, 3000, $n1), '3000 items of 3 KB with all three nodes up');
kill_node($n3);
ok(1, 'n3 killed (SIGKILL)');
ok(put_range(3001, 6500, $n1), '3500 more while n3 is down');
my $compacted = wait_until(15, sub {
    my ($a, $b) = (group_of($n1), group_of($n2));
    $a && $b && $a->{first_index} > 400 && $b->{first_index} > 400 ? $a : undef });
ok($compacted, 'n1 and n2 compacted past what n3 holds');
# Restart n1 and n2: whatever their transports still queued for n3 (the
# appends of the writes above, under 16 MiB) is gone, so n3 can only catch
# up by snapshot.
for my $m ($n1, $n2) {
    is(stop_node($m), 0, "$m->{id} stopped");
    start_member($m);
}
my $leader = wait_until(15, sub { (grep { my $g = group_of($_); $g && $g->{role} eq 'leader' } $n1, $n2)[0] }) // $n1;
my %mark = map { $_->{id} => -s $_->{log} } @nodes;
sub since { my ($m) = @_; substr(Nines::slurp($m->{log}), $mark{$m->{id}}) }

# Over 16 MiB in the partition: the old single-message snapshot could never
# pass the transport's queue.
my $t0 = time;
start_member($n3);
my $seen_progress;
my $caught = wait_until(45, sub {
    my ($a, $b) = (group_of($n3), group_of($leader));
    $seen_progress //= $b->{snapshot} if $b && $b->{snapshot};
    $a && $b && $a->{applied} >= $b->{commit} - 5 && $a->{applied} > 6500 / 25 ? $a : undef });
ok($caught, 'n3 catches up within 45 s (applied ' . ($caught ? $caught->{applied} : '?')
   . ', ' . (time - $t0) . ' s)');
my $n3log = since($n3);
like($n3log, qr/snapshot at \d+ received from member \d+ and verified: (\d+) bytes/,
     'n3 received a verified snapshot stream');
my ($bytes) = $n3log =~ /received from member \d+ and verified: (\d+) bytes/;
cmp_ok($bytes // 0, '>', 16 * 1024 * 1024, '... larger than the 16 MiB transport queue ('
       . ($bytes // '?') . ' bytes)');
like($n3log, qr/installed the leader's snapshot/, '... and installed it');
my $llog = since($leader);
like($llog, qr/snapshot at \d+ sent to member \d+ \(n3\): \d+ bytes in [\d.]+ s \([\d.]+ MB\/s/,
     'the leader logged the stream\'s end with its rate');
unlike($llog . $n3log, qr/transport refused/, 'no message was refused by a transport queue');
my $starts = () = $llog =~ /snapshot stream at \d+ \(term \d+\) to member \d+ \(n3\)/g;
cmp_ok($starts, '<=', 3, "the leader did not start stream after stream ($starts)");
diag('status during the stream: ' . JSON::PP->new->canonical->encode($seen_progress)) if $seen_progress;

# n3 serves eventually consistent reads from its own replica.
# (A Scan page holds at most 1 MB: count page by page.)
my ($count, $start, $pages) = (0, undef, 0);
while ($pages++ < 100) {
    my ($ss, $scan) = ddb($n3, 'Scan', { TableName => 'big', Select => 'COUNT',
                                         $start ? (ExclusiveStartKey => $start) : () });
    last unless $ss == 200;
    $count += $scan->{Count};
    $start = $scan->{LastEvaluatedKey} or last;
}
is($count, 6500, 'n3\'s replica holds all 6500 items');
my $bad = 0;
for my $i (1, 2, 1000, 3000, 3001, 4444, 6499, 6500) {
    my ($s, $g) = ddb($n3, 'GetItem', { TableName => 'big', Key => { pk => { S => "k$i" } } });
    $bad++ unless $g->{Item} && $g->{Item}{v}{N} == $i && $g->{Item}{pad}{S} eq $pad;
}
is($bad, 0, '... with the right values');
ok(put_range(6501, 6600, $n1), 'writes continue');
is($failed, 0, 'no client write failed');
for my $m (@nodes) { is(stop_node($m), 0, "$m->{id} stops cleanly") }
done_testing();
