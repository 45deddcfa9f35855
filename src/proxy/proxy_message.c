/*
 * proxy/proxy_message: chat messages (SIP MESSAGE, RFC 3428) to phones
 * whose apps sleep: store and forward (docs/messages.md).
 *
 * A MESSAGE is routed like any out-of-dialog request (route_initial:
 * 407, 404, the location lookup), then here:
 *  - proxy_msg_accept: 413 (body over [messages] max_bytes) and 415
 *    (content type outside the allow-list), after authentication;
 *  - proxy_msg_start: no reachable binding (none, or only TCP/TLS
 *    bindings whose connection is gone): store it (reg_msg_put) and
 *    answer 202 once committed; an isComposing notification is answered
 *    480 and dropped (advisory, RFC 3994: never stored nor pushed);
 *    otherwise it is forked as before, and proxy_msg_fallback stores it
 *    when every branch failed without a refusal of its own (408, 480,
 *    5xx: the app did not take it) instead of relaying that failure;
 *  - the commit's callback runs on the store's writer thread: the result
 *    is posted to the call's worker (a PROXY_NOTE_MSG_PUT note), which
 *    answers 202 (or 500) and tells the observers (message_stored: wake
 *    pushes each push device of the extension);
 *  - proxy_msg_register_ok: the app's accepted REGISTER starts the
 *    delivery of the stored messages to the binding that REGISTER made,
 *    one at a time, oldest first: reg_msg_claim reads the row on the
 *    writer thread, a PROXY_NOTE_MSG_DELIVER note brings it back to this
 *    worker, which sends it as a new MESSAGE (the stored From URI and
 *    display name, Call-ID, CSeq, Content-Type and body) in its own client
 *    transaction; a 2xx removes it (reg_msg_done) and claims the next, any
 *    other outcome keeps it first for the next REGISTER.
 *
 * Threads: everything runs on a worker except on_put and on_claim (the
 * store's writer thread, or the caller's before reg_msg_* returns), which
 * only copy and post.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/log.h"
#include "base/xmalloc.h"
#include "proxy/proxy_int.h"
#include "registrar/msgstore.h"
#include "registrar/reg.h"
#include "sip/build.h"
#include "sip/uri.h"

#define MSG_CT_MAX 128   /* Content-Type kept for the push and the store */
#define MSG_URI_MAX 512  /* sender URI kept */
#define MSG_NAME_MAX 128 /* sender display name kept */

/* ---- storing ----------------------------------------------------------- */

/* One MESSAGE being committed; freed on the call's worker. */
struct msg_put {
    struct proxy_shared *sh;
    unsigned worker;
    struct proxy_call *c; /* holds a ref until the note ran */
    int rc;
    uint64_t id;
    int64_t expires_at_s;
    char ext[33], from[33];
    char from_name[MSG_NAME_MAX];
    char call_id[PROXY_REC_CALL_ID_MAX];
    char content_type[MSG_CT_MAX];
    size_t preview_len;
    char preview[PROXY_MSG_PREVIEW_MAX];
};

static struct slice
content_type(const struct sip_msg *req)
{
    const struct sip_hdr *h = sip_msg_hdr(req, SIP_HDR_CONTENT_TYPE);
    return h ? slice_trim(h->value) : SLICE_NULL;
}

static bool
media_type_is(struct slice ct, const char *type)
{
    size_t n = strlen(type);
    if (ct.len < n || strncasecmp(ct.ptr, type, n) != 0)
        return false;
    return ct.len == n || ct.ptr[n] == ';' || ct.ptr[n] == ' ' ||
           ct.ptr[n] == '\t';
}

/* The text a person reads: for message/cpim (RFC 3862) the body after the
 * CPIM headers and the MIME headers (two blank lines); else the body. */
static struct slice
readable_body(struct slice ct, struct slice body)
{
    if (!media_type_is(ct, "message/cpim"))
        return body;
    struct slice s = body;
    for (int k = 0; k < 2; k++) {
        const char *e = memmem(s.ptr, s.len, "\r\n\r\n", 4);
        if (!e)
            return body;
        size_t skip = (size_t)(e - s.ptr) + 4;
        s = slice_make(s.ptr + skip, s.len - skip);
    }
    return s;
}

