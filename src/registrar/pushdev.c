/*
 * registrar/pushdev: the push-device table; see pushdev.h for why it is
 * durable before the 200 OK and how devices are matched.
 *
 * Memory: every device is one node on two intrusive lists, the hash chain
 * of its extension and the hash chain of its token (a token belongs to one
 * app installation, so it can be in one extension only: registering it for
 * another extension moves it). Both tables double when there are more
 * devices than buckets (from 4096), so chains stay about one long at a
 * million devices; a fixed 4096 made every REGISTER walk ~250 nodes there
 * (bench/million-bench.py). A node is ~200 bytes for an APNs device
 * (struct node).
 *
 * Writes: a put or removal changes memory and queues its store writes
 * under the table mutex (the store's queue lock nests inside it; the
 * store never calls back), then drops the mutex and, when the change must
 * be durable before it is acknowledged, waits in store_commit (the
 * blocking calls, admin thread) or asks for store_commit_async (the _async
 * calls, SIP workers: the writer's callback clears unsynced and reports).
 * So the mutex is held for microseconds, never for a disk write or a
 * SQLite lock, and INVITEs looking devices up are never held behind a
 * REGISTER.
 * A device whose commit failed stays marked unsynced (node.unsynced) so
 * that the next REGISTER writes it again instead of taking the refresh
 * shortcut. Refreshes that change nothing only touch last_seen in memory
 * (persisted at most hourly).
 */
#include "registrar/pushdev.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/list.h"
#include "base/log.h"
#include "base/xmalloc.h"
#include "registrar/reg_int.h"
#include "sip/uri.h"
#include "store/store.h"

#define NBUCKETS_MIN 4096
#define DEFAULT_IDLE_S (30u * 86400u)
/* last_seen is rewritten to disk only when the stored one is older than
 * this: idle expiry counts in days, so an hour of drift is harmless. */
#define LAST_SEEN_PERSIST_S 3600

/* A device in memory: its strings packed after the node, each as long as
 * it is (ext, provider, prid, instance, NUL-terminated, in that order),
 * and its pn-param interned (an app's topic or project id: shared by all
 * its devices): ~200 bytes for an APNs device instead of the ~640 of a
 * struct pushdev, whose arrays are sized for the longest values
 * (bench/million-bench.py). Copied out as a struct pushdev (node_get). */
struct node {
    struct list_node by_ext;
    struct list_node by_tok;
    uint64_t gen;  /* which put made it (t->gen), to clear unsynced */
    int64_t created_at;
    int64_t last_seen;
    const char *param; /* in t->params */
    bool unsynced;     /* its commit has not succeeded (yet) */
    uint8_t o_prov;    /* offsets in s[] (ext is at 0) */
    uint16_t o_prid, o_inst;
    char s[];
};

static inline const char *
nd_ext(const struct node *n)
{
    return n->s;
}

static inline const char *
nd_prov(const struct node *n)
{
    return n->s + n->o_prov;
}

static inline const char *
nd_prid(const struct node *n)
{
    return n->s + n->o_prid;
}

static inline const char *
nd_param(const struct node *n)
{
    return n->param;
}

static inline const char *
nd_inst(const struct node *n)
{
    return n->s + n->o_inst;
}

/* Copy n out as a struct pushdev (only the strings' bytes are written). */
static void
node_get(const struct node *n, struct pushdev *d)
{
    memcpy(d->ext, nd_ext(n), n->o_prov);
    memcpy(d->provider, nd_prov(n), (size_t)(n->o_prid - n->o_prov));
    memcpy(d->prid, nd_prid(n), (size_t)(n->o_inst - n->o_prid));
    memcpy(d->param, n->param, strlen(n->param) + 1);
    memcpy(d->instance, nd_inst(n), strlen(nd_inst(n)) + 1);
    d->created_at = n->created_at;
    d->last_seen = n->last_seen;
}

struct pushdev_table {
    pthread_mutex_t lock;
    struct store *st; /* borrowed; NULL: memory only */
    unsigned commit_timeout_ms;
    uint64_t gen;
    unsigned idle_s;
    int64_t (*clock_ms)(void *arg);
    void *clock_arg;
    struct list_node *ext_tab; /* nbuckets each, a power of 2 */
    struct list_node *tok_tab;
    size_t nbuckets;
    size_t count;
    struct reg_strtab params; /* the nodes' pn-param values */
    /* Asynchronous commits whose callback has not run yet (pushdev_close
     * waits for them: their callback reads the table). */
    size_t inflight;
    pthread_cond_t idle;
};

/* A node holding copies of the strings (each within its struct pushdev
 * bound: the callers checked) and the times. Under t->lock. */
