# nines scrub --deep on a real three-node cluster: the admin calls
# (ScrubDeep, ScrubDeepStatus, ScrubDeepCancel) run, report and cancel a
# job; a clean cluster deep-scrubs clean (exit 0, every replica); a deep
# scrub interrupted by SIGINT exits 2 with its checkpoint saved, and the
# same command again skips what was finished and completes; one byte of one
# item's value flipped in n3's LMDB file while n3 was stopped (bit rot at
# rest: LMDB's structure intact, the maintained digest untouched) passes
# the live compare -- the digests agree, which is why the deep scrub
# exists -- and the deep scrub finds it: exit 1, kind rot, replica n3, the
# partition, and exactly the bucket of that key.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use JSON::PP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use Nines qw(new_cluster start_member stop_node kill_node ddb cluster_status wait_until bin);

-x '/usr/bin/mdb_dump' or plan skip_all => 'lmdb-utils missing';
my $cl = new_cluster(nodes => 3, azs => 3);
my @nodes = @{ $cl->{nodes} };
my ($n1, $n2, $n3) = @nodes;
start_member($_) for @nodes;
my @bg; # background nines we started
END { local $?; kill 'KILL', $_ for @bg; kill_node($_) for grep { $_->{pid} } @nodes }
my $nines = bin('nines');
my $cf = $cl->{path};

