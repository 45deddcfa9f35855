/*
 * registrar/reg_auth: digest authentication for REGISTER and for the
 * requests the proxy serves (one path, reg_auth_check), stateless nonces,
 * the nonce-count replay table and the per-source brute-force throttle.
 *
 * Nonce = 16 hex digits of the issue time (unix s) + 16 hex digits of a
 * per-process counter (two challenges in one second must differ, or the
 * second client's nc=1 would look like a replay) + the first 16 bytes of
 * HMAC-SHA256(secret, time-hex counter-hex ":" realm) in hex. Verifying needs
 * no per-nonce state, so challenges cost nothing to store and a flood of
 * unauthenticated REGISTERs cannot fill memory. The secret is random per
 * process: after a restart old nonces fail the MAC and the client is sent
 * a fresh challenge with stale=true (its credentials were fine).
 *
 * Expected load: one nonce-table insert per authenticated REGISTER, and
 * nonce_table_size entries at most (about 100 bytes each); one throttle
 * entry per source that failed (throttle_table_size at most, about 80
 * bytes each, allocated as sources fail).
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/xmalloc.h"
#include "sip/digest.h"
#include "registrar/reg_int.h"

#define FNV_BASIS 1469598103934665603ULL

/* FNV-1a from state h (FNV_BASIS, or a seeded state). */
static uint64_t
fnv1a_from(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;

    for (size_t i = 0; i < n; i++) {
        h ^= c[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static uint64_t
fnv1a(const void *p, size_t n)
{
    return fnv1a_from(FNV_BASIS, p, n);
}

static void
hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
}

static int throttle_init(struct reg *r);
static int mac_keys(struct reg *r);
static void throttle_fini(struct throttle *th);

int
reg_auth_init(struct reg *r)
{
    uint64_t seq0;
    if (RAND_bytes(r->secret, sizeof(r->secret)) != 1 ||
        RAND_bytes((unsigned char *)&seq0, sizeof(seq0)) != 1)
        return -EIO;
    r->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (r->sha256 == NULL || mac_keys(r) < 0)
        return -EIO;
    /* Random start (nonces differ across restarts even within one
     * second), top bit clear so the counter never wraps. */
    atomic_store(&r->nonce_seq, seq0 >> 1);
    struct nonce_table *nt = &r->nonces;
    pthread_mutex_init(&nt->lock, NULL);
    nt->cap = r->cfg.nonce_table_size ? r->cfg.nonce_table_size : 65536;
    nt->nbuckets = 1;
    while (nt->nbuckets < nt->cap)
        nt->nbuckets <<= 1;
    nt->tab = xcalloc(nt->nbuckets, sizeof(*nt->tab));
    list_init(&nt->fifo);
    if (throttle_init(r) < 0)
        return -EIO;
    /* The dummy HA1s: a random password, for a name no extension can
     * have (reg_ext_number_valid refuses ':'). */
    uint8_t pw[16];
    char pw_hex[33];
    if (RAND_bytes(pw, sizeof(pw)) != 1)
        return -EIO;
    hex_encode(pw, sizeof(pw), pw_hex);
    pw_hex[32] = '\0';
    sip_digest_ha1(SIP_DIGEST_MD5, SLICE_LIT(":none"), slice_cstr(r->realm),
                   slice_cstr(pw_hex), r->dummy_ha1_md5);
    sip_digest_ha1(SIP_DIGEST_SHA256, SLICE_LIT(":none"), slice_cstr(r->realm),
                   slice_cstr(pw_hex), r->dummy_ha1_sha256);
    return 0;
}

void
reg_auth_fini(struct reg *r)
{
    struct nonce_table *nt = &r->nonces;
    struct list_node *pos, *tmp;

    list_for_each_safe(pos, tmp, &nt->fifo)
    {
        free(container_of(pos, struct nc_entry, fifo));
    }
    free(nt->tab);
    pthread_mutex_destroy(&nt->lock);
    EVP_MD_CTX_free(r->mac_inner);
    EVP_MD_CTX_free(r->mac_outer);
    r->mac_inner = r->mac_outer = NULL;
    EVP_MD_free(r->sha256);
    r->sha256 = NULL;
    if (r->throttle) {
        throttle_fini(r->throttle);
        r->throttle = NULL;
    }
}

/* HMAC-SHA256 (RFC 2104) over "<32 hex>:<realm>", written out with the
 * digest fetched once at init: OpenSSL 3's HMAC() goes through EVP_Q_mac,
 * which fetches the MAC and the digest by name on every call (about 1/8
 * of the CPU of a REGISTER in the profile). Same bytes as HMAC(). The
 * key blocks are hashed once (mac_keys, at init); a MAC copies those two
 * states into this thread's context (no EVP_MD_CTX per call). */
#define HMAC_BLOCK 64
#define NONCE_MAC_LEN 16 /* bytes of the MAC in a nonce (32 hex) */

static pthread_key_t mac_ctx_key;
static pthread_once_t mac_ctx_once = PTHREAD_ONCE_INIT;
static bool mac_ctx_key_ok;

static void
mac_ctx_free(void *p)
{
    EVP_MD_CTX_free(p);
}

static void
mac_ctx_key_init(void)
{
    mac_ctx_key_ok = pthread_key_create(&mac_ctx_key, mac_ctx_free) == 0;
}

/* This thread's context for nonce MACs; *owned when it could not be
 * kept (the caller frees it). NULL: out of memory. */
static EVP_MD_CTX *
mac_ctx(bool *owned)
{
    pthread_once(&mac_ctx_once, mac_ctx_key_init);
    EVP_MD_CTX *ctx = mac_ctx_key_ok ? pthread_getspecific(mac_ctx_key) : NULL;

    *owned = false;
    if (ctx == NULL) { /* this thread's first nonce */
        ctx = EVP_MD_CTX_new();
        *owned = ctx && (!mac_ctx_key_ok ||
                         pthread_setspecific(mac_ctx_key, ctx) != 0);
    }
    return ctx;
}

/* Hash the two key blocks into r->mac_inner / r->mac_outer. */
static int
mac_keys(struct reg *r)
{
    uint8_t ipad[HMAC_BLOCK], opad[HMAC_BLOCK];

    static_assert(sizeof(r->secret) <= HMAC_BLOCK, "key fits one block");
    memset(ipad, 0x36, sizeof(ipad));
    memset(opad, 0x5c, sizeof(opad));
    for (size_t i = 0; i < sizeof(r->secret); i++) {
        ipad[i] ^= r->secret[i];
        opad[i] ^= r->secret[i];
    }
    r->mac_inner = EVP_MD_CTX_new();
    r->mac_outer = EVP_MD_CTX_new();
    bool ok = r->mac_inner && r->mac_outer &&
              EVP_DigestInit_ex2(r->mac_inner, r->sha256, NULL) &&
              EVP_DigestUpdate(r->mac_inner, ipad, sizeof(ipad)) &&
              EVP_DigestInit_ex2(r->mac_outer, r->sha256, NULL) &&
              EVP_DigestUpdate(r->mac_outer, opad, sizeof(opad));
    explicit_bzero(ipad, sizeof(ipad));
    explicit_bzero(opad, sizeof(opad));
    return ok ? 0 : -EIO;
}

/* The first NONCE_MAC_LEN bytes of the MAC of ts_hex (32 hex digits). */
static void
nonce_mac(const struct reg *r, const char *ts_hex, uint8_t *out)
{
    uint8_t inner[EVP_MAX_MD_SIZE], md[EVP_MAX_MD_SIZE];
    unsigned int ilen = 0, mdlen = 0;
    size_t rlen = strlen(r->realm);
    bool owned;
    EVP_MD_CTX *ctx = mac_ctx(&owned);
    int ok;

    if (rlen > 255)
        rlen = 255; /* as the old "%.32s:%s" into 289 bytes did */
    ok = ctx != NULL && EVP_MD_CTX_copy_ex(ctx, r->mac_inner) &&
         EVP_DigestUpdate(ctx, ts_hex, 32) && EVP_DigestUpdate(ctx, ":", 1) &&
         EVP_DigestUpdate(ctx, r->realm, rlen) &&
         EVP_DigestFinal_ex(ctx, inner, &ilen) &&
         EVP_MD_CTX_copy_ex(ctx, r->mac_outer) &&
         EVP_DigestUpdate(ctx, inner, ilen) &&
         EVP_DigestFinal_ex(ctx, md, &mdlen);
    if (owned)
        EVP_MD_CTX_free(ctx);
    if (!ok || mdlen < NONCE_MAC_LEN)
        abort(); /* OOM inside OpenSSL: fatal (style.md §4) */
    memcpy(out, md, NONCE_MAC_LEN);
}

void
reg_nonce_make(struct reg *r, int64_t now_s, char *out)
{
    uint64_t seq = atomic_fetch_add(&r->nonce_seq, 1);
    uint64_t ts = (uint64_t)now_s;
    uint8_t be[16], mac[NONCE_MAC_LEN];

    /* "%016llx%016llx" of now_s and seq, without printf. */
    for (int i = 0; i < 8; i++) {
        be[i] = (uint8_t)(ts >> (56 - 8 * i));
        be[8 + i] = (uint8_t)(seq >> (56 - 8 * i));
    }
    hex_encode(be, sizeof(be), out);
    nonce_mac(r, out, mac);
    hex_encode(mac, sizeof(mac), out + 32);
    out[REG_NONCE_LEN] = '\0';
}

/* n bytes from 2n lowercase hex digits (what reg_nonce_make writes; any
 * other spelling is not one of our nonces). */
static bool
parse_hex_lower(const char *p, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n; i++) {
        int v = 0;
        for (int j = 0; j < 2; j++) {
            char c = p[2 * i + j];
            int d = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                           : -1;
            if (d < 0)
                return false;
            v = v << 4 | d;
        }
        out[i] = (uint8_t)v;
    }
    return true;
}

static bool
parse_hex_u64(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;

    if (n == 0 || n > 16)
        return false;
    for (size_t i = 0; i < n; i++) {
        int d = hex_digit(p[i]);
        if (d < 0)
            return false;
        v = (v << 4) | (uint64_t)d;
    }
    *out = v;
    return true;
}

/* Drop entries whose nonce can no longer be accepted anyway. */
static void
nt_prune(struct reg *r, int64_t now_s)
{
    struct nonce_table *nt = &r->nonces;

    while (!list_empty(&nt->fifo)) {
        struct nc_entry *e = container_of(nt->fifo.next, struct nc_entry, fifo);
        if (e->ts + (int64_t)r->cfg.nonce_ttl_s >= now_s && nt->count < nt->cap)
            break;
        if (e->ts + (int64_t)r->cfg.nonce_ttl_s >= now_s &&
            e->seq > nt->low_water_seq)
            nt->low_water_seq = e->seq; /* evicting a live nonce */
        uint64_t h = fnv1a(e->nonce, REG_NONCE_LEN) & (nt->nbuckets - 1);
        struct nc_entry **pp = &nt->tab[h];
        while (*pp != e)
            pp = &(*pp)->hnext;
        *pp = e->hnext;
        list_remove(&e->fifo);
        nt->count--;
        free(e);
    }
}

enum nonce_state
reg_nonce_check(struct reg *r, struct slice nonce, struct slice nc,
                int64_t now_s)
{
    uint64_t ts, seq, ncv;
    uint8_t mac[NONCE_MAC_LEN], got[NONCE_MAC_LEN];

    /* The MAC is compared in binary: no hex of our own to write. */
    if (nonce.len != REG_NONCE_LEN || !parse_hex_u64(nonce.ptr, 16, &ts) ||
        !parse_hex_u64(nonce.ptr + 16, 16, &seq) ||
        !parse_hex_lower(nonce.ptr + 32, sizeof(got), got))
        return NONCE_BAD;
    nonce_mac(r, nonce.ptr, mac);
    if (CRYPTO_memcmp(mac, got, sizeof(mac)) != 0)
        return NONCE_BAD;
    if ((int64_t)ts > now_s + 5) /* from the future: not ours */
        return NONCE_BAD;
    if ((int64_t)ts + (int64_t)r->cfg.nonce_ttl_s < now_s)
        return NONCE_STALE;
    if (nc.len != 8 || !parse_hex_u64(nc.ptr, 8, &ncv) || ncv == 0)
        return NONCE_REPLAY;

    struct nonce_table *nt = &r->nonces;
    enum nonce_state st = NONCE_OK;
    uint64_t h = fnv1a(nonce.ptr, REG_NONCE_LEN) & (nt->nbuckets - 1);
    pthread_mutex_lock(&nt->lock);
    nt_prune(r, now_s);
    struct nc_entry *e = nt->tab[h];
    while (e && memcmp(e->nonce, nonce.ptr, REG_NONCE_LEN) != 0)
        e = e->hnext;
    if (e) {
        if (ncv <= e->nc)
            st = NONCE_REPLAY;
        else
            e->nc = (uint32_t)ncv;
    } else if (seq <= nt->low_water_seq) {
        st = NONCE_STALE;
    } else {
        e = xcalloc(1, sizeof(*e));
        memcpy(e->nonce, nonce.ptr, REG_NONCE_LEN);
        e->nc = (uint32_t)ncv;
        e->ts = (int64_t)ts;
        e->seq = seq;
        e->hnext = nt->tab[h];
        nt->tab[h] = e;
        list_push_back(&nt->fifo, &e->fifo);
        nt->count++;
    }
    pthread_mutex_unlock(&nt->lock);
    return st;
}

/* ---- throttle --------------------------------------------------------- */

static void
throttle_key_of(const struct throttle *th, const union reg_addr *a,
                struct throttle_key *k)
{
    memset(k, 0, sizeof(*k));
    if (a->sa.sa_family == AF_INET) {
        k->family = 4;
        memcpy(k->ip, &a->in.sin_addr, 4);
    } else if (a->sa.sa_family == AF_INET6) {
        const uint8_t *ip = a->in6.sin6_addr.s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&a->in6.sin6_addr)) {
            /* A dual-stack socket's view of an IPv4 peer. */
            k->family = 4;
            memcpy(k->ip, ip + 12, 4);
            return;
        }
        k->family = 6;
        unsigned bits = th->v6_prefix;
        memcpy(k->ip, ip, bits / 8);
        if (bits % 8)
            k->ip[bits / 8] = ip[bits / 8] & (uint8_t)(0xff00u >> (bits % 8));
    }
}

