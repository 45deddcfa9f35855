/*
 * admin/admin: the HTTP server (libmicrohttpd, one internal thread), its
 * routes and the JSON API; see admin.h for the contract and docs/admin.md
 * for every route.
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
#include "base/arena.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/xmalloc.h"
#include "registrar/reg.h"
#include "store/store.h"
#include "store/store_backup.h"

/* How long an extension change may wait for the store's commit. The
 * writer commits at once; this bounds a stuck disk (busy timeout 5 s). */
#define COMMIT_TIMEOUT_MS 6000

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

/* ---- extensions (through the registrar) ------------------------------- */

struct ext_collect {
    const char *want; /* NULL: all */
    struct admin_ext_info *v;
    size_t count, alloc;
};

static void
collect_ext(const char *ext, const char *display, bool enabled,
            const struct reg_contact *contacts, size_t count, void *arg)
{
    struct ext_collect *ec = arg;

    if (ec->want && strcmp(ec->want, ext) != 0)
        return;
    if (ec->count == ec->alloc) {
        ec->alloc = ec->alloc ? 2 * ec->alloc : 16;
        ec->v = xrealloc(ec->v, ec->alloc * sizeof(*ec->v));
    }
    struct admin_ext_info *e = &ec->v[ec->count++];
    snprintf(e->number, sizeof(e->number), "%s", ext);
    e->display = xstrdup(display ? display : "");
    e->enabled = enabled;
    e->bindings = count;
}

static int
cmp_ext(const void *a, const void *b)
{
    const struct admin_ext_info *x = a, *y = b;
    size_t lx = strlen(x->number), ly = strlen(y->number);

    /* numeric-looking numbers sort by length first: 99 < 100 */
    if (lx != ly)
        return lx < ly ? -1 : 1;
    return strcmp(x->number, y->number);
}

/* Snapshot of the extensions (one, or all sorted). Free with
 * ext_collect_fini. reg_list's callback runs under a shard lock, so we
 * only copy there. One extension is one hash lookup (reg_list_ext). */
static void
ext_snapshot(struct admin *a, const char *want, struct ext_collect *ec)
{
    *ec = (struct ext_collect){.want = want};
    if (want) {
        (void)reg_list_ext(a->reg, want, collect_ext, ec);
        return;
    }
    reg_list(a->reg, collect_ext, ec);
    if (ec->count > 1)
        qsort(ec->v, ec->count, sizeof(*ec->v), cmp_ext);
}

static void
ext_collect_fini(struct ext_collect *ec)
{
    for (size_t i = 0; i < ec->count; i++)
        free(ec->v[i].display);
    free(ec->v);
}

bool
admin_ext_find(struct admin *a, const char *number, struct admin_ext_info *out)
{
    struct ext_collect ec;
    bool found;

    ext_snapshot(a, number, &ec);
    found = ec.count > 0;
    if (found) {
        *out = ec.v[0];
        ec.v[0].display = NULL; /* moved to out */
    }
    ext_collect_fini(&ec);
    return found;
}

struct admin_conf_set {
    struct admin_conf_ext *v; /* owned copies of the strings */
    size_t count;
    struct admin_conf_set *older;
};

static struct admin_conf_set *
admin_conf_set_new(const struct admin_conf_ext *exts, size_t count)
{
    struct admin_conf_set *cs = xcalloc(1, sizeof(*cs));

    cs->count = count;
    cs->v = xcalloc(count + 1, sizeof(*cs->v));
    for (size_t i = 0; i < count; i++) {
        const struct admin_conf_ext *src = &exts[i];
        cs->v[i] = (struct admin_conf_ext){
            .number = xstrdup(src->number),
            .file = xstrdup(src->file ? src->file : "--set"),
            .line = src->line,
            .password = xstrdup(src->password ? src->password : ""),
        };
    }
    return cs;
}

