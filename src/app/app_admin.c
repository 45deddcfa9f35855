/*
 * app/app_admin: wiring of the admin server into the daemon (see
 * app_admin.h).
 *
 * The admin takes one struct admin_sources with one arg. app_wake fills
 * one for its push devices, recent pushes and wake-ups; this file keeps
 * that one aside and hands the admin its own, which forwards to wake's
 * callbacks and adds recent calls (the store's call_records), call and
 * SIP method counters, the test push and the push check. One daemon per process, so
 * the state is a file-static struct (set on the main thread before the
 * admin thread starts, read-only afterwards except the atomic counters).
 */
#include "app/app_admin.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <uv.h>

#include "admin/admin.h"
#include "app/app_cfg.h"
#include "app/app_wake.h"
#include "app/worker.h"
#include "base/log.h"
#include "base/xmalloc.h"
#include "cluster/cluster.h"
#include "cluster/cluster_cfg.h"
#include "media/client.h"
#include "media/media_lat.h"
#include "proxy/proxy.h"
#include "proxy/proxy_cfg.h"
#include "push/push.h"
#include "push/push_cfg.h"
#include "registrar/reg.h"
#include "registrar/reg_cfg.h"
#include "store/store.h"
#include "store/store_cfg.h"
#include "transport/tp.h"

/* The admin shows at most this many finished calls, newest first, of
 * every node (table call_records: [proxy] call_records rows per node). */
#define APP_ADMIN_CALLS_MAX 1000
/* A probe or test push: per-attempt timeout, attempts, and deadline. The
 * admin's job thread and the HTTP client wait for it, so all three are
 * small. */
#define PROBE_TIMEOUT_MS 5000u
#define PROBE_ATTEMPTS 2u
#define PROBE_DEADLINE_S 12

static struct app_admin {
    const struct cfg *cfg;
    struct proxy_shared *proxy;
    struct worker *workers;
    unsigned worker_count;
    struct app_wake *app_wake;
    struct admin_sources wake; /* app_wake's providers, forwarded */
    struct store *store;       /* admin writes commit through it */
    struct media_relays *relays; /* [media] rtpengines; may be NULL */
    struct cluster *cluster;     /* [cluster]; NULL for a single node */
    struct reg *reg;
    unsigned call_keep; /* [proxy] call_records: rows kept per node */
    _Atomic uint64_t calls_started, calls_ended, calls_answered;
    char fcm_project[128], fcm_sender[64];
} the;

/* ---- call counters (proxy observer, on the workers) ------------------ */

static bool
on_call_started(const struct proxy_call_info *info, void *arg)
{
    atomic_fetch_add_explicit(&the.calls_started, 1, memory_order_relaxed);
    return false; /* no opinion on holding the call */
}

/* The record as a call_records row, queued (one op: no I/O on the
 * worker). Written again when its media figures come (the same key: an
 * upsert). */
static void
store_record(const struct proxy_call_record *rec)
{
    struct store_call c = {
        .call_id = rec->call_id,
        .caller = rec->caller,
        .callee = rec->callee,
        .outcome = proxy_outcome_name(rec->outcome),
        .status = rec->status,
        .answered_by = rec->answered_by,
        .branches = rec->branches,
        .started_ms = rec->started_ms,
        .ringing_ms = rec->ringing_ms,
        .ended_ms = rec->ended_ms,
        .media = rec->media,
        .media_stats = rec->media_stats,
        .media_one_way = rec->media_one_way,
        .media_none = rec->media_none,
    };

    if (!the.store)
        return;
    for (int l = 0; l < 2; l++)
        c.leg[l] = (struct store_call_leg){
            .packets = rec->leg[l].packets,
            .bytes = rec->leg[l].bytes,
            .lost = rec->leg[l].lost,
            .jitter = rec->leg[l].jitter,
            .has_lost = rec->leg[l].has_lost,
            .has_jitter = rec->leg[l].has_jitter,
        };
    if (store_call_put(the.store, &c, the.call_keep) == -ENOSPC)
        log_warn("app", "call record %s not stored: store queue full",
                 rec->call_id);
}

static void
on_call_ended(const struct proxy_call_record *rec, void *arg)
{
    atomic_fetch_add_explicit(&the.calls_ended, 1, memory_order_relaxed);
    if (rec->outcome == PROXY_OUT_ANSWERED)
        atomic_fetch_add_explicit(&the.calls_answered, 1, memory_order_relaxed);
    store_record(rec);
}

static void
on_call_media(const struct proxy_call_record *rec, void *arg)
{
    store_record(rec);
}

int
app_admin_attach(struct proxy_shared *sh)
{
    static const struct proxy_observer obs = {
        .call_started = on_call_started,
        .call_ended = on_call_ended,
        .call_media = on_call_media,
    };

    the.proxy = sh;
    if (!sh)
        return 0;
    int rc = proxy_observer_add(sh, &obs, NULL);
    if (rc < 0)
        log_warn("app", "admin: cannot observe calls, call counters stay 0");
    return rc;
}

void
app_admin_media(struct media_relays *relays)
{
    the.relays = relays;
}

/* The calls up now (started, not ended). Any thread. */
static size_t
calls_active(void *arg)
{
    uint64_t st = atomic_load(&the.calls_started);
    uint64_t en = atomic_load(&the.calls_ended);

    (void)arg;
    return (size_t)(st > en ? st - en : 0);
}

void
app_admin_cluster(struct cluster *cl)
{
    the.cluster = cl;
    cluster_set_calls(cl, calls_active, NULL); /* into the heartbeat */
}

/* The admin the change feed reaches (set once it runs, in a cluster);
 * the lock orders a change against that moment. main.c stops the
 * cluster's handler before the admin. */
