/*
 * proxy/proxy_dialog: in-dialog requests (a To tag, or an ACK that matched
 * no transaction) are loose-routed through our Record-Route entry.
 *
 * Record-Route: one entry "<sip:us;lr;pp-fa=F;pp-fb=G>" per branch
 * (proxy_branch_start), where F is the caller's TCP/TLS flow and G the
 * branch's (0 for UDP), with the host:port of our listener and the
 * transport param of the caller's transport. When the branch uses another
 * transport (a UDP phone calling a TLS phone) we record-route twice, as
 * Kamailio's r2=on: the top entry names our listener of the callee's
 * transport, the second that of the caller's, so each side sends its
 * in-dialog requests (a callee's BYE) over a transport it has. An
 * in-dialog request pops our one or two Routes and goes over the flow of
 * the other side, so a NAT'd TCP/TLS phone is reached over its own
 * connection.
 *
 * [cluster] pp-nd=a|b names the side that is another node (proxy_fork.c):
 * its requests come over any of its workers' connections, so a request
 * from a node that matches neither flow goes to the other side's flow
 * (node_side). A request to the node goes over the transport its Route
 * entry names, and when that is UDP and the node's advertise URI names no
 * transport, over TCP to the same address when it is larger than
 * PROXY_UDP_MAX (RFC 3261 §18.1.1), as the initial INVITE (to_node_any):
 * a re-INVITE with a big SDP, either way, or an ACK with a big SDP answer
 * (also when it went to rtpengine first).
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

static uint64_t
param_u64(struct slice params, const char *name)
{
    struct slice v;
    uint64_t out = 0;

    if (!sip_param_get(params, name, &v) || v.len == 0 || v.len > 16)
        return 0;
    for (size_t i = 0; i < v.len; i++) {
        char c = v.ptr[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                       : -1;
        if (d < 0)
            return 0;
        out = out << 4 | (uint64_t)d;
    }
    return out;
}

/* The flow of the other side of a dialog, from our Route's pp-fa/pp-fb. */
uint64_t
proxy_other_flow(const struct sip_uri *route, const struct tp_src *src)
{
    uint64_t fa = param_u64(route->params, "pp-fa");
    uint64_t fb = param_u64(route->params, "pp-fb");
    uint64_t f = src->flow_id;

    if (f && f == fa)
        return fb;
    if (f && f == fb)
        return fa;
    if (!f)
        return fa ? fa : fb; /* UDP side: the TCP one, if any */
    return 0;
}

/* [cluster] A request over a connection that is neither side's flow:
 * when our Route says one side is another node (pp-nd, proxy_fork.c) and
 * the request comes from a node, it goes to the other side's flow (a
 * node's requests come over whichever connection its worker has to us);
 * from anyone else, nowhere in particular (0: by address). */
static uint64_t
node_side(const struct proxy *p, const struct sip_uri *route,
          const struct tp_src *src)
{
    struct slice nd;

    if (!p->sh->is_peer || !sip_param_get(route->params, "pp-nd", &nd) ||
        nd.len != 1 || !p->sh->is_peer(&src->remote.u.sa, p->sh->peer_arg))
        return 0;
    return param_u64(route->params, nd.ptr[0] == 'b' ? "pp-fa" : "pp-fb");
}

/* [cluster] Is dst another node, reached over UDP at the address of its
 * advertise URI, which names no transport? Then a request larger than
 * PROXY_UDP_MAX goes there over TCP (its TCP listener is on the same
 * port: docs/cluster.md), as a call's branch does (proxy_fork.c,
 * peer_dest and proxy_branch_send). Only in a dialog with a node side
 * (pp-nd in our Route): a lookup in the nodes cache (a mutex, no I/O).
 * An ACK whose SDP answer goes to rtpengine first (proxy_media_ack, a
 * relayed call's late offer) keeps this answer until it is sent
 * (proxy_ack_send), so it moves to TCP too. */
