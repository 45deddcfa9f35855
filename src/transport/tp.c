/*
 * transport/tp: listeners, connections, framing and the worker timer.
 *
 * TLS connections are TCP connections with an SSL object (c->ssl): the
 * ciphertext libuv reads goes through SSL (tp_tls.c's BIO) into the same
 * plaintext buffer, framing, deadlines and keep-alives as TCP; what we
 * send goes through SSL_write and leaves as one uv_write per message. The
 * handshake runs inside the read callbacks (no blocking, no thread) and
 * counts within the first-message deadline of the accept.
 *
 * Outbound TLS (a request to a TLS next hop with no connection yet): the
 * connection is opened like an outbound TCP one (from the tls: listener's
 * address), with a client SSL object (tp_tls_client_new: the server's
 * certificate and its name or address are verified); once connected we
 * send the ClientHello and the handshake runs in the read callbacks within
 * first_message_ms, as an accepted one does. Messages sent meanwhile wait
 * in c->pend (plaintext, capped by max_write_queue) and are written when
 * the handshake completes; a failed handshake or verification closes the
 * flow with -EPROTO (UV_ETIMEDOUT at the deadline), reported through
 * on_flow_closed like a refused TCP connect, and is logged at most once a
 * second per worker.
 *
 * Invariants:
 *  - Every libuv handle the tp opens is counted in open_handles; the tp
 *    memory is freed by the close callback that brings it to zero, so a
 *    tp_free() from inside any callback is safe.
 *  - A connection leaves the flow table the moment it starts closing
 *    (tp_flow_alive turns false at once); its memory is freed in its
 *    close callback, which is also where on_flow_closed is reported, so
 *    that callback never runs inside a tp_sendv() of the TU.
 *  - After calling on_recv the read loops re-check tp->freeing and
 *    c->closing before touching the buffer again.
 *  - A connection's one timer entry is in the FIFO of c->phase (in none
 *    when that phase's timeout is 0):
 *    connect (outbound, until connected), first (accepted, until its first
 *    complete message; armed once at the accept, reads do not move it),
 *    msg (a partial message is buffered; armed when it started, reads do
 *    not move it), idle (otherwise; every read moves it).
 *  - An accepted connection counted in the per-source table (c->src_held)
 *    is released exactly once, in conn_close.
 *
 * Expected load: thousands of UDP datagrams per second per worker and up
 * to max_conns (about a thousand) mostly idle TCP connections.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "base/arena.h"
#include "base/buf.h"
#include "base/list.h"
#include "base/log.h"
#include "base/xmalloc.h"
#include "sip/peek.h"
#include "transport/tp.h"
#include "transport/tp_int.h"

#include <openssl/err.h>

#define ROOM "transport"
#define TCP_RBUF_MIN 4096
/* A message plus a few keep-alive CRLFs in front of it. */
#define TCP_RBUF_CAP (SIP_MAX_MSG_LEN + 64)
#define INBOX_MAX 4096
#define TIMER_RUN_MAX 1024
/* Ciphertext read at once (a few TLS records); one buffer per worker. */
#define TLS_RBUF_LEN (64 * 1024)
/* A TLS connection keeps OpenSSL's record buffers and its plaintext buffer
 * while it is busy; they are freed once it has been quiet this long. Short,
 * so that connections set up in a burst (a restart: every phone
 * reconnects) do not all hold ~35 KiB at once and leave the heap high;
 * long next to the gaps of a busy connection (a call's messages, a load
 * test's REGISTER every few ms). */
#define TLS_QUIET_MS 200

struct tp_listener {
    struct tp *tp;
    enum tp_proto proto;
    int index;
    struct tp_addr addr; /* bound */
    union {
        uv_udp_t udp;
        uv_tcp_t tcp;
        uv_handle_t handle;
    } h;
};

/* Which deadline a connection's timer stands for (see Invariants). */
enum conn_phase {
    PHASE_CONNECT,
    PHASE_FIRST,
    PHASE_MSG,
    PHASE_IDLE,
};

struct tp_conn {
    uv_tcp_t tcp; /* first: the handle's data is not needed */
    struct tp *tp;
    uint64_t id;            /* 0 while not in the table */
    struct list_node link;  /* tp->conns */
    struct list_node hlink; /* hash bucket */
    struct tq_entry timer;  /* deadline of c->phase */
    enum conn_phase phase;
    struct tp_addr local, remote;
    int listener;
    char *rbuf;
    size_t rlen, ralloc;
    bool connecting, closing, report_close;
    bool src_held;  /* counted in the per-source table */
    bool tls_ready; /* TLS handshake done */
    bool tls_client; /* outbound TLS: we run the client side */
    int close_status;
    SSL *ssl;               /* TLS connection; NULL for TCP */
    struct tp_tls_io tlsio; /* ssl's BIO reads/writes through this */
    struct tq_entry quiet;  /* TLS: frees the buffers when quiet */
    char *pend;             /* outbound TLS: plaintext sent before the
                               handshake completed */
    size_t pend_len;
    uv_connect_t connect_req;
};

struct wreq {
    uv_write_t req;
    size_t len;
    char data[];
};

struct udp_sreq {
    uv_udp_send_t req;
    size_t len;
    char data[];
};

/* A received message handed over by another worker (tp_post), bytes
 * to send on one of our flows for another worker (tp_post_send: send is
 * true and dst says where), or a connection another worker accepted for
 * us (conn: the socket and the index of its listener). */
struct inbox_item {
    struct list_node node;
    struct tp_src src;
    bool send;
    bool conn; /* conn_fd, conn_listener */
    int conn_fd, conn_listener;
    struct tp_dest dst;
    int64_t kq_us; /* socket queue time of a UDP datagram, -1 if unknown */
    size_t len;
    char data[];
};

/* The workers (tp.h): members by worker index. The read lock covers a
 * post to a member, the write lock a join or leave, so a member leaves
 * (at tp_free) before its inbox and async handle can go. conns[w] counts
 * w's open connections plus those handed to w and not yet taken up (the
 * accepting worker adds them, so a burst of accepts does not all go to
 * the same worker before it has counted them). */
struct tp_group {
    pthread_rwlock_t lock;
    unsigned n;
    bool udp_spread;
    struct tp *m[TP_MAX_WORKERS];
    _Atomic uint64_t steered[TP_MAX_WORKERS]; /* tp_group_steered */
    _Atomic long conns[TP_MAX_WORKERS];
};

/* Latency of UDP answers inside the daemon (see udp_lat_*): a histogram
 * with 4 buckets per power of two of microseconds (19 % wide), enough for
 * a p99 without keeping samples. Worker thread only. */
#define LAT_BUCKETS 100
struct lat_hist {
    uint64_t n, max_us;
    uint64_t b[LAT_BUCKETS];
};

/* Read the kernel's receive time of one datagram in UDP_KQ_EVERY
 * (SIOCGSTAMPNS: one more system call each, so sampled). */
#define UDP_KQ_EVERY 4

/* A log line that may repeat at the rate of an attack: at most one per
 * second, the next one says how many were not written. */
struct log_limit {
    uint64_t last_ms;
    uint64_t suppressed;
    bool used;
};

struct tp {
    uv_loop_t *loop;
    struct tp_cfg cfg;
    struct tp_listener *listeners[TP_MAX_LISTENERS];
    size_t nlisteners;
    struct list_node conns;
    size_t nconns;
    struct list_node *buckets;
    size_t bucket_mask;
    struct arena arena;
    char *udp_buf;
    struct tq tq;
    struct tq_fifo idle_fifo, connect_fifo, first_fifo, msg_fifo;
    struct tq_fifo quiet_fifo; /* TLS connections' buffers (TLS_QUIET_MS) */
    struct log_limit log_max_conns, log_per_source, log_tls;
    char *tls_rbuf;     /* ciphertext read buffer (TLS_RBUF_LEN) */
    struct buf tls_out; /* ciphertext SSL wrote during one call */
    char *tls_plain;    /* a message's parts joined for SSL_write */
    uv_timer_t timer;
    uv_async_t async;
    pthread_mutex_t inbox_lock;
    struct list_node inbox;
    size_t inbox_count;
    /* UDP spreading: datagrams read in this loop iteration for other
     * workers, posted together by steer_check (one lock and one wake-up
     * per worker per iteration, not per datagram). */
    struct list_node steer_out[TP_MAX_WORKERS];
    uv_check_t steer_check;
    bool steer_armed;
    tp_relay_cb *relay; /* sends on another worker's flow */
    void *relay_arg;
    struct tp_stats stats;
    /* UDP answer latency: read -> answer sent ("handle"), the kernel's
     * receive -> our read ("queue", sampled) and their sum ("total"). */
    struct lat_hist lat_handle, lat_queue, lat_total;
    unsigned kq_tick;
    bool freeing;
    size_t open_handles;
    tp_clock_fn *clock; /* test hook (tp_set_clock); NULL = uv_now */
    void *clock_arg;
};

static _Atomic uint64_t next_flow_seq = 1;

/* rx time of the message in on_recv on this thread (tp_rx_us). */
static _Thread_local uint64_t cur_rx_us;
/* Its socket queue time (µs; -1 = not sampled), for the total latency. */
static _Thread_local int64_t cur_kq_us = -1;

static uint64_t
mono_us(void)
{
    return uv_hrtime() / 1000;
}

uint64_t
tp_rx_us(void)
{
    return cur_rx_us;
}

void
tp_cfg_defaults(struct tp_cfg *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_conns = 1024;
    cfg->max_per_source = 64;
    cfg->first_message_ms = 5 * 1000;
    cfg->message_ms = 10 * 1000;
    cfg->idle_timeout_ms = 600 * 1000;
    cfg->udp_rcvbuf = 4 * 1024 * 1024;
    cfg->max_write_queue = 1024 * 1024;
    cfg->connect_timeout_ms = 10 * 1000;
}

/* ---- lifetime ---------------------------------------------------------- */

static void
tp_release(struct tp *tp)
{
    struct list_node *n, *tmp;

    tq_fifo_fini(&tp->idle_fifo);
    tq_fifo_fini(&tp->connect_fifo);
    tq_fifo_fini(&tp->first_fifo);
    tq_fifo_fini(&tp->msg_fifo);
    tq_fifo_fini(&tp->quiet_fifo);
    tq_fini(&tp->tq);
    list_for_each_safe(n, tmp, &tp->inbox)
    {
        struct inbox_item *it = container_of(n, struct inbox_item, node);
        if (it->conn)
            close(it->conn_fd);
        free(it);
    }
    pthread_mutex_destroy(&tp->inbox_lock);
    for (size_t i = 0; i < TP_MAX_WORKERS; i++)
        list_for_each_safe(n, tmp, &tp->steer_out[i])
        {
            free(container_of(n, struct inbox_item, node));
        }
    for (size_t i = 0; i < tp->nlisteners; i++)
        free(tp->listeners[i]);
    arena_fini(&tp->arena);
    free(tp->udp_buf);
    free(tp->tls_rbuf);
    free(tp->tls_plain);
    buf_fini(&tp->tls_out);
    free(tp->buckets);
    free(tp);
}

