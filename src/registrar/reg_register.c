/*
 * registrar/reg_register: REGISTER processing, RFC 3261 §10.3 steps in
 * order (protocols.md §4.1), with the digest rules of RFC 7616/8760.
 *
 * Order of checks, and why:
 *  0. source blocked by the brute-force throttle → 403 (cheapest first; a
 *     scanner gets nothing else from us);
 *  1. Require → 420 unless every tag is "outbound" (RFC 5626);
 *  2. To must be a sip/sips URI with a user, for our domain (or a numeric
 *     IP: requests reach us by address) → 400 / 404;
 *  3. credentials: none or foreign realm → 401 (SHA-256 then MD5
 *     challenge); malformed → 400; username ≠ To user → 403; wrong
 *     response or unknown extension → 401 again, counted per source (the
 *     unknown_ext policy may answer 404 instead); right response but old
 *     or foreign nonce, or nc replay → 401 stale=true (reg_auth_check in
 *     reg_auth.c, the same code the proxy uses for INVITE and 407);
 *  4. From must name the same extension → 403;
 *  5. Contacts and expiry (400 on garbage, 423 below min_expires), then
 *     the binding update, atomically under the extension's shard lock:
 *     every CSeq check passes before anything changes;
 *  6. 200 with every current binding, its remaining expiry, and Date;
 *     Require: outbound and Flow-Timer when the phone asked for outbound.
 * Authentication runs before the Contact checks so an unauthenticated
 * client learns nothing but "401".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/xmalloc.h"
#include "registrar/reg_int.h"
#include "store/store.h"
#include "sip/build.h"
#include "sip/uri.h"
#include "store/store.h"

#define MAX_REQ_CONTACTS 32
#define MAX_UA_LEN 200
#define REG_ARENA_CAP (128 * 1024)
#define REG_EXTRA_CAP (64 * 1024)

struct req_contact {
    struct sip_contact c;
    struct sip_uri uri;
    long expires; /* granted, 0 = remove */
    const char *key;
    const char *params;
    const char *uri_text;
    const char *instance;
    uint32_t reg_id;
};

struct ctx {
    struct reg *r;
    const struct sip_msg *m;
    const struct reg_src *src;
    struct buf *out;
    struct arena a;
    struct buf extra; /* headers for the response */
    union reg_addr addr;
    int64_t now;
    struct slice ext; /* unescaped To user (arena) */
    reg_commit_cb *cb; /* reg_handle_async: the push device's commit */
    void *cb_arg;
};

/* RFC 5626 §5.2/§5.4: the REGISTER asks for outbound when it names the
 * option tag (Supported or Require) and a Contact it binds carries
 * +sip.instance and reg-id. We are the first hop only when it has a single
 * Via; through another proxy (no Path support here) it gets a plain 200
 * and the phone falls back to registering without outbound. */
static bool
wants_outbound(const struct sip_msg *m, const struct req_contact *v, size_t n)
{
    static const enum sip_hdr_id ids[] = {SIP_HDR_SUPPORTED, SIP_HDR_REQUIRE};
    bool tag = false, flow = false;

    if (m->via_count != 1)
        return false;
    for (size_t k = 0; k < 2 && !tag; k++) {
        struct sip_hdr_iter it;
        struct slice val;
        sip_hdr_iter_init(&it, m, ids[k]);
        while (!tag && sip_hdr_iter_next(&it, &val))
            tag = slice_eq_nocase_cstr(val, "outbound");
    }
    for (size_t i = 0; i < n && !flow; i++)
        flow = v[i].reg_id != 0 && v[i].expires > 0;
    return tag && flow;
}

static int
respond(struct ctx *c, int status, const char *reason)
{
    char tag[17];

    sip_new_tag(tag);
    if (!reason)
        reason = sip_reason_phrase(status);
    int rc = sip_build_response(c->out, c->m, status, reason,
                                slice_make(tag, strlen(tag)),
                                buf_slice(&c->extra), SLICE_NULL);
    return rc < 0 ? rc : status;
}

static int
forbidden(struct ctx *c, const char *reason)
{
    buf_reset(&c->extra);
    return respond(c, 403, reason);
}

