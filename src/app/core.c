/*
 * app/core: minimal request handling; see core.h.
 *
 * What is answered here (RFC 3261 §8.2, RFC 4475 expectations):
 *   OPTIONS            200 with Allow, Accept, Supported (also with
 *                      Max-Forwards: 0: we are the endpoint, RFC 4475 zeromf)
 *   ACK                absorbed (non-2xx ACKs by txn, the rest here)
 *   CANCEL             481: there are no INVITE server transactions yet to
 *                      match (a matching CANCEL is answered by txn)
 *   REGISTER           the registrar room (reg_handle_async), shared by
 *                      workers; a push REGISTER is parked until its
 *                      device is committed (core.h, "Parked REGISTERs")
 *   INVITE, BYE, in-dialog requests and requests for a user
 *                      the proxy room (proxy_wants / proxy_on_request)
 *   other known methods addressed to the server itself
 *                      405 with Allow
 *   unknown methods    501 with Allow
 *   failed checks      416, 420 + Unsupported, 400 (sip_request_check);
 *                      for requests the proxy forwards, 420 only for
 *                      Proxy-Require (Require is the callee's, §16.3);
 *                      stateless for an INVITE without credentials
 *                      (no timer G resends to a forged source)
 *   parse failures     the parser's status and reason, stateless
 */
#include "app/core.h"

#include <errno.h>
#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/xmalloc.h"
#include "proxy/proxy.h"
#include "registrar/pushdev.h"
#include "registrar/reg.h"
#include "sip/build.h"

/* What we serve today; grows as rooms land. */
#define CORE_ALLOW                                                          \
    "OPTIONS, ACK, CANCEL, REGISTER, INVITE, BYE, UPDATE, INFO, MESSAGE"
/* Option tags we implement: outbound (RFC 5626: the registrar answers an
 * outbound REGISTER with Require: outbound and Flow-Timer, and requests to
 * the phone go over its flow). */
#define CORE_SUPPORTED "outbound"
#define CORE_MAX_UNSUPPORTED 16

static_assert(SIP_METHOD_PUBLISH + 1 == CORE_METHODS,
              "CORE_METHODS must cover enum sip_method");

void
core_init(struct core *c, struct tp *tp)
{
    *c = (struct core){.tp = tp};
    for (int i = 0; i < CORE_METHODS; i++)
        atomic_init(&c->methods[i], 0);
    buf_init(&c->out, SIP_MAX_MSG_LEN);
    list_init(&c->parked);
}

uint64_t
core_method_count(const struct core *c, int m)
{
    if (m < 0 || m >= CORE_METHODS)
        return 0;
    return atomic_load_explicit(&c->methods[m], memory_order_relaxed);
}

/* Single writer (this worker): load + store, no read-modify-write. */
static void
count_method(struct core *c, enum sip_method m)
{
    unsigned i = (unsigned)m < CORE_METHODS ? (unsigned)m : 0;
    uint64_t v = atomic_load_explicit(&c->methods[i], memory_order_relaxed);

    atomic_store_explicit(&c->methods[i], v + 1, memory_order_relaxed);
}

void
core_fini(struct core *c)
{
    buf_fini(&c->out);
}

static const char *
src_text(const struct tp_src *src, char *out, size_t cap)
{
    char addr[TP_ADDRSTRLEN];

    snprintf(out, cap, "%s/%s",
             tp_addr_format(&src->remote, addr, sizeof(addr)),
             tp_proto_name(src->proto));
    return out;
}

/* Answer through the transaction, or statelessly (txn_reply_stateless
 * with the proxy's stateless To tag, so the proxy drops the ACK). */
