/*
 * proxy/proxy_media: the proxy drives rtpengine (docs/media.md).
 *
 * Every ng request runs on the worker's own media client (media/client.h:
 * UDP on the worker loop, repeats and failover on its timer queue), never
 * blocking the worker. What waits for rtpengine is held, not the worker:
 *  - a branch's INVITE (or an in-dialog re-INVITE/UPDATE) with SDP is sent
 *    from the offer's callback, with rtpengine's SDP (proxy_branch_send);
 *  - a 18x/2xx with SDP is relayed from the answer's callback
 *    (proxy_branch_relay); without SDP in the INVITE (late offer) the 2xx
 *    is the offer and the ACK carries the answer (held the same way);
 *  - BYE and every unanswered end (CANCEL, final failure, ring timeout,
 *    shutdown) send a delete and go on at once; its answer's per-leg
 *    figures go into the call's record.
 * Each request in flight is a struct media_op on p->mops; a call being
 * freed detaches its ops (their callbacks then do only what needs no
 * call: delete an orphaned offer's session).
 *
 * Which dialog is relayed, and by which rtpengine, travels in our
 * Record-Route (pp-m), so in-dialog requests need no dialog state.
 * Tags follow Kamailio's rtpengine module: the ng from-tag is always the
 * tag of the side that made the offer (an offer in a 2xx, or the answer
 * in an ACK, swaps From and To).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/xmalloc.h"
#include "media/client.h"
#include "media/media_cfg.h"
#include "media/media_lat.h"
#include "proxy/proxy_int.h"
#include "sip/build.h"
#include "sip/uri.h"

#define HOLD_ARENA_CAP (64 * 1024)

enum op_kind { OP_OFFER, OP_RESPONSE, OP_ACK, OP_DELETE };

struct media_op {
    struct list_node node; /* p->mops */
    struct proxy *p;
    struct proxy_call *call; /* NULL once the call is freed */
    struct branch *br;
    enum op_kind kind;
    bool late;         /* OP_RESPONSE: an offer (the INVITE had no SDP) */
    bool orphan_del;   /* detached from a call that was not answered */
    uint64_t id;
    char call_id[PROXY_REC_CALL_ID_MAX];
    char from_tag[64];
    char *msg;         /* held message bytes (response, ACK) */
    size_t len;
    struct tp_dest dst; /* OP_ACK */
    bool pop2;
    bool node_any; /* OP_ACK: to a node, TCP when large (proxy_ack_send) */
    uint64_t t0_us; /* made (media_lat_now_us): the held message's wait */
};

static void
count(struct proxy_shared *sh, enum proxy_media_counter k)
{
    atomic_fetch_add_explicit(&sh->media_counts[k], 1, memory_order_relaxed);
}

uint64_t
proxy_media_count(struct proxy_shared *sh, enum proxy_media_counter k)
{
    return atomic_load_explicit(&sh->media_counts[k], memory_order_relaxed);
}

void
proxy_shared_set_cluster(struct proxy_shared *sh, proxy_peer_fn *is_peer,
                         proxy_peer_uri_fn *peer_uri, void *arg)
{
    sh->is_peer = is_peer;
    sh->peer_uri = peer_uri;
    sh->peer_arg = arg;
}

void
proxy_shared_set_media(struct proxy_shared *sh, struct media_relays *relays,
                       int relay, int on_failure, int ice, int srtp)
{
    sh->relays = relays;
    sh->media_relay = relays && media_relays_count(relays) ? relay
                                                           : MEDIA_RELAY_OFF;
    sh->media_on_failure = on_failure;
    sh->media_ice = ice;
    sh->media_srtp = srtp;
    if (!sh->media_lat)
        sh->media_lat = media_lat_new();
}

struct media_lat *
proxy_media_lat(struct proxy_shared *sh)
{
    return sh ? sh->media_lat : NULL;
}

/* The message op held was handed on (or dropped because its call ended):
 * how long it waited for rtpengine, as one sample of k. */
static uint64_t
held(struct media_op *op, enum media_lat_kind k)
{
    uint64_t us = media_lat_now_us() - op->t0_us;
    media_lat_add(op->p->sh->media_lat, k, us);
    return us;
}

