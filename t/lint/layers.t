#!/usr/bin/perl
# layers.t — the layer rule holds over the tree's #include lines
# (scripts/check-layers.sh), and the checker really refuses what the rule
# forbids: on a temporary copy of the tree with one planted include per
# kind of breach (the toolkit reaching into store/, the store reaching into
# the toolkit, a lower layer including a higher one, a folder the table
# does not know), it fails and names the file, the line and the edge.
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Copy qw(copy);
use File::Find;
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use Test::More;

my $root = dirname(dirname(dirname(__FILE__)));
$root = "." if $root eq "";
my $check = "$root/scripts/check-layers.sh";
ok(-x $check, 'scripts/check-layers.sh exists and is executable');

# Runs the checker on a tree; returns (exit code, stderr text).
sub run_check {
    my ($tree) = @_;
    my $out = `"$check" "$tree" 2>&1`;
    return ($? >> 8, $out);
}

my ($rc, $out) = run_check($root);
is($rc, 0, 'the tree keeps the layer rule') or diag($out);

# A copy of every .c/.h file (build directories and .git left out).
my $tmp = tempdir('nines-layers-XXXXXX', TMPDIR => 1, CLEANUP => 1);
find({no_chdir => 1, wanted => sub {
    return if length($File::Find::name) <= length($root);
    my $rel = substr($File::Find::name, length($root) + 1);
    if (-d $_ && ($rel =~ m{^build} || $rel =~ m{^\.})) {
        $File::Find::prune = 1;
        return;
    }
    return unless -f $_ && /\.[ch]$/;
    make_path(dirname("$tmp/$rel"));
    copy($_, "$tmp/$rel") or die "copy $rel: $!";
}}, $root);
($rc, $out) = run_check($tmp);
is($rc, 0, 'the unchanged copy passes') or diag($out);

# Appends one include to a copied file; returns its line number.
sub plant {
    my ($file, $inc) = @_;
    open(my $f, '<', "$tmp/$file") or die "$file: $!";
    my @l = <$f>;
    close $f;
    open($f, '>>', "$tmp/$file") or die "$file: $!";
    print $f "#include \"$inc\"\n";
    close $f;
    return scalar(@l) + 1;
}

sub unplant {
    my ($file) = @_;
    open(my $f, '<', "$tmp/$file") or die "$file: $!";
    my @l = <$f>;
    close $f;
    pop @l;
    open($f, '>', "$tmp/$file") or die "$file: $!";
    print $f @l;
    close $f;
}

for my $case (['canary/canary.c', 'store/node.h', 'canary -> store'],
              ['cluster/cluster.c', 'store/catalog.h', 'cluster -> store'],
              ['store/catalog.c', 'cluster/cluster.h', 'store -> cluster'],
              ['fault/power.c', 'lab/lab.h', 'fault -> lab'],
              ['labfs/labfs.c', 'fault/power.h', 'labfs -> fault'],
              ['load/issue.c', 'gameday/gameday.h', 'load -> gameday'],
              ['proto/ddb.c', 'checkers/history.h', 'proto -> checkers'],
              ['net/http.c', 'proto/ddb.h', 'net -> proto'],
              ['lib/log.c', 'net/http.h', 'lib -> net'],
              ['canary/canary.c', 'cluster/cluster.h', 'canary -> cluster'],
              ['cli/nines_main.c', 'store/version.h', 'cli -> store']) {
    my ($file, $inc, $edge) = @$case;
    my $line = plant($file, $inc);
    ($rc, $out) = run_check($tmp);
    is($rc, 1, "a planted $edge include fails the check");
    like($out, qr/^\Q$file\E:$line: forbidden edge \Q$edge\E /m, "... naming $file:$line and the edge")
        or diag($out);
    unplant($file);
}

# A folder that is not in the table is refused, as is an include of one.
make_path("$tmp/newfolder");
open(my $f, '>', "$tmp/newfolder/x.c") or die $!;
print $f "#include \"lib/err.h\"\n";
close $f;
($rc, $out) = run_check($tmp);
is($rc, 1, 'a folder missing from the layer table fails the check');
like($out, qr{^newfolder/x\.c:1: folder newfolder/ is not in the layer table}m, '... and is named')
    or diag($out);
unlink "$tmp/newfolder/x.c";
rmdir "$tmp/newfolder";
my $line = plant('cluster/demo.c', 'nosuch/thing.h');
($rc, $out) = run_check($tmp);
is($rc, 1, 'an include from an unknown folder fails the check');
like($out, qr{^cluster/demo\.c:$line: includes nosuch/thing\.h from folder nosuch/}m, '... and is named')
    or diag($out);
unplant('cluster/demo.c');
($rc, $out) = run_check($tmp);
is($rc, 0, 'the copy passes again once the plants are gone') or diag($out);

done_testing();
