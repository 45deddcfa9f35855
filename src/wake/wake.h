/*
 * wake: the product's core path (product.md rules 3-9): when a call rings
 * for an extension with push devices, decide per device (live TCP flow:
 * nothing; UDP binding: direct branch, push after grace_ms unless it rang;
 * no binding: push now), hold the call while a wake-up is pending, mark
 * devices woken by their REGISTER, release the hold when the wake-ups are
 * over (480 if every push failed), send the endings (missed /
 * answered_elsewhere), and rule 7 for a VoIP device woken too late.
 *
 * Edges: wake observes the proxy (struct proxy_observer) and calls
 * proxy.h directly (proxy_call_ringing, proxy_call_branch_rang,
 * proxy_call_release, proxy_late_cancel); the proxy never includes wake.
 * Pushes are sent by the call's worker on its own push client, or by the
 * push thread (wake_push.c: one queue and one uv_async) when the worker
 * has none; workers never block on either.
 *
 * Threads: observer callbacks run on the call's worker, wake_on_register
 * on the worker of the REGISTER, wake_job_done on the loop that sent the
 * push (the call's worker, or the push thread); every
 * getter on any thread. The full design, the locks and the step-by-step
 * path: docs/wake.md.
 */
#ifndef PUSHPBX_WAKE_WAKE_H
#define PUSHPBX_WAKE_WAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/tq.h"
#include "proxy/proxy.h"
#include "push/push.h"

struct wake;
struct proxy_call;
struct proxy_shared;
struct pushdev_table;
struct reg;
struct reg_contact;
struct tp;

#define WAKE_LATENCY_BUCKETS 8
/* Upper bounds in seconds; the same as the admin's histogram. */
extern const double wake_latency_bounds_s[WAKE_LATENCY_BUCKETS];

/* A push handed to a sender (tests) or the push thread. Opaque. */
struct wake_job;

struct wake_opts {
    struct pushdev_table *devices; /* borrowed */
    struct reg *reg;               /* borrowed */
    unsigned grace_ms;             /* 0 = push UDP devices at once */
    unsigned ring_s;               /* call pushes expire after this */
    bool ringing;                  /* 180 when a push is sent */
    unsigned recent_max;           /* ring size; 0 = 200 */
    bool message_preview;          /* [push] message_preview: message
                                      pushes carry the text */
    /* Tests: instead of the push thread, hand each push to send (on the
     * calling worker); the test completes it with wake_job_done. */
    int (*send)(struct wake_job *j, const struct push_msg *m, void *arg);
    void *send_arg;
    int64_t (*clock_ms)(void *arg); /* wall clock; NULL = CLOCK_REALTIME */
    void *clock_arg;
};

/* Create. Returns 0 and *out (owned; wake_free) or -EINVAL. Main thread. */
int wake_new(const struct wake_opts *o, struct wake **out);

/* Start the push thread with its client (conf borrowed for the call).
 * Returns 0, or -EINVAL with the client's reason in err. Main thread. */
int wake_push_start(struct wake *w, const struct push_conf *conf, char *err,
                    size_t errlen);

/* The observer callbacks (arg = the struct wake); wake_attach registers
 * them. Exposed for tests. */
const struct proxy_observer *wake_observer(void);

/* Become an observer of the proxy (before workers start); wake then calls
 * sh's proxy functions directly. Returns 0 or -ENOSPC. */
int wake_attach(struct wake *w, struct proxy_shared *sh);

/* Worker idx's transport before it starts: its timer queue and clock for
 * the grace timers (flows are asked of tp_flow_open, any worker). */
void wake_worker_set(struct wake *w, unsigned idx, struct tp *tp);
/* Tests: a timer queue and clock without a transport (every TCP/TLS flow
 * counts as open). */
void wake_worker_set_tq(struct wake *w, unsigned idx, struct tq *tq,
                        uint64_t (*now_ms)(void *arg), void *now_arg);
/* Give worker idx (wake_worker_set done, its loop not yet running) a
 * push client of its own on that loop: the pushes its calls make (call
 * pushes, endings) are then sent from the worker itself, written to the
 * provider connection before the worker's callback returns, instead of
 * waiting for the push thread to be scheduled. Each such client keeps its
 * own HTTP/2 connection per provider (opened at its first push) and its
 * own credentials (APNs JWT, FCM access token). A push it refuses (bad
 * token, too large, queue full) goes to the push thread, which reports it
 * as before. Main thread, after wake_push_start. Returns 0, or -EINVAL
 * with the reason in err (that worker's pushes then use the push thread). */
int wake_worker_push_start(struct wake *w, unsigned idx,
                           const struct push_conf *conf, char *err,
                           size_t errlen);
/* On worker idx as it stops (before its transport goes): cancel what its
 * push client has in flight and close it (keep running the loop for the
 * close callbacks). Later pushes of its calls go to the push thread, which
 * outlives the workers. No-op without a client. */
void wake_worker_push_stop(struct wake *w, unsigned idx);
/* On worker idx at shutdown, before its tq goes: drop its pending calls
 * (no pushes are sent for them). */
void wake_worker_fini(struct wake *w, unsigned idx);

/* The registrar accepted a REGISTER of ext that added or refreshed these
 * bindings (reg_bind_cb): marks woken devices of ringing calls, and runs
 * late_cancel for a VoIP device woken for a call that already ended. */
void wake_on_register(struct wake *w, const char *ext,
                      const struct reg_contact *contacts, size_t count);

/* Complete a job (the loop that sent it does; tests call it for jobs given
 * to their send hook). r borrowed. Any thread. */
void wake_job_done(struct wake_job *j, const struct push_result *r);

