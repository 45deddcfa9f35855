/*
 * proxy/proxy: the proxy of one worker: set-up and teardown, the relay to
 * other workers' flows, the cross-worker notes (proxy_notes_run), the
 * REGISTER hook and graceful shutdown. The rest of the room:
 * proxy_route.c (initial requests: checks, auth, lookup, fork start,
 * steering), proxy_fork.c (branches and the §16.7 rules), proxy_dialog.c
 * (in-dialog relay), proxy_call.c (call life and records), proxy_late.c
 * (rule 7), proxy_shared.c (process-wide state). See proxy.h.
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

#include "base/log.h"
#include "base/xmalloc.h"
#include "proxy/proxy_int.h"
#include "registrar/reg.h"
#include "sip/build.h"
#include "sip/uri.h"

#define LOOKUP_ARENA_CAP (256 * 1024)

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
    list_init(&p->mops);
    buf_init(&p->out, SIP_MAX_MSG_LEN);
    arena_init(&p->a, LOOKUP_ARENA_CAP);
    arena_init(&p->pre_a, LOOKUP_ARENA_CAP);
    uv_async_init(tp_loop(tp), &p->notify, on_notify);
    p->notify.data = p;
    for (size_t i = 0; i < tp_listener_count(tp); i++) {
        struct tp_listen_spec s;
        if (tp_listener(tp, i, &s) < 0)
            continue;
        int k = proxy_tpk(s.proto);
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
    int rc = proxy_media_open(p);
    if (rc < 0)
        log_error("proxy", "worker %u: media client: %s (calls are not "
                  "relayed)", w, uv_strerror(rc));
    *out = p;
    return 0;
}

static void
on_closed(uv_handle_t *h)
{
    struct proxy *p = h->data;

    buf_fini(&p->out);
    arena_fini(&p->a);
    arena_fini(&p->pre_a);
    free(p);
}

void
proxy_free(struct proxy *p)
{
    struct list_node *n, *tmp;

    if (!p)
        return;
    tp_set_relay(p->tp, NULL, NULL);
    proxy_pre_drop(p);
    proxy_media_close(p); /* after the txn table: every call is gone */
    pthread_mutex_lock(&p->sh->lock);
    p->sh->workers[p->worker] = NULL;
    list_for_each_safe(n, tmp, &p->notes)
    {
        list_remove(n);
        proxy_msg_note_drop(container_of(n, struct proxy_note, node));
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
                    proxy_fork_new_bindings(p, c);
            }
            break;
        }
        case PROXY_NOTE_RELEASE:
            proxy_note_release(p, note);
            break;
        case PROXY_NOTE_LATE:
            proxy_note_late(p, note);
            break;
        case PROXY_NOTE_MSG_PUT:
            proxy_msg_note_put(p, note);
            break;
        case PROXY_NOTE_MSG_DELIVER:
            proxy_msg_note_deliver(p, note);
            break;
        case PROXY_NOTE_NODE_DOWN:
            proxy_note_node_down(p, note);
            break;
        }
        free(note);
    }
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
        log_notice("proxy", "worker %u draining: new calls get 503", p->worker);
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
        proxy_call_cancel_branches(
            c, NULL,
            "Reason: SIP;cause=503;text=\"Server shutting "
            "down\"\r\n");
        proxy_call_final_extra(c, 503, NULL, slice_cstr(ra));
        proxy_call_finish(c, PROXY_OUT_FAILED, 503);
        p->stats.shutdown++;
        log_info("proxy",
                 "call ended by shutdown: 503 to the caller "
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

    if (h && !slice_eq_cstr(slice_trim(h->value), "*"))
        proxy_msg_register_ok(p, reg); /* stored messages for the app */
    /* Nothing rings or is held: no binding note, and any release note
     * already queued runs from this worker's uv_async. */
    if (atomic_load(&p->sh->waiting) == 0)
        return;
    if (!h || slice_eq_cstr(slice_trim(h->value), "*") ||
        sip_uri_parse(reg->to.uri, &u, &why) < 0)
        return;
    arena_reset(&p->a);
    if (proxy_uri_user(&p->a, &u, &user) == 0)
        proxy_binding_added(p->sh, user);
    /* A woken phone's REGISTER queued its call's release (wake, from the
     * bind callback) and the binding note above: when the call rings on
     * this worker, run them now that the 200 is out, not after the rest
     * of this read batch (libuv reads up to 32 datagrams per callback)
     * and a loop pass. The INVITE to the phone leaves before we return.
     * Notes for other workers still go through their uv_async. */
    proxy_notes_run(p);
}
