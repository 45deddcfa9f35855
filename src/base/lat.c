/*
 * base/lat: see lat.h.
 */
#include "base/lat.h"

#include <stdlib.h>
#include <string.h>

#include "base/xmalloc.h"

size_t
lat_bucket(const double *bounds_s, size_t nb, uint64_t us)
{
    size_t b = 0;

    while (b < nb && (double)us / 1e6 > bounds_s[b])
        b++;
    return b;
}

void
lat_ring_put(uint32_t *ring, size_t cap, size_t *next, size_t *n, uint64_t us)
{
    ring[*next] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    *next = (*next + 1) % cap;
    if (*n < cap)
        (*n)++;
}

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t
rank(const uint32_t *v, size_t n, double q)
{
    size_t r = (size_t)(q * (double)n + 0.999999);
    if (r < 1)
        r = 1;
    if (r > n)
        r = n;
    return v[r - 1];
}

void
lat_exact(uint32_t *v, size_t n, struct lat_exact *e)
{
    memset(e, 0, sizeof(*e));
    if (n == 0)
        return;
    qsort(v, n, sizeof(*v), cmp_u32);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    e->samples = n;
    e->min_us = v[0];
    e->p50_us = rank(v, n, 0.50);
    e->p90_us = rank(v, n, 0.90);
    e->p99_us = rank(v, n, 0.99);
    e->p999_us = rank(v, n, 0.999);
    e->max_us = v[n - 1];
    e->mean_us = sum / (double)n;
}

void
lat_exact_ring(const uint32_t *ring, const size_t *n, size_t cap,
               pthread_mutex_t *lock, struct lat_exact *e)
{
    uint32_t *v = xmalloc(cap * sizeof(*v));

    pthread_mutex_lock(lock);
    size_t k = *n < cap ? *n : cap;
    memcpy(v, ring, k * sizeof(*v)); /* order does not matter */
    pthread_mutex_unlock(lock);
    lat_exact(v, k, e);
    free(v);
}
