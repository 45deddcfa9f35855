/*
 * media/client: ng requests on a worker's loop (see client.h).
 *
 * Requests sent and waiting for an answer sit on one list and are found
 * by cookie with a linear scan: an ng answer usually comes back in well
 * under a millisecond, and the window ([media] window) bounds how many a
 * worker has in flight per relay. Requests over the window wait, unsent,
 * on that relay's queue (in order) and go out as answers come back: a
 * burst of calls is never sent to rtpengine faster than it answers, so
 * its ng socket buffer does not overflow (the kernel would drop the
 * excess and each dropped request would cost a timeout_ms repeat). A
 * request holds its slot from its first send to a relay until it is
 * answered, fails over or gives up; repeats and probes take no slot.
 *
 * Timers: every try is armed at now + timeout_ms, the same for all, so one
 * FIFO queue (base/tq) holds them in deadline order; the probe of down
 * relays uses a second FIFO. A single uv_timer sleeps until the earliest.
 * Sends use uv_udp_try_send: no request memory to keep alive; a datagram
 * the kernel refuses (EAGAIN) counts as lost and is repeated on timeout.
 */
#include "media/client.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "base/list.h"
#include "base/log.h"
#include "base/tq.h"
#include "base/xmalloc.h"

#define MAX_DATAGRAM 65536
#define MAX_NODES 8192 /* a delete answer of a 2-leg call: ~300 */
#define QUEUE_MAX 16384 /* requests waiting for a slot, per relay */
#define RCVBUF (1 << 20) /* our sockets' receive buffer (rtpengine's answers) */

struct relay {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char name[64];
    atomic_bool up;
    atomic_uint_fast64_t requests, answers, errors, timeouts, garbage;
    char last_error[128]; /* under relays->lock */
};

struct media_relays {
    size_t count;
    struct relay relay[MEDIA_MAX_RELAYS];
    unsigned timeout_ms, retries, probe_ms;
    unsigned window;      /* in flight per client and relay; 0: no limit */
    uint32_t cookie_salt; /* differs per process run */
    atomic_uint rr;       /* round-robin for requests without call-id */
    pthread_mutex_t lock;
};

enum where { P_NEW, P_LISTED, P_QUEUED };

struct pending {
    struct list_node link; /* c->pending (P_LISTED: sent, or failing from
                              the loop) or c->waitq[relay] (P_QUEUED) */
    enum where where;
    int holds;             /* relay whose window slot it holds, or -1 */
    struct tq_entry timer;
    struct media_client *c;
    uint64_t id;
    size_t cookie_len;   /* the cookie is msg's first cookie_len bytes */
    struct buf msg;      /* "COOKIE SP bencode" */
    enum media_ng_cmd cmd;
    int relay;           /* current, -1 before the first */
    int start;           /* first relay chosen */
    uint32_t tried;      /* bitmask of relays sent to */
    unsigned tries_here; /* sends to the current relay */
    unsigned tries;      /* all sends */
    bool sticky, probe;
    uint64_t t0_ns;
    media_ng_cb *cb;
    void *arg;
};

struct media_client {
    uv_loop_t *loop;
    struct media_relays *relays;
    uv_udp_t udp4, udp6;
    bool has4, has6;
    uv_timer_t timer;
    struct tq tq;
    struct tq_fifo retry_q, probe_q;
    struct tq_entry probe;
    struct list_node pending;
    size_t pending_count; /* every request, listed, queued or new */
    struct list_node waitq[MEDIA_MAX_RELAYS];
    unsigned inflight[MEDIA_MAX_RELAYS], queued[MEDIA_MAX_RELAYS];
    uint64_t next_id;
    char prefix[32];
    size_t prefix_len;
    int handles; /* open libuv handles; freed at 0 once closing */
    bool closing;
    char rbuf[MAX_DATAGRAM];
    struct media_benc nodes[MAX_NODES];
};

