#!/usr/bin/perl
# Crash safety: 20 rounds of SIGKILL while writers stream acknowledged writes.
# After each restart every acknowledged write is there with its value (or a
# later write of the same key that was in flight), no item is half-written,
# and nothing that was never sent exists.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Digest::MD5 qw(md5_hex);
use HTTP::Tiny;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);
use Nines qw(start_node stop_node kill_node ddb json raw_client raw_call);

my $ROUNDS = $ENV{NINES_CRASH_ROUNDS} || 20;
my $WRITERS = 4;
my $KEYS = 40; # per writer: keys are overwritten many times
srand($ENV{NINES_SEED} // 42);
diag "seed " . ($ENV{NINES_SEED} // 42);

my $n = start_node(extra => "storage: {wal_segment_size: 256KiB}\n");
my ($st, $r) = ddb($n, 'CreateTable', { TableName => 'crash', BillingMode => 'PAY_PER_REQUEST',
    AttributeDefinitions => [{ AttributeName => 'pk', AttributeType => 'S' }],
    KeySchema => [{ AttributeName => 'pk', KeyType => 'HASH' }], NinesPartitions => 4 });
is($st, 200, 'table created') or BAIL_OUT("cannot create the table");

sub value_for { my ($w, $v) = @_; my $body = "w$w-v$v-" . ('x' x (($v * 37) % 3000)); return $body . ':' . md5_hex($body) }

# A writer: sequential PutItems; logs "A key value" before sending and
# "K key value" once acknowledged (HTTP 200), each line flushed at once.
sub writer {
    my ($w, $port, $log, $start) = @_;
    open my $f, '>>', $log or die;
    $f->autoflush(1);
    my $sock = raw_client($port) or exit 0;
    for (my $v = $start; ; $v++) {
        my $key = "w$w-k" . ($v % $KEYS);
        my $val = value_for($w, $v);
        print $f "A $key $v\n";
        my ($status) = raw_call($sock, 'PutItem', encode_json({ TableName => 'crash',
            Item => { pk => { S => $key }, v => { N => "$v" }, val => { S => $val } } }));
        exit 0 unless defined $status && ($status == 200 || $status == 500);
        print $f "K $key $v\n" if $status == 200;
    }
}

my %acked;    # key -> last acknowledged version
my %inflight; # writer -> [key, version] sent but not acknowledged
my %next = map { $_ => 1 } 1 .. $WRITERS;
my $total_acked = 0;
for my $round (1 .. $ROUNDS) {
    my @pids;
    my @logs = map { "$n->{dir}/w$_.r$round.log" } 1 .. $WRITERS;
    for my $w (1 .. $WRITERS) {
        my $pid = fork // die;
        if (!$pid) { writer($w, $n->{port}, $logs[$w - 1], $next{$w}); exit 0 }
        push @pids, $pid;
    }
    sleep(0.3 + rand(0.9));
    kill_node($n); # SIGKILL, by pid
    for my $pid (@pids) {
        for (1 .. 600) { last if waitpid($pid, WNOHANG) == $pid; sleep 0.01 }
        if (kill 0, $pid) { kill 'KILL', $pid; waitpid $pid, 0 }
    }
    my $round_acks = 0;
    for my $w (1 .. $WRITERS) {
        open my $f, '<', $logs[$w - 1] or next;
        my ($last_a);
        while (<$f>) {
            my ($t, $key, $v) = split;
            next unless defined $v;
            if ($t eq 'A') { $last_a = [$key, $v]; $next{$w} = $v + 1 }
            elsif ($t eq 'K') { $acked{$key} = $v; $round_acks++; undef $last_a if $last_a && $last_a->[1] == $v }
        }
        $inflight{$w} = $last_a;
    }
    $total_acked += $round_acks;
    $n = start_node(dir => $n->{dir}, port => $n->{port}, cluster => $n->{cluster});
    my ($bad, $checked) = (0, 0);
    for my $w (1 .. $WRITERS) {
        for my $k (0 .. $KEYS - 1) {
            my $key = "w$w-k$k";
            my ($s, $res) = ddb($n, 'GetItem', { TableName => 'crash', ConsistentRead => JSON::PP::true,
                                                 Key => { pk => { S => $key } } });
            $checked++;
            my $item = $res->{Item};
            my $want = $acked{$key};
            my $fl = $inflight{$w};
            my @ok = grep { defined } ($want, ($fl && $fl->[0] eq $key) ? $fl->[1] : undef);
            if (!$item) {
                next if !defined $want;
                $bad++; diag "round $round: $key lost (acknowledged v$want)";
                next;
            }
            my $v = $item->{v}{N};
            my $val = $item->{val}{S} // '';
            my ($body, $sum) = $val =~ /^(.*):([0-9a-f]{32})$/;
            if (!defined $sum || md5_hex($body) ne $sum || $val ne value_for($w, $v)) {
                $bad++; diag "round $round: $key is corrupt or half-written (v=$v)"; next;
            }
            unless (grep { $_ == $v } @ok) {
                $bad++;
                diag "round $round: $key has v$v; acknowledged v" . ($want // 'none') .
                     ($fl ? ", in flight $fl->[0] v$fl->[1]" : '');
            }
            # A surviving in-flight write is now the latest version of the key.
            $acked{$key} = $v if $fl && $fl->[0] eq $key && $v == $fl->[1];
        }
    }
    is($bad, 0, "round $round: $round_acks writes acknowledged before SIGKILL; all $checked keys exact after restart");
}
cmp_ok($total_acked, '>', $ROUNDS * 200, "enough acknowledged writes were at risk ($total_acked)");
is(stop_node($n), 0, 'clean stop at the end');
done_testing();
