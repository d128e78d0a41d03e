/*
 * bit_rot_main.c — ninesd-bitrot, the host-side half of the bit_rot fault
 * kind (fault/bit_rot.c): flips one bit in the stored bytes of N items of a
 * STOPPED node's LMDB environment, without LMDB's write path.
 *
 *   ninesd-bitrot --env DATA/store/state [--table T] [--items N]
 *
 * Why a tool on the host: an item's place in data.mdb is known only to
 * LMDB, and the data file lives on the host. The fault kind uploads this
 * binary next to ninesd (it needs liblmdb and libjansson, which ninesd
 * needs too) and runs it over SSH between stopping and restarting ninesd.
 *
 * What it does:
 *  1. refuses when any process has the environment open (LMDB holds a
 *     shared fcntl lock on byte 0 of lock.mdb for as long as an
 *     environment is open; F_GETLK sees it), so a running ninesd is never
 *     written under;
 *  2. opens the environment read-only, reads the catalog (`_catalog`:
 *     table name -> description, store/state.h), and counts the items of
 *     every partition database (`p.TABLEID.I`, store/catalog.c) this node
 *     holds, of --table or of every table;
 *  3. picks N items spread evenly over them in (table, partition, key)
 *     order (deterministic: the same data gives the same items), and for
 *     each the byte to flip: the last ASCII letter inside a JSON string
 *     value of a non-key attribute whose bit 0 flipped is still a letter
 *     (so the item still parses and keeps its shape; a digit, then a key
 *     attribute, then the value's last byte when there is no such letter).
 *     The byte's offset in data.mdb is its address in LMDB's read-only map
 *     minus the map's start (found in /proc/self/maps by the file's device
 *     and inode): mdb_get's value points into the map, which maps the file
 *     from offset 0;
 *  4. closes the environment, then pread()s each byte to check it, pwrite()s
 *     it with bit 0 flipped and fdatasync()s the file;
 *  5. opens the environment again and checks that mdb_get now returns the
 *     flipped byte (the live copy was hit, LMDB's structure is intact).
 * Nothing but those bytes changes: the partition's maintained digest
 * (`_digest`) still describes the old bytes, which is what bit rot at rest
 * looks like to ninesd and what `nines scrub --deep` finds.
 *
 * Output: one JSON object per corrupted item on stdout,
 *   {"table":"t","partition":0,"key":{"pk":{"S":"k1"}},"key_bytes":"hex",
 *    "attribute":"v","offset":12345,"was":"R","now":"S"}
 * A line is printed as soon as its byte is written, so that a failure
 * later (fdatasync, the read-back) still names every byte that changed.
 * Exit status: 0 done (flipped, durable, read back), 1 failed (a message on
 * stderr), 2 bad usage.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define MAX_ITEMS 100
#define MAX_PARTS 4096

struct part {
    char table[256];
    char dbname[160];
    int index;
    char hash_name[256], range_name[256]; /* range_name "" when none */
    size_t entries;
};

struct pick {
    const struct part *p;
    size_t pos; /* within the partition, in key order */
    unsigned char *key;
    size_t klen;
    size_t at; /* offset of the byte within the value */
    unsigned char was;
    uint64_t off; /* in data.mdb */
    char attr[256];
    json_t *keyj;
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ninesd-bitrot: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* 1 when some process has the environment in dir open (see above). */
static int env_in_use(const char *dir, long *pid)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/lock.mdb", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0; /* no lock file: nobody has it open (LMDB creates it at open) */
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    int busy = fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
    *pid = busy ? (long)fl.l_pid : 0;
    close(fd);
    return busy;
}

static int flippable(unsigned char c, int letters)
{
    unsigned char f = c ^ 1;
    if (c >= 0x80)
        return 0;
    return letters ? isalpha(c) && isalpha(f) : isalnum(c) && isalnum(f);
}

