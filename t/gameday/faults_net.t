#!/usr/bin/perl
# The partition, pause and degrade fault kinds against a real lab: 3 hosts
# in 3 AZs (`nines lab up --hosts 3 --azs 3 --no-labfs`), driven by the C
# test t/gameday/faults_net.c (it gets the lab's inventory in
# NINES_FNET_INV and the ninesd to pause in NINES_FNET_NINESD, and prints
# the TAP). Without root or ip(8), or when the lab cannot be made, the C
# test runs alone and checks only that this machine is refused.
# The lab is taken down at the end whatever happens.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use File::Temp qw(tempdir);

use Lab qw(run can_netns);
use Nines qw(bin build_dir);

my $driver = build_dir() . '/t/faults_net';
unless (-x $driver) {
    print "1..0 # SKIP $driver not built\n";
    exit 0;
}
my $nines = bin('nines');
my $ninesd = bin('ninesd');

my $tmp = tempdir('nines-fnet-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $lab = "$tmp/lab";
END {
    local $?;
    system($nines, 'lab', 'down', '--dir', $lab) if $lab && -e "$lab/lab.state";
}

my %env = (NINES_TOP => "$FindBin::Bin/../..", NINES_BUILD => build_dir());
my ($usable, $why) = can_netns();
if (!$usable) {
    print "# no lab ($why): refusals only\n";
} elsif (!-x $nines || !-x $ninesd) {
    print "# no lab ($nines or $ninesd not built): refusals only\n";
} else {
    my $up = run({ timeout => 120 }, $nines, 'lab', 'up', '--hosts', 3, '--azs', 3,
                 '--no-labfs', '--dir', $lab);
    if ($up->{status}) {
        print "# lab up failed (status $up->{status}): refusals only\n";
        print map { "# $_\n" } split /\n/, $up->{err};
    } else {
        $env{NINES_FNET_INV} = "$lab/inventory.yaml";
        $env{NINES_FNET_NINESD} = $ninesd;
    }
}

# The driver's TAP goes straight to our stdout; a hung driver is killed.
local @ENV{ keys %env } = values %env;
my $rc = system('timeout', '--kill-after=10', $ENV{NINES_TEST_TIMEOUT} // 900, $driver);
exit($rc == -1 ? 255 : $rc & 127 ? 128 + ($rc & 127) : $rc >> 8);
