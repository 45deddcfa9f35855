/*
 * msgstore_test: the stored-message index over a real store in a temp
 * directory ([messages] first pass). A put is acknowledged only once
 * committed and survives a restart of index and store; claims give the
 * oldest first, one at a time per extension, with the body read back
 * from the store; a failed delivery keeps the message first; a
 * delivered one is gone from memory and disk; the cap drops the oldest
 * (counted, the new one still accepted); the TTL drops messages from
 * memory and disk; ids continue after a restart even when every message
 * was delivered; the content-type checks ignore case and parameters;
 * messages of two cluster nodes (ids in blocks per node) are kept,
 * capped, loaded and delivered in arrival order, and one node's order is
 * the order received even when its clock steps back.
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

#include "config/cfg.h"
#include "registrar/msgstore.h"
#include "registrar/reg_cfg.h"
#include "store/store.h"

struct fixture {
    char dir[64];
    char path[128];
    struct store_cfg scfg;
    struct store *st;
    struct reg_msg_table *t;
    struct reg_msg_cfg cfg;
    int64_t now_ms;
};

static int64_t
fake_clock(void *arg)
{
    return ((struct fixture *)arg)->now_ms;
}

static void
open_all(struct fixture *f)
{
    char err[256];
    assert_int_equal(store_open(&f->scfg, &f->st, err, sizeof(err)), 0);
    struct reg_msg_opts o = {
        .store = f->st, .cfg = &f->cfg, .clock_ms = fake_clock, .clock_arg = f};
    assert_int_equal(reg_msg_open(&o, &f->t, err, sizeof(err)), 0);
}

static void
close_all(struct fixture *f)
{
    reg_msg_close(f->t);
    store_close(f->st);
    f->t = NULL;
    f->st = NULL;
}

static char *types[] = {"text/plain", "message/cpim",
                        "application/im-iscomposing+xml"};

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/pp-msgidx-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/t.db", f->dir);
    f->scfg = (struct store_cfg){
        .path = f->path, .flush_ms = 1000, .max_queue = 100000};
    f->cfg = (struct reg_msg_cfg){
        .ttl_days = 7,
        .max_per_extension = 1000,
        .max_bytes = 64,
        .content_types = {.items = types, .count = 3},
    };
    f->now_ms = 1700000000000;
    open_all(f);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    char p[160];
    static const char *const sfx[] = {"", "-wal", "-shm"};

    close_all(f);
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s%s", f->path, sfx[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* One callback's result, waited for (callbacks run on the writer). */
struct wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int rc;
    uint64_t id;
    char body[128];
    size_t body_len;
    char call_id[64];
    uint32_t cseq;
};

static void
wait_init(struct wait *w)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
}

