/*
 * sip/msg_int: helpers shared by msg.c, hdr.c and check.c (not public).
 *
 * Character classes come from one 256-entry table so the hot loops do one
 * load and one test per byte. Inside a header value, CR and LF only occur
 * as part of folding (the header splitter guarantees that every line break
 * inside a value is followed by SP/HTAB), so the value parsers treat
 * SP, HTAB, CR and LF alike as linear white space.
 */
#ifndef PUSHPBX_SIP_MSG_INT_H
#define PUSHPBX_SIP_MSG_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "sip/msg.h"

enum {
    SIP_CT_TOKEN = 1, /* RFC 3261 token char */
    SIP_CT_WS = 2,    /* SP HTAB CR LF */
    SIP_CT_DIGIT = 4,
    SIP_CT_ALPHA = 8,
    SIP_CT_HOST = 16,  /* hostname / IPv4 / IPv6 reference chars */
    SIP_CT_PVAL = 32,  /* gen-value: token / host chars ([ ] :) */
    SIP_CT_SCHEME = 64 /* ALPHA DIGIT + - . */
};

extern const unsigned char sip_ctype[256];

static inline bool
ct_is(char c, unsigned mask)
{
    return (sip_ctype[(unsigned char)c] & mask) != 0;
}

struct cursor {
    const char *p, *end;
};

/* A cursor over s; a NULL slice becomes an empty cursor on a static
 * string, so no pointer arithmetic is ever done on NULL. */
static inline struct cursor
cur_of(struct slice s)
{
    if (!s.ptr)
        return (struct cursor){"", ""};
    return (struct cursor){s.ptr, s.ptr + s.len};
}

static inline void
cur_skip_ws(struct cursor *c)
{
    while (c->p < c->end && ct_is(*c->p, SIP_CT_WS))
        c->p++;
}

static inline bool
cur_eat(struct cursor *c, char ch)
{
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

/* Take a run of chars of class mask; false when empty. */
static inline bool
cur_run(struct cursor *c, unsigned mask, struct slice *out)
{
    const char *s = c->p;

    while (c->p < c->end && ct_is(*c->p, mask))
        c->p++;
    *out = slice_make(s, (size_t)(c->p - s));
    return c->p != s;
}

static inline int
sip_fail(struct sip_error *err, int status, const char *reason)
{
    if (err) {
        err->status = status;
        err->reason = reason;
    }
    return -1;
}

/* Take a quoted-string starting at c->p ('"'); *inner is its content
 * without the quotes (escapes kept). False if unterminated. */
bool sip_cur_quoted(struct cursor *c, struct slice *inner);

/* Map a header name to its id (length + first char switch). */
enum sip_hdr_id sip_hdr_lookup(const char *name, size_t len);

/* Parse 1*DIGIT into *out (max given). False on empty, non-digit or
 * overflow; *overflow tells the last case apart. */
bool sip_parse_uint(struct slice s, unsigned long long max,
                    unsigned long long *out, bool *overflow);

#endif
