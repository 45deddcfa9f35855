/*
 * proxy: the stateful, record-routing proxy that connects calls between
 * extensions (RFC 3261 §16): caller authentication (407), routing of the
 * Request-URI user to the extension's bindings, parallel forking with the
 * §16.7 best-response rules, CANCEL propagation, a ring timeout, loose
 * routing of in-dialog requests, and a record of every call's outcome.
 *
 * Shape: one struct proxy per worker (its calls, its scratch buffers,
 * its transaction table) and one struct proxy_shared for the process (the
 * config, the call-record ring, the observers, and the list of workers so
 * that a registration on one worker can reach calls ringing on another).
 * A call belongs to the worker whose transaction table holds its server
 * transaction; every branch's client transaction lives on that worker too.
 *
 * Multi-worker rules (see docs/calls.md):
 *  - a response whose top Via branch names another worker
 *    (txn_branch_worker) is handed to that worker with tp_post;
 *  - an INVITE arriving over UDP for an extension with a TCP binding owned
 *    by another worker is handed to that worker (so the branch can use the
 *    connection); likewise an in-dialog request over UDP whose target flow
 *    (recorded in our Record-Route) belongs to another worker;
 *  - a request to be written on a TCP flow owned by another worker (TCP
 *    caller and TCP callee on different workers) goes through the
 *    transport's relay: tp_post_send hands the bytes to the owning worker,
 *    which writes them on the flow (or connects to the Contact address if
 *    the flow has closed); the responses come back by branch steering.
 *
 * Threads: everything is worker-thread only unless a function says "any
 * thread".
 */
#ifndef PUSHPBX_PROXY_PROXY_H
#define PUSHPBX_PROXY_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/slice.h"
#include "sip/msg.h"
#include "transport/tp.h"
#include "txn/txn.h"

struct reg;
struct reg_contact;
struct media_relays;
struct media_lat;
struct proxy;
struct proxy_shared;
struct proxy_call;

/* [proxy] section (option table in proxy_cfg.c). */
struct proxy_cfg {
    unsigned ring_timeout_s; /* default 45 */
    unsigned call_records;   /* ring size of the call log; default 1000 */
    unsigned max_branches;   /* forks per call; default 16 (<= 32) */
    unsigned timer_c_s;      /* RFC 3261 Timer C of a branch's INVITE;
                                default 181 (the RFC: over 3 minutes) */
};

void proxy_cfg_defaults(struct proxy_cfg *c);

enum proxy_outcome {
    PROXY_OUT_ANSWERED = 1, /* a branch sent 2xx */
    PROXY_OUT_CANCELLED,    /* the caller sent CANCEL */
    PROXY_OUT_NO_ANSWER,    /* ring timeout, or every branch timed out */
    PROXY_OUT_BUSY,         /* best final 486 or 600 */
    PROXY_OUT_DECLINED,     /* best final 603 */
    PROXY_OUT_UNAVAILABLE,  /* no binding at all (480) */
    PROXY_OUT_FAILED,       /* any other final */
};

const char *proxy_outcome_name(enum proxy_outcome o);

#define PROXY_REC_CALL_ID_MAX 128
#define PROXY_REC_URI_MAX 256

/* One finished call, as the [admin] listing and [wake] see it. Times are
 * unix milliseconds (wall clock); ringing_ms is 0 if no branch ever sent a
 * provisional response above 100. */
struct proxy_call_record {
    uint64_t id; /* increasing per process */
    char call_id[PROXY_REC_CALL_ID_MAX];
    char caller[33]; /* authenticated extension */
    char callee[33]; /* extension called */
    enum proxy_outcome outcome;
    int status;                          /* final status sent to the caller */
    char answered_by[PROXY_REC_URI_MAX]; /* Contact URI of the binding
                                            that answered; "" otherwise */
    unsigned branches; /* branches tried (including added ones) */
    int64_t started_ms, ringing_ms, ended_ms;
    /* Media relay (docs/media.md): the call's media went through
     * rtpengine; the figures come from its delete answer (media_stats
     * false until it came). leg[0] is the caller's side (what rtpengine
     * received from the caller), leg[1] the callee's. */
    bool media;
    bool media_stats;
    bool media_one_way;  /* media flowed from one side only */
    bool media_none;     /* no media from either side */
    char caller_tag[64]; /* the caller's From tag (to tell the legs apart) */
    struct proxy_media_leg {
        uint64_t packets, bytes;
        uint64_t lost, jitter;
        bool has_lost, has_jitter;
    } leg[2];
};

