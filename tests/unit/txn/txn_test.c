/*
 * txn_test: the transaction state machines on a real loop with T1 = 20 ms,
 * our side a tp bound to 127.0.0.1:0 with a txn table, the peer a plain UDP
 * socket that parses what it gets with sip_msg_parse and answers with
 * sip_build_response. Timings are checked with generous margins: the
 * machine is shared and ASan is slow.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "base/buf.h"
#include "sip/build.h"
#include "txn/txn.h"

#define T1 20
#define T2 80
#define T4 50

struct env {
    uv_loop_t loop;
    struct tp *tp;
    struct txn_table *tt;
    struct tp_addr ours; /* our UDP listener */
    int peer;            /* peer UDP socket */
    struct tp_addr peer_addr;
    /* TU bookkeeping */
    int ev[TXN_EV_TERMINATED + 1];
    int statuses[32];
    int nstatus;
    int requests;  /* on_request with a transaction */
    int stateless; /* on_request with t == NULL (ACK) */
    struct txn *last_server;
    bool reply_at_once; /* TU answers new requests with 200 */
    bool reply_487_on_cancel;
    int unmatched; /* txn_recv -ENOENT */
};

static void
on_event(struct txn *t, enum txn_event ev, const struct sip_msg *rsp, void *arg)
{
    struct env *e = arg;

    e->ev[ev]++;
    if (ev == TXN_EV_RESPONSE && e->nstatus < 32)
        e->statuses[e->nstatus++] = rsp->status;
    if (ev == TXN_EV_CANCELLED && e->reply_487_on_cancel)
        assert_int_equal(txn_reply(t, 487, "Request Terminated",
                                   SLICE_LIT("srvtag"), SLICE_NULL, SLICE_NULL),
                         0);
    if (ev == TXN_EV_TERMINATED && t == e->last_server)
        e->last_server = NULL;
}

static void
on_request(struct txn_table *tt, struct txn *t, const struct sip_msg *req,
           const struct tp_src *src, void *arg)
{
    struct env *e = arg;

    (void)tt;
    (void)src;
    if (t == NULL) {
        assert_int_equal(req->method, SIP_METHOD_ACK);
        e->stateless++;
        return;
    }
    e->requests++;
    e->last_server = t;
    txn_set_cb(t, on_event, e);
    if (e->reply_at_once)
        assert_int_equal(txn_reply(t, 200, "OK", SLICE_LIT("srvtag"),
                                   SLICE_NULL, SLICE_NULL),
                         0);
}

static void
on_recv(struct tp *tp, const struct tp_rx *rx, void *arg)
{
    struct env *e = arg;

    (void)tp;
    if (rx->err)
        return;
    if (txn_recv(e->tt, rx) == -ENOENT)
        e->unmatched++;
}

static void
env_init(struct env *e)
{
    struct tp_cfg cfg;
    struct txn_cfg tc;
    struct tp_listen_spec sp;
    size_t n;
    socklen_t len = sizeof(e->peer_addr.u);

    memset(e, 0, sizeof(*e));
    assert_int_equal(uv_loop_init(&e->loop), 0);
    tp_cfg_defaults(&cfg);
    cfg.on_recv = on_recv;
    cfg.arg = e;
    assert_int_equal(tp_new(&e->loop, &cfg, &e->tp), 0);
    assert_int_equal(
        tp_listen_spec_parse("udp:127.0.0.1:0", &sp, 1, &n, NULL, 0), 0);
    int idx = tp_listen(e->tp, &sp, NULL, 0);
    assert_true(idx >= 0);
    assert_int_equal(tp_listener(e->tp, (size_t)idx, &sp), 0);
    e->ours = sp.addr;
    txn_cfg_defaults(&tc);
    tc.timers.t1_ms = T1;
    tc.timers.t2_ms = T2;
    tc.timers.t4_ms = T4;
    tc.on_request = on_request;
    tc.arg = e;
    assert_int_equal(txn_table_new(e->tp, &tc, &e->tt), 0);

    e->peer = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(e->peer, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(e->peer, &e->peer_addr.u.sa, &len), 0);
    e->peer_addr.len = len;
}

