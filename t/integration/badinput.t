#!/usr/bin/perl
# Bad input gets DynamoDB's error, loses nothing, and the node keeps serving.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Socket::INET;
use Nines qw(start_node stop_node ddb http json);

my $n = start_node();
my $u = $n->{url};
my ($st, $b, $h);

sub err_is {
    my ($name, $want_status, $want_type) = @_;
    is($st, $want_status, "$name: HTTP $want_status");
    my $type = ref $b eq 'HASH' ? ($b->{__type} // '') : '';
    like($type, qr/#\Q$want_type\E$/, "$name: $want_type") or diag explain $b;
    ok(ref $b eq 'HASH' && defined $b->{message}, "$name: has a message");
    ok($h && $h->{'x-amzn-requestid'}, "$name: has x-amzn-RequestId");
}

($st, $b) = ddb($n, 'CreateTable', { TableName => 'keep', BillingMode => 'PAY_PER_REQUEST',
    AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }, { AttributeName => 'sk', AttributeType => 'N' }],
    KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' }, { AttributeName => 'sk', KeyType => 'RANGE' }] });
is($st, 200, 'table created');
($st) = ddb($n, 'PutItem', { TableName => 'keep', Item => { pk => { S => 'precious' }, sk => { N => '1' }, v => { S => 'data' } } });
is($st, 200, 'an item to keep');

($st, $b, $h) = http($u, 'PutItem', '{"TableName": "keep", "Item": {');
err_is('truncated JSON', 400, 'SerializationException');
($st, $b, $h) = http($u, 'PutItem', '[1,2,3]');
err_is('a JSON array', 400, 'SerializationException');
($st, $b, $h) = http($u, 'PutItem', "\xff\xfe garbage \x00");
err_is('binary garbage', 400, 'SerializationException');
($st, $b, $h) = http($u, 'PutItem', ('[' x 100000));
err_is('100000 nested arrays', 400, 'SerializationException');
($st, $b, $h) = http($u, 'ListTables', '{}', 'Content-Type' => 'text/plain');
err_is('wrong Content-Type', 400, 'SerializationException');
($st, $b, $h) = http($u, undef, '{}');
err_is('no X-Amz-Target', 400, 'UnknownOperationException');
($st, $b, $h) = http($u, 'Frobnicate', '{}');
err_is('unknown operation', 400, 'UnknownOperationException');
($st, $b, $h) = http($u, undef, '{}', 'X-Amz-Target' => 'DynamoDBStreams_20120810.ListStreams');
err_is('another service\'s target', 400, 'UnknownOperationException');
($st, $b, $h) = http($u, 'PutItem', '{"TableName":"keep","Item":' . ('x' x (17 * 1024 * 1024)) . '}');
err_is('a 17 MiB body', 413, 'RequestEntityTooLarge');

my %cases = (
    'missing sort key' => [PutItem => { TableName => 'keep', Item => { pk => { S => 'a' } } }, 'ValidationException'],
    'wrongly typed key' => [PutItem => { TableName => 'keep', Item => { pk => { N => '1' }, sk => { N => '1' } } }, 'ValidationException'],
    'empty string key' => [PutItem => { TableName => 'keep', Item => { pk => { S => '' }, sk => { N => '1' } } }, 'ValidationException'],
    'a number that is not one' => [PutItem => { TableName => 'keep', Item => { pk => { S => 'a' }, sk => { N => 'one' } } }, 'ValidationException'],
    '39 significant digits' => [PutItem => { TableName => 'keep', Item => { pk => { S => 'a' }, sk => { N => '1' x 39 } } }, 'ValidationException'],
    'an unknown type' => [PutItem => { TableName => 'keep', Item => { pk => { S => 'a' }, sk => { N => '1' }, x => { Q => 'y' } } }, 'ValidationException'],
    'S holding a number' => [PutItem => { TableName => 'keep', Item => { pk => { S => 5 }, sk => { N => '1' } } }, 'SerializationException'],
    'bad base64' => [PutItem => { TableName => 'keep', Item => { pk => { S => 'a' }, sk => { N => '1' }, b => { B => '!!!' } } }, 'SerializationException'],
    'duplicate in a set' => [PutItem => { TableName => 'keep', Item => { pk => { S => 'a' }, sk => { N => '1' }, s => { SS => ['x', 'x'] } } }, 'ValidationException'],
    'empty set' => [PutItem => { TableName => 'keep', Item => { pk => { S => 'a' }, sk => { N => '1' }, s => { NS => [] } } }, 'ValidationException'],
    'syntax error in a condition' => [PutItem => { TableName => 'keep', Item => { pk => { S => 'a' }, sk => { N => '1' } }, ConditionExpression => 'a = = b' }, 'ValidationException'],
    'undefined value in a condition' => [PutItem => { TableName => 'keep', Item => { pk => { S => 'a' }, sk => { N => '1' } }, ConditionExpression => 'a = :nope' }, 'ValidationException'],
    'an error message quoting a split UTF-8 character' => [PutItem => { TableName => 'keep', Item => { pk => { S => 'a' }, sk => { N => '1' } }, ConditionExpression => "attribute_not_exists(pk( OR (#n BETWEEN :a AND \x{19d}\x{7fa}ND size(m) > :a)" }, 'ValidationException'],
    'hostile expression nesting' => [PutItem => { TableName => 'keep', Item => { pk => { S => 'a' }, sk => { N => '1' } }, ConditionExpression => ('(' x 3000) . 'a = b' . (')' x 3000) }, 'ValidationException'],
    'unknown table' => [GetItem => { TableName => 'nosuch', Key => { pk => { S => 'a' } } }, 'ResourceNotFoundException'],
    'bad table name' => [GetItem => { TableName => 'x!', Key => { pk => { S => 'a' } } }, 'ValidationException'],
    'GetItem key with extra attribute' => [GetItem => { TableName => 'keep', Key => { pk => { S => 'a' }, sk => { N => '1' }, z => { S => 'q' } } }, 'ValidationException'],
    'GetItem without Key' => [GetItem => { TableName => 'keep' }, 'ValidationException'],
    'ReturnValues ALL_NEW on PutItem' => [PutItem => { TableName => 'keep', Item => { pk => { S => 'a' }, sk => { N => '1' } }, ReturnValues => 'ALL_NEW' }, 'ValidationException'],
    'Query without a key condition' => [Query => { TableName => 'keep' }, 'ValidationException'],
    'Query on a non-key attribute' => [Query => { TableName => 'keep', KeyConditionExpression => 'v = :v', ExpressionAttributeValues => { ':v' => { S => 'x' } } }, 'ValidationException'],
    'a key over LMDB\'s limit (PutItem)' => [PutItem => { TableName => 'keep', Item => { pk => { S => 'p' x 520 }, sk => { N => '1' }, v => { S => 'x' } } }, 'ValidationException'],
    'a key over LMDB\'s limit (UpdateItem)' => [UpdateItem => { TableName => 'keep', Key => { pk => { S => 'p' x 600 }, sk => { N => '1' } }, UpdateExpression => 'SET v = :v', ExpressionAttributeValues => { ':v' => { S => 'x' } } }, 'ValidationException'],
    'Scan with a filter and an unused value' => [Scan => { TableName => 'keep', FilterExpression => 'a = :a', ProjectionExpression => 'a', ExpressionAttributeValues => { ':a' => { S => 'x' }, ':unused' => { S => 'y' } } }, 'ValidationException'],
    'Query with a filter and an unused name' => [Query => { TableName => 'keep', KeyConditionExpression => 'pk = :p', FilterExpression => 'a = :p', ExpressionAttributeValues => { ':p' => { S => 'x' } }, ExpressionAttributeNames => { '#u' => 'u' } }, 'ValidationException'],
    'Scan with a bad filter' => [Scan => { TableName => 'keep', FilterExpression => 'a = = b' }, 'ValidationException'],
    'Query with a bad projection' => [Query => { TableName => 'keep', KeyConditionExpression => 'pk = :p', ExpressionAttributeValues => { ':p' => { S => 'x' } }, ProjectionExpression => 'a,,b' }, 'ValidationException'],
    'GetItem with a bad projection' => [GetItem => { TableName => 'keep', Key => { pk => { S => 'a' }, sk => { N => '1' } }, ProjectionExpression => '#undefined' }, 'ValidationException'],
    'Scan with a bad segment' => [Scan => { TableName => 'keep', Segment => 5, TotalSegments => 2 }, 'ValidationException'],
    'BatchWriteItem with duplicates' => [BatchWriteItem => { RequestItems => { keep => [ map { { PutRequest => { Item => { pk => { S => 'd' }, sk => { N => '1' } } } } } 1 .. 2 ] } }, 'ValidationException'],
    'legacy Expected parameter' => [PutItem => { TableName => 'keep', Item => { pk => { S => 'a' }, sk => { N => '1' } }, Expected => {} }, 'ValidationException'],
    'CreateTable with a bad key type' => [CreateTable => { TableName => 'bad', BillingMode => 'PAY_PER_REQUEST', AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'X' }], KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' }] }, 'ValidationException'],
    'CreateTable with 1025 partitions (the most is 1024)' => [CreateTable => { TableName => 'bad', BillingMode => 'PAY_PER_REQUEST', AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }], KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' }], NinesPartitions => 1025 }, 'ValidationException'],
);
for my $name (sort keys %cases) {
    my ($op, $req, $type) = @{ $cases{$name} };
    ($st, $b, $h) = http($u, $op, json()->encode($req));
    err_is($name, 400, $type);
}

# Junk that is not HTTP at all gets no success, and a connection holding junk
# (left open) does not stop the node from serving others.
my @held;
for my $junk ("\x00\x01\x02 NOT HTTP\r\n\r\n", "GARBAGE\r\n\r\n", "POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n") {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $n->{port}) or die;
    print $s $junk;
    my $got = '';
    eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm 2;
        sysread($s, $got, 4096);
        alarm 0;
    };
    unlike($got, qr/^HTTP\/1\.1 200/, 'junk on a socket gets no success');
    push @held, $s;
}

