/*
 * transport/tp: SIP over UDP, TCP and TLS on one libuv loop (one struct tp
 * per worker thread). A TLS connection is a TCP connection with an SSL
 * object (tp_tls.c): the same framing, flows, limits and deadlines. We
 * accept TLS connections (phones) and open them to a TLS next hop that has
 * no connection yet (another cluster node), verifying its certificate.
 *
 * A worker is a thread + uv_loop + one struct tp + one struct txn_table.
 * The tp owns the worker's sockets (its own UDP socket per listener, opened
 * by us with SO_REUSEPORT and handed to uv_udp_open because Debian's libuv
 * 1.44 lacks UV_UDP_REUSEPORT; likewise its own TCP listening socket, so the
 * kernel spreads new connections over the workers), its TCP connections
 * (a connection stays on the worker that accepted or opened it), the
 * per-message arena, and the worker's timer queue (struct tq) driven by one
 * uv_timer. Later layers (txn) put their timers into that same queue.
 *
 * Receive path: a UDP datagram is one message; on TCP the stream is cut by
 * sip_frame() (Content-Length), leading CRLFs are keep-alives (RFC 5626: a
 * CRLFCRLF ping is answered with a CRLF pong), and a stream that can never
 * frame (sip_frame -1, garbage, over SIP_MAX_MSG_LEN) closes the connection.
 * Each message is parsed into the worker arena (reset per message) and given
 * to the one receive callback with a source descriptor. Parse failures of
 * requests are passed up too (rx->err set) so the TU can answer 400 when the
 * top Via was decoded; unparseable responses, datagrams of only CR/LF and
 * datagrams whose first byte cannot start a SIP message are dropped.
 *
 * STUN (RFC 5389) on the UDP ports: a datagram is STUN when its header says
 * so (first two bits zero, the magic cookie, a length that is a multiple of
 * 4 and matches the datagram), never by its first letter: a SIP method is
 * a token and may start with a digit or one of -.!%*_+`'~ (RFC 4475
 * intmeth). A Binding Request is answered here with a Binding Success
 * Response carrying XOR-MAPPED-ADDRESS (RFC 5626 §4.4.2 keep-alives, which
 * also tell the phone its public address); other STUN messages are dropped.
 *
 * NAT (RFC 3581): we always behave as if the client asked for rport
 * ("force_rport"). The source descriptor carries the packet's real source,
 * and tp_dest_reply() turns it into "back to source ip:port from the same
 * local socket" for UDP and "over the same connection" for TCP. Adding
 * ;received/;rport to the Via is the builder's job (it sees tp_rx.src).
 *
 * Flows: every TCP connection gets a uint64_t flow id that is never reused
 * in the process (a global counter; the low 8 bits hold the owning worker's
 * index). tp_flow_alive() answers "is it still open?" for bindings (RFC 5626
 * flows). UDP has no flows: its flow id is 0 and is never alive.
 *
 * Limits: SIP_MAX_MSG_LEN per message; max_conns open TCP connections per
 * worker (more are accepted and closed at once; libuv itself keeps a spare
 * fd and does the EMFILE accept-and-close trick in uv__server_io); a cap
 * on connections accepted from one source (max_per_source: one IPv4
 * address, or one IPv6 /64), counted over all workers of the process in
 * one shared table, because the kernel spreads one source's connections
 * over every worker's listening socket; a deadline for the first complete
 * message of an accepted connection (first_message_ms, counted from the
 * accept, CRLF keep-alives do not count) and for completing any later
 * message once its first bytes arrived (message_ms), so a peer dripping
 * bytes cannot hold a connection; the TCP idle timeout (idle_timeout_ms,
 * long: a phone's registered flow lives on it) once the connection has
 * carried a message and holds no partial one; a cap on bytes queued for
 * writing per connection (a peer that does not read is disconnected).
 * Refused connections are logged at most once per second per worker and
 * reason, with the count of the ones not logged.
 *
 * UDP spreading: the kernel picks a worker's SO_REUSEPORT socket by the
 * 4-tuple, so one busy source (a trunk, an SBC, a load generator) would
 * land on one worker. With a tp_group, the worker that reads a request
 * datagram peeks at its Call-ID (sip_peek_call_id) and, when the hash
 * names another worker of the group, hands the bytes over with the same
 * inbox as tp_post() before parsing them. Every message of a Call-ID,
 * retransmissions included, is so parsed and matched on one worker,
 * whichever port it came from. Responses are not steered here: the branch
 * of our client transactions names their worker (txn_branch_worker).
 *
 * Connection balancing: the same hash spreads new TCP/TLS connections
 * over the workers' listening sockets, unevenly for a few dozen of them
 * (a 30/20 split of 50 is common), and a connection stays on its worker.
 * A worker of a tp_group that accepts a connection while another member
 * has fewer hands it over (a dup of the socket through that worker's
 * inbox) before reading from it, so the members' counts stay within one
 * of each other.
 *
 * Threads: everything here is worker-thread only (the thread running the
 * loop), except tp_post() and tp_post_send(), which any thread may call.
 */
