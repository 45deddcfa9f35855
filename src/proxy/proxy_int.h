/*
 * proxy/proxy_int: declarations shared inside the proxy room. Not for
 * other rooms. Files: proxy.c (a worker's proxy, notes, shutdown),
 * proxy_route.c (initial requests, steering), proxy_fork.c (branches,
 * §16.7), proxy_dialog.c (in-dialog relay), proxy_call.c (call life and
 * record), proxy_late.c (rule 7), proxy_shared.c (process-wide state).
 */
#ifndef PUSHPBX_PROXY_PROXY_INT_H
#define PUSHPBX_PROXY_PROXY_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "base/arena.h"
#include "base/buf.h"
#include "base/list.h"
#include "proxy/proxy.h"
#include "registrar/reg.h"
#include "sip/uri.h"

struct media_client;
struct media_relays;
struct media_lat;
struct media_cfg;

#define PROXY_MAX_OBSERVERS 4
#define PROXY_NOTIFY_MAX 1024 /* queued binding notifications per worker */
#define PROXY_RINGING_BUCKETS 1024
/* A MESSAGE forked to live bindings none of which answered at all (not
 * even 100) by then is stored and answered 202: a UDP binding of a
 * suspended app never answers, and waiting for Timer F (64*T1 = 32 s)
 * would outlast the sender's own transaction. */
#define PROXY_MSG_GRACE_MS 3000

/* One (callee, worker) with fork calls waiting for bindings (see
 * proxy_shared.ringing). */
struct proxy_ringing {
    struct proxy_ringing *next;
    unsigned worker;
    size_t calls;
    char ext[33];
};

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
    /* proxy_message.c's store callbacks not yet run (a put being
     * committed, a claim being read): they post to sh, so
     * proxy_shared_free waits for them (proxy_msg_wait_idle). */
    atomic_size_t msg_inflight;
    /* struct proxy_call in memory on every worker (proxy_calls_open):
     * from proxy_call_new to the end of its last transaction. */
    atomic_size_t calls_open;
    /* Where calls ring, by callee: (ext, worker) -> count of fork calls
     * waiting for new bindings on that worker, under lock. A REGISTER is
     * noted only to the workers listed for its extension
     * (proxy_binding_added), not to every worker. Entered before the
     * call's lookup, like waiting. */
    struct proxy_ringing *ringing[PROXY_RINGING_BUCKETS];
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
    /* [cluster]: peer check (proxy_shared_set_cluster); NULL = single */
    proxy_peer_fn *is_peer;
    proxy_peer_uri_fn *peer_uri; /* NULL: node to node over UDP */
    void *peer_arg;

    /* [media]: the rtpengines (NULL or empty: no relay) and the settings
     * the proxy applies (proxy_media.c); counters are atomics summed
     * over workers. */
    struct media_relays *relays;
    int media_relay;      /* enum media_relay_mode */
    int media_on_failure; /* enum media_on_failure */
    int media_ice;        /* enum media_ice */
    int media_srtp;       /* enum proxy_media_srtp */
    _Atomic uint64_t media_counts[PROXY_MEDIA_COUNTERS];
    struct media_lat *media_lat; /* set-up time relay added (owned) */

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
    PROXY_NOTE_MSG_PUT,     /* a MESSAGE's commit ended (proxy_message.c) */
    PROXY_NOTE_MSG_DELIVER, /* a stored message was read: send it */
    PROXY_NOTE_NODE_DOWN,   /* proxy_node_down: addr is the node's */
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
    void *data; /* MSG_PUT, MSG_DELIVER: proxy_message.c's job (owned by
                   the note's handler) */
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
    struct buf out; /* scratch for built messages */
    struct arena a; /* scratch for lookups (reset per use) */
    /* proxy_steer's location lookup of an INVITE's callee, taken over by
     * route_initial for the same request (same read callback): one
     * lookup per INVITE. While valid it holds a waiting count for user
     * (proxy_waiting_add). */
    struct arena pre_a;
    struct {
        bool valid;
        char user[33];
        char call_id[PROXY_REC_CALL_ID_MAX];
        uint32_t cseq;
        struct reg_contact *bs; /* in pre_a */
        size_t n;
    } pre;
    char via_host[3][TP_ADDRSTRLEN]; /* [0] UDP, [1] TCP, [2] TLS "host:port" */
    char rr_host[TP_ADDRSTRLEN];
    struct proxy_stats stats;
    struct media_client *mc; /* NULL: no media relay */
    struct list_node mops;   /* struct media_op: ng requests in flight */
};

