/*
 * media: the [media] configuration section (style.md §9: every option is
 * declared once, here). Only data and a finish hook that checks the
 * rtpengine addresses.
 */
#include "media/media_cfg.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>

#include "media/ng.h"

static const char *const relay_modes[] = {"off", "nat", "always", NULL};
static const char *const failure_modes[] = {"pass", "reject", NULL};
static const char *const ice_modes[] = {"remove", "force", NULL};
static const char *const srtp_modes[] = {"tls", "keep", NULL};

static const struct cfg_option media_options[] = {
    {.key = "rtpengine",
     .type = CFG_LIST,
     .def = "",
     .offset = offsetof(struct media_cfg, rtpengine),
     .help = "rtpengine ng control addresses (udp:IP:PORT, IPv6 as "
             "udp:[::1]:2223; IP literals only). Several are used "
             "round-robin per call (a call stays on the rtpengine that "
             "took its offer); one that does not answer is marked down "
             "and the next is tried. Empty: no media relay."},
    {.key = "relay",
     .type = CFG_ENUM,
     .def = "always",
     .choices = relay_modes,
     .offset = offsetof(struct media_cfg, relay),
     .help = "Which calls have their media relayed: off; nat (a side "
             "whose SDP address differs from the address its signalling "
             "came from, or is private; the callee's side counts when "
             "its Contact is private and not where it registered from); "
             "always. Without rtpengine addresses it is off whatever is "
             "set here."},
    {.key = "timeout_ms",
     .type = CFG_UINT,
     .min = 10,
     .max = 10000,
     .def = "500",
     .offset = offsetof(struct media_cfg, timeout_ms),
     .help = "Wait this long for an ng answer before sending the request "
             "again (same cookie, so rtpengine answers a repeat from its "
             "cache)."},
    {.key = "retries",
     .type = CFG_UINT,
     .min = 0,
     .max = 10,
     .def = "1",
     .offset = offsetof(struct media_cfg, retries),
     .help = "Tries after the first on one rtpengine before it is marked "
             "down and the next one is tried: a request gives up after "
             "(retries + 1) * timeout_ms per rtpengine."},
    {.key = "on_failure",
     .type = CFG_ENUM,
     .def = "pass",
     .choices = failure_modes,
     .offset = offsetof(struct media_cfg, on_failure),
     .help = "When no rtpengine answers an offer: pass (the call goes on "
             "without relay, counted and logged) or reject (the INVITE "
             "is answered 503, or 488 when rtpengine refused the SDP). A "
             "call already up is never cut: a re-INVITE whose offer fails "
             "is answered 503 and the media stays on rtpengine."},
    {.key = "ice",
     .type = CFG_ENUM,
     .def = "remove",
     .choices = ice_modes,
     .offset = offsetof(struct media_cfg, ice),
     .help = "ICE candidates in relayed SDP: remove (phones talk to "
             "rtpengine only) or force (rtpengine adds its own)."},
    {.key = "srtp",
     .type = CFG_ENUM,
     .def = "tls",
     .choices = srtp_modes,
     .offset = offsetof(struct media_cfg, srtp),
     .help = "Media profile of the SDP a relayed call's callee gets: tls "
             "(RTP/SAVP with SDES keys towards a phone registered over "
             "TLS, plain RTP/AVP towards the others: a mobile app offering "
             "SRTP reaches a desk phone that only does RTP, and back) or "
             "keep (as the caller offered)."},
    {.key = "probe_ms",
     .type = CFG_UINT,
     .min = 100,
     .max = 600000,
     .def = "5000",
     .offset = offsetof(struct media_cfg, probe_ms),
     .help = "An rtpengine marked down is pinged this often and marked "
             "up again on its first answer; calls avoid it meanwhile."},
    {.key = "window",
     .type = CFG_UINT,
     .min = 0,
     .max = 4096,
     .def = "64",
     .offset = offsetof(struct media_cfg, window),
     .help = "ng requests each SIP worker keeps in flight per rtpengine; "
             "more wait in the worker's queue, in order, and go out as "
             "answers come back (the wait counts in the set-up time, not "
             "in timeout_ms). A burst larger than rtpengine's ng socket "
             "buffer (about 100 requests with Linux's default 208 KiB) is "
             "dropped by the kernel and costs a timeout_ms repeat; a small "
             "window throttles calls when rtpengine answers slowly. 0: no "
             "limit."},
};

static int
media_finish(void *sec, char *err, size_t errlen)
{
    struct media_cfg *m = sec;
    struct sockaddr_storage ss;
    socklen_t len;
    const char *why = NULL;

    for (size_t i = 0; i < m->rtpengine.count; i++) {
        if (media_ng_addr_parse(m->rtpengine.items[i], &ss, &len, &why) < 0) {
            snprintf(err, errlen, "'rtpengine': bad item '%s': %s",
                     m->rtpengine.items[i], why);
            return -EINVAL;
        }
    }
    if (m->rtpengine.count == 0)
        m->relay = MEDIA_RELAY_OFF;
    return 0;
}

const struct cfg_section media_cfg_section = {
    .name = "media",
    .help = "Media relay: rtpengine over its ng control protocol.",
    .options = media_options,
    .option_count = sizeof(media_options) / sizeof(media_options[0]),
    .size = sizeof(struct media_cfg),
    .finish = media_finish,
};
