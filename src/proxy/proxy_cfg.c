/*
 * proxy/proxy_cfg: the [proxy] option table (style.md §9). Defaults must
 * equal proxy_cfg_defaults() (the unit test checks it).
 */
#include "proxy/proxy_cfg.h"

#include <stddef.h>

static const struct cfg_option proxy_options[] = {
    {.key = "ring_timeout_s",
     .type = CFG_UINT,
     .min = 1,
     .max = 3600,
     .def = "45",
     .offset = offsetof(struct proxy_cfg, ring_timeout_s),
     .help = "Seconds a call rings before every branch is cancelled; the "
             "caller then gets 480 Temporarily Unavailable (408 Request "
             "Timeout if no device ever rang)."},
    {.key = "call_records",
     .type = CFG_UINT,
     .min = 1,
     .max = 1000000,
     .def = "1000",
     .offset = offsetof(struct proxy_cfg, call_records),
     .help = "Finished calls kept (newest first) in memory and in the "
             "store's call_records table (per node) for the admin listing "
             "and missed-call notifications."},
    {.key = "max_branches",
     .type = CFG_UINT,
     .min = 1,
     .max = 32,
     .def = "16",
     .offset = offsetof(struct proxy_cfg, max_branches),
     .help = "Devices one call is forked to at most (including devices "
             "added while it rings)."},
    {.key = "timer_c_s",
     .type = CFG_UINT,
     .min = 1,
     .max = 86400,
     .def = "181",
     .offset = offsetof(struct proxy_cfg, timer_c_s),
     .help = "RFC 3261 Timer C: seconds a forwarded INVITE (a call's "
             "branch, a relayed re-INVITE) may go without a final "
             "response, counted again from each 101-199 provisional. "
             "When it fires the branch counts as 408 Request Timeout and "
             "is CANCELled if it sent a provisional; with no answer to the "
             "CANCEL either its transaction ends 64*T1 later. RFC 3261 "
             "wants more than 3 minutes: values of 180 or less are for "
             "tests only. The ring timeout (ring_timeout_s) usually ends "
             "a ringing call first."},
};

const struct cfg_section proxy_cfg_section = {
    .name = "proxy",
    .help = "Calls between extensions: forking, ring timeout, call log.",
    .options = proxy_options,
    .option_count = sizeof(proxy_options) / sizeof(proxy_options[0]),
    .size = sizeof(struct proxy_cfg),
};