/* Chooses the byte of v to flip (see the header) and names its attribute.
 * A small scanner over the item's compact JSON: member names are skipped,
 * escapes too; only bytes of string values count. */
static size_t choose_byte(const unsigned char *v, size_t n, const struct part *pt, char *attr,
                          size_t cap)
{
    /* best[rank]: rank 0 letter in a non-key attribute, 1 digit in one,
     * 2 letter in a key attribute, 3 digit in one. */
    size_t best[4];
    char bname[4][256];
    int have[4] = {0, 0, 0, 0};
    char stack[64];
    int d = 0, want_name = 0, in = 0, isname = 0;
    char cur[256] = "", name[256];
    size_t nl = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = v[i];
        if (in) {
            if (c == '\\') {
                i += i + 1 < n && v[i + 1] == 'u' ? 5 : 1;
                continue;
            }
            if (c == '"') {
                in = 0;
                if (isname && d == 1) {
                    name[nl] = 0;
                    snprintf(cur, sizeof cur, "%s", name);
                }
                continue;
            }
            if (isname) {
                if (d == 1 && nl + 1 < sizeof name)
                    name[nl++] = (char)c;
                continue;
            }
            if (d < 2)
                continue;
            int key =
                !strcmp(cur, pt->hash_name) || (pt->range_name[0] && !strcmp(cur, pt->range_name));
            for (int letters = 1; letters >= 0; letters--) {
                if (!flippable(c, letters))
                    continue;
                int r = (key ? 2 : 0) + (letters ? 0 : 1);
                best[r] = i;
                have[r] = 1;
                snprintf(bname[r], sizeof bname[r], "%s", cur);
                break;
            }
            continue;
        }
        switch (c) {
        case '"':
            in = 1;
            isname = d > 0 && stack[d - 1] == '{' && want_name;
            nl = 0;
            break;
        case '{':
        case '[':
            if (d < (int)sizeof stack)
                stack[d++] = (char)c;
            want_name = c == '{';
            break;
        case '}':
        case ']':
            if (d > 0)
                d--;
            want_name = 0;
            break;
        case ':':
            want_name = 0;
            break;
        case ',':
            want_name = d > 0 && stack[d - 1] == '{';
            break;
        default:
            break;
        }
    }
    for (int r = 0; r < 4; r++)
        if (have[r]) {
            snprintf(attr, cap, "%s", bname[r]);
            return best[r];
        }
    snprintf(attr, cap, "%s", "");
    return n - 1;
}

/* The key attributes of the item, from its stored JSON (NULL if it does not
 * parse). */
static json_t *key_of(const MDB_val *v, const struct part *pt)
{
    json_t *item = json_loadb(v->mv_data, v->mv_size, 0, NULL);
    if (!item)
        return NULL;
    json_t *k = json_object();
    json_t *h = json_object_get(item, pt->hash_name);
    if (h)
        json_object_set(k, pt->hash_name, h);
    if (pt->range_name[0] && (h = json_object_get(item, pt->range_name)))
        json_object_set(k, pt->range_name, h);
    json_decref(item);
    return k;
}

static int open_env(const char *dir, MDB_env **env)
{
    int rc;
    if ((rc = mdb_env_create(env)) || (rc = mdb_env_set_maxdbs(*env, MAX_PARTS + 64)) ||
        (rc = mdb_env_open(*env, dir, MDB_RDONLY | MDB_NORDAHEAD, 0644))) {
        die("opening the environment %s: %s", dir, mdb_strerror(rc));
        if (*env)
            mdb_env_close(*env);
        *env = NULL;
        return -1;
    }
    return 0;
}

/* The partitions of the catalog's tables (only --table when given) that
 * this environment holds, in table-name then index order. */
/* One table's description (as the catalog keeps it: TableName, TableId,
 * Partitions, KeySchema): its partitions this environment holds. */
static void add_table(MDB_txn *txn, const char *tname, json_t *desc, struct part *parts,
                      size_t *np);