static pthread_mutex_t changed_lock = PTHREAD_MUTEX_INITIALIZER;
static struct admin *changed_admin;

void
app_admin_cluster_changed(const char *ext, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&changed_lock);
    admin_prov_changed(changed_admin, ext); /* NULL: not yet */
    pthread_mutex_unlock(&changed_lock);
}

/* GET /api/nodes: the nodes of the cluster (this one first), or this
 * node alone when it is not in a cluster. Calls: this node's now, another
 * node's as of its last heartbeat (at most a second old), null for a node
 * that is down. */
static int
list_nodes(void *arg, json_t *items)
{
    json_int_t calls = (json_int_t)calls_active(NULL);

    (void)arg;
    if (!the.cluster) {
        struct reg_stats rs;
        reg_get_stats(the.reg, &rs);
        json_array_append_new(
            items, json_pack("{s:s, s:s, s:b, s:b, s:I, s:I, s:I, s:I}",
                             "name", "", "advertise", "", "self", 1, "alive",
                             1, "started_at", (json_int_t)0, "last_seen",
                             (json_int_t)time(NULL), "bindings",
                             (json_int_t)rs.bindings, "calls", calls));
        return 0;
    }
    struct cluster_node_info v[64];
    size_t n = cluster_nodes(the.cluster, v, 64);
    for (size_t i = 0; i < n && i < 64; i++)
        json_array_append_new(
            items,
            json_pack("{s:s, s:s, s:b, s:b, s:I, s:I, s:I, s:o}", "name",
                      v[i].name, "advertise", v[i].advertise, "self",
                      v[i].self, "alive", v[i].alive, "started_at",
                      (json_int_t)v[i].started_at, "last_seen",
                      (json_int_t)v[i].last_seen, "bindings",
                      (json_int_t)v[i].bindings, "calls",
                      v[i].calls >= 0 ? json_integer((json_int_t)v[i].calls)
                                      : json_null()));
    return 0;
}

/* GET /api/media: one item per rtpengine. */
static int
list_media(void *arg, json_t *items)
{
    size_t n = media_relays_count(the.relays);

    (void)arg;
    for (size_t i = 0; i < n; i++) {
        struct media_relay_status s;
        media_relays_status(the.relays, i, &s);
        json_array_append_new(
            items,
            json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:s}", "relay", s.addr,
                      "state", s.up ? "up" : "down", "requests",
                      (json_int_t)s.requests, "answers", (json_int_t)s.answers,
                      "errors", (json_int_t)s.errors, "timeouts",
                      (json_int_t)s.timeouts, "last_error", s.last_error));
    }
    return 0;
}

static void
media_counters(struct admin_counters *out)
{
    size_t n = the.relays ? media_relays_count(the.relays) : 0;

    for (size_t i = 0; i < n && i < ADMIN_MEDIA_RELAYS; i++) {
        struct media_relay_status s;
        struct admin_media_relay *o = &out->media_relay[i];
        media_relays_status(the.relays, i, &s);
        snprintf(o->addr, sizeof(o->addr), "%s", s.addr);
        o->up = s.up;
        o->requests = s.requests;
        o->timeouts = s.timeouts;
        o->errors = s.errors;
        out->media_relay_count = i + 1;
    }
    if (!the.proxy)
        return;
    out->media_calls = proxy_media_count(the.proxy, PROXY_MEDIA_CALLS);
    out->media_one_way = proxy_media_count(the.proxy, PROXY_MEDIA_ONE_WAY);
    out->media_no_media = proxy_media_count(the.proxy, PROXY_MEDIA_NO_MEDIA);
    out->media_failed = proxy_media_count(the.proxy, PROXY_MEDIA_FAILED);
    out->media_passed = proxy_media_count(the.proxy, PROXY_MEDIA_PASSED);
    out->media_rejected = proxy_media_count(the.proxy, PROXY_MEDIA_REJECTED);
}

/* ---- forwarding to app_wake's providers ------------------------------- */

static int
fwd_pushes(void *arg, json_t *items)
{
    return the.wake.list_pushes(the.wake.arg, items);
}

static int
fwd_wakeups(void *arg, json_t *items)
{
    return the.wake.list_wakeups(the.wake.arg, items);
}

static int
fwd_devices(void *arg, json_t *items)
{
    return the.wake.list_devices(the.wake.arg, items);
}

static int
fwd_ext_devices(void *arg, const char *ext, json_t *items)
{
    (void)arg;
    return the.wake.list_ext_devices(the.wake.arg, ext, items);
}

static int
fwd_device_del(void *arg, const char *ext, const char *id)
{
    return the.wake.device_del(the.wake.arg, ext, id);
}

/* ---- recent calls -------------------------------------------------------- */

