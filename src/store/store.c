/*
 * store: SQLite persistence on a writer thread; see store.h. Tables:
 * extensions, bindings (write-behind), push_devices and prov_links
 * (written the same way, then waited for with store_commit by their
 * owners: registrar/pushdev.c, admin/admin_prov.c), and messages (stored
 * chat messages: the row with its body, committed before the 202 by
 * registrar/msgstore.c, read back one at a time on the writer's own
 * connection when it is delivered, store_msg_get_async).
 *
 * The queue is a list of owned row copies. The writer sleeps on a condition
 * variable until a write arrives, then waits flush_ms more so that a burst
 * of REGISTERs becomes one transaction, then takes the whole list at once
 * (O(1) under the lock) and commits it outside the lock. Workers therefore
 * hold the mutex only to link a node. Load expected: one write per accepted
 * REGISTER (a few thousand per second at most), so one transaction per
 * flush_ms keeps SQLite far from its limits.
 */
#include "store/store.h"
#include "store/store_backup.h"
#include "store/store_ckpt_int.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/list.h"
#include "base/log.h"
#include "base/xmalloc.h"

enum op_kind {
    OP_EXT_PUT,
    OP_EXT_DEL,
    OP_BIND_PUT,
    OP_BIND_DEL,
    OP_BIND_DEL_EXT,
    OP_EXT_SOURCE,
    OP_PD_PUT,
    OP_PD_DEL,
    OP_PD_DEL_EXT,
    OP_PROV_PUT,
    OP_PROV_IMPORT, /* store_prov_import: a row already there wins */
    OP_PROV_DEL,
    OP_COMMIT, /* store_commit's request: no SQL, ends the batch window */
    OP_MSG_PUT,
    OP_MSG_DEL,
    OP_MSG_DEL_EXT,
    OP_MSG_PURGE,
    OP_MSG_GET, /* a read on the writer's connection; ends the window */
};

struct op {
    struct list_node node;
    enum op_kind kind;
    char *s[11]; /* owned strings, meaning depends on kind */
    int64_t i[6];
    /* OP_COMMIT only, under st->lock: the caller's mark, the result, and
     * whether the caller gave up waiting (then the writer frees the op). */
    uint64_t mark;
    int rc;
    bool done, abandoned;
    store_commit_cb *cb; /* store_commit_async: called, then freed */
    void *cb_arg;
    /* OP_MSG_PUT: the body (owned); OP_MSG_GET: the body read. */
    void *blob;
    size_t blob_len;
    store_msg_get_cb *get_cb; /* OP_MSG_GET: called after the batch */
};

enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_EXT_PUT,
    ST_EXT_DEL,
    ST_BIND_PUT,
    ST_BIND_DEL,
    ST_BIND_DEL_EXT,
    ST_EXT_SOURCE,
    ST_PD_PUT,
    ST_PD_DEL,
    ST_PD_DEL_EXT,
    ST_PROV_PUT,
    ST_PROV_IMPORT,
    ST_PROV_DEL,
    ST_MSG_PUT,
    ST_MSG_CAP,
    ST_MSG_DEL,
    ST_MSG_DEL_EXT,
    ST_MSG_PURGE,
    ST_MSG_GET,
    ST__COUNT
};

static const char *const stmt_sql[ST__COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    /* A new row takes ?8 as its source; an existing row keeps its own
     * (only ST_EXT_SOURCE changes it). */
    [ST_EXT_PUT] = "INSERT INTO extensions(number, display, realm, ha1_md5,"
                   " ha1_sha256, enabled, max_push_devices, source)"
                   " VALUES(?1,?2,?3,?4,?5,?6,?7,?8)"
                   " ON CONFLICT(number) DO UPDATE SET display=?2, realm=?3,"
                   " ha1_md5=?4, ha1_sha256=?5, enabled=?6,"
                   " max_push_devices=?7",
    [ST_EXT_DEL] = "DELETE FROM extensions WHERE number=?1",
    [ST_BIND_PUT] =
        "INSERT OR REPLACE INTO bindings(ext, bkey, uri, params, instance,"
        " reg_id, call_id, cseq, expires_at, updated_at, path, source,"
        " transport, flow_id, user_agent)"
        " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)",
    [ST_BIND_DEL] = "DELETE FROM bindings WHERE ext=?1 AND bkey=?2",
    [ST_BIND_DEL_EXT] = "DELETE FROM bindings WHERE ext=?1",
    [ST_EXT_SOURCE] = "UPDATE extensions SET source=?2 WHERE number=?1",
    [ST_PD_PUT] = "INSERT OR REPLACE INTO push_devices(ext, provider, prid,"
                  " param, instance, created_at, last_seen)"
                  " VALUES(?1,?2,?3,?4,?5,?6,?7)",
    [ST_PD_DEL] = "DELETE FROM push_devices WHERE provider=?1 AND prid=?2",
    [ST_PD_DEL_EXT] = "DELETE FROM push_devices WHERE ext=?1",
    [ST_PROV_PUT] = "INSERT OR REPLACE INTO prov_links(ext, token, password,"
                    " created_at, expires_at, fetches, max_fetches)"
                    " VALUES(?1,?2,?3,?4,?5,?6,?7)",
    [ST_PROV_IMPORT] = "INSERT OR IGNORE INTO prov_links(ext, token,"
                       " password, created_at, expires_at, fetches,"
                       " max_fetches) VALUES(?1,?2,?3,?4,?5,?6,?7)",
    [ST_PROV_DEL] = "DELETE FROM prov_links WHERE ext=?1",
    [ST_MSG_PUT] = "INSERT OR REPLACE INTO messages(id, ext, sender_uri,"
                   " sender_name, call_id, cseq, content_type, body,"
                   " received_at, expires_at)"
                   " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
    /* Keep the newest ?2 of ?1: the row at offset ?2 from the newest and
     * every older one go (NULL, so nothing, when there are fewer). */
    [ST_MSG_CAP] = "DELETE FROM messages WHERE ext=?1 AND id <= (SELECT id"
                   " FROM messages WHERE ext=?1 ORDER BY id DESC LIMIT 1"
                   " OFFSET ?2)",
    [ST_MSG_DEL] = "DELETE FROM messages WHERE id=?1",
    [ST_MSG_DEL_EXT] = "DELETE FROM messages WHERE ext=?1",
    [ST_MSG_PURGE] = "DELETE FROM messages WHERE expires_at <= ?1",
    [ST_MSG_GET] = "SELECT ext, sender_uri, sender_name, call_id,"
                   " content_type, body, cseq, received_at, expires_at"
                   " FROM messages WHERE id=?1",
};

