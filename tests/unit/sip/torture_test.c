/*
 * RFC 4475 torture tests: every vector in vectors/ is run through
 * sip_msg_parse, sip_request_check and sip_contact_parse, and the verdict
 * is compared with vectors/expected.tsv (which documents our choices where
 * the RFC leaves one). Every message that parses is also copied with
 * sip_msg_rebase and compared with a fresh parse of the copy. The valid
 * messages then get per-file checks of the decoded values. Vectors are read from $PUSHPBX_SOURCE_DIR.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sip/msg.h"
#include "sip/uri.h"

#define SUPPORTED SLICE_LIT("path, outbound")

struct vec {
    char *data;
    size_t len;
};

static void
vec_load(const char *name, struct vec *v)
{
    const char *root = getenv("PUSHPBX_SOURCE_DIR");
    char path[1024];
    FILE *f;
    long n;

    assert_non_null(root);
    snprintf(path, sizeof(path), "%s/tests/unit/sip/vectors/%s", root, name);
    f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    /* exact-size heap copy so ASan catches any read past the message */
    v->data = malloc(n > 0 ? (size_t)n : 1);
    assert_non_null(v->data);
    v->len = fread(v->data, 1, (size_t)n, f);
    assert_int_equal(v->len, (size_t)n);
    fclose(f);
}

/* Parse a vector that expect "ok"; fails the test otherwise. */
static void
parse_ok(const char *file, struct vec *v, struct sip_msg *m, struct arena *a)
{
    struct sip_error err = {0};
    char name[128];

    snprintf(name, sizeof(name), "%s.dat", file);
    vec_load(name, v);
    arena_init(a, SIP_MSG_ARENA_CAP);
    if (sip_msg_parse(m, v->data, v->len, a, &err) < 0)
        fail_msg("%s: %d %s", file, err.status, err.reason);
    sip_msg_assert_within(m, v->data, v->len);
}

static void
done(struct vec *v, struct arena *a)
{
    arena_fini(a);
    free(v->data);
}

static bool
eq(struct slice s, const char *lit)
{
    return slice_eq_cstr(s, lit);
}

#define assert_slice(s, lit)                                                   \
    do {                                                                       \
        struct slice s_ = (s);                                                 \
        if (!eq(s_, lit))                                                      \
            fail_msg("got \"%.*s\", want \"%s\"", (int)s_.len, s_.ptr, lit);   \
    } while (0)

/* --- the table ----------------------------------------------------------- */

static char *
field(char **line)
{
    char *s = *line, *tab = strchr(s, '\t');

    if (tab) {
        *tab = '\0';
        *line = tab + 1;
    } else {
        *line = s + strlen(s);
    }
    return s;
}

/* sip_msg_rebase(m onto a copy of the bytes) must give, field by field,
 * what a fresh parse of the copy gives: the struct compares equal byte for
 * byte but for the header array's address (a slice left pointing into the
 * old buffer, e.g. a field added to struct sip_msg and not rebased, shows
 * up here), and so does each header. */
static void
check_rebase(const char *file, const struct sip_msg *m, const struct vec *v)
{
    char *copy = malloc(v->len ? v->len : 1);
    struct arena a;
    struct sip_msg r, f;
    struct sip_error err = {0};

    assert_non_null(copy);
    memcpy(copy, v->data, v->len);
    arena_init(&a, SIP_MSG_ARENA_CAP);
    memset(&r, 0x5a, sizeof(r));
    if (sip_msg_rebase(&r, m, copy, v->len, &a) != 0)
        fail_msg("%s: rebase failed", file);
    sip_msg_assert_within(&r, copy, v->len);
    assert_int_equal(sip_msg_parse(&f, copy, v->len, &a, &err), 0);
    assert_int_equal(r.hdr_count, f.hdr_count);
    for (size_t i = 0; i < f.hdr_count; i++) {
        assert_int_equal(r.hdrs[i].id, f.hdrs[i].id);
        assert_true(r.hdrs[i].name.ptr == f.hdrs[i].name.ptr &&
                    r.hdrs[i].name.len == f.hdrs[i].name.len);
        assert_true(r.hdrs[i].value.ptr == f.hdrs[i].value.ptr &&
                    r.hdrs[i].value.len == f.hdrs[i].value.len);
        assert_true(r.hdrs[i].raw.ptr == f.hdrs[i].raw.ptr &&
                    r.hdrs[i].raw.len == f.hdrs[i].raw.len);
    }
    assert_true(r.hdrs != m->hdrs);
    r.hdrs = f.hdrs;
    if (memcmp(&r, &f, sizeof(r)) != 0)
        fail_msg("%s: rebased message differs from a fresh parse", file);
    arena_fini(&a);
    free(copy);
}

