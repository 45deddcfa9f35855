/*
 * proxy/proxy: per-worker call routing and forking; see proxy.h.
 *
 * A call (struct proxy_call) is one server transaction (the caller's
 * INVITE, or an in-dialog request we relay) plus up to max_branches client
 * transactions, all on this worker. It is freed when the server
 * transaction and every client transaction have reported
 * TXN_EV_TERMINATED (refs counts them), so no event can reach a freed
 * call. The request forwarded to each branch is spliced from the server
 * transaction's stored copy (sip_build_forward), never re-serialised.
 *
 * §16.7 in short: provisional responses above 100 are relayed at once;
 * every 2xx is relayed at once and CANCELs the other branches; a 6xx
 * CANCELs the others; other finals are kept (the best by
 * proxy_status_better) until every branch is final, then the best goes
 * upstream (503 as 500; none at all as 408; a 401/407 with the
 * challenges of every branch's 401/407, step 7). The ring timeout, caller
 * CANCEL and 2xx are decided at once (the caller does not wait for the
 * cancelled branches' 487s); late non-2xx branch responses are then
 * dropped, but a late 2xx is still relayed (statelessly once the server
 * transaction has sent its non-2xx final or is gone: RFC 6026).
 *
 * Workers: a branch whose TCP flow lives on another worker is written
 * there through tp's relay (relay_send); its responses come back by the
 * branch's worker index (proxy_steer).
 *
 * Record-Route: one entry "<sip:us;lr;pp-fa=F;pp-fb=G>" per branch, where
 * F is the caller's TCP/TLS flow and G the branch's (0 for UDP), with the
 * host:port of our listener and the transport param of the caller's
 * transport. When the branch uses another transport (a UDP phone calling
 * a TLS phone) we record-route twice, as Kamailio's r2=on: the top entry
 * names our listener of the callee's transport, the second that of the
 * caller's, so each side sends its in-dialog requests (a callee's BYE)
 * over a transport it has. An in-dialog request pops our one or two
 * Routes and goes over the flow of the other side, so a NAT'd TCP/TLS
 * phone is reached over its own connection.
 *
 * Cost per call: one malloc for the call, one per branch URI, one for a
 * stored non-2xx final; everything per message is in the worker arena or
 * p->out.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/xmalloc.h"
#include "proxy/proxy_int.h"
#include "registrar/reg.h"
#include "sip/build.h"
#include "sip/uri.h"

#define MAX_BRANCHES 32
#define LOOKUP_ARENA_CAP (256 * 1024)

enum call_kind { CALL_FORK, CALL_RELAY };

struct branch {
    struct proxy_call *call;
    struct txn *ct; /* NULL before start and after TERMINATED */
    int status;     /* final status (received or synthesised), 0 = none */
    bool provisional, cancelled, started;
    char *uri;        /* Contact URI (owned) */
    uint64_t flow_id; /* the binding's TCP/TLS flow; 0 for UDP */
    char *auth;       /* WWW-/Proxy-Authenticate lines of a 401/407 (owned) */
    size_t auth_len;  /* bytes in auth */
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
    struct proxy_call_record rec;
    size_t nbr;
    struct branch br[MAX_BRANCHES];
};

/* p->via_host index of a transport. */
static int
tpk(enum tp_proto pr)
{
    return pr == TP_TLS ? 2 : pr == TP_TCP ? 1 : 0;
}

/* Via transport token. */
static const char *
tp_upper(enum tp_proto pr)
{
    return pr == TP_TLS ? "TLS" : pr == TP_TCP ? "TCP" : "UDP";
}

/* URI transport param for a transport (none for UDP). */
static const char *
tp_uri_param(enum tp_proto pr)
{
    return pr == TP_TLS   ? ";transport=tls"
           : pr == TP_TCP ? ";transport=tcp"
                          : "";
}

static int64_t
wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
copy_cstr(char *dst, size_t cap, struct slice s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;

    memcpy(dst, s.ptr, n);
    dst[n] = '\0';
}

/* ---- set-up ------------------------------------------------------------ */

static void
on_notify(uv_async_t *h)
{
    proxy_notes_run(h->data);
}

static bool
addr_wildcard(const struct tp_addr *a)
{
    if (a->u.sa.sa_family == AF_INET)
        return a->u.in4.sin_addr.s_addr == 0;
    if (a->u.sa.sa_family == AF_INET6)
        return memcmp(&a->u.in6.sin6_addr, &in6addr_any, 16) == 0;
    return true;
}

/* "host:port" we put in Via and Record-Route for listener spec s. */
static void
hostport(const struct proxy *p, const struct tp_listen_spec *s, char *out,
         size_t cap)
{
    char host[TP_ADDRSTRLEN];

    if (addr_wildcard(&s->addr))
        snprintf(out, cap, "%s:%u", p->sh->domain,
                 (unsigned)tp_addr_port(&s->addr));
    else if (s->addr.u.sa.sa_family == AF_INET6)
        snprintf(out, cap, "[%s]:%u",
                 tp_addr_host(&s->addr, host, sizeof(host)),
                 (unsigned)tp_addr_port(&s->addr));
    else
        tp_addr_format(&s->addr, out, cap);
}

/* tp relay (tp.h): a send on a TCP flow that another worker owns, e.g. a
 * branch to a callee whose registered connection is on worker 1 while the
 * call lives on worker 0 (its caller's connection is there). The bytes go
 * to the owner's inbox and it writes them on the flow, so a NAT'd TCP
 * phone is reached over its own connection; the callee's responses then
 * arrive on the owner and proxy_steer hands them back to us by the
 * branch's worker index. Our transaction keeps timer B: a failed write
 * over there shows as a timeout here. */
static int
relay_send(struct tp *tp, unsigned w, const struct tp_dest *dst,
           const struct slice *parts, size_t count, void *arg)
{
    struct proxy *p = arg;
    int rc = -ENOENT;

    (void)tp;
    if (w >= TP_MAX_WORKERS || w == p->worker)
        return -EINVAL;
    pthread_mutex_lock(&p->sh->lock);
    struct proxy *o = p->sh->workers[w];
    if (o)
        rc = tp_post_send(o->tp, dst, parts, count);
    pthread_mutex_unlock(&p->sh->lock);
    if (rc == 0)
        p->stats.steered++;
    return rc;
}

int
proxy_new(struct proxy_shared *sh, struct tp *tp, struct txn_table *tt,
          struct proxy **out)
{
    unsigned w = tp_worker(tp);
    struct proxy *p;

    pthread_mutex_lock(&sh->lock);
    if (w >= TP_MAX_WORKERS || sh->workers[w]) {
        pthread_mutex_unlock(&sh->lock);
        return -EINVAL;
    }
    p = xcalloc(1, sizeof(*p));
    p->sh = sh;
    p->tp = tp;
    p->tt = tt;
    p->worker = w;
    list_init(&p->calls);
    list_init(&p->all);
    list_init(&p->notes);
    buf_init(&p->out, SIP_MAX_MSG_LEN);
    arena_init(&p->a, LOOKUP_ARENA_CAP);
    uv_async_init(tp_loop(tp), &p->notify, on_notify);
    p->notify.data = p;
    for (size_t i = 0; i < tp_listener_count(tp); i++) {
        struct tp_listen_spec s;
        if (tp_listener(tp, i, &s) < 0)
            continue;
        int k = tpk(s.proto);
        if (!p->via_host[k][0])
            hostport(p, &s, p->via_host[k], sizeof(p->via_host[k]));
        if (!p->rr_host[0])
            hostport(p, &s, p->rr_host, sizeof(p->rr_host));
    }
    for (int k = 0; k < 3; k++)
        if (!p->via_host[k][0])
            snprintf(p->via_host[k], sizeof(p->via_host[k]), "%s",
                     p->rr_host[0] ? p->rr_host : sh->domain);
    sh->workers[w] = p;
    pthread_mutex_unlock(&sh->lock);
    tp_set_relay(tp, relay_send, p);
    *out = p;
    return 0;
}

static void
on_closed(uv_handle_t *h)
{
    struct proxy *p = h->data;

    buf_fini(&p->out);
    arena_fini(&p->a);
    free(p);
}

