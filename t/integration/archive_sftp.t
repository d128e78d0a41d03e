# An sftp:// WAL archive (docs/archive.md) on a real OpenSSH sshd this
# test starts on loopback: a 3-node cluster archives every partition's log
# there (key authentication, strict known_hosts from the cluster file);
# `nines archive verify sftp://...` proves it, and the same directory read
# as file:// proves the same; the SSH server killed mid-run: writes go on,
# the status says the archive is behind; sshd back: the archive catches up
# with no gap; a node started while the server is down starts anyway.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use File::Temp qw(tempdir);
use IO::Socket::INET;
use Test::More;
use Nines qw(new_cluster start_member stop_node kill_node ddb cluster_status wait_until bin
             free_port slurp);

plan skip_all => '/usr/sbin/sshd or ssh-keygen missing' unless -x '/usr/sbin/sshd' && -x '/usr/bin/ssh-keygen';
my $sd = tempdir('nines-sftp-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{NINES_KEEP});
my $port = free_port();
system("ssh-keygen -q -t ed25519 -N '' -f $sd/hostkey >/dev/null") == 0 or die 'ssh-keygen';
system("ssh-keygen -q -t ed25519 -N '' -f $sd/client >/dev/null") == 0 or die 'ssh-keygen';
system("cp $sd/client.pub $sd/authorized_keys") == 0 or die;
open my $kh, '>', "$sd/known_hosts" or die;
print $kh "[127.0.0.1]:$port " . slurp("$sd/hostkey.pub");
close $kh;
open my $cf, '>', "$sd/sshd_config" or die;
print $cf "Port $port\nListenAddress 127.0.0.1\nHostKey $sd/hostkey\n"
        . "AuthorizedKeysFile $sd/authorized_keys\nPermitRootLogin yes\nUsePAM no\n"
        . "StrictModes no\nPidFile $sd/sshd.pid\nPasswordAuthentication no\n"
        . "KbdInteractiveAuthentication no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n";
close $cf;
mkdir "$sd/arch";
my $sshd = 0;
sub sshd_up {
    $sshd = fork // die;
    if (!$sshd) {
        open STDOUT, '>>', "$sd/sshd.log"; open STDERR, '>&', \*STDOUT;
        exec '/usr/sbin/sshd', '-D', '-e', '-f', "$sd/sshd_config";
        exit 127;
    }
    return wait_until(10, sub { IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 1) });
}
# The listener, the per-connection sshd processes it forked and their
# sftp children: only those, found by their parent pid.
sub children_of {
    my ($pid) = @_;
    my @k;
    for my $d (glob('/proc/[0-9]*')) {
        my ($p) = $d =~ m{/(\d+)$};
        my ($pp) = slurp("$d/stat") =~ /^\d+ \(.*\) \S (\d+)/s;
        push @k, $p if defined $pp && $pp == $pid && $p != $$;
    }
    return @k;
}
sub sshd_down {
    return unless $sshd > 1;
    my @sessions = children_of($sshd);
    my @kids = map { children_of($_) } @sessions;
    kill 'KILL', @kids, @sessions, $sshd;
    waitpid $sshd, 0;
    $sshd = 0;
}
END { local $?; sshd_down() } # (waitpid must not become the exit code)

my $url = "sftp://root\@127.0.0.1:$port$sd/arch";
my $cl = new_cluster(nodes => 3, azs => 3,
    extra => "storage: {compact_entries: 300}\n"
           . "archive: {url: '$url', seal_after: 1s, verify_after: 1s, ssh_key: '$sd/client', "
           . "known_hosts: '$sd/known_hosts'}\n");
my @nodes = @{ $cl->{nodes} };
ok(sshd_up(), "sshd listens on 127.0.0.1:$port");
start_member($_) for @nodes[0, 1];
END { kill_node($_) for grep { $_->{pid} } @nodes }
my ($st);
wait_until(15, sub { ($st) = ddb($nodes[0], 'CreateTable', { TableName => 'remote',
    BillingMode => 'PAY_PER_REQUEST', NinesPartitions => 2,
    AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }],
    KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' }] }); $st == 200 });
is($st, 200, 'table created');
sub put_range {
    my ($from, $to) = @_;
    my $ok = 0;
    my @up = grep { $_->{pid} } @nodes;
    for my $i ($from .. $to) {
        my $s;
        wait_until(10, sub { ($s) = ddb($up[$i % @up], 'PutItem', { TableName => 'remote',
            Item => { pk => { S => "k$i" }, pad => { S => 'x' x 100 } } }); $s == 200 });
        $ok++ if $s == 200;
    }
    return $ok;
}
sub caught_up {
    for my $m (grep { $_->{pid} } @nodes) {
        my $a = (cluster_status($m) // {})->{archive} or return 0;
        return 0 if $a->{behind_entries} || $a->{pending_pieces};
    }
    return 1;
}
sub verify {
    my ($u) = @_;
    local $ENV{NINES_ARCHIVE_SSH_KEY} = "$sd/client";
    local $ENV{NINES_ARCHIVE_KNOWN_HOSTS} = "$sd/known_hosts";
    my $out = `@{[bin('nines')]} archive verify '$u' 2>&1`;
    return ($? >> 8, $out);
}

is(put_range(1, 400), 400, '400 writes with two nodes up');
# The third node starts while the SSH server is down: it starts anyway.
sshd_down();
start_member($nodes[2]);
ok($nodes[2]{pid}, 'n3 started while the archive was unreachable');
is(put_range(401, 800), 400, '400 writes while the archive is unreachable');
my $behind = wait_until(20, sub { my $a = (cluster_status($nodes[0]) // {})->{archive} // {};
    ($a->{behind_entries} // 0) > 0 && ($a->{errors} // 0) > 0 ? $a : undef });
ok($behind, "the status says the archive is behind ($behind->{behind_entries} entries, "
   . "last error: " . ($behind->{last_error} // '') . ')');
ok(sshd_up(), 'sshd back');
ok(wait_until(60, \&caught_up), 'every node saw the archive catch up over sftp');
my ($rc, $out) = verify($url);
is($rc, 0, 'nines archive verify sftp://...: exit 0') or diag $out;
like($out, qr/2 group\(s\), 0 problem\(s\).*VERIFIED/, '... both partitions, no gap');
($rc, $out) = verify("file://$sd/arch");
is($rc, 0, 'the same directory read as file:// verifies too') or diag $out;
my @pieces = glob("$sd/arch/*/log/*.piece");
cmp_ok(scalar(@pieces), '>=', 4, scalar(@pieces) . ' pieces on the SSH server');
my @manifests = glob("$sd/arch/*/log/*.json");
is(scalar(@manifests), scalar(@pieces), 'every piece has its manifest');
# A wrong host key: the archive refuses the server.
open $kh, '>', "$sd/known_hosts2" or die;
print $kh "[127.0.0.1]:$port " . slurp("$sd/client.pub");
close $kh;
{
    local $ENV{NINES_ARCHIVE_SSH_KEY} = "$sd/client";
    local $ENV{NINES_ARCHIVE_KNOWN_HOSTS} = "$sd/known_hosts2";
    my $o = `@{[bin('nines')]} archive verify '$url' 2>&1`;
    is($? >> 8, 2, 'a host key that is not the recorded one: exit 2');
    like($o, qr/host key/i, '... saying so') or diag $o;
}
for my $m (@nodes) { is(stop_node($m), 0, "$m->{id} stopped cleanly") }
done_testing;
