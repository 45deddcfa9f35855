/*
 * admin/admin_prov: provisioning links: the link table (see admin_int.h)
 * and, below it, the links' routes on the admin API
 * (/api/extensions/N/prov, its QR codes) and the public document a phone
 * fetches with a link (/prov/<token>; docs/admin.md).
 *
 * A link hands out the extension's SIP password: for an API extension a
 * new one set when the link is made (the registrar keeps only HA1 values),
 * for a configuration-file extension the file's, read when the document
 * is fetched. The link's token is the only credential of /prov/<token>.
 *
 * The table's rows live in the store's database (table prov_links: the
 * store owns every SQLite connection); this file keeps the index the
 * admin reads, in memory, loaded at start. A write is queued to the store and
 * waited for (store_commit) before memory changes and before the admin answers,
 * so a link handed out, a fetch counted or a revocation survives a crash.
 * A fetch is counted by the database itself (store_prov_count_fetch: one
 * UPDATE on the row that still holds the token, only while it may serve),
 * never by writing the index's row back: the limit holds across nodes
 * and a link another node revoked stays revoked.
 * In a cluster another node's write reaches the index through the change
 * feed: admin_prov_refresh reads one extension's row again,
 * admin_prov_reload every row (docs/cluster.md).
 *
 * Load: a few per administrator click and one per document fetched, on
 * the admin thread (the MHD thread handles one request at a time); in a
 * cluster, one read per change another node made to an extension, on the
 * store's listener thread. One mutex, held by each call from its lookup
 * to its commit or read included, so a row read from the store never
 * overwrites a newer write of this node. Rows: one per extension at most;
 * two hash tables (by extension, by token) of 1024 chains keep lookups
 * short up to the ~100k extensions we target.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin_int.h"
#include "base/list.h"
#include "base/log.h"
#include "base/xmalloc.h"
#include "registrar/reg.h"
#include "store/store.h"

#define NBUCKETS 1024
/* How long a link write may wait for the store (as admin_ext.c's extension
 * writes: the writer commits at once; this bounds a stuck disk). */
#define PROV_COMMIT_TIMEOUT_MS 6000

struct prov_node {
    struct list_node by_ext, by_tok;
    struct admin_prov_row row;
};

struct admin_prov {
    struct store *st; /* borrowed; NULL: memory only */
    pthread_mutex_t lock; /* the tables, and a write or read in progress */
    struct list_node ext_tab[NBUCKETS], tok_tab[NBUCKETS];
};

static size_t
hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h % NBUCKETS;
}

static struct prov_node *
find_ext(struct admin_prov *p, const char *ext)
{
    struct list_node *h = &p->ext_tab[hash(ext)];
    for (struct list_node *q = h->next; q != h; q = q->next) {
        struct prov_node *n = container_of(q, struct prov_node, by_ext);
        if (strcmp(n->row.ext, ext) == 0)
            return n;
    }
    return NULL;
}

static struct prov_node *
find_token(struct admin_prov *p, const char *token)
{
    struct list_node *h = &p->tok_tab[hash(token)];
    for (struct list_node *q = h->next; q != h; q = q->next) {
        struct prov_node *n = container_of(q, struct prov_node, by_tok);
        if (strcmp(n->row.token, token) == 0)
            return n;
    }
    return NULL;
}

static void
unlink_free(struct prov_node *n)
{
    if (!n)
        return;
    list_remove(&n->by_ext);
    list_remove(&n->by_tok);
    explicit_bzero(&n->row, sizeof(n->row));
    free(n);
}

/* Memory only: insert or replace (by extension and by token, like the
 * table's INSERT OR REPLACE). */
static void
index_put(struct admin_prov *p, const struct admin_prov_row *row)
{
    unlink_free(find_ext(p, row->ext));
    unlink_free(find_token(p, row->token));
    struct prov_node *n = xcalloc(1, sizeof(*n));
    n->row = *row;
    list_push_back(&p->ext_tab[hash(row->ext)], &n->by_ext);
    list_push_back(&p->tok_tab[hash(row->token)], &n->by_tok);
}

