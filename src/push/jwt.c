/*
 * jwt: ES256 and RS256 JSON Web Tokens for APNs and FCM (see jwt.h).
 * Header and claims are built with jansson so every string is escaped
 * correctly; key ids and e-mails come from files an admin edits.
 */
#include "push/jwt.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>

static const char B64URL[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int
push_b64url_append(struct buf *out, const void *in, size_t len)
{
    const unsigned char *p = in;
    char tmp[4];
    size_t i;
    size_t need = (len + 2) / 3 * 4;

    if (out->cap && out->len + need > out->cap)
        return -EMSGSIZE;
    for (i = 0; i + 3 <= len; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        tmp[0] = B64URL[v >> 18 & 63];
        tmp[1] = B64URL[v >> 12 & 63];
        tmp[2] = B64URL[v >> 6 & 63];
        tmp[3] = B64URL[v & 63];
        if (buf_append(out, tmp, 4) < 0)
            return -EMSGSIZE;
    }
    if (len - i == 1) {
        unsigned v = (unsigned)p[i] << 16;
        tmp[0] = B64URL[v >> 18 & 63];
        tmp[1] = B64URL[v >> 12 & 63];
        return buf_append(out, tmp, 2);
    }
    if (len - i == 2) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;
        tmp[0] = B64URL[v >> 18 & 63];
        tmp[1] = B64URL[v >> 12 & 63];
        tmp[2] = B64URL[v >> 6 & 63];
        return buf_append(out, tmp, 3);
    }
    return 0;
}

static int
b64val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-' || c == '+')
        return 62;
    if (c == '_' || c == '/')
        return 63;
    return -1;
}

long
push_b64url_decode(const char *in, size_t len, unsigned char *out,
                   size_t outcap)
{
    unsigned acc = 0;
    int bits = 0;
    size_t n = 0;

    while (len > 0 && in[len - 1] == '=')
        len--;
    for (size_t i = 0; i < len; i++) {
        int v = b64val(in[i]);
        if (v < 0)
            return -EINVAL;
        acc = acc << 6 | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n >= outcap)
                return -EMSGSIZE;
            out[n++] = (unsigned char)(acc >> bits & 0xff);
        }
    }
    return (long)n;
}

int
push_ecdsa_der_to_raw(const unsigned char *der, size_t der_len,
                      unsigned char raw[64])
{
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    const BIGNUM *r, *s;
    int rc = 0;

    if (sig == NULL)
        return -EINVAL;
    if (p != der + der_len) {
        rc = -EINVAL; /* trailing garbage after the SEQUENCE */
        goto out;
    }
    ECDSA_SIG_get0(sig, &r, &s);
    if (BN_bn2binpad(r, raw, 32) != 32 || BN_bn2binpad(s, raw + 32, 32) != 32)
        rc = -EINVAL;
out:
    ECDSA_SIG_free(sig);
    return rc;
}

EVP_PKEY *
push_key_load_pem(const char *pem, size_t len)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *key;

    if (bio == NULL)
        return NULL;
    key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    return key;
}

EVP_PKEY *
push_key_load_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    EVP_PKEY *key;

    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (key == NULL) {
        unsigned long e = ERR_get_error();
        snprintf(err, errlen, "%s: not a PEM private key (%s)", path,
                 e ? ERR_reason_error_string(e) : "no key found");
        ERR_clear_error();
    }
    return key;
}

/* Append b64url(compact JSON of obj) to out; consumes obj. */
static int
append_json_b64(struct buf *out, json_t *obj)
{
    char *s;
    int rc;

    if (obj == NULL)
        return -EINVAL;
    s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    if (s == NULL)
        return -EINVAL;
    rc = push_b64url_append(out, s, strlen(s));
    free(s);
    return rc;
}

/* Sign out->data[start..len) with key/SHA-256, append "." and the signature
 * (raw R||S for EC). */
static int
append_signature(struct buf *out, size_t start, EVP_PKEY *key, bool ec)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    unsigned char raw[64];
    int rc = -EINVAL;

    if (md == NULL)
        return -ENOMEM;
    if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1)
        goto out;
    if (EVP_PKEY_get_size(key) > (int)sizeof(sig))
        goto out;
    if (EVP_DigestSign(md, sig, &siglen,
                       (const unsigned char *)out->data + start,
                       out->len - start) != 1)
        goto out;
    rc = buf_append(out, ".", 1);
    if (rc < 0)
        goto out;
    if (ec) {
        rc = push_ecdsa_der_to_raw(sig, siglen, raw);
        if (rc == 0)
            rc = push_b64url_append(out, raw, sizeof(raw));
    } else {
        rc = push_b64url_append(out, sig, siglen);
    }
out:
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    return rc;
}

int
push_jwt_es256(EVP_PKEY *key, const char *kid, const char *team,
               int64_t iat, struct buf *out)
{
    size_t start = out->len;
    int rc;

    if (key == NULL || EVP_PKEY_get_base_id(key) != EVP_PKEY_EC ||
        EVP_PKEY_get_bits(key) != 256 || kid == NULL || team == NULL)
        return -EINVAL;
    rc = append_json_b64(out, json_pack("{s:s, s:s}", "alg", "ES256", "kid",
                                        kid));
    if (rc == 0)
        rc = buf_append(out, ".", 1);
    if (rc == 0)
        rc = append_json_b64(out, json_pack("{s:s, s:I}", "iss", team, "iat",
                                            (json_int_t)iat));
    if (rc == 0)
        rc = append_signature(out, start, key, true);
    if (rc < 0) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return rc;
}

int
push_jwt_rs256(EVP_PKEY *key, const char *kid, const char *iss,
               const char *scope, const char *aud, int64_t iat, int64_t exp,
               struct buf *out)
{
    size_t start = out->len;
    json_t *hdr;
    int rc;

    if (key == NULL || EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA ||
        iss == NULL || scope == NULL || aud == NULL)
        return -EINVAL;
    hdr = json_pack("{s:s, s:s}", "alg", "RS256", "typ", "JWT");
    if (hdr && kid && *kid)
        json_object_set_new(hdr, "kid", json_string(kid));
    rc = append_json_b64(out, hdr);
    if (rc == 0)
        rc = buf_append(out, ".", 1);
    if (rc == 0)
        rc = append_json_b64(out, json_pack("{s:s, s:s, s:s, s:I, s:I}",
                                            "iss", iss, "scope", scope, "aud",
                                            aud, "iat", (json_int_t)iat,
                                            "exp", (json_int_t)exp));
    if (rc == 0)
        rc = append_signature(out, start, key, false);
    if (rc < 0) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return rc;
}
