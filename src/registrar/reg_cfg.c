/*
 * registrar/reg_cfg: the [registrar] and [extension.*] configuration
 * sections (style.md §9: each option declared once, here). The defaults
 * must equal reg_cfg_defaults() in reg.c (a unit test checks it).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>

#include "config/cfg.h"
#include "registrar/reg_cfg.h"

static const char *const unknown_choices[] = {"challenge", "404", NULL};
/* Order matches enum reg_algs. */
static const char *const alg_choices[] = {"sha256,md5", "md5,sha256", "sha256",
                                          "md5", NULL};

static const struct cfg_option reg_options[] = {
    {.key = "min_expires",
     .type = CFG_UINT,
     .min = 1,
     .max = 86400,
     .def = "60",
     .offset = offsetof(struct reg_cfg, min_expires_s),
     .help = "Shortest registration accepted; shorter (but not 0) gets "
             "423 Interval Too Brief with Min-Expires."},
    {.key = "max_expires",
     .type = CFG_UINT,
     .min = 1,
     .max = 604800,
     .def = "7200",
     .offset = offsetof(struct reg_cfg, max_expires_s),
     .help = "Longer registrations are shortened to this (the 200 OK "
             "tells the phone)."},
    {.key = "default_expires",
     .type = CFG_UINT,
     .min = 1,
     .max = 604800,
     .def = "3600",
     .offset = offsetof(struct reg_cfg, default_expires_s),
     .help = "Expiry when neither the Contact nor an Expires header "
             "gives one."},
    {.key = "max_contacts",
     .type = CFG_UINT,
     .min = 1,
     .max = 64,
     .def = "10",
     .offset = offsetof(struct reg_cfg, max_contacts),
     .help = "SIP bindings per extension; a new one beyond this evicts "
             "the least recently refreshed."},
    {.key = "nonce_ttl",
     .type = CFG_UINT,
     .min = 5,
     .max = 86400,
     .def = "300",
     .offset = offsetof(struct reg_cfg, nonce_ttl_s),
     .help = "Seconds a digest nonce stays valid; older nonces are "
             "answered 401 with stale=true."},
    {.key = "nonce_table_size",
     .type = CFG_UINT,
     .min = 1024,
     .max = 16777216,
     .def = "65536",
     .offset = offsetof(struct reg_cfg, nonce_table_size),
     .help = "Nonces tracked for nonce-count replay checks (about 100 "
             "bytes each)."},
    {.key = "unknown_extension",
     .type = CFG_ENUM,
     .def = "challenge",
     .choices = unknown_choices,
     .offset = offsetof(struct reg_cfg, unknown_ext),
     .help = "challenge: unknown extensions are challenged and fail like "
             "a wrong password, so scanners cannot enumerate extensions; "
             "404: answer 404 Not Found at once."},
    {.key = "auth_fail_threshold",
     .type = CFG_UINT,
     .min = 0,
     .max = 100000,
     .def = "10",
     .offset = offsetof(struct reg_cfg, auth_fail_threshold),
     .help = "Failed authentications from one source within "
             "auth_fail_window that block it (0 = never block). A source "
             "is an IPv4 address or an IPv6 prefix "
             "(throttle_ipv6_prefix)."},
    {.key = "auth_fail_window",
     .type = CFG_UINT,
     .min = 1,
     .max = 86400,
     .def = "60",
     .offset = offsetof(struct reg_cfg, auth_fail_window_s),
     .help = "Window in seconds for counting failed authentications."},
    {.key = "auth_block",
     .type = CFG_UINT,
     .min = 1,
     .max = 604800,
     .def = "300",
     .offset = offsetof(struct reg_cfg, auth_block_s),
     .help = "Seconds a blocked source gets 403 Forbidden for every "
             "REGISTER and every request the proxy authenticates."},
    {.key = "throttle_ipv6_prefix",
     .type = CFG_UINT,
     .min = 16,
     .max = 128,
     .def = "64",
     .offset = offsetof(struct reg_cfg, throttle_ipv6_prefix),
     .help = "IPv6 sources are counted per prefix of this many bits: one "
             "host owns a whole /64 and could change address per guess. "
             "128 counts each address."},
    {.key = "throttle_table_size",
     .type = CFG_UINT,
     .min = 16,
     .max = 16777216,
     .def = "65536",
     .offset = offsetof(struct reg_cfg, throttle_table_size),
     .help = "Sources with failed authentications tracked at once (about "
             "80 bytes each). A blocked source stays until its block "
             "ends; when full, the least recently failed unblocked source "
             "is forgotten. If every entry is blocked, all other sources "
             "share one counter, and once it is blocked they all get 403 "
             "until that block ends."},
    {.key = "flow_timer_s",
     .type = CFG_UINT,
     .min = 10,
     .max = 3600,
     .def = "120",
     .offset = offsetof(struct reg_cfg, flow_timer_s),
     .help = "Flow-Timer of the 200 OK to a REGISTER that asks for SIP "
             "outbound (RFC 5626: Supported or Require outbound, a Contact "
             "with reg-id and +sip.instance) over TCP or TLS: the phone "
             "sends a CRLFCRLF keep-alive every 80-100 % of this many "
             "seconds. Keep it below [sip] tcp_idle_timeout_s."},
    {.key = "flow_timer_udp_s",
     .type = CFG_UINT,
     .min = 10,
     .max = 3600,
     .def = "29",
     .offset = offsetof(struct reg_cfg, flow_timer_udp_s),
     .help = "Flow-Timer for an outbound REGISTER over UDP: the interval "
             "of the phone's STUN keep-alives (answered on the SIP port). "
             "Short, because NATs forget UDP mappings after 30 s or so."},
    {.key = "digest_algorithms",
     .type = CFG_ENUM,
     .def = "sha256,md5",
     .choices = alg_choices,
     .offset = offsetof(struct reg_cfg, algorithms),
     .help = "Digest algorithms offered, most preferred first (one "
             "WWW-Authenticate each; RFC 8760). Use md5,sha256 or md5 for "
             "clients that only read the first challenge (SIPp 3.6). "
             "baresip 1.0 (libre) rejects a 401 that carries any non-MD5 "
             "challenge, whatever the order: it registers only with md5."},
};

