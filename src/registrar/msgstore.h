/*
 * registrar/msgstore: the index of stored chat messages (SIP MESSAGE,
 * RFC 3428) for extensions whose apps sleep (docs/messages.md).
 *
 * A MESSAGE that no live binding can take is stored: the row, body
 * included, goes to the store's messages table and is committed before
 * the sender gets 202 Accepted (reg_msg_put). When the app wakes and
 * registers, the SIP side delivers the messages one by one, oldest first
 * (reg_msg_claim loads the next one from the store without blocking;
 * reg_msg_done removes it after a 2xx or keeps it after a failure).
 *
 * What lives here, in memory: per extension the ids in order, each with
 * its body size, received/expiry times and delivery state; the bodies
 * stay in the store (up to max_per_extension x max_bytes per extension
 * would be too much memory to hold), so a delivery reads one row. The
 * index answers "has this extension messages?" without any I/O, and is
 * loaded from the store at start (reg_msg_open).
 *
 * Ids: SQLite (one node) numbers on from the highest id ever used; on
 * PostgreSQL (a cluster shares the table) each node takes blocks of
 * STORE_MSG_ID_BLOCK ids from one sequence (store_msg_id_block), so no
 * two nodes give one id to two messages. Ids say nothing about order
 * between nodes (a node's block may be below another's).
 *
 * Order: one extension's messages are ordered by arrival, (received_us,
 * id): received_us is the wall clock in microseconds when reg_msg_put
 * ran, raised when needed above every received_us this node gave or saw
 * (loaded at start, or another node's, read by reg_msg_refresh). The
 * index, the cap (memory and store_msg_put's), delivery and the store's
 * loads all use that one order, so every node of a cluster agrees on it.
 * On one node the id and received_us are taken together under the table
 * mutex, both increasing, and the store write is queued under the same
 * mutex, so memory, disk and delivery order are the order reg_msg_put
 * was called in (the order the MESSAGEs were received, hence their
 * Call-ID/CSeq order), also if the clock steps back. Between nodes it is
 * the order of their clocks (keep them in step: NTP), except that a
 * message stored after this node knew of another one comes after it.
 * At most one message per extension is being delivered at a time
 * (reg_msg_claim gives only the oldest, and only when none of the
 * extension's messages is out), so a failed delivery never lets a
 * younger message overtake it.
 *
 * Limits: [messages] max_per_extension (the oldest is dropped, counted;
 * the store applies the same cap in the same transaction), ttl_days
 * (reg_msg_expire, once a second; the store's rows are purged with it),
 * max_bytes (reg_msg_put refuses a bigger body: the SIP side answers 413
 * before calling it).
 *
 * Thread: every function is thread-safe (one mutex, held for memory work
 * and for queueing store writes only, never across a wait) unless it says
 * otherwise. Callbacks run on the store's writer thread (or on the calling
 * thread before the call returns), never under the table's mutex.
 */
#ifndef PUSHPBX_REGISTRAR_MSGSTORE_H
#define PUSHPBX_REGISTRAR_MSGSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/cfg.h"
#include "store/store.h"

/* [messages] section (option table in reg_cfg.c). */
struct reg_msg_cfg {
    unsigned ttl_days;             /* stored messages expire after this */
    unsigned max_per_extension;    /* beyond it the oldest is dropped */
    unsigned max_bytes;            /* larger bodies: 413 */
    struct cfg_list content_types; /* allowed; others: 415 */
};

extern const struct cfg_section reg_msg_cfg_section;

/* Defaults of the option table (a unit test checks they agree). */
#define REG_MSG_TTL_DAYS 7
#define REG_MSG_MAX_PER_EXTENSION 1000
#define REG_MSG_MAX_BYTES 65536
/* A claimed message whose delivery was never reported (reg_msg_done) is
 * given out again after this long: longer than a non-INVITE transaction
 * can last (64*T1 = 32 s), so it only recovers from a lost report. */
#define REG_MSG_CLAIM_TIMEOUT_MS 40000

/* Is the media type of content_type (a Content-Type header value; its
 * parameters, e.g. ";charset=utf-8", and case are ignored) one of
 * cfg->content_types? false for NULL/empty. Pure; any thread. */
