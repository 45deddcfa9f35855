/*
 * store/store_pg: the PostgreSQL backend (store_int.h), on libpq.
 *
 * Three kinds of connection, each of its own:
 *  - the writer's (writer thread only), in pipeline mode. A batch is
 *    one PQsendQueryPrepared per statement (prepared in the pipeline of
 *    its first use on the connection) and
 *    one PQpipelineSync: everything between two syncs is one implicit
 *    transaction, committed when the sync is processed, so the batch is
 *    committed exactly when PGRES_PIPELINE_SYNC comes back after results
 *    that all succeeded. Any failure (an error, a lost connection) drops
 *    the connection, which rolls the transaction back; the next batch
 *    connects again. Results are read every PIPE_CHUNK statements (a
 *    flush request) so that neither side's socket buffer fills up while
 *    the other waits (libpq's warning about blocking pipelines).
 *  - the reader's (loads, store_ext_read, store_node_load; any thread,
 *    one at a time under a mutex; reconnected when it broke).
 *  - the listener's (store_watch's thread): LISTEN pushpbx.
 *
 * The writer sets the session variable pushpbx.node to the store's node
 * name: the notify trigger (store_schema.c) puts it in front of every
 * notification as its origin.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/list.h"
#include "base/log.h"
#include "base/xmalloc.h"

enum { PIPE_CHUNK = 128 };

/* A key for pg_advisory_xact_lock: nodes starting together migrate one at
 * a time. */
#define MIGRATE_LOCK "7071767870"

enum pst {
    P_EXT_PUT,
    P_EXT_DEL,
    P_BIND_PUT,
    P_BIND_DEL,
    P_BIND_DEL_EXT,
    P_BIND_DEL_NODE,
    P_EXT_SOURCE,
    P_PD_PUT,
    P_PD_DEL,
    P_PD_DEL_EXT,
    P_PROV_CLEAR,
    P_PROV_PUT,
    P_PROV_IMPORT,
    P_PROV_DEL,
    P_PROV_FETCH,
    P_PROV_ROW,
    P_MSG_PUT,
    P_MSG_SEQ,
    P_MSG_CAP,
    P_MSG_DEL,
    P_MSG_DEL_EXT,
    P_MSG_PURGE,
    P_MSG_GET,
    P_NODE_PUT,
    P_CALL_PUT,
    P_CALL_CAP,
    P__COUNT
};

static const struct {
    const char *name;
    const char *sql;
} pst[P__COUNT] = {
    [P_EXT_PUT] = {"ext_put",
                   "INSERT INTO extensions(number, display, realm, ha1_md5,"
                   " ha1_sha256, enabled, max_push_devices, source)"
                   " VALUES($1,$2,$3,$4,$5,$6,$7,$8)"
                   " ON CONFLICT(number) DO UPDATE SET"
                   " display=EXCLUDED.display, realm=EXCLUDED.realm,"
                   " ha1_md5=EXCLUDED.ha1_md5, ha1_sha256=EXCLUDED.ha1_sha256,"
                   " enabled=EXCLUDED.enabled,"
                   " max_push_devices=EXCLUDED.max_push_devices"},
    [P_EXT_DEL] = {"ext_del", "DELETE FROM extensions WHERE number=$1"},
    [P_BIND_PUT] = {"bind_put",
                    "INSERT INTO bindings(ext, bkey, uri, params, instance,"
                    " reg_id, call_id, cseq, expires_at, updated_at, path,"
                    " source, transport, flow_id, user_agent, node)"
                    " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,"
                    "$15,$16) ON CONFLICT(ext, bkey) DO UPDATE SET"
                    " uri=EXCLUDED.uri, params=EXCLUDED.params,"
                    " instance=EXCLUDED.instance, reg_id=EXCLUDED.reg_id,"
                    " call_id=EXCLUDED.call_id, cseq=EXCLUDED.cseq,"
                    " expires_at=EXCLUDED.expires_at,"
                    " updated_at=EXCLUDED.updated_at, path=EXCLUDED.path,"
                    " source=EXCLUDED.source, transport=EXCLUDED.transport,"
                    " flow_id=EXCLUDED.flow_id,"
                    " user_agent=EXCLUDED.user_agent, node=EXCLUDED.node"},
    [P_BIND_DEL] = {"bind_del",
                    "DELETE FROM bindings WHERE ext=$1 AND bkey=$2"},
    [P_BIND_DEL_EXT] = {"bind_del_ext", "DELETE FROM bindings WHERE ext=$1"},
    [P_BIND_DEL_NODE] = {"bind_del_node", "DELETE FROM bindings WHERE"
                                          " ext=$1 AND bkey=$2 AND node=$3"},
    [P_EXT_SOURCE] = {"ext_source",
                      "UPDATE extensions SET source=$2 WHERE number=$1"},
    [P_PD_PUT] = {"pd_put",
                  "INSERT INTO push_devices(ext, provider, prid, param,"
                  " instance, created_at, last_seen)"
                  " VALUES($1,$2,$3,$4,$5,$6,$7)"
                  " ON CONFLICT(provider, prid) DO UPDATE SET"
                  " ext=EXCLUDED.ext, param=EXCLUDED.param,"
                  " instance=EXCLUDED.instance,"
                  " created_at=EXCLUDED.created_at,"
                  " last_seen=EXCLUDED.last_seen"},
    [P_PD_DEL] = {"pd_del",
                  "DELETE FROM push_devices WHERE provider=$1 AND prid=$2"},
    [P_PD_DEL_EXT] = {"pd_del_ext", "DELETE FROM push_devices WHERE ext=$1"},
    /* SQLite's INSERT OR REPLACE removes the rows in the way on either
     * unique column; ON CONFLICT covers one, so delete both first. */
    [P_PROV_CLEAR] = {"prov_clear",
                      "DELETE FROM prov_links WHERE ext=$1 OR token=$2"},
    [P_PROV_PUT] = {"prov_put", "INSERT INTO prov_links(ext, token, password,"
                                " created_at, expires_at, fetches, max_fetches)"
                                " VALUES($1,$2,$3,$4,$5,$6,$7)"},
    [P_PROV_IMPORT] = {"prov_import",
                       "INSERT INTO prov_links(ext, token, password,"
                       " created_at, expires_at, fetches, max_fetches)"
                       " VALUES($1,$2,$3,$4,$5,$6,$7) ON CONFLICT DO NOTHING"},
    [P_PROV_DEL] = {"prov_del", "DELETE FROM prov_links WHERE ext=$1"},
    /* store_prov_count_fetch: one UPDATE (it waits for another node's
     * open count or delete of the row, then checks the row again), then
     * the row as it is (read committed: a statement of its own sees
     * what the others committed meanwhile, and this count). */
    [P_PROV_FETCH] = {"prov_fetch",
                      "UPDATE prov_links SET fetches=fetches+1 WHERE ext=$1"
                      " AND token=$2 AND fetches < max_fetches"
                      " AND expires_at > $3"},
    [P_PROV_ROW] = {"prov_row",
                    "SELECT fetches, max_fetches, expires_at FROM prov_links"
                    " WHERE ext=$1 AND token=$2"},
    [P_MSG_PUT] = {"msg_put",
                   "INSERT INTO messages(id, ext, sender_uri, sender_name,"
                   " call_id, cseq, content_type, body, received_at,"
                   " expires_at, received_us)"
                   " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"
                   " ON CONFLICT(id) DO UPDATE SET ext=EXCLUDED.ext,"
                   " sender_uri=EXCLUDED.sender_uri,"
                   " sender_name=EXCLUDED.sender_name,"
                   " call_id=EXCLUDED.call_id, cseq=EXCLUDED.cseq,"
                   " content_type=EXCLUDED.content_type, body=EXCLUDED.body,"
                   " received_at=EXCLUDED.received_at,"
                   " expires_at=EXCLUDED.expires_at,"
                   " received_us=EXCLUDED.received_us"},
    [P_MSG_SEQ] = {"msg_seq",
                   "UPDATE message_seq SET last_id=$1 WHERE last_id < $1"},
    /* The newest $2 of $1 by arrival, as ST_MSG_CAP on SQLite. */
    [P_MSG_CAP] = {"msg_cap",
                   "DELETE FROM messages WHERE ext=$1 AND (received_us, id)"
                   " <= (SELECT received_us, id FROM messages WHERE ext=$1"
                   " ORDER BY received_us DESC, id DESC LIMIT 1 OFFSET $2)"},
    [P_MSG_DEL] = {"msg_del", "DELETE FROM messages WHERE id=$1"},
    [P_MSG_DEL_EXT] = {"msg_del_ext", "DELETE FROM messages WHERE ext=$1"},
    [P_MSG_PURGE] = {"msg_purge",
                     "DELETE FROM messages WHERE expires_at <= $1"},
    [P_MSG_GET] = {"msg_get",
                   "SELECT ext, sender_uri, sender_name, call_id,"
                   " content_type, body, cseq, received_at, expires_at,"
                   " received_us FROM messages WHERE id=$1"},
    [P_NODE_PUT] = {"node_put",
                    "INSERT INTO nodes(name, advertise, started_at,"
                    " last_seen, calls) VALUES($1,$2,$3,$4,$5)"
                    " ON CONFLICT(name)"
                    " DO UPDATE SET advertise=EXCLUDED.advertise,"
                    " started_at=EXCLUDED.started_at,"
                    " last_seen=EXCLUDED.last_seen, calls=EXCLUDED.calls"},
    [P_CALL_PUT] = {"call_put",
                    STORE_CALL_INSERT
                    " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,"
                    "$15,$16,$17,$18,$19,$20)" STORE_CALL_UPSERT},
    /* Keep the newest $2 rows of node $1 (P_MSG_CAP's way): a node only
     * deletes its own rows, so nodes never wait on each other here. */
    [P_CALL_CAP] = {"call_cap",
                    "DELETE FROM call_records WHERE node=$1 AND id <= (SELECT"
                    " id FROM call_records WHERE node=$1 ORDER BY id DESC"
                    " LIMIT 1 OFFSET $2)"},
};