static size_t
throttle_bucket(const struct throttle *th, const struct throttle_key *k)
{
    /* Seeded start state: which sources share a bucket cannot be
     * worked out offline (long chains would make each failure slow). */
    uint64_t h = fnv1a_from(FNV_BASIS ^ th->seed, k, sizeof(*k));
    h *= 0x9e3779b97f4a7c15ULL; /* mix the high bits down */
    return (size_t)(h >> 32) & (th->nbuckets - 1);
}

static struct throttle_entry *
throttle_find(struct throttle *th, const struct throttle_key *k)
{
    struct throttle_entry *e = th->tab[throttle_bucket(th, k)];

    while (e && memcmp(&e->key, k, sizeof(*k)) != 0)
        e = e->hnext;
    return e;
}

static void
throttle_unhash(struct throttle *th, struct throttle_entry *e)
{
    struct throttle_entry **pp = &th->tab[throttle_bucket(th, &e->key)];

    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
}

/* An entry for a source not in the table: fresh, or the oldest ended
 * block, or the least recently failed unblocked source; NULL when every
 * entry is blocked (never evicted before its block ends). */
static struct throttle_entry *
throttle_take(struct throttle *th, const struct throttle_key *k, int64_t now_s)
{
    struct throttle_entry *e = NULL;

    if (th->count < th->cap) {
        e = xcalloc(1, sizeof(*e));
        th->count++;
    } else {
        if (!list_empty(&th->blocked)) {
            struct throttle_entry *b =
                container_of(th->blocked.next, struct throttle_entry, node);
            if (b->blocked_until <= now_s)
                e = b;
        }
        if (!e && !list_empty(&th->idle))
            e = container_of(th->idle.prev, struct throttle_entry, node);
        if (!e)
            return NULL;
        throttle_unhash(th, e);
        list_remove(&e->node);
        memset(e, 0, sizeof(*e));
    }
    e->key = *k;
    size_t h = throttle_bucket(th, k);
    e->hnext = th->tab[h];
    th->tab[h] = e;
    list_push_front(&th->idle, &e->node);
    return e;
}

