/*
 * pushdev_test: push devices ([wake] item 1). First the table alone
 * (validation, matching, max per extension, durability across a reopen,
 * idle expiry with a fake clock, dead tokens), then through the registrar:
 * REGISTER text parsed by sip_msg_parse, answered by reg_handle, the
 * answer parsed again, and the table inspected (the same harness as
 * tests/unit/registrar/reg_test.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/buf.h"
#include "registrar/pushdev.h"
#include "registrar/reg.h"
#include "sip/digest.h"
#include "sip/msg.h"
#include "store/store.h"

#define DOMAIN "pbx.test"
#define REALM "pbx.test"

/* Extension 102 has push disabled by policy. */
static bool
push_enabled(const char *ext, void *arg)
{
    (void)arg;
    return strcmp(ext, "102") != 0;
}

struct t {
    struct reg *r;
    struct pushdev_table *pd;
    bool apns, fcm;
    struct store *st;
    struct reg_cfg cfg;
    int64_t now_ms;
    char dir[64], path[128];
    struct reg_src src;
    /* last response */
    struct buf rsp;
    struct arena a;
    struct sip_msg m;
    int status;
    char nonce[128];
    uint32_t nc;
    uint32_t cseq;
};

static int64_t
fake_clock(void *arg)
{
    return ((struct t *)arg)->now_ms;
}

static void
open_pd(struct t *t)
{
    struct pushdev_opts o = {.db_path = t->path,
                             .idle_expiry_s = 86400,
                             .clock_ms = fake_clock,
                             .clock_arg = t};
    char err[256];
    assert_int_equal(pushdev_open(&o, &t->pd, err, sizeof(err)), 0);
}

static void
start_reg(struct t *t)
{
    struct reg_opts o = {.cfg = &t->cfg,
                         .domain = DOMAIN,
                         .realm = REALM,
                         .store = t->st,
                         .clock_ms = fake_clock,
                         .clock_arg = t};
    assert_int_equal(reg_new(&o, &t->r), 0);
    struct reg_push_opts po = {.table = t->pd,
                               .apns = t->apns,
                               .fcm = t->fcm,
                               .push_enabled = push_enabled};
    reg_set_push(t->r, &po);
}

static void
open_store(struct t *t)
{
    struct store_cfg sc = {.path = t->path, .flush_ms = 10, .max_queue = 10000};
    char err[256];
    assert_int_equal(store_open(&sc, &t->st, err, sizeof(err)), 0);
}

