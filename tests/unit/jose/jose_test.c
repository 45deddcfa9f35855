/*
 * jose_test: the JWT module (src/jose, used by the push clients and
 * pushsim) against keys made here with OpenSSL:
 * base64url edge cases, ES256 and RS256 sign -> verify, and the ways a
 * token must fail (tampered claims or signature, wrong key, alg/key
 * mismatch, unsupported alg, malformed compact form). The ES256 case also
 * checks the wire form independently: the signature must be 64 raw bytes
 * that verify with OpenSSL once converted to DER by hand.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/pem.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jose/jose.h"

static void
test_b64url(void **state)
{
    unsigned char out[16];
    size_t n;
    struct buf b;

    buf_init(&b, 0);
    assert_int_equal(jose_b64url_encode("\xfb\xff", 2, &b), 0);
    assert_string_equal(b.data, "-_8"); /* url-safe, no padding */
    buf_reset(&b);
    assert_int_equal(jose_b64url_encode("abc", 3, &b), 0);
    assert_string_equal(b.data, "YWJj");
    buf_fini(&b);

    assert_int_equal(jose_b64url_decode(SLICE_LIT("-_8"), out, 16, &n), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(out, "\xfb\xff", 2);
    assert_int_equal(jose_b64url_decode(SLICE_LIT("YQ"), out, 16, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(out[0], 'a');
    /* padding, standard alphabet, impossible length, dirty tail bits */
    assert_int_equal(jose_b64url_decode(SLICE_LIT("YQ=="), out, 16, &n),
                     -EINVAL);
    assert_int_equal(jose_b64url_decode(SLICE_LIT("+/8"), out, 16, &n),
                     -EINVAL);
    assert_int_equal(jose_b64url_decode(SLICE_LIT("YWJjZ"), out, 16, &n),
                     -EINVAL);
    assert_int_equal(jose_b64url_decode(SLICE_LIT("YR"), out, 16, &n), -EINVAL);
    assert_int_equal(jose_b64url_decode(SLICE_LIT("YWJj"), out, 2, &n),
                     -EMSGSIZE);
}

/* Sign header/claims with key; returns the token in *out (fini it). */
static void
sign(enum jose_alg alg, EVP_PKEY *key, const char *kid, long long iat,
     struct buf *out)
{
    json_t *h =
        json_pack("{s:s,s:s}", "alg", alg == JOSE_ES256 ? "ES256" : "RS256",
                  "kid", kid);
    json_t *c =
        json_pack("{s:s,s:I}", "iss", "TEAM123456", "iat", (json_int_t)iat);

    buf_init(out, JOSE_JWT_MAX_LEN);
    assert_int_equal(jose_jwt_sign(alg, key, h, c, out), 0);
    json_decref(h);
    json_decref(c);
}

static int
verify_text(const char *text, EVP_PKEY *key)
{
    struct jose_jwt j;
    int rc = jose_jwt_parse(slice_cstr(text), &j);

    if (rc < 0)
        return rc;
    rc = jose_jwt_verify(&j, key);
    jose_jwt_fini(&j);
    return rc;
}

/* Flip one character of segment seg (0 header, 1 claims, 2 sig). */
static void
tamper(char *tok, int seg)
{
    char *p = tok;

    for (int i = 0; i < seg; i++)
        p = strchr(p, '.') + 1;
    p[2] = p[2] == 'A' ? 'B' : 'A';
}

static void
test_es256(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256"), *other = EVP_EC_gen("P-256");
    struct buf t;
    struct jose_jwt j;
    long long iat;

    sign(JOSE_ES256, key, "ABC123DEFG", 1700000000, &t);
    assert_int_equal(jose_jwt_parse(buf_slice(&t), &j), 0);
    assert_int_equal(j.alg, JOSE_ES256);
    assert_int_equal(j.sig_len, 64);
    assert_string_equal(jose_jwt_str(j.header, "kid"), "ABC123DEFG");
    assert_string_equal(jose_jwt_str(j.claims, "iss"), "TEAM123456");
    assert_int_equal(jose_jwt_int(j.claims, "iat", &iat), 0);
    assert_int_equal(iat, 1700000000);
    assert_int_equal(jose_jwt_verify(&j, key), 0);
    assert_int_equal(jose_jwt_verify(&j, other), -EACCES);

    /* Independent check of the raw R||S form: build DER by hand. */
    ECDSA_SIG *sig = ECDSA_SIG_new();
    ECDSA_SIG_set0(sig, BN_bin2bn(j.sig, 32, NULL),
                   BN_bin2bn(j.sig + 32, 32, NULL));
    unsigned char *der = NULL;
    int der_len = i2d_ECDSA_SIG(sig, &der);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key),
                     1);
    assert_int_equal(EVP_DigestVerify(ctx, der, (size_t)der_len,
                                      (const unsigned char *)j.signed_part.ptr,
                                      j.signed_part.len),
                     1);
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    ECDSA_SIG_free(sig);
    jose_jwt_fini(&j);

    char *copy = strdup(t.data);
    tamper(copy, 1);
    assert_int_not_equal(verify_text(copy, key), 0);
    memcpy(copy, t.data, t.len + 1);
    tamper(copy, 2);
    assert_int_not_equal(verify_text(copy, key), 0);
    memcpy(copy, t.data, t.len + 1);
    tamper(copy, 0);
    assert_int_not_equal(verify_text(copy, key), 0);
    free(copy);
    buf_fini(&t);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
}