const struct cfg_section reg_cfg_section = {
    .name = "registrar",
    .help = "REGISTER processing, digest authentication and brute-force "
            "protection.",
    .options = reg_options,
    .option_count = sizeof(reg_options) / sizeof(reg_options[0]),
    .size = sizeof(struct reg_cfg),
};

static const struct cfg_option ext_options[] = {
    {.key = "name",
     .type = CFG_STRING,
     .def = "",
     .offset = offsetof(struct reg_ext_cfg, name),
     .help = "Display name."},
    {.key = "password",
     .type = CFG_STRING,
     .def = "",
     .offset = offsetof(struct reg_ext_cfg, password),
     .help = "SIP password. Imported at start as HA1 values (MD5 and "
             "SHA-256, bound to [sip] realm); the database never holds "
             "it. Required."},
    {.key = "enabled",
     .type = CFG_BOOL,
     .def = "yes",
     .offset = offsetof(struct reg_ext_cfg, enabled),
     .help = "A disabled extension cannot register (403)."},
    {.key = "max_push_devices",
     .type = CFG_UINT,
     .min = 1,
     .max = 16,
     .def = "1",
     .offset = offsetof(struct reg_ext_cfg, max_push_devices),
     .help = "Push devices per extension; the newest replaces the "
             "oldest."},
};

static int
ext_finish(void *sec, char *err, size_t errlen)
{
    struct reg_ext_cfg *e = sec;

    if (!e->password || !e->password[0]) {
        if (err && errlen)
            snprintf(err, errlen, "password is required");
        return -EINVAL;
    }
    return 0;
}

const struct cfg_section reg_ext_cfg_section = {
    .name = "extension.*",
    .help = "One section per extension, [extension.NUMBER].",
    .options = ext_options,
    .option_count = sizeof(ext_options) / sizeof(ext_options[0]),
    .size = sizeof(struct reg_ext_cfg),
    .finish = ext_finish,
};

/* [messages]: stored chat messages (msgstore.h, docs/messages.md). */
static const struct cfg_option msg_options[] = {
    {.key = "ttl_days",
     .type = CFG_UINT,
     .min = 1,
     .max = 365,
     .def = "7",
     .offset = offsetof(struct reg_msg_cfg, ttl_days),
     .help = "A MESSAGE stored for a sleeping app is deleted after this "
             "many days if the app has not fetched it by registering."},
    {.key = "max_per_extension",
     .type = CFG_UINT,
     .min = 1,
     .max = 100000,
     .def = "1000",
     .offset = offsetof(struct reg_msg_cfg, max_per_extension),
     .help = "Stored messages kept per extension; a new one beyond it "
             "drops the oldest (counted), and its sender still gets 202 "
             "Accepted."},
    {.key = "max_bytes",
     .type = CFG_UINT,
     .min = 1,
     .max = 1048576,
     .def = "65536",
     .offset = offsetof(struct reg_msg_cfg, max_bytes),
     .help = "Largest MESSAGE body accepted, in bytes; a larger one gets "
             "413 Request Entity Too Large."},
    {.key = "content_types",
     .type = CFG_LIST,
     .def = "text/plain message/cpim application/im-iscomposing+xml",
     .offset = offsetof(struct reg_msg_cfg, content_types),
     .help = "MESSAGE content types accepted (media types; parameters such "
             "as charset are ignored); others get 415 Unsupported Media "
             "Type. isComposing notifications are relayed to live "
             "bindings but never stored or pushed."},
};

const struct cfg_section reg_msg_cfg_section = {
    .name = "messages",
    .help = "Chat messages (SIP MESSAGE) to sleeping phones: stored, "
            "pushed and delivered when the app registers "
            "(docs/messages.md).",
    .options = msg_options,
    .option_count = sizeof(msg_options) / sizeof(msg_options[0]),
    .size = sizeof(struct reg_msg_cfg),
};
