/*
 * calls_test: call records in the store (store.h "call records", table
 * call_records), on the backend under test (testdb.h): a record
 * round-trips with every field and the store's node; the load is newest
 * first by end time and stops at its limit; a second put of the same call
 * (its media figures) replaces the row; the cap keeps the newest rows of
 * the writing node only, in the same batch; a record survives closing and
 * reopening the store; the listing has its index on the end time.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/store.h"
#include "testdb.h"

static int
setup(void **state)
{
    *state = tdb_fixture_new("calls", 20, "A");
    return 0;
}

static int
teardown(void **state)
{
    tdb_fixture_free(*state);
    return 0;
}

static struct store_call
call(const char *call_id, int64_t ended_ms)
{
    return (struct store_call){.call_id = call_id,
                               .caller = "100",
                               .callee = "101",
                               .outcome = "answered",
                               .status = 200,
                               .answered_by = "sip:101@10.0.0.2:5062",
                               .branches = 2,
                               .started_ms = ended_ms - 5000,
                               .ringing_ms = ended_ms - 4000,
                               .ended_ms = ended_ms};
}

/* Copies of the loaded rows (the callback's are borrowed). */
#define MAXROWS 16
struct got {
    size_t n;
    struct row {
        uint64_t id;
        char node[16], call_id[32], caller[8], callee[8], outcome[16];
        char answered_by[64];
        struct store_call c; /* strings cleared */
    } r[MAXROWS];
    size_t stop_at; /* return 1 after this many (0: never) */
};

static int
collect(const struct store_call *c, void *arg)
{
    struct got *g = arg;
    assert_true(g->n < MAXROWS);
    struct row *r = &g->r[g->n++];
    r->id = c->id;
    snprintf(r->node, sizeof(r->node), "%s", c->node);
    snprintf(r->call_id, sizeof(r->call_id), "%s", c->call_id);
    snprintf(r->caller, sizeof(r->caller), "%s", c->caller);
    snprintf(r->callee, sizeof(r->callee), "%s", c->callee);
    snprintf(r->outcome, sizeof(r->outcome), "%s", c->outcome);
    snprintf(r->answered_by, sizeof(r->answered_by), "%s", c->answered_by);
    r->c = *c;
    r->c.node = r->c.call_id = r->c.caller = r->c.callee = NULL;
    r->c.outcome = r->c.answered_by = NULL;
    return g->stop_at && g->n == g->stop_at ? 1 : 0;
}

static void
test_round_trip_and_order(void **state)
{
    struct tdb_fixture *f = *state;
    struct store *st = tdb_fixture_open(f, "A");
    struct store_call a = call("c-old", 1700000001000);
    struct store_call b = call("c-new", 1700000009000);
    b.outcome = "no_answer";
    b.status = 480;
    b.answered_by = "";
    b.ringing_ms = 0;
    b.media = true;
    b.media_stats = true;
    b.media_one_way = true;
    b.leg[0] = (struct store_call_leg){.packets = 500,
                                       .bytes = 80000,
                                       .lost = 3,
                                       .jitter = 7,
                                       .has_lost = true,
                                       .has_jitter = true};
    b.leg[1] = (struct store_call_leg){.packets = 1, .bytes = 172};
    struct store_call m = call("c-mid", 1700000005000);
    m.node = "B"; /* another node's record, written here */

    assert_int_equal(store_call_put(st, &a, 0), 0);
    assert_int_equal(store_call_put(st, &b, 0), 0);
    assert_int_equal(store_call_put(st, &m, 0), 0);
    struct store_call bad = call("", 1);
    assert_int_equal(store_call_put(st, &bad, 0), -EINVAL);
    assert_int_equal(store_sync(st), 0);

    struct got g = {0};
    assert_int_equal(store_call_load(st, 10, collect, &g), 0);
    assert_int_equal(g.n, 3);
    assert_string_equal(g.r[0].call_id, "c-new");
    assert_string_equal(g.r[1].call_id, "c-mid");
    assert_string_equal(g.r[2].call_id, "c-old");
    /* the store's node when the put names none */
    assert_string_equal(g.r[0].node, "A");
    assert_string_equal(g.r[1].node, "B");
    assert_string_equal(g.r[2].node, "A");
    assert_true(g.r[0].id != g.r[1].id && g.r[1].id != g.r[2].id);

    const struct store_call *c = &g.r[0].c;
    assert_string_equal(g.r[0].caller, "100");
    assert_string_equal(g.r[0].callee, "101");
    assert_string_equal(g.r[0].outcome, "no_answer");
    assert_string_equal(g.r[0].answered_by, "");
    assert_int_equal(c->status, 480);
    assert_int_equal(c->branches, 2);
    assert_int_equal(c->started_ms, 1700000004000);
    assert_int_equal(c->ringing_ms, 0);
    assert_int_equal(c->ended_ms, 1700000009000);
    assert_true(c->media && c->media_stats && c->media_one_way);
    assert_false(c->media_none);
    assert_int_equal(c->leg[0].packets, 500);
    assert_int_equal(c->leg[0].bytes, 80000);
    assert_int_equal(c->leg[0].lost, 3);
    assert_int_equal(c->leg[0].jitter, 7);
    assert_true(c->leg[0].has_lost && c->leg[0].has_jitter);
    assert_int_equal(c->leg[1].packets, 1);
    assert_int_equal(c->leg[1].bytes, 172);
    assert_false(c->leg[1].has_lost || c->leg[1].has_jitter);
    assert_string_equal(g.r[2].answered_by, "sip:101@10.0.0.2:5062");
    assert_int_equal(g.r[2].c.ringing_ms, 1699999997000);
    assert_false(g.r[2].c.media);

    /* limit, and a callback that stops the walk */
    struct got two = {0};
    assert_int_equal(store_call_load(st, 2, collect, &two), 0);
    assert_int_equal(two.n, 2);
    struct got one = {.stop_at = 1};
    assert_int_equal(store_call_load(st, 10, collect, &one), 1);
    assert_int_equal(one.n, 1);
    store_close(st);

    /* durable: a new store (a restarted daemon) reads them back */
    st = tdb_fixture_open(f, "A");
    struct got again = {0};
    assert_int_equal(store_call_load(st, 10, collect, &again), 0);
    assert_int_equal(again.n, 3);
    assert_string_equal(again.r[0].call_id, "c-new");
    store_close(st);
}

