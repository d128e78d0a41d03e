package Lab;
# Helpers for the lab's integration tests (t/lab/*.t): run a command with a
# deadline and capture its output, list network namespaces and links, tell
# whether a pid is still a live process. Nothing here creates, deletes or
# signals anything but the processes it started itself.
use strict;
use JSON::PP ();
use warnings;
use File::Temp qw(tempfile);
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);
use Exporter 'import';

our @EXPORT_OK = qw(run netns_names link_names alive lab_id slurp can_netns hosts_on gameday_report);

sub slurp { my ($p) = @_; open my $f, '<', $p or return undef; local $/; my $s = <$f>; $s }

# run({timeout => S, env => {K => V}}, ARGV...) -> {status, out, err, secs}.
# status is the exit status, 128+N for a death by signal N, or -1 when the
# command overran its deadline (it is then SIGKILLed, by its pid).
sub run {
    my ($opt, @argv) = @_;
    my $timeout = $opt->{timeout} // 120;
    my ($ofh, $ofile) = tempfile(UNLINK => 1);
    my ($efh, $efile) = tempfile(UNLINK => 1);
    my $t0 = time;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>&', $ofh or POSIX::_exit(127);
        open STDERR, '>&', $efh or POSIX::_exit(127);
        $ENV{$_} = $opt->{env}{$_} for keys %{ $opt->{env} // {} };
        exec(@argv) or POSIX::_exit(127);
    }
    my $status;
    while (1) {
        my $w = waitpid($pid, WNOHANG);
        if ($w == $pid) {
            $status = $? & 127 ? 128 + ($? & 127) : $? >> 8;
            last;
        }
        if (time - $t0 > $timeout) {
            kill 'KILL', $pid;
            waitpid $pid, 0;
            $status = -1;
            last;
        }
        sleep 0.02;
    }
    return { status => $status, out => slurp($ofile) // '', err => slurp($efile) // '',
             secs => time - $t0 };
}

# The names `ip netns list` shows.
sub netns_names {
    my $r = run({ timeout => 20 }, 'ip', 'netns', 'list');
    return map { (split ' ', $_)[0] } grep { /\S/ } split /\n/, $r->{out};
}

# The names of this namespace's links, as `ip -o link` shows them (without "@peer").
sub link_names {
    my $r = run({ timeout => 20 }, 'ip', '-o', 'link', 'show');
    return map { /^\d+:\s+([^:@\s]+)/ ? $1 : () } split /\n/, $r->{out};
}

# A live process: it exists and is not a zombie.
sub alive {
    my ($pid) = @_;
    my $st = slurp("/proc/$pid/stat") // return 0;
    my ($state) = $st =~ /\)\s+(\S)/;
    return defined $state && $state ne 'Z';
}

# The id in DIR/lab.state, or undef.
sub lab_id {
    my ($dir) = @_;
    my $s = slurp("$dir/lab.state") // return undef;
    return $s =~ /^id ([0-9a-f]{6})$/m ? $1 : undef;
}

# Root, `ip`, and a /run/netns that ip can create namespaces in.
sub can_netns {
    return (0, 'not root') unless $> == 0;
    return (0, 'no ip(8)') unless grep { -x "$_/ip" } split /:/, ($ENV{PATH} // '/usr/sbin:/sbin');
    if (-e '/run/netns') {
        return (0, '/run/netns is not a writable directory') unless -d '/run/netns' && -w _;
    } else {
        return (0, '/run is not writable, so ip cannot create /run/netns') unless -w '/run';
    }
    return (1, '');
}

# How many hosts of the lab at DIR `nines lab status` reports on.
sub hosts_on {
    my ($nines, $dir) = @_;
    my $st = run({ timeout => 60 }, $nines, 'lab', 'status', '--dir', $dir, '--json');
    my $h = eval { JSON::PP::decode_json($st->{out}) } // {};
    return scalar grep { ($_->{power} // '') eq 'on' } @{ $h->{hosts} // [] };
}

# `nines gameday run PLAYBOOK` on the inventory, its report in TMP/NAME:
# (the run's result, report.json decoded or {}).
sub gameday_report {
    my (%a) = @_;
    my $rep = "$a{tmp}/$a{name}";
    my $r = run({ timeout => $a{timeout} // 400 }, $a{nines}, 'gameday', 'run', $a{playbook},
                '--inventory', $a{inventory}, '--seed', $a{seed}, '--report', $rep, '--ninesd',
                $a{ninesd});
    Test::More::note("$a{name}: exit $r->{status} in $r->{secs} s");
    # Under `make test SAN=1` a sanitizer's report fails the run's test.
    Test::More::unlike($r->{err} // '', qr/Sanitizer|runtime error:/,
                       "$a{name}: no sanitizer report");
    my $report = eval { JSON::PP::decode_json(slurp("$rep/report.json") // '') } // {};
    return ($r, $report);
}

1;
