/*
 * app/app_wake: see app_wake.h. Wiring only: the wake room (src/wake)
 * owns the policy, the push thread and the latency; it calls the proxy
 * directly once attached (wake_attach). This file opens the push-device
 * table, builds wake's options from the configuration, connects the
 * registrar's hooks (push devices, the bind callback) and adapts wake's
 * listings and counters to the admin's JSON sources.
 *
 * One daemon per process, so the instance the admin reads is kept in a
 * file-static pointer (set and cleared on the main thread).
 */
#include "app/app_wake.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "admin/admin.h"
#include "base/log.h"
#include "base/xmalloc.h"
#include "config/cfg.h"
#include "proxy/proxy.h"
#include "proxy/proxy_cfg.h"
#include "push/push_cfg.h"
#include "registrar/pushdev.h"
#include "registrar/reg.h"
#include "transport/tp.h"
#include "wake/wake.h"

struct app_wake {
    const struct push_wake_cfg *wc;
    const struct push_apns_cfg *ac;
    const struct push_fcm_cfg *fc;
    struct pushdev_table *devices;
    struct wake *wake;
    unsigned ticks;
    char fcm_project[128];
};

static struct app_wake *the_instance;

static bool
push_enabled(const char *ext, void *arg)
{
    const struct app_wake *aw = arg;
    return !push_cfg_ext_disabled(aw->wc, ext);
}

static void
on_bind(const char *ext, const struct reg_contact *c, size_t n, void *arg)
{
    struct app_wake *aw = arg;
    wake_on_register(aw->wake, ext, c, n);
}

/* The FCM project id phones need in their provisioning document. */
static void
read_fcm_project(struct app_wake *aw)
{
    json_error_t e;
    if (!aw->fc->enabled)
        return;
    json_t *j = json_load_file(aw->fc->service_account_file, 0, &e);
    const char *p =
        j ? json_string_value(json_object_get(j, "project_id")) : NULL;
    snprintf(aw->fcm_project, sizeof(aw->fcm_project), "%s", p ? p : "");
    json_decref(j);
}

int
app_wake_open(const struct cfg *cfg, struct reg *reg, struct store *st,
              struct proxy_shared *sh, struct app_wake **out)
{
    struct app_wake *aw = xcalloc(1, sizeof(*aw));
    const struct proxy_cfg *pc = cfg_get(cfg, &proxy_cfg_section);
    char err[512];

    aw->wc = cfg_get(cfg, &push_wake_cfg_section);
    aw->ac = cfg_get(cfg, &push_apns_cfg_section);
    aw->fc = cfg_get(cfg, &push_fcm_cfg_section);
    struct pushdev_opts po = {.store = st,
                              .idle_expiry_s =
                                  aw->wc->idle_expiry_days * 86400u};
    if (pushdev_open(&po, &aw->devices, err, sizeof(err)) < 0) {
        log_error("app", "%s", err);
        free(aw);
        return 1;
    }
    struct wake_opts wo = {
        .devices = aw->devices,
        .reg = reg,
        .grace_ms = aw->wc->grace_ms,
        .ring_s = pc->ring_timeout_s,
        .ringing = aw->wc->ringing,
        .recent_max = aw->wc->recent,
        .message_preview = aw->wc->message_preview,
    };
    wake_new(&wo, &aw->wake);
    if (aw->ac->enabled || aw->fc->enabled) {
        struct push_conf conf;
        push_cfg_conf(aw->ac, aw->fc, aw->wc, &conf);
        if (wake_push_start(aw->wake, &conf, err, sizeof(err)) < 0) {
            log_error("app", "push: %s", err);
            app_wake_close(aw);
            return 1;
        }
    }
    if (wake_attach(aw->wake, sh) < 0) {
        log_error("app", "wake: cannot observe the proxy");
        app_wake_close(aw);
        return 1;
    }
    struct reg_push_opts rp = {.table = aw->devices,
                               .apns = aw->ac->enabled,
                               .fcm = aw->fc->enabled,
                               .push_enabled = push_enabled,
                               .arg = aw};
    reg_set_push(reg, &rp);
    reg_set_bind_cb(reg, on_bind, aw);
    read_fcm_project(aw);
    log_notice("app", "push: apns %s, fcm %s, %zu push devices",
               aw->ac->enabled ? "on" : "off", aw->fc->enabled ? "on" : "off",
               pushdev_count(aw->devices));
    the_instance = aw;
    *out = aw;
    return 0;
}

