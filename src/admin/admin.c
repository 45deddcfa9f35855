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
/* GET /api/registrations without ?limit= (docs/admin.md "Pages"). */
#define ADMIN_PAGE_DEFAULT 100

const double admin_wake_bounds_s[ADMIN_WAKE_BUCKETS] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01,    0.025,  0.05,    0.1,    0.25,  0.5,    1};

const double admin_latency_bounds_s[ADMIN_LATENCY_BUCKETS] = {
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

struct admin {
    const struct admin_cfg *cfg;
    struct reg *reg;
    char *domain, *realm;
    char *db_path; /* GET /api/backup; may be "" */
    struct admin_sip_listener *listeners;
    size_t listener_count;
    struct {
        char *fcm_project_id, *fcm_sender_id, *apns_environment, *apns_topic;
    } push;
    struct admin_sources src;
    struct store *store;
    /* The configuration file's extensions: replaced on a reload
     * (admin_conf_reload); a replaced set stays until admin_stop, since a
     * request may still hold an entry of it. */
    pthread_mutex_t conf_mu;
    struct conf_set *confs;
    struct admin_prov *prov;
    char token[129];
    char base_url[256];
    unsigned port;
    struct MHD_Daemon *mhd;
    struct admin_guard *guard; /* request_timeout_s reaper */
    struct admin_jobs *jobs;   /* test pushes and checks */
    /* MHD's log lines, repeats folded (on_mhd_log) */
    pthread_mutex_t log_mu;
    char log_last[512];
    uint64_t log_at_ms, log_repeats;
    /* admin thread only */
    uint64_t requests, unauthorized;
};

/* Per-request state: the body, capped at cfg->max_body. */
struct req {
    struct buf body;
    bool too_big;
    bool answered;         /* a response is queued already (early 413) */
    struct admin_job *job; /* a slow route running on a job thread */
};

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

static int64_t
now_s(void)
{
    return (int64_t)time(NULL);
}

/* ---- responses --------------------------------------------------------- */

static enum MHD_Result
send_raw(struct MHD_Connection *c, unsigned status, const char *type,
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
static enum MHD_Result
send_json(struct MHD_Connection *c, unsigned status, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);

    json_decref(j);
    if (!s)
        return MHD_NO;
    return send_raw(c, status, "application/json", s, strlen(s),
                    MHD_RESPMEM_MUST_FREE);
}

static json_t *
error_json(unsigned status, const char *reason, const char *field)
{
    json_t *j = json_pack("{s:s, s:i}", "error", reason, "status", status);

    if (field)
        json_object_set_new(j, "field", json_string(field));
    return j;
}

static enum MHD_Result
send_error(struct MHD_Connection *c, unsigned status, const char *reason,
           const char *field)
{
    return send_json(c, status, error_json(status, reason, field));
}

static enum MHD_Result
send_empty(struct MHD_Connection *c, unsigned status)
{
    return send_raw(c, status, "application/json", (void *)"", 0,
                    MHD_RESPMEM_PERSISTENT);
}

/* ---- extensions (through the registrar) ------------------------------- */

struct ext_info {
    char number[33];
    char *display;
    bool enabled;
    size_t bindings;
};

struct ext_collect {
    const char *want; /* NULL: all */
    struct ext_info *v;
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
    struct ext_info *e = &ec->v[ec->count++];
    snprintf(e->number, sizeof(e->number), "%s", ext);
    e->display = xstrdup(display ? display : "");
    e->enabled = enabled;
    e->bindings = count;
}

static int
cmp_ext(const void *a, const void *b)
{
    const struct ext_info *x = a, *y = b;
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

static bool
ext_find(struct admin *a, const char *number, struct ext_info *out)
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

struct conf_set {
    struct admin_conf_ext *v; /* owned copies of the strings */
    size_t count;
    struct conf_set *older;
};

static struct conf_set *
conf_set_new(const struct admin_conf_ext *exts, size_t count)
{
    struct conf_set *cs = xcalloc(1, sizeof(*cs));

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
conf_sets_free(struct conf_set *cs)
{
    while (cs) {
        struct conf_set *older = cs->older;
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
static const struct admin_conf_ext *
conf_find(struct admin *a, const char *number)
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
    struct conf_set *cs = conf_set_new(exts, count);
    pthread_mutex_lock(&a->conf_mu);
    cs->older = a->confs;
    a->confs = cs;
    pthread_mutex_unlock(&a->conf_mu);
}

static json_t *
ext_json(struct admin *a, const struct ext_info *e)
{
    const struct admin_conf_ext *cf = conf_find(a, e->number);
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
    return send_json(
        c, MHD_HTTP_CONFLICT,
        json_pack("{s:s, s:i, s:s, s:s, s:s, s:i}", "error", why, "status",
                  MHD_HTTP_CONFLICT, "field", "number", "source", "config",
                  "config_file", cf->file, "config_line", (int)cf->line));
}

/* ---- durability of extension changes ---------------------------------- */

static struct store_mark
write_mark(struct admin *a)
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
static int
commit_writes(struct admin *a, struct store_mark m, const char *what,
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
static enum MHD_Result
send_not_saved(struct MHD_Connection *c, int rc, const char *state)
{
    char why[400];

    snprintf(why, sizeof(why), "not saved to disk: %s; %s",
             commit_reason(rc), state);
    return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, why, NULL);
}

static int
gen_password(char *out, size_t outlen)
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
parse_body(struct MHD_Connection *c, struct req *rq, enum MHD_Result *ret)
{
    json_error_t jerr;
    json_t *j;

    if (rq->body.len == 0) {
        *ret = send_error(c, MHD_HTTP_BAD_REQUEST,
                          "empty body: JSON object "
                          "expected",
                          NULL);
        return NULL;
    }
    j = json_loadb(rq->body.data, rq->body.len, 0, &jerr);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        *ret = send_error(c, MHD_HTTP_BAD_REQUEST,
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
ext_create(struct admin *a, struct MHD_Connection *c, struct req *rq)
{
    static const char *const allowed[] = {
        "number", "name", "password", "enabled", "max_push_devices", NULL};
    enum MHD_Result ret;
    json_t *j = parse_body(c, rq, &ret), *v;
    const char *why, *bad;
    char pw[129], genpw[ADMIN_PASSWORD_LEN + 1];
    bool generated = false, enabled = true;
    unsigned maxdev = 1;
    struct ext_info e;

    if (!j)
        return ret;
    bad = unknown_key(j, allowed);
    if (bad) {
        ret = send_error(c, MHD_HTTP_BAD_REQUEST, "unknown field", bad);
        json_decref(j); /* after: bad points into j */
        return ret;
    }
    v = json_object_get(j, "number");
    if (!json_is_string(v) || !admin_number_ok(json_string_value(v))) {
        json_decref(j);
        return send_error(c, MHD_HTTP_BAD_REQUEST,
                          "1 to 32 of A-Z a-z 0-9 _ . + - required", "number");
    }
    const char *number = json_string_value(v);
    struct ext_fields f = {.name = "", .enabled = true, .maxdev = 1};
    if ((bad = ext_fields_check(j, &f, &why))) {
        ret = send_error(c, MHD_HTTP_BAD_REQUEST, why, bad);
        json_decref(j);
        return ret;
    }
    const char *name = f.name;
    enabled = f.enabled;
    maxdev = f.maxdev;
    if (f.password) {
        snprintf(pw, sizeof(pw), "%s", f.password);
    } else {
        if (gen_password(genpw, sizeof(genpw)) < 0) {
            json_decref(j);
            return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                              "no randomness", NULL);
        }
        snprintf(pw, sizeof(pw), "%s", genpw);
        generated = true;
    }
    const struct admin_conf_ext *cf = conf_find(a, number);
    if (cf) {
        ret = send_conf_conflict(c, cf, "change");
        json_decref(j);
        return ret;
    }
    if (ext_find(a, number, &e)) {
        free(e.display);
        json_decref(j);
        return send_error(c, MHD_HTTP_CONFLICT, "extension exists", "number");
    }
    struct store_mark m = write_mark(a);
    if (reg_ext_set(a->reg, number, name, pw, enabled, maxdev) < 0) {
        json_decref(j);
        return send_error(c, MHD_HTTP_BAD_REQUEST, "rejected by the registrar",
                          "number");
    }
    int rc = commit_writes(a, m, "create", number);
    if (rc < 0) {
        /* Not acknowledged, so not kept: the delete is queued behind the
         * create, whatever became of it. */
        reg_ext_del(a->reg, number);
        json_decref(j);
        explicit_bzero(pw, sizeof(pw));
        return send_not_saved(c, rc, "the extension was not created");
    }
    log_notice("admin", "extension created ext=%s", number);
    e = (struct ext_info){.display = (char *)name, .enabled = enabled};
    snprintf(e.number, sizeof(e.number), "%s", number);
    json_t *out = ext_json(a, &e);
    if (generated)
        json_object_set_new(out, "password", json_string(pw));
    json_decref(j);
    explicit_bzero(pw, sizeof(pw));
    return send_json(c, MHD_HTTP_CREATED, out);
}

/* Delete ext's provisioning link (a password change). True if there was
 * one. */
static bool
revoke_link(struct admin *a, const char *ext)
{
    return admin_prov_del(a->prov, ext) == 0;
}

/* The extension's push-device limit, kept when credentials change. */
static unsigned
cur_max_push(struct admin *a, const char *number)
{
    struct reg_ext_info info;

    return reg_ext_get(a->reg, number, &info) == 0 ? info.max_push_devices : 1;
}

/* PATCH: name, enabled and max_push_devices change in place (the
 * registrar keeps the HA1 values); a password in the body re-sets the
 * credentials too. */
static enum MHD_Result
ext_update(struct admin *a, struct MHD_Connection *c, struct req *rq,
           const struct ext_info *cur)
{
    static const char *const allowed[] = {"name", "password", "enabled",
                                          "max_push_devices", NULL};
    enum MHD_Result ret;
    json_t *j = parse_body(c, rq, &ret);
    const char *why, *bad, *name = cur->display;
    bool enabled = cur->enabled;
    unsigned maxdev = cur_max_push(a, cur->number);

    if (!j)
        return ret;
    if ((bad = unknown_key(j, allowed))) {
        ret = send_error(c, MHD_HTTP_BAD_REQUEST, "unknown field", bad);
        json_decref(j); /* after: bad points into j */
        return ret;
    }
    struct ext_fields f = {.name = name, .enabled = enabled,
                           .maxdev = maxdev};
    if ((bad = ext_fields_check(j, &f, &why))) {
        ret = send_error(c, MHD_HTTP_BAD_REQUEST, why, bad);
        json_decref(j);
        return ret;
    }
    name = f.name;
    enabled = f.enabled;
    maxdev = f.maxdev;
    if (!f.password) {
        /* Name, enabled flag, push limit: the credentials stay. */
        struct store_mark m = write_mark(a);
        if (reg_ext_update(a->reg, cur->number, name, enabled, maxdev) < 0) {
            json_decref(j);
            return send_error(c, MHD_HTTP_NOT_FOUND, "no such extension", NULL);
        }
        int rc = commit_writes(a, m, "update", cur->number);
        if (rc < 0) {
            json_decref(j);
            return send_not_saved(c, rc,
                                  "the change is in effect until the "
                                  "daemon restarts: try again");
        }
        struct ext_info e = *cur;
        e.display = (char *)name;
        e.enabled = enabled;
        json_t *out = ext_json(a, &e);
        json_decref(j);
        log_notice("admin", "extension updated ext=%s", cur->number);
        return send_json(c, MHD_HTTP_OK, out);
    }
    struct store_mark m = write_mark(a);
    if (reg_ext_set(a->reg, cur->number, name, f.password, enabled,
                    maxdev) < 0) {
        json_decref(j);
        return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                          "rejected by the registrar", NULL);
    }
    /* A new password closes whatever the old one leaked through. */
    bool revoked = revoke_link(a, cur->number);
    int rc = commit_writes(a, m, "password change", cur->number);
    if (rc < 0) {
        json_decref(j);
        return send_not_saved(c, rc,
                              "the new password is in effect until the "
                              "daemon restarts: set it again");
    }
    struct ext_info e = *cur;
    e.display = (char *)name;
    e.enabled = enabled;
    json_t *out = ext_json(a, &e);
    json_object_set_new(out, "prov_link_revoked", json_boolean(revoked));
    json_decref(j);
    log_notice("admin", "extension updated ext=%s%s", cur->number,
               revoked ? " (provisioning link revoked)" : "");
    return send_json(c, MHD_HTTP_OK, out);
}

/* New generated password for cur; its provisioning link is revoked (it
 * may have leaked the old one, and hands out no password it does not
 * know). Returns 0 and *revoked, the store_commit error (the password is
 * in memory, not on disk), -EIO without randomness or -EINVAL. */
static int
set_new_password(struct admin *a, const struct ext_info *cur, char *pw,
                 size_t pwlen, bool *revoked)
{
    if (gen_password(pw, pwlen) < 0)
        return -EIO;
    struct store_mark m = write_mark(a);
    if (reg_ext_set(a->reg, cur->number, cur->display, pw, cur->enabled,
                    cur_max_push(a, cur->number)) < 0)
        return -EINVAL;
    *revoked = revoke_link(a, cur->number);
    return commit_writes(a, m, "password reset", cur->number);
}

/* ---- registrations ----------------------------------------------------- */

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
            b, json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "contact", uri,
                         "source", src, "transport", tp_name(k->transport),
                         "user_agent", k->user_agent ? k->user_agent : "",
                         "instance", k->instance ? k->instance : "",
                         "expires_at", (json_int_t)k->expires_at, "expires_in",
                         (json_int_t)(left > 0 ? left : 0)));
    }
    json_array_append_new(rc->items,
                          json_pack("{s:s, s:s, s:b, s:o, s:[]}", "number", ext,
                                    "name", display ? display : "", "enabled",
                                    enabled, "bindings", b, "push"));
}

