/*
 * client_test: the ng client's window ([media] window) on a real libuv
 * loop against a UDP socket of the test standing in for rtpengine: a
 * burst of requests larger than the window reaches the relay only window
 * at a time, the rest go out, in order, as answers come back, every
 * callback runs once, and cancelling a queued request drops it unsent.
 * With window 0 the whole burst goes out at once. Every test closes the
 * loop cleanly, so a leaked handle or allocation fails under ASan.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "media/client.h"
#include "media/media_cfg.h"

#define BURST 10

struct relay_sock {
    int fd;
    char addr[64];
    struct sockaddr_storage peer; /* the client's socket */
    socklen_t peer_len;
};

struct seen {
    int calls;
    enum media_ng_status status[BURST];
    int order[BURST]; /* which request each callback was, in order */
};

struct req {
    struct seen *s;
    int i;
};

static void
on_result(void *arg, const struct media_ng_result *res)
{
    struct req *r = arg;

    r->s->status[r->i] = res->status;
    r->s->order[r->s->calls++] = r->i;
}

static void
relay_open(struct relay_sock *rs)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);

    rs->fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(rs->fd >= 0);
    assert_int_equal(bind(rs->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(rs->fd, (struct sockaddr *)&a, &len), 0);
    fcntl(rs->fd, F_SETFL, O_NONBLOCK);
    snprintf(rs->addr, sizeof(rs->addr), "udp:127.0.0.1:%u",
             (unsigned)ntohs(a.sin_port));
}

/* Run the loop a little, then read every datagram that arrived: their
 * cookies into cookies[] (up to cap), how many. */
static int
relay_read(uv_loop_t *loop, struct relay_sock *rs, char cookies[][64],
           int cap)
{
    int n = 0;

    for (int round = 0; round < 20; round++) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(1000);
        for (;;) {
            char buf[2048];
            rs->peer_len = sizeof(rs->peer);
            ssize_t got = recvfrom(rs->fd, buf, sizeof(buf) - 1, 0,
                                   (struct sockaddr *)&rs->peer,
                                   &rs->peer_len);
            if (got <= 0)
                break;
            buf[got] = '\0';
            char *sp = strchr(buf, ' ');
            assert_non_null(sp);
            *sp = '\0';
            if (n < cap)
                snprintf(cookies[n], 64, "%.63s", buf);
            n++;
        }
    }
    return n;
}

static void
relay_answer(struct relay_sock *rs, const char *cookie)
{
    char out[128];
    int len = snprintf(out, sizeof(out), "%s d6:result4:ponge", cookie);
    assert_int_equal(sendto(rs->fd, out, (size_t)len, 0,
                            (struct sockaddr *)&rs->peer, rs->peer_len),
                     len);
}

struct env {
    uv_loop_t loop;
    struct relay_sock rs;
    struct media_relays *relays;
    struct media_client *c;
    char *items[1];
};

static void
env_open(struct env *e, unsigned window)
{
    char err[256];
    struct media_cfg cfg = {0};

    memset(e, 0, sizeof(*e));
    relay_open(&e->rs);
    e->items[0] = e->rs.addr;
    cfg.rtpengine.items = e->items;
    cfg.rtpengine.count = 1;
    cfg.timeout_ms = 5000; /* no repeat within a test */
    cfg.retries = 0;
    cfg.probe_ms = 5000;
    cfg.window = window;
    assert_int_equal(uv_loop_init(&e->loop), 0);
    assert_int_equal(media_relays_new(&cfg, &e->relays, err, sizeof(err)),
                     0);
    assert_int_equal(media_client_new(&e->loop, e->relays, 0, &e->c), 0);
}

