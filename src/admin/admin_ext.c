/*
 * admin/admin_ext: the extension routes of the admin API: list and create
 * (/api/extensions), show, change and delete one, reset its password
 * (/api/extensions/N[/password]), and the router for everything under
 * /api/extensions/N, which hands registrations, push devices and
 * provisioning links to their own files; docs/admin.md.
 *
 * Extensions live in the registrar (reg_ext_set and friends); the admin
 * keeps no copy. A change is acknowledged only once the store has
 * committed it (admin_commit_writes): a 2xx is on disk. The extensions of
 * the configuration file are read only here (409 naming the file and
 * line): the file is their source, and a change made here would be undone
 * by the next start. One function (ext_fields_check) validates the fields
 * of both create and update, so the two cannot drift apart.
 *
 * The admin thread serves one request at a time, so "409 if the extension
 * exists, else create" cannot race with another admin request, and only
 * the admin creates extensions while the daemon runs.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin_int.h"
#include "base/log.h"
#include "base/xmalloc.h"
#include "registrar/reg.h"
#include "store/store.h"

/* How long an extension change may wait for the store's commit. The
 * writer commits at once; this bounds a stuck disk (busy timeout 5 s). */
#define COMMIT_TIMEOUT_MS 6000

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

struct admin_conf_set *
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

void
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
    json_t *j =
        json_pack("{s:s, s:s, s:b, s:i, s:s}", "number", e->number, "name",
                  e->display, "enabled", e->enabled, "bindings",
                  (json_int_t)e->bindings, "source", cf ? "config" : "api");

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

    snprintf(why, sizeof(why), "not saved to disk: %s; %s", commit_reason(rc),
             state);
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

/* ---- validation of a request body -------------------------------------- */

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

/* ---- routes ------------------------------------------------------------ */

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
                                "1 to 32 of A-Z a-z 0-9 _ . + - required",
                                "number");
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
        return admin_send_error(c, MHD_HTTP_CONFLICT, "extension exists",
                                "number");
    }
    struct store_mark m = admin_write_mark(a);
    if (reg_ext_set(a->reg, number, name, pw, enabled, maxdev) < 0) {
        json_decref(j);
        return admin_send_error(c, MHD_HTTP_BAD_REQUEST,
                                "rejected by the registrar", "number");
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
    struct ext_fields f = {.name = name, .enabled = enabled, .maxdev = maxdev};
    if ((bad = ext_fields_check(j, &f, &why))) {
        ret = admin_send_error(c, MHD_HTTP_BAD_REQUEST, why, bad);
        json_decref(j);
        return ret;
    }
    name = f.name;
    enabled = f.enabled;
    maxdev = f.maxdev;
    struct store_mark m = admin_write_mark(a);
    bool revoked = false;
    if (!f.password) {
        /* Name, enabled flag, push limit: the credentials stay. */
        if (reg_ext_update(a->reg, cur->number, name, enabled, maxdev) < 0) {
            json_decref(j);
            return admin_send_error(c, MHD_HTTP_NOT_FOUND, "no such extension",
                                    NULL);
        }
    } else {
        if (reg_ext_set(a->reg, cur->number, name, f.password, enabled,
                        maxdev) < 0) {
            json_decref(j);
            return admin_send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                    "rejected by the registrar", NULL);
        }
        /* A new password closes whatever the old one leaked through. */
        revoked = admin_ext_revoke_link(a, cur->number);
    }
    int rc = admin_commit_writes(
        a, m, f.password ? "password change" : "update", cur->number);
    if (rc < 0) {
        json_decref(j);
        return admin_send_not_saved(
            c, rc,
            f.password ? "the new password is in effect until the daemon "
                         "restarts: set it again"
                       : "the change is in effect until the daemon restarts: "
                         "try again");
    }
    struct admin_ext_info e = *cur;
    e.display = (char *)name;
    e.enabled = enabled;
    json_t *out = ext_json(a, &e);
    if (f.password)
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

enum MHD_Result
admin_route_ext(struct admin *a, struct MHD_Connection *c, const char *method,
                struct admin_req *rq, char **seg, size_t n)
{
    struct admin_ext_info e;
    enum MHD_Result ret;

    /* seg[0]="api" seg[1]="extensions" seg[2]=number ... */
    if (!admin_number_ok(seg[2]))
        return admin_send_error(c, MHD_HTTP_NOT_FOUND, "unknown extension",
                                "number");
    if (!admin_ext_find(a, seg[2], &e))
        return admin_send_error(c, MHD_HTTP_NOT_FOUND, "unknown extension",
                                "number");
    const struct admin_conf_ext *cf = admin_conf_find(a, e.number);
    bool changes = (n == 3 && (admin_is_method(method, "PATCH") ||
                               admin_is_method(method, "PUT") ||
                               admin_is_method(method, "DELETE"))) ||
                   (n == 4 && strcmp(seg[3], "password") == 0 &&
                    admin_is_method(method, "POST"));
    if (cf && changes) {
        ret = send_conf_conflict(
            c, cf, admin_is_method(method, "DELETE") ? "remove" : "change");
    } else if (n == 3 && admin_is_method(method, "GET")) {
        ret = admin_send_json(c, MHD_HTTP_OK, ext_json(a, &e));
    } else if (n == 3 && (admin_is_method(method, "PATCH") ||
                          admin_is_method(method, "PUT"))) {
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
            ret =
                admin_send_not_saved(c, rc,
                                     "the new password is in effect until the "
                                     "daemon restarts: reset it again");
        } else {
            log_notice("admin", "password reset ext=%s%s", e.number,
                       revoked ? " (provisioning link revoked)" : "");
            ret = admin_send_json(c, MHD_HTTP_OK,
                                  json_pack("{s:s, s:s, s:b}", "number",
                                            e.number, "password", pw,
                                            "prov_link_revoked", revoked));
        }
        explicit_bzero(pw, sizeof(pw));
    } else if (n == 4 && strcmp(seg[3], "registrations") == 0 &&
               admin_is_method(method, "GET")) {
        json_t *j = admin_reg_one(a, e.number);
        ret = j ? admin_send_json(c, MHD_HTTP_OK, j)
                : admin_send_error(c, MHD_HTTP_NOT_FOUND, "no such extension",
                                   NULL);
    } else if (n == 4 && strcmp(seg[3], "push") == 0 &&
               admin_is_method(method, "DELETE")) {
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

/* /api/extensions: list (GET, every extension, sorted) or create (POST). */
enum MHD_Result
admin_route_extensions(struct admin *a, struct MHD_Connection *c,
                       const char *method, struct admin_req *rq)
{
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
