/*
 * admin/admin: the HTTP server (libmicrohttpd, one internal thread): start
 * and stop, the API token, the request guard and job-thread wiring, the
 * reply helpers every route uses, and the dispatcher that hands each URL
 * to its route family; see admin.h for the contract and docs/admin.md for
 * every route.
 *
 * One file per route family, as tmux keeps one per command:
 * admin_ext.c (extensions), admin_reg.c (registrations), admin_push.c
 * (push devices, test push, push check), admin_prov.c (provisioning links
 * and their table), admin_metrics.c (/metrics, wake latency),
 * admin_msgs.c (stored messages), admin_backup.c (backup), admin_status.c
 * (/healthz, /api/status). The provider lists (calls, media, wakeups,
 * pushes, devices) are one line each in route_api below.
 *
 * The MHD thread handles one request at a time (internal polling thread,
 * no thread per connection), so the admin's own state (the provisioning
 * table, counters) needs no lock, and a check-then-act such as "409 if the
 * extension exists, else create" cannot race with another admin request.
 * It can race with nothing else: only the admin creates extensions while
 * the daemon runs.
 *
 * Nothing slow runs on that thread: the test push and the push check (a
 * real exchange with APNs/FCM) run on job threads while their connection
 * is suspended (admin_avail.c), and they touch only the thread-safe
 * provider callbacks, never the admin's own state. Connection limits and
 * the request guard keep slow clients from holding every slot.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "admin/admin.h"
#include "admin/admin_int.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/xmalloc.h"
#include "registrar/reg.h"

/* Job threads for test pushes and checks, and how many may wait or run at
 * once (more get 503): two, so a check can run beside a test push that
 * waits for a provider that does not answer. */
#define ADMIN_JOB_THREADS 2u
#define ADMIN_JOBS_MAX 8u

static char *
dup_or_null(const char *s)
{
    return s && s[0] ? xstrdup(s) : NULL;
}

int64_t
admin_now_s(void)
{
    return (int64_t)time(NULL);
}

/* ---- responses --------------------------------------------------------- */

enum MHD_Result
admin_send_raw(struct MHD_Connection *c, unsigned status, const char *type,
               void *data, size_t len, enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, data, mode);
    enum MHD_Result ret;

    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(r, "WWW-Authenticate",
                                "Bearer realm=\"pushpbx\"");
    ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Send j (stolen) as the response body. */
enum MHD_Result
admin_send_json(struct MHD_Connection *c, unsigned status, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);

    json_decref(j);
    if (!s)
        return MHD_NO;
    return admin_send_raw(c, status, "application/json", s, strlen(s),
                          MHD_RESPMEM_MUST_FREE);
}

json_t *
admin_error_json(unsigned status, const char *reason, const char *field)
{
    json_t *j = json_pack("{s:s, s:i}", "error", reason, "status", status);

    if (field)
        json_object_set_new(j, "field", json_string(field));
    return j;
}

enum MHD_Result
admin_send_error(struct MHD_Connection *c, unsigned status, const char *reason,
                 const char *field)
{
    return admin_send_json(c, status, admin_error_json(status, reason, field));
}

enum MHD_Result
admin_send_empty(struct MHD_Connection *c, unsigned status)
{
    return admin_send_raw(c, status, "application/json", (void *)"", 0,
                          MHD_RESPMEM_PERSISTENT);
}

/* ---- provider lists (calls, media, wakeups, pushes, devices) ---------- */

/* {"available": bool, "items": [...]} from an optional provider. */
json_t *
admin_provider_list(struct admin *a, admin_list_fn *fn, bool redact)
{
    json_t *items = json_array();
    bool ok = fn != NULL;

    if (fn && fn(a->src.arg, items) < 0) {
        json_array_clear(items);
        ok = false;
    }
    if (redact) {
        size_t i;
        json_t *d;
        json_array_foreach(items, i, d) admin_push_redact(d);
    }
    return json_pack("{s:b, s:o}", "available", ok, "items", items);
}

/* ---- routing ----------------------------------------------------------- */

#define MAX_SEGS 6