static const char *const status_names[] = {
    [MEDIA_NG_OK] = "ok",
    [MEDIA_NG_REFUSED] = "refused",
    [MEDIA_NG_TIMEOUT] = "timeout",
    [MEDIA_NG_NO_RELAY] = "no-relay",
};

const char *
media_ng_status_name(enum media_ng_status s)
{
    if ((size_t)s >= sizeof(status_names) / sizeof(status_names[0]))
        return "?";
    return status_names[s];
}

/* ---- relay set (any thread) ---- */

int
media_relays_new(const struct media_cfg *cfg, struct media_relays **out,
                 char *err, size_t errlen)
{
    struct media_relays *r;
    const char *why = NULL;

    if (cfg->rtpengine.count > MEDIA_MAX_RELAYS) {
        snprintf(err, errlen, "'rtpengine': more than %d items",
                 MEDIA_MAX_RELAYS);
        return -EINVAL;
    }
    r = xcalloc(1, sizeof(*r));
    for (size_t i = 0; i < cfg->rtpengine.count; i++) {
        struct relay *rl = &r->relay[i];
        if (media_ng_addr_parse(cfg->rtpengine.items[i], &rl->addr,
                                &rl->addrlen, &why) < 0) {
            snprintf(err, errlen, "'rtpengine': bad item '%s': %s",
                     cfg->rtpengine.items[i], why);
            free(r);
            return -EINVAL;
        }
        snprintf(rl->name, sizeof(rl->name), "%s", cfg->rtpengine.items[i]);
        atomic_init(&rl->up, true);
    }
    r->count = cfg->rtpengine.count;
    r->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 500;
    r->retries = cfg->retries;
    r->probe_ms = cfg->probe_ms ? cfg->probe_ms : 5000;
    r->window = cfg->window;
    if (getrandom(&r->cookie_salt, sizeof(r->cookie_salt), 0) !=
        sizeof(r->cookie_salt))
        r->cookie_salt = (uint32_t)uv_hrtime() ^ (uint32_t)getpid();
    pthread_mutex_init(&r->lock, NULL);
    *out = r;
    return 0;
}

void
media_relays_free(struct media_relays *r)
{
    if (r == NULL)
        return;
    pthread_mutex_destroy(&r->lock);
    free(r);
}

size_t
media_relays_count(const struct media_relays *r)
{
    return r->count;
}

void
media_relays_status(const struct media_relays *r, size_t i,
                    struct media_relay_status *out)
{
    const struct relay *rl = &r->relay[i];

    memset(out, 0, sizeof(*out));
    snprintf(out->addr, sizeof(out->addr), "%s", rl->name);
    out->up = atomic_load(&rl->up);
    out->requests = atomic_load(&rl->requests);
    out->answers = atomic_load(&rl->answers);
    out->errors = atomic_load(&rl->errors);
    out->timeouts = atomic_load(&rl->timeouts);
    out->garbage = atomic_load(&rl->garbage);
    pthread_mutex_lock((pthread_mutex_t *)&r->lock);
    snprintf(out->last_error, sizeof(out->last_error), "%s", rl->last_error);
    pthread_mutex_unlock((pthread_mutex_t *)&r->lock);
}

static void
relay_error(struct media_relays *r, int i, const char *fmt, const char *what)
{
    pthread_mutex_lock(&r->lock);
    snprintf(r->relay[i].last_error, sizeof(r->relay[i].last_error), fmt,
             what);
    pthread_mutex_unlock(&r->lock);
}

static void
relay_set_up(struct media_client *c, int i, bool up)
{
    struct relay *rl = &c->relays->relay[i];

    if (atomic_exchange(&rl->up, up) == up)
        return;
    if (up)
        log_notice("media", "rtpengine %s is up again", rl->name);
    else
        log_warn("media", "rtpengine %s is down: %s", rl->name,
                 rl->last_error);
}

/* ---- client (loop thread) ---- */

