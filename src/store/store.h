/*
 * store: durable state in SQLite (extensions, SIP bindings), written by a
 * thread of its own so SIP processing never waits for the disk.
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
 * Reads (store_*_load) happen at start-up on a short-lived connection of
 * their own; WAL lets them run next to the writer.
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
struct store_cfg {
    char *path;         /* SQLite file; ":memory:" is refused */
    unsigned flush_ms;  /* batch window, 10..1000 */
    unsigned max_queue; /* queued writes before new ones are dropped */
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
};

struct store_stats {
    uint64_t queued;    /* writes accepted */
    uint64_t dropped;   /* writes refused because the queue was full */
    uint64_t committed; /* writes committed */
    uint64_t batches;   /* transactions committed */
    uint64_t errors;    /* failed batches (rolled back) */
    size_t queue_len;   /* writes waiting now */
};

/* Open (create) the database at cfg->path, set WAL, create the schema and
 * start the writer thread. Returns 0 and *out (owned; store_close), or a
 * negative errno with a reason in err ("store: PATH: reason"). */
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

/* Block until every write queued before the call is committed (or its
 * batch failed). Returns 0, or -EIO if a batch failed since the last
 * store_sync. For tests and shutdown; never on a SIP worker. */
int store_sync(struct store *st);

/* Read every extension / every binding that has not expired at now_s
 * (expired rows are deleted). The callback gets borrowed rows; a non-zero
 * return stops the walk and is returned. Otherwise 0 or -EIO. Runs on the
 * caller's thread with its own connection (start-up). */
typedef int store_ext_cb(const struct store_ext *e, void *arg);
typedef int store_binding_cb(const struct store_binding *b, void *arg);
int store_ext_load(struct store *st, store_ext_cb *cb, void *arg);
int store_binding_load(struct store *st, int64_t now_s, store_binding_cb *cb,
                       void *arg);

void store_get_stats(struct store *st, struct store_stats *out);

#endif
