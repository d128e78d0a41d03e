/*
 * gameday/report_html.c — report.json as a page (contract in report_html.h).
 *
 * One pass over the JSON into a string buffer, then one atomic write. The
 * JSON is read defensively: a key of the wrong type counts as missing.
 */
#include "gameday/report_html.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/fsutil.h"
#include "lib/strbuf.h"

/* The timeline's geometry, in SVG units (= CSS pixels at the page's size).
 * Above the panels, a band of label rows: fault labels, then alarm labels,
 * staggered over rows so that neighbours do not print over each other. */
#define SVG_W 1360.0
#define PX0 70.0   /* x of s = 0 */
#define PX1 1330.0 /* x of the last second */
#define FAULT_ROW0 18.0
#define FAULT_ROWS 2
#define ALARM_ROW0 50.0
#define ALARM_ROWS 4
#define ROW_H 14.0
#define PANELS_TOP 130.0
#define PANEL_GAP 34.0
#define AXIS_H 44.0

struct panel {
    const char *cls, *title;
    double top, h, ymax;
};

static const char *const palette[] = {"#1f77b4", "#2ca02c", "#9467bd", "#8c564b",
                                      "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"};
#define NPALETTE (sizeof palette / sizeof palette[0])

/* --- output helpers --- */

static void put(struct strbuf *b, const char *s)
{
    strbuf_str(b, s);
}

static void putf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct strbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if ((size_t)n < sizeof tmp) {
        strbuf_add(b, tmp, (size_t)n);
        return;
    }
    char *p = malloc((size_t)n + 1);
    if (!p) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    strbuf_add(b, p, (size_t)n);
    free(p);
}

/* HTML-escapes s for text and for quoted attribute values alike. C0
 * controls other than tab and newlines (which jansson lets through as
 * \u0001 ...) are not allowed in HTML: they become U+FFFD. */
static void esc(struct strbuf *b, const char *s)
{
    if (!s)
        return;
    const char *run = s;
    for (; *s; s++) {
        const char *rep = NULL;
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        default:
            if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f)
                rep = "\xEF\xBF\xBD";
        }
        if (rep) {
            strbuf_add(b, run, (size_t)(s - run));
            put(b, rep);
            run = s + 1;
        }
    }
    strbuf_add(b, run, (size_t)(s - run));
}

/* --- reading the JSON --- */

static const json_t *get(const json_t *o, const char *k)
{
    return json_is_object(o) ? json_object_get(o, k) : NULL;
}

static const char *str(const json_t *o, const char *k)
{
    return json_string_value(get(o, k));
}

static int num(const json_t *v, double *out)
{
    if (!json_is_number(v))
        return 0;
    *out = json_number_value(v);
    return 1;
}

static int numk(const json_t *o, const char *k, double *out)
{
    return num(get(o, k), out);
}

static void exact_d(struct strbuf *b, double d);

/* A JSON number exactly: an integer as is, a real as exact_d does; nothing
 * for a non-number. */
static void exact(struct strbuf *b, const json_t *v)
{
    if (json_is_integer(v)) {
        putf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return;
    }
    if (json_is_real(v))
        exact_d(b, json_real_value(v));
}

/* The shortest of %.15g/%.17g that reads back as the same double, so
 * data-value="5.1" rather than 5.0999999999999996. */
static void exact_d(struct strbuf *b, double d)
{
    char tmp[40];
    snprintf(tmp, sizeof tmp, "%.15g", d);
    if (strtod(tmp, NULL) != d)
        snprintf(tmp, sizeof tmp, "%.17g", d);
    put(b, tmp);
}

/* <tag id="id" class="cls" data-value="exact">text</tag>: an integer as is,
 * a real with `decimals` decimals, then suffix; not a number: none_text
 * (class "none"). id and cls may be NULL. */
static void num_el(struct strbuf *b, const char *tag, const char *id, const char *cls,
                   const json_t *v, int decimals, const char *suffix, const char *none_text)
{
    putf(b, "<%s", tag);
    if (id)
        putf(b, " id=\"%s\"", id);
    if (!json_is_number(v)) {
        putf(b, " class=\"%s%snone\">", cls ? cls : "", cls ? " " : "");
        esc(b, none_text);
        putf(b, "</%s>", tag);
        return;
    }
    if (cls)
        putf(b, " class=\"%s\"", cls);
    put(b, " data-value=\"");
    exact(b, v);
    put(b, "\">");
    if (json_is_integer(v))
        putf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else
        putf(b, "%.*f", decimals, json_number_value(v));
    put(b, suffix);
    putf(b, "</%s>", tag);
}

/* Writes the array of strings a joined by sep (escaped). */
static void join(struct strbuf *b, const json_t *a, const char *sep)
{
    size_t i;
    const json_t *v;
    int first = 1;
    json_array_foreach(a, i, v)
    {
        if (!json_is_string(v))
            continue;
        if (!first)
            put(b, sep);
        esc(b, json_string_value(v));
        first = 0;
    }
}

/* A scalar JSON value as text (a key may be a string or an AttributeValue
 * object): strings as is, anything else as compact JSON. */
static void scalar(struct strbuf *b, const json_t *v)
{
    if (!v || json_is_null(v))
        return;
    if (json_is_string(v)) {
        esc(b, json_string_value(v));
        return;
    }
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s) {
        b->oom = 1;
        return;
    }
    esc(b, s);
    free(s);
}

