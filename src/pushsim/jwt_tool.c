/*
 * pushsim-jwt: print a signed JWT, for tests and the demo.
 *
 *   pushsim-jwt apns KID TEAM KEY.pem [IAT]
 *       APNs provider token: ES256, {"alg","kid"} / {"iss":TEAM,"iat"}.
 *   pushsim-jwt fcm ACCOUNT.json [AUD [IAT]]
 *       Google OAuth assertion: RS256 signed with the account's
 *       private_key; iss = client_email, scope = firebase.messaging,
 *       aud = AUD or the account's token_uri, exp = iat + 3600.
 *
 * IAT defaults to now (Unix seconds). Output: the token and a newline.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jose/jose.h"

static int
usage(void)
{
    fprintf(stderr, "usage: pushsim-jwt apns KID TEAM KEY.pem [IAT]\n"
                    "       pushsim-jwt fcm ACCOUNT.json [AUD [IAT]]\n");
    return 2;
}

static int
parse_iat(const char *s, long long *out)
{
    unsigned long long v;

    if (slice_to_u64(slice_cstr(s), 1ull << 40, &v) < 0)
        return -1;
    *out = (long long)v;
    return 0;
}

static int
emit(enum jose_alg alg, EVP_PKEY *key, json_t *h, json_t *c)
{
    struct buf out;
    int rc;

    buf_init(&out, JOSE_JWT_MAX_LEN);
    rc = jose_jwt_sign(alg, key, h, c, &out);
    if (rc == 0)
        printf("%s\n", out.data);
    else
        fprintf(stderr, "pushsim-jwt: cannot sign (wrong key type?)\n");
    buf_fini(&out);
    json_decref(h);
    json_decref(c);
    EVP_PKEY_free(key);
    return rc == 0 ? 0 : 1;
}

int
main(int argc, char **argv)
{
    long long iat = (long long)time(NULL);

    if (argc >= 5 && argc <= 6 && strcmp(argv[1], "apns") == 0) {
        EVP_PKEY *key = jose_key_load_file(argv[4], false, NULL, 0);
        if (key == NULL) {
            fprintf(stderr, "pushsim-jwt: %s: no PEM key\n", argv[4]);
            return 1;
        }
        if (argc == 6 && parse_iat(argv[5], &iat) < 0) {
            EVP_PKEY_free(key);
            return usage();
        }
        return emit(
            JOSE_ES256, key,
            json_pack("{s:s,s:s}", "alg", "ES256", "kid", argv[2]),
            json_pack("{s:s,s:I}", "iss", argv[3], "iat", (json_int_t)iat));
    }
    if (argc >= 3 && argc <= 5 && strcmp(argv[1], "fcm") == 0) {
        json_t *acct = json_load_file(argv[2], 0, NULL);
        const char *pem =
            json_string_value(json_object_get(acct, "private_key"));
        const char *email =
            json_string_value(json_object_get(acct, "client_email"));
        const char *aud =
            argc >= 4 ? argv[3]
                      : json_string_value(json_object_get(acct, "token_uri"));
        EVP_PKEY *key = pem ? jose_key_load_pem(pem, strlen(pem), false) : NULL;
        int rc;

        if (key == NULL || email == NULL || aud == NULL ||
            (argc == 5 && parse_iat(argv[4], &iat) < 0)) {
            fprintf(stderr, "pushsim-jwt: %s: bad account file or args\n",
                    argv[2]);
            EVP_PKEY_free(key);
            json_decref(acct);
            return 1;
        }
        rc =
            emit(JOSE_RS256, key,
                 json_pack("{s:s,s:s}", "alg", "RS256", "typ", "JWT"),
                 json_pack("{s:s,s:s,s:s,s:I,s:I}", "iss", email, "scope",
                           "https://www.googleapis.com/auth/firebase.messaging",
                           "aud", aud, "iat", (json_int_t)iat, "exp",
                           (json_int_t)(iat + 3600)));
        json_decref(acct);
        return rc;
    }
    return usage();
}
