# nines scrub drill-down and --repair, on a real three-node cluster with
# data. With n3 stopped, its LMDB file is damaged at rest in two ways: one
# item replaced by a well-formed different item, one item deleted (and the
# partition's digest record removed, so that n3 rebuilds an honest digest
# from what is left when it opens). Then:
#  - `nines scrub --json` names each damaged key (DynamoDB JSON), the
#    replica (n3) and the kind (different, missing), what each replica
#    holds, and reads at most 1,000 keys to find them;
#  - `--repair --max-repairs 1` refuses (exit 2) and changes nothing;
#  - `--repair` repairs both through the log, scrubs again: clean; a
#    further scrub is clean (writes to other keys of the table run at full
#    speed from the first scrub to the end of the repair: no other key is
#    named); a repair whose expectation no longer holds changes nothing; every acknowledged write is readable with its
#    last value from the stored bytes of every replica (NinesAdmin.ScrubItem);
#  - with n2 and n3 both damaged differently on the same key (no majority),
#    `--repair` refuses (exit 2) and changes nothing.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use JSON::PP;
use HTTP::Tiny;
use Nines qw(new_cluster start_member stop_node kill_node ddb cluster_status wait_until bin lmdb_edit_items run_scrub);

-x '/usr/bin/mdb_dump' && -x '/usr/bin/mdb_load' or plan skip_all => 'lmdb-utils missing';
my $cl = new_cluster(nodes => 3, azs => 3);
my @nodes = @{ $cl->{nodes} };
my ($n1, $n2, $n3) = @nodes;
my %node = (n1 => $n1, n2 => $n2, n3 => $n3);
start_member($_) for @nodes;
END { local $?; kill_node($_) for grep { $_->{pid} } @nodes }
my $nines = bin('nines');
my $cf = $cl->{path};
my $T = 'fixme';