/* A store row as the index keeps it. */
static void
row_from(const struct store_prov *r, struct admin_prov_row *row)
{
    memset(row, 0, sizeof(*row));
    snprintf(row->ext, sizeof(row->ext), "%s", r->ext);
    snprintf(row->token, sizeof(row->token), "%s", r->token);
    snprintf(row->password, sizeof(row->password), "%s", r->password);
    row->created_at = r->created_at;
    row->expires_at = r->expires_at;
    row->fetches = r->fetches;
    row->max_fetches = r->max_fetches;
}

static int
load_row(const struct store_prov *r, void *arg)
{
    struct admin_prov_row row;

    row_from(r, &row);
    index_put(arg, &row);
    explicit_bzero(&row, sizeof(row));
    return 0;
}

int
admin_prov_open(struct store *st, const char *legacy_path,
                struct admin_prov **out, char *err, size_t errlen)
{
    struct admin_prov *p = xcalloc(1, sizeof(*p));

    p->st = st;
    pthread_mutex_init(&p->lock, NULL);
    for (size_t i = 0; i < NBUCKETS; i++) {
        list_init(&p->ext_tab[i]);
        list_init(&p->tok_tab[i]);
    }
    if (st) {
        char why[512] = "";
        int rc = store_prov_import(st, legacy_path, why, sizeof(why));
        if (rc < 0) {
            snprintf(err, errlen,
                     "admin: %s (move the file away to start without its "
                     "provisioning links)",
                     why);
            admin_prov_close(p);
            return rc;
        }
        rc = store_prov_load(st, load_row, p);
        if (rc < 0) {
            snprintf(err, errlen,
                     "admin: cannot read the provisioning links: %s",
                     strerror(-rc));
            admin_prov_close(p);
            return rc;
        }
    }
    *out = p;
    return 0;
}

static void
index_clear(struct admin_prov *p)
{
    for (size_t i = 0; i < NBUCKETS; i++) {
        struct list_node *h = &p->ext_tab[i];
        while (!list_empty(h))
            unlink_free(container_of(h->next, struct prov_node, by_ext));
    }
}

