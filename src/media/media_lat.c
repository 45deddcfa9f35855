/*
 * media/media_lat: set-up time added by media relay (see media_lat.h).
 * The histogram counters are atomics; the sample rings share one mutex,
 * held only to store a sample or copy a ring.
 */
#include "media/media_lat.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/lat.h"
#include "base/xmalloc.h"

const double media_lat_bounds_s[MEDIA_LAT_BUCKETS] = {
    0.00005, 0.0001, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.002,
    0.005,   0.01,   0.025,  0.05,   0.1,    0.25,    0.5,   1};

struct lat_one {
    atomic_uint_fast64_t bucket[MEDIA_LAT_BUCKETS]; /* not cumulative */
    atomic_uint_fast64_t count, sum_us;
    uint32_t ring[MEDIA_LAT_SAMPLES]; /* under lock */
    size_t next, n;
};

struct media_lat {
    pthread_mutex_t lock;
    struct lat_one k[MEDIA_LAT_COUNT];
};

const char *
media_lat_kind_name(enum media_lat_kind k)
{
    static const char *const names[MEDIA_LAT_COUNT] = {"offer", "answer",
                                                       "call"};
    return (unsigned)k < MEDIA_LAT_COUNT ? names[k] : "?";
}

struct media_lat *
media_lat_new(void)
{
    struct media_lat *l = xcalloc(1, sizeof(*l));
    pthread_mutex_init(&l->lock, NULL);
    return l;
}

void
media_lat_free(struct media_lat *l)
{
    if (!l)
        return;
    pthread_mutex_destroy(&l->lock);
    free(l);
}

uint64_t
media_lat_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void
media_lat_add(struct media_lat *l, enum media_lat_kind k, uint64_t us)
{
    if (!l || (unsigned)k >= MEDIA_LAT_COUNT)
        return;
    struct lat_one *o = &l->k[k];
    size_t b = lat_bucket(media_lat_bounds_s, MEDIA_LAT_BUCKETS, us);
    if (b < MEDIA_LAT_BUCKETS)
        atomic_fetch_add_explicit(&o->bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&o->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&o->sum_us, us, memory_order_relaxed);
    pthread_mutex_lock(&l->lock);
    lat_ring_put(o->ring, MEDIA_LAT_SAMPLES, &o->next, &o->n, us);
    pthread_mutex_unlock(&l->lock);
}

void
media_lat_get(struct media_lat *l, enum media_lat_kind k, bool exact,
              struct media_lat_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!l || (unsigned)k >= MEDIA_LAT_COUNT)
        return;
    struct lat_one *o = &l->k[k];
    uint64_t cum = 0;
    for (size_t i = 0; i < MEDIA_LAT_BUCKETS; i++) {
        cum += atomic_load_explicit(&o->bucket[i], memory_order_relaxed);
        out->le[i] = cum;
    }
    out->count = atomic_load_explicit(&o->count, memory_order_relaxed);
    out->sum_s =
        (double)atomic_load_explicit(&o->sum_us, memory_order_relaxed) / 1e6;
    if (!exact)
        return;
    struct lat_exact e;
    lat_exact_ring(o->ring, &o->n, MEDIA_LAT_SAMPLES, &l->lock, &e);
    out->samples = e.samples;
    out->min_us = e.min_us;
    out->p50_us = e.p50_us;
    out->p90_us = e.p90_us;
    out->p99_us = e.p99_us;
    out->max_us = e.max_us;
    out->mean_us = e.mean_us;
}