/* One row of the store as an /api/calls item. */
static int
call_item(const struct store_call *c, void *arg)
{
    json_t *items = arg;
    char who[PROXY_REC_URI_MAX], result[48];

    /* the Contact of the answering binding may carry a push token */
    admin_redact_uri(c->answered_by, who, sizeof(who));
    snprintf(result, sizeof(result), "%s %d", c->outcome, c->status);
    json_t *media = json_null();
    if (c->media) {
        /* leg[0]: what rtpengine got from the caller, [1] the callee */
        media = json_pack(
            "{s:b, s:s, s:I, s:I, s:I, s:I}", "stats", c->media_stats, "flag",
            !c->media_stats     ? ""
            : c->media_none     ? "no media"
            : c->media_one_way ? "one-way audio"
                                : "",
            "caller_packets", (json_int_t)c->leg[0].packets, "caller_bytes",
            (json_int_t)c->leg[0].bytes, "callee_packets",
            (json_int_t)c->leg[1].packets, "callee_bytes",
            (json_int_t)c->leg[1].bytes);
        for (int l = 0; l < 2; l++) {
            const char *side = l ? "callee" : "caller";
            char k[32];
            if (c->leg[l].has_lost) {
                snprintf(k, sizeof(k), "%s_lost", side);
                json_object_set_new(media, k,
                                    json_integer((json_int_t)c->leg[l].lost));
            }
            if (c->leg[l].has_jitter) {
                snprintf(k, sizeof(k), "%s_jitter", side);
                json_object_set_new(
                    media, k, json_integer((json_int_t)c->leg[l].jitter));
            }
        }
    }
    json_t *item = json_pack(
        "{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:i,"
        " s:I, s:I, s:I, s:I}",
        "id", (json_int_t)c->id, "node", c->node, "call_id", c->call_id,
        "from", c->caller, "to", c->callee, "state", "ended", "outcome",
        c->outcome, "status", c->status, "result", result, "answered_by", who,
        "branches", (int)c->branches, "started_at",
        (json_int_t)(c->started_ms / 1000), "ended_at",
        (json_int_t)(c->ended_ms / 1000), "ringing_ms",
        (json_int_t)(c->ringing_ms ? c->ringing_ms - c->started_ms : 0),
        "duration_ms", (json_int_t)(c->ended_ms - c->started_ms));
    if (!item) { /* a string that is not UTF-8: skip the row */
        json_decref(media);
        return 0;
    }
    json_object_set_new(item, "media", media);
    json_array_append_new(items, item);
    return 0;
}

/* GET /api/calls: the newest calls of every node, from the store (table
 * call_records), so any node of a cluster lists them all. */
static int
list_calls(void *arg, json_t *items)
{
    (void)arg;
    if (!the.store)
        return 0;
    int rc = store_call_load(the.store, APP_ADMIN_CALLS_MAX, call_item, items);
    return rc < 0 ? rc : 0;
}

/* ---- counters ------------------------------------------------------------ */

static enum admin_sip_method
admin_method(int m)
{
    switch (m) {
    case SIP_METHOD_INVITE:
        return ADMIN_M_INVITE;
    case SIP_METHOD_ACK:
        return ADMIN_M_ACK;
    case SIP_METHOD_BYE:
        return ADMIN_M_BYE;
    case SIP_METHOD_CANCEL:
        return ADMIN_M_CANCEL;
    case SIP_METHOD_REGISTER:
        return ADMIN_M_REGISTER;
    case SIP_METHOD_OPTIONS:
        return ADMIN_M_OPTIONS;
    default:
        return ADMIN_M_OTHER;
    }
}

/* The wake-path latency samples: a source of their own (app_wake). */
static void
wake_latency(void *arg, bool exact, struct admin_wake_lat out[2])
{
    (void)arg;
    app_wake_latency(exact, out);
}

/* The set-up time media relay added (the proxy's media_lat). */
_Static_assert(ADMIN_MEDIA_BUCKETS == MEDIA_LAT_BUCKETS &&
                   (int)ADMIN_MEDIA_INTERVALS == (int)MEDIA_LAT_COUNT &&
                   (int)ADMIN_MEDIA_CALL == (int)MEDIA_LAT_CALL,
               "admin and media latency shapes differ");
static void
media_latency(void *arg, bool exact,
              struct admin_media_lat out[ADMIN_MEDIA_INTERVALS])
{
    (void)arg;
    for (int k = 0; k < MEDIA_LAT_COUNT; k++) {
        struct media_lat_stats st;
        struct admin_media_lat *o = &out[k];
        media_lat_get(proxy_media_lat(the.proxy), k, exact, &st);
        for (int i = 0; i < MEDIA_LAT_BUCKETS; i++) {
            o->bound_s[i] = media_lat_bounds_s[i];
            o->le[i] = st.le[i];
        }
        o->count = st.count;
        o->sum_s = st.sum_s;
        o->samples = st.samples;
        o->min_us = st.min_us;
        o->p50_us = st.p50_us;
        o->p90_us = st.p90_us;
        o->p99_us = st.p99_us;
        o->max_us = st.max_us;
        o->mean_us = st.mean_us;
    }
}

static void
counters(void *arg, struct admin_counters *out)
{
    if (the.wake.counters)
        the.wake.counters(the.wake.arg, out); /* push side */
    out->calls_total =
        atomic_load_explicit(&the.calls_started, memory_order_relaxed);
    out->calls_active = calls_active(NULL);
    out->calls_open = proxy_calls_open(the.proxy);
    out->calls_answered =
        atomic_load_explicit(&the.calls_answered, memory_order_relaxed);
    media_counters(out);
    for (int m = 0; m < CORE_METHODS; m++) {
        uint64_t v = 0;
        for (unsigned w = 0; w < the.worker_count; w++)
            v += core_method_count(&the.workers[w].core, m);
        out->sip_messages[admin_method(m)] += v;
    }
    out->workers = the.worker_count < ADMIN_MAX_WORKERS ? the.worker_count
                                                        : ADMIN_MAX_WORKERS;
    for (unsigned w = 0; w < out->workers; w++) {
        for (int m = 0; m < CORE_METHODS; m++)
            out->worker_requests[w] +=
                core_method_count(&the.workers[w].core, m);
        out->worker_udp_steered[w] = tp_group_steered(the.workers[w].group, w);
    }
}

/* ---- one-shot pushes (test push, push check) ----------------------------
 */

struct shot {
    bool done;
    enum push_status status;
    long http_status;
    char reason[160];
    unsigned attempts;
    uint64_t latency_us;
};