static void
handle_closed(struct tp *tp)
{
    if (--tp->open_handles == 0 && tp->freeing)
        tp_release(tp);
}

static void
on_plain_close(uv_handle_t *h)
{
    handle_closed(h->data);
}

/* ---- timers ------------------------------------------------------------ */

static void on_timer(uv_timer_t *t);

/* Sleep until the earliest deadline of the worker's tq. Called by the tq
 * notify hook when an entry became the earliest, and after each run. */
static void
timer_rearm(struct tp *tp)
{
    uint64_t due = tq_next_due(&tp->tq), now;

    if (tp->freeing)
        return;
    if (due == TQ_NEVER) {
        uv_timer_stop(&tp->timer);
        return;
    }
    now = tp_now_ms(tp);
    uv_timer_start(&tp->timer, on_timer, due > now ? due - now : 0, 0);
}

static void
on_timer(uv_timer_t *t)
{
    struct tp *tp = t->data;

    tq_run(&tp->tq, tp_now_ms(tp), TIMER_RUN_MAX);
    timer_rearm(tp);
}

static void
on_tq_notify(struct tq *q, void *arg)
{
    (void)q;
    timer_rearm(arg);
}

struct tq *
tp_tq(struct tp *tp)
{
    return &tp->tq;
}

uint64_t
tp_now_ms(const struct tp *tp)
{
    return tp->clock ? tp->clock(tp->clock_arg) : uv_now(tp->loop);
}

void
tp_set_clock(struct tp *tp, tp_clock_fn *now, void *arg)
{
    tp->clock = now;
    tp->clock_arg = arg;
}

uv_loop_t *
tp_loop(const struct tp *tp)
{
    return tp->loop;
}

unsigned
tp_worker(const struct tp *tp)
{
    return tp->cfg.worker;
}

void
tp_stats_get(const struct tp *tp, struct tp_stats *out)
{
    *out = tp->stats;
}

/* Warn at most once a second for lim (per worker); the line that is written
 * says how many were left out since the last one. An attack that opens
 * thousands of connections a second would otherwise write as many lines. */
static void log_limited(struct tp *tp, struct log_limit *lim, const char *fmt,
                        ...) __attribute__((format(printf, 3, 4)));

static void
log_limited(struct tp *tp, struct log_limit *lim, const char *fmt, ...)
{
    uint64_t now = uv_now(tp->loop);
    char line[256];
    va_list ap;

    if (lim->used && now - lim->last_ms < 1000) {
        lim->suppressed++;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (lim->suppressed > 0)
        log_warn(ROOM, "%s (%llu more like it in the last %llu ms)", line,
                 (unsigned long long)lim->suppressed,
                 (unsigned long long)(now - lim->last_ms));
    else
        log_warn(ROOM, "%s", line);
    lim->used = true;
    lim->last_ms = now;
    lim->suppressed = 0;
}

/* ---- connections per source (all workers) --------------------------------
 *
 * The kernel spreads one peer's connections over every worker's listening
 * socket (SO_REUSEPORT hashes the 4-tuple), so a cap per worker would be
 * either max_per_source * workers in total or, divided by the worker
 * count, refuse early whenever the hash is uneven. One process-wide table
 * keeps the count exact: an entry per source with an open accepted
 * connection, under one mutex taken once per accept and once per close
 * (never per message). Keys: the IPv4 address, or the /64 of an IPv6
 * address (one subscriber's prefix; IPv4-mapped addresses count as IPv4).
 * Buckets are chosen with a per-process seed so that a peer cannot aim
 * many sources at one chain; chains are bounded by the open connections
 * anyway.
 */

#define SRC_BUCKETS 1024
#define SRC_KEY_LEN 9 /* family tag + 8 address bytes */

struct src_entry {
    struct src_entry *next;
    uint8_t key[SRC_KEY_LEN];
    size_t count;
};

static pthread_mutex_t src_lock = PTHREAD_MUTEX_INITIALIZER;
static struct src_entry *src_buckets[SRC_BUCKETS];
static uint64_t src_seed;

static void
src_key(const struct tp_addr *a, uint8_t key[SRC_KEY_LEN])
{
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0,    0,
                                         0, 0, 0, 0, 0xff, 0xff};

    memset(key, 0, SRC_KEY_LEN);
    if (a->u.sa.sa_family == AF_INET) {
        key[0] = 4;
        memcpy(key + 1, &a->u.in4.sin_addr, 4);
    } else if (a->u.sa.sa_family == AF_INET6) {
        const uint8_t *ip = (const uint8_t *)&a->u.in6.sin6_addr;
        if (memcmp(ip, v4mapped, sizeof(v4mapped)) == 0) {
            key[0] = 4;
            memcpy(key + 1, ip + 12, 4);
        } else {
            key[0] = 6;
            memcpy(key + 1, ip, 8);
        }
    }
}

/* Caller holds src_lock. */
static struct src_entry **
src_slot(const uint8_t key[SRC_KEY_LEN])
{
    uint64_t h;

    if (src_seed == 0)
        src_seed = (uv_hrtime() ^ (uint64_t)(uintptr_t)&src_seed) | 1;
    h = 14695981039346656037ull ^ src_seed; /* FNV-1a, seeded */
    for (size_t i = 0; i < SRC_KEY_LEN; i++) {
        h ^= key[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 29;
    struct src_entry **pp = &src_buckets[h % SRC_BUCKETS];
    while (*pp && memcmp((*pp)->key, key, SRC_KEY_LEN) != 0)
        pp = &(*pp)->next;
    return pp;
}

/* Count one more connection from a's source unless it has cap already (cap
 * 0: no cap). Returns false when refused. */
static bool
src_acquire(const struct tp_addr *a, size_t cap)
{
    uint8_t key[SRC_KEY_LEN];
    bool ok = true;

    src_key(a, key);
    pthread_mutex_lock(&src_lock);
    struct src_entry **pp = src_slot(key);
    if (*pp == NULL) {
        *pp = xcalloc(1, sizeof(**pp));
        memcpy((*pp)->key, key, SRC_KEY_LEN);
    }
    if (cap > 0 && (*pp)->count >= cap)
        ok = false;
    else
        (*pp)->count++;
    pthread_mutex_unlock(&src_lock);
    return ok;
}

static void
src_release(const struct tp_addr *a)
{
    uint8_t key[SRC_KEY_LEN];

    src_key(a, key);
    pthread_mutex_lock(&src_lock);
    struct src_entry **pp = src_slot(key), *e = *pp;
    if (e && --e->count == 0) {
        *pp = e->next;
        free(e);
    }
    pthread_mutex_unlock(&src_lock);
}

size_t
tp_source_conns(const struct tp_addr *a)
{
    uint8_t key[SRC_KEY_LEN];
    size_t n;

    src_key(a, key);
    pthread_mutex_lock(&src_lock);
    struct src_entry *e = *src_slot(key);
    n = e ? e->count : 0;
    pthread_mutex_unlock(&src_lock);
    return n;
}

/* ---- open flows (all workers) ----------------------------------------------
 *
 * A flow id names a connection of one worker, but the question "is the
 * phone's connection still there?" is asked on the worker of a call
 * (wake: push or not; proxy: branch or not), which may be another one.
 * One process-wide set of open flow ids answers it: an entry is added
 * when a connection gets its id and removed when it starts closing, under
 * one mutex taken twice per connection lifetime, never per message. Ids
 * are sequential in their high bits, so id >> 8 spreads over the buckets.
 */

#define FLOW_BUCKETS 16384

struct flow_entry {
    struct flow_entry *next;
    uint64_t id;
};

static pthread_mutex_t flow_lock = PTHREAD_MUTEX_INITIALIZER;
static struct flow_entry *flow_buckets[FLOW_BUCKETS];

static struct flow_entry **
flow_slot(uint64_t id)
{
    struct flow_entry **pp = &flow_buckets[(id >> 8) % FLOW_BUCKETS];

    while (*pp && (*pp)->id != id)
        pp = &(*pp)->next;
    return pp;
}

static void
flow_add(uint64_t id)
{
    struct flow_entry *e = xmalloc(sizeof(*e));

    e->id = id;
    pthread_mutex_lock(&flow_lock);
    struct flow_entry **pp = &flow_buckets[(id >> 8) % FLOW_BUCKETS];
    e->next = *pp;
    *pp = e;
    pthread_mutex_unlock(&flow_lock);
}

static void
flow_del(uint64_t id)
{
    pthread_mutex_lock(&flow_lock);
    struct flow_entry **pp = flow_slot(id), *e = *pp;
    if (e)
        *pp = e->next;
    pthread_mutex_unlock(&flow_lock);
    free(e);
}

bool
tp_flow_open(uint64_t flow_id)
{
    bool open;

    if (flow_id == 0)
        return false;
    pthread_mutex_lock(&flow_lock);
    open = *flow_slot(flow_id) != NULL;
    pthread_mutex_unlock(&flow_lock);
    return open;
}

/* ---- receive ----------------------------------------------------------- */

static bool
looks_like_response(const char *buf, size_t len)
{
    return len >= 4 && memcmp(buf, "SIP/", 4) == 0;
}

/* Parse one framed message into the worker arena and hand it up. */
static void
dispatch(struct tp *tp, const char *buf, size_t len, const struct tp_src *src)
{
    struct sip_msg msg;
    struct sip_error err = {0, NULL};
    struct tp_rx rx;
    int rc;

    tp->stats.rx_msgs++;
    tp->stats.rx_bytes += len;
    arena_reset(&tp->arena);
    memset(&msg, 0, sizeof(msg));
    rc = sip_msg_parse(&msg, buf, len, &tp->arena, &err);
    if (rc != 0) {
        tp->stats.rx_parse_errors++;
        if (looks_like_response(buf, len)) {
            /* A response we cannot parse cannot be matched: drop it. */
            log_debug(ROOM, "dropped bad response: %s proto=%s",
                      err.reason ? err.reason : "?", tp_proto_name(src->proto));
            return;
        }
        if (err.status == 0)
            err.status = 400;
        if (err.reason == NULL)
            err.reason = "Bad Request";
    }
    rx.msg = &msg;
    rx.err = rc == 0 ? NULL : &err;
    rx.raw = slice_make(buf, len);
    rx.src = *src;
    cur_rx_us = src->rx_us;
    tp->cfg.on_recv(tp, &rx, tp->cfg.arg);
    cur_rx_us = 0;
}

/* ---- UDP answer latency -------------------------------------------------
 *
 * Where a UDP client's response time goes, split at our socket: "queue" is
 * the kernel's receive time of a request datagram (SIOCGSTAMPNS, sampled)
 * to the worker's read, i.e. the worker was busy or not running; "handle"
 * is that read to a send (every UDP send made while handling it: for a
 * REGISTER, its answer), on the worker that read it or, with spreading,
 * the one it was handed to (the hop included). What the client
 * sees beyond queue + handle is its own. Logged at tp_free (notice). */

static unsigned
lat_bucket(uint64_t us)
{
    if (us < 4)
        return (unsigned)us;
    unsigned e = 63u - (unsigned)__builtin_clzll(us); /* >= 2 */
    unsigned i = 4 * (e - 1) + (unsigned)((us >> (e - 2)) & 3);
    return i < LAT_BUCKETS ? i : LAT_BUCKETS - 1;
}

/* Largest value of bucket i. */
static uint64_t
lat_upper(unsigned i)
{
    if (i < 4)
        return i;
    return ((uint64_t)(4 + i % 4 + 1) << (i / 4 - 1)) - 1;
}

static void
lat_add(struct lat_hist *h, uint64_t us)
{
    h->n++;
    h->b[lat_bucket(us)]++;
    if (us > h->max_us)
        h->max_us = us;
}

/* The q-th quantile (0 < q <= 1): its bucket's upper bound, at most max. */
static uint64_t
lat_quantile(const struct lat_hist *h, double q)
{
    uint64_t want = (uint64_t)((double)h->n * q + 0.999999), seen = 0;

    for (unsigned i = 0; i < LAT_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want && seen > 0)
            return lat_upper(i) < h->max_us ? lat_upper(i) : h->max_us;
    }
    return h->max_us;
}

static void
lat_log(const struct tp *tp, const char *what, const struct lat_hist *h)
{
    if (h->n == 0)
        return;
    log_notice(ROOM,
               "worker %u udp latency %s: n=%llu p50=%lluus p90=%lluus "
               "p99=%lluus p99.9=%lluus max=%lluus",
               tp->cfg.worker, what, (unsigned long long)h->n,
               (unsigned long long)lat_quantile(h, 0.5),
               (unsigned long long)lat_quantile(h, 0.9),
               (unsigned long long)lat_quantile(h, 0.99),
               (unsigned long long)lat_quantile(h, 0.999),
               (unsigned long long)h->max_us);
}

/* The time datagram just read from l waited in its socket: µs, or -1
 * (not sampled, or no stamp). */
static int64_t
udp_queue_us(struct tp *tp, struct tp_listener *l)
{
    struct timespec ks, now;
    uv_os_fd_t fd;

    if (++tp->kq_tick % UDP_KQ_EVERY != 0 || uv_fileno(&l->h.handle, &fd) < 0 ||
        ioctl(fd, SIOCGSTAMPNS, &ks) < 0 ||
        clock_gettime(CLOCK_REALTIME, &now) < 0)
        return -1;
    int64_t d = (int64_t)(now.tv_sec - ks.tv_sec) * 1000000 +
                (now.tv_nsec - ks.tv_nsec) / 1000;
    if (d < 0 || d > 60 * 1000000)
        return -1; /* no stamp yet, or the clock stepped */
    lat_add(&tp->lat_queue, (uint64_t)d);
    return d;
}

/* An answer left by UDP while a received message was being handled. */
static void
udp_lat_sent(struct tp *tp)
{
    if (cur_rx_us == 0)
        return; /* a timer's retransmission, a relayed send */
    uint64_t now = mono_us();
    uint64_t d = now > cur_rx_us ? now - cur_rx_us : 0;
    lat_add(&tp->lat_handle, d);
    if (cur_kq_us >= 0)
        lat_add(&tp->lat_total, d + (uint64_t)cur_kq_us);
}

/* ---- UDP --------------------------------------------------------------- */

static void
udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct tp_listener *l = h->data;

    (void)suggested;
    /* One buffer per worker: libuv calls recv_cb for each datagram before
     * asking for the next buffer. +1 to see oversized datagrams. */
    buf->base = l->tp->udp_buf;
    buf->len = SIP_MAX_MSG_LEN + 1;
}

