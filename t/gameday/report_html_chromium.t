#!/usr/bin/perl
# report.html as a browser shows it: the generator (gameday/report_html.c,
# through the t/report_html_tool binary) renders fixture reports
# (t/gameday/fixtures/*.json, and a 1-hour run built here), headless
# Chromium loads each page from disk and dumps the DOM it built, and the
# test reads that DOM: the SVG timeline with one series per AZ whose points
# are the report's numbers, the fault windows with their targets, the alarm
# marks at their seconds, the step boundaries and the stop, the steps,
# expectations and verifications with their verdicts and texts, the totals.
# Strings with < & " ' come back from the browser's parse exactly as in the
# JSON. A screenshot of the full report must be a 1400x2000 PNG of some
# substance. Each Chromium runs in its own process group with a private
# profile under a temp dir, bounded by a timeout, and the group is killed
# (by its id) when it is done or overran.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use File::Temp qw(tempdir);
use JSON::PP;
use POSIX qw(:sys_wait_h strftime);
use Test::More;
use Time::HiRes qw(time sleep);

use Chromium qw(chromium_path chromium_run);
use Nines qw(build_dir slurp);

my $tool = build_dir() . '/t/report_html_tool';
plan skip_all => "$tool not built" unless -x $tool;
my $chromium = chromium_path();
plan skip_all => 'chromium is not installed (scripts/install-deps.sh installs it)'
    unless $chromium;

