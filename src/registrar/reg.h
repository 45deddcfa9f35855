/*
 * registrar/reg: extensions, REGISTER processing (RFC 3261 §10.3) with
 * digest authentication (RFC 7616/8760), and the location service the proxy
 * and the admin API read.
 *
 * The registrar is shared by every worker thread. State is split into
 * REG_SHARDS shards by a hash of the extension number, each with its own
 * mutex; a shard holds the extension records and, embedded in each, the
 * list of its bindings. A REGISTER touches exactly one extension, so it
 * takes one shard lock, which makes §10.3's "process atomically and in
 * order" trivial, and workers registering different extensions do not
 * contend. The nonce-count table and the brute-force table have one small
 * lock each (held for a hash probe).
 *
 * Expiry: tq timer queues are per worker (single thread), but a binding can
 * be refreshed from any worker, so bindings carry an absolute expiry and
 * are (a) filtered out lazily by every read and (b) freed by reg_expire(),
 * a sweep the daemon runs once a second over a sixteenth of the shards
 * (reg_expire_some): O(bindings / 16) per second, 62,500 pointer walks at
 * a million, and far simpler than cross-thread timer ownership.
 *
 * Persistence: every change is queued to the store (store.h), whose writer
 * thread commits it within flush_ms; reg_load() restores extensions and
 * unexpired bindings at start-up.
 *
 * Times are wall-clock (unix) because expiries are persisted and must mean
 * the same after a restart. A clock hook lets tests move time.
 */
#ifndef PUSHPBX_REGISTRAR_REG_H
#define PUSHPBX_REGISTRAR_REG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/arena.h"
#include "base/buf.h"
#include "base/slice.h"
#include "sip/msg.h"

struct reg;
struct store;

enum reg_transport {
    REG_TP_UDP = 0,
    REG_TP_TCP = 1,
    REG_TP_TLS = 2,
};

enum reg_unknown_policy {
    /* Unknown extensions are challenged like known ones and their
     * credentials fail like a wrong password (401, counted), so a scanner
     * cannot tell which extensions exist. Default. */
    REG_UNKNOWN_CHALLENGE = 0,
    /* Unknown extensions get 404 at once (reveals which exist). */
    REG_UNKNOWN_404 = 1,
};

/* Digest algorithms offered, in challenge order (RFC 8760: most preferred
 * first). Only offered algorithms are accepted in credentials. Some
 * clients (SIPp 3.6, older desk phones) take the first challenge and fail
 * if it is SHA-256: "md5,sha256" or "md5" serves them. baresip 1.0 (libre)
 * rejects a 401 carrying any non-MD5 challenge: only "md5" serves it. */
enum reg_algs {
    REG_ALGS_SHA256_MD5 = 0, /* default */
    REG_ALGS_MD5_SHA256 = 1,
    REG_ALGS_SHA256 = 2,
    REG_ALGS_MD5 = 3,
};

/* [registrar] section (option table in reg_cfg.c). */
struct reg_cfg {
    unsigned min_expires_s;       /* shorter (but > 0) → 423 + Min-Expires */
    unsigned max_expires_s;       /* longer is shortened to this */
    unsigned default_expires_s;   /* no expires param and no Expires header */
    unsigned max_contacts;        /* bindings per extension; oldest evicted */
    unsigned nonce_ttl_s;         /* older nonces → 401 stale=true */
    unsigned nonce_table_size;    /* nonces tracked for nonce-count replay */
    int unknown_ext;              /* enum reg_unknown_policy */
    unsigned auth_fail_threshold; /* failures per source within window */
    unsigned auth_fail_window_s;
    unsigned auth_block_s; /* cool-down: every REGISTER → 403 */
    int algorithms;        /* enum reg_algs */
    /* IPv6 sources are counted per prefix of this many bits (16..128;
     * 0 = 64): one host owns a /64. */
    unsigned throttle_ipv6_prefix;
    /* Sources tracked at most (0 = 65536); a blocked one is never evicted
     * before its block ends. */
    unsigned throttle_table_size;
    /* RFC 5626 Flow-Timer in the 200 of an outbound REGISTER: seconds
     * between the phone's keep-alives on TCP/TLS flows, and on UDP. */
    unsigned flow_timer_s;
    unsigned flow_timer_udp_s;
};

/* One [extension.NUMBER] section. */
struct reg_ext_cfg {
    char *name;     /* display name */
    char *password; /* imported as HA1 values; never stored */
    bool enabled;
    unsigned max_push_devices;
};

