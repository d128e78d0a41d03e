#!/usr/bin/perl
# A game day that is killed outright (SIGKILL: no heal ran) leaves a host
# powered off and another cut off from its peers; the next game day on the
# same inventory reads the fault journal, powers the host on and removes
# the partition before it deploys, and says so. A lab of 3 hosts in 3 AZs.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use File::Temp qw(tempdir);
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Test::More;
use Time::HiRes qw(sleep time);

use Lab qw(run can_netns slurp hosts_on);
use Nines qw(bin);

my ($usable, $why) = can_netns();
plan skip_all => $why unless $usable;
my $nines = bin('nines');
my $ninesd = bin('ninesd');
plan skip_all => "$nines or $ninesd not built" unless -x $nines && -x $ninesd;

my $tmp = tempdir('nines-gd-journal-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $lab = "$tmp/lab";
$ENV{NINES_GAMEDAY_STATE_DIR} = "$tmp/state";
mkdir "$tmp/state";
my $runner;
END {
    local $?;
    if ($runner) { kill 'KILL', $runner; waitpid $runner, 0 }
    system($nines, 'lab', 'down', '--dir', $lab) if $lab && -e "$lab/lab.state";
}
my $up = run({ timeout => 120 }, $nines, 'lab', 'up', '--hosts', 3, '--azs', 3, '--no-labfs',
             '--dir', $lab);
is($up->{status}, 0, 'lab up: 3 hosts in 3 AZs') or diag($up->{err});
BAIL_OUT('no lab') if $up->{status};
my $inv = "$lab/inventory.yaml";

open my $f, '>', "$tmp/left.yaml" or die;
print $f <<'YAML';
cluster: {deploy: ~}
steps:
  - power_off: {names: [h1], quorum_safe: false}
  - partition: {names: [h2], quorum_safe: false}
  - sleep: 120s
verify: {checkers: false, scrub: false}
YAML
close $f;
open $f, '>', "$tmp/next.yaml" or die;
print $f "cluster: {deploy: ~}\nsteps:\n  - wait_healthy: {timeout: 60s}\nverify: {checkers: false, scrub: false}\n";
close $f;

sub nft_tables {
    my ($host) = @_;
    my $r = run({ timeout => 30 }, $nines, 'lab', 'exec', $host, '--dir', $lab, '--', 'nft', 'list',
                'tables');
    return $r->{out} // '';
}

# The first run, killed once both faults are in place.
$runner = fork // die;
if (!$runner) {
    open STDOUT, '>', "$tmp/left.out";
    open STDERR, '>', "$tmp/left.err";
    exec $nines, 'gameday', 'run', "$tmp/left.yaml", '--inventory', $inv, '--seed', 1, '--report',
        "$tmp/left", '--ninesd', $ninesd;
    exit 127;
}
my $t0 = time;
sleep 0.5 until (slurp("$tmp/left.err") // '') =~ /step 3\/3 sleep/ || time - $t0 > 180;
like(slurp("$tmp/left.err") // '', qr/step 3\/3 sleep/, 'the first run injected both faults');
kill 'KILL', $runner;
waitpid $runner, 0;
$runner = undef;
is(hosts_on($nines, $lab), 2, 'killed: h1 stays powered off');
like(nft_tables('h2'), qr/nines_fault_partition/, 'and h2 stays cut off (its nft table)');
my @j = glob("$tmp/state/faults-*");
is(scalar @j, 1, 'the fault journal is there');
is(slurp($j[0] // '') // '', "power\npartition\n", 'naming power and partition');

# The next run heals them first.
my $r = run({ timeout => 300 }, $nines, 'gameday', 'run', "$tmp/next.yaml", '--inventory', $inv,
            '--seed', 2, '--report', "$tmp/next", '--ninesd', $ninesd);
is($r->{status}, 0, 'the next game day passes') or diag("$r->{out}\n$r->{err}");
unlike(($r->{err} // '') . (slurp("$tmp/left.err") // ''), qr/Sanitizer|runtime error:/,
       'no sanitizer report from either run');
like($r->{err}, qr/an earlier run on this inventory did not finish: healing power, partition first/,
     'it says what it heals');
is(hosts_on($nines, $lab), 3, 'h1 is on again');
unlike(nft_tables('h2'), qr/nines_fault_partition/, 'h2 is joined again');
ok(!glob("$tmp/state/faults-*"), 'the journal is gone');

done_testing();
