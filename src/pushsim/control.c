/*
 * control: pushsim's plain HTTP/1.1 control API for test harnesses and the
 * demo, served by libmicrohttpd on its own thread. It reads and changes
 * struct psim_state only (under its mutex) and bumps the token-expiry
 * generations the loop thread compares; it never touches loop objects.
 *
 *   GET  /health              {"ok":true}
 *   GET  /pushes[?since=SEQ]  {"pushes":[...]}  (seq > SEQ)
 *   GET  /stats               counters
 *   POST /dead    {"token":".."}
 *   POST /faults  {"provider":"apns"|"fcm"|"any","action":..,"count":N,..}
 *   POST /reset               clears pushes, faults, dead tokens
 * Bodies are capped at 64 KiB (413 beyond).
 */
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/xmalloc.h"
#include "pushsim/pushsim_int.h"

struct psim_control {
    struct MHD_Daemon *d;
    struct psim *ps;
};

struct upload {
    struct buf body;
    bool too_large;
};

static enum MHD_Result
reply(struct MHD_Connection *conn, unsigned status, char *text, size_t len)
{
    struct MHD_Response *r;
    enum MHD_Result rc;

    /* text is malloc'd and handed to MHD. */
    r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", "application/json");
    rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result
reply_str(struct MHD_Connection *conn, unsigned status, const char *s)
{
    return reply(conn, status, xstrdup(s), strlen(s));
}

static enum MHD_Result
reply_err(struct MHD_Connection *conn, unsigned status, const char *why)
{
    json_t *o = json_pack("{s:b,s:s}", "ok", 0, "error", why);
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);

    json_decref(o);
    return reply(conn, status, s, strlen(s));
}

static int
parse_provider(json_t *v, int *out)
{
    const char *s = json_string_value(v);

    if (v == NULL || (s != NULL && strcmp(s, "any") == 0))
        *out = -1;
    else if (s != NULL && strcmp(s, "apns") == 0)
        *out = PSIM_APNS;
    else if (s != NULL && strcmp(s, "fcm") == 0)
        *out = PSIM_FCM;
    else
        return -EINVAL;
    return 0;
}

/* Optional integer member within [lo, hi]; def when absent. */
static int
int_member(json_t *o, const char *name, long long lo, long long hi,
           long long def, long long *out)
{
    json_t *v = json_object_get(o, name);

    if (v == NULL) {
        *out = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo ||
        json_integer_value(v) > hi)
        return -EINVAL;
    *out = json_integer_value(v);
    return 0;
}

static enum MHD_Result
post_faults(struct psim_control *ctl, struct MHD_Connection *conn, json_t *o)
{
    struct psim_state *st = &ctl->ps->state;
    const char *action = json_string_value(json_object_get(o, "action"));
    const char *reason = json_string_value(json_object_get(o, "reason"));
    struct psim_fault f = {0};
    long long count, status, retry, ms;

    if (action == NULL)
        return reply_err(conn, 400, "action is required");
    if (strcmp(action, "expire_provider_tokens") == 0) {
        atomic_fetch_add(&st->apns_expire_gen, 1);
        return reply_str(conn, 200, "{\"ok\":true}");
    }
    if (strcmp(action, "expire_access_tokens") == 0) {
        atomic_fetch_add(&st->fcm_expire_gen, 1);
        return reply_str(conn, 200, "{\"ok\":true}");
    }
    if (parse_provider(json_object_get(o, "provider"), &f.provider) < 0)
        return reply_err(conn, 400, "provider must be apns, fcm or any");
    if (int_member(o, "count", 1, 1000000, 1, &count) < 0 ||
        int_member(o, "status", 100, 599, -1, &status) < 0 ||
        int_member(o, "retry_after", 0, 86400, -1, &retry) < 0 ||
        int_member(o, "ms", 0, 3600000, -1, &ms) < 0)
        return reply_err(conn, 400, "bad count, status, retry_after or ms");
    if (json_object_get(o, "reason") != NULL &&
        (reason == NULL || strlen(reason) >= sizeof(f.reason)))
        return reply_err(conn, 400, "reason must be a short string");
    f.remaining = (unsigned)count;
    f.retry_after_s = (long)retry;
    if (reason != NULL)
        snprintf(f.reason, sizeof(f.reason), "%s", reason);
    if (strcmp(action, "status") == 0) {
        if (status < 0)
            return reply_err(conn, 400, "status action needs \"status\"");
        f.action = PSIM_FAULT_STATUS;
        f.status = (int)status;
    } else if (strcmp(action, "delay") == 0) {
        if (ms < 0)
            return reply_err(conn, 400, "delay action needs \"ms\"");
        f.action = PSIM_FAULT_DELAY;
        f.delay_ms = (unsigned)ms;
    } else if (strcmp(action, "reset") == 0) {
        f.action = PSIM_FAULT_RESET;
    } else if (strcmp(action, "goaway") == 0) {
        f.action = PSIM_FAULT_GOAWAY;
    } else if (strcmp(action, "hang") == 0) {
        f.action = PSIM_FAULT_HANG;
    } else {
        return reply_err(conn, 400, "unknown action");
    }
    if (psim_state_add_fault(st, &f) < 0)
        return reply_err(conn, 503, "too many queued faults");
    return reply_str(conn, 200, "{\"ok\":true}");
}

