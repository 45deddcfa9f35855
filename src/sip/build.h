/*
 * sip/build: building outgoing messages into a struct buf.
 *
 * Responses copy Via (all values, in order), From, To, Call-ID, CSeq from
 * the request (RFC 3261 §8.2.6.2), add a To tag when asked and the request's
 * To has none, then the caller's extra headers and Content-Length.
 *
 * Forwarding (RFC 3261 §16.6) is splicing: the original bytes are copied
 * with a few edits (new request line, new top Via, Max-Forwards, a removed
 * Route value, inserted Record-Route), the body untouched.
 * Thread: any.
 */
#ifndef PUSHPBX_SIP_BUILD_H
#define PUSHPBX_SIP_BUILD_H

#include <stdbool.h>

#include "base/buf.h"
#include "base/slice.h"
#include "sip/msg.h"

/* All builders APPEND to out (the caller resets it) and on failure leave
 * out as it was. req/rsp are borrowed; nothing is kept. */

struct sip_rsp_opts {
    struct slice to_tag;     /* added to To if req's To has no tag;
                                empty = add none */
    struct slice extra;      /* full header lines, each ending in CRLF
                                (e.g. "Allow: INVITE, ACK\r\n") */
    struct slice body;       /* when set, extra must hold Content-Type */
    struct slice via_append; /* RFC 3581 / §18.2.1 params for the top Via,
                                e.g. ";received=192.0.2.1;rport=5062".
                                A param of the same name already in the
                                top Via (a bare "rport", an old
                                "received") is replaced in place, never
                                duplicated. At most 8 params. */
};

/* Build a response to req (RFC 3261 §8.2.6.2): status line; every Via
 * header in order; From, To (with o->to_tag when it has none), Call-ID,
 * CSeq; Timestamp for a 100; Server; o->extra; Content-Length; body.
 * reason NULL = sip_reason_phrase(status). o may be NULL (all empty).
 * Returns 0, -EINVAL (status outside 100..699, req without Via/From/To/
 * Call-ID/CSeq, bad via_append) or -EMSGSIZE (buf cap). */
int sip_build_response_opts(struct buf *out, const struct sip_msg *req,
                            int status, const char *reason,
                            const struct sip_rsp_opts *o);

/* msg (a whole message as bytes, e.g. a response about to be sent) with
 * append merged into its top Via value as sip_rsp_opts.via_append does:
 * the RFC 3581 ";received=IP;rport=PORT" a server fills in for a request
 * that asked for rport. Returns 0, -EINVAL (no Via header, a folded top
 * Via, bad append) or -EMSGSIZE. */
int sip_build_via_append(struct buf *out, struct slice msg,
                         struct slice append);

/* A stateless error response (status 300..699) to a request that may have
 * failed to parse (RFC 4475 insuf: no From, To or Call-ID): status line,
 * every Via header, then those of From, To, Call-ID and CSeq that req has
 * (raw, in that order; To gets ";tag=" to_tag when to_tag is set and the
 * To value parses without a tag), Server, Content-Length: 0. Only a top
 * Via is needed: the response goes back along it, and a client can still
 * match what it gets by branch. Returns 0, -EINVAL (no Via header, status
 * out of range) or -EMSGSIZE. */
int sip_build_error_response(struct buf *out, const struct sip_msg *req,
                             int status, const char *reason,
                             struct slice to_tag);

/* sip_build_response_opts without via_append. */
int sip_build_response(struct buf *out, const struct sip_msg *req, int status,
                       const char *reason, struct slice to_tag,
                       struct slice extra, struct slice body);

struct sip_fwd {
    struct slice ruri;         /* new Request-URI; empty = keep */
    struct slice via;          /* full Via value to put on top, e.g.
                                  "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK.." */
    bool pop_route;            /* remove the first Route value (it was us) */
    bool pop_route2;           /* and the next one too (double
                                  record-routing: both values were us) */
    struct slice record_route; /* value for a Record-Route to add on top
                                  (e.g. "<sip:10.0.0.1:5060;lr>"); empty =
                                  none */
    struct slice extra;        /* extra header lines (CRLF-terminated) */
};

/* Forward a request: new request line if f->ruri is set; f->via as a new
 * Via header above the first Via header; f->record_route as a new
 * Record-Route above the first one (or above the Vias when there is
 * none); Max-Forwards decremented in place (added as 70 before the extra
 * lines if absent); with pop_route the first Route value removed (only
 * that value when the header holds several); f->extra; every
 * Content-Length header replaced by one at the end of the headers. All
 * other bytes are copied unchanged, in order, body untouched. Returns 0,
 * -EINVAL (Max-Forwards is 0: the caller answers 483 first; pop_route
 * without a Route), or -EMSGSIZE. */
int sip_build_forward(struct buf *out, const struct sip_msg *req,
                      const struct sip_fwd *f);

/* Forward a response upstream: remove the top Via value (whole header if
 * it held one value) and recompute Content-Length as for requests; all
 * other bytes unchanged. Returns 0, -EINVAL if there is no second Via,
 * -EMSGSIZE. */
int sip_build_response_forward(struct buf *out, const struct sip_msg *rsp);

/* Build a CANCEL for a request we sent (RFC 3261 §9.1): same R-URI,
 * Call-ID, From, To, CSeq number, top Via value (only) and Route headers,
 * Max-Forwards 70, Content-Length 0. extra: CRLF-terminated lines (e.g. a
 * Reason header). Returns 0, -EINVAL, -EMSGSIZE. */
int sip_build_cancel(struct buf *out, const struct sip_msg *req,
                     struct slice extra);

/* Build the ACK for a non-2xx final response to an INVITE we sent
 * (RFC 3261 §17.1.1.3): R-URI, Call-ID, From, CSeq number, top Via value
 * and Route headers of the request, To of the response, Max-Forwards 70,
 * Content-Length 0. Returns 0, -EINVAL, -EMSGSIZE. */
int sip_build_ack(struct buf *out, const struct sip_msg *req,
                  const struct sip_msg *rsp);

/* Fresh random tokens (hex, from OpenSSL RAND_bytes; aborts if the CSPRNG
 * fails, like OOM) for tags and branches.
 * sip_new_branch writes "z9hG4bK" + 22 hex chars; out >= 32 bytes.
 * sip_new_tag writes 16 hex chars; out >= 17 bytes. */
void sip_new_branch(char *out);
void sip_new_tag(char *out);

#endif
