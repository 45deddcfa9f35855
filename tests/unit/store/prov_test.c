/*
 * prov_test: store_prov_count_fetch, the count of a provisioning link's
 * fetch made by the database itself (docs/cluster.md, "Provisioning
 * links"), on the backend under test (testdb.h):
 *  - counted only while the link may serve (fetches < max_fetches, now <
 *    expires_at) and only on the row that still holds the token; the
 *    answer says what the row is after the count; committed on return
 *    (flush_ms is 1 s here: another connection sees it at once);
 *  - threads counting at once through two stores (two nodes; on SQLite,
 *    which has one node, through one) never count more than the limit;
 *  - another client (another node) that uses the link up, or deletes its
 *    row, in a transaction still open while the count waits for it: the
 *    count is refused and the row stays as that client left it (deleted
 *    stays deleted: nothing is written back).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/store.h"
#include "testdb.h"

#define FAR 4102444800 /* 2100-01-01: not expired */
#define NOW 1000000

static int
setup(void **state)
{
    /* The longest batch window: a count seen at once was committed by
     * the count, not by the window. */
    *state = tdb_fixture_new("prov", 1000, "a");
    return 0;
}

static int
teardown(void **state)
{
    tdb_fixture_free(*state);
    return 0;
}

/* ext 100's link, token tok, committed. */
static void
put_link(struct store *st, const char *tok, unsigned max, int64_t expires)
{
    struct store_prov p = {.ext = "100",
                           .token = tok,
                           .password = "pw",
                           .created_at = 1,
                           .expires_at = expires,
                           .max_fetches = max};
    struct store_mark m = store_mark(st);
    assert_int_equal(store_prov_put(st, &p), 0);
    assert_int_equal(store_commit(st, m, 5000), 0);
}

static long long
fetches_in_db(struct tdb_fixture *f)
{
    return tdb_count(&f->cfg, "SELECT fetches FROM prov_links WHERE ext='100'");
}

static void
test_count_until_gone(void **state)
{
    struct tdb_fixture *f = *state;
    struct store *st = tdb_fixture_open(f, "a");
    struct store_prov_count c;

    assert_int_equal(store_prov_count_fetch(st, NULL, "t1", NOW, 5000, &c),
                     -EINVAL);
    assert_int_equal(store_prov_count_fetch(st, "100", NULL, NOW, 5000, &c),
                     -EINVAL);
    /* No link at all. */
    assert_int_equal(store_prov_count_fetch(st, "100", "t1", NOW, 5000, &c), 0);
    assert_false(c.counted);
    assert_false(c.found);
    assert_int_equal(tdb_count(&f->cfg, "SELECT count(*) FROM prov_links"), 0);

    put_link(st, "t1", 2, FAR);
    for (unsigned k = 1; k <= 2; k++) {
        assert_int_equal(store_prov_count_fetch(st, "100", "t1", NOW, 5000, &c),
                         0);
        assert_true(c.counted);
        assert_true(c.found);
        assert_int_equal(c.fetches, k);
        assert_int_equal(c.max_fetches, 2);
        assert_int_equal(c.expires_at, FAR);
        /* On disk now, not at the end of the 1 s window. */
        assert_int_equal(fetches_in_db(f), k);
    }
    /* Used up: refused, the row as it is. */
    assert_int_equal(store_prov_count_fetch(st, "100", "t1", NOW, 5000, &c), 0);
    assert_false(c.counted);
    assert_true(c.found);
    assert_int_equal(c.fetches, 2);
    assert_int_equal(fetches_in_db(f), 2);

    /* Renewed: the old token counts nothing, on no row. */
    put_link(st, "t2", 2, 500);
    assert_int_equal(store_prov_count_fetch(st, "100", "t1", 10, 5000, &c), 0);
    assert_false(c.counted);
    assert_false(c.found);
    assert_int_equal(fetches_in_db(f), 0);
    /* Another extension's token is not this link. */
    assert_int_equal(store_prov_count_fetch(st, "101", "t2", 10, 5000, &c), 0);
    assert_false(c.found);
    /* Lifetime: served before expires_at, not at it (as on one node). */
    assert_int_equal(store_prov_count_fetch(st, "100", "t2", 499, 5000, &c), 0);
    assert_true(c.counted);
    assert_int_equal(c.fetches, 1);
    assert_int_equal(store_prov_count_fetch(st, "100", "t2", 500, 5000, &c), 0);
    assert_false(c.counted);
    assert_true(c.found);
    assert_int_equal(c.fetches, 1);
    assert_int_equal(c.expires_at, 500);
    assert_int_equal(fetches_in_db(f), 1);
    store_close(st);
}

enum { THREADS = 8, TRIES = 6, LIMIT = 5 };

struct counter {
    struct store *st;
    pthread_barrier_t *go;
    unsigned counted;
    unsigned seen[TRIES]; /* fetches after each counted fetch */
    int errors;
};

static void *
count_main(void *arg)
{
    struct counter *w = arg;

    pthread_barrier_wait(w->go);
    for (int k = 0; k < TRIES; k++) {
        struct store_prov_count c;
        if (store_prov_count_fetch(w->st, "100", "t1", NOW, 10000, &c) != 0 ||
            !c.found) {
            w->errors++;
            continue;
        }
        if (c.counted)
            w->seen[w->counted++] = c.fetches;
        else if (c.fetches != LIMIT)
            w->errors++; /* refused while the link could serve */
    }
    return NULL;
}

