/*
 * registrar/reg_auth: stateless nonces, the nonce-count replay table and the
 * per-source brute-force throttle.
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
 * nonce_table_size entries at most (about 100 bytes each).
 */
#include <assert.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/xmalloc.h"
#include "sip/digest.h"
#include "registrar/reg_int.h"

static uint64_t
fnv1a(const void *p, size_t n)
{
    const unsigned char *c = p;
    uint64_t h = 1469598103934665603ULL;

    for (size_t i = 0; i < n; i++) {
        h ^= c[i];
        h *= 1099511628211ULL;
    }
    return h;
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

int
reg_auth_init(struct reg *r)
{
    uint64_t seq0;
    if (RAND_bytes(r->secret, sizeof(r->secret)) != 1 ||
        RAND_bytes((unsigned char *)&seq0, sizeof(seq0)) != 1)
        return -EIO;
    r->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (r->sha256 == NULL)
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
    r->throttle = xcalloc(1, sizeof(*r->throttle));
    pthread_mutex_init(&r->throttle->lock, NULL);
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
    EVP_MD_free(r->sha256);
    r->sha256 = NULL;
    if (r->throttle) {
        pthread_mutex_destroy(&r->throttle->lock);
        free(r->throttle);
    }
}

/* HMAC-SHA256 (RFC 2104) over "<32 hex>:<realm>", written out with the
 * digest fetched once at init: OpenSSL 3's HMAC() goes through EVP_Q_mac,
 * which fetches the MAC and the digest by name on every call (about 1/8
 * of the CPU of a REGISTER in the profile). Same bytes as HMAC(). */
#define HMAC_BLOCK 64

static void
nonce_mac(const struct reg *r, const char *ts_hex, char *out_hex)
{
    uint8_t ipad[HMAC_BLOCK], opad[HMAC_BLOCK], inner[EVP_MAX_MD_SIZE];
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int ilen = 0, mdlen = 0;
    size_t rlen = strlen(r->realm);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok;

    static_assert(sizeof(r->secret) <= HMAC_BLOCK, "key fits one block");
    if (rlen > 255)
        rlen = 255; /* as the old "%.32s:%s" into 289 bytes did */
    memset(ipad, 0x36, sizeof(ipad));
    memset(opad, 0x5c, sizeof(opad));
    for (size_t i = 0; i < sizeof(r->secret); i++) {
        ipad[i] ^= r->secret[i];
        opad[i] ^= r->secret[i];
    }
    ok = ctx != NULL && EVP_DigestInit_ex2(ctx, r->sha256, NULL) &&
         EVP_DigestUpdate(ctx, ipad, sizeof(ipad)) &&
         EVP_DigestUpdate(ctx, ts_hex, 32) && EVP_DigestUpdate(ctx, ":", 1) &&
         EVP_DigestUpdate(ctx, r->realm, rlen) &&
         EVP_DigestFinal_ex(ctx, inner, &ilen) &&
         EVP_DigestInit_ex2(ctx, r->sha256, NULL) &&
         EVP_DigestUpdate(ctx, opad, sizeof(opad)) &&
         EVP_DigestUpdate(ctx, inner, ilen) &&
         EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    if (!ok || mdlen < 16)
        abort(); /* OOM inside OpenSSL: fatal (style.md §4) */
    hex_encode(md, 16, out_hex);
}

void
reg_nonce_make(struct reg *r, int64_t now_s, char *out)
{
    uint64_t seq = atomic_fetch_add(&r->nonce_seq, 1);
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)now_s,
             (unsigned long long)seq);
    nonce_mac(r, out, out + 32);
    out[REG_NONCE_LEN] = '\0';
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
    char mac[32];

    if (nonce.len != REG_NONCE_LEN || !parse_hex_u64(nonce.ptr, 16, &ts) ||
        !parse_hex_u64(nonce.ptr + 16, 16, &seq))
        return NONCE_BAD;
    char ts_hex[33];
    memcpy(ts_hex, nonce.ptr, 32);
    ts_hex[32] = '\0';
    nonce_mac(r, ts_hex, mac);
    if (!sip_digest_equal(slice_make(mac, 32), slice_make(nonce.ptr + 32, 32)))
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