/* RFC 3261 §25.1 token characters. */
static bool
token_char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
           (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("-.!%*_+`'~", ch) != NULL);
}

/* Answer a STUN Binding Request from the socket it came in on. */
static void
stun_answer(struct tp *tp, struct tp_listener *l, const char *p, size_t len,
            const struct tp_addr *from)
{
    uint8_t out[TP_STUN_ANSWER_MAX];
    struct tp_dest d = {.proto = TP_UDP, .addr = *from, .listener = l->index};
    int n = tp_stun_answer(p, len, from, out, sizeof(out));

    if (n < 0) {
        tp->stats.rx_dropped++;
        return;
    }
    if (tp_send(tp, &d, slice_make((const char *)out, (size_t)n), NULL) == 0)
        tp->stats.stun_answered++;
}

static void steer_flush(uv_check_t *h);

/* Hand a request datagram to worker w of our group (UDP spreading): it is
 * queued on steer_out[w] and posted at the end of this loop iteration
 * (steer_flush), so a burst of reads costs one lock and one wake-up per
 * worker. */
static void
udp_steer(struct tp *tp, unsigned w, const char *p, size_t len,
          const struct tp_src *src, int64_t kq_us)
{
    struct inbox_item *it = xmalloc(sizeof(*it) + len);

    memset(it, 0, sizeof(*it));
    it->src = *src;
    it->kq_us = kq_us;
    it->src.worker = w;
    it->len = len;
    memcpy(it->data, p, len);
    list_push_back(&tp->steer_out[w], &it->node);
    if (!tp->steer_armed) {
        uv_check_start(&tp->steer_check, steer_flush);
        tp->steer_armed = true;
    }
}

/* Post what udp_steer queued. A worker that has left the group (stopping)
 * gets nothing: its datagrams are handled here, as before the group
 * existed. Items past a full inbox are dropped, never handled here, where
 * a retransmission could start a second transaction. */
static void
steer_flush(uv_check_t *h)
{
    struct tp *tp = h->data;
    struct tp_group *g = tp->cfg.group;
    struct list_node local;

    uv_check_stop(h);
    tp->steer_armed = false;
    list_init(&local);
    pthread_rwlock_rdlock(&g->lock);
    for (unsigned w = 0; w < g->n; w++) {
        struct list_node *q = &tp->steer_out[w];
        struct tp *target = g->m[w];
        size_t posted = 0, dropped = 0;
        if (list_empty(q))
            continue;
        if (target == NULL) { /* left the group: stopping */
            while (!list_empty(q)) {
                struct list_node *n = q->next;
                list_remove(n);
                list_push_back(&local, n);
            }
            continue;
        }
        pthread_mutex_lock(&target->inbox_lock);
        while (!list_empty(q)) {
            struct list_node *n = q->next;
            list_remove(n);
            if (target->inbox_count >= INBOX_MAX) {
                free(container_of(n, struct inbox_item, node));
                dropped++;
                continue;
            }
            list_push_back(&target->inbox, n);
            target->inbox_count++;
            posted++;
        }
        pthread_mutex_unlock(&target->inbox_lock);
        if (posted)
            uv_async_send(&target->async);
        atomic_fetch_add_explicit(&g->steered[tp->cfg.worker], posted,
                                  memory_order_relaxed);
        tp->stats.rx_dropped += dropped;
    }
    pthread_rwlock_unlock(&g->lock);
    while (!list_empty(&local) && !tp->freeing) {
        struct list_node *n = local.next;
        struct inbox_item *it = container_of(n, struct inbox_item, node);
        list_remove(n);
        it->src.worker = tp->cfg.worker;
        cur_kq_us = it->kq_us;
        dispatch(tp, it->data, it->len, &it->src);
        cur_kq_us = -1;
        free(it);
    }
    while (!list_empty(&local)) {
        struct list_node *n = local.next;
        list_remove(n);
        free(container_of(n, struct inbox_item, node));
    }
}

int
tp_group_new(unsigned n, struct tp_group **out)
{
    struct tp_group *g;

    if (n == 0 || n > TP_MAX_WORKERS)
        return -EINVAL;
    g = xcalloc(1, sizeof(*g));
    pthread_rwlock_init(&g->lock, NULL);
    g->n = n;
    g->udp_spread = true;
    *out = g;
    return 0;
}

void
tp_group_set_udp_spread(struct tp_group *g, bool on)
{
    g->udp_spread = on;
}

/* w's connection count changed by delta (see struct tp_group). */
static void
group_count(struct tp *tp, unsigned w, long delta)
{
    if (tp->cfg.group)
        atomic_fetch_add_explicit(&tp->cfg.group->conns[w], delta,
                                  memory_order_relaxed);
}

void
tp_group_free(struct tp_group *g)
{
    if (g == NULL)
        return;
    pthread_rwlock_destroy(&g->lock);
    free(g);
}

int
tp_group_owner(const struct tp_group *g, const char *buf, size_t len)
{
    uint32_t h;

    if (g->n < 2 || sip_peek_call_id(buf, len, &h) < 0)
        return -1;
    return (int)(h % g->n);
}

uint64_t
tp_group_steered(const struct tp_group *g, unsigned w)
{
    if (g == NULL || w >= g->n)
        return 0;
    return atomic_load_explicit(&g->steered[w], memory_order_relaxed);
}