/* The backend's state (st->be). */
struct pg {
    char *conninfo;
    PGconn *w;   /* writer thread only; NULL while down */
    bool w_down; /* the outage is logged once */
    /* Statements prepared on w, each in the pipeline of its first use: a
     * statement on a table someone dropped fails its batch only. */
    bool prepared[P__COUNT];
    bool w_lost; /* the last attempt failed for the connection's sake */

    pthread_mutex_t rlock; /* the reader connection */
    PGconn *r;

    /* store_watch */
    bool watching;
    pthread_t watch_thread;
    int stop_pipe[2]; /* close writes a byte: the listener ends */
    store_change_cb *cb;
    void *cb_arg;
};

/* A statement sent and its result still to read. */
struct pend {
    struct op *o;
    enum pst id;
    bool prepare; /* the PQsendPrepare of id, not its execution */
};

static void
quiet_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg; /* "relation ... already exists, skipping" and the like */
}

/* libpq's message on one line: its lines end with newlines (and go on
 * with tabs); a log line or err does not. */
static const char *
trimmed(const char *msg, char *buf, size_t len)
{
    snprintf(buf, len, "%s", msg && msg[0] ? msg : "(no message)");
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\t')
            *p = ' ';
    return buf;
}

/* err without its "store: " (the log line has the room already). */
static const char *
unprefixed(const char *err)
{
    return strncmp(err, "store: ", 7) == 0 ? err + 7 : err;
}

static void
errf_pq(char *err, size_t errlen, const char *what, const char *msg)
{
    char buf[512];
    store_errf(err, errlen, "postgresql", what, trimmed(msg, buf, sizeof(buf)));
}

static PGconn *
connect_db(const char *conninfo, char *err, size_t errlen)
{
    PGconn *c = PQconnectdb(conninfo);

    if (PQstatus(c) != CONNECTION_OK) {
        errf_pq(err, errlen, "connect", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, quiet_notice, NULL);
    return c;
}

/* Run sql (no parameters, maybe several statements); 0 or -EIO with
 * libpq's reason in err. */
static int
exec_ok(PGconn *c, const char *sql, char *err, size_t errlen)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType s = PQresultStatus(r);
    int rc = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK ? 0 : -EIO;

    if (rc < 0)
        errf_pq(err, errlen, "query", PQresultErrorMessage(r));
    PQclear(r);
    return rc;
}

/* PostgreSQL refuses text that is not valid UTF-8 in a UTF-8 database,
 * and one such value would fail its whole batch: a byte that does not
 * start or continue a valid sequence becomes '?'. SIP header values are
 * UTF-8 by RFC 3261, so this only touches garbage. In place: the op's
 * strings are its own copies. */
static void
utf8_fix(char *s)
{
    unsigned char *p = (unsigned char *)s;

    while (p && *p) {
        size_t n = *p < 0x80             ? 1
                   : (*p & 0xe0) == 0xc0 ? 2
                   : (*p & 0xf0) == 0xe0 ? 3
                   : (*p & 0xf8) == 0xf0 ? 4
                                         : 0;
        bool ok = n > 0 && !(n == 2 && *p < 0xc2);
        for (size_t k = 1; ok && k < n; k++)
            ok = (p[k] & 0xc0) == 0x80;
        if (!ok) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}

/* ---- schema ------------------------------------------------------------ */

static int
read_version(PGconn *c, int *out)
{
    PGresult *r = PQexec(c, "SELECT coalesce(max(version), 0)"
                            " FROM schema_version");
    int rc = -EIO;

    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        *out = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
        rc = 0;
    }
    PQclear(r);
    return rc;
}

/* The missing migrations in one transaction, under an advisory lock so
 * that two nodes starting at once do not both run them. */
