/*
 * Unit tests for the message parser pieces (sip/msg.h): header names and
 * compact forms, folding, comma iteration, Via, name-addr, Contact (with
 * RFC 5626 and RFC 8599 params), CSeq, limits, truncated and garbage
 * input, stream framing and the request check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/buf.h"
#include "sip/msg.h"

#define assert_slice(s, lit)                                                   \
    do {                                                                       \
        struct slice s_ = (s);                                                 \
        if (!slice_eq_cstr(s_, lit))                                           \
            fail_msg("got \"%.*s\", want \"%s\"", (int)s_.len, s_.ptr, lit);   \
    } while (0)

/* A parse fixture: the message is copied to an exact-size heap block so
 * ASan flags any read past its end. */
struct fx {
    char *buf;
    size_t len;
    struct arena a;
    struct sip_msg m;
    struct sip_error err;
    int rc;
};

static void
fx_parse_n(struct fx *f, const char *text, size_t len)
{
    memset(f, 0, sizeof(*f));
    f->len = len;
    f->buf = malloc(len ? len : 1);
    assert_non_null(f->buf);
    memcpy(f->buf, text, len);
    arena_init(&f->a, SIP_MSG_ARENA_CAP);
    f->rc = sip_msg_parse(&f->m, f->buf, f->len, &f->a, &f->err);
    if (f->rc == 0)
        sip_msg_assert_within(&f->m, f->buf, f->len);
}

static void
fx_parse(struct fx *f, const char *text)
{
    fx_parse_n(f, text, strlen(text));
}

static void
fx_done(struct fx *f)
{
    arena_fini(&f->a);
    free(f->buf);
}

static void
expect_ok(const char *text)
{
    struct fx f;

    fx_parse(&f, text);
    if (f.rc != 0)
        fail_msg("parse failed: %d %s", f.err.status, f.err.reason);
    fx_done(&f);
}

static void
expect_fail(const char *text, int status, const char *reason)
{
    struct fx f;

    fx_parse(&f, text);
    if (f.rc != -1 || f.err.status != status ||
        strcmp(f.err.reason, reason) != 0)
        fail_msg("got rc=%d %d \"%s\", want %d \"%s\"", f.rc, f.err.status,
                 f.rc ? f.err.reason : "", status, reason);
    fx_done(&f);
}

#define REQ_HEAD                                                               \
    "OPTIONS sip:bob@example.com SIP/2.0\r\n"                                  \
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9\r\n"                  \
    "From: <sip:alice@example.com>;tag=9fxced76sl\r\n"                         \
    "To: <sip:bob@example.com>\r\n"                                            \
    "Call-ID: 3848276298220188511@example.com\r\n"                             \
    "CSeq: 1 OPTIONS\r\n"

static void
test_basic_request(void **state)
{
    struct fx f;

    (void)state;
    fx_parse(&f, REQ_HEAD "Max-Forwards: 70\r\nContent-Length: 4\r\n\r\n"
                          "abcdEXTRA");
    assert_int_equal(f.rc, 0);
    assert_true(f.m.is_request);
    assert_int_equal(f.m.method, SIP_METHOD_OPTIONS);
    assert_slice(f.m.ruri, "sip:bob@example.com");
    assert_slice(f.m.via.branch, "z9hG4bK74bf9");
    assert_int_equal(f.m.via.port, 5060);
    assert_slice(f.m.from.tag, "9fxced76sl");
    assert_int_equal(f.m.to.tag.len, 0);
    assert_slice(f.m.call_id, "3848276298220188511@example.com");
    assert_int_equal(f.m.cseq.num, 1);
    assert_int_equal(f.m.max_forwards, 70);
    assert_int_equal(f.m.content_length, 4);
    assert_slice(f.m.body, "abcd");
    assert_int_equal(f.m.len, f.len - 5); /* EXTRA ignored (§18.3) */
    assert_int_equal(f.m.hdr_count, 7);
    /* raw spans the header line with its CRLF */
    assert_slice(f.m.hdrs[4].raw, "CSeq: 1 OPTIONS\r\n");
    assert_slice(f.m.hdrs[4].name, "CSeq");
    assert_slice(f.m.hdrs[4].value, "1 OPTIONS");
    fx_done(&f);
}

/* sip_msg_rebase: the copy outlives the original buffer and reads the
 * same as a fresh parse of the copied bytes; what it cannot move it
 * refuses. (Every RFC 4475 vector is also checked in torture_test.) */