static const char *const source_name[] = {
    [STORE_EXT_API] = "api",
    [STORE_EXT_CONFIG] = "config",
};

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS extensions("
    " number TEXT PRIMARY KEY, display TEXT NOT NULL, realm TEXT NOT NULL,"
    " ha1_md5 TEXT NOT NULL, ha1_sha256 TEXT NOT NULL,"
    " enabled INTEGER NOT NULL, max_push_devices INTEGER NOT NULL,"
    " source TEXT NOT NULL DEFAULT 'api');"
    "CREATE TABLE IF NOT EXISTS bindings("
    " ext TEXT NOT NULL, bkey TEXT NOT NULL, uri TEXT NOT NULL,"
    " params TEXT NOT NULL, instance TEXT NOT NULL, reg_id INTEGER NOT NULL,"
    " call_id TEXT NOT NULL, cseq INTEGER NOT NULL,"
    " expires_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
    " path TEXT NOT NULL, source TEXT NOT NULL, transport INTEGER NOT NULL,"
    " flow_id INTEGER NOT NULL, user_agent TEXT NOT NULL,"
    " PRIMARY KEY(ext, bkey));"
    /* Push devices: the same table (and file) the registrar wrote on a
     * connection of its own before the store owned it, so an existing
     * database keeps its devices as they are. */
    "CREATE TABLE IF NOT EXISTS push_devices("
    " provider TEXT NOT NULL, prid TEXT NOT NULL, ext TEXT NOT NULL,"
    " param TEXT NOT NULL, instance TEXT NOT NULL,"
    " created_at INTEGER NOT NULL, last_seen INTEGER NOT NULL,"
    " PRIMARY KEY(provider, prid));"
    "CREATE INDEX IF NOT EXISTS push_devices_ext ON push_devices(ext);"
    /* Provisioning links (formerly table admin_prov of the admin's own
     * file, imported once by store_prov_import). */
    "CREATE TABLE IF NOT EXISTS prov_links("
    " ext TEXT PRIMARY KEY, token TEXT NOT NULL UNIQUE,"
    " password TEXT NOT NULL, created_at INTEGER NOT NULL,"
    " expires_at INTEGER NOT NULL, fetches INTEGER NOT NULL,"
    " max_fetches INTEGER NOT NULL);"
    /* Stored chat messages (registrar/msgstore.c). AUTOINCREMENT although
     * the ids are ours: it keeps the highest id ever inserted in
     * sqlite_sequence, so an id is never reused after its row is gone
     * (store_msg_last_id). */
    "CREATE TABLE IF NOT EXISTS messages("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, ext TEXT NOT NULL,"
    " sender_uri TEXT NOT NULL, sender_name TEXT NOT NULL,"
    " call_id TEXT NOT NULL, cseq INTEGER NOT NULL,"
    " content_type TEXT NOT NULL, body BLOB NOT NULL,"
    " received_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS messages_ext ON messages(ext, id);"
    "CREATE INDEX IF NOT EXISTS messages_expires ON messages(expires_at);";

struct store {
    char *path;
    int instance_lock; /* store_instance_lock: one daemon per database */
    unsigned flush_ms;
    unsigned max_queue;
    sqlite3 *db;
    sqlite3_stmt *stmt[ST__COUNT];
    struct store_ckpt *ckpt; /* WAL checkpoints off the writer's commits */

    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* writer: work or stop */
    pthread_cond_t done; /* store_sync waiters: a batch finished */
    struct list_node queue;
    size_t queue_len;
    uint64_t seq_queued; /* sequence number of the last queued write */
    uint64_t seq_done;   /* every write up to this one is finished */
    /* store_commit bookkeeping. fail_hi: last sequence number of the most
     * recent failed batch (batches are consecutive ranges, so a failed
     * batch holding a write after mark m has fail_hi > m). Refused writes
     * are counted in stats.dropped. */
    uint64_t fail_hi;
    unsigned urgent; /* OP_COMMIT queued: commit without waiting */
    unsigned reads;  /* OP_MSG_GET queued: run without waiting */
    /* Writer thread only: rows the current batch deleted by cap/purge,
     * added to stats when it commits. */
    uint64_t w_capped, w_purged;
    bool failed_since_sync;
    bool stop;
    struct store_stats stats;
};

static void
errf(char *err, size_t errlen, const char *path, const char *what,
     const char *why)
{
    if (err && errlen)
        snprintf(err, errlen, "store: %s: %s: %s", path, what, why);
}

static int
exec_sql(sqlite3 *db, const char *sql, char *err, size_t errlen,
         const char *path)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

    if (rc != SQLITE_OK) {
        errf(err, errlen, path, sql, msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return -EIO;
    }
    return 0;
}

static int
open_db(const char *path, int flags, sqlite3 **out, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);

    if (rc != SQLITE_OK) {
        errf(err, errlen, path, "open",
             db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return -EIO;
    }
    /* The writer holds the write lock only briefly; a reader at start-up
     * or a second process (pushpbxctl) waits instead of failing. */
    sqlite3_busy_timeout(db, 5000);
    *out = db;
    return 0;
}

/* ---- writer thread ---------------------------------------------------- */

static void
op_free(struct op *o)
{
    bool secret = o->kind == OP_PROV_PUT || o->kind == OP_PROV_IMPORT;

    for (size_t k = 0; k < sizeof(o->s) / sizeof(o->s[0]); k++) {
        if (secret && o->s[k])
            explicit_bzero(o->s[k], strlen(o->s[k]));
        free(o->s[k]);
    }
    free(o->blob);
    free(o);
}

static int
bind_text(sqlite3_stmt *s, int idx, const char *v)
{
    return sqlite3_bind_text(s, idx, v ? v : "", -1, SQLITE_STATIC);
}

/* Bind the op's values to its statement and step it. Returns SQLITE_DONE
 * on success, another sqlite3 code otherwise. */
/* OP_MSG_GET: copy the row into o (o->rc = 0), or o->rc = -ENOENT. */
static int
run_get(struct store *st, struct op *o)
{
    sqlite3_stmt *s = st->stmt[ST_MSG_GET];
    int rc = sqlite3_bind_int64(s, 1, o->i[0]);

    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        for (int k = 0; k < 5; k++) {
            const char *t = (const char *)sqlite3_column_text(s, k);
            o->s[k] = xstrdup(t ? t : "");
        }
        const void *b = sqlite3_column_blob(s, 5);
        int n = sqlite3_column_bytes(s, 5);
        o->blob_len = n > 0 ? (size_t)n : 0;
        o->blob = xmalloc(o->blob_len + 1);
        if (o->blob_len)
            memcpy(o->blob, b, o->blob_len);
        ((char *)o->blob)[o->blob_len] = '\0'; /* text bodies: a C string */
        o->i[1] = sqlite3_column_int64(s, 6);
        o->i[2] = sqlite3_column_int64(s, 7);
        o->i[3] = sqlite3_column_int64(s, 8);
        o->rc = 0;
        rc = SQLITE_DONE;
    } else if (rc == SQLITE_DONE) {
        o->rc = -ENOENT;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc;
}

static int
run_msg_put(struct store *st, const struct op *o)
{
    sqlite3_stmt *s = st->stmt[ST_MSG_PUT];
    /* s[]: ext sender_uri sender_name call_id content_type
     * i[]: id cseq received_at expires_at cap */
    static const int text_col[5] = {2, 3, 4, 5, 7};
    int rc = sqlite3_bind_int64(s, 1, o->i[0]);

    for (int k = 0; k < 5 && rc == SQLITE_OK; k++)
        rc = bind_text(s, text_col[k], o->s[k]);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 6, o->i[1]);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_blob64(s, 8, o->blob ? o->blob : "",
                                 (sqlite3_uint64)o->blob_len, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 9, o->i[2]);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 10, o->i[3]);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_DONE || o->i[4] <= 0)
        return rc;
    s = st->stmt[ST_MSG_CAP];
    rc = bind_text(s, 1, o->s[0]);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 2, o->i[4]);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
        st->w_capped += (uint64_t)sqlite3_changes(st->db);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc;
}

