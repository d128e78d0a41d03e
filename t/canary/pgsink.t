#!/usr/bin/perl
# The canary's PostgreSQL sink against a real PostgreSQL: rows land with
# their histograms; a PostgreSQL restart mid-run loses nothing within the
# buffer bound; past the bound the canary drops the oldest rows and says how
# many (log and /metrics).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use Time::HiRes qw(sleep time);
use Nines qw(start_node stop_node bin free_port);
use Canary qw(start_pg stop_pg restart_pg psql pg_dsn start_proc stop_proc wait_for slurp);

plan skip_all => 'nines not built' unless -x bin('nines');
plan skip_all => 'needs root for runuser' if $>;
my $dir = tempdir('nines-pgs-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $pg = start_pg();
my $node = start_node();

sub config {
    my ($name, %o) = @_;
    my $path = "$dir/$name.yaml";
    open my $f, '>', $path or die;
    print $f "az: az1\nendpoints: \"az1=$node->{url}\"\nrate: 10\ninterval: 1s\ntimeout: 1s\n"
           . "sink:\n  postgres: \"" . pg_dsn($pg) . "\"\n  buffer: $o{buffer}\n  flush_every: 200ms\n"
           . "metrics:\n  listen: 127.0.0.1:$o{port}\n";
    close $f;
    return $path;
}

# 1. Restart PostgreSQL mid-run: nothing lost.
my $port = free_port();
my $c = start_proc("$dir/c1.log", bin('nines'), 'canary', 'run', '--config',
                   config('c1', buffer => 100000, port => $port));
ok(wait_for(20, sub { my @r = psql($pg, 'SELECT count(*) FROM canary_samples'); @r && $r[0][0] > 0 }),
   'rows reach PostgreSQL');
restart_pg($pg, 3);
sleep 3;
is(stop_proc($c), 0, 'canary exits 0 after SIGTERM');
my $log = slurp("$dir/c1.log");
like($log, qr/canary sink: .*(will retry|buffering)/, 'the lost connection was noticed');
like($log, qr/connected to postgres again/, 'and the sink reconnected');
like($log, qr/rows written to postgres, 0 dropped/, 'nothing dropped');
my ($n, $first, $last, $att) = @{ (psql($pg, "SELECT count(*), extract(epoch from min(ts))::int8,"
    . " extract(epoch from max(ts))::int8, sum(attempts) FROM canary_samples WHERE op = 'probe'"))[0] };
is($n, $last - $first + 1, "one probe row for every 1 s interval from first to last ($n rows)");
my ($dups) = @{ (psql($pg, "SELECT count(*) FROM (SELECT ts FROM canary_samples WHERE op = 'probe'"
    . " GROUP BY ts HAVING count(*) > 1) d"))[0] };
is($dups, 0, 'no interval written twice');
my @full = grep { $_->[0] != 10 } psql($pg, "SELECT attempts FROM canary_samples WHERE op = 'probe'"
    . " ORDER BY ts OFFSET 1");
ok(@full <= 1, 'every interval but the first and the partial last holds 10 probes (rate 10/s)')
    or diag explain \@full;
my ($hist_ok) = @{ (psql($pg, "SELECT bool_and(array_length(hist_idx, 1) = array_length(hist_cnt, 1)"
    . " AND (SELECT sum(x) FROM unnest(hist_cnt) x) = attempts) FROM canary_samples"))[0] };
is($hist_ok, 't', 'each row\'s histogram counts every attempt');
my @ver = psql($pg, 'SELECT version FROM nines_schema');
is($ver[0][0], 4, 'schema at version 4');

# 2. PostgreSQL away and a tiny bound: the oldest rows are dropped and counted.
stop_pg($pg);
$port = free_port();
$c = start_proc("$dir/c2.log", bin('nines'), 'canary', 'run', '--config',
                config('c2', buffer => 5, port => $port), '--flush-timeout', '1');
my $http = HTTP::Tiny->new(timeout => 2);
my $dropped = wait_for(20, sub {
    my $m = $http->get("http://127.0.0.1:$port/metrics")->{content} // '';
    $m =~ /nines_canary_sink_rows_total\{state="dropped"\} (\d+)/ && $1 > 0 ? $1 : 0 });
ok($dropped, "/metrics counts dropped rows ($dropped)");
my $m = $http->get("http://127.0.0.1:$port/metrics")->{content};
like($m, qr/nines_canary_sink_queued [0-5]\n/, 'the queue stays within its bound');
like($m, qr/nines_canary_requests_total\{canary_az="az1",endpoint="[^"]+",endpoint_az="az1",table="nines_canary",op="probe",outcome="ok"\} [1-9]/,
     'probe counters exported');
is(stop_proc($c), 1, 'exit 1: samples could not be flushed');
like(slurp("$dir/c2.log"), qr/buffer bound \(5 rows\) hit: \d+ samples dropped/, 'the log says how many were dropped');

stop_node($node);
done_testing;
