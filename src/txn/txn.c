/*
 * txn: the four RFC 3261 §17 state machines (+ RFC 6026 Accepted) and the
 * per-worker table that matches messages to them.
 *
 * Timers: the doubling A/E/G go to the worker tq's heap (t->retrans), as
 * does an INVITE client's Timer C (t->timer_c, set by the proxy per
 * transaction: txn_client_timer_c); every
 * fixed timeout goes to one of the table's FIFO queues (t->timeout), one
 * queue per distinct duration, so deadline order is insertion order:
 *   fifo_long  = 64*T1: B, F, H, J(UDP), L, M, and D(UDP); an INVITE
 *                       client's end 64*T1 after its CANCEL (§9.1)
 *   fifo_t4    = T4:    I(UDP), K(UDP)
 *   fifo_zero  = 0:     D, I, J, K over TCP (terminate on the next timer run,
 *                       not inside the TU's call)
 *   fifo_100   = 200 ms: the automatic 100 Trying (t->trying)
 * Timer D is 64*T1 (= 32 s with the default T1, RFC 3261's "at least 32 s
 * for UDP"); with a test T1 of 20 ms it is 1.28 s.
 *
 * Matching uses two hash tables of list buckets (client: top-Via branch;
 * server: branch, or Call-ID for RFC 2543 requests without the cookie).
 * They grow with the number of transactions (doubling, load factor <= 1):
 * non-INVITE server transactions live 64*T1 = 32 s after their final
 * response on UDP (Timer J), so 8000 requests/s make 250k transactions on
 * one worker. Each transaction keeps its full hash, compared before any
 * bytes, and the branch is compared first.
 *
 * They shrink after a peak (htab_shrink, at the end of a loop iteration
 * that freed transactions): a burst does not pin a large bucket array.
 *
 * Compaction: once a transaction has its final response (server: sent;
 * client: received) it never builds from its request again: a server
 * resends its stored response, a client its stored ACK or nothing. An
 * INVITE server in Accepted (RFC 6026) resends nothing itself: the TU
 * hands it each 2xx retransmission with txn_respond() (txn_reply() answers
 * -EALREADY there), so it keeps neither its request nor the 2xx. A
 * compacted transaction needs only its matching keys, the stored bytes and
 * the source/destination. At the end of the
 * loop iteration in which the final was sent (so the TU's pointers into the
 * request stay valid until it returns to the loop) the request copy, its parse
 * and its arena are freed and the keys are copied into one small block.
 * txn_request() is NULL after that.
 *
 * Spares (per worker, no locks): a freed transaction does not go back to
 * malloc. Its struct, with its response buffer, goes to the table's spare
 * list, and its request body (the arena, reset to its first chunk, and the
 * request copy's buffer) to the spare bodies; compaction hands its body
 * there too. txn_alloc takes from them before calling malloc: at 16,000
 * registrations/s the four allocations of each transaction (struct,
 * request copy, arena chunk, response) were a fifth of a worker's CPU.
 * Both lists are bounded (TXN_SPARE_MAX; buffers above TXN_SPARE_BUF are
 * freed, not kept): what is kept after a peak is at most ~1.6 MiB a
 * worker (REGISTER-sized messages: ~0.7 MiB), the rest goes back to
 * malloc as before. A reused struct is wiped whole
 * (memset) but for the buffers it keeps, which count as empty; in the
 * sanitizer build a spare is poisoned (0xa5) while it waits, so a field
 * that the wipe missed shows up in the tests.
 *
 * Deferred free: terminate() unlinks the transaction from the hash, cancels
 * its timers, reports TXN_EV_TERMINATED and parks it on the dead list; a
 * uv_check handle (one per table, active only while the list is not empty)
 * frees the dead after the loop's poll phase.
 */
#include "txn/txn.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "base/buf.h"
#include "base/list.h"
#include "base/log.h"
#include "base/xmalloc.h"
#include "sip/build.h"

#define ROOM "txn"
#define NBUCKETS_MIN 1024
#define TRYING_MS 200
#define MAGIC "z9hG4bK"
/* Spare structs and spare bodies kept per table (file comment). */
#define TXN_SPARE_MAX 128
/* Request and response buffers above this are freed, not kept. */
#define TXN_SPARE_BUF 4096

/* A request copy's storage: the arena it is parsed into and the buffer
 * holding its bytes (cap bytes, cap 0 = none). */
struct txn_body {
    struct arena arena;
    char *buf;
    size_t cap;
};

struct txn {
    struct txn_table *tt;
    enum txn_kind kind;
    enum txn_state state;
    struct list_node hlink; /* client or server hash bucket */
    struct list_node link;  /* tt->all, then tt->dead */
    struct list_node clink; /* tt->compact until compacted */
    uint64_t hash;          /* of the bucket key (hash_slice) */
    struct tq_entry retrans;
    struct tq_entry timeout;
    struct tq_entry trying;
    struct tq_entry timer_c; /* INVITE client: Timer C (txn_client_timer_c) */
    uint32_t timer_c_ms;     /* 0: no Timer C */
    uint64_t interval_ms; /* current A/E/G interval */
    bool reliable;
    bool rfc2543;    /* server request without the magic cookie */
    bool fill_rport; /* server: the top Via asked for rport (RFC 3581) */

    char *req_bytes; /* body.buf; NULL once compacted */
    size_t req_len;
    struct sip_msg *req; /* parsed from req_bytes, in arena; NULL once
                            compacted */
    struct txn_body body; /* empty (cap 0, no chunks) once compacted */
    /* Matching keys: into req_bytes, then into keys once compacted. */
    struct slice method;            /* CSeq method */
    struct slice branch;            /* top Via branch */
    struct slice host;              /* top Via sent-by host */
    uint16_t port;                  /* top Via sent-by port (0 absent) */
    struct slice call_id, from_tag; /* RFC 2543 fallback */
    uint32_t cseq;
    char *keys;

    struct tp_src src;
    struct tp_dest dst;
    char *out_bytes; /* server: last response; client: ACK for non-2xx;
                        out_buf when set, NULL when none */
    size_t out_len;
    char *out_buf; /* owned, out_cap bytes; kept by a spare */
    size_t out_cap;
    int status;

