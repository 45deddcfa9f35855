/*
 * txn: RFC 3261 §17 transactions with the RFC 6026 Accepted states, one
 * table per worker, on the worker's transport (tp.h).
 *
 * Four state machines: INVITE client (timers A, B, D; Accepted with M;
 * the proxy's Timer C on request, txn_client_timer_c; 64*T1 after its
 * CANCEL, §9.1),
 * non-INVITE client (E, F, K), INVITE server (G, H, I; Accepted with L) and
 * non-INVITE server (J). T1/T2/T4 are configurable. No libuv handle per
 * transaction: every timer is a struct tq_entry in the worker's tq
 * (tp_tq()): fixed timeouts in FIFO queues, the doubling A/E/G in the heap.
 *
 * Each transaction keeps its own copy of the request bytes (with its parse
 * in its own arena, style.md §5: a server transaction's is the received
 * parse rebased onto the copy, a client's a fresh parse) and, for server transactions, the last
 * response it sent, which it resends when the request is retransmitted.
 * Once a transaction has its final response (sent or received; an INVITE
 * server's 2xx included) it drops the request copy at the end of that
 * loop iteration, keeping only its
 * matching keys and the bytes it may resend (txn_request() is NULL from
 * then on; an INVITE server in Accepted keeps no response either, the TU
 * hands it each 2xx retransmission): at 8000 requests/s a worker holds
 * 250k transactions in Timer J/L/M, and the copy with its arena was
 * ~5 KiB of each.
 *
 * Memory of finished transactions is kept for reuse by the same table
 * (a bounded spare list of structs with their response buffers, and of
 * request bodies: arena and copy buffer), so steady load does not go
 * through malloc per transaction; a reused transaction starts as clean
 * as a new one. See txn.c "Spares".
 *
 * 100 Trying: an INVITE server transaction sends 100 Trying by itself 200 ms
 * after the INVITE arrived unless the TU sent any response first (RFC 3261
 * §17.2.1). The TU may send its own 100 earlier; never for non-INVITE.
 *
 * Matching: responses by top-Via branch + CSeq method (§17.1.3); requests
 * by branch + sent-by + method with the magic cookie (§17.2.3; ACK matches
 * INVITE). Without the cookie (RFC 2543) the basic fallback compares
 * Call-ID, From tag, CSeq number, top Via sent-by and method. CANCEL that
 * matches an INVITE server transaction is answered 200 here and the TU gets
 * TXN_EV_CANCELLED (it then sends 487 to the INVITE); an unmatched CANCEL
 * goes to the TU as a new request (answer 481). An ACK that matches no
 * transaction (the ACK for a 2xx) goes to the TU as a request with t ==
 * NULL, as does an ACK that matches a server transaction in Accepted.
 * ACKs for non-2xx are absorbed (Completed -> Confirmed). Responses that
 * match no client transaction are dropped (RFC 6026 §7.3): txn_recv()
 * returns -ENOENT so the caller may count them.
 *
 * Lifetime: the table owns transactions. A transaction terminates (state
 * machine or txn_table_free) and then the TU gets TXN_EV_TERMINATED, its
 * last event, so it can free its context; the memory is freed after the
 * current loop iteration (deferred free, uv_check), so a txn pointer
 * stays valid until the callback that reported TERMINATED has returned
 * up to the loop. Callbacks may call any txn function, including on the
 * transaction being reported; the table re-checks state after each.
 *
 * Branches: txn_branch_new() makes "z9hG4bK" + "w" + 2 hex digits of the
 * worker index + "." + random hex, so a response arriving on another
 * worker's UDP socket can be routed back to the owner (txn_branch_worker,
 * then tp_post).
 *
 * Threads: worker thread only (the loop that runs the tp).
 */
#ifndef PUSHPBX_TXN_TXN_H
#define PUSHPBX_TXN_TXN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/slice.h"
#include "sip/msg.h"
#include "transport/tp.h"

