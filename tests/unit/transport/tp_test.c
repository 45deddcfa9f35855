/*
 * tp_test: the transport on a real libuv loop bound to 127.0.0.1:0 (and
 * ::1 when the machine has it), talking to plain POSIX sockets that play
 * the peer. Every test counts callbacks, frees the tp, runs the loop until
 * no handle is left and checks uv_loop_close() succeeds.
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
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "transport/tp.h"
#include "transport/tp_int.h"

#define OPTIONS_MSG(branch)                                                    \
    "OPTIONS sip:100@127.0.0.1 SIP/2.0\r\n"                                    \
    "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=" branch "\r\n"                    \
    "Max-Forwards: 70\r\n"                                                     \
    "From: <sip:a@example.com>;tag=1928301774\r\n"                             \
    "To: <sip:b@example.com>\r\n"                                              \
    "Call-ID: a84b4c76e66710@pc33\r\n"                                         \
    "CSeq: 63104 OPTIONS\r\n"                                                  \
    "Content-Length: 0\r\n"                                                    \
    "\r\n"

struct ctx {
    uv_loop_t loop;
    struct tp *tp;
    int recv_count;
    int parse_errors;
    char last_method[32];
    char last_branch[64];
    struct tp_src last_src;
    int closed_count;
    uint64_t closed_flow;
    int closed_status;
    uint64_t closed_flows[8]; /* the first 8 closes, in order */
    int closed_statuses[8];
};

static void
on_recv(struct tp *tp, const struct tp_rx *rx, void *arg)
{
    struct ctx *c = arg;

    (void)tp;
    c->recv_count++;
    c->last_src = rx->src;
    if (rx->err) {
        c->parse_errors++;
        return;
    }
    slice_to_cstr(rx->msg->method_name, c->last_method, sizeof(c->last_method));
    slice_to_cstr(rx->msg->via.branch, c->last_branch, sizeof(c->last_branch));
}

static void
on_closed(struct tp *tp, uint64_t flow, int status, void *arg)
{
    struct ctx *c = arg;

    (void)tp;
    if (c->closed_count < 8) {
        c->closed_flows[c->closed_count] = flow;
        c->closed_statuses[c->closed_count] = status;
    }
    c->closed_count++;
    c->closed_flow = flow;
    c->closed_status = status;
}

/* A tp on c's loop with cfg's limits and c's callbacks. */
static struct tp *
tp_with(struct ctx *c, const struct tp_cfg *base)
{
    struct tp_cfg cfg = *base;
    struct tp *tp;

    cfg.on_recv = on_recv;
    cfg.on_flow_closed = on_closed;
    cfg.arg = c;
    assert_int_equal(tp_new(&c->loop, &cfg, &tp), 0);
    return tp;
}

static void
ctx_init_cfg(struct ctx *c, const struct tp_cfg *cfg)
{
    memset(c, 0, sizeof(*c));
    assert_int_equal(uv_loop_init(&c->loop), 0);
    c->tp = tp_with(c, cfg);
}

static void
ctx_init(struct ctx *c, size_t max_conns)
{
    struct tp_cfg cfg;

    tp_cfg_defaults(&cfg);
    if (max_conns)
        cfg.max_conns = max_conns;
    ctx_init_cfg(c, &cfg);
}

static void
ctx_fini(struct ctx *c)
{
    tp_free(c->tp);
    assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&c->loop), 0);
}

static void
on_tick(uv_timer_t *t)
{
    (void)t;
}

/* Run the loop until *counter >= want or ms elapsed. */
static void
run_until(struct ctx *c, const int *counter, int want, int ms)
{
    uv_timer_t tick;
    uint64_t end;

    uv_timer_init(&c->loop, &tick);
    uv_timer_start(&tick, on_tick, 5, 5);
    uv_update_time(&c->loop);
    end = uv_now(&c->loop) + (uint64_t)ms;
    while ((counter == NULL || *counter < want) && uv_now(&c->loop) < end)
        uv_run(&c->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&c->loop, UV_RUN_NOWAIT);
}

static struct tp_listen_spec
spec_of(const char *s)
{
    struct tp_listen_spec sp[1];
    size_t n = 0;

    assert_int_equal(tp_listen_spec_parse(s, sp, 1, &n, NULL, 0), 0);
    assert_int_equal(n, 1);
    return sp[0];
}

static int
listen_on(struct ctx *c, const char *s, struct tp_addr *bound)
{
    struct tp_listen_spec sp = spec_of(s), got;
    char err[128];
    int idx = tp_listen(c->tp, &sp, err, sizeof(err));

    if (idx < 0)
        return idx;
    assert_int_equal(tp_listener(c->tp, (size_t)idx, &got), 0);
    assert_int_not_equal(tp_addr_port(&got.addr), 0);
    *bound = got.addr;
    return idx;
}

static int
tcp_client(const struct tp_addr *to)
{
    int fd = socket(to->u.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    assert_int_equal(connect(fd, &to->u.sa, to->len), 0);
    return fd;
}

/* A TCP client whose source address is from (e.g. "127.0.0.2"). */
static int
tcp_client_from(const struct tp_addr *to, const char *from)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};

    assert_true(fd >= 0);
    assert_int_equal(inet_pton(AF_INET, from, &sin.sin_addr), 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(connect(fd, &to->u.sa, to->len), 0);
    return fd;
}

/* Read up to cap bytes within ms; returns bytes (0 = EOF), -1 timeout. */
static ssize_t
read_wait(struct ctx *c, int fd, char *buf, size_t cap, int ms)
{
    for (int waited = 0; waited < ms; waited += 5) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        uv_run(&c->loop, UV_RUN_NOWAIT);
        if (poll(&p, 1, 5) == 1)
            return recv(fd, buf, cap, 0);
    }
    return -1;
}

static void
write_all(int fd, const char *s, size_t n)
{
    assert_int_equal(write(fd, s, n), (ssize_t)n);
}

/* ------------------------------------------------------------------------ */