static bool
host_is_ip(struct slice host)
{
    char tmp[INET6_ADDRSTRLEN + 1];
    unsigned char bin[16];

    if (host.len == 0 || host.len >= sizeof(tmp))
        return false;
    memcpy(tmp, host.ptr, host.len);
    tmp[host.len] = '\0';
    return inet_pton(AF_INET, tmp, bin) == 1 ||
           inet_pton(AF_INET6, tmp, bin) == 1;
}

/* The unescaped user part of a name-addr's URI, or an empty slice. */
static int
uri_user(struct ctx *c, struct slice text, struct sip_uri *u,
         struct slice *user)
{
    const char *why;

    if (sip_uri_parse(text, u, &why) < 0)
        return -EINVAL;
    if (u->scheme != SIP_URI_SIP && u->scheme != SIP_URI_SIPS)
        return -EPROTONOSUPPORT;
    if (sip_unescape(u->user, &c->a, user) < 0)
        return -EINVAL;
    return 0;
}

static bool
only_digits(struct slice s)
{
    if (s.len == 0)
        return false;
    for (size_t i = 0; i < s.len; i++)
        if (s.ptr[i] < '0' || s.ptr[i] > '9')
            return false;
    return true;
}

/* Copy params without the "expires" param (it is per-binding state and is
 * rewritten in every 200). Splits at ';' outside quotes. */
static const char *
strip_expires(struct arena *a, struct slice params)
{
    char *out = arena_alloc(a, params.len + 1);
    size_t n = 0, i = 0;

    if (!out)
        return NULL;
    while (i < params.len) {
        size_t start = i;
        bool q = false;
        i++; /* the ';' (or first char) */
        while (i < params.len && (q || params.ptr[i] != ';')) {
            if (params.ptr[i] == '"')
                q = !q;
            i++;
        }
        struct slice seg = slice_make(params.ptr + start, i - start);
        struct slice name = seg;
        if (name.len && name.ptr[0] == ';') {
            name.ptr++;
            name.len--;
        }
        const char *eq = memchr(name.ptr, '=', name.len);
        if (eq)
            name.len = (size_t)(eq - name.ptr);
        name = slice_trim(name);
        if (!slice_eq_nocase_cstr(name, "expires")) {
            memcpy(out + n, seg.ptr, seg.len);
            n += seg.len;
        }
    }
    out[n] = '\0';
    return out;
}

static const char *
arena_fmt_key(struct arena *a, struct slice instance, uint32_t reg_id)
{
    char *k = arena_alloc(a, instance.len + 16);
    if (k)
        snprintf(k, instance.len + 16, "%.*s#%u", SLICE_ARG(instance), reg_id);
    return k;
}

static int
bad_request(struct ctx *c, const char *reason)
{
    buf_reset(&c->extra);
    return respond(c, 400, reason);
}

/* ---- authentication --------------------------------------------------- */

/* Returns 0 when the request is authenticated, else the status of the
 * response already built (reg_auth_check: the same code as the proxy's). */
static int
authenticate(struct ctx *c)
{
    struct reg_auth_req q = {
        .kind = REG_AUTH_REGISTER,
        .m = c->m,
        .addr = &c->addr,
        .transport = c->src->transport,
        .now_s = c->now,
        .user = c->ext,
    };
    const char *reason;
    char ext[REG_NUMBER_MAX + 1];

    buf_reset(&c->extra);
    int st = reg_auth_check(c->r, &q, &c->extra, &reason, ext, sizeof(ext));
    if (st == 0)
        return 0;
    if (st != 401) {
        if (st == 500)
            return -EMSGSIZE;
        buf_reset(&c->extra);
    }
    return respond(c, st, reason);
}

/* ---- contacts --------------------------------------------------------- */

/* Parse every Contact value into v. Returns the count, or -status after
 * building a response. *star set for "Contact: *". */
