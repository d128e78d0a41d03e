#!/usr/bin/perl
# SigV4 against the cluster file's credentials, with the real AWS CLI as client;
# admin calls and /metrics need a signature too, GET / stays open
# (docs/security.md); without credentials everything answers unsigned.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Nines qw(start_node stop_node aws http json signed_http cluster_status bin new_cluster
            start_member kill_node wait_until);
use HTTP::Tiny;

-x '/usr/bin/aws' or plan skip_all => '/usr/bin/aws (Debian awscli) is not installed';
my ($AK, $SK) = ('AKIDNINESTEST', 'nines/secret+KEY/for-tests');
my $n = start_node(auth => [$AK, $SK]);

my ($rc, $out, $err) = aws($n, ['dynamodb', 'create-table', '--table-name', 'secure',
    '--attribute-definitions', 'AttributeName=pk,AttributeType=S', '--key-schema',
    'AttributeName=pk,KeyType=HASH', '--billing-mode', 'PAY_PER_REQUEST'], akid => $AK, secret => $SK);
is($rc, 0, 'the right credentials create a table') or diag $err;
($rc, $out, $err) = aws($n, ['dynamodb', 'put-item', '--table-name', 'secure', '--item',
    '{"pk":{"S":"a"},"v":{"S":"x y  z"}}'], akid => $AK, secret => $SK);
is($rc, 0, 'and write') or diag $err;
($rc, $out, $err) = aws($n, ['dynamodb', 'get-item', '--table-name', 'secure', '--key', '{"pk":{"S":"a"}}'],
    akid => $AK, secret => $SK);
is($out->{Item}{v}{S}, 'x y  z', 'and read');

($rc, $out, $err) = aws($n, ['dynamodb', 'list-tables'], akid => $AK, secret => 'wrong-secret');
isnt($rc, 0, 'a wrong secret is refused');
like($err, qr/InvalidSignatureException/, '... with InvalidSignatureException');
($rc, $out, $err) = aws($n, ['dynamodb', 'list-tables'], akid => 'AKIDUNKNOWN', secret => $SK);
isnt($rc, 0, 'an unknown access key is refused');
like($err, qr/UnrecognizedClientException/, '... with UnrecognizedClientException');

