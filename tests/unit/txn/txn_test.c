/*
 * txn_test: the transaction state machines with a fake clock. Our side is a
 * tp bound to 127.0.0.1:0 with a txn table; the peer is a plain UDP socket
 * that parses what it gets with sip_msg_parse and answers with
 * sip_build_response. Time is the test's own (tp_set_clock): advance()
 * moves it from one timer deadline to the next and fires what is due, so
 * every timer (A to M, the automatic 100) is checked at its exact
 * millisecond and no test sleeps or depends on the machine's load. Only
 * the datagrams are real; each is awaited as an event: tp's tx_msgs says
 * how many our side sent, so the peer waits for exactly those (and
 * "nothing was sent" is tx_msgs unchanged), and rx_msgs says when our
 * side has handled what the peer sent.
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
#include "base/tq.h"
#include "sip/build.h"
#include "txn/txn.h"

#define T1 20
#define T2 80
#define T4 50
#define TRYING 200 /* txn.c TRYING_MS: the INVITE server's automatic 100 */

/* Real-time bound for a datagram that must come: only a broken test
 * waits that long. */
#define EVENT_WAIT_MS 10000

/* What the peer received and not yet looked at, in order, each stamped
 * with the fake time at which our side sent it. */
#define QCAP 256
struct sent {
    char buf[4096];
    size_t len;
    uint64_t at_ms;
};
static struct sent queue[QCAP];
static size_t q_head, q_count;

struct env {
    uv_loop_t loop;
    struct tp *tp;
    struct txn_table *tt;
    struct tp_addr ours; /* our UDP listener */
    int peer;            /* peer UDP socket */
    struct tp_addr peer_addr;
    uint64_t now;     /* the fake clock (ms) */
    uint64_t tx_seen; /* our tx_msgs already collected by the peer */
    /* TU bookkeeping */
    int ev[TXN_EV_TERMINATED + 1];
    int statuses[32];
    int nstatus;
    int requests;  /* on_request with a transaction */
    int stateless; /* on_request with t == NULL (ACK) */
    struct txn *last_server;
    bool reply_at_once;   /* TU answers new requests with 200 */
    bool req_after_reply; /* txn_request() still set right after that */
    bool reply_487_on_cancel;
    int unmatched; /* txn_recv -ENOENT */
};

static uint64_t
fake_clock(void *arg)
{
    return ((struct env *)arg)->now;
}

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
    if (e->reply_at_once) {
        assert_int_equal(txn_reply(t, 200, "OK", SLICE_LIT("srvtag"),
                                   SLICE_NULL, SLICE_NULL),
                         0);
        /* Still valid in the loop iteration that sent the final. */
        e->req_after_reply = txn_request(t) != NULL;
    }
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
    q_head = q_count = 0;
    e->now = 1000000; /* any start: only differences matter */
    assert_int_equal(uv_loop_init(&e->loop), 0);
    tp_cfg_defaults(&cfg);
    cfg.on_recv = on_recv;
    cfg.arg = e;
    assert_int_equal(tp_new(&e->loop, &cfg, &e->tp), 0);
    tp_set_clock(e->tp, fake_clock, e);
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
tx_msgs(struct env *e)
{
    struct tp_stats st;

    tp_stats_get(e->tp, &st);
    return st.tx_msgs;
}

static uint64_t
rx_msgs(struct env *e)
{
    struct tp_stats st;

    tp_stats_get(e->tp, &st);
    return st.rx_msgs;
}

/* The peer takes every datagram our side has sent so far (tx_msgs), each
 * awaited as it must come, into the queue stamped with the fake time. */
static void
collect(struct env *e)
{
    uint64_t sent = tx_msgs(e);

    while (e->tx_seen < sent) {
        struct pollfd p = {.fd = e->peer, .events = POLLIN};
        assert_int_equal(poll(&p, 1, EVENT_WAIT_MS), 1);
        assert_true(q_count < QCAP);
        struct sent *s = &queue[(q_head + q_count) % QCAP];
        ssize_t n = recv(e->peer, s->buf, sizeof(s->buf), 0);
        assert_true(n > 0);
        s->len = (size_t)n;
        s->at_ms = e->now;
        q_count++;
        e->tx_seen++;
    }
}

/* One loop iteration (I/O, then the check phase that compacts and frees
 * transactions), then collect what it sent. */
static void
turn(struct env *e)
{
    uv_run(&e->loop, UV_RUN_NOWAIT);
    collect(e);
}

/* Move the fake clock forward by ms, firing every timer at its deadline
 * (in deadline order, a loop iteration after each), as the worker's
 * uv_timer would in real time. */
