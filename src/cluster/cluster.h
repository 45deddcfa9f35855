/*
 * cluster: several pushpbx nodes on one PostgreSQL store, no single point
 * of failure (docs/cluster.md). This room is everything a node does about
 * the others:
 *
 *  - heartbeat: cluster_tick (the main thread's 1 s tick) queues this
 *    node's row (store_node_beat: name, advertise, started_at, last_seen,
 *    its current calls: cluster_set_calls) and reads every node's row back (store_node_load) into the nodes
 *    cache: a node is alive while last_seen >= now - node_timeout_s;
 *  - the nodes cache (name, advertised address, alive) answers the proxy's
 *    "is this source a node" (cluster_is_peer), the admin's node list and
 *    the change handler's "where is this binding's node";
 *  - the change handler: the store's listener (store_watch) reports each
 *    extension another node wrote; the handler reads it (store_ext_read)
 *    and replaces, in memory only, its extension row (reg_ext_apply /
 *    reg_ext_forget), its remote bindings (reg_remote_set: source = the
 *    holding node's advertised address) and its push devices
 *    (pushdev_replace_ext); new remote bindings fire the registrar's bind
 *    callback like a local REGISTER, then bindings_added (the app passes
 *    it to proxy_binding_added); then changed (the app passes it to the
 *    admin's provisioning links). A (re)connected listener resynchronises
 *    everything, removing what is no longer in the store (changed with
 *    ext NULL); so does a node coming back to life. A node that dies has its remote bindings
 *    dropped (reg_remote_drop_node) and is reported to node_down (the
 *    app stops the ringing branches sent via it: proxy_node_down).
 *
 * With [cluster] node empty no cluster is opened (cluster_open is not
 * called): the single-node path does not pass through this room.
 *
 * Threads: cluster_tick on the main thread; the change handler on the
 * store's listener thread; cluster_is_peer on any worker; cluster_nodes on
 * the admin thread. The nodes cache has one mutex (held for copies only);
 * applying changes (a handler call, a resynchronisation) is serialised by
 * another, never held while a worker waits.
 */
#ifndef PUSHPBX_CLUSTER_CLUSTER_H
#define PUSHPBX_CLUSTER_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct cluster;
struct cluster_cfg;
struct store;
struct reg;
struct pushdev_table;

/* Is s a valid node name: 1..63 of [A-Za-z0-9_.-]? Pure. */
bool cluster_node_name_valid(const char *s);

/* Parse an advertise URI "sip:HOST[:PORT]" or "sips:HOST[:PORT]" (numeric
 * host, default port 5060, 5061 for sips: or transport=tls; other
 * parameters ignored) into "ip:port" ("[v6]:port") in hostport
 * (cap >= 64) and, when sa is not NULL, the address. 0 or -EINVAL. */
int cluster_advertise_parse(const char *uri, char *hostport, size_t cap,
                            struct sockaddr_storage *sa);

/* New remote bindings of ext were applied (after the bind callback ran).
 * Listener or main thread; must be thread-safe and short. */
typedef void cluster_added_fn(const char *ext, void *arg);

/* Node name was declared down (no heartbeat for node_timeout_s; its
 * remote bindings were just dropped); addr is its advertised address.
 * The app stops the branches of ringing calls sent via it
 * (proxy_node_down). Main thread; must be short. */
typedef void cluster_down_fn(const char *name,
                             const struct sockaddr_storage *addr, void *arg);

/* Another node changed ext in the store (after the handler applied it to
 * the registrar and push devices), for state kept outside this room (the
 * admin's provisioning links); ext NULL: anything may have changed (a
 * resynchronisation). Listener or main thread, one call at a time (under
 * the handler's serialisation); may block for a read of the store. */
typedef void cluster_changed_fn(const char *ext, void *arg);

struct cluster_opts {
    const struct cluster_cfg *cfg; /* copied; cfg->node not empty */
    struct store *store;           /* borrowed; PostgreSQL */
    struct reg *reg;               /* borrowed */
    struct pushdev_table *devices; /* borrowed; NULL: no push devices */
    cluster_added_fn *bindings_added; /* may be NULL */
    cluster_down_fn *node_down;       /* may be NULL */
    cluster_changed_fn *changed;      /* may be NULL */
    void *arg;                        /* of the three */
    /* Wall clock in s; NULL = time(). For tests. */
    int64_t (*clock_s)(void *arg);
    void *clock_arg;
};

/* Beat once, read the nodes, resynchronise the registrar and the push
 * devices from the store (every other node's bindings), then start the
 * store's listener. Blocks (start-up, before the workers). Returns 0 and
 * *out (owned; cluster_close), or a negative errno with "cluster: reason"
 * in err. Main thread. */
int cluster_open(const struct cluster_opts *o, struct cluster **out,
                 char *err, size_t errlen);
/* Stop applying changes (waits for a change being applied): after it,
 * the store's listener may still call the handler, which then does
 * nothing, so the registrar and push devices may be freed. NULL is a
 * no-op. Main thread. */
void cluster_stop(struct cluster *cl);
/* Free. The store's listener must be gone (store_close stops it): call it
 * after store_close. NULL is a no-op. Main thread. */
void cluster_close(struct cluster *cl);

/* Once a second (main thread): queue the heartbeat, reload the nodes,
 * drop the remote bindings of nodes that just died, resynchronise when a
 * node came (back) to life. Blocks for one read of the nodes table. */
void cluster_tick(struct cluster *cl);

/* How many calls this node has now (the app's count), put in each
 * heartbeat so that every node's admin shows every node's calls. Any
 * thread; short. */
typedef size_t cluster_calls_fn(void *arg);
/* Set it (NULL: 0 calls). Main thread, like cluster_tick. */
void cluster_set_calls(struct cluster *cl, cluster_calls_fn *fn, void *arg);

/* Is host (the port is ignored) the advertised host of an alive node
 * other than this one? A proxy_peer_fn (proxy.h). Any thread. */
bool cluster_is_peer(const struct sockaddr *host, void *arg);

/* The advertise URI of node (an alive node other than this one, as the
 * nodes cache has it, or as the change handler read it from the store
 * for a node the cache does not know yet), or, when node is NULL, of the
 * node whose advertised address (host and port) is addr, copied into uri
 * (cap bytes): true, or false when no such node is known alive or its
 * URI does not fit. A proxy_peer_uri_fn (proxy.h): the proxy sends a call
 * for a phone that node holds, and an in-dialog request to that node,
 * over the URI's transport. Any thread (a mutex, no I/O). */
bool cluster_peer_advertise(const char *node, const struct sockaddr *addr,
                            char *uri, size_t cap, void *arg);

/* A node as the admin sees it (copies). */
struct cluster_node_info {
    char name[64];
    char advertise[256];
    bool self, alive;
    int64_t started_at, last_seen; /* unix s */
    size_t bindings; /* unexpired bindings it holds, as this node sees */
    /* Its calls: this node's now (cluster_set_calls), another node's as
     * of its last heartbeat; -1 for a node that is down (they ended). */
    int64_t calls;
};
/* Copy at most cap nodes (self first, then by name) into out; returns how
 * many there are (may exceed cap). Counts bindings (O(bindings)). Any
 * thread (the admin's). */
size_t cluster_nodes(struct cluster *cl, struct cluster_node_info *out,
                     size_t cap);

/* This node's name (borrowed from cl). */
const char *cluster_self(const struct cluster *cl);

#endif
