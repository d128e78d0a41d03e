#!/usr/bin/perl
# Scheduled game days (docs/gameday.md, "Scheduled operation"):
#   - `nines gameday record` of fixture report dirs into a private
#     PostgreSQL: the rows of runs, steps, expectations and verifications
#     hold the reports' values; recording twice adds nothing; two recorders
#     on an empty database at once both succeed (the migration's advisory
#     lock); a report that is not one and a database that is down give clear
#     errors;
#   - `nines gameday history`: newest first, its columns, --name, --limit,
#     --json, --run ID;
#   - `nines gameday run` against a one-node ninesd (cluster: existing, no
#     traffic, a playbook of sleeps): exit 0 and the run recorded; a
#     database that is down does not change the verdict; exit 1 for a step
#     that overran; 2 for usage, playbook and inventory errors; 3 for a
#     second run on a locked inventory (naming the holder's pid and report
#     dir), and the lock free again once the holder is SIGKILLed; 4 for
#     SIGINT (report with failure "cancelled", recorded).
# PostgreSQL and ninesd are stopped at the end whatever happens; every
# process is ended by its own pid.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Cwd ();
use Digest::SHA ();
use File::Copy qw(copy);
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Test::More;
use Time::HiRes qw(sleep time);

use Canary qw(start_pg stop_pg psql pg_dsn wait_for);
use Lab qw(run slurp);
use Nines qw(bin free_port start_node stop_node);

my @gameday = -x bin('nines') && -x bin('nines-gameday') ? (bin('nines'), 'gameday') : ();
plan skip_all => 'nines and nines-gameday not built' unless @gameday;
plan skip_all => 'no PostgreSQL 15 (initdb)' unless -x '/usr/lib/postgresql/15/bin/initdb';
plan skip_all => 'needs root (PostgreSQL runs as the postgres user)' if $>;