static void
reply_ex(struct core *c, struct txn *t, const struct sip_msg *req,
         const struct tp_src *src, int status, const char *reason,
         const char *extra, bool stateless)
{
    char tag[17], where[TP_ADDRSTRLEN + 8];
    int rc;

    sip_new_tag(tag);
    if (stateless)
        rc = txn_reply_stateless(t, status, reason,
                                 proxy_stateless_tag(c->proxy),
                                 slice_cstr(extra));
    else
        rc = txn_reply(t, status, reason, slice_cstr(tag), slice_cstr(extra),
                       SLICE_NULL);
    if (rc < 0) {
        log_warn("core", "cannot answer %d: %s call_id=" SLICE_FMT " src=%s",
                 status, strerror(-rc), SLICE_ARG(req->call_id),
                 src_text(src, where, sizeof(where)));
        return;
    }
    c->stats.answered++;
    log_info("core", SLICE_FMT " answered %d%s call_id=" SLICE_FMT " src=%s",
             SLICE_ARG(req->method_name), status,
             stateless ? " statelessly" : "", SLICE_ARG(req->call_id),
             src_text(src, where, sizeof(where)));
}

static void
reply(struct core *c, struct txn *t, const struct sip_msg *req,
      const struct tp_src *src, int status, const char *reason,
      const char *extra)
{
    reply_ex(c, t, req, src, status, reason, extra, false);
}

/* Is option tag one of CORE_SUPPORTED (comma-separated)? */
static bool
tag_supported(struct slice tag)
{
    struct slice rest = SLICE_LIT(CORE_SUPPORTED);

    while (rest.len) {
        const char *comma = memchr(rest.ptr, ',', rest.len);
        size_t n = comma ? (size_t)(comma - rest.ptr) : rest.len;

        if (slice_eq_nocase(slice_trim(slice_make(rest.ptr, n)), tag))
            return true;
        rest = comma ? slice_make(comma + 1, rest.len - n - 1) : SLICE_NULL;
    }
    return false;
}

/* The Proxy-Require tags of req we do not support, without duplicates
 * (at most cap into out); returns how many were stored. A proxy checks
 * only these: Require is for the UAS at the end (RFC 3261 §16.3 item 6),
 * so an INVITE with "Require: 100rel" must reach the callee. */
static size_t
proxy_require_unsupported(const struct sip_msg *req, struct slice *out,
                          size_t cap)
{
    struct sip_hdr_iter it;
    struct slice tag;
    size_t n = 0;

    sip_hdr_iter_init(&it, req, SIP_HDR_PROXY_REQUIRE);
    while (n < cap && sip_hdr_iter_next(&it, &tag)) {
        bool dup = false;

        if (tag.len == 0 || tag_supported(tag))
            continue;
        for (size_t i = 0; i < n; i++)
            dup = dup || slice_eq_nocase(out[i], tag);
        if (!dup)
            out[n++] = tag;
    }
    return n;
}

/* 420: list what we do not support in Unsupported (RFC 3261 §8.2.2.3).
 * proxied: the request is one we forward, so only Proxy-Require counts. */
static void
reply_unsupported(struct core *c, struct txn *t, const struct sip_msg *req,
                  const struct tp_src *src, const struct sip_error *err,
                  bool proxied, bool stateless)
{
    struct slice tags[CORE_MAX_UNSUPPORTED];
    struct buf extra;
    size_t n;

    buf_init(&extra, 4096);
    if (proxied)
        n = proxy_require_unsupported(req, tags, CORE_MAX_UNSUPPORTED);
    else
        n = sip_unsupported_tags(req, SLICE_LIT(CORE_SUPPORTED), tags,
                                 CORE_MAX_UNSUPPORTED);
    if (n > CORE_MAX_UNSUPPORTED)
        n = CORE_MAX_UNSUPPORTED;
    for (size_t i = 0; i < n; i++)
        buf_printf(&extra, "%s" SLICE_FMT,
                   i ? ", " : "Unsupported: ", SLICE_ARG(tags[i]));
    if (n)
        buf_append_cstr(&extra, "\r\n");
    reply_ex(c, t, req, src, err->status, err->reason,
             extra.data ? extra.data : "", stateless);
    buf_fini(&extra);
}

