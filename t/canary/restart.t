#!/usr/bin/perl
# The evaluator keeps its alarm states in PostgreSQL (alarm_state): fire an
# alert, stop the evaluator, bring the endpoint back while no evaluator
# runs, start a new evaluator -> it resumes the alarm and Alertmanager sees
# it resolved (long before the alert's own expiry, 4 x resend_every = 120 s).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep time);
use Nines qw(start_node stop_node bin free_port);
use Canary qw(start_pg stop_pg psql pg_dsn start_am stop_am am_alerts start_proc stop_proc
              wait_for slurp);

plan skip_all => 'nines not built' unless -x bin('nines');
plan skip_all => 'needs root for runuser' if $>;
my $dir = tempdir('nines-rst-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $pg = start_pg();
my $am = start_am();
my $node = start_node();

open my $f, '>', "$dir/c.yaml" or die;
print $f "az: az1\nendpoints: \"n1\@az1=$node->{url}\"\nrate: 5\ninterval: 1s\ntimeout: 500ms\n"
       . "retry: {max_attempts: 2, base: 100ms}\nserver_metrics: false\n"
       . "sink:\n  postgres: \"" . pg_dsn($pg) . "\"\n  flush_every: 200ms\n";
close $f;
open $f, '>', "$dir/alarms.yaml" or die;
print $f <<"Y";
postgres: "${\pg_dsn($pg)}"
alertmanager: "$am->{url}"
evaluate_every: 500ms
resend_every: 30s
hook: "echo \\"\$NINES_ALARM_STATE\\" >> $dir/hook.log"
alarms:
  - name: availability_by_az
    objective: 99.99%
    group_by: [table, endpoint_az]
    burn_rates: [{long: 60s, short: 5s, factor: 14.4, severity: page}]
    hysteresis: {for: 0s, clear_for: 2s}
Y
close $f;
my $c = start_proc("$dir/c.log", bin('nines'), 'canary', 'run', '--config', "$dir/c.yaml");
my @al = (start_proc("$dir/alarms1.log", bin('nines'), 'alarms', 'run', '--rules', "$dir/alarms.yaml"));
ok(wait_for(20, sub { my @r = psql($pg, "SELECT count(*) FROM canary_samples WHERE op = 'probe'");
                      @r && $r[0][0] >= 3 }), 'samples flow');

sub active { [ grep { $_->{labels}{alertname} eq 'availability_by_az' } @{ am_alerts($am) } ] }
stop_node($node);
ok(wait_for(30, sub { @{ active() } }), 'the alert fires while the endpoint is down');
my ($st) = psql($pg, "SELECT state, since_ms > 0, last_sent_ms >= since_ms, group_key FROM alarm_state");
is_deeply($st, ['firing', 't', 't', 'table=nines_canary,endpoint_az=az1'],
          'alarm_state holds it: firing, since, last sent');
is(stop_proc($al[0]), 0, 'the evaluator stops');

# The endpoint comes back while no evaluator runs; wait until the short
# window (5 s) is clean.
$node = start_node(dir => $node->{dir}, port => $node->{port});
ok(wait_for(30, sub { my @r = psql($pg, "SELECT successes FROM canary_samples WHERE op = 'probe'"
                                        . " ORDER BY ts DESC LIMIT 1"); @r && $r[0][0] > 0 }),
   'probes succeed again');
sleep 7;
ok(scalar @{ active() }, 'nobody resolved it meanwhile: Alertmanager still holds the alert');
my $t0 = time;
push @al, start_proc("$dir/alarms2.log", bin('nines'), 'alarms', 'run', '--rules', "$dir/alarms.yaml");
ok(wait_for(30, sub { !@{ active() } }), sprintf 'the new evaluator resolves it (%.1f s after its start)',
   time - $t0);
like(slurp("$dir/alarms2.log"), qr/resuming availability_by_az 1m\/5s table=nines_canary,endpoint_az=az1: firing since/,
     'it resumed the saved state');
like(slurp("$dir/alarms2.log"), qr/alarm (firing|clearing) -> ok/, 'and logged the resolution');
my @tr = psql($pg, "SELECT from_state, to_state FROM alarm_transitions ORDER BY id");
is($tr[-1][1], 'ok', 'the resolution is recorded in alarm_transitions') or diag explain \@tr;
ok(wait_for(10, sub { slurp("$dir/hook.log") =~ /firing\nresolved\n/ }), 'the hook saw firing, then resolved');
is(scalar(() = psql($pg, "SELECT 1 FROM alarm_state")), 0, 'alarm_state is empty again');
is(stop_proc($al[1]), 0, 'the second evaluator stops');
is(stop_proc($c), 0, 'canary stops');

stop_am($am);
stop_node($node);
stop_pg($pg);
diag slurp("$dir/alarms1.log"), slurp("$dir/alarms2.log") unless Test::More->builder->is_passing;
done_testing;