static void
env_close(struct env *e)
{
    media_client_close(e->c);
    assert_int_equal(uv_run(&e->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    media_relays_free(e->relays);
    close(e->rs.fd);
}

static void
send_burst(struct env *e, struct seen *s, struct req *r, uint64_t *ids)
{
    struct media_ng_req ping = {.cmd = MEDIA_NG_PING};

    for (int i = 0; i < BURST; i++) {
        r[i] = (struct req){.s = s, .i = i};
        assert_int_equal(
            media_client_send(e->c, &ping, 0, on_result, &r[i], &ids[i]), 0);
    }
}

/* Window 4: 4 of 10 go out; each answer lets one more go, in order. */
static void
test_window_bounds_requests_in_flight(void **state)
{
    struct env e;
    struct seen s = {0};
    struct req r[BURST];
    uint64_t ids[BURST];
    char cookies[BURST][64];
    char first[BURST][64];
    int sent = 0;

    (void)state;
    env_open(&e, 4);
    send_burst(&e, &s, r, ids);
    assert_int_equal(media_client_pending(e.c), BURST);
    int n = relay_read(&e.loop, &e.rs, cookies, BURST);
    assert_int_equal(n, 4);
    for (int i = 0; i < n; i++)
        snprintf(first[sent++], 64, "%s", cookies[i]);
    /* Answer one at a time: each answer lets exactly one queued request
     * out, and the answered one's callback runs. */
    for (int k = 0; k < BURST; k++) {
        relay_answer(&e.rs, first[k]);
        n = relay_read(&e.loop, &e.rs, cookies, BURST);
        assert_int_equal(s.calls, k + 1);
        assert_int_equal(s.status[s.order[k]], MEDIA_NG_OK);
        assert_int_equal(n, sent < BURST ? 1 : 0);
        if (n)
            snprintf(first[sent++], 64, "%s", cookies[0]);
    }
    assert_int_equal(sent, BURST);
    /* In the order they were made. */
    for (int k = 0; k < BURST; k++)
        assert_int_equal(s.order[k], k);
    assert_int_equal(media_client_pending(e.c), 0);
    env_close(&e);
}

/* A queued request cancelled is never sent; closing the client with
 * requests queued frees them (ASan) without callbacks. */
static void
test_cancel_queued_and_close(void **state)
{
    struct env e;
    struct seen s = {0};
    struct req r[BURST];
    uint64_t ids[BURST];
    char cookies[BURST][64];

    (void)state;
    env_open(&e, 2);
    send_burst(&e, &s, r, ids);
    assert_int_equal(relay_read(&e.loop, &e.rs, cookies, BURST), 2);
    media_client_cancel(e.c, ids[2]); /* queued: first in line */
    assert_int_equal(media_client_pending(e.c), BURST - 1);
    relay_answer(&e.rs, cookies[0]);
    int n = relay_read(&e.loop, &e.rs, cookies, BURST);
    assert_int_equal(n, 1);
    assert_int_equal(s.calls, 1);
    /* the one sent is request 3 (2 was cancelled): its cookie ends in the
     * client's id for it */
    char want[32];
    snprintf(want, sizeof(want), "-%llu", (unsigned long long)ids[3]);
    size_t lc = strlen(cookies[0]), lw = strlen(want);
    assert_true(lc > lw && strcmp(cookies[0] + lc - lw, want) == 0);
    env_close(&e); /* 8 still pending or queued: no callback */
    assert_int_equal(s.calls, 1);
}

/* Window 0: no limit, the whole burst goes out at once. */
static void
test_window_zero_sends_all(void **state)
{
    struct env e;
    struct seen s = {0};
    struct req r[BURST];
    uint64_t ids[BURST];
    char cookies[BURST][64];

    (void)state;
    env_open(&e, 0);
    send_burst(&e, &s, r, ids);
    assert_int_equal(relay_read(&e.loop, &e.rs, cookies, BURST), BURST);
    for (int i = 0; i < BURST; i++)
        relay_answer(&e.rs, cookies[i]);
    relay_read(&e.loop, &e.rs, cookies, BURST);
    assert_int_equal(s.calls, BURST);
    env_close(&e);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_bounds_requests_in_flight),
        cmocka_unit_test(test_cancel_queued_and_close),
        cmocka_unit_test(test_window_zero_sends_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