void
proxy_free(struct proxy *p)
{
    struct list_node *n, *tmp;

    if (!p)
        return;
    tp_set_relay(p->tp, NULL, NULL);
    pthread_mutex_lock(&p->sh->lock);
    p->sh->workers[p->worker] = NULL;
    list_for_each_safe(n, tmp, &p->notes)
    {
        list_remove(n);
        free(container_of(n, struct proxy_note, node));
    }
    pthread_mutex_unlock(&p->sh->lock);
    uv_close((uv_handle_t *)&p->notify, on_closed);
}

void
proxy_stats_get(const struct proxy *p, struct proxy_stats *out)
{
    *out = p->stats;
}

/* ---- addresses --------------------------------------------------------- */

/* Is uri one of our addresses (domain or listener host, our port)? */
static bool
uri_is_us(const struct proxy *p, const struct sip_uri *u)
{
    uint16_t port = u->has_port ? u->port : 0;
    bool host = slice_eq_nocase_cstr(u->host, p->sh->domain);

    for (int k = 0; k < 3 && !host; k++) {
        const char *hp = p->via_host[k];
        const char *colon = strrchr(hp, ':');
        struct slice h = slice_make(hp, colon ? (size_t)(colon - hp) : 0);
        if (h.len > 2 && h.ptr[0] == '[') {
            h.ptr++;
            h.len -= 2;
        }
        host = slice_eq_nocase(u->host, h);
    }
    if (!host)
        return false;
    if (port == 0)
        return true;
    for (int k = 0; k < 3; k++) {
        const char *colon = strrchr(p->via_host[k], ':');
        unsigned long long v;
        if (colon && slice_to_u64(slice_cstr(colon + 1), 65535, &v) == 0 &&
            v == port)
            return true;
    }
    return false;
}

/* Request-URI host: ours (domain or a numeric address; requests reach us
 * by IP) or foreign. */
static bool
host_is_numeric(struct slice host)
{
    struct tp_addr a;

    return tp_addr_from_ip(host, 0, &a) == 0;
}

/* The transport a URI asks for: sips: or transport=tls is TLS,
 * transport=tcp TCP, else UDP (RFC 3261 §19.1.2, §26.2.2). */
static enum tp_proto
uri_proto(const struct sip_uri *u)
{
    struct slice tr;

    if (u->scheme == SIP_URI_SIPS)
        return TP_TLS;
    if (sip_uri_param(u, "transport", &tr)) {
        if (slice_eq_nocase_cstr(tr, "tls"))
            return TP_TLS;
        if (slice_eq_nocase_cstr(tr, "tcp"))
            return TP_TCP;
    }
    return TP_UDP;
}

/* Destination for a URI: numeric host only (no DNS yet), transport
 * param, default port 5060 (5061 for TLS). */
static int
dest_from_uri(const struct sip_uri *u, struct tp_dest *d)
{
    *d = (struct tp_dest){.proto = uri_proto(u), .listener = -1};
    return tp_addr_from_ip(u->host,
                           u->has_port          ? u->port
                           : d->proto == TP_TLS ? 5061
                                                : 5060,
                           &d->addr);
}