    bool cancel_pending;
    bool cancel_sent;  /* INVITE client: our CANCEL went out (§9.1 timer) */
    bool timeout_told; /* TXN_EV_TIMEOUT reported (Timer C): not twice */
    char *cancel_extra;
    size_t cancel_extra_len;

    txn_event_cb *cb;
    void *arg;
};

/* A hash table of list buckets that doubles with its entries. */
struct htab {
    struct list_node *b;
    size_t mask; /* bucket count - 1 (a power of two) */
    size_t count;
};

struct txn_table {
    struct tp *tp;
    struct txn_cfg cfg;
    struct htab ch, sh; /* client, server */
    struct list_node all, dead, compact;
    size_t count;
    struct tq_fifo fifo_long, fifo_t4, fifo_zero, fifo_100;
    uv_check_t check;
    bool check_active;
    struct list_node spare;            /* spare structs, by link */
    size_t nspare;
    struct txn_body bodies[TXN_SPARE_MAX]; /* spare bodies */
    size_t nbodies;
    struct buf scratch; /* a response with received=/rport filled in,
                           before set_out copies it (reused, no malloc) */
};

static const struct txn_timers default_timers = {500, 4000, 5000};

void
txn_cfg_defaults(struct txn_cfg *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->timers = default_timers;
    cfg->auto_100 = true;
}

const char *
txn_event_name(enum txn_event ev)
{
    switch (ev) {
    case TXN_EV_RESPONSE:
        return "response";
    case TXN_EV_TIMEOUT:
        return "timeout";
    case TXN_EV_TRANSPORT_ERROR:
        return "transport-error";
    case TXN_EV_CANCELLED:
        return "cancelled";
    case TXN_EV_TERMINATED:
        return "terminated";
    }
    return "?";
}

const char *
txn_state_name(enum txn_state st)
{
    static const char *const names[] = {
        [TXN_CALLING] = "calling",       [TXN_TRYING] = "trying",
        [TXN_PROCEEDING] = "proceeding", [TXN_COMPLETED] = "completed",
        [TXN_CONFIRMED] = "confirmed",   [TXN_ACCEPTED] = "accepted",
        [TXN_TERMINATED] = "terminated",
    };
    if (st >= TXN_CALLING && st <= TXN_TERMINATED)
        return names[st];
    return "?";
}

/* ---- helpers ---------------------------------------------------------------
 */

