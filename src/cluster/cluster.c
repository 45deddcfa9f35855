/*
 * cluster: heartbeat, the nodes cache and the change handler (cluster.h;
 * docs/cluster.md). Load: one heartbeat write and one read of the nodes
 * table a second per node (a handful of rows), and one extension read per
 * change another node makes; a full resynchronisation (start, listener
 * reconnected, a node back to life) reads every extension, binding and
 * push device once: O(rows), seconds at a million, rare. Measured by
 * bench/cluster-bench.sh (BENCHMARKS.md, "Cluster on PostgreSQL").
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/slice.h"
#include "base/xmalloc.h"
#include "cluster/cluster.h"
#include "cluster/cluster_cfg.h"
#include "registrar/msgstore.h"
#include "registrar/pushdev.h"
#include "registrar/reg.h"
#include "sip/uri.h"
#include "store/store.h"

struct node {
    char name[64];
    char advertise[256];
    char hostport[64]; /* "ip:port" of advertise */
    struct sockaddr_storage sa;
    int64_t started_at, last_seen;
    int64_t calls; /* in its last heartbeat */
    bool alive;
};

struct cluster {
    char self[64];
    char advertise[256];
    unsigned timeout_s;
    int64_t started_at;
    struct store *st;
    struct reg *reg;
    struct pushdev_table *devices;
    cluster_added_fn *added;
    cluster_down_fn *down;
    cluster_changed_fn *changed;
    void *arg;
    int64_t (*clock_s)(void *arg);
    void *clock_arg;

    pthread_mutex_t lock; /* nodes, count, calls_fn */
    struct node *nodes;
    size_t count;
    /* Nodes the change handler read from the store before a tick had
     * (node_hostport): for their advertise URI only (cluster_peer_advertise),
     * dropped at the next reload of the nodes. */
    struct node *early;
    size_t early_n;
    cluster_calls_fn *calls_fn;
    void *calls_arg;

    pthread_mutex_t apply; /* one change handler or resync at a time */
    bool stopped;          /* cluster_stop: the handler does nothing; under
                              apply */
    unsigned listens;      /* listener (re)connections seen; under apply */
    uint64_t recoveries;   /* the store's, as of the last repair_own; tick */
};

/* ---- helpers ---------------------------------------------------------- */

bool
cluster_node_name_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
              (c >= 'A' && c <= 'Z') || c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

int
cluster_advertise_parse(const char *uri, char *hostport, size_t cap,
                        struct sockaddr_storage *sa)
{
    struct sip_uri u;
    const char *why;
    char host[64];
    struct sockaddr_storage tmp;

    if (!uri || sip_uri_parse(slice_cstr(uri), &u, &why) < 0 ||
        (u.scheme != SIP_URI_SIP && u.scheme != SIP_URI_SIPS) ||
        u.host.len == 0 || u.host.len >= sizeof(host))
        return -EINVAL;
    struct slice h = u.host;
    if (h.len > 2 && h.ptr[0] == '[') {
        h.ptr++;
        h.len -= 2;
    }
    memcpy(host, h.ptr, h.len);
    host[h.len] = '\0';
    struct slice tr;
    bool tls =
        u.scheme == SIP_URI_SIPS || (sip_uri_param(&u, "transport", &tr) &&
                                     slice_eq_nocase_cstr(tr, "tls"));
    unsigned port = u.has_port ? u.port : tls ? 5061 : 5060;
    if (!sa)
        sa = &tmp;
    memset(sa, 0, sizeof(*sa));
    struct sockaddr_in *in4 = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        snprintf(hostport, cap, "%s:%u", host, port);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        snprintf(hostport, cap, "[%s]:%u", host, port);
        return 0;
    }
    return -EINVAL;
}

static int64_t
now_s(const struct cluster *cl)
{
    if (cl->clock_s)
        return cl->clock_s(cl->clock_arg);
    return (int64_t)time(NULL);
}