/* Replace a provider's full "token" by "token_prefix" (8 chars). */
static void
redact_device(json_t *d)
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

    redact_device(dc);
    json_object_set_new(
        dc, "state",
        json_string(device_state(dc, json_object_get(item, "bindings"),
                                 tokcopy)));
    free(tokcopy);
    json_array_append_new(json_object_get(item, "push"), dc);
}

/* The push devices of every item (a page, or one extension). */
static void
add_push(struct admin *a, json_t *items)
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

/* GET /api/extensions/N/registrations: one extension (NULL: unknown). */
static json_t *
registrations_one(struct admin *a, const char *number)
{
    struct reg_collect rc = {.items = json_array(), .now = now_s()};

    if (reg_list_ext(a->reg, number, collect_reg, &rc) < 0) {
        json_decref(rc.items);
        return NULL;
    }
    add_push(a, rc.items);
    return json_pack("{s:b, s:o}", "push_available",
                     a->src.list_devices != NULL, "items", rc.items);
}

/* GET /api/registrations[?limit=N][&after=EXT]: one page in listing
 * order (docs/admin.md "Pages"). */
static enum MHD_Result
route_registrations(struct admin *a, struct MHD_Connection *c)
{
    const char *ls = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
                                                 "limit");
    const char *after = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
                                                    "after");
    unsigned long long limit = ADMIN_PAGE_DEFAULT;

    if (ls && (slice_to_u64(slice_cstr(ls), REG_PAGE_MAX, &limit) < 0 ||
               limit == 0))
        return send_error(c, MHD_HTTP_BAD_REQUEST,
                          "limit must be a number from 1 to 1000", "limit");
    if (after && after[0] && !reg_ext_number_valid(after))
        return send_error(c, MHD_HTTP_BAD_REQUEST,
                          "after must be an extension number", "after");
    struct reg_collect rc = {.items = json_array(), .now = now_s()};
    struct reg_page pg;
    reg_list_page(a->reg, after, (size_t)limit, collect_reg, &rc, &pg);
    add_push(a, rc.items);
    return send_json(
        c, MHD_HTTP_OK,
        json_pack("{s:b, s:o, s:I, s:I, s:o}", "push_available",
                  a->src.list_devices != NULL, "items", rc.items, "total",
                  (json_int_t)pg.total, "limit", (json_int_t)limit, "next",
                  pg.more ? json_string(pg.next) : json_null()));
}

