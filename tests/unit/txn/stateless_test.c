/*
 * stateless_test: txn_reply_stateless, the stateless answer a TU gives a
 * request it refuses without keeping state (the proxy's 407 to an INVITE
 * without credentials, [hardening] item 10). On a real loop with T1 =
 * 20 ms: our side a tp on 127.0.0.1:0 with a txn table, the peer a plain
 * UDP socket. Checked: one response and no retransmission up to timer H,
 * no transaction left (txn_count), the TU told TERMINATED, the ACK for
 * the response reaching the TU with t == NULL, and a retransmitted
 * request handled as a new one.
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

struct env {
    uv_loop_t loop;
    struct tp *tp;
    struct txn_table *tt;
    struct tp_addr ours;
    int peer;
    int requests;   /* on_request with a transaction */
    int acks;       /* on_request with t == NULL */
    int terminated; /* TXN_EV_TERMINATED */
    int rc;         /* txn_reply_stateless's result */
};

static void
on_event(struct txn *t, enum txn_event ev, const struct sip_msg *rsp, void *arg)
{
    struct env *e = arg;

    (void)t;
    (void)rsp;
    if (ev == TXN_EV_TERMINATED)
        e->terminated++;
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
        e->acks++;
        return;
    }
    e->requests++;
    txn_set_cb(t, on_event, e);
    /* Only non-2xx finals; the transaction stays as it was. */
    assert_int_equal(txn_reply_stateless(t, 180, NULL, SLICE_NULL, SLICE_NULL),
                     -EINVAL);
    assert_int_equal(txn_reply_stateless(t, 200, NULL, SLICE_NULL, SLICE_NULL),
                     -EINVAL);
    assert_int_not_equal(txn_state(t), TXN_TERMINATED);
    e->rc = txn_reply_stateless(t, 407, NULL, SLICE_LIT("sltag"),
                                SLICE_LIT("Proxy-Authenticate: Digest "
                                          "realm=\"x\", nonce=\"n\"\r\n"));
    /* The request stays readable until the loop iteration ends. */
    assert_non_null(txn_request(t));
    assert_int_equal(txn_state(t), TXN_TERMINATED);
}

static void
on_recv(struct tp *tp, const struct tp_rx *rx, void *arg)
{
    struct env *e = arg;

    (void)tp;
    if (!rx->err)
        (void)txn_recv(e->tt, rx);
}

static void
env_init(struct env *e)
{
    struct tp_cfg cfg;
    struct txn_cfg tc;
    struct tp_listen_spec sp;
    size_t n;

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
    tc.timers.t2_ms = 4 * T1;
    tc.timers.t4_ms = 50;
    tc.on_request = on_request;
    tc.arg = e;
    assert_int_equal(txn_table_new(e->tp, &tc, &e->tt), 0);
    e->peer = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(e->peer, (struct sockaddr *)&a, sizeof(a)), 0);
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

/* Datagrams the peer receives within ms (running our loop meanwhile);
 * the first one is kept in first (cap bytes). */
static int
peer_count(struct env *e, int ms, char *first, size_t cap)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    int n = 0;

    while (now_ms() < end) {
        struct pollfd p = {.fd = e->peer, .events = POLLIN};
        char buf[4096];
        uv_run(&e->loop, UV_RUN_NOWAIT);
        if (poll(&p, 1, 1) != 1)
            continue;
        ssize_t got = recv(e->peer, buf, sizeof(buf) - 1, 0);
        assert_true(got > 0);
        if (n == 0 && first) {
            size_t k = (size_t)got < cap - 1 ? (size_t)got : cap - 1;
            memcpy(first, buf, k);
            first[k] = '\0';
        }
        n++;
    }
    return n;
}

static void
peer_send(struct env *e, const char *method, const char *to_tag)
{
    char b[1024];
    int n = snprintf(b, sizeof(b),
                     "%s sip:200@127.0.0.1 SIP/2.0\r\n"
                     "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKsl1\r\n"
                     "Max-Forwards: 70\r\n"
                     "From: <sip:100@example.com>;tag=peerfrom\r\n"
                     "To: <sip:200@example.com>%s%s\r\n"
                     "Call-ID: stateless@test\r\n"
                     "CSeq: 1 %s\r\n"
                     "Content-Length: 0\r\n\r\n",
                     method, to_tag ? ";tag=" : "", to_tag ? to_tag : "",
                     method);
    assert_true(n > 0 && (size_t)n < sizeof(b));
    assert_int_equal(sendto(e->peer, b, (size_t)n, 0, &e->ours.u.sa,
                            e->ours.len),
                     n);
}

/* An INVITE refused statelessly: one 407 in 64*T1 + margin (a stateful
 * one would come again at T1, 3*T1, ...), no transaction left, TU told. */
static void
test_invite_answered_once(void **state)
{
    struct env e;
    char rsp[4096];

    (void)state;
    env_init(&e);
    peer_send(&e, "INVITE", NULL);
    assert_int_equal(peer_count(&e, 64 * T1 + 300, rsp, sizeof(rsp)), 1);
    assert_int_equal(e.requests, 1);
    assert_int_equal(e.rc, 0);
    assert_int_equal(e.terminated, 1);
    assert_int_equal(txn_count(e.tt), 0);
    assert_non_null(strstr(rsp, "SIP/2.0 407 "));
    assert_non_null(strstr(rsp, ";tag=sltag\r\n"));
    assert_non_null(strstr(rsp, "Proxy-Authenticate: Digest"));
    assert_null(strstr(rsp, "SIP/2.0 100 ")); /* no 100 Trying first */

    /* Its ACK matches nothing: the TU gets it statelessly. */
    peer_send(&e, "ACK", "sltag");
    assert_int_equal(peer_count(&e, 50, NULL, 0), 0);
    assert_int_equal(e.acks, 1);

    /* A retransmission of the INVITE is a new request: a new answer. */
    peer_send(&e, "INVITE", NULL);
    assert_int_equal(peer_count(&e, 100, NULL, 0), 1);
    assert_int_equal(e.requests, 2);
    assert_int_equal(txn_count(e.tt), 0);
    env_fini(&e);
}

/* Non-INVITE too: no timer J state. */
static void
test_non_invite(void **state)
{
    struct env e;

    (void)state;
    env_init(&e);
    peer_send(&e, "MESSAGE", NULL);
    assert_int_equal(peer_count(&e, 100, NULL, 0), 1);
    assert_int_equal(e.rc, 0);
    assert_int_equal(txn_count(e.tt), 0);
    env_fini(&e);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invite_answered_once),
        cmocka_unit_test(test_non_invite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
