/*
 * proxy/proxy_route: an out-of-dialog request through the proxy: our
 * addresses, steering a message to the worker that must handle it, the
 * refusals (stateless when the request brought no credentials), loop
 * detection, caller authentication (407), the callee's location lookup and
 * the start of the fork (route_initial), and the entry point
 * proxy_on_request. The fork itself is proxy_fork.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/xmalloc.h"
#include "proxy/proxy_int.h"
#include "registrar/reg.h"
#include "sip/build.h"
#include "sip/uri.h"

/* ---- addresses --------------------------------------------------------- */

/* Is uri one of our addresses (domain or listener host, our port)? */
bool
proxy_uri_is_us(const struct proxy *p, const struct sip_uri *u)
{
    uint16_t port = u->has_port ? u->port : 0;
    bool host = slice_eq_nocase_cstr(u->host, p->sh->domain);

    for (int k = 0; k < 3 && !host; k++) {
        const char *hp = p->via_host[k];
        const char *colon = strrchr(hp, ':');
        struct slice h = slice_make(hp, colon ? (size_t)(colon - hp) : 0);
        if (h.len > 2 && h.ptr[0] == '[') {
            h.ptr++;
            h.len -= 2;
        }
        host = slice_eq_nocase(u->host, h);
    }
    if (!host)
        return false;
    if (port == 0)
        return true;
    for (int k = 0; k < 3; k++) {
        const char *colon = strrchr(p->via_host[k], ':');
        unsigned long long v;
        if (colon && slice_to_u64(slice_cstr(colon + 1), 65535, &v) == 0 &&
            v == port)
            return true;
    }
    return false;
}

/* Request-URI host: ours (domain or a numeric address; requests reach us
 * by IP) or foreign. */
static bool
host_is_numeric(struct slice host)
{
    struct tp_addr a;

    return tp_addr_from_ip(host, 0, &a) == 0;
}

/* The transport a URI asks for: sips: or transport=tls is TLS,
 * transport=tcp TCP, else UDP (RFC 3261 §19.1.2, §26.2.2). */
enum tp_proto
proxy_uri_proto(const struct sip_uri *u)
{
    struct slice tr;

    if (u->scheme == SIP_URI_SIPS)
        return TP_TLS;
    if (sip_uri_param(u, "transport", &tr)) {
        if (slice_eq_nocase_cstr(tr, "tls"))
            return TP_TLS;
        if (slice_eq_nocase_cstr(tr, "tcp"))
            return TP_TCP;
    }
    return TP_UDP;
}

/* Destination for a URI: numeric host only (no DNS yet), transport
 * param, default port 5060 (5061 for TLS). */
int
proxy_dest_from_uri(const struct sip_uri *u, struct tp_dest *d)
{
    *d = (struct tp_dest){.proto = proxy_uri_proto(u), .listener = -1};
    return tp_addr_from_ip(u->host,
                           u->has_port          ? u->port
                           : d->proto == TP_TLS ? 5061
                                                : 5060,
                           &d->addr);
}

/* The top Route value parsed, if any. Returns 1 found, 0 none, -1 bad. */
int
proxy_top_route(const struct sip_msg *m, struct sip_name_addr *na,
                struct sip_uri *u, struct slice *second)
{
    struct sip_hdr_iter it;
    struct slice v;
    struct sip_error e;
    const char *why;

    sip_hdr_iter_init(&it, m, SIP_HDR_ROUTE);
    if (!sip_hdr_iter_next(&it, &v))
        return 0;
    if (sip_name_addr_parse(v, na, &e) < 0 ||
        sip_uri_parse(na->uri, u, &why) < 0)
        return -1;
    *second = SLICE_NULL;
    if (sip_hdr_iter_next(&it, &v))
        *second = v;
    return 1;
}