static void
env_fini(struct env *e)
{
    txn_table_free(e->tt);
    tp_free(e->tp);
    assert_int_equal(uv_run(&e->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    close(e->peer);
}

static uint64_t
now_ms(void)
{
    return uv_hrtime() / 1000000;
}

/* Run the loop for ms. */
static void
run_for(struct env *e, int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;

    while (now_ms() < end) {
        struct pollfd p = {.fd = -1};
        uv_run(&e->loop, UV_RUN_NOWAIT);
        poll(&p, 0, 1);
    }
}

/* A datagram the peer received, parsed. */
struct got {
    char buf[4096];
    size_t len;
    struct sip_msg m;
    struct arena a;
    uint64_t at_ms;
};

/* Wait up to ms (running our loop) for one datagram at the peer. */
static bool
peer_recv(struct env *e, struct got *g, int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    struct sip_error err;

    while (now_ms() < end) {
        struct pollfd p = {.fd = e->peer, .events = POLLIN};
        uv_run(&e->loop, UV_RUN_NOWAIT);
        if (poll(&p, 1, 1) == 1) {
            ssize_t n = recv(e->peer, g->buf, sizeof(g->buf), 0);
            assert_true(n > 0);
            g->len = (size_t)n;
            g->at_ms = now_ms();
            arena_reset(&g->a);
            assert_int_equal(sip_msg_parse(&g->m, g->buf, g->len, &g->a, &err),
                             0);
            return true;
        }
    }
    return false;
}

static void
peer_send(struct env *e, const char *p, size_t len)
{
    assert_int_equal(sendto(e->peer, p, len, 0, &e->ours.u.sa, e->ours.len),
                     (ssize_t)len);
}

/* Peer answers a request it received. */
static void
peer_reply(struct env *e, const struct sip_msg *req, int status)
{
    struct buf b;

    buf_init(&b, 65535);
    assert_int_equal(
        sip_build_response(&b, req, status, sip_reason_phrase(status),
                           SLICE_LIT("peertag"), SLICE_NULL, SLICE_NULL),
        0);
    peer_send(e, b.data, b.len);
    buf_fini(&b);
}

/* A request from us to the peer, with a fresh branch of ours. */
static void
make_request(struct env *e, struct buf *b, const char *method, char *branch)
{
    char host[64];

    txn_branch_new(e->tt, branch);
    buf_init(b, 65535);
    tp_addr_host(&e->ours, host, sizeof(host));
    assert_int_equal(buf_printf(b,
                                "%s sip:100@127.0.0.1 SIP/2.0\r\n"
                                "Via: SIP/2.0/UDP %s:%u;branch=%s;rport\r\n"
                                "Max-Forwards: 70\r\n"
                                "From: <sip:a@example.com>;tag=ourtag\r\n"
                                "To: <sip:100@example.com>\r\n"
                                "Call-ID: %s@test\r\n"
                                "CSeq: 1 %s\r\n"
                                "Content-Length: 0\r\n\r\n",
                                method, host, tp_addr_port(&e->ours), branch,
                                branch + 8, method),
                     0);
}

static struct tp_dest
to_peer(struct env *e)
{
    struct tp_dest d = {.proto = TP_UDP, .addr = e->peer_addr, .listener = -1};
    return d;
}

/* A request from the peer to us. */
static size_t
peer_request(char *out, size_t cap, const char *method, const char *branch,
             const char *cseq_method)
{
    int n =
        snprintf(out, cap,
                 "%s sip:100@127.0.0.1 SIP/2.0\r\n"
                 "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=%s\r\n"
                 "Max-Forwards: 70\r\n"
                 "From: <sip:p@example.com>;tag=peerfrom\r\n"
                 "To: <sip:100@example.com>%s\r\n"
                 "Call-ID: peer-call@test\r\n"
                 "CSeq: 7 %s\r\n"
                 "Content-Length: 0\r\n\r\n",
                 method, branch,
                 strcmp(method, "ACK") == 0 ? ";tag=srvtag" : "", cseq_method);
    assert_true(n > 0 && (size_t)n < cap);
    return (size_t)n;
}

/* ---------------------------------------------------------------------- */

static void
test_branch(void **state)
{
    struct env e;
    char b[TXN_BRANCH_MAX], b2[TXN_BRANCH_MAX];

    env_init(&e);
    txn_branch_new(e.tt, b);
    txn_branch_new(e.tt, b2);
    assert_int_equal(strncmp(b, "z9hG4bK", 7), 0);
    assert_string_not_equal(b, b2);
    assert_int_equal(txn_branch_worker(slice_cstr(b)), 0);
    assert_int_equal(txn_branch_worker(SLICE_LIT("z9hG4bKw1f.abc")), 31);
    assert_int_equal(txn_branch_worker(SLICE_LIT("z9hG4bK776asdhds")), -1);
    env_fini(&e);
}

/* Timer A doubles, timer B ends the INVITE client; E doubles up to T2,
 * F ends the non-INVITE client. Both run side by side. */
static void
test_client_retransmit_and_timeout(void **state)
{
    struct env e;
    struct buf inv, opt;
    char bi[TXN_BRANCH_MAX], bo[TXN_BRANCH_MAX];
    struct txn *ti = NULL, *to = NULL;
    uint64_t ti_at[32], to_at[32];
    int ni = 0, no = 0;
    static struct got g;

    env_init(&e);
    arena_init(&g.a, SIP_MSG_ARENA_CAP);
    make_request(&e, &inv, "INVITE", bi);
    make_request(&e, &opt, "OPTIONS", bo);
    struct tp_dest d = to_peer(&e);
    uint64_t start = now_ms();
    assert_int_equal(
        txn_client_start(e.tt, buf_slice(&inv), &d, on_event, &e, &ti), 0);
    assert_int_equal(
        txn_client_start(e.tt, buf_slice(&opt), &d, on_event, &e, &to), 0);
    assert_int_equal(txn_state(ti), TXN_CALLING);
    assert_int_equal(txn_state(to), TXN_TRYING);
    /* Same branch and method twice is refused. */
    assert_int_equal(
        txn_client_start(e.tt, buf_slice(&opt), &d, on_event, &e, NULL),
        -EEXIST);
    while (now_ms() - start < 64 * T1 + 400) {
        if (!peer_recv(&e, &g, 50))
            continue;
        if (slice_eq_cstr(g.m.via.branch, bi) && ni < 32)
            ti_at[ni++] = g.at_ms - start;
        else if (slice_eq_cstr(g.m.via.branch, bo) && no < 32)
            to_at[no++] = g.at_ms - start;
    }
    /* A: 0, 20, 60, 140, 300, 620, (1260 races B at 1280) */
    assert_true(ni >= 6 && ni <= 7);
    for (int i = 2; i < 6; i++) {
        uint64_t prev = ti_at[i - 1] - ti_at[i - 2],
                 cur = ti_at[i] - ti_at[i - 1];
        assert_true(cur + 10 >= 2 * prev - 10); /* doubling */
    }
    /* E: 0, 20, 60, 140, 220, ... every T2 = 80 once capped */
    assert_true(no >= 12);
    for (int i = 5; i < no; i++) {
        uint64_t gap = to_at[i] - to_at[i - 1];
        assert_true(gap >= T2 - 15 && gap <= T2 + 60);
    }
    /* B and F fired: timeout then terminated, once each. */
    assert_int_equal(e.ev[TXN_EV_TIMEOUT], 2);
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 2);
    assert_int_equal(e.ev[TXN_EV_RESPONSE], 0);
    run_for(&e, 10);
    assert_int_equal(txn_count(e.tt), 0); /* freed after the iteration */
    buf_fini(&inv);
    buf_fini(&opt);
    arena_fini(&g.a);
    env_fini(&e);
}

/* Non-INVITE client: 100 then 200; retransmissions stop, K ends it. */
static void
test_non_invite_client_completes(void **state)
{
    struct env e;
    struct buf opt;
    char bo[TXN_BRANCH_MAX];
    struct txn *t = NULL;
    static struct got g;

    env_init(&e);
    arena_init(&g.a, SIP_MSG_ARENA_CAP);
    make_request(&e, &opt, "OPTIONS", bo);
    struct tp_dest d = to_peer(&e);
    assert_int_equal(
        txn_client_start(e.tt, buf_slice(&opt), &d, on_event, &e, &t), 0);
    assert_true(peer_recv(&e, &g, 500));
    peer_reply(&e, &g.m, 100);
    run_for(&e, 10);
    assert_int_equal(e.ev[TXN_EV_RESPONSE], 1);
    assert_int_equal(txn_state(t), TXN_PROCEEDING);
    assert_non_null(txn_request(t));
    peer_reply(&e, &g.m, 200);
    peer_reply(&e, &g.m, 200); /* retransmission: absorbed */
    run_for(&e, 20);
    assert_int_equal(e.ev[TXN_EV_RESPONSE], 2);
    assert_int_equal(e.statuses[1], 200);
    assert_int_equal(txn_state(t), TXN_COMPLETED);
    assert_null(txn_request(t)); /* released after the final */
    /* Drain what was in flight, then nothing more is retransmitted. */
    while (peer_recv(&e, &g, 5))
        ;
    assert_false(peer_recv(&e, &g, 3 * T2));
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 1); /* K = T4 = 50 ms */
    assert_int_equal(e.ev[TXN_EV_TIMEOUT], 0);
    /* A response matching nothing is dropped and reported as such. */
    peer_reply(&e, &g.m, 200);
    run_for(&e, 20);
    assert_int_equal(e.unmatched, 1);
    buf_fini(&opt);
    arena_fini(&g.a);
    env_fini(&e);
}