my $tmp = tempdir('nines-rhtml-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $fixtures = "$FindBin::Bin/fixtures";
sub chromium {
    my ($url, @flags) = @_;
    my ($st, $out, $err) = chromium_run($tmp, $url, @flags);
    diag("chromium exit $st: $err") if $st;
    return ($st, $out);
}

# --- a small DOM from Chromium's serialization (attributes always in
# double quotes; text and attribute values escaped; every non-void element
# closed) ---
my %void = map { $_ => 1 } qw(area base br col embed hr img input link meta source track wbr);

sub unent {
    my ($s) = @_;
    $s =~ s/&(#x[0-9a-fA-F]+|#\d+|amp|lt|gt|quot|apos|nbsp);/
        my $e = $1;
        $e =~ m{^#x}i ? chr(hex substr $e, 2) : $e =~ m{^#} ? chr(substr $e, 1)
        : { amp => '&', lt => '<', gt => '>', quot => '"', apos => "'", nbsp => "\xa0" }->{$e}
    /ge;
    return $s;
}

sub parse_dom {
    my ($html) = @_;
    utf8::decode($html);
    my $root = { tag => '#root', kids => [], attr => {} };
    my $cur = $root;
    while (length $html) {
        if ($html =~ s/\A<!--.*?-->//s || $html =~ s/\A<![^>]*>//) {
        } elsif ($html =~ s/\A<(style|script)\b([^>]*)>(.*?)<\/\1>//is) {
            push @{ $cur->{kids} }, { tag => lc $1, attr => {}, parent => $cur,
                                      kids => [{ text => $3 }] };
        } elsif ($html =~ s/\A<\/([\w:-]+)\s*>//) {
            my $t = lc $1;
            my $n = $cur;
            $n = $n->{parent} while $n->{parent} && $n->{tag} ne $t;
            $cur = $n->{parent} // $root if $n->{tag} eq $t;
        } elsif ($html =~ s/\A<([\w:-]+)((?:\s+[^\s=>\/]+(?:="[^"]*")?)*)\s*(\/?)>//) {
            my ($t, $attrs, $self) = (lc $1, $2, $3);
            my %a;
            while ($attrs =~ /([^\s=>\/]+)(?:="([^"]*)")?/g) {
                $a{$1} = defined $2 ? unent($2) : '';
            }
            my $n = { tag => $t, attr => \%a, kids => [], parent => $cur };
            push @{ $cur->{kids} }, $n;
            $cur = $n unless $void{$t} || $self;
        } elsif ($html =~ s/\A([^<]+)//) {
            push @{ $cur->{kids} }, { text => unent($1) };
        } else {
            $html =~ s/\A<//;
            push @{ $cur->{kids} }, { text => '<' };
        }
    }
    return $root;
}

sub all_of {
    my ($n, $pred, $acc) = @_;
    $acc //= [];
    for my $k (@{ $n->{kids} // [] }) {
        next unless $k->{tag};
        push @$acc, $k if $pred->($k);
        all_of($k, $pred, $acc);
    }
    return @$acc;
}
sub has_class { my ($n, $c) = @_; return (' ' . ($n->{attr}{class} // '') . ' ') =~ / \Q$c\E / }
# find(node, 'tag.class' | '#id' | 'tag') -> matching descendants.
sub find {
    my ($n, $sel) = @_;
    return all_of($n, sub { ($_[0]{attr}{id} // '') eq $1 }) if $sel =~ /^#(.+)$/;
    my ($t, $c) = $sel =~ /^([\w-]*)(?:\.([\w-]+))?$/;
    return all_of($n, sub { (!$t || $_[0]{tag} eq $t) && (!$c || has_class($_[0], $c)) });
}
sub q1 { my @r = find(@_); return $r[0] }
sub text {
    my ($n) = @_;
    return '' unless $n;
    return $n->{text} if defined $n->{text};
    return join '', map { text($_) } @{ $n->{kids} };
}
sub num_close { my ($a, $b, $eps) = @_; return defined $a && defined $b && abs($a - $b) <= ($eps // 1e-9) }

sub render {
    my ($json, $html) = @_;
    my $t0 = time;
    my $st = system($tool, $json, $html);
    return ($st == 0, time - $t0);
}

# --- the full report ---
my $rep = decode_json(slurp("$fixtures/report-full.json"));
my ($okr, $secs) = render("$fixtures/report-full.json", "$tmp/full.html");
ok($okr, 'report_html_tool renders the full fixture') or BAIL_OUT('no page');
my ($st, $dump) = chromium("file://$tmp/full.html", '--dump-dom');
is($st, 0, 'chromium loads the page');
my $dom = parse_dom($dump);
my $body = q1($dom, 'body');
ok($body, 'the DOM has a body') or BAIL_OUT('no DOM: ' . substr($dump, 0, 300));

is(scalar(find($dom, 'script')), 0, 'no script element (the name holds <script>)');
is(text(q1($dom, '#name')), $rep->{name}, 'the name, exactly as in the JSON');
like(text(q1($dom, 'title')), qr/^game day \Q$rep->{name}\E: FAILED$/, 'the page title');
is(text(q1($dom, '#verdict')), 'FAILED', 'FAILED');
is(text(q1($dom, '#failure')), "run failed: $rep->{failure}", 'the failure');
is(text(q1(q1($dom, '#stop'), 'span.reason')), $rep->{stop}{reason}, 'the stop reason');
like(text(q1($dom, '#stop')), qr/^stopped at 20\.5 s: /, 'and when');
is(text(q1($dom, '#seed')), $rep->{seed}, 'the seed');
is(text(q1($dom, '#date')), strftime('%Y-%m-%d %H:%M:%S UTC', gmtime($rep->{t0_wall_ms} / 1000)),
   'the date of s = 0, UTC');
is(text(q1($dom, '#elapsed')), sprintf('%.1f s', $rep->{elapsed_s}), 'elapsed');

# The timeline's scale, as the svg declares it; every position is checked
# against the JSON through it.
my $svg = q1($dom, '#timeline');
ok($svg && $svg->{tag} eq 'svg', 'an <svg id="timeline">') or BAIL_OUT('no timeline');
my ($x0, $x1, $t1) = @{ $svg->{attr} }{qw(data-x0 data-x1 data-t1)};
my $tmax = $rep->{elapsed_s};
for my $s (@{ $rep->{steps} }, @{ $rep->{faults} }) {
    $tmax = $_ for grep { defined && $_ > $tmax } $s->{start_s}, $s->{end_s};
}
is($t1, $tmax, 'the x axis spans the run (its latest second)');
sub xat { my ($s) = @_; return $x0 + $s / $t1 * ($x1 - $x0) }
my @ticks = find($svg, 'text.xtick');
ok(@ticks >= 5, 'x axis ticks');
ok(!grep({ !num_close($_->{attr}{x}, xat($_->{attr}{'data-s'}), 0.06) } @ticks),
   'at their seconds');

my $tl = $rep->{timeline};
my @series = find($svg, 'g.series');
is_deeply([map { $_->{attr}{'data-az'} } @series], $tl->{azs}, 'one series per AZ, in order');
my %panel = map { $_->{attr}{'data-panel'} => $_ } find($svg, 'g.panel');
for my $p (qw(ok errors p99)) {
    my $r = q1($panel{$p}, 'rect.frame');
    ok($r, "the $p panel");
    $panel{$p} = { top => $r->{attr}{y}, h => $r->{attr}{height},
                   ymax => $panel{$p}{attr}{'data-ymax'} };
}
sub path_points {
    my ($d) = @_;
    my @runs;
    while ($d =~ /([ML])(-?[\d.]+) (-?[\d.]+)/g) {
        push @runs, [] if $1 eq 'M';
        push @{ $runs[-1] }, [$2, $3];
    }
    return @runs;
}
# Every sample of every line: x at the middle of its interval, y from the
# panel's scale; nulls break the line.
for my $g (@series) {
    my $az = $g->{attr}{'data-az'};
    for my $line (['ok', $tl->{interval_s}], ['errors', $tl->{interval_s}], ['p99', 1]) {
        my ($cls, $div) = @$line;
        my $vals = $tl->{series}{$az}{ $cls eq 'p99' ? 'p99_ms' : $cls };
        my $path = q1($g, "path.$cls");
        my @runs = path_points($path ? $path->{attr}{d} : '');
        my @want;
        my $prev_null = 1;
        for my $i (0 .. $#$vals) {
            if (!defined $vals->[$i]) { $prev_null = 1; next }
            push @want, [] if $prev_null;
            $prev_null = 0;
            my $pn = $panel{$cls};
            push @{ $want[-1] }, [xat(($i + 0.5) * $tl->{interval_s}),
                                  $pn->{top} + $pn->{h} - $vals->[$i] / $div / $pn->{ymax} * $pn->{h}];
        }
        my $bad = 0;
        $bad++ if @runs != @want;
        for my $r (0 .. $#want) {
            $bad++ if @{ $runs[$r] // [] } != @{ $want[$r] };
            for my $k (0 .. $#{ $want[$r] }) {
                my ($g1, $w) = ($runs[$r][$k] // [0, 0], $want[$r][$k]);
                $bad++ unless num_close($g1->[0], $w->[0], 0.06) && num_close($g1->[1], $w->[1], 0.06);
            }
        }
        is($bad, 0, "$az $cls: every sample at its second and value (" . scalar(@want) . ' segment(s))');
    }
}

my @faults = find($svg, 'g.fault');
is(scalar @faults, scalar @{ $rep->{faults} }, 'one shaded window per fault');
for my $i (0 .. $#faults) {
    my ($f, $g) = ($rep->{faults}[$i], $faults[$i]);
    my $hosts = join ',', @{ $f->{hosts} };
    is($g->{attr}{'data-hosts'}, $hosts, "fault $i: data-hosts $hosts");
    is(text(q1($g, 'text.fault-label')), "$f->{kind} $hosts", "fault $i: labelled kind and hosts");
    like(text(q1($g, 'title')), qr/^\Q$f->{label}\E: /, "fault $i: its step's label on hover");
    my $r = q1($g, 'rect.window');
    my $end = $f->{end_s} // $t1;
    ok(num_close($r->{attr}{x}, xat($f->{start_s}), 0.06)
       && num_close($r->{attr}{x} + $r->{attr}{width}, xat($end), 0.11),
       "fault $i: shaded from $f->{start_s} s to " . ($f->{end_s} // 'the end'));
}

my @alarms = find($svg, 'g.alarm');
is(scalar @alarms, scalar @{ $rep->{alarms} }, 'one mark per alarm event');
for my $i (0 .. $#alarms) {
    my ($a, $g) = ($rep->{alarms}[$i], $alarms[$i]);
    is($g->{attr}{'data-state'}, $a->{state}, "alarm $i: $a->{state}");
    my $l = q1($g, 'line');
    ok(num_close($l->{attr}{x1}, xat($a->{at_s}), 0.06) && $l->{attr}{x1} == $l->{attr}{x2},
       "alarm $i: a vertical mark at $a->{at_s} s (x $l->{attr}{x1})");
    # Label order is the JSON's, which JSON::PP does not keep: compare sets.
    my ($name, $labels, $state) = text(q1($g, 'text')) =~ /^(.*)\{(.*)\} (\S+)$/s;
    is($name, $a->{alarm}, "alarm $i: its name as visible text");
    is_deeply([sort split /,/, $labels // ''],
              [sort map { "$_=$a->{labels}{$_}" } keys %{ $a->{labels} }], "alarm $i: its labels");
    is($state, $a->{state}, "alarm $i: its state");
    like(text(q1($g, 'title')), qr/^\Q@{[sprintf '%.1f', $a->{at_s}]}\E s: \Q$name\E\{/, "alarm $i: the same on hover");
}
# The firing mark of the fault in az2 comes after that fault's window.
ok($alarms[0] && $faults[0]
   && q1($alarms[0], 'line')->{attr}{x1} > q1($faults[0], 'rect')->{attr}{x} + q1($faults[0], 'rect')->{attr}{width},
   'the alarm at 12.3 s is right of the window ending at 9.8 s');

my @marks = find($svg, 'g.step-mark');
is(scalar @marks, scalar @{ $rep->{steps} }, 'a boundary per step');
ok(!grep({ my $s = $rep->{steps}[$_];
           $marks[$_]{attr}{'data-step'} != $s->{index}
           || !num_close(q1($marks[$_], 'line')->{attr}{x1}, xat($s->{start_s}), 0.06) } 0 .. $#marks),
   'each at its step start');
my $stop = q1($svg, 'g.stop');
ok($stop && num_close(q1($stop, 'line')->{attr}{x1}, xat($rep->{stop}{at_s}), 0.06),
   'the stop marked at its second');

# --- tables ---
my @rows = find(q1($dom, '#steps'), 'tr.step');
is(scalar @rows, scalar @{ $rep->{steps} }, 'a row per step');
for my $i (0 .. $#rows) {
    my ($s, $r) = ($rep->{steps}[$i], $rows[$i]);
    my %cell = map { my $n = $_; map { ($_ => text($n)) } grep { $_ ne 'n' } split ' ', $n->{attr}{class} // '' }
               find($r, 'td');
    is($r->{attr}{id}, "step-$s->{index}", "step $s->{index}: anchor");
    is_deeply([@cell{qw(ok errors p99 recovery label)}],
              [$s->{ok}, $s->{errors}, defined $s->{p99_ms} ? sprintf('%.1f', $s->{p99_ms}) : '-',
               exists $s->{recovery_s}
                   ? (defined $s->{recovery_s} ? sprintf('%.2f s', $s->{recovery_s}) : 'none') : '-',
               $s->{label}],
              "step $s->{index}: ok, errors, p99, recovery, label");
    is(has_class($r, 'failed') ? 1 : 0, $s->{failed} ? 1 : 0, "step $s->{index}: failed or not");
    is($cell{error}, "FAILED: $s->{error}", "step $s->{index}: why") if $s->{failed};
}

my @ex = find(q1($dom, '#expectations'), 'tr.expectation');
is(scalar @ex, scalar @{ $rep->{expectations} }, 'a row per expectation');
for my $i (0 .. $#ex) {
    my ($e, $r) = ($rep->{expectations}[$i], $ex[$i]);
    my $v = $e->{passed} ? 'pass' : 'fail';
    ok(has_class($r, $v) && !has_class($r, $e->{passed} ? 'fail' : 'pass'), "expectation $i: class $v");
    is(text(q1($r, 'td.verdict')), uc $v, "expectation $i: verdict");
    is(text(q1($r, 'td.what')), $e->{what}, "expectation $i: what");
    is(text(q1($r, 'td.detail')), $e->{detail}, "expectation $i: detail");
}
my $met = grep { $_->{passed} } @{ $rep->{expectations} };
is(text(q1($dom, '#expectations-summary')), "$met of " . @{ $rep->{expectations} } . ' expectations met',
   'the count of expectations met');

my $v = $rep->{verify};
for my $k (sort keys %$v) {
    my $d = q1($dom, "#verify-$k");
    my $want = $v->{$k}{passed} ? 'PASS' : 'FAIL';
    is(text(q1($d, 'span.verdict')), $want, "verify $k: $want");
}
is(text(q1($dom, '#checkers-verdict')), $v->{checkers}{verdict}, 'the checkers\' verdict');
is(text(q1($dom, '#checkers-acked')), $v->{checkers}{acked_writes}, 'acknowledged writes');
my @an = find(q1($dom, '#anomalies'), 'tr.anomaly');
is(scalar @an, scalar @{ $v->{checkers}{first} }, 'a row per anomaly');
for my $i (0 .. $#an) {
    my ($a, $r) = ($v->{checkers}{first}[$i], $an[$i]);
    my $n = $i + 1;
    is($r->{attr}{id}, "anomaly-$n", "anomaly $n: its anchor");
    is(q1($r, 'a')->{attr}{href}, "#anomaly-$n", "anomaly $n: links to itself");
    is_deeply([map { text(q1($r, "td.$_")) } qw(kind key detail op)],
              [@$a{qw(kind key detail op)}], "anomaly $n: kind, key, detail, operation");
}
my %counts = map { $_->{attr}{'data-kind'} => text(q1($_, 'td.count')) }
             grep { defined $_->{attr}{'data-kind'} } find(q1($dom, '#anomaly-counts'), 'tr');
is_deeply(\%counts, { map { $_ => $v->{checkers}{anomalies}{$_} } grep { $v->{checkers}{anomalies}{$_} }
                      keys %{ $v->{checkers}{anomalies} } }, 'the anomaly counts');
my @fi = find(q1($dom, '#scrub-findings'), 'tr.finding');
is(scalar @fi, scalar @{ $v->{scrub}{findings} }, 'a row per scrub finding');
for my $i (0 .. $#fi) {
    my $f = $v->{scrub}{findings}[$i];
    is($fi[$i]{attr}{id}, 'finding-' . ($i + 1), "finding $i: its anchor");
    is_deeply([map { text(q1($fi[$i], "td.$_")) } qw(group key node what)], [@$f{qw(group key node what)}],
              "finding $i: group, key, node, what");
}
is(text(q1(q1($dom, '#verify-scrub'), 'p.detail')), $v->{scrub}{detail}, 'the scrub detail');

# --- totals ---
my %tot = ('#traffic-ok' => $rep->{traffic}{ok}, '#traffic-errors' => $rep->{traffic}{errors},
           '#traffic-final-keys' => $rep->{traffic}{final_keys},
           '#recovery-rounds' => $rep->{recovery}{rounds},
           '#recovery-unrecovered' => $rep->{recovery}{unrecovered},
           '#recovery-median' => sprintf('%.2f s', $rep->{recovery}{median_s}),
           '#recovery-max' => sprintf('%.2f s', $rep->{recovery}{max_s}),
           '#canary-probes' => $rep->{canaries}{probes}, '#canary-errors' => $rep->{canaries}{errors});
is(text(q1($dom, $_)), $tot{$_}, "total $_ = $tot{$_}") for sort keys %tot;
is(q1($dom, '#recovery-median')->{attr}{'data-value'}, $rep->{recovery}{median_s}, 'the exact median');
for my $r (find(q1($dom, '#az-totals'), 'tr.az')) {
    my $az = $r->{attr}{'data-az'};
    my ($ok, $err) = (0, 0);
    $ok += $_ for @{ $tl->{series}{$az}{ok} };
    $err += $_ for grep { defined } @{ $tl->{series}{$az}{errors} };
    is_deeply([text(q1($r, 'td.ok')), text(q1($r, 'td.errors'))], [$ok, $err], "$az: totals of the timeline");
}

# --- the screenshot ---
($st) = chromium("file://$tmp/full.html", '--window-size=1400,2000', "--screenshot=$tmp/full.png");
my $png = slurp("$tmp/full.png") // '';
is(substr($png, 0, 8), "\x89PNG\r\n\x1a\n", 'the screenshot is a PNG');
my ($w, $h) = length($png) >= 24 ? unpack('NN', substr($png, 16, 8)) : (0, 0);
is("${w}x$h", '1400x2000', 'of the window size');
cmp_ok(length $png, '>', 50_000, 'with something on it (' . length($png) . ' bytes)');

# --- an older report: no timeline keys at all ---
ok((render("$fixtures/report-old.json", "$tmp/old.html"))[0], 'an old report renders');
($st, $dump) = chromium("file://$tmp/old.html", '--dump-dom');
$dom = parse_dom($dump);
my $old = decode_json(slurp("$fixtures/report-old.json"));
is(text(q1($dom, '#verdict')), 'PASSED', 'PASSED');
ok(q1($dom, '#timeline'), 'still a timeline');
is(scalar(find($dom, 'g.series')), 0, 'without series');
is(text(q1($dom, 'text.no-data')), 'no per-AZ timeline in this report', 'saying why');
is(scalar(find($dom, 'g.step-mark')), scalar @{ $old->{steps} }, 'with the step boundaries');
is(text(q1($dom, '#traffic-ok')), $old->{traffic}{ok}, 'and the totals');
ok(!q1($dom, '#expectations'), 'no expectations table');

# --- a 1-hour run at 1 s intervals ---
my %big = (name => 'hour', seed => 3, passed => JSON::PP::true, elapsed_s => 3600.5,
           t0_wall_ms => 1765000000000,
           timeline => { interval_s => 1, azs => [qw(az1 az2 az3)], series => {} },
           faults => [map { { step => $_, kind => 'power', label => "round $_", hosts => ["h$_"],
                              azs => ['az1'], start_s => $_ * 60 + 5, end_s => $_ * 60 + 20 } } 0 .. 59],
           alarms => [map { { at_s => $_ * 60 + 12.5, alarm => 'a', labels => { az => 'az1' },
                              state => 'firing' } } 0 .. 59]);
for my $az (@{ $big{timeline}{azs} }) {
    $big{timeline}{series}{$az} = { ok => [map { 100 + $_ % 17 } 0 .. 3599],
                                    errors => [map { $_ % 60 < 5 ? 3 : 0 } 0 .. 3599],
                                    p99_ms => [map { $_ % 100 ? 5 + $_ % 7 : undef } 0 .. 3599] };
}
open my $bf, '>', "$tmp/big.json" or die;
print $bf encode_json(\%big);
close $bf;
my ($bok, $bsecs) = render("$tmp/big.json", "$tmp/big.html");
ok($bok, '3 AZs x 3600 points render');
cmp_ok($bsecs, '<', 1, sprintf('in %.3f s, tool start and JSON parse included', $bsecs));
cmp_ok(-s "$tmp/big.html", '<', 2_000_000, 'into a page of ' . (-s "$tmp/big.html") . ' bytes');
($st, $dump) = chromium("file://$tmp/big.html", '--dump-dom');
$dom = parse_dom($dump);
$svg = q1($dom, '#timeline');
is(scalar(find($dom, 'g.series')), 3, 'Chromium shows the three series');
is(scalar(find($dom, 'g.alarm')), 60, 'and every alarm');
is(scalar(find($dom, 'g.fault')), 60, 'and every fault');
my @pts = map { path_points($_->{attr}{d}) } find(q1($dom, 'g.series'), 'path.ok');
cmp_ok(scalar(map { @$_ } @pts), '<=', 2 * ($svg->{attr}{'data-x1'} - $svg->{attr}{'data-x0'} + 1),
       'at most two points a pixel');

done_testing();
