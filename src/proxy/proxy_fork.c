/*
 * proxy/proxy_fork: parallel forking (RFC 3261 §16.7) of a call to the
 * callee's bindings, branches added to a running fork, and the release of
 * a held call.
 *
 * §16.7 in short: provisional responses above 100 are relayed at once;
 * every 2xx is relayed at once and CANCELs the other branches; a 6xx
 * CANCELs the others; other finals are kept (the best by
 * proxy_status_better) until every branch is final, then the best goes
 * upstream (503 as 500; none at all as 408; a 401/407 with the
 * challenges of every branch's 401/407, step 7). The ring timeout, caller
 * CANCEL and 2xx are decided at once (the caller does not wait for the
 * cancelled branches' 487s); late non-2xx branch responses are then
 * dropped, but a late 2xx is still relayed (statelessly once the server
 * transaction has sent its non-2xx final or is gone: RFC 6026).
 *
 * The request forwarded to each branch is spliced from the server
 * transaction's stored copy (sip_build_forward), never re-serialised.
 * A branch whose TCP flow lives on another worker is written there
 * through tp's relay (proxy.c); its responses come back by the branch's
 * worker index (proxy_steer).
 */
#include <arpa/inet.h>
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

static void on_branch_event(struct txn *t, enum txn_event ev,
                            const struct sip_msg *rsp, void *arg);

/* Send the stored best response upstream. §16.7 step 7: a 401/407 carries
 * every WWW-Authenticate and Proxy-Authenticate value of all the branches'
 * 401/407 responses (unchanged), so the caller can answer each device's
 * challenge in one go; the best one's own are already in its bytes, the
 * others' go in before the blank line (our builder always ends the
 * headers with "Content-Length: N\r\n\r\n", so the first CRLFCRLF is
 * the end of the headers). Too big to merge: the best alone. */
static void
send_best(struct proxy_call *c, int status)
{
    struct slice bytes = slice_make(c->best, c->best_len);
    const char *end = NULL;
    size_t extra = 0;
    struct buf m;

    if (status == 401 || status == 407)
        for (size_t i = 0; i < c->nbr; i++)
            if (&c->br[i] != c->best_br)
                extra += c->br[i].auth_len;
    if (extra)
        end = memmem(c->best, c->best_len, "\r\n\r\n", 4);
    if (!end) {
        (void)txn_respond(c->st, status, bytes);
        return;
    }
    size_t head = (size_t)(end - c->best) + 2;
    int rc;
    buf_init(&m, SIP_MAX_MSG_LEN);
    rc = buf_append(&m, c->best, head);
    for (size_t i = 0; i < c->nbr && rc == 0; i++)
        if (&c->br[i] != c->best_br && c->br[i].auth_len)
            rc = buf_append(&m, c->br[i].auth, c->br[i].auth_len);
    if (rc == 0)
        rc = buf_append(&m, c->best + head, c->best_len - head);
    (void)txn_respond(c->st, status, rc == 0 ? buf_slice(&m) : bytes);
    buf_fini(&m);
}

/* Keep the challenge lines of a branch's 401/407 for send_best. */
static void
keep_challenges(struct branch *b, const struct sip_msg *rsp)
{
    struct buf lines;

    buf_init(&lines, SIP_MAX_MSG_LEN);
    for (size_t i = 0; i < rsp->hdr_count; i++) {
        const struct sip_hdr *h = &rsp->hdrs[i];
        if (h->id == SIP_HDR_WWW_AUTHENTICATE ||
            h->id == SIP_HDR_PROXY_AUTHENTICATE)
            (void)buf_printf(&lines, SLICE_FMT ": " SLICE_FMT "\r\n",
                             SLICE_ARG(h->name), SLICE_ARG(h->value));
    }
    free(b->auth);
    b->auth = NULL;
    b->auth_len = lines.len;
    if (lines.len) {
        b->auth = xmalloc(lines.len);
        memcpy(b->auth, lines.data, lines.len);
    }
    buf_fini(&lines);
}

/* A 2xx the server transaction cannot send any more: the caller already
 * got our non-2xx final (CANCEL or ring timeout raced the answer) or the
 * transaction is gone. RFC 3261 §16.7 step 5 / RFC 6026: every 2xx goes
 * upstream anyway, statelessly to where the INVITE came from; the
 * caller's UA ACKs and BYEs the dialog it does not want. */