static size_t
addr_key(const union reg_addr *a, uint8_t ip[16], uint8_t *family)
{
    memset(ip, 0, 16);
    if (a->sa.sa_family == AF_INET) {
        memcpy(ip, &a->in.sin_addr, 4);
        *family = 4;
        return 4;
    }
    if (a->sa.sa_family == AF_INET6) {
        memcpy(ip, &a->in6.sin6_addr, 16);
        *family = 6;
        return 16;
    }
    *family = 0;
    return 0;
}

static struct throttle_slot *
slot_for(struct reg *r, const union reg_addr *a, bool *match)
{
    uint8_t ip[16], family;
    size_t n = addr_key(a, ip, &family);
    uint64_t h = fnv1a(ip, n) % REG_THROTTLE_SLOTS;
    struct throttle_slot *s = &r->throttle->slots[h];

    *match = s->family == family && memcmp(s->ip, ip, 16) == 0;
    if (!*match) {
        memset(s, 0, sizeof(*s));
        memcpy(s->ip, ip, 16);
        s->family = family;
    }
    return s;
}

bool
reg_throttle_blocked(struct reg *r, const union reg_addr *a, int64_t now_s)
{
    if (r->cfg.auth_fail_threshold == 0)
        return false;
    bool match, blocked;
    pthread_mutex_lock(&r->throttle->lock);
    uint8_t ip[16], family;
    size_t n = addr_key(a, ip, &family);
    struct throttle_slot *s =
        &r->throttle->slots[fnv1a(ip, n) % REG_THROTTLE_SLOTS];
    match = s->family == family && memcmp(s->ip, ip, 16) == 0;
    blocked = match && s->blocked_until > now_s;
    pthread_mutex_unlock(&r->throttle->lock);
    return blocked;
}

bool
reg_throttle_fail(struct reg *r, const union reg_addr *a, int64_t now_s,
                  uint32_t *fails)
{
    bool match, now_blocked = false;

    if (r->cfg.auth_fail_threshold == 0)
        return false;
    pthread_mutex_lock(&r->throttle->lock);
    struct throttle_slot *s = slot_for(r, a, &match);
    if (s->window_start + (int64_t)r->cfg.auth_fail_window_s < now_s ||
        s->fails == 0) {
        s->window_start = now_s;
        s->fails = 0;
    }
    s->fails++;
    if (s->fails >= r->cfg.auth_fail_threshold && s->blocked_until <= now_s) {
        s->blocked_until = now_s + (int64_t)r->cfg.auth_block_s;
        now_blocked = true;
    }
    if (fails)
        *fails = s->fails;
    pthread_mutex_unlock(&r->throttle->lock);
    return now_blocked;
}

/* ---- proxy authentication (reg_auth_request) -------------------------- */

/* Same challenge order as REGISTER (reg_register.c keeps its own copy of
 * this table; both follow enum reg_algs). */
static const char *const proxy_alg_order[4][3] = {
    [REG_ALGS_SHA256_MD5] = {"SHA-256", "MD5", NULL},
    [REG_ALGS_MD5_SHA256] = {"MD5", "SHA-256", NULL},
    [REG_ALGS_SHA256] = {"SHA-256", NULL, NULL},
    [REG_ALGS_MD5] = {"MD5", NULL, NULL},
};

static const char *const *
proxy_offered(const struct reg *r)
{
    int k = r->cfg.algorithms;
    return proxy_alg_order[k >= 0 && k < 4 ? k : 0];
}