static void
advance(struct env *e, uint64_t ms)
{
    uint64_t end = e->now + ms;
    struct tq *q = tp_tq(e->tp);

    for (;;) {
        uint64_t due = tq_next_due(q);
        if (due > end)
            break;
        if (due > e->now)
            e->now = due;
        tq_run(q, e->now, 0);
        turn(e);
    }
    e->now = end;
    turn(e);
}

/* A datagram the peer received, parsed. */
struct got {
    char buf[4096];
    size_t len;
    struct sip_msg m;
    struct arena a;
    uint64_t at_ms;
};

/* The next datagram our side sent (false: none). */
static bool
peer_next(struct env *e, struct got *g)
{
    struct sip_error err;

    collect(e);
    if (q_count == 0)
        return false;
    struct sent *s = &queue[q_head];
    memcpy(g->buf, s->buf, s->len);
    g->len = s->len;
    g->at_ms = s->at_ms;
    q_head = (q_head + 1) % QCAP;
    q_count--;
    arena_reset(&g->a);
    assert_int_equal(sip_msg_parse(&g->m, g->buf, g->len, &g->a, &err), 0);
    return true;
}

/* Nothing sent that the peer has not looked at. */
static void
assert_nothing_sent(struct env *e)
{
    collect(e);
    assert_int_equal(q_count, 0);
}

/* The peer sends one datagram; returns once our side has read and handled
 * it (rx_msgs) and the peer has collected whatever that made us send. */
static void
peer_send(struct env *e, const char *p, size_t len)
{
    uint64_t want = rx_msgs(e) + 1;
    int waited = 0;

    assert_int_equal(sendto(e->peer, p, len, 0, &e->ours.u.sa, e->ours.len),
                     (ssize_t)len);
    for (;;) {
        uv_run(&e->loop, UV_RUN_NOWAIT);
        if (rx_msgs(e) >= want)
            break;
        assert_true(waited++ < EVENT_WAIT_MS);
        poll(NULL, 0, 1);
    }
    turn(e); /* the check phase has run; collect */
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
 * F ends the non-INVITE client. Both run side by side, each send at its
 * exact time. */
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
    /* A: T1, then doubling: 0, 20, 60, 140, 300, 620, 1260; B at 1280. */
    static const uint64_t want_a[] = {0, 20, 60, 140, 300, 620, 1260};

    env_init(&e);
    arena_init(&g.a, SIP_MSG_ARENA_CAP);
    make_request(&e, &inv, "INVITE", bi);
    make_request(&e, &opt, "OPTIONS", bo);
    struct tp_dest d = to_peer(&e);
    uint64_t start = e.now;
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
    collect(&e); /* the first sends, at 0 */
    advance(&e, 64 * T1 - 1);
    assert_int_equal(e.ev[TXN_EV_TIMEOUT], 0);
    advance(&e, 1); /* B and F */
    assert_int_equal(e.ev[TXN_EV_TIMEOUT], 2);
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 2);
    assert_int_equal(e.ev[TXN_EV_RESPONSE], 0);
    assert_int_equal(txn_count(e.tt), 0); /* freed after the iteration */
    advance(&e, 400);
    while (peer_next(&e, &g)) {
        if (slice_eq_cstr(g.m.via.branch, bi) && ni < 32)
            ti_at[ni++] = g.at_ms - start;
        else if (slice_eq_cstr(g.m.via.branch, bo) && no < 32)
            to_at[no++] = g.at_ms - start;
        else
            fail_msg("unexpected datagram");
    }
    assert_int_equal(ni, 7);
    for (int i = 0; i < ni; i++)
        assert_int_equal(ti_at[i], want_a[i]);
    /* E: 0, 20, 60, then every T2 = 80 once capped: 140 ... 1260. */
    assert_int_equal(no, 18);
    assert_int_equal(to_at[0], 0);
    assert_int_equal(to_at[1], T1);
    assert_int_equal(to_at[2], 3 * T1);
    for (int i = 3; i < no; i++)
        assert_int_equal(to_at[i], 7 * T1 + (uint64_t)(i - 3) * T2);
    buf_fini(&inv);
    buf_fini(&opt);
    arena_fini(&g.a);
    env_fini(&e);
}

/* Non-INVITE client: 100 then 200; in Proceeding E fires every T2;
 * after the final retransmissions stop and K ends it at T4. */