/* {"available": bool, "items": [...]} from an optional provider. */
static json_t *
provider_list(struct admin *a, admin_list_fn *fn, bool redact)
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
        json_array_foreach(items, i, d) redact_device(d);
    }
    return json_pack("{s:b, s:o}", "available", ok, "items", items);
}

/* ---- provisioning ------------------------------------------------------ */

static void
prov_url(struct admin *a, const char *token, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/prov/%s", a->base_url, token);
}

static json_t *
prov_doc(struct admin *a, const struct admin_prov_row *row,
         const struct ext_info *e)
{
    /* A configuration-file extension's password is the file's. */
    const struct admin_conf_ext *cf = conf_find(a, e->number);
    const char *password = cf ? cf->password : row->password;
    const char *host = a->cfg->sip_host[0] ? a->cfg->sip_host : a->domain;
    json_t *ports = json_object(), *tps = json_array();

    for (size_t i = 0; i < a->listener_count; i++) {
        const char *t = a->listeners[i].transport;
        if (!json_object_get(ports, t)) {
            json_object_set_new(ports, t, json_integer(a->listeners[i].port));
            /* TLS first: signalling (and SRTP keys in SDP) encrypted on
             * networks the phone does not control. */
            if (strcmp(t, "tls") == 0)
                json_array_insert_new(tps, 0, json_string(t));
            else
                json_array_append_new(tps, json_string(t));
        }
    }
    json_t *fcm, *apns;
    if (a->push.fcm_project_id) {
        fcm = json_pack("{s:b, s:s, s:s*}", "configured", 1, "project_id",
                        a->push.fcm_project_id, "sender_id",
                        a->push.fcm_sender_id);
    } else {
        fcm = json_pack("{s:b, s:s}", "configured", 0, "reason",
                        "FCM is not configured on this server: Android "
                        "phones cannot receive call pushes");
    }
    if (a->push.apns_environment) {
        apns = json_pack("{s:b, s:s, s:s*}", "configured", 1, "environment",
                         a->push.apns_environment, "topic", a->push.apns_topic);
    } else {
        apns = json_pack("{s:b, s:s}", "configured", 0, "reason",
                         "APNs is not configured on this server");
    }
    json_t *providers = json_array();
    if (a->push.apns_environment)
        json_array_append_new(providers, json_string("apns"));
    if (a->push.fcm_project_id)
        json_array_append_new(providers, json_string("fcm"));
    return json_pack(
        "{s:i, s:s, s:s, s:s, s:{s:s, s:o, s:o, s:s}, s:{s:s, s:s, s:s},"
        " s:{s:o, s:o, s:o}}",
        "version", 1, "extension", e->number, "display_name", e->display,
        "domain", a->domain, "server", "host", host, "ports", ports,
        "transports", tps, "transport",
        json_array_size(tps) ? json_string_value(json_array_get(tps, 0))
                             : "udp",
        "credentials", "username", e->number, "password",
        password, "realm", a->realm, "push", "providers", providers, "fcm",
        fcm, "apns", apns);
}