static bool
to_node_any(const struct proxy *p, const struct sip_uri *route,
            const struct tp_dest *dst)
{
    char uri[256];
    struct sip_uri u;
    struct slice nd, tr;
    struct tp_dest ad;
    const char *why;

    if (dst->proto != TP_UDP || dst->flow_id || !p->sh->peer_uri ||
        !sip_param_get(route->params, "pp-nd", &nd) ||
        !p->sh->peer_uri(NULL, &dst->addr.u.sa, uri, sizeof(uri),
                         p->sh->peer_arg) ||
        sip_uri_parse(slice_cstr(uri), &u, &why) < 0 ||
        proxy_dest_from_uri(&u, &ad) < 0)
        return false;
    return ad.proto == TP_UDP && !sip_uri_param(&u, "transport", &tr);
}

/* A stateless ACK (for a 2xx) with our Via for dst's transport. */
static int
ack_build(struct proxy *p, const struct sip_msg *req, const struct tp_dest *dst,
          bool pop2)
{
    char branch[TXN_BRANCH_MAX], via[TP_ADDRSTRLEN + 96];

    txn_branch_new(p->tt, branch);
    snprintf(via, sizeof(via), "SIP/2.0/%s %s;branch=%s",
             proxy_tp_upper(dst->proto), p->via_host[proxy_tpk(dst->proto)],
             branch);
    struct sip_fwd fw = {
        .via = slice_cstr(via), .pop_route = true, .pop_route2 = pop2};
    buf_reset(&p->out);
    return sip_build_forward(&p->out, req, &fw);
}

bool
proxy_ack_send(struct proxy *p, const struct sip_msg *req,
               struct tp_dest *dst, bool pop2, bool node_any)
{
    int rc = ack_build(p, req, dst, pop2);

    if (rc == 0 && node_any && p->out.len > PROXY_UDP_MAX) {
        dst->proto = TP_TCP; /* §18.1.1, as proxy_branch_send */
        rc = ack_build(p, req, dst, pop2);
    }
    if (rc != 0 || tp_send(p->tp, dst, buf_slice(&p->out), NULL) != 0)
        return false;
    p->stats.acks_forwarded++;
    return true;
}

/* After our top Route (first, already parsed): if the second Route value
 * is us too (double record-routing), *last gets it and *pop2 is set. The
 * next Route value after ours goes into *next. Returns 1 when there is
 * one, 0 when not (the Request-URI is the next hop), -1 for a bad value. */
static int
route_after_ours(const struct proxy *p, const struct sip_msg *req,
                 struct sip_uri *last, struct sip_uri *next, bool *pop2)
{
    struct sip_hdr_iter it;
    struct slice v;
    const char *why;

    sip_hdr_iter_init(&it, req, SIP_HDR_ROUTE);
    if (!sip_hdr_iter_next(&it, &v))
        return 0; /* cannot happen: the caller found the first */
    for (int i = 0; i < 2; i++) {
        struct sip_name_addr na;
        struct sip_error e;
        if (!sip_hdr_iter_next(&it, &v))
            return 0;
        if (sip_name_addr_parse(v, &na, &e) < 0 ||
            sip_uri_parse(na.uri, next, &why) < 0)
            return -1;
        if (i == 1 || !proxy_uri_is_us(p, next))
            return 1;
        *last = *next;
        *pop2 = true;
    }
    return 0;
}

static bool
addr_param(const struct sip_uri *route, const char *name, struct tp_addr *a)
{
    struct slice v;

    return sip_param_get(route->params, name, &v) && v.len &&
           tp_addr_parse(v, false, a) == 0;
}

/* Signalling NAT (Kamailio's add_contact_alias/handle_ruri_alias, kept in
 * our Record-Route instead of the Contact): a side behind NAT put its
 * private address in its Contact, which is the Request-URI of what the
 * other side sends it. pp-na / pp-nb hold where the caller / the callee
 * sent from; a request goes to the side it did not come from. UDP only
 * (a TCP/TLS side is reached over its flow). */
