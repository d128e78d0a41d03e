# nines scrub as a nightly job, on a real three-node cluster and a real
# PostgreSQL: every run leaves a row in scrub_runs (and one per finding in
# scrub_findings, the key as DynamoDB JSON) written in one transaction; a
# run with a finding and an undecided run are recorded with their exit
# codes; a second scrub while one holds the lock file exits 2 at once,
# naming the holder's pid, and a scrub killed with SIGKILL leaves no lock
# behind; an unreachable PostgreSQL makes the run exit 2 (a nightly job
# whose history is missing is not a success).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use JSON::PP;
use Fcntl qw(:flock);
use Time::HiRes qw(time sleep);
use Nines qw(new_cluster start_member stop_node kill_node ddb cluster_status wait_until bin
             lmdb_edit_items run_scrub);
use Canary qw(start_pg stop_pg pg_dsn psql);

-x '/usr/bin/mdb_dump' && -x '/usr/bin/mdb_load' or plan skip_all => 'lmdb-utils missing';
-x '/usr/lib/postgresql/15/bin/initdb' or plan skip_all => 'PostgreSQL 15 missing';
my $cl = new_cluster(nodes => 3, azs => 3);
my @nodes = @{ $cl->{nodes} };
my ($n1, $n2, $n3) = @nodes;
start_member($_) for @nodes;
my $pg = start_pg();
END { local $?; kill_node($_) for grep { $_->{pid} } @nodes; stop_pg($pg) if $pg }
my $nines = bin('nines');
my $cf = $cl->{path};
my $dsn = pg_dsn($pg);
my $lock = "$cl->{dir}/scrub.lock";

my ($st, $r);
wait_until(20, sub { ($st, $r) = ddb($n1, 'CreateTable', { TableName => 'nightly', BillingMode => 'PAY_PER_REQUEST',
    NinesPartitions => 2, AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }],
    KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' }] }); $st == 200 });
is($st, 200, 'table of 2 partitions created') or diag explain $r;
my $ok = 0;
for my $i (1 .. 200) {
    my $s;
    wait_until(10, sub { ($s) = ddb($nodes[$i % 3], 'PutItem', { TableName => 'nightly',
        Item => { pk => { S => "k$i" }, v => { N => "$i" } } }); $s == 200 });
    $ok++ if $s == 200;
}
is($ok, 200, '200 items written');

sub scrub { run_scrub($cl, qw(--timeout 20), '--lock', $lock, @_) }

# A clean run, recorded.
my ($rc, $out, $j) = scrub('--pg', "'$dsn'");
is($rc, 0, 'a clean scrub: exit 0') or diag $out;
my @runs = psql($pg, 'SELECT run_id, exit_code, partitions, compared, findings, undecided, mode,'
                   . " report->>'run' FROM scrub_runs ORDER BY started_at");
is(scalar @runs, 1, 'one row in scrub_runs') or diag explain \@runs;
is_deeply([@{ $runs[0] // [] }[1 .. 6]], [0, 2, 2, 0, 0, 'live'],
          '... exit 0, 2 partitions, 2 compared, no finding, none undecided, live');
is($runs[0][0], $j->{run}, '... under the run id of the JSON report');
is($runs[0][7], $j->{run}, '... and the whole report is kept as jsonb');

# A deep scrub is recorded too, as mode deep.
($rc, $out, $j) = scrub('--deep', '--rate', '0', '--pg', "'$dsn'");
is($rc, 0, 'a clean deep scrub: exit 0') or diag $out;
my @deep = psql($pg, "SELECT mode, exit_code, findings FROM scrub_runs WHERE run_id = '$j->{run}'");
is_deeply($deep[0], ['deep', 0, 0], '... recorded: mode deep, exit 0, no finding') or diag explain \@deep;

# The lock: held by this test, a scrub refuses at once and names the holder.
open my $lf, '>', $lock or die "$lock: $!";
flock($lf, LOCK_EX | LOCK_NB) or die "flock: $!";
print $lf "$$\n";
$lf->flush;
my $t0 = time;
($rc, $out) = scrub('--pg', "'$dsn'");
is($rc, 2, 'a second scrub while the lock is held: exit 2');
cmp_ok(time - $t0, '<', 10, '... at once (it does not wait)');
like($out, qr/another scrub holds \Q$lock\E \(pid $$\)/, '... naming the lock and the holder') or diag $out;
is(scalar(psql($pg, 'SELECT 1 FROM scrub_runs')), 2, '... and records nothing');
close $lf;

# A scrub killed with SIGKILL while it waits (n3 stopped: it keeps asking
# until --timeout) leaves no lock behind.
my $s3 = cluster_status($n3);
my ($g) = grep { ($_->{table} // '') eq 'nightly' && $_->{partition} == 0 } @{ $s3->{groups} };
is(stop_node($n3), 0, 'n3 stopped');
my $pid = fork // die;
if (!$pid) {
    open STDOUT, '>', '/dev/null';
    open STDERR, '>', '/dev/null';
    exec $nines, 'scrub', '--cluster', $cf, '--timeout', '60', '--lock', $lock;
    exit 127;
}
ok(wait_until(10, sub { (Nines::slurp($lock) // '') =~ /^$pid$/m }), 'the running scrub wrote its pid into the lock file');
kill 'KILL', $pid;
waitpid $pid, 0;
# An undecided run (n3 down), recorded with exit 2.
($rc, $out, $j) = scrub('--pg', "'$dsn'", '--timeout', '3');
is($rc, 2, 'after the SIGKILL the lock is free; with n3 stopped the run is undecided: exit 2') or diag $out;
unlike($out, qr/another scrub holds/, '... and it was not refused by a stale lock');
my @u = psql($pg, "SELECT exit_code, undecided > 0 FROM scrub_runs WHERE run_id = '$j->{run}'");
is_deeply($u[0], [2, 't'], 'the undecided run is recorded: exit 2, undecided > 0');

# A finding: one item deleted at rest from n3's LMDB while it is stopped.
# (three nodes, three replicas: n3 holds every partition; its status was
# read before it stopped.)
ok($g, "partition 0 is $g->{group}");
my $nth = 0;
is(lmdb_edit_items($n3, $g->{group}, sub { ++$nth == 6 ? undef : $_[0] }), 1,
   "one item of partition 0 dropped at rest on n3");
start_member($n3);
wait_until(30, sub { my $s = cluster_status($n3); $s && grep { ($_->{table} // '') eq 'nightly' && ($_->{role} // '') =~ /leader|follower/ } @{ $s->{groups} } });
($rc, $out, $j) = scrub('--pg', "'$dsn'", '--table', 'nightly');
is($rc, 1, 'the item lost at rest is found: exit 1') or diag $out;
my @fr = psql($pg, "SELECT f.table_name, f.partition, f.replica, f.kind, r.findings FROM scrub_findings f"
                 . " JOIN scrub_runs r USING (run_id) WHERE run_id = '$j->{run}'");
cmp_ok(scalar @fr, '>=', 1, 'the finding is in scrub_findings') or diag explain \@fr;
is_deeply([@{ $fr[0] // [] }[0 .. 2]], ['nightly', 0, 'n3'], '... table, partition and replica');
is($fr[0][4], scalar @{ $j->{findings} }, '... and scrub_runs counts the findings of the report');

# PostgreSQL unreachable: the run says so and exits 2.
stop_pg($pg);
($rc, $out) = scrub('--pg', "'$dsn'", '--table', 'nightly');
is($rc, 2, 'PostgreSQL down: exit 2, whatever the scrub found');
like($out, qr/postgres/i, '... saying the history could not be written') or diag $out;
done_testing();
