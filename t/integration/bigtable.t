# One CreateTable of many partitions on a fresh three-node local cluster
# (issue 21): every partition and the metadata group elect a leader within a
# bound, items can be written and read; after kill -9 of every node at once
# and a restart, every group elects again and the items are there. With a
# synchronous per-group HARDSTATE fsync on the single driver thread, 257+
# groups electing at once livelocked (no leader anywhere, terms rising).
#
# NINES_BIGTABLE_PARTS (default 1024) and NINES_BIGTABLE_BOUND (seconds,
# default 60) change the size and the bound.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use Nines qw(new_cluster start_member kill_node ddb cluster_status wait_until);

my $PARTS = $ENV{NINES_BIGTABLE_PARTS} || 1024;
my $BOUND = $ENV{NINES_BIGTABLE_BOUND} || 60;
my $KEYS = 16;

my $cl = new_cluster(nodes => 3, azs => 3);
my @nodes = @{ $cl->{nodes} };
start_member($_) for @nodes;
END { local $?; kill_node($_) for grep { $_->{pid} } @nodes }

# Groups of this node's view: name -> 1 when some node says it leads.
# Returns (groups seen of the table, of those led, metadata group led, max term).
sub census {
    my (%seen, %led, $meta_led, $maxterm);
    $maxterm = 0;
    for my $m (grep { $_->{pid} } @nodes) {
        my $s = cluster_status($m) or next;
        for my $g (@{ $s->{groups} }) {
            $maxterm = $g->{term} if $g->{term} > $maxterm;
            if (!defined $g->{table}) {
                $meta_led = 1 if $g->{role} eq 'leader';
                next;
            }
            next unless $g->{table} eq 'big';
            $seen{ $g->{group} } = 1;
            $led{ $g->{group} } = 1 if $g->{role} eq 'leader';
        }
    }
    return (scalar(keys %seen), scalar(keys %led), $meta_led ? 1 : 0, $maxterm);
}

# Waits until every partition and the metadata group have a leader; returns
# the seconds it took (undef at the bound) and says how far it got.
sub all_led {
    my ($what, $t0) = @_;
    my @c;
    my $ok = wait_until($BOUND, sub {
        @c = census();
        return $c[0] == $PARTS && $c[1] == $PARTS && $c[2];
    });
    my $secs = time - $t0;
    diag(sprintf '%s: %d of %d partitions seen, %d led, metadata group %s, max term %d',
         $what, $c[0] // 0, $PARTS, $c[1] // 0, $c[2] ? 'led' : 'leaderless', $c[3] // 0)
        unless $ok;
    return $ok ? $secs : undef;
}

my ($st, $r);
ok(wait_until(20, sub { ($st, $r) = ddb($nodes[0], 'ListTables', {}); $st == 200 }),
   'the metadata group serves') or diag explain $r;

my $t0 = time;
($st, $r) = ddb($nodes[1], 'CreateTable', {
    TableName => 'big', BillingMode => 'PAY_PER_REQUEST',
    Tags => [{ Key => 'nines:partitions', Value => "$PARTS" }],
    AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }],
    KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' }] });
is($st, 200, "CreateTable of $PARTS partitions") or diag explain $r;
note(sprintf 'CreateTable answered in %.2f s', time - $t0);

my $secs = all_led('after CreateTable', $t0);
ok(defined $secs, "every one of $PARTS partitions and the metadata group has a leader within $BOUND s");
note(sprintf 'measured: %d partitions led %.2f s after CreateTable was sent', $PARTS, $secs // -1);
# Leaderless groups would make every request below wait out its timeout.
if (!defined $secs) { done_testing(); exit 1 }

# Writes through every node, then reads through another.
my %want;
for my $k (1 .. $KEYS) {
    my $n = $nodes[$k % 3];
    my $ok = wait_until(20, sub {
        ($st, $r) = ddb($n, 'PutItem', { TableName => 'big',
            Item => { pk => { S => "key$k" }, v => { N => "$k" } } });
        $st == 200 });
    $want{"key$k"} = $k if $ok;
}
is(scalar keys %want, $KEYS, "$KEYS PutItems acknowledged") or diag explain $r;
sub check_items {
    my ($what) = @_;
    my $good = 0;
    for my $key (sort keys %want) {
        my $got;
        wait_until(20, sub {
            ($st, $r) = ddb($nodes[($want{$key} + 1) % 3], 'GetItem', { TableName => 'big',
                ConsistentRead => JSON::PP::true, Key => { pk => { S => $key } } });
            $got = $r->{Item}{v}{N} if $st == 200 && ref $r && $r->{Item};
            $st == 200 });
        $good++ if defined $got && $got == $want{$key};
    }
    is($good, $KEYS, "$what: every item reads back with its value (consistent reads)");
}
check_items('before the crash');

# kill -9 of every node at once, then start them all.
kill 'KILL', map { $_->{pid} } @nodes;
for my $m (@nodes) { waitpid $m->{pid}, 0; $m->{pid} = 0 }
my $t1 = time;
start_member($_) for @nodes;
note(sprintf 'the three nodes answered %.2f s after the restart began', time - $t1);
my $secs2 = all_led('after kill -9 of every node', $t1);
ok(defined $secs2, "after kill -9 of every node and a restart, every group has a leader within $BOUND s");
note(sprintf 'measured: %d partitions led %.2f s after the restart began', $PARTS, $secs2 // -1);
if (!defined $secs2) { done_testing(); exit 1 }
check_items('after the restart');

for my $m (@nodes) {
    my $log = Nines::slurp($m->{log});
    unlike($log, qr/ASSERT|invariant|AddressSanitizer|runtime error/, "$m->{id}: no assertion in its log");
}
done_testing();