bool
proxy_msg_accept(struct proxy *p, struct txn *t, const struct sip_msg *req)
{
    struct reg_msg_table *mt = reg_messages(p->sh->reg);
    char ct[MSG_CT_MAX];

    if (!mt)
        return true; /* no store: relayed as any request */
    if (req->body.len > reg_msg_max_bytes(mt)) {
        proxy_reject(p, t, 413, NULL, SLICE_NULL);
        return false;
    }
    proxy_copy_cstr(ct, sizeof(ct), content_type(req));
    if (!reg_msg_content_type_ok(mt, ct)) {
        proxy_reject(p, t, 415, NULL, SLICE_NULL);
        return false;
    }
    return true;
}

static void
on_put(int rc, uint64_t id, void *arg)
{
    struct msg_put *mp = arg;
    struct proxy_note *n = xcalloc(1, sizeof(*n));

    struct proxy_shared *sh = mp->sh;

    mp->rc = rc;
    mp->id = id;
    n->kind = PROXY_NOTE_MSG_PUT;
    n->data = mp;
    if (proxy_note_post(sh, mp->worker, n) < 0) {
        /* The worker is gone (shutdown): the message is stored (or not);
         * nobody is left to answer. */
        log_warn("proxy", "message %" PRIu64 " stored but not answered", id);
        free(mp);
    }
    atomic_fetch_sub(&sh->msg_inflight, 1);
}

/* Store c's MESSAGE and hold the call until the commit's note: nothing is
 * answered before the message is durable. */
static void
store_start(struct proxy_call *c, const struct sip_msg *req)
{
    struct proxy *p = c->p;
    struct reg_msg_table *mt = reg_messages(p->sh->reg);
    struct msg_put *mp = xcalloc(1, sizeof(*mp));
    char sender_uri[MSG_URI_MAX];
    struct slice ct = content_type(req);

    mp->sh = p->sh;
    mp->worker = p->worker;
    mp->c = c;
    snprintf(mp->ext, sizeof(mp->ext), "%s", c->rec.callee);
    snprintf(mp->from, sizeof(mp->from), "%s", c->rec.caller);
    snprintf(mp->from_name, sizeof(mp->from_name), "%s", c->caller_name);
    snprintf(mp->call_id, sizeof(mp->call_id), "%s", c->rec.call_id);
    proxy_copy_cstr(mp->content_type, sizeof(mp->content_type), ct);
    struct slice text = readable_body(ct, req->body);
    mp->preview_len =
        text.len < sizeof(mp->preview) ? text.len : sizeof(mp->preview);
    memcpy(mp->preview, text.ptr, mp->preview_len);
    mp->expires_at_s = (int64_t)time(NULL) + reg_msg_ttl_s(mt);
    proxy_copy_cstr(sender_uri, sizeof(sender_uri), req->from.uri);

    struct store_msg m = {.ext = mp->ext,
                          .sender_uri = sender_uri,
                          .sender_name = mp->from_name,
                          .call_id = mp->call_id,
                          .cseq = req->cseq.num,
                          .content_type = mp->content_type,
                          .body = req->body.ptr,
                          .body_len = req->body.len};
    c->holding = true; /* no final from the fork meanwhile */
    c->msg_store = false;
    c->refs++;
    atomic_fetch_add(&p->sh->msg_inflight, 1);
    int rc = reg_msg_put(mt, &m, on_put, mp);
    if (rc < 0) {
        atomic_fetch_sub(&p->sh->msg_inflight, 1);
        c->holding = false;
        c->refs--;
        free(mp);
        proxy_call_final(c, rc == -EMSGSIZE ? 413 : 500, NULL);
        p->stats.rejected++;
    }
}

/* PROXY_MSG_GRACE_MS after the fork: a binding that answered anything
 * is waited for (its final decides); none did: store it now. */
static void
on_msg_grace(struct tq_entry *e)
{
    struct proxy_call *c = container_of(e, struct proxy_call, msg_grace);
    const struct sip_msg *req = c->st ? txn_request(c->st) : NULL;

    if (c->final_sent || !c->msg_store || !req)
        return;
    for (size_t i = 0; i < c->nbr; i++)
        if (c->br[i].provisional || c->br[i].status)
            return;
    log_info("proxy", "message unanswered by %zu binding(s) after %d ms: "
             "stored call_id=%s callee=%s", c->nbr, PROXY_MSG_GRACE_MS,
             c->rec.call_id, c->rec.callee);
    store_start(c, req);
}

