/*
 * admin/admin_nodes: GET /api/nodes, the nodes of a pushpbx cluster
 * (docs/cluster.md) as this node sees them: up or down (heartbeat within
 * [cluster] node_timeout_s), the bindings each holds, the calls each has
 * (another node's from its heartbeat row).
 * A single node lists itself alone ("cluster": false). The rows come from
 * the app's list_nodes source (the cluster room's cache); this file only
 * shapes the answer. Admin thread; a few rows. (GET /api/registrations
 * names the node of each binding: admin_reg.c.)
 */
#include <stddef.h>

#include "admin/admin_int.h"

json_t *
admin_nodes_json(int (*fn)(void *arg, json_t *items), void *arg)
{
    json_t *items = json_array();
    bool ok = fn != NULL;

    if (fn && fn(arg, items) < 0) {
        json_array_clear(items);
        ok = false;
    }
    /* One unnamed item: this node alone, not in a cluster. */
    json_t *first = json_array_get(items, 0);
    const char *name =
        first ? json_string_value(json_object_get(first, "name")) : NULL;
    bool cluster = name && name[0];
    return json_pack("{s:b, s:b, s:o}", "available", ok, "cluster", cluster,
                     "items", items);
}