static void
test_rebase(void **state)
{
    static const char text[] =
        REQ_HEAD "v: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKx;rport\r\n"
                 "Contact: \"A, B\" <sip:a@h>;expires=60,\r\n <sip:b@h>\r\n"
                 "X-Empty:\r\nl: 4\r\n\r\nabcdEXTRA";
    struct fx f;
    struct arena a;
    struct sip_msg r, bad;
    struct sip_hdr_iter it;
    struct slice v;
    size_t len = sizeof(text) - 1;
    char *copy = malloc(len);

    (void)state;
    assert_non_null(copy);
    fx_parse(&f, text);
    assert_int_equal(f.rc, 0);
    memcpy(copy, f.buf, len);
    arena_init(&a, SIP_MSG_ARENA_CAP);

    /* not all the bytes, or a slice outside the buffer: refused */
    assert_int_equal(sip_msg_rebase(&r, &f.m, copy, f.m.len - 1, &a), -1);
    bad = f.m;
    bad.call_id = SLICE_LIT("elsewhere");
    assert_int_equal(sip_msg_rebase(&r, &bad, copy, len, &a), -1);

    assert_int_equal(sip_msg_rebase(&r, &f.m, copy, len, &a), 0);
    fx_done(&f); /* the original goes away; ASan sees any stale slice */
    sip_msg_assert_within(&r, copy, len);
    assert_ptr_equal(r.buf, copy);
    assert_int_equal(r.len, len - 5);
    assert_int_equal(r.method, SIP_METHOD_OPTIONS);
    assert_slice(r.ruri, "sip:bob@example.com");
    assert_slice(r.via.branch, "z9hG4bK74bf9");
    assert_int_equal(r.via_count, 2);
    assert_slice(r.from.tag, "9fxced76sl");
    assert_slice(r.call_id, "3848276298220188511@example.com");
    assert_slice(r.cseq.method_name, "OPTIONS");
    assert_slice(r.body, "abcd");
    assert_int_equal(r.hdr_count, 9);
    assert_slice(r.hdrs[5].name, "v");
    assert_slice(sip_msg_hdr(&r, SIP_HDR_CONTENT_LENGTH)->raw, "l: 4\r\n");
    assert_slice(sip_msg_hdr_name(&r, SLICE_LIT("x-empty"))->value, "");
    sip_hdr_iter_init(&it, &r, SIP_HDR_CONTACT);
    assert_true(sip_hdr_iter_next(&it, &v));
    assert_slice(v, "\"A, B\" <sip:a@h>;expires=60");
    assert_true(sip_hdr_iter_next(&it, &v));
    assert_slice(v, "<sip:b@h>");
    assert_false(sip_hdr_iter_next(&it, &v));
    arena_fini(&a);
    free(copy);
}

static void
test_response(void **state)
{
    struct fx f;

    (void)state;
    fx_parse(&f, "SIP/2.0 180 Ringing Now\r\n"
                 "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
                 "From: <sip:a@example.com>;tag=1\r\n"
                 "To: <sip:b@example.com>;tag=2\r\n"
                 "Call-ID: x\r\nCSeq: 7 INVITE\r\n\r\n");
    assert_int_equal(f.rc, 0);
    assert_false(f.m.is_request);
    assert_int_equal(f.m.status, 180);
    assert_slice(f.m.reason, "Ringing Now");
    assert_slice(f.m.to.tag, "2");
    assert_int_equal(f.m.cseq.method, SIP_METHOD_INVITE);
    assert_int_equal(f.m.content_length, -1);
    assert_int_equal(f.m.body.len, 0);
    fx_done(&f);
    expect_fail("SIP/2.0 99 Low\r\n\r\n", 400, "Bad status code");
    expect_fail("SIP/2.0 700 High\r\n\r\n", 400, "Bad status code");
    expect_fail("SIP/2.0 2000 OK\r\n\r\n", 400, "Bad status code");
    expect_fail("SIP/3.0 200 OK\r\n\r\n", 505, "Version Not Supported");
}