/* name{k=v,...}: an alarm with its labels. */
static void alarm_name(struct strbuf *b, const json_t *a)
{
    esc(b, str(a, "alarm"));
    const json_t *labels = get(a, "labels");
    if (!json_is_object(labels) || !json_object_size(labels))
        return;
    put(b, "{");
    const char *k;
    const json_t *v;
    int first = 1;
    json_object_foreach((json_t *)labels, k, v)
    {
        if (!first)
            put(b, ",");
        esc(b, k);
        put(b, "=");
        scalar(b, v);
        first = 0;
    }
    put(b, "}");
}

/* --- the timeline --- */

static double nice_ceil(double v)
{
    if (!(v > 0))
        return 1;
    double e = pow(10, floor(log10(v)));
    double m = v / e;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * e;
}

static double xof(double t1, double s)
{
    if (!(s > 0))
        s = 0;
    if (s > t1)
        s = t1;
    return PX0 + s / t1 * (PX1 - PX0);
}

static double yof(const struct panel *p, double v)
{
    if (v < 0)
        v = 0;
    if (v > p->ymax)
        v = p->ymax;
    return p->top + p->h - v / p->ymax * p->h;
}

/* A path that keeps at most two points per pixel column: the extremes of
 * the samples in it, in their order. A null sample lifts the pen. */
struct pathw {
    struct strbuf *b;
    int pen, have;
    long col;
    double x, lo, hi;
    size_t ilo, ihi;
};

static void pw_point(struct pathw *w, double x, double y)
{
    putf(w->b, "%c%.1f %.1f", w->pen ? 'L' : 'M', x, y);
    w->pen = 1;
}

static void pw_flush(struct pathw *w)
{
    if (!w->have)
        return;
    if (w->ilo == w->ihi)
        pw_point(w, w->x, w->lo);
    else if (w->ilo < w->ihi) {
        pw_point(w, w->x, w->lo);
        pw_point(w, w->x, w->hi);
    } else {
        pw_point(w, w->x, w->hi);
        pw_point(w, w->x, w->lo);
    }
    w->have = 0;
}

static void pw_add(struct pathw *w, double x, double y, size_t i)
{
    long col = (long)floor(x);
    if (w->have && col != w->col)
        pw_flush(w);
    if (!w->have) {
        w->have = 1;
        w->col = col;
        w->x = x;
        w->lo = w->hi = y;
        w->ilo = w->ihi = i;
        return;
    }
    if (y < w->lo) {
        w->lo = y;
        w->ilo = i;
    }
    if (y > w->hi) {
        w->hi = y;
        w->ihi = i;
    }
}

static void pw_gap(struct pathw *w)
{
    pw_flush(w);
    w->pen = 0;
}

/* One line of a series: values[i] / div at the middle of interval i. */
static void series_path(struct strbuf *b, const json_t *values, double interval, double div,
                        double t1, const struct panel *p, const char *color)
{
    struct pathw w = {.b = b};
    size_t i;
    const json_t *v;
    putf(b, "<path class=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.3\" d=\"", p->cls,
         color);
    json_array_foreach(values, i, v)
    {
        double d, s = ((double)i + 0.5) * interval;
        if (s > t1)
            break;
        if (!num(v, &d)) {
            pw_gap(&w);
            continue;
        }
        pw_add(&w, xof(t1, s), yof(p, d / div), i);
    }
    pw_flush(&w);
    put(b, "\"/>");
}

static double series_max(const json_t *series, const char *k, double div)
{
    double m = 0, d;
    const char *az;
    const json_t *s, *v;
    size_t i;
    json_object_foreach((json_t *)series, az, s)
    {
        json_array_foreach(get(s, k), i, v) if (num(v, &d) && d / div > m) m = d / div;
    }
    return m;
}

static void update_max(double *t, const json_t *o, const char *k)
{
    double d;
    if (numk(o, k, &d) && d > *t)
        *t = d;
}

/* The seconds the x axis spans: everything the report places in time. */
static double time_span(const json_t *r, double interval)
{
    double t = 0;
    size_t i;
    const json_t *v;
    update_max(&t, r, "elapsed_s");
    json_array_foreach(get(r, "steps"), i, v)
    {
        update_max(&t, v, "start_s");
        update_max(&t, v, "end_s");
    }
    json_array_foreach(get(r, "faults"), i, v)
    {
        update_max(&t, v, "start_s");
        update_max(&t, v, "end_s");
    }
    json_array_foreach(get(r, "alarms"), i, v) update_max(&t, v, "at_s");
    update_max(&t, get(r, "stop"), "at_s");
    const char *az;
    json_object_foreach((json_t *)get(get(r, "timeline"), "series"), az, v)
    {
        const char *k[] = {"ok", "errors", "p99_ms"};
        for (int j = 0; j < 3; j++) {
            double end = (double)json_array_size(get(v, k[j])) * interval;
            if (end > t)
                t = end;
        }
    }
    return t > 0 ? t : 1;
}

static void panel_frame(struct strbuf *b, const struct panel *p, const char *unit)
{
    putf(b, "<g class=\"panel\" data-panel=\"%s\" data-ymax=\"", p->cls);
    exact_d(b, p->ymax);
    putf(b, "\"><text class=\"panel-title\" x=\"%.1f\" y=\"%.1f\">%s</text>", PX0, p->top - 8,
         p->title);
    putf(b, "<rect class=\"frame\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/>", PX0,
         p->top, PX1 - PX0, p->h);
    for (int k = 0; k <= 2; k++) {
        double v = p->ymax * k / 2, y = yof(p, v);
        putf(b, "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>", PX0, PX1,
             y, y);
        putf(b, "<text class=\"ytick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g%s</text>",
             PX0 - 6, y + 4, v, k == 2 ? unit : "");
    }
    put(b, "</g>");
}