/* INVITE client: 180, then 486 → ACK generated (same branch), and again
 * for the retransmitted 486, which is not passed up. */
static void
test_invite_client_non2xx_ack(void **state)
{
    struct env e;
    struct buf inv;
    char bi[TXN_BRANCH_MAX];
    struct txn *t = NULL;
    static struct got g, r;

    env_init(&e);
    arena_init(&g.a, SIP_MSG_ARENA_CAP);
    arena_init(&r.a, SIP_MSG_ARENA_CAP);
    make_request(&e, &inv, "INVITE", bi);
    struct tp_dest d = to_peer(&e);
    assert_int_equal(
        txn_client_start(e.tt, buf_slice(&inv), &d, on_event, &e, &t), 0);
    assert_true(peer_recv(&e, &g, 500));
    assert_int_equal(g.m.method, SIP_METHOD_INVITE);
    peer_reply(&e, &g.m, 180);
    run_for(&e, 10);
    assert_int_equal(txn_state(t), TXN_PROCEEDING);
    while (peer_recv(&e, &r, 5))
        ; /* retransmissions sent before the 180 arrived */
    assert_false(peer_recv(&e, &r, 3 * T1)); /* A stopped */
    peer_reply(&e, &g.m, 486);
    assert_true(peer_recv(&e, &r, 500));
    assert_int_equal(r.m.method, SIP_METHOD_ACK);
    assert_true(slice_eq_cstr(r.m.via.branch, bi));
    assert_int_equal(r.m.cseq.num, 1);
    assert_true(slice_eq_cstr(r.m.to.tag, "peertag"));
    assert_int_equal(e.ev[TXN_EV_RESPONSE], 2);
    assert_int_equal(e.statuses[0], 180);
    assert_int_equal(e.statuses[1], 486);
    assert_int_equal(txn_state(t), TXN_COMPLETED);
    peer_reply(&e, &g.m, 486); /* retransmitted final */
    assert_true(peer_recv(&e, &r, 500));
    assert_int_equal(r.m.method, SIP_METHOD_ACK);
    assert_int_equal(e.ev[TXN_EV_RESPONSE], 2); /* absorbed */
    /* D = 64*T1 ends it. */
    run_for(&e, 64 * T1 + 200);
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 1);
    buf_fini(&inv);
    arena_fini(&g.a);
    arena_fini(&r.a);
    env_fini(&e);
}