static void
admin_conf_sets_free(struct admin_conf_set *cs)
{
    while (cs) {
        struct admin_conf_set *older = cs->older;
        for (size_t i = 0; i < cs->count; i++) {
            free((char *)cs->v[i].number);
            free((char *)cs->v[i].file);
            explicit_bzero((char *)cs->v[i].password,
                           strlen(cs->v[i].password));
            free((char *)cs->v[i].password);
        }
        free(cs->v);
        free(cs);
        cs = older;
    }
}

/* The [extension.N] of the configuration file, or NULL. */
const struct admin_conf_ext *
admin_conf_find(struct admin *a, const char *number)
{
    const struct admin_conf_ext *found = NULL;

    pthread_mutex_lock(&a->conf_mu);
    for (size_t i = 0; i < a->confs->count && !found; i++)
        if (strcmp(a->confs->v[i].number, number) == 0)
            found = &a->confs->v[i];
    pthread_mutex_unlock(&a->conf_mu);
    return found;
}

void
admin_conf_reload(struct admin *a, const struct admin_conf_ext *exts,
                  size_t count)
{
    if (!a)
        return;
    struct admin_conf_set *cs = admin_conf_set_new(exts, count);
    pthread_mutex_lock(&a->conf_mu);
    cs->older = a->confs;
    a->confs = cs;
    pthread_mutex_unlock(&a->conf_mu);
}

static json_t *
ext_json(struct admin *a, const struct admin_ext_info *e)
{
    const struct admin_conf_ext *cf = admin_conf_find(a, e->number);
    json_t *j = json_pack("{s:s, s:s, s:b, s:i, s:s}", "number", e->number,
                          "name", e->display, "enabled", e->enabled,
                          "bindings", (json_int_t)e->bindings, "source",
                          cf ? "config" : "api");

    if (cf) {
        json_object_set_new(j, "config_file", json_string(cf->file));
        json_object_set_new(j, "config_line", json_integer(cf->line));
    }
    return j;
}

/* 409 for a change to an extension the configuration file defines: the
 * file is its source, and a change made here would be undone by the next
 * start. */
static enum MHD_Result
send_conf_conflict(struct MHD_Connection *c, const struct admin_conf_ext *cf,
                   const char *what)
{
    char why[600];

    if (cf->line)
        snprintf(why, sizeof(why),
                 "extension %s is defined in the configuration file %s "
                 "line %u ([extension.%s]): %s it there and restart; the "
                 "API cannot change it",
                 cf->number, cf->file, cf->line, cf->number, what);
    else
        snprintf(why, sizeof(why),
                 "extension %s is defined by --set on the command line: %s "
                 "it there and restart; the API cannot change it",
                 cf->number, what);
    return admin_send_json(
        c, MHD_HTTP_CONFLICT,
        json_pack("{s:s, s:i, s:s, s:s, s:s, s:i}", "error", why, "status",
                  MHD_HTTP_CONFLICT, "field", "number", "source", "config",
                  "config_file", cf->file, "config_line", (int)cf->line));
}

/* ---- durability of extension changes ---------------------------------- */

struct store_mark
admin_write_mark(struct admin *a)
{
    return a->store ? store_mark(a->store) : (struct store_mark){0};
}

static const char *
commit_reason(int rc)
{
    switch (rc) {
    case -ETIMEDOUT:
        return "the database did not finish the write in time (it may "
               "still be saved)";
    case -ENOSPC:
        return "the store's write queue is full";
    case -EIO:
        return "the database write failed (see the daemon's log)";
    case -ESHUTDOWN:
        return "the daemon is stopping";
    default:
        return "store error";
    }
}

/* Wait until the registrar's writes queued since m are committed: only
 * then is a change acknowledged. 0 or the store_commit error (logged). */
int
admin_commit_writes(struct admin *a, struct store_mark m, const char *what,
              const char *ext)
{
    if (!a->store)
        return 0;
    int rc = store_commit(a->store, m, COMMIT_TIMEOUT_MS);
    if (rc < 0)
        log_error("admin", "%s ext=%s: not saved to disk: %s", what, ext,
                  commit_reason(rc));
    return rc;
}