/* Split "/api/extensions/100/prov" into segments (copied into buf). */
static size_t
split_url(const char *url, char *buf, size_t buflen, char **seg)
{
    size_t n = 0;

    snprintf(buf, buflen, "%s", url);
    for (char *p = buf; *p && n < MAX_SEGS + 1;) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        seg[n++] = p;
        char *slash = strchr(p, '/');
        if (!slash)
            break;
        *slash = '\0';
        p = slash + 1;
    }
    return n;
}

bool
admin_is_method(const char *method, const char *m)
{
    return strcmp(method, m) == 0;
}

static enum MHD_Result
route_api(struct admin *a, struct MHD_Connection *c, const char *method,
          struct admin_req *rq, char **seg, size_t n)
{
    if (n == 2 && strcmp(seg[1], "backup") == 0) {
        /* Whatever the method: there is no backup here to take. */
        if (a->db_postgresql)
            return admin_send_error(c, MHD_HTTP_NOT_IMPLEMENTED,
                                    ADMIN_BACKUP_PG_ERROR, NULL);
        if (!admin_is_method(method, "GET"))
            return admin_send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED,
                                    "method not allowed", NULL);
        return admin_route_backup(a, c);
    }
    if (n == 2 && strcmp(seg[1], "extensions") == 0)
        return admin_route_extensions(a, c, method, rq);
    if (n >= 3 && strcmp(seg[1], "extensions") == 0)
        return admin_route_ext(a, c, method, rq, seg, n);
    if (n == 3 && strcmp(seg[1], "push") == 0 && strcmp(seg[2], "check") == 0)
        return admin_route_push_check(a, c, method, rq);
    if (n == 2 && !admin_is_method(method, "GET"))
        return admin_send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED,
                                "method not allowed", NULL);
    if (n == 2 && strcmp(seg[1], "registrations") == 0)
        return admin_route_registrations(a, c);
    if (n == 2 && strcmp(seg[1], "messages") == 0)
        return admin_send_json(c, MHD_HTTP_OK,
                               admin_messages_json(reg_messages(a->reg)));
    if (n == 2 && strcmp(seg[1], "calls") == 0)
        return admin_send_json(
            c, MHD_HTTP_OK, admin_provider_list(a, a->src.list_calls, false));
    if (n == 2 && strcmp(seg[1], "nodes") == 0) /* admin_nodes.c */
        return admin_send_json(
            c, MHD_HTTP_OK, admin_nodes_json(a->src.list_nodes, a->src.arg));
    if (n == 2 && strcmp(seg[1], "media") == 0)
        return admin_send_json(
            c, MHD_HTTP_OK, admin_provider_list(a, a->src.list_media, false));
    if (n == 2 && strcmp(seg[1], "pushes") == 0)
        return admin_send_json(
            c, MHD_HTTP_OK, admin_provider_list(a, a->src.list_pushes, true));
    if (n == 2 && strcmp(seg[1], "wakeups") == 0)
        return admin_send_json(
            c, MHD_HTTP_OK, admin_provider_list(a, a->src.list_wakeups, false));
    if (n == 2 && strcmp(seg[1], "devices") == 0)
        return admin_send_json(
            c, MHD_HTTP_OK, admin_provider_list(a, a->src.list_devices, true));
    if (n == 3 && strcmp(seg[1], "wake") == 0 &&
        strcmp(seg[2], "latency") == 0 && admin_is_method(method, "GET"))
        return admin_route_wake_latency(a, c);
    if (n == 3 && strcmp(seg[1], "media") == 0 &&
        strcmp(seg[2], "latency") == 0 && admin_is_method(method, "GET"))
        return admin_send_json(
            c, MHD_HTTP_OK,
            admin_media_latency_json(a->src.media_latency, a->src.arg));
    if (n == 2 && strcmp(seg[1], "status") == 0)
        return admin_route_status(a, c);
    return admin_send_error(c, MHD_HTTP_NOT_FOUND, "no such route", NULL);
}

