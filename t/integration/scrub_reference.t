# The reference replica (docs/scrub.md, "The reference replica"): `nines
# scrub --reference URL` rebuilds every partition at the scrub marker from
# the WAL archive alone (the newest archived snapshot, then the pieces,
# through the store's own state machine) and compares it with the live
# replicas: it agrees with healthy replicas; when one replica's data was
# damaged at rest and only two replicas answer (no majority of their
# own), the reference breaks the tie and blames the damaged one; a
# corrupted archived piece makes the archive the one blamed, named.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use File::Temp qw(tempdir);
use Test::More;
use Nines qw(new_cluster start_member stop_node kill_node ddb cluster_status wait_until group_terms bin
             lmdb_edit_items run_scrub json slurp);

my $ad = tempdir('nines-refarch-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{NINES_KEEP});
my $url = "file://$ad";
my $cl = new_cluster(nodes => 3, azs => 3,
    extra => "archive: {url: '$url', seal_after: 1s, verify_after: 2s, snapshot_every: 150}\n");
my @nodes = @{ $cl->{nodes} };
my ($n1, $n2, $n3) = @nodes;
start_member($_) for @nodes;
END { kill_node($_) for grep { $_->{pid} } @nodes }

my ($st);
wait_until(15, sub { ($st) = ddb($n1, 'CreateTable', { TableName => 'refd',
    BillingMode => 'PAY_PER_REQUEST', NinesPartitions => 2,
    AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' },
                             { AttributeName => 'sk', AttributeType => 'N' }],
    KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' },
                  { AttributeName => 'sk', KeyType => 'RANGE' }] }); $st == 200 });
is($st, 200, 'table created (hash and range key, 2 partitions)');
my $ok = 0;
for my $i (1 .. 500) {
    my $s;
    wait_until(10, sub { ($s) = ddb($nodes[$i % 3], 'PutItem', { TableName => 'refd',
        Item => { pk => { S => 'k' . ($i % 97) }, sk => { N => "$i" }, v => { S => 'x' x 50 } } });
        $s == 200 });
    $ok++ if $s == 200;
}
# Overwrites, deletes and conditional writes replay as they applied.
for my $i (1 .. 60) {
    my $s;
    wait_until(10, sub { ($s) = ddb($n2, $i % 3 ? 'UpdateItem' : 'DeleteItem', { TableName => 'refd',
        Key => { pk => { S => 'k' . ($i % 97) }, sk => { N => "$i" } },
        ($i % 3 ? (UpdateExpression => 'SET v = :v, n = :n',
                   ExpressionAttributeValues => { ':v' => { S => "u$i" }, ':n' => { N => "$i" } })
                : ()) }); $s == 200 });
    $ok++ if $s == 200;
}
is($ok, 560, '500 puts, 40 updates, 20 deletes');