static int
run_op(struct store *st, struct op *o)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;

    switch (o->kind) {
    case OP_EXT_PUT:
        s = st->stmt[ST_EXT_PUT];
        for (int k = 0; k < 5 && rc == SQLITE_OK; k++)
            rc = bind_text(s, k + 1, o->s[k]);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int64(s, 6, o->i[0]);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int64(s, 7, o->i[1]);
        if (rc == SQLITE_OK)
            rc = bind_text(s, 8, source_name[o->i[2]]);
        break;
    case OP_EXT_SOURCE:
        s = st->stmt[ST_EXT_SOURCE];
        rc = bind_text(s, 1, o->s[0]);
        if (rc == SQLITE_OK)
            rc = bind_text(s, 2, source_name[o->i[0]]);
        break;
    case OP_PD_PUT:
    case OP_PROV_PUT:
    case OP_PROV_IMPORT:
        /* s[0..4] / s[0..2] text, i[0..1] / i[0..3] integers, in column
         * order (see store_pushdev_put, store_prov_put). */
        s = st->stmt[o->kind == OP_PD_PUT     ? ST_PD_PUT
                     : o->kind == OP_PROV_PUT ? ST_PROV_PUT
                                              : ST_PROV_IMPORT];
        {
            int ntext = o->kind == OP_PD_PUT ? 5 : 3;
            int nint = o->kind == OP_PD_PUT ? 2 : 4;
            for (int k = 0; k < ntext && rc == SQLITE_OK; k++)
                rc = bind_text(s, k + 1, o->s[k]);
            for (int k = 0; k < nint && rc == SQLITE_OK; k++)
                rc = sqlite3_bind_int64(s, ntext + k + 1, o->i[k]);
        }
        break;
    case OP_PD_DEL:
        s = st->stmt[ST_PD_DEL];
        rc = bind_text(s, 1, o->s[0]);
        if (rc == SQLITE_OK)
            rc = bind_text(s, 2, o->s[1]);
        break;
    case OP_PD_DEL_EXT:
    case OP_PROV_DEL:
        s = st->stmt[o->kind == OP_PD_DEL_EXT ? ST_PD_DEL_EXT : ST_PROV_DEL];
        rc = bind_text(s, 1, o->s[0]);
        break;
    case OP_COMMIT:
        return SQLITE_DONE;
    case OP_MSG_GET:
        return run_get(st, o);
    case OP_MSG_PUT:
        return run_msg_put(st, o);
    case OP_MSG_DEL:
    case OP_MSG_PURGE:
        s = st->stmt[o->kind == OP_MSG_DEL ? ST_MSG_DEL : ST_MSG_PURGE];
        rc = sqlite3_bind_int64(s, 1, o->i[0]);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(s);
        if (rc == SQLITE_DONE && o->kind == OP_MSG_PURGE)
            st->w_purged += (uint64_t)sqlite3_changes(st->db);
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
        return rc;
    case OP_MSG_DEL_EXT:
        s = st->stmt[ST_MSG_DEL_EXT];
        rc = bind_text(s, 1, o->s[0]);
        break;
    case OP_EXT_DEL:
    case OP_BIND_DEL_EXT:
        s = st->stmt[o->kind == OP_EXT_DEL ? ST_EXT_DEL : ST_BIND_DEL_EXT];
        rc = bind_text(s, 1, o->s[0]);
        break;
    case OP_BIND_DEL:
        s = st->stmt[ST_BIND_DEL];
        rc = bind_text(s, 1, o->s[0]);
        if (rc == SQLITE_OK)
            rc = bind_text(s, 2, o->s[1]);
        break;
    case OP_BIND_PUT: {
        s = st->stmt[ST_BIND_PUT];
        /* s[]: ext key uri params instance call_id path source ua
         * i[]: reg_id cseq expires_at updated_at transport flow_id */
        static const int text_col[9] = {1, 2, 3, 4, 5, 7, 11, 12, 15};
        static const int int_col[6] = {6, 8, 9, 10, 13, 14};
        for (int k = 0; k < 9 && rc == SQLITE_OK; k++)
            rc = bind_text(s, text_col[k], o->s[k]);
        for (int k = 0; k < 6 && rc == SQLITE_OK; k++)
            rc = sqlite3_bind_int64(s, int_col[k], o->i[k]);
        break;
    }
    default:
        return SQLITE_MISUSE;
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc;
}

static int
step_simple(struct store *st, enum stmt_id id)
{
    int rc = sqlite3_step(st->stmt[id]);

    sqlite3_reset(st->stmt[id]);
    return rc;
}

/* Commit one batch. Returns true on success. */
static bool
commit_batch(struct store *st, struct list_node *batch, size_t count)
{
    struct list_node *pos, *tmp;
    int rc;

    st->w_capped = st->w_purged = 0;
    if (count == 0)
        return true; /* only store_commit requests: nothing to write */
    rc = step_simple(st, ST_BEGIN);
    if (rc != SQLITE_DONE) {
        log_error("store", "BEGIN failed: %s ops=%zu", sqlite3_errstr(rc),
                  count);
        return false;
    }
    list_for_each_safe(pos, tmp, batch)
    {
        struct op *o = container_of(pos, struct op, node);
        rc = run_op(st, o);
        if (rc != SQLITE_DONE) {
            log_error("store", "write failed: %s (%s) kind=%d",
                      sqlite3_errstr(rc), sqlite3_errmsg(st->db), o->kind);
            step_simple(st, ST_ROLLBACK);
            return false;
        }
    }
    rc = step_simple(st, ST_COMMIT);
    if (rc != SQLITE_DONE) {
        log_error("store", "COMMIT failed: %s ops=%zu", sqlite3_errstr(rc),
                  count);
        step_simple(st, ST_ROLLBACK);
        return false;
    }
    return true;
}

