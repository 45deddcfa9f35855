/*
 * store: durable state (extensions, SIP bindings, push devices,
 * provisioning links, stored chat messages, call records, cluster
 * nodes), written by a
 * thread of its own so SIP processing never waits for the disk. Two
 * backends behind one API ([store] backend): SQLite (the embedded
 * default, one node) and PostgreSQL (libpq; several nodes share it,
 * docs/store.md). The store owns every database connection of the
 * daemon: no other room opens one (scripts/check-source refuses
 * <sqlite3.h> and <libpq-fe.h> outside src/store), so no other thread
 * ever waits on a database lock.
 *
 * Everything below holds on both backends unless it says otherwise. On
 * PostgreSQL the writer sends a batch in libpq's pipeline mode as one
 * transaction (committed at the pipeline's sync), and a commit is durable
 * as PostgreSQL's own settings make it (synchronous_commit).
 *
 * Writes are queued (a copy of the row goes into a mutex-protected list)
 * and the writer thread commits everything queued in ONE transaction at
 * most flush_ms after the first queued write (default 200 ms, at most
 * 1000). The database runs in WAL mode with synchronous=NORMAL: a commit
 * survives a crash of the process, and a power cut may lose the last
 * commits. So the loss window on a daemon crash is flush_ms plus one commit
 * (documented in docs/registrar.md: "at most 1 s of refreshes").
 *
 * Statements are prepared once on the writer's connection and every sqlite3
 * return code is checked; a failed batch is rolled back, logged and counted
 * (the in-memory state stays authoritative; the next write of the same row
 * repairs it).
 *
 * Writes that must be on disk before they are acknowledged (admin API
 * changes, provisioning links, a push REGISTER's device before its 200 OK)
 * take a mark, queue as usual and call store_commit(): the writer commits
 * at once, grouping them with whatever else is queued, and the caller
 * waits (bounded) for that transaction's result (store_commit_async: a
 * callback instead, for a SIP worker). Only the store's connections wait on
 * SQLite's locks (busy timeout 5 s against another process such as an
 * operator's sqlite3 shell); a caller waits at most its own timeout.
 *
 * Connections, SQLite: the writer's; the checkpoint thread's (store_ckpt.c,
 * woken by the writer's WAL hook); a short-lived read-only one per blocking
 * read (the loads at start-up, the admin's reads) on the caller's thread;
 * store_backup's. WAL lets them run next to the writer. PostgreSQL: the
 * writer's, a reader's, and store_watch's listener (docs/store.md).
 *
 * Thread: every function is thread-safe except store_open/store_close,
 * which belong to the owner (the daemon's main thread).
 */
#ifndef PUSHPBX_STORE_STORE_H
#define PUSHPBX_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;

/* [store] section of the configuration (option table in store_cfg.c). */
enum store_backend { STORE_BACKEND_SQLITE, STORE_BACKEND_POSTGRESQL };

struct store_cfg {
    char *path;         /* SQLite file; ":memory:" is refused */
    unsigned flush_ms;  /* batch window, 10..1000 */
    unsigned max_queue; /* queued writes before new ones are dropped */
    unsigned writer_nice; /* nice of the writer and checkpoint threads */
    char *backend;      /* "sqlite" (NULL or "" too) | "postgresql" */
    char *postgresql;   /* libpq connection string (backend postgresql) */
    char *node; /* NOT an option: the app sets it from [cluster] node; the
                   origin of this store's change notifications and the
                   filter of store_watch ("" or NULL = single node) */
};

/* The backend cfg names: 0 and *out, or -EINVAL for an unknown name. */
int store_backend_parse(const char *name, enum store_backend *out);

/* Where an extension comes from. A configuration-file extension is kept
 * in the database too (its bindings are restored with it) but the file is
 * its source: the daemon rewrites the row from the file at every start
 * and removes it when the file no longer defines it. */
enum store_ext_source {
    STORE_EXT_API = 0,    /* created through the admin API: the row is it */
    STORE_EXT_CONFIG = 1, /* an [extension.N] section of the config file */
};