/* What the API and the page show of a link: its URL, lifetime and
 * remaining fetches (never the password). */
static json_t *
prov_json(struct admin *a, const struct admin_prov_row *row)
{
    char url[512];
    int64_t now = now_s(), left = row->expires_at - now;
    unsigned fleft =
        row->fetches < row->max_fetches ? row->max_fetches - row->fetches : 0;
    const char *state = left <= 0 ? "expired" : fleft == 0 ? "used up"
                                                           : "active";

    prov_url(a, row->token, url, sizeof(url));
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:i, s:i, s:i, s:s}", "ext",
                     row->ext, "url", url, "created_at",
                     (json_int_t)row->created_at, "expires_at",
                     (json_int_t)row->expires_at, "expires_in",
                     (json_int_t)(left > 0 ? left : 0), "fetches",
                     (int)row->fetches, "max_fetches", (int)row->max_fetches,
                     "fetches_left", (int)fleft, "state", state);
}

static enum MHD_Result
prov_create(struct admin *a, struct MHD_Connection *c, const struct ext_info *e)
{
    struct admin_prov_row row = {.created_at = now_s()};
    const struct admin_conf_ext *cf = conf_find(a, e->number);

    row.expires_at = row.created_at + a->cfg->prov_link_ttl_s;
    row.max_fetches = a->cfg->prov_link_max_fetches;
    snprintf(row.ext, sizeof(row.ext), "%s", e->number);
    if (admin_random_hex(row.token, ADMIN_PROV_TOKEN_LEN / 2) < 0 ||
        (!cf && gen_password(row.password, sizeof(row.password)) < 0))
        return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "no randomness",
                          NULL);
    /* An API extension gets a new password the link can hand out (the
     * registrar keeps only HA1 values). A configuration-file extension
     * keeps the file's, which the document reads when fetched. */
    if (!cf) {
        struct store_mark m = write_mark(a);
        if (reg_ext_set(a->reg, e->number, e->display, row.password,
                        e->enabled, cur_max_push(a, e->number)) < 0) {
            explicit_bzero(&row, sizeof(row));
            return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                              "rejected by the registrar", NULL);
        }
        /* The old link (if any) handed out the old password. */
        revoke_link(a, e->number);
        int rc = commit_writes(a, m, "provisioning password", e->number);
        if (rc < 0) {
            explicit_bzero(&row, sizeof(row));
            return send_not_saved(c, rc,
                                  "the extension's new password is in "
                                  "effect until restart and no link was "
                                  "made: try again");
        }
    }
    if (admin_prov_put(a->prov, &row) < 0) {
        explicit_bzero(&row, sizeof(row));
        return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                          "cannot store the link", NULL);
    }
    log_notice("admin", "provisioning link created ext=%s expires_at=%lld",
               e->number, (long long)row.expires_at);
    json_t *out = prov_json(a, &row);
    explicit_bzero(&row, sizeof(row));
    return send_json(c, MHD_HTTP_CREATED, out);
}

/* ---- metrics ----------------------------------------------------------- */

static void
metric(struct buf *b, const char *name, const char *type, const char *help,
       uint64_t value)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name,
               type, name, (unsigned long long)value);
}

static void
metric2(struct buf *b, const char *name, const char *help, const uint64_t v[2])
{
    buf_printf(b,
               "# HELP %s %s\n# TYPE %s counter\n%s{provider=\"apns\"} %llu\n"
               "%s{provider=\"fcm\"} %llu\n",
               name, help, name, name, (unsigned long long)v[0], name,
               (unsigned long long)v[1]);
}

static void
wake_hist(struct buf *b, const char *name, const char *help,
          const struct admin_wake_lat *l)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (int i = 0; i < ADMIN_WAKE_BUCKETS; i++)
        buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name,
                   admin_wake_bounds_s[i], (unsigned long long)l->bucket[i]);
    buf_printf(b,
               "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n"
               "%s_count %llu\n",
               name, (unsigned long long)l->count, name, l->sum_s, name,
               (unsigned long long)l->count);
}