/* What an observer learns when a call starts ringing. Borrowed for the
 * callback only. */
struct proxy_call_info {
    struct proxy_call *call; /* valid until call_ended for it returns */
    const char *call_id;
    const char *caller, *callee;
    const char *caller_name; /* From display name, unquoted, valid UTF-8
                                ("" if none) */
    size_t bindings;         /* branches started at once (may be 0) */
    const struct reg_contact *contacts; /* those bindings: the proxy's one
                                           location lookup for the call */
    unsigned worker;                    /* the worker that owns the call */
    uint64_t rx_us; /* monotonic µs (uv_hrtime) the INVITE was
                       read (tp_src.rx_us); 0 if unknown */
};

/* A branch's request was handed to the transport (sent on its socket or
 * queued on its flow), for observers that time the fork. Borrowed for
 * the callback only. */
struct proxy_branch_info {
    struct proxy_call *call;
    const char *call_id;
    const char *callee;
    const char *uri; /* the binding's Contact URI = the Request-URI */
    bool added;      /* added to a running fork (a binding that appeared
                        while the call rang), not one of the first */
    unsigned worker; /* the worker that owns the call */
};

/* Bytes of a stored message's body handed to observers as its preview
 * (push.h's PUSH_PREVIEW_MAX_IN: the payload is cut to fit anyway). */
#define PROXY_MSG_PREVIEW_MAX 4096

/* A chat message (SIP MESSAGE) was stored for an extension whose apps
 * could not take it, and its sender got 202 Accepted (docs/messages.md).
 * Borrowed for the callback only. */
struct proxy_msg_info {
    const char *ext;       /* the extension it is for */
    const char *from;      /* the sender's extension (authenticated) */
    const char *from_name; /* From display name ("" if none) */
    const char *call_id;   /* of the MESSAGE */
    uint64_t id;           /* the stored message's id (never reused) */
    const char *content_type;
    /* the text: the body's first PROXY_MSG_PREVIEW_MAX bytes, as received
     * (message/cpim: the inner body); any bytes */
    const char *preview;
    size_t preview_len;
    int64_t expires_at_s; /* unix seconds: the stored message's expiry */
    unsigned worker;      /* the worker that answered the sender */
};

/* Observer interface for later rooms ([wake] pushes, [admin] metrics).
 * Callbacks run on the worker that owns the call and must not block.
 * call_started: the INVITE was authenticated and routed to callee's
 *   bindings (info->bindings of them). Return true to hold the call
 *   ([wake]: a push will make the phone register, and
 *   proxy_binding_added() then forks to it): a held call does not end
 *   when every branch has a final response (a desk phone's 486 does not
 *   end it), only when the holder calls proxy_call_release(), the caller
 *   cancels, a branch answers, or the ring time passes. false = no
 *   opinion (a call with no binding then ends with 480 at once).
 * call_ended: the final outcome; rec is borrowed.
 * call_media: the media figures of an ended call came (rtpengine's
 *   delete answer, after call_ended: at the BYE for an answered call);
 *   rec is the whole record again, borrowed, on the worker that got them.
 * branch_sent: a branch's request was just handed to the transport
 *   (after txn_client_start succeeded): every branch of a fork, the first
 *   ones and those added later. Called on every branch, so it must be
 *   cheap. Any callback may be NULL. */
struct proxy_observer {
    bool (*call_started)(const struct proxy_call_info *info, void *arg);
    void (*call_ended)(const struct proxy_call_record *rec, void *arg);
    void (*call_media)(const struct proxy_call_record *rec, void *arg);
    void (*branch_sent)(const struct proxy_branch_info *bi, void *arg);
    /* message_stored: a MESSAGE was stored and answered 202 (on the
     * worker that answered it; [wake] pushes the extension's devices). */
    void (*message_stored)(const struct proxy_msg_info *mi, void *arg);
};

/* Create the process-wide part. cfg is copied, reg and domain borrowed
 * (they must outlive it). Returns 0 and *out, or -EINVAL. Main thread. */
int proxy_shared_new(const struct proxy_cfg *cfg, struct reg *reg,
                     const char *domain, struct proxy_shared **out);
/* After every worker's proxy_free has completed. NULL ok. */
void proxy_shared_free(struct proxy_shared *sh);