static struct node *
node_new(struct pushdev_table *t, const char *ext, const char *prov,
         const char *prid, const char *param, const char *inst,
         int64_t created_at, int64_t last_seen)
{
    size_t le = strlen(ext) + 1, lv = strlen(prov) + 1;
    size_t lp = strlen(prid) + 1, li = strlen(inst) + 1;
    struct node *n = xmalloc(sizeof(*n) + le + lv + lp + li);

    memset(n, 0, sizeof(*n));
    n->o_prov = (uint8_t)le;
    n->o_prid = (uint16_t)(le + lv);
    n->o_inst = (uint16_t)(n->o_prid + lp);
    memcpy(n->s, ext, le);
    memcpy(n->s + n->o_prov, prov, lv);
    memcpy(n->s + n->o_prid, prid, lp);
    memcpy(n->s + n->o_inst, inst, li);
    n->param = reg_strtab_get(&t->params, param);
    n->created_at = created_at;
    n->last_seen = last_seen;
    return n;
}

static int64_t
now_s(const struct pushdev_table *t)
{
    if (t->clock_ms)
        return t->clock_ms(t->clock_arg) / 1000;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

/* FNV-1a: short keys, no adversarial control over bucket choice matters
 * here (tokens come from Apple/Google, extensions from the admin). */
static size_t
hash2(const char *a, const char *b)
{
    uint32_t h = 2166136261u;
    for (const char *p = a; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    h = (h ^ 0xff) * 16777619u;
    for (const char *p = b ? b : ""; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    /* FNV's low bits alone are poor (tokens made of a repeated group fell
     * into 256 of 4096 buckets): mix them all in (murmur3's fmix32). */
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static struct list_node *
ext_chain(struct pushdev_table *t, const char *ext)
{
    return &t->ext_tab[hash2(ext, NULL) & (t->nbuckets - 1)];
}

static struct list_node *
tok_chain(struct pushdev_table *t, const char *provider, const char *prid)
{
    return &t->tok_tab[hash2(provider, prid) & (t->nbuckets - 1)];
}

static struct list_node *
tab_new(size_t n)
{
    struct list_node *v = xmalloc(n * sizeof(*v));
    for (size_t i = 0; i < n; i++)
        list_init(&v[i]);
    return v;
}

/* Double both tables. Each old chain is moved from its tail, pushing to
 * the front, so nodes that share a new chain keep their order (an
 * extension's devices stay most recently seen first). Under t->lock. */
static void
tables_grow(struct pushdev_table *t)
{
    size_t old_n = t->nbuckets;
    struct list_node *oe = t->ext_tab, *ot = t->tok_tab;

    t->nbuckets = old_n * 2;
    t->ext_tab = tab_new(t->nbuckets);
    t->tok_tab = tab_new(t->nbuckets);
    for (size_t i = 0; i < old_n; i++) {
        while (!list_empty(&oe[i])) {
            struct node *n = container_of(oe[i].prev, struct node, by_ext);
            list_remove(&n->by_ext);
            list_push_front(ext_chain(t, nd_ext(n)), &n->by_ext);
        }
        while (!list_empty(&ot[i])) {
            struct node *n = container_of(ot[i].prev, struct node, by_tok);
            list_remove(&n->by_tok);
            list_push_front(tok_chain(t, nd_prov(n), nd_prid(n)), &n->by_tok);
        }
    }
    free(oe);
    free(ot);
}

/* ---- validation --------------------------------------------------------- */

static bool
is_hex(const char *s)
{
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f') ||
              (*s >= 'A' && *s <= 'F')))
            return false;
    return true;
}

/* FCM registration tokens are base64url plus ':' (e.g. "dXk…:APA91b…"). */
static bool
is_token_chars(const char *s)
{
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') ||
              (*s >= 'A' && *s <= 'Z') || *s == '-' || *s == '_' || *s == ':' ||
              *s == '.'))
            return false;
    return true;
}

/* Topics (team.bundle.voip) and project ids: DNS-like labels. */
static bool
is_param_chars(const char *s)
{
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') ||
              (*s >= 'A' && *s <= 'Z') || *s == '-' || *s == '_' || *s == '.'))
            return false;
    return true;
}

const char *
pushdev_check(const char *provider, const char *prid, const char *param)
{
    bool apns = provider && strcmp(provider, "apns") == 0;
    bool fcm = provider && strcmp(provider, "fcm") == 0;
    size_t n = prid ? strlen(prid) : 0;

    if (!apns && !fcm)
        return "Unknown pn-provider";
    if (n == 0)
        return "Empty pn-prid";
    if (n > PUSHDEV_PRID_MAX)
        return "pn-prid Too Long";
    /* APNs device tokens are hex (32 bytes today; Apple says the length
     * may change, so accept an even length within 16..200 like the
     * provider does). */
    if (apns && (!is_hex(prid) || n % 2 != 0 || n < 16 || n > 200))
        return "Bad pn-prid For apns";
    if (fcm && !is_token_chars(prid))
        return "Bad pn-prid For fcm";
    if (!param || !param[0])
        return "Missing pn-param";
    if (strlen(param) > PUSHDEV_PARAM_MAX || !is_param_chars(param))
        return "Bad pn-param";
    /* RFC 8599 §10: "<TeamID>.<Topic>": at least one dot. */
    if (apns && !strchr(param, '.'))
        return "Bad pn-param For apns";
    return NULL;
}

