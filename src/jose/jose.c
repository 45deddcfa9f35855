/*
 * jose: compact JWS parse/verify/sign for ES256 and RS256 with OpenSSL 3.
 * See jose.h for the rules. Verification is called once per distinct token
 * (the APNs side caches results, apns.c), so clarity beats speed here.
 */
#include "jose/jose.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <string.h>

static const char B64URL[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int
b64url_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

int
jose_b64url_decode(struct slice in, unsigned char *out, size_t cap,
                   size_t *out_len)
{
    size_t n = 0;
    unsigned acc = 0;
    int bits = 0;

    if (in.len % 4 == 1)
        return -EINVAL; /* 6 bits cannot make a byte */
    for (size_t i = 0; i < in.len; i++) {
        int v = b64url_val((unsigned char)in.ptr[i]);
        if (v < 0)
            return -EINVAL;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n >= cap)
                return -EMSGSIZE;
            out[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0)
        return -EINVAL; /* non-canonical trailing bits */
    *out_len = n;
    return 0;
}

int
jose_b64url_encode(const void *p, size_t n, struct buf *out)
{
    const unsigned char *s = p;
    char tmp[4];
    size_t i = 0;
    int rc = 0;

    for (; i + 3 <= n && rc == 0; i += 3) {
        unsigned v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8 | s[i + 2];
        tmp[0] = B64URL[v >> 18];
        tmp[1] = B64URL[(v >> 12) & 63];
        tmp[2] = B64URL[(v >> 6) & 63];
        tmp[3] = B64URL[v & 63];
        rc = buf_append(out, tmp, 4);
    }
    if (rc == 0 && n - i == 1) {
        unsigned v = (unsigned)s[i] << 16;
        tmp[0] = B64URL[v >> 18];
        tmp[1] = B64URL[(v >> 12) & 63];
        rc = buf_append(out, tmp, 2);
    } else if (rc == 0 && n - i == 2) {
        unsigned v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8;
        tmp[0] = B64URL[v >> 18];
        tmp[1] = B64URL[(v >> 12) & 63];
        tmp[2] = B64URL[(v >> 6) & 63];
        rc = buf_append(out, tmp, 3);
    }
    return rc;
}

/* Decode one base64url JSON object segment. */
static json_t *
decode_json_obj(struct slice seg)
{
    unsigned char raw[JOSE_JWT_MAX_LEN];
    size_t n;
    json_t *j;

    if (jose_b64url_decode(seg, raw, sizeof(raw), &n) < 0)
        return NULL;
    j = json_loadb((const char *)raw, n, JSON_REJECT_DUPLICATES, NULL);
    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

int
jose_jwt_parse(struct slice token, struct jose_jwt *out)
{
    const char *d1, *d2, *end = token.ptr + token.len;
    const char *alg;

    memset(out, 0, sizeof(*out));
    if (token.len == 0 || token.len > JOSE_JWT_MAX_LEN)
        return -EINVAL;
    d1 = memchr(token.ptr, '.', token.len);
    if (d1 == NULL)
        return -EINVAL;
    d2 = memchr(d1 + 1, '.', (size_t)(end - d1 - 1));
    if (d2 == NULL || memchr(d2 + 1, '.', (size_t)(end - d2 - 1)) != NULL)
        return -EINVAL;
    out->signed_part = slice_make(token.ptr, (size_t)(d2 - token.ptr));
    if (jose_b64url_decode(slice_make(d2 + 1, (size_t)(end - d2 - 1)), out->sig,
                           sizeof(out->sig), &out->sig_len) < 0)
        return -EINVAL;
    out->header =
        decode_json_obj(slice_make(token.ptr, (size_t)(d1 - token.ptr)));
    if (out->header == NULL)
        return -EINVAL;
    out->claims = decode_json_obj(slice_make(d1 + 1, (size_t)(d2 - d1 - 1)));
    if (out->claims == NULL)
        goto fail;
    alg = jose_jwt_str(out->header, "alg");
    if (alg != NULL && strcmp(alg, "ES256") == 0)
        out->alg = JOSE_ES256;
    else if (alg != NULL && strcmp(alg, "RS256") == 0)
        out->alg = JOSE_RS256;
    else
        goto fail;
    return 0;
fail:
    jose_jwt_fini(out);
    return -EINVAL;
}

void
jose_jwt_fini(struct jose_jwt *j)
{
    json_decref(j->header);
    json_decref(j->claims);
    j->header = j->claims = NULL;
}

const char *
jose_jwt_str(json_t *obj, const char *name)
{
    return json_string_value(json_object_get(obj, name));
}

int
jose_jwt_int(json_t *obj, const char *name, long long *out)
{
    json_t *v = json_object_get(obj, name);

    if (!json_is_integer(v))
        return -ENOENT;
    *out = json_integer_value(v);
    return 0;
}

static bool
key_fits(enum jose_alg alg, EVP_PKEY *key)
{
    if (alg == JOSE_ES256)
        return EVP_PKEY_is_a(key, "EC") && EVP_PKEY_get_bits(key) == 256;
    return EVP_PKEY_is_a(key, "RSA") && EVP_PKEY_get_bits(key) >= 2048;
}

/* Raw R||S (64 bytes) to DER, which is what EVP_DigestVerify wants. */
static int
es256_raw_to_der(const unsigned char *raw, unsigned char **der, int *der_len)
{
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, 32, NULL);
    BIGNUM *s = BN_bin2bn(raw + 32, 32, NULL);
    int rc = -EINVAL;

    if (sig == NULL || r == NULL || s == NULL ||
        ECDSA_SIG_set0(sig, r, s) != 1) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(sig);
        return -EINVAL;
    }
    *der = NULL;
    *der_len = i2d_ECDSA_SIG(sig, der);
    if (*der_len > 0)
        rc = 0;
    ECDSA_SIG_free(sig); /* frees r and s */
    return rc;
}

