/*
 * proxy/wake: pending wake-ups, the product's core behaviour
 * (product.md "Behaviour of push" rules 3-9, docs/wake.md).
 *
 * wake is a proxy observer. When a call starts ringing for an extension
 * with push devices, it decides per device:
 *  - a TCP/TLS binding of the device whose connection is open: the proxy
 *    already forks to it; no push (counted as suppressed_live);
 *  - a UDP binding: the proxy forks to it at once, and a grace timer
 *    (default 500 ms) runs; if that branch has sent no provisional
 *    response by then, the device is pushed (rule 3, rule 8);
 *  - no binding: pushed at once (type "call", expiring with the ring time).
 * The caller gets 180 when the first push of the call is sent. The proxy
 * holds the call while any device is pending (in its grace time, or pushed
 * and neither woken nor failed), even if other bindings reject it
 * (call_started returns true); when the last pending device resolves,
 * wake releases it (ops.release): with 480 standing for the wake-ups if
 * every push failed for good (dead token, refused, retries exhausted;
 * RFC 8599 §5.6.2 step 5), so a call with nothing else ringing ends with
 * 480 at once instead of at the ring timeout. When the
 * woken app's REGISTER is accepted, the proxy itself forks the ringing call
 * to the fresh binding (proxy_register_ok → proxy_binding_added, which
 * de-duplicates by Contact URI, and a 401-challenged REGISTER never gets
 * there): exactly one branch per wake. wake only marks the device woken.
 *
 * When the call ends, every device that was pushed for it gets a "missed"
 * push (caller cancelled, no answer, rejected elsewhere) or an
 * "answered_elsewhere" push, with the call's collapse id so it replaces
 * the call notification. Endings (and the push after the grace time) go
 * to the device as it is then: looked up again by the token it was pushed
 * on, else by its +sip.instance (a woken app may register a new token
 * with a new Call-ID; the old one is dead at the provider), and not at
 * all if it is gone (signed out, dead token, evicted). An iOS VoIP device
 * pushed for the call but not woken in time is remembered until its push
 * expires: when it registers, the late_cancel hook sends it the INVITE
 * followed at once by a CANCEL with a Reason (rule 7), so CallKit can
 * close the call it had to show.
 * An FCM or alert device registering after the end gets nothing.
 *
 * Pushes go to one push client on a dedicated thread and loop (push.h is
 * single-loop): workers hand a job over through a mutex-protected queue
 * and uv_async_send, never blocking. Results are logged, kept in a bounded
 * recent-pushes ring and counted; a dead token removes the push device
 * (pushdev_remove_token, on the push thread: a SQLite delete must not run
 * on a worker). The worker never waits for a result; a push that fails
 * for good is marked on its call (under the lock) and may release it
 * through ops.release, which the proxy queues to the call's worker.
 *
 * Threads: observer callbacks and wake_worker_* run on the call's worker;
 * wake_on_register on the worker that handled the REGISTER; wake_recent
 * and wake_stats_get on any thread. Pending calls are in one list under a
 * mutex (a few per ringing call, looked up by Call-ID); each call's grace
 * timer lives on its worker's tq and is only touched there. ops.release
 * is called with that mutex held (lock order: wake, then the proxy's).
 */
#ifndef PUSHPBX_PROXY_WAKE_H
#define PUSHPBX_PROXY_WAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/slice.h"
#include "base/tq.h"
#include "proxy/proxy.h"
#include "push/push.h"

struct wake;
struct proxy_call;
struct proxy_shared;
struct pushdev_table;
struct reg;
struct reg_contact;

/* What late_cancel needs to build the INVITE of an ended call. */
struct wake_late {
    const char *call_id;
    const char *caller, *callee;
    const char *caller_name; /* From display name ("" if none) */
    const char *reason;      /* Reason header value: SIP;cause=487;text=".." or
                                SIP;cause=200;text="Call completed elsewhere" */
};

/* Hooks into the proxy for what proxy.h does not offer (yet). Any may be
 * NULL: wake then degrades as documented per hook. */
struct wake_proxy_ops {
    /* Send 180 Ringing to the caller. NULL: no 180 from wake. */
    void (*ringing)(struct proxy_call *call, void *arg);
    /* Has the branch to Contact uri sent a provisional response? NULL:
     * unknown, treated as silent (the device is pushed after the grace
     * time even if it rang: a duplicate ring, never a lost call). */
    bool (*branch_provisional)(struct proxy_call *call, const char *uri,
                               void *arg);
    /* Is TCP flow flow_id (a binding's) open? Called on worker `worker`.
     * NULL: any non-zero flow_id counts as open. */
    bool (*flow_alive)(unsigned worker, uint64_t flow_id, void *arg);
    /* Rule 7: send the INVITE of an ended call to binding b and CANCEL it
     * at once with info->reason. Runs on the worker that handled the
     * REGISTER. NULL: not done (logged). */
    void (*late_cancel)(const struct reg_contact *b,
                        const struct wake_late *info, void *arg);
    /* The call (on worker `worker`) no longer needs holding for wake:
     * every pushed device woke or failed for good, every grace ended.
     * status: 480 if no device woke and some push failed, else 0. Any
     * thread, called with wake's lock held; at most once per call. NULL:
     * the call is held until the ring time ends. */
    void (*release)(unsigned worker, const char *call_id, const char *callee,
                    int status, void *arg);
    void *arg;
};

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
    struct wake_proxy_ops ops;
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

/* Become an observer of the proxy (before workers start). */
int wake_attach(struct wake *w, struct proxy_shared *sh);

/* Give worker idx's timer queue and monotonic clock (tp_tq, tp_now_ms)
 * before it starts. */
void wake_worker_set(struct wake *w, unsigned idx, struct tq *tq,
                     uint64_t (*now_ms)(void *arg), void *now_arg);
/* On worker idx at shutdown, before its tq goes: drop its pending calls
 * (no pushes are sent for them). */
void wake_worker_fini(struct wake *w, unsigned idx);

/* The registrar accepted a REGISTER of ext that added or refreshed these
 * bindings (reg_bind_cb): marks woken devices of ringing calls, and runs
 * late_cancel for a VoIP device woken for a call that already ended. */
void wake_on_register(struct wake *w, const char *ext,
                      const struct reg_contact *contacts, size_t count);

/* Complete a job (the push thread does it; tests call it for jobs given
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
 *    the provider's HTTP/2 connection: (push_send on the push thread -
 *    rx) + push_result.write_us (push_send to curl's PRETRANSFER, i.e. the
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
