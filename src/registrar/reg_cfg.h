/*
 * registrar/reg_cfg: configuration sections of the registrar:
 * [registrar] (struct reg_cfg) and [extension.*] (struct reg_ext_cfg, one
 * instance per extension; the instance name is the number), and
 * [messages] (struct reg_msg_cfg, stored chat messages: msgstore.h).
 */
#ifndef PUSHPBX_REGISTRAR_REG_CFG_H
#define PUSHPBX_REGISTRAR_REG_CFG_H

#include "config/cfg.h"
#include "registrar/msgstore.h"
#include "registrar/reg.h"

extern const struct cfg_section reg_cfg_section;
extern const struct cfg_section reg_ext_cfg_section;

#endif