/* Fill *c with the documented defaults (the same as the option table's). */
void reg_cfg_defaults(struct reg_cfg *c);

struct reg_opts {
    const struct reg_cfg *cfg; /* copied */
    const char *domain;        /* [sip] domain; To host must match (or be
                                  a numeric IP: requests reach us by IP) */
    const char *realm;         /* [sip] realm */
    struct store *store;       /* borrowed; NULL = no persistence */
    /* [cluster] node (copied); NULL or "" = single node. Bindings are
     * persisted with it, and reg_load skips the rows other nodes hold
     * (the cluster room applies them: reg_remote_set). */
    const char *node;
    /* [messages]: read until reg_load returns (it opens the stored
     * messages' index with it); NULL = defaults. Without a store there
     * is no index (reg_messages returns NULL). */
    const struct reg_msg_cfg *messages;
    /* Wall clock in ms; NULL = CLOCK_REALTIME. For tests. */
    int64_t (*clock_ms)(void *arg);
    void *clock_arg;
};

/* Create a registrar. Returns 0 and *out (owned; reg_free), or -EINVAL for
 * an empty domain/realm. */
int reg_new(const struct reg_opts *o, struct reg **out);
/* NULL is a no-op. Does not touch the store (bindings stay persisted). */
void reg_free(struct reg *r);

/* Restore extensions, then unexpired bindings, from the store (start-up,
 * before workers run; then apply the config's extensions with
 * reg_ext_set). Returns 0, or -EIO. Extensions whose stored HA1 belongs to
 * another realm are kept but cannot authenticate until re-imported. */
int reg_load(struct reg *r);

/* The index of stored chat messages (registrar/msgstore.h), opened by
 * reg_load when the registrar has a store, else NULL. Owned by r: closed
 * by reg_free; reg_expire expires its messages and reg_ext_del drops an
 * extension's. Any thread. */
struct reg_msg_table;
struct reg_msg_table *reg_messages(struct reg *r);

/* Is number a valid extension number: 1..32 characters of
 * [0-9A-Za-z_.+-]? (NULL is not.) Any thread. */
bool reg_ext_number_valid(const char *number);

/* Create or update an extension: HA1 for MD5 and SHA-256 are computed from
 * password and the realm (password is not kept). number: digits/letters
 * ("100"), 1..32 chars. Persisted. Returns 0 or -EINVAL. Any thread. */
int reg_ext_set(struct reg *r, const char *number, const char *display,
                const char *password, bool enabled, unsigned max_push_devices);
/* Change an existing extension's display name, enabled flag and push-device
 * limit, keeping its credentials (the stored HA1 values). display NULL
 * keeps the name; max_push_devices 0 keeps the limit. Persisted. Returns 0,
 * -ENOENT for an unknown extension. Any thread. */
int reg_ext_update(struct reg *r, const char *number, const char *display,
                   bool enabled, unsigned max_push_devices);

/* One extension as the admin sees it (a copy; display is truncated to fit). */
struct reg_ext_info {
    char number[33];
    char display[128];
    bool enabled;
    unsigned max_push_devices;
};
/* Copy extension number into *out. Returns 0 or -ENOENT. Any thread. */
int reg_ext_get(struct reg *r, const char *number, struct reg_ext_info *out);

/* Remove an extension and all its bindings. 0 or -ENOENT. */
int reg_ext_del(struct reg *r, const char *number);

/* Extensions of the configuration file. The store keeps each extension's
 * source (store.h enum store_ext_source: the admin API or an
 * [extension.N] section); the registrar keeps a copy of "from the file",
 * restored by reg_load and set by reg_ext_mark_config, so that the daemon
 * compares the file with the database (at start and on reload) without
 * reading the extension table again (a million rows). An extension
 * created by reg_ext_set is not marked; a mark goes with its extension
 * (reg_ext_del). Any thread.
 *
 * reg_ext_mark_config: mark number as the file's (the caller tells the
 * store too: store_ext_set_source). Returns 0 or -ENOENT.
 * reg_ext_is_config: 1 (the file's), 0 (not), or -ENOENT.
 * reg_ext_config_count: how many are marked. O(1).
 * reg_ext_config_list: the marked numbers into *out (owned by the
 * caller: free), returns their count. Walks every extension. */
#define REG_NUMBER_LEN_MAX 32
int reg_ext_mark_config(struct reg *r, const char *number);
int reg_ext_is_config(struct reg *r, const char *number);
size_t reg_ext_config_count(struct reg *r);
size_t reg_ext_config_list(struct reg *r, char (**out)[REG_NUMBER_LEN_MAX + 1]);

