/*
 * sip/check: the request checks a UAS or proxy makes before acting on a
 * parsed request (RFC 3261 §8.2.1-8.2.2, §16.3): Request-URI scheme and
 * syntax, CSeq method, Via branch, Require/Proxy-Require option tags.
 *
 * Kept apart from the parser because these checks depend on what we
 * implement (supported option tags, URI schemes) and because a response or
 * a request we only route statelessly does not need them. Cost: one URI
 * parse plus a scan of Require headers, which most requests lack.
 */
#include <string.h>

#include "sip/msg.h"
#include "sip/msg_int.h"
#include "sip/uri.h"

static bool
tag_supported(struct slice tag, struct slice supported)
{
    struct slice rest = supported;

    while (rest.len) {
        const char *comma = memchr(rest.ptr, ',', rest.len);
        size_t n = comma ? (size_t)(comma - rest.ptr) : rest.len;
        struct slice t = slice_trim(slice_make(rest.ptr, n));

        if (slice_eq_nocase(t, tag))
            return true;
        rest = comma ? slice_make(comma + 1, rest.len - n - 1) : SLICE_NULL;
    }
    return false;
}

/* §8.2.2.3: ACK gets no response and CANCEL must not fail on Require. */
static bool
check_require(const struct sip_msg *m)
{
    return m->method != SIP_METHOD_ACK && m->method != SIP_METHOD_CANCEL;
}

size_t
sip_unsupported_tags(const struct sip_msg *m, struct slice supported_ext,
                     struct slice *out, size_t cap)
{
    static const enum sip_hdr_id ids[2] = {SIP_HDR_REQUIRE,
                                           SIP_HDR_PROXY_REQUIRE};
    size_t count = 0;

    for (int k = check_require(m) ? 0 : 1; k < 2; k++) {
        struct sip_hdr_iter it;
        struct slice tag;

        sip_hdr_iter_init(&it, m, ids[k]);
        while (sip_hdr_iter_next(&it, &tag)) {
            bool dup = false;

            if (tag_supported(tag, supported_ext))
                continue;
            for (size_t i = 0; i < count && i < cap; i++)
                if (slice_eq_nocase(out[i], tag))
                    dup = true;
            if (dup)
                continue;
            if (count < cap)
                out[count] = tag;
            count++;
        }
    }
    return count;
}

/* Scheme of a URI text (before ':'); the parser made sure there is one. */
static struct slice
uri_scheme(struct slice u)
{
    const char *colon = memchr(u.ptr, ':', u.len);
    return colon ? slice_make(u.ptr, (size_t)(colon - u.ptr)) : u;
}

int
sip_request_check(const struct sip_msg *m, struct slice supported_ext,
                  struct sip_error *err)
{
    struct sip_uri uri;
    const char *why = NULL;
    struct slice scheme, tag;

    if (!m->is_request)
        return sip_fail(err, 400, "Not a request");
    /* Decide 416 on the scheme alone: an unknown scheme's opaque part is
     * not ours to judge (RFC 4475 unkscm, novelsc). */
    scheme = uri_scheme(m->ruri);
    if (!slice_eq_nocase_cstr(scheme, "sip") &&
        !slice_eq_nocase_cstr(scheme, "sips") &&
        !slice_eq_nocase_cstr(scheme, "tel"))
        return sip_fail(err, 416, "Unsupported URI Scheme");
    if (sip_uri_parse(m->ruri, &uri, &why) < 0)
        return sip_fail(err, 400, "Bad Request-URI");
    if (uri.scheme == SIP_URI_OTHER)
        return sip_fail(err, 416, "Unsupported URI Scheme");
    /* §19.1.1 Table 1: headers are not allowed in a Request-URI. RFC 4475
     * escruri lets us reject or ignore them; we reject. */
    if (uri.headers.len)
        return sip_fail(err, 400, "Bad Request-URI");
    if (!slice_eq(m->cseq.method_name, m->method_name))
        return sip_fail(err, 400, "CSeq method mismatch");
    /* RFC 4475 badbranch: a branch that is only the magic cookie would
     * make every such request one transaction. Reject it statelessly. */
    if (slice_eq_cstr(m->via.branch, "z9hG4bK"))
        return sip_fail(err, 400, "Bad Via branch");
    if (sip_unsupported_tags(m, supported_ext, &tag, 1) > 0)
        return sip_fail(err, 420, "Bad Extension");
    return 0;
}
