/*
 * sip/digest: Digest auth-param parser and response computation
 * (RFC 3261 §22.4 and §25.1, RFC 7616, RFC 8760).
 *
 * The parser is a small cursor loop over "scheme 1*SP param *(, param)",
 * slices only. The hashes go through OpenSSL EVP so MD5 and SHA-256 share
 * one path; a computation is a few short updates (a REGISTER costs three
 * hashes). The two EVP_MDs are fetched once per process (pthread_once;
 * fetched EVP_MD objects are shareable across threads): EVP_md5() and
 * EVP_sha256() would make EVP_DigestInit_ex look the implementation up in
 * the provider store on every hash. Each thread keeps one EVP_MD_CTX
 * (a pthread key, freed when the thread exits) and re-inits it per hash
 * instead of allocating and freeing one per hash.
 * No state: nonces, nc tracking and throttling belong to the registrar.
 */
#include "sip/digest.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

/* More parameters than any real header carries; bounds the duplicate
 * check (O(n^2) over at most this many names). */
#define AUTH_MAX_PARAMS 32

size_t
sip_digest_hex_len(enum sip_digest_alg alg)
{
    switch (alg) {
    case SIP_DIGEST_MD5:
    case SIP_DIGEST_MD5_SESS:
        return 32;
    case SIP_DIGEST_SHA256:
    case SIP_DIGEST_SHA256_SESS:
        return 64;
    default:
        return 0;
    }
}

enum sip_digest_alg
sip_digest_alg_parse(struct slice s)
{
    if (s.len == 0 || slice_eq_nocase_cstr(s, "MD5"))
        return SIP_DIGEST_MD5;
    if (slice_eq_nocase_cstr(s, "MD5-sess"))
        return SIP_DIGEST_MD5_SESS;
    if (slice_eq_nocase_cstr(s, "SHA-256"))
        return SIP_DIGEST_SHA256;
    if (slice_eq_nocase_cstr(s, "SHA-256-sess"))
        return SIP_DIGEST_SHA256_SESS;
    return SIP_DIGEST_UNKNOWN;
}

const char *
sip_digest_alg_name(enum sip_digest_alg alg)
{
    switch (alg) {
    case SIP_DIGEST_MD5:
        return "MD5";
    case SIP_DIGEST_MD5_SESS:
        return "MD5-sess";
    case SIP_DIGEST_SHA256:
        return "SHA-256";
    case SIP_DIGEST_SHA256_SESS:
        return "SHA-256-sess";
    default:
        return "unknown";
    }
}

/* ---- parser ----------------------------------------------------------- */

static bool
is_lws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* RFC 3261 token characters. */
static bool
is_token(char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("-.!%*_+`'~", c) != NULL;
}

struct cursor {
    const char *p, *end;
};

static void
skip_lws(struct cursor *c)
{
    while (c->p < c->end && is_lws(*c->p))
        c->p++;
}

static struct slice
take_token(struct cursor *c)
{
    const char *s = c->p;

    while (c->p < c->end && is_token(*c->p))
        c->p++;
    return slice_make(s, (size_t)(c->p - s));
}

/* value = token / quoted-string. Unquoted values are taken leniently (up
 * to LWS or ','), because some UAs send uri=sip:... without quotes. */
static const char *
take_value(struct cursor *c, struct slice *out)
{
    const char *s;

    if (c->p < c->end && *c->p == '"') {
        s = ++c->p;
        while (c->p < c->end && *c->p != '"') {
            if (*c->p == '\\' && ++c->p == c->end)
                break;
            c->p++;
        }
        if (c->p >= c->end)
            return "unterminated quoted string";
        *out = slice_make(s, (size_t)(c->p - s));
        c->p++;
        return NULL;
    }
    s = c->p;
    while (c->p < c->end && !is_lws(*c->p) && *c->p != ',' && *c->p != '"')
        c->p++;
    if (c->p == s)
        return "empty auth parameter value";
    *out = slice_make(s, (size_t)(c->p - s));
    return NULL;
}