static int
migrate(PGconn *c, char *err, size_t errlen)
{
    int v = 0;
    int rc = exec_ok(c,
                     "BEGIN; SELECT pg_advisory_xact_lock(" MIGRATE_LOCK ");"
                     "CREATE TABLE IF NOT EXISTS schema_version("
                     " version integer PRIMARY KEY,"
                     " applied_at bigint NOT NULL)",
                     err, errlen);

    if (rc == 0 && read_version(c, &v) < 0) {
        errf_pq(err, errlen, "schema_version", PQerrorMessage(c));
        rc = -EIO;
    }
    if (rc == 0 && v > STORE_SCHEMA_VERSION) {
        char why[128];
        snprintf(why, sizeof(why),
                 "schema version %d is newer than this pushpbx's (%d)", v,
                 STORE_SCHEMA_VERSION);
        store_errf(err, errlen, "postgresql", "schema", why);
        rc = -EINVAL;
    }
    for (size_t k = 0; rc == 0 && k < store_migration_count; k++) {
        const struct store_migration *m = &store_migrations[k];
        char sql[160];
        if (m->version <= v)
            continue;
        if (m->pg)
            rc = exec_ok(c, m->pg, err, errlen);
        snprintf(sql, sizeof(sql),
                 "INSERT INTO schema_version VALUES(%d,"
                 " extract(epoch FROM now())::bigint)",
                 m->version);
        if (rc == 0)
            rc = exec_ok(c, sql, err, errlen);
        if (rc == 0)
            log_notice("store", "postgresql: schema migrated to version %d",
                       m->version);
    }
    if (rc == 0)
        return exec_ok(c, "COMMIT", err, errlen);
    PQclear(PQexec(c, "ROLLBACK"));
    return rc;
}

/* ---- writer ------------------------------------------------------------ */

/* Connect the writer: session origin, pipeline mode. */
static int
w_connect(struct store *st, struct pg *pg, char *err, size_t errlen)
{
    PGconn *c = connect_db(pg->conninfo, err, errlen);

    if (!c)
        return -ECONNREFUSED;
    const char *node = st->node;
    PGresult *r = PQexecParams(c,
                               "SELECT set_config('pushpbx.node', $1,"
                               " false)",
                               1, NULL, &node, NULL, NULL, 0);
    int rc = PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : -EIO;
    if (rc < 0)
        errf_pq(err, errlen, "set_config", PQresultErrorMessage(r));
    PQclear(r);
    if (rc == 0 && PQenterPipelineMode(c) != 1) {
        errf_pq(err, errlen, "pipeline mode", PQerrorMessage(c));
        rc = -EIO;
    }
    if (rc < 0) {
        PQfinish(c);
        return rc;
    }
    pg->w = c;
    memset(pg->prepared, 0, sizeof(pg->prepared));
    return 0;
}

static void
w_drop(struct pg *pg)
{
    PQfinish(pg->w);
    pg->w = NULL;
}

static const char *
nz(const char *s)
{
    return s ? s : "";
}

/* "%lld" of v into out (24 bytes) without snprintf: six per binding
 * write, on the writer thread. */
