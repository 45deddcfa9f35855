/*
 * proxy/proxy_shared: the process-wide part of the proxy: the ring of
 * finished-call records, the observers, and the registry of workers that
 * binding notifications fan out to.
 *
 * The record ring is a fixed array written under one mutex: one write per
 * finished call (a few hundred per second at our benchmark rate) and rare
 * reads by the admin API, so contention is negligible and memory bounded
 * (call_records * ~600 bytes).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/xmalloc.h"
#include "proxy/proxy_int.h"
#include "media/media_lat.h"
#include "media/ng.h"
#include "sip/build.h"

void
proxy_record_media(struct proxy_shared *sh, const char *call_id,
                   const struct media_ng_stats *st)
{
    struct proxy_call_record copy;
    bool found = false;

    pthread_mutex_lock(&sh->rec_lock);
    for (size_t k = 0; k < sh->rec_count; k++) {
        size_t i = (sh->rec_next + sh->rec_cap - 1 - k) % sh->rec_cap;
        struct proxy_call_record *r = &sh->recs[i];
        if (strcmp(r->call_id, call_id) != 0)
            continue;
        r->media = true;
        r->media_stats = true;
        r->media_one_way = st->one_way;
        r->media_none = st->no_media;
        memset(r->leg, 0, sizeof(r->leg));
        /* the caller's leg is the one with its From tag; the other one
         * that carried anything is the callee's (forked offers leave
         * legs that never answered) */
        int callee = -1;
        for (size_t l = 0; l < st->leg_count; l++) {
            const struct media_ng_leg *g = &st->legs[l];
            bool caller = slice_eq_cstr(g->tag, r->caller_tag);
            if (!caller && callee >= 0 &&
                g->rtp_packets <= st->legs[callee].rtp_packets)
                continue;
            if (!caller)
                callee = (int)l;
            struct proxy_media_leg *o = &r->leg[caller ? 0 : 1];
            *o = (struct proxy_media_leg){.packets = g->rtp_packets,
                                          .bytes = g->rtp_bytes,
                                          .lost = g->lost,
                                          .jitter = g->jitter,
                                          .has_lost = g->has_lost,
                                          .has_jitter = g->has_jitter};
        }
        copy = *r;
        found = true;
        break;
    }
    pthread_mutex_unlock(&sh->rec_lock);
    if (!found)
        return;
    for (size_t i = 0; i < sh->obs_count; i++)
        if (sh->obs[i].ops.call_media)
            sh->obs[i].ops.call_media(&copy, sh->obs[i].arg);
}

size_t
proxy_calls_open(struct proxy_shared *sh)
{
    return sh ? atomic_load_explicit(&sh->calls_open, memory_order_relaxed)
              : 0;
}

void
proxy_cfg_defaults(struct proxy_cfg *c)
{
    *c = (struct proxy_cfg){
        .ring_timeout_s = 45,
        .call_records = 1000,
        .max_branches = 16,
        .timer_c_s = 181};
}

const char *
proxy_outcome_name(enum proxy_outcome o)
{
    switch (o) {
    case PROXY_OUT_ANSWERED:
        return "answered";
    case PROXY_OUT_CANCELLED:
        return "cancelled";
    case PROXY_OUT_NO_ANSWER:
        return "no-answer";
    case PROXY_OUT_BUSY:
        return "busy";
    case PROXY_OUT_DECLINED:
        return "declined";
    case PROXY_OUT_UNAVAILABLE:
        return "unavailable";
    case PROXY_OUT_FAILED:
        return "failed";
    }
    return "?";
}

int
proxy_shared_new(const struct proxy_cfg *cfg, struct reg *reg,
                 const char *domain, struct proxy_shared **out)
{
    struct proxy_shared *sh;

    if (!cfg || !domain || !domain[0] || cfg->call_records == 0 ||
        cfg->max_branches == 0 || cfg->max_branches > 32 ||
        cfg->ring_timeout_s == 0)
        return -EINVAL;
    sh = xcalloc(1, sizeof(*sh));
    sh->cfg = *cfg;
    sh->reg = reg;
    sh->domain = xstrdup(domain);
    sip_new_tag(sh->sl_tag);
    pthread_mutex_init(&sh->lock, NULL);
    pthread_mutex_init(&sh->rec_lock, NULL);
    sh->rec_cap = cfg->call_records;
    sh->recs = xcalloc(sh->rec_cap, sizeof(*sh->recs));
    *out = sh;
    return 0;
}

void
proxy_shared_free(struct proxy_shared *sh)
{
    if (!sh)
        return;
    proxy_msg_wait_idle(sh);
    for (size_t i = 0; i < PROXY_RINGING_BUCKETS; i++)
        while (sh->ringing[i]) {
            struct proxy_ringing *e = sh->ringing[i];
            sh->ringing[i] = e->next;
            free(e);
        }
    pthread_mutex_destroy(&sh->lock);
    pthread_mutex_destroy(&sh->rec_lock);
    free(sh->recs);
    free(sh->domain);
    media_lat_free(sh->media_lat);
    free(sh);
}