static uint64_t
param_u64(struct slice params, const char *name)
{
    struct slice v;
    uint64_t out = 0;

    if (!sip_param_get(params, name, &v) || v.len == 0 || v.len > 16)
        return 0;
    for (size_t i = 0; i < v.len; i++) {
        char c = v.ptr[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                       : -1;
        if (d < 0)
            return 0;
        out = out << 4 | (uint64_t)d;
    }
    return out;
}

/* The flow of the other side of a dialog, from our Route's pp-fa/pp-fb. */
static uint64_t
other_flow(const struct sip_uri *route, const struct tp_src *src)
{
    uint64_t fa = param_u64(route->params, "pp-fa");
    uint64_t fb = param_u64(route->params, "pp-fb");
    uint64_t f = src->flow_id;

    if (f && f == fa)
        return fb;
    if (f && f == fb)
        return fa;
    if (!f)
        return fa ? fa : fb; /* UDP side: the TCP one, if any */
    return 0;
}

/* The top Route value parsed, if any. Returns 1 found, 0 none, -1 bad. */
static int
top_route(const struct sip_msg *m, struct sip_name_addr *na, struct sip_uri *u,
          struct slice *second)
{
    struct sip_hdr_iter it;
    struct slice v;
    struct sip_error e;
    const char *why;

    sip_hdr_iter_init(&it, m, SIP_HDR_ROUTE);
    if (!sip_hdr_iter_next(&it, &v))
        return 0;
    if (sip_name_addr_parse(v, na, &e) < 0 ||
        sip_uri_parse(na->uri, u, &why) < 0)
        return -1;
    *second = SLICE_NULL;
    if (sip_hdr_iter_next(&it, &v))
        *second = v;
    return 1;
}

static void
reg_src_of(const struct tp_src *src, struct reg_src *rs)
{
    *rs = (struct reg_src){
        .transport = src->proto == TP_TLS   ? REG_TP_TLS
                     : src->proto == TP_TCP ? REG_TP_TCP
                                            : REG_TP_UDP,
        .flow_id = src->flow_id,
    };
    memcpy(&rs->addr, &src->remote.u.ss,
           src->remote.len <= sizeof(rs->addr) ? src->remote.len
                                               : sizeof(rs->addr));
}

/* Unescaped user of a sip/sips URI into the arena. */
static int
uri_user(struct arena *a, const struct sip_uri *u, struct slice *user)
{
    if (u->scheme != SIP_URI_SIP && u->scheme != SIP_URI_SIPS)
        return -EINVAL;
    return sip_unescape(u->user, a, user);
}

/* An ACK for one of our stateless responses (our process-wide To tag):
 * it matches no transaction and goes nowhere (§17.2.3: a stateless
 * element drops the ACK for its non-2xx). */
static bool
stateless_ack(const struct proxy *p, const struct sip_msg *m)
{
    return m->method == SIP_METHOD_ACK &&
           slice_eq_cstr(m->to.tag, p->sh->sl_tag);
}

/* ---- steering between workers ------------------------------------------ */

static bool
post_to(struct proxy *p, unsigned w, const struct tp_rx *rx)
{
    bool done = false;

    if (w == p->worker || w >= TP_MAX_WORKERS)
        return false;
    pthread_mutex_lock(&p->sh->lock);
    struct proxy *o = p->sh->workers[w];
    if (o && tp_post(o->tp, rx->raw, &rx->src) == 0)
        done = true;
    pthread_mutex_unlock(&p->sh->lock);
    if (done)
        p->stats.steered++;
    return done;
}

bool
proxy_steer(struct proxy *p, const struct tp_rx *rx)
{
    const struct sip_msg *m = rx->msg;
    struct sip_name_addr na;
    struct sip_uri u, ru;
    struct slice second, user;
    const char *why;

    if (rx->err || !m)
        return false;
    if (!m->is_request) {
        int w = txn_branch_worker(m->via.branch);
        return w >= 0 && post_to(p, (unsigned)w, rx);
    }
    /* Already steered once (src.worker is the receiver), or a TCP
     * request (its responses must leave over its own flow here). */
    if (rx->src.worker != p->worker || rx->src.proto != TP_UDP ||
        !p->sh->reg || stateless_ack(p, m))
        return false;
    int rt = top_route(m, &na, &u, &second);
    if (rt == 1 && uri_is_us(p, &u) && m->to.tag.len) {
        uint64_t f = other_flow(&u, &rx->src);
        return f && post_to(p, tp_flow_worker(f), rx);
    }
    if (m->method != SIP_METHOD_INVITE && m->method != SIP_METHOD_CANCEL &&
        m->method != SIP_METHOD_ACK)
        return false;
    if (m->method != SIP_METHOD_ACK && m->to.tag.len)
        return false;
    if (m->method == SIP_METHOD_INVITE &&
        !sip_msg_hdr(m, SIP_HDR_PROXY_AUTHORIZATION))
        return false; /* will be challenged: nothing to steer */
    if (sip_uri_parse(m->ruri, &ru, &why) < 0)
        return false;
    arena_reset(&p->a);
    struct reg_contact *bs;
    size_t n;
    if (uri_user(&p->a, &ru, &user) < 0 || user.len == 0 ||
        reg_lookup(p->sh->reg, user, &p->a, &bs, &n) < 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (bs[i].transport != REG_TP_UDP && bs[i].flow_id &&
            tp_flow_worker(bs[i].flow_id) != p->worker)
            return post_to(p, tp_flow_worker(bs[i].flow_id), rx);
    return false;
}

bool
proxy_wants(const struct sip_msg *req)
{
    switch (req->method) {
    case SIP_METHOD_REGISTER:
    case SIP_METHOD_CANCEL:
        return false;
    case SIP_METHOD_INVITE:
    case SIP_METHOD_ACK:
    case SIP_METHOD_BYE:
        return true;
    default:
        break;
    }
    if (req->to.tag.len || sip_msg_hdr(req, SIP_HDR_ROUTE))
        return true;
    struct sip_uri u;
    const char *why;
    return req->method != SIP_METHOD_OPTIONS &&
           sip_uri_parse(req->ruri, &u, &why) == 0 && u.user.len > 0;
}

/* ---- answers ----------------------------------------------------------- */

static void
reject(struct proxy *p, struct txn *t, int status, const char *reason,
       struct slice extra)
{
    char tag[17];

    sip_new_tag(tag);
    p->stats.rejected++;
    if (txn_reply(t, status, reason, slice_cstr(tag), extra, SLICE_NULL) < 0)
        log_debug("proxy", "cannot answer %d", status);
}

/* Refuse an out-of-dialog request. anon: it brought no credentials for
 * our realm, so nothing but a refusal or a challenge can come of it: one
 * stateless response (RFC 3261 §16.6 lets a proxy answer statelessly),
 * no server transaction. A spoofed INVITE thus gets one 407 (not eleven,
 * timer G) and leaves no 32 s of state; the client's own retransmissions
 * each get a fresh one, and its ACK is absorbed by our stateless To tag
 * (proxy_on_request). Requests with credentials keep the transaction. */
static void
refuse(struct proxy *p, struct txn *t, bool anon, int status,
       const char *reason, struct slice extra)
{
    if (!anon) {
        reject(p, t, status, reason, extra);
        return;
    }
    p->stats.rejected++;
    p->stats.stateless++;
    if (txn_reply_stateless(t, status, reason, slice_cstr(p->sh->sl_tag),
                            extra) < 0)
        log_debug("proxy", "cannot answer %d statelessly", status);
}

/* ---- calls ------------------------------------------------------------- */

static void call_unref(struct proxy_call *c);
static void check_done(struct proxy_call *c);

static void
call_record(struct proxy_call *c, enum proxy_outcome o, int status)
{
    if (c->kind != CALL_FORK || c->rec.ended_ms)
        return;
    c->rec.outcome = o;
    c->rec.status = status;
    c->rec.ended_ms = wall_ms();
    c->rec.branches = (unsigned)c->nbr;
    if (list_linked(&c->node)) {
        list_remove(&c->node);
        proxy_waiting_done(c->p->sh);
    }
    list_init(&c->node);
    proxy_record_add(c->p->sh, &c->rec);
    if (o == PROXY_OUT_ANSWERED)
        c->p->stats.answered++;
    log_info("proxy",
             "call ended %s status=%d call_id=%s caller=%s callee=%s "
             "branches=%zu%s%s",
             proxy_outcome_name(o), status, c->rec.call_id, c->rec.caller,
             c->rec.callee, c->nbr, c->rec.answered_by[0] ? " by=" : "",
             c->rec.answered_by);
}

static void
cancel_branches(struct proxy_call *c, struct branch *except, const char *reason)
{
    for (size_t i = 0; i < c->nbr; i++) {
        struct branch *b = &c->br[i];
        if (b == except || b->cancelled || b->status || !b->ct)
            continue;
        b->cancelled = true;
        if (c->kind == CALL_FORK || txn_kind(b->ct) == TXN_INVITE_CLIENT)
            (void)txn_cancel(b->ct, slice_cstr(reason));
    }
}

/* Our To tag for responses the proxy generates itself for this call: one
 * per call, so our 180 and our final (408/480/487) belong to the same
 * early dialog at the caller. */
static struct slice
call_tag(struct proxy_call *c)
{
    if (!c->tag[0])
        sip_new_tag(c->tag);
    return slice_cstr(c->tag);
}

/* Send a final response we generate (timeout, CANCEL, nothing left);
 * extra: CRLF-ended header lines. */
static void
send_final_extra(struct proxy_call *c, int status, const char *reason,
                 struct slice extra)
{
    if (c->final_sent)
        return;
    c->final_sent = true;
    c->final_status = status;
    if (c->st)
        (void)txn_reply(c->st, status, reason, call_tag(c), extra,
                        SLICE_NULL);
}

static void
send_final(struct proxy_call *c, int status, const char *reason)
{
    send_final_extra(c, status, reason, SLICE_NULL);
}

static void
on_ring_timeout(struct tq_entry *e)
{
    struct proxy_call *c = container_of(e, struct proxy_call, ring);
    bool rang = c->rec.ringing_ms != 0 || c->ringing_sent;
    /* Nobody rang: the request itself went unanswered (§16.7 would give
     * 408 for no response); somebody rang (or we told the caller it rings
     * while a phone was being woken) but did not pick up: 480. */
    int status = rang ? 480 : 408;

    if (c->final_sent)
        return;
    cancel_branches(c, NULL, "");
    send_final(c, status, NULL);
    call_record(c, PROXY_OUT_NO_ANSWER, status);
}

static void on_branch_event(struct txn *t, enum txn_event ev,
                            const struct sip_msg *rsp, void *arg);

static void
call_free(struct proxy_call *c)
{
    tq_cancel(&c->ring);
    list_remove(&c->anode);
    if (list_linked(&c->node)) {
        list_remove(&c->node);
        proxy_waiting_done(c->p->sh);
    }
    for (size_t i = 0; i < c->nbr; i++) {
        free(c->br[i].uri);
        free(c->br[i].auth);
    }
    free(c->best);
    free(c);
}

static void
call_unref(struct proxy_call *c)
{
    if (--c->refs == 0)
        call_free(c);
}

/* Send the stored best response upstream. §16.7 step 7: a 401/407 carries
 * every WWW-Authenticate and Proxy-Authenticate value of all the branches'
 * 401/407 responses (unchanged), so the caller can answer each device's
 * challenge in one go; the best one's own are already in its bytes, the
 * others' go in before the blank line (our builder always ends the
 * headers with "Content-Length: N\r\n\r\n", so the first CRLFCRLF is
 * the end of the headers). Too big to merge: the best alone. */
static void
send_best(struct proxy_call *c, int status)
{
    struct slice bytes = slice_make(c->best, c->best_len);
    const char *end = NULL;
    size_t extra = 0;
    struct buf m;

    if (status == 401 || status == 407)
        for (size_t i = 0; i < c->nbr; i++)
            if (&c->br[i] != c->best_br)
                extra += c->br[i].auth_len;
    if (extra)
        end = memmem(c->best, c->best_len, "\r\n\r\n", 4);
    if (!end) {
        (void)txn_respond(c->st, status, bytes);
        return;
    }
    size_t head = (size_t)(end - c->best) + 2;
    int rc;
    buf_init(&m, SIP_MAX_MSG_LEN);
    rc = buf_append(&m, c->best, head);
    for (size_t i = 0; i < c->nbr && rc == 0; i++)
        if (&c->br[i] != c->best_br && c->br[i].auth_len)
            rc = buf_append(&m, c->br[i].auth, c->br[i].auth_len);
    if (rc == 0)
        rc = buf_append(&m, c->best + head, c->best_len - head);
    (void)txn_respond(c->st, status, rc == 0 ? buf_slice(&m) : bytes);
    buf_fini(&m);
}

/* Keep the challenge lines of a branch's 401/407 for send_best. */
static void
keep_challenges(struct branch *b, const struct sip_msg *rsp)
{
    struct buf lines;

    buf_init(&lines, SIP_MAX_MSG_LEN);
    for (size_t i = 0; i < rsp->hdr_count; i++) {
        const struct sip_hdr *h = &rsp->hdrs[i];
        if (h->id == SIP_HDR_WWW_AUTHENTICATE ||
            h->id == SIP_HDR_PROXY_AUTHENTICATE)
            (void)buf_printf(&lines, SLICE_FMT ": " SLICE_FMT "\r\n",
                             SLICE_ARG(h->name), SLICE_ARG(h->value));
    }
    free(b->auth);
    b->auth = NULL;
    b->auth_len = lines.len;
    if (lines.len) {
        b->auth = xmalloc(lines.len);
        memcpy(b->auth, lines.data, lines.len);
    }
    buf_fini(&lines);
}

/* A 2xx the server transaction cannot send any more: the caller already
 * got our non-2xx final (CANCEL or ring timeout raced the answer) or the
 * transaction is gone. RFC 3261 §16.7 step 5 / RFC 6026: every 2xx goes
 * upstream anyway, statelessly to where the INVITE came from; the
 * caller's UA ACKs and BYEs the dialog it does not want. */
static void
forward_2xx_stateless(struct proxy_call *c, struct slice bytes)
{
    struct tp_dest d;

    tp_dest_reply(&c->src_a, &d);
    int rc = tp_send(c->p->tp, &d, bytes, NULL);
    log_info("proxy", "late 2xx relayed statelessly%s%s call_id=%s",
             rc < 0 ? ": " : "", rc < 0 ? strerror(-rc) : "", c->rec.call_id);
}

/* Every branch final (or none left) and nothing sent yet: send the best. */
static void
check_done(struct proxy_call *c)
{
    if (c->final_sent)
        return;
    for (size_t i = 0; i < c->nbr; i++)
        if (c->br[i].started && c->br[i].status == 0)
            return;
    if (c->holding)
        return; /* an observer keeps it ringing (wake) */
    int up = proxy_status_upstream(c->best_status);
    if (c->nbr == 0)
        up = 480;
    else if (c->best_status == 0 && c->release_status)
        up = c->release_status;
    if (c->best && up == c->best_status && c->st) {
        c->final_sent = true;
        c->final_status = up;
        send_best(c, up);
    } else {
        send_final(c, up, NULL);
    }
    call_record(c, c->nbr == 0 ? PROXY_OUT_UNAVAILABLE : proxy_outcome_for(up),
                up);
}

static void
branch_response(struct proxy_call *c, struct branch *b,
                const struct sip_msg *rsp)
{
    struct proxy *p = c->p;
    int st = rsp->status;

    if (st == 100)
        return;
    buf_reset(&p->out);
    if (sip_build_response_forward(&p->out, rsp) < 0) {
        if (st >= 200 && !b->status) {
            b->status = 502;
            check_done(c);
        }
        return;
    }
    if (st < 200) {
        b->provisional = true;
        if (!c->rec.ringing_ms && st >= 180)
            c->rec.ringing_ms = wall_ms();
        if (!c->final_sent && c->st && !b->cancelled)
            (void)txn_respond(c->st, st, buf_slice(&p->out));
        return;
    }
    if (st < 300) {
        /* Every 2xx goes upstream, even a second branch's (the caller
         * ACKs and BYEs the one it does not want, §16.7 step 5). */
        b->status = st;
        if (!c->st || txn_respond(c->st, st, buf_slice(&p->out)) < 0)
            forward_2xx_stateless(c, buf_slice(&p->out));
        if (!c->final_sent) {
            c->final_sent = true;
            c->final_status = st;
            copy_cstr(c->rec.answered_by, sizeof(c->rec.answered_by),
                      slice_cstr(b->uri ? b->uri : ""));
            cancel_branches(c, b,
                            "Reason: SIP;cause=200;text=\"Call completed "
                            "elsewhere\"\r\n");
            call_record(c, PROXY_OUT_ANSWERED, st);
        }
        return;
    }
    if (b->status)
        return;
    b->status = st;
    if (st == 401 || st == 407)
        keep_challenges(b, rsp);
    if (proxy_status_better(st, c->best_status)) {
        c->best_status = st;
        c->best_br = b;
        free(c->best);
        c->best_len = p->out.len;
        c->best = xmalloc(c->best_len);
        memcpy(c->best, p->out.data, c->best_len);
    }
    if (st >= 600)
        cancel_branches(c, b, "");
    check_done(c);
}

static void
branch_synth(struct proxy_call *c, struct branch *b, int status)
{
    if (b->status)
        return;
    b->status = status;
    if (proxy_status_better(status, c->best_status)) {
        c->best_status = status;
        c->best_br = NULL;
        free(c->best);
        c->best = NULL;
        c->best_len = 0;
    }
    check_done(c);
}

static void
on_branch_event(struct txn *t, enum txn_event ev, const struct sip_msg *rsp,
                void *arg)
{
    struct branch *b = arg;
    struct proxy_call *c = b->call;

    switch (ev) {
    case TXN_EV_RESPONSE:
        branch_response(c, b, rsp);
        break;
    case TXN_EV_TIMEOUT:
        branch_synth(c, b, 408);
        break;
    case TXN_EV_TRANSPORT_ERROR:
        branch_synth(c, b, 503);
        break;
    case TXN_EV_TERMINATED:
        b->ct = NULL;
        if (!b->status) /* ended without a final we saw */
            branch_synth(c, b, 408);
        call_unref(c);
        break;
    case TXN_EV_CANCELLED:
        break;
    }
}

static void
on_server_event(struct txn *t, enum txn_event ev, const struct sip_msg *rsp,
                void *arg)
{
    struct proxy_call *c = arg;

    switch (ev) {
    case TXN_EV_CANCELLED:
        if (c->final_sent)
            break;
        cancel_branches(c, NULL, "");
        send_final(c, 487, NULL);
        call_record(c, PROXY_OUT_CANCELLED, 487);
        break;
    case TXN_EV_TERMINATED:
        c->st = NULL;
        /* A call whose caller is gone stops ringing. */
        if (!c->final_sent) {
            cancel_branches(c, NULL, "");
            c->final_sent = true;
            call_record(c, PROXY_OUT_FAILED, 0);
        }
        call_unref(c);
        break;
    default:
        break;
    }
}

static struct proxy_call *
call_new(struct proxy *p, struct txn *t, enum call_kind kind,
         const struct sip_msg *req, const struct tp_src *src)
{
    struct proxy_call *c = xcalloc(1, sizeof(*c));

    c->p = p;
    c->kind = kind;
    c->st = t;
    c->refs = 1;
    list_init(&c->node);
    list_push_back(&p->all, &c->anode);
    tq_entry_init(&c->ring, on_ring_timeout);
    c->flow_a = src->flow_id;
    c->src_a = *src;
    copy_cstr(c->rec.call_id, sizeof(c->rec.call_id), req->call_id);
    c->rec.started_ms = wall_ms();
    txn_set_cb(t, on_server_event, c);
    return c;
}

/* Start branch b of c towards dst with R-URI ruri (empty = keep), popping
 * our Route when pop, recording route when rr. */
static int
branch_start(struct proxy_call *c, struct branch *b, const struct tp_dest *dst,
             struct slice ruri, bool pop, uint64_t flow_b, struct slice next)
{
    struct proxy *p = c->p;
    const struct sip_msg *req = txn_request(c->st);
    char branch[TXN_BRANCH_MAX], via[TP_ADDRSTRLEN + 96];
    char rr[2 * (TP_ADDRSTRLEN + 96)];
    struct sip_fwd f = {
        .ruri = ruri, .pop_route = pop, .pop_route2 = pop && c->pop2};
    int rc;

    (void)next;
    txn_branch_new(p->tt, branch);
    snprintf(via, sizeof(via), "SIP/2.0/%s %s;branch=%s", tp_upper(dst->proto),
             p->via_host[tpk(dst->proto)], branch);
    f.via = slice_cstr(via);
    if (c->kind == CALL_FORK && req->method == SIP_METHOD_INVITE) {
        enum tp_proto in = c->src_a.proto, out = dst->proto;
        int n = 0;
        if (out != in) /* the callee's side first: it is nearest to it */
            n = snprintf(rr, sizeof(rr),
                         "<sip:%s%s;lr;pp-fa=%" PRIx64 ";pp-fb=%" PRIx64 ">, ",
                         p->via_host[tpk(out)], tp_uri_param(out), c->flow_a,
                         flow_b);
        snprintf(rr + n, sizeof(rr) - (size_t)n,
                 "<sip:%s%s;lr;pp-fa=%" PRIx64 ";pp-fb=%" PRIx64 ">",
                 p->via_host[tpk(in)], tp_uri_param(in), c->flow_a, flow_b);
        f.record_route = slice_cstr(rr);
    }
    buf_reset(&p->out);
    rc = sip_build_forward(&p->out, req, &f);
    if (rc < 0)
        return rc;
    b->call = c;
    rc = txn_client_start(p->tt, buf_slice(&p->out), dst, on_branch_event, b,
                          &b->ct);
    if (rc < 0)
        return rc;
    b->started = true;
    c->refs++;
    return 0;
}

static bool
same_host(const struct tp_addr *a, const struct tp_addr *b)
{
    if (a->u.sa.sa_family != b->u.sa.sa_family)
        return false;
    if (a->u.sa.sa_family == AF_INET)
        return a->u.in4.sin_addr.s_addr == b->u.in4.sin_addr.s_addr;
    return memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, 16) == 0;
}

/* RFC 1918 / RFC 6598 / link-local / ULA: addresses behind a NAT. */
static bool
private_addr(const struct tp_addr *a)
{
    if (a->u.sa.sa_family == AF_INET) {
        uint32_t ip = ntohl(a->u.in4.sin_addr.s_addr);
        return (ip >> 24) == 10 || (ip >> 20) == 0xac1 ||
               (ip >> 16) == 0xc0a8 || (ip >> 22) == 0x191 ||
               (ip >> 16) == 0xa9fe;
    }
    const uint8_t *b = a->u.in6.sin6_addr.s6_addr;
    return (b[0] & 0xfe) == 0xfc || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80);
}