static void
test_non_invite_client_completes(void **state)
{
    struct env e;
    struct buf opt;
    char bo[TXN_BRANCH_MAX];
    struct txn *t = NULL;
    static struct got g, r;

    env_init(&e);
    arena_init(&g.a, SIP_MSG_ARENA_CAP);
    arena_init(&r.a, SIP_MSG_ARENA_CAP);
    make_request(&e, &opt, "OPTIONS", bo);
    struct tp_dest d = to_peer(&e);
    assert_int_equal(
        txn_client_start(e.tt, buf_slice(&opt), &d, on_event, &e, &t), 0);
    assert_true(peer_next(&e, &g));
    peer_reply(&e, &g.m, 100);
    assert_int_equal(e.ev[TXN_EV_RESPONSE], 1);
    assert_int_equal(txn_state(t), TXN_PROCEEDING);
    assert_non_null(txn_request(t));
    advance(&e, T1); /* E as armed before the 100, then every T2 */
    assert_true(peer_next(&e, &r));
    assert_true(slice_eq_cstr(r.m.via.branch, bo));
    advance(&e, T2 - 1);
    assert_nothing_sent(&e);
    advance(&e, 1);
    assert_true(peer_next(&e, &r));
    assert_nothing_sent(&e);
    peer_reply(&e, &g.m, 200);
    peer_reply(&e, &g.m, 200); /* retransmission: absorbed */
    assert_int_equal(e.ev[TXN_EV_RESPONSE], 2);
    assert_int_equal(e.statuses[1], 200);
    assert_int_equal(txn_state(t), TXN_COMPLETED);
    assert_null(txn_request(t)); /* released after the final */
    advance(&e, T4 - 1);
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 0);
    advance(&e, 1); /* K = T4 */
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 1);
    assert_int_equal(e.ev[TXN_EV_TIMEOUT], 0);
    advance(&e, 3 * T2);
    assert_nothing_sent(&e); /* nothing more is retransmitted */
    /* A response matching nothing is dropped and reported as such. */
    peer_reply(&e, &g.m, 200);
    assert_int_equal(e.unmatched, 1);
    buf_fini(&opt);
    arena_fini(&g.a);
    arena_fini(&r.a);
    env_fini(&e);
}

/* INVITE client: 180, then 486 → ACK generated (same branch), and again
 * for the retransmitted 486, which is not passed up; D ends it. */
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
    assert_true(peer_next(&e, &g));
    assert_int_equal(g.m.method, SIP_METHOD_INVITE);
    peer_reply(&e, &g.m, 180);
    assert_int_equal(txn_state(t), TXN_PROCEEDING);
    advance(&e, 64 * T1);
    assert_nothing_sent(&e); /* A stopped, and B with it */
    assert_int_equal(e.ev[TXN_EV_TIMEOUT], 0);
    peer_reply(&e, &g.m, 486);
    assert_true(peer_next(&e, &r));
    assert_int_equal(r.m.method, SIP_METHOD_ACK);
    assert_true(slice_eq_cstr(r.m.via.branch, bi));
    assert_int_equal(r.m.cseq.num, 1);
    assert_true(slice_eq_cstr(r.m.to.tag, "peertag"));
    assert_int_equal(e.ev[TXN_EV_RESPONSE], 2);
    assert_int_equal(e.statuses[0], 180);
    assert_int_equal(e.statuses[1], 486);
    assert_int_equal(txn_state(t), TXN_COMPLETED);
    peer_reply(&e, &g.m, 486); /* retransmitted final */
    assert_true(peer_next(&e, &r));
    assert_int_equal(r.m.method, SIP_METHOD_ACK);
    assert_int_equal(e.ev[TXN_EV_RESPONSE], 2); /* absorbed */
    advance(&e, 64 * T1 - 1);
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 0);
    advance(&e, 1); /* D = 64*T1 */
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 1);
    assert_nothing_sent(&e);
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
    static struct got g;

    env_init(&e);
    arena_init(&g.a, SIP_MSG_ARENA_CAP);
    make_request(&e, &inv, "INVITE", bi);
    struct tp_dest d = to_peer(&e);
    assert_int_equal(
        txn_client_start(e.tt, buf_slice(&inv), &d, on_event, &e, &t), 0);
    assert_true(peer_next(&e, &g));
    peer_reply(&e, &g.m, 200);
    assert_int_equal(txn_state(t), TXN_ACCEPTED);
    peer_reply(&e, &g.m, 200);
    assert_int_equal(e.ev[TXN_EV_RESPONSE], 2);
    assert_int_equal(e.statuses[1], 200);
    advance(&e, 64 * T1 - 1);
    assert_nothing_sent(&e); /* no ACK, no INVITE */
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 0);
    advance(&e, 1); /* M = 64*T1 */
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 1);
    /* After M the transaction is gone: a late 2xx matches nothing. */
    peer_reply(&e, &g.m, 200);
    assert_int_equal(e.unmatched, 1);
    buf_fini(&inv);
    arena_fini(&g.a);
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
    assert_true(peer_next(&e, &g));
    assert_int_equal(txn_cancel(t, SLICE_LIT("Reason: SIP;cause=487\r\n")), 0);
    assert_nothing_sent(&e); /* no CANCEL before a provisional */
    peer_reply(&e, &g.m, 180);
    assert_true(peer_next(&e, &r));
    assert_int_equal(r.m.method, SIP_METHOD_CANCEL);
    assert_true(slice_eq_cstr(r.m.via.branch, bi));
    assert_non_null(sip_msg_hdr(&r.m, SIP_HDR_REASON));
    peer_reply(&e, &r.m, 200); /* to the CANCEL: absorbed */
    peer_reply(&e, &g.m, 487);
    assert_true(peer_next(&e, &r));
    assert_int_equal(r.m.method, SIP_METHOD_ACK);
    assert_nothing_sent(&e);
    assert_int_equal(e.ev[TXN_EV_RESPONSE], 2); /* 180, 487 */
    assert_int_equal(e.statuses[1], 487);
    assert_int_equal(e.unmatched, 0);
    buf_fini(&inv);
    arena_fini(&g.a);
    arena_fini(&r.a);
    env_fini(&e);
}

