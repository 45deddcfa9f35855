/*
 * app/app_admin: wiring of the admin server into the daemon (see
 * app_admin.h). No provider callbacks yet: calls, pushes, wake-ups and push
 * devices show as "not available" until their rooms register here.
 */
#include "app/app_admin.h"

#include "admin/admin.h"
#include "app/app_cfg.h"
#include "app/app_wake.h"
#include "base/log.h"
#include "transport/tp.h"

int
app_admin_start(const struct cfg *cfg, const struct app_sip_cfg *sip,
                struct reg *reg, const struct tp *tp0, struct admin **out)
{
    const struct admin_cfg *ac = cfg_get(cfg, &admin_cfg_section);
    struct admin_sip_listener ls[TP_MAX_LISTENERS];
    struct tp_listen_spec s;
    size_t n = 0;
    char err[512];
    int rc;

    *out = NULL;
    if (!ac->enabled)
        return 0;
    for (size_t i = 0; i < tp_listener_count(tp0) && n < TP_MAX_LISTENERS;
         i++) {
        if (tp_listener(tp0, i, &s) < 0)
            continue;
        ls[n].transport = tp_proto_name(s.proto);
        ls[n].port = tp_addr_port(&s.addr);
        n++;
    }
    struct admin_opts o = {
        .cfg = ac,
        .reg = reg,
        .domain = sip->domain,
        .realm = sip->realm,
        .listeners = ls,
        .listener_count = n,
        /* push room: fill .push (FCM project/sender, APNs environment and
         * topic) and .sources once its config section exists. */
    };
    app_wake_admin(&o.sources, &o.push); /* push devices, recent pushes */
    rc = admin_start(&o, out, err, sizeof(err));
    if (rc < 0) {
        /* The admin must not take SIP down (a busy port when several
         * daemons share a host, an unwritable var/): log and go on. */
        log_error("app", "%s: running without the admin server", err);
        *out = NULL;
    }
    return 0;
}
