/*
 * store_test: the SQLite store through store.h: rows round-trip, writes
 * are batched into few transactions, expired bindings are not loaded, the
 * database is in WAL mode, bad paths are refused with a reason.
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
#include <sqlite3.h>

#include "config/cfg.h"
#include "store/store.h"
#include "store/store_cfg.h"
#include "testdb.h"

struct fixture {
    char dir[64];
    char path[128];
    struct store_cfg cfg;
};

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    tdb_dir_make(f->dir, sizeof(f->dir), f->path, sizeof(f->path), "store");
    f->cfg = (struct store_cfg){
        .path = f->path, .flush_ms = 20, .max_queue = 100000};
    tdb_cfg(&f->cfg, f->path);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    tdb_dir_remove(f->dir, f->path);
    free(f);
    return 0;
}

struct collect {
    int n;
    char last_key[256];
    char last_uri[256];
    char last_source[64];
    int64_t last_expires;
    uint32_t last_cseq;
    char number[32], display[64], ha1[65];
    bool enabled;
    unsigned max_push;
};

static int
ext_cb(const struct store_ext *e, void *arg)
{
    struct collect *c = arg;
    c->n++;
    snprintf(c->number, sizeof(c->number), "%s", e->number);
    snprintf(c->display, sizeof(c->display), "%s", e->display);
    snprintf(c->ha1, sizeof(c->ha1), "%s", e->ha1_sha256);
    c->enabled = e->enabled;
    c->max_push = e->max_push_devices;
    return 0;
}

static int
bind_cb(const struct store_binding *b, void *arg)
{
    struct collect *c = arg;
    c->n++;
    snprintf(c->last_key, sizeof(c->last_key), "%s", b->key);
    snprintf(c->last_uri, sizeof(c->last_uri), "%s", b->uri);
    snprintf(c->last_source, sizeof(c->last_source), "%s", b->source);
    c->last_expires = b->expires_at;
    c->last_cseq = b->cseq;
    return 0;
}

static struct store_binding
binding(const char *ext, const char *key, int64_t expires_at)
{
    return (struct store_binding){
        .ext = ext,
        .key = key,
        .uri = key,
        .params = ";+sip.instance=x",
        .instance = "",
        .reg_id = 0,
        .call_id = "cid",
        .cseq = 7,
        .expires_at = expires_at,
        .updated_at = 1000,
        .path = NULL,
        .source = "127.0.0.1:5062",
        .transport = 0,
        .flow_id = 3,
        .user_agent = "ua",
    };
}

static void
test_roundtrip_and_reopen(void **state)
{
    struct fixture *f = *state;
    struct store *st;
    char err[256];

    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    struct store_ext e = {.number = "100",
                          .display = "Alice",
                          .realm = "r",
                          .ha1_md5 = "m",
                          .ha1_sha256 = "abc",
                          .enabled = true,
                          .max_push_devices = 2};
    assert_int_equal(store_ext_put(st, &e), 0);
    struct store_binding b = binding("100", "sip:a@1.2.3.4", 5000);
    assert_int_equal(store_binding_put(st, &b), 0);
    assert_int_equal(store_sync(st), 0);

    struct collect c = {0};
    assert_int_equal(store_ext_load(st, ext_cb, &c), 0);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.display, "Alice");
    assert_string_equal(c.ha1, "abc");
    assert_true(c.enabled);
    assert_int_equal(c.max_push, 2);
    store_close(st);

    /* Reopen: everything committed is still there. */
    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    memset(&c, 0, sizeof(c));
    assert_int_equal(store_binding_load(st, 1000, bind_cb, &c), 0);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.last_uri, "sip:a@1.2.3.4");
    assert_string_equal(c.last_source, "127.0.0.1:5062");
    assert_int_equal(c.last_expires, 5000);
    assert_int_equal(c.last_cseq, 7);

    /* Replace (same key) and delete. */
    b.cseq = 8;
    assert_int_equal(store_binding_put(st, &b), 0);
    struct store_binding b2 = binding("100", "sip:b@1.2.3.4", 6000);
    assert_int_equal(store_binding_put(st, &b2), 0);
    assert_int_equal(store_sync(st), 0);
    memset(&c, 0, sizeof(c));
    assert_int_equal(store_binding_load(st, 1000, bind_cb, &c), 0);
    assert_int_equal(c.n, 2);
    assert_int_equal(store_binding_del(st, "100", "sip:a@1.2.3.4"), 0);
    assert_int_equal(store_sync(st), 0);
    memset(&c, 0, sizeof(c));
    assert_int_equal(store_binding_load(st, 1000, bind_cb, &c), 0);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.last_key, "sip:b@1.2.3.4");
    assert_int_equal(store_binding_del_ext(st, "100"), 0);
    assert_int_equal(store_ext_del(st, "100"), 0);
    assert_int_equal(store_sync(st), 0);
    memset(&c, 0, sizeof(c));
    assert_int_equal(store_binding_load(st, 1000, bind_cb, &c), 0);
    assert_int_equal(store_ext_load(st, ext_cb, &c), 0);
    assert_int_equal(c.n, 0);
    store_close(st);
}