/* §9.1: an INVITE client whose CANCEL gets no answer at all (a peer that
 * vanished after its 180) is given up 64*T1 after the CANCEL: TIMEOUT
 * (the TU counts 408), then TERMINATED; before, it waited for ever. */
static void
test_invite_client_cancel_unanswered(void **state)
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
    assert_true(peer_next(&e, &g));
    peer_reply(&e, &g.m, 180);
    advance(&e, 1000); /* Proceeding: no timer of its own */
    assert_int_equal(e.ev[TXN_EV_TIMEOUT], 0);
    assert_int_equal(txn_cancel(t, SLICE_NULL), 0);
    assert_true(peer_next(&e, &r));
    assert_int_equal(r.m.method, SIP_METHOD_CANCEL);
    uint64_t sent_at = r.at_ms;
    advance(&e, 64 * T1 - 1); /* the CANCEL's E retransmissions, its F */
    while (peer_next(&e, &r))
        assert_int_equal(r.m.method, SIP_METHOD_CANCEL);
    assert_int_equal(e.ev[TXN_EV_TIMEOUT], 0);
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 0);
    advance(&e, 1);
    assert_int_equal(e.now - sent_at, 64 * T1);
    assert_int_equal(e.ev[TXN_EV_TIMEOUT], 1);
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 1);
    assert_nothing_sent(&e);
    assert_int_equal(txn_count(e.tt), 0);
    buf_fini(&inv);
    arena_fini(&g.a);
    arena_fini(&r.a);
    env_fini(&e);
}

/* Timer C (§16.8): reset by 101-199 (not by 100); when it fires after a
 * provisional the branch is CANCELled and the TU told TIMEOUT once; the
 * 487 is then ACKed and ends the transaction as usual. */
static void
test_invite_client_timer_c_cancels(void **state)
{
    enum { C = 4000 };
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
    assert_int_equal(txn_client_timer_c(t, C), 0);
    assert_true(peer_next(&e, &g));
    peer_reply(&e, &g.m, 100); /* A and B stop; C goes on */
    advance(&e, 1000);
    peer_reply(&e, &g.m, 180); /* C again from here */
    uint64_t rang = e.now;
    advance(&e, 2000);
    peer_reply(&e, &g.m, 183); /* and again */
    rang = e.now;
    assert_nothing_sent(&e);
    advance(&e, C - 1);
    assert_nothing_sent(&e);
    assert_int_equal(e.ev[TXN_EV_TIMEOUT], 0);
    advance(&e, 1);
    assert_true(peer_next(&e, &r));
    assert_int_equal(r.m.method, SIP_METHOD_CANCEL);
    assert_int_equal(r.at_ms - rang, C);
    assert_int_equal(e.ev[TXN_EV_TIMEOUT], 1);
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 0);
    peer_reply(&e, &r.m, 200); /* to the CANCEL */
    peer_reply(&e, &g.m, 487);
    assert_true(peer_next(&e, &r));
    assert_int_equal(r.m.method, SIP_METHOD_ACK);
    assert_int_equal(e.ev[TXN_EV_TIMEOUT], 1); /* not twice */
    advance(&e, 64 * T1); /* D */
    assert_int_equal(e.ev[TXN_EV_TIMEOUT], 1);
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 1);
    assert_int_equal(txn_count(e.tt), 0);
    buf_fini(&inv);
    arena_fini(&g.a);
    arena_fini(&r.a);
    env_fini(&e);
}

/* Timer C with no provisional at all: as if a 408 had arrived (no CANCEL
 * may go before a provisional); here C is shorter than B. A 2xx after it
 * matches nothing. Timer C is for INVITE clients only. */
