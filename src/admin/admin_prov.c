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
                             " created_at INTEGER NOT NULL)";

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
                   "SELECT ext, token, password, created_at FROM admin_prov"
                   " WHERE ext = ?1",
                   ext, row);
}

int
admin_prov_by_token(struct admin_prov *p, const char *token,
                    struct admin_prov_row *row)
{
    return get_row(p,
                   "SELECT ext, token, password, created_at FROM admin_prov"
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
                           " password, created_at) VALUES (?1, ?2, ?3, ?4)",
                           -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(st, 1, row->ext, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, row->token, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, row->password, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, row->created_at);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
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