my $tmp = tempdir('nines-gd-results-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $tmp;
# Every run's lock file goes to the test's own dir (one run below checks the
# default, /run/lock, and removes its file).
my $lockdir = "$tmp/locks";
make_path($lockdir);
$ENV{NINES_GAMEDAY_LOCK_DIR} = $lockdir;
my ($pg, $node, @bg);
END {
    local $?;
    for my $p (@bg) {
        next unless $p->{pid};
        kill 'KILL', $p->{pid};
        waitpid $p->{pid}, 0;
    }
    stop_node($node) if $node && $node->{pid};
    stop_pg($pg) if $pg;
}

$pg = start_pg();
my $dsn = pg_dsn($pg);
# A database nothing listens for: a free port on loopback.
my $down = 'host=127.0.0.1 port=' . free_port() . ' user=nines dbname=postgres connect_timeout=3';

sub gd { my ($opt, @a) = @_; return run({ timeout => 60, %$opt }, @gameday, @a) }
sub q1 { my ($sql) = @_; my @r = psql($pg, $sql); return @r ? join('|', @{ $r[0] }) : undef }

# Fixtures are copied: old-3's start time comes from its file's mtime.
my $fx = "$FindBin::Bin/fixtures/results";
my %dir;
for my $n (qw(pass-1 fail-2 old-3 not-a-report)) {
    make_path("$tmp/$n");
    copy("$fx/$n/report.json", "$tmp/$n/report.json") or die "$n: $!";
    $dir{$n} = "$tmp/$n";
}
# old-3 has no t0_wall_ms: started_at = mtime - elapsed_s (40 s).
utime 1789000040, 1789000040, "$dir{'old-3'}/report.json" or die;

# ---------------------------------------------------------------- record
my $r = gd({}, 'record', $dir{'pass-1'}, '--results', $dsn);
is($r->{status}, 0, 'record pass-1: exit 0') or diag($r->{err});
like($r->{out}, qr/recorded as run (\d+)/, 'record says the run id');
$r = gd({ env => { NINES_GAMEDAY_PG => $dsn } }, 'record', $dir{'fail-2'});
is($r->{status}, 0, 'record fail-2 through NINES_GAMEDAY_PG: exit 0') or diag($r->{err});
$r = gd({}, 'record', $dir{'old-3'}, '--results', $dsn);
is($r->{status}, 0, 'record old-3 (no t0_wall_ms, verify null, no expectations)') or diag($r->{err});

is(q1("SELECT version FROM nines_gameday_schema"), '1', 'schema version 1 in nines_gameday_schema');
is(q1("SELECT count(*) FROM gameday_runs"), '3', 'three runs');
is(q1("SELECT name, seed, passed, elapsed_s, failure IS NULL, playbook, inventory,"
      . " to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'), report_dir,"
      . " run_key, report->'traffic'->>'ok' FROM gameday_runs WHERE seed = 7"),
   "weekly-power|7|t|151.25|t|/etc/nines/gameday/weekly-power.yaml|/etc/nines/inventory.yaml|"
   . "2026-09-21 14:13:20.123|$dir{'pass-1'}|weekly-power/7/1790000000123|847",
   'pass-1: the run row (started_at from t0_wall_ms, the whole report as jsonb)');
is(q1("SELECT passed, failure FROM gameday_runs WHERE seed = 8"),
   'f|step 2 (round 1/2: power_off): step overran its timeout of 65.0s', 'fail-2: failed, its failure');
is(q1("SELECT to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), failure, run_key LIKE 'sha256:%'"
      . " FROM gameday_runs WHERE seed = 3"),
   '2026-09-10 00:26:40|cancelled|t', 'old-3: started_at = mtime - elapsed, key from the content');

my @steps = psql($pg, "SELECT s.idx, s.label, s.kind, s.hosts, s.start_s, s.end_s, s.ok, s.errors,"
                 . " coalesce(s.p99_ms::text, 'null'), coalesce(s.recovery_s::text, 'null'), s.failed,"
                 . " coalesce(s.error, 'null') FROM gameday_steps s JOIN gameday_runs r ON r.id = s.run_id"
                 . " WHERE r.seed = 7 ORDER BY s.idx");
is_deeply(\@steps,
          [[1, 'wait_healthy', 'wait_healthy', '{}', '2.5', '2.75', 1, 0, '2.4', 'null', 'f', 'null'],
           [2, 'round 1/2: power_off', 'power_off', '{h4}', '2.75', '7.5', 446, 3, '124', '0.08', 'f', 'null'],
           [3, 'round 2/2: power_off', 'power_off', '{h1,h2}', '7.5', '12', 400, 12, 'null', 'null', 'f', 'null']],
          'pass-1: one row per step with its values (nulls kept)');
is(q1("SELECT s.failed, s.error, coalesce(s.start_s::text, 'null') FROM gameday_steps s"
      . " JOIN gameday_runs r ON r.id = s.run_id WHERE r.seed = 8 AND s.idx = 2"),
   't|step overran its timeout of 65.0s|2.5', 'fail-2: the failed step and its error');
is(q1("SELECT coalesce(s.start_s::text, 'null') FROM gameday_steps s JOIN gameday_runs r ON r.id = s.run_id"
      . " WHERE r.seed = 8 AND s.idx = 3"), 'null', 'fail-2: a step never reached has no start');

my @ex = psql($pg, "SELECT e.ord, e.phase, coalesce(e.step::text, 'null'), e.what, e.passed, e.detail"
              . " FROM gameday_expectations e JOIN gameday_runs r ON r.id = e.run_id WHERE r.seed = 8"
              . " ORDER BY e.ord");
is_deeply(\@ex, [[1, 'step', 2, 'recovery < 5s', 'f', 'never recovered'],
                 [2, 'steady_state_after', 'null', 'p99 < 50ms', 't', 'p99 20ms']],
          'fail-2: one row per expectation, in order');
is(q1("SELECT count(*) FROM gameday_expectations e JOIN gameday_runs r ON r.id = e.run_id WHERE r.seed = 3"),
   '0', 'old-3: no expectations');

my @ver = psql($pg, "SELECT v.name, v.passed, v.detail->>'detail' FROM gameday_verifications v"
               . " JOIN gameday_runs r ON r.id = v.run_id WHERE r.seed = 8 ORDER BY v.name");
is_deeply(\@ver, [['caught_up', 't', ''], ['replicas', 'f', 'partition 3: 2 of 3 replicas live']],
          'fail-2: one row per verification, the object as jsonb');
is(q1("SELECT count(*) FROM gameday_verifications v JOIN gameday_runs r ON r.id = v.run_id WHERE r.seed = 7"),
   '4', 'pass-1: four verifications');

# Twice: nothing added.
my $id1 = q1("SELECT id FROM gameday_runs WHERE seed = 7");
$r = gd({}, 'record', $dir{'pass-1'}, '--results', $dsn);
is($r->{status}, 0, 'recording pass-1 again: exit 0');
like($r->{out}, qr/already recorded as run $id1\b/, 'and says it was already recorded, as which run');
$r = gd({}, 'record', $dir{'old-3'}, '--results', $dsn);
like($r->{out}, qr/already recorded/, 'old-3 again (content key): already recorded');
is(q1("SELECT count(*) FROM gameday_runs") . '/' . q1("SELECT count(*) FROM gameday_steps"), '3/7',
   'no run and no step duplicated');

# Bad input.
$r = gd({}, 'record', $dir{'not-a-report'}, '--results', $dsn);
is($r->{status}, 2, 'a JSON file that is no game-day report: exit 2');
like($r->{err}, qr{not-a-report/report.json: no "name" \(a string\): not a game-day report}, '... saying what is missing');
make_path("$tmp/broken");
open my $bf, '>', "$tmp/broken/report.json" or die;
print $bf "{\"name\": \"x\",\n  \"seed\": }\n";
close $bf;
$r = gd({}, 'record', "$tmp/broken", '--results', $dsn);
is($r->{status}, 2, 'a report that is not JSON: exit 2');
like($r->{err}, qr{broken/report.json:2:\d+: }, '... with its line and column');
$r = gd({}, 'record', "$tmp/nowhere", '--results', $dsn);
is($r->{status}, 2, 'a dir without report.json: exit 2');
like($r->{err}, qr{nowhere/report.json: No such file}, '... naming the file');
make_path("$tmp/empty-dir");
$r = gd({}, 'record', "$tmp/empty-dir", '--results', $down);
is($r->{status}, 2, 'a dir without report.json, the database down too: exit 2 (the report first)');
like($r->{err}, qr{empty-dir/report.json: No such file}, '... naming the file');
$r = gd({ env => { NINES_GAMEDAY_PG => '' } }, 'record', $dir{'pass-1'});
is($r->{status}, 2, 'record without a database: exit 2');
like($r->{err}, qr/no results database \(give --results DSN or set NINES_GAMEDAY_PG\)/, '... saying how to give one');
is(q1("SELECT count(*) FROM gameday_runs"), '3', 'nothing recorded by the bad inputs');

# Down.
$r = gd({}, 'record', $dir{'pass-1'}, '--results', $down);
is($r->{status}, 1, 'record with the database down: exit 1');
like($r->{err}, qr{pass-1: not recorded: postgres: cannot connect: .*(refused|could not connect)}i,
     '... a clear error naming the cause') or diag($r->{err});
$r = gd({}, 'history', '--results', $down);
is($r->{status}, 1, 'history with the database down: exit 1');
like($r->{err}, qr/^nines gameday history: postgres: cannot connect/m, '... a clear error');

# Two recorders at once on an empty database: the migration's advisory
# lock serializes them, and a run raced for is recorded once.
psql($pg, 'CREATE DATABASE race');
is(q1("SELECT count(*) FROM pg_database WHERE datname = 'race'"), '1', 'an empty database "race"');
(my $race = $dsn) =~ s/dbname=postgres/dbname=race/;
my @recs;
for my $n ('pass-1', 'fail-2', 'old-3', 'pass-1', 'fail-2', 'old-3') {
    my $pid = fork // die;
    if (!$pid) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>>', "$tmp/race.err";
        { exec @gameday, 'record', $dir{$n}, '--results', $race }
        POSIX::_exit(127);
    }
    push @recs, $pid;
}
my @st = map { waitpid($_, 0); $? >> 8 } @recs;
is("@st", '0 0 0 0 0 0', 'six recorders at once on an empty database: all exit 0')
    or diag(slurp("$tmp/race.err"));
