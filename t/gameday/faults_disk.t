#!/usr/bin/perl
# The disk_full and bit_rot fault kinds on a real lab (3 hosts, 3 AZs, labfs
# data dirs), nothing simulated:
#  - disk_full on h1 (through its struct fault_kind, t/gameday/faults_disk.c):
#    a write in h1's data dir over SSH works before, fails with "No space
#    left on device" while full (df shows 0 available), works after
#    free_disk; a file written before keeps its bytes; heal_all from a fresh
#    process (it reads the machine, not a plan) also ends it; h2 is never
#    affected.
#  - bit_rot: a game day deploys a 3-node cluster with traffic and passes;
#    `nines scrub --deep` is clean; a second game day on the running cluster
#    (cluster: existing) has a bit_rot step on h2 (2 items of the traffic's
#    table), which names the keys it corrupted, and passes only because its
#    final deep scrub (verify: {scrub: deep}) names exactly those keys on h2;
#    ninesd on h2 really was stopped and started again (a new pid); and
#    `nines scrub --deep` run by hand exits 1 with rot findings on h2 naming
#    exactly those keys.
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
plan skip_all => '/dev/fuse is not usable' unless -r '/dev/fuse' && -w _;
my $nines = bin('nines');
my $ninesd = bin('ninesd');
my $tool = bin('ninesd-bitrot');
my $driver = build_dir() . '/t/faults_disk';
for ($nines, $ninesd, $tool, $driver) {
    plan skip_all => "$_ not built" unless -x $_;
}
my @gameday = ($nines, 'gameday');