/* Where a request came from (the transport's source descriptor). */
struct reg_src {
    enum reg_transport transport;
    struct sockaddr_storage addr; /* remote address and port */
    uint64_t flow_id;             /* connection id; 0 for UDP */
};

/* Process one REGISTER and build the complete response into out (the
 * caller sends it back over src). Returns the status code put in the
 * response (200, 401, 403, 404, 400, 420, 423, 500, 555), or -EINVAL if
 * req is not a REGISTER request, -EMSGSIZE if the response outgrew out's
 * cap. A push device is committed before the 200 is returned: this
 * blocks for the store (pushdev_put), so it is for tests, benchmarks and
 * threads that may wait; a SIP worker calls reg_handle_async. */
int reg_handle(struct reg *r, const struct sip_msg *req,
               const struct reg_src *src, struct buf *out);

/* reg_handle_async's "the 200 waits for a commit" (not a SIP status). */
#define REG_PENDING 1

/* The commit a pending REGISTER waits for is done: rc 0 (durable) or the
 * store's error. Runs on the store's writer thread, or on the calling
 * thread before reg_handle_async returns; no registrar lock held. It
 * must only hand rc to the worker's loop (short, thread-safe). */
typedef void reg_commit_cb(int rc, void *arg);

/* reg_handle for a SIP worker, which must never wait for the store. Same
 * results, plus REG_PENDING: the REGISTER is accepted (bindings updated,
 * bind callback run) and its 200 is built in out, but it carries a push
 * device (or Contact: * removing devices) whose commit is running; the
 * 200 may only be sent once cb(rc, arg) (called exactly once, maybe
 * before this returns, maybe on another thread) has reported and
 * reg_handle_done(rc) said so. Until then the caller keeps the request's
 * server transaction open (retransmissions absorbed, no second commit).
 * cb is called only when REG_PENDING is returned. cb NULL: -EINVAL. Any
 * worker thread. */
int reg_handle_async(struct reg *r, const struct sip_msg *req,
                     const struct reg_src *src, struct buf *out,
                     reg_commit_cb *cb, void *arg);

/* The answer of a REGISTER left pending, once its commit reported rc (or
 * the caller stopped waiting: pass -ETIMEDOUT): 200 when rc is 0 (send
 * the 200 built then; counted as accepted), else 500 "Push Device Not
 * Stored" built from req into out (appended), so the phone registers
 * again (the device stays unsynced: pushdev.h), or -EMSGSIZE. Worker
 * thread. */
int reg_handle_done(struct reg *r, int rc, const struct sip_msg *req,
                    struct buf *out);

/* A binding as the proxy and admin see it (copies). */
struct reg_contact {
    const char *uri;      /* Contact URI as registered (pn-* kept) */
    /* RFC 8599 params of uri, unescaped, parsed once when the binding was
     * stored ("" if absent or malformed). */
    const char *pn_provider, *pn_prid, *pn_param;
    const char *params;   /* contact params as given, without expires */
    const char *instance; /* +sip.instance ("" if none) */
    uint32_t reg_id;
    int64_t expires_at; /* unix seconds */
    const char *call_id;
    uint32_t cseq;
    const char *path; /* Path values, comma-joined, "" if none */
    const char *user_agent;
    enum reg_transport transport; /* how the REGISTER arrived */
    struct sockaddr_storage addr; /* its source: route here (NAT) */
    uint64_t flow_id;             /* 0 after a restart or for UDP */
    /* "" for a binding of this node. A remote binding (another [cluster]
     * node holds the phone's flow, reg_remote_set) carries that node's
     * name; its transport is UDP and addr is that node's advertised
     * address: the proxy routes the branch there (Route pp-ext). */
    const char *node;
};

/* Current (unexpired) bindings of extension ext, newest first, copied into
 * arena a. Returns 0 with *out and *count (count may be 0), -ENOENT for an
 * unknown extension, -ENOMEM at the arena cap. Any thread. */
int reg_lookup(struct reg *r, struct slice ext, struct arena *a,
               struct reg_contact **out, size_t *count);

/* Notification for the proxy (a woken phone's REGISTER releases a held
 * call): after a REGISTER was accepted, cb gets the extension and the
 * bindings that request added or refreshed (copies, valid during the
 * call; count > 0). Runs on the worker that handled the REGISTER, with no
 * registrar lock held, before the 200 OK is sent (for a REGISTER left
 * pending, before its push device's commit is known: the bindings are in
 * memory either way); cb may call reg_lookup.
 * Set once before workers start (not synchronised). */