/* How SDP's media profile is set for the side an offer goes to. */
enum proxy_media_srtp {
    PROXY_SRTP_TLS,  /* RTP/SAVP (SDES) towards a TLS binding, RTP/AVP
                        towards others: SRTP <-> RTP bridging */
    PROXY_SRTP_KEEP, /* as offered */
};

/* Relay calls' media through rtpengine (docs/media.md). relays is
 * borrowed (it must outlive sh; count 0 or NULL: no relay); relay,
 * on_failure, ice: enum media_relay_mode, media_on_failure, media_ice;
 * srtp: enum proxy_media_srtp. Main thread, before proxy_new. */
void proxy_shared_set_media(struct proxy_shared *sh,
                            struct media_relays *relays, int relay,
                            int on_failure, int ice, int srtp);

/* [cluster] (docs/cluster.md): is_peer(host, arg) answers whether an
 * address (its host; the port is not compared) is an alive node of the
 * cluster. With it set, an INVITE whose top Route (ours) carries
 * pp-ext=EXT is a branch another node forked to a binding this node
 * holds: from a peer it skips the caller's authentication (the first node
 * did it) and forks only to this node's own bindings of EXT whose Contact
 * is the Request-URI (no push, no remote binding, no media relay: the
 * node that received the call relays; 480 if none), from anyone else it
 * gets 403. Without it (single node) pp-ext is refused too.
 * peer_uri(node, addr, uri, cap, arg) copies the advertise URI of an
 * alive node named node, or with node NULL of the node whose advertised
 * address (host and port) is addr (false: unknown): a branch to a phone
 * that node holds goes over the URI's transport (transport=tcp: TCP; no
 * transport: UDP, TCP for a request over 1300 bytes, RFC 3261 §18.1.1),
 * and so does an in-dialog request to that node (its Route entry's
 * address, a dialog whose Record-Route names a node side: pp-nd); may be
 * NULL (UDP to the binding's address). Both must be thread-safe (any
 * worker calls them). Main thread, before proxy_new. */
struct sockaddr;
typedef bool proxy_peer_fn(const struct sockaddr *host, void *arg);
typedef bool proxy_peer_uri_fn(const char *node, const struct sockaddr *addr,
                               char *uri, size_t cap, void *arg);
void proxy_shared_set_cluster(struct proxy_shared *sh, proxy_peer_fn *is_peer,
                              proxy_peer_uri_fn *peer_uri, void *arg);

/* The time media relay added to call set-up (media/media_lat.h: offer,
 * answer, per call), recorded by the workers; read it with media_lat_get.
 * NULL before proxy_shared_set_media (or for a NULL sh). Any thread. */
struct media_lat *proxy_media_lat(struct proxy_shared *sh);

/* Calls (and relayed requests) whose state the workers still hold: a
 * call stays until its caller's transaction and every branch's have
 * ended, so after traffic stops this falls back to 0 within 64*T1 (a
 * branch whose CANCEL got no answer included). For /metrics
 * (pushpbx_calls_open). Any thread. */
size_t proxy_calls_open(struct proxy_shared *sh);

/* Media counters since start, summed over workers. Any thread. */
enum proxy_media_counter {
    PROXY_MEDIA_OFFERS,      /* offers rtpengine answered ok */
    PROXY_MEDIA_ANSWERS,     /* answers rtpengine answered ok */
    PROXY_MEDIA_DELETES,     /* deletes sent */
    PROXY_MEDIA_FAILED,      /* offers/answers no rtpengine took */
    PROXY_MEDIA_PASSED,      /* of those offers: call went on unrelayed */
    PROXY_MEDIA_REJECTED,    /* of those offers: call refused (488/503) */
    PROXY_MEDIA_CALLS,       /* calls relayed (delete answered) */
    PROXY_MEDIA_ONE_WAY,     /* of those: media from one side only */
    PROXY_MEDIA_NO_MEDIA,    /* of those: no media at all */
    PROXY_MEDIA_COUNTERS
};
uint64_t proxy_media_count(struct proxy_shared *sh, enum proxy_media_counter k);

/* Register an observer (at most 4) before the workers start. Returns 0 or
 * -ENOSPC. */
int proxy_observer_add(struct proxy_shared *sh,
                       const struct proxy_observer *ops, void *arg);

/* Newest first: copy up to cap records into out, return how many were
 * copied. Any thread. */