static int
throttle_init(struct reg *r)
{
    struct throttle *th = xcalloc(1, sizeof(*th));

    r->throttle = th;
    pthread_mutex_init(&th->lock, NULL);
    th->cap = r->cfg.throttle_table_size ? r->cfg.throttle_table_size : 65536;
    th->nbuckets = 1;
    while (th->nbuckets < th->cap)
        th->nbuckets <<= 1;
    th->tab = xcalloc(th->nbuckets, sizeof(*th->tab));
    th->v6_prefix = r->cfg.throttle_ipv6_prefix;
    if (th->v6_prefix == 0 || th->v6_prefix > 128)
        th->v6_prefix = 64;
    list_init(&th->idle);
    list_init(&th->blocked);
    if (RAND_bytes((unsigned char *)&th->seed, sizeof(th->seed)) != 1)
        return -EIO;
    return 0;
}

static void
throttle_fini(struct throttle *th)
{
    struct list_node *lists[2] = {&th->idle, &th->blocked};
    struct list_node *pos, *tmp;

    for (size_t i = 0; i < 2; i++) {
        list_for_each_safe(pos, tmp, lists[i])
        {
            free(container_of(pos, struct throttle_entry, node));
        }
    }
    free(th->tab);
    pthread_mutex_destroy(&th->lock);
    free(th);
}

