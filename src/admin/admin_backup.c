/*
 * admin/admin_backup: GET /api/backup, a consistent copy of the store's
 * database taken while the daemon runs and sent as a file download
 * (docs/install.md, "Backup and restore").
 *
 * The copy is made with SQLite's online backup API by the store
 * (store_backup: this room never opens the database itself) into a
 * temporary file next to the database, which is unlinked as soon as it is
 * open, so a failed or interrupted download leaves nothing behind. It
 * runs on the admin thread: for a large database other admin requests
 * wait while the copy is made; the SIP side does not.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "admin/admin_int.h"
#include "base/log.h"
#include "store/store_backup.h"

/* GET /api/backup: a consistent copy of the store's database, taken with
 * SQLite's online backup API while the daemon runs (store_backup), sent
 * as a file download. The copy is made next to the database and unlinked
 * once open. Runs on the admin thread: for a large database other admin
 * requests wait while the copy is made (docs/install.md). */
enum MHD_Result
admin_route_backup(struct admin *a, struct MHD_Connection *c)
{
    char tmp[4096], err[512], name[64], disp[128];
    struct stat st;

    if (!a->db_path || !a->db_path[0])
        return admin_send_error(c, MHD_HTTP_NOT_IMPLEMENTED, "no database",
                                NULL);
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.backup-XXXXXX", a->db_path) >=
        sizeof(tmp))
        return admin_send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                "path too long", NULL);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return admin_send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                "cannot create the backup file", NULL);
    close(fd);
    if (store_backup(a->db_path, tmp, err, sizeof(err)) < 0) {
        unlink(tmp);
        log_error("admin", "%s", err);
        return admin_send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, err, NULL);
    }
    fd = open(tmp, O_RDONLY | O_CLOEXEC);
    unlink(tmp);
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        return admin_send_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
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