static struct slice *
field_for(struct sip_auth *a, struct slice name)
{
    static const struct {
        struct slice name;
        size_t off;
    } fields[] = {
        {SLICE_LIT("username"), offsetof(struct sip_auth, username)},
        {SLICE_LIT("realm"), offsetof(struct sip_auth, realm)},
        {SLICE_LIT("nonce"), offsetof(struct sip_auth, nonce)},
        {SLICE_LIT("uri"), offsetof(struct sip_auth, uri)},
        {SLICE_LIT("response"), offsetof(struct sip_auth, response)},
        {SLICE_LIT("algorithm"), offsetof(struct sip_auth, algorithm)},
        {SLICE_LIT("cnonce"), offsetof(struct sip_auth, cnonce)},
        {SLICE_LIT("opaque"), offsetof(struct sip_auth, opaque)},
        {SLICE_LIT("qop"), offsetof(struct sip_auth, qop)},
        {SLICE_LIT("nc"), offsetof(struct sip_auth, nc)},
        {SLICE_LIT("stale"), offsetof(struct sip_auth, stale)},
        {SLICE_LIT("domain"), offsetof(struct sip_auth, domain)},
    };
    /* Lengths first: most names differ in length from most fields. */
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if (fields[i].name.len == name.len &&
            slice_eq_nocase(name, fields[i].name))
            return (struct slice *)((char *)a + fields[i].off);
    }
    return NULL;
}

static const char *
parse_params(struct cursor *c, struct sip_auth *out)
{
    struct slice seen[AUTH_MAX_PARAMS];
    size_t nseen = 0;

    for (;;) {
        struct slice name, value = SLICE_NULL;
        const char *why;

        skip_lws(c);
        /* Empty list elements (",,") are allowed by the #rule. */
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        if (c->p >= c->end)
            break;
        name = take_token(c);
        if (name.len == 0)
            return "bad auth parameter name";
        skip_lws(c);
        if (c->p >= c->end || *c->p != '=')
            return "missing '=' in auth parameter";
        c->p++;
        skip_lws(c);
        why = take_value(c, &value);
        if (why)
            return why;
        for (size_t i = 0; i < nseen; i++) {
            if (slice_eq_nocase(seen[i], name))
                return "duplicate auth parameter";
        }
        if (nseen == AUTH_MAX_PARAMS)
            return "too many auth parameters";
        seen[nseen++] = name;
        struct slice *f = field_for(out, name);
        if (f)
            *f = value;
        skip_lws(c);
        if (c->p < c->end) {
            if (*c->p != ',')
                return "expected ',' between auth parameters";
            c->p++;
        }
    }
    if (nseen == 0)
        return "missing auth parameters";
    return NULL;
}

int
sip_auth_parse(struct slice value, struct sip_auth *out, const char **reason)
{
    struct cursor c = {value.ptr, value.ptr + value.len};
    const char *why = NULL;

    memset(out, 0, sizeof(*out));
    out->alg = SIP_DIGEST_UNKNOWN;
    skip_lws(&c);
    out->scheme = take_token(&c);
    if (out->scheme.len == 0) {
        why = "missing auth scheme";
        goto fail;
    }
    if (!slice_eq_nocase_cstr(out->scheme, "Digest"))
        return 0;
    if (c.p < c.end && !is_lws(*c.p)) {
        why = "bad auth scheme";
        goto fail;
    }
    why = parse_params(&c, out);
    if (why)
        goto fail;
    out->alg = sip_digest_alg_parse(out->algorithm);
    return 0;
fail:
    if (reason)
        *reason = why;
    return -1;
}

int
sip_auth_unquote(struct slice s, struct arena *a, struct slice *out)
{
    char *dst;
    size_t n = 0;

    if (!memchr(s.ptr ? s.ptr : "", '\\', s.len)) {
        *out = s;
        return 0;
    }
    dst = arena_alloc(a, s.len + 1);
    if (!dst)
        return -ENOMEM;
    for (size_t i = 0; i < s.len; i++) {
        if (s.ptr[i] == '\\' && i + 1 < s.len)
            i++;
        dst[n++] = s.ptr[i];
    }
    dst[n] = '\0';
    *out = slice_make(dst, n);
    return 0;
}

/* ---- hashes ----------------------------------------------------------- */

static pthread_once_t md_once = PTHREAD_ONCE_INIT;
/* Fetched once, never freed (process lifetime, reachable: not a leak). */
static const EVP_MD *md_md5, *md_sha256;
static pthread_key_t ctx_key;
static bool ctx_key_ok;

static void
ctx_free(void *ctx)
{
    EVP_MD_CTX_free(ctx);
}

static void
md_fetch(void)
{
    ctx_key_ok = pthread_key_create(&ctx_key, ctx_free) == 0;
    EVP_MD *m = EVP_MD_fetch(NULL, "MD5", NULL);
    EVP_MD *s = EVP_MD_fetch(NULL, "SHA2-256", NULL);

    /* A provider without them (FIPS for MD5): the implicit-fetch path. */
    md_md5 = m ? m : EVP_md5();
    md_sha256 = s ? s : EVP_sha256();
}