# psql() connects to dbname=postgres: ask "race" directly.
open my $p, '-|', '/usr/lib/postgresql/15/bin/psql', '-X', '-h', $pg->{sock}, '-p', $pg->{port}, '-U', 'nines',
    '-d', 'race', '-At', '-c',
    'SELECT (SELECT count(*) FROM gameday_runs) || \'/\' || (SELECT count(*) FROM gameday_steps)'
    . ' || \'/\' || (SELECT count(*) FROM nines_gameday_schema)' or die;
my $counts = <$p> // '';
close $p;
chomp $counts;
is($counts, '3/7/1', '"race": three runs, seven steps, one schema row');

# ---------------------------------------------------------------- history
$r = gd({}, 'history', '--results', $dsn);
is($r->{status}, 0, 'history: exit 0') or diag($r->{err});
my @lines = grep { /\S/ } split /\n/, $r->{out};
like($lines[0], qr/^\s+id\s+started \(UTC\)\s+name\s+seed\s+result\s+elapsed\s+steps\s+expect\s+failure\s+report$/,
     'history: a header with the columns');
like($lines[1], qr/^\s+\d+\s+2026-09-28 14:13:20\s+weekly-power\s+8\s+FAILED\s+70\.5s\s+1\/3\s+1\/2\s+step 2 \(round 1\/2: power_off\): step o\.\.\.\s+\Q$dir{'fail-2'}\E$/,
     'history: newest first: fail-2 (started, name, seed, FAILED, elapsed, failed steps/expectations, failure, dir)')
    or diag($r->{out});
