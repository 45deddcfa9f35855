/*
 * proxy/proxy_int: declarations shared inside the proxy room (per-worker
 * calls in proxy.c, process-wide state in proxy_shared.c). Not for other
 * rooms.
 */
#ifndef PUSHPBX_PROXY_PROXY_INT_H
#define PUSHPBX_PROXY_PROXY_INT_H

#include <pthread.h>
#include <stdint.h>

#include <uv.h>

#include "base/arena.h"
#include "base/buf.h"
#include "base/list.h"
#include "proxy/proxy.h"

#define PROXY_MAX_OBSERVERS 4
#define PROXY_NOTIFY_MAX 1024 /* queued binding notifications per worker */

struct proxy_shared {
    struct proxy_cfg cfg;
    struct reg *reg;
    char *domain;
    pthread_mutex_t lock; /* workers[], each worker's notify queue */
    struct proxy *workers[TP_MAX_WORKERS];
    struct {
        struct proxy_observer ops;
        void *arg;
    } obs[PROXY_MAX_OBSERVERS];
    size_t obs_count;

    pthread_mutex_t rec_lock; /* the record ring */
    struct proxy_call_record *recs;
    size_t rec_cap, rec_count, rec_next; /* next slot to write */
    uint64_t rec_seq;
};

/* A queued "extension got a binding" notification. */
struct proxy_note {
    struct list_node node;
    char ext[33];
};

struct proxy {
    struct proxy_shared *sh;
    struct tp *tp;
    struct txn_table *tt;
    unsigned worker;
    struct list_node calls; /* struct proxy_call.node, ringing forks */
    uv_async_t notify;      /* woken by proxy_binding_added */
    struct list_node notes; /* under sh->lock */
    size_t note_count;
    struct buf out;                  /* scratch for built messages */
    struct arena a;                  /* scratch for lookups (reset per use) */
    char via_host[2][TP_ADDRSTRLEN]; /* [0] UDP, [1] TCP "host:port" */
    char rr_host[TP_ADDRSTRLEN];
    struct proxy_stats stats;
};

/* proxy_shared.c */
void proxy_record_add(struct proxy_shared *sh,
                      const struct proxy_call_record *rec);
bool proxy_notify_started(struct proxy_shared *sh,
                          const struct proxy_call_info *info);
/* proxy.c: drain this worker's notifications (worker thread). */
void proxy_notes_run(struct proxy *p);

#endif