static void svg_faults(struct strbuf *b, const json_t *r, double t1, double bottom)
{
    size_t i;
    const json_t *f;
    json_array_foreach(get(r, "faults"), i, f)
    {
        double s, e;
        if (!numk(f, "start_s", &s))
            continue;
        int held = !numk(f, "end_s", &e);
        if (held)
            e = t1;
        double x0 = xof(t1, s), x1 = xof(t1, e), w = x1 - x0 < 1 ? 1 : x1 - x0;
        double ly = FAULT_ROW0 + (double)(i % FAULT_ROWS) * ROW_H;
        put(b, "<g class=\"fault\" data-kind=\"");
        esc(b, str(f, "kind"));
        put(b, "\" data-hosts=\"");
        join(b, get(f, "hosts"), ",");
        put(b, "\" data-azs=\"");
        join(b, get(f, "azs"), ",");
        put(b, "\" data-start=\"");
        exact(b, get(f, "start_s"));
        if (held)
            put(b, "\" data-held=\"true");
        else {
            put(b, "\" data-end=\"");
            exact(b, get(f, "end_s"));
        }
        put(b, "\">");
        putf(b,
             "<rect class=\"window\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/>"
             "<text class=\"fault-label\" x=\"%.1f\" y=\"%.1f\">",
             x0, ly - 11, w, bottom - (ly - 11), x0 + 3, ly);
        esc(b, str(f, "kind"));
        put(b, " ");
        join(b, get(f, "hosts"), ",");
        put(b, "</text><title>");
        esc(b, str(f, "label"));
        put(b, ": ");
        esc(b, str(f, "kind"));
        put(b, " ");
        join(b, get(f, "hosts"), ",");
        if (json_array_size(get(f, "azs"))) {
            put(b, " (");
            join(b, get(f, "azs"), ",");
            put(b, ")");
        }
        if (held)
            putf(b, ", from %.1f s to the end", s);
        else
            putf(b, ", %.1f s to %.1f s", s, e);
        put(b, "</title></g>\n");
    }
}

static void svg_alarms(struct strbuf *b, const json_t *r, double t1, double bottom)
{
    size_t i;
    const json_t *a;
    json_array_foreach(get(r, "alarms"), i, a)
    {
        double at;
        if (!numk(a, "at_s", &at))
            continue;
        const char *state = str(a, "state");
        double x = xof(t1, at), ly = ALARM_ROW0 + (double)(i % ALARM_ROWS) * ROW_H;
        put(b, "<g class=\"alarm\" data-state=\"");
        esc(b, state);
        put(b, "\" data-alarm=\"");
        esc(b, str(a, "alarm"));
        put(b, "\" data-at=\"");
        exact(b, get(a, "at_s"));
        put(b, "\" data-severity=\"");
        esc(b, str(a, "severity"));
        putf(b,
             "\"><line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>"
             "<text class=\"alarm-label\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\">",
             x, x, ly - 10, bottom, x > (PX0 + PX1) / 2 ? x - 3 : x + 3, ly,
             x > (PX0 + PX1) / 2 ? "end" : "start");
        alarm_name(b, a);
        put(b, " ");
        esc(b, state);
        putf(b, "</text><title>%.1f s: ", at);
        alarm_name(b, a);
        put(b, " ");
        esc(b, state);
        if (str(a, "severity")) {
            put(b, " (");
            esc(b, str(a, "severity"));
            put(b, ")");
        }
        put(b, "</title></g>\n");
    }
}

static void svg_steps(struct strbuf *b, const json_t *r, double t1, double top, double bottom)
{
    size_t i;
    const json_t *s;
    double last_label = -1e9;
    json_array_foreach(get(r, "steps"), i, s)
    {
        double st, en;
        if (!numk(s, "start_s", &st))
            continue;
        double x = xof(t1, st);
        put(b, "<g class=\"step-mark\" data-step=\"");
        exact(b, get(s, "index"));
        put(b, "\" data-start=\"");
        exact(b, get(s, "start_s"));
        putf(b, "\"><line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>", x, x, top,
             bottom + 6);
        /* The number only where it does not print over the previous one. */
        if (x - last_label >= 16) {
            put(b, "<text class=\"step-label\" x=\"");
            putf(b, "%.1f\" y=\"%.1f\" text-anchor=\"middle\">", x, bottom + 34);
            exact(b, get(s, "index"));
            put(b, "</text>");
            last_label = x;
        }
        put(b, "<title>step ");
        exact(b, get(s, "index"));
        put(b, ": ");
        esc(b, str(s, "label"));
        if (numk(s, "end_s", &en))
            putf(b, ", %.1f s to %.1f s", st, en);
        else
            putf(b, ", from %.1f s", st);
        put(b, "</title></g>\n");
    }
}

/* Appends name to order[0..*n) unless NULL or there already (the AZs are
 * few; order has room for every candidate). */
static void add_az(const char **order, size_t *n, const char *name)
{
    if (!name)
        return;
    for (size_t i = 0; i < *n; i++)
        if (!strcmp(order[i], name))
            return;
    order[(*n)++] = name;
}