void
admin_prov_close(struct admin_prov *p)
{
    if (!p)
        return;
    index_clear(p);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

int
admin_prov_by_ext(struct admin_prov *p, const char *ext,
                  struct admin_prov_row *row)
{
    pthread_mutex_lock(&p->lock);
    struct prov_node *n = find_ext(p, ext);
    if (n)
        *row = n->row;
    pthread_mutex_unlock(&p->lock);
    return n ? 0 : -ENOENT;
}

int
admin_prov_by_token(struct admin_prov *p, const char *token,
                    struct admin_prov_row *row)
{
    pthread_mutex_lock(&p->lock);
    struct prov_node *n = find_token(p, token);
    if (n)
        *row = n->row;
    pthread_mutex_unlock(&p->lock);
    return n ? 0 : -ENOENT;
}

int
admin_prov_refresh(struct admin_prov *p, const char *ext)
{
    if (!p->st)
        return 0;
    pthread_mutex_lock(&p->lock);
    int rc = store_prov_read(p->st, ext, load_row, p);
    if (rc == -ENOENT) {
        unlink_free(find_ext(p, ext)); /* revoked (or never made) */
        rc = 0;
    }
    pthread_mutex_unlock(&p->lock);
    if (rc < 0)
        log_warn("admin", "cannot read the provisioning link of %s: %s", ext,
                 strerror(-rc));
    return rc;
}

struct prov_rows {
    struct admin_prov_row *v;
    size_t n, cap;
};

static void
rows_free(struct prov_rows *x)
{
    if (x->v)
        explicit_bzero(x->v, x->cap * sizeof(*x->v)); /* passwords */
    free(x->v);
}

/* admin_prov_reload's callback: rows kept aside until the read is whole.
 * Grown by copy, not realloc, so no freed block keeps a password. */
static int
take_row(const struct store_prov *r, void *arg)
{
    struct prov_rows *x = arg;
    if (x->n == x->cap) {
        size_t cap = x->cap ? 2 * x->cap : 64;
        struct admin_prov_row *v = xcalloc(cap, sizeof(*v));
        if (x->n)
            memcpy(v, x->v, x->n * sizeof(*v));
        rows_free(x);
        x->v = v;
        x->cap = cap;
    }
    row_from(r, &x->v[x->n++]);
    return 0;
}

int
admin_prov_reload(struct admin_prov *p, size_t *count)
{
    struct prov_rows x = {0};

    if (!p->st)
        return 0;
    pthread_mutex_lock(&p->lock);
    int rc = store_prov_load(p->st, take_row, &x);
    if (rc == 0) { /* replaced only by a complete read */
        index_clear(p);
        for (size_t i = 0; i < x.n; i++)
            index_put(p, &x.v[i]);
    }
    pthread_mutex_unlock(&p->lock);
    rows_free(&x);
    if (rc < 0)
        log_warn("admin", "cannot read the provisioning links: %s",
                 strerror(-rc));
    else if (count)
        *count = x.n;
    return rc;
}

/* Queue row's write and wait for its commit. */
static int
commit_put(struct admin_prov *p, const struct admin_prov_row *row)
{
    if (!p->st)
        return 0;
    struct store_mark m = store_mark(p->st);
    struct store_prov r = {.ext = row->ext,
                           .token = row->token,
                           .password = row->password,
                           .created_at = row->created_at,
                           .expires_at = row->expires_at,
                           .fetches = row->fetches,
                           .max_fetches = row->max_fetches};
    (void)store_prov_put(p->st, &r); /* a refusal shows in the commit */
    int rc = store_commit(p->st, m, PROV_COMMIT_TIMEOUT_MS);
    if (rc < 0)
        log_warn("admin", "provisioning link not saved: %s ext=%s",
                 strerror(-rc), row->ext);
    return rc;
}

int
admin_prov_put(struct admin_prov *p, const struct admin_prov_row *row)
{
    pthread_mutex_lock(&p->lock);
    int rc = commit_put(p, row);
    if (rc == 0)
        index_put(p, row);
    pthread_mutex_unlock(&p->lock);
    return rc < 0 ? -EIO : 0;
}

/* No store (tests): the count store_prov_count_fetch makes, in memory. */
static void
count_in_memory(const struct admin_prov_row *row, int64_t now_s,
                struct store_prov_count *c)
{
    memset(c, 0, sizeof(*c));
    c->found = true;
    c->fetches = row->fetches;
    c->max_fetches = row->max_fetches;
    c->expires_at = row->expires_at;
    if (c->fetches < c->max_fetches && now_s < c->expires_at) {
        c->fetches++;
        c->counted = true;
    }
}

int
admin_prov_count_fetch(struct admin_prov *p, struct admin_prov_row *row,
                       int64_t now_s)
{
    struct store_prov_count c = {0};
    int rc = 0;

    pthread_mutex_lock(&p->lock);
    struct prov_node *n = find_ext(p, row->ext);
    if (n && strcmp(n->row.token, row->token) != 0)
        n = NULL; /* renewed: not the link fetched */
    /* The count is the database's own (one UPDATE on the row that still
     * holds the token, only while it may serve): nodes counting at once
     * never serve more than max_fetches, and a row another node deleted
     * is not written back (docs/cluster.md). */
    if (p->st)
        rc = store_prov_count_fetch(p->st, row->ext, row->token, now_s,
                                    PROV_COMMIT_TIMEOUT_MS, &c);
    else if (n)
        count_in_memory(&n->row, now_s, &c);
    if (rc < 0) {
        log_warn("admin", "provisioning fetch not counted: %s ext=%s",
                 strerror(-rc), row->ext);
        rc = -EIO;
    } else if (!c.found) {
        unlink_free(n); /* revoked or renewed (by another node) */
        rc = -ENOENT;
    } else {
        /* The row as the database has it now (other nodes' counts too). */
        row->fetches = c.fetches;
        row->max_fetches = c.max_fetches;
        row->expires_at = c.expires_at;
        if (n) {
            n->row.fetches = c.fetches;
            n->row.max_fetches = c.max_fetches;
            n->row.expires_at = c.expires_at;
        }
        rc = c.counted ? 0 : -EACCES;
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

int
admin_prov_del(struct admin_prov *p, const char *ext)
{
    int rc = 0;

    pthread_mutex_lock(&p->lock);
    struct prov_node *n = find_ext(p, ext);
    if (!n) {
        rc = -ENOENT;
    } else if (p->st) {
        struct store_mark m = store_mark(p->st);
        (void)store_prov_del(p->st, ext);
        rc = store_commit(p->st, m, PROV_COMMIT_TIMEOUT_MS);
        if (rc < 0) {
            log_warn("admin", "provisioning link not revoked: %s ext=%s",
                     strerror(-rc), ext);
            rc = -EIO;
        }
    }
    if (rc == 0)
        unlink_free(n);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

/* ---- routes: the links on the API, and the public document ------------ */

void
admin_prov_changed(struct admin *a, const char *ext)
{
    if (!a || !a->prov)
        return;
    if (ext) {
        (void)admin_prov_refresh(a->prov, ext);
        return;
    }
    size_t n = 0;
    if (admin_prov_reload(a->prov, &n) == 0)
        log_info("admin", "provisioning links read again: %zu", n);
}

static void
prov_url(struct admin *a, const char *token, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/prov/%s", a->base_url, token);
}

static json_t *
prov_doc(struct admin *a, const struct admin_prov_row *row,
         const struct admin_ext_info *e)
{
    /* A configuration-file extension's password is the file's. */
    const struct admin_conf_ext *cf = admin_conf_find(a, e->number);
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
        "credentials", "username", e->number, "password", password, "realm",
        a->realm, "push", "providers", providers, "fcm", fcm, "apns", apns);
}

/* What the API and the page show of a link: its URL, lifetime and
 * remaining fetches (never the password). */
static json_t *
prov_json(struct admin *a, const struct admin_prov_row *row)
{
    char url[512];
    int64_t now = admin_now_s(), left = row->expires_at - now;
    unsigned fleft =
        row->fetches < row->max_fetches ? row->max_fetches - row->fetches : 0;
    const char *state = left <= 0    ? "expired"
                        : fleft == 0 ? "used up"
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
prov_create(struct admin *a, struct MHD_Connection *c,
            const struct admin_ext_info *e)
{
    struct admin_prov_row row = {.created_at = admin_now_s()};
    const struct admin_conf_ext *cf = admin_conf_find(a, e->number);

    row.expires_at = row.created_at + a->cfg->prov_link_ttl_s;
    row.max_fetches = a->cfg->prov_link_max_fetches;
    snprintf(row.ext, sizeof(row.ext), "%s", e->number);
    if (admin_random_hex(row.token, ADMIN_PROV_TOKEN_LEN / 2) < 0 ||
        (!cf && admin_gen_password(row.password, sizeof(row.password)) < 0))
        return admin_send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                "no randomness", NULL);
    /* An API extension gets a new password the link can hand out (the
     * registrar keeps only HA1 values). A configuration-file extension
     * keeps the file's, which the document reads when fetched. */
    if (!cf) {
        struct store_mark m = admin_write_mark(a);
        if (reg_ext_set(a->reg, e->number, e->display, row.password, e->enabled,
                        admin_ext_max_push(a, e->number)) < 0) {
            explicit_bzero(&row, sizeof(row));
            return admin_send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                    "rejected by the registrar", NULL);
        }
        /* The old link (if any) handed out the old password. */
        admin_ext_revoke_link(a, e->number);
        int rc = admin_commit_writes(a, m, "provisioning password", e->number);
        if (rc < 0) {
            explicit_bzero(&row, sizeof(row));
            return admin_send_not_saved(c, rc,
                                        "the extension's new password is in "
                                        "effect until restart and no link was "
                                        "made: try again");
        }
    }
    if (admin_prov_put(a->prov, &row) < 0) {
        explicit_bzero(&row, sizeof(row));
        return admin_send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                "cannot store the link", NULL);
    }
    log_notice("admin", "provisioning link created ext=%s expires_at=%lld",
               e->number, (long long)row.expires_at);
    json_t *out = prov_json(a, &row);
    explicit_bzero(&row, sizeof(row));
    return admin_send_json(c, MHD_HTTP_CREATED, out);
}

#define PROV_USED_UP                                                           \
    "this provisioning link has been used as many times as it may be: ask "    \
    "your administrator for a new one"

/* Why row no longer serves at now (the 410's text), or NULL. */
static const char *
prov_gone(const struct admin_prov_row *row, int64_t now)
{
    if (now >= row->expires_at)
        return "this provisioning link has expired: ask your administrator "
               "for a new one";
    return row->fetches >= row->max_fetches ? PROV_USED_UP : NULL;
}

/* The public provisioning document: the link's token is the credential. */
enum MHD_Result
admin_route_prov(struct admin *a, struct MHD_Connection *c, const char *token)
{
    struct admin_prov_row row;
    struct admin_ext_info e;
    bool hex = strlen(token) == ADMIN_PROV_TOKEN_LEN;

    for (const char *p = token; hex && *p; p++)
        hex = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f');
    if (!hex || admin_prov_by_token(a->prov, token, &row) < 0)
        return admin_send_error(c, MHD_HTTP_NOT_FOUND,
                                "unknown or revoked link", NULL);
    if (!admin_ext_find(a, row.ext, &e)) {
        explicit_bzero(&row, sizeof(row));
        return admin_send_error(c, MHD_HTTP_NOT_FOUND,
                                "unknown or revoked link", NULL);
    }
    /* A link that has served its purpose stays known so the phone's user
     * learns why it no longer works (410), not just that it does not.
     * Counted (committed) before the document leaves, so a crash cannot
     * give the limit back; the count is the store's (one UPDATE), which
     * also refuses what another node used up or revoked a moment ago. */
    int64_t now = admin_now_s();
    int crc = prov_gone(&row, now) ? -EACCES
                                   : admin_prov_count_fetch(a->prov, &row, now);
    if (crc == -EACCES) {
        const char *gone = prov_gone(&row, now);
        log_info("admin", "provisioning link refused ext=%s: %s", row.ext,
                 now >= row.expires_at ? "expired" : "fetch limit");
        explicit_bzero(&row, sizeof(row));
        free(e.display);
        return admin_send_error(c, MHD_HTTP_GONE,
                                gone ? gone : PROV_USED_UP, NULL);
    }
    if (crc < 0) {
        explicit_bzero(&row, sizeof(row));
        free(e.display);
        /* -ENOENT: revoked (or renewed) through another node. */
        return crc == -ENOENT
                   ? admin_send_error(c, MHD_HTTP_NOT_FOUND,
                                      "unknown or revoked link", NULL)
                   : admin_send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                      "cannot record the fetch", NULL);
    }
    log_info("admin", "provisioning document fetched ext=%s fetch=%u/%u",
             row.ext, row.fetches, row.max_fetches);
    json_t *doc = prov_doc(a, &row, &e);
    explicit_bzero(&row, sizeof(row));
    free(e.display);
    return admin_send_json(c, MHD_HTTP_OK, doc);
}

