/*
 * registrar/reg: the extension/binding tables (location service), start-up
 * restore, lookups for the proxy and listings for admin. See reg.h for the
 * locking and expiry design.
 *
 * Each shard is a chained hash of extensions that doubles when it holds
 * two extensions per bucket; an extension keeps its bindings in a list,
 * most recently updated first, at most max_contacts long (a handful), so
 * per-extension work is a short list walk.
 */
#include "registrar/reg.h"

#include <pthread.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/xmalloc.h"
#include "registrar/msgstore.h"
#include "registrar/pushdev.h"
#include "registrar/reg_int.h"
#include "sip/digest.h"
#include "sip/uri.h"
#include "store/store.h"

void
reg_cfg_defaults(struct reg_cfg *c)
{
    *c = (struct reg_cfg){
        .min_expires_s = 60,
        .max_expires_s = 7200,
        .default_expires_s = 3600,
        .max_contacts = 10,
        .nonce_ttl_s = 300,
        .nonce_table_size = 65536,
        .unknown_ext = REG_UNKNOWN_CHALLENGE,
        .auth_fail_threshold = 10,
        .auth_fail_window_s = 60,
        .auth_block_s = 300,
        .algorithms = REG_ALGS_SHA256_MD5,
        .throttle_ipv6_prefix = 64,
        .throttle_table_size = 65536,
        .flow_timer_s = 120,
        .flow_timer_udp_s = 29,
    };
}

