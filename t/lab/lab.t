#!/usr/bin/perl
# `nines lab`: up a 6-host lab in 3 AZs, use it (status, exec, power, boot.d)
# and take it down, proving nothing is left behind: no namespace, no link,
# no process, no directory. Also: bad input never leaves a half-made lab, an
# `up` that fails midway cleans up after itself, and `down` finishes the job
# after an `up` that was killed.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use File::Temp qw(tempdir);
use JSON::PP;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);

use Lab qw(run netns_names link_names alive lab_id slurp can_netns);
use Nines qw(bin);

my ($usable, $why) = can_netns();
plan skip_all => $why unless $usable;
my $nines = bin('nines');
plan skip_all => "$nines not built" unless -x $nines;

my $tmp = tempdir('nines-lab-t-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my @labs; # every DIR an `up` may have made, taken down at the end whatever happens
END {
    for my $d (@labs) {
        system($nines, 'lab', 'down', '--dir', $d) if -e "$d/lab.state";
    }
}

# Every nines run goes through here, so a sanitizer build's report is caught
# even where the exit status alone would not show it.
my @san;
sub lab {
    my ($opt, @args) = @_;
    my $r = run({ timeout => 120, %$opt }, $nines, 'lab', @args);
    push @san, "nines lab @args:\n$r->{err}" if $r->{err} =~ /Sanitizer|runtime error:/;
    return $r;
}

# The pids still alive after up to 2 s: a SIGKILLed process leaves its
# namespace a moment before it becomes a zombie.
sub still_alive {
    my @p = @_;
    for (1 .. 100) {
        @p = grep { alive($_) } @p;
        last unless @p;
        sleep 0.02;
    }
    return @p;
}

sub leftovers {
    my ($id) = @_;
    my @ns = grep { /^nlab-\Q$id\E-/ } netns_names();
    my @ln = grep { /^nl\Q$id\E/ } link_names();
    return (@ns, @ln);
}

# --- bad input: clear errors, nothing made ---------------------------------
{
    my $d = "$tmp/bad";
    my @cases = (
        [['up', '--hosts', 6, '--azs', 3, '--frobnicate', '--dir', $d], 2, qr/unrecognized option/],
        [['up', '--hosts', 0, '--azs', 1, '--dir', $d], 2, qr/--hosts must be 1\.\.250 \(got 0\)/],
        [['up', '--hosts', 251, '--azs', 1, '--dir', $d], 2, qr/--hosts must be 1\.\.250/],
        [['up', '--hosts', 3, '--azs', 4, '--dir', $d], 2, qr/--azs 4 is more than --hosts 3/],
        [['up', '--hosts', 4, '--azs', 2, '--racks', 3, '--dir', $d], 2, qr/a rack would be empty/],
        [['up', '--hosts', 'six', '--azs', 1, '--dir', $d], 2, qr/--hosts must be an integer/],
        [['up', '--hosts', 2, '--azs', 1], 2, qr/--dir DIR is required/],
        [['up', '--hosts', 2, '--azs', 1, '--subnet', '8.8.8.0/24', '--dir', $d], 1,
         qr/not private/],
        [['up', '--hosts', 2, '--azs', 1, '--subnet', '10.1.2.0/16', '--dir', $d], 1,
         qr/only \/24/],
        [['frob', '--dir', $d], 2, qr/unknown subcommand 'frob'/],
        [['power', 'sideways', 'h1', '--dir', $d], 2, qr/expected `off HOST` or `on HOST`/],
        [['exec', 'h1', '--dir', $d], 2, qr/expected HOST --dir DIR -- CMD/],
        [['status', '--dir', $d], 1, qr/no lab at/],
        [['down', '--dir', "$tmp"], 1, qr/is not a lab \(no lab\.state\)/],
    );
    for my $c (@cases) {
        my ($args, $want, $re) = @$c;
        my $r = lab({}, @$args);
        is($r->{status}, $want, "nines lab @$args: exit $want");
        like($r->{err}, $re, '... says why: ' . (split /\n/, $r->{err})[0]);
    }
    my $r = lab({ env => { PATH => '/nonexistent' } }, 'up', '--hosts', 1, '--azs', 1, '--dir', $d);
    is($r->{status}, 1, 'no ip(8) in PATH: exit 1');
    like($r->{err}, qr/no `ip` program/, '... says so');
  SKIP: {
        my ($setpriv) = grep { -x } ('/usr/bin/setpriv', '/bin/setpriv');
        skip 'no setpriv to drop root', 2 unless $setpriv;
        $r = run({ timeout => 30 }, $setpriv, '--reuid=65534', '--regid=65534', '--clear-groups',
                 $nines, 'lab', 'up', '--hosts', 1, '--azs', 1, '--dir', $d);
        is($r->{status}, 1, 'not root: exit 1');
        like($r->{err}, qr/must run as root/, '... says so');
    }
    ok(!-e $d, 'no bad invocation created the lab directory');
    my $long = "$tmp/" . ('x' x (200 - length $tmp));
    $r = lab({}, 'up', '--hosts', 1, '--azs', 1, '--dir', $long);
    is($r->{status}, 1, 'a DIR longer than 200 characters is refused');
    like($r->{err}, qr/at most 200 characters/, '... says so');
    ok(!-e $long, '... and is not left behind');
    $r = lab({}, 'up', '--hosts', 1, '--azs', 1, '--dir', "$tmp/sp ace");
    is($r->{status}, 1, 'a DIR with a space is refused');
    ok(!-e "$tmp/sp ace", '... and is not left behind');
    mkdir "$tmp/full" or die;
    open my $f, '>', "$tmp/full/precious" or die;
    close $f;
    $r = lab({}, 'up', '--hosts', 1, '--azs', 1, '--dir', "$tmp/full");
    is($r->{status}, 1, 'a non-empty DIR is refused');
    like($r->{err}, qr/exists and is not empty/, '... says so');
    ok(-e "$tmp/full/precious", '... and what was there stays');
}

# --- up -----------------------------------------------------------------------
my $dir = "$tmp/lab";
push @labs, $dir;
my $r = lab({}, 'up', '--hosts', 6, '--azs', 3, '--racks', 2, '--dir', $dir);
is($r->{status}, 0, 'lab up --hosts 6 --azs 3 --racks 2') or diag $r->{err};
diag(sprintf 'lab up (6 hosts) took %.2f s', $r->{secs});
my $id = lab_id($dir);
like($id // '', qr/^[0-9a-f]{6}$/, "the lab has an id ($id)") or BAIL_OUT('no lab');
my $ns_prefix = "nlab-$id-";

my $inv = slurp("$dir/inventory.yaml") // '';
like($inv, qr/driver: lab, netns: ${ns_prefix}h1, start: "\Q$dir\E\/hosts\/h1\/boot"/,
     'inventory.yaml: lab driver, netns and boot script');
like($inv, qr/data: "\Q$dir\E\/hosts\/h6\/data"/, 'inventory.yaml: data dir');
ok(-d "$dir/hosts/$_/data" && -d "$dir/hosts/$_/boot.d" && -x "$dir/hosts/$_/boot",
   "$_ has data/, boot.d/ and an executable boot") for qw(h1 h6);
my $kh = slurp("$dir/known_hosts") // '';
is(scalar(() = $kh =~ /^\S+ ssh-ed25519 \S+/mg), 6, 'known_hosts lists 6 ed25519 host keys');

# --- status: the inventory loads and every host is up --------------------------
$r = lab({}, 'status', '--dir', $dir, '--json');
is($r->{status}, 0, 'lab status --json') or diag $r->{err};
my $st = eval { decode_json($r->{out}) } // {};
my @hosts = @{ $st->{hosts} // [] };
is(scalar @hosts, 6, 'six hosts');
is($st->{lab}, $id, 'status names the lab');
my (%per_az, %pair, %addr);
for my $h (@hosts) {
    $per_az{ $h->{az} }++;
    $pair{"$h->{az}/$h->{rack}"}++;
    $addr{ $h->{address} }++;
}
is_deeply(\%per_az, { az1 => 2, az2 => 2, az3 => 2 }, 'two hosts in each of az1..az3');
is(scalar(keys %pair), 6, 'each host in its own (AZ, rack): racks r1, r2 in every AZ');
is(scalar(keys %addr), 6, 'six distinct addresses');
my ($net) = ($st->{subnet} // '') =~ m{^(\d+\.\d+\.\d+)\.0/24$};
ok($net && !grep({ index($_, "$net.") != 0 } keys %addr), "all inside $st->{subnet}");
is(scalar(grep { $_->{power} eq 'on' && $_->{ssh} } @hosts), 6, 'all six powered on, sshd reachable');
is(scalar(grep { index($_->{netns}, $ns_prefix) == 0 } @hosts), 6, "netns names start $ns_prefix");
$r = lab({}, 'status', '--dir', $dir);
like($r->{out}, qr/^h6\s+\Q$hosts[5]{address}\E\s+az3\s+r2\s+on\s+mounted\s+ok$/m, 'status as a table (power, fs, ssh)');

my @ns = grep { index($_, $ns_prefix) == 0 } netns_names();
is(scalar @ns, 6, 'ip netns list shows 6 namespaces of the lab');
my @links = grep { /^nl\Q$id\E/ } link_names();
is_deeply([sort @links], [sort("nl${id}br", map { "nl${id}v$_" } 1 .. 6)],
          'the bridge and 6 veths exist, nothing else of the lab in this namespace');

# --- exec -----------------------------------------------------------------------
for my $h (@hosts) {
    $r = lab({}, 'exec', $h->{name}, '--dir', $dir, '--', 'hostname');
    is($r->{status} . ' ' . $r->{out}, "0 $h->{name}\n", "$h->{name}: its sshd answers `hostname`");
    $r = lab({}, 'exec', $h->{name}, '--dir', $dir, '--', 'ip', 'route');
    unlike($r->{out}, qr/^default/m, "$h->{name}: no default route");
    like($r->{out}, qr/^\Q$net\E\.0\/24 dev eth0 .*src \Q$h->{address}\E/m,
         "$h->{name}: only the lab subnet, from its own address");
}
$r = lab({}, 'exec', 'h1', '--dir', $dir, '--', 'ip', '-o', 'link', 'show', 'up');
like($r->{out}, qr/: lo: /, 'lo is up inside h1');

$r = lab({}, 'exec', 'h1', '--dir', $dir, '--', 'sh', '-c', 'exit 7');
is($r->{status}, 7, 'the remote exit status (7) is nines\' exit status');
$r = lab({}, 'exec', 'h2', '--dir', $dir, '--', 'sh', '-c', 'echo out; echo err >&2; exit 3');
is($r->{out}, "out\n", 'stdout passed through');
is($r->{err}, "err\n", 'stderr passed through');
is($r->{status}, 3, 'with status 3');

my $mark = "$tmp/injected";
my @hostile = ("\$(touch $mark)", "`touch $mark`", "; touch $mark", "a'b\"c\\d", 'two  words',
               '*', '', "line\nbreak", '--dir');
$r = lab({}, 'exec', 'h3', '--dir', $dir, '--', 'printf', '%s|\n', @hostile);
is($r->{status}, 0, 'hostile arguments: exit 0');
is($r->{out}, join('', map { "$_|\n" } @hostile), 'each reaches the remote program as one literal argument');
ok(!-e $mark, 'nothing was interpreted by the remote shell');

$r = lab({}, 'exec', 'h1', '--dir', $dir, '--timeout', '1', '--', 'sleep', '30');
is($r->{status}, 124, 'a command overrunning --timeout gives 124');
cmp_ok($r->{secs}, '<', 10, sprintf('... promptly (%.1f s)', $r->{secs}));
$r = lab({}, 'exec', 'h9', '--dir', $dir, '--', 'true');
is($r->{status}, 255, 'an unknown host gives 255');
like($r->{err}, qr/no host 'h9'.*h1, h2/, '... and lists the hosts');

# --- power -------------------------------------------------------------------------
my $sshd2 = (slurp("$dir/hosts/h2/run/sshd.pid") // '') =~ s/\s+//gr;
ok($sshd2 && alive($sshd2), "h2's sshd runs (pid $sshd2)");
$r = lab({}, 'power', 'off', 'h2', '--dir', $dir);
is($r->{status}, 0, 'power off h2') or diag $r->{err};
is_deeply([still_alive($sshd2)], [], "h2's sshd is gone");
$r = lab({}, 'exec', 'h2', '--dir', $dir, '--', 'true');
is($r->{status}, 255, 'exec on h2 fails while it is off');
like($r->{err}, qr/refused|timed out|connect/i, '... with the SSH error');
$st = decode_json(lab({}, 'status', '--dir', $dir, '--json')->{out});
my %by = map { $_->{name} => $_ } @{ $st->{hosts} };
ok($by{h2}{power} eq 'off' && !$by{h2}{ssh}, 'status: h2 off, sshd unreachable');
is(scalar(grep { $_->{power} eq 'on' && $_->{ssh} } @{ $st->{hosts} }), 5, 'the five others are untouched');
$r = lab({}, 'power', 'on', 'h2', '--dir', $dir);
is($r->{status}, 0, 'power on h2') or diag $r->{err};
$r = lab({}, 'exec', 'h2', '--dir', $dir, '--', 'hostname');
is($r->{out}, "h2\n", 'exec on h2 works again');
$r = lab({}, 'power', 'on', 'h2', '--dir', $dir);
is($r->{status}, 1, 'power on a host that is on: refused');
like($r->{err}, qr/already on/, '... says so');

# --- power loss: labfs at the data dirs ----------------------------------------------
# Every host's data dir is a labfs mount; power off is a power cut: a file
# written but not fsync'd is gone after power on, an fsync'd one is there.
# `--mode kill` (the old power-off) keeps both: that contrast is what proves
# the crash, not the kill, lost the write.
sub mounts_under {
    my ($d) = @_;
    my $m = slurp('/proc/self/mounts') // '';
    return grep { index($_, $d) == 0 } map { (split / /)[1] } split /\n/, $m;
}
sub labfs_pid {
    my ($mnt) = @_;
    my $r = run({ timeout => 20 }, $nines, 'labfs', 'ctl', $mnt, 'stats');
    return $r->{out} =~ /\bpid=(\d+)/ ? $1 : undef;
}
like($inv, qr/fs: "\Q$dir\E\/hosts\/h4\/data", fs_mode: crash/, 'inventory.yaml: h4 has its labfs');
is_deeply([sort(mounts_under("$dir/"))], [map { "$dir/hosts/h$_/data" } 1 .. 6],
          'up mounted one labfs per host, at its data dir');
ok(-d "$dir/hosts/h4/backing", 'with its backing dir beside it');
my $d4 = "$dir/hosts/h4/data";
my $old_daemon = labfs_pid($d4);
ok($old_daemon && alive($old_daemon), "h4's labfs daemon runs (pid " . ($old_daemon // '?') . ')');
$r = lab({}, 'exec', 'h4', '--dir', $dir, '--', 'sh', '-c',
         'printf unsynced > "$1/lost" && printf synced > "$1/kept" && sync -- "$1/kept" && cat "$1/lost" "$1/kept"',
         'sh', $d4);
is($r->{out}, 'unsyncedsynced', 'h4 wrote two files, fsync\'d one (both readable)') or diag $r->{err};
$st = decode_json(lab({}, 'status', '--dir', $dir, '--json')->{out});
%by = map { $_->{name} => $_ } @{ $st->{hosts} };
is($by{h4}{fs}, 'mounted', 'status: h4\'s fs is mounted');
like($by{h4}{fs_detail} // '', qr/dirty_bytes=[1-9]\d* fsyncs=[1-9]/, '... with dirty bytes and fsyncs');
$r = lab({}, 'power', 'off', 'h4', '--dir', $dir);
is($r->{status}, 0, 'power off h4 (a power cut)') or diag $r->{err};
diag(sprintf 'power off with labfs took %.2f s', $r->{secs});
is_deeply([mounts_under($d4)], [], 'h4\'s data dir is no longer mounted');
is_deeply([still_alive($old_daemon)], [], 'and its labfs daemon is gone');
ok(-e "$dir/hosts/h4/backing/kept" && !-e "$dir/hosts/h4/backing/lost",
   'the backing holds the fsync\'d file only');
$st = decode_json(lab({}, 'status', '--dir', $dir, '--json')->{out});
%by = map { $_->{name} => $_ } @{ $st->{hosts} };
ok($by{h4}{power} eq 'off' && $by{h4}{fs} eq 'unmounted', 'status: h4 off, fs unmounted');
like(slurp("$dir/hosts/h4/log/labfs.log") // '', qr/crash/, 'the labfs log records the crash');
$r = lab({}, 'power', 'on', 'h4', '--dir', $dir);
is($r->{status}, 0, 'power on h4') or diag $r->{err};
my $new_daemon = labfs_pid($d4);
ok($new_daemon && $new_daemon != $old_daemon, "a fresh labfs daemon serves it (pid " . ($new_daemon // '?') . ')');
$r = lab({}, 'exec', 'h4', '--dir', $dir, '--', 'cat', "$d4/kept");
is($r->{out}, 'synced', 'after power on: the fsync\'d file is there, intact');
$r = lab({}, 'exec', 'h4', '--dir', $dir, '--', 'test', '-e', "$d4/lost");
is($r->{status}, 1, 'after power on: the unsynced file is gone');
# The same with the old kill-only power-off: the labfs keeps its memory.
$r = lab({}, 'exec', 'h4', '--dir', $dir, '--', 'sh', '-c', 'printf still > "$1/lost"', 'sh', $d4);
is($r->{status}, 0, 'h4 writes an unsynced file again');
is(lab({}, 'power', 'off', 'h4', '--dir', $dir, '--mode', 'kill')->{status}, 0, 'power off --mode kill');
ok(scalar(mounts_under($d4)), '... leaves the labfs mounted');
is(lab({}, 'power', 'on', 'h4', '--dir', $dir)->{status}, 0, 'power on');
$r = lab({}, 'exec', 'h4', '--dir', $dir, '--', 'cat', "$d4/lost");
is($r->{out}, 'still', 'kill keeps the unsynced write (what a real power cut would not)');
$r = lab({}, 'power', 'off', 'h4', '--dir', $dir, '--mode', 'melt');
is($r->{status}, 2, 'power off --mode melt: usage error');

# boot.d: what a deployer installs over SSH comes back after a power cycle.
my $script = "#!/bin/sh\necho booted on \$(hostname)\nexec sleep 600\n";
$r = lab({}, 'exec', 'h3', '--dir', $dir, '--', 'sh', '-c',
         'printf %s "$1" > "$2" && chmod 755 "$2"', 'sh', $script, "$dir/hosts/h3/boot.d/sleeper");
is($r->{status}, 0, 'install boot.d/sleeper on h3 over SSH');
is(lab({}, 'power', 'off', 'h3', '--dir', $dir)->{status}, 0, 'power off h3');
is(lab({}, 'power', 'on', 'h3', '--dir', $dir)->{status}, 0, 'power on h3');
my $sleeper = (slurp("$dir/hosts/h3/run/sleeper.pid") // '') =~ s/\s+//gr;
ok($sleeper && alive($sleeper), "boot started boot.d/sleeper (pid $sleeper)");
my $where = run({ timeout => 20 }, 'ip', 'netns', 'identify', $sleeper);
is($where->{out}, "${ns_prefix}h3\n", '... inside h3\'s namespace');
for (1 .. 100) { last if (slurp("$dir/hosts/h3/log/sleeper.log") // '') =~ /booted/; sleep 0.05 }
is(slurp("$dir/hosts/h3/log/sleeper.log"), "booted on h3\n", '... with its output in log/sleeper.log');

# --- a second up on the same DIR -------------------------------------------------------
$r = lab({}, 'up', '--hosts', 2, '--azs', 1, '--dir', $dir);
is($r->{status}, 1, 'up on a DIR that is already a lab: refused');
like($r->{err}, qr/already a lab/, '... says so');
is(lab({}, 'exec', 'h1', '--dir', $dir, '--', 'true')->{status}, 0, '... and the lab still works');

# --- down ----------------------------------------------------------------------------
my @pids;
for my $n (@ns) {
    my $p = run({ timeout => 20 }, 'ip', 'netns', 'pids', $n);
    push @pids, grep { /^\d+$/ } split /\s+/, $p->{out};
}
cmp_ok(scalar @pids, '>=', 7, 'the lab runs ' . scalar(@pids) . ' processes (6 sshd + sleeper)');
my @daemons = grep { defined } map { labfs_pid("$dir/hosts/h$_/data") } 1 .. 6;
is(scalar @daemons, 6, 'six labfs daemons serve the data dirs');
$r = lab({}, 'down', '--dir', $dir);
is($r->{status}, 0, 'lab down') or diag $r->{err};
diag(sprintf 'lab down (6 hosts) took %.2f s', $r->{secs});
is_deeply([leftovers($id)], [], 'no namespace, bridge or veth of the lab is left');
is_deeply([still_alive(@pids)], [], 'no process of the lab is left');
is_deeply([mounts_under("$dir/")], [], 'nothing of the lab is mounted');
is_deeply([still_alive(@daemons)], [], 'no labfs daemon is left');
ok(!-e $dir, 'DIR is removed');
$r = lab({}, 'down', '--dir', $dir);
is($r->{status}, 0, 'a second down is harmless');

# --- up into an existing empty DIR: down keeps the DIR --------------------------------
# A long DIR (185 characters) goes into sshd_config, boot and the inventory.
my $keep = "$tmp/" . ('k' x (184 - length $tmp));
mkdir $keep or die;
push @labs, $keep;
$r = lab({}, 'up', '--hosts', 1, '--azs', 1, '--no-labfs', '--dir', $keep);
is($r->{status}, 0, 'up --no-labfs into an existing empty DIR') or diag $r->{err};
my $kid = lab_id($keep);
is_deeply([mounts_under("$keep/")], [], '--no-labfs: nothing mounted');
unlike(slurp("$keep/inventory.yaml") // '', qr/\bfs:/, '--no-labfs: no fs in the inventory');
$r = lab({}, 'power', 'off', 'h1', '--dir', $keep, '--mode', 'crash');
is($r->{status}, 1, '--no-labfs: power off --mode crash is refused');
like($r->{err}, qr/needs a labfs/, '... saying it needs a labfs');
is(lab({}, 'power', 'on', 'h1', '--dir', $keep)->{status}, 1, '... and the host stayed on');
is(lab({}, 'exec', 'h1', '--dir', $keep, '--', 'hostname')->{out}, "h1\n", 'its host answers');
is(lab({}, 'down', '--dir', $keep)->{status}, 0, 'down');
ok(-d $keep, 'the DIR it did not create stays');
opendir my $dh, $keep or die;
is_deeply([grep { !/^\.\.?$/ } readdir $dh], [], '... empty');
is_deeply([leftovers($kid)], [], '... and nothing of the lab is left');

# --- up failing midway cleans up after itself ----------------------------------------
my $fail = "$tmp/fail";
push @labs, $fail;
$r = lab({ env => { NINES_LAB_SSHD => '/bin/false' } }, 'up', '--hosts', 3, '--azs', 1, '--dir', $fail);
is($r->{status}, 1, 'up with an sshd that fails: exit 1');
like($r->{err}, qr/sshd failed to start/, '... says why');
my ($fid) = $r->{err} =~ /lab ([0-9a-f]{6}):/;
ok($fid, "the failed lab's id is logged ($fid)");
is_deeply([leftovers($fid // 'none')], [], '... and none of its namespaces or links is left');
ok(!-e $fail, '... nor its DIR');

# --- down after an up that was killed ---------------------------------------------------
my $fake = "$tmp/fake-sshd";
open my $fh, '>', $fake or die;
print $fh "#!/bin/sh\nexec sleep 120\n";
close $fh;
chmod 0755, $fake;
my $crash = "$tmp/crash";
push @labs, $crash;
my $pid = fork // die;
if ($pid == 0) {
    $ENV{NINES_LAB_SSHD} = $fake;
    open STDERR, '>', '/dev/null';
    open STDOUT, '>', '/dev/null';
    exec($nines, 'lab', 'up', '--hosts', 3, '--azs', 1, '--dir', $crash) or POSIX::_exit(127);
}
# The fake sshd never returns, so `up` hangs in h1's boot with every host made.
my $state = '';
for (1 .. 300) {
    $state = slurp("$crash/lab.state") // '';
    last if $state =~ /^\+veth nl[0-9a-f]{6}v3$/m;
    sleep 0.05;
}
my $cid = lab_id($crash) // 'none';
my @hung;
for (1 .. 100) {
    @hung = grep { /^\d+$/ } split /\s+/, run({ timeout => 20 }, 'ip', 'netns', 'pids', "nlab-$cid-h1")->{out};
    last if @hung;
    sleep 0.05;
}
ok(@hung, "up is stuck booting h1 (pids @hung in its namespace)");
kill 'KILL', $pid;
waitpid $pid, 0;
my @half = leftovers($cid);
is(scalar @half, 7, "after SIGKILL the half-made lab is there: @half");
$r = lab({}, 'status', '--dir', $crash);
is($r->{status}, 1, 'status refuses the incomplete lab');
like($r->{err}, qr/incomplete.*nines lab down/, '... and says to run down');
$r = lab({}, 'down', '--dir', $crash);
is($r->{status}, 0, 'down after the crash') or diag $r->{err};
is_deeply([leftovers($cid)], [], 'no namespace or link is left');
is_deeply([still_alive(@hung)], [], 'the hung boot was killed');
ok(!-e $crash, 'DIR is removed');

# --- SIGTERM during up: it stops and removes what it made --------------------------------
my $term = "$tmp/term";
push @labs, $term;
my ($tfh, $terr) = File::Temp::tempfile(UNLINK => 1);
my $tpid = fork // die;
if ($tpid == 0) {
    open STDERR, '>&', $tfh;
    open STDOUT, '>', '/dev/null';
    exec($nines, 'lab', 'up', '--hosts', 12, '--azs', 3, '--dir', $term) or POSIX::_exit(127);
}
for (1 .. 400) {
    last if (slurp("$term/lab.state") // '') =~ /^\+veth nl[0-9a-f]{6}v2$/m;
    sleep 0.01;
}
my $tid = lab_id($term) // 'none';
kill 'TERM', $tpid;
waitpid $tpid, 0;
is($? >> 8, 1, 'SIGTERM during up: exit 1');
like(slurp($terr) // '', qr/interrupted by a signal/, '... says so');
is_deeply([leftovers($tid)], [], '... and removed its namespaces and links');
ok(!-e $term, '... and its DIR');

is_deeply(\@san, [], 'no sanitizer report from any nines run');

done_testing();