size_t proxy_records(struct proxy_shared *sh, struct proxy_call_record *out,
                     size_t cap);

/* Create the proxy of one worker on its transport and transaction table
 * (borrowed). Registers it with sh so other workers can reach it. Main
 * thread before the worker starts, or the worker thread. Returns 0 and
 * *out, or -EINVAL (worker index already taken). */
int proxy_new(struct proxy_shared *sh, struct tp *tp, struct txn_table *tt,
              struct proxy **out);
/* Unregister from sh and close. Call on the worker thread after
 * txn_table_free (every call is gone then) and before tp_free; the
 * memory is released by libuv's close callback (keep running the loop).
 * NULL ok. */
void proxy_free(struct proxy *p);

/* Give the proxy a received message before the transaction layer sees
 * it. Returns true if the message was handed to another worker (tp_post)
 * and must not be processed here: a response whose branch names another
 * worker, or a request whose target connection lives on another worker
 * (see the file comment). Cheap for everything else. */
bool proxy_steer(struct proxy *p, const struct tp_rx *rx);

/* Does the proxy serve this request (vs. the app answering it itself)?
 * INVITE, ACK, BYE, and every in-dialog request (To tag) or request for a
 * user (R-URI with a user part) except REGISTER and CANCEL. */
bool proxy_wants(const struct sip_msg *req);

/* A request for the proxy (from the txn request callback). t is the
 * server transaction (NULL for an ACK that matched none: forwarded
 * statelessly if it is in-dialog through us, else dropped). Always
 * answers or forwards. */
void proxy_on_request(struct proxy *p, struct txn *t, const struct sip_msg *req,
                      const struct tp_src *src);

/* The registrar accepted a REGISTER for extension ext: every call ringing
 * for ext (on any worker) looks up the bindings again and forks to the
 * new ones at once. Any thread (queued to each worker, uv_async). */
void proxy_binding_added(struct proxy_shared *sh, struct slice ext);

/* A cluster node was declared down (docs/cluster.md); node is its
 * advertised address (ip and port). On every worker, each call's branches
 * sent via that node stop: a CANCEL goes out (in case the node is only
 * cut off), the branch's transaction is given up at once and counts as
 * 480. The worker then re-reads the callee's bindings and forks to new
 * ones (the phone may have registered at another node already), and a
 * call with nothing left ringing ends (§16.7: 480 when nothing better)
 * unless an observer holds it (wake). A binding with a stopped branch's
 * Contact that appears later while the call rings gets a new branch.
 * Any thread: queued to every worker. */
void proxy_node_down(struct proxy_shared *sh,
                     const struct sockaddr_storage *node);

/* The app's REGISTER handling answered 200 to reg: if it carried a
 * Contact (other than "*"), call proxy_binding_added for its To user.
 * Worker thread. */
void proxy_register_ok(struct proxy *p, const struct sip_msg *reg);

/* Add a branch to a running fork: send the INVITE to binding b too.
 * Returns 0; -EALREADY if the call has a final response or is being
 * cancelled; -EEXIST if b's Contact URI already has a branch (on the same
 * flow, or on one still open); -ENOTCONN if b is a TCP/TLS binding whose
 * connection is gone (unreachable: the phone is pushed instead); -ENOSPC
 * at max_branches; or a send error. The call's owning worker only. */
int proxy_call_add_branch(struct proxy_call *call, const struct reg_contact *b);

/* The observer that held call call_id to extension callee (call_started
 * returned true) no longer needs it held: its wake-ups have ended (the
 * woken phones registered, or their pushes failed for good). The worker
 * first re-reads callee's bindings and forks to new ones (a phone that
 * has just registered), then, if every branch is final, sends the best
 * response (§16.7). status: a final standing for the failed wake-ups
 * (480, RFC 8599 §5.6.2 step 5), sent when no branch gave a final of its
 * own (a real phone's answer, e.g. a desk's 486, wins), or 0. A call with
 * no branch at all gets 480 either way. Any thread: queued to
 * worker `worker` (mutex + uv_async). Unknown or ended calls: no-op. */
void proxy_call_release(struct proxy_shared *sh, unsigned worker,
                        const char *call_id, const char *callee, int status);

/* Send 180 Ringing to the caller on behalf of the callee (the push for a
 * sleeping phone went out). The proxy is the UAS of this provisional, so
 * it needs a To tag: one random tag per call, also used for every final
 * the proxy itself generates for that call (408/480/487), so the caller
 * sees one early dialog for the proxy. Returns 0, or -EALREADY once a
 * final was sent. The call's owning worker only. */