static void svg_timeline(struct strbuf *b, const json_t *r)
{
    const json_t *tl = get(r, "timeline"), *series = get(tl, "series");
    double interval;
    if (!numk(tl, "interval_s", &interval) || !(interval > 0))
        interval = 1;
    if (!json_is_object(series))
        series = NULL;
    double t1 = time_span(r, interval);

    struct panel ok = {"ok", "requests ok per second, by the AZ of the node each was sent to",
                       PANELS_TOP, 200, 0};
    struct panel er = {"errors", "errors per second, by AZ", ok.top + ok.h + PANEL_GAP, 110, 0};
    struct panel lat = {"p99", "p99 latency (ms), by AZ", er.top + er.h + PANEL_GAP, 140, 0};
    ok.ymax = nice_ceil(series_max(series, "ok", interval));
    er.ymax = nice_ceil(series_max(series, "errors", interval));
    lat.ymax = nice_ceil(series_max(series, "p99_ms", 1));
    double bottom = lat.top + lat.h, height = bottom + AXIS_H;

    putf(b,
         "<svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
         "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" data-x0=\"%.0f\" data-x1=\"%.0f\" "
         "data-t1=\"",
         SVG_W, height, SVG_W, height, PX0, PX1);
    exact_d(b, t1);
    putf(b, "\" data-interval=\"");
    exact_d(b, interval);
    put(b, "\" role=\"img\" aria-label=\"timeline of the game day\">\n");
    put(b, "<title>timeline: seconds since the start of the run</title>\n");

    panel_frame(b, &ok, "/s");
    panel_frame(b, &er, "/s");
    panel_frame(b, &lat, " ms");
    if (!series)
        putf(b,
             "<text class=\"no-data\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">no per-AZ "
             "timeline in this report</text>",
             (PX0 + PX1) / 2, ok.top + ok.h / 2);

    /* x axis: ticks at a round step, about a dozen. */
    double step = nice_ceil(t1 / 12);
    put(b, "<g class=\"xaxis\">");
    for (int k = 0; k <= 1000 && k * step <= t1 + 1e-9; k++) {
        double s = k * step, x = xof(t1, s);
        putf(b, "<line class=\"tick\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>", x, x,
             bottom, bottom + 5);
        putf(b,
             "<text class=\"xtick\" data-s=\"%g\" x=\"%.1f\" y=\"%.1f\" "
             "text-anchor=\"middle\">%gs</text>",
             s, x, bottom + 18, s);
    }
    put(b, "</g>\n");

    svg_faults(b, r, t1, bottom);
    svg_steps(b, r, t1, PANELS_TOP, bottom);

    /* The series: the AZs in the report's order (azs), then any other key
     * of series. */
    const json_t *azs = get(tl, "azs");
    size_t cap = json_array_size(azs) + json_object_size(series), n = 0, i;
    const char **order = cap ? malloc(cap * sizeof *order) : NULL;
    if (cap && !order) {
        b->oom = 1;
        return;
    }
    const json_t *v;
    const char *az;
    json_array_foreach(azs, i, v)
        add_az(order, &n, get(series, json_string_value(v)) ? json_string_value(v) : NULL);
    json_object_foreach((json_t *)series, az, v) add_az(order, &n, az);
    for (i = 0; i < n; i++) {
        const char *name = order[i];
        const json_t *s = get(series, name);
        const char *color = palette[i % NPALETTE];
        put(b, "<g class=\"series\" data-az=\"");
        esc(b, name);
        putf(b, "\" data-color=\"%s\"><title>", color);
        esc(b, name);
        put(b, "</title>");
        series_path(b, get(s, "ok"), interval, interval, t1, &ok, color);
        series_path(b, get(s, "errors"), interval, interval, t1, &er, color);
        series_path(b, get(s, "p99_ms"), interval, 1, t1, &lat, color);
        /* The legend, top right of the throughput panel. */
        double ly = ok.top + 14 + (double)i * 14;
        putf(b,
             "<g class=\"legend\"><line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" "
             "stroke=\"%s\" stroke-width=\"3\"/><text x=\"%.1f\" y=\"%.1f\">",
             PX1 - 90, PX1 - 70, ly - 4, ly - 4, color, PX1 - 64, ly);
        esc(b, name);
        put(b, "</text></g></g>\n");
    }
    free(order);

    svg_alarms(b, r, t1, bottom);
    double st;
    const json_t *stop = get(r, "stop");
    if (numk(stop, "at_s", &st)) {
        double x = xof(t1, st);
        put(b, "<g class=\"stop\" data-at=\"");
        exact(b, get(stop, "at_s"));
        putf(b,
             "\"><line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>"
             "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">stop</text><title>stopped at "
             "%.1f s: ",
             x, x, 4.0, bottom, x - 3, 12.0, st);
        esc(b, str(stop, "reason"));
        put(b, "</title></g>\n");
    }
    put(b, "</svg>\n");
}

/* --- the HTML parts --- */