static enum MHD_Result
dispatch(struct admin *a, struct MHD_Connection *c, const char *url,
         const char *method, struct admin_req *rq)
{
    char copy[512], *seg[MAX_SEGS + 1];
    size_t n;

    a->requests++;
    if (strlen(url) >= sizeof(copy))
        return admin_send_error(c, MHD_HTTP_URI_TOO_LONG, "URL too long", NULL);
    n = split_url(url, copy, sizeof(copy), seg);
    if (n > MAX_SEGS)
        return admin_send_error(c, MHD_HTTP_NOT_FOUND, "no such route", NULL);

    /* Public: the page's static files and provisioning links. */
    if (admin_is_method(method, "GET") || admin_is_method(method, "HEAD")) {
        const char *path = n == 0 ? "/index.html" : url;
        for (size_t i = 0; i < admin_asset_count; i++)
            if (strcmp(admin_assets[i].path, path) == 0)
                return admin_send_raw(c, MHD_HTTP_OK, admin_assets[i].type,
                                      (void *)admin_assets[i].data,
                                      admin_assets[i].len,
                                      MHD_RESPMEM_PERSISTENT);
        if (n == 2 && strcmp(seg[0], "prov") == 0)
            return admin_route_prov(a, c, seg[1]);
        if (n == 1 && strcmp(seg[0], "healthz") == 0)
            return admin_route_healthz(a, c);
    }

    const char *auth =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!admin_bearer_ok(auth, a->token)) {
        a->unauthorized++;
        return admin_send_error(c, MHD_HTTP_UNAUTHORIZED,
                                auth ? "bad token" : "missing bearer token",
                                NULL);
    }
    if (rq->too_big)
        return admin_send_error(c, MHD_HTTP_CONTENT_TOO_LARGE,
                                "request body too large", NULL);
    if (n == 1 && strcmp(seg[0], "metrics") == 0 &&
        admin_is_method(method, "GET"))
        return admin_route_metrics(a, c);
    if (n >= 2 && strcmp(seg[0], "api") == 0)
        return route_api(a, c, method, rq, seg, n);
    return admin_send_error(c, MHD_HTTP_NOT_FOUND, "no such route", NULL);
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *c, const char *url,
           const char *method, const char *version, const char *upload,
           size_t *upload_size, void **con_cls)
{
    struct admin *a = cls;
    struct admin_req *rq = *con_cls;

    if (!rq) {
        rq = xcalloc(1, sizeof(*rq));
        buf_init(&rq->body, a->cfg->max_body);
        *con_cls = rq;
        /* Refuse a declared oversize body before reading it. */
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl) {
            char *end;
            unsigned long long v = strtoull(cl, &end, 10);
            if (*end == '\0' && v > a->cfg->max_body) {
                a->requests++;
                rq->answered = true;
                admin_guard_mark(a->guard, c, true);
                return admin_send_error(c, MHD_HTTP_CONTENT_TOO_LARGE,
                                        "request body too large", NULL);
            }
        }
        return MHD_YES;
    }
    if (rq->job) {
        /* Resumed: the job thread is done with it. */
        unsigned st;
        json_t *body;
        if (!admin_job_take(a->jobs, rq->job, &st, &body))
            return MHD_YES; /* not done: cannot happen while suspended */
        admin_job_free(rq->job);
        rq->job = NULL;
        return body ? admin_send_json(c, st, body) : admin_send_empty(c, st);
    }
    if (*upload_size) {
        if (!rq->too_big && buf_append(&rq->body, upload, *upload_size) < 0)
            rq->too_big = true;
        *upload_size = 0;
        return MHD_YES;
    }
    if (rq->answered)
        return MHD_YES;
    rq->answered = true;
    admin_guard_mark(a->guard, c, true); /* whole: no longer timed */
    return dispatch(a, c, url, method, rq);
}

static void
on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
    struct admin *a = cls;
    struct admin_req *rq = *con_cls;

    admin_guard_mark(a->guard, c, false); /* the next request's clock */
    if (!rq)
        return;
    admin_job_free(rq->job); /* done (jobs stop before MHD) */
    if (rq->body.data)
        explicit_bzero(rq->body.data, rq->body.len); /* may hold a pw */
    buf_fini(&rq->body);
    free(rq);
    *con_cls = NULL;
}

