/*
 * load_cli.c — `nines load`: parse, run, print. Contract in load/load.h.
 */
#include <stdio.h>
#include <stdlib.h>

#include <curl/curl.h>

#include "load/load.h"
#include "net/http.h"

int load_main(int argc, char **argv)
{
    struct load_opts o;
    struct nerr e;
    nerr_clear(&e);
    if (load_opts_parse(argc, argv, &o, &e)) {
        fprintf(stderr, "nines load: %s\n(see nines load --help)\n", e.msg);
        return 2;
    }
    if (o.help) {
        load_usage(stdout);
        load_opts_free(&o);
        return 0;
    }
    if (http_global_init()) {
        fprintf(stderr, "nines load: cannot initialise libcurl\n");
        load_opts_free(&o);
        return 1;
    }
    struct load_stats *st = malloc(sizeof *st);
    int rc = 1;
    if (!st) {
        fprintf(stderr, "nines load: out of memory\n");
        goto done;
    }
    if (!o.json)
        fprintf(stderr,
                "nines load: %s%s, %s loop, %u connections, %zu endpoint(s), table %s, %s\n",
                o.target == LOAD_TARGET_ETCD ? "etcd " : "",
                o.mix == LOAD_MIX_PUT   ? "put"
                : o.mix == LOAD_MIX_GET ? "get"
                                        : "mix",
                o.rate > 0 ? "open" : "closed", o.concurrency, o.nendpoints ? o.nendpoints : 1,
                o.table, o.akid[0] ? "SigV4-signed" : "unsigned");
    if (load_run(&o, st, NULL, &e)) {
        fprintf(stderr, "nines load: %s\n", e.msg);
        goto done;
    }
    if (o.json) {
        if (load_stats_print_json(st, &o, stdout)) {
            fprintf(stderr, "nines load: out of memory\n");
            goto done;
        }
    } else {
        load_stats_print(st, stdout);
    }
    rc = 0;
done:
    free(st);
    load_opts_free(&o);
    curl_global_cleanup();
    return rc;
}