static const char css[] =
    "body{font:14px/1.45 system-ui,-apple-system,'DejaVu Sans',sans-serif;margin:20px 28px;"
    "color:#222}\n"
    "h1{margin:0 0 6px;font-size:22px}h2{margin:26px 0 6px;font-size:18px}"
    "h3{margin:14px 0 4px;font-size:15px}\n"
    "span.verdict,p.verdict{display:inline-block;padding:1px "
    "8px;border-radius:3px;font-weight:bold;"
    "color:#fff}\n"
    "span.verdict.pass,p.verdict.pass{background:#1a7f37}"
    "span.verdict.fail,p.verdict.fail{background:#c62828}\n"
    "p.verdict{font-size:18px;margin:4px 0}\n"
    ".failure{color:#c62828;font-weight:bold}\n"
    "dl.facts{display:grid;grid-template-columns:max-content auto;gap:0 14px;margin:8px 0}"
    "dl.facts dt{color:#666}dl.facts dd{margin:0}\n"
    "table{border-collapse:collapse;margin:6px 0}\n"
    "th,td{border:1px solid #ccc;padding:2px 8px;text-align:left;vertical-align:top}\n"
    "th{background:#f3f3f3}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\n"
    "tr.fail,tr.failed,div.check.fail{background:#ffebee}\n"
    "tr.fail td.verdict,tr.failed td.idx{color:#c62828;font-weight:bold}\n"
    "tr.pass td.verdict{color:#1a7f37}\n"
    "td.none{color:#999}\n"
    "div.check{border:1px solid #ddd;padding:4px 12px;margin:8px 0}\n"
    ":target{outline:2px solid #1565c0}\n"
    "#timeline{display:block;max-width:100%;height:auto;background:#fff}\n"
    "#timeline text{font:11px 'DejaVu Sans',sans-serif;fill:#333}\n"
    "#timeline .panel-title{font-weight:bold}\n"
    "#timeline .frame{fill:none;stroke:#999}\n"
    "#timeline .grid{stroke:#eee}\n"
    "#timeline .tick{stroke:#999}\n"
    "#timeline .fault .window{fill:#ff9800;fill-opacity:.14;stroke:#ef6c00;"
    "stroke-opacity:.55}\n"
    "#timeline .fault-label{fill:#e65100;font-weight:bold}\n"
    "#timeline .step-mark line{stroke:#bbb;stroke-dasharray:2 3}\n"
    "#timeline .step-label{fill:#888}\n"
    "#timeline .alarm line{stroke:#777;stroke-width:1.5}\n"
    "#timeline .alarm[data-state=firing] line{stroke:#d32f2f}\n"
    "#timeline .alarm[data-state=firing] text{fill:#d32f2f}\n"
    "#timeline .alarm[data-state=resolved] line{stroke:#2e7d32;stroke-dasharray:4 2}\n"
    "#timeline .alarm[data-state=resolved] text{fill:#2e7d32}\n"
    "#timeline .stop line{stroke:#000;stroke-width:2}\n"
    "#timeline .no-data{fill:#999}\n";

static void header(struct strbuf *b, const json_t *r)
{
    int passed = json_is_true(get(r, "passed"));
    put(b, "<header>\n<h1>game day <span id=\"name\">");
    esc(b, str(r, "name") ? str(r, "name") : "(unnamed)");
    putf(b, "</span></h1>\n<p id=\"verdict\" class=\"verdict %s\">%s</p>\n",
         passed ? "pass" : "fail", passed ? "PASSED" : "FAILED");
    if (str(r, "failure")) {
        put(b, "<p id=\"failure\" class=\"failure\">run failed: ");
        esc(b, str(r, "failure"));
        put(b, "</p>\n");
    }
    const json_t *stop = get(r, "stop");
    if (json_is_object(stop)) {
        double at;
        put(b, "<p id=\"stop\" class=\"failure\">stopped");
        if (numk(stop, "at_s", &at))
            putf(b, " at %.1f s", at);
        put(b, ": <span class=\"reason\">");
        esc(b, str(stop, "reason"));
        put(b, "</span></p>\n");
    }
    put(b, "<dl class=\"facts\">\n<dt>seed</dt>");
    num_el(b, "dd", "seed", NULL, get(r, "seed"), 0, "", "-");
    double ms;
    put(b, "\n<dt>started</dt><dd id=\"date\">");
    if (numk(r, "t0_wall_ms", &ms)) {
        time_t secs = (time_t)floor(ms / 1000);
        struct tm tm;
        char when[64];
        if (gmtime_r(&secs, &tm) && strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm))
            put(b, when);
    } else
        put(b, "-");
    put(b, "</dd>\n<dt>elapsed</dt>");
    num_el(b, "dd", "elapsed", NULL, get(r, "elapsed_s"), 1, " s", "-");
    put(b, "\n<dt>playbook</dt><dd id=\"playbook\">");
    esc(b, str(r, "playbook"));
    put(b, "</dd>\n<dt>inventory</dt><dd id=\"inventory\">");
    esc(b, str(r, "inventory"));
    put(b, "</dd>\n</dl>\n</header>\n");
}

static void row_num(struct strbuf *b, const char *what, const char *id, const json_t *v,
                    int decimals, const char *suffix, const char *none)
{
    put(b, "<tr><th>");
    put(b, what);
    put(b, "</th>");
    num_el(b, "td", id, "n", v, decimals, suffix, none);
    put(b, "</tr>\n");
}

/* Sums and worst p99 of one AZ's series. */
static void az_totals(struct strbuf *b, const json_t *r)
{
    const json_t *series = get(get(r, "timeline"), "series");
    if (!json_is_object(series) || !json_object_size(series))
        return;
    put(b, "<h3>By AZ (from the timeline)</h3>\n<table id=\"az-totals\"><tr><th>AZ</th>"
           "<th class=\"n\">ok</th><th class=\"n\">errors</th><th class=\"n\">worst p99 "
           "(ms)</th></tr>\n");
    const char *az;
    const json_t *s;
    json_object_foreach((json_t *)series, az, s)
    {
        long long okn = 0, errn = 0;
        double worst = -1, d;
        size_t i;
        const json_t *v;
        json_array_foreach(get(s, "ok"), i, v) okn += (long long)json_number_value(v);
        json_array_foreach(get(s, "errors"), i, v) errn += (long long)json_number_value(v);
        json_array_foreach(get(s, "p99_ms"), i, v) if (num(v, &d) && d > worst) worst = d;
        put(b, "<tr class=\"az\" data-az=\"");
        esc(b, az);
        put(b, "\"><td>");
        esc(b, az);
        putf(b,
             "</td><td class=\"n ok\" data-value=\"%lld\">%lld</td><td class=\"n errors\" "
             "data-value=\"%lld\">%lld</td>",
             okn, okn, errn, errn);
        if (worst >= 0) {
            put(b, "<td class=\"n p99\" data-value=\"");
            exact_d(b, worst);
            putf(b, "\">%.1f</td>", worst);
        } else
            put(b, "<td class=\"n p99 none\">-</td>");
        put(b, "</tr>\n");
    }
    put(b, "</table>\n");
}