static void
shot_done(const struct push_result *r, void *arg)
{
    struct shot *s = arg;

    s->done = true;
    s->status = r->status;
    s->http_status = r->http_status;
    snprintf(s->reason, sizeof(s->reason), "%s", r->reason ? r->reason : "");
    s->attempts = r->attempts;
    s->latency_us = r->latency_us;
}

/* The daemon's push settings, made small enough for a thread that waits.
 * Strings point into cfg. */
static void
probe_conf(const struct cfg *cfg, struct push_conf *conf)
{
    push_cfg_conf(cfg_get(cfg, &push_apns_cfg_section),
                  cfg_get(cfg, &push_fcm_cfg_section),
                  cfg_get(cfg, &push_wake_cfg_section), conf);
    if (!conf->apns.timeout_ms || conf->apns.timeout_ms > PROBE_TIMEOUT_MS)
        conf->apns.timeout_ms = PROBE_TIMEOUT_MS;
    if (!conf->fcm.timeout_ms || conf->fcm.timeout_ms > PROBE_TIMEOUT_MS)
        conf->fcm.timeout_ms = PROBE_TIMEOUT_MS;
    conf->max_attempts = PROBE_ATTEMPTS;
    if (conf->backoff_initial_ms == 0 || conf->backoff_initial_ms > 500)
        conf->backoff_initial_ms = 250;
}

/* Send msgs[0..n) with a fresh client on a private loop and wait until
 * every one completed (the client guarantees completion: timeouts,
 * deadline). shots[i] gets message i's result; a message push_send
 * refused is marked done with status PUSH_FAILED and push_strerror as the
 * reason. Returns 0, or -EINVAL with the client's reason in err (bad key
 * file...). Any thread that owns no loop. */
static int
push_oneshot(const struct push_conf *conf, const struct push_msg *msgs,
             struct shot *shots, size_t n, char *err, size_t errlen)
{
    uv_loop_t loop;
    struct push_client *c;
    int rc = uv_loop_init(&loop);

    if (rc < 0) {
        snprintf(err, errlen, "uv_loop_init: %s", uv_strerror(rc));
        return -ENOMEM;
    }
    c = push_client_new(&loop, conf, err, errlen);
    if (!c) {
        uv_loop_close(&loop);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        shots[i] = (struct shot){0};
        rc = push_send(c, &msgs[i], shot_done, &shots[i]);
        if (rc < 0) {
            shots[i].done = true;
            shots[i].status = PUSH_FAILED;
            snprintf(shots[i].reason, sizeof(shots[i].reason), "%s",
                     push_strerror(rc));
        }
    }
    for (;;) {
        bool all = true;
        for (size_t i = 0; i < n; i++)
            all = all && shots[i].done;
        if (all || uv_run(&loop, UV_RUN_ONCE) == 0)
            break;
    }
    push_client_free(c); /* completes anything left as cancelled */
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return 0;
}

static void
random_call_id(const char *what, char *out, size_t cap)
{
    char hex[17];

    if (admin_random_hex(hex, 8) < 0)
        snprintf(hex, sizeof(hex), "%lx", (unsigned long)time(NULL));
    snprintf(out, cap, "pushpbx-%s-%s", what, hex);
}

/* ---- test push ------------------------------------------------------------
 */

/* A "missed" push from "pushpbx": it shows a notification and does not
 * ring (a "call" push would make the app start ringing for no call). */
static int
push_test(void *arg, const char *ext, json_t *result)
{
    json_t *all = json_array(), *d;
    size_t i, n = 0;

    if (!the.wake.list_devices || the.wake.list_devices(the.wake.arg, all)) {
        json_decref(all);
        return -EIO;
    }
    json_t *mine = json_array();
    json_array_foreach(all, i, d)
    {
        const char *e = json_string_value(json_object_get(d, "ext"));
        if (e && strcmp(e, ext) == 0)
            json_array_append(mine, d);
    }
    json_decref(all);
    n = json_array_size(mine);
    if (n == 0) {
        json_decref(mine);
        return -ENOENT;
    }
    struct push_msg *m = xcalloc(n, sizeof(*m));
    struct shot *s = xcalloc(n, sizeof(*s));
    char call_id[64], err[512];
    struct push_conf conf;

    random_call_id("test", call_id, sizeof(call_id));
    probe_conf(the.cfg, &conf);
    json_array_foreach(mine, i, d)
    {
        const char *prov = json_string_value(json_object_get(d, "provider"));
        const char *param = json_string_value(json_object_get(d, "param"));
        m[i] = (struct push_msg){
            .provider = prov && strcmp(prov, "fcm") == 0 ? PUSH_FCM : PUSH_APNS,
            .token = json_string_value(json_object_get(d, "token")),
            .param = param && param[0] ? param : NULL,
            .type = PUSH_MISSED,
            .call_id = call_id,
            .from = "pushpbx",
            .from_name = "pushpbx test push",
            .to = ext,
            .expires_at_s = (int64_t)time(NULL) + PROBE_DEADLINE_S,
        };
    }
    int rc = push_oneshot(&conf, m, s, n, err, sizeof(err));
    if (rc < 0) {
        json_object_set_new(result, "status", json_string("failed"));
        json_object_set_new(result, "reason", json_string(err));
        json_object_set_new(result, "devices", json_array());
    } else {
        json_t *devs = json_array();
        size_t delivered = 0;
        json_array_foreach(mine, i, d)
        {
            char pre[16];
            const char *id = json_string_value(json_object_get(d, "id"));
            snprintf(pre, sizeof(pre), "%.8s", m[i].token ? m[i].token : "");
            delivered += s[i].status == PUSH_DELIVERED;
            json_array_append_new(
                devs,
                json_pack("{s:s?, s:s, s:s, s:s, s:I, s:s, s:i, s:f}", "id", id,
                          "provider", push_provider_name(m[i].provider),
                          "token_prefix", pre, "status",
                          push_status_name(s[i].status), "http_status",
                          (json_int_t)s[i].http_status, "reason", s[i].reason,
                          "attempts", (int)s[i].attempts, "latency_ms",
                          (double)s[i].latency_us / 1000.0));
            /* A dead token means the app is gone: forget it, as a call's
             * push would. */
            if (s[i].status == PUSH_DEAD_TOKEN && id && the.wake.device_del)
                the.wake.device_del(the.wake.arg, ext, id);
        }
        json_object_set_new(result, "ext", json_string(ext));
        json_object_set_new(result, "call_id", json_string(call_id));
        json_object_set_new(result, "status",
                            json_string(delivered == n ? "delivered"
                                        : n == 1 ? push_status_name(s[0].status)
                                        : delivered ? "partly delivered"
                                                    : "failed"));
        json_object_set_new(result, "reason",
                            json_string(n == 1 ? s[0].reason : ""));
        json_object_set_new(result, "devices", devs);
    }
    log_notice("app", "test push ext=%s devices=%zu status=%s", ext, n,
               json_string_value(json_object_get(result, "status")));
    free(m);
    free(s);
    json_decref(mine);
    return 0;
}

