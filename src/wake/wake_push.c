/*
 * wake/wake_push: the push sender. push.h is single-loop, so there is one
 * push client (push/client.c: libcurl multi, one HTTP/2 connection per
 * provider) per loop that sends: each worker's own
 * (wake_worker_push_start), and the push thread's on its own loop.
 *
 * wake_submit copies the job (one malloc, every string copied in). On a
 * worker with its own client it calls push_send right there: the request
 * is written before the worker's callback returns, with no thread to wake
 * (the INVITE -> push written p99 on a loaded machine was the push
 * thread's scheduling, milliseconds, docs/wake.md "Measured"). Otherwise
 * (no client of its own, the worker stopping, push_send refusing the
 * push) the job is queued under w->qlock and signalled with uv_async_send
 * (w->async, "the push door"); the push thread starts it. Whichever loop
 * started a job completes it (wake_job_done: counters, the recent-pushes
 * ring, the INVITE_TO_PUSH sample, a dead token's device removed, a failed
 * call push marked on its call) and frees it. Workers never wait for a
 * result.
 */
#include <pthread.h>
#include <uv.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/list.h"
#include "base/log.h"
#include "base/xmalloc.h"
#include "registrar/pushdev.h"
#include "transport/tp.h"
#include "wake/wake_int.h"

void
wake_recent_add(struct wake *w, const struct wake_job *j,
                const struct push_result *r)
{
    struct wake_push_entry e;
    memset(&e, 0, sizeof(e));
    e.time_ms = wake_wall_ms(w);
    wake_copy_str(e.call_id, sizeof(e.call_id), j->call_id);
    wake_copy_str(e.ext, sizeof(e.ext), j->to);
    wake_copy_str(e.provider, sizeof(e.provider),
                  push_provider_name(j->m.provider));
    snprintf(e.token, sizeof(e.token), "%.8s", j->token);
    wake_copy_str(e.type, sizeof(e.type), push_type_name(j->m.type));
    wake_copy_str(e.result, sizeof(e.result), push_status_name(r->status));
    e.http_status = r->http_status;
    wake_copy_str(e.reason, sizeof(e.reason), r->reason);
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
         * In memory, the SQLite delete queued to the store's writer: fine
         * on a worker too (its own push client completes there). */
        if (w->o.devices)
            (void)pushdev_remove_token(w->o.devices, prov, j->token);
        break;
    default:
        atomic_fetch_add(&w->n_failed, 1);
        atomic_fetch_add(&w->failed_by[pi], 1);
        break;
    }
    wake_recent_add(w, j, r);
    if (j->rx_us && r->write_us && j->send_us >= j->rx_us)
        wake_lat_add(w, WAKE_LAT_INVITE_TO_PUSH,
                     j->send_us - j->rx_us + r->write_us);
    if (j->m.type == PUSH_CALL && r->status != PUSH_DELIVERED &&
        r->status != PUSH_CANCELLED)
        wake_call_push_failed(w, j, r->status == PUSH_DEAD_TOKEN);
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

void
wake_job_fail(struct wake_job *j, const char *reason)
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
        j->send_us = wake_mono_us();
        int rc = stopping ? -ECANCELED
                          : push_send(w->client, &j->m, on_push_done, j);
        if (rc < 0)
            wake_job_fail(j, stopping ? "stopping" : push_strerror(rc));
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

    (void)pthread_setname_np(pthread_self(), "pbx-push");
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

int
wake_worker_push_start(struct wake *w, unsigned idx,
                       const struct push_conf *conf, char *err, size_t errlen)
{
    if (idx >= TP_MAX_WORKERS || !w->workers[idx].tp || w->workers[idx].push) {
        snprintf(err, errlen, "wake: worker %u has no transport", idx);
        return -EINVAL;
    }
    w->workers[idx].push =
        push_client_new(tp_loop(w->workers[idx].tp), conf, err, errlen);
    return w->workers[idx].push ? 0 : -EINVAL;
}

void
wake_worker_push_stop(struct wake *w, unsigned idx)
{
    if (idx >= TP_MAX_WORKERS || !w->workers[idx].push)
        return;
    struct push_client *pc = w->workers[idx].push;
    w->workers[idx].push = NULL; /* from now on: the push thread */
    push_client_free(pc);        /* cancels what is in flight */
}

/* Hand a push to the provider client: the call's worker's own client when
 * it has one (we are on that worker: every caller runs on c->worker), else
 * the push thread. Worker thread; never blocks beyond a mutex. Returns 0
 * when accepted for sending. */