static void
i64_text(char *out, int64_t v)
{
    char t[20];
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    int n = 0;

    do {
        t[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *out++ = '-';
    while (n)
        *out++ = t[--n];
    *out = '\0';
}

/* Send the statement(s) of o; record each in pend. false: send failed. */
static bool
send_op(struct pg *pg, struct op *o, struct pend *pend, size_t *npend)
{
    char num[15][24];
    const char *v[20];
    int len[20], fmt[20];
    const char *cap[2];
    enum pst id[3];
    int nid = 0, n = 0;

    for (size_t k = 0; k < sizeof(o->s) / sizeof(o->s[0]); k++)
        if (o->s[k])
            utf8_fix(o->s[k]);
    int nnum = o->kind == OP_CALL_PUT ? 15 : 6;
    for (int k = 0; k < nnum; k++)
        i64_text(num[k], o->i[k]);
    switch (o->kind) {
    case OP_EXT_PUT:
        for (int k = 0; k < 5; k++)
            v[n++] = nz(o->s[k]);
        v[n++] = num[0];
        v[n++] = num[1];
        v[n++] = store_source_name[o->i[2]];
        id[nid++] = P_EXT_PUT;
        break;
    case OP_EXT_SOURCE:
        v[n++] = nz(o->s[0]);
        v[n++] = store_source_name[o->i[0]];
        id[nid++] = P_EXT_SOURCE;
        break;
    case OP_EXT_DEL:
    case OP_BIND_DEL_EXT:
    case OP_PD_DEL_EXT:
    case OP_PROV_DEL:
    case OP_MSG_DEL_EXT:
        v[n++] = nz(o->s[0]);
        id[nid++] = o->kind == OP_EXT_DEL        ? P_EXT_DEL
                    : o->kind == OP_BIND_DEL_EXT ? P_BIND_DEL_EXT
                    : o->kind == OP_PD_DEL_EXT   ? P_PD_DEL_EXT
                    : o->kind == OP_PROV_DEL     ? P_PROV_DEL
                                                 : P_MSG_DEL_EXT;
        break;
    case OP_BIND_PUT: {
        /* In column order: ext key uri params instance reg_id call_id cseq
         * expires_at updated_at path source transport flow_id ua node. */
        static const signed char col[16] = {0,  1,  2, 3, 4,  -1, 5, -2,
                                            -3, -4, 6, 7, -5, -6, 8, 9};
        for (int k = 0; k < 16; k++)
            v[n++] = col[k] >= 0 ? nz(o->s[col[k]]) : num[-col[k] - 1];
        id[nid++] = P_BIND_PUT;
        break;
    }
    case OP_BIND_DEL:
    case OP_PD_DEL:
        v[n++] = nz(o->s[0]);
        v[n++] = nz(o->s[1]);
        id[nid++] = o->kind == OP_BIND_DEL ? P_BIND_DEL : P_PD_DEL;
        break;
    case OP_BIND_DEL_NODE:
        for (int k = 0; k < 3; k++)
            v[n++] = nz(o->s[k]);
        id[nid++] = P_BIND_DEL_NODE;
        break;
    case OP_PD_PUT:
        for (int k = 0; k < 5; k++)
            v[n++] = nz(o->s[k]);
        v[n++] = num[0];
        v[n++] = num[1];
        id[nid++] = P_PD_PUT;
        break;
    case OP_PROV_PUT:
    case OP_PROV_IMPORT:
        for (int k = 0; k < 3; k++)
            v[n++] = nz(o->s[k]);
        for (int k = 0; k < 4; k++)
            v[n++] = num[k];
        if (o->kind == OP_PROV_PUT)
            id[nid++] = P_PROV_CLEAR; /* takes $1 and $2 only */
        id[nid++] = o->kind == OP_PROV_PUT ? P_PROV_PUT : P_PROV_IMPORT;
        break;
    case OP_PROV_FETCH:
        v[n++] = nz(o->s[0]);
        v[n++] = nz(o->s[1]);
        v[n++] = num[0];
        id[nid++] = P_PROV_FETCH;
        id[nid++] = P_PROV_ROW; /* takes $1 and $2 only */
        break;
    case OP_MSG_PUT:
        v[n++] = num[0];
        for (int k = 0; k < 4; k++)
            v[n++] = nz(o->s[k]);
        v[n++] = num[1];
        v[n++] = nz(o->s[4]);
        v[n++] = o->blob ? o->blob : "";
        v[n++] = num[2];
        v[n++] = num[3];
        v[n++] = num[5]; /* received_us */
        id[nid++] = P_MSG_PUT;
        id[nid++] = P_MSG_SEQ;
        if (o->i[4] > 0)
            id[nid++] = P_MSG_CAP;
        break;
    case OP_MSG_DEL:
    case OP_MSG_PURGE:
    case OP_MSG_GET:
        v[n++] = num[0];
        id[nid++] = o->kind == OP_MSG_DEL     ? P_MSG_DEL
                    : o->kind == OP_MSG_PURGE ? P_MSG_PURGE
                                              : P_MSG_GET;
        break;
    case OP_NODE_PUT:
        v[n++] = nz(o->s[0]);
        v[n++] = nz(o->s[1]);
        v[n++] = num[0];
        v[n++] = num[1];
        v[n++] = num[2];
        id[nid++] = P_NODE_PUT;
        break;
    case OP_CALL_PUT:
        /* $1-$5 s[0..4], $6 i[0], $7 s[5], $8 i[1], $9-$20 i[2..13] */
        for (int k = 0; k < 5; k++)
            v[n++] = nz(o->s[k]);
        v[n++] = num[0];
        v[n++] = nz(o->s[5]);
        for (int k = 1; k < 14; k++)
            v[n++] = num[k];
        id[nid++] = P_CALL_PUT;
        if (o->i[14] > 0)
            id[nid++] = P_CALL_CAP;
        break;
    case OP_COMMIT:
        return true;
    default:
        return false;
    }
    for (int q = 0; q < nid; q++) {
        const char *const *pv = v;
        int pn = n;
        const int *plen = NULL, *pfmt = NULL;
        if (id[q] == P_PROV_CLEAR || id[q] == P_PROV_ROW) {
            pn = 2;
        } else if (id[q] == P_MSG_SEQ) {
            pn = 1; /* $1 = id */
        } else if (id[q] == P_CALL_CAP) {
            cap[0] = nz(o->s[0]); /* $1 node, $2 how many to keep */
            cap[1] = num[14];
            pv = cap;
            pn = 2;
        } else if (id[q] == P_MSG_CAP) {
            cap[0] = nz(o->s[0]); /* $1 ext, $2 how many to keep */
            cap[1] = num[4];
            pv = cap;
            pn = 2;
        } else if (id[q] == P_MSG_PUT) {
            /* The body goes binary: any bytes, no escaping. */
            for (int k = 0; k < n; k++) {
                len[k] = 0;
                fmt[k] = 0;
            }
            len[7] = (int)o->blob_len;
            fmt[7] = 1;
            plen = len;
            pfmt = fmt;
        }
        if (!pg->prepared[id[q]]) {
            if (PQsendPrepare(pg->w, pst[id[q]].name, pst[id[q]].sql, 0,
                              NULL) != 1)
                return false;
            pend[(*npend)++] =
                (struct pend){.o = o, .id = id[q], .prepare = true};
            pg->prepared[id[q]] = true;
        }
        if (PQsendQueryPrepared(pg->w, pst[id[q]].name, pn, pv, plen, pfmt,
                                0) != 1)
            return false;
        pend[(*npend)++] = (struct pend){.o = o, .id = id[q]};
    }
    return true;
}

static uint64_t
cmd_rows(PGresult *r)
{
    return strtoull(PQcmdTuples(r), NULL, 10);
}

/* OP_MSG_GET's row into its op (o->rc 0), or o->rc = -ENOENT. */
static void
take_get(struct op *o, PGresult *r)
{
    if (PQntuples(r) < 1) {
        o->rc = -ENOENT;
        return;
    }
    for (int k = 0; k < 5; k++) {
        free(o->s[k]); /* a batch sent again after a lost connection */
        o->s[k] = xstrdup(PQgetvalue(r, 0, k));
    }
    free(o->blob);
    size_t n = 0;
    unsigned char *b =
        PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 5), &n);
    o->blob_len = b ? n : 0;
    o->blob = xmalloc(o->blob_len + 1);
    if (o->blob_len)
        memcpy(o->blob, b, o->blob_len);
    ((char *)o->blob)[o->blob_len] = '\0'; /* text bodies: a C string */
    PQfreemem(b);
    for (int k = 0; k < 4; k++) /* cseq received_at expires_at received_us */
        o->i[1 + k] = strtoll(PQgetvalue(r, 0, 6 + k), NULL, 10);
    o->rc = 0;
}

/* OP_PROV_FETCH's row as the count left it (o->rc 0; store_int.h). */
static void
take_prov_row(struct op *o, PGresult *r)
{
    o->i[2] = PQntuples(r) > 0;
    for (int k = 0; k < 3; k++)
        o->i[3 + k] = o->i[2] ? strtoll(PQgetvalue(r, 0, k), NULL, 10) : 0;
    o->rc = 0;
}

/* Read the result of one sent statement (and the NULL that ends it). */
static bool
read_one(struct store *st, struct pg *pg, const struct pend *p)
{
    PGresult *r = PQgetResult(pg->w);
    char buf[512];

    if (!r) {
        log_error("store", "postgresql: no result for %s: %s", pst[p->id].name,
                  trimmed(PQerrorMessage(pg->w), buf, sizeof(buf)));
        return false;
    }
    ExecStatusType s = PQresultStatus(r);
    bool ok = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    /* 08: connection exception; 57P: the server shuts down or restarts
     * (libpq may not have seen the end of the connection yet). */
    if (!ok && state &&
        (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0))
        pg->w_lost = true;
    if (!ok && s != PGRES_PIPELINE_ABORTED)
        log_error("store", "postgresql: write failed (%s): %s", pst[p->id].name,
                  trimmed(PQresultErrorMessage(r), buf, sizeof(buf)));
    if (p->prepare)
        ; /* nothing to take */
    else if (ok && p->id == P_MSG_CAP)
        st->w_capped += cmd_rows(r);
    else if (ok && p->id == P_CALL_CAP)
        st->w_calls_capped += cmd_rows(r);
    else if (ok && p->id == P_MSG_PURGE)
        st->w_purged += cmd_rows(r);
    else if (ok && p->id == P_MSG_GET)
        take_get(p->o, r);
    else if (ok && p->id == P_PROV_FETCH)
        p->o->i[1] = cmd_rows(r) == 1;
    else if (ok && p->id == P_PROV_ROW)
        take_prov_row(p->o, r);
    PQclear(r);
    r = PQgetResult(pg->w);
    if (r) { /* not a single result: the pipeline is out of step */
        PQclear(r);
        return false;
    }
    return ok;
}