int
proxy_media_open(struct proxy *p)
{
    struct proxy_shared *sh = p->sh;

    if (!sh->relays || sh->media_relay == MEDIA_RELAY_OFF)
        return 0;
    return media_client_new(tp_loop(p->tp), sh->relays, p->worker, &p->mc);
}

void
proxy_media_close(struct proxy *p)
{
    struct list_node *n, *tmp;

    media_client_close(p->mc); /* pending requests: no callbacks */
    p->mc = NULL;
    list_for_each_safe(n, tmp, &p->mops)
    {
        struct media_op *op = container_of(n, struct media_op, node);
        list_remove(n);
        free(op->msg);
        free(op);
    }
}

void
proxy_media_detach(struct proxy_call *c)
{
    struct list_node *n;

    for (n = c->p->mops.next; n != &c->p->mops; n = n->next) {
        struct media_op *op = container_of(n, struct media_op, node);
        if (op->call != c)
            continue;
        op->call = NULL;
        op->br = NULL;
        op->orphan_del =
            c->kind == CALL_FORK && c->rec.outcome != PROXY_OUT_ANSWERED;
    }
}

/* ---- SDP and addresses -------------------------------------------------- */

bool
proxy_sdp_body(const struct sip_msg *m, struct slice *sdp)
{
    const struct sip_hdr *ct = sip_msg_hdr(m, SIP_HDR_CONTENT_TYPE);
    struct slice v;

    if (!ct || m->body.len == 0)
        return false;
    v = slice_trim(ct->value);
    if (v.len < 15 || !slice_eq_nocase_cstr(slice_make(v.ptr, 15),
                                            "application/sdp"))
        return false;
    *sdp = m->body;
    return true;
}

/* The first c= address of an SDP (session or media level). */
static bool
sdp_conn(struct slice sdp, struct tp_addr *a)
{
    const char *p = sdp.ptr, *end = sdp.ptr + sdp.len;

    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        if (le - p > 9 && (memcmp(p, "c=IN IP4 ", 9) == 0 ||
                           memcmp(p, "c=IN IP6 ", 9) == 0)) {
            const char *h = p + 9, *e = h;
            while (e < le && *e != '/' && *e != '\r' && *e != ' ')
                e++;
            return tp_addr_from_ip(slice_make(h, (size_t)(e - h)), 0, a) == 0;
        }
        p = le + 1;
    }
    return false;
}

static bool
same_host(const struct tp_addr *a, const struct tp_addr *b)
{
    if (a->u.sa.sa_family != b->u.sa.sa_family)
        return false;
    if (a->u.sa.sa_family == AF_INET)
        return a->u.in4.sin_addr.s_addr == b->u.in4.sin_addr.s_addr;
    return memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, 16) == 0;
}

/* relay = nat's rule for one side: its SDP address is private or is not
 * the address its signalling came from. */
static bool
sdp_nat(struct slice sdp, const struct tp_addr *src)
{
    struct tp_addr c;

    if (!src || src->len == 0 || !sdp_conn(sdp, &c))
        return false;
    return proxy_private_addr(&c) || !same_host(&c, src);
}

void
proxy_media_caller(struct proxy_call *c, const struct sip_msg *req,
                   const struct tp_src *src)
{
    const struct sip_hdr *h = sip_msg_hdr(req, SIP_HDR_CONTACT);
    struct sip_name_addr na;
    struct sip_error e;
    struct sip_uri u;
    struct tp_dest d;
    struct slice sdp;
    const char *why;

    proxy_copy_cstr(c->rec.caller_tag, sizeof(c->rec.caller_tag),
                    req->from.tag);
    if (h && src->proto == TP_UDP &&
        sip_name_addr_parse(h->value, &na, &e) == 0 &&
        sip_uri_parse(na.uri, &u, &why) == 0 &&
        proxy_dest_from_uri(&u, &d) == 0 && proxy_private_addr(&d.addr) &&
        !tp_addr_equal(&d.addr, &src->remote)) {
        c->caller_nat = true;
        tp_addr_format(&src->remote, c->nat_a, sizeof(c->nat_a));
    }
    if (proxy_sdp_body(req, &sdp) && sdp_nat(sdp, &src->remote))
        c->caller_nat = true;
}

