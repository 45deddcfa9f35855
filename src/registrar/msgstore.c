/*
 * registrar/msgstore: index of stored chat messages; see msgstore.h.
 *
 * Layout: a hash of extensions (fixed bucket array, chains), each with an
 * array of entries in arrival order, (received_us, id) (msgstore.h,
 * "Order"). Entries leave mostly from the front
 * (delivery, expiry, cap), and an extension holds at most
 * max_per_extension (1,000) of 40 bytes, so removal is a memmove of at
 * most 40 KB: simpler than a ring and far below the cost of the SIP
 * transaction around it. Extensions without messages are freed, so the
 * table's size follows the number of extensions with messages waiting.
 *
 * Expiry: next_due_s is the earliest expires_at in the table (a lower
 * bound: a removed entry may leave it early), so the once-a-second tick
 * is a comparison until something is due, then one walk that recomputes
 * it.
 */
#include "registrar/msgstore.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/log.h"
#include "base/xmalloc.h"

#define NBUCKETS 1024
/* Ids this node removed lately (delivered, expired, dropped): a refresh
 * whose read still saw the row (its delete not yet committed) must not
 * bring it back. */
#define GONE_RING 1024

struct ent {
    uint64_t id;
    int64_t received_us; /* arrival order, with id (ent_before) */
    uint32_t body_len;
    bool durable;        /* its commit succeeded */
    int64_t received_at; /* unix s */
    int64_t expires_at;  /* unix s */
    int64_t claimed_ms;  /* 0, or when reg_msg_claim gave it out */
    uint64_t durable_seq; /* t->durable_seq when its commit succeeded */
};

struct ext {
    struct ext *next; /* bucket chain */
    char *number;
    struct ent *ents;
    size_t count, cap;
};

struct reg_msg_table {
    struct store *store;
    unsigned ttl_s, max_per_ext, max_bytes;
    struct reg_msg_cfg types; /* only content_types: an owned copy */
    int64_t (*clock_ms)(void *arg);
    void *clock_arg;

    pthread_mutex_t lock;
    pthread_cond_t idle; /* inflight reached 0 */
    unsigned inflight;   /* callbacks the store still owes us */
    uint64_t next_id;
    /* Ids from the store's shared sequence (postgresql: several nodes
     * store into one table): next_id .. id_end - 1 is this node's block,
     * spare_first the next one (0: none yet; reg_msg_expire fetches it). */
    bool shared_ids;
    uint64_t id_end, spare_first;
    uint64_t durable_seq; /* counts successful commits (refresh races) */
    /* The highest received_us this node gave or saw (load, refresh): the
     * next put gets more, so a message stored here after another one was
     * known here, from any node, is ordered after it. */
    int64_t last_us;
    uint64_t gone[GONE_RING];
    unsigned gone_next;
    int64_t next_due_s; /* INT64_MAX: nothing to expire */
    struct ext *buckets[NBUCKETS];
    struct reg_msg_stats stats; /* waiting/bytes kept up to date */
};

/* ---- pure helpers ----------------------------------------------------- */

/* The media type of a Content-Type value: leading/trailing blanks and the
 * parameters cut off. */
static size_t
media_type(const char *ct, const char **start)
{
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, ";");
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    *start = ct;
    return n;
}

bool
reg_msg_type_allowed(const struct reg_msg_cfg *cfg, const char *content_type)
{
    const char *mt;
    size_t n;

    if (!cfg || !content_type)
        return false;
    n = media_type(content_type, &mt);
    if (n == 0)
        return false;
    for (size_t i = 0; i < cfg->content_types.count; i++) {
        const char *a = cfg->content_types.items[i];
        if (strlen(a) == n && strncasecmp(a, mt, n) == 0)
            return true;
    }
    return false;
}

bool
reg_msg_is_composing(const char *content_type)
{
    static const char iscomposing[] = "application/im-iscomposing+xml";
    const char *mt;
    size_t n;

    if (!content_type)
        return false;
    n = media_type(content_type, &mt);
    return n == sizeof(iscomposing) - 1 && strncasecmp(mt, iscomposing, n) == 0;
}

/* ---- table ------------------------------------------------------------ */

