/*
 * admin/admin_metrics: GET /metrics (Prometheus text format 0.0.4) and
 * GET /api/wake/latency (the wake path's intervals with exact
 * percentiles, read by bench/wake-bench.sh); docs/admin.md lists every
 * metric.
 *
 * The figures come from the registrar (reg_get_stats), the providers'
 * counters and wake-latency callbacks (struct admin_sources; atomics and
 * histograms kept by the rooms that count), the message index
 * (admin_msgs.c) and the admin's own request counters. A scrape builds
 * one text buffer of a few kilobytes per request; nothing is cached, so
 * every scrape sees the counters as they are.
 */
#include <stdio.h>

#include "admin/admin_int.h"
#include "base/buf.h"
#include "registrar/reg.h"

const double admin_wake_bounds_s[ADMIN_WAKE_BUCKETS] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01,    0.025,  0.05,    0.1,    0.25,  0.5,    1};

const double admin_latency_bounds_s[ADMIN_LATENCY_BUCKETS] = {
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

/* One gauge or counter without labels: a row of a table, so that a new
 * metric is a line of data rather than another call. */
struct metric_row {
    const char *name, *type, *help;
    uint64_t value;
};

static void
metric_rows(struct buf *b, const struct metric_row *r, size_t count)
{
    for (size_t i = 0; i < count; i++)
        buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", r[i].name,
                   r[i].help, r[i].name, r[i].type, r[i].name,
                   (unsigned long long)r[i].value);
}

static void
metric2(struct buf *b, const char *name, const char *help, const uint64_t v[2])
{
    buf_printf(b,
               "# HELP %s %s\n# TYPE %s counter\n%s{provider=\"apns\"} %llu\n"
               "%s{provider=\"fcm\"} %llu\n",
               name, help, name, name, (unsigned long long)v[0], name,
               (unsigned long long)v[1]);
}

static void
wake_hist(struct buf *b, const char *name, const char *help,
          const struct admin_wake_lat *l)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (int i = 0; i < ADMIN_WAKE_BUCKETS; i++)
        buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name,
                   admin_wake_bounds_s[i], (unsigned long long)l->bucket[i]);
    buf_printf(b,
               "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n"
               "%s_count %llu\n",
               name, (unsigned long long)l->count, name, l->sum_s, name,
               (unsigned long long)l->count);
}

