/*
 * faults_disk.c — a driver for t/gameday/faults_disk.t (not a TAP test by
 * itself): runs one action of a fault kind, through its struct fault_kind
 * only, as the game-day runner would, against the hosts of an inventory.
 *
 *   faults_disk INVENTORY disk_full|free_disk|heal_all HOST
 *
 * disk_full injects the disk_full kind on HOST, free_disk heals it there,
 * heal_all runs the kind's heal_all over the whole inventory from a fresh
 * state (nothing injected by this process: it must read the machines).
 * Notes go to stdout as "note: ...", changed hosts as "changed: NAME".
 * Exit status: 0 done, 1 the action failed (the error on stderr), 2 usage.
 */
#include "fault/fault.h"
#include "fault/inventory.h"

#include <stdio.h>
#include <string.h>

extern const struct fault_kind fault_disk_full;

static void note_cb(void *arg, const char *msg)
{
    printf("note: %s\n", msg);
}

static void changed_cb(void *arg, const struct inv_host *h)
{
    printf("changed: %s\n", h->name);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: faults_disk INVENTORY disk_full|free_disk|heal_all HOST\n");
        return 2;
    }
    struct inventory *inv = NULL;
    struct nerr e = {0};
    if (inventory_load(argv[1], &inv, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 2;
    }
    const struct inv_host *h = inventory_host(inv, argv[3]);
    if (!h) {
        fprintf(stderr, "no host %s\n", argv[3]);
        inventory_free(inv);
        return 2;
    }
    size_t idx = (size_t)(h - inv->hosts);
    struct fault_env env = {.inv = inv, .note = note_cb, .host_changed = changed_cb, .arg = NULL};
    struct fault_call c = {.hosts = &idx, .nhosts = 1};
    const struct fault_kind *k = &fault_disk_full;
    void *st = NULL;
    int rc = k->open(&env, &st, &e);
    if (!rc) {
        if (!strcmp(argv[2], "disk_full"))
            rc = k->inject(st, &env, &c, &e);
        else if (!strcmp(argv[2], "free_disk"))
            rc = k->heal(st, &env, &c, &e);
        else if (!strcmp(argv[2], "heal_all"))
            k->heal_all(st, &env);
        else
            rc = nerr_set(&e, NERR_INVALID, "unknown action %s", argv[2]);
        k->close(st);
    }
    if (rc)
        fprintf(stderr, "%s\n", e.msg);
    inventory_free(inv);
    fflush(stdout);
    return rc ? 1 : 0;
}