static int64_t
now_us(const struct reg_msg_table *t)
{
    struct timespec ts;

    if (t->clock_ms)
        return t->clock_ms(t->clock_arg) * 1000;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t
now_ms(const struct reg_msg_table *t)
{
    return now_us(t) / 1000;
}

/* Arrival order: a was received before b. The same order as the store's
 * loads and cap, (received_us, id). */
static bool
ent_before(const struct ent *a, const struct ent *b)
{
    return a->received_us != b->received_us ? a->received_us < b->received_us
                                            : a->id < b->id;
}

/* A received_us met (loaded, or another node's): the next put goes after
 * it. Under t->lock (or before the table is shared). */
static void
saw_us(struct reg_msg_table *t, int64_t us)
{
    if (us > t->last_us)
        t->last_us = us;
}

static unsigned
hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % NBUCKETS;
}

static struct ext *
ext_find(struct reg_msg_table *t, const char *number, bool create)
{
    unsigned b = hash(number);

    for (struct ext *e = t->buckets[b]; e; e = e->next)
        if (strcmp(e->number, number) == 0)
            return e;
    if (!create)
        return NULL;
    struct ext *e = xcalloc(1, sizeof(*e));
    e->number = xstrdup(number);
    e->next = t->buckets[b];
    t->buckets[b] = e;
    return e;
}

static void
ext_free_if_empty(struct reg_msg_table *t, struct ext *e)
{
    if (e->count > 0)
        return;
    struct ext **pp = &t->buckets[hash(e->number)];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    free(e->ents);
    free(e->number);
    free(e);
}

/* Remove entry k of e (the caller frees e if it became empty). */
static void
ent_remove(struct reg_msg_table *t, struct ext *e, size_t k)
{
    t->stats.waiting--;
    t->stats.bytes -= e->ents[k].body_len;
    t->gone[t->gone_next++ % GONE_RING] = e->ents[k].id;
    memmove(&e->ents[k], &e->ents[k + 1],
            (e->count - k - 1) * sizeof(e->ents[0]));
    e->count--;
}

static void
ent_append(struct reg_msg_table *t, struct ext *e, const struct ent *n)
{
    if (e->count == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 4;
        e->ents = xrealloc(e->ents, e->cap * sizeof(e->ents[0]));
    }
    /* In arrival order: a message of another node (reg_msg_refresh) may
     * have arrived before this node's last ones, whatever its id (ids
     * come in blocks per node). */
    size_t k = e->count++;
    while (k > 0 && ent_before(n, &e->ents[k - 1])) {
        e->ents[k] = e->ents[k - 1];
        k--;
    }
    e->ents[k] = *n;
    t->stats.waiting++;
    t->stats.bytes += n->body_len;
    if (n->expires_at < t->next_due_s)
        t->next_due_s = n->expires_at;
}

/* Find id among number's messages: its extension and index. */
static struct ext *
find_id(struct reg_msg_table *t, const char *number, uint64_t id, size_t *k)
{
    struct ext *e = ext_find(t, number, false);

    for (size_t i = 0; e && i < e->count; i++) {
        if (e->ents[i].id == id) {
            *k = i;
            return e;
        }
    }
    return NULL;
}

static int
load_one(const struct store_msg *m, void *arg)
{
    struct reg_msg_table *t = arg;
    struct ext *e = ext_find(t, m->ext, true);
    struct ent n = {
        .id = m->id,
        .received_us = m->received_us,
        .body_len = (uint32_t)m->body_len,
        .durable = true,
        .received_at = m->received_at,
        .expires_at = m->expires_at,
    };

    ent_append(t, e, &n);
    saw_us(t, m->received_us);
    if (!t->shared_ids && m->id >= t->next_id)
        t->next_id = m->id + 1;
    return 0;
}