static void totals(struct strbuf *b, const json_t *r)
{
    const json_t *t = get(r, "traffic"), *rv = get(r, "recovery"), *c = get(r, "canaries");
    put(b, "<section id=\"totals\">\n<h2>Totals</h2>\n");
    if (json_is_object(t)) {
        put(b, "<h3>Traffic");
        if (str(t, "table")) {
            put(b, " (table <span id=\"traffic-table\">");
            esc(b, str(t, "table"));
            put(b, "</span>)");
        }
        put(b, "</h3>\n<table id=\"traffic\">\n");
        row_num(b, "requests ok", "traffic-ok", get(t, "ok"), 0, "", "-");
        row_num(b, "errors", "traffic-errors", get(t, "errors"), 0, "", "-");
        row_num(b, "rate (requests/s)", "traffic-rate", get(t, "rate"), 1, "", "-");
        if (get(t, "final_keys"))
            row_num(b, "keys read at the end", "traffic-final-keys", get(t, "final_keys"), 0, "",
                    "-");
        if (get(t, "final_failed"))
            row_num(b, "final reads failed", "traffic-final-failed", get(t, "final_failed"), 0, "",
                    "-");
        put(b, "</table>\n");
    } else
        put(b, "<p>No traffic in this run.</p>\n");
    if (json_is_object(rv)) {
        put(b, "<h3>Recovery (fault to the first write to the affected partitions)</h3>\n"
               "<table id=\"recovery\">\n");
        row_num(b, "rounds recovered", "recovery-rounds", get(rv, "rounds"), 0, "", "-");
        row_num(b, "never recovered", "recovery-unrecovered", get(rv, "unrecovered"), 0, "", "-");
        row_num(b, "median", "recovery-median", get(rv, "median_s"), 2, " s", "-");
        row_num(b, "slowest", "recovery-max", get(rv, "max_s"), 2, " s", "-");
        put(b, "</table>\n");
    }
    if (json_is_object(c)) {
        put(b,
            "<h3>Canaries</h3>\n<table id=\"canaries\">\n<tr><th>AZs</th><td id=\"canary-azs\">");
        join(b, get(c, "azs"), ", ");
        put(b, "</td></tr>\n");
        row_num(b, "probes", "canary-probes", get(c, "probes"), 0, "", "-");
        row_num(b, "errors", "canary-errors", get(c, "errors"), 0, "", "-");
        put(b, "</table>\n");
    }
    az_totals(b, r);
    put(b, "</section>\n");
}

static void steps_table(struct strbuf *b, const json_t *r)
{
    const json_t *steps = get(r, "steps");
    put(b, "<section id=\"steps-section\">\n<h2>Steps</h2>\n");
    if (!json_array_size(steps)) {
        put(b, "<p>No steps ran.</p>\n</section>\n");
        return;
    }
    put(b, "<table id=\"steps\"><tr><th class=\"n\">step</th><th class=\"n\">at (s)</th>"
           "<th class=\"n\">until (s)</th><th>what</th><th>kind</th><th>hosts</th><th>mode</th>"
           "<th class=\"n\">ok</th><th class=\"n\">errors</th><th class=\"n\">p99 (ms)</th>"
           "<th class=\"n\">recovery</th><th>error</th></tr>\n");
    size_t i;
    const json_t *s;
    json_array_foreach(steps, i, s)
    {
        int failed = json_is_true(get(s, "failed"));
        const json_t *idx = get(s, "index");
        putf(b, "<tr class=\"step%s\"", failed ? " failed" : "");
        if (json_is_integer(idx))
            putf(b, " id=\"step-%" JSON_INTEGER_FORMAT "\"", json_integer_value(idx));
        put(b, ">");
        num_el(b, "td", NULL, "n idx", idx, 0, "", "-");
        num_el(b, "td", NULL, "n start", get(s, "start_s"), 1, "", "-");
        num_el(b, "td", NULL, "n end", get(s, "end_s"), 1, "", "-");
        put(b, "<td class=\"label\">");
        esc(b, str(s, "label"));
        put(b, "</td><td class=\"kind\">");
        esc(b, str(s, "kind"));
        put(b, "</td><td class=\"hosts\">");
        join(b, get(s, "hosts"), ",");
        put(b, "</td><td class=\"mode\">");
        esc(b, str(s, "mode"));
        put(b, "</td>");
        num_el(b, "td", NULL, "n ok", get(s, "ok"), 0, "", "-");
        num_el(b, "td", NULL, "n errors", get(s, "errors"), 0, "", "-");
        num_el(b, "td", NULL, "n p99", get(s, "p99_ms"), 1, "", "-");
        /* recovery_s: absent = not a fault step; null = never recovered. */
        num_el(b, "td", NULL, "n recovery", get(s, "recovery_s"), 2, " s",
               json_is_null(get(s, "recovery_s")) ? "none" : "-");
        put(b, "<td class=\"error\">");
        if (failed)
            put(b, "FAILED: ");
        esc(b, str(s, "error"));
        put(b, "</td></tr>\n");
    }
    put(b, "</table>\n</section>\n");
}

