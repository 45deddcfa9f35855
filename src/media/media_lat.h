/*
 * media/media_lat: the time media relay adds to call set-up
 * (docs/media.md "Set-up time"): how long the proxy holds a message while
 * rtpengine answers, in microseconds on the monotonic clock.
 *
 * Three intervals:
 *  - OFFER:  a request with SDP (an INVITE to a branch, a re-INVITE or
 *            UPDATE, or a 2xx carrying a late offer) from the offer's
 *            send until the request is handed on with rtpengine's SDP;
 *  - ANSWER: a 18x/2xx with SDP (or an ACK with the answer to a late
 *            offer) from the answer's send until it is relayed;
 *  - CALL:   per relayed call (one per branch of an initial INVITE with
 *            an SDP offer): its OFFER plus the ANSWER of the first 18x/2xx
 *            with SDP on that branch: what relay added to that call's
 *            set-up.
 * Each keeps a histogram (cumulative buckets, media_lat_bounds_s, for
 * /metrics) and a ring of the last MEDIA_LAT_SAMPLES samples for exact
 * percentiles (GET /api/media/latency). Adding is an atomic add per
 * counter plus one short mutex hold; any thread may add and read.
 */
#ifndef PUSHPBX_MEDIA_MEDIA_LAT_H
#define PUSHPBX_MEDIA_MEDIA_LAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MEDIA_LAT_BUCKETS 16
#define MEDIA_LAT_SAMPLES 8192

/* Upper bounds of the histogram buckets, seconds (50 us .. 1 s). */
extern const double media_lat_bounds_s[MEDIA_LAT_BUCKETS];

enum media_lat_kind {
    MEDIA_LAT_OFFER,
    MEDIA_LAT_ANSWER,
    MEDIA_LAT_CALL,
    MEDIA_LAT_COUNT
};

/* "offer", "answer", "call"; "?" out of range. */
const char *media_lat_kind_name(enum media_lat_kind k);

struct media_lat;

/* What media_lat_get reports. le[i]: samples <= media_lat_bounds_s[i]
 * since start (cumulative); count and sum_s: all since start. The rest
 * only with exact, over the last `samples` (<= MEDIA_LAT_SAMPLES) kept:
 * nearest-rank percentiles, 0 when there is none. */
struct media_lat_stats {
    uint64_t le[MEDIA_LAT_BUCKETS];
    uint64_t count;
    double sum_s;
    uint64_t samples;
    uint64_t min_us, p50_us, p90_us, p99_us, max_us;
    double mean_us;
};

/* A new, empty recorder (owned; media_lat_free). Aborts on OOM. */
struct media_lat *media_lat_new(void);
/* NULL does nothing. No thread may still add or read. */
void media_lat_free(struct media_lat *l);

/* Now on the monotonic clock, microseconds (what the samples are cut
 * from). */
uint64_t media_lat_now_us(void);

/* Record one sample of k. l NULL or k out of range: nothing. Any thread. */
void media_lat_add(struct media_lat *l, enum media_lat_kind k, uint64_t us);

/* Fill out for k (zeros for NULL l or k out of range). exact: also the
 * percentiles over the kept samples (a copy and a sort, ~1 ms); /metrics
 * passes false. Any thread. */
void media_lat_get(struct media_lat *l, enum media_lat_kind k, bool exact,
                   struct media_lat_stats *out);

#endif