static bool
read_pending(struct store *st, struct pg *pg, struct pend *pend, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (!read_one(st, pg, &pend[k]))
            return false;
    return true;
}

/* Send the batch and read its results: true when it committed. */
static bool
attempt(struct store *st, struct pg *pg, struct list_node *batch)
{
    struct list_node *pos, *tmp;
    /* Three statements at most per op (a capped message put), each maybe
     * with its prepare. */
    struct pend pend[PIPE_CHUNK + 6];
    size_t npend = 0;
    char err[512];
    bool ok = true;

    st->w_capped = st->w_purged = st->w_calls_capped = 0;
    list_for_each_safe(pos, tmp, batch)
    {
        struct op *o = container_of(pos, struct op, node);
        if (!send_op(pg, o, pend, &npend)) {
            ok = false;
            break;
        }
        if (npend >= PIPE_CHUNK) {
            ok = PQsendFlushRequest(pg->w) == 1 && PQflush(pg->w) == 0 &&
                 read_pending(st, pg, pend, npend);
            npend = 0;
            if (!ok)
                break;
        }
    }
    if (ok)
        ok = PQpipelineSync(pg->w) == 1 && read_pending(st, pg, pend, npend);
    if (ok) {
        PGresult *r = PQgetResult(pg->w);
        ok = r && PQresultStatus(r) == PGRES_PIPELINE_SYNC;
        if (!ok)
            log_error(
                "store", "postgresql: commit failed: %s",
                trimmed(r ? PQresultErrorMessage(r) : PQerrorMessage(pg->w),
                        err, sizeof(err)));
        PQclear(r);
    }
    return ok;
}

static bool
pg_run_batch(struct store *st, struct list_node *batch, size_t count)
{
    struct pg *pg = st->be;
    char err[512];

    st->w_capped = st->w_purged = st->w_calls_capped = 0;
    if (count == 0)
        return true; /* only store_commit requests: nothing to write */
    /* A connection the server dropped (a restart) is only seen when it is
     * used: then the batch goes once more on a new one. Every write is an
     * upsert or a delete, so sending it again after a commit whose answer
     * was lost does no harm; but a fetch count (OP_PROV_FETCH) then counts
     * twice: one fetch lost, never one too many (store.h). */
    for (int round = 0; round < 2; round++) {
        if (!pg->w) {
            if (w_connect(st, pg, err, sizeof(err)) < 0) {
                if (!pg->w_down)
                    log_error("store", "%s (writes fail until it is back)",
                              unprefixed(err));
                pg->w_down = true;
                return false;
            }
            if (pg->w_down)
                log_notice("store", "postgresql: writer connected again");
            pg->w_down = false;
        }
        pg->w_lost = false;
        if (attempt(st, pg, batch))
            return true;
        bool lost = pg->w_lost || PQstatus(pg->w) == CONNECTION_BAD;
        if (lost)
            log_warn("store", "postgresql: connection lost: %s",
                     trimmed(PQerrorMessage(pg->w), err, sizeof(err)));
        /* Dropping the connection rolls the open transaction back and
         * leaves no pipeline state to untangle. */
        w_drop(pg);
        if (!lost)
            break;
    }
    log_error("store", "postgresql: batch of %zu writes rolled back", count);
    return false;
}

/* ---- reader ------------------------------------------------------------ */

typedef int row_fn(PGresult *r, void *ctx);

/* Run sql on the reader connection (pg->rlock held), one row at a time to
 * fn. A connection found broken before the first row is made again once
 * (the server restarted since the last read). 0, fn's non-zero return, or
 * -EIO. */
static int
r_query(struct pg *pg, const char *what, const char *sql, int n,
        const char *const *vals, row_fn *fn, void *ctx)
{
    char err[512];

    for (int attempt = 0; attempt < 2; attempt++) {
        if (!pg->r || PQstatus(pg->r) != CONNECTION_OK) {
            PQfinish(pg->r);
            pg->r = connect_db(pg->conninfo, err, sizeof(err));
            if (!pg->r) {
                log_error("store", "%s: %s", what, unprefixed(err));
                return -EIO;
            }
        }
        int rc = 0, rows = 0;
        bool failed = false, lost = false;
        if (PQsendQueryParams(pg->r, sql, n, NULL, vals, NULL, NULL, 0) != 1 ||
            PQsetSingleRowMode(pg->r) != 1) {
            failed = true;
        } else {
            PGresult *r;
            while ((r = PQgetResult(pg->r)) != NULL) {
                ExecStatusType s = PQresultStatus(r);
                if (s == PGRES_SINGLE_TUPLE) {
                    rows++;
                    if (rc == 0)
                        rc = fn(r, ctx); /* a stop: drain the rest */
                } else if (s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK) {
                    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
                    lost = lost || (state && (strncmp(state, "08", 2) == 0 ||
                                              strncmp(state, "57P", 3) == 0));
                    if (!failed)
                        log_error(
                            "store", "postgresql: %s: %s", what,
                            trimmed(PQresultErrorMessage(r), err, sizeof(err)));
                    failed = true;
                }
                PQclear(r);
            }
        }
        if (!failed)
            return rc;
        if (rows > 0 || rc != 0 || (!lost && PQstatus(pg->r) == CONNECTION_OK))
            return rc ? rc : -EIO;
        PQfinish(pg->r);
        pg->r = NULL;
        /* Broken before any row: once more on a new connection. */
    }
    return -EIO;
}

static int
r_exec(struct pg *pg, const char *sql)
{
    PGresult *r = PQexec(pg->r, sql);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -EIO;
    PQclear(r);
    return rc;
}

static int64_t
i64(PGresult *r, int col)
{
    return strtoll(PQgetvalue(r, 0, col), NULL, 10);
}

struct rows {
    struct store *st;
    void (*cb)(void); /* the caller's callback, of the load's type */
    void *arg;
    int64_t limit; /* now_s or idle_before_s */
    size_t count;
};

static int
row_ext(PGresult *r, void *ctx)
{
    struct rows *x = ctx;
    struct store_ext e = {
        .number = PQgetvalue(r, 0, 0),
        .display = PQgetvalue(r, 0, 1),
        .realm = PQgetvalue(r, 0, 2),
        .ha1_md5 = PQgetvalue(r, 0, 3),
        .ha1_sha256 = PQgetvalue(r, 0, 4),
        .enabled = i64(r, 5) != 0,
        .max_push_devices = (unsigned)i64(r, 6),
        .source = strcmp(PQgetvalue(r, 0, 7), "config") == 0 ? STORE_EXT_CONFIG
                                                             : STORE_EXT_API,
    };
    x->count++;
    return x->cb ? ((store_ext_cb *)x->cb)(&e, x->arg) : 0;
}

