/* log: leveled, line-atomic logging to stderr; see log.h. */
#include "base/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

enum log_level log_level = LOG_NOTICE;

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static log_sink_fn *log_sink;

void
log_set_sink(log_sink_fn *sink)
{
    log_sink = sink;
}
static const char *const names[] = { "ERROR", "WARN", "NOTICE", "INFO",
                                     "DEBUG" };

const char *
log_level_name(enum log_level l)
{
    return (unsigned)l < sizeof(names) / sizeof(names[0]) ? names[l] : "?";
}

int
log_level_parse(const char *s, enum log_level *out)
{
    for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

void
log_write(enum log_level lvl, const char *room, const char *fmt, ...)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    int n;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(line, sizeof(line),
                 "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-6s %s: ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                 log_level_name(lvl), room);
    if (n < 0 || (size_t)n >= sizeof(line))
        n = 0;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    /* Control characters from the network never reach the terminal raw. */
    for (char *p = line + n; *p; p++)
        if ((unsigned char)*p < 0x20 && *p != '\t')
            *p = '.';
    pthread_mutex_lock(&log_lock);
    if (!log_sink || log_sink(lvl, room, line + n) != 0) {
        fputs(line, stderr);
        fputc('\n', stderr);
    }
    pthread_mutex_unlock(&log_lock);
}
