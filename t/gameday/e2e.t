#!/usr/bin/perl
# End-to-end game day: a 6-host lab (3 AZs, 2 racks), `nines gameday run` of
# a shortened power-off-random (t/gameday/short.yaml: 3 rounds of 3-5 s under
# traffic) deploys ninesd over SSH, powers nodes off and on, and must pass:
# the checkers find the history valid, every partition ends with three
# healthy replicas that caught up, every host is on again, the report and the
# logs are there. Then the same game day against ninesd
# --unsafe-ack-before-sync must FAIL naming lost writes: the lab's hosts keep
# their data on labfs, so a power-off loses what was not fsync'd.
# The lab is taken down at the end whatever happens.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use File::Temp qw(tempdir);
use JSON::PP;
use Test::More;

use Lab qw(run can_netns slurp);
use Nines qw(bin build_dir);

my ($usable, $why) = can_netns();
plan skip_all => $why unless $usable;
my $nines = bin('nines');
my $ninesd = bin('ninesd');
plan skip_all => "$nines or $ninesd not built" unless -x $nines && -x $ninesd;

# `nines gameday` once cli/nines_main.c dispatches it; until then the
# stand-alone build of the same gameday_main (t/gameday/gameday_bin.c).
my @gameday;
my $help = run({ timeout => 20 }, $nines, '--help');
if ($help->{out} =~ /^\s+gameday\s/m) {
    @gameday = ($nines, 'gameday');
} elsif (-x build_dir() . '/t/gameday_bin') {
    @gameday = (build_dir() . '/t/gameday_bin');
} else {
    plan skip_all => 'no nines gameday and no t/gameday_bin built';
}