/* ---- parked REGISTERs (core.h) -------------------------------------------
 *
 * A parked REGISTER is shared by two threads: the worker, which owns
 * everything but `rc` and `done_node`, and the store's writer, whose
 * callback (on_commit) sets those two under the inbox lock and posts it.
 * Who frees it: the worker, once it has both answered it and seen its
 * result; or the callback, when the core has closed its inbox (the worker
 * answered it 503 and let go of it). The inbox itself is freed by whoever
 * drops its last reference: the core holds one, every commit not yet
 * reported holds one, so a callback that comes after the worker stopped
 * (store_close commits what is left) still finds it. */
struct core_inbox {
    pthread_mutex_t lock;
    struct list_node done; /* reported, not yet seen by the worker */
    uv_async_t *wake;      /* NULL once the core closed the inbox */
    size_t refs;
};

struct parked {
    struct list_node node;      /* in c->parked while unanswered */
    struct list_node done_node; /* in inbox->done (inbox lock) */
    struct core_inbox *inbox;
    struct core *c;
    struct txn *t;          /* NULL once answered (or terminated) */
    struct tq_entry timeout; /* in c->parked_fifo */
    int rc;                 /* the commit's result (inbox lock) */
    bool answered;          /* by the timeout: only the result to await */
    size_t len;
    char *ok; /* the 200, built when the REGISTER was accepted */
};

static void
inbox_unref(struct core_inbox *ib, bool locked)
{
    if (!locked)
        pthread_mutex_lock(&ib->lock);
    bool last = --ib->refs == 0;
    pthread_mutex_unlock(&ib->lock);
    if (last) {
        pthread_mutex_destroy(&ib->lock);
        free(ib);
    }
}

static void
parked_free(struct parked *p)
{
    free(p->ok);
    free(p);
}

/* reg_commit_cb: the store's writer thread (or this worker, inside
 * reg_handle_async). Only posts: the worker does the rest. */
static void
on_commit(int rc, void *arg)
{
    struct parked *p = arg;
    struct core_inbox *ib = p->inbox;

    pthread_mutex_lock(&ib->lock);
    p->rc = rc;
    if (ib->wake) {
        list_push_back(&ib->done, &p->done_node);
        uv_async_send(ib->wake);
    } else {
        parked_free(p); /* answered 503 when the worker stopped */
    }
    inbox_unref(ib, true);
}

/* The transaction of a parked REGISTER ended without our answer (the
 * table is freed before core_commits_close only if the worker failed to
 * set up): forget it. */
static void
on_parked_txn(struct txn *t, enum txn_event ev, const struct sip_msg *rsp,
              void *arg)
{
    struct parked *p = arg;

    (void)t;
    (void)rsp;
    if (ev == TXN_EV_TERMINATED)
        p->t = NULL;
}

/* Send p's answer for commit result rc (or 503 when stopping) and take it
 * off the parked list. p stays allocated. */
