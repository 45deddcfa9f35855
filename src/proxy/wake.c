/*
 * proxy/wake: pending wake-ups; the design is in wake.h and docs/wake.md.
 *
 * Data: one struct wcall per ringing call that has push devices, in a
 * list under w->lock (a handful at a time; looked up by Call-ID when the
 * call ends or a device registers, O(pending calls), fine for hundreds).
 * Each wcall has one grace timer on its worker's tq, touched only on that
 * worker. Ended VoIP wakes (rule 7) wait in a second list, bounded, until
 * their push expires. The recent-pushes ring is a fixed array.
 *
 * The push thread owns the push client and its loop. Jobs are malloc'ed
 * by the worker with every string copied into the job, queued under
 * w->qlock and signalled with uv_async_send; the push thread completes
 * them (wake_job_done) and frees them.
 *
 * Wake-path latency (wake.h): two atomic histograms and two rings of
 * exact samples under lat_lock; woken devices whose INVITE is not sent
 * yet wait in a small array (WAIT_MAX) that the proxy's branch_sent
 * observer scans only while it is not empty.
 */
#include "proxy/wake.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "base/arena.h"
#include "base/list.h"
#include "base/log.h"
#include "base/xmalloc.h"
#include "proxy/proxy.h"
#include "registrar/pushdev.h"
#include "registrar/reg.h"
#include "sip/uri.h"
#include "transport/tp.h"

#define CALL_ID_MAX 128
#define URI_MAX 512
#define ENDED_MAX 1024 /* remembered VoIP wakes of ended calls */
#define LOOKUP_ARENA (64 * 1024)
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
    bool released; /* hold given up (ops.release called, or never held) */
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
    struct tq *tq;
    uint64_t (*now_ms)(void *arg);
    void *now_arg;
};

struct wake {
    struct wake_opts o;
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

const double wake_hist_bounds_s[WAKE_HIST_BUCKETS] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01,    0.025,  0.05,    0.1,    0.25,  0.5,    1};

static uint64_t
mono_us(void)
{
    return uv_hrtime() / 1000;
}

