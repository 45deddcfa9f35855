/*
 * messages_test: the messages table ([messages] first pass). A message
 * (binary body included) survives a close and reopen once committed;
 * loads come in arrival order per extension, (received_us, id), with or
 * without bodies, also when ids come in blocks per node; the cap keeps
 * the newest max_per_ext by arrival and counts what it dropped; expired rows
 * are skipped and deleted by the load and by store_msg_purge (counted);
 * counts per extension never read a body; the last id survives the
 * deletion of every row; store_msg_get_async finds a message queued but
 * not yet committed, and says -ENOENT for a missing one.
 */
#include <errno.h>
#include <pthread.h>
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

struct fixture {
    char dir[64];
    char path[128];
    struct store_cfg cfg;
    struct store *st;
};

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    tdb_dir_make(f->dir, sizeof(f->dir), f->path, sizeof(f->path), "msgs");
    /* flush_ms 1000: what is on disk got there through a commit. */
    f->cfg = (struct store_cfg){
        .path = f->path, .flush_ms = 1000, .max_queue = 100000};
    tdb_cfg(&f->cfg, f->path);
    char err[256];
    assert_int_equal(store_open(&f->cfg, &f->st, err, sizeof(err)), 0);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->st);
    tdb_dir_remove(f->dir, f->path);
    free(f);
    return 0;
}

static void
reopen(struct fixture *f)
{
    char err[256];
    store_close(f->st);
    assert_int_equal(store_open(&f->cfg, &f->st, err, sizeof(err)), 0);
}

static struct store_msg
msg(uint64_t id, const char *ext, const char *body, int64_t received)
{
    return (struct store_msg){
        .id = id,
        .ext = ext,
        .sender_uri = "sip:101@example.com",
        .sender_name = "Bob",
        .call_id = "cid-1",
        .cseq = (uint32_t)id,
        .content_type = "text/plain",
        .body = body,
        .body_len = body ? strlen(body) : 0,
        .received_at = received,
        .expires_at = received + 7 * 86400,
    };
}

static void
put_commit(struct store *st, const struct store_msg *m, unsigned cap)
{
    struct store_mark mk = store_mark(st);
    assert_int_equal(store_msg_put(st, m, cap), 0);
    assert_int_equal(store_commit(st, mk, 5000), 0);
}

struct seen {
    uint64_t ids[64];
    char exts[64][8];
    size_t lens[64];
    char bodies[64][64];
    bool had_body[64];
    size_t n;
};

static int
collect(const struct store_msg *m, void *arg)
{
    struct seen *s = arg;
    assert_true(s->n < 64);
    s->ids[s->n] = m->id;
    snprintf(s->exts[s->n], sizeof(s->exts[0]), "%s", m->ext);
    s->lens[s->n] = m->body_len;
    s->had_body[s->n] = m->body != NULL;
    if (m->body && m->body_len < sizeof(s->bodies[0]))
        memcpy(s->bodies[s->n], m->body, m->body_len);
    s->n++;
    return 0;
}

static void
round_trip_across_reopen(void **state)
{
    struct fixture *f = *state;
    /* A body with a NUL and bytes that are not UTF-8: stored as a BLOB. */
    static const char bin[] = {'h', 'i', 0, (char)0xff, (char)0xc3, '!'};
    struct store_msg m = msg(7, "100", NULL, 1000);
    m.body = bin;
    m.body_len = sizeof(bin);
    m.sender_name = "Zoë";
    m.content_type = "message/cpim";
    m.call_id = "abc@host";
    m.cseq = 42;
    put_commit(f->st, &m, 0);
    reopen(f);

    struct seen s = {0};
    assert_int_equal(store_msg_load(f->st, NULL, 2000, true, collect, &s), 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.ids[0], 7);
    assert_int_equal(s.lens[0], sizeof(bin));
    assert_memory_equal(s.bodies[0], bin, sizeof(bin));
}

/* store_msg_get_async's answer, waited for. */
struct got {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int rc;
    uint64_t id;
    uint32_t cseq;
    int64_t received_at, expires_at, received_us;
    char ext[16], sender_uri[64], sender_name[64], call_id[64], ctype[64];
    char body[64];
    size_t body_len;
};

