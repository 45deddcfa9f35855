/*
 * store/store_sqlite: the SQLite backend (store_int.h): statements
 * prepared once on the writer's connection, every sqlite3 return code
 * checked, a batch in one BEGIN IMMEDIATE .. COMMIT (WAL,
 * synchronous=NORMAL); start-up reads on short-lived read-only
 * connections of their own, which WAL lets run next to the writer.
 */
#include "store/store_backup.h"
#include "store/store_ckpt_int.h"
#include "store/store_int.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/list.h"
#include "base/log.h"
#include "base/xmalloc.h"

enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_EXT_PUT,
    ST_EXT_DEL,
    ST_BIND_PUT,
    ST_BIND_DEL,
    ST_BIND_DEL_EXT,
    ST_BIND_DEL_NODE,
    ST_EXT_SOURCE,
    ST_PD_PUT,
    ST_PD_DEL,
    ST_PD_DEL_EXT,
    ST_PROV_PUT,
    ST_PROV_IMPORT,
    ST_PROV_DEL,
    ST_PROV_FETCH,
    ST_PROV_ROW,
    ST_MSG_PUT,
    ST_MSG_CAP,
    ST_MSG_DEL,
    ST_MSG_DEL_EXT,
    ST_MSG_PURGE,
    ST_MSG_GET,
    ST_NODE_PUT,
    ST_CALL_PUT,
    ST_CALL_CAP,
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
    /* An upsert, not INSERT OR REPLACE: a refresh updates the row in
     * place (the key is unchanged, so the primary-key index is not
     * touched) where REPLACE deleted it from the table and the index and
     * inserted it again under a new rowid. Same row afterwards. */
    [ST_BIND_PUT] =
        "INSERT INTO bindings(ext, bkey, uri, params, instance,"
        " reg_id, call_id, cseq, expires_at, updated_at, path, source,"
        " transport, flow_id, user_agent, node)"
        " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)"
        " ON CONFLICT(ext, bkey) DO UPDATE SET uri=?3, params=?4,"
        " instance=?5, reg_id=?6, call_id=?7, cseq=?8, expires_at=?9,"
        " updated_at=?10, path=?11, source=?12, transport=?13,"
        " flow_id=?14, user_agent=?15, node=?16",
    [ST_BIND_DEL] = "DELETE FROM bindings WHERE ext=?1 AND bkey=?2",
    [ST_BIND_DEL_EXT] = "DELETE FROM bindings WHERE ext=?1",
    [ST_BIND_DEL_NODE] =
        "DELETE FROM bindings WHERE ext=?1 AND bkey=?2 AND node=?3",
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
    /* store_prov_count_fetch: counted only on the link fetched, only
     * while it may serve; then the row as it is. */
    [ST_PROV_FETCH] = "UPDATE prov_links SET fetches=fetches+1 WHERE ext=?1"
                      " AND token=?2 AND fetches < max_fetches"
                      " AND expires_at > ?3",
    [ST_PROV_ROW] = "SELECT fetches, max_fetches, expires_at FROM prov_links"
                    " WHERE ext=?1 AND token=?2",
    [ST_MSG_PUT] = "INSERT OR REPLACE INTO messages(id, ext, sender_uri,"
                   " sender_name, call_id, cseq, content_type, body,"
                   " received_at, expires_at, received_us)"
                   " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
    /* Keep the newest ?2 of ?1 by arrival, (received_us, id): the row at
     * offset ?2 from the newest and every older one go (NULL, so
     * nothing, when there are fewer). */
    [ST_MSG_CAP] = "DELETE FROM messages WHERE ext=?1 AND (received_us, id)"
                   " <= (SELECT received_us, id FROM messages WHERE ext=?1"
                   " ORDER BY received_us DESC, id DESC LIMIT 1 OFFSET ?2)",
    [ST_MSG_DEL] = "DELETE FROM messages WHERE id=?1",
    [ST_MSG_DEL_EXT] = "DELETE FROM messages WHERE ext=?1",
    [ST_MSG_PURGE] = "DELETE FROM messages WHERE expires_at <= ?1",
    [ST_MSG_GET] = "SELECT ext, sender_uri, sender_name, call_id,"
                   " content_type, body, cseq, received_at, expires_at,"
                   " received_us FROM messages WHERE id=?1",
    [ST_NODE_PUT] = "INSERT INTO nodes(name, advertise, started_at,"
                    " last_seen, calls) VALUES(?1,?2,?3,?4,?5)"
                    " ON CONFLICT(name)"
                    " DO UPDATE SET advertise=excluded.advertise,"
                    " started_at=excluded.started_at,"
                    " last_seen=excluded.last_seen, calls=excluded.calls",
    [ST_CALL_PUT] = STORE_CALL_INSERT
    " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,"
    "?19,?20)" STORE_CALL_UPSERT,
    /* Keep the newest ?2 rows of node ?1, as ST_MSG_CAP does. */
    [ST_CALL_CAP] = "DELETE FROM call_records WHERE node=?1 AND id <= (SELECT"
                    " id FROM call_records WHERE node=?1 ORDER BY id DESC"
                    " LIMIT 1 OFFSET ?2)",
};