static bool
same_host(const struct sockaddr *a, const struct sockaddr_storage *b)
{
    if (a->sa_family != b->ss_family)
        return false;
    if (a->sa_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->sa_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                      &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
    return false;
}

/* ---- nodes cache ------------------------------------------------------ */

struct node_vec {
    struct node *v;
    size_t n, cap;
    const struct cluster *cl;
    int64_t now;
};

static int
load_node(const struct store_node *sn, void *arg)
{
    struct node_vec *nv = arg;

    if (!sn->name || !cluster_node_name_valid(sn->name))
        return 0;
    if (nv->n == nv->cap) {
        nv->cap = nv->cap ? 2 * nv->cap : 8;
        nv->v = xrealloc(nv->v, nv->cap * sizeof(*nv->v));
    }
    struct node *x = &nv->v[nv->n];
    memset(x, 0, sizeof(*x));
    snprintf(x->name, sizeof(x->name), "%s", sn->name);
    snprintf(x->advertise, sizeof(x->advertise), "%s",
             sn->advertise ? sn->advertise : "");
    if (cluster_advertise_parse(x->advertise, x->hostport,
                                sizeof(x->hostport), &x->sa) < 0)
        x->hostport[0] = '\0';
    x->started_at = sn->started_at;
    x->last_seen = sn->last_seen;
    x->calls = sn->calls;
    bool self = strcmp(x->name, nv->cl->self) == 0;
    x->alive = self || (x->hostport[0] &&
                        x->last_seen >= nv->now - (int64_t)nv->cl->timeout_s);
    nv->n++;
    return 0;
}

static const struct node *
find_node(const struct node *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0)
            return &v[i];
    return NULL;
}

static int64_t
calls_now(struct cluster *cl)
{
    pthread_mutex_lock(&cl->lock);
    cluster_calls_fn *fn = cl->calls_fn;
    void *arg = cl->calls_arg;
    pthread_mutex_unlock(&cl->lock);
    return fn ? (int64_t)fn(arg) : 0;
}

static void
beat(struct cluster *cl, int64_t now)
{
    struct store_node me = {.name = cl->self,
                            .advertise = cl->advertise,
                            .started_at = cl->started_at,
                            .last_seen = now,
                            .calls = calls_now(cl)};
    int rc = store_node_beat(cl->st, &me);
    if (rc < 0)
        log_warn("cluster", "heartbeat not queued: %s", strerror(-rc));
}

/* Read the nodes table into the cache. *revived: a node other than us is
 * alive now that was not (or was unknown). Dead ones get their remote
 * bindings dropped here. Returns 0 or the store's error (cache kept). */
static int
reload_nodes(struct cluster *cl, bool *revived)
{
    struct node_vec nv = {.cl = cl, .now = now_s(cl)};
    int rc = store_node_load(cl->st, load_node, &nv);
    if (rc < 0) {
        free(nv.v);
        return rc;
    }
    *revived = false;
    pthread_mutex_lock(&cl->lock);
    struct node *old = cl->nodes;
    size_t old_n = cl->count;
    cl->nodes = nv.v;
    cl->count = nv.n;
    free(cl->early); /* the cache has them now */
    cl->early = NULL;
    cl->early_n = 0;
    pthread_mutex_unlock(&cl->lock);
    for (size_t i = 0; i < nv.n; i++) {
        const struct node *x = &nv.v[i];
        const struct node *o = find_node(old, old_n, x->name);
        if (strcmp(x->name, cl->self) == 0)
            continue;
        if (x->alive && (!o || !o->alive)) {
            log_notice("cluster", "node %s is up (%s)", x->name, x->advertise);
            *revived = true;
        }
        if (!x->alive && o && o->alive) {
            /* Calls held on the dead node end with it (their caller's
             * transaction was there). Calls held here that ring a phone
             * via it: its branches stop now, and the phone's binding at
             * another node (if it moved already, or later while the call
             * rings) gets a branch (node_down: proxy_node_down). */
            pthread_mutex_lock(&cl->apply); /* not under a change */
            size_t n = reg_remote_drop_node(cl->reg, x->name);
            pthread_mutex_unlock(&cl->apply);
            log_warn("cluster",
                     "node %s is down (no heartbeat for %u s): %zu bindings "
                     "it held are ignored",
                     x->name, cl->timeout_s, n);
            if (cl->down && x->hostport[0])
                cl->down(x->name, &x->sa, cl->arg);
        }
    }
    free(old);
    return 0;
}

