/*
 * app/worker: thread + loop per worker; see worker.h.
 *
 * Graceful stop: worker_drain() wakes the loop through the drain async;
 * the proxy answers its ringing calls and CANCELs their branches
 * (proxy_drain), and a 10 ms tick on the worker's tq sets idle once
 * proxy_busy() is 0 and no REGISTER is parked (core_parked), which main
 * polls.
 *
 * Shutdown: worker_stop() wakes the loop through the stop async; on the
 * worker thread that answers what is still open (proxy_drain, and 503 to
 * the parked REGISTERs: core_commits_close), frees the
 * transaction table (each transaction gets
 * its TERMINATED event), then the transport, then closes the async itself.
 * Once libuv has run every close callback the loop has no handles left and
 * uv_run returns, ending the thread.
 */
#include "app/worker.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "app/app_wake.h"
#include "base/log.h"
#include "proxy/proxy.h"

#define DRAIN_TICK_MS 10

static void
on_drain_tick(struct tq_entry *e)
{
    struct worker *w = container_of(e, struct worker, drain_tick);
    size_t busy = (w->core.proxy ? proxy_busy(w->core.proxy) : 0) +
                  core_parked(&w->core);

    if (busy == 0) {
        atomic_store(&w->idle, true);
        return;
    }
    tq_heap_add(tp_tq(w->tp), &w->drain_tick,
                tp_now_ms(w->tp) + DRAIN_TICK_MS);
}

static void
on_drain(uv_async_t *h)
{
    struct worker *w = h->data;

    if (!w->tp || atomic_load(&w->idle) || tq_armed(&w->drain_tick))
        return; /* stopping, or already draining */
    if (w->core.proxy)
        proxy_drain(w->core.proxy, w->retry_after_s, false);
    on_drain_tick(&w->drain_tick);
}

static void
on_commits(uv_async_t *h)
{
    struct worker *w = h->data;

    if (w->tp)
        core_commits_run(&w->core);
}

static void
on_ping(uv_async_t *h)
{
    struct worker *w = h->data;

    atomic_store(&w->ping_seen, atomic_load(&w->ping_sent));
}

uint64_t
worker_ping(struct worker *w)
{
    uint64_t n = atomic_fetch_add(&w->ping_sent, 1) + 1;

    uv_async_send(&w->ping);
    return n;
}

bool
worker_answered(const struct worker *w, uint64_t n)
{
    return atomic_load(&w->ping_seen) >= n;
}

static void
on_stop(uv_async_t *h)
{
    struct worker *w = h->data;

    if (w->tp)
        tq_cancel(&w->drain_tick);
    /* The worker's push client first: the endings proxy_drain makes then
     * go to the push thread, which outlives the workers. */
    app_wake_worker_stop(w->wake, w->index);
    /* Answer whatever is still open before the transactions go: a
     * caller whose call was cut short by the grace time still gets 503
     * rather than silence (over TCP the write may not make it). */
    if (w->core.proxy)
        proxy_drain(w->core.proxy, w->retry_after_s, true);
    core_commits_close(&w->core, w->retry_after_s);
    txn_table_free(w->tt);
    w->tt = NULL;
    proxy_free(w->core.proxy); /* its calls ended with the txn table */
    w->core.proxy = NULL;
    tp_free(w->tp);
    w->tp = NULL;
    uv_close((uv_handle_t *)&w->stop, NULL);
    uv_close((uv_handle_t *)&w->drain, NULL);
    uv_close((uv_handle_t *)&w->ping, NULL);
    uv_close((uv_handle_t *)&w->commits, NULL);
}