static void
test_compact_names(void **state)
{
    static const struct {
        const char *name;
        enum sip_hdr_id id;
    } names[] = {
        {"v", SIP_HDR_VIA},
        {"F", SIP_HDR_FROM},
        {"t", SIP_HDR_TO},
        {"I", SIP_HDR_CALL_ID},
        {"m", SIP_HDR_CONTACT},
        {"L", SIP_HDR_CONTENT_LENGTH},
        {"c", SIP_HDR_CONTENT_TYPE},
        {"e", SIP_HDR_CONTENT_ENCODING},
        {"k", SIP_HDR_SUPPORTED},
        {"s", SIP_HDR_SUBJECT},
        {"o", SIP_HDR_EVENT},
        {"r", SIP_HDR_REFER_TO},
        {"x", SIP_HDR_OTHER},
        {"VIA", SIP_HDR_VIA},
        {"cAlL-iD", SIP_HDR_CALL_ID},
        {"Max-Forwards", SIP_HDR_MAX_FORWARDS},
        {"WWW-Authenticate", SIP_HDR_WWW_AUTHENTICATE},
        {"Proxy-Authorization", SIP_HDR_PROXY_AUTHORIZATION},
        {"Proxy-Authenticate", SIP_HDR_PROXY_AUTHENTICATE},
        {"Record-Route", SIP_HDR_RECORD_ROUTE},
        {"Feature-Caps", SIP_HDR_FEATURE_CAPS},
        {"Min-Expires", SIP_HDR_MIN_EXPIRES},
        {"Content-Lengthx", SIP_HDR_OTHER},
        {"Contacts", SIP_HDR_OTHER},
    };
    struct buf b;
    struct fx f;

    (void)state;
    /* One message using only compact forms for the required headers. */
    fx_parse(&f, "INVITE sip:b@example.com SIP/2.0\r\n"
                 "v: SIP/2.0/UDP h.example.com;branch=z9hG4bKa\r\n"
                 "f: <sip:a@example.com>;tag=1\r\n"
                 "T : <sip:b@example.com>\r\n"
                 "i:abc\r\n"
                 "CSeq: 3 INVITE\r\n"
                 "m: <sip:a@192.0.2.1>\r\n"
                 "k: path\r\n"
                 "l: 0\r\n\r\n");
    assert_int_equal(f.rc, 0);
    assert_slice(f.m.call_id, "abc");
    assert_int_equal(f.m.content_length, 0);
    assert_non_null(sip_msg_hdr(&f.m, SIP_HDR_SUPPORTED));
    assert_ptr_equal(sip_msg_hdr_name(&f.m, SLICE_LIT("Contact")),
                     sip_msg_hdr(&f.m, SIP_HDR_CONTACT));
    assert_ptr_equal(sip_msg_hdr_name(&f.m, SLICE_LIT("supported")),
                     sip_msg_hdr(&f.m, SIP_HDR_SUPPORTED));
    assert_null(sip_msg_hdr_name(&f.m, SLICE_LIT("X-Nope")));
    assert_null(sip_msg_hdr(&f.m, SIP_HDR_ROUTE));
    fx_done(&f);

    /* Each name, spelled as in the table, gets the right id. */
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        buf_init(&b, 4096);
        assert_int_equal(
            buf_printf(&b, REQ_HEAD "%s: x\r\n\r\n", names[i].name), 0);
        fx_parse_n(&f, b.data, b.len);
        /* Single-value headers prove they were recognised by failing. */
        if (names[i].id == SIP_HDR_MAX_FORWARDS) {
            assert_int_equal(f.rc, -1); /* "x" is not a number */
            assert_string_equal(f.err.reason, "Bad Max-Forwards");
        } else if (names[i].id == SIP_HDR_CONTENT_LENGTH) {
            assert_int_equal(f.rc, -1);
            assert_string_equal(f.err.reason, "Malformed Content-Length");
        } else if (names[i].id == SIP_HDR_FROM) {
            assert_string_equal(f.err.reason, "Duplicate From");
        } else if (names[i].id == SIP_HDR_TO) {
            assert_string_equal(f.err.reason, "Duplicate To");
        } else if (names[i].id == SIP_HDR_CALL_ID) {
            assert_string_equal(f.err.reason, "Duplicate Call-ID");
        } else {
            assert_int_equal(f.rc, 0);
            assert_int_equal(f.m.hdrs[f.m.hdr_count - 1].id, names[i].id);
        }
        fx_done(&f);
        buf_fini(&b);
    }
}

static void
test_folding_and_lf(void **state)
{
    struct fx f;
    struct sip_hdr_iter it;
    struct slice v;

    (void)state;
    /* bare LF line ends throughout, folded Subject and Via */
    fx_parse(&f, "OPTIONS sip:b@example.com SIP/2.0\n"
                 "Via: SIP/2.0/UDP\n\th.example.com\n ;branch=z9hG4bKf\n"
                 "From: <sip:a@example.com>;tag=1\n"
                 "To: <sip:b@example.com>\n"
                 "Call-ID: f1\nCSeq: 1 OPTIONS\n"
                 "Subject: first\r\n  second\r\n\tthird\n"
                 "\nbody");
    assert_int_equal(f.rc, 0);
    assert_slice(f.m.via.host, "h.example.com");
    assert_slice(f.m.via.branch, "z9hG4bKf");
    assert_slice(sip_msg_hdr(&f.m, SIP_HDR_SUBJECT)->value,
                 "first\r\n  second\r\n\tthird");
    assert_slice(f.m.body, "body");
    sip_hdr_iter_init(&it, &f.m, SIP_HDR_SUBJECT);
    assert_true(sip_hdr_iter_next(&it, &v));
    assert_false(sip_hdr_iter_next(&it, &v));
    fx_done(&f);
    /* folding right after the start line has no header to continue */
    expect_fail("OPTIONS sip:b@example.com SIP/2.0\r\n folded\r\n\r\n", 400,
                "Bad header folding");
}

static void
test_iterator(void **state)
{
    static const char *const want[] = {
        "\"Doe, John\" <sip:j@example.com;x=\"a,b\">;q=0.5",
        "<sip:k@example.com?h=1,2>",
        "sip:l@example.com",
        "<sip:m@example.com>",
    };
    struct fx f;
    struct sip_hdr_iter it;
    struct slice v;
    size_t n = 0;

    (void)state;
    fx_parse(&f, REQ_HEAD
             "Contact: \"Doe, John\" <sip:j@example.com;x=\"a,b\">;q=0.5 ,"
             "<sip:k@example.com?h=1,2>\r\n"
             "Route: <sip:r@example.com>\r\n"
             "Contact: ,, sip:l@example.com,\r\n  <sip:m@example.com> ,\r\n"
             "\r\n");
    assert_int_equal(f.rc, 0);
    sip_hdr_iter_init(&it, &f.m, SIP_HDR_CONTACT);
    while (sip_hdr_iter_next(&it, &v)) {
        assert_true(n < 4);
        assert_slice(v, want[n]);
        n++;
    }
    assert_int_equal(n, 4);
    assert_false(sip_hdr_iter_next(&it, &v)); /* stays at the end */
    /* an id with no header yields nothing */
    sip_hdr_iter_init(&it, &f.m, SIP_HDR_RECORD_ROUTE);
    assert_false(sip_hdr_iter_next(&it, &v));
    fx_done(&f);
}

