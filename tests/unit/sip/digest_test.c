/*
 * Tests for sip/digest: the auth-param parser (quoting, duplicates,
 * schemes) and every test vector of protocols.md §4.7 (RFC 2617, RFC 7616
 * MD5 and SHA-256, the SIP example for MD5 / SHA-256 / MD5-sess / no qop,
 * H("")), plus SHA-256-sess and auth-int values computed independently
 * with Python's hashlib.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "base/arena.h"
#include "sip/digest.h"

static void
assert_slice(struct slice s, const char *want)
{
    if (!slice_eq_cstr(s, want))
        fail_msg("got '%.*s', want '%s'", SLICE_ARG(s), want);
}

static const char *
parse_err(const char *s)
{
    struct sip_auth a;
    const char *why = NULL;

    if (sip_auth_parse(slice_cstr(s), &a, &why) == 0)
        fail_msg("parse of '%s' should fail", s);
    assert_non_null(why);
    return why;
}

static void
test_parse_credentials(void **state)
{
    (void)state;
    struct sip_auth a;
    const char *why = NULL;
    const char *h =
        "Digest username=\"alice\", realm=\"example.com\",\r\n"
        "\tnonce=\"5a1f0b2c\", uri=\"sip:example.com\",  "
        "response=\"7c6be37167ef6f7c3a243c47490d29f2\",algorithm=MD5,"
        "cnonce=\"0a4f113b\" , qop=auth, nc=00000001, opaque=\"\", "
        "x-unknown=token";

    assert_int_equal(sip_auth_parse(slice_cstr(h), &a, &why), 0);
    assert_slice(a.scheme, "Digest");
    assert_slice(a.username, "alice");
    assert_slice(a.realm, "example.com");
    assert_slice(a.nonce, "5a1f0b2c");
    assert_slice(a.uri, "sip:example.com");
    assert_slice(a.response, "7c6be37167ef6f7c3a243c47490d29f2");
    assert_slice(a.algorithm, "MD5");
    assert_slice(a.cnonce, "0a4f113b");
    assert_slice(a.qop, "auth");
    assert_slice(a.nc, "00000001");
    assert_int_equal(a.alg, SIP_DIGEST_MD5);
    /* Present but empty differs from absent. */
    assert_non_null(a.opaque.ptr);
    assert_int_equal(a.opaque.len, 0);
    assert_null(a.stale.ptr);
    assert_null(a.domain.ptr);
}

static void
test_parse_challenge(void **state)
{
    (void)state;
    struct sip_auth a;

    assert_int_equal(
        sip_auth_parse(SLICE_LIT("digest realm=\"example.com\", "
                                 "qop=\"auth,auth-int\", nonce=\"n1\", "
                                 "algorithm=SHA-256-sess, stale=FALSE, "
                                 "domain=\"sip:a sip:b\""),
                       &a, NULL),
        0);
    assert_slice(a.qop, "auth,auth-int");
    assert_slice(a.stale, "FALSE");
    assert_slice(a.domain, "sip:a sip:b");
    assert_int_equal(a.alg, SIP_DIGEST_SHA256_SESS);

    /* No algorithm = MD5; unknown algorithm is reported, not an error. */
    assert_int_equal(sip_auth_parse(SLICE_LIT("Digest realm=\"r\""), &a, NULL),
                     0);
    assert_int_equal(a.alg, SIP_DIGEST_MD5);
    assert_int_equal(
        sip_auth_parse(SLICE_LIT("Digest realm=r,algorithm=\"SHA-512-256\""),
                       &a, NULL),
        0);
    assert_int_equal(a.alg, SIP_DIGEST_UNKNOWN);

    /* Stray and trailing commas are tolerated (#rule). */
    assert_int_equal(
        sip_auth_parse(SLICE_LIT("Digest ,realm=\"r\",, nonce=\"n\",  "), &a,
                       NULL),
        0);
    assert_slice(a.nonce, "n");

    /* Other schemes parse with only the scheme set (RFC 4475 regaut01). */
    assert_int_equal(
        sip_auth_parse(SLICE_LIT("NoOneKnowsThisScheme opaque-data=here"), &a,
                       NULL),
        0);
    assert_slice(a.scheme, "NoOneKnowsThisScheme");
    assert_int_equal(a.alg, SIP_DIGEST_UNKNOWN);
    assert_null(a.realm.ptr);
}