/* An extension row. Strings are borrowed for the call. */
struct store_ext {
    const char *number;
    const char *display;    /* may be "" */
    const char *realm;      /* the realm the HA1 values are bound to */
    const char *ha1_md5;    /* 32 lower-case hex */
    const char *ha1_sha256; /* 64 lower-case hex */
    bool enabled;
    unsigned max_push_devices;
    /* store_ext_load: the row's source. store_ext_put: the source of a
     * NEW row; an existing row keeps its own (store_ext_set_source). */
    enum store_ext_source source;
};

/* A binding row (one registered contact). Strings borrowed for the call;
 * NULL is stored as "". */
struct store_binding {
    const char *ext;      /* extension number (the AOR's user part) */
    const char *key;      /* binding key within the extension */
    const char *uri;      /* Contact URI as given */
    const char *params;   /* contact params as given (";a=b"), no expires */
    const char *instance; /* +sip.instance, "" when none */
    uint32_t reg_id;
    const char *call_id;
    uint32_t cseq;
    int64_t expires_at; /* unix seconds */
    int64_t updated_at; /* unix seconds */
    const char *path;   /* Path header values, comma-joined, "" if none */
    const char *source; /* "ip:port" the REGISTER came from */
    int transport;      /* enum reg_transport value */
    uint64_t flow_id;   /* transport connection id (not valid after a
                           restart: connections do not survive it) */
    const char *user_agent;
    const char *node; /* the cluster node holding the phone's flow (its
                         [cluster] node name); "" or NULL = none */
};

/* A push device row (registrar/pushdev.h; table push_devices, one row per
 * provider+token). Strings borrowed for the call. */
struct store_pushdev {
    const char *ext;
    const char *provider; /* "apns" | "fcm" */
    const char *prid;     /* device token */
    const char *param;    /* pn-param */
    const char *instance; /* +sip.instance, "" when none */
    int64_t created_at;   /* unix seconds */
    int64_t last_seen;    /* unix seconds */
};

/* A provisioning link row (admin/admin_int.h; table prov_links, one row
 * per extension, token unique). password is the one the link hands out
 * ("" for an extension of the configuration file). Strings borrowed. */
struct store_prov {
    const char *ext;
    const char *token;
    const char *password;
    int64_t created_at; /* unix seconds */
    int64_t expires_at; /* unix seconds */
    unsigned fetches;
    unsigned max_fetches;
};

/* A stored chat message (SIP MESSAGE, RFC 3428, to an extension whose
 * app sleeps; table messages, docs/messages.md). Strings and body are
 * borrowed for the call; NULL strings are stored as "". */
struct store_msg {
    uint64_t id;              /* > 0, unique, never reused (the caller
                                 assigns it: store_msg_last_id) */
    const char *ext;          /* extension number it is for */
    const char *sender_uri;   /* From URI, as received */
    const char *sender_name;  /* From display name, "" when none */
    const char *call_id;      /* of the received MESSAGE */
    uint32_t cseq;            /* of the received MESSAGE */
    const char *content_type; /* as received, e.g. "text/plain" */
    const void *body;         /* may be NULL when body_len is 0 (and is
                                 NULL in loads without bodies) */
    size_t body_len;          /* bytes (also filled without bodies) */
    int64_t received_at;      /* unix seconds */
    int64_t expires_at;       /* unix seconds; gone at or after it */
    /* The arrival order across nodes (docs/messages.md "Order"): unix
     * microseconds when the message was received, as the storing node
     * set it (reg_msg_put: never below what that node stored or saw
     * before, so on one node it increases with the id). One extension's
     * messages are ordered by (received_us, id). Rows of a pushpbx before
     * schema version 7 have received_at * 1000000. */
    int64_t received_us;
};

/* Per extension, for the admin page (store_msg_counts). */
struct store_msg_count {
    const char *ext;
    uint64_t count;
    int64_t oldest_received_at; /* unix seconds */
    uint64_t bytes;             /* sum of body_len */
};

