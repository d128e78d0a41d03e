#!/bin/sh
# Canary benchmark (not a test): detection time, PostgreSQL ingest rate and
# scheduling jitter. Usage: NINES_BUILD=build t/bench/canary.sh
# Needs root (PostgreSQL runs as the `postgres` user through runuser).
set -e
top=$(cd "$(dirname "$0")/../.." && pwd)
export NINES_BUILD="${NINES_BUILD:-$top/build}"
exec perl -I"$top/t/lib" - "$top" <<'PERL'
use strict; use warnings;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use Time::HiRes qw(sleep time);
use Nines qw(start_node stop_node bin free_port);
use Canary qw(start_pg stop_pg psql pg_dsn start_am stop_am am_alerts start_proc stop_proc wait_for slurp);
my $top = shift;
my $dir = tempdir('nines-bench-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $pg = start_pg();

# 1. Ingest: synthetic rows through the sink (COPY BINARY batches), one
# COPY stream and the default two, each into an emptied table.
my $rows = $ENV{ROWS} // 500000;
for my $streams (1, 2) {
    psql($pg, 'TRUNCATE canary_samples');
    my $out = `'${\bin('nines')}' canary sink-bench --pg '${\pg_dsn($pg)}' --rows $rows --streams $streams 2>&1`;
    $out =~ s/^.*INFO.*\n//mg;
    print "ingest, $streams stream(s): $out";
}

# 2. Detection time at 99.99 % with the shipped examples (1h/5m 14.4x tier).
my $am = start_am();
my @n = map { start_node() } 1 .. 3;
$ENV{NINES_ENDPOINTS} = join ',', map { "n$_\@az$_=$n[$_-1]{url}" } 1 .. 3;
$ENV{NINES_PG} = pg_dsn($pg);
$ENV{NINES_ALERTMANAGER} = $am->{url};
my @c;
for my $az (1 .. 3) {
    local $ENV{NINES_CANARY_AZ} = "az$az";
    local $ENV{NINES_CANARY_METRICS_PORT} = free_port();
    push @c, start_proc("$dir/c$az.log", bin('nines'), 'canary', 'run', '--config',
                        "$top/canary/examples/canary.yaml");
}
my $al = start_proc("$dir/alarms.log", bin('nines'), 'alarms', 'run', '--rules',
                    "$top/canary/examples/alarms.yaml");
my @det;
for my $round (1 .. ($ENV{ROUNDS} // 3)) {
    sleep 8;
    my $t0 = time;
    stop_node($n[1]);
    wait_for(60, sub { grep { ($_->{labels}{az} // '') eq 'az2' &&
                              $_->{labels}{alertname} eq 'availability_by_az' } @{ am_alerts($am) } });
    push @det, time - $t0;
    printf "detection round %d: %.1f s\n", $round, $det[-1];
    $n[1] = start_node(dir => $n[1]{dir}, port => $n[1]{port});
    sleep 6; # let intervals with errors in them reach PostgreSQL first
    # The 1h/5m tier needs its 5 m window clean before it resolves: start
    # the next round from scratch (fresh Alertmanager, no samples).
    stop_proc($al);
    psql($pg, 'TRUNCATE canary_samples, server_samples, alarm_transitions, alarm_state');
    stop_am($am);
    $am = start_am();
    $ENV{NINES_ALERTMANAGER} = $am->{url};
    $al = start_proc("$dir/alarms.log", bin('nines'), 'alarms', 'run', '--rules',
                     "$top/canary/examples/alarms.yaml");
}
stop_proc($_) for @c, $al;
my @s = sort { $a <=> $b } @det;
printf "detection: min %.1f s, median %.1f s, max %.1f s over %d rounds\n", $s[0], $s[@s / 2], $s[-1], scalar @s;

# 3. Scheduling jitter at 100 probes/s per endpoint, 3 endpoints, 20 s.
my $mport = free_port();
open my $f, '>', "$dir/j.yaml" or die;
print $f "az: az1\nendpoints: \"$ENV{NINES_ENDPOINTS}\"\nrate: 100\ninterval: 2s\nworkers: 16\n"
       . "metrics:\n  listen: 127.0.0.1:$mport\n";
close $f;
my $j = start_proc("$dir/j.log", bin('nines'), 'canary', 'run', '--config', "$dir/j.yaml");
sleep($ENV{JITTER_SECS} // 20);
my $m = HTTP::Tiny->new->get("http://127.0.0.1:$mport/metrics")->{content} // '';
stop_proc($j);
my %q = $m =~ /nines_canary_schedule_lag_seconds\{quantile="([\d.]+)"\} ([\d.]+)/g;
my ($probes) = $m =~ /nines_canary_probes_total (\d+)/;
printf "jitter at 100 probes/s x 3 endpoints: %d probes, lag p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
    $probes // 0, ($q{'0.5'} // 0) * 1e3, ($q{'0.99'} // 0) * 1e3, ($q{1} // 0) * 1e3;
stop_node($_) for @n;
stop_am($am);
stop_pg($pg);
PERL
