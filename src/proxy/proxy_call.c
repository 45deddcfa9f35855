/*
 * proxy/proxy_call: the life of a call and its record.
 *
 * A call (struct proxy_call) is one server transaction (the caller's
 * INVITE, or an in-dialog request we relay) plus up to max_branches client
 * transactions, all on this worker. It is freed when the server
 * transaction and every client transaction have reported
 * TXN_EV_TERMINATED (refs counts them), so no event can reach a freed
 * call. Its end (answered, cancelled, no answer, ...) is recorded once
 * (proxy_call_finish: the record ring and the observers).
 */
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

void
proxy_call_finish(struct proxy_call *c, enum proxy_outcome o, int status)
{
    if (c->kind != CALL_FORK || c->rec.ended_ms)
        return;
    c->rec.outcome = o;
    c->rec.status = status;
    c->rec.ended_ms = proxy_wall_ms();
    c->rec.branches = (unsigned)c->nbr;
    c->rec.media = c->media_used;
    if (list_linked(&c->node)) {
        list_remove(&c->node);
        proxy_waiting_done(c->p->sh, slice_cstr(c->rec.callee), c->p->worker);
    }
    list_init(&c->node);
    proxy_record_add(c->p->sh, &c->rec);
    /* Not answered: its rtpengine session goes now (an answered one
     * with the BYE, proxy_dialog.c). After the record: the delete's
     * figures land in it. */
    if (c->media_used && o != PROXY_OUT_ANSWERED)
        proxy_media_delete(c->p, slice_cstr(c->rec.call_id),
                           slice_cstr(c->rec.caller_tag), c->media);
    if (o == PROXY_OUT_ANSWERED)
        c->p->stats.answered++;
    log_info("proxy",
             "call ended %s status=%d call_id=%s caller=%s callee=%s "
             "branches=%zu%s%s",
             proxy_outcome_name(o), status, c->rec.call_id, c->rec.caller,
             c->rec.callee, c->nbr, c->rec.answered_by[0] ? " by=" : "",
             c->rec.answered_by);
}

void
proxy_call_cancel_branches(struct proxy_call *c, struct branch *except,
                           const char *reason)
{
    for (size_t i = 0; i < c->nbr; i++) {
        struct branch *b = &c->br[i];
        if (b != except && b->media_wait && !b->status) {
            /* its offer is in flight: it will not be sent */
            b->cancelled = true;
            b->status = 487;
            continue;
        }
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
struct slice
proxy_call_tag(struct proxy_call *c)
{
    if (!c->tag[0])
        sip_new_tag(c->tag);
    return slice_cstr(c->tag);
}

/* Send a final response we generate (timeout, CANCEL, nothing left);
 * extra: CRLF-ended header lines. */
void
proxy_call_final_extra(struct proxy_call *c, int status, const char *reason,
                       struct slice extra)
{
    if (c->final_sent)
        return;
    c->final_sent = true;
    c->final_status = status;
    if (c->st)
        (void)txn_reply(c->st, status, reason, proxy_call_tag(c), extra,
                        SLICE_NULL);
}

void
proxy_call_final(struct proxy_call *c, int status, const char *reason)
{
    proxy_call_final_extra(c, status, reason, SLICE_NULL);
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
    proxy_call_cancel_branches(c, NULL, "");
    proxy_call_final(c, status, NULL);
    proxy_call_finish(c, PROXY_OUT_NO_ANSWER, status);
}

static void
call_free(struct proxy_call *c)
{
    tq_cancel(&c->ring);
    proxy_media_detach(c);
    tq_cancel(&c->msg_grace);
    list_remove(&c->anode);
    if (list_linked(&c->node)) {
        list_remove(&c->node);
        proxy_waiting_done(c->p->sh, slice_cstr(c->rec.callee), c->p->worker);
    }
    for (size_t i = 0; i < c->nbr; i++) {
        free(c->br[i].uri);
        free(c->br[i].auth);
    }
    free(c->best);
    atomic_fetch_sub_explicit(&c->p->sh->calls_open, 1, memory_order_relaxed);
    free(c);
}

void
proxy_call_unref(struct proxy_call *c)
{
    if (--c->refs == 0)
        call_free(c);
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
        proxy_call_cancel_branches(c, NULL, "");
        proxy_call_final(c, 487, NULL);
        proxy_call_finish(c, PROXY_OUT_CANCELLED, 487);
        break;
    case TXN_EV_TERMINATED:
        c->st = NULL;
        /* A call whose caller is gone stops ringing. */
        if (!c->final_sent) {
            proxy_call_cancel_branches(c, NULL, "");
            c->final_sent = true;
            proxy_call_finish(c, PROXY_OUT_FAILED, 0);
        }
        proxy_call_unref(c);
        break;
    default:
        break;
    }
}

struct proxy_call *
proxy_call_new(struct proxy *p, struct txn *t, enum call_kind kind,
               const struct sip_msg *req, const struct tp_src *src)
{
    struct proxy_call *c = xcalloc(1, sizeof(*c));

    atomic_fetch_add_explicit(&p->sh->calls_open, 1, memory_order_relaxed);
    c->p = p;
    c->kind = kind;
    c->st = t;
    c->refs = 1;
    list_init(&c->node);
    list_push_back(&p->all, &c->anode);
    tq_entry_init(&c->ring, on_ring_timeout);
    c->flow_a = src->flow_id;
    c->src_a = *src;
    c->media = PROXY_MEDIA_NONE;
    proxy_copy_cstr(c->rec.call_id, sizeof(c->rec.call_id), req->call_id);
    c->rec.started_ms = proxy_wall_ms();
    txn_set_cb(t, on_server_event, c);
    return c;
}

struct proxy_call *
proxy_call_find(struct proxy *p, const char *call_id, const char *callee)
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