/* ---- requests --------------------------------------------------------- */

static void on_ng(void *arg, const struct media_ng_result *res);

static void
req_init(const struct proxy_shared *sh, struct media_ng_req *r,
         enum media_ng_cmd cmd, struct slice call_id)
{
    *r = (struct media_ng_req){
        .cmd = cmd,
        .call_id = call_id,
        .replace_origin = true,
        .replace_session_connection = true,
        .ice = sh->media_ice == MEDIA_ICE_FORCE ? MEDIA_NG_ICE_FORCE
                                                : MEDIA_NG_ICE_REMOVE,
    };
}

/* received-from and SIP-source-address for a side whose signalling came
 * from addr (nothing known for a TCP/TLS flow, nor when addr is another
 * [cluster] node, which relays the signalling of a phone it holds: the
 * phone's media is not at the node's address; rtpengine's endpoint
 * learning finds it from its first RTP). */
static void
req_source(const struct proxy_shared *sh, struct media_ng_req *r,
           struct slice sdp, const struct tp_addr *addr, char *ip, size_t cap)
{
    if (!addr || addr->len == 0 ||
        (sh->is_peer && sh->is_peer(&addr->u.sa, sh->peer_arg)))
        return;
    r->received_from = slice_cstr(tp_addr_host(addr, ip, cap));
    r->sip_source = sdp_nat(sdp, addr);
}

/* Send r for op (owned: freed here on failure). 0 or a negative code. */
static int
op_send(struct proxy *p, struct media_op *op, const struct media_ng_req *r,
        int relay)
{
    proxy_copy_cstr(op->call_id, sizeof(op->call_id), r->call_id);
    proxy_copy_cstr(op->from_tag, sizeof(op->from_tag),
                    r->cmd == MEDIA_NG_DELETE ? r->from_tag
                    : op->kind == OP_OFFER    ? r->from_tag
                                              : SLICE_NULL);
    int rc = media_client_send(p->mc, r, relay >= 0 ? relay : -1, on_ng, op,
                               &op->id);
    if (rc < 0) {
        log_warn("proxy", "media: %s not sent: %s call_id=%s",
                 media_ng_cmd_name(r->cmd), strerror(-rc), op->call_id);
        free(op->msg);
        free(op);
        return rc;
    }
    list_push_back(&p->mops, &op->node);
    return 0;
}

static struct media_op *
op_new(struct proxy *p, struct proxy_call *c, struct branch *b, enum op_kind k)
{
    struct media_op *op = xcalloc(1, sizeof(*op));

    op->p = p;
    op->call = c;
    op->br = b;
    op->kind = k;
    op->t0_us = media_lat_now_us();
    return op;
}

static void
op_hold(struct media_op *op, const struct sip_msg *m)
{
    op->len = m->len;
    op->msg = xmalloc(m->len);
    memcpy(op->msg, m->buf, m->len);
}

static struct slice
srtp_profile(const struct proxy_shared *sh, const struct branch *b)
{
    if (sh->media_srtp != PROXY_SRTP_TLS)
        return SLICE_NULL;
    return slice_cstr(b->tls ? "RTP/SAVP" : "RTP/AVP");
}

bool
proxy_media_offer(struct proxy_call *c, struct branch *b,
                  const struct sip_msg *req)
{
    struct proxy *p = c->p;
    struct proxy_shared *sh = p->sh;
    struct media_ng_req r;
    struct slice sdp;
    char ip[TP_ADDRSTRLEN];
    int relay = -1;

    if (!p->mc || !req)
        return false;
    bool has = proxy_sdp_body(req, &sdp);
    req_init(sh, &r, MEDIA_NG_OFFER, req->call_id);
    if (c->kind == CALL_FORK) {
        /* [cluster] One relay per call: the node that received it offers
         * and answers (its Record-Route carries pp-m, so in-dialog
         * requests are relayed there too); the node that holds the
         * callee's flow (c->peer) passes the SDP unchanged
         * (docs/cluster.md). */
        if (req->method != SIP_METHOD_INVITE || c->peer)
            return false;
        if (sh->media_relay != MEDIA_RELAY_ALWAYS && !c->caller_nat && !b->nat)
            return false; /* relay = nat, nobody behind NAT */
        b->media = PROXY_MEDIA_ANY;
        if (!has)
            return false; /* late offer: the 2xx brings it */
        r.via_branch = slice_cstr(b->vbranch);
        r.transport_protocol = srtp_profile(sh, b);
    } else {
        if (c->media == PROXY_MEDIA_NONE || !has ||
            (req->method != SIP_METHOD_INVITE &&
             req->method != SIP_METHOD_UPDATE))
            return false;
        r.to_tag = req->to.tag;
        relay = c->media;
    }
    r.from_tag = req->from.tag;
    r.sdp = sdp;
    req_source(sh, &r, sdp, &c->src_a.remote, ip, sizeof(ip));
    if (c->kind == CALL_FORK && c->caller_nat)
        r.sip_source = true;
    struct media_op *op = op_new(p, c, b, OP_OFFER);
    if (op_send(p, op, &r, relay) < 0) {
        if (c->kind == CALL_FORK)
            b->media = PROXY_MEDIA_NONE;
        return false;
    }
    return true;
}

