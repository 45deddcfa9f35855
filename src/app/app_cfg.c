/*
 * app/app_cfg: [sip] and [log] tables; see app_cfg.h. The help texts here
 * are the reference: `pushpbx --help-config` prints them and
 * docs/configuration.md is generated from `pushpbx --help-config-md`.
 */
#include "app/app_cfg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"
#include "base/log.h"
#include "base/xmalloc.h"
#include "cluster/cluster_cfg.h"
#include "media/media_cfg.h"
#include "proxy/proxy_cfg.h"
#include "push/push_cfg.h"
#include "registrar/reg_cfg.h"
#include "store/store_cfg.h"
#include "transport/tp.h"

static const char *const spread_choices[] = {"no", "yes", "auto", NULL};

static const struct cfg_option sip_options[] = {
    {.key = "listen",
     .type = CFG_LIST,
     .def = "udp:0.0.0.0:5060 tcp:0.0.0.0:5060",
     .offset = offsetof(struct app_sip_cfg, listen),
     .help = "Sockets to listen on, as proto:host:port items separated by "
             "spaces (proto udp or tcp; IPv6 as [::1]:5060). Port 0 picks "
             "a free port; the real ports are logged and written to the "
             "--ready-file."},
    {.key = "domain",
     .type = CFG_STRING,
     .def = "localhost",
     .offset = offsetof(struct app_sip_cfg, domain),
     .help = "SIP domain served: the host part of the extensions' "
             "addresses (sip:100@domain)."},
    {.key = "realm",
     .type = CFG_STRING,
     .def = "",
     .offset = offsetof(struct app_sip_cfg, realm),
     .help = "Digest authentication realm. Empty means the same as "
             "domain."},
    {.key = "workers",
     .type = CFG_UINT,
     .min = 0,
     .max = 64,
     .def = "0",
     .offset = offsetof(struct app_sip_cfg, workers),
     .help = "Worker threads, each with its own event loop and sockets "
             "(SO_REUSEPORT). 0 means one per CPU."},
    {.key = "udp_spread",
     .type = CFG_ENUM,
     .def = "auto",
     .choices = spread_choices,
     .offset = offsetof(struct app_sip_cfg, udp_spread),
     .help = "Spread UDP requests over the workers by Call-ID: the worker "
             "that reads a request hands it to the worker its Call-ID "
             "hashes to, so a single busy source (a trunk, an SBC, a load "
             "generator), which the kernel gives to one worker, uses "
             "every core. Costs one hand-over between threads for most "
             "requests, and a second thread that must get a CPU for each "
             "of them. no: each request is handled by the worker that "
             "read it. auto: yes when the daemon may use 3 CPUs or more, "
             "no on 1 or 2 CPUs, where spreading was measured to raise "
             "the response time and lower the highest rate (BENCHMARKS.md)."},
    {.key = "user_agent",
     .type = CFG_STRING,
     .def = "pushpbx/" PUSHPBX_VERSION,
     .offset = offsetof(struct app_sip_cfg, user_agent),
     .help = "Product name for the Server and User-Agent headers. Not "
             "applied yet: responses carry the built-in Server: "
             "pushpbx/VERSION of the SIP builder."},
    {.key = "t1_ms",
     .type = CFG_UINT,
     .min = 10,
     .max = 60000,
     .def = "500",
     .offset = offsetof(struct app_sip_cfg, t1_ms),
     .help = "RFC 3261 timer T1 (round-trip estimate) in milliseconds."},
    {.key = "t2_ms",
     .type = CFG_UINT,
     .min = 100,
     .max = 600000,
     .def = "4000",
     .offset = offsetof(struct app_sip_cfg, t2_ms),
     .help = "RFC 3261 timer T2 (longest retransmit interval for non-INVITE "
             "requests and INVITE responses) in milliseconds; at least "
             "t1_ms."},
    {.key = "t4_ms",
     .type = CFG_UINT,
     .min = 100,
     .max = 600000,
     .def = "5000",
     .offset = offsetof(struct app_sip_cfg, t4_ms),
     .help = "RFC 3261 timer T4 (how long a message may stay in the "
             "network) in milliseconds."},
    {.key = "max_connections",
     .type = CFG_UINT,
     .min = 1,
     .max = 1000000,
     .def = "1024",
     .offset = offsetof(struct app_sip_cfg, max_connections),
     .help = "Open TCP connections per worker; more are accepted and "
             "closed at once."},
    {.key = "tcp_max_per_source",
     .type = CFG_UINT,
     .min = 0,
     .max = 1000000,
     .def = "64",
     .offset = offsetof(struct app_sip_cfg, tcp_max_per_source),
     .help = "Open TCP connections accepted from one source address (an "
             "IPv6 source counts per /64), all workers together; more are "
             "accepted and closed at once. Phones behind one NAT share an "
             "address: allow one per phone there. 0 = no cap."},
    {.key = "tcp_first_message_ms",
     .type = CFG_UINT,
     .min = 0,
     .max = 600000,
     .def = "5000",
     .offset = offsetof(struct app_sip_cfg, tcp_first_message_ms),
     .help = "A new TCP connection is closed unless its first complete "
             "SIP message arrives within this many milliseconds of the "
             "accept (CRLF keep-alives do not count). 0 = no deadline."},
    {.key = "tcp_message_ms",
     .type = CFG_UINT,
     .min = 0,
     .max = 600000,
     .def = "10000",
     .offset = offsetof(struct app_sip_cfg, tcp_message_ms),
     .help = "Once the first bytes of a SIP message arrived on a TCP "
             "connection, the whole message must arrive within this many "
             "milliseconds, or the connection is closed. 0 = no "
             "deadline."},
    {.key = "tcp_idle_timeout_s",
     .type = CFG_UINT,
     .min = 0,
     .max = 86400,
     .def = "600",
     .offset = offsetof(struct app_sip_cfg, tcp_idle_timeout_s),
     .help = "Close a TCP connection after this many seconds without "
             "traffic, once it has carried a message (a phone's registered "
             "flow lives on this); 0 never closes."},
    {.key = "shutdown_ms",
     .type = CFG_UINT,
     .min = 0,
     .max = 30000,
     .def = "2000",
     .offset = offsetof(struct app_sip_cfg, shutdown_ms),
     .help = "On SIGTERM/SIGINT, the longest the daemon waits before it "
             "exits. At once, every ringing call is answered 503 with "
             "Retry-After and its branches are CANCELled, and new calls "
             "get 503; the daemon then exits as soon as those branches and "
             "the missed-call pushes are done, or after this many "
             "milliseconds. 0 exits at once (the answers still go out). A "
             "second signal stops at once."},
};