typedef void reg_bind_cb(const char *ext, const struct reg_contact *contacts,
                         size_t count, void *arg);
void reg_set_bind_cb(struct reg *r, reg_bind_cb *cb, void *arg);

/* Push devices ([wake], RFC 8599; pushdev.h). Set once before workers
 * start (not synchronised). With a table set, a REGISTER whose Contact URI
 * carries pn-provider/pn-prid/pn-param is checked (400 with a reason for a
 * bad token or missing pn-param, 555 for a provider not served, both
 * before anything is stored), the push device is committed to the store
 * before the 200 is sent (reg_handle_async: REG_PENDING until then), and
 * the 200 carries Feature-Caps:
 * *;+sip.pns="<provider>". Expires: 0 keeps the device (background mode);
 * Contact: * removes the extension's devices too. An extension for which
 * push_enabled returns false registers without push: no device, no
 * Feature-Caps, and a Warning saying so. */
struct pushdev_table;
struct reg_push_opts {
    struct pushdev_table *table; /* borrowed; NULL disables push */
    bool apns, fcm;              /* providers served */
    /* NULL = push enabled for every extension. Any thread. */
    bool (*push_enabled)(const char *ext, void *arg);
    void *arg;
};
void reg_set_push(struct reg *r, const struct reg_push_opts *o);

/* Admin listing: cb once per extension (sorted by nothing: hash order),
 * with its current bindings. Called under the extension's shard lock: cb
 * must not call back into the registrar. */
typedef void reg_list_cb(const char *ext, const char *display, bool enabled,
                         const struct reg_contact *contacts, size_t count,
                         void *arg);
void reg_list(struct reg *r, reg_list_cb *cb, void *arg);

/* reg_list for extension number alone. Returns 0, or -ENOENT (unknown or
 * not a valid number). Any thread. */
int reg_list_ext(struct reg *r, const char *number, reg_list_cb *cb,
                 void *arg);

/* Admin listing by pages (GET /api/registrations?limit=&after=):
 * extensions in listing order (shorter numbers first, then byte order:
 * "99" < "100"), the first limit of them (at most REG_PAGE_MAX) that sort
 * after the number `after` (NULL or "": from the first). `after` need not
 * exist: a cursor stays valid when its extension is deleted. cb as for
 * reg_list, once per extension, under that extension's shard lock (cb
 * must not call back into the registrar). An extension deleted while the
 * page is read is left out; one added behind the cursor is not seen by
 * the pages after it, one added ahead of it is. Returns the cb calls;
 * *pg gets the number of extensions (total), whether more follow the
 * page, and the cursor for the next page (the page's last number; "" for
 * an empty page). O(log extensions + limit). Any thread. */
#define REG_PAGE_MAX 1000
struct reg_page {
    size_t total;
    bool more;
    char next[33];
};
size_t reg_list_page(struct reg *r, const char *after, size_t limit,
                     reg_list_cb *cb, void *arg, struct reg_page *pg);

/* Drop expired bindings (memory only: the store drops them at the next
 * start; in a cluster their rows are deleted, which tells the other
 * nodes). A remote binding is not expired here whatever its expiry as
 * last heard: its node's refreshes are silent, it lives until its node
 * deletes its row or stops beating (reg_remote_set). Returns how many were
 * dropped. Call about once a second. */
size_t reg_expire(struct reg *r);

/* reg_expire for the next `shards` shards only (round robin; a full pass
 * every REG_SHARDS / shards calls). The daemon's once-a-second tick: a
 * full pass over a million bindings took ~270 ms of every second and
 * held each shard's lock ~4 ms; expired bindings are filtered out by every
 * read anyway, so freeing them a few seconds later costs only memory.
 * Returns how many were dropped. Any thread. */
#define REG_EXPIRE_SHARDS_PER_TICK 4
size_t reg_expire_some(struct reg *r, unsigned shards);

/* Digest check of an out-of-dialog request that the proxy serves (INVITE,
 * MESSAGE...; RFC 3261 §22.3), with the nonces, nonce-count replay table
 * and brute-force throttle of REGISTER. The Proxy-Authorization whose
 * realm is ours is checked against the extension its username names
 * (the proxy then checks that From names the same extension). Returns 0
 * and the authenticated extension (NUL-terminated) in ext (cap >= 33), or
 * the status to answer: 407 with the Proxy-Authenticate lines (CRLF-ended,
 * most preferred algorithm first, stale=true when only the nonce was
 * unusable) appended to hdrs; 403 (source blocked, extension disabled);
 * 400 (malformed credentials). The same digest code as REGISTER
 * (reg_int.h reg_auth_check), without its To check and 404 policy. Added
 * for the proxy room. Any thread. */
