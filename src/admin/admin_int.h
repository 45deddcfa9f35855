/*
 * admin/admin_int: declarations shared inside the admin room: the
 * provisioning-link table (admin_prov.c) and the embedded web assets
 * (generated admin_www.c).
 */
#ifndef PUSHPBX_ADMIN_ADMIN_INT_H
#define PUSHPBX_ADMIN_ADMIN_INT_H

#include <stddef.h>
#include <stdint.h>

/* Provisioning links: one row per extension, kept by the store (table
 * prov_links of the store's database) and indexed in memory here. A row
 * holds the 128-bit link token (32 hex) and the password the link hands
 * out: the registrar keeps only HA1 values, so (re)generating a link also
 * sets a new password. Thread: the admin thread (and admin_start/
 * admin_stop); no lock. */
struct admin_prov;
struct store;

#define ADMIN_PROV_TOKEN_LEN 32
#define ADMIN_PASSWORD_LEN 20

/* A link lives until expires_at (unix s; [admin] prov_link_ttl_s after
 * creation) and serves at most max_fetches documents ([admin]
 * prov_link_max_fetches); after either, /prov/<token> answers 410. A
 * password reset deletes the row. password is "" for an extension of the
 * configuration file: the document hands out the file's password, read
 * when it is fetched, so the table never holds a copy of it. */
struct admin_prov_row {
    char ext[33];
    char token[ADMIN_PROV_TOKEN_LEN + 1];
    char password[129];
    int64_t created_at;
    int64_t expires_at;
    unsigned fetches;
    unsigned max_fetches;
};

/* Load the links from st (borrowed; NULL: memory only, for tests). First,
 * once: a provisioning file of an older version (legacy_path, [admin]
 * prov_db, deprecated) is imported into the store and renamed
 * PATH.imported (store_prov_import); a missing file is fine. Returns 0 and
 * *out (owned; admin_prov_close), or a negative errno with the reason in
 * err. Blocks for the import's commit (start-up). */
int admin_prov_open(struct store *st, const char *legacy_path,
                    struct admin_prov **out, char *err, size_t errlen);
void admin_prov_close(struct admin_prov *p);
/* From memory: 0 and *row, or -ENOENT. */
int admin_prov_by_ext(struct admin_prov *p, const char *ext,
                      struct admin_prov_row *row);
int admin_prov_by_token(struct admin_prov *p, const char *token,
                        struct admin_prov_row *row);
/* Insert or replace the row of row->ext, committed by the store before
 * return (memory changes only then). 0 or -EIO (not saved, or unknown
 * after a timeout: logged). Writes below likewise. */
int admin_prov_put(struct admin_prov *p, const struct admin_prov_row *row);
/* 0, -ENOENT or -EIO. */
int admin_prov_del(struct admin_prov *p, const char *ext);
/* Count one document served by ext's link (committed before return, so
 * the limit holds across a crash). 0, -ENOENT or -EIO. */
int admin_prov_count_fetch(struct admin_prov *p, const char *ext);

/* Embedded files of src/admin/www (generated at build time). */
struct admin_asset {
    const char *path; /* "/index.html" */
    const char *type; /* Content-Type */
    const unsigned char *data;
    size_t len;
};
extern const struct admin_asset admin_assets[];
extern const size_t admin_asset_count;

#endif