#ifndef PUSHPBX_TRANSPORT_TP_H
#define PUSHPBX_TRANSPORT_TP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <uv.h>

#include "base/slice.h"
#include "base/tq.h"
#include "sip/msg.h"

#define TP_MAX_WORKERS 64
#define TP_MAX_LISTENERS 16
/* "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535" + NUL */
#define TP_ADDRSTRLEN 56

enum tp_proto {
    TP_UDP = 1,
    TP_TCP = 2,
    TP_TLS = 3, /* TCP + TLS (tp_tls.c); a flow like TCP */
};

/* Reliable, connection-oriented: TCP or TLS. */
static inline bool
tp_proto_stream(enum tp_proto p)
{
    return p == TP_TCP || p == TP_TLS;
}

/* "udp" / "tcp" / "tls". */
const char *tp_proto_name(enum tp_proto p);

/* A socket address, IPv4 or IPv6. len is 0 when unset. */
struct tp_addr {
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
        struct sockaddr_storage ss;
    } u;
    socklen_t len;
};

/* Parse "1.2.3.4:5060", "[::1]:5060" (port required, 0 allowed) or, with
 * allow_no_port, a bare "1.2.3.4"/"::1"/"[::1]" (port 0). Numeric only, no
 * DNS. Returns 0 or -EINVAL. */
int tp_addr_parse(struct slice s, bool allow_no_port, struct tp_addr *out);
/* Numeric host (no port, IPv6 without brackets) into out; returns 0 or
 * -EINVAL. For building Via sent-by and received= values. */
int tp_addr_from_ip(struct slice ip, uint16_t port, struct tp_addr *out);
/* "1.2.3.4:5060" or "[::1]:5060" into out (>= TP_ADDRSTRLEN); returns out. */
char *tp_addr_format(const struct tp_addr *a, char *out, size_t cap);
/* Host only ("1.2.3.4", "::1") into out; returns out. */
char *tp_addr_host(const struct tp_addr *a, char *out, size_t cap);
uint16_t tp_addr_port(const struct tp_addr *a);
/* Same family, address and port. */
bool tp_addr_equal(const struct tp_addr *a, const struct tp_addr *b);

/* One listening address. */
struct tp_listen_spec {
    enum tp_proto proto;
    struct tp_addr addr;
};

/* Parse a listen spec string: space-separated "proto:host:port" items, e.g.
 * "udp:0.0.0.0:5060 tcp:[::1]:5060"; proto is udp, tcp or tls; port 0 means
 * ephemeral. Fills out[0..*count). Returns 0; -EINVAL with a message in err
 * (may be NULL) for bad syntax; -E2BIG if more than cap items. */
int tp_listen_spec_parse(const char *spec, struct tp_listen_spec *out,
                         size_t cap, size_t *count, char *err, size_t errlen);
/* "udp:127.0.0.1:5060" into out (>= TP_ADDRSTRLEN + 4); returns out. */
char *tp_listen_spec_format(const struct tp_listen_spec *s, char *out,
                            size_t cap);

/* Where a message came from. */
struct tp_src {
    enum tp_proto proto;
    struct tp_addr local;  /* our address it arrived on */
    struct tp_addr remote; /* the packet's source (for received/rport) */
    uint64_t flow_id;      /* TCP/TLS connection; 0 for UDP */
    int listener;          /* index of the listener (UDP socket or TCP
                              listener that accepted); -1 for outbound
                              connections we opened */
    unsigned worker;       /* worker it is handled on: the one that read
                              it, or the one UDP spreading gave it to */
    uint64_t rx_us;        /* monotonic µs (uv_hrtime) when the bytes were
                              read; kept across tp_post, so latency is
                              measured from the first socket read */
};

