#!/usr/bin/perl
# The group directories (SNAPSHOT; HARDSTATE before term and vote moved to
# the node log) are <data>/groups/<group>/; until December 2026 they were
# <data>/wal/<group>/. A data directory of the old layout still opens:
# ninesd renames wal/ to groups/ once, and every item is there. Both names at once are refused, with both paths named.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Nines qw(new_cluster start_member stop_node kill_node ddb wait_until);

my $cl = new_cluster(nodes => 1, azs => 1);
my ($n1) = @{ $cl->{nodes} };
my $data = "$cl->{dir}/n1";
END { kill_node($n1) if $n1->{pid} }
start_member($n1);
my ($st) = (0);
wait_until(10, sub { ($st) = ddb($n1, 'CreateTable', { TableName => 'grp', BillingMode => 'PAY_PER_REQUEST',
    AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }],
    KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' }] }); $st == 200 });
is($st, 200, 'table created');
my $ok = 0;
for my $i (1 .. 20) {
    my ($s) = ddb($n1, 'PutItem', { TableName => 'grp', Item => { pk => { S => "k$i" }, v => { N => "$i" } } });
    $ok++ if $s == 200;
}
is($ok, 20, 'items written');
ok(-d "$data/groups/meta" && !-e "$data/groups/meta/HARDSTATE",
   'the metadata group lives in groups/meta/ (its term and vote in the node log, no HARDSTATE file)');
ok(!-e "$data/wal", 'there is no wal/ directory');
is(stop_node($n1), 0, 'node stops');

# The old layout: wal/ where groups/ is now.
rename("$data/groups", "$data/wal") or die "rename: $!";
start_member($n1);
ok(-d "$data/groups" && !-e "$data/wal", 'start-up renamed wal/ to groups/');
my $found = 0;
for my $i (1 .. 20) {
    my ($s, $r) = ddb($n1, 'GetItem', { TableName => 'grp', Key => { pk => { S => "k$i" } },
                                        ConsistentRead => JSON::PP::true });
    $found++ if $s == 200 && ($r->{Item}{v}{N} // '') eq $i;
}
is($found, 20, 'every item is there after the upgrade');
like(Nines::slurp($n1->{log}), qr/moved \Q$data\E\/wal to \Q$data\E\/groups/, 'the log says so');
is(stop_node($n1), 0, 'node stops');

# Both names: refused, nothing renamed or lost.
mkdir "$data/wal" or die "mkdir: $!";
my $pid = fork // die;
if ($pid == 0) {
    open STDOUT, '>>', $n1->{log} or die;
    open STDERR, '>&', \*STDOUT or die;
    exec Nines::bin('ninesd'), '--cluster', $n1->{cluster}, '--node', 'n1';
    exit 127;
}
my $waited = 0;
while (waitpid($pid, 1) == 0 && $waited++ < 500) { select(undef, undef, undef, 0.02) }
if ($waited > 500) { kill 'KILL', $pid; waitpid $pid, 0 }
is($? >> 8, 1, 'a data directory with both wal/ and groups/ does not start');
like(Nines::slurp($n1->{log}), qr/\Q$data\E\/wal and \Q$data\E\/groups both exist/, '... and says why');
ok(-d "$data/groups/meta", 'groups/ is untouched');
done_testing();