static uint64_t
hash_slice(struct slice s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */

    for (size_t i = 0; i < s.len; i++) {
        h ^= (unsigned char)s.ptr[i];
        h *= 1099511628211ULL;
    }
    /* FNV's low bits mix poorly and we mask them: fmix64 (MurmurHash3). */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static void
htab_init(struct htab *h)
{
    h->mask = NBUCKETS_MIN - 1;
    h->count = 0;
    h->b = xmalloc(NBUCKETS_MIN * sizeof(*h->b));
    for (size_t i = 0; i < NBUCKETS_MIN; i++)
        list_init(&h->b[i]);
}

static struct list_node *
htab_bucket(const struct htab *h, uint64_t hash)
{
    return &h->b[hash & h->mask];
}

/* Rehash into n buckets (a power of two): O(entries + buckets). */
static void
htab_resize(struct htab *h, size_t n)
{
    struct list_node *nb = xmalloc(n * sizeof(*nb));

    for (size_t i = 0; i < n; i++)
        list_init(&nb[i]);
    for (size_t i = 0; i <= h->mask; i++) {
        struct list_node *head = &h->b[i];
        while (!list_empty(head)) {
            struct list_node *node = head->next;
            struct txn *t = container_of(node, struct txn, hlink);
            list_remove(node);
            list_push_back(&nb[t->hash & (n - 1)], node);
        }
    }
    free(h->b);
    h->b = nb;
    h->mask = n - 1;
}

/* Grow: double when the entries pass the buckets (amortised O(1)). */
static void
htab_add(struct htab *h, struct txn *t)
{
    if (h->count > h->mask)
        htab_resize(h, (h->mask + 1) * 2);
    list_push_back(htab_bucket(h, t->hash), &t->hlink);
    h->count++;
}

/* Shrink after a peak: when the entries fall under an eighth of the
 * buckets, go to four times the entries (at least NBUCKETS_MIN). The gap
 * between the two thresholds (load 1 to grow, 1/8 to shrink, 1/4 after a
 * shrink) keeps a load that swings around one size from rehashing back
 * and forth. Called once per loop iteration that freed transactions. */
static void
htab_shrink(struct htab *h)
{
    size_t n = h->mask + 1, want = NBUCKETS_MIN;

    if (n <= NBUCKETS_MIN || h->count >= n / 8)
        return;
    while (want < h->count * 4)
        want *= 2;
    if (want < n)
        htab_resize(h, want);
}

static bool
has_cookie(struct slice branch)
{
    return branch.len > 7 && memcmp(branch.ptr, MAGIC, 7) == 0;
}

static uint64_t
t1(const struct txn_table *tt)
{
    return tt->cfg.timers.t1_ms;
}

static bool
is_server(const struct txn *t)
{
    return t->kind == TXN_INVITE_SERVER || t->kind == TXN_NON_INVITE_SERVER;
}

static bool
terminated(const struct txn *t)
{
    return t->state == TXN_TERMINATED;
}

/* Call the TU; the transaction may be terminated when this returns (its
 * memory stays until the end of the loop iteration). */
static void
notify(struct txn *t, enum txn_event ev, const struct sip_msg *rsp)
{
    if (t->cb)
        t->cb(t, ev, rsp, t->arg);
}

static void check_start(struct txn_table *tt);
static void send_cancel(struct txn *t);

/* Forget the stored bytes and free their buffer (a compacted transaction
 * that will hold no response: memory, not speed, counts there). */
static void
out_drop(struct txn *t)
{
    free(t->out_buf);
    t->out_buf = t->out_bytes = NULL;
    t->out_cap = t->out_len = 0;
}

static void
terminate(struct txn *t)
{
    struct txn_table *tt = t->tt;

    if (terminated(t))
        return;
    t->state = TXN_TERMINATED;
    tq_cancel(&t->retrans);
    tq_cancel(&t->timeout);
    tq_cancel(&t->trying);
    tq_cancel(&t->timer_c);
    if (list_linked(&t->hlink)) {
        list_remove(&t->hlink);
        (is_server(t) ? &tt->sh : &tt->ch)->count--;
    }
    if (list_linked(&t->clink)) {
        list_remove(&t->clink);
        list_init(&t->clink);
    }
    list_remove(&t->link);
    list_push_back(&tt->dead, &t->link);
    check_start(tt);
    notify(t, TXN_EV_TERMINATED, NULL);
}

/* Give a body back: to the spares (arena reset to its first chunk) while
 * there is room and its buffer is not oversized, else to malloc. */
static void
body_put(struct txn_table *tt, struct txn_body *b)
{
    if (b->buf == NULL) { /* compacted: nothing to give */
        arena_fini(&b->arena);
    } else if (tt->nbodies < TXN_SPARE_MAX && b->cap <= TXN_SPARE_BUF) {
        arena_reset(&b->arena);
        tt->bodies[tt->nbodies++] = *b;
    } else {
        arena_fini(&b->arena);
        free(b->buf);
    }
    memset(b, 0, sizeof(*b));
}

/* A body of at least len bytes, from the spares if one has room; the
 * arena capped at SIP_MSG_ARENA_CAP. */
static void
body_get(struct txn_table *tt, struct txn_body *b, size_t len)
{
    if (len == 0)
        len = 1;
    if (tt->nbodies > 0) {
        *b = tt->bodies[--tt->nbodies];
        if (b->cap < len) {
            free(b->buf);
            b->buf = xmalloc(len);
            b->cap = len;
        }
        return;
    }
    arena_init(&b->arena, SIP_MSG_ARENA_CAP);
    b->buf = xmalloc(len);
    b->cap = len;
}

static void
txn_release(struct txn *t)
{
    struct txn_table *tt = t->tt;

    body_put(tt, &t->body);
    free(t->keys);
    free(t->cancel_extra);
    tt->count--;
    if (t->out_cap > TXN_SPARE_BUF) {
        free(t->out_buf);
        t->out_buf = NULL;
        t->out_cap = 0;
    }
    if (tt->nspare < TXN_SPARE_MAX) {
        char *out = t->out_buf;
        size_t cap = t->out_cap;
#ifdef PUSHPBX_SANITIZE
        /* Poison: a field txn_alloc forgets to reset is not zero. */
        memset(t, 0xa5, sizeof(*t));
#endif
        t->out_buf = out;
        t->out_cap = cap;
        list_push_back(&tt->spare, &t->link);
        tt->nspare++;
        return;
    }
    free(t->out_buf);
    free(t);
}

static void
spares_free(struct txn_table *tt)
{
    while (!list_empty(&tt->spare)) {
        struct txn *t = container_of(tt->spare.next, struct txn, link);
        list_remove(&t->link);
        free(t->out_buf);
        free(t);
    }
    tt->nspare = 0;
    while (tt->nbodies > 0) {
        struct txn_body *b = &tt->bodies[--tt->nbodies];
        arena_fini(&b->arena);
        free(b->buf);
    }
}

static void
free_dead(struct txn_table *tt)
{
    struct list_node *n, *tmp;

    list_for_each_safe(n, tmp, &tt->dead)
    {
        list_remove(n);
        txn_release(container_of(n, struct txn, link));
    }
}

/* Keep only what matching and retransmission need (file comment). */
static void
compact(struct txn *t)
{
    size_t len = t->method.len + t->branch.len + t->host.len + t->call_id.len +
                 t->from_tag.len;
    char *p = xmalloc(len ? len : 1);
    struct slice *keys[] = {&t->method, &t->branch, &t->host, &t->call_id,
                            &t->from_tag};

    free(t->keys);
    t->keys = p;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (keys[i]->len)
            memcpy(p, keys[i]->ptr, keys[i]->len);
        *keys[i] = slice_make(p, keys[i]->len);
        p += keys[i]->len;
    }
    body_put(t->tt, &t->body);
    t->req = NULL;
    t->req_bytes = NULL;
    t->req_len = 0;
    if (t->state == TXN_ACCEPTED && is_server(t)) {
        /* RFC 6026: the TU resends a 2xx (txn_respond brings its bytes);
         * the transaction itself never does. */
        out_drop(t);
    }
}

static void
compact_all(struct txn_table *tt)
{
    while (!list_empty(&tt->compact)) {
        struct list_node *n = tt->compact.next;
        struct txn *t = container_of(n, struct txn, clink);
        list_remove(n);
        list_init(n);
        if (!terminated(t))
            compact(t);
    }
}

static void
on_check(uv_check_t *h)
{
    struct txn_table *tt = h->data;

    compact_all(tt);
    free_dead(tt);
    htab_shrink(&tt->ch);
    htab_shrink(&tt->sh);
    uv_check_stop(h);
    tt->check_active = false;
}

static void
check_start(struct txn_table *tt)
{
    if (!tt->check_active) {
        uv_check_start(&tt->check, on_check);
        tt->check_active = true;
    }
}

static void
set_out(struct txn *t, struct slice bytes)
{
    size_t need = bytes.len ? bytes.len : 1;

    if (t->out_cap < need) {
        free(t->out_buf);
        t->out_buf = xmalloc(need);
        t->out_cap = need;
    }
    if (bytes.len)
        memcpy(t->out_buf, bytes.ptr, bytes.len);
    t->out_bytes = t->out_buf;
    t->out_len = bytes.len;
}

static int
send_bytes(struct txn *t, const char *p, size_t len)
{
    uint64_t flow = 0;
    int rc = tp_send(t->tt->tp, &t->dst, slice_make(p, len), &flow);

    if (rc == 0 && tp_proto_stream(t->dst.proto) && flow != 0) {
        /* Stick to the flow we used (retransmissions, ACK, CANCEL). */
        t->dst.flow_id = flow;
        if (!is_server(t))
            t->src.flow_id = flow;
    }
    return rc;
}

static int
resend_out(struct txn *t)
{
    if (t->out_bytes == NULL)
        return 0;
    return send_bytes(t, t->out_bytes, t->out_len);
}

/* Fixed timer of the given kind: long (64*T1), t4, or zero over TCP. */
static void
arm_long(struct txn *t)
{
    tq_fifo_add(&t->tt->fifo_long, &t->timeout, tp_now_ms(t->tt->tp));
}