/* ---- push check ----------------------------------------------------------
 */

/* What one provider's authenticated step found. */
struct check_res {
    const char *provider;
    char url[256];
    const char *step; /* "jwt", "certificate", "oauth", "push" */
    bool ok;
    long http_status;
    char reason[160];
    char detail[768];
};

static void
judge_apns(const struct push_apns_conf *a, const struct shot *s,
           struct check_res *r)
{
    bool cert = !a->key_file && a->cert_file;

    r->step = a->key_file ? "jwt" : "certificate";
    r->http_status = s->http_status;
    snprintf(r->reason, sizeof(r->reason), "%s", s->reason);
    if (s->status == PUSH_DELIVERED ||
        (s->http_status == 400 && strcmp(s->reason, "BadDeviceToken") == 0) ||
        s->http_status == 410) {
        r->ok = true;
        snprintf(r->detail, sizeof(r->detail),
                 "credentials accepted (HTTP %ld%s%s for the all-zero test "
                 "token)",
                 s->http_status, s->reason[0] ? " " : "", s->reason);
    } else if (s->http_status == 403) {
        snprintf(r->detail, sizeof(r->detail),
                 "APNs refused the credentials (HTTP 403 %s): check %s",
                 s->reason,
                 cert ? "cert_file" : "key_file, key_id and team_id");
    } else if (cert && strncmp(s->reason, "certificate refused", 19) == 0) {
        snprintf(r->detail, sizeof(r->detail),
                 "APNs refused the client certificate in the TLS handshake "
                 "(%s): check cert_file (Apple-issued, not expired or "
                 "revoked)",
                 s->reason);
    } else if (s->http_status == 400) {
        snprintf(r->detail, sizeof(r->detail),
                 "authenticated, but the request was refused (HTTP 400 %s): "
                 "check topic",
                 s->reason);
    } else if (s->http_status == 0) {
        snprintf(r->detail, sizeof(r->detail), "no answer from APNs: %s",
                 s->reason[0] ? s->reason : push_status_name(s->status));
    } else {
        snprintf(r->detail, sizeof(r->detail), "HTTP %ld %s", s->http_status,
                 s->reason);
    }
    if (cert) /* subject, topics, expiry: from src/push */
        push_apns_cert_note(a, r->detail, sizeof(r->detail));
}

static void
judge_fcm(const struct shot *s, struct check_res *r)
{
    r->http_status = s->http_status;
    snprintf(r->reason, sizeof(r->reason), "%s", s->reason);
    if (strncmp(s->reason, "oauth:", 6) == 0) {
        r->step = "oauth";
        snprintf(r->detail, sizeof(r->detail),
                 "no OAuth access token (%s): check service_account_file "
                 "and the route to its token_uri",
                 s->reason);
        return;
    }
    r->step = "push";
    if (s->status == PUSH_DELIVERED || s->http_status == 400 ||
        s->http_status == 404) {
        r->ok = true;
        snprintf(r->detail, sizeof(r->detail),
                 "OAuth access token obtained; FCM accepted it (HTTP %ld%s%s "
                 "for the dummy token)",
                 s->http_status, s->reason[0] ? " " : "", s->reason);
    } else if (s->http_status == 401 || s->http_status == 403) {
        snprintf(r->detail, sizeof(r->detail),
                 "OAuth access token obtained, but FCM refused it (HTTP %ld "
                 "%s): check the project and the account's roles",
                 s->http_status, s->reason);
    } else if (s->http_status == 0) {
        snprintf(r->detail, sizeof(r->detail), "no answer from FCM: %s",
                 s->reason[0] ? s->reason : push_status_name(s->status));
    } else {
        snprintf(r->detail, sizeof(r->detail), "HTTP %ld %s", s->http_status,
                 s->reason);
    }
}

/* Run the authenticated step for each enabled provider; returns how many
 * results were written to res (at most 2). */