static void
deadline_after(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void *
writer_main(void *arg)
{
    struct store *st = arg;

    pthread_mutex_lock(&st->lock);
    for (;;) {
        while (st->queue_len == 0 && !st->stop)
            pthread_cond_wait(&st->wake, &st->lock);
        if (st->queue_len == 0 && st->stop)
            break;
        if (!st->stop) {
            /* Batch window: let a burst accumulate. A stop request ends
             * the wait early so shutdown does not lose flush_ms. */
            struct timespec until;
            deadline_after(&until, st->flush_ms);
            while (!st->stop && st->urgent == 0 && st->reads == 0) {
                if (pthread_cond_timedwait(&st->wake, &st->lock, &until) ==
                    ETIMEDOUT)
                    break;
            }
        }
        struct list_node batch;
        list_init(&batch);
        if (!list_empty(&st->queue)) {
            /* Move the whole queue into batch in O(1). */
            batch.next = st->queue.next;
            batch.prev = st->queue.prev;
            batch.next->prev = &batch;
            batch.prev->next = &batch;
            list_init(&st->queue);
        }
        /* Ops that run SQL (writes and reads), no commit requests. */
        size_t count = st->queue_len - st->urgent;
        size_t reads = st->reads;
        uint64_t last = st->seq_queued;
        st->queue_len = 0;
        st->urgent = 0;
        st->reads = 0;
        pthread_mutex_unlock(&st->lock);

        bool ok = commit_batch(st, &batch, count);
        /* Free the writes now (outside the lock); keep the commit
         * requests, whose callers are told under the lock. */
        struct list_node requests, gets, *pos, *tmp;
        list_init(&requests);
        list_init(&gets);
        list_for_each_safe(pos, tmp, &batch)
        {
            struct op *o = container_of(pos, struct op, node);
            list_remove(pos);
            if (o->kind == OP_COMMIT)
                list_push_back(&requests, pos);
            else if (o->kind == OP_MSG_GET)
                list_push_back(&gets, pos);
            else
                op_free(o);
        }
        /* Reads first, outside the lock: a message fetched for delivery
         * need not wait for the commit requests' bookkeeping. */
        list_for_each_safe(pos, tmp, &gets)
        {
            struct op *o = container_of(pos, struct op, node);
            list_remove(pos);
            int grc = ok ? o->rc : -EIO;
            struct store_msg m = {
                .id = (uint64_t)o->i[0],
                .ext = o->s[0],
                .sender_uri = o->s[1],
                .sender_name = o->s[2],
                .call_id = o->s[3],
                .content_type = o->s[4],
                .body = o->blob,
                .body_len = o->blob_len,
                .cseq = (uint32_t)o->i[1],
                .received_at = o->i[2],
                .expires_at = o->i[3],
            };
            o->get_cb(grc, grc == 0 ? &m : NULL, o->cb_arg);
            op_free(o);
        }

        pthread_mutex_lock(&st->lock);
        if (ok) {
            st->stats.committed += count - reads;
            if (count > reads)
                st->stats.batches++;
            st->stats.msg_capped += st->w_capped;
            st->stats.msg_purged += st->w_purged;
        } else {
            st->stats.errors++;
            st->failed_since_sync = true;
            st->fail_hi = last;
        }
        st->seq_done = last;
        struct list_node async;
        list_init(&async);
        list_for_each_safe(pos, tmp, &requests)
        {
            struct op *o = container_of(pos, struct op, node);
            list_remove(pos);
            if (o->abandoned) {
                op_free(o);
                continue;
            }
            /* Every batch up to this one is finished, later ones have not
             * run: fail_hi > mark means a batch holding a write queued
             * after the caller's mark was rolled back. */
            o->rc = st->fail_hi > o->mark ? -EIO : 0;
            o->done = true;
            if (o->cb)
                list_push_back(&async, pos);
        }
        pthread_cond_broadcast(&st->done);
        if (!list_empty(&async)) {
            /* Outside the lock: a callback may queue more. */
            pthread_mutex_unlock(&st->lock);
            list_for_each_safe(pos, tmp, &async)
            {
                struct op *o = container_of(pos, struct op, node);
                list_remove(pos);
                o->cb(o->rc, o->cb_arg);
                op_free(o);
            }
            pthread_mutex_lock(&st->lock);
        }
    }
    pthread_mutex_unlock(&st->lock);
    return NULL;
}

static int
enqueue(struct store *st, struct op *o)
{
    pthread_mutex_lock(&st->lock);
    if (st->queue_len >= st->max_queue || st->stop) {
        st->stats.dropped++;
        pthread_mutex_unlock(&st->lock);
        op_free(o);
        /* Logged by the writer's counters and the caller; keep this cheap
         * because a full queue means we are already overloaded. */
        return -ENOSPC;
    }
    list_push_back(&st->queue, &o->node);
    st->queue_len++;
    st->seq_queued++;
    st->stats.queued++;
    if (st->queue_len == 1)
        pthread_cond_signal(&st->wake);
    pthread_mutex_unlock(&st->lock);
    return 0;
}

static char *
dup_or_empty(const char *s)
{
    return xstrdup(s ? s : "");
}

static struct op *
op_new(enum op_kind kind)
{
    struct op *o = xcalloc(1, sizeof(*o));
    o->kind = kind;
    return o;
}

int
store_ext_put(struct store *st, const struct store_ext *e)
{
    struct op *o = op_new(OP_EXT_PUT);

    o->s[0] = dup_or_empty(e->number);
    o->s[1] = dup_or_empty(e->display);
    o->s[2] = dup_or_empty(e->realm);
    o->s[3] = dup_or_empty(e->ha1_md5);
    o->s[4] = dup_or_empty(e->ha1_sha256);
    o->i[0] = e->enabled ? 1 : 0;
    o->i[1] = e->max_push_devices;
    o->i[2] = e->source == STORE_EXT_CONFIG ? STORE_EXT_CONFIG : STORE_EXT_API;
    return enqueue(st, o);
}

int
store_ext_set_source(struct store *st, const char *number,
                     enum store_ext_source source)
{
    struct op *o = op_new(OP_EXT_SOURCE);

    o->s[0] = dup_or_empty(number);
    o->i[0] = source == STORE_EXT_CONFIG ? STORE_EXT_CONFIG : STORE_EXT_API;
    return enqueue(st, o);
}

int
store_ext_del(struct store *st, const char *number)
{
    struct op *o = op_new(OP_EXT_DEL);

    o->s[0] = dup_or_empty(number);
    return enqueue(st, o);
}

int
store_binding_put(struct store *st, const struct store_binding *b)
{
    struct op *o = op_new(OP_BIND_PUT);

    o->s[0] = dup_or_empty(b->ext);
    o->s[1] = dup_or_empty(b->key);
    o->s[2] = dup_or_empty(b->uri);
    o->s[3] = dup_or_empty(b->params);
    o->s[4] = dup_or_empty(b->instance);
    o->s[5] = dup_or_empty(b->call_id);
    o->s[6] = dup_or_empty(b->path);
    o->s[7] = dup_or_empty(b->source);
    o->s[8] = dup_or_empty(b->user_agent);
    o->i[0] = b->reg_id;
    o->i[1] = b->cseq;
    o->i[2] = b->expires_at;
    o->i[3] = b->updated_at;
    o->i[4] = b->transport;
    /* SQLite integers are signed 64-bit; flow ids stay far below 2^63. */
    o->i[5] = (int64_t)(b->flow_id & INT64_MAX);
    return enqueue(st, o);
}

int
store_binding_del(struct store *st, const char *ext, const char *key)
{
    struct op *o = op_new(OP_BIND_DEL);

    o->s[0] = dup_or_empty(ext);
    o->s[1] = dup_or_empty(key);
    return enqueue(st, o);
}

int
store_binding_del_ext(struct store *st, const char *ext)
{
    struct op *o = op_new(OP_BIND_DEL_EXT);

    o->s[0] = dup_or_empty(ext);
    return enqueue(st, o);
}

int
store_pushdev_put(struct store *st, const struct store_pushdev *d)
{
    struct op *o = op_new(OP_PD_PUT);

    o->s[0] = dup_or_empty(d->ext);
    o->s[1] = dup_or_empty(d->provider);
    o->s[2] = dup_or_empty(d->prid);
    o->s[3] = dup_or_empty(d->param);
    o->s[4] = dup_or_empty(d->instance);
    o->i[0] = d->created_at;
    o->i[1] = d->last_seen;
    return enqueue(st, o);
}

int
store_pushdev_del(struct store *st, const char *provider, const char *prid)
{
    struct op *o = op_new(OP_PD_DEL);

    o->s[0] = dup_or_empty(provider);
    o->s[1] = dup_or_empty(prid);
    return enqueue(st, o);
}

int
store_pushdev_del_ext(struct store *st, const char *ext)
{
    struct op *o = op_new(OP_PD_DEL_EXT);

    o->s[0] = dup_or_empty(ext);
    return enqueue(st, o);
}

static struct op *
prov_op(enum op_kind kind, const struct store_prov *p)
{
    struct op *o = op_new(kind);

    o->s[0] = dup_or_empty(p->ext);
    o->s[1] = dup_or_empty(p->token);
    o->s[2] = dup_or_empty(p->password);
    o->i[0] = p->created_at;
    o->i[1] = p->expires_at;
    o->i[2] = p->fetches;
    o->i[3] = p->max_fetches;
    return o;
}

int
store_prov_put(struct store *st, const struct store_prov *p)
{
    return enqueue(st, prov_op(OP_PROV_PUT, p));
}

int
store_prov_del(struct store *st, const char *ext)
{
    struct op *o = op_new(OP_PROV_DEL);

    o->s[0] = dup_or_empty(ext);
    return enqueue(st, o);
}

int
store_msg_put(struct store *st, const struct store_msg *m,
              unsigned max_per_ext)
{
    if (m->id == 0 || m->id > INT64_MAX || !m->ext || !m->ext[0])
        return -EINVAL;
    struct op *o = op_new(OP_MSG_PUT);

    o->s[0] = dup_or_empty(m->ext);
    o->s[1] = dup_or_empty(m->sender_uri);
    o->s[2] = dup_or_empty(m->sender_name);
    o->s[3] = dup_or_empty(m->call_id);
    o->s[4] = dup_or_empty(m->content_type);
    o->blob_len = m->body ? m->body_len : 0;
    o->blob = xmalloc(o->blob_len ? o->blob_len : 1);
    if (o->blob_len)
        memcpy(o->blob, m->body, o->blob_len);
    o->i[0] = (int64_t)m->id;
    o->i[1] = m->cseq;
    o->i[2] = m->received_at;
    o->i[3] = m->expires_at;
    o->i[4] = max_per_ext;
    return enqueue(st, o);
}

int
store_msg_del(struct store *st, uint64_t id)
{
    struct op *o = op_new(OP_MSG_DEL);

    o->i[0] = (int64_t)(id & INT64_MAX);
    return enqueue(st, o);
}

int
store_msg_del_ext(struct store *st, const char *ext)
{
    struct op *o = op_new(OP_MSG_DEL_EXT);

    o->s[0] = dup_or_empty(ext);
    return enqueue(st, o);
}

int
store_msg_purge(struct store *st, int64_t now_s)
{
    struct op *o = op_new(OP_MSG_PURGE);

    o->i[0] = now_s;
    return enqueue(st, o);
}

void
store_msg_get_async(struct store *st, uint64_t id, store_msg_get_cb *cb,
                    void *arg)
{
    struct op *o = op_new(OP_MSG_GET);
    int rc = 0;

    o->i[0] = (int64_t)(id & INT64_MAX);
    o->get_cb = cb;
    o->cb_arg = arg;
    pthread_mutex_lock(&st->lock);
    if (st->stop) {
        rc = -ESHUTDOWN;
    } else if (st->queue_len >= st->max_queue) {
        st->stats.dropped++;
        rc = -ENOSPC;
    } else {
        list_push_back(&st->queue, &o->node);
        st->queue_len++;
        st->seq_queued++;
        st->reads++;
        pthread_cond_signal(&st->wake); /* also ends a batch window */
    }
    pthread_mutex_unlock(&st->lock);
    if (rc < 0) {
        op_free(o);
        cb(rc, NULL, arg);
    }
}

int
store_sync(struct store *st)
{
    pthread_mutex_lock(&st->lock);
    uint64_t target = st->seq_queued;
    if (st->queue_len > 0)
        pthread_cond_signal(&st->wake);
    while (st->seq_done < target)
        pthread_cond_wait(&st->done, &st->lock);
    int rc = st->failed_since_sync ? -EIO : 0;
    st->failed_since_sync = false;
    pthread_mutex_unlock(&st->lock);
    return rc;
}

struct store_mark
store_mark(struct store *st)
{
    pthread_mutex_lock(&st->lock);
    struct store_mark m = {.seq = st->seq_queued,
                           .dropped = st->stats.dropped};
    pthread_mutex_unlock(&st->lock);
    return m;
}

int
store_commit(struct store *st, struct store_mark m, unsigned timeout_ms)
{
    uint64_t mark = m.seq;
    struct timespec until;
    int rc = 0;

    deadline_after(&until, timeout_ms);
    pthread_mutex_lock(&st->lock);
    if (st->stop) {
        pthread_mutex_unlock(&st->lock);
        return -ESHUTDOWN;
    }
    if (st->stats.dropped > m.dropped) {
        /* A write queued after mark never entered the queue. The others
         * still commit within flush_ms as usual. */
        pthread_mutex_unlock(&st->lock);
        return -ENOSPC;
    }
    if (st->seq_done >= st->seq_queued) {
        /* Nothing is waiting: every write after mark is finished. */
        rc = st->fail_hi > mark ? -EIO : 0;
        pthread_mutex_unlock(&st->lock);
        return rc;
    }
    /* A request in the queue, not a write: it is never refused for a
     * full queue (the caller waits, which is back-pressure enough). */
    struct op *o = op_new(OP_COMMIT);
    o->mark = mark;
    list_push_back(&st->queue, &o->node);
    st->queue_len++;
    st->seq_queued++;
    st->urgent++;
    pthread_cond_signal(&st->wake); /* also ends a batch window */
    while (!o->done) {
        if (pthread_cond_timedwait(&st->done, &st->lock, &until) ==
                ETIMEDOUT &&
            !o->done) {
            o->abandoned = true; /* the writer frees it */
            pthread_mutex_unlock(&st->lock);
            return -ETIMEDOUT;
        }
    }
    rc = o->rc;
    pthread_mutex_unlock(&st->lock);
    op_free(o);
    return rc;
}

void
store_commit_async(struct store *st, struct store_mark m, store_commit_cb *cb,
                   void *arg)
{
    int rc;

    pthread_mutex_lock(&st->lock);
    if (st->stop) {
        rc = -ESHUTDOWN;
    } else if (st->stats.dropped > m.dropped) {
        rc = -ENOSPC;
    } else if (st->seq_done >= st->seq_queued) {
        rc = st->fail_hi > m.seq ? -EIO : 0;
    } else {
        struct op *o = op_new(OP_COMMIT);
        o->mark = m.seq;
        o->cb = cb;
        o->cb_arg = arg;
        list_push_back(&st->queue, &o->node);
        st->queue_len++;
        st->seq_queued++;
        st->urgent++;
        pthread_cond_signal(&st->wake); /* also ends a batch window */
        pthread_mutex_unlock(&st->lock);
        return;
    }
    pthread_mutex_unlock(&st->lock);
    cb(rc, arg);
}

void
store_get_stats(struct store *st, struct store_stats *out)
{
    pthread_mutex_lock(&st->lock);
    *out = st->stats;
    out->queue_len = st->queue_len;
    pthread_mutex_unlock(&st->lock);
    out->checkpoints = store_ckpt_count(st->ckpt);
}

/* ---- open / close ----------------------------------------------------- */

static void
finalize_all(struct store *st)
{
    for (int k = 0; k < ST__COUNT; k++) {
        sqlite3_finalize(st->stmt[k]);
        st->stmt[k] = NULL;
    }
}

/* Databases written before extensions had a source: add the column. Their
 * rows count as created through the API (the daemon cannot know better);
 * the configuration file's extensions are marked again at start-up. */
static int
migrate(sqlite3 *db, char *err, size_t errlen, const char *path)
{
    sqlite3_stmt *probe = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT source FROM extensions LIMIT 0",
                                -1, &probe, NULL);

    sqlite3_finalize(probe);
    if (rc == SQLITE_OK)
        return 0;
    return exec_sql(db,
                    "ALTER TABLE extensions ADD COLUMN source TEXT NOT NULL"
                    " DEFAULT 'api'",
                    err, errlen, path);
}

