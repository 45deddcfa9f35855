/*
 * registrar/reg_int: declarations shared inside the registrar room
 * (tables in reg.c, authentication in reg_auth.c, REGISTER in
 * reg_register.c). Not for other rooms.
 */
#ifndef PUSHPBX_REGISTRAR_REG_INT_H
#define PUSHPBX_REGISTRAR_REG_INT_H

#include <netinet/in.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/list.h"
#include "registrar/reg.h"

#define REG_SHARDS 64
#define REG_NUMBER_MAX REG_NUMBER_LEN_MAX /* reg.h */
#define REG_NONCE_LEN 64 /* 16 hex time + 16 hex counter + 32 hex MAC */

/* Compact socket address: a binding costs 28 bytes here instead of the 128
 * of sockaddr_storage (100k bindings is the memory target). */
union reg_addr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};

/* Where one RFC 8599 param of a binding's uri is, unescaped: len bytes
 * at uri + off, inside the uri when the value needed no unescaping (the
 * usual case: a token is not stored twice), else a copy packed after the
 * binding's other strings. len 0: "" (absent, malformed, holding a NUL or
 * too long). Not NUL-terminated: reg.c pn_get copies one out. */
struct reg_pn_ref {
    uint32_t off, len;
};
enum { REG_PN_PROVIDER, REG_PN_PRID, REG_PN_PARAM, REG_PN_COUNT };

/* One registered contact. All strings live in the same allocation, right
 * after the struct (one malloc per binding; replaced, never edited, when
 * refreshed with different values). */
struct binding {
    struct list_node node; /* in ext->bindings, most recently updated first */
    const char *key;       /* store key: instance "#" reg-id, or the URI */
    const char *uri;
    struct reg_pn_ref pn[REG_PN_COUNT]; /* of uri (reg_binding_new) */
    const char *params;
    const char *instance;
    const char *call_id;
    const char *path;
    const char *user_agent; /* interned: its shard's agents */
    /* "" for a binding of this node; else the [cluster] node holding the
     * phone's flow (a remote binding: reg_remote_set, never persisted
     * here, routed via that node). */
    const char *holder;
    uint32_t reg_id;
    uint32_t cseq;
    int64_t expires_at; /* unix s */
    int64_t updated_at; /* unix s */
    enum reg_transport transport;
    union reg_addr addr;
    uint64_t flow_id;
};

/* One extension: ~110 bytes and its display name at a million
 * (bench/million-bench.py): the number is stored after the struct, the
 * HA1 values in binary (reg_ha1_hex gives them back as hex). */
struct ext {
    struct ext *hnext;
    char *display;
    uint8_t ha1_md5[16];
    uint8_t ha1_sha256[32];
    bool ha1_valid; /* HA1 values belong to our realm */
    bool enabled;
    bool from_config; /* the store's source is the configuration file */
    uint8_t shard;    /* index in reg->shards */
    unsigned max_push_devices;
    struct list_node bindings;
    size_t binding_count;
    char number[]; /* NUL-terminated; never changes */
};

/* Lower-case hex of n bytes into out (2n + 1 bytes, NUL-terminated). */
void reg_ha1_hex(const uint8_t *bin, size_t n, char *out);

/* Interned strings: one counted copy of each distinct string, for values
 * most phones share (a fleet's few User-Agents: 45 bytes a binding at a
 * million). Chained hash, doubled past one entry a bucket. Not
 * thread-safe: under its owner's lock. */
struct reg_str;
struct reg_strtab {
    struct reg_str **tab;
    size_t nbuckets, count;
};
/* The interned copy of s (a new one, or one more reference); "" for "" or
 * NULL (not counted). */
const char *reg_strtab_get(struct reg_strtab *t, const char *s);
/* Drop a reference to s, a reg_strtab_get result of t; freed at the
 * last. */
void reg_strtab_put(struct reg_strtab *t, const char *s);
/* Free t's table (every string must have been put). */
void reg_strtab_fini(struct reg_strtab *t);

struct shard {
    pthread_mutex_t lock;
    struct ext **tab;
    size_t nbuckets;
    size_t count;
    struct reg_strtab agents; /* bindings' user_agent values */
};