static int
row_binding(PGresult *r, void *ctx)
{
    struct rows *x = ctx;
    struct store_binding b = {
        .ext = PQgetvalue(r, 0, 0),
        .key = PQgetvalue(r, 0, 1),
        .uri = PQgetvalue(r, 0, 2),
        .params = PQgetvalue(r, 0, 3),
        .instance = PQgetvalue(r, 0, 4),
        .reg_id = (uint32_t)i64(r, 5),
        .call_id = PQgetvalue(r, 0, 6),
        .cseq = (uint32_t)i64(r, 7),
        .expires_at = i64(r, 8),
        .updated_at = i64(r, 9),
        .path = PQgetvalue(r, 0, 10),
        .source = PQgetvalue(r, 0, 11),
        .transport = (int)i64(r, 12),
        .flow_id = (uint64_t)i64(r, 13),
        .user_agent = PQgetvalue(r, 0, 14),
        .node = PQgetvalue(r, 0, 15),
    };
    if (b.expires_at <= x->limit) {
        /* Removed through the writer: the only connection that writes. */
        store_binding_del(x->st, b.ext, b.key);
        return 0;
    }
    return x->cb ? ((store_binding_cb *)x->cb)(&b, x->arg) : 0;
}

static int
row_pushdev(PGresult *r, void *ctx)
{
    struct rows *x = ctx;
    struct store_pushdev d = {
        .ext = PQgetvalue(r, 0, 0),
        .provider = PQgetvalue(r, 0, 1),
        .prid = PQgetvalue(r, 0, 2),
        .param = PQgetvalue(r, 0, 3),
        .instance = PQgetvalue(r, 0, 4),
        .created_at = i64(r, 5),
        .last_seen = i64(r, 6),
    };
    if (d.last_seen < x->limit) {
        store_pushdev_del(x->st, d.provider, d.prid);
        return 0;
    }
    return x->cb ? ((store_pushdev_cb *)x->cb)(&d, x->arg) : 0;
}

static int
row_prov(PGresult *r, void *ctx)
{
    struct rows *x = ctx;
    struct store_prov p = {
        .ext = PQgetvalue(r, 0, 0),
        .token = PQgetvalue(r, 0, 1),
        .password = PQgetvalue(r, 0, 2),
        .created_at = i64(r, 3),
        .expires_at = i64(r, 4),
        .fetches = (unsigned)i64(r, 5),
        .max_fetches = (unsigned)i64(r, 6),
    };
    return ((store_prov_cb *)x->cb)(&p, x->arg);
}

static int
row_node(PGresult *r, void *ctx)
{
    struct rows *x = ctx;
    struct store_node n = {
        .name = PQgetvalue(r, 0, 0),
        .advertise = PQgetvalue(r, 0, 1),
        .started_at = i64(r, 2),
        .last_seen = i64(r, 3),
        .calls = i64(r, 4),
    };
    return ((store_node_cb *)x->cb)(&n, x->arg);
}

struct msg_rows {
    struct store *st;
    store_msg_cb *cb;
    void *arg;
    int64_t now_s;
    bool bodies;
};

static int
row_msg(PGresult *r, void *ctx)
{
    struct msg_rows *x = ctx;
    unsigned char *body = NULL;
    size_t n = 0;

    if (x->bodies)
        body = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 7), &n);
    struct store_msg m = {
        .id = (uint64_t)i64(r, 0),
        .ext = PQgetvalue(r, 0, 1),
        .sender_uri = PQgetvalue(r, 0, 2),
        .sender_name = PQgetvalue(r, 0, 3),
        .call_id = PQgetvalue(r, 0, 4),
        .cseq = (uint32_t)i64(r, 5),
        .content_type = PQgetvalue(r, 0, 6),
        .body = body,
        .body_len = (size_t)i64(r, 8),
        .received_at = i64(r, 9),
        .expires_at = i64(r, 10),
        .received_us = i64(r, 11),
    };
    int rc = 0;
    if (m.expires_at <= x->now_s)
        store_msg_del(x->st, m.id);
    else
        rc = x->cb(&m, x->arg);
    PQfreemem(body);
    return rc;
}

static int
row_count(PGresult *r, void *ctx)
{
    struct rows *x = ctx;
    x->count = (size_t)i64(r, 0);
    return 0;
}

static int
row_msg_count(PGresult *r, void *ctx)
{
    struct rows *x = ctx;
    struct store_msg_count c = {
        .ext = PQgetvalue(r, 0, 0),
        .count = (uint64_t)i64(r, 1),
        .oldest_received_at = i64(r, 2),
        .bytes = (uint64_t)i64(r, 3),
    };
    return ((store_msg_count_cb *)x->cb)(&c, x->arg);
}

/* A locked read of sql with up to two parameters. */
static int
read_rows(struct store *st, const char *what, const char *sql, int n,
          const char *p1, const char *p2, row_fn *fn, void *ctx)
{
    struct pg *pg = st->be;
    const char *v[2] = {p1, p2};

    pthread_mutex_lock(&pg->rlock);
    int rc = r_query(pg, what, sql, n, v, fn, ctx);
    pthread_mutex_unlock(&pg->rlock);
    return rc;
}

static int
pg_count(struct store *st, const char *table, size_t *out)
{
    static const char *const known[] = {"extensions", "bindings",
                                        "push_devices", "prov_links"};
    char sql[64];
    bool ok = false;

    *out = 0;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        ok = ok || strcmp(table, known[i]) == 0;
    if (!ok)
        return -EINVAL;
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    struct rows x = {.st = st};
    int rc = read_rows(st, "count", sql, 0, NULL, NULL, row_count, &x);
    *out = x.count;
    return rc;
}

#define EXT_COLS                                                               \
    "number, display, realm, ha1_md5, ha1_sha256, enabled, max_push_devices,"  \
    " source"
#define BIND_COLS                                                              \
    "ext, bkey, uri, params, instance, reg_id, call_id, cseq, expires_at,"     \
    " updated_at, path, source, transport, flow_id, user_agent, node"
#define PD_COLS "ext, provider, prid, param, instance, created_at, last_seen"
#define PROV_COLS                                                              \
    "ext, token, password, created_at, expires_at, fetches, max_fetches"

static int
pg_ext_load(struct store *st, store_ext_cb *cb, void *arg)
{
    struct rows x = {.st = st, .cb = (void (*)(void))cb, .arg = arg};
    return read_rows(st, "load extensions",
                     "SELECT " EXT_COLS " FROM extensions", 0, NULL, NULL,
                     row_ext, &x);
}

static int
pg_binding_load(struct store *st, int64_t now_s, store_binding_cb *cb,
                void *arg)
{
    struct rows x = {
        .st = st, .cb = (void (*)(void))cb, .arg = arg, .limit = now_s};
    return read_rows(st, "load bindings", "SELECT " BIND_COLS " FROM bindings",
                     0, NULL, NULL, row_binding, &x);
}

