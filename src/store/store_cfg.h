/*
 * store/store_cfg: the [store] section table for the config loader
 * (cfg_get(cfg, &store_cfg_section) returns a const struct store_cfg *).
 */
#ifndef PUSHPBX_STORE_STORE_CFG_H
#define PUSHPBX_STORE_STORE_CFG_H

#include "config/cfg.h"
#include "store/store.h"

extern const struct cfg_section store_cfg_section;

#endif
