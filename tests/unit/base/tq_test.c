/*
 * tq_test: timer queues. FIFO order, heap order with ties broken by
 * insertion, cancel from anywhere, re-arming from a callback, the notify
 * hook, and a randomised heap check against a sorted reference.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "base/tq.h"

struct item {
    struct tq_entry e;
    int id;
};

static int fired_ids[1024];
static size_t fired_count;

static void
on_fire(struct tq_entry *e)
{
    struct item *it = container_of(e, struct item, e);
    fired_ids[fired_count++] = it->id;
}

static void
reset(void)
{
    fired_count = 0;
}

static void
test_fifo_order(void **state)
{
    struct tq q;
    struct tq_fifo f;
    struct item it[3];

    reset();
    tq_init(&q);
    tq_fifo_init(&q, &f, 100);
    for (int i = 0; i < 3; i++) {
        tq_entry_init(&it[i].e, on_fire);
        it[i].id = i;
        tq_fifo_add(&f, &it[i].e, 10 * (uint64_t)i);
    }
    assert_int_equal(tq_next_due(&q), 100);
    assert_int_equal(tq_run(&q, 99, 0), 0);
    assert_int_equal(tq_run(&q, 110, 0), 2);
    assert_int_equal(fired_ids[0], 0);
    assert_int_equal(fired_ids[1], 1);
    assert_false(tq_armed(&it[0].e));
    assert_true(tq_armed(&it[2].e));
    assert_int_equal(tq_next_due(&q), 120);
    /* Re-adding moves an entry to the tail with a new deadline. */
    tq_fifo_add(&f, &it[2].e, 50);
    assert_int_equal(tq_next_due(&q), 150);
    tq_cancel(&it[2].e);
    assert_int_equal(tq_next_due(&q), TQ_NEVER);
    tq_cancel(&it[2].e); /* cancelling twice is harmless */
    tq_fifo_fini(&f);
    tq_fini(&q);
}

static void
test_heap_order_and_ties(void **state)
{
    struct tq q;
    struct item it[5];
    const uint64_t due[5] = {50, 10, 50, 30, 10};

    reset();
    tq_init(&q);
    for (int i = 0; i < 5; i++) {
        tq_entry_init(&it[i].e, on_fire);
        it[i].id = i;
        tq_heap_add(&q, &it[i].e, due[i]);
    }
    assert_int_equal(tq_next_due(&q), 10);
    assert_int_equal(tq_run(&q, 1000, 0), 5);
    const int want[5] = {1, 4, 3, 0, 2};
    for (int i = 0; i < 5; i++)
        assert_int_equal(fired_ids[i], want[i]);
    tq_fini(&q);
}

static void
test_mixed_and_max(void **state)
{
    struct tq q;
    struct tq_fifo f1, f2;
    struct item a, b, c;

    reset();
    tq_init(&q);
    tq_fifo_init(&q, &f1, 30);
    tq_fifo_init(&q, &f2, 10);
    tq_entry_init(&a.e, on_fire);
    tq_entry_init(&b.e, on_fire);
    tq_entry_init(&c.e, on_fire);
    a.id = 1;
    b.id = 2;
    c.id = 3;
    tq_fifo_add(&f1, &a.e, 0); /* 30 */
    tq_fifo_add(&f2, &b.e, 0); /* 10 */
    tq_heap_add(&q, &c.e, 20);
    assert_int_equal(tq_next_due(&q), 10);
    assert_int_equal(tq_run(&q, 100, 2), 2); /* bounded */
    assert_int_equal(fired_ids[0], 2);
    assert_int_equal(fired_ids[1], 3);
    assert_int_equal(tq_run(&q, 100, 0), 1);
    assert_int_equal(fired_ids[2], 1);
    /* fini of a FIFO disarms what it still holds */
    tq_fifo_add(&f1, &a.e, 200);
    tq_fifo_fini(&f1);
    assert_false(tq_armed(&a.e));
    tq_fifo_fini(&f2);
    tq_fini(&q);
}

/* A callback that re-arms itself (like timer A doubling) fires again in
 * the same run if the new deadline is already due. */