static void
test_spec_parse(void **state)
{
    struct tp_listen_spec sp[4];
    size_t n = 0;
    char err[128], buf[80];

    assert_int_equal(tp_listen_spec_parse("udp:0.0.0.0:5060 tcp:[::1]:5061", sp,
                                          4, &n, err, sizeof(err)),
                     0);
    assert_int_equal(n, 2);
    assert_int_equal(sp[0].proto, TP_UDP);
    assert_int_equal(sp[1].proto, TP_TCP);
    assert_int_equal(tp_addr_port(&sp[1].addr), 5061);
    assert_int_equal(sp[1].addr.u.sa.sa_family, AF_INET6);
    assert_string_equal(tp_listen_spec_format(&sp[1], buf, sizeof(buf)),
                        "tcp:[::1]:5061");
    assert_string_equal(tp_listen_spec_format(&sp[0], buf, sizeof(buf)),
                        "udp:0.0.0.0:5060");
    assert_int_equal(
        tp_listen_spec_parse("tls:1.2.3.4:5061", sp, 4, &n, err, sizeof(err)),
        0);
    assert_int_equal(sp[0].proto, TP_TLS);
    assert_string_equal(tp_listen_spec_format(&sp[0], buf, sizeof(buf)),
                        "tls:1.2.3.4:5061");
    assert_int_equal(
        tp_listen_spec_parse("sctp:1.2.3.4:5061", sp, 4, &n, err, sizeof(err)),
        -EINVAL);
    assert_non_null(strstr(err, "sctp:1.2.3.4:5061"));
    assert_int_equal(
        tp_listen_spec_parse("udp:1.2.3.4", sp, 4, &n, err, sizeof(err)),
        -EINVAL);
    assert_int_equal(
        tp_listen_spec_parse("udp:1.2.3.4:70000", sp, 4, &n, err, sizeof(err)),
        -EINVAL);
    assert_int_equal(tp_listen_spec_parse("udp:host.example:5060", sp, 4, &n,
                                          err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(tp_listen_spec_parse("   ", sp, 4, &n, err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(tp_listen_spec_parse("udp:1.1.1.1:1 udp:1.1.1.1:2", sp, 1,
                                          &n, err, sizeof(err)),
                     -E2BIG);
    struct tp_addr a;
    assert_int_equal(tp_addr_parse(SLICE_LIT("::1"), true, &a), 0);
    assert_int_equal(a.u.sa.sa_family, AF_INET6);
    assert_int_equal(tp_addr_port(&a), 0);
}

static void
test_udp_recv_and_reply(void **state)
{
    struct ctx c;
    struct tp_addr bound, cli;
    socklen_t clen = sizeof(cli.u);
    char buf[2048];

    ctx_init(&c, 0);
    assert_true(listen_on(&c, "udp:127.0.0.1:0", &bound) >= 0);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in any = {.sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&any, sizeof(any)), 0);
    assert_int_equal(getsockname(fd, &cli.u.sa, &clen), 0);

    static const char msg[] = OPTIONS_MSG("z9hG4bKudp1");
    assert_int_equal(
        sendto(fd, msg, sizeof(msg) - 1, 0, &bound.u.sa, bound.len),
        (ssize_t)sizeof(msg) - 1);
    /* A keep-alive datagram and a STUN-looking one are not messages. */
    sendto(fd, "\r\n\r\n", 4, 0, &bound.u.sa, bound.len);
    sendto(fd, "\x00\x01\x00\x00", 4, 0, &bound.u.sa, bound.len);
    run_until(&c, &c.recv_count, 1, 2000);
    run_until(&c, NULL, 0, 50);
    assert_int_equal(c.recv_count, 1);
    assert_int_equal(c.parse_errors, 0);
    assert_string_equal(c.last_method, "OPTIONS");
    assert_string_equal(c.last_branch, "z9hG4bKudp1");
    assert_int_equal(c.last_src.proto, TP_UDP);
    assert_int_equal(c.last_src.flow_id, 0);
    assert_true(tp_addr_equal(&c.last_src.remote, &cli));
    assert_true(tp_addr_equal(&c.last_src.local, &bound));
    assert_false(tp_flow_alive(c.tp, 0));

    /* Reply goes back to the packet's source (force_rport). */
    struct tp_dest d;
    tp_dest_reply(&c.last_src, &d);
    assert_int_equal(
        tp_send(c.tp, &d, SLICE_LIT("SIP/2.0 200 OK\r\n\r\n"), NULL), 0);
    ssize_t n = read_wait(&c, fd, buf, sizeof(buf), 1000);
    assert_int_equal(n, 18);
    assert_memory_equal(buf, "SIP/2.0 200 OK", 14);

    /* A malformed request is passed up with the parse error. */
    static const char bad[] =
        "OPTIONS sip:x SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKb\r\n"
        "\r\n";
    sendto(fd, bad, sizeof(bad) - 1, 0, &bound.u.sa, bound.len);
    /* A malformed response is dropped. */
    sendto(fd, "SIP/2.0 200 OK\r\n\r\n", 18, 0, &bound.u.sa, bound.len);
    run_until(&c, &c.recv_count, 2, 2000);
    run_until(&c, NULL, 0, 50);
    assert_int_equal(c.recv_count, 2);
    assert_int_equal(c.parse_errors, 1);

    struct tp_stats st;
    tp_stats_get(c.tp, &st);
    assert_int_equal(st.rx_dropped, 2);
    assert_int_equal(st.tx_msgs, 1);
    close(fd);
    ctx_fini(&c);
}

static void
test_tcp_framing_split_and_batched(void **state)
{
    struct ctx c;
    struct tp_addr bound;
    static const char m1[] = OPTIONS_MSG("z9hG4bKtcp1");
    static const char m2[] = OPTIONS_MSG("z9hG4bKtcp2");
    static const char m3[] = OPTIONS_MSG("z9hG4bKtcp3");
    char two[2 * sizeof(m2)];

    ctx_init(&c, 0);
    assert_true(listen_on(&c, "tcp:127.0.0.1:0", &bound) >= 0);
    int fd = tcp_client(&bound);
    /* One message split over three writes with loop turns in between. */
    size_t len = sizeof(m1) - 1;
    write_all(fd, m1, 10);
    run_until(&c, NULL, 0, 30);
    write_all(fd, m1 + 10, 100);
    run_until(&c, NULL, 0, 30);
    assert_int_equal(c.recv_count, 0);
    write_all(fd, m1 + 110, len - 110);
    run_until(&c, &c.recv_count, 1, 2000);
    assert_int_equal(c.recv_count, 1);
    assert_string_equal(c.last_branch, "z9hG4bKtcp1");
    assert_int_equal(c.last_src.proto, TP_TCP);
    uint64_t flow = c.last_src.flow_id;
    assert_true(flow != 0);
    assert_int_equal(tp_flow_worker(flow), 0);
    assert_true(tp_flow_alive(c.tp, flow));
    assert_int_equal(tp_conn_count(c.tp), 1);

    /* Two messages in one write, the second followed by half a third. */
    size_t l2 = sizeof(m2) - 1, l3 = sizeof(m3) - 1;
    memcpy(two, m2, l2);
    memcpy(two + l2, m2, l2);
    write_all(fd, two, 2 * l2);
    run_until(&c, &c.recv_count, 3, 2000);
    assert_int_equal(c.recv_count, 3);
    write_all(fd, m3, l3 / 2);
    run_until(&c, NULL, 0, 30);
    assert_int_equal(c.recv_count, 3);
    write_all(fd, m3 + l3 / 2, l3 - l3 / 2);
    run_until(&c, &c.recv_count, 4, 2000);
    assert_string_equal(c.last_branch, "z9hG4bKtcp3");
    assert_int_equal(c.last_src.flow_id, flow);

    /* Reply over the same connection. */
    struct tp_dest d;
    char buf[256];
    tp_dest_reply(&c.last_src, &d);
    assert_int_equal(tp_send(c.tp, &d,
                             SLICE_LIT("SIP/2.0 200 OK\r\n"
                                       "Content-Length: 0\r\n\r\n"),
                             NULL),
                     0);
    ssize_t n = read_wait(&c, fd, buf, sizeof(buf), 1000);
    assert_true(n > 0);
    assert_memory_equal(buf, "SIP/2.0 200 OK", 14);

    /* Peer closes: the flow dies, once, and its id stays dead. */
    close(fd);
    run_until(&c, &c.closed_count, 1, 2000);
    assert_int_equal(c.closed_count, 1);
    assert_true(c.closed_flow == flow);
    assert_false(tp_flow_alive(c.tp, flow));
    assert_int_equal(tp_conn_count(c.tp), 0);
    assert_int_equal(tp_flow_close(c.tp, flow), -ENOENT);

    /* A new connection never gets the old id. */
    fd = tcp_client(&bound);
    write_all(fd, m1, len);
    run_until(&c, &c.recv_count, 5, 2000);
    assert_true(c.last_src.flow_id != flow);
    assert_true(tp_flow_alive(c.tp, c.last_src.flow_id));
    /* Sending on the dead flow without an address fails cleanly. */
    struct tp_dest dead = {.proto = TP_TCP, .flow_id = flow};
    assert_int_equal(tp_send(c.tp, &dead, SLICE_LIT("x"), NULL), -ENOTCONN);
    close(fd);
    ctx_fini(&c);
}

static void
test_tcp_ping_pong(void **state)
{
    struct ctx c;
    struct tp_addr bound;
    char buf[16];

    ctx_init(&c, 0);
    assert_true(listen_on(&c, "tcp:127.0.0.1:0", &bound) >= 0);
    int fd = tcp_client(&bound);
    write_all(fd, "\r\n\r\n", 4);
    ssize_t n = read_wait(&c, fd, buf, sizeof(buf), 2000);
    assert_int_equal(n, 2);
    assert_memory_equal(buf, "\r\n", 2);
    /* A ping split in two halves is answered once it is whole. */
    write_all(fd, "\r\n", 2);
    assert_int_equal(read_wait(&c, fd, buf, sizeof(buf), 100), -1);
    write_all(fd, "\r\n", 2);
    n = read_wait(&c, fd, buf, sizeof(buf), 2000);
    assert_int_equal(n, 2);
    /* Ping followed by a message in the same write. */
    static const char m[] = "\r\n\r\n" OPTIONS_MSG("z9hG4bKping");
    write_all(fd, m, sizeof(m) - 1);
    run_until(&c, &c.recv_count, 1, 2000);
    assert_int_equal(c.recv_count, 1);
    assert_string_equal(c.last_branch, "z9hG4bKping");
    struct tp_stats st;
    tp_stats_get(c.tp, &st);
    assert_int_equal(st.pings_answered, 3);
    assert_int_equal(c.closed_count, 0);
    close(fd);
    ctx_fini(&c);
}

static void
test_tcp_garbage_closes(void **state)
{
    struct ctx c;
    struct tp_addr bound;
    char buf[64];

    ctx_init(&c, 0);
    assert_true(listen_on(&c, "tcp:127.0.0.1:0", &bound) >= 0);
    int fd = tcp_client(&bound);
    /* Get the flow id with one good message first. */
    static const char m[] = OPTIONS_MSG("z9hG4bKg1");
    write_all(fd, m, sizeof(m) - 1);
    run_until(&c, &c.recv_count, 1, 2000);
    uint64_t flow = c.last_src.flow_id;
    assert_true(tp_flow_alive(c.tp, flow));
    /* Headers without Content-Length cannot be framed on a stream. */
    static const char junk[] = "GARBAGE nonsense\r\nFoo: bar\r\n\r\n";
    write_all(fd, junk, sizeof(junk) - 1);
    ssize_t n = read_wait(&c, fd, buf, sizeof(buf), 2000);
    assert_int_equal(n, 0); /* EOF: we closed it */
    run_until(&c, &c.closed_count, 1, 2000);
    assert_int_equal(c.closed_count, 1);
    assert_true(c.closed_flow == flow);
    assert_int_equal(c.closed_status, -EPROTO);
    assert_false(tp_flow_alive(c.tp, flow));
    assert_int_equal(c.recv_count, 1);
    close(fd);

    /* Binary junk that never frames but keeps coming: closed at the cap. */
    fd = tcp_client(&bound);
    char *big = malloc(SIP_MAX_MSG_LEN + 1024);
    memset(big, 'A', SIP_MAX_MSG_LEN + 1024);
    ssize_t w = 0;
    for (int i = 0; i < 200 && w < SIP_MAX_MSG_LEN + 1024; i++) {
        ssize_t k = send(fd, big + w, (size_t)(SIP_MAX_MSG_LEN + 1024 - w),
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (k > 0)
            w += k;
        run_until(&c, NULL, 0, 5);
    }
    free(big);
    for (int i = 0; i < 400 && c.closed_count < 2; i++)
        run_until(&c, NULL, 0, 5);
    assert_int_equal(c.closed_count, 2);
    assert_int_equal(tp_conn_count(c.tp), 0);
    close(fd);
    ctx_fini(&c);
}

static void
test_tcp_flow_close_and_max_conns(void **state)
{
    struct ctx c;
    struct tp_addr bound;
    char buf[16];
    static const char m[] = OPTIONS_MSG("z9hG4bKmax");

    ctx_init(&c, 1);
    assert_true(listen_on(&c, "tcp:127.0.0.1:0", &bound) >= 0);
    int fd1 = tcp_client(&bound);
    write_all(fd1, m, sizeof(m) - 1);
    run_until(&c, &c.recv_count, 1, 2000);
    uint64_t flow = c.last_src.flow_id;
    /* Second connection over max_conns=1: accepted and closed at once. */
    int fd2 = tcp_client(&bound);
    assert_int_equal(read_wait(&c, fd2, buf, sizeof(buf), 2000), 0);
    struct tp_stats st;
    tp_stats_get(c.tp, &st);
    assert_int_equal(st.conns_rejected, 1);
    assert_int_equal(tp_conn_count(c.tp), 1);
    assert_int_equal(c.closed_count, 0); /* never a flow: not reported */
    /* Closing from our side. */
    assert_int_equal(tp_flow_close(c.tp, flow), 0);
    assert_false(tp_flow_alive(c.tp, flow));
    assert_int_equal(read_wait(&c, fd1, buf, sizeof(buf), 2000), 0);
    run_until(&c, &c.closed_count, 1, 1000);
    assert_int_equal(c.closed_count, 1);
    assert_int_equal(c.closed_status, 0);
    close(fd1);
    close(fd2);
    ctx_fini(&c);
}

static void
test_tcp_connect_out(void **state)
{
    struct ctx c;
    struct tp_addr peer;
    socklen_t plen = sizeof(peer.u);
    char buf[2048];
    static const char m[] = OPTIONS_MSG("z9hG4bKout");

    ctx_init(&c, 0);
    /* The peer: a plain listening socket. */
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(lfd, 4), 0);
    assert_int_equal(getsockname(lfd, &peer.u.sa, &plen), 0);
    peer.len = plen;

    struct tp_dest d = {.proto = TP_TCP, .addr = peer, .listener = -1};
    uint64_t flow = 0, flow2 = 0;
    assert_int_equal(tp_send(c.tp, &d, slice_make(m, sizeof(m) - 1), &flow), 0);
    assert_true(flow != 0);
    assert_true(tp_flow_alive(c.tp, flow));
    /* A second send to the same address reuses the connection. */
    assert_int_equal(tp_send(c.tp, &d, SLICE_LIT("\r\n\r\n"), &flow2), 0);
    assert_true(flow2 == flow);
    run_until(&c, NULL, 0, 50);
    int pfd = accept(lfd, NULL, NULL);
    assert_true(pfd >= 0);
    size_t got = 0;
    while (got < sizeof(m) - 1 + 4) {
        ssize_t n = read_wait(&c, pfd, buf + got, sizeof(buf) - got, 2000);
        assert_true(n > 0);
        got += (size_t)n;
    }
    assert_memory_equal(buf, m, sizeof(m) - 1);
    /* The peer answers over the same connection. */
    write_all(pfd, m, sizeof(m) - 1);
    run_until(&c, &c.recv_count, 1, 2000);
    assert_int_equal(c.recv_count, 1);
    assert_true(c.last_src.flow_id == flow);
    assert_int_equal(c.last_src.listener, -1);
    close(pfd);
    run_until(&c, &c.closed_count, 1, 2000);
    assert_false(tp_flow_alive(c.tp, flow));

    /* Connect to a port nobody listens on: the flow is reported closed
     * with an error. */
    close(lfd);
    uint64_t f3 = 0;
    assert_int_equal(tp_send(c.tp, &d, SLICE_LIT("x"), &f3), 0);
    run_until(&c, &c.closed_count, 2, 2000);
    assert_int_equal(c.closed_count, 2);
    assert_true(c.closed_flow == f3);
    assert_int_equal(c.closed_status, UV_ECONNREFUSED);
    ctx_fini(&c);
}

static void
test_ipv6(void **state)
{
    struct ctx c;
    struct tp_addr ub, tb;
    static const char m[] = OPTIONS_MSG("z9hG4bKv6");

    ctx_init(&c, 0);
    if (listen_on(&c, "udp:[::1]:0", &ub) < 0) {
        ctx_fini(&c);
        skip(); /* no IPv6 loopback on this machine */
    }
    assert_true(listen_on(&c, "tcp:[::1]:0", &tb) >= 0);
    int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_int_equal(sendto(fd, m, sizeof(m) - 1, 0, &ub.u.sa, ub.len),
                     (ssize_t)sizeof(m) - 1);
    run_until(&c, &c.recv_count, 1, 2000);
    assert_int_equal(c.recv_count, 1);
    assert_int_equal(c.last_src.remote.u.sa.sa_family, AF_INET6);
    char host[64];
    assert_string_equal(tp_addr_host(&c.last_src.remote, host, sizeof(host)),
                        "::1");
    close(fd);
    fd = tcp_client(&tb);
    write_all(fd, m, sizeof(m) - 1);
    run_until(&c, &c.recv_count, 2, 2000);
    assert_int_equal(c.recv_count, 2);
    assert_int_equal(c.last_src.proto, TP_TCP);
    assert_int_equal(c.last_src.local.u.sa.sa_family, AF_INET6);
    close(fd);
    ctx_fini(&c);
}

/* Accepted from one source: at most max_per_source, counted over every tp
 * (worker) of the process; other sources are not affected. */
static void
test_tcp_per_source_cap(void **state)
{
    struct ctx c;
    struct tp_cfg cfg;
    struct tp_addr bound, b2, src1, src2;
    struct tp_listen_spec sp;
    char buf[16];
    int fds[8], nfd = 0;

    (void)state;
    tp_cfg_defaults(&cfg);
    cfg.max_per_source = 3;
    ctx_init_cfg(&c, &cfg);
    cfg.worker = 1;
    struct tp *tp2 = tp_with(&c, &cfg);
    assert_true(listen_on(&c, "tcp:127.0.0.1:0", &bound) >= 0);
    /* The second worker listens on the same port (SO_REUSEPORT): the
     * kernel spreads the connections over both. */
    sp.proto = TP_TCP;
    sp.addr = bound;
    assert_true(tp_listen(tp2, &sp, NULL, 0) >= 0);
    assert_int_equal(tp_listener(tp2, 0, &sp), 0);
    b2 = sp.addr;
    assert_true(tp_addr_equal(&b2, &bound));
    assert_int_equal(tp_addr_parse(slice_cstr("127.0.0.1:1"), false, &src1), 0);
    assert_int_equal(tp_addr_parse(slice_cstr("127.0.0.2:2"), false, &src2), 0);

    for (int i = 0; i < 6; i++)
        fds[nfd++] = tcp_client(&bound);
    /* Three are kept and three refused (EOF), whichever worker took
     * them. */
    int eofs = 0;
    for (int i = 0; i < 6; i++)
        if (read_wait(&c, fds[i], buf, sizeof(buf), 300) == 0)
            eofs++;
    run_until(&c, NULL, 0, 20);
    assert_int_equal(eofs, 3);
    assert_int_equal(tp_source_conns(&src1), 3);
    assert_int_equal(tp_conn_count(c.tp) + tp_conn_count(tp2), 3);
    struct tp_stats s1, s2;
    tp_stats_get(c.tp, &s1);
    tp_stats_get(tp2, &s2);
    assert_int_equal(s1.conns_rejected_source + s2.conns_rejected_source, 3);
    assert_int_equal(s1.conns_accepted + s2.conns_accepted, 3);

    /* Another source still gets in. */
    fds[nfd++] = tcp_client_from(&bound, "127.0.0.2");
    static const char m[] = OPTIONS_MSG("z9hG4bKsrc2");
    write_all(fds[nfd - 1], m, sizeof(m) - 1);
    run_until(&c, &c.recv_count, 1, 2000);
    assert_int_equal(c.recv_count, 1);
    assert_int_equal(tp_source_conns(&src2), 1);

    /* A closed connection frees its place. */
    for (int i = 0; i < 6; i++)
        close(fds[i]);
    for (int i = 0; i < 200 && tp_source_conns(&src1) > 0; i++)
        run_until(&c, NULL, 0, 5);
    assert_int_equal(tp_source_conns(&src1), 0);
    fds[0] = tcp_client(&bound);
    assert_int_equal(read_wait(&c, fds[0], buf, sizeof(buf), 200), -1);
    assert_int_equal(tp_source_conns(&src1), 1);
    close(fds[0]);
    close(fds[nfd - 1]);
    tp_free(tp2);
    ctx_fini(&c);
    /* Freeing the tps released every count. */
    assert_int_equal(tp_source_conns(&src1), 0);
    assert_int_equal(tp_source_conns(&src2), 0);
}

/* Write one byte every step_ms until the peer closes; returns the ms it
 * took (or -1 if still open after max_ms). */
static int
drip_until_closed(struct ctx *c, int fd, const char *bytes, int step_ms,
                  int max_ms)
{
    char buf[64];
    uint64_t start;
    size_t i = 0;

    uv_update_time(&c->loop);
    start = uv_now(&c->loop);
    for (;;) {
        if (bytes[i] != '\0' && send(fd, &bytes[i], 1, MSG_NOSIGNAL) == 1)
            i++;
        ssize_t n = read_wait(c, fd, buf, sizeof(buf), step_ms);
        uv_update_time(&c->loop);
        int took = (int)(uv_now(&c->loop) - start);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return took;
        if (took > max_ms)
            return -1;
    }
}

/* A connection that drips bytes is closed by the first-message deadline
 * (counted from the accept) or, once it has sent a message, by the
 * message deadline (counted from the message's first byte); a connection
 * that sent a whole message keeps the idle timeout. */
static void
test_tcp_slow_deadlines(void **state)
{
    struct ctx c;
    struct tp_cfg cfg;
    struct tp_addr bound;
    static const char m[] = OPTIONS_MSG("z9hG4bKslow");
    char buf[16];

    (void)state;
    tp_cfg_defaults(&cfg);
    cfg.first_message_ms = 300;
    cfg.message_ms = 400;
    ctx_init_cfg(&c, &cfg);
    assert_true(listen_on(&c, "tcp:127.0.0.1:0", &bound) >= 0);

    /* Pings and a message one byte at a time: closed at ~300 ms. */
    int slow = tcp_client(&bound);
    int took = drip_until_closed(&c, slow, "\r\n\r\nOPTIONS sip:x SIP/2.0\r\n",
                                 40, 3000);
    assert_true(took >= 250 && took < 1500);
    run_until(&c, &c.closed_count, 1, 1000);
    assert_int_equal(c.closed_count, 1);
    assert_int_equal(c.closed_status, UV_ETIMEDOUT);
    close(slow);

    /* A whole message at once, then quiet for longer than both deadlines:
     * still open (idle timeout, 10 min). */
    int good = tcp_client(&bound);
    write_all(good, m, sizeof(m) - 1);
    run_until(&c, &c.recv_count, 1, 2000);
    assert_int_equal(c.recv_count, 1);
    assert_int_equal(read_wait(&c, good, buf, sizeof(buf), 600), -1);
    assert_int_equal(tp_conn_count(c.tp), 1);
    /* Ping-pong keeps it open too. */
    write_all(good, "\r\n\r\n", 4);
    assert_int_equal(read_wait(&c, good, buf, sizeof(buf), 1000), 2);
    /* Now a second message dripped: closed by the message deadline. */
    took = drip_until_closed(&c, good, "INVITE sip:x SIP/2.0\r\nVia: x\r\n", 40,
                             3000);
    assert_true(took >= 350 && took < 1500);
    close(good);
    run_until(&c, &c.closed_count, 2, 1000);
    assert_int_equal(c.closed_count, 2);
    struct tp_stats st;
    tp_stats_get(c.tp, &st);
    assert_int_equal(st.conns_closed_slow, 2);
    assert_int_equal(tp_conn_count(c.tp), 0);
    ctx_fini(&c);
}

/* UDP: a method that starts with a token symbol reaches on_recv; a STUN
 * Binding Request is answered with the sender's address. */
static void
test_udp_token_method_and_stun(void **state)
{
    struct ctx c;
    struct tp_addr bound, cli;
    socklen_t clen = sizeof(cli.u);
    uint8_t buf[256];

    (void)state;
    ctx_init(&c, 0);
    assert_true(listen_on(&c, "udp:127.0.0.1:0", &bound) >= 0);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in any = {.sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&any, sizeof(any)), 0);
    assert_int_equal(getsockname(fd, &cli.u.sa, &clen), 0);
    cli.len = clen;

    static const char odd[] =
        "!odd-Method0_*+`.%' sip:100@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKodd\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:a@example.com>;tag=1\r\n"
        "To: <sip:b@example.com>\r\n"
        "Call-ID: odd@pc33\r\n"
        "CSeq: 1 !odd-Method0_*+`.%'\r\n"
        "Content-Length: 0\r\n\r\n";
    sendto(fd, odd, sizeof(odd) - 1, 0, &bound.u.sa, bound.len);
    run_until(&c, &c.recv_count, 1, 2000);
    assert_int_equal(c.recv_count, 1);
    assert_int_equal(c.parse_errors, 0);
    assert_string_equal(c.last_method, "!odd-Method0_*+`.%'");

    static const uint8_t req[20] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4,
                                    0x42, 1,    2,    3,    4,    5,    6,
                                    7,    8,    9,    10,   11,   12};
    sendto(fd, req, sizeof(req), 0, &bound.u.sa, bound.len);
    ssize_t n = read_wait(&c, fd, (char *)buf, sizeof(buf), 2000);
    assert_int_equal(n, 32);
    uint8_t want[TP_STUN_ANSWER_MAX];
    assert_int_equal(tp_stun_answer(req, sizeof(req), &cli, want, sizeof(want)),
                     32);
    assert_memory_equal(buf, want, 32);
    assert_int_equal(buf[0], 0x01);
    assert_int_equal(buf[1], 0x01);
    assert_int_equal(c.recv_count, 1); /* not passed up */
    struct tp_stats st;
    tp_stats_get(c.tp, &st);
    assert_int_equal(st.stun_answered, 1);
    close(fd);
    ctx_fini(&c);
}

/* tp_post from another thread reaches the target's on_recv. */
struct post_arg {
    struct tp *tp;
    struct tp_src src;
};

static void
post_thread(void *p)
{
    struct post_arg *a = p;
    static const char m[] = OPTIONS_MSG("z9hG4bKpost");

    assert_int_equal(tp_post(a->tp, slice_make(m, sizeof(m) - 1), &a->src), 0);
}

static void
test_post_from_thread(void **state)
{
    struct ctx c;
    uv_thread_t th;
    struct post_arg a;

    ctx_init(&c, 0);
    memset(&a, 0, sizeof(a));
    a.tp = c.tp;
    a.src.proto = TP_UDP;
    a.src.worker = 3;
    assert_int_equal(uv_thread_create(&th, post_thread, &a), 0);
    run_until(&c, &c.recv_count, 1, 2000);
    uv_thread_join(&th);
    assert_int_equal(c.recv_count, 1);
    assert_string_equal(c.last_branch, "z9hG4bKpost");
    assert_int_equal(c.last_src.worker, 3);
    ctx_fini(&c);
}

/* A peer that does not read: replies sent while the socket is full are
 * written partly at once and the rest queued, and the peer, once it
 * reads, gets every byte in order (the write that takes part of a
 * message continues where it stopped, across the parts of a send). */
static void
test_tcp_partial_writes_in_order(void **state)
{
    struct ctx c;
    struct tp_cfg cfg;
    struct tp_addr bound;
    static const char m[] = OPTIONS_MSG("z9hG4bKpart");
    enum { MSGS = 400, LEN = 3001 };
    static char sent[MSGS * LEN];
    int small = 4096;

    (void)state;
    tp_cfg_defaults(&cfg);
    cfg.max_write_queue = 4 * MSGS * LEN;
    ctx_init_cfg(&c, &cfg);
    assert_true(listen_on(&c, "tcp:127.0.0.1:0", &bound) >= 0);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    assert_int_equal(connect(fd, &bound.u.sa, bound.len), 0);
    write_all(fd, m, sizeof(m) - 1);
    run_until(&c, &c.recv_count, 1, 2000);
    assert_int_equal(c.recv_count, 1);

    struct tp_dest d = {.proto = TP_TCP, .flow_id = c.last_src.flow_id};
    for (int i = 0; i < MSGS; i++) {
        char *p = sent + (size_t)i * LEN;
        for (int k = 0; k < LEN; k++)
            p[k] = (char)('a' + (i * 7 + k) % 26);
        /* three parts of uneven size, as a response with a body */
        struct slice parts[3] = {slice_make(p, 17), slice_make(p + 17, 1000),
                                 slice_make(p + 1017, LEN - 1017)};
        assert_int_equal(tp_sendv(c.tp, &d, parts, 3, NULL), 0);
    }
    /* The socket could not take it all: some of it waits in libuv. */
    assert_true(tp_flow_alive(c.tp, d.flow_id));
    static char got[MSGS * LEN];
    size_t have = 0;
    while (have < sizeof(got)) {
        ssize_t n = read_wait(&c, fd, got + have, sizeof(got) - have, 3000);
        assert_true(n > 0);
        have += (size_t)n;
    }
    assert_memory_equal(got, sent, sizeof(sent));
    struct tp_stats st;
    tp_stats_get(c.tp, &st);
    assert_int_equal(st.tx_errors, 0);
    close(fd);
    ctx_fini(&c);
}

/* Two workers of a group on one port: the kernel's hash spreads new
 * connections over their SO_REUSEPORT sockets unevenly; the accepting
 * worker hands a connection to the other when that one has fewer, so
 * the counts end within one of each other, and every handed-over
 * connection carries its messages (received as the other worker's). */
static void
test_tcp_connections_balanced_over_group(void **state)
{
    struct ctx c;
    struct tp_cfg cfg;
    struct tp_group *g;
    struct tp *tp2;
    struct tp_addr bound;
    char port[64];
    enum { N = 200 };
    static int fds[N];
    static const char m[] = OPTIONS_MSG("z9hG4bKbal");

    (void)state;
    assert_int_equal(tp_group_new(2, &g), 0);
    tp_cfg_defaults(&cfg);
    cfg.max_per_source = 0;
    cfg.group = g;
    cfg.worker = 0;
    ctx_init_cfg(&c, &cfg);
    cfg.worker = 1;
    tp2 = tp_with(&c, &cfg);
    assert_true(listen_on(&c, "tcp:127.0.0.1:0", &bound) >= 0);
    snprintf(port, sizeof(port), "tcp:127.0.0.1:%u", tp_addr_port(&bound));
    struct tp_listen_spec sp = spec_of(port);
    assert_true(tp_listen(tp2, &sp, NULL, 0) >= 0);

    for (int i = 0; i < N; i++) {
        fds[i] = tcp_client(&bound);
        write_all(fds[i], m, sizeof(m) - 1);
        if (i % 20 == 19)
            run_until(&c, &c.recv_count, i + 1, 3000);
    }
    run_until(&c, &c.recv_count, N, 5000);
    assert_int_equal(c.recv_count, N);
    size_t n1 = tp_conn_count(c.tp), n2 = tp_conn_count(tp2);
    struct tp_stats s1, s2;
    tp_stats_get(c.tp, &s1);
    tp_stats_get(tp2, &s2);
    print_message("connections %zu + %zu, handed over %llu + %llu\n", n1, n2,
                  (unsigned long long)s1.conns_handed_over,
                  (unsigned long long)s2.conns_handed_over);
    assert_int_equal(n1 + n2, N);
    assert_true(n1 <= n2 + 1 && n2 <= n1 + 1);
    assert_int_equal(s1.conns_accepted + s2.conns_accepted, N);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    run_until(&c, &c.closed_count, N, 5000);
    assert_int_equal(c.closed_count, N);
    tp_free(tp2);
    ctx_fini(&c);
    tp_group_free(g);
}

/* ---- TLS ---------------------------------------------------------------- */

/* A self-signed P-256 certificate for IP 127.0.0.1 (subjectAltName) and
 * its key in two temporary files. */
static void
make_cert(char cert_path[64], char key_path[64])
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    FILE *f;
    int fd;

    assert_non_null(key);
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
                               (const unsigned char *)"127.0.0.1", -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *san =
        X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "IP:127.0.0.1");
    assert_non_null(san);
    assert_int_equal(X509_add_ext(x, san, -1), 1);
    X509_EXTENSION_free(san);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    snprintf(cert_path, 64, "%s", "/tmp/tp_test_cert_XXXXXX");
    fd = mkstemp(cert_path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
    snprintf(key_path, 64, "%s", "/tmp/tp_test_key_XXXXXX");
    fd = mkstemp(key_path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL),
                     1);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(key);
}

