/*
 * proxy/proxy_int: declarations shared inside the proxy room (per-worker
 * calls in proxy.c, process-wide state in proxy_shared.c). Not for other
 * rooms.
 */
#ifndef PUSHPBX_PROXY_PROXY_INT_H
#define PUSHPBX_PROXY_PROXY_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <uv.h>

#include "base/arena.h"
#include "base/buf.h"
#include "base/list.h"
#include "proxy/proxy.h"
#include "registrar/reg.h"

#define PROXY_MAX_OBSERVERS 4
#define PROXY_NOTIFY_MAX 1024 /* queued binding notifications per worker */

struct proxy_shared {
    struct proxy_cfg cfg;
    struct reg *reg;
    char *domain;
    pthread_mutex_t lock; /* workers[], each worker's notify queue */
    /* Fork calls that may want new bindings: on some worker's p->calls,
     * or between their binding lookup and joining p->calls. While it is 0,
     * proxy_binding_added does nothing (no note, no wake-up): the usual
     * REGISTER has no call waiting for it. seq_cst: a worker increments
     * before reg_lookup, the registrar stores the binding before
     * proxy_binding_added reads it, so one of them sees the other. */
    atomic_size_t waiting;
    struct proxy *workers[TP_MAX_WORKERS];
    struct {
        struct proxy_observer ops;
        void *arg;
    } obs[PROXY_MAX_OBSERVERS];
    size_t obs_count;
    /* To tag of every response answered statelessly (txn_reply_stateless,
     * e.g. the 407 to an INVITE without credentials): one per process, as
     * Kamailio's sl module does, so the ACK for such a response, which
     * matches no transaction, is known by its To tag and absorbed. */
    char sl_tag[17];

    pthread_mutex_t rec_lock; /* the record ring */
    struct proxy_call_record *recs;
    size_t rec_cap, rec_count, rec_next; /* next slot to write */
    uint64_t rec_seq;
};

#define PROXY_LATE_URI_MAX 512

enum proxy_note_kind {
    PROXY_NOTE_BINDING = 1, /* ext got a binding: fork ringing calls to it */
    PROXY_NOTE_RELEASE,     /* proxy_call_release */
    PROXY_NOTE_LATE,        /* proxy_late_cancel */
};

/* A notification queued to one worker (cross-thread work for its calls).
 * Everything is copied in: the poster's strings are gone by the time the
 * worker runs it. */
struct proxy_note {
    struct list_node node;
    enum proxy_note_kind kind;
    char ext[33];                        /* extension (callee) */
    char call_id[PROXY_REC_CALL_ID_MAX]; /* RELEASE, LATE */
    int status;                          /* RELEASE */
    /* LATE: the binding and what to send it */
    char uri[PROXY_LATE_URI_MAX];
    enum reg_transport transport;
    struct sockaddr_storage addr;
    uint64_t flow_id;
    char caller[33];
    char caller_name[128];
    char reason[96];
};

struct proxy {
    struct proxy_shared *sh;
    struct tp *tp;
    struct txn_table *tt;
    unsigned worker;
    struct list_node calls; /* struct proxy_call.node, ringing forks */
    struct list_node all;   /* struct proxy_call.anode, every live call */
    bool draining;          /* proxy_drain: shutting down */
    unsigned retry_after_s; /* Retry-After of our 503s while draining */
    uv_async_t notify;      /* woken by proxy_binding_added */
    struct list_node notes; /* under sh->lock */
    size_t note_count;
    struct buf out;                  /* scratch for built messages */
    struct arena a;                  /* scratch for lookups (reset per use) */
    char via_host[3][TP_ADDRSTRLEN]; /* [0] UDP, [1] TCP, [2] TLS "host:port" */
    char rr_host[TP_ADDRSTRLEN];
    struct proxy_stats stats;
};

static inline void
proxy_waiting_add(struct proxy_shared *sh)
{
    atomic_fetch_add(&sh->waiting, 1);
}

static inline void
proxy_waiting_done(struct proxy_shared *sh)
{
    atomic_fetch_sub(&sh->waiting, 1);
}

/* proxy_shared.c */
void proxy_record_add(struct proxy_shared *sh,
                      const struct proxy_call_record *rec);
bool proxy_notify_started(struct proxy_shared *sh,
                          const struct proxy_call_info *info);
void proxy_notify_branch_sent(struct proxy_shared *sh,
                              const struct proxy_branch_info *bi);
/* Queue note n (owned) to worker w. Returns 0, or -ENOSPC (queue full or
 * no such worker; n is freed). Any thread. */
int proxy_note_post(struct proxy_shared *sh, unsigned w, struct proxy_note *n);
/* proxy.c: drain this worker's notifications (worker thread). */
void proxy_notes_run(struct proxy *p);

#endif
