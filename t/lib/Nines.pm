package Nines;
# Helpers for nines' integration tests (Perl, TAP via Test::More).
# Start ninesd on a free loopback port in a temp directory, talk to it with
# HTTP::Tiny or the real AWS CLI, and stop it by pid. Nothing here kills a
# process it did not start.
use strict;
use warnings;
use File::Temp qw(tempdir);
use File::Spec;
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);
use Exporter 'import';

our @EXPORT_OK = qw(build_dir bin free_port start_node stop_node kill_node ddb aws json
                    write_cluster http raw_client raw_call
                    new_cluster start_member cluster_status group_terms wait_until signed_http
                    lmdb_edit_items run_scrub slurp forget_connections);

use Cwd qw(abs_path);
use File::Basename qw(dirname);
my $top = dirname(dirname(dirname(abs_path(__FILE__))));

sub build_dir { $ENV{NINES_BUILD} || "$top/build" }
sub bin { my ($name) = @_; return build_dir() . "/bin/$name" }
sub json { JSON::PP->new->utf8->canonical(1) }

# free_port() -> a TCP port on 127.0.0.1 that was free a moment ago, taken
# outside the kernel's ephemeral range (ip_local_port_range). A port from
# inside it (bind to port 0) can be handed, between this call and the
# node's bind, to an outgoing connection of another node or of this test
# as its local port; the node's listen then fails with EADDRINUSE. That
# happened on a fresh CI machine (auth.t, a 4-node cluster). The bind
# check runs without SO_REUSEADDR, so a port still in TIME_WAIT is passed
# over too; a port is never handed out twice by one test.
my %handed_out;
sub free_port {
    my ($lo, $hi) = (32768, 60999);
    if (open my $f, '<', '/proc/sys/net/ipv4/ip_local_port_range') {
        my @r = split ' ', (scalar <$f> // '');
        ($lo, $hi) = @r if @r == 2;
    }
    my ($from, $to) = $lo - 1 >= 12000 ? (10000, $lo - 1) : ($hi + 1, 65535);
    die "no port range outside the ephemeral range $lo-$hi" if $to - $from < 1000;
    for (1 .. 1000) {
        my $p = $from + int rand($to - $from + 1);
        next if $handed_out{$p};
        my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => $p,
                                      Proto => 'tcp', ReuseAddr => 0) or next;
        close $s;
        $handed_out{$p} = 1;
        return $p;
    }
    die "no free port in $from-$to";
}

# write_cluster(dir, port, %opt) -> path of a one-node cluster file.
sub write_cluster {
    my ($dir, $port, %opt) = @_;
    my $auth = $opt{auth} ? "{access_key_id: $opt{auth}[0], secret_access_key: $opt{auth}[1]}"
                          : 'none';
    my $extra = $opt{extra} // '';
    my $path = "$dir/cluster.yaml";
    open my $f, '>', $path or die "$path: $!";
    print $f "cluster: test\nauth: $auth\n${extra}nodes:\n"
           . "  - {id: n1, az: az1, rack: r1, api: 127.0.0.1:$port, peer: 127.0.0.1:"
           . ($port + 1) . ", data: $dir/n1}\n";
    close $f;
    return $path;
}

# start_node(%opt): dir (default: new temp dir), port, auth => [akid, secret],
# args => [...]. Returns a hash: pid, port, url, dir, log, cluster.
sub start_node {
    my (%opt) = @_;
    my $dir = $opt{dir} // tempdir('nines-t-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $port = $opt{port} // free_port();
    my $cluster = $opt{cluster} // write_cluster($dir, $port, %opt);
    my $log = "$dir/ninesd.log";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>>', $log or die;
        open STDERR, '>&', \*STDOUT or die;
        exec bin('ninesd'), '--cluster', $cluster, '--node', 'n1', @{ $opt{args} // [] };
        die "exec: $!";
    }
    my $n = { pid => $pid, port => $port, url => "http://127.0.0.1:$port", dir => $dir,
              log => $log, cluster => $cluster, auth => $opt{auth} };
    my $http = HTTP::Tiny->new(timeout => 1);
    for (1 .. 500) {
        my $r = $http->get("$n->{url}/");
        return $n if $r->{status} == 200;
        if (waitpid($pid, WNOHANG) == $pid) {
            $n->{pid} = 0;
            $n->{exit} = $? >> 8;
            return $n if $opt{may_fail};
            die "ninesd exited at start-up:\n" . slurp($log);
        }
        sleep 0.02;
    }
    kill 'KILL', $pid;
    waitpid $pid, 0;
    die "ninesd did not come up:\n" . slurp($log);
}

