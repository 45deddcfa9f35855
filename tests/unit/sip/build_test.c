/*
 * Tests for sip/build. Everything built is parsed again with
 * sip_msg_parse() and checked field by field; the forwarding tests also
 * compare whole messages byte for byte, since "everything else unchanged"
 * is the contract of splicing.
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
#include "base/buf.h"
#include "sip/build.h"
#include "sip/msg.h"

struct parsed {
    struct arena a;
    struct sip_msg m;
};

static void
parse(struct parsed *p, const char *buf, size_t len)
{
    struct sip_error err = {0, NULL};

    arena_init(&p->a, SIP_MSG_ARENA_CAP);
    if (sip_msg_parse(&p->m, buf, len, &p->a, &err) != 0)
        fail_msg("parse failed (%d %s):\n%.*s", err.status,
                 err.reason ? err.reason : "?", (int)len, buf);
}

static void
parse_c(struct parsed *p, const char *s)
{
    parse(p, s, strlen(s));
}

static void
done(struct parsed *p)
{
    arena_fini(&p->a);
}

static void
assert_slice(struct slice s, const char *want)
{
    if (!slice_eq_cstr(s, want))
        fail_msg("got '%.*s', want '%s'", SLICE_ARG(s), want);
}

/* The idx-th value of all headers with this id. */
static struct slice
nth_value(const struct sip_msg *m, enum sip_hdr_id id, size_t idx)
{
    struct sip_hdr_iter it;
    struct slice v = SLICE_NULL;

    sip_hdr_iter_init(&it, m, id);
    for (size_t i = 0; i <= idx; i++) {
        if (!sip_hdr_iter_next(&it, &v))
            return SLICE_NULL;
    }
    return v;
}

static size_t
count_values(const struct sip_msg *m, enum sip_hdr_id id)
{
    struct sip_hdr_iter it;
    struct slice v;
    size_t n = 0;

    sip_hdr_iter_init(&it, m, id);
    while (sip_hdr_iter_next(&it, &v))
        n++;
    return n;
}