my ($st, $r);
wait_until(20, sub { ($st, $r) = ddb($n1, 'CreateTable', { TableName => 'deep', BillingMode => 'PAY_PER_REQUEST',
    NinesPartitions => 4, AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }],
    KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' }] }); $st == 200 });
is($st, 200, 'table of 4 partitions created') or diag explain $r;
my $marker = 'ROTMARKER-5e1f09c3-the-bytes-to-rot-0123456789';
my $ok = 0;
for my $i (0 .. 400) {
    my $s;
    my $item = $i == 0 ? { pk => { S => 'rotkey' }, v => { S => $marker } }
                       : { pk => { S => "k$i" }, v => { N => "$i" }, pad => { S => 'x' x 40 } };
    wait_until(10, sub { ($s) = ddb($nodes[$i % 3], 'PutItem', { TableName => 'deep', Item => $item }); $s == 200 });
    $ok++ if $s == 200;
}
is($ok, 401, '401 items written (one carries a unique marker string)');

sub admin {
    my ($n, $op, $req) = @_;
    return Nines::http($n->{url}, undef, encode_json($req), 'X-Amz-Target' => "NinesAdmin.$op");
}

# ---- the admin calls ----
my $s1 = cluster_status($n1);
my @g1 = sort { $a->{partition} <=> $b->{partition} }
         grep { ($_->{table} // '') eq 'deep' } @{ $s1->{groups} };
is(scalar @g1, 4, 'n1 holds a replica of each of the 4 partitions');
($st, $r) = admin($n1, 'ScrubDeep', { TableName => 'deep', Partition => 1 });
is($st, 200, 'ScrubDeep starts a job') or diag explain $r;
my $job = $r->{Job};
ok($job, "... named $job");
my $stat;
wait_until(20, sub { (undef, $stat) = admin($n1, 'ScrubDeepStatus', { Job => $job });
                     ($stat->{State} // '') eq 'done' });
is($stat->{State}, 'done', 'the job is done');
is(ref $stat->{Result} && ($stat->{Result}{Match} ? 1 : 0), 1, '... and its bytes match its digest');
ok($stat->{Items} > 50 && $stat->{Items} == $stat->{Result}{MaintainedItems},
   "... $stat->{Items} items read, as many maintained");
ok($stat->{ScannedBytes} > 0 && $stat->{ScannedBytes} == $stat->{TotalBytes},
   '... scanned bytes = the maintained total');
is(scalar @{ $stat->{Result}{Buckets} }, 0, '... no bucket differs');
($st, $r) = admin($n1, 'ScrubDeepStatus', { Job => 'd1-999' });
is($st, 400, 'an unknown job: 400');
like($r->{__type} // '', qr/ResourceNotFound/, '... ResourceNotFoundException');
($st, $r) = admin($n1, 'ScrubDeep', { TableName => 'deep', Partition => 9 });
is($st, 400, 'a partition that does not exist: 400');
($st, $r) = admin($n1, 'ScrubDeep', { TableName => 'deep', Partition => 0, RateMBps => 0.0001 });
my $slow = $r->{Job};
wait_until(10, sub { (undef, $stat) = admin($n1, 'ScrubDeepStatus', { Job => $slow });
                     ($stat->{State} // '') eq 'running' && $stat->{ScannedBytes} > 0 });
is($stat->{State}, 'running', 'a job at 100 B/s runs');
ok($stat->{ScannedBytes} < $stat->{TotalBytes}, "... slowly ($stat->{ScannedBytes} of $stat->{TotalBytes} bytes)");
($st, $r) = admin($n1, 'ScrubDeepCancel', { Job => $slow });
is($st, 200, 'ScrubDeepCancel answers');
my $t0 = time;
wait_until(5, sub { (undef, $stat) = admin($n1, 'ScrubDeepStatus', { Job => $slow });
                    ($stat->{State} // '') eq 'cancelled' });
is($stat->{State}, 'cancelled', sprintf('... and the job is cancelled (%.2f s)', time - $t0));
ok(!exists $stat->{Result}, '... without a result');

# ---- nines scrub --deep ----
sub deep {
    my (@args) = @_;
    my $json = "$cl->{dir}/deep.json";
    unlink $json;
    my $out = `$nines scrub --deep --cluster $cf --json $json --timeout 60 @args 2>&1`;
    my $rc = $? >> 8;
    my $j = -s $json ? eval { decode_json(Nines::slurp($json)) } : undef;
    return ($rc, $out, $j);
}

my ($rc, $out, $j) = deep();
is($rc, 0, 'a clean cluster deep-scrubs clean: exit 0') or diag $out;
like($out, qr/12 replica\(s\), 12 scrubbed now, 0 resumed.*0 finding\(s\), 0 undecided/,
     'every replica of every partition scrubbed') or diag $out;
is($j && $j->{mode}, 'deep', 'the JSON report says mode deep');
is($j && scalar @{ $j->{findings} }, 0, '... and has no finding');

# ---- interrupted and resumed ----
my $state = "$cl->{dir}/deep-state.json";
my $json2 = "$cl->{dir}/deep-int.json";
my $pid = fork // die;
if (!$pid) {
    open STDOUT, '>', "$cl->{dir}/deep-int.out" or die;
    open STDERR, '>&', \*STDOUT or die;
    exec $nines, 'scrub', '--deep', '--cluster', $cf, '--rate', '0.001', '--resume', $state,
        '--json', $json2;
    exit 127;
}
push @bg, $pid;
sub done_in_state {
    my $s = -s $state ? eval { decode_json(Nines::slurp($state)) } : undef;
    return $s ? scalar @{ $s->{done} } : 0;
}
wait_until(60, sub { done_in_state() >= 1 });
my $before = done_in_state();
ok($before >= 1, "the slow deep scrub finished $before replica(s)");
kill 'INT', $pid;
my $exit;
wait_until(20, sub { waitpid($pid, WNOHANG) == $pid and do { $exit = $? >> 8; 1 } });
@bg = ();
is($exit, 2, 'SIGINT: exit 2') or diag Nines::slurp("$cl->{dir}/deep-int.out");
like(Nines::slurp("$cl->{dir}/deep-int.out"), qr/INTERRUPTED/, '... saying it was interrupted');
my $saved = done_in_state();
ok($saved >= $before && $saved < 12, "the checkpoint holds $saved of 12 replicas");
my $ji = eval { decode_json(Nines::slurp($json2)) };
ok($ji && $ji->{interrupted} && grep({ $_->{why} =~ /interrupted/ } @{ $ji->{undecided} }),
   '... and the report names the interrupted ones undecided');
($rc, $out, $j) = deep('--resume', $state);
is($rc, 0, 'the same command again completes: exit 0') or diag $out;
is($j && $j->{resumed}, $saved, "... $saved replica(s) taken from the checkpoint");
is($j && $j->{scrubbed}, 12 - $saved, '... only the ' . (12 - $saved) . ' others scrubbed');
is(done_in_state(), 12, '... and the checkpoint now holds all 12');

# ---- bit rot at rest on n3 ----
my $s3 = cluster_status($n3);
my %part_of = map { $_->{group} => $_->{partition} } grep { ($_->{table} // '') eq 'deep' } @{ $s3->{groups} };
is(stop_node($n3), 0, 'n3 stopped');
my $env = "$n3->{dir}/n3/state";
# Where the marker lives: its database (the partition) and its key.
my $dump = `mdb_dump -a '$env'`;
is($?, 0, 'mdb_dump -a of n3\'s environment');
my ($rot_group, $rot_key);
my $mhex = unpack('H*', $marker);
for my $sec (split /(?<=DATA=END\n)/, $dump) {
    my ($name) = $sec =~ /^database=(.*)$/m or next;
    my ($body) = $sec =~ /HEADER=END\n(.*)DATA=END\n\z/s or next;
    my @l = split /\n/, $body;
    for (my $i = 0; $i + 1 < @l; $i += 2) {
        next unless index($l[$i + 1], $mhex) >= 0;
        ($rot_group, $rot_key) = ($name, pack('H*', substr($l[$i], 1)));
    }
}
ok(defined $rot_group && exists $part_of{$rot_group}, "the marker's item is in $rot_group (partition "
   . ($part_of{$rot_group // ''} // '?') . ')');
sub crc32c {
    my $c = 0xFFFFFFFF;
    for my $b (unpack 'C*', $_[0]) {
        $c ^= $b;
        $c = ($c >> 1) ^ (($c & 1) ? 0x82F63B78 : 0) for 1 .. 8;
    }
    return $c ^ 0xFFFFFFFF;
}
is(crc32c('123456789'), 0xE3069283, 'the test\'s CRC-32C is the standard one');
my $bucket = crc32c($rot_key // '') >> 24;
# Flip one bit of one byte inside the marker, wherever the data file holds
# it (older copies of the page may lie in free pages: harmless), leaving
# every LMDB structure as it was. 'R' ^ 1 = 'S': the JSON stays valid.
my $file = "$env/data.mdb";
open my $fh, '+<:raw', $file or die "$file: $!";
my $data = do { local $/; <$fh> };
my ($flips, $pos) = (0, 0);
while (($pos = index($data, $marker, $pos)) >= 0) {
    seek($fh, $pos + 20, 0) or die;
    print $fh chr(ord(substr($data, $pos + 20, 1)) ^ 1);
    $flips++;
    $pos += length $marker;
}
close $fh or die;
ok($flips >= 1, "one byte of the marker flipped in $file ($flips copies)");
unlink "$env/lock.mdb";
start_member($n3);
wait_until(30, sub { my $s = cluster_status($n3); $s && 4 == grep { ($_->{table} // '') eq 'deep' && ($_->{role} // '') =~ /leader|follower/ } @{ $s->{groups} } });

my $live = `$nines scrub --cluster $cf --timeout 30 2>&1`;
is($? >> 8, 0, 'the live compare still passes: the maintained digests agree') or diag $live;
($rc, $out, $j) = deep();
is($rc, 1, 'the deep scrub finds the rot: exit 1') or diag $out;
my @f = $j ? @{ $j->{findings} } : ();
is(scalar @f, 1, 'exactly one finding') or diag $out;
is($f[0]{kind}, 'rot', '... of kind rot');
is($f[0]{replica}, 'n3', '... on replica n3');
is($f[0]{table}, 'deep', '... of table deep');
is($f[0]{partition}, $part_of{$rot_group // ''}, "... in partition $f[0]{partition}, the marker's");
is_deeply($f[0]{buckets}, [$bucket], "... in exactly the bucket of that key ($bucket)") or diag $out;
is($f[0]{items}, $f[0]{maintained_items}, '... with as many items as it maintains (bytes changed, not items)');
like($out, qr/FINDING deep partition \d+: replica n3 .*rot/, 'the summary names it');
my @k = @{ $f[0]{keys} // [] };
is(scalar @k, 1, 'drill-down: exactly one key of that bucket reads back differently on n3')
    or diag explain $f[0];
is_deeply($k[0]{key}, { pk => { S => 'rotkey' } }, '... the damaged item\'s key, in DynamoDB JSON');
ok($k[0]{hash} && $k[0]{majority_hash} && $k[0]{hash} ne $k[0]{majority_hash},
   '... with its hash on n3 and the one the other replicas agree on');
like($out, qr/ROT .*"rotkey".* on n3/, 'the summary names the key');

# Bad usage.
is(system("$nines scrub --deep --cluster $cf --rate -1 >/dev/null 2>&1") >> 8, 2, '--rate -1: exit 2');
is(system("$nines scrub --deep --rate 5 >/dev/null 2>&1") >> 8, 2, 'no --cluster: exit 2');
$out = `$nines scrub --deep --cluster $cf --table nosuch 2>&1`;
is($? >> 8, 2, 'a --table no node holds: exit 2, never clean');
like($out, qr/UNDECIDED: table nosuch/, '... naming it');
done_testing();