like($lines[2], qr/^\s+$id1\s+2026-09-21 14:13:20\s+weekly-power\s+7\s+PASSED\s+151\.2s\s+0\/3\s+0\/2\s+-\s+\Q$dir{'pass-1'}\E$/,
     'history: then pass-1');
like($lines[3], qr/^\s+\d+\s+2026-09-10 00:26:40\s+nightly-short\s+3\s+FAILED\s+40\.0s\s+1\/1\s+-\s+cancelled\s+\Q$dir{'old-3'}\E$/,
     'history: then old-3 (no expectations: -)');

$r = gd({}, 'history', '--results', $dsn, '--name', 'weekly-power', '--limit', '1', '--json');
is($r->{status}, 0, 'history --name --limit --json: exit 0') or diag($r->{err});
my $h = eval { decode_json($r->{out}) } // [];
is(scalar @$h, 1, '--limit 1: one run');
is($h->[0]{seed}, 8, '--name weekly-power, newest: seed 8');
is_deeply([@{ $h->[0] }{qw(name passed failed_steps steps failed_expectations expectations started_at)}],
          ['weekly-power', JSON::PP::false, 1, 3, 1, 2, '2026-09-28T14:13:20.000Z'], '--json: typed fields');
$r = gd({}, 'history', '--results', $dsn, '--name', 'nothing-such');
like($r->{out}, qr/^no game days recorded$/m, '--name with no runs: says so');

my $id2 = q1("SELECT id FROM gameday_runs WHERE seed = 8");
$r = gd({}, 'history', '--results', $dsn, '--run', $id2);
is($r->{status}, 0, 'history --run: exit 0') or diag($r->{err});
like($r->{out}, qr/^run $id2  weekly-power  seed 8  FAILED$/m, '--run: the run line');
like($r->{out}, qr/^failure   step 2 \(round 1\/2: power_off\): step overran its timeout of 65\.0s$/m, '--run: the failure');
like($r->{out}, qr/^\s+2\s+2\.5s\s+67\.5s\s+round 1\/2: power_off\s+h3\s+10\s+500\s+1000\.0\s+-\s+FAILED: step overran/m,
     '--run: the steps') or diag($r->{out});
