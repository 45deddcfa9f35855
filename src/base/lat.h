/*
 * base/lat: the arithmetic of a latency record, shared by the wake path's
 * and the media relay's (wake/wake_lat.c, media/media_lat.c): which
 * histogram bucket a sample falls in, a ring of the last samples, and
 * exact nearest-rank percentiles over a copy of that ring. The callers
 * keep their own counters, rings and locks.
 */
#ifndef PUSHPBX_BASE_LAT_H
#define PUSHPBX_BASE_LAT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* The first of the nb upper bounds (seconds, ascending) that us fits
 * under, or nb when it is above them all. */
size_t lat_bucket(const double *bounds_s, size_t nb, uint64_t us);

/* Store us (capped at UINT32_MAX) at ring[*next] of a ring of cap
 * samples; *n counts the samples held (at most cap). The caller holds
 * the ring's lock. */
void lat_ring_put(uint32_t *ring, size_t cap, size_t *next, size_t *n,
                  uint64_t us);

/* Exact figures over n samples. */
struct lat_exact {
    uint64_t samples;
    uint64_t min_us, p50_us, p90_us, p99_us, p999_us, max_us;
    double mean_us;
};

/* Sort v[0..n) in place and fill e (nearest rank: the smallest sample
 * with at least q of them at or below). n == 0: e all zero. */
void lat_exact(uint32_t *v, size_t n, struct lat_exact *e);

/* lat_exact over a ring of cap samples that lock guards: *n and the
 * samples are copied under lock, sorted and counted outside it. */
void lat_exact_ring(const uint32_t *ring, const size_t *n, size_t cap,
                    pthread_mutex_t *lock, struct lat_exact *e);

#endif
