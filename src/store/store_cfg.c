/*
 * store: the [store] configuration section (style.md §9: every option is
 * declared once, here). Only data: the config room loads it.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>

#include "config/cfg.h"
#include "store/store_cfg.h"

static const struct cfg_option store_options[] = {
    {.key = "path",
     .type = CFG_PATH,
     .def = "var/pushpbx.db",
     .offset = offsetof(struct store_cfg, path),
     .help = "SQLite database file (created if missing; WAL mode, so "
             "PATH-wal and PATH-shm appear next to it)."},
    {.key = "flush_ms",
     .type = CFG_UINT,
     .min = 10,
     .max = 1000,
     .def = "200",
     .offset = offsetof(struct store_cfg, flush_ms),
     .help = "Writes are committed in one transaction at most this long "
             "after they are queued: the bindings lost on a crash are at "
             "most the last flush_ms of refreshes."},
    {.key = "max_queue",
     .type = CFG_UINT,
     .min = 1000,
     .max = 10000000,
     .def = "200000",
     .offset = offsetof(struct store_cfg, max_queue),
     .help = "Writes waiting for the disk before new ones are dropped "
             "(counted and logged; memory stays authoritative)."},
    {.key = "writer_nice",
     .type = CFG_UINT,
     .min = 0,
     .max = 19,
     .def = "0",
     .offset = offsetof(struct store_cfg, writer_nice),
     .help = "Nice value of the store's writer and checkpoint threads "
             "(0..19): above 0 they yield the CPU to the SIP workers when "
             "both want it, which shortens the SIP tail on a busy "
             "machine; a push device's commit (acknowledged only once "
             "committed) may then wait longer (docs/store.md)."},
    {.key = "backend",
     .type = CFG_STRING,
     .def = "sqlite",
     .offset = offsetof(struct store_cfg, backend),
     .help = "Where the state lives: sqlite (the file of path; one node) "
             "or postgresql (the server of [store] postgresql; needed by a "
             "cluster, docs/store.md)."},
    {.key = "postgresql",
     .type = CFG_STRING,
     .def = "",
     .offset = offsetof(struct store_cfg, postgresql),
     .help = "libpq connection string of the PostgreSQL database when "
             "backend is postgresql, e.g. \"host=/run/postgresql "
             "dbname=pushpbx user=pushpbx\" (a password is better in "
             "~/.pgpass than here)."},
};

/* The backend's name and its connection string, checked at load time so
 * that a typo stops the start with the line that has it. */
static int
store_cfg_finish(void *sec, char *err, size_t errlen)
{
    struct store_cfg *c = sec;
    enum store_backend be;

    if (store_backend_parse(c->backend, &be) < 0) {
        snprintf(err, errlen,
                 "backend \"%s\": unknown (sqlite or postgresql)",
                 c->backend);
        return -EINVAL;
    }
    if (be == STORE_BACKEND_POSTGRESQL &&
        (!c->postgresql || !c->postgresql[0])) {
        snprintf(err, errlen,
                 "backend postgresql needs postgresql = <libpq connection "
                 "string>, e.g. \"host=/run/postgresql dbname=pushpbx\"");
        return -EINVAL;
    }
    return 0;
}

const struct cfg_section store_cfg_section = {
    .name = "store",
    .help = "Persistent storage (SQLite, or PostgreSQL for a cluster) of "
            "extensions, registrations, push devices and messages.",
    .options = store_options,
    .option_count = sizeof(store_options) / sizeof(store_options[0]),
    .size = sizeof(struct store_cfg),
    .finish = store_cfg_finish,
};