/* Every extension number in listing order (shorter first, then byte
 * order: "99" < "100"), for the admin's pages (reg_list_page): a sorted
 * array of pointers to ext->number, 8 bytes an extension. Lock order:
 * a shard's lock, then this one (an extension is added and removed with
 * its shard locked); a page copies its numbers under this lock alone and
 * then visits their shards one at a time. Insert and delete move the tail
 * (memmove of 8 MB at a million: a millisecond, and only for admin
 * changes); the restore appends and sorts once at the end (rows arrive
 * in byte order, which is listing order when all numbers have the same
 * length, so usually nothing moves). */
struct ext_index {
    pthread_mutex_t lock;
    const char **v;
    size_t n, cap;
    bool sorted; /* false only during reg_load */
};

struct nc_entry {
    struct nc_entry *hnext;
    struct list_node fifo; /* oldest first */
    char nonce[REG_NONCE_LEN];
    uint32_t nc;
    int64_t ts;
    uint64_t seq; /* the nonce's issue counter */
};

/* Highest nonce-count seen per nonce, bounded. Entries leave in FIFO order
 * once their nonce has expired; if the table fills with live nonces the
 * oldest is evicted and low_water_seq rises to its issue counter: a nonce
 * not in the table that was issued before it may have been evicted, so it
 * is answered stale (one extra round trip) instead of risking a replay.
 * The counter, not the time, is compared so that a burst of more than
 * cap nonces within one second does not make fresh nonces stale. */
struct nonce_table {
    pthread_mutex_t lock;
    struct nc_entry **tab;
    size_t nbuckets;
    size_t count, cap;
    uint64_t low_water_seq;
    struct list_node fifo;
};

/* Failure counters per source (the brute-force throttle). The key is an
 * IPv4 address, or an IPv6 address cut to cfg.throttle_ipv6_prefix bits
 * (one host owns a whole /64); IPv4-mapped IPv6 counts as IPv4.
 *
 * Chained hash table keyed by the exact key, at most cap entries. An entry
 * is on one of two lists: idle (not blocked; most recently failed first)
 * or blocked (in order of blocked_until, which is the order of blocking as
 * auth_block_s is fixed). A new source takes a fresh entry while count <
 * cap, else the head of blocked if that block has ended, else the tail of
 * idle (least recently failed). A blocked entry is never taken before its
 * block ends, so no other address can lift a block. When every entry is
 * blocked, sources not in the table share the overflow entry: their
 * failures count together and, past the threshold, every source not in
 * the table is blocked (fail closed: unlimited guesses from fresh
 * addresses would otherwise be the prize for filling the table). O(1)
 * per operation under one mutex. */
struct throttle_key {
    uint8_t family; /* 4, 6, or 0 (other families share one entry) */
    uint8_t ip[16]; /* IPv6: bits past the prefix zeroed */
};

struct throttle_entry {
    struct throttle_entry *hnext;
    struct list_node node; /* in idle or blocked */
    struct throttle_key key;
    bool on_blocked; /* which list node is in */
    uint32_t fails;
    int64_t window_start;
    int64_t blocked_until;
};

struct throttle {
    pthread_mutex_t lock;
    struct throttle_entry **tab;
    size_t nbuckets, count, cap;
    uint64_t seed; /* random: bucket choice cannot be predicted */
    unsigned v6_prefix;
    struct list_node idle, blocked;
    struct throttle_entry overflow; /* in no list, no bucket */
};

struct reg {
    struct reg_cfg cfg;
    char *domain;
    char *realm;
    char *node; /* [cluster] node; "" = single node */
    struct store *store;
    const struct reg_msg_cfg *msg_cfg; /* until reg_load */
    struct reg_msg_table *messages;    /* reg_load; NULL without store */
    int64_t (*clock_ms)(void *arg);
    void *clock_arg;
    uint8_t secret[32]; /* nonce HMAC key, random per process */
    EVP_MD *sha256;     /* fetched once: HMAC() fetches per call (slow) */
    /* SHA-256 after the HMAC's key block (secret ^ ipad, secret ^ opad),
     * hashed once at init: a nonce MAC copies them instead of hashing
     * the two key blocks again (half its compressions). Read-only. */
    EVP_MD_CTX *mac_inner, *mac_outer;
    /* HA1 of a random password for a name that is no extension: unknown
     * users get the same digest work as known ones (reg_auth_check). */
    char dummy_ha1_md5[33], dummy_ha1_sha256[65];
    atomic_uint_fast64_t nonce_seq; /* makes every nonce unique */