static char *
metrics_text(struct admin *a, size_t *len)
{
    static const char *const methods[ADMIN_M_COUNT] = {
        "INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "other"};
    struct reg_stats rs;
    struct admin_counters k = {0};
    struct buf b;

    reg_get_stats(a->reg, &rs);
    if (a->src.counters)
        a->src.counters(a->src.arg, &k);
    buf_init(&b, 0);
    metric(&b, "pushpbx_extensions", "gauge", "Extensions configured.",
           rs.extensions);
    metric(&b, "pushpbx_registrations", "gauge",
           "SIP bindings (registered contacts) now.", rs.bindings);
    metric(&b, "pushpbx_push_devices", "gauge", "Push devices stored now.",
           k.push_devices);
    metric(&b, "pushpbx_register_requests_total", "counter",
           "REGISTER requests handled.", rs.registers);
    metric(&b, "pushpbx_auth_failures_total", "counter",
           "Failed digest authentications (wrong credentials, unknown "
           "user).",
           rs.auth_failures);
    metric(&b, "pushpbx_throttled_total", "counter",
           "Requests refused (403) because their source was blocked.",
           rs.throttled);
    metric(&b, "pushpbx_throttled_sources_total", "counter",
           "Times a source address got blocked for failed "
           "authentications.",
           rs.blocks);
    metric(&b, "pushpbx_store_errors_total", "counter",
           "Registrar writes the store refused.", rs.store_errors);
    metric(&b, "pushpbx_calls_total", "counter", "Calls handled.",
           k.calls_total);
    metric(&b, "pushpbx_calls_answered_total", "counter",
           "Calls answered (a branch sent 2xx).", k.calls_answered);
    metric(&b, "pushpbx_calls_active", "gauge", "Calls in progress.",
           k.calls_active);
    if (k.media_relay_count) {
        static const char *const names[3] = {
            "pushpbx_media_relay_up", "pushpbx_media_relay_requests_total",
            "pushpbx_media_relay_timeouts_total"};
        static const char *const helps[3] = {
            "rtpengine answering (1) or marked down (0).",
            "ng requests sent to this rtpengine (not counting repeats).",
            "ng requests this rtpengine did not answer."};
        for (int m = 0; m < 3; m++) {
            buf_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", names[m],
                       helps[m], names[m], m ? "counter" : "gauge");
            for (size_t i = 0; i < k.media_relay_count; i++) {
                const struct admin_media_relay *r = &k.media_relay[i];
                buf_printf(&b, "%s{relay=\"%s\"} %llu\n", names[m], r->addr,
                           (unsigned long long)(m == 0   ? r->up
                                                : m == 1 ? r->requests
                                                         : r->timeouts));
            }
        }
    }
    metric(&b, "pushpbx_media_calls_total", "counter",
           "Calls whose media went through rtpengine (figures received).",
           k.media_calls);
    metric(&b, "pushpbx_media_one_way_calls_total", "counter",
           "Relayed calls with media from one side only (one-way audio).",
           k.media_one_way);
    metric(&b, "pushpbx_media_no_media_calls_total", "counter",
           "Relayed calls with no media from either side.", k.media_no_media);
    metric(&b, "pushpbx_media_failures_total", "counter",
           "Offers or answers no rtpengine took (timeout, error, none up).",
           k.media_failed);
    metric(&b, "pushpbx_media_passed_total", "counter",
           "Calls that went on without relay after a failed offer "
           "(on_failure = pass).",
           k.media_passed);
    metric(&b, "pushpbx_media_rejected_total", "counter",
           "Calls refused after a failed offer (on_failure = reject).",
           k.media_rejected);
    admin_media_metrics(&b, a->src.media_latency, a->src.arg);
    metric(&b, "pushpbx_pending_wakeups", "gauge",
           "Calls waiting for a pushed device to register.", k.pending_wakeups);
    metric2(&b, "pushpbx_pushes_sent_total", "Pushes the provider accepted.",
            k.pushes_sent);
    metric2(&b, "pushpbx_pushes_failed_total",
            "Pushes that failed (retries exhausted, auth, payload).",
            k.pushes_failed);
    metric2(&b, "pushpbx_pushes_dead_total",
            "Pushes answered with a dead token (device removed).",
            k.pushes_dead);
    buf_printf(&b, "# HELP pushpbx_push_latency_seconds Time from sending a "
                   "push to the provider's answer.\n"
                   "# TYPE pushpbx_push_latency_seconds histogram\n");
    for (int i = 0; i < ADMIN_LATENCY_BUCKETS; i++)
        buf_printf(&b, "pushpbx_push_latency_seconds_bucket{le=\"%g\"} %llu\n",
                   admin_latency_bounds_s[i],
                   (unsigned long long)k.push_latency_bucket[i]);
    buf_printf(&b,
               "pushpbx_push_latency_seconds_bucket{le=\"+Inf\"} %llu\n"
               "pushpbx_push_latency_seconds_sum %.6f\n"
               "pushpbx_push_latency_seconds_count %llu\n",
               (unsigned long long)k.push_latency_count, k.push_latency_sum_s,
               (unsigned long long)k.push_latency_count);
    struct admin_wake_lat lat[2] = {0};
    if (a->src.wake_latency)
        a->src.wake_latency(a->src.arg, false, lat);
    wake_hist(&b, "pushpbx_wake_invite_to_push_seconds",
              "Time from reading a call's INVITE to its push request being "
              "written to the provider connection (pushes sent at once).",
              &lat[0]);
    wake_hist(&b, "pushpbx_wake_register_to_invite_seconds",
              "Time from reading a pushed device's REGISTER to its INVITE "
              "being handed to the socket.",
              &lat[1]);
    buf_printf(&b, "# HELP pushpbx_sip_messages_total SIP requests received, "
                   "by method.\n# TYPE pushpbx_sip_messages_total counter\n");
    for (int i = 0; i < ADMIN_M_COUNT; i++)
        buf_printf(&b, "pushpbx_sip_messages_total{method=\"%s\"} %llu\n",
                   methods[i], (unsigned long long)k.sip_messages[i]);
    admin_messages_metrics(&b, reg_messages(a->reg));
    buf_printf(&b, "# HELP pushpbx_worker_sip_requests_total SIP requests "
                   "handled, by worker.\n# TYPE "
                   "pushpbx_worker_sip_requests_total counter\n");
    for (unsigned i = 0; i < k.workers && i < ADMIN_MAX_WORKERS; i++)
        buf_printf(&b,
                   "pushpbx_worker_sip_requests_total{worker=\"%u\"} %llu\n", i,
                   (unsigned long long)k.worker_requests[i]);
    buf_printf(&b, "# HELP pushpbx_worker_udp_steered_total UDP requests a "
                   "worker read and handed to the worker their Call-ID "
                   "hashes to.\n# TYPE pushpbx_worker_udp_steered_total "
                   "counter\n");
    for (unsigned i = 0; i < k.workers && i < ADMIN_MAX_WORKERS; i++)
        buf_printf(&b, "pushpbx_worker_udp_steered_total{worker=\"%u\"} %llu\n",
                   i, (unsigned long long)k.worker_udp_steered[i]);
    metric(&b, "pushpbx_admin_requests_total", "counter",
           "Admin HTTP requests.", a->requests);
    metric(&b, "pushpbx_admin_unauthorized_total", "counter",
           "Admin HTTP requests refused for a bad or missing token.",
           a->unauthorized);
    *len = b.len;
    return b.data;
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

static bool
is(const char *method, const char *m)
{
    return strcmp(method, m) == 0;
}

/* ---- slow routes: test push and push check on a job thread ------------ */

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
        *body = error_json(MHD_HTTP_NOT_FOUND, "extension has no push device",
                           NULL);
        return MHD_HTTP_NOT_FOUND;
    }
    *body = error_json(MHD_HTTP_BAD_GATEWAY, "push failed", NULL);
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
        *body = error_json(MHD_HTTP_INTERNAL_SERVER_ERROR,
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
 * (on_request). */
static enum MHD_Result
job_start(struct admin *a, struct MHD_Connection *c, struct req *rq,
          admin_job_fn *fn, const char *param)
{
    int rc = admin_jobs_submit(a->jobs, c, fn, a, param, &rq->job);

    if (rc == -EBUSY)
        return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                          "too many test pushes and checks running; try "
                          "again",
                          NULL);
    if (rc < 0)
        return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                          "admin server stopping", NULL);
    return MHD_YES;
}