/* Every column of a loaded binding, copied. */
struct row {
    int n;
    char s[10][4096]; /* ext key uri params instance call_id path source ua
                         node */
    int64_t i[6];     /* reg_id cseq expires_at updated_at transport flow */
};

static int
row_cb(const struct store_binding *b, void *arg)
{
    struct row *r = arg;
    const char *v[10] = {b->ext,  b->key,    b->uri,    b->params,
                         b->instance, b->call_id, b->path, b->source,
                         b->user_agent, b->node};

    r->n++;
    for (int k = 0; k < 10; k++)
        snprintf(r->s[k], sizeof(r->s[k]), "%s", v[k] ? v[k] : "(null)");
    r->i[0] = b->reg_id;
    r->i[1] = b->cseq;
    r->i[2] = b->expires_at;
    r->i[3] = b->updated_at;
    r->i[4] = b->transport;
    r->i[5] = (int64_t)b->flow_id;
    return 0;
}

/* A second write of the same (ext, key) replaces every other column
 * (the write is an upsert): each value changed, one made empty, one
 * 3000 bytes long, the node set and then cleared; and a refresh that
 * changes only cseq and the times keeps the rest (INT64_MIN too). */
static void
test_binding_rewrite_every_column(void **state)
{
    struct fixture *f = *state;
    struct store *st;
    char err[256];
    static char ua[3001];

    memset(ua, 'u', sizeof(ua) - 1);
    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    struct store_binding b = {
        .ext = "100", .key = "k1", .uri = "sip:a@10.0.0.1",
        .params = ";p=1", .instance = "<urn:uuid:1>", .reg_id = 1,
        .call_id = "c1", .cseq = 1, .expires_at = 5000, .updated_at = 1000,
        .path = "<sip:p1>", .source = "10.0.0.1:5060", .transport = 1,
        .flow_id = 11, .user_agent = "ua1", .node = "n1"};
    assert_int_equal(store_binding_put(st, &b), 0);
    assert_int_equal(store_sync(st), 0);
    b = (struct store_binding){
        .ext = "100", .key = "k1", .uri = "sip:b@10.0.0.2",
        .params = "", .instance = "<urn:uuid:2>", .reg_id = 2,
        .call_id = "c2", .cseq = 2, .expires_at = 6000, .updated_at = 2000,
        .path = NULL, .source = "10.0.0.2:5061", .transport = 2,
        .flow_id = 22, .user_agent = ua, .node = NULL};
    assert_int_equal(store_binding_put(st, &b), 0);
    assert_int_equal(store_sync(st), 0);

    static struct row r;
    static const char *const want[10] = {
        "100", "k1", "sip:b@10.0.0.2", "", "<urn:uuid:2>", "c2", "",
        "10.0.0.2:5061", NULL, ""};
    static const int64_t wanti[6] = {2, 2, 6000, 2000, 2, 22};
    memset(&r, 0, sizeof(r));
    assert_int_equal(store_binding_load(st, 1000, row_cb, &r), 0);
    assert_int_equal(r.n, 1);
    for (int k = 0; k < 10; k++)
        assert_string_equal(r.s[k], want[k] ? want[k] : ua);
    for (int k = 0; k < 6; k++)
        assert_int_equal(r.i[k], wanti[k]);

    b.cseq = 3;
    b.expires_at = 7000;
    b.updated_at = INT64_MIN; /* any int64 round-trips (PostgreSQL: text) */
    assert_int_equal(store_binding_put(st, &b), 0);
    assert_int_equal(store_sync(st), 0);
    memset(&r, 0, sizeof(r));
    assert_int_equal(store_binding_load(st, 1000, row_cb, &r), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.s[2], "sip:b@10.0.0.2");
    assert_string_equal(r.s[8], ua);
    assert_int_equal(r.i[1], 3);
    assert_int_equal(r.i[2], 7000);
    assert_true(r.i[3] == INT64_MIN);
    assert_int_equal(r.i[5], 22);
    store_close(st);
}