int
reg_msg_open(const struct reg_msg_opts *o, struct reg_msg_table **out,
             char *err, size_t errlen)
{
    const struct reg_msg_cfg *c = o->cfg;
    uint64_t last = 0;

    if (!o->store) {
        snprintf(err, errlen, "messages: a store is required");
        return -EINVAL;
    }
    struct reg_msg_table *t = xcalloc(1, sizeof(*t));
    t->store = o->store;
    t->ttl_s = (c && c->ttl_days ? c->ttl_days : REG_MSG_TTL_DAYS) * 86400u;
    t->max_per_ext = c && c->max_per_extension ? c->max_per_extension
                                               : REG_MSG_MAX_PER_EXTENSION;
    t->max_bytes = c && c->max_bytes ? c->max_bytes : REG_MSG_MAX_BYTES;
    t->clock_ms = o->clock_ms;
    t->clock_arg = o->clock_arg;
    static const char *const def_types[] = {"text/plain", "message/cpim",
                                            "application/im-iscomposing+xml"};
    size_t ntypes = c ? c->content_types.count : 3;
    t->types.content_types.count = ntypes;
    t->types.content_types.items = xcalloc(ntypes + 1, sizeof(char *));
    for (size_t i = 0; i < ntypes; i++)
        t->types.content_types.items[i] =
            xstrdup(c ? c->content_types.items[i] : def_types[i]);
    t->next_due_s = INT64_MAX;
    t->next_id = 1;
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->idle, NULL);

    uint64_t first = 0;
    int rc = store_msg_id_block(t->store, &first);
    if (rc == 0) {
        t->shared_ids = true;
        t->next_id = first;
        t->id_end = first + STORE_MSG_ID_BLOCK;
    } else if (rc == -ENOTSUP) {
        rc = store_msg_last_id(t->store, &last);
    }
    if (rc == 0)
        rc = store_msg_load(t->store, NULL, now_ms(t) / 1000, false, load_one,
                            t);
    if (rc < 0) {
        snprintf(err, errlen, "messages: cannot load the stored messages");
        reg_msg_close(t);
        return rc;
    }
    if (!t->shared_ids && last >= t->next_id)
        t->next_id = last + 1;
    /* An extension loaded over the cap (the cap was lowered): keep the
     * newest, as reg_msg_put would. */
    size_t capped = 0;
    for (unsigned b = 0; b < NBUCKETS; b++) {
        for (struct ext *e = t->buckets[b]; e; e = e->next) {
            while (e->count > t->max_per_ext) {
                store_msg_del(t->store, e->ents[0].id);
                ent_remove(t, e, 0);
                capped++;
            }
        }
    }
    t->stats.dropped += capped;
    if (t->stats.waiting)
        log_notice("registrar",
                   "stored messages restored: %llu (%llu "
                   "bytes), next id %llu",
                   (unsigned long long)t->stats.waiting,
                   (unsigned long long)t->stats.bytes,
                   (unsigned long long)t->next_id);
    *out = t;
    return 0;
}