static enum MHD_Result
push_test_start(struct admin *a, struct MHD_Connection *c, struct req *rq,
                const char *ext)
{
    if (!a->src.push_test)
        return send_error(c, MHD_HTTP_NOT_IMPLEMENTED,
                          "test push not available yet", NULL);
    return job_start(a, c, rq, job_push_test, ext);
}

static enum MHD_Result
route_ext(struct admin *a, struct MHD_Connection *c, const char *method,
          struct req *rq, char **seg, size_t n)
{
    struct ext_info e;
    enum MHD_Result ret;

    /* seg[0]="api" seg[1]="extensions" seg[2]=number ... */
    if (!admin_number_ok(seg[2]))
        return send_error(c, MHD_HTTP_NOT_FOUND, "unknown extension", "number");
    if (!ext_find(a, seg[2], &e))
        return send_error(c, MHD_HTTP_NOT_FOUND, "unknown extension", "number");
    const struct admin_conf_ext *cf = conf_find(a, e.number);
    bool changes = (n == 3 && (is(method, "PATCH") || is(method, "PUT") ||
                               is(method, "DELETE"))) ||
                   (n == 4 && strcmp(seg[3], "password") == 0 &&
                    is(method, "POST"));
    if (cf && changes) {
        ret = send_conf_conflict(c, cf,
                                 is(method, "DELETE") ? "remove" : "change");
    } else if (n == 3 && is(method, "GET")) {
        ret = send_json(c, MHD_HTTP_OK, ext_json(a, &e));
    } else if (n == 3 && (is(method, "PATCH") || is(method, "PUT"))) {
        ret = ext_update(a, c, rq, &e);
    } else if (n == 3 && is(method, "DELETE")) {
        struct store_mark m = write_mark(a);
        reg_ext_del(a->reg, e.number);
        admin_prov_del(a->prov, e.number);
        if (a->src.device_del)
            a->src.device_del(a->src.arg, e.number, NULL);
        int rc = commit_writes(a, m, "delete", e.number);
        if (rc < 0) {
            ret = send_not_saved(c, rc,
                                 "the extension is gone until the daemon "
                                 "restarts and may come back then: try "
                                 "again");
        } else {
            log_notice("admin", "extension deleted ext=%s", e.number);
            ret = send_empty(c, MHD_HTTP_NO_CONTENT);
        }
    } else if (n == 4 && strcmp(seg[3], "password") == 0 &&
               is(method, "POST")) {
        char pw[ADMIN_PASSWORD_LEN + 1];
        bool revoked = false;
        int rc = set_new_password(a, &e, pw, sizeof(pw), &revoked);
        if (rc == -EIO || rc == -EINVAL) {
            ret = send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                             "cannot set password", NULL);
        } else if (rc < 0) {
            ret = send_not_saved(c, rc,
                                 "the new password is in effect until the "
                                 "daemon restarts: reset it again");
        } else {
            log_notice("admin", "password reset ext=%s%s", e.number,
                       revoked ? " (provisioning link revoked)" : "");
            ret = send_json(c, MHD_HTTP_OK,
                            json_pack("{s:s, s:s, s:b}", "number", e.number,
                                      "password", pw, "prov_link_revoked",
                                      revoked));
        }
        explicit_bzero(pw, sizeof(pw));
    } else if (n == 4 && strcmp(seg[3], "registrations") == 0 &&
               is(method, "GET")) {
        json_t *j = registrations_one(a, e.number);
        ret = j ? send_json(c, MHD_HTTP_OK, j)
                : send_error(c, MHD_HTTP_NOT_FOUND, "no such extension",
                             NULL);
    } else if (n == 4 && strcmp(seg[3], "push") == 0 && is(method, "DELETE")) {
        const char *id =
            MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "id");
        if (!a->src.device_del)
            ret = send_error(c, MHD_HTTP_NOT_IMPLEMENTED,
                             "push devices not available yet", NULL);
        else if (a->src.device_del(a->src.arg, e.number, id) < 0)
            ret =
                send_error(c, MHD_HTTP_NOT_FOUND, "no such push device", "id");
        else
            ret = send_empty(c, MHD_HTTP_NO_CONTENT);
    } else if (n == 5 && strcmp(seg[3], "push") == 0 &&
               strcmp(seg[4], "test") == 0 && is(method, "POST")) {
        ret = push_test_start(a, c, rq, e.number);
    } else if (n >= 4 && strcmp(seg[3], "prov") == 0) {
        struct admin_prov_row row;
        char url[512];
        int rc = admin_prov_by_ext(a->prov, e.number, &row);
        if (n == 4 && is(method, "POST")) {
            ret = prov_create(a, c, &e);
        } else if (n == 4 && is(method, "DELETE")) {
            ret = rc == 0 && admin_prov_del(a->prov, e.number) == 0
                      ? send_empty(c, MHD_HTTP_NO_CONTENT)
                      : send_error(c, MHD_HTTP_NOT_FOUND,
                                   "no provisioning link", NULL);
        } else if (rc != 0 && is(method, "GET")) {
            ret =
                send_error(c, MHD_HTTP_NOT_FOUND, "no provisioning link", NULL);
        } else if (n == 4 && is(method, "GET")) {
            ret = send_json(c, MHD_HTTP_OK, prov_json(a, &row));
        } else if (n == 5 && is(method, "GET") &&
                   (strcmp(seg[4], "qr.svg") == 0 ||
                    strcmp(seg[4], "qr.png") == 0)) {
            size_t len = 0;
            bool svg = strcmp(seg[4], "qr.svg") == 0;
            prov_url(a, row.token, url, sizeof(url));
            void *img = svg ? (void *)admin_qr_svg(url, &len)
                            : (void *)admin_qr_png(url, 8, &len);
            ret = img ? send_raw(c, MHD_HTTP_OK,
                                 svg ? "image/svg+xml" : "image/png", img, len,
                                 MHD_RESPMEM_MUST_FREE)
                      : send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                   "cannot encode QR", NULL);
        } else {
            ret = send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED,
                             "method not allowed", NULL);
        }
        explicit_bzero(&row, sizeof(row));
    } else {
        ret = send_error(
            c, n <= 5 ? MHD_HTTP_METHOD_NOT_ALLOWED : MHD_HTTP_NOT_FOUND,
            "no such route or method", NULL);
    }
    free(e.display);
    return ret;
}

/* POST /api/push/check: the authenticated step of the push check, run by
 * the daemon with its own [apns]/[fcm] credentials. */
