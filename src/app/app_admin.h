/*
 * app/app_admin: starts the admin HTTP server (src/admin) for the daemon:
 * hands it the [admin] config, the registrar, the SIP listeners (for the
 * provisioning document) and the providers the daemon has so far. Rooms
 * that come later (proxy calls, push devices, recent pushes, wake-ups) plug
 * their callbacks into struct admin_sources here.
 */
#ifndef PUSHPBX_APP_APP_ADMIN_H
#define PUSHPBX_APP_APP_ADMIN_H

struct admin;
struct cfg;
struct reg;
struct tp;
struct app_sip_cfg;

/* Start the admin unless [admin] enabled = no (then *out = NULL). A
 * failure is logged and leaves *out NULL: the daemon runs without admin.
 * Returns 0. Main thread, after worker 0 listens. */
int app_admin_start(const struct cfg *cfg, const struct app_sip_cfg *sip,
                    struct reg *reg, const struct tp *tp0, struct admin **out);

#endif