struct tls_peer {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
};

/* Run the loop while an SSL call on the non-blocking client wants I/O. */
static int
tls_pump(struct ctx *c, struct tls_peer *p, int (*op)(SSL *, void *, int),
         void *buf, int len)
{
    for (int waited = 0; waited < 3000; waited += 5) {
        int r = op(p->ssl, buf, len);
        if (r > 0)
            return r;
        int e = SSL_get_error(p->ssl, r);
        assert_true(e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE);
        struct pollfd pf = {.fd = p->fd, .events = POLLIN};
        uv_run(&c->loop, UV_RUN_NOWAIT);
        poll(&pf, 1, 5);
    }
    fail_msg("TLS peer: no progress in 3 s");
    return -1;
}

static int
op_connect(SSL *ssl, void *buf, int len)
{
    (void)buf;
    (void)len;
    return SSL_connect(ssl);
}

static int
op_read(SSL *ssl, void *buf, int len)
{
    return SSL_read(ssl, buf, len);
}

static int
op_write(SSL *ssl, void *buf, int len)
{
    return SSL_write(ssl, buf, len);
}

static void
tls_peer_open(struct ctx *c, struct tls_peer *p, const struct tp_addr *to)
{
    p->fd = tcp_client(to);
    assert_int_equal(fcntl(p->fd, F_SETFL, O_NONBLOCK), 0);
    p->ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(p->ctx);
    SSL_CTX_set_verify(p->ctx, SSL_VERIFY_NONE, NULL);
    p->ssl = SSL_new(p->ctx);
    SSL_set_fd(p->ssl, p->fd);
    assert_int_equal(tls_pump(c, p, op_connect, NULL, 0), 1);
}

