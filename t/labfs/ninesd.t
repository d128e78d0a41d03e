#!/usr/bin/perl
# End to end, without the lab: ninesd with its data directory on labfs, a
# `nines load` PutItem stream recording a history, a power cut in the middle
# (SIGSTOP ninesd, labfs `crash`, SIGKILL), unmount, mount, restart ninesd,
# let the load generator's final consistent reads run, then `nines check`:
#   - normal ninesd: every acknowledged write is there (check exit 0);
#   - ninesd --unsafe-ack-before-sync (acks after write(), fdatasync every 200 ms):
#     acknowledged writes ARE lost, and `nines check` names them (exit 1).
# Also: the CLI's errors for bad mounts, and ninesd's WAL + LMDB files being
# usable across a clean unmount/mount.
# Bounded: each round's load lasts NINES_LABFS_SECS (default 8) seconds, the
# unsafe case runs at most NINES_LABFS_ROUNDS (default 6) rounds, and every
# wait has a deadline. Cleanup (END): ninesd and load killed by pid, mounts
# unmounted lazily, the temp directory removed.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Path qw(rmtree);
use File::Temp qw(tempdir);
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);
use Nines qw(bin free_port start_node kill_node stop_node);

plan skip_all => '/dev/fuse is not usable' unless -r '/dev/fuse' && -w '/dev/fuse';
for my $b (qw(nines ninesd)) {
    plan skip_all => bin($b) . ' not built' unless -x bin($b);
}

my $SECS = $ENV{NINES_LABFS_SECS} || 8;
my $ROUNDS = $ENV{NINES_LABFS_ROUNDS} || 6;
my $nines = bin('nines');
my $top = tempdir('nines-labfs-ninesd-XXXXXX', TMPDIR => 1);
my (@mounts, @pids, $node);

END {
    kill_node($node) if $node;
    for my $p (@pids) { kill 'KILL', $p; waitpid $p, 0 }
    for my $m (@mounts) {
        system($nines, 'labfs', 'umount', '--lazy', '--timeout', '10', $m) if -e "$m/.labfs";
    }
    rmtree($top) if $top && !$ENV{LABFS_KEEP};
}

sub slurp { my ($p) = @_; open my $f, '<', $p or return ''; local $/; <$f> }

sub run_out {
    my (@cmd) = @_;
    my $out = `@{[ join ' ', map { "'$_'" } @cmd ]} 2>&1`;
    return ($? >> 8, $out);
}

sub mount_fs {
    my ($b, $m, $log) = @_;
    my ($rc, $out) = run_out($nines, 'labfs', 'mount', $b, $m, '--log', $log);
    push @mounts, $m unless grep { $_ eq $m } @mounts;
    return $rc == 0 ? '' : $out;
}

sub umount_fs {
    my ($m) = @_;
    my $t0 = time;
    my ($rc, $out) = run_out($nines, 'labfs', 'umount', '--timeout', '120', $m);
    diag sprintf('unmounting %s took %.1f s', $m, time - $t0) if time - $t0 > 5;
    return $rc == 0 ? '' : $out;
}

sub ctl {
    my ($m, $cmd) = @_;
    my ($rc, $out) = run_out($nines, 'labfs', 'ctl', $m, $cmd);
    chomp $out;
    return $rc == 0 ? $out : undef;
}

# ---- the CLI's errors ------------------------------------------------------
{
    my $d = "$top/cli";
    mkdir $d; mkdir "$d/b"; mkdir "$d/m"; mkdir "$d/full";
    open my $f, '>', "$d/full/x" or die; close $f;
    my ($rc, $out) = run_out($nines, 'labfs', 'mount', "$d/b", "$d/full");
    ok($rc == 1 && $out =~ /not empty/, "mount over a non-empty directory: $out");
    ($rc, $out) = run_out($nines, 'labfs', 'mount', "$d/b", "$d/missing");
    ok($rc == 1 && $out =~ /does not exist/, "mount on a missing directory: $out");
    ($rc, $out) = run_out($nines, 'labfs', 'mount', "$d/nob", "$d/m");
    ok($rc == 1 && $out =~ /backing directory .* does not exist/, "missing backing: $out");
    ($rc, $out) = run_out($nines, 'labfs', 'mount', "$d/full/x", "$d/m");
    ok($rc == 1 && $out =~ /not a directory/, "backing is a file: $out");
    ($rc, $out) = run_out($nines, 'labfs', 'ctl', "$d/m", 'stats');
    ok($rc == 1 && $out =~ /not a labfs mount/, "ctl on a plain directory: $out");
    ($rc, $out) = run_out($nines, 'labfs', 'ctl', "$d/m", 'explode');
    ok($rc == 2 && $out =~ /unknown command/, "ctl with an unknown command: $out");
    ($rc, $out) = run_out($nines, 'labfs', 'mount', "$d/b");
    is($rc, 2, 'mount without a mountpoint is a usage error');
}