static void
nat_target(const struct sip_uri *route, const struct tp_src *src,
           struct tp_dest *dst)
{
    struct tp_addr na, nb;
    bool ha = addr_param(route, "pp-na", &na);
    bool hb = addr_param(route, "pp-nb", &nb);
    const struct tp_addr *to = NULL;

    if (!ha && !hb)
        return;
    if (ha && tp_addr_equal(&src->remote, &na))
        to = hb ? &nb : NULL;
    else if (hb && tp_addr_equal(&src->remote, &nb))
        to = ha ? &na : NULL;
    else if (ha != hb)
        to = ha ? &na : &nb; /* from the side that is not NATed */
    if (!to || dst->proto != TP_UDP)
        return;
    dst->addr = *to;
}

void
proxy_route_in_dialog(struct proxy *p, struct txn *t, const struct sip_msg *req,
                      const struct tp_src *src)
{
    struct sip_name_addr na;
    struct sip_uri route, next;
    struct slice second;
    const char *why;
    struct tp_dest dst;

    int rt = proxy_top_route(req, &na, &route, &second);
    if (rt != 1 || !proxy_uri_is_us(p, &route)) {
        /* Not record-routed through us: we do not relay it. */
        if (t)
            proxy_reject(p, t, rt < 0 ? 400 : 403,
                         rt < 0 ? "Bad Route" : "Not Routed Through Us",
                         SLICE_NULL);
        return;
    }
    if (req->max_forwards == 0) {
        if (t)
            proxy_reject(p, t, 483, NULL, SLICE_NULL);
        return;
    }
    /* Our own one or two Route values (double record-routing), then the
     * next hop: the next Route value, else the Request-URI. The last of
     * ours names the transport of the side the request goes to. */
    struct sip_uri last = route;
    bool pop2 = false;
    int nr = route_after_ours(p, req, &last, &next, &pop2);
    if (nr < 0) {
        if (t)
            proxy_reject(p, t, 400, "Bad Route", SLICE_NULL);
        return;
    }
    if (nr == 0 && sip_uri_parse(req->ruri, &next, &why) < 0) {
        if (t)
            proxy_reject(p, t, 400, "Bad Request-URI", SLICE_NULL);
        return;
    }
    if (proxy_dest_from_uri(&next, &dst) < 0) {
        /* TODO(dns): only numeric next hops are reachable today. */
        if (t)
            proxy_reject(p, t, 404, "Next Hop Not Numeric", SLICE_NULL);
        return;
    }
    uint64_t f = proxy_other_flow(&route, src);
    if (!f && src->flow_id)
        f = node_side(p, &route, src);
    if (!f && nr == 0)
        nat_target(&route, src, &dst);
    int media = proxy_route_media(&route);
    if (f) {
        /* Over the other side's own connection; its transport is the one
         * our last Route names (TLS or TCP). */
        dst.proto = proxy_uri_proto(&last) == TP_TLS ? TP_TLS : TP_TCP;
        dst.flow_id = f;
    }
    if (media != PROXY_MEDIA_NONE && req->method == SIP_METHOD_BYE)
        proxy_media_delete(p, req->call_id, req->from.tag, media);
    bool node_any = !f && to_node_any(p, &route, &dst);
    if (!t && media != PROXY_MEDIA_NONE &&
        proxy_media_ack(p, req, &dst, pop2, node_any, media, src))
        return; /* the answer in the ACK goes to rtpengine first */
    if (!t) {
        /* ACK for a 2xx: stateless, its own transaction downstream. */
        proxy_ack_send(p, req, &dst, pop2, node_any);
        return;
    }
    struct proxy_call *c = proxy_call_new(p, t, CALL_RELAY, req, src);
    c->pop2 = pop2;
    c->media = media;
    c->nbr = 1;
    c->br[0] = (struct branch){.call = c, .peer_any = node_any};
    int rc =
        proxy_branch_start(c, &c->br[0], &dst, SLICE_NULL, true, 0, SLICE_NULL);
    p->stats.in_dialog++;
    if (rc < 0) {
        c->br[0].status = 503;
        proxy_call_final(c, 503, NULL);
    }
}