static void
forward_2xx_stateless(struct proxy_call *c, struct slice bytes)
{
    struct tp_dest d;

    tp_dest_reply(&c->src_a, &d);
    int rc = tp_send(c->p->tp, &d, bytes, NULL);
    log_info("proxy", "late 2xx relayed statelessly%s%s call_id=%s",
             rc < 0 ? ": " : "", rc < 0 ? strerror(-rc) : "", c->rec.call_id);
}

/* Every branch final (or none left) and nothing sent yet: send the best. */
void
proxy_call_check_done(struct proxy_call *c)
{
    if (c->final_sent)
        return;
    for (size_t i = 0; i < c->nbr; i++)
        if (c->br[i].started && c->br[i].status == 0)
            return;
    if (c->holding)
        return; /* an observer keeps it ringing (wake) */
    if (c->msg_store && proxy_msg_fallback(c))
        return; /* a MESSAGE no binding took: stored, 202 when committed */
    int up = proxy_status_upstream(c->best_status);
    if (c->nbr == 0)
        up = 480;
    else if (c->best_status == 0 && c->release_status)
        up = c->release_status;
    if (c->best && up == c->best_status && c->st) {
        c->final_sent = true;
        c->final_status = up;
        send_best(c, up);
    } else {
        proxy_call_final(c, up, NULL);
    }
    proxy_call_finish(
        c, c->nbr == 0 ? PROXY_OUT_UNAVAILABLE : proxy_outcome_for(up), up);
}

static void
branch_response(struct proxy_call *c, struct branch *b,
                const struct sip_msg *rsp)
{
    if (rsp->status == 100)
        return;
    if (rsp->status > 100 && rsp->status < 300 &&
        proxy_media_response(c, b, rsp))
        return; /* relayed once rtpengine has answered */
    proxy_branch_relay(c, b, rsp, NULL);
}

void
proxy_branch_relay(struct proxy_call *c, struct branch *b,
                   const struct sip_msg *rsp0, const struct slice *body)
{
    struct proxy *p = c->p;
    int st = rsp0->status;
    struct sip_msg copy;
    const struct sip_msg *rsp = rsp0;

    if (body) {
        copy = *rsp0;
        copy.body = *body;
        rsp = &copy;
    }
    buf_reset(&p->out);
    if (sip_build_response_forward(&p->out, rsp) < 0) {
        if (st >= 200 && !b->status) {
            b->status = 502;
            proxy_call_check_done(c);
        }
        return;
    }
    if (st < 200) {
        b->provisional = true;
        if (!c->rec.ringing_ms && st >= 180)
            c->rec.ringing_ms = proxy_wall_ms();
        if (!c->final_sent && c->st && !b->cancelled)
            (void)txn_respond(c->st, st, buf_slice(&p->out));
        return;
    }
    if (st < 300) {
        /* Every 2xx goes upstream, even a second branch's (the caller
         * ACKs and BYEs the one it does not want, §16.7 step 5). */
        b->status = st;
        if (c->kind == CALL_RELAY && proxy_msg_late_2xx(c))
            return; /* a MESSAGE stored after the grace: taken after all */
        if (!c->st || txn_respond(c->st, st, buf_slice(&p->out)) < 0)
            forward_2xx_stateless(c, buf_slice(&p->out));
        if (!c->final_sent) {
            c->final_sent = true;
            c->final_status = st;
            proxy_copy_cstr(c->rec.answered_by, sizeof(c->rec.answered_by),
                            slice_cstr(b->uri ? b->uri : ""));
            proxy_call_cancel_branches(
                c, b,
                "Reason: SIP;cause=200;text=\"Call completed "
                "elsewhere\"\r\n");
            proxy_call_finish(c, PROXY_OUT_ANSWERED, st);
        }
        return;
    }
    if (b->status)
        return;
    b->status = st;
    if (st == 401 || st == 407)
        keep_challenges(b, rsp);
    if (proxy_status_better(st, c->best_status)) {
        c->best_status = st;
        c->best_br = b;
        free(c->best);
        c->best_len = p->out.len;
        c->best = xmalloc(c->best_len);
        memcpy(c->best, p->out.data, c->best_len);
    }
    if (st >= 600)
        proxy_call_cancel_branches(c, b, "");
    proxy_call_check_done(c);
}

