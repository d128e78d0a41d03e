/*
 * labfs_cli.c — `nines labfs`: mount, control and unmount the lab's
 * power-loss file system (lab/labfs.h, docs/labfs.md).
 *
 *   nines labfs mount BACKING MOUNTPOINT [--foreground] [--seed N]
 *                     [--no-backing-sync] [--log FILE]
 *   nines labfs ctl MOUNTPOINT crash|torn|freeze|thaw|stats|sync|full [on|off]
 *   nines labfs umount MOUNTPOINT [--lazy] [--timeout S]
 *
 * Exit status: 0 done, 1 failed (the message says why), 2 bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "labfs/labfs.h"
#include "lib/log.h"

int labfs_main(int argc, char **argv);

static void usage(FILE *f)
{
    fprintf(f, "usage: nines labfs mount BACKING MOUNTPOINT [--foreground] [--seed N]\n"
               "                         [--no-backing-sync] [--log FILE]\n"
               "       nines labfs ctl MOUNTPOINT crash|torn|freeze|thaw|stats|sync|full [on|off]\n"
               "       nines labfs umount MOUNTPOINT [--lazy] [--timeout S]\n"
               "\n"
               "A FUSE file system over BACKING that keeps every write that was not\n"
               "fsync'd in memory; `ctl crash` drops it all (a power cut), `ctl torn` lets\n"
               "dirty pages survive at random (seeded), then every I/O fails until the\n"
               "file system is unmounted and mounted again. `ctl freeze` marks the instant\n"
               "of the cut: no fsync completes after it (crash fails them, thaw lets them\n"
               "finish). A power-off: freeze, SIGSTOP the processes, crash, SIGKILL them.\n"
               "`ctl full on` makes every write that needs new space fail with ENOSPC (a\n"
               "full disk, nothing allocated); `ctl full off` ends it.\n"
               "See docs/labfs.md.\n");
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end || *s == '-')
        return -1;
    *out = v;
    return 0;
}

static int cmd_mount(int argc, char **argv)
{
    struct labfs_opts o = {0};
    int fg = 0, ready_fd = -1;
    static const struct option lo[] = {{"foreground", no_argument, NULL, 'f'},
                                       {"seed", required_argument, NULL, 's'},
                                       {"no-backing-sync", no_argument, NULL, 'n'},
                                       {"log", required_argument, NULL, 'l'},
                                       /* internal: labfs_spawn's readiness pipe */
                                       {"ready-fd", required_argument, NULL, 'r'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "fs:nl:h", lo, NULL)) != -1) {
        switch (c) {
        case 'r':
            ready_fd = atoi(optarg);
            break;
        case 'f':
            fg = 1;
            break;
        case 's':
            if (parse_u64(optarg, &o.seed)) {
                fprintf(stderr, "nines labfs mount: --seed wants a number, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'n':
            o.no_backing_sync = 1;
            break;
        case 'l':
            o.log_path = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (argc - optind != 2) {
        fprintf(stderr, "nines labfs mount: needs BACKING and MOUNTPOINT\n");
        usage(stderr);
        return 2;
    }
    o.backing = argv[optind];
    o.mountpoint = argv[optind + 1];
    struct nerr e;
    nerr_clear(&e);
    if (fg) {
        /* The daemon outlives whoever holds the other end of its stderr and
         * of the ready pipe: a write there must not kill it (and the mount
         * with it). */
        signal(SIGPIPE, SIG_IGN);
        if (labfs_run(&o, ready_fd >= 3 ? ready_fd : -1, &e)) {
            fprintf(stderr, "nines labfs mount: %s\n", e.msg);
            return 1;
        }
        return 0;
    }
    o.detach = 1;
    pid_t pid;
    if (labfs_spawn(&o, &pid, &e)) {
        fprintf(stderr, "nines labfs mount: %s\n", e.msg);
        return 1;
    }
    printf("labfs: %s mounted over %s, daemon pid %ld\n", o.mountpoint, o.backing, (long)pid);
    return 0;
}

static int cmd_umount(int argc, char **argv)
{
    int flags = 0;
    uint64_t secs = 30;
    static const struct option lo[] = {{"lazy", no_argument, NULL, 'z'},
                                       {"timeout", required_argument, NULL, 't'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "zt:h", lo, NULL)) != -1) {
        switch (c) {
        case 'z':
            flags |= LABFS_UMOUNT_LAZY;
            break;
        case 't':
            if (parse_u64(optarg, &secs) || !secs || secs > 3600) {
                fprintf(stderr, "nines labfs umount: --timeout wants 1-3600 seconds\n");
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "nines labfs umount: needs MOUNTPOINT\n");
        return 2;
    }
    struct nerr e;
    nerr_clear(&e);
    if (labfs_umount(argv[optind], flags, (int)secs * 1000, &e)) {
        fprintf(stderr, "nines labfs umount: %s\n", e.msg);
        return 1;
    }
    return 0;
}

static int cmd_ctl(int argc, char **argv)
{
    if (argc != 3 && !(argc == 4 && !strcmp(argv[2], "full"))) {
        fprintf(stderr, "nines labfs ctl: needs MOUNTPOINT and one of crash, torn, freeze, thaw, "
                        "stats, sync, full [on|off]\n");
        return 2;
    }
    static const char *const cmds[] = {"crash", "torn", "freeze", "thaw", "stats", "sync", "full"};
    int known = 0;
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        known |= !strcmp(argv[2], cmds[i]);
    if (!known) {
        fprintf(stderr,
                "nines labfs ctl: unknown command '%s' (crash, torn, freeze, thaw, stats, sync, "
                "full)\n",
                argv[2]);
        return 2;
    }
    if (argc == 4 && strcmp(argv[3], "on") && strcmp(argv[3], "off")) {
        fprintf(stderr, "nines labfs ctl: full takes on or off, got '%s'\n", argv[3]);
        return 2;
    }
    char cmd[16];
    snprintf(cmd, sizeof cmd, "%s%s%s", argv[2], argc == 4 ? " " : "", argc == 4 ? argv[3] : "");
    char reply[1024];
    struct nerr e;
    nerr_clear(&e);
    if (labfs_control(argv[1], cmd, reply, sizeof reply, &e)) {
        fprintf(stderr, "nines labfs ctl: %s\n", e.msg);
        return 1;
    }
    printf("%s\n", reply);
    return 0;
}

int labfs_main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "mount"))
        return cmd_mount(argc - 1, argv + 1);
    if (!strcmp(argv[1], "umount") || !strcmp(argv[1], "unmount"))
        return cmd_umount(argc - 1, argv + 1);
    if (!strcmp(argv[1], "ctl"))
        return cmd_ctl(argc - 1, argv + 1);
    fprintf(stderr, "nines labfs: unknown subcommand '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