static long
parse_contacts(struct ctx *c, struct req_contact *v, bool *star)
{
    const struct sip_msg *m = c->m;
    const struct reg_cfg *cfg = &c->r->cfg;
    struct sip_hdr_iter it;
    struct slice val;
    size_t n = 0;
    bool hdr_expires = sip_msg_hdr(m, SIP_HDR_EXPIRES) != NULL;

    *star = false;
    if (hdr_expires && m->expires < 0)
        return -bad_request(c, "Bad Expires");
    sip_hdr_iter_init(&it, m, SIP_HDR_CONTACT);
    while (sip_hdr_iter_next(&it, &val)) {
        if (n == MAX_REQ_CONTACTS)
            return -bad_request(c, "Too Many Contacts");
        struct req_contact *rc = &v[n];
        struct sip_error err;
        memset(rc, 0, sizeof(*rc));
        if (sip_contact_parse(val, &rc->c, &err) < 0)
            return -bad_request(c, err.reason ? err.reason : "Bad Contact");
        n++;
        if (rc->c.star) {
            *star = true;
            continue;
        }
        struct slice ev;
        if (sip_param_get(rc->c.na.params, "expires", &ev) && !only_digits(ev))
            return -bad_request(c, "Bad Contact expires");
        const char *why;
        if (sip_uri_parse(rc->c.na.uri, &rc->uri, &why) < 0)
            return -bad_request(c, "Bad Contact URI");
        if (rc->uri.scheme != SIP_URI_SIP && rc->uri.scheme != SIP_URI_SIPS)
            return -bad_request(c, "Unsupported Contact URI scheme");
        long e = rc->c.expires >= 0 ? rc->c.expires
                 : m->expires >= 0  ? m->expires
                                    : (long)cfg->default_expires_s;
        if (e > 0 && e < (long)cfg->min_expires_s) {
            buf_reset(&c->extra);
            buf_printf(&c->extra, "Min-Expires: %u\r\n", cfg->min_expires_s);
            return -respond(c, 423, "Interval Too Brief");
        }
        if (e > (long)cfg->max_expires_s)
            e = (long)cfg->max_expires_s;
        rc->expires = e;
        rc->uri_text = arena_strndup(&c->a, rc->c.na.uri.ptr, rc->c.na.uri.len);
        rc->params = strip_expires(&c->a, rc->c.na.params);
        /* RFC 5626 §6: reg-id without +sip.instance is ignored. */
        rc->reg_id = rc->c.instance.len ? rc->c.reg_id : 0;
        rc->instance =
            arena_strndup(&c->a, rc->c.instance.ptr, rc->c.instance.len);
        rc->key = rc->c.instance.len
                      ? arena_fmt_key(&c->a, rc->c.instance, rc->reg_id)
                      : rc->uri_text;
        if (!rc->uri_text || !rc->params || !rc->instance || !rc->key)
            return -bad_request(c, "Request Too Large");
    }
    if (*star && (n != 1 || !hdr_expires || m->expires != 0))
        return -bad_request(c, "Invalid Wildcard Contact");
    return (long)n;
}

/* The existing binding a contact refers to: same (instance, reg-id), or
 * for contacts without an instance, an equal URI (RFC 3261 §19.1.4). */
static struct binding *
find_binding(struct ext *e, const struct req_contact *rc)
{
    struct list_node *pos, *tmp;

    list_for_each_safe(pos, tmp, &e->bindings)
    {
        struct binding *b = container_of(pos, struct binding, node);
        if (rc->instance[0]) {
            if (strcmp(b->instance, rc->instance) == 0 &&
                b->reg_id == rc->reg_id)
                return b;
            continue;
        }
        /* The same text is the same URI (rc's parsed): the common
         * refresh needs no parse of the stored one. */
        if (strcmp(b->uri, rc->uri_text) == 0)
            return b;
        struct sip_uri bu;
        const char *why;
        if (sip_uri_parse(slice_cstr(b->uri), &bu, &why) == 0 &&
            sip_uri_equal(&bu, &rc->uri))
            return b;
    }
    return NULL;
}

static bool
cseq_out_of_order(const struct sip_msg *m, const struct binding *b)
{
    return slice_eq_cstr(m->call_id, b->call_id) && m->cseq.num <= b->cseq;
}