/* 500 for a change that is in memory but not on disk. */
enum MHD_Result
admin_send_not_saved(struct MHD_Connection *c, int rc, const char *state)
{
    char why[400];

    snprintf(why, sizeof(why), "not saved to disk: %s; %s",
             commit_reason(rc), state);
    return admin_send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, why, NULL);
}

int
admin_gen_password(char *out, size_t outlen)
{
    /* 10 random bytes as 20 hex: 80 bits, typeable on a phone keypad */
    if (outlen < ADMIN_PASSWORD_LEN + 1)
        return -EINVAL;
    return admin_random_hex(out, ADMIN_PASSWORD_LEN / 2);
}

/* Validation of a request body. Sets *field and returns a reason, or
 * NULL when the value is acceptable. */
static const char *
check_name(json_t *v)
{
    if (!json_is_string(v))
        return "must be a string";
    const char *s = json_string_value(v);
    if (strlen(s) > 64)
        return "longer than 64 characters";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f || *p == '"' || *p == '<' || *p == '>')
            return "contains a forbidden character";
    return NULL;
}

static const char *
check_password(json_t *v)
{
    if (!json_is_string(v))
        return "must be a string";
    size_t n = strlen(json_string_value(v));
    if (n < 6 || n > 128)
        return "must be 6 to 128 characters";
    for (const unsigned char *p = (const unsigned char *)json_string_value(v);
         *p; p++)
        if (*p < 0x21 || *p == 0x7f)
            return "contains a space or control character";
    return NULL;
}

static json_t *
parse_body(struct MHD_Connection *c, struct admin_req *rq, enum MHD_Result *ret)
{
    json_error_t jerr;
    json_t *j;

    if (rq->body.len == 0) {
        *ret = admin_send_error(c, MHD_HTTP_BAD_REQUEST,
                          "empty body: JSON object "
                          "expected",
                          NULL);
        return NULL;
    }
    j = json_loadb(rq->body.data, rq->body.len, 0, &jerr);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        *ret = admin_send_error(c, MHD_HTTP_BAD_REQUEST,
                          "invalid JSON: object "
                          "expected",
                          NULL);
        return NULL;
    }
    return j;
}

/* Reject keys not in allowed (NULL-terminated): 400 naming the key. */
static const char *
unknown_key(json_t *obj, const char *const *allowed)
{
    const char *key;
    json_t *v;

    json_object_foreach(obj, key, v)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i]; i++)
            ok = ok || strcmp(allowed[i], key) == 0;
        if (!ok)
            return key;
    }
    return NULL;
}

/* The fields of an extension in a create or update body. */
struct ext_fields {
    const char *name;     /* in: the current (or ""); out: the body's */
    bool enabled;         /* in: the current (or true) */
    unsigned maxdev;      /* in: the current (or 1) */
    const char *password; /* NULL when the body has none */
};

/* The one validation of extension fields, for create and update: checks
 * every field the body has and copies it into f (borrowed from j);
 * fields it does not have keep f's values. Returns NULL, or the failing
 * field's name with the reason in *why. */