static void on_timer(uv_timer_t *t);
static void on_retry(struct tq_entry *e);

static void
arm(struct media_client *c)
{
    uint64_t due, now;

    if (c->closing)
        return;
    due = tq_next_due(&c->tq);
    if (due == TQ_NEVER) {
        uv_timer_stop(&c->timer);
        return;
    }
    now = uv_now(c->loop);
    uv_timer_start(&c->timer, on_timer, due > now ? due - now : 0, 0);
}

static void drain(struct media_client *c, int relay);

/* Give p's window slot back and let the relay's queue move. */
static void
release(struct media_client *c, struct pending *p)
{
    int r = p->holds;

    if (r < 0)
        return;
    p->holds = -1;
    c->inflight[r]--;
    drain(c, r);
}

static void
unlink_p(struct media_client *c, struct pending *p)
{
    if (p->where == P_QUEUED)
        c->queued[p->relay]--;
    if (p->where != P_NEW)
        list_remove(&p->link);
    p->where = P_NEW;
}

static void
pending_free(struct media_client *c, struct pending *p)
{
    tq_cancel(&p->timer);
    unlink_p(c, p);
    c->pending_count--;
    release(c, p);
    buf_fini(&p->msg);
    free(p);
}

/* Finish p: unlink it, then call back (the callback may reenter). */
static void
finish(struct media_client *c, struct pending *p,
       enum media_ng_status status, const char *error,
       const struct media_ng_answer *answer)
{
    struct media_ng_result res = {
        .status = status,
        .relay = p->relay,
        .tries = p->tries,
        .elapsed_us = (uv_hrtime() - p->t0_ns) / 1000,
        .error = error,
        .answer = answer,
    };
    media_ng_cb *cb = p->cb;
    void *arg = p->arg;

    pending_free(c, p);
    if (cb)
        cb(arg, &res);
}

static uv_udp_t *
sock_for(struct media_client *c, const struct relay *rl)
{
    if (rl->addr.ss_family == AF_INET6)
        return c->has6 ? &c->udp6 : NULL;
    return c->has4 ? &c->udp4 : NULL;
}

static void
transmit(struct media_client *c, struct pending *p)
{
    struct relay *rl = &c->relays->relay[p->relay];
    if (p->where != P_LISTED) {
        unlink_p(c, p);
        list_push_back(&c->pending, &p->link);
        p->where = P_LISTED;
    }
    uv_udp_t *u = sock_for(c, rl);
    uv_buf_t b = uv_buf_init(p->msg.data, (unsigned)p->msg.len);
    int rc = u ? uv_udp_try_send(u, &b, 1, (const struct sockaddr *)&rl->addr)
               : UV_EAFNOSUPPORT;

    if (rc < 0 && rc != UV_EAGAIN) {
        relay_error(c->relays, p->relay, "send: %s", uv_strerror(rc));
        log_debug("media", "ng send to %s failed: %s", rl->name,
                  uv_strerror(rc));
    }
    if (p->tries_here == 0 && !p->probe)
        atomic_fetch_add(&rl->requests, 1);
    p->tries_here++;
    p->tries++;
    tq_fifo_add(&c->retry_q, &p->timer, uv_now(c->loop));
}

/* The next relay for p after the ones it tried: starting at p->start, the
 * first untried one that is up. -1 when none. */
static int
next_relay(struct media_client *c, struct pending *p)
{
    size_t n = c->relays->count;

    for (size_t k = 0; k < n; k++) {
        int i = (int)((p->start + k) % n);
        if (p->tried & (1u << i))
            continue;
        if (atomic_load(&c->relays->relay[i].up))
            return i;
    }
    return -1;
}

/* p cannot be tried anywhere: its callback runs from the loop
 * (on_retry, relay -1), never from inside the call that found it out. */
static void
fail_later(struct media_client *c, struct pending *p)
{
    unlink_p(c, p);
    list_push_back(&c->pending, &p->link); /* media_client_cancel finds it */
    p->where = P_LISTED;
    p->relay = -1;
    tq_heap_add(&c->tq, &p->timer, uv_now(c->loop));
}

