/*
 * fuzz_catalog — libFuzzer target for the catalog sync's decode
 * (catalog_descs_decode, store/catalog.h): the NinesAdmin.Catalog reply a
 * node fetches from a metadata member, which it must not trust. An input is
 * the reply body. Checked:
 *   - no crash, leak or out-of-bounds read (ASan/LSan/UBSan);
 *   - every description it keeps has a table id catalog_table_id_ok accepts,
 *     so no path built from it can leave the data directory, and decoding
 *     what it kept keeps all of it (the check is stable).
 *
 *   make fuzz
 *   build-fuzz/bin/fuzz_catalog -max_total_time=60 fuzz/corpus/fuzz_catalog
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "store/catalog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        log_init("fuzz", LOG_QUIET); /* refusals are logged as warnings */
        ready = 1;
    }
    json_t *out = NULL;
    struct nerr err = {0};
    if (catalog_descs_decode((const char *)data, size, &out, &err))
        return 0;
    size_t i;
    json_t *d;
    json_array_foreach(out, i, d)
    {
        const char *id = json_string_value(json_object_get(d, "TableId"));
        if (!id || !catalog_table_id_ok(id, NULL) || !catalog_path_name_ok(id)) {
            fprintf(stderr, "kept a table with id '%s'\n", id ? id : "(none)");
            abort();
        }
    }
    json_t *wrap = json_pack("{s:O}", "tables", out);
    char *again = json_dumps(wrap, JSON_COMPACT);
    json_t *out2 = NULL;
    if (!again || catalog_descs_decode(again, strlen(again), &out2, &err) ||
        json_array_size(out2) != json_array_size(out)) {
        fprintf(stderr, "decoding the kept descriptions again did not keep them all\n");
        abort();
    }
    free(again);
    json_decref(out2);
    json_decref(wrap);
    json_decref(out);
    return 0;
}