like($r->{out}, qr/^  FAIL  step 2\s+recovery < 5s: never recovered$/m, '--run: the expectations');
like($r->{out}, qr/^  FAIL  replicas\s+partition 3: 2 of 3 replicas live$/m, '--run: the verifications');
$r = gd({}, 'history', '--results', $dsn, '--run', $id2, '--json');
my $d = eval { decode_json($r->{out}) } // {};
is_deeply([map { $_->{name} } @{ $d->{verifications} // [] }], ['caught_up', 'replicas'], '--run --json: verifications');
is($d->{steps}[1]{hosts}[0], 'h3', '--run --json: steps with hosts');
$r = gd({}, 'history', '--results', $dsn, '--run', 99999);
is($r->{status}, 1, '--run of an unknown id: exit 1');
like($r->{err}, qr/no game-day run 99999 recorded/, '... saying so');
$r = gd({}, 'history', '--results', $dsn, '--limit', '0');
is($r->{status}, 2, '--limit 0: usage error (2)');

# ---------------------------------------------------------------- run
$node = start_node();
my $inv = "$tmp/inventory.yaml";
open my $f, '>', $inv or die;
print $f "inventory: results-t\nhosts:\n"
    . "  - {name: n1, address: 127.0.0.1, az: az1, rack: r1, data: $node->{dir}/n1,\n"
    . "     power: {driver: command, off: 'true', on: 'true', status: 'echo running'}}\n";
close $f;
sub playbook {
    my ($name, $steps) = @_;
    my $path = "$tmp/$name.yaml";
    open my $pf, '>', $path or die;
    # No traffic: the game day is its steps alone.
    print $pf "name: $name\ncluster: {existing: {cluster_file: $node->{cluster}}}\nsteps:\n$steps"
        . "verify: {checkers: false, replicas: false, caught_up: false, scrub: false}\n";
    close $pf;
    return $path;
}
my $quick = playbook('quick', "  - sleep: 200ms\n");
my $long = playbook('long', "  - sleep: 20s\n");
# A timeout equal to the sleep: the step always ends a little after it.
my $overrun = playbook('overrun', "  - sleep: {duration: 1s, timeout: 1s}\n");

$r = gd({}, 'run', $quick, '--inventory', $inv, '--seed', 5, '--report', "$tmp/rep-quick", '--results', $dsn);
is($r->{status}, 0, 'run of a passing game day: exit 0') or diag("$r->{out}\n$r->{err}");
like($r->{out}, qr/^PASSED$/m, '... PASSED');
like($r->{out}, qr/^recorded as run (\d+) /m, '... and recorded');
is(q1("SELECT passed, seed, report_dir, inventory FROM gameday_runs WHERE name = 'quick'"),
   "t|5|$tmp/rep-quick|$inv", 'the run is in the database');
is(q1("SELECT count(*) FROM gameday_steps s JOIN gameday_runs r ON r.id = s.run_id WHERE r.name = 'quick'"),
   '1', 'with its step');
my $qrep = eval { decode_json(slurp("$tmp/rep-quick/report.json")) } // {};
SKIP: {
    skip 'the runner writes no t0_wall_ms', 1 unless defined $qrep->{t0_wall_ms};
    is(q1("SELECT run_key, (extract(epoch FROM started_at) * 1000)::bigint FROM gameday_runs WHERE name = 'quick'"),
       "quick/5/$qrep->{t0_wall_ms}|$qrep->{t0_wall_ms}", 'its key and start from the report\'s t0_wall_ms');
}

$r = gd({}, 'run', $quick, '--inventory', $inv, '--seed', 6, '--report', "$tmp/rep-down", '--results', $down);
is($r->{status}, 0, 'the results database down: the verdict stands (exit 0)') or diag($r->{err});
like($r->{err}, qr/rep-down: not recorded: postgres: cannot connect/, '... a clear error on stderr');
like($r->{err}, qr/verdict stands \(exit 0\); record it later with: nines gameday record \Q$tmp\E\/rep-down --results DSN/,
     '... saying how to record it later');
ok(-s "$tmp/rep-down/report.json", '... and the report stays on disk');
$r = gd({}, 'record', "$tmp/rep-down", '--results', $dsn);
is($r->{status}, 0, 'recorded later with nines gameday record');
is(q1("SELECT passed FROM gameday_runs WHERE report_dir = '$tmp/rep-down'"), 't', '... as passed');

$r = gd({}, 'run', $overrun, '--inventory', $inv, '--seed', 1, '--report', "$tmp/rep-overrun");
is($r->{status}, 1, 'a step that overran its timeout: exit 1') or diag($r->{err});
like($r->{out}, qr/^FAILED$/m, '... FAILED');

$r = gd({}, 'run', "$tmp/nowhere.yaml", '--inventory', $inv);
is($r->{status}, 2, 'a playbook that does not exist: exit 2');
$r = gd({}, 'run', $quick, '--inventory', "$tmp/no-inventory.yaml");
is($r->{status}, 2, 'an inventory that does not exist: exit 2');
like($r->{err}, qr/no-inventory\.yaml/, '... naming it');
$r = gd({}, 'run', $quick);
is($r->{status}, 2, 'no inventory at all: exit 2');
like($r->{err}, qr/no inventory \(give --inventory FILE\)/, '... saying so');
$r = gd({}, 'run', $quick, '--inventory', $inv, '--limit', 3);
is($r->{status}, 2, 'a history option given to run: exit 2');

is_deeply([glob("$lockdir/*")], [], 'the runs so far left no lock file behind');

# The lock, in its default dir (/run/lock when there is one): the file is
# named after the SHA-256 of the inventory's real path (16 hex digits).
my $lock_in = -d '/run/lock' ? '/run/lock' : $lockdir;
my %lenv = (NINES_GAMEDAY_LOCK_DIR => $lock_in eq $lockdir ? $lockdir : '');
my $lockfile = "$lock_in/nines-gameday-" . substr(Digest::SHA::sha256_hex(Cwd::realpath($inv)), 0, 16) . '.lock';
END { unlink $lockfile if $lockfile }
sub start_run {
    my ($pb, $rep, @extra) = @_;
    my $log = "$tmp/" . (split m{/}, $rep)[-1] . '.log';
    my $pid = fork // die;
    if (!$pid) {
        $ENV{$_} = $lenv{$_} for keys %lenv;
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', "$log.out" or POSIX::_exit(127);
        open STDERR, '>', "$log.err" or POSIX::_exit(127);
        { exec @gameday, 'run', $pb, '--inventory', $inv, '--seed', 9, '--report', $rep, @extra }
        POSIX::_exit(127);
    }
    my $p = { pid => $pid, log => $log };
    push @bg, $p;
    return $p;
}
sub wait_exit {
    my ($p, $secs) = @_;
    my $st = wait_for($secs, sub { waitpid($p->{pid}, WNOHANG) == $p->{pid} ? [$?] : undef });
    return -1 unless $st;
    $p->{pid} = 0;
    return $st->[0] & 127 ? 128 + ($st->[0] & 127) : $st->[0] >> 8;
}
my $first = start_run($long, "$tmp/rep-long");
ok(wait_for(30, sub { (slurp("$first->{log}.err") // '') =~ /step 1\/1 sleep/ }), 'a long run is in its sleep step')
    or diag(slurp("$first->{log}.err"));
like(slurp($lockfile), qr/^pid $first->{pid}\nreport \Q$tmp\E\/rep-long\nstarted /, "the lock file $lockfile names the holder");
(my $inv_alias = $inv) =~ s{/inventory\.yaml$}{/locks/../inventory.yaml};
$r = run({ timeout => 30, env => \%lenv }, @gameday, 'run', $quick, '--inventory', $inv_alias, '--seed', 1,
         '--report', "$tmp/rep-second");
is($r->{status}, 3, 'a second run on the same inventory (another spelling of its path): exit 3')
    or diag($r->{err});
like($r->{err}, qr/inventory \Q$inv\E is in use by another game day \(pid $first->{pid};report \Q$tmp\E\/rep-long;/,
     '... naming the holder\'s pid and report dir');
cmp_ok($r->{secs}, '<', 10, '... at once');
ok(!-e "$tmp/rep-second", '... touching nothing');
kill 'KILL', $first->{pid};
is(wait_exit($first, 10), 128 + 9, 'the holder is SIGKILLed');
ok(-e $lockfile, 'its lock file is left, unlocked');
$r = run({ timeout => 30, env => \%lenv }, @gameday, 'run', $quick, '--inventory', $inv, '--seed', 2,
         '--report', "$tmp/rep-after");
is($r->{status}, 0, 'the lock died with it: the next run goes ahead (exit 0)') or diag($r->{err});
ok(!-e $lockfile, 'and removes the lock file when it ends');

# SIGINT: exit 4, the report says cancelled, and it is recorded.
my $int = start_run($long, "$tmp/rep-int", '--results', $dsn);
ok(wait_for(30, sub { (slurp("$int->{log}.err") // '') =~ /step 1\/1 sleep/ }), 'another long run is in its sleep step');
my $t0 = time;
kill 'INT', $int->{pid};
is(wait_exit($int, 30), 4, 'SIGINT: exit 4') or diag(slurp("$int->{log}.err"));
cmp_ok(time - $t0, '<', 10, '... promptly');
my $rep = eval { decode_json(slurp("$tmp/rep-int/report.json")) } // {};
like($rep->{failure} // '', qr/cancelled/, 'the report says cancelled');
ok(!$rep->{passed}, '... and not passed');
like(slurp("$int->{log}.err"), qr/interrupted: every fault healed, report in \Q$tmp\E\/rep-int/, 'stderr says so');
like(q1("SELECT passed, failure FROM gameday_runs WHERE report_dir = '$tmp/rep-int'") // '', qr/^f\|.*cancelled/,
     'the interrupted run is recorded as failed, cancelled');
$r = run({ timeout => 30, env => \%lenv }, @gameday, 'run', $quick, '--inventory', $inv, '--seed', 3,
         '--report', "$tmp/rep-after-int");
is($r->{status}, 0, 'after the interrupted run the lock is free');
ok(!-e $lockfile, 'no lock file left');

stop_node($node);
$node = undef;
stop_pg($pg);
done_testing();
