/*
 * push/push_cfg: the [apns], [fcm] and [push] configuration sections
 * (option tables in push_cfg.c, style.md §9) and their conversion into the
 * push client's struct push_conf. Enabling push is one section per
 * platform (product.md): `[apns] enabled = yes` plus the key, or
 * `[fcm] enabled = yes` plus the service-account file.
 */
#ifndef PUSHPBX_PUSH_PUSH_CFG_H
#define PUSHPBX_PUSH_PUSH_CFG_H

#include <stdbool.h>

#include "config/cfg.h"
#include "push/push.h"

/* [apns]; strings are owned by the cfg ("" = unset). */
struct push_apns_cfg {
    bool enabled;
    char *base_url;
    bool sandbox;
    char *key_file, *key_id, *team_id, *topic;
    char *cert_file, *cert_key_file;
    char *ca_file;
    unsigned timeout_ms;
};

/* [fcm] */
struct push_fcm_cfg {
    bool enabled;
    char *service_account_file;
    char *base_url, *token_uri, *ca_file;
    unsigned timeout_ms;
};

/* [push]: delivery and wake-up behaviour shared by both providers. */
struct push_wake_cfg {
    unsigned grace_ms;     /* UDP binding: wait this for a 1xx */
    bool ringing;          /* 180 to the caller when pushing */
    unsigned recent;       /* recent-pushes ring size */
    bool from_workers;     /* each worker sends its calls' pushes */
    unsigned queue_max;    /* push_conf.queue_max */
    unsigned max_attempts; /* push_conf.max_attempts */
    unsigned backoff_initial_ms;
    unsigned backoff_max_ms;
    unsigned idle_expiry_days; /* push devices unused this long expire */
    struct cfg_list disabled_extensions;
    /* Message pushes carry the text as preview (push_msg.preview); no:
     * the SIP side passes preview NULL and the alert says "New message". */
    bool message_preview;
};

extern const struct cfg_section push_apns_cfg_section;
extern const struct cfg_section push_fcm_cfg_section;
extern const struct cfg_section push_wake_cfg_section;

/* Fill *out from the three sections (any may be NULL = defaults/disabled).
 * Strings in *out point into the sections (valid while the cfg lives);
 * "" becomes NULL. */
void push_cfg_conf(const struct push_apns_cfg *a, const struct push_fcm_cfg *f,
                   const struct push_wake_cfg *w, struct push_conf *out);

/* Is ext listed in [push] disabled_extensions? */
bool push_cfg_ext_disabled(const struct push_wake_cfg *w, const char *ext);

#endif
