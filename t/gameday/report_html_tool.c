/*
 * report_html_tool.c — not a test by itself: `report_html_tool REPORT.json
 * OUT.html` runs gd_report_html (gameday/report_html.h) on a report file,
 * so that t/gameday/report_html_chromium.t can render the page. Exit 0, or
 * 1 with the reason on stderr.
 */
#include "gameday/report_html.h"

#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s REPORT.json OUT.html\n", argv[0]);
        return 2;
    }
    json_error_t je;
    json_t *r = json_load_file(argv[1], 0, &je);
    if (!r) {
        fprintf(stderr, "%s:%d:%d: %s\n", argv[1], je.line, je.column, je.text);
        return 1;
    }
    struct nerr e = {0};
    int rc = gd_report_html(r, argv[2], &e);
    json_decref(r);
    if (rc) {
        fprintf(stderr, "%s: %s\n", nerr_name(rc), e.msg);
        return 1;
    }
    return 0;
}