static void
dest_from_binding(const struct proxy *p, const struct reg_contact *b,
                  struct tp_dest *d)
{
    struct sip_uri u;
    const char *why;

    *d = (struct tp_dest){.proto = TP_UDP, .listener = -1};
    if (b->addr.ss_family == AF_INET6) {
        memcpy(&d->addr.u.in6, &b->addr, sizeof(struct sockaddr_in6));
        d->addr.len = sizeof(struct sockaddr_in6);
    } else {
        memcpy(&d->addr.u.in4, &b->addr, sizeof(struct sockaddr_in));
        d->addr.len = sizeof(struct sockaddr_in);
    }
    if (b->transport == REG_TP_UDP) {
        /* NAT rule: the source address is where a NAT'd phone is
         * reachable; but a Contact on the source's own host, or on a
         * non-private address, is honoured as written (a UA may register
         * from one socket and listen on another). */
        struct tp_dest cd;
        if (sip_uri_parse(slice_cstr(b->uri), &u, &why) == 0 &&
            dest_from_uri(&u, &cd) == 0 && cd.proto == TP_UDP &&
            (same_host(&cd.addr, &d->addr) || !private_addr(&cd.addr)))
            d->addr = cd.addr;
    }
    if (b->transport != REG_TP_UDP) {
        /* Over the phone's own connection (RFC 5626 flows; a flow on
         * another worker is written there, relay_send). A phone behind
         * NAT, or an app in the background, cannot accept a connection:
         * no address to connect to (proxy_call_add_branch does not even
         * try when the flow is gone: the binding is unreachable). */
        d->proto = b->transport == REG_TP_TLS ? TP_TLS : TP_TCP;
        d->flow_id = b->flow_id;
        d->addr.len = 0;
    }
}