/* /api/extensions/N/prov[/qr.svg|/qr.png] for e: make (POST), show
 * (GET), revoke (DELETE) its link, or draw it as a QR code. */
enum MHD_Result
admin_route_ext_prov(struct admin *a, struct MHD_Connection *c,
                     const char *method, const struct admin_ext_info *e,
                     char **seg, size_t n)
{
    struct admin_prov_row row;
    char url[512];
    enum MHD_Result ret;
    int rc = admin_prov_by_ext(a->prov, e->number, &row);
    if (n == 4 && admin_is_method(method, "POST")) {
        ret = prov_create(a, c, e);
    } else if (n == 4 && admin_is_method(method, "DELETE")) {
        ret = rc == 0 && admin_prov_del(a->prov, e->number) == 0
                  ? admin_send_empty(c, MHD_HTTP_NO_CONTENT)
                  : admin_send_error(c, MHD_HTTP_NOT_FOUND,
                                     "no provisioning link", NULL);
    } else if (rc != 0 && admin_is_method(method, "GET")) {
        ret = admin_send_error(c, MHD_HTTP_NOT_FOUND, "no provisioning link",
                               NULL);
    } else if (n == 4 && admin_is_method(method, "GET")) {
        ret = admin_send_json(c, MHD_HTTP_OK, prov_json(a, &row));
    } else if (n == 5 && admin_is_method(method, "GET") &&
               (strcmp(seg[4], "qr.svg") == 0 ||
                strcmp(seg[4], "qr.png") == 0)) {
        size_t len = 0;
        bool svg = strcmp(seg[4], "qr.svg") == 0;
        prov_url(a, row.token, url, sizeof(url));
        void *img = svg ? (void *)admin_qr_svg(url, &len)
                        : (void *)admin_qr_png(url, 8, &len);
        ret = img ? admin_send_raw(c, MHD_HTTP_OK,
                                   svg ? "image/svg+xml" : "image/png", img,
                                   len, MHD_RESPMEM_MUST_FREE)
                  : admin_send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                     "cannot encode QR", NULL);
    } else {
        ret = admin_send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED,
                               "method not allowed", NULL);
    }
    explicit_bzero(&row, sizeof(row));
    return ret;
}
