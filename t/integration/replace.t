# Replacing a node's replicas by joint consensus, under writes
# (store/admin_member.c, store/healer.h, `nines cluster replace` and
# `decommission`). Six nodes in three AZs, a table of eight partitions,
# a writer that never stops: `nines cluster replace` moves every replica
# of a running node to other nodes (same AZ: each AZ has a spare), then
# `nines cluster decommission` does it for a node killed with SIGKILL.
# After each: the node holds no replica, every partition has three members
# in three AZs and a configuration of exactly those, the scrubber finds
# the three replicas of every partition equal, and no acknowledged write
# is lost.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);
use Nines qw(new_cluster start_member stop_node kill_node ddb cluster_status wait_until bin
             run_scrub slurp);
use Moves qw(placement holders start_writer stop_writer check_acked acked_count check_layout);

my $PARTS = 8;
my $cl = new_cluster(nodes => 6, azs => 3, extra => "storage: {compact_entries: 400}\n");
my @nodes = @{ $cl->{nodes} };
my %byid = %{ $cl->{byid} };
start_member($_) for @nodes;
my @kids;
END {
    kill 'TERM', $_ for @kids;
    waitpid $_, 0 for @kids;
    kill_node($_) for grep { $_->{pid} } @nodes;
}

my ($st, $r);
wait_until(15, sub { ($st, $r) = ddb($nodes[0], 'CreateTable', {
    TableName => 'rep', BillingMode => 'PAY_PER_REQUEST', NinesPartitions => $PARTS,
    AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }],
    KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' }] }); $st == 200 });
is($st, 200, 'table of eight partitions created') or diag explain $r;

# Warm data: 1500 items over every partition, so that new members are
# built from a snapshot stream (compact_entries 400) and the log after it.
my $pad = 'p' x 200;
my $warm_failed = 0;
for my $i (1 .. 1500) {
    my $ok = 0;
    for my $try (1 .. 50) {
        ($st) = ddb($nodes[$i % 6], 'PutItem', { TableName => 'rep',
            Item => { pk => { S => "w$i" }, v => { N => '1' }, pad => { S => $pad } } });
        if ($st == 200) { $ok = 1; last }
        sleep 0.05;
    }
    $warm_failed++ unless $ok;
}
is($warm_failed, 0, '1500 items written');

my $dir = $cl->{dir};

# Where the replicas are; the node to replace holds several.
my $t = placement('rep', @nodes);
ok($t && @{ $t->{Placement} } == $PARTS, 'DescribeTable lists the members of every partition');
my $h = holders($t);
my ($x) = sort { keys %{ $h->{$b} } <=> keys %{ $h->{$a} } || $a cmp $b } keys %$h;
my @xparts = sort { $a <=> $b } keys %{ $h->{$x} };
ok(@xparts >= 2, "$x holds replicas of partitions @xparts");
my %az = map { $_->{id} => $_->{az} } @nodes;

# 1. replace a running node, under writes.
my @via = grep { $_->{id} ne $x } @nodes;
my $w1 = start_writer($dir, 'rep', 'a', @via);
push @kids, $w1;
sleep 1;
my $t0 = time;
my $out = `@{[bin('nines')]} cluster replace $x --config $cl->{path} --timeout 180 2>&1`;
my $rc = $? >> 8;
my $took = time - $t0;
is($rc, 0, "nines cluster replace $x exits 0 (" . sprintf('%.1f', $took) . ' s)') or diag $out;
like($out, qr/$x holds no replica any more/, '... and says so');
my $moved = () = $out =~ /replaced by/g;
is($moved, scalar @xparts, "... after moving each of its " . scalar(@xparts) . ' replicas');
diag($out);
sleep 1;
my $acked_during = acked_count($dir, 'a');
stop_writer($dir, 'a', $w1);
@kids = grep { $_ != $w1 } @kids;
cmp_ok($acked_during, '>', 20, "writes went on during the replacement ($acked_during acknowledged)");

$t = check_layout('rep', $x, 'after replace', \%az, @nodes);
my $h2 = holders($t);
my $same_az = grep { my $p = $_; grep { $h2->{$_}{$p} && !$h->{$_}{$p} && $az{$_} eq $az{$x} }
                                   keys %$h2 } @xparts;
is($same_az, scalar @xparts, "every new member is in $x\'s AZ ($az{$x}), which has a spare node");

# The configurations say the same: the leader of each partition reports
# exactly the three members as its voters, not joint.
my $conf_ok = wait_until(20, sub {
    my %seen;
    for my $m (grep { $_->{pid} } @nodes) {
        my $s = cluster_status($m) or next;
        for my $g (@{ $s->{groups} }) {
            next unless ($g->{table} // '') eq 'rep' && $g->{role} eq 'leader';
            my $c = $g->{conf} // $g->{Conf} or next;
            my @v = sort @{ $c->{voters} // $c->{Voters} // [] };
            my @want = sort grep { defined } @{ $t->{Placement}[ $g->{partition} ] };
            $seen{ $g->{partition} } = "@v" eq "@want" && !($c->{joint} // $c->{Joint});
        }
    }
    (grep { $seen{$_} } 0 .. $PARTS - 1) == $PARTS });
ok($conf_ok, 'every partition leader\'s configuration is exactly its three members');

my ($lost, $n) = check_acked($dir, 'rep', 'a', $via[0]);
is($lost, 0, "no acknowledged write lost ($n keys checked)");
my ($src, $sout, $rep) = run_scrub($cl, '--table', 'rep');
is($src, 0, 'the scrubber finds the three replicas of every partition equal') or diag $sout;

# The node left its groups: it serves none of them at once, and drops
# each replica (items, log, directory) once no request can hold it any
# more (60 s, store/catalog.h).
my $xn = $byid{$x};
my $s = cluster_status($xn);
is(scalar(grep { ($_->{table} // '') eq 'rep' } @{ $s->{groups} // [1] }), 0,
   "$x reports no member of the table any more");
my $xlog = sub { slurp($xn->{log}) };
my $nleft = () = $xlog->() =~ /this node's member \d+ left the group/g;
is($nleft, scalar @xparts, "... it logged leaving each of its $nleft groups");
my $dropped = wait_until(90, sub { my $n = () = $xlog->() =~ /the replica this node left is dropped/g;
                                   $n == @xparts ? $n : undef });
ok($dropped, "... and dropped each replica after the grace period");
my @dirs = grep { -d $_ } map { glob("$dir/$x/groups/p.*.$_") } @xparts;
is(scalar @dirs, 0, "... its replicas' directories are gone") or diag "@dirs";
is(stop_node($xn), 0, "$x stops cleanly");
start_member($xn);
ok(wait_until(15, sub { cluster_status($xn) }), "$x restarts");

# 2. decommission a dead node, under writes.
$h = holders(placement('rep', @nodes));
my ($y) = sort { keys %{ $h->{$b} } <=> keys %{ $h->{$a} } || $a cmp $b }
          grep { $_ ne $x } keys %$h;
my @yparts = sort { $a <=> $b } keys %{ $h->{$y} };
kill_node($byid{$y});
ok(1, "$y killed (SIGKILL); it held partitions @yparts");
@via = grep { $_->{id} ne $y } @nodes;
my $w2 = start_writer($dir, 'rep', 'b', @via);
push @kids, $w2;
sleep 1;
$out = `@{[bin('nines')]} cluster decommission $y --config $cl->{path} --timeout 180 2>&1`;
$rc = $? >> 8;
is($rc, 0, "nines cluster decommission $y (dead) exits 0") or diag $out;
diag($out);
sleep 1;
my $acked2 = acked_count($dir, 'b');
stop_writer($dir, 'b', $w2);
@kids = grep { $_ != $w2 } @kids;
cmp_ok($acked2, '>', 20, "writes went on ($acked2 acknowledged)");
check_layout('rep', $y, 'after decommission', \%az, @nodes);
($lost, $n) = check_acked($dir, 'rep', 'b', $via[0]);
is($lost, 0, "no acknowledged write lost ($n keys checked)");
($lost, $n) = check_acked($dir, 'rep', 'a', $via[0]);
is($lost, 0, "... nor any of the first writer's ($n keys)");
# The dead node is still in the file: the scrubber says it could not ask
# it (exit 2, undecided), but every partition, none of which it holds any
# more, is compared at a marker with no finding.
($src, $sout, $rep) = run_scrub($cl, '--table', 'rep');
ok($rep && $rep->{compared} == $PARTS && @{ $rep->{findings} // [1] } == 0
   && @{ $rep->{undecided} // [1] } == 0 && $rep->{nodes_unreachable} == 1,
   'the scrubber compares every partition\'s three replicas at a marker: equal') or diag $sout;

# The decommissioned node comes back: it is no member of anything it held,
# and drops those replicas at start.
# (A node outside the metadata group learns the tables from a metadata
# member a moment after it answers.)
start_member($byid{$y});
my $ndrop = wait_until(20, sub {
    my $n = () = slurp($byid{$y}{log}) =~ /dropped the replica of a group this node is no member of/g;
    $n == @yparts ? $n : undef });
ok($ndrop, "$y, restarted, dropped each of its " . scalar(@yparts) . ' old replicas at start');
my $ys = cluster_status($byid{$y});
is(scalar(grep { ($_->{table} // '') eq 'rep' } @{ $ys->{groups} // [1] }), 0,
   '... opens no member of the table');
@dirs = grep { -d $_ } map { glob("$dir/$y/groups/p.*.$_") } @yparts;
is(scalar @dirs, 0, "... and their directories are gone") or diag "@dirs";

# Bad input: a node that is not in the file, and a replacement refused.
$out = `@{[bin('nines')]} cluster replace nope --config $cl->{path} 2>&1`;
is($? >> 8, 2, 'replace of an unknown node: exit 2');
like($out, qr/nope is no node of/, '... saying so');
$out = `@{[bin('nines')]} cluster replace $x --to $x --config $cl->{path} 2>&1`;
is($? >> 8, 2, 'replace --to the same node: exit 2');

for my $m (grep { $_->{pid} } @nodes) { is(stop_node($m), 0, "$m->{id} stops cleanly") }
done_testing();
