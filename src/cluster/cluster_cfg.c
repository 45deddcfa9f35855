/*
 * cluster: the [cluster] configuration section (style.md §9: every option
 * is declared once, here) and its cross-field check (advertise is required
 * with node, and must be a numeric sip: or sips: URI with at most a
 * transport parameter, udp, tcp or tls: nodes reach each other without
 * DNS, over that transport).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cluster/cluster.h"
#include "cluster/cluster_cfg.h"
#include "config/cfg.h"
#include "sip/uri.h"

static const struct cfg_option cluster_options[] = {
    {.key = "node",
     .type = CFG_STRING,
     .def = "",
     .offset = offsetof(struct cluster_cfg, node),
     .help = "This node's name in a cluster of pushpbx nodes sharing one "
             "PostgreSQL database (docs/cluster.md): letters, digits, '_', "
             "'.', '-', at most 63. Empty (default): a single node, no "
             "cluster. Needs [store] backend = postgresql."},
    {.key = "advertise",
     .type = CFG_STRING,
     .def = "",
     .offset = offsetof(struct cluster_cfg, advertise),
     .help = "The SIP URI other nodes reach this node at, with a numeric "
             "host: sip:10.0.0.5:5060 (UDP, and TCP on the same port for "
             "a request over 1300 bytes, RFC 3261 18.1.1), "
             "sip:10.0.0.5:5060;transport=tcp (always TCP) or "
             ";transport=udp (always UDP), or over TLS: "
             "sip:10.0.0.5:5061;transport=tls or sips:10.0.0.5:5061 (needs "
             "a tls: listener on that port whose certificate names the "
             "address; other nodes verify it, [tls] server_ca_file). "
             "Required when node is set; other nodes route calls for the "
             "phones registered here to it and trust requests from its "
             "host."},
    {.key = "node_timeout_s",
     .type = CFG_UINT,
     .min = 2,
     .max = 3600,
     .def = "10",
     .offset = offsetof(struct cluster_cfg, node_timeout_s),
     .help = "A node that has not written its heartbeat (once a second) for "
             "this long is dead: the bindings it held are ignored (its "
             "phones re-register at another node) until it beats again."},
};

/* The advertise URI other nodes will use: sip:IP[:PORT] or sips:IP[:PORT]
 * with at most a transport parameter, udp, tcp or tls (the proxy sends
 * node-to-node requests over it, proxy_fork.c; TLS connections are
 * opened and verified by transport/). Whether this node has a tls:
 * listener on that port is for main.c to check: the option table does not
 * see [sip] listen.
 * TODO(cluster): the host must be numeric, so a TLS node is verified by
 * its IP address, with the one certificate its phones see too (a name
 * here, resolved, and a second [tls] certificate for nodes would let the
 * phones keep a public certificate). */
static int
advertise_check(const char *uri, char *err, size_t errlen)
{
    static const char want[] =
        "want sip:IP[:PORT] or sips:IP[:PORT] with a numeric host, "
        "optionally ;transport=udp, ;transport=tcp or ;transport=tls";
    struct sip_uri u;
    const char *why;
    char hostport[64];

    if (sip_uri_parse(slice_cstr(uri), &u, &why) < 0) {
        snprintf(err, errlen, "advertise \"%s\": %s; %s", uri, why, want);
        return -EINVAL;
    }
    struct slice tr = SLICE_NULL;
    bool has_tr = sip_uri_param(&u, "transport", &tr);
    if (u.scheme == SIP_URI_SIPS && has_tr &&
        !slice_eq_nocase_cstr(tr, "tls")) {
        /* RFC 5630: sips: means TLS on every hop. */
        snprintf(err, errlen,
                 "advertise \"%s\": sips: with transport "
                 "\"%.*s\": sips: is TLS only",
                 uri, (int)(tr.len > 32 ? 32 : tr.len), tr.ptr);
        return -EINVAL;
    }
    if (has_tr && !slice_eq_nocase_cstr(tr, "udp") &&
        !slice_eq_nocase_cstr(tr, "tcp") && !slice_eq_nocase_cstr(tr, "tls")) {
        snprintf(err, errlen,
                 "advertise \"%s\": transport \"%.*s\" is not "
                 "udp, tcp or tls",
                 uri, (int)(tr.len > 32 ? 32 : tr.len), tr.ptr);
        return -EINVAL;
    }
    /* Only transport: other parameters, a user part or headers would be
     * silently dropped from the Route other nodes build. */
    struct slice ps = u.params;
    while (ps.len) {
        if (ps.ptr[0] == ';') {
            ps.ptr++;
            ps.len--;
        }
        const char *end = memchr(ps.ptr, ';', ps.len);
        size_t n = end ? (size_t)(end - ps.ptr) : ps.len;
        const char *eq = memchr(ps.ptr, '=', n);
        size_t name = eq ? (size_t)(eq - ps.ptr) : n;
        if (name && !(name == 9 && strncasecmp(ps.ptr, "transport", 9) == 0)) {
            snprintf(err, errlen, "advertise \"%s\": parameter \"%.*s\" is "
                     "not understood; %s", uri, (int)(name > 32 ? 32 : name),
                     ps.ptr, want);
            return -EINVAL;
        }
        ps.ptr += n;
        ps.len -= n;
    }
    if (u.user.len || u.headers.len || (u.has_port && u.port == 0) ||
        cluster_advertise_parse(uri, hostport, sizeof(hostport), NULL) < 0) {
        snprintf(err, errlen, "advertise \"%s\": %s", uri, want);
        return -EINVAL;
    }
    return 0;
}

static int
cluster_finish(void *sec, char *err, size_t errlen)
{
    struct cluster_cfg *c = sec;

    if (!c->node[0]) {
        if (c->advertise[0]) {
            snprintf(err, errlen, "advertise is set but node is empty");
            return -EINVAL;
        }
        return 0;
    }
    if (!cluster_node_name_valid(c->node)) {
        snprintf(err, errlen,
                 "node \"%s\": use 1..63 letters, digits, '_', '.', '-'",
                 c->node);
        return -EINVAL;
    }
    if (!c->advertise[0]) {
        snprintf(err, errlen, "node is set: advertise is required "
                              "(e.g. sip:10.0.0.5:5060)");
        return -EINVAL;
    }
    return advertise_check(c->advertise, err, errlen);
}

bool
cluster_advertise_tls(const struct cluster_cfg *c)
{
    struct sip_uri u;
    struct slice tr;
    const char *why;

    if (!c->node || !c->node[0] || !c->advertise ||
        sip_uri_parse(slice_cstr(c->advertise), &u, &why) < 0)
        return false;
    return u.scheme == SIP_URI_SIPS || (sip_uri_param(&u, "transport", &tr) &&
                                        slice_eq_nocase_cstr(tr, "tls"));
}

const struct cfg_section cluster_cfg_section = {
    .name = "cluster",
    .help = "Several pushpbx nodes on one PostgreSQL database "
            "(docs/cluster.md).",
    .options = cluster_options,
    .option_count = sizeof(cluster_options) / sizeof(cluster_options[0]),
    .size = sizeof(struct cluster_cfg),
    .finish = cluster_finish,
};