struct store_stats {
    uint64_t queued;    /* writes accepted */
    uint64_t dropped;   /* writes refused because the queue was full */
    uint64_t committed; /* writes committed */
    uint64_t batches;   /* transactions committed */
    uint64_t errors;    /* failed batches (rolled back) */
    size_t queue_len;   /* writes waiting now */
    uint64_t msg_capped;  /* messages deleted by store_msg_put's cap */
    uint64_t msg_purged;  /* expired messages deleted by store_msg_purge */
    uint64_t checkpoints; /* WAL checkpoints run, off the writer's thread */
    uint64_t calls_capped; /* call records deleted by store_call_put's cap */
    /* Write batches committed right after one or more failed ones (an
     * outage ended): the writes of the failed batches were rolled back
     * and are lost, so a caller that wrote behind (the registrar's
     * bindings) writes its state again when this moves. */
    uint64_t recoveries;
};

/* Open the database (SQLite: create cfg->path, WAL; PostgreSQL: connect
 * with cfg->postgresql), create or migrate the schema (table
 * schema_version, the same migrations on both backends) and start the
 * writer thread. Returns 0 and *out (owned; store_close), or a negative
 * errno with a reason in err ("store: PATH: reason"; PostgreSQL:
 * "store: postgresql: <libpq's message>"): -EINVAL for a bad backend name
 * or a missing connection string, -EIO (-ECONNREFUSED) when the server
 * cannot be reached. */
int store_open(const struct store_cfg *cfg, struct store **out, char *err,
               size_t errlen);
/* Commit everything queued, stop the writer and close. NULL is a no-op. */
void store_close(struct store *st);

/* Queue writes. They return at once (no disk I/O on the caller's thread);
 * 0, or -ENOSPC when max_queue writes are already waiting (counted). */
int store_ext_put(struct store *st, const struct store_ext *e);
int store_ext_del(struct store *st, const char *number);
int store_binding_put(struct store *st, const struct store_binding *b);
int store_binding_del(struct store *st, const char *ext, const char *key);
/* Delete every binding of ext. */
int store_binding_del_ext(struct store *st, const char *ext);
/* Delete binding (ext, key) only while its row names node: the repair of
 * a delete lost in an outage (reg_drop_unheld) leaves a row another node
 * took over (the phone registered there since) alone. Queued as the
 * others; no-op when there is no such row. */
int store_binding_del_node(struct store *st, const char *ext, const char *key,
                           const char *node);
/* Set the source of extension number's row (no-op if there is none). */
int store_ext_set_source(struct store *st, const char *number,
                         enum store_ext_source source);

/* Push devices: insert or replace the row of d->provider+d->prid; delete
 * the row of provider+prid; delete every row of ext. Queued like the
 * others; pushdev_put follows its put with store_commit. */
int store_pushdev_put(struct store *st, const struct store_pushdev *d);
int store_pushdev_del(struct store *st, const char *provider,
                      const char *prid);
int store_pushdev_del_ext(struct store *st, const char *ext);

/* Provisioning links: insert or replace ext's row (the row holding the
 * same token, if another, is replaced too); delete ext's row. The copy of
 * the password in the queue is wiped when the write is done. */
int store_prov_put(struct store *st, const struct store_prov *p);
int store_prov_del(struct store *st, const char *ext);

/* What store_prov_count_fetch found: counted, and ext's row as it is
 * after the count (read in the same transaction, after it). */
struct store_prov_count {
    bool counted; /* this fetch was counted: fetches includes it */
    bool found;   /* ext's row still holds the token (else revoked, renewed
                     or never made) */
    unsigned fetches, max_fetches; /* the row's, when found */
    int64_t expires_at;            /* the row's, when found */
};
/* Count one document served by ext's link token, in the database and
 * only there: fetches = fetches + 1 on the row of ext that still holds
 * token, while fetches < max_fetches and now_s < expires_at (one UPDATE,
 * so two nodes counting at once never serve more than max_fetches, and a
 * row another node deleted stays deleted: nothing is written back). Runs
 * on the writer at once (no batch window, like store_commit) and returns
 * when its transaction committed: 0 and *out. Else not counted as far as
 * the caller may know: -EINVAL (a NULL argument), -ENOSPC (queue full),
 * -ESHUTDOWN, -EIO (the transaction failed; on PostgreSQL a commit whose
 * answer was lost is sent again, which may count this fetch twice: never
 * more than max_fetches), -ETIMEDOUT (not committed within timeout_ms; it
 * may still be: a fetch lost, never one too many). Blocks: the admin
 * thread, never a SIP worker. */
