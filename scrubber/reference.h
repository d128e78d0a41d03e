/*
 * reference.h — `nines scrub --reference URL`: the fourth source of a
 * partition's live compare (docs/scrub.md, "The reference replica").
 *
 * After the replicas' digests at the scrub marker (index M) are in, the
 * scrubber waits until the archive holds entries up to M (a seal after the
 * marker, seal_after later), then rebuilds the partition at M from the
 * archive alone (`nines reference`, store/reference.h: the newest archived
 * snapshot before M, then every piece, through the store's own state
 * machine, offline, in a scratch LMDB) and compares its fingerprint with
 * every replica's at M. The verdict, blaming one of four sources:
 *   agrees   the reference equals the replicas' majority;
 *   replica  the reference sides with some replicas against others: the
 *            others are blamed (this breaks a tie when the replicas have no
 *            majority of their own: two reachable replicas that differ);
 *   replay   every replica that answered agrees and the archive proved
 *            whole, but the reference differs: the replay (or a bug every
 *            replica shares) is blamed;
 *   archive  the archive cannot give the reference (a corrupt, truncated,
 *            missing or foreign piece, a gap, a snapshot whose items do not
 *            give its digest): named;
 *   undecided  the archive did not reach the marker in time, or no replica
 *            answered.
 * replica, replay and archive are findings (exit 1).
 */
#ifndef NINES_SCRUBBER_REFERENCE_H
#define NINES_SCRUBBER_REFERENCE_H

#include <jansson.h>
#include <stdint.h>

#include "proto/ddb.h"

#define SCRUB_REF_MAX 8

struct scrub_ref_in {
    const char *url, *table, *group, *run_id;
    int partition;
    long long lsn;
    int n;                                /* members */
    const char *members[SCRUB_REF_MAX];   /* node ids */
    const char *fps[SCRUB_REF_MAX];       /* fingerprints at the marker; NULL: none */
    struct ddb_client *cl[SCRUB_REF_MAX]; /* each member's client (NULL: unreachable) */
    int64_t deadline_ms;                  /* clock_mono_ms */
};

/* The verdict of one partition: {"table", "partition", "lsn", "verdict",
 * "blame": [node ids] | "archive" | "replay" | null, "fingerprint",
 * "items", "buckets": [differing buckets vs the blamed or the majority],
 * "why", "seconds", "entries"} (new reference). *majority is set to a
 * member index when the reference broke a tie (it was -1). */
json_t *scrub_reference_part(const struct scrub_ref_in *in, int *majority);

#endif
