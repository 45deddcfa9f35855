/*
 * cluster/cluster_cfg: the [cluster] section table for the config loader
 * (cfg_get(cfg, &cluster_cfg_section) returns a const struct cluster_cfg *).
 */
#ifndef PUSHPBX_CLUSTER_CLUSTER_CFG_H
#define PUSHPBX_CLUSTER_CLUSTER_CFG_H

#include <stdbool.h>

#include "config/cfg.h"

/* [cluster] (docs/cluster.md). node "" = a single node: the cluster room
 * does nothing at all then. */
struct cluster_cfg {
    char *node;      /* this node's name ([A-Za-z0-9_.-], 1..63) or "" */
    char *advertise; /* SIP URI other nodes reach this node at
                        ("sip:10.0.0.5:5060"); required with node */
    unsigned node_timeout_s; /* a node not beating for this long is dead */
};

extern const struct cfg_section cluster_cfg_section;

/* Does the advertise URI c->advertise ask for TLS (sips:, or
 * transport=tls)? Then other nodes connect to this node's tls: listener,
 * and the daemon refuses to start without one. false with no node. */
bool cluster_advertise_tls(const struct cluster_cfg *c);

#endif