int64_t
reg_now_ms(const struct reg *r)
{
    if (r->clock_ms)
        return r->clock_ms(r->clock_arg);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t
hash_number(struct slice s)
{
    uint64_t h = 1469598103934665603ULL;

    for (size_t i = 0; i < s.len; i++) {
        h ^= (unsigned char)s.ptr[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* ---- HA1 in binary (reg_int.h struct ext) ------------------------------ */

static int
hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* upper case too: stored HA1 values are lower-case */
}

/* n bytes from the 2n lower-case hex digits at hex (no NUL needed past
 * them). false when one is not such a digit. */
static bool
hex_to_bin(const char *hex, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hex_val(hex[2 * i]),
            lo = hi < 0 ? -1 : hex_val(hex[2 * i + 1]);
        if (lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

void
reg_ha1_hex(const uint8_t *bin, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bin[i] >> 4];
        out[2 * i + 1] = digits[bin[i] & 15];
    }
    out[2 * n] = '\0';
}

struct shard *
reg_shard_of(struct reg *r, struct slice number)
{
    return &r->shards[hash_number(number) % REG_SHARDS];
}

static size_t
bucket_of(const struct shard *s, struct slice number)
{
    return (hash_number(number) / REG_SHARDS) & (s->nbuckets - 1);
}

struct ext *
reg_ext_find(struct shard *s, struct slice number)
{
    struct ext *e = s->tab[bucket_of(s, number)];

    while (e && !slice_eq_cstr(number, e->number))
        e = e->hnext;
    return e;
}

static void
shard_grow(struct shard *s)
{
    size_t old_n = s->nbuckets;
    struct ext **old = s->tab;

    s->nbuckets = old_n * 2;
    s->tab = xcalloc(s->nbuckets, sizeof(*s->tab));
    for (size_t i = 0; i < old_n; i++) {
        struct ext *e = old[i];
        while (e) {
            struct ext *next = e->hnext;
            size_t b = bucket_of(s, slice_cstr(e->number));
            e->hnext = s->tab[b];
            s->tab[b] = e;
            e = next;
        }
    }
    free(old);
}

/* ---- the listing index (reg_int.h struct ext_index) -------------------- */

/* Listing order: shorter numbers first, then byte order ("99" < "100"). */
static int
number_cmp(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);

    if (la != lb)
        return la < lb ? -1 : 1;
    return strcmp(a, b);
}

static int
number_pcmp(const void *x, const void *y)
{
    return number_cmp(*(const char *const *)x, *(const char *const *)y);
}

/* First position whose number sorts after key (upper bound). Index
 * locked and sorted. */
static size_t
index_after(const struct ext_index *ix, const char *key)
{
    size_t lo = 0, hi = ix->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (number_cmp(ix->v[mid], key) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void
index_sort(struct ext_index *ix)
{
    if (!ix->sorted) {
        qsort(ix->v, ix->n, sizeof(*ix->v), number_pcmp);
        ix->sorted = true;
    }
}

/* Add number (ext->number: it lives as long as the extension). Under the
 * extension's shard lock. */
static void
index_add(struct reg *r, const char *number)
{
    struct ext_index *ix = &r->index;

    pthread_mutex_lock(&ix->lock);
    if (ix->n == ix->cap) {
        ix->cap = ix->cap ? ix->cap * 2 : 1024;
        ix->v = xrealloc(ix->v, ix->cap * sizeof(*ix->v));
    }
    if (r->loading || !ix->sorted) {
        /* Restore: append; still sorted while rows come in order. */
        if (ix->n && number_cmp(ix->v[ix->n - 1], number) > 0)
            ix->sorted = false;
        ix->v[ix->n++] = number;
    } else {
        size_t at = index_after(ix, number);
        memmove(ix->v + at + 1, ix->v + at, (ix->n - at) * sizeof(*ix->v));
        ix->v[at] = number;
        ix->n++;
    }
    pthread_mutex_unlock(&ix->lock);
}

/* Remove number (the very pointer index_add got). Under the shard lock. */
static void
index_del(struct reg *r, const char *number)
{
    struct ext_index *ix = &r->index;

    pthread_mutex_lock(&ix->lock);
    index_sort(ix);
    size_t at = index_after(ix, number);
    /* at - 1 holds an equal number: numbers are unique. */
    if (at > 0 && ix->v[at - 1] == number) {
        memmove(ix->v + at - 1, ix->v + at, (ix->n - at) * sizeof(*ix->v));
        ix->n--;
    }
    pthread_mutex_unlock(&ix->lock);
}

/* Add extension number to shard s (locked). display NULL: a placeholder
 * for bindings restored before their extension (reg_load), neither in
 * the index nor visible to anyone before the restore ends. */
static struct ext *
shard_add(struct reg *r, struct shard *s, const char *number,
          const char *display)
{
    size_t len = strlen(number) + 1;
    struct ext *e = xcalloc(1, sizeof(*e) + len);

    memcpy(e->number, number, len);
    e->shard = (uint8_t)(s - r->shards);
    e->display = display ? xstrdup(display) : NULL;
    e->max_push_devices = 1;
    list_init(&e->bindings);
    if (s->count + 1 > 2 * s->nbuckets)
        shard_grow(s);
    size_t b = bucket_of(s, slice_cstr(number));
    e->hnext = s->tab[b];
    s->tab[b] = e;
    s->count++;
    if (display)
        index_add(r, e->number);
    atomic_fetch_add(&r->n_extensions, 1);
    return e;
}

/* ---- interned strings (reg_int.h struct reg_strtab) ------------------- */

struct reg_str {
    struct reg_str *next;
    uint32_t refs;
    uint32_t hash;
    char s[];
};

static uint32_t
str_hash(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h ^ h >> 16;
}

const char *
reg_strtab_get(struct reg_strtab *t, const char *s)
{
    if (!s || !s[0])
        return "";
    uint32_t h = str_hash(s);
    if (t->nbuckets) {
        for (struct reg_str *x = t->tab[h & (t->nbuckets - 1)]; x; x = x->next)
            if (x->hash == h && strcmp(x->s, s) == 0) {
                x->refs++;
                return x->s;
            }
    }
    if (t->count + 1 > t->nbuckets) {
        size_t n = t->nbuckets ? t->nbuckets * 2 : 4;
        struct reg_str **tab = xcalloc(n, sizeof(*tab));
        for (size_t i = 0; i < t->nbuckets; i++)
            for (struct reg_str *x = t->tab[i], *nx; x; x = nx) {
                nx = x->next;
                x->next = tab[x->hash & (n - 1)];
                tab[x->hash & (n - 1)] = x;
            }
        free(t->tab);
        t->tab = tab;
        t->nbuckets = n;
    }
    size_t len = strlen(s) + 1;
    struct reg_str *x = xmalloc(sizeof(*x) + len);
    x->refs = 1;
    x->hash = h;
    memcpy(x->s, s, len);
    struct reg_str **head = &t->tab[h & (t->nbuckets - 1)];
    x->next = *head;
    *head = x;
    t->count++;
    return x->s;
}

void
reg_strtab_put(struct reg_strtab *t, const char *s)
{
    if (!s || !s[0] || !t->nbuckets)
        return; /* "" is not counted */
    struct reg_str *x = container_of(s, struct reg_str, s);
    if (--x->refs > 0)
        return;
    struct reg_str **pp = &t->tab[x->hash & (t->nbuckets - 1)];
    while (*pp && *pp != x)
        pp = &(*pp)->next;
    if (*pp) {
        *pp = x->next;
        t->count--;
        free(x);
    }
}

void
reg_strtab_fini(struct reg_strtab *t)
{
    for (size_t i = 0; i < t->nbuckets; i++)
        for (struct reg_str *x = t->tab[i], *nx; x; x = nx) {
            nx = x->next;
            free(x);
        }
    free(t->tab);
    *t = (struct reg_strtab){0};
}

/* ---- bindings --------------------------------------------------------- */

static size_t
slen0(const char *s)
{
    return s ? strlen(s) : 0;
}

/* Copy s (n bytes: slen0) to *p, NUL-terminated; advance *p. */
static const char *
pack(char **p, const char *s, size_t n)
{
    const char *start = *p;

    if (n)
        memcpy(*p, s, n);
    (*p)[n] = '\0';
    *p += n + 1;
    return start;
}

/* The RFC 8599 params a binding keeps (reg_int.h struct reg_pn_ref) and
 * the longest value of each (pushdev.h bounds them). */
static const char *const pn_names[REG_PN_COUNT] = {"pn-provider", "pn-prid",
                                                   "pn-param"};
static const size_t pn_caps[REG_PN_COUNT] = {16, PUSHDEV_PRID_MAX + 1,
                                             PUSHDEV_PARAM_MAX + 1};

struct binding *
reg_binding_new(struct reg *r, struct ext *e, const struct binding *t)
{
    /* The push params are parsed here, once per stored binding, so that
     * the wake path copies strings instead of re-parsing Contact URIs.
     * A value without escapes is found again inside the stored uri; only
     * an escaped one is stored a second time, decoded. */
    char esc[REG_PN_COUNT][PUSHDEV_PRID_MAX + 1];
    struct slice raw[REG_PN_COUNT] = {{0}};
    size_t esc_len[REG_PN_COUNT] = {0}, esc_total = 0;
    size_t ulen = slen0(t->uri);
    struct sip_uri u;
    const char *why;

    if (t->uri && strstr(t->uri, "pn-") &&
        sip_uri_parse(slice_cstr(t->uri), &u, &why) == 0) {
        for (size_t k = 0; k < REG_PN_COUNT; k++) {
            struct slice v;
            size_t len;
            if (!sip_uri_param(&u, pn_names[k], &v) || v.len == 0)
                continue;
            if (!memchr(v.ptr, '%', v.len) && v.ptr >= t->uri &&
                v.ptr + v.len <= t->uri + ulen) {
                if (v.len < pn_caps[k]) /* else too long: "" */
                    raw[k] = v;
            } else if (sip_unescape_to(v, esc[k], pn_caps[k], &len) == 0 &&
                       strlen(esc[k]) == len) {
                esc_len[k] = len;
                esc_total += len;
            }
        }
    }
    size_t lk = slen0(t->key), lp = slen0(t->params);
    size_t li = slen0(t->instance), lc = slen0(t->call_id);
    size_t lh = slen0(t->path), lho = slen0(t->holder);
    size_t extra = lk + ulen + lp + li + lc + lh + lho + 7 + esc_total;
    struct binding *b = xmalloc(sizeof(*b) + extra);
    char *p = (char *)(b + 1);

    *b = *t;
    list_init(&b->node);
    b->key = pack(&p, t->key, lk);
    b->uri = pack(&p, t->uri, ulen);
    b->params = pack(&p, t->params, lp);
    b->instance = pack(&p, t->instance, li);
    b->call_id = pack(&p, t->call_id, lc);
    b->path = pack(&p, t->path, lh);
    b->holder = pack(&p, t->holder, lho); /* "" for this node's */
    b->user_agent = reg_strtab_get(&r->shards[e->shard].agents, t->user_agent);
    for (size_t k = 0; k < REG_PN_COUNT; k++) {
        b->pn[k] = (struct reg_pn_ref){0};
        if (raw[k].len) {
            b->pn[k].off = (uint32_t)(raw[k].ptr - t->uri);
            b->pn[k].len = (uint32_t)raw[k].len;
        } else if (esc_len[k]) {
            memcpy(p, esc[k], esc_len[k]);
            b->pn[k].off = (uint32_t)(p - b->uri);
            b->pn[k].len = (uint32_t)esc_len[k];
            p += esc_len[k];
        }
    }
    return b;
}

/* Param k of b, NUL-terminated, in dst (pn_caps[k] bytes). */
static const char *
pn_get(const struct binding *b, size_t k, char *dst)
{
    memcpy(dst, b->uri + b->pn[k].off, b->pn[k].len);
    dst[b->pn[k].len] = '\0';
    return dst;
}

void
reg_binding_link(struct reg *r, struct ext *e, struct binding *b)
{
    list_push_front(&e->bindings, &b->node);
    e->binding_count++;
    atomic_fetch_add(&r->n_bindings, 1);
}

void
reg_binding_unlink_free(struct reg *r, struct ext *e, struct binding *b)
{
    list_remove(&b->node);
    e->binding_count--;
    atomic_fetch_sub(&r->n_bindings, 1);
    reg_strtab_put(&r->shards[e->shard].agents, b->user_agent);
    free(b);
}

int
reg_addr_format(const union reg_addr *a, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];

    if (a->sa.sa_family == AF_INET) {
        /* What inet_ntop and "%s:%u" wrote (truncated to cap as
         * snprintf does), by hand: every binding's store row carries it
         * (reg_binding_persist). */
        const uint8_t *b = (const uint8_t *)&a->in.sin_addr;
        char t[sizeof("255.255.255.255:65535")], *p = t;
        for (int i = 0; i < 4; i++) {
            p += fmt_u64(p, b[i]);
            *p++ = i < 3 ? '.' : ':';
        }
        p += fmt_u64(p, ntohs(a->in.sin_port));
        if (cap) {
            size_t n = (size_t)(p - t) < cap ? (size_t)(p - t) : cap - 1;
            memcpy(out, t, n);
            out[n] = '\0';
        }
        return 0;
    }
    if (a->sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &a->in6.sin6_addr, ip, sizeof(ip));
        snprintf(out, cap, "[%s]:%u", ip, ntohs(a->in6.sin6_port));
        return 0;
    }
    snprintf(out, cap, "-");
    return -EAFNOSUPPORT;
}

int
reg_addr_parse(const char *s, union reg_addr *out)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon;
    const char *h = s;
    size_t hlen;

    memset(out, 0, sizeof(*out));
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':')
            return -EINVAL;
        h = s + 1;
        hlen = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -EINVAL;
        hlen = (size_t)(colon - s);
    }
    if (hlen >= sizeof(host))
        return -EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    unsigned long long port;
    if (slice_to_u64(slice_cstr(colon + 1), 65535, &port) < 0)
        return -EINVAL;
    if (inet_pton(AF_INET, host, &out->in.sin_addr) == 1) {
        out->in.sin_family = AF_INET;
        out->in.sin_port = htons((uint16_t)port);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &out->in6.sin6_addr) == 1) {
        out->in6.sin6_family = AF_INET6;
        out->in6.sin6_port = htons((uint16_t)port);
        return 0;
    }
    return -EINVAL;
}