static void
udp_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
         const struct sockaddr *addr, unsigned flags)
{
    struct tp_listener *l = h->data;
    struct tp *tp = l->tp;
    struct tp_src src;

    if (nread == 0 || addr == NULL || tp->freeing)
        return; /* nothing more to read now */
    if (nread < 0) {
        log_debug(ROOM, "udp recv: %s", uv_strerror((int)nread));
        return;
    }
    if ((flags & UV_UDP_PARTIAL) || (size_t)nread > SIP_MAX_MSG_LEN) {
        tp->stats.rx_dropped++;
        return;
    }
    const char *p = buf->base;
    size_t len = (size_t)nread;
    memset(&src, 0, sizeof(src));
    src.proto = TP_UDP;
    src.local = l->addr;
    if (addr->sa_family == AF_INET) {
        memcpy(&src.remote.u.in4, addr, sizeof(src.remote.u.in4));
        src.remote.len = sizeof(src.remote.u.in4);
    } else {
        memcpy(&src.remote.u.in6, addr, sizeof(src.remote.u.in6));
        src.remote.len = sizeof(src.remote.u.in6);
    }
    /* STUN is told by its header, not by the first byte (a SIP method is
     * a token: it may start with a digit or -.!%*_+`'~). */
    switch (tp_stun_classify(p, len)) {
    case TP_STUN_BINDING_REQUEST:
        stun_answer(tp, l, p, len, &src.remote);
        return;
    case TP_STUN_OTHER:
        tp->stats.rx_dropped++;
        return;
    case TP_STUN_NONE:
        break;
    }
    /* Keep-alive datagrams (CRLF only) are not messages; nor is anything
     * whose first byte after them cannot start a request (a token) or a
     * response ("SIP/"): RFC 3489 STUN, junk. */
    size_t k = sip_skip_keepalive(p, len);
    if (k == len || !token_char(p[k])) {
        tp->stats.rx_dropped++;
        return;
    }
    src.flow_id = 0;
    src.listener = l->index;
    src.worker = tp->cfg.worker;
    src.rx_us = mono_us();
    int64_t kq = udp_queue_us(tp, l);
    if (tp->cfg.group && tp->cfg.group->udp_spread &&
        !looks_like_response(p + k, len - k)) {
        int w = tp_group_owner(tp->cfg.group, p + k, len - k);
        if (w >= 0 && (unsigned)w != tp->cfg.worker) {
            udp_steer(tp, (unsigned)w, p, len, &src, kq);
            return;
        }
    }
    cur_kq_us = kq;
    dispatch(tp, p, len, &src);
    cur_kq_us = -1;
}

/* ---- TCP connections ---------------------------------------------------- */

static size_t
bucket_of(const struct tp *tp, uint64_t id)
{
    return (size_t)(id >> 8) & tp->bucket_mask;
}

static struct tp_conn *
conn_find(const struct tp *tp, uint64_t id)
{
    const struct list_node *head, *n;

    if (id == 0 || tp_flow_worker(id) != tp->cfg.worker)
        return NULL;
    head = &tp->buckets[bucket_of(tp, id)];
    for (n = head->next; n != head; n = n->next) {
        struct tp_conn *c = container_of(n, struct tp_conn, hlink);
        if (c->id == id)
            return c;
    }
    return NULL;
}

bool
tp_flow_alive(const struct tp *tp, uint64_t flow_id)
{
    const struct tp_conn *c = conn_find(tp, flow_id);

    return c != NULL && !c->closing;
}

size_t
tp_conn_count(const struct tp *tp)
{
    return tp->nconns;
}

static void
conn_closed_cb(uv_handle_t *h)
{
    struct tp_conn *c = container_of((uv_tcp_t *)h, struct tp_conn, tcp);
    struct tp *tp = c->tp;

    if (c->report_close && !tp->freeing && tp->cfg.on_flow_closed)
        tp->cfg.on_flow_closed(tp, c->id, c->close_status, tp->cfg.arg);
    SSL_free(c->ssl);
    free(c->rbuf);
    free(c->pend);
    free(c);
    handle_closed(tp);
}

/* Start closing c: out of the table now, memory freed in the close cb. */
static void
conn_close(struct tp_conn *c, int status)
{
    struct tp *tp = c->tp;

    if (c->closing)
        return;
    c->closing = true;
    c->close_status = status;
    tq_cancel(&c->timer);
    tq_cancel(&c->quiet);
    if (c->src_held) {
        src_release(&c->remote);
        c->src_held = false;
    }
    if (c->id != 0) {
        list_remove(&c->hlink);
        list_remove(&c->link);
        tp->nconns--;
        flow_del(c->id);
        group_count(tp, tp->cfg.worker, -1);
    }
    uv_close((uv_handle_t *)&c->tcp, conn_closed_cb);
}

int
tp_flow_close(struct tp *tp, uint64_t flow_id)
{
    struct tp_conn *c = conn_find(tp, flow_id);

    if (c == NULL || c->closing)
        return -ENOENT;
    conn_close(c, 0);
    return 0;
}

static void
on_conn_timer(struct tq_entry *e)
{
    struct tp_conn *c = container_of(e, struct tp_conn, timer);
    struct tp *tp = c->tp;
    unsigned long long id = (unsigned long long)c->id;

    switch (c->phase) {
    case PHASE_CONNECT:
        log_debug(ROOM, "tcp flow %llu: connect timeout", id);
        break;
    case PHASE_FIRST:
        if (c->tls_client) {
            char who[TP_ADDRSTRLEN];
            tp->stats.tls_failed++;
            log_limited(tp, &tp->log_tls,
                        "tls: connection to %s failed: handshake not "
                        "complete within %u ms",
                        tp_addr_format(&c->remote, who, sizeof(who)),
                        tp->cfg.first_message_ms);
            break;
        }
        tp->stats.conns_closed_slow++;
        log_debug(ROOM,
                  "tcp flow %llu: no complete message within %u ms "
                  "of the accept, closing",
                  id, tp->cfg.first_message_ms);
        break;
    case PHASE_MSG:
        tp->stats.conns_closed_slow++;
        log_debug(ROOM,
                  "tcp flow %llu: message not complete within %u ms, "
                  "closing",
                  id, tp->cfg.message_ms);
        break;
    case PHASE_IDLE:
        log_debug(ROOM, "tcp flow %llu: idle timeout", id);
        break;
    }
    conn_close(c, UV_ETIMEDOUT);
}

/* Put c's timer on the deadline of phase ph (from now); a phase whose
 * timeout is 0 has no deadline. */
static void
conn_arm(struct tp_conn *c, enum conn_phase ph)
{
    struct tp *tp = c->tp;
    struct tq_fifo *f = NULL;

    c->phase = ph;
    if (c->closing)
        return;
    switch (ph) {
    case PHASE_CONNECT:
        f = &tp->connect_fifo;
        break;
    case PHASE_FIRST:
        f = tp->cfg.first_message_ms ? &tp->first_fifo : NULL;
        break;
    case PHASE_MSG:
        f = tp->cfg.message_ms ? &tp->msg_fifo : NULL;
        break;
    case PHASE_IDLE:
        f = tp->cfg.idle_timeout_ms ? &tp->idle_fifo : NULL;
        break;
    }
    if (f)
        tq_fifo_add(f, &c->timer, tp_now_ms(tp));
    else
        tq_cancel(&c->timer);
}

/* After a read was cut into msgs messages: pick the deadline. Before its
 * first message an accepted connection keeps the one set at the accept;
 * a partial message keeps the one set when it started (a byte now and
 * then does not extend it); otherwise the idle timeout starts again. On
 * TLS a record that SSL holds half read is a partial message too: its
 * plaintext is not out yet, and a peer dripping it must meet the message
 * deadline, not the idle timeout. */
static void
conn_after_read(struct tp_conn *c, size_t msgs)
{
    bool partial =
        (c->rlen > 0 && sip_skip_keepalive(c->rbuf, c->rlen) < c->rlen) ||
        (c->ssl && SSL_has_pending(c->ssl));

    if (c->phase == PHASE_FIRST && msgs == 0)
        return;
    if (partial && c->tp->cfg.message_ms > 0) {
        if (c->phase != PHASE_MSG || msgs > 0)
            conn_arm(c, PHASE_MSG); /* a new message started */
        return;
    }
    conn_arm(c, PHASE_IDLE);
}

static void on_tls_quiet(struct tq_entry *e);

/* A new connection object with its handle initialised (counted). */
static struct tp_conn *
conn_new(struct tp *tp)
{
    struct tp_conn *c = xcalloc(1, sizeof(*c));

    c->tp = tp;
    c->listener = -1;
    list_init(&c->link);
    list_init(&c->hlink);
    tq_entry_init(&c->timer, on_conn_timer);
    tq_entry_init(&c->quiet, on_tls_quiet);
    uv_tcp_init(tp->loop, &c->tcp);
    tp->open_handles++;
    return c;
}

static void
conn_register(struct tp_conn *c)
{
    struct tp *tp = c->tp;
    uint64_t seq = atomic_fetch_add(&next_flow_seq, 1);

    c->id = (seq << 8) | (tp->cfg.worker & 0xff);
    list_push_back(&tp->buckets[bucket_of(tp, c->id)], &c->hlink);
    list_push_back(&tp->conns, &c->link);
    tp->nconns++;
    flow_add(c->id);
    c->report_close = true;
}

/* Make room in the plaintext buffer (doubling up to TCP_RBUF_CAP). */
static void
rbuf_grow(struct tp_conn *c)
{
    if (c->ralloc - c->rlen < TCP_RBUF_MIN / 2 && c->ralloc < TCP_RBUF_CAP) {
        size_t n = c->ralloc ? c->ralloc * 2 : TCP_RBUF_MIN;
        if (n > TCP_RBUF_CAP)
            n = TCP_RBUF_CAP;
        c->rbuf = xrealloc(c->rbuf, n);
        c->ralloc = n;
    }
}

static void
tcp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct tp_conn *c = container_of((uv_tcp_t *)h, struct tp_conn, tcp);

    (void)suggested;
    rbuf_grow(c);
    /* len 0 when full: libuv then reports UV_ENOBUFS and we close. */
    buf->base = c->rbuf + c->rlen;
    buf->len = c->ralloc - c->rlen;
}

static void
send_pong(struct tp_conn *c)
{
    static const char crlf[2] = {'\r', '\n'};
    struct tp_dest d = {.proto = c->ssl ? TP_TLS : TP_TCP, .flow_id = c->id};

    c->tp->stats.pings_answered++;
    tp_send(c->tp, &d, slice_make(crlf, 2), NULL);
}

