/*
 * txn: the four RFC 3261 §17 state machines (+ RFC 6026 Accepted) and the
 * per-worker table that matches messages to them.
 *
 * Timers: the doubling A/E/G go to the worker tq's heap (t->retrans); every
 * fixed timeout goes to one of the table's FIFO queues (t->timeout), one
 * queue per distinct duration, so deadline order is insertion order:
 *   fifo_long  = 64*T1: B, F, H, J(UDP), L, M, and D(UDP)
 *   fifo_t4    = T4:    I(UDP), K(UDP)
 *   fifo_zero  = 0:     D, I, J, K over TCP (terminate on the next timer run,
 *                       not inside the TU's call)
 *   fifo_100   = 200 ms: the automatic 100 Trying (t->trying)
 * Timer D is 64*T1 (= 32 s with the default T1, RFC 3261's "at least 32 s
 * for UDP"); with a test T1 of 20 ms it is 1.28 s.
 *
 * Matching uses two hash tables of list buckets (client: top-Via branch;
 * server: branch, or Call-ID for RFC 2543 requests without the cookie).
 * 4096 buckets each: a worker holds tens of thousands of transactions at
 * most (64*T1 = 32 s of traffic), so chains stay short.
 *
 * Deferred free: terminate() unlinks the transaction from the hash, cancels
 * its timers, reports TXN_EV_TERMINATED and parks it on the dead list; a
 * uv_check handle (one per table, active only while the list is not empty)
 * frees the dead after the loop's poll phase.
 */
#include "txn/txn.h"

#include <errno.h>
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
#define NBUCKETS 4096
#define TRYING_MS 200
#define MAGIC "z9hG4bK"

struct txn {
    struct txn_table *tt;
    enum txn_kind kind;
    enum txn_state state;
    struct list_node hlink; /* client or server hash bucket */
    struct list_node link;  /* tt->all, then tt->dead */
    struct tq_entry retrans;
    struct tq_entry timeout;
    struct tq_entry trying;
    uint64_t interval_ms; /* current A/E/G interval */
    bool reliable;
    bool rfc2543; /* server request without the magic cookie */

    char *req_bytes;
    size_t req_len;
    struct sip_msg req; /* parsed from req_bytes into arena */
    struct arena arena;
    struct slice method; /* CSeq method of req (into req_bytes) */

    struct tp_src src;
    struct tp_dest dst;
    char *out_bytes; /* server: last response; client: ACK for non-2xx */
    size_t out_len;
    int status;

    bool cancel_pending;
    char *cancel_extra;
    size_t cancel_extra_len;

    txn_event_cb *cb;
    void *arg;
};

