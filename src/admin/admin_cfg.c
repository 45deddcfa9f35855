/*
 * admin/admin_cfg: the [admin] option table (struct admin_cfg, admin.h).
 * The help texts are the reference (`pushpbx --help-config`).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "admin/admin.h"

static const struct cfg_option admin_options[] = {
    {.key = "enabled",
     .type = CFG_BOOL,
     .def = "yes",
     .offset = offsetof(struct admin_cfg, enabled),
     .help = "Run the administration HTTP server (API, web page, "
             "provisioning links, /metrics)."},
    {.key = "listen",
     .type = CFG_STRING,
     .def = "127.0.0.1:8080",
     .offset = offsetof(struct admin_cfg, listen),
     .help = "host:port of the admin HTTP server (IPv4). Port 0 picks a "
             "free port, reported as admin_port in the --ready-file. Keep "
             "it on 127.0.0.1 unless a TLS proxy is in front."},
    {.key = "token",
     .type = CFG_STRING,
     .def = "",
     .offset = offsetof(struct admin_cfg, token),
     .help = "Bearer token every API call must carry. Empty: a random one "
             "is generated at start, printed once to stderr and written "
             "to token_file."},
    {.key = "token_file",
     .type = CFG_PATH,
     .def = "var/admin.token",
     .offset = offsetof(struct admin_cfg, token_file),
     .help = "Where a generated token is written (mode 0600); pushpbxctl "
             "reads it by default."},
    {.key = "prov_db",
     .type = CFG_PATH,
     .def = "var/admin.db",
     .offset = offsetof(struct admin_cfg, prov_db),
     .help = "Deprecated: the provisioning links now live in the "
             "[store] database. If this file (of an older version) exists "
             "at start, its links are imported once into the store and it "
             "is renamed to FILE.imported. Empty: no import."},
    {.key = "prov_link_ttl_s",
     .type = CFG_UINT,
     .min = 1,
     .max = 7776000,
     .def = "604800",
     .offset = offsetof(struct admin_cfg, prov_link_ttl_s),
     .help = "Lifetime of a provisioning link in seconds (default 7 days, "
             "at most 90). After it the link answers 410 Gone. A link "
             "keeps the lifetime it was created with."},
    {.key = "prov_link_max_fetches",
     .type = CFG_UINT,
     .min = 1,
     .max = 1000,
     .def = "10",
     .offset = offsetof(struct admin_cfg, prov_link_max_fetches),
     .help = "Documents a provisioning link serves before it answers 410 "
             "Gone (one phone setup takes one or two fetches). A password "
             "reset revokes the link at once."},
    {.key = "public_url",
     .type = CFG_STRING,
     .def = "",
     .offset = offsetof(struct admin_cfg, public_url),
     .help = "Base URL phones use to fetch provisioning links, e.g. "
             "https://pbx.example.com. Empty: http://<listen>."},
    {.key = "sip_host",
     .type = CFG_STRING,
     .def = "",
     .offset = offsetof(struct admin_cfg, sip_host),
     .help = "SIP server host name or address written into provisioning "
             "documents. Empty: the [sip] domain."},
    {.key = "max_body",
     .type = CFG_UINT,
     .min = 256,
     .max = 1048576,
     .def = "16384",
     .offset = offsetof(struct admin_cfg, max_body),
     .help = "Largest request body accepted; larger gets 413."},
    {.key = "max_connections",
     .type = CFG_UINT,
     .min = 1,
     .max = 1000,
     .def = "64",
     .offset = offsetof(struct admin_cfg, max_connections),
     .help = "Open admin connections at once, all sources together; "
             "more are closed on accept."},
    {.key = "max_connections_per_ip",
     .type = CFG_UINT,
     .min = 0,
     .max = 1000,
     .def = "16",
     .offset = offsetof(struct admin_cfg, max_connections_per_ip),
     .help = "Open admin connections one source address may hold, so slow "
             "clients from one address cannot take every slot. 0: no "
             "per-source cap (behind a reverse proxy every client has the "
             "proxy's address; let the proxy limit them)."},
    {.key = "request_timeout_s",
     .type = CFG_UINT,
     .min = 1,
     .max = 3600,
     .def = "10",
     .offset = offsetof(struct admin_cfg, request_timeout_s),
     .help = "A request must arrive whole (headers and body) within this "
             "many seconds of its connection opening or of the previous "
             "answer on it, however steadily it trickles in; else the "
             "connection is closed. Also the idle timeout of a connection "
             "between requests and while an answer is being sent."},
};

static int
admin_finish(void *sec, char *err, size_t errlen)
{
    struct admin_cfg *c = sec;
    const char *colon = strrchr(c->listen, ':');

    if (!colon || colon == c->listen || colon[1] == '\0') {
        snprintf(err, errlen, "'listen': expected host:port, got '%s'",
                 c->listen);
        return -EINVAL;
    }
    for (const char *p = colon + 1; *p; p++) {
        if (*p < '0' || *p > '9') {
            snprintf(err, errlen, "'listen': bad port in '%s'", c->listen);
            return -EINVAL;
        }
    }
    if (strlen(colon + 1) > 5) {
        snprintf(err, errlen, "'listen': bad port in '%s'", c->listen);
        return -EINVAL;
    }
    if (c->max_connections_per_ip > c->max_connections) {
        snprintf(err, errlen,
                 "'max_connections_per_ip' (%u) above 'max_connections' "
                 "(%u)",
                 c->max_connections_per_ip, c->max_connections);
        return -EINVAL;
    }
    if (c->token[0] && strlen(c->token) < 16) {
        snprintf(err, errlen, "'token': at least 16 characters");
        return -EINVAL;
    }
    return 0;
}

const struct cfg_section admin_cfg_section = {
    .name = "admin",
    .help = "Administration HTTP server: JSON API, web page, provisioning "
            "links and Prometheus metrics (docs/admin.md).",
    .options = admin_options,
    .option_count = sizeof(admin_options) / sizeof(admin_options[0]),
    .size = sizeof(struct admin_cfg),
    .finish = admin_finish,
};