static void
test_expired_not_loaded(void **state)
{
    struct fixture *f = *state;
    struct store *st;
    char err[256];

    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    struct store_binding live = binding("100", "sip:live@h", 2000);
    struct store_binding dead = binding("100", "sip:dead@h", 1500);
    store_binding_put(st, &live);
    store_binding_put(st, &dead);
    assert_int_equal(store_sync(st), 0);
    struct collect c = {0};
    assert_int_equal(store_binding_load(st, 1500, bind_cb, &c), 0);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.last_key, "sip:live@h");
    /* The expired row was deleted through the writer. */
    assert_int_equal(store_sync(st), 0);
    memset(&c, 0, sizeof(c));
    assert_int_equal(store_binding_load(st, 0, bind_cb, &c), 0);
    assert_int_equal(c.n, 1);
    store_close(st);
}

static void
test_batched_and_wal(void **state)
{
    struct fixture *f = *state;
    struct store *st;
    char err[256], key[32];

    f->cfg.flush_ms = 200;
    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "sip:%d@h", i);
        struct store_binding b = binding("100", key, 9999);
        assert_int_equal(store_binding_put(st, &b), 0);
    }
    assert_int_equal(store_sync(st), 0);
    struct store_stats s;
    store_get_stats(st, &s);
    assert_int_equal(s.committed, 2000);
    assert_int_equal(s.errors, 0);
    /* 2000 writes queued in well under flush_ms: a handful of
     * transactions, not one per write. */
    assert_true(s.batches >= 1 && s.batches <= 5);
    struct collect c = {0};
    assert_int_equal(store_binding_load(st, 0, bind_cb, &c), 0);
    assert_int_equal(c.n, 2000);

    store_close(st);
    if (tdb_pg())
        return; /* WAL is SQLite's */
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL),
                     SQLITE_OK);
    sqlite3_stmt *q;
    assert_int_equal(
        sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(q, 0), "wal");
    sqlite3_finalize(q);
    sqlite3_close(db);
}

static void
test_queue_full(void **state)
{
    struct fixture *f = *state;
    struct store *st;
    char err[256];

    f->cfg.max_queue = 3;
    f->cfg.flush_ms = 1000;
    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    int refused = 0;
    for (int i = 0; i < 10; i++)
        if (store_ext_del(st, "x") == -ENOSPC)
            refused++;
    /* The writer may take the first batch early; at least 10-3-3 refused */
    assert_true(refused >= 4);
    struct store_stats s;
    store_get_stats(st, &s);
    assert_int_equal(s.dropped, (uint64_t)refused);
    store_close(st);
}