/* A TCP/TLS binding whose connection is gone cannot be reached: the phone
 * listens on no port we could connect to (an app suspended by iOS, a
 * phone that lost its network without unregistering). The call then
 * waits for a push to wake it (wake.c decides the same way), and the
 * woken phone's REGISTER on a new connection adds the branch. */
static bool
binding_reachable(const struct reg_contact *b)
{
    return b->transport == REG_TP_UDP || tp_flow_open(b->flow_id);
}

int
proxy_call_add_branch(struct proxy_call *c, const struct reg_contact *b)
{
    struct proxy *p = c->p;
    struct tp_dest dst;

    if (c->final_sent || !c->st)
        return -EALREADY;
    /* One branch per device: the same Contact again is the same phone,
     * unless it came back on a new connection after its old one closed
     * (a phone reconnecting gives the same Contact URI). */
    for (size_t i = 0; i < c->nbr; i++)
        if (strcmp(c->br[i].uri, b->uri) == 0 &&
            (c->br[i].flow_id == b->flow_id || tp_flow_open(c->br[i].flow_id)))
            return -EEXIST;
    if (!binding_reachable(b)) {
        log_info("proxy",
                 "binding %s not rung: its %s connection is gone call_id=%s",
                 b->uri, b->transport == REG_TP_TLS ? "TLS" : "TCP",
                 c->rec.call_id);
        return -ENOTCONN;
    }
    if (c->nbr >= p->sh->cfg.max_branches || c->nbr >= MAX_BRANCHES)
        return -ENOSPC;
    struct branch *br = &c->br[c->nbr];
    *br = (struct branch){
        .call = c, .uri = xstrdup(b->uri), .flow_id = b->flow_id};
    c->nbr++;
    dest_from_binding(p, b, &dst);
    int rc = branch_start(c, br, &dst, slice_cstr(b->uri), c->pop,
                          dst.proto != TP_UDP ? b->flow_id : 0, SLICE_NULL);
    if (rc < 0) {
        log_info("proxy", "branch to %s not started: %s call_id=%s", b->uri,
                 strerror(-rc), c->rec.call_id);
        br->status = 503; /* counted as tried; check_done sees it */
        return rc;
    }
    if (c->kind == CALL_FORK) {
        struct proxy_branch_info bi = {.call = c,
                                       .call_id = c->rec.call_id,
                                       .callee = c->rec.callee,
                                       .uri = br->uri,
                                       .added = c->forked,
                                       .worker = p->worker};
        proxy_notify_branch_sent(p->sh, &bi);
    }
    return 0;
}

int
proxy_call_ringing(struct proxy_call *c)
{
    if (c->final_sent || !c->st)
        return -EALREADY;
    if (c->ringing_sent)
        return 0;
    c->ringing_sent = true;
    int rc = txn_reply(c->st, 180, NULL, call_tag(c), SLICE_NULL, SLICE_NULL);
    log_info("proxy", "180 sent for a phone being woken call_id=%s%s%s",
             c->rec.call_id, rc < 0 ? ": " : "", rc < 0 ? strerror(-rc) : "");
    return rc;
}

bool
proxy_call_branch_rang(const struct proxy_call *c, const char *uri)
{
    for (size_t i = 0; i < c->nbr; i++)
        if (c->br[i].uri && strcmp(c->br[i].uri, uri) == 0)
            return c->br[i].provisional;
    return false;
}

/* Re-read the callee's bindings and fork c to the new ones. */
static void
fork_new_bindings(struct proxy *p, struct proxy_call *c)
{
    struct reg_contact *bs;
    size_t count;

    arena_reset(&p->a);
    if (reg_lookup(p->sh->reg, slice_cstr(c->rec.callee), &p->a, &bs, &count) <
        0)
        return;
    for (size_t i = 0; i < count && !c->final_sent; i++)
        if (proxy_call_add_branch(c, &bs[i]) == 0) {
            p->stats.branches_added++;
            log_info("proxy",
                     "branch added to ringing call call_id=%s "
                     "callee=%s contact=%s",
                     c->rec.call_id, c->rec.callee, bs[i].uri);
        }
}

static struct proxy_call *
call_find(struct proxy *p, const char *call_id, const char *callee)
{
    struct list_node *n;

    for (n = p->calls.next; n != &p->calls; n = n->next) {
        struct proxy_call *c = container_of(n, struct proxy_call, node);
        if (strcmp(c->rec.call_id, call_id) == 0 &&
            strcmp(c->rec.callee, callee) == 0)
            return c;
    }
    return NULL;
}

/* proxy_call_release on the call's worker. The bindings are re-read first:
 * a woken phone's REGISTER is stored before wake releases the call (its
 * bind callback runs before the 200), so its branch exists before the
 * hold goes and the call cannot end in between. */