bool
reg_throttle_blocked(struct reg *r, const union reg_addr *a, int64_t now_s)
{
    struct throttle *th = r->throttle;
    struct throttle_key k;

    if (r->cfg.auth_fail_threshold == 0)
        return false;
    throttle_key_of(th, a, &k);
    pthread_mutex_lock(&th->lock);
    struct throttle_entry *e = throttle_find(th, &k);
    if (!e)
        e = &th->overflow;
    bool blocked = e->blocked_until > now_s;
    pthread_mutex_unlock(&th->lock);
    return blocked;
}

bool
reg_throttle_fail(struct reg *r, const union reg_addr *a, int64_t now_s,
                  uint32_t *fails)
{
    struct throttle *th = r->throttle;
    struct throttle_key k;
    bool now_blocked = false;

    if (r->cfg.auth_fail_threshold == 0)
        return false;
    throttle_key_of(th, a, &k);
    pthread_mutex_lock(&th->lock);
    struct throttle_entry *e = throttle_find(th, &k);
    if (!e)
        e = throttle_take(th, &k, now_s);
    if (!e) {
        e = &th->overflow;
        atomic_fetch_add(&r->n_overflows, 1);
    } else if (!e->on_blocked || e->blocked_until <= now_s) {
        /* Most recently failed first; an ended block is idle again. */
        list_remove(&e->node);
        list_push_front(&th->idle, &e->node);
        e->on_blocked = false;
    }
    if (e->window_start + (int64_t)r->cfg.auth_fail_window_s < now_s ||
        e->fails == 0) {
        e->window_start = now_s;
        e->fails = 0;
    }
    e->fails++;
    if (e->fails >= r->cfg.auth_fail_threshold && e->blocked_until <= now_s) {
        e->blocked_until = now_s + (int64_t)r->cfg.auth_block_s;
        now_blocked = true;
        if (e != &th->overflow) {
            /* auth_block_s is fixed: the tail has the latest end. */
            list_remove(&e->node);
            list_push_back(&th->blocked, &e->node);
            e->on_blocked = true;
        }
    }
    if (fails)
        *fails = e->fails;
    pthread_mutex_unlock(&th->lock);
    return now_blocked;
}