bool
proxy_media_response(struct proxy_call *c, struct branch *b,
                     const struct sip_msg *rsp)
{
    struct proxy *p = c->p;
    struct media_ng_req r;
    struct slice sdp;
    char ip[TP_ADDRSTRLEN];
    bool late;
    int relay;

    if (!p->mc || !proxy_sdp_body(rsp, &sdp))
        return false;
    if (c->kind == CALL_FORK) {
        if (b->media == PROXY_MEDIA_NONE)
            return false;
        late = b->media == PROXY_MEDIA_ANY;
        relay = b->media;
    } else {
        if (c->media == PROXY_MEDIA_NONE)
            return false;
        late = b->media == PROXY_MEDIA_NONE; /* no offer in the request */
        relay = late ? c->media : b->media;
    }
    req_init(p->sh, &r, late ? MEDIA_NG_OFFER : MEDIA_NG_ANSWER,
             rsp->call_id);
    r.from_tag = late ? rsp->to.tag : rsp->from.tag;
    r.to_tag = late ? rsp->from.tag : rsp->to.tag;
    if (c->kind == CALL_FORK)
        r.via_branch = slice_cstr(b->vbranch);
    r.sdp = sdp;
    req_source(p->sh, &r, sdp, b->dst.proto == TP_UDP ? &b->dst.addr : NULL,
               ip, sizeof(ip));
    struct media_op *op = op_new(p, c, b, OP_RESPONSE);
    op->late = late;
    op_hold(op, rsp);
    return op_send(p, op, &r, relay) == 0;
}

bool
proxy_media_ack(struct proxy *p, const struct sip_msg *ack,
                const struct tp_dest *dst, bool pop2, bool node_any,
                int relay, const struct tp_src *src)
{
    struct media_ng_req r;
    struct slice sdp;
    char ip[TP_ADDRSTRLEN];

    if (!p->mc || !proxy_sdp_body(ack, &sdp))
        return false;
    /* The answer to the offer a 2xx made: from-tag is the offerer's, the
     * 2xx's sender, which is the ACK's To. */
    req_init(p->sh, &r, MEDIA_NG_ANSWER, ack->call_id);
    r.from_tag = ack->to.tag;
    r.to_tag = ack->from.tag;
    r.sdp = sdp;
    req_source(p->sh, &r, sdp, src->proto == TP_UDP ? &src->remote : NULL,
               ip, sizeof(ip));
    struct media_op *op = op_new(p, NULL, NULL, OP_ACK);
    op->dst = *dst;
    op->pop2 = pop2;
    op->node_any = node_any;
    op_hold(op, ack);
    return op_send(p, op, &r, relay) == 0;
}

/* from_tag: either side's tag. rtpengine deletes the whole call either
 * way, but answers with the per-leg figures only when it is given. */
void
proxy_media_delete(struct proxy *p, struct slice call_id,
                   struct slice from_tag, int relay)
{
    struct media_ng_req r;

    if (!p->mc)
        return;
    req_init(p->sh, &r, MEDIA_NG_DELETE, call_id);
    r.from_tag = from_tag;
    r.replace_origin = r.replace_session_connection = false;
    r.ice = MEDIA_NG_ICE_UNSET;
    if (op_send(p, op_new(p, NULL, NULL, OP_DELETE), &r, relay) == 0)
        count(p->sh, PROXY_MEDIA_DELETES);
}