bool
pushdev_is_voip(const struct pushdev *d)
{
    const char *dot = strrchr(d->param, '.');
    return strcmp(d->provider, "apns") == 0 && dot && strcmp(dot, ".voip") == 0;
}

/* ---- store ------------------------------------------------------------ */

/* Queue d's row. Under t->lock. */
static void
queue_put(struct pushdev_table *t, struct node *n)
{
    if (!t->st)
        return;
    struct store_pushdev r = {.ext = nd_ext(n),
                              .provider = nd_prov(n),
                              .prid = nd_prid(n),
                              .param = nd_param(n),
                              .instance = nd_inst(n),
                              .created_at = n->created_at,
                              .last_seen = n->last_seen};
    /* A refused write shows in the store_commit that follows (or in the
     * store's counters for the writes nobody waits for). */
    (void)store_pushdev_put(t->st, &r);
}

static void
queue_del(struct pushdev_table *t, struct node *n)
{
    if (t->st)
        (void)store_pushdev_del(t->st, nd_prov(n), nd_prid(n));
}

/* Wait for the writes queued since m. Never under t->lock. */
static int
wait_commit(struct pushdev_table *t, struct store_mark m, const char *what,
            const char *ext)
{
    if (!t->st)
        return 0;
    int rc = store_commit(t->st, m, t->commit_timeout_ms);
    if (rc < 0)
        log_warn("pushdev", "%s not committed: %s ext=%s", what,
                 rc == -ETIMEDOUT ? "store writer did not answer in time"
                                  : strerror(-rc),
                 ext);
    return rc;
}

static struct store_mark
mark(struct pushdev_table *t)
{
    return t->st ? store_mark(t->st) : (struct store_mark){0};
}

static bool
fits(const char *s, size_t cap)
{
    return s && strlen(s) < cap;
}

static void link_node(struct pushdev_table *t, struct node *n);

static int
load_row(const struct store_pushdev *r, void *arg)
{
    struct pushdev_table *t = arg;

    /* A row too long for a struct pushdev was never written by us: skip
     * it rather than cut it (a cut token would push nowhere). */
    if (!fits(r->ext, PUSHDEV_EXT_MAX + 1) ||
        !fits(r->provider, PUSHDEV_PROVIDER_MAX + 1) ||
        !fits(r->prid, PUSHDEV_PRID_MAX + 1) ||
        !fits(r->param, PUSHDEV_PARAM_MAX + 1) ||
        !fits(r->instance, PUSHDEV_INSTANCE_MAX + 1)) {
        log_warn("pushdev", "store: skipping an over-long push device row");
        return 0;
    }
    struct node *n = node_new(t, r->ext, r->provider, r->prid, r->param,
                              r->instance, r->created_at, r->last_seen);
    /* Rows come in no order (store.h): link in front, then move behind
     * the devices of the same extension seen later (most recent first). */
    link_node(t, n);
    struct list_node *h = ext_chain(t, nd_ext(n)), *after = NULL;
    for (struct list_node *p = n->by_ext.next; p != h; p = p->next) {
        const struct node *x = container_of(p, struct node, by_ext);
        if (strcmp(nd_ext(x), nd_ext(n)) == 0 && x->last_seen > n->last_seen)
            after = p;
    }
    if (after) {
        list_remove(&n->by_ext);
        list_insert_before(after->next, &n->by_ext);
    }
    return 0;
}

/* ---- table -------------------------------------------------------------- */

static void
link_node(struct pushdev_table *t, struct node *n)
{
    if (t->count + 1 > t->nbuckets)
        tables_grow(t);
    /* Most recently seen first in the extension's chain. */
    list_push_front(ext_chain(t, nd_ext(n)), &n->by_ext);
    list_push_front(tok_chain(t, nd_prov(n), nd_prid(n)), &n->by_tok);
    t->count++;
}

static void
unlink_free(struct pushdev_table *t, struct node *n)
{
    list_remove(&n->by_ext);
    list_remove(&n->by_tok);
    t->count--;
    reg_strtab_put(&t->params, n->param);
    free(n);
}

static void
free_all(struct pushdev_table *t)
{
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct list_node *h = &t->ext_tab[i];
        while (!list_empty(h))
            unlink_free(t, container_of(h->next, struct node, by_ext));
    }
}