struct txn_table {
    struct tp *tp;
    struct txn_cfg cfg;
    struct list_node cbuckets[NBUCKETS];
    struct list_node sbuckets[NBUCKETS];
    struct list_node all, dead;
    size_t count;
    struct tq_fifo fifo_long, fifo_t4, fifo_zero, fifo_100;
    uv_check_t check;
    bool check_active;
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

static size_t
hash_slice(struct slice s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */

    for (size_t i = 0; i < s.len; i++) {
        h ^= (unsigned char)s.ptr[i];
        h *= 1099511628211ULL;
    }
    return (size_t)(h % NBUCKETS);
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
    list_remove(&t->hlink);
    list_remove(&t->link);
    list_push_back(&tt->dead, &t->link);
    check_start(tt);
    notify(t, TXN_EV_TERMINATED, NULL);
}

static void
txn_release(struct txn *t)
{
    arena_fini(&t->arena);
    free(t->req_bytes);
    free(t->out_bytes);
    free(t->cancel_extra);
    t->tt->count--;
    free(t);
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

static void
on_check(uv_check_t *h)
{
    struct txn_table *tt = h->data;

    free_dead(tt);
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
    free(t->out_bytes);
    t->out_bytes = xmalloc(bytes.len ? bytes.len : 1);
    if (bytes.len)
        memcpy(t->out_bytes, bytes.ptr, bytes.len);
    t->out_len = bytes.len;
}

static int
send_bytes(struct txn *t, const char *p, size_t len)
{
    uint64_t flow = 0;
    int rc = tp_send(t->tt->tp, &t->dst, slice_make(p, len), &flow);

    if (rc == 0 && t->dst.proto == TP_TCP && flow != 0) {
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
    case TXN_CALLING:    /* B */
    case TXN_TRYING:     /* F */
    case TXN_PROCEEDING: /* F (non-INVITE client only arms it here) */
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

/* ---- creation -------------------------------------------------------------
 */

static struct txn *
txn_alloc(struct txn_table *tt, struct slice bytes, struct sip_error *err)
{
    struct txn *t = xcalloc(1, sizeof(*t));

    t->tt = tt;
    list_init(&t->hlink);
    list_init(&t->link);
    tq_entry_init(&t->retrans, on_retrans);
    tq_entry_init(&t->timeout, on_timeout);
    tq_entry_init(&t->trying, on_trying);
    t->req_bytes = xmalloc(bytes.len ? bytes.len : 1);
    memcpy(t->req_bytes, bytes.ptr, bytes.len);
    t->req_len = bytes.len;
    arena_init(&t->arena, SIP_MSG_ARENA_CAP);
    tt->count++;
    if (sip_msg_parse(&t->req, t->req_bytes, t->req_len, &t->arena, err) != 0) {
        txn_release(t);
        return NULL;
    }
    t->method = t->req.cseq.method_name;
    return t;
}

static void
link_txn(struct txn *t, struct list_node *buckets, struct slice key)
{
    list_push_back(&buckets[hash_slice(key)], &t->hlink);
    list_push_back(&t->tt->all, &t->link);
}

/* ---- matching -------------------------------------------------------------
 */

static struct txn *
client_find(struct txn_table *tt, struct slice branch, struct slice method)
{
    struct list_node *head = &tt->cbuckets[hash_slice(branch)], *n;

    for (n = head->next; n != head; n = n->next) {
        struct txn *t = container_of(n, struct txn, hlink);
        if (slice_eq(t->req.via.branch, branch) && slice_eq(t->method, method))
            return t;
    }
    return NULL;
}

static bool
sent_by_eq(const struct sip_via *a, const struct sip_via *b)
{
    return a->port == b->port && slice_eq_nocase(a->host, b->host);
}

/* §17.2.3; method is the transaction's method to look for (INVITE for an
 * ACK or for the INVITE a CANCEL refers to). */
static struct txn *
server_find(struct txn_table *tt, const struct sip_msg *m, struct slice method)
{
    bool cookie = has_cookie(m->via.branch);
    struct slice key = cookie ? m->via.branch : m->call_id;
    struct list_node *head = &tt->sbuckets[hash_slice(key)], *n;

    for (n = head->next; n != head; n = n->next) {
        struct txn *t = container_of(n, struct txn, hlink);
        const struct sip_msg *r = &t->req;
        if (!slice_eq(t->method, method) || t->rfc2543 == cookie)
            continue;
        if (!sent_by_eq(&r->via, &m->via))
            continue;
        if (cookie) {
            if (slice_eq(r->via.branch, m->via.branch))
                return t;
            continue;
        }
        /* RFC 2543 fallback (basic): Call-ID, From tag, CSeq number and
         * top Via sent-by (checked above). */
        if (slice_eq(r->call_id, m->call_id) &&
            slice_eq(r->from.tag, m->from.tag) && r->cseq.num == m->cseq.num)
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
    t = txn_alloc(tt, bytes, &err);
    if (t == NULL)
        return -EINVAL;
    if (!t->req.is_request || t->req.method == SIP_METHOD_ACK ||
        t->req.via.branch.len == 0) {
        rc = -EINVAL;
        goto fail;
    }
    if (client_find(tt, t->req.via.branch, t->method) != NULL) {
        rc = -EEXIST;
        goto fail;
    }
    t->kind = t->req.method == SIP_METHOD_INVITE ? TXN_INVITE_CLIENT
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
    link_txn(t, tt->cbuckets, t->req.via.branch);
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
    rc = sip_build_cancel(&b, &t->req,
                          slice_make(t->cancel_extra, t->cancel_extra_len));
    if (rc == 0) {
        struct tp_dest d = t->dst; /* same flow / address (§9.1) */
        rc = txn_client_start(t->tt, buf_slice(&b), &d, NULL, NULL, NULL);
    }
    if (rc < 0)
        log_warn(ROOM, "CANCEL not sent: %s", strerror(-rc));
    buf_fini(&b);
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
    if (sip_build_ack(&b, &t->req, rsp) == 0) {
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
        if (t->kind == TXN_INVITE_CLIENT) {
            tq_cancel(&t->retrans); /* A stops; B stops (§17.1.1.2) */
            tq_cancel(&t->timeout);
        }
        t->state = TXN_PROCEEDING;
        t->status = st;
        notify(t, TXN_EV_RESPONSE, rsp);
        if (!terminated(t) && was_calling && t->cancel_pending)
            send_cancel(t);
        return;
    }
    if (t->kind == TXN_INVITE_CLIENT) {
        if (st < 300) {
            if (t->state == TXN_COMPLETED)
                return; /* 2xx after a non-2xx final: nothing to do */
            if (t->state != TXN_ACCEPTED) {
                tq_cancel(&t->retrans);
                t->state = TXN_ACCEPTED;
                t->status = st;
                arm_long(t); /* M */
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
    set_out(t, bytes);
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
            }
            return 0;
        }
        t->state = TXN_COMPLETED;
        if (!t->reliable)
            arm_retrans(t, t1(t->tt)); /* G */
        arm_long(t);                   /* H */
        return 0;
    }
    t->state = TXN_COMPLETED;
    arm_short(t, false); /* J: 64*T1 on UDP, 0 on TCP */
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
    rc = sip_build_response(&b, &t->req, status, reason,
                            status == 100 ? SLICE_NULL : to_tag, extra, body);
    if (rc == 0)
        rc = txn_respond(t, status, buf_slice(&b));
    buf_fini(&b);
    return rc;
}

static struct txn *
server_new(struct txn_table *tt, const struct tp_rx *rx)
{
    struct sip_error err = {0, NULL};
    struct txn *t = txn_alloc(tt, rx->raw, &err);

    if (t == NULL)
        return NULL;
    t->kind = t->req.method == SIP_METHOD_INVITE ? TXN_INVITE_SERVER
                                                 : TXN_NON_INVITE_SERVER;
    t->state = t->kind == TXN_INVITE_SERVER ? TXN_PROCEEDING : TXN_TRYING;
    t->rfc2543 = !has_cookie(t->req.via.branch);
    t->src = rx->src;
    t->reliable = rx->src.proto != TP_UDP;
    tp_dest_reply(&rx->src, &t->dst);
    if (t->reliable) {
        /* If the connection is gone, connect to the received IP and the
         * sent-by port (§18.2.2). */
        uint16_t port = t->req.via.port ? t->req.via.port : 5060;
        if (t->dst.addr.u.sa.sa_family == AF_INET)
            t->dst.addr.u.in4.sin_port = htons(port);
        else if (t->dst.addr.u.sa.sa_family == AF_INET6)
            t->dst.addr.u.in6.sin6_port = htons(port);
    }
    link_txn(t, tt->sbuckets, t->rfc2543 ? t->req.call_id : t->req.via.branch);
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
            tt->cfg.on_request(tt, ct, &ct->req, &rx->src, tt->cfg.arg);
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
    tt->cfg.on_request(tt, t, &t->req, &rx->src, tt->cfg.arg);
    return 0;
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
        if (t->state == TXN_CALLING || t->state == TXN_TRYING ||
            t->state == TXN_PROCEEDING) {
            notify(t, TXN_EV_TRANSPORT_ERROR, NULL);
            terminate(t);
            /* tmp may have been terminated by the TU: restart. */
            tmp = tt->all.next;
        }
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
    for (size_t i = 0; i < NBUCKETS; i++) {
        list_init(&tt->cbuckets[i]);
        list_init(&tt->sbuckets[i]);
    }
    list_init(&tt->all);
    list_init(&tt->dead);
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
    free(h->data);
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
    return &t->req;
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