static const char *
ext_fields_check(json_t *j, struct ext_fields *f, const char **why)
{
    json_t *v;

    if ((v = json_object_get(j, "name"))) {
        if ((*why = check_name(v)))
            return "name";
        f->name = json_string_value(v);
    }
    if ((v = json_object_get(j, "enabled"))) {
        if (!json_is_boolean(v)) {
            *why = "must be true or false";
            return "enabled";
        }
        f->enabled = json_is_true(v);
    }
    if ((v = json_object_get(j, "max_push_devices"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > 16) {
            *why = "must be 1 to 16";
            return "max_push_devices";
        }
        f->maxdev = (unsigned)json_integer_value(v);
    }
    f->password = NULL;
    if ((v = json_object_get(j, "password"))) {
        if ((*why = check_password(v)))
            return "password";
        f->password = json_string_value(v);
    }
    return NULL;
}

static enum MHD_Result
ext_create(struct admin *a, struct MHD_Connection *c, struct admin_req *rq)
{
    static const char *const allowed[] = {
        "number", "name", "password", "enabled", "max_push_devices", NULL};
    enum MHD_Result ret;
    json_t *j = parse_body(c, rq, &ret), *v;
    const char *why, *bad;
    char pw[129], genpw[ADMIN_PASSWORD_LEN + 1];
    bool generated = false, enabled = true;
    unsigned maxdev = 1;
    struct admin_ext_info e;

    if (!j)
        return ret;
    bad = unknown_key(j, allowed);
    if (bad) {
        ret = admin_send_error(c, MHD_HTTP_BAD_REQUEST, "unknown field", bad);
        json_decref(j); /* after: bad points into j */
        return ret;
    }
    v = json_object_get(j, "number");
    if (!json_is_string(v) || !admin_number_ok(json_string_value(v))) {
        json_decref(j);
        return admin_send_error(c, MHD_HTTP_BAD_REQUEST,
                          "1 to 32 of A-Z a-z 0-9 _ . + - required", "number");
    }
    const char *number = json_string_value(v);
    struct ext_fields f = {.name = "", .enabled = true, .maxdev = 1};
    if ((bad = ext_fields_check(j, &f, &why))) {
        ret = admin_send_error(c, MHD_HTTP_BAD_REQUEST, why, bad);
        json_decref(j);
        return ret;
    }
    const char *name = f.name;
    enabled = f.enabled;
    maxdev = f.maxdev;
    if (f.password) {
        snprintf(pw, sizeof(pw), "%s", f.password);
    } else {
        if (admin_gen_password(genpw, sizeof(genpw)) < 0) {
            json_decref(j);
            return admin_send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                              "no randomness", NULL);
        }
        snprintf(pw, sizeof(pw), "%s", genpw);
        generated = true;
    }
    const struct admin_conf_ext *cf = admin_conf_find(a, number);
    if (cf) {
        ret = send_conf_conflict(c, cf, "change");
        json_decref(j);
        return ret;
    }
    if (admin_ext_find(a, number, &e)) {
        free(e.display);
        json_decref(j);
        return admin_send_error(c, MHD_HTTP_CONFLICT, "extension exists", "number");
    }
    struct store_mark m = admin_write_mark(a);
    if (reg_ext_set(a->reg, number, name, pw, enabled, maxdev) < 0) {
        json_decref(j);
        return admin_send_error(c, MHD_HTTP_BAD_REQUEST, "rejected by the registrar",
                          "number");
    }
    int rc = admin_commit_writes(a, m, "create", number);
    if (rc < 0) {
        /* Not acknowledged, so not kept: the delete is queued behind the
         * create, whatever became of it. */
        reg_ext_del(a->reg, number);
        json_decref(j);
        explicit_bzero(pw, sizeof(pw));
        return admin_send_not_saved(c, rc, "the extension was not created");
    }
    log_notice("admin", "extension created ext=%s", number);
    e = (struct admin_ext_info){.display = (char *)name, .enabled = enabled};
    snprintf(e.number, sizeof(e.number), "%s", number);
    json_t *out = ext_json(a, &e);
    if (generated)
        json_object_set_new(out, "password", json_string(pw));
    json_decref(j);
    explicit_bzero(pw, sizeof(pw));
    return admin_send_json(c, MHD_HTTP_CREATED, out);
}

/* Delete ext's provisioning link (a password change). True if there was
 * one. */
bool
admin_ext_revoke_link(struct admin *a, const char *ext)
{
    return admin_prov_del(a->prov, ext) == 0;
}

/* The extension's push-device limit, kept when credentials change. */
unsigned
admin_ext_max_push(struct admin *a, const char *number)
{
    struct reg_ext_info info;

    return reg_ext_get(a->reg, number, &info) == 0 ? info.max_push_devices : 1;
}