static void
test_parse_quoted_pair(void **state)
{
    (void)state;
    struct sip_auth a;
    struct arena ar;
    struct slice u;

    assert_int_equal(sip_auth_parse(SLICE_LIT("Digest username=\"al\\\"i\\\\ce,"
                                              "x\", realm=\"r\""),
                                    &a, NULL),
                     0);
    assert_slice(a.username, "al\\\"i\\\\ce,x");
    assert_slice(a.realm, "r");
    arena_init(&ar, 0);
    assert_int_equal(sip_auth_unquote(a.username, &ar, &u), 0);
    assert_slice(u, "al\"i\\ce,x");
    assert_int_equal(sip_auth_unquote(a.realm, &ar, &u), 0);
    assert_ptr_equal(u.ptr, a.realm.ptr); /* no copy without escapes */
    arena_fini(&ar);
}

static void
test_parse_errors(void **state)
{
    (void)state;
    assert_string_equal(parse_err("Digest realm=\"a\", realm=\"b\""),
                        "duplicate auth parameter");
    assert_string_equal(parse_err("Digest Realm=\"a\", realm=\"a\""),
                        "duplicate auth parameter");
    assert_string_equal(parse_err("Digest x=1, y=2, x=3"),
                        "duplicate auth parameter");
    assert_string_equal(parse_err("Digest realm=\"abc"),
                        "unterminated quoted string");
    assert_string_equal(parse_err("Digest realm=\"abc\\\""),
                        "unterminated quoted string");
    assert_string_equal(parse_err("Digest realm"),
                        "missing '=' in auth parameter");
    assert_string_equal(parse_err("Digest realm="),
                        "empty auth parameter value");
    assert_string_equal(parse_err("Digest =x"), "bad auth parameter name");
    assert_string_equal(parse_err("Digest realm=\"a\" nonce=\"b\""),
                        "expected ',' between auth parameters");
    assert_string_equal(parse_err("Digest"), "missing auth parameters");
    assert_string_equal(parse_err("Digest   "), "missing auth parameters");
    assert_string_equal(parse_err(""), "missing auth scheme");
    assert_string_equal(parse_err("\"Digest\" realm=x"), "missing auth scheme");
    assert_string_equal(parse_err("Digest,realm=x"), "bad auth scheme");

    /* More than 32 distinct params is a limit. */
    char big[600];
    size_t n = 0;
    n += (size_t)snprintf(big, sizeof(big), "Digest ");
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "p%d=1,", i);
    assert_string_equal(parse_err(big), "too many auth parameters");
}

static void
test_alg_names(void **state)
{
    (void)state;
    assert_int_equal(sip_digest_alg_parse(SLICE_LIT("")), SIP_DIGEST_MD5);
    assert_int_equal(sip_digest_alg_parse(SLICE_LIT("md5")), SIP_DIGEST_MD5);
    assert_int_equal(sip_digest_alg_parse(SLICE_LIT("MD5-SESS")),
                     SIP_DIGEST_MD5_SESS);
    assert_int_equal(sip_digest_alg_parse(SLICE_LIT("sha-256")),
                     SIP_DIGEST_SHA256);
    assert_int_equal(sip_digest_alg_parse(SLICE_LIT("SHA-256-sess")),
                     SIP_DIGEST_SHA256_SESS);
    assert_int_equal(sip_digest_alg_parse(SLICE_LIT("SHA-256x")),
                     SIP_DIGEST_UNKNOWN);
    assert_string_equal(sip_digest_alg_name(SIP_DIGEST_SHA256), "SHA-256");
    assert_string_equal(sip_digest_alg_name(SIP_DIGEST_MD5_SESS), "MD5-sess");
    assert_int_equal(sip_digest_hex_len(SIP_DIGEST_MD5), 32);
    assert_int_equal(sip_digest_hex_len(SIP_DIGEST_SHA256_SESS), 64);
    assert_int_equal(sip_digest_hex_len(SIP_DIGEST_UNKNOWN), 0);
}

