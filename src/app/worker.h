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
#include <stddef.h>

#include <uv.h>

#include "app/app_cfg.h"
#include "app/core.h"
#include "transport/tp.h"
#include "txn/txn.h"

struct worker {
    unsigned index;
    uv_loop_t loop;
    uv_async_t stop; /* woken by worker_stop from any thread */
    uv_thread_t thread;
    bool running; /* thread started */
    struct tp *tp;
    struct txn_table *tt;
    struct core core;
};

/* Create the loop, transport, transaction table and core of worker index
 * and open the listeners in specs (worker 0: the configured ones; others:
 * worker 0's bound addresses, so port 0 resolves once). On failure
 * everything is released, err gets "udp:1.2.3.4:5060: reason" and a
 * negative errno is returned. Main thread, before worker_start. */
int worker_init(struct worker *w, unsigned index, const struct app_sip_cfg *sip,
                struct tp_tls *tls, const struct tp_listen_spec *specs,
                size_t count, char *err, size_t errlen);
/* Run the loop on a new thread. Returns 0 or a libuv error. */
int worker_start(struct worker *w);
/* Ask the worker to close everything and end its loop. Any thread. */
void worker_stop(struct worker *w);
/* Wait for the thread (if started; otherwise run the loop here until the
 * handles are closed) and free the loop. */
void worker_fini(struct worker *w);

#endif