/* PATCH: name, enabled and max_push_devices change in place (the
 * registrar keeps the HA1 values); a password in the body re-sets the
 * credentials too. */
static enum MHD_Result
ext_update(struct admin *a, struct MHD_Connection *c, struct admin_req *rq,
           const struct admin_ext_info *cur)
{
    static const char *const allowed[] = {"name", "password", "enabled",
                                          "max_push_devices", NULL};
    enum MHD_Result ret;
    json_t *j = parse_body(c, rq, &ret);
    const char *why, *bad, *name = cur->display;
    bool enabled = cur->enabled;
    unsigned maxdev = admin_ext_max_push(a, cur->number);

    if (!j)
        return ret;
    if ((bad = unknown_key(j, allowed))) {
        ret = admin_send_error(c, MHD_HTTP_BAD_REQUEST, "unknown field", bad);
        json_decref(j); /* after: bad points into j */
        return ret;
    }
    struct ext_fields f = {.name = name, .enabled = enabled,
                           .maxdev = maxdev};
    if ((bad = ext_fields_check(j, &f, &why))) {
        ret = admin_send_error(c, MHD_HTTP_BAD_REQUEST, why, bad);
        json_decref(j);
        return ret;
    }
    name = f.name;
    enabled = f.enabled;
    maxdev = f.maxdev;
    if (!f.password) {
        /* Name, enabled flag, push limit: the credentials stay. */
        struct store_mark m = admin_write_mark(a);
        if (reg_ext_update(a->reg, cur->number, name, enabled, maxdev) < 0) {
            json_decref(j);
            return admin_send_error(c, MHD_HTTP_NOT_FOUND, "no such extension", NULL);
        }
        int rc = admin_commit_writes(a, m, "update", cur->number);
        if (rc < 0) {
            json_decref(j);
            return admin_send_not_saved(c, rc,
                                  "the change is in effect until the "
                                  "daemon restarts: try again");
        }
        struct admin_ext_info e = *cur;
        e.display = (char *)name;
        e.enabled = enabled;
        json_t *out = ext_json(a, &e);
        json_decref(j);
        log_notice("admin", "extension updated ext=%s", cur->number);
        return admin_send_json(c, MHD_HTTP_OK, out);
    }
    struct store_mark m = admin_write_mark(a);
    if (reg_ext_set(a->reg, cur->number, name, f.password, enabled,
                    maxdev) < 0) {
        json_decref(j);
        return admin_send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                          "rejected by the registrar", NULL);
    }
    /* A new password closes whatever the old one leaked through. */
    bool revoked = admin_ext_revoke_link(a, cur->number);
    int rc = admin_commit_writes(a, m, "password change", cur->number);
    if (rc < 0) {
        json_decref(j);
        return admin_send_not_saved(c, rc,
                              "the new password is in effect until the "
                              "daemon restarts: set it again");
    }
    struct admin_ext_info e = *cur;
    e.display = (char *)name;
    e.enabled = enabled;
    json_t *out = ext_json(a, &e);
    json_object_set_new(out, "prov_link_revoked", json_boolean(revoked));
    json_decref(j);
    log_notice("admin", "extension updated ext=%s%s", cur->number,
               revoked ? " (provisioning link revoked)" : "");
    return admin_send_json(c, MHD_HTTP_OK, out);
}

/* New generated password for cur; its provisioning link is revoked (it
 * may have leaked the old one, and hands out no password it does not
 * know). Returns 0 and *revoked, the store_commit error (the password is
 * in memory, not on disk), -EIO without randomness or -EINVAL. */