/* The tables of a catalog file ({"tables": [desc, ...]}, what
 * NinesAdmin.Catalog answers): a node outside the metadata group keeps no
 * catalog of its own in LMDB, so the fault hands it the cluster's. */
static int list_parts_file(MDB_txn *txn, const char *file, const char *only, struct part *parts,
                           size_t *np)
{
    json_error_t je;
    json_t *root = json_load_file(file, 0, &je);
    if (!root) {
        die("%s:%d:%d: %s", file, je.line, je.column, je.text);
        return -1;
    }
    int found = 0;
    size_t i;
    json_t *d;
    *np = 0;
    json_array_foreach(json_object_get(root, "tables"), i, d)
    {
        const char *tname = json_string_value(json_object_get(d, "TableName"));
        if (!tname || (only && strcmp(only, tname)))
            continue;
        found = 1;
        add_table(txn, tname, d, parts, np);
    }
    json_decref(root);
    if (only && !found) {
        die("no table '%s' in the catalog %s", only, file);
        return -1;
    }
    return 0;
}

static int list_parts(MDB_txn *txn, const char *only, const char *catalog_file, struct part *parts,
                      size_t *np)
{
    MDB_dbi cat;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_dbi_open(txn, "_catalog", 0, &cat);
    if (rc && catalog_file)
        return list_parts_file(txn, catalog_file, only, parts, np);
    if (rc) {
        die("no catalog in the environment: %s", mdb_strerror(rc));
        return -1;
    }
    if ((rc = mdb_cursor_open(txn, cat, &cur)))
        return -1;
    *np = 0;
    int found = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !rc;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        char tname[256];
        snprintf(tname, sizeof tname, "%.*s", (int)k.mv_size, (const char *)k.mv_data);
        if (only && strcmp(only, tname))
            continue;
        found = 1;
        json_t *desc = json_loadb(v.mv_data, v.mv_size, 0, NULL);
        add_table(txn, tname, desc, parts, np);
        json_decref(desc);
    }
    mdb_cursor_close(cur);
    if ((!found || !*np) && catalog_file) /* not a metadata replica: the cluster's catalog */
        return list_parts_file(txn, catalog_file, only, parts, np);
    if (only && !found) {
        die("no table '%s' in this node's catalog", only);
        return -1;
    }
    return 0;
}

static void add_table(MDB_txn *txn, const char *tname, json_t *desc, struct part *parts, size_t *np)
{
    MDB_dbi dbi;
    const char *id = json_string_value(json_object_get(desc, "TableId"));
    json_int_t n = json_integer_value(json_object_get(desc, "Partitions"));
    json_t *ks = json_object_get(desc, "KeySchema");
    struct part proto = {0};
    size_t i;
    json_t *e;
    json_array_foreach(ks, i, e)
    {
        const char *an = json_string_value(json_object_get(e, "AttributeName"));
        const char *kt = json_string_value(json_object_get(e, "KeyType"));
        if (an && kt && !strcmp(kt, "HASH"))
            snprintf(proto.hash_name, sizeof proto.hash_name, "%s", an);
        else if (an && kt && !strcmp(kt, "RANGE"))
            snprintf(proto.range_name, sizeof proto.range_name, "%s", an);
    }
    snprintf(proto.table, sizeof proto.table, "%s", tname);
    for (json_int_t p = 0; id && p < n && p < MAX_PARTS && *np < MAX_PARTS; p++) {
        struct part *pt = &parts[*np];
        *pt = proto;
        pt->index = (int)p;
        snprintf(pt->dbname, sizeof pt->dbname, "p.%s.%d", id, (int)p);
        if (mdb_dbi_open(txn, pt->dbname, 0, &dbi))
            continue; /* no replica of it here */
        MDB_stat st;
        if (mdb_stat(txn, dbi, &st) || !st.ms_entries)
            continue;
        pt->entries = st.ms_entries;
        (*np)++;
    }
}

