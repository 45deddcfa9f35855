/*
 * wake/wake: the per-call policy of the wake path (wake.h; docs/wake.md):
 * the proxy observer (call_started, call_ended), the UDP grace timer, the
 * hold and its release, the endings, the woken REGISTER (wake_on_register)
 * and rule 7. Pushes leave through wake_push.c; latency is wake_lat.c.
 *
 * Bindings come with their RFC 8599 params parsed (reg_contact.pn_*, once
 * when the registrar stored them), and the callee's bindings come with
 * the call (proxy_call_info.contacts, the proxy's own lookup): no Contact
 * URI is parsed and no location lookup is made here per call.
 */
#include "wake/wake.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/list.h"
#include "base/log.h"
#include "base/xmalloc.h"
#include "proxy/proxy.h"
#include "registrar/pushdev.h"
#include "registrar/reg.h"
#include "sip/uri.h"
#include "wake/wake_int.h"

const double wake_latency_bounds_s[WAKE_LATENCY_BUCKETS] = {
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

/* ---- matching bindings and devices ------------------------------------- */

/* %-decode s into dst (cap), refusing a decoded NUL: false if it does not
 * fit or is malformed. */
static bool
unescape(struct slice s, char *dst, size_t cap)
{
    size_t len;

    return sip_unescape_to(s, dst, cap, &len) == 0 && strlen(dst) == len;
}

/* The RFC 8599 params of a Contact URI, unescaped. false if it has no
 * pn-prid. */
static bool
uri_pn(const char *uri, char *provider, size_t pcap, char *prid, size_t cap)
{
    struct sip_uri u;
    struct slice v;
    const char *why;

    if (sip_uri_parse(slice_cstr(uri), &u, &why) < 0)
        return false;
    if (!sip_uri_param(&u, "pn-provider", &v) || !unescape(v, provider, pcap))
        return false;
    if (!sip_uri_param(&u, "pn-prid", &v) || !unescape(v, prid, cap))
        return false;
    return prid[0] != '\0';
}

static const char *
nz(const char *s)
{
    return s ? s : "";
}

/* Does binding b carry push device d's token (its parsed pn-provider and
 * pn-prid)? */
static bool
binding_has_token(const struct reg_contact *b, const struct pushdev *d)
{
    return nz(b->pn_prid)[0] && strcmp(nz(b->pn_prid), d->prid) == 0 &&
           strcmp(nz(b->pn_provider), d->provider) == 0;
}

/* Does binding b belong to push device d? Same pn-provider + pn-prid, or
 * the same +sip.instance. */
static bool
binding_of(const struct reg_contact *b, const struct pushdev *d)
{
    if (d->instance[0] && b->instance && strcmp(b->instance, d->instance) == 0)
        return true;
    return binding_has_token(b, d);
}

/* Does the Contact URI carry d's pn-provider and pn-prid? Only for the
 * answering branch's URI in a call record (once per call end). */
static bool
uri_has_token(const char *uri, const struct pushdev *d)
{
    char prov[16], prid[PUSHDEV_PRID_MAX + 1];

    return uri_pn(uri, prov, sizeof(prov), prid, sizeof(prid)) &&
           strcmp(prov, d->provider) == 0 && strcmp(prid, d->prid) == 0;
}

/* The device that d (copied into a call when it started) is now: the
 * stored device of ext with d's token, else, when d has a +sip.instance,
 * the one with that instance (the app registered a new token, with a new
 * Call-ID, and pushdev replaced the device). false when it is gone: dead
 * token, signed out (Contact: *), evicted by a newer phone, idle-expired,
 * moved to another extension. Any thread (pushdev's lock). */
static bool
device_now(const struct wake *w, const char *ext, const struct pushdev *d,
           struct pushdev *out)
{
    if (!w->o.devices)
        return false;
    if (pushdev_match(w->o.devices, ext, d->provider, d->prid, NULL, out))
        return true;
    return d->instance[0] &&
           pushdev_match(w->o.devices, ext, NULL, NULL, d->instance, out);
}

/* ---- push submission and results ---------------------------------------- */

/* A call push failed for good: the device will not wake for this call.
 * If it was the last pending wake-up, the call is released (with 480 when
 * nobody woke: RFC 8599 §5.6.2 step 5). */
void
wake_call_push_failed(struct wake *w, const struct wake_job *j, bool dead)
{
    const char *prov = push_provider_name(j->m.provider);

    pthread_mutex_lock(&w->lock);
    struct wcall *c = wake_find_call_locked(w, j->call_id, j->to);
    if (c) {
        for (size_t i = 0; i < c->ndev; i++) {
            struct wdev *dv = &c->dev[i];
            if (strcmp(dv->d.provider, prov) == 0 &&
                strcmp(dv->d.prid, j->token) == 0) {
                dv->failed = true;
                dv->dead = dead;
            }
        }
        wake_release_locked(w, c);
    }
    pthread_mutex_unlock(&w->lock);
}

/* ---- calls ----------------------------------------------------------------
 */

/* Is dv a wake-up still pending, so that the call must stay held? */
bool
wake_dev_pending(const struct wdev *dv)
{
    return dv->state == WD_GRACE || dv->state == WD_NOW ||
           (dv->state == WD_PUSHED && !dv->woken && !dv->failed);
}

/* w->lock held. When no device of c is pending any more, give the hold up
 * (once): the proxy then ends the call as soon as every branch is final.
 * 480 stands for the wake-ups when pushes failed and nobody woke. */
void
wake_release_locked(struct wake *w, struct wcall *c)
{
    bool failed = false, woken = false;

    if (c->released)
        return;
    for (size_t i = 0; i < c->ndev; i++) {
        const struct wdev *dv = &c->dev[i];
        if (wake_dev_pending(dv))
            return;
        failed |= dv->failed || dv->state == WD_REFUSED || dv->state == WD_GONE;
        woken |= dv->woken;
    }
    c->released = true;
    int status = failed && !woken ? 480 : 0;
    log_info("wake", "wake-ups over, call released call_id=%s status=%d",
             c->call_id, status);
    if (w->sh)
        proxy_call_release(w->sh, c->worker, c->call_id, c->callee, status);
}

static void
push_call(struct wcall *c, struct wdev *dv)
{
    struct wake *w = c->w;

    /* One call never sends two call pushes to one device: the state moves
     * to PUSHED (or REFUSED, GONE) exactly once. A device replaced while
     * the call rings stays this one entry (device_now), never a new one. */
    if (dv->state == WD_PUSHED || dv->state == WD_REFUSED ||
        dv->state == WD_GONE)
        return;
    /* After the grace time the device may have changed since the call
     * started: push its current token, or nothing if it is gone. */
    if (dv->state == WD_GRACE) {
        struct pushdev now;
        bool here = device_now(w, c->callee, &dv->d, &now);
        pthread_mutex_lock(&w->lock);
        if (here)
            dv->d = now; /* wake_call_push_failed matches the job's token */
        else
            dv->state = WD_GONE;
        pthread_mutex_unlock(&w->lock);
        if (!here) {
            log_info("wake",
                     "no call push, device gone call_id=%s ext=%s "
                     "provider=%s",
                     c->call_id, c->callee, dv->d.provider);
            return;
        }
    }
    /* Timed from the INVITE only when pushed at once: after the UDP grace
     * time the delay is policy, not pushpbx's latency. */
    int rc = wake_submit(w, &dv->d, PUSH_CALL, c, c->expires_s,
                         dv->state == WD_NOW ? c->rx_us : 0);
    pthread_mutex_lock(&w->lock);
    dv->state = rc < 0 ? WD_REFUSED : WD_PUSHED;
    pthread_mutex_unlock(&w->lock);
    if (rc < 0)
        return;
    log_info("wake", "push sent call_id=%s ext=%s provider=%s%s", c->call_id,
             c->callee, dv->d.provider, pushdev_is_voip(&dv->d) ? " voip" : "");
    if (w->o.ringing && !c->ringing_sent && w->sh) {
        c->ringing_sent = true;
        (void)proxy_call_ringing(c->call);
    }
}

static void
on_grace(struct tq_entry *e)
{
    struct wcall *c = container_of(e, struct wcall, grace);
    struct wake *w = c->w;
    bool push[PUSHDEV_MAX_PER_EXT] = {false};

    /* Decide under the lock (woken is written by other workers), push
     * outside it (a test's send hook completes jobs synchronously). */
    pthread_mutex_lock(&w->lock);
    for (size_t i = 0; i < c->ndev; i++) {
        struct wdev *dv = &c->dev[i];
        if (dv->state != WD_GRACE)
            continue;
        if (dv->woken || (w->sh && proxy_call_branch_rang(c->call, dv->uri))) {
            dv->state = WD_DIRECT; /* it is awake: rule 8 */
            atomic_fetch_add(&w->n_grace, 1);
            continue;
        }
        push[i] = true;
    }
    pthread_mutex_unlock(&w->lock);
    for (size_t i = 0; i < c->ndev; i++)
        if (push[i])
            push_call(c, &c->dev[i]);
    pthread_mutex_lock(&w->lock);
    wake_release_locked(w, c);
    pthread_mutex_unlock(&w->lock);
}

/* Is the binding's TCP/TLS flow open? Called on the call's worker, about a
 * flow of any worker: the process-wide table of open flows answers (a
 * binding whose connection is gone is unreachable: push, product rule 3;
 * the proxy does not ring it either, binding_reachable). A worker set up
 * without a transport (tests, wake_worker_set_tq) counts every flow as
 * open. */
static bool
flow_alive(const struct wake *w, unsigned worker, uint64_t flow_id)
{
    if (!flow_id)
        return false;
    if (worker >= TP_MAX_WORKERS || !w->workers[worker].tp)
        return true;
    return tp_flow_open(flow_id);
}

static bool
on_call_started(const struct proxy_call_info *info, void *arg)
{
    struct wake *w = arg;
    struct pushdev devs[PUSHDEV_MAX_PER_EXT];

    if (!w->o.devices)
        return false;
    size_t nd =
        pushdev_find_ext(w->o.devices, info->callee, devs, PUSHDEV_MAX_PER_EXT);
    if (nd == 0)
        return false;

    struct wcall *c = xcalloc(1, sizeof(*c));
    c->w = w;
    c->call = info->call;
    c->worker = info->worker;
    wake_copy_str(c->call_id, sizeof(c->call_id), info->call_id);
    wake_copy_str(c->caller, sizeof(c->caller), info->caller);
    wake_copy_str(c->callee, sizeof(c->callee), info->callee);
    wake_copy_str(c->caller_name, sizeof(c->caller_name), info->caller_name);
    c->since_ms = wake_wall_ms(w);
    c->rx_us = info->rx_us;
    c->expires_s = c->since_ms / 1000 + (int64_t)w->o.ring_s;
    tq_entry_init(&c->grace, on_grace);

    /* The proxy's own lookup of the callee (no second one here). */
    const struct reg_contact *bs = info->contacts;
    size_t nb = info->contacts ? info->bindings : 0;

    bool grace = false;
    for (size_t i = 0; i < nd; i++) {
        struct wdev *dv = &c->dev[c->ndev++];
        dv->d = devs[i];
        const struct reg_contact *b = NULL;
        for (size_t k = 0; k < nb && !b; k++)
            if (binding_of(&bs[k], &devs[i]))
                b = &bs[k];
        if (b)
            wake_copy_str(dv->uri, sizeof(dv->uri), b->uri);
        if (b && b->transport != REG_TP_UDP &&
            flow_alive(w, info->worker, b->flow_id)) {
            dv->state = WD_DIRECT; /* rule 3: live connection, no push */
            atomic_fetch_add(&w->n_live, 1);
        } else if (b && b->transport == REG_TP_UDP && w->o.grace_ms &&
                   info->worker < TP_MAX_WORKERS &&
                   w->workers[info->worker].tq) {
            dv->state = WD_GRACE; /* direct first; pushed if silent */
            grace = true;
        } else {
            dv->state = WD_NOW;
        }
    }
    pthread_mutex_lock(&w->lock);
    list_push_back(&w->calls, &c->node);
    w->ncalls++;
    pthread_mutex_unlock(&w->lock);

    for (size_t i = 0; i < c->ndev; i++)
        if (c->dev[i].state == WD_NOW)
            push_call(c, &c->dev[i]);
    if (grace) {
        const struct wworker *ww = &w->workers[info->worker];
        tq_heap_add(ww->tq, &c->grace,
                    ww->now_ms(ww->now_arg) + (uint64_t)w->o.grace_ms);
    }
    /* Held while a wake-up is pending; if none is (every push refused or
     * already failed), the proxy never holds it and needs no release. */
    bool hold = false;
    pthread_mutex_lock(&w->lock);
    for (size_t i = 0; i < c->ndev; i++)
        hold |= wake_dev_pending(&c->dev[i]);
    c->released = !hold;
    pthread_mutex_unlock(&w->lock);
    return hold;
}

struct wcall *
wake_find_call_locked(struct wake *w, const char *call_id, const char *callee)
{
    struct list_node *n;
    for (n = w->calls.next; n != &w->calls; n = n->next) {
        struct wcall *c = container_of(n, struct wcall, node);
        if (strcmp(c->call_id, call_id) == 0 && strcmp(c->callee, callee) == 0)
            return c;
    }
    return NULL;
}

/* Remember a VoIP device that was pushed and did not wake in time: d is
 * the device as it is now (its current token; matched by instance too). */
static void
ended_add(struct wake *w, const struct wcall *c, const struct pushdev *d,
          const char *reason)
{
    struct ended *e = xcalloc(1, sizeof(*e));

    wake_copy_str(e->ext, sizeof(e->ext), c->callee);
    wake_copy_str(e->provider, sizeof(e->provider), d->provider);
    wake_copy_str(e->prid, sizeof(e->prid), d->prid);
    wake_copy_str(e->instance, sizeof(e->instance), d->instance);
    wake_copy_str(e->call_id, sizeof(e->call_id), c->call_id);
    wake_copy_str(e->caller, sizeof(e->caller), c->caller);
    wake_copy_str(e->caller_name, sizeof(e->caller_name), c->caller_name);
    wake_copy_str(e->reason, sizeof(e->reason), reason);
    e->until_s = c->expires_s;
    pthread_mutex_lock(&w->lock);
    list_push_back(&w->ended, &e->node);
    if (++w->nended > ENDED_MAX) { /* bounded: drop the oldest */
        struct ended *old = container_of(w->ended.next, struct ended, node);
        list_remove(&old->node);
        w->nended--;
        free(old);
    }
    pthread_mutex_unlock(&w->lock);
}

static void
on_call_ended(const struct proxy_call_record *rec, void *arg)
{
    struct wake *w = arg;

    pthread_mutex_lock(&w->lock);
    struct wcall *c = wake_find_call_locked(w, rec->call_id, rec->callee);
    if (c) {
        list_remove(&c->node);
        w->ncalls--;
    }
    pthread_mutex_unlock(&w->lock);
    if (!c)
        return;
    tq_cancel(&c->grace);

    bool answered = rec->outcome == PROXY_OUT_ANSWERED;
    /* RFC 3326 Reason for the rule 7 CANCEL: 200 tells CallKit (and the
     * app) the call was answered on another device; 487 that it ended
     * unanswered, the text says how. */
    const char *reason = answered
                             ? "SIP;cause=200;text=\"Call completed elsewhere\""
                         : rec->outcome == PROXY_OUT_CANCELLED
                             ? "SIP;cause=487;text=\"Call cancelled\""
                         : rec->outcome == PROXY_OUT_NO_ANSWER
                             ? "SIP;cause=487;text=\"Call not answered\""
                             : "SIP;cause=487;text=\"Call ended\"";
    enum push_type type = answered ? PUSH_ANSWERED_ELSEWHERE : PUSH_MISSED;
    for (size_t i = 0; i < c->ndev; i++) {
        struct wdev *dv = &c->dev[i];
        if (dv->state != WD_PUSHED)
            continue;
        /* Endings go to the device as it is now, not to the token the
         * call push went to: a woken app may have registered a new token
         * (same +sip.instance), and the old one is dead at the provider
         * after a real rotation. The wcall keeps one entry per device, so
         * a replaced device still gets one ending push and never a second
         * call push. */
        struct pushdev now;
        bool here = device_now(w, c->callee, &dv->d, &now);
        /* A dead token cannot take a missed push either (normally gone
         * from the table already; kept if its delete failed). */
        if (here && dv->dead && strcmp(now.provider, dv->d.provider) == 0 &&
            strcmp(now.prid, dv->d.prid) == 0)
            here = false;
        /* The device that answered needs no notification. */
        if (answered && dv->uri[0] && strcmp(dv->uri, rec->answered_by) == 0)
            continue;
        if (answered && rec->answered_by[0] &&
            (uri_has_token(rec->answered_by, &dv->d) ||
             (here && uri_has_token(rec->answered_by, &now))))
            continue;
        if (!here) {
            log_info(
                "wake", "no %s push, device gone call_id=%s ext=%s provider=%s",
                push_type_name(type), c->call_id, c->callee, dv->d.provider);
        } else {
            if (strcmp(now.prid, dv->d.prid) != 0)
                log_info("wake",
                         "%s push to the device's new token call_id=%s "
                         "ext=%s provider=%s",
                         push_type_name(type), c->call_id, c->callee,
                         now.provider);
            (void)wake_submit(w, &now, type, c, 0, 0);
        }
        /* Rule 7 only for a VoIP push that was delivered (or may still
         * be): a failed one wakes nothing. The call push's kind decides
         * (dv->d); the entry matches the REGISTER by the current token or
         * the instance. */
        if (!dv->woken && !dv->failed && pushdev_is_voip(&dv->d))
            ended_add(w, c, here ? &now : &dv->d, reason);
    }
    free(c);
}

void
wake_on_register(struct wake *w, const char *ext,
                 const struct reg_contact *contacts, size_t count)
{
    for (size_t k = 0; k < count; k++) {
        const struct reg_contact *b = &contacts[k];
        const char *prov = nz(b->pn_provider), *prid = nz(b->pn_prid);
        bool pn = prid[0] != '\0';
        const char *inst = b->instance ? b->instance : "";
        if (!pn && !inst[0])
            continue;

        /* Devices of ringing calls: woken (the proxy adds the branch). */
        pthread_mutex_lock(&w->lock);
        struct list_node *n;
        for (n = w->calls.next; n != &w->calls; n = n->next) {
            struct wcall *c = container_of(n, struct wcall, node);
            if (strcmp(c->callee, ext) != 0)
                continue;
            for (size_t i = 0; i < c->ndev; i++) {
                struct wdev *dv = &c->dev[i];
                bool same = (pn && strcmp(prov, dv->d.provider) == 0 &&
                             strcmp(prid, dv->d.prid) == 0) ||
                            (inst[0] && strcmp(inst, dv->d.instance) == 0);
                if (!same || dv->woken)
                    continue;
                dv->woken = true;
                wake_copy_str(dv->uri, sizeof(dv->uri), b->uri);
                if (dv->state == WD_PUSHED) {
                    atomic_fetch_add(&w->n_woken, 1);
                    wake_wait_add(w, b->uri);
                }
            }
            /* Its binding is stored now (the bind callback runs before
             * the 200), so the proxy forks to it before it lets go. */
            wake_release_locked(w, c);
        }
        /* A VoIP device woken for a call that already ended (rule 7). */
        struct ended *hit = NULL;
        int64_t now_s = wake_wall_ms(w) / 1000;
        struct list_node *tmp;
        list_for_each_safe(n, tmp, &w->ended)
        {
            struct ended *e = container_of(n, struct ended, node);
            if (e->until_s < now_s) { /* its push has expired */
                list_remove(n);
                w->nended--;
                free(e);
                continue;
            }
            bool same = strcmp(e->ext, ext) == 0 &&
                        ((pn && strcmp(prov, e->provider) == 0 &&
                          strcmp(prid, e->prid) == 0) ||
                         (inst[0] && strcmp(inst, e->instance) == 0));
            if (same && !hit) {
                list_remove(n);
                w->nended--;
                hit = e;
            }
        }
        pthread_mutex_unlock(&w->lock);
        if (hit) {
            atomic_fetch_add(&w->n_late, 1);
            struct proxy_late l = {.call_id = hit->call_id,
                                   .caller = hit->caller,
                                   .caller_name = hit->caller_name,
                                   .callee = hit->ext,
                                   .reason = hit->reason};
            int rc = w->sh ? proxy_late_cancel(w->sh, b, &l) : -ENOTCONN;
            if (rc < 0)
                log_notice("wake",
                           "ended call: INVITE+CANCEL to the woken voip "
                           "device not queued: %s call_id=%s ext=%s",
                           strerror(-rc), hit->call_id, ext);
            else
                log_info("wake",
                         "ended call: INVITE+CANCEL to woken voip "
                         "device call_id=%s ext=%s",
                         hit->call_id, ext);
            free(hit);
        }
    }
}

/* ---- set-up ---------------------------------------------------------------
 */

int
wake_new(const struct wake_opts *o, struct wake **out)
{
    if (!o)
        return -EINVAL;
    struct wake *w = xcalloc(1, sizeof(*w));
    w->o = *o;
    pthread_mutex_init(&w->lock, NULL);
    pthread_mutex_init(&w->qlock, NULL);
    pthread_mutex_init(&w->lat_lock, NULL);
    for (size_t i = 0; i < WAKE_LAT_COUNT; i++)
        w->lat[i].ring = xcalloc(WAKE_LAT_SAMPLES, sizeof(uint32_t));
    list_init(&w->calls);
    list_init(&w->ended);
    list_init(&w->queue);
    w->recent_cap = o->recent_max ? o->recent_max : 200;
    w->recent = xcalloc(w->recent_cap, sizeof(*w->recent));
    *out = w;
    return 0;
}

const struct proxy_observer *
wake_observer(void)
{
    static const struct proxy_observer ops = {
        .call_started = on_call_started,
        .call_ended = on_call_ended,
        .branch_sent = wake_on_branch_sent,
        .message_stored = wake_on_message_stored,
    };
    return &ops;
}

int
wake_attach(struct wake *w, struct proxy_shared *sh)
{
    int rc = proxy_observer_add(sh, wake_observer(), w);
    if (rc == 0)
        w->sh = sh;
    return rc;
}

static uint64_t
tp_clock(void *arg)
{
    return tp_now_ms(arg);
}

void
wake_worker_set(struct wake *w, unsigned idx, struct tp *tp)
{
    if (idx >= TP_MAX_WORKERS)
        return;
    w->workers[idx] = (struct wworker){tp, tp_tq(tp), tp_clock, tp};
}

void
wake_worker_set_tq(struct wake *w, unsigned idx, struct tq *tq,
                   uint64_t (*now_ms)(void *arg), void *now_arg)
{
    if (idx >= TP_MAX_WORKERS)
        return;
    w->workers[idx] = (struct wworker){NULL, tq, now_ms, now_arg};
}

void
wake_worker_fini(struct wake *w, unsigned idx)
{
    struct list_node *n, *tmp;

    pthread_mutex_lock(&w->lock);
    list_for_each_safe(n, tmp, &w->calls)
    {
        struct wcall *c = container_of(n, struct wcall, node);
        if (c->worker != idx)
            continue;
        tq_cancel(&c->grace);
        list_remove(n);
        w->ncalls--;
        free(c);
    }
    pthread_mutex_unlock(&w->lock);
}

void
wake_free(struct wake *w)
{
    struct list_node *n, *tmp;

    if (!w)
        return;
    wake_push_stop(w);
    /* Calls still listed belong to workers that are gone (their tq with
     * them): free without touching the timers. */
    list_for_each_safe(n, tmp, &w->calls)
    {
        free(container_of(n, struct wcall, node));
    }
    list_for_each_safe(n, tmp, &w->ended)
    {
        free(container_of(n, struct ended, node));
    }
    pthread_mutex_destroy(&w->lock);
    pthread_mutex_destroy(&w->qlock);
    pthread_mutex_destroy(&w->lat_lock);
    for (size_t i = 0; i < WAKE_LAT_COUNT; i++)
        free(w->lat[i].ring);
    free(w->recent);
    free(w);
}

size_t
wake_recent(struct wake *w, struct wake_push_entry *out, size_t cap)
{
    size_t n = 0;

    pthread_mutex_lock(&w->lock);
    for (size_t i = 0; i < w->recent_count && n < cap; i++) {
        size_t idx = (w->recent_next + w->recent_cap - 1 - i) % w->recent_cap;
        out[n++] = w->recent[idx];
    }
    pthread_mutex_unlock(&w->lock);
    return n;
}

void
wake_stats_get(struct wake *w, struct wake_stats *out)
{
    out->sent = atomic_load(&w->n_sent);
    out->delivered = atomic_load(&w->n_delivered);
    out->failed = atomic_load(&w->n_failed);
    out->dead = atomic_load(&w->n_dead);
    out->suppressed_live = atomic_load(&w->n_live);
    out->suppressed_grace = atomic_load(&w->n_grace);
    out->woken = atomic_load(&w->n_woken);
    out->late_cancels = atomic_load(&w->n_late);
    for (int p = 0; p < 2; p++) {
        out->sent_by[p] = atomic_load(&w->sent_by[p]);
        out->delivered_by[p] = atomic_load(&w->delivered_by[p]);
        out->failed_by[p] = atomic_load(&w->failed_by[p]);
        out->dead_by[p] = atomic_load(&w->dead_by[p]);
    }
    for (size_t i = 0; i < WAKE_LATENCY_BUCKETS; i++)
        out->latency_le[i] = atomic_load(&w->lat_le[i]);
    out->latency_count = atomic_load(&w->lat_count);
    out->latency_sum_s = (double)atomic_load(&w->lat_sum_us) / 1e6;
    pthread_mutex_lock(&w->lock);
    out->pending_calls = w->ncalls;
    pthread_mutex_unlock(&w->lock);
}

size_t
wake_pending_list(struct wake *w, struct wake_pending *out, size_t cap)
{
    size_t n = 0;

    pthread_mutex_lock(&w->lock);
    for (struct list_node *p = w->calls.next; p != &w->calls && n < cap;
         p = p->next) {
        const struct wcall *c = container_of(p, struct wcall, node);
        struct wake_pending *e = &out[n++];
        memset(e, 0, sizeof(*e));
        wake_copy_str(e->call_id, sizeof(e->call_id), c->call_id);
        wake_copy_str(e->caller, sizeof(e->caller), c->caller);
        wake_copy_str(e->callee, sizeof(e->callee), c->callee);
        e->since_ms = c->since_ms;
        e->expires_at = c->expires_s;
        for (size_t i = 0; i < c->ndev; i++) {
            if (c->dev[i].woken)
                e->woken++;
            else if (c->dev[i].state == WD_PUSHED)
                e->pushed++;
        }
    }
    pthread_mutex_unlock(&w->lock);
    return n;
}