bool
cluster_is_peer(const struct sockaddr *host, void *arg)
{
    struct cluster *cl = arg;
    bool yes = false;

    if (!cl || !host)
        return false;
    pthread_mutex_lock(&cl->lock);
    for (size_t i = 0; i < cl->count && !yes; i++)
        yes = cl->nodes[i].alive && cl->nodes[i].hostport[0] &&
              strcmp(cl->nodes[i].name, cl->self) != 0 &&
              same_host(host, &cl->nodes[i].sa);
    pthread_mutex_unlock(&cl->lock);
    return yes;
}

static bool
same_addr(const struct sockaddr *a, const struct sockaddr_storage *b)
{
    if (!same_host(a, b))
        return false;
    if (a->sa_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_port ==
               ((const struct sockaddr_in *)b)->sin_port;
    return ((const struct sockaddr_in6 *)a)->sin6_port ==
           ((const struct sockaddr_in6 *)b)->sin6_port;
}

/* The node of the nodes cache (or, unknown there, of the early ones)
 * named node, or else whose advertised address is addr. Under cl->lock. */
static const struct node *
peer_find(const struct cluster *cl, const char *node,
          const struct sockaddr *addr)
{
    if (node) {
        const struct node *x = find_node(cl->nodes, cl->count, node);
        return x ? x : find_node(cl->early, cl->early_n, node);
    }
    for (int pass = 0; pass < 2; pass++) {
        const struct node *v = pass ? cl->early : cl->nodes;
        size_t n = pass ? cl->early_n : cl->count;
        for (size_t i = 0; i < n; i++)
            if (v[i].hostport[0] && same_addr(addr, &v[i].sa))
                return &v[i];
    }
    return NULL;
}

bool
cluster_peer_advertise(const char *node, const struct sockaddr *addr,
                       char *uri, size_t cap, void *arg)
{
    struct cluster *cl = arg;
    bool ok = false;

    if (!cl || (!node && !addr) || !cap)
        return false;
    pthread_mutex_lock(&cl->lock);
    const struct node *x = peer_find(cl, node, addr);
    if (x && x->alive && x->hostport[0] && strcmp(x->name, cl->self) != 0 &&
        strlen(x->advertise) < cap) {
        snprintf(uri, cap, "%s", x->advertise);
        ok = true;
    }
    pthread_mutex_unlock(&cl->lock);
    return ok;
}

/* Keep x (read by node_hostport) until the next reload of the nodes. */
static void
early_add(struct cluster *cl, const struct node *x)
{
    struct node *o = NULL;

    pthread_mutex_lock(&cl->lock);
    for (size_t i = 0; i < cl->early_n && !o; i++)
        if (strcmp(cl->early[i].name, x->name) == 0)
            o = &cl->early[i];
    if (!o) {
        cl->early = xrealloc(cl->early, (cl->early_n + 1) * sizeof(*o));
        o = &cl->early[cl->early_n++];
    }
    *o = *x;
    pthread_mutex_unlock(&cl->lock);
}

/* Where a binding row of node goes: its node's "ip:port" when alive.
 * A node the cache does not know as alive yet (it started within the
 * last tick, and a phone registered there at once) is read from the store
 * here: the cache itself (and the up/down transitions) stay the tick's,
 * but its row is kept among the early ones until then, so that a call
 * for that phone goes over its advertise URI's transport
 * (cluster_peer_advertise) and not over UDP. */
static bool
node_hostport(struct cluster *cl, const char *node, char *out, size_t cap)
{
    bool ok = false;

    pthread_mutex_lock(&cl->lock);
    const struct node *x = peer_find(cl, node, NULL);
    if (x && x->alive && x->hostport[0]) {
        snprintf(out, cap, "%s", x->hostport);
        ok = true;
    }
    bool known = x != NULL;
    pthread_mutex_unlock(&cl->lock);
    if (ok || known)
        return ok; /* known and dead: its bindings are ignored */
    struct node_vec nv = {.cl = cl, .now = now_s(cl)};
    if (store_node_load(cl->st, load_node, &nv) == 0) {
        x = find_node(nv.v, nv.n, node);
        if (x && x->alive && x->hostport[0]) {
            snprintf(out, cap, "%s", x->hostport);
            ok = true;
            early_add(cl, x);
        }
    }
    free(nv.v);
    return ok;
}

/* ---- rows read from the store (copies) -------------------------------- */

struct rows {
    struct store_binding *b;
    size_t nb, capb;
    struct store_pushdev *d;
    size_t nd, capd;
    struct store_ext e;
    bool has_ext;
};

static char *
copy(const char *s)
{
    return xstrdup(s ? s : "");
}

static int
take_binding(const struct store_binding *in, void *arg)
{
    struct rows *r = arg;
    if (r->nb == r->capb) {
        r->capb = r->capb ? 2 * r->capb : 16;
        r->b = xrealloc(r->b, r->capb * sizeof(*r->b));
    }
    struct store_binding *o = &r->b[r->nb++];
    *o = *in;
    o->ext = copy(in->ext);
    o->key = copy(in->key);
    o->uri = copy(in->uri);
    o->params = copy(in->params);
    o->instance = copy(in->instance);
    o->call_id = copy(in->call_id);
    o->path = copy(in->path);
    o->source = copy(in->source);
    o->user_agent = copy(in->user_agent);
    o->node = copy(in->node);
    return 0;
}

static int
take_pushdev(const struct store_pushdev *in, void *arg)
{
    struct rows *r = arg;
    if (r->nd == r->capd) {
        r->capd = r->capd ? 2 * r->capd : 16;
        r->d = xrealloc(r->d, r->capd * sizeof(*r->d));
    }
    struct store_pushdev *o = &r->d[r->nd++];
    *o = *in;
    o->ext = copy(in->ext);
    o->provider = copy(in->provider);
    o->prid = copy(in->prid);
    o->param = copy(in->param);
    o->instance = copy(in->instance);
    return 0;
}

static int
take_ext(const struct store_ext *in, void *arg)
{
    struct rows *r = arg;
    r->e = *in;
    r->e.number = copy(in->number);
    r->e.display = copy(in->display);
    r->e.realm = copy(in->realm);
    r->e.ha1_md5 = copy(in->ha1_md5);
    r->e.ha1_sha256 = copy(in->ha1_sha256);
    r->has_ext = true;
    return 0;
}

/* The rows' strings are const for the callee, ours to free here. */
static void
sfree(const char *p)
{
    free((void *)p);
}

static void
rows_free(struct rows *r)
{
    for (size_t i = 0; i < r->nb; i++) {
        struct store_binding *o = &r->b[i];
        sfree(o->ext);
        sfree(o->key);
        sfree(o->uri);
        sfree(o->params);
        sfree(o->instance);
        sfree(o->call_id);
        sfree(o->path);
        sfree(o->source);
        sfree(o->user_agent);
        sfree(o->node);
    }
    for (size_t i = 0; i < r->nd; i++) {
        struct store_pushdev *o = &r->d[i];
        sfree(o->ext);
        sfree(o->provider);
        sfree(o->prid);
        sfree(o->param);
        sfree(o->instance);
    }
    if (r->has_ext) {
        sfree(r->e.number);
        sfree(r->e.display);
        sfree(r->e.realm);
        sfree(r->e.ha1_md5);
        sfree(r->e.ha1_sha256);
    }
    free(r->b);
    free(r->d);
    memset(r, 0, sizeof(*r));
}

/* Point each row of another node at that node (UDP to its advertised
 * address: it holds the flow); rows of dead or unknown nodes get node ""
 * so reg_remote_set skips them. */
static void
route_rows(struct cluster *cl, struct store_binding *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char hp[64];
        if (!v[i].node[0] || strcmp(v[i].node, cl->self) == 0)
            continue;
        if (!node_hostport(cl, v[i].node, hp, sizeof(hp))) {
            sfree(v[i].node);
            v[i].node = copy("");
            continue;
        }
        sfree(v[i].source);
        v[i].source = copy(hp);
        v[i].transport = 0; /* REG_TP_UDP: node to node */
        v[i].flow_id = 0;
    }
}