static void
test_invite_client_timer_c_no_provisional(void **state)
{
    struct env e;
    struct buf inv, opt;
    char bi[TXN_BRANCH_MAX], bo[TXN_BRANCH_MAX];
    struct txn *t = NULL, *o = NULL;
    static struct got g;

    env_init(&e);
    arena_init(&g.a, SIP_MSG_ARENA_CAP);
    make_request(&e, &inv, "INVITE", bi);
    make_request(&e, &opt, "OPTIONS", bo);
    struct tp_dest d = to_peer(&e);
    assert_int_equal(
        txn_client_start(e.tt, buf_slice(&inv), &d, on_event, &e, &t), 0);
    assert_int_equal(
        txn_client_start(e.tt, buf_slice(&opt), &d, NULL, NULL, &o), 0);
    assert_int_equal(txn_client_timer_c(o, 100), -EINVAL);
    assert_int_equal(txn_client_timer_c(t, 0), -EINVAL);
    assert_int_equal(txn_client_timer_c(t, 10 * T1), 0);
    while (peer_next(&e, &g))
        ;
    advance(&e, 10 * T1 - 1);
    assert_int_equal(e.ev[TXN_EV_TIMEOUT], 0);
    advance(&e, 1);
    assert_int_equal(e.ev[TXN_EV_TIMEOUT], 1);
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 1);
    while (peer_next(&e, &g)) /* A's INVITEs and E's OPTIONS so far */
        assert_true(g.m.method == SIP_METHOD_INVITE ||
                    g.m.method == SIP_METHOD_OPTIONS);
    advance(&e, 64 * T1); /* OPTIONS: F */
    while (peer_next(&e, &g))
        assert_int_equal(g.m.method, SIP_METHOD_OPTIONS);
    assert_int_equal(txn_count(e.tt), 0);
    buf_fini(&inv);
    buf_fini(&opt);
    arena_fini(&g.a);
    env_fini(&e);
}

/* An INVITE client in Proceeding whose next hop is gone (a cluster node
 * declared down): txn_client_abandon ends it at once, without sending
 * anything; a late response no longer matches. */
static void
test_invite_client_abandon(void **state)
{
    struct env e;
    struct buf inv;
    char bi[TXN_BRANCH_MAX];
    struct txn *t = NULL;
    static struct got g;

    env_init(&e);
    arena_init(&g.a, SIP_MSG_ARENA_CAP);
    make_request(&e, &inv, "INVITE", bi);
    struct tp_dest d = to_peer(&e);
    assert_int_equal(
        txn_client_start(e.tt, buf_slice(&inv), &d, on_event, &e, &t), 0);
    assert_true(peer_next(&e, &g));
    peer_reply(&e, &g.m, 180);
    assert_int_equal(e.ev[TXN_EV_RESPONSE], 1);
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 0);
    txn_client_abandon(t);
    assert_int_equal(e.ev[TXN_EV_TRANSPORT_ERROR], 1);
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 1);
    assert_nothing_sent(&e);
    peer_reply(&e, &g.m, 200);
    assert_int_equal(e.unmatched, 1);
    assert_int_equal(e.ev[TXN_EV_RESPONSE], 1);
    buf_fini(&inv);
    arena_fini(&g.a);
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
    assert_true(peer_next(&e, &g));
    assert_int_equal(g.m.status, 200);
    assert_true(slice_eq_cstr(g.m.to.tag, "srvtag"));
    assert_int_equal(e.requests, 1);
    peer_send(&e, req, n);
    assert_true(peer_next(&e, &g));
    assert_int_equal(g.m.status, 200);
    assert_int_equal(e.requests, 1); /* absorbed */
    assert_non_null(e.last_server);
    assert_int_equal(txn_state(e.last_server), TXN_COMPLETED);
    assert_int_equal(
        txn_reply(e.last_server, 500, "x", SLICE_NULL, SLICE_NULL, SLICE_NULL),
        -EALREADY);
    advance(&e, 64 * T1 - 1);
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 0);
    advance(&e, 1); /* J = 64*T1 */
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 1);
    assert_null(e.last_server);
    assert_nothing_sent(&e);
    /* Same request after the transaction ended: a new transaction. */
    peer_send(&e, req, n);
    assert_true(peer_next(&e, &g));
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
    peer_send(&e, req, n);
    assert_int_equal(e.requests, 1);
    advance(&e, TRYING - 1);
    assert_nothing_sent(&e);
    advance(&e, 1);
    assert_true(peer_next(&e, &g));
    assert_int_equal(g.m.status, 100);
    /* Retransmitted INVITE: the 100 is sent again, no new request. */
    peer_send(&e, req, n);
    assert_true(peer_next(&e, &g));
    assert_int_equal(g.m.status, 100);
    assert_int_equal(e.requests, 1);

    n = peer_request(req, sizeof(req), "CANCEL", "z9hG4bKinv1", "CANCEL");
    peer_send(&e, req, n);
    assert_int_equal(e.ev[TXN_EV_CANCELLED], 1);
    int got200 = 0, got487 = 0;
    uint64_t at487[8];
    uint64_t t0 = e.now;
    advance(&e, 8 * T1);
    while (peer_next(&e, &g)) {
        if (g.m.status == 200 && g.m.cseq.method == SIP_METHOD_CANCEL)
            got200++;
        else if (g.m.status == 487 && got487 < 8)
            at487[got487++] = g.at_ms - t0;
        else
            fail_msg("unexpected %d", g.m.status);
    }
    assert_int_equal(got200, 1);
    /* G: 0, then T1 doubling, capped at T2: 20, 60, 140. */
    assert_int_equal(got487, 4);
    assert_int_equal(at487[0], 0);
    assert_int_equal(at487[1], T1);
    assert_int_equal(at487[2], 3 * T1);
    assert_int_equal(at487[3], 3 * T1 + T2);
    assert_int_equal(e.requests, 1); /* CANCEL did not reach the TU */

    n = peer_request(req, sizeof(req), "ACK", "z9hG4bKinv1", "ACK");
    peer_send(&e, req, n);
    assert_int_equal(e.stateless, 0); /* the ACK was absorbed */
    advance(&e, T4 - 1);
    assert_nothing_sent(&e); /* G stopped */
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 0);
    advance(&e, 1); /* I = T4 */
    /* The INVITE ended (the CANCEL's own transaction has no TU). */
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 1);
    assert_int_equal(e.ev[TXN_EV_TIMEOUT], 0);
    assert_int_equal(txn_count(e.tt), 1); /* the CANCEL's, until J */

    /* ACK for a 2xx: new branch, matches nothing, goes up statelessly. */
    n = peer_request(req, sizeof(req), "ACK", "z9hG4bKack2xx", "ACK");
    peer_send(&e, req, n);
    assert_int_equal(e.stateless, 1);
    /* CANCEL for nothing: a new server transaction for the TU (481). */
    n = peer_request(req, sizeof(req), "CANCEL", "z9hG4bKnone", "CANCEL");
    peer_send(&e, req, n);
    assert_int_equal(e.requests, 2);
    arena_fini(&g.a);
    env_fini(&e);
}

