/*
 * reg_harness.h: test-only REGISTER harness shared by
 * tests/unit/registrar/reg_test.c, tests/unit/registrar/pushdev_test.c and
 * tests/unit/proxy/wake_test.c. A fixture (struct t) holds a registrar and
 * its SQLite store in a temp dir, optionally a push-device table, and a fake
 * clock; send_reg builds REGISTER text (with an optional digest
 * Authorization), parses it with sip_msg_parse, answers it with reg_handle,
 * parses the answer into t->m / t->status and remembers a challenge's nonce;
 * register_ok is challenge + authenticated REGISTER.
 *
 * With t->async_cb set, send_reg answers with reg_handle_async (the SIP
 * worker's way) and may return REG_PENDING, the 200 already built.
 *
 * A test may define REG_HARNESS_EXTRA_FIELDS (extra members of struct t)
 * before including this header. Its setup calls rh_setup(push), adds the
 * extensions it needs and stores t in *state; teardown is shared.
 * Everything here is static inline so unused helpers draw no warning.
 */
#ifndef PUSHPBX_TESTS_REG_HARNESS_H
#define PUSHPBX_TESTS_REG_HARNESS_H

#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
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

#ifndef REG_HARNESS_EXTRA_FIELDS
#define REG_HARNESS_EXTRA_FIELDS
#endif

struct t {
    REG_HARNESS_EXTRA_FIELDS
    struct reg *r;
    struct pushdev_table *pd; /* NULL unless rh_setup(true) */
    bool push;                /* start_reg wires pd into the registrar */
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
    /* Set: send_reg answers with reg_handle_async(async_cb, async_arg),
     * and returns REG_PENDING with the 200 parsed into t->m. */
    reg_commit_cb *async_cb;
    void *async_arg;
    char last_req[8192]; /* the text of the last REGISTER sent */
    size_t last_req_len;
};

static inline int64_t
fake_clock(void *arg)
{
    return ((struct t *)arg)->now_ms;
}

/* Extension 102 has push disabled by policy. */
static inline bool
push_enabled(const char *ext, void *arg)
{
    (void)arg;
    return strcmp(ext, "102") != 0;
}

static inline void
open_pd(struct t *t)
{
    struct pushdev_opts o = {.store = t->st,
                             .idle_expiry_s = 86400,
                             .clock_ms = fake_clock,
                             .clock_arg = t};
    char err[256];
    assert_int_equal(pushdev_open(&o, &t->pd, err, sizeof(err)), 0);
}

static inline void
start_reg(struct t *t)
{
    struct reg_opts o = {.cfg = &t->cfg,
                         .domain = DOMAIN,
                         .realm = REALM,
                         .store = t->st,
                         .clock_ms = fake_clock,
                         .clock_arg = t};
    assert_int_equal(reg_new(&o, &t->r), 0);
    if (t->push) {
        struct reg_push_opts po = {.table = t->pd,
                                   .apns = t->apns,
                                   .fcm = t->fcm,
                                   .push_enabled = push_enabled};
        reg_set_push(t->r, &po);
    }
}

static inline void
open_store(struct t *t)
{
    struct store_cfg sc = {.path = t->path, .flush_ms = 10, .max_queue = 10000};
    char err[256];
    assert_int_equal(store_open(&sc, &t->st, err, sizeof(err)), 0);
}

/*
 * A fresh fixture: store (and, with push, the push-device table with APNs
 * and FCM on) in a new temp dir, a started registrar, a UDP source
 * 192.0.2.7:5062. No extensions yet. The caller owns the result and hands
 * it to teardown through *state.
 */
static inline struct t *
rh_setup(bool push)
{
    struct t *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    reg_cfg_defaults(&t->cfg);
    t->now_ms = 1700000000000LL;
    snprintf(t->dir, sizeof(t->dir), "/tmp/pp-reg-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof(t->path), "%s/reg.db", t->dir);
    open_store(t);
    t->push = push;
    if (push) {
        open_pd(t);
        t->apns = t->fcm = true;
    }
    start_reg(t);
    struct sockaddr_in *in = (struct sockaddr_in *)&t->src.addr;
    in->sin_family = AF_INET;
    in->sin_port = htons(5062);
    inet_pton(AF_INET, "192.0.2.7", &in->sin_addr);
    t->src.transport = REG_TP_UDP;
    buf_init(&t->rsp, 65536);
    arena_init(&t->a, SIP_MSG_ARENA_CAP);
    t->cseq = 1;
    return t;
}

static inline int
teardown(void **state)
{
    struct t *t = *state;
    reg_free(t->r);
    if (t->pd)
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
static inline int
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
    assert_true(n > 0 && (size_t)n < sizeof(t->last_req));
    memcpy(t->last_req, msg, (size_t)n);
    t->last_req_len = (size_t)n;
    struct arena a;
    struct sip_msg req;
    struct sip_error err;
    arena_init(&a, SIP_MSG_ARENA_CAP);
    assert_int_equal(sip_msg_parse(&req, msg, (size_t)n, &a, &err), 0);
    buf_reset(&t->rsp);
    int rc = t->async_cb ? reg_handle_async(t->r, &req, &t->src, &t->rsp,
                                            t->async_cb, t->async_arg)
                         : reg_handle(t->r, &req, &t->src, &t->rsp);
    arena_fini(&a);
    free(msg);
    assert_true(rc >= 100 || (t->async_cb && rc == REG_PENDING));
    arena_reset(&t->a);
    assert_int_equal(sip_msg_parse(&t->m, t->rsp.data, t->rsp.len, &t->a, &err),
                     0);
    assert_false(t->m.is_request);
    assert_int_equal(t->m.status, rc == REG_PENDING ? 200 : rc);
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

static inline size_t
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

static inline bool
rsp_has(struct t *t, const char *needle)
{
    return strstr(t->rsp.data, needle) != NULL;
}

/* Challenge + authenticated REGISTER. */
static inline int
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

#endif /* PUSHPBX_TESTS_REG_HARNESS_H */