static void
tls_peer_close(struct tls_peer *p)
{
    SSL_free(p->ssl);
    SSL_CTX_free(p->ctx);
    close(p->fd);
}

/* A TLS connection keeps its buffers while busy and frees them once quiet
 * (idle memory), then works as before: a request in, a reply out. */
static void
test_tls_quiet_frees_buffers(void **state)
{
    struct ctx c;
    struct tp_cfg cfg;
    struct tp_tls_cfg tc = {.ciphers = "", .ca_file = ""};
    struct tp_tls *t;
    struct tp_addr bound;
    struct tp_stats st;
    struct tls_peer p;
    char cert[64], key[64], err[256], buf[256];
    static const char m[] = OPTIONS_MSG("z9hG4bKtls");
    static const char reply[] = "SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";

    (void)state;
    make_cert(cert, key);
    tc.cert_file = cert;
    tc.key_file = key;
    assert_int_equal(tp_tls_new(&tc, &t, err, sizeof(err)), 0);
    tp_cfg_defaults(&cfg);
    cfg.tls = t;
    ctx_init_cfg(&c, &cfg);
    assert_true(listen_on(&c, "tls:127.0.0.1:0", &bound) >= 0);
    tls_peer_open(&c, &p, &bound);

    for (int round = 1; round <= 2; round++) {
        assert_int_equal(tls_pump(&c, &p, op_write, (void *)m, sizeof(m) - 1),
                         (int)sizeof(m) - 1);
        run_until(&c, &c.recv_count, round, 2000);
        assert_int_equal(c.recv_count, round);
        assert_int_equal(c.last_src.proto, TP_TLS);
        struct tp_dest d = {.proto = TP_TLS, .flow_id = c.last_src.flow_id};
        assert_int_equal(
            tp_send(c.tp, &d, slice_make(reply, sizeof(reply) - 1), NULL), 0);
        assert_int_equal(tls_pump(&c, &p, op_read, buf, sizeof(buf)),
                         (int)sizeof(reply) - 1);
        assert_memory_equal(buf, reply, sizeof(reply) - 1);
        /* Busy: the buffers stay. */
        tp_stats_get(c.tp, &st);
        assert_int_equal(st.tls_released, (uint64_t)round - 1);
        /* Quiet for a second: freed. */
        run_until(&c, NULL, 0, 1300);
        tp_stats_get(c.tp, &st);
        assert_int_equal(st.tls_released, (uint64_t)round);
    }
    assert_int_equal(st.tls_handshakes, 1);
    tls_peer_close(&p);
    run_until(&c, &c.closed_count, 1, 2000);
    assert_int_equal(c.closed_count, 1);
    ctx_fini(&c);
    tp_tls_free(t);
    unlink(cert);
    unlink(key);
}

