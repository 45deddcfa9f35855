/*
 * ckpt_test: WAL checkpoints run on the store's checkpoint thread, not in
 * the writer's commits (store_ckpt_int.h). Writing far more than
 * STORE_CKPT_PAGES pages counts checkpoints in store_stats, and the WAL
 * file stays bounded even when the writer never pauses (the RESTART
 * checkpoint past STORE_CKPT_MAX_PAGES).
 * The writes survive a close and reopen (the last close checkpoints the
 * rest and removes the WAL file).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/store.h"
#include "testdb.h"

struct fixture {
    char dir[64];
    char path[128];
    char wal[140];
    struct store_cfg cfg;
};

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    tdb_dir_make(f->dir, sizeof(f->dir), f->path, sizeof(f->path), "ckpt");
    snprintf(f->wal, sizeof(f->wal), "%s-wal", f->path);
    f->cfg = (struct store_cfg){
        .path = f->path, .flush_ms = 10, .max_queue = 1000000};
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

static off_t
file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? sb.st_size : 0;
}

/* Rows of about 1 KiB: 2,000 of them are about 500 pages of 4 KiB. */
static void
put_round(struct store *st, unsigned round)
{
    char ext[16], key[32], uri[1024];

    memset(uri, 'u', sizeof(uri) - 1);
    uri[sizeof(uri) - 1] = '\0';
    for (unsigned i = 0; i < 2000; i++) {
        snprintf(ext, sizeof(ext), "%u", 1000 + i);
        snprintf(key, sizeof(key), "k%u", round);
        memcpy(uri, "sip:", 4);
        struct store_binding b = {.ext = ext,
                                  .key = key,
                                  .uri = uri,
                                  .params = "",
                                  .instance = "",
                                  .call_id = "c",
                                  .cseq = round,
                                  .expires_at = 4000000000,
                                  .updated_at = 1,
                                  .path = "",
                                  .source = "127.0.0.1:5060",
                                  .user_agent = "ua"};
        assert_int_equal(store_binding_put(st, &b), 0);
    }
    assert_int_equal(store_sync(st), 0);
}

static void
test_checkpoints_off_the_writer(void **state)
{
    struct fixture *f = *state;
    struct store *st = NULL;
    char err[256];
    off_t wal_max = 0;

    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    struct store_stats s;
    struct timespec ts = {0, 10 * 1000 * 1000};
    /* 40 rounds of ~3.5 MB of WAL frames, back to back: ~140 MB through
     * the WAL, more than STORE_CKPT_MAX_PAGES (~64 MB) of it, however
     * busy the machine (a checkpoint may lag behind the writer). */
    for (unsigned r = 0; r < 40; r++) {
        put_round(st, r);
        off_t w = file_size(f->wal);
        if (w > wal_max)
            wal_max = w;
    }
    for (int i = 0; i < 500; i++) { /* the thread runs on its own */
        store_get_stats(st, &s);
        if (s.checkpoints > 0)
            break;
        nanosleep(&ts, NULL);
    }
    assert_true(s.checkpoints > 0);
    /* Without checkpoints the WAL would hold all ~140 MB. PASSIVE ones
     * start it over whenever the writer pauses; when it never does, a
     * RESTART one bounds it at STORE_CKPT_MAX_PAGES plus what the writer
     * added meanwhile. */
    assert_true(wal_max < 96 * 1024 * 1024);
    store_close(st);
    assert_int_equal(file_size(f->wal), 0);

    /* Everything is there after a reopen. */
    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), 0);
    size_t n = 0;
    assert_int_equal(store_count(st, "bindings", &n), 0);
    assert_int_equal(n, 2000 * 40);
    store_close(st);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_checkpoints_off_the_writer, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