bool
proxy_msg_late_2xx(struct proxy_call *c)
{
    struct reg_msg_table *mt = reg_messages(c->p->sh->reg);

    if (!mt || (!c->msg_id && !c->holding) || c->msg_store)
        return false;
    /* Stored after the grace, then a binding took it after all: the
     * stored copy goes (or, still being committed, goes when it is). */
    c->msg_taken = true;
    if (c->msg_id)
        reg_msg_done(mt, c->rec.callee, c->msg_id, true);
    log_info("proxy", "stored message taken late by a binding call_id=%s",
             c->rec.call_id);
    return true;
}

bool
proxy_msg_start(struct proxy_call *c, const struct sip_msg *req,
                const struct reg_contact *bs, size_t n)
{
    struct proxy *p = c->p;
    struct reg_msg_table *mt = reg_messages(p->sh->reg);
    char ct[MSG_CT_MAX];
    size_t live = 0;

    if (!mt)
        return false;
    proxy_copy_cstr(ct, sizeof(ct), content_type(req));
    for (size_t i = 0; i < n; i++)
        live += proxy_binding_reachable(&bs[i]);
    bool composing = reg_msg_is_composing(ct);
    if (live) {
        c->msg_store = !composing; /* stored if every branch fails */
        tq_entry_init(&c->msg_grace, on_msg_grace);
        if (c->msg_store)
            tq_heap_add(tp_tq(p->tp), &c->msg_grace,
                        tp_now_ms(p->tp) + PROXY_MSG_GRACE_MS);
        return false;
    }
    if (composing) {
        /* Advisory (RFC 3994): nobody to show it to, nothing kept. */
        proxy_call_final(c, 480, NULL);
        p->stats.rejected++;
        return true;
    }
    store_start(c, req);
    return true;
}

bool
proxy_msg_fallback(struct proxy_call *c)
{
    int b = c->best_status;
    const struct sip_msg *req = c->st ? txn_request(c->st) : NULL;

    /* A phone's own refusal (e.g. 415, 603) is its answer; no answer, a
     * timeout, 480 or a server/transport error means the app did not
     * take it: keep it for when it registers. */
    if (!req || !(b == 0 || b == 408 || b == 480 || (b >= 500 && b < 600)))
        return false;
    log_info("proxy", "message not taken by any binding (best %d): stored "
             "call_id=%s callee=%s", b, c->rec.call_id, c->rec.callee);
    store_start(c, req);
    return true;
}

void
proxy_msg_note_put(struct proxy *p, struct proxy_note *n)
{
    struct msg_put *mp = n->data;
    struct proxy_call *c = mp->c;

    c->holding = false;
    if (mp->rc == 0 && c->msg_taken) {
        /* A binding answered 2xx while it was being committed. */
        reg_msg_done(reg_messages(p->sh->reg), mp->ext, mp->id, true);
        proxy_call_final(c, 200, NULL);
    } else if (mp->rc == 0) {
        c->msg_id = mp->id;
        proxy_call_final(c, 202, "Accepted");
        log_info("proxy",
                 "message stored id=%" PRIu64 " call_id=%s from=%s to=%s",
                 mp->id, mp->call_id, mp->from, mp->ext);
        char id[24];
        snprintf(id, sizeof(id), "%" PRIu64, mp->id);
        struct proxy_msg_info mi = {.ext = mp->ext,
                                    .from = mp->from,
                                    .from_name = mp->from_name,
                                    .call_id = mp->call_id,
                                    .id = mp->id,
                                    .content_type = mp->content_type,
                                    .preview = mp->preview,
                                    .preview_len = mp->preview_len,
                                    .expires_at_s = mp->expires_at_s,
                                    .worker = p->worker};
        proxy_notify_message_stored(p->sh, &mi);
    } else {
        log_warn("proxy", "message not stored: %s call_id=%s to=%s",
                 strerror(-mp->rc), mp->call_id, mp->ext);
        proxy_call_final(c, 500, NULL);
        p->stats.rejected++;
    }
    proxy_call_unref(c);
    free(mp);
}

/* ---- delivery at REGISTER ---------------------------------------------- */

/* One stored message on its way to one binding. Freed when its client
 * transaction terminated (or when it never started). */
struct msg_dlv {
    struct proxy_shared *sh;
    unsigned worker;
    char ext[33];
    char uri[PROXY_LATE_URI_MAX];
    enum reg_transport transport;
    struct sockaddr_storage addr;
    uint64_t flow_id;
    bool reported; /* reg_msg_done called */
    /* the claimed row (owned copies) */
    uint64_t id;
    uint32_t cseq;
    char *sender_uri, *sender_name, *call_id, *content_type;
    char *body;
    size_t body_len;
};

static void on_claim(int rc, const struct store_msg *m, void *arg);