static void expectations_table(struct strbuf *b, const json_t *r)
{
    const json_t *ex = get(r, "expectations");
    if (!json_is_array(ex))
        return;
    size_t i, n = json_array_size(ex), met = 0;
    const json_t *e;
    json_array_foreach(ex, i, e) met += json_is_true(get(e, "passed"));
    put(b, "<section id=\"expectations-section\">\n<h2>Expectations</h2>\n");
    putf(b, "<p id=\"expectations-summary\" class=\"%s\">%zu of %zu expectations met</p>\n",
         met == n ? "pass" : "failure", met, n);
    if (!n) {
        put(b, "</section>\n");
        return;
    }
    put(b, "<table id=\"expectations\"><tr><th>verdict</th><th>when</th><th>what</th>"
           "<th>detail</th></tr>\n");
    json_array_foreach(ex, i, e)
    {
        int pass = json_is_true(get(e, "passed"));
        const char *phase = str(e, "phase");
        const json_t *step = get(e, "step");
        putf(b, "<tr class=\"expectation %s\" id=\"expectation-%zu\" data-phase=\"",
             pass ? "pass" : "fail", i + 1);
        esc(b, phase);
        put(b, "\"");
        if (json_is_integer(step))
            putf(b, " data-step=\"%" JSON_INTEGER_FORMAT "\"", json_integer_value(step));
        putf(b, "><td class=\"verdict\">%s</td><td class=\"phase\">", pass ? "PASS" : "FAIL");
        if (phase && !strcmp(phase, "step") && json_is_integer(step))
            putf(b, "<a href=\"#step-%" JSON_INTEGER_FORMAT "\">step %" JSON_INTEGER_FORMAT "</a>",
                 json_integer_value(step), json_integer_value(step));
        else if (phase && !strcmp(phase, "steady_state_before"))
            put(b, "steady state before");
        else if (phase && !strcmp(phase, "steady_state_after"))
            put(b, "steady state after");
        else if (phase && !strcmp(phase, "stop_condition"))
            put(b, "stop condition");
        else
            esc(b, phase);
        put(b, "</td><td class=\"what\">");
        esc(b, str(e, "what"));
        put(b, "</td><td class=\"detail\">");
        esc(b, str(e, "detail"));
        put(b, "</td></tr>\n");
    }
    put(b, "</table>\n</section>\n");
}

static void check_checkers(struct strbuf *b, const json_t *c)
{
    if (str(c, "verdict")) {
        put(b, "<p>verdict <b id=\"checkers-verdict\">");
        esc(b, str(c, "verdict"));
        put(b, "</b>; ");
        num_el(b, "span", "checkers-acked", NULL, get(c, "acked_writes"), 0, "", "-");
        put(b, " acknowledged writes, ");
        num_el(b, "span", "checkers-verified", NULL, get(c, "verified_writes"), 0, "", "-");
        put(b, " verified, ");
        num_el(b, "span", "checkers-unverified-keys", NULL, get(c, "unverified_keys"), 0, "", "-");
        put(b, " keys unverified</p>\n");
    }
    const json_t *counts = get(c, "anomalies");
    const char *kind;
    const json_t *v;
    int any = 0;
    json_object_foreach((json_t *)counts, kind, v)
    {
        double d;
        if (!num(v, &d) || d == 0)
            continue;
        if (!any)
            put(b, "<table id=\"anomaly-counts\"><tr><th>anomaly</th><th class=\"n\">count</th>"
                   "</tr>\n");
        any = 1;
        put(b, "<tr data-kind=\"");
        esc(b, kind);
        put(b, "\"><td class=\"kind\">");
        esc(b, kind);
        put(b, "</td>");
        num_el(b, "td", NULL, "n count", v, 0, "", "-");
        put(b, "</tr>\n");
    }
    if (any)
        put(b, "</table>\n");
    else if (json_is_object(counts))
        put(b, "<p id=\"no-anomalies\">No anomalies.</p>\n");
    const json_t *first = get(c, "first");
    if (!json_array_size(first))
        return;
    put(b, "<h3>First anomalies</h3>\n<table id=\"anomalies\"><tr><th>#</th><th>kind</th>"
           "<th>key</th><th>detail</th><th>operation</th></tr>\n");
    size_t i;
    json_array_foreach(first, i, v)
    {
        putf(b, "<tr class=\"anomaly\" id=\"anomaly-%zu\" data-kind=\"", i + 1);
        esc(b, str(v, "kind"));
        putf(b, "\"><td><a href=\"#anomaly-%zu\">#%zu</a></td><td class=\"kind\">", i + 1, i + 1);
        esc(b, str(v, "kind"));
        put(b, "</td><td class=\"key\">");
        scalar(b, get(v, "key"));
        put(b, "</td><td class=\"detail\">");
        esc(b, str(v, "detail"));
        put(b, "</td><td class=\"op\">");
        esc(b, str(v, "op"));
        put(b, "</td></tr>\n");
    }
    put(b, "</table>\n");
}

/* A scrub finding as the lead's report names it ({group, key, node, what})
 * or as `nines scrub --json` does ({table, partition, key, replica, kind}). */