int
proxy_observer_add(struct proxy_shared *sh, const struct proxy_observer *ops,
                   void *arg)
{
    if (sh->obs_count == PROXY_MAX_OBSERVERS)
        return -ENOSPC;
    sh->obs[sh->obs_count].ops = *ops;
    sh->obs[sh->obs_count].arg = arg;
    sh->obs_count++;
    return 0;
}

bool
proxy_notify_started(struct proxy_shared *sh,
                     const struct proxy_call_info *info)
{
    bool hold = false;

    for (size_t i = 0; i < sh->obs_count; i++)
        if (sh->obs[i].ops.call_started &&
            sh->obs[i].ops.call_started(info, sh->obs[i].arg))
            hold = true;
    return hold;
}

void
proxy_notify_message_stored(struct proxy_shared *sh,
                            const struct proxy_msg_info *mi)
{
    for (size_t i = 0; i < sh->obs_count; i++)
        if (sh->obs[i].ops.message_stored)
            sh->obs[i].ops.message_stored(mi, sh->obs[i].arg);
}

void
proxy_notify_branch_sent(struct proxy_shared *sh,
                         const struct proxy_branch_info *bi)
{
    for (size_t i = 0; i < sh->obs_count; i++)
        if (sh->obs[i].ops.branch_sent)
            sh->obs[i].ops.branch_sent(bi, sh->obs[i].arg);
}

void
proxy_record_add(struct proxy_shared *sh, const struct proxy_call_record *rec)
{
    struct proxy_call_record *slot;

    pthread_mutex_lock(&sh->rec_lock);
    slot = &sh->recs[sh->rec_next];
    *slot = *rec;
    slot->id = ++sh->rec_seq;
    sh->rec_next = (sh->rec_next + 1) % sh->rec_cap;
    if (sh->rec_count < sh->rec_cap)
        sh->rec_count++;
    struct proxy_call_record copy = *slot;
    pthread_mutex_unlock(&sh->rec_lock);
    for (size_t i = 0; i < sh->obs_count; i++)
        if (sh->obs[i].ops.call_ended)
            sh->obs[i].ops.call_ended(&copy, sh->obs[i].arg);
}

size_t
proxy_records(struct proxy_shared *sh, struct proxy_call_record *out,
              size_t cap)
{
    size_t n = 0;

    pthread_mutex_lock(&sh->rec_lock);
    for (; n < cap && n < sh->rec_count; n++) {
        size_t idx = (sh->rec_next + sh->rec_cap - 1 - n) % sh->rec_cap;
        out[n] = sh->recs[idx];
    }
    pthread_mutex_unlock(&sh->rec_lock);
    return n;
}

int
proxy_note_post(struct proxy_shared *sh, unsigned w, struct proxy_note *n)
{
    int rc = -ENOSPC;

    pthread_mutex_lock(&sh->lock);
    struct proxy *p = w < TP_MAX_WORKERS ? sh->workers[w] : NULL;
    if (p && p->note_count < PROXY_NOTIFY_MAX) {
        list_push_back(&p->notes, &n->node);
        p->note_count++;
        uv_async_send(&p->notify);
        rc = 0;
    }
    pthread_mutex_unlock(&sh->lock);
    if (rc < 0) {
        log_warn("proxy", "notification %d for worker %u dropped (queue full)",
                 (int)n->kind, w);
        free(n);
    }
    return rc;
}

static size_t
ringing_bucket(struct slice ext)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < ext.len; i++)
        h = (h ^ (unsigned char)ext.ptr[i]) * 16777619u;
    return h % PROXY_RINGING_BUCKETS;
}

void
proxy_waiting_add(struct proxy_shared *sh, struct slice ext, unsigned w)
{
    struct proxy_ringing **pp, *e;

    if (ext.len >= sizeof(e->ext))
        ext.len = sizeof(e->ext) - 1; /* callers cap it at 32 already */
    atomic_fetch_add(&sh->waiting, 1);
    pthread_mutex_lock(&sh->lock);
    pp = &sh->ringing[ringing_bucket(ext)];
    for (e = *pp; e; e = e->next)
        if (e->worker == w && slice_eq_cstr(ext, e->ext))
            break;
    if (!e) {
        e = xcalloc(1, sizeof(*e));
        e->worker = w;
        memcpy(e->ext, ext.ptr, ext.len);
        e->next = *pp;
        *pp = e;
    }
    e->calls++;
    pthread_mutex_unlock(&sh->lock);
}

void
proxy_waiting_done(struct proxy_shared *sh, struct slice ext, unsigned w)
{
    struct proxy_ringing **pp, *e;

    if (ext.len >= sizeof(e->ext))
        ext.len = sizeof(e->ext) - 1;
    pthread_mutex_lock(&sh->lock);
    for (pp = &sh->ringing[ringing_bucket(ext)]; (e = *pp); pp = &e->next)
        if (e->worker == w && slice_eq_cstr(ext, e->ext))
            break;
    if (e && --e->calls == 0) {
        *pp = e->next;
        free(e);
    }
    pthread_mutex_unlock(&sh->lock);
    atomic_fetch_sub(&sh->waiting, 1);
}

