# The `nines` command line: the registry (cli/commands.def) is the one list
# of subcommands; `nines help` prints it, every listed command runs through
# the dispatcher, and the dispatcher itself loads no library but libc (that
# is what makes it start in about a millisecond; docs/architecture.md).
use strict;
use warnings;
use FindBin;
use Test::More;

my $top = "$FindBin::Bin/../..";
my $build = $ENV{NINES_BUILD} // "$top/build";
my $nines = "$build/bin/nines";
plan skip_all => "$nines not built (run make test)" unless -x $nines;

sub run { # (exit code, stdout, stderr)
    my @cmd = @_;
    my ($out, $err) = ("/tmp/nines-cli-$$.out", "/tmp/nines-cli-$$.err");
    system(join(' ', map { "'$_'" } @cmd) . " >$out 2>$err </dev/null");
    my $rc = $? >> 8;
    local $/;
    open my $o, '<', $out or die; my $so = <$o>; close $o;
    open my $e, '<', $err or die; my $se = <$e>; close $e;
    unlink $out, $err;
    return ($rc, $so, $se);
}

open my $def, '<', "$top/cli/commands.def" or die "commands.def: $!";
my @cmds = map { /^NINES_COMMAND\((\w+),\s*\w+,\s*"([^"]+)"\)/ ? [$1, $2] : () } <$def>;
close $def;
cmp_ok(scalar @cmds, '>=', 10, 'commands.def lists the subcommands (' . scalar(@cmds) . ')');

my ($rc, $out, $err) = run($nines, 'help');
is($rc, 0, '`nines help` exits 0');
for my $c (@cmds) {
    like($out, qr/^\s+\Q$c->[0]\E\s+\Q$c->[1]\E$/m, "`nines help` lists $c->[0] with its summary");
}
my ($rc2, $out2) = run($nines, '--help');
is($rc2, 0, '`nines --help` exits 0');
is($out2, $out, '... and prints the same list');

for my $c (@cmds) {
    my ($r, $o, $e) = run($nines, $c->[0], '--help');
    is($r, 0, "`nines $c->[0] --help` runs its program and exits 0");
    like($o . $e, qr/usage: nines \Q$c->[0]\E/i, "... and prints its own usage");
    ok(-x "$build/bin/nines-$c->[0]", "bin/nines-$c->[0] is built");
}
my ($rh, $oh) = run($nines, 'help', 'check');
is($rh, 0, '`nines help check` exits 0');
like($oh, qr/usage: nines check/, '... and prints check\'s usage');

my ($ru, $ou, $eu) = run($nines, 'no-such-command');
is($ru, 2, 'an unknown command exits 2');
like($eu, qr/unknown command 'no-such-command'/, '... naming it');
like($eu, qr/^\s+check\s/m, '... and listing the commands on stderr');
my ($r0, $o0, $e0) = run($nines);
is($r0, 2, 'no command exits 2 with the list on stderr');
like($e0, qr/usage: nines COMMAND/, '... usage on stderr');
my ($rv, $ov) = run($nines, '--version');
is($rv, 0, '`nines --version` exits 0');
like($ov, qr/^nines \d+\.\d+\.\d+$/m, '... and prints a version');

# A subcommand's program missing: a clear error, exit 127, no crash.
my $tmp = "/tmp/nines-cli-copy-$$";
mkdir $tmp or die;
system('cp', $nines, "$tmp/nines") == 0 or die;
my ($rm, $om, $em) = run("$tmp/nines", 'check', 'x');
is($rm, 127, 'a missing subcommand program exits 127');
like($em, qr{cannot run \Q$tmp\E/nines-check}, '... naming the path it looked for');
system('rm', '-rf', $tmp);

SKIP: {
    my $ldd = `ldd '$nines' 2>&1`;
    skip 'ldd not available', 1 if $?;
    # Under `make test SAN=1` every program also links the sanitizer
    # runtimes (and what they need); nothing of the project's own
    # dependencies (curl, jansson, LMDB, ssh2, pq, ...) may appear.
    my $runtime = qr/linux-vdso|ld-linux|libc\.so|libasan|libubsan|libstdc\+\+|libm\.so|libgcc_s|libpthread|libdl\.so|librt\.so/;
    my @libs = grep { !/$runtime/ } grep { /\S/ } split /\n/, $ldd;
    is(scalar @libs, 0, 'the dispatcher links only the C library (and sanitizer runtimes)') or diag $ldd;
}
done_testing();
