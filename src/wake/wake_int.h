/*
 * wake/wake_int: declarations shared inside the wake room (wake.c the
 * policy, wake_push.c the push thread, wake_lat.c the latency). Not for
 * other rooms.
 *
 * Data: one struct wcall per ringing call that has push devices, in a
 * list under w->lock (a handful at a time; looked up by Call-ID when the
 * call ends or a device registers, O(pending calls), fine for hundreds).
 * Each wcall has one grace timer on its worker's tq, touched only on that
 * worker. Ended VoIP wakes (rule 7) wait in a second list, bounded, until
 * their push expires. The recent-pushes ring is a fixed array. Lock order:
 * w->lock, then the proxy's (proxy_call_release is called with it held),
 * then w->lat_lock; w->qlock alone.
 */
#ifndef PUSHPBX_WAKE_WAKE_INT_H
#define PUSHPBX_WAKE_WAKE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "base/list.h"
#include "registrar/pushdev.h"
#include "transport/tp.h"
#include "wake/wake.h"

#define CALL_ID_MAX 128
#define URI_MAX 512
#define ENDED_MAX 1024   /* remembered VoIP wakes of ended calls */
#define NAME_MAX_LEN 128 /* caller display name (proxy cuts it to fit) */

enum wdev_state {
    WD_DIRECT = 0, /* reachable directly: never pushed for this call */
    WD_GRACE,      /* UDP binding: waiting for its provisional */
    WD_PUSHED,     /* push sent */
    WD_REFUSED,    /* push_send refused it (counted as failed) */
    WD_NOW,        /* decided at call start: push at once */
    WD_GONE,       /* removed before its grace push: never pushed, counts
                      as failed for the hold */
};

struct wdev {
    /* The device when the call started (its token when pushed). Endings
     * and later pushes look it up again (device_now): it may have a new
     * token by then, or be gone. */
    struct pushdev d;
    enum wdev_state state; /* written on the call's worker, under w->lock */
    char uri[URI_MAX];     /* its binding's Contact URI ("" if none) */
    bool woken;            /* registered while the call rang */
    bool failed;           /* its call push failed for good */
    bool dead;             /* ... because the token is dead */
};

struct wcall {
    struct list_node node; /* w->calls */
    struct wake *w;
    struct proxy_call *call;
    unsigned worker;
    char call_id[CALL_ID_MAX];
    char caller[33], callee[33];
    char caller_name[NAME_MAX_LEN];
    int64_t expires_s; /* end of ring time: call pushes expire then */
    int64_t since_ms;
    uint64_t rx_us; /* INVITE read (proxy_call_info.rx_us), 0 if unknown */
    bool ringing_sent;
    bool
        released; /* hold given up (proxy_call_release called, or never held) */
    struct tq_entry grace;
    size_t ndev;
    struct wdev dev[PUSHDEV_MAX_PER_EXT];
};

struct ended {
    struct list_node node;
    char ext[33], provider[8];
    char prid[PUSHDEV_PRID_MAX + 1];
    char instance[PUSHDEV_INSTANCE_MAX + 1];
    char call_id[CALL_ID_MAX], caller[33];
    char caller_name[NAME_MAX_LEN];
    char reason[64];
    int64_t until_s;
};

struct wake_job {
    struct list_node node;
    struct wake *w;
    struct push_msg m;
    char token[PUSHDEV_PRID_MAX + 1];
    char param[PUSHDEV_PARAM_MAX + 1];
    char call_id[CALL_ID_MAX];
    char from[33], to[33];
    char from_name[NAME_MAX_LEN];
    uint64_t rx_us;   /* INVITE read; 0: not timed (INVITE_TO_PUSH) */
    uint64_t send_us; /* handed to push_send (or the test hook) */
    /* PUSH_MESSAGE (wake_submit_message) */
    char msg_id[24];
    char content_type[128];
    char preview[PROXY_MSG_PREVIEW_MAX];
};

/* A device woken by a REGISTER read at reg_us whose INVITE (Request-URI
 * = uri) has not been sent yet (REGISTER_TO_INVITE). */
struct wwait {
    char uri[URI_MAX];
    uint64_t reg_us;
};
#define WAIT_MAX 64              /* woken devices awaiting their INVITE */
#define WAIT_MAX_AGE_US 10000000 /* forget after 10 s (call ended) */

struct wlat {
    atomic_uint_fast64_t bucket[WAKE_HIST_BUCKETS]; /* not cumulative */
    atomic_uint_fast64_t count, sum_us;
    uint32_t *ring; /* WAKE_LAT_SAMPLES µs values, under lat_lock */
    size_t next, n;
};