/* After its first message a TLS connection that drips a record one byte
 * at a time is closed by the message deadline, as a TCP connection
 * dripping a message is: the half record sits inside SSL, not in the
 * plaintext buffer, and must not count as an idle connection (whose
 * every read would move a 10-minute timeout). */
static void
test_tls_dripped_record_meets_message_deadline(void **state)
{
    struct ctx c;
    struct tp_cfg cfg;
    struct tp_tls_cfg tc = {.ciphers = "", .ca_file = ""};
    struct tp_tls *t;
    struct tp_addr bound;
    struct tp_stats st;
    struct tls_peer p;
    char cert[64], key[64], err[256], buf[64];
    static const char m[] = OPTIONS_MSG("z9hG4bKdrip");
    unsigned char rec[1024];

    (void)state;
    make_cert(cert, key);
    tc.cert_file = cert;
    tc.key_file = key;
    assert_int_equal(tp_tls_new(&tc, &t, err, sizeof(err)), 0);
    tp_cfg_defaults(&cfg);
    cfg.tls = t;
    cfg.message_ms = 400;
    ctx_init_cfg(&c, &cfg);
    assert_true(listen_on(&c, "tls:127.0.0.1:0", &bound) >= 0);
    tls_peer_open(&c, &p, &bound);
    assert_int_equal(tls_pump(&c, &p, op_write, (void *)m, sizeof(m) - 1),
                     (int)sizeof(m) - 1);
    run_until(&c, &c.recv_count, 1, 2000);
    assert_int_equal(c.recv_count, 1);

    /* The next message's record, written to memory, then dripped. */
    BIO *mem = BIO_new(BIO_s_mem());
    assert_non_null(mem);
    SSL_set0_wbio(p.ssl, mem);
    assert_int_equal(SSL_write(p.ssl, m, sizeof(m) - 1), (int)sizeof(m) - 1);
    int len = BIO_read(mem, rec, sizeof(rec));
    assert_true(len > 40);
    uv_update_time(&c.loop);
    uint64_t start = uv_now(&c.loop);
    int took = -1;
    for (int i = 0; i < len - 1; i++) {
        bool sent = send(p.fd, rec + i, 1, MSG_NOSIGNAL) == 1;
        ssize_t n = sent ? read_wait(&c, p.fd, buf, sizeof(buf), 40) : 0;
        uv_update_time(&c.loop);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            took = (int)(uv_now(&c.loop) - start); /* closed by the server */
            break;
        }
        if (uv_now(&c.loop) - start > 3000)
            break;
    }
    assert_true(took >= 350 && took < 1500);
    run_until(&c, &c.closed_count, 1, 1000);
    assert_int_equal(c.closed_count, 1);
    assert_int_equal(c.closed_status, UV_ETIMEDOUT);
    tp_stats_get(c.tp, &st);
    assert_int_equal(st.conns_closed_slow, 1);
    assert_int_equal(c.recv_count, 1);
    tls_peer_close(&p);
    ctx_fini(&c);
    tp_tls_free(t);
    unlink(cert);
    unlink(key);
}