int
wake_submit(struct wake *w, const struct pushdev *d, enum push_type type,
            const struct wcall *c, int64_t expires_s, uint64_t rx_us)
{
    struct wake_job *j = xcalloc(1, sizeof(*j));

    j->w = w;
    j->rx_us = rx_us;
    wake_copy_str(j->token, sizeof(j->token), d->prid);
    wake_copy_str(j->param, sizeof(j->param), d->param);
    wake_copy_str(j->call_id, sizeof(j->call_id), c->call_id);
    wake_copy_str(j->from, sizeof(j->from), c->caller);
    wake_copy_str(j->from_name, sizeof(j->from_name), c->caller_name);
    wake_copy_str(j->to, sizeof(j->to), c->callee);
    j->m = (struct push_msg){
        .provider = strcmp(d->provider, "apns") == 0 ? PUSH_APNS : PUSH_FCM,
        .token = j->token,
        .param = j->param[0] ? j->param : NULL,
        .type = type,
        .call_id = j->call_id,
        .from = j->from,
        .from_name = j->from_name,
        .to = j->to,
        .sent_at_s = wake_wall_ms(w) / 1000,
        .expires_at_s = type == PUSH_CALL ? expires_s : 0,
    };
    atomic_fetch_add(&w->n_sent, 1);
    atomic_fetch_add(&w->sent_by[j->m.provider == PUSH_APNS ? 0 : 1], 1);
    if (w->o.send) {
        j->send_us = wake_mono_us();
        int rc = w->o.send(j, &j->m, w->o.send_arg);
        if (rc < 0)
            wake_job_fail(j, push_strerror(rc));
        return rc;
    }
    struct push_client *pc =
        c->worker < TP_MAX_WORKERS ? w->workers[c->worker].push : NULL;
    if (pc) {
        j->send_us = wake_mono_us();
        if (push_send(pc, &j->m, on_push_done, j) == 0)
            return 0;
        /* Refused at once (bad token, too large, queue full): the push
         * thread gets it and reports the refusal through wake_job_done
         * after the caller has marked the device pushed, as for a push
         * that went there first (a synchronous failure here would reach
         * wake_call_push_failed before that). */
    }
    if (!w->thread_started) {
        wake_job_fail(j, "push not configured");
        return -ENOTSUP;
    }
    pthread_mutex_lock(&w->qlock);
    bool stopping = w->stopping;
    if (!stopping)
        list_push_back(&w->queue, &j->node);
    pthread_mutex_unlock(&w->qlock);
    if (stopping) {
        wake_job_fail(j, "stopping");
        return -ECANCELED;
    }
    uv_async_send(&w->async);
    return 0;
}

/* A `message` push for a stored chat message (docs/messages.md): the
 * payload (push/payload.c) makes it an alert to the bundle topic on iOS,
 * a high-priority data message on Android. */
int
wake_submit_message(struct wake *w, const struct pushdev *d,
                    const struct proxy_msg_info *mi)
{
    struct wake_job *j = xcalloc(1, sizeof(*j));
    size_t plen = mi->preview_len < sizeof(j->preview) ? mi->preview_len
                                                        : sizeof(j->preview);

    j->w = w;
    wake_copy_str(j->token, sizeof(j->token), d->prid);
    wake_copy_str(j->param, sizeof(j->param), d->param);
    wake_copy_str(j->call_id, sizeof(j->call_id), mi->call_id);
    wake_copy_str(j->from, sizeof(j->from), mi->from);
    wake_copy_str(j->from_name, sizeof(j->from_name), mi->from_name);
    wake_copy_str(j->to, sizeof(j->to), mi->ext);
    wake_copy_str(j->content_type, sizeof(j->content_type),
                  mi->content_type);
    snprintf(j->msg_id, sizeof(j->msg_id), "%" PRIu64, mi->id);
    if (plen)
        memcpy(j->preview, mi->preview, plen);
    j->m = (struct push_msg){
        .provider = strcmp(d->provider, "apns") == 0 ? PUSH_APNS : PUSH_FCM,
        .token = j->token,
        .param = j->param[0] ? j->param : NULL,
        .type = PUSH_MESSAGE,
        .call_id = j->call_id,
        .from = j->from,
        .from_name = j->from_name,
        .to = j->to,
        .sent_at_s = wake_wall_ms(w) / 1000,
        .expires_at_s = mi->expires_at_s,
        .message_id = j->msg_id,
        .content_type = j->content_type,
        /* [push] message_preview = no: no text leaves for Apple/Google */
        .preview = w->o.message_preview ? j->preview : NULL,
        .preview_len = w->o.message_preview ? plen : 0,
    };
    atomic_fetch_add(&w->n_sent, 1);
    atomic_fetch_add(&w->sent_by[j->m.provider == PUSH_APNS ? 0 : 1], 1);
    if (w->o.send) {
        j->send_us = wake_mono_us();
        int rc = w->o.send(j, &j->m, w->o.send_arg);
        if (rc < 0)
            wake_job_fail(j, push_strerror(rc));
        return rc;
    }
    if (!w->thread_started) {
        wake_job_fail(j, "push not configured");
        return -ENOTSUP;
    }
    pthread_mutex_lock(&w->qlock);
    bool stopping = w->stopping;
    if (!stopping)
        list_push_back(&w->queue, &j->node);
    pthread_mutex_unlock(&w->qlock);
    if (stopping) {
        wake_job_fail(j, "stopping");
        return -ECANCELED;
    }
    uv_async_send(&w->async);
    return 0;
}

void
wake_push_stop(struct wake *w)
{
    if (!w->thread_started)
        return;
    pthread_mutex_lock(&w->qlock);
    w->stopping = true;
    pthread_mutex_unlock(&w->qlock);
    uv_async_send(&w->async);
    uv_thread_join(&w->thread);
    uv_loop_close(&w->loop);
    w->thread_started = false;
}