/* The backend's state (st->be). */
struct sq {
    int instance_lock; /* store_instance_lock: one daemon per database */
    sqlite3 *db;
    sqlite3_stmt *stmt[ST__COUNT];
    struct store_ckpt *ckpt; /* WAL checkpoints off the writer's commits */
};

static int
exec_sql(sqlite3 *db, const char *sql, char *err, size_t errlen,
         const char *path)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

    if (rc != SQLITE_OK) {
        store_errf(err, errlen, path, sql, msg ? msg : sqlite3_errstr(rc));
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
        store_errf(err, errlen, path, "open",
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

static int
bind_text(sqlite3_stmt *s, int idx, const char *v)
{
    return sqlite3_bind_text(s, idx, v ? v : "", -1, SQLITE_STATIC);
}

/* String k of a packed op (store_int.h) with its known length: SQLite
 * need not strlen it again (a binding refresh binds eleven). */
static int
bind_op_text(sqlite3_stmt *s, int idx, const struct op *o, int k)
{
    return sqlite3_bind_text(s, idx, o->s[k], (int)o->len[k], SQLITE_STATIC);
}

/* Bind the op's values to its statement and step it. Returns SQLITE_DONE
 * on success, another sqlite3 code otherwise. */
/* OP_MSG_GET: copy the row into o (o->rc = 0), or o->rc = -ENOENT. */
static int
run_get(struct sq *q, struct op *o)
{
    sqlite3_stmt *s = q->stmt[ST_MSG_GET];
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
        o->i[4] = sqlite3_column_int64(s, 9);
        o->rc = 0;
        rc = SQLITE_DONE;
    } else if (rc == SQLITE_DONE) {
        o->rc = -ENOENT;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc;
}

/* OP_PROV_FETCH: count (or not), then read the row (store_int.h). */
static int
run_prov_fetch(struct sq *q, struct op *o)
{
    sqlite3_stmt *u = q->stmt[ST_PROV_FETCH], *s = q->stmt[ST_PROV_ROW];
    int rc = bind_op_text(u, 1, o, 0);

    if (rc == SQLITE_OK)
        rc = bind_op_text(u, 2, o, 1);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(u, 3, o->i[0]);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(u);
    o->i[1] = rc == SQLITE_DONE && sqlite3_changes(q->db) == 1;
    sqlite3_reset(u);
    sqlite3_clear_bindings(u);
    if (rc != SQLITE_DONE)
        return rc;
    rc = bind_op_text(s, 1, o, 0);
    if (rc == SQLITE_OK)
        rc = bind_op_text(s, 2, o, 1);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    o->i[2] = rc == SQLITE_ROW;
    for (int k = 0; k < 3; k++)
        o->i[3 + k] = rc == SQLITE_ROW ? sqlite3_column_int64(s, k) : 0;
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
        o->rc = 0;
        rc = SQLITE_DONE;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc;
}

static int
run_msg_put(struct store *st, struct sq *q, const struct op *o)
{
    sqlite3_stmt *s = q->stmt[ST_MSG_PUT];
    /* s[]: ext sender_uri sender_name call_id content_type
     * i[]: id cseq received_at expires_at cap received_us */
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
        rc = sqlite3_bind_int64(s, 11, o->i[5]);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_DONE || o->i[4] <= 0)
        return rc;
    s = q->stmt[ST_MSG_CAP];
    rc = bind_text(s, 1, o->s[0]);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 2, o->i[4]);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
        st->w_capped += (uint64_t)sqlite3_changes(q->db);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc;
}