/* ---- applying changes -------------------------------------------------- */

/* Stored messages another node wrote or removed for ext (NULL: every
 * extension): the message index follows the table (a REGISTER here then
 * delivers them as if stored here). Also when the extension is gone: its
 * rows went with it. */
static void
refresh_messages(struct cluster *cl, const char *ext)
{
    struct reg_msg_table *mt = reg_messages(cl->reg);
    if (!mt)
        return;
    int n = reg_msg_refresh(mt, ext);
    if (n < 0)
        log_warn("cluster", "cannot read the stored messages of %s: %s",
                 ext ? ext : "every extension", strerror(-n));
    else if (n > 0)
        log_debug("cluster", "stored messages of %s from another node: %d",
                  ext ? ext : "every extension", n);
}

/* Read ext again and apply it. Returns true when it is gone (no row:
 * forgotten here, with its bindings and push devices). The provisioning
 * link is not the registrar's: on_change passes ext to cl->changed. */
static bool
apply_ext(struct cluster *cl, const char *ext)
{
    struct rows r = {0};
    int rc = store_ext_read(cl->st, ext, now_s(cl), take_ext, take_binding,
                            take_pushdev, &r);
    refresh_messages(cl, ext);
    if (rc == -ENOENT) {
        if (reg_ext_forget(cl->reg, ext) == 0)
            log_info("cluster", "extension %s removed by another node", ext);
        if (cl->devices)
            (void)pushdev_replace_ext(cl->devices, ext, NULL, 0);
        rows_free(&r);
        return true;
    }
    if (rc < 0) {
        log_warn("cluster", "cannot read extension %s: %s", ext,
                 strerror(-rc));
        rows_free(&r);
        return false;
    }
    if (r.has_ext)
        (void)reg_ext_apply(cl->reg, &r.e);
    route_rows(cl, r.b, r.nb);
    int added = reg_remote_set(cl->reg, ext, r.b, r.nb);
    if (cl->devices)
        (void)pushdev_replace_ext(cl->devices, ext, r.d, r.nd);
    if (added > 0 && cl->added)
        cl->added(ext, cl->arg);
    log_debug("cluster", "extension %s applied: bindings=%zu new=%d devices=%zu",
              ext, r.nb, added, r.nd);
    rows_free(&r);
    return false;
}