struct wworker {
    struct tp *tp; /* NULL in tests: every flow counts as open */
    struct tq *tq;
    uint64_t (*now_ms)(void *arg);
    void *now_arg;
    /* The worker's own push client on its loop (wake_worker_push_start),
     * so that its calls' pushes are written without a thread hop. Set on
     * main before the worker starts, used and cleared
     * (wake_worker_push_stop) on that worker only. NULL: the push thread
     * sends them. */
    struct push_client *push;
};

struct wake {
    struct wake_opts o;
    struct proxy_shared *sh; /* wake_attach; NULL: no proxy (tests) */
    struct wworker workers[TP_MAX_WORKERS];

    pthread_mutex_t lock; /* calls, ended, recent */
    struct list_node calls;
    size_t ncalls;
    struct list_node ended;
    size_t nended;
    struct wake_push_entry *recent;
    size_t recent_cap, recent_count, recent_next;

    /* push thread */
    bool thread_started;
    uv_thread_t thread;
    uv_loop_t loop;
    uv_async_t async;
    struct push_client *client;
    pthread_mutex_t qlock; /* queue, stopping */
    struct list_node queue;
    bool stopping;
    atomic_uint_fast64_t ping_sent, ping_seen; /* wake_push_ping */

    atomic_uint_fast64_t n_sent, n_delivered, n_failed, n_dead, n_live, n_grace,
        n_woken, n_late;
    atomic_uint_fast64_t sent_by[2], delivered_by[2], failed_by[2], dead_by[2];
    atomic_uint_fast64_t lat_le[WAKE_LATENCY_BUCKETS], lat_count, lat_sum_us;

    /* wake-path latency: rings and waits under lat_lock (taken after
     * lock, never before) */
    pthread_mutex_t lat_lock;
    struct wlat lat[WAKE_LAT_COUNT];
    struct wwait wait[WAIT_MAX];
    size_t nwait;
    atomic_size_t nwait_hint; /* nwait, read without the lock */
};

static inline uint64_t
wake_mono_us(void)
{
    return uv_hrtime() / 1000;
}

static inline int64_t
wake_wall_ms(const struct wake *w)
{
    if (w->o.clock_ms)
        return w->o.clock_ms(w->o.clock_arg);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void
wake_copy_str(char *dst, size_t cap, const char *src)
{
    /* Truncating on purpose: fixed-size fields of the recent-push ring. */
    size_t n = src ? strnlen(src, cap - 1) : 0;

    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

/* wake.c (policy) */
struct wcall *wake_find_call_locked(struct wake *w, const char *call_id,
                                    const char *callee);
/* Is dv a wake-up still pending, so that the call must stay held? */
bool wake_dev_pending(const struct wdev *dv);
/* w->lock held: when no device of c is pending any more, give the hold
 * up (once, proxy_call_release). */
void wake_release_locked(struct wake *w, struct wcall *c);
/* A call push failed for good (the loop that sent it): mark it, maybe
 * release. */
void wake_call_push_failed(struct wake *w, const struct wake_job *j, bool dead);

/* wake_push.c (the push sender) */
/* Hand a push to the worker's push client, the push thread or the
 * test's send hook. Worker
 * thread; never blocks beyond a mutex. 0 when accepted for sending. */
int wake_submit(struct wake *w, const struct pushdev *d, enum push_type type,
                const struct wcall *c, int64_t expires_s, uint64_t rx_us);
/* Hand a `message` push (an alert, never a VoIP push) for the stored
 * message mi to device d. Any thread; never blocks beyond a mutex.
 * 0 when accepted for sending. */
int wake_submit_message(struct wake *w, const struct pushdev *d,
                        const struct proxy_msg_info *mi);
void wake_job_fail(struct wake_job *j, const char *reason);
/* Stop the push thread (pending pushes complete as cancelled). */
void wake_push_stop(struct wake *w);

/* wake_msg.c: proxy observer: a MESSAGE was stored, push its devices. */
void wake_on_message_stored(const struct proxy_msg_info *mi, void *arg);

/* wake_lat.c */
/* A pushed device woke: time its INVITE from this REGISTER's read. */
void wake_wait_add(struct wake *w, const char *uri);
/* Proxy observer: a branch's INVITE was handed to the transport. */
void wake_on_branch_sent(const struct proxy_branch_info *bi, void *arg);

#endif