/* Outbound TLS: a tp with a tls: listener that trusts its own certificate
 * (server_ca_file) sends to its own listener's address. The two messages
 * sent while the connection and handshake run are kept and arrive in
 * order once the certificate (and IP 127.0.0.1 in it) was verified; the
 * next message reuses the connection; a reply on the accepted flow comes
 * back on the outbound one. The connection leaves from the tls:
 * listener's address. */
static void
test_tls_outbound_verified_and_queued(void **state)
{
    struct ctx c;
    struct tp_cfg cfg;
    struct tp_tls_cfg tc = {.ciphers = "", .ca_file = ""};
    struct tp_tls *t;
    struct tp_addr bound;
    struct tp_stats st;
    char cert[64], key[64], err[256];
    static const char m1[] = OPTIONS_MSG("z9hG4bKout1");
    static const char m2[] = OPTIONS_MSG("z9hG4bKout2");
    static const char m3[] = OPTIONS_MSG("z9hG4bKout3");
    static const char reply[] = "SIP/2.0 200 OK\r\n"
                                "Via: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bKr\r\n"
                                "From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\n"
                                "Call-ID: r\r\nCSeq: 1 OPTIONS\r\n"
                                "Content-Length: 0\r\n\r\n";
    uint64_t f1 = 0, f2 = 0, f3 = 0;

    (void)state;
    make_cert(cert, key);
    tc.cert_file = cert;
    tc.key_file = key;
    tc.server_ca_file = cert;
    assert_int_equal(tp_tls_new(&tc, &t, err, sizeof(err)), 0);
    tp_cfg_defaults(&cfg);
    cfg.tls = t;
    ctx_init_cfg(&c, &cfg);
    assert_true(listen_on(&c, "tls:127.0.0.1:0", &bound) >= 0);
    struct tp_dest d = {.proto = TP_TLS, .addr = bound, .listener = -1};
    assert_int_equal(tp_send(c.tp, &d, slice_make(m1, sizeof(m1) - 1), &f1), 0);
    assert_int_equal(tp_send(c.tp, &d, slice_make(m2, sizeof(m2) - 1), &f2), 0);
    assert_int_not_equal(f1, 0);
    assert_int_equal(f1, f2); /* the connection being opened */
    assert_true(tp_flow_alive(c.tp, f1));
    run_until(&c, &c.recv_count, 2, 3000);
    assert_int_equal(c.recv_count, 2);
    assert_string_equal(c.last_branch, "z9hG4bKout2");
    assert_int_equal(c.last_src.proto, TP_TLS);
    assert_true(c.last_src.listener >= 0); /* the accepted side */
    char host[TP_ADDRSTRLEN];
    assert_string_equal(tp_addr_host(&c.last_src.remote, host, sizeof(host)),
                        "127.0.0.1");
    assert_int_equal(tp_send(c.tp, &d, slice_make(m3, sizeof(m3) - 1), &f3), 0);
    assert_int_equal(f3, f1); /* reused */
    run_until(&c, &c.recv_count, 3, 3000);
    assert_string_equal(c.last_branch, "z9hG4bKout3");
    struct tp_dest back = {.proto = TP_TLS, .flow_id = c.last_src.flow_id};
    assert_int_equal(
        tp_send(c.tp, &back, slice_make(reply, sizeof(reply) - 1), NULL), 0);
    run_until(&c, &c.recv_count, 4, 3000);
    assert_int_equal(c.recv_count, 4);
    assert_int_equal(c.last_src.flow_id, f1);
    assert_int_equal(c.last_src.listener, -1);
    tp_stats_get(c.tp, &st);
    assert_int_equal(st.tls_handshakes, 2); /* both ends */
    assert_int_equal(st.tls_failed, 0);
    assert_int_equal(c.closed_count, 0);
    ctx_fini(&c);
    tp_tls_free(t);
    unlink(cert);
    unlink(key);
}