/* Where this process maps data.mdb (the mapping of file offset 0 whose
 * device and inode are the file's), from /proc/self/maps: LMDB does not say
 * (mdb_env_info's me_mapaddr is the address a MDB_FIXEDMAP environment asked
 * for, NULL otherwise). */
static int map_of(const char *path, const unsigned char **base, uint64_t *len)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        die("%s: %s", path, strerror(errno));
        return -1;
    }
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) {
        die("/proc/self/maps: %s", strerror(errno));
        return -1;
    }
    char line[8192];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long long lo, hi, off, ino;
        unsigned maj, mnr;
        if (sscanf(line, "%llx-%llx %*s %llx %x:%x %llu", &lo, &hi, &off, &maj, &mnr, &ino) != 6)
            continue;
        if (off == 0 && ino == (unsigned long long)st.st_ino && maj == major(st.st_dev) &&
            mnr == minor(st.st_dev)) {
            *base = (const unsigned char *)(uintptr_t)lo;
            *len = hi - lo;
            found = 1;
        }
    }
    fclose(f);
    if (!found)
        die("%s is not mapped (is it the environment's data file?)", path);
    return found ? 0 : -1;
}

/* Finds the picks' keys and bytes in one read transaction. */
static int locate(const char *dir, MDB_txn *txn, struct pick *pk, size_t n)
{
    char path[4096];
    const unsigned char *base;
    uint64_t maplen;
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    if (map_of(path, &base, &maplen))
        return -1;
    for (size_t i = 0; i < n; i++) {
        MDB_dbi dbi;
        MDB_cursor *cur;
        MDB_val k, v;
        if (mdb_dbi_open(txn, pk[i].p->dbname, 0, &dbi) || mdb_cursor_open(txn, dbi, &cur))
            return -1;
        int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        for (size_t j = 0; !rc && j < pk[i].pos; j++)
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        mdb_cursor_close(cur);
        if (rc || !v.mv_size) {
            die("walking %s: %s", pk[i].p->dbname, rc ? mdb_strerror(rc) : "empty value");
            return -1;
        }
        if (!(pk[i].key = malloc(k.mv_size)))
            return -1;
        memcpy(pk[i].key, k.mv_data, k.mv_size);
        pk[i].klen = k.mv_size;
        pk[i].keyj = key_of(&v, pk[i].p);
        pk[i].at = choose_byte(v.mv_data, v.mv_size, pk[i].p, pk[i].attr, sizeof pk[i].attr);
        const unsigned char *b = (const unsigned char *)v.mv_data + pk[i].at;
        if (b < base || (uint64_t)(b - base) >= maplen) {
            die("an item of %s lies outside the map", pk[i].p->dbname);
            return -1;
        }
        pk[i].was = *b;
        pk[i].off = (uint64_t)(b - base);
    }
    return 0;
}