int
pushdev_open(const struct pushdev_opts *o, struct pushdev_table **out,
             char *err, size_t errlen)
{
    struct pushdev_table *t = xcalloc(1, sizeof(*t));

    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->idle, NULL);
    t->idle_s = o->idle_expiry_s ? o->idle_expiry_s : DEFAULT_IDLE_S;
    t->clock_ms = o->clock_ms;
    t->clock_arg = o->clock_arg;
    t->nbuckets = NBUCKETS_MIN;
    t->ext_tab = tab_new(t->nbuckets);
    t->tok_tab = tab_new(t->nbuckets);
    t->st = o->store;
    t->commit_timeout_ms =
        o->commit_timeout_ms ? o->commit_timeout_ms : PUSHDEV_COMMIT_TIMEOUT_MS;
    if (t->st) {
        /* Size the tables for what is stored: no doubling during load. */
        size_t rows = 0;
        if (store_count(t->st, "push_devices", &rows) == 0 &&
            rows > t->nbuckets) {
            while (t->nbuckets < rows)
                t->nbuckets *= 2;
            free(t->ext_tab);
            free(t->tok_tab);
            t->ext_tab = tab_new(t->nbuckets);
            t->tok_tab = tab_new(t->nbuckets);
        }
        int64_t cutoff = now_s(t) - (int64_t)t->idle_s;
        struct timespec t0, t1, c0, c1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
        int rc = store_pushdev_load(t->st, cutoff, load_row, t);
        if (rc < 0) {
            snprintf(err, errlen, "pushdev: cannot load the push devices: %s",
                     strerror(-rc));
            t->st = NULL; /* nothing to sync at close */
            pushdev_close(t);
            return rc;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
        log_info("pushdev",
                 "restored push devices=%zu in %lld ms (CPU %lld "
                 "ms)",
                 t->count,
                 (long long)((t1.tv_sec - t0.tv_sec) * 1000 +
                             (t1.tv_nsec - t0.tv_nsec) / 1000000),
                 (long long)((c1.tv_sec - c0.tv_sec) * 1000 +
                             (c1.tv_nsec - c0.tv_nsec) / 1000000));
    }
    *out = t;
    return 0;
}

void
pushdev_close(struct pushdev_table *t)
{
    if (!t)
        return;
    /* Asynchronous commits still running read the table when they end:
     * wait for their callbacks (the writer finishes them, bounded by its
     * busy timeout). */
    pthread_mutex_lock(&t->lock);
    while (t->inflight > 0)
        pthread_cond_wait(&t->idle, &t->lock);
    pthread_mutex_unlock(&t->lock);
    free_all(t);
    if (t->st && store_sync(t->st) < 0)
        log_warn("pushdev", "a store write failed before close");
    pthread_cond_destroy(&t->idle);
    pthread_mutex_destroy(&t->lock);
    free(t->ext_tab);
    free(t->tok_tab);
    reg_strtab_fini(&t->params);
    free(t);
}

static struct node *
find_token(struct pushdev_table *t, const char *provider, const char *prid)
{
    struct list_node *h = tok_chain(t, provider, prid);
    for (struct list_node *p = h->next; p != h; p = p->next) {
        struct node *n = container_of(p, struct node, by_tok);
        if (strcmp(nd_prov(n), provider) == 0 && strcmp(nd_prid(n), prid) == 0)
            return n;
    }
    return NULL;
}

/* The memory side of a put (under the mutex) and the queueing of its
 * store writes. Returns 0 when nothing needs the disk (a refresh, or no
 * store), 1 when the writes queued after *m must be committed before the
 * put is acknowledged (*gen: the new node's), or -EINVAL. */