static void
wait_for(struct wait *w)
{
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

static void
on_put(int rc, uint64_t id, void *arg)
{
    struct wait *w = arg;
    pthread_mutex_lock(&w->mu);
    w->rc = rc;
    w->id = id;
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void
on_claim(int rc, const struct store_msg *m, void *arg)
{
    struct wait *w = arg;
    pthread_mutex_lock(&w->mu);
    w->rc = rc;
    if (rc == 0) {
        w->id = m->id;
        w->cseq = m->cseq;
        w->body_len = m->body_len;
        memcpy(w->body, m->body, m->body_len + 1); /* NUL-terminated */
        snprintf(w->call_id, sizeof(w->call_id), "%s", m->call_id);
    }
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Store text for ext; returns the id after the commit. */
static uint64_t
put(struct fixture *f, const char *ext, const char *text, uint32_t cseq)
{
    struct store_msg m = {
        .ext = ext,
        .sender_uri = "sip:101@example.com",
        .sender_name = "Bob",
        .call_id = "conv-1@host",
        .cseq = cseq,
        .content_type = "text/plain",
        .body = text,
        .body_len = strlen(text),
    };
    struct wait w;
    wait_init(&w);
    assert_int_equal(reg_msg_put(f->t, &m, on_put, &w), 0);
    wait_for(&w);
    assert_int_equal(w.rc, 0);
    return w.id;
}

/* Claim ext's next message; returns the callback's rc (body in *w). */
static int
claim(struct fixture *f, const char *ext, struct wait *w)
{
    wait_init(w);
    int rc = reg_msg_claim(f->t, ext, on_claim, w);
    if (rc < 0) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        return rc;
    }
    wait_for(w);
    return w->rc;
}

static void
put_claim_deliver_in_order(void **state)
{
    struct fixture *f = *state;
    uint64_t a = put(f, "100", "one", 1);
    uint64_t b = put(f, "100", "two", 2);
    uint64_t c = put(f, "100", "three", 3);
    assert_true(a < b && b < c);
    assert_int_equal(reg_msg_count(f->t, "100"), 3);
    assert_int_equal(reg_msg_count(f->t, "200"), 0);

    const char *want[] = {"one", "two", "three"};
    for (int i = 0; i < 3; i++) {
        struct wait w;
        assert_int_equal(claim(f, "100", &w), 0);
        assert_string_equal(w.body, want[i]);
        assert_int_equal(w.cseq, (uint32_t)i + 1);
        assert_string_equal(w.call_id, "conv-1@host");
        /* One delivery at a time per extension: order is kept. */
        struct wait busy;
        assert_int_equal(claim(f, "100", &busy), -EBUSY);
        reg_msg_done(f->t, "100", w.id, true);
    }
    struct wait w;
    assert_int_equal(claim(f, "100", &w), -ENOENT);

    struct reg_msg_stats s;
    reg_msg_get_stats(f->t, &s);
    assert_int_equal(s.stored, 3);
    assert_int_equal(s.delivered, 3);
    assert_int_equal(s.waiting, 0);

    /* Gone from the store too. */
    close_all(f);
    open_all(f);
    assert_int_equal(reg_msg_count(f->t, "100"), 0);
}

static void
failed_delivery_keeps_it_first(void **state)
{
    struct fixture *f = *state;
    uint64_t a = put(f, "100", "first", 1);
    put(f, "100", "second", 2);
    struct wait w;
    assert_int_equal(claim(f, "100", &w), 0);
    assert_int_equal(w.id, a);
    reg_msg_done(f->t, "100", a, false);
    assert_int_equal(reg_msg_count(f->t, "100"), 2);
    assert_int_equal(claim(f, "100", &w), 0);
    assert_int_equal(w.id, a);
    assert_string_equal(w.body, "first");
    reg_msg_done(f->t, "100", a, true);
    assert_int_equal(claim(f, "100", &w), 0);
    assert_string_equal(w.body, "second");
}

static void
survives_restart(void **state)
{
    struct fixture *f = *state;
    uint64_t a = put(f, "100", "kept 1", 7);
    put(f, "100", "kept 2", 8);
    put(f, "200", "other", 1);
    close_all(f); /* no store_sync: the 202 came after the commit */
    open_all(f);
    assert_int_equal(reg_msg_count(f->t, "100"), 2);
    assert_int_equal(reg_msg_count(f->t, "200"), 1);
    struct reg_msg_info info[4];
    assert_int_equal(reg_msg_list_ext(f->t, "100", info, 4), 2);
    assert_int_equal(info[0].id, a);
    assert_int_equal(info[0].body_len, 6);
    assert_int_equal(info[0].received_at, f->now_ms / 1000);
    assert_int_equal(info[0].expires_at, f->now_ms / 1000 + 7 * 86400);
    struct wait w;
    assert_int_equal(claim(f, "100", &w), 0);
    assert_string_equal(w.body, "kept 1");
    assert_int_equal(w.cseq, 7);
}

static void
ids_never_reused(void **state)
{
    struct fixture *f = *state;
    uint64_t a = put(f, "100", "x", 1);
    struct wait w;
    assert_int_equal(claim(f, "100", &w), 0);
    reg_msg_done(f->t, "100", a, true);
    close_all(f);
    open_all(f);
    uint64_t b = put(f, "100", "y", 2);
    assert_true(b > a);
}

/* Two indexes on one table (two cluster nodes; docs/cluster.md):
 * reg_msg_refresh makes the other's puts, deliveries and removals show;
 * a message delivered here is not brought back by a refresh that may
 * still see its row. */
static void
refresh_follows_another_index(void **state)
{
    struct fixture *f = *state;
    struct reg_msg_table *t2;
    char err[256];
    struct reg_msg_opts o = {
        .store = f->st, .cfg = &f->cfg, .clock_ms = fake_clock, .clock_arg = f};
    assert_int_equal(reg_msg_open(&o, &t2, err, sizeof(err)), 0);

    uint64_t a = put(f, "100", "one", 1);
    uint64_t b = put(f, "100", "two", 2);
    put(f, "200", "other", 1);
    assert_int_equal(reg_msg_count(t2, "100"), 0);
    assert_int_equal(reg_msg_refresh(t2, "100"), 2);
    assert_int_equal(reg_msg_count(t2, "100"), 2);
    assert_int_equal(reg_msg_count(t2, "200"), 0);
    assert_int_equal(reg_msg_refresh(t2, "100"), 0); /* nothing new */

    /* t2 delivers the first; a refresh of t2 at once (its delete perhaps
     * not committed yet) does not bring it back. */
    struct wait w;
    wait_init(&w);
    assert_int_equal(reg_msg_claim(t2, "100", on_claim, &w), 0);
    wait_for(&w);
    assert_int_equal(w.rc, 0);
    assert_int_equal(w.id, a);
    assert_string_equal(w.body, "one");
    reg_msg_done(t2, "100", a, true);
    assert_int_equal(reg_msg_refresh(t2, "100"), 0);
    assert_int_equal(reg_msg_count(t2, "100"), 1);

    /* Once committed, the first index drops it too. */
    assert_int_equal(store_sync(f->st), 0);
    assert_int_equal(reg_msg_refresh(f->t, "100"), 0);
    struct reg_msg_info info[4];
    assert_int_equal(reg_msg_list_ext(f->t, "100", info, 4), 1);
    assert_int_equal(info[0].id, b);

    /* Every extension at once: 200 appears at t2; removed there, it goes
     * from the first index as well. */
    assert_int_equal(reg_msg_refresh(t2, NULL), 1);
    assert_int_equal(reg_msg_count(t2, "200"), 1);
    assert_int_equal(reg_msg_remove_ext(t2, "200"), 1);
    assert_int_equal(store_sync(f->st), 0);
    assert_int_equal(reg_msg_refresh(f->t, NULL), 0);
    assert_int_equal(reg_msg_count(f->t, "200"), 0);
    assert_int_equal(reg_msg_count(f->t, "100"), 1);
    struct reg_msg_stats s;
    reg_msg_get_stats(f->t, &s);
    assert_int_equal(s.waiting, 1);
    reg_msg_close(t2);
}

/* Node b of a cluster stores a message for ext in the shared table as its
 * reg_msg_put would: an id from its own block, received_us from its own
 * clock. */
static void
other_node_put(struct fixture *f, const char *ext, uint64_t id,
               const char *text, int64_t received_ms)
{
    struct store_msg m = {
        .id = id,
        .ext = ext,
        .sender_uri = "sip:101@example.com",
        .call_id = "conv-b@host",
        .cseq = 1,
        .content_type = "text/plain",
        .body = text,
        .body_len = strlen(text),
        .received_at = received_ms / 1000,
        .expires_at = received_ms / 1000 + 7 * 86400,
        .received_us = received_ms * 1000,
    };
    struct store_mark mk = store_mark(f->st);
    assert_int_equal(store_msg_put(f->st, &m, f->cfg.max_per_extension), 0);
    assert_int_equal(store_commit(f->st, mk, 5000), 0);
}

/* ext's message ids, oldest first, as the index gives them out. */
static size_t
ids_of(struct fixture *f, const char *ext, uint64_t *ids, size_t cap)
{
    struct reg_msg_info info[16];
    size_t n = reg_msg_list_ext(f->t, ext, info, 16);
    assert_true(n <= cap && n <= 16);
    for (size_t i = 0; i < n; i++)
        ids[i] = info[i].id;
    return n;
}

static void
assert_ids(struct fixture *f, const char *ext, const uint64_t *want, size_t n)
{
    uint64_t got[16];
    assert_int_equal(ids_of(f, ext, got, 16), n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(got[i], want[i]);
}

/* Two nodes (docs/cluster.md): this index is node a (ids 1..), node b
 * stores into the same table with ids above a's (101.., later 201: this
 * SQLite index numbers on after the highest id it loads, so b's ids stay
 * clear of those a takes after a restart). The
 * messages arrive b1 a1 b2 a2, one millisecond apart; a hears of b's
 * later (reg_msg_refresh). The index, the start-up load, the cap and the
 * delivery all go by arrival, not by id: b1 a1 b2 a2. A message stored
 * at a after a knew of one from b comes after it, even when b's clock is
 * ahead. One delivery per extension at a time, also when an older
 * message is learnt of while a younger one is out. */
static void
two_nodes_interleaved_by_arrival(void **state)
{
    struct fixture *f = *state;
    close_all(f);
    f->cfg.max_per_extension = 4;
    open_all(f);
    const int64_t t0 = f->now_ms;

    f->now_ms = t0 + 1;
    uint64_t a1 = put(f, "100", "a1", 1);
    f->now_ms = t0 + 3;
    uint64_t a2 = put(f, "100", "a2", 2);
    other_node_put(f, "100", 101, "b1", t0);
    other_node_put(f, "100", 102, "b2", t0 + 2);
    assert_int_equal(reg_msg_refresh(f->t, "100"), 2);
    assert_ids(f, "100", (uint64_t[]){101, a1, 102, a2}, 4);

    /* The same order loaded at start. */
    close_all(f);
    open_all(f);
    assert_ids(f, "100", (uint64_t[]){101, a1, 102, a2}, 4);

    /* Full: a3 drops b1, the first received (not a1, the lowest id), in
     * memory and in the table. */
    f->now_ms = t0 + 4;
    uint64_t a3 = put(f, "100", "a3", 3);
    assert_ids(f, "100", (uint64_t[]){a1, 102, a2, a3}, 4);
    struct reg_msg_stats s;
    reg_msg_get_stats(f->t, &s);
    assert_int_equal(s.dropped, 1);
    close_all(f);
    open_all(f);
    assert_ids(f, "100", (uint64_t[]){a1, 102, a2, a3}, 4);

    /* Delivered in that order, one at a time. */
    const char *want[] = {"a1", "b2", "a2", "a3"};
    for (int i = 0; i < 4; i++) {
        struct wait w;
        assert_int_equal(claim(f, "100", &w), 0);
        assert_string_equal(w.body, want[i]);
        struct wait busy;
        assert_int_equal(claim(f, "100", &busy), -EBUSY);
        reg_msg_done(f->t, "100", w.id, true);
    }

    /* b's clock is 10 s ahead: its b3 is known here before a4 is put, so
     * a4 goes after it. */
    other_node_put(f, "100", 201, "b3", t0 + 10000);
    assert_int_equal(reg_msg_refresh(f->t, "100"), 1);
    f->now_ms = t0 + 5;
    uint64_t a4 = put(f, "100", "a4", 4);
    assert_ids(f, "100", (uint64_t[]){201, a4}, 2);
    close_all(f);
    open_all(f);
    assert_ids(f, "100", (uint64_t[]){201, a4}, 2);

    /* b3 is being delivered when a message b received before it (b0,
     * committed late) is learnt of: b0 is now the oldest, but the
     * extension's one delivery is out, so no second one starts. */
    struct wait w;
    assert_int_equal(claim(f, "100", &w), 0);
    assert_string_equal(w.body, "b3");
    other_node_put(f, "100", 202, "b0", t0 + 9000);
    assert_int_equal(reg_msg_refresh(f->t, "100"), 1);
    assert_ids(f, "100", (uint64_t[]){202, 201, a4}, 3);
    struct wait busy;
    assert_int_equal(claim(f, "100", &busy), -EBUSY);
    reg_msg_done(f->t, "100", 201, true);
    assert_int_equal(claim(f, "100", &w), 0);
    assert_string_equal(w.body, "b0");
}

/* One node whose clock steps back (also across a restart): the order is
 * still the order received, the id order. */
static void
clock_step_back_keeps_receipt_order(void **state)
{
    struct fixture *f = *state;
    const int64_t t0 = f->now_ms;
    uint64_t x = put(f, "100", "x", 1);
    f->now_ms = t0 - 5000;
    uint64_t y = put(f, "100", "y", 2);
    close_all(f);
    open_all(f);
    f->now_ms = t0 - 4000;
    uint64_t z = put(f, "100", "z", 3);
    assert_true(x < y && y < z);
    assert_ids(f, "100", (uint64_t[]){x, y, z}, 3);
    struct wait w;
    assert_int_equal(claim(f, "100", &w), 0);
    assert_string_equal(w.body, "x");
}

static void
cap_drops_oldest(void **state)
{
    struct fixture *f = *state;
    close_all(f);
    f->cfg.max_per_extension = 3;
    open_all(f);
    uint64_t ids[5];
    for (int i = 0; i < 5; i++)
        ids[i] = put(f, "100", "m", (uint32_t)i); /* all accepted */
    assert_int_equal(reg_msg_count(f->t, "100"), 3);
    struct reg_msg_stats s;
    reg_msg_get_stats(f->t, &s);
    assert_int_equal(s.dropped, 2);
    assert_int_equal(s.stored, 5);

    close_all(f);
    open_all(f);
    struct reg_msg_info info[8];
    assert_int_equal(reg_msg_list_ext(f->t, "100", info, 8), 3);
    assert_int_equal(info[0].id, ids[2]);
    assert_int_equal(info[2].id, ids[4]);
}

static void
ttl_expiry(void **state)
{
    struct fixture *f = *state;
    put(f, "100", "old", 1);
    f->now_ms += 3 * 86400 * 1000LL;
    put(f, "100", "newer", 2);
    assert_int_equal(reg_msg_expire(f->t), 0);
    f->now_ms += 4 * 86400 * 1000LL; /* the first is 7 days old */
    assert_int_equal(reg_msg_expire(f->t), 1);
    assert_int_equal(reg_msg_count(f->t, "100"), 1);
    struct reg_msg_stats s;
    reg_msg_get_stats(f->t, &s);
    assert_int_equal(s.expired, 1);
    struct wait w;
    assert_int_equal(claim(f, "100", &w), 0);
    assert_string_equal(w.body, "newer");
    reg_msg_done(f->t, "100", w.id, false);

    /* The purge reached the store: 3 more days expire the second too,
     * and a restart at the first's expiry finds only the second. */
    close_all(f);
    open_all(f);
    assert_int_equal(reg_msg_count(f->t, "100"), 1);
    f->now_ms += 3 * 86400 * 1000LL;
    /* A claim meets the expired head first. */
    assert_int_equal(claim(f, "100", &w), -ENOENT);
    reg_msg_get_stats(f->t, &s);
    assert_int_equal(s.expired, 1);
}

static void
limits_and_types(void **state)
{
    struct fixture *f = *state;
    char big[80];
    memset(big, 'a', sizeof(big));
    struct store_msg m = {.ext = "100", .body = big, .body_len = 65};
    struct wait w;
    wait_init(&w);
    assert_int_equal(reg_msg_put(f->t, &m, on_put, &w), -EMSGSIZE);
    m.body_len = 64; /* max_bytes exactly */
    assert_int_equal(reg_msg_put(f->t, &m, on_put, &w), 0);
    wait_for(&w);
    assert_int_equal(w.rc, 0);
    m.ext = "";
    assert_int_equal(reg_msg_put(f->t, &m, on_put, NULL), -EINVAL);
    assert_int_equal(reg_msg_max_bytes(f->t), 64);

    assert_true(reg_msg_content_type_ok(f->t, "text/plain"));
    assert_true(reg_msg_content_type_ok(f->t, "Text/Plain;charset=UTF-8"));
    assert_true(reg_msg_content_type_ok(f->t, " message/CPIM "));
    assert_false(reg_msg_content_type_ok(f->t, "text/html"));
    assert_false(reg_msg_content_type_ok(f->t, "text/plainx"));
    assert_false(reg_msg_content_type_ok(f->t, ""));
    assert_false(reg_msg_content_type_ok(f->t, NULL));
    assert_true(reg_msg_is_composing("application/im-iscomposing+xml"));
    assert_true(reg_msg_is_composing("Application/IM-isComposing+XML ;x=1"));
    assert_false(reg_msg_is_composing("text/plain"));
    assert_false(reg_msg_is_composing(NULL));
}

static void
remove_ext_and_vanished_row(void **state)
{
    struct fixture *f = *state;
    put(f, "100", "a", 1);
    put(f, "100", "b", 2);
    uint64_t c = put(f, "200", "c", 1);
    assert_int_equal(reg_msg_remove_ext(f->t, "100"), 2);
    assert_int_equal(reg_msg_count(f->t, "100"), 0);

    /* A row deleted behind the index's back: the claim says -ENOENT and
     * the index forgets it. */
    struct store_mark mk = store_mark(f->st);
    assert_int_equal(store_msg_del(f->st, c), 0);
    assert_int_equal(store_commit(f->st, mk, 5000), 0);
    struct wait w;
    assert_int_equal(claim(f, "200", &w), -ENOENT);
    assert_int_equal(reg_msg_count(f->t, "200"), 0);

    close_all(f);
    open_all(f);
    assert_int_equal(reg_msg_count(f->t, "100"), 0);
}

struct listing {
    char ext[4][8];
    size_t count[4];
    int64_t oldest[4];
    size_t n;
};

static void
on_list(const struct reg_msg_ext_info *e, void *arg)
{
    struct listing *l = arg;
    assert_true(l->n < 4);
    snprintf(l->ext[l->n], sizeof(l->ext[0]), "%s", e->ext);
    l->count[l->n] = e->count;
    l->oldest[l->n] = e->oldest_received_at;
    l->n++;
}

static void
admin_listing(void **state)
{
    struct fixture *f = *state;
    int64_t t0 = f->now_ms / 1000;
    put(f, "100", "a", 1);
    f->now_ms += 5000;
    put(f, "100", "b", 2);
    struct listing l = {0};
    reg_msg_list(f->t, on_list, &l);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.ext[0], "100");
    assert_int_equal(l.count[0], 2);
    assert_int_equal(l.oldest[0], t0);
    reg_msg_count_pushed(f->t, 2);
    struct reg_msg_stats s;
    reg_msg_get_stats(f->t, &s);
    assert_int_equal(s.pushed, 2);
    assert_int_equal(s.waiting, 2);
    assert_int_equal(s.bytes, 2);
}

/* The option table's defaults are the ones the code falls back to. */
static void
cfg_defaults_agree(void **state)
{
    (void)state;
    const struct cfg_section *secs[] = {&reg_msg_cfg_section};
    struct cfg *c = NULL;
    char err[256];
    assert_int_equal(cfg_load(secs, 1, NULL, NULL, 0, &c, err, sizeof(err)), 0);
    const struct reg_msg_cfg *m = cfg_get(c, &reg_msg_cfg_section);
    assert_int_equal(m->ttl_days, REG_MSG_TTL_DAYS);
    assert_int_equal(m->max_per_extension, REG_MSG_MAX_PER_EXTENSION);
    assert_int_equal(m->max_bytes, REG_MSG_MAX_BYTES);
    assert_int_equal(m->content_types.count, 3);
    assert_string_equal(m->content_types.items[2],
                        "application/im-iscomposing+xml");
    cfg_free(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(refresh_follows_another_index, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(put_claim_deliver_in_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(failed_delivery_keeps_it_first, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(survives_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(ids_never_reused, setup, teardown),
        cmocka_unit_test_setup_teardown(cap_drops_oldest, setup, teardown),
        cmocka_unit_test_setup_teardown(two_nodes_interleaved_by_arrival, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(clock_step_back_keeps_receipt_order,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(ttl_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(limits_and_types, setup, teardown),
        cmocka_unit_test_setup_teardown(remove_ext_and_vanished_row, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(admin_listing, setup, teardown),
        cmocka_unit_test(cfg_defaults_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
