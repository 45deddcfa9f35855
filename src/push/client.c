/*
 * client: the APNs and FCM HTTP/2 clients on the caller's libuv loop.
 *
 * Each provider (struct prov) owns one curl multi handle, limited to one
 * connection per host with multiplexing on, so every push is a stream on
 * one reused TLS connection. curl tells us which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION -> one uv_poll_t per socket, i.e. per
 * connection, not per push) and when to wake it (CURLMOPT_TIMERFUNCTION ->
 * one uv_timer_t), as curl's docs/examples/multi-uv.c does.
 *
 * A push is a job. Its life: ready list -> in flight (an easy handle in the
 * multi) -> done, or -> backoff list -> ready again. push_send only queues
 * the job and kicks the provider's second timer (retry_timer, armed at 0),
 * so callbacks never run inside push_send. The same timer wakes the
 * earliest backoff: the backoff list is unsorted and scanned when the timer
 * fires, O(n) in jobs waiting to retry, which stay few (a provider outage
 * makes them fail by deadline within a ring time); the ready list is FIFO.
 * At most PUSH_MAX_INFLIGHT jobs are in curl at once, so curl's own
 * pending queue stays short.
 *
 * Credentials: APNs token auth mints one ES256 JWT and reuses it for
 * jwt_refresh_s (50 min; Apple wants 20..60); a 403 Expired/
 * InvalidProviderToken re-mints once (only if nobody did meanwhile) and
 * retries that push once. FCM keeps one OAuth2 access token from the
 * token_uri; a background refresh starts when it nears expiry while sends
 * go on with the old one; when no usable token exists, ready jobs wait
 * behind the one token request in flight. A 401 drops the token (once per
 * job) and the job waits for the next. APNs certificate auth: the
 * certificate is checked at set-up (apns_cert.h); a TLS alert about it
 * from APNs fails the push at once ("certificate refused: <alert>", read
 * from curl's per-attempt error buffer) instead of retrying.
 */
#include "push/push.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "base/buf.h"
#include "base/list.h"
#include "base/log.h"
#include "base/xmalloc.h"
#include "push/apns_cert.h"
#include "push/errmap.h"
#include "jose/jose.h"
#include "push/jwt.h"
#include "push/payload.h"

#define PUSH_MAX_INFLIGHT 1000   /* streams handed to curl per provider */
#define PUSH_RESP_CAP (64 * 1024) /* response body bytes we keep */
#define PUSH_RETRY_AFTER_MAX_S 600
#define PUSH_IDLE_EASY 64         /* finished easy handles kept for reuse */
#define PUSH_FORM_PREFIX                                                     \
    "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"       \
    "&assertion="

struct prov;

struct sockctx {
    uv_poll_t poll;
    curl_socket_t fd;
    struct prov *p;
    struct list_node node; /* in p->socks */
    int events;            /* UV_READABLE/UV_WRITABLE being polled */
    bool idle;             /* curl said CURL_POLL_REMOVE: not its concern */
};

struct job {
    struct list_node node; /* in ready, inflight or backoff */
    struct prov *p;
    push_done_cb *cb;
    void *arg;
    struct push_msg m; /* strings point into strs */
    char *strs;        /* owned copy of the message's strings */
    char *url;
    const char *topic;     /* APNs: apns-topic (in strs) */
    const char *push_type; /* APNs: "voip" or "alert" */
    bool voip;
    /* APNs: an alert to the bundle of a .voip pn-param: the device's
     * token may be a VoIP token, which Apple refuses for the bundle topic
     * (DeviceTokenNotForTopic) although it is alive for VoIP pushes. */
    bool voip_stripped;
    char apns_id[37];
    char collapse[PUSH_COLLAPSE_ID_LEN + 1];
    uint64_t t0_ns;       /* uv_hrtime at push_send */
    uint64_t launch_ns;   /* uv_hrtime when its first attempt went to curl */
    uint64_t write_us;
    uint64_t deadline_ms; /* loop time; 0 = none */
    uint64_t due_ms;      /* backoff wake-up, loop time */
    unsigned attempts;
    bool auth_retried;
    unsigned cred_gen; /* JWT/access-token generation used */
    long http_status;
    char reason[128];
    char id[160];
    char errbuf[CURL_ERROR_SIZE]; /* curl's detail of a failed attempt */
    CURL *easy;
    struct curl_slist *hdrs;
    struct buf body;
    struct buf resp;
};

struct prov {
    struct push_client *c;
    enum push_provider kind;
    bool enabled;
    CURLM *multi;
    uv_timer_t curl_timer;
    uv_timer_t retry_timer;
    struct list_node ready, inflight, backoff, socks;
    CURL *idle_easy[PUSH_IDLE_EASY]; /* finished push handles, reused */
    unsigned n_idle_easy;
    unsigned count;    /* jobs accepted and not finished */
    unsigned n_inflight;
    char *base_url, *ca_file;
    unsigned timeout_ms;
    bool verbose; /* PUSHPBX_CURL_VERBOSE: curl's trace on stderr (read
                     once, not per push) */
    /* APNs */
    EVP_PKEY *key;
    char *key_id, *team_id, *topic, *cert_file, *cert_key_file;
    struct buf jwt;
    uint64_t jwt_minted_ms;
    uint64_t jwt_refresh_ms;
    unsigned jwt_gen;
    /* FCM */
    char *project, *client_email, *private_key_id, *token_aud, *token_url;
    char *access_token;
    bool tok_valid;
    uint64_t tok_soft_ms, tok_hard_ms;
    unsigned tok_gen;
    CURL *tok_easy;
    struct buf tok_body, tok_resp;
};

struct push_client {
    uv_loop_t *loop;
    unsigned queue_max, max_attempts, backoff_initial_ms, backoff_max_ms;
    struct prov prov[2];
    unsigned open_handles;
    bool closing;
    unsigned char rand[64 * 16]; /* make_uuid's random block */
    size_t rand_left;
};

static bool pump(struct prov *p);
static void check_done(struct prov *p);
static void finish(struct job *j, enum push_status st);

/* --- names --------------------------------------------------------------*/

const char *
push_status_name(enum push_status s)
{
    switch (s) {
    case PUSH_DELIVERED:
        return "delivered";
    case PUSH_DEAD_TOKEN:
        return "dead_token";
    case PUSH_RETRY_EXHAUSTED:
        return "retry_exhausted";
    case PUSH_FAILED:
        return "failed";
    case PUSH_CANCELLED:
        return "cancelled";
    }
    return "?";
}

const char *
push_provider_name(enum push_provider p)
{
    return p == PUSH_APNS ? "apns" : "fcm";
}

const char *
push_type_name(enum push_type t)
{
    switch (t) {
    case PUSH_CALL:
        return "call";
    case PUSH_MISSED:
        return "missed";
    case PUSH_ANSWERED_ELSEWHERE:
        return "answered_elsewhere";
    case PUSH_MESSAGE:
        return "message";
    }
    return "?";
}

const char *
push_strerror(int rc)
{
    switch (rc) {
    case 0:
        return "ok";
    case -ENOTSUP:
        return "provider not enabled";
    case -EINVAL:
        return "invalid push message";
    case -EMSGSIZE:
        return "payload too large";
    case -ENOBUFS:
        return "queue full";
    case -ECANCELED:
        return "client closing";
    }
    return "unknown error";
}

/* --- small helpers ------------------------------------------------------*/