#define PROXY_MAX_BRANCHES 32
/* RFC 3261 §18.1.1: a request larger than this (200 bytes under a 1500
 * byte path MTU) goes over TCP when the next hop allows it (a node whose
 * advertise URI names no transport). */
#define PROXY_UDP_MAX 1300

enum call_kind { CALL_FORK, CALL_RELAY };

/* branch.media / proxy_call.media: not relayed, relayed by an rtpengine
 * not known yet (late offer: the index comes with the offer in the 2xx),
 * or the index of the rtpengine that took the offer (>= 0). */
#define PROXY_MEDIA_NONE (-2)
#define PROXY_MEDIA_ANY (-1)

struct branch {
    struct proxy_call *call;
    struct txn *ct; /* NULL before start and after TERMINATED */
    int status;     /* final status (received or synthesised), 0 = none */
    bool provisional, cancelled, started;
    char *uri;        /* Contact URI (owned) */
    uint64_t flow_id; /* the binding's TCP/TLS flow; 0 for UDP */
    char *auth;       /* WWW-/Proxy-Authenticate lines of a 401/407 (owned) */
    size_t auth_len;  /* bytes in auth */
    /* media relay (proxy_media.c): our Via branch (kept for the
     * offer's and answer's via-branch), where the request goes (the
     * send waits for rtpengine's offer answer while media_wait) */
    char vbranch[TXN_BRANCH_MAX];
    int media;       /* PROXY_MEDIA_NONE, _ANY or the rtpengine index */
    bool media_wait; /* offer in flight: the request is not sent yet */
    bool media_timed;        /* media_offer_us set, no answer timed yet */
    uint64_t media_offer_us; /* how long the INVITE waited for its offer */
    bool nat;        /* the binding is behind NAT (private Contact that
                        differs from where it registered from) */
    bool tls;        /* the binding is TLS (SRTP towards it) */
    bool pop;
    uint64_t flow_b;
    struct tp_dest dst;
    bool peer; /* a remote binding: via its node, Route with pp-ext */
    bool peer_any; /* its node's advertise names no transport: UDP, or
                      TCP for a request over PROXY_UDP_MAX (§18.1.1) */
    bool gone; /* its node was declared down: stopped (480); a binding
                  with its Contact is a new branch */
};