# A minimal keep-alive HTTP/1.1 client that sends each request with one write
# on a TCP_NODELAY socket (HTTP::Tiny writes headers and body separately, and
# Nagle plus delayed ACKs then cost 40 ms a request).
use Socket qw(IPPROTO_TCP TCP_NODELAY);
sub raw_client {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp',
                                  Timeout => 5) or return undef;
    setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
    return $s;
}

# raw_call(socket, op, body-bytes) -> (status, body) or () when the connection failed.
sub raw_call {
    my ($s, $op, $body) = @_;
    my $req = "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-amz-json-1.0\r\n"
            . "X-Amz-Target: DynamoDB_20120810.$op\r\nContent-Length: " . length($body)
            . "\r\n\r\n$body";
    my $off = 0;
    while ($off < length $req) {
        my $w = syswrite($s, $req, length($req) - $off, $off);
        return () unless $w;
        $off += $w;
    }
    my $buf = '';
    while ($buf !~ /\r\n\r\n/) {
        my $r = sysread($s, $buf, 65536, length $buf);
        return () unless $r;
    }
    my ($head, $rest) = split /\r\n\r\n/, $buf, 2;
    my ($status) = $head =~ m{^HTTP/1\.\d (\d+)} or return ();
    my ($len) = $head =~ /^content-length:\s*(\d+)/mi;
    $len //= 0;
    while (length($rest) < $len) {
        my $r = sysread($s, $rest, $len - length($rest), length $rest);
        return () unless $r;
    }
    return ($status, $rest);
}

