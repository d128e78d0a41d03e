#!/bin/sh
# Benchmarks of the scrubber (not a test; figures in docs/benchmarks.md,
# "The scrubber"):
#
#   t/bench/scrub.sh [ITEMS] [ROUNDS] [SECS]     (defaults 1000000, 3, 8)
#
# a. The digest's cost on the write path: two 3-node clusters side by side,
#    one built as usual (NINES_BUILD or ./build), one built with
#    -DNINES_DIGEST=OFF (NINES_BUILD_NODIGEST or ./build-nodigest, configured
#    and built here when absent; ninesd only). ROUNDS rounds of closed-loop
#    PutItem (`nines load`, 64 connections, 200-byte values, SECS s each),
#    alternating which cluster goes first; throughput and p99 of each run,
#    and the CPU the three ninesd processes used per PutItem (utime + stime
#    from /proc: less sensitive than throughput to other load on the
#    machine).
#    Both clusters stay up all along, so the idle one costs the same in
#    every run. A deep scrub of the OFF cluster shows it kept no digest.
# b. Live compare (`nines scrub`) of every partition of a 3-node cluster,
#    with 10,000 items and again with about ITEMS items (filled by
#    `nines load` puts over 3 x ITEMS keys: 1.25 x ITEMS puts leave about
#    ITEMS distinct keys; the deep scrub counts them exactly).
# c. Deep scrub unthrottled, one job at a time on one node (one thread:
#    per core): items/s and MB/s of keys and values, against `sha256sum` of
#    the same node's LMDB data file in the same run. Then client PutItem p99
#    (open loop 500/s, 8 connections) for 10 s before and 10 s during
#    `nines scrub --deep` at its default rate (run again until the 10 s end).
# d. Drill-down at that size: one item of partition 0 dropped at rest on
#    n3 (stopped; mdb_dump / mdb_load), n3 started again, `nines scrub`:
#    the finding, and how many keys the drill-down read to locate it.
# SCRUB_PARTITIONS=N: the table of b-d has N partitions (default 4; 1 puts
# all ITEMS in one partition, as the drill-down target is stated).
# SCRUB_PARTS=a (or b, c, d: c needs b, d needs b and c) runs only those
# parts.
# Bounded: every wait has a deadline, the fill stops after 900 s, the nodes
# are stopped by pid.
set -e
top=$(cd "$(dirname "$0")/../.." && pwd)
export NINES_BUILD=${NINES_BUILD:-$top/build}
export NINES_BUILD_NODIGEST=${NINES_BUILD_NODIGEST:-$top/build-nodigest}
if [ ! -x "$NINES_BUILD_NODIGEST/bin/ninesd" ]; then
  cmake -S "$top" -B "$NINES_BUILD_NODIGEST" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNINES_DIGEST=OFF >/dev/null
  cmake --build "$NINES_BUILD_NODIGEST" -j "${JOBS:-1}" --target ninesd -- --no-print-directory >/dev/null
fi
export SCRUB_ITEMS=${1:-1000000} SCRUB_ROUNDS=${2:-3} SCRUB_SECS=${3:-8} SCRUB_PARTS=${SCRUB_PARTS:-abcd}
exec perl -I"$top/t/lib" - <<'PERL'
use strict;
use warnings;
use JSON::PP;
use POSIX qw(WNOHANG ceil);
use Time::HiRes qw(time sleep);
use Nines qw(new_cluster start_member stop_node kill_node ddb cluster_status wait_until);

my ($items, $rounds, $secs) = ($ENV{SCRUB_ITEMS}, $ENV{SCRUB_ROUNDS}, $ENV{SCRUB_SECS});
my $nines = Nines::bin('nines');
my @all;
END { kill_node($_) for grep { $_->{pid} } @all }
$| = 1;
printf "nines %s on %d cores, %s; load generator on the same machine\n",
    `git -C '$ENV{NINES_BUILD}/..' rev-parse --short HEAD 2>/dev/null` =~ s/\s+//r, `nproc` + 0,
    `uname -r` =~ s/\s+//r;

