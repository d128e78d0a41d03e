#!/usr/bin/perl
# Server-side counts: the canary scrapes a real ninesd's /metrics every
# interval and stores per-interval deltas in server_samples (they match the
# canary's own traffic; client errors are counted apart; a node restart
# resets the counters without producing a negative or inflated delta). Then
# `source: server` rules are evaluated on server_samples (operation filter,
# no double counting of the copies several canaries scrape, no confusion
# with canary-side rules) and reach a real Alertmanager.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep time);
use Nines qw(start_node stop_node bin free_port ddb);
use Canary qw(start_pg stop_pg psql pg_dsn start_am stop_am am_alerts start_proc stop_proc
              wait_for slurp);

plan skip_all => 'nines not built' unless -x bin('nines');
plan skip_all => 'needs root for runuser' if $>;
my $dir = tempdir('nines-srv-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $pg = start_pg();
my $node = start_node();

like(HTTP::Tiny->new(timeout => 2)->get("$node->{url}/metrics")->{content} // '',
     qr/^# TYPE nines_api_requests_total counter/m, 'ninesd serves /metrics');

open my $f, '>', "$dir/c.yaml" or die;
print $f "az: az1\nendpoints: \"n1\@az1=$node->{url}\"\nrate: 10\ninterval: 1s\ntimeout: 1s\n"
       . "sink:\n  postgres: \"" . pg_dsn($pg) . "\"\n  flush_every: 200ms\n";
close $f;
my $c = start_proc("$dir/c.log", bin('nines'), 'canary', 'run', '--config', "$dir/c.yaml");

sub srv { psql($pg, $_[0]) }
ok(wait_for(20, sub { my @r = srv("SELECT count(*) FROM server_samples WHERE op = 'PutItem'"
                                  . " AND requests > 0"); @r && $r[0][0] >= 4 }),
   'server_samples rows arrive');
# Client errors: GetItem on a table that does not exist (400).
my $bad = 0;
for (1 .. 7) {
    my ($st) = ddb($node, 'GetItem', { TableName => 'no_such_table', Key => { pk => { S => 'x' } } });
    $bad++ if $st == 400;
}
is($bad, 7, 'seven client errors sent');
ok(wait_for(10, sub { my @r = srv("SELECT sum(client_errors), sum(errors), sum(requests) FROM"
                                  . " server_samples WHERE tbl = 'no_such_table' AND op = 'GetItem'");
                      @r && ($r[0][0] // '') eq '7' && $r[0][1] eq '0' && $r[0][2] eq '7' }),
   'they show as 7 requests, 7 client errors, 0 server errors');

# The server saw the canary's traffic: over the same whole intervals, the
# PutItem requests ninesd counted match the canary's put attempts (a
# scrape lands a few ms after the boundary the canary cuts at: allow 3).
sleep 3;
my ($lo, $hi) = @{ (srv("SELECT extract(epoch from min(ts))::int8 + 1, extract(epoch from max(ts))::int8 - 1"
                        . " FROM server_samples WHERE op = 'PutItem' AND tbl = 'nines_canary'"))[0] };
my $range = "ts >= to_timestamp($lo) AND ts < to_timestamp($hi)";
my ($sreq) = @{ (srv("SELECT coalesce(sum(requests), 0) FROM server_samples WHERE op = 'PutItem'"
                     . " AND tbl = 'nines_canary' AND $range"))[0] };
my ($catt) = @{ (srv("SELECT coalesce(sum(attempts + retries), 0) FROM canary_samples WHERE op = 'put'"
                     . " AND $range"))[0] };
ok($hi - $lo >= 2 && $catt >= 10 * ($hi - $lo) - 3 && abs($sreq - $catt) <= 3,
   "server-side PutItem count ($sreq) matches the canary's puts ($catt) over ${\($hi - $lo)} s");

# Restart the node: its counters go back to 0.
my ($before) = @{ (srv("SELECT count(*) FROM server_samples"))[0] };
stop_node($node);
sleep 1.5;
$node = start_node(dir => $node->{dir}, port => $node->{port});
ok(wait_for(15, sub { slurp("$dir/c.log") =~ /endpoint n1 restarted/ }), 'the canary noticed the reset');
ok(wait_for(15, sub { my @r = srv("SELECT count(*) FROM server_samples WHERE inserted_at >"
                                  . " now() - interval '1 second' AND requests > 0"); @r && $r[0][0] > 0 }),
   'rows keep coming after the restart');
sleep 2;
is(stop_proc($c), 0, 'canary stops cleanly');
# Over the whole run, ninesd cannot have answered more PutItems than the
# canary sent (attempts and retries), and lost at most the requests of the
# interval before it stopped and those outside the first and last scrape. A
# delta taken against the counters of before the restart would be negative
# (or wrap), one taken whole without noticing a restart inflated.
my ($stot, $smin) = @{ (srv("SELECT sum(requests), min(requests) FROM server_samples"
                            . " WHERE tbl = 'nines_canary' AND op = 'PutItem'"))[0] };
my ($ctot) = @{ (srv("SELECT sum(attempts + retries) FROM canary_samples WHERE op = 'put'"))[0] };
ok($smin >= 0 && $stot <= $ctot && $stot >= 0.5 * $ctot,
   "no negative or inflated delta across the restart ($stot requests counted by ninesd,"
   . " $ctot sent, min $smin per row)");
like(slurp("$dir/c.log"), qr/scraping server metrics/, 'the log says it scrapes');

# source: server rules on rows as several canaries would write them. A
# 10 min interval keeps "the last complete interval" still for the test.
my $iv = 600;
my $now = time;
my $cur = int($now / $iv) * $iv;
my @rows;
for my $start ($cur - $iv, $cur) {
    # nA: 6 server errors in 100, scraped by two canaries (two copies).
    push @rows, ["nA", "azA", "PutItem", 100, 6], ["nA", "azA", "PutItem", 100, 6];
    push @rows, ["nB", "azB", "PutItem", 100, 12];
    push @rows, ["nC", "azC", "GetItem", 100, 50];
    $_->[5] = $start for @rows[-4 .. -1];
}
psql($pg, "TRUNCATE server_samples, canary_samples, alarm_state");
psql($pg, join '', map { "INSERT INTO server_samples (ts, interval_ms, endpoint, endpoint_az, tbl, op,"
                       . " requests, errors) VALUES (to_timestamp($_->[5]), ${\($iv * 1000)}, '$_->[0]',"
                       . " '$_->[1]', 'tbl', '$_->[2]', $_->[3], $_->[4]);" } @rows);
my $am = start_am();
open $f, '>', "$dir/alarms.yaml" or die;
print $f <<"Y";
postgres: "${\pg_dsn($pg)}"
alertmanager: "$am->{url}"
evaluate_every: 500ms
resend_every: 30s
alarms:
  - name: server_avail
    source: server
    objective: 99%
    group_by: [endpoint_az]
    burn_rates: [{long: 30m, short: 20m, factor: 2}]
  - name: server_errors
    source: server
    threshold: {errors: 10, in: 1, of: 1}
    operations: [PutItem]
    group_by: [endpoint]
  - name: canary_avail
    objective: 99%
    group_by: [endpoint_az]
    burn_rates: [{long: 30m, short: 20m, factor: 2}]
Y
close $f;
is(system(bin('nines'), 'alarms', 'lint', '--rules', "$dir/alarms.yaml") >> 8, 0, 'rules lint');
my $al = start_proc("$dir/alarms.log", bin('nines'), 'alarms', 'run', '--rules', "$dir/alarms.yaml");
sub names { join ' ', sort map { "$_->{labels}{alertname}:" . ($_->{labels}{az} // $_->{labels}{endpoint} // '') }
                @{ am_alerts($am) } }
ok(wait_for(20, sub { names() =~ /server_avail:azA.*server_avail:azB.*server_avail:azC/ }),
   'server_avail fires for the three endpoint AZs') or diag names();
ok(wait_for(10, sub { names() =~ /server_errors:nB/ }), 'server_errors fires for nB (12 errors)');
sleep 2;
my $n = names();
unlike($n, qr/server_errors:nA/, 'nA: 6 errors counted once, not twice (two canaries\' copies)');
unlike($n, qr/server_errors:nC/, 'nC: GetItem errors are not in the PutItem threshold');
unlike($n, qr/canary_avail/, 'the canary-side rule ignores server samples');
my ($a) = grep { $_->{labels}{alertname} eq 'server_avail' && $_->{labels}{az} eq 'azA' } @{ am_alerts($am) };
like($a->{annotations}{error_ratio} // '', qr/^0\.0600/, "azA error ratio 6/100 ($a->{annotations}{error_ratio})");
is(stop_proc($al), 0, 'alarms stops cleanly');
my $bt = `'${\bin('nines')}' alarms backtest --rules $dir/alarms.yaml --from now-1m --to now 2>&1`;
like($bt, qr/FIRING\s+server_errors .*endpoint=nB/, 'backtest reads server samples too');
unlike($bt, qr/server_errors .*endpoint=nA/, 'and counts nA once');

stop_am($am);
stop_node($node);
stop_pg($pg);
diag slurp("$dir/c.log"), slurp("$dir/alarms.log") unless Test::More->builder->is_passing;
done_testing;