struct proxy_call {
    struct list_node node;  /* p->calls while a fork rings */
    struct list_node anode; /* p->all for its whole life */
    struct proxy *p;
    enum call_kind kind;
    struct txn *st; /* NULL after TERMINATED */
    unsigned refs;
    struct tq_entry ring;
    /* forked: the first branches are out, later ones are "added" */
    bool final_sent, holding, forked;
    bool ringing_sent;     /* we sent our own 180 (proxy_call_ringing) */
    int release_status;    /* proxy_call_release's status: the answer when no
                              branch gave a final (a real phone's answer,
                              e.g. a desk's 486, is more telling) */
    char tag[17];          /* our To tag for what we answer ourselves; "" until
                              first needed */
    char caller_name[128]; /* From display name, unquoted, UTF-8 */
    bool pop; /* the INVITE carried our Route (preloaded): pop it */
    int final_status;
    int best_status;
    char *best; /* forwarded bytes of the best non-2xx final (owned) */
    size_t best_len;
    struct branch *best_br; /* the branch whose bytes best holds */
    struct tp_src src_a;    /* the caller's request source (late 2xx) */
    uint64_t flow_a;        /* caller's TCP/TLS flow, 0 for UDP */
    bool pop2;              /* in-dialog: our second Route goes too */
    bool peer;              /* forked here for another node (pp-ext): no
                               late branches, no wake */
    /* media: an in-dialog request's dialog is relayed (our Route's
     * pp-m), PROXY_MEDIA_* as in branch.media */
    int media;
    bool media_used;  /* an offer reached rtpengine: delete at the end */
    bool caller_nat;  /* the caller is behind NAT (Contact or SDP) */
    char nat_a[TP_ADDRSTRLEN]; /* the caller's source when it is NATed */
    bool msg_store; /* a MESSAGE stored if every branch fails (proxy_message.c) */
    bool msg_taken;            /* a branch's 2xx came after it was stored */
    uint64_t msg_id;           /* its stored id once committed, else 0 */
    struct tq_entry msg_grace; /* PROXY_MSG_GRACE_MS: no answer, store */
    struct proxy_call_record rec;
    size_t nbr;
    struct branch br[PROXY_MAX_BRANCHES];
};

/* p->via_host index of a transport. */
static inline int
proxy_tpk(enum tp_proto pr)
{
    return pr == TP_TLS ? 2 : pr == TP_TCP ? 1 : 0;
}

/* Via transport token. */
static inline const char *
proxy_tp_upper(enum tp_proto pr)
{
    return pr == TP_TLS ? "TLS" : pr == TP_TCP ? "TCP" : "UDP";
}

/* URI transport param for a transport (none for UDP). */
static inline const char *
proxy_tp_uri_param(enum tp_proto pr)
{
    return pr == TP_TLS   ? ";transport=tls"
           : pr == TP_TCP ? ";transport=tcp"
                          : "";
}

static inline int64_t
proxy_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void
proxy_copy_cstr(char *dst, size_t cap, struct slice s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;

    if (n)
        memcpy(dst, s.ptr, n);
    dst[n] = '\0';
}

/* A fork call for ext on worker w starts waiting for bindings (before its
 * location lookup), or stops (it ended, or was not a fork after all).
 * Any thread (sh->lock). */
void proxy_waiting_add(struct proxy_shared *sh, struct slice ext, unsigned w);
void proxy_waiting_done(struct proxy_shared *sh, struct slice ext, unsigned w);

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

/* proxy_route.c */
/* Forget proxy_steer's kept lookup (releasing its waiting count). */
void proxy_pre_drop(struct proxy *p);
/* Is uri one of our addresses (domain or listener host, our port)? */
bool proxy_uri_is_us(const struct proxy *p, const struct sip_uri *u);
/* The transport a URI asks for: sips: or transport=tls is TLS,
 * transport=tcp TCP, else UDP (RFC 3261 §19.1.2, §26.2.2). */
enum tp_proto proxy_uri_proto(const struct sip_uri *u);
/* Destination for a URI: numeric host only (no DNS yet), transport param,
 * default port 5060 (5061 for TLS). 0 or -EINVAL. */
int proxy_dest_from_uri(const struct sip_uri *u, struct tp_dest *d);
/* The top Route value parsed, if any. Returns 1 found, 0 none, -1 bad. */
int proxy_top_route(const struct sip_msg *m, struct sip_name_addr *na,
                    struct sip_uri *u, struct slice *second);
/* Unescaped user of a sip/sips URI into the arena. */
int proxy_uri_user(struct arena *a, const struct sip_uri *u,
                   struct slice *user);
/* An ACK for one of our stateless responses (our process-wide To tag). */
bool proxy_stateless_ack(const struct proxy *p, const struct sip_msg *m);
/* Answer t statefully with a fresh To tag (counted as rejected). */
void proxy_reject(struct proxy *p, struct txn *t, int status,
                  const char *reason, struct slice extra);

