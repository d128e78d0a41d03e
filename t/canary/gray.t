#!/usr/bin/perl
# A gray failure reaches `nines alarms run` late and must still fire: the
# node is paused (SIGSTOP), so every probe waits out its attempts (3 x 2 s)
# and the canary closes each interval seconds after it ended. A rule with a
# 3 s short window evaluated at the wall clock would find that window empty
# (condition unknown) for as long as the pause lasts and never fire; the
# evaluator evaluates at the end of the newest interval the canaries have
# closed, so it fires, and resolves once the node runs again.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep time);
use Nines qw(start_node stop_node bin);
use Canary qw(start_pg stop_pg psql pg_dsn start_proc stop_proc wait_for slurp);

plan skip_all => 'nines not built' unless -x bin('nines');
plan skip_all => 'needs root for runuser' if $>;
my $dir = tempdir('nines-gray-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $pg = start_pg();
my $node = start_node();
my $paused = 0;
END {
    local $?;
    kill 'CONT', $node->{pid} if $paused && $node && $node->{pid};
}

open my $f, '>', "$dir/c.yaml" or die;
print $f "az: az1\nendpoints: \"n1\@az1=$node->{url}\"\nrate: 5\ninterval: 1s\ntimeout: 2s\n"
       . "retry: {max_attempts: 3, base: 100ms}\nserver_metrics: false\n"
       . "sink:\n  postgres: \"" . pg_dsn($pg) . "\"\n  flush_every: 200ms\n";
close $f;
open $f, '>', "$dir/alarms.yaml" or die;
print $f <<"Y";
postgres: "${\pg_dsn($pg)}"
evaluate_every: 500ms
alarms:
  - name: availability_by_az
    objective: 99%
    group_by: [table, endpoint_az]
    burn_rates: [{long: 10s, short: 3s, factor: 5, severity: page}]
    hysteresis: {for: 0s, clear_for: 3s}
Y
close $f;
my $c = start_proc("$dir/c.log", bin('nines'), 'canary', 'run', '--config', "$dir/c.yaml");
my $al = start_proc("$dir/alarms.log", bin('nines'), 'alarms', 'run', '--rules', "$dir/alarms.yaml");
ok(wait_for(30, sub { my @r = psql($pg, "SELECT count(*) FROM canary_samples WHERE op = 'probe'"
                                        . " AND successes > 0");
                      @r && $r[0][0] >= 10 }), 'samples flow (10 healthy intervals)');
sleep 3; # a clean short window before the pause
is(scalar(() = psql($pg, "SELECT 1 FROM alarm_state")), 0, 'healthy: no alarm');

sub firing { my @r = psql($pg, "SELECT state FROM alarm_state"); @r && $r[0][0] eq 'firing' }
my $t0 = time;
kill 'STOP', $node->{pid} or die "SIGSTOP: $!";
$paused = 1;
my $fired = wait_for(40, \&firing);
my $after = time - $t0;
ok($fired, sprintf 'the alarm fires while the node is paused (%.1f s after the pause)', $after);
# How late the samples were: the newest interval end against the clock.
my ($lag) = psql($pg, "SELECT (extract(epoch from now() - max(ts)) * 1000)::int8 - 1000"
                      . " FROM canary_samples WHERE op = 'probe'");
diag(sprintf 'the canary\'s newest closed interval ended %.1f s before the check',
             ($lag->[0] // 0) / 1000);
kill 'CONT', $node->{pid};
$paused = 0;
ok(wait_for(60, sub { !scalar(() = psql($pg, "SELECT 1 FROM alarm_state")) }),
   'and resolves once the node runs again');
my @tr = psql($pg, "SELECT from_state, to_state FROM alarm_transitions ORDER BY id");
ok((grep { $_->[1] eq 'firing' } @tr) && $tr[-1][1] eq 'ok', 'the transitions: firing, then ok')
    or diag explain \@tr;
is(stop_proc($al), 0, 'the evaluator stops');
is(stop_proc($c), 0, 'the canary stops');
stop_node($node);
stop_pg($pg);
diag slurp("$dir/alarms.log") unless Test::More->builder->is_passing;
done_testing;