# Clients that send a write and hang up before the answer: the write
# completes on the applier while its connection is gone.
for my $i (1 .. 200) {
    my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $n->{port}) or die;
    my $body = json()->encode({ TableName => 'keep', Item => { pk => { S => "gone$i" }, sk => { N => '1' } } });
    print $c "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-amz-json-1.0\r\n"
           . "X-Amz-Target: DynamoDB_20120810.PutItem\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
    close $c;
}
my ($gst, $gone) = ddb($n, 'Scan', { TableName => 'keep', Select => 'COUNT', FilterExpression => 'begins_with(pk, :g)',
                                     ExpressionAttributeValues => { ':g' => { S => 'gone' } } });
is($gst, 200, 'still serving after 200 clients hung up on their writes');
cmp_ok($gone->{Count}, '<=', 200, 'hung-up writes are each applied at most once');
ddb($n, 'BatchWriteItem', { RequestItems => { keep => [ map { { DeleteRequest => { Key => { pk => { S => "gone$_" }, sk => { N => '1' } } } } } 1 .. 25 ] } });
for my $i (26 .. 200) { ddb($n, 'DeleteItem', { TableName => 'keep', Key => { pk => { S => "gone$i" }, sk => { N => '1' } } }) }

my ($kst) = ddb($n, 'PutItem', { TableName => 'keep', Item => { pk => { S => 'q' x 200 }, sk => { N => '2' } } });
is($kst, 200, 'a 200-byte partition key is fine');
($kst) = ddb($n, 'PutItem', { TableName => 'keep', Item => { pk => { S => 'q' x 200 }, sk => { N => '2' } } });
ddb($n, 'DeleteItem', { TableName => 'keep', Key => { pk => { S => 'q' x 200 }, sk => { N => '2' } } });

# The node is still serving and lost nothing.
($st, $b) = http($u, 'GetItem', json()->encode({ TableName => 'keep', ConsistentRead => JSON::PP::true, Key => { pk => { S => 'precious' }, sk => { N => '1' } } }));
is($st, 200, 'still serving after all of that');
is($b->{Item}{v}{S}, 'data', 'the item written before is intact');
($st, $b) = http($u, 'Scan', json()->encode({ TableName => 'keep' }));
is($b->{Count}, 1, 'and nothing else was written');
close $_ for @held;
is(stop_node($n), 0, 'clean stop');
done_testing();
