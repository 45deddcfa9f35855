/*
 * msg_store_bench: the storage half of "MESSAGE -> push" ([messages]):
 * how long a stored message takes from reg_msg_put to its durable
 * callback (the moment the SIP side may answer 202 and push), at a
 * paced rate, with the store's real writer thread and SQLite file; and
 * how long a delivery's read (reg_msg_claim -> row) takes. The SIP and
 * push legs are measured by the wake bench once the second pass wires
 * them. Release build only (figures under sanitizers mean nothing):
 *   build-rel/bench/msg_store_bench [-n 2000] [-r 100] [-b 200] [-d DIR]
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "registrar/msgstore.h"
#include "store/store.h"

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct sample {
    uint64_t t0, lat_ns;
    int rc;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static size_t done_count;

static void
on_put(int rc, uint64_t id, void *arg)
{
    struct sample *s = arg;
    (void)id;
    s->lat_ns = now_ns() - s->t0;
    s->rc = rc;
    pthread_mutex_lock(&mu);
    done_count++;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

static void
on_claim(int rc, const struct store_msg *m, void *arg)
{
    struct sample *s = arg;
    (void)m;
    s->lat_ns = now_ns() - s->t0;
    s->rc = rc;
    pthread_mutex_lock(&mu);
    done_count++;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

static void
wait_done(size_t n)
{
    pthread_mutex_lock(&mu);
    while (done_count < n)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

static int
cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void
report(const char *what, struct sample *s, size_t n)
{
    uint64_t *v = malloc(n * sizeof(*v));
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        v[i] = s[i].lat_ns;
        bad += s[i].rc != 0;
    }
    qsort(v, n, sizeof(*v), cmp);
    printf("%s: n=%zu errors=%zu p50=%.2f ms p99=%.2f ms max=%.2f ms\n", what,
           n, bad, v[n / 2] / 1e6, v[(n * 99) / 100] / 1e6, v[n - 1] / 1e6);
    free(v);
}

int
main(int argc, char **argv)
{
    size_t n = 2000, body = 200;
    unsigned rate = 100;
    const char *dir = "/tmp";
    int ch;

    while ((ch = getopt(argc, argv, "n:r:b:d:")) != -1) {
        if (ch == 'n')
            n = strtoul(optarg, NULL, 10);
        else if (ch == 'r')
            rate = (unsigned)strtoul(optarg, NULL, 10);
        else if (ch == 'b')
            body = strtoul(optarg, NULL, 10);
        else if (ch == 'd')
            dir = optarg;
        else
            return 2;
    }
    if (n == 0 || rate == 0)
        return 2;
    char path[512];
    snprintf(path, sizeof(path), "%s/msg_store_bench-%d.db", dir,
             (int)getpid());
    struct store_cfg sc = {.path = path, .flush_ms = 200, .max_queue = 100000};
    struct store *st;
    struct reg_msg_table *t;
    char err[256];
    if (store_open(&sc, &st, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    struct reg_msg_opts o = {.store = st};
    if (reg_msg_open(&o, &t, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    char *text = malloc(body + 1);
    memset(text, 'x', body);
    text[body] = '\0';
    struct sample *s = calloc(n, sizeof(*s));
    uint64_t gap = 1000000000u / rate, start = now_ns();
    for (size_t i = 0; i < n; i++) {
        uint64_t due = start + i * gap, now = now_ns();
        if (due > now) {
            struct timespec ts = {.tv_sec = (time_t)((due - now) / 1000000000u),
                                  .tv_nsec = (long)((due - now) % 1000000000u)};
            nanosleep(&ts, NULL);
        }
        char ext[16];
        snprintf(ext, sizeof(ext), "%zu", 100 + i % 50);
        struct store_msg m = {.ext = ext,
                              .sender_uri = "sip:200@bench",
                              .sender_name = "Bench",
                              .call_id = "bench",
                              .cseq = (uint32_t)i,
                              .content_type = "text/plain",
                              .body = text,
                              .body_len = body};
        s[i].t0 = now_ns();
        if (reg_msg_put(t, &m, on_put, &s[i]) < 0)
            return 1;
    }
    wait_done(n);
    printf("rate=%u/s body=%zu bytes flush_ms=%u\n", rate, body, sc.flush_ms);
    report("put -> durable (202 may go)", s, n);

    /* Deliveries: claim, read, done, one extension after another. */
    size_t k = n < 500 ? n : 500;
    done_count = 0;
    memset(s, 0, n * sizeof(*s));
    for (size_t i = 0; i < k; i++) {
        char ext[16];
        snprintf(ext, sizeof(ext), "%zu", 100 + i % 50);
        s[i].t0 = now_ns();
        if (reg_msg_claim(t, ext, on_claim, &s[i]) < 0) {
            s[i].rc = -1;
            pthread_mutex_lock(&mu);
            done_count++;
            pthread_mutex_unlock(&mu);
            continue;
        }
        wait_done(i + 1);
        struct reg_msg_info info;
        if (reg_msg_list_ext(t, ext, &info, 1) > 0)
            reg_msg_done(t, ext, info.id, true);
    }
    report("claim -> row read (delivery)", s, k);
    reg_msg_close(t);
    store_close(st);
    static const char *const sfx[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        char p[600];
        snprintf(p, sizeof(p), "%s%s", path, sfx[i]);
        unlink(p);
    }
    free(s);
    free(text);
    return 0;
}