/* A final of our own for branch b (none received); false if it had one. */
static bool
branch_set_final(struct proxy_call *c, struct branch *b, int status)
{
    if (b->status)
        return false;
    b->status = status;
    if (proxy_status_better(status, c->best_status)) {
        c->best_status = status;
        c->best_br = NULL;
        free(c->best);
        c->best = NULL;
        c->best_len = 0;
    }
    return true;
}

static void
branch_synth(struct proxy_call *c, struct branch *b, int status)
{
    if (branch_set_final(c, b, status))
        proxy_call_check_done(c);
}

static void
on_branch_event(struct txn *t, enum txn_event ev, const struct sip_msg *rsp,
                void *arg)
{
    struct branch *b = arg;
    struct proxy_call *c = b->call;

    switch (ev) {
    case TXN_EV_RESPONSE:
        branch_response(c, b, rsp);
        break;
    case TXN_EV_TIMEOUT:
        branch_synth(c, b, 408);
        break;
    case TXN_EV_TRANSPORT_ERROR:
        branch_synth(c, b, 503);
        break;
    case TXN_EV_TERMINATED:
        b->ct = NULL;
        if (!b->status) /* ended without a final we saw */
            branch_synth(c, b, 408);
        proxy_call_unref(c);
        break;
    case TXN_EV_CANCELLED:
        break;
    }
}

/* Start branch b of c towards dst with R-URI ruri (empty = keep: it is
 * b->uri for a fork, nothing in a dialog), popping our Route when pop.
 * A relayed call's branch first gets its offer (proxy_media.c), and is
 * sent from the offer's callback. */
int
proxy_branch_start(struct proxy_call *c, struct branch *b,
                   const struct tp_dest *dst, struct slice ruri, bool pop,
                   uint64_t flow_b, struct slice next)
{
    (void)next;
    (void)ruri;
    b->call = c;
    b->dst = *dst;
    b->pop = pop;
    b->flow_b = flow_b;
    b->media = PROXY_MEDIA_NONE;
    txn_branch_new(c->p->tt, b->vbranch);
    if (c->st && proxy_media_offer(c, b, txn_request(c->st))) {
        b->started = true;
        b->media_wait = true;
        return 0;
    }
    return proxy_branch_send(c, b, NULL);
}

/* Build branch b's request (req, with its body replaced when relayed)
 * into p->out, for b->dst's transport: our Via, the Route to the node
 * that holds a remote binding, and our Record-Route (twice when the
 * transport changes). 0 or a negative code. */