static int
set_new_password(struct admin *a, const struct admin_ext_info *cur, char *pw,
                 size_t pwlen, bool *revoked)
{
    if (admin_gen_password(pw, pwlen) < 0)
        return -EIO;
    struct store_mark m = admin_write_mark(a);
    if (reg_ext_set(a->reg, cur->number, cur->display, pw, cur->enabled,
                    admin_ext_max_push(a, cur->number)) < 0)
        return -EINVAL;
    *revoked = admin_ext_revoke_link(a, cur->number);
    return admin_commit_writes(a, m, "password reset", cur->number);
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
admin_route_ext(struct admin *a, struct MHD_Connection *c, const char *method,
          struct admin_req *rq, char **seg, size_t n)
{
    struct admin_ext_info e;
    enum MHD_Result ret;

    /* seg[0]="api" seg[1]="extensions" seg[2]=number ... */
    if (!admin_number_ok(seg[2]))
        return admin_send_error(c, MHD_HTTP_NOT_FOUND, "unknown extension", "number");
    if (!admin_ext_find(a, seg[2], &e))
        return admin_send_error(c, MHD_HTTP_NOT_FOUND, "unknown extension", "number");
    const struct admin_conf_ext *cf = admin_conf_find(a, e.number);
    bool changes = (n == 3 && (admin_is_method(method, "PATCH") || admin_is_method(method, "PUT") ||
                               admin_is_method(method, "DELETE"))) ||
                   (n == 4 && strcmp(seg[3], "password") == 0 &&
                    admin_is_method(method, "POST"));
    if (cf && changes) {
        ret = send_conf_conflict(c, cf,
                                 admin_is_method(method, "DELETE") ? "remove" : "change");
    } else if (n == 3 && admin_is_method(method, "GET")) {
        ret = admin_send_json(c, MHD_HTTP_OK, ext_json(a, &e));
    } else if (n == 3 && (admin_is_method(method, "PATCH") || admin_is_method(method, "PUT"))) {
        ret = ext_update(a, c, rq, &e);
    } else if (n == 3 && admin_is_method(method, "DELETE")) {
        struct store_mark m = admin_write_mark(a);
        reg_ext_del(a->reg, e.number);
        admin_prov_del(a->prov, e.number);
        if (a->src.device_del)
            a->src.device_del(a->src.arg, e.number, NULL);
        int rc = admin_commit_writes(a, m, "delete", e.number);
        if (rc < 0) {
            ret = admin_send_not_saved(c, rc,
                                 "the extension is gone until the daemon "
                                 "restarts and may come back then: try "
                                 "again");
        } else {
            log_notice("admin", "extension deleted ext=%s", e.number);
            ret = admin_send_empty(c, MHD_HTTP_NO_CONTENT);
        }
    } else if (n == 4 && strcmp(seg[3], "password") == 0 &&
               admin_is_method(method, "POST")) {
        char pw[ADMIN_PASSWORD_LEN + 1];
        bool revoked = false;
        int rc = set_new_password(a, &e, pw, sizeof(pw), &revoked);
        if (rc == -EIO || rc == -EINVAL) {
            ret = admin_send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                             "cannot set password", NULL);
        } else if (rc < 0) {
            ret = admin_send_not_saved(c, rc,
                                 "the new password is in effect until the "
                                 "daemon restarts: reset it again");
        } else {
            log_notice("admin", "password reset ext=%s%s", e.number,
                       revoked ? " (provisioning link revoked)" : "");
            ret = admin_send_json(c, MHD_HTTP_OK,
                            json_pack("{s:s, s:s, s:b}", "number", e.number,
                                      "password", pw, "prov_link_revoked",
                                      revoked));
        }
        explicit_bzero(pw, sizeof(pw));
    } else if (n == 4 && strcmp(seg[3], "registrations") == 0 &&
               admin_is_method(method, "GET")) {
        json_t *j = admin_reg_one(a, e.number);
        ret = j ? admin_send_json(c, MHD_HTTP_OK, j)
                : admin_send_error(c, MHD_HTTP_NOT_FOUND, "no such extension",
                             NULL);
    } else if (n == 4 && strcmp(seg[3], "push") == 0 && admin_is_method(method, "DELETE")) {
        ret = admin_push_device_del(a, c, e.number);
    } else if (n == 5 && strcmp(seg[3], "push") == 0 &&
               strcmp(seg[4], "test") == 0 && admin_is_method(method, "POST")) {
        ret = admin_push_test_start(a, c, rq, e.number);
    } else if (n >= 4 && strcmp(seg[3], "prov") == 0) {
        ret = admin_route_ext_prov(a, c, method, &e, seg, n);
    } else {
        ret = admin_send_error(
            c, n <= 5 ? MHD_HTTP_METHOD_NOT_ALLOWED : MHD_HTTP_NOT_FOUND,
            "no such route or method", NULL);
    }
    free(e.display);
    return ret;
}