/* Outbound TLS to a server whose certificate does not verify: signed by
 * no CA we trust, then trusted but for another address (the certificate
 * names 127.0.0.1, we connect to 127.0.0.2). Each time the message is
 * never delivered and the flow closes with -EPROTO (on_flow_closed, as a
 * refused TCP connect). */
static void
test_tls_outbound_unverified_fails(void **state)
{
    struct ctx c;
    struct tp_cfg cfg;
    struct tp_tls_cfg tc = {.ciphers = "", .ca_file = ""};
    struct tp_tls *t;
    struct tp_addr bound;
    struct tp_stats st;
    char cert[64], key[64], other[64], okey[64], err[256];
    static const char m[] = OPTIONS_MSG("z9hG4bKbad");
    uint64_t f = 0;

    (void)state;
    make_cert(cert, key);
    make_cert(other, okey);
    for (int round = 0; round < 2; round++) {
        tc.cert_file = cert;
        tc.key_file = key;
        tc.server_ca_file = round == 0 ? other : cert;
        assert_int_equal(tp_tls_new(&tc, &t, err, sizeof(err)), 0);
        tp_cfg_defaults(&cfg);
        cfg.tls = t;
        ctx_init_cfg(&c, &cfg);
        assert_true(
            listen_on(&c, round == 0 ? "tls:127.0.0.1:0" : "tls:127.0.0.2:0",
                      &bound) >= 0);
        struct tp_dest d = {.proto = TP_TLS, .addr = bound, .listener = -1};
        assert_int_equal(tp_send(c.tp, &d, slice_make(m, sizeof(m) - 1), &f),
                         0);
        run_until(&c, &c.closed_count, 2, 3000); /* both ends */
        assert_int_equal(c.closed_count, 2);
        bool seen = false;
        for (int i = 0; i < 2; i++)
            if (c.closed_flows[i] == f) {
                seen = true;
                assert_int_equal(c.closed_statuses[i], -EPROTO);
            }
        assert_true(seen);
        assert_false(tp_flow_alive(c.tp, f));
        assert_int_equal(c.recv_count, 0);
        tp_stats_get(c.tp, &st);
        assert_int_equal(st.tls_handshakes, 0);
        assert_true(st.tls_failed >= 1);
        ctx_fini(&c);
        tp_tls_free(t);
    }
    unlink(cert);
    unlink(key);
    unlink(other);
    unlink(okey);
}