/* Derive realm and check what a single key cannot: the listen items must
 * parse (so --check-config catches them) and T2 >= T1. */
static int
sip_finish(void *sec, char *err, size_t errlen)
{
    struct app_sip_cfg *s = sec;
    struct tp_listen_spec specs[TP_MAX_LISTENERS];
    char why[256];
    size_t n;

    if (s->realm[0] == '\0') {
        free(s->realm);
        s->realm = xstrdup(s->domain);
    }
    if (s->listen.count == 0) {
        snprintf(err, errlen, "'listen' is empty");
        return -EINVAL;
    }
    if (s->listen.count > TP_MAX_LISTENERS) {
        snprintf(err, errlen, "'listen': more than %d items", TP_MAX_LISTENERS);
        return -EINVAL;
    }
    for (size_t i = 0; i < s->listen.count; i++) {
        why[0] = '\0';
        if (tp_listen_spec_parse(s->listen.items[i], specs, 1, &n, why,
                                 sizeof(why)) < 0) {
            snprintf(err, errlen, "'listen': bad item '%s'%s%s",
                     s->listen.items[i], why[0] ? ": " : "", why);
            return -EINVAL;
        }
    }
    if (s->t2_ms < s->t1_ms) {
        snprintf(err, errlen, "'t2_ms' (%u) is less than 't1_ms' (%u)",
                 s->t2_ms, s->t1_ms);
        return -EINVAL;
    }
    return 0;
}

const struct cfg_section app_sip_section = {
    .name = "sip",
    .help = "SIP listeners, identity and protocol timers.",
    .options = sip_options,
    .option_count = sizeof(sip_options) / sizeof(sip_options[0]),
    .size = sizeof(struct app_sip_cfg),
    .finish = sip_finish,
};

const char *const app_log_journal_modes[] = {"auto", "yes", "no", NULL};

/* Same order as enum log_level: the loaded index is the level. */
_Static_assert(LOG_ERROR == 0 && LOG_DEBUG == 4, "log_levels[] order");
static const char *const log_levels[] = {"error", "warn",  "notice",
                                         "info",  "debug", NULL};

static const struct cfg_option log_options[] = {
    {.key = "level",
     .type = CFG_ENUM,
     .def = "notice",
     .choices = log_levels,
     .offset = offsetof(struct app_log_cfg, level),
     .help = "Lowest level written to stderr. info adds one line per "
             "request answered; debug adds protocol detail."},
    {.key = "journal",
     .type = CFG_ENUM,
     .def = "auto",
     .choices = app_log_journal_modes,
     .offset = offsetof(struct app_log_cfg, journal),
     .help = "Write to the systemd journal with structured fields "
             "(PRIORITY, PUSHPBX_ROOM, PUSHPBX_CALL_ID, PUSHPBX_EXT) "
             "instead of stderr lines. auto: when stderr is the journal "
             "(started by systemd: $JOURNAL_STREAM names stderr); yes: "
             "always (falls back to stderr when the journal is not "
             "there); no: stderr."},
};

const struct cfg_section app_log_section = {
    .name = "log",
    .help = "Logging: stderr lines, or the systemd journal.",
    .options = log_options,
    .option_count = sizeof(log_options) / sizeof(log_options[0]),
    .size = sizeof(struct app_log_cfg),
};

static const struct cfg_section *const sections[] = {
    &app_sip_section, &app_log_section, &reg_cfg_section, &store_cfg_section,
    &reg_ext_cfg_section, &reg_msg_cfg_section, &admin_cfg_section,
    &proxy_cfg_section, &push_apns_cfg_section, &push_fcm_cfg_section,
    &push_wake_cfg_section, &media_cfg_section, &tp_tls_cfg_section,
    &cluster_cfg_section,
    /* Later rooms add their sections here ([push.apns], ...). */
};

const struct cfg_section *const *
app_cfg_sections(size_t *count)
{
    *count = sizeof(sections) / sizeof(sections[0]);
    return sections;
}
