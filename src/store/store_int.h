/*
 * store/store_int: what store.c (the queue, the writer thread, the commit
 * bookkeeping: shared) and the backends (store_sqlite.c, store_pg.c: the
 * database work) share. Not for other rooms.
 *
 * The writer thread takes the whole queue at once and hands it to the
 * backend's run_batch: one indirect call per batch, none per write, so the
 * SQLite path costs what it did before the split.
 */
#ifndef PUSHPBX_STORE_STORE_INT_H
#define PUSHPBX_STORE_STORE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/list.h"
#include "store/store.h"

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
    OP_PROV_FETCH, /* store_prov_count_fetch: a write with a result */
    OP_COMMIT, /* store_commit's request: no SQL, ends the batch window */
    OP_MSG_PUT,
    OP_MSG_DEL,
    OP_MSG_DEL_EXT,
    OP_MSG_PURGE,
    OP_MSG_GET,  /* a read on the writer's connection; ends the window */
    OP_NODE_PUT, /* store_node_beat */
    OP_CALL_PUT, /* store_call_put */
    OP_BIND_DEL_NODE, /* store_binding_del_node */
};

/* A queued write (an owned copy of the row). Field use per kind:
 *   OP_EXT_PUT     s: number display realm ha1_md5 ha1_sha256
 *                  i: enabled max_push_devices source
 *   OP_EXT_SOURCE  s: number  i: source
 *   OP_EXT_DEL, OP_BIND_DEL_EXT, OP_PD_DEL_EXT, OP_PROV_DEL,
 *   OP_MSG_DEL_EXT s: ext
 *   OP_BIND_PUT    s: ext key uri params instance call_id path source ua
 *                     node ("" for a single node)
 *                  i: reg_id cseq expires_at updated_at transport flow_id
 *   OP_BIND_DEL    s: ext key
 *   OP_BIND_DEL_NODE  s: ext key node
 *   OP_PD_PUT      s: ext provider prid param instance
 *                  i: created_at last_seen
 *   OP_PD_DEL      s: provider prid
 *   OP_PROV_PUT, OP_PROV_IMPORT  s: ext token password
 *                  i: created_at expires_at fetches max_fetches
 *   OP_PROV_FETCH  s: ext token  i: now; the backend sets rc (0) and
 *                  i[1..5]: counted found fetches max_fetches expires_at
 *   OP_MSG_PUT     s: ext sender_uri sender_name call_id content_type
 *                  i: id cseq received_at expires_at cap received_us;
 *                  blob: body
 *   OP_MSG_DEL     i: id        OP_MSG_PURGE  i: now
 *   OP_MSG_GET     i: id; the backend fills s[0..4], blob, i[1..4], rc
 *   OP_NODE_PUT    s: name advertise  i: started_at last_seen calls
 *   OP_CALL_PUT    s: node call_id caller callee outcome answered_by
 *                  i: status branches started_ms ringing_ms ended_ms
 *                     media(flags) then per leg (caller, callee): packets
 *                     bytes lost jitter; i[14]: keep (0 = no cap)
 *                  (store_call_flags: the bits of media) */
