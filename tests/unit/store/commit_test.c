/*
 * commit_test: store_mark/store_commit, the synchronous commit admin API
 * writes use. With flush_ms at its maximum (1000 ms) a write is on disk
 * when store_commit returns 0, long before the batch window would have
 * ended; the writes of other threads queued before are in the same
 * transaction; a rolled-back batch, a refused write, a stuck writer and a
 * closing store are each reported with their own error. The source column
 * of extension rows round-trips and is added to an old database.
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "store/store.h"
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
    tdb_dir_make(f->dir, sizeof(f->dir), f->path, sizeof(f->path), "commit");
    /* The longest batch window: a write that is on disk early was
     * committed by store_commit, not by the window. */
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
    tdb_dir_remove(f->dir, f->path);
    free(f);
    return 0;
}

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct store_ext
ext(const char *number)
{
    return (struct store_ext){.number = number,
                              .display = "D",
                              .realm = "r",
                              .ha1_md5 = "m",
                              .ha1_sha256 = "s",
                              .enabled = true,
                              .max_push_devices = 1};
}

/* Rows as another process would see them: a connection of its own. */
static int
count_rows(const struct store_cfg *cfg, const char *sql)
{
    return (int)tdb_count(cfg, sql);
}

static void
test_commit_is_durable_at_once(void **state)
{
    struct fixture *f = *state;
    struct store *st;
    char err[256];

    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    /* Nothing queued: returns at once. */
    assert_int_equal(store_commit(st, store_mark(st), 100), 0);

    /* Another thread's write queued before ours: same transaction. */
    struct store_ext other = ext("99");
    assert_int_equal(store_ext_put(st, &other), 0);
    struct store_mark m = store_mark(st);
    struct store_ext e = ext("100");
    assert_int_equal(store_ext_put(st, &e), 0);
    int64_t t0 = now_ms();
    assert_int_equal(store_commit(st, m, 2000), 0);
    int64_t took = now_ms() - t0;
    /* On disk now, well before the 1000 ms window would have ended. */
    assert_true(took < 500);
    assert_int_equal(
        count_rows(&f->cfg, "SELECT count(*) FROM extensions"), 2);
    struct store_stats s;
    store_get_stats(st, &s);
    assert_int_equal(s.batches, 1);
    assert_int_equal(s.committed, 2);
    assert_int_equal(s.queue_len, 0);

    /* Deletes too. */
    m = store_mark(st);
    assert_int_equal(store_ext_del(st, "100"), 0);
    assert_int_equal(store_commit(st, m, 2000), 0);
    assert_int_equal(
        count_rows(&f->cfg, "SELECT count(*) FROM extensions"), 1);
    store_close(st);
}

/* Many threads committing at once: each gets its own answer and every
 * write is there. */
struct worker_arg {
    struct store *st;
    int id;
    int rc;
};

static void *
committer(void *p)
{
    struct worker_arg *w = p;
    char number[16];

    for (int i = 0; i < 20 && w->rc == 0; i++) {
        snprintf(number, sizeof(number), "%d-%d", w->id, i);
        struct store_mark m = store_mark(w->st);
        struct store_ext e = ext(number);
        w->rc = store_ext_put(w->st, &e);
        if (w->rc == 0)
            w->rc = store_commit(w->st, m, 5000);
    }
    return NULL;
}

/* store_commit_async: the callback reports the same result, once, and
 * the rows are on disk when it runs; nothing waiting calls it at once. */
struct async_done {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls, rc, rows;
    const struct store_cfg *cfg;
    pthread_t thread;
};