static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct admin *a = cls;
    char line[sizeof(a->log_last)];
    struct timespec ts;

    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now_ms =
        (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    /* A limit doing its job under a flood (refused connections) would
     * log one line per connection: repeats of a line within a second are
     * counted instead, and the count is logged with the next line. */
    pthread_mutex_lock(&a->log_mu);
    if (strcmp(line, a->log_last) == 0 && now_ms - a->log_at_ms < 1000) {
        a->log_repeats++;
        pthread_mutex_unlock(&a->log_mu);
        return;
    }
    if (a->log_repeats)
        log_warn("admin", "http: (last message repeated %llu times)",
                 (unsigned long long)a->log_repeats);
    a->log_repeats = 0;
    a->log_at_ms = now_ms;
    snprintf(a->log_last, sizeof(a->log_last), "%s", line);
    pthread_mutex_unlock(&a->log_mu);
    log_warn("admin", "http: %s", line);
}

/* ---- start / stop ------------------------------------------------------ */

/* Create the parent directory of path (one level: "var/"), so a fresh
 * checkout or test directory works. EEXIST and failures are left to the
 * open that follows, which reports them. */
static void
mkdir_parent(const char *path)
{
    char dir[512];

    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        mkdir(dir, 0700);
    }
}

/* A token kept in token_file from an earlier start (or made by the
 * package's postinst): 16..64 hex digits. Returns true and fills out. */
static bool
read_token_file(const char *path, char *out, size_t outlen)
{
    char buf[80];
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    size_t len = 0;
    while (len < (size_t)n && isxdigit((unsigned char)buf[len]))
        len++;
    if (len < 16 || len > 64 || len >= outlen ||
        (len < (size_t)n && buf[len] != '\n' && buf[len] != '\r'))
        return false;
    memcpy(out, buf, len);
    out[len] = '\0';
    return true;
}

/* The API token: [admin] token, else the one kept in token_file, else a
 * new one written there (0600). A new token is shown on a terminal only
 * (make run); under systemd stderr is the journal, and a secret there
 * outlives its purpose. */
static int
settle_token(struct admin *a, char *err, size_t errlen)
{
    const char *path = a->cfg->token_file;
    int fd;

    if (a->cfg->token[0]) {
        snprintf(a->token, sizeof(a->token), "%s", a->cfg->token);
        return 0;
    }
    if (path[0] && read_token_file(path, a->token, sizeof(a->token))) {
        log_notice("admin", "API token read from %s", path);
        return 0;
    }
    if (admin_random_hex(a->token, 16) < 0) {
        snprintf(err, errlen, "admin: no randomness for the token");
        return -EIO;
    }
    mkdir_parent(path);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, a->token, strlen(a->token)) < 0 ||
        write(fd, "\n", 1) < 0) {
        int rc = -errno;
        snprintf(err, errlen, "admin: %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return rc;
    }
    fchmod(fd, 0600);
    close(fd);
    if (isatty(STDERR_FILENO))
        fprintf(stderr, "admin: generated API token %s (saved to %s)\n",
                a->token, path);
    else
        log_notice("admin", "generated an API token, saved to %s", path);
    return 0;
}

static int
parse_listen(const char *listen, struct sockaddr_in *sin, char *host,
             size_t hostlen)
{
    const char *colon = strrchr(listen, ':');
    char *end;

    if (!colon || (size_t)(colon - listen) >= hostlen)
        return -EINVAL;
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (*end || port > 65535)
        return -EINVAL;
    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
        return -EINVAL;
    return 0;
}