static int
branch_build(struct proxy_call *c, struct branch *b, const struct sip_msg *req)
{
    struct proxy *p = c->p;
    const struct tp_dest *dst = &b->dst;
    char via[TP_ADDRSTRLEN + 96], mp[32] = "", na[TP_ADDRSTRLEN + 16] = "";
    char nb[TP_ADDRSTRLEN + 24] = "";
    char rr[2 * (TP_ADDRSTRLEN + 200)];
    char route[TP_ADDRSTRLEN + 128];
    struct sip_fwd f = {.ruri = b->uri ? slice_cstr(b->uri) : SLICE_NULL,
                        .pop_route = b->pop,
                        .pop_route2 = b->pop && c->pop2};

    snprintf(via, sizeof(via), "SIP/2.0/%s %s;branch=%s",
             proxy_tp_upper(dst->proto), p->via_host[proxy_tpk(dst->proto)],
             b->vbranch);
    f.via = slice_cstr(via);
    if (b->peer) {
        /* RFC 3327 semantics: the node holding the phone's flow is the
         * next hop, reached over its advertise URI's transport
         * (peer_dest); it forks to its own binding whose Contact is the
         * Request-URI (proxy_route.c, route_peer). */
        char a[TP_ADDRSTRLEN];
        snprintf(route, sizeof(route), "Route: <sip:%s%s;lr;pp-ext=%s>\r\n",
                 tp_addr_format(&dst->addr, a, sizeof(a)),
                 proxy_tp_uri_param(dst->proto), c->rec.callee);
        f.extra = slice_cstr(route);
    }
    if (c->kind == CALL_FORK && req->method == SIP_METHOD_INVITE) {
        enum tp_proto in = c->src_a.proto, out = dst->proto;
        int n = 0;
        /* pp-m: the dialog's media is relayed (by rtpengine N, or "a":
         * any, chosen by the Call-ID); pp-na/pp-nb: where a NATed side
         * (caller a, callee b) sent its requests from, so in-dialog
         * requests reach it there and not at its private Contact (a
         * remote binding's side is its node, never NATed). */
        if (b->media >= 0)
            snprintf(mp, sizeof(mp), ";pp-m=%d", b->media);
        else if (b->media == PROXY_MEDIA_ANY)
            snprintf(mp, sizeof(mp), ";pp-m=a");
        if (c->nat_a[0])
            snprintf(na, sizeof(na), ";pp-na=%s", c->nat_a);
        if (b->nat && !b->peer && dst->proto == TP_UDP) {
            char a[TP_ADDRSTRLEN];
            snprintf(nb, sizeof(nb), ";pp-nb=%s",
                     tp_addr_format(&dst->addr, a, sizeof(a)));
        }
        /* pp-nd: which side is another [cluster] node (b: the node
         * holding the callee, a: the node that sent us the call); its
         * requests may come over any of its connections, so its flow
         * cannot tell the sides apart (proxy_dialog.c, node_side). */
        if (b->peer)
            snprintf(nb + strlen(nb), sizeof(nb) - strlen(nb), ";pp-nd=b");
        else if (c->peer)
            snprintf(nb + strlen(nb), sizeof(nb) - strlen(nb), ";pp-nd=a");
        if (out != in) /* the callee's side first: it is nearest to it */
            n = snprintf(rr, sizeof(rr),
                         "<sip:%s%s;lr;pp-fa=%" PRIx64 ";pp-fb=%" PRIx64
                         "%s%s%s>, ",
                         p->via_host[proxy_tpk(out)], proxy_tp_uri_param(out),
                         c->flow_a, b->flow_b, mp, na, nb);
        snprintf(rr + n, sizeof(rr) - (size_t)n,
                 "<sip:%s%s;lr;pp-fa=%" PRIx64 ";pp-fb=%" PRIx64 "%s%s%s>",
                 p->via_host[proxy_tpk(in)], proxy_tp_uri_param(in), c->flow_a,
                 b->flow_b, mp, na, nb);
        f.record_route = slice_cstr(rr);
    }
    buf_reset(&p->out);
    return sip_build_forward(&p->out, req, &f);
}

int
proxy_branch_send(struct proxy_call *c, struct branch *b,
                  const struct slice *body)
{
    struct proxy *p = c->p;
    const struct sip_msg *req0 = c->st ? txn_request(c->st) : NULL;
    const struct tp_dest *dst = &b->dst;
    struct sip_msg copy;
    int rc;

    b->media_wait = false;
    if (!req0)
        return -ECANCELED;
    const struct sip_msg *req = req0;
    if (body) {
        copy = *req0;
        copy.body = *body;
        req = &copy;
    }
    rc = branch_build(c, b, req);
    if (rc == 0 && b->peer_any && dst->proto == TP_UDP &&
        p->out.len > PROXY_UDP_MAX) {
        /* Too large for UDP (RFC 3261 §18.1.1) and the node's advertise
         * allows TCP (no transport named: its TCP listener is on the same
         * port, RFC 3263 §4.2): a call's branch or an in-dialog request
         * to the node (proxy_dialog.c, to_node_any). */
        log_debug("proxy", "request to node over TCP: %zu bytes call_id=%s",
                  p->out.len, c->rec.call_id);
        b->dst.proto = TP_TCP;
        rc = branch_build(c, b, req);
    }
    if (rc < 0)
        return rc;
    rc = txn_client_start(p->tt, buf_slice(&p->out), dst, on_branch_event, b,
                          &b->ct);
    if (rc < 0)
        return rc;
    if (txn_kind(b->ct) == TXN_INVITE_CLIENT) /* §16.6 step 11 */
        (void)txn_client_timer_c(b->ct, p->sh->cfg.timer_c_s * 1000u);
    b->started = true;
    c->refs++;
    if (c->kind == CALL_FORK) {
        struct proxy_branch_info bi = {.call = c,
                                       .call_id = c->rec.call_id,
                                       .callee = c->rec.callee,
                                       .uri = b->uri,
                                       .added = c->forked,
                                       .worker = p->worker};
        proxy_notify_branch_sent(p->sh, &bi);
    }
    return 0;
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

/* RFC 1918 / RFC 6598 / link-local / ULA: addresses behind a NAT. */
bool
proxy_private_addr(const struct tp_addr *a)
{
    if (a->u.sa.sa_family == AF_INET) {
        uint32_t ip = ntohl(a->u.in4.sin_addr.s_addr);
        return (ip >> 24) == 10 || (ip >> 20) == 0xac1 ||
               (ip >> 16) == 0xc0a8 || (ip >> 22) == 0x191 ||
               (ip >> 16) == 0xa9fe;
    }
    const uint8_t *b = a->u.in6.sin6_addr.s6_addr;
    return (b[0] & 0xfe) == 0xfc || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80);
}