static void
start_on(struct media_client *c, struct pending *p, int relay)
{
    unsigned w = c->relays->window;

    release(c, p); /* failover: the old relay's slot */
    p->relay = relay;
    p->tried |= 1u << relay;
    p->tries_here = 0;
    if (w && !p->probe) {
        if (c->inflight[relay] >= w) {
            if (c->queued[relay] >= QUEUE_MAX) {
                log_warn("media", "ng queue for %s full (%d requests): "
                         "request failed", c->relays->relay[relay].name,
                         QUEUE_MAX);
                fail_later(c, p);
                return;
            }
            unlink_p(c, p);
            list_push_back(&c->waitq[relay], &p->link);
            p->where = P_QUEUED;
            c->queued[relay]++;
            return;
        }
        c->inflight[relay]++;
        p->holds = relay;
    }
    transmit(c, p);
}

/* Send queued requests of relay while it has free slots. One waiting for
 * a relay marked down since it queued goes to another relay that is up,
 * or fails (unless it is sticky: then it is sent, like any request to the
 * relay that has its call). */
static void
drain(struct media_client *c, int relay)
{
    unsigned w = c->relays->window;

    while (!c->closing && !list_empty(&c->waitq[relay]) &&
           (!w || c->inflight[relay] < w)) {
        struct pending *p =
            container_of(c->waitq[relay].next, struct pending, link);
        unlink_p(c, p);
        if (!p->sticky && !atomic_load(&c->relays->relay[relay].up)) {
            int next = next_relay(c, p);
            if (next >= 0)
                start_on(c, p, next);
            else
                fail_later(c, p);
            continue;
        }
        c->inflight[relay]++;
        p->holds = relay;
        transmit(c, p);
    }
}

static void
on_retry(struct tq_entry *e)
{
    struct pending *p = container_of(e, struct pending, timer);
    struct media_client *c = p->c;
    struct relay *rl;
    int next;

    if (p->relay < 0) { /* deferred "no relay" */
        finish(c, p, MEDIA_NG_NO_RELAY,
               c->relays->count ? "every rtpengine is down"
                                : "no rtpengine configured",
               NULL);
        return;
    }
    if (p->tries_here <= c->relays->retries) {
        log_debug("media", "ng %s to %s: no answer, again (%u)",
                  media_ng_cmd_name(p->cmd), c->relays->relay[p->relay].name,
                  p->tries_here);
        transmit(c, p);
        return;
    }
    rl = &c->relays->relay[p->relay];
    atomic_fetch_add(&rl->timeouts, 1);
    relay_error(c->relays, p->relay, "%s", "no answer (timeout)");
    relay_set_up(c, p->relay, false);
    if (!tq_armed(&c->probe))
        tq_fifo_add(&c->probe_q, &c->probe, uv_now(c->loop));
    if (p->probe) {
        pending_free(c, p);
        return;
    }
    next = p->sticky ? -1 : next_relay(c, p);
    if (next < 0) {
        finish(c, p, MEDIA_NG_TIMEOUT, "no rtpengine answered", NULL);
        return;
    }
    log_info("media", "ng %s: failover from %s to %s",
             media_ng_cmd_name(p->cmd), rl->name,
             c->relays->relay[next].name);
    start_on(c, p, next);
}

static struct pending *
pending_new(struct media_client *c, enum media_ng_cmd cmd)
{
    struct pending *p = xcalloc(1, sizeof(*p));

    p->c = c;
    p->id = ++c->next_id;
    p->cmd = cmd;
    p->relay = -1;
    p->holds = -1;
    p->where = P_NEW;
    p->t0_ns = uv_hrtime();
    tq_entry_init(&p->timer, on_retry);
    buf_init(&p->msg, MAX_DATAGRAM);
    buf_append(&p->msg, c->prefix, c->prefix_len);
    buf_printf(&p->msg, "%" PRIu64, p->id);
    p->cookie_len = p->msg.len;
    buf_append(&p->msg, " ", 1);
    c->pending_count++;
    return p;
}

