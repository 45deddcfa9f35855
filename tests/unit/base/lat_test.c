/*
 * lat_test: the latency arithmetic the wake path and the media relay
 * share (base/lat.h): buckets by upper bound, a ring that keeps the last
 * cap samples, nearest-rank percentiles.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "base/lat.h"

static void
test_bucket(void **state)
{
    static const double b[3] = {0.0001, 0.001, 0.01};
    (void)state;
    assert_int_equal(lat_bucket(b, 3, 0), 0);
    assert_int_equal(lat_bucket(b, 3, 100), 0);  /* at the bound: in it */
    assert_int_equal(lat_bucket(b, 3, 101), 1);
    assert_int_equal(lat_bucket(b, 3, 10000), 2);
    assert_int_equal(lat_bucket(b, 3, 10001), 3); /* above all */
}

static void
test_ring_keeps_last(void **state)
{
    uint32_t ring[4];
    size_t next = 0, n = 0;
    (void)state;
    for (uint64_t us = 1; us <= 6; us++)
        lat_ring_put(ring, 4, &next, &n, us);
    assert_int_equal(n, 4);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += ring[i];
    assert_int_equal(sum, 3 + 4 + 5 + 6);
    lat_ring_put(ring, 4, &next, &n, (uint64_t)UINT32_MAX + 5);
    assert_int_equal(ring[(next + 3) % 4], UINT32_MAX);
}

static void
test_exact_nearest_rank(void **state)
{
    uint32_t v[100];
    struct lat_exact e;
    (void)state;
    for (size_t i = 0; i < 100; i++)
        v[i] = (uint32_t)(100 - i); /* 100..1, unsorted */
    lat_exact(v, 100, &e);
    assert_int_equal(e.samples, 100);
    assert_int_equal(e.min_us, 1);
    assert_int_equal(e.p50_us, 50);
    assert_int_equal(e.p90_us, 90);
    assert_int_equal(e.p99_us, 99);
    assert_int_equal(e.p999_us, 100);
    assert_int_equal(e.max_us, 100);
    assert_true(e.mean_us > 50.49 && e.mean_us < 50.51);
    uint32_t one[1] = {7};
    lat_exact(one, 1, &e);
    assert_int_equal(e.p50_us, 7);
    assert_int_equal(e.p99_us, 7);
    lat_exact(one, 0, &e);
    assert_int_equal(e.samples, 0);
    assert_int_equal(e.max_us, 0);
}

/* lat_exact_ring: the samples the ring holds (n of them, not cap), the
 * ring itself left in its order. */
static void
test_exact_ring(void **state)
{
    (void)state;
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    uint32_t ring[8] = {0};
    size_t next = 0, n = 0;
    struct lat_exact e;

    for (uint64_t us = 5; us >= 1; us--)
        lat_ring_put(ring, 8, &next, &n, us * 10);
    lat_exact_ring(ring, &n, 8, &lock, &e);
    assert_int_equal(e.samples, 5);
    assert_int_equal(e.min_us, 10);
    assert_int_equal(e.p50_us, 30);
    assert_int_equal(e.max_us, 50);
    assert_int_equal(ring[0], 50); /* not sorted in place */
    lat_exact_ring(ring, &(size_t){0}, 8, &lock, &e);
    assert_int_equal(e.samples, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket),
        cmocka_unit_test(test_ring_keeps_last),
        cmocka_unit_test(test_exact_nearest_rank),
        cmocka_unit_test(test_exact_ring),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
