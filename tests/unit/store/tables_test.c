/*
 * tables_test: the push_devices and prov_links tables the store took over
 * from the registrar and the admin ([wake-room] item 2). Rows round-trip
 * through store_commit (flush_ms 1000: on disk because of the commit, not
 * the batch window); loading drops idle devices (deleted through the
 * writer); a database written by the old registrar connection (same table)
 * loads as is; an old admin prov_db file (both of its schemas) is imported
 * once and renamed, a row the store has already wins, and the store's own
 * file is refused as a source.
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

#include "store/store.h"
#include "testdb.h"

struct fixture {
    char dir[64];
    char path[128];
    char old[128];
    struct store_cfg cfg;
};

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    tdb_dir_make(f->dir, sizeof(f->dir), f->path, sizeof(f->path), "tables");
    snprintf(f->old, sizeof(f->old), "%s/admin.db", f->dir);
    f->cfg = (struct store_cfg){
        .path = f->path, .flush_ms = 1000, .max_queue = 100000};
    tdb_cfg(&f->cfg, f->path);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    char p[160];
    unlink(f->old);
    snprintf(p, sizeof(p), "%s.imported", f->old);
    unlink(p);
    tdb_dir_remove(f->dir, f->path);
    free(f);
    return 0;
}

static void
exec_on(const char *path, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

struct seen {
    char rows[8][256];
    size_t n;
};

static int
pd_cb(const struct store_pushdev *d, void *arg)
{
    struct seen *s = arg;
    assert_true(s->n < 8);
    snprintf(s->rows[s->n++], sizeof(s->rows[0]), "%s|%s|%s|%s|%s|%lld|%lld",
             d->ext, d->provider, d->prid, d->param, d->instance,
             (long long)d->created_at, (long long)d->last_seen);
    return 0;
}

static int
prov_cb(const struct store_prov *p, void *arg)
{
    struct seen *s = arg;
    assert_true(s->n < 8);
    snprintf(s->rows[s->n++], sizeof(s->rows[0]), "%s|%s|%s|%lld|%lld|%u|%u",
             p->ext, p->token, p->password, (long long)p->created_at,
             (long long)p->expires_at, p->fetches, p->max_fetches);
    return 0;
}

static void
test_push_devices(void **state)
{
    struct fixture *f = *state;
    struct store *st;
    char err[256];

    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    struct store_mark m = store_mark(st);
    struct store_pushdev a = {.ext = "100", .provider = "apns",
                              .prid = "aa", .param = "T.b.voip",
                              .instance = "urn:1", .created_at = 10,
                              .last_seen = 500};
    struct store_pushdev b = {.ext = "101", .provider = "fcm", .prid = "bb",
                              .param = "proj", .instance = "",
                              .created_at = 20, .last_seen = 100};
    struct store_pushdev c = {.ext = "101", .provider = "fcm", .prid = "cc",
                              .param = "proj", .instance = "",
                              .created_at = 30, .last_seen = 600};
    assert_int_equal(store_pushdev_put(st, &a), 0);
    assert_int_equal(store_pushdev_put(st, &b), 0);
    assert_int_equal(store_pushdev_put(st, &c), 0);
    assert_int_equal(store_commit(st, m, 2000), 0);

    struct seen s = {0};
    /* b is idle (last_seen 100 < 200): not passed, deleted. */
    assert_int_equal(store_pushdev_load(st, 200, pd_cb, &s), 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.rows[0], "100|apns|aa|T.b.voip|urn:1|10|500");
    assert_string_equal(s.rows[1], "101|fcm|cc|proj||30|600");
    assert_int_equal(store_sync(st), 0);
    memset(&s, 0, sizeof(s));
    assert_int_equal(store_pushdev_load(st, 0, pd_cb, &s), 0);
    assert_int_equal(s.n, 2); /* b is gone from disk */

    /* Same token again: replaced (moved to 102); deletes by token, ext. */
    m = store_mark(st);
    a.ext = "102";
    a.last_seen = 700;
    assert_int_equal(store_pushdev_put(st, &a), 0);
    assert_int_equal(store_pushdev_del_ext(st, "101"), 0);
    assert_int_equal(store_commit(st, m, 2000), 0);
    memset(&s, 0, sizeof(s));
    assert_int_equal(store_pushdev_load(st, 0, pd_cb, &s), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.rows[0], "102|apns|aa|T.b.voip|urn:1|10|700");
    m = store_mark(st);
    assert_int_equal(store_pushdev_del(st, "apns", "aa"), 0);
    assert_int_equal(store_commit(st, m, 2000), 0);
    memset(&s, 0, sizeof(s));
    assert_int_equal(store_pushdev_load(st, 0, pd_cb, &s), 0);
    assert_int_equal(s.n, 0);
    store_close(st);
}

/* A file written by the registrar's own connection before the store
 * owned the table: the store opens it and loads its devices as they are. */
static void
test_push_devices_old_file(void **state)
{
    struct fixture *f = *state;
    struct store *st;
    char err[256];

    if (tdb_pg()) {
        /* PostgreSQL had no older layout: a row another client wrote is
         * loaded as it is. */
        assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
        struct tdb *d = tdb_open(&f->cfg);
        assert_int_equal(tdb_exec(d, "INSERT INTO push_devices(provider,"
                                     " prid, ext, param, instance,"
                                     " created_at, last_seen) VALUES"
                                     " ('fcm','tok','100','proj','',1,2)"),
                         0);
        tdb_close(d);
        store_close(st);
    } else
    exec_on(f->path,
            "PRAGMA journal_mode=WAL;"
            "CREATE TABLE push_devices ("
            " provider TEXT NOT NULL, prid TEXT NOT NULL, ext TEXT NOT NULL,"
            " param TEXT NOT NULL, instance TEXT NOT NULL,"
            " created_at INTEGER NOT NULL, last_seen INTEGER NOT NULL,"
            " PRIMARY KEY (provider, prid));"
            "CREATE INDEX push_devices_ext ON push_devices(ext);"
            "INSERT INTO push_devices VALUES"
            " ('fcm','tok','100','proj','',1,2);");
    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    struct seen s = {0};
    assert_int_equal(store_pushdev_load(st, 0, pd_cb, &s), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.rows[0], "100|fcm|tok|proj||1|2");
    store_close(st);
}

