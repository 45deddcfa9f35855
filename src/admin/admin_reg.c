/*
 * admin/admin_reg: the registration routes of the admin API: GET
 * /api/registrations (one page in listing order, ?limit= and ?after=;
 * docs/admin.md "Pages") and GET /api/extensions/N/registrations (one
 * extension), each row with its bindings (each naming the [cluster] node
 * that holds it: this node's name for its own, "" on a single node) and,
 * from admin_push.c, its push devices.
 *
 * A page costs O(log extensions + limit) in the registrar
 * (reg_list_page), whatever the installation's size: a client walks a
 * large one in many short requests, none of which holds the admin thread
 * for long. Device tokens in contact URIs are redacted before they leave
 * (admin_redact_uri).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "admin/admin_int.h"
#include "base/slice.h"
#include "registrar/reg.h"

/* GET /api/registrations without ?limit= (docs/admin.md "Pages"). */
#define ADMIN_PAGE_DEFAULT 100

static const char *
tp_name(enum reg_transport t)
{
    switch (t) {
    case REG_TP_TCP:
        return "tcp";
    case REG_TP_TLS:
        return "tls";
    default:
        return "udp";
    }
}

static void
addr_text(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;

    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &s->sin_addr, host, sizeof(host));
        port = ntohs(s->sin_port);
        snprintf(out, outlen, "%s:%u", host, port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof(host));
        port = ntohs(s->sin6_port);
        snprintf(out, outlen, "[%s]:%u", host, port);
    } else {
        snprintf(out, outlen, "-");
    }
}

struct reg_collect {
    json_t *items; /* array of {number, name, enabled, bindings:[]} */
    int64_t now;
    const char *self; /* this node's [cluster] node; "" single node */
};

static void
collect_reg(const char *ext, const char *display, bool enabled,
            const struct reg_contact *contacts, size_t count, void *arg)
{
    struct reg_collect *rc = arg;
    char uri[1024], src[INET6_ADDRSTRLEN + 16];

    json_t *b = json_array();
    for (size_t i = 0; i < count; i++) {
        const struct reg_contact *k = &contacts[i];
        admin_redact_uri(k->uri ? k->uri : "", uri, sizeof(uri));
        addr_text(&k->addr, src, sizeof(src));
        int64_t left = k->expires_at - rc->now;
        json_array_append_new(
            b, json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:s}", "contact",
                         uri, "source", src, "transport", tp_name(k->transport),
                         "user_agent", k->user_agent ? k->user_agent : "",
                         "instance", k->instance ? k->instance : "",
                         "expires_at", (json_int_t)k->expires_at, "expires_in",
                         (json_int_t)(left > 0 ? left : 0), "node",
                         k->node && k->node[0] ? k->node : rc->self));
    }
    json_array_append_new(rc->items,
                          json_pack("{s:s, s:s, s:b, s:o, s:[]}", "number", ext,
                                    "name", display ? display : "", "enabled",
                                    enabled, "bindings", b, "push"));
}

/* GET /api/extensions/N/registrations: one extension (NULL: unknown). */
json_t *
admin_reg_one(struct admin *a, const char *number)
{
    struct reg_collect rc = {
        .items = json_array(), .now = admin_now_s(), .self = a->node};

    if (reg_list_ext(a->reg, number, collect_reg, &rc) < 0) {
        json_decref(rc.items);
        return NULL;
    }
    admin_push_add(a, rc.items);
    return json_pack("{s:b, s:o}", "push_available",
                     a->src.list_devices != NULL, "items", rc.items);
}

/* GET /api/registrations[?limit=N][&after=EXT]: one page in listing
 * order (docs/admin.md "Pages"). */
enum MHD_Result
admin_route_registrations(struct admin *a, struct MHD_Connection *c)
{
    const char *ls =
        MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
    const char *after =
        MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "after");
    unsigned long long limit = ADMIN_PAGE_DEFAULT;

    if (ls &&
        (slice_to_u64(slice_cstr(ls), REG_PAGE_MAX, &limit) < 0 || limit == 0))
        return admin_send_error(c, MHD_HTTP_BAD_REQUEST,
                                "limit must be a number from 1 to 1000",
                                "limit");
    if (after && after[0] && !reg_ext_number_valid(after))
        return admin_send_error(c, MHD_HTTP_BAD_REQUEST,
                                "after must be an extension number", "after");
    struct reg_collect rc = {
        .items = json_array(), .now = admin_now_s(), .self = a->node};
    struct reg_page pg;
    reg_list_page(a->reg, after, (size_t)limit, collect_reg, &rc, &pg);
    admin_push_add(a, rc.items);
    return admin_send_json(
        c, MHD_HTTP_OK,
        json_pack("{s:b, s:o, s:I, s:I, s:o}", "push_available",
                  a->src.list_devices != NULL, "items", rc.items, "total",
                  (json_int_t)pg.total, "limit", (json_int_t)limit, "next",
                  pg.more ? json_string(pg.next) : json_null()));
}
