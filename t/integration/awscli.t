#!/usr/bin/perl
# Every supported DynamoDB operation, driven by the real AWS CLI (Debian's
# awscli) against a real ninesd, and the CLI's parsed output checked.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
binmode(Test::More->builder->$_, ":utf8") for qw(output failure_output todo_output);
use Nines qw(start_node stop_node aws ddb json);

-x '/usr/bin/aws' or plan skip_all => '/usr/bin/aws (Debian awscli) is not installed';
my $n = start_node();
my $j = json();
my ($rc, $out, $err);

sub cli { my @a = @_; ($rc, $out, $err) = aws($n, ['dynamodb', @a]); return $out }
sub ok_cli { my ($name, @a) = @_; cli(@a); is($rc, 0, $name) or diag $err; return $out }
sub err_cli {
    my ($name, $type, @a) = @_;
    cli(@a);
    isnt($rc, 0, "$name fails");
    like($err, qr/\($type\)/, "$name: $type") or diag $err;
}

# ---- tables ----
my $d = ok_cli('create-table with a sort key and 8 partitions', 'create-table',
    '--table-name', 'music', '--attribute-definitions',
    'AttributeName=artist,AttributeType=S', 'AttributeName=year,AttributeType=N',
    '--key-schema', 'AttributeName=artist,KeyType=HASH', 'AttributeName=year,KeyType=RANGE',
    '--billing-mode', 'PAY_PER_REQUEST', '--tags', 'Key=nines:partitions,Value=8');
is($d->{TableDescription}{TableName}, 'music', 'table name echoed');
is($d->{TableDescription}{TableStatus}, 'ACTIVE', 'table is ACTIVE');
like($d->{TableDescription}{TableArn}, qr{^arn:aws:dynamodb:local:\d+:table/music$}, 'ARN');
ok_cli('create-table hash-only, provisioned', 'create-table', '--table-name', 'blobs',
    '--attribute-definitions', 'AttributeName=id,AttributeType=B',
    '--key-schema', 'AttributeName=id,KeyType=HASH',
    '--provisioned-throughput', 'ReadCapacityUnits=5,WriteCapacityUnits=5');
err_cli('create-table of an existing name', 'ResourceInUseException', 'create-table',
    '--table-name', 'music', '--attribute-definitions', 'AttributeName=a,AttributeType=S',
    '--key-schema', 'AttributeName=a,KeyType=HASH', '--billing-mode', 'PAY_PER_REQUEST');
err_cli('create-table with an undefined key attribute', 'ValidationException', 'create-table',
    '--table-name', 'bad1', '--attribute-definitions', 'AttributeName=a,AttributeType=S',
    '--key-schema', 'AttributeName=b,KeyType=HASH', '--billing-mode', 'PAY_PER_REQUEST');
$d = ok_cli('describe-table', 'describe-table', '--table-name', 'music');
is($d->{Table}{ItemCount}, 0, 'new table has no items');
is(scalar @{ $d->{Table}{KeySchema} }, 2, 'key schema has two elements');
is($d->{Table}{BillingModeSummary}{BillingMode}, 'PAY_PER_REQUEST', 'billing mode');
err_cli('describe-table of a missing table', 'ResourceNotFoundException', 'describe-table',
    '--table-name', 'nosuch');
$d = ok_cli('list-tables', 'list-tables');
is_deeply($d->{TableNames}, ['blobs', 'music'], 'both tables listed in order');
$d = ok_cli('list-tables paginated one per page', 'list-tables', '--page-size', '1');
is_deeply($d->{TableNames}, ['blobs', 'music'], 'pagination follows LastEvaluatedTableName');

