/*
 * proxy/proxy_dialog: in-dialog requests (a To tag, or an ACK that matched
 * no transaction) are loose-routed through our Record-Route entry.
 *
 * Record-Route: one entry "<sip:us;lr;pp-fa=F;pp-fb=G>" per branch, where
 * F is the caller's TCP flow and G the branch's (0 for UDP). An in-dialog
 * request popping that Route goes over the flow of the other side, so a
 * NAT'd TCP phone is reached over its own connection.
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
    if (second.len) {
        struct sip_name_addr na2;
        struct sip_error e;
        if (sip_name_addr_parse(second, &na2, &e) < 0 ||
            sip_uri_parse(na2.uri, &next, &why) < 0) {
            if (t)
                proxy_reject(p, t, 400, "Bad Route", SLICE_NULL);
            return;
        }
    } else if (sip_uri_parse(req->ruri, &next, &why) < 0) {
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
    if (f) {
        dst.proto = TP_TCP;
        dst.flow_id = f;
    }
    if (!t) {
        /* ACK for a 2xx: stateless, its own transaction downstream. */
        char branch[TXN_BRANCH_MAX], via[TP_ADDRSTRLEN + 96];
        txn_branch_new(p->tt, branch);
        snprintf(via, sizeof(via), "SIP/2.0/%s %s;branch=%s",
                 dst.proto == TP_TCP ? "TCP" : "UDP",
                 p->via_host[dst.proto == TP_TCP], branch);
        struct sip_fwd fw = {.via = slice_cstr(via), .pop_route = true};
        buf_reset(&p->out);
        if (sip_build_forward(&p->out, req, &fw) == 0 &&
            tp_send(p->tp, &dst, buf_slice(&p->out), NULL) == 0)
            p->stats.acks_forwarded++;
        return;
    }
    struct proxy_call *c = proxy_call_new(p, t, CALL_RELAY, req, src);
    c->nbr = 1;
    c->br[0] = (struct branch){.call = c};
    int rc =
        proxy_branch_start(c, &c->br[0], &dst, SLICE_NULL, true, 0, SLICE_NULL);
    p->stats.in_dialog++;
    if (rc < 0) {
        c->br[0].status = 503;
        proxy_call_final(c, 503, NULL);
    }
}
