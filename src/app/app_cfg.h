/*
 * app/app_cfg: the daemon's own option tables ([sip], [log]) and the list of
 * every section pushpbx loads. Rooms added later (registrar, proxy, push,
 * admin) declare their own struct cfg_section next to their code; the app
 * only lists them in app_cfg_sections() so the loader, --help-config and
 * docs/configuration.md see them.
 *
 * The transport and transaction options live in [sip] for now because the
 * daemon hands them to tp_cfg/txn_cfg; they could move to the transport
 * room's own table later without changing the file format.
 */
#ifndef PUSHPBX_APP_APP_CFG_H
#define PUSHPBX_APP_APP_CFG_H

#include <stdbool.h>
#include <stddef.h>

#include "config/cfg.h"

/* [sip] udp_spread: indexes of its choices. */
enum app_spread {
    APP_SPREAD_NO,
    APP_SPREAD_YES,
    APP_SPREAD_AUTO, /* yes when the daemon may use more than 2 CPUs */
};
/* CPUs (uv_available_parallelism) above which udp_spread = auto spreads:
 * on 2 CPUs the hop's second thread competes with the reader and with
 * whatever else runs (BENCHMARKS.md, "One UDP source over every worker"). */
#define APP_SPREAD_AUTO_MIN_CPUS 3

struct app_sip_cfg {
    struct cfg_list listen; /* "udp:0.0.0.0:5060" items */
    char *domain;
    char *realm;      /* = domain when not set */
    unsigned workers; /* 0 = auto (CPUs), resolved by the daemon */
    int udp_spread;   /* enum app_spread: UDP requests to workers by
                         Call-ID (tp_group) */
    char *user_agent;
    unsigned t1_ms, t2_ms, t4_ms;
    unsigned max_connections;
    unsigned tcp_max_per_source;
    unsigned tcp_first_message_ms, tcp_message_ms;
    unsigned tcp_idle_timeout_s;
    unsigned shutdown_ms; /* graceful stop bound (main.c) */
};

struct app_log_cfg {
    int level;   /* enum log_level */
    int journal; /* enum app_log_journal */
};

/* [log] journal: the index into app_log_journal_modes. */
enum app_log_journal { APP_JOURNAL_AUTO, APP_JOURNAL_YES, APP_JOURNAL_NO };
extern const char *const app_log_journal_modes[];

extern const struct cfg_section app_sip_section;
extern const struct cfg_section app_log_section;

/* Every section of the daemon, in documentation order. */
const struct cfg_section *const *app_cfg_sections(size_t *count);

#endif