int proxy_call_ringing(struct proxy_call *call);

/* Has the branch to Contact URI uri sent a provisional response (above
 * 100)? false if there is no such branch. The call's worker only. */
bool proxy_call_branch_rang(const struct proxy_call *call, const char *uri);

/* What proxy_late_cancel sends (strings borrowed for the call). */
struct proxy_late {
    const char *call_id;     /* the ended call's Call-ID */
    const char *caller;      /* From user */
    const char *caller_name; /* From display name ("" or NULL: none) */
    const char *callee;      /* To user */
    const char *reason;      /* Reason header value for the CANCEL (and
                                the BYE), e.g. SIP;cause=487 */
};

/* Rule 7 (product.md): a VoIP-pushed phone woke for a call that already
 * ended. Send binding b a fresh INVITE (the ended call's Call-ID, From the
 * caller, no body) in its own client transaction and CANCEL it with
 * `Reason: info->reason` as soon as it answers provisionally (RFC 3261
 * §9.1); a 2xx it sends anyway is ACKed and BYEd (with the Reason). Any
 * thread: b and info are copied and queued to the worker owning b's TCP
 * flow, else the first worker. Returns 0, -EINVAL (bad input) or -ENOSPC
 * (queue full). */
int proxy_late_cancel(struct proxy_shared *sh, const struct reg_contact *b,
                      const struct proxy_late *info);

/* The To tag of the proxy's stateless responses (one per process; see
 * docs/calls.md): a TU that answers a request with txn_reply_stateless
 * uses it so the proxy recognises and drops the ACK. Any thread. */
struct slice proxy_stateless_tag(const struct proxy *p);

/* Graceful shutdown, on the worker thread (app/main.c on SIGTERM).
 * From now on every new out-of-dialog request the proxy would route gets
 * 503 with "Retry-After: retry_after_s", statelessly. Every call whose
 * caller has no final response yet (a ringing fork, or a held call to a
 * sleeping phone with no branch at all) gets 503 + Retry-After at once,
 * its branches are CANCELled (Reason: SIP;cause=503) and its record says
 * failed/503, so observers end it as a call that was not answered
 * ([wake] sends the missed-call pushes). With all, relayed requests still
 * waiting for their final (in-dialog, MESSAGE) are answered 503 too;
 * without it they may finish (a BYE still goes through). In-dialog
 * requests are still relayed. Idempotent. */
void proxy_drain(struct proxy *p, unsigned retry_after_s, bool all);

/* Calls that still need the network: a caller without a final response,
 * a branch without its final (the CANCEL/487 in flight), or an INVITE
 * caller that has not ACKed our non-2xx final yet (we would retransmit
 * it). 0 once draining is complete. Worker thread. */
size_t proxy_busy(const struct proxy *p);

struct proxy_stats {
    uint64_t calls;          /* INVITEs routed to an extension */
    uint64_t answered;       /* calls with a 2xx */
    uint64_t in_dialog;      /* in-dialog requests relayed */
    uint64_t acks_forwarded; /* stateless ACKs */
    uint64_t steered;        /* messages posted to another worker */
    uint64_t rejected;       /* 4xx/5xx we generated */
    uint64_t branches_added; /* branches added to running forks */
    uint64_t late_invites;   /* rule 7 INVITE+CANCELs sent */
    uint64_t stateless;      /* requests refused statelessly (no
                                credentials: 407 and earlier refusals) */
    uint64_t stateless_acks; /* ACKs for those, absorbed */
    uint64_t shutdown;       /* calls answered 503 by proxy_drain */
};
void proxy_stats_get(const struct proxy *p, struct proxy_stats *out);

/* ---- pure helpers (exposed for tests) ---------------------------------- */

/* RFC 3261 §16.7 step 6: is final status a better than the current best b
 * (0 = none yet)? 6xx beats everything; otherwise the lower class wins;
 * within a class the first one stays. 2xx are never compared here. */
bool proxy_status_better(int a, int b);

/* What the caller is sent for a best branch status (§16.7: 503 becomes
 * 500; no response at all becomes 408). */
int proxy_status_upstream(int best);

/* Outcome for a final status sent upstream. */
enum proxy_outcome proxy_outcome_for(int status);

#endif