static void
count_store_rc(struct reg *r, int rc)
{
    if (rc < 0) {
        uint64_t n = atomic_fetch_add(&r->n_store_errors, 1);
        if ((n & (n + 1)) == 0) /* log at 1, 2, 4, 8, ... failures */
            log_error("registrar", "store queue full: %llu writes lost",
                      (unsigned long long)n + 1);
    }
}

void
reg_binding_persist(struct reg *r, const struct ext *e, const struct binding *b)
{
    if (!r->store || b->holder[0])
        return; /* a remote binding is its node's row */
    char src[INET6_ADDRSTRLEN + 16];
    reg_addr_format(&b->addr, src, sizeof(src));
    struct store_binding sb = {
        .ext = e->number,
        .key = b->key,
        .uri = b->uri,
        .params = b->params,
        .instance = b->instance,
        .reg_id = b->reg_id,
        .call_id = b->call_id,
        .cseq = b->cseq,
        .expires_at = b->expires_at,
        .updated_at = b->updated_at,
        .path = b->path,
        .source = src,
        .transport = (int)b->transport,
        .flow_id = b->flow_id,
        .user_agent = b->user_agent,
        .node = r->node,
    };
    count_store_rc(r, store_binding_put(r->store, &sb));
}

void
reg_binding_forget(struct reg *r, const struct ext *e, const struct binding *b)
{
    if (r->store && !b->holder[0]) /* a remote binding is its node's row */
        count_store_rc(r, store_binding_del(r->store, e->number, b->key));
}

int64_t
reg_binding_expiry(const struct binding *b, int64_t now)
{
    if (!b->holder[0] || b->expires_at > now)
        return b->expires_at;
    int64_t period = b->expires_at - b->updated_at;
    if (period < 1)
        period = 1;
    return b->expires_at + ((now - b->expires_at) / period + 1) * period;
}

/* A delete lost while the store could not write (an outage) would leave
 * the row, and the other nodes routing to this one for it (they do not
 * expire remote bindings themselves): the cluster's repair after the
 * writer recovered (cluster.c repair_own) runs reg_drop_unheld on each row
 * of this node. */
void
reg_binding_expire(struct reg *r, struct ext *e, struct binding *b)
{
    if (r->node[0])
        reg_binding_forget(r, e, b); /* no-op for a remote binding */
    reg_binding_unlink_free(r, e, b);
}

bool
reg_drop_unheld(struct reg *r, const char *ext, const char *key)
{
    if (!r->store || !r->node[0] || !ext || !key)
        return false;
    struct shard *s = reg_shard_of(r, slice_cstr(ext));
    bool held = false;
    pthread_mutex_lock(&s->lock);
    struct ext *e = reg_ext_find(s, slice_cstr(ext));
    struct list_node *pos, *tmp;
    if (e)
        list_for_each_safe(pos, tmp, &e->bindings)
        {
            const struct binding *b = container_of(pos, struct binding, node);
            if (!b->holder[0] && strcmp(b->key, key) == 0)
                held = true;
        }
    /* Under the lock: every change of ext's bindings queues its write
     * under it too, so a binding of this key added after this check has
     * its put queued after this delete, and its row comes back. */
    if (!held)
        count_store_rc(r, store_binding_del_node(r->store, ext, key, r->node));
    pthread_mutex_unlock(&s->lock);
    return !held;
}

/* ---- life cycle ------------------------------------------------------- */