/* proxy_dialog.c */
/* The flow of the other side of a dialog, from our Route's pp-fa/pp-fb. */
uint64_t proxy_other_flow(const struct sip_uri *route,
                          const struct tp_src *src);
/* Send req, an ACK for a 2xx, statelessly to dst with our Via for dst's
 * transport, popping our Route (and the second, pop2). node_any: dst is
 * another node reached over UDP whose advertise URI names no transport
 * (to_node_any), so an ACK over PROXY_UDP_MAX goes over TCP instead
 * (dst->proto is then TP_TCP). Builds in p->out; counts acks_forwarded.
 * true when sent. */
bool proxy_ack_send(struct proxy *p, const struct sip_msg *req,
                    struct tp_dest *dst, bool pop2, bool node_any);
/* Relay an in-dialog request (t NULL: an ACK, stateless). */
void proxy_route_in_dialog(struct proxy *p, struct txn *t,
                           const struct sip_msg *req, const struct tp_src *src);

/* proxy_call.c */
struct proxy_call *proxy_call_new(struct proxy *p, struct txn *t,
                                  enum call_kind kind,
                                  const struct sip_msg *req,
                                  const struct tp_src *src);
void proxy_call_unref(struct proxy_call *c);
/* Record the call's end once (ring, observers, log). */
void proxy_call_finish(struct proxy_call *c, enum proxy_outcome o, int status);
void proxy_call_cancel_branches(struct proxy_call *c, struct branch *except,
                                const char *reason);
/* Our To tag for the responses the proxy itself sends for this call. */
struct slice proxy_call_tag(struct proxy_call *c);
/* Send a final we generate (extra: CRLF-ended header lines). */
void proxy_call_final_extra(struct proxy_call *c, int status,
                            const char *reason, struct slice extra);
void proxy_call_final(struct proxy_call *c, int status, const char *reason);
/* The ringing fork call_id to callee on this worker, or NULL. */
struct proxy_call *proxy_call_find(struct proxy *p, const char *call_id,
                                   const char *callee);

/* proxy_fork.c */
/* Every branch final (or none left) and nothing sent yet: send the best. */
void proxy_call_check_done(struct proxy_call *c);
/* Start branch b of c towards dst with R-URI ruri (empty = keep), popping
 * our Route when pop; flow_b goes in our Record-Route. */
int proxy_branch_start(struct proxy_call *c, struct branch *b,
                       const struct tp_dest *dst, struct slice ruri, bool pop,
                       uint64_t flow_b, struct slice next);
/* Where to send a request for binding b (NAT and flow rules). */
void proxy_dest_from_binding(const struct proxy *p, const struct reg_contact *b,
                             struct tp_dest *d);
/* Re-read the callee's bindings and fork c to the new ones. */
void proxy_fork_new_bindings(struct proxy *p, struct proxy_call *c);
void proxy_note_release(struct proxy *p, const struct proxy_note *n);
void proxy_note_node_down(struct proxy *p, const struct proxy_note *n);

/* proxy_media.c */
/* Open/close this worker's ng client (proxy_new, proxy_free). */
int proxy_media_open(struct proxy *p);
void proxy_media_close(struct proxy *p);
/* Offer the request's SDP for branch b before it is sent. Returns true
 * when an offer was sent: the branch is sent from its callback
 * (proxy_branch_send). false: send it now (b->media says whether the
 * dialog is relayed). */
bool proxy_media_offer(struct proxy_call *c, struct branch *b,
                       const struct sip_msg *req);
/* A 18x/2xx with SDP from branch b of a relayed call: hold it until
 * rtpengine answered and relay it then (proxy_branch_relay). true when
 * held. */
bool proxy_media_response(struct proxy_call *c, struct branch *b,
                          const struct sip_msg *rsp);
/* An in-dialog ACK with SDP (the answer to an offer in a 2xx) in a relayed
 * dialog: held until rtpengine answered, then sent to dst by
 * proxy_ack_send (node_any: over TCP when large, as there). true when
 * held. */