static void
on_get(int rc, const struct store_msg *m, void *arg)
{
    struct got *g = arg;
    pthread_mutex_lock(&g->mu);
    g->rc = rc;
    if (rc == 0) {
        g->id = m->id;
        g->cseq = m->cseq;
        g->received_at = m->received_at;
        g->expires_at = m->expires_at;
        g->received_us = m->received_us;
        snprintf(g->ext, sizeof(g->ext), "%s", m->ext);
        snprintf(g->sender_uri, sizeof(g->sender_uri), "%s", m->sender_uri);
        snprintf(g->sender_name, sizeof(g->sender_name), "%s", m->sender_name);
        snprintf(g->call_id, sizeof(g->call_id), "%s", m->call_id);
        snprintf(g->ctype, sizeof(g->ctype), "%s", m->content_type);
        g->body_len = m->body_len;
        if (m->body_len < sizeof(g->body))
            memcpy(g->body, m->body, m->body_len);
    } else {
        assert_null(m);
    }
    g->done = true;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void
get_wait(struct store *st, uint64_t id, struct got *g)
{
    memset(g, 0, sizeof(*g));
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    store_msg_get_async(st, id, on_get, g);
    pthread_mutex_lock(&g->mu);
    while (!g->done)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

static void
get_every_column(void **state)
{
    struct fixture *f = *state;
    static const char bin[] = {'a', 0, (char)0xfe, 'z'};
    struct store_msg m = msg(9, "100", NULL, 1234);
    m.body = bin;
    m.body_len = sizeof(bin);
    m.sender_name = "Zoë";
    m.content_type = "message/cpim";
    m.call_id = "abc@host";
    m.cseq = 42;
    m.received_us = 1234567890;
    put_commit(f->st, &m, 0);
    reopen(f);

    struct got g;
    get_wait(f->st, 9, &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.id, 9);
    assert_int_equal(g.cseq, 42);
    assert_int_equal(g.received_at, 1234);
    assert_int_equal(g.expires_at, 1234 + 7 * 86400);
    assert_int_equal(g.received_us, 1234567890);
    assert_string_equal(g.ext, "100");
    assert_string_equal(g.sender_uri, "sip:101@example.com");
    assert_string_equal(g.sender_name, "Zoë");
    assert_string_equal(g.call_id, "abc@host");
    assert_string_equal(g.ctype, "message/cpim");
    assert_int_equal(g.body_len, sizeof(bin));
    assert_memory_equal(g.body, bin, sizeof(bin));

    get_wait(f->st, 10, &g);
    assert_int_equal(g.rc, -ENOENT);
}

/* The read runs on the writer's connection after the writes queued before
 * it: a message just put is there before its commit (flush_ms 1000 and
 * no store_commit here). */
static void
get_sees_queued_put(void **state)
{
    struct fixture *f = *state;
    struct store_msg m = msg(3, "100", "queued", 1000);
    assert_int_equal(store_msg_put(f->st, &m, 0), 0);
    struct got g;
    get_wait(f->st, 3, &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.body_len, 6);
    assert_memory_equal(g.body, "queued", 6);
}

static void
load_in_order_per_extension(void **state)
{
    struct fixture *f = *state;
    /* Queued out of extension order; ids give the order inside one. */
    uint64_t ids[] = {4, 1, 6, 2, 5, 3};
    const char *exts[] = {"200", "100", "200", "100", "100", "200"};
    struct store_mark mk = store_mark(f->st);
    for (size_t i = 0; i < 6; i++) {
        struct store_msg m = msg(ids[i], exts[i], "x", 1000);
        assert_int_equal(store_msg_put(f->st, &m, 0), 0);
    }
    assert_int_equal(store_commit(f->st, mk, 5000), 0);

    struct seen s = {0};
    assert_int_equal(store_msg_load(f->st, NULL, 2000, false, collect, &s), 0);
    assert_int_equal(s.n, 6);
    uint64_t want[] = {1, 2, 5, 3, 4, 6};
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(s.ids[i], want[i]);
        assert_false(s.had_body[i]); /* no bodies asked for */
        assert_int_equal(s.lens[i], 1);
    }
    assert_string_equal(s.exts[0], "100");
    assert_string_equal(s.exts[3], "200");

    struct seen one = {0};
    assert_int_equal(store_msg_load(f->st, "200", 2000, true, collect, &one),
                     0);
    assert_int_equal(one.n, 3);
    assert_int_equal(one.ids[0], 3);
    assert_int_equal(one.ids[2], 6);
    assert_true(one.had_body[0]);
}

static void
cap_drops_oldest(void **state)
{
    struct fixture *f = *state;
    for (uint64_t id = 1; id <= 5; id++) {
        struct store_msg m = msg(id, "100", "x", 1000);
        put_commit(f->st, &m, 3);
    }
    struct store_msg other = msg(6, "200", "y", 1000);
    put_commit(f->st, &other, 3); /* another extension is not counted */

    struct seen s = {0};
    assert_int_equal(store_msg_load(f->st, "100", 2000, false, collect, &s), 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.ids[0], 3);
    assert_int_equal(s.ids[1], 4);
    assert_int_equal(s.ids[2], 5);
    struct store_stats stats;
    store_get_stats(f->st, &stats);
    assert_int_equal(stats.msg_capped, 2);
}

/* Two nodes' messages to one extension (docs/cluster.md): ids come in
 * blocks per node (node a 1.., node b 1001..), so the id order is not the
 * order received. Loads and the cap go by arrival, (received_us, id):
 * the load gives b1 a1 b2 a2 (not a1 a2 b1 b2), and the cap drops the
 * oldest by arrival (b1, although a1 has the lowest id). */
static void
load_and_cap_by_arrival(void **state)
{
    struct fixture *f = *state;
    const int64_t t0 = 1700000000000000; /* us */
    struct {
        uint64_t id;
        const char *body;
        int64_t us;
    } in[] = {
        /* queued in id order, received interleaved */
        {1, "a1", t0 + 1000},
        {2, "a2", t0 + 3000},
        {1001, "b1", t0},
        {1002, "b2", t0 + 2000},
    };
    for (size_t i = 0; i < 4; i++) {
        struct store_msg m = msg(in[i].id, "100", in[i].body, 1700000000);
        m.received_us = in[i].us;
        put_commit(f->st, &m, 4);
    }
    struct seen s = {0};
    assert_int_equal(
        store_msg_load(f->st, "100", 1700000001, true, collect, &s), 0);
    assert_int_equal(s.n, 4);
    const char *want[] = {"b1", "a1", "b2", "a2"};
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(s.bodies[i], want[i]);

    /* A fifth (node a, last): the cap of 4 drops b1, the first received. */
    struct store_msg m = msg(3, "100", "a3", 1700000000);
    m.received_us = t0 + 4000;
    put_commit(f->st, &m, 4);
    struct store_stats stats;
    store_get_stats(f->st, &stats);
    assert_int_equal(stats.msg_capped, 1);
    reopen(f);
    struct seen all = {0};
    assert_int_equal(
        store_msg_load(f->st, NULL, 1700000001, true, collect, &all), 0);
    assert_int_equal(all.n, 4);
    const char *kept[] = {"a1", "b2", "a2", "a3"};
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(all.bodies[i], kept[i]);
}

/* A database from before schema version 7 (no received_us): the
 * migration gives its rows their second (received_at * 1000000), so
 * they load by received time and, within one second, in id order (the
 * order one node received them in). */
static void
migration_received_us_keeps_old_order(void **state)
{
    struct fixture *f = *state;
    store_close(f->st);
    f->st = NULL;
    struct tdb *d = tdb_open(&f->cfg);
    assert_non_null(d);
    assert_int_equal(tdb_exec(d,
                              "DROP INDEX messages_ext;"
                              "ALTER TABLE messages DROP COLUMN received_us;"
                              "CREATE INDEX messages_ext ON messages(ext, id);"
                              "DELETE FROM schema_version WHERE version = 7;"),
                     0);
    static const char *const rows[] = {
        /* id, received_at: 3 came a second before 1 and 2 */
        "(1, 2001)", "(2, 2001)", "(3, 2000)"};
    for (size_t i = 0; i < 3; i++) {
        char sql[512];
        /* Both backends name the columns of VALUES column1, column2. */
        snprintf(sql, sizeof(sql),
                 "INSERT INTO messages(id, ext, sender_uri, sender_name,"
                 " call_id, cseq, content_type, body, received_at,"
                 " expires_at) SELECT v.column1, '100', 's', '', 'c', 1,"
                 " 'text/plain', %s, v.column2, 999999 FROM (VALUES %s) v",
                 tdb_pg() ? "'x'::bytea" : "x'78'", rows[i]);
        assert_int_equal(tdb_exec(d, sql), 0);
    }
    tdb_close(d);
    char err[256];
    assert_int_equal(store_open(&f->cfg, &f->st, err, sizeof(err)), 0);
    assert_int_equal(tdb_count(&f->cfg, "SELECT max(version) FROM"
                                        " schema_version"),
                     STORE_SCHEMA_VERSION);
    struct seen s = {0};
    assert_int_equal(store_msg_load(f->st, "100", 2002, false, collect, &s), 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.ids[0], 3);
    assert_int_equal(s.ids[1], 1);
    assert_int_equal(s.ids[2], 2);
    struct got g;
    get_wait(f->st, 1, &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.received_us, 2001 * 1000000LL);
    if (!tdb_pg())
        return;
    /* PostgreSQL: a row from a node still running an older pushpbx (no
     * received_us named) gets the server's clock, so it is not put
     * before every other. */
    long long clock_s = tdb_count(
        &f->cfg, "INSERT INTO messages(id, ext, sender_uri, sender_name,"
                 " call_id, cseq, content_type, body, received_at,"
                 " expires_at) VALUES(4, '100', 's', '', 'c', 1,"
                 " 'text/plain', 'x'::bytea, 2001, 999999) RETURNING"
                 " 1000 + received_us / 1000000 -"
                 " extract(epoch FROM now())::bigint");
    assert_true(clock_s >= 990 && clock_s <= 1010); /* -1: no row */
}

static void
expiry_on_load_and_purge(void **state)
{
    struct fixture *f = *state;
    struct store_msg a = msg(1, "100", "old", 1000);
    a.expires_at = 1500;
    struct store_msg b = msg(2, "100", "mid", 1000);
    b.expires_at = 2500;
    struct store_msg c = msg(3, "100", "new", 1000);
    c.expires_at = 3500;
    struct store_mark mk = store_mark(f->st);
    assert_int_equal(store_msg_put(f->st, &a, 0), 0);
    assert_int_equal(store_msg_put(f->st, &b, 0), 0);
    assert_int_equal(store_msg_put(f->st, &c, 0), 0);
    assert_int_equal(store_commit(f->st, mk, 5000), 0);

    /* At 1500 the first has expired (expires_at <= now): skipped and
     * deleted through the writer. */
    struct seen s = {0};
    assert_int_equal(store_msg_load(f->st, NULL, 1500, false, collect, &s), 0);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.ids[0], 2);
    assert_int_equal(store_sync(f->st), 0);

    mk = store_mark(f->st);
    assert_int_equal(store_msg_purge(f->st, 2600), 0);
    assert_int_equal(store_commit(f->st, mk, 5000), 0);
    struct store_stats stats;
    store_get_stats(f->st, &stats);
    assert_int_equal(stats.msg_purged, 1); /* b; a went at the load */
    memset(&s, 0, sizeof(s));
    assert_int_equal(store_msg_load(f->st, NULL, 0, false, collect, &s), 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.ids[0], 3);
}