static void
note_release(struct proxy *p, const struct proxy_note *n)
{
    struct proxy_call *c = call_find(p, n->call_id, n->ext);

    if (!c || c->final_sent)
        return;
    fork_new_bindings(p, c);
    if (c->final_sent)
        return;
    c->holding = false;
    c->release_status = n->status;
    log_info("proxy", "call released by its observer call_id=%s status=%d",
             c->rec.call_id, n->status);
    check_done(c);
}

/* ---- rule 7: INVITE + CANCEL to a phone woken for an ended call --------- */

/* One late INVITE and, if the phone answers it, its BYE. Freed when both
 * client transactions have terminated (refs). */
struct late_call {
    struct proxy *p;
    struct tp_dest dst;
    unsigned refs;
    bool answered;
    char ruri[PROXY_LATE_URI_MAX];
    char from[256];
    char call_id[PROXY_REC_CALL_ID_MAX];
    char reason[128]; /* "Reason: ...\r\n" */
};

static void on_late_event(struct txn *t, enum txn_event ev,
                          const struct sip_msg *rsp, void *arg);

/* ACK (stateless) or BYE (own transaction) in the dialog a 2xx made. */
static int
late_in_dialog(struct late_call *l, const struct sip_msg *rsp, bool bye)
{
    struct proxy *p = l->p;
    const struct sip_hdr *to = sip_msg_hdr(rsp, SIP_HDR_TO);
    const struct sip_hdr *ct = sip_msg_hdr(rsp, SIP_HDR_CONTACT);
    struct sip_name_addr na;
    struct sip_error e;
    struct slice target = slice_cstr(l->ruri);
    char branch[TXN_BRANCH_MAX];

    if (!to)
        return -EINVAL;
    /* Remote target: the 2xx's Contact (§12.1.2); its Record-Route is
     * ignored: our bindings are the phones themselves, no proxy between. */
    if (ct && sip_name_addr_parse(ct->value, &na, &e) == 0 && na.uri.len)
        target = na.uri;
    txn_branch_new(p->tt, branch);
    buf_reset(&p->out);
    int rc = buf_printf(
        &p->out,
        "%s " SLICE_FMT " SIP/2.0\r\n"
        "Via: SIP/2.0/%s %s;branch=%s;rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: %s\r\nTo: " SLICE_FMT "\r\n"
        "Call-ID: %s\r\nCSeq: %u %s\r\n%s"
        "Content-Length: 0\r\n\r\n",
        bye ? "BYE" : "ACK", SLICE_ARG(target), tp_upper(l->dst.proto),
        p->via_host[tpk(l->dst.proto)], branch, l->from, SLICE_ARG(to->value),
        l->call_id, bye ? 2u : 1u, bye ? "BYE" : "ACK", bye ? l->reason : "");
    if (rc < 0)
        return rc;
    if (!bye)
        return tp_send(p->tp, &l->dst, buf_slice(&p->out), NULL);
    rc = txn_client_start(p->tt, buf_slice(&p->out), &l->dst, on_late_event, l,
                          NULL);
    if (rc == 0)
        l->refs++;
    return rc;
}

static void
on_late_event(struct txn *t, enum txn_event ev, const struct sip_msg *rsp,
              void *arg)
{
    struct late_call *l = arg;

    switch (ev) {
    case TXN_EV_RESPONSE:
        if (txn_kind(t) != TXN_INVITE_CLIENT || rsp->status < 200 ||
            rsp->status >= 300)
            break; /* 1xx: txn sends our pending CANCEL; 487: txn ACKs */
        /* The phone answered anyway (the CANCEL crossed its 200, or it
         * never sent a provisional): ACK every 2xx, BYE once. */
        if (late_in_dialog(l, rsp, false) < 0)
            log_info("proxy", "late call: ACK not sent call_id=%s", l->call_id);
        if (!l->answered) {
            l->answered = true;
            int rc = late_in_dialog(l, rsp, true);
            log_info("proxy", "late call answered: BYE%s call_id=%s",
                     rc < 0 ? " not sent" : " sent", l->call_id);
        }
        break;
    case TXN_EV_TERMINATED:
        if (--l->refs == 0)
            free(l);
        break;
    default:
        break;
    }
}

/* Append s to b as the inside of a quoted-string (escape " and \). */
static int
quoted(struct buf *b, const char *s)
{
    int rc = 0;

    for (; *s && rc == 0; s++) {
        if (*s == '"' || *s == '\\')
            rc = buf_append(b, "\\", 1);
        if (rc == 0)
            rc = buf_append(b, s, 1);
    }
    return rc;
}

static void
note_late(struct proxy *p, const struct proxy_note *n)
{
    struct reg_contact b = {.uri = n->uri,
                            .instance = "",
                            .transport = n->transport,
                            .addr = n->addr,
                            .flow_id = n->flow_id};
    struct late_call *l = xcalloc(1, sizeof(*l));
    char branch[TXN_BRANCH_MAX], tag[17];
    struct buf from;
    struct txn *t = NULL;
    int rc;

    l->p = p;
    dest_from_binding(p, &b, &l->dst);
    snprintf(l->ruri, sizeof(l->ruri), "%s", n->uri);
    snprintf(l->call_id, sizeof(l->call_id), "%s", n->call_id);
    snprintf(l->reason, sizeof(l->reason), "Reason: %s\r\n", n->reason);
    sip_new_tag(tag);
    buf_init(&from, sizeof(l->from) - 1);
    rc = 0;
    if (n->caller_name[0]) {
        rc = buf_append(&from, "\"", 1);
        if (rc == 0)
            rc = quoted(&from, n->caller_name);
        if (rc == 0)
            rc = buf_append(&from, "\" ", 2);
    }
    if (rc == 0)
        rc = buf_printf(&from, "<sip:%s@%s>;tag=%s", n->caller, p->sh->domain,
                        tag);
    if (rc < 0) { /* name too long for l->from: without it */
        buf_reset(&from);
        rc = buf_printf(&from, "<sip:%s@%s>;tag=%s", n->caller, p->sh->domain,
                        tag);
    }
    snprintf(l->from, sizeof(l->from), "%.*s", rc < 0 ? 0 : (int)from.len,
             from.data);
    buf_fini(&from);

    txn_branch_new(p->tt, branch);
    buf_reset(&p->out);
    rc = buf_printf(&p->out,
                    "INVITE %s SIP/2.0\r\n"
                    "Via: SIP/2.0/%s %s;branch=%s;rport\r\n"
                    "Max-Forwards: 70\r\n"
                    "From: %s\r\nTo: <sip:%s@%s>\r\n"
                    "Call-ID: %s\r\nCSeq: 1 INVITE\r\n"
                    "Contact: <sip:%s;transport=%s>\r\n"
                    "Content-Length: 0\r\n\r\n",
                    n->uri, tp_upper(l->dst.proto),
                    p->via_host[tpk(l->dst.proto)], branch, l->from, n->ext,
                    p->sh->domain, n->call_id, p->via_host[tpk(l->dst.proto)],
                    tp_proto_name(l->dst.proto));
    if (rc == 0)
        rc = txn_client_start(p->tt, buf_slice(&p->out), &l->dst, on_late_event,
                              l, &t);
    if (rc < 0 || !t) {
        log_info("proxy", "late call to %s not sent: %s call_id=%s", n->uri,
                 strerror(rc < 0 ? -rc : EINVAL), n->call_id);
        free(l);
        return;
    }
    l->refs = 1;
    p->stats.late_invites++;
    /* The CANCEL goes as soon as the phone sends a provisional response
     * (§9.1; txn defers it until then). */
    (void)txn_cancel(t, slice_cstr(l->reason));
    log_info("proxy", "late INVITE+CANCEL to %s call_id=%s reason=%s", n->uri,
             n->call_id, n->reason);
}