void
app_wake_worker(struct app_wake *aw, unsigned idx, struct tp *tp)
{
    if (!aw || idx >= TP_MAX_WORKERS)
        return;
    wake_worker_set(aw->wake, idx, tp);
    if ((aw->ac->enabled || aw->fc->enabled) && aw->wc->from_workers) {
        struct push_conf conf;
        char err[256];
        push_cfg_conf(aw->ac, aw->fc, aw->wc, &conf);
        /* Checked by wake_push_start already; should it fail anyway, this
         * worker's pushes go through the push thread. */
        if (wake_worker_push_start(aw->wake, idx, &conf, err, sizeof(err)) < 0)
            log_warn("app", "worker %u: own push client: %s (pushes go "
                     "through the push thread)", idx, err);
    }
}

void
app_wake_worker_stop(struct app_wake *aw, unsigned idx)
{
    if (aw && idx < TP_MAX_WORKERS)
        wake_worker_push_stop(aw->wake, idx);
}

void
app_wake_tick(struct app_wake *aw)
{
    if (!aw || ++aw->ticks % 60 != 0)
        return;
    size_t n = pushdev_expire(aw->devices);
    if (n)
        log_info("app", "idle push devices expired: %zu", n);
}

bool
app_wake_idle(struct app_wake *aw)
{
    struct wake_stats st;

    if (!aw || !aw->wake)
        return true;
    wake_stats_get(aw->wake, &st);
    return st.sent <= st.delivered + st.failed + st.dead;
}

void
app_wake_close(struct app_wake *aw)
{
    if (!aw)
        return;
    if (the_instance == aw)
        the_instance = NULL;
    wake_free(aw->wake); /* stops the push thread */
    pushdev_close(aw->devices);
    free(aw);
}

/* ---- admin ----------------------------------------------------------------
 */

/* id: provider and the first 16 characters of the token, so the admin can
 * name a device without the listing carrying a usable token. */
static void
device_id(const struct pushdev *d, char *out, size_t cap)
{
    snprintf(out, cap, "%s:%.16s", d->provider, d->prid);
}

static void
device_json(const struct pushdev *d, void *arg)
{
    char id[40];
    device_id(d, id, sizeof(id));
    json_array_append_new(
        arg, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "ext",
                       d->ext, "id", id, "provider", d->provider, "token",
                       d->prid, "param", d->param, "instance", d->instance,
                       "created_at", (json_int_t)d->created_at, "last_seen_at",
                       (json_int_t)d->last_seen));
}

static int
list_devices(void *arg, json_t *items)
{
    struct app_wake *aw = arg;
    pushdev_list(aw->devices, device_json, items);
    return 0;
}

/* One extension's devices (a page of GET /api/registrations). */
static int
list_ext_devices(void *arg, const char *ext, json_t *items)
{
    struct app_wake *aw = arg;
    struct pushdev d[PUSHDEV_MAX_PER_EXT];
    size_t n = pushdev_find_ext(aw->devices, ext, d, PUSHDEV_MAX_PER_EXT);

    for (size_t i = 0; i < n; i++)
        device_json(&d[i], items);
    return 0;
}

static int
list_pushes(void *arg, json_t *items)
{
    struct app_wake *aw = arg;
    struct wake_push_entry *e = xcalloc(aw->wc->recent, sizeof(*e));
    size_t n = wake_recent(aw->wake, e, aw->wc->recent);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(
            items,
            json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:f, "
                      "s:I, s:I}",
                      "at", (json_int_t)(e[i].time_ms / 1000), "call_id",
                      e[i].call_id, "ext", e[i].ext, "provider", e[i].provider,
                      "type", e[i].type, "token_prefix", e[i].token, "status",
                      e[i].result, "http_status", (json_int_t)e[i].http_status,
                      "reason", e[i].reason, "latency_ms",
                      (double)e[i].latency_us / 1000.0, "attempts",
                      (json_int_t)e[i].attempts, "write_us",
                      (json_int_t)e[i].write_us));
    free(e);
    return 0;
}

static int
list_wakeups(void *arg, json_t *items)
{
    struct app_wake *aw = arg;
    enum { CAP = 1000 }; /* the page shows a screenful; bounded copy */
    struct wake_pending *e = xcalloc(CAP, sizeof(*e));
    size_t n = wake_pending_list(aw->wake, e, CAP);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(
            items,
            json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "ext", e[i].callee,
                      "call_id", e[i].call_id, "from", e[i].caller, "since",
                      (json_int_t)(e[i].since_ms / 1000), "expires_at",
                      (json_int_t)e[i].expires_at, "devices",
                      (json_int_t)e[i].pushed, "woken",
                      (json_int_t)e[i].woken));
    free(e);
    return 0;
}

