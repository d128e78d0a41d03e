#!/usr/bin/perl
# Process hygiene of ninesd at start-up (docs/security.md): the data
# directory and everything below it are private to the node's user (0700
# directories, 0600 files), and the open-files limit is raised to what the
# configuration needs and logged. Before the change the directories were
# 0755 and LMDB's files 0644, and nothing was said about the limit.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use File::Find;
use Nines qw(start_node stop_node ddb);
sub slurp { my ($p) = @_; open my $f, "<", $p or return ""; local $/; <$f> }

my $n = start_node();
my ($st) = ddb($n, 'CreateTable', {
    TableName => 'hyg', BillingMode => 'PAY_PER_REQUEST',
    AttributeDefinitions => [{AttributeName => 'pk', AttributeType => 'S'}],
    KeySchema => [{AttributeName => 'pk', KeyType => 'HASH'}]});
is($st, 200, 'a table is created (so group directories and files exist)');
($st) = ddb($n, 'PutItem', {TableName => 'hyg', Item => {pk => {S => 'a'}}});
is($st, 200, 'an item is written');

# Hostile names through the API: a table name is never a path, and a
# client cannot choose a table id (ids are "t<LSN>", made by the metadata
# group); neither may create anything outside the data directory.
for my $name ('../../escape', 't1/../..', '..', 'a/b') {
    my ($s, $b) = ddb($n, 'CreateTable', {
        TableName => $name, BillingMode => 'PAY_PER_REQUEST',
        AttributeDefinitions => [{AttributeName => 'pk', AttributeType => 'S'}],
        KeySchema => [{AttributeName => 'pk', KeyType => 'HASH'}]});
    is($s, 400, "CreateTable '$name' is refused");
    is(ref $b && $b->{__type} =~ /ValidationException/ ? 1 : 0, 1, '... as a ValidationException');
}
($st) = ddb($n, 'CreateTable', {
    TableName => 'hyg2', TableId => 't1/../../../escape', BillingMode => 'PAY_PER_REQUEST',
    AttributeDefinitions => [{AttributeName => 'pk', AttributeType => 'S'}],
    KeySchema => [{AttributeName => 'pk', KeyType => 'HASH'}]});
ok(!-e "$n->{dir}/escape.0" && !-e "$n->{dir}/../escape.0",
   "a TableId in CreateTable (answered $st) creates nothing outside the data directory");
my @groups = map { s{.*/}{}r } glob "$n->{dir}/n1/groups/*";
is(scalar(grep { !/^(meta|p\.t[1-9][0-9]*\.[0-9]+)$/ } @groups), 0,
   'every group directory has a well-formed name (' . join(' ', @groups) . ')');

my (@open, $count);
find({ no_chdir => 1, wanted => sub {
    my @s = lstat $File::Find::name or return;
    return if -l _;
    $count++;
    push @open, sprintf('%s %04o', $File::Find::name, $s[2] & 07777) if $s[2] & 077;
} }, "$n->{dir}/n1");
cmp_ok($count, '>', 5, "the data directory holds files ($count)");
is_deeply(\@open, [], 'nothing in the data directory is readable by group or others')
    or diag(join "\n", @open);
my $log = slurp($n->{log});
like($log, qr/open files limit \d+ \(was \d+; this configuration needs up to \d+\)/,
     'the open-files limit is logged');
unlike($log, qr/not loopback/, 'no warning about auth: none on a loopback API address');
stop_node($n);
done_testing();