int
worker_init(struct worker *w, unsigned index, const struct app_sip_cfg *sip,
            struct tp_tls *tls, struct tp_group *group,
            const struct tp_listen_spec *specs, size_t count, char *err,
            size_t errlen)
{
    struct tp_cfg tc;
    struct txn_cfg xc;
    int rc;

    *w = (struct worker){.index = index, .group = group};
    rc = uv_loop_init(&w->loop);
    if (rc < 0) {
        snprintf(err, errlen, "uv_loop_init: %s", uv_strerror(rc));
        return rc;
    }
    rc = uv_async_init(&w->loop, &w->stop, on_stop);
    if (rc < 0) {
        snprintf(err, errlen, "uv_async_init: %s", uv_strerror(rc));
        uv_loop_close(&w->loop);
        return rc;
    }
    w->stop.data = w;
    rc = uv_async_init(&w->loop, &w->drain, on_drain);
    if (rc < 0) {
        snprintf(err, errlen, "uv_async_init: %s", uv_strerror(rc));
        uv_close((uv_handle_t *)&w->stop, NULL);
        uv_run(&w->loop, UV_RUN_DEFAULT);
        uv_loop_close(&w->loop);
        return rc;
    }
    w->drain.data = w;
    rc = uv_async_init(&w->loop, &w->ping, on_ping);
    if (rc < 0) {
        snprintf(err, errlen, "uv_async_init: %s", uv_strerror(rc));
        uv_close((uv_handle_t *)&w->stop, NULL);
        uv_close((uv_handle_t *)&w->drain, NULL);
        uv_run(&w->loop, UV_RUN_DEFAULT);
        uv_loop_close(&w->loop);
        return rc;
    }
    w->ping.data = w;
    rc = uv_async_init(&w->loop, &w->commits, on_commits);
    if (rc < 0) {
        snprintf(err, errlen, "uv_async_init: %s", uv_strerror(rc));
        uv_close((uv_handle_t *)&w->stop, NULL);
        uv_close((uv_handle_t *)&w->drain, NULL);
        uv_close((uv_handle_t *)&w->ping, NULL);
        uv_run(&w->loop, UV_RUN_DEFAULT);
        uv_loop_close(&w->loop);
        return rc;
    }
    w->commits.data = w;
    atomic_init(&w->ping_sent, 0);
    atomic_init(&w->ping_seen, 0);
    w->retry_after_s = 5;
    tq_entry_init(&w->drain_tick, on_drain_tick);
    atomic_init(&w->idle, false);

    tp_cfg_defaults(&tc);
    tc.worker = index;
    tc.max_conns = sip->max_connections;
    tc.idle_timeout_ms = sip->tcp_idle_timeout_s * 1000u;
    tc.max_per_source = sip->tcp_max_per_source;
    tc.first_message_ms = sip->tcp_first_message_ms;
    tc.message_ms = sip->tcp_message_ms;
    tc.tls = tls; /* TLS connections obey the same limits */
    tc.group = group;
    tc.on_recv = core_on_recv;
    tc.on_flow_closed = core_on_flow_closed;
    tc.arg = &w->core;
    rc = tp_new(&w->loop, &tc, &w->tp);
    if (rc < 0) {
        snprintf(err, errlen, "transport: %s", strerror(-rc));
        goto fail;
    }
    core_init(&w->core, w->tp);
    core_commits_open(&w->core, &w->commits);

    txn_cfg_defaults(&xc);
    xc.timers.t1_ms = sip->t1_ms;
    xc.timers.t2_ms = sip->t2_ms;
    xc.timers.t4_ms = sip->t4_ms;
    xc.on_request = core_on_request;
    xc.arg = &w->core;
    rc = txn_table_new(w->tp, &xc, &w->tt);
    if (rc < 0) {
        snprintf(err, errlen, "transactions: %s", strerror(-rc));
        goto fail;
    }
    w->core.tt = w->tt;

    for (size_t i = 0; i < count; i++) {
        rc = tp_listen(w->tp, &specs[i], err, errlen);
        if (rc < 0)
            goto fail;
    }
    return 0;
fail:
    /* Close what exists and let the loop run the close callbacks. */
    on_stop(&w->stop);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
    if (w->core.tp)
        core_fini(&w->core);
    return rc < 0 ? rc : -EINVAL;
}

static void
run(void *arg)
{
    struct worker *w = arg;
    char name[16];

    /* Named for top -H, perf and bench/spread-bench.sh's CPU split. */
    snprintf(name, sizeof(name), "pbx-worker%u", w->index);
    (void)pthread_setname_np(pthread_self(), name);
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

int
worker_start(struct worker *w)
{
    int rc = uv_thread_create(&w->thread, run, w);
    if (rc == 0)
        w->running = true;
    return rc;
}

void
worker_drain(struct worker *w, unsigned retry_after_s)
{
    w->retry_after_s = retry_after_s;
    uv_async_send(&w->drain);
}

bool
worker_idle(struct worker *w)
{
    return atomic_load(&w->idle);
}

void
worker_stop(struct worker *w)
{
    uv_async_send(&w->stop);
}

void
worker_fini(struct worker *w)
{
    int rc;

    if (w->running)
        uv_thread_join(&w->thread);
    else
        uv_run(&w->loop, UV_RUN_DEFAULT); /* runs on_stop if sent */
    {
        const struct core_stats *st = &w->core.stats;
        log_info("app",
                 "worker %u: answered=%" PRIu64 " malformed_answered=%" PRIu64
                 " malformed_dropped=%" PRIu64 " acks_absorbed=%" PRIu64
                 " stray_responses=%" PRIu64,
                 w->index, st->answered, st->malformed_answered,
                 st->malformed_dropped, st->acks_absorbed, st->stray_responses);
    }
    rc = uv_loop_close(&w->loop);
    if (rc < 0)
        log_warn("app", "worker %u: loop still has handles at exit: %s",
                 w->index, uv_strerror(rc));
    core_fini(&w->core);
}