void
proxy_dest_from_binding(const struct proxy *p, const struct reg_contact *b,
                        struct tp_dest *d)
{
    struct sip_uri u;
    const char *why;

    *d = (struct tp_dest){.proto = TP_UDP, .listener = -1};
    if (b->addr.ss_family == AF_INET6) {
        memcpy(&d->addr.u.in6, &b->addr, sizeof(struct sockaddr_in6));
        d->addr.len = sizeof(struct sockaddr_in6);
    } else {
        memcpy(&d->addr.u.in4, &b->addr, sizeof(struct sockaddr_in));
        d->addr.len = sizeof(struct sockaddr_in);
    }
    if (b->transport == REG_TP_UDP && !(b->node && b->node[0])) {
        /* NAT rule: the source address is where a NAT'd phone is
         * reachable; but a Contact on the source's own host, or on a
         * non-private address, is honoured as written (a UA may register
         * from one socket and listen on another). */
        struct tp_dest cd;
        if (sip_uri_parse(slice_cstr(b->uri), &u, &why) == 0 &&
            proxy_dest_from_uri(&u, &cd) == 0 && cd.proto == TP_UDP &&
            (same_host(&cd.addr, &d->addr) || !proxy_private_addr(&cd.addr)))
            d->addr = cd.addr;
    }
    if (b->transport != REG_TP_UDP) {
        /* Over the phone's own connection (RFC 5626 flows; a flow on
         * another worker is written there, relay_send). A phone behind
         * NAT, or an app in the background, cannot accept a connection:
         * no address to connect to (proxy_call_add_branch does not even
         * try when the flow is gone: the binding is unreachable). */
        d->proto = b->transport == REG_TP_TLS ? TP_TLS : TP_TCP;
        d->flow_id = b->flow_id;
        d->addr.len = 0;
    }
}

/* A TCP/TLS binding whose connection is gone cannot be reached: the phone
 * listens on no port we could connect to (an app suspended by iOS, a
 * phone that lost its network without unregistering). The call then
 * waits for a push to wake it (src/wake decides the same way), and the
 * woken phone's REGISTER on a new connection adds the branch. */
static bool
binding_reachable(const struct reg_contact *b)
{
    return b->transport == REG_TP_UDP || tp_flow_open(b->flow_id);
}

/* [cluster] A remote binding's branch goes to its node's advertise URI
 * (docs/cluster.md): transport=tcp over TCP, sips: or transport=tls over
 * TLS (a connection of this worker to the node's address, opened on first
 * use and reused; TLS: the node's certificate verified by transport/); no
 * transport: UDP, TCP when the request is too large (peer_any,
 * proxy_branch_send). A node that started within the last heartbeat is
 * known by the row the change handler read with its binding
 * (cluster_peer_advertise: a mutex, no I/O here); a node not known at all
 * leaves UDP to the binding's address (the node's).
 * Media: the phone's side is known by its Contact only (the node, not the
 * phone, sends its signalling): NATed when the Contact's host is private,
 * TLS (SRTP) when it asks for TLS. */
