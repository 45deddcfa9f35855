/*
 * store: the [store] configuration section (style.md §9: every option is
 * declared once, here). Only data: the config room loads it.
 */
#include <stddef.h>

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
};

const struct cfg_section store_cfg_section = {
    .name = "store",
    .help = "Persistent storage (SQLite) of extensions and registrations.",
    .options = store_options,
    .option_count = sizeof(store_options) / sizeof(store_options[0]),
    .size = sizeof(struct store_cfg),
};