static void
src_to_addr(const struct reg_src *src, union reg_addr *a)
{
    memset(a, 0, sizeof(*a));
    if (src->addr.ss_family == AF_INET)
        memcpy(&a->in, &src->addr, sizeof(a->in));
    else if (src->addr.ss_family == AF_INET6)
        memcpy(&a->in6, &src->addr, sizeof(a->in6));
}

static const char *
join_path(struct ctx *c)
{
    struct sip_hdr_iter it;
    struct slice val;
    struct buf b;
    const char *out;

    buf_init(&b, 8192);
    sip_hdr_iter_init(&it, c->m, SIP_HDR_PATH);
    while (sip_hdr_iter_next(&it, &val)) {
        if (b.len)
            buf_append_cstr(&b, ", ");
        buf_append_slice(&b, val);
    }
    out = arena_strndup(&c->a, b.data ? b.data : "", b.len);
    buf_fini(&b);
    return out ? out : "";
}

static const char *
user_agent(struct ctx *c)
{
    const struct sip_hdr *h = sip_msg_hdr(c->m, SIP_HDR_USER_AGENT);

    if (!h)
        return "";
    size_t n = h->value.len > MAX_UA_LEN ? MAX_UA_LEN : h->value.len;
    const char *s = arena_strndup(&c->a, h->value.ptr, n);
    return s ? s : "";
}

