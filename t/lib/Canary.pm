package Canary;
# Helpers for the canary and CFA integration tests: a private PostgreSQL (run
# as the unprivileged `postgres` system user, unix socket in a private dir,
# loopback port), a private Alertmanager, and nines canary / alarms processes.
# Every process is stopped by its own pid; every wait is bounded.
use strict;
use warnings;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);
use Exporter 'import';
use Nines ();

our @EXPORT_OK = qw(start_pg stop_pg restart_pg psql start_am stop_am am_alerts
                    start_proc stop_proc wait_for slurp pg_dsn);

my $PGBIN = '/usr/lib/postgresql/15/bin';
my $PGUSER = 'postgres'; # existing system user; PostgreSQL refuses root

sub slurp { my ($p) = @_; open my $f, '<', $p or return ''; local $/; <$f> }

# wait_for(seconds, sub) -> the sub's true value, or undef after the deadline.
sub wait_for {
    my ($secs, $cb) = @_;
    my $end = time + $secs;
    while (time < $end) {
        my $v = $cb->();
        return $v if $v;
        sleep 0.2;
    }
    return undef;
}

# Runs a command as the PostgreSQL user, its output appended to $log.
sub as_pg {
    my ($log, @cmd) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>>', $log or die "$log: $!";
        open STDERR, '>&', \*STDOUT or die;
        exec 'runuser', '-u', $PGUSER, '--', @cmd;
        exit 127;
    }
    waitpid $pid, 0;
    return $?;
}

sub start_pg {
    my $dir = tempdir('nines-pg-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    chmod 0755, $dir;
    my ($uid, $gid) = (getpwnam $PGUSER)[2, 3];
    die "no user $PGUSER" unless defined $uid;
    chown $uid, $gid, $dir;
    my $pg = { dir => $dir, data => "$dir/data", sock => "$dir", port => Nines::free_port(),
               log => "$dir/pg.log" };
    as_pg("$dir/initdb.log", "$PGBIN/initdb", '-D', $pg->{data}, '-U', 'nines', '--auth=trust', '-E', 'UTF8',
          '--no-sync') == 0 or die "initdb failed:\n" . slurp("$dir/initdb.log");
    # Small and quiet: tests care about behaviour, not throughput.
    open my $f, '>>', "$pg->{data}/postgresql.conf" or die;
    print $f "listen_addresses = '127.0.0.1'\nport = $pg->{port}\nunix_socket_directories = '$dir'\n"
           . "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nshared_buffers = 32MB\n"
           . "max_connections = 40\n";
    close $f;
    _pg_ctl($pg, 'start');
    return $pg;
}

sub _pg_ctl {
    my ($pg, $what) = @_;
    my @extra = $what eq 'stop' ? ('-m', 'fast') : ('-l', $pg->{log});
    as_pg("$pg->{dir}/pg_ctl.log", "$PGBIN/pg_ctl", '-D', $pg->{data}, '-w', '-t', '30', @extra, $what) == 0
        or die "pg_ctl $what failed:\n" . slurp($pg->{log});
}

sub stop_pg { my ($pg) = @_; _pg_ctl($pg, 'stop') if $pg && !$pg->{stopped}; $pg->{stopped} = 1 }
sub restart_pg {
    my ($pg, $down_secs) = @_;
    _pg_ctl($pg, 'stop');
    sleep($down_secs // 0);
    _pg_ctl($pg, 'start');
}

sub pg_dsn { my ($pg) = @_; "host=$pg->{sock} port=$pg->{port} user=nines dbname=postgres" }

# psql(pg, sql) -> list of rows, each an arrayref of fields (unaligned, '|' separated).
sub psql {
    my ($pg, $sql) = @_;
    # Errors (a table not created yet) come back as no rows; stderr is quiet.
    open my $save, '>&', \*STDERR or die;
    open STDERR, '>', '/dev/null' or die;
    open my $p, '-|', "$PGBIN/psql", '-X', '-h', $pg->{sock}, '-p', $pg->{port}, '-U', 'nines',
        '-d', 'postgres', '-At', '-F', '|', '-c', $sql or die "psql: $!";
    open STDERR, '>&', $save or die;
    my @rows = map { chomp; [split /\|/, $_, -1] } <$p>;
    close $p;
    return @rows;
}

# start_am() -> {pid, port, url, dir}
sub start_am {
    my $dir = tempdir('nines-am-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $port = Nines::free_port();
    open my $f, '>', "$dir/am.yml" or die;
    print $f "route:\n  receiver: 'null'\n  group_wait: 1s\n  group_interval: 1s\n"
           . "receivers:\n  - name: 'null'\n";
    close $f;
    my $am = start_proc("$dir/am.log", '/usr/bin/prometheus-alertmanager',
                        "--config.file=$dir/am.yml", "--storage.path=$dir/data",
                        "--web.listen-address=127.0.0.1:$port", '--cluster.listen-address=');
    $am->{port} = $port;
    $am->{url} = "http://127.0.0.1:$port";
    $am->{dir} = $dir;
    my $http = HTTP::Tiny->new(timeout => 1);
    wait_for(20, sub { $http->get("$am->{url}/-/ready")->{status} == 200 })
        or die "alertmanager did not start:\n" . slurp("$dir/am.log");
    return $am;
}
sub stop_am { stop_proc($_[0]) }

# am_alerts(am) -> arrayref of alerts (Alertmanager's /api/v2/alerts, active only).
sub am_alerts {
    my ($am, %q) = @_;
    my $r = HTTP::Tiny->new(timeout => 5)->get("$am->{url}/api/v2/alerts?active=true&silenced=false&inhibited=false");
    return [] unless $r->{success};
    return JSON::PP->new->decode($r->{content});
}

# start_proc(log, cmd...) -> {pid, log}; env from %ENV.
sub start_proc {
    my ($log, @cmd) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>>', $log or die;
        open STDERR, '>&', \*STDOUT or die;
        open STDIN, '<', '/dev/null';
        exec @cmd;
        die "exec @cmd: $!";
    }
    return { pid => $pid, log => $log };
}

# stop_proc(p, timeout) -> exit status (128+sig for a signal death), after SIGTERM.
sub stop_proc {
    my ($p, $timeout) = @_;
    return undef unless $p && $p->{pid};
    kill 'TERM', $p->{pid};
    my $end = time + ($timeout // 20);
    while (time < $end) {
        if (waitpid($p->{pid}, WNOHANG) == $p->{pid}) {
            my $st = $?;
            $p->{pid} = 0;
            return $st & 127 ? 128 + ($st & 127) : $st >> 8;
        }
        sleep 0.05;
    }
    kill 'KILL', $p->{pid};
    waitpid $p->{pid}, 0;
    $p->{pid} = 0;
    return -1;
}

1;