/* INVITE server: 2xx → Accepted; the retransmitted INVITE is absorbed;
 * timer H fires when a non-2xx is never ACKed, G retransmitting it until
 * then. */
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
    assert_true(peer_next(&e, &g));
    assert_int_equal(g.m.status, 200);
    struct txn *t = e.last_server;
    assert_int_equal(txn_state(t), TXN_ACCEPTED);
    /* Accepted keeps only the matching keys: no request copy (RFC 6026:
     * it absorbs the INVITE, passes ACKs up, sends the TU's 2xx). */
    assert_true(e.req_after_reply);
    assert_null(txn_request(t));
    char ok[4096];
    size_t ok_len = g.len;
    memcpy(ok, g.buf, g.len);
    peer_send(&e, req, n);
    assert_nothing_sent(&e); /* absorbed */
    advance(&e, TRYING);
    assert_nothing_sent(&e); /* no 100 either */
    /* the TU's own 2xx retransmission is sent (txn_respond: the request
     * copy it would be built from is gone) */
    assert_int_equal(
        txn_reply(t, 200, "OK", SLICE_LIT("srvtag"), SLICE_NULL, SLICE_NULL),
        -EALREADY);
    assert_int_equal(txn_respond(t, 200, slice_make(ok, ok_len)), 0);
    assert_true(peer_next(&e, &g));
    assert_int_equal(g.m.status, 200);
    peer_send(&e, req, n);
    assert_nothing_sent(&e); /* still absorbed */
    /* ACK with the INVITE's branch in Accepted goes to the TU. */
    n = peer_request(req, sizeof(req), "ACK", "z9hG4bKacc", "ACK");
    peer_send(&e, req, n);
    assert_int_equal(e.stateless, 1);

    /* Second INVITE answered 486 and never ACKed: H. */
    e.reply_at_once = false;
    n = peer_request(req, sizeof(req), "INVITE", "z9hG4bKnoack", "INVITE");
    peer_send(&e, req, n);
    assert_int_equal(e.requests, 2);
    uint64_t t0 = e.now;
    assert_int_equal(txn_reply(e.last_server, 486, "Busy Here",
                               SLICE_LIT("srvtag"), SLICE_NULL, SLICE_NULL),
                     0);
    collect(&e);
    advance(&e, 64 * T1 - 1);
    assert_int_equal(e.ev[TXN_EV_TIMEOUT], 0);
    /* L of the first (armed TRYING ms earlier) ended it. */
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 1);
    /* The 486 at 0, G's retransmissions at 20, 60, then every T2 from
     * 140 to 1260. */
    int n486 = 0;
    while (peer_next(&e, &g)) {
        static const uint64_t first[] = {0, T1, 3 * T1};
        uint64_t want =
            n486 < 3 ? first[n486] : 7 * T1 + (uint64_t)(n486 - 3) * T2;
        assert_int_equal(g.m.status, 486);
        assert_int_equal(g.at_ms - t0, want);
        n486++;
    }
    assert_int_equal(n486, 3 + 15);
    advance(&e, 1); /* H = 64*T1 */
    assert_int_equal(e.ev[TXN_EV_TIMEOUT], 1);
    assert_int_equal(e.ev[TXN_EV_TERMINATED], 2);
    assert_nothing_sent(&e);
    arena_fini(&g.a);
    env_fini(&e);
}