my $tmp = tempdir('nines-faults-disk-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $lab = "$tmp/lab";
END {
    local $?;
    system($nines, 'lab', 'down', '--dir', $lab) if $lab && -e "$lab/lab.state";
}

my $up = run({ timeout => 120 }, $nines, 'lab', 'up', '--hosts', 3, '--azs', 3, '--dir', $lab);
is($up->{status}, 0, 'lab up: 3 hosts in 3 AZs') or diag($up->{err});
BAIL_OUT('no lab') if $up->{status};
my $inv = "$lab/inventory.yaml";

sub on_host {
    my ($host, $sh) = @_;
    return run({ timeout => 60 }, $nines, 'lab', 'exec', $host, '--dir', $lab, '--', 'sh', '-c', $sh);
}

sub driver {
    my ($action, $host) = @_;
    return run({ timeout => 120 }, $driver, $inv, $action, $host);
}

# ---------------------------------------------------------------- disk_full
my $d1 = "$lab/hosts/h1/data";
my $d2 = "$lab/hosts/h2/data";
my $w = on_host('h1', "printf 'kept bytes' > $d1/before && head -c 8192 /dev/zero > $d1/probe0");
is($w->{status}, 0, 'h1: a write in its data dir works before the fault') or diag($w->{err});

my $r = driver('disk_full', 'h1');
is($r->{status}, 0, 'disk_full on h1: injected') or diag($r->{err});
like($r->{out}, qr/^note: disk_full h1: labfs full on$/m, '... through labfs (noted)');

$w = on_host('h1', "head -c 8192 /dev/zero > $d1/probe1");
isnt($w->{status}, 0, 'h1: a write of 8 KiB now fails');
like($w->{err}, qr/No space left on device/, '... with "No space left on device"') or diag($w->{err});
$w = on_host('h1', "head -c 1 /dev/zero >> $d1/before");
like($w->{err}, qr/No space left on device/, '... and so does an append') or diag($w->{err});
$w = on_host('h1', "mkdir $d1/newdir");
like($w->{err}, qr/No space left on device/, '... and mkdir') or diag($w->{err});
$w = on_host('h1', "df -P $d1 | awk 'NR==2 {print \$4}'");
is($w->{out}, "0\n", 'h1: df shows 0 blocks available') or diag($w->{out} . $w->{err});
$w = on_host('h2', "head -c 8192 /dev/zero > $d2/probe");
is($w->{status}, 0, 'h2 is not affected') or diag($w->{err});
is(on_host('h1', "cat $d1/before")->{out}, 'kept bytes', 'h1: what was written before reads back');

$r = driver('free_disk', 'h1');
is($r->{status}, 0, 'free_disk on h1') or diag($r->{err});
like($r->{out}, qr/^note: free_disk h1: labfs full off$/m, '... noted');
$w = on_host('h1', "head -c 8192 /dev/zero > $d1/probe2 && wc -c < $d1/probe2");
is($w->{status}, 0, 'h1: the write works again') or diag($w->{err});
like($w->{out}, qr/^\s*8192$/, '... all 8 KiB of it');

# heal_all from a process that injected nothing: it must look at the machine.
driver('disk_full', 'h1');
like(on_host('h1', "head -c 4096 /dev/zero > $d1/probe3")->{err}, qr/No space left on device/,
     'full again');
$r = driver('heal_all', 'h1');
is($r->{status}, 0, 'heal_all from a fresh process') or diag($r->{err});
like($r->{out}, qr/^note: free_disk h1: labfs full off$/m, '... turns h1 full off');
unlike($r->{out}, qr/free_disk h[23]/, '... and touches no host that was not full');
is(on_host('h1', "head -c 4096 /dev/zero > $d1/probe3")->{status}, 0, 'h1 takes writes again');
is(on_host('h1', "cat $d1/before")->{out}, 'kept bytes', 'and still holds what it had');
on_host('h1', "rm -f $d1/probe0 $d1/probe1 $d1/probe2 $d1/probe3 $d1/before");
on_host('h2', "rm -f $d2/probe");

# ------------------------------------------------------------------ bit_rot
my $pb1 = "$tmp/deploy.yaml";
open my $f, '>', $pb1 or die;
print $f <<'EOF';
name: rot-deploy
cluster:
  deploy:
    partitions: 3
traffic:
  rate: 100
  duration: 4s
  mix: {put: 1}
  keys: 300
  concurrency: 8
  partitions: 3
  table: gameday
steps:
  - wait_healthy: {timeout: 60s}
  - sleep: 6s
verify:
  timeout: 60s
EOF
close $f;
my $rep1 = "$tmp/report-deploy";
$r = run({ timeout => 240 }, @gameday, 'run', $pb1, '--inventory', $inv, '--seed', 5,
         '--report', $rep1, '--ninesd', $ninesd);
is($r->{status}, 0, 'game day 1 (deploy, traffic) passes') or diag("$r->{out}\n$r->{err}");
my $cluster = "$rep1/cluster.yaml";
BAIL_OUT('no cluster') unless -s $cluster;

sub deep_scrub {
    my ($json) = @_;
    my $s = run({ timeout => 180 }, $nines, 'scrub', '--deep', '--cluster', $cluster, '--json',
                $json, '--rate', 0, '--timeout', 60);
    my $j = eval { decode_json(slurp($json) // '') };
    return ($s, $j // {});
}

my ($s, $j) = deep_scrub("$tmp/deep-before.json");
is($s->{status}, 0, 'deep scrub before the fault: clean (exit 0)') or diag("$s->{out}\n$s->{err}");
is(scalar @{ $j->{findings} // [] }, 0, '... no finding');

my $pid_before = slurp("$d2/ninesd.pid") // '';
chomp $pid_before;
ok($pid_before =~ /^\d+$/ && -e "/proc/$pid_before", "h2's ninesd runs (pid $pid_before)");

my $pb2 = "$tmp/rot.yaml";
open $f, '>', $pb2 or die;
print $f <<"EOF";
name: rot
cluster:
  existing: {cluster_file: $cluster}
steps:
  - wait_healthy: {timeout: 60s}
  - bit_rot: {names: [h2], items: 2, table: gameday}
  - wait_healthy: {timeout: 60s}
verify:
  scrub: deep
  timeout: 60s
EOF
close $f;
my $rep2 = "$tmp/report-rot";
$r = run({ timeout => 300 }, @gameday, 'run', $pb2, '--inventory', $inv, '--seed', 6,
         '--report', $rep2);
like($r->{out}, qr/^PASSED$/m,
     'game day 2 (bit_rot on h2) passes: its deep scrub names exactly the rotted items')
    or diag("$r->{out}\n$r->{err}");
like($r->{out}, qr/^verify scrub\s+PASS: found exactly the 2 item\(s\) bit_rot corrupted/m,
     '... and says so');
like($r->{out}, qr/^\s+2\s+\S+\s+bit_rot\s+h2\s/m, 'its summary shows the bit_rot step on h2');
unlike($r->{out}, qr/FAILED/, 'no step failed');
my @noted = $r->{err} =~ /bit_rot h2: corrupted item (\{.*?\}\}) of table gameday/g;
is(scalar @noted, 2, 'the fault names the 2 items it corrupted on h2') or diag($r->{err});
my $json = JSON::PP->new->canonical(1);
my %rotted = map { $json->encode(decode_json($_)) => 1 } @noted;
is(scalar keys %rotted, 2, '... two different keys');
{
    is($r->{status}, 0, 'game day 2 exits 0');
    my $rep = eval { decode_json(slurp("$rep2/report.json") // '') } // {};
    my ($rstep) = grep { $_->{kind} eq 'bit_rot' } @{ $rep->{steps} // [] };
    ok($rstep && !$rstep->{failed} && ($rstep->{mode} // '') eq 'rot'
           && "@{ $rstep->{hosts} }" eq 'h2', 'report: the bit_rot step hit h2, mode rot');
}

my $pid_after = slurp("$d2/ninesd.pid") // '';
chomp $pid_after;
ok(!-e "/proc/$pid_before/exe", "h2's old ninesd ($pid_before) is gone");
ok($pid_after =~ /^\d+$/ && $pid_after ne $pid_before && -e "/proc/$pid_after/exe",
   "h2 runs a new ninesd ($pid_after)");
ok(-x "$d2/ninesd-bitrot", 'the tool was uploaded next to ninesd');

($s, $j) = deep_scrub("$tmp/deep-after.json");
is($s->{status}, 1, 'deep scrub after the fault: exit 1 (findings)') or diag("$s->{out}\n$s->{err}");
my @f = @{ $j->{findings} // [] };
ok(@f >= 1, 'there are findings (' . scalar(@f) . ')');
ok(!grep({ ($_->{kind} // '') ne 'rot' || ($_->{replica} // '') ne 'h2' } @f),
   'every finding is rot on h2') or diag(explain(\@f));
my %found = map { $json->encode($_->{key}) => 1 } map { @{ $_->{keys} // [] } } @f;
is_deeply([sort keys %found], [sort keys %rotted], 'the deep scrub names exactly the corrupted keys')
    or diag(explain(\@f));
like($s->{out}, qr/ROT key .* on h2/, 'the summary names them on h2');

done_testing();
