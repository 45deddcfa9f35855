/*
 * store/store_backup: a consistent copy of the database while pushpbx
 * runs, and restoring one while it does not ([ops] backup and restore).
 *
 * store_backup copies with SQLite's online backup API through a read
 * connection of its own: in WAL mode the copy is one consistent snapshot
 * even while the writer thread commits, and the writer is never blocked.
 * store_restore replaces the database file with a backup after checking
 * that it is an intact pushpbx database; it refuses while a pushpbx owns
 * the database (store_open holds store_instance_lock's lock).
 *
 * Thread: any; each call opens and closes its own connection.
 */
#ifndef PUSHPBX_STORE_STORE_BACKUP_H
#define PUSHPBX_STORE_STORE_BACKUP_H

#include <stddef.h>

/* Write a snapshot of the database db_path to dest (written to dest.tmp,
 * fsynced, then renamed over dest, mode 0600). Returns 0, or a negative
 * errno (-ENOENT no database, -EIO SQLite failed) with a reason in err. */
int store_backup(const char *db_path, const char *dest, char *err,
                 size_t errlen);

/* Replace the database db_path (and its -wal/-shm files) with the backup
 * src. src must pass PRAGMA integrity_check and hold the pushpbx tables
 * (extensions, bindings). Returns 0; -EBUSY while a running pushpbx holds
 * the database; -EINVAL when src is not a pushpbx database; -EIO. A
 * failure leaves db_path as it was. */
int store_restore(const char *db_path, const char *src, char *err,
                  size_t errlen);

/* Take the instance lock of db_path (flock on the database file, created
 * empty if missing, held until store_instance_unlock): one daemon per
 * database, and restore can tell the database is in use. Returns a
 * descriptor >= 0, or -EBUSY when another process holds it, or -errno. */
int store_instance_lock(const char *db_path);
void store_instance_unlock(int fd);

#endif
