/*
 * sip/digest: HTTP digest authentication for SIP (RFC 3261 §22.4,
 * RFC 7616, RFC 8760): the Authorization / WWW-Authenticate parameter
 * parser and the response computation for MD5 and SHA-256 (plus -sess).
 * No I/O, no state: nonce creation and checking live in the registrar.
 */
#ifndef PUSHPBX_SIP_DIGEST_H
#define PUSHPBX_SIP_DIGEST_H

#include <stdbool.h>
#include <stddef.h>

#include "base/arena.h"
#include "base/slice.h"

enum sip_digest_alg {
    SIP_DIGEST_MD5 = 0,
    SIP_DIGEST_MD5_SESS,
    SIP_DIGEST_SHA256,
    SIP_DIGEST_SHA256_SESS,
    SIP_DIGEST_UNKNOWN,
};

/* Hex digest length of the algorithm's hash (32 or 64). */
size_t sip_digest_hex_len(enum sip_digest_alg alg);
/* "MD5", "SHA-256" (case-insensitive); empty = MD5. */
enum sip_digest_alg sip_digest_alg_parse(struct slice s);
const char *sip_digest_alg_name(enum sip_digest_alg alg);

/* Parsed credentials or challenge. Values are unquoted slices into the
 * header; quoted-pair escapes (rare) stay as written (sip_auth_unquote()
 * resolves them). A parameter that is absent has an empty slice with a
 * NULL ptr; present but empty ("") has a non-NULL ptr. Unknown parameters
 * are skipped (still checked for syntax and duplicates). alg is
 * SIP_DIGEST_UNKNOWN for a non-Digest scheme or an unknown algorithm. */
struct sip_auth {
    struct slice scheme; /* "Digest" */
    struct slice username, realm, nonce, uri, response, algorithm;
    struct slice cnonce, opaque, qop, nc, stale, domain;
    enum sip_digest_alg alg;
};

/* Parse an Authorization / Proxy-Authorization / WWW-Authenticate value.
 * Returns 0, or -1 with *reason (malformed: unbalanced quotes, missing
 * '=', duplicate parameter, ...). A non-Digest scheme parses with only
 * scheme set. */
int sip_auth_parse(struct slice value, struct sip_auth *out,
                   const char **reason);

/* Copy a quoted-string body (as in struct sip_auth) into the arena with its
 * quoted-pairs ("\x" = x) resolved. Returns 0 or -ENOMEM at the arena cap.
 * Without backslashes, *out is s itself (no copy). */
int sip_auth_unquote(struct slice s, struct arena *a, struct slice *out);

/* H(data) as lower-case hex into out (at least 65 bytes, NUL-terminated);
 * empty string for SIP_DIGEST_UNKNOWN. Also serves RFC 7616 userhash,
 * H(username ":" realm). */
void sip_digest_hash(enum sip_digest_alg alg, struct slice data, char *out);

/* H(username ":" realm ":" password) as lower-case hex into out
 * (at least 65 bytes, NUL-terminated). For -sess algorithms this is the
 * plain HA1; sip_digest_response applies the session step. */
void sip_digest_ha1(enum sip_digest_alg alg, struct slice username,
                    struct slice realm, struct slice password, char *out);

/* The expected "response" value from a stored HA1 (hex, as written by
 * sip_digest_ha1 for the same algorithm). qop empty means RFC 2069
 * compatibility (no nc/cnonce). body is used only for qop=auth-int. out:
 * at least 65 bytes, NUL-terminated lower-case hex. Returns 0, -EINVAL for
 * an unknown algorithm or qop, an HA1 of the wrong length, or a -sess
 * algorithm without qop (it needs a cnonce). */
int sip_digest_response(enum sip_digest_alg alg, struct slice ha1_hex,
                        struct slice nonce, struct slice nc,
                        struct slice cnonce, struct slice qop,
                        struct slice method, struct slice uri,
                        struct slice body, char *out);

/* Constant-time comparison of two hex strings (time depends only on the
 * length, which is public). Different lengths, or empty strings, compare
 * unequal. Exact
 * bytes: RFC 7616 responses are lower-case hex. */
bool sip_digest_equal(struct slice a, struct slice b);

#endif