static int64_t
wall_s(void)
{
    return (int64_t)time(NULL);
}

static int64_t
wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *
dup_or_null(const char *s)
{
    return s && *s ? xstrdup(s) : NULL;
}

/* Copy a base URL without trailing slashes. */
static char *
dup_url(const char *s)
{
    size_t n = strlen(s);

    while (n > 0 && s[n - 1] == '/')
        n--;
    return xstrndup(s, n);
}

/* 16 random bytes per apns-id, taken from a block drawn from OpenSSL's
 * generator 64 ids at a time: one RAND_bytes per push cost about 3 % of
 * a push's CPU (the DRBG's locking and fork check). The client is
 * single-loop, the block is per client. */
static void
make_uuid(struct push_client *c, char out[37])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    int o = 0;

    if (c->rand_left < sizeof(b)) {
        if (RAND_bytes(c->rand, sizeof(c->rand)) != 1) {
            for (size_t i = 0; i < sizeof(c->rand); i++)
                c->rand[i] = (unsigned char)rand();
        }
        c->rand_left = sizeof(c->rand);
    }
    memcpy(b, c->rand + sizeof(c->rand) - c->rand_left, sizeof(b));
    c->rand_left -= sizeof(b);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

/* Characters we put in a URL path unescaped: APNs tokens are hex, but
 * accept base64url-ish tokens too and let the provider judge them. */
