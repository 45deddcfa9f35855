/*
 * wake/wake_lat: the wake-path latency (wake.h "wake-path latency"): two
 * atomic histograms and two rings of exact samples under w->lat_lock;
 * woken devices whose INVITE is not sent yet wait in a small array
 * (WAIT_MAX) that the proxy's branch_sent observer scans only while it is
 * not empty.
 */
#include "transport/tp.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/lat.h"
#include "base/list.h"
#include "base/log.h"
#include "registrar/pushdev.h"
#include "wake/wake_int.h"

const double wake_hist_bounds_s[WAKE_HIST_BUCKETS] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01,    0.025,  0.05,    0.1,    0.25,  0.5,    1};

/* A pushed device woke: time its INVITE from this REGISTER's read. */
void
wake_wait_add(struct wake *w, const char *uri)
{
    uint64_t rx = tp_rx_us();
    if (!rx)
        return; /* not inside a receive callback (unit tests) */
    pthread_mutex_lock(&w->lat_lock);
    size_t i = 0;
    while (i < w->nwait && strcmp(w->wait[i].uri, uri) != 0)
        i++;
    if (i == w->nwait) {
        if (w->nwait == WAIT_MAX) { /* bounded: drop the oldest */
            memmove(&w->wait[0], &w->wait[1],
                    (WAIT_MAX - 1) * sizeof(w->wait[0]));
            w->nwait--;
        }
        i = w->nwait++;
        wake_copy_str(w->wait[i].uri, sizeof(w->wait[i].uri), uri);
    }
    w->wait[i].reg_us = rx;
    atomic_store(&w->nwait_hint, w->nwait);
    pthread_mutex_unlock(&w->lat_lock);
}

/* Proxy observer: a branch's INVITE was handed to the transport. If it
 * goes to a device woken by a REGISTER (its Contact URI), that closes
 * REGISTER_TO_INVITE. A load and a branch while no woken device waits. */
void
wake_on_branch_sent(const struct proxy_branch_info *bi, void *arg)
{
    struct wake *w = arg;

    if (atomic_load_explicit(&w->nwait_hint, memory_order_relaxed) == 0)
        return;
    uint64_t now = wake_mono_us(), us = 0;
    bool hit = false;

    pthread_mutex_lock(&w->lat_lock);
    /* O(WAIT_MAX), only while woken devices wait (a few at a time). */
    for (size_t i = 0; i < w->nwait;) {
        struct wwait *e = &w->wait[i];
        bool match = !hit && strcmp(e->uri, bi->uri) == 0;
        if (match) {
            hit = true;
            us = now - e->reg_us;
        }
        if (match || now - e->reg_us > WAIT_MAX_AGE_US) {
            memmove(e, e + 1, (w->nwait - i - 1) * sizeof(*e));
            w->nwait--;
            continue;
        }
        i++;
    }
    atomic_store(&w->nwait_hint, w->nwait);
    pthread_mutex_unlock(&w->lat_lock);
    if (hit)
        wake_lat_add(w, WAKE_LAT_REGISTER_TO_INVITE, us);
}

void
wake_lat_add(struct wake *w, enum wake_interval which, uint64_t us)
{
    if ((unsigned)which >= WAKE_LAT_COUNT)
        return;
    struct wlat *l = &w->lat[which];
    size_t b = lat_bucket(wake_hist_bounds_s, WAKE_HIST_BUCKETS, us);
    if (b < WAKE_HIST_BUCKETS)
        atomic_fetch_add(&l->bucket[b], 1);
    atomic_fetch_add(&l->count, 1);
    atomic_fetch_add(&l->sum_us, us);
    pthread_mutex_lock(&w->lat_lock);
    lat_ring_put(l->ring, WAKE_LAT_SAMPLES, &l->next, &l->n, us);
    pthread_mutex_unlock(&w->lat_lock);
}

void
wake_lat_get(struct wake *w, enum wake_interval which, bool exact,
             struct wake_lat_stats *out)
{
    memset(out, 0, sizeof(*out));
    if ((unsigned)which >= WAKE_LAT_COUNT)
        return;
    struct wlat *l = &w->lat[which];
    uint64_t cum = 0;
    for (size_t i = 0; i < WAKE_HIST_BUCKETS; i++) {
        cum += atomic_load(&l->bucket[i]);
        out->le[i] = cum;
    }
    out->count = atomic_load(&l->count);
    out->sum_s = (double)atomic_load(&l->sum_us) / 1e6;
    if (!exact)
        return;
    struct lat_exact e;
    lat_exact_ring(l->ring, &l->n, WAKE_LAT_SAMPLES, &w->lat_lock, &e);
    out->samples = e.samples;
    out->min_us = e.min_us;
    out->p50_us = e.p50_us;
    out->p90_us = e.p90_us;
    out->p99_us = e.p99_us;
    out->p999_us = e.p999_us;
    out->max_us = e.max_us;
    out->mean_us = e.mean_us;
}
