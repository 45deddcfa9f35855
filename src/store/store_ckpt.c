/*
 * store_ckpt: the WAL checkpoint thread (store_ckpt_int.h).
 *
 * The writer's WAL hook runs after each of its commits with the number of
 * frames in the WAL; past STORE_CKPT_PAGES new frames since the last
 * request it signals this thread, which runs a PASSIVE checkpoint on its
 * own connection. PASSIVE copies what no reader still needs and takes no
 * lock the writer waits for, so commits never pay for the copy and sync.
 * A reader that holds an old snapshot (a start-up load) only makes a
 * checkpoint stop short; the next request copies the rest.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/xmalloc.h"
#include "store/store_ckpt_int.h"
#include "store/store_int.h"

struct store_ckpt {
    sqlite3 *writer_db; /* hooked; owned by the store */
    sqlite3 *db;        /* ours */
    pthread_t thread;
    unsigned nice; /* [store] writer_nice, set by its thread */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool pending; /* a checkpoint was asked for */
    bool stop;
    int asked_at; /* writer thread only: WAL frames at the last request */
    atomic_uint_fast64_t count;
    atomic_uint_fast64_t restarts;
};

/* On the writer thread, after each commit (sqlite3_wal_hook). */
static int
on_wal(void *arg, sqlite3 *db, const char *name, int frames)
{
    struct store_ckpt *c = arg;

    (void)db;
    (void)name;
    if (frames < c->asked_at) /* the WAL was restarted from its start */
        c->asked_at = 0;
    if (frames - c->asked_at < STORE_CKPT_PAGES)
        return SQLITE_OK;
    c->asked_at = frames;
    pthread_mutex_lock(&c->lock);
    c->pending = true;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
    return SQLITE_OK;
}

static void
checkpoint(struct store_ckpt *c)
{
    int log_frames = 0, done = 0;
    int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE,
                                       &log_frames, &done);

    if (rc == SQLITE_OK && log_frames >= STORE_CKPT_MAX_PAGES) {
        /* The WAL starts over only at a write transaction that finds every
         * frame copied; a writer that never pauses always adds frames
         * while a PASSIVE checkpoint runs, so the WAL grows. RESTART
         * waits (busy timeout) for the writer's current transaction,
         * holds new ones back, copies the rest and lets the next commit
         * start the WAL over. The writer waits for it this once. */
        rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_RESTART,
                                       &log_frames, &done);
        if (rc == SQLITE_OK)
            atomic_fetch_add(&c->restarts, 1);
    }
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
        log_warn("store", "WAL checkpoint: %s", sqlite3_errmsg(c->db));
        return;
    }
    if (done > 0)
        atomic_fetch_add(&c->count, 1);
}

static void *
ckpt_main(void *arg)
{
    struct store_ckpt *c = arg;

    (void)pthread_setname_np(pthread_self(), "pbx-checkpoint");
    store_thread_nice(c->nice, "checkpoint");

    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (!c->pending && !c->stop)
            pthread_cond_wait(&c->wake, &c->lock);
        if (c->stop)
            break;
        c->pending = false;
        pthread_mutex_unlock(&c->lock);
        checkpoint(c);
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

int
store_ckpt_start(sqlite3 *writer_db, const char *path, unsigned nice,
                 struct store_ckpt **out, char *err, size_t errlen)
{
    struct store_ckpt *c = xcalloc(1, sizeof(*c));
    int rc = sqlite3_open_v2(path, &c->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);

    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "store: %s: checkpoint connection: %s", path,
                 c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        sqlite3_close(c->db);
        free(c);
        return -EIO;
    }
    /* A connection learns that the file is in WAL mode when it first reads
     * it; until then a checkpoint on it does nothing (-1 frames). */
    rc = sqlite3_exec(c->db, "SELECT count(*) FROM sqlite_master", NULL, NULL,
                      NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "store: %s: checkpoint connection: %s", path,
                 sqlite3_errmsg(c->db));
        sqlite3_close(c->db);
        free(c);
        return -EIO;
    }
    /* Only a RESTART checkpoint waits for the writer (checkpoint()). */
    sqlite3_busy_timeout(c->db, 5000);
    c->writer_db = writer_db;
    c->nice = nice;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    rc = pthread_create(&c->thread, NULL, ckpt_main, c);
    if (rc != 0) {
        snprintf(err, errlen, "store: %s: checkpoint thread: %s", path,
                 strerror(rc));
        pthread_cond_destroy(&c->wake);
        pthread_mutex_destroy(&c->lock);
        sqlite3_close(c->db);
        free(c);
        return -rc;
    }
    /* Replaces SQLite's automatic checkpoint on the writer (which is
     * itself a WAL hook). */
    sqlite3_wal_hook(writer_db, on_wal, c);
    *out = c;
    return 0;
}

void
store_ckpt_stop(struct store_ckpt *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->stop = true;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    sqlite3_wal_hook(c->writer_db, NULL, NULL);
    /* The writer's connection, closed last, checkpoints what is left and
     * removes the WAL file (SQLite does so for the last connection). */
    int rc = sqlite3_close(c->db);
    if (rc != SQLITE_OK)
        log_error("store", "checkpoint connection close: %s",
                  sqlite3_errstr(rc));
    pthread_cond_destroy(&c->wake);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

uint64_t
store_ckpt_count(struct store_ckpt *c)
{
    return c ? atomic_load(&c->count) : 0;
}