/* ---- answers ---------------------------------------------------------- */

static void
offer_done(struct media_op *op, const struct media_ng_result *res, bool ok)
{
    struct proxy *p = op->p;
    struct proxy_shared *sh = p->sh;
    struct proxy_call *c = op->call;
    struct branch *b = op->br;
    int rc;

    if (!c) {
        if (ok && op->orphan_del)
            proxy_media_delete(p, slice_cstr(op->call_id), slice_cstr(op->from_tag),
                               res->relay);
        return;
    }
    if (ok) {
        c->media_used = true;
        c->media = res->relay;
    }
    if (b->cancelled || b->status || !c->st ||
        (c->kind == CALL_FORK && c->final_sent)) {
        /* Ended while the offer was out: not sent. A call that ended
         * unanswered already sent its delete, maybe before this
         * session existed: delete again. */
        b->media_wait = false;
        if (!b->status)
            b->status = 487;
        if (ok && c->rec.ended_ms && c->rec.outcome != PROXY_OUT_ANSWERED)
            proxy_media_delete(p, slice_cstr(op->call_id), slice_cstr(op->from_tag),
                               res->relay);
        proxy_call_check_done(c);
        return;
    }
    if (ok) {
        struct slice sdp = res->answer->sdp;
        b->media = res->relay;
        rc = proxy_branch_send(c, b, &sdp);
    } else {
        log_warn("proxy", "media: offer failed (%s%s%s) call_id=%s",
                 media_ng_status_name(res->status), res->error ? ": " : "",
                 res->error ? res->error : "", op->call_id);
        if (c->kind == CALL_RELAY) {
            /* A call already up keeps its media: the re-INVITE is
             * refused (the session stays as it was, on rtpengine). */
            b->media_wait = false;
            b->status = 503;
            proxy_call_final_extra(c, 503, "Media Relay Unavailable",
                                   slice_cstr("Retry-After: 5\r\n"));
            return;
        }
        if (sh->media_on_failure == MEDIA_ON_FAILURE_REJECT) {
            int st = res->status == MEDIA_NG_REFUSED ? 488 : 503;
            count(sh, PROXY_MEDIA_REJECTED);
            b->media_wait = false;
            b->status = st;
            proxy_call_cancel_branches(c, b, "");
            proxy_call_final(c, st,
                             st == 503 ? "Media Relay Unavailable" : NULL);
            proxy_call_finish(c, PROXY_OUT_FAILED, st);
            return;
        }
        count(sh, PROXY_MEDIA_PASSED);
        b->media = PROXY_MEDIA_NONE;
        rc = proxy_branch_send(c, b, NULL);
    }
    if (rc == 0) {
        /* The request waited this long for rtpengine. A fork's branch
         * keeps it for the call's set-up sample (its first answer). */
        uint64_t us = held(op, MEDIA_LAT_OFFER);
        if (c->kind == CALL_FORK && ok) {
            b->media_offer_us = us;
            b->media_timed = true;
        }
    }
    if (rc < 0) {
        log_info("proxy", "branch to %s not started: %s call_id=%s",
                 b->uri ? b->uri : "(dialog)", strerror(-rc), op->call_id);
        b->status = 503;
        if (c->kind == CALL_RELAY)
            proxy_call_final(c, 503, NULL);
        else
            proxy_call_check_done(c);
    }
}