void
reg_msg_close(struct reg_msg_table *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    while (t->inflight > 0)
        pthread_cond_wait(&t->idle, &t->lock);
    pthread_mutex_unlock(&t->lock);
    for (unsigned b = 0; b < NBUCKETS; b++) {
        struct ext *e = t->buckets[b];
        while (e) {
            struct ext *next = e->next;
            free(e->ents);
            free(e->number);
            free(e);
            e = next;
        }
    }
    for (size_t i = 0; i < t->types.content_types.count; i++)
        free(t->types.content_types.items[i]);
    free(t->types.content_types.items);
    pthread_cond_destroy(&t->idle);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* A callback the store owed us has run: let reg_msg_close go on. Under
 * t->lock. */
static void
inflight_done(struct reg_msg_table *t)
{
    if (--t->inflight == 0)
        pthread_cond_broadcast(&t->idle);
}

int64_t
reg_msg_ttl_s(const struct reg_msg_table *t)
{
    return (int64_t)t->ttl_s;
}

size_t
reg_msg_max_bytes(const struct reg_msg_table *t)
{
    return t->max_bytes;
}

bool
reg_msg_content_type_ok(const struct reg_msg_table *t, const char *content_type)
{
    return reg_msg_type_allowed(&t->types, content_type);
}

/* ---- ids ------------------------------------------------------------- */

/* The next id into *id, or false when the shared block and its spare are
 * used up. Under t->lock. */
static bool
take_id(struct reg_msg_table *t, uint64_t *id)
{
    if (t->shared_ids && t->next_id == t->id_end) {
        if (!t->spare_first)
            return false;
        t->next_id = t->spare_first;
        t->id_end = t->spare_first + STORE_MSG_ID_BLOCK;
        t->spare_first = 0;
    }
    *id = t->next_id++;
    return true;
}

/* A block fetched from the store: the current one when that is used up,
 * else the spare (a second block fetched meanwhile is left unused: ids
 * may have gaps). Under t->lock. */
static void
add_block(struct reg_msg_table *t, uint64_t first)
{
    if (t->next_id == t->id_end) {
        t->next_id = first;
        t->id_end = first + STORE_MSG_ID_BLOCK;
    } else if (!t->spare_first) {
        t->spare_first = first;
    }
}

/* The tick: fetch the spare block ahead of need, so that reg_msg_put
 * does not read from the store. */
static void
refill_ids(struct reg_msg_table *t)
{
    uint64_t first;

    pthread_mutex_lock(&t->lock);
    bool need = t->shared_ids && !t->spare_first;
    pthread_mutex_unlock(&t->lock);
    if (!need)
        return;
    int rc = store_msg_id_block(t->store, &first);
    if (rc < 0) {
        log_warn("registrar", "cannot reserve message ids: %s", strerror(-rc));
        return;
    }
    pthread_mutex_lock(&t->lock);
    add_block(t, first);
    pthread_mutex_unlock(&t->lock);
}

/* ---- put -------------------------------------------------------------- */

struct put_ctx {
    struct reg_msg_table *t;
    char *ext;
    uint64_t id;
    reg_msg_put_cb *cb;
    void *arg;
};

static void
on_put_commit(int rc, void *arg)
{
    struct put_ctx *p = arg;
    struct reg_msg_table *t = p->t;
    size_t k;

    pthread_mutex_lock(&t->lock);
    struct ext *e = find_id(t, p->ext, p->id, &k);
    if (rc == 0) {
        t->stats.stored++;
        if (e) {
            e->ents[k].durable = true;
            e->ents[k].durable_seq = ++t->durable_seq;
        }
    } else {
        /* Not on disk (rolled back or refused): not in memory either, and
         * a delete in case a refused-looking write still lands. The
         * sender gets 500 and may send it again. */
        t->stats.failed++;
        if (e) {
            ent_remove(t, e, k);
            ext_free_if_empty(t, e);
        }
        store_msg_del(t->store, p->id);
    }
    /* The user's callback outside the lock: it may claim at once. The
     * table outlives it: reg_msg_close waits for inflight, which counts
     * this call until it returns. */
    pthread_mutex_unlock(&t->lock);
    p->cb(rc, p->id, p->arg);
    pthread_mutex_lock(&t->lock);
    inflight_done(t);
    pthread_mutex_unlock(&t->lock);
    free(p->ext);
    free(p);
}

int
reg_msg_put(struct reg_msg_table *t, const struct store_msg *m,
            reg_msg_put_cb *cb, void *arg)
{
    if (!m->ext || !m->ext[0])
        return -EINVAL;
    if (m->body_len > t->max_bytes)
        return -EMSGSIZE;

    struct put_ctx *p = xcalloc(1, sizeof(*p));
    p->t = t;
    p->ext = xstrdup(m->ext);
    p->cb = cb;
    p->arg = arg;

    int64_t now = now_us(t), now_s = now / 1000000;
    struct store_msg row = *m;
    row.received_at = now_s;
    row.expires_at = now_s + t->ttl_s;

    pthread_mutex_lock(&t->lock);
    while (!take_id(t, &p->id)) {
        /* This node's ids ran out before the tick fetched the next block
         * (over STORE_MSG_ID_BLOCK messages in a second): fetch it here,
         * a blocking read, outside the lock. */
        uint64_t first;
        pthread_mutex_unlock(&t->lock);
        int brc = store_msg_id_block(t->store, &first);
        if (brc < 0) {
            log_warn("registrar", "no message id: %s", strerror(-brc));
            cb(-EIO, 0, arg);
            free(p->ext);
            free(p);
            return 0;
        }
        pthread_mutex_lock(&t->lock);
        add_block(t, first);
    }
    row.id = p->id;
    /* Taken with the id, under the lock: on this node received_us
     * increases with the id, even when the clock steps back, so arrival
     * order here is the order reg_msg_put was called in. */
    row.received_us = now > t->last_us ? now : t->last_us + 1;
    t->last_us = row.received_us;
    struct store_mark mark = store_mark(t->store);
    /* Queued under the lock: the store sees puts in id order. The store
     * applies the same cap in the same transaction. */
    int rc = store_msg_put(t->store, &row, t->max_per_ext);
    struct ext *e = ext_find(t, m->ext, true);
    struct ent n = {
        .id = row.id,
        .received_us = row.received_us,
        .body_len = (uint32_t)row.body_len,
        .received_at = row.received_at,
        .expires_at = row.expires_at,
    };
    ent_append(t, e, &n);
    while (e->count > t->max_per_ext) {
        ent_remove(t, e, 0);
        t->stats.dropped++;
    }
    t->inflight++;
    pthread_mutex_unlock(&t->lock);
    (void)rc; /* a refused write makes the commit report -ENOSPC */
    store_commit_async(t->store, mark, on_put_commit, p);
    return 0;
}

/* ---- lookups ---------------------------------------------------------- */

size_t
reg_msg_count(struct reg_msg_table *t, const char *ext)
{
    size_t n = 0;

    pthread_mutex_lock(&t->lock);
    struct ext *e = ext_find(t, ext, false);
    for (size_t i = 0; e && i < e->count; i++)
        n += e->ents[i].durable;
    pthread_mutex_unlock(&t->lock);
    return n;
}

size_t
reg_msg_list_ext(struct reg_msg_table *t, const char *ext,
                 struct reg_msg_info *out, size_t cap)
{
    size_t n = 0;

    pthread_mutex_lock(&t->lock);
    struct ext *e = ext_find(t, ext, false);
    for (size_t i = 0; e && i < e->count; i++) {
        const struct ent *x = &e->ents[i];
        if (!x->durable)
            continue;
        if (n < cap)
            out[n] = (struct reg_msg_info){
                .id = x->id,
                .body_len = x->body_len,
                .received_at = x->received_at,
                .expires_at = x->expires_at,
                .claimed = x->claimed_ms != 0,
            };
        n++;
    }
    pthread_mutex_unlock(&t->lock);
    return n;
}

/* ---- delivery --------------------------------------------------------- */

struct claim_ctx {
    struct reg_msg_table *t;
    char *ext;
    uint64_t id;
    reg_msg_claim_cb *cb;
    void *arg;
};

static void
on_claim_read(int rc, const struct store_msg *m, void *arg)
{
    struct claim_ctx *c = arg;
    struct reg_msg_table *t = c->t;
    size_t k;

    pthread_mutex_lock(&t->lock);
    struct ext *e = find_id(t, c->ext, c->id, &k);
    if (rc == -ENOENT && e) {
        /* The row is gone (purged, capped, or removed by hand): so is
         * the message. */
        ent_remove(t, e, k);
        ext_free_if_empty(t, e);
    } else if (rc < 0 && e) {
        e->ents[k].claimed_ms = 0; /* stays first, claimed again later */
    }
    pthread_mutex_unlock(&t->lock);
    c->cb(rc, m, c->arg);
    pthread_mutex_lock(&t->lock);
    inflight_done(t);
    pthread_mutex_unlock(&t->lock);
    free(c->ext);
    free(c);
}

int
reg_msg_claim(struct reg_msg_table *t, const char *ext, reg_msg_claim_cb *cb,
              void *arg)
{
    int64_t now = now_ms(t);

    pthread_mutex_lock(&t->lock);
    struct ext *e = ext_find(t, ext, false);
    /* Expired heads are dropped here too, not only by the tick. */
    while (e && e->count > 0 && e->ents[0].expires_at <= now / 1000 &&
           e->ents[0].durable) {
        store_msg_del(t->store, e->ents[0].id);
        ent_remove(t, e, 0);
        t->stats.expired++;
    }
    if (!e || e->count == 0) {
        if (e)
            ext_free_if_empty(t, e);
        pthread_mutex_unlock(&t->lock);
        return -ENOENT;
    }
    struct ent *h = &e->ents[0];
    /* One delivery per extension at a time: the one out need not be the
     * head any more (another node's message that arrived before it was
     * learnt of meanwhile, or the head dropped by the cap). */
    bool out = !h->durable;
    for (size_t i = 0; i < e->count && !out; i++)
        out = e->ents[i].claimed_ms != 0 &&
              now - e->ents[i].claimed_ms < REG_MSG_CLAIM_TIMEOUT_MS;
    if (out) {
        pthread_mutex_unlock(&t->lock);
        return -EBUSY;
    }
    h->claimed_ms = now ? now : 1;
    struct claim_ctx *c = xcalloc(1, sizeof(*c));
    c->t = t;
    c->ext = xstrdup(ext);
    c->id = h->id;
    c->cb = cb;
    c->arg = arg;
    t->inflight++;
    pthread_mutex_unlock(&t->lock);
    store_msg_get_async(t->store, c->id, on_claim_read, c);
    return 0;
}

void
reg_msg_done(struct reg_msg_table *t, const char *ext, uint64_t id,
             bool delivered)
{
    size_t k;

    pthread_mutex_lock(&t->lock);
    struct ext *e = find_id(t, ext, id, &k);
    if (e && delivered) {
        ent_remove(t, e, k);
        ext_free_if_empty(t, e);
        t->stats.delivered++;
        store_msg_del(t->store, id);
    } else if (e) {
        e->ents[k].claimed_ms = 0;
    } else if (delivered) {
        /* Dropped meanwhile (cap, expiry, extension removed): delivered
         * all the same, and its row must not stay behind. */
        t->stats.delivered++;
        store_msg_del(t->store, id);
    }
    pthread_mutex_unlock(&t->lock);
}

size_t
reg_msg_remove_ext(struct reg_msg_table *t, const char *ext)
{
    size_t n = 0;

    pthread_mutex_lock(&t->lock);
    struct ext *e = ext_find(t, ext, false);
    if (e) {
        n = e->count;
        while (e->count)
            ent_remove(t, e, e->count - 1);
        ext_free_if_empty(t, e);
    }
    store_msg_del_ext(t->store, ext);
    pthread_mutex_unlock(&t->lock);
    return n;
}

size_t
reg_msg_expire(struct reg_msg_table *t)
{
    int64_t now_s = now_ms(t) / 1000;
    size_t n = 0;

    refill_ids(t);
    pthread_mutex_lock(&t->lock);
    if (now_s < t->next_due_s) {
        pthread_mutex_unlock(&t->lock);
        return 0;
    }
    int64_t next = INT64_MAX;
    for (unsigned b = 0; b < NBUCKETS; b++) {
        struct ext *e = t->buckets[b];
        while (e) {
            struct ext *after = e->next;
            for (size_t i = 0; i < e->count;) {
                /* An entry still being committed is left to its commit:
                 * it expires at the next tick. */
                if (e->ents[i].expires_at <= now_s && e->ents[i].durable) {
                    ent_remove(t, e, i);
                    n++;
                    continue;
                }
                if (e->ents[i].expires_at < next)
                    next = e->ents[i].expires_at;
                i++;
            }
            ext_free_if_empty(t, e);
            e = after;
        }
    }
    t->next_due_s = next;
    t->stats.expired += n;
    if (n)
        store_msg_purge(t->store, now_s);
    pthread_mutex_unlock(&t->lock);
    if (n)
        log_info("registrar", "stored messages expired: %zu", n);
    return n;
}

void
reg_msg_count_pushed(struct reg_msg_table *t, unsigned n)
{
    pthread_mutex_lock(&t->lock);
    t->stats.pushed += n;
    pthread_mutex_unlock(&t->lock);
}

void
reg_msg_get_stats(struct reg_msg_table *t, struct reg_msg_stats *out)
{
    pthread_mutex_lock(&t->lock);
    *out = t->stats;
    pthread_mutex_unlock(&t->lock);
}

void
reg_msg_list(struct reg_msg_table *t, reg_msg_ext_cb *cb, void *arg)
{
    pthread_mutex_lock(&t->lock);
    for (unsigned b = 0; b < NBUCKETS; b++) {
        for (struct ext *e = t->buckets[b]; e; e = e->next) {
            struct reg_msg_ext_info info = {.ext = e->number,
                                            .oldest_received_at = INT64_MAX};
            for (size_t i = 0; i < e->count; i++) {
                if (!e->ents[i].durable)
                    continue;
                info.count++;
                info.bytes += e->ents[i].body_len;
                if (e->ents[i].received_at < info.oldest_received_at)
                    info.oldest_received_at = e->ents[i].received_at;
            }
            if (info.count)
                cb(&info, arg);
        }
    }
    pthread_mutex_unlock(&t->lock);
}

/* ---- refresh (another node wrote) ------------------------------------- */

struct row {
    char *ext;
    uint64_t id;
    int64_t received_us;
    uint32_t body_len;
    int64_t received_at, expires_at;
};

struct rowset {
    struct row *v;
    size_t n, cap;
};

static int
take_row(const struct store_msg *m, void *arg)
{
    struct rowset *rs = arg;

    if (rs->n == rs->cap) {
        rs->cap = rs->cap ? rs->cap * 2 : 16;
        rs->v = xrealloc(rs->v, rs->cap * sizeof(rs->v[0]));
    }
    rs->v[rs->n++] = (struct row){
        .ext = xstrdup(m->ext),
        .id = m->id,
        .received_us = m->received_us,
        .body_len = (uint32_t)m->body_len,
        .received_at = m->received_at,
        .expires_at = m->expires_at,
    };
    return 0;
}

static int
cmp_ent(const void *a, const void *b)
{
    return ent_before(a, b) ? -1 : ent_before(b, a);
}

static int
cmp_row_ext(const void *a, const void *b)
{
    return strcmp(((const struct row *)a)->ext, ((const struct row *)b)->ext);
}

static bool
rows_have(const struct row *r, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++) /* n: one extension's, at most the cap */
        if (r[i].id == id)
            return true;
    return false;
}