static void
arm_short(struct txn *t, bool t4_when_unreliable)
{
    struct txn_table *tt = t->tt;
    struct tq_fifo *f = t->reliable          ? &tt->fifo_zero
                        : t4_when_unreliable ? &tt->fifo_t4
                                             : &tt->fifo_long;

    tq_fifo_add(f, &t->timeout, tp_now_ms(tt->tp));
}

static void
arm_retrans(struct txn *t, uint64_t interval)
{
    t->interval_ms = interval;
    tq_heap_add(tp_tq(t->tt->tp), &t->retrans, tp_now_ms(t->tt->tp) + interval);
}

/* ---- timers -------------------------------------------------------------- */

static void
on_retrans(struct tq_entry *e)
{
    struct txn *t = container_of(e, struct txn, retrans);
    const struct txn_timers *tm = &t->tt->cfg.timers;
    uint64_t next;
    int rc;

    switch (t->kind) {
    case TXN_INVITE_CLIENT: /* A: doubles without cap */
        if (t->state != TXN_CALLING)
            return;
        rc = send_bytes(t, t->req_bytes, t->req_len);
        next = 2 * t->interval_ms;
        break;
    case TXN_NON_INVITE_CLIENT: /* E */
        if (t->state != TXN_TRYING && t->state != TXN_PROCEEDING)
            return;
        rc = send_bytes(t, t->req_bytes, t->req_len);
        next = t->state == TXN_PROCEEDING ? tm->t2_ms : 2 * t->interval_ms;
        if (next > tm->t2_ms)
            next = tm->t2_ms;
        break;
    case TXN_INVITE_SERVER: /* G */
        if (t->state != TXN_COMPLETED)
            return;
        (void)resend_out(t); /* RFC 6026: errors do not end a server txn */
        rc = 0;
        next = 2 * t->interval_ms;
        if (next > tm->t2_ms)
            next = tm->t2_ms;
        break;
    default:
        return;
    }
    if (rc < 0) {
        log_debug(ROOM, "retransmission failed: %s", strerror(-rc));
        notify(t, TXN_EV_TRANSPORT_ERROR, NULL);
        terminate(t);
        return;
    }
    arm_retrans(t, next);
}

static void
on_timeout(struct tq_entry *e)
{
    struct txn *t = container_of(e, struct txn, timeout);

    switch (t->state) {
    case TXN_CALLING: /* B */
    case TXN_TRYING:  /* F */
        notify(t, TXN_EV_TIMEOUT, NULL);
        break;
    case TXN_PROCEEDING: /* F; INVITE client: 64*T1 after its CANCEL */
        if (t->kind == TXN_INVITE_CLIENT)
            log_info(ROOM,
                     "INVITE given up: no final response 64*T1 after its "
                     "CANCEL (RFC 3261 section 9.1) call_id=" SLICE_FMT,
                     SLICE_ARG(t->call_id));
        if (!t->timeout_told)
            notify(t, TXN_EV_TIMEOUT, NULL);
        break;
    case TXN_COMPLETED:
        if (t->kind == TXN_INVITE_SERVER) /* H: no ACK came */
            notify(t, TXN_EV_TIMEOUT, NULL);
        break; /* D, K, J: quietly */
    default:
        break; /* I, L, M */
    }
    terminate(t);
}

static void
on_trying(struct tq_entry *e)
{
    struct txn *t = container_of(e, struct txn, trying);

    if (t->state == TXN_PROCEEDING && t->status == 0)
        txn_reply(t, 100, "Trying", SLICE_NULL, SLICE_NULL, SLICE_NULL);
}

/* Timer C (RFC 3261 §16.8) of an INVITE client: no final response within
 * timer_c_ms of the INVITE or of its last 101-199 response. */
static void
on_timer_c(struct tq_entry *e)
{
    struct txn *t = container_of(e, struct txn, timer_c);

    if (t->state == TXN_CALLING) {
        /* No provisional: as if a 408 had arrived (no CANCEL before a
         * provisional, §9.1). */
        log_info(ROOM,
                 "Timer C: no response to the INVITE in %" PRIu32
                 " ms: 408 call_id=" SLICE_FMT,
                 t->timer_c_ms, SLICE_ARG(t->call_id));
        notify(t, TXN_EV_TIMEOUT, NULL);
        terminate(t);
        return;
    }
    if (t->state != TXN_PROCEEDING || t->cancel_sent)
        return;
    log_info(ROOM,
             "Timer C: no final response to the INVITE %" PRIu32
             " ms after its last provisional: CANCEL, 408 call_id=" SLICE_FMT,
             t->timer_c_ms, SLICE_ARG(t->call_id));
    if (!t->cancel_pending) { /* a CANCEL without extra lines */
        t->cancel_pending = true;
        free(t->cancel_extra);
        t->cancel_extra = xmalloc(1);
        t->cancel_extra_len = 0;
    }
    send_cancel(t); /* arms the §9.1 timer that ends the transaction */
    t->timeout_told = true;
    notify(t, TXN_EV_TIMEOUT, NULL);
}

/* ---- creation -------------------------------------------------------------
 */

/* A transaction holding a copy of bytes and its parse. parsed, when not
 * NULL, is the parse of exactly bytes (tp_rx's msg and raw): the copy
 * takes it by moving its slices (sip_msg_rebase) instead of parsing the
 * bytes a second time, which was a tenth of a REGISTER's instructions. */
static struct txn *
txn_alloc(struct txn_table *tt, struct slice bytes,
          const struct sip_msg *parsed, struct sip_error *err)
{
    struct txn *t;
    const struct sip_msg *r;

    if (!list_empty(&tt->spare)) {
        /* A spare: wiped whole but for its (empty) response buffer. */
        char *out;
        size_t cap;
        t = container_of(tt->spare.next, struct txn, link);
        list_remove(&t->link);
        tt->nspare--;
        out = t->out_buf;
        cap = t->out_cap;
        memset(t, 0, sizeof(*t));
        t->out_buf = out;
        t->out_cap = cap;
    } else {
        t = xcalloc(1, sizeof(*t));
    }
    t->tt = tt;
    list_init(&t->hlink);
    list_init(&t->link);
    list_init(&t->clink);
    tq_entry_init(&t->retrans, on_retrans);
    tq_entry_init(&t->timeout, on_timeout);
    tq_entry_init(&t->trying, on_trying);
    tq_entry_init(&t->timer_c, on_timer_c);
    body_get(tt, &t->body, bytes.len);
    t->req_bytes = t->body.buf;
    if (bytes.len)
        memcpy(t->req_bytes, bytes.ptr, bytes.len);
    t->req_len = bytes.len;
    tt->count++;
    t->req = arena_alloc(&t->body.arena, sizeof(*t->req));
    if (t->req == NULL ||
        ((parsed == NULL || parsed->buf != bytes.ptr ||
          sip_msg_rebase(t->req, parsed, t->req_bytes, t->req_len,
                         &t->body.arena) != 0) &&
         sip_msg_parse(t->req, t->req_bytes, t->req_len, &t->body.arena,
                       err) != 0)) {
        txn_release(t);
        return NULL;
    }
    r = t->req;
    t->method = r->cseq.method_name;
    t->branch = r->via.branch;
    t->host = r->via.host;
    t->port = r->via.port;
    t->call_id = r->call_id;
    t->from_tag = r->from.tag;
    t->cseq = r->cseq.num;
    return t;
}

