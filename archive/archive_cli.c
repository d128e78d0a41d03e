/*
 * archive_cli.c — `nines archive ls|verify URL` (archive.h).
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "archive/archive.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: nines archive ls URL [--json]\n"
               "       nines archive verify URL [--json FILE]\n"
               "\n"
               "URL is file:///absolute/dir or sftp://user@host[:port]/absolute/dir (the key and\n"
               "known_hosts from $NINES_ARCHIVE_SSH_KEY, $NINES_ARCHIVE_KNOWN_HOSTS; docs/archive.md).\n"
               "  ls      what is archived per group (table, partition): log ranges, entries,\n"
               "          snapshots, bytes, the oldest index the archive can rebuild from\n"
               "  verify  proves every manifest (object present, size, SHA-256, every entry's\n"
               "          checksum, group and range) and every group's log (no gap, no\n"
               "          overlap, something to rebuild from); names every problem\n"
               "\n"
               "Exit status: 0 verified (ls: listed), 1 problems found, 2 bad usage or an\n"
               "archive that cannot be read.\n");
}

static void print_groups(const json_t *rep)
{
    size_t i;
    json_t *g;
    printf("%-28s %-16s %5s %8s %22s %10s %12s %s\n", "group", "table", "part", "pieces",
           "entries (first..last)", "snapshots", "bytes", "restorable from");
    json_array_foreach(json_object_get(rep, "groups"), i, g)
    {
        char range[64] = "-";
        if (json_is_integer(json_object_get(g, "first")))
            snprintf(range, sizeof range, "%lld (%lld..%lld)",
                     (long long)json_integer_value(json_object_get(g, "entries")),
                     (long long)json_integer_value(json_object_get(g, "first")),
                     (long long)json_integer_value(json_object_get(g, "last")));
        long long rf = json_integer_value(json_object_get(g, "restorable_from"));
        char rfs[32];
        snprintf(rfs, sizeof rfs, rf < 0 ? "nowhere" : "index %lld", rf);
        const char *t = json_string_value(json_object_get(g, "table"));
        printf("%-28s %-16s %5lld %8lld %22s %10zu %12lld %s\n",
               json_string_value(json_object_get(g, "group")), t ? t : "?",
               (long long)json_integer_value(json_object_get(g, "partition")),
               (long long)json_integer_value(json_object_get(g, "pieces")), range,
               json_array_size(json_object_get(g, "snapshots")),
               (long long)json_integer_value(json_object_get(g, "bytes")), rfs);
    }
}

int archive_main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    int ls = !strcmp(cmd, "ls"), verify = !strcmp(cmd, "verify");
    if (!ls && !verify) {
        fprintf(stderr, "nines archive: unknown command '%s' (ls or verify)\n", cmd);
        usage(stderr);
        return 2;
    }
    const char *url = NULL, *json_file = NULL;
    int json_out = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && verify && i + 1 < argc)
            json_file = argv[++i];
        else if (!strcmp(argv[i], "--json") && ls)
            json_out = 1;
        else if (argv[i][0] != '-' && !url)
            url = argv[i];
        else {
            fprintf(stderr, "nines archive %s: unexpected argument '%s'\n", cmd, argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!url) {
        fprintf(stderr, "nines archive %s: an archive URL is required\n", cmd);
        return 2;
    }
    struct archive *a = NULL;
    struct nerr e = {0};
    json_t *rep = NULL;
    if (archive_open(url, 0, &a, &e) || archive_verify(a, &rep, &e)) {
        fprintf(stderr, "nines archive %s: %s\n", cmd, e.msg);
        archive_close(a);
        return 2;
    }
    archive_close(a);
    int ok = json_is_true(json_object_get(rep, "ok"));
    if (ls && json_out) {
        json_dumpf(rep, stdout, JSON_INDENT(1) | JSON_SORT_KEYS);
        fputc('\n', stdout);
    } else {
        print_groups(rep);
    }
    size_t i;
    json_t *p;
    size_t np = json_array_size(json_object_get(rep, "problems"));
    size_t ni = json_array_size(json_object_get(rep, "incomplete"));
    if (verify) {
        json_array_foreach(json_object_get(rep, "problems"), i, p)
            printf("PROBLEM %s: %s (expected %s; found %s)\n",
                   json_string_value(json_object_get(p, "object")),
                   json_string_value(json_object_get(p, "problem")),
                   json_string_value(json_object_get(p, "expected")),
                   json_string_value(json_object_get(p, "found")));
        json_array_foreach(json_object_get(rep, "incomplete"), i, p)
            printf("INCOMPLETE %s: an upload that did not finish (no manifest vouches for it; "
                   "not counted)\n",
                   json_string_value(p));
        printf("%s: %lld object(s), %zu group(s), %zu problem(s), %zu incomplete upload(s): %s\n",
               url, (long long)json_integer_value(json_object_get(rep, "objects")),
               json_array_size(json_object_get(rep, "groups")), np, ni,
               ok ? "VERIFIED" : "PROBLEMS");
        if (json_file && json_dump_file(rep, json_file, JSON_INDENT(1) | JSON_SORT_KEYS)) {
            fprintf(stderr, "nines archive verify: cannot write %s\n", json_file);
            json_decref(rep);
            return 2;
        }
    }
    json_decref(rep);
    return verify && !ok ? 1 : 0;
}