/* INVITE client: 2xx → Accepted; a second 2xx (retransmission or another
 * fork) is passed up too; no ACK from the transaction; M ends it. */
static void
test_invite_client_accepted(void **state)
{
    struct env e;
    struct buf inv;
    char bi[TXN_BRANCH_MAX];
    struct txn *t = NULL;
    static struct got g, r;

    env_init(&e);
    arena_init(&g.a, SIP_MSG_ARENA_CAP);
    arena_init(&r.a, SIP_MSG_ARENA_CAP);
    make_request(&e, &inv, "INVITE", bi);
    struct tp_dest d = to_peer(&e);
    assert_int_equal(
        txn_client_start(e.tt, buf_slice(&inv), &d, on_event, &e, &t), 0);
    assert_true(peer_recv(&e, &g, 500));
    peer_reply(&e, &g.m, 200);
    run_for(&e, 10);
    assert_int_equal(txn_state(t), TXN_ACCEPTED);
    while (peer_recv(&e, &r, 5))
        ;
    peer_reply(&e, &g.m, 200);
    run_for(&e, 10);
    assert_int_equal(e.ev[TXN_EV_RESPONSE], 2);
    assert_int_equal(e.statuses[1], 200);
    assert_false(peer_recv(&e, &r, 4 * T1)); /* no ACK, no INVITE */
    run_for(&e, 64 * T1 + 100);
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 1);
    /* After M the transaction is gone: a late 2xx matches nothing. */
    peer_reply(&e, &g.m, 200);
    run_for(&e, 20);
    assert_int_equal(e.unmatched, 1);
    buf_fini(&inv);
    arena_fini(&g.a);
    arena_fini(&r.a);
    env_fini(&e);
}