static void
test_concurrent_counts_keep_the_limit(void **state)
{
    struct tdb_fixture *f = *state;
    /* Two nodes on PostgreSQL, each its own writer and connection: their
     * counts race in the database. SQLite has one node: one store. */
    struct store *a = tdb_fixture_open(f, "a");
    struct store *b = tdb_pg() ? tdb_fixture_open(f, "b") : a;
    pthread_barrier_t go;
    pthread_t t[THREADS];
    struct counter w[THREADS];

    put_link(a, "t1", LIMIT, FAR);
    pthread_barrier_init(&go, NULL, THREADS);
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct counter){.st = i % 2 ? b : a, .go = &go};
        assert_int_equal(pthread_create(&t[i], NULL, count_main, &w[i]), 0);
    }
    unsigned total = 0, got = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].errors, 0);
        total += w[i].counted;
        for (unsigned k = 0; k < w[i].counted; k++)
            got |= 1u << w[i].seen[k]; /* each count 1..LIMIT once */
    }
    pthread_barrier_destroy(&go);
    assert_int_equal(total, LIMIT);
    assert_int_equal(got, ((1u << LIMIT) - 1) << 1);
    assert_int_equal(fetches_in_db(f), LIMIT);
    if (b != a)
        store_close(b);
    store_close(a);
}

struct waiter {
    struct store *st;
    int rc;
    struct store_prov_count c;
    bool done;
    pthread_mutex_t lock;
};

static void *
wait_main(void *arg)
{
    struct waiter *w = arg;
    struct store_prov_count c;
    int rc = store_prov_count_fetch(w->st, "100", "t1", NOW, 10000, &c);

    pthread_mutex_lock(&w->lock);
    w->rc = rc;
    w->c = c;
    w->done = true;
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static bool
waiter_done(struct waiter *w)
{
    pthread_mutex_lock(&w->lock);
    bool d = w->done;
    pthread_mutex_unlock(&w->lock);
    return d;
}

/* Another client writes sql (using the link up, or revoking it) in a
 * transaction that stays open until the count has reached the database
 * and waits for it; then commits. The count is refused. */
static struct waiter
count_behind(struct tdb_fixture *f, struct store *st, const char *sql)
{
    struct tdb *d = tdb_open(&f->cfg);
    struct waiter w = {.st = st};
    pthread_t t;

    pthread_mutex_init(&w.lock, NULL);
    assert_int_equal(tdb_lock_writes(d), 0);
    assert_int_equal(tdb_exec(d, sql), 0);
    struct store_stats s0;
    store_get_stats(st, &s0);
    assert_int_equal(pthread_create(&t, NULL, wait_main, &w), 0);
    /* The writer has taken the count (the queue is empty again) and, on
     * PostgreSQL, its UPDATE waits for our row lock. */
    struct tdb *probe = tdb_pg() ? tdb_open(&f->cfg) : NULL;
    for (int k = 0;; k++) {
        struct store_stats s;
        store_get_stats(st, &s);
        bool waiting =
            s.queued > s0.queued && s.queue_len == 0 &&
            (!probe ||
             tdb_int(probe, "SELECT count(*) FROM pg_locks l JOIN"
                            " pg_stat_activity a USING (pid) WHERE NOT"
                            " l.granted AND a.query LIKE '%prov_links%'") > 0);
        if (waiting)
            break;
        assert_false(waiter_done(&w)); /* it must wait for us */
        assert_true(k < 500);
        usleep(10 * 1000);
    }
    if (probe)
        tdb_close(probe);
    assert_false(waiter_done(&w));
    assert_int_equal(tdb_exec(d, "COMMIT"), 0);
    tdb_close(d);
    pthread_join(t, NULL);
    pthread_mutex_destroy(&w.lock);
    assert_int_equal(w.rc, 0);
    return w;
}

static void
test_count_behind_another_node(void **state)
{
    struct tdb_fixture *f = *state;
    struct store *st = tdb_fixture_open(f, "b");

    /* Used up by another node while this count waits. */
    put_link(st, "t1", 3, FAR);
    struct waiter w =
        count_behind(f, st, "UPDATE prov_links SET fetches=3 WHERE ext='100'");
    assert_false(w.c.counted);
    assert_true(w.c.found);
    assert_int_equal(w.c.fetches, 3);
    assert_int_equal(fetches_in_db(f), 3);

    /* Revoked by another node while this count waits: not counted, and
     * the row is not written back. */
    put_link(st, "t1", 3, FAR);
    w = count_behind(f, st, "DELETE FROM prov_links WHERE ext='100'");
    assert_false(w.c.counted);
    assert_false(w.c.found);
    assert_int_equal(tdb_count(&f->cfg, "SELECT count(*) FROM prov_links"), 0);
    /* Nor by a later count. */
    struct store_prov_count c;
    assert_int_equal(store_prov_count_fetch(st, "100", "t1", NOW, 5000, &c), 0);
    assert_false(c.found);
    assert_int_equal(tdb_count(&f->cfg, "SELECT count(*) FROM prov_links"), 0);
    store_close(st);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_count_until_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_counts_keep_the_limit,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_count_behind_another_node, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