static void
parked_answer(struct core *c, struct parked *p, int rc, int stop_retry_s)
{
    char where[TP_ADDRSTRLEN + 8];
    struct txn *t = p->t;

    list_remove(&p->node);
    c->parked_count--;
    tq_cancel(&p->timeout);
    p->t = NULL;
    if (!t)
        return;
    txn_set_cb(t, NULL, NULL);
    const struct sip_msg *req = txn_request(t);
    const struct tp_src *src = txn_src(t);
    if (!req) /* cannot be: no final response was sent */
        return;
    if (stop_retry_s >= 0) {
        char ra[40];
        snprintf(ra, sizeof(ra), "Retry-After: %d\r\n", stop_retry_s);
        reply(c, t, req, src, 503, NULL, ra);
        return;
    }
    buf_reset(&c->out);
    int status = reg_handle_done(c->reg, rc, req, &c->out);
    int sent = status == 200   ? txn_respond(t, 200, slice_make(p->ok, p->len))
               : status == 500 ? txn_respond(t, 500, buf_slice(&c->out))
                               : status;
    if (sent < 0) {
        log_warn("core", "REGISTER not answered: %s call_id=" SLICE_FMT
                 " src=%s", strerror(-sent), SLICE_ARG(req->call_id),
                 src_text(src, where, sizeof(where)));
        if (status < 0)
            reply(c, t, req, src, 500, NULL, "");
        return;
    }
    c->stats.answered++;
    if (status == 200 && c->proxy)
        proxy_register_ok(c->proxy, req); /* fork ringing calls to it */
    log_info("core", "REGISTER answered %d after its commit call_id=" SLICE_FMT
             " src=%s", status, SLICE_ARG(req->call_id),
             src_text(src, where, sizeof(where)));
}

/* The commit did not report in time: 500 now (pushdev.h: outcome
 * unknown, the device stays unsynced); the result is still awaited, only
 * to free p. */
static void
on_parked_timeout(struct tq_entry *e)
{
    struct parked *p = container_of(e, struct parked, timeout);

    log_warn("core", "push device commit not reported within %u ms: "
             "answering 500", (unsigned)PUSHDEV_COMMIT_TIMEOUT_MS);
    parked_answer(p->c, p, -ETIMEDOUT, -1);
    p->answered = true;
}

void
core_commits_open(struct core *c, uv_async_t *h)
{
    struct core_inbox *ib = xcalloc(1, sizeof(*ib));

    pthread_mutex_init(&ib->lock, NULL);
    list_init(&ib->done);
    ib->wake = h;
    ib->refs = 1;
    c->inbox = ib;
    tq_fifo_init(tp_tq(c->tp), &c->parked_fifo, PUSHDEV_COMMIT_TIMEOUT_MS);
}

/* Take the reported results (and, closing, shut the inbox). */
static void
take_done(struct core_inbox *ib, struct list_node *out, bool close)
{
    pthread_mutex_lock(&ib->lock);
    list_init(out);
    if (!list_empty(&ib->done)) {
        out->next = ib->done.next;
        out->prev = ib->done.prev;
        out->next->prev = out;
        out->prev->next = out;
        list_init(&ib->done);
    }
    if (close)
        ib->wake = NULL;
    pthread_mutex_unlock(&ib->lock);
}

static void
run_done(struct core *c, struct list_node *done)
{
    while (!list_empty(done)) {
        struct parked *p = container_of(done->next, struct parked, done_node);
        list_remove(&p->done_node);
        if (!p->answered)
            parked_answer(c, p, p->rc, -1);
        parked_free(p);
    }
}

void
core_commits_run(struct core *c)
{
    struct list_node done;

    if (!c->inbox)
        return;
    take_done(c->inbox, &done, false);
    run_done(c, &done);
}

size_t
core_parked(const struct core *c)
{
    return c->parked_count;
}

void
core_commits_close(struct core *c, unsigned retry_after_s)
{
    struct list_node done;

    if (!c->inbox)
        return;
    take_done(c->inbox, &done, true);
    run_done(c, &done);
    /* Still waiting: 503; the callback frees them when it comes. */
    while (!list_empty(&c->parked)) {
        struct parked *p = container_of(c->parked.next, struct parked, node);
        parked_answer(c, p, 0, (int)retry_after_s);
    }
    inbox_unref(c->inbox, false);
    c->inbox = NULL;
    tq_fifo_fini(&c->parked_fifo);
}

/* REGISTER: the registrar builds the whole response; the server
 * transaction sends it and absorbs retransmissions. A push REGISTER whose
 * device must be committed first is parked (see above). */