struct txn;
struct txn_table;

/* "z9hG4bKw" + 2 hex + "." + 22 hex, + NUL */
#define TXN_BRANCH_MAX 40

struct txn_timers {
    uint32_t t1_ms; /* 500 */
    uint32_t t2_ms; /* 4000 */
    uint32_t t4_ms; /* 5000 */
};

enum txn_kind {
    TXN_INVITE_CLIENT = 1,
    TXN_NON_INVITE_CLIENT,
    TXN_INVITE_SERVER,
    TXN_NON_INVITE_SERVER,
};

enum txn_state {
    TXN_CALLING = 1, /* INVITE client before any response */
    TXN_TRYING,      /* non-INVITE client/server before any response */
    TXN_PROCEEDING,
    TXN_COMPLETED,
    TXN_CONFIRMED, /* INVITE server got ACK for its non-2xx */
    TXN_ACCEPTED,  /* RFC 6026: INVITE after 2xx */
    TXN_TERMINATED,
};

enum txn_event {
    /* Client: a response (rsp set). 1xx, the final, and in Accepted every
     * further 2xx (retransmission or another fork: the proxy forwards it).
     * Retransmitted non-2xx finals are absorbed, not reported. */
    TXN_EV_RESPONSE = 1,
    /* Client: timer B/F fired without a final response (treat as 408).
     * INVITE client: no final response 64*T1 after our CANCEL (§9.1), or
     * Timer C fired (txn_client_timer_c; then, if a provisional had come,
     * the transaction goes on until the CANCEL's outcome or §9.1's 64*T1,
     * and reports no second TIMEOUT; a 2xx meanwhile is still reported).
     * Server INVITE: timer H fired, no ACK for our non-2xx final. */
    TXN_EV_TIMEOUT,
    /* Client: the request could not be sent (treat as 503, §16.9), or its
     * TCP flow closed before a final response. Server: never (RFC 6026: a
     * failed response send does not destroy the server transaction). */
    TXN_EV_TRANSPORT_ERROR,
    /* Server INVITE: a matching CANCEL arrived while no final response was
     * sent; the CANCEL was answered 200. The TU should send 487. */
    TXN_EV_CANCELLED,
    /* Last event of every transaction: free your context now. */
    TXN_EV_TERMINATED,
};

const char *txn_event_name(enum txn_event ev);
const char *txn_state_name(enum txn_state st);

/* Events on one transaction. rsp is set for TXN_EV_RESPONSE only (worker
 * arena, valid during the call). */
typedef void txn_event_cb(struct txn *t, enum txn_event ev,
                          const struct sip_msg *rsp, void *arg);

/* A request that starts a server transaction (t set; attach your context
 * with txn_set_cb and answer with txn_respond/txn_reply, now or later),
 * or an ACK that matched nothing / a transaction in Accepted (t == NULL:
 * stateless, route it as an end-to-end request). req and src are valid
 * during the call only; txn_request()/txn_src() keep copies. */
typedef void txn_request_cb(struct txn_table *tt, struct txn *t,
                            const struct sip_msg *req, const struct tp_src *src,
                            void *arg);

struct txn_cfg {
    struct txn_timers timers;
    bool auto_100; /* INVITE server sends 100 after 200 ms; def on */
    txn_request_cb *on_request; /* required */
    void *arg;
};

void txn_cfg_defaults(struct txn_cfg *cfg);

/* Create the table of one worker, on tp (borrowed; must outlive the table).
 * Returns 0 and *out, or -EINVAL. Loop thread. */
int txn_table_new(struct tp *tp, const struct txn_cfg *cfg,
                  struct txn_table **out);
/* Terminate every transaction (each TU gets TXN_EV_TERMINATED; no other
 * events), then close the table's handle and free it once libuv calls the
 * close callback (keep running the loop). Call before tp_free. NULL ok. */
void txn_table_free(struct txn_table *tt);