/* INVITE client cancelled before any response: the CANCEL waits for the
 * provisional, then goes out with the INVITE's branch. */
static void
test_invite_client_cancel(void **state)
{
    struct env e;
    struct buf inv;
    char bi[TXN_BRANCH_MAX];
    struct txn *t = NULL;
    static struct got g, r;

    env_init(&e);
    arena_init(&g.a, SIP_MSG_ARENA_CAP);
    arena_init(&r.a, SIP_MSG_ARENA_CAP);
    make_request(&e, &inv, "INVITE", bi);
    struct tp_dest d = to_peer(&e);
    assert_int_equal(
        txn_client_start(e.tt, buf_slice(&inv), &d, on_event, &e, &t), 0);
    assert_true(peer_recv(&e, &g, 500));
    assert_int_equal(txn_cancel(t, SLICE_LIT("Reason: SIP;cause=487\r\n")), 0);
    peer_reply(&e, &g.m, 180);
    bool got_cancel = false;
    while (peer_recv(&e, &r, 200)) {
        if (r.m.method == SIP_METHOD_CANCEL) {
            got_cancel = true;
            break;
        }
    }
    assert_true(got_cancel);
    assert_true(slice_eq_cstr(r.m.via.branch, bi));
    assert_non_null(sip_msg_hdr(&r.m, SIP_HDR_REASON));
    peer_reply(&e, &r.m, 200); /* to the CANCEL: absorbed */
    peer_reply(&e, &g.m, 487);
    bool got_ack = false;
    while (peer_recv(&e, &r, 200)) {
        if (r.m.method == SIP_METHOD_ACK) {
            got_ack = true;
            break;
        }
    }
    assert_true(got_ack);
    assert_int_equal(e.ev[TXN_EV_RESPONSE], 2); /* 180, 487 */
    assert_int_equal(e.statuses[1], 487);
    assert_int_equal(e.unmatched, 0);
    buf_fini(&inv);
    arena_fini(&g.a);
    arena_fini(&r.a);
    env_fini(&e);
}

/* Non-INVITE server: the retransmitted request is absorbed and answered
 * with the stored response; J ends it. */
static void
test_server_absorbs_retransmission(void **state)
{
    struct env e;
    char req[1024];
    static struct got g;

    env_init(&e);
    arena_init(&g.a, SIP_MSG_ARENA_CAP);
    e.reply_at_once = true;
    size_t n =
        peer_request(req, sizeof(req), "OPTIONS", "z9hG4bKpeer1", "OPTIONS");
    peer_send(&e, req, n);
    assert_true(peer_recv(&e, &g, 500));
    assert_int_equal(g.m.status, 200);
    assert_true(slice_eq_cstr(g.m.to.tag, "srvtag"));
    assert_int_equal(e.requests, 1);
    peer_send(&e, req, n);
    assert_true(peer_recv(&e, &g, 500));
    assert_int_equal(g.m.status, 200);
    assert_int_equal(e.requests, 1); /* absorbed */
    assert_non_null(e.last_server);
    assert_int_equal(txn_state(e.last_server), TXN_COMPLETED);
    assert_int_equal(
        txn_reply(e.last_server, 500, "x", SLICE_NULL, SLICE_NULL, SLICE_NULL),
        -EALREADY);
    run_for(&e, 64 * T1 + 100); /* J */
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 1);
    assert_null(e.last_server);
    /* Same request after the transaction ended: a new transaction. */
    peer_send(&e, req, n);
    assert_true(peer_recv(&e, &g, 500));
    assert_int_equal(e.requests, 2);
    arena_fini(&g.a);
    env_fini(&e);
}