static void
test_hash_empty(void **state)
{
    (void)state;
    char out[65];

    sip_digest_hash(SIP_DIGEST_MD5, SLICE_LIT(""), out);
    assert_string_equal(out, "d41d8cd98f00b204e9800998ecf8427e");
    sip_digest_hash(SIP_DIGEST_SHA256, SLICE_NULL, out);
    assert_string_equal(
        out,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sip_digest_hash(SIP_DIGEST_UNKNOWN, SLICE_LIT("x"), out);
    assert_string_equal(out, "");
}

struct vec {
    enum sip_digest_alg alg;
    const char *user, *realm, *pw, *method, *uri, *nonce, *nc, *cnonce, *qop;
    const char *body;
    const char *want;
};

static const struct vec vectors[] = {
    /* RFC 2617 §3.5 */
    {SIP_DIGEST_MD5, "Mufasa", "testrealm@host.com", "Circle Of Life", "GET",
     "/dir/index.html", "dcd98b7102dd2f0e8b11d0f600bfb0c093", "00000001",
     "0a4f113b", "auth", "", "6629fae49393a05397450978507c4ef1"},
    /* RFC 7616 §3.9.1, MD5 and SHA-256 */
    {SIP_DIGEST_MD5, "Mufasa", "http-auth@example.org", "Circle of Life", "GET",
     "/dir/index.html", "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
     "00000001", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", "auth", "",
     "8ca523f5e9506fed4657c9700eebdbec"},
    {SIP_DIGEST_SHA256, "Mufasa", "http-auth@example.org", "Circle of Life",
     "GET", "/dir/index.html", "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
     "00000001", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", "auth", "",
     "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"},
    /* SIP example of protocols.md §4.7 */
    {SIP_DIGEST_MD5, "alice", "example.com", "secret", "REGISTER",
     "sip:example.com", "5a1f0b2c", "00000001", "0a4f113b", "auth", "",
     "7c6be37167ef6f7c3a243c47490d29f2"},
    {SIP_DIGEST_SHA256, "alice", "example.com", "secret", "REGISTER",
     "sip:example.com", "5a1f0b2c", "00000001", "0a4f113b", "auth", "",
     "35a609fcac91c5e7dbc23e287d31b9bf34d6f6acc0d9ee0d587782581f9bed46"},
    {SIP_DIGEST_MD5_SESS, "alice", "example.com", "secret", "REGISTER",
     "sip:example.com", "5a1f0b2c", "00000001", "0a4f113b", "auth", "",
     "c513b26154b674ed0e613f85b310c09d"},
    {SIP_DIGEST_MD5, "alice", "example.com", "secret", "REGISTER",
     "sip:example.com", "5a1f0b2c", "", "", "", "",
     "8a8b2897a09cfc86d27410ed0000defe"},
    /* Computed with Python hashlib (not from an RFC). */
    {SIP_DIGEST_SHA256_SESS, "alice", "example.com", "secret", "REGISTER",
     "sip:example.com", "5a1f0b2c", "00000001", "0a4f113b", "auth", "",
     "954549d44d4c0605a92573e66114d9d70c6cc30fd8b1b42adae5dbf0c7c65858"},
    {SIP_DIGEST_SHA256, "alice", "example.com", "secret", "REGISTER",
     "sip:example.com", "5a1f0b2c", "", "", "", "",
     "02563946b0a029f1ed2c660fa754cb7d67d5674516f76dbccb930e9cbb128a79"},
    {SIP_DIGEST_MD5, "alice", "example.com", "secret", "REGISTER",
     "sip:example.com", "5a1f0b2c", "00000001", "0a4f113b", "auth-int", "",
     "f110e5feb8d6b8ec63b95d0c1d1fec6a"},
    {SIP_DIGEST_SHA256, "alice", "example.com", "secret", "REGISTER",
     "sip:example.com", "5a1f0b2c", "00000001", "0a4f113b", "auth-int",
     "v=0\r\n",
     "02fd6df4a4b317889d839a52020a9d232b2c94e3a07a65caeed57820205a5b10"},
};

static void
test_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        const struct vec *v = &vectors[i];
        char ha1[65], out[65];

        sip_digest_ha1(v->alg, slice_cstr(v->user), slice_cstr(v->realm),
                       slice_cstr(v->pw), ha1);
        assert_int_equal(strlen(ha1), sip_digest_hex_len(v->alg));
        int rc = sip_digest_response(
            v->alg, slice_cstr(ha1), slice_cstr(v->nonce), slice_cstr(v->nc),
            slice_cstr(v->cnonce), slice_cstr(v->qop), slice_cstr(v->method),
            slice_cstr(v->uri), slice_cstr(v->body), out);
        assert_int_equal(rc, 0);
        if (strcmp(out, v->want) != 0)
            fail_msg("vector %zu: got %s want %s", i, out, v->want);
        assert_true(sip_digest_equal(slice_cstr(out), slice_cstr(v->want)));
    }
    char ha1[65];
    sip_digest_ha1(SIP_DIGEST_MD5, SLICE_LIT("alice"), SLICE_LIT("example.com"),
                   SLICE_LIT("secret"), ha1);
    assert_string_equal(ha1, "b1726872c344b6dc8365b774f8fd6412");
    sip_digest_ha1(SIP_DIGEST_SHA256_SESS, SLICE_LIT("alice"),
                   SLICE_LIT("example.com"), SLICE_LIT("secret"), ha1);
    assert_string_equal(
        ha1,
        "ed8925b20f9a77b8f8f8d5f8e4467fe32b866f7208ab9e4b20595e9821a0fdee");
}