/* ---- digest authentication (REGISTER and proxy) ------------------------ */

bool
reg_log_allowed(int64_t now_s)
{
    static _Atomic int64_t window;
    static atomic_int count;

    if (atomic_load(&window) != now_s) {
        atomic_store(&window, now_s);
        atomic_store(&count, 0);
    }
    return atomic_fetch_add(&count, 1) < 20;
}

/* Challenge order per enum reg_algs; NULL ends a row. */
static const char *const alg_order[4][3] = {
    [REG_ALGS_SHA256_MD5] = {"SHA-256", "MD5", NULL},
    [REG_ALGS_MD5_SHA256] = {"MD5", "SHA-256", NULL},
    [REG_ALGS_SHA256] = {"SHA-256", NULL, NULL},
    [REG_ALGS_MD5] = {"MD5", NULL, NULL},
};

static const char *const *
offered(const struct reg *r)
{
    int k = r->cfg.algorithms;
    return alg_order[k >= 0 && k < 4 ? k : 0];
}

static bool
is_sha256(enum sip_digest_alg alg)
{
    return alg == SIP_DIGEST_SHA256 || alg == SIP_DIGEST_SHA256_SESS;
}

static bool
alg_offered(const struct reg *r, enum sip_digest_alg alg)
{
    bool sha = is_sha256(alg);
    bool md5 = alg == SIP_DIGEST_MD5 || alg == SIP_DIGEST_MD5_SESS;
    for (const char *const *a = offered(r); *a; a++)
        if ((sha && strcmp(*a, "SHA-256") == 0) ||
            (md5 && strcmp(*a, "MD5") == 0))
            return true;
    return false;
}