int store_prov_count_fetch(struct store *st, const char *ext,
                           const char *token, int64_t now_s,
                           unsigned timeout_ms, struct store_prov_count *out);

/* ---- stored messages (table messages) ------------------------------
 * The message index (registrar/msgstore.h) is the only caller; it keeps
 * the ids and order in memory and the bodies here. */

/* Queue the insert of m (body copied). max_per_ext > 0: in the same
 * transaction, the oldest messages of m->ext beyond the newest
 * max_per_ext are deleted (oldest by arrival: (received_us, id) order;
 * counted in msg_capped). Durable
 * only once committed: the SIP side answers 202 after store_mark +
 * store_msg_put + store_commit_async (reg_msg_put does exactly that).
 * Returns 0, -EINVAL (id 0 or no ext) or -ENOSPC. Any thread. */
int store_msg_put(struct store *st, const struct store_msg *m,
                  unsigned max_per_ext);
/* Queue the delete of message id (delivered, or dropped). 0 or -ENOSPC. */
int store_msg_del(struct store *st, uint64_t id);
/* Queue the delete of every message of ext (extension removed). */
int store_msg_del_ext(struct store *st, const char *ext);
/* Queue the delete of every message with expires_at <= now_s (counted in
 * msg_purged once committed). 0 or -ENOSPC. */
int store_msg_purge(struct store *st, int64_t now_s);

/* Read message id on the writer's connection, after every write queued
 * before the call (so a message just put is found even before its
 * commit), without blocking the caller: cb(rc, m, arg) is called exactly
 * once, on the writer thread when its batch is done (or on the calling
 * thread before return when the queue is full or the store stops):
 *   0         m is the row (borrowed for the call, body included);
 *   -ENOENT   no such message (m NULL);
 *   -EIO      the batch failed (m NULL);
 *   -ENOSPC   queue full; -ESHUTDOWN store_close has begun (m NULL).
 * The writer does not wait out flush_ms for it. cb must be short and
 * thread-safe (queue the result to the caller's loop, e.g. tp_post).
 * Any thread. */
typedef void store_msg_get_cb(int rc, const struct store_msg *m, void *arg);
void store_msg_get_async(struct store *st, uint64_t id, store_msg_get_cb *cb,
                         void *arg);

/* ---- synchronous commit --------------------------------------------
 * For a write that must be on disk before it is acknowledged (an admin
 * API change; the registrar's push devices can move here too):
 *
 *     struct store_mark m = store_mark(st);
 *     store_ext_put(st, &row);     (or any call that queues, such as
 *                                   the registrar's reg_ext_set)
 *     rc = store_commit(st, m, 2000);
 *
 * The request goes through the queue like a write, so it is ordered after
 * the caller's writes. The writer does not wait out flush_ms: it commits
 * everything queued so far (other threads' writes included) in one
 * transaction at once, then wakes the caller. Cost: one transaction, no
 * fsync (WAL, synchronous=NORMAL), about a millisecond; the caller holds
 * no store lock while it waits. */

/* The queue position now (a value: copy it freely). Any thread. */
struct store_mark {
    uint64_t seq;     /* writes queued so far */
    uint64_t dropped; /* writes refused so far */
};
struct store_mark store_mark(struct store *st);

/* Commit now every write queued so far and wait at most timeout_ms for the
 * result. Returns
 *   0            every write queued after mark (by any thread) is
 *                committed: it survives a crash of the process;
 *   -ENOSPC      a write was refused (queue full) since mark: maybe one
 *                of the caller's, which is then lost;
 *   -EIO         a transaction holding one of them failed and was rolled
 *                back (logged by the writer);
 *   -ETIMEDOUT   the commit did not finish in time; it may still happen,
 *                so the caller must report the outcome as unknown;
 *   -ESHUTDOWN   store_close has begun.
 * Writes of other threads after mark count too, so an error may be
 * someone else's (a false alarm, never a false success). Blocks: call it
 * on the admin thread or another thread that may wait for the disk, never
 * on the store's writer. Any such thread. */