/* One received message, as given to the receive callback. */
struct tp_rx {
    /* Parsed message (worker arena; valid during the callback only). When
     * err is set, msg was zeroed before the parse and holds whatever the
     * parser filled before failing: check msg->via.host before answering. */
    const struct sip_msg *msg;
    const struct sip_error *err; /* NULL when the parse succeeded */
    struct slice raw;            /* the framed bytes (borrowed): msg is
                                    the parse of exactly these */
    struct tp_src src;
};

struct tp;
struct tp_tls;   /* TLS contexts, shared by the workers (tp_tls.c) */
struct tp_group; /* the workers: they share UDP requests by Call-ID and
                    balance accepted connections */

/* Receive callback: one per tp. It may send, close flows, even call
 * tp_free() (the tp re-checks after every callback). */
typedef void tp_recv_cb(struct tp *tp, const struct tp_rx *rx, void *arg);
/* A TCP flow closed (peer close, error, idle timeout, connect failure, or
 * tp_flow_close). status: 0 for an orderly close, else a negative errno or
 * libuv error code (UV_ECONNREFUSED, UV_ETIMEDOUT...). Optional. */
typedef void tp_flow_cb(struct tp *tp, uint64_t flow_id, int status, void *arg);

struct tp_cfg {
    unsigned worker;             /* this worker's index, < TP_MAX_WORKERS */
    size_t max_conns;            /* open TCP connections; default 1024 */
    size_t max_per_source;       /* accepted TCP connections from one source
                                    address (IPv6: one /64), all workers of
                                    the process together; default 64;
                                    0 = no cap */
    uint32_t first_message_ms;   /* an accepted connection must deliver its
                                    first complete message within this time
                                    of the accept; default 5 s; 0 = none */
    uint32_t message_ms;         /* a message whose first bytes arrived must
                                    be complete within this time; default
                                    10 s; 0 = none */
    uint32_t idle_timeout_ms;    /* TCP idle close; default 10 min; 0 = never */
    int udp_rcvbuf;              /* SO_RCVBUF to ask for; default 4 MiB */
    size_t max_write_queue;      /* bytes queued per connection; def 1 MiB */
    uint32_t connect_timeout_ms; /* outbound TCP connect; default 10 s */
    struct tp_tls *tls;          /* borrowed, outlives the tp; NULL = no
                                    TLS listeners (tls: items fail) and
                                    no outbound TLS */
    struct tp_group *group;      /* borrowed, outlives the tp; NULL = no
                                    UDP spreading and no connection
                                    balancing (file comment) */
    tp_recv_cb *on_recv;         /* required */
    tp_flow_cb *on_flow_closed;
    void *arg; /* passed to both callbacks */
};

/* Fill defaults (callbacks NULL). */
void tp_cfg_defaults(struct tp_cfg *cfg);

/* A group of n workers (1..TP_MAX_WORKERS) that spread UDP requests over
 * each other by Call-ID and balance accepted connections. Each tp created with
 * cfg.group joins it at tp_new (slot cfg.worker) and leaves it when its memory
 * goes; a request for a slot that is empty (not created yet, or gone) is
 * handled where it was read. Returns 0 and *out, or -EINVAL. Free with
 * tp_group_free() after every member tp is gone. Any thread. */
int tp_group_new(unsigned n, struct tp_group **out);
void tp_group_free(struct tp_group *g);
/* UDP spreading by Call-ID on (the default) or off; accepted connections
 * are balanced over the group either way. Before the members start. */
void tp_group_set_udp_spread(struct tp_group *g, bool on);
/* The worker of the group that owns the request datagram buf[0..len)
 * (leading CRLFs skipped): its Call-ID hash modulo the group size, or -1
 * when the peek finds no Call-ID. Any thread. */
int tp_group_owner(const struct tp_group *g, const char *buf, size_t len);
/* UDP request datagrams worker w read and handed to another worker of the
 * group; kept by the group, so readable after w's tp is gone. Any thread
 * (relaxed atomic); 0 for w out of range. */
uint64_t tp_group_steered(const struct tp_group *g, unsigned w);

/* Create the transport of one worker on loop (not started: no listeners).
 * cfg is copied. Returns 0 and *out, or -EINVAL (bad cfg). Loop thread. */
int tp_new(uv_loop_t *loop, const struct tp_cfg *cfg, struct tp **out);

