/*
 * proxy/proxy_late: rule 7 (product.md): a VoIP-pushed phone that woke
 * for a call that already ended gets the INVITE of that call in its own
 * client transaction, CANCELled with a Reason as soon as it answers
 * provisionally; a 2xx it sends anyway is ACKed and BYEd.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/xmalloc.h"
#include "proxy/proxy_int.h"
#include "registrar/reg.h"
#include "sip/build.h"
#include "sip/uri.h"

/* ---- rule 7: INVITE + CANCEL to a phone woken for an ended call --------- */

/* One late INVITE and, if the phone answers it, its BYE. Freed when both
 * client transactions have terminated (refs). */
struct late_call {
    struct proxy *p;
    struct tp_dest dst;
    unsigned refs;
    bool answered;
    char ruri[PROXY_LATE_URI_MAX];
    char from[256];
    char call_id[PROXY_REC_CALL_ID_MAX];
    char reason[128]; /* "Reason: ...\r\n" */
};

static void on_late_event(struct txn *t, enum txn_event ev,
                          const struct sip_msg *rsp, void *arg);

/* ACK (stateless) or BYE (own transaction) in the dialog a 2xx made. */
static int
late_in_dialog(struct late_call *l, const struct sip_msg *rsp, bool bye)
{
    struct proxy *p = l->p;
    const struct sip_hdr *to = sip_msg_hdr(rsp, SIP_HDR_TO);
    const struct sip_hdr *ct = sip_msg_hdr(rsp, SIP_HDR_CONTACT);
    struct sip_name_addr na;
    struct sip_error e;
    struct slice target = slice_cstr(l->ruri);
    char branch[TXN_BRANCH_MAX];

    if (!to)
        return -EINVAL;
    /* Remote target: the 2xx's Contact (§12.1.2); its Record-Route is
     * ignored: our bindings are the phones themselves, no proxy between. */
    if (ct && sip_name_addr_parse(ct->value, &na, &e) == 0 && na.uri.len)
        target = na.uri;
    txn_branch_new(p->tt, branch);
    buf_reset(&p->out);
    int rc = buf_printf(&p->out,
                        "%s " SLICE_FMT " SIP/2.0\r\n"
                        "Via: SIP/2.0/%s %s;branch=%s;rport\r\n"
                        "Max-Forwards: 70\r\n"
                        "From: %s\r\nTo: " SLICE_FMT "\r\n"
                        "Call-ID: %s\r\nCSeq: %u %s\r\n%s"
                        "Content-Length: 0\r\n\r\n",
                        bye ? "BYE" : "ACK", SLICE_ARG(target),
                        proxy_tp_upper(l->dst.proto),
                        p->via_host[proxy_tpk(l->dst.proto)], branch, l->from,
                        SLICE_ARG(to->value), l->call_id, bye ? 2u : 1u,
                        bye ? "BYE" : "ACK", bye ? l->reason : "");
    if (rc < 0)
        return rc;
    if (!bye)
        return tp_send(p->tp, &l->dst, buf_slice(&p->out), NULL);
    rc = txn_client_start(p->tt, buf_slice(&p->out), &l->dst, on_late_event, l,
                          NULL);
    if (rc == 0)
        l->refs++;
    return rc;
}

static void
on_late_event(struct txn *t, enum txn_event ev, const struct sip_msg *rsp,
              void *arg)
{
    struct late_call *l = arg;

    switch (ev) {
    case TXN_EV_RESPONSE:
        if (txn_kind(t) != TXN_INVITE_CLIENT || rsp->status < 200 ||
            rsp->status >= 300)
            break; /* 1xx: txn sends our pending CANCEL; 487: txn ACKs */
        /* The phone answered anyway (the CANCEL crossed its 200, or it
         * never sent a provisional): ACK every 2xx, BYE once. */
        if (late_in_dialog(l, rsp, false) < 0)
            log_info("proxy", "late call: ACK not sent call_id=%s", l->call_id);
        if (!l->answered) {
            l->answered = true;
            int rc = late_in_dialog(l, rsp, true);
            log_info("proxy", "late call answered: BYE%s call_id=%s",
                     rc < 0 ? " not sent" : " sent", l->call_id);
        }
        break;
    case TXN_EV_TERMINATED:
        if (--l->refs == 0)
            free(l);
        break;
    default:
        break;
    }
}

