/*
 * Tests for sip/uri: parsing (sip, sips, tel, other schemes, RFC 4475
 * URIs), parameter lookup, RFC 3261 §19.1.4 equality with the RFC's own
 * examples, the RFC 8599 §5.3 pn-* comparison, and unescaping.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "base/arena.h"
#include "sip/uri.h"

static struct sip_uri
parse_ok(const char *s)
{
    struct sip_uri u;
    const char *why = NULL;
    int rc = sip_uri_parse(slice_cstr(s), &u, &why);

    if (rc != 0)
        fail_msg("parse of '%s' failed: %s", s, why ? why : "?");
    return u;
}

static const char *
parse_err(const char *s)
{
    struct sip_uri u;
    const char *why = NULL;

    if (sip_uri_parse(slice_cstr(s), &u, &why) == 0)
        fail_msg("parse of '%s' should fail", s);
    assert_non_null(why);
    return why;
}

static void
assert_slice(struct slice s, const char *want)
{
    if (!slice_eq_cstr(s, want))
        fail_msg("got '%.*s', want '%s'", SLICE_ARG(s), want);
}

static void
test_full_sip(void **state)
{
    (void)state;
    struct sip_uri u = parse_ok("sip:alice:secret@Example.COM:5070"
                                ";transport=tcp;lr?subject=hi&priority=urgent");
    assert_int_equal(u.scheme, SIP_URI_SIP);
    assert_slice(u.scheme_name, "sip");
    assert_slice(u.user, "alice");
    assert_slice(u.password, "secret");
    assert_slice(u.host, "Example.COM");
    assert_false(u.host_ipv6);
    assert_true(u.has_port);
    assert_int_equal(u.port, 5070);
    assert_slice(u.params, ";transport=tcp;lr");
    assert_slice(u.headers, "subject=hi&priority=urgent");

    u = parse_ok("SIPS:example.com");
    assert_int_equal(u.scheme, SIP_URI_SIPS);
    assert_int_equal(u.user.len, 0);
    assert_false(u.has_port);
    assert_int_equal(u.port, 0);
    assert_int_equal(u.params.len, 0);

    u = parse_ok("sip:192.0.2.1:1");
    assert_slice(u.host, "192.0.2.1");
    assert_int_equal(u.port, 1);
    u = parse_ok("sip:h.example.com.:65535");
    assert_int_equal(u.port, 65535);
}

static void
test_ipv6(void **state)
{
    (void)state;
    struct sip_uri u = parse_ok("sip:bob@[2001:db8::10]:5070;transport=udp");
    assert_true(u.host_ipv6);
    assert_slice(u.host, "2001:db8::10");
    assert_int_equal(u.port, 5070);
    u = parse_ok("sip:[::1]");
    assert_slice(u.host, "::1");
    assert_false(u.has_port);
    u = parse_ok("sip:[::ffff:192.0.2.1]");
    assert_true(u.host_ipv6);
}

static void
test_tel_and_other(void **state)
{
    (void)state;
    struct sip_uri u = parse_ok("tel:+1-201-555-0123;ext=1234");
    assert_int_equal(u.scheme, SIP_URI_TEL);
    assert_slice(u.user, "+1-201-555-0123");
    assert_slice(u.params, ";ext=1234");
    struct slice v;
    assert_true(sip_uri_param(&u, "EXT", &v));
    assert_slice(v, "1234");

    u = parse_ok("tel:7042;phone-context=example.com");
    assert_slice(u.user, "7042");
    assert_true(sip_uri_param(&u, "phone-context", &v));
    assert_slice(v, "example.com");
    u = parse_ok("tel:*21#;phone-context=+1-555");
    assert_slice(u.user, "*21#");

    assert_non_null(parse_err("tel:"));
    assert_non_null(parse_err("tel:+--"));
    assert_non_null(parse_err("tel:+12x3"));
    assert_non_null(parse_err("tel:+123;=x"));
    assert_non_null(parse_err("tel:+123?a=b"));

    /* RFC 4475 unkscm and novelsc: parse, scheme OTHER (caller: 416). */
    u = parse_ok("nobodyKnowsThisScheme:totallyopaquecontent");
    assert_int_equal(u.scheme, SIP_URI_OTHER);
    assert_slice(u.scheme_name, "nobodyKnowsThisScheme");
    u = parse_ok("soap.beep://192.0.2.103:3002");
    assert_int_equal(u.scheme, SIP_URI_OTHER);
    u = parse_ok("mailto:alice@example.com");
    assert_int_equal(u.scheme, SIP_URI_OTHER);
    assert_slice(u.raw, "mailto:alice@example.com");
}

