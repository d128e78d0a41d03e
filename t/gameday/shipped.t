#!/usr/bin/perl
# The shipped playbooks of the fault kinds beyond power pass against a lab
# (6 hosts in 3 AZs): gray-failure.yaml (a node paused: its AZ's alarm
# fires, the others stay quiet, the data is intact), partition-node.yaml (a
# node cut off from its peers, both ways: the same), bit-rot.yaml (bits of
# two stored items flipped at rest: the final deep scrub names exactly
# those two keys on that node), partition-leader.yaml (whichever node leads
# partition 0 when the step runs is cut off: leadership moves within 10 s,
# the same alarms, the data intact). az-outage-alarms.yaml is run by alarms.t,
# power-off-random.yaml (shortened) by e2e.t.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use File::Temp qw(tempdir);
use JSON::PP;
use Test::More;

use Lab qw(run can_netns slurp hosts_on gameday_report);
use Nines qw(bin);

my ($usable, $why) = can_netns();
plan skip_all => $why unless $usable;
my $nines = bin('nines');
my $ninesd = bin('ninesd');
plan skip_all => "$nines or $ninesd not built" unless -x $nines && -x $ninesd;

my $tmp = tempdir('nines-gd-shipped-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $lab = "$tmp/lab";
END {
    local $?;
    system($nines, 'lab', 'down', '--dir', $lab) if $lab && -e "$lab/lab.state";
}
my $up = run({ timeout => 120 }, $nines, 'lab', 'up', '--hosts', 6, '--azs', 3, '--racks', 2,
             '--dir', $lab);
is($up->{status}, 0, 'lab up: 6 hosts in 3 AZs') or diag($up->{err});
BAIL_OUT('no lab') if $up->{status};
my $inv = "$lab/inventory.yaml";
my $books = "$FindBin::Bin/../../playbooks";

sub gameday {
    my ($name, $seed) = @_;
    return gameday_report(nines => $nines, ninesd => $ninesd, inventory => $inv, tmp => $tmp,
                          playbook => "$books/$name.yaml", name => $name, seed => $seed);
}



for my $case (['gray-failure', 'pause', 'pause'], ['partition-node', 'partition', 'partition'],
              ['partition-leader', 'partition', 'partition']) {
    my ($name, $kind, $label) = @$case;
    my ($r, $rep) = gameday($name, 3);
    is($r->{status}, 0, "$name passes") or diag("stdout:\n$r->{out}\nstderr tail:\n"
                                                . join("\n", (split /\n/, $r->{err})[-25 .. -1]));
    my ($st) = grep { $_->{kind} eq $kind } @{ $rep->{steps} // [] };
    ok($st && @{ $st->{hosts} // [] } == 1, "$name: one node was hit ($kind)");
    is($st->{mode}, $label, "$name: the report says what the fault did") if $st;
    my @exp = @{ $rep->{expectations} // [] };
    ok(@exp >= 6 && !grep({ !$_->{passed} } @exp), "$name: every expectation held")
        or diag(explain(\@exp));
    ok(grep({ $_->{state} eq 'firing' } @{ $rep->{alarms} // [] }), "$name: an alarm fired");
    ok($rep->{verify}{checkers}{passed} && $rep->{verify}{scrub}{passed},
       "$name: checkers and scrub pass");
    is(hosts_on($nines, $lab), 6, "$name: every host is on");
    next unless $name eq 'partition-leader';
    # The target was chosen when the step ran: the runner says whom, the
    # report's step names that node, and the leadership left it in time.
    my ($leader) = "$r->{out}\n$r->{err}" =~ /the leader of gameday partition 0 is node (\S+)/;
    ok($leader, 'the runner named the leader it cut off') or diag($r->{out});
    is_deeply($st->{hosts}, [$leader], 'the report names that node as the one hit') if $st && $leader;
    my ($moved) = grep { $_->{what} =~ /^the leader of gameday partition 0 moves off/ } @exp;
    ok($moved && $moved->{passed}, 'leadership moved off it within 10 s')
        or diag(explain($moved));
    diag("partition-leader: $moved->{detail}") if $moved;
    like($moved->{detail} // '', qr/^node (?!\Q$leader\E\b)\S+ led [\d.]+s after the fault/,
         'to another node, with the time') if $leader;
}

my ($r, $rep) = gameday('bit-rot', 4);
is($r->{status}, 0, 'bit-rot passes: the deep scrub found exactly what was corrupted')
    or diag("stdout:\n$r->{out}\nstderr tail:\n" . join("\n", (split /\n/, $r->{err})[-25 .. -1]));
my $sc = $rep->{verify}{scrub} // {};
is(scalar @{ $sc->{bit_rot} // [] }, 2, 'two items were corrupted') or diag(explain($sc));
like($sc->{detail} // '', qr/found exactly the 2 item\(s\) bit_rot corrupted/, 'and named');
my %rot = map { ("$_->{host} $_->{key}" => 1) } @{ $sc->{bit_rot} // [] };
my %found;
for my $f (@{ $sc->{findings} // [] }) {
    $found{"$f->{replica} " . JSON::PP->new->canonical->encode($_->{key})} = 1 for @{ $f->{keys} // [] };
}
is_deeply([sort keys %found], [sort keys %rot], 'the findings are those keys on that host');
like($r->{out}, qr/^verify scrub\s+PASS: found exactly/m, 'the summary says so');

done_testing();
