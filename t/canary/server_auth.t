#!/usr/bin/perl
# Server-side counts from a node whose cluster has credentials: ninesd then
# answers GET /metrics only to a signed request (docs/security.md), and the
# canary signs its scrape with the credentials of its config. A canary with
# a wrong secret gets nothing and says why in its log.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use Nines qw(start_node stop_node bin);
use Canary qw(start_pg stop_pg psql pg_dsn start_proc stop_proc wait_for slurp);

plan skip_all => 'nines not built' unless -x bin('nines');
plan skip_all => 'needs root for runuser' if $>;
my ($AK, $SK) = ('AKIDCANARY', 'canary/secret+KEY');
my $dir = tempdir('nines-srva-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $pg = start_pg();
my $node = start_node(auth => [$AK, $SK]);
is(HTTP::Tiny->new(timeout => 2)->get("$node->{url}/metrics")->{status}, 400,
   'ninesd refuses an unsigned GET /metrics');

sub config {
    my ($path, $secret) = @_;
    open my $f, '>', $path or die;
    print $f "az: az1\nendpoints: \"n1\@az1=$node->{url}\"\nrate: 10\ninterval: 1s\ntimeout: 1s\n"
           . "credentials: {access_key_id: $AK, secret_access_key: \"$secret\", region: local}\n"
           . "sink:\n  postgres: \"" . pg_dsn($pg) . "\"\n  flush_every: 200ms\n";
    close $f;
}
config("$dir/c.yaml", $SK);
my $c = start_proc("$dir/c.log", bin('nines'), 'canary', 'run', '--config', "$dir/c.yaml");
ok(wait_for(30, sub { my @r = psql($pg, "SELECT coalesce(sum(requests), 0) FROM server_samples"
                                        . " WHERE op = 'PutItem' AND tbl = 'nines_canary'");
                      @r && $r[0][0] >= 10 }),
   'server_samples rows arrive from the signed scrape');
unlike(slurp("$dir/c.log"), qr/server metrics of endpoint n1/, 'and no scrape failed');
is(stop_proc($c), 0, 'canary stops cleanly');

# The same canary with a wrong secret: its probes and its scrapes are refused.
psql($pg, "TRUNCATE server_samples");
config("$dir/bad.yaml", 'not-the-secret');
my $b = start_proc("$dir/bad.log", bin('nines'), 'canary', 'run', '--config', "$dir/bad.yaml");
ok(wait_for(20, sub { slurp("$dir/bad.log") =~ /server metrics of endpoint n1 .*refused \(HTTP 400: .*InvalidSignatureException/ }),
   'a wrongly signed scrape is refused, and the log names the error')
    or diag slurp("$dir/bad.log");
my @r = psql($pg, "SELECT count(*) FROM server_samples");
is($r[0][0], 0, '... and gives no server samples');
stop_proc($b);
stop_node($node);
stop_pg($pg);
diag slurp("$dir/c.log") unless Test::More->builder->is_passing;
done_testing;