/* Ping every relay marked down (one probe at a time per relay), and keep
 * the probe timer armed while any is down. */
static void
on_probe(struct tq_entry *e)
{
    struct media_client *c = container_of(e, struct media_client, probe);
    struct media_ng_req ping = {.cmd = MEDIA_NG_PING};
    bool any_down = false;

    for (size_t i = 0; i < c->relays->count; i++) {
        if (atomic_load(&c->relays->relay[i].up))
            continue;
        any_down = true;
        bool busy = false;
        struct list_node *n, *tmp;
        list_for_each_safe(n, tmp, &c->pending)
        {
            struct pending *q = container_of(n, struct pending, link);
            if (q->probe && q->relay == (int)i)
                busy = true;
        }
        if (busy)
            continue;
        struct pending *p = pending_new(c, MEDIA_NG_PING);
        p->probe = p->sticky = true;
        media_ng_build(&ping, &p->msg, NULL);
        start_on(c, p, (int)i);
    }
    if (any_down)
        tq_fifo_add(&c->probe_q, &c->probe, uv_now(c->loop));
}

static uint32_t
hash_slice(struct slice s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < s.len; i++) {
        h ^= (unsigned char)s.ptr[i];
        h *= 16777619u;
    }
    return h;
}

int
media_client_send(struct media_client *c, const struct media_ng_req *req,
                  int relay, media_ng_cb *cb, void *arg, uint64_t *id)
{
    struct pending *p;
    const char *why = NULL;
    size_t n = c->relays->count;
    int rc;

    if (c->closing)
        return -ESHUTDOWN;
    if (relay >= 0 && (size_t)relay >= n)
        return -ENOENT;
    p = pending_new(c, req->cmd);
    rc = media_ng_build(req, &p->msg, &why);
    if (rc < 0) {
        log_debug("media", "ng %s not sent: %s", media_ng_cmd_name(req->cmd),
                  why ? why : "too big");
        pending_free(c, p);
        return rc;
    }
    p->cb = cb;
    p->arg = arg;
    if (id)
        *id = p->id;
    if (relay >= 0) {
        p->sticky = true;
        p->start = relay;
        start_on(c, p, relay);
    } else if (n > 0) {
        p->start = (int)((req->call_id.len ? hash_slice(req->call_id)
                                           : atomic_fetch_add(&c->relays->rr,
                                                              1)) %
                         n);
        int first = next_relay(c, p);
        if (first >= 0)
            start_on(c, p, first);
    }
    if (p->relay < 0 && p->where == P_NEW) /* nothing to try */
        fail_later(c, p);
    arm(c);
    return 0;
}

static struct pending *
find_id(struct list_node *list, uint64_t id)
{
    struct list_node *n;

    for (n = list->next; n != list; n = n->next) {
        struct pending *p = container_of(n, struct pending, link);
        if (p->id == id && !p->probe)
            return p;
    }
    return NULL;
}

void
media_client_cancel(struct media_client *c, uint64_t id)
{
    struct pending *p = find_id(&c->pending, id);

    for (size_t i = 0; !p && i < c->relays->count; i++)
        p = find_id(&c->waitq[i], id);
    if (p) {
        pending_free(c, p);
        arm(c);
    }
}

size_t
media_client_pending(const struct media_client *c)
{
    return c->pending_count;
}

