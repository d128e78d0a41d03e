/*
 * labfs_torn.c — `torn`: a pending multi-page write survives partially, at
 * 4 KiB page granularity only (every page wholly old or wholly new), the
 * choice is reproducible from the mount's seed, pages past the durable size
 * never survive, and the counters add up.
 */
#include "t/labfs/labfs_fx.h"

#define PG LABFS_PAGE
#define NP 32 /* pages of the aligned file */
#define NU 8  /* pages of the unaligned file */

static unsigned char oldb(int page)
{
    return (unsigned char)(0x10 + page);
}

static unsigned char newb(int page)
{
    return (unsigned char)(0x80 + page);
}

static int put(const char *path, const unsigned char *buf, size_t len, off_t off, int sync)
{
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    if (fd < 0)
        return -1;
    int rc = pwrite(fd, buf, len, off) == (ssize_t)len ? 0 : -1;
    if (!rc && sync)
        rc = fsync(fd);
    close(fd);
    return rc;
}

/* Runs the scenario on a fresh mount with seed; returns the bitmask of the
 * aligned file's pages that survived (bit i = page i is new), or ~0u. */
static uint64_t scenario(uint64_t seed)
{
    static unsigned char buf[NP * PG], got[NP * PG + 1];
    char r[512];
    unlink(B("t"));
    unlink(B("u"));
    unlink(B("a"));
    if (fx_mount(seed))
        return ~0ull;
    /* Durable starting point. */
    for (int i = 0; i < NP; i++)
        memset(buf + i * PG, oldb(i), PG);
    int rc = put(M("t"), buf, NP * PG, 0, 1) | put(M("u"), buf, NU * PG, 0, 1) |
             put(M("a"), buf, PG, 0, 1) | fx_fsync_path(M(""));
    ok(!rc, "seed %llu: durable files t (32 pages), u (8 pages), a (1 page)",
       (unsigned long long)seed);
    /* Pending writes: t whole (one pwrite), u unaligned (bytes 100 .. 3 pages
     * later), a appended by two pages. */
    for (int i = 0; i < NP; i++)
        memset(buf + i * PG, newb(i), PG);
    unsigned char nb[3 * PG];
    memset(nb, 0xEE, sizeof nb);
    rc = put(M("t"), buf, NP * PG, 0, 0) | put(M("u"), nb, sizeof nb, 100, 0) |
         put(M("a"), buf, 2 * PG, PG, 0);
    ok(!rc, "pending writes on t, u (unaligned) and a (append)");
    uint64_t kept = 0, lost = 0, dropped = 0;
    ok(!fx_ctl("torn", r, sizeof r) && !labfs_reply_u64(r, "torn_pages_kept", &kept) &&
           !labfs_reply_u64(r, "torn_pages_lost", &lost) &&
           !labfs_reply_u64(r, "dropped_bytes", &dropped),
       "torn: %s", r);

    /* The aligned file: each page wholly old or wholly new. */
    uint64_t mask = 0;
    int whole = 1, nnew = 0;
    long l = fx_read(B("t"), (char *)got, sizeof got);
    for (int i = 0; i < NP && l == NP * PG; i++) {
        int allnew = 1, allold = 1;
        for (int j = 0; j < PG; j++) {
            allnew &= got[i * PG + j] == newb(i);
            allold &= got[i * PG + j] == oldb(i);
        }
        whole &= allnew || allold;
        if (allnew) {
            mask |= 1ull << i;
            nnew++;
        }
    }
    is_int(l, NP * PG, "t keeps its size");
    ok(whole, "t: every page is wholly old or wholly new (never torn inside a page)");
    ok(nnew > 0 && nnew < NP, "t: some pages new, some old (%d of %d new)", nnew, NP);

    /* The unaligned file: each page is its old bytes or old+new merged as
     * the write left the page (a page is written whole or not at all). */
    int unew = 0, uwhole = 1;
    l = fx_read(B("u"), (char *)got, sizeof got);
    for (int i = 0; i < NU && l == NU * PG; i++) {
        int isold = 1, ismerged = 1;
        for (int j = 0; j < PG; j++) {
            long off = (long)i * PG + j;
            unsigned char merged = off >= 100 && off < 100 + 3 * PG ? 0xEE : oldb(i);
            isold &= got[off] == oldb(i);
            ismerged &= got[off] == merged;
        }
        uwhole &= isold || ismerged;
        unew += ismerged && !isold;
    }
    is_int(l, NU * PG, "u keeps its size");
    ok(uwhole, "u: every page is its old bytes or the whole merged page (%d of 4 touched new)",
       unew);

    /* The append: past the durable size, nothing survives. */
    l = fx_read(B("a"), (char *)got, sizeof got);
    ok(l == PG && got[0] == oldb(0) && got[PG - 1] == oldb(0),
       "a: the appended pages do not survive (size is metadata)");
    is_int(kept, (uint64_t)(nnew + unew), "torn_pages_kept = pages that survived");
    is_int(kept + lost, NP + 4 + 2, "kept + lost = every dirty page (32 + 4 + 2)");
    is_int(dropped, (NP + 4 + 2 - kept) * PG, "dropped_bytes = the lost pages");

    /* After a remount the view is exactly the backing. */
    static unsigned char view[NP * PG + 1];
    ok(!fx_umount() && !fx_mount(seed), "remount");
    long lv = fx_read(M("t"), (char *)view, sizeof view);
    l = fx_read(B("t"), (char *)got, sizeof got);
    ok(lv == l && !memcmp(view, got, (size_t)l), "the view after remount is the backing");
    ok(!fx_umount(), "unmount");
    return mask;
}

int main(void)
{
    fx_init("labfs-torn");
    uint64_t a = scenario(7);
    uint64_t b = scenario(7);
    uint64_t c = scenario(8);
    diag("surviving pages of t: seed 7 %#llx, again %#llx, seed 8 %#llx", (unsigned long long)a,
         (unsigned long long)b, (unsigned long long)c);
    ok(a == b, "the same seed and writes tear the same pages");
    ok(a != c, "another seed tears other pages");
    return done_testing();
}
