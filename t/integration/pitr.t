# Point-in-time restore through DynamoDB's API and the real AWS CLI
# (docs/archive.md, "Point-in-time restore"): with a WAL archive every
# table is restorable; describe-continuous-backups reports the window
# truthfully; restore-table-to-point-in-time at a time between two known
# writes gives exactly the state after the first (items, overwrites and
# deletes as they were then), rebuilt from the archive; the latest
# restorable time gives everything archived; bad requests get DynamoDB's
# errors; a cluster without an archive says point-in-time recovery is off.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);
use Test::More;
use Nines qw(new_cluster start_member stop_node kill_node ddb aws wait_until start_node);

plan skip_all => 'the AWS CLI (/usr/bin/aws) is missing' unless -x '/usr/bin/aws';
my $ad = tempdir('nines-pitr-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{NINES_KEEP});
my $cl = new_cluster(nodes => 3, azs => 3,
    extra => "archive: {url: 'file://$ad', seal_after: 1s, verify_after: 1s}\n");
my @nodes = @{ $cl->{nodes} };
my $n1 = $nodes[0];
start_member($_) for @nodes;
END { kill_node($_) for grep { $_->{pid} } @nodes }

my ($rc, $out, $err);
sub cli { ($rc, $out, $err) = aws($n1, ['dynamodb', @_]); return $out }
cli('create-table', '--table-name', 'orders', '--attribute-definitions',
    'AttributeName=id,AttributeType=S', '--key-schema', 'AttributeName=id,KeyType=HASH',
    '--billing-mode', 'PAY_PER_REQUEST', '--tags', 'Key=nines:partitions,Value=4');
is($rc, 0, 'create-table (4 partitions)') or diag $err;

sub put {
    my ($id, $v) = @_;
    my $s;
    wait_until(10, sub { ($s) = ddb($nodes[int(rand 3)], 'PutItem', { TableName => 'orders',
        Item => { id => { S => $id }, v => { N => "$v" } } }); $s == 200 });
    return $s == 200;
}
my $ok = 0;
$ok += put("o$_", $_) for 1 .. 200;
my $s;
wait_until(10, sub { ($s) = ddb($n1, 'DeleteItem', { TableName => 'orders', Key => { id => { S => 'o7' } } }); $s == 200 });
$ok++ if $s == 200;
is($ok, 201, '200 items written, one deleted');
sleep 1.5;
my $t = time;
sleep 1.5;
# After the restore point: an overwrite, a new item, a delete.
$ok = put('o1', 1000) + put('late', 1);
wait_until(10, sub { ($s) = ddb($n1, 'DeleteItem', { TableName => 'orders', Key => { id => { S => 'o2' } } }); $s == 200 });
is($ok + ($s == 200), 3, 'after the restore point: o1 overwritten, "late" added, o2 deleted');

my $d = cli('describe-continuous-backups', '--table-name', 'orders');
is($rc, 0, 'describe-continuous-backups') or diag $err;
my $pd = ref $d ? $d->{ContinuousBackupsDescription}{PointInTimeRecoveryDescription} : {};
is($pd->{PointInTimeRecoveryStatus}, 'ENABLED', 'point-in-time recovery is ENABLED (an archive is configured)');
ok($pd->{EarliestRestorableDateTime} && $pd->{LatestRestorableDateTime},
   "the CLI shows the window ($pd->{EarliestRestorableDateTime} .. $pd->{LatestRestorableDateTime})");
# The same in seconds (the CLI prints ISO 8601).
sub window {
    my ($st, $b) = ddb($n1, 'DescribeContinuousBackups', { TableName => 'orders' });
    my $w = $st == 200 ? $b->{ContinuousBackupsDescription}{PointInTimeRecoveryDescription} : {};
    return ($w->{EarliestRestorableDateTime} // 0, $w->{LatestRestorableDateTime} // 0);
}
my ($early) = window();
ok($early > 0 && $early <= $t, 'earliest: the table\'s creation, before the writes');
# The restore point must be inside the window: wait until it is.
ok(wait_until(20, sub { (window())[1] > $t }), 'the restore point becomes restorable');
my $r = cli('restore-table-to-point-in-time', '--source-table-name', 'orders',
            '--target-table-name', 'orders_then', '--restore-date-time', sprintf('%.3f', $t));
is($rc, 0, 'restore-table-to-point-in-time at the point between the writes') or diag $err;
is(ref $r && $r->{TableDescription}{RestoreSummary}{RestoreInProgress}, JSON::PP::true(), '... answered at once, the restore in progress');
ok(wait_until(60, sub { my $x = cli('describe-table', '--table-name', 'orders_then');
    ref $x && $x->{Table}{TableStatus} eq 'ACTIVE' && !$x->{Table}{RestoreSummary}{RestoreInProgress} ? $x : undef }),
   'the target becomes ACTIVE once every item is written');
my $dt = cli('describe-table', '--table-name', 'orders_then');
ok(!(ref $dt && $dt->{Table}{RestoreSummary}{NinesRestoreError}), 'no restore error')
    or diag explain $dt->{Table}{RestoreSummary};
sub scan_all {
    my ($table) = @_;
    my $x = cli('scan', '--table-name', $table);
    return { map { $_->{id}{S} => $_->{v}{N} } @{ ref $x ? $x->{Items} : [] } };
}
my $then = scan_all('orders_then');
my %want = map { ("o$_" => "$_") } grep { $_ != 7 } 1 .. 200;
is_deeply($then, \%want, 'the restored table holds exactly the 199 items of that time (o7 deleted, o1 = 1, o2 present, no "late")');

ok(wait_until(20, sub { (window())[1] > time - 4.5 }),
   'the latest restorable time moves with the clock (now minus seal_after + 2 x verify_after + 1 s)');
sleep 5;
cli('restore-table-to-point-in-time', '--source-table-name', 'orders',
    '--target-table-name', 'orders_now', '--use-latest-restorable-time');
is($rc, 0, 'restore with --use-latest-restorable-time') or diag $err;
ok(wait_until(60, sub { my $x = cli('describe-table', '--table-name', 'orders_now');
    ref $x && $x->{Table}{TableStatus} eq 'ACTIVE' }), '... ACTIVE');
my %now = %want;
$now{o1} = '1000';
$now{late} = '1';
delete $now{o2};
is_deeply(scan_all('orders_now'), \%now, '... holds the writes after the point too');

# Bad requests.
cli('restore-table-to-point-in-time', '--source-table-name', 'orders', '--target-table-name', 'orders_x3',
    '--restore-date-time', sprintf('%.0f', time + 3600));
like($err, qr/InvalidRestoreTimeException/, 'a time in the future: InvalidRestoreTimeException');
cli('restore-table-to-point-in-time', '--source-table-name', 'orders', '--target-table-name',
    'orders_then', '--use-latest-restorable-time');
like($err, qr/TableAlreadyExistsException/, 'an existing target: TableAlreadyExistsException');
cli('restore-table-to-point-in-time', '--source-table-name', 'nosuch', '--target-table-name', 'orders_x4',
    '--use-latest-restorable-time');
like($err, qr/TableNotFoundException/, 'an unknown source: TableNotFoundException');
cli('update-continuous-backups', '--table-name', 'orders', '--point-in-time-recovery-specification',
    'PointInTimeRecoveryEnabled=false');
like($err, qr/ValidationException.*cannot be turned off/, 'turning it off: refused, saying why');
cli('update-continuous-backups', '--table-name', 'orders', '--point-in-time-recovery-specification',
    'PointInTimeRecoveryEnabled=true');
is($rc, 0, 'turning it on: accepted (it is on)') or diag $err;

for my $m (@nodes) { is(stop_node($m), 0, "$m->{id} stopped cleanly") }

# Without an archive: off, and a restore says so.
my $solo = start_node();
END { kill_node($solo) if $solo }
my ($s1) = ddb($solo, 'CreateTable', { TableName => 'plain', BillingMode => 'PAY_PER_REQUEST',
    AttributeDefinitions => [{ AttributeName => 'id', AttributeType => 'S' }],
    KeySchema => [{ AttributeName => 'id', KeyType => 'HASH' }] });
my ($s2, $b2) = ddb($solo, 'DescribeContinuousBackups', { TableName => 'plain' });
is($b2->{ContinuousBackupsDescription}{PointInTimeRecoveryDescription}{PointInTimeRecoveryStatus},
   'DISABLED', 'no archive: DISABLED');
my ($s3, $b3) = ddb($solo, 'RestoreTableToPointInTime', { SourceTableName => 'plain',
    TargetTableName => 'plain2', UseLatestRestorableTime => JSON::PP::true() });
is($s3, 400, 'no archive: a restore is refused');
like($b3->{__type} // '', qr/PointInTimeRecoveryUnavailableException/, '... PointInTimeRecoveryUnavailableException');
is(stop_node($solo), 0, 'the one-node store stopped cleanly');
done_testing;