/* Cut and dispatch every whole message in the buffer; returns how many. */
static size_t
conn_process(struct tp_conn *c)
{
    struct tp *tp = c->tp;
    size_t off = 0, msgs = 0;
    struct tp_src src;

    memset(&src, 0, sizeof(src));
    src.proto = c->ssl ? TP_TLS : TP_TCP;
    src.local = c->local;
    src.remote = c->remote;
    src.flow_id = c->id;
    src.listener = c->listener;
    src.worker = tp->cfg.worker;
    /* Read just now (conn_process runs from the read callback): one
     * timestamp for every message of this read. */
    src.rx_us = mono_us();

    while (!c->closing && !tp->freeing && off < c->rlen) {
        const char *p = c->rbuf + off;
        size_t n = c->rlen - off;
        size_t k = sip_skip_keepalive(p, n);
        if (k == n) {
            /* Only CR/LF so far: answer whole CRLFCRLF pings, keep a
             * partial one until the rest arrives. */
            size_t whole = k - k % 4;
            if (whole > 0)
                send_pong(c);
            off += whole;
            break;
        }
        if (k >= 4)
            send_pong(c);
        off += k;
        p += k;
        n -= k;
        struct sip_error err = {0, NULL};
        long fl = sip_frame(p, n, &err);
        if (fl < 0 || (fl == 0 && n >= SIP_MAX_MSG_LEN)) {
            log_debug(ROOM, "tcp flow %llu: cannot frame (%s), closing",
                      (unsigned long long)c->id,
                      err.reason ? err.reason : "too big");
            tp->stats.conns_closed_garbage++;
            conn_close(c, -EPROTO);
            return msgs;
        }
        if (fl == 0)
            break;
        off += (size_t)fl;
        msgs++;
        dispatch(tp, p, (size_t)fl, &src);
    }
    if (c->closing || tp->freeing)
        return msgs;
    if (off > 0) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
    return msgs;
}

static void
tcp_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct tp_conn *c = container_of((uv_tcp_t *)s, struct tp_conn, tcp);

    (void)buf;
    if (c->closing || c->tp->freeing)
        return;
    if (nread < 0) {
        conn_close(c, nread == UV_EOF ? 0 : (int)nread);
        return;
    }
    if (nread == 0)
        return;
    c->rlen += (size_t)nread;
    size_t msgs = conn_process(c);
    if (!c->closing && !c->tp->freeing)
        conn_after_read(c, msgs);
}

/* ---- TLS connections ------------------------------------------------------
 */

/* The BIO's sink: ciphertext SSL wrote during the current call. */
static void
tls_out(void *arg, const char *p, size_t len)
{
    struct tp *tp = arg;

    if (buf_append(&tp->tls_out, p, len) < 0)
        tp->stats.tx_errors++; /* cannot happen: cap > 2 records/msg */
}

static int conn_write(struct tp_conn *c, const struct slice *parts,
                      size_t count, size_t total);
static void tls_busy(struct tp_conn *c);

/* Write what SSL produced during the last call on c (handshake flights,
 * alerts, records) as one uv_write. */
static int
tls_flush(struct tp_conn *c)
{
    struct tp *tp = c->tp;
    int rc = 0;

    if (tp->tls_out.len == 0)
        return 0;
    if (!c->closing) {
        struct slice s = buf_slice(&tp->tls_out);
        rc = conn_write(c, &s, 1, s.len);
    }
    buf_reset(&tp->tls_out);
    return rc;
}

static void
tls_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct tp_conn *c = container_of((uv_tcp_t *)h, struct tp_conn, tcp);

    (void)suggested;
    /* Consumed within the read callback: one buffer per worker. */
    buf->base = c->tp->tls_rbuf;
    buf->len = TLS_RBUF_LEN;
}

/* The handshake failed or the peer spoke something else (plain SIP, TLS
 * 1.0/1.1, an alert for our certificate): close, and say so at most once
 * a second per worker. */
static void
tls_fail(struct tp_conn *c, const char *why)
{
    struct tp *tp = c->tp;
    char who[TP_ADDRSTRLEN], reason[160];

    if (why == NULL)
        why = tp_tls_fail_reason(c->ssl, reason, sizeof(reason));
    ERR_clear_error();
    tp->stats.tls_failed++;
    log_limited(tp, &tp->log_tls,
                c->tls_client ? "tls: connection to %s failed: %s"
                              : "tls: connection from %s closed: %s",
                tp_addr_format(&c->remote, who, sizeof(who)), why);
    conn_close(c, -EPROTO);
}

/* Outbound TLS: the handshake completed; write what was sent meanwhile,
 * one SSL_write per SIP_MAX_MSG_LEN (the worker's ciphertext buffer holds
 * that much). */
static void
tls_pend_flush(struct tp_conn *c)
{
    char *p = c->pend;
    size_t len = c->pend_len;

    c->pend = NULL;
    c->pend_len = 0;
    for (size_t off = 0; off < len && !c->closing;) {
        size_t n = len - off < SIP_MAX_MSG_LEN ? len - off : SIP_MAX_MSG_LEN;
        int w = SSL_write(c->ssl, p + off, (int)n);
        if (w <= 0) {
            buf_reset(&c->tp->tls_out);
            ERR_clear_error();
            conn_close(c, -EPROTO);
            break;
        }
        tls_flush(c);
        off += (size_t)w;
    }
    free(p);
}

/* One step of the handshake on what was read (both sides): 1 done, 0 it
 * wants more, -1 failed (c closed, logged). */
static int
tls_handshake(struct tp_conn *c)
{
    struct tp *tp = c->tp;
    int r = SSL_do_handshake(c->ssl);
    int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);

    tls_flush(c);
    if (c->closing)
        return -1; /* the write failed */
    if (r != 1) {
        if (e == SSL_ERROR_WANT_READ)
            return 0; /* the deadline keeps running */
        tls_fail(c, NULL);
        return -1;
    }
    c->tls_ready = true;
    tp->stats.tls_handshakes++;
    if (c->tls_client) {
        /* We spoke first: no first-message deadline from now on. */
        conn_arm(c, PHASE_IDLE);
        tls_pend_flush(c);
        if (!c->closing)
            tls_busy(c);
    }
    return 1;
}

/* Decrypt what was read into the plaintext buffer and process every whole
 * message; returns the count. Stops when SSL wants more ciphertext. */
static size_t
tls_drain(struct tp_conn *c)
{
    struct tp *tp = c->tp;
    size_t msgs = 0;

    for (;;) {
        if (c->closing || tp->freeing)
            return msgs;
        rbuf_grow(c);
        if (c->rlen == c->ralloc) {
            /* Full: cut what we can; a message larger than the buffer
             * cannot frame and closes the connection there. */
            size_t before = c->rlen;
            msgs += conn_process(c);
            if (c->closing || tp->freeing)
                return msgs;
            if (c->rlen == before) {
                tp->stats.conns_closed_garbage++;
                conn_close(c, -EPROTO);
                return msgs;
            }
            continue;
        }
        int n = SSL_read(c->ssl, c->rbuf + c->rlen, (int)(c->ralloc - c->rlen));
        int e = n > 0 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, n);
        tls_flush(c);
        if (n > 0) {
            c->rlen += (size_t)n;
            /* All ciphertext taken and no record left inside SSL: the
             * next SSL_read could only ask for more. */
            if (c->tlsio.in_len == 0 && !SSL_has_pending(c->ssl))
                break;
            continue;
        }
        if (e == SSL_ERROR_WANT_READ)
            break;
        /* close_notify or a fatal error: keep what came before it. */
        msgs += conn_process(c);
        if (!c->closing && !tp->freeing) {
            if (e == SSL_ERROR_ZERO_RETURN) {
                conn_close(c, 0);
            } else {
                ERR_clear_error();
                conn_close(c, -EPROTO);
            }
        }
        return msgs;
    }
    return msgs + conn_process(c);
}

/* c used its buffers just now: they stay until it is quiet for
 * TLS_QUIET_MS. A busy phone (a REGISTER every few ms in the benchmark, a
 * call's messages) so reuses them instead of a malloc and free of ~17 KiB
 * per record and direction (what SSL_MODE_RELEASE_BUFFERS did), and an
 * idle one holds none. */
static void
tls_busy(struct tp_conn *c)
{
    struct tp *tp = c->tp;

    tq_fifo_add(&tp->quiet_fifo, &c->quiet, tp_now_ms(tp));
}

/* Quiet for TLS_QUIET_MS: free OpenSSL's record buffers and the plaintext
 * buffer, so that an idle connection costs its SSL object and socket only
 * (100,000 idle phones). SSL_free_buffers refuses while a record is half
 * read (it is then kept, and the message deadline bounds how long). */
static void
on_tls_quiet(struct tq_entry *e)
{
    struct tp_conn *c = container_of(e, struct tp_conn, quiet);

    if (c->closing || !c->ssl)
        return;
    if (SSL_free_buffers(c->ssl) == 1)
        c->tp->stats.tls_released++;
    else
        tls_busy(c); /* try again later */
    if (c->rlen == 0 && c->rbuf) {
        free(c->rbuf);
        c->rbuf = NULL;
        c->ralloc = 0;
    }
}

static void
tls_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct tp_conn *c = container_of((uv_tcp_t *)s, struct tp_conn, tcp);
    struct tp *tp = c->tp;

    if (c->closing || tp->freeing)
        return;
    if (nread < 0) {
        if (!c->tls_ready)
            tls_fail(c, nread == UV_EOF ? "closed during the handshake"
                                        : uv_strerror((int)nread));
        else
            conn_close(c, nread == UV_EOF ? 0 : (int)nread);
        return;
    }
    if (nread == 0)
        return;
    tls_busy(c);
    c->tlsio.in = buf->base;
    c->tlsio.in_len = (size_t)nread;
    if (!c->tls_ready && tls_handshake(c) != 1) {
        c->tlsio.in_len = 0;
        return;
    }
    size_t msgs = tls_drain(c);
    c->tlsio.in_len = 0;
    if (c->closing || tp->freeing)
        return;
    conn_after_read(c, msgs);
}

/* Send one message on a TLS connection: one SSL_write (the parts joined),
 * its records written at once. */
static int
tls_send(struct tp_conn *c, const struct slice *parts, size_t count,
         size_t total)
{
    struct tp *tp = c->tp;
    const char *p;
    int n, rc;

    if (!c->tls_ready && c->tls_client) {
        /* Outbound, handshake running: written when it completes. */
        if (c->pend_len + total > tp->cfg.max_write_queue)
            return -ENOBUFS;
        c->pend = xrealloc(c->pend, c->pend_len + total);
        for (size_t i = 0; i < count; i++) {
            if (parts[i].len)
                memcpy(c->pend + c->pend_len, parts[i].ptr, parts[i].len);
            c->pend_len += parts[i].len;
        }
        return 0;
    }
    if (!c->tls_ready)
        return -ENOTCONN; /* nothing to say before the phone spoke */
    if (count == 1) {
        p = parts[0].ptr;
    } else {
        size_t off = 0;
        for (size_t i = 0; i < count; i++) {
            if (parts[i].len)
                memcpy(tp->tls_plain + off, parts[i].ptr, parts[i].len);
            off += parts[i].len;
        }
        p = tp->tls_plain;
    }
    c->tlsio.in_len = 0;
    n = SSL_write(c->ssl, p, (int)total);
    if (n <= 0) {
        buf_reset(&tp->tls_out);
        ERR_clear_error();
        conn_close(c, -EPROTO);
        return -EPROTO;
    }
    rc = tls_flush(c);
    if (!c->closing)
        tls_busy(c); /* SSL_write took its write buffer */
    return rc;
}

