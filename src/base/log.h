/*
 * log: the one process-wide service. Lines go to stderr as
 *   2026-11-27T06:40:00.123Z WARN  registrar: REGISTER rejected: ... key=v
 * The level is checked before arguments are evaluated. Never log secrets
 * (passwords, HA1, JWTs, keys); show only a device token's prefix.
 * log_write is thread-safe (one fprintf per line under a lock).
 */
#ifndef PUSHPBX_BASE_LOG_H
#define PUSHPBX_BASE_LOG_H

enum log_level {
    LOG_ERROR = 0,
    LOG_WARN = 1,
    LOG_NOTICE = 2,
    LOG_INFO = 3,
    LOG_DEBUG = 4,
};

extern enum log_level log_level;

/* Parse "error|warn|notice|info|debug"; returns 0 or -EINVAL. */
int log_level_parse(const char *s, enum log_level *out);
const char *log_level_name(enum log_level l);

void log_write(enum log_level lvl, const char *room, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Where finished lines go instead of stderr (the daemon's journal sink,
 * app/app_journal.c). msg is the formatted message without time, level or
 * room, control characters already replaced; borrowed for the call. The
 * sink is called under the log lock, from any thread, and returns nonzero
 * when it could not take the line (it then goes to stderr). Set once at
 * start, before any thread logs; NULL restores stderr. */
typedef int log_sink_fn(enum log_level lvl, const char *room, const char *msg);
void log_set_sink(log_sink_fn *sink);

#define log_at(lvl, room, ...)                     \
    do {                                           \
        if ((lvl) <= log_level)                    \
            log_write((lvl), (room), __VA_ARGS__); \
    } while (0)

#define log_error(room, ...) log_at(LOG_ERROR, room, __VA_ARGS__)
#define log_warn(room, ...) log_at(LOG_WARN, room, __VA_ARGS__)
#define log_notice(room, ...) log_at(LOG_NOTICE, room, __VA_ARGS__)
#define log_info(room, ...) log_at(LOG_INFO, room, __VA_ARGS__)
#define log_debug(room, ...) log_at(LOG_DEBUG, room, __VA_ARGS__)

#endif