static void
core_register(struct core *c, struct txn *t, const struct sip_msg *req,
              const struct tp_src *src)
{
    char where[TP_ADDRSTRLEN + 8];
    struct reg_src rs = {
        .transport = src->proto == TP_TLS   ? REG_TP_TLS
                     : src->proto == TP_TCP ? REG_TP_TCP
                                            : REG_TP_UDP,
        .flow_id = src->flow_id,
    };
    struct parked *p = NULL;
    int status;

    memcpy(&rs.addr, &src->remote.u.ss,
           src->remote.len <= sizeof(rs.addr) ? src->remote.len
                                              : sizeof(rs.addr));
    buf_reset(&c->out);
    if (c->inbox) {
        /* Referenced before the call: the callback may run (on the
         * writer) before reg_handle_async returns. */
        p = xcalloc(1, sizeof(*p));
        p->inbox = c->inbox;
        p->c = c;
        pthread_mutex_lock(&c->inbox->lock);
        c->inbox->refs++;
        pthread_mutex_unlock(&c->inbox->lock);
        status = reg_handle_async(c->reg, req, &rs, &c->out, on_commit, p);
    } else {
        status = reg_handle(c->reg, req, &rs, &c->out);
    }
    if (status == REG_PENDING) {
        /* The callback touches only rc and done_node: the rest is ours,
         * and the result is read on this thread, later, from the inbox. */
        p->t = t;
        p->len = c->out.len;
        p->ok = xmalloc(p->len ? p->len : 1);
        memcpy(p->ok, c->out.data, p->len);
        tq_entry_init(&p->timeout, on_parked_timeout);
        tq_fifo_add(&c->parked_fifo, &p->timeout, tp_now_ms(c->tp));
        txn_set_cb(t, on_parked_txn, p);
        list_push_back(&c->parked, &p->node);
        c->parked_count++;
        log_debug("core", "REGISTER parked until its push device is "
                  "committed call_id=" SLICE_FMT, SLICE_ARG(req->call_id));
        return;
    }
    if (p) {
        inbox_unref(c->inbox, false);
        free(p);
    }
    if (status < 0 || txn_respond(t, status, buf_slice(&c->out)) < 0) {
        log_warn("core", "REGISTER not answered: %s call_id=" SLICE_FMT
                 " src=%s", strerror(status < 0 ? -status : EIO),
                 SLICE_ARG(req->call_id), src_text(src, where, sizeof(where)));
        if (status < 0)
            reply(c, t, req, src, 500, NULL, "");
        return;
    }
    c->stats.answered++;
    if (status == 200 && c->proxy)
        proxy_register_ok(c->proxy, req); /* fork ringing calls to it */
    log_info("core", "REGISTER answered %d call_id=" SLICE_FMT " src=%s",
             status, SLICE_ARG(req->call_id),
             src_text(src, where, sizeof(where)));
}