int
reg_new(const struct reg_opts *o, struct reg **out)
{
    if (!o->domain || !o->domain[0] || !o->realm || !o->realm[0])
        return -EINVAL;
    struct reg *r = xcalloc(1, sizeof(*r));
    if (o->cfg)
        r->cfg = *o->cfg;
    else
        reg_cfg_defaults(&r->cfg);
    if (r->cfg.max_contacts == 0)
        r->cfg.max_contacts = 1;
    if (r->cfg.max_expires_s < r->cfg.min_expires_s)
        r->cfg.max_expires_s = r->cfg.min_expires_s;
    r->domain = xstrdup(o->domain);
    r->realm = xstrdup(o->realm);
    r->store = o->store;
    r->node = xstrdup(o->node ? o->node : "");
    r->msg_cfg = o->messages;
    r->clock_ms = o->clock_ms;
    r->clock_arg = o->clock_arg;
    /* Shard locks are held for a hash probe and a list walk (about a
     * microsecond): a thread that finds one taken spins a little before
     * sleeping (glibc's adaptive mutex). At start-up the two restore
     * threads met on a shard ~2,000 times for a million rows, and each
     * futex sleep cost a wake-up on a busy machine (bench/million-bench.py
     * --wrap 'perf record -e sched:sched_switch'). */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
#endif
    for (size_t i = 0; i < REG_SHARDS; i++) {
        pthread_mutex_init(&r->shards[i].lock, &ma);
        r->shards[i].nbuckets = 16;
        r->shards[i].tab = xcalloc(16, sizeof(struct ext *));
    }
    pthread_mutexattr_destroy(&ma);
    pthread_mutex_init(&r->index.lock, NULL);
    r->index.sorted = true;
    int rc = reg_auth_init(r);
    if (rc < 0) {
        reg_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

static void
ext_free(struct reg *r, struct ext *e)
{
    struct list_node *pos, *tmp;

    list_for_each_safe(pos, tmp, &e->bindings)
    {
        reg_binding_unlink_free(r, e, container_of(pos, struct binding, node));
    }
    if (e->from_config)
        atomic_fetch_sub(&r->n_config, 1);
    free(e->display);
    free(e);
    atomic_fetch_sub(&r->n_extensions, 1);
}

void
reg_free(struct reg *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < REG_SHARDS; i++) {
        struct shard *s = &r->shards[i];
        for (size_t b = 0; b < s->nbuckets; b++) {
            struct ext *e = s->tab[b];
            while (e) {
                struct ext *next = e->hnext;
                ext_free(r, e);
                e = next;
            }
        }
        free(s->tab);
        reg_strtab_fini(&s->agents);
        pthread_mutex_destroy(&s->lock);
    }
    free(r->index.v);
    pthread_mutex_destroy(&r->index.lock);
    reg_auth_fini(r);
    reg_msg_close(r->messages);
    free(r->domain);
    free(r->realm);
    free(r->node);
    free(r);
}

/* ---- extensions ------------------------------------------------------- */

bool
reg_ext_number_valid(const char *n)
{
    size_t len = n ? strlen(n) : 0;

    if (len == 0 || len > REG_NUMBER_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                  (c >= 'A' && c <= 'Z') || c == '_' || c == '-' || c == '.' ||
                  c == '+';
        if (!ok)
            return false;
    }
    return true;
}

static void
ext_persist(struct reg *r, const struct ext *e)
{
    if (!r->store)
        return;
    char md5[33], sha[65];
    reg_ha1_hex(e->ha1_md5, sizeof(e->ha1_md5), md5);
    reg_ha1_hex(e->ha1_sha256, sizeof(e->ha1_sha256), sha);
    struct store_ext se = {
        .number = e->number,
        .display = e->display,
        .realm = r->realm,
        .ha1_md5 = md5,
        .ha1_sha256 = sha,
        .enabled = e->enabled,
        .max_push_devices = e->max_push_devices,
    };
    count_store_rc(r, store_ext_put(r->store, &se));
}

int
reg_ext_set(struct reg *r, const char *number, const char *display,
            const char *password, bool enabled, unsigned max_push_devices)
{
    if (!reg_ext_number_valid(number) || !password || !password[0])
        return -EINVAL;
    char md5[65], sha[65];
    sip_digest_ha1(SIP_DIGEST_MD5, slice_cstr(number), slice_cstr(r->realm),
                   slice_cstr(password), md5);
    sip_digest_ha1(SIP_DIGEST_SHA256, slice_cstr(number), slice_cstr(r->realm),
                   slice_cstr(password), sha);

    struct shard *s = reg_shard_of(r, slice_cstr(number));
    pthread_mutex_lock(&s->lock);
    struct ext *e = reg_ext_find(s, slice_cstr(number));
    if (!e) {
        e = shard_add(r, s, number, display ? display : "");
    } else {
        free(e->display);
        e->display = xstrdup(display ? display : "");
    }
    e->ha1_valid = hex_to_bin(md5, e->ha1_md5, sizeof(e->ha1_md5)) &&
                   hex_to_bin(sha, e->ha1_sha256, sizeof(e->ha1_sha256));
    e->enabled = enabled;
    e->max_push_devices = max_push_devices ? max_push_devices : 1;
    ext_persist(r, e);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int
reg_ext_update(struct reg *r, const char *number, const char *display,
               bool enabled, unsigned max_push_devices)
{
    if (!reg_ext_number_valid(number))
        return -ENOENT;
    struct shard *s = reg_shard_of(r, slice_cstr(number));
    pthread_mutex_lock(&s->lock);
    struct ext *e = reg_ext_find(s, slice_cstr(number));
    if (!e) {
        pthread_mutex_unlock(&s->lock);
        return -ENOENT;
    }
    if (display) {
        free(e->display);
        e->display = xstrdup(display);
    }
    e->enabled = enabled;
    if (max_push_devices)
        e->max_push_devices = max_push_devices;
    ext_persist(r, e);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int
reg_ext_get(struct reg *r, const char *number, struct reg_ext_info *out)
{
    if (!reg_ext_number_valid(number))
        return -ENOENT;
    struct shard *s = reg_shard_of(r, slice_cstr(number));
    pthread_mutex_lock(&s->lock);
    struct ext *e = reg_ext_find(s, slice_cstr(number));
    if (!e) {
        pthread_mutex_unlock(&s->lock);
        return -ENOENT;
    }
    *out = (struct reg_ext_info){.enabled = e->enabled,
                                 .max_push_devices = e->max_push_devices};
    snprintf(out->number, sizeof(out->number), "%s", e->number);
    snprintf(out->display, sizeof(out->display), "%s",
             e->display ? e->display : "");
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static int
ext_remove(struct reg *r, const char *number, bool persist)
{
    struct shard *s = reg_shard_of(r, slice_cstr(number));

    pthread_mutex_lock(&s->lock);
    struct ext **pp = &s->tab[bucket_of(s, slice_cstr(number))];
    while (*pp && strcmp((*pp)->number, number) != 0)
        pp = &(*pp)->hnext;
    struct ext *e = *pp;
    if (!e) {
        pthread_mutex_unlock(&s->lock);
        return -ENOENT;
    }
    *pp = e->hnext;
    s->count--;
    index_del(r, e->number);
    if (r->store && persist) {
        count_store_rc(r, store_binding_del_ext(r->store, number));
        count_store_rc(r, store_ext_del(r->store, number));
    }
    ext_free(r, e);
    pthread_mutex_unlock(&s->lock);
    if (r->messages && persist)
        reg_msg_remove_ext(r->messages, number); /* and their rows */
    return 0;
}

int
reg_ext_del(struct reg *r, const char *number)
{
    return ext_remove(r, number, true);
}

int
reg_ext_forget(struct reg *r, const char *number)
{
    /* Its stored messages: the cluster refreshes the message index from
     * the table (reg_msg_refresh), where the other node deleted them. */
    return ext_remove(r, number, false);
}

int
reg_ext_mark_config(struct reg *r, const char *number)
{
    if (!reg_ext_number_valid(number))
        return -ENOENT;
    struct shard *s = reg_shard_of(r, slice_cstr(number));
    pthread_mutex_lock(&s->lock);
    struct ext *e = reg_ext_find(s, slice_cstr(number));
    if (e && !e->from_config) {
        e->from_config = true;
        atomic_fetch_add(&r->n_config, 1);
    }
    pthread_mutex_unlock(&s->lock);
    return e ? 0 : -ENOENT;
}

int
reg_ext_is_config(struct reg *r, const char *number)
{
    if (!reg_ext_number_valid(number))
        return -ENOENT;
    struct shard *s = reg_shard_of(r, slice_cstr(number));
    pthread_mutex_lock(&s->lock);
    struct ext *e = reg_ext_find(s, slice_cstr(number));
    int rc = e ? e->from_config : -ENOENT;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

size_t
reg_ext_config_count(struct reg *r)
{
    return atomic_load(&r->n_config);
}

size_t
reg_ext_config_list(struct reg *r, char (**out)[REG_NUMBER_MAX + 1])
{
    size_t n = 0, cap = atomic_load(&r->n_config) + 16;
    char(*v)[REG_NUMBER_MAX + 1] = xmalloc(cap * sizeof(*v));

    for (size_t i = 0; i < REG_SHARDS; i++) {
        struct shard *s = &r->shards[i];
        pthread_mutex_lock(&s->lock);
        for (size_t bk = 0; bk < s->nbuckets; bk++)
            for (struct ext *e = s->tab[bk]; e; e = e->hnext) {
                if (!e->from_config)
                    continue;
                if (n == cap) {
                    cap *= 2;
                    v = xrealloc(v, cap * sizeof(*v));
                }
                snprintf(v[n++], sizeof(v[0]), "%s", e->number);
            }
        pthread_mutex_unlock(&s->lock);
    }
    *out = v;
    return n;
}

/* ---- restore ---------------------------------------------------------- */

static int
load_ext_cb(const struct store_ext *se, void *arg)
{
    struct reg *r = arg;

    if (!reg_ext_number_valid(se->number)) {
        log_warn("registrar", "store: skipping bad extension number");
        return 0;
    }
    struct shard *s = reg_shard_of(r, slice_cstr(se->number));
    pthread_mutex_lock(&s->lock);
    struct ext *e = reg_ext_find(s, slice_cstr(se->number));
    if (!e) {
        e = shard_add(r, s, se->number, se->display);
    } else if (!e->display) { /* a placeholder of load_binding_cb */
        e->display = xstrdup(se->display);
        index_add(r, e->number);
        atomic_fetch_sub(&r->n_placeholders, 1);
    } else {
        free(e->display);
        e->display = xstrdup(se->display);
    }
    e->enabled = se->enabled;
    e->max_push_devices = se->max_push_devices ? se->max_push_devices : 1;
    if (se->source == STORE_EXT_CONFIG && !e->from_config) {
        e->from_config = true;
        atomic_fetch_add(&r->n_config, 1);
    }
    e->ha1_valid =
        strcmp(se->realm, r->realm) == 0 && strlen(se->ha1_md5) == 32 &&
        strlen(se->ha1_sha256) == 64 &&
        hex_to_bin(se->ha1_md5, e->ha1_md5, sizeof(e->ha1_md5)) &&
        hex_to_bin(se->ha1_sha256, e->ha1_sha256, sizeof(e->ha1_sha256));
    if (!e->ha1_valid) {
        log_warn("registrar",
                 "extension %s: stored credentials are for realm \"%s\", "
                 "not \"%s\": it cannot register until its password is "
                 "set again",
                 se->number, se->realm, r->realm);
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static int
load_binding_cb(const struct store_binding *sb, void *arg)
{
    struct reg *r = arg;
    struct shard *s = reg_shard_of(r, slice_cstr(sb->ext));

    /* Another node's row: the cluster room applies it (reg_remote_set)
     * with that node's address, once the node is known to be alive. */
    if (sb->node && sb->node[0] && strcmp(sb->node, r->node) != 0)
        return 0;
    pthread_mutex_lock(&s->lock);
    struct ext *e = reg_ext_find(s, slice_cstr(sb->ext));
    if (!e && reg_ext_number_valid(sb->ext)) {
        /* Extensions load at the same time (reg_load): its row may come
         * later. Dropped at the end if it never does. */
        e = shard_add(r, s, sb->ext, NULL);
        atomic_fetch_add(&r->n_placeholders, 1);
    }
    if (!e) {
        pthread_mutex_unlock(&s->lock);
        if (r->store)
            store_binding_del(r->store, sb->ext, sb->key);
        return 0;
    }
    struct binding t = {
        .key = sb->key,
        .uri = sb->uri,
        .params = sb->params,
        .instance = sb->instance,
        .call_id = sb->call_id,
        .path = sb->path,
        .user_agent = sb->user_agent,
        .reg_id = sb->reg_id,
        .cseq = sb->cseq,
        .expires_at = sb->expires_at,
        .updated_at = sb->updated_at,
        .transport = (enum reg_transport)sb->transport,
        /* Connections do not survive a restart: route by address. */
        .flow_id = 0,
    };
    reg_addr_parse(sb->source, &t.addr);
    /* Rows come in no order (store.h): put the binding before the first
     * one updated no later than it, which keeps "most recently updated
     * first" (max_contacts, a handful: a short walk). */
    struct binding *b = reg_binding_new(r, e, &t);
    struct list_node *pos = e->bindings.next;
    while (pos != &e->bindings &&
           container_of(pos, struct binding, node)->updated_at > t.updated_at)
        pos = pos->next;
    list_insert_before(pos, &b->node);
    e->binding_count++;
    atomic_fetch_add(&r->n_bindings, 1);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static int64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* CPU time of the calling thread, ms: the restore's own cost, whatever
 * else the machine runs (bench/million-bench.py). */
static int64_t
thread_cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The extensions' half of reg_load, on a thread of its own. */
struct ext_loader {
    struct reg *r;
    int rc;
    int64_t ms, cpu_ms;
};

static void *
ext_load_thread(void *arg)
{
    struct ext_loader *el = arg;
    int64_t t0 = mono_ms(), cpu0 = thread_cpu_ms();

    (void)pthread_setname_np(pthread_self(), "pbx-load-ext");

    el->rc = store_ext_load(el->r->store, load_ext_cb, el->r);
    el->ms = mono_ms() - t0;
    el->cpu_ms = thread_cpu_ms() - cpu0;
    return NULL;
}

/* Drop the placeholders no extension row claimed, with their bindings'
 * rows (bindings of an extension that no longer exists). */
static void
drop_placeholders(struct reg *r)
{
    for (size_t i = 0; i < REG_SHARDS; i++) {
        struct shard *s = &r->shards[i];
        pthread_mutex_lock(&s->lock);
        for (size_t bk = 0; bk < s->nbuckets; bk++) {
            struct ext **pp = &s->tab[bk];
            while (*pp) {
                struct ext *e = *pp;
                if (e->display) {
                    pp = &e->hnext;
                    continue;
                }
                *pp = e->hnext;
                s->count--;
                struct list_node *pos;
                for (pos = e->bindings.next; pos != &e->bindings;
                     pos = pos->next)
                    reg_binding_forget(r, e,
                                       container_of(pos, struct binding, node));
                ext_free(r, e);
                atomic_fetch_sub(&r->n_placeholders, 1);
            }
        }
        pthread_mutex_unlock(&s->lock);
    }
}

int
reg_load(struct reg *r)
{
    if (!r->store)
        return 0;
    int64_t t0 = mono_ms(), cpu0 = thread_cpu_ms();
    /* Size the shards' tables once for what is stored (two extensions a
     * bucket, as shard_add keeps them) instead of doubling them through
     * a million rows. */
    size_t rows = 0;
    if (store_count(r->store, "extensions", &rows) == 0) {
        for (size_t i = 0; i < REG_SHARDS; i++) {
            struct shard *s = &r->shards[i];
            pthread_mutex_lock(&s->lock);
            while (2 * s->nbuckets < rows / REG_SHARDS + 1)
                shard_grow(s);
            pthread_mutex_unlock(&s->lock);
        }
    }
    /* Extensions and bindings load at the same time, on two threads and
     * two SQLite connections (at a million, seconds each): a binding
     * whose extension has not arrived yet gets a placeholder that the
     * extension's row fills in. Extension rows keep the index in order
     * (placeholders are not in it). */
    r->loading = true;
    struct ext_loader el = {.r = r};
    pthread_t th;
    bool threaded = pthread_create(&th, NULL, ext_load_thread, &el) == 0;
    if (!threaded)
        ext_load_thread(&el);
    int64_t t1 = mono_ms(), bcpu0 = thread_cpu_ms();
    int rc = store_binding_load(r->store, reg_now_s(r), load_binding_cb, r);
    int64_t bind_ms = mono_ms() - t1, bind_cpu = thread_cpu_ms() - bcpu0;
    if (threaded)
        pthread_join(th, NULL);
    r->loading = false;
    if (rc == 0)
        rc = el.rc;
    if (atomic_load(&r->n_placeholders) > 0)
        drop_placeholders(r);
    pthread_mutex_lock(&r->index.lock);
    index_sort(&r->index);
    pthread_mutex_unlock(&r->index.lock);
    if (rc == 0 && !r->messages) {
        char err[256];
        struct reg_msg_opts mo = {.store = r->store,
                                  .cfg = r->msg_cfg,
                                  .clock_ms = r->clock_ms,
                                  .clock_arg = r->clock_arg};
        rc = reg_msg_open(&mo, &r->messages, err, sizeof(err));
        if (rc < 0)
            log_error("registrar", "%s", err);
    }
    r->msg_cfg = NULL; /* borrowed until here */
    if (rc == 0)
        log_info("registrar",
                 "restored extensions=%zu bindings=%zu in %lld ms "
                 "(extensions %lld ms, CPU %lld ms; bindings %lld ms, CPU "
                 "%lld ms; together CPU %lld ms)",
                 (size_t)atomic_load(&r->n_extensions),
                 (size_t)atomic_load(&r->n_bindings),
                 (long long)(mono_ms() - t0), (long long)el.ms,
                 (long long)el.cpu_ms, (long long)bind_ms, (long long)bind_cpu,
                 (long long)(thread_cpu_ms() - cpu0 + el.cpu_ms));
    return rc < 0 ? rc : 0;
}

/* ---- lookup / listing / expiry ---------------------------------------- */

/* Room for a binding's RFC 8599 params as C strings (fill_contact). */
struct pn_strs {
    char provider[16];
    char prid[PUSHDEV_PRID_MAX + 1];
    char param[PUSHDEV_PARAM_MAX + 1];
};

/* c borrows b's strings, and ps's for the push params. */
static void
fill_contact(struct reg_contact *c, const struct binding *b, struct pn_strs *ps)
{
    c->uri = b->uri;
    c->pn_provider = pn_get(b, REG_PN_PROVIDER, ps->provider);
    c->pn_prid = pn_get(b, REG_PN_PRID, ps->prid);
    c->pn_param = pn_get(b, REG_PN_PARAM, ps->param);
    c->params = b->params;
    c->instance = b->instance;
    c->reg_id = b->reg_id;
    c->expires_at = b->expires_at;
    c->call_id = b->call_id;
    c->cseq = b->cseq;
    c->path = b->path;
    c->user_agent = b->user_agent;
    c->transport = b->transport;
    memset(&c->addr, 0, sizeof(c->addr));
    memcpy(&c->addr, &b->addr, sizeof(b->addr));
    c->flow_id = b->flow_id;
    c->node = b->holder;
}

static const char *
arena_cstr(struct arena *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}

int
reg_contact_copy(struct arena *a, struct reg_contact *c,
                 const struct binding *b)
{
    struct pn_strs ps;

    fill_contact(c, b, &ps);
    c->uri = arena_cstr(a, b->uri);
    c->pn_provider = arena_cstr(a, ps.provider);
    c->pn_prid = arena_cstr(a, ps.prid);
    c->pn_param = arena_cstr(a, ps.param);
    c->params = arena_cstr(a, b->params);
    c->instance = arena_cstr(a, b->instance);
    c->call_id = arena_cstr(a, b->call_id);
    c->path = arena_cstr(a, b->path);
    c->user_agent = arena_cstr(a, b->user_agent);
    c->node = arena_cstr(a, b->holder);
    if (!c->node || !c->uri || !c->pn_provider || !c->pn_prid || !c->pn_param ||
        !c->params || !c->instance || !c->call_id || !c->path || !c->user_agent)
        return -ENOMEM;
    return 0;
}

void
reg_set_bind_cb(struct reg *r, reg_bind_cb *cb, void *arg)
{
    r->bind_cb = cb;
    r->bind_arg = arg;
}

int
reg_lookup(struct reg *r, struct slice ext, struct arena *a,
           struct reg_contact **out, size_t *count)
{
    int64_t now = reg_now_s(r);
    struct shard *s = reg_shard_of(r, ext);
    int rc = 0;

    *out = NULL;
    *count = 0;
    pthread_mutex_lock(&s->lock);
    struct ext *e = reg_ext_find(s, ext);
    if (!e) {
        rc = -ENOENT;
        goto out;
    }
    if (e->binding_count == 0)
        goto out;
    struct reg_contact *v =
        arena_alloc(a, e->binding_count * sizeof(struct reg_contact));
    if (!v) {
        rc = -ENOMEM;
        goto out;
    }
    size_t n = 0;
    struct list_node *pos, *tmp;
    list_for_each_safe(pos, tmp, &e->bindings)
    {
        const struct binding *b = container_of(pos, struct binding, node);
        if (!reg_binding_live(b, now))
            continue;
        if (reg_contact_copy(a, &v[n], b) < 0) {
            rc = -ENOMEM;
            goto out;
        }
        v[n].expires_at = reg_binding_expiry(b, now);
        n++;
    }
    *out = v;
    *count = n;
out:
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* cb for extension e with its unexpired bindings. Under e's shard lock. */
static void
list_ext_locked(const struct ext *e, int64_t now, reg_list_cb *cb, void *arg)
{
    /* max_contacts is small (config max 64): stack arrays (~30 KB). */
    struct reg_contact v[64];
    struct pn_strs ps[64];
    size_t n = 0;
    const struct list_node *pos;

    for (pos = e->bindings.next; pos != &e->bindings; pos = pos->next) {
        const struct binding *b = container_of(pos, struct binding, node);
        if (reg_binding_live(b, now) && n < 64) {
            fill_contact(&v[n], b, &ps[n]);
            v[n].expires_at = reg_binding_expiry(b, now);
            n++;
        }
    }
    cb(e->number, e->display, e->enabled, v, n, arg);
}

void
reg_list(struct reg *r, reg_list_cb *cb, void *arg)
{
    int64_t now = reg_now_s(r);

    for (size_t i = 0; i < REG_SHARDS; i++) {
        struct shard *s = &r->shards[i];
        pthread_mutex_lock(&s->lock);
        for (size_t bk = 0; bk < s->nbuckets; bk++)
            for (struct ext *e = s->tab[bk]; e; e = e->hnext)
                list_ext_locked(e, now, cb, arg);
        pthread_mutex_unlock(&s->lock);
    }
}

int
reg_list_ext(struct reg *r, const char *number, reg_list_cb *cb, void *arg)
{
    if (!reg_ext_number_valid(number))
        return -ENOENT;
    struct shard *s = reg_shard_of(r, slice_cstr(number));
    pthread_mutex_lock(&s->lock);
    struct ext *e = reg_ext_find(s, slice_cstr(number));
    if (e)
        list_ext_locked(e, reg_now_s(r), cb, arg);
    pthread_mutex_unlock(&s->lock);
    return e ? 0 : -ENOENT;
}

size_t
reg_list_page(struct reg *r, const char *after, size_t limit, reg_list_cb *cb,
              void *arg, struct reg_page *pg)
{
    struct ext_index *ix = &r->index;
    char(*num)[REG_NUMBER_MAX + 1] = NULL;
    size_t n = 0, listed = 0;
    char from[REG_NUMBER_MAX + 1] = "";

    /* after may be pg->next of the previous page: copy it first. */
    if (after)
        snprintf(from, sizeof(from), "%s", after);
    *pg = (struct reg_page){0};
    if (limit > REG_PAGE_MAX)
        limit = REG_PAGE_MAX;
    if (limit)
        num = xmalloc(limit * sizeof(*num));
    /* Copy the page's numbers; the pointers are valid only under the
     * index lock (an extension leaves the index before it is freed). */
    pthread_mutex_lock(&ix->lock);
    index_sort(ix);
    size_t at = from[0] ? index_after(ix, from) : 0;
    for (; n < limit && at + n < ix->n; n++)
        snprintf(num[n], sizeof(num[n]), "%s", ix->v[at + n]);
    pg->total = ix->n;
    pg->more = at + n < ix->n;
    pthread_mutex_unlock(&ix->lock);

    int64_t now = reg_now_s(r);
    for (size_t i = 0; i < n; i++) {
        struct shard *s = reg_shard_of(r, slice_cstr(num[i]));
        pthread_mutex_lock(&s->lock);
        struct ext *e = reg_ext_find(s, slice_cstr(num[i]));
        if (e) { /* else deleted meanwhile: left out */
            list_ext_locked(e, now, cb, arg);
            listed++;
        }
        pthread_mutex_unlock(&s->lock);
    }
    if (n)
        snprintf(pg->next, sizeof(pg->next), "%s", num[n - 1]);
    free(num);
    return listed;
}

static size_t
expire_shard(struct reg *r, struct shard *s, int64_t now)
{
    size_t dropped = 0;

    pthread_mutex_lock(&s->lock);
    for (size_t bk = 0; bk < s->nbuckets; bk++) {
        for (struct ext *e = s->tab[bk]; e; e = e->hnext) {
            struct list_node *pos, *tmp;
            list_for_each_safe(pos, tmp, &e->bindings)
            {
                struct binding *b = container_of(pos, struct binding, node);
                if (!reg_binding_live(b, now)) {
                    reg_binding_expire(r, e, b);
                    dropped++;
                }
            }
        }
    }
    pthread_mutex_unlock(&s->lock);
    return dropped;
}

struct reg_msg_table *
reg_messages(struct reg *r)
{
    return r->messages;
}

size_t
reg_expire(struct reg *r)
{
    int64_t now = reg_now_s(r);
    size_t dropped = 0;

    for (size_t i = 0; i < REG_SHARDS; i++)
        dropped += expire_shard(r, &r->shards[i], now);
    return dropped;
}

size_t
reg_expire_some(struct reg *r, unsigned shards)
{
    int64_t now = reg_now_s(r);
    size_t dropped = 0;

    if (shards > REG_SHARDS)
        shards = REG_SHARDS;
    for (unsigned i = 0; i < shards; i++) {
        size_t k = atomic_fetch_add(&r->expire_next, 1) % REG_SHARDS;
        dropped += expire_shard(r, &r->shards[k], now);
    }
    if (r->messages)
        reg_msg_expire(r->messages); /* counted in its own stats */
    return dropped;
}

void
reg_get_stats(struct reg *r, struct reg_stats *out)
{
    *out = (struct reg_stats){
        .registers = atomic_load(&r->n_registers),
        .ok = atomic_load(&r->n_ok),
        .challenged = atomic_load(&r->n_challenged),
        .auth_failures = atomic_load(&r->n_auth_failures),
        .throttled = atomic_load(&r->n_throttled),
        .blocks = atomic_load(&r->n_blocks),
        .digests = atomic_load(&r->n_digests),
        .throttle_overflows = atomic_load(&r->n_overflows),
        .store_errors = atomic_load(&r->n_store_errors),
        .extensions = atomic_load(&r->n_extensions),
        .bindings = atomic_load(&r->n_bindings),
    };
}

/* ---- cluster: remote bindings ----------------------------------------- */

int
reg_ext_apply(struct reg *r, const struct store_ext *e)
{
    if (!e || !reg_ext_number_valid(e->number))
        return -EINVAL;
    return load_ext_cb(e, r);
}

static struct binding *
find_key(struct ext *e, const char *key, bool remote)
{
    struct list_node *pos, *tmp;

    list_for_each_safe(pos, tmp, &e->bindings)
    {
        struct binding *b = container_of(pos, struct binding, node);
        if ((b->holder[0] != '\0') == remote && strcmp(b->key, key) == 0)
            return b;
    }
    return NULL;
}

int
reg_remote_set(struct reg *r, const char *ext, const struct store_binding *rows,
               size_t n)
{
    int64_t now = reg_now_s(r);
    struct shard *s = reg_shard_of(r, slice_cstr(ext));
    struct list_node fresh_list, *pos, *tmp;
    struct arena a;
    struct reg_contact *fresh = NULL;
    size_t nfresh = 0, added = 0;

    list_init(&fresh_list);
    pthread_mutex_lock(&s->lock);
    struct ext *e = reg_ext_find(s, slice_cstr(ext));
    if (!e) {
        pthread_mutex_unlock(&s->lock);
        return -ENOENT;
    }
    arena_init(&a, 1u << 20);
    if (n)
        fresh = arena_alloc(&a, n * sizeof(*fresh));
    for (size_t i = 0; i < n; i++) {
        const struct store_binding *sb = &rows[i];
        if (!sb->node || !sb->node[0] || strcmp(sb->node, r->node) == 0 ||
            sb->expires_at <= now || !sb->key || !sb->key[0])
            continue;
        struct binding *local = find_key(e, sb->key, false);
        if (local && local->updated_at >= sb->updated_at)
            continue; /* ours is newer: the row will be overwritten */
        if (local)
            reg_binding_unlink_free(r, e, local); /* the phone moved */
        struct binding *old = find_key(e, sb->key, true);
        bool is_new = !old || strcmp(old->holder, sb->node) != 0 ||
                      strcmp(old->uri, sb->uri ? sb->uri : "") != 0;
        if (old)
            reg_binding_unlink_free(r, e, old);
        struct binding t = {
            .key = sb->key,
            .uri = sb->uri,
            .params = sb->params,
            .instance = sb->instance,
            .call_id = sb->call_id,
            .path = "",
            .user_agent = sb->user_agent,
            .holder = sb->node,
            .reg_id = sb->reg_id,
            .cseq = sb->cseq,
            .expires_at = sb->expires_at,
            .updated_at = sb->updated_at,
            .transport = REG_TP_UDP, /* to the node, which holds the flow */
            .flow_id = 0,
        };
        if (!sb->source || reg_addr_parse(sb->source, &t.addr) < 0)
            continue;
        struct binding *b = reg_binding_new(r, e, &t);
        /* Kept aside until the old remote ones are gone (below). */
        list_push_back(&fresh_list, &b->node);
        added += is_new;
        if (is_new && r->bind_cb && fresh &&
            reg_contact_copy(&a, &fresh[nfresh], b) == 0)
            nfresh++;
    }
    list_for_each_safe(pos, tmp, &e->bindings)
    {
        struct binding *b = container_of(pos, struct binding, node);
        if (b->holder[0])
            reg_binding_unlink_free(r, e, b);
    }
    list_for_each_safe(pos, tmp, &fresh_list)
    {
        struct binding *b = container_of(pos, struct binding, node);
        list_remove(&b->node);
        /* Keep "most recently updated first" (max_contacts: short). */
        struct list_node *at = e->bindings.next;
        while (at != &e->bindings &&
               container_of(at, struct binding, node)->updated_at >
                   b->updated_at)
            at = at->next;
        list_insert_before(at, &b->node);
        e->binding_count++;
        atomic_fetch_add(&r->n_bindings, 1);
    }
    pthread_mutex_unlock(&s->lock);
    if (nfresh)
        r->bind_cb(ext, fresh, nfresh, r->bind_arg);
    arena_fini(&a);
    return (int)added;
}

static size_t
walk_node(struct reg *r, const char *node, bool drop)
{
    int64_t now = reg_now_s(r);
    size_t count = 0;

    for (size_t i = 0; i < REG_SHARDS; i++) {
        struct shard *s = &r->shards[i];
        pthread_mutex_lock(&s->lock);
        for (size_t k = 0; k < s->nbuckets; k++)
            for (struct ext *e = s->tab[k]; e; e = e->hnext) {
                struct list_node *pos, *tmp;
                list_for_each_safe(pos, tmp, &e->bindings)
                {
                    struct binding *b =
                        container_of(pos, struct binding, node);
                    if (strcmp(b->holder, node) != 0 ||
                        (!drop && !reg_binding_live(b, now)))
                        continue;
                    count++;
                    if (drop)
                        reg_binding_unlink_free(r, e, b);
                }
            }
        pthread_mutex_unlock(&s->lock);
    }
    return count;
}

size_t
reg_remote_drop_node(struct reg *r, const char *node)
{
    if (!node || !node[0])
        return 0; /* never this node's own */
    return walk_node(r, node, true);
}

size_t
reg_persist_local(struct reg *r)
{
    int64_t now = reg_now_s(r);
    size_t count = 0;

    if (!r->store)
        return 0;
    for (size_t i = 0; i < REG_SHARDS; i++) {
        struct shard *s = &r->shards[i];
        pthread_mutex_lock(&s->lock);
        for (size_t k = 0; k < s->nbuckets; k++)
            for (struct ext *e = s->tab[k]; e; e = e->hnext) {
                struct list_node *pos, *tmp;
                list_for_each_safe(pos, tmp, &e->bindings)
                {
                    const struct binding *b =
                        container_of(pos, struct binding, node);
                    if (b->holder[0] || b->expires_at <= now)
                        continue;
                    reg_binding_persist(r, e, b);
                    count++;
                }
            }
        pthread_mutex_unlock(&s->lock);
    }
    return count;
}

size_t
reg_count_node(struct reg *r, const char *node)
{
    return walk_node(r, node ? node : "", false);
}