struct op {
    struct list_node node;
    enum op_kind kind;
    /* packed (op_new_packed in store.c: the extension, binding, push
     * device and provisioning ops): s[k] points into the op's own
     * allocation, after the struct, never NULL, and len[k] is its
     * length; one free() frees everything. Else s[k] are separate
     * allocations (or NULL) and len[] is unused. */
    bool packed;
    char *s[11]; /* owned strings, meaning depends on kind */
    uint32_t len[11];
    int64_t i[15];
    /* OP_COMMIT and OP_PROV_FETCH, under st->lock: the caller's mark
     * (OP_COMMIT), the result, and whether the caller gave up waiting
     * (then the writer frees the op). */
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

/* The database work of one backend. Every function runs on the thread
 * named in store.h for the public function of the same name; run_batch on
 * the writer thread only. */
struct store_be_ops {
    const char *name;
    /* Connect / create, migrate, prepare; set st->be. 0 or -errno with a
     * reason in err. On failure nothing is left open. */
    int (*open)(struct store *st, const struct store_cfg *cfg, char *err,
                size_t errlen);
    /* After the writer has stopped: close everything, free st->be. */
    void (*close)(struct store *st);
    /* Run the count ops of batch that touch the database (writes and
     * OP_MSG_GET; OP_COMMIT requests are in the list too and skipped) in
     * one transaction. Returns true when it committed. Adds the rows
     * deleted by caps and purges to st->w_capped / st->w_purged. */
    bool (*run_batch)(struct store *st, struct list_node *batch, size_t count);
    int (*count)(struct store *st, const char *table, size_t *out);
    int (*ext_load)(struct store *st, store_ext_cb *cb, void *arg);
    int (*binding_load)(struct store *st, int64_t now_s, store_binding_cb *cb,
                        void *arg);
    int (*pushdev_load)(struct store *st, int64_t idle_before_s,
                        store_pushdev_cb *cb, void *arg);
    /* ext NULL: every link; else only ext's (store_prov_read). */
    int (*prov_load)(struct store *st, const char *ext, store_prov_cb *cb,
                     void *arg);
    int (*msg_load)(struct store *st, const char *ext, int64_t now_s,
                    bool bodies, store_msg_cb *cb, void *arg);
    int (*msg_counts)(struct store *st, int64_t now_s, store_msg_count_cb *cb,
                      void *arg);
    int (*msg_last_id)(struct store *st, uint64_t *out);
    /* NULL: store_msg_id_block answers -ENOTSUP (SQLite). */
    int (*msg_id_block)(struct store *st, uint64_t *first);
    int (*schema_version)(struct store *st, int *out);
    int (*node_load)(struct store *st, store_node_cb *cb, void *arg);
    int (*call_load)(struct store *st, size_t limit, store_call_cb *cb,
                     void *arg);
    int (*watch)(struct store *st, store_change_cb *cb, void *arg);
    int (*ext_read)(struct store *st, const char *ext, int64_t now_s,
                    store_ext_cb *ecb, store_binding_cb *bcb,
                    store_pushdev_cb *pcb, void *arg);
    /* WAL checkpoints run off the writer (SQLite; NULL: none). */
    uint64_t (*checkpoints)(struct store *st);
};

extern const struct store_be_ops store_sqlite_ops;
extern const struct store_be_ops store_pg_ops;

struct store {
    const struct store_be_ops *ops;
    void *be; /* the backend's state (its open sets it) */
    enum store_backend backend;
    char *node; /* cfg->node, "" when none */
    char *path; /* SQLite: the file (NULL on PostgreSQL) */
    unsigned flush_ms;
    unsigned max_queue;
    unsigned writer_nice; /* cfg->writer_nice, 0..19 */

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
    unsigned fetches; /* OP_PROV_FETCH queued: run without waiting */
    /* Writer thread only: rows the current batch deleted by cap/purge,
     * added to stats when it commits. */
    uint64_t w_capped, w_purged, w_calls_capped;
    bool failed_since_sync;
    bool w_failing; /* writer only: its last write batch failed */
    bool stop;
    struct store_stats stats;
};

/* Kept in the order they were written; a database at version v runs every
 * migration above v, each in its own transaction with its schema_version
 * row. Where the SQL differs (AUTOINCREMENT vs bigint, BLOB vs bytea,
 * triggers) each backend has its text side by side; NULL = nothing to do
 * on that backend. */
struct store_migration {
    int version;
    const char *sqlite;
    const char *pg;
};
extern const struct store_migration store_migrations[];
extern const size_t store_migration_count;

/* The column media of call_records: these bits. */
enum store_call_flag {
    STORE_CALL_MEDIA = 1,
    STORE_CALL_MEDIA_STATS = 2,
    STORE_CALL_ONE_WAY = 4,
    STORE_CALL_NO_MEDIA = 8,
    STORE_CALL_LEG_LOST = 16,   /* << 2 * leg: leg[leg].has_lost */
    STORE_CALL_LEG_JITTER = 32, /* << 2 * leg: leg[leg].has_jitter */
};
/* The row's columns in the order both backends read them (store_call_load):
 * id first, then the columns of the insert. */
#define STORE_CALL_COLS                                                        \
    "id, node, call_id, caller, callee, outcome, status, answered_by,"         \
    " branches, started_ms, ringing_ms, ended_ms, media, caller_packets,"      \
    " caller_bytes, caller_lost, caller_jitter, callee_packets,"               \
    " callee_bytes, callee_lost, callee_jitter"
/* The insert's columns ($1..$20 / ?1..?20) and the upsert's update. */
#define STORE_CALL_INSERT                                                      \
    "INSERT INTO call_records(node, call_id, caller, callee, outcome,"        \
    " status, answered_by, branches, started_ms, ringing_ms, ended_ms,"        \
    " media, caller_packets, caller_bytes, caller_lost, caller_jitter,"        \
    " callee_packets, callee_bytes, callee_lost, callee_jitter)"
#define STORE_CALL_UPSERT                                                      \
    " ON CONFLICT(node, call_id, started_ms) DO UPDATE SET"                   \
    " caller=excluded.caller, callee=excluded.callee,"                         \
    " outcome=excluded.outcome, status=excluded.status,"                       \
    " answered_by=excluded.answered_by, branches=excluded.branches,"           \
    " ringing_ms=excluded.ringing_ms, ended_ms=excluded.ended_ms,"             \
    " media=excluded.media, caller_packets=excluded.caller_packets,"           \
    " caller_bytes=excluded.caller_bytes, caller_lost=excluded.caller_lost,"   \
    " caller_jitter=excluded.caller_jitter,"                                   \
    " callee_packets=excluded.callee_packets,"                                 \
    " callee_bytes=excluded.callee_bytes, callee_lost=excluded.callee_lost,"   \
    " callee_jitter=excluded.callee_jitter"
/* Fill c from a row read as text/integers by a backend: ints[k] is the
 * k-th integer column after id (status .. callee_jitter, 14 of them),
 * strs the six text columns (node call_id caller callee outcome
 * answered_by). */
void store_call_from_row(struct store_call *c, uint64_t id,
                         const char *const strs[6], const int64_t ints[14]);

/* Name of enum store_ext_source values in the extensions.source column. */
extern const char *const store_source_name[2];

/* Queue the copy of a provisioning link that an import does not force
 * over an existing one (store_prov_import). 0 or -ENOSPC. */
int store_prov_import_row(struct store *st, const struct store_prov *p);

/* "store: WHERE: WHAT: WHY" into err (if any). */
void store_errf(char *err, size_t errlen, const char *where, const char *what,
                const char *why);

/* Free a queued op (wipes a provisioning link's password first). */
void store_op_free(struct op *o);
/* Give the calling thread nice value nice (> 0; 0 leaves it), naming it
 * `what` in the warning logged when the system refuses. */
void store_thread_nice(unsigned nice, const char *what);

#endif