static void
test_rfc4475_uris(void **state)
{
    (void)state;
    /* esc01: escaped R-URI user with reserved chars. */
    struct sip_uri u = parse_ok("sip:sips%3Auser%40example.com@example.net");
    assert_slice(u.user, "sips%3Auser%40example.com");
    assert_slice(u.host, "example.net");
    u = parse_ok("sip:I%20have%20spaces@example.net");
    assert_slice(u.user, "I%20have%20spaces");
    /* semiuri: ';' in the user part. */
    u = parse_ok("sip:user;par=u%40example.net@example.com");
    assert_slice(u.user, "user;par=u%40example.net");
    assert_slice(u.host, "example.com");
    assert_int_equal(u.params.len, 0);
    /* intmeth: every legal odd character in user and password. */
    u = parse_ok("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:"
                 "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com");
    assert_slice(u.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
    assert_slice(u.password, "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)");
    /* escnull: %00 is a legal escape. */
    u = parse_ok("sip:null-%00-null@example.com");
    /* regescrt / escruri: escaped Route header in the URI headers. */
    u = parse_ok("sip:user@example.com?Route=%3Csip:sip.example.com%3E");
    assert_slice(u.headers, "Route=%3Csip:sip.example.com%3E");
    /* wsinv: flag param. */
    u = parse_ok("sip:vivekg@chair-dnrc.example.com;unknownparam");
    struct slice v = SLICE_LIT("x");
    assert_true(sip_uri_param(&u, "unknownparam", &v));
    assert_int_equal(v.len, 0);
}

static void
test_rejects(void **state)
{
    (void)state;
    /* ltgtruri, lwsruri, badaspec. */
    assert_string_equal(parse_err("<sip:user@example.com>"),
                        "'<' or '>' in URI");
    assert_string_equal(parse_err("sip:user@example.com>"),
                        "'<' or '>' in URI");
    assert_string_equal(parse_err("sip:lwsruri@example.com ;x"),
                        "space or control character in URI");
    assert_string_equal(parse_err("sip:a\tb@example.com"),
                        "space or control character in URI");
    assert_string_equal(parse_err("sip:%4"), "bad escape in URI");
    assert_string_equal(parse_err("sip:%zz@h"), "bad escape in URI");
    assert_string_equal(parse_err("sip:a@h%"), "bad escape in URI");
    assert_string_equal(parse_err(""), "empty URI");
    assert_string_equal(parse_err("nocolon"), "missing URI scheme");
    assert_string_equal(parse_err("1sip:x"), "bad URI scheme");
    assert_string_equal(parse_err("sip:"), "missing host");
    assert_string_equal(parse_err("sip:@h"), "empty user part");
    assert_string_equal(parse_err("sip:a@"), "missing host");
    assert_string_equal(parse_err("sip:h:0"), "bad port");
    assert_string_equal(parse_err("sip:h:65536"), "bad port");
    assert_string_equal(parse_err("sip:h:123456"), "bad port");
    assert_string_equal(parse_err("sip:h:"), "bad port");
    assert_string_equal(parse_err("sip:h:5x"), "bad port");
    assert_string_equal(parse_err("sip:[::1"), "unterminated IPv6 reference");
    assert_string_equal(parse_err("sip:[zz::1]"), "bad IPv6 address");
    assert_string_equal(parse_err("sip:[]"), "bad IPv6 address");
    assert_string_equal(parse_err("sip:1.2.3.256"), "bad IPv4 address");
    assert_string_equal(parse_err("sip:1.2.3"), "bad IPv4 address");
    assert_string_equal(parse_err("sip:a..b"), "bad host name");
    assert_string_equal(parse_err("sip:-a.com"), "bad host name");
    assert_string_equal(parse_err("sip:a_b.com"), "bad character in host");
    assert_string_equal(parse_err("sip:a@b@c"), "bad character in host");
    assert_string_equal(parse_err("sip:h;;x"), "empty URI parameter");
    assert_string_equal(parse_err("sip:h;x{=1"),
                        "bad character in URI parameter");
    assert_string_equal(parse_err("sip:h?"), "empty URI headers");
    assert_string_equal(parse_err("sip:h?a"), "bad URI header");
    assert_string_equal(parse_err("sip:h?=b"), "bad URI header");
    assert_string_equal(parse_err("sip:h?a=b&&c=d"), "bad URI header");
    assert_string_equal(parse_err("sip:a{b@h"), "bad character in user part");
    assert_string_equal(parse_err("sip:a:p{w@h"), "bad character in password");
    assert_string_equal(parse_err("sip:h/path"), "bad character in host");
    assert_string_equal(parse_err("sip:[::1]x"), "bad character after host");
    assert_string_equal(parse_err("mailto:"), "empty URI after scheme");
    assert_string_equal(parse_err("sip:\"q\"@h"), "quote in URI");
}

static void
test_limits(void **state)
{
    (void)state;
    char buf[1024];
    size_t n = (size_t)snprintf(buf, sizeof(buf), "sip:h");

    for (int i = 0; i < SIP_URI_MAX_PARAMS; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, ";p%d", i);
    struct sip_uri u = parse_ok(buf);
    assert_true(sip_uri_param(&u, "p63", NULL));
    snprintf(buf + n, sizeof(buf) - n, ";x");
    assert_string_equal(parse_err(buf), "too many URI parameters");

    n = (size_t)snprintf(buf, sizeof(buf), "sip:h?a=1");
    for (int i = 1; i < SIP_URI_MAX_PARAMS; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "&h%d=1", i);
    parse_ok(buf);
    snprintf(buf + n, sizeof(buf) - n, "&x=1");
    assert_string_equal(parse_err(buf), "too many URI headers");
}

static void
test_param_lookup(void **state)
{
    (void)state;
    struct sip_uri u = parse_ok("sip:a@h;Transport=TCP;lr;maddr=10.0.0.1;"
                                "pn-prid=ab%3Acd");
    struct slice v;
    assert_true(sip_uri_param(&u, "transport", &v));
    assert_slice(v, "TCP");
    assert_true(sip_uri_param(&u, "LR", &v));
    assert_int_equal(v.len, 0);
    assert_true(sip_uri_param(&u, "maddr", NULL));
    assert_true(sip_uri_param(&u, "pn-prid", &v));
    assert_slice(v, "ab%3Acd"); /* stays escaped */
    assert_false(sip_uri_param(&u, "user", &v));
    assert_false(sip_uri_param(&u, "l", &v));
    assert_false(sip_uri_param(&u, "lrx", &v));
    /* The first of duplicates wins. */
    u = parse_ok("sip:h;x=1;x=2");
    assert_true(sip_uri_param(&u, "x", &v));
    assert_slice(v, "1");
}

static bool
eq(const char *a, const char *b)
{
    struct sip_uri x = parse_ok(a), y = parse_ok(b);
    bool r = sip_uri_equal(&x, &y);

    /* Equality is symmetric; check it every time. */
    assert_int_equal(r, sip_uri_equal(&y, &x));
    return r;
}

static void
test_equal_rfc3261_examples(void **state)
{
    (void)state;
    /* RFC 3261 §19.1.4: equivalent. */
    assert_true(eq("sip:%61lice@atlanta.com;transport=TCP",
                   "sip:alice@AtLanTa.CoM;Transport=tcp"));
    assert_true(
        eq("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"));
    assert_true(
        eq("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"));
    assert_true(eq("sip:carol@chicago.com;newparam=5",
                   "sip:carol@chicago.com;security=on"));
    assert_true(eq("sip:biloxi.com;transport=tcp;method=REGISTER"
                   "?to=sip:bob%40biloxi.com",
                   "sip:biloxi.com;method=REGISTER;transport=tcp"
                   "?to=sip:bob%40biloxi.com"));
    assert_true(
        eq("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
           "sip:alice@atlanta.com?priority=urgent&subject=project%20x"));
    /* Not equivalent. */
    assert_false(eq("SIP:ALICE@AtLanTa.CoM;Transport=udp",
                    "sip:alice@AtLanTa.CoM;Transport=UDP"));
    assert_false(eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"));
    assert_false(eq("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"));
    assert_false(
        eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"));
    assert_false(eq("sip:carol@chicago.com",
                    "sip:carol@chicago.com?Subject=next%20meeting"));
    assert_false(eq("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"));
    assert_false(eq("sip:carol@chicago.com;security=on",
                    "sip:carol@chicago.com;security=off"));
}

static void
test_equal_rules(void **state)
{
    (void)state;
    assert_false(eq("sip:a@h", "sips:a@h"));
    assert_false(eq("sip:a@h", "sip:h"));
    assert_true(eq("sip:a:pw@h", "sip:a:pw@h"));
    assert_false(eq("sip:a:pw@h", "sip:a:PW@h"));
    assert_false(eq("sip:a:pw@h", "sip:a@h"));
    /* Escapes: unreserved = literal, reserved escape != literal, hex case
     * does not matter. */
    assert_true(eq("sip:%41b@h", "sip:Ab@h"));
    assert_false(eq("sip:%61b@h", "sip:Ab@h"));
    assert_false(eq("sip:a%3Bb@h", "sip:a;b@h"));
    assert_true(eq("sip:a%3bb@h", "sip:a%3Bb@h"));
    assert_true(eq("sip:h;x=%41", "sip:h;X=a"));
    /* user, ttl, method, maddr, transport on one side only. */
    assert_false(eq("sip:h", "sip:h;user=phone"));
    assert_false(eq("sip:h", "sip:h;ttl=1"));
    assert_false(eq("sip:h", "sip:h;method=INVITE"));
    assert_false(eq("sip:h", "sip:h;maddr=10.0.0.1"));
    assert_false(eq("sip:h;MADDR=10.0.0.1", "sip:h"));
    assert_true(eq("sip:h;lr", "sip:h"));
    assert_true(eq("sip:h;maddr=A.example", "sip:h;maddr=a.example"));
    assert_false(eq("sip:h;lr=on", "sip:h;lr"));
    /* Headers must be on both sides. */
    assert_false(eq("sip:h?a=b", "sip:h?a=b&c=d"));
    assert_false(eq("sip:h?a=b", "sip:h?a=B"));
    assert_true(eq("sip:h?A=b", "sip:h?a=b"));
    /* IPv6: textual forms of the same address. */
    assert_true(eq("sip:[2001:db8::1]:5060", "sip:[2001:DB8:0::1]:5060"));
    assert_false(eq("sip:[2001:db8::1]", "sip:[2001:db8::2]"));
    /* Duplicated params still equal themselves. */
    assert_true(eq("sip:h;x=1;x=2;%78=3", "sip:h;x=1;x=2;%78=3"));
    /* tel: visual separators ignored, params must match both ways. */
    assert_true(eq("tel:+1-201-555-0123", "tel:+1.201.555.0123"));
    assert_true(eq("tel:+1(201)5550123;ext=1", "tel:+12015550123;EXT=1"));
    assert_false(eq("tel:+1234;ext=1", "tel:+1234"));
    assert_false(eq("tel:+1234", "tel:1234;phone-context=+1"));
    /* other schemes: case-insensitive raw. */
    assert_true(eq("mailto:A@b", "MAILTO:a@B"));
    assert_false(eq("mailto:a@b", "mailto:a@c"));
    assert_false(eq("tel:+1234", "mailto:+1234"));
}

static bool
pn_eq(const char *a, const char *b)
{
    struct sip_uri x = parse_ok(a), y = parse_ok(b);
    bool r = sip_uri_pn_equal(&x, &y);

    assert_int_equal(r, sip_uri_pn_equal(&y, &x));
    return r;
}

#define PN_A                                                                   \
    "sip:alice@10.0.0.1:5060;pn-provider=apns;pn-prid=ABC;"                    \
    "pn-param=T.com.x.voip;transport=udp"

static void
test_pn_equal(void **state)
{
    (void)state;
    assert_true(pn_eq(PN_A, PN_A));
    /* Param order does not matter; escapes are decoded. */
    assert_true(pn_eq(PN_A, "sip:alice@10.0.0.1:5060;transport=udp;"
                            "pn-param=T.com.x.voip;pn-prid=%41BC;"
                            "pn-provider=apns"));
    /* A PRID differing in case: equal for §19.1.4, not for RFC 8599. */
    const char *lower_prid = "sip:alice@10.0.0.1:5060;pn-provider=apns;"
                             "pn-prid=abc;pn-param=T.com.x.voip;"
                             "transport=udp";
    assert_true(eq(PN_A, lower_prid));
    assert_false(pn_eq(PN_A, lower_prid));
    /* pn-prid on one side only: ignored by §19.1.4, a mismatch here. */
    const char *no_prid = "sip:alice@10.0.0.1:5060;pn-provider=apns;"
                          "pn-param=T.com.x.voip;transport=udp";
    assert_true(eq(PN_A, no_prid));
    assert_false(pn_eq(PN_A, no_prid));
    /* Other pn-* differences. */
    assert_false(pn_eq(PN_A, "sip:alice@10.0.0.1:5060;pn-provider=fcm;"
                             "pn-prid=ABC;pn-param=T.com.x.voip;"
                             "transport=udp"));
    assert_false(pn_eq(PN_A, "sip:alice@10.0.0.1:5060;pn-provider=apns;"
                             "pn-prid=ABC;pn-param=T.com.x;transport=udp"));
    /* The base rule still applies. */
    assert_false(pn_eq(PN_A, "sip:alice@10.0.0.2:5060;pn-provider=apns;"
                             "pn-prid=ABC;pn-param=T.com.x.voip;"
                             "transport=udp"));
    /* No pn-* at all on both sides: plain §19.1.4. */
    assert_true(pn_eq("sip:a@h", "sip:a@H"));

    /* Relaxed policy match: only pn-* compared, host may change. */
    struct sip_uri x = parse_ok(PN_A);
    struct sip_uri y = parse_ok("sip:alice@198.51.100.7:40000;pn-prid=ABC;"
                                "pn-provider=apns;pn-param=T.com.x.voip");
    assert_true(sip_uri_pn_params_equal(&x, &y));
    assert_false(sip_uri_pn_equal(&x, &y));
    struct sip_uri z = parse_ok("sip:alice@h");
    assert_false(sip_uri_pn_params_equal(&z, &z));
    y = parse_ok("sip:alice@h;pn-prid=ABD;pn-provider=apns;"
                 "pn-param=T.com.x.voip");
    assert_false(sip_uri_pn_params_equal(&x, &y));
}

static void
test_unescape(void **state)
{
    (void)state;
    struct arena a;
    struct slice out;

    arena_init(&a, 0);
    assert_int_equal(sip_unescape(SLICE_LIT("a%20b%00c%7e"), &a, &out), 0);
    assert_int_equal(out.len, 6);
    assert_memory_equal(out.ptr, "a b\0c~", 6);
    assert_int_equal(sip_unescape(SLICE_LIT(""), &a, &out), 0);
    assert_int_equal(out.len, 0);
    assert_int_equal(sip_unescape(SLICE_LIT("plain"), &a, &out), 0);
    assert_slice(out, "plain");
    assert_int_equal(sip_unescape(SLICE_LIT("%4"), &a, &out), -EINVAL);
    assert_int_equal(sip_unescape(SLICE_LIT("x%"), &a, &out), -EINVAL);
    assert_int_equal(sip_unescape(SLICE_LIT("%g0"), &a, &out), -EINVAL);
    arena_fini(&a);

    /* The arena cap is a limit, not a crash. */
    char big[200];
    memset(big, 'x', sizeof(big));
    arena_init(&a, 64);
    assert_int_equal(sip_unescape(slice_make(big, sizeof(big)), &a, &out),
                     -ENOMEM);
    arena_fini(&a);
}

static void
test_user_char(void **state)
{
    (void)state;
    const char *ok = "aZ09-_.!~*'()&=+$,;?/";
    for (const char *p = ok; *p; p++)
        assert_true(sip_uri_user_char(*p));
    const char *bad = "@: <>\"%[]{}#\r\n";
    for (const char *p = bad; *p; p++)
        assert_false(sip_uri_user_char(*p));
}

static void
test_unescape_to(void **state)
{
    char buf[8];
    size_t len = 99;

    (void)state;
    assert_int_equal(sip_unescape_to(SLICE_LIT("a%41%3a"), buf, sizeof(buf),
                                     &len),
                     0);
    assert_int_equal(len, 3);
    assert_string_equal(buf, "aA:");
    /* a decoded NUL is kept and counted */
    assert_int_equal(sip_unescape_to(SLICE_LIT("x%00y"), buf, sizeof(buf),
                                     &len),
                     0);
    assert_int_equal(len, 3);
    assert_memory_equal(buf, "x\0y", 3);
    /* malformed escapes */
    assert_int_equal(sip_unescape_to(SLICE_LIT("%4"), buf, sizeof(buf), &len),
                     -EINVAL);
    assert_int_equal(sip_unescape_to(SLICE_LIT("%zz"), buf, sizeof(buf), &len),
                     -EINVAL);
    /* exactly fits (7 + NUL), then one too many */
    assert_int_equal(sip_unescape_to(SLICE_LIT("abcdefg"), buf, sizeof(buf),
                                     &len),
                     0);
    assert_int_equal(sip_unescape_to(SLICE_LIT("abcdefgh"), buf, sizeof(buf),
                                     &len),
                     -ENOSPC);
    assert_int_equal(sip_unescape_to(SLICE_LIT(""), buf, 0, &len), -ENOSPC);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_sip),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_tel_and_other),
        cmocka_unit_test(test_rfc4475_uris),
        cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_param_lookup),
        cmocka_unit_test(test_equal_rfc3261_examples),
        cmocka_unit_test(test_equal_rules),
        cmocka_unit_test(test_pn_equal),
        cmocka_unit_test(test_unescape),
        cmocka_unit_test(test_unescape_to),
        cmocka_unit_test(test_user_char),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