int
store_open(const struct store_cfg *cfg, struct store **out, char *err,
           size_t errlen)
{
    const char *path = cfg->path ? cfg->path : "";

    if (path[0] == '\0' || strcmp(path, ":memory:") == 0) {
        errf(err, errlen, path, "path", "a file path is required");
        return -EINVAL;
    }
    /* Create the parent directory (one level: "var/" of `make run`). */
    const char *slash = strrchr(path, '/');
    if (slash && slash != path) {
        char *dir = xstrndup(path, (size_t)(slash - path));
        if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
            errf(err, errlen, path, "mkdir", strerror(errno));
            free(dir);
            return -errno;
        }
        free(dir);
    }
    int lock = store_instance_lock(path);
    if (lock < 0) {
        errf(err, errlen, path, "lock",
             lock == -EBUSY ? "in use by another running pushpbx"
                            : strerror(-lock));
        return lock;
    }
    struct store *st = xcalloc(1, sizeof(*st));
    st->instance_lock = lock;
    st->path = xstrdup(path);
    st->flush_ms = cfg->flush_ms < 10     ? 10
                   : cfg->flush_ms > 1000 ? 1000
                                          : cfg->flush_ms;
    st->max_queue = cfg->max_queue ? cfg->max_queue : 100000;
    list_init(&st->queue);

    int rc = open_db(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &st->db,
                     err, errlen);
    if (rc < 0)
        goto fail;
    /* WAL: readers never block the writer; NORMAL: a commit is durable
     * against a process crash (the WAL is in the OS cache), which is the
     * failure this store is designed for. */
    rc = exec_sql(st->db, "PRAGMA journal_mode=WAL", err, errlen, path);
    if (rc == 0)
        rc = exec_sql(st->db, "PRAGMA synchronous=NORMAL", err, errlen, path);
    if (rc == 0)
        rc = exec_sql(st->db, schema_sql, err, errlen, path);
    if (rc == 0)
        rc = migrate(st->db, err, errlen, path);
    if (rc < 0)
        goto fail;
    sqlite3_stmt *jm = NULL;
    if (sqlite3_prepare_v2(st->db, "PRAGMA journal_mode", -1, &jm, NULL) ==
            SQLITE_OK &&
        sqlite3_step(jm) == SQLITE_ROW) {
        const char *mode = (const char *)sqlite3_column_text(jm, 0);
        if (!mode || strcmp(mode, "wal") != 0) {
            errf(err, errlen, path, "journal_mode", "WAL not available");
            rc = -EIO;
        }
    }
    sqlite3_finalize(jm);
    if (rc < 0)
        goto fail;
    for (int k = 0; k < ST__COUNT; k++) {
        int src =
            sqlite3_prepare_v3(st->db, stmt_sql[k], -1,
                               SQLITE_PREPARE_PERSISTENT, &st->stmt[k], NULL);
        if (src != SQLITE_OK) {
            errf(err, errlen, path, stmt_sql[k], sqlite3_errmsg(st->db));
            rc = -EIO;
            goto fail;
        }
    }
    rc = store_ckpt_start(st->db, path, &st->ckpt, err, errlen);
    if (rc < 0)
        goto fail;
    pthread_mutex_init(&st->lock, NULL);
    pthread_cond_init(&st->wake, NULL);
    pthread_cond_init(&st->done, NULL);
    rc = -pthread_create(&st->thread, NULL, writer_main, st);
    if (rc < 0) {
        errf(err, errlen, path, "pthread_create", strerror(-rc));
        pthread_cond_destroy(&st->done);
        pthread_cond_destroy(&st->wake);
        pthread_mutex_destroy(&st->lock);
        store_ckpt_stop(st->ckpt);
        goto fail;
    }
    *out = st;
    return 0;