void
core_on_request(struct txn_table *tt, struct txn *t, const struct sip_msg *req,
                const struct tp_src *src, void *arg)
{
    struct core *c = arg;
    struct sip_error err = {0};

    if (!t && c->proxy && req->to.tag.len) {
        /* ACK for a 2xx: end to end, loose-routed by the proxy. */
        proxy_on_request(c->proxy, NULL, req, src);
        return;
    }
    if (!t) {
        /* ACK for a 2xx we never sent, or stray: nothing to do. */
        c->stats.acks_absorbed++;
        return;
    }
    /* A request we forward is checked as a proxy does (§16.3): its
     * Require tags are the callee's business, only Proxy-Require is ours.
     * sip_request_check() reports 420 last, so every other check passed
     * when it says 420. */
    bool proxied = c->proxy && proxy_wants(req);
    struct slice ptag;
    if (sip_request_check(req, SLICE_LIT(CORE_SUPPORTED), &err) < 0 &&
        (err.status != 420 || !proxied ||
         proxy_require_unsupported(req, &ptag, 1) > 0)) {
        /* An INVITE refused for its form that brings no credentials:
         * one stateless answer, as the proxy's 407 (docs/calls.md), so a
         * forged source cannot make timer G resend it for 32 s. */
        bool sl = req->method == SIP_METHOD_INVITE && c->proxy && c->reg &&
                  !reg_auth_has_credentials(c->reg, req);
        if (err.status == 420)
            reply_unsupported(c, t, req, src, &err, proxied, sl);
        else
            reply_ex(c, t, req, src, err.status, err.reason, "", sl);
        return;
    }
    if (proxied) {
        proxy_on_request(c->proxy, t, req, src);
        return;
    }
    switch (req->method) {
    case SIP_METHOD_OPTIONS:
        reply(c, t, req, src, 200, NULL,
              "Allow: " CORE_ALLOW "\r\n"
              "Accept: application/sdp\r\n"
              "Supported: " CORE_SUPPORTED "\r\n");
        return;
    case SIP_METHOD_CANCEL:
        reply(c, t, req, src, 481, NULL, "");
        return;
    case SIP_METHOD_REGISTER:
        if (c->reg) {
            core_register(c, t, req, src);
            return;
        }
        reply(c, t, req, src, 405, NULL, "Allow: " CORE_ALLOW "\r\n");
        return;
    case SIP_METHOD_UNKNOWN:
        reply(c, t, req, src, 501, NULL, "Allow: " CORE_ALLOW "\r\n");
        return;
    default:
        /* Methods we know but serve nowhere (SUBSCRIBE, PUBLISH, ...
         * addressed to the server itself). */
        reply(c, t, req, src, 405, NULL, "Allow: " CORE_ALLOW "\r\n");
        return;
    }
}

/* Headers a stateless error response copies (RFC 3261 §8.2.6.2). */
enum raw_hdr {
    RAW_NONE = -1,
    RAW_VIA,
    RAW_FROM,
    RAW_TO,
    RAW_CALL_ID,
    RAW_CSEQ
};