static void
dlv_free(struct msg_dlv *d)
{
    free(d->sender_uri);
    free(d->sender_name);
    free(d->call_id);
    free(d->content_type);
    free(d->body);
    free(d);
}

/* A fresh delivery to the same binding (the previous one's transaction
 * may linger in Completed: Timer K). */
static struct msg_dlv *
dlv_next(const struct msg_dlv *d)
{
    struct msg_dlv *n = xcalloc(1, sizeof(*n));

    n->sh = d->sh;
    n->worker = d->worker;
    memcpy(n->ext, d->ext, sizeof(n->ext));
    memcpy(n->uri, d->uri, sizeof(n->uri));
    n->transport = d->transport;
    n->addr = d->addr;
    n->flow_id = d->flow_id;
    return n;
}

/* Claim the next message for d's binding; d is consumed. Any thread. */
static void
dlv_claim(struct msg_dlv *d)
{
    struct proxy_shared *sh = d->sh;
    struct reg_msg_table *mt = reg_messages(sh->reg);

    atomic_fetch_add(&sh->msg_inflight, 1);
    int rc = reg_msg_claim(mt, d->ext, on_claim, d);
    if (rc < 0) { /* -ENOENT: all delivered; -EBUSY: another one runs */
        atomic_fetch_sub(&sh->msg_inflight, 1);
        dlv_free(d);
    }
}

static void claim_read(int rc, const struct store_msg *m,
                       struct msg_dlv *d);

static void
on_claim(int rc, const struct store_msg *m, void *arg)
{
    struct msg_dlv *d = arg;
    struct proxy_shared *sh = d->sh;

    claim_read(rc, m, d);
    atomic_fetch_sub(&sh->msg_inflight, 1);
}

static void
claim_read(int rc, const struct store_msg *m, struct msg_dlv *d)
{
    if (rc == -ENOENT) { /* that row went meanwhile: the next one */
        dlv_claim(d);
        return;
    }
    if (rc < 0) {
        log_warn("proxy", "stored message for %s not read: %s", d->ext,
                 strerror(-rc));
        dlv_free(d);
        return;
    }
    d->id = m->id;
    d->cseq = m->cseq;
    d->sender_uri = xstrdup(m->sender_uri ? m->sender_uri : "");
    d->sender_name = xstrdup(m->sender_name ? m->sender_name : "");
    d->call_id = xstrdup(m->call_id ? m->call_id : "");
    d->content_type = xstrdup(m->content_type ? m->content_type : "");
    d->body_len = m->body_len;
    d->body = xmalloc(m->body_len + 1);
    if (m->body_len)
        memcpy(d->body, m->body, m->body_len);
    d->body[m->body_len] = '\0';

    struct proxy_note *n = xcalloc(1, sizeof(*n));
    n->kind = PROXY_NOTE_MSG_DELIVER;
    n->data = d;
    if (proxy_note_post(d->sh, d->worker, n) < 0) {
        reg_msg_done(reg_messages(d->sh->reg), d->ext, d->id, false);
        dlv_free(d);
    }
}

static void
dlv_report(struct msg_dlv *d, bool delivered, int status)
{
    struct reg_msg_table *mt = reg_messages(d->sh->reg);

    if (d->reported)
        return;
    d->reported = true;
    reg_msg_done(mt, d->ext, d->id, delivered);
    log_info("proxy", "stored message id=%" PRIu64 " to %s %s (%d)", d->id,
             d->uri, delivered ? "delivered" : "not delivered, kept", status);
    if (delivered)
        dlv_claim(dlv_next(d));
}