static void
peer_dest(const struct proxy *p, const struct reg_contact *b,
          struct branch *br, struct tp_dest *d)
{
    char uri[256];
    struct sip_uri u;
    struct tp_dest ad, cd;
    struct slice tr;
    const char *why;

    br->peer_any = true;
    if (sip_uri_parse(slice_cstr(b->uri), &u, &why) == 0) {
        br->tls = proxy_uri_proto(&u) == TP_TLS;
        br->nat = proxy_dest_from_uri(&u, &cd) == 0 &&
                  proxy_private_addr(&cd.addr);
    }
    if (!p->sh->peer_uri ||
        !p->sh->peer_uri(b->node, NULL, uri, sizeof(uri),
                        p->sh->peer_arg) ||
        sip_uri_parse(slice_cstr(uri), &u, &why) < 0 ||
        proxy_dest_from_uri(&u, &ad) < 0)
        return;
    *d = ad;
    br->peer_any = ad.proto == TP_UDP && !sip_uri_param(&u, "transport", &tr);
}

int
proxy_call_add_branch(struct proxy_call *c, const struct reg_contact *b)
{
    struct proxy *p = c->p;
    struct tp_dest dst;

    if (c->final_sent || !c->st)
        return -EALREADY;
    /* One branch per device: the same Contact again is the same phone,
     * unless it came back on a new connection after its old one closed
     * (a phone reconnecting gives the same Contact URI). */
    for (size_t i = 0; i < c->nbr; i++)
        if (!c->br[i].gone && strcmp(c->br[i].uri, b->uri) == 0 &&
            (c->br[i].flow_id == b->flow_id || tp_flow_open(c->br[i].flow_id)))
            return -EEXIST;
    if (!binding_reachable(b)) {
        log_info("proxy",
                 "binding %s not rung: its %s connection is gone call_id=%s",
                 b->uri, b->transport == REG_TP_TLS ? "TLS" : "TCP",
                 c->rec.call_id);
        return -ENOTCONN;
    }
    if (c->nbr >= p->sh->cfg.max_branches || c->nbr >= PROXY_MAX_BRANCHES)
        return -ENOSPC;
    struct branch *br = &c->br[c->nbr];
    *br = (struct branch){
        .call = c, .uri = xstrdup(b->uri), .flow_id = b->flow_id};
    c->nbr++;
    proxy_dest_from_binding(p, b, &dst);
    br->tls = b->transport == REG_TP_TLS;
    br->peer = b->node && b->node[0];
    if (br->peer)
        peer_dest(p, b, br, &dst);
    if (b->transport == REG_TP_UDP && !br->peer) {
        /* NATed: the INVITE goes to where it registered from, not to
         * its (private) Contact (proxy_dest_from_binding). */
        struct sip_uri u;
        struct tp_dest cd;
        const char *why;
        br->nat = sip_uri_parse(slice_cstr(b->uri), &u, &why) == 0 &&
                  proxy_dest_from_uri(&u, &cd) == 0 &&
                  proxy_private_addr(&cd.addr) &&
                  !same_host(&cd.addr, &dst.addr);
    }
    int rc =
        proxy_branch_start(c, br, &dst, slice_cstr(b->uri), c->pop,
                           dst.proto != TP_UDP ? b->flow_id : 0, SLICE_NULL);
    if (rc < 0) {
        log_info("proxy", "branch to %s not started: %s call_id=%s", b->uri,
                 strerror(-rc), c->rec.call_id);
        br->status = 503; /* counted as tried; proxy_call_check_done sees it */
        return rc;
    }
    return 0;
}

int
proxy_call_ringing(struct proxy_call *c)
{
    if (c->final_sent || !c->st)
        return -EALREADY;
    if (c->ringing_sent)
        return 0;
    c->ringing_sent = true;
    int rc =
        txn_reply(c->st, 180, NULL, proxy_call_tag(c), SLICE_NULL, SLICE_NULL);
    log_info("proxy", "180 sent for a phone being woken call_id=%s%s%s",
             c->rec.call_id, rc < 0 ? ": " : "", rc < 0 ? strerror(-rc) : "");
    return rc;
}