static void
test_rs256(void **state)
{
    EVP_PKEY *rsa = EVP_RSA_gen(2048), *ec = EVP_EC_gen("P-256");
    struct buf t;

    sign(JOSE_RS256, rsa, "k1", 1700000000, &t);
    assert_int_equal(verify_text(t.data, rsa), 0);
    /* An RS256 token never verifies with an EC key and vice versa. */
    assert_int_equal(verify_text(t.data, ec), -EACCES);
    char *copy = strdup(t.data);
    tamper(copy, 2);
    assert_int_equal(verify_text(copy, rsa), -EACCES);
    free(copy);
    buf_fini(&t);

    struct buf b;
    json_t *h = json_pack("{s:s}", "alg", "ES256"), *c = json_object();
    buf_init(&b, 0);
    assert_int_equal(jose_jwt_sign(JOSE_ES256, rsa, h, c, &b), -EINVAL);
    buf_fini(&b);
    json_decref(h);
    json_decref(c);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
}

static void
test_malformed(void **state)
{
    struct jose_jwt j;
    /* {"alg":"none"} . {"iss":"x"} . "" */
    static const char *bad[] = {
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.",
        "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJ4In0.AAAA",
        "WzFd.eyJpc3MiOiJ4In0.AAAA",             /* header is an array */
        "eyJhbGciOiJFUzI1NiJ9.bm90IGpzb24.AAAA", /* claims not JSON */
        "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJ4In0.AA=A",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(jose_jwt_parse(slice_cstr(bad[i]), &j), -EINVAL);
    /* Well-formed ES256 with a short signature parses, never verifies. */
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_int_equal(
        jose_jwt_parse(SLICE_LIT("eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJ4In0.AAAA"),
                       &j),
        0);
    assert_int_equal(jose_jwt_verify(&j, key), -EACCES);
    jose_jwt_fini(&j);
    EVP_PKEY_free(key);
}

static void
test_key_load(void **state)
{
    EVP_PKEY *key = EVP_EC_gen("P-256"), *pub, *priv;
    BIO *b = BIO_new(BIO_s_mem());
    char *pem;
    long n;
    struct buf t;

    /* A PKCS#8 private key (like Apple's .p8) and its public half. */
    assert_int_equal(
        PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL), 1);
    n = BIO_get_mem_data(b, &pem);
    priv = jose_key_load_pem(pem, (size_t)n, false);
    assert_non_null(priv);
    (void)BIO_reset(b);
    assert_int_equal(PEM_write_bio_PUBKEY(b, key), 1);
    n = BIO_get_mem_data(b, &pem);
    pub = jose_key_load_pem(pem, (size_t)n, false);
    assert_non_null(pub);
    /* A signer (the push clients) takes private keys only. */
    assert_null(jose_key_load_pem(pem, (size_t)n, true));
    assert_null(jose_key_load_pem("garbage", 7, false));

    sign(JOSE_ES256, priv, "K", 1, &t);
    assert_int_equal(verify_text(t.data, pub), 0);
    buf_fini(&t);
    BIO_free(b);
    EVP_PKEY_free(key);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(priv);
}

static void
test_der_to_raw_pads(void **state)
{
    /* r = 1, s = 0x80..: short integers must be left-padded to 32. */
    unsigned char rb[1] = { 1 }, sb[32], der[80], raw[64], *p = der;
    ECDSA_SIG *s = ECDSA_SIG_new();

    memset(sb, 0x80, sizeof(sb));
    ECDSA_SIG_set0(s, BN_bin2bn(rb, 1, NULL), BN_bin2bn(sb, 32, NULL));
    int n = i2d_ECDSA_SIG(s, &p);
    ECDSA_SIG_free(s);
    assert_int_equal(jose_ecdsa_der_to_raw(der, (size_t)n, raw), 0);
    for (int i = 0; i < 31; i++)
        assert_int_equal(raw[i], 0);
    assert_int_equal(raw[31], 1);
    assert_memory_equal(raw + 32, sb, 32);
    /* Garbage, truncation and trailing bytes are refused. */
    assert_int_equal(jose_ecdsa_der_to_raw((const unsigned char *)"\x30\x01",
                                           2, raw),
                     -EINVAL);
    assert_int_equal(jose_ecdsa_der_to_raw(der, (size_t)n - 1, raw), -EINVAL);
    der[n] = 0;
    assert_int_equal(jose_ecdsa_der_to_raw(der, (size_t)n + 1, raw), -EINVAL);
}


static void
test_key_load_errors(void **state)
{
    char err[256], path[] = "/tmp/pp_jwt_test_XXXXXX";
    int fd;

    assert_null(jose_key_load_file("/nonexistent/AuthKey.p8", true, err,
                                   sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/AuthKey.p8: "));
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "not a key\n", 10), 10);
    close(fd);
    assert_null(jose_key_load_file(path, true, err, sizeof(err)));
    assert_non_null(strstr(err, "not a PEM private key"));
    unlink(path);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64url),   cmocka_unit_test(test_es256),
        cmocka_unit_test(test_rs256),    cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_key_load),
        cmocka_unit_test(test_der_to_raw_pads),
        cmocka_unit_test(test_key_load_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