static size_t
run_check(const struct cfg *cfg, struct check_res *res)
{
    static const char zero_token[] = "00000000000000000000000000000000"
                                     "00000000000000000000000000000000";
    struct push_conf conf;
    struct push_msg m[2];
    struct check_res *r[2];
    struct shot s[2];
    char call_id[64], err[512];
    size_t n = 0;

    probe_conf(cfg, &conf);
    random_call_id("check", call_id, sizeof(call_id));
    struct push_msg base = {
        .type = PUSH_MISSED,
        .call_id = call_id,
        .from = "pushpbx",
        .from_name = "pushpbx check",
        .to = "check",
        .expires_at_s = (int64_t)time(NULL) + PROBE_DEADLINE_S,
    };
    if (conf.apns.enabled) {
        res[n] = (struct check_res){.provider = "apns"};
        snprintf(res[n].url, sizeof(res[n].url), "%s",
                 conf.apns.base_url  ? conf.apns.base_url
                 : conf.apns.sandbox ? PUSH_APNS_SANDBOX_URL
                                     : PUSH_APNS_PRODUCTION_URL);
        m[n] = base;
        m[n].provider = PUSH_APNS;
        m[n].token = zero_token;
        r[n] = &res[n];
        n++;
    }
    if (conf.fcm.enabled) {
        res[n] = (struct check_res){.provider = "fcm"};
        snprintf(res[n].url, sizeof(res[n].url), "%s",
                 conf.fcm.base_url ? conf.fcm.base_url : PUSH_FCM_DEFAULT_URL);
        m[n] = base;
        m[n].provider = PUSH_FCM;
        m[n].token = "pushpbx-check-dummy-token";
        r[n] = &res[n];
        n++;
    }
    if (n == 0)
        return 0;
    if (push_oneshot(&conf, m, s, n, err, sizeof(err)) < 0) {
        for (size_t i = 0; i < n; i++) {
            r[i]->step = "config";
            snprintf(r[i]->detail, sizeof(r[i]->detail), "%s", err);
        }
        return n;
    }
    for (size_t i = 0; i < n; i++) {
        if (m[i].provider == PUSH_APNS)
            judge_apns(&conf.apns, &s[i], r[i]);
        else
            judge_fcm(&s[i], r[i]);
    }
    return n;
}

static int
push_check(void *arg, json_t *items)
{
    struct check_res res[2];
    size_t n = run_check(the.cfg, res);

    for (size_t i = 0; i < n; i++)
        json_array_append_new(
            items, json_pack("{s:s, s:s, s:s, s:b, s:I, s:s, s:s}", "provider",
                             res[i].provider, "url", res[i].url, "step",
                             res[i].step, "ok", res[i].ok, "http_status",
                             (json_int_t)res[i].http_status, "reason",
                             res[i].reason, "detail", res[i].detail));
    log_notice("app", "push check run: %zu provider%s", n, n == 1 ? "" : "s");
    return 0;
}

int
app_check_push(const struct cfg *cfg)
{
    struct check_res res[2];
    size_t n = run_check(cfg, res);
    bool all = true;

    if (n == 0) {
        printf("push check: no provider enabled ([apns] or [fcm] enabled = "
               "yes)\n");
        return 2;
    }
    for (size_t i = 0; i < n; i++) {
        printf("%s (%s)\n  %-5s %s: %s\n",
               strcmp(res[i].provider, "apns") == 0 ? "APNs" : "FCM",
               res[i].url, res[i].ok ? "ok" : "FAIL", res[i].step,
               res[i].detail);
        all = all && res[i].ok;
    }
    if (all) {
        printf("push credentials accepted\n");
        return 0;
    }
    printf("\nA step failed. If it is a network error, open in the firewall:\n"
           "  this server, outbound: TCP 443 to api.push.apple.com "
           "(APNs; 2197 also allowed),\n"
           "                         TCP 443 to fcm.googleapis.com and "
           "oauth2.googleapis.com (FCM)\n"
           "  phones, outbound:      TCP 5223 to *.push.apple.com (APNs), "
           "TCP 5228-5230 to mtalk.google.com (FCM)\n"
           "(pushpbxctl check tests DNS, TCP and TLS step by step.)\n");
    return 8;
}

/* ---- provisioning push settings -------------------------------------------
 */

/* production or sandbox: from base_url when it names one of Apple's hosts,
 * else ([apns] sandbox) the flag, which is what base_url = "" means and
 * the best hint for an emulator URL. */
static const char *
apns_environment(const struct push_apns_cfg *a)
{
    if (a->base_url[0]) {
        if (strstr(a->base_url, "api.sandbox.push.apple.com") ||
            strstr(a->base_url, "api.development.push.apple.com"))
            return "sandbox";
        if (strstr(a->base_url, "api.push.apple.com"))
            return "production";
    }
    return a->sandbox ? "sandbox" : "production";
}

/* FCM project id (and the sender id when the file carries the project
 * number, as google-services.json does; a service account has none). */
static void
fcm_identity(const struct push_fcm_cfg *f)
{
    json_error_t e;
    json_t *j = json_load_file(f->service_account_file, 0, &e);

    the.fcm_project[0] = the.fcm_sender[0] = '\0';
    if (!j)
        return;
    const char *p = json_string_value(json_object_get(j, "project_id"));
    json_t *num = json_object_get(j, "project_number");
    snprintf(the.fcm_project, sizeof(the.fcm_project), "%s", p ? p : "");
    if (json_is_string(num))
        snprintf(the.fcm_sender, sizeof(the.fcm_sender), "%s",
                 json_string_value(num));
    else if (json_is_integer(num))
        snprintf(the.fcm_sender, sizeof(the.fcm_sender), "%lld",
                 (long long)json_integer_value(num));
    json_decref(j);
}

