# The WAL archive on a three-node cluster (docs/archive.md): every
# partition's committed log goes to a file:// archive in sealed pieces
# that `nines archive verify` proves whole (checksums, no gap, no
# overlap); the replicas that did not upload a piece check it byte for
# byte; logs are compacted only behind the archive, and held while it is
# unreachable (writes go on, the status says how far behind it is); a
# leader killed mid-run leaves neither a gap nor an overlap; a piece
# corrupted in the archive is named by the replicas that check it and by
# verify; a deleted piece is a gap with its exact range.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use File::Temp qw(tempdir);
use POSIX ();
use Test::More;
use Nines qw(new_cluster start_member stop_node kill_node ddb cluster_status wait_until bin
             slurp json);

my $ad = tempdir('nines-arch-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{NINES_KEEP});
my $url = "file://$ad";
my $cl = new_cluster(nodes => 3, azs => 3,
    extra => "storage: {compact_entries: 300}\n"
           . "archive: {url: '$url', seal_after: 1s, verify_after: 3s, piece_size: 64KiB}\n");
my @nodes = @{ $cl->{nodes} };
start_member($_) for @nodes;
END { kill_node($_) for grep { $_->{pid} } @nodes }

my ($st);
wait_until(15, sub { ($st) = ddb($nodes[0], 'CreateTable', { TableName => 'arch',
    BillingMode => 'PAY_PER_REQUEST', NinesPartitions => 2,
    AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }],
    KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' }] }); $st == 200 });
is($st, 200, 'table created (2 partitions, 3 replicas each)');

sub put_range {
    my ($from, $to, @via) = @_;
    @via = grep { $_->{pid} } @nodes unless @via;
    my $ok = 0;
    for my $i ($from .. $to) {
        my $s;
        wait_until(10, sub { ($s) = ddb($via[$i % @via], 'PutItem', { TableName => 'arch',
            Item => { pk => { S => "k$i" }, v => { N => "$i" }, pad => { S => 'x' x 100 } } });
            $s == 200 });
        $ok++ if $s == 200;
    }
    return $ok;
}
sub archive_of { my ($m) = @_; my $s = cluster_status($m) or return undef; $s->{archive} }
sub caught_up {
    for my $m (grep { $_->{pid} } @nodes) {
        my $a = archive_of($m) or return 0;
        return 0 if $a->{behind_entries} || $a->{pending_pieces};
    }
    return 1;
}
sub verify {
    my $json = "$cl->{dir}/verify.json";
    unlink $json;
    my $out = `@{[bin('nines')]} archive verify $url --json $json 2>&1`;
    my $rc = $? >> 8;
    return ($rc, $out, -s $json ? eval { json()->decode(slurp($json)) } : undef);
}
sub manifests { sort glob("$ad/*/log/*.json") }
sub sum_of { my ($k) = @_; my $t = 0; $t += (archive_of($_) // {})->{$k} // 0 for grep { $_->{pid} } @nodes; $t }

# --- 1. Under writes, every piece is archived and checked -----------------
is(put_range(1, 1200), 1200, '1200 writes');
ok(wait_until(40, \&caught_up), 'every node saw the archive catch up with its replicas')
    or diag explain [map { archive_of($_) } @nodes];
my ($rc, $out, $rep) = verify();
is($rc, 0, 'nines archive verify: exit 0') or diag $out;
like($out, qr/0 problem\(s\).*VERIFIED/, '... VERIFIED');
my @g = @{ ($rep // {})->{groups} // [] };
is(scalar(@g), 2, 'both partitions are in the archive');
ok((grep { $_->{first} == 1 && $_->{last} >= 400 && $_->{table} eq 'arch' } @g) == 2,
   'each from entry 1 on (' . join(', ', map { "$_->{group} 1..$_->{last}" } @g) . ')');
my $pieces = () = manifests();
cmp_ok($pieces, '>=', 4, "the log was cut into sealed pieces ($pieces)");
# Each piece was uploaded once and checked by the two replicas that did not
# upload it (no leader changed here).
ok(wait_until(10, sub { sum_of('verified') >= 2 * $pieces }),
   'the other replicas checked every piece byte for byte (' . sum_of('verified') . ' checks)');
is(sum_of('uploaded') + sum_of('taken_over'), $pieces, 'one upload per piece');
is(sum_of('mismatches'), 0, 'no replica found a difference');
# Logs are compacted behind the archive.
my $compacted = wait_until(10, sub {
    for my $m (@nodes) {
        my $s = cluster_status($m) or return 0;
        return 0 if grep { ($_->{table} // '') eq 'arch' && $_->{first_index} <= 1 } @{ $s->{groups} };
    }
    1 });
ok($compacted, 'every replica compacted its log once it was archived');

# --- 2. An unreachable archive holds the log; writes go on -----------------
sub archived_end {
    my %end;
    for (manifests()) { my ($gr, $l) = m{/([^/]+)/log/\d+-(\d+)\.json$} or next; $end{$gr} = $l + 0 if !$end{$gr} || $l > $end{$gr} }
    return \%end;
}
my $end = archived_end();
rename $ad, "$ad.away" or die "rename: $!";
open my $f, '>', $ad or die; close $f; # a file where the directory was: every put fails
is(put_range(1201, 1900), 700, '700 writes while the archive is unreachable');
my $behind = wait_until(20, sub {
    my $t = 0; my $e = 0;
    for my $m (@nodes) { my $a = archive_of($m) or next; $t = $a->{behind_entries} if $a->{behind_entries} > $t; $e += $a->{errors} }
    $t >= 300 && $e > 0 ? $t : undef });
ok($behind, "the status says how far behind the archive is ($behind entries) and counts the failures");
my $st1 = cluster_status($nodes[0]);
like($st1->{archive}{last_error} // '', qr/\S/, 'and the last error (' . ($st1->{archive}{last_error} // '') . ')');
my $metrics = HTTP::Tiny->new(timeout => 5)->get("$nodes[0]{url}/metrics")->{content} // '';
like($metrics, qr/^nines_archive_behind_entries [1-9]\d*$/m, '/metrics has the lag as a gauge');
# No replica compacted past what the archive holds.
my $held = 1;
for my $m (@nodes) {
    my $s = cluster_status($m) or next;
    for my $gr (grep { ($_->{table} // '') eq 'arch' } @{ $s->{groups} }) {
        $held = 0, diag("$m->{id} $gr->{group} starts at $gr->{first_index}, archive ends at " . ($end->{ $gr->{group} } // 0))
            if $gr->{first_index} > ($end->{ $gr->{group} } // 0) + 1;
    }
}
ok($held, 'no replica compacted entries the archive does not hold');
unlink $ad;
rename "$ad.away", $ad or die "rename back: $!";
ok(wait_until(60, \&caught_up), 'once it is back, the archive catches up');
($rc, $out) = verify();
is($rc, 0, '... with no gap') or diag $out;

# --- 3. A leader killed mid-run: no gap, no overlap ------------------------
my ($leader) = grep { my $s = cluster_status($_);
    $s && grep { ($_->{table} // '') eq 'arch' && $_->{partition} == 0 && $_->{role} eq 'leader' } @{ $s->{groups} } } @nodes;
ok($leader, "partition 0 has a leader ($leader->{id})");
my @others = grep { $_ != $leader } @nodes;
is(put_range(1901, 2100), 200, '200 writes');
kill_node($leader);
is(put_range(2101, 2500, @others), 400, 'its node killed (SIGKILL): 400 more writes through the others');
start_member($leader);
is(put_range(2501, 2600), 100, 'restarted: 100 more');
ok(wait_until(60, \&caught_up), 'the archive caught up on every node')
    or diag explain [map { archive_of($_) } @nodes];
($rc, $out, $rep) = verify();
is($rc, 0, 'verify: no gap, no overlap after the failover') or diag $out;
is(sum_of('mismatches'), 0, 'no replica found a difference');

# --- 4. A piece corrupted in the archive -----------------------------------
my %before = map { $_ => 1 } manifests();
my $new;
my $writer = fork // die;
if (!$writer) { put_range(2601, 2700); POSIX::_exit(0) } # not exit: END would kill the nodes
for (1 .. 1000) { ($new) = grep { !$before{$_} } manifests(); last if $new; select undef, undef, undef, 0.02 }
ok($new, 'a new piece was archived');
(my $piece = $new // '') =~ s/\.json$/.piece/;
if (open my $p, '+<', $piece) {
    binmode $p;
    my $size = -s $piece;
    seek $p, int($size / 2), 0; read $p, my $b, 1;
    seek $p, int($size / 2), 0; print $p chr(ord($b) ^ 0x40);
    close $p;
}
waitpid $writer, 0;
ok(wait_until(20, sub { sum_of('mismatches') >= 1 }),
   'a replica that checked it reports the mismatch (' . sum_of('mismatches') . ')');
my ($name) = $piece =~ m{([^/]+/log/[^/]+)$};
my $logs = join '', map { slurp($_->{log}) } @nodes;
like($logs, qr/\Q$name\E differs from this replica's log/, '... naming the piece in its log');
($rc, $out, $rep) = verify();
is($rc, 1, 'verify: exit 1');
ok((grep { $_->{object} eq $name && $_->{problem} =~ /corrupt|SHA-256/ } @{ $rep->{problems} // [] }),
   "... naming $name") or diag $out;

# --- 5. A piece deleted: a gap with its exact range ------------------------
open my $p, '>', $piece or die; close $p; # (the corrupt one stays named)
# A piece inside a group's log (not its first, not the corrupt one).
my ($ng) = $new =~ m{/([^/]+)/log/};
my @m = grep { !m{/\Q$ng\E/} } manifests();
my $mid = $m[int(@m / 2)];
my ($gr, $from, $to) = $mid =~ m{/([^/]+)/log/(\d+)-(\d+)\.json$};
(my $mp = $mid) =~ s/\.json$/.piece/;
unlink $mid, $mp;
($rc, $out, $rep) = verify();
is($rc, 1, 'a piece deleted: verify exit 1');
my $range = ($from + 0) . '..' . ($to + 0);
ok((grep { $_->{problem} =~ /gap/ && "$_->{found} $_->{expected} $_->{object}" =~ /\Q$range\E/ }
    @{ $rep->{problems} // [] }), "... a gap of exactly entries $range in $gr") or diag $out;

for my $m (@nodes) { is(stop_node($m), 0, "$m->{id} stopped cleanly") }
done_testing;