static void
test_bad_paths(void **state)
{
    struct fixture *f = *state;
    struct store *st = NULL;
    char err[256] = "";

    f->cfg.backend = "sqlite"; /* paths are SQLite's, on both runs */
    f->cfg.path = ":memory:";
    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "store:"));
    /* A parent "directory" that is a regular file: cannot be created or
     * opened. (The parent is created when missing, like var/ of make run.)
     */
    char file[160], bad[200];
    snprintf(file, sizeof(file), "%s/plainfile", f->dir);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    snprintf(bad, sizeof(bad), "%s/x.db", file);
    f->cfg.path = bad;
    assert_true(store_open(&f->cfg, &st, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, bad));
    assert_null(st);
    unlink(file);

    /* A missing parent directory is created. */
    snprintf(bad, sizeof(bad), "%s/var", f->dir);
    snprintf(file, sizeof(file), "%s/var/x.db", f->dir);
    f->cfg.path = file;
    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    store_close(st);
    static const char *const sfx[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        char p[220];
        snprintf(p, sizeof(p), "%s%s", file, sfx[i]);
        unlink(p);
    }
    assert_int_equal(rmdir(bad), 0);
}

/* [store] backend and postgresql: each mistake refused with its reason,
 * nothing left running. */
static void
test_bad_backend(void **state)
{
    struct fixture *f = *state;
    struct store *st = NULL;
    char err[512] = "";

    f->cfg.backend = "mysql";
    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "mysql"));
    assert_non_null(strstr(err, "sqlite or postgresql"));

    f->cfg.backend = "postgresql";
    f->cfg.postgresql = "";
    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "[store] postgresql is required"));

    f->cfg.postgresql = "host=/tmp dbname"; /* libpq: a syntax error */
    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "connection string"));
    assert_non_null(strstr(err, "dbname"));

    /* Nobody listens there: libpq's own message, no crash. */
    f->cfg.postgresql = "host=/nonexistent-pushpbx dbname=x connect_timeout=2";
    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)),
                     -ECONNREFUSED);
    assert_non_null(strstr(err, "store: postgresql: connect:"));
    assert_non_null(strstr(err, "/nonexistent-pushpbx"));
    assert_null(st);

    enum store_backend be;
    assert_int_equal(store_backend_parse(NULL, &be), 0);
    assert_int_equal(be, STORE_BACKEND_SQLITE);
    assert_int_equal(store_backend_parse("postgresql", &be), 0);
    assert_int_equal(be, STORE_BACKEND_POSTGRESQL);
    assert_int_equal(store_backend_parse("PostgreSQL", &be), -EINVAL);
}

/* The [store] options as the daemon loads them: defaults, and a bad
 * backend or a missing connection string stops the load with a reason. */
static void
test_cfg_options(void **state)
{
    (void)state;
    const struct cfg_section *secs[] = {&store_cfg_section};
    struct cfg *c = NULL;
    char err[512] = "";

    assert_int_equal(cfg_load(secs, 1, NULL, NULL, 0, &c, err, sizeof(err)),
                     0);
    const struct store_cfg *sc = cfg_get(c, &store_cfg_section);
    assert_string_equal(sc->backend, "sqlite");
    assert_string_equal(sc->postgresql, "");
    cfg_free(c);

    const char *ok[] = {"store.backend=postgresql",
                        "store.postgresql=host=/run/postgresql dbname=p"};
    assert_int_equal(cfg_load(secs, 1, NULL, ok, 2, &c, err, sizeof(err)), 0);
    sc = cfg_get(c, &store_cfg_section);
    assert_string_equal(sc->postgresql, "host=/run/postgresql dbname=p");
    cfg_free(c);

    const char *bad[] = {"store.backend=mysql"};
    assert_int_equal(cfg_load(secs, 1, NULL, bad, 1, &c, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "mysql"));
    const char *none[] = {"store.backend=postgresql"};
    assert_int_equal(cfg_load(secs, 1, NULL, none, 1, &c, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "needs postgresql"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip_and_reopen, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_binding_rewrite_every_column,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired_not_loaded, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_batched_and_wal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_backend, setup, teardown),
        cmocka_unit_test(test_cfg_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
