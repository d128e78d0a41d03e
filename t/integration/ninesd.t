#!/usr/bin/perl
# ninesd as a program: its command line, cluster-file errors with line and
# column, refusing what it must refuse, and WAL recovery at the node level
# (a torn tail is truncated and logged; corruption in the middle stops the
# node with the file and offset).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Nines qw(bin start_node stop_node kill_node ddb free_port write_cluster);

sub run_ninesd {
    my (@args) = @_;
    my $out = `"@{[bin('ninesd')]}" @args 2>&1`;
    return ($? >> 8, $out);
}

my ($rc, $out) = run_ninesd('--help');
is($rc, 0, '--help exits 0');
like($out, qr/usage: ninesd --cluster FILE --node ID/, '--help prints the usage');
($rc, $out) = run_ninesd('--bogus');
is($rc, 2, 'an unknown option exits 2');
($rc, $out) = run_ninesd('--cluster', '/nonexistent/c.yaml', '--node', 'n1');
is($rc, 1, 'a missing cluster file exits 1');
like($out, qr{/nonexistent/c\.yaml: No such file or directory}, '... naming the file');

my $dir = tempdir('nines-t-XXXXXX', TMPDIR => 1, CLEANUP => 1);
open my $f, '>', "$dir/bad.yaml" or die;
print $f "cluster: demo\nauth: none\nnodes:\n  - {id: n1, az: az1, rack: r1, api: 127.0.0.1:notaport, peer: 127.0.0.1:1, data: /tmp/x}\n";
close $f;
($rc, $out) = run_ninesd('--cluster', "$dir/bad.yaml", '--node', 'n1');
is($rc, 1, 'a bad port exits 1');
like($out, qr{\Q$dir\E/bad\.yaml:4:\d+: }, '... with FILE:LINE:COL');
open $f, '>', "$dir/unknown.yaml" or die;
print $f "cluster: demo\nauth: none\nreplicas: 3\nnodes:\n  - {id: n1, az: az1, rack: r1, api: 127.0.0.1:1, peer: 127.0.0.1:2, data: /tmp/x}\n";
close $f;
($rc, $out) = run_ninesd('--cluster', "$dir/unknown.yaml", '--node', 'n1');
is($rc, 1, 'an unknown key exits 1');
like($out, qr{unknown\.yaml:3:1: .*replicas}, '... at line 3, column 1, naming the key');

my $n = start_node();
($rc, $out) = run_ninesd('--cluster', $n->{cluster}, '--node', 'n9');
is($rc, 1, 'an unknown node id exits 1');
like($out, qr/no node with id 'n9'/, '... saying so');
my $other = tempdir('nines-t-XXXXXX', TMPDIR => 1, CLEANUP => 1);
open $f, '>', "$other/same-port.yaml" or die;
print $f "cluster: test\nauth: none\nnodes:\n  - {id: n1, az: az1, rack: r1, api: 127.0.0.1:$n->{port}, peer: 127.0.0.1:1, data: $other/n1}\n";
close $f;
($rc, $out) = run_ninesd('--cluster', "$other/same-port.yaml", '--node', 'n1');
is($rc, 1, 'a node whose API port is taken does not start');
like($out, qr/cannot listen on 127\.0\.0\.1:$n->{port}/, '... and says why');
open $f, '>', "$other/other-cluster.yaml" or die;
print $f "cluster: another\nauth: none\nnodes:\n  - {id: n1, az: az1, rack: r1, api: 127.0.0.1:" . free_port() . ", peer: 127.0.0.1:1, data: $n->{dir}/n1}\n";
close $f;
($rc, $out) = run_ninesd('--cluster', "$other/other-cluster.yaml", '--node', 'n1');
is($rc, 1, "another cluster's node is refused on this data directory");
like($out, qr/belongs to another node or cluster/, '... saying so');

# ---- a stop right after writes: they are committed, the node exits 0 ----
{
    my $m = start_node();
    ddb($m, 'CreateTable', { TableName => 'quick', BillingMode => 'PAY_PER_REQUEST', NinesPartitions => 2,
        AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }], KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' }] });
    my $clean = 0;
    for my $round (1 .. 10) {
        ddb($m, 'PutItem', { TableName => 'quick', Item => { pk => { S => "k$round" } } });
        $clean++ if stop_node($m) == 0;
        $m = start_node(dir => $m->{dir}, port => $m->{port}, cluster => $m->{cluster});
    }
    is($clean, 10, 'SIGTERM right after an acknowledged write: a clean exit, 10 times out of 10');
    my ($qs, $q) = ddb($m, 'Scan', { TableName => 'quick', Select => 'COUNT' });
    is($q->{Count}, 10, 'and every one of those writes is there');
    open my $lg, '<', $m->{log};
    my $mlog = do { local $/; <$lg> };
    unlike($mlog, qr/replayed WAL/, 'nothing had to be replayed: each stop committed its writes');
    stop_node($m);
}

