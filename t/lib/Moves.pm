package Moves;
# Helpers for the tests that move replicas between nodes (replace.t,
# heal_dead.t): where a table's replicas are (DescribeTable's Placement),
# a bounded background writer that logs every acknowledged write, and the
# check that none of them was lost. Nothing here kills a process it did not
# start.
use strict;
use warnings;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(sleep time);
use Test::More;
use Exporter 'import';
use Nines qw(ddb slurp forget_connections);

our @EXPORT_OK = qw(placement holders start_writer stop_writer check_acked acked_count
                    check_layout);

# placement($table, @nodes) -> the table's description from the first of
# @nodes (running) that answers.
sub placement {
    my ($table, @nodes) = @_;
    for my $m (grep { $_->{pid} } @nodes) {
        my ($s, $d) = ddb($m, 'DescribeTable', { TableName => $table });
        return $d->{Table} if $s == 200;
    }
    return undef;
}

# holders($description) -> { node => { partition => 1 } }
sub holders {
    my ($t) = @_;
    my %h;
    for my $p (0 .. $#{ $t->{Placement} }) {
        $h{$_}{$p} = 1 for grep { defined } @{ $t->{Placement}[$p] };
    }
    return \%h;
}

# start_writer($dir, $table, $tag, @via) -> pid. Keys "$tag k0".."$tag k39",
# each written v = 1, 2, ... through @via in turn; every acknowledged write
# is appended to $dir/acked.$tag. Bounded: 20,000 writes, 300 s, or until
# $dir/stop.$tag exists.
sub start_writer {
    my ($dir, $table, $tag, @via) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        forget_connections();
        open my $log, '>>', "$dir/acked.$tag" or die;
        $log->autoflush(1);
        my %v;
        my $t0 = time;
        my $n = 0;
        while ($n < 20000 && time - $t0 < 300 && !-e "$dir/stop.$tag") {
            my $k = "${tag}k" . ($n % 40);
            my $val = ++$v{$k};
            my ($s) = ddb($via[$n % @via], 'PutItem', { TableName => $table,
                Item => { pk => { S => $k }, v => { N => "$val" } } });
            print $log "$k $val\n" if $s == 200;
            $n++;
            sleep 0.005;
        }
        POSIX::_exit(0);
    }
    return $pid;
}

sub stop_writer {
    my ($dir, $tag, $pid) = @_;
    open my $f, '>', "$dir/stop.$tag" or die;
    close $f;
    waitpid $pid, 0;
}

sub acked_count {
    my ($dir, $tag) = @_;
    my @l = split /\n/, slurp("$dir/acked.$tag");
    return scalar @l;
}

# check_acked($dir, $table, $tag, $via) -> (lost, keys): a strongly
# consistent read of each key returns at least the last value acknowledged
# for it.
sub check_acked {
    my ($dir, $table, $tag, $via) = @_;
    my %last;
    for (split /\n/, slurp("$dir/acked.$tag")) {
        my ($k, $v) = split / /;
        $last{$k} = $v if !defined $last{$k} || $v > $last{$k};
    }
    my $lost = 0;
    for my $k (sort keys %last) {
        my $got;
        for my $try (1 .. 40) {
            my ($s, $g) = ddb($via, 'GetItem', { TableName => $table,
                ConsistentRead => JSON::PP::true, Key => { pk => { S => $k } } });
            if ($s == 200) { $got = $g->{Item} ? $g->{Item}{v}{N} : 0; last }
            sleep 0.1;
        }
        if (!defined $got || $got < $last{$k}) {
            $lost++;
            diag("$k: acknowledged $last{$k}, read " . ($got // 'nothing'));
        }
    }
    return ($lost, scalar keys %last);
}

# check_layout($table, $gone, $what, \%az, @nodes): every partition has
# three members in three AZs, none on $gone, and no replacement is left in
# progress. Returns the description.
sub check_layout {
    my ($table, $gone, $what, $az, @nodes) = @_;
    my $t = placement($table, @nodes);
    my $bad = 0;
    for my $p (0 .. $#{ $t->{Placement} }) {
        my @m = grep { defined } @{ $t->{Placement}[$p] };
        my %azs = map { $az->{$_} => 1 } @m;
        if (@m != 3 || keys %azs != 3 || grep { $_ eq $gone } @m) {
            $bad++;
            diag("partition $p: @m");
        }
    }
    is($bad, 0, "$what: every partition has three members in three AZs, none on $gone");
    is(scalar @{ $t->{NinesReplacements} // [1] }, 0, "$what: no replacement left in progress");
    return $t;
}

1;
