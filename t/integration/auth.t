#!/usr/bin/perl
# SigV4 against the cluster file's credentials, with the real AWS CLI as client.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Nines qw(start_node stop_node aws http json);

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
is(stop_node($n), 0, 'clean stop');
done_testing();
