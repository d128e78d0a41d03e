#!/usr/bin/perl
# load_etcd.t — `nines load --target etcd` against a real one-member etcd
# (Debian's etcd-server, 3.4) on loopback: puts land as the same checksummed
# values the DynamoDB target writes (read back through the gateway and
# decoded), serializable and linearizable gets find them, a dead endpoint
# gives typed errors within the bound, and the options etcd cannot honour are
# refused. The etcd started here is stopped by its pid; its data is a temp dir.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use File::Temp qw(tempdir);
use JSON::PP;
use MIME::Base64 qw(decode_base64 encode_base64);
use POSIX qw(:sys_wait_h);
use Test::More;
use Time::HiRes qw(sleep time);
use HTTP::Tiny;
use Nines qw(bin free_port);

my $nines = bin('nines');
my $etcd = '/usr/bin/etcd';
plan skip_all => "$nines not built" unless -x $nines;
plan skip_all => "$etcd not installed (etcd-server)" unless -x $etcd;

my $tmp = tempdir('nines-etcd-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my ($cport, $pport) = (free_port(), free_port());
my $url = "http://127.0.0.1:$cport";
my $pid = fork // die;
if (!$pid) {
    open STDOUT, '>', "$tmp/etcd.log";
    open STDERR, '>&', \*STDOUT;
    exec $etcd, '--name', 'e1', '--data-dir', "$tmp/e1", '--listen-client-urls', $url,
        '--advertise-client-urls', $url, '--listen-peer-urls', "http://127.0.0.1:$pport",
        '--initial-advertise-peer-urls', "http://127.0.0.1:$pport",
        '--initial-cluster', "e1=http://127.0.0.1:$pport", '--log-level', 'error';
    exit 127;
}
END { local $?; if ($pid) { kill "TERM", $pid; waitpid $pid, 0 } }

my $http = HTTP::Tiny->new(timeout => 5);
sub range {
    my ($key) = @_;
    my $r = $http->post("$url/v3/kv/range",
                        { content => encode_json({ key => encode_base64($key, '') }) });
    return $r->{status} == 200 ? decode_json($r->{content}) : undef;
}
my $up = 0;
for (1 .. 150) {
    if (range('probe')) { $up = 1; last }
    die "etcd exited:\n" . `cat $tmp/etcd.log` if waitpid($pid, WNOHANG) == $pid;
    sleep 0.1;
}
BAIL_OUT("etcd did not come up") unless $up;

sub load {
    my @args = @_;
    my $out = `timeout -k 5 60 '$nines' load --target etcd --json @args 2>$tmp/err`;
    my $rc = $? >> 8;
    my $err = do { local (@ARGV, $/) = "$tmp/err"; <> } // '';
    return ($rc, (eval { decode_json($out) } // undef), $err);
}

# puts of 20 keys, 300 requests: every key is written
my ($rc, $j, $err) = load('--endpoints', $url, '--op', 'put', '--keys', 20, '--requests', 300,
                          '--duration', 20, '--concurrency', 4, '--value-size', 64);
is $rc, 0, 'put run: exit 0' or diag $err;
is $j->{target}, 'etcd', 'summary says target etcd';
is $j->{ops}{put}{ok}, 300, '300 puts acknowledged';
is $j->{ops}{put}{errors}, 0, 'no errors';

# what landed is the generator's checksummed value, 64 bytes
my $kv = range('k7');
ok $kv && $kv->{kvs} && @{ $kv->{kvs} } == 1, 'k7 exists in etcd';
my $v = decode_base64($kv->{kvs}[0]{value} // '');
is length($v), 64, 'value is --value-size bytes';
like $v, qr/^v\d+\.x+-[0-9a-f]{8}$/, "value is a checksummed value: $v";
ok !range('k20')->{kvs}, 'no key outside the key space';

# serializable gets and linearizable gets of the same keys find them all
($rc, $j) = load('--endpoint', $url, '--op', 'get', '--keys', 20, '--requests', 200,
                 '--duration', 20, '--concurrency', 4);
is $rc, 0, 'get run: exit 0';
is $j->{ops}{get}{ok}, 200, '200 gets';
is $j->{ops}{get}{found}, 200, 'all found (serializable range)';
($rc, $j) = load('--endpoint', $url, '--mix', 'cget=1', '--keys', 20, '--requests', 200,
                 '--duration', 20, '--concurrency', 4);
is $j->{ops}{cget}{ok}, 200, '200 linearizable gets';
is $j->{ops}{cget}{found}, 200, 'all found';
($rc, $j) = load('--endpoint', $url, '--op', 'get', '--keys', 1000000, '--seed', 9,
                 '--requests', 100, '--duration', 20, '--concurrency', 2);
cmp_ok $j->{ops}{get}{found}, '<=', 2, 'gets of keys never written are not found';

# a dead endpoint: typed errors, bounded
my $dead = free_port();
my $t0 = time;
($rc, $j) = load('--endpoint', "127.0.0.1:$dead", '--op', 'put', '--duration', 0.5,
                 '--concurrency', 2, '--timeout', 500);
is $rc, 0, 'dead endpoint: run completes';
cmp_ok $j->{ops}{put}{errors_by_type}{connect} // 0, '>', 0, 'errors typed "connect"';
cmp_ok time - $t0, '<', 10, 'within the bound';

# refusals
for my $bad (['--create', qr/--create is not available with --target etcd/],
             ['--history x', qr/--history is not available/],
             ['--mix put=1,cas=1', qr/put, get and cget only/],
             ['--mix put=1,delete=1', qr/put, get and cget only/],
             ['--access-key-id a --secret-access-key b', qr/--access-key-id.* not available/]) {
    ($rc, $j, $err) = load('--endpoint', $url, split(' ', $bad->[0]));
    is $rc, 2, "$bad->[0]: exit 2";
    like $err, $bad->[1], '... says why';
}
($rc, $j, $err) = load('--target', 'zookeeper');
is $rc, 2, 'unknown target: exit 2';
like $err, qr/--target 'zookeeper': dynamodb or etcd/, '... names it';

# the AWS environment does not leak into etcd requests (they would be refused)
{
    local $ENV{AWS_ACCESS_KEY_ID} = 'AKID';
    local $ENV{AWS_SECRET_ACCESS_KEY} = 'secret';
    ($rc, $j) = load('--endpoint', $url, '--op', 'get', '--keys', 20, '--requests', 10,
                     '--concurrency', 1);
    is $rc, 0, 'AWS_* in the environment: still runs';
    ok !$j->{signed}, '... unsigned';
    is $j->{ops}{get}{found}, 10, '... and reads';
}

done_testing;