fail:
    finalize_all(st);
    sqlite3_close(st->db);
    store_instance_unlock(st->instance_lock);
    free(st->path);
    free(st);
    return rc;
}

void
store_close(struct store *st)
{
    if (!st)
        return;
    pthread_mutex_lock(&st->lock);
    st->stop = true;
    pthread_cond_signal(&st->wake);
    pthread_mutex_unlock(&st->lock);
    pthread_join(st->thread, NULL); /* the writer drains the queue first */
    store_ckpt_stop(st->ckpt);
    if (st->stats.errors)
        log_warn("store", "closing after %llu failed batches",
                 (unsigned long long)st->stats.errors);
    finalize_all(st);
    int rc = sqlite3_close(st->db);
    if (rc != SQLITE_OK)
        log_error("store", "close: %s", sqlite3_errstr(rc));
    pthread_cond_destroy(&st->done);
    pthread_cond_destroy(&st->wake);
    pthread_mutex_destroy(&st->lock);
    store_instance_unlock(st->instance_lock);
    free(st->path);
    free(st);
}

/* ---- start-up reads --------------------------------------------------- */

/* A read connection for a start-up load. The tables are read in rowid
 * order (a sequential scan): ORDER BY on the primary key or another column
 * made SQLite look every row up through an index or sort them all, which
 * at a million rows was most of the restore time
 * (bench/million-bench.py); the callers put rows in order themselves. The
 * file is mapped (reads without a copy) and the cache is 64 MiB while the
 * connection lives (only at start-up). */
static int
open_reader(struct store *st, sqlite3 **db)
{
    int rc = open_db(st->path, SQLITE_OPEN_READONLY, db, NULL, 0);

    if (rc == 0) {
        sqlite3_exec(*db, "PRAGMA mmap_size=4294967296", NULL, NULL, NULL);
        sqlite3_exec(*db, "PRAGMA cache_size=-65536", NULL, NULL, NULL);
    }
    return rc;
}

static const char *
col_text(sqlite3_stmt *s, int col)
{
    const char *t = (const char *)sqlite3_column_text(s, col);
    return t ? t : "";
}