/* Message ids for a cluster: PostgreSQL hands out disjoint blocks from
 * one sequence, to this store and to a second one on the same database
 * (another node), and after a reopen; SQLite has none. */
static void
id_blocks_disjoint_between_stores(void **state)
{
    struct fixture *f = *state;
    uint64_t a = 0, b = 0, c = 0;

    if (!tdb_pg()) {
        assert_int_equal(store_msg_id_block(f->st, &a), -ENOTSUP);
        return;
    }
    assert_int_equal(store_msg_id_block(f->st, &a), 0);
    assert_true(a >= 1);

    struct store *other;
    char err[256];
    assert_int_equal(store_open(&f->cfg, &other, err, sizeof(err)), 0);
    assert_int_equal(store_msg_id_block(other, &b), 0);
    assert_int_equal(store_msg_id_block(f->st, &c), 0);
    store_close(other);
    /* Three blocks of STORE_MSG_ID_BLOCK ids, none overlapping. */
    assert_true(b >= a + STORE_MSG_ID_BLOCK);
    assert_true(c >= b + STORE_MSG_ID_BLOCK);
    /* And a reopen (a node's restart) goes on above them. */
    reopen(f);
    uint64_t d = 0;
    assert_int_equal(store_msg_id_block(f->st, &d), 0);
    assert_true(d >= c + STORE_MSG_ID_BLOCK);
}