my ($st, $r);
wait_until(20, sub { ($st, $r) = ddb($n1, 'CreateTable', { TableName => $T, BillingMode => 'PAY_PER_REQUEST',
    NinesPartitions => 2, AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }],
    KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' }] }); $st == 200 });
is($st, 200, 'table of 2 partitions created') or diag explain $r;

# 600 items, the first 100 overwritten once: %last holds every acknowledged
# write's last value.
my %last;
my $ok = 0;
for my $round (1, 2) {
    for my $i (1 .. ($round == 1 ? 600 : 100)) {
        my $v = $round * 100000 + $i;
        my $s;
        wait_until(10, sub { ($s) = ddb($nodes[$i % 3], 'PutItem', { TableName => $T,
            Item => { pk => { S => "item-$i" }, v => { N => "$v" } } }); $s == 200 });
        if ($s == 200) { $ok++; $last{"item-$i"} = $v }
    }
}
is($ok, 700, '700 writes acknowledged (600 items, 100 overwritten)');

sub scrub { run_scrub($cl, @_) }

sub group_of {
    my ($n, $part) = @_;
    my $s = cluster_status($n);
    my ($g) = grep { ($_->{table} // '') eq $T && $_->{partition} == $part } @{ $s->{groups} };
    return $g;
}

# A NinesAdmin call (the cluster has no credentials): (status, response).
sub admin {
    my ($n, $op, $req) = @_;
    my $r = HTTP::Tiny->new(timeout => 10)->request('POST', "$n->{url}/", {
        headers => { 'Content-Type' => 'application/x-amz-json-1.0', 'X-Amz-Target' => "NinesAdmin.$op" },
        content => encode_json($req) });
    return ($r->{status}, eval { decode_json($r->{content}) } // {});
}

# The stored item of key k on node n (its own bytes, not the leader's):
# (present, item hashref, hash) or () when no partition answers.
sub stored {
    my ($n, $k) = @_;
    for my $part (0, 1) {
        my ($s, $resp) = admin($n, 'ScrubItem', { TableName => $T, Partition => $part,
            Key => { pk => { S => $k } } });
        next if $s != 200;
        return ($resp->{Present} ? 1 : 0, $resp->{Item}, $resp->{Hash});
    }
    return ();
}

sub serving {
    my ($n) = @_;
    return wait_until(60, sub { my $s = cluster_status($n); $s && 2 == grep { ($_->{table} // '') eq $T
        && ($_->{role} // '') =~ /leader|follower/ } @{ $s->{groups} } });
}

my ($rc, $out, $j) = scrub();
is($rc, 0, 'clean before the damage') or diag $out;

# Two items of partition 0 on n3: one replaced, one deleted.
my $g0 = group_of($n3, 0);
ok($g0, "n3 holds partition 0 ($g0->{group})");
is(stop_node($n3), 0, 'n3 stopped');
my (%victim, @seen);
my $changed = lmdb_edit_items($n3, $g0->{group}, sub {
    my ($item) = @_;
    my $k = $item->{pk}{S};
    push @seen, $k;
    if (@seen == 7) { $victim{different} = $k; return { %$item, v => { N => '424242' } } }
    if (@seen == 30) { $victim{missing} = $k; return undef }
    return $item;
});
is($changed, 2, "n3 damaged at rest: $victim{different} replaced, $victim{missing} deleted");
start_member($n3);
ok(serving($n3), 'n3 serves both partitions again');

# From here until the repair is done, writes run at full speed on other
# keys of the same table (nines load: keys k0..k1999, both partitions):
# the drill-down must name the two damaged keys and nothing else.
my $load = fork // die;
if (!$load) {
    open STDOUT, '>', "$cl->{dir}/load.out";
    open STDERR, '>&', \*STDOUT;
    exec $nines, 'load', '--endpoint', join(',', map { "http://127.0.0.1:$_->{port}" } @nodes),
        '--table', $T, '--op', 'put', '--duration', '20', '--concurrency', '8', '--keys', '2000';
    exit 127;
}
my $t_load = time;
sleep 1;
($rc, $out, $j) = scrub();
is($rc, 1, 'the damage is found (writes running): exit 1') or diag $out;
my @f = $j ? sort { $a->{kind} cmp $b->{kind} } @{ $j->{findings} } : ();
is(scalar @f, 2, 'two findings') or diag $out;
is_deeply([map { $_->{kind} } @f], ['different', 'missing'], '... kinds different and missing');
is_deeply($f[0]{key}, { pk => { S => $victim{different} } }, "... the replaced key in DynamoDB JSON ($victim{different})");
is_deeply($f[1]{key}, { pk => { S => $victim{missing} } }, "... the deleted key ($victim{missing})");
is_deeply([map { "$_->{table}/$_->{partition}/$_->{replica}" } @f], ["$T/0/n3", "$T/0/n3"],
    '... both in partition 0 on replica n3');
ok(!$f[1]{holds}{n3}{present} && $f[1]{holds}{n1}{present} && $f[1]{holds}{n2}{present}
    && $f[1]{holds}{n1}{hash} eq $f[1]{holds}{n2}{hash}, '... missing: n3 holds none, n1 and n2 the same item');
ok($f[0]{holds}{n3}{present} && $f[0]{holds}{n3}{hash} ne $f[0]{holds}{n1}{hash}
    && $f[0]{holds}{n1}{hash} eq $f[0]{holds}{n2}{hash}, '... different: n3 another hash than n1 and n2');
ok($j->{keys_read} > 0 && $j->{keys_read} <= 1000, "$j->{keys_read} keys read to locate them (<= 1,000)");
diag "keys read: $j->{keys_read}; looked at by the replicas: $j->{keys_scanned}";
like($out, qr/FINDING $T partition 0: replica n3 missing key \{"pk":\{"S":"$victim{missing}"\}\}/,
    'the summary names the missing key');

# Too many findings for --max-repairs: refused, nothing changed.
my @before = stored($n3, $victim{different});
($rc, $out, $j) = scrub('--repair', '--max-repairs', '1');
is($rc, 2, '--max-repairs 1 with 2 findings: exit 2') or diag $out;
like($out, qr/REPAIR REFUSED: 2 key findings exceed --max-repairs 1.*nothing changed/, '... saying why') or diag $out;
ok(@before && $before[1]{v}{N} eq '424242', 'n3 holds the replaced item as damaged (ScrubItem reads its own bytes)');
is_deeply([stored($n3, $victim{different})], \@before, '... the replaced item on n3 unchanged');
is((stored($n3, $victim{missing}))[0], 0, '... the deleted item still absent on n3');

# The repair.
($rc, $out, $j) = scrub('--repair');
is($rc, 0, '--repair: exit 0 (repaired, and the scrub after is clean)') or diag $out;
my @rep = $j && $j->{repair} ? @{ $j->{repair}{repairs} } : ();
is(scalar(grep { $_->{result} eq 'repaired' && $_->{replica} eq 'n3' } @rep), 2, '... two keys repaired on n3')
    or diag explain $j->{repair};
is(scalar @{ $j->{repair}{findings_after} // [1] }, 0, '... and the scrub after finds nothing');
like($out, qr/after repair: 2 partition\(s\), 2 compared at a marker, 0 finding/, '... says so') or diag $out;
ok(time - $t_load < 20, 'the repair ran while the writes did (' . (time - $t_load) . ' s)');
waitpid($load, 0);
is($? >> 8, 0, 'nines load finished') or diag Nines::slurp("$cl->{dir}/load.out");
($rc, $out, $j) = scrub();
is($rc, 0, 'a further scrub is clean') or diag $out;

# The race guard: a repair whose expectation no longer holds on the
# replica it names (written since) changes nothing.
my ($present, $item, $hash) = stored($n3, $victim{missing});
($st, $r) = admin($n3, 'ScrubRepair', { TableName => $T, Partition => 0, Key => { pk => { S => $victim{missing} } },
    Replica => 'n3', Expect => 'absent', Absent => JSON::PP::true });
ok($st == 200 && !$r->{Repaired} && $r->{Why} =~ /written since/,
    'a repair expecting "absent" where n3 now holds the item: not repaired') or diag explain $r;
is_deeply([stored($n3, $victim{missing})], [$present, $item, $hash], '... and n3 still holds it');
($st, $r) = admin($n1, 'ScrubRepair', { TableName => $T, Partition => 0, Key => { pk => { S => $victim{missing} } },
    Replica => 'n3', Expect => 'absent', Item => '{"pk":{"S":"someone-else"}}' });
is($st, 400, 'a repair whose item is not of its key: refused') or diag explain $r;

my $bad = 0;
for my $k (sort keys %last) {
    for my $n (@nodes) {
        my ($present, $item) = stored($n, $k);
        next if $present && ($item->{v}{N} // '') eq "$last{$k}";
        $bad++;
        diag "$n->{id}: $k is " . ($present ? "v=$item->{v}{N}" : 'absent') . ", not $last{$k}" if $bad < 5;
    }
}
is($bad, 0, 'every acknowledged write: its last value in the stored bytes of every replica ('
    . (3 * keys %last) . ' reads)');

# No majority: n2 and n3 hold two different wrong values of one key.
my $g2 = group_of($n2, 1);
my $g3 = group_of($n3, 1);
ok($g2 && $g3, 'n2 and n3 hold partition 1');
is(stop_node($n2) + stop_node($n3), 0, 'n2 and n3 stopped');
my $target;
my $c2 = lmdb_edit_items($n2, $g2->{group}, sub { my ($i) = @_; $target //= $i->{pk}{S};
    $i->{pk}{S} eq $target ? { %$i, v => { N => '111' } } : $i });
my $c3 = lmdb_edit_items($n3, $g3->{group}, sub { my ($i) = @_;
    $i->{pk}{S} eq $target ? { %$i, v => { N => '222' } } : $i });
is($c2 + $c3, 2, "$target damaged differently on n2 and n3");
start_member($n2);
start_member($n3);
ok(serving($n2) && serving($n3), 'n2 and n3 serve again');
($rc, $out, $j) = scrub('--repair');
is($rc, 2, 'no majority: --repair exits 2') or diag $out;
like($out, qr/REPAIR REFUSED: .*no majority.*nothing changed/, '... refused, saying why') or diag $out;
is(join(',', map { (stored($_, $target))[1]{v}{N} } $n1, $n2, $n3), "$last{$target},111,222",
    '... and changes nothing');
done_testing();
