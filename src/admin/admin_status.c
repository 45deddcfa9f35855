/*
 * admin/admin_status: what the daemon says of itself: GET /healthz (for
 * monitoring, without a token: 200 or 503 naming the failing parts) and
 * GET /api/status (version, domain, counts, which views are available);
 * docs/admin.md.
 *
 * /healthz is public, so it says nothing secret: no counts, no names, only
 * which parts did not answer within their bound (the health callback of
 * struct admin_sources asks each part of the daemon, about a second at
 * most, on the admin thread).
 */
#include <stdbool.h>

#include "admin/admin_int.h"
#include "registrar/reg.h"

/* For monitoring, without a token: 200 when every part of the daemon
 * answered within its bound, else 503 naming the failing parts. Says
 * nothing secret (no counts, no names). */
enum MHD_Result
admin_route_healthz(struct admin *a, struct MHD_Connection *c)
{
    json_t *parts = json_object(), *failing = json_array();
    const char *k;
    json_t *v;
    int rc = a->src.health ? a->src.health(a->src.arg, parts) : 0;

    json_object_foreach(parts, k, v)
    {
        if (!json_is_true(json_object_get(v, "ok")))
            json_array_append_new(failing, json_string(k));
    }
    if (rc != 0 && json_array_size(failing) == 0)
        json_array_append_new(failing, json_string("unknown"));
    bool ok = json_array_size(failing) == 0;
    return admin_send_json(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                           json_pack("{s:s, s:s, s:o, s:o}", "status",
                                     ok ? "ok" : "unhealthy", "version",
                                     PUSHPBX_VERSION, "failing", failing,
                                     "parts", parts));
}

/* GET /api/status. */
enum MHD_Result
admin_route_status(struct admin *a, struct MHD_Connection *c)
{
    struct reg_stats rs;

    reg_get_stats(a->reg, &rs);
    return admin_send_json(
        c, MHD_HTTP_OK,
        json_pack(
            "{s:s, s:s, s:I, s:I, s:{s:b, s:b, s:b, s:b}}", "version",
            PUSHPBX_VERSION, "domain", a->domain, "extensions",
            (json_int_t)rs.extensions, "registrations", (json_int_t)rs.bindings,
            "available", "calls", a->src.list_calls != NULL, "pushes",
            a->src.list_pushes != NULL, "wakeups", a->src.list_wakeups != NULL,
            "devices", a->src.list_devices != NULL));
}