static char *
metrics_text(struct admin *a, size_t *len)
{
    static const char *const methods[ADMIN_M_COUNT] = {
        "INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "other"};
    struct reg_stats rs;
    struct admin_counters k = {0};
    struct buf b;

    reg_get_stats(a->reg, &rs);
    if (a->src.counters)
        a->src.counters(a->src.arg, &k);
    buf_init(&b, 0);
    const struct metric_row counts[] = {
        {"pushpbx_extensions", "gauge", "Extensions configured.",
         rs.extensions},
        {"pushpbx_registrations", "gauge",
         "SIP bindings (registered contacts) now.", rs.bindings},
        {"pushpbx_push_devices", "gauge", "Push devices stored now.",
         k.push_devices},
        {"pushpbx_register_requests_total", "counter",
         "REGISTER requests handled.", rs.registers},
        {"pushpbx_auth_failures_total", "counter",
         "Failed digest authentications (wrong credentials, unknown user).",
         rs.auth_failures},
        {"pushpbx_throttled_total", "counter",
         "Requests refused (403) because their source was blocked.",
         rs.throttled},
        {"pushpbx_throttled_sources_total", "counter",
         "Times a source address got blocked for failed authentications.",
         rs.blocks},
        {"pushpbx_store_errors_total", "counter",
         "Registrar writes the store refused.", rs.store_errors},
        {"pushpbx_calls_total", "counter", "Calls handled.", k.calls_total},
        {"pushpbx_calls_answered_total", "counter",
         "Calls answered (a branch sent 2xx).", k.calls_answered},
        {"pushpbx_calls_active", "gauge", "Calls in progress.", k.calls_active},
        {"pushpbx_calls_open", "gauge",
         "Calls and relayed requests whose state is still held: until "
         "every transaction of theirs has ended (a branch whose CANCEL got "
         "no answer: 64*T1 after it).",
         k.calls_open},
    };
    metric_rows(&b, counts, sizeof(counts) / sizeof(counts[0]));
    if (k.media_relay_count) {
        static const char *const names[3] = {
            "pushpbx_media_relay_up", "pushpbx_media_relay_requests_total",
            "pushpbx_media_relay_timeouts_total"};
        static const char *const helps[3] = {
            "rtpengine answering (1) or marked down (0).",
            "ng requests sent to this rtpengine (not counting repeats).",
            "ng requests this rtpengine did not answer."};
        for (int m = 0; m < 3; m++) {
            buf_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", names[m], helps[m],
                       names[m], m ? "counter" : "gauge");
            for (size_t i = 0; i < k.media_relay_count; i++) {
                const struct admin_media_relay *r = &k.media_relay[i];
                buf_printf(&b, "%s{relay=\"%s\"} %llu\n", names[m], r->addr,
                           (unsigned long long)(m == 0   ? r->up
                                                : m == 1 ? r->requests
                                                         : r->timeouts));
            }
        }
    }
    const struct metric_row media[] = {
        {"pushpbx_media_calls_total", "counter",
         "Calls whose media went through rtpengine (figures received).",
         k.media_calls},
        {"pushpbx_media_one_way_calls_total", "counter",
         "Relayed calls with media from one side only (one-way audio).",
         k.media_one_way},
        {"pushpbx_media_no_media_calls_total", "counter",
         "Relayed calls with no media from either side.", k.media_no_media},
        {"pushpbx_media_failures_total", "counter",
         "Offers or answers no rtpengine took (timeout, error, none up).",
         k.media_failed},
        {"pushpbx_media_passed_total", "counter",
         "Calls that went on without relay after a failed offer (on_failure = "
         "pass).",
         k.media_passed},
        {"pushpbx_media_rejected_total", "counter",
         "Calls refused after a failed offer (on_failure = reject).",
         k.media_rejected},
        {"pushpbx_pending_wakeups", "gauge",
         "Calls waiting for a pushed device to register.", k.pending_wakeups},
    };
    metric_rows(&b, media, sizeof(media) / sizeof(media[0]));
    admin_media_metrics(&b, a->src.media_latency, a->src.arg);
    metric2(&b, "pushpbx_pushes_sent_total", "Pushes the provider accepted.",
            k.pushes_sent);
    metric2(&b, "pushpbx_pushes_failed_total",
            "Pushes that failed (retries exhausted, auth, payload).",
            k.pushes_failed);
    metric2(&b, "pushpbx_pushes_dead_total",
            "Pushes answered with a dead token (device removed).",
            k.pushes_dead);
    buf_printf(&b, "# HELP pushpbx_push_latency_seconds Time from sending a "
                   "push to the provider's answer.\n"
                   "# TYPE pushpbx_push_latency_seconds histogram\n");
    for (int i = 0; i < ADMIN_LATENCY_BUCKETS; i++)
        buf_printf(&b, "pushpbx_push_latency_seconds_bucket{le=\"%g\"} %llu\n",
                   admin_latency_bounds_s[i],
                   (unsigned long long)k.push_latency_bucket[i]);
    buf_printf(&b,
               "pushpbx_push_latency_seconds_bucket{le=\"+Inf\"} %llu\n"
               "pushpbx_push_latency_seconds_sum %.6f\n"
               "pushpbx_push_latency_seconds_count %llu\n",
               (unsigned long long)k.push_latency_count, k.push_latency_sum_s,
               (unsigned long long)k.push_latency_count);
    struct admin_wake_lat lat[2] = {0};
    if (a->src.wake_latency)
        a->src.wake_latency(a->src.arg, false, lat);
    wake_hist(&b, "pushpbx_wake_invite_to_push_seconds",
              "Time from reading a call's INVITE to its push request being "
              "written to the provider connection (pushes sent at once).",
              &lat[0]);
    wake_hist(&b, "pushpbx_wake_register_to_invite_seconds",
              "Time from reading a pushed device's REGISTER to its INVITE "
              "being handed to the socket.",
              &lat[1]);
    buf_printf(&b, "# HELP pushpbx_sip_messages_total SIP requests received, "
                   "by method.\n# TYPE pushpbx_sip_messages_total counter\n");
    for (int i = 0; i < ADMIN_M_COUNT; i++)
        buf_printf(&b, "pushpbx_sip_messages_total{method=\"%s\"} %llu\n",
                   methods[i], (unsigned long long)k.sip_messages[i]);
    admin_messages_metrics(&b, reg_messages(a->reg));
    buf_printf(&b, "# HELP pushpbx_worker_sip_requests_total SIP requests "
                   "handled, by worker.\n# TYPE "
                   "pushpbx_worker_sip_requests_total counter\n");
    for (unsigned i = 0; i < k.workers && i < ADMIN_MAX_WORKERS; i++)
        buf_printf(&b,
                   "pushpbx_worker_sip_requests_total{worker=\"%u\"} %llu\n", i,
                   (unsigned long long)k.worker_requests[i]);
    buf_printf(&b, "# HELP pushpbx_worker_udp_steered_total UDP requests a "
                   "worker read and handed to the worker their Call-ID "
                   "hashes to.\n# TYPE pushpbx_worker_udp_steered_total "
                   "counter\n");
    for (unsigned i = 0; i < k.workers && i < ADMIN_MAX_WORKERS; i++)
        buf_printf(&b, "pushpbx_worker_udp_steered_total{worker=\"%u\"} %llu\n",
                   i, (unsigned long long)k.worker_udp_steered[i]);
    const struct metric_row admin[] = {
        {"pushpbx_admin_requests_total", "counter", "Admin HTTP requests.",
         a->requests},
        {"pushpbx_admin_unauthorized_total", "counter",
         "Admin HTTP requests refused for a bad or missing token.",
         a->unauthorized},
    };
    metric_rows(&b, admin, sizeof(admin) / sizeof(admin[0]));
    *len = b.len;
    return b.data;
}

