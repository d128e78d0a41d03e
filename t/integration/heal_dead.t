# Self-healing of a dead node (store/healer.h, healing.dead_after): six
# nodes in three AZs, a table of four partitions under writes. A node that
# comes back within dead_after keeps its replicas and catches up; a node
# killed with SIGKILL and its data wiped (lost for good) is replaced on its
# own: once it has been silent for dead_after, every partition it held gets
# a new member on another node of its AZ by joint consensus, with writes
# going on throughout, no acknowledged write lost and the three replicas of
# every partition equal. Then a node of another AZ dies too: every
# partition still takes writes (with the first node's replicas not rebuilt
# this would leave some partitions with one live member).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Time::HiRes qw(sleep time);
use File::Path qw(remove_tree);
use Nines qw(new_cluster start_member stop_node kill_node ddb cluster_status wait_until
             run_scrub slurp);
use Moves qw(placement holders start_writer stop_writer check_acked acked_count check_layout);

my $DEAD_AFTER = 4;
my $cl = new_cluster(nodes => 6, azs => 3,
                     extra => "storage: {compact_entries: 400}\nhealing: {dead_after: ${DEAD_AFTER}s}\n");
my @nodes = @{ $cl->{nodes} };
my %byid = %{ $cl->{byid} };
my $dir = $cl->{dir};
my %az = map { $_->{id} => $_->{az} } @nodes;
start_member($_) for @nodes;
my @kids;
END {
    kill 'TERM', $_ for @kids;
    waitpid $_, 0 for @kids;
    kill_node($_) for grep { $_->{pid} } @nodes;
}

my ($st, $r);
wait_until(15, sub { ($st, $r) = ddb($nodes[0], 'CreateTable', {
    TableName => 'heal', BillingMode => 'PAY_PER_REQUEST', NinesPartitions => 4,
    AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }],
    KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' }] }); $st == 200 });
is($st, 200, 'table of four partitions created') or diag explain $r;
my $warm = 0;
for my $i (1 .. 800) {
    for my $try (1 .. 50) {
        ($st) = ddb($nodes[$i % 6], 'PutItem', { TableName => 'heal',
            Item => { pk => { S => "w$i" }, pad => { S => 'p' x 200 } } });
        if ($st == 200) { $warm++; last }
        sleep 0.05;
    }
}
is($warm, 800, '800 items written');

# The node to lose: one that holds replicas and is not the metadata leader
# (whose healer counts the time).
my $t = placement('heal', @nodes);
my $h = holders($t);
my %meta_leader;
for my $m (@nodes) {
    my $s = cluster_status($m) or next;
    $meta_leader{ $s->{node} } = 1
        for map { $s->{node} } grep { $_->{group} eq 'meta' && $_->{role} eq 'leader' } @{ $s->{groups} };
}
my ($x) = sort { keys %{ $h->{$b} } <=> keys %{ $h->{$a} } || $a cmp $b }
          grep { !$meta_leader{$_} } keys %$h;
my @xparts = sort { $a <=> $b } keys %{ $h->{$x} };
ok(@xparts >= 1, "$x holds replicas of partitions @xparts");
my $xn = $byid{$x};

# 1. Back within dead_after: nothing moves.
kill_node($xn);
sleep 1;
start_member($xn);
sleep $DEAD_AFTER + 2;
my $t1 = placement('heal', @nodes);
is_deeply(holders($t1)->{$x}, $h->{$x}, "$x, back after 1 s, keeps all its replicas");

# 2. Lost for good: SIGKILL and its data wiped.
my @via = grep { $_->{id} ne $x } @nodes;
my $w = start_writer($dir, 'heal', 'a', @via);
push @kids, $w;
sleep 1;
kill_node($xn);
remove_tree("$dir/$x");
my $t0 = time;
my $healed = wait_until($DEAD_AFTER + 60, sub {
    my $tt = placement('heal', @via);
    my $hh = holders($tt);
    !$hh->{$x} && !@{ $tt->{NinesReplacements} // [1] } ? $tt : undef });
my $took = time - $t0;
ok($healed, sprintf('every replica of %s is rebuilt elsewhere %.1f s after it died '
                    . '(dead_after %d s)', $x, $took, $DEAD_AFTER));
my $acked = acked_count($dir, 'a');
stop_writer($dir, 'a', $w);
@kids = grep { $_ != $w } @kids;
cmp_ok($acked, '>', 20, "writes went on ($acked acknowledged)");
$t = check_layout('heal', $x, 'after healing', \%az, @via);
my $h2 = holders($t);
my $same_az = grep { my $p = $_; grep { $h2->{$_}{$p} && !$h->{$_}{$p} && $az{$_} eq $az{$x} }
                                   keys %$h2 } @xparts;
is($same_az, scalar @xparts, "each new member is in $x\'s AZ ($az{$x})");
# Every live node's catalog has the change (a node outside the metadata
# group syncs within 200 ms).
ok(wait_until(10, sub { !grep { my $tt = placement('heal', $_); !$tt || holders($tt)->{$x} } @via }),
   'every live node knows the new placement');
my $mlog = join '', map { slurp($_->{log}) } @via;
like($mlog, qr/node $x silent for [\d.]+ s \(healing\.dead_after \d+ s\)/,
     'the metadata leader said the node is dead');
my ($lost, $n) = check_acked($dir, 'heal', 'a', $via[0]);
is($lost, 0, "no acknowledged write lost ($n keys)");
my ($src, $sout, $rep) = run_scrub($cl, '--table', 'heal');
ok($rep && $rep->{compared} == 4 && @{ $rep->{findings} // [1] } == 0
   && @{ $rep->{undecided} // [1] } == 0,
   'the scrubber compares the three replicas of every partition at a marker: equal') or diag $sout;

# 3. A second node, in another AZ, dies: every partition still has two live
# members and takes writes.
my ($y) = grep { $az{$_->{id}} ne $az{$x} && !$meta_leader{ $_->{id} } } @via;
kill_node($y);
my @live = grep { $_->{pid} } @nodes;
my $fails = 0;
for my $i (1 .. 200) {
    my $ok = 0;
    for my $try (1 .. 40) {
        ($st) = ddb($live[$i % @live], 'PutItem', { TableName => 'heal',
            Item => { pk => { S => "after$i" } } });
        if ($st == 200) { $ok = 1; last }
        sleep 0.05;
    }
    $fails++ unless $ok;
}
is($fails, 0, "with $y->{id} ($az{ $y->{id} }) down as well, every write succeeds (200 over all partitions)");

for my $m (grep { $_->{pid} } @nodes) { is(stop_node($m), 0, "$m->{id} stops cleanly") }
done_testing();