static void
reg_src_of(const struct tp_src *src, struct reg_src *rs)
{
    *rs = (struct reg_src){
        .transport = src->proto == TP_TLS   ? REG_TP_TLS
                     : src->proto == TP_TCP ? REG_TP_TCP
                                            : REG_TP_UDP,
        .flow_id = src->flow_id,
    };
    memcpy(&rs->addr, &src->remote.u.ss,
           src->remote.len <= sizeof(rs->addr) ? src->remote.len
                                               : sizeof(rs->addr));
}

/* Unescaped user of a sip/sips URI into the arena. */
int
proxy_uri_user(struct arena *a, const struct sip_uri *u, struct slice *user)
{
    if (u->scheme != SIP_URI_SIP && u->scheme != SIP_URI_SIPS)
        return -EINVAL;
    return sip_unescape(u->user, a, user);
}

/* An ACK for one of our stateless responses (our process-wide To tag):
 * it matches no transaction and goes nowhere (§17.2.3: a stateless
 * element drops the ACK for its non-2xx). */
bool
proxy_stateless_ack(const struct proxy *p, const struct sip_msg *m)
{
    return m->method == SIP_METHOD_ACK &&
           slice_eq_cstr(m->to.tag, p->sh->sl_tag);
}

/* ---- steering between workers ------------------------------------------ */

static bool
post_to(struct proxy *p, unsigned w, const struct tp_rx *rx)
{
    bool done = false;

    if (w == p->worker || w >= TP_MAX_WORKERS)
        return false;
    pthread_mutex_lock(&p->sh->lock);
    struct proxy *o = p->sh->workers[w];
    if (o && tp_post(o->tp, rx->raw, &rx->src) == 0)
        done = true;
    pthread_mutex_unlock(&p->sh->lock);
    if (done)
        p->stats.steered++;
    return done;
}

bool
proxy_steer(struct proxy *p, const struct tp_rx *rx)
{
    const struct sip_msg *m = rx->msg;
    struct sip_name_addr na;
    struct sip_uri u, ru;
    struct slice second, user;
    const char *why;

    if (rx->err || !m)
        return false;
    if (!m->is_request) {
        int w = txn_branch_worker(m->via.branch);
        return w >= 0 && post_to(p, (unsigned)w, rx);
    }
    proxy_pre_drop(p); /* an earlier request's, never taken */
    /* Already steered once (src.worker is the receiver), or a TCP
     * request (its responses must leave over its own flow here). */
    if (rx->src.worker != p->worker || rx->src.proto != TP_UDP || !p->sh->reg ||
        proxy_stateless_ack(p, m))
        return false;
    int rt = proxy_top_route(m, &na, &u, &second);
    if (rt == 1 && proxy_uri_is_us(p, &u) && m->to.tag.len) {
        uint64_t f = proxy_other_flow(&u, &rx->src);
        return f && post_to(p, tp_flow_worker(f), rx);
    }
    if (m->method != SIP_METHOD_INVITE && m->method != SIP_METHOD_CANCEL &&
        m->method != SIP_METHOD_ACK)
        return false;
    if (m->method != SIP_METHOD_ACK && m->to.tag.len)
        return false;
    if (m->method == SIP_METHOD_INVITE &&
        !sip_msg_hdr(m, SIP_HDR_PROXY_AUTHORIZATION))
        return false; /* will be challenged: nothing to steer */
    if (sip_uri_parse(m->ruri, &ru, &why) < 0)
        return false;
    arena_reset(&p->a);
    struct reg_contact *bs;
    size_t n;
    if (proxy_uri_user(&p->a, &ru, &user) < 0 || user.len == 0 || user.len > 32)
        return false;
    /* An INVITE's lookup is kept for route_initial (p->pre), so it is
     * counted as waiting before the lookup, as route_initial would. */
    bool keep = m->method == SIP_METHOD_INVITE &&
                m->call_id.len < sizeof(p->pre.call_id);
    if (keep)
        proxy_waiting_add(p->sh, user, p->worker);
    arena_reset(&p->pre_a);
    if (reg_lookup(p->sh->reg, user, &p->pre_a, &bs, &n) < 0) {
        if (keep)
            proxy_waiting_done(p->sh, user, p->worker);
        return false;
    }
    for (size_t i = 0; i < n; i++)
        if (bs[i].transport != REG_TP_UDP && bs[i].flow_id &&
            tp_flow_worker(bs[i].flow_id) != p->worker) {
            if (keep)
                proxy_waiting_done(p->sh, user, p->worker);
            return post_to(p, tp_flow_worker(bs[i].flow_id), rx);
        }
    if (keep) {
        p->pre.valid = true;
        proxy_copy_cstr(p->pre.user, sizeof(p->pre.user), user);
        proxy_copy_cstr(p->pre.call_id, sizeof(p->pre.call_id), m->call_id);
        p->pre.cseq = m->cseq.num;
        p->pre.bs = bs;
        p->pre.n = n;
    }
    return false;
}