my ($st, $b) = http($n->{url}, 'ListTables', '{}');
is($st, 400, 'an unsigned request is refused');
like($b->{__type}, qr/#MissingAuthenticationTokenException$/, '... with MissingAuthenticationTokenException');
($st, $b) = http($n->{url}, 'ListTables', '{}', Authorization => 'AWS4-HMAC-SHA256 garbage');
is($st, 400, 'a malformed Authorization header is refused');
like($b->{__type}, qr/#(IncompleteSignatureException|InvalidSignatureException)$/, '... with a signature error');
($st, $b) = http($n->{url}, 'ListTables', '{}',
    Authorization => "AWS4-HMAC-SHA256 Credential=$AK/20150830/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date, Signature=" . ('0' x 64),
    'X-Amz-Date' => '20150830T123600Z');
is($st, 400, 'a signature from 2015 is refused');
like($b->{message} // '', qr/expired/i, '... as expired');

# Admin calls and /metrics: signed or refused, with the errors of the
# DynamoDB operations.
my $url = $n->{url};
($st, $b) = signed_http('POST', "$url/", 'NinesAdmin.Status', '{}');
is($st, 400, 'an unsigned NinesAdmin.Status is refused');
like($b->{__type} // '', qr/#MissingAuthenticationTokenException$/,
     '... with MissingAuthenticationTokenException');
($st, $b) = signed_http('POST', "$url/", 'NinesAdmin.Catalog', '{}');
is($st, 400, 'an unsigned NinesAdmin.Catalog is refused');
unlike(json()->encode($b), qr/secure/, '... and names no table');
($st, $b) = signed_http('POST', "$url/", 'NinesAdmin.Status', '{}', auth => [$AK, 'wrong-secret']);
is($st, 400, 'a NinesAdmin.Status signed with a wrong secret is refused');
like($b->{__type} // '', qr/#InvalidSignatureException$/, '... with InvalidSignatureException');
($st, $b) = signed_http('POST', "$url/", 'NinesAdmin.Status', '{}', auth => ['AKIDUNKNOWN', $SK]);
is($st, 400, 'one signed with an unknown access key is refused');
like($b->{__type} // '', qr/#UnrecognizedClientException$/, '... with UnrecognizedClientException');
($st, $b) = signed_http('POST', "$url/", 'NinesAdmin.Status', '{}', auth => [$AK, $SK]);
is($st, 200, 'a signed NinesAdmin.Status answers');
is(ref $b eq 'HASH' && $b->{node}, 'n1', '... with the status of n1');
ok(ref $b eq 'HASH' && (grep { ($_->{table} // '') eq 'secure' } @{ $b->{groups} // [] }),
   '... naming the table it holds');
ok(cluster_status($n), 'cluster_status signs with the node\'s credentials');
($st, $b) = signed_http('POST', "$url/", 'NinesAdmin.Catalog', '{}', auth => [$AK, $SK]);
is($st, 200, 'a signed NinesAdmin.Catalog answers');

($st, $b) = signed_http('GET', "$url/metrics", undef, '');
is($st, 400, 'an unsigned GET /metrics is refused');
like(ref $b eq 'HASH' ? $b->{__type} // '' : '', qr/#MissingAuthenticationTokenException$/,
     '... with MissingAuthenticationTokenException');
unlike(ref $b ? '' : $b, qr/nines_api_requests_total/, '... and no metrics');
($st, $b) = signed_http('GET', "$url/metrics", undef, '', auth => [$AK, 'wrong-secret']);
is($st, 400, 'a GET /metrics signed with a wrong secret is refused');
($st, $b) = signed_http('GET', "$url/metrics", undef, '', auth => [$AK, $SK]);
is($st, 200, 'a signed GET /metrics answers');
like(ref $b ? '' : $b, qr/^nines_api_requests_total\{table="secure",op="PutItem",outcome="ok"\} 1$/m,
     '... with the metrics text');
# The query is part of what is signed (MHD hands it over decoded).
($st, $b) = signed_http('GET', "$url/metrics?b=2&a=x%20y%2By&c", undef, '', auth => [$AK, $SK]);
is($st, 200, 'a signed GET /metrics with a query answers');
{
    my %h = Nines::sigv4_headers('GET', "$url/metrics?a=1", '', $AK, $SK);
    my $r = HTTP::Tiny->new(timeout => 5)->get("$url/metrics?a=2", { headers => \%h });
    is($r->{status}, 400, 'a signature for another query is refused');
}
# A signature covers the path: one made for GET / does not open /metrics.
{
    my %h = Nines::sigv4_headers('GET', "$url/", '', $AK, $SK);
    my $r = HTTP::Tiny->new(timeout => 5)->get("$url/metrics", { headers => \%h });
    is($r->{status}, 400, 'a signature for another path does not open /metrics');
}
my $r = HTTP::Tiny->new(timeout => 5)->get("$url/");
is($r->{status}, 200, 'GET / stays open');
is($r->{content}, "healthy: ninesd n1\n", '... and says only that the node answers');

# The nines CLI signs with the cluster file's credentials.
my $cli = `'${\bin('nines')}' cluster status --config '$n->{cluster}' --json 2>&1`;
my $cj = eval { json()->decode($cli) };
ok($cj && $cj->{nodes}[0]{up} && !$cj->{nodes}[0]{error}, 'nines cluster status signs its call')
    or diag $cli;
is(stop_node($n), 0, 'clean stop');

# Without credentials (auth: none) nothing is signed and everything answers.
my $o = start_node();
($st, $b) = signed_http('POST', "$o->{url}/", 'NinesAdmin.Status', '{}');
is($st, 200, 'auth: none: an unsigned NinesAdmin.Status answers');
($st, $b) = signed_http('GET', "$o->{url}/metrics", undef, '');
is($st, 200, 'auth: none: an unsigned GET /metrics answers');
like(ref $b ? '' : $b, qr/^# TYPE nines_api_requests_total counter/m, '... with the metrics text');
is(stop_node($o), 0, 'clean stop');

# Four nodes with credentials, three of them metadata members: the fourth
# learns of a table by a NinesAdmin.Catalog call to a member (signed,
# store/catalog.c) and forwards its writes to partition leaders (signed,
# store/forward.c).
my $cl = new_cluster(nodes => 4, azs => 3, auth => [$AK, $SK]);
my @m = @{ $cl->{nodes} };
start_member($_) for @m;
END { kill_node($_) for grep { $_->{pid} } @m }
my @cred = (akid => $AK, secret => $SK);
my %st;
ok(wait_until(20, sub {
    %st = map { my $x = cluster_status($_); $x ? ($_->{id} => $x) : () } @m;
    keys %st == 4 }), 'every node answers a signed status');
my @outside = grep { my $id = $_->{id};
                     !grep { $_->{group} eq 'meta' } @{ $st{$id}{groups} // [] } } @m;
is(scalar @outside, 1, 'one node is not a metadata member');
my ($x) = @outside;
$x //= $m[3];
my ($y) = grep { $_ != $x } @m;
ok(wait_until(20, sub {
    ($rc) = aws($y, ['dynamodb', 'create-table', '--table-name', 'spread',
        '--attribute-definitions', 'AttributeName=pk,AttributeType=S', '--key-schema',
        'AttributeName=pk,KeyType=HASH', '--billing-mode', 'PAY_PER_REQUEST',
        '--tags', 'Key=nines:partitions,Value=4'], @cred);
    $rc == 0 }), "create-table through $y->{id} on a cluster with credentials");
ok(wait_until(20, sub {
    my ($r, $d) = aws($x, ['dynamodb', 'describe-table', '--table-name', 'spread'], @cred);
    $r == 0 && $d->{Table}{TableStatus} eq 'ACTIVE' }),
   "$x->{id} learns of the table through the signed catalog sync");
# Four partitions of three replicas on four nodes: some do not include x,
# whose writes then go to their leader's API (store/forward.c).
my $items = { spread => [map { { PutRequest => { Item => { pk => { S => "k$_" },
                                                            v => { S => "through x" } } } } } 1 .. 16] };
my $put = wait_until(20, sub {
    my ($r, $res) = aws($x, ['dynamodb', 'batch-write-item', '--request-items',
                             json()->encode($items)], @cred);
    $r == 0 && !%{ $res->{UnprocessedItems} // {} } });
ok($put, "16 writes through $x->{id} reach their partitions' leaders");
($rc, $out) = aws($y, ['dynamodb', 'scan', '--table-name', 'spread', '--consistent-read'], @cred);
is(scalar(grep { ($_->{v}{S} // '') eq 'through x' } @{ $out->{Items} // [] }), 16,
   "... and are read back through $y->{id}");
$cli = `'${\bin('nines')}' cluster status --config '$cl->{path}' 2>&1`;
is($? >> 8, 0, 'nines cluster status: every partition has a leader') or diag $cli;
unlike($cli, qr/MissingAuthentication|InvalidSignature/, '... and no call was refused') or diag $cli;
kill_node($_) for @m;
done_testing();
