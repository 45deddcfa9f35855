/*
 * admin/admin_media: the time media relay adds to call set-up, on the
 * admin API (GET /api/media/latency: exact percentiles over the recent
 * samples) and in /metrics (pushpbx_media_setup_seconds, a histogram with
 * an interval label), docs/media.md "Set-up time". The figures come from
 * the proxy's media_lat through the admin_sources' media_latency.
 */
#include <stdio.h>

#include "admin/admin_int.h"
#include "base/buf.h"

static const char *const names[ADMIN_MEDIA_INTERVALS] = {"offer", "answer",
                                                         "call"};

static json_t *
lat_json(const struct admin_media_lat *l)
{
    json_t *b = json_object();
    for (int i = 0; i < ADMIN_MEDIA_BUCKETS; i++) {
        char le[32];
        snprintf(le, sizeof(le), "%g", l->bound_s[i]);
        json_object_set_new(b, le, json_integer((json_int_t)l->le[i]));
    }
    return json_pack("{s:I, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:o}",
                     "count", (json_int_t)l->count, "sum_s", l->sum_s,
                     "samples", (json_int_t)l->samples, "min_us",
                     (json_int_t)l->min_us, "p50_us", (json_int_t)l->p50_us,
                     "p90_us", (json_int_t)l->p90_us, "p99_us",
                     (json_int_t)l->p99_us, "max_us", (json_int_t)l->max_us,
                     "mean_us", l->mean_us, "buckets_le", b);
}

json_t *
admin_media_latency_json(admin_media_latency_fn *fn, void *arg)
{
    struct admin_media_lat lat[ADMIN_MEDIA_INTERVALS] = {0};

    if (!fn)
        return json_pack("{s:b}", "available", 0);
    fn(arg, true, lat);
    json_t *o = json_pack("{s:b}", "available", 1);
    for (int k = 0; k < ADMIN_MEDIA_INTERVALS; k++)
        json_object_set_new(o, names[k], lat_json(&lat[k]));
    return o;
}

void
admin_media_metrics(struct buf *b, admin_media_latency_fn *fn, void *arg)
{
    static const char name[] = "pushpbx_media_setup_seconds";
    struct admin_media_lat lat[ADMIN_MEDIA_INTERVALS] = {0};

    if (!fn)
        return; /* no rtpengine configured */
    fn(arg, false, lat);
    buf_printf(b,
               "# HELP %s Time a message waited for rtpengine: interval "
               "offer (a request with SDP held for the offer), answer (a "
               "18x/2xx or ACK held for the answer), call (offer plus "
               "first answer of a relayed call's branch).\n"
               "# TYPE %s histogram\n",
               name, name);
    for (int k = 0; k < ADMIN_MEDIA_INTERVALS; k++) {
        const struct admin_media_lat *l = &lat[k];
        const char *iv = names[k];
        for (int i = 0; i < ADMIN_MEDIA_BUCKETS; i++)
            buf_printf(b, "%s_bucket{interval=\"%s\",le=\"%g\"} %llu\n", name,
                       iv, l->bound_s[i],
                       (unsigned long long)l->le[i]);
        buf_printf(b,
                   "%s_bucket{interval=\"%s\",le=\"+Inf\"} %llu\n"
                   "%s_sum{interval=\"%s\"} %.6f\n"
                   "%s_count{interval=\"%s\"} %llu\n",
                   name, iv, (unsigned long long)l->count, name, iv, l->sum_s,
                   name, iv, (unsigned long long)l->count);
    }
}