static void
on_async_commit(int rc, void *arg)
{
    struct async_done *d = arg;

    pthread_mutex_lock(&d->mu);
    d->calls++;
    d->rc = rc;
    d->thread = pthread_self();
    d->rows = count_rows(d->cfg, "SELECT count(*) FROM extensions");
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

static void
test_commit_async(void **state)
{
    struct fixture *f = *state;
    struct store *st;
    char err[256];
    struct async_done d = {.cfg = &f->cfg};

    pthread_mutex_init(&d.mu, NULL);
    pthread_cond_init(&d.cv, NULL);
    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    /* Nothing waiting: called at once, on this thread. */
    store_commit_async(st, store_mark(st), on_async_commit, &d);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.rc, 0);
    assert_true(pthread_equal(d.thread, pthread_self()));

    struct store_mark m = store_mark(st);
    struct store_ext e = ext("100");
    assert_int_equal(store_ext_put(st, &e), 0);
    int64_t t0 = now_ms();
    store_commit_async(st, m, on_async_commit, &d); /* does not wait */
    pthread_mutex_lock(&d.mu);
    while (d.calls < 2)
        pthread_cond_wait(&d.cv, &d.mu);
    pthread_mutex_unlock(&d.mu);
    /* Long before the 1000 ms batch window, on the writer thread, with
     * the row already visible to another connection. */
    assert_true(now_ms() - t0 < 500);
    assert_int_equal(d.rc, 0);
    assert_int_equal(d.rows, 1);
    assert_false(pthread_equal(d.thread, pthread_self()));
    store_close(st);
    assert_int_equal(d.calls, 2);
    pthread_cond_destroy(&d.cv);
    pthread_mutex_destroy(&d.mu);
}

static void
test_commit_concurrent(void **state)
{
    struct fixture *f = *state;
    struct store *st;
    char err[256];
    pthread_t th[4];
    struct worker_arg w[4];

    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker_arg){.st = st, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, committer, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].rc, 0);
    }
    assert_int_equal(
        count_rows(&f->cfg, "SELECT count(*) FROM extensions"), 80);
    store_close(st);
}

static void
test_commit_reports_rollback(void **state)
{
    struct fixture *f = *state;
    struct store *st;
    char err[256];
    struct tdb *db;

    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    /* Break the table under the writer: its next batch fails. */
    db = tdb_open(&f->cfg);
    assert_int_equal(tdb_exec(db, "DROP TABLE extensions"), 0);
    struct store_mark m = store_mark(st);
    struct store_ext e = ext("100");
    assert_int_equal(store_ext_put(st, &e), 0);
    assert_int_equal(store_commit(st, m, 2000), -EIO);
    /* A later commit whose writes succeed is not blamed for it. */
    m = store_mark(st);
    assert_int_equal(store_binding_del_ext(st, "100"), 0);
    assert_int_equal(store_commit(st, m, 2000), 0);
    /* ... but one whose mark is before the failure is. */
    assert_int_equal(
        tdb_exec(db,
                     "CREATE TABLE extensions(number TEXT PRIMARY KEY,"
                     " display TEXT NOT NULL, realm TEXT NOT NULL,"
                     " ha1_md5 TEXT NOT NULL, ha1_sha256 TEXT NOT NULL,"
                     " enabled INTEGER NOT NULL,"
                     " max_push_devices INTEGER NOT NULL,"
                     " source TEXT NOT NULL DEFAULT 'api')"),
        0);
    tdb_close(db);
    m = store_mark(st);
    assert_int_equal(store_ext_put(st, &e), 0);
    assert_int_equal(store_commit(st, m, 2000), 0);
    assert_int_equal(
        count_rows(&f->cfg, "SELECT count(*) FROM extensions"), 1);
    store_close(st);
}

static void
test_commit_reports_drop(void **state)
{
    struct fixture *f = *state;
    struct store *st;
    char err[256];

    f->cfg.max_queue = 2;
    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    struct store_mark m = store_mark(st);
    int refused = 0;
    for (int i = 0; i < 8; i++)
        if (store_ext_del(st, "x") == -ENOSPC)
            refused++;
    assert_true(refused > 0);
    assert_int_equal(store_commit(st, m, 2000), -ENOSPC);
    /* A mark taken after the drop is clean again. */
    assert_int_equal(store_sync(st), 0);
    m = store_mark(st);
    assert_int_equal(store_ext_del(st, "x"), 0);
    assert_int_equal(store_commit(st, m, 2000), 0);
    store_close(st);
}

