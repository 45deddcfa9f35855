/*
 * push/jwt: the two signed tokens the push providers want, made with the
 * jose room (src/jose: base64url, ES256/RS256 signing, PEM keys).
 *
 * APNs token auth: an ES256 JWT (header {"alg":"ES256","kid":kid}, claims
 * {"iss":team,"iat":iat}). FCM: an RS256 JWT used as the OAuth2
 * jwt-bearer assertion. Minted at most every few minutes per provider, so
 * speed is irrelevant; what matters is that the bytes are exactly right.
 */
#ifndef PUSHPBX_PUSH_JWT_H
#define PUSHPBX_PUSH_JWT_H

#include <stdint.h>

#include <openssl/evp.h>

#include "base/buf.h"

/* APNs provider token. key must be EC P-256. Appends to out; returns 0,
 * -EINVAL (wrong key type, signing failed) or -EMSGSIZE; on failure out
 * is as it was. */
int push_jwt_es256(EVP_PKEY *key, const char *kid, const char *team,
                   int64_t iat, struct buf *out);

/* Google OAuth2 assertion: header {"alg":"RS256","typ":"JWT"[,"kid":kid]}
 * (kid may be NULL), claims {"iss","scope","aud","iat","exp"}. key must be
 * RSA (2048 bits or more). Returns as push_jwt_es256. */
int push_jwt_rs256(EVP_PKEY *key, const char *kid, const char *iss,
                   const char *scope, const char *aud, int64_t iat,
                   int64_t exp, struct buf *out);

#endif