void
proxy_pre_drop(struct proxy *p)
{
    if (!p->pre.valid)
        return;
    p->pre.valid = false;
    proxy_waiting_done(p->sh, slice_cstr(p->pre.user), p->worker);
}

/* route_initial: take proxy_steer's lookup of this very request, with its
 * waiting count. false if there is none (then look up). */
static bool
pre_take(struct proxy *p, const struct sip_msg *req, struct slice user,
         struct reg_contact **bs, size_t *n)
{
    if (!p->pre.valid || !slice_eq_cstr(user, p->pre.user) ||
        !slice_eq_cstr(req->call_id, p->pre.call_id) ||
        req->cseq.num != p->pre.cseq)
        return false;
    p->pre.valid = false; /* the waiting count goes with it */
    *bs = p->pre.bs;
    *n = p->pre.n;
    return true;
}

bool
proxy_wants(const struct sip_msg *req)
{
    switch (req->method) {
    case SIP_METHOD_REGISTER:
    case SIP_METHOD_CANCEL:
        return false;
    case SIP_METHOD_INVITE:
    case SIP_METHOD_ACK:
    case SIP_METHOD_BYE:
        return true;
    default:
        break;
    }
    if (req->to.tag.len || sip_msg_hdr(req, SIP_HDR_ROUTE))
        return true;
    struct sip_uri u;
    const char *why;
    return req->method != SIP_METHOD_OPTIONS &&
           sip_uri_parse(req->ruri, &u, &why) == 0 && u.user.len > 0;
}

/* ---- answers ----------------------------------------------------------- */

void
proxy_reject(struct proxy *p, struct txn *t, int status, const char *reason,
             struct slice extra)
{
    char tag[17];

    sip_new_tag(tag);
    p->stats.rejected++;
    if (txn_reply(t, status, reason, slice_cstr(tag), extra, SLICE_NULL) < 0)
        log_debug("proxy", "cannot answer %d", status);
}

/* Refuse an out-of-dialog request. anon: it brought no credentials for
 * our realm, so nothing but a refusal or a challenge can come of it: one
 * stateless response (RFC 3261 §16.6 lets a proxy answer statelessly),
 * no server transaction. A spoofed INVITE thus gets one 407 (not eleven,
 * timer G) and leaves no 32 s of state; the client's own retransmissions
 * each get a fresh one, and its ACK is absorbed by our stateless To tag
 * (proxy_on_request). Requests with credentials keep the transaction. */
static void
refuse(struct proxy *p, struct txn *t, bool anon, int status,
       const char *reason, struct slice extra)
{
    if (!anon) {
        proxy_reject(p, t, status, reason, extra);
        return;
    }
    p->stats.rejected++;
    p->stats.stateless++;
    if (txn_reply_stateless(t, status, reason, slice_cstr(p->sh->sl_tag),
                            extra) < 0)
        log_debug("proxy", "cannot answer %d statelessly", status);
}

/* ---- calls ------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence starting at s[0] (at most left
 * bytes), 0 if invalid. Overlongs and surrogates are refused, as JSON
 * encoders (the push payload) do. */
static size_t
utf8_seq(const unsigned char *s, size_t left)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n > left)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