static size_t
count_substr(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static const char invite[] =
    "INVITE sip:100@pbx.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKp1, "
    "SIP/2.0/TCP 10.0.0.3;branch=z9hG4bKp2\r\n"
    "Max-Forwards: 70\r\n"
    "Via: SIP/2.0/UDP 10.0.0.4:5062;branch=z9hG4bKp3;rport\r\n"
    "From: \"Alice\" <sip:101@pbx.example.com>;tag=fromtag\r\n"
    "To: <sip:100@pbx.example.com>\r\n"
    "Call-ID: abc123@10.0.0.4\r\n"
    "CSeq: 7 INVITE\r\n"
    "Contact: <sip:101@10.0.0.4:5062>\r\n"
    "Timestamp: 54\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 5\r\n"
    "\r\n"
    "v=0\r\n";

static void
test_response_basic(void **state)
{
    (void)state;
    struct parsed req, rsp;
    struct buf b;

    parse_c(&req, invite);
    buf_init(&b, 0);
    assert_int_equal(sip_build_response(&b, &req.m, 180, "Ringing",
                                        SLICE_LIT("totag1"),
                                        SLICE_LIT("Contact: <sip:pbx@10.0.0.1>"
                                                  "\r\n"),
                                        SLICE_NULL),
                     0);
    parse(&rsp, b.data, b.len);
    assert_false(rsp.m.is_request);
    assert_int_equal(rsp.m.status, 180);
    assert_slice(rsp.m.reason, "Ringing");
    /* Every Via value, in order. */
    assert_int_equal(rsp.m.via_count, 3);
    assert_int_equal(count_values(&rsp.m, SIP_HDR_VIA), 3);
    for (size_t i = 0; i < 3; i++)
        assert_true(slice_eq(nth_value(&rsp.m, SIP_HDR_VIA, i),
                             nth_value(&req.m, SIP_HDR_VIA, i)));
    assert_slice(rsp.m.via.branch, "z9hG4bKp1");
    assert_slice(rsp.m.to.tag, "totag1");
    assert_slice(rsp.m.from.tag, "fromtag");
    assert_slice(rsp.m.call_id, "abc123@10.0.0.4");
    assert_int_equal(rsp.m.cseq.num, 7);
    assert_int_equal(rsp.m.cseq.method, SIP_METHOD_INVITE);
    assert_non_null(sip_msg_hdr(&rsp.m, SIP_HDR_SERVER));
    assert_non_null(sip_msg_hdr(&rsp.m, SIP_HDR_CONTACT));
    assert_slice(sip_msg_hdr(&rsp.m, SIP_HDR_CONTACT)->value,
                 "<sip:pbx@10.0.0.1>");
    /* Not copied: Max-Forwards, Content-Type, Timestamp (not a 100). */
    assert_null(sip_msg_hdr(&rsp.m, SIP_HDR_MAX_FORWARDS));
    assert_null(sip_msg_hdr(&rsp.m, SIP_HDR_CONTENT_TYPE));
    assert_null(sip_msg_hdr(&rsp.m, SIP_HDR_TIMESTAMP));
    assert_int_equal(rsp.m.content_length, 0);
    assert_int_equal(rsp.m.body.len, 0);
    assert_int_equal(rsp.m.len, b.len);
    done(&rsp);

    /* 100 Trying copies Timestamp (§8.2.6.1); reason defaults. */
    buf_reset(&b);
    assert_int_equal(sip_build_response(&b, &req.m, 100, NULL, SLICE_NULL,
                                        SLICE_NULL, SLICE_NULL),
                     0);
    parse(&rsp, b.data, b.len);
    assert_int_equal(rsp.m.status, 100);
    assert_slice(rsp.m.reason, "Trying");
    assert_int_equal(rsp.m.to.tag.len, 0); /* no tag asked for */
    assert_non_null(sip_msg_hdr(&rsp.m, SIP_HDR_TIMESTAMP));
    done(&rsp);
    buf_fini(&b);
    done(&req);
}

static void
test_response_body_and_tag_kept(void **state)
{
    (void)state;
    struct parsed req, rsp;
    struct buf b;
    const char *bye = "BYE sip:101@10.0.0.4:5062 SIP/2.0\r\n"
                      "v: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKbye\r\n"
                      "f: <sip:100@pbx>;tag=a\r\n"
                      "t: <sip:101@pbx>;tag=b\r\n"
                      "i: cid\r\n"
                      "CSeq: 2 BYE\r\n"
                      "l: 0\r\n\r\n";

    parse_c(&req, bye);
    buf_init(&b, 0);
    assert_int_equal(sip_build_response(&b, &req.m, 200, "OK",
                                        SLICE_LIT("other"),
                                        SLICE_LIT("Content-Type: text/plain"
                                                  "\r\n"),
                                        SLICE_LIT("hello\r\n")),
                     0);
    parse(&rsp, b.data, b.len);
    assert_slice(rsp.m.to.tag, "b"); /* never a second tag */
    assert_int_equal(count_substr(b.data, "tag="), 2);
    assert_int_equal(rsp.m.content_length, 7);
    assert_slice(rsp.m.body, "hello\r\n");
    assert_slice(rsp.m.call_id, "cid");
    done(&rsp);
    buf_fini(&b);
    done(&req);
}

static void
test_response_errors(void **state)
{
    (void)state;
    struct parsed req;
    struct buf b;

    parse_c(&req, invite);
    buf_init(&b, 0);
    assert_int_equal(sip_build_response(&b, &req.m, 99, "x", SLICE_NULL,
                                        SLICE_NULL, SLICE_NULL),
                     -EINVAL);
    assert_int_equal(sip_build_response(&b, &req.m, 700, "x", SLICE_NULL,
                                        SLICE_NULL, SLICE_NULL),
                     -EINVAL);
    buf_fini(&b);

    /* The buffer cap: an error, and the buffer rolled back. */
    buf_init(&b, 120);
    assert_int_equal(buf_append_cstr(&b, "keep"), 0);
    assert_int_equal(sip_build_response(&b, &req.m, 486, "Busy Here",
                                        SLICE_NULL, SLICE_NULL, SLICE_NULL),
                     -EMSGSIZE);
    assert_int_equal(b.len, 4);
    assert_string_equal(b.data, "keep");
    buf_fini(&b);
    done(&req);
}

static void
via_append_case(const char *top_via, const char *want_top)
{
    char msg[512];
    struct parsed req, rsp;
    struct buf b;
    struct sip_rsp_opts o = {
        .to_tag = SLICE_LIT("t1"),
        .via_append = SLICE_LIT(";received=192.0.2.1;rport=5062"),
    };

    snprintf(msg, sizeof(msg),
             "OPTIONS sip:pbx SIP/2.0\r\n"
             "Via: %s\r\n"
             "Via: SIP/2.0/UDP second;branch=z9hG4bK2;rport\r\n"
             "From: <sip:a@pbx>;tag=1\r\nTo: <sip:pbx>\r\n"
             "Call-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
             top_via);
    parse_c(&req, msg);
    buf_init(&b, 0);
    assert_int_equal(sip_build_response_opts(&b, &req.m, 200, "OK", &o), 0);
    parse(&rsp, b.data, b.len);
    assert_slice(nth_value(&rsp.m, SIP_HDR_VIA, 0), want_top);
    /* The second Via is untouched. */
    assert_slice(nth_value(&rsp.m, SIP_HDR_VIA, 1),
                 "SIP/2.0/UDP second;branch=z9hG4bK2;rport");
    assert_true(rsp.m.via.rport);
    assert_int_equal(rsp.m.via.rport_value, 5062);
    assert_slice(rsp.m.via.received, "192.0.2.1");
    assert_slice(rsp.m.via.branch, "z9hG4bK1");
    assert_slice(rsp.m.to.tag, "t1");
    done(&rsp);
    buf_fini(&b);
    done(&req);
}

static void
test_response_via_append(void **state)
{
    (void)state;
    /* Bare rport gets its value in place. */
    via_append_case("SIP/2.0/UDP 10.0.0.5:5062;rport;branch=z9hG4bK1",
                    "SIP/2.0/UDP 10.0.0.5:5062;rport=5062;branch=z9hG4bK1"
                    ";received=192.0.2.1");
    /* Old received replaced, no duplicate. */
    via_append_case("SIP/2.0/UDP host.example;received=10.1.1.1;branch="
                    "z9hG4bK1;RPORT",
                    "SIP/2.0/UDP host.example;received=192.0.2.1;branch="
                    "z9hG4bK1;rport=5062");
    /* Neither present: both appended. */
    via_append_case("SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK1",
                    "SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK1"
                    ";received=192.0.2.1;rport=5062");
    /* A top Via header holding two values: only the first changes. */
    struct parsed req, rsp;
    struct buf b;
    struct sip_rsp_opts o = {.via_append = SLICE_LIT("rport=7;received=x")};
    const char *msg = "OPTIONS sip:pbx SIP/2.0\r\n"
                      "Via: SIP/2.0/UDP a;rport;branch=z9hG4bK1 , "
                      "SIP/2.0/UDP b;rport;branch=z9hG4bK2\r\n"
                      "From: <sip:a@pbx>;tag=1\r\nTo: <sip:pbx>\r\n"
                      "Call-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n";
    parse_c(&req, msg);
    buf_init(&b, 0);
    assert_int_equal(sip_build_response_opts(&b, &req.m, 200, "OK", &o), 0);
    assert_non_null(strstr(b.data,
                           "Via: SIP/2.0/UDP a;rport=7;branch=z9hG4bK1;"
                           "received=x , SIP/2.0/UDP b;rport;branch=z9hG4bK2"
                           "\r\n"));
    parse(&rsp, b.data, b.len);
    assert_int_equal(rsp.m.via_count, 2);
    done(&rsp);
    /* Too many params is refused, buffer untouched. */
    buf_reset(&b);
    o.via_append = SLICE_LIT(";a;b;c;d;e;f;g;h;i");
    assert_int_equal(sip_build_response_opts(&b, &req.m, 200, "OK", &o),
                     -EINVAL);
    assert_int_equal(b.len, 0);
    buf_fini(&b);
    done(&req);
}

static const char fwd_in[] =
    "INVITE sip:100@pbx.example.com SIP/2.0\r\n"
    "Record-Route: <sip:edge.example.com;lr>\r\n"
    "Via: SIP/2.0/UDP 10.0.0.4:5062;branch=z9hG4bKp3;rport\r\n"
    "Route: <sip:pbx.example.com;lr>,  <sip:next.example.com;lr>\r\n"
    "Route: <sip:last.example.com;lr>\r\n"
    "Max-Forwards:   12\r\n"
    "X-Odd:    spaced\t value  \r\n"
    "From: \"Alice\" <sip:101@pbx.example.com>;tag=fromtag\r\n"
    "To: <sip:100@pbx.example.com>\r\n"
    "Call-ID: abc123@10.0.0.4\r\n"
    "Content-Length: 5\r\n"
    "CSeq: 7 INVITE\r\n"
    "Content-Type: application/sdp\r\n"
    "\r\n"
    "v=0\r\n"
    "trailing junk after Content-Length";

static const char fwd_out[] =
    "INVITE sip:100@10.0.0.9:5070;transport=tcp SIP/2.0\r\n"
    "Record-Route: <sip:10.0.0.1;lr>\r\n"
    "Record-Route: <sip:edge.example.com;lr>\r\n"
    "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnew\r\n"
    "Via: SIP/2.0/UDP 10.0.0.4:5062;branch=z9hG4bKp3;rport\r\n"
    "Route: <sip:next.example.com;lr>\r\n"
    "Route: <sip:last.example.com;lr>\r\n"
    "Max-Forwards:   11\r\n"
    "X-Odd:    spaced\t value  \r\n"
    "From: \"Alice\" <sip:101@pbx.example.com>;tag=fromtag\r\n"
    "To: <sip:100@pbx.example.com>\r\n"
    "Call-ID: abc123@10.0.0.4\r\n"
    "CSeq: 7 INVITE\r\n"
    "Content-Type: application/sdp\r\n"
    "X-Extra: 1\r\n"
    "Content-Length: 5\r\n"
    "\r\n"
    "v=0\r\n";

static void
test_forward_exact(void **state)
{
    (void)state;
    struct parsed req, out;
    struct buf b;
    struct sip_fwd f = {
        .ruri = SLICE_LIT("sip:100@10.0.0.9:5070;transport=tcp"),
        .via = SLICE_LIT("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnew"),
        .pop_route = true,
        .record_route = SLICE_LIT("<sip:10.0.0.1;lr>"),
        .extra = SLICE_LIT("X-Extra: 1\r\n"),
    };

    parse(&req, fwd_in, sizeof(fwd_in) - 1);
    buf_init(&b, 0);
    assert_int_equal(sip_build_forward(&b, &req.m, &f), 0);
    assert_string_equal(b.data, fwd_out);
    parse(&out, b.data, b.len);
    assert_true(out.m.is_request);
    assert_slice(out.m.ruri, "sip:100@10.0.0.9:5070;transport=tcp");
    assert_slice(out.m.via.branch, "z9hG4bKnew");
    assert_int_equal(out.m.via_count, 2);
    assert_int_equal(out.m.max_forwards, 11);
    assert_int_equal(count_values(&out.m, SIP_HDR_ROUTE), 2);
    assert_slice(nth_value(&out.m, SIP_HDR_ROUTE, 0),
                 "<sip:next.example.com;lr>");
    assert_slice(nth_value(&out.m, SIP_HDR_RECORD_ROUTE, 0),
                 "<sip:10.0.0.1;lr>");
    assert_slice(out.m.body, "v=0\r\n");
    assert_int_equal(out.m.content_length, 5);
    done(&out);
    buf_fini(&b);
    done(&req);
}

static void
test_forward_variants(void **state)
{
    (void)state;
    struct parsed req, out;
    struct buf b;
    /* Compact forms, no Max-Forwards, no Record-Route, one-value Route. */
    const char *in = "MESSAGE sip:100@pbx SIP/2.0\r\n"
                     "f: <sip:a@pbx>;tag=1\r\n"
                     "Route: <sip:pbx;lr>\r\n"
                     "t: <sip:100@pbx>\r\n"
                     "v: SIP/2.0/TCP 10.0.0.4;branch=z9hG4bKm\r\n"
                     "i: m1\r\n"
                     "CSeq: 3 MESSAGE\r\n"
                     "l: 2\r\n"
                     "\r\n"
                     "hi";
    const char *want = "MESSAGE sip:100@pbx SIP/2.0\r\n"
                       "f: <sip:a@pbx>;tag=1\r\n"
                       "t: <sip:100@pbx>\r\n"
                       "Record-Route: <sip:me;lr>\r\n"
                       "Via: SIP/2.0/TCP me;branch=z9hG4bKx\r\n"
                       "v: SIP/2.0/TCP 10.0.0.4;branch=z9hG4bKm\r\n"
                       "i: m1\r\n"
                       "CSeq: 3 MESSAGE\r\n"
                       "Max-Forwards: 70\r\n"
                       "Content-Length: 2\r\n"
                       "\r\n"
                       "hi";
    struct sip_fwd f = {
        .via = SLICE_LIT("SIP/2.0/TCP me;branch=z9hG4bKx"),
        .pop_route = true,
        .record_route = SLICE_LIT("<sip:me;lr>"),
    };

    parse_c(&req, in);
    buf_init(&b, 0);
    assert_int_equal(sip_build_forward(&b, &req.m, &f), 0);
    assert_string_equal(b.data, want);
    parse(&out, b.data, b.len);
    assert_int_equal(out.m.max_forwards, 70);
    assert_null(sip_msg_hdr(&out.m, SIP_HDR_ROUTE));
    assert_slice(out.m.body, "hi");
    done(&out);

    /* Nothing asked: only Max-Forwards and Content-Length change. */
    struct sip_fwd none = {.pop_route = false};
    buf_reset(&b);
    assert_int_equal(sip_build_forward(&b, &req.m, &none), 0);
    parse(&out, b.data, b.len);
    assert_slice(out.m.ruri, "sip:100@pbx");
    assert_int_equal(out.m.via_count, 1);
    assert_int_equal(count_values(&out.m, SIP_HDR_ROUTE), 1);
    assert_null(sip_msg_hdr(&out.m, SIP_HDR_RECORD_ROUTE));
    done(&out);
    buf_fini(&b);
    done(&req);
}

static void
test_forward_errors(void **state)
{
    (void)state;
    struct parsed req;
    struct buf b;
    struct sip_fwd f = {.pop_route = true};
    const char *zero = "OPTIONS sip:x@pbx SIP/2.0\r\n"
                       "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
                       "Max-Forwards: 0\r\n"
                       "From: <sip:a@pbx>;tag=1\r\nTo: <sip:x@pbx>\r\n"
                       "Call-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n";

    buf_init(&b, 0);
    parse_c(&req, zero);
    assert_int_equal(sip_build_forward(&b, &req.m, &f), -EINVAL);
    done(&req);
    parse_c(&req, invite); /* no Route */
    assert_int_equal(sip_build_forward(&b, &req.m, &f), -EINVAL);
    f.pop_route = false;
    assert_int_equal(sip_build_forward(&b, &req.m, &f), 0);
    buf_fini(&b);
    /* Cap: rolled back. */
    buf_init(&b, 100);
    assert_int_equal(sip_build_forward(&b, &req.m, &f), -EMSGSIZE);
    assert_int_equal(b.len, 0);
    buf_fini(&b);
    done(&req);
}

static void
test_response_forward(void **state)
{
    (void)state;
    struct parsed rsp, out;
    struct buf b;
    const char *in = "SIP/2.0 486 Busy Here\r\n"
                     "Via: SIP/2.0/UDP me;branch=z9hG4bKx, "
                     "SIP/2.0/UDP 10.0.0.4;branch=z9hG4bKm;received=1.2.3.4\r\n"
                     "Via: SIP/2.0/UDP third;branch=z9hG4bK3\r\n"
                     "From: <sip:a@pbx>;tag=1\r\n"
                     "To: <sip:100@pbx>;tag=2\r\n"
                     "Call-ID: m1\r\n"
                     "CSeq: 3 INVITE\r\n"
                     "Content-Length: 0\r\n"
                     "\r\n";
    const char *want = "SIP/2.0 486 Busy Here\r\n"
                       "Via: SIP/2.0/UDP 10.0.0.4;branch=z9hG4bKm;"
                       "received=1.2.3.4\r\n"
                       "Via: SIP/2.0/UDP third;branch=z9hG4bK3\r\n"
                       "From: <sip:a@pbx>;tag=1\r\n"
                       "To: <sip:100@pbx>;tag=2\r\n"
                       "Call-ID: m1\r\n"
                       "CSeq: 3 INVITE\r\n"
                       "Content-Length: 0\r\n"
                       "\r\n";

    parse_c(&rsp, in);
    buf_init(&b, 0);
    assert_int_equal(sip_build_response_forward(&b, &rsp.m), 0);
    assert_string_equal(b.data, want);
    parse(&out, b.data, b.len);
    assert_int_equal(out.m.via_count, 2);
    assert_slice(out.m.via.branch, "z9hG4bKm");
    assert_slice(out.m.via.received, "1.2.3.4");
    done(&out);
    /* Forward that again: the top Via header goes as a whole. */
    struct buf b2;
    buf_init(&b2, 0);
    parse(&out, b.data, b.len);
    assert_int_equal(sip_build_response_forward(&b2, &out.m), 0);
    done(&out);
    parse(&out, b2.data, b2.len);
    assert_int_equal(out.m.via_count, 1);
    assert_slice(out.m.via.branch, "z9hG4bK3");
    assert_int_equal(sip_build_response_forward(&b, &out.m), -EINVAL);
    done(&out);
    buf_fini(&b2);
    buf_fini(&b);
    done(&rsp);
}

static void
test_cancel_and_ack(void **state)
{
    (void)state;
    struct parsed req, rsp, out;
    struct buf b;
    const char *inv = "INVITE sip:101@10.0.0.4:5062 SIP/2.0\r\n"
                      "Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKours, "
                      "SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKup\r\n"
                      "Route: <sip:r1;lr>\r\n"
                      "Max-Forwards: 69\r\n"
                      "From: <sip:100@pbx>;tag=f\r\n"
                      "To: <sip:101@pbx>\r\n"
                      "Call-ID: call-1\r\n"
                      "CSeq: 42 INVITE\r\n"
                      "Require: 100rel\r\n"
                      "Content-Length: 0\r\n\r\n";
    const char *busy = "SIP/2.0 486 Busy Here\r\n"
                       "Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKours\r\n"
                       "From: <sip:100@pbx>;tag=f\r\n"
                       "To: <sip:101@pbx>;tag=callee\r\n"
                       "Call-ID: call-1\r\n"
                       "CSeq: 42 INVITE\r\n"
                       "Content-Length: 0\r\n\r\n";

    parse_c(&req, inv);
    buf_init(&b, 0);
    assert_int_equal(
        sip_build_cancel(&b, &req.m, SLICE_LIT("Reason: SIP;cause=487\r\n")),
        0);
    parse(&out, b.data, b.len);
    assert_int_equal(out.m.method, SIP_METHOD_CANCEL);
    assert_slice(out.m.ruri, "sip:101@10.0.0.4:5062");
    assert_int_equal(out.m.via_count, 1);
    assert_slice(out.m.via.branch, "z9hG4bKours");
    assert_int_equal(out.m.cseq.num, 42);
    assert_int_equal(out.m.cseq.method, SIP_METHOD_CANCEL);
    assert_slice(out.m.from.tag, "f");
    assert_int_equal(out.m.to.tag.len, 0);
    assert_slice(out.m.call_id, "call-1");
    assert_slice(nth_value(&out.m, SIP_HDR_ROUTE, 0), "<sip:r1;lr>");
    assert_non_null(sip_msg_hdr(&out.m, SIP_HDR_REASON));
    assert_null(sip_msg_hdr(&out.m, SIP_HDR_REQUIRE));
    assert_int_equal(out.m.max_forwards, 70);
    assert_int_equal(out.m.content_length, 0);
    done(&out);

    parse_c(&rsp, busy);
    buf_reset(&b);
    assert_int_equal(sip_build_ack(&b, &req.m, &rsp.m), 0);
    parse(&out, b.data, b.len);
    assert_int_equal(out.m.method, SIP_METHOD_ACK);
    assert_slice(out.m.ruri, "sip:101@10.0.0.4:5062");
    assert_slice(out.m.via.branch, "z9hG4bKours");
    assert_int_equal(out.m.via_count, 1);
    assert_slice(out.m.to.tag, "callee");
    assert_int_equal(out.m.cseq.num, 42);
    assert_int_equal(out.m.cseq.method, SIP_METHOD_ACK);
    assert_slice(nth_value(&out.m, SIP_HDR_ROUTE, 0), "<sip:r1;lr>");
    done(&out);
    /* The arguments the wrong way round. */
    assert_int_equal(sip_build_ack(&b, &req.m, &req.m), -EINVAL);
    assert_int_equal(sip_build_cancel(&b, &rsp.m, SLICE_NULL), -EINVAL);
    buf_fini(&b);
    done(&rsp);
    done(&req);
}

static bool
all_hex(const char *s)
{
    for (; *s; s++) {
        if (!strchr("0123456789abcdef", *s))
            return false;
    }
    return true;
}

static void
test_tokens(void **state)
{
    (void)state;
    char b1[32], b2[32], t1[17], t2[17];

    sip_new_branch(b1);
    sip_new_branch(b2);
    assert_int_equal(strlen(b1), 29);
    assert_memory_equal(b1, "z9hG4bK", 7);
    assert_true(all_hex(b1 + 7));
    assert_string_not_equal(b1, b2);
    sip_new_tag(t1);
    sip_new_tag(t2);
    assert_int_equal(strlen(t1), 16);
    assert_true(all_hex(t1));
    assert_string_not_equal(t1, t2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_response_basic),
        cmocka_unit_test(test_response_body_and_tag_kept),
        cmocka_unit_test(test_response_errors),
        cmocka_unit_test(test_response_via_append),
        cmocka_unit_test(test_forward_exact),
        cmocka_unit_test(test_forward_variants),
        cmocka_unit_test(test_forward_errors),
        cmocka_unit_test(test_response_forward),
        cmocka_unit_test(test_cancel_and_ack),
        cmocka_unit_test(test_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
