/*
 * app/core: the requests the daemon answers itself until the registrar and
 * call rooms exist. One struct core per worker, on that worker's tp and
 * transaction table.
 *
 * Requests that parse go through the transaction layer, so a retransmitted
 * request is absorbed and answered with the stored response. Requests that
 * fail to parse are answered statelessly (400 with the parser's reason, or
 * the status the parser chose: 505, 513...) when their top Via could be
 * decoded, and dropped and counted otherwise.
 *
 * Worker thread only.
 */
#ifndef PUSHPBX_APP_CORE_H
#define PUSHPBX_APP_CORE_H

#include <stdatomic.h>
#include <stdint.h>

#include "base/buf.h"
#include "transport/tp.h"
#include "txn/txn.h"

struct core_stats {
    uint64_t answered;           /* responses sent by core (stateful) */
    uint64_t malformed_answered; /* stateless answers to bad requests */
    uint64_t malformed_dropped;  /* bad messages we could not answer */
    uint64_t acks_absorbed;      /* ACKs matching no transaction */
    uint64_t stray_responses;    /* responses matching no client txn */
};

/* Requests received per method (index: enum sip_method, SIP_METHOD_UNKNOWN
 * for extension methods), retransmissions included, counted on the worker
 * that processes them (after proxy steering, so a request handed to another
 * worker counts once). One writer, the worker: it bumps with a relaxed load
 * and store (a plain add, no locked instruction); the admin thread reads
 * with core_method_count and sums the workers. */
#define CORE_METHODS 15 /* SIP_METHOD_PUBLISH + 1 */

struct reg;
struct proxy;

struct core {
    struct tp *tp;        /* borrowed */
    struct reg *reg;      /* borrowed, shared by all workers; NULL = no
                             registrar (REGISTER gets 405) */
    struct txn_table *tt; /* borrowed; set after txn_table_new */
    struct proxy *proxy;  /* borrowed; NULL = no calls (INVITE 405) */
    struct buf out;       /* scratch for stateless responses */
    struct core_stats stats;
    _Atomic uint64_t methods[CORE_METHODS];
};

void core_init(struct core *c, struct tp *tp);
void core_fini(struct core *c);

/* Requests of method m (enum sip_method) c has received. Any thread. */
uint64_t core_method_count(const struct core *c, int m);

/* tp receive callback (arg = struct core *). */
void core_on_recv(struct tp *tp, const struct tp_rx *rx, void *arg);
/* tp flow-closed callback (arg = struct core *). */
void core_on_flow_closed(struct tp *tp, uint64_t flow_id, int status,
                         void *arg);
/* txn new-request callback (arg = struct core *). */
void core_on_request(struct txn_table *tt, struct txn *t,
                     const struct sip_msg *req, const struct tp_src *src,
                     void *arg);

#endif
