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

#include <uv.h>

#include "base/buf.h"
#include "base/list.h"
#include "base/tq.h"
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
struct core_inbox; /* core.c: commit results from the store's writer */

struct core {
    struct tp *tp;        /* borrowed */
    struct reg *reg;      /* borrowed, shared by all workers; NULL = no
                             registrar (REGISTER gets 405) */
    struct txn_table *tt; /* borrowed; set after txn_table_new */
    struct proxy *proxy;  /* borrowed; NULL = no calls (INVITE 405) */
    struct buf out;       /* scratch for stateless responses */
    struct core_stats stats;
    _Atomic uint64_t methods[CORE_METHODS];
    /* Push REGISTERs whose 200 waits for the store's commit (parked
     * server transactions, oldest first), their timeout, and where the
     * writer's callbacks post the results (core_commits_open). */
    struct core_inbox *inbox;
    struct list_node parked;
    size_t parked_count;
    struct tq_fifo parked_fifo;
};

void core_init(struct core *c, struct tp *tp);
void core_fini(struct core *c);

/*
 * Parked REGISTERs. A REGISTER carrying a push device is accepted at once
 * but its 200 may only leave once the device is committed (pushdev.h);
 * the worker never waits for that (reg_handle_async): it keeps the 200
 * it built and the server transaction open (a retransmission is absorbed
 * by the transaction: no second commit, no early 200), and the store's
 * callback posts the result to the core's inbox, which wakes the loop
 * through h. Then core_commits_run sends the 200, or 500 when the commit
 * failed. A commit not reported within PUSHDEV_COMMIT_TIMEOUT_MS is
 * answered 500 (outcome unknown; the device stays unsynced, so the next
 * REGISTER writes it again).
 *
 * core_commits_open: the loop's uv_async h calls core_commits_run(c);
 * after core_init, before the worker runs. Without it a REGISTER blocks
 * for the commit (reg_handle). core_commits_run: worker thread.
 */
void core_commits_open(struct core *c, uv_async_t *h);
void core_commits_run(struct core *c);
/* REGISTERs parked now (graceful drain waits for them). Worker thread. */
size_t core_parked(const struct core *c);
/* Stopping (before the transactions are freed): results already in are
 * answered as usual; every REGISTER still waiting gets 503 with
 * Retry-After: retry_after_s (its commit may still land: the phone's next
 * REGISTER finds the device either way). Results reported later are
 * dropped by the callback itself (the inbox outlives the core until the
 * last one). Worker thread; call before tp_free. No-op if not open. */
void core_commits_close(struct core *c, unsigned retry_after_s);

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
