# Headless Chromium for tests: find it, and load a page bounded by a
# timeout. Each Chromium runs in a process group of its own with a private
# profile and HOME under the caller's temp dir; the group is killed (by its
# id) when it is done or overran, and any left at exit are killed too
# (Chromium leaves helpers behind when its main process is killed).
package Chromium;
use strict;
use warnings;
use Exporter 'import';
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

our @EXPORT_OK = qw(chromium_path chromium_run);

my @groups;
END { kill 'KILL', -$_ for @groups }

sub chromium_path {
    my ($c) = grep { -x } map { my $n = $_; map { "$_/$n" } split /:/, $ENV{PATH} }
              qw(chromium chromium-browser google-chrome);
    return $c;
}

sub slurp { my ($p) = @_; open my $f, '<', $p or return undef; local $/; my $s = <$f>; $s }

# run_bounded(tmp, timeout, out-file, argv...) -> exit status, -1 on timeout.
sub run_bounded {
    my ($tmp, $timeout, $out, @argv) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        setpgrp(0, 0);
        $ENV{HOME} = $ENV{XDG_CONFIG_HOME} = $ENV{XDG_CACHE_HOME} = "$tmp/home";
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out or POSIX::_exit(127);
        open STDERR, '>', "$out.err" or POSIX::_exit(127);
        exec(@argv) or POSIX::_exit(127);
    }
    push @groups, $pid;
    my $t0 = time;
    my $status;
    while (1) {
        if (waitpid($pid, WNOHANG) == $pid) {
            $status = $? >> 8;
            last;
        }
        if (time - $t0 > $timeout) {
            kill 'KILL', -$pid;
            waitpid $pid, 0;
            $status = -1;
            last;
        }
        sleep 0.05;
    }
    kill 'KILL', -$pid;
    @groups = grep { $_ != $pid } @groups;
    return $status;
}

# chromium_run(tmp, url, flags...) -> (exit status, stdout, stderr): one
# headless load of url (e.g. with --dump-dom or --screenshot=FILE).
my $runs = 0;
sub chromium_run {
    my ($tmp, $url, @flags) = @_;
    my $chromium = chromium_path() or return (-1, '', 'no chromium');
    my $profile = "$tmp/chromium-profile" . $runs++;
    mkdir "$tmp/home";
    my $out = "$tmp/chromium$runs.out";
    my $st = run_bounded($tmp, 90, $out, $chromium, '--headless', '--no-sandbox', '--disable-gpu',
                         "--user-data-dir=$profile", '--no-first-run',
                         '--disable-background-networking', '--disable-component-update',
                         '--disable-sync', '--disable-default-apps', @flags, $url);
    return ($st, slurp($out) // '', slurp("$out.err") // '');
}

1;