/* INVITE server: automatic 100 after 200 ms, CANCEL matched (200 to it,
 * CANCELLED to the TU, which answers 487), 487 retransmitted by G until
 * the ACK, then I ends it. An ACK for a 2xx (other branch) goes to the TU
 * statelessly. */
static void
test_invite_server_cancel(void **state)
{
    struct env e;
    char req[1024];
    static struct got g;

    env_init(&e);
    arena_init(&g.a, SIP_MSG_ARENA_CAP);
    e.reply_487_on_cancel = true;
    size_t n =
        peer_request(req, sizeof(req), "INVITE", "z9hG4bKinv1", "INVITE");
    uint64_t start = now_ms();
    peer_send(&e, req, n);
    assert_true(peer_recv(&e, &g, 1000));
    assert_int_equal(g.m.status, 100);
    assert_true(g.at_ms - start >= 180);
    assert_int_equal(e.requests, 1);
    /* Retransmitted INVITE: the 100 is sent again, no new request. */
    peer_send(&e, req, n);
    assert_true(peer_recv(&e, &g, 500));
    assert_int_equal(g.m.status, 100);
    assert_int_equal(e.requests, 1);

    n = peer_request(req, sizeof(req), "CANCEL", "z9hG4bKinv1", "CANCEL");
    peer_send(&e, req, n);
    int got200 = 0, got487 = 0;
    uint64_t first487 = 0, last487 = 0;
    uint64_t until = now_ms() + 8 * T1;
    while (now_ms() < until) {
        if (!peer_recv(&e, &g, 10))
            continue;
        if (g.m.status == 200 && g.m.cseq.method == SIP_METHOD_CANCEL)
            got200++;
        if (g.m.status == 487) {
            if (got487++ == 0)
                first487 = g.at_ms;
            last487 = g.at_ms;
        }
    }
    assert_int_equal(got200, 1);
    assert_int_equal(e.ev[TXN_EV_CANCELLED], 1);
    assert_true(got487 >= 3); /* G: 0, 20, 60, 140 */
    assert_true(last487 - first487 >= 2 * T1);
    assert_int_equal(e.requests, 1); /* CANCEL did not reach the TU */

    n = peer_request(req, sizeof(req), "ACK", "z9hG4bKinv1", "ACK");
    peer_send(&e, req, n);
    run_for(&e, 20);
    while (peer_recv(&e, &g, 5))
        ;
    assert_false(peer_recv(&e, &g, 4 * T1)); /* G stopped */
    assert_int_equal(e.stateless, 0);        /* the ACK was absorbed */
    run_for(&e, T4 + 50);                    /* I */
    /* The INVITE ended (the CANCEL's own transaction has no TU). */
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 1);
    assert_int_equal(e.ev[TXN_EV_TIMEOUT], 0);
    assert_int_equal(txn_count(e.tt), 1); /* the CANCEL's, until J */

    /* ACK for a 2xx: new branch, matches nothing, goes up statelessly. */
    n = peer_request(req, sizeof(req), "ACK", "z9hG4bKack2xx", "ACK");
    peer_send(&e, req, n);
    run_for(&e, 20);
    assert_int_equal(e.stateless, 1);
    /* CANCEL for nothing: a new server transaction for the TU (481). */
    n = peer_request(req, sizeof(req), "CANCEL", "z9hG4bKnone", "CANCEL");
    peer_send(&e, req, n);
    run_for(&e, 20);
    assert_int_equal(e.requests, 2);
    arena_fini(&g.a);
    env_fini(&e);
}

/* INVITE server: 2xx → Accepted; the retransmitted INVITE is absorbed;
 * timer H fires when a non-2xx is never ACKed. */