int reg_auth_request(struct reg *r, const struct sip_msg *req,
                     const struct reg_src *src, char *ext, size_t cap,
                     struct buf *hdrs);

/* Does req carry credentials reg_auth_request would check: a Digest
 * Proxy-Authorization whose realm is ours (well-formed or not)? false
 * for none, or only some for another realm: such a request can only be
 * challenged, so the proxy answers it statelessly (no transaction, no
 * retransmitted 407). Any thread. */
bool reg_auth_has_credentials(const struct reg *r, const struct sip_msg *req);

/* ---- cluster: bindings other nodes hold ----------------------------------
 * Each node keeps the bindings of the phones whose flow it holds; the
 * bindings other nodes hold (read from the shared store by the cluster
 * room) are kept as remote bindings (reg_contact.node != ""): memory only,
 * never written back, looked up like any binding. */

/* Replace the remote bindings of extension ext by rows (borrowed; the
 * extension's rows as the store has them, this node's own included: those
 * and rows of node "" are skipped; a row whose key names a local binding
 * updated at or after it is skipped too, otherwise the row wins: the phone
 * moved to that node). Each row's source must be the holding node's
 * advertised "ip:port" and its transport UDP (the branch goes there).
 * Expired rows are skipped. A remote binding then lives, routable, until
 * the next reg_remote_set of its extension without it (its node deleted
 * the row) or reg_remote_drop_node: its expiry is the row's as read, and
 * its node's refreshes of it are silent (schema version 6; reg_lookup,
 * reg_list and reg_expire do not expire it). A row
 * that is new (no remote binding with the
 * same key, node and URI before) fires the bind callback exactly like a
 * local REGISTER (reg_set_bind_cb), on the calling thread, with no lock
 * held. Returns the number of new bindings, or -ENOENT (no such
 * extension). Any thread. */
struct store_binding;
int reg_remote_set(struct reg *r, const char *ext,
                   const struct store_binding *rows, size_t n);

/* Drop every remote binding held by node (it stopped beating). Returns
 * how many. O(bindings). Any thread. */
size_t reg_remote_drop_node(struct reg *r, const char *node);

/* Queue every unexpired binding this node holds for writing again
 * (write-behind, committed within flush_ms): after the database was back
 * from an outage, the rows of REGISTERs answered 200 while their batch
 * failed are written (memory is authoritative). Returns how many.
 * O(bindings). Any thread. */
size_t reg_persist_local(struct reg *r);

/* [cluster] Row (ext, key) of this node's in the database: when this node
 * holds no binding of ext with that key (removed while the database could
 * not take the delete), queue the row's delete (only while it still names
 * this node: store_binding_del_node) and return true; else false, nothing
 * queued. Memory is checked and the delete queued under ext's shard lock,
 * so a binding of that key added meanwhile is written after the delete.
 * O(bindings of ext). Any thread. */
bool reg_drop_unheld(struct reg *r, const char *ext, const char *key);

/* Unexpired bindings held by node ("" = this node's own). O(bindings):
 * for the admin's node list. Any thread. */
size_t reg_count_node(struct reg *r, const char *node);

/* Create or update extension e->number in memory from another node's row
 * (not written back). 0 or -EINVAL. Any thread. */
struct store_ext;
int reg_ext_apply(struct reg *r, const struct store_ext *e);
/* Remove extension number and its bindings from memory only (another
 * node deleted it). 0 or -ENOENT. Any thread. */
int reg_ext_forget(struct reg *r, const char *number);

struct reg_stats {
    uint64_t registers;     /* REGISTERs handled */
    uint64_t ok;            /* answered 2xx */
    uint64_t challenged;    /* 401 without credentials or stale */
    uint64_t auth_failures; /* wrong credentials, unknown user, ... */
    uint64_t throttled;     /* answered 403 because the source is blocked */
    uint64_t blocks;        /* times a source got blocked */
    uint64_t digests;       /* digest responses computed (known extension
                               or not: the same work for both) */
    uint64_t throttle_overflows; /* failures counted in the shared overflow
                                    entry (throttle table full of blocks) */
    uint64_t store_errors;       /* writes the store refused */
    size_t extensions;
    size_t bindings;
};
void reg_get_stats(struct reg *r, struct reg_stats *out);

#endif
