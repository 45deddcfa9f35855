/* app/app_journal: the systemd journal log sink; see app_journal.h. */
#include "app/app_journal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Before sd-journal.h: it includes <syslog.h>, whose LOG_* macros would
 * otherwise rename enum log_level's constants. */
#include "app/app_cfg.h"
#include "base/log.h"

#include <systemd/sd-journal.h>

/* The value of the word "key=value" in msg (key at the start or after a
 * space), copied into out; "" when absent. */
static void
word_value(const char *msg, const char *key, char *out, size_t outlen)
{
    size_t klen = strlen(key);
    const char *p = msg;

    out[0] = '\0';
    while ((p = strstr(p, key)) != NULL) {
        if ((p == msg || p[-1] == ' ') && p[klen] == '=') {
            const char *v = p + klen + 1;
            size_t n = strcspn(v, " ");
            if (n >= outlen)
                n = outlen - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return;
        }
        p += klen;
    }
}

static int
journal_sink(enum log_level lvl, const char *room, const char *msg)
{
    /* syslog(3) priorities; <syslog.h> is not included because its LOG_*
     * macros collide with enum log_level. */
    static const int prio[] = {3 /* err */, 4 /* warning */, 5 /* notice */,
                               6 /* info */, 7 /* debug */};
    char call_id[256], ext[64];
    int p = (unsigned)lvl < sizeof(prio) / sizeof(prio[0]) ? prio[lvl]
                                                           : LOG_INFO;

    word_value(msg, "call_id", call_id, sizeof(call_id));
    word_value(msg, "ext", ext, sizeof(ext));
    /* Empty fields are left out: sd_journal_send takes a NULL-ended list,
     * so the optional ones go last. */
    if (call_id[0] && ext[0])
        return sd_journal_send("MESSAGE=%s: %s", room, msg, "PRIORITY=%d", p,
                               "SYSLOG_IDENTIFIER=pushpbx",
                               "PUSHPBX_ROOM=%s", room, "PUSHPBX_CALL_ID=%s",
                               call_id, "PUSHPBX_EXT=%s", ext, NULL) < 0;
    if (call_id[0])
        return sd_journal_send("MESSAGE=%s: %s", room, msg, "PRIORITY=%d", p,
                               "SYSLOG_IDENTIFIER=pushpbx",
                               "PUSHPBX_ROOM=%s", room, "PUSHPBX_CALL_ID=%s",
                               call_id, NULL) < 0;
    if (ext[0])
        return sd_journal_send("MESSAGE=%s: %s", room, msg, "PRIORITY=%d", p,
                               "SYSLOG_IDENTIFIER=pushpbx",
                               "PUSHPBX_ROOM=%s", room, "PUSHPBX_EXT=%s", ext,
                               NULL) < 0;
    return sd_journal_send("MESSAGE=%s: %s", room, msg, "PRIORITY=%d", p,
                           "SYSLOG_IDENTIFIER=pushpbx", "PUSHPBX_ROOM=%s",
                           room, NULL) < 0;
}

/* systemd sets JOURNAL_STREAM=<dev>:<ino> for a unit whose stderr (or
 * stdout) is connected to the journal. */
static bool
stderr_is_journal(void)
{
    const char *e = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    char *end;

    if (!e || fstat(2, &st) < 0)
        return false;
    dev = strtoull(e, &end, 10);
    if (*end != ':')
        return false;
    ino = strtoull(end + 1, &end, 10);
    if (*end)
        return false;
    return (unsigned long long)st.st_dev == dev &&
           (unsigned long long)st.st_ino == ino;
}

bool
app_journal_setup(int mode)
{
    if (mode == APP_JOURNAL_NO ||
        (mode == APP_JOURNAL_AUTO && !stderr_is_journal()))
        return false;
    log_set_sink(journal_sink);
    return true;
}