static enum MHD_Result
route_api(struct admin *a, struct MHD_Connection *c, const char *method,
          struct admin_req *rq, char **seg, size_t n)
{
    if (n == 2 && strcmp(seg[1], "backup") == 0) {
        if (!admin_is_method(method, "GET"))
            return admin_send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED,
                              "method not allowed", NULL);
        return admin_route_backup(a, c);
    }
    if (n == 2 && strcmp(seg[1], "extensions") == 0) {
        if (admin_is_method(method, "POST"))
            return ext_create(a, c, rq);
        if (!admin_is_method(method, "GET"))
            return admin_send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED,
                              "method not allowed", NULL);
        struct ext_collect ec;
        json_t *items = json_array();
        ext_snapshot(a, NULL, &ec);
        for (size_t i = 0; i < ec.count; i++)
            json_array_append_new(items, ext_json(a, &ec.v[i]));
        ext_collect_fini(&ec);
        return admin_send_json(c, MHD_HTTP_OK, json_pack("{s:o}", "items", items));
    }
    if (n >= 3 && strcmp(seg[1], "extensions") == 0)
        return admin_route_ext(a, c, method, rq, seg, n);
    if (n == 3 && strcmp(seg[1], "push") == 0 && strcmp(seg[2], "check") == 0)
        return admin_route_push_check(a, c, method, rq);
    if (n == 2 && !admin_is_method(method, "GET"))
        return admin_send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed",
                          NULL);
    if (n == 2 && strcmp(seg[1], "registrations") == 0)
        return admin_route_registrations(a, c);
    if (n == 2 && strcmp(seg[1], "messages") == 0)
        return admin_send_json(c, MHD_HTTP_OK,
                         admin_messages_json(reg_messages(a->reg)));
    if (n == 2 && strcmp(seg[1], "calls") == 0)
        return admin_send_json(c, MHD_HTTP_OK,
                         admin_provider_list(a, a->src.list_calls, false));
    if (n == 2 && strcmp(seg[1], "media") == 0)
        return admin_send_json(c, MHD_HTTP_OK,
                         admin_provider_list(a, a->src.list_media, false));
    if (n == 2 && strcmp(seg[1], "pushes") == 0)
        return admin_send_json(c, MHD_HTTP_OK,
                         admin_provider_list(a, a->src.list_pushes, true));
    if (n == 2 && strcmp(seg[1], "wakeups") == 0)
        return admin_send_json(c, MHD_HTTP_OK,
                         admin_provider_list(a, a->src.list_wakeups, false));
    if (n == 2 && strcmp(seg[1], "devices") == 0)
        return admin_send_json(c, MHD_HTTP_OK,
                         admin_provider_list(a, a->src.list_devices, true));
    if (n == 3 && strcmp(seg[1], "wake") == 0 &&
        strcmp(seg[2], "latency") == 0 && admin_is_method(method, "GET"))
        return admin_route_wake_latency(a, c);
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
                                admin_assets[i].len, MHD_RESPMEM_PERSISTENT);
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
                          auth ? "bad token" : "missing bearer token", NULL);
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
    free(a->realm);
    explicit_bzero(a->token, sizeof(a->token));
    pthread_mutex_destroy(&a->log_mu);
    free(a);
}