int store_commit(struct store *st, struct store_mark mark,
                 unsigned timeout_ms);

/* store_commit without waiting, for a thread that must not block (a SIP
 * worker answering only once its write is on disk): cb(rc, arg) is called
 * exactly once with the result store_commit would return (0, -ENOSPC,
 * -EIO or -ESHUTDOWN; never -ETIMEDOUT). It runs on the store's writer
 * thread once the batch is finished, or on the calling thread before
 * store_commit_async returns when nothing is waiting; so cb must be short,
 * thread-safe and must not call store functions that wait (queue the
 * result to the caller's loop, e.g. with tp_post or uv_async_send). Never
 * refused for a full queue. Any thread. */
typedef void store_commit_cb(int rc, void *arg);
void store_commit_async(struct store *st, struct store_mark mark,
                        store_commit_cb *cb, void *arg);

/* Block until every write queued before the call is committed (or its
 * batch failed). Returns 0, or -EIO if a batch failed since the last
 * store_sync. For tests and shutdown; never on a SIP worker. */
int store_sync(struct store *st);

/* Read every extension / every binding that has not expired at now_s
 * (expired rows are deleted). The callback gets borrowed rows; a non-zero
 * return stops the walk and is returned. Otherwise 0 or -EIO. Runs on the
 * caller's thread with its own connection (start-up). Rows come in no
 * particular order (a sequential scan: sorting a million rows was most of
 * the restore time); the caller orders them (an extension's bindings by
 * updated_at, push devices by last_seen). */
/* How many rows table ("extensions", "bindings", "push_devices",
 * "prov_links") holds, into *out: a load sizes its hash tables once
 * instead of doubling them through a million rows. 0, -EINVAL (another
 * table), -EIO. Start-up, like the loads. */
int store_count(struct store *st, const char *table, size_t *out);

typedef int store_ext_cb(const struct store_ext *e, void *arg);
typedef int store_binding_cb(const struct store_binding *b, void *arg);
int store_ext_load(struct store *st, store_ext_cb *cb, void *arg);
int store_binding_load(struct store *st, int64_t now_s, store_binding_cb *cb,
                       void *arg);

/* Read every push device; rows with last_seen < idle_before_s are deleted
 * (through the writer) instead of passed. Same rules as store_ext_load
 * (no particular order). */
typedef int store_pushdev_cb(const struct store_pushdev *d, void *arg);
int store_pushdev_load(struct store *st, int64_t idle_before_s,
                       store_pushdev_cb *cb, void *arg);

/* Read every provisioning link. Same rules as store_ext_load. */
typedef int store_prov_cb(const struct store_prov *p, void *arg);
int store_prov_load(struct store *st, store_prov_cb *cb, void *arg);
/* Read ext's provisioning link (one row at most: cb is called once).
 * 0, -ENOENT (no link), cb's non-zero return, -EINVAL (ext NULL) or
 * -EIO. Committed rows only, on a connection of the store's: blocks (the
 * change handler of a cluster, the admin thread), never a SIP worker. */
int store_prov_read(struct store *st, const char *ext, store_prov_cb *cb,
                    void *arg);

/* One-time migration of the provisioning links that older versions kept
 * in a SQLite file of their own (table admin_prov of [admin] prov_db).
 * If path exists and holds that table: its rows are copied into
 * prov_links (a link the store has for the same extension or token
 * wins), committed, and the file is renamed to PATH.imported so the next
 * start does not import again (and a downgrade can rename it back). A
 * missing file, or one without the table, is not an error (0). Returns
 * the number of links imported, or a negative errno with a reason in err
 * ("store: PATH: reason"); the file is left alone then. path may not be
 * the store's own file (-EINVAL). Start-up (blocks for the commit). */
int store_prov_import(struct store *st, const char *path, char *err,
                      size_t errlen);