static void
run_row(const char *file, const char *expect, const char *stage,
        const char *reason, const char *tcp)
{
    struct vec v;
    struct arena a;
    struct sip_msg m;
    struct sip_error err = {0}, ferr = {0};
    char name[128], got_expect[16] = "ok";
    const char *got_stage = "-", *got_reason = "-";
    long fr;

    snprintf(name, sizeof(name), "%s.dat", file);
    vec_load(name, &v);
    arena_init(&a, SIP_MSG_ARENA_CAP);
    if (sip_msg_parse(&m, v.data, v.len, &a, &err) < 0) {
        got_stage = "parse";
    } else {
        sip_msg_assert_within(&m, v.data, v.len);
        check_rebase(file, &m, &v);
        if (m.is_request && sip_request_check(&m, SUPPORTED, &err) < 0) {
            got_stage = "check";
        } else {
            struct sip_hdr_iter it;
            struct slice val;
            struct sip_contact c;

            sip_hdr_iter_init(&it, &m, SIP_HDR_CONTACT);
            while (sip_hdr_iter_next(&it, &val))
                if (sip_contact_parse(val, &c, &err) < 0) {
                    got_stage = "contact";
                    break;
                }
        }
    }
    if (strcmp(got_stage, "-") != 0) {
        got_reason = err.reason;
        if (v.len >= 4 && memcmp(v.data, "SIP/", 4) == 0)
            snprintf(got_expect, sizeof(got_expect), "drop");
        else
            snprintf(got_expect, sizeof(got_expect), "%d", err.status);
    }
    if (strcmp(got_expect, expect) || strcmp(got_stage, stage) ||
        strcmp(got_reason, reason))
        fail_msg("%s: got %s/%s/%s, want %s/%s/%s", file, got_expect, got_stage,
                 got_reason, expect, stage, reason);

    fr = sip_frame(v.data, v.len, &ferr);
    if (!strcmp(tcp, "whole"))
        assert_int_equal(fr, (long)v.len);
    else if (!strcmp(tcp, "first"))
        assert_true(fr > 0 && (size_t)fr < v.len);
    else if (!strcmp(tcp, "wait"))
        assert_int_equal(fr, 0);
    else if (!strcmp(tcp, "close"))
        assert_int_equal(fr, -1);
    else
        fail_msg("%s: bad tcp column %s", file, tcp);
    if (fr > 0 && strcmp(got_stage, "parse") != 0)
        assert_int_equal((size_t)fr, m.len); /* stream and datagram agree */
    done(&v, &a);
}

static void
test_table(void **state)
{
    struct vec t;
    char *line, *next;
    int rows = 0;

    (void)state;
    vec_load("expected.tsv", &t);
    t.data = realloc(t.data, t.len + 1);
    assert_non_null(t.data);
    t.data[t.len] = '\0';
    for (line = t.data; *line; line = next) {
        char *rest = line, *file, *expect, *stage, *reason, *tcp;
        char *nl = strchr(line, '\n');

        next = nl ? nl + 1 : line + strlen(line);
        if (nl)
            *nl = '\0';

        if (line[0] == '#' || line[0] == '\0')
            continue;
        file = field(&rest);
        expect = field(&rest);
        stage = field(&rest);
        reason = field(&rest);
        tcp = field(&rest);
        run_row(file, expect, stage, reason, tcp);
        rows++;
    }
    /* every one of the 50 archive files has a row */
    assert_int_equal(rows, 50);
    free(t.data);
}

/* --- per-file decoded values ------------------------------------------- */