/* The From display name for push payloads: quoted-pair escapes removed,
 * cut at cap - 1 bytes on a character boundary, control characters
 * dropped. Invalid UTF-8 gives "" (the caller chooses these bytes, and a
 * payload that the provider or the JSON encoder refuses would lose the
 * push, so the name is all or nothing). */
static void
display_name(struct slice d, char *out, size_t cap)
{
    unsigned char tmp[256];
    size_t n = 0;

    out[0] = '\0';
    for (size_t i = 0; i < d.len && n < sizeof(tmp); i++) {
        unsigned char ch = (unsigned char)d.ptr[i];
        if (ch == '\\' && i + 1 < d.len)
            ch = (unsigned char)d.ptr[++i];
        if (ch < 0x20 || ch == 0x7f)
            continue;
        tmp[n++] = ch;
    }
    size_t len = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(tmp + i, n - i);
        if (k == 0) {
            if (n == sizeof(tmp) && n - i < 4)
                break; /* cut by tmp's size: keep what came before */
            out[0] = '\0';
            return;
        }
        if (len + k >= cap)
            break;
        memcpy(out + len, tmp + i, k);
        len += k;
        i += k;
    }
    while (len > 0 && out[len - 1] == ' ')
        len--;
    out[len] = '\0';
}

/* ---- request routing --------------------------------------------------- */

/* A Via naming us with one of our branches means the request came back
 * to us: a loop (we never spiral on purpose). */
static bool
looped(const struct proxy *p, const struct sip_msg *req)
{
    struct sip_hdr_iter it;
    struct slice v;

    sip_hdr_iter_init(&it, req, SIP_HDR_VIA);
    while (sip_hdr_iter_next(&it, &v)) {
        struct sip_via via;
        struct sip_error e;
        if (sip_via_parse(v, &via, &e) < 0)
            continue;
        if (txn_branch_worker(via.branch) < 0)
            continue;
        char hp[TP_ADDRSTRLEN + 8];
        snprintf(hp, sizeof(hp), SLICE_FMT ":%u", SLICE_ARG(via.host),
                 (unsigned)via.port);
        for (int k = 0; k < 3; k++)
            if (strcmp(hp, p->via_host[k]) == 0)
                return true;
    }
    return false;
}

/* [cluster] A branch another node forked to a binding this node holds
 * (its Route carried pp-ext=EXT; docs/cluster.md). The first node
 * authenticated the caller, holds the call and does the pushes; here the
 * request only reaches this node's own binding(s) of EXT whose Contact is
 * the Request-URI, over the flow or NAT pinhole this node holds. Both
 * nodes Record-Route, so in-dialog requests pass both. */