static void print_pick(const struct pick *p)
{
    char hex[2 * 1024 + 1];
    size_t l = p->klen < 1024 ? p->klen : 1024;
    for (size_t i = 0; i < l; i++)
        snprintf(hex + 2 * i, 3, "%02x", p->key[i]);
    hex[2 * l] = 0;
    char was[2] = {(char)p->was, 0}, now[2] = {(char)(p->was ^ 1), 0};
    json_t *o = json_pack("{s:s,s:i,s:O?,s:s,s:s,s:I,s:s,s:s}", "table", p->p->table, "partition",
                          p->p->index, "key", p->keyj, "key_bytes", hex, "attribute", p->attr,
                          "offset", (json_int_t)p->off, "was", was, "now", now);
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (s)
        printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(o);
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *table = NULL, *catalog = NULL;
    long items = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--env") && i + 1 < argc) {
            dir = argv[++i];
        } else if (!strcmp(argv[i], "--table") && i + 1 < argc) {
            table = argv[++i];
        } else if (!strcmp(argv[i], "--catalog") && i + 1 < argc) {
            catalog = argv[++i];
        } else if (!strcmp(argv[i], "--items") && i + 1 < argc) {
            char *end;
            items = strtol(argv[++i], &end, 10);
            if (*end || items < 1 || items > MAX_ITEMS) {
                die("--items must be 1..100, got '%s'", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr,
                    "usage: ninesd-bitrot --env DIR [--table T] [--items N] [--catalog FILE]\n"
                    "Flips one bit in each of N items of a stopped node's LMDB\n"
                    "environment (DIR = DATA/store/state). See fault/bit_rot_main.c.\n");
            return 2;
        }
    }
    if (!dir) {
        die("--env DIR is required");
        return 2;
    }
    long holder = 0;
    if (env_in_use(dir, &holder)) {
        die("the environment %s is open (pid %ld): stop ninesd first", dir, holder);
        return 1;
    }
    static struct part parts[MAX_PARTS];
    static struct pick pk[MAX_ITEMS];
    size_t np = 0, n = 0, total = 0;
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    int fd = -1, status = 1;
    if (open_env(dir, &env))
        return 1;
    if (mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) || list_parts(txn, table, catalog, parts, &np))
        goto out;
    for (size_t i = 0; i < np; i++)
        total += parts[i].entries;
    if (!total) {
        die("no item to corrupt%s%s", table ? " in table " : "", table ? table : "");
        goto out;
    }
    n = (size_t)items < total ? (size_t)items : total;
    /* Item g of the concatenation (table, partition, key order) for
     * g = (2j + 1) * total / (2n): spread out, distinct since n <= total. */
    for (size_t j = 0; j < n; j++) {
        size_t g = (2 * j + 1) * total / (2 * n), i = 0;
        while (g >= parts[i].entries)
            g -= parts[i++].entries;
        pk[j].p = &parts[i];
        pk[j].pos = g;
    }
    if (locate(dir, txn, pk, n))
        goto out;
    mdb_txn_abort(txn);
    txn = NULL;
    mdb_env_close(env);
    env = NULL;

    char path[4096];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    if ((fd = open(path, O_RDWR | O_CLOEXEC)) < 0) {
        die("opening %s: %s", path, strerror(errno));
        goto out;
    }
    for (size_t j = 0; j < n; j++) {
        unsigned char b;
        if (pread(fd, &b, 1, (off_t)pk[j].off) != 1 || b != pk[j].was) {
            die("%s: the byte at an item's offset is not the one LMDB showed", path);
            goto out;
        }
        b ^= 1;
        if (pwrite(fd, &b, 1, (off_t)pk[j].off) != 1) {
            die("writing %s: %s", path, strerror(errno));
            goto out;
        }
        print_pick(&pk[j]);
    }
    if (fdatasync(fd) != 0) {
        die("fdatasync %s: %s", path, strerror(errno));
        goto out;
    }
    close(fd);
    fd = -1;

    /* Read back through LMDB: the live copy holds the flipped byte. */
    if (open_env(dir, &env) || mdb_txn_begin(env, NULL, MDB_RDONLY, &txn))
        goto out;
    for (size_t j = 0; j < n; j++) {
        MDB_dbi dbi;
        MDB_val k = {pk[j].klen, pk[j].key}, v;
        if (mdb_dbi_open(txn, pk[j].p->dbname, 0, &dbi) || mdb_get(txn, dbi, &k, &v) ||
            v.mv_size <= pk[j].at || ((unsigned char *)v.mv_data)[pk[j].at] != (pk[j].was ^ 1)) {
            die("%s: an item does not read back flipped through LMDB", dir);
            goto out;
        }
    }
    status = 0;
out:
    if (fd >= 0)
        close(fd);
    if (txn)
        mdb_txn_abort(txn);
    if (env)
        mdb_env_close(env);
    for (size_t j = 0; j < n; j++) {
        free(pk[j].key);
        json_decref(pk[j].keyj);
    }
    return status;
}
