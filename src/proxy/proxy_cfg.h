/*
 * proxy/proxy_cfg: the [proxy] configuration section (struct proxy_cfg).
 */
#ifndef PUSHPBX_PROXY_PROXY_CFG_H
#define PUSHPBX_PROXY_PROXY_CFG_H

#include "config/cfg.h"
#include "proxy/proxy.h"

extern const struct cfg_section proxy_cfg_section;

#endif
