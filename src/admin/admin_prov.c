/*
 * admin/admin_prov: the provisioning-link table in the admin's own SQLite
 * file (see admin_int.h). Reads and writes are synchronous: they happen on
 * the admin thread, a few per administrator click, never on a SIP worker.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "admin/admin_int.h"
#include "base/xmalloc.h"

struct admin_prov {
    sqlite3 *db;
};

static const char schema[] = "CREATE TABLE IF NOT EXISTS admin_prov ("
                             " ext TEXT PRIMARY KEY,"
                             " token TEXT NOT NULL UNIQUE,"
                             " password TEXT NOT NULL,"
                             " created_at INTEGER NOT NULL,"
                             " expires_at INTEGER NOT NULL DEFAULT 0,"
                             " fetches INTEGER NOT NULL DEFAULT 0,"
                             " max_fetches INTEGER NOT NULL DEFAULT 0)";

/* Tables from before links had a lifetime get the columns. Their rows get
 * expires_at 0: such links never expired, so they are treated as expired
 * (410) rather than left open for ever. */
static const char *const migrations[] = {
    "ALTER TABLE admin_prov ADD COLUMN expires_at INTEGER NOT NULL"
    " DEFAULT 0",
    "ALTER TABLE admin_prov ADD COLUMN fetches INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE admin_prov ADD COLUMN max_fetches INTEGER NOT NULL"
    " DEFAULT 0",
};

static int
migrate(sqlite3 *db)
{
    sqlite3_stmt *probe = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT max_fetches FROM admin_prov"
                                    " LIMIT 0",
                                -1, &probe, NULL);

    sqlite3_finalize(probe);
    if (rc == SQLITE_OK)
        return 0;
    for (size_t i = 0; i < sizeof(migrations) / sizeof(migrations[0]); i++)
        /* A column may exist already (a half-migrated file): ignore. */
        sqlite3_exec(db, migrations[i], NULL, NULL, NULL);
    rc = sqlite3_prepare_v2(db, "SELECT max_fetches FROM admin_prov LIMIT 0",
                            -1, &probe, NULL);
    sqlite3_finalize(probe);
    return rc == SQLITE_OK ? 0 : -EIO;
}

int
admin_prov_open(const char *path, struct admin_prov **out, char *err,
                size_t errlen)
{
    sqlite3 *db = NULL;
    char *msg = NULL;

    if (sqlite3_open_v2(path, &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(err, errlen, "admin: %s: %s", path,
                 db ? sqlite3_errmsg(db) : "cannot open");
        sqlite3_close(db);
        return -EIO;
    }
    sqlite3_busy_timeout(db, 2000);
    if (sqlite3_exec(db, schema, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "admin: %s: %s", path, msg ? msg : "schema");
        sqlite3_free(msg);
        sqlite3_close(db);
        return -EIO;
    }
    if (migrate(db) < 0) {
        snprintf(err, errlen, "admin: %s: cannot add the link lifetime "
                 "columns: %s", path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return -EIO;
    }
    *out = xcalloc(1, sizeof(**out));
    (*out)->db = db;
    return 0;
}

void
admin_prov_close(struct admin_prov *p)
{
    if (!p)
        return;
    sqlite3_close(p->db);
    free(p);
}

static void
copy_col(sqlite3_stmt *st, int col, char *out, size_t outlen)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(out, outlen, "%s", t ? (const char *)t : "");
}

static int
get_row(struct admin_prov *p, const char *sql, const char *key,
        struct admin_prov_row *row)
{
    sqlite3_stmt *st;
    int rc;

    if (sqlite3_prepare_v2(p->db, sql, -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        copy_col(st, 0, row->ext, sizeof(row->ext));
        copy_col(st, 1, row->token, sizeof(row->token));
        copy_col(st, 2, row->password, sizeof(row->password));
        row->created_at = sqlite3_column_int64(st, 3);
        row->expires_at = sqlite3_column_int64(st, 4);
        row->fetches = (unsigned)sqlite3_column_int64(st, 5);
        row->max_fetches = (unsigned)sqlite3_column_int64(st, 6);
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? -ENOENT : -EIO;
    }
    sqlite3_finalize(st);
    return rc;
}

int
admin_prov_by_ext(struct admin_prov *p, const char *ext,
                  struct admin_prov_row *row)
{
    return get_row(p,
                   "SELECT ext, token, password, created_at, expires_at,"
                   " fetches, max_fetches FROM admin_prov"
                   " WHERE ext = ?1",
                   ext, row);
}

int
admin_prov_by_token(struct admin_prov *p, const char *token,
                    struct admin_prov_row *row)
{
    return get_row(p,
                   "SELECT ext, token, password, created_at, expires_at,"
                   " fetches, max_fetches FROM admin_prov"
                   " WHERE token = ?1",
                   token, row);
}

int
admin_prov_put(struct admin_prov *p, const struct admin_prov_row *row)
{
    sqlite3_stmt *st;
    int rc;

    if (sqlite3_prepare_v2(p->db,
                           "INSERT OR REPLACE INTO admin_prov (ext, token,"
                           " password, created_at, expires_at, fetches,"
                           " max_fetches) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                           -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(st, 1, row->ext, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, row->token, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, row->password, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, row->created_at);
    sqlite3_bind_int64(st, 5, row->expires_at);
    sqlite3_bind_int64(st, 6, row->fetches);
    sqlite3_bind_int64(st, 7, row->max_fetches);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
    sqlite3_finalize(st);
    return rc;
}

int
admin_prov_count_fetch(struct admin_prov *p, const char *ext)
{
    sqlite3_stmt *st;
    int rc;

    if (sqlite3_prepare_v2(p->db,
                           "UPDATE admin_prov SET fetches = fetches + 1"
                           " WHERE ext = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(st, 1, ext, -1, SQLITE_STATIC);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
    if (rc == 0 && sqlite3_changes(p->db) == 0)
        rc = -ENOENT;
    sqlite3_finalize(st);
    return rc;
}

int
admin_prov_del(struct admin_prov *p, const char *ext)
{
    sqlite3_stmt *st;
    int rc;

    if (sqlite3_prepare_v2(p->db, "DELETE FROM admin_prov WHERE ext = ?1", -1,
                           &st, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(st, 1, ext, -1, SQLITE_STATIC);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
    if (rc == 0 && sqlite3_changes(p->db) == 0)
        rc = -ENOENT;
    sqlite3_finalize(st);
    return rc;
}