int
admin_start(const struct admin_opts *o, struct admin **out, char *err,
            size_t errlen)
{
    struct admin *a = xcalloc(1, sizeof(*a));
    struct sockaddr_in sin;
    char host[64];
    int rc;

    pthread_mutex_init(&a->log_mu, NULL);
    a->cfg = o->cfg;
    a->reg = o->reg;
    a->domain = xstrdup(o->domain ? o->domain : "");
    a->realm = xstrdup(o->realm ? o->realm : a->domain);
    a->db_path = xstrdup(o->db_path ? o->db_path : "");
    a->db_postgresql = o->db_postgresql;
    a->node = xstrdup(o->node ? o->node : "");
    a->listener_count = o->listener_count;
    a->listeners = xcalloc(o->listener_count + 1, sizeof(*a->listeners));
    for (size_t i = 0; i < o->listener_count; i++) {
        a->listeners[i].transport = xstrdup(o->listeners[i].transport);
        a->listeners[i].port = o->listeners[i].port;
    }
    a->push.fcm_project_id = dup_or_null(o->push.fcm_project_id);
    a->push.fcm_sender_id = dup_or_null(o->push.fcm_sender_id);
    a->push.apns_environment = dup_or_null(o->push.apns_environment);
    a->push.apns_topic = dup_or_null(o->push.apns_topic);
    a->src = o->sources;
    a->store = o->store;
    pthread_mutex_init(&a->conf_mu, NULL);
    a->confs = admin_conf_set_new(o->conf_exts, o->conf_ext_count);

    if (parse_listen(a->cfg->listen, &sin, host, sizeof(host)) < 0) {
        snprintf(err, errlen, "admin: listen '%s': IPv4 host:port expected",
                 a->cfg->listen);
        rc = -EINVAL;
        goto fail;
    }
    rc = admin_prov_open(a->store, a->cfg->prov_db, &a->prov, err, errlen);
    if (rc < 0)
        goto fail;
    rc = settle_token(a, err, errlen);
    if (rc < 0)
        goto fail;
    rc = admin_guard_start(a->cfg->request_timeout_s, &a->guard);
    if (rc == 0)
        rc = admin_jobs_start(ADMIN_JOB_THREADS, ADMIN_JOBS_MAX, &a->jobs);
    if (rc < 0) {
        snprintf(err, errlen, "admin: cannot start threads: %s", strerror(-rc));
        goto fail;
    }
    /* One polling thread for every route (see the top of this file);
     * the limits: connections in all, per source address, and the time a
     * request may take to arrive (the guard; MHD's own timeout is an idle
     * timeout, which a trickling client never triggers). */
    a->mhd = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG |
            MHD_ALLOW_SUSPEND_RESUME,
        0, NULL, NULL, on_request, a, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, a,
        MHD_OPTION_SOCK_ADDR, &sin, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
        a, MHD_OPTION_NOTIFY_CONNECTION, admin_guard_notify, a->guard,
        MHD_OPTION_CONNECTION_LIMIT, a->cfg->max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, a->cfg->max_connections_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, a->cfg->request_timeout_s,
        MHD_OPTION_END);
    if (!a->mhd) {
        snprintf(err, errlen, "admin: cannot listen on %s", a->cfg->listen);
        rc = -EADDRINUSE;
        goto fail;
    }
    const union MHD_DaemonInfo *di =
        MHD_get_daemon_info(a->mhd, MHD_DAEMON_INFO_BIND_PORT);
    a->port = di ? di->port : ntohs(sin.sin_port);
    if (a->cfg->public_url[0]) {
        snprintf(a->base_url, sizeof(a->base_url), "%s", a->cfg->public_url);
        size_t l = strlen(a->base_url);
        if (l && a->base_url[l - 1] == '/')
            a->base_url[l - 1] = '\0';
    } else {
        snprintf(a->base_url, sizeof(a->base_url), "http://%s:%u", host,
                 a->port);
    }
    log_notice("admin", "admin API and page on http://%s:%u/", host, a->port);
    *out = a;
    return 0;
fail:
    admin_stop(a);
    return rc;
}

unsigned
admin_port(const struct admin *a)
{
    return a->port;
}

void
admin_stop(struct admin *a)
{
    if (!a)
        return;
    /* Jobs first: they resume their suspended connections, which MHD
     * must not hold at stop; the guard last: MHD unregisters with it. */
    admin_jobs_stop(a->jobs);
    if (a->mhd)
        MHD_stop_daemon(a->mhd);
    admin_guard_stop(a->guard);
    admin_prov_close(a->prov);
    admin_conf_sets_free(a->confs);
    pthread_mutex_destroy(&a->conf_mu);
    for (size_t i = 0; i < a->listener_count; i++)
        free((char *)a->listeners[i].transport);
    free(a->listeners);
    free(a->push.fcm_project_id);
    free(a->push.fcm_sender_id);
    free(a->push.apns_environment);
    free(a->push.apns_topic);
    free(a->domain);
    free(a->db_path);
    free(a->node);
    free(a->realm);
    explicit_bzero(a->token, sizeof(a->token));
    pthread_mutex_destroy(&a->log_mu);
    free(a);
}
