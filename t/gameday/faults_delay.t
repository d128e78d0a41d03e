#!/usr/bin/perl
# The degrade fault kind's latency, measured against a real lab: 3 hosts in
# 3 AZs (`nines lab up --hosts 3 --azs 3 --no-labfs`), driven by the C test
# t/gameday/faults_delay.c (it gets the lab's inventory in NINES_FDELAY_INV
# and prints the TAP). On a kernel without netem this is the NFQUEUE path
# (nines-netdelay and iptables-legacy in the hosts' namespaces); with netem
# both paths run. Without root, ip(8), iptables-legacy or perl, or when the
# lab cannot be made, only the playbook keys are tested (no lab needed).
# The lab is taken down at the end whatever happens.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use File::Temp qw(tempdir);

use Lab qw(run can_netns);
use Nines qw(bin build_dir);

my $driver = build_dir() . '/t/faults_delay';
my $nines = bin('nines');
my $delayer = bin('nines-netdelay');
unless (-x $driver) {
    print "1..0 # SKIP $driver not built\n";
    exit 0;
}
my $tmp = tempdir('nines-fdelay-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $lab = "$tmp/lab";
END {
    local $?;
    system($nines, 'lab', 'down', '--dir', $lab) if $lab && -e "$lab/lab.state";
}

my %env = (NINES_TOP => "$FindBin::Bin/../..", NINES_BUILD => build_dir());
my ($usable, $why) = can_netns();
my @missing = grep { my $t = $_; !grep { -x "$_/$t" } split /:/, ($ENV{PATH} // '') }
              qw(iptables-legacy perl);
if (!$usable) {
    print "# no lab ($why): the playbook keys only\n";
} elsif (!-x $nines || !-x $delayer) {
    print "# no lab ($nines or $delayer not built): the playbook keys only\n";
} elsif (@missing) {
    print "# no @missing (scripts/install-deps.sh installs it): the playbook keys only\n";
} else {
    my $up = run({ timeout => 120 }, $nines, 'lab', 'up', '--hosts', 3, '--azs', 3,
                 '--no-labfs', '--dir', $lab);
    if ($up->{status}) {
        print "# lab up failed (status $up->{status}): the playbook keys only\n";
        print map { "# $_\n" } split /\n/, $up->{err};
    } else {
        $env{NINES_FDELAY_INV} = "$lab/inventory.yaml";
    }
}

# The driver's TAP goes straight to our stdout; a hung driver is killed.
local @ENV{ keys %env } = values %env;
my $rc = system('timeout', '--kill-after=10', $ENV{NINES_TEST_TIMEOUT} // 900, $driver);
exit($rc == -1 ? 255 : $rc & 127 ? 128 + ($rc & 127) : $rc >> 8);