static const EVP_MD *
md_of(enum sip_digest_alg alg)
{
    (void)pthread_once(&md_once, md_fetch);
    switch (alg) {
    case SIP_DIGEST_MD5:
    case SIP_DIGEST_MD5_SESS:
        return md_md5;
    case SIP_DIGEST_SHA256:
    case SIP_DIGEST_SHA256_SESS:
        return md_sha256;
    default:
        return NULL;
    }
}

static bool
is_sess(enum sip_digest_alg alg)
{
    return alg == SIP_DIGEST_MD5_SESS || alg == SIP_DIGEST_SHA256_SESS;
}

/* hex(H(parts[0] ":" parts[1] ":" ...)) into out (>= 65 bytes). A hash
 * failure means libcrypto is broken or out of memory: fatal, as OOM. */
static void
h_join(const EVP_MD *md, const struct slice *parts, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    EVP_MD_CTX *ctx = ctx_key_ok ? pthread_getspecific(ctx_key) : NULL;
    bool owned = false; /* freed here: the thread could not keep it */
    int ok;

    if (ctx == NULL) { /* this thread's first hash */
        ctx = EVP_MD_CTX_new();
        owned = !ctx_key_ok || pthread_setspecific(ctx_key, ctx) != 0;
    }
    ok = ctx && EVP_DigestInit_ex2(ctx, md, NULL);

    for (size_t i = 0; ok && i < n; i++) {
        if (i > 0)
            ok = EVP_DigestUpdate(ctx, ":", 1);
        if (ok && parts[i].len > 0)
            ok = EVP_DigestUpdate(ctx, parts[i].ptr, parts[i].len);
    }
    ok = ok && EVP_DigestFinal_ex(ctx, d, &dlen);
    if (owned)
        EVP_MD_CTX_free(ctx);
    if (!ok || dlen * 2 > 64)
        abort();
    for (unsigned int i = 0; i < dlen; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[2 * dlen] = '\0';
}

void
sip_digest_hash(enum sip_digest_alg alg, struct slice data, char *out)
{
    const EVP_MD *md = md_of(alg);

    if (!md) {
        out[0] = '\0';
        return;
    }
    h_join(md, &data, 1, out);
}

void
sip_digest_ha1(enum sip_digest_alg alg, struct slice username,
               struct slice realm, struct slice password, char *out)
{
    const EVP_MD *md = md_of(alg);
    struct slice parts[] = {username, realm, password};

    if (!md) {
        out[0] = '\0';
        return;
    }
    h_join(md, parts, 3, out);
}

int
sip_digest_response(enum sip_digest_alg alg, struct slice ha1_hex,
                    struct slice nonce, struct slice nc, struct slice cnonce,
                    struct slice qop, struct slice method, struct slice uri,
                    struct slice body, char *out)
{
    const EVP_MD *md = md_of(alg);
    char ha1[65], ha2[65], hbody[65];
    bool auth_int;

    if (!md || ha1_hex.len != sip_digest_hex_len(alg))
        return -EINVAL;
    if (qop.len == 0)
        auth_int = false;
    else if (slice_eq_nocase_cstr(qop, "auth"))
        auth_int = false;
    else if (slice_eq_nocase_cstr(qop, "auth-int"))
        auth_int = true;
    else
        return -EINVAL;
    if (is_sess(alg) && qop.len == 0)
        return -EINVAL;

    if (is_sess(alg)) {
        struct slice p[] = {ha1_hex, nonce, cnonce};
        h_join(md, p, 3, ha1);
    } else {
        memcpy(ha1, ha1_hex.ptr, ha1_hex.len);
        ha1[ha1_hex.len] = '\0';
    }
    struct slice h1 = slice_make(ha1, strlen(ha1));

    if (auth_int) {
        h_join(md, &body, 1, hbody);
        struct slice p[] = {method, uri, slice_cstr(hbody)};
        h_join(md, p, 3, ha2);
    } else {
        struct slice p[] = {method, uri};
        h_join(md, p, 2, ha2);
    }
    if (qop.len == 0) {
        struct slice p[] = {h1, nonce, slice_cstr(ha2)};
        h_join(md, p, 3, out);
    } else {
        struct slice p[] = {h1, nonce, nc, cnonce, qop, slice_cstr(ha2)};
        h_join(md, p, 6, out);
    }
    return 0;
}

bool
sip_digest_equal(struct slice a, struct slice b)
{
    /* An empty response is never valid, even against an empty one. */
    if (a.len != b.len || a.len == 0)
        return false;
    return CRYPTO_memcmp(a.ptr, b.ptr, a.len) == 0;
}