# One power-off round. Returns a hash: acked, lost, check (exit), summary,
# crash (reply), and the problems met (err).
sub round {
    my ($name, $unsafe, $seed) = @_;
    my $d = "$top/$name";
    my ($b, $m) = ("$d/b", "$d/m");
    mkdir $d; mkdir $b; mkdir $m;
    my %r = (err => '');
    if (my $e = mount_fs($b, $m, "$d/labfs.log")) { $r{err} = "mount: $e"; return \%r }
    my $port = free_port();
    my $cluster = "$d/cluster.yaml";
    open my $cf, '>', $cluster or die;
    print $cf "cluster: test\nauth: none\nstorage: {wal_segment_size: 256KiB}\nnodes:\n"
            . "  - {id: n1, az: az1, rack: r1, api: 127.0.0.1:$port, peer: 127.0.0.1:"
            . ($port + 1) . ", data: $m/n1}\n";
    close $cf;
    my @args = $unsafe ? ('--unsafe-ack-before-sync') : ();
    $node = start_node(dir => $d, port => $port, cluster => $cluster, args => \@args);

    # The load: open loop, PutItem only, a final consistent read per key.
    my $hist = "$d/history.jsonl";
    my $lpid = fork // die;
    if (!$lpid) {
        open STDOUT, '>', "$d/load.out"; open STDERR, '>&', \*STDOUT;
        exec $nines, 'load', '--endpoint', "127.0.0.1:$port", '--create', '--table', 'power',
            '--op', 'put', '--keys', '1000000', '--rate', '1000', '--concurrency', '16',
            '--duration', $SECS, '--timeout', '1000', '--final-timeout', '40',
            '--seed', $seed, '--history', $hist;
        exit 127;
    }
    push @pids, $lpid;
    # Let acknowledged writes build up, then cut the power at a seeded
    # moment: freeze (the instant of the cut), SIGSTOP, crash, SIGKILL.
    # ninesd runs on for 300 ms after the cut: whatever it acknowledges then
    # cannot be durable (every fsync is held), so the safe round proves it
    # acknowledges nothing, and the unsafe one (acks before an fdatasync that
    # follows every 200 ms) loses acknowledged writes whatever the instant.
    sleep(1.5 + ($seed % 7) * 0.1);
    $r{freeze} = ctl($m, 'freeze') // '';
    select(undef, undef, undef, 0.3);
    kill 'STOP', $node->{pid};
    $r{stats} = ctl($m, 'stats') // '';
    $r{crash} = ctl($m, 'crash') // '';
    kill_node($node);
    undef $node;
    if (my $e = umount_fs($m)) { $r{err} .= "umount after crash: $e" }
    if (my $e = mount_fs($b, $m, "$d/labfs.log")) { $r{err} .= "remount: $e" }
    $node = eval { start_node(dir => $d, port => $port, cluster => $cluster, args => \@args) };
    $r{err} .= "restart: $@" unless $node;

    # The load generator's timed phase ends, then it reads every key back.
    my $deadline = time + $SECS + 60;
    while (time < $deadline && waitpid($lpid, WNOHANG) != $lpid) { sleep 0.1 }
    if (kill 0, $lpid) { kill 'KILL', $lpid; waitpid $lpid, 0; $r{err} .= "load did not end" }
    @pids = grep { $_ != $lpid } @pids;
    $r{load} = slurp("$d/load.out");

    my ($rc, $out) = run_out($nines, 'check', '--json', "$d/check.json", '--time-limit', '60',
                             $hist);
    $r{check} = $rc;
    $r{summary} = $out;
    my $j = eval { decode_json(slurp("$d/check.json")) } // {};
    $r{acked} = $j->{lost_writes}{acknowledged} // 0;
    $r{lost} = $j->{anomaly_counts}{'lost-write'} // $j->{lost_writes}{lost} // 0;
    my %seen;
    $r{lost_keys} = [grep { !$seen{$_}++ } map { $_->{key} }
                     grep { ($_->{kind} // '') =~ /lost/ } @{ $j->{anomalies} // [] }];
    $r{stop} = stop_node($node) if $node;
    undef $node;
    if (my $e = umount_fs($m)) { $r{err} .= "final umount: $e" }
    return \%r;
}

# ---- normal ninesd: nothing acknowledged is lost ---------------------------
my $s = round('safe', 0, 11);
is($s->{err}, '', 'safe round: mount, crash, remount and restart worked');
like($s->{freeze}, qr/^ok frozen/, "freeze reply: $s->{freeze}");
like($s->{crash}, qr/^ok crashed dropped_bytes=\d+/, "crash reply: $s->{crash}");
like($s->{stats}, qr/fsyncs=[1-9]/, 'ninesd fsync\'d through labfs before the crash');
cmp_ok($s->{acked}, '>', 1000, "a few thousand PutItems acknowledged ($s->{acked})");
is($s->{check}, 0, 'nines check: valid, every acknowledged write survived the power cut')
    or diag $s->{summary};
is($s->{lost}, 0, 'no lost writes');
is($s->{stop}, 0, 'ninesd stopped cleanly after recovery on labfs');
like($s->{load}, qr/final reads: \d+ keys/, 'the final reads ran after the restart');

# ---- unsafe ninesd: acknowledged writes are lost, and named ----------------
my ($u, $n) = (undef, 0);
for my $i (1 .. $ROUNDS) {
    $n = $i;
    $u = round("unsafe$i", 1, 20 + $i);
    diag "unsafe round $i: $u->{crash}";
    last if $u->{err} || $u->{check} != 0;
    diag "unsafe round $i: the cut missed the ack-to-fdatasync window ($u->{acked} acked); again";
}
is($u->{err}, '', 'unsafe rounds: mount, crash, remount and restart worked');
is($u->{check}, 1, "nines check: invalid (round $n of at most $ROUNDS)") or diag $u->{summary};
cmp_ok($u->{lost}, '>', 0, "acknowledged writes were lost: $u->{lost}");
like($u->{summary}, qr/lost writes: \d+ acknowledged, \d+ verified by a final read, [1-9]\d* lost/,
     'the summary counts them');
my @lk = @{ $u->{lost_keys} };
ok(@lk > 0, 'the report names the keys: ' . join(' ', @lk[0 .. ($#lk < 4 ? $#lk : 4)]));
done_testing();