/* Append s to b as the inside of a quoted-string (escape " and \). */
static int
quoted(struct buf *b, const char *s)
{
    int rc = 0;

    for (; *s && rc == 0; s++) {
        if (*s == '"' || *s == '\\')
            rc = buf_append(b, "\\", 1);
        if (rc == 0)
            rc = buf_append(b, s, 1);
    }
    return rc;
}

void
proxy_note_late(struct proxy *p, const struct proxy_note *n)
{
    struct reg_contact b = {.uri = n->uri,
                            .instance = "",
                            .transport = n->transport,
                            .addr = n->addr,
                            .flow_id = n->flow_id};
    struct late_call *l = xcalloc(1, sizeof(*l));
    char branch[TXN_BRANCH_MAX], tag[17];
    struct buf from;
    struct txn *t = NULL;
    int rc;

    l->p = p;
    proxy_dest_from_binding(p, &b, &l->dst);
    snprintf(l->ruri, sizeof(l->ruri), "%s", n->uri);
    snprintf(l->call_id, sizeof(l->call_id), "%s", n->call_id);
    snprintf(l->reason, sizeof(l->reason), "Reason: %s\r\n", n->reason);
    sip_new_tag(tag);
    buf_init(&from, sizeof(l->from) - 1);
    rc = 0;
    if (n->caller_name[0]) {
        rc = buf_append(&from, "\"", 1);
        if (rc == 0)
            rc = quoted(&from, n->caller_name);
        if (rc == 0)
            rc = buf_append(&from, "\" ", 2);
    }
    if (rc == 0)
        rc = buf_printf(&from, "<sip:%s@%s>;tag=%s", n->caller, p->sh->domain,
                        tag);
    if (rc < 0) { /* name too long for l->from: without it */
        buf_reset(&from);
        rc = buf_printf(&from, "<sip:%s@%s>;tag=%s", n->caller, p->sh->domain,
                        tag);
    }
    snprintf(l->from, sizeof(l->from), "%.*s", rc < 0 ? 0 : (int)from.len,
             from.data);
    buf_fini(&from);

    txn_branch_new(p->tt, branch);
    buf_reset(&p->out);
    rc = buf_printf(&p->out,
                    "INVITE %s SIP/2.0\r\n"
                    "Via: SIP/2.0/%s %s;branch=%s;rport\r\n"
                    "Max-Forwards: 70\r\n"
                    "From: %s\r\nTo: <sip:%s@%s>\r\n"
                    "Call-ID: %s\r\nCSeq: 1 INVITE\r\n"
                    "Contact: <sip:%s;transport=%s>\r\n"
                    "Content-Length: 0\r\n\r\n",
                    n->uri, proxy_tp_upper(l->dst.proto),
                    p->via_host[proxy_tpk(l->dst.proto)], branch, l->from,
                    n->ext, p->sh->domain, n->call_id,
                    p->via_host[proxy_tpk(l->dst.proto)],
                    tp_proto_name(l->dst.proto));
    if (rc == 0)
        rc = txn_client_start(p->tt, buf_slice(&p->out), &l->dst, on_late_event,
                              l, &t);
    if (rc < 0 || !t) {
        log_info("proxy", "late call to %s not sent: %s call_id=%s", n->uri,
                 strerror(rc < 0 ? -rc : EINVAL), n->call_id);
        free(l);
        return;
    }
    l->refs = 1;
    p->stats.late_invites++;
    /* The CANCEL goes as soon as the phone sends a provisional response
     * (§9.1; txn defers it until then). */
    (void)txn_cancel(t, slice_cstr(l->reason));
    log_info("proxy", "late INVITE+CANCEL to %s call_id=%s reason=%s", n->uri,
             n->call_id, n->reason);
}