bool
proxy_call_branch_rang(const struct proxy_call *c, const char *uri)
{
    for (size_t i = 0; i < c->nbr; i++)
        if (c->br[i].uri && strcmp(c->br[i].uri, uri) == 0)
            return c->br[i].provisional;
    return false;
}

/* Re-read the callee's bindings and fork c to the new ones. */
void
proxy_fork_new_bindings(struct proxy *p, struct proxy_call *c)
{
    struct reg_contact *bs;
    size_t count;

    if (c->peer)
        return; /* the node that holds the call adds its own branches */
    arena_reset(&p->a);
    if (reg_lookup(p->sh->reg, slice_cstr(c->rec.callee), &p->a, &bs, &count) <
        0)
        return;
    for (size_t i = 0; i < count && !c->final_sent; i++)
        if (proxy_call_add_branch(c, &bs[i]) == 0) {
            p->stats.branches_added++;
            log_info("proxy",
                     "branch added to ringing call call_id=%s "
                     "callee=%s contact=%s",
                     c->rec.call_id, c->rec.callee, bs[i].uri);
        }
}

/* proxy_call_release on the call's worker. The bindings are re-read first:
 * a woken phone's REGISTER is stored before wake releases the call (its
 * bind callback runs before the 200), so its branch exists before the
 * hold goes and the call cannot end in between. */
void
proxy_note_release(struct proxy *p, const struct proxy_note *n)
{
    struct proxy_call *c = proxy_call_find(p, n->call_id, n->ext);

    if (!c || c->final_sent)
        return;
    proxy_fork_new_bindings(p, c);
    if (c->final_sent)
        return;
    c->holding = false;
    c->release_status = n->status;
    log_info("proxy", "call released by its observer call_id=%s status=%d",
             c->rec.call_id, n->status);
    proxy_call_check_done(c);
}

/* Is d the address (host and port) a? */
static bool
dest_is(const struct tp_dest *d, const struct sockaddr_storage *a)
{
    if (d->addr.u.sa.sa_family != a->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a;
        return d->addr.u.in4.sin_addr.s_addr == x->sin_addr.s_addr &&
               d->addr.u.in4.sin_port == x->sin_port;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a;
        return memcmp(&d->addr.u.in6.sin6_addr, &x->sin6_addr, 16) == 0 &&
               d->addr.u.in6.sin6_port == x->sin6_port;
    }
    return false;
}

/* proxy_node_down on this worker: stop c's branches via the node. */
static void
node_down_call(struct proxy *p, struct proxy_call *c,
               const struct sockaddr_storage *node)
{
    size_t stopped = 0;

    for (size_t i = 0; i < c->nbr; i++) {
        struct branch *b = &c->br[i];
        if (!b->peer || b->gone || !dest_is(&b->dst, node))
            continue;
        b->gone = true;
        if (!branch_set_final(c, b, 480))
            continue; /* it had its final: nothing rings there */
        if (b->ct && !b->cancelled)
            (void)txn_cancel(b->ct, SLICE_NULL); /* if only cut off */
        b->cancelled = true;
        stopped++;
        log_notice("proxy",
                   "branch via a node that is down stopped call_id=%s "
                   "callee=%s contact=%s",
                   c->rec.call_id, c->rec.callee, b->uri);
    }
    if (!stopped)
        return;
    /* Where the phone may be now: a binding at another node (or here). */
    if (!c->final_sent && c->kind == CALL_FORK)
        proxy_fork_new_bindings(p, c);
    for (size_t i = 0; i < c->nbr; i++)
        if (c->br[i].gone && c->br[i].ct)
            txn_client_abandon(c->br[i].ct); /* its final is set: ignored */
    proxy_call_check_done(c);
}

void
proxy_note_node_down(struct proxy *p, const struct proxy_note *n)
{
    struct list_node *cn, *ctmp;

    list_for_each_safe(cn, ctmp, &p->all)
    {
        struct proxy_call *c = container_of(cn, struct proxy_call, anode);
        c->refs++; /* its last branch given up must not free it here */
        node_down_call(p, c, &n->addr);
        proxy_call_unref(c);
    }
}