_Static_assert(WAKE_LATENCY_BUCKETS == ADMIN_LATENCY_BUCKETS,
               "wake and admin latency histograms must match");
_Static_assert(WAKE_HIST_BUCKETS == ADMIN_WAKE_BUCKETS,
               "wake and admin wake-path histograms must match");
_Static_assert(WAKE_LAT_COUNT == 2, "admin shows two wake-path intervals");

/* Push counters for /metrics. Calls and SIP message counters belong to
 * other rooms and stay zero here; the wake-path latency has its own
 * source (app_wake_latency). */
static void
counters(void *arg, struct admin_counters *out)
{
    struct app_wake *aw = arg;
    struct wake_stats st;

    wake_stats_get(aw->wake, &st);
    out->push_devices = pushdev_count(aw->devices);
    out->pending_wakeups = st.pending_calls;
    for (int p = 0; p < 2; p++) {
        out->pushes_sent[p] = st.delivered_by[p]; /* "accepted" */
        out->pushes_failed[p] = st.failed_by[p];
        out->pushes_dead[p] = st.dead_by[p];
    }
    for (size_t i = 0; i < ADMIN_LATENCY_BUCKETS; i++)
        out->push_latency_bucket[i] = st.latency_le[i];
    out->push_latency_count = st.latency_count;
    out->push_latency_sum_s = st.latency_sum_s;
}

void
app_wake_latency(bool exact, struct admin_wake_lat *out)
{
    struct app_wake *aw = the_instance;

    memset(out, 0, 2 * sizeof(*out));
    if (!aw)
        return;
    for (int i = 0; i < WAKE_LAT_COUNT && i < 2; i++) {
        struct wake_lat_stats ls;
        struct admin_wake_lat *l = &out[i];
        wake_lat_get(aw->wake, (enum wake_interval)i, exact, &ls);
        memcpy(l->bucket, ls.le, sizeof(l->bucket));
        l->count = ls.count;
        l->sum_s = ls.sum_s;
        l->samples = ls.samples;
        l->min_us = ls.min_us;
        l->p50_us = ls.p50_us;
        l->p90_us = ls.p90_us;
        l->p99_us = ls.p99_us;
        l->p999_us = ls.p999_us;
        l->max_us = ls.max_us;
        l->mean_us = ls.mean_us;
    }
}

static int
device_del(void *arg, const char *ext, const char *id)
{
    struct app_wake *aw = arg;
    int n;
    if (!id) {
        n = pushdev_remove_ext(aw->devices, ext);
    } else {
        struct pushdev d[PUSHDEV_MAX_PER_EXT];
        size_t k = pushdev_find_ext(aw->devices, ext, d, PUSHDEV_MAX_PER_EXT);
        n = 0;
        for (size_t i = 0; i < k && n == 0; i++) {
            char did[40];
            device_id(&d[i], did, sizeof(did));
            if (strcmp(did, id) == 0)
                n = pushdev_forget_token(aw->devices, d[i].provider,
                                         d[i].prid);
        }
    }
    return n < 0 ? n : n == 0 ? -ENOENT : 0;
}

uint64_t
app_wake_ping(struct app_wake *aw)
{
    return aw ? wake_push_ping(aw->wake) : 0;
}

bool
app_wake_answered(struct app_wake *aw, uint64_t n)
{
    return !aw || wake_push_answered(aw->wake, n);
}

void
app_wake_admin(struct admin_sources *src, struct admin_push_info *push)
{
    struct app_wake *aw = the_instance;
    if (!aw)
        return;
    src->arg = aw;
    src->list_devices = list_devices;
    src->list_ext_devices = list_ext_devices;
    src->list_pushes = list_pushes;
    src->device_del = device_del;
    src->list_wakeups = list_wakeups;
    if (!src->counters)
        src->counters = counters;
    if (aw->fcm_project[0])
        push->fcm_project_id = aw->fcm_project;
    if (aw->ac->enabled) {
        push->apns_environment = aw->ac->sandbox ? "sandbox" : "production";
        push->apns_topic = aw->ac->topic[0] ? aw->ac->topic : NULL;
    }
}

struct pushdev_table *
app_wake_devices(struct app_wake *aw)
{
    return aw ? aw->devices : NULL;
}