static enum MHD_Result
route(struct psim_control *ctl, struct MHD_Connection *conn, const char *url,
      const char *method, struct upload *up)
{
    struct psim_state *st = &ctl->ps->state;
    bool get = strcmp(method, "GET") == 0;
    bool post = strcmp(method, "POST") == 0;
    enum MHD_Result rc;
    json_t *o = NULL;
    size_t len;
    char *s;

    if (strcmp(url, "/health") == 0 && get)
        return reply_str(conn, 200, "{\"ok\":true}");
    if (strcmp(url, "/pushes") == 0 && get) {
        const char *since_s =
            MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "since");
        unsigned long long since = 0;
        if (since_s != NULL &&
            slice_to_u64(slice_cstr(since_s), UINT64_MAX, &since) < 0)
            return reply_err(conn, 400, "since must be a number");
        s = psim_state_pushes_json(st, since, &len);
        return reply(conn, 200, s, len);
    }
    if (strcmp(url, "/stats") == 0 && get) {
        s = psim_state_stats_json(st, &len);
        return reply(conn, 200, s, len);
    }
    if (!post || (strcmp(url, "/dead") && strcmp(url, "/faults") &&
                  strcmp(url, "/reset")))
        return reply_err(conn, 404, "no such endpoint");
    if (up->too_large)
        return reply_err(conn, 413, "body too large");
    if (strcmp(url, "/reset") == 0) {
        psim_state_reset(st);
        return reply_str(conn, 200, "{\"ok\":true}");
    }
    o = json_loadb(up->body.data ? up->body.data : "", up->body.len, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return reply_err(conn, 400, "body must be a JSON object");
    }
    if (strcmp(url, "/dead") == 0) {
        const char *tok = json_string_value(json_object_get(o, "token"));
        if (tok == NULL || tok[0] == '\0')
            rc = reply_err(conn, 400, "token is required");
        else if (psim_state_add_dead(st, slice_cstr(tok)) < 0)
            rc = reply_err(conn, 503, "too many dead tokens");
        else
            rc = reply_str(conn, 200, "{\"ok\":true}");
    } else {
        rc = post_faults(ctl, conn, o);
    }
    json_decref(o);
    return rc;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
           const char *method, const char *version, const char *data,
           size_t *data_size, void **con_cls)
{
    struct upload *up = *con_cls;

    if (up == NULL) {
        up = xcalloc(1, sizeof(*up));
        buf_init(&up->body, PSIM_BODY_MAX);
        *con_cls = up;
        return MHD_YES;
    }
    if (*data_size > 0) {
        if (!up->too_large && buf_append(&up->body, data, *data_size) < 0)
            up->too_large = true;
        *data_size = 0;
        return MHD_YES;
    }
    return route(cls, conn, url, method, up);
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
             enum MHD_RequestTerminationCode why)
{
    struct upload *up = *con_cls;

    if (up != NULL) {
        buf_fini(&up->body);
        free(up);
        *con_cls = NULL;
    }
}

int
psim_control_start(struct psim *ps, const char *addr, struct psim_control **out,
                   int *port)
{
    struct sockaddr_storage ss;
    struct psim_control *ctl;
    const union MHD_DaemonInfo *info;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;

    if (psim_parse_addr(addr, &ss) < 0)
        return -EINVAL;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    ctl = xcalloc(1, sizeof(*ctl));
    ctl->ps = ps;
    ctl->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, ctl, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_CONNECTION_LIMIT, 256u, MHD_OPTION_CONNECTION_TIMEOUT, 30u,
        MHD_OPTION_END);
    if (ctl->d == NULL) {
        free(ctl);
        return -EADDRINUSE;
    }
    info = MHD_get_daemon_info(ctl->d, MHD_DAEMON_INFO_BIND_PORT);
    *port = info ? info->port : 0;
    *out = ctl;
    return 0;
}

void
psim_control_stop(struct psim_control *ctl)
{
    if (ctl == NULL)
        return;
    MHD_stop_daemon(ctl->d);
    free(ctl);
}