bool reg_msg_type_allowed(const struct reg_msg_cfg *cfg,
                          const char *content_type);
/* Is it an isComposing notification (application/im-iscomposing+xml,
 * RFC 3994)? Those are never stored nor pushed. Pure; any thread. */
bool reg_msg_is_composing(const char *content_type);

struct reg_msg_table; /* opaque */

struct reg_msg_opts {
    struct store *store;           /* borrowed, required; outlives t */
    const struct reg_msg_cfg *cfg; /* values copied; NULL = defaults */
    /* Wall clock in ms; NULL = CLOCK_REALTIME. For tests. */
    int64_t (*clock_ms)(void *arg);
    void *clock_arg;
};

/* Open the index: load every unexpired message of the store (ids, sizes,
 * times; not the bodies; the expired ones are deleted) and continue ids
 * after the highest ever used. Returns 0 and *out (owned;
 * reg_msg_close), or -EINVAL (no store) / -EIO with "messages: reason"
 * in err. Main thread, before the workers start. */
int reg_msg_open(const struct reg_msg_opts *o, struct reg_msg_table **out,
                 char *err, size_t errlen);
/* Wait for the callbacks still due (puts being committed, claims being
 * read: the store's writer runs them), then free. Call before
 * store_close, after the SIP workers stopped. NULL is a no-op. */
void reg_msg_close(struct reg_msg_table *t);

/* The table's limits, for the SIP side's checks before reg_msg_put:
 * max_bytes (413 above it) and the content-type allow-list (415 outside
 * it; reg_msg_type_allowed over the table's copy of the list). */
size_t reg_msg_max_bytes(const struct reg_msg_table *t);
/* [messages] ttl_days in seconds: a message put now expires now + this
 * (the push's expiry). Any thread. */
int64_t reg_msg_ttl_s(const struct reg_msg_table *t);
bool reg_msg_content_type_ok(const struct reg_msg_table *t,
                             const char *content_type);

/* The result of reg_msg_put: rc 0 means the message is committed (answer
 * 202 Accepted, then push); else -EIO / -ENOSPC / -ESHUTDOWN from the
 * store (answer 500; the message is no longer in the index). id is the
 * message id (for the push payload's "message_id"). */
typedef void reg_msg_put_cb(int rc, uint64_t id, void *arg);

/* Store m for m->ext (read: ext, sender_uri, sender_name, call_id, cseq,
 * content_type, body/body_len; id, received_at, received_us and
 * expires_at are set here, received_at = now, expires_at = now + ttl,
 * received_us as in "Order" above). The message is in the
 * index at once, queued to the store, and committed at once
 * (store_commit_async); cb(rc, id, arg) runs exactly once when the
 * commit is done: on the store's writer thread, or on the calling thread
 * before return (so cb must be short and thread-safe: tp_post the result
 * to the worker). Until cb has run with 0 the message is not given out
 * by reg_msg_claim (so nothing is delivered before the sender's 202).
 * When the extension already holds max_per_extension messages the
 * oldest is dropped (counted as dropped; the sender of the new one still
 * gets 202). Returns 0 (cb will run), -EINVAL (no ext), -EMSGSIZE (body
 * over max_bytes; cb is not called then). Any thread; never blocks. */
int reg_msg_put(struct reg_msg_table *t, const struct store_msg *m,
                reg_msg_put_cb *cb, void *arg);

/* Committed messages waiting for ext (0 when none). Memory only: cheap
 * enough for every REGISTER. */
size_t reg_msg_count(struct reg_msg_table *t, const char *ext);

/* One waiting message, as the index knows it (no body). */
struct reg_msg_info {
    uint64_t id;
    size_t body_len;
    int64_t received_at, expires_at; /* unix seconds */
    bool claimed;                    /* being delivered now */
};
/* Copy up to cap of ext's committed messages, oldest (by arrival)
 * first. Returns how many ext has in all (may exceed cap). */
size_t reg_msg_list_ext(struct reg_msg_table *t, const char *ext,
                        struct reg_msg_info *out, size_t cap);