# new_cluster(nodes => N, azs => A, extra => YAML, auth => [akid, secret])
# -> a cluster of N nodes spread round-robin over A AZs, every listener on a
# free loopback port, data in one temp dir; auth: none unless auth is given.
# Nothing is started: see start_member.
sub new_cluster {
    my (%opt) = @_;
    my $n = $opt{nodes} // 6;
    my $azs = $opt{azs} // 3;
    my $dir = tempdir('nines-c-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{NINES_KEEP});
    my @nodes;
    my $auth = $opt{auth} ? "{access_key_id: $opt{auth}[0], secret_access_key: $opt{auth}[1]}"
                          : 'none';
    my $yaml = "cluster: ctest\nauth: $auth\n" . ($opt{extra} // '') . "nodes:\n";
    for my $i (1 .. $n) {
        my ($api, $peer) = (free_port(), free_port());
        my $az = 'az' . (($i - 1) % $azs + 1);
        my $rack = 'r' . int(($i - 1) / $azs + 1);
        push @nodes, { id => "n$i", az => $az, rack => $rack, port => $api, peer => $peer,
                       url => "http://127.0.0.1:$api", dir => $dir, log => "$dir/n$i.log",
                       pid => 0, auth => $opt{auth} };
        $yaml .= "  - {id: n$i, az: $az, rack: $rack, api: 127.0.0.1:$api, "
               . "peer: 127.0.0.1:$peer, data: $dir/n$i}\n";
    }
    my $path = "$dir/cluster.yaml";
    open my $f, '>', $path or die "$path: $!";
    print $f $yaml;
    close $f;
    $_->{cluster} = $path for @nodes;
    return { dir => $dir, path => $path, nodes => \@nodes,
             byid => { map { $_->{id} => $_ } @nodes } };
}

# start_member(node-hash [, args => [...]]): starts that node's ninesd and
# waits until its API answers. Returns the node hash (pid set).
sub start_member {
    my ($m, %opt) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>>', $m->{log} or die;
        open STDERR, '>&', \*STDOUT or die;
        exec bin('ninesd'), '--cluster', $m->{cluster}, '--node', $m->{id}, @{ $opt{args} // [] };
        die "exec: $!";
    }
    $m->{pid} = $pid;
    my $http = HTTP::Tiny->new(timeout => 1);
    for (1 .. 500) {
        my $r = $http->get("$m->{url}/");
        return $m if $r->{status} == 200;
        if (waitpid($pid, WNOHANG) == $pid) {
            $m->{pid} = 0;
            die "ninesd $m->{id} exited at start-up:\n" . slurp($m->{log});
        }
        sleep 0.02;
    }
    kill 'KILL', $pid;
    waitpid $pid, 0;
    $m->{pid} = 0;
    die "ninesd $m->{id} did not come up:\n" . slurp($m->{log});
}

# sigv4_headers(method, url, body, akid, secret, %headers) -> the headers
# to send (the given ones plus X-Amz-Date and Authorization), signed by
# botocore, the AWS SDK's own SigV4 code (awscli depends on it): the tests
# check ninesd's verifier against AWS's signer, not against nines' own.
sub sigv4_headers {
    my ($method, $url, $body, $akid, $secret, %h) = @_;
    my $py = <<'PY';
import json, sys
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
a = json.load(sys.stdin)
r = AWSRequest(method=a["method"], url=a["url"], data=a["body"].encode(), headers=a["headers"])
SigV4Auth(Credentials(a["akid"], a["secret"]), "dynamodb", "local").add_auth(r)
print(json.dumps(dict(r.headers.items())))
PY
    my $in = File::Temp->new;
    print $in json()->encode({ method => $method, url => $url, body => $body // '', akid => $akid,
                               secret => $secret, headers => \%h });
    close $in;
    my $out = `python3 -c '$py' < '${\$in->filename}'`;
    die "sigv4_headers: python3/botocore failed\n" if $? || !length $out;
    return %{ JSON::PP->new->utf8->decode($out) };
}

# signed_http(method, url, target, body, auth => [akid, secret]) -> (status,
# decoded-or-raw body). target undef: no X-Amz-Target (GET /metrics); a
# target without a '.' is a DynamoDB operation. Without auth: unsigned.
sub signed_http {
    my ($method, $url, $target, $body, %opt) = @_;
    my %h;
    if (defined $target) {
        $h{'Content-Type'} = 'application/x-amz-json-1.0';
        $h{'X-Amz-Target'} = $target =~ /\./ ? $target : "DynamoDB_20120810.$target";
    }
    %h = sigv4_headers($method, $url, $body, @{ $opt{auth} }, %h) if $opt{auth};
    my $r = HTTP::Tiny->new(timeout => 5, keep_alive => 0)->request($method, $url, {
        headers => \%h, defined $body && length $body ? (content => $body) : () });
    my $decoded = eval { JSON::PP->new->utf8->decode($r->{content}) };
    return ($r->{status}, $decoded // $r->{content});
}

# cluster_status(node [, auth => [akid, secret]]) -> the node's
# NinesAdmin.Status report (hashref) or undef. A node whose cluster has
# credentials answers only a signed call (docs/security.md): it is signed
# with auth, by default the node's own (start_node, new_cluster).
sub cluster_status {
    my ($m, %opt) = @_;
    my $auth = exists $opt{auth} ? $opt{auth} : $m->{auth};
    my $body = $opt{body} // '{}'; # '{"Groups":false}': the summary only
    my %h = ('Content-Type' => 'application/x-amz-json-1.0',
             'X-Amz-Target' => 'NinesAdmin.Status');
    %h = sigv4_headers('POST', "$m->{url}/", $body, @$auth, %h) if $auth;
    my $r = HTTP::Tiny->new(timeout => $opt{timeout} // 2)->request('POST', "$m->{url}/", {
        headers => \%h, content => $body });
    return undef unless $r->{status} == 200;
    return eval { JSON::PP->new->utf8->decode($r->{content}) };
}

# group_terms(@members) -> { group => [highest term any member reports, the
# member (node id) that reports itself its leader, or undef] }, over every
# member that answers NinesAdmin.Status.
sub group_terms {
    my (@members) = @_;
    my %t;
    for my $m (@members) {
        my $s = cluster_status($m) or next;
        for my $g (@{ $s->{groups} }) {
            my $e = $t{ $g->{group} } //= [0, undef];
            $e->[0] = $g->{term} if $g->{term} > $e->[0];
            $e->[1] = $s->{node} if $g->{role} eq 'leader';
        }
    }
    return \%t;
}

# `nines scrub --cluster` of cluster $cl (new_cluster) with --json in its
# directory, --timeout 30 unless @args give one, and @args: (exit code,
# what it printed, the decoded JSON report or undef).
sub run_scrub {
    my ($cl, @args) = @_;
    my $json = "$cl->{dir}/scrub.json";
    unlink $json;
    my $to = grep({ $_ eq '--timeout' } @args) ? '' : '--timeout 30';
    my $out = `@{[bin('nines')]} scrub --cluster $cl->{path} --json $json $to @args 2>&1`;
    my $rc = $? >> 8;
    my $j = -s $json ? eval { JSON::PP::decode_json(slurp($json)) } : undef;
    return ($rc, $out, $j);
}

# lmdb_edit_items($node, $group, $edit) -> how many items changed, or 0
# when lmdb-utils failed. Rewrites a STOPPED node's LMDB environment at
# rest (mdb_dump -a / mdb_load, hex dumps: lmdb-utils has no delete):
# $edit->(item hashref) for each item of partition group $group returns the
# new item, the same one, or undef to delete it. The partition's digest
# record is left out, so the node rebuilds it from the data when it opens
# (its markers stay): the digest is then honest about the damaged data.
sub lmdb_edit_items {
    my ($n, $group, $edit) = @_;
    my $env = "$n->{dir}/$n->{id}/state";
    my $dump = `mdb_dump -a '$env'`;
    return 0 if $?;
    my @sec = split /(?<=DATA=END\n)/, $dump;
    my $changed = 0;
    for my $sec (@sec) {
        my ($name) = $sec =~ /^database=(.*)$/m;
        next unless defined $name;
        my ($head, $body) = $sec =~ /\A(.*?HEADER=END\n)(.*)DATA=END\n\z/s or die 'mdb_dump format';
        my @l = split /\n/, $body;
        my @keep;
        for (my $i = 0; $i < @l; $i += 2) {
            my ($k, $v) = @l[$i, $i + 1];
            if ($name eq $group) {
                my $item = JSON::PP->new->utf8->decode(pack('H*', substr($v, 1)));
                my $new = $edit->($item);
                if (!defined $new) { $changed++; next }
                my $nv = ' ' . unpack('H*', JSON::PP->new->utf8->canonical->encode($new));
                $changed++ if $nv ne $v;
                $v = $nv;
            } elsif ($name eq '_digest' && $k =~ /^ \Q@{[unpack('H*', $group)]}\E020[01]$/) {
                next;    # the digest record's two halves (store/digest.h, Storage)
            }
            push @keep, $k, $v;
        }
        $sec = $head . join('', map { "$_\n" } @keep) . "DATA=END\n";
    }
    my $d = "$n->{dir}/$n->{id}.edit.dump";
    my $new = "$n->{dir}/$n->{id}.edit-env";
    open my $f, '>', $d or die "$d: $!";
    print $f @sec;
    close $f;
    system('rm', '-rf', $new);
    mkdir $new or die "$new: $!";
    my $lo = `mdb_load -f '$d' '$new' 2>&1`;
    if ($?) { print STDERR "# mdb_load: $lo"; return 0 }
    unlink "$env/lock.mdb";
    rename("$new/data.mdb", "$env/data.mdb") or die "rename: $!";
    system('rm', '-rf', $new, $d);
    return $changed;
}

# wait_until(seconds, sub) -> the sub's first true value, or undef at the deadline.
sub wait_until {
    my ($secs, $fn) = @_;
    my $end = time + $secs;
    while (time < $end) {
        my $v = $fn->();
        return $v if $v;
        sleep 0.05;
    }
    return undef;
}

sub slurp { my ($p) = @_; open my $f, '<', $p or return ''; local $/; <$f> }

# SIGTERM and wait (bounded); returns the exit status.
sub stop_node {
    my ($n) = @_;
    return undef unless $n->{pid};
    kill 'TERM', $n->{pid};
    for (1 .. 1000) {
        if (waitpid($n->{pid}, WNOHANG) == $n->{pid}) {
            my $st = $?;
            $n->{pid} = 0;
            my $code = $st & 127 ? 128 + ($st & 127) : $st >> 8; # a death by signal is not exit 0
            # A node that did not stop cleanly says why (a sanitizer's report
            # lands in its log, which the test's directory takes with it).
            if ($code && $n->{log} && -f $n->{log}) {
                my @l = split /\n/, slurp($n->{log});
                my ($first) = grep { $l[$_] =~ /Sanitizer|runtime error/ } 0 .. $#l;
                my $from = defined $first ? $first : @l > 30 ? @l - 30 : 0;
                my $to = $from + 60 < @l ? $from + 60 : $#l;
                print STDERR "# ninesd exited $code on SIGTERM; its log from line ", $from + 1, ":\n",
                    map { "#   $_\n" } @l[$from .. $to];
            }
            return $code;
        }
        sleep 0.01;
    }
    kill_node($n);
    return -1;
}

sub kill_node {
    my ($n) = @_;
    return unless $n->{pid};
    kill 'KILL', $n->{pid};
    waitpid $n->{pid}, 0;
    $n->{pid} = 0;
}

my $tiny = HTTP::Tiny->new(timeout => 10, keep_alive => 0);

# http(url, target, body, headers) -> (status, decoded-or-raw body, headers)
sub http {
    my ($url, $target, $body, %h) = @_;
    my %headers = ('Content-Type' => 'application/x-amz-json-1.0', %h);
    $headers{'X-Amz-Target'} = "DynamoDB_20120810.$target" if defined $target;
    delete $headers{$_} for grep { !defined $headers{$_} } keys %headers;
    my $r = $tiny->request('POST', "$url/", { headers => \%headers, content => $body // '' });
    my $decoded = eval { JSON::PP->new->utf8->decode($r->{content}) };
    return ($r->{status}, $decoded // $r->{content}, $r->{headers});
}

# ddb(node, op, request-hashref) -> (status, response-hashref)
my %raw; # port -> keep-alive socket
# A forked child calls this first: the parent's keep-alive sockets are
# shared with it, and two processes on one connection read each other's
# answers.
sub forget_connections { %raw = () }
sub ddb {
    my ($n, $op, $req) = @_;
    my $body = json()->encode($req);
    for my $try (1, 2) {
        $raw{$n->{port}} //= raw_client($n->{port}) or last;
        my ($st, $resp) = raw_call($raw{$n->{port}}, $op, $body);
        if (defined $st) {
            my $decoded = eval { JSON::PP->new->utf8->decode($resp) };
            return ($st, $decoded // $resp);
        }
        delete $raw{$n->{port}}; # the node restarted: reconnect once
    }
    return (599, { __type => 'connect', message => "cannot reach $n->{url}" });
}

# aws(node, [args...], %opt) -> (exit code, decoded JSON or raw stdout, stderr)
sub aws {
    my ($n, $args, %opt) = @_;
    my $out = File::Temp->new;
    my $err = File::Temp->new;
    my @cmd = ('/usr/bin/aws', '--endpoint-url', $n->{url}, '--output', 'json', @$args);
    my $pid = fork // die;
    if ($pid == 0) {
        $ENV{AWS_ACCESS_KEY_ID} = $opt{akid} // 'AKIDTEST';
        $ENV{AWS_SECRET_ACCESS_KEY} = $opt{secret} // 'secret';
        $ENV{AWS_DEFAULT_REGION} = 'local';
        $ENV{AWS_MAX_ATTEMPTS} = $opt{attempts} // 1;
        $ENV{AWS_PAGER} = '';
        $ENV{AWS_CONFIG_FILE} = '/dev/null';
        $ENV{AWS_SHARED_CREDENTIALS_FILE} = '/dev/null';
        open STDOUT, '>', $out->filename;
        open STDERR, '>', $err->filename;
        open STDIN, '<', '/dev/null';
        exec @cmd;
        exit 127;
    }
    waitpid $pid, 0;
    my $rc = $? >> 8;
    my $o = slurp($out->filename);
    my $e = slurp($err->filename);
    my $d = length($o) ? eval { JSON::PP->new->utf8->decode($o) } : undef;
    return ($rc, $d // $o, $e);
}

1;