static void
link_txn(struct txn *t, struct htab *h, struct slice key)
{
    t->hash = hash_slice(key);
    htab_add(h, t);
    list_push_back(&t->tt->all, &t->link);
}

/* Queue t for compaction at the end of this loop iteration. */
static void
compact_later(struct txn *t)
{
    if (t->req == NULL || list_linked(&t->clink))
        return;
    list_push_back(&t->tt->compact, &t->clink);
    check_start(t->tt);
}

/* ---- matching -------------------------------------------------------------
 */

static struct txn *
client_find(struct txn_table *tt, struct slice branch, struct slice method)
{
    uint64_t h = hash_slice(branch);
    struct list_node *head = htab_bucket(&tt->ch, h), *n;

    for (n = head->next; n != head; n = n->next) {
        struct txn *t = container_of(n, struct txn, hlink);
        if (t->hash == h && slice_eq(t->branch, branch) &&
            slice_eq(t->method, method))
            return t;
    }
    return NULL;
}

static bool
sent_by_eq(const struct txn *t, const struct sip_via *v)
{
    return t->port == v->port && slice_eq_nocase(t->host, v->host);
}

/* §17.2.3; method is the transaction's method to look for (INVITE for an
 * ACK or for the INVITE a CANCEL refers to). */
static struct txn *
server_find(struct txn_table *tt, const struct sip_msg *m, struct slice method)
{
    bool cookie = has_cookie(m->via.branch);
    struct slice key = cookie ? m->via.branch : m->call_id;
    uint64_t h = hash_slice(key);
    struct list_node *head = htab_bucket(&tt->sh, h), *n;

    for (n = head->next; n != head; n = n->next) {
        struct txn *t = container_of(n, struct txn, hlink);
        if (t->hash != h || t->rfc2543 == cookie)
            continue;
        if (cookie) {
            if (slice_eq(t->branch, m->via.branch) &&
                slice_eq(t->method, method) && sent_by_eq(t, &m->via))
                return t;
            continue;
        }
        /* RFC 2543 fallback (basic): Call-ID, From tag, CSeq number,
         * top Via sent-by and method. */
        if (slice_eq(t->call_id, m->call_id) &&
            slice_eq(t->from_tag, m->from.tag) && t->cseq == m->cseq.num &&
            slice_eq(t->method, method) && sent_by_eq(t, &m->via))
            return t;
    }
    return NULL;
}

/* ---- client side ------------------------------------------------------------
 */

int
txn_client_start(struct txn_table *tt, struct slice bytes,
                 const struct tp_dest *dst, txn_event_cb *cb, void *arg,
                 struct txn **out)
{
    struct sip_error err = {0, NULL};
    struct txn *t;
    int rc;

    if (bytes.len > SIP_MAX_MSG_LEN)
        return -EMSGSIZE;
    t = txn_alloc(tt, bytes, NULL, &err);
    if (t == NULL)
        return -EINVAL;
    if (!t->req->is_request || t->req->method == SIP_METHOD_ACK ||
        t->branch.len == 0) {
        rc = -EINVAL;
        goto fail;
    }
    if (client_find(tt, t->branch, t->method) != NULL) {
        rc = -EEXIST;
        goto fail;
    }
    t->kind = t->req->method == SIP_METHOD_INVITE ? TXN_INVITE_CLIENT
                                                  : TXN_NON_INVITE_CLIENT;
    t->state = t->kind == TXN_INVITE_CLIENT ? TXN_CALLING : TXN_TRYING;
    t->dst = *dst;
    t->reliable = dst->proto != TP_UDP;
    t->src.proto = dst->proto;
    t->src.worker = tp_worker(tt->tp);
    t->src.listener = -1;
    t->cb = cb;
    t->arg = arg;
    rc = send_bytes(t, t->req_bytes, t->req_len);
    if (rc < 0)
        goto fail;
    link_txn(t, &tt->ch, t->branch);
    if (!t->reliable)
        arm_retrans(t, t1(tt)); /* A or E */
    arm_long(t);                /* B or F */
    if (out)
        *out = t;
    return 0;
fail:
    txn_release(t);
    return rc;
}

static void
send_cancel(struct txn *t)
{
    struct buf b;
    int rc;

    buf_init(&b, SIP_MAX_MSG_LEN);
    rc = sip_build_cancel(&b, t->req,
                          slice_make(t->cancel_extra, t->cancel_extra_len));
    if (rc == 0) {
        struct tp_dest d = t->dst; /* same flow / address (§9.1) */
        rc = txn_client_start(t->tt, buf_slice(&b), &d, NULL, NULL, NULL);
    }
    if (rc < 0)
        log_warn(ROOM, "CANCEL not sent: %s", strerror(-rc));
    buf_fini(&b);
    /* §9.1: with no final response 64*T1 after the CANCEL, the INVITE is
     * given up (TXN_EV_TIMEOUT: 408), also when the CANCEL could not be
     * sent or got no answer; Timer C has done its part. */
    t->cancel_sent = true;
    tq_cancel(&t->timer_c);
    arm_long(t);
}