static int
setup(void **state)
{
    struct t *t = calloc(1, sizeof(*t));
    reg_cfg_defaults(&t->cfg);
    t->now_ms = 1700000000000LL;
    snprintf(t->dir, sizeof(t->dir), "/tmp/pp-reg-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof(t->path), "%s/reg.db", t->dir);
    open_store(t);
    open_pd(t);
    t->apns = t->fcm = true;
    start_reg(t);
    assert_int_equal(reg_ext_set(t->r, "100", "Alice", "secret100", true, 1),
                     0);
    assert_int_equal(reg_ext_set(t->r, "101", "Bob", "secret101", true, 2), 0);
    assert_int_equal(reg_ext_set(t->r, "102", "Carol", "secret102", true, 1),
                     0);
    struct sockaddr_in *in = (struct sockaddr_in *)&t->src.addr;
    in->sin_family = AF_INET;
    in->sin_port = htons(5062);
    inet_pton(AF_INET, "192.0.2.7", &in->sin_addr);
    t->src.transport = REG_TP_UDP;
    buf_init(&t->rsp, 65536);
    arena_init(&t->a, SIP_MSG_ARENA_CAP);
    t->cseq = 1;
    *state = t;
    return 0;
}

static int
teardown(void **state)
{
    struct t *t = *state;
    reg_free(t->r);
    pushdev_close(t->pd);
    store_close(t->st);
    buf_fini(&t->rsp);
    arena_fini(&t->a);
    char p[160];
    static const char *const sfx[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s%s", t->path, sfx[i]);
        unlink(p);
    }
    rmdir(t->dir);
    free(t);
    return 0;
}

struct req {
    const char *to_user;   /* default "100" */
    const char *from_user; /* default = to_user */
    const char *to_host;   /* default DOMAIN */
    const char *contacts;  /* full Contact header lines, or NULL */
    const char *expires;   /* Expires header value or NULL */
    const char *call_id;   /* default "cid-1" */
    const char *extra;     /* extra header lines */
    /* credentials */
    bool auth;
    const char *user;     /* Authorization username, default to_user */
    const char *password; /* default "secret" + user */
    const char *alg;      /* "SHA-256" (default) or "MD5" */
    const char *nonce;    /* default t->nonce */
    uint32_t nc;          /* default ++t->nc */
    const char *raw_auth; /* whole Authorization header line instead */
};

/* Send one REGISTER; the response is parsed into t->m / t->status. */
static int
send_reg(struct t *t, const struct req *q)
{
    const char *to = q->to_user ? q->to_user : "100";
    const char *from = q->from_user ? q->from_user : to;
    const char *host = q->to_host ? q->to_host : DOMAIN;
    const char *cid = q->call_id ? q->call_id : "cid-1";
    char auth[1024] = "";

    if (q->raw_auth) {
        snprintf(auth, sizeof(auth), "%s", q->raw_auth);
    } else if (q->auth) {
        const char *user = q->user ? q->user : to;
        char pw[64];
        snprintf(pw, sizeof(pw), "secret%s", user);
        const char *pass = q->password ? q->password : pw;
        const char *alg = q->alg ? q->alg : "SHA-256";
        enum sip_digest_alg a = sip_digest_alg_parse(slice_cstr(alg));
        char ha1[65], resp[65], nc[9];
        uint32_t ncv = q->nc ? q->nc : ++t->nc;
        snprintf(nc, sizeof(nc), "%08x", ncv);
        const char *nonce = q->nonce ? q->nonce : t->nonce;
        sip_digest_ha1(a, slice_cstr(user), SLICE_LIT(REALM), slice_cstr(pass),
                       ha1);
        assert_int_equal(
            sip_digest_response(a, slice_cstr(ha1), slice_cstr(nonce),
                                slice_cstr(nc), SLICE_LIT("0a4f113b"),
                                SLICE_LIT("auth"), SLICE_LIT("REGISTER"),
                                SLICE_LIT("sip:" DOMAIN), SLICE_NULL, resp),
            0);
        snprintf(auth, sizeof(auth),
                 "Authorization: Digest username=\"%s\", realm=\"%s\", "
                 "nonce=\"%s\", uri=\"sip:%s\", response=\"%s\", "
                 "algorithm=%s, cnonce=\"0a4f113b\", qop=auth, nc=%s\r\n",
                 user, REALM, nonce, DOMAIN, resp, alg, nc);
    }
    char expires[64] = "";
    if (q->expires)
        snprintf(expires, sizeof(expires), "Expires: %s\r\n", q->expires);
    char *msg = malloc(8192);
    int n = snprintf(msg, 8192,
                     "REGISTER sip:%s SIP/2.0\r\n"
                     "Via: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK%u\r\n"
                     "Max-Forwards: 70\r\n"
                     "From: <sip:%s@%s>;tag=f1\r\n"
                     "To: <sip:%s@%s>\r\n"
                     "Call-ID: %s\r\n"
                     "CSeq: %u REGISTER\r\n"
                     "%s%s%s%s"
                     "Content-Length: 0\r\n\r\n",
                     DOMAIN, t->cseq, from, host, to, host, cid, t->cseq,
                     q->contacts ? q->contacts : "", expires, auth,
                     q->extra ? q->extra : "");
    t->cseq++;
    struct arena a;
    struct sip_msg req;
    struct sip_error err;
    arena_init(&a, SIP_MSG_ARENA_CAP);
    assert_int_equal(sip_msg_parse(&req, msg, (size_t)n, &a, &err), 0);
    buf_reset(&t->rsp);
    int rc = reg_handle(t->r, &req, &t->src, &t->rsp);
    arena_fini(&a);
    free(msg);
    assert_true(rc >= 100);
    arena_reset(&t->a);
    assert_int_equal(sip_msg_parse(&t->m, t->rsp.data, t->rsp.len, &t->a, &err),
                     0);
    assert_false(t->m.is_request);
    assert_int_equal(t->m.status, rc);
    t->status = rc;
    /* Remember the first challenge's nonce for the next request. */
    const struct sip_hdr *h = sip_msg_hdr(&t->m, SIP_HDR_WWW_AUTHENTICATE);
    if (h) {
        struct sip_auth ch;
        const char *why;
        assert_int_equal(sip_auth_parse(h->value, &ch, &why), 0);
        slice_to_cstr(ch.nonce, t->nonce, sizeof(t->nonce));
        t->nc = 0;
    }
    return rc;
}

static size_t
contact_count(struct t *t)
{
    struct sip_hdr_iter it;
    struct slice v;
    size_t n = 0;
    sip_hdr_iter_init(&it, &t->m, SIP_HDR_CONTACT);
    while (sip_hdr_iter_next(&it, &v))
        n++;
    return n;
}

static bool
rsp_has(struct t *t, const char *needle)
{
    return strstr(t->rsp.data, needle) != NULL;
}

/* Challenge + authenticated REGISTER. */
static int
register_ok(struct t *t, struct req q)
{
    struct req first = q;
    first.auth = false;
    send_reg(t, &first);
    if (t->status != 401)
        return t->status;
    q.auth = true;
    return send_reg(t, &q);
}

#define APNS_TOK                                                               \
    "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
#define APNS_TOK2                                                              \
    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define FCM_TOK "dXk3:APA91bH-tok_en.1"

static struct pushdev
dev(const char *ext, const char *prov, const char *prid, const char *param,
    const char *inst)
{
    struct pushdev d;
    memset(&d, 0, sizeof(d));
    snprintf(d.ext, sizeof(d.ext), "%s", ext);
    snprintf(d.provider, sizeof(d.provider), "%s", prov);
    snprintf(d.prid, sizeof(d.prid), "%s", prid);
    snprintf(d.param, sizeof(d.param), "%s", param);
    snprintf(d.instance, sizeof(d.instance), "%s", inst);
    return d;
}

static void
test_check(void **state)
{
    (void)state;
    assert_null(pushdev_check("apns", APNS_TOK, "TEAM.com.ex.app.voip"));
    assert_null(pushdev_check("fcm", FCM_TOK, "my-project"));
    assert_string_equal(pushdev_check("webpush", "x", "y"),
                        "Unknown pn-provider");
    assert_string_equal(pushdev_check("apns", "", "T.b"), "Empty pn-prid");
    assert_string_equal(pushdev_check("apns", "xyz0", "T.b"),
                        "Bad pn-prid For apns");
    assert_string_equal(pushdev_check("apns", "abc", "T.b"),
                        "Bad pn-prid For apns"); /* odd, short */
    assert_string_equal(pushdev_check("fcm", "a b", "p"),
                        "Bad pn-prid For fcm");
    assert_string_equal(pushdev_check("fcm", FCM_TOK, ""), "Missing pn-param");
    assert_string_equal(pushdev_check("apns", APNS_TOK, NULL),
                        "Missing pn-param");
    assert_string_equal(pushdev_check("apns", APNS_TOK, "nodot"),
                        "Bad pn-param For apns");
    char longtok[PUSHDEV_PRID_MAX + 8];
    memset(longtok, 'a', sizeof(longtok) - 1);
    longtok[sizeof(longtok) - 1] = '\0';
    assert_string_equal(pushdev_check("fcm", longtok, "p"), "pn-prid Too Long");
    struct pushdev v = dev("1", "apns", APNS_TOK, "T.com.ex.voip", "");
    assert_true(pushdev_is_voip(&v));
    v = dev("1", "apns", APNS_TOK, "T.com.ex", "");
    assert_false(pushdev_is_voip(&v));
    v = dev("1", "fcm", FCM_TOK, "voip", "");
    assert_false(pushdev_is_voip(&v));
}

static void
test_table(void **state)
{
    struct t *t = *state;
    struct pushdev out[4], d;
    bool created;

    d = dev("100", "apns", APNS_TOK, "T.com.ex.voip", "urn:uuid:1");
    assert_int_equal(pushdev_put(t->pd, &d, 1, &created), 0);
    assert_true(created);
    /* Refresh: same device, not created again. */
    assert_int_equal(pushdev_put(t->pd, &d, 1, &created), 0);
    assert_false(created);
    assert_int_equal(pushdev_count(t->pd), 1);

    /* New token, same instance (liblinphone token change): replaced. */
    d = dev("100", "apns", APNS_TOK2, "T.com.ex.voip", "urn:uuid:1");
    assert_int_equal(pushdev_put(t->pd, &d, 4, &created), 0);
    assert_int_equal(pushdev_find_ext(t->pd, "100", out, 4), 1);
    assert_string_equal(out[0].prid, APNS_TOK2);

    /* Max 1: a second device replaces the first. */
    t->now_ms += 1000;
    d = dev("100", "fcm", FCM_TOK, "proj", "urn:uuid:2");
    assert_int_equal(pushdev_put(t->pd, &d, 1, &created), 0);
    assert_true(created);
    assert_int_equal(pushdev_find_ext(t->pd, "100", out, 4), 1);
    assert_string_equal(out[0].provider, "fcm");

    /* Max 2 on another extension: both kept, newest first. */
    d = dev("101", "apns", APNS_TOK, "T.com.ex", "");
    assert_int_equal(pushdev_put(t->pd, &d, 2, NULL), 0);
    t->now_ms += 1000;
    d = dev("101", "apns", APNS_TOK2, "T.com.ex", "");
    assert_int_equal(pushdev_put(t->pd, &d, 2, NULL), 0);
    assert_int_equal(pushdev_find_ext(t->pd, "101", out, 4), 2);
    assert_string_equal(out[0].prid, APNS_TOK2);
    assert_string_equal(out[1].prid, APNS_TOK);
    /* A third with max 2 evicts the least recently seen (APNS_TOK). */
    t->now_ms += 1000;
    d = dev("101", "fcm", "other-token", "proj", "");
    assert_int_equal(pushdev_put(t->pd, &d, 2, NULL), 0);
    assert_int_equal(pushdev_find_ext(t->pd, "101", out, 4), 2);
    assert_string_equal(out[0].prid, "other-token");
    assert_string_equal(out[1].prid, APNS_TOK2);

    /* Matching a REGISTER: by token, or by instance. */
    assert_true(pushdev_match(t->pd, "100", "fcm", FCM_TOK, "", &d));
    assert_true(pushdev_match(t->pd, "100", "fcm", "new", "urn:uuid:2", &d));
    assert_string_equal(d.prid, FCM_TOK);
    assert_false(pushdev_match(t->pd, "100", "apns", APNS_TOK2, "", &d));
    assert_false(pushdev_match(t->pd, "101", "fcm", FCM_TOK, "", &d));

    /* Durable: a reopened table has the same devices. */
    pushdev_close(t->pd);
    open_pd(t);
    assert_int_equal(pushdev_count(t->pd), 3);
    assert_int_equal(pushdev_find_ext(t->pd, "101", out, 4), 2);
    assert_string_equal(out[0].prid, "other-token");

    /* A token moves with its app to another extension. */
    d = dev("102", "fcm", FCM_TOK, "proj", "");
    assert_int_equal(pushdev_put(t->pd, &d, 1, &created), 0);
    assert_true(created);
    assert_int_equal(pushdev_find_ext(t->pd, "100", out, 4), 0);

    /* Dead token. */
    assert_int_equal(pushdev_remove_token(t->pd, "fcm", FCM_TOK), 1);
    assert_int_equal(pushdev_remove_token(t->pd, "fcm", FCM_TOK), 0);
    assert_int_equal(pushdev_find_ext(t->pd, "102", out, 4), 0);
    assert_int_equal(pushdev_remove_ext(t->pd, "101"), 2);
    assert_int_equal(pushdev_count(t->pd), 0);
    pushdev_close(t->pd);
    open_pd(t);
    assert_int_equal(pushdev_count(t->pd), 0);
}

static void
test_idle_expiry(void **state)
{
    struct t *t = *state;
    struct pushdev d = dev("100", "fcm", FCM_TOK, "proj", "");
    struct pushdev d2 = dev("101", "fcm", "tok2", "proj", "");

    assert_int_equal(pushdev_put(t->pd, &d, 1, NULL), 0);
    t->now_ms += 80000LL * 1000;
    assert_int_equal(pushdev_put(t->pd, &d2, 1, NULL), 0);
    assert_int_equal(pushdev_expire(t->pd), 0);
    t->now_ms += 7000LL * 1000; /* d idle 87000 s > 86400 */
    assert_int_equal(pushdev_expire(t->pd), 1);
    assert_false(pushdev_match(t->pd, "100", "fcm", FCM_TOK, "", &d));
    /* The database agrees; and d2 expires on load once idle. */
    pushdev_close(t->pd);
    open_pd(t);
    assert_int_equal(pushdev_count(t->pd), 1);
    pushdev_close(t->pd);
    t->now_ms += 90000LL * 1000;
    open_pd(t);
    assert_int_equal(pushdev_count(t->pd), 0);
}

#define C1_PLAIN "Contact: <sip:100@192.0.2.7:5062>\r\n"

#define PN_APNS                                                                \
    "Contact: <sip:100@192.0.2.7:5062;transport=udp;pn-provider=apns;"         \
    "pn-prid=" APNS_TOK ";pn-param=TEAM.com.ex.app.voip>"                      \
    ";+sip.instance=\"<urn:uuid:aaaa>\"\r\n"

static void
test_register_push(void **state)
{
    struct t *t = *state;
    struct pushdev out[2];

    assert_int_equal(register_ok(t, (struct req){.contacts = PN_APNS}), 200);
    assert_true(rsp_has(t, "Feature-Caps: *;+sip.pns=\"apns\"\r\n"));
    assert_int_equal(pushdev_find_ext(t->pd, "100", out, 2), 1);
    assert_string_equal(out[0].prid, APNS_TOK);
    assert_string_equal(out[0].param, "TEAM.com.ex.app.voip");
    assert_string_equal(out[0].instance, "urn:uuid:aaaa");
    assert_int_equal(contact_count(t), 1);

    /* Background mode: Expires 0 removes the binding, keeps the device. */
    assert_int_equal(
        register_ok(t, (struct req){.contacts = PN_APNS, .expires = "0"}), 200);
    assert_int_equal(contact_count(t), 0);
    assert_int_equal(pushdev_find_ext(t->pd, "100", out, 2), 1);
    /* Durable at once (no write-behind): a fresh table sees it. */
    struct pushdev_table *again;
    struct pushdev_opts o = {
        .db_path = t->path, .clock_ms = fake_clock, .clock_arg = t};
    char err[256];
    assert_int_equal(pushdev_open(&o, &again, err, sizeof(err)), 0);
    assert_int_equal(pushdev_count(again), 1);
    pushdev_close(again);

    /* Contact: * signs out completely. */
    assert_int_equal(register_ok(t, (struct req){.contacts = "Contact: *\r\n",
                                                 .expires = "0"}),
                     200);
    assert_int_equal(pushdev_find_ext(t->pd, "100", out, 2), 0);
}

static void
test_register_bad_push(void **state)
{
    struct t *t = *state;

    /* fcm not served here → 555 and nothing stored (no binding either). */
    struct reg_push_opts po = {.table = t->pd,
                               .apns = true,
                               .fcm = false,
                               .push_enabled = push_enabled};
    reg_set_push(t->r, &po);
    assert_int_equal(
        register_ok(t,
                    (struct req){.contacts = "Contact: <sip:100@192.0.2.7:5062;"
                                             "pn-provider=fcm;pn-prid=tok;"
                                             "pn-param=proj>\r\n"}),
        555);
    assert_true(rsp_has(t, "555 Push Notification Service Not Supported"));
    assert_int_equal(pushdev_count(t->pd), 0);
    assert_int_equal(register_ok(t, (struct req){.contacts = C1_PLAIN}), 200);
    assert_int_equal(contact_count(t), 1); /* only the plain one */

    static const struct {
        const char *contact, *reason;
    } bad[] = {
        {"Contact: <sip:100@h;pn-provider=apns;pn-prid=;pn-param=T.b>\r\n",
         "Empty pn-prid"},
        {"Contact: <sip:100@h;pn-provider=apns;pn-prid=zz11;pn-param=T.b>\r\n",
         "Bad pn-prid For apns"},
        {"Contact: <sip:100@h;pn-provider=apns;pn-prid=" APNS_TOK ">\r\n",
         "Missing pn-param"},
        {"Contact: <sip:100@h;pn-provider=apns;pn-prid=%00ab;pn-param=T.b>\r\n",
         "Bad pn-prid"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(
            register_ok(t, (struct req){.contacts = bad[i].contact}), 400);
        char line[128];
        snprintf(line, sizeof(line), "SIP/2.0 400 %s\r\n", bad[i].reason);
        if (!rsp_has(t, line))
            fprintf(stderr, "case %zu: %.60s\n", i, t->rsp.data);
        assert_true(rsp_has(t, line));
    }
    assert_int_equal(pushdev_count(t->pd), 0);

    /* Capability query: pn-provider alone (empty = all served). */
    assert_int_equal(
        register_ok(t, (struct req){.contacts = "Contact: <sip:100@192.0.2.7:"
                                                "5062;pn-provider>\r\n"}),
        200);
    assert_true(rsp_has(t, "Feature-Caps: *;+sip.pns=\"apns\"\r\n"));
    assert_false(rsp_has(t, "sip.pns=\"fcm\""));
    assert_int_equal(pushdev_count(t->pd), 0);
}

static void
test_register_push_disabled(void **state)
{
    struct t *t = *state;
    assert_int_equal(
        register_ok(t,
                    (struct req){.to_user = "102",
                                 .contacts = "Contact: <sip:102@192.0.2.7:5062;"
                                             "pn-provider=fcm;pn-prid=tok;"
                                             "pn-param=proj>\r\n"}),
        200);
    assert_false(rsp_has(t, "Feature-Caps"));
    assert_true(rsp_has(t, "Warning: 399 pushpbx"));
    assert_int_equal(contact_count(t), 1);
    assert_int_equal(pushdev_count(t->pd), 0);
}

static void
test_register_max_devices(void **state)
{
    struct t *t = *state;
    struct pushdev out[4];
    /* 100: max 1, the second app installation replaces the first. */
    assert_int_equal(register_ok(t, (struct req){.contacts = PN_APNS}), 200);
    assert_int_equal(
        register_ok(t,
                    (struct req){.call_id = "cid-2",
                                 .contacts = "Contact: <sip:100@192.0.2.8:5062;"
                                             "pn-provider=fcm;pn-prid=tok2;"
                                             "pn-param=proj>\r\n"}),
        200);
    assert_true(rsp_has(t, "Feature-Caps: *;+sip.pns=\"fcm\"\r\n"));
    assert_int_equal(pushdev_find_ext(t->pd, "100", out, 4), 1);
    assert_string_equal(out[0].prid, "tok2");
    /* 101: max 2, both stay. */
    for (int i = 0; i < 2; i++) {
        char c[256], cid[16];
        snprintf(c, sizeof(c),
                 "Contact: <sip:101@192.0.2.%d:5062;pn-provider=fcm;"
                 "pn-prid=t101-%d;pn-param=proj>\r\n",
                 10 + i, i);
        snprintf(cid, sizeof(cid), "c101-%d", i);
        assert_int_equal(register_ok(t, (struct req){.to_user = "101",
                                                     .call_id = cid,
                                                     .contacts = c}),
                         200);
    }
    assert_int_equal(pushdev_find_ext(t->pd, "101", out, 4), 2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check),
        cmocka_unit_test_setup_teardown(test_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_register_push, setup, teardown),
        cmocka_unit_test_setup_teardown(test_register_bad_push, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_register_push_disabled, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_register_max_devices, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