static void
fill_names(struct tp_conn *c)
{
    int len = (int)sizeof(c->local.u);

    if (uv_tcp_getsockname(&c->tcp, &c->local.u.sa, &len) == 0)
        c->local.len = (socklen_t)len;
    len = (int)sizeof(c->remote.u);
    if (uv_tcp_getpeername(&c->tcp, &c->remote.u.sa, &len) == 0)
        c->remote.len = (socklen_t)len;
}

/* Take up an accepted socket c on tp: the limits, then the reads (TLS:
 * the handshake). counted: a worker that handed c over already counted it
 * in the group as ours. */
static void
conn_admit(struct tp *tp, struct tp_conn *c, const struct tp_listener *l,
           bool counted)
{
    /* Refusals below close an accepted socket that was never registered
     * (not reported as a flow). */
    if (tp->nconns >= tp->cfg.max_conns) {
        tp->stats.conns_rejected++;
        log_limited(tp, &tp->log_max_conns,
                    "max_connections %zu reached on worker %u: connection "
                    "refused",
                    tp->cfg.max_conns, tp->cfg.worker);
        goto refuse;
    }
    fill_names(c);
    if (c->remote.len == 0)
        goto refuse; /* reset before we could ask who it was */
    if (!src_acquire(&c->remote, tp->cfg.max_per_source)) {
        char who[TP_ADDRSTRLEN];
        tp->stats.conns_rejected_source++;
        log_limited(tp, &tp->log_per_source,
                    "%s has %zu connections (tcp_max_per_source): "
                    "connection refused",
                    tp_addr_host(&c->remote, who, sizeof(who)),
                    tp->cfg.max_per_source);
        goto refuse;
    }
    c->src_held = true;
    tp->stats.conns_accepted++;
    c->listener = l->index;
    uv_tcp_nodelay(&c->tcp, 1);
    conn_register(c);
    if (!counted)
        group_count(tp, tp->cfg.worker, 1);
    conn_arm(c, tp->cfg.first_message_ms ? PHASE_FIRST : PHASE_IDLE);
    if (l->proto == TP_TLS) {
        c->tlsio.out = tls_out;
        c->tlsio.arg = tp;
        c->ssl = tp_tls_ssl_new(tp->cfg.tls, &c->tlsio);
        if (!c->ssl ||
            uv_read_start((uv_stream_t *)&c->tcp, tls_alloc, tls_read) != 0)
            conn_close(c, -EIO);
        return;
    }
    if (uv_read_start((uv_stream_t *)&c->tcp, tcp_alloc, tcp_read) != 0)
        conn_close(c, -EIO);
    return;
refuse:
    if (counted)
        group_count(tp, tp->cfg.worker, -1);
    conn_close(c, 0);
}

static int inbox_push(struct tp *target, struct inbox_item *it);

/* The kernel spreads new connections over the workers' listening sockets
 * by a hash of the 4-tuple, so a few dozen phones (or a load test) can
 * land 60/40 on two workers, and a connection stays where it is. A
 * worker that accepts a connection while another worker of its group
 * has fewer hands the socket over (a dup of the descriptor through that
 * worker's inbox) before reading from it: connections stay within one of
 * each other over the workers, as Kamailio's tcp_main hands each one to
 * its least busy worker. Returns true when c went (and was closed here). */
static bool
conn_hand_over(struct tp *tp, struct tp_conn *c, const struct tp_listener *l)
{
    struct tp_group *g = tp->cfg.group;
    unsigned self = tp->cfg.worker, best = self;
    long least;
    uv_os_fd_t ofd;
    int fd, rc = -1;

    if (g == NULL || g->n < 2)
        return false;
    least = atomic_load_explicit(&g->conns[self], memory_order_relaxed);
    for (unsigned w = 0; w < g->n; w++) {
        long n = atomic_load_explicit(&g->conns[w], memory_order_relaxed);
        if (w != self && n < least) {
            least = n;
            best = w;
        }
    }
    if (best == self)
        return false;
    if (uv_fileno((uv_handle_t *)&c->tcp, &ofd) != 0 ||
        (fd = fcntl(ofd, F_DUPFD_CLOEXEC, 0)) < 0)
        return false;
    struct inbox_item *it = xcalloc(1, sizeof(*it));
    it->conn = true;
    it->conn_fd = fd;
    it->conn_listener = l->index;
    pthread_rwlock_rdlock(&g->lock);
    if (g->m[best] != NULL) {
        atomic_fetch_add_explicit(&g->conns[best], 1, memory_order_relaxed);
        rc = inbox_push(g->m[best], it); /* frees it when full */
        if (rc < 0)
            atomic_fetch_sub_explicit(&g->conns[best], 1, memory_order_relaxed);
    } else {
        free(it); /* left the group: stopping */
    }
    pthread_rwlock_unlock(&g->lock);
    if (rc < 0) {
        close(fd);
        return false;
    }
    tp->stats.conns_handed_over++;
    conn_close(c, 0); /* our descriptor; the socket lives on in fd */
    return true;
}

/* A socket another worker accepted for us (conn_hand_over). */
static void
conn_adopt(struct tp *tp, int fd, int listener)
{
    struct tp_conn *c;

    if (listener < 0 || (size_t)listener >= tp->nlisteners ||
        !tp_proto_stream(tp->listeners[listener]->proto)) {
        close(fd); /* cannot happen: every worker has the same listeners */
        group_count(tp, tp->cfg.worker, -1);
        return;
    }
    c = conn_new(tp);
    if (uv_tcp_open(&c->tcp, fd) != 0) {
        close(fd);
        group_count(tp, tp->cfg.worker, -1);
        conn_close(c, 0);
        return;
    }
    conn_admit(tp, c, tp->listeners[listener], true);
}

static void
on_connection(uv_stream_t *server, int status)
{
    struct tp_listener *l = server->data;
    struct tp *tp = l->tp;
    struct tp_conn *c;

    if (tp->freeing)
        return;
    if (status < 0) {
        /* libuv already did the EMFILE spare-fd accept-and-close. */
        log_warn(ROOM, "accept: %s", uv_strerror(status));
        return;
    }
    c = conn_new(tp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c, 0);
        return;
    }
    if (conn_hand_over(tp, c, l))
        return;
    conn_admit(tp, c, l, false);
}

static void
on_connect(uv_connect_t *req, int status)
{
    struct tp_conn *c = container_of(req, struct tp_conn, connect_req);
    struct tp *tp = c->tp;

    if (c->closing || tp->freeing)
        return; /* UV_ECANCELED from our own close */
    c->connecting = false;
    if (status < 0) {
        log_debug(ROOM, "tcp flow %llu: connect: %s", (unsigned long long)c->id,
                  uv_strerror(status));
        conn_close(c, status);
        return;
    }
    fill_names(c);
    if (c->ssl) {
        /* The handshake has the deadline of an accepted connection's. */
        conn_arm(c, tp->cfg.first_message_ms ? PHASE_FIRST : PHASE_IDLE);
        if (uv_read_start((uv_stream_t *)&c->tcp, tls_alloc, tls_read) != 0) {
            conn_close(c, -EIO);
            return;
        }
        tls_busy(c);
        c->tlsio.in_len = 0;
        (void)tls_handshake(c); /* the ClientHello */
        return;
    }
    conn_arm(c, PHASE_IDLE); /* we speak first: no first-message deadline */
    if (uv_read_start((uv_stream_t *)&c->tcp, tcp_alloc, tcp_read) != 0)
        conn_close(c, -EIO);
}

/* The host of our first listener of proto (TCP or TLS) and addr's family
 * bound to one address (not the wildcard), port 0, in *out: an outbound
 * connection leaves from the address we listen on and name in our Via and
 * Record-Route (a [cluster] node is recognised by its source host), not
 * from whatever address the route picks. false: let the kernel choose. */
static bool
conn_source(const struct tp *tp, enum tp_proto proto,
            const struct tp_addr *addr, struct tp_addr *out)
{
    static const uint8_t any6[16];
    int fam = addr->u.sa.sa_family;

    for (size_t i = 0; i < tp->nlisteners; i++) {
        const struct tp_listener *l = tp->listeners[i];
        if (l->proto != proto || l->addr.u.sa.sa_family != fam)
            continue;
        if (fam == AF_INET && l->addr.u.in4.sin_addr.s_addr == INADDR_ANY)
            return false;
        if (fam == AF_INET6 &&
            memcmp(&l->addr.u.in6.sin6_addr, any6, sizeof(any6)) == 0)
            return false;
        *out = l->addr;
        if (fam == AF_INET)
            out->u.in4.sin_port = 0;
        else
            out->u.in6.sin6_port = 0;
        return true;
    }
    return false;
}

static void tls_bufs(struct tp *tp);

/* Open a connection to addr (proto TCP, or TLS: a client SSL object that
 * verifies addr's host). Registered at once: sends queue on it. */
static int
conn_connect(struct tp *tp, enum tp_proto proto, const struct tp_addr *addr,
             struct tp_conn **out)
{
    struct tp_conn *c;
    struct tp_addr from;
    int rc;

