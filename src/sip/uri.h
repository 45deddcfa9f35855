/*
 * sip/uri: URI parser and comparison (RFC 3261 §19.1, RFC 3966 for tel,
 * RFC 8599 §5.3 for push bindings).
 * Zero-copy: all slices point into the text given. Values with %-escapes
 * stay escaped; sip_unescape() copies an unescaped value into an arena.
 * Comparisons decode escapes on the fly and allocate nothing.
 * Thread: any, no shared state.
 */
#ifndef PUSHPBX_SIP_URI_H
#define PUSHPBX_SIP_URI_H

#include <stdbool.h>
#include <stdint.h>

#include "base/arena.h"
#include "base/slice.h"

/* Limit on URI params, and separately on URI headers: more is a parse
 * error ("too many URI parameters"). It bounds sip_uri_equal(), which is
 * quadratic in the number of params. Real URIs carry fewer than 20. */
#define SIP_URI_MAX_PARAMS 64

enum sip_uri_scheme {
    SIP_URI_SIP = 1,
    SIP_URI_SIPS,
    SIP_URI_TEL,
    SIP_URI_OTHER, /* absoluteURI of another scheme (RFC 4475 unksm2) */
};

struct sip_uri {
    enum sip_uri_scheme scheme;
    struct slice scheme_name; /* as written */
    struct slice user;        /* escaped; tel: the number */
    struct slice password;
    struct slice host; /* IPv6 without brackets */
    bool host_ipv6;
    uint16_t port; /* 0 when absent */
    bool has_port;
    struct slice params;  /* ";a=b;c" as written (may be empty) */
    struct slice headers; /* after '?', without it */
    struct slice raw;     /* the whole URI text */
};

/* Parse a URI (no surrounding <> or spaces). Returns 0, or -1 with *reason
 * set to a static text. Unknown schemes parse as SIP_URI_OTHER (the rest
 * kept in raw) so a caller can answer 416 Unsupported URI Scheme. */
int sip_uri_parse(struct slice text, struct sip_uri *out, const char **reason);

/* URI parameter lookup (case-insensitive name). *value stays escaped. */
bool sip_uri_param(const struct sip_uri *u, const char *name,
                   struct slice *value);

/* RFC 3261 §19.1.4 equality for sip/sips: user and password
 * case-sensitive, everything else case-insensitive; %XX of a non-reserved
 * char equals the char; port, transport, user, ttl, method, maddr present
 * on one side only = mismatch, other params on one side only are ignored;
 * URI headers must be present on both sides and match. tel: numbers equal
 * with visual separators removed and the same params (RFC 3966 §4). Other
 * schemes: case-insensitive equality of raw. Different schemes never
 * match. */
bool sip_uri_equal(const struct sip_uri *a, const struct sip_uri *b);

/* RFC 8599 §5.3: sip_uri_equal() and in addition pn-provider, pn-prid and
 * pn-param each absent on both sides or present on both with byte-equal
 * values after unescaping (PRIDs are case-sensitive tokens). A pn-* param
 * present on one side only is a mismatch. */
bool sip_uri_pn_equal(const struct sip_uri *a, const struct sip_uri *b);

/* The relaxed RFC 8599 §5.3 policy match (a woken phone may come back with
 * a new host/port): only the pn-* params are compared, as in
 * sip_uri_pn_equal(); both URIs must carry pn-provider and pn-prid. */
bool sip_uri_pn_params_equal(const struct sip_uri *a, const struct sip_uri *b);

/* Copy s into the arena with %XX escapes decoded. Returns 0, -EINVAL on a
 * malformed escape, -ENOMEM at the arena cap. A decoded NUL is kept (the
 * result has an explicit length). */
int sip_unescape(struct slice s, struct arena *a, struct slice *out);

/* Decode s's %XX escapes into dst (cap bytes, NUL-terminated) and set
 * *len. Returns 0, -EINVAL on a malformed escape, -ENOSPC when the result
 * (and its NUL) does not fit. A decoded NUL is kept. */
int sip_unescape_to(struct slice s, char *dst, size_t cap, size_t *len);

/* Is c allowed unescaped in a URI user part? (for builders) */
bool sip_uri_user_char(char c);

#endif