/* One challenge line per offered algorithm, all with the same nonce. */
static int
challenge(struct reg *r, const struct reg_auth_req *q, bool stale,
          struct buf *hdrs, const char **reason)
{
    bool proxy = q->kind == REG_AUTH_PROXY;
    char nonce[REG_NONCE_LEN + 1];

    reg_nonce_make(r, q->now_s, nonce);
    /* Appended piece by piece: buf_printf's vsnprintf cost more than the
     * nonce's MAC. */
#define LIT(b, s) buf_append(b, s, sizeof(s) - 1)
    for (const char *const *a = offered(r); *a; a++)
        if ((proxy ? LIT(hdrs, "Proxy-Authenticate: Digest realm=\"")
                   : LIT(hdrs, "WWW-Authenticate: Digest realm=\"")) < 0 ||
            buf_append_cstr(hdrs, r->realm) < 0 ||
            LIT(hdrs, "\", nonce=\"") < 0 ||
            buf_append(hdrs, nonce, REG_NONCE_LEN) < 0 ||
            LIT(hdrs, "\", algorithm=") < 0 ||
            buf_append_cstr(hdrs, *a) < 0 || LIT(hdrs, ", qop=\"auth\"") < 0 ||
            (stale && LIT(hdrs, ", stale=true") < 0) ||
            LIT(hdrs, "\r\n") < 0) {
            *reason = NULL;
            return 500;
        }
#undef LIT
    atomic_fetch_add(&r->n_challenged, 1);
    *reason = proxy ? "Proxy Authentication Required" : "Unauthorized";
    return proxy ? 407 : 401;
}

static const char *
method_of(const struct reg_auth_req *q)
{
    return q->kind == REG_AUTH_PROXY ? "proxy" : "register";
}

/* A failed authentication, counted per source: past the threshold the
 * source is blocked and gets 403, else a fresh challenge. */