static void
test_media_update_replaces_row(void **state)
{
    struct tdb_fixture *f = *state;
    struct store *st = tdb_fixture_open(f, "A");
    struct store_call a = call("c1", 1700000001000);
    a.media = true;

    assert_int_equal(store_call_put(st, &a, 10), 0);
    assert_int_equal(store_sync(st), 0);
    struct got g = {0};
    assert_int_equal(store_call_load(st, 10, collect, &g), 0);
    assert_int_equal(g.n, 1);
    assert_false(g.r[0].c.media_stats);

    /* the figures come at the BYE: the same call again */
    a.media_stats = true;
    a.media_none = true;
    a.leg[1].packets = 9;
    assert_int_equal(store_call_put(st, &a, 10), 0);
    assert_int_equal(store_sync(st), 0);
    struct got h = {0};
    assert_int_equal(store_call_load(st, 10, collect, &h), 0);
    assert_int_equal(h.n, 1);
    assert_int_equal(h.r[0].id, g.r[0].id);
    assert_true(h.r[0].c.media_stats && h.r[0].c.media_none);
    assert_int_equal(h.r[0].c.leg[1].packets, 9);
    /* the same Call-ID started again is another call */
    struct store_call b = call("c1", 1700000009000);
    assert_int_equal(store_call_put(st, &b, 10), 0);
    assert_int_equal(store_sync(st), 0);
    assert_int_equal(tdb_count(&f->cfg, "SELECT count(*) FROM call_records"),
                     2);
    store_close(st);
}

static void
test_cap_keeps_newest_of_node(void **state)
{
    struct tdb_fixture *f = *state;
    struct store *st = tdb_fixture_open(f, "A");
    char id[16];

    /* two rows of node B, untouched by A's cap */
    for (int k = 0; k < 2; k++) {
        snprintf(id, sizeof(id), "b%d", k);
        struct store_call c = call(id, 1600000000000 + k);
        c.node = "B";
        assert_int_equal(store_call_put(st, &c, 0), 0);
    }
    for (int k = 0; k < 7; k++) {
        snprintf(id, sizeof(id), "a%d", k);
        assert_int_equal(store_call_put(st, &(struct store_call){0}, 3),
                         -EINVAL);
        struct store_call c = call(id, 1700000000000 + k * 1000);
        assert_int_equal(store_call_put(st, &c, 3), 0);
    }
    assert_int_equal(store_sync(st), 0);
    struct store_stats s;
    store_get_stats(st, &s);
    assert_int_equal(s.calls_capped, 4);
    struct got g = {0};
    assert_int_equal(store_call_load(st, 10, collect, &g), 0);
    assert_int_equal(g.n, 5);
    assert_string_equal(g.r[0].call_id, "a6");
    assert_string_equal(g.r[1].call_id, "a5");
    assert_string_equal(g.r[2].call_id, "a4");
    assert_string_equal(g.r[3].call_id, "b1");
    assert_string_equal(g.r[4].call_id, "b0");
    store_close(st);
}

static void
test_end_time_index(void **state)
{
    struct tdb_fixture *f = *state;
    struct store *st = tdb_fixture_open(f, "A");
    int v = 0;

    assert_int_equal(store_schema_version(st, &v), 0);
    assert_int_equal(v, STORE_SCHEMA_VERSION);
    store_close(st);
    assert_int_equal(
        tdb_count(&f->cfg,
                  tdb_pg() ? "SELECT count(*) FROM pg_indexes WHERE"
                             " indexname='call_records_ended'"
                           : "SELECT count(*) FROM sqlite_master WHERE"
                             " name='call_records_ended'"),
        1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_and_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_media_update_replaces_row, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cap_keeps_newest_of_node, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_end_time_index, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