struct names {
    char **v;
    size_t n, cap;
};

/* How long a resynchronisation waits for this node's own queued writes
 * before it reads the extensions (they must be in the read). */
#define RESYNC_COMMIT_MS 2000

static void
collect_name(const char *ext, const char *display, bool enabled,
             const struct reg_contact *c, size_t count, void *arg)
{
    struct names *nm = arg;
    (void)display;
    (void)enabled;
    (void)c;
    (void)count;
    if (nm->n == nm->cap) {
        nm->cap = nm->cap ? 2 * nm->cap : 64;
        nm->v = xrealloc(nm->v, nm->cap * sizeof(*nm->v));
    }
    nm->v[nm->n++] = xstrdup(ext);
}

static int
cmp_binding(const void *a, const void *b)
{
    return strcmp(((const struct store_binding *)a)->ext,
                  ((const struct store_binding *)b)->ext);
}

static int
cmp_pushdev(const void *a, const void *b)
{
    return strcmp(((const struct store_pushdev *)a)->ext,
                  ((const struct store_pushdev *)b)->ext);
}

static int
cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
names_free(struct names *nm)
{
    for (size_t i = 0; i < nm->n; i++)
        free(nm->v[i]);
    free(nm->v);
    memset(nm, 0, sizeof(*nm));
}

/* store_ext_load's callback of resync: apply the row, note its number. */
struct ext_rows {
    struct cluster *cl;
    struct names seen;
};

static int
apply_ext_row(const struct store_ext *e, void *arg)
{
    struct ext_rows *x = arg;
    (void)reg_ext_apply(x->cl->reg, e);
    collect_name(e->number, NULL, false, NULL, 0, &x->seen);
    return 0;
}

/* The extensions of before (this node's memory before the read) that the
 * read did not return: deleted by another node while no notification
 * could tell us. Each is read once more (apply_ext: -ENOENT forgets it,
 * its bindings and push devices; a row that is there after all is
 * applied). Only memory from before the read is candidate, and this
 * node's own queued writes were committed before the read, so an
 * extension created here (memory first, then the commit) is never taken
 * for a deleted one. Returns how many were forgotten. */
