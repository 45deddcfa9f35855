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

static json_t *
lat_json(const struct media_lat_stats *l)
{
    json_t *b = json_object();
    for (int i = 0; i < MEDIA_LAT_BUCKETS; i++) {
        char le[32];
        snprintf(le, sizeof(le), "%g", media_lat_bounds_s[i]);
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
    struct media_lat_stats lat[MEDIA_LAT_COUNT] = {0};

    if (!fn)
        return json_pack("{s:b}", "available", 0);
    fn(arg, true, lat);
    json_t *o = json_pack("{s:b, s:I}", "available", 1, "samples_kept",
                          (json_int_t)MEDIA_LAT_SAMPLES);
    for (int k = 0; k < MEDIA_LAT_COUNT; k++)
        json_object_set_new(o, media_lat_kind_name(k), lat_json(&lat[k]));
    return o;
}

void
admin_media_metrics(struct buf *b, admin_media_latency_fn *fn, void *arg)
{
    static const char name[] = "pushpbx_media_setup_seconds";
    struct media_lat_stats lat[MEDIA_LAT_COUNT] = {0};

    if (fn)
        fn(arg, false, lat);
    buf_printf(b,
               "# HELP %s Time a message waited for rtpengine: interval "
               "offer (a request with SDP held for the offer), answer (a "
               "18x/2xx or ACK held for the answer), call (offer plus "
               "first answer of a relayed call's branch).\n"
               "# TYPE %s histogram\n",
               name, name);
    for (int k = 0; k < MEDIA_LAT_COUNT; k++) {
        const struct media_lat_stats *l = &lat[k];
        const char *iv = media_lat_kind_name(k);
        for (int i = 0; i < MEDIA_LAT_BUCKETS; i++)
            buf_printf(b, "%s_bucket{interval=\"%s\",le=\"%g\"} %llu\n", name,
                       iv, media_lat_bounds_s[i],
                       (unsigned long long)l->le[i]);
        buf_printf(b,
                   "%s_bucket{interval=\"%s\",le=\"+Inf\"} %llu\n"
                   "%s_sum{interval=\"%s\"} %.6f\n"
                   "%s_count{interval=\"%s\"} %llu\n",
                   name, iv, (unsigned long long)l->count, name, iv, l->sum_s,
                   name, iv, (unsigned long long)l->count);
    }
}