my $tmp = tempdir('nines-gd-e2e-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $lab = "$tmp/lab";
END {
    system($nines, 'lab', 'down', '--dir', $lab) if $lab && -e "$lab/lab.state";
}

my $up = run({ timeout => 120 }, $nines, 'lab', 'up', '--hosts', 6, '--azs', 3, '--racks', 2,
             '--dir', $lab);
is($up->{status}, 0, 'lab up: 6 hosts in 3 AZs') or diag($up->{err});
BAIL_OUT('no lab') if $up->{status};

my $inv = "$lab/inventory.yaml";
my @san;

sub gameday_run {
    my ($playbook, $report, $seed) = @_;
    my $r = run({ timeout => 180 }, @gameday, 'run', "$FindBin::Bin/$playbook", '--inventory',
                $inv, '--seed', $seed, '--report', $report, '--ninesd', $ninesd);
    push @san, "$playbook:\n$r->{err}" if $r->{err} =~ /Sanitizer|runtime error:/;
    return $r;
}

# --- the passing game day ---
my $rep = "$tmp/report-safe";
my $r = gameday_run('short.yaml', $rep, 11);
is($r->{status}, 0, 'the game day passes (exit 0)')
    or diag("stdout:\n$r->{out}\nstderr:\n$r->{err}");
note("took $r->{secs} s");
like($r->{out}, qr/^PASSED$/m, 'the summary says PASSED');
like($r->{out}, qr/seed 11/, 'and names the seed');

my $report = eval { decode_json(slurp("$rep/report.json") // '') };
ok($report, 'report.json is JSON') or diag($@);
$report //= {};
ok($report->{passed}, 'report: passed');
is($report->{seed}, 11, 'report: seed');
my @steps = @{ $report->{steps} // [] };
is(scalar @steps, 7, 'report: 7 steps (wait, then 3 x power_off + wait_healthy)');
my @offs = grep { $_->{kind} eq 'power_off' } @steps;
is(scalar @offs, 3, 'three power-offs');
ok(!grep({ @{ $_->{hosts} } != 1 } @offs), 'each hit one node');
ok(!grep({ $_->{hold_s} < 3 || $_->{hold_s} > 5 } @offs), 'each for 3-5 s');
ok(!grep({ !$_->{done} || $_->{failed} } @steps), 'every step done, none failed');
ok(!grep({ !defined $_->{recovery_s} && $_->{affected_partitions} } @offs),
   'writes recovered after every power-off that hit a replica');
cmp_ok($report->{traffic}{ok}, '>', 100, 'traffic: requests succeeded');
is($report->{verify}{checkers}{verdict}, 'valid', 'checkers: valid');
cmp_ok($report->{verify}{checkers}{acked_writes}, '>', 50, 'checkers saw acknowledged writes');
is($report->{verify}{checkers}{anomalies}{'lost-write'}, 0, 'no lost writes');
ok($report->{verify}{replicas}{passed}, 'every partition has three healthy replicas');
is($report->{verify}{replicas}{groups_with_3_live}, $report->{verify}{replicas}{groups},
   'three live members in every group');
ok($report->{verify}{caught_up}{passed}, 'every replica caught up with its leader');
ok($report->{verify}{scrub}{passed}, 'scrub: every replica of every partition holds the same items')
    or diag(explain($report->{verify}{scrub}));
cmp_ok($report->{verify}{scrub}{compared} // 0, '>=', 3,
       'scrub: compared every partition of the table (3)');
is($report->{verify}{scrub}{compared}, $report->{verify}{scrub}{partitions},
   'scrub: nothing left undecided');
ok(-s "$rep/scrub.json", "the scrub's JSON report is in the report dir");
like($r->{out}, qr/^verify scrub\s+PASS/m, 'the summary shows the scrub');
cmp_ok(-s "$rep/history.jsonl" // 0, '>', 1000, 'the history is in the report dir');
is(scalar(my @logs = glob("$rep/logs/h*.ninesd.log")), 6, 'ninesd logs of the 6 hosts collected');

# Every host is on again and still runs the ninesd that power-on restarted.
my $st = run({ timeout => 60 }, $nines, 'lab', 'status', '--dir', $lab, '--json');
my $hosts = eval { decode_json($st->{out}) } // {};
my @list = ref $hosts eq 'HASH' ? @{ $hosts->{hosts} // [] } : @$hosts;
is(scalar(grep { ($_->{power} // '') eq 'on' } @list), 6, 'all 6 hosts are on after the run')
    or diag($st->{out});
my $boot = slurp("$lab/hosts/h1/boot.d/ninesd") // '';
like($boot, qr/exec .*ninesd' --cluster|exec \S*ninesd --cluster/, 'boot.d/ninesd starts ninesd at power-on');

# --- the failing game day (acks before fdatasync) ---
# The lab's hosts keep their data on labfs, so a power-off is a power cut:
# what ninesd acknowledged but had not fdatasync'd is gone. A round may
# happen to cut no such write (the window is short: one node log round), so
# the game day is run up to 6 times, each bounded, until one fails with lost
# writes. Its traffic spreads over 20,000 keys so that a lost write is seldom
# overwritten before the final read (which would hide it from the lost-write
# check: the checkers then see only stale reads).
{
    my $labfs = (slurp($inv) // '') =~ /\bfs: /;
    ok($labfs, 'the lab\'s inventory names a labfs for its hosts (power-off is a power cut)');
    ok(!grep({ ($_->{mode} // '') ne 'crash' } @offs), 'the passing game day\'s power-offs were crashes')
        or diag(join ', ', map { $_->{mode} // 'none' } @offs);
    my ($u, $ur, $tries);
    for my $try (1 .. 6) {
        $tries = $try;
        my $urep = "$tmp/report-unsafe-$try";
        # Every try redeploys onto the same lab: the deploy stops every old
        # node before it starts a new one (a fresh node that met old ones
        # took their data: values out of nowhere in the next run).
        $u = gameday_run('short-unsafe.yaml', $urep, 11 + $try);
        $ur = eval { decode_json(slurp("$urep/report.json") // '') } // {};
        note("unsafe game day, try $try: exit $u->{status}, $u->{secs} s, lost writes: "
             . ($ur->{verify}{checkers}{anomalies}{'lost-write'} // 'none'));
        last if ($ur->{verify}{checkers}{anomalies}{'lost-write'} // 0) > 0;
        diag("try $try lost no write; summary:\n$u->{out}\nstderr tail:\n"
             . join("\n", (split /\n/, $u->{err})[-10 .. -1]));
    }
    is($u->{status}, 1, "the unsafe game day fails (exit 1, try $tries)") or diag($u->{out});
    like($u->{out}, qr/[1-9]\d* lost writes/, 'the summary names lost writes');
    like($u->{out}, qr/^FAILED$/m, 'the summary says FAILED');
    ok(!$ur->{passed}, 'report: not passed');
    cmp_ok($ur->{verify}{checkers}{anomalies}{'lost-write'} // 0, '>', 0,
           'report: the checkers found lost writes');
    # The report lists the first anomalies in history order; after a
    # whole-cluster cut with unsafe acks, reads of values whose writes were
    # lost (value-out-of-nowhere) may come before the lost writes themselves.
    my @first = @{ $ur->{verify}{checkers}{first} // [] };
    ok(@first && !grep({ !(($_->{kind} // '') =~ /\S/ && ($_->{detail} // '') =~ /\S/) } @first),
       'report: it names the first anomalies (kind and detail)')
        or diag(encode_json(\@first));
}

my $down = run({ timeout => 60 }, $nines, 'lab', 'down', '--dir', $lab);
is($down->{status}, 0, 'lab down');
ok(!@san, 'no sanitizer report') or diag(join("\n", @san));
done_testing();