static enum raw_hdr
raw_hdr_kind(struct slice name)
{
    static const struct {
        const char *name;
        enum raw_hdr kind;
    } names[] = {
        {"Via", RAW_VIA},         {"v", RAW_VIA},     {"From", RAW_FROM},
        {"f", RAW_FROM},          {"To", RAW_TO},     {"t", RAW_TO},
        {"Call-ID", RAW_CALL_ID}, {"i", RAW_CALL_ID}, {"CSeq", RAW_CSEQ},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (slice_eq_nocase_cstr(name, names[i].name))
            return names[i].kind;
    return RAW_NONE;
}

/* The first value of a Via header must parse. A request with another SIP
 * version (RFC 4475 badvers) has it in the Via too ("SIP/7.0/UDP"): we
 * still answer its 505, so the version part is checked for shape only and
 * the rest parsed as if it said 2.0. */
static bool
raw_via_ok(struct slice value)
{
    const char *comma = memchr(value.ptr, ',', value.len);
    struct sip_via via;
    struct sip_error e;
    char tmp[1024];
    size_t i = 4;

    if (comma)
        value = slice_make(value.ptr, (size_t)(comma - value.ptr));
    value = slice_trim(value);
    if (sip_via_parse(value, &via, &e) == 0)
        return true;
    if (value.len < 8 ||
        !slice_eq_nocase_cstr(slice_make(value.ptr, 4), "SIP/"))
        return false;
    while (i < value.len && ((value.ptr[i] >= '0' && value.ptr[i] <= '9') ||
                             value.ptr[i] == '.'))
        i++;
    if (i == 4 || i >= value.len || value.ptr[i] != '/' ||
        value.len - i + 7 >= sizeof(tmp))
        return false;
    memcpy(tmp, "SIP/2.0", 7);
    memcpy(tmp + 7, value.ptr + i, value.len - i);
    return sip_via_parse(slice_make(tmp, value.len - i + 7), &via, &e) == 0;
}

/*
 * Fallback for requests the parser rejected before it split the headers
 * (505 on the request line, a duplicate header...): copy the Via, From,
 * To, Call-ID and CSeq lines from the raw bytes (continuation lines
 * kept), add our tag to To, CRLF line ends. The top Via value must parse
 * and all five headers be present, otherwise -EINVAL (drop). Bounded by
 * raw.len; never writes into raw.
 */
static int
build_raw_error(struct buf *out, struct slice raw, int status,
                const char *reason)
{
    const char *p = raw.ptr, *end = raw.ptr + raw.len, *lf;
    unsigned seen = 0; /* bit per enum raw_hdr */
    enum raw_hdr cur = RAW_NONE;
    char tag[17];

    while (p < end && (*p == '\r' || *p == '\n'))
        p++;
    lf = memchr(p, '\n', (size_t)(end - p));
    if (!lf)
        return -EINVAL;
    if (lf - p >= 4 && (memcmp(p, "ACK ", 4) == 0 || memcmp(p, "SIP/", 4) == 0))
        return -EINVAL; /* never answer an ACK or a response */
    sip_new_tag(tag);
    buf_printf(out, "SIP/2.0 %d %s\r\n", status, reason ? reason : "");
    for (p = lf + 1; p < end; p = lf + 1) {
        lf = memchr(p, '\n', (size_t)(end - p));
        const char *le = lf ? lf : end;
        struct slice line = slice_make(p, (size_t)(le - p));
        if (line.len && line.ptr[line.len - 1] == '\r')
            line.len--;
        if (line.len == 0)
            break; /* end of headers */
        if (line.ptr[0] == ' ' || line.ptr[0] == '\t') {
            /* Folded continuation: keep it with its header (not To,
             * which we rewrite on one line). */
            if (cur != RAW_NONE && cur != RAW_TO)
                buf_printf(out, SLICE_FMT "\r\n", SLICE_ARG(line));
        } else {
            const char *colon = memchr(line.ptr, ':', line.len);
            cur = RAW_NONE;
            if (colon) {
                struct slice name = slice_trim(
                    slice_make(line.ptr, (size_t)(colon - line.ptr)));
                struct slice value = slice_trim(slice_make(
                    colon + 1, (size_t)(line.ptr + line.len - colon - 1)));
                cur = raw_hdr_kind(name);
                if (cur == RAW_VIA && !(seen & (1u << RAW_VIA)) &&
                    !raw_via_ok(value))
                    return -EINVAL;
                if (cur == RAW_TO) {
                    struct sip_name_addr na;
                    struct sip_error e;
                    struct slice tv;
                    bool has_tag = sip_name_addr_parse(value, &na, &e) == 0 &&
                                   sip_param_get(na.params, "tag", &tv);
                    buf_printf(out, "To: " SLICE_FMT "%s%s\r\n",
                               SLICE_ARG(value),
                               has_tag ? "" : ";tag=", has_tag ? "" : tag);
                } else if (cur != RAW_NONE) {
                    buf_printf(out, SLICE_FMT "\r\n", SLICE_ARG(line));
                }
                if (cur != RAW_NONE)
                    seen |= 1u << cur;
            }
        }
        if (!lf)
            break;
    }
    if (seen != 0x1fu)
        return -EINVAL;
    return buf_append_cstr(out, "Server: pushpbx/" PUSHPBX_VERSION
                                "\r\nContent-Length: 0\r\n\r\n");
}

/* "Missing From, To, Call-ID": every mandatory header the request lacks,
 * where the parser names only the first; e's own reason otherwise. */
static const char *
missing_reason(const struct sip_msg *m, const struct sip_error *e, char *out,
               size_t cap)
{
    static const struct {
        enum sip_hdr_id id;
        const char *name;
    } need[] = {{SIP_HDR_FROM, "From"},
                {SIP_HDR_TO, "To"},
                {SIP_HDR_CALL_ID, "Call-ID"},
                {SIP_HDR_CSEQ, "CSeq"}};
    size_t n = 0;

    if (!e->reason || strncmp(e->reason, "Missing ", 8) != 0)
        return e->reason;
    n = (size_t)snprintf(out, cap, "Missing");
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]) && n < cap; i++)
        if (!sip_msg_hdr(m, need[i].id))
            n += (size_t)snprintf(out + n, cap - n, "%s %s", n > 7 ? "," : "",
                                  need[i].name);
    return n > 7 && n < cap ? out : e->reason;
}

