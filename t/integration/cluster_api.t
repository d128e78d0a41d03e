# The DynamoDB API on a six-node, three-AZ cluster: every node answers every
# operation (forwarding to partition leaders, paging a Scan across nodes,
# splitting batches), through the real AWS CLI.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use JSON::PP;
use HTTP::Tiny;
use Nines qw(new_cluster start_member stop_node kill_node aws ddb wait_until cluster_status);

my $cl = new_cluster(nodes => 6, azs => 3);
my @nodes = @{ $cl->{nodes} };
start_member($_) for @nodes;
END { kill_node($_) for grep { $_->{pid} } @nodes }

my ($rc, $out, $err);
wait_until(15, sub {
    ($rc, $out, $err) = aws($nodes[4], ['dynamodb', 'create-table', '--table-name', 'routed',
        '--attribute-definitions', 'AttributeName=pk,AttributeType=S', 'AttributeName=sk,AttributeType=N',
        '--key-schema', 'AttributeName=pk,KeyType=HASH', 'AttributeName=sk,KeyType=RANGE',
        '--billing-mode', 'PAY_PER_REQUEST', '--tags', 'Key=nines:partitions,Value=6']);
    $rc == 0 });
is($rc, 0, 'create-table through n5') or diag $err;
for my $m (@nodes) {
    my ($r, $d) = aws($m, ['dynamodb', 'describe-table', '--table-name', 'routed']);
    is($d->{Table}{TableStatus}, 'ACTIVE', "$m->{id} knows the table") if $r == 0;
    ok(0, "$m->{id} knows the table") if $r != 0;
}
# Every partition elects a leader (status of all nodes).
my $led = wait_until(15, sub {
    my (%leader, %seen);
    for my $m (@nodes) {
        my $s = cluster_status($m) or next;
        for my $g (@{ $s->{groups} }) {
            next unless ($g->{table} // '') eq 'routed';
            $seen{ $g->{group} } = 1;
            $leader{ $g->{group} } = 1 if $g->{role} eq 'leader';
        }
    }
    keys %seen == 6 && keys %leader == 6 });
ok($led, 'all six partitions have a leader');

# {"Groups": false}: the same node's counts without the list; the counts
# agree with the full list asked right after (nothing moves: no load).
{
    my $m = $nodes[0];
    my $full = cluster_status($m);
    my $sum = cluster_status($m, body => '{"Groups":false}');
    is_deeply($sum && $sum->{groups}, [], 'Status {"Groups": false}: no group list');
    my %want = (groups => scalar @{ $full->{groups} },
                leading => scalar(grep { $_->{role} eq 'leader' } @{ $full->{groups} }),
                asleep => scalar(grep { $_->{quiescent} } @{ $full->{groups} }),
                failed => scalar(grep { $_->{failed} } @{ $full->{groups} }));
    is_deeply($sum && $sum->{summary}, \%want, 'its summary counts what the full status lists')
        or diag explain [$sum && $sum->{summary}, \%want];
    is_deeply($full->{summary}, \%want, 'the full status carries the same summary');
    my ($st, $r) = Nines::signed_http('POST', "$m->{url}/", 'NinesAdmin.Status', '{"Groups":"no"}',
                                      auth => $m->{auth});
    is($st, 400, 'Status {"Groups": "no"}: refused');
    like(ref $r ? ($r->{__type} // '') : '', qr/ValidationException/, '... ValidationException');
}

# 60 items in batches of 20 (BatchWriteItem splits per item), through three nodes.
my @items = map { { pk => { S => 'h' . ($_ % 15) }, sk => { N => "$_" }, v => { S => "v$_" } } } 0 .. 59;
for my $b (0 .. 2) {
    my $req = { routed => [map { { PutRequest => { Item => $_ } } } @items[$b * 20 .. $b * 20 + 19]] };
    my ($r, $res, $e) = aws($nodes[$b], ['dynamodb', 'batch-write-item', '--request-items', encode_json($req)]);
    is($r, 0, "batch-write-item of 20 through $nodes[$b]{id}") or diag $e;
    is_deeply($res->{UnprocessedItems} // {}, {}, '... nothing unprocessed');
}
# Scan through every node, in pages of 7: all 60, each once.
for my $m (@nodes) {
    my ($r, $res, $e) = aws($m, ['dynamodb', 'scan', '--table-name', 'routed', '--page-size', '7']);
    my %got = map { ($_->{pk}{S} . '/' . $_->{sk}{N}) => 1 } @{ $res->{Items} // [] };
    is(scalar(keys %got), 60, "scan through $m->{id} (pages of 7) returns the 60 items once each") or diag $e;
    is($res->{Count}, 60, '... Count 60');
}
my ($r1, $cnt) = aws($nodes[5], ['dynamodb', 'scan', '--table-name', 'routed', '--consistent-read',
                                 '--select', 'COUNT']);
is($cnt->{Count}, 60, 'a consistent Scan with Select COUNT through n6 counts 60');
# Query and consistent GetItem through every node.
for my $m (@nodes) {
    my ($r, $res) = aws($m, ['dynamodb', 'query', '--table-name', 'routed', '--consistent-read',
        '--key-condition-expression', 'pk = :p', '--expression-attribute-values', '{":p":{"S":"h3"}}']);
    is_deeply([map { $_->{sk}{N} } @{ $res->{Items} // [] }], [3, 18, 33, 48], "query through $m->{id}");
    my ($g, $gi) = aws($m, ['dynamodb', 'get-item', '--table-name', 'routed', '--consistent-read',
                            '--key', '{"pk":{"S":"h7"},"sk":{"N":"22"}}']);
    is($gi->{Item}{v}{S}, 'v22', "consistent get-item through $m->{id}");
}
# BatchGetItem across partitions.
my $keys = { routed => { Keys => [map { { pk => { S => 'h' . ($_ % 15) }, sk => { N => "$_" } } } 0, 11, 25, 37, 59],
                         ConsistentRead => JSON::PP::true } };
my ($bg, $bgr, $bge) = aws($nodes[2], ['dynamodb', 'batch-get-item', '--request-items', encode_json($keys)]);
is_deeply([sort { $a <=> $b } map { $_->{sk}{N} } @{ $bgr->{Responses}{routed} // [] }], [0, 11, 25, 37, 59],
          'batch-get-item of 5 keys through n3') or diag $bge;
# Conditional writes are evaluated by the leader.
my ($c1) = aws($nodes[3], ['dynamodb', 'put-item', '--table-name', 'routed', '--item',
    '{"pk":{"S":"h1"},"sk":{"N":"1"},"v":{"S":"new"}}', '--condition-expression', 'attribute_not_exists(pk)']);
isnt($c1, 0, 'a conditional put on an existing item fails through n4');
my ($c2, undef, $ce) = aws($nodes[3], ['dynamodb', 'update-item', '--table-name', 'routed', '--key',
    '{"pk":{"S":"h1"},"sk":{"N":"1"}}', '--update-expression', 'SET v = :n', '--condition-expression', 'v = :o',
    '--expression-attribute-values', '{":n":{"S":"upd"},":o":{"S":"v1"}}']);
is($c2, 0, 'a conditional update that holds succeeds through n4') or diag $ce;
# Server-side counts, for the canaries' alarms: requests answered to clients.
my $metrics = HTTP::Tiny->new->get("$nodes[0]{url}/metrics")->{content} // '';
like($metrics, qr/^nines_api_requests_total\{table="routed",op="Scan",outcome="ok"\} \d+$/m,
     'GET /metrics counts the Scans n1 answered (one per page)');
like($metrics, qr/^nines_api_requests_total\{table="routed",op="GetItem",outcome="ok"\} 1$/m,
     '... and its GetItem');
unlike($metrics, qr/op="PutItem"/, '... but not the sub-requests of batches it forwarded');
# DeleteTable through a node; gone everywhere.
($rc, $out, $err) = aws($nodes[1], ['dynamodb', 'delete-table', '--table-name', 'routed']);
is($rc, 0, 'delete-table through n2') or diag $err;
my $gone = wait_until(5, sub {
    for my $m (@nodes) { my ($r) = aws($m, ['dynamodb', 'describe-table', '--table-name', 'routed']); return 0 if $r == 0 }
    1 });
ok($gone, 'every node forgets the table');
for my $m (@nodes) { is(stop_node($m), 0, "$m->{id} stops cleanly") }
done_testing();