int
txn_client_timer_c(struct txn *t, uint32_t ms)
{
    if (t->kind != TXN_INVITE_CLIENT || ms == 0)
        return -EINVAL;
    if (t->state != TXN_CALLING && t->state != TXN_PROCEEDING)
        return 0; /* a final arrived: nothing to time */
    if (t->cancel_sent)
        return 0; /* §9.1's timer runs */
    t->timer_c_ms = ms;
    tq_heap_add(tp_tq(t->tt->tp), &t->timer_c, tp_now_ms(t->tt->tp) + ms);
    return 0;
}

int
txn_cancel(struct txn *t, struct slice extra)
{
    if (t->kind != TXN_INVITE_CLIENT)
        return -EINVAL;
    if (t->state != TXN_CALLING && t->state != TXN_PROCEEDING)
        return 0; /* a final response arrived: nothing to cancel */
    if (t->cancel_pending)
        return 0;
    free(t->cancel_extra);
    t->cancel_extra = xmalloc(extra.len ? extra.len : 1);
    if (extra.len)
        memcpy(t->cancel_extra, extra.ptr, extra.len);
    t->cancel_extra_len = extra.len;
    t->cancel_pending = true;
    if (t->state == TXN_PROCEEDING)
        send_cancel(t);
    return 0;
}

static void
send_ack(struct txn *t, const struct sip_msg *rsp)
{
    struct buf b;

    buf_init(&b, SIP_MAX_MSG_LEN);
    if (sip_build_ack(&b, t->req, rsp) == 0) {
        set_out(t, buf_slice(&b));
        (void)resend_out(t);
    }
    buf_fini(&b);
}

static void
client_response(struct txn *t, const struct sip_msg *rsp)
{
    int st = rsp->status;
    bool was_calling = t->state == TXN_CALLING;

    if (st < 200) {
        if (t->state != TXN_CALLING && t->state != TXN_TRYING &&
            t->state != TXN_PROCEEDING)
            return; /* late provisional: absorb */
        if (t->kind == TXN_INVITE_CLIENT && was_calling) {
            tq_cancel(&t->retrans); /* A stops; B stops (§17.1.1.2) */
            tq_cancel(&t->timeout); /* (in Proceeding it is §9.1's) */
        }
        if (t->kind == TXN_INVITE_CLIENT && st > 100 &&
            tq_armed(&t->timer_c)) /* §16.7 step 2: 101-199 reset C */
            tq_heap_add(tp_tq(t->tt->tp), &t->timer_c,
                        tp_now_ms(t->tt->tp) + t->timer_c_ms);
        t->state = TXN_PROCEEDING;
        t->status = st;
        notify(t, TXN_EV_RESPONSE, rsp);
        if (!terminated(t) && was_calling && t->cancel_pending)
            send_cancel(t);
        return;
    }
    tq_cancel(&t->timer_c); /* a final: C stops */
    if (t->kind == TXN_INVITE_CLIENT) {
        if (st < 300) {
            if (t->state == TXN_COMPLETED)
                return; /* 2xx after a non-2xx final: nothing to do */
            if (t->state != TXN_ACCEPTED) {
                tq_cancel(&t->retrans);
                t->state = TXN_ACCEPTED;
                t->status = st;
                arm_long(t); /* M */
                compact_later(t);
            }
            notify(t, TXN_EV_RESPONSE, rsp); /* every 2xx goes up */
            return;
        }
        if (t->state == TXN_COMPLETED) {
            (void)resend_out(t); /* retransmitted final: ACK again */
            return;
        }
        if (t->state == TXN_ACCEPTED)
            return;
        tq_cancel(&t->retrans);
        t->state = TXN_COMPLETED;
        t->status = st;
        send_ack(t, rsp);
        arm_short(t, false); /* D: 64*T1 on UDP, 0 on TCP */
        compact_later(t);
        notify(t, TXN_EV_RESPONSE, rsp);
        return;
    }
    /* non-INVITE final */
    if (t->state == TXN_COMPLETED)
        return; /* retransmission: absorb */
    tq_cancel(&t->retrans);
    t->state = TXN_COMPLETED;
    t->status = st;
    arm_short(t, true); /* K */
    compact_later(t);
    notify(t, TXN_EV_RESPONSE, rsp);
}

/* ---- server side ------------------------------------------------------------
 */

int
txn_respond(struct txn *t, int status, struct slice bytes)
{
    int rc;

    if (!is_server(t))
        return -EINVAL;
    if (status < 100 || status > 699)
        return -EINVAL;
    if (terminated(t))
        return -EALREADY;
    if (t->state == TXN_ACCEPTED) {
        if (status < 200 || status >= 300)
            return -EALREADY;
        /* RFC 6026: 2xx retransmissions from the TU are sent. */
    } else if (t->state != TXN_TRYING && t->state != TXN_PROCEEDING) {
        return -EALREADY;
    }
    tq_cancel(&t->trying);
    t->status = status;
    if (t->fill_rport) {
        /* RFC 3581 §4: received and rport of the request's source, on
         * every transport (over TCP/TLS a phone such as liblinphone takes
         * its own port from it for its Contact). */
        char host[TP_ADDRSTRLEN], app[TP_ADDRSTRLEN + 32];
        size_t n = sizeof(";received=") - 1, hl;
        struct buf *b = &t->tt->scratch;

        /* ";received=HOST;rport=PORT", without printf (every response) */
        memcpy(app, ";received=", n);
        tp_addr_host(&t->src.remote, host, sizeof(host));
        hl = strlen(host);
        memcpy(app + n, host, hl);
        n += hl;
        memcpy(app + n, ";rport=", sizeof(";rport=") - 1);
        n += sizeof(";rport=") - 1;
        n += fmt_u64(app + n, tp_addr_port(&t->src.remote));
        buf_reset(b);
        if (sip_build_via_append(b, bytes, slice_make(app, n)) == 0)
            set_out(t, buf_slice(b));
        else
            set_out(t, bytes);
        if (b->alloc > TXN_SPARE_BUF)
            buf_fini(b); /* keep no large buffer after an odd response */
    } else {
        set_out(t, bytes);
    }
    rc = resend_out(t);
    if (rc < 0)
        log_info(ROOM, "response %d not sent: %s", status, strerror(-rc));
    if (status < 200) {
        t->state = TXN_PROCEEDING;
        return 0;
    }
    if (t->kind == TXN_INVITE_SERVER) {
        if (status < 300) {
            if (t->state != TXN_ACCEPTED) {
                t->state = TXN_ACCEPTED;
                arm_long(t); /* L */
                /* Accepted only absorbs INVITE retransmissions, passes
                 * ACKs up and sends the 2xx retransmissions the TU hands
                 * it (txn_respond): keys and addresses are enough. */
                compact_later(t);
            } else if (t->req == NULL) {
                /* A 2xx retransmission: sent, nothing to keep. */
                out_drop(t);
            }
            return 0;
        }
        t->state = TXN_COMPLETED;
        if (!t->reliable)
            arm_retrans(t, t1(t->tt)); /* G */
        arm_long(t);                   /* H */
        compact_later(t);
        return 0;
    }
    t->state = TXN_COMPLETED;
    arm_short(t, false); /* J: 64*T1 on UDP, 0 on TCP */
    if (!t->reliable)
        compact_later(t); /* over TCP J is 0: it dies next timer run */
    return 0;
}