# ---- a read right after an acknowledged write sees it (before LMDB commits) ----
{
    my $m = start_node();
    ddb($m, 'CreateTable', { TableName => 'ryw', BillingMode => 'PAY_PER_REQUEST', NinesPartitions => 2,
        AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }], KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' }] });
    my ($seen, $gone) = (0, 0);
    for my $i (1 .. 200) {
        ddb($m, 'PutItem', { TableName => 'ryw', Item => { pk => { S => "k$i" }, v => { N => "$i" } } });
        my ($s1, $g) = ddb($m, 'GetItem', { TableName => 'ryw', Key => { pk => { S => "k$i" } } });
        $seen++ if ($g->{Item}{v}{N} // '') eq "$i";
        ddb($m, 'DeleteItem', { TableName => 'ryw', Key => { pk => { S => "k$i" } } });
        my ($s2, $d) = ddb($m, 'GetItem', { TableName => 'ryw', Key => { pk => { S => "k$i" } } });
        $gone++ if !exists $d->{Item};
    }
    my $found = 0;
    for my $i (1 .. 100) {
        ddb($m, 'PutItem', { TableName => 'ryw', Item => { pk => { S => "q$i" } } });
        my ($s3, $q) = ddb($m, 'Query', { TableName => 'ryw', KeyConditionExpression => 'pk = :p',
                                          ExpressionAttributeValues => { ':p' => { S => "q$i" } } });
        $found++ if ($q->{Count} // 0) == 1;
    }
    is($found, 100, 'Query right after each PutItem finds it (100 of 100): range reads commit first');
    is($seen, 200, 'GetItem right after each PutItem returns it (200 of 200)');
    is($gone, 200, 'GetItem right after each DeleteItem finds nothing (200 of 200)');
    is(stop_node($m), 0, 'clean stop');
}

# ---- running out of named databases is a client error, not a crash ----
{
    my $m = start_node(extra => "storage: {max_tables: 1}\n");
    my ($st, $r, @made);
    for my $i (1 .. 10) {
        ($st, $r) = ddb($m, 'CreateTable', { TableName => "many$i", BillingMode => 'PAY_PER_REQUEST', NinesPartitions => 16,
            AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }], KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' }] });
        last if $st != 200;
        push @made, "many$i";
    }
    is($st, 400, 'creating tables past storage.max_tables is refused');
    like($r->{__type} // '', qr/#LimitExceededException$/, '... with LimitExceededException');
    cmp_ok(scalar @made, '>=', 1, 'the tables that fit were created (' . scalar(@made) . ')');
    ($st) = ddb($m, 'PutItem', { TableName => $made[0], Item => { pk => { S => 'x' } } });
    is($st, 200, 'and the node still takes writes');
    is(stop_node($m), 0, 'clean stop');
}

# ---- WAL recovery at the node level ----
my ($st) = ddb($n, 'CreateTable', { TableName => 'rec', BillingMode => 'PAY_PER_REQUEST', NinesPartitions => 1,
    AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }], KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' }] });
is($st, 200, 'table with one partition');
for my $i (1 .. 50) {
    ($st) = ddb($n, 'PutItem', { TableName => 'rec', Item => { pk => { S => "k$i" }, v => { N => "$i" } } });
}
is($st, 200, '50 items written');
kill_node($n);
# Every group's entries go to the node log (docs/wal.md): its newest segment.
my ($wal) = sort { -M $a <=> -M $b } glob("$n->{dir}/n1/log/*.wal");
ok(-f $wal, "the node log's segment exists");
ok(!glob("$n->{dir}/n1/wal/p.*.0/*.wal"), 'no group keeps a WAL of its own');
# The records end before the file does (the WAL writes zeros ahead): walk them.
sub records_end {
    my ($path) = @_;
    open my $fh, '<:raw', $path or die;
    my $off = 32;
    while (1) {
        seek $fh, $off, 0;
        read($fh, my $h, 16) == 16 or last;
        my ($len) = unpack('V', $h);
        last if $len == 0;
        $off += 16 + $len;
    }
    return $off;
}
my $size = records_end($wal);
# Torn tail: half a record (a header claiming 100 bytes, 10 of them) where
# the next record would go, as a crash in the middle of a write leaves it.
open my $w, '+<:raw', $wal or die;
seek $w, $size, 0;
print $w pack('V Q< V', 100, 51, 0) . ('z' x 10);
close $w;
$n = start_node(dir => $n->{dir}, port => $n->{port}, cluster => $n->{cluster});
# The torn bytes are gone: the record now at that offset is one the
# restarted node wrote (a new leader's empty entry), not the torn header.
{
    open my $fh, '<:raw', $wal or die;
    seek $fh, $size, 0;
    read($fh, my $h, 16);
    my ($len) = unpack('V', $h);
    isnt($len, 100, 'the torn tail was truncated back to the last whole record');
}
open my $lg, '<', $n->{log};
my $log = do { local $/; <$lg> };
like($log, qr/\Q$wal\E.*offset $size/, 'the log names the file and the offset') or diag $log;
my ($s2, $r2) = ddb($n, 'GetItem', { TableName => 'rec', Key => { pk => { S => 'k50' } } });
is($r2->{Item}{v}{N}, '50', 'the last acknowledged write is there');
for my $i (51 .. 60) {
    ($st) = ddb($n, 'PutItem', { TableName => 'rec', Item => { pk => { S => "k$i" }, v => { N => "$i" } } });
}
is($st, 200, 'writes continue after the truncation');
kill_node($n);
# Middle corruption: flip one payload byte of an early record.
open $w, '+<:raw', $wal or die;
my $hdr;
seek $w, 32, 0; read $w, $hdr, 16;
my ($len) = unpack('V', $hdr);
my $second = 32 + 16 + $len;  # offset of record 2
seek $w, $second + 16 + 3, 0; read $w, my $byte, 1;
seek $w, $second + 16 + 3, 0; print $w chr(ord($byte) ^ 0x40);
close $w;
$n = start_node(dir => $n->{dir}, port => $n->{port}, cluster => $n->{cluster}, may_fail => 1);
is($n->{pid}, 0, 'a node whose WAL is corrupt in the middle does not start');
isnt($n->{exit}, 0, '... and exits non-zero');
open $lg, '<', $n->{log};
$log = do { local $/; <$lg> };
like($log, qr/\Q$wal\E.*offset $second/, '... naming the segment file and the offset of the bad record') or diag $log;
done_testing();
