/*
 * store_bench: binding writes committed per second by the store's writer
 * thread, on SQLite or PostgreSQL ([store] backend): N binding refreshes
 * (store_binding_put over K distinct bindings, as REGISTER refreshes
 * are), then store_sync; the figure is N / (time from the first put to
 * the sync's return), with flush_ms 200 as in production. Also the time
 * of one store_commit of one write (what an admin or push-device write
 * waits). Release build only (figures under sanitizers mean nothing):
 *   build-rel/bench/store_bench [-n 200000] [-k 20000] [-d DIR]
 *   tests/pg/pg-run sh -c 'build-rel/bench/store_bench -p "$PUSHPBX_TEST_PG"'
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
    long n = 200000, k = 20000;
    const char *dir = "/tmp", *pg = NULL;
    int opt;

    while ((opt = getopt(argc, argv, "n:k:d:p:")) != -1) {
        switch (opt) {
        case 'n':
            n = strtol(optarg, NULL, 10);
            break;
        case 'k':
            k = strtol(optarg, NULL, 10);
            break;
        case 'd':
            dir = optarg;
            break;
        case 'p':
            pg = optarg;
            break;
        default:
            fprintf(stderr, "usage: store_bench [-n N] [-k K] [-d DIR] "
                            "[-p CONNINFO]\n");
            return 2;
        }
    }
    if (n < 1 || k < 1)
        return 2;
    char path[512];
    snprintf(path, sizeof(path), "%s/store-bench-%d.db", dir, (int)getpid());
    struct store_cfg cfg = {.path = path,
                            .flush_ms = 200,
                            .max_queue = 10000000,
                            .backend = pg ? "postgresql" : "sqlite",
                            .postgresql = (char *)(pg ? pg : "")};
    struct store *st;
    char err[512];
    if (store_open(&cfg, &st, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    char key[48], ext[24];
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        long b = i % k;
        snprintf(ext, sizeof(ext), "%ld", 1000 + b);
        snprintf(key, sizeof(key), "sip:%ld@10.0.0.1:5060", b);
        struct store_binding row = {
            .ext = ext,
            .key = key,
            .uri = key,
            .params = ";transport=tcp",
            .instance = "<urn:uuid:00000000-0000-0000-0000-000000000000>",
            .call_id = "bench-call-id",
            .cseq = (uint32_t)i,
            .expires_at = 2000000000,
            .updated_at = 1700000000,
            .source = "10.0.0.1:5060",
            .transport = 1,
            .flow_id = (uint64_t)i,
            .user_agent = "bench/1.0"};
        if (store_binding_put(st, &row) < 0) {
            fprintf(stderr, "queue full at %ld\n", i);
            return 1;
        }
    }
    double queued = now_s() - t0;
    int rc = store_sync(st);
    double took = now_s() - t0;
    /* One synchronous commit of one write, 50 times: the median. */
    double lat[50];
    for (int i = 0; i < 50; i++) {
        struct store_mark m = store_mark(st);
        struct store_ext e = {.number = "999",
                              .display = "",
                              .realm = "r",
                              .ha1_md5 = "m",
                              .ha1_sha256 = "s",
                              .enabled = true,
                              .max_push_devices = 1};
        double c0 = now_s();
        store_ext_put(st, &e);
        if (store_commit(st, m, 5000) < 0)
            rc = -1;
        lat[i] = now_s() - c0;
    }
    for (int i = 0; i < 50; i++)
        for (int j = i + 1; j < 50; j++)
            if (lat[j] < lat[i]) {
                double t = lat[i];
                lat[i] = lat[j];
                lat[j] = t;
            }
    struct store_stats s;
    store_get_stats(st, &s);
    store_close(st);
    if (!pg) {
        static const char *const sfx[] = {"", "-wal", "-shm"};
        for (int i = 0; i < 3; i++) {
            char p[540];
            snprintf(p, sizeof(p), "%s%s", path, sfx[i]);
            unlink(p);
        }
    }
    printf("store_bench backend=%s writes=%ld bindings=%ld queued_in=%.3fs "
           "committed_in=%.3fs writes/s=%.0f batches=%llu errors=%llu "
           "commit_p50=%.2fms%s\n",
           pg ? "postgresql" : "sqlite", n, k, queued, took, (double)n / took,
           (unsigned long long)s.batches, (unsigned long long)s.errors,
           lat[25] * 1e3, rc < 0 ? " (FAILED)" : "");
    return rc < 0 ? 1 : 0;
}