static bool
token_ok(const char *t, bool in_url)
{
    size_t n = 0;

    if (t == NULL || *t == '\0')
        return false;
    for (; t[n]; n++) {
        unsigned char ch = (unsigned char)t[n];
        if (in_url && !(ch == '-' || ch == '_' || ch == '.' || ch == '~' ||
                        ch == ':' || (ch >= '0' && ch <= '9') ||
                        (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')))
            return false;
        if (ch < 0x21 || ch == 0x7f)
            return false;
    }
    return n <= 4096;
}

static size_t
on_write(char *data, size_t size, size_t nmemb, void *arg)
{
    struct buf *b = arg;
    size_t n = size * nmemb;

    if (buf_append(b, data, n) < 0)
        return 0; /* over PUSH_RESP_CAP: abort this transfer */
    return n;
}

static int on_curl_closesocket(void *userp, curl_socket_t fd);

/* Options common to pushes and OAuth requests on provider p. */
static void
easy_common(struct prov *p, CURL *e, const char *url, struct buf *resp,
            long timeout_ms)
{
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                     strncmp(url, "http://", 7) == 0
                         ? (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
                         : (long)CURL_HTTP_VERSION_2TLS);
    /* Wait for the one connection to be up and multiplex on it rather than
     * opening another. */
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_curl_closesocket);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, p);
    if (p->verbose)
        curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
    if (p->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, p->ca_file);
    if (p->cert_file) {
        curl_easy_setopt(e, CURLOPT_SSLCERT, p->cert_file);
        curl_easy_setopt(e, CURLOPT_SSLKEY, p->cert_key_file);
    }
}

/* --- curl <-> libuv glue (multi-uv.c) ----------------------------------*/

static void
check_done(struct prov *p);

static void
on_poll(uv_poll_t *h, int status, int events)
{
    struct sockctx *s = container_of(h, struct sockctx, poll);
    struct prov *p = s->p;
    int flags = 0, running;

    if (s->idle) {
        /* Something on a connection no transfer uses (a PING, a GOAWAY,
         * the peer closing): stop polling it, or a level-triggered event
         * nobody reads would spin the loop. curl looks at the connection
         * (alive check, then reads) when it next uses it. */
        uv_poll_stop(&s->poll);
        s->events = 0;
        return;
    }
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(p->multi, s->fd, flags, &running);
    check_done(p);
}

static void
on_sock_closed(uv_handle_t *h)
{
    free(container_of((uv_poll_t *)h, struct sockctx, poll));
}

static void
sock_close(struct sockctx *s)
{
    list_remove(&s->node);
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static struct sockctx *
sock_find(struct prov *p, curl_socket_t fd)
{
    struct list_node *n, *tmp;

    list_for_each_safe(n, tmp, &p->socks)
    {
        struct sockctx *s = container_of(n, struct sockctx, node);
        if (s->fd == fd)
            return s;
    }
    return NULL;
}

/* curl's CURL_POLL_REMOVE comes whenever no transfer uses a connection
 * any more: with pushes spaced out (100 calls/s), after every push. The
 * uv_poll is then kept, still polling, and marked idle (on_poll stops it
 * if anything arrives meanwhile); the next push finds it by fd and, as
 * curl asks for the same events, changes nothing. Closing it at
 * REMOVE and creating it anew for the next push cost eight system calls
 * per push (libuv's epoll check, FIONBIO, epoll add and delete); libuv
 * 1.44 also re-registers the fd on every uv_poll_start, hence the events
 * check. The handle is closed when curl closes the socket
 * (on_curl_closesocket), so a reused fd number never meets a stale one. */
static int
on_curl_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *sockp)
{
    struct prov *p = userp;
    struct sockctx *s = sockp;
    int events = 0;

    if (what == CURL_POLL_REMOVE) {
        if (s) {
            curl_multi_assign(p->multi, fd, NULL);
            s->idle = true;
        }
        return 0;
    }
    if (s == NULL && (s = sock_find(p, fd)) != NULL)
        curl_multi_assign(p->multi, fd, s);
    if (s == NULL) {
        s = xcalloc(1, sizeof(*s));
        s->fd = fd;
        s->p = p;
        if (uv_poll_init_socket(p->c->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        list_push_back(&p->socks, &s->node);
        curl_multi_assign(p->multi, fd, s);
    }
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    s->idle = false;
    if (events != s->events) {
        uv_poll_start(&s->poll, events, on_poll);
        s->events = events;
    }
    return 0;
}

/* CURLOPT_CLOSESOCKETFUNCTION: curl is done with a connection's socket.
 * Its uv_poll goes first (libuv removes the fd from epoll while it is
 * still open), then the socket. */
static int
on_curl_closesocket(void *userp, curl_socket_t fd)
{
    struct prov *p = userp;
    struct sockctx *s = sock_find(p, fd);

    if (s)
        sock_close(s);
    return close(fd);
}

static void
on_curl_timeout(uv_timer_t *t)
{
    struct prov *p = container_of(t, struct prov, curl_timer);
    int running;

    curl_multi_socket_action(p->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(p);
}

/* curl forbids calling socket_action from here: only (re)arm the timer;
 * 0 ms means "on the next loop iteration". */
static int
on_curl_timer(CURLM *m, long timeout_ms, void *userp)
{
    struct prov *p = userp;

    if (timeout_ms < 0)
        uv_timer_stop(&p->curl_timer);
    else
        uv_timer_start(&p->curl_timer, on_curl_timeout, (uint64_t)timeout_ms,
                       0);
    return 0;
}

/* --- credentials --------------------------------------------------------*/

/* Current APNs JWT, minted if absent or older than jwt_refresh_ms. NULL
 * only if signing fails (key checked at start-up, so "cannot happen"). */
static const char *
apns_jwt(struct prov *p, bool force)
{
    uint64_t now = uv_now(p->c->loop);

    if (!force && p->jwt.len > 0 && now - p->jwt_minted_ms < p->jwt_refresh_ms)
        return p->jwt.data;
    buf_reset(&p->jwt);
    if (push_jwt_es256(p->key, p->key_id, p->team_id, wall_s(), &p->jwt) < 0) {
        log_error("push", "apns: cannot sign provider token key_id=%s",
                  p->key_id);
        return NULL;
    }
    p->jwt_minted_ms = now;
    p->jwt_gen++;
    log_info("push", "apns: minted provider token key_id=%s gen=%u%s",
             p->key_id, p->jwt_gen, force ? " (refused by server)" : "");
    return p->jwt.data;
}

static bool
fcm_token_usable(struct prov *p)
{
    return p->tok_valid && uv_now(p->c->loop) < p->tok_hard_ms;
}

static int
fcm_token_request(struct prov *p)
{
    struct buf jwt;
    int64_t iat = wall_s();
    struct curl_slist *h;

    if (p->tok_easy)
        return 0; /* one request at a time; jobs queue behind it */
    buf_init(&jwt, 16384);
    if (push_jwt_rs256(p->key, p->private_key_id, p->client_email,
                       PUSH_FCM_SCOPE, p->token_aud, iat, iat + 3600,
                       &jwt) < 0) {
        log_error("push", "fcm: cannot sign OAuth assertion for %s",
                  p->client_email);
        buf_fini(&jwt);
        return -EINVAL;
    }
    buf_reset(&p->tok_body);
    buf_append_cstr(&p->tok_body, PUSH_FORM_PREFIX);
    buf_append(&p->tok_body, jwt.data, jwt.len);
    buf_fini(&jwt);
    buf_reset(&p->tok_resp);
    p->tok_easy = curl_easy_init();
    easy_common(p, p->tok_easy, p->token_url, &p->tok_resp, p->timeout_ms);
    curl_easy_setopt(p->tok_easy, CURLOPT_POSTFIELDS, p->tok_body.data);
    curl_easy_setopt(p->tok_easy, CURLOPT_POSTFIELDSIZE,
                     (long)p->tok_body.len);
    h = curl_slist_append(NULL,
                          "content-type: application/x-www-form-urlencoded");
    curl_easy_setopt(p->tok_easy, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(p->tok_easy, CURLOPT_PRIVATE, h);
    if (curl_multi_add_handle(p->multi, p->tok_easy) != CURLM_OK) {
        curl_easy_cleanup(p->tok_easy);
        curl_slist_free_all(h);
        p->tok_easy = NULL;
        return -ENOMEM;
    }
    log_debug("push", "fcm: requesting access token from %s", p->token_url);
    return 0;
}

static void schedule_retry(struct job *j, long retry_after_s);
static void fail_ready(struct prov *p, const char *reason, long status,
                       bool transient);

static void
fcm_token_done(struct prov *p, CURLcode res)
{
    struct curl_slist *h = NULL;
    long status = 0;
    json_t *root = NULL;
    const char *tok = NULL;
    json_int_t ttl_s = 0;
    char reason[128] = "";

    curl_easy_getinfo(p->tok_easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(p->tok_easy, CURLINFO_PRIVATE, (char **)&h);
    curl_easy_cleanup(p->tok_easy);
    curl_slist_free_all(h);
    p->tok_easy = NULL;
    if (res == CURLE_OK && status == 200) {
        root = json_loadb(p->tok_resp.data, p->tok_resp.len, 0, NULL);
        tok = json_string_value(json_object_get(root, "access_token"));
        ttl_s = json_integer_value(json_object_get(root, "expires_in"));
    }
    if (tok && *tok && ttl_s > 0) {
        uint64_t now = uv_now(p->c->loop);
        uint64_t ttl_ms = (uint64_t)ttl_s * 1000;
        /* Stop using it 10% (at most 5 min) before it expires; start a
         * background refresh one such margin earlier. */
        uint64_t margin = ttl_ms / 10 < 300000 ? ttl_ms / 10 : 300000;
        free(p->access_token);
        p->access_token = xstrdup(tok);
        p->tok_valid = true;
        p->tok_gen++;
        p->tok_hard_ms = now + ttl_ms - margin;
        p->tok_soft_ms = now + ttl_ms - 2 * margin;
        json_decref(root);
        log_info("push", "fcm: access token obtained expires_in=%lld gen=%u",
                 (long long)ttl_s, p->tok_gen);
        return; /* check_done pumps the jobs that waited for it */
    }
    json_decref(root);
    if (res != CURLE_OK)
        snprintf(reason, sizeof(reason), "oauth: %s", curl_easy_strerror(res));
    else {
        char r[96];
        push_fcm_reason(p->tok_resp.data, p->tok_resp.len, r, sizeof(r));
        snprintf(reason, sizeof(reason), "oauth: HTTP %ld %s", status, r);
    }
    log_error("push", "fcm: access token request failed: %s url=%s", reason,
              p->token_url);
    if (fcm_token_usable(p))
        return; /* background refresh failed; the old token still works */
    /* Jobs waiting for this token: transient failures go to backoff (each
     * counts as a try), refusals fail them now. */
    bool transient = res != CURLE_OK ? push_curl_classify(res) ==
                                           PUSH_ACT_RETRY
                                     : status == 429 || status >= 500;
    fail_ready(p, reason, status, transient);
}

/* Fail (or, if transient, send to backoff) every job waiting for an FCM
 * token. The list is detached first: callbacks may queue new pushes. */
static void
fail_ready(struct prov *p, const char *reason, long status, bool transient)
{
    struct list_node waiting, *n, *tmp;

    list_init(&waiting);
    if (!list_empty(&p->ready)) {
        waiting.next = p->ready.next;
        waiting.prev = p->ready.prev;
        waiting.next->prev = &waiting;
        waiting.prev->next = &waiting;
        list_init(&p->ready);
    }
    list_for_each_safe(n, tmp, &waiting)
    {
        struct job *j = container_of(n, struct job, node);
        list_remove(&j->node);
        j->attempts++;
        j->http_status = status;
        snprintf(j->reason, sizeof(j->reason), "%s", reason);
        if (transient)
            schedule_retry(j, 0);
        else
            finish(j, PUSH_FAILED);
    }
}

/* --- jobs ---------------------------------------------------------------*/

static void
job_free(struct job *j)
{
    curl_slist_free_all(j->hdrs);
    buf_fini(&j->body);
    buf_fini(&j->resp);
    free(j->url);
    free(j->strs);
    free(j);
}

static void
finish(struct job *j, enum push_status st)
{
    struct prov *p = j->p;
    struct push_result r = {
        .status = st,
        .provider = p->kind,
        .http_status = j->http_status,
        .reason = j->reason,
        .id = j->id,
        .attempts = j->attempts,
        .latency_us = (uv_hrtime() - j->t0_ns) / 1000,
        .write_us = j->write_us,
    };

    if (list_linked(&j->node))
        list_remove(&j->node);
    p->count--;
    if (st == PUSH_DEAD_TOKEN)
        log_info("push", "%s: dead token %.8s... reason=%s",
                 push_provider_name(p->kind), j->m.token, j->reason);
    else if (st == PUSH_FAILED || st == PUSH_RETRY_EXHAUSTED)
        log_warn("push", "%s: push %s call_id=%s status=%ld reason=%s "
                 "attempts=%u",
                 push_provider_name(p->kind), push_status_name(st),
                 j->m.call_id, j->http_status, j->reason, j->attempts);
    j->cb(&r, j->arg);
    job_free(j);
}

static void on_retry_timer(uv_timer_t *t);

/* Run on_retry_timer on the next loop iteration; it re-arms itself for
 * the earliest backoff. */
static void
kick(struct prov *p)
{
    uv_timer_start(&p->retry_timer, on_retry_timer, 0, 0);
}

static uint64_t
backoff_ms(struct push_client *c, unsigned attempts)
{
    uint64_t d = c->backoff_initial_ms;

    for (unsigned i = 1; i < attempts && d < c->backoff_max_ms; i++)
        d *= 2;
    if (d > c->backoff_max_ms)
        d = c->backoff_max_ms;
    /* "Equal jitter": half fixed, half random, so synchronised failures
     * (one 503 for 100 streams) do not come back as one burst. */
    unsigned r;
    if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
        r = (unsigned)rand();
    return d / 2 + r % (d / 2 + 1);
}

static void
schedule_retry(struct job *j, long retry_after_s)
{
    struct prov *p = j->p;
    struct push_client *c = p->c;
    uint64_t now = uv_now(c->loop), delay;

    if (j->attempts >= c->max_attempts) {
        finish(j, PUSH_RETRY_EXHAUSTED);
        return;
    }
    if (retry_after_s > PUSH_RETRY_AFTER_MAX_S) {
        finish(j, PUSH_RETRY_EXHAUSTED);
        return;
    }
    delay = retry_after_s > 0 ? (uint64_t)retry_after_s * 1000
                              : backoff_ms(c, j->attempts);
    if (j->deadline_ms && now + delay >= j->deadline_ms) {
        finish(j, PUSH_RETRY_EXHAUSTED); /* the call stopped ringing */
        return;
    }
    j->due_ms = now + delay;
    list_push_back(&p->backoff, &j->node);
    log_debug("push", "%s: retry call_id=%s in %llu ms after %s",
              push_provider_name(p->kind), j->m.call_id,
              (unsigned long long)delay, j->reason);
    /* Re-arm only if this wake-up is earlier than the armed one. */
    uint64_t armed = uv_timer_get_due_in(&p->retry_timer);
    if (!uv_is_active((uv_handle_t *)&p->retry_timer) || delay < armed)
        uv_timer_start(&p->retry_timer, on_retry_timer, delay, 0);
}

static int
apns_headers(struct prov *p, struct job *j)
{
    char line[512];
    struct curl_slist *h = NULL;

    if (p->key) {
        const char *jwt = apns_jwt(p, false);
        if (jwt == NULL)
            return -EINVAL;
        j->cred_gen = p->jwt_gen;
        struct buf b;
        buf_init(&b, 0);
        buf_printf(&b, "authorization: bearer %s", jwt);
        h = curl_slist_append(NULL, b.data);
        buf_fini(&b);
    }
    snprintf(line, sizeof(line), "apns-topic: %s", j->topic);
    h = curl_slist_append(h, line);
    snprintf(line, sizeof(line), "apns-push-type: %s", j->push_type);
    h = curl_slist_append(h, line);
    h = curl_slist_append(h, "apns-priority: 10");
    if (j->m.expires_at_s > 0) {
        snprintf(line, sizeof(line), "apns-expiration: %lld",
                 (long long)j->m.expires_at_s);
        h = curl_slist_append(h, line);
    }
    snprintf(line, sizeof(line), "apns-collapse-id: %s", j->collapse);
    h = curl_slist_append(h, line);
    snprintf(line, sizeof(line), "apns-id: %s", j->apns_id);
    h = curl_slist_append(h, line);
    h = curl_slist_append(h, "content-type: application/json");
    curl_slist_free_all(j->hdrs);
    j->hdrs = h;
    return 0;
}

static int
fcm_headers(struct prov *p, struct job *j)
{
    struct buf b;
    struct curl_slist *h;

    buf_init(&b, 0);
    buf_printf(&b, "authorization: Bearer %s", p->access_token);
    h = curl_slist_append(NULL, b.data);
    buf_fini(&b);
    h = curl_slist_append(h, "content-type: application/json; charset=UTF-8");
    j->cred_gen = p->tok_gen;
    curl_slist_free_all(j->hdrs);
    j->hdrs = h;
    return 0;
}

/* FCM body of j; android.ttl is what is left of the ring time now. */
static int
fcm_body(struct job *j)
{
    long ttl = -1;

    if (j->m.expires_at_s > 0) {
        ttl = (long)(j->m.expires_at_s - wall_s());
        if (ttl < 0)
            ttl = 0;
    }
    return push_payload_fcm(&j->m, 0, ttl, &j->body);
}

/* A push easy handle: a finished one of p's, or a new one with the options
 * every push shares. Reusing them saves curl's per-handle set-up and
 * buffers (a download and an upload buffer, 80 KB, allocated and freed per
 * push before); curl keeps the options, and launch sets the per-push ones
 * again every time. */
static CURL *
easy_get(struct prov *p)
{
    if (p->n_idle_easy > 0)
        return p->idle_easy[--p->n_idle_easy];
    CURL *e = curl_easy_init();
    easy_common(p, e, p->base_url, NULL, (long)p->timeout_ms);
    return e;
}

/* Give back a handle that is out of the multi. The per-push pointers are
 * cleared (they point into the job, about to be freed). */
static void
easy_put(struct prov *p, CURL *e)
{
    if (p->n_idle_easy >= PUSH_IDLE_EASY || p->c->closing) {
        curl_easy_cleanup(e);
        return;
    }
    curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(e, CURLOPT_PRIVATE, NULL);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
    p->idle_easy[p->n_idle_easy++] = e;
}

/* Hand one HTTP attempt to curl: body (unless push_send built it),
 * headers, easy handle, multi. The job is not on any list; on 0 it is in
 * flight. On error nothing is started and the job is untouched but for
 * j->reason: the caller finishes it (or, in push_send, queues it so the
 * loop does, as callbacks never run inside push_send). curl is not driven
 * here: see drive(). */
static int
launch(struct job *j)
{
    struct prov *p = j->p;
    uint64_t now = uv_now(p->c->loop);
    long timeout = (long)p->timeout_ms;
    int rc;

    if (p->kind == PUSH_APNS) {
        rc = apns_headers(p, j);
        if (rc == 0 && j->body.len == 0)
            rc = push_payload_apns(&j->m, j->voip, 0, &j->body);
    } else {
        rc = fcm_headers(p, j);
        if (rc == 0 && (j->body.len == 0 || j->attempts > 0)) {
            buf_reset(&j->body); /* a retry: the ttl has shrunk */
            rc = fcm_body(j);
        }
    }
    if (rc < 0) {
        snprintf(j->reason, sizeof(j->reason), "cannot build request: %s",
                 push_strerror(rc));
        buf_reset(&j->body);
        return rc;
    }
    /* Never let one attempt outlive the ring time (plus a little, so an
     * answer already on its way is not thrown away). */
    if (j->deadline_ms) {
        long left = (long)(j->deadline_ms > now ? j->deadline_ms - now : 0);
        if (left + 500 < timeout)
            timeout = left + 500;
    }
    buf_reset(&j->resp);
    j->easy = easy_get(p);
    curl_easy_setopt(j->easy, CURLOPT_URL, j->url);
    curl_easy_setopt(j->easy, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(j->easy, CURLOPT_WRITEDATA, &j->resp);
    curl_easy_setopt(j->easy, CURLOPT_POSTFIELDS, j->body.data);
    curl_easy_setopt(j->easy, CURLOPT_POSTFIELDSIZE, (long)j->body.len);
    curl_easy_setopt(j->easy, CURLOPT_HTTPHEADER, j->hdrs);
    curl_easy_setopt(j->easy, CURLOPT_PRIVATE, (char *)j);
    j->errbuf[0] = '\0';
    curl_easy_setopt(j->easy, CURLOPT_ERRORBUFFER, j->errbuf);
    if (curl_multi_add_handle(p->multi, j->easy) != CURLM_OK) {
        easy_put(p, j->easy);
        j->easy = NULL;
        snprintf(j->reason, sizeof(j->reason), "curl_multi_add_handle");
        return -ENOMEM;
    }
    if (j->launch_ns == 0)
        j->launch_ns = uv_hrtime();
    j->attempts++;
    p->n_inflight++;
    list_push_back(&p->inflight, &j->node);
    return 0;
}

/* push_result.write_us, measured on our clock: right after the drive()
 * that took j's first attempt to curl's PRETRANSFER (its request is
 * written by then on an open HTTP/2 connection), j's time since
 * push_send. An upper bound by the few µs drive() spends after the
 * write. Jobs that did not get there in that call (connection still
 * being set up) are timed in job_done instead. */
static void
stamp_written(struct job *j)
{
    curl_off_t pre_us = 0;

    if (j->write_us || !j->easy ||
        curl_easy_getinfo(j->easy, CURLINFO_PRETRANSFER_TIME_T, &pre_us) !=
            CURLE_OK ||
        pre_us <= 0)
        return;
    j->write_us = (uv_hrtime() - j->t0_ns) / 1000;
    if (j->write_us == 0)
        j->write_us = 1;
}

/* Start one HTTP attempt (pump); a failure finishes the job. */
static int
start_attempt(struct job *j)
{
    int rc = launch(j);

    if (rc < 0)
        finish(j, PUSH_FAILED);
    return rc;
}

/* Let curl run the handles just added, now: curl_multi_add_handle only
 * asks (through on_curl_timer) to be woken in 0 ms, and waiting for that
 * uv_timer costs a loop iteration: every other callback of this pass
 * (responses of other pushes, the rest of a queue batch) would run first.
 * Here the request is written before we return (HTTP/2 on an open
 * connection: HEADERS + DATA in this call). Only curl's own callbacks run
 * inside (socket, timer, write); finished transfers wait in curl's message
 * queue for check_done, so no push_done_cb runs from here. Must not be
 * called from a curl callback. */
static void
drive(struct prov *p)
{
    int running;

    curl_multi_socket_action(p->multi, CURL_SOCKET_TIMEOUT, 0, &running);
}

/* Move ready jobs into curl while there is room (and, for FCM, a token),
 * then drive curl once for all of them. Returns true if any job went to
 * curl (finished transfers may then be waiting: check_done loops). */
static bool
pump(struct prov *p)
{
    bool started = false;
    size_t jobs = 0; /* started now: the last ones on p->inflight */

    while (!list_empty(&p->ready) && p->n_inflight < PUSH_MAX_INFLIGHT) {
        if (p->kind == PUSH_FCM) {
            if (!fcm_token_usable(p)) {
                bool asked = p->tok_easy != NULL;
                if (fcm_token_request(p) < 0)
                    fail_ready(p, "oauth: cannot make the token request", 0,
                               false);
                else if (!asked)
                    started = true; /* a new token request is in curl */
                break;
            }
            if (uv_now(p->c->loop) >= p->tok_soft_ms)
                fcm_token_request(p); /* refresh in the background */
        }
        struct job *j = container_of(p->ready.next, struct job, node);
        list_remove(&j->node);
        if (start_attempt(j) == 0) {
            started = true;
            jobs++;
        }
    }
    if (started) {
        drive(p);
        struct list_node *n = p->inflight.prev;
        for (; jobs > 0 && n != &p->inflight; jobs--, n = n->prev)
            stamp_written(container_of(n, struct job, node));
    }
    return started;
}

static void
on_retry_timer(uv_timer_t *t)
{
    struct prov *p = container_of(t, struct prov, retry_timer);
    uint64_t now = uv_now(p->c->loop), next = UINT64_MAX;
    struct list_node *n, *tmp;

    list_for_each_safe(n, tmp, &p->backoff)
    {
        struct job *j = container_of(n, struct job, node);
        if (j->due_ms <= now) {
            list_remove(&j->node);
            list_push_back(&p->ready, &j->node);
        } else if (j->due_ms < next) {
            next = j->due_ms;
        }
    }
    check_done(p); /* pump, and read what push_send's drive() finished */
    if (next != UINT64_MAX &&
        (!uv_is_active((uv_handle_t *)&p->retry_timer) ||
         next - now < uv_timer_get_due_in(&p->retry_timer)))
        uv_timer_start(&p->retry_timer, on_retry_timer, next - now, 0);
}

static void
job_done(struct prov *p, struct job *j, CURLcode res)
{
    long status = 0;
    curl_off_t retry_after = 0, pre_us = 0;
    enum push_action act;

    list_remove(&j->node);
    p->n_inflight--;
    curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(j->easy, CURLINFO_RETRY_AFTER, &retry_after);
    if (j->write_us == 0 && j->launch_ns && j->attempts == 1 &&
        curl_easy_getinfo(j->easy, CURLINFO_PRETRANSFER_TIME_T, &pre_us) ==
            CURLE_OK &&
        pre_us > 0) {
        /* Not written in the drive() that launched it (stamp_written):
         * push_send -> first attempt handed to curl, plus curl's own time
         * from its start to PRETRANSFER. (push_send -> now minus
         * TOTAL_TIME, used before, counted the provider's round trip in:
         * curl's total stops at its last progress update.) */
        j->write_us = (j->launch_ns - j->t0_ns) / 1000 + (uint64_t)pre_us;
    }
    easy_put(p, j->easy);
    j->easy = NULL;
    j->http_status = status;
    if (res != CURLE_OK && p->cert_file &&
        push_tls_cert_refused(j->errbuf, j->reason, sizeof(j->reason))) {
        /* APNs ended the handshake with an alert about our certificate
         * (expired, revoked, not Apple's): retrying cannot help. */
        act = PUSH_ACT_FAIL;
        j->http_status = 0;
        log_error("push", "apns: APNs refused the client certificate %s: "
                  "%s", p->cert_file, j->errbuf);
    } else if (res != CURLE_OK) {
        act = push_curl_classify(res);
        snprintf(j->reason, sizeof(j->reason), "%s",
                 res == CURLE_OPERATION_TIMEDOUT ? "timeout"
                                                 : curl_easy_strerror(res));
        j->http_status = 0;
    } else if (p->kind == PUSH_APNS) {
        push_apns_reason(j->resp.data, j->resp.len, j->reason,
                         sizeof(j->reason));
        act = push_apns_classify(status, j->reason);
    } else {
        push_fcm_reason(j->resp.data, j->resp.len, j->reason,
                        sizeof(j->reason));
        act = push_fcm_classify(status, j->reason);
        if (act == PUSH_ACT_DONE) {
            json_t *root = json_loadb(j->resp.data, j->resp.len, 0, NULL);
            const char *name = json_string_value(json_object_get(root, "name"));
            if (name)
                snprintf(j->id, sizeof(j->id), "%s", name);
            json_decref(root);
        }
    }
    if (act != PUSH_ACT_DONE && j->reason[0] == '\0')
        snprintf(j->reason, sizeof(j->reason), "HTTP %ld", status);
    switch (act) {
    case PUSH_ACT_DONE:
        j->reason[0] = '\0';
        finish(j, PUSH_DELIVERED);
        return;
    case PUSH_ACT_DEAD:
        /* Never remove a device because its VoIP token is not one for
         * the bundle topic: that says nothing about its VoIP use. (410
         * Unregistered still counts: an uninstalled app's tokens all
         * go.) */
        finish(j, j->voip_stripped &&
                          strcmp(j->reason, "DeviceTokenNotForTopic") == 0
                      ? PUSH_FAILED
                      : PUSH_DEAD_TOKEN);
        return;
    case PUSH_ACT_RETRY:
        schedule_retry(j, (long)retry_after);
        return;
    case PUSH_ACT_FAIL:
        finish(j, PUSH_FAILED);
        return;
    case PUSH_ACT_REAUTH:
        break;
    }
    if (j->auth_retried) {
        log_error("push", "%s: credentials refused twice: %s (check key, "
                  "key id, team / service account)",
                  push_provider_name(p->kind), j->reason);
        finish(j, PUSH_FAILED);
        return;
    }
    j->auth_retried = true;
    if (p->kind == PUSH_APNS) {
        if (j->cred_gen == p->jwt_gen)
            apns_jwt(p, true); /* nobody re-minted since this one */
    } else if (j->cred_gen == p->tok_gen) {
        p->tok_valid = false; /* refused: fetch a new one */
        log_warn("push", "fcm: access token refused (%s), refreshing",
                 j->reason);
    }
    list_push_front(&p->ready, &j->node);
    kick(p);
}

/* Complete finished transfers, then start ready jobs; starting drives
 * curl, which may finish more (a refused stream): loop until quiet. Each
 * round takes jobs off the ready list, so it ends. */
static void
check_done(struct prov *p)
{
    CURLMsg *m;
    int left;

    do {
        while ((m = curl_multi_info_read(p->multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE)
                continue;
            CURL *e = m->easy_handle;
            CURLcode res = m->data.result;
            curl_multi_remove_handle(p->multi, e);
            if (e == p->tok_easy) {
                fcm_token_done(p, res);
            } else {
                struct job *j = NULL;
                curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&j);
                job_done(p, j, res);
            }
        }
    } while (pump(p));
}

/* --- send ---------------------------------------------------------------*/

/* RFC 8599 §10: APNs pn-param = "<TeamID>.<Topic>". Returns the topic part
 * (borrowed); a param without a team prefix is taken whole. */
static const char *
apns_topic_of(const struct prov *p, const char *param)
{
    const char *dot = strchr(param, '.');
    size_t tl;

    if (dot == NULL)
        return param;
    tl = (size_t)(dot - param);
    if (p->team_id && strlen(p->team_id) == tl &&
        memcmp(param, p->team_id, tl) == 0)
        return dot + 1;
    if (tl == 10) { /* Apple team ids: 10 upper-case letters and digits */
        bool team = true;
        for (size_t i = 0; i < tl; i++)
            if (!((param[i] >= 'A' && param[i] <= 'Z') ||
                  (param[i] >= '0' && param[i] <= '9')))
                team = false;
        if (team)
            return dot + 1;
    }
    return param;
}

static bool
ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);

    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

/* Can j go to curl right now, inside push_send? Only when nothing waits
 * before it (FIFO), there is room, and (FCM) a fresh token exists. */
static bool
can_launch_now(const struct prov *p)
{
    if (!list_empty(&p->ready) || p->n_inflight >= PUSH_MAX_INFLIGHT)
        return false;
    if (p->kind == PUSH_FCM)
        return p->tok_valid && uv_now(p->c->loop) < p->tok_soft_ms;
    return true;
}

int
push_send(struct push_client *c, const struct push_msg *msg,
          push_done_cb *cb, void *arg)
{
    struct prov *p;
    struct job *j;
    const char *topic = NULL;
    int rc;

    if (c->closing)
        return -ECANCELED;
    if ((unsigned)msg->provider > PUSH_FCM || cb == NULL)
        return -EINVAL;
    p = &c->prov[msg->provider];
    if (!p->enabled)
        return -ENOTSUP;
    if (!token_ok(msg->token, p->kind == PUSH_APNS))
        return -EINVAL;
    if (p->kind == PUSH_APNS) {
        topic = msg->param && *msg->param ? apns_topic_of(p, msg->param)
                                          : p->topic;
        if (topic == NULL || *topic == '\0')
            return -EINVAL;
    }
    if (msg->type == PUSH_MESSAGE ? msg->message_id == NULL
                                  : msg->call_id == NULL)
        return -EINVAL;
    if (msg->from == NULL || msg->to == NULL)
        return -EINVAL; /* required (the payload checks their content) */

    j = xcalloc(1, sizeof(*j));
    j->p = p;
    j->cb = cb;
    j->arg = arg;
    j->t0_ns = uv_hrtime();
    j->m = *msg;
    if (j->m.sent_at_s == 0)
        j->m.sent_at_s = wall_s();
    /* One allocation for every string the job keeps. */
    bool is_msg = msg->type == PUSH_MESSAGE;
    size_t pv_len = is_msg && msg->preview ? msg->preview_len : 0;
    if (pv_len > PUSH_PREVIEW_MAX_IN)
        pv_len = PUSH_PREVIEW_MAX_IN + 1; /* the payload sees it was cut */
    /* A message push has no call: its id stands in call_id (logs). */
    const char *src[] = { msg->token,
                          is_msg ? msg->message_id : msg->call_id,
                          msg->from,
                          msg->from_name ? msg->from_name : "",
                          msg->to,
                          topic ? topic : "",
                          is_msg ? msg->message_id : "",
                          is_msg && msg->content_type ? msg->content_type
                                                      : "" };
    const char **dst[] = { &j->m.token,   &j->m.call_id,  &j->m.from,
                           &j->m.from_name, &j->m.to,     &j->topic,
                           &j->m.message_id, &j->m.content_type };
    size_t nstr = sizeof(src) / sizeof(src[0]);
    size_t total = pv_len + 1;
    for (size_t i = 0; i < nstr; i++)
        total += strlen(src[i]) + 1;
    j->strs = xmalloc(total);
    char *w = j->strs;
    for (size_t i = 0; i < nstr; i++) {
        size_t n = strlen(src[i]) + 1;
        memcpy(w, src[i], n);
        *dst[i] = w;
        w += n;
    }
    /* The preview may hold any byte (NUL too): copied by length. */
    if (is_msg && msg->preview) {
        memcpy(w, msg->preview, pv_len);
        w[pv_len] = '\0';
        j->m.preview = w;
        j->m.preview_len = pv_len;
    } else {
        j->m.preview = NULL;
        j->m.preview_len = 0;
    }
    j->m.param = NULL;
    buf_init(&j->body, 0);
    buf_init(&j->resp, PUSH_RESP_CAP);
    if (p->kind == PUSH_APNS) {
        /* A VoIP push only for a ringing call: iOS kills apps that get a
         * VoIP push without reporting a call, so missed/answered go as
         * alerts to the bundle topic. */
        size_t tl = strlen(j->topic);
        j->voip = msg->type == PUSH_CALL && ends_with(j->topic, ".voip");
        if (!j->voip && ends_with(j->topic, ".voip")) {
            ((char *)j->topic)[tl - 5] = '\0';
            j->voip_stripped = true;
        }
        j->push_type = j->voip ? "voip" : "alert";
        rc = push_payload_apns(&j->m, j->voip, 0, &j->body);
    } else {
        rc = fcm_body(j);
    }
    /* The body is built once, here: the caller hears -EMSGSIZE/-EINVAL
     * now, not through the callback, and the first attempt sends it as
     * is (retries rebuild only what changes: FCM's ttl). */
    if (rc == 0 && p->count >= c->queue_max)
        rc = -ENOBUFS;
    if (rc < 0) {
        job_free(j);
        return rc;
    }
    if (is_msg)
        push_message_collapse_id(j->m.from, j->m.to, j->collapse);
    else
        push_collapse_id(j->m.call_id, j->collapse);
    struct buf u;
    buf_init(&u, 0);
    if (p->kind == PUSH_APNS) {
        make_uuid(c, j->apns_id);
        snprintf(j->id, sizeof(j->id), "%s", j->apns_id);
        buf_printf(&u, "%s/3/device/%s", p->base_url, j->m.token);
    } else {
        buf_printf(&u, "%s/v1/projects/%s/messages:send", p->base_url,
                   msg->param && *msg->param ? msg->param : p->project);
    }
    j->url = u.data;
    if (msg->expires_at_s > 0) {
        int64_t left = msg->expires_at_s * 1000 - wall_ms();
        j->deadline_ms = uv_now(c->loop) + (uint64_t)(left > 0 ? left : 0);
    }
    p->count++;
    /* Fast path: write the request during this call (launch + drive)
     * rather than on a later pass of the loop. The retry timer is still
     * kicked so that check_done reads a transfer drive() may have
     * finished (and runs its callback from the loop, not from here). A
     * launch that fails leaves the job ready: pump retries it from the
     * loop and finishes it there if it fails again. */
    if (can_launch_now(p)) {
        if (launch(j) == 0) {
            drive(p);
            stamp_written(j);
        } else
            list_push_back(&p->ready, &j->node);
    } else {
        list_push_back(&p->ready, &j->node);
    }
    kick(p);
    return 0;
}

unsigned
push_pending(const struct push_client *c, enum push_provider p)
{
    return (unsigned)p <= PUSH_FCM ? c->prov[p].count : 0;
}

/* --- setup and teardown -------------------------------------------------*/

static void
prov_release(struct prov *p)
{
    EVP_PKEY_free(p->key);
    free(p->base_url);
    free(p->ca_file);
    free(p->key_id);
    free(p->team_id);
    free(p->topic);
    free(p->cert_file);
    free(p->cert_key_file);
    free(p->project);
    free(p->client_email);
    free(p->private_key_id);
    free(p->token_aud);
    free(p->token_url);
    free(p->access_token);
    buf_fini(&p->jwt);
    buf_fini(&p->tok_body);
    buf_fini(&p->tok_resp);
}

static void
client_release(struct push_client *c)
{
    prov_release(&c->prov[0]);
    prov_release(&c->prov[1]);
    free(c);
    curl_global_cleanup();
}

static void
on_timer_closed(uv_handle_t *h)
{
    struct push_client *c = h->data;

    if (--c->open_handles == 0)
        client_release(c);
}

static int
file_readable(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");

    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -errno;
    }
    fclose(f);
    return 0;
}

/* Certificate auth: the certificate is checked now (readable, key
 * matches, valid, has a UID) so a broken one stops pushpbx at start like
 * a bad .p8 does, instead of failing every call in the TLS handshake. Its
 * UID is the default topic; a configured topic must be one of its. */
static int
apns_cert_setup(struct prov *p, const struct push_apns_conf *a, char *err,
                size_t errlen)
{
    struct push_apns_cert ci;
    char facts[512];
    long days;

    if (push_apns_cert_load(a->cert_file, a->cert_key_file, wall_s(), &ci,
                            err, errlen) < 0)
        return -EINVAL;
    if (p->topic && !push_apns_cert_topic_ok(&ci, p->topic)) {
        snprintf(err, errlen, "%s: [apns] topic %s is not a topic of this "
                 "certificate (%s, %s.voip, %s.complication)", a->cert_file,
                 p->topic, ci.uid, ci.uid, ci.uid);
        return -EINVAL;
    }
    if (p->topic == NULL)
        p->topic = xstrdup(ci.uid);
    p->cert_file = xstrdup(a->cert_file);
    p->cert_key_file = xstrdup(a->cert_key_file);
    push_apns_cert_describe(&ci, wall_s(), facts, sizeof(facts));
    days = push_apns_cert_days_left(&ci, wall_s());
    if (days < 30)
        log_warn("push", "apns: certificate %s expires in %ld days: %s",
                 a->cert_file, days, facts);
    else
        log_info("push", "apns: certificate %s: %s", a->cert_file, facts);
    return 0;
}

static int
apns_setup(struct prov *p, const struct push_apns_conf *a, char *err,
           size_t errlen)
{
    const char *url = a->base_url && *a->base_url ? a->base_url
                      : a->sandbox               ? PUSH_APNS_SANDBOX_URL
                                                 : PUSH_APNS_PRODUCTION_URL;

    p->base_url = dup_url(url);
    p->ca_file = dup_or_null(a->ca_file);
    p->topic = dup_or_null(a->topic);
    p->timeout_ms = a->timeout_ms ? a->timeout_ms : 10000;
    p->jwt_refresh_ms = (uint64_t)(a->jwt_refresh_s ? a->jwt_refresh_s : 3000)
                        * 1000;
    buf_init(&p->jwt, 4096);
    if (a->key_file && *a->key_file) {
        if (!a->key_id || !*a->key_id || !a->team_id || !*a->team_id) {
            snprintf(err, errlen, "%s: apns token auth needs key_id and "
                     "team_id", a->key_file);
            return -EINVAL;
        }
        p->key_id = xstrdup(a->key_id);
        p->team_id = xstrdup(a->team_id);
        p->key = jose_key_load_file(a->key_file, true, err, errlen);
        if (p->key == NULL)
            return -EINVAL;
        if (EVP_PKEY_get_base_id(p->key) != EVP_PKEY_EC ||
            EVP_PKEY_get_bits(p->key) != 256) {
            snprintf(err, errlen, "%s: not an EC P-256 key (.p8 from "
                     "Apple expected)", a->key_file);
            return -EINVAL;
        }
        /* Prove now that signing works, rather than at the first call. */
        if (push_jwt_es256(p->key, p->key_id, p->team_id, wall_s(),
                           &p->jwt) < 0) {
            snprintf(err, errlen, "%s: cannot sign with this key",
                     a->key_file);
            return -EINVAL;
        }
        buf_reset(&p->jwt); /* minted for real on first use */
    } else if (a->cert_file && *a->cert_file) {
        if (!a->cert_key_file || !*a->cert_key_file) {
            snprintf(err, errlen, "%s: apns certificate auth needs "
                     "cert_key_file", a->cert_file);
            return -EINVAL;
        }
        if (apns_cert_setup(p, a, err, errlen) < 0)
            return -EINVAL;
    } else {
        snprintf(err, errlen, "apns: set key_file, key_id and team_id (token "
                 "auth) or cert_file and cert_key_file");
        return -EINVAL;
    }
    if (p->ca_file && file_readable(p->ca_file, err, errlen) < 0)
        return -EINVAL;
    return 0;
}

static const char *
json_str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s && *s ? s : NULL;
}

static int
fcm_setup(struct prov *p, const struct push_fcm_conf *f, char *err,
          size_t errlen)
{
    json_error_t je;
    json_t *sa;
    const char *file = f->service_account_file;
    const char *need[] = { "project_id", "client_email", "private_key",
                           "token_uri" };
    const char *pk;
    int rc = -EINVAL;

    p->base_url = dup_url(f->base_url && *f->base_url ? f->base_url
                                                      : PUSH_FCM_DEFAULT_URL);
    p->ca_file = dup_or_null(f->ca_file);
    p->timeout_ms = f->timeout_ms ? f->timeout_ms : 10000;
    buf_init(&p->tok_body, 0);
    buf_init(&p->tok_resp, PUSH_RESP_CAP);
    if (file == NULL || *file == '\0') {
        snprintf(err, errlen, "fcm: service_account_file not set");
        return -EINVAL;
    }
    sa = json_load_file(file, 0, &je);
    if (sa == NULL) {
        snprintf(err, errlen, "%s:%d: %s", file, je.line, je.text);
        return -EINVAL;
    }
    for (size_t i = 0; i < 4; i++) {
        if (json_str(sa, need[i]) == NULL) {
            snprintf(err, errlen, "%s: missing \"%s\" (not a service-account"
                     " key file?)", file, need[i]);
            goto out;
        }
    }
    pk = json_str(sa, "private_key");
    p->key = jose_key_load_pem(pk, strlen(pk), true);
    if (p->key == NULL || EVP_PKEY_get_base_id(p->key) != EVP_PKEY_RSA) {
        snprintf(err, errlen, "%s: private_key is not an RSA PEM key", file);
        goto out;
    }
    p->project = xstrdup(json_str(sa, "project_id"));
    p->client_email = xstrdup(json_str(sa, "client_email"));
    p->private_key_id = dup_or_null(json_str(sa, "private_key_id"));
    p->token_aud = xstrdup(json_str(sa, "token_uri"));
    p->token_url = xstrdup(f->token_uri && *f->token_uri ? f->token_uri
                                                         : p->token_aud);
    if (p->ca_file && file_readable(p->ca_file, err, errlen) < 0)
        goto out;
    rc = 0;
out:
    json_decref(sa);
    return rc;
}

static int
prov_start(struct push_client *c, struct prov *p)
{
    p->multi = curl_multi_init();
    if (p->multi == NULL)
        return -ENOMEM;
    p->verbose = getenv("PUSHPBX_CURL_VERBOSE") != NULL;
    curl_multi_setopt(p->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(p->multi, CURLMOPT_SOCKETDATA, p);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERDATA, p);
    curl_multi_setopt(p->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    curl_multi_setopt(p->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 1L);
    curl_multi_setopt(p->multi, CURLMOPT_MAX_CONCURRENT_STREAMS,
                      (long)PUSH_MAX_INFLIGHT);
    uv_timer_init(c->loop, &p->curl_timer);
    uv_timer_init(c->loop, &p->retry_timer);
    p->curl_timer.data = c;
    p->retry_timer.data = c;
    c->open_handles += 2;
    return 0;
}

struct push_client *
push_client_new(uv_loop_t *loop, const struct push_conf *conf, char *err,
                size_t errlen)
{
    struct push_client *c;
    int rc = 0;

    if (errlen)
        err[0] = '\0';
    curl_global_init(CURL_GLOBAL_DEFAULT);
    c = xcalloc(1, sizeof(*c));
    c->loop = loop;
    c->queue_max = conf->queue_max ? conf->queue_max : 4096;
    c->max_attempts = conf->max_attempts ? conf->max_attempts : 6;
    c->backoff_initial_ms =
        conf->backoff_initial_ms ? conf->backoff_initial_ms : 250;
    c->backoff_max_ms = conf->backoff_max_ms ? conf->backoff_max_ms : 8000;
    if (c->backoff_max_ms < c->backoff_initial_ms)
        c->backoff_max_ms = c->backoff_initial_ms;
    for (int i = 0; i < 2; i++) {
        struct prov *p = &c->prov[i];
        p->c = c;
        p->kind = (enum push_provider)i;
        list_init(&p->ready);
        list_init(&p->inflight);
        list_init(&p->backoff);
        list_init(&p->socks);
    }
    if (conf->apns.enabled) {
        rc = apns_setup(&c->prov[PUSH_APNS], &conf->apns, err, errlen);
        c->prov[PUSH_APNS].enabled = rc == 0;
    }
    if (rc == 0 && conf->fcm.enabled) {
        rc = fcm_setup(&c->prov[PUSH_FCM], &conf->fcm, err, errlen);
        c->prov[PUSH_FCM].enabled = rc == 0;
    }
    for (int i = 0; rc == 0 && i < 2; i++)
        if (c->prov[i].enabled)
            rc = prov_start(c, &c->prov[i]);
    if (rc < 0) {
        if (err[0] == '\0')
            snprintf(err, errlen, "push: %s", strerror(-rc));
        c->prov[0].enabled = c->prov[1].enabled = false;
        if (c->open_handles == 0) {
            client_release(c);
            return NULL;
        }
        push_client_free(c); /* closes what prov_start opened */
        return NULL;
    }
    return c;
}

static void
cancel_list(struct prov *p, struct list_node *head)
{
    struct list_node *n, *tmp;

    list_for_each_safe(n, tmp, head)
    {
        struct job *j = container_of(n, struct job, node);
        if (j->easy) {
            curl_multi_remove_handle(p->multi, j->easy);
            easy_put(p, j->easy);
            j->easy = NULL;
            p->n_inflight--;
        }
        snprintf(j->reason, sizeof(j->reason), "cancelled");
        finish(j, PUSH_CANCELLED);
    }
}

void
push_client_free(struct push_client *c)
{
    struct list_node *n, *tmp;

    if (c == NULL || c->closing)
        return;
    c->closing = true;
    for (int i = 0; i < 2; i++) {
        struct prov *p = &c->prov[i];
        if (p->multi == NULL)
            continue;
        cancel_list(p, &p->inflight);
        cancel_list(p, &p->backoff);
        cancel_list(p, &p->ready);
        if (p->tok_easy) {
            struct curl_slist *h = NULL;
            curl_easy_getinfo(p->tok_easy, CURLINFO_PRIVATE, (char **)&h);
            curl_multi_remove_handle(p->multi, p->tok_easy);
            curl_easy_cleanup(p->tok_easy);
            curl_slist_free_all(h);
            p->tok_easy = NULL;
        }
        /* Stop watching the sockets while their fds are still open, then
         * let curl close the connections without calling back into us. */
        list_for_each_safe(n, tmp, &p->socks)
        {
            sock_close(container_of(n, struct sockctx, node));
        }
        curl_multi_setopt(p->multi, CURLMOPT_SOCKETFUNCTION, NULL);
        curl_multi_setopt(p->multi, CURLMOPT_TIMERFUNCTION, NULL);
        curl_multi_cleanup(p->multi);
        p->multi = NULL;
        while (p->n_idle_easy > 0)
            curl_easy_cleanup(p->idle_easy[--p->n_idle_easy]);
        uv_close((uv_handle_t *)&p->curl_timer, on_timer_closed);
        uv_close((uv_handle_t *)&p->retry_timer, on_timer_closed);
    }
    if (c->open_handles == 0)
        client_release(c);
}