static void
test_wsinv(void **state)
{
    struct vec v;
    struct arena a;
    struct sip_msg m;
    struct sip_hdr_iter it;
    struct slice val;
    struct sip_via via;
    struct sip_contact c;
    struct sip_error err;
    const struct sip_hdr *h;

    (void)state;
    parse_ok("wsinv", &v, &m, &a);
    assert_int_equal(m.method, SIP_METHOD_INVITE);
    assert_slice(m.ruri, "sip:vivekg@chair-dnrc.example.com;unknownparam");
    assert_slice(m.call_id, "wsinv.ndaksdj@192.0.2.1");
    assert_int_equal(m.cseq.num, 9);
    assert_int_equal(m.cseq.method, SIP_METHOD_INVITE);
    assert_slice(m.via.branch, "390skdjuw");
    assert_slice(m.via.host, "192.0.2.2");
    assert_slice(m.via.transport, "UDP");
    assert_int_equal(m.via_count, 3);
    assert_slice(m.to.tag, "1918181833n");
    assert_slice(m.to.uri, "sip:vivekg@chair-dnrc.example.com");
    assert_slice(m.from.tag, "98asjd8");
    assert_slice(m.from.display, "J Rosenberg \\\\\\\"");
    assert_int_equal(m.max_forwards, 68);
    assert_int_equal(m.content_length, 150);
    assert_int_equal(m.body.len, 150);
    assert_true(m.body.ptr + m.body.len == v.data + v.len);
    /* the folded v: header holds two more Via values */
    sip_hdr_iter_init(&it, &m, SIP_HDR_VIA);
    assert_true(sip_hdr_iter_next(&it, &val));
    assert_true(sip_hdr_iter_next(&it, &val));
    assert_int_equal(sip_via_parse(val, &via, &err), 0);
    assert_slice(via.transport, "TCP");
    assert_slice(via.host, "spindle.example.com");
    assert_slice(via.branch, "z9hG4bK9ikj8");
    assert_true(sip_hdr_iter_next(&it, &val));
    assert_int_equal(sip_via_parse(val, &via, &err), 0);
    assert_slice(via.host, "192.168.255.111");
    assert_slice(via.branch, "z9hG4bK30239");
    assert_false(sip_hdr_iter_next(&it, &val));
    /* m: compact Contact, folded params */
    h = sip_msg_hdr(&m, SIP_HDR_CONTACT);
    assert_non_null(h);
    assert_int_equal(sip_contact_parse(h->value, &c, &err), 0);
    assert_slice(c.na.display, "Quoted string \\\"\\\"");
    assert_slice(c.na.uri, "sip:jdrosen@example.com");
    assert_int_equal(c.q_milli, 330);
    assert_true(sip_param_get(c.na.params, "newparam", &val));
    assert_slice(val, "newvalue");
    assert_true(sip_param_get(c.na.params, "secondparam", &val));
    assert_int_equal(val.len, 0);
    /* empty Subject (compact s) and a folded unknown header */
    h = sip_msg_hdr(&m, SIP_HDR_SUBJECT);
    assert_non_null(h);
    assert_int_equal(h->value.len, 0);
    h = sip_msg_hdr_name(&m, SLICE_LIT("newfangledheader"));
    assert_non_null(h);
    assert_slice(h->value, "newfangled value\r\n continued newfangled value");
    done(&v, &a);
}

static void
test_intmeth(void **state)
{
    struct vec v;
    struct arena a;
    struct sip_msg m;
    const struct sip_hdr *h;

    (void)state;
    parse_ok("intmeth", &v, &m, &a);
    assert_int_equal(m.method, SIP_METHOD_UNKNOWN);
    assert_slice(m.method_name, "!interesting-Method0123456789_*+`.%indeed'~");
    assert_int_equal(m.cseq.method, SIP_METHOD_UNKNOWN);
    assert_int_equal(m.cseq.num, 139122385);
    assert_int_equal(m.max_forwards, 255);
    assert_slice(m.via.branch, "z9hG4bK-.!%66*_+`'~");
    assert_slice(m.from.tag, "_token~1'+`*%!-.");
    assert_slice(m.from.display, "token1~` token2'+_ token3*%!.-");
    /* "BEL:\<07> NUL:\<00> DEL:\<7f>": the NUL stays inside the slice */
    assert_int_equal(m.to.display.len, 20);
    assert_int_equal(m.to.display.ptr[12], 0);
    assert_slice(m.call_id, "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");
    h = sip_msg_hdr_name(&m, SLICE_LIT("extensionHeader-!.%*+_`'~"));
    assert_non_null(h);
    assert_int_equal(h->value.len, 12); /* UTF-8 bytes */
    done(&v, &a);
}