static void
on_dlv_event(struct txn *t, enum txn_event ev, const struct sip_msg *rsp,
             void *arg)
{
    struct msg_dlv *d = arg;

    (void)t;
    switch (ev) {
    case TXN_EV_RESPONSE:
        if (rsp->status >= 200)
            dlv_report(d, rsp->status < 300, rsp->status);
        break;
    case TXN_EV_TIMEOUT:
        dlv_report(d, false, 408);
        break;
    case TXN_EV_TRANSPORT_ERROR:
        dlv_report(d, false, 503);
        break;
    case TXN_EV_TERMINATED:
        dlv_report(d, false, 408);
        dlv_free(d);
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

void
proxy_msg_note_deliver(struct proxy *p, struct proxy_note *n)
{
    struct msg_dlv *d = n->data;
    struct reg_contact b = {.uri = d->uri,
                            .instance = "",
                            .transport = d->transport,
                            .addr = d->addr,
                            .flow_id = d->flow_id};
    struct tp_dest dst;
    char branch[TXN_BRANCH_MAX], tag[17];
    int rc = -ENOTCONN;

    if (proxy_binding_reachable(&b)) {
        proxy_dest_from_binding(p, &b, &dst);
        sip_new_tag(tag);
        txn_branch_new(p->tt, branch);
        buf_reset(&p->out);
        rc = buf_printf(&p->out,
                        "MESSAGE %s SIP/2.0\r\n"
                        "Via: SIP/2.0/%s %s;branch=%s;rport\r\n"
                        "Max-Forwards: 70\r\nFrom: ",
                        d->uri, proxy_tp_upper(dst.proto),
                        p->via_host[proxy_tpk(dst.proto)], branch);
        if (rc == 0 && d->sender_name[0]) {
            rc = buf_append(&p->out, "\"", 1);
            if (rc == 0)
                rc = quoted(&p->out, d->sender_name);
            if (rc == 0)
                rc = buf_append(&p->out, "\" ", 2);
        }
        if (rc == 0)
            rc = buf_printf(&p->out,
                            "<%s>;tag=%s\r\nTo: <sip:%s@%s>\r\n"
                            "Call-ID: %s\r\nCSeq: %" PRIu32 " MESSAGE\r\n"
                            "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n",
                            d->sender_uri, tag, d->ext, p->sh->domain,
                            d->call_id, d->cseq, d->content_type,
                            d->body_len);
        if (rc == 0)
            rc = buf_append(&p->out, d->body, d->body_len);
        if (rc == 0)
            rc = txn_client_start(p->tt, buf_slice(&p->out), &dst,
                                  on_dlv_event, d, NULL);
    }
    if (rc < 0) {
        log_info("proxy", "stored message id=%" PRIu64 " not sent to %s: %s",
                 d->id, d->uri, strerror(-rc));
        reg_msg_done(reg_messages(p->sh->reg), d->ext, d->id, false);
        dlv_free(d);
    }
}

void
proxy_msg_register_ok(struct proxy *p, const struct sip_msg *reg)
{
    struct reg_msg_table *mt = reg_messages(p->sh->reg);
    struct reg_contact *bs;
    struct sip_uri u;
    struct slice user;
    const char *why;
    size_t n;
    char ext[33];

    if (!mt || sip_uri_parse(reg->to.uri, &u, &why) < 0)
        return;
    arena_reset(&p->a);
    if (proxy_uri_user(&p->a, &u, &user) < 0 || user.len == 0 ||
        user.len >= sizeof(ext))
        return;
    proxy_copy_cstr(ext, sizeof(ext), user);
    if (reg_msg_count(mt, ext) == 0)
        return; /* the usual REGISTER: memory only, no lookup */
    if (reg_lookup(p->sh->reg, user, &p->a, &bs, &n) < 0)
        return;
    /* The binding this REGISTER made (newest first; a removal or a
     * background REGISTER leaves none): its Call-ID. */
    for (size_t i = 0; i < n; i++) {
        if (!slice_eq_cstr(reg->call_id, bs[i].call_id) ||
            !proxy_binding_reachable(&bs[i]) ||
            strlen(bs[i].uri) >= PROXY_LATE_URI_MAX)
            continue;
        struct msg_dlv *d = xcalloc(1, sizeof(*d));
        d->sh = p->sh;
        d->worker = p->worker;
        memcpy(d->ext, ext, sizeof(d->ext));
        snprintf(d->uri, sizeof(d->uri), "%s", bs[i].uri);
        d->transport = bs[i].transport;
        d->addr = bs[i].addr;
        d->flow_id = bs[i].flow_id;
        log_info("proxy", "delivering %zu stored message(s) to %s",
                 reg_msg_count(mt, ext), d->uri);
        dlv_claim(d);
        return;
    }
}

void
proxy_msg_note_drop(struct proxy_note *n)
{
    if (n->kind == PROXY_NOTE_MSG_DELIVER) {
        struct msg_dlv *d = n->data;
        /* Released now rather than by the claim timeout. */
        reg_msg_done(reg_messages(d->sh->reg), d->ext, d->id, false);
        dlv_free(d);
    } else if (n->kind == PROXY_NOTE_MSG_PUT) {
        free(n->data); /* its call went with the worker's calls */
    }
}

void
proxy_msg_wait_idle(struct proxy_shared *sh)
{
    for (int i = 0; i < 5000 && atomic_load(&sh->msg_inflight); i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}