static int
put_mem(struct pushdev_table *t, const struct pushdev *d, unsigned max,
        bool *created, struct store_mark *m, uint64_t *gen)
{
    struct node *drop[PUSHDEV_MAX_PER_EXT + 2];
    size_t ndrop = 0;

    if (created)
        *created = false;
    if (!d->ext[0] || !d->provider[0] || !d->prid[0] ||
        !fits(d->ext, sizeof(d->ext)) ||
        !fits(d->provider, sizeof(d->provider)) ||
        !fits(d->prid, sizeof(d->prid)) || !fits(d->param, sizeof(d->param)) ||
        !fits(d->instance, sizeof(d->instance)))
        return -EINVAL;
    if (max < 1)
        max = 1;
    if (max > PUSHDEV_MAX_PER_EXT)
        max = PUSHDEV_MAX_PER_EXT;

    pthread_mutex_lock(&t->lock);
    int64_t now = now_s(t);
    struct node *same = find_token(t, d->provider, d->prid);

    /* Pure refresh: same token, same extension, nothing changed, and
     * already on disk. */
    if (same && !same->unsynced && strcmp(nd_ext(same), d->ext) == 0 &&
        strcmp(nd_param(same), d->param) == 0 &&
        strcmp(nd_inst(same), d->instance) == 0 &&
        now - same->last_seen < LAST_SEEN_PERSIST_S) {
        same->last_seen = now;
        list_remove(&same->by_ext);
        list_push_front(ext_chain(t, nd_ext(same)), &same->by_ext);
        pthread_mutex_unlock(&t->lock);
        return 0;
    }

    /* What the new device replaces: its token anywhere, and in its
     * extension the device with the same instance. */
    if (same)
        drop[ndrop++] = same;
    struct list_node *h = ext_chain(t, d->ext);
    size_t kept = 0;
    struct node *keep[PUSHDEV_MAX_PER_EXT * 2];
    for (struct list_node *p = h->next; p != h; p = p->next) {
        struct node *n = container_of(p, struct node, by_ext);
        if (n == same || strcmp(nd_ext(n), d->ext) != 0)
            continue;
        if (d->instance[0] && strcmp(nd_inst(n), d->instance) == 0) {
            drop[ndrop++] = n;
            continue;
        }
        if (kept < sizeof(keep) / sizeof(keep[0]))
            keep[kept++] = n;
    }
    /* Evict beyond max, least recently seen first (the chain is most
     * recent first, so from the end of keep[]). */
    while (kept + 1 > max && ndrop < sizeof(drop) / sizeof(drop[0]))
        drop[ndrop++] = keep[--kept];

    struct node *nn = node_new(
        t, d->ext, d->provider, d->prid, d->param, d->instance,
        same && strcmp(nd_ext(same), d->ext) == 0 ? same->created_at : now,
        now);
    nn->gen = ++t->gen;
    nn->unsynced = true;
    *gen = nn->gen;

    /* Queue in the order memory changes, under the lock: a concurrent put
     * of the same extension queues after us and so lands after us. */
    *m = mark(t);
    for (size_t i = 0; i < ndrop; i++)
        if (drop[i] != same) /* same's row is replaced by the put */
            queue_del(t, drop[i]);
    queue_put(t, nn);

    bool is_new = !same || strcmp(nd_ext(same), d->ext) != 0;
    for (size_t i = 0; i < ndrop; i++) {
        if (drop[i] != same || strcmp(nd_ext(same), d->ext) != 0)
            log_info("pushdev", "device replaced ext=%s provider=%s",
                     nd_ext(drop[i]), nd_prov(drop[i]));
        unlink_free(t, drop[i]);
    }
    link_node(t, nn);
    pthread_mutex_unlock(&t->lock);
    if (created)
        *created = is_new;
    return t->st ? 1 : 0;
}

/* The put of generation gen is on disk: clear its unsynced flag, unless a
 * later put replaced the node (that put owns the flag). Under t->lock. */
static void
mark_synced(struct pushdev_table *t, const char *provider, const char *prid,
            uint64_t gen)
{
    struct node *n = find_token(t, provider, prid);
    if (n && n->gen == gen)
        n->unsynced = false;
}

int
pushdev_put(struct pushdev_table *t, const struct pushdev *d, unsigned max,
            bool *created)
{
    struct store_mark m;
    uint64_t gen = 0;
    int rc = put_mem(t, d, max, created, &m, &gen);

    if (rc <= 0)
        return rc;
    /* The caller waits for the disk here, without the mutex. */
    rc = wait_commit(t, m, "push device", d->ext);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&t->lock);
    mark_synced(t, d->provider, d->prid, gen);
    pthread_mutex_unlock(&t->lock);
    return 0;
}

/* One asynchronous commit: what its callback needs once the writer is
 * done (copies: the caller's strings are gone by then). */
struct async_commit {
    struct pushdev_table *t;
    const char *what;
    char ext[PUSHDEV_EXT_MAX + 1];
    char provider[PUSHDEV_PROVIDER_MAX + 1];
    char prid[PUSHDEV_PRID_MAX + 1];
    uint64_t gen; /* a put's node; 0 for a removal */
    pushdev_done_cb *cb;
    void *arg;
};

/* store_commit_cb: the writer's thread (or the caller's, see
 * store_commit_async). The table is touched only before inflight drops,
 * so pushdev_close can free it right after. */
static void
on_async_commit(int rc, void *arg)
{
    struct async_commit *ac = arg;
    struct pushdev_table *t = ac->t;

    if (rc < 0)
        log_warn("pushdev", "%s not committed: %s ext=%s", ac->what,
                 strerror(-rc), ac->ext);
    pthread_mutex_lock(&t->lock);
    if (rc == 0 && ac->gen)
        mark_synced(t, ac->provider, ac->prid, ac->gen);
    if (--t->inflight == 0)
        pthread_cond_broadcast(&t->idle);
    pthread_mutex_unlock(&t->lock);
    ac->cb(rc, ac->arg);
    free(ac);
}

