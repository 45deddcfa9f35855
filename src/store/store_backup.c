/* store/store_backup: online backup and offline restore; see
 * store_backup.h. */
#include "store/store_backup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

static int
fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

/* Copy the whole of src into dst in one backup step. */
static int
copy_db(sqlite3 *dst, sqlite3 *src, char *err, size_t errlen)
{
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");

    if (!b)
        return fail(err, errlen, -EIO, "backup: %s", sqlite3_errmsg(dst));
    int rc = sqlite3_backup_step(b, -1);
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE)
        return fail(err, errlen, -EIO, "backup: %s", sqlite3_errstr(rc));
    rc = sqlite3_errcode(dst);
    if (rc != SQLITE_OK)
        return fail(err, errlen, -EIO, "backup: %s", sqlite3_errmsg(dst));
    return 0;
}

static int
fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int
store_backup(const char *db_path, const char *dest, char *err, size_t errlen)
{
    char tmp[4096];
    sqlite3 *src = NULL, *dst = NULL;
    int rc;

    if (access(db_path, F_OK) < 0)
        return fail(err, errlen, -ENOENT, "backup: %s: %s", db_path,
                    strerror(errno));
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", dest) >= sizeof(tmp))
        return fail(err, errlen, -ENAMETOOLONG, "backup: path too long");
    unlink(tmp);
    if (sqlite3_open_v2(db_path, &src, SQLITE_OPEN_READONLY, NULL) !=
        SQLITE_OK) {
        rc = fail(err, errlen, -EIO, "backup: %s: %s", db_path,
                  sqlite3_errmsg(src));
        goto out;
    }
    sqlite3_busy_timeout(src, 5000);
    if (sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                        NULL) != SQLITE_OK) {
        rc = fail(err, errlen, -EIO, "backup: %s: %s", tmp,
                  sqlite3_errmsg(dst));
        goto out;
    }
    rc = copy_db(dst, src, err, errlen);
    if (rc == 0 && sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", NULL, NULL,
                                NULL) != SQLITE_OK)
        rc = fail(err, errlen, -EIO, "backup: %s", sqlite3_errmsg(dst));
out:
    sqlite3_close(src);
    sqlite3_close(dst);
    if (rc == 0) {
        chmod(tmp, 0600);
        rc = fsync_path(tmp);
        if (rc == 0 && rename(tmp, dest) < 0)
            rc = -errno;
        if (rc < 0)
            fail(err, errlen, rc, "backup: %s: %s", dest, strerror(-rc));
    }
    if (rc < 0)
        unlink(tmp);
    return rc;
}

/* The backup is a pushpbx database: intact, with our tables. */
static int
check_backup(sqlite3 *db, const char *src, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = 0;

    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) !=
            SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW ||
        strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0)
        rc = fail(err, errlen, -EINVAL,
                  "restore: %s is not an intact SQLite database", src);
    sqlite3_finalize(st);
    if (rc < 0)
        return rc;
    static const char *const tables[] = {"extensions", "bindings"};
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        st = NULL;
        if (sqlite3_prepare_v2(db,
                               "SELECT 1 FROM sqlite_master WHERE type='table' "
                               "AND name=?1",
                               -1, &st, NULL) != SQLITE_OK) {
            sqlite3_finalize(st);
            return fail(err, errlen, -EINVAL,
                        "restore: %s is not a SQLite database", src);
        }
        sqlite3_bind_text(st, 1, tables[i], -1, SQLITE_STATIC);
        int found = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_finalize(st);
        if (!found)
            return fail(err, errlen, -EINVAL,
                        "restore: %s is not a pushpbx database (no table "
                        "%s)",
                        src, tables[i]);
    }
    return 0;
}

int
store_restore(const char *db_path, const char *src, char *err, size_t errlen)
{
    char tmp[4096], side[4096];
    sqlite3 *from = NULL, *to = NULL;
    int rc, lock;

    if (access(src, R_OK) < 0)
        return fail(err, errlen, -errno, "restore: %s: %s", src,
                    strerror(errno));
    lock = store_instance_lock(db_path);
    if (lock == -EBUSY)
        return fail(err, errlen, -EBUSY,
                    "restore: %s is in use by a running pushpbx; stop it "
                    "first",
                    db_path);
    if (lock < 0)
        return fail(err, errlen, lock, "restore: %s.lock: %s", db_path,
                    strerror(-lock));
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.restore", db_path) >=
        sizeof(tmp)) {
        rc = fail(err, errlen, -ENAMETOOLONG, "restore: path too long");
        goto out;
    }
    unlink(tmp);
    if (sqlite3_open_v2(src, &from, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        rc = fail(err, errlen, -EINVAL, "restore: %s: %s", src,
                  sqlite3_errmsg(from));
        goto out;
    }
    rc = check_backup(from, src, err, errlen);
    if (rc < 0)
        goto out;
    if (sqlite3_open_v2(tmp, &to, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                        NULL) != SQLITE_OK) {
        rc = fail(err, errlen, -EIO, "restore: %s: %s", tmp,
                  sqlite3_errmsg(to));
        goto out;
    }
    rc = copy_db(to, from, err, errlen);
    if (rc < 0)
        goto out;
    sqlite3_close(to);
    to = NULL;
    chmod(tmp, 0600);
    rc = fsync_path(tmp);
    if (rc < 0) {
        fail(err, errlen, rc, "restore: %s: %s", tmp, strerror(-rc));
        goto out;
    }
    /* The old database's write-ahead log must not be replayed into the
     * restored file. */
    snprintf(side, sizeof(side), "%s-wal", db_path);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", db_path);
    unlink(side);
    if (rename(tmp, db_path) < 0) {
        rc = -errno;
        fail(err, errlen, rc, "restore: %s: %s", db_path, strerror(errno));
    }
out:
    sqlite3_close(from);
    sqlite3_close(to);
    if (rc < 0)
        unlink(tmp);
    store_instance_unlock(lock);
    return rc;
}

int
store_instance_lock(const char *db_path)
{
    /* flock on the database file itself: independent of SQLite's POSIX
     * (fcntl) locks on Linux, released when the holder exits, and no
     * extra file to clean up. The descriptor is closed only after the
     * SQLite connections (closing it never touches their locks). */
    int fd = open(db_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
        close(fd);
        return rc;
    }
    return fd;
}

void
store_instance_unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* releases the flock */
}