# ---- every AttributeValue type round-trips exactly ----
my $item = {
    artist => { S => 'Nina Simone' }, year => { N => '1965' },
    title => { S => "I Put a Spell on You \x{2603} \"quoted\"" },
    big => { N => '12345678901234567890123456789012345678' },
    tiny => { N => '-0.000000000000000000000000000000000000000000001' },
    blob => { B => 'AAECAwQFBgcICQ==' }, live => { BOOL => JSON::PP::true },
    nothing => { NULL => JSON::PP::true },
    tracks => { L => [ { S => 'Feeling Good' }, { N => '3.5' }, { M => { x => { BOOL => JSON::PP::false } } } ] },
    meta => { M => { label => { S => 'Philips' }, nested => { M => { deep => { SS => ['a', 'b'] } } } } },
    genres => { SS => ['jazz', 'soul'] }, ratings => { NS => ['5', '4.5', '-1'] },
    bins => { BS => ['AQ==', 'Ag=='] },
};
ok_cli('put-item with every type', 'put-item', '--table-name', 'music', '--item', $j->encode($item));
$d = ok_cli('get-item, consistent read', 'get-item', '--table-name', 'music', '--consistent-read',
    '--key', '{"artist":{"S":"Nina Simone"},"year":{"N":"1965"}}');