/* Read the messages not expired at now_s (expired ones are deleted
 * through the writer instead of passed), ordered by extension, then by
 * arrival: received_us, then id (the order they were received in, also
 * across the nodes of a cluster). ext NULL: every extension; else
 * only that one. bodies false: m->body is NULL (body_len is still set),
 * which is what the start-up index load wants. cb as store_ext_load.
 * Reads committed rows only (own connection); blocks: start-up, admin
 * thread or tests, never a SIP worker. */
typedef int store_msg_cb(const struct store_msg *m, void *arg);
int store_msg_load(struct store *st, const char *ext, int64_t now_s,
                   bool bodies, store_msg_cb *cb, void *arg);

/* Count the messages not expired at now_s per extension (ordered by
 * extension). Never reads a body. Same rules as store_msg_load. */
typedef int store_msg_count_cb(const struct store_msg_count *c, void *arg);
int store_msg_counts(struct store *st, int64_t now_s, store_msg_count_cb *cb,
                     void *arg);

/* The highest message id ever committed (0 if none), also after the rows
 * are gone (SQLite AUTOINCREMENT keeps it), so that a new id (last + 1)
 * never names an older message again. 0 or -EIO. Start-up. On the
 * postgresql backend a node numbers its messages from store_msg_id_block
 * instead (several nodes share the table). */
int store_msg_last_id(struct store *st, uint64_t *out);

/* Message ids shared by the nodes of a cluster (docs/cluster.md): reserve
 * the STORE_MSG_ID_BLOCK ids *first .. *first + STORE_MSG_ID_BLOCK - 1,
 * never given to any other caller, on any node, before or after (a
 * PostgreSQL sequence, nextval: committed at once, never rolled back, and
 * it starts above every id an older pushpbx wrote). 0, -EIO, or -ENOTSUP
 * on the sqlite backend (one node: number on from store_msg_last_id).
 * Blocking read (own connection): start-up or the main thread's tick,
 * never a SIP worker in the common case. */
#define STORE_MSG_ID_BLOCK 1000
int store_msg_id_block(struct store *st, uint64_t *first);

/* ---- call records (table call_records, docs/calls.md) ----------------
 * One row per finished call, written behind from the proxy's call_ended
 * observer (app_admin.c) and read by the admin's /api/calls: in a cluster
 * every node's calls are in the one table, each with the node that
 * handled it. */

/* One side of a relayed call's media (rtpengine's delete answer). */
struct store_call_leg {
    uint64_t packets, bytes;
    uint64_t lost, jitter;
    bool has_lost, has_jitter;
};

/* A call record row. Strings borrowed for the call; NULL is stored as "".
 * Times are unix milliseconds. */
struct store_call {
    uint64_t id;          /* store_call_load: the row's id (unique in the
                             database); ignored by store_call_put */
    const char *node;     /* the node that handled the call: put: NULL =
                             the store's own (cfg->node, "" single node) */
    const char *call_id;  /* with node and started_ms: the row's key */
    const char *caller;   /* authenticated extension */
    const char *callee;   /* extension called */
    const char *outcome;  /* proxy_outcome_name(): "answered", ... */
    int status;           /* final status sent to the caller */
    const char *answered_by; /* Contact URI that answered, "" otherwise
                                (as given: the reader redacts it) */
    unsigned branches;
    int64_t started_ms, ringing_ms, ended_ms; /* ringing_ms 0: never rang */
    bool media;         /* relayed through rtpengine */
    bool media_stats;   /* leg[] hold rtpengine's figures */
    bool media_one_way; /* media flowed from one side only */
    bool media_none;    /* no media from either side */
    struct store_call_leg leg[2]; /* [0] the caller's side, [1] callee's */
};

/* Queue the insert of c, or the replacement of the row with the same
 * node, call_id and started_ms (the media figures that come after the
 * call ended: one more put). keep > 0: in the same transaction, the
 * oldest rows of that node beyond its newest keep (by id, the order they
 * were first written in) are deleted ([proxy] call_records; counted in
 * calls_capped). One queued op, no I/O on the caller's thread: a SIP
 * worker may call it. 0, -EINVAL (no call_id) or -ENOSPC. Any thread. */