static int
auth_failed(struct reg *r, const struct reg_auth_req *q,
            const struct sip_auth *au, const char *why, struct buf *hdrs,
            const char **reason)
{
    uint32_t fails = 0;
    bool blocked = reg_throttle_fail(r, q->addr, q->now_s, &fails);
    char src[INET6_ADDRSTRLEN + 16];

    atomic_fetch_add(&r->n_auth_failures, 1);
    if (blocked) {
        atomic_fetch_add(&r->n_blocks, 1);
        if (reg_log_allowed(q->now_s)) {
            reg_addr_format(q->addr, src, sizeof(src));
            log_warn("registrar",
                     "source blocked for %us after %u failed "
                     "authentications src=%s/%s (%s)",
                     r->cfg.auth_block_s, fails, src,
                     q->transport == REG_TP_UDP   ? "udp"
                     : q->transport == REG_TP_TLS ? "tls"
                                                  : "tcp",
                     method_of(q));
        }
        *reason = "Forbidden";
        return 403;
    }
    if (reg_log_allowed(q->now_s)) {
        reg_addr_format(q->addr, src, sizeof(src));
        log_info("registrar",
                 "authentication failed: %s call_id=%.*s src=%s ext=%.*s "
                 "fails=%u (%s)",
                 why, SLICE_ARG(q->m->call_id), src, SLICE_ARG(au->username),
                 fails, method_of(q));
    }
    return challenge(r, q, false, hdrs, reason);
}

struct ext_view {
    bool found, enabled, ha1_valid;
    char ha1_md5[33], ha1_sha256[65];
};

/* The extension's state, and its HA1 for the algorithm (sha256 or MD5)
 * in hex: only that one is written out. */
static void
ext_snapshot(struct reg *r, struct slice number, bool sha256,
             struct ext_view *v)
{
    struct shard *s = reg_shard_of(r, number);

    uint8_t md5[16], sha[32];

    memset(v, 0, sizeof(*v));
    pthread_mutex_lock(&s->lock);
    struct ext *e = reg_ext_find(s, number);
    if (e) {
        v->found = true;
        v->enabled = e->enabled;
        v->ha1_valid = e->ha1_valid;
        memcpy(md5, e->ha1_md5, sizeof(md5));
        memcpy(sha, e->ha1_sha256, sizeof(sha));
    }
    pthread_mutex_unlock(&s->lock);
    if (v->found && sha256) /* stored in binary (reg_int.h struct ext) */
        reg_ha1_hex(sha, sizeof(sha), v->ha1_sha256);
    else if (v->found)
        reg_ha1_hex(md5, sizeof(md5), v->ha1_md5);
}

