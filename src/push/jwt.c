/*
 * push/jwt: ES256 and RS256 JSON Web Tokens for APNs and FCM (see jwt.h).
 * Header and claims are built with jansson so every string is escaped
 * correctly (key ids and e-mails come from files an admin edits); the
 * signing is jose_jwt_sign's.
 */
#include "push/jwt.h"

#include <errno.h>

#include <jansson.h>

#include "jose/jose.h"

/* Sign header and claims (both consumed) into out. */
static int
sign(enum jose_alg alg, EVP_PKEY *key, json_t *hdr, json_t *claims,
     struct buf *out)
{
    int rc = hdr && claims ? jose_jwt_sign(alg, key, hdr, claims, out)
                           : -EINVAL;

    json_decref(hdr);
    json_decref(claims);
    return rc;
}

int
push_jwt_es256(EVP_PKEY *key, const char *kid, const char *team,
               int64_t iat, struct buf *out)
{
    if (key == NULL || kid == NULL || team == NULL)
        return -EINVAL;
    return sign(JOSE_ES256, key,
                json_pack("{s:s, s:s}", "alg", "ES256", "kid", kid),
                json_pack("{s:s, s:I}", "iss", team, "iat", (json_int_t)iat),
                out);
}

int
push_jwt_rs256(EVP_PKEY *key, const char *kid, const char *iss,
               const char *scope, const char *aud, int64_t iat, int64_t exp,
               struct buf *out)
{
    json_t *hdr;

    if (key == NULL || iss == NULL || scope == NULL || aud == NULL)
        return -EINVAL;
    hdr = json_pack("{s:s, s:s}", "alg", "RS256", "typ", "JWT");
    if (hdr && kid && *kid)
        json_object_set_new(hdr, "kid", json_string(kid));
    return sign(JOSE_RS256, key, hdr,
                json_pack("{s:s, s:s, s:s, s:I, s:I}", "iss", iss, "scope",
                          scope, "aud", aud, "iat", (json_int_t)iat, "exp",
                          (json_int_t)exp),
                out);
}