static void
test_escnull(void **state)
{
    struct vec v;
    struct arena a;
    struct sip_msg m;
    struct sip_hdr_iter it;
    struct slice val, user[2];
    struct sip_contact c[2];
    struct sip_error err;
    int n = 0;

    (void)state;
    parse_ok("escnull", &v, &m, &a);
    assert_int_equal(m.method, SIP_METHOD_REGISTER);
    sip_hdr_iter_init(&it, &m, SIP_HDR_CONTACT);
    while (sip_hdr_iter_next(&it, &val)) {
        struct sip_uri u;
        const char *why;

        assert_true(n < 2);
        assert_int_equal(sip_contact_parse(val, &c[n], &err), 0);
        assert_int_equal(sip_uri_parse(c[n].na.uri, &u, &why), 0);
        assert_int_equal(sip_unescape(u.user, &a, &user[n]), 0);
        n++;
    }
    assert_int_equal(n, 2);
    assert_slice(c[0].na.uri, "sip:%00@host5.example.com");
    assert_slice(c[1].na.uri, "sip:%00%00@host5.example.com");
    assert_int_equal(user[0].len, 1);
    assert_int_equal(user[1].len, 2);
    assert_false(slice_eq(c[0].na.uri, c[1].na.uri));
    assert_int_equal(m.content_length, 0); /* "L:0" */
    done(&v, &a);
}

static void
test_esc02(void **state)
{
    struct vec v;
    struct arena a;
    struct sip_msg m;

    (void)state;
    parse_ok("esc02", &v, &m, &a);
    assert_int_equal(m.method, SIP_METHOD_UNKNOWN);
    assert_slice(m.method_name, "RE%47IST%45R");
    assert_int_equal(sip_msg_hdr_count(&m, SIP_HDR_CONTACT), 2);
    assert_non_null(sip_msg_hdr_name(&m, SLICE_LIT("C%6Fntact")));
    assert_slice(m.to.display, "%Z%45");
    done(&v, &a);
}

static void
test_longreq(void **state)
{
    struct vec v;
    struct arena a;
    struct sip_msg m;
    struct sip_hdr_iter it;
    struct slice val;
    struct sip_via via;
    struct sip_error err;
    size_t n = 0;

    (void)state;
    parse_ok("longreq", &v, &m, &a);
    assert_int_equal(m.hdr_count, 43);
    assert_int_equal(m.via_count, 34);
    assert_int_equal(sip_msg_hdr_count(&m, SIP_HDR_VIA), 34);
    assert_slice(m.via.host, "sip33.example.com");
    assert_int_equal(m.via.branch.len, 0);
    sip_hdr_iter_init(&it, &m, SIP_HDR_VIA);
    while (sip_hdr_iter_next(&it, &val)) {
        assert_int_equal(sip_via_parse(val, &via, &err), 0);
        n++;
    }
    assert_int_equal(n, 34);
    assert_slice(via.received, "192.0.2.5");
    assert_int_equal(via.branch.len, 215);
    assert_int_equal(m.from.tag.len, 155);
    assert_int_equal(m.to.display.len, 103);
    assert_int_equal(m.call_id.len, 141);
    assert_int_equal(m.body.len, 150);
    done(&v, &a);
}

static void
test_dblreq(void **state)
{
    struct vec v;
    struct arena a;
    struct sip_msg m;

    (void)state;
    parse_ok("dblreq", &v, &m, &a);
    assert_int_equal(m.method, SIP_METHOD_REGISTER);
    assert_true(m.len < v.len);
    assert_int_equal(m.len, 300);
    assert_int_equal(m.body.len, 0);
    assert_slice(m.call_id, "dblreq.0ha0isndaksdj99sdfafnl3lk233412");
    done(&v, &a);
}