    struct shard shards[REG_SHARDS];
    atomic_size_t n_config;       /* extensions with from_config */
    atomic_size_t n_placeholders; /* reg_load: bindings' extensions not
                                     restored (yet) */
    struct ext_index index;
    bool loading; /* reg_load: append to index, sort at the end */
    atomic_size_t expire_next; /* reg_expire_some's next shard */
    struct nonce_table nonces;
    struct throttle *throttle;
    reg_bind_cb *bind_cb;      /* set before workers start; read-only after */
    struct reg_push_opts push; /* pushdev.c; set before workers start */
    void *bind_arg;

    atomic_uint_fast64_t n_registers, n_ok, n_challenged, n_auth_failures,
        n_throttled, n_blocks, n_store_errors, n_digests, n_overflows;
    atomic_size_t n_extensions, n_bindings;
};

int64_t reg_now_ms(const struct reg *r);
static inline int64_t
reg_now_s(const struct reg *r)
{
    return reg_now_ms(r) / 1000;
}

/* reg.c: tables. Callers hold the shard lock for the ext they touch. */
struct shard *reg_shard_of(struct reg *r, struct slice number);
struct ext *reg_ext_find(struct shard *s, struct slice number);
/* A binding copied from tmpl for e (its strings packed, its user_agent
 * interned in e's shard). Under e's shard lock. */
struct binding *reg_binding_new(struct reg *r, struct ext *e,
                                const struct binding *tmpl);
void reg_binding_unlink_free(struct reg *r, struct ext *e, struct binding *b);
void reg_binding_link(struct reg *r, struct ext *e, struct binding *b);
void reg_binding_persist(struct reg *r, const struct ext *e,
                         const struct binding *b);
void reg_binding_forget(struct reg *r, const struct ext *e,
                        const struct binding *b);
/* [cluster] Is b routable at now? A binding of this node while its
 * expiry is ahead. A remote binding always: refreshes at its node are
 * silent (schema version 6), so its expiry here is the one of the last
 * change this node heard of; it lives until its node deletes the row (at
 * expiry there, reg_binding_expire; the delete notifies and
 * reg_remote_set drops it) or stops beating (reg_remote_drop_node). */
static inline bool
reg_binding_live(const struct binding *b, int64_t now)
{
    return b->holder[0] != '\0' || b->expires_at > now;
}
/* b's expiry as answered (a REGISTER's 200) and listed: expires_at; for a
 * remote binding past the expiry last heard, that expiry moved on by whole
 * periods (expires_at - updated_at, the phone's refresh interval at its
 * node) to the first one after now: the real one is not known here. */
int64_t reg_binding_expiry(const struct binding *b, int64_t now);
/* Unlink and free b, which expired (!reg_binding_live). In a cluster its
 * row is deleted too: that notifies, so the other nodes drop their remote
 * copy. One node: memory only, as before (the store drops expired rows at
 * the next start). Under e's shard lock. */
void reg_binding_expire(struct reg *r, struct ext *e, struct binding *b);
/* Copy b into c with its strings in arena a. 0 or -ENOMEM. */
int reg_contact_copy(struct arena *a, struct reg_contact *c,
                     const struct binding *b);
int reg_addr_format(const union reg_addr *a, char *out, size_t cap);
int reg_addr_parse(const char *s, union reg_addr *out);

/* pushdev.c: the REGISTER side of push devices (see reg_set_push). */
struct sip_uri;
struct pushdev;
struct reg_push_state {
    bool any;                /* some contact named pn-provider */
    bool device;             /* dev is to be stored (pn-prid given) */
    bool disabled;           /* push disabled for this extension */
    const char *fc_provider; /* Feature-Caps to add: "apns", "fcm", "*"
                                (every served one), or NULL */
    struct pushdev *dev;     /* in the request arena */
};
/* Check one contact URI of the REGISTER. Returns 0, or 400/555 with the
 * reason in *why (nothing stored yet). */
int reg_push_contact(struct reg *r, struct slice ext, const struct sip_uri *u,
                     struct slice instance, struct arena *a,
                     struct reg_push_state *ps, const char **why);