static int
pg_pushdev_load(struct store *st, int64_t idle_before_s, store_pushdev_cb *cb,
                void *arg)
{
    struct rows x = {
        .st = st, .cb = (void (*)(void))cb, .arg = arg, .limit = idle_before_s};
    return read_rows(st, "load push devices",
                     "SELECT " PD_COLS " FROM push_devices", 0, NULL, NULL,
                     row_pushdev, &x);
}

static int
pg_prov_load(struct store *st, const char *ext, store_prov_cb *cb, void *arg)
{
    struct rows x = {.st = st, .cb = (void (*)(void))cb, .arg = arg};
    if (ext)
        return read_rows(st, "read provisioning link",
                         "SELECT " PROV_COLS " FROM prov_links WHERE ext=$1",
                         1, ext, NULL, row_prov, &x);
    return read_rows(st, "load provisioning links",
                     "SELECT " PROV_COLS " FROM prov_links ORDER BY ext", 0,
                     NULL, NULL, row_prov, &x);
}

static int
pg_msg_load(struct store *st, const char *ext, int64_t now_s, bool bodies,
            store_msg_cb *cb, void *arg)
{
    char sql[512];
    struct msg_rows x = {
        .st = st, .cb = cb, .arg = arg, .now_s = now_s, .bodies = bodies};

    /* octet_length(body) reads the length word only (TOAST keeps it). */
    snprintf(sql, sizeof(sql),
             "SELECT id, ext, sender_uri, sender_name, call_id, cseq,"
             " content_type, %s, octet_length(body), received_at,"
             " expires_at, received_us FROM messages%s"
             " ORDER BY ext, received_us, id",
             bodies ? "body" : "NULL", ext ? " WHERE ext=$1" : "");
    return read_rows(st, "load messages", sql, ext ? 1 : 0, ext, NULL, row_msg,
                     &x);
}

static int
pg_msg_counts(struct store *st, int64_t now_s, store_msg_count_cb *cb,
              void *arg)
{
    char now[24];
    struct rows x = {.st = st, .cb = (void (*)(void))cb, .arg = arg};

    snprintf(now, sizeof(now), "%lld", (long long)now_s);
    return read_rows(st, "count messages",
                     "SELECT ext, count(*), min(received_at),"
                     " coalesce(sum(octet_length(body)), 0) FROM messages"
                     " WHERE expires_at > $1 GROUP BY ext ORDER BY ext",
                     1, now, NULL, row_msg_count, &x);
}

static int
pg_msg_last_id(struct store *st, uint64_t *out)
{
    struct rows x = {.st = st};
    int rc = read_rows(st, "last message id",
                       "SELECT greatest((SELECT max(last_id) FROM"
                       " message_seq), coalesce((SELECT max(id) FROM"
                       " messages), 0))",
                       0, NULL, NULL, row_count, &x);
    *out = x.count;
    return rc;
}

static int
pg_msg_id_block(struct store *st, uint64_t *first)
{
    struct rows x = {.st = st};
    int rc = read_rows(st, "message id block",
                       "SELECT nextval('message_ids')", 0, NULL, NULL,
                       row_count, &x);
    *first = rc == 0 ? x.count : 0;
    return rc == 0 && x.count == 0 ? -EIO : rc;
}

static int
pg_schema_version(struct store *st, int *out)
{
    struct rows x = {.st = st};
    int rc = read_rows(st, "schema version",
                       "SELECT coalesce(max(version), 0) FROM schema_version",
                       0, NULL, NULL, row_count, &x);
    *out = (int)x.count;
    return rc;
}

static int
pg_node_load(struct store *st, store_node_cb *cb, void *arg)
{
    struct rows x = {.st = st, .cb = (void (*)(void))cb, .arg = arg};
    return read_rows(st, "load nodes",
                     "SELECT name, advertise, started_at, last_seen, calls"
                     " FROM nodes",
                     0, NULL, NULL, row_node, &x);
}

/* A call_records row read with STORE_CALL_COLS. */
static int
row_call(PGresult *r, void *ctx)
{
    struct rows *x = ctx;
    static const int text_col[6] = {1, 2, 3, 4, 5, 7};
    static const int int_col[14] = {6,  8,  9,  10, 11, 12, 13,
                                    14, 15, 16, 17, 18, 19, 20};
    const char *strs[6];
    int64_t ints[14];
    struct store_call c;

    for (int k = 0; k < 6; k++)
        strs[k] = PQgetvalue(r, 0, text_col[k]);
    for (int k = 0; k < 14; k++)
        ints[k] = i64(r, int_col[k]);
    store_call_from_row(&c, (uint64_t)i64(r, 0), strs, ints);
    return ((store_call_cb *)x->cb)(&c, x->arg);
}

static int
pg_call_load(struct store *st, size_t limit, store_call_cb *cb, void *arg)
{
    struct rows x = {.st = st, .cb = (void (*)(void))cb, .arg = arg};
    char lim[24];

    snprintf(lim, sizeof(lim), "%llu",
             (unsigned long long)(limit > (uint64_t)INT64_MAX ? INT64_MAX : limit));
    return read_rows(st, "load call records",
                     "SELECT " STORE_CALL_COLS " FROM call_records"
                     " ORDER BY ended_ms DESC, id DESC LIMIT $1::bigint",
                     1, lim, NULL, row_call, &x);
}

/* The three reads in one repeatable-read transaction: one snapshot. */
static int
pg_ext_read(struct store *st, const char *ext, int64_t now_s, store_ext_cb *ecb,
            store_binding_cb *bcb, store_pushdev_cb *pcb, void *arg)
{
    struct pg *pg = st->be;
    char now[24];
    const char *v[2] = {ext, now};
    struct rows x = {.st = st, .cb = (void (*)(void))ecb, .arg = arg};

    snprintf(now, sizeof(now), "%lld", (long long)now_s);
    pthread_mutex_lock(&pg->rlock);
    int rc = r_query(pg, "read extension",
                     "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL,
                     row_count, &x);
    if (rc == 0)
        rc = r_query(pg, "read extension",
                     "SELECT " EXT_COLS " FROM extensions WHERE number=$1", 1,
                     v, row_ext, &x);
    if (rc == 0 && x.count == 0)
        rc = -ENOENT;
    if (rc == 0 && bcb) {
        /* Expired rows are skipped, not deleted: the writer of another
         * node may still own them. */
        struct rows b = {.st = st, .cb = (void (*)(void))bcb, .arg = arg};
        b.limit = INT64_MIN;
        rc = r_query(pg, "read extension",
                     "SELECT " BIND_COLS " FROM bindings WHERE ext=$1"
                     " AND expires_at > $2",
                     2, v, row_binding, &b);
    }
    if (rc == 0 && pcb) {
        struct rows d = {.st = st, .cb = (void (*)(void))pcb, .arg = arg};
        d.limit = INT64_MIN;
        rc = r_query(pg, "read extension",
                     "SELECT " PD_COLS " FROM push_devices WHERE ext=$1", 1, v,
                     row_pushdev, &d);
    }
    if (pg->r && PQstatus(pg->r) == CONNECTION_OK)
        r_exec(pg, "COMMIT");
    pthread_mutex_unlock(&pg->rlock);
    return rc;
}