int
store_count(struct store *st, const char *table, size_t *out)
{
    static const char *const known[] = {"extensions", "bindings",
                                        "push_devices", "prov_links"};
    char sql[64];
    sqlite3 *db;
    sqlite3_stmt *s = NULL;
    bool ok = false;

    *out = 0;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        ok = ok || strcmp(table, known[i]) == 0;
    if (!ok)
        return -EINVAL;
    int rc = open_reader(st, &db);
    if (rc < 0)
        return rc;
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        *out = (size_t)sqlite3_column_int64(s, 0);
    else
        rc = -EIO;
    sqlite3_finalize(s);
    sqlite3_close(db);
    return rc;
}

int
store_ext_load(struct store *st, store_ext_cb *cb, void *arg)
{
    sqlite3 *db;
    sqlite3_stmt *s = NULL;
    int rc = open_reader(st, &db);

    if (rc < 0)
        return rc;
    if (sqlite3_prepare_v2(db,
                           "SELECT number, display, realm, ha1_md5,"
                           " ha1_sha256, enabled, max_push_devices, source"
                           " FROM extensions",
                           -1, &s, NULL) != SQLITE_OK) {
        log_error("store", "load extensions: %s", sqlite3_errmsg(db));
        rc = -EIO;
        goto out;
    }
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        struct store_ext e = {
            .number = col_text(s, 0),
            .display = col_text(s, 1),
            .realm = col_text(s, 2),
            .ha1_md5 = col_text(s, 3),
            .ha1_sha256 = col_text(s, 4),
            .enabled = sqlite3_column_int(s, 5) != 0,
            .max_push_devices = (unsigned)sqlite3_column_int(s, 6),
            .source = strcmp(col_text(s, 7), "config") == 0 ? STORE_EXT_CONFIG
                                                          : STORE_EXT_API,
        };
        rc = cb(&e, arg);
        if (rc != 0)
            goto out;
    }
    if (step != SQLITE_DONE) {
        log_error("store", "load extensions: %s", sqlite3_errmsg(db));
        rc = -EIO;
    }
out:
    sqlite3_finalize(s);
    sqlite3_close(db);
    return rc;
}

int
store_binding_load(struct store *st, int64_t now_s, store_binding_cb *cb,
                   void *arg)
{
    /* Expired rows are removed through the writer, so the only connection
     * that writes stays the writer's. */
    sqlite3 *db;
    sqlite3_stmt *s = NULL;
    int rc = open_reader(st, &db);

    if (rc < 0)
        return rc;
    if (sqlite3_prepare_v2(
            db,
            "SELECT ext, bkey, uri, params, instance, reg_id, call_id, cseq,"
            " expires_at, updated_at, path, source, transport, flow_id,"
            " user_agent FROM bindings",
            -1, &s, NULL) != SQLITE_OK) {
        log_error("store", "load bindings: %s", sqlite3_errmsg(db));
        rc = -EIO;
        goto out;
    }
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        struct store_binding b = {
            .ext = col_text(s, 0),
            .key = col_text(s, 1),
            .uri = col_text(s, 2),
            .params = col_text(s, 3),
            .instance = col_text(s, 4),
            .reg_id = (uint32_t)sqlite3_column_int64(s, 5),
            .call_id = col_text(s, 6),
            .cseq = (uint32_t)sqlite3_column_int64(s, 7),
            .expires_at = sqlite3_column_int64(s, 8),
            .updated_at = sqlite3_column_int64(s, 9),
            .path = col_text(s, 10),
            .source = col_text(s, 11),
            .transport = sqlite3_column_int(s, 12),
            .flow_id = (uint64_t)sqlite3_column_int64(s, 13),
            .user_agent = col_text(s, 14),
        };
        if (b.expires_at <= now_s) {
            store_binding_del(st, b.ext, b.key);
            continue;
        }
        rc = cb(&b, arg);
        if (rc != 0)
            goto out;
    }
    if (step != SQLITE_DONE) {
        log_error("store", "load bindings: %s", sqlite3_errmsg(db));
        rc = -EIO;
    }
out:
    sqlite3_finalize(s);
    sqlite3_close(db);
    return rc;
}

int
store_pushdev_load(struct store *st, int64_t idle_before_s,
                   store_pushdev_cb *cb, void *arg)
{
    sqlite3 *db;
    sqlite3_stmt *s = NULL;
    int rc = open_reader(st, &db);

    if (rc < 0)
        return rc;
    if (sqlite3_prepare_v2(db,
                           "SELECT ext, provider, prid, param, instance,"
                           " created_at, last_seen FROM push_devices",
                           -1, &s, NULL) != SQLITE_OK) {
        log_error("store", "load push devices: %s", sqlite3_errmsg(db));
        rc = -EIO;
        goto out;
    }
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        struct store_pushdev d = {
            .ext = col_text(s, 0),
            .provider = col_text(s, 1),
            .prid = col_text(s, 2),
            .param = col_text(s, 3),
            .instance = col_text(s, 4),
            .created_at = sqlite3_column_int64(s, 5),
            .last_seen = sqlite3_column_int64(s, 6),
        };
        if (d.last_seen < idle_before_s) {
            store_pushdev_del(st, d.provider, d.prid);
            continue;
        }
        rc = cb(&d, arg);
        if (rc != 0)
            goto out;
    }
    if (step != SQLITE_DONE) {
        log_error("store", "load push devices: %s", sqlite3_errmsg(db));
        rc = -EIO;
    }
out:
    sqlite3_finalize(s);
    sqlite3_close(db);
    return rc;
}

/* Rows of prov_links (the store's) or admin_prov (an old prov_db file);
 * an admin_prov from before links had a lifetime lacks the last three
 * columns: its links get expires_at 0, i.e. they are expired (410), as
 * the old admin's own migration did. */
static int
prov_rows(sqlite3 *db, const char *table, bool import, store_prov_cb *cb,
          void *arg)
{
    char sql[256];
    sqlite3_stmt *s = NULL;

    snprintf(sql, sizeof(sql),
             "SELECT ext, token, password, created_at, expires_at, fetches,"
             " max_fetches FROM %s ORDER BY ext",
             table);
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK && import) {
        snprintf(sql, sizeof(sql),
                 "SELECT ext, token, password, created_at, 0, 0, 0"
                 " FROM %s ORDER BY ext",
                 table);
        sqlite3_finalize(s);
        s = NULL;
        (void)sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    }
    if (!s) {
        log_error("store", "load %s: %s", table, sqlite3_errmsg(db));
        return -EIO;
    }
    int rc = 0, step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        struct store_prov p = {
            .ext = col_text(s, 0),
            .token = col_text(s, 1),
            .password = col_text(s, 2),
            .created_at = sqlite3_column_int64(s, 3),
            .expires_at = sqlite3_column_int64(s, 4),
            .fetches = (unsigned)sqlite3_column_int64(s, 5),
            .max_fetches = (unsigned)sqlite3_column_int64(s, 6),
        };
        rc = cb(&p, arg);
        if (rc != 0)
            break;
    }
    if (rc == 0 && step != SQLITE_DONE) {
        log_error("store", "load %s: %s", table, sqlite3_errmsg(db));
        rc = -EIO;
    }
    sqlite3_finalize(s);
    return rc;
}

int
store_prov_load(struct store *st, store_prov_cb *cb, void *arg)
{
    sqlite3 *db;
    int rc = open_db(st->path, SQLITE_OPEN_READONLY, &db, NULL, 0);

    if (rc < 0)
        return rc;
    rc = prov_rows(db, "prov_links", false, cb, arg);
    sqlite3_close(db);
    return rc;
}