int store_call_put(struct store *st, const struct store_call *c,
                   unsigned keep);

/* Read the newest limit rows (every node's), newest first: by ended_ms,
 * then id, descending (an index on the end time: the read costs limit
 * rows, whatever the table holds). cb as store_ext_load. Committed rows
 * only (a put is seen once its batch committed, within flush_ms).
 * Blocking read on a connection of the store's: the admin thread, never
 * a SIP worker. 0, cb's non-zero return, or -EIO. */
typedef int store_call_cb(const struct store_call *c, void *arg);
int store_call_load(struct store *st, size_t limit, store_call_cb *cb,
                    void *arg);

void store_get_stats(struct store *st, struct store_stats *out);

/* The schema version of the open database (the highest row of
 * schema_version) into *out: STORE_SCHEMA_VERSION after store_open. 0 or
 * -EIO. Blocking read (own connection), like the loads. */
#define STORE_SCHEMA_VERSION 7
int store_schema_version(struct store *st, int *out);

/* ---- cluster (docs/cluster.md) ---------------------------------------
 * Several pushpbx nodes share one PostgreSQL database. The SQLite backend
 * implements these too (one node: the rows exist, the change feed is
 * silent). */

/* A row of table nodes. Strings borrowed for the call. */
struct store_node {
    const char *name;      /* [cluster] node */
    const char *advertise; /* SIP URI other nodes reach it at */
    int64_t started_at;    /* unix seconds */
    int64_t last_seen;     /* unix seconds (the heartbeat) */
    int64_t calls;         /* calls it handled at last_seen (schema 5) */
};

/* Queue the upsert of n's row (by name), like the other writes: 0 or
 * -ENOSPC (-EINVAL without a name). Any thread. No change notification. */
int store_node_beat(struct store *st, const struct store_node *n);

/* Read every node row (committed ones; no order). cb as store_ext_load.
 * Blocking read on a connection of the store's (not the writer's): not on
 * a SIP worker. 0, cb's non-zero return, or -EIO. */
typedef int store_node_cb(const struct store_node *n, void *arg);
int store_node_load(struct store *st, store_node_cb *cb, void *arg);

/* Change feed. On PostgreSQL every committed write that touches extension
 * X (its extension row, bindings, push devices, provisioning link,
 * messages) also sends NOTIFY pushpbx, 'ORIGIN X' in the same
 * transaction (a row trigger; ORIGIN is the writing store's cfg->node, ""
 * for another client such as psql), so a notification is never seen for a
 * write that was rolled back, nor lost for one that committed while the
 * listener was connected. Except a binding refresh: an update of a
 * binding row that keeps its key, uri, params, instance, reg_id and node
 * (a new expiry, cseq, source...) is silent (schema version 6).
 *
 * store_watch starts a listener (its own connection and thread) that calls
 * cb(ext, origin, arg) for each notification whose origin is not this
 * store's node, and cb(NULL, NULL, arg) once connected and after every
 * reconnect (notifications may have been missed: the caller resynchronises
 * everything). A lost connection is retried with a backoff from 100 ms up
 * to 2 s. cb runs on the listener thread: it may call the blocking reads
 * (store_ext_read, store_node_load) and queue writes. strings are borrowed
 * for the call. At most one watch per store (-EBUSY); stopped by
 * store_close (which waits for a running cb). SQLite: returns 0 and never
 * calls cb. 0, -EBUSY or -errno (thread). */
typedef void store_change_cb(const char *ext, const char *origin, void *arg);
int store_watch(struct store *st, store_change_cb *cb, void *arg);

/* One extension's current committed rows: its extension row (ecb), its
 * bindings not expired at now_s (bcb), its push devices (pcb); any
 * callback may be NULL; their non-zero return stops and is returned.
 * -ENOENT when there is no extension row (no callback is called), -EIO.
 * Blocking read on a connection of the store's (not the writer's); any
 * thread that may wait (the watch callback), never a SIP worker. */
int store_ext_read(struct store *st, const char *ext, int64_t now_s,
                   store_ext_cb *ecb, store_binding_cb *bcb,
                   store_pushdev_cb *pcb, void *arg);

#endif