/* A request that failed to parse: answer statelessly when the top Via is
 * usable (the response has to go somewhere the client listens), else drop.
 * Responses that fail to parse never reach us (tp drops them). */
static void
bad_request(struct core *c, const struct tp_rx *rx)
{
    const struct sip_msg *m = rx->msg;
    const struct sip_error *e = rx->err;
    char where[TP_ADDRSTRLEN + 8];
    struct tp_dest dst;
    int rc = -EINVAL;

    if (!m || !e || e->status < 400 || e->status > 699 ||
        m->method == SIP_METHOD_ACK) {
        c->stats.malformed_dropped++;
        log_debug("core", "dropped malformed message (%s) src=%s",
                  e && e->reason ? e->reason : "?",
                  src_text(&rx->src, where, sizeof(where)));
        return;
    }
    buf_reset(&c->out);
    if (m->via.host.len)
        rc = sip_build_response(&c->out, m, e->status, e->reason, SLICE_NULL,
                                SLICE_NULL, SLICE_NULL);
    if (rc == -EINVAL && m->via.host.len) {
        /* From, To, Call-ID or CSeq missing (RFC 4475 insuf): the top Via
         * was decoded, so answer with the headers there are. */
        char tag[17], why[64];
        sip_new_tag(tag);
        buf_reset(&c->out);
        rc = sip_build_error_response(&c->out, m, e->status,
                                      missing_reason(m, e, why, sizeof(why)),
                                      slice_cstr(tag));
    }
    if (rc == -EINVAL) {
        buf_reset(&c->out);
        rc = build_raw_error(&c->out, rx->raw, e->status, e->reason);
    }
    if (rc == 0) {
        tp_dest_reply(&rx->src, &dst);
        rc = tp_send(c->tp, &dst, buf_slice(&c->out), NULL);
    }
    if (rc < 0) {
        c->stats.malformed_dropped++;
        log_debug("core", "cannot answer malformed request (%s): %s src=%s",
                  e->reason ? e->reason : "?", strerror(-rc),
                  src_text(&rx->src, where, sizeof(where)));
        return;
    }
    c->stats.malformed_answered++;
    log_info("core", "malformed request answered %d \"%s\" src=%s", e->status,
             e->reason ? e->reason : "",
             src_text(&rx->src, where, sizeof(where)));
}

void
core_on_recv(struct tp *tp, const struct tp_rx *rx, void *arg)
{
    struct core *c = arg;

    if (rx->err) {
        bad_request(c, rx);
        return;
    }
    /* A request of one of our own server transactions (the ACK of our
     * 407) stays here, whatever worker its callee's flow is on. */
    if (c->proxy && !txn_server_matches(c->tt, rx->msg) &&
        proxy_steer(c->proxy, rx))
        return; /* handed to the worker that owns it */
    if (rx->msg && rx->msg->is_request)
        count_method(c, rx->msg->method);
    if (txn_recv(c->tt, rx) == -ENOENT)
        c->stats.stray_responses++;
}

void
core_on_flow_closed(struct tp *tp, uint64_t flow_id, int status, void *arg)
{
    struct core *c = arg;

    log_debug("core", "flow %" PRIu64 " closed status=%d", flow_id, status);
    txn_flow_closed(c->tt, flow_id);
}