sub scrub { run_scrub($cl, '--reference', $url, '--reference-wait', '30', @_) }
my ($rc, $out, $j) = scrub();
is($rc, 0, 'scrub --reference: exit 0') or diag $out;
my @v = @{ ($j // {})->{reference} // [] };
is(scalar(@v), 2, 'a reference verdict for each partition');
is(scalar(grep { $_->{verdict} eq 'agrees' } @v), 2, 'both agree with the replicas')
    or diag explain \@v;
like($out, qr/REFERENCE refd partition 0 at index \d+: agrees; \d+ items from \d+ archived entries/,
     'the report says so');
my $items = 0; $items += $_->{items} for @v;
is($items, 480, 'the references hold the 480 items the table holds');

# The builder on its own: from an archived snapshot, then the pieces.
my $s1 = cluster_status($n1);
my ($g0) = grep { ($_->{table} // '') eq 'refd' && $_->{partition} == 0 } @{ $s1->{groups} };
my @snaps = glob("$ad/$g0->{group}/snap/*.json");
ok(@snaps, 'the archive holds a snapshot of partition 0 (snapshot_every 150)');
my $ref = `@{[bin('nines')]} reference $url --group $g0->{group} --upto $v[0]{lsn} --key pk:S,sk:N 2>&1`;
is($? >> 8, 0, 'nines reference: exit 0') or diag $ref;
like($ref, qr/reference at \d+ from snapshot [1-9]\d* and \d+ entries of \d+ pieces/,
     '... rebuilt from the snapshot and the pieces after it') or diag $ref;
my $bad = `@{[bin('nines')]} reference $url --group $g0->{group} --upto 99999999 --key pk:S,sk:N 2>&1`;
is($? >> 8, 1, 'past the archive: exit 1');
like($bad, qr/holds entries up to \d+, not yet 99999999/, '... saying how far it holds') or diag $bad;
$bad = `@{[bin('nines')]} reference $url --group $g0->{group} --upto 5 --key pk 2>&1`;
is($? >> 8, 2, 'a key without its type: exit 2');

# One replica damaged at rest, and only two answer: no majority of their
# own; the reference breaks the tie.
my ($g) = grep { ($_->{table} // '') eq 'refd' && $_->{partition} == 1 } @{ cluster_status($n3)->{groups} };
is(stop_node($n3), 0, 'n3 stopped');
my ($nth, $rotten) = (0);
is(lmdb_edit_items($n3, $g->{group}, sub { ++$nth == 7 ? do { $rotten = $_[0]; { %{ $_[0] }, v => { S => 'rot' } } } : $_[0] }), 1,
   'one item of partition 1 changed at rest on n3');
start_member($n3);
wait_until(30, sub { my $s = cluster_status($n3); $s && grep { ($_->{table} // '') eq 'refd' && ($_->{role} // '') =~ /leader|follower/ } @{ $s->{groups} } });
# One healthy replica away: two replicas answer, and they differ. The one
# kept must lead partition 1: the scrub marker goes through the leader's
# log, and when the damaged n3 leads, the archiver may take the partition's
# next snapshot at the marker from n3's rotten state (its digest was rebuilt
# from it) — a reference built from that snapshot sides with n3. So when n3
# leads, it is restarted until a healthy replica does.
my $leader_of_1 = sub { group_terms(@nodes)->{ $g->{group} }[1] // '' };
for my $try (1 .. 5) {
    my $l;
    wait_until(30, sub { $l = $leader_of_1->(); $l ne '' });
    last if $l ne 'n3';
    stop_node($n3);
    wait_until(30, sub { my $x = $leader_of_1->(); $x ne '' && $x ne 'n3' });
    start_member($n3);
    wait_until(30, sub { my $s = cluster_status($n3); $s && grep { ($_->{table} // '') eq 'refd' && ($_->{role} // '') =~ /leader|follower/ } @{ $s->{groups} } });
}
my $keep = $leader_of_1->();
isnt($keep, 'n3', "a healthy replica ($keep) leads partition 1");
my ($gone) = grep { $_ != $n3 && $_->{id} ne $keep } @nodes;
is(stop_node($gone), 0, "$gone->{id} stopped: two replicas answer, and they differ");
($rc, $out, $j) = scrub('--table', 'refd', '--timeout', '20');
is($rc, 1, 'scrub --reference: exit 1 (a finding)') or diag $out;
my ($v1) = grep { $_->{partition} == 1 } @{ ($j // {})->{reference} // [] };
is($v1 && $v1->{verdict}, 'replica', 'partition 1: the reference sides with a replica') or diag explain $v1;
is_deeply($v1 && $v1->{blame}, ['n3'], '... and blames n3, the damaged one');
ok($v1 && ref $v1->{buckets} && @{ $v1->{buckets} } == 1, '... in one bucket');
my @kf = grep { ($_->{source} // '') eq 'reference' } @{ ($j // {})->{findings} // [] };
is(scalar(@kf), 1, 'the reference\'s drill-down locates one key') or diag explain \@kf;
is_deeply($kf[0] && $kf[0]{key}, { pk => $rotten->{pk}, sk => $rotten->{sk} },
          "... the damaged one ($rotten->{pk}{S}, $rotten->{sk}{N})");
is($kf[0] && $kf[0]{replica}, 'n3', '... on n3');
is($kf[0] && $kf[0]{kind}, 'different', '... which holds a different item');
like($out, qr/FINDING refd partition 1: replica n3 different key .*found by the reference replica/,
     'the report names n3 and the key') or diag $out;
start_member($gone);

# A corrupted archived piece: the reference refuses it and blames the
# archive, naming the piece.
my @pieces = sort glob("$ad/$g0->{group}/log/*.piece");
# The replay starts at the newest snapshot: the piece after it is read.
my ($snap_ix) = reverse sort { $a <=> $b } map { m{/(\d+)\.json$} ? $1 + 0 : () } glob("$ad/$g0->{group}/snap/*.json");
my ($victim) = grep { m{-(\d+)\.piece$} && $1 > ($snap_ix // 0) } @pieces;
ok($victim, "a piece the replay needs ($victim)");
if ($victim && open my $p, '+<', $victim) {
    binmode $p;
    seek $p, 100, 0; read $p, my $b, 1; seek $p, 100, 0; print $p chr(ord($b) ^ 1); close $p;
}
wait_until(30, sub { my $s = cluster_status($gone); $s && grep { ($_->{table} // '') eq 'refd' && ($_->{role} // '') =~ /leader|follower/ } @{ $s->{groups} } });
($rc, $out, $j) = scrub('--table', 'refd');
is($rc, 1, 'scrub --reference with a corrupt piece: exit 1') or diag $out;
my ($v0) = grep { $_->{partition} == 0 } @{ ($j // {})->{reference} // [] };
is($v0 && $v0->{verdict}, 'archive', 'partition 0: the archive is blamed') or diag explain $v0;
my ($vname) = $victim =~ m{([^/]+/log/[^/]+)$};
like($v0 && $v0->{why}, qr/\Q$vname\E/, "... naming $vname");

for my $m (@nodes) { is(stop_node($m), 0, "$m->{id} stopped cleanly") }
done_testing;