/* Stop the push thread (pending pushes complete as cancelled), then free.
 * Call after every worker is gone. NULL is a no-op. */
void wake_free(struct wake *w);
/* Health (/healthz): wake_push_ping asks the push thread's loop to answer
 * and returns the request's number (0: no push thread); wake_push_answered
 * tells whether the loop has run since. Any thread. */
uint64_t wake_push_ping(struct wake *w);
bool wake_push_answered(struct wake *w, uint64_t n);

/* One push as the admin sees it. */
struct wake_push_entry {
    int64_t time_ms; /* completion, unix ms */
    char call_id[64];
    char ext[33];
    char provider[8];
    char token[16];  /* first 8 characters of the token (as the admin
                        shows devices): tells devices apart, useless to
                        send pushes */
    char type[24];   /* call, missed, answered_elsewhere */
    char result[24]; /* delivered, dead_token, ... */
    long http_status;
    char reason[48];
    unsigned attempts;
    uint64_t latency_us; /* push requested to provider's answer */
    uint64_t write_us;   /* push requested to request written */
};

/* Newest first: copy up to cap entries, return how many. Any thread. */
size_t wake_recent(struct wake *w, struct wake_push_entry *out, size_t cap);

struct wake_stats {
    uint64_t sent;      /* pushes handed to the provider client */
    uint64_t delivered; /* provider answered 200 */
    uint64_t failed;    /* failed, retries exhausted, refused, cancelled */
    uint64_t dead;      /* dead tokens (device removed) */
    uint64_t suppressed_live;  /* device reachable over an open flow */
    uint64_t suppressed_grace; /* UDP branch rang within the grace time */
    uint64_t woken;            /* pushed devices that registered in time */
    uint64_t late_cancels;     /* INVITE+CANCEL to VoIP devices (rule 7) */
    size_t pending_calls;      /* calls with pushed devices, ringing */
    /* Per provider ([PUSH_APNS], [PUSH_FCM]). */
    uint64_t sent_by[2], delivered_by[2], failed_by[2], dead_by[2];
    /* Provider latency of completed pushes: cumulative counts at or below
     * wake_latency_bounds_s[i] (Prometheus "le"), total count and sum. */
    uint64_t latency_le[WAKE_LATENCY_BUCKETS];
    uint64_t latency_count;
    double latency_sum_s;
};
void wake_stats_get(struct wake *w, struct wake_stats *out);

/* ---- wake-path latency (bench/wake-bench.sh, /metrics) ------------------
 *
 * Two intervals of pushpbx's own work on the wake path, in monotonic µs,
 * always measured (a clock read per message and per push; a mutex per
 * sample):
 *  - INVITE_TO_PUSH: the INVITE's socket read (tp_src.rx_us, given in
 *    proxy_call_info.rx_us) to the call push about to be written on
 *    the provider's HTTP/2 connection: (push_send on the worker or the
 *    push thread - rx) + push_result.write_us (push_send to curl's PRETRANSFER, i.e. the
 *    request is about to be written; curl tells nothing later). First
 *    call push of a device only; pushes sent after the UDP grace time are
 *    not counted (the grace is policy, not our latency).
 *  - REGISTER_TO_INVITE: the woken device's REGISTER read (tp_rx_us()
 *    in the registrar's bind callback, which carries no source) to the
 *    INVITE for its Contact handed to the transport (the proxy's
 *    branch_sent observer); includes the 200 OK, the bind callback and,
 *    when the call rings on another worker, the proxy's hop there.
 * Each has a histogram (cumulative buckets, WAKE_HIST_BUCKETS bounds
 * from 50 µs to 1 s) and a ring of the last WAKE_LAT_SAMPLES exact
 * samples from which exact percentiles are computed on request. */
enum wake_interval {
    WAKE_LAT_INVITE_TO_PUSH = 0,
    WAKE_LAT_REGISTER_TO_INVITE = 1,
    WAKE_LAT_COUNT
};

#define WAKE_HIST_BUCKETS 14
/* Upper bounds in seconds (Prometheus "le"). */
extern const double wake_hist_bounds_s[WAKE_HIST_BUCKETS];
#define WAKE_LAT_SAMPLES 65536

struct wake_lat_stats {
    uint64_t le[WAKE_HIST_BUCKETS]; /* cumulative counts */
    uint64_t count;                 /* every sample since start */
    double sum_s;
    /* Exact, over the samples in the ring (the last WAKE_LAT_SAMPLES);
     * only filled when asked (exact = true), else zero. Nearest rank. */
    uint64_t samples;
    uint64_t min_us, p50_us, p90_us, p99_us, p999_us, max_us;
    double mean_us;
};

/* Histogram and, with exact, percentiles of one interval (exact sorts a
 * copy of the ring: O(n log n), for the admin and the bench, not for
 * every scrape). Any thread. */
void wake_lat_get(struct wake *w, enum wake_interval which, bool exact,
                  struct wake_lat_stats *out);

/* Add a sample (µs) to an interval. wake records its own; exposed for
 * tests. Any thread. */
void wake_lat_add(struct wake *w, enum wake_interval which, uint64_t us);

/* A ringing call waiting for pushed devices, for the admin. */
struct wake_pending {
    char call_id[64];
    char caller[33], callee[33];
    int64_t since_ms;   /* call start, unix ms */
    int64_t expires_at; /* end of ring time, unix s */
    unsigned pushed;    /* devices pushed and not yet woken */
    unsigned woken;     /* devices that registered */
};
/* Copy up to cap pending calls, oldest first; returns how many. Any
 * thread. */
size_t wake_pending_list(struct wake *w, struct wake_pending *out, size_t cap);

#endif