static void
test_transports(void **state)
{
    static const char *const want[5][2] = {
        {"UDP", "t1.example.com"}, {"SCTP", "t2.example.com"},
        {"TLS", "t3.example.com"}, {"UNKNOWN", "t4.example.com"},
        {"TCP", "t5.example.com"},
    };
    struct vec v;
    struct arena a;
    struct sip_msg m;
    struct sip_hdr_iter it;
    struct slice val;
    struct sip_via via;
    struct sip_error err;
    int n = 0;

    (void)state;
    parse_ok("transports", &v, &m, &a);
    assert_int_equal(m.via_count, 5);
    sip_hdr_iter_init(&it, &m, SIP_HDR_VIA);
    while (sip_hdr_iter_next(&it, &val)) {
        assert_true(n < 5);
        assert_int_equal(sip_via_parse(val, &via, &err), 0);
        assert_slice(via.transport, want[n][0]);
        assert_slice(via.host, want[n][1]);
        n++;
    }
    assert_int_equal(n, 5);
    assert_slice(m.call_id, "transports.kijh4akdnaqjkwendsasfdj");
    done(&v, &a);
}

static void
test_cparam(void **state)
{
    struct vec v;
    struct arena a;
    struct sip_msg m;
    struct sip_contact c;
    struct sip_error err;
    struct sip_uri u;
    struct slice val;
    const char *why;

    (void)state;
    /* cparam01: no <>, so ;unknownparam is a contact-param */
    parse_ok("cparam01", &v, &m, &a);
    assert_int_equal(
        sip_contact_parse(sip_msg_hdr(&m, SIP_HDR_CONTACT)->value, &c, &err),
        0);
    assert_slice(c.na.uri, "sip:+19725552222@gw1.example.net");
    assert_true(sip_param_get(c.na.params, "unknownparam", &val));
    assert_int_equal(sip_uri_parse(c.na.uri, &u, &why), 0);
    assert_false(sip_uri_param(&u, "unknownparam", &val));
    done(&v, &a);
    /* cparam02: inside <>, so it is a URI param */
    parse_ok("cparam02", &v, &m, &a);
    assert_int_equal(
        sip_contact_parse(sip_msg_hdr(&m, SIP_HDR_CONTACT)->value, &c, &err),
        0);
    assert_slice(c.na.uri, "sip:+19725552222@gw1.example.net;unknownparam");
    assert_false(sip_param_get(c.na.params, "unknownparam", &val));
    assert_int_equal(sip_uri_parse(c.na.uri, &u, &why), 0);
    assert_true(sip_uri_param(&u, "unknownparam", &val));
    done(&v, &a);
}

static void
test_regescrt_unksm2(void **state)
{
    struct vec v;
    struct arena a;
    struct sip_msg m;
    struct sip_contact c;
    struct sip_error err;

    (void)state;
    parse_ok("regescrt", &v, &m, &a);
    assert_int_equal(
        sip_contact_parse(sip_msg_hdr(&m, SIP_HDR_CONTACT)->value, &c, &err),
        0);
    assert_slice(c.na.uri,
                 "sip:user@example.com?Route=%3Csip:sip.example.com%3E");
    done(&v, &a);

    parse_ok("unksm2", &v, &m, &a);
    assert_slice(m.to.uri, "isbn:2983792873");
    assert_slice(m.from.uri, "http://www.example.com");
    assert_slice(m.from.tag, "3234233");
    assert_int_equal(
        sip_contact_parse(sip_msg_hdr(&m, SIP_HDR_CONTACT)->value, &c, &err),
        0);
    assert_slice(c.na.uri, "name:John_Smith");
    done(&v, &a);
}