/* Close every handle and free tp once libuv has called the close
 * callbacks: the caller keeps running the loop (uv_run) until it has no
 * handles left. Safe inside a tp callback (freeing is deferred). NULL ok.
 * Pending TCP writes are dropped; on_flow_closed is not called any more. */
void tp_free(struct tp *tp);

/* Open one listener. Port 0 binds an ephemeral port; read the result with
 * tp_listener(). Sockets get SO_REUSEPORT (and SO_REUSEADDR for TCP), so
 * several workers can listen on the same address: start worker 0 first
 * and give the others its bound addresses. Returns the listener index
 * (>= 0), or -errno; err (may be NULL) gets "udp:1.2.3.4:5060: reason". */
int tp_listen(struct tp *tp, const struct tp_listen_spec *spec, char *err,
              size_t errlen);
size_t tp_listener_count(const struct tp *tp);
/* Bound address of listener i (port filled in). -ENOENT if no such. */
int tp_listener(const struct tp *tp, size_t i, struct tp_listen_spec *out);

/* Where to send. */
struct tp_dest {
    enum tp_proto proto;
    struct tp_addr addr; /* UDP: destination; TCP/TLS: where to connect if
                            flow_id is not alive (len 0: do not connect,
                            as for a phone's flow); TLS: the server's
                            certificate must name this IP address */
    uint64_t flow_id;    /* TCP/TLS: preferred connection; 0 = by addr */
    int listener;        /* UDP: send from this listener's socket; -1 =
                            the first UDP listener of addr's family */
};

/* Reply destination for a message from src: back to the source address
 * and port from the same socket (UDP, force_rport), or over the same
 * connection (TCP; with addr = src->remote as the connect fallback, which
 * a caller may replace by the Via sent-by per RFC 3261 §18.2.2). */
void tp_dest_reply(const struct tp_src *src, struct tp_dest *out);

/* Send one message (parts are concatenated; bytes are copied before
 * return, so parts are borrowed). UDP: sendto now. TCP/TLS: queue on the
 * live flow dst->flow_id; if that is not alive (or 0), reuse an open
 * connection of that transport to dst->addr, else open one (connect-out,
 * from our first listener of that transport when it is bound to one
 * address; the bytes are written once it connects, for TLS once the
 * handshake completed and the server's certificate was verified).
 * *flow_out (may be NULL) gets the flow used (0 for UDP).
 * Returns 0; -EMSGSIZE above SIP_MAX_MSG_LEN; -ENOTCONN if the flow is gone
 * and there is no address; -EAFNOSUPPORT/-ENOENT if no UDP socket fits;
 * -ENOBUFS over the write-queue cap; -EMFILE at max_conns;
 * -EPROTONOSUPPORT for TLS without cfg.tls; or a send error. Asynchronous
 * connect, handshake (-EPROTO; UV_ETIMEDOUT past first_message_ms),
 * verification (-EPROTO) and write failures close the flow and are
 * reported through on_flow_closed. Worker thread only. */
int tp_sendv(struct tp *tp, const struct tp_dest *dst,
             const struct slice *parts, size_t count, uint64_t *flow_out);

static inline int
tp_send(struct tp *tp, const struct tp_dest *dst, struct slice data,
        uint64_t *flow_out)
{
    return tp_sendv(tp, dst, &data, 1, flow_out);
}

/* Is this TCP flow still open on this worker? Never true for 0 or for an
 * id of a flow that was closed (ids are not reused). A flow owned by
 * another worker is not visible here: see tp_flow_worker(). */
bool tp_flow_alive(const struct tp *tp, uint64_t flow_id);
/* Is this TCP/TLS flow open on any worker of the process? A process-wide
 * table (one mutex, touched once per connection open and close) answers
 * for flows of other workers too: a binding whose connection is gone is
 * unreachable (the phone cannot accept connections), whichever worker
 * asks. Any thread. */
bool tp_flow_open(uint64_t flow_id);
/* Worker index that owns a flow id. */
static inline unsigned
tp_flow_worker(uint64_t flow_id)
{
    return (unsigned)(flow_id & 0xff);
}
/* Close a flow (deferred; on_flow_closed is called with status 0). Returns
 * 0 or -ENOENT. */
int tp_flow_close(struct tp *tp, uint64_t flow_id);
/* Number of open TCP connections (accepted + outbound). */
size_t tp_conn_count(const struct tp *tp);