int
jose_jwt_verify(const struct jose_jwt *j, EVP_PKEY *key)
{
    EVP_MD_CTX *ctx;
    unsigned char *der = NULL;
    const unsigned char *sig = j->sig;
    size_t sig_len = j->sig_len;
    int der_len = 0, ok = 0;

    if (key == NULL || !key_fits(j->alg, key))
        return -EACCES;
    if (j->alg == JOSE_ES256) {
        if (j->sig_len != 64 || es256_raw_to_der(j->sig, &der, &der_len) < 0)
            return -EACCES;
        sig = der;
        sig_len = (size_t)der_len;
    }
    ctx = EVP_MD_CTX_new();
    if (ctx != NULL &&
        EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) == 1) {
        /* RSA defaults to PKCS#1 v1.5 padding, which RS256 is. */
        ok = EVP_DigestVerify(ctx, sig, sig_len,
                              (const unsigned char *)j->signed_part.ptr,
                              j->signed_part.len) == 1;
    }
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    return ok ? 0 : -EACCES;
}

int
jose_ecdsa_der_to_raw(const unsigned char *der, size_t len,
                      unsigned char raw[64])
{
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)len);
    const BIGNUM *r, *s;
    int rc = -EINVAL;

    if (sig == NULL)
        return -EINVAL;
    ECDSA_SIG_get0(sig, &r, &s);
    if (p == der + len && /* no trailing bytes after the SEQUENCE */
        BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(s, raw + 32, 32) == 32)
        rc = 0;
    ECDSA_SIG_free(sig);
    return rc;
}

static int
append_b64_json(json_t *obj, struct buf *out)
{
    char *s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    int rc;

    if (s == NULL)
        return -EINVAL;
    rc = jose_b64url_encode(s, strlen(s), out);
    free(s);
    return rc;
}

int
jose_jwt_sign(enum jose_alg alg, EVP_PKEY *key, json_t *header,
              json_t *claims, struct buf *out)
{
    size_t start = out->len, sig_len = 0;
    unsigned char sig[1024], raw[64];
    EVP_MD_CTX *ctx;
    int rc;

    if (key == NULL || !key_fits(alg, key))
        return -EINVAL;
    rc = append_b64_json(header, out);
    if (rc == 0)
        rc = buf_append(out, ".", 1);
    if (rc == 0)
        rc = append_b64_json(claims, out);
    if (rc < 0)
        goto fail;
    ctx = EVP_MD_CTX_new();
    sig_len = sizeof(sig);
    if (ctx == NULL ||
        EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_PKEY_get_size(key) > (int)sizeof(sig) ||
        EVP_DigestSign(ctx, sig, &sig_len,
                       (const unsigned char *)out->data + start,
                       out->len - start) != 1) {
        EVP_MD_CTX_free(ctx);
        ERR_clear_error();
        rc = -EINVAL; /* e.g. a public key cannot sign */
        goto fail;
    }
    EVP_MD_CTX_free(ctx);
    rc = buf_append(out, ".", 1);
    if (rc < 0)
        goto fail;
    if (alg == JOSE_ES256) {
        rc = jose_ecdsa_der_to_raw(sig, sig_len, raw);
        if (rc == 0)
            rc = jose_b64url_encode(raw, sizeof(raw), out);
    } else {
        rc = jose_b64url_encode(sig, sig_len, out);
    }
    if (rc == 0)
        return 0;
fail:
    out->len = start;
    if (out->data)
        out->data[start] = '\0';
    return rc;
}

EVP_PKEY *
jose_key_load_pem(const char *pem, size_t len, bool private_only)
{
    BIO *bio;
    EVP_PKEY *key;

    if (len > 64 * 1024)
        return NULL;
    bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL)
        return NULL;
    key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    if (key == NULL && !private_only) {
        (void)BIO_reset(bio);
        key = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    }
    BIO_free(bio);
    /* A failed try leaves errors queued; SSL_get_error would later read
     * them as a TLS failure on this thread. */
    ERR_clear_error();
    return key;
}

EVP_PKEY *
jose_key_load_file(const char *path, bool private_only, char *err,
                   size_t errlen)
{
    FILE *f = fopen(path, "r");
    EVP_PKEY *key;

    if (f == NULL) {
        if (err)
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    if (key == NULL && !private_only) {
        rewind(f);
        ERR_clear_error();
        key = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    }
    fclose(f);
    if (key == NULL && err) {
        unsigned long e = ERR_get_error();
        snprintf(err, errlen, "%s: not a PEM %skey (%s)", path,
                 private_only ? "private " : "",
                 e ? ERR_reason_error_string(e) : "no key found");
    }
    /* A failed try leaves errors queued; SSL_get_error would later read
     * them as a TLS failure on this thread. */
    ERR_clear_error();
    return key;
}