int
store_msg_load(struct store *st, const char *ext, int64_t now_s, bool bodies,
               store_msg_cb *cb, void *arg)
{
    sqlite3 *db;
    sqlite3_stmt *s = NULL;
    char sql[512];
    int rc = open_db(st->path, SQLITE_OPEN_READONLY, &db, NULL, 0);

    if (rc < 0)
        return rc;
    /* length(body) does not read the blob's pages (SQLite optimises
     * length() of a blob column), so the load without bodies stays cheap
     * with 64 KiB messages. */
    snprintf(sql, sizeof(sql),
             "SELECT id, ext, sender_uri, sender_name, call_id, cseq,"
             " content_type, %s, length(body), received_at, expires_at"
             " FROM messages%s ORDER BY ext, id",
             bodies ? "body" : "NULL", ext ? " WHERE ext=?1" : "");
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK ||
        (ext && sqlite3_bind_text(s, 1, ext, -1, SQLITE_STATIC) !=
                    SQLITE_OK)) {
        log_error("store", "load messages: %s", sqlite3_errmsg(db));
        rc = -EIO;
        goto out;
    }
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        struct store_msg m = {
            .id = (uint64_t)sqlite3_column_int64(s, 0),
            .ext = col_text(s, 1),
            .sender_uri = col_text(s, 2),
            .sender_name = col_text(s, 3),
            .call_id = col_text(s, 4),
            .cseq = (uint32_t)sqlite3_column_int64(s, 5),
            .content_type = col_text(s, 6),
            .body = bodies ? sqlite3_column_blob(s, 7) : NULL,
            .body_len = (size_t)sqlite3_column_int64(s, 8),
            .received_at = sqlite3_column_int64(s, 9),
            .expires_at = sqlite3_column_int64(s, 10),
        };
        if (m.expires_at <= now_s) {
            store_msg_del(st, m.id);
            continue;
        }
        rc = cb(&m, arg);
        if (rc != 0)
            goto out;
    }
    if (step != SQLITE_DONE) {
        log_error("store", "load messages: %s", sqlite3_errmsg(db));
        rc = -EIO;
    }
out:
    sqlite3_finalize(s);
    sqlite3_close(db);
    return rc;
}

int
store_msg_counts(struct store *st, int64_t now_s, store_msg_count_cb *cb,
                 void *arg)
{
    sqlite3 *db;
    sqlite3_stmt *s = NULL;
    int rc = open_db(st->path, SQLITE_OPEN_READONLY, &db, NULL, 0);

    if (rc < 0)
        return rc;
    if (sqlite3_prepare_v2(db,
                           "SELECT ext, count(*), min(received_at),"
                           " sum(length(body)) FROM messages"
                           " WHERE expires_at > ?1 GROUP BY ext ORDER BY ext",
                           -1, &s, NULL) != SQLITE_OK ||
        sqlite3_bind_int64(s, 1, now_s) != SQLITE_OK) {
        log_error("store", "count messages: %s", sqlite3_errmsg(db));
        rc = -EIO;
        goto out;
    }
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        struct store_msg_count c = {
            .ext = col_text(s, 0),
            .count = (uint64_t)sqlite3_column_int64(s, 1),
            .oldest_received_at = sqlite3_column_int64(s, 2),
            .bytes = (uint64_t)sqlite3_column_int64(s, 3),
        };
        rc = cb(&c, arg);
        if (rc != 0)
            goto out;
    }
    if (step != SQLITE_DONE) {
        log_error("store", "count messages: %s", sqlite3_errmsg(db));
        rc = -EIO;
    }
out:
    sqlite3_finalize(s);
    sqlite3_close(db);
    return rc;
}

int
store_msg_last_id(struct store *st, uint64_t *out)
{
    sqlite3 *db;
    sqlite3_stmt *s = NULL;
    int rc = open_db(st->path, SQLITE_OPEN_READONLY, &db, NULL, 0);

    *out = 0;
    if (rc < 0)
        return rc;
    /* sqlite_sequence holds the highest id ever inserted (AUTOINCREMENT);
     * max(id) covers a file whose sequence row was lost (a hand edit). */
    if (sqlite3_prepare_v2(db,
                           "SELECT max(coalesce((SELECT seq FROM"
                           " sqlite_sequence WHERE name='messages'), 0),"
                           " coalesce((SELECT max(id) FROM messages), 0))",
                           -1, &s, NULL) != SQLITE_OK ||
        sqlite3_step(s) != SQLITE_ROW) {
        log_error("store", "last message id: %s", sqlite3_errmsg(db));
        rc = -EIO;
    } else {
        *out = (uint64_t)sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return rc;
}

struct import {
    struct store *st;
    int count;
};

static int
import_row(const struct store_prov *p, void *arg)
{
    struct import *im = arg;

    if (enqueue(im->st, prov_op(OP_PROV_IMPORT, p)) < 0)
        return -ENOSPC;
    im->count++;
    return 0;
}

/* Same file? (The store's path may not exist under that name yet only in
 * theory: store_open created it.) */
static bool
same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

int
store_prov_import(struct store *st, const char *path, char *err,
                  size_t errlen)
{
    struct stat sb;
    sqlite3 *db;
    sqlite3_stmt *probe = NULL;

    if (!path || !path[0] || strcmp(path, ":memory:") == 0)
        return 0;
    if (stat(path, &sb) < 0) {
        if (errno == ENOENT)
            return 0;
        errf(err, errlen, path, "stat", strerror(errno));
        return -errno;
    }
    if (same_file(path, st->path)) {
        errf(err, errlen, path, "import",
             "is the store's own database: set [admin] prov_db to the old "
             "provisioning file, or to \"\"");
        return -EINVAL;
    }
    /* Read-write (never create): a hot journal left by a crash of the old
     * admin is rolled back on open, as SQLite does for any reader. */
    int rc = open_db(path, SQLITE_OPEN_READWRITE, &db, err, errlen);
    if (rc < 0)
        return rc;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM admin_prov LIMIT 0", -1, &probe,
                           NULL) != SQLITE_OK) {
        /* Not a provisioning file (or an empty one): nothing to do. */
        sqlite3_finalize(probe);
        sqlite3_close(db);
        log_warn("store", "%s has no provisioning links to import", path);
        return 0;
    }
    sqlite3_finalize(probe);
    struct store_mark m = store_mark(st);
    struct import im = {.st = st};
    rc = prov_rows(db, "admin_prov", true, import_row, &im);
    sqlite3_close(db);
    if (rc == 0)
        rc = store_commit(st, m, 10000);
    if (rc < 0) {
        errf(err, errlen, path, "import of the provisioning links",
             rc == -ENOSPC ? "store queue full" : strerror(-rc));
        return rc;
    }
    char *to = xmalloc(strlen(path) + sizeof(".imported"));
    memcpy(to, path, strlen(path));
    memcpy(to + strlen(path), ".imported", sizeof(".imported"));
    if (rename(path, to) < 0) {
        rc = -errno;
        errf(err, errlen, path, "rename after import", strerror(errno));
        free(to);
        return rc;
    }
    log_notice("store", "imported %d provisioning links from %s (renamed %s)",
               im.count, path, to);
    free(to);
    return im.count;
}