/* Hand a received message to another worker (thread-safe): the bytes and
 * src are copied into target's inbox (mutex) and target's loop is woken
 * with uv_async_send; it parses them again and calls its own on_recv.
 * Used when a response to one of worker N's client transactions arrives
 * on another worker's UDP socket (the branch carries N, see txn.h).
 * Returns 0, -EMSGSIZE, or -ENOBUFS if target's inbox is full. */
int tp_post(struct tp *target, struct slice raw, const struct tp_src *src);

/* Sending on a TCP flow that another worker owns (tp_flow_worker() of
 * dst->flow_id is not this tp's worker): tp_sendv() calls the relay (set
 * by the layer that knows every worker's tp), which should hand parts to
 * that worker with tp_post_send() and return 0, or return a negative code
 * (owner gone, inbox full) to make tp_sendv() connect to dst->addr
 * instead. On success *flow_out is dst->flow_id. Responses to what was
 * sent then arrive on the owning worker (see txn_branch_worker). */
typedef int tp_relay_cb(struct tp *tp, unsigned worker,
                        const struct tp_dest *dst, const struct slice *parts,
                        size_t count, void *arg);
/* Set or clear (cb NULL) the relay. Worker thread. */
void tp_set_relay(struct tp *tp, tp_relay_cb *cb, void *arg);

/* Queue a send for target (thread-safe, like tp_post): the bytes (parts
 * concatenated, copied) are written by target's loop with tp_sendv(dst),
 * i.e. on target's flow dst->flow_id, or to dst->addr if that flow has
 * closed. A failure there is only logged. Returns 0, -EMSGSIZE, -EINVAL
 * (not TCP, or the flow is not target's), or -ENOBUFS (inbox full). */
int tp_post_send(struct tp *target, const struct tp_dest *dst,
                 const struct slice *parts, size_t count);

/* The worker's timer queue (one uv_timer behind it) and its clock:
 * monotonic ms, the loop's uv_now() unless a test set its own clock. */
struct tq *tp_tq(struct tp *tp);
uint64_t tp_now_ms(const struct tp *tp);

/* Test hook: replace the clock behind tp_now_ms() and the timer queue by
 * now(arg), which must return monotonic ms; NULL restores uv_now(). A unit
 * test drives timers (transaction timers A to M, TCP idle and connect)
 * with fake time this way: it advances its clock and fires what is due
 * with tq_run(tp_tq(tp), tp_now_ms(tp), 0). The uv_timer still wakes the
 * loop, but fires nothing the fake clock has not reached. Set it before
 * any timer is armed (right after tp_new). Worker thread. */
typedef uint64_t tp_clock_fn(void *arg);
void tp_set_clock(struct tp *tp, tp_clock_fn *now, void *arg);
uv_loop_t *tp_loop(const struct tp *tp);
unsigned tp_worker(const struct tp *tp);

/* Monotonic µs (uv_hrtime) at which the message now being handed to
 * on_recv on this thread was read (tp_src.rx_us); 0 outside a receive
 * callback. Lets the registrar's bind callback (wake: a woken phone's
 * REGISTER) time its work from the packet's arrival, as reg_bind_cb
 * carries no source; the proxy passes the INVITE's rx_us explicitly
 * (proxy_call_info). Any thread (thread-local). */
uint64_t tp_rx_us(void);

/* Counters for metrics. conns_rejected counts refusals at max_conns,
 * conns_rejected_source those at max_per_source; conns_closed_slow the
 * connections closed by the first-message or message deadline. */
struct tp_stats {
    uint64_t rx_msgs, rx_bytes, rx_parse_errors, rx_dropped;
    uint64_t tx_msgs, tx_bytes, tx_errors;
    uint64_t conns_accepted, conns_rejected, conns_closed_garbage;
    uint64_t conns_rejected_source, conns_closed_slow;
    uint64_t pings_answered, stun_answered;
    uint64_t tls_handshakes, tls_failed; /* TLS connections (accepted or
                                            opened) whose handshake
                                            completed / failed */
    uint64_t conns_handed_over; /* accepted here, handed to a worker of the
                                   group with fewer connections */
    uint64_t tls_released;      /* times a quiet TLS connection's buffers were
                                   freed (TLS_QUIET_MS after its last read or
                                   write) */
};
void tp_stats_get(const struct tp *tp, struct tp_stats *out);

