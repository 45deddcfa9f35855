/*
 * admin/admin_prov: the provisioning-link table (see admin_int.h). The
 * rows live in the store's database (table prov_links: the store owns
 * every SQLite connection); this file keeps the index the admin reads, in
 * memory, loaded at start. A write is queued to the store and waited for
 * (store_commit) before memory changes and before the admin answers, so
 * a link handed out, a fetch counted or a revocation survives a crash.
 *
 * Load: a few per administrator click and one per document fetched, all
 * on the admin thread (the MHD thread handles one request at a time), so
 * the index needs no lock. Rows: one per extension at most; two hash
 * tables (by extension, by token) of 1024 chains keep lookups short up to
 * the ~100k extensions we target.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin_int.h"
#include "base/list.h"
#include "base/log.h"
#include "base/xmalloc.h"
#include "store/store.h"

#define NBUCKETS 1024
/* How long a link write may wait for the store (as admin.c's extension
 * writes: the writer commits at once; this bounds a stuck disk). */
#define PROV_COMMIT_TIMEOUT_MS 6000

struct prov_node {
    struct list_node by_ext, by_tok;
    struct admin_prov_row row;
};

struct admin_prov {
    struct store *st; /* borrowed; NULL: memory only */
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

static int
load_row(const struct store_prov *r, void *arg)
{
    struct admin_prov_row row = {0};

    snprintf(row.ext, sizeof(row.ext), "%s", r->ext);
    snprintf(row.token, sizeof(row.token), "%s", r->token);
    snprintf(row.password, sizeof(row.password), "%s", r->password);
    row.created_at = r->created_at;
    row.expires_at = r->expires_at;
    row.fetches = r->fetches;
    row.max_fetches = r->max_fetches;
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

void
admin_prov_close(struct admin_prov *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < NBUCKETS; i++) {
        struct list_node *h = &p->ext_tab[i];
        while (!list_empty(h))
            unlink_free(container_of(h->next, struct prov_node, by_ext));
    }
    free(p);
}

int
admin_prov_by_ext(struct admin_prov *p, const char *ext,
                  struct admin_prov_row *row)
{
    struct prov_node *n = find_ext(p, ext);
    if (!n)
        return -ENOENT;
    *row = n->row;
    return 0;
}

int
admin_prov_by_token(struct admin_prov *p, const char *token,
                    struct admin_prov_row *row)
{
    struct prov_node *n = find_token(p, token);
    if (!n)
        return -ENOENT;
    *row = n->row;
    return 0;
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
    if (commit_put(p, row) < 0)
        return -EIO;
    index_put(p, row);
    return 0;
}

int
admin_prov_count_fetch(struct admin_prov *p, const char *ext)
{
    struct prov_node *n = find_ext(p, ext);
    if (!n)
        return -ENOENT;
    struct admin_prov_row row = n->row;
    row.fetches++;
    int rc = commit_put(p, &row);
    if (rc == 0)
        n->row.fetches = row.fetches;
    explicit_bzero(&row, sizeof(row));
    return rc < 0 ? -EIO : 0;
}

int
admin_prov_del(struct admin_prov *p, const char *ext)
{
    struct prov_node *n = find_ext(p, ext);
    if (!n)
        return -ENOENT;
    if (p->st) {
        struct store_mark m = store_mark(p->st);
        (void)store_prov_del(p->st, ext);
        int rc = store_commit(p->st, m, PROV_COMMIT_TIMEOUT_MS);
        if (rc < 0) {
            log_warn("admin", "provisioning link not revoked: %s ext=%s",
                     strerror(-rc), ext);
            return -EIO;
        }
    }
    unlink_free(n);
    return 0;
}