static bool
recently_gone(const struct reg_msg_table *t, uint64_t id)
{
    for (unsigned i = 0; i < GONE_RING; i++)
        if (t->gone[i] == id)
            return true;
    return false;
}

/* ext's entries against its rows r[0..n) (read after mark): keep what is
 * being committed or delivered, or became durable after the read; drop
 * the other durable entries whose row is gone; add the rows this node
 * does not know. Under t->lock. Returns how many were added. */
static size_t
merge_ext(struct reg_msg_table *t, const char *number, const struct row *r,
          size_t n, uint64_t mark)
{
    struct ext *e = ext_find(t, number, n > 0);
    size_t added = 0, k = 0;

    if (!e)
        return 0;
    size_t cap = e->count + n + 1;
    struct ent *v = xcalloc(cap, sizeof(*v));
    for (size_t i = 0; i < e->count; i++) {
        const struct ent *x = &e->ents[i];
        if (!x->durable || x->claimed_ms || x->durable_seq > mark ||
            rows_have(r, n, x->id)) {
            v[k++] = *x;
        } else {
            t->stats.waiting--;
            t->stats.bytes -= x->body_len;
        }
    }
    size_t kept = k;
    for (size_t j = 0; j < n; j++) {
        bool known = false;
        saw_us(t, r[j].received_us);
        for (size_t i = 0; i < kept && !known; i++)
            known = v[i].id == r[j].id;
        if (known || recently_gone(t, r[j].id))
            continue;
        v[k++] = (struct ent){
            .id = r[j].id,
            .received_us = r[j].received_us,
            .body_len = r[j].body_len,
            .durable = true,
            .received_at = r[j].received_at,
            .expires_at = r[j].expires_at,
        };
        t->stats.waiting++;
        t->stats.bytes += r[j].body_len;
        if (r[j].expires_at < t->next_due_s)
            t->next_due_s = r[j].expires_at;
        added++;
    }
    qsort(v, k, sizeof(v[0]), cmp_ent);
    free(e->ents);
    e->ents = v;
    e->count = k;
    e->cap = cap;
    ext_free_if_empty(t, e);
    return added;
}