/* Accepted TCP connections open now from a's source (its IPv4 address or
 * IPv6 /64; the port is ignored), over every worker of the process: the
 * count max_per_source caps. Any thread. */
size_t tp_source_conns(const struct tp_addr *a);

/* ---- TLS (tp_tls.c) ------------------------------------------------------
 *
 * One struct tp_tls per process holds the server and client SSL_CTXs built
 * from the [tls] section; every worker's tp borrows it (tp_cfg.tls) and
 * takes a reference to the current context for each accepted or opened
 * connection, so a
 * reload swaps the context for new connections while open ones keep the
 * one they started with (OpenSSL counts the references).
 */

/* [tls] section (option table in tp_tls.c). */
struct tp_tls_cfg {
    char *cert_file; /* PEM chain, leaf first */
    char *key_file;  /* PEM private key */
    char *ca_file;   /* "" = no client certificates asked */
    char *server_ca_file; /* "" = ca_file, else the system's store: CAs
                             of the servers we connect to */
    int min_version; /* 0 = TLS 1.2, 1 = TLS 1.3 */
    char *ciphers;   /* OpenSSL cipher list for TLS 1.2 */
};
struct cfg_section;
extern const struct cfg_section tp_tls_cfg_section;

/* Load cfg's files into a new context holder (the server context of the
 * tls: listeners and the client context of outbound connections: CAs of
 * server_ca_file, else ca_file, else the system's default store; cert_file
 * as the client certificate when a server asks). cfg is copied. Returns 0
 * and *out (owned; tp_tls_free), or -EINVAL / -ENOENT with "file: reason"
 * in err. Any thread, at start-up. */
int tp_tls_new(const struct tp_tls_cfg *cfg, struct tp_tls **out, char *err,
               size_t errlen);
/* Read the certificate, key (and CA) files again into a new context and
 * make it the one new connections get; open connections keep theirs. On a
 * bad file returns -EINVAL with the reason in err and the old context
 * stays. Any thread (SIGHUP handler on the main loop). */
int tp_tls_reload(struct tp_tls *t, char *err, size_t errlen);
/* NULL ok. After every tp using it is freed. */
void tp_tls_free(struct tp_tls *t);
/* --check-config: load cfg's files as tp_tls_new does and check that the
 * server certificate is valid now (not expired, not yet valid). Returns 0
 * or -EINVAL / -ENOENT with "file: reason" in err. Any thread. */
int tp_tls_check(const struct tp_tls_cfg *cfg, char *err, size_t errlen);
/* Reloads that succeeded since tp_tls_new (for logs and tests). */
unsigned tp_tls_generation(const struct tp_tls *t);

/* ---- STUN (RFC 5389) ---------------------------------------------------- */

#define TP_STUN_COOKIE 0x2112A442u
#define TP_STUN_HDR_LEN 20
/* Largest response tp_stun_answer() writes. */
#define TP_STUN_ANSWER_MAX 128

enum tp_stun_kind {
    TP_STUN_NONE = 0,        /* not a STUN message: SIP or junk */
    TP_STUN_BINDING_REQUEST, /* method Binding, class request */
    TP_STUN_OTHER,           /* any other STUN message (indication,
                                response, other method) */
};

/* Classify a datagram by its STUN header (RFC 5389 §6): first two bits
 * zero, bytes 4..7 the magic cookie, message length a multiple of 4 and
 * equal to len - 20. Pure function of the bytes; never reads past len. */
enum tp_stun_kind tp_stun_classify(const void *buf, size_t len);

/* The answer to a STUN Binding Request req (tp_stun_classify said
 * TP_STUN_BINDING_REQUEST): a Binding Success Response with the same
 * transaction id and an XOR-MAPPED-ADDRESS of mapped (the request's source,
 * IPv4 or IPv6); or, when req carries comprehension-required attributes we
 * do not know, a 420 Binding Error Response listing them in
 * UNKNOWN-ATTRIBUTES (§7.3.1). Written into out (cap >=
 * TP_STUN_ANSWER_MAX bytes). Returns the response length, or -EINVAL if
 * req is no Binding Request, its attributes do not fit its length, or
 * mapped is not IPv4/IPv6. */
int tp_stun_answer(const void *req, size_t len, const struct tp_addr *mapped,
                   uint8_t *out, size_t cap);

#endif