sub admin {
    my ($n, $op, $req) = @_;
    return Nines::http($n->{url}, undef, encode_json($req), 'X-Amz-Target' => "NinesAdmin.$op");
}
sub eps { join ',', map { "http://127.0.0.1:$_->{port}" } @{ $_[0]{nodes} } }
sub load_json {
    my ($cl, @args) = @_;
    my $out = `$nines load --endpoint @{[eps($cl)]} --json @args 2>/dev/null`;
    return eval { decode_json($out) };
}
sub cluster3 {
    my ($build) = @_;
    my $cl = new_cluster(nodes => 3, azs => 3);
    local $ENV{NINES_BUILD} = $build;
    start_member($_) for @{ $cl->{nodes} };
    push @all, @{ $cl->{nodes} };
    return $cl;
}
# Runs a deep scrub job of (table, partition) on node n at rate (MB/s, 0 =
# unthrottled) and waits for it: its last status.
sub deep_job {
    my ($n, $table, $p, $rate) = @_;
    my ($st, $r) = admin($n, 'ScrubDeep', { TableName => $table, Partition => $p, RateMBps => $rate });
    die "ScrubDeep: $st " . encode_json($r) unless $st == 200;
    my $s;
    wait_until(1800, sub { (undef, $s) = admin($n, 'ScrubDeepStatus', { Job => $r->{Job} });
                           ($s->{State} // '') =~ /done|failed|cancelled/ });
    return $s;
}
sub median { my @s = sort { $a <=> $b } @_; return $s[int(@s / 2)] }

# ---- a. digest cost on the write path ----
if ($ENV{SCRUB_PARTS} =~ /a/) {
print "\n== a. PutItem with and without digest upkeep: 3 nodes, 4 partitions, 64 connections, 200-byte values, $secs s per run\n";
my $on = cluster3($ENV{NINES_BUILD});
my $off = cluster3($ENV{NINES_BUILD_NODIGEST});
for my $cl ($on, $off) {
    load_json($cl, qw(--create --table put --partitions 4 --op put --concurrency 8 --duration 1 --keys 100000));
}
my (%ops, %p99, %cpu);
# CPU seconds (user + system) the cluster's ninesd processes used so far.
sub cpu_of {
    my $t = 0;
    for my $n (@{ $_[0]{nodes} }) {
        my @f = split ' ', (Nines::slurp("/proc/$n->{pid}/stat") =~ s/^.*\)\s*//sr);
        $t += ($f[11] + $f[12]) / 100; # utime, stime (fields 14, 15) in ticks of 1/100 s
    }
    return $t;
}
for my $r (1 .. $rounds) {
    for my $which ($r % 2 ? ('on', 'off') : ('off', 'on')) {
        my $cl = $which eq 'on' ? $on : $off;
        my $c0 = cpu_of($cl);
        my $j = load_json($cl, '--table', 'put', '--op', 'put', '--concurrency', 64, '--duration', $secs,
                          '--warmup', 1, '--keys', 100000, '--value-size', 200, '--seed', $r);
        my $o = $j && $j->{ops}{put} or die "load failed";
        my $us = (cpu_of($cl) - $c0) * 1e6 / ($o->{ok} / $secs * ($secs + 1)); # warm-up second included
        push @{ $ops{$which} }, $o->{ops_per_s};
        push @{ $p99{$which} }, $o->{latency_ms}{p99};
        push @{ $cpu{$which} }, $us;
        printf "round %d digest %-3s: %8.0f PutItem/s  p50 %6.2f ms  p99 %6.2f ms  errors %d  ninesd CPU %4.0f us/PutItem\n",
            $r, $which, $o->{ops_per_s}, $o->{latency_ms}{p50}, $o->{latency_ms}{p99}, $o->{errors}, $us;
    }
}
my ($mon, $moff) = (median(@{ $ops{on} }), median(@{ $ops{off} }));
my ($con, $coff) = (median(@{ $cpu{on} }), median(@{ $cpu{off} }));
printf "median: digest on %.0f/s p99 %.2f ms %.0f us CPU/PutItem; off %.0f/s p99 %.2f ms %.0f us CPU/PutItem; throughput cost %.1f %%, CPU cost %.1f %%\n",
    $mon, median(@{ $p99{on} }), $con, $moff, median(@{ $p99{off} }), $coff, 100 * (1 - $mon / $moff),
    100 * ($con / $coff - 1);
# Paired: each round's on against the off run beside it, then the median
# and the spread of those ratios (the machine's load drifts between rounds
# far more than the effect; pairs cancel the drift, medians the outliers).
my @tr = sort { $a <=> $b } map { 100 * (1 - $ops{on}[$_] / $ops{off}[$_]) } 0 .. $rounds - 1;
my @cr = sort { $a <=> $b } map { 100 * ($cpu{on}[$_] / $cpu{off}[$_] - 1) } 0 .. $rounds - 1;
my @pr = sort { $a <=> $b } map { 100 * ($p99{on}[$_] / $p99{off}[$_] - 1) } 0 .. $rounds - 1;
printf "paired by round (median, min..max): throughput cost %.1f %% (%.1f..%.1f), p99 cost %.1f %% (%.1f..%.1f), CPU cost %.1f %% (%.1f..%.1f)\n",
    median(@tr), $tr[0], $tr[-1], median(@pr), $pr[0], $pr[-1], median(@cr), $cr[0], $cr[-1];
my $chk = deep_job($off->{nodes}[0], 'put', 0, 0);
printf "check: the OFF build kept no digest (deep scrub of a partition reads %d items, its digest counts %d)\n",
    $chk->{Items}, $chk->{Result}{MaintainedItems} // -1;
stop_node($_) for @{ $on->{nodes} }, @{ $off->{nodes} };
}
exit 0 unless $ENV{SCRUB_PARTS} =~ /[bcd]/;

# ---- b. live compare, small and large ----
my $bparts = $ENV{SCRUB_PARTITIONS} || 4;
print "\n== b. live compare (nines scrub) of every partition, 3 nodes, $bparts partition(s)\n";
my $cl = cluster3($ENV{NINES_BUILD});
my @n = @{ $cl->{nodes} };
sub live {
    my @t;
    for (1 .. 3) {
        my $json = "$cl->{dir}/live.json";
        my $t0 = time;
        my $rc = system("$nines scrub --cluster $cl->{path} --table big --json $json >/dev/null 2>&1") >> 8;
        my $j = eval { decode_json(Nines::slurp($json)) };
        push @t, sprintf('%.2f s (exit %d, %d compared, process %.2f s)', $j ? $j->{seconds} : -1, $rc,
                         $j ? $j->{compared} : 0, time - $t0);
    }
    return join '; ', @t;
}
load_json($cl, qw(--create --table big --partitions), $bparts, qw(--op put --concurrency 64 --requests 10000 --duration 60),
          '--keys', 10000, '--value-size', 20);
print "10,000 keys: ", live(), "\n";
my $t0 = time;
my $fill = load_json($cl, '--table', 'big', '--op', 'put', '--concurrency', 64, '--duration', 900,
                     '--requests', ceil(1.25 * $items), '--keys', 3 * $items, '--value-size', 20, '--seed', 7);
printf "fill: %d puts in %.0f s (%.0f/s)\n", $fill ? $fill->{ok} : 0, time - $t0,
    $fill ? $fill->{ok} / (time - $t0) : 0;

# ---- c. deep scrub rate, one thread, against sha256sum ----
my ($it, $by, $ms) = (0, 0, 0);
for my $p (0 .. $bparts - 1) {
    my $s = deep_job($n[0], 'big', $p, 0);
    die "deep scrub: $s->{State} $s->{Error}" unless $s->{State} eq 'done' && $s->{Result}{Match};
    ($it, $by, $ms) = ($it + $s->{Items}, $by + $s->{ScannedBytes}, $ms + $s->{ElapsedMs});
}
printf "%d items held (exact: the deep scrub of n1 counts them): %s\n", $it, live();
print "\n== c. deep scrub unthrottled, one job at a time on n1 (one thread)\n";
printf "deep scrub: %d items, %.1f MB of keys and values in %.2f s = %.0f items/s, %.1f MB/s\n",
    $it, $by / 1e6, $ms / 1000, $it / ($ms / 1000), $by / 1e6 / ($ms / 1000);
my $file = "$n[0]{dir}/n1/state/data.mdb";
my $size = -s $file;
$t0 = time;
system("sha256sum '$file' >/dev/null") == 0 or die 'sha256sum';
my $sh = time - $t0;
printf "sha256sum of n1's data.mdb (%.1f MB, page cache warm): %.2f s = %.1f MB/s\n",
    $size / 1e6, $sh, $size / 1e6 / $sh;
printf "ratio: deep scrub %.2fx sha256sum's MB/s (deep scrub counts key+value bytes, sha256sum the file)\n",
    ($by / 1e6 / ($ms / 1000)) / ($size / 1e6 / $sh);

sub client_load {
    my ($out) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDOUT, '>', $out or die;
        open STDERR, '>', '/dev/null';
        exec $nines, 'load', '--endpoint', eps($cl), '--table', 'big', '--op', 'put', '--rate', '500',
            '--concurrency', '8', '--duration', '10', '--keys', 3 * $items, '--value-size', '20',
            '--timeout', '10000', '--seed', '11', '--json';
        exit 127;
    }
    return $pid;
}
sub p99_of {
    my $j = eval { decode_json(Nines::slurp($_[0])) } or return 'n/a';
    my ($o) = values %{ $j->{ops} };
    return sprintf "p99 %.1f ms (p50 %.1f ms, %d ok, %d errors)", $o->{latency_ms}{p99}, $o->{latency_ms}{p50}, $o->{ok}, $o->{errors};
}
waitpid(client_load("$cl->{dir}/before.json"), 0);
my $pid = client_load("$cl->{dir}/during.json");
my ($runs, $dsecs, $dexit) = (0, 0, '');
while (waitpid($pid, WNOHANG) != $pid) {
    my $d0 = time;
    my $rc = system("$nines scrub --deep --cluster $cl->{path} --table big --timeout 60 >$cl->{dir}/deep.out 2>&1") >> 8;
    $runs++;
    $dsecs = time - $d0 if $runs == 1;
    $dexit .= $rc;
}
print "\nclient PutItem, open loop 500/s, 8 connections, 10 s: before ", p99_of("$cl->{dir}/before.json"),
    "; during a deep scrub at the default rate ", p99_of("$cl->{dir}/during.json"), "\n";
printf "deep scrub of all %d replicas at the default rate (20 MB/s each, one job per node): %.1f s; runs during the load: %d (exit codes %s)\n",
    3 * $bparts, $dsecs, $runs, $dexit;

# ---- d. drill-down at this size ----
if ($ENV{SCRUB_PARTS} =~ /d/) {
    printf "\n== d. drill-down: one item lost at rest on n3, partition 0 (about %d items)\n", $it / $bparts;
    my $n3 = $n[2];
    my ($g) = grep { ($_->{table} // '') eq 'big' && $_->{partition} == 0 } @{ cluster_status($n3)->{groups} };
    stop_node($n3) == 0 or die 'n3 did not stop';
    my ($nth, $lost) = (0);
    $t0 = time;
    my $dropped = Nines::lmdb_edit_items($n3, $g->{group},
        sub { ++$nth == 1000 ? do { $lost = $_[0]; undef } : $_[0] });
    printf "%d item dropped at rest (mdb_dump / mdb_load of n3's %d-item partition: %.0f s); n3 rebuilds its digest at start\n",
        $dropped, $nth, time - $t0;
    start_member($n3);
    wait_until(300, sub { my $s = cluster_status($n3); $s && grep { ($_->{table} // '') eq 'big' && ($_->{role} // '') =~ /leader|follower/ } @{ $s->{groups} } })
        or die 'n3 did not come back';
    my $json = "$cl->{dir}/drill.json";
    $t0 = time;
    my $rc = system("$nines scrub --cluster $cl->{path} --table big --json $json >$cl->{dir}/drill.out 2>&1") >> 8;
    my $j = eval { decode_json(Nines::slurp($json)) } // {};
    my @f = @{ $j->{findings} // [] };
    printf "scrub: exit %d in %.1f s, %d finding(s)%s; keys read (returned to the scrubber) %d, keys looked at by the replicas %d\n",
        $rc, time - $t0, scalar @f,
        @f ? sprintf(' (%s %s on %s, the dropped key %s)', $f[0]{kind}, encode_json($f[0]{key}), $f[0]{replica},
                     encode_json($lost ? { pk => $lost->{pk} } : {})) : '',
        $j->{keys_read} // -1, $j->{keys_scanned} // -1;
}
stop_node($_) for @n;
PERL