static void
test_response_errors(void **state)
{
    (void)state;
    char out[65];
    struct slice ha1 = SLICE_LIT("b1726872c344b6dc8365b774f8fd6412");
    struct slice n = SLICE_LIT("n"), m = SLICE_LIT("REGISTER");

    assert_int_equal(sip_digest_response(SIP_DIGEST_UNKNOWN, ha1, n, n, n,
                                         SLICE_LIT("auth"), m, n, SLICE_NULL,
                                         out),
                     -EINVAL);
    assert_int_equal(sip_digest_response(SIP_DIGEST_MD5, ha1, n, n, n,
                                         SLICE_LIT("auth-conf"), m, n,
                                         SLICE_NULL, out),
                     -EINVAL);
    /* HA1 of the wrong length for the algorithm. */
    assert_int_equal(sip_digest_response(SIP_DIGEST_SHA256, ha1, n, n, n,
                                         SLICE_LIT("auth"), m, n, SLICE_NULL,
                                         out),
                     -EINVAL);
    /* -sess needs qop (and a cnonce). */
    assert_int_equal(sip_digest_response(SIP_DIGEST_MD5_SESS, ha1, n, n, n,
                                         SLICE_NULL, m, n, SLICE_NULL, out),
                     -EINVAL);
}

static void
test_equal(void **state)
{
    (void)state;
    assert_true(sip_digest_equal(SLICE_LIT("abc123"), SLICE_LIT("abc123")));
    assert_false(sip_digest_equal(SLICE_LIT("abc123"), SLICE_LIT("abc124")));
    assert_false(sip_digest_equal(SLICE_LIT("abc123"), SLICE_LIT("abc12")));
    assert_false(sip_digest_equal(SLICE_LIT("ABC123"), SLICE_LIT("abc123")));
    assert_false(sip_digest_equal(SLICE_LIT(""), SLICE_LIT("")));
    assert_false(sip_digest_equal(SLICE_NULL, SLICE_LIT("a")));
}

/* Parse a real Authorization header and verify it end to end, as the
 * registrar will. */
static void
test_parse_then_verify(void **state)
{
    (void)state;
    const char *hdrs[] = {
        "Digest username=\"alice\",realm=\"example.com\",nonce=\"5a1f0b2c\","
        "uri=\"sip:example.com\",response=\"35a609fcac91c5e7dbc23e287d31b9bf"
        "34d6f6acc0d9ee0d587782581f9bed46\",algorithm=SHA-256,"
        "cnonce=\"0a4f113b\",qop=auth,nc=00000001",
        "Digest username=\"alice\", realm=\"example.com\", "
        "nonce=\"5a1f0b2c\", uri=\"sip:example.com\", "
        "response=\"8a8b2897a09cfc86d27410ed0000defe\"",
    };
    for (size_t i = 0; i < 2; i++) {
        struct sip_auth a;
        char ha1[65], out[65];

        assert_int_equal(sip_auth_parse(slice_cstr(hdrs[i]), &a, NULL), 0);
        sip_digest_ha1(a.alg, a.username, a.realm, SLICE_LIT("secret"), ha1);
        assert_int_equal(sip_digest_response(a.alg, slice_cstr(ha1), a.nonce,
                                             a.nc, a.cnonce, a.qop,
                                             SLICE_LIT("REGISTER"), a.uri,
                                             SLICE_NULL, out),
                         0);
        assert_true(sip_digest_equal(slice_cstr(out), a.response));
        /* A wrong password fails. */
        sip_digest_ha1(a.alg, a.username, a.realm, SLICE_LIT("Secret"), ha1);
        assert_int_equal(sip_digest_response(a.alg, slice_cstr(ha1), a.nonce,
                                             a.nc, a.cnonce, a.qop,
                                             SLICE_LIT("REGISTER"), a.uri,
                                             SLICE_NULL, out),
                         0);
        assert_false(sip_digest_equal(slice_cstr(out), a.response));
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_credentials),
        cmocka_unit_test(test_parse_challenge),
        cmocka_unit_test(test_parse_quoted_pair),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_alg_names),
        cmocka_unit_test(test_hash_empty),
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_response_errors),
        cmocka_unit_test(test_equal),
        cmocka_unit_test(test_parse_then_verify),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