static void
test_via(void **state)
{
    struct sip_via v;
    struct sip_error err;

    (void)state;
    assert_int_equal(sip_via_parse(SLICE_LIT("SIP/2.0/TCP [2001:db8::1]:5070"
                                             ";branch=z9hG4bKx;rport=5062"
                                             ";received=2001:db8::9"),
                                   &v, &err),
                     0);
    assert_slice(v.transport, "TCP");
    assert_slice(v.host, "2001:db8::1");
    assert_int_equal(v.port, 5070);
    assert_slice(v.branch, "z9hG4bKx");
    assert_true(v.rport);
    assert_int_equal(v.rport_value, 5062);
    assert_slice(v.received, "2001:db8::9");
    assert_slice(v.params, ";branch=z9hG4bKx;rport=5062;received=2001:db8::9");

    assert_int_equal(sip_via_parse(SLICE_LIT("SIP/2.0/UDP [::1];rport;branch="
                                             "z9hG4bK2"),
                                   &v, &err),
                     0);
    assert_slice(v.host, "::1");
    assert_int_equal(v.port, 0);
    assert_true(v.rport);
    assert_int_equal(v.rport_value, 0);

    /* LWS around '/', ':' and ';' (§25.1 SLASH, COLON, SEMI) */
    assert_int_equal(sip_via_parse(SLICE_LIT("sip / 2.0 / udp  h.example.com"
                                             " : 5060 ; branch = z9hG4bK3 "),
                                   &v, &err),
                     0);
    assert_slice(v.transport, "udp");
    assert_int_equal(v.port, 5060);
    assert_slice(v.branch, "z9hG4bK3");
    assert_int_equal(sip_via_parse(SLICE_LIT("SIP/2.0/UDP h"), &v, &err), 0);
    assert_int_equal(v.branch.len, 0);
    assert_false(v.rport);

    static const char *const bad[] = {
        "SIP/2.0/UDP",                    /* no sent-by */
        "SIP/2.0/UDP ",                   /* no host */
        "SIP/2.1/UDP h",                  /* version */
        "HTTP/2.0/UDP h",                 /* protocol */
        "SIP/2.0 UDP h",                  /* missing slash */
        "SIP/2.0/UDP h:0",                /* port 0 */
        "SIP/2.0/UDP h:65536",            /* port range */
        "SIP/2.0/UDP h:",                 /* empty port */
        "SIP/2.0/UDP [::1",               /* open bracket */
        "SIP/2.0/UDP [zz::1]",            /* not hex */
        "SIP/2.0/UDP [1.2.3.4]",          /* IPv6 ref without ':' */
        "SIP/2.0/UDP h junk",             /* stray token */
        "SIP/2.0/UDP h;;branch=z9hG4bK1", /* empty param */
        "SIP/2.0/UDP h;branch=",          /* empty value */
        "SIP/2.0/UDP h;branch",           /* branch without value */
        "SIP/2.0/UDP h;rport=99999",      /* rport range */
        "SIP/2.0/UDP h;rport=x",          /* rport not a number */
        "SIP/2.0/UDP h;x=\"unterminated", /* quote */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err.reason = NULL;
        if (sip_via_parse(slice_cstr(bad[i]), &v, &err) != -1)
            fail_msg("accepted bad Via %s", bad[i]);
        assert_int_equal(err.status, 400);
        assert_non_null(err.reason);
        assert_memory_equal(err.reason, "Bad Via", 7);
    }
}

