/*
 * app/worker: one worker = one thread + its uv_loop + its transport (own
 * UDP/TCP sockets with SO_REUSEPORT) + its transaction table + its core.
 * Nothing is shared between workers except the read-only config and the
 * logger.
 *
 * Set-up happens on the main thread before the worker's thread starts
 * (libuv allows handing a loop to another thread as long as only one
 * thread uses it at a time); after worker_start() only worker_stop() may
 * be called from other threads.
 */
#ifndef PUSHPBX_APP_WORKER_H
#define PUSHPBX_APP_WORKER_H

#include <stdbool.h>
#include <stdatomic.h>
#include <stddef.h>

#include <uv.h>

#include "app/app_cfg.h"
#include "app/core.h"
#include "base/tq.h"
#include "transport/tp.h"
#include "txn/txn.h"

struct app_wake;

struct worker {
    unsigned index;
    uv_loop_t loop;
    uv_async_t stop;  /* woken by worker_stop from any thread */
    uv_async_t drain; /* woken by worker_drain from any thread */
    uv_async_t ping;  /* woken by worker_ping (/healthz) from any thread */
    uv_async_t commits; /* woken by the store's writer: a parked push
                           REGISTER's commit is done (core.h) */
    atomic_uint_fast64_t ping_sent, ping_seen;
    unsigned retry_after_s;     /* set before worker_drain */
    struct tq_entry drain_tick; /* while draining: re-checks idle */
    atomic_bool idle; /* drained: nothing of the proxy in flight */
    uv_thread_t thread;
    bool running; /* thread started */
    struct tp *tp;
    struct txn_table *tt;
    struct core core;
    struct app_wake *wake; /* set by main after worker_init; may be NULL */
    struct tp_group *group; /* borrowed (main.c); NULL: no UDP spreading */
};

/* Create the loop, transport, transaction table and core of worker index
 * and open the listeners in specs (worker 0: the configured ones; others:
 * worker 0's bound addresses, so port 0 resolves once). group (borrowed,
 * may be NULL): the workers that spread UDP requests by Call-ID. On failure
 * everything is released, err gets "udp:1.2.3.4:5060: reason" and a
 * negative errno is returned. Main thread, before worker_start. */
int worker_init(struct worker *w, unsigned index, const struct app_sip_cfg *sip,
                struct tp_tls *tls, struct tp_group *group,
                const struct tp_listen_spec *specs, size_t count, char *err,
                size_t errlen);
/* Health (/healthz): worker_ping asks the worker's loop to answer and
 * returns the request's number; worker_answered tells whether the loop
 * has run since (it answers every request up to the newest at once).
 * Any thread. */
uint64_t worker_ping(struct worker *w);
bool worker_answered(const struct worker *w, uint64_t n);
/* Run the loop on a new thread. Returns 0 or a libuv error. */
int worker_start(struct worker *w);
/* Graceful stop, phase 1 (SIGTERM): the worker answers every ringing
 * call 503 with Retry-After: retry_after_s, CANCELs its branches and
 * refuses new calls (proxy_drain), then sets idle once nothing of the
 * proxy is in flight (proxy_busy) and no REGISTER is parked waiting for
 * its push device's commit (core_parked: they get their 200 or 500),
 * checked every 10 ms. Any thread. */
void worker_drain(struct worker *w, unsigned retry_after_s);
/* Has the worker drained (see worker_drain)? Any thread. */
bool worker_idle(struct worker *w);
/* Ask the worker to close everything and end its loop; every call still
 * open is answered 503 first (proxy_drain with all), and so is every
 * REGISTER still parked (core_commits_close). Any thread. */
void worker_stop(struct worker *w);
/* Wait for the thread (if started; otherwise run the loop here until the
 * handles are closed) and free the loop. */
void worker_fini(struct worker *w);

#endif
