#!/usr/bin/perl
# cluster_cli.t — `nines cluster up|down|status` against real ninesd
# processes: usage and cluster-file errors (exit 2), refusal of a node that
# is not on loopback, up/status/down of a one-node cluster, a second up that
# leaves the running node alone, down leaving no process, a stale pid file
# (naming a `sleep` this test started) that must not be signalled, and a
# ninesd that dies at start-up.
#
# The NinesAdmin.Status call is being added to ninesd (issue 3). Until a node
# answers it, the assertions that need it run as TODO ("needs the status
# call"), and the current behaviour — a clear "does not implement" error,
# exit 1 — is asserted instead. Once the call exists they are real tests.
# Every process started here is stopped by pid; every wait is bounded.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use File::Temp qw(tempdir);
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Test::More;
use Time::HiRes qw(sleep time);
use Nines qw(bin free_port http);

my ($nines, $ninesd) = (bin('nines'), bin('ninesd'));
plan skip_all => "$nines or $ninesd not built (run make test)" unless -x $nines && -x $ninesd;

my $tmp = tempdir('nines-cluster-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my @mine;    # pids this test started itself (sleep)
my @files;   # cluster files to bring down at the end, whatever happened
END {
    local $?; # the test's own exit status must survive the clean-up
    system("'$nines' cluster down --config '$_' --timeout 5 >/dev/null") for @files;
    kill 'KILL', $_ for @mine;
    waitpid($_, 0) for @mine;
}

sub slurp { my ($p) = @_; open my $f, '<', $p or return undef; local $/; <$f> }

# run(args...) -> (exit code, stdout, stderr); bounded by timeout(1).
sub run {
    my @cmd = ('timeout', '-k', '5', '120', $nines, 'cluster', @_);
    my ($out, $err) = ("$tmp/out", "$tmp/err");
    my $pid = fork // die;
    if (!$pid) {
        open STDOUT, '>', $out or die;
        open STDERR, '>', $err or die;
        exec @cmd;
        exit 127;
    }
    waitpid $pid, 0;
    return ($? >> 8, slurp($out) // '', slurp($err) // '');
}

sub write_file {
    my ($path, $text) = @_;
    open my $f, '>', $path or die "$path: $!";
    print $f $text;
    close $f;
    return $path;
}

sub cmdline { my $c = slurp("/proc/$_[0]/cmdline") // ''; $c =~ s/\0/ /g; $c }

sub alive { my ($pid) = @_; return kill(0, $pid) && cmdline($pid) ne '' }

# ---- usage and cluster-file errors ----
{
    my ($rc, $out, $err) = run();
    is $rc, 2, 'no subcommand: exit 2';
    like $err, qr/missing subcommand/, '... says so';
    ($rc, $out, $err) = run('restart', '--config', 'x');
    is $rc, 2, 'unknown subcommand: exit 2';
    like $err, qr/unknown subcommand 'restart'/, '... names it';
    ($rc, $out, $err) = run('status');
    is $rc, 2, 'no --config: exit 2';
    like $err, qr/--config FILE is required/, '... says so';
    ($rc, $out, $err) = run('status', '--config', "$tmp/nope.yaml");
    is $rc, 2, 'missing cluster file: exit 2';
    like $err, qr/nope\.yaml: No such file or directory/, '... with the reason';
    my $bad = write_file("$tmp/bad.yaml", "cluster: x\nauth: none\nnodes: []\n");
    ($rc, $out, $err) = run('status', '--config', $bad);
    is $rc, 2, 'invalid cluster file: exit 2';
    like $err, qr/bad\.yaml:\d+:\d+: /, '... with FILE:LINE:COL';
    ($rc, $out, $err) = run('status', '--config', $bad, '--timeout', '0');
    is $rc, 2, 'bad --timeout: exit 2';
    like $err, qr/--timeout '0'/, '... names the option';
    ($rc, $out, $err) = run('up', '--config', $bad, '--json');
    is $rc, 2, '--json on up: exit 2';
    ($rc, $out, $err) = run('down', '--config', $bad, 'extra');
    is $rc, 2, 'stray argument: exit 2';
    like $err, qr/unexpected argument 'extra'/, '... names it';
    ($rc, $out, $err) = run('--help');
    is $rc, 0, '--help: exit 0';
    like $out, qr/nines cluster up .*--config FILE/, '... prints the usage';
}

# ---- a node that is not local is refused before anything starts ----
{
    my $d = "$tmp/remote";
    mkdir $d;
    my ($p1, $p2) = (free_port(), free_port());
    my $f = write_file("$d/c.yaml", "cluster: r\nauth: none\nnodes:\n"
        . "  - {id: n1, az: az1, rack: r1, api: 127.0.0.1:$p1, peer: 127.0.0.1:$p2, data: $d/n1}\n"
        . "  - {id: n2, az: az2, rack: r1, api: 192.0.2.7:$p1, peer: 192.0.2.7:$p2, data: $d/n2}\n");
    my ($rc, $out, $err) = run('up', '--config', $f, '--ninesd', $ninesd);
    is $rc, 2, 'non-loopback node: up exits 2';
    like $err, qr/c\.yaml:5:\d+: node n2: api address 192\.0\.2\.7:\d+ is not a loopback address/,
        '... naming the node, its line and the address';
    ok !-e "$d/n1/ninesd.pid" && !-e "$d/n1", '... and nothing was started (not even n1)';
}

# ---- one-node cluster: up, status, up again, down ----
my $dir = "$tmp/one";
mkdir $dir;
my ($api, $peer) = (free_port(), free_port());
my $file = write_file("$dir/cluster.yaml", "cluster: one\nauth: none\nnodes:\n"
    . "  - {id: n1, az: az1, rack: r1, api: 127.0.0.1:$api, peer: 127.0.0.1:$peer, data: n1}\n");
push @files, $file;
my $pidfile = "$dir/n1/ninesd.pid";

my ($rc, $out, $err) = run('up', '--config', $file, '--timeout', '20');
my $pid = (slurp($pidfile) // '') =~ /^(\d+)\n\z/ ? $1 : 0;
ok $pid, "up wrote the pid file (pid $pid)";
ok alive($pid), '... naming a live process';
like cmdline($pid), qr{(^|/)ninesd --cluster \S*cluster\.yaml --node n1 $},
    '... which is ninesd --cluster FILE --node n1';
ok -e "$dir/n1/ninesd.log", 'the log is in the data directory (relative data: beside the file)';
my ($hst, $hbody) = (HTTP::Tiny->new(timeout => 5)->get("http://127.0.0.1:$api/")->{status});
is $hst, 200, 'the node serves';
sub session { (split ' ', (slurp("/proc/$_[0]/stat") // '') =~ s/^.*\) //sr)[3] // -1 }
is session($pid), $pid, 'it leads its own session (setsid)';
isnt session($pid), session($$), '... not ours';

# Does this ninesd implement the status call?
my ($sst, $sbody) = http("http://127.0.0.1:$api", undef, '{}',
                         'X-Amz-Target' => 'NinesAdmin.Status');
my $has_status = $sst == 200;
note $has_status ? 'ninesd implements NinesAdmin.Status'
                 : "ninesd does not implement NinesAdmin.Status yet (HTTP $sst): those checks are TODO";

{
    my ($src, $sout) = run('status', '--config', $file);
    like $sout, qr/^cluster one: 1 of 1 nodes up/m, 'status: summary line';
}
if (!$has_status) {
    # What the spec asks for a node that lacks the call: a clear message.
    is $rc, 1, 'up: exit 1 when the node does not implement the status call';
    like $err, qr/does not implement NinesAdmin\.Status/, '... and says so';
    like $err, qr/left running; `nines cluster down --config/, '... and how to stop the nodes';
    my ($src, $sout, $serr) = run('status', '--config', $file);
    is $src, 1, 'status: exit 1';
    like $sout, qr/n1\s+az1\s+up\s+127\.0\.0\.1:$api does not implement NinesAdmin\.Status/,
        '... n1 shown up, with the reason it gave no report';
    ($src, $sout, $serr) = run('status', '--config', $file, '--json');
    is $src, 1, 'status --json: exit 1';
    my $j = eval { decode_json($sout) };
    ok $j && $j->{nodes}[0]{up} && $j->{nodes}[0]{error} =~ /NinesAdmin\.Status/,
        '... node up with the error';
    is_deeply $j->{partitions}, [], '... and no partition';
}

TODO: {
    local $TODO = 'needs NinesAdmin.Status in ninesd (issue 3)' unless $has_status;
    is $rc, 0, 'up: exit 0' or diag $err;
    like $out, qr/^cluster one up: 1 nodes \(1 started, 0 already running\), metadata leader n1 in term \d+$/,
        'up: one-line summary';
    my ($src, $sout) = run('status', '--config', $file);
    is $src, 0, 'status: exit 0, every partition has a leader';
    like $sout, qr/^meta\s+-\s+-\s+\d+\s+n1\s+\S+\s+n1\s+az1\s+leader\s/m, 'status: meta led by n1';
    ($src, $sout) = run('status', '--config', $file, '--json');
    is $src, 0, 'status --json: exit 0';
    my $j = eval { decode_json($sout) } // {};
    is_deeply $j->{nodes}, [{ id => 'n1', az => 'az1', up => JSON::PP::true }],
        'json: nodes';
    my ($meta) = grep { $_->{group} eq 'meta' } @{ $j->{partitions} // [] };
    ok $meta, 'json: a meta partition';
    $meta //= {};
    ok exists $meta->{table} && !defined $meta->{table} && !defined $meta->{partition},
        'json: meta has table null';
    is $meta->{leader}, 'n1', 'json: meta leader n1';
    is scalar @{ $meta->{members} // [] }, 1, 'json: one member';
    my $m = $meta->{members}[0] // {};
    is_deeply [@$m{qw(node az role)}], ['n1', 'az1', 'leader'], 'json: member n1 az1 leader';
    ok defined $m->{commit} && defined $m->{applied} && $m->{lag} == 0,
        'json: commit, applied, lag 0';
}

# A second up leaves the running node alone.
($rc, $out, $err) = run('up', '--config', $file, '--timeout', '5');
like $err, qr/node n1 is already running \(pid $pid, \Q$pidfile\E\); left as it is/,
    'second up: node already running is left alone';
is slurp($pidfile), "$pid\n", '... pid file unchanged';
my @ninesds = grep { cmdline($_) =~ /ninesd --cluster \S+ --node n1 $/ && cmdline($_) =~ /\Q$dir\E/ }
              map { m{/proc/(\d+)} ? $1 : () } glob '/proc/[0-9]*';
is scalar @ninesds, 1, '... and there is still exactly one ninesd for this cluster';
TODO: {
    local $TODO = 'needs NinesAdmin.Status in ninesd (issue 3)' unless $has_status;
    is $rc, 0, 'second up: exit 0';
    like $out, qr/\(0 started, 1 already running\)/, 'second up: summary counts it as running';
}

# down
($rc, $out, $err) = run('down', '--config', $file);
is $rc, 0, 'down: exit 0';
like $out, qr/^n1: stopped \(pid $pid\)$/m, 'down: says which pid it stopped';
ok !alive($pid), 'down: the process is gone';
ok !-e $pidfile, 'down: the pid file is removed';
($rc, $out) = run('down', '--config', $file);
is $rc, 0, 'down again: exit 0 (idempotent)';
like $out, qr/^n1: not running$/m, '... not running';

($rc, $out) = run('status', '--config', $file, '--timeout', '1');
is $rc, 1, 'status of a stopped cluster: exit 1';
like $out, qr/^cluster one: 0 of 1 nodes up/m, '... 0 of 1 nodes up';
like $out, qr/n1\s+az1\s+DOWN\s+127\.0\.0\.1:$api: /, '... n1 DOWN with the reason';
($rc, $out) = run('status', '--config', $file, '--json', '--timeout', '1');
my $j = eval { decode_json($out) } // {};
ok $j->{nodes} && !$j->{nodes}[0]{up}, 'status --json: up false';

# ---- a stale pid file naming another process is not signalled ----
{
    my $sleep = fork // die;
    if (!$sleep) { exec 'sleep', '60'; exit 127 }
    push @mine, $sleep;
    sleep 0.1 until cmdline($sleep) =~ /^sleep/;
    write_file($pidfile, "$sleep\n");
    ($rc, $out, $err) = run('down', '--config', $file, '--timeout', '1');
    is $rc, 0, 'down with a stale pid file: exit 0';
    like $out, qr/^n1: not running \(stale pid file .* removed, nothing signalled\)$/m, '... says so';
    sleep 0.2;
    ok kill(0, $sleep) && waitpid($sleep, WNOHANG) == 0, '... and the sleep it named is alive';
    ok !-e $pidfile, '... the stale pid file is removed';

    # up ignores a stale pid file too (the pid is not a ninesd): it starts the node.
    write_file($pidfile, "$sleep\n");
    ($rc, $out, $err) = run('up', '--config', $file, '--timeout', '5');
    my $np = (slurp($pidfile) // '') =~ /^(\d+)$/m ? $1 : 0;
    ok $np && $np != $sleep && alive($np), 'up over a stale pid file starts the node';
    ($rc) = run('down', '--config', $file);
    is $rc, 0, '... and down stops it';
    ok !alive($np), '... gone';
    ok kill(0, $sleep), 'the sleep survived all of it';
}

# ---- a ninesd that dies at start-up ----
{
    my $d = "$tmp/dies";
    mkdir $d;
    my ($a, $p) = (free_port(), free_port());
    # Two nodes, the second with an id ninesd cannot find in a file that is
    # fine for `nines`: --ninesd /bin/false stands in for a node that exits.
    my $f = write_file("$d/c.yaml", "cluster: dies\nauth: none\nnodes:\n"
        . "  - {id: n1, az: az1, rack: r1, api: 127.0.0.1:$a, peer: 127.0.0.1:$p, data: $d/n1}\n");
    push @files, $f;
    my $t0 = time;
    ($rc, $out, $err) = run('up', '--config', $f, '--ninesd', '/bin/false', '--timeout', '20');
    is $rc, 1, 'a node that exits at start-up: up exits 1';
    like $err, qr/node n1 \(pid \d+\) exited with status 1 during start-up/, '... naming it';
    cmp_ok time - $t0, '<', 10, '... at once, without waiting for the timeout';
    ($rc, $out) = run('down', '--config', $f);
    is $rc, 0, 'down after it: exit 0';
    like $out, qr/stale pid file/, '... the dead node\'s pid file is stale and removed';
}

done_testing;