struct counts {
    char ext[4][8];
    uint64_t count[4], bytes[4];
    int64_t oldest[4];
    size_t n;
};

static int
collect_count(const struct store_msg_count *c, void *arg)
{
    struct counts *s = arg;
    assert_true(s->n < 4);
    snprintf(s->ext[s->n], sizeof(s->ext[0]), "%s", c->ext);
    s->count[s->n] = c->count;
    s->bytes[s->n] = c->bytes;
    s->oldest[s->n] = c->oldest_received_at;
    s->n++;
    return 0;
}

static void
counts_per_extension(void **state)
{
    struct fixture *f = *state;
    struct store_msg ms[] = {
        msg(1, "200", "abc", 1100),
        msg(2, "100", "hello", 1200),
        msg(3, "100", "hi", 1000),
        msg(4, "300", "gone", 900),
    };
    ms[3].expires_at = 1500; /* expired at 2000: not counted */
    struct store_mark mk = store_mark(f->st);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(store_msg_put(f->st, &ms[i], 0), 0);
    assert_int_equal(store_commit(f->st, mk, 5000), 0);

    struct counts c = {0};
    assert_int_equal(store_msg_counts(f->st, 2000, collect_count, &c), 0);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.ext[0], "100");
    assert_int_equal(c.count[0], 2);
    assert_int_equal(c.bytes[0], 7);
    assert_int_equal(c.oldest[0], 1000);
    assert_string_equal(c.ext[1], "200");
    assert_int_equal(c.count[1], 1);
    assert_int_equal(c.bytes[1], 3);
}