/* Ask the store for the commit of what was queued since m; cb reports. */
static void
start_async(struct pushdev_table *t, struct store_mark m, const char *what,
            const char *ext, const struct pushdev *d, uint64_t gen,
            pushdev_done_cb *cb, void *arg)
{
    struct async_commit *ac = xcalloc(1, sizeof(*ac));

    ac->t = t;
    ac->what = what;
    snprintf(ac->ext, sizeof(ac->ext), "%s", ext);
    if (d) {
        memcpy(ac->provider, d->provider, sizeof(ac->provider));
        memcpy(ac->prid, d->prid, sizeof(ac->prid));
    }
    ac->gen = gen;
    ac->cb = cb;
    ac->arg = arg;
    pthread_mutex_lock(&t->lock);
    t->inflight++;
    pthread_mutex_unlock(&t->lock);
    store_commit_async(t->st, m, on_async_commit, ac);
}

int
pushdev_put_async(struct pushdev_table *t, const struct pushdev *d,
                  unsigned max, bool *created, pushdev_done_cb *cb, void *arg)
{
    struct store_mark m;
    uint64_t gen = 0;
    int rc = put_mem(t, d, max, created, &m, &gen);

    if (rc <= 0)
        return rc;
    start_async(t, m, "push device", d->ext, d, gen, cb, arg);
    return PUSHDEV_PENDING;
}

/* The memory side of a removal of ext's devices, with its delete queued
 * after *m. Returns how many were removed. */