static int
run_call_put(struct store *st, struct sq *q, const struct op *o)
{
    sqlite3_stmt *s = q->stmt[ST_CALL_PUT];
    /* s[]: node call_id caller callee outcome answered_by (?1-?5, ?7);
     * i[0] ?6, i[1] ?8, i[2..13] ?9..?20 */
    int rc = SQLITE_OK;

    for (int k = 0; k < 5 && rc == SQLITE_OK; k++)
        rc = bind_text(s, k + 1, o->s[k]);
    if (rc == SQLITE_OK)
        rc = bind_text(s, 7, o->s[5]);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 6, o->i[0]);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 8, o->i[1]);
    for (int k = 2; k < 14 && rc == SQLITE_OK; k++)
        rc = sqlite3_bind_int64(s, 7 + k, o->i[k]);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_DONE || o->i[14] <= 0)
        return rc;
    s = q->stmt[ST_CALL_CAP];
    rc = bind_text(s, 1, o->s[0]);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 2, o->i[14]);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
        st->w_calls_capped += (uint64_t)sqlite3_changes(q->db);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc;
}

static int
run_op(struct store *st, struct sq *q, struct op *o)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;

    switch (o->kind) {
    case OP_EXT_PUT:
        s = q->stmt[ST_EXT_PUT];
        for (int k = 0; k < 5 && rc == SQLITE_OK; k++)
            rc = bind_text(s, k + 1, o->s[k]);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int64(s, 6, o->i[0]);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int64(s, 7, o->i[1]);
        if (rc == SQLITE_OK)
            rc = bind_text(s, 8, store_source_name[o->i[2]]);
        break;
    case OP_EXT_SOURCE:
        s = q->stmt[ST_EXT_SOURCE];
        rc = bind_text(s, 1, o->s[0]);
        if (rc == SQLITE_OK)
            rc = bind_text(s, 2, store_source_name[o->i[0]]);
        break;
    case OP_PD_PUT:
    case OP_PROV_PUT:
    case OP_PROV_IMPORT:
        /* s[0..4] / s[0..2] text, i[0..1] / i[0..3] integers, in column
         * order (see store_pushdev_put, store_prov_put). */
        s = q->stmt[o->kind == OP_PD_PUT     ? ST_PD_PUT
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
        s = q->stmt[ST_PD_DEL];
        rc = bind_text(s, 1, o->s[0]);
        if (rc == SQLITE_OK)
            rc = bind_text(s, 2, o->s[1]);
        break;
    case OP_PD_DEL_EXT:
    case OP_PROV_DEL:
        s = q->stmt[o->kind == OP_PD_DEL_EXT ? ST_PD_DEL_EXT : ST_PROV_DEL];
        rc = bind_text(s, 1, o->s[0]);
        break;
    case OP_COMMIT:
        return SQLITE_DONE;
    case OP_MSG_GET:
        return run_get(q, o);
    case OP_PROV_FETCH:
        return run_prov_fetch(q, o);
    case OP_MSG_PUT:
        return run_msg_put(st, q, o);
    case OP_CALL_PUT:
        return run_call_put(st, q, o);
    case OP_MSG_DEL:
    case OP_MSG_PURGE:
        s = q->stmt[o->kind == OP_MSG_DEL ? ST_MSG_DEL : ST_MSG_PURGE];
        rc = sqlite3_bind_int64(s, 1, o->i[0]);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(s);
        if (rc == SQLITE_DONE && o->kind == OP_MSG_PURGE)
            st->w_purged += (uint64_t)sqlite3_changes(q->db);
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
        return rc;
    case OP_MSG_DEL_EXT:
        s = q->stmt[ST_MSG_DEL_EXT];
        rc = bind_text(s, 1, o->s[0]);
        break;
    case OP_EXT_DEL:
    case OP_BIND_DEL_EXT:
        s = q->stmt[o->kind == OP_EXT_DEL ? ST_EXT_DEL : ST_BIND_DEL_EXT];
        rc = bind_op_text(s, 1, o, 0);
        break;
    case OP_BIND_DEL:
    case OP_BIND_DEL_NODE:
        s = q->stmt[o->kind == OP_BIND_DEL ? ST_BIND_DEL : ST_BIND_DEL_NODE];
        rc = bind_op_text(s, 1, o, 0);
        if (rc == SQLITE_OK)
            rc = bind_op_text(s, 2, o, 1);
        if (rc == SQLITE_OK && o->kind == OP_BIND_DEL_NODE)
            rc = bind_op_text(s, 3, o, 2);
        break;
    case OP_BIND_PUT: {
        s = q->stmt[ST_BIND_PUT];
        /* s[]: ext key uri params instance call_id path source ua node
         * i[]: reg_id cseq expires_at updated_at transport flow_id */
        static const int text_col[10] = {1, 2, 3, 4, 5, 7, 11, 12, 15, 16};
        static const int int_col[6] = {6, 8, 9, 10, 13, 14};
        for (int k = 0; k < 10 && rc == SQLITE_OK; k++)
            rc = bind_op_text(s, text_col[k], o, k);
        for (int k = 0; k < 6 && rc == SQLITE_OK; k++)
            rc = sqlite3_bind_int64(s, int_col[k], o->i[k]);
        break;
    }
    case OP_NODE_PUT: {
        s = q->stmt[ST_NODE_PUT];
        rc = bind_text(s, 1, o->s[0]);
        if (rc == SQLITE_OK)
            rc = bind_text(s, 2, o->s[1]);
        for (int k = 0; k < 3 && rc == SQLITE_OK; k++)
            rc = sqlite3_bind_int64(s, 3 + k, o->i[k]);
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
step_simple(struct sq *q, enum stmt_id id)
{
    int rc = sqlite3_step(q->stmt[id]);

    sqlite3_reset(q->stmt[id]);
    return rc;
}

/* Commit one batch. Returns true on success. */
static bool
run_batch(struct store *st, struct list_node *batch, size_t count)
{
    struct sq *q = st->be;
    struct list_node *pos, *tmp;
    int rc;

    st->w_capped = st->w_purged = st->w_calls_capped = 0;
    if (count == 0)
        return true; /* only store_commit requests: nothing to write */
    rc = step_simple(q, ST_BEGIN);
    if (rc != SQLITE_DONE) {
        log_error("store", "BEGIN failed: %s ops=%zu", sqlite3_errstr(rc),
                  count);
        return false;
    }
    list_for_each_safe(pos, tmp, batch)
    {
        struct op *o = container_of(pos, struct op, node);
        rc = run_op(st, q, o);
        if (rc != SQLITE_DONE) {
            log_error("store", "write failed: %s (%s) kind=%d",
                      sqlite3_errstr(rc), sqlite3_errmsg(q->db), o->kind);
            step_simple(q, ST_ROLLBACK);
            return false;
        }
    }
    rc = step_simple(q, ST_COMMIT);
    if (rc != SQLITE_DONE) {
        log_error("store", "COMMIT failed: %s ops=%zu", sqlite3_errstr(rc),
                  count);
        step_simple(q, ST_ROLLBACK);
        return false;
    }
    return true;
}

static void
finalize_all(struct sq *q)
{
    for (int k = 0; k < ST__COUNT; k++) {
        sqlite3_finalize(q->stmt[k]);
        q->stmt[k] = NULL;
    }
}

/* Databases written before extensions had a source: add the column. Their
 * rows count as created through the API (the daemon cannot know better);
 * the configuration file's extensions are marked again at start-up. */
static int
migrate_source(sqlite3 *db, char *err, size_t errlen, const char *path)
{
    sqlite3_stmt *probe = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT source FROM extensions LIMIT 0", -1,
                                &probe, NULL);

    sqlite3_finalize(probe);
    if (rc == SQLITE_OK)
        return 0;
    return exec_sql(db,
                    "ALTER TABLE extensions ADD COLUMN source TEXT NOT NULL"
                    " DEFAULT 'api'",
                    err, errlen, path);
}

static int
read_version(sqlite3 *db, int *out)
{
    sqlite3_stmt *s = NULL;
    int rc = -EIO;

    if (sqlite3_prepare_v2(db,
                           "SELECT coalesce(max(version), 0)"
                           " FROM schema_version",
                           -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
        *out = sqlite3_column_int(s, 0);
        rc = 0;
    }
    sqlite3_finalize(s);
    return rc;
}

/* Run the migrations the file lacks (store_int.h), all in one
 * transaction: a failure leaves the file as it was. */
static int
migrate(sqlite3 *db, char *err, size_t errlen, const char *path)
{
    int v = 0;
    int rc = exec_sql(db,
                      "CREATE TABLE IF NOT EXISTS schema_version("
                      " version INTEGER PRIMARY KEY,"
                      " applied_at INTEGER NOT NULL)",
                      err, errlen, path);

    if (rc == 0)
        rc = exec_sql(db, "BEGIN IMMEDIATE", err, errlen, path);
    if (rc < 0)
        return rc;
    if (read_version(db, &v) < 0) {
        store_errf(err, errlen, path, "schema_version", sqlite3_errmsg(db));
        rc = -EIO;
    } else if (v > STORE_SCHEMA_VERSION) {
        char why[128];
        snprintf(why, sizeof(why),
                 "schema version %d is newer than this pushpbx's (%d)", v,
                 STORE_SCHEMA_VERSION);
        store_errf(err, errlen, path, "schema", why);
        rc = -EINVAL;
    }
    for (size_t k = 0; rc == 0 && k < store_migration_count; k++) {
        const struct store_migration *m = &store_migrations[k];
        char sql[128];
        if (m->version <= v)
            continue;
        if (m->sqlite)
            rc = exec_sql(db, m->sqlite, err, errlen, path);
        if (rc == 0 && m->version == 1)
            rc = migrate_source(db, err, errlen, path);
        snprintf(sql, sizeof(sql),
                 "INSERT INTO schema_version VALUES(%d, strftime('%%s'))",
                 m->version);
        if (rc == 0)
            rc = exec_sql(db, sql, err, errlen, path);
    }
    if (rc == 0)
        return exec_sql(db, "COMMIT", err, errlen, path);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* Before SQLite's first use in the process: no memory statistics (we
 * read none), so sqlite3_malloc/free take no global mutex; most of a
 * binding write's mutex work on the writer. Later (the library already
 * initialised) it is refused and changes nothing. */
static void
sq_global_config(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

static int
sq_open(struct store *st, const struct store_cfg *cfg, char *err, size_t errlen)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    const char *path = cfg->path ? cfg->path : "";

    pthread_once(&once, sq_global_config);

    if (path[0] == '\0' || strcmp(path, ":memory:") == 0) {
        store_errf(err, errlen, path, "path", "a file path is required");
        return -EINVAL;
    }
    /* Create the parent directory (one level: "var/" of `make run`). */
    const char *slash = strrchr(path, '/');
    if (slash && slash != path) {
        char *dir = xstrndup(path, (size_t)(slash - path));
        if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
            store_errf(err, errlen, path, "mkdir", strerror(errno));
            free(dir);
            return -errno;
        }
        free(dir);
    }
    int lock = store_instance_lock(path);
    if (lock < 0) {
        store_errf(err, errlen, path, "lock",
                   lock == -EBUSY ? "in use by another running pushpbx"
                                  : strerror(-lock));
        return lock;
    }
    struct sq *q = xcalloc(1, sizeof(*q));
    q->instance_lock = lock;
    int rc = open_db(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &q->db,
                     err, errlen);
    if (rc < 0)
        goto fail;
    /* WAL: readers never block the writer; NORMAL: a commit is durable
     * against a process crash (the WAL is in the OS cache), which is the
     * failure this store is designed for. */
    rc = exec_sql(q->db, "PRAGMA journal_mode=WAL", err, errlen, path);
    if (rc == 0)
        rc = exec_sql(q->db, "PRAGMA synchronous=NORMAL", err, errlen, path);
    if (rc == 0)
        rc = migrate(q->db, err, errlen, path);
    if (rc < 0)
        goto fail;
    sqlite3_stmt *jm = NULL;
    if (sqlite3_prepare_v2(q->db, "PRAGMA journal_mode", -1, &jm, NULL) ==
            SQLITE_OK &&
        sqlite3_step(jm) == SQLITE_ROW) {
        const char *mode = (const char *)sqlite3_column_text(jm, 0);
        if (!mode || strcmp(mode, "wal") != 0) {
            store_errf(err, errlen, path, "journal_mode", "WAL not available");
            rc = -EIO;
        }
    }
    sqlite3_finalize(jm);
    if (rc < 0)
        goto fail;
    for (int k = 0; k < ST__COUNT; k++) {
        int src =
            sqlite3_prepare_v3(q->db, stmt_sql[k], -1,
                               SQLITE_PREPARE_PERSISTENT, &q->stmt[k], NULL);
        if (src != SQLITE_OK) {
            store_errf(err, errlen, path, stmt_sql[k], sqlite3_errmsg(q->db));
            rc = -EIO;
            goto fail;
        }
    }
    rc = store_ckpt_start(q->db, path, st->writer_nice, &q->ckpt, err, errlen);
    if (rc < 0)
        goto fail;
    st->path = xstrdup(path);
    st->be = q;
    return 0;
fail:
    finalize_all(q);
    sqlite3_close(q->db);
    store_instance_unlock(q->instance_lock);
    free(q);
    return rc;
}

static void
sq_close(struct store *st)
{
    struct sq *q = st->be;

    store_ckpt_stop(q->ckpt); /* before the writer's connection: its close
                                 checkpoints the rest, removes the WAL */
    finalize_all(q);
    int rc = sqlite3_close(q->db);
    if (rc != SQLITE_OK)
        log_error("store", "close: %s", sqlite3_errstr(rc));
    store_instance_unlock(q->instance_lock);
    free(q);
    st->be = NULL;
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

static int
sq_count(struct store *st, const char *table, size_t *out)
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

static int
sq_ext_load(struct store *st, store_ext_cb *cb, void *arg)
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

static int
sq_binding_load(struct store *st, int64_t now_s, store_binding_cb *cb,
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
            " user_agent, node FROM bindings",
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
            .node = col_text(s, 15),
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

static int
sq_pushdev_load(struct store *st, int64_t idle_before_s, store_pushdev_cb *cb,
                void *arg)
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
prov_rows(sqlite3 *db, const char *table, bool import, const char *ext,
          store_prov_cb *cb, void *arg)
{
    char sql[256];
    sqlite3_stmt *s = NULL;

    snprintf(sql, sizeof(sql),
             "SELECT ext, token, password, created_at, expires_at, fetches,"
             " max_fetches FROM %s%s ORDER BY ext",
             table, ext ? " WHERE ext=?1" : "");
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK && import) {
        snprintf(sql, sizeof(sql),
                 "SELECT ext, token, password, created_at, 0, 0, 0"
                 " FROM %s ORDER BY ext",
                 table);
        sqlite3_finalize(s);
        s = NULL;
        (void)sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    }
    if (!s || (ext && sqlite3_bind_text(s, 1, ext, -1, SQLITE_STATIC) !=
                          SQLITE_OK)) {
        log_error("store", "load %s: %s", table, sqlite3_errmsg(db));
        sqlite3_finalize(s);
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

static int
sq_prov_load(struct store *st, const char *ext, store_prov_cb *cb, void *arg)
{
    sqlite3 *db;
    int rc = open_db(st->path, SQLITE_OPEN_READONLY, &db, NULL, 0);

    if (rc < 0)
        return rc;
    rc = prov_rows(db, "prov_links", false, ext, cb, arg);
    sqlite3_close(db);
    return rc;
}

static int
sq_msg_load(struct store *st, const char *ext, int64_t now_s, bool bodies,
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
             " content_type, %s, length(body), received_at, expires_at,"
             " received_us FROM messages%s ORDER BY ext, received_us, id",
             bodies ? "body" : "NULL", ext ? " WHERE ext=?1" : "");
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK ||
        (ext && sqlite3_bind_text(s, 1, ext, -1, SQLITE_STATIC) != SQLITE_OK)) {
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
            .received_us = sqlite3_column_int64(s, 11),
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

static int
sq_msg_counts(struct store *st, int64_t now_s, store_msg_count_cb *cb,
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

static int
sq_msg_last_id(struct store *st, uint64_t *out)
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

    if (store_prov_import_row(im->st, p) < 0)
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
store_prov_import(struct store *st, const char *path, char *err, size_t errlen)
{
    struct stat sb;
    sqlite3 *db;
    sqlite3_stmt *probe = NULL;

    if (!path || !path[0] || strcmp(path, ":memory:") == 0)
        return 0;
    if (stat(path, &sb) < 0) {
        if (errno == ENOENT)
            return 0;
        store_errf(err, errlen, path, "stat", strerror(errno));
        return -errno;
    }
    if (st->path && same_file(path, st->path)) {
        store_errf(
            err, errlen, path, "import",
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
    rc = prov_rows(db, "admin_prov", true, NULL, import_row, &im);
    sqlite3_close(db);
    if (rc == 0)
        rc = store_commit(st, m, 10000);
    if (rc < 0) {
        store_errf(err, errlen, path, "import of the provisioning links",
                   rc == -ENOSPC ? "store queue full" : strerror(-rc));
        return rc;
    }
    char *to = xmalloc(strlen(path) + sizeof(".imported"));
    memcpy(to, path, strlen(path));
    memcpy(to + strlen(path), ".imported", sizeof(".imported"));
    if (rename(path, to) < 0) {
        rc = -errno;
        store_errf(err, errlen, path, "rename after import", strerror(errno));
        free(to);
        return rc;
    }
    log_notice("store", "imported %d provisioning links from %s (renamed %s)",
               im.count, path, to);
    free(to);
    return im.count;
}
/* ---- schema version, cluster reads ------------------------------------ */

static int
sq_schema_version(struct store *st, int *out)
{
    sqlite3 *db;
    int rc = open_db(st->path, SQLITE_OPEN_READONLY, &db, NULL, 0);

    *out = 0;
    if (rc < 0)
        return rc;
    rc = read_version(db, out);
    sqlite3_close(db);
    return rc;
}

static int
sq_node_load(struct store *st, store_node_cb *cb, void *arg)
{
    sqlite3 *db;
    sqlite3_stmt *s = NULL;
    int rc = open_db(st->path, SQLITE_OPEN_READONLY, &db, NULL, 0);

    if (rc < 0)
        return rc;
    if (sqlite3_prepare_v2(db,
                           "SELECT name, advertise, started_at, last_seen,"
                           " calls FROM nodes",
                           -1, &s, NULL) != SQLITE_OK) {
        log_error("store", "load nodes: %s", sqlite3_errmsg(db));
        rc = -EIO;
        goto out;
    }
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        struct store_node n = {
            .name = col_text(s, 0),
            .advertise = col_text(s, 1),
            .started_at = sqlite3_column_int64(s, 2),
            .last_seen = sqlite3_column_int64(s, 3),
            .calls = sqlite3_column_int64(s, 4),
        };
        rc = cb(&n, arg);
        if (rc != 0)
            goto out;
    }
    if (step != SQLITE_DONE) {
        log_error("store", "load nodes: %s", sqlite3_errmsg(db));
        rc = -EIO;
    }
out:
    sqlite3_finalize(s);
    sqlite3_close(db);
    return rc;
}

static int
sq_call_load(struct store *st, size_t limit, store_call_cb *cb, void *arg)
{
    sqlite3 *db;
    sqlite3_stmt *s = NULL;
    int rc = open_db(st->path, SQLITE_OPEN_READONLY, &db, NULL, 0);

    if (rc < 0)
        return rc;
    if (sqlite3_prepare_v2(db,
                           "SELECT " STORE_CALL_COLS " FROM call_records"
                           " ORDER BY ended_ms DESC, id DESC LIMIT ?1",
                           -1, &s, NULL) != SQLITE_OK ||
        sqlite3_bind_int64(s, 1, limit > (uint64_t)INT64_MAX ? INT64_MAX
                                                   : (int64_t)limit) !=
            SQLITE_OK) {
        log_error("store", "load call records: %s", sqlite3_errmsg(db));
        rc = -EIO;
        goto out;
    }
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        /* columns: id, node call_id caller callee outcome, status,
         * answered_by, then 13 integers */
        static const int text_col[6] = {1, 2, 3, 4, 5, 7};
        static const int int_col[14] = {6,  8,  9,  10, 11, 12, 13,
                                        14, 15, 16, 17, 18, 19, 20};
        const char *strs[6];
        int64_t ints[14];
        struct store_call c;
        for (int k = 0; k < 6; k++)
            strs[k] = col_text(s, text_col[k]);
        for (int k = 0; k < 14; k++)
            ints[k] = sqlite3_column_int64(s, int_col[k]);
        store_call_from_row(&c, (uint64_t)sqlite3_column_int64(s, 0), strs,
                            ints);
        rc = cb(&c, arg);
        if (rc != 0)
            goto out;
    }
    if (step != SQLITE_DONE) {
        log_error("store", "load call records: %s", sqlite3_errmsg(db));
        rc = -EIO;
    }
out:
    sqlite3_finalize(s);
    sqlite3_close(db);
    return rc;
}

/* One extension's rows in one read transaction (a consistent view). */
static int
sq_ext_read(struct store *st, const char *ext, int64_t now_s, store_ext_cb *ecb,
            store_binding_cb *bcb, store_pushdev_cb *pcb, void *arg)
{
    static const char *const sql[3] = {
        "SELECT number, display, realm, ha1_md5, ha1_sha256, enabled,"
        " max_push_devices, source FROM extensions WHERE number=?1",
        "SELECT ext, bkey, uri, params, instance, reg_id, call_id, cseq,"
        " expires_at, updated_at, path, source, transport, flow_id,"
        " user_agent, node FROM bindings WHERE ext=?1 AND expires_at > ?2",
        "SELECT ext, provider, prid, param, instance, created_at, last_seen"
        " FROM push_devices WHERE ext=?1",
    };
    sqlite3 *db;
    sqlite3_stmt *s = NULL;
    int rc = open_db(st->path, SQLITE_OPEN_READONLY, &db, NULL, 0);

    if (rc < 0)
        return rc;
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        rc = -EIO;
        goto out;
    }
    for (int q = 0; q < 3 && rc == 0; q++) {
        if (sqlite3_prepare_v2(db, sql[q], -1, &s, NULL) != SQLITE_OK ||
            sqlite3_bind_text(s, 1, ext, -1, SQLITE_STATIC) != SQLITE_OK ||
            (q == 1 && sqlite3_bind_int64(s, 2, now_s) != SQLITE_OK)) {
            log_error("store", "read extension: %s", sqlite3_errmsg(db));
            rc = -EIO;
            break;
        }
        int step = SQLITE_DONE, rows = 0;
        while (rc == 0 && (step = sqlite3_step(s)) == SQLITE_ROW) {
            rows++;
            if (q == 0 && ecb) {
                struct store_ext e = {
                    .number = col_text(s, 0),
                    .display = col_text(s, 1),
                    .realm = col_text(s, 2),
                    .ha1_md5 = col_text(s, 3),
                    .ha1_sha256 = col_text(s, 4),
                    .enabled = sqlite3_column_int(s, 5) != 0,
                    .max_push_devices = (unsigned)sqlite3_column_int(s, 6),
                    .source = strcmp(col_text(s, 7), "config") == 0
                                  ? STORE_EXT_CONFIG
                                  : STORE_EXT_API,
                };
                rc = ecb(&e, arg);
            } else if (q == 1 && bcb) {
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
                    .node = col_text(s, 15),
                };
                rc = bcb(&b, arg);
            } else if (q == 2 && pcb) {
                struct store_pushdev d = {
                    .ext = col_text(s, 0),
                    .provider = col_text(s, 1),
                    .prid = col_text(s, 2),
                    .param = col_text(s, 3),
                    .instance = col_text(s, 4),
                    .created_at = sqlite3_column_int64(s, 5),
                    .last_seen = sqlite3_column_int64(s, 6),
                };
                rc = pcb(&d, arg);
            }
        }
        if (rc == 0 && step != SQLITE_DONE) {
            log_error("store", "read extension: %s", sqlite3_errmsg(db));
            rc = -EIO;
        }
        if (rc == 0 && q == 0 && rows == 0)
            rc = -ENOENT;
        sqlite3_finalize(s);
        s = NULL;
    }
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
out:
    sqlite3_finalize(s);
    sqlite3_close(db);
    return rc;
}

/* One node: nothing else writes the file, so there is nothing to hear. */
static int
sq_watch(struct store *st, store_change_cb *cb, void *arg)
{
    (void)st;
    (void)cb;
    (void)arg;
    return 0;
}

static uint64_t
sq_checkpoints(struct store *st)
{
    return st->be ? store_ckpt_count(((struct sq *)st->be)->ckpt) : 0;
}

const struct store_be_ops store_sqlite_ops = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .run_batch = run_batch,
    .count = sq_count,
    .ext_load = sq_ext_load,
    .binding_load = sq_binding_load,
    .pushdev_load = sq_pushdev_load,
    .prov_load = sq_prov_load,
    .msg_load = sq_msg_load,
    .msg_counts = sq_msg_counts,
    .msg_last_id = sq_msg_last_id,
    .schema_version = sq_schema_version,
    .node_load = sq_node_load,
    .call_load = sq_call_load,
    .watch = sq_watch,
    .ext_read = sq_ext_read,
    .checkpoints = sq_checkpoints,
};
