/*
 * admin/admin_push: the push routes of the admin API: the push devices
 * shown beside each extension's registrations (with their state), the
 * device delete (DELETE /api/extensions/N/push[?id=]), the test push
 * (POST /api/extensions/N/push/test) and the push check (POST
 * /api/push/check); docs/admin.md.
 *
 * The test push and the push check are a real HTTP/2 exchange with
 * APNs/FCM (up to about 12 s): they run on the job threads of
 * admin_avail.c while their connection is suspended, and touch only the
 * thread-safe provider callbacks (struct admin_sources), never the
 * admin's own state. A device's token never leaves here whole: the API
 * shows its first 8 characters (admin_push_redact).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin_int.h"
#include "base/xmalloc.h"

/* Replace a provider's full "token" by "token_prefix" (8 chars). */
void
admin_push_redact(json_t *d)
{
    json_t *t = json_object_get(d, "token");
    char pre[16];

    if (json_is_string(t)) {
        snprintf(pre, sizeof(pre), "%.8s", json_string_value(t));
        json_object_set_new(d, "token_prefix", json_string(pre));
        json_object_del(d, "token");
    }
}

/* A push device is suppressed while one of the extension's bindings is
 * live for it: same +sip.instance, or a contact carrying its token. */
static const char *
device_state(json_t *dev, json_t *bindings, const char *full_token)
{
    const char *inst = json_string_value(json_object_get(dev, "instance"));
    size_t i;
    json_t *b;

    json_array_foreach(bindings, i, b)
    {
        const char *bi = json_string_value(json_object_get(b, "instance"));
        if (inst && inst[0] && bi && strcmp(inst, bi) == 0)
            return "suppressed: registration live";
        const char *c = json_string_value(json_object_get(b, "contact"));
        char pre[24];
        if (full_token && c) {
            snprintf(pre, sizeof(pre), "pn-prid=%.8s", full_token);
            if (strstr(c, pre))
                return "suppressed: registration live";
        }
    }
    return "push active";
}

/* Add device d (a "devices" object) to item's push list, redacted, with
 * its state against item's bindings. */
static void
add_device(json_t *item, json_t *d)
{
    const char *tok = json_string_value(json_object_get(d, "token"));
    char *tokcopy = tok ? xstrdup(tok) : NULL;
    json_t *dc = json_deep_copy(d);

    admin_push_redact(dc);
    json_object_set_new(dc, "state",
                        json_string(device_state(
                            dc, json_object_get(item, "bindings"), tokcopy)));
    free(tokcopy);
    json_array_append_new(json_object_get(item, "push"), dc);
}

/* The push devices of every item (a page, or one extension). */
void
admin_push_add(struct admin *a, json_t *items)
{
    size_t i, k;
    json_t *d, *item;

    if (a->src.list_ext_devices) {
        json_array_foreach(items, k, item)
        {
            const char *n = json_string_value(json_object_get(item, "number"));
            json_t *devs = json_array();
            if (a->src.list_ext_devices(a->src.arg, n, devs) == 0)
                json_array_foreach(devs, i, d) add_device(item, d);
            json_decref(devs);
        }
        return;
    }
    if (!a->src.list_devices)
        return;
    json_t *devs = json_array();
    if (a->src.list_devices(a->src.arg, devs) == 0) {
        json_array_foreach(devs, i, d)
        {
            const char *ext = json_string_value(json_object_get(d, "ext"));
            json_array_foreach(items, k, item)
            {
                const char *n =
                    json_string_value(json_object_get(item, "number"));
                if (ext && strcmp(ext, n) == 0)
                    add_device(item, d);
            }
        }
    }
    json_decref(devs);
}

/* Runs on a job thread: only the provider callbacks, never admin state. */
static unsigned
job_push_test(void *ctx, const char *ext, json_t **body)
{
    struct admin *a = ctx;
    json_t *res = json_object();
    int rc = a->src.push_test(a->src.arg, ext, res);

    if (rc >= 0) {
        *body = res;
        return MHD_HTTP_OK;
    }
    json_decref(res);
    if (rc == -ENOENT) {
        *body = admin_error_json(MHD_HTTP_NOT_FOUND,
                                 "extension has no push device", NULL);
        return MHD_HTTP_NOT_FOUND;
    }
    *body = admin_error_json(MHD_HTTP_BAD_GATEWAY, "push failed", NULL);
    return MHD_HTTP_BAD_GATEWAY;
}

static unsigned
job_push_check(void *ctx, const char *param, json_t **body)
{
    struct admin *a = ctx;
    json_t *items = json_array();
    bool ok;
    size_t i;
    json_t *it;

    (void)param;
    if (a->src.push_check(a->src.arg, items) < 0) {
        json_decref(items);
        *body = admin_error_json(MHD_HTTP_INTERNAL_SERVER_ERROR,
                                 "push check failed to run", NULL);
        return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
    ok = json_array_size(items) > 0;
    json_array_foreach(items, i, it) ok =
        ok && json_is_true(json_object_get(it, "ok"));
    *body = json_pack("{s:b, s:o}", "ok", ok, "items", items);
    return MHD_HTTP_OK;
}

/* Suspend c and queue fn; the answer goes out when the job is done
 * (on_request). 501 with unavailable when the provider has no such
 * callback (available false). */
static enum MHD_Result
job_start(struct admin *a, struct MHD_Connection *c, struct admin_req *rq,
          bool available, const char *unavailable, admin_job_fn *fn,
          const char *param)
{
    if (!available)
        return admin_send_error(c, MHD_HTTP_NOT_IMPLEMENTED, unavailable, NULL);
    int rc = admin_jobs_submit(a->jobs, c, fn, a, param, &rq->job);

    if (rc == -EBUSY)
        return admin_send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                                "too many test pushes and checks running; try "
                                "again",
                                NULL);
    if (rc < 0)
        return admin_send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                                "admin server stopping", NULL);
    return MHD_YES;
}

enum MHD_Result
admin_push_test_start(struct admin *a, struct MHD_Connection *c,
                      struct admin_req *rq, const char *ext)
{
    return job_start(a, c, rq, a->src.push_test != NULL,
                     "test push not available yet", job_push_test, ext);
}

/* POST /api/push/check: the authenticated step of the push check, run by
 * the daemon with its own [apns]/[fcm] credentials. */
enum MHD_Result
admin_route_push_check(struct admin *a, struct MHD_Connection *c,
                       const char *method, struct admin_req *rq)
{
    if (!admin_is_method(method, "POST"))
        return admin_send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED,
                                "method not allowed", NULL);
    return job_start(a, c, rq, a->src.push_check != NULL,
                     "push check not available", job_push_check, NULL);
}

/* DELETE /api/extensions/N/push[?id=ID]: one device of ext, or all. */
enum MHD_Result
admin_push_device_del(struct admin *a, struct MHD_Connection *c,
                      const char *ext)
{
    const char *id =
        MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "id");

    if (!a->src.device_del)
        return admin_send_error(c, MHD_HTTP_NOT_IMPLEMENTED,
                                "push devices not available yet", NULL);
    if (a->src.device_del(a->src.arg, ext, id) < 0)
        return admin_send_error(c, MHD_HTTP_NOT_FOUND, "no such push device",
                                "id");
    return admin_send_empty(c, MHD_HTTP_NO_CONTENT);
}
