/*
 * backup_test: store_backup takes a consistent copy while the writer
 * commits; store_restore refuses while a store holds the database, refuses
 * a file that is not a pushpbx database, and otherwise replaces the
 * database so that the next store_open sees the backup's rows; a second
 * store_open of one database is refused (the instance lock).
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
#include "store/store_backup.h"

struct fixture {
    char dir[64];
    char path[128], copy[128];
    struct store_cfg cfg;
};

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/pp-backup-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/t.db", f->dir);
    snprintf(f->copy, sizeof(f->copy), "%s/copy.db", f->dir);
    f->cfg = (struct store_cfg){
        .path = f->path, .flush_ms = 10, .max_queue = 100000};
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void
put_ext(struct store *st, const char *number)
{
    struct store_ext e = {.number = number, .display = "D", .realm = "r",
                          .ha1_md5 = "m", .ha1_sha256 = "s", .enabled = true,
                          .max_push_devices = 1};
    struct store_mark m = store_mark(st);
    assert_int_equal(store_ext_put(st, &e), 0);
    assert_int_equal(store_commit(st, m, 5000), 0);
}

static int
count_cb(const struct store_ext *e, void *arg)
{
    (void)e;
    (*(int *)arg)++;
    return 0;
}

static int
count_exts(struct store *st)
{
    int n = 0;
    assert_int_equal(store_ext_load(st, count_cb, &n), 0);
    return n;
}

static void
test_backup_while_running_and_restore(void **state)
{
    struct fixture *f = *state;
    struct store *st, *second;
    char err[256], num[16];

    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    for (int i = 0; i < 50; i++) {
        snprintf(num, sizeof(num), "%d", 100 + i);
        put_ext(st, num);
    }
    /* The copy is taken while the writer goes on committing. */
    for (int i = 50; i < 60; i++) {
        struct store_ext e = {.number = "x", .display = "", .realm = "r",
                              .ha1_md5 = "m", .ha1_sha256 = "s"};
        snprintf(num, sizeof(num), "%d", 100 + i);
        e.number = num;
        assert_int_equal(store_ext_put(st, &e), 0);
    }
    assert_int_equal(store_backup(f->path, f->copy, err, sizeof(err)), 0);

    /* One daemon per database. */
    assert_int_equal(store_open(&f->cfg, &second, err, sizeof(err)), -EBUSY);
    assert_non_null(strstr(err, "in use"));
    /* No restore under a running store. */
    assert_int_equal(store_restore(f->path, f->copy, err, sizeof(err)),
                     -EBUSY);
    put_ext(st, "999"); /* after the backup: gone after the restore */
    assert_int_equal(count_exts(st), 61);
    store_close(st);

    assert_int_equal(store_restore(f->path, f->copy, err, sizeof(err)), 0);
    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    int n = count_exts(st);
    assert_true(n >= 50 && n <= 60); /* a consistent snapshot in between */
    store_close(st);
}

static void
test_restore_refuses_other_files(void **state)
{
    struct fixture *f = *state;
    struct store *st;
    char err[256], other[160];
    sqlite3 *db;

    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    put_ext(st, "100");
    store_close(st);

    /* A SQLite file without our tables. */
    snprintf(other, sizeof(other), "%s/other.db", f->dir);
    assert_int_equal(sqlite3_open(other, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE t(x)", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(store_restore(f->path, other, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "not a pushpbx database"));

    /* Not a database at all. */
    FILE *fp = fopen(other, "w");
    assert_non_null(fp);
    fputs("this is not a database, just text that is long enough\n", fp);
    fclose(fp);
    assert_int_equal(store_restore(f->path, other, err, sizeof(err)),
                     -EINVAL);
    /* Missing file. */
    snprintf(other, sizeof(other), "%s/missing.db", f->dir);
    assert_int_equal(store_restore(f->path, other, err, sizeof(err)),
                     -ENOENT);

    /* The database is untouched by the refusals. */
    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    assert_int_equal(count_exts(st), 1);
    store_close(st);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_backup_while_running_and_restore,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_refuses_other_files,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
