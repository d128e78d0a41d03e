#!/usr/bin/perl
# End to end: three ninesd as three AZ endpoints, a canary in each AZ (the
# shipped canary/examples/canary.yaml), the CFA evaluator with a real
# PostgreSQL and a real Alertmanager. Stopping az2's endpoint must fire the
# AZ-scoped alarm for az2 in Alertmanager and nothing for az1/az3 or blind;
# bringing it back must resolve it. Then backtest replays the same samples.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep time);
use Nines qw(start_node stop_node bin);
use Canary qw(start_pg stop_pg psql pg_dsn start_am stop_am am_alerts start_proc stop_proc
              wait_for slurp);

plan skip_all => 'nines not built' unless -x bin('nines');
plan skip_all => 'needs root for runuser' if $>;
my $top = "$FindBin::Bin/../..";
my $dir = tempdir('nines-e2e-XXXXXX', TMPDIR => 1, CLEANUP => 1);

my $pg = start_pg();
my $am = start_am();
my @n = map { start_node() } 1 .. 3;
$ENV{NINES_ENDPOINTS} = join ',', map { "n$_\@az$_=$n[$_-1]{url}" } 1 .. 3;
$ENV{NINES_PG} = pg_dsn($pg);
$ENV{NINES_ALERTMANAGER} = $am->{url};

# The shipped examples must lint clean with this environment.
is(system(bin('nines'), 'canary', 'lint', '--config', "$top/canary/examples/canary.yaml") >> 8,
   0, 'examples/canary.yaml lints');
is(system(bin('nines'), 'alarms', 'lint', '--rules', "$top/canary/examples/alarms.yaml") >> 8,
   0, 'examples/alarms.yaml lints');

# The example rules, with windows scaled down so that a test can see an
# alarm resolve (the 1h/5m tier needs 5 minutes of clean data to clear).
open my $f, '>', "$dir/alarms.yaml" or die;
print $f <<'Y';
postgres: "${NINES_PG}"
alertmanager: "${NINES_ALERTMANAGER}"
evaluate_every: 1s
resend_every: 5s
hook: "echo \"$NINES_ALARM $NINES_ALARM_STATE $NINES_ALARM_GROUP\" >> ${HOOK_LOG}"
alarms:
  - name: availability_by_az
    objective: 99.99%
    group_by: [table, endpoint_az]
    burn_rates: [{long: 60s, short: 6s, factor: 14.4, severity: page}]
    hysteresis: {for: 0s, clear_for: 4s}
  - name: canary_blind
    blind: {after: 20s}
    group_by: [canary_az, endpoint]
Y
close $f;
$ENV{HOOK_LOG} = "$dir/hook.log";

my @canaries;
for my $az (1 .. 3) {
    local $ENV{NINES_CANARY_AZ} = "az$az";
    local $ENV{NINES_CANARY_METRICS_PORT} = Nines::free_port();
    push @canaries, start_proc("$dir/canary$az.log", bin('nines'), 'canary', 'run', '--config',
                               "$top/canary/examples/canary.yaml");
}
my $t_start = time;
my $alarms = start_proc("$dir/alarms.log", bin('nines'), 'alarms', 'run', '--rules',
                        "$dir/alarms.yaml");

# Steady state: samples from all three canaries, no alert.
ok(wait_for(30, sub {
       my @r = psql($pg, "SELECT count(DISTINCT canary_az) FROM canary_samples");
       @r && $r[0][0] == 3 }),
   'samples from the three canaries reach PostgreSQL');
sleep 3;
is(scalar @{ am_alerts($am) }, 0, 'healthy cluster: no alert in Alertmanager')
    or diag explain am_alerts($am);

# Stop az2's store.
my $t_stop = time;
stop_node($n[1]);
my $fired = wait_for(40, sub {
    grep { $_->{labels}{alertname} eq 'availability_by_az' && ($_->{labels}{az} // '') eq 'az2' }
        @{ am_alerts($am) } });
ok($fired, sprintf 'availability_by_az{az=az2} reaches Alertmanager (%.1f s after the stop)',
   time - $t_stop);
sleep 3;
my @others = grep { ($_->{labels}{az} // '') ne 'az2' } @{ am_alerts($am) };
is(scalar @others, 0, 'no alarm for az1, az3, nor a blind one') or diag explain \@others;
my ($a2) = grep { ($_->{labels}{az} // '') eq 'az2' } @{ am_alerts($am) };
is($a2->{labels}{severity}, 'page', 'severity label');
is($a2->{labels}{table}, 'nines_canary', 'table label');
ok($a2->{annotations}{burn_rate} > 14.4, "burn_rate annotation ($a2->{annotations}{burn_rate})");
like($a2->{annotations}{window}, qr{^1m/6s$}, 'window annotation');

# Bring it back (same data dir and port).
$n[1] = start_node(dir => $n[1]{dir}, port => $n[1]{port});
my $resolved = wait_for(60, sub { !grep { ($_->{labels}{az} // '') eq 'az2' } @{ am_alerts($am) } });
ok($resolved, 'the alert is resolved in Alertmanager once az2 is back');

my @tr = psql($pg, "SELECT alarm, group_key, from_state, to_state FROM alarm_transitions ORDER BY id");
ok((grep { $_->[1] =~ /endpoint_az=az2/ && $_->[3] eq 'firing' } @tr), 'firing recorded in PostgreSQL');
ok((grep { $_->[1] =~ /endpoint_az=az2/ && $_->[3] eq 'ok' } @tr), 'resolution recorded');
ok(!(grep { $_->[1] !~ /endpoint_az=az2/ } @tr), 'no transition for any other group')
    or diag explain \@tr;
ok(wait_for(10, sub { slurp("$dir/hook.log") =~ /availability_by_az resolved table=nines_canary,endpoint_az=az2/ }),
   'the hook ran for firing and resolved') and like(slurp("$dir/hook.log"), qr/availability_by_az firing/);

for my $c (@canaries) {
    is(stop_proc($c), 0, 'canary stops cleanly on SIGTERM');
}
is(stop_proc($alarms), 0, 'alarms stops cleanly on SIGTERM');
like(slurp("$dir/canary1.log"), qr/rows written to postgres, 0 dropped/, 'canary flushed everything');

# Backtest over the run: the same rules fire and clear for az2 only.
my $from = sprintf '@%d', $t_start - 5;
my $to = sprintf '@%d', time + 1;
my $bt = `'${\bin('nines')}' alarms backtest --rules $dir/alarms.yaml --from $from --to $to 2>&1`;
like($bt, qr/FIRING\s+availability_by_az severity=page window=1m\/6s table=nines_canary,endpoint_az=az2/,
     'backtest: fires for az2');
like($bt, qr/RESOLVED\s+availability_by_az .*endpoint_az=az2/, 'backtest: resolves');
unlike($bt, qr/endpoint_az=az[13]/, 'backtest: nothing for az1/az3');

stop_node($_) for @n;
stop_am($am);
stop_pg($pg);
diag slurp("$dir/alarms.log") unless Test::More->builder->is_passing;
done_testing;