int
reg_auth_check(struct reg *r, const struct reg_auth_req *q, struct buf *hdrs,
               const char **reason, char *ext, size_t cap)
{
    const struct sip_msg *m = q->m;
    enum sip_hdr_id want = q->kind == REG_AUTH_PROXY
                               ? SIP_HDR_PROXY_AUTHORIZATION
                               : SIP_HDR_AUTHORIZATION;
    struct sip_auth au;
    bool have = false;

    *reason = NULL;
    for (size_t i = 0; i < m->hdr_count; i++) {
        if (m->hdrs[i].id != want)
            continue;
        const char *why;
        struct sip_auth cand;
        if (sip_auth_parse(m->hdrs[i].value, &cand, &why) < 0) {
            *reason = "Bad Authorization";
            return 400;
        }
        if (!slice_eq_nocase_cstr(cand.scheme, "Digest") ||
            !slice_eq_cstr(cand.realm, r->realm))
            continue; /* someone else's credentials (§22.3, §22.4) */
        au = cand;
        have = true;
        break;
    }
    if (!have || !alg_offered(r, au.alg))
        return challenge(r, q, false, hdrs, reason);
    if (au.username.len == 0 || au.nonce.len == 0 || au.uri.len == 0 ||
        au.response.len != sip_digest_hex_len(au.alg)) {
        *reason = "Bad Authorization";
        return 400;
    }
    /* We always offer qop=auth, and nonce-count replay protection needs
     * nc, so RFC 2069 answers (no qop) are refused as malformed. */
    if (!slice_eq_nocase_cstr(au.qop, "auth") || au.nc.len != 8 ||
        au.cnonce.len == 0) {
        *reason = "Bad Authorization qop";
        return 400;
    }
    if (q->user.ptr && !slice_eq(au.username, q->user)) {
        /* A valid account may not register another extension; counted
         * as a failure because guessing pairs is what scanners do. */
        if (reg_throttle_fail(r, q->addr, q->now_s, NULL))
            atomic_fetch_add(&r->n_blocks, 1);
        atomic_fetch_add(&r->n_auth_failures, 1);
        *reason = "Username Does Not Match To";
        return 403;
    }
    if (au.username.len > REG_NUMBER_MAX || au.username.len >= cap) {
        *reason = "Bad Authorization";
        return 400;
    }

    struct ext_view v;
    ext_snapshot(r, au.username, is_sha256(au.alg), &v);
    if (!v.found && q->kind == REG_AUTH_REGISTER &&
        r->cfg.unknown_ext == REG_UNKNOWN_404) {
        *reason = "Not Found";
        return 404;
    }
    bool known = v.found && v.ha1_valid;
    if (!known) {
        /* Same work as for a known extension: a wrong password must not
         * answer measurably later than an unknown name. */
        memcpy(v.ha1_md5, r->dummy_ha1_md5, sizeof(v.ha1_md5));
        memcpy(v.ha1_sha256, r->dummy_ha1_sha256, sizeof(v.ha1_sha256));
    }
    char expect[65];
    atomic_fetch_add(&r->n_digests, 1);
    if (sip_digest_response(
            au.alg, slice_cstr(is_sha256(au.alg) ? v.ha1_sha256 : v.ha1_md5),
            au.nonce, au.nc, au.cnonce, au.qop, m->method_name, au.uri, m->body,
            expect) < 0) {
        *reason = "Bad Authorization";
        return 400;
    }
    bool match = sip_digest_equal(slice_cstr(expect), au.response);
    if (!known || !match)
        return auth_failed(r, q, &au,
                           known ? "wrong password" : "unknown extension", hdrs,
                           reason);
    if (!v.enabled) {
        *reason = "Extension Disabled";
        return 403;
    }
    switch (reg_nonce_check(r, au.nonce, au.nc, q->now_s)) {
    case NONCE_OK:
        break;
    case NONCE_STALE:
    case NONCE_BAD:
    case NONCE_REPLAY:
    default:
        /* The password was right; only the nonce is unusable (old, from
         * before a restart, evicted, or nc replayed): the client retries
         * silently with a fresh nonce. */
        return challenge(r, q, true, hdrs, reason);
    }
    memcpy(ext, au.username.ptr, au.username.len);
    ext[au.username.len] = '\0';
    return 0;
}

bool
reg_auth_has_credentials(const struct reg *r, const struct sip_msg *req)
{
    for (size_t i = 0; i < req->hdr_count; i++) {
        const char *why;
        struct sip_auth au;

        if (req->hdrs[i].id != SIP_HDR_PROXY_AUTHORIZATION)
            continue;
        /* Unparsable: reg_auth_request answers 400, statefully. */
        if (sip_auth_parse(req->hdrs[i].value, &au, &why) < 0)
            return true;
        if (slice_eq_nocase_cstr(au.scheme, "Digest") &&
            slice_eq_cstr(au.realm, r->realm))
            return true;
    }
    return false;
}

int
reg_auth_request(struct reg *r, const struct sip_msg *req,
                 const struct reg_src *src, char *ext, size_t cap,
                 struct buf *hdrs)
{
    union reg_addr addr;
    const char *reason;

    memset(&addr, 0, sizeof(addr));
    if (src->addr.ss_family == AF_INET)
        memcpy(&addr.in, &src->addr, sizeof(addr.in));
    else if (src->addr.ss_family == AF_INET6)
        memcpy(&addr.in6, &src->addr, sizeof(addr.in6));
    struct reg_auth_req q = {
        .kind = REG_AUTH_PROXY,
        .m = req,
        .addr = &addr,
        .transport = src->transport,
        .now_s = reg_now_s(r),
    };
    if (reg_throttle_blocked(r, &addr, q.now_s)) {
        atomic_fetch_add(&r->n_throttled, 1);
        return 403;
    }
    return reg_auth_check(r, &q, hdrs, &reason, ext, cap);
}