static size_t
forget_deleted(struct cluster *cl, struct names *before, struct names *seen)
{
    size_t gone = 0;

    if (seen->n)
        qsort(seen->v, seen->n, sizeof(*seen->v), cmp_name);
    for (size_t i = 0; i < before->n; i++) {
        const char *ext = before->v[i];
        if (seen->n && bsearch(&ext, seen->v, seen->n, sizeof(*seen->v),
                               cmp_name))
            continue;
        gone += apply_ext(cl, ext) ? 1 : 0;
    }
    return gone;
}

/* The start of a resynchronisation: the extensions in memory now (into
 * before) and the store's queue position. An extension created here is
 * in memory before its row is committed: its write is queued before the
 * mark, and resync_from waits for the mark before it reads. */
static struct store_mark
resync_note(struct cluster *cl, struct names *before)
{
    reg_list(cl->reg, collect_name, before);
    return store_mark(cl->st);
}

/* Everything again: every extension row (an extension of before that the
 * read does not return was deleted by another node), then each
 * extension's remote bindings and push devices. Frees before. Under
 * cl->apply. */
static void
resync_from(struct cluster *cl, struct names *before, struct store_mark mark)
{
    struct rows r = {0};
    struct names nm = {0};
    struct ext_rows er = {.cl = cl};

    int crc = store_commit(cl->st, mark, RESYNC_COMMIT_MS);
    int rc = store_ext_load(cl->st, apply_ext_row, &er);
    size_t gone = 0;
    if (rc == 0 && crc == 0)
        gone = forget_deleted(cl, before, &er.seen);
    else if (rc == 0)
        log_warn("cluster", "resynchronisation: this node's writes not "
                            "committed (%s): deleted extensions kept until "
                            "the next one", strerror(-crc));
    names_free(before);
    names_free(&er.seen);
    if (rc == 0)
        rc = store_binding_load(cl->st, now_s(cl), take_binding, &r);
    if (rc == 0 && cl->devices)
        rc = store_pushdev_load(cl->st, 0, take_pushdev, &r);
    if (rc < 0) {
        log_warn("cluster", "resynchronisation failed: %s", strerror(-rc));
        rows_free(&r);
        return;
    }
    refresh_messages(cl, NULL);
    route_rows(cl, r.b, r.nb);
    if (r.nb)
        qsort(r.b, r.nb, sizeof(*r.b), cmp_binding);
    if (r.nd)
        qsort(r.d, r.nd, sizeof(*r.d), cmp_pushdev);
    reg_list(cl->reg, collect_name, &nm);
    size_t remote = 0;
    for (size_t i = 0; i < nm.n; i++) {
        const char *ext = nm.v[i];
        size_t lo = 0, hi = r.nb;
        while (lo < hi) { /* first row of ext */
            size_t mid = (lo + hi) / 2;
            if (strcmp(r.b[mid].ext, ext) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        size_t end = lo;
        while (end < r.nb && strcmp(r.b[end].ext, ext) == 0)
            end++;
        int added = reg_remote_set(cl->reg, ext, r.nb ? r.b + lo : NULL,
                                   end - lo);
        if (added > 0 && cl->added)
            cl->added(ext, cl->arg);
        remote += end - lo;
        if (cl->devices) {
            size_t dl = 0, dh = r.nd;
            while (dl < dh) {
                size_t mid = (dl + dh) / 2;
                if (strcmp(r.d[mid].ext, ext) < 0)
                    dl = mid + 1;
                else
                    dh = mid;
            }
            size_t de = dl;
            while (de < r.nd && strcmp(r.d[de].ext, ext) == 0)
                de++;
            (void)pushdev_replace_ext(cl->devices, ext,
                                      r.nd ? r.d + dl : NULL, de - dl);
        }
    }
    log_notice("cluster", "resynchronised: extensions=%zu binding rows=%zu "
                          "push devices=%zu deleted extensions=%zu",
               nm.n, remote, r.nd, gone);
    if (cl->changed)
        cl->changed(NULL, cl->arg); /* provisioning links */
    names_free(&nm);
    rows_free(&r);
}

static void
resync(struct cluster *cl)
{
    struct names before = {0};
    struct store_mark m = resync_note(cl, &before);
    resync_from(cl, &before, m);
}

/* store_binding_load's callback of repair_own: (ext, key) of this node's
 * rows, whatever their expiry (the other nodes route to a row until it is
 * deleted). */
struct own_rows {
    const char *self;
    struct names ext, key;
};

static int
take_own(const struct store_binding *b, void *arg)
{
    struct own_rows *o = arg;
    if (strcmp(b->node, o->self) == 0) {
        collect_name(b->ext, NULL, false, NULL, 0, &o->ext);
        collect_name(b->key, NULL, false, NULL, 0, &o->key);
    }
    return 0;
}

/* The store's writer committed again after failed batches: the writes of
 * those batches were rolled back. Memory is authoritative for this node's
 * bindings: each one is written again (a REGISTER answered 200 meanwhile),
 * and each row of this node that memory no longer has (an Expires: 0 or
 * an expiry whose delete was lost) is deleted, which notifies the other
 * nodes, who drop their copy. One pass, nothing removed and added back: a
 * live binding's row is only ever rewritten. false: the rows could not be
 * read (retried at the next tick). O(rows), rare. */
static bool
repair_own(struct cluster *cl)
{
    struct own_rows o = {.self = cl->self};
    int rc = store_binding_load(cl->st, INT64_MIN, take_own, &o);
    if (rc < 0) {
        log_warn("cluster", "cannot read this node's bindings to repair "
                            "them: %s", strerror(-rc));
    } else {
        size_t put = reg_persist_local(cl->reg), gone = 0;
        for (size_t i = 0; i < o.ext.n; i++)
            gone += reg_drop_unheld(cl->reg, o.ext.v[i], o.key.v[i]) ? 1 : 0;
        log_notice("cluster", "store writes again: %zu binding%s of this "
                              "node written again, %zu row%s it no longer "
                              "holds deleted",
                   put, put == 1 ? "" : "s", gone, gone == 1 ? "" : "s");
    }
    names_free(&o.ext);
    names_free(&o.key);
    return rc == 0;
}

static void
on_change(const char *ext, const char *origin, void *arg)
{
    struct cluster *cl = arg;

    pthread_mutex_lock(&cl->apply);
    if (cl->stopped) {
        /* the registrar may be gone already */
    } else if (!ext) {
        /* A reconnect (not the first connect): the database was away.
         * This node's own rows are the writer's to repair (repair_own,
         * when its batches commit again after failing). */
        struct names before = {0};
        struct store_mark m = resync_note(cl, &before);
        if (cl->listens++ > 0)
            log_notice("cluster", "listener reconnected: resynchronising");
        resync_from(cl, &before, m);
    } else if (reg_ext_number_valid(ext)) {
        log_debug("cluster", "change of extension %s by node %s", ext,
                  origin ? origin : "?");
        (void)apply_ext(cl, ext);
        if (cl->changed)
            cl->changed(ext, cl->arg);
    }
    pthread_mutex_unlock(&cl->apply);
}

/* ---- life cycle --------------------------------------------------------- */

int
cluster_open(const struct cluster_opts *o, struct cluster **out, char *err,
             size_t errlen)
{
    if (!o->cfg || !o->cfg->node[0] || !o->store || !o->reg) {
        snprintf(err, errlen, "cluster: no node name, store or registrar");
        return -EINVAL;
    }
    struct cluster *cl = xcalloc(1, sizeof(*cl));
    snprintf(cl->self, sizeof(cl->self), "%s", o->cfg->node);
    snprintf(cl->advertise, sizeof(cl->advertise), "%s", o->cfg->advertise);
    cl->timeout_s = o->cfg->node_timeout_s;
    cl->st = o->store;
    cl->reg = o->reg;
    cl->devices = o->devices;
    cl->added = o->bindings_added;
    cl->down = o->node_down;
    cl->changed = o->changed;
    cl->arg = o->arg;
    cl->clock_s = o->clock_s;
    cl->clock_arg = o->clock_arg;
    cl->started_at = now_s(cl);
    pthread_mutex_init(&cl->lock, NULL);
    pthread_mutex_init(&cl->apply, NULL);

    beat(cl, cl->started_at);
    (void)store_sync(cl->st); /* our row (and our own writes) first */
    struct store_stats ss;
    store_get_stats(cl->st, &ss);
    cl->recoveries = ss.recoveries;
    bool revived;
    int rc = reload_nodes(cl, &revived);
    if (rc < 0) {
        snprintf(err, errlen, "cluster: cannot read the nodes: %s",
                 strerror(-rc));
        cluster_close(cl);
        return rc;
    }
    pthread_mutex_lock(&cl->apply);
    resync(cl);
    pthread_mutex_unlock(&cl->apply);
    rc = store_watch(cl->st, on_change, cl);
    if (rc < 0) {
        snprintf(err, errlen, "cluster: cannot listen for changes: %s",
                 strerror(-rc));
        cluster_close(cl);
        return rc;
    }
    log_notice("cluster", "node %s (%s) joined: %zu node%s known", cl->self,
               cl->advertise, cl->count, cl->count == 1 ? "" : "s");
    *out = cl;
    return 0;
}

void
cluster_stop(struct cluster *cl)
{
    if (!cl)
        return;
    pthread_mutex_lock(&cl->apply); /* waits for a running handler */
    cl->stopped = true;
    pthread_mutex_unlock(&cl->apply);
}

void
cluster_close(struct cluster *cl)
{
    if (!cl)
        return;
    free(cl->nodes);
    free(cl->early);
    pthread_mutex_destroy(&cl->lock);
    pthread_mutex_destroy(&cl->apply);
    free(cl);
}

void
cluster_tick(struct cluster *cl)
{
    if (!cl)
        return;
    beat(cl, now_s(cl));
    struct store_stats ss;
    store_get_stats(cl->st, &ss);
    if (ss.recoveries != cl->recoveries && repair_own(cl))
        cl->recoveries = ss.recoveries;
    bool revived = false;
    int rc = reload_nodes(cl, &revived);
    if (rc < 0) {
        log_warn("cluster", "cannot read the nodes: %s", strerror(-rc));
        return;
    }
    if (revived) {
        /* Its bindings were ignored (or never seen): read them again. */
        pthread_mutex_lock(&cl->apply);
        resync(cl);
        pthread_mutex_unlock(&cl->apply);
    }
}

void
cluster_set_calls(struct cluster *cl, cluster_calls_fn *fn, void *arg)
{
    if (!cl)
        return;
    pthread_mutex_lock(&cl->lock);
    cl->calls_fn = fn;
    cl->calls_arg = arg;
    pthread_mutex_unlock(&cl->lock);
}

const char *
cluster_self(const struct cluster *cl)
{
    return cl->self;
}

static int
cmp_info(const void *a, const void *b)
{
    const struct cluster_node_info *x = a, *y = b;
    if (x->self != y->self)
        return x->self ? -1 : 1;
    return strcmp(x->name, y->name);
}

size_t
cluster_nodes(struct cluster *cl, struct cluster_node_info *out, size_t cap)
{
    pthread_mutex_lock(&cl->lock);
    size_t n = cl->count;
    struct cluster_node_info *v = xcalloc(n ? n : 1, sizeof(*v));
    for (size_t i = 0; i < n; i++) {
        const struct node *x = &cl->nodes[i];
        snprintf(v[i].name, sizeof(v[i].name), "%s", x->name);
        snprintf(v[i].advertise, sizeof(v[i].advertise), "%s", x->advertise);
        v[i].self = strcmp(x->name, cl->self) == 0;
        v[i].alive = x->alive;
        v[i].started_at = x->started_at;
        v[i].last_seen = x->last_seen;
        v[i].calls = x->alive ? x->calls : -1;
    }
    pthread_mutex_unlock(&cl->lock);
    int64_t mine = calls_now(cl);
    for (size_t i = 0; i < n; i++) {
        v[i].bindings = reg_count_node(cl->reg, v[i].self ? "" : v[i].name);
        if (v[i].self)
            v[i].calls = mine; /* fresher than our heartbeat */
    }
    qsort(v, n, sizeof(*v), cmp_info);
    memcpy(out, v, (n < cap ? n : cap) * sizeof(*v));
    free(v);
    return n;
}