static void
test_name_addr(void **state)
{
    struct sip_name_addr na;
    struct sip_error err;

    (void)state;
    assert_int_equal(sip_name_addr_parse(SLICE_LIT("\"A \\\"B\\\" C\" "
                                                   "<sip:a@example.com;lr>"
                                                   " ;tag=x1 ;foo"),
                                         &na, &err),
                     0);
    assert_slice(na.display, "A \\\"B\\\" C");
    assert_slice(na.uri, "sip:a@example.com;lr");
    assert_slice(na.tag, "x1");
    assert_slice(na.params, ";tag=x1 ;foo");

    assert_int_equal(
        sip_name_addr_parse(SLICE_LIT("Alice Smith <tel:+4930>"), &na, &err),
        0);
    assert_slice(na.display, "Alice Smith");
    assert_slice(na.uri, "tel:+4930");

    assert_int_equal(
        sip_name_addr_parse(SLICE_LIT("<sips:b@example.com>"), &na, &err), 0);
    assert_int_equal(na.display.len, 0);
    assert_int_equal(na.params.len, 0);

    /* addr-spec: params after the URI belong to the header */
    assert_int_equal(
        sip_name_addr_parse(SLICE_LIT("sip:c@example.com;tag=9"), &na, &err),
        0);
    assert_slice(na.uri, "sip:c@example.com");
    assert_slice(na.tag, "9");

    static const char *const bad[] = {
        "",
        "\"open <sip:a@example.com>",
        "\"q\" sip:a@example.com",        /* quoted display without <> */
        "<sip:a@example.com",             /* no '>' */
        "< sip:a@example.com>",           /* LWS inside <> (badaspec) */
        "Bell, Alex <sip:a@example.com>", /* baddn */
        "sip:a@example.com?h=1",          /* '?' outside <> (regbadct) */
        "a@example.com",                  /* no scheme */
        "<sip:a@example.com> junk",
        "<sip:a@example.com>;;",
        "<sip:a@example.com>;tag=",
        "<1sip:a@example.com>",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (sip_name_addr_parse(slice_cstr(bad[i]), &na, &err) != -1 ||
            err.status != 400)
            fail_msg("accepted bad name-addr %s", bad[i]);
}

static void
test_contact(void **state)
{
    struct sip_contact c;
    struct sip_error err;
    struct slice v;

    (void)state;
    /* RFC 8599 pn-* are URI params inside <>, kept verbatim in na.uri;
     * RFC 5626 +sip.instance and reg-id are contact-params. */
    assert_int_equal(
        sip_contact_parse(
            SLICE_LIT("<sip:100@192.0.2.4:5061;transport=tls;pn-provider=apns"
                      ";pn-param=ABCD1234.com.example.voip"
                      ";pn-prid=00fc13adff78%3A512>"
                      ";+sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-"
                      "00a0c91e6bf6>\";reg-id=1;expires=600;q=0.7"),
            &c, &err),
        0);
    assert_false(c.star);
    assert_slice(c.na.uri, "sip:100@192.0.2.4:5061;transport=tls;pn-provider="
                           "apns;pn-param=ABCD1234.com.example.voip;pn-prid="
                           "00fc13adff78%3A512");
    assert_false(sip_param_get(c.na.params, "pn-prid", &v));
    /* sip_param_get also reads URI params (lenient) */
    assert_true(sip_param_get(
        slice_make(
            memchr(c.na.uri.ptr, ';', c.na.uri.len),
            c.na.uri.len -
                (size_t)((const char *)memchr(c.na.uri.ptr, ';', c.na.uri.len) -
                         c.na.uri.ptr)),
        "PN-PRID", &v));
    assert_slice(v, "00fc13adff78%3A512");
    assert_slice(c.instance, "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
    assert_int_equal(c.reg_id, 1);
    assert_int_equal(c.expires, 600);
    assert_int_equal(c.q_milli, 700);

    assert_int_equal(sip_contact_parse(SLICE_LIT(" * "), &c, &err), 0);
    assert_true(c.star);

    assert_int_equal(sip_contact_parse(SLICE_LIT("sip:a@h"), &c, &err), 0);
    assert_int_equal(c.expires, -1);
    assert_int_equal(c.q_milli, -1);
    assert_int_equal(c.reg_id, 0);
    assert_int_equal(c.instance.len, 0);

    /* expires: huge clamps, malformed means 3600 (§20.19) */
    assert_int_equal(sip_contact_parse(SLICE_LIT("<sip:a@h>;expires="
                                                 "280297596632815"),
                                       &c, &err),
                     0);
    assert_int_equal(c.expires, 4294967295L);
    assert_int_equal(
        sip_contact_parse(SLICE_LIT("<sip:a@h>;expires=soon"), &c, &err), 0);
    assert_int_equal(c.expires, 3600);
    assert_int_equal(sip_contact_parse(SLICE_LIT("<sip:a@h>;q=1"), &c, &err),
                     0);
    assert_int_equal(c.q_milli, 1000);
    assert_int_equal(
        sip_contact_parse(SLICE_LIT("<sip:a@h>;q=0.005"), &c, &err), 0);
    assert_int_equal(c.q_milli, 5);

    static const char *const bad[] = {
        "<sip:a@h>;q=1.5",
        "<sip:a@h>;q=2",
        "<sip:a@h>;q=0.1234",
        "<sip:a@h>;q=x",
        "<sip:a@h>;reg-id=0",
        "<sip:a@h>;reg-id=-1",
        "<sip:a@h>;reg-id=2147483648",
        "**",
        "<sip:a@h",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (sip_contact_parse(slice_cstr(bad[i]), &c, &err) != -1 ||
            err.status != 400)
            fail_msg("accepted bad Contact %s", bad[i]);
}

static void
test_cseq_params(void **state)
{
    struct sip_cseq cs;
    struct sip_error err;
    struct slice v;

    (void)state;
    assert_int_equal(
        sip_cseq_parse(SLICE_LIT("2147483647 REGISTER"), &cs, &err), 0);
    assert_int_equal(cs.num, 2147483647u);
    assert_int_equal(cs.method, SIP_METHOD_REGISTER);
    assert_int_equal(
        sip_cseq_parse(SLICE_LIT("2147483648 REGISTER"), &cs, &err), -1);
    assert_int_equal(sip_cseq_parse(SLICE_LIT("1INVITE"), &cs, &err), -1);
    assert_int_equal(sip_cseq_parse(SLICE_LIT("1 INVITE x"), &cs, &err), -1);
    assert_int_equal(sip_cseq_parse(SLICE_LIT("-1 INVITE"), &cs, &err), -1);
    assert_int_equal(sip_cseq_parse(SLICE_LIT("INVITE"), &cs, &err), -1);

    assert_true(sip_param_get(SLICE_LIT(";A=1 ; b ;c=\"x;y\""), "a", &v));
    assert_slice(v, "1");
    assert_true(sip_param_get(SLICE_LIT(";A=1 ; b ;c=\"x;y\""), "B", &v));
    assert_int_equal(v.len, 0);
    assert_true(sip_param_get(SLICE_LIT(";A=1 ; b ;c=\"x;y\""), "c", &v));
    assert_slice(v, "\"x;y\"");
    assert_false(sip_param_get(SLICE_LIT(";A=1 ; b ;c=\"x;y\""), "x", &v));
    assert_false(sip_param_get(SLICE_NULL, "a", &v));

    assert_int_equal(sip_method_parse(SLICE_LIT("REGISTER")),
                     SIP_METHOD_REGISTER);
    assert_int_equal(sip_method_parse(SLICE_LIT("register")),
                     SIP_METHOD_UNKNOWN); /* case-sensitive */
    assert_string_equal(sip_method_name(SIP_METHOD_PUBLISH), "PUBLISH");
    assert_string_equal(sip_reason_phrase(420), "Bad Extension");
    assert_string_equal(sip_reason_phrase(555),
                        "Push Notification Service Not Supported");
    assert_string_equal(sip_reason_phrase(499), "Bad Request");
}

static void
test_required_headers(void **state)
{
    (void)state;
    expect_fail("OPTIONS sip:b@example.com SIP/2.0\r\n"
                "From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\n"
                "Call-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n",
                400, "Missing Via");
    expect_fail("OPTIONS sip:b@example.com SIP/2.0\r\n"
                "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
                "From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\n"
                "CSeq: 1 OPTIONS\r\n\r\n",
                400, "Missing Call-ID");
    expect_fail("OPTIONS sip:b@example.com SIP/2.0\r\n"
                "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
                "From: <sip:a@example.com>;tag=1\r\n"
                "Call-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n",
                400, "Missing To");
    expect_fail("OPTIONS sip:b@example.com SIP/2.0\r\n"
                "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
                "From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\n"
                "Call-ID: x\r\n\r\n",
                400, "Missing CSeq");
    expect_fail(REQ_HEAD "To: <sip:c@example.com>\r\n\r\n", 400,
                "Duplicate To");
    expect_fail(REQ_HEAD "Max-Forwards: 1\r\nMax-Forwards: 2\r\n\r\n", 400,
                "Duplicate Max-Forwards");
    expect_fail(REQ_HEAD "i: again\r\n\r\n", 400, "Duplicate Call-ID");
    expect_fail(REQ_HEAD "Max-Forwards: 256\r\n\r\n", 400, "Bad Max-Forwards");
    expect_fail(REQ_HEAD "Content-Length: 1x\r\n\r\nab", 400,
                "Malformed Content-Length");
    expect_fail(REQ_HEAD "Content-Length: 3\r\n\r\nab", 400,
                "Body shorter than Content-Length");
    expect_fail("INVITE sip:b@example.com SIP/2.0\r\n"
                "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
                "From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\n"
                "Call-ID: x\r\nCSeq: 1 invite\r\n\r\n",
                400, "CSeq method mismatch");
    expect_fail("OPTIONS sip:b@example.com SIP/2.0\r\n"
                "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
                "From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\n"
                "Call-ID: two words\r\nCSeq: 1 OPTIONS\r\n\r\n",
                400, "Bad Call-ID");
    /* Multi-valued headers may repeat */
    expect_ok(REQ_HEAD "Route: <sip:a>\r\nRoute: <sip:b>\r\n\r\n");
}

static void
test_expires(void **state)
{
    struct fx f;

    (void)state;
    fx_parse(&f, REQ_HEAD "Expires: 3600\r\n\r\n");
    assert_int_equal(f.m.expires, 3600);
    fx_done(&f);
    fx_parse(&f, REQ_HEAD "Expires: Thu, 01 Dec 1994 16:00:00 GMT\r\n\r\n");
    assert_int_equal(f.rc, 0);
    assert_int_equal(f.m.expires, -1);
    fx_done(&f);
    fx_parse(&f, REQ_HEAD "Expires: 99999999999999999999999\r\n\r\n");
    assert_int_equal(f.m.expires, 4294967295L);
    fx_done(&f);
    fx_parse(&f, REQ_HEAD "\r\n");
    assert_int_equal(f.m.expires, -1);
    assert_int_equal(f.m.max_forwards, -1);
    fx_done(&f);
}

static void
test_start_line(void **state)
{
    (void)state;
    expect_fail("\r\n\r\n", 400, "Empty message");
    expect_fail("", 400, "Empty message");
    expect_fail("OPTIONS sip:b@example.com SIP/2.0", 400,
                "Truncated start line");
    expect_fail("OPTIONS\r\n\r\n", 400, "Bad request line");
    expect_fail("OPTIONS sip:b@example.com\r\n\r\n", 400, "Bad request line");
    expect_fail("OPTIONS  SIP/2.0\r\n\r\n", 400, "Bad Request-URI");
    expect_fail("OPTIONS sip:b@example.com SIP/2.1\r\n\r\n", 505,
                "Version Not Supported");
    expect_fail("OPTIONS sip:b@exa mple.com SIP/2.0\r\n\r\n", 400,
                "Bad Request-URI");
    expect_fail("OPTIONS <sip:b@example.com> SIP/2.0\r\n\r\n", 400,
                "Bad Request-URI");
    expect_fail("OPTIONS b@example.com SIP/2.0\r\n\r\n", 400,
                "Bad Request-URI");
    expect_fail("OPT{IONS sip:b@example.com SIP/2.0\r\n\r\n", 400,
                "Bad request line");
    /* leading CRLFs (keep-alives) are skipped, §7.5 */
    expect_ok("\r\n\r\n" REQ_HEAD "\r\n");
}

static void
test_limits(void **state)
{
    struct buf b;
    struct fx f;
    struct arena tiny;
    struct sip_msg m;
    struct sip_error err;

    (void)state;
    buf_init(&b, 0);
    assert_int_equal(buf_append_cstr(&b, REQ_HEAD), 0);
    for (int i = 5; i < SIP_MAX_HEADERS; i++)
        assert_int_equal(buf_printf(&b, "X-H%d: %d\r\n", i, i), 0);
    assert_int_equal(buf_append_cstr(&b, "\r\n"), 0);
    fx_parse_n(&f, b.data, b.len);
    assert_int_equal(f.rc, 0);
    assert_int_equal(f.m.hdr_count, SIP_MAX_HEADERS);
    fx_done(&f);

    /* the arena cap is answered, not fatal */
    arena_init(&tiny, 64);
    assert_int_equal(sip_msg_parse(&m, b.data, b.len, &tiny, &err), -1);
    assert_int_equal(err.status, 513);
    arena_fini(&tiny);

    b.len -= 2;
    assert_int_equal(buf_append_cstr(&b, "X-One-Too-Many: 1\r\n\r\n"), 0);
    fx_parse_n(&f, b.data, b.len);
    assert_int_equal(f.rc, -1);
    assert_int_equal(f.err.status, 400);
    assert_string_equal(f.err.reason, "Too many headers");
    fx_done(&f);

    buf_reset(&b);
    assert_int_equal(buf_append_cstr(&b, REQ_HEAD "X-Big: "), 0);
    while (b.len <= SIP_MAX_MSG_LEN)
        assert_int_equal(buf_append_cstr(&b, "0123456789abcdef"), 0);
    assert_int_equal(buf_append_cstr(&b, "\r\n\r\n"), 0);
    fx_parse_n(&f, b.data, b.len);
    assert_int_equal(f.rc, -1);
    assert_int_equal(f.err.status, 513);
    fx_done(&f);
    buf_fini(&b);
}

/* Every prefix of a valid message either parses or fails cleanly with a
 * reason; ASan checks no byte past the prefix is read. */
static void
test_truncated_and_garbage(void **state)
{
    static const char msg[] =
        REQ_HEAD "Contact: \"x\" <sip:a@[2001:db8::1]:5060;lr>;expires=5\r\n"
                 "Content-Length: 5\r\n\r\nhello";
    size_t full = sizeof(msg) - 1, body_at = full - 5;
    struct fx f;
    uint32_t seed = 12345;

    (void)state;
    for (size_t n = 0; n <= full; n++) {
        fx_parse_n(&f, msg, n);
        if (n == full)
            assert_int_equal(f.rc, 0);
        else if (n < body_at - 2) /* before the blank line */
            assert_true(f.rc == -1 || f.m.content_length == -1 ||
                        f.m.content_length > (long)n);
        if (f.rc < 0)
            assert_non_null(f.err.reason);
        fx_done(&f);
    }
    /* the headers end exactly without body bytes: short body */
    fx_parse_n(&f, msg, body_at);
    assert_int_equal(f.rc, -1);
    assert_string_equal(f.err.reason, "Body shorter than Content-Length");
    fx_done(&f);

    /* garbage: random bytes, and the message with bytes flipped */
    for (int round = 0; round < 2000; round++) {
        char g[512];
        size_t n = round % 2 ? sizeof(g) : full;

        if (round % 2) {
            for (size_t i = 0; i < n; i++) {
                seed = seed * 1103515245u + 12345u;
                g[i] = (char)(seed >> 16);
            }
        } else {
            memcpy(g, msg, full);
            for (int k = 0; k < 3; k++) {
                seed = seed * 1103515245u + 12345u;
                g[(seed >> 8) % full] = (char)(seed >> 20);
            }
        }
        fx_parse_n(&f, g, n);
        if (f.rc < 0) {
            assert_true(f.err.status >= 400 && f.err.status <= 599);
            assert_non_null(f.err.reason);
        }
        fx_done(&f);
    }
}

static void
test_frame(void **state)
{
    static const char one[] = REQ_HEAD "Content-Length: 5\r\n\r\nhello";
    size_t n1 = sizeof(one) - 1;
    char two[2 * sizeof(one) + 8];
    struct sip_error err;
    struct buf b;

    (void)state;
    /* byte by byte: 0 until the last body byte arrives */
    for (size_t n = 0; n < n1; n++)
        assert_int_equal(sip_frame(one, n, &err), 0);
    assert_int_equal(sip_frame(one, n1, &err), (long)n1);
    /* two messages back to back with a keep-alive in between */
    memcpy(two, one, n1);
    memcpy(two + n1, "\r\n\r\n", 4);
    memcpy(two + n1 + 4, one, n1);
    assert_int_equal(sip_frame(two, 2 * n1 + 4, &err), (long)n1);
    assert_int_equal(sip_skip_keepalive(two + n1, n1 + 4), 4);
    assert_int_equal(sip_frame(two + n1 + 4, n1, &err), (long)n1);
    /* a pong-only buffer needs more bytes */
    assert_int_equal(sip_skip_keepalive("\r\n", 2), 2);
    assert_int_equal(sip_frame("\r\n\r\n", 4, &err), 0);
    /* compact l, folded value, LF-only lines */
    assert_int_equal(sip_frame("OPTIONS x SIP/2.0\nl:\n 2\n\nab", 27, &err),
                     27);

    /* stream rules: Content-Length is mandatory and must be sane */
    assert_int_equal(
        sip_frame(REQ_HEAD "\r\n", sizeof(REQ_HEAD "\r\n") - 1, &err), -1);
    assert_string_equal(err.reason, "Missing Content-Length");
    assert_int_equal(
        sip_frame(REQ_HEAD "Content-Length: -1\r\n\r\n",
                  sizeof(REQ_HEAD "Content-Length: -1\r\n\r\n") - 1, &err),
        -1);
    assert_string_equal(err.reason, "Malformed Content-Length");
    assert_int_equal(
        sip_frame(REQ_HEAD "l: 0\r\nContent-Length: 0\r\n\r\n",
                  sizeof(REQ_HEAD "l: 0\r\nContent-Length: 0\r\n\r\n") - 1,
                  &err),
        -1);
    assert_int_equal(sip_frame(REQ_HEAD "l: 99999\r\n\r\n",
                               sizeof(REQ_HEAD "l: 99999\r\n\r\n") - 1, &err),
                     -1);
    assert_int_equal(err.status, 513);
    /* endless headers are cut off at the message limit */
    buf_init(&b, 0);
    assert_int_equal(buf_append_cstr(&b, REQ_HEAD), 0);
    while (b.len < SIP_MAX_MSG_LEN)
        assert_int_equal(buf_append_cstr(&b, "X-Pad: 0123456789\r\n"), 0);
    assert_int_equal(sip_frame(b.data, b.len, &err), -1);
    assert_int_equal(err.status, 513);
    assert_int_equal(sip_frame(b.data, 4000, &err), 0);
    buf_fini(&b);
}

static void
test_request_check(void **state)
{
    struct fx f;
    struct sip_error err;
    struct slice tags[4];

    (void)state;
    fx_parse(&f, "INVITE tel:+4930123;phone-context=example.com SIP/2.0\r\n"
                 "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
                 "From: <sip:a@example.com>;tag=1\r\nTo: <tel:+4930123>\r\n"
                 "Call-ID: x\r\nCSeq: 1 INVITE\r\n"
                 "Require: Path\r\nProxy-Require: outbound, gruu\r\n\r\n");
    assert_int_equal(f.rc, 0);
    assert_int_equal(
        sip_request_check(&f.m, SLICE_LIT("path,outbound,gruu"), &err), 0);
    assert_int_equal(sip_request_check(&f.m, SLICE_LIT("path,outbound"), &err),
                     -1);
    assert_int_equal(err.status, 420);
    assert_int_equal(sip_unsupported_tags(&f.m, SLICE_LIT("outbound"), tags, 4),
                     2);
    assert_slice(tags[0], "Path");
    assert_slice(tags[1], "gruu");
    assert_int_equal(sip_unsupported_tags(&f.m, SLICE_NULL, tags, 4), 3);
    fx_done(&f);

    /* ACK is not failed on Require (only Proxy-Require counts) */
    fx_parse(&f, "ACK sips:b@example.com SIP/2.0\r\n"
                 "Via: SIP/2.0/TLS h;branch=z9hG4bK1\r\n"
                 "From: <sip:a@example.com>;tag=1\r\n"
                 "To: <sip:b@example.com>;tag=2\r\n"
                 "Call-ID: x\r\nCSeq: 1 ACK\r\nRequire: foo, foo\r\n\r\n");
    assert_int_equal(f.rc, 0);
    assert_int_equal(sip_request_check(&f.m, SLICE_NULL, &err), 0);
    fx_done(&f);

    fx_parse(&f,
             "OPTIONS mailto:b@example.com SIP/2.0\r\n"
             "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
             "From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\n"
             "Call-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n");
    assert_int_equal(f.rc, 0);
    assert_int_equal(sip_request_check(&f.m, SLICE_NULL, &err), -1);
    assert_int_equal(err.status, 416);
    fx_done(&f);

    fx_parse(&f,
             "OPTIONS sip:b@ SIP/2.0\r\n"
             "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
             "From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\n"
             "Call-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n");
    assert_int_equal(f.rc, 0);
    assert_int_equal(sip_request_check(&f.m, SLICE_NULL, &err), -1);
    assert_int_equal(err.status, 400);
    assert_string_equal(err.reason, "Bad Request-URI");
    fx_done(&f);

    fx_parse(&f,
             "SIP/2.0 200 OK\r\n"
             "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
             "From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\n"
             "Call-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n");
    assert_int_equal(f.rc, 0);
    assert_int_equal(sip_request_check(&f.m, SLICE_NULL, &err), -1);
    fx_done(&f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_request),
        cmocka_unit_test(test_response),
        cmocka_unit_test(test_compact_names),
        cmocka_unit_test(test_folding_and_lf),
        cmocka_unit_test(test_iterator),
        cmocka_unit_test(test_via),
        cmocka_unit_test(test_name_addr),
        cmocka_unit_test(test_contact),
        cmocka_unit_test(test_cseq_params),
        cmocka_unit_test(test_required_headers),
        cmocka_unit_test(test_expires),
        cmocka_unit_test(test_start_line),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_truncated_and_garbage),
        cmocka_unit_test(test_frame),
        cmocka_unit_test(test_request_check),
        cmocka_unit_test(test_rebase),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
