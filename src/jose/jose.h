/*
 * jose: the one JSON Web Token module (prefix jose_), used by the push
 * clients to make their tokens (APNs provider tokens, ES256; Google
 * service-account assertions, RS256) and by pushsim to check them and to
 * make tokens for tests and the demo (pushsim-jwt).
 *
 * Only compact JWS with "alg" ES256 or RS256 is understood; anything else
 * is rejected (no "none", no HMAC). ES256 signatures on the wire are the
 * 64-byte raw R||S of RFC 7518 §3.4; OpenSSL wants DER, so verify converts
 * and sign converts back. base64url is without '=' padding (RFC 7515 §2);
 * padding or any character outside the url-safe alphabet is an error.
 *
 * No global state; every function may be called from any thread.
 */
#ifndef PUSHPBX_JOSE_JOSE_H
#define PUSHPBX_JOSE_JOSE_H

#include <stdbool.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <stddef.h>

#include "base/buf.h"
#include "base/slice.h"

/* Longest token we look at; providers' tokens are a few hundred bytes. */
#define JOSE_JWT_MAX_LEN 8192

enum jose_alg {
    JOSE_ES256 = 1,
    JOSE_RS256 = 2,
};

/* A parsed (not yet verified) token. header and claims are owned and
 * freed by jose_jwt_fini; signed_part is a view into the token string the
 * caller passed, which must outlive the struct. */
struct jose_jwt {
    enum jose_alg alg;
    json_t *header;           /* owned */
    json_t *claims;           /* owned */
    struct slice signed_part; /* "b64(header).b64(claims)" */
    unsigned char sig[512];
    size_t sig_len;
};

/* Decode unpadded base64url. Returns 0 and sets *out_len, -EINVAL on a bad
 * character, padding or impossible length, -EMSGSIZE if cap is too small. */
int jose_b64url_decode(struct slice in, unsigned char *out, size_t cap,
                       size_t *out_len);
/* Append the unpadded base64url form of p[0..n) to out. 0 or -EMSGSIZE. */
int jose_b64url_encode(const void *p, size_t n, struct buf *out);

/* DER ECDSA-Sig-Value (what OpenSSL signs) to the 64-byte raw R||S of
 * ES256 (P-256), each half left-padded to 32 bytes. Returns 0, or -EINVAL
 * for bad DER, trailing bytes or a half longer than 32 bytes. */
int jose_ecdsa_der_to_raw(const unsigned char *der, size_t len,
                          unsigned char raw[64]);

/* Split and decode a compact token. Header must name alg ES256 or RS256;
 * header and claims must be JSON objects. Returns 0 (fini it afterwards)
 * or -EINVAL (nothing to fini). */
int jose_jwt_parse(struct slice token, struct jose_jwt *out);
void jose_jwt_fini(struct jose_jwt *j);

/* Check the signature with key (public or private; EC P-256 for ES256,
 * RSA for RS256, a mismatch fails). Returns 0 or -EACCES. */
int jose_jwt_verify(const struct jose_jwt *j, EVP_PKEY *key);

/* Claim helpers: return the string / integer value of a claim or header
 * member, NULL / -ENOENT when absent or of another type. */
const char *jose_jwt_str(json_t *obj, const char *name);
int jose_jwt_int(json_t *obj, const char *name, long long *out);

/* Make a token: header and claims are borrowed JSON objects, serialised
 * compactly in their insertion order. Appends the token to out; on failure
 * out is left as it was. Returns 0, -EINVAL if key does not fit alg (EC
 * P-256 for ES256, RSA of 2048 bits or more for RS256) or cannot sign,
 * -EMSGSIZE from out's cap. */
int jose_jwt_sign(enum jose_alg alg, EVP_PKEY *key, json_t *header,
                  json_t *claims, struct buf *out);

/* Read a PEM key file: a private key (PKCS#8 ".p8", SEC1 or PKCS#1) or,
 * unless private_only, a public key. Returns an owned key (EVP_PKEY_free)
 * or NULL with "path: reason" in err (err may be NULL). */
EVP_PKEY *jose_key_load_file(const char *path, bool private_only, char *err,
                             size_t errlen);
/* Same from PEM text in memory (service-account "private_key"): a private
 * key, else (unless private_only) a public one; NULL when neither. */
EVP_PKEY *jose_key_load_pem(const char *pem, size_t len, bool private_only);

#endif
