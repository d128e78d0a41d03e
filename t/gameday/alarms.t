#!/usr/bin/perl
# Game days that test the alarm pipeline (docs/gameday.md, "Canaries,
# alarms and expectations"), on a 6-host lab in 3 AZs:
#  1. the shipped playbooks/az-outage-alarms.yaml passes: the canaries run
#     in every AZ, the availability alarm of the AZ that lost power fires
#     within 30 s and resolves after, no other AZ's alarm fires, the steady
#     state holds before and after, the checkers and the scrub pass; the
#     report holds the per-AZ timeline, the fault window and the alarm marks;
#  2. a playbook whose expectation names the wrong AZ fails, naming it;
#  3. a stop condition (an alarm outside the plan) ends a 90 s outage early,
#     powers every host on again, and the data is still verified.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use File::Temp qw(tempdir);
use JSON::PP;
use Test::More;

use Canary qw(start_am stop_am am_alerts);
use Lab qw(run can_netns slurp hosts_on gameday_report);
use Nines qw(bin);

my ($usable, $why) = can_netns();
plan skip_all => $why unless $usable;
my $nines = bin('nines');
my $ninesd = bin('ninesd');
plan skip_all => "$nines or $ninesd not built" unless -x $nines && -x $ninesd;

my $tmp = tempdir('nines-gd-alarms-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $lab = "$tmp/lab";
END {
    local $?;
    system($nines, 'lab', 'down', '--dir', $lab) if $lab && -e "$lab/lab.state";
}
my $up = run({ timeout => 120 }, $nines, 'lab', 'up', '--hosts', 6, '--azs', 3, '--racks', 2,
             '--dir', $lab);
is($up->{status}, 0, 'lab up: 6 hosts in 3 AZs') or diag($up->{err});
BAIL_OUT('no lab') if $up->{status};
my $inv = "$lab/inventory.yaml";

sub gameday {
    my ($playbook, $name, $seed) = @_;
    return gameday_report(nines => $nines, ninesd => $ninesd, inventory => $inv, tmp => $tmp,
                          playbook => $playbook, name => $name, seed => $seed);
}



# ---- 1. the shipped playbook passes ----
my ($r, $rep) = gameday("$FindBin::Bin/../../playbooks/az-outage-alarms.yaml", 'shipped', 5);
is($r->{status}, 0, 'az-outage-alarms.yaml passes (exit 0)')
    or diag("stdout:\n$r->{out}\nstderr:\n" . join("\n", (split /\n/, $r->{err})[-30 .. -1]));
my ($off) = grep { $_->{kind} eq 'power_off' } @{ $rep->{steps} // [] };
$off //= {};
my %host_az = map { ("h$_" => 'az' . (1 + ($_ - 1) % 3)) } 1 .. 6;
my %azs = map { ($host_az{$_} => 1) } @{ $off->{hosts} // [] };
is(scalar keys %azs, 1, 'the power-off hit one whole AZ') or diag(explain($off));
my ($target) = keys %azs;
$target //= 'none';
is(scalar @{ $off->{hosts} // [] }, 2, "both hosts of $target");

my @exp = @{ $rep->{expectations} // [] };
is(scalar(grep { !$_->{passed} } @exp), 0, 'every expectation passed')
    or diag(explain(\@exp));
is(scalar(grep { $_->{phase} eq 'steady_state_before' } @exp), 2, 'steady state checked before');
is(scalar(grep { $_->{phase} eq 'steady_state_after' } @exp), 2, 'and after');
my ($fires) = grep { $_->{what} =~ /^fires / } @exp;
like($fires->{what} // '', qr/endpoint_az=\Q$target\E/, "the fires expectation names $target");
like($fires->{detail} // '', qr/fired at [\d.]+s, ([\d.]+)s after the fault/, 'and when it fired');

my @al = @{ $rep->{alarms} // [] };
my @fired = grep { $_->{state} eq 'firing' && $_->{alarm} eq 'availability_by_az' } @al;
is(scalar @fired, 1, 'one availability alarm fired') or diag(explain(\@al));
is($fired[0]{labels}{endpoint_az}, $target, "for $target") if @fired;
cmp_ok($fired[0]{at_s}, '>=', $off->{start_s}, 'after the fault began') if @fired;
cmp_ok($fired[0]{at_s}, '<=', $off->{start_s} + 30, 'within 30 s of it') if @fired;
ok(grep({ $_->{state} eq 'resolved' && ($_->{labels}{endpoint_az} // '') eq $target } @al),
   'and resolved after power came back');

my $tl = $rep->{timeline} // {};
is_deeply([sort @{ $tl->{azs} // [] }], [qw(az1 az2 az3)], 'timeline: one series per AZ');
# From the moment the power was off (the fault's start, after the step's
# own start) to the step's end.
my ($fault) = @{ $rep->{faults} // [] };
my ($from, $to) = (int($fault->{start_s} // 0) + 2, int($off->{end_s} // 0) - 1);
my $sum = sub {
    my ($series, $az, $k) = @_;
    my $a = $series->{series}{$az}{$k} // [];
    my $s = 0;
    $s += $a->[$_] // 0 for $from .. $to;
    return $s;
};
cmp_ok($sum->($tl, $target, 'errors'), '>', 0, "timeline: requests to $target failed during the fault");
# (a response the dying node sent just before the cut can be read a moment
# later by a starved client: a few, never a share)
cmp_ok($sum->($tl, $target, 'ok'), '<', $sum->($tl, $target, 'errors') / 20,
       "and (almost) none to $target succeeded");
for my $az (grep { $_ ne $target } qw(az1 az2 az3)) {
    cmp_ok($sum->($tl, $az, 'ok'), '>', 0, "timeline: $az served requests during the fault");
}
my $ctl = $rep->{canary_timeline} // {};
cmp_ok($sum->($ctl, $target, 'errors'), '>', 0, "the canaries saw $target fail");
is_deeply($fault->{azs}, [$target], 'faults: the window names the AZ') if $fault;
is_deeply([sort @{ $fault->{hosts} // [] }], [sort @{ $off->{hosts} // [] }], 'and the hosts')
    if $fault;
ok($rep->{canaries}{probes} > 100, 'the canaries probed') or diag(explain($rep->{canaries}));
ok($rep->{verify}{checkers}{passed} && $rep->{verify}{scrub}{passed}, 'checkers and scrub passed');
like($r->{out}, qr/^expect step 2\s+PASS fires availability_by_az/m, 'the summary shows the verdicts');
is(hosts_on($nines, $lab), 6, 'every host is on');

# ---- 2. a wrong expectation fails and is named ----
($r, $rep) = gameday("$FindBin::Bin/wrong-az.yaml", 'wrong', 6);
is($r->{status}, 1, 'the wrong-AZ playbook fails (exit 1)') or diag($r->{out});
like($r->{out}, qr/^FAILED$/m, 'the summary says FAILED');
my @bad = grep { !$_->{passed} } @{ $rep->{expectations} // [] };
is(scalar @bad, 2, 'two expectations failed') or diag(explain($rep->{expectations}));
my ($bf) = grep { $_->{what} =~ /^fires/ } @bad;
like($bf->{what} // '', qr/endpoint_az!=az\d/, 'the fires for the wrong AZ is named');
like($bf->{detail} // '', qr/^silent/, 'it was silent');
my ($bq) = grep { $_->{what} =~ /^quiet/ } @bad;
like($bq->{detail} // '', qr/fired at .*outside the faulted scope/, 'the quiet one says what fired');
like($r->{out}, qr/^expect step 2\s+FAIL fires availability_by_az\{endpoint_az!=/m,
     'the summary names the failing expectation');
is(hosts_on($nines, $lab), 6, 'every host is on');

# ---- 3. a stop condition ends the run early and heals ----
# With a real Alertmanager named in the playbook: the alarm reaches it.
my $am = start_am();
my $stop_pb = "$tmp/stop-outside-plan.yaml";
{
    my $text = slurp("$FindBin::Bin/stop-outside-plan.yaml") // '';
    my $rules = "$FindBin::Bin/../../playbooks/alarms-gameday.yaml";
    $text =~ s{rules: \.\./\.\./playbooks/alarms-gameday\.yaml}{rules: $rules\n  alertmanager: $am->{url}};
    open my $pf, '>', $stop_pb or die;
    print $pf $text;
    close $pf;
}
($r, $rep) = gameday($stop_pb, 'stop', 7);
is($r->{status}, 1, 'the stopped game day fails (exit 1)') or diag($r->{out});
like($rep->{stop}{reason} // '', qr/alarm availability_by_az\{.*\} fired outside the plan/,
     'report: stopped by the alarm outside the plan') or diag(explain($rep->{stop}));
like($rep->{failure} // '', qr/^stopped: /, 'the failure says so');
($off) = grep { $_->{kind} eq 'power_off' } @{ $rep->{steps} // [] };
cmp_ok(($off->{end_s} // 999) - ($off->{start_s} // 0), '<', 60,
       'the 90 s power-off ended early') or diag(explain($off));
is(scalar(grep { $_->{done} } @{ $rep->{steps} // [] }), 2, 'the steps after it did not run');
is(hosts_on($nines, $lab), 6, 'every host was powered on again');
ok($rep->{verify}{checkers}{passed}, 'the data was still verified: checkers pass')
    or diag(explain($rep->{verify}));
ok($rep->{verify}{caught_up}{passed}, 'every replica caught up after the heal');
my ($fired) = grep { $_->{state} eq 'firing' } @{ $rep->{alarms} // [] };
my @got = grep { ($_->{labels}{alertname} // '') eq 'availability_by_az' } @{ am_alerts($am) };
ok(@got, 'Alertmanager holds the availability alarm the game day pushed') or diag(explain(am_alerts($am)));
is($got[0]{labels}{az}, $fired->{labels}{endpoint_az}, '... for the AZ that fired (Alertmanager label az)')
    if @got && $fired;
stop_am($am);

done_testing();