bool proxy_media_ack(struct proxy *p, const struct sip_msg *ack,
                     const struct tp_dest *dst, bool pop2, bool node_any,
                     int relay, const struct tp_src *src);
/* The call ended (or a relayed dialog's BYE): delete its session. */
void proxy_media_delete(struct proxy *p, struct slice call_id,
                        struct slice from_tag, int relay);
/* A new call from the caller of req (from src): its From tag for the
 * record, and whether it is behind NAT (c->caller_nat, c->nat_a). */
void proxy_media_caller(struct proxy_call *c, const struct sip_msg *req,
                        const struct tp_src *src);
/* proxy_shared.c: the figures of a relayed call's delete answer into its
 * record (found by Call-ID). Any thread. */
struct media_ng_stats;
void proxy_record_media(struct proxy_shared *sh, const char *call_id,
                        const struct media_ng_stats *st);
/* The call is being freed: its requests in flight forget it. */
void proxy_media_detach(struct proxy_call *c);
/* The SDP body of m, if it has one (Content-Type application/sdp). */
bool proxy_sdp_body(const struct sip_msg *m, struct slice *sdp);
/* The request's relay index from our Route's pp-m. */
int proxy_route_media(const struct sip_uri *route);
/* RFC 1918 / RFC 6598 / link-local / ULA. */
bool proxy_private_addr(const struct tp_addr *a);

/* proxy_fork.c: send branch b (after its offer when relayed), with body
 * (has_body) instead of the request's. Returns 0 or a send error. */
int proxy_branch_send(struct proxy_call *c, struct branch *b,
                      const struct slice *body);
/* Relay branch b's provisional or 2xx response (after its answer), body
 * replacing its own when not NULL. */
void proxy_branch_relay(struct proxy_call *c, struct branch *b,
                        const struct sip_msg *rsp, const struct slice *body);
/* A TCP/TLS binding whose connection is gone cannot be reached (see
 * proxy_fork.c); a UDP binding can. */
static inline bool
proxy_binding_reachable(const struct reg_contact *b)
{
    return b->transport == REG_TP_UDP || tp_flow_open(b->flow_id);
}

/* proxy_message.c (docs/messages.md) */
/* A MESSAGE from an authenticated caller: 413 / 415 answered here
 * (false), else true. */
bool proxy_msg_accept(struct proxy *p, struct txn *t, const struct sip_msg *req);
/* The MESSAGE call c was looked up (bindings bs): with no reachable
 * binding it is stored (202 once committed) or, an isComposing, answered
 * 480: true, handled. false: fork it (c->msg_store set). */
bool proxy_msg_start(struct proxy_call *c, const struct sip_msg *req,
                     const struct reg_contact *bs, size_t n);
/* Every branch of a MESSAGE with msg_store failed: store it instead of
 * relaying the failure (true), or false (a phone's own refusal). */
bool proxy_msg_fallback(struct proxy_call *c);
/* A branch's 2xx for a MESSAGE: true when it was already stored (after
 * the grace): the stored copy is removed, the 2xx is not relayed. */
bool proxy_msg_late_2xx(struct proxy_call *c);
void proxy_msg_note_put(struct proxy *p, struct proxy_note *n);
void proxy_msg_note_deliver(struct proxy *p, struct proxy_note *n);
/* A MSG_* note dropped unrun (the worker is being freed): free its job. */
void proxy_msg_note_drop(struct proxy_note *n);
/* Wait (at most 5 s) until no store callback of proxy_message.c is due:
 * they post to sh. The store's writer must still run. */
void proxy_msg_wait_idle(struct proxy_shared *sh);
/* An accepted REGISTER: deliver ext's stored messages to its binding. */
void proxy_msg_register_ok(struct proxy *p, const struct sip_msg *reg);
/* proxy_shared.c */
void proxy_notify_message_stored(struct proxy_shared *sh,
                                 const struct proxy_msg_info *mi);

/* proxy_late.c */
void proxy_note_late(struct proxy *p, const struct proxy_note *n);

#endif