static void
push_info(const struct cfg *cfg, struct admin_push_info *pi)
{
    const struct push_apns_cfg *a = cfg_get(cfg, &push_apns_cfg_section);
    const struct push_fcm_cfg *f = cfg_get(cfg, &push_fcm_cfg_section);

    *pi = (struct admin_push_info){0};
    if (a->enabled) {
        pi->apns_environment = apns_environment(a);
        pi->apns_topic = a->topic[0] ? a->topic : NULL;
    }
    if (f->enabled) {
        fcm_identity(f);
        pi->fcm_project_id = the.fcm_project[0] ? the.fcm_project : NULL;
        pi->fcm_sender_id = the.fcm_sender[0] ? the.fcm_sender : NULL;
    }
}

/* ---- extensions of the configuration file ------------------------------ */

/* Is number one of the file's n [extension.N] sections? */
static bool
in_file(const struct cfg *cfg, size_t n, const char *number)
{
    for (size_t k = 0; k < n; k++) {
        const char *num;
        cfg_instance(cfg, &reg_ext_cfg_section, k, &num);
        if (strcmp(num, number) == 0)
            return true;
    }
    return false;
}

/* The file against what the database holds, as the registrar restored it
 * (reg_ext_is_config: each extension's source is kept in memory, so the
 * extension table is not read a second time at start: a million rows).
 * The file wins, and every case where that changes something is
 * logged. */
int
app_admin_load_extensions(const struct cfg *cfg, struct reg *reg,
                          struct store *st)
{
    size_t n = cfg_instance_count(cfg, &reg_ext_cfg_section);
    size_t file_marked = 0;
    int rc = 0;

    the.store = st;
    the.call_keep =
        ((const struct proxy_cfg *)cfg_get(cfg, &proxy_cfg_section))
            ->call_records;
    for (size_t i = 0; i < n; i++) {
        const char *number, *path = NULL;
        cfg_instance(cfg, &reg_ext_cfg_section, i, &number);
        int src = reg_ext_is_config(reg, number);
        if (src == 1) {
            file_marked++;
        } else if (src == 0) {
            unsigned line =
                cfg_instance_origin(cfg, &reg_ext_cfg_section, i, &path);
            log_warn("app",
                     "extension %s: created through the admin API, and "
                     "now defined in %s line %u: the configuration file "
                     "wins (its password, name and settings replace the "
                     "database's; the API can no longer change it)",
                     number, path ? path : "--set", line);
        }
    }
    /* Marked extensions the file no longer defines: only when there are
     * more marked than the file's marked ones (the walk visits every
     * extension). */
    if (reg_ext_config_count(reg) > file_marked) {
        char(*gone)[REG_NUMBER_LEN_MAX + 1];
        size_t ngone = reg_ext_config_list(reg, &gone);
        for (size_t i = 0; i < ngone; i++) {
            if (in_file(cfg, n, gone[i]))
                continue;
            log_notice("app",
                       "extension %s: no longer in the configuration file: "
                       "removed with its registrations",
                       gone[i]);
            reg_ext_del(reg, gone[i]);
        }
        free(gone);
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *number;
        const struct reg_ext_cfg *e =
            cfg_instance(cfg, &reg_ext_cfg_section, i, &number);
        if (reg_ext_set(reg, number, e->name, e->password, e->enabled,
                        e->max_push_devices) < 0) {
            log_error("app", "[extension.%s]: bad extension number", number);
            rc = 1;
            continue;
        }
        reg_ext_mark_config(reg, number);
        if (st)
            store_ext_set_source(st, number, STORE_EXT_CONFIG);
    }
    return rc;
}

/* ---- start ----------------------------------------------------------------
 */

/* The [extension.N] sections of cfg for the admin (borrowed strings; the
 * array is the caller's to free). */
static struct admin_conf_ext *
conf_exts(const struct cfg *cfg, size_t *count)
{
    size_t n = cfg_instance_count(cfg, &reg_ext_cfg_section);
    struct admin_conf_ext *conf = xcalloc(n + 1, sizeof(*conf));

    for (size_t i = 0; i < n; i++) {
        const char *number, *path = NULL;
        const struct reg_ext_cfg *e =
            cfg_instance(cfg, &reg_ext_cfg_section, i, &number);
        unsigned line = cfg_instance_origin(cfg, &reg_ext_cfg_section, i, &path);
        conf[i] = (struct admin_conf_ext){.number = number,
                                          .file = path ? path : "--set",
                                          .line = line,
                                          .password = e->password};
    }
    *count = n;
    return conf;
}

int
app_admin_reload(const struct cfg *cfg, struct reg *reg, struct admin *admin)
{
    int rc = app_admin_load_extensions(cfg, reg, the.store);
    size_t n;
    struct admin_conf_ext *conf = conf_exts(cfg, &n);

    admin_conf_reload(admin, conf, n);
    free(conf);
    return rc;
}

/* ---- health (/healthz) ------------------------------------------------ */

static json_t *
part(bool ok, const char *detail)
{
    return json_pack("{s:b, s:s}", "ok", ok, "detail", detail);
}