static void
response_done(struct media_op *op, const struct media_ng_result *res, bool ok)
{
    struct proxy_call *c = op->call;
    struct branch *b = op->br;
    struct arena a;
    struct sip_msg m;
    struct sip_error e;

    if (!c)
        return;
    arena_init(&a, HOLD_ARENA_CAP);
    if (sip_msg_parse(&m, op->msg, op->len, &a, &e) < 0) {
        arena_fini(&a);
        return; /* cannot happen: it parsed when it arrived */
    }
    if (ok) {
        struct slice sdp = res->answer->sdp;
        if (op->late) {
            b->media = res->relay;
            c->media = res->relay;
            c->media_used = true;
        }
        /* Timed before the relay: a 2xx may end the call's life. */
        uint64_t us = held(op, op->late ? MEDIA_LAT_OFFER : MEDIA_LAT_ANSWER);
        if (!op->late && c->kind == CALL_FORK && b->media_timed) {
            /* The branch's first 18x/2xx with SDP: what relay added to
             * this call's set-up (once per branch). */
            b->media_timed = false;
            media_lat_add(c->p->sh->media_lat, MEDIA_LAT_CALL,
                          b->media_offer_us + us);
        }
        proxy_branch_relay(c, b, &m, &sdp);
    } else {
        log_warn("proxy",
                 "media: %s for a %d failed (%s%s%s), relayed unchanged "
                 "call_id=%s",
                 op->late ? "offer" : "answer", m.status,
                 media_ng_status_name(res->status), res->error ? ": " : "",
                 res->error ? res->error : "", op->call_id);
        held(op, op->late ? MEDIA_LAT_OFFER : MEDIA_LAT_ANSWER);
        proxy_branch_relay(c, b, &m, NULL);
    }
    arena_fini(&a);
}

static void
ack_done(struct media_op *op, const struct media_ng_result *res, bool ok)
{
    struct proxy *p = op->p;
    struct arena a;
    struct sip_msg m;
    struct sip_error e;

    arena_init(&a, HOLD_ARENA_CAP);
    if (sip_msg_parse(&m, op->msg, op->len, &a, &e) < 0) {
        arena_fini(&a);
        return;
    }
    if (ok)
        m.body = res->answer->sdp;
    else
        log_warn("proxy", "media: answer in an ACK failed (%s), relayed "
                 "unchanged call_id=%s",
                 media_ng_status_name(res->status), op->call_id);
    if (proxy_ack_send(p, &m, &op->dst, op->pop2, op->node_any))
        held(op, MEDIA_LAT_ANSWER);
    arena_fini(&a);
}

static void
delete_done(struct media_op *op, const struct media_ng_result *res)
{
    struct proxy_shared *sh = op->p->sh;

    if (res->status != MEDIA_NG_OK || !res->answer ||
        !res->answer->has_stats) {
        log_info("proxy", "media: delete %s%s%s call_id=%s",
                 media_ng_status_name(res->status), res->error ? ": " : "",
                 res->error ? res->error : "", op->call_id);
        return;
    }
    const struct media_ng_stats *st = &res->answer->stats;
    count(sh, PROXY_MEDIA_CALLS);
    if (st->one_way)
        count(sh, PROXY_MEDIA_ONE_WAY);
    if (st->no_media)
        count(sh, PROXY_MEDIA_NO_MEDIA);
    proxy_record_media(sh, op->call_id, st);
    if (st->one_way || st->no_media)
        log_notice("proxy", "media: %s call_id=%s",
                   st->no_media ? "no media at all" : "one-way audio",
                   op->call_id);
}

static void
on_ng(void *arg, const struct media_ng_result *res)
{
    struct media_op *op = arg;
    struct proxy_shared *sh = op->p->sh;
    bool ok = res->status == MEDIA_NG_OK && res->answer &&
              res->answer->sdp.len > 0;

    list_remove(&op->node);
    if (op->kind != OP_DELETE) {
        if (!ok)
            count(sh, PROXY_MEDIA_FAILED);
        else if (op->kind == OP_OFFER || (op->kind == OP_RESPONSE && op->late))
            count(sh, PROXY_MEDIA_OFFERS);
        else
            count(sh, PROXY_MEDIA_ANSWERS);
    }
    switch (op->kind) {
    case OP_OFFER:
        offer_done(op, res, ok);
        break;
    case OP_RESPONSE:
        response_done(op, res, ok);
        break;
    case OP_ACK:
        ack_done(op, res, ok);
        break;
    case OP_DELETE:
        delete_done(op, res);
        break;
    }
    free(op->msg);
    free(op);
}

int
proxy_route_media(const struct sip_uri *route)
{
    struct slice v;
    unsigned long long n;

    if (!sip_param_get(route->params, "pp-m", &v))
        return PROXY_MEDIA_NONE;
    if (slice_to_u64(v, MEDIA_MAX_RELAYS - 1, &n) == 0)
        return (int)n;
    return PROXY_MEDIA_ANY;
}
