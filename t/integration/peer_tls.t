#!/usr/bin/perl
# TLS end to end: `nines cluster certs` (files that verify, keys 0600, clear
# errors on bad input), `nines cluster up` of the cluster.yaml it writes (4
# nodes: one holds no replica of a partition, so HTTPS forwarding and the
# catalog sync over HTTPS both run), the real AWS CLI over HTTPS with
# --ca-bundle, and a forger on the peer port (openssl s_client with a
# certificate of another cluster) refused and logged.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Nines qw(bin free_port aws wait_until);
sub slurp { my ($p) = @_; open my $fh, "<", $p or return ""; local $/; <$fh> }

-x '/usr/bin/aws' or plan skip_all => '/usr/bin/aws (Debian awscli) is not installed';
my $openssl = '/usr/bin/openssl';
-x $openssl or plan skip_all => 'no openssl command';

my $dir = tempdir('nines-tls-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{NINES_KEEP});
my $nines = bin('nines');

sub run {
    my (@cmd) = @_;
    my $out = `@cmd 2>&1`;
    return ($? >> 8, $out);
}

# ---- nines cluster certs: bad input ----
my ($rc, $out) = run($nines, 'cluster', 'certs', '--config', "$dir/nosuch.yaml", '--out', "$dir/x");
is($rc, 2, 'certs with a missing config: exit 2');
like($out, qr/nosuch\.yaml: No such file or directory/, 'and says which file');

my @ports = map { free_port() } 1 .. 8;
my $yaml = "cluster: tlstest\nauth: none\nnodes:\n";
for my $i (1 .. 4) {
    my $az = 'az' . (($i - 1) % 3 + 1);
    $yaml .= "  - {id: n$i, az: $az, rack: r1, api: 127.0.0.1:$ports[2*$i-2], "
           . "peer: 127.0.0.1:$ports[2*$i-1], data: $dir/n$i}\n";
}
open my $f, '>', "$dir/plain.yaml" or die;
print $f $yaml;
close $f;

($rc, $out) = run($nines, 'cluster', 'certs', '--config', "$dir/plain.yaml", '--out',
                  '/proc/nines-no-such-dir/certs');
is($rc, 1, 'certs into an unwritable place: exit 1');
like($out, qr{/proc/nines-no-such-dir/certs: cannot create the output directory}, 'and says why');
($rc, $out) = run($nines, 'cluster', 'certs', '--config', "$dir/plain.yaml");
is($rc, 2, 'certs without --out: exit 2');

# ---- nines cluster certs: the files ----
my $cd = "$dir/certs";
($rc, $out) = run($nines, 'cluster', 'certs', '--config', "$dir/plain.yaml", '--out', $cd);
is($rc, 0, 'certs: exit 0') or diag $out;
for my $n (map { "n$_" } 1 .. 4) {
    ($rc, $out) = run($openssl, 'verify', '-CAfile', "$cd/ca.pem", "$cd/$n.pem");
    is($rc, 0, "$n.pem verifies against ca.pem") or diag $out;
    my $san = `$openssl x509 -in $cd/$n.pem -noout -ext subjectAltName 2>&1`;
    like($san, qr{URI:nines://tlstest/$n\b}, "$n.pem names nines://tlstest/$n");
    is((stat "$cd/$n.key")[2] & 0777, 0600, "$n.key is 0600");
}
is((stat "$cd/ca.key")[2] & 0777, 0600, 'ca.key is 0600');
like(slurp("$cd/cluster.yaml"), qr/^tls: \{ca: .*peers: true, api: true\}/m,
     'cluster.yaml turns TLS on for peers and API');

# ---- nines cluster up over TLS ----
($rc, $out) = run($nines, 'cluster', 'up', '--config', "$cd/cluster.yaml", '--timeout', '60');
is($rc, 0, 'nines cluster up of the TLS cluster') or diag $out;
END { system($nines, 'cluster', 'down', '--config', "$cd/cluster.yaml") if $cd && -e "$cd/cluster.yaml" }

my @nodes = map { { url => "https://127.0.0.1:$ports[2*$_-2]", port => $ports[2*$_-2] } } 1 .. 4;
my ($st, $d, $err);
sub cli {
    my ($node, @a) = @_;
    ($st, $d, $err) = aws($node, ['--ca-bundle', "$cd/ca.pem", 'dynamodb', @a], attempts => 3);
    return $d;
}
cli($nodes[0], 'create-table', '--table-name', 'tlstab', '--attribute-definitions',
    'AttributeName=k,AttributeType=S', '--key-schema', 'AttributeName=k,KeyType=HASH',
    '--billing-mode', 'PAY_PER_REQUEST', '--tags', 'Key=nines:partitions,Value=1');
is($st, 0, 'aws create-table over HTTPS') or diag $err;
# The one partition has three replicas among four nodes: the fourth forwards.
my $ok = 0;
for my $i (0 .. 3) {
    cli($nodes[$i], 'put-item', '--table-name', 'tlstab', '--item', qq({"k":{"S":"via$i"}}));
    $ok++ if $st == 0;
    diag "n@{[$i+1]}: $err" if $st;
}
is($ok, 4, 'aws put-item over HTTPS on every node (one of them forwards over HTTPS)');
for my $i (0 .. 3) {
    my $r = cli($nodes[($i + 1) % 4], 'get-item', '--table-name', 'tlstab', '--consistent-read',
                '--key', qq({"k":{"S":"via$i"}}));
    is(ref $r eq 'HASH' && $r->{Item}{k}{S}, "via$i", "aws get-item via$i over HTTPS");
}
cli({ url => $nodes[0]{url} }, 'list-tables');
is($st, 0, 'list-tables with the CA') or diag $err;
($st, $d, $err) = aws($nodes[0], ['dynamodb', 'list-tables']);
isnt($st, 0, 'without --ca-bundle the CLI refuses the certificate');
like($err, qr/CERTIFICATE_VERIFY_FAILED|certificate verify failed/i, 'and says so');

# ---- nines load over HTTPS ----
{
    my $eps = join ',', map { $_->{url} } @nodes;
    ($rc, $out) = run($nines, 'load', '--endpoint', $eps, '--ca-bundle', "$cd/ca.pem",
                      '--table', 'tlsload', '--create', '--partitions', '2', '--requests', '200', '--duration', '30',
                      '--concurrency', '4', '--json');
    is($rc, 0, 'nines load --ca-bundle over HTTPS exits 0') or diag $out;
    my ($j) = $out =~ /^(\{.*\})\s*$/m;
    like($j // '', qr/"put":\{"ok":200\b/, '... and all 200 PutItems succeeded') or diag $out;
    ($rc, $out) = run($nines, 'load', '--endpoint', $nodes[0]{url}, '--table', 'tlsload',
                      '--requests', '5', '--duration', '10', '--concurrency', '1', '--json');
    like($out, qr/"put":\{"ok":0,"errors":5,.*"errors_by_type":\{"tls":5\}/,
         'nines load without the CA: every request refused on the certificate') or diag $out;
}

# ---- a forger on the peer port ----
certs_forge();
sub certs_forge {
    # Another cluster's certificates, signed by another CA: `cluster certs`
    # of a copy of the file under another name.
    (my $other = $yaml) =~ s/^cluster: tlstest/cluster: othercl/m;
    open my $g, '>', "$dir/other.yaml" or die;
    print $g $other;
    close $g;
    my ($r, $o) = run($nines, 'cluster', 'certs', '--config', "$dir/other.yaml", '--out',
                      "$dir/other");
    is($r, 0, 'certificates of another cluster') or diag $o;
    my $log = "$dir/n1/ninesd.log";
    my $before = () = slurp($log) =~ /refused input/g;
    # HELLO(tlstest, n2) + a BATCH: must never be decoded.
    my $frames = "$dir/frames.bin";
    system("printf 'N9TP' > $frames");
    my $pid = fork // die;
    if ($pid == 0) {
        open STDIN, '<', $frames;
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        exec $openssl, 's_client', '-quiet', '-connect', "127.0.0.1:$ports[1]", '-cert',
             "$dir/other/n2.pem", '-key', "$dir/other/n2.key", '-CAfile', "$dir/other/ca.pem";
        exit 127;
    }
    my $done = wait_until(20, sub { waitpid($pid, 1) == $pid });
    kill 'KILL', $pid unless $done;
    waitpid $pid, 0 unless $done;
    ok($done, 'the forger is disconnected');
    my $after = wait_until(10, sub { my $n = () = slurp($log) =~ /refused input/g; $n > $before ? $n : 0 });
    ok($after, 'n1 logs the refusal');
    like(slurp($log), qr/refused input from 127\.0\.0\.1:\d+ .*: tls; closing/,
         'the log names the address and the reason');
}

done_testing();