static void
test_commit_times_out(void **state)
{
    struct fixture *f = *state;
    struct store *st;
    char err[256];
    struct tdb *db;

    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    /* Another connection holds the write lock: the writer's BEGIN waits
     * (busy timeout), so the commit cannot finish within 200 ms. */
    db = tdb_open(&f->cfg);
    assert_int_equal(tdb_lock_writes(db), 0);
    struct store_mark m = store_mark(st);
    struct store_ext e = ext("100");
    assert_int_equal(store_ext_put(st, &e), 0);
    int64_t t0 = now_ms();
    assert_int_equal(store_commit(st, m, 200), -ETIMEDOUT);
    assert_true(now_ms() - t0 < 1000);
    /* Released: the abandoned request is finished (and freed) by the
     * writer, and the write lands. */
    assert_int_equal(tdb_exec(db, "COMMIT"), 0);
    tdb_close(db);
    assert_int_equal(store_sync(st), 0);
    assert_int_equal(
        count_rows(&f->cfg, "SELECT count(*) FROM extensions"), 1);
    store_close(st);
}

static int
source_cb(const struct store_ext *e, void *arg)
{
    char *out = arg;
    size_t n = strlen(out);
    snprintf(out + n, 64 - n, "%s=%s ", e->number,
             e->source == STORE_EXT_CONFIG ? "config" : "api");
    return 0;
}

static void
test_source_roundtrip_and_migration(void **state)
{
    struct fixture *f = *state;
    struct store *st;
    char err[256], seen[64] = "";
    sqlite3 *db;

    /* A database from before the source column, with one row (SQLite:
     * PostgreSQL databases never had one without it). */
    if (!tdb_pg()) {
    assert_int_equal(sqlite3_open_v2(f->path, &db,
                                     SQLITE_OPEN_READWRITE |
                                         SQLITE_OPEN_CREATE,
                                     NULL),
                     SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "CREATE TABLE extensions(number TEXT PRIMARY KEY,"
                     " display TEXT NOT NULL, realm TEXT NOT NULL,"
                     " ha1_md5 TEXT NOT NULL, ha1_sha256 TEXT NOT NULL,"
                     " enabled INTEGER NOT NULL,"
                     " max_push_devices INTEGER NOT NULL);"
                     "INSERT INTO extensions VALUES('1','','r','m','s',1,1)",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    }

    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    struct store_mark m = store_mark(st);
    struct store_ext e = ext("2");
    e.source = STORE_EXT_CONFIG; /* a new row takes it */
    assert_int_equal(store_ext_put(st, &e), 0);
    struct store_ext e3 = ext("3");
    assert_int_equal(store_ext_put(st, &e3), 0);
    assert_int_equal(store_ext_set_source(st, "3", STORE_EXT_CONFIG), 0);
    /* A later put does not change an existing row's source. */
    e3.source = STORE_EXT_API;
    assert_int_equal(store_ext_put(st, &e3), 0);
    assert_int_equal(store_commit(st, m, 2000), 0);
    assert_int_equal(store_ext_load(st, source_cb, seen), 0);
    assert_string_equal(seen, tdb_pg() ? "2=config 3=config "
                                       : "1=api 2=config 3=config ");
    store_close(st);
}

static void
test_commit_after_close_begins(void **state)
{
    struct fixture *f = *state;
    struct store *st;
    char err[256];

    /* Pending writes are committed by store_close; a commit request
     * made while the writer drains still gets its answer. */
    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    struct store_ext e = ext("100");
    assert_int_equal(store_ext_put(st, &e), 0);
    store_close(st);
    assert_int_equal(
        count_rows(&f->cfg, "SELECT count(*) FROM extensions"), 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commit_is_durable_at_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_commit_async, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_concurrent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_commit_reports_rollback, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_commit_reports_drop, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_commit_times_out, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_source_roundtrip_and_migration,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_after_close_begins, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