static void
last_id_survives_deletes(void **state)
{
    struct fixture *f = *state;
    uint64_t last = 99;
    assert_int_equal(store_msg_last_id(f->st, &last), 0);
    assert_int_equal(last, 0);

    struct store_msg m = msg(41, "100", "x", 1000);
    put_commit(f->st, &m, 0);
    struct store_mark mk = store_mark(f->st);
    assert_int_equal(store_msg_del(f->st, 41), 0);
    assert_int_equal(store_commit(f->st, mk, 5000), 0);
    reopen(f);
    assert_int_equal(store_msg_last_id(f->st, &last), 0);
    assert_int_equal(last, 41);

    struct seen s = {0};
    assert_int_equal(store_msg_load(f->st, NULL, 0, false, collect, &s), 0);
    assert_int_equal(s.n, 0);
}

static void
del_ext_and_bad_input(void **state)
{
    struct fixture *f = *state;
    struct store_msg a = msg(1, "100", "a", 1000), b = msg(2, "200", "b", 1000);
    put_commit(f->st, &a, 0);
    put_commit(f->st, &b, 0);
    struct store_mark mk = store_mark(f->st);
    assert_int_equal(store_msg_del_ext(f->st, "100"), 0);
    assert_int_equal(store_commit(f->st, mk, 5000), 0);
    struct seen s = {0};
    assert_int_equal(store_msg_load(f->st, NULL, 0, false, collect, &s), 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.ids[0], 2);

    struct store_msg bad = msg(0, "100", "x", 1000);
    assert_int_equal(store_msg_put(f->st, &bad, 0), -EINVAL);
    bad = msg(5, "", "x", 1000);
    assert_int_equal(store_msg_put(f->st, &bad, 0), -EINVAL);
    /* An empty body is a valid message (stored as an empty BLOB). */
    struct store_msg empty = msg(6, "100", NULL, 1000);
    put_commit(f->st, &empty, 0);
    struct got g;
    get_wait(f->st, 6, &g);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.body_len, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(round_trip_across_reopen, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(get_every_column, setup, teardown),
        cmocka_unit_test_setup_teardown(get_sees_queued_put, setup, teardown),
        cmocka_unit_test_setup_teardown(load_in_order_per_extension, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(cap_drops_oldest, setup, teardown),
        cmocka_unit_test_setup_teardown(load_and_cap_by_arrival, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(migration_received_us_keeps_old_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(expiry_on_load_and_purge, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(counts_per_extension, setup, teardown),
        cmocka_unit_test_setup_teardown(last_id_survives_deletes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(del_ext_and_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(id_blocks_disjoint_between_stores,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