int
txn_reply(struct txn *t, int status, const char *reason, struct slice to_tag,
          struct slice extra, struct slice body)
{
    struct buf b;
    int rc;

    if (!is_server(t))
        return -EINVAL;
    buf_init(&b, SIP_MAX_MSG_LEN);
    if (t->req == NULL)
        return -EALREADY; /* compacted: a final was sent */
    rc = sip_build_response(&b, t->req, status, reason,
                            status == 100 ? SLICE_NULL : to_tag, extra, body);
    if (rc == 0)
        rc = txn_respond(t, status, buf_slice(&b));
    buf_fini(&b);
    return rc;
}

int
txn_reply_stateless(struct txn *t, int status, const char *reason,
                    struct slice to_tag, struct slice extra)
{
    struct buf b;
    int rc;

    if (!is_server(t) || status < 300 || status > 699)
        return -EINVAL;
    if (terminated(t) || t->req == NULL ||
        (t->state != TXN_TRYING && t->state != TXN_PROCEEDING))
        return -EALREADY;
    buf_init(&b, SIP_MAX_MSG_LEN);
    rc = sip_build_response(&b, t->req, status, reason, to_tag, extra,
                            SLICE_NULL);
    if (rc == 0) {
        tq_cancel(&t->trying);
        t->status = status;
        int sent = send_bytes(t, b.data, b.len);
        if (sent < 0)
            log_info(ROOM, "stateless response %d not sent: %s", status,
                     strerror(-sent));
        terminate(t);
    }
    buf_fini(&b);
    return rc;
}

static struct txn *
server_new(struct txn_table *tt, const struct tp_rx *rx)
{
    struct sip_error err = {0, NULL};
    struct txn *t = txn_alloc(tt, rx->raw, rx->err ? NULL : rx->msg, &err);

    if (t == NULL)
        return NULL;
    t->kind = t->req->method == SIP_METHOD_INVITE ? TXN_INVITE_SERVER
                                                  : TXN_NON_INVITE_SERVER;
    t->state = t->kind == TXN_INVITE_SERVER ? TXN_PROCEEDING : TXN_TRYING;
    t->rfc2543 = !has_cookie(t->branch);
    t->src = rx->src;
    t->reliable = rx->src.proto != TP_UDP;
    t->fill_rport = rx->msg->via.rport && rx->msg->via.rport_value == 0 &&
                    rx->src.remote.len > 0;
    tp_dest_reply(&rx->src, &t->dst);
    if (t->reliable) {
        /* If the connection is gone, connect to the received IP and the
         * sent-by port (§18.2.2). */
        uint16_t port = t->port ? t->port : 5060;
        if (t->dst.addr.u.sa.sa_family == AF_INET)
            t->dst.addr.u.in4.sin_port = htons(port);
        else if (t->dst.addr.u.sa.sa_family == AF_INET6)
            t->dst.addr.u.in6.sin6_port = htons(port);
    }
    link_txn(t, &tt->sh, t->rfc2543 ? t->call_id : t->branch);
    if (t->kind == TXN_INVITE_SERVER && tt->cfg.auto_100)
        tq_fifo_add(&tt->fifo_100, &t->trying, tp_now_ms(tt->tp));
    return t;
}

/* A request that matched t: a retransmission, or the ACK. */
static void
server_retransmission(struct txn *t, const struct tp_rx *rx)
{
    const struct sip_msg *m = rx->msg;

    if (m->method == SIP_METHOD_ACK) {
        if (t->state == TXN_COMPLETED) {
            tq_cancel(&t->retrans);
            t->state = TXN_CONFIRMED;
            arm_short(t, true); /* I */
        } else if (t->state == TXN_ACCEPTED) {
            /* RFC 6026: ACKs in Accepted go to the TU. */
            t->tt->cfg.on_request(t->tt, NULL, m, &rx->src, t->tt->cfg.arg);
        }
        return;
    }
    switch (t->state) {
    case TXN_PROCEEDING:
    case TXN_COMPLETED:
        (void)resend_out(t); /* last provisional or final */
        break;
    default:
        break; /* Trying, Confirmed, Accepted: absorb */
    }
}

static void
handle_cancel(struct txn_table *tt, const struct tp_rx *rx)
{
    struct txn *inv = server_find(tt, rx->msg, SLICE_LIT("INVITE"));
    struct txn *ct;

    if (inv == NULL) {
        /* No INVITE: the TU answers (481) or forwards statelessly. */
        ct = server_new(tt, rx);
        if (ct != NULL)
            tt->cfg.on_request(tt, ct, ct->req, &rx->src, tt->cfg.arg);
        return;
    }
    ct = server_new(tt, rx);
    if (ct == NULL)
        return;
    txn_reply(ct, 200, "OK", SLICE_NULL, SLICE_NULL, SLICE_NULL);
    if (inv->state == TXN_PROCEEDING)
        notify(inv, TXN_EV_CANCELLED, NULL);
}

