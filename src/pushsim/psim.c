/*
 * psim: the request router of the emulator. Every HTTP/2 request that
 * reaches end-of-stream comes here (from h2.c, loop thread), is routed to
 * APNs, FCM send or FCM OAuth, gets a queued fault applied if one matches,
 * and is recorded for the control API. Push records are built as JSON
 * once and stored serialised (state.c).
 *
 * Routing:  /3/device/<token>                    -> APNs (recorded)
 *           /v1/projects/<p>/messages:send       -> FCM send (recorded)
 *           /token                               -> FCM OAuth (not recorded)
 *           anything else                        -> 404 {"reason":"BadPath"}
 * Faults for "fcm" apply to the send endpoint only, never to /token.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "pushsim/pushsim_int.h"

int
psim_parse_addr(const char *s, struct sockaddr_storage *ss)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    unsigned long long port;
    size_t hlen;

    memset(ss, 0, sizeof(*ss));
    if (colon == NULL || slice_to_u64(slice_cstr(colon + 1), 65535, &port) < 0)
        return -EINVAL;
    hlen = (size_t)(colon - s);
    if (hlen >= 2 && s[0] == '[' && s[hlen - 1] == ']') {
        s++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof(host))
        return -EINVAL;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return -EINVAL;
}

uint64_t
psim_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void
psim_resp_init(struct psim_resp *r)
{
    memset(r, 0, sizeof(*r));
    buf_init(&r->body, PSIM_BODY_MAX);
}

void
psim_resp_fini(struct psim_resp *r)
{
    buf_fini(&r->body);
}

static void
free_ptr(void *p)
{
    free(p);
}

void
psim_init(struct psim *ps, FILE *log)
{
    memset(ps, 0, sizeof(*ps));
    ps->fcm_token_ttl_s = 3600;
    psim_map_init(&ps->jwt_cache, free_ptr);
    psim_map_init(&ps->access_tokens, free_ptr);
    psim_state_init(&ps->state, log);
}

void
psim_fini(struct psim *ps)
{
    free(ps->apns_client_ca);
    for (size_t i = 0; i < ps->nkeys; i++)
        EVP_PKEY_free(ps->keys[i].key);
    for (size_t i = 0; i < ps->ntopics; i++)
        free(ps->topics[i]);
    for (size_t i = 0; i < ps->naccounts; i++) {
        struct psim_account *a = &ps->accounts[i];
        free(a->project);
        free(a->client_email);
        free(a->token_uri);
        EVP_PKEY_free(a->key);
    }
    psim_map_fini(&ps->jwt_cache);
    psim_map_fini(&ps->access_tokens);
    psim_state_fini(&ps->state);
}

int
psim_hdr_index(struct slice n)
{
    static const char *const names[PSIM_H_COUNT] = {
        [PSIM_H_METHOD] = ":method",
        [PSIM_H_PATH] = ":path",
        [PSIM_H_AUTH] = "authorization",
        [PSIM_H_CONTENT_TYPE] = "content-type",
        [PSIM_H_APNS_TOPIC] = "apns-topic",
        [PSIM_H_APNS_PUSH_TYPE] = "apns-push-type",
        [PSIM_H_APNS_PRIORITY] = "apns-priority",
        [PSIM_H_APNS_EXPIRATION] = "apns-expiration",
        [PSIM_H_APNS_COLLAPSE_ID] = "apns-collapse-id",
        [PSIM_H_APNS_ID] = "apns-id",
    };

    /* Cheap reject first: most headers are neither ':' nor a/c/apns-. */
    if (n.len < 5 || (n.ptr[0] != ':' && n.ptr[0] != 'a' && n.ptr[0] != 'c'))
        return -1;
    for (int i = 0; i < PSIM_H_COUNT; i++)
        if (slice_eq_cstr(n, names[i]))
            return i;
    return -1;
}

static bool
has_prefix(struct slice s, const char *p)
{
    size_t n = strlen(p);
    return s.len >= n && memcmp(s.ptr, p, n) == 0;
}

static const char *const fault_names[] = {
    [PSIM_ACT_RESET] = "fault:reset",
    [PSIM_ACT_GOAWAY] = "fault:goaway",
    [PSIM_ACT_HANG] = "fault:hang",
};

void
psim_handle(struct psim *ps, const struct psim_req *req, struct psim_resp *resp)
{
    struct slice path = req->hdr[PSIM_H_PATH], token = SLICE_NULL;
    struct slice project = SLICE_NULL;
    enum psim_provider prov;
    struct psim_fault f;
    const char *q, *reason;
    json_t *rec;

    q = path.ptr ? memchr(path.ptr, '?', path.len) : NULL;
    if (q != NULL)
        path.len = (size_t)(q - path.ptr);
    if (has_prefix(path, "/3/device/")) {
        prov = PSIM_APNS;
        token = slice_make(path.ptr + 10, path.len - 10);
    } else if (slice_eq_cstr(path, "/token")) {
        psim_fcm_token(ps, req, resp);
        return;
    } else if (has_prefix(path, "/v1/projects/") && path.len > 27 &&
               memcmp(path.ptr + path.len - 14, "/messages:send", 14) == 0) {
        prov = PSIM_FCM;
        project = slice_make(path.ptr + 13, path.len - 27);
        if (project.len == 0 || memchr(project.ptr, '/', project.len)) {
            psim_apns_error(resp, 404, "BadPath");
            return;
        }
    } else {
        psim_apns_error(resp, 404, "BadPath");
        return;
    }

    rec = json_object();
    json_object_set_new(rec, "time_ms",
                        json_integer((json_int_t)psim_now_ms()));
    json_object_set_new(rec, "provider",
                        json_string(prov == PSIM_APNS ? "apns" : "fcm"));
    if (prov == PSIM_APNS)
        psim_apns_describe(req, token, rec);
    else
        psim_fcm_describe(req, project, rec);

    if (psim_state_take_fault(&ps->state, prov, &f)) {
        const char *want = f.reason[0] ? f.reason : NULL;
        switch (f.action) {
        case PSIM_FAULT_STATUS:
            resp->status = f.status;
            reason = prov == PSIM_APNS
                         ? psim_apns_error(resp, f.status, want)
                         : psim_fcm_error(resp, f.status, want, want);
            if (prov == PSIM_APNS)
                psim_apns_set_id(req, resp);
            if (f.retry_after_s >= 0)
                snprintf(resp->retry_after, sizeof(resp->retry_after), "%ld",
                         f.retry_after_s);
            json_object_set_new(rec, "status", json_integer(f.status));
            json_object_set_new(rec, "reason", json_string(reason));
            goto record;
        case PSIM_FAULT_DELAY:
            resp->delay_ms = f.delay_ms;
            break;
        case PSIM_FAULT_RESET:
        case PSIM_FAULT_GOAWAY:
        case PSIM_FAULT_HANG:
            resp->action = f.action == PSIM_FAULT_RESET    ? PSIM_ACT_RESET
                           : f.action == PSIM_FAULT_GOAWAY ? PSIM_ACT_GOAWAY
                                                           : PSIM_ACT_HANG;
            resp->status = 0;
            json_object_set_new(rec, "status", json_integer(0));
            json_object_set_new(rec, "reason",
                                json_string(fault_names[resp->action]));
            goto record;
        }
    }
    if (prov == PSIM_APNS)
        psim_apns_handle(ps, req, token, rec, resp);
    else
        psim_fcm_send(ps, req, project, rec, resp);
record:
    psim_state_record(&ps->state, prov, rec, resp->status);
    json_decref(rec);
}
