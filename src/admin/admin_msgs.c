/*
 * admin/admin_msgs: stored chat messages on the admin API and /metrics
 * ([messages], docs/messages.md): per extension how many wait and since
 * when, never their text or sender. Reads the registrar's message index
 * (memory, one lock), so it costs nothing on the disk.
 */
#include <stdlib.h>
#include <string.h>

#include "admin/admin_int.h"
#include "base/buf.h"
#include "registrar/msgstore.h"

struct rows {
    json_t *items;
};

static void
add_row(const struct reg_msg_ext_info *e, void *arg)
{
    struct rows *r = arg;

    json_array_append_new(
        r->items, json_pack("{s:s, s:I, s:I, s:I}", "ext", e->ext, "count",
                            (json_int_t)e->count, "oldest_received_at",
                            (json_int_t)e->oldest_received_at, "bytes",
                            (json_int_t)e->bytes));
}

static int
by_ext(const void *a, const void *b)
{
    const char *x = json_string_value(json_object_get(*(json_t *const *)a,
                                                      "ext"));
    const char *y = json_string_value(json_object_get(*(json_t *const *)b,
                                                      "ext"));
    return strcmp(x, y);
}

json_t *
admin_messages_json(struct reg_msg_table *t)
{
    struct rows r = {.items = json_array()};
    struct reg_msg_stats s = {0};

    if (t) {
        reg_msg_list(t, add_row, &r);
        reg_msg_get_stats(t, &s);
    }
    /* Sorted by extension, outside the index's lock. */
    size_t n = json_array_size(r.items);
    json_t **v = calloc(n ? n : 1, sizeof(*v));
    for (size_t i = 0; i < n; i++)
        v[i] = json_incref(json_array_get(r.items, i));
    qsort(v, n, sizeof(*v), by_ext);
    json_array_clear(r.items);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(r.items, v[i]);
    free(v);
    return json_pack("{s:b, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I}}",
                     "available", t != NULL, "items", r.items, "stats",
                     "waiting", (json_int_t)s.waiting, "stored",
                     (json_int_t)s.stored, "delivered",
                     (json_int_t)s.delivered, "expired", (json_int_t)s.expired,
                     "dropped", (json_int_t)s.dropped, "pushed",
                     (json_int_t)s.pushed, "failed", (json_int_t)s.failed);
}

static void
counter(struct buf *b, const char *name, const char *type, const char *help,
        uint64_t v)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name,
               type, name, (unsigned long long)v);
}

void
admin_messages_metrics(struct buf *b, struct reg_msg_table *t)
{
    struct reg_msg_stats s = {0};

    if (t)
        reg_msg_get_stats(t, &s);
    counter(b, "pushpbx_messages_stored", "gauge",
            "Chat messages stored for sleeping apps now.", s.waiting);
    counter(b, "pushpbx_messages_stored_total", "counter",
            "Chat messages stored (committed before 202 Accepted).",
            s.stored);
    counter(b, "pushpbx_messages_delivered_total", "counter",
            "Stored messages delivered to a woken app (2xx).", s.delivered);
    counter(b, "pushpbx_messages_expired_total", "counter",
            "Stored messages dropped after [messages] ttl_days.", s.expired);
    counter(b, "pushpbx_messages_dropped_total", "counter",
            "Stored messages dropped by [messages] max_per_extension.",
            s.dropped);
    counter(b, "pushpbx_messages_pushed_total", "counter",
            "Message pushes sent for stored messages.", s.pushed);
}