    if (proto == TP_TLS && !tp->cfg.tls)
        return -EPROTONOSUPPORT; /* no [tls] context: no tls: listener */
    if (tp->nconns >= tp->cfg.max_conns)
        return -EMFILE;
    c = conn_new(tp);
    c->remote = *addr;
    c->connecting = true;
    if (proto == TP_TLS) {
        char host[TP_ADDRSTRLEN];
        tls_bufs(tp);
        c->tls_client = true;
        c->tlsio.out = tls_out;
        c->tlsio.arg = tp;
        c->ssl = tp_tls_client_new(tp->cfg.tls, &c->tlsio,
                                   tp_addr_host(addr, host, sizeof(host)));
        if (!c->ssl) {
            conn_close(c, -ENOMEM); /* not registered: not reported */
            return -ENOMEM;
        }
    }
    rc = conn_source(tp, proto, addr, &from)
             ? uv_tcp_bind(&c->tcp, &from.u.sa, 0)
             : 0;
    if (rc < 0) {
        conn_close(c, rc); /* not registered: not reported */
        return rc;
    }
    rc = uv_tcp_connect(&c->connect_req, &c->tcp, &addr->u.sa, on_connect);
    if (rc < 0) {
        conn_close(c, rc); /* not registered: not reported */
        return rc;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    conn_register(c);
    group_count(tp, tp->cfg.worker, 1);
    conn_arm(c, PHASE_CONNECT);
    *out = c;
    return 0;
}

/* An open (or opening) connection to addr over TLS (tls) or plain TCP.
 * O(connections): a linear scan, fine for the hundreds of flows a worker
 * holds; connect-out is rare next to sends on a known flow id. */
static struct tp_conn *
conn_by_addr(const struct tp *tp, const struct tp_addr *addr, bool tls)
{
    const struct list_node *n;

    for (n = tp->conns.next; n != &tp->conns; n = n->next) {
        struct tp_conn *c = container_of(n, struct tp_conn, link);
        if (!c->closing && (c->ssl != NULL) == tls &&
            tp_addr_equal(&c->remote, addr))
            return c;
    }
    return NULL;
}

static void
on_write(uv_write_t *req, int status)
{
    struct wreq *w = container_of(req, struct wreq, req);
    struct tp_conn *c =
        container_of((uv_tcp_t *)req->handle, struct tp_conn, tcp);

    free(w);
    if (status < 0 && status != UV_ECANCELED) {
        c->tp->stats.tx_errors++;
        conn_close(c, status);
    }
}

/* Queue bytes (parts joined) on c's socket; over the write-queue cap the
 * peer does not read and c is closed. When nothing is queued the bytes
 * are written at once from the caller's parts (one writev, no copy, no
 * write request); only what the socket does not take is copied and
 * queued. */
static int
conn_write(struct tp_conn *c, const struct slice *parts, size_t count,
           size_t total)
{
    struct tp *tp = c->tp;
    struct slice rest[8];
    int rc;

    if (c->tcp.write_queue_size == 0 && !c->connecting && count <= 8) {
        uv_buf_t bufs[8];
        for (size_t i = 0; i < count; i++)
            bufs[i] = uv_buf_init((char *)parts[i].ptr, (unsigned)parts[i].len);
        /* UV_EAGAIN also while libuv still has writes queued. */
        rc = uv_try_write((uv_stream_t *)&c->tcp, bufs, (unsigned)count);
        if (rc < 0 && rc != UV_EAGAIN) {
            conn_close(c, rc);
            return rc;
        }
        if (rc > 0) {
            size_t skip = (size_t)rc, n = 0;
            if (skip == total)
                return 0;
            for (size_t i = 0; i < count; i++) {
                if (skip >= parts[i].len) {
                    skip -= parts[i].len;
                    continue;
                }
                rest[n++] =
                    slice_make(parts[i].ptr + skip, parts[i].len - skip);
                skip = 0;
            }
            parts = rest;
            count = n;
            total -= (size_t)rc;
        }
    }
    if (c->tcp.write_queue_size + total > tp->cfg.max_write_queue) {
        log_warn(ROOM, "tcp flow %llu: peer does not read, closing",
                 (unsigned long long)c->id);
        conn_close(c, -ENOBUFS);
        return -ENOBUFS;
    }
    struct wreq *w = xmalloc(sizeof(*w) + total);
    size_t off = 0;
    for (size_t i = 0; i < count; i++) {
        if (parts[i].len)
            memcpy(w->data + off, parts[i].ptr, parts[i].len);
        off += parts[i].len;
    }
    w->len = total;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)total);
    /* While connecting, libuv queues the write until the connect ends. */
    rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc < 0) {
        free(w);
        conn_close(c, rc);
        return rc;
    }
    return 0;
}

/* The worker's TLS buffers, allocated with its first TLS listener or
 * outbound TLS connection. */
static void
tls_bufs(struct tp *tp)
{
    if (!tp->tls_rbuf) {
        tp->tls_rbuf = xmalloc(TLS_RBUF_LEN);
        tp->tls_plain = xmalloc(SIP_MAX_MSG_LEN);
    }
}

static int
tcp_send(struct tp *tp, const struct tp_dest *dst, const struct slice *parts,
         size_t count, size_t total, uint64_t *flow_out)
{
    struct tp_conn *c = conn_find(tp, dst->flow_id);
    int rc;

    if (c != NULL && c->closing)
        c = NULL;
    if (c == NULL) {
        /* No address: a phone's flow that is gone (phones cannot accept
         * connections). Else reuse or open one of dst's transport. */
        if (dst->addr.len == 0)
            return -ENOTCONN;
        c = conn_by_addr(tp, &dst->addr, dst->proto == TP_TLS);
        if (c == NULL) {
            rc = conn_connect(tp, dst->proto, &dst->addr, &c);
            if (rc < 0)
                return rc;
        }
    }
    rc = c->ssl ? tls_send(c, parts, count, total)
                : conn_write(c, parts, count, total);
    if (rc < 0)
        return rc;
    if (flow_out)
        *flow_out = c->id;
    return 0;
}

/* ---- UDP send ------------------------------------------------------------ */

static void
on_udp_sent(uv_udp_send_t *req, int status)
{
    struct udp_sreq *r = container_of(req, struct udp_sreq, req);

    (void)status;
    free(r);
}

static struct tp_listener *
udp_pick(const struct tp *tp, const struct tp_dest *dst)
{
    int fam = dst->addr.u.sa.sa_family;

    if (dst->listener >= 0 && (size_t)dst->listener < tp->nlisteners) {
        struct tp_listener *l = tp->listeners[dst->listener];
        if (l->proto == TP_UDP && l->addr.u.sa.sa_family == fam)
            return l;
    }
    for (size_t i = 0; i < tp->nlisteners; i++) {
        struct tp_listener *l = tp->listeners[i];
        if (l->proto == TP_UDP && l->addr.u.sa.sa_family == fam)
            return l;
    }
    return NULL;
}

static int
udp_send(struct tp *tp, const struct tp_dest *dst, const struct slice *parts,
         size_t count, size_t total)
{
    struct tp_listener *l;
    uv_buf_t bufs[8];
    int rc;

    if (dst->addr.len == 0)
        return -EDESTADDRREQ;
    l = udp_pick(tp, dst);
    if (l == NULL)
        return -EAFNOSUPPORT;
    udp_lat_sent(tp);
    if (count <= 8) {
        for (size_t i = 0; i < count; i++)
            bufs[i] = uv_buf_init((char *)parts[i].ptr, (unsigned)parts[i].len);
        rc = uv_udp_try_send(&l->h.udp, bufs, (unsigned)count, &dst->addr.u.sa);
        if (rc >= 0)
            return 0;
        if (rc != UV_EAGAIN)
            return rc;
    }
    /* Socket buffer full (or many parts): copy and queue. */
    struct udp_sreq *r = xmalloc(sizeof(*r) + total);
    size_t off = 0;
    for (size_t i = 0; i < count; i++) {
        if (parts[i].len)
            memcpy(r->data + off, parts[i].ptr, parts[i].len);
        off += parts[i].len;
    }
    r->len = total;
    uv_buf_t b = uv_buf_init(r->data, (unsigned)total);
    rc = uv_udp_send(&r->req, &l->h.udp, &b, 1, &dst->addr.u.sa, on_udp_sent);
    if (rc < 0)
        free(r);
    return rc;
}

int
tp_sendv(struct tp *tp, const struct tp_dest *dst, const struct slice *parts,
         size_t count, uint64_t *flow_out)
{
    size_t total = 0;
    int rc;

    for (size_t i = 0; i < count; i++)
        total += parts[i].len;
    if (total > SIP_MAX_MSG_LEN)
        return -EMSGSIZE;
    if (tp->freeing)
        return -ESHUTDOWN;
    if (flow_out)
        *flow_out = 0;
    if (tp_proto_stream(dst->proto) && dst->flow_id && tp->relay &&
        tp_flow_worker(dst->flow_id) != tp->cfg.worker) {
        /* The flow lives on another worker (a connection stays on its
         * worker): hand the bytes over. If that fails (worker gone, inbox
         * full) fall through: tcp_send connects to dst->addr. */
        rc = tp->relay(tp, tp_flow_worker(dst->flow_id), dst, parts, count,
                       tp->relay_arg);
        if (rc == 0) {
            if (flow_out)
                *flow_out = dst->flow_id;
            return 0;
        }
    }
    if (dst->proto == TP_UDP)
        rc = udp_send(tp, dst, parts, count, total);
    else if (tp_proto_stream(dst->proto))
        rc = tcp_send(tp, dst, parts, count, total, flow_out);
    else
        rc = -EPROTONOSUPPORT;
    if (rc < 0) {
        tp->stats.tx_errors++;
        return rc;
    }
    tp->stats.tx_msgs++;
    tp->stats.tx_bytes += total;
    return 0;
}

void
tp_dest_reply(const struct tp_src *src, struct tp_dest *out)
{
    memset(out, 0, sizeof(*out));
    out->proto = src->proto;
    out->addr = src->remote;
    out->flow_id = src->flow_id;
    out->listener = src->listener;
}

/* ---- listeners ----------------------------------------------------------- */

static int
open_socket(struct tp *tp, const struct tp_listen_spec *spec, int *out_fd)
{
    int type = spec->proto == TP_UDP ? SOCK_DGRAM : SOCK_STREAM;
    int fam = spec->addr.u.sa.sa_family, one = 1, fd, rc;

    fd = socket(fam, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* One socket per worker on the same address. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
        rc = -errno;
        goto fail;
    }
    /* [::] and 0.0.0.0 are separate listeners in a spec. */
    if (fam == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) {
        rc = -errno;
        goto fail;
    }
    if (spec->proto == TP_UDP && tp->cfg.udp_rcvbuf > 0) {
        /* Kernel drops on a full receive buffer are what limit UDP
         * throughput. FORCE needs CAP_NET_ADMIN; otherwise the kernel
         * clamps SO_RCVBUF to net.core.rmem_max, which is fine. */
        int sz = tp->cfg.udp_rcvbuf;
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) < 0)
            (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    }
    if (bind(fd, &spec->addr.u.sa, spec->addr.len) < 0) {
        rc = -errno;
        goto fail;
    }
    if (spec->proto != TP_UDP && listen(fd, 511) < 0) {
        rc = -errno;
        goto fail;
    }
    *out_fd = fd;
    return 0;
fail:
    close(fd);
    return rc;
}