static struct tq *rearm_q;
static uint64_t rearm_interval;
static int rearm_count;

static void
on_rearm(struct tq_entry *e)
{
    rearm_count++;
    if (rearm_count < 4) {
        rearm_interval *= 2;
        tq_heap_add(rearm_q, e, e->due_ms + rearm_interval);
    }
}

static void
test_rearm_in_callback(void **state)
{
    struct tq q;
    struct tq_entry e;

    tq_init(&q);
    rearm_q = &q;
    rearm_interval = 10;
    rearm_count = 0;
    tq_entry_init(&e, on_rearm);
    tq_heap_add(&q, &e, 10);
    assert_int_equal(tq_run(&q, 30, 0), 2); /* 10, 30 */
    assert_int_equal(tq_next_due(&q), 70);
    assert_int_equal(tq_run(&q, 1000, 0), 2); /* 70, 150 */
    assert_int_equal(rearm_count, 4);
    assert_false(tq_armed(&e));
    tq_fini(&q);
}

static int notified;

static void
on_notify(struct tq *q, void *arg)
{
    (void)q;
    notified += *(int *)arg;
}

static void
test_notify(void **state)
{
    struct tq q;
    struct tq_fifo f;
    struct tq_entry e1, e2, e3;
    int one = 1;

    notified = 0;
    tq_init(&q);
    tq_set_notify(&q, on_notify, &one);
    tq_fifo_init(&q, &f, 100);
    tq_entry_init(&e1, on_fire);
    tq_entry_init(&e2, on_fire);
    tq_entry_init(&e3, on_fire);
    tq_fifo_add(&f, &e1, 0); /* 100: first -> notify */
    assert_int_equal(notified, 1);
    tq_heap_add(&q, &e2, 500); /* later: no notify */
    assert_int_equal(notified, 1);
    tq_heap_add(&q, &e3, 50); /* earlier: notify */
    assert_int_equal(notified, 2);
    tq_cancel(&e1);
    tq_cancel(&e2);
    tq_cancel(&e3);
    tq_fifo_fini(&f);
    tq_fini(&q);
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t last_due;
static bool order_ok;

static void
on_check_order(struct tq_entry *e)
{
    if (e->due_ms < last_due)
        order_ok = false;
    last_due = e->due_ms;
    fired_count++;
}

static void
test_heap_random(void **state)
{
    enum { N = 1000 };
    static struct tq_entry es[N];
    static uint64_t dues[N];
    struct tq q;
    size_t live = 0;

    srand(42);
    tq_init(&q);
    for (int i = 0; i < N; i++) {
        tq_entry_init(&es[i], on_check_order);
        tq_heap_add(&q, &es[i], (uint64_t)(rand() % 5000));
    }
    /* cancel every third one, re-arm every seventh with a new deadline */
    for (int i = 0; i < N; i++) {
        if (i % 3 == 0)
            tq_cancel(&es[i]);
        else if (i % 7 == 0)
            tq_heap_add(&q, &es[i], (uint64_t)(rand() % 5000));
    }
    for (int i = 0; i < N; i++)
        if (tq_armed(&es[i]))
            dues[live++] = es[i].due_ms;
    qsort(dues, live, sizeof(dues[0]), cmp_u64);
    assert_int_equal(tq_next_due(&q), dues[0]);
    last_due = 0;
    order_ok = true;
    fired_count = 0;
    size_t upto = 0;
    while (upto < live && dues[upto] <= dues[live / 2])
        upto++;
    assert_int_equal(tq_run(&q, dues[live / 2], 0), upto);
    assert_true(order_ok);
    tq_run(&q, TQ_NEVER - 1, 0);
    assert_int_equal(fired_count, live);
    assert_true(order_ok);
    tq_fini(&q);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_order),
        cmocka_unit_test(test_heap_order_and_ties),
        cmocka_unit_test(test_mixed_and_max),
        cmocka_unit_test(test_rearm_in_callback),
        cmocka_unit_test(test_notify),
        cmocka_unit_test(test_heap_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