static void
test_invite_server_accepted_and_h(void **state)
{
    struct env e;
    char req[1024];
    static struct got g;

    env_init(&e);
    arena_init(&g.a, SIP_MSG_ARENA_CAP);
    e.reply_at_once = true; /* 200 at once: no 100 */
    size_t n = peer_request(req, sizeof(req), "INVITE", "z9hG4bKacc", "INVITE");
    peer_send(&e, req, n);
    assert_true(peer_recv(&e, &g, 500));
    assert_int_equal(g.m.status, 200);
    struct txn *t = e.last_server;
    assert_int_equal(txn_state(t), TXN_ACCEPTED);
    peer_send(&e, req, n);
    assert_false(peer_recv(&e, &g, 300)); /* absorbed, no 100 either */
    /* the TU's own 2xx retransmission is sent */
    assert_int_equal(
        txn_reply(t, 200, "OK", SLICE_LIT("srvtag"), SLICE_NULL, SLICE_NULL),
        0);
    assert_true(peer_recv(&e, &g, 500));
    assert_int_equal(g.m.status, 200);
    /* ACK with the INVITE's branch in Accepted goes to the TU. */
    n = peer_request(req, sizeof(req), "ACK", "z9hG4bKacc", "ACK");
    peer_send(&e, req, n);
    run_for(&e, 20);
    assert_int_equal(e.stateless, 1);

    /* Second INVITE answered 486 and never ACKed: H. */
    e.reply_at_once = false;
    n = peer_request(req, sizeof(req), "INVITE", "z9hG4bKnoack", "INVITE");
    peer_send(&e, req, n);
    run_for(&e, 20);
    assert_int_equal(e.requests, 2);
    assert_int_equal(txn_reply(e.last_server, 486, "Busy Here",
                               SLICE_LIT("srvtag"), SLICE_NULL, SLICE_NULL),
                     0);
    run_for(&e, 64 * T1 + 200);
    assert_int_equal(e.ev[TXN_EV_TIMEOUT], 1);
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 2); /* L and H */
    arena_fini(&g.a);
    env_fini(&e);
}

/* Many non-INVITE server transactions: the table grows past its first
 * 1024 buckets, each transaction drops its request copy once the loop
 * turned after the final (txn_request() NULL), and a retransmission of
 * any of them still gets its own stored response. */
static void
test_server_many_compacted(void **state)
{
    enum { N = 3000 };
    struct env e;
    char req[1024], br[32];
    static struct got g;

    env_init(&e);
    arena_init(&g.a, SIP_MSG_ARENA_CAP);
    e.reply_at_once = true;
    for (int i = 0; i < N; i++) {
        snprintf(br, sizeof(br), "z9hG4bKmany%d", i);
        size_t n = peer_request(req, sizeof(req), "OPTIONS", br, "OPTIONS");
        peer_send(&e, req, n);
        assert_true(peer_recv(&e, &g, 500));
        assert_int_equal(g.m.status, 200);
        if (i == 0) {
            /* Still valid in the iteration that sent the final... */
            assert_non_null(e.last_server);
            run_for(&e, 2);
            /* ...released after it. */
            assert_null(txn_request(e.last_server));
            assert_int_equal(txn_state(e.last_server), TXN_COMPLETED);
        }
    }
    assert_int_equal(e.requests, N);
    assert_int_equal(txn_count(e.tt), N);
    for (int i = 0; i < N; i += 499) {
        snprintf(br, sizeof(br), "z9hG4bKmany%d", i);
        size_t n = peer_request(req, sizeof(req), "OPTIONS", br, "OPTIONS");
        peer_send(&e, req, n);
        assert_true(peer_recv(&e, &g, 500));
        assert_int_equal(g.m.status, 200);
        assert_true(slice_eq_cstr(g.m.via.branch, br));
    }
    /* Same branch, other method or other sent-by: new transactions. */
    size_t n = peer_request(req, sizeof(req), "INFO", "z9hG4bKmany7", "INFO");
    peer_send(&e, req, n);
    assert_true(peer_recv(&e, &g, 500));
    assert_int_equal(e.requests, N + 1);
    char *port = strstr(req, ":5999");
    assert_non_null(port);
    memcpy(port, ":5998", 5);
    peer_send(&e, req, n);
    assert_true(peer_recv(&e, &g, 500));
    assert_int_equal(e.requests, N + 2);
    /* Timer J ends them all. */
    run_for(&e, 64 * T1 + 300);
    assert_int_equal(txn_count(e.tt), 0);
    assert_int_equal(e.ev[TXN_EV_TERMINATED], N + 2);
    arena_fini(&g.a);
    env_fini(&e);
}