int
txn_recv(struct txn_table *tt, const struct tp_rx *rx)
{
    const struct sip_msg *m = rx->msg;
    struct txn *t;

    if (rx->err != NULL || m == NULL)
        return -EINVAL;
    if (!m->is_request) {
        t = client_find(tt, m->via.branch, m->cseq.method_name);
        if (t == NULL)
            return -ENOENT; /* RFC 6026 §7.3: never forward statelessly */
        client_response(t, m);
        return 0;
    }
    if (m->method == SIP_METHOD_ACK) {
        t = server_find(tt, m, SLICE_LIT("INVITE"));
        if (t != NULL)
            server_retransmission(t, rx);
        else
            tt->cfg.on_request(tt, NULL, m, &rx->src, tt->cfg.arg);
        return 0;
    }
    t = server_find(tt, m, m->cseq.method_name);
    if (t != NULL) {
        server_retransmission(t, rx);
        return 0;
    }
    if (m->method == SIP_METHOD_CANCEL) {
        handle_cancel(tt, rx);
        return 0;
    }
    t = server_new(tt, rx);
    if (t == NULL)
        return -EINVAL;
    /* The TU gets the stored copy so pointers it keeps stay valid. */
    tt->cfg.on_request(tt, t, t->req, &rx->src, tt->cfg.arg);
    return 0;
}

bool
txn_server_matches(struct txn_table *tt, const struct sip_msg *m)
{
    if (!m->is_request)
        return false;
    return server_find(tt, m,
                       m->method == SIP_METHOD_ACK
                           ? SLICE_LIT("INVITE")
                           : m->cseq.method_name) != NULL;
}

/* A client transaction waiting for its final: give up on it. */
static bool
abandon(struct txn *t)
{
    if (is_server(t) || (t->state != TXN_CALLING && t->state != TXN_TRYING &&
                         t->state != TXN_PROCEEDING))
        return false;
    notify(t, TXN_EV_TRANSPORT_ERROR, NULL);
    terminate(t);
    return true;
}

void
txn_client_abandon(struct txn *t)
{
    if (t)
        (void)abandon(t);
}

void
txn_flow_closed(struct txn_table *tt, uint64_t flow_id)
{
    struct list_node *n, *tmp;

    if (flow_id == 0)
        return;
    /* O(transactions): flows close rarely next to messages. */
    list_for_each_safe(n, tmp, &tt->all)
    {
        struct txn *t = container_of(n, struct txn, link);
        if (is_server(t) || t->src.flow_id != flow_id)
            continue;
        if (abandon(t))
            tmp = tt->all.next; /* tmp may have been terminated by the TU:
                                   restart */
    }
}

/* ---- branches ---------------------------------------------------------------
 */

void
txn_branch_new(const struct txn_table *tt, char *out)
{
    char b[32];

    sip_new_branch(b); /* "z9hG4bK" + 22 hex */
    snprintf(out, TXN_BRANCH_MAX, MAGIC "w%02x.%s", tp_worker(tt->tp) & 0xff,
             b + 7);
}

int
txn_branch_worker(struct slice branch)
{
    if (branch.len < 11 || memcmp(branch.ptr, MAGIC "w", 8) != 0 ||
        branch.ptr[10] != '.')
        return -1;
    int hi = hex_digit(branch.ptr[8]), lo = hex_digit(branch.ptr[9]);
    if (hi < 0 || lo < 0)
        return -1;
    return hi * 16 + lo;
}

/* ---- table
 * -------------------------------------------------------------------- */

int
txn_table_new(struct tp *tp, const struct txn_cfg *cfg, struct txn_table **out)
{
    struct txn_table *tt;
    const struct txn_timers *tm = &cfg->timers;

    if (cfg->on_request == NULL || tm->t1_ms == 0 || tm->t2_ms < tm->t1_ms ||
        tm->t4_ms == 0)
        return -EINVAL;
    tt = xcalloc(1, sizeof(*tt));
    tt->tp = tp;
    tt->cfg = *cfg;
    htab_init(&tt->ch);
    htab_init(&tt->sh);
    list_init(&tt->all);
    list_init(&tt->compact);
    list_init(&tt->dead);
    list_init(&tt->spare);
    buf_init(&tt->scratch, SIP_MAX_MSG_LEN);
    tq_fifo_init(tp_tq(tp), &tt->fifo_long, 64 * (uint64_t)tm->t1_ms);
    tq_fifo_init(tp_tq(tp), &tt->fifo_t4, tm->t4_ms);
    tq_fifo_init(tp_tq(tp), &tt->fifo_zero, 0);
    tq_fifo_init(tp_tq(tp), &tt->fifo_100, TRYING_MS);
    uv_check_init(tp_loop(tp), &tt->check);
    tt->check.data = tt;
    *out = tt;
    return 0;
}

static void
on_table_closed(uv_handle_t *h)
{
    struct txn_table *tt = h->data;

    free(tt->ch.b);
    free(tt->sh.b);
    free(tt);
}

void
txn_table_free(struct txn_table *tt)
{
    if (tt == NULL)
        return;
    while (!list_empty(&tt->all)) {
        struct txn *t = container_of(tt->all.next, struct txn, link);
        terminate(t); /* the TU frees its context */
    }
    free_dead(tt);
    spares_free(tt);
    buf_fini(&tt->scratch);
    tq_fifo_fini(&tt->fifo_long);
    tq_fifo_fini(&tt->fifo_t4);
    tq_fifo_fini(&tt->fifo_zero);
    tq_fifo_fini(&tt->fifo_100);
    uv_close((uv_handle_t *)&tt->check, on_table_closed);
}

/* ---- accessors
 * ------------------------------------------------------------------ */

void
txn_set_cb(struct txn *t, txn_event_cb *cb, void *arg)
{
    t->cb = cb;
    t->arg = arg;
}

void *
txn_arg(const struct txn *t)
{
    return t->arg;
}

const struct sip_msg *
txn_request(const struct txn *t)
{
    return t->req;
}

const struct tp_src *
txn_src(const struct txn *t)
{
    return &t->src;
}

enum txn_kind
txn_kind(const struct txn *t)
{
    return t->kind;
}

enum txn_state
txn_state(const struct txn *t)
{
    return t->state;
}

int
txn_status(const struct txn *t)
{
    return t->status;
}

struct txn_table *
txn_table_of(const struct txn *t)
{
    return t->tt;
}

struct tp *
txn_tp(const struct txn_table *tt)
{
    return tt->tp;
}

size_t
txn_count(const struct txn_table *tt)
{
    return tt->count;
}

size_t
txn_table_buckets(const struct txn_table *tt)
{
    return tt->ch.mask + 1 + tt->sh.mask + 1;
}

void
txn_table_spares(const struct txn_table *tt, size_t *structs, size_t *bodies)
{
    *structs = tt->nspare;
    *bodies = tt->nbodies;
}