static int
relay_of(const struct media_client *c, const struct sockaddr *sa)
{
    for (size_t i = 0; i < c->relays->count; i++) {
        const struct relay *rl = &c->relays->relay[i];
        if (sa->sa_family != rl->addr.ss_family)
            continue;
        if (sa->sa_family == AF_INET) {
            const struct sockaddr_in *a = (const void *)sa;
            const struct sockaddr_in *b = (const void *)&rl->addr;
            if (a->sin_port == b->sin_port &&
                a->sin_addr.s_addr == b->sin_addr.s_addr)
                return (int)i;
        } else if (sa->sa_family == AF_INET6) {
            const struct sockaddr_in6 *a = (const void *)sa;
            const struct sockaddr_in6 *b = (const void *)&rl->addr;
            if (a->sin6_port == b->sin6_port &&
                memcmp(&a->sin6_addr, &b->sin6_addr, 16) == 0)
                return (int)i;
        }
    }
    return -1;
}

static void
garbage(struct media_client *c, int relay, const char *why)
{
    if (relay < 0) {
        log_debug("media", "ng: datagram from a stranger dropped");
        return;
    }
    atomic_fetch_add(&c->relays->relay[relay].garbage, 1);
    relay_error(c->relays, relay, "bad answer: %s", why);
    log_debug("media", "ng: bad answer from %s dropped: %s",
              c->relays->relay[relay].name, why);
}