static void check_scrub(struct strbuf *b, const json_t *c)
{
    if (get(c, "partitions") || get(c, "compared")) {
        put(b, "<p>");
        num_el(b, "span", "scrub-compared", NULL, get(c, "compared"), 0, "", "-");
        put(b, " of ");
        num_el(b, "span", "scrub-partitions", NULL, get(c, "partitions"), 0, "", "-");
        put(b, " partitions compared</p>\n");
    }
    const json_t *fs = get(c, "findings"), *f;
    size_t i;
    if (json_array_size(fs)) {
        put(b, "<table id=\"scrub-findings\"><tr><th>#</th><th>group</th><th>key</th>"
               "<th>node</th><th>what</th></tr>\n");
        json_array_foreach(fs, i, f)
        {
            putf(b,
                 "<tr class=\"finding\" id=\"finding-%zu\"><td><a href=\"#finding-%zu\">#%zu</a>"
                 "</td><td class=\"group\">",
                 i + 1, i + 1, i + 1);
            if (get(f, "group"))
                scalar(b, get(f, "group"));
            else if (str(f, "table")) {
                esc(b, str(f, "table"));
                if (json_is_integer(get(f, "partition")))
                    putf(b, "/%" JSON_INTEGER_FORMAT, json_integer_value(get(f, "partition")));
            }
            put(b, "</td><td class=\"key\">");
            scalar(b, get(f, "key"));
            put(b, "</td><td class=\"node\">");
            scalar(b, get(f, "node") ? get(f, "node") : get(f, "replica"));
            put(b, "</td><td class=\"what\">");
            scalar(b, get(f, "what") ? get(f, "what") : get(f, "kind"));
            put(b, "</td></tr>\n");
        }
        put(b, "</table>\n");
    }
    const json_t *und = get(c, "undecided");
    if (json_array_size(und)) {
        put(b, "<table id=\"scrub-undecided\"><tr><th>undecided</th><th>replica</th>"
               "<th>why</th></tr>\n");
        json_array_foreach(und, i, f)
        {
            put(b, "<tr class=\"undecided\"><td>");
            esc(b, str(f, "table"));
            if (json_is_integer(get(f, "partition")))
                putf(b, "/%" JSON_INTEGER_FORMAT, json_integer_value(get(f, "partition")));
            put(b, "</td><td>");
            esc(b, str(f, "replica"));
            put(b, "</td><td>");
            esc(b, str(f, "why"));
            put(b, "</td></tr>\n");
        }
        put(b, "</table>\n");
    }
}

static void verifications(struct strbuf *b, const json_t *r)
{
    const json_t *vf = get(r, "verify");
    put(b, "<section id=\"verify\">\n<h2>Verifications</h2>\n");
    if (!json_is_object(vf) || !json_object_size(vf)) {
        put(b, "<p>No verification ran.</p>\n</section>\n");
        return;
    }
    const char *key;
    const json_t *c;
    json_object_foreach((json_t *)vf, key, c)
    {
        if (!json_is_object(c))
            continue;
        int pass = json_is_true(get(c, "passed"));
        putf(b, "<div class=\"check %s\" id=\"verify-", pass ? "pass" : "fail");
        esc(b, key);
        put(b, "\" data-check=\"");
        esc(b, key);
        put(b, "\"><h3>");
        esc(b, key);
        putf(b, " <span class=\"verdict %s\">%s</span></h3>\n", pass ? "pass" : "fail",
             pass ? "PASS" : "FAIL");
        if (str(c, "detail") && *str(c, "detail")) {
            put(b, "<p class=\"detail\">");
            esc(b, str(c, "detail"));
            put(b, "</p>\n");
        }
        if (str(c, "error")) {
            put(b, "<p class=\"error failure\">");
            esc(b, str(c, "error"));
            put(b, "</p>\n");
        }
        if (!strcmp(key, "checkers"))
            check_checkers(b, c);
        else if (!strcmp(key, "scrub"))
            check_scrub(b, c);
        else if (get(c, "groups")) {
            put(b, "<p>");
            num_el(b, "span", NULL, "groups", get(c, "groups"), 0, "", "-");
            put(b, " groups, ");
            num_el(b, "span", NULL, "led", get(c, "groups_with_leader"), 0, "", "-");
            put(b, " with a leader, ");
            num_el(b, "span", NULL, "full", get(c, "groups_with_3_live"), 0, "", "-");
            put(b, " with 3 live replicas, ");
            num_el(b, "span", NULL, "behind", get(c, "members_behind"), 0, "", "-");
            put(b, " members behind</p>\n");
        }
        put(b, "</div>\n");
    }
    put(b, "</section>\n");
}

static void page(struct strbuf *b, const json_t *r)
{
    int passed = json_is_true(get(r, "passed"));
    put(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
           "<meta name=\"viewport\" content=\"width=device-width\">\n"
           /* Self-contained by rule, not only by construction: the browser
            * refuses any fetch and any script (were a string ever to slip
            * through unescaped, it could not run). */
           "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
           "style-src 'unsafe-inline'\">\n<title>game day ");
    esc(b, str(r, "name"));
    putf(b, ": %s</title>\n<style>\n", passed ? "PASSED" : "FAILED");
    put(b, css);
    put(b, "</style>\n</head>\n<body>\n");
    header(b, r);
    put(b, "<section id=\"timeline-section\">\n<h2>Timeline</h2>\n");
    svg_timeline(b, r);
    put(b, "<p class=\"legend-note\">Shaded: fault windows (kind and hosts above them). "
           "Vertical marks: alarms (red firing, green dashed resolved), step starts (grey "
           "dotted, numbered under the axis), the stop (black). Hover for details.</p>\n"
           "</section>\n");
    totals(b, r);
    steps_table(b, r);
    expectations_table(b, r);
    verifications(b, r);
    put(b, "</body>\n</html>\n");
}

int gd_report_html(const json_t *report, const char *path, struct nerr *err)
{
    struct strbuf b = {0};
    char *text = NULL;
    int rc;
    if (!json_is_object(report))
        return nerr_set(err, NERR_INVALID, "%s: the report is not a JSON object", path);
    page(&b, report);
    if (strbuf_finish(&b, &text)) {
        rc = nerr_set(err, NERR_NOMEM, "%s: out of memory building the page", path);
        goto out;
    }
    rc = fs_write_file_atomic(path, text, strlen(text), err);
out:
    free(text);
    return rc;
}