/* Many non-INVITE server transactions: the table grows past its first
 * 1024 buckets (and shrinks back once they are gone), each transaction drops its request copy once the loop
 * turned after the final (txn_request() NULL), and a retransmission of
 * any of them still gets its own stored response. The clock stands still
 * meanwhile, so however slow the machine, J ends none of them early. */
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
        assert_true(peer_next(&e, &g));
        assert_int_equal(g.m.status, 200);
        if (i == 0) {
            /* Still valid in the iteration that sent the final... */
            assert_true(e.req_after_reply);
            /* ...released after it. */
            assert_non_null(e.last_server);
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
        assert_true(peer_next(&e, &g));
        assert_int_equal(g.m.status, 200);
        assert_true(slice_eq_cstr(g.m.via.branch, br));
    }
    assert_int_equal(e.requests, N);
    /* Same branch, other method or other sent-by: new transactions. */
    size_t n = peer_request(req, sizeof(req), "INFO", "z9hG4bKmany7", "INFO");
    peer_send(&e, req, n);
    assert_true(peer_next(&e, &g));
    assert_int_equal(e.requests, N + 1);
    char *port = strstr(req, ":5999");
    assert_non_null(port);
    memcpy(port, ":5998", 5);
    peer_send(&e, req, n);
    assert_true(peer_next(&e, &g));
    assert_int_equal(e.requests, N + 2);
    /* The server table grew past its 1024 buckets (the client one did
     * not). */
    assert_true(txn_table_buckets(e.tt) >= 1024 + 4096);
    /* Timer J ends them all, at 64*T1 and not before. */
    advance(&e, 64 * T1 - 1);
    assert_int_equal(txn_count(e.tt), N + 2);
    advance(&e, 1);
    assert_int_equal(txn_count(e.tt), 0);
    /* After the peak the tables are back to their first size. */
    assert_int_equal(txn_table_buckets(e.tt), 1024 + 1024);
    assert_int_equal(e.ev[TXN_EV_TERMINATED], N + 2);
    assert_nothing_sent(&e);
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
    assert_true(peer_next(&e, &g));
    assert_null(txn_request(e.last_server));
    peer_send(&e, req, n);
    assert_true(peer_next(&e, &g));
    assert_int_equal(g.m.status, 200);
    assert_int_equal(e.requests, 1);
    char *cseq = strstr(req, "CSeq: 7");
    assert_non_null(cseq);
    cseq[6] = '8';
    peer_send(&e, req, n);
    assert_true(peer_next(&e, &g));
    assert_int_equal(e.requests, 2);

    e.reply_at_once = false;
    n = peer_request(req, sizeof(req), "INVITE", "z9hG4bKbusy", "INVITE");
    peer_send(&e, req, n);
    assert_int_equal(e.requests, 3);
    struct txn *inv = e.last_server;
    assert_non_null(txn_request(inv));
    assert_int_equal(txn_reply(inv, 486, "Busy Here", SLICE_LIT("srvtag"),
                               SLICE_NULL, SLICE_NULL),
                     0);
    assert_true(peer_next(&e, &g));
    assert_int_equal(g.m.status, 486);
    turn(&e);
    assert_null(txn_request(inv));
    peer_send(&e, req, n); /* retransmitted INVITE: 486 again */
    assert_true(peer_next(&e, &g));
    assert_int_equal(g.m.status, 486);
    advance(&e, T1); /* G */
    assert_true(peer_next(&e, &g));
    assert_int_equal(g.m.status, 486);
    n = peer_request(req, sizeof(req), "ACK", "z9hG4bKbusy", "ACK");
    peer_send(&e, req, n);
    assert_int_equal(txn_state(inv), TXN_CONFIRMED);
    assert_int_equal(e.stateless, 0);
    advance(&e, 4 * T1);
    assert_nothing_sent(&e); /* G stopped */
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

/* A freed transaction goes to the table's spares and the next one reuses
 * its memory (txn.c "Spares"): the new one must start clean. The old one
 * sent a 180 (stored response), took a status and a TU context, and was
 * answered 486 statelessly (terminated with all that set); the spare is
 * poisoned in the sanitizer build. The new INVITE must get the automatic
 * 100 (no status left over), and its retransmission before any response
 * must get nothing (no stored 180 left over: Proceeding resends the last
 * response it sent itself). */