my $got = $d->{Item};
is($got->{$_}{S} // $got->{$_}{N} // '', $item->{$_}{S} // $item->{$_}{N}, "$_ exact")
    for qw(title big tiny year);
is($got->{blob}{B}, 'AAECAwQFBgcICQ==', 'binary exact');
is_deeply($got->{tracks}, $item->{tracks}, 'list with nested map exact');
is_deeply($got->{meta}, $item->{meta}, 'nested maps exact');
is_deeply([sort @{ $got->{genres}{SS} }], ['jazz', 'soul'], 'string set');
is_deeply([sort @{ $got->{ratings}{NS} }], ['-1', '4.5', '5'], 'number set');
is_deeply([sort @{ $got->{bins}{BS} }], ['AQ==', 'Ag=='], 'binary set');
ok($got->{live}{BOOL} && $got->{nothing}{NULL}, 'BOOL and NULL');
ok_cli('put-item with a number in another form', 'put-item', '--table-name', 'music',
    '--item', '{"artist":{"S":"Nina Simone"},"year":{"N":"1966.000"},"n":{"N":"1.50E+2"}}');
$d = ok_cli('get-item by the canonical number', 'get-item', '--table-name', 'music',
    '--key', '{"artist":{"S":"Nina Simone"},"year":{"N":"1966"}}');
is($d->{Item}{n}{N}, '150', 'numbers come back canonical (1.50E+2 = 150)');
err_cli('a 39-digit number', 'ValidationException', 'put-item', '--table-name', 'music',
    '--item', '{"artist":{"S":"x"},"year":{"N":"1"},"n":{"N":"123456789012345678901234567890123456789"}}');
$d = ok_cli('get-item of a missing item', 'get-item', '--table-name', 'music',
    '--key', '{"artist":{"S":"nobody"},"year":{"N":"1"}}');
ok(!$d || !exists $d->{Item}, 'no Item for a missing key');
$d = ok_cli('get-item with a projection', 'get-item', '--table-name', 'music',
    '--key', '{"artist":{"S":"Nina Simone"},"year":{"N":"1965"}}',
    '--projection-expression', '#t, meta.label, tracks[0]',
    '--expression-attribute-names', '{"#t":"title"}');
is_deeply([sort keys %{ $d->{Item} }], ['meta', 'title', 'tracks'], 'projected attributes only');
is_deeply($d->{Item}{tracks}{L}, [{ S => 'Feeling Good' }], 'list element projected');

# ---- conditional writes and ReturnValues ----
err_cli('put-item if attribute_not_exists on an existing item', 'ConditionalCheckFailedException',
    'put-item', '--table-name', 'music', '--item', '{"artist":{"S":"Nina Simone"},"year":{"N":"1965"}}',
    '--condition-expression', 'attribute_not_exists(artist)');
$d = ok_cli('put-item ALL_OLD', 'put-item', '--table-name', 'music', '--return-values', 'ALL_OLD',
    '--item', '{"artist":{"S":"Nina Simone"},"year":{"N":"1966"},"n":{"N":"7"}}',
    '--condition-expression', 'n = :old AND (attribute_exists(artist) OR NOT attribute_exists(zzz))',
    '--expression-attribute-values', '{":old":{"N":"150"}}');
is($d->{Attributes}{n}{N}, '150', 'ALL_OLD returns the replaced item');
$d = ok_cli('update-item SET/REMOVE/ADD with ALL_NEW', 'update-item', '--table-name', 'music',
    '--key', '{"artist":{"S":"Nina Simone"},"year":{"N":"1966"}}',
    '--update-expression', 'SET plays = :z, #l = list_append(if_not_exists(#l, :e), :one) ADD n :inc REMOVE gone',
    '--expression-attribute-names', '{"#l":"log"}',
    '--expression-attribute-values', '{":z":{"N":"0"},":e":{"L":[]},":one":{"L":[{"S":"x"}]},":inc":{"N":"-2.5"}}',
    '--return-values', 'ALL_NEW');
is($d->{Attributes}{n}{N}, '4.5', 'ADD on a number (7 + -2.5)');
is($d->{Attributes}{plays}{N}, '0', 'SET');
is_deeply($d->{Attributes}{log}{L}, [{ S => 'x' }], 'list_append with if_not_exists');
$d = ok_cli('update-item UPDATED_OLD', 'update-item', '--table-name', 'music',
    '--key', '{"artist":{"S":"Nina Simone"},"year":{"N":"1966"}}',
    '--update-expression', 'SET plays = plays + :one',
    '--condition-expression', 'plays < :ten', '--expression-attribute-values',
    '{":one":{"N":"1"},":ten":{"N":"10"}}', '--return-values', 'UPDATED_OLD');
is_deeply($d->{Attributes}, { plays => { N => '0' } }, 'UPDATED_OLD has only the changed attribute');
err_cli('update-item of a key attribute', 'ValidationException', 'update-item',
    '--table-name', 'music', '--key', '{"artist":{"S":"Nina Simone"},"year":{"N":"1966"}}',
    '--update-expression', 'SET artist = :a', '--expression-attribute-values', '{":a":{"S":"x"}}');
err_cli('update-item with an unused value', 'ValidationException', 'update-item',
    '--table-name', 'music', '--key', '{"artist":{"S":"Nina Simone"},"year":{"N":"1966"}}',
    '--update-expression', 'SET a = :a', '--expression-attribute-values', '{":a":{"S":"x"},":b":{"S":"y"}}');
err_cli('update-item with a syntax error', 'ValidationException', 'update-item',
    '--table-name', 'music', '--key', '{"artist":{"S":"Nina Simone"},"year":{"N":"1966"}}',
    '--update-expression', 'SET = :a', '--expression-attribute-values', '{":a":{"S":"x"}}');
ok_cli('update-item creates a missing item', 'update-item', '--table-name', 'music',
    '--key', '{"artist":{"S":"New"},"year":{"N":"2000"}}', '--update-expression', 'ADD c :one',
    '--expression-attribute-values', '{":one":{"N":"1"}}');
$d = ok_cli('get the created item', 'get-item', '--table-name', 'music',
    '--key', '{"artist":{"S":"New"},"year":{"N":"2000"}}');
is($d->{Item}{c}{N}, '1', 'ADD created the attribute');
err_cli('delete-item with a false condition', 'ConditionalCheckFailedException', 'delete-item',
    '--table-name', 'music', '--key', '{"artist":{"S":"New"},"year":{"N":"2000"}}',
    '--condition-expression', 'c > :x', '--expression-attribute-values', '{":x":{"N":"5"}}');
$d = ok_cli('delete-item ALL_OLD', 'delete-item', '--table-name', 'music',
    '--key', '{"artist":{"S":"New"},"year":{"N":"2000"}}', '--return-values', 'ALL_OLD');
is($d->{Attributes}{c}{N}, '1', 'delete returned the old item');
$d = ok_cli('get the deleted item', 'get-item', '--table-name', 'music',
    '--key', '{"artist":{"S":"New"},"year":{"N":"2000"}}');
ok(!$d || !exists $d->{Item}, 'item is gone');

# ---- batch writes, query, scan ----
my @reqs;
for my $y (1950 .. 1974) {
    push @reqs, { PutRequest => { Item => { artist => { S => 'Miles' }, year => { N => "$y" },
                  kind => { S => $y % 2 ? 'odd' : 'even' }, title => { S => "album $y" } } } };
}
$d = ok_cli('batch-write-item of 25 puts', 'batch-write-item', '--request-items',
    $j->encode({ music => \@reqs }));
is_deeply($d->{UnprocessedItems}, {}, 'nothing unprocessed');
err_cli('batch-write-item of 26', 'ValidationException', 'batch-write-item', '--request-items',
    $j->encode({ music => [ @reqs, { DeleteRequest => { Key => { artist => { S => 'a' }, year => { N => '1' } } } } ] }));
$d = ok_cli('batch-get-item', 'batch-get-item', '--request-items', $j->encode({
    music => { Keys => [ map { { artist => { S => 'Miles' }, year => { N => "$_" } } } 1950, 1960, 1999 ],
               ProjectionExpression => 'title' } }));
is_deeply([sort map { $_->{title}{S} } @{ $d->{Responses}{music} }], ['album 1950', 'album 1960'],
    'batch-get returns the two existing items, projected');
$d = ok_cli('query all of a hash key', 'query', '--table-name', 'music',
    '--key-condition-expression', 'artist = :a', '--expression-attribute-values', '{":a":{"S":"Miles"}}');
is($d->{Count}, 25, 'query counts 25 items');
is_deeply([map { $_->{year}{N} } @{ $d->{Items} }], [1950 .. 1974], 'ascending by the sort key');
my %q = ('year < :x' => [1950 .. 1959], 'year <= :x' => [1950 .. 1960], 'year > :x' => [1961 .. 1974],
         'year >= :x' => [1960 .. 1974], 'year = :x' => [1960],
         'year BETWEEN :x AND :y' => [1960 .. 1965]);
for my $c (sort keys %q) {
    my $vals = $c =~ /:y/ ? '{":a":{"S":"Miles"},":x":{"N":"1960"},":y":{"N":"1965"}}'
                          : '{":a":{"S":"Miles"},":x":{"N":"1960"}}';
    $d = ok_cli("query $c", 'query', '--table-name', 'music',
        '--key-condition-expression', "artist = :a AND $c", '--expression-attribute-values', $vals);
    is_deeply([map { $_->{year}{N} } @{ $d->{Items} }], $q{$c}, "query $c: the right items");
}
$d = ok_cli('query descending with a small page size', 'query', '--table-name', 'music',
    '--key-condition-expression', 'artist = :a AND #y >= :x', '--expression-attribute-names', '{"#y":"year"}',
    '--expression-attribute-values', '{":a":{"S":"Miles"},":x":{"N":"1970"}}', '--no-scan-index-forward',
    '--page-size', '2');
is_deeply([map { $_->{year}{N} } @{ $d->{Items} }], [reverse 1970 .. 1974],
    'descending, across pages (LastEvaluatedKey followed by the CLI)');
$d = ok_cli('query with a filter', 'query', '--table-name', 'music',
    '--key-condition-expression', 'artist = :a', '--filter-expression', 'kind = :k',
    '--expression-attribute-values', '{":a":{"S":"Miles"},":k":{"S":"odd"}}');
is($d->{Count}, 12, 'filter keeps the 12 odd years');
is($d->{ScannedCount}, 25, 'scanned count counts before the filter');
$d = ok_cli('query --max-items 3 (Limit) then resume', 'query', '--table-name', 'music',
    '--key-condition-expression', 'artist = :a', '--expression-attribute-values', '{":a":{"S":"Miles"}}',
    '--max-items', '3');
is(scalar @{ $d->{Items} }, 3, 'three items');
ok($d->{NextToken}, 'a NextToken to resume');
my $tok = $d->{NextToken};
$d = ok_cli('query resumed', 'query', '--table-name', 'music',
    '--key-condition-expression', 'artist = :a', '--expression-attribute-values', '{":a":{"S":"Miles"}}',
    '--starting-token', $tok, '--max-items', '3');
is_deeply([map { $_->{year}{N} } @{ $d->{Items} }], [1953 .. 1955], 'resumes after the third item');
ok_cli('put-item with a string sort key table', 'create-table', '--table-name', 'words',
    '--attribute-definitions', 'AttributeName=p,AttributeType=S', 'AttributeName=w,AttributeType=S',
    '--key-schema', 'AttributeName=p,KeyType=HASH', 'AttributeName=w,KeyType=RANGE',
    '--billing-mode', 'PAY_PER_REQUEST');
ok_cli("put $_", 'put-item', '--table-name', 'words', '--item', qq({"p":{"S":"x"},"w":{"S":"$_"}}))
    for qw(apple apricot banana app b);
$d = ok_cli('query begins_with', 'query', '--table-name', 'words',
    '--key-condition-expression', 'p = :p AND begins_with(w, :b)',
    '--expression-attribute-values', '{":p":{"S":"x"},":b":{"S":"ap"}}');
is_deeply([map { $_->{w}{S} } @{ $d->{Items} }], [qw(app apple apricot)], 'begins_with in order');
$d = ok_cli('scan with page size 4', 'scan', '--table-name', 'music', '--page-size', '4');
is($d->{Count}, 27, 'scan sees all 27 items across 8 partitions and pages');
my %seen;
$seen{"$_->{artist}{S}/$_->{year}{N}"}++ for @{ $d->{Items} };
is(scalar(keys %seen), 27, 'no item twice');
$d = ok_cli('scan with filter and count', 'scan', '--table-name', 'music', '--select', 'COUNT',
    '--filter-expression', 'begins_with(title, :t)', '--expression-attribute-values', '{":t":{"S":"album 196"}}');
is($d->{Count}, 10, 'ten albums from the 1960s');
my $segs = 0;
for my $s (0 .. 2) {
    $d = ok_cli("parallel scan segment $s", 'scan', '--table-name', 'music', '--segment', $s,
        '--total-segments', '3');
    $segs += $d->{Count};
}
is($segs, 27, 'segments partition the table');

# ---- errors ----
err_cli('put-item without the sort key', 'ValidationException', 'put-item', '--table-name', 'music',
    '--item', '{"artist":{"S":"a"}}');
err_cli('put-item with a wrongly typed key', 'ValidationException', 'put-item', '--table-name', 'music',
    '--item', '{"artist":{"N":"1"},"year":{"N":"1"}}');
err_cli('put-item with an empty string key', 'ValidationException', 'put-item', '--table-name', 'music',
    '--item', '{"artist":{"S":""},"year":{"N":"1"}}');
err_cli('get-item with an extra key attribute', 'ValidationException', 'get-item',
    '--table-name', 'music', '--key', '{"artist":{"S":"a"},"year":{"N":"1"},"x":{"S":"y"}}');
err_cli('put-item to a missing table', 'ResourceNotFoundException', 'put-item', '--table-name', 'nosuch',
    '--item', '{"a":{"S":"b"}}');
err_cli('query with a condition on a non-key attribute', 'ValidationException', 'query',
    '--table-name', 'music', '--key-condition-expression', 'title = :a',
    '--expression-attribute-values', '{":a":{"S":"x"}}');
my $big = 'x' x (400 * 1024);
my ($st, $body) = ddb($n, 'PutItem', { TableName => 'music', Item => { artist => { S => 'a' }, year => { N => '1' }, v => { S => $big } } });
is($st, 400, 'an item over 400 KB is refused');
like($body->{__type}, qr/#ValidationException$/, '... with ValidationException');

# ---- delete ----
$d = ok_cli('delete-table', 'delete-table', '--table-name', 'words');
is($d->{TableDescription}{TableStatus}, 'DELETING', 'delete returns DELETING');
err_cli('the deleted table is gone', 'ResourceNotFoundException', 'describe-table', '--table-name', 'words');
ok_cli('a new table under the same name starts empty', 'create-table', '--table-name', 'words',
    '--attribute-definitions', 'AttributeName=p,AttributeType=S', '--key-schema', 'AttributeName=p,KeyType=HASH',
    '--billing-mode', 'PAY_PER_REQUEST');
$d = ok_cli('scan it', 'scan', '--table-name', 'words');
is($d->{Count}, 0, 'no items from the old table');

# ---- restart keeps everything ----
is(stop_node($n), 0, 'ninesd stops cleanly on SIGTERM');
$n = start_node(dir => $n->{dir}, port => $n->{port}, cluster => $n->{cluster});
$d = ok_cli('query after restart', 'query', '--table-name', 'music',
    '--key-condition-expression', 'artist = :a', '--expression-attribute-values', '{":a":{"S":"Miles"}}');
is($d->{Count}, 25, 'all items are there after a restart');
$d = ok_cli('describe after restart', 'describe-table', '--table-name', 'music');
is($d->{Table}{ItemCount}, 27, 'ItemCount counts every item');
is(stop_node($n), 0, 'clean stop');
done_testing();
