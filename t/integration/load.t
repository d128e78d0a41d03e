#!/usr/bin/perl
# load.t — `nines load` against a real ninesd: --create, puts then gets of the
# same keys, an open-loop mix, SigV4 signing (accepted with the right secret,
# InvalidSignatureException with a wrong one), a dead endpoint (errors by
# type, bounded run) and bad options. Every ninesd started here is killed by
# its pid; every run is bounded by --duration/--requests and --timeout.
use strict;
use warnings;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use JSON::PP;
use POSIX ":sys_wait_h";
use Test::More;
use Time::HiRes qw(sleep time);
use FindBin;
use lib "$FindBin::Bin/../lib";
use Nines ();

my $top = $ENV{NINES_TOP} || do { my $d = $0; $d =~ s{/[^/]*$}{}; "$d/../.." };
my $build = $ENV{NINES_BUILD} || "$top/build";
my ($ninesd, $nines) = ("$build/bin/ninesd", "$build/bin/nines");
plan skip_all => "$ninesd or $nines not built (run make test)" unless -x $ninesd && -x $nines;

my $tmp = tempdir("nines-load-XXXXXX", TMPDIR => 1, CLEANUP => 1);
my @pids;
END { kill 'KILL', $_ for @pids; waitpid($_, 0) for @pids; }

sub free_port { Nines::free_port() }

# Starts ninesd on a fresh port with the given auth line; returns (pid, port).
sub start_node {
    my ($name, $auth) = @_;
    my ($api, $peer) = (free_port(), free_port());
    my $file = "$tmp/$name.yaml";
    open my $f, '>', $file or die;
    print $f "cluster: $name\nauth: $auth\nnodes:\n",
        "  - {id: n1, az: az1, rack: r1, api: 127.0.0.1:$api, peer: 127.0.0.1:$peer, data: $tmp/$name-data}\n";
    close $f;
    my $pid = fork // die;
    if (!$pid) {
        open STDOUT, '>', "$tmp/$name.log";
        open STDERR, '>&', \*STDOUT;
        exec $ninesd, '--cluster', $file, '--node', 'n1';
        exit 127;
    }
    push @pids, $pid;
    my $deadline = time + 15;
    while (time < $deadline) {
        last if IO::Socket::INET->new(PeerAddr => "127.0.0.1:$api", Timeout => 1);
        die "ninesd exited early:\n" . `cat $tmp/$name.log` if waitpid($pid, WNOHANG) == $pid;
        sleep 0.05;
    }
    return ($pid, $api);
}

sub stop_node {
    my ($pid) = @_;
    kill 'TERM', $pid;
    my $deadline = time + 10;
    while (time < $deadline && waitpid($pid, WNOHANG) != $pid) { sleep 0.05 }
    if (kill 0, $pid) { kill 'KILL', $pid; waitpid($pid, 0) }
    @pids = grep { $_ != $pid } @pids;
}

# Runs nines load with args; returns (exit code, decoded JSON or undef, stderr).
sub load {
    my @args = @_;
    my $pid = open(my $out, '-|') // die;
    if (!$pid) {
        open STDERR, '>', "$tmp/load.err";
        exec $nines, 'load', @args;
        exit 127;
    }
    local $/;
    my $text = <$out>;
    close $out;
    my $rc = $? >> 8;
    my $err = do { open my $e, '<', "$tmp/load.err"; <$e> } // '';
    my $json = eval { decode_json($text) };
    return ($rc, $json, $err, $text);
}

my ($pid, $port) = start_node('plain', 'none');
my $ep = "http://127.0.0.1:$port";
my @common = ('--endpoint', $ep, '--table', 'loadt', '--keys', '300', '--seed', '7',
              '--timeout', '3000', '--duration', '30', '--json');

my ($rc, $j, $err) = load(@common, '--create', '--partitions', '2', '--op', 'put',
                          '--requests', '600', '--concurrency', '4');
is($rc, 0, 'put run exits 0') or diag $err;
is($j->{ops}{put}{ok}, 600, 'every one of the 600 measured puts succeeded');
is($j->{errors}, 0, 'no put errors');
cmp_ok($j->{ops}{put}{latency_ms}{p50}, '>', 0, 'put latency is reported');
cmp_ok($j->{ops}{put}{latency_ms}{p99}, '>=', $j->{ops}{put}{latency_ms}{p50}, 'p99 >= p50');

# Same seed and key space: the gets ask for exactly the keys just written.
($rc, $j, $err) = load(@common, '--op', 'get', '--requests', '600', '--concurrency', '4');
is($rc, 0, 'get run exits 0') or diag $err;
is($j->{ops}{get}{ok}, 600, '600 gets succeeded');
is($j->{ops}{get}{found}, 600, 'every get found the item a put wrote');
is($j->{errors}, 0, 'no get errors');

# A different seed over a larger key space must also miss sometimes.
($rc, $j) = load('--endpoint', $ep, '--table', 'loadt', '--keys', '1000000', '--seed', '99',
                 '--op', 'get', '--requests', '200', '--concurrency', '2', '--json');