int
reg_msg_refresh(struct reg_msg_table *t, const char *ext)
{
    struct rowset rs = {0};

    pthread_mutex_lock(&t->lock);
    uint64_t mark = t->durable_seq;
    pthread_mutex_unlock(&t->lock);
    int rc = store_msg_load(t->store, ext, now_ms(t) / 1000, false, take_row,
                            &rs);
    if (rc < 0) {
        for (size_t i = 0; i < rs.n; i++)
            free(rs.v[i].ext);
        free(rs.v);
        return rc;
    }
    size_t added = 0;
    pthread_mutex_lock(&t->lock);
    if (ext) {
        added = merge_ext(t, ext, rs.v, rs.n, mark);
    } else {
        /* Every extension: the rows come ordered by extension; then the
         * extensions this node knows that have no row any more. */
        for (size_t i = 0; i < rs.n;) {
            size_t j = i;
            while (j < rs.n && strcmp(rs.v[j].ext, rs.v[i].ext) == 0)
                j++;
            added += merge_ext(t, rs.v[i].ext, &rs.v[i], j - i, mark);
            i = j;
        }
        for (unsigned b = 0; b < NBUCKETS; b++) {
            struct ext *e = t->buckets[b];
            while (e) {
                struct ext *after = e->next;
                struct row key = {.ext = e->number};
                if (!bsearch(&key, rs.v, rs.n, sizeof(rs.v[0]), cmp_row_ext))
                    (void)merge_ext(t, e->number, NULL, 0, mark);
                e = after;
            }
        }
    }
    pthread_mutex_unlock(&t->lock);
    for (size_t i = 0; i < rs.n; i++)
        free(rs.v[i].ext);
    free(rs.v);
    return (int)added;
}