/* Drain the notifications queued for this worker. */
void
proxy_notes_run(struct proxy *p)
{
    struct list_node batch, *n, *tmp;

    list_init(&batch);
    pthread_mutex_lock(&p->sh->lock);
    list_for_each_safe(n, tmp, &p->notes)
    {
        list_remove(n);
        list_push_back(&batch, n);
    }
    p->note_count = 0;
    pthread_mutex_unlock(&p->sh->lock);

    list_for_each_safe(n, tmp, &batch)
    {
        struct proxy_note *note = container_of(n, struct proxy_note, node);
        list_remove(n);
        switch (note->kind) {
        case PROXY_NOTE_BINDING: {
            struct list_node *cn, *ctmp;
            list_for_each_safe(cn, ctmp, &p->calls)
            {
                struct proxy_call *c =
                    container_of(cn, struct proxy_call, node);
                if (!c->final_sent && strcmp(c->rec.callee, note->ext) == 0)
                    fork_new_bindings(p, c);
            }
            break;
        }
        case PROXY_NOTE_RELEASE:
            note_release(p, note);
            break;
        case PROXY_NOTE_LATE:
            note_late(p, note);
            break;
        }
        free(note);
    }
}

/* Length of the valid UTF-8 sequence starting at s[0] (at most left
 * bytes), 0 if invalid. Overlongs and surrogates are refused, as JSON
 * encoders (the push payload) do. */
static size_t
utf8_seq(const unsigned char *s, size_t left)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n > left)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

/* The From display name for push payloads: quoted-pair escapes removed,
 * cut at cap - 1 bytes on a character boundary, control characters
 * dropped. Invalid UTF-8 gives "" (the caller chooses these bytes, and a
 * payload that the provider or the JSON encoder refuses would lose the
 * push, so the name is all or nothing). */
static void
display_name(struct slice d, char *out, size_t cap)
{
    unsigned char tmp[256];
    size_t n = 0;

    out[0] = '\0';
    for (size_t i = 0; i < d.len && n < sizeof(tmp); i++) {
        unsigned char ch = (unsigned char)d.ptr[i];
        if (ch == '\\' && i + 1 < d.len)
            ch = (unsigned char)d.ptr[++i];
        if (ch < 0x20 || ch == 0x7f)
            continue;
        tmp[n++] = ch;
    }
    size_t len = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(tmp + i, n - i);
        if (k == 0) {
            if (n == sizeof(tmp) && n - i < 4)
                break; /* cut by tmp's size: keep what came before */
            out[0] = '\0';
            return;
        }
        if (len + k >= cap)
            break;
        memcpy(out + len, tmp + i, k);
        len += k;
        i += k;
    }
    while (len > 0 && out[len - 1] == ' ')
        len--;
    out[len] = '\0';
}

/* ---- request routing --------------------------------------------------- */

/* A Via naming us with one of our branches means the request came back
 * to us: a loop (we never spiral on purpose). */
static bool
looped(const struct proxy *p, const struct sip_msg *req)
{
    struct sip_hdr_iter it;
    struct slice v;

    sip_hdr_iter_init(&it, req, SIP_HDR_VIA);
    while (sip_hdr_iter_next(&it, &v)) {
        struct sip_via via;
        struct sip_error e;
        if (sip_via_parse(v, &via, &e) < 0)
            continue;
        if (txn_branch_worker(via.branch) < 0)
            continue;
        char hp[TP_ADDRSTRLEN + 8];
        snprintf(hp, sizeof(hp), SLICE_FMT ":%u", SLICE_ARG(via.host),
                 (unsigned)via.port);
        for (int k = 0; k < 3; k++)
            if (strcmp(hp, p->via_host[k]) == 0)
                return true;
    }
    return false;
}

/* After our top Route (first, already parsed): if the second Route value
 * is us too (double record-routing), *last gets it and *pop2 is set. The
 * next Route value after ours goes into *next. Returns 1 when there is
 * one, 0 when not (the Request-URI is the next hop), -1 for a bad value. */
static int
route_after_ours(const struct proxy *p, const struct sip_msg *req,
                 struct sip_uri *last, struct sip_uri *next, bool *pop2)
{
    struct sip_hdr_iter it;
    struct slice v;
    const char *why;

    sip_hdr_iter_init(&it, req, SIP_HDR_ROUTE);
    if (!sip_hdr_iter_next(&it, &v))
        return 0; /* cannot happen: the caller found the first */
    for (int i = 0; i < 2; i++) {
        struct sip_name_addr na;
        struct sip_error e;
        if (!sip_hdr_iter_next(&it, &v))
            return 0;
        if (sip_name_addr_parse(v, &na, &e) < 0 ||
            sip_uri_parse(na.uri, next, &why) < 0)
            return -1;
        if (i == 1 || !uri_is_us(p, next))
            return 1;
        *last = *next;
        *pop2 = true;
    }
    return 0;
}

static void
route_in_dialog(struct proxy *p, struct txn *t, const struct sip_msg *req,
                const struct tp_src *src)
{
    struct sip_name_addr na;
    struct sip_uri route, next;
    struct slice second;
    const char *why;
    struct tp_dest dst;

    int rt = top_route(req, &na, &route, &second);
    if (rt != 1 || !uri_is_us(p, &route)) {
        /* Not record-routed through us: we do not relay it. */
        if (t)
            reject(p, t, rt < 0 ? 400 : 403,
                   rt < 0 ? "Bad Route" : "Not Routed Through Us", SLICE_NULL);
        return;
    }
    if (req->max_forwards == 0) {
        if (t)
            reject(p, t, 483, NULL, SLICE_NULL);
        return;
    }
    /* Our own one or two Route values (double record-routing), then the
     * next hop: the next Route value, else the Request-URI. The last of
     * ours names the transport of the side the request goes to. */
    struct sip_uri last = route;
    bool pop2 = false;
    int nr = route_after_ours(p, req, &last, &next, &pop2);
    if (nr < 0) {
        if (t)
            reject(p, t, 400, "Bad Route", SLICE_NULL);
        return;
    }
    if (nr == 0 && sip_uri_parse(req->ruri, &next, &why) < 0) {
        if (t)
            reject(p, t, 400, "Bad Request-URI", SLICE_NULL);
        return;
    }
    if (dest_from_uri(&next, &dst) < 0) {
        /* TODO(dns): only numeric next hops are reachable today. */
        if (t)
            reject(p, t, 404, "Next Hop Not Numeric", SLICE_NULL);
        return;
    }
    uint64_t f = other_flow(&route, src);
    if (f) {
        /* Over the other side's own connection; its transport is the one
         * our last Route names (TLS or TCP). */
        dst.proto = uri_proto(&last) == TP_TLS ? TP_TLS : TP_TCP;
        dst.flow_id = f;
    }
    if (!t) {
        /* ACK for a 2xx: stateless, its own transaction downstream. */
        char branch[TXN_BRANCH_MAX], via[TP_ADDRSTRLEN + 96];
        txn_branch_new(p->tt, branch);
        snprintf(via, sizeof(via), "SIP/2.0/%s %s;branch=%s",
                 tp_upper(dst.proto), p->via_host[tpk(dst.proto)], branch);
        struct sip_fwd fw = {
            .via = slice_cstr(via), .pop_route = true, .pop_route2 = pop2};
        buf_reset(&p->out);
        if (sip_build_forward(&p->out, req, &fw) == 0 &&
            tp_send(p->tp, &dst, buf_slice(&p->out), NULL) == 0)
            p->stats.acks_forwarded++;
        return;
    }
    struct proxy_call *c = call_new(p, t, CALL_RELAY, req, src);
    c->pop2 = pop2;
    c->nbr = 1;
    c->br[0] = (struct branch){.call = c};
    int rc = branch_start(c, &c->br[0], &dst, SLICE_NULL, true, 0, SLICE_NULL);
    p->stats.in_dialog++;
    if (rc < 0) {
        c->br[0].status = 503;
        send_final(c, 503, NULL);
    }
}