const double wake_latency_bounds_s[WAKE_LATENCY_BUCKETS] = {
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

static int64_t
wall_ms(const struct wake *w)
{
    if (w->o.clock_ms)
        return w->o.clock_ms(w->o.clock_arg);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
copy_str(char *dst, size_t cap, const char *src)
{
    /* Truncating on purpose: fixed-size fields of the recent-push ring. */
    size_t n = src ? strnlen(src, cap - 1) : 0;

    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

/* ---- matching bindings and devices ------------------------------------- */

/* %-decode s into dst (cap), refusing a decoded NUL: false if it does not
 * fit or is malformed. */
static bool
unescape(struct slice s, char *dst, size_t cap)
{
    size_t len;

    return sip_unescape_to(s, dst, cap, &len) == 0 && strlen(dst) == len;
}

/* The RFC 8599 params of a Contact URI, unescaped. false if it has no
 * pn-prid. */
static bool
uri_pn(const char *uri, char *provider, size_t pcap, char *prid, size_t cap)
{
    struct sip_uri u;
    struct slice v;
    const char *why;

    if (sip_uri_parse(slice_cstr(uri), &u, &why) < 0)
        return false;
    if (!sip_uri_param(&u, "pn-provider", &v) || !unescape(v, provider, pcap))
        return false;
    if (!sip_uri_param(&u, "pn-prid", &v) || !unescape(v, prid, cap))
        return false;
    return prid[0] != '\0';
}

/* Does binding b belong to push device d? Same pn-provider + pn-prid in
 * its Contact URI, or the same +sip.instance. */
static bool
binding_of(const struct reg_contact *b, const struct pushdev *d)
{
    char prov[16], prid[PUSHDEV_PRID_MAX + 1];

    if (d->instance[0] && b->instance && strcmp(b->instance, d->instance) == 0)
        return true;
    return uri_pn(b->uri, prov, sizeof(prov), prid, sizeof(prid)) &&
           strcmp(prov, d->provider) == 0 && strcmp(prid, d->prid) == 0;
}

/* Does the Contact URI carry d's pn-provider and pn-prid? */
static bool
uri_has_token(const char *uri, const struct pushdev *d)
{
    char prov[16], prid[PUSHDEV_PRID_MAX + 1];

    return uri_pn(uri, prov, sizeof(prov), prid, sizeof(prid)) &&
           strcmp(prov, d->provider) == 0 && strcmp(prid, d->prid) == 0;
}

/* The device that d (copied into a call when it started) is now: the
 * stored device of ext with d's token, else, when d has a +sip.instance,
 * the one with that instance (the app registered a new token, with a new
 * Call-ID, and pushdev replaced the device). false when it is gone: dead
 * token, signed out (Contact: *), evicted by a newer phone, idle-expired,
 * moved to another extension. Any thread (pushdev's lock). */
static bool
device_now(const struct wake *w, const char *ext, const struct pushdev *d,
           struct pushdev *out)
{
    if (!w->o.devices)
        return false;
    if (pushdev_match(w->o.devices, ext, d->provider, d->prid, NULL, out))
        return true;
    return d->instance[0] &&
           pushdev_match(w->o.devices, ext, NULL, NULL, d->instance, out);
}

/* ---- push submission and results ---------------------------------------- */

static void
recent_add(struct wake *w, const struct wake_job *j,
           const struct push_result *r)
{
    struct wake_push_entry e;
    memset(&e, 0, sizeof(e));
    e.time_ms = wall_ms(w);
    copy_str(e.call_id, sizeof(e.call_id), j->call_id);
    copy_str(e.ext, sizeof(e.ext), j->to);
    copy_str(e.provider, sizeof(e.provider), push_provider_name(j->m.provider));
    snprintf(e.token, sizeof(e.token), "%.8s", j->token);
    copy_str(e.type, sizeof(e.type), push_type_name(j->m.type));
    copy_str(e.result, sizeof(e.result), push_status_name(r->status));
    e.http_status = r->http_status;
    copy_str(e.reason, sizeof(e.reason), r->reason);
    e.attempts = r->attempts;
    e.latency_us = r->latency_us;
    e.write_us = r->write_us;
    pthread_mutex_lock(&w->lock);
    w->recent[w->recent_next] = e;
    w->recent_next = (w->recent_next + 1) % w->recent_cap;
    if (w->recent_count < w->recent_cap)
        w->recent_count++;
    pthread_mutex_unlock(&w->lock);
}

static struct wcall *find_call_locked(struct wake *w, const char *call_id,
                                      const char *callee);
static bool dev_pending(const struct wdev *dv);
static void maybe_release_locked(struct wake *w, struct wcall *c);

/* A call push failed for good: the device will not wake for this call.
 * If it was the last pending wake-up, the call is released (with 480 when
 * nobody woke: RFC 8599 §5.6.2 step 5). */
static void
call_push_failed(struct wake *w, const struct wake_job *j, bool dead)
{
    const char *prov = push_provider_name(j->m.provider);

    pthread_mutex_lock(&w->lock);
    struct wcall *c = find_call_locked(w, j->call_id, j->to);
    if (c) {
        for (size_t i = 0; i < c->ndev; i++) {
            struct wdev *dv = &c->dev[i];
            if (strcmp(dv->d.provider, prov) == 0 &&
                strcmp(dv->d.prid, j->token) == 0) {
                dv->failed = true;
                dv->dead = dead;
            }
        }
        maybe_release_locked(w, c);
    }
    pthread_mutex_unlock(&w->lock);
}

void
wake_job_done(struct wake_job *j, const struct push_result *r)
{
    struct wake *w = j->w;
    const char *prov = push_provider_name(j->m.provider);

    unsigned pi = j->m.provider == PUSH_APNS ? 0 : 1;
    if (r->latency_us && r->status != PUSH_CANCELLED) {
        for (size_t i = 0; i < WAKE_LATENCY_BUCKETS; i++)
            if ((double)r->latency_us / 1e6 <= wake_latency_bounds_s[i])
                atomic_fetch_add(&w->lat_le[i], 1);
        atomic_fetch_add(&w->lat_count, 1);
        atomic_fetch_add(&w->lat_sum_us, r->latency_us);
    }
    switch (r->status) {
    case PUSH_DELIVERED:
        atomic_fetch_add(&w->n_delivered, 1);
        atomic_fetch_add(&w->delivered_by[pi], 1);
        break;
    case PUSH_DEAD_TOKEN:
        atomic_fetch_add(&w->n_dead, 1);
        atomic_fetch_add(&w->dead_by[pi], 1);
        /* The provider says the app is gone: forget the device (rule 4).
         * A SQLite delete, fine here: we are not on a worker. */
        if (w->o.devices)
            (void)pushdev_remove_token(w->o.devices, prov, j->token);
        break;
    default:
        atomic_fetch_add(&w->n_failed, 1);
        atomic_fetch_add(&w->failed_by[pi], 1);
        break;
    }
    recent_add(w, j, r);
    if (j->rx_us && r->write_us && j->send_us >= j->rx_us)
        wake_lat_add(w, WAKE_LAT_INVITE_TO_PUSH,
                     j->send_us - j->rx_us + r->write_us);
    if (j->m.type == PUSH_CALL && r->status != PUSH_DELIVERED &&
        r->status != PUSH_CANCELLED)
        call_push_failed(w, j, r->status == PUSH_DEAD_TOKEN);
    /* log_at: the level is checked before formatting (log_write alone
     * wrote every push even at level warn, on the push thread). */
    log_at(r->status == PUSH_DELIVERED ? LOG_INFO : LOG_WARN, "wake",
           "push %s call_id=%s ext=%s provider=%s result=%s http=%ld "
           "reason=%s attempts=%u latency_ms=%.1f",
           push_type_name(j->m.type), j->call_id, j->to, prov,
           push_status_name(r->status), r->http_status,
           r->reason && r->reason[0] ? r->reason : "-", r->attempts,
           (double)r->latency_us / 1000.0);
    free(j);
}

static void
job_fail(struct wake_job *j, const char *reason)
{
    struct push_result r = {.status = PUSH_FAILED,
                            .provider = j->m.provider,
                            .reason = reason,
                            .id = ""};
    wake_job_done(j, &r);
}

static void
on_push_done(const struct push_result *r, void *arg)
{
    wake_job_done(arg, r);
}

uint64_t
wake_push_ping(struct wake *w)
{
    if (!w || !w->thread_started)
        return 0;
    uint64_t n = atomic_fetch_add(&w->ping_sent, 1) + 1;
    uv_async_send(&w->async);
    return n;
}

bool
wake_push_answered(struct wake *w, uint64_t n)
{
    return n == 0 || atomic_load(&w->ping_seen) >= n;
}

/* Push thread: start every queued job, or cancel them when stopping. */
static void
on_async(uv_async_t *h)
{
    struct wake *w = h->data;
    struct list_node batch, *n, *tmp;

    atomic_store(&w->ping_seen, atomic_load(&w->ping_sent));
    list_init(&batch);
    pthread_mutex_lock(&w->qlock);
    bool stopping = w->stopping;
    list_for_each_safe(n, tmp, &w->queue)
    {
        list_remove(n);
        list_push_back(&batch, n);
    }
    pthread_mutex_unlock(&w->qlock);

    list_for_each_safe(n, tmp, &batch)
    {
        struct wake_job *j = container_of(n, struct wake_job, node);
        list_remove(n);
        j->send_us = mono_us();
        int rc = stopping ? -ECANCELED
                          : push_send(w->client, &j->m, on_push_done, j);
        if (rc < 0)
            job_fail(j, stopping ? "stopping" : push_strerror(rc));
    }
    if (stopping) {
        push_client_free(w->client); /* cancels what is in flight */
        w->client = NULL;
        uv_close((uv_handle_t *)&w->async, NULL);
    }
}

static void
push_thread(void *arg)
{
    struct wake *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

int
wake_push_start(struct wake *w, const struct push_conf *conf, char *err,
                size_t errlen)
{
    if (uv_loop_init(&w->loop) < 0) {
        snprintf(err, errlen, "wake: cannot create the push loop");
        return -EINVAL;
    }
    w->client = push_client_new(&w->loop, conf, err, errlen);
    if (!w->client) {
        uv_loop_close(&w->loop);
        return -EINVAL;
    }
    uv_async_init(&w->loop, &w->async, on_async);
    w->async.data = w;
    if (uv_thread_create(&w->thread, push_thread, w) < 0) {
        snprintf(err, errlen, "wake: cannot start the push thread");
        push_client_free(w->client);
        w->client = NULL;
        uv_close((uv_handle_t *)&w->async, NULL);
        uv_run(&w->loop, UV_RUN_DEFAULT);
        uv_loop_close(&w->loop);
        return -EINVAL;
    }
    w->thread_started = true;
    return 0;
}

/* Hand a push to the provider client. Worker thread; never blocks beyond
 * a mutex. Returns 0 when accepted for sending. */
static int
submit(struct wake *w, const struct pushdev *d, enum push_type type,
       const struct wcall *c, int64_t expires_s, uint64_t rx_us)
{
    struct wake_job *j = xcalloc(1, sizeof(*j));

    j->w = w;
    j->rx_us = rx_us;
    copy_str(j->token, sizeof(j->token), d->prid);
    copy_str(j->param, sizeof(j->param), d->param);
    copy_str(j->call_id, sizeof(j->call_id), c->call_id);
    copy_str(j->from, sizeof(j->from), c->caller);
    copy_str(j->from_name, sizeof(j->from_name), c->caller_name);
    copy_str(j->to, sizeof(j->to), c->callee);
    j->m = (struct push_msg){
        .provider = strcmp(d->provider, "apns") == 0 ? PUSH_APNS : PUSH_FCM,
        .token = j->token,
        .param = j->param[0] ? j->param : NULL,
        .type = type,
        .call_id = j->call_id,
        .from = j->from,
        .from_name = j->from_name,
        .to = j->to,
        .sent_at_s = wall_ms(w) / 1000,
        .expires_at_s = type == PUSH_CALL ? expires_s : 0,
    };
    atomic_fetch_add(&w->n_sent, 1);
    atomic_fetch_add(&w->sent_by[j->m.provider == PUSH_APNS ? 0 : 1], 1);
    if (w->o.send) {
        j->send_us = mono_us();
        int rc = w->o.send(j, &j->m, w->o.send_arg);
        if (rc < 0)
            job_fail(j, push_strerror(rc));
        return rc;
    }
    if (!w->thread_started) {
        job_fail(j, "push not configured");
        return -ENOTSUP;
    }
    pthread_mutex_lock(&w->qlock);
    bool stopping = w->stopping;
    if (!stopping)
        list_push_back(&w->queue, &j->node);
    pthread_mutex_unlock(&w->qlock);
    if (stopping) {
        job_fail(j, "stopping");
        return -ECANCELED;
    }
    uv_async_send(&w->async);
    return 0;
}

/* ---- calls ----------------------------------------------------------------
 */

/* Is dv a wake-up still pending, so that the call must stay held? */
static bool
dev_pending(const struct wdev *dv)
{
    return dv->state == WD_GRACE || dv->state == WD_NOW ||
           (dv->state == WD_PUSHED && !dv->woken && !dv->failed);
}

/* w->lock held. When no device of c is pending any more, give the hold up
 * (once): the proxy then ends the call as soon as every branch is final.
 * 480 stands for the wake-ups when pushes failed and nobody woke. */
static void
maybe_release_locked(struct wake *w, struct wcall *c)
{
    bool failed = false, woken = false;

    if (c->released)
        return;
    for (size_t i = 0; i < c->ndev; i++) {
        const struct wdev *dv = &c->dev[i];
        if (dev_pending(dv))
            return;
        failed |= dv->failed || dv->state == WD_REFUSED || dv->state == WD_GONE;
        woken |= dv->woken;
    }
    c->released = true;
    int status = failed && !woken ? 480 : 0;
    log_info("wake", "wake-ups over, call released call_id=%s status=%d",
             c->call_id, status);
    if (w->o.ops.release)
        w->o.ops.release(c->worker, c->call_id, c->callee, status,
                         w->o.ops.arg);
}

static void
push_call(struct wcall *c, struct wdev *dv)
{
    struct wake *w = c->w;

    /* One call never sends two call pushes to one device: the state moves
     * to PUSHED (or REFUSED, GONE) exactly once. A device replaced while
     * the call rings stays this one entry (device_now), never a new one. */
    if (dv->state == WD_PUSHED || dv->state == WD_REFUSED ||
        dv->state == WD_GONE)
        return;
    /* After the grace time the device may have changed since the call
     * started: push its current token, or nothing if it is gone. */
    if (dv->state == WD_GRACE) {
        struct pushdev now;
        bool here = device_now(w, c->callee, &dv->d, &now);
        pthread_mutex_lock(&w->lock);
        if (here)
            dv->d = now; /* call_push_failed matches the job's token */
        else
            dv->state = WD_GONE;
        pthread_mutex_unlock(&w->lock);
        if (!here) {
            log_info("wake",
                     "no call push, device gone call_id=%s ext=%s "
                     "provider=%s",
                     c->call_id, c->callee, dv->d.provider);
            return;
        }
    }
    /* Timed from the INVITE only when pushed at once: after the UDP grace
     * time the delay is policy, not pushpbx's latency. */
    int rc = submit(w, &dv->d, PUSH_CALL, c, c->expires_s,
                    dv->state == WD_NOW ? c->rx_us : 0);
    pthread_mutex_lock(&w->lock);
    dv->state = rc < 0 ? WD_REFUSED : WD_PUSHED;
    pthread_mutex_unlock(&w->lock);
    if (rc < 0)
        return;
    log_info("wake", "push sent call_id=%s ext=%s provider=%s%s", c->call_id,
             c->callee, dv->d.provider, pushdev_is_voip(&dv->d) ? " voip" : "");
    if (w->o.ringing && !c->ringing_sent && w->o.ops.ringing) {
        c->ringing_sent = true;
        w->o.ops.ringing(c->call, w->o.ops.arg);
    }
}

static void
on_grace(struct tq_entry *e)
{
    struct wcall *c = container_of(e, struct wcall, grace);
    struct wake *w = c->w;
    bool push[PUSHDEV_MAX_PER_EXT] = {false};

    /* Decide under the lock (woken is written by other workers), push
     * outside it (a test's send hook completes jobs synchronously). */
    pthread_mutex_lock(&w->lock);
    for (size_t i = 0; i < c->ndev; i++) {
        struct wdev *dv = &c->dev[i];
        if (dv->state != WD_GRACE)
            continue;
        if (dv->woken ||
            (w->o.ops.branch_provisional &&
             w->o.ops.branch_provisional(c->call, dv->uri, w->o.ops.arg))) {
            dv->state = WD_DIRECT; /* it is awake: rule 8 */
            atomic_fetch_add(&w->n_grace, 1);
            continue;
        }
        push[i] = true;
    }
    pthread_mutex_unlock(&w->lock);
    for (size_t i = 0; i < c->ndev; i++)
        if (push[i])
            push_call(c, &c->dev[i]);
    pthread_mutex_lock(&w->lock);
    maybe_release_locked(w, c);
    pthread_mutex_unlock(&w->lock);
}

static bool
flow_alive(const struct wake *w, unsigned worker, uint64_t flow_id)
{
    if (!flow_id)
        return false;
    if (w->o.ops.flow_alive)
        return w->o.ops.flow_alive(worker, flow_id, w->o.ops.arg);
    return true;
}

static bool
on_call_started(const struct proxy_call_info *info, void *arg)
{
    struct wake *w = arg;
    struct pushdev devs[PUSHDEV_MAX_PER_EXT];

    if (!w->o.devices)
        return false;
    size_t nd =
        pushdev_find_ext(w->o.devices, info->callee, devs, PUSHDEV_MAX_PER_EXT);
    if (nd == 0)
        return false;

    struct wcall *c = xcalloc(1, sizeof(*c));
    c->w = w;
    c->call = info->call;
    c->worker = info->worker;
    copy_str(c->call_id, sizeof(c->call_id), info->call_id);
    copy_str(c->caller, sizeof(c->caller), info->caller);
    copy_str(c->callee, sizeof(c->callee), info->callee);
    copy_str(c->caller_name, sizeof(c->caller_name), info->caller_name);
    c->since_ms = wall_ms(w);
    c->rx_us = info->rx_us;
    c->expires_s = c->since_ms / 1000 + (int64_t)w->o.ring_s;
    tq_entry_init(&c->grace, on_grace);

    struct arena a;
    struct reg_contact *bs = NULL;
    size_t nb = 0;
    arena_init(&a, LOOKUP_ARENA);
    if (w->o.reg &&
        reg_lookup(w->o.reg, slice_cstr(info->callee), &a, &bs, &nb) < 0)
        nb = 0;

    bool grace = false;
    for (size_t i = 0; i < nd; i++) {
        struct wdev *dv = &c->dev[c->ndev++];
        dv->d = devs[i];
        const struct reg_contact *b = NULL;
        for (size_t k = 0; k < nb && !b; k++)
            if (binding_of(&bs[k], &devs[i]))
                b = &bs[k];
        if (b)
            copy_str(dv->uri, sizeof(dv->uri), b->uri);
        if (b && b->transport != REG_TP_UDP &&
            flow_alive(w, info->worker, b->flow_id)) {
            dv->state = WD_DIRECT; /* rule 3: live connection, no push */
            atomic_fetch_add(&w->n_live, 1);
        } else if (b && b->transport == REG_TP_UDP && w->o.grace_ms &&
                   info->worker < TP_MAX_WORKERS &&
                   w->workers[info->worker].tq) {
            dv->state = WD_GRACE; /* direct first; pushed if silent */
            grace = true;
        } else {
            dv->state = WD_NOW;
        }
    }
    arena_fini(&a);

    pthread_mutex_lock(&w->lock);
    list_push_back(&w->calls, &c->node);
    w->ncalls++;
    pthread_mutex_unlock(&w->lock);

    for (size_t i = 0; i < c->ndev; i++)
        if (c->dev[i].state == WD_NOW)
            push_call(c, &c->dev[i]);
    if (grace) {
        const struct wworker *ww = &w->workers[info->worker];
        tq_heap_add(ww->tq, &c->grace,
                    ww->now_ms(ww->now_arg) + (uint64_t)w->o.grace_ms);
    }
    /* Held while a wake-up is pending; if none is (every push refused or
     * already failed), the proxy never holds it and needs no release. */
    bool hold = false;
    pthread_mutex_lock(&w->lock);
    for (size_t i = 0; i < c->ndev; i++)
        hold |= dev_pending(&c->dev[i]);
    c->released = !hold;
    pthread_mutex_unlock(&w->lock);
    return hold;
}

static struct wcall *
find_call_locked(struct wake *w, const char *call_id, const char *callee)
{
    struct list_node *n;
    for (n = w->calls.next; n != &w->calls; n = n->next) {
        struct wcall *c = container_of(n, struct wcall, node);
        if (strcmp(c->call_id, call_id) == 0 && strcmp(c->callee, callee) == 0)
            return c;
    }
    return NULL;
}

/* Remember a VoIP device that was pushed and did not wake in time: d is
 * the device as it is now (its current token; matched by instance too). */
static void
ended_add(struct wake *w, const struct wcall *c, const struct pushdev *d,
          const char *reason)
{
    struct ended *e = xcalloc(1, sizeof(*e));

    copy_str(e->ext, sizeof(e->ext), c->callee);
    copy_str(e->provider, sizeof(e->provider), d->provider);
    copy_str(e->prid, sizeof(e->prid), d->prid);
    copy_str(e->instance, sizeof(e->instance), d->instance);
    copy_str(e->call_id, sizeof(e->call_id), c->call_id);
    copy_str(e->caller, sizeof(e->caller), c->caller);
    copy_str(e->caller_name, sizeof(e->caller_name), c->caller_name);
    copy_str(e->reason, sizeof(e->reason), reason);
    e->until_s = c->expires_s;
    pthread_mutex_lock(&w->lock);
    list_push_back(&w->ended, &e->node);
    if (++w->nended > ENDED_MAX) { /* bounded: drop the oldest */
        struct ended *old = container_of(w->ended.next, struct ended, node);
        list_remove(&old->node);
        w->nended--;
        free(old);
    }
    pthread_mutex_unlock(&w->lock);
}

static void
on_call_ended(const struct proxy_call_record *rec, void *arg)
{
    struct wake *w = arg;

    pthread_mutex_lock(&w->lock);
    struct wcall *c = find_call_locked(w, rec->call_id, rec->callee);
    if (c) {
        list_remove(&c->node);
        w->ncalls--;
    }
    pthread_mutex_unlock(&w->lock);
    if (!c)
        return;
    tq_cancel(&c->grace);

    bool answered = rec->outcome == PROXY_OUT_ANSWERED;
    /* RFC 3326 Reason for the rule 7 CANCEL: 200 tells CallKit (and the
     * app) the call was answered on another device; 487 that it ended
     * unanswered, the text says how. */
    const char *reason = answered
                             ? "SIP;cause=200;text=\"Call completed elsewhere\""
                         : rec->outcome == PROXY_OUT_CANCELLED
                             ? "SIP;cause=487;text=\"Call cancelled\""
                         : rec->outcome == PROXY_OUT_NO_ANSWER
                             ? "SIP;cause=487;text=\"Call not answered\""
                             : "SIP;cause=487;text=\"Call ended\"";
    enum push_type type = answered ? PUSH_ANSWERED_ELSEWHERE : PUSH_MISSED;
    for (size_t i = 0; i < c->ndev; i++) {
        struct wdev *dv = &c->dev[i];
        if (dv->state != WD_PUSHED)
            continue;
        /* Endings go to the device as it is now, not to the token the
         * call push went to: a woken app may have registered a new token
         * (same +sip.instance), and the old one is dead at the provider
         * after a real rotation. The wcall keeps one entry per device, so
         * a replaced device still gets one ending push and never a second
         * call push. */
        struct pushdev now;
        bool here = device_now(w, c->callee, &dv->d, &now);
        /* A dead token cannot take a missed push either (normally gone
         * from the table already; kept if its delete failed). */
        if (here && dv->dead && strcmp(now.provider, dv->d.provider) == 0 &&
            strcmp(now.prid, dv->d.prid) == 0)
            here = false;
        /* The device that answered needs no notification. */
        if (answered && dv->uri[0] && strcmp(dv->uri, rec->answered_by) == 0)
            continue;
        if (answered && rec->answered_by[0] &&
            (uri_has_token(rec->answered_by, &dv->d) ||
             (here && uri_has_token(rec->answered_by, &now))))
            continue;
        if (!here) {
            log_info(
                "wake", "no %s push, device gone call_id=%s ext=%s provider=%s",
                push_type_name(type), c->call_id, c->callee, dv->d.provider);
        } else {
            if (strcmp(now.prid, dv->d.prid) != 0)
                log_info("wake",
                         "%s push to the device's new token call_id=%s "
                         "ext=%s provider=%s",
                         push_type_name(type), c->call_id, c->callee,
                         now.provider);
            (void)submit(w, &now, type, c, 0, 0);
        }
        /* Rule 7 only for a VoIP push that was delivered (or may still
         * be): a failed one wakes nothing. The call push's kind decides
         * (dv->d); the entry matches the REGISTER by the current token or
         * the instance. */
        if (!dv->woken && !dv->failed && pushdev_is_voip(&dv->d))
            ended_add(w, c, here ? &now : &dv->d, reason);
    }
    free(c);
}

/* A pushed device woke: time its INVITE from this REGISTER's read. */
static void
wait_add(struct wake *w, const char *uri)
{
    uint64_t rx = tp_rx_us();
    if (!rx)
        return; /* not inside a receive callback (unit tests) */
    pthread_mutex_lock(&w->lat_lock);
    size_t i = 0;
    while (i < w->nwait && strcmp(w->wait[i].uri, uri) != 0)
        i++;
    if (i == w->nwait) {
        if (w->nwait == WAIT_MAX) { /* bounded: drop the oldest */
            memmove(&w->wait[0], &w->wait[1],
                    (WAIT_MAX - 1) * sizeof(w->wait[0]));
            w->nwait--;
        }
        i = w->nwait++;
        copy_str(w->wait[i].uri, sizeof(w->wait[i].uri), uri);
    }
    w->wait[i].reg_us = rx;
    atomic_store(&w->nwait_hint, w->nwait);
    pthread_mutex_unlock(&w->lat_lock);
}

/* Proxy observer: a branch's INVITE was handed to the transport. If it
 * goes to a device woken by a REGISTER (its Contact URI), that closes
 * REGISTER_TO_INVITE. A load and a branch while no woken device waits. */
static void
on_branch_sent(const struct proxy_branch_info *bi, void *arg)
{
    struct wake *w = arg;

    if (atomic_load_explicit(&w->nwait_hint, memory_order_relaxed) == 0)
        return;
    uint64_t now = mono_us(), us = 0;
    bool hit = false;

    pthread_mutex_lock(&w->lat_lock);
    /* O(WAIT_MAX), only while woken devices wait (a few at a time). */
    for (size_t i = 0; i < w->nwait;) {
        struct wwait *e = &w->wait[i];
        bool match = !hit && strcmp(e->uri, bi->uri) == 0;
        if (match) {
            hit = true;
            us = now - e->reg_us;
        }
        if (match || now - e->reg_us > WAIT_MAX_AGE_US) {
            memmove(e, e + 1, (w->nwait - i - 1) * sizeof(*e));
            w->nwait--;
            continue;
        }
        i++;
    }
    atomic_store(&w->nwait_hint, w->nwait);
    pthread_mutex_unlock(&w->lat_lock);
    if (hit)
        wake_lat_add(w, WAKE_LAT_REGISTER_TO_INVITE, us);
}

void
wake_lat_add(struct wake *w, enum wake_interval which, uint64_t us)
{
    if ((unsigned)which >= WAKE_LAT_COUNT)
        return;
    struct wlat *l = &w->lat[which];
    size_t b = 0;
    while (b < WAKE_HIST_BUCKETS && (double)us / 1e6 > wake_hist_bounds_s[b])
        b++;
    if (b < WAKE_HIST_BUCKETS)
        atomic_fetch_add(&l->bucket[b], 1);
    atomic_fetch_add(&l->count, 1);
    atomic_fetch_add(&l->sum_us, us);
    pthread_mutex_lock(&w->lat_lock);
    l->ring[l->next] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    l->next = (l->next + 1) % WAKE_LAT_SAMPLES;
    if (l->n < WAKE_LAT_SAMPLES)
        l->n++;
    pthread_mutex_unlock(&w->lat_lock);
}

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest sample with at least q of them at or below. */
static uint64_t
rank(const uint32_t *v, size_t n, double q)
{
    size_t k = (size_t)(q * (double)n + 0.999999);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return v[k - 1];
}

void
wake_lat_get(struct wake *w, enum wake_interval which, bool exact,
             struct wake_lat_stats *out)
{
    memset(out, 0, sizeof(*out));
    if ((unsigned)which >= WAKE_LAT_COUNT)
        return;
    struct wlat *l = &w->lat[which];
    uint64_t cum = 0;
    for (size_t i = 0; i < WAKE_HIST_BUCKETS; i++) {
        cum += atomic_load(&l->bucket[i]);
        out->le[i] = cum;
    }
    out->count = atomic_load(&l->count);
    out->sum_s = (double)atomic_load(&l->sum_us) / 1e6;
    if (!exact)
        return;
    uint32_t *v = xmalloc(WAKE_LAT_SAMPLES * sizeof(*v));
    pthread_mutex_lock(&w->lat_lock);
    size_t n = l->n;
    memcpy(v, l->ring, n * sizeof(*v)); /* order does not matter */
    pthread_mutex_unlock(&w->lat_lock);
    if (n) {
        qsort(v, n, sizeof(*v), cmp_u32);
        double sum = 0;
        for (size_t i = 0; i < n; i++)
            sum += v[i];
        out->samples = n;
        out->min_us = v[0];
        out->p50_us = rank(v, n, 0.50);
        out->p90_us = rank(v, n, 0.90);
        out->p99_us = rank(v, n, 0.99);
        out->p999_us = rank(v, n, 0.999);
        out->max_us = v[n - 1];
        out->mean_us = sum / (double)n;
    }
    free(v);
}

void
wake_on_register(struct wake *w, const char *ext,
                 const struct reg_contact *contacts, size_t count)
{
    for (size_t k = 0; k < count; k++) {
        const struct reg_contact *b = &contacts[k];
        char prov[16], prid[PUSHDEV_PRID_MAX + 1];
        bool pn = uri_pn(b->uri, prov, sizeof(prov), prid, sizeof(prid));
        const char *inst = b->instance ? b->instance : "";
        if (!pn && !inst[0])
            continue;

        /* Devices of ringing calls: woken (the proxy adds the branch). */
        pthread_mutex_lock(&w->lock);
        struct list_node *n;
        for (n = w->calls.next; n != &w->calls; n = n->next) {
            struct wcall *c = container_of(n, struct wcall, node);
            if (strcmp(c->callee, ext) != 0)
                continue;
            for (size_t i = 0; i < c->ndev; i++) {
                struct wdev *dv = &c->dev[i];
                bool same = (pn && strcmp(prov, dv->d.provider) == 0 &&
                             strcmp(prid, dv->d.prid) == 0) ||
                            (inst[0] && strcmp(inst, dv->d.instance) == 0);
                if (!same || dv->woken)
                    continue;
                dv->woken = true;
                copy_str(dv->uri, sizeof(dv->uri), b->uri);
                if (dv->state == WD_PUSHED) {
                    atomic_fetch_add(&w->n_woken, 1);
                    wait_add(w, b->uri);
                }
            }
            /* Its binding is stored now (the bind callback runs before
             * the 200), so the proxy forks to it before it lets go. */
            maybe_release_locked(w, c);
        }
        /* A VoIP device woken for a call that already ended (rule 7). */
        struct ended *hit = NULL;
        int64_t now_s = wall_ms(w) / 1000;
        struct list_node *tmp;
        list_for_each_safe(n, tmp, &w->ended)
        {
            struct ended *e = container_of(n, struct ended, node);
            if (e->until_s < now_s) { /* its push has expired */
                list_remove(n);
                w->nended--;
                free(e);
                continue;
            }
            bool same = strcmp(e->ext, ext) == 0 &&
                        ((pn && strcmp(prov, e->provider) == 0 &&
                          strcmp(prid, e->prid) == 0) ||
                         (inst[0] && strcmp(inst, e->instance) == 0));
            if (same && !hit) {
                list_remove(n);
                w->nended--;
                hit = e;
            }
        }
        pthread_mutex_unlock(&w->lock);
        if (hit) {
            struct wake_late info = {.call_id = hit->call_id,
                                     .caller = hit->caller,
                                     .caller_name = hit->caller_name,
                                     .callee = hit->ext,
                                     .reason = hit->reason};
            atomic_fetch_add(&w->n_late, 1);
            if (w->o.ops.late_cancel) {
                log_info("wake",
                         "ended call: INVITE+CANCEL to woken voip "
                         "device call_id=%s ext=%s",
                         hit->call_id, ext);
                w->o.ops.late_cancel(b, &info, w->o.ops.arg);
            } else {
                log_notice("wake",
                           "ended call: cannot INVITE+CANCEL the "
                           "woken voip device (no hook) "
                           "call_id=%s ext=%s",
                           hit->call_id, ext);
            }
            free(hit);
        }
    }
}

/* ---- set-up ---------------------------------------------------------------
 */

int
wake_new(const struct wake_opts *o, struct wake **out)
{
    if (!o)
        return -EINVAL;
    struct wake *w = xcalloc(1, sizeof(*w));
    w->o = *o;
    pthread_mutex_init(&w->lock, NULL);
    pthread_mutex_init(&w->qlock, NULL);
    pthread_mutex_init(&w->lat_lock, NULL);
    for (size_t i = 0; i < WAKE_LAT_COUNT; i++)
        w->lat[i].ring = xcalloc(WAKE_LAT_SAMPLES, sizeof(uint32_t));
    list_init(&w->calls);
    list_init(&w->ended);
    list_init(&w->queue);
    w->recent_cap = o->recent_max ? o->recent_max : 200;
    w->recent = xcalloc(w->recent_cap, sizeof(*w->recent));
    *out = w;
    return 0;
}

const struct proxy_observer *
wake_observer(void)
{
    static const struct proxy_observer ops = {
        .call_started = on_call_started,
        .call_ended = on_call_ended,
        .branch_sent = on_branch_sent,
    };
    return &ops;
}

int
wake_attach(struct wake *w, struct proxy_shared *sh)
{
    return proxy_observer_add(sh, wake_observer(), w);
}

void
wake_worker_set(struct wake *w, unsigned idx, struct tq *tq,
                uint64_t (*now_ms)(void *arg), void *now_arg)
{
    if (idx >= TP_MAX_WORKERS)
        return;
    w->workers[idx] = (struct wworker){tq, now_ms, now_arg};
}

void
wake_worker_fini(struct wake *w, unsigned idx)
{
    struct list_node *n, *tmp;

    pthread_mutex_lock(&w->lock);
    list_for_each_safe(n, tmp, &w->calls)
    {
        struct wcall *c = container_of(n, struct wcall, node);
        if (c->worker != idx)
            continue;
        tq_cancel(&c->grace);
        list_remove(n);
        w->ncalls--;
        free(c);
    }
    pthread_mutex_unlock(&w->lock);
}

void
wake_free(struct wake *w)
{
    struct list_node *n, *tmp;

    if (!w)
        return;
    if (w->thread_started) {
        pthread_mutex_lock(&w->qlock);
        w->stopping = true;
        pthread_mutex_unlock(&w->qlock);
        uv_async_send(&w->async);
        uv_thread_join(&w->thread);
        uv_loop_close(&w->loop);
    }
    /* Calls still listed belong to workers that are gone (their tq with
     * them): free without touching the timers. */
    list_for_each_safe(n, tmp, &w->calls)
    {
        free(container_of(n, struct wcall, node));
    }
    list_for_each_safe(n, tmp, &w->ended)
    {
        free(container_of(n, struct ended, node));
    }
    pthread_mutex_destroy(&w->lock);
    pthread_mutex_destroy(&w->qlock);
    pthread_mutex_destroy(&w->lat_lock);
    for (size_t i = 0; i < WAKE_LAT_COUNT; i++)
        free(w->lat[i].ring);
    free(w->recent);
    free(w);
}

size_t
wake_recent(struct wake *w, struct wake_push_entry *out, size_t cap)
{
    size_t n = 0;

    pthread_mutex_lock(&w->lock);
    for (size_t i = 0; i < w->recent_count && n < cap; i++) {
        size_t idx = (w->recent_next + w->recent_cap - 1 - i) % w->recent_cap;
        out[n++] = w->recent[idx];
    }
    pthread_mutex_unlock(&w->lock);
    return n;
}

void
wake_stats_get(struct wake *w, struct wake_stats *out)
{
    out->sent = atomic_load(&w->n_sent);
    out->delivered = atomic_load(&w->n_delivered);
    out->failed = atomic_load(&w->n_failed);
    out->dead = atomic_load(&w->n_dead);
    out->suppressed_live = atomic_load(&w->n_live);
    out->suppressed_grace = atomic_load(&w->n_grace);
    out->woken = atomic_load(&w->n_woken);
    out->late_cancels = atomic_load(&w->n_late);
    for (int p = 0; p < 2; p++) {
        out->sent_by[p] = atomic_load(&w->sent_by[p]);
        out->delivered_by[p] = atomic_load(&w->delivered_by[p]);
        out->failed_by[p] = atomic_load(&w->failed_by[p]);
        out->dead_by[p] = atomic_load(&w->dead_by[p]);
    }
    for (size_t i = 0; i < WAKE_LATENCY_BUCKETS; i++)
        out->latency_le[i] = atomic_load(&w->lat_le[i]);
    out->latency_count = atomic_load(&w->lat_count);
    out->latency_sum_s = (double)atomic_load(&w->lat_sum_us) / 1e6;
    pthread_mutex_lock(&w->lock);
    out->pending_calls = w->ncalls;
    pthread_mutex_unlock(&w->lock);
}

size_t
wake_pending_list(struct wake *w, struct wake_pending *out, size_t cap)
{
    size_t n = 0;

    pthread_mutex_lock(&w->lock);
    for (struct list_node *p = w->calls.next; p != &w->calls && n < cap;
         p = p->next) {
        const struct wcall *c = container_of(p, struct wcall, node);
        struct wake_pending *e = &out[n++];
        memset(e, 0, sizeof(*e));
        copy_str(e->call_id, sizeof(e->call_id), c->call_id);
        copy_str(e->caller, sizeof(e->caller), c->caller);
        copy_str(e->callee, sizeof(e->callee), c->callee);
        e->since_ms = c->since_ms;
        e->expires_at = c->expires_s;
        for (size_t i = 0; i < c->ndev; i++) {
            if (c->dev[i].woken)
                e->woken++;
            else if (c->dev[i].state == WD_PUSHED)
                e->pushed++;
        }
    }
    pthread_mutex_unlock(&w->lock);
    return n;
}
