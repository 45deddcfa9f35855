/*
 * jwt: the JSON Web Token pieces pushsim needs to check what push clients
 * send (APNs provider tokens, ES256; Google service-account assertions,
 * RS256) and to make such tokens for tests and the demo (pushsim-jwt).
 *
 * Only compact JWS with "alg" ES256 or RS256 is understood; anything else
 * is rejected (no "none", no HMAC). ES256 signatures on the wire are the
 * 64-byte raw R||S of RFC 7518 §3.4; OpenSSL wants DER, so verify converts
 * and sign converts back. base64url is without '=' padding (RFC 7515 §2);
 * padding or any character outside the url-safe alphabet is an error.
 *
 * No global state; every function may be called from any thread.
 */
#ifndef PUSHPBX_PUSHSIM_JWT_H
#define PUSHPBX_PUSHSIM_JWT_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stddef.h>

#include "base/buf.h"
#include "base/slice.h"

/* Longest token we look at; providers' tokens are a few hundred bytes. */
#define PSIM_JWT_MAX_LEN 8192

enum psim_jwt_alg {
    PSIM_JWT_ES256 = 1,
    PSIM_JWT_RS256 = 2,
};

/* A parsed (not yet verified) token. header and claims are owned and
 * freed by psim_jwt_fini; signed_part is a view into the token string the
 * caller passed, which must outlive the struct. */
struct psim_jwt {
    enum psim_jwt_alg alg;
    json_t *header;           /* owned */
    json_t *claims;           /* owned */
    struct slice signed_part; /* "b64(header).b64(claims)" */
    unsigned char sig[512];
    size_t sig_len;
};

/* Decode unpadded base64url. Returns 0 and sets *out_len, -EINVAL on a bad
 * character, padding or impossible length, -EMSGSIZE if cap is too small. */
int psim_b64url_decode(struct slice in, unsigned char *out, size_t cap,
                       size_t *out_len);
/* Append the unpadded base64url form of p[0..n) to out. 0 or -EMSGSIZE. */
int psim_b64url_encode(const void *p, size_t n, struct buf *out);

/* Split and decode a compact token. Header must name alg ES256 or RS256;
 * header and claims must be JSON objects. Returns 0 (fini it afterwards)
 * or -EINVAL (nothing to fini). */
int psim_jwt_parse(struct slice token, struct psim_jwt *out);
void psim_jwt_fini(struct psim_jwt *j);

/* Check the signature with key (public or private; EC P-256 for ES256,
 * RSA for RS256, a mismatch fails). Returns 0 or -EACCES. */
int psim_jwt_verify(const struct psim_jwt *j, EVP_PKEY *key);

/* Claim helpers: return the string / integer value of a claim or header
 * member, NULL / -ENOENT when absent or of another type. */
const char *psim_jwt_str(json_t *obj, const char *name);
int psim_jwt_int(json_t *obj, const char *name, long long *out);

/* Make a token: header and claims are borrowed JSON objects, serialised
 * compactly in key order. Appends the token to out. Returns 0, -EINVAL if
 * key does not fit alg, -EMSGSIZE from out's cap. */
int psim_jwt_sign(enum psim_jwt_alg alg, EVP_PKEY *key, json_t *header,
                  json_t *claims, struct buf *out);

/* Read a PEM key file: a private key (PKCS#8 ".p8", SEC1 or PKCS#1) or a
 * public key. Returns an owned key (EVP_PKEY_free) or NULL. */
EVP_PKEY *psim_key_load_pem_file(const char *path);
/* Same from PEM text in memory (service-account "private_key"). */
EVP_PKEY *psim_key_load_pem_mem(const char *pem, size_t len);

#endif
