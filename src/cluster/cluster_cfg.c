/*
 * cluster: the [cluster] configuration section (style.md §9: every option
 * is declared once, here) and its cross-field check (advertise is required
 * with node, and must be a numeric sip: URI: nodes reach each other
 * without DNS).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "cluster/cluster.h"
#include "cluster/cluster_cfg.h"
#include "config/cfg.h"

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
             "host (e.g. sip:10.0.0.5:5060; UDP). Required when node is "
             "set; other nodes route calls for the phones registered here "
             "to it and trust requests from its host."},
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
    char hostport[64];
    if (cluster_advertise_parse(c->advertise, hostport, sizeof(hostport),
                                NULL) < 0) {
        snprintf(err, errlen,
                 "advertise \"%s\": want sip:IP[:PORT] with a numeric host",
                 c->advertise);
        return -EINVAL;
    }
    return 0;
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