/* Feed a received message (from the tp receive callback; rx->err must be
 * NULL: malformed requests are the TU's to answer statelessly). Returns 0
 * when it was handled (matched, absorbed, or given to on_request),
 * -ENOENT for a response matching no client transaction (dropped),
 * -EINVAL for a parse-failed rx. */
int txn_recv(struct txn_table *tt, const struct tp_rx *rx);

/* A TCP flow closed (forward tp's on_flow_closed here): client
 * transactions waiting for a final response on it get
 * TXN_EV_TRANSPORT_ERROR and terminate. */
void txn_flow_closed(struct txn_table *tt, uint64_t flow_id);
/* Give up client transaction t, whose next hop is known to be gone (a
 * cluster node declared down): a transaction still waiting for its final
 * response gets TXN_EV_TRANSPORT_ERROR and terminates, as for a closed
 * flow; nothing is sent (a CANCEL asked for before is its own
 * transaction and goes on). No-op for a server transaction or once a
 * final arrived. The transaction's worker. */
void txn_client_abandon(struct txn *t);
/* Does request m match a server transaction of this table (a
 * retransmission, or the ACK of a non-2xx final we sent)? Such a request
 * stays on this worker whatever the proxy would steer. Worker thread. */
bool txn_server_matches(struct txn_table *tt, const struct sip_msg *m);

/* New branch for a request this worker sends (see the file comment). out
 * has room for TXN_BRANCH_MAX bytes; NUL-terminated. */
void txn_branch_new(const struct txn_table *tt, char *out);
/* Worker index encoded in one of our branches, or -1 if it is not ours. */
int txn_branch_worker(struct slice branch);

/* Start a client transaction: copy the request bytes (a whole request,
 * built by the TU with the top Via carrying a branch from txn_branch_new),
 * send them to dst and run timers A/B (INVITE) or E/F. ACK cannot start a
 * transaction. Returns 0 and *out (may be NULL; the pointer is valid until
 * TXN_EV_TERMINATED), -EINVAL if bytes do not parse as a request or the
 * method is ACK, -EEXIST if the branch is in use, -EMSGSIZE, or a send
 * error from tp (then no transaction exists and no callback is called). */
int txn_client_start(struct txn_table *tt, struct slice bytes,
                     const struct tp_dest *dst, txn_event_cb *cb, void *arg,
                     struct txn **out);

/* Cancel an INVITE client transaction (RFC 3261 §9.1): build a CANCEL
 * (extra: CRLF-terminated lines, e.g. a Reason header) and send it in its
 * own non-INVITE client transaction to the same destination, once a
 * provisional response has arrived (deferred until then if none has:
 * timer B still ends it). Its response is absorbed. If no final response
 * to the INVITE comes within 64*T1 of the CANCEL (a peer that vanished,
 * or ignores CANCEL), the INVITE transaction reports TXN_EV_TIMEOUT (408)
 * and terminates (§9.1's "SHOULD destroy"): no CANCEL leaves a
 * transaction, and its TU's call, waiting forever. Does nothing after a
 * final response. Returns 0, -EINVAL if t is not an INVITE client, or a
 * send error. */
int txn_cancel(struct txn *t, struct slice extra);

/* Timer C (RFC 3261 §16.6 step 11, §16.7 step 2, §16.8) on INVITE client
 * t, for a proxy's branch: call it right after txn_client_start. Runs ms
 * from now, is set again by each 101-199 response and stops at the final
 * response or when a CANCEL has been sent (§9.1's 64*T1 takes over). When
 * it fires with no provisional received, the TU gets TXN_EV_TIMEOUT and
 * the transaction terminates (as if a 408 had arrived); after a
 * provisional, a CANCEL is sent (no Reason) and the TU gets
 * TXN_EV_TIMEOUT (count the branch as 408): the transaction then lives
 * until the 487 (ACKed, absorbed as a final the TU already counted) or
 * 64*T1, the 2xx of a callee that answered meanwhile still going up.
 * RFC 3261 wants ms > 3 minutes; less is for tests. Returns 0 (also when
 * t has its final or its CANCEL already: nothing armed), or -EINVAL for a
 * transaction that is not an INVITE client, or ms 0. */