cmp_ok($j->{ops}{get}{not_found} // 0, '>', 0, 'gets of never-written keys report not found');

# Open loop: a fixed rate for a fixed time issues rate x duration requests.
($rc, $j, $err) = load(@common, '--op', 'mix', '--read-ratio', '0.5', '--rate', '200',
                       '--duration', '1', '--concurrency', '4');
is($rc, 0, 'open-loop mix exits 0') or diag $err;
is($j->{mode}, 'open', 'open loop reported');
is(($j->{ops}{put}{ok} // 0) + ($j->{ops}{get}{ok} // 0), 200, '200/s for 1 s = 200 requests, none lost');
ok(($j->{ops}{put}{ok} // 0) > 0 && ($j->{ops}{get}{ok} // 0) > 0, 'the mix issued both puts and gets');
is($j->{errors}, 0, 'no errors in the mix');

# Human-readable summary.
my $text;
($rc, undef, $err, $text) = load('--endpoint', $ep, '--table', 'loadt', '--requests', '50',
                                 '--concurrency', '2', '--op', 'put');
like($text, qr/^put\s+50\s+0\s+\d+/m, 'text summary: put line with ok and error counts');
like($text, qr/p99\.9 ms/, 'text summary has p99.9');

# Unknown table: errors by DynamoDB type, run still completes.
($rc, $j) = load('--endpoint', $ep, '--table', 'no-such-table', '--requests', '20',
                 '--concurrency', '2', '--op', 'put', '--json');
is($rc, 0, 'a run whose requests fail still exits 0');
is($j->{ops}{put}{errors_by_type}{ResourceNotFoundException}, 20,
   'errors counted by DynamoDB type (ResourceNotFoundException)');
stop_node($pid);

# The endpoint is gone now: connect errors, bounded run.
my $t0 = time;
($rc, $j) = load('--endpoint', $ep, '--duration', '1', '--concurrency', '2', '--rate', '50',
                 '--timeout', '300', '--op', 'put', '--json');
is($rc, 0, 'dead endpoint: run completes');
cmp_ok($j->{ops}{put}{errors_by_type}{connect} // 0, '>', 0, 'dead endpoint: "connect" errors');
is($j->{ops}{put}{ok}, 0, 'dead endpoint: nothing succeeded');
cmp_ok(time - $t0, '<', 10, 'dead endpoint: the run stays within its bound');

# SigV4: a node with credentials.
($pid, $port) = start_node('signed', '{access_key_id: AKIDLOADTEST, secret_access_key: "load/Secret+Key"}');
$ep = "http://127.0.0.1:$port";
($rc, $j, $err) = load('--endpoint', $ep, '--table', 'signedt', '--create', '--requests', '100',
                       '--concurrency', '2', '--op', 'put', '--json',
                       '--access-key-id', 'AKIDLOADTEST', '--secret-access-key', 'load/Secret+Key');
is($rc, 0, 'signed run exits 0') or diag $err;
is($j->{ops}{put}{ok}, 100, 'signed puts accepted by ninesd');
ok($j->{signed}, 'summary says signed');
like($err, qr/warning: --secret-access-key puts the secret on the command line/,
     'a secret on the command line is warned about');
{
    my $sf = "$tmp/secret";
    open my $f, '>', $sf or die "$sf: $!";
    print $f "load/Secret+Key\n";
    close $f;
    ($rc, $j, $err) = load('--endpoint', $ep, '--table', 'signedt', '--requests', '10',
                           '--concurrency', '1', '--op', 'put', '--json',
                           '--access-key-id', 'AKIDLOADTEST', '--secret-file', $sf);
    is($rc, 0, '--secret-file: the run exits 0') or diag $err;
    is($j->{ops}{put}{ok}, 10, '--secret-file: the secret read from the file signs');
    unlike($err, qr/warning/, '--secret-file: no warning');
    ($rc, $j, $err) = load('--endpoint', $ep, '--table', 'signedt', '--requests', '1',
                           '--access-key-id', 'AKIDLOADTEST', '--secret-file', "$tmp/nonexistent");
    isnt($rc, 0, '--secret-file of a missing file is refused');
    like($err, qr/--secret-file/, '... naming the option');
}
{
    local $ENV{AWS_ACCESS_KEY_ID} = 'AKIDLOADTEST';
    local $ENV{AWS_SECRET_ACCESS_KEY} = 'wrong';
    ($rc, $j) = load('--endpoint', $ep, '--table', 'signedt', '--requests', '10',
                     '--concurrency', '1', '--op', 'get', '--json');
}
is($j->{ops}{get}{errors_by_type}{InvalidSignatureException}, 10,
   'credentials from the environment; a wrong secret gives InvalidSignatureException');
($rc, $j) = load('--endpoint', $ep, '--table', 'signedt', '--requests', '10',
                 '--concurrency', '1', '--op', 'get', '--json');
is($j->{ops}{get}{errors_by_type}{MissingAuthenticationTokenException}, 10,
   'unsigned requests to a signed node: MissingAuthenticationTokenException');
stop_node($pid);

# Bad options: exit 2 with a message naming the option.
for my $bad (['--op', 'delete'], ['--concurrency', '0'], ['--duration', '4000'],
             ['--rate', '-1'], ['--endpoint', 'ftp://x'], ['--value-size', '500000'],
             ['--access-key-id', 'A'], ['--nonsense']) {
    local $ENV{AWS_SECRET_ACCESS_KEY};
    delete $ENV{AWS_SECRET_ACCESS_KEY};
    ($rc, undef, $err) = load(@$bad);
    is($rc, 2, "bad option @$bad: exit 2");
    like($err, qr/nines load: .+/, "... with a message: " . (split /\n/, $err)[0]);
}
($rc, undef, $err, $text) = load('--help');
is($rc, 0, '--help exits 0');
like($text, qr/--endpoint URL.*--rate R.*--json/s, '--help documents the options');

done_testing();