/* Only the workers where a call for ext waits get the note: a woken
 * phone's REGISTER wakes one worker (the call's), not all of them, and
 * only that worker looks the bindings up again. */
void
proxy_binding_added(struct proxy_shared *sh, struct slice ext)
{
    unsigned ws[TP_MAX_WORKERS];
    size_t nw = 0;

    if (!sh || ext.len == 0 || ext.len > 32)
        return;
    if (atomic_load(&sh->waiting) == 0)
        return; /* no call rings or is held anywhere */
    pthread_mutex_lock(&sh->lock);
    for (const struct proxy_ringing *e = sh->ringing[ringing_bucket(ext)]; e;
         e = e->next)
        if (slice_eq_cstr(ext, e->ext) && nw < TP_MAX_WORKERS)
            ws[nw++] = e->worker;
    pthread_mutex_unlock(&sh->lock);
    for (size_t i = 0; i < nw; i++) {
        struct proxy_note *n = xcalloc(1, sizeof(*n));
        n->kind = PROXY_NOTE_BINDING;
        memcpy(n->ext, ext.ptr, ext.len);
        n->ext[ext.len] = '\0';
        (void)proxy_note_post(sh, ws[i], n);
    }
}

void
proxy_node_down(struct proxy_shared *sh, const struct sockaddr_storage *node)
{
    bool on[TP_MAX_WORKERS] = {false};

    if (!sh || !node)
        return;
    pthread_mutex_lock(&sh->lock);
    for (unsigned w = 0; w < TP_MAX_WORKERS; w++)
        on[w] = sh->workers[w] != NULL;
    pthread_mutex_unlock(&sh->lock);
    for (unsigned w = 0; w < TP_MAX_WORKERS; w++) {
        if (!on[w])
            continue;
        struct proxy_note *n = xcalloc(1, sizeof(*n));
        n->kind = PROXY_NOTE_NODE_DOWN;
        n->addr = *node;
        (void)proxy_note_post(sh, w, n);
    }
}

void
proxy_call_release(struct proxy_shared *sh, unsigned worker,
                   const char *call_id, const char *callee, int status)
{
    if (!sh || !call_id || !callee)
        return;
    struct proxy_note *n = xcalloc(1, sizeof(*n));
    n->kind = PROXY_NOTE_RELEASE;
    snprintf(n->call_id, sizeof(n->call_id), "%s", call_id);
    snprintf(n->ext, sizeof(n->ext), "%s", callee);
    n->status = status;
    (void)proxy_note_post(sh, worker, n);
}

int
proxy_late_cancel(struct proxy_shared *sh, const struct reg_contact *b,
                  const struct proxy_late *info)
{
    if (!sh || !b || !b->uri || !info || !info->call_id || !info->caller ||
        !info->callee || !info->reason || strlen(b->uri) >= PROXY_LATE_URI_MAX)
        return -EINVAL;
    struct proxy_note *n = xcalloc(1, sizeof(*n));
    n->kind = PROXY_NOTE_LATE;
    snprintf(n->call_id, sizeof(n->call_id), "%s", info->call_id);
    snprintf(n->ext, sizeof(n->ext), "%s", info->callee);
    snprintf(n->uri, sizeof(n->uri), "%s", b->uri);
    n->transport = b->transport;
    n->addr = b->addr;
    n->flow_id = b->flow_id;
    snprintf(n->caller, sizeof(n->caller), "%s", info->caller);
    snprintf(n->caller_name, sizeof(n->caller_name), "%s",
             info->caller_name ? info->caller_name : "");
    snprintf(n->reason, sizeof(n->reason), "%s", info->reason);
    /* A TCP binding is reached over its flow, which lives on one worker;
     * a UDP one from any worker (the responses find their way back by
     * the branch's worker index, proxy_steer). */
    unsigned w = 0;
    if (b->transport != REG_TP_UDP && b->flow_id)
        w = tp_flow_worker(b->flow_id);
    pthread_mutex_lock(&sh->lock);
    if (w >= TP_MAX_WORKERS || !sh->workers[w])
        for (w = 0; w < TP_MAX_WORKERS && !sh->workers[w]; w++)
            ;
    pthread_mutex_unlock(&sh->lock);
    return proxy_note_post(sh, w, n);
}

bool
proxy_status_better(int a, int b)
{
    if (b == 0)
        return true;
    if (b >= 600)
        return false;
    if (a >= 600)
        return true;
    return a / 100 < b / 100;
}

int
proxy_status_upstream(int best)
{
    if (best == 0)
        return 408;
    if (best == 503)
        return 500;
    return best;
}

enum proxy_outcome
proxy_outcome_for(int status)
{
    if (status >= 200 && status < 300)
        return PROXY_OUT_ANSWERED;
    switch (status) {
    case 486:
    case 600:
        return PROXY_OUT_BUSY;
    case 603:
        return PROXY_OUT_DECLINED;
    case 487:
        return PROXY_OUT_CANCELLED;
    case 408:
        return PROXY_OUT_NO_ANSWER;
    default:
        return PROXY_OUT_FAILED;
    }
}