static json_t *
wake_lat_json(const struct admin_wake_lat *l)
{
    json_t *b = json_object();
    for (int i = 0; i < ADMIN_WAKE_BUCKETS; i++) {
        char le[32];
        snprintf(le, sizeof(le), "%g", admin_wake_bounds_s[i]);
        json_object_set_new(b, le, json_integer((json_int_t)l->bucket[i]));
    }
    return json_pack(
        "{s:I, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, "
        "s:o}",
        "count", (json_int_t)l->count, "sum_s", l->sum_s, "samples",
        (json_int_t)l->samples, "min_us", (json_int_t)l->min_us, "p50_us",
        (json_int_t)l->p50_us, "p90_us", (json_int_t)l->p90_us, "p99_us",
        (json_int_t)l->p99_us, "p999_us", (json_int_t)l->p999_us, "max_us",
        (json_int_t)l->max_us, "mean_us", l->mean_us, "buckets_le", b);
}

/* GET /api/wake/latency: the wake-path intervals with exact percentiles
 * (bench/wake-bench.sh). */
enum MHD_Result
admin_route_wake_latency(struct admin *a, struct MHD_Connection *c)
{
    struct admin_wake_lat lat[2] = {0};

    if (!a->src.wake_latency)
        return admin_send_json(c, MHD_HTTP_OK,
                               json_pack("{s:b}", "available", 0));
    a->src.wake_latency(a->src.arg, true, lat);
    return admin_send_json(c, MHD_HTTP_OK,
                           json_pack("{s:b, s:o, s:o}", "available", 1,
                                     "invite_to_push", wake_lat_json(&lat[0]),
                                     "register_to_invite",
                                     wake_lat_json(&lat[1])));
}

/* GET /metrics. */
enum MHD_Result
admin_route_metrics(struct admin *a, struct MHD_Connection *c)
{
    size_t len;
    char *text = metrics_text(a, &len);

    return admin_send_raw(c, MHD_HTTP_OK, "text/plain; version=0.0.4", text,
                          len, MHD_RESPMEM_MUST_FREE);
}