static void
test_prov_links(void **state)
{
    struct fixture *f = *state;
    struct store *st;
    char err[256];

    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    struct store_mark m = store_mark(st);
    struct store_prov p = {.ext = "100", .token = "t1", .password = "pw",
                           .created_at = 1, .expires_at = 2, .fetches = 3,
                           .max_fetches = 4};
    assert_int_equal(store_prov_put(st, &p), 0);
    p.ext = "101";
    p.token = "t2";
    assert_int_equal(store_prov_put(st, &p), 0);
    /* A new link for 100 with 101's token: both old rows go (the token
     * is unique), like the admin's index. */
    p.ext = "100";
    p.fetches = 0;
    assert_int_equal(store_prov_put(st, &p), 0);
    assert_int_equal(store_commit(st, m, 2000), 0);
    struct seen s = {0};
    assert_int_equal(store_prov_load(st, prov_cb, &s), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.rows[0], "100|t2|pw|1|2|0|4");
    /* One extension's link (a cluster's change handler). */
    memset(&s, 0, sizeof(s));
    assert_int_equal(store_prov_read(st, "100", prov_cb, &s), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.rows[0], "100|t2|pw|1|2|0|4");
    assert_int_equal(store_prov_read(st, "101", prov_cb, &s), -ENOENT);
    assert_int_equal(store_prov_read(st, NULL, prov_cb, &s), -EINVAL);
    assert_int_equal(s.n, 1);
    m = store_mark(st);
    assert_int_equal(store_prov_del(st, "100"), 0);
    assert_int_equal(store_commit(st, m, 2000), 0);
    memset(&s, 0, sizeof(s));
    assert_int_equal(store_prov_load(st, prov_cb, &s), 0);
    assert_int_equal(s.n, 0);
    assert_int_equal(store_prov_read(st, "100", prov_cb, &s), -ENOENT);
    store_close(st);
}

static void
test_prov_import(void **state)
{
    struct fixture *f = *state;
    struct store *st;
    char err[256], imported[160];

    snprintf(imported, sizeof(imported), "%s.imported", f->old);
    exec_on(f->old,
            "CREATE TABLE admin_prov ("
            " ext TEXT PRIMARY KEY, token TEXT NOT NULL UNIQUE,"
            " password TEXT NOT NULL, created_at INTEGER NOT NULL,"
            " expires_at INTEGER NOT NULL DEFAULT 0,"
            " fetches INTEGER NOT NULL DEFAULT 0,"
            " max_fetches INTEGER NOT NULL DEFAULT 0);"
            "INSERT INTO admin_prov VALUES ('100','old1','pa',1,50,1,10);"
            "INSERT INTO admin_prov VALUES ('101','old2','pb',2,60,0,10);");
    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    /* The store's own file is no source (SQLite: PostgreSQL has none). */
    if (!tdb_pg()) {
        assert_int_equal(store_prov_import(st, f->path, err, sizeof(err)),
                         -EINVAL);
        assert_non_null(strstr(err, "store's own database"));
    }
    /* No file: nothing to do. */
    assert_int_equal(store_prov_import(st, imported, err, sizeof(err)), 0);
    /* The store has a newer link for 101 already: it wins. */
    struct store_mark m = store_mark(st);
    struct store_prov p = {.ext = "101", .token = "new", .password = "pn",
                           .created_at = 9, .expires_at = 99, .fetches = 0,
                           .max_fetches = 10};
    assert_int_equal(store_prov_put(st, &p), 0);
    assert_int_equal(store_commit(st, m, 2000), 0);

    assert_int_equal(store_prov_import(st, f->old, err, sizeof(err)), 2);
    assert_int_equal(access(f->old, F_OK), -1);
    assert_int_equal(access(imported, F_OK), 0);
    struct seen s = {0};
    assert_int_equal(store_prov_load(st, prov_cb, &s), 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.rows[0], "100|old1|pa|1|50|1|10");
    assert_string_equal(s.rows[1], "101|new|pn|9|99|0|10");
    /* Once: the file is gone under its old name. */
    assert_int_equal(store_prov_import(st, f->old, err, sizeof(err)), 0);
    store_close(st);
    unlink(imported);

    /* The oldest schema (no lifetime columns): links come expired. */
    exec_on(f->old, "CREATE TABLE admin_prov (ext TEXT PRIMARY KEY,"
                    " token TEXT NOT NULL UNIQUE, password TEXT NOT NULL,"
                    " created_at INTEGER NOT NULL);"
                    "INSERT INTO admin_prov VALUES ('102','old3','pc',3);");
    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    assert_int_equal(store_prov_import(st, f->old, err, sizeof(err)), 1);
    memset(&s, 0, sizeof(s));
    assert_int_equal(store_prov_load(st, prov_cb, &s), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.rows[2], "102|old3|pc|3|0|0|0");
    store_close(st);

    /* A file without the table is not ours: left alone. */
    exec_on(f->old, "CREATE TABLE other (x INTEGER);");
    unlink(imported);
    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    assert_int_equal(store_prov_import(st, f->old, err, sizeof(err)), 0);
    assert_int_equal(access(f->old, F_OK), 0);
    store_close(st);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_push_devices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_devices_old_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_prov_links, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prov_import, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