/* The row of the claimed message: rc 0 and m (borrowed for the call; its
 * body is NUL-terminated one byte past body_len, for convenience), or
 * rc < 0 and m NULL: -ENOENT the row is gone (expired or dropped
 * meanwhile: already removed from the index, claim the next one), -EIO /
 * -ENOSPC / -ESHUTDOWN the store failed (the claim is released: the
 * message stays first). Same thread rules as reg_msg_put_cb. */
typedef void reg_msg_claim_cb(int rc, const struct store_msg *m, void *arg);

/* Claim the oldest (by arrival, "Order" above) committed message of ext
 * for delivery to a binding and read its row from the store
 * (store_msg_get_async: never blocks). Returns 0 (cb will run exactly
 * once; after a 0 there, the caller must report the outcome with
 * reg_msg_done), -ENOENT (ext has no committed message), -EBUSY (a
 * message of ext is being delivered already, by this or another worker,
 * or the oldest is still being committed: retry when that ends).
 * Expired messages met on the way are dropped (counted). Any thread. */
int reg_msg_claim(struct reg_msg_table *t, const char *ext,
                  reg_msg_claim_cb *cb, void *arg);

/* The outcome of a claimed message's delivery (ext: the message's, i.e.
 * the row's m->ext, so that only that extension is searched): delivered (a 2xx
 * came back) removes it from the index and the store and counts it; not
 * delivered releases the claim: it stays the oldest and is claimed
 * again by the next reg_msg_claim (e.g. at the next REGISTER). An id no
 * longer in the index (dropped meanwhile by the cap, the TTL or the
 * extension's removal): delivered still counts and deletes its row, not
 * delivered does nothing. Any thread. */
void reg_msg_done(struct reg_msg_table *t, const char *ext, uint64_t id,
                  bool delivered);

/* Drop every message of ext (extension deleted). Returns how many. */
size_t reg_msg_remove_ext(struct reg_msg_table *t, const char *ext);

/* Drop the messages whose expires_at has passed (memory at once, the
 * store's rows with one queued purge). Cheap when nothing is due (one
 * comparison). On the postgresql backend it also reserves this node's
 * next block of message ids ahead of need (store_msg_id_block, a
 * blocking read once per STORE_MSG_ID_BLOCK messages). Returns how many.
 * Call about once a second, from the main thread. */
size_t reg_msg_expire(struct reg_msg_table *t);

/* Bring the index in line with the store's rows of ext (NULL: of every
 * extension) after another node of a cluster wrote some (docs/cluster.md:
 * the change feed names the extension): rows this node does not know
 * are added (committed, deliverable at once), entries whose row is gone
 * (delivered, expired or dropped by another node, extension deleted) are
 * removed. Entries still being committed or delivered here are kept, and
 * so is an entry committed after the read began; a row this node removed
 * a moment ago (its delete not committed yet) is not brought back.
 * Returns how many were added, or -EIO. Blocking read (store_msg_load,
 * no bodies): the cluster's listener thread, never a SIP worker. */
int reg_msg_refresh(struct reg_msg_table *t, const char *ext);

/* The SIP side counts each message push it sent (push_send accepted),
 * for /metrics. */
void reg_msg_count_pushed(struct reg_msg_table *t, unsigned n);

struct reg_msg_stats {
    uint64_t stored;    /* committed by reg_msg_put */
    uint64_t delivered; /* reg_msg_done(delivered) */
    uint64_t expired;   /* dropped by the TTL */
    uint64_t dropped;   /* dropped by max_per_extension */
    uint64_t pushed;    /* reg_msg_count_pushed */
    uint64_t failed;    /* reg_msg_put commits that failed */
    uint64_t waiting;   /* messages in the index now */
    uint64_t bytes;     /* their bodies' bytes */
};
void reg_msg_get_stats(struct reg_msg_table *t, struct reg_msg_stats *out);

/* Per extension with messages, for the admin page (never the text). */
struct reg_msg_ext_info {
    const char *ext; /* borrowed for the call */
    size_t count;
    int64_t oldest_received_at; /* unix seconds */
    uint64_t bytes;
};
/* cb once per extension holding committed messages, in no
 * particular order, under the table lock: cb must not call back into
 * the table. */
typedef void reg_msg_ext_cb(const struct reg_msg_ext_info *e, void *arg);
void reg_msg_list(struct reg_msg_table *t, reg_msg_ext_cb *cb, void *arg);

#endif
