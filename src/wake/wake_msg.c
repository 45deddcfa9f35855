/*
 * wake/wake_msg: the `message` push (docs/messages.md). The proxy stored a
 * MESSAGE that no binding of the extension could take and answered the
 * sender 202; every push device of the extension gets an alert (never a
 * VoIP push: iOS requires each VoIP push to report a call) so that the
 * app wakes, registers and receives the stored messages.
 */
#include <stdio.h>

#include "base/log.h"
#include "registrar/msgstore.h"
#include "registrar/pushdev.h"
#include "registrar/reg.h"
#include "wake/wake_int.h"

/* Proxy observer, on the worker that answered the sender. */
void
wake_on_message_stored(const struct proxy_msg_info *mi, void *arg)
{
    struct wake *w = arg;
    struct pushdev devs[PUSHDEV_MAX_PER_EXT];
    unsigned sent = 0;

    if (!w->o.devices)
        return;
    size_t n = pushdev_find_ext(w->o.devices, mi->ext, devs,
                                PUSHDEV_MAX_PER_EXT);
    for (size_t i = 0; i < n; i++)
        if (wake_submit_message(w, &devs[i], mi) == 0)
            sent++;
    struct reg_msg_table *mt = w->o.reg ? reg_messages(w->o.reg) : NULL;
    if (sent && mt)
        reg_msg_count_pushed(mt, sent);
    if (n)
        log_info("wake", "message %llu for %s: %u of %zu device(s) pushed",
                 (unsigned long long)mi->id, mi->ext, sent, n);
}