static void
test_small_valid(void **state)
{
    struct vec v;
    struct arena a;
    struct sip_msg m;
    struct sip_hdr_iter it;
    struct slice val;
    struct sip_via via;
    struct sip_error err;
    int n = 0;

    (void)state;
    parse_ok("lwsdisp", &v, &m, &a);
    assert_slice(m.from.display, "caller");
    assert_slice(m.from.uri, "sip:caller@example.com");
    assert_slice(m.from.tag, "323");
    done(&v, &a);

    parse_ok("semiuri", &v, &m, &a);
    assert_slice(m.ruri, "sip:user;par=u%40example.net@example.com");
    sip_hdr_iter_init(&it, &m, SIP_HDR_ACCEPT);
    while (sip_hdr_iter_next(&it, &val))
        n++;
    assert_int_equal(n, 6); /* folded over three lines */
    done(&v, &a);

    parse_ok("esc01", &v, &m, &a);
    assert_slice(m.ruri, "sip:sips%3Auser%40example.com@example.net");
    assert_slice(m.to.uri, "sip:%75se%72@example.com");
    done(&v, &a);

    parse_ok("mpart01", &v, &m, &a);
    assert_int_equal(m.method, SIP_METHOD_MESSAGE);
    assert_int_equal(m.body.len, 553);
    assert_true(m.via.rport);
    assert_int_equal(m.via.rport_value, 0);
    assert_int_equal(m.via.port, 5070);
    done(&v, &a);

    parse_ok("unreason", &v, &m, &a);
    assert_false(m.is_request);
    assert_int_equal(m.status, 200);
    assert_true(m.reason.len > 20 && !memcmp(m.reason.ptr, "= 2**3", 6));
    done(&v, &a);

    parse_ok("noreason", &v, &m, &a);
    assert_int_equal(m.status, 100);
    assert_int_equal(m.reason.len, 0);
    done(&v, &a);

    parse_ok("zeromf", &v, &m, &a);
    assert_int_equal(m.max_forwards, 0); /* proxy: 483 */
    done(&v, &a);

    parse_ok("bcast", &v, &m, &a);
    assert_int_equal(m.via_count, 2);
    sip_hdr_iter_init(&it, &m, SIP_HDR_VIA);
    assert_true(sip_hdr_iter_next(&it, &val));
    assert_true(sip_hdr_iter_next(&it, &val));
    assert_int_equal(sip_via_parse(val, &via, &err), 0);
    assert_slice(via.host, "255.255.255.255"); /* proxy: drop */
    done(&v, &a);

    parse_ok("inv2543", &v, &m, &a);
    assert_int_equal(m.via.branch.len, 0);
    assert_int_equal(m.from.tag.len, 0);
    assert_int_equal(m.max_forwards, -1);
    assert_int_equal(m.content_length, -1);
    assert_true(m.body.len > 0 && m.body.ptr + m.body.len == v.data + v.len);
    done(&v, &a);

    parse_ok("regaut01", &v, &m, &a);
    assert_slice(sip_msg_hdr(&m, SIP_HDR_AUTHORIZATION)->value,
                 "NoOneKnowsThisScheme opaque-data=here");
    done(&v, &a);

    parse_ok("baddate", &v, &m, &a);
    assert_slice(sip_msg_hdr(&m, SIP_HDR_DATE)->value,
                 "Fri, 01 Jan 2010 16:00:00 EST");
    done(&v, &a);

    parse_ok("lwsstart", &v, &m, &a);
    assert_slice(m.ruri, "sip:user@example.com");
    done(&v, &a);
    parse_ok("trws", &v, &m, &a);
    assert_slice(m.ruri, "sip:remote-target@example.com");
    done(&v, &a);
}

static void
test_bext01_tags(void **state)
{
    struct vec v;
    struct arena a;
    struct sip_msg m;
    struct sip_error err;
    struct slice tags[8];

    (void)state;
    parse_ok("bext01", &v, &m, &a);
    assert_int_equal(sip_request_check(&m, SUPPORTED, &err), -1);
    assert_int_equal(err.status, 420);
    assert_int_equal(sip_unsupported_tags(&m, SUPPORTED, tags, 8), 4);
    assert_slice(tags[0], "nothingSupportsThis");
    assert_slice(tags[1], "nothingSupportsThisEither");
    assert_slice(tags[2], "noProxiesSupportThis");
    assert_slice(tags[3], "norDoAnyProxiesSupportThis");
    /* count is the total even when cap is smaller */
    assert_int_equal(sip_unsupported_tags(&m, SUPPORTED, tags, 1), 4);
    /* once all four are supported, the request passes */
    assert_int_equal(
        sip_request_check(
            &m,
            SLICE_LIT("nothingsupportsthis,nothingSupportsThisEither,"
                      " noProxiesSupportThis , norDoAnyProxiesSupportThis"),
            &err),
        0);
    done(&v, &a);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_wsinv),
        cmocka_unit_test(test_intmeth),
        cmocka_unit_test(test_escnull),
        cmocka_unit_test(test_esc02),
        cmocka_unit_test(test_longreq),
        cmocka_unit_test(test_dblreq),
        cmocka_unit_test(test_transports),
        cmocka_unit_test(test_cparam),
        cmocka_unit_test(test_regescrt_unksm2),
        cmocka_unit_test(test_small_valid),
        cmocka_unit_test(test_bext01_tags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
