/*
 * jwt: the two signed tokens the push providers want, made with OpenSSL.
 *
 * APNs token auth: ES256 (ECDSA P-256 + SHA-256) JWT whose signature is the
 * 64-byte raw R||S (RFC 7518 §3.4), not the DER OpenSSL produces, hence
 * push_ecdsa_der_to_raw. FCM: RS256 (RSASSA-PKCS1-v1_5 + SHA-256) JWT used
 * as the OAuth2 jwt-bearer assertion. Both use base64url without padding.
 *
 * Minted at most every few minutes per provider, so speed is irrelevant;
 * what matters is that the bytes are exactly right.
 */
#ifndef PUSHPBX_PUSH_JWT_H
#define PUSHPBX_PUSH_JWT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "base/buf.h"

/* Append base64url (RFC 4648 §5, no '=' padding) of in to out. Returns 0 or
 * -EMSGSIZE at out's cap. */
int push_b64url_append(struct buf *out, const void *in, size_t len);

/* Decode base64url (padding optional) into out (cap outcap). Returns the
 * decoded length or -EINVAL / -EMSGSIZE. For tests and verification. */
long push_b64url_decode(const char *in, size_t len, unsigned char *out,
                        size_t outcap);

/* DER ECDSA-Sig-Value -> raw R||S of 2*32 bytes (P-256). Returns 0 or
 * -EINVAL (bad DER, or r/s longer than 32 bytes). */
int push_ecdsa_der_to_raw(const unsigned char *der, size_t der_len,
                          unsigned char raw[64]);

/* Load a private key from a PEM file (PKCS#8 "PRIVATE KEY", or the
 * traditional EC/RSA forms). Returns an owned key or NULL with
 * "file: reason" in err. */
EVP_PKEY *push_key_load_file(const char *path, char *err, size_t errlen);

/* Same from PEM text in memory (the service-account's private_key). */
EVP_PKEY *push_key_load_pem(const char *pem, size_t len);

/* APNs provider token: header {"alg":"ES256","kid":kid}, claims
 * {"iss":team,"iat":iat}. key must be EC P-256. Appends to out; returns 0,
 * -EINVAL (wrong key type, signing failed) or -EMSGSIZE. */
int push_jwt_es256(EVP_PKEY *key, const char *kid, const char *team,
                   int64_t iat, struct buf *out);

/* Google OAuth2 assertion: header {"alg":"RS256","typ":"JWT"[,"kid":kid]}
 * (kid may be NULL), claims {"iss","scope","aud","iat","exp"}. key must be
 * RSA. Returns as push_jwt_es256. */
int push_jwt_rs256(EVP_PKEY *key, const char *kid, const char *iss,
                   const char *scope, const char *aud, int64_t iat,
                   int64_t exp, struct buf *out);

#endif