static void
test_spare_reuse_is_clean(void **state)
{
    struct env e;
    char req[1024];
    size_t n;
    struct txn *old, *t;
    static struct got g;

    env_init(&e);
    arena_init(&g.a, SIP_MSG_ARENA_CAP);
    n = peer_request(req, sizeof(req), "INVITE", "z9hG4bKspare-old", "INVITE");
    peer_send(&e, req, n);
    old = e.last_server;
    assert_non_null(old);
    assert_int_equal(txn_reply(old, 180, "Ringing", SLICE_LIT("srvtag"),
                               SLICE_NULL, SLICE_NULL),
                     0);
    turn(&e);
    assert_true(peer_next(&e, &g));
    assert_int_equal(g.m.status, 180);
    assert_int_equal(txn_reply_stateless(old, 486, "Busy Here",
                                         SLICE_LIT("srvtag"), SLICE_NULL),
                     0);
    turn(&e); /* freed: to the spares */
    assert_true(peer_next(&e, &g));
    assert_int_equal(g.m.status, 486);
    assert_int_equal(txn_count(e.tt), 0);

    n = peer_request(req, sizeof(req), "INVITE", "z9hG4bKspare-new", "INVITE");
    peer_send(&e, req, n);
    t = e.last_server;
    assert_ptr_equal(t, old); /* the spare was reused */
    assert_int_equal(txn_kind(t), TXN_INVITE_SERVER);
    assert_int_equal(txn_state(t), TXN_PROCEEDING);
    assert_int_equal(txn_status(t), 0);
    assert_ptr_equal(txn_arg(t), &e);
    assert_non_null(txn_request(t));
    assert_true(slice_eq_cstr(txn_request(t)->via.branch, "z9hG4bKspare-new"));
    assert_int_equal(txn_count(e.tt), 1);
    /* A retransmission before any response: nothing to resend. */
    peer_send(&e, req, n);
    assert_nothing_sent(&e);
    /* The automatic 100 comes, as for any fresh INVITE. */
    advance(&e, TRYING);
    assert_true(peer_next(&e, &g));
    assert_int_equal(g.m.status, 100);
    assert_true(slice_eq_cstr(g.m.via.branch, "z9hG4bKspare-new"));
    assert_nothing_sent(&e);
    arena_fini(&g.a);
    env_fini(&e);
}

/* The spares are bounded: 200 transactions end together (Timer J), 128
 * structs are kept and the rest freed; a new request takes one. UDP
 * non-INVITE servers hand their body back when compacted, so one body
 * serves them all in turn. */
static void
test_spares_bounded(void **state)
{
    enum { N = 200, MAX = 128 };
    struct env e;
    char req[1024], br[32];
    size_t structs, bodies;
    static struct got g;

    env_init(&e);
    arena_init(&g.a, SIP_MSG_ARENA_CAP);
    e.reply_at_once = true;
    for (int i = 0; i < N; i++) {
        snprintf(br, sizeof(br), "z9hG4bKbound%d", i);
        size_t n = peer_request(req, sizeof(req), "OPTIONS", br, "OPTIONS");
        peer_send(&e, req, n);
        assert_true(peer_next(&e, &g));
        assert_int_equal(g.m.status, 200);
    }
    assert_int_equal(txn_count(e.tt), N);
    txn_table_spares(e.tt, &structs, &bodies);
    assert_int_equal(structs, 0);
    assert_int_equal(bodies, 1);
    advance(&e, 64 * T1); /* J */
    assert_int_equal(txn_count(e.tt), 0);
    txn_table_spares(e.tt, &structs, &bodies);
    assert_int_equal(structs, MAX);
    assert_int_equal(bodies, 1);
    size_t n = peer_request(req, sizeof(req), "OPTIONS", "z9hG4bKbound-new",
                            "OPTIONS");
    peer_send(&e, req, n);
    assert_true(peer_next(&e, &g));
    assert_int_equal(g.m.status, 200);
    txn_table_spares(e.tt, &structs, &bodies);
    assert_int_equal(structs, MAX - 1);
    arena_fini(&g.a);
    env_fini(&e);
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
        cmocka_unit_test(test_invite_client_abandon),
        cmocka_unit_test(test_invite_client_cancel_unanswered),
        cmocka_unit_test(test_invite_client_timer_c_cancels),
        cmocka_unit_test(test_invite_client_timer_c_no_provisional),
        cmocka_unit_test(test_server_absorbs_retransmission),
        cmocka_unit_test(test_invite_server_cancel),
        cmocka_unit_test(test_invite_server_accepted_and_h),
        cmocka_unit_test(test_table_free_terminates),
        cmocka_unit_test(test_server_many_compacted),
        cmocka_unit_test(test_server_rfc2543_compacted),
        cmocka_unit_test(test_spare_reuse_is_clean),
        cmocka_unit_test(test_spares_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