static void
route_peer(struct proxy *p, struct txn *t, const struct sip_msg *req,
           const struct tp_src *src, struct slice ext)
{
    struct slice user;
    struct reg_contact *bs;
    size_t n, k = 0;

    if (!p->sh->is_peer || !p->sh->is_peer(&src->remote.u.sa, p->sh->peer_arg)) {
        proxy_reject(p, t, 403, "Not A Cluster Node", SLICE_NULL);
        return;
    }
    arena_reset(&p->a);
    if (sip_unescape(ext, &p->a, &user) < 0 || user.len == 0 ||
        user.len > 32) {
        proxy_reject(p, t, 404, NULL, SLICE_NULL);
        return;
    }
    int rc = reg_lookup(p->sh->reg, user, &p->a, &bs, &n);
    if (rc < 0) {
        proxy_reject(p, t, rc == -ENOENT ? 404 : 500, NULL, SLICE_NULL);
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (!bs[i].node[0] && slice_eq_cstr(req->ruri, bs[i].uri))
            bs[k++] = bs[i];
    if (k == 0) {
        proxy_reject(p, t, 480, "Not Registered Here", SLICE_NULL);
        return;
    }
    struct proxy_call *c = proxy_call_new(
        p, t, req->method == SIP_METHOD_INVITE ? CALL_FORK : CALL_RELAY, req,
        src);
    /* No media relay here: the node that received the call relays it,
     * once (proxy_media_offer; docs/cluster.md). */
    struct sip_uri from;
    struct slice from_user;
    const char *why;
    if (sip_uri_parse(req->from.uri, &from, &why) == 0 &&
        proxy_uri_user(&p->a, &from, &from_user) == 0)
        proxy_copy_cstr(c->rec.caller, sizeof(c->rec.caller), from_user);
    proxy_copy_cstr(c->rec.callee, sizeof(c->rec.callee), user);
    display_name(req->from.display, c->caller_name, sizeof(c->caller_name));
    c->peer = true;
    c->pop = true;
    if (c->kind == CALL_FORK) {
        (void)txn_reply(t, 100, NULL, SLICE_NULL, SLICE_NULL, SLICE_NULL);
        /* Not on p->calls: no late branch, no wake (the first node's). */
        tq_heap_add(tp_tq(p->tp), &c->ring,
                    tp_now_ms(p->tp) +
                        (uint64_t)p->sh->cfg.ring_timeout_s * 1000u);
    }
    for (size_t i = 0; i < k && !c->final_sent; i++)
        (void)proxy_call_add_branch(c, &bs[i]);
    c->forked = true;
    proxy_call_check_done(c);
}

static void
route_initial(struct proxy *p, struct txn *t, const struct sip_msg *req,
              const struct tp_src *src)
{
    struct sip_name_addr na;
    struct sip_uri ruri, route, from;
    struct slice second, user, from_user;
    const char *why;
    bool pop = false;
    bool anon = !reg_auth_has_credentials(p->sh->reg, req);

    if (p->draining) {
        /* Shutting down: no new calls; the phone may retry elsewhere or
         * once we are back. Stateless: we keep no new state now. */
        char ra[40];
        snprintf(ra, sizeof(ra), "Retry-After: %u\r\n", p->retry_after_s);
        refuse(p, t, true, 503, NULL, slice_cstr(ra));
        return;
    }
    if (req->max_forwards == 0) {
        refuse(p, t, anon, 483, NULL, SLICE_NULL);
        return;
    }
    if (looped(p, req)) {
        refuse(p, t, anon, 482, NULL, SLICE_NULL);
        return;
    }
    int rt = proxy_top_route(req, &na, &route, &second);
    if (rt < 0) {
        refuse(p, t, anon, 400, "Bad Route", SLICE_NULL);
        return;
    }
    if (rt == 1) {
        if (!proxy_uri_is_us(p, &route) || second.len) {
            refuse(p, t, anon, 403, "Relaying Denied", SLICE_NULL);
            return;
        }
        pop = true;
        struct slice pe;
        if (sip_uri_param(&route, "pp-ext", &pe)) {
            route_peer(p, t, req, src, pe);
            return;
        }
    }
    if (sip_uri_parse(req->ruri, &ruri, &why) < 0 ||
        (ruri.scheme != SIP_URI_SIP && ruri.scheme != SIP_URI_SIPS)) {
        refuse(p, t, anon, 416, NULL, SLICE_NULL);
        return;
    }
    if (!slice_eq_nocase_cstr(ruri.host, p->sh->domain) &&
        !host_is_numeric(ruri.host)) {
        refuse(p, t, anon, 403, "Relaying Denied", SLICE_NULL);
        return;
    }
    arena_reset(&p->a);
    if (proxy_uri_user(&p->a, &ruri, &user) < 0 || user.len == 0 ||
        user.len > 32) {
        refuse(p, t, anon, 404, NULL, SLICE_NULL);
        return;
    }

    /* Authentication (§22.3): every out-of-dialog request is challenged. */
    char caller[33];
    struct reg_src rs;
    struct buf hdrs;
    reg_src_of(src, &rs);
    buf_init(&hdrs, 1024);
    int st =
        reg_auth_request(p->sh->reg, req, &rs, caller, sizeof(caller), &hdrs);
    if (st != 0) {
        refuse(p, t, anon, st, NULL, buf_slice(&hdrs));
        buf_fini(&hdrs);
        return;
    }
    buf_fini(&hdrs);
    if (sip_uri_parse(req->from.uri, &from, &why) < 0 ||
        proxy_uri_user(&p->a, &from, &from_user) < 0 ||
        !slice_eq_cstr(from_user, caller)) {
        proxy_reject(p, t, 403, "From Does Not Match Credentials", SLICE_NULL);
        return;
    }
    if (req->method == SIP_METHOD_MESSAGE && !proxy_msg_accept(p, t, req))
        return; /* 413, 415 */

    struct reg_contact *bs;
    size_t n;
    /* Counted before the lookup so that a binding added after it still
     * reaches this call (proxy_shared.waiting). */
    int rc = 0;
    if (!pre_take(p, req, user, &bs, &n)) {
        proxy_waiting_add(p->sh, user, p->worker);
        rc = reg_lookup(p->sh->reg, user, &p->a, &bs, &n);
    }
    if (rc == -ENOENT) {
        proxy_waiting_done(p->sh, user, p->worker);
        proxy_reject(p, t, 404, NULL, SLICE_NULL);
        return;
    }
    if (rc < 0) {
        proxy_waiting_done(p->sh, user, p->worker);
        proxy_reject(p, t, 500, NULL, SLICE_NULL);
        return;
    }

    struct proxy_call *c = proxy_call_new(p, t, CALL_FORK, req, src);
    proxy_media_caller(c, req, src);
    proxy_copy_cstr(c->rec.caller, sizeof(c->rec.caller), slice_cstr(caller));
    proxy_copy_cstr(c->rec.callee, sizeof(c->rec.callee), user);
    if (req->method == SIP_METHOD_INVITE) {
        p->stats.calls++;
        (void)txn_reply(t, 100, NULL, SLICE_NULL, SLICE_NULL, SLICE_NULL);
    } else {
        c->kind = CALL_RELAY; /* MESSAGE etc.: forked, no call record */
        proxy_waiting_done(p->sh, user, p->worker);
    }
    display_name(req->from.display, c->caller_name, sizeof(c->caller_name));
    if (req->method == SIP_METHOD_MESSAGE && proxy_msg_start(c, req, bs, n))
        return; /* stored (no live binding), or an isComposing refused */
    struct proxy_call_info info = {.call = c,
                                   .call_id = c->rec.call_id,
                                   .caller = c->rec.caller,
                                   .callee = c->rec.callee,
                                   .caller_name = c->caller_name,
                                   .bindings = n,
                                   .contacts = bs,
                                   .worker = p->worker,
                                   .rx_us = src->rx_us};
    if (c->kind == CALL_FORK) {
        list_push_back(&p->calls, &c->node); /* keeps the waiting count */
        /* Held even when other bindings exist: a desk phone's 486 must
         * not end the call while an app is being woken (product rule 5);
         * the observer releases it (proxy_call_release). */
        c->holding = proxy_notify_started(p->sh, &info);
        tq_heap_add(tp_tq(p->tp), &c->ring,
                    tp_now_ms(p->tp) +
                        (uint64_t)p->sh->cfg.ring_timeout_s * 1000u);
    }
    c->pop = pop;
    for (size_t i = 0; i < n; i++) {
        if (c->final_sent)
            break;
        (void)proxy_call_add_branch(c, &bs[i]);
    }
    c->forked = true;
    proxy_call_check_done(c);
}

void
proxy_on_request(struct proxy *p, struct txn *t, const struct sip_msg *req,
                 const struct tp_src *src)
{
    if (!t && proxy_stateless_ack(p, req)) {
        p->stats.stateless_acks++;
        return;
    }
    if (req->to.tag.len || !t)
        proxy_route_in_dialog(p, t, req, src);
    else
        route_initial(p, t, req, src);
    proxy_pre_drop(p); /* not taken: refused before its lookup */
}