/* RFC 2543 request (no magic cookie): a retransmission matches by Call-ID,
 * From tag, CSeq and sent-by, also after the request copy was released;
 * another CSeq is a new transaction. An INVITE answered 486 keeps matching
 * its ACK after compaction (Completed -> Confirmed, no more 486). */
static void
test_server_rfc2543_compacted(void **state)
{
    struct env e;
    char req[1024];
    static struct got g;

    env_init(&e);
    arena_init(&g.a, SIP_MSG_ARENA_CAP);
    e.reply_at_once = true;
    size_t n = peer_request(req, sizeof(req), "OPTIONS", "old1", "OPTIONS");
    peer_send(&e, req, n);
    assert_true(peer_recv(&e, &g, 500));
    run_for(&e, 5);
    assert_null(txn_request(e.last_server));
    peer_send(&e, req, n);
    assert_true(peer_recv(&e, &g, 500));
    assert_int_equal(g.m.status, 200);
    assert_int_equal(e.requests, 1);
    char *cseq = strstr(req, "CSeq: 7");
    assert_non_null(cseq);
    cseq[6] = '8';
    peer_send(&e, req, n);
    assert_true(peer_recv(&e, &g, 500));
    assert_int_equal(e.requests, 2);

    e.reply_at_once = false;
    n = peer_request(req, sizeof(req), "INVITE", "z9hG4bKbusy", "INVITE");
    peer_send(&e, req, n);
    run_for(&e, 20);
    assert_int_equal(e.requests, 3);
    struct txn *inv = e.last_server;
    assert_non_null(txn_request(inv));
    assert_int_equal(txn_reply(inv, 486, "Busy Here", SLICE_LIT("srvtag"),
                               SLICE_NULL, SLICE_NULL),
                     0);
    assert_true(peer_recv(&e, &g, 500));
    assert_int_equal(g.m.status, 486);
    run_for(&e, 5);
    assert_null(txn_request(inv));
    peer_send(&e, req, n); /* retransmitted INVITE: 486 again */
    assert_true(peer_recv(&e, &g, 500));
    assert_int_equal(g.m.status, 486);
    n = peer_request(req, sizeof(req), "ACK", "z9hG4bKbusy", "ACK");
    peer_send(&e, req, n);
    run_for(&e, 20);
    assert_int_equal(txn_state(inv), TXN_CONFIRMED);
    assert_int_equal(e.stateless, 0);
    assert_false(peer_recv(&e, &g, 4 * T1)); /* G stopped */
    arena_fini(&g.a);
    env_fini(&e);
}

/* Freeing the table terminates what is left and tells each TU. */
static void
test_table_free_terminates(void **state)
{
    struct env e;
    struct buf inv;
    char bi[TXN_BRANCH_MAX];

    env_init(&e);
    make_request(&e, &inv, "INVITE", bi);
    struct tp_dest d = to_peer(&e);
    assert_int_equal(
        txn_client_start(e.tt, buf_slice(&inv), &d, on_event, &e, NULL), 0);
    assert_int_equal(txn_count(e.tt), 1);
    buf_fini(&inv);
    env_fini(&e);
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_branch),
        cmocka_unit_test(test_client_retransmit_and_timeout),
        cmocka_unit_test(test_non_invite_client_completes),
        cmocka_unit_test(test_invite_client_non2xx_ack),
        cmocka_unit_test(test_invite_client_accepted),
        cmocka_unit_test(test_invite_client_cancel),
        cmocka_unit_test(test_server_absorbs_retransmission),
        cmocka_unit_test(test_invite_server_cancel),
        cmocka_unit_test(test_invite_server_accepted_and_h),
        cmocka_unit_test(test_table_free_terminates),
        cmocka_unit_test(test_server_many_compacted),
        cmocka_unit_test(test_server_rfc2543_compacted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
