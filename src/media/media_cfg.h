/*
 * media/media_cfg: the [media] section (cfg_get(cfg, &media_cfg_section)
 * returns a const struct media_cfg *). The loader checks every rtpengine
 * address (IP literal and port) so --check-config catches them.
 */
#ifndef PUSHPBX_MEDIA_MEDIA_CFG_H
#define PUSHPBX_MEDIA_MEDIA_CFG_H

#include "config/cfg.h"

enum media_relay_mode {
    MEDIA_RELAY_OFF,
    MEDIA_RELAY_NAT,    /* only when a side is behind NAT (or private) */
    MEDIA_RELAY_ALWAYS, /* every call */
};

enum media_on_failure {
    MEDIA_ON_FAILURE_PASS,   /* the call goes on without relay, counted */
    MEDIA_ON_FAILURE_REJECT, /* the INVITE is refused */
};

enum media_ice {
    MEDIA_ICE_REMOVE,
    MEDIA_ICE_FORCE,
};

struct media_cfg {
    struct cfg_list rtpengine; /* "udp:IP:PORT" items, tried round-robin */
    int relay;                 /* enum media_relay_mode; OFF when no
                                  rtpengine is configured */
    unsigned timeout_ms;       /* one try of one ng request */
    unsigned retries;          /* tries after the first, per rtpengine */
    int on_failure;            /* enum media_on_failure */
    int ice;                   /* enum media_ice */
    unsigned probe_ms;         /* ping an rtpengine marked down this often */
    int srtp;                  /* 0 tls: RTP/SAVP towards TLS bindings and
                                  RTP/AVP towards others; 1 keep */
    unsigned window;           /* ng requests in flight per worker and
                                  rtpengine; 0: no limit */
};

extern const struct cfg_section media_cfg_section;

#endif