/* ---- listener ---------------------------------------------------------- */

/* Sleep ms, or less when close asks the listener to stop: true = stop. */
static bool
wait_stop(struct pg *pg, int ms)
{
    struct pollfd p = {.fd = pg->stop_pipe[0], .events = POLLIN};
    return poll(&p, 1, ms) > 0;
}

static void
deliver(struct store *st, struct pg *pg, const char *payload)
{
    const char *sp = strchr(payload, ' ');
    char origin[256];

    if (!sp) /* not ours */
        return;
    size_t n = (size_t)(sp - payload);
    if (n >= sizeof(origin))
        n = sizeof(origin) - 1;
    memcpy(origin, payload, n);
    origin[n] = '\0';
    if (strcmp(origin, st->node) == 0)
        return; /* our own write */
    pg->cb(sp + 1, origin, pg->cb_arg);
}

static void *
watch_main(void *arg)
{
    struct store *st = arg;
    struct pg *pg = st->be;
    int backoff_ms = 100;

    (void)pthread_setname_np(pthread_self(), "pbx-listen");
    bool logged = false;
    char err[512];

    for (;;) {
        PGconn *c = connect_db(pg->conninfo, err, sizeof(err));
        if (c && exec_ok(c, "LISTEN pushpbx", err, sizeof(err)) < 0) {
            PQfinish(c);
            c = NULL;
        }
        if (!c) {
            if (!logged)
                log_error("store", "listener: %s (retrying)", unprefixed(err));
            logged = true;
            if (wait_stop(pg, backoff_ms))
                return NULL;
            backoff_ms = backoff_ms * 2 > 2000 ? 2000 : backoff_ms * 2;
            continue;
        }
        if (logged)
            log_notice("store", "postgresql: listener connected again");
        logged = false;
        backoff_ms = 100;
        /* Anything may have changed while we were not listening. */
        pg->cb(NULL, NULL, pg->cb_arg);
        bool stop = false;
        for (;;) {
            struct pollfd p[2] = {
                {.fd = PQsocket(c), .events = POLLIN},
                {.fd = pg->stop_pipe[0], .events = POLLIN},
            };
            if (poll(p, 2, -1) < 0 && errno != EINTR)
                break;
            if (p[1].revents) {
                stop = true;
                break;
            }
            if (PQconsumeInput(c) != 1)
                break;
            PGnotify *n;
            while ((n = PQnotifies(c)) != NULL) {
                deliver(st, pg, n->extra);
                PQfreemem(n);
            }
            if (PQstatus(c) != CONNECTION_OK)
                break;
        }
        if (!stop)
            log_warn("store", "postgresql: listener lost its connection: %s",
                     trimmed(PQerrorMessage(c), err, sizeof(err)));
        PQfinish(c);
        if (stop || wait_stop(pg, backoff_ms))
            return NULL;
    }
}

static int
pg_watch(struct store *st, store_change_cb *cb, void *arg)
{
    struct pg *pg = st->be;

    if (pg->watching)
        return -EBUSY;
    pg->cb = cb;
    pg->cb_arg = arg;
    int rc = -pthread_create(&pg->watch_thread, NULL, watch_main, st);
    if (rc == 0)
        pg->watching = true;
    return rc;
}

/* ---- open / close ------------------------------------------------------ */

static int
pg_open(struct store *st, const struct store_cfg *cfg, char *err, size_t errlen)
{
    const char *ci = cfg->postgresql ? cfg->postgresql : "";
    char *perr = NULL;

    if (!ci[0]) {
        store_errf(err, errlen, "postgresql", "connection string",
                   "[store] postgresql is required with backend postgresql"
                   " (e.g. \"host=/run/postgresql dbname=pushpbx\")");
        return -EINVAL;
    }
    PQconninfoOption *opts = PQconninfoParse(ci, &perr);
    if (!opts) {
        errf_pq(err, errlen, "connection string",
                perr ? perr : "out of memory");
        PQfreemem(perr);
        return -EINVAL;
    }
    PQconninfoFree(opts);

    struct pg *pg = xcalloc(1, sizeof(*pg));
    pg->conninfo = xstrdup(ci);
    pg->stop_pipe[0] = pg->stop_pipe[1] = -1;
    pthread_mutex_init(&pg->rlock, NULL);
    int rc = 0;
    if (pipe2(pg->stop_pipe, O_CLOEXEC) < 0) {
        rc = -errno;
        store_errf(err, errlen, "postgresql", "pipe", strerror(errno));
        goto fail;
    }
    pg->r = connect_db(ci, err, errlen);
    if (!pg->r) {
        rc = -ECONNREFUSED;
        goto fail;
    }
    rc = migrate(pg->r, err, errlen);
    if (rc == 0)
        rc = w_connect(st, pg, err, errlen);
    if (rc < 0)
        goto fail;
    st->be = pg;
    return 0;
fail:
    PQfinish(pg->r);
    for (int k = 0; k < 2; k++)
        if (pg->stop_pipe[k] >= 0)
            close(pg->stop_pipe[k]);
    pthread_mutex_destroy(&pg->rlock);
    free(pg->conninfo);
    free(pg);
    return rc;
}

static void
pg_close(struct store *st)
{
    struct pg *pg = st->be;

    if (pg->watching) {
        ssize_t n = write(pg->stop_pipe[1], "x", 1);
        (void)n;
        pthread_join(pg->watch_thread, NULL);
    }
    if (pg->w)
        w_drop(pg);
    PQfinish(pg->r);
    close(pg->stop_pipe[0]);
    close(pg->stop_pipe[1]);
    pthread_mutex_destroy(&pg->rlock);
    free(pg->conninfo);
    free(pg);
    st->be = NULL;
}

const struct store_be_ops store_pg_ops = {
    .name = "postgresql",
    .open = pg_open,
    .close = pg_close,
    .run_batch = pg_run_batch,
    .count = pg_count,
    .ext_load = pg_ext_load,
    .binding_load = pg_binding_load,
    .pushdev_load = pg_pushdev_load,
    .prov_load = pg_prov_load,
    .msg_load = pg_msg_load,
    .msg_counts = pg_msg_counts,
    .msg_last_id = pg_msg_last_id,
    .msg_id_block = pg_msg_id_block,
    .schema_version = pg_schema_version,
    .node_load = pg_node_load,
    .call_load = pg_call_load,
    .watch = pg_watch,
    .ext_read = pg_ext_read,
};