static enum MHD_Result
push_check(struct admin *a, struct MHD_Connection *c, const char *method,
           struct req *rq)
{
    if (!is(method, "POST"))
        return send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed",
                          NULL);
    if (!a->src.push_check)
        return send_error(c, MHD_HTTP_NOT_IMPLEMENTED,
                          "push check not available", NULL);
    return job_start(a, c, rq, job_push_check, NULL);
}

static json_t *
wake_lat_json(const struct admin_wake_lat *l)
{
    json_t *b = json_object();
    for (int i = 0; i < ADMIN_WAKE_BUCKETS; i++) {
        char le[32];
        snprintf(le, sizeof(le), "%g", admin_wake_bounds_s[i]);
        json_object_set_new(b, le, json_integer((json_int_t)l->bucket[i]));
    }
    return json_pack(
        "{s:I, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, "
        "s:o}",
        "count", (json_int_t)l->count, "sum_s", l->sum_s, "samples",
        (json_int_t)l->samples, "min_us", (json_int_t)l->min_us, "p50_us",
        (json_int_t)l->p50_us, "p90_us", (json_int_t)l->p90_us, "p99_us",
        (json_int_t)l->p99_us, "p999_us", (json_int_t)l->p999_us, "max_us",
        (json_int_t)l->max_us, "mean_us", l->mean_us, "buckets_le", b);
}

/* GET /api/wake/latency: the wake-path intervals with exact percentiles
 * (bench/wake-bench.sh). */
static enum MHD_Result
route_wake_latency(struct admin *a, struct MHD_Connection *c)
{
    struct admin_wake_lat lat[2] = {0};

    if (!a->src.wake_latency)
        return send_json(c, MHD_HTTP_OK, json_pack("{s:b}", "available", 0));
    a->src.wake_latency(a->src.arg, true, lat);
    return send_json(c, MHD_HTTP_OK,
                     json_pack("{s:b, s:o, s:o}", "available", 1,
                               "invite_to_push", wake_lat_json(&lat[0]),
                               "register_to_invite", wake_lat_json(&lat[1])));
}

/* GET /api/backup: a consistent copy of the store's database, taken with
 * SQLite's online backup API while the daemon runs (store_backup), sent
 * as a file download. The copy is made next to the database and unlinked
 * once open. Runs on the admin thread: for a large database other admin
 * requests wait while the copy is made (docs/install.md). */
static enum MHD_Result
route_backup(struct admin *a, struct MHD_Connection *c)
{
    char tmp[4096], err[512], name[64], disp[128];
    struct stat st;

    if (!a->db_path || !a->db_path[0])
        return send_error(c, MHD_HTTP_NOT_IMPLEMENTED, "no database", NULL);
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.backup-XXXXXX", a->db_path) >=
        sizeof(tmp))
        return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "path too long",
                          NULL);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                          "cannot create the backup file", NULL);
    close(fd);
    if (store_backup(a->db_path, tmp, err, sizeof(err)) < 0) {
        unlink(tmp);
        log_error("admin", "%s", err);
        return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, err, NULL);
    }
    fd = open(tmp, O_RDONLY | O_CLOEXEC);
    unlink(tmp);
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                          "cannot read the backup", NULL);
    }
    struct MHD_Response *r =
        MHD_create_response_from_fd((uint64_t)st.st_size, fd);
    if (!r) {
        close(fd);
        return MHD_NO;
    }
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(name, sizeof(name), "pushpbx-%Y%m%d-%H%M%S.db", &tm);
    snprintf(disp, sizeof(disp), "attachment; filename=\"%s\"", name);
    MHD_add_response_header(r, "Content-Type", "application/vnd.sqlite3");
    MHD_add_response_header(r, "Content-Disposition", disp);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    log_notice("admin", "backup sent (%lld bytes)", (long long)st.st_size);
    return ret;
}

static enum MHD_Result
route_api(struct admin *a, struct MHD_Connection *c, const char *method,
          struct req *rq, char **seg, size_t n)
{
    if (n == 2 && strcmp(seg[1], "backup") == 0) {
        if (!is(method, "GET"))
            return send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED,
                              "method not allowed", NULL);
        return route_backup(a, c);
    }
    if (n == 2 && strcmp(seg[1], "extensions") == 0) {
        if (is(method, "POST"))
            return ext_create(a, c, rq);
        if (!is(method, "GET"))
            return send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED,
                              "method not allowed", NULL);
        struct ext_collect ec;
        json_t *items = json_array();
        ext_snapshot(a, NULL, &ec);
        for (size_t i = 0; i < ec.count; i++)
            json_array_append_new(items, ext_json(a, &ec.v[i]));
        ext_collect_fini(&ec);
        return send_json(c, MHD_HTTP_OK, json_pack("{s:o}", "items", items));
    }
    if (n >= 3 && strcmp(seg[1], "extensions") == 0)
        return route_ext(a, c, method, rq, seg, n);
    if (n == 3 && strcmp(seg[1], "push") == 0 && strcmp(seg[2], "check") == 0)
        return push_check(a, c, method, rq);
    if (n == 2 && !is(method, "GET"))
        return send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed",
                          NULL);
    if (n == 2 && strcmp(seg[1], "registrations") == 0)
        return route_registrations(a, c);
    if (n == 2 && strcmp(seg[1], "messages") == 0)
        return send_json(c, MHD_HTTP_OK,
                         admin_messages_json(reg_messages(a->reg)));
    if (n == 2 && strcmp(seg[1], "calls") == 0)
        return send_json(c, MHD_HTTP_OK,
                         provider_list(a, a->src.list_calls, false));
    if (n == 2 && strcmp(seg[1], "media") == 0)
        return send_json(c, MHD_HTTP_OK,
                         provider_list(a, a->src.list_media, false));
    if (n == 2 && strcmp(seg[1], "pushes") == 0)
        return send_json(c, MHD_HTTP_OK,
                         provider_list(a, a->src.list_pushes, true));
    if (n == 2 && strcmp(seg[1], "wakeups") == 0)
        return send_json(c, MHD_HTTP_OK,
                         provider_list(a, a->src.list_wakeups, false));
    if (n == 2 && strcmp(seg[1], "devices") == 0)
        return send_json(c, MHD_HTTP_OK,
                         provider_list(a, a->src.list_devices, true));
    if (n == 3 && strcmp(seg[1], "wake") == 0 &&
        strcmp(seg[2], "latency") == 0 && is(method, "GET"))
        return route_wake_latency(a, c);
    if (n == 3 && strcmp(seg[1], "media") == 0 &&
        strcmp(seg[2], "latency") == 0 && is(method, "GET"))
        return send_json(c, MHD_HTTP_OK,
                         admin_media_latency_json(a->src.media_latency,
                                                  a->src.arg));
    if (n == 2 && strcmp(seg[1], "status") == 0) {
        struct reg_stats rs;
        reg_get_stats(a->reg, &rs);
        return send_json(
            c, MHD_HTTP_OK,
            json_pack("{s:s, s:s, s:I, s:I, s:{s:b, s:b, s:b, s:b}}", "version",
                      PUSHPBX_VERSION, "domain", a->domain, "extensions",
                      (json_int_t)rs.extensions, "registrations",
                      (json_int_t)rs.bindings, "available", "calls",
                      a->src.list_calls != NULL, "pushes",
                      a->src.list_pushes != NULL, "wakeups",
                      a->src.list_wakeups != NULL, "devices",
                      a->src.list_devices != NULL));
    }
    return send_error(c, MHD_HTTP_NOT_FOUND, "no such route", NULL);
}

