/*
 * libFuzzer target for sip/digest: sip_auth_parse on an Authorization /
 * WWW-Authenticate value, then the response computation on whatever was
 * parsed. Invariants: slices lie inside the input, a failed parse names a
 * reason, a computed response has the algorithm's hex length and equals
 * itself under the constant-time compare.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "sip/digest.h"

static void
within(struct slice s, const char *buf, size_t len)
{
    if (s.len == 0)
        return;
    if (s.ptr < buf || s.ptr + s.len > buf + len)
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct sip_auth au;
    const char *why = NULL;
    char ha1[65], rsp[65];
    struct arena a;
    struct slice user;

    if (sip_auth_parse(slice_make(buf, size), &au, &why) != 0) {
        if (!why)
            abort();
        return 0;
    }
    struct slice all[] = {au.scheme, au.username, au.realm,     au.nonce,
                          au.uri,    au.response, au.algorithm, au.cnonce,
                          au.opaque, au.qop,      au.nc,        au.stale,
                          au.domain};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        within(all[i], buf, size);

    arena_init(&a, 1 << 16);
    if (sip_auth_unquote(au.username, &a, &user) != 0 ||
        user.len > au.username.len)
        abort();
    sip_digest_ha1(au.alg, user, au.realm, SLICE_LIT("pw"), ha1);
    int rc = sip_digest_response(au.alg, slice_make(ha1, strlen(ha1)), au.nonce,
                                 au.nc, au.cnonce, au.qop,
                                 SLICE_LIT("REGISTER"), au.uri, au.opaque, rsp);
    if (rc == 0) {
        struct slice r = slice_make(rsp, strlen(rsp));
        if (r.len != sip_digest_hex_len(au.alg) || !sip_digest_equal(r, r))
            abort();
        (void)sip_digest_equal(r, au.response);
    } else if (au.alg != SIP_DIGEST_UNKNOWN && au.qop.len == 0 &&
               au.alg != SIP_DIGEST_MD5_SESS &&
               au.alg != SIP_DIGEST_SHA256_SESS) {
        abort(); /* a known algorithm without qop always computes */
    }
    arena_fini(&a);
    return 0;
}