static int
health(void *arg, json_t *parts)
{
    uint64_t sent[TP_MAX_WORKERS] = {0}, push_sent;
    struct timespec t0, now;
    char detail[160];
    bool workers_ok = false, push_ok = false;
    unsigned late = 0;

    (void)arg;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned i = 0; i < the.worker_count; i++)
        sent[i] = worker_ping(&the.workers[i]);
    push_sent = app_wake_ping(the.app_wake);
    /* The store's writer: a commit request waits behind whatever it is
     * doing (returns at once when nothing is queued). */
    int src = the.store ? store_commit(the.store, store_mark(the.store),
                                       APP_HEALTH_BOUND_MS)
                        : 0;
    for (;;) {
        late = 0;
        for (unsigned i = 0; i < the.worker_count; i++)
            late += !worker_answered(&the.workers[i], sent[i]);
        workers_ok = late == 0;
        push_ok = app_wake_answered(the.app_wake, push_sent);
        clock_gettime(CLOCK_MONOTONIC, &now);
        uint64_t ms = (uint64_t)(now.tv_sec - t0.tv_sec) * 1000u +
                      (uint64_t)(now.tv_nsec / 1000000) -
                      (uint64_t)(t0.tv_nsec / 1000000);
        if ((workers_ok && push_ok) || ms >= APP_HEALTH_BOUND_MS)
            break;
        struct timespec nap = {0, 1000000}; /* 1 ms */
        nanosleep(&nap, NULL);
    }
    if (workers_ok)
        snprintf(detail, sizeof(detail), "%u worker%s answered",
                 the.worker_count, the.worker_count == 1 ? "" : "s");
    else
        snprintf(detail, sizeof(detail),
                 "%u of %u workers did not answer within %u ms", late,
                 the.worker_count, APP_HEALTH_BOUND_MS);
    json_object_set_new(parts, "workers", part(workers_ok, detail));
    json_object_set_new(
        parts, "push",
        part(push_ok, push_sent == 0 ? "push is not enabled"
                      : push_ok      ? "push thread answered"
                                     : "push thread did not answer within "
                                       "the bound"));
    if (src == 0)
        snprintf(detail, sizeof(detail), "store writer answered");
    else if (src == -ETIMEDOUT)
        snprintf(detail, sizeof(detail),
                 "store writer did not answer within %u ms (stalled: a "
                 "locked or slow database?)",
                 APP_HEALTH_BOUND_MS);
    else
        snprintf(detail, sizeof(detail), "store writer: %s",
                 src == -EIO ? "the last commit failed" : strerror(-src));
    json_object_set_new(parts, "store", part(src == 0, detail));
    return workers_ok && push_ok && src == 0 ? 0 : -ETIMEDOUT;
}

int
app_admin_start(const struct cfg *cfg, const struct app_sip_cfg *sip,
                struct reg *reg, const struct tp *tp0,
                struct worker *workers, unsigned count,
                struct app_wake *wake, struct admin **out)
{
    const struct admin_cfg *ac = cfg_get(cfg, &admin_cfg_section);
    struct admin_sip_listener ls[TP_MAX_LISTENERS];
    struct tp_listen_spec s;
    struct admin_push_info wake_push = {0};
    size_t n = 0;
    char err[512];
    int rc;

    *out = NULL;
    if (!ac->enabled)
        return 0;
    for (size_t i = 0; i < tp_listener_count(tp0) && n < TP_MAX_LISTENERS;
         i++) {
        if (tp_listener(tp0, i, &s) < 0)
            continue;
        ls[n].transport = tp_proto_name(s.proto);
        ls[n].port = tp_addr_port(&s.addr);
        n++;
    }
    the.cfg = cfg;
    the.reg = reg;
    the.workers = workers;
    the.worker_count = count;
    the.app_wake = wake;
    the.wake = (struct admin_sources){0};
    app_wake_admin(&the.wake, &wake_push); /* devices, pushes, wake-ups */

    size_t next;
    struct admin_conf_ext *conf = conf_exts(cfg, &next);

    const struct store_cfg *sc = cfg_get(cfg, &store_cfg_section);
    enum store_backend be = STORE_BACKEND_SQLITE;
    (void)store_backend_parse(sc->backend, &be); /* checked at start */
    const struct cluster_cfg *cc = cfg_get(cfg, &cluster_cfg_section);
    struct admin_opts o = {
        .cfg = ac,
        .reg = reg,
        .store = the.store,
        .db_path = sc->path,
        .db_postgresql = be == STORE_BACKEND_POSTGRESQL,
        .node = cc->node,
        .conf_exts = conf,
        .conf_ext_count = next,
        .domain = sip->domain,
        .realm = sip->realm,
        .listeners = ls,
        .listener_count = n,
        .sources =
            {
                .list_calls = the.proxy ? list_calls : NULL,
                .list_pushes = the.wake.list_pushes ? fwd_pushes : NULL,
                .list_wakeups = the.wake.list_wakeups ? fwd_wakeups : NULL,
                .list_devices = the.wake.list_devices ? fwd_devices : NULL,
                .list_media = the.relays ? list_media : NULL,
                .list_nodes = list_nodes,
                .list_ext_devices =
                    the.wake.list_ext_devices ? fwd_ext_devices : NULL,
                .device_del = the.wake.device_del ? fwd_device_del : NULL,
                .push_test = the.wake.list_devices ? push_test : NULL,
                .push_check = push_check,
                .counters = counters,
                .wake_latency = wake_latency,
                .media_latency =
                    the.relays && media_relays_count(the.relays)
                        ? media_latency
                        : NULL,
                .health = health,
            },
    };
    push_info(cfg, &o.push);
    rc = admin_start(&o, out, err, sizeof(err));
    free(conf); /* admin_start copied it */
    if (rc == 0 && the.cluster) {
        /* Changes another node made since admin_start read the links
         * were not applied (no admin yet): read them all again. */
        pthread_mutex_lock(&changed_lock);
        changed_admin = *out;
        admin_prov_changed(changed_admin, NULL);
        pthread_mutex_unlock(&changed_lock);
    }
    if (rc < 0) {
        /* The admin must not take SIP down (a busy port when several
         * daemons share a host, an unwritable var/): log and go on. */
        log_error("app", "%s: running without the admin server", err);
        *out = NULL;
    }
    return 0;
}