static void
on_datagram(struct media_client *c, const char *data, size_t len,
            const struct sockaddr *from)
{
    int relay = relay_of(c, from);
    struct slice cookie, body;
    struct media_ng_answer ans;
    const char *why = NULL;
    struct pending *p = NULL;
    struct list_node *n, *tmp;

    if (relay < 0) {
        garbage(c, relay, "stranger");
        return;
    }
    if (media_ng_split(data, len, &cookie, &body, &why) < 0) {
        garbage(c, relay, why);
        return;
    }
    list_for_each_safe(n, tmp, &c->pending)
    {
        struct pending *q = container_of(n, struct pending, link);
        if (q->cookie_len == cookie.len &&
            memcmp(q->msg.data, cookie.ptr, cookie.len) == 0) {
            p = q;
            break;
        }
    }
    if (p == NULL || !(p->tried & (1u << relay))) {
        /* A repeat answered after its request finished, or a cookie we
         * never sent: nothing waits for it. */
        log_debug("media", "ng: answer for no pending request from %s",
                  c->relays->relay[relay].name);
        return;
    }
    if (media_ng_parse_answer(body.ptr, body.len, c->nodes, MAX_NODES, &ans,
                              &why) < 0) {
        garbage(c, relay, why); /* the repeat may bring a good one */
        return;
    }
    struct relay *rl = &c->relays->relay[relay];
    atomic_fetch_add(&rl->answers, 1);
    relay_set_up(c, relay, true);
    p->relay = relay;
    if (p->probe) {
        pending_free(c, p);
        return;
    }
    if (!ans.ok) {
        atomic_fetch_add(&rl->errors, 1);
        log_info("media", "ng %s refused by %s: " SLICE_FMT,
                 media_ng_cmd_name(p->cmd), rl->name,
                 SLICE_ARG(ans.error_reason.ptr ? ans.error_reason
                                                : ans.result));
        finish(c, p, MEDIA_NG_REFUSED, "rtpengine answered with an error",
               &ans);
        return;
    }
    finish(c, p, MEDIA_NG_OK, NULL, &ans);
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct media_client *c = h->data;
    (void)suggested;
    *b = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void
on_recv(uv_udp_t *u, ssize_t nread, const uv_buf_t *b,
        const struct sockaddr *from, unsigned flags)
{
    struct media_client *c = u->data;

    if (nread <= 0 || from == NULL || c->closing)
        return;
    if (flags & UV_UDP_PARTIAL) {
        int relay = relay_of(c, from);
        garbage(c, relay, "datagram truncated");
        return;
    }
    on_datagram(c, b->base, (size_t)nread, from);
    arm(c);
}

static void
on_timer(uv_timer_t *t)
{
    struct media_client *c = t->data;

    tq_run(&c->tq, uv_now(c->loop), 0);
    arm(c);
}

static int
open_udp(struct media_client *c, uv_udp_t *u, bool *opened, int family)
{
    struct sockaddr_storage any;
    int rc;

    memset(&any, 0, sizeof(any));
    if (family == AF_INET6) {
        rc = uv_ip6_addr("::", 0, (struct sockaddr_in6 *)&any);
    } else {
        rc = uv_ip4_addr("0.0.0.0", 0, (struct sockaddr_in *)&any);
    }
    if (rc < 0)
        return rc;
    if ((rc = uv_udp_init(c->loop, u)) < 0)
        return rc;
    u->data = c;
    c->handles++;
    *opened = true;
    rc = uv_udp_bind(u, (const struct sockaddr *)&any,
                     family == AF_INET6 ? UV_UDP_IPV6ONLY : 0);
    if (rc == 0) {
        /* Room for a window's answers even while the worker is busy with
         * SIP (the kernel caps it at net.core.rmem_max). */
        int size = RCVBUF;
        (void)uv_recv_buffer_size((uv_handle_t *)u, &size);
        rc = uv_udp_recv_start(u, on_alloc, on_recv);
    }
    return rc;
}

static void
on_closed(uv_handle_t *h)
{
    struct media_client *c = h->data;

    if (--c->handles == 0) {
        tq_fifo_fini(&c->retry_q);
        tq_fifo_fini(&c->probe_q);
        tq_fini(&c->tq);
        free(c);
    }
}

int
media_client_new(uv_loop_t *loop, struct media_relays *relays,
                 unsigned worker, struct media_client **out)
{
    struct media_client *c = xcalloc(1, sizeof(*c));
    int rc = 0;

    c->loop = loop;
    c->relays = relays;
    list_init(&c->pending);
    for (size_t i = 0; i < MEDIA_MAX_RELAYS; i++)
        list_init(&c->waitq[i]);
    tq_init(&c->tq);
    tq_fifo_init(&c->tq, &c->retry_q, relays->timeout_ms);
    tq_fifo_init(&c->tq, &c->probe_q, relays->probe_ms);
    tq_entry_init(&c->probe, on_probe);
    c->prefix_len = (size_t)snprintf(c->prefix, sizeof(c->prefix),
                                     "pp%08" PRIx32 "w%u-",
                                     relays->cookie_salt, worker);
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->handles = 1;
    for (size_t i = 0; i < relays->count && rc == 0; i++) {
        int fam = relays->relay[i].addr.ss_family;
        if (fam == AF_INET6 && !c->has6)
            rc = open_udp(c, &c->udp6, &c->has6, AF_INET6);
        else if (fam == AF_INET && !c->has4)
            rc = open_udp(c, &c->udp4, &c->has4, AF_INET);
    }
    if (rc < 0) {
        log_error("media", "ng client socket: %s", uv_strerror(rc));
        media_client_close(c);
        return rc;
    }
    for (size_t i = 0; i < relays->count; i++)
        if (!atomic_load(&relays->relay[i].up) && !tq_armed(&c->probe))
            tq_fifo_add(&c->probe_q, &c->probe, uv_now(loop));
    arm(c);
    *out = c;
    return 0;
}

void
media_client_close(struct media_client *c)
{
    struct list_node *n, *tmp;

    if (c == NULL || c->closing)
        return;
    c->closing = true; /* drain sends nothing more */
    list_for_each_safe(n, tmp, &c->pending)
        pending_free(c, container_of(n, struct pending, link));
    for (size_t i = 0; i < c->relays->count; i++)
        list_for_each_safe(n, tmp, &c->waitq[i])
            pending_free(c, container_of(n, struct pending, link));
    tq_cancel(&c->probe);
    uv_timer_stop(&c->timer);
    if (c->has4)
        uv_close((uv_handle_t *)&c->udp4, on_closed);
    if (c->has6)
        uv_close((uv_handle_t *)&c->udp6, on_closed);
    uv_close((uv_handle_t *)&c->timer, on_closed);
}