/* The public provisioning document: the link's token is the credential. */
static enum MHD_Result
route_prov(struct admin *a, struct MHD_Connection *c, const char *token)
{
    struct admin_prov_row row;
    struct ext_info e;
    bool hex = strlen(token) == ADMIN_PROV_TOKEN_LEN;

    for (const char *p = token; hex && *p; p++)
        hex = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f');
    if (!hex || admin_prov_by_token(a->prov, token, &row) < 0)
        return send_error(c, MHD_HTTP_NOT_FOUND, "unknown or revoked link",
                          NULL);
    if (!ext_find(a, row.ext, &e)) {
        explicit_bzero(&row, sizeof(row));
        return send_error(c, MHD_HTTP_NOT_FOUND, "unknown or revoked link",
                          NULL);
    }
    /* A link that has served its purpose stays known so the phone's user
     * learns why it no longer works (410), not just that it does not. */
    const char *gone = NULL;
    if (now_s() >= row.expires_at)
        gone = "this provisioning link has expired: ask your administrator "
               "for a new one";
    else if (row.fetches >= row.max_fetches)
        gone = "this provisioning link has been used as many times as it "
               "may be: ask your administrator for a new one";
    if (gone) {
        log_info("admin", "provisioning link refused ext=%s: %s", row.ext,
                 now_s() >= row.expires_at ? "expired" : "fetch limit");
        explicit_bzero(&row, sizeof(row));
        free(e.display);
        return send_error(c, MHD_HTTP_GONE, gone, NULL);
    }
    /* Counted (committed) before the document leaves, so a crash cannot
     * give the limit back. */
    if (admin_prov_count_fetch(a->prov, row.ext) < 0) {
        explicit_bzero(&row, sizeof(row));
        free(e.display);
        return send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                          "cannot record the fetch", NULL);
    }
    log_info("admin", "provisioning document fetched ext=%s fetch=%u/%u",
             row.ext, row.fetches + 1, row.max_fetches);
    json_t *doc = prov_doc(a, &row, &e);
    explicit_bzero(&row, sizeof(row));
    free(e.display);
    return send_json(c, MHD_HTTP_OK, doc);
}

/* For monitoring, without a token: 200 when every part of the daemon
 * answered within its bound, else 503 naming the failing parts. Says
 * nothing secret (no counts, no names). */
static enum MHD_Result
route_healthz(struct admin *a, struct MHD_Connection *c)
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
    return send_json(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                     json_pack("{s:s, s:s, s:o, s:o}", "status",
                               ok ? "ok" : "unhealthy", "version",
                               PUSHPBX_VERSION, "failing", failing, "parts",
                               parts));
}

static enum MHD_Result
dispatch(struct admin *a, struct MHD_Connection *c, const char *url,
         const char *method, struct req *rq)
{
    char copy[512], *seg[MAX_SEGS + 1];
    size_t n;

    a->requests++;
    if (strlen(url) >= sizeof(copy))
        return send_error(c, MHD_HTTP_URI_TOO_LONG, "URL too long", NULL);
    n = split_url(url, copy, sizeof(copy), seg);
    if (n > MAX_SEGS)
        return send_error(c, MHD_HTTP_NOT_FOUND, "no such route", NULL);

    /* Public: the page's static files and provisioning links. */
    if (is(method, "GET") || is(method, "HEAD")) {
        const char *path = n == 0 ? "/index.html" : url;
        for (size_t i = 0; i < admin_asset_count; i++)
            if (strcmp(admin_assets[i].path, path) == 0)
                return send_raw(c, MHD_HTTP_OK, admin_assets[i].type,
                                (void *)admin_assets[i].data,
                                admin_assets[i].len, MHD_RESPMEM_PERSISTENT);
        if (n == 2 && strcmp(seg[0], "prov") == 0)
            return route_prov(a, c, seg[1]);
        if (n == 1 && strcmp(seg[0], "healthz") == 0)
            return route_healthz(a, c);
    }

    const char *auth =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!admin_bearer_ok(auth, a->token)) {
        a->unauthorized++;
        return send_error(c, MHD_HTTP_UNAUTHORIZED,
                          auth ? "bad token" : "missing bearer token", NULL);
    }
    if (rq->too_big)
        return send_error(c, MHD_HTTP_CONTENT_TOO_LARGE,
                          "request body too large", NULL);
    if (n == 1 && strcmp(seg[0], "metrics") == 0 && is(method, "GET")) {
        size_t len;
        char *text = metrics_text(a, &len);
        return send_raw(c, MHD_HTTP_OK, "text/plain; version=0.0.4", text, len,
                        MHD_RESPMEM_MUST_FREE);
    }
    if (n >= 2 && strcmp(seg[0], "api") == 0)
        return route_api(a, c, method, rq, seg, n);
    return send_error(c, MHD_HTTP_NOT_FOUND, "no such route", NULL);
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *c, const char *url,
           const char *method, const char *version, const char *upload,
           size_t *upload_size, void **con_cls)
{
    struct admin *a = cls;
    struct req *rq = *con_cls;

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
                return send_error(c, MHD_HTTP_CONTENT_TOO_LARGE,
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
        return body ? send_json(c, st, body) : send_empty(c, st);
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
    struct req *rq = *con_cls;

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
    a->confs = conf_set_new(o->conf_exts, o->conf_ext_count);

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
    conf_sets_free(a->confs);
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
