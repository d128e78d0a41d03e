# A data dir from before term and vote moved into the node log holds a
# HARDSTATE file per group: the node carries it over (the later of file and
# log wins), deletes the file, and the group goes on from that term.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use JSON::PP;
use Nines qw(new_cluster start_member stop_node kill_node ddb cluster_status wait_until);

my $cl = new_cluster(nodes => 3, azs => 3);
my @nodes = @{ $cl->{nodes} };
start_member($_) for @nodes;
END { local $?; kill_node($_) for grep { $_->{pid} } @nodes }

my ($st, $r);
wait_until(20, sub { ($st, $r) = ddb($nodes[0], 'CreateTable', {
    TableName => 'mig', BillingMode => 'PAY_PER_REQUEST', NinesPartitions => 1,
    AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }],
    KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' }] }); $st == 200 });
is($st, 200, 'table created') or diag explain $r;

# The partition's group: its name, and its term and leader as each node says.
sub view {
    my %v;
    for my $m (grep { $_->{pid} } @nodes) {
        my $s = cluster_status($m) or next;
        for my $g (@{ $s->{groups} }) {
            next unless ($g->{table} // '') eq 'mig';
            $v{group} = $g->{group};
            $v{term}{ $m->{id} } = $g->{term};
            $v{leader} = $m->{id} if $g->{role} eq 'leader';
        }
    }
    return \%v;
}
my $v = wait_until(20, sub { my $x = view(); $x->{leader} ? $x : undef });
ok($v, 'the partition has a leader');
wait_until(20, sub { ($st) = ddb($nodes[1], 'PutItem', { TableName => 'mig',
    Item => { pk => { S => 'k' }, v => { N => '42' } } }); $st == 200 });
is($st, 200, 'an item written');
my $term0 = (sort { $b <=> $a } values %{ $v->{term} })[0];
cmp_ok($term0, '<', 100, "its term is small ($term0)");

stop_node($_) for @nodes;
my $g = $v->{group};
my %hs = (n1 => "N9HS1\nterm 5000\nvote 0\n", # later than the log: it wins
          n2 => "N9HS1\nterm 0\nvote 0\n");   # earlier than the log: the log wins
for my $id (sort keys %hs) {
    my $path = "$cl->{dir}/$id/groups/$g/HARDSTATE";
    ok(-d "$cl->{dir}/$id/groups/$g", "$id has the group's directory");
    open my $f, '>', $path or die "$path: $!";
    print $f $hs{$id};
    close $f;
}
start_member($_) for @nodes;
my $v2 = wait_until(30, sub { my $x = view(); $x->{leader} ? $x : undef });
ok($v2, "after the restart the partition has a leader ($v2->{leader})");
cmp_ok($v2->{term}{n1} // 0, '>=', 5000,
       "n1 went on from the old file's term 5000 (term $v2->{term}{n1})");
for my $id (sort keys %hs) {
    ok(!-e "$cl->{dir}/$id/groups/$g/HARDSTATE", "$id: the HARDSTATE file was deleted");
}
like(Nines::slurp($nodes[0]->{log}), qr/hard state \(term 5000, vote 0\) moved/,
     'n1 says it moved the hard state');
like(Nines::slurp($nodes[1]->{log}), qr/hard state \(term \d+, vote \d\) moved/,
     'n2 kept the later one of its log');
unlike(Nines::slurp($nodes[1]->{log}), qr/hard state \(term 0, vote 0\) moved/,
       '... not the file\'s older one');

# Once more: the term lives in the node log now.
stop_node($_) for @nodes;
start_member($_) for @nodes;
my $v3 = wait_until(30, sub { my $x = view(); $x->{leader} ? $x : undef });
cmp_ok($v3 && $v3->{term}{n1} // 0, '>=', 5000, 'after another restart without the file the term stays');
my $item;
wait_until(20, sub { ($st, $r) = ddb($nodes[2], 'GetItem', { TableName => 'mig',
    ConsistentRead => JSON::PP::true, Key => { pk => { S => 'k' } } });
    $item = $r->{Item} if $st == 200 && ref $r; $st == 200 });
is($item && $item->{v}{N}, 42, 'the item is there');
done_testing();