static int
add_date(struct buf *b, int64_t now_s)
{
    /* This thread's last line: it changes once a second. */
    static _Thread_local int64_t last_s = INT64_MIN;
    static _Thread_local char line[80];
    static _Thread_local size_t len;

    if (now_s != last_s) {
        struct tm tm;
        time_t t = (time_t)now_s;
        gmtime_r(&t, &tm);
        len = strftime(line, sizeof(line),
                       "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        last_s = now_s;
    }
    return buf_append(b, line, len);
}

/* Nobody waits for a binding's early commit (a failure is logged and
 * counted by the store; the next refresh writes the row again). */
static void
commit_behind(int rc, void *arg)
{
    (void)rc;
    (void)arg;
}

/* Apply the contacts to extension e (shard lock held) and build the 200's
 * headers. Returns 0, or a SIP status to answer instead (nothing changed). */
static int
update_bindings(struct ctx *c, struct ext *e, struct req_contact *v, size_t n,
                bool star, struct reg_contact *fresh, size_t *nfresh)
{
    struct reg *r = c->r;
    const struct sip_msg *m = c->m;
    struct list_node *pos, *tmp;

    /* Phase 1: checks only (all or nothing, §10.3 step 7). */
    if (star) {
        list_for_each_safe(pos, tmp, &e->bindings)
        {
            struct binding *b = container_of(pos, struct binding, node);
            if (b->expires_at > c->now && cseq_out_of_order(m, b))
                return 400;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            struct binding *b = find_binding(e, &v[i]);
            if (b && b->expires_at > c->now && cseq_out_of_order(m, b))
                return 400;
        }
    }

    /* Phase 2: apply. */
    if (star) {
        list_for_each_safe(pos, tmp, &e->bindings)
        {
            reg_binding_unlink_free(r, e,
                                    container_of(pos, struct binding, node));
        }
        if (r->store)
            store_binding_del_ext(r->store, e->number);
    }
    const char *path = n && !star ? join_path(c) : "";
    const char *ua = n && !star ? user_agent(c) : "";
    char call_id[1024];
    for (size_t i = 0; i < n && !star; i++) {
        struct req_contact *rc = &v[i];
        struct binding *old = find_binding(e, rc);
        if (rc->expires == 0) {
            if (old) {
                reg_binding_forget(r, e, old);
                reg_binding_unlink_free(r, e, old);
            }
            continue;
        }
        slice_to_cstr(m->call_id, call_id, sizeof(call_id));
        struct binding t = {
            .key = rc->key,
            .uri = rc->uri_text,
            .params = rc->params,
            .instance = rc->instance,
            .call_id = call_id,
            .path = path,
            .user_agent = ua,
            .reg_id = rc->reg_id,
            .cseq = m->cseq.num,
            .expires_at = c->now + rc->expires,
            .updated_at = c->now,
            .transport = c->src->transport,
            .addr = c->addr,
            .flow_id = c->src->flow_id,
        };
        /* [cluster] A new binding (not a refresh) is what other nodes
         * wait for (a woken phone registering here while another node
         * holds its call): it is committed at once instead of within
         * flush_ms. One node: written behind as always. */
        bool now = r->node[0] && r->store &&
                   (!old || old->holder[0] || strcmp(old->uri, t.uri) != 0);
        struct store_mark mk = now ? store_mark(r->store)
                                   : (struct store_mark){0};
        if (old) {
            if (strcmp(old->key, rc->key) != 0)
                reg_binding_forget(r, e, old);
            reg_binding_unlink_free(r, e, old);
        }
        struct binding *b = reg_binding_new(r, e, &t);
        reg_binding_link(r, e, b);
        reg_binding_persist(r, e, b);
        if (now)
            store_commit_async(r->store, mk, commit_behind, NULL);
        if (r->bind_cb && reg_contact_copy(&c->a, &fresh[*nfresh], b) == 0)
            (*nfresh)++;
    }

    /* Drop expired bindings, then evict the least recently updated ones
     * past max_contacts (a desk phone rebooting with a new port leaves a
     * stale binding; the newest registration wins). */
    size_t kept = 0;
    list_for_each_safe(pos, tmp, &e->bindings)
    {
        struct binding *b = container_of(pos, struct binding, node);
        if (!reg_binding_live(b, c->now)) {
            reg_binding_expire(r, e, b);
        } else if (++kept > r->cfg.max_contacts) {
            reg_binding_forget(r, e, b);
            reg_binding_unlink_free(r, e, b);
        }
    }

    buf_reset(&c->extra);
    list_for_each_safe(pos, tmp, &e->bindings)
    {
        struct binding *b = container_of(pos, struct binding, node);
        /* "Contact: <%s>%s;expires=%lld\r\n" without printf. */
        char num[24], *end = num;
        int64_t left = reg_binding_expiry(b, c->now) - c->now;
        if (left < 0)
            *end++ = '-';
        end += fmt_u64(end, left < 0 ? 0 - (uint64_t)left : (uint64_t)left);
        if (buf_append(&c->extra, "Contact: <", 10) < 0 ||
            buf_append_cstr(&c->extra, b->uri) < 0 ||
            buf_append(&c->extra, ">", 1) < 0 ||
            buf_append_cstr(&c->extra, b->params) < 0 ||
            buf_append(&c->extra, ";expires=", 9) < 0 ||
            buf_append(&c->extra, num, (size_t)(end - num)) < 0 ||
            buf_append(&c->extra, "\r\n", 2) < 0)
            return 500;
    }
    if (path[0] && buf_printf(&c->extra, "Path: %s\r\n", path) < 0)
        return 500;
    if (add_date(&c->extra, c->now) < 0)
        return 500;
    return 0;
}

/* ---- entry point ------------------------------------------------------ */

static int
handle(struct ctx *c)
{
    struct reg *r = c->r;
    const struct sip_msg *m = c->m;

    if (reg_throttle_blocked(r, &c->addr, c->now)) {
        atomic_fetch_add(&r->n_throttled, 1);
        return forbidden(c, "Forbidden");
    }

    /* §10.3 step 2: we implement no option tag a REGISTER may require. */
    struct sip_hdr_iter it;
    struct slice val;
    sip_hdr_iter_init(&it, m, SIP_HDR_REQUIRE);
    while (sip_hdr_iter_next(&it, &val)) {
        if (slice_eq_nocase_cstr(val, "outbound"))
            continue; /* RFC 5626: we are its registrar and edge proxy */
        if (c->extra.len == 0)
            buf_append_cstr(&c->extra, "Unsupported: ");
        else
            buf_append_cstr(&c->extra, ", ");
        buf_append_slice(&c->extra, val);
    }
    if (c->extra.len) {
        buf_append_cstr(&c->extra, "\r\n");
        return respond(c, 420, "Bad Extension");
    }

    /* §10.3 step 5 (AOR) comes before authentication because we need the
     * extension the credentials must be for. */
    struct sip_uri to;
    int rc = uri_user(c, m->to.uri, &to, &c->ext);
    if (rc == -EPROTONOSUPPORT)
        return bad_request(c, "Unsupported To URI scheme");
    if (rc < 0)
        return bad_request(c, "Bad To URI");
    if (c->ext.len == 0 || c->ext.len > REG_NUMBER_MAX ||
        memchr(c->ext.ptr, '\0', c->ext.len))
        return respond(c, 404, "Not Found");
    if (!slice_eq_nocase_cstr(to.host, r->domain) && !host_is_ip(to.host))
        return respond(c, 404, "Not Found");

    rc = authenticate(c);
    if (rc != 0)
        return rc;

    /* A From URI of the same text as To's (the usual REGISTER) parses
     * to the same user: no second parse. */
    if (!slice_eq(m->from.uri, m->to.uri)) {
        struct sip_uri from;
        struct slice from_user;
        if (uri_user(c, m->from.uri, &from, &from_user) < 0)
            return bad_request(c, "Bad From URI");
        if (!slice_eq(from_user, c->ext))
            return forbidden(c, "From Does Not Match To");
    }

    struct req_contact v[MAX_REQ_CONTACTS];
    bool star;
    long n = parse_contacts(c, v, &star);
    if (n < 0)
        return (int)-n;
    /* [wake] RFC 8599 push params: 400/555 before anything is stored. */
    struct reg_push_state ps = {0};
    for (long i = 0; i < n && !star; i++) {
        const char *why = NULL;
        int pst = reg_push_contact(r, c->ext, &v[i].uri, v[i].c.instance, &c->a,
                                   &ps, &why);
        if (pst != 0) {
            buf_reset(&c->extra);
            return respond(c, pst, why);
        }
    }

    struct shard *s = reg_shard_of(r, c->ext);
    pthread_mutex_lock(&s->lock);
    struct ext *e = reg_ext_find(s, c->ext);
    struct reg_contact fresh[MAX_REQ_CONTACTS];
    size_t nfresh = 0;
    int status =
        e ? update_bindings(c, e, v, (size_t)n, star, fresh, &nfresh) : 404;
    size_t count = e ? e->binding_count : 0;
    pthread_mutex_unlock(&s->lock);
    if (status == 400)
        return bad_request(c, "Out Of Order CSeq");
    if (status != 0) {
        buf_reset(&c->extra);
        return respond(c, status, NULL);
    }
    /* The 200 is built first, then the push device is stored: durable
     * before the 200 leaves (pushdev.h), and with reg_handle_async the
     * commit's callback may run before this returns, so nothing after
     * the store step may fail. */
    if (reg_push_headers(r, &ps, &c->extra) < 0)
        return -EMSGSIZE;
    if (!star && wants_outbound(m, v, (size_t)n) &&
        buf_printf(&c->extra, "Require: outbound\r\nFlow-Timer: %u\r\n",
                   c->src->transport == REG_TP_UDP ? r->cfg.flow_timer_udp_s
                                                   : r->cfg.flow_timer_s) < 0)
        return -EMSGSIZE;
    size_t mark = c->out->len;
    rc = respond(c, 200, "OK");
    if (rc < 0)
        return rc;
    int pst = reg_push_store(r, c->ext, star, &ps, c->cb, c->cb_arg);
    if (pst == 500) {
        c->out->len = mark;
        buf_reset(&c->extra);
        return respond(c, 500, "Push Device Not Stored");
    }
    if (pst != REG_PENDING)
        atomic_fetch_add(&r->n_ok, 1);
    /* A pending REGISTER's bindings are in memory already (a failed
     * commit does not undo them), so the proxy hears of them now. */
    if (nfresh && r->bind_cb) {
        char ext[REG_NUMBER_MAX + 1];
        slice_to_cstr(c->ext, ext, sizeof(ext));
        r->bind_cb(ext, fresh, nfresh, r->bind_arg);
    }
    if (LOG_DEBUG <= log_level) { /* the source's text only for the log */
        char src[INET6_ADDRSTRLEN + 16];
        reg_addr_format(&c->addr, src, sizeof(src));
        log_debug("registrar", "registered ext=%.*s contacts=%zu src=%s%s",
                  SLICE_ARG(c->ext), count, src,
                  pst == REG_PENDING ? " (push device commit pending)" : "");
    }
    return pst == REG_PENDING ? REG_PENDING : 200;
}

/* Per-thread scratch of handle_top: the arena and the response's extra
 * headers outlive one REGISTER, so that steady load allocates nothing for
 * them. A fresh arena chunk and buffer per REGISTER cost a worker about
 * 10 % of its CPU at 16,000 registrations/s (malloc growing and trimming
 * the heap, page faults: BENCHMARKS.md, "One UDP source over every
 * worker"). Freed when the thread exits; a nested call (busy) uses its
 * own. */
struct scratch {
    struct arena a;
    struct buf extra;
    bool busy;
};

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void
scratch_free(void *p)
{
    struct scratch *sc = p;

    arena_fini(&sc->a);
    buf_fini(&sc->extra);
    free(sc);
}

static void
scratch_key_init(void)
{
    if (pthread_key_create(&scratch_key, scratch_free) != 0)
        abort(); /* out of keys at start-up: as OOM */
}

/* This thread's scratch, marked busy; NULL when it is in use already. */
static struct scratch *
scratch_take(void)
{
    struct scratch *sc;

    pthread_once(&scratch_once, scratch_key_init);
    sc = pthread_getspecific(scratch_key);
    if (!sc) {
        sc = xcalloc(1, sizeof(*sc));
        arena_init(&sc->a, REG_ARENA_CAP);
        buf_init(&sc->extra, REG_EXTRA_CAP);
        if (pthread_setspecific(scratch_key, sc) != 0)
            abort();
    }
    if (sc->busy)
        return NULL;
    sc->busy = true;
    return sc;
}

static int
handle_top(struct reg *r, const struct sip_msg *req, const struct reg_src *src,
           struct buf *out, reg_commit_cb *cb, void *arg)
{
    if (!req->is_request || req->method != SIP_METHOD_REGISTER)
        return -EINVAL;
    struct ctx c = {
        .r = r,
        .m = req,
        .src = src,
        .out = out,
        .now = reg_now_s(r),
        .cb = cb,
        .cb_arg = arg,
    };
    struct scratch *sc = scratch_take();
    if (sc) {
        c.a = sc->a;
        c.extra = sc->extra;
    } else {
        arena_init(&c.a, REG_ARENA_CAP);
        buf_init(&c.extra, REG_EXTRA_CAP);
    }
    src_to_addr(src, &c.addr);
    atomic_fetch_add(&r->n_registers, 1);
    int rc = handle(&c);
    if (sc) {
        arena_reset(&c.a);
        buf_reset(&c.extra);
        sc->a = c.a;
        sc->extra = c.extra;
        sc->busy = false;
    } else {
        buf_fini(&c.extra);
        arena_fini(&c.a);
    }
    return rc;
}

int
reg_handle(struct reg *r, const struct sip_msg *req, const struct reg_src *src,
           struct buf *out)
{
    return handle_top(r, req, src, out, NULL, NULL);
}

int
reg_handle_async(struct reg *r, const struct sip_msg *req,
                 const struct reg_src *src, struct buf *out, reg_commit_cb *cb,
                 void *arg)
{
    if (!cb)
        return -EINVAL;
    return handle_top(r, req, src, out, cb, arg);
}

int
reg_handle_done(struct reg *r, int rc, const struct sip_msg *req,
                struct buf *out)
{
    char tag[17];

    if (rc == 0) {
        atomic_fetch_add(&r->n_ok, 1);
        return 200;
    }
    sip_new_tag(tag);
    int b = sip_build_response(out, req, 500, "Push Device Not Stored",
                               slice_make(tag, strlen(tag)), SLICE_NULL,
                               SLICE_NULL);
    return b < 0 ? b : 500;
}