int txn_client_timer_c(struct txn *t, uint32_t ms);

/* Send a response on a server transaction. bytes: the whole response (e.g.
 * from sip_build_response or sip_build_response_forward), copied; status:
 * its code. Provisional: stays Proceeding. 2xx to INVITE: Accepted (timer
 * L; later 2xx retransmissions from the TU are sent too). Other final:
 * Completed (INVITE: timers G/H; non-INVITE: J). Returns 0; -EALREADY
 * after a final (except INVITE 2xx in Accepted); -EINVAL for a client
 * txn. A transport error is logged and ignored (RFC 6026). */
int txn_respond(struct txn *t, int status, struct slice bytes);
/* Build (sip_build_response on the stored request) and send. to_tag: added
 * to To when the request had none (ignored for 100). -EALREADY once the
 * request copy is gone (after a final, 2xx included: resend a 2xx in
 * Accepted with txn_respond). */
int txn_reply(struct txn *t, int status, const char *reason,
              struct slice to_tag, struct slice extra, struct slice body);

/* Answer the request of a server transaction statelessly (RFC 3261 §16.6
 * and §8.2.6, as Kamailio's sl_send_reply): build a final non-2xx like
 * txn_reply, send it once, and terminate the transaction at once: no
 * timer G retransmissions, no stored response, no timer H/J state. A
 * retransmission of the request is then a new request (it gets a new
 * answer from the TU), and the ACK for this response matches nothing (it
 * reaches the TU with t == NULL). For refusing a request that brought no
 * credentials, so a spoofed source cannot make us send it a response
 * eleven times or hold 32 s of state. The TU gets TXN_EV_TERMINATED
 * before this returns (if it attached a callback); t and the request
 * stay readable until the end of the loop iteration. Returns 0 (a
 * transport error is logged and ignored), -EINVAL for a client txn or a
 * status outside 300..699, -EALREADY after a final response. */
int txn_reply_stateless(struct txn *t, int status, const char *reason,
                        struct slice to_tag, struct slice extra);

/* Attach or change the TU callback and context of a transaction. */
void txn_set_cb(struct txn *t, txn_event_cb *cb, void *arg);
void *txn_arg(const struct txn *t);

/* The stored request (parsed copy). Valid until the transaction has its
 * final response (server: sent, client: received) and the current loop
 * iteration ends; NULL after that (the copy is released; the request
 * passed to on_request follows the same rule). Exception: an INVITE
 * server transaction that sent a 2xx (Accepted) keeps it for its life,
 * so txn_reply() can resend a 2xx. */
const struct sip_msg *txn_request(const struct txn *t);
/* Server: where the request came from. Client: src.flow_id is the flow the
 * request went out on (0 for UDP), the rest unset. */
const struct tp_src *txn_src(const struct txn *t);
enum txn_kind txn_kind(const struct txn *t);
enum txn_state txn_state(const struct txn *t);
/* Last status sent (server) or received (client), 0 if none. */
int txn_status(const struct txn *t);
struct txn_table *txn_table_of(const struct txn *t);
struct tp *txn_tp(const struct txn_table *tt);
size_t txn_count(const struct txn_table *tt);
/* Hash buckets of the client and server tables together: they double as
 * transactions come and shrink (to four buckets per transaction, at least
 * 1024 each) once fewer than one per eight buckets is left; for tests and
 * memory figures. Worker thread. */
size_t txn_table_buckets(const struct txn_table *tt);
/* Spare transaction structs and request bodies the table keeps for
 * reuse (each at most 128: the rest of a peak goes back to malloc); for
 * tests and memory figures. Worker thread. */
void txn_table_spares(const struct txn_table *tt, size_t *structs,
                      size_t *bodies);

#endif