static int
remove_ext_mem(struct pushdev_table *t, const char *ext, struct store_mark *m)
{
    struct list_node *h = ext_chain(t, ext);
    int removed = 0;

    pthread_mutex_lock(&t->lock);
    *m = mark(t);
    /* Queued even when memory has none: a retry after a failed commit
     * must still reach the disk. */
    if (t->st)
        (void)store_pushdev_del_ext(t->st, ext);
    for (struct list_node *p = h->next, *nx; p != h; p = nx) {
        nx = p->next;
        struct node *n = container_of(p, struct node, by_ext);
        if (strcmp(nd_ext(n), ext) == 0) {
            unlink_free(t, n);
            removed++;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return removed;
}

int
pushdev_remove_ext(struct pushdev_table *t, const char *ext)
{
    struct store_mark m;
    int removed = remove_ext_mem(t, ext, &m);
    int rc = wait_commit(t, m, "push device removal", ext);
    return rc < 0 ? rc : removed;
}

int
pushdev_remove_ext_async(struct pushdev_table *t, const char *ext,
                         pushdev_done_cb *cb, void *arg)
{
    struct store_mark m;

    (void)remove_ext_mem(t, ext, &m);
    if (!t->st)
        return 0;
    start_async(t, m, "push device removal", ext, NULL, 0, cb, arg);
    return PUSHDEV_PENDING;
}

/* Remove the token's device from memory and queue its delete. Returns 0
 * or 1; *m is the mark before the write. */
static int
remove_token(struct pushdev_table *t, const char *provider, const char *prid,
             struct store_mark *m, char *ext, size_t extcap)
{
    int removed = 0;

    pthread_mutex_lock(&t->lock);
    *m = mark(t);
    struct node *n = find_token(t, provider, prid);
    if (n) {
        queue_del(t, n);
        snprintf(ext, extcap, "%s", nd_ext(n));
        log_notice("pushdev", "device removed ext=%s provider=%s", nd_ext(n),
                   provider);
        unlink_free(t, n);
        removed = 1;
    }
    pthread_mutex_unlock(&t->lock);
    return removed;
}

int
pushdev_remove_token(struct pushdev_table *t, const char *provider,
                     const char *prid)
{
    struct store_mark m;
    char ext[PUSHDEV_EXT_MAX + 1] = "";
    int n = remove_token(t, provider, prid, &m, ext, sizeof(ext));

    /* Not waited for (push thread); a refused write is reported. */
    if (n && t->st && store_mark(t->st).dropped > m.dropped)
        return -ENOSPC;
    return n;
}

int
pushdev_forget_token(struct pushdev_table *t, const char *provider,
                     const char *prid)
{
    struct store_mark m;
    char ext[PUSHDEV_EXT_MAX + 1] = "";
    int n = remove_token(t, provider, prid, &m, ext, sizeof(ext));

    if (n == 0)
        return 0;
    int rc = wait_commit(t, m, "push device removal", ext);
    return rc < 0 ? rc : n;
}

size_t
pushdev_find_ext(struct pushdev_table *t, const char *ext, struct pushdev *out,
                 size_t cap)
{
    struct list_node *h = ext_chain(t, ext);
    size_t n = 0;

    pthread_mutex_lock(&t->lock);
    for (struct list_node *p = h->next; p != h && n < cap; p = p->next) {
        struct node *x = container_of(p, struct node, by_ext);
        if (strcmp(nd_ext(x), ext) == 0)
            node_get(x, &out[n++]);
    }
    pthread_mutex_unlock(&t->lock);
    return n;
}

bool
pushdev_match(struct pushdev_table *t, const char *ext, const char *provider,
              const char *prid, const char *instance, struct pushdev *out)
{
    struct list_node *h = ext_chain(t, ext);
    bool found = false;

    pthread_mutex_lock(&t->lock);
    for (struct list_node *p = h->next; p != h; p = p->next) {
        struct node *x = container_of(p, struct node, by_ext);
        if (strcmp(nd_ext(x), ext) != 0)
            continue;
        bool tok = provider && prid && prid[0] &&
                   strcmp(nd_prov(x), provider) == 0 &&
                   strcmp(nd_prid(x), prid) == 0;
        bool inst =
            instance && instance[0] && strcmp(nd_inst(x), instance) == 0;
        if (tok || inst) {
            node_get(x, out);
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return found;
}

size_t
pushdev_expire(struct pushdev_table *t)
{
    size_t n = 0;

    pthread_mutex_lock(&t->lock);
    int64_t cutoff = now_s(t) - (int64_t)t->idle_s;
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct list_node *h = &t->ext_tab[i];
        for (struct list_node *p = h->next, *nx; p != h; p = nx) {
            nx = p->next;
            struct node *x = container_of(p, struct node, by_ext);
            if (x->last_seen >= cutoff)
                continue;
            queue_del(t, x); /* not waited for: see pushdev.h */
            log_info("pushdev", "idle device expired ext=%s provider=%s",
                     nd_ext(x), nd_prov(x));
            unlink_free(t, x);
            n++;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return n;
}

void
pushdev_list(struct pushdev_table *t, pushdev_list_cb *cb, void *arg)
{
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct list_node *h = &t->ext_tab[i];
        for (struct list_node *p = h->next; p != h; p = p->next) {
            struct pushdev d;
            node_get(container_of(p, struct node, by_ext), &d);
            cb(&d, arg);
        }
    }
    pthread_mutex_unlock(&t->lock);
}

size_t
pushdev_count(struct pushdev_table *t)
{
    pthread_mutex_lock(&t->lock);
    size_t n = t->count;
    pthread_mutex_unlock(&t->lock);
    return n;
}

/* ---- the REGISTER side (reg_int.h) --------------------------------------- */

void
reg_set_push(struct reg *r, const struct reg_push_opts *o)
{
    r->push = *o;
}

static bool
served(const struct reg *r, struct slice provider)
{
    return (r->push.apns && slice_eq_cstr(provider, "apns")) ||
           (r->push.fcm && slice_eq_cstr(provider, "fcm"));
}

/* Unescaped URI param into dst (cap bytes, NUL-terminated). Returns 0,
 * -ENOENT when absent, -EINVAL (bad escape, embedded NUL, too long). */
static int
uri_param_str(const struct sip_uri *u, const char *name, struct arena *a,
              char *dst, size_t cap)
{
    struct slice v, un;

    if (!sip_uri_param(u, name, &v))
        return -ENOENT;
    if (sip_unescape(v, a, &un) < 0 || un.len >= cap ||
        memchr(un.ptr, '\0', un.len))
        return -EINVAL;
    memcpy(dst, un.ptr, un.len);
    dst[un.len] = '\0';
    return 0;
}

int
reg_push_contact(struct reg *r, struct slice ext, const struct sip_uri *u,
                 struct slice instance, struct arena *a,
                 struct reg_push_state *ps, const char **why)
{
    struct slice prov;

    if (!sip_uri_param(u, "pn-provider", &prov))
        return 0; /* not a push contact: plain processing */
    ps->any = true;
    if (!r->push.table)
        return 0; /* push not built in: a plain binding (RFC 8599 §5.6.1) */
    char number[PUSHDEV_EXT_MAX + 1];
    slice_to_cstr(ext, number, sizeof(number));
    if (r->push.push_enabled && !r->push.push_enabled(number, r->push.arg)) {
        ps->disabled = true;
        return 0;
    }
    bool has_prid = sip_uri_param(u, "pn-prid", NULL);

    /* Capability query (RFC 8599 §5.6.1.2): pn-provider without pn-prid. */
    if (!has_prid) {
        if (prov.len == 0) {
            if (!r->push.apns && !r->push.fcm) {
                *why = "Push Notification Service Not Supported";
                return 555;
            }
            if (!ps->fc_provider)
                ps->fc_provider = "*";
            return 0;
        }
        if (!served(r, prov)) {
            *why = "Push Notification Service Not Supported";
            return 555;
        }
        if (!ps->fc_provider)
            ps->fc_provider = slice_eq_cstr(prov, "apns") ? "apns" : "fcm";
        return 0;
    }

    if (!served(r, prov)) {
        *why = "Push Notification Service Not Supported";
        return 555;
    }
    if (ps->device)
        return 0; /* one push device per REGISTER: the first one wins */
    struct pushdev *d = arena_alloc(a, sizeof(*d));
    if (!d) {
        *why = "Request Too Large";
        return 400;
    }
    memset(d, 0, sizeof(*d));
    memcpy(d->ext, number, sizeof(number));
    snprintf(d->provider, sizeof(d->provider), "%s",
             slice_eq_cstr(prov, "apns") ? "apns" : "fcm");
    int rc = uri_param_str(u, "pn-prid", a, d->prid, sizeof(d->prid));
    if (rc < 0) {
        *why = rc == -EINVAL ? "Bad pn-prid" : "Empty pn-prid";
        return 400;
    }
    rc = uri_param_str(u, "pn-param", a, d->param, sizeof(d->param));
    if (rc == -EINVAL) {
        *why = "Bad pn-param";
        return 400;
    }
    const char *bad = pushdev_check(d->provider, d->prid, d->param);
    if (bad) {
        *why = bad;
        return 400;
    }
    if (instance.len >= sizeof(d->instance)) {
        *why = "Bad +sip.instance";
        return 400;
    }
    if (instance.len)
        memcpy(d->instance, instance.ptr, instance.len);
    ps->dev = d;
    ps->device = true;
    ps->fc_provider = d->provider;
    return 0;
}

int
reg_push_headers(struct reg *r, const struct reg_push_state *ps,
                 struct buf *hdrs)
{
    if (!r->push.table)
        return 0;
    if (ps->disabled)
        return buf_printf(hdrs,
                          "Warning: 399 pushpbx \"Push notifications are "
                          "disabled for this extension\"\r\n");
    if (!ps->fc_provider)
        return 0;
    if (strcmp(ps->fc_provider, "*") == 0) {
        if (r->push.apns &&
            buf_printf(hdrs, "Feature-Caps: *;+sip.pns=\"apns\"\r\n") < 0)
            return -EMSGSIZE;
        if (r->push.fcm &&
            buf_printf(hdrs, "Feature-Caps: *;+sip.pns=\"fcm\"\r\n") < 0)
            return -EMSGSIZE;
        return 0;
    }
    return buf_printf(hdrs, "Feature-Caps: *;+sip.pns=\"%s\"\r\n",
                      ps->fc_provider);
}

int
reg_push_store(struct reg *r, struct slice ext, bool star,
               const struct reg_push_state *ps, reg_commit_cb *cb, void *arg)
{
    int rc = 0;

    if (!r->push.table)
        return 0;
    if (star) {
        char number[PUSHDEV_EXT_MAX + 1];
        slice_to_cstr(ext, number, sizeof(number));
        rc = cb ? pushdev_remove_ext_async(r->push.table, number, cb, arg)
                : pushdev_remove_ext(r->push.table, number);
    } else if (ps->device && !ps->disabled) {
        unsigned max = 1;
        struct shard *s = reg_shard_of(r, ext);
        pthread_mutex_lock(&s->lock);
        struct ext *e = reg_ext_find(s, ext);
        if (e)
            max = e->max_push_devices;
        pthread_mutex_unlock(&s->lock);
        rc = cb ? pushdev_put_async(r->push.table, ps->dev, max, NULL, cb,
                                    arg)
                : pushdev_put(r->push.table, ps->dev, max, NULL);
    }
    if (rc < 0)
        return 500;
    return cb && rc == PUSHDEV_PENDING ? REG_PENDING : 0;
}

/* ---- cluster ------------------------------------------------------------ */

int
pushdev_replace_ext(struct pushdev_table *t, const char *ext,
                    const struct store_pushdev *rows, size_t n)
{
    struct list_node *h = ext_chain(t, ext);
    int count = 0;

    pthread_mutex_lock(&t->lock);
    for (struct list_node *p = h->next, *nx; p != h; p = nx) {
        nx = p->next;
        struct node *x = container_of(p, struct node, by_ext);
        /* A device whose commit is running is newer than any row read. */
        if (strcmp(nd_ext(x), ext) == 0 && !x->unsynced)
            unlink_free(t, x);
    }
    for (size_t i = 0; i < n; i++) {
        const struct store_pushdev *r = &rows[i];
        if (!r->ext || strcmp(r->ext, ext) != 0 || !r->provider ||
            !r->prid || strlen(r->prid) > PUSHDEV_PRID_MAX)
            continue;
        struct node *old = find_token(t, r->provider, r->prid);
        if (old && old->unsynced && strcmp(nd_ext(old), ext) == 0)
            continue;
        if (old)
            unlink_free(t, old); /* the token moved to this extension */
        (void)load_row(r, t);
        count++;
    }
    pthread_mutex_unlock(&t->lock);
    return count;
}
