/*
 * jwt_test: tokens made by src/push/jwt.c (on src/jose) are checked with
 * OpenSSL's own verifier (EVP_DigestVerify), after converting the raw ES256
 * R||S back to DER here, so a bug in the encoding cannot be mirrored by the
 * test. base64url, DER and key loading are tested in tests/unit/jose.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "base/slice.h"
#include "jose/jose.h"
#include "push/jwt.h"

struct parts {
    unsigned char hdr[512], claims[1024], sig[512];
    long hdr_len, claims_len, sig_len;
    size_t signed_len; /* bytes of "h.c" */
};

static long
dec(const char *in, size_t len, unsigned char *out, size_t cap)
{
    size_t n;
    int rc = jose_b64url_decode(slice_make(in, len), out, cap, &n);
    return rc < 0 ? rc : (long)n;
}

static void
split(const char *jwt, struct parts *p)
{
    const char *d1 = strchr(jwt, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;

    assert_non_null(d1);
    assert_non_null(d2);
    assert_null(strchr(d2 + 1, '.'));
    assert_null(strchr(jwt, '=')); /* no padding anywhere */
    p->hdr_len = dec(jwt, (size_t)(d1 - jwt), p->hdr, sizeof(p->hdr) - 1);
    p->claims_len = dec(d1 + 1, (size_t)(d2 - d1 - 1), p->claims,
                        sizeof(p->claims) - 1);
    p->sig_len = dec(d2 + 1, strlen(d2 + 1), p->sig, sizeof(p->sig));
    assert_true(p->hdr_len > 0 && p->claims_len > 0 && p->sig_len > 0);
    p->hdr[p->hdr_len] = '\0';
    p->claims[p->claims_len] = '\0';
    p->signed_len = (size_t)(d2 - jwt);
}

static int
verify(EVP_PKEY *key, const char *msg, size_t len, const unsigned char *sig,
       size_t siglen)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok;

    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key),
                     1);
    ok = EVP_DigestVerify(md, sig, siglen, (const unsigned char *)msg, len);
    EVP_MD_CTX_free(md);
    return ok;
}

/* raw R||S -> DER, the inverse of what jwt.c does. */
static size_t
raw_to_der(const unsigned char raw[64], unsigned char *der)
{
    ECDSA_SIG *s = ECDSA_SIG_new();
    unsigned char *p = der;
    int n;

    ECDSA_SIG_set0(s, BN_bin2bn(raw, 32, NULL), BN_bin2bn(raw + 32, 32, NULL));
    n = i2d_ECDSA_SIG(s, &p);
    ECDSA_SIG_free(s);
    assert_true(n > 0);
    return (size_t)n;
}

static void
test_es256_verifies(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    struct buf b;
    struct parts p;
    unsigned char der[80];

    assert_non_null(key);
    buf_init(&b, 0);
    assert_int_equal(push_jwt_es256(key, "ABC123DEFG", "TEAM123456",
                                    1764220800, &b),
                     0);
    split(b.data, &p);
    assert_string_equal((char *)p.hdr, "{\"alg\":\"ES256\",\"kid\":\"ABC123DEFG\"}");
    assert_string_equal((char *)p.claims,
                        "{\"iss\":\"TEAM123456\",\"iat\":1764220800}");
    assert_int_equal(p.sig_len, 64); /* raw R||S, not DER */
    size_t dl = raw_to_der(p.sig, der);
    assert_int_equal(verify(key, b.data, p.signed_len, der, dl), 1);
    /* A changed claim must not verify with the same signature. */
    b.data[p.signed_len - 2] ^= 1;
    assert_int_not_equal(verify(key, b.data, p.signed_len, der, dl), 1);
    /* Wrong key type. */
    EVP_PKEY *rsa = EVP_RSA_gen(2048);
    buf_reset(&b);
    assert_int_equal(push_jwt_es256(rsa, "K", "T", 1, &b), -EINVAL);
    assert_int_equal(b.len, 0);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(key);
    buf_fini(&b);
}

static void
test_rs256_verifies(void **state)
{
    EVP_PKEY *key = EVP_RSA_gen(2048);
    struct buf b;
    struct parts p;
    json_t *h, *c;

    buf_init(&b, 0);
    assert_int_equal(push_jwt_rs256(key, "kid-1", "svc@proj.iam.example",
                                    "https://www.googleapis.com/auth/"
                                    "firebase.messaging",
                                    "https://127.0.0.1:1/token", 1000, 4600,
                                    &b),
                     0);
    split(b.data, &p);
    h = json_loads((char *)p.hdr, 0, NULL);
    c = json_loads((char *)p.claims, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(h, "alg")), "RS256");
    assert_string_equal(json_string_value(json_object_get(h, "typ")), "JWT");
    assert_string_equal(json_string_value(json_object_get(h, "kid")), "kid-1");
    assert_string_equal(json_string_value(json_object_get(c, "iss")),
                        "svc@proj.iam.example");
    assert_string_equal(json_string_value(json_object_get(c, "aud")),
                        "https://127.0.0.1:1/token");
    assert_int_equal(json_integer_value(json_object_get(c, "iat")), 1000);
    assert_int_equal(json_integer_value(json_object_get(c, "exp")), 4600);
    assert_int_equal(p.sig_len, 256);
    assert_int_equal(verify(key, b.data, p.signed_len, p.sig,
                            (size_t)p.sig_len),
                     1);
    json_decref(h);
    json_decref(c);
    /* EC key refused for RS256. */
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    buf_reset(&b);
    assert_int_equal(push_jwt_rs256(ec, NULL, "i", "s", "a", 1, 2, &b),
                     -EINVAL);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(key);
    buf_fini(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_es256_verifies),
        cmocka_unit_test(test_rs256_verifies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