int
tp_listen(struct tp *tp, const struct tp_listen_spec *spec, char *err,
          size_t errlen)
{
    char what[TP_ADDRSTRLEN + 8];
    struct tp_listener *l;
    int fd = -1, rc;

    tp_listen_spec_format(spec, what, sizeof(what));
    if (tp->nlisteners == TP_MAX_LISTENERS) {
        rc = -E2BIG;
        goto fail;
    }
    if (spec->proto != TP_UDP && spec->proto != TP_TCP &&
        spec->proto != TP_TLS) {
        rc = -EPROTONOSUPPORT;
        goto fail;
    }
    if (spec->proto == TP_TLS && !tp->cfg.tls) {
        if (err)
            snprintf(err, errlen, "%s: no TLS certificate ([tls] cert_file)",
                     what);
        return -EPROTONOSUPPORT;
    }
    if (spec->proto == TP_TLS)
        tls_bufs(tp);
    rc = open_socket(tp, spec, &fd);
    if (rc < 0)
        goto fail;
    l = xcalloc(1, sizeof(*l));
    l->tp = tp;
    l->proto = spec->proto;
    l->index = (int)tp->nlisteners;
    l->addr.len = sizeof(l->addr.u);
    if (getsockname(fd, &l->addr.u.sa, &l->addr.len) < 0) {
        rc = -errno;
        close(fd);
        free(l);
        goto fail;
    }
    if (spec->proto == TP_UDP) {
        uv_udp_init(tp->loop, &l->h.udp);
        rc = uv_udp_open(&l->h.udp, fd);
        /* The first SIOCGSTAMPNS turns the socket's receive stamps on
         * (udp_queue_us reads them). */
        struct timespec ts;
        (void)ioctl(fd, SIOCGSTAMPNS, &ts);
    } else {
        uv_tcp_init(tp->loop, &l->h.tcp);
        rc = uv_tcp_open(&l->h.tcp, fd);
    }
    l->h.handle.data = l;
    tp->listeners[tp->nlisteners++] = l;
    tp->open_handles++;
    if (rc < 0) {
        close(fd); /* uv_*_open failed: the fd is still ours */
        goto fail_handle;
    }
    if (spec->proto == TP_UDP)
        rc = uv_udp_recv_start(&l->h.udp, udp_alloc, udp_recv);
    else
        rc = uv_listen((uv_stream_t *)&l->h.tcp, 511, on_connection);
    if (rc < 0)
        goto fail_handle;
    return l->index;

fail_handle:
    /* Keep the slot (freed with the tp) but close the handle now. */
    l->proto = 0;
    l->h.handle.data = tp;
    uv_close(&l->h.handle, on_plain_close);
fail:
    if (err)
        snprintf(err, errlen, "%s: %s", what, strerror(-rc));
    return rc;
}

size_t
tp_listener_count(const struct tp *tp)
{
    return tp->nlisteners;
}

int
tp_listener(const struct tp *tp, size_t i, struct tp_listen_spec *out)
{
    if (i >= tp->nlisteners || tp->listeners[i]->proto == 0)
        return -ENOENT;
    out->proto = tp->listeners[i]->proto;
    out->addr = tp->listeners[i]->addr;
    return 0;
}

/* ---- cross-worker inbox ----------------------------------------------------
 */

static int
inbox_push(struct tp *target, struct inbox_item *it)
{
    pthread_mutex_lock(&target->inbox_lock);
    if (target->inbox_count >= INBOX_MAX) {
        pthread_mutex_unlock(&target->inbox_lock);
        free(it);
        return -ENOBUFS;
    }
    list_push_back(&target->inbox, &it->node);
    target->inbox_count++;
    pthread_mutex_unlock(&target->inbox_lock);
    uv_async_send(&target->async);
    return 0;
}

int
tp_post(struct tp *target, struct slice raw, const struct tp_src *src)
{
    struct inbox_item *it;

    if (raw.len > SIP_MAX_MSG_LEN)
        return -EMSGSIZE;
    it = xcalloc(1, sizeof(*it) + raw.len);
    it->src = *src;
    it->kq_us = -1;
    it->len = raw.len;
    memcpy(it->data, raw.ptr, raw.len);
    return inbox_push(target, it);
}

int
tp_post_send(struct tp *target, const struct tp_dest *dst,
             const struct slice *parts, size_t count)
{
    struct inbox_item *it;
    size_t total = 0, off = 0;

    for (size_t i = 0; i < count; i++)
        total += parts[i].len;
    if (total > SIP_MAX_MSG_LEN)
        return -EMSGSIZE;
    if (!tp_proto_stream(dst->proto) ||
        tp_flow_worker(dst->flow_id) != target->cfg.worker)
        return -EINVAL;
    it = xcalloc(1, sizeof(*it) + total);
    it->send = true;
    it->dst = *dst;
    it->kq_us = -1;
    it->len = total;
    for (size_t i = 0; i < count; i++) {
        if (parts[i].len)
            memcpy(it->data + off, parts[i].ptr, parts[i].len);
        off += parts[i].len;
    }
    return inbox_push(target, it);
}

void
tp_set_relay(struct tp *tp, tp_relay_cb *cb, void *arg)
{
    tp->relay = cb;
    tp->relay_arg = arg;
}

static void
on_async(uv_async_t *a)
{
    struct tp *tp = a->data;
    struct list_node batch, *n, *tmp;

    list_init(&batch);
    pthread_mutex_lock(&tp->inbox_lock);
    if (!list_empty(&tp->inbox)) {
        /* Move the whole inbox to batch under the lock. */
        batch.next = tp->inbox.next;
        batch.prev = tp->inbox.prev;
        batch.next->prev = &batch;
        batch.prev->next = &batch;
        list_init(&tp->inbox);
        tp->inbox_count = 0;
    }
    pthread_mutex_unlock(&tp->inbox_lock);
    list_for_each_safe(n, tmp, &batch)
    {
        struct inbox_item *it = container_of(n, struct inbox_item, node);
        list_remove(n);
        if (tp->freeing) {
            if (it->conn)
                close(it->conn_fd);
            free(it);
            continue;
        }
        if (it->conn) {
            conn_adopt(tp, it->conn_fd, it->conn_listener);
        } else if (it->send) {
            /* Our flow (or, if it closed meanwhile, dst->addr). The
             * sender's transaction learns of a failure only by its
             * timeout: the send was already reported as queued. */
            int rc = tp_sendv(tp, &it->dst, &(struct slice){it->data, it->len},
                              1, NULL);
            if (rc < 0)
                log_debug(ROOM, "relayed send on flow %llu failed: %s",
                          (unsigned long long)it->dst.flow_id, uv_strerror(rc));
        } else {
            cur_kq_us = it->kq_us;
            dispatch(tp, it->data, it->len, &it->src);
            cur_kq_us = -1;
        }
        free(it);
    }
}

/* ---- create / free ------------------------------------------------------- */

int
tp_new(uv_loop_t *loop, const struct tp_cfg *cfg, struct tp **out)
{
    struct tp *tp;
    size_t nb = 64;

    if (cfg->on_recv == NULL || cfg->worker >= TP_MAX_WORKERS ||
        cfg->max_conns == 0 || (cfg->group && cfg->worker >= cfg->group->n))
        return -EINVAL;
    tp = xcalloc(1, sizeof(*tp));
    tp->loop = loop;
    tp->cfg = *cfg;
    list_init(&tp->conns);
    while (nb < cfg->max_conns)
        nb *= 2;
    tp->buckets = xmalloc(nb * sizeof(*tp->buckets));
    for (size_t i = 0; i < nb; i++)
        list_init(&tp->buckets[i]);
    tp->bucket_mask = nb - 1;
    arena_init(&tp->arena, SIP_MSG_ARENA_CAP);
    tp->udp_buf = xmalloc(SIP_MAX_MSG_LEN + 1);
    /* One message's records plus a handshake flight. */
    buf_init(&tp->tls_out, 2 * SIP_MAX_MSG_LEN + 16384);
    tq_init(&tp->tq);
    tq_fifo_init(&tp->tq, &tp->idle_fifo, cfg->idle_timeout_ms);
    tq_fifo_init(&tp->tq, &tp->connect_fifo, cfg->connect_timeout_ms);
    tq_fifo_init(&tp->tq, &tp->first_fifo, cfg->first_message_ms);
    tq_fifo_init(&tp->tq, &tp->msg_fifo, cfg->message_ms);
    tq_fifo_init(&tp->tq, &tp->quiet_fifo, TLS_QUIET_MS);
    tq_set_notify(&tp->tq, on_tq_notify, tp);
    uv_timer_init(loop, &tp->timer);
    tp->timer.data = tp;
    tp->open_handles++;
    pthread_mutex_init(&tp->inbox_lock, NULL);
    list_init(&tp->inbox);
    uv_async_init(loop, &tp->async, on_async);
    tp->async.data = tp;
    tp->open_handles++;
    for (size_t i = 0; i < TP_MAX_WORKERS; i++)
        list_init(&tp->steer_out[i]);
    uv_check_init(loop, &tp->steer_check);
    tp->steer_check.data = tp;
    tp->open_handles++;
    if (cfg->group) {
        pthread_rwlock_wrlock(&cfg->group->lock);
        cfg->group->m[cfg->worker] = tp;
        pthread_rwlock_unlock(&cfg->group->lock);
    }
    *out = tp;
    return 0;
}

void
tp_free(struct tp *tp)
{
    struct list_node *n, *tmp;

    if (tp == NULL || tp->freeing)
        return;
    tp->freeing = true;
    lat_log(tp, "handle (read -> answer sent)", &tp->lat_handle);
    lat_log(tp, "queue (kernel receive -> read, sampled)", &tp->lat_queue);
    lat_log(tp, "total (kernel receive -> answer sent, sampled)",
            &tp->lat_total);
    if (tp->cfg.group) {
        /* Leave first: no worker posts to us once our handles close. */
        pthread_rwlock_wrlock(&tp->cfg.group->lock);
        if (tp->cfg.group->m[tp->cfg.worker] == tp)
            tp->cfg.group->m[tp->cfg.worker] = NULL;
        pthread_rwlock_unlock(&tp->cfg.group->lock);
    }
    list_for_each_safe(n, tmp, &tp->conns)
    {
        conn_close(container_of(n, struct tp_conn, link), 0);
    }
    for (size_t i = 0; i < tp->nlisteners; i++) {
        struct tp_listener *l = tp->listeners[i];
        if (l->proto == 0)
            continue; /* failed listen: already closed */
        l->h.handle.data = tp;
        uv_close(&l->h.handle, on_plain_close);
    }
    uv_close((uv_handle_t *)&tp->timer, on_plain_close);
    uv_close((uv_handle_t *)&tp->async, on_plain_close);
    uv_close((uv_handle_t *)&tp->steer_check, on_plain_close);
}