static int
proxy_challenge(struct reg *r, int64_t now_s, bool stale, struct buf *hdrs)
{
    char nonce[REG_NONCE_LEN + 1];

    reg_nonce_make(r, now_s, nonce);
    for (const char *const *a = proxy_offered(r); *a; a++)
        if (buf_printf(hdrs,
                       "Proxy-Authenticate: Digest realm=\"%s\", "
                       "nonce=\"%s\", algorithm=%s, qop=\"auth\"%s\r\n",
                       r->realm, nonce, *a, stale ? ", stale=true" : "") < 0)
            return 500;
    atomic_fetch_add(&r->n_challenged, 1);
    return 407;
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
    int64_t now = reg_now_s(r);
    union reg_addr addr;
    struct sip_auth au;
    bool have = false;

    memset(&addr, 0, sizeof(addr));
    memcpy(&addr, &src->addr,
           src->addr.ss_family == AF_INET6 ? sizeof(addr.in6)
                                           : sizeof(addr.in));
    if (reg_throttle_blocked(r, &addr, now)) {
        atomic_fetch_add(&r->n_throttled, 1);
        return 403;
    }
    for (size_t i = 0; i < req->hdr_count; i++) {
        if (req->hdrs[i].id != SIP_HDR_PROXY_AUTHORIZATION)
            continue;
        const char *why;
        struct sip_auth cand;
        if (sip_auth_parse(req->hdrs[i].value, &cand, &why) < 0)
            return 400;
        if (!slice_eq_nocase_cstr(cand.scheme, "Digest") ||
            !slice_eq_cstr(cand.realm, r->realm))
            continue; /* for another proxy (RFC 3261 §22.3) */
        au = cand;
        have = true;
        break;
    }
    if (!have)
        return proxy_challenge(r, now, false, hdrs);
    bool offered = false;
    bool sha = au.alg == SIP_DIGEST_SHA256 || au.alg == SIP_DIGEST_SHA256_SESS;
    bool md5 = au.alg == SIP_DIGEST_MD5 || au.alg == SIP_DIGEST_MD5_SESS;
    for (const char *const *a = proxy_offered(r); *a; a++)
        if ((sha && strcmp(*a, "SHA-256") == 0) ||
            (md5 && strcmp(*a, "MD5") == 0))
            offered = true;
    if (!offered)
        return proxy_challenge(r, now, false, hdrs);
    if (au.username.len == 0 || au.username.len > REG_NUMBER_MAX ||
        au.username.len >= cap || au.nonce.len == 0 || au.uri.len == 0 ||
        au.response.len != sip_digest_hex_len(au.alg) ||
        !slice_eq_nocase_cstr(au.qop, "auth") || au.nc.len != 8 ||
        au.cnonce.len == 0)
        return 400;

    struct ext_snap {
        bool found, enabled, ha1_valid;
        char md5[33], sha256[65];
    } v = {0};
    struct shard *s = reg_shard_of(r, au.username);
    pthread_mutex_lock(&s->lock);
    struct ext *e = reg_ext_find(s, au.username);
    if (e) {
        v.found = true;
        v.enabled = e->enabled;
        v.ha1_valid = e->ha1_valid;
        memcpy(v.md5, e->ha1_md5, sizeof(v.md5));
        memcpy(v.sha256, e->ha1_sha256, sizeof(v.sha256));
    }
    pthread_mutex_unlock(&s->lock);

    char expect[65];
    bool ok =
        v.found && v.ha1_valid &&
        sip_digest_response(au.alg, slice_cstr(sha ? v.sha256 : v.md5),
                            au.nonce, au.nc, au.cnonce, au.qop,
                            req->method_name, au.uri, req->body, expect) == 0 &&
        sip_digest_equal(slice_cstr(expect), au.response);
    if (!ok) {
        uint32_t fails;
        atomic_fetch_add(&r->n_auth_failures, 1);
        if (reg_throttle_fail(r, &addr, now, &fails)) {
            atomic_fetch_add(&r->n_blocks, 1);
            return 403;
        }
        return proxy_challenge(r, now, false, hdrs);
    }
    if (!v.enabled)
        return 403;
    if (reg_nonce_check(r, au.nonce, au.nc, now) != NONCE_OK)
        return proxy_challenge(r, now, true, hdrs);
    memcpy(ext, au.username.ptr, au.username.len);
    ext[au.username.len] = '\0';
    return 0;
}