static void
route_initial(struct proxy *p, struct txn *t, const struct sip_msg *req,
              const struct tp_src *src)
{
    struct sip_name_addr na;
    struct sip_uri ruri, route, from;
    struct slice second, user, from_user;
    const char *why;
    bool pop = false;
    bool anon = !reg_auth_has_credentials(p->sh->reg, req);

    if (p->draining) {
        /* Shutting down: no new calls; the phone may retry elsewhere or
         * once we are back. Stateless: we keep no new state now. */
        char ra[40];
        snprintf(ra, sizeof(ra), "Retry-After: %u\r\n", p->retry_after_s);
        refuse(p, t, true, 503, NULL, slice_cstr(ra));
        return;
    }
    if (req->max_forwards == 0) {
        refuse(p, t, anon, 483, NULL, SLICE_NULL);
        return;
    }
    if (looped(p, req)) {
        refuse(p, t, anon, 482, NULL, SLICE_NULL);
        return;
    }
    int rt = top_route(req, &na, &route, &second);
    if (rt < 0) {
        refuse(p, t, anon, 400, "Bad Route", SLICE_NULL);
        return;
    }
    if (rt == 1) {
        if (!uri_is_us(p, &route) || second.len) {
            refuse(p, t, anon, 403, "Relaying Denied", SLICE_NULL);
            return;
        }
        pop = true;
    }
    if (sip_uri_parse(req->ruri, &ruri, &why) < 0 ||
        (ruri.scheme != SIP_URI_SIP && ruri.scheme != SIP_URI_SIPS)) {
        refuse(p, t, anon, 416, NULL, SLICE_NULL);
        return;
    }
    if (!slice_eq_nocase_cstr(ruri.host, p->sh->domain) &&
        !host_is_numeric(ruri.host)) {
        refuse(p, t, anon, 403, "Relaying Denied", SLICE_NULL);
        return;
    }
    arena_reset(&p->a);
    if (uri_user(&p->a, &ruri, &user) < 0 || user.len == 0 || user.len > 32) {
        refuse(p, t, anon, 404, NULL, SLICE_NULL);
        return;
    }

    /* Authentication (§22.3): every out-of-dialog request is challenged. */
    char caller[33];
    struct reg_src rs;
    struct buf hdrs;
    reg_src_of(src, &rs);
    buf_init(&hdrs, 1024);
    int st =
        reg_auth_request(p->sh->reg, req, &rs, caller, sizeof(caller), &hdrs);
    if (st != 0) {
        refuse(p, t, anon, st, NULL, buf_slice(&hdrs));
        buf_fini(&hdrs);
        return;
    }
    buf_fini(&hdrs);
    if (sip_uri_parse(req->from.uri, &from, &why) < 0 ||
        uri_user(&p->a, &from, &from_user) < 0 ||
        !slice_eq_cstr(from_user, caller)) {
        reject(p, t, 403, "From Does Not Match Credentials", SLICE_NULL);
        return;
    }

    struct reg_contact *bs;
    size_t n;
    /* Counted before the lookup so that a binding added after it still
     * reaches this call (proxy_shared.waiting). */
    proxy_waiting_add(p->sh);
    int rc = reg_lookup(p->sh->reg, user, &p->a, &bs, &n);
    if (rc == -ENOENT) {
        proxy_waiting_done(p->sh);
        reject(p, t, 404, NULL, SLICE_NULL);
        return;
    }
    if (rc < 0) {
        proxy_waiting_done(p->sh);
        reject(p, t, 500, NULL, SLICE_NULL);
        return;
    }

    struct proxy_call *c = call_new(p, t, CALL_FORK, req, src);
    copy_cstr(c->rec.caller, sizeof(c->rec.caller), slice_cstr(caller));
    copy_cstr(c->rec.callee, sizeof(c->rec.callee), user);
    if (req->method == SIP_METHOD_INVITE) {
        p->stats.calls++;
        (void)txn_reply(t, 100, NULL, SLICE_NULL, SLICE_NULL, SLICE_NULL);
    } else {
        c->kind = CALL_RELAY; /* MESSAGE etc.: forked, no call record */
        proxy_waiting_done(p->sh);
    }
    display_name(req->from.display, c->caller_name, sizeof(c->caller_name));
    struct proxy_call_info info = {.call = c,
                                   .call_id = c->rec.call_id,
                                   .caller = c->rec.caller,
                                   .callee = c->rec.callee,
                                   .caller_name = c->caller_name,
                                   .bindings = n,
                                   .worker = p->worker,
                                   .rx_us = src->rx_us};
    if (c->kind == CALL_FORK) {
        list_push_back(&p->calls, &c->node); /* keeps the waiting count */
        /* Held even when other bindings exist: a desk phone's 486 must
         * not end the call while an app is being woken (product rule 5);
         * the observer releases it (proxy_call_release). */
        c->holding = proxy_notify_started(p->sh, &info);
        tq_heap_add(tp_tq(p->tp), &c->ring,
                    tp_now_ms(p->tp) +
                        (uint64_t)p->sh->cfg.ring_timeout_s * 1000u);
    }
    c->pop = pop;
    for (size_t i = 0; i < n; i++) {
        if (c->final_sent)
            break;
        (void)proxy_call_add_branch(c, &bs[i]);
    }
    c->forked = true;
    check_done(c);
}

void
proxy_on_request(struct proxy *p, struct txn *t, const struct sip_msg *req,
                 const struct tp_src *src)
{
    if (!t && stateless_ack(p, req)) {
        p->stats.stateless_acks++;
        return;
    }
    if (req->to.tag.len || !t) {
        route_in_dialog(p, t, req, src);
        return;
    }
    route_initial(p, t, req, src);
}

struct slice
proxy_stateless_tag(const struct proxy *p)
{
    return slice_cstr(p->sh->sl_tag);
}

/* ---- shutdown ---------------------------------------------------------- */

void
proxy_drain(struct proxy *p, unsigned retry_after_s, bool all)
{
    struct list_node *n, *tmp;
    char ra[40];

    if (!p->draining)
        log_notice("proxy", "worker %u draining: new calls get 503",
                   p->worker);
    p->draining = true;
    p->retry_after_s = retry_after_s;
    snprintf(ra, sizeof(ra), "Retry-After: %u\r\n", retry_after_s);
    /* Nothing here frees a call synchronously (a non-2xx final leaves
     * the server transaction in Completed; CANCELs are new client
     * transactions), and observers only queue work: a safe walk. */
    list_for_each_safe(n, tmp, &p->all)
    {
        struct proxy_call *c = container_of(n, struct proxy_call, anode);
        if (c->final_sent || (!all && c->kind != CALL_FORK))
            continue;
        cancel_branches(c, NULL,
                        "Reason: SIP;cause=503;text=\"Server shutting "
                        "down\"\r\n");
        send_final_extra(c, 503, NULL, slice_cstr(ra));
        call_record(c, PROXY_OUT_FAILED, 503);
        p->stats.shutdown++;
        log_info("proxy", "call ended by shutdown: 503 to the caller "
                 "call_id=%s branches=%zu",
                 c->rec.call_id, c->nbr);
    }
}

size_t
proxy_busy(const struct proxy *p)
{
    size_t busy = 0;

    for (const struct list_node *n = p->all.next; n != &p->all; n = n->next) {
        const struct proxy_call *c =
            container_of(n, const struct proxy_call, anode);
        bool b = !c->final_sent;
        for (size_t i = 0; i < c->nbr && !b; i++)
            b = c->br[i].started && c->br[i].ct && c->br[i].status == 0;
        if (!b && c->st && txn_kind(c->st) == TXN_INVITE_SERVER &&
            txn_state(c->st) == TXN_COMPLETED)
            b = true; /* our non-2xx not ACKed yet: G may resend it */
        busy += b;
    }
    return busy;
}

void
proxy_register_ok(struct proxy *p, const struct sip_msg *reg)
{
    const struct sip_hdr *h = sip_msg_hdr(reg, SIP_HDR_CONTACT);
    struct sip_uri u;
    struct slice user;
    const char *why;

    /* Nothing rings or is held: no binding note, and any release note
     * already queued runs from this worker's uv_async. */
    if (atomic_load(&p->sh->waiting) == 0)
        return;
    if (!h || slice_eq_cstr(slice_trim(h->value), "*") ||
        sip_uri_parse(reg->to.uri, &u, &why) < 0)
        return;
    arena_reset(&p->a);
    if (uri_user(&p->a, &u, &user) == 0)
        proxy_binding_added(p->sh, user);
    /* A woken phone's REGISTER queued its call's release (wake, from the
     * bind callback) and the binding note above: when the call rings on
     * this worker, run them now that the 200 is out, not after the rest
     * of this read batch (libuv reads up to 32 datagrams per callback)
     * and a loop pass. The INVITE to the phone leaves before we return.
     * Notes for other workers still go through their uv_async. */
    proxy_notes_run(p);
}