/* After the bindings were updated: append Feature-Caps (or the Warning
 * of an extension without push) to hdrs. Returns 0 or -EMSGSIZE. */
int reg_push_headers(struct reg *r, const struct reg_push_state *ps,
                     struct buf *hdrs);
/* Then store the device (or, star: remove the extension's devices).
 * cb NULL: wait for the commit (pushdev_put); returns 0 or 500 (device
 * not stored). cb set: never waits; returns 0 (nothing to commit), 500,
 * or REG_PENDING and cb(rc, arg) reports the commit (pushdev_put_async:
 * exactly once, maybe before this returns). */
int reg_push_store(struct reg *r, struct slice ext, bool star,
                   const struct reg_push_state *ps, reg_commit_cb *cb,
                   void *arg);

/* reg_auth.c */
int reg_auth_init(struct reg *r);
void reg_auth_fini(struct reg *r);
/* Write a fresh nonce (REG_NONCE_LEN chars + NUL) into out. */
void reg_nonce_make(struct reg *r, int64_t now_s, char *out);
enum nonce_state {
    NONCE_OK,
    NONCE_STALE,  /* our nonce but too old, or possibly evicted */
    NONCE_BAD,    /* not ours (bad MAC / wrong shape / from a restart) */
    NONCE_REPLAY, /* nc not above the highest seen */
};
/* Check nonce authenticity and age, then record nc (8 hex) against it. */
enum nonce_state reg_nonce_check(struct reg *r, struct slice nonce,
                                 struct slice nc, int64_t now_s);
/* Is the source blocked (answer 403 without looking further)? A source
 * not in the table is blocked while the overflow entry is. */
bool reg_throttle_blocked(struct reg *r, const union reg_addr *a,
                          int64_t now_s);
/* Count a failure; returns true if it just blocked the source. *fails (may
 * be NULL) gets the source's failures in the current window. */
bool reg_throttle_fail(struct reg *r, const union reg_addr *a, int64_t now_s,
                       uint32_t *fails);

/* Logging caused by remote input is rate-limited (style.md §8): at most
 * 20 lines per second from this room; the counters keep the totals. */
bool reg_log_allowed(int64_t now_s);

/* ---- digest authentication: one path for REGISTER and the proxy ------- */

enum reg_auth_kind {
    /* REGISTER (RFC 3261 §22.4): Authorization; 401 + WWW-Authenticate. */
    REG_AUTH_REGISTER,
    /* A request the proxy serves (§22.3): Proxy-Authorization; 407 +
     * Proxy-Authenticate. */
    REG_AUTH_PROXY,
};

struct reg_auth_req {
    enum reg_auth_kind kind;
    const struct sip_msg *m;
    const union reg_addr *addr;   /* source: the throttle's key, and logs */
    enum reg_transport transport; /* for logs */
    int64_t now_s;
    /* REGISTER: the To user; credentials for another username get 403
     * (counted as a failure). NULL ptr: any username (proxy). */
    struct slice user;
};

/*
 * Check the credentials of q->m for our realm. The caller has already
 * answered a blocked source (reg_throttle_blocked). Returns 0 with the
 * authenticated extension in ext (NUL-terminated; cap >= 2), or the status
 * to answer with its reason phrase in *reason:
 *  401/407: no credentials for our realm, an algorithm we did not offer,
 *           a wrong response or unknown extension (counted), or a right
 *           response with an unusable nonce (stale=true); the challenge
 *           lines (CRLF-ended, one per offered algorithm, same nonce) are
 *           appended to hdrs;
 *  400: malformed credentials (no qop=auth/nc/cnonce, username too long);
 *  403: username is not q->user (counted), the failure just blocked the
 *       source, or the extension is disabled (right password);
 *  404: unknown extension with unknown_extension = 404 (REGISTER only: to
 *       an INVITE a 404 would mean "no such callee");
 *  500: hdrs is full.
 * Unknown extensions cost the same digest work as known ones (against a
 * dummy HA1), so the time of the answer does not tell them apart. Any
 * worker thread.
 */
int reg_auth_check(struct reg *r, const struct reg_auth_req *q,
                   struct buf *hdrs, const char **reason, char *ext,
                   size_t cap);

#endif