/* Outbound TLS to a server that accepts the connection and never answers
 * the ClientHello: closed at first_message_ms, as an accepted connection
 * whose client never finishes its handshake. */
static void
test_tls_outbound_handshake_deadline(void **state)
{
    struct ctx c;
    struct tp_cfg cfg;
    struct tp_tls_cfg tc = {.ciphers = "", .ca_file = ""};
    struct tp_tls *t;
    char cert[64], key[64], err[256], buf[512];
    static const char m[] = OPTIONS_MSG("z9hG4bKmute");
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sin);
    uint64_t f = 0;

    (void)state;
    make_cert(cert, key);
    tc.cert_file = cert;
    tc.key_file = key;
    tc.server_ca_file = cert;
    assert_int_equal(tp_tls_new(&tc, &t, err, sizeof(err)), 0);
    tp_cfg_defaults(&cfg);
    cfg.tls = t;
    cfg.first_message_ms = 300;
    ctx_init_cfg(&c, &cfg);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(lfd, 4), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &sl), 0);
    struct tp_dest d = {.proto = TP_TLS, .listener = -1};
    memcpy(&d.addr.u.in4, &sin, sizeof(sin));
    d.addr.len = sizeof(sin);
    uv_update_time(&c.loop);
    uint64_t start = uv_now(&c.loop);
    assert_int_equal(tp_send(c.tp, &d, slice_make(m, sizeof(m) - 1), &f), 0);
    int fd = -1;
    for (int i = 0; i < 200 && fd < 0; i++) {
        struct pollfd pf = {.fd = lfd, .events = POLLIN};
        uv_run(&c.loop, UV_RUN_NOWAIT);
        if (poll(&pf, 1, 5) == 1)
            fd = accept(lfd, NULL, NULL);
    }
    assert_true(fd >= 0);
    /* The ClientHello arrives; nothing is answered. */
    ssize_t n = read_wait(&c, fd, buf, sizeof(buf), 2000);
    assert_true(n > 5);
    assert_int_equal((unsigned char)buf[0], 22); /* handshake record */
    run_until(&c, &c.closed_count, 1, 3000);
    uv_update_time(&c.loop);
    uint64_t took = uv_now(&c.loop) - start;
    assert_int_equal(c.closed_count, 1);
    assert_int_equal(c.closed_flow, f);
    assert_int_equal(c.closed_status, UV_ETIMEDOUT);
    assert_true(took >= 250 && took < 2000);
    struct tp_stats st;
    tp_stats_get(c.tp, &st);
    assert_int_equal(st.tls_failed, 1);
    close(fd);
    close(lfd);
    ctx_fini(&c);
    tp_tls_free(t);
    unlink(cert);
    unlink(key);
}

/* The client SSL object of an outbound connection: an IP literal is
 * checked as an address and sent no SNI (RFC 6066 §3); a name is sent as
 * SNI and checked as a host name. */
static void
test_tls_client_names(void **state)
{
    struct tp_tls_cfg tc = {.ciphers = "", .ca_file = ""};
    struct tp_tls *t;
    struct tp_tls_io io = {0};
    char cert[64], key[64], err[256];

    (void)state;
    make_cert(cert, key);
    tc.cert_file = cert;
    tc.key_file = key;
    tc.server_ca_file = cert;
    assert_int_equal(tp_tls_new(&tc, &t, err, sizeof(err)), 0);
    const char *hosts[] = {"127.0.0.1", "::1", "pbx.example.com"};
    for (size_t i = 0; i < 3; i++) {
        SSL *ssl = tp_tls_client_new(t, &io, hosts[i]);
        assert_non_null(ssl);
        assert_false(SSL_is_server(ssl));
        assert_int_equal(SSL_get_verify_mode(ssl), SSL_VERIFY_PEER);
        const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
        const char *host = X509_VERIFY_PARAM_get0_host(SSL_get0_param(ssl), 0);
        char *ip = X509_VERIFY_PARAM_get1_ip_asc(SSL_get0_param(ssl));
        if (i < 2) {
            assert_null(sni);
            assert_null(host);
            assert_non_null(ip);
            assert_string_equal(ip, i == 0 ? "127.0.0.1" : "0:0:0:0:0:0:0:1");
        } else {
            assert_null(ip);
            assert_string_equal(sni, "pbx.example.com");
            assert_string_equal(host, "pbx.example.com");
        }
        OPENSSL_free(ip);
        SSL_free(ssl);
    }
    tp_tls_free(t);
    unlink(cert);
    unlink(key);
}

/* tp_addr_host formats IPv4 itself (no inet_ntop): the same text as
 * inet_ntop for edge values, IPv6 unchanged, a small buffer still
 * handled, and tp_addr_format built on it. */
static void
test_addr_host_text(void **state)
{
    static const char *v4[] = {"0.0.0.0", "255.255.255.255", "10.1.0.1",
                               "127.0.0.1", "192.168.100.9", "1.20.255.0"};
    struct tp_addr a;
    char out[TP_ADDRSTRLEN], ref[INET6_ADDRSTRLEN];

    (void)state;
    for (size_t i = 0; i < sizeof(v4) / sizeof(v4[0]); i++) {
        assert_int_equal(tp_addr_from_ip(slice_cstr(v4[i]), 5062, &a), 0);
        assert_non_null(inet_ntop(AF_INET, &a.u.in4.sin_addr, ref, sizeof(ref)));
        assert_string_equal(tp_addr_host(&a, out, sizeof(out)), ref);
        assert_string_equal(ref, v4[i]);
    }
    assert_string_equal(tp_addr_format(&a, out, sizeof(out)),
                        "1.20.255.0:5062");
    char small[8];
    assert_string_equal(tp_addr_host(&a, small, sizeof(small)), "?");
    assert_int_equal(tp_addr_from_ip(SLICE_LIT("2001:db8::1"), 5060, &a), 0);
    assert_string_equal(tp_addr_host(&a, out, sizeof(out)), "2001:db8::1");
    assert_string_equal(tp_addr_format(&a, out, sizeof(out)),
                        "[2001:db8::1]:5060");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_parse),
        cmocka_unit_test(test_udp_recv_and_reply),
        cmocka_unit_test(test_tcp_framing_split_and_batched),
        cmocka_unit_test(test_tcp_ping_pong),
        cmocka_unit_test(test_tcp_garbage_closes),
        cmocka_unit_test(test_tcp_flow_close_and_max_conns),
        cmocka_unit_test(test_tcp_connect_out),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_post_from_thread),
        cmocka_unit_test(test_tcp_per_source_cap),
        cmocka_unit_test(test_tcp_slow_deadlines),
        cmocka_unit_test(test_udp_token_method_and_stun),
        cmocka_unit_test(test_tcp_partial_writes_in_order),
        cmocka_unit_test(test_tcp_connections_balanced_over_group),
        cmocka_unit_test(test_tls_quiet_frees_buffers),
        cmocka_unit_test(test_tls_dripped_record_meets_message_deadline),
        cmocka_unit_test(test_tls_outbound_verified_and_queued),
        cmocka_unit_test(test_tls_outbound_unverified_fails),
        cmocka_unit_test(test_tls_outbound_handshake_deadline),
        cmocka_unit_test(test_tls_client_names),
        cmocka_unit_test(test_addr_host_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
