/*
 * libFuzzer target for the message parser: sip_msg_parse, then every lazy
 * parser over every header value (iterator, Via, name-addr, Contact, CSeq,
 * param lookup, URI of R-URI/From/To/Contact), the request check, and
 * sip_frame on the raw input. Checks invariants, not just crashes: every
 * slice lies inside the input, a frame never exceeds the input, and a
 * message the stream framer accepts parses to the same length.
 * sip_peek_call_id (the UDP spreading peek) runs on every input too, and
 * must find the Call-ID of every request the parser accepts. Every
 * accepted message is also copied with sip_msg_rebase and compared with a
 * fresh parse of the copy.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sip/msg.h"
#include "sip/peek.h"
#include "sip/uri.h"

static void
within(struct slice s, const char *buf, size_t len)
{
    if (s.len && (s.ptr < buf || s.ptr + s.len > buf + len))
        abort();
}

static void
uri_check(struct slice u, const char *buf, size_t len)
{
    struct sip_uri uri;
    const char *why = NULL;

    if (sip_uri_parse(u, &uri, &why) == 0) {
        within(uri.raw, buf, len);
        within(uri.user, buf, len);
        within(uri.host, buf, len);
        within(uri.params, buf, len);
    } else if (!why) {
        abort(); /* a failure always names its reason */
    }
}

static void
values(const struct sip_msg *m, enum sip_hdr_id id, const char *buf, size_t len)
{
    struct sip_hdr_iter it;
    struct slice v, p;
    struct sip_error err;

    sip_hdr_iter_init(&it, m, id);
    while (sip_hdr_iter_next(&it, &v)) {
        struct sip_via via;
        struct sip_name_addr na;
        struct sip_contact c;
        struct sip_cseq cs;

        within(v, buf, len);
        if (v.len == 0)
            abort(); /* the iterator skips empty elements */
        if (sip_via_parse(v, &via, &err) == 0) {
            within(via.host, buf, len);
            within(via.branch, buf, len);
            within(via.params, buf, len);
        } else if (!err.reason || err.status != 400) {
            abort();
        }
        if (sip_name_addr_parse(v, &na, &err) == 0) {
            within(na.uri, buf, len);
            within(na.tag, buf, len);
            within(na.display, buf, len);
            uri_check(na.uri, buf, len);
        }
        if (sip_contact_parse(v, &c, &err) == 0 && !c.star) {
            within(c.instance, buf, len);
            if (c.q_milli > 1000 || c.expires > 0xffffffffL)
                abort();
        }
        if (sip_cseq_parse(v, &cs, &err) == 0 && cs.num > 0x7fffffffu)
            abort();
        if (sip_param_get(v, "tag", &p))
            within(p, buf, len);
    }
}

/* sip_msg_rebase onto a copy equals a fresh parse of the copy (the
 * struct byte for byte but for the header array's address, and each
 * header). */
static void
rebase_check(const struct sip_msg *m, const char *buf, size_t size)
{
    char *copy = malloc(size ? size : 1);
    struct arena a;
    struct sip_msg r, f;
    struct sip_error err;

    if (!copy)
        abort();
    memcpy(copy, buf, size);
    arena_init(&a, SIP_MSG_ARENA_CAP);
    if (sip_msg_rebase(&r, m, copy, size, &a) != 0 ||
        sip_msg_parse(&f, copy, size, &a, &err) != 0 ||
        r.hdr_count != f.hdr_count)
        abort();
    for (size_t i = 0; i < f.hdr_count; i++)
        if (r.hdrs[i].id != f.hdrs[i].id ||
            r.hdrs[i].name.ptr != f.hdrs[i].name.ptr ||
            r.hdrs[i].name.len != f.hdrs[i].name.len ||
            r.hdrs[i].value.ptr != f.hdrs[i].value.ptr ||
            r.hdrs[i].value.len != f.hdrs[i].value.len ||
            r.hdrs[i].raw.ptr != f.hdrs[i].raw.ptr ||
            r.hdrs[i].raw.len != f.hdrs[i].raw.len)
            abort();
    r.hdrs = f.hdrs;
    if (memcmp(&r, &f, sizeof(r)) != 0)
        abort();
    arena_fini(&a);
    free(copy);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct arena a;
    struct sip_msg m;
    struct sip_error err = {0}, ferr = {0};
    long fr;
    size_t skip;

    uint32_t cid_hash;
    skip = sip_skip_keepalive(buf, size);
    int peeked = sip_peek_call_id(buf + skip, size - skip, &cid_hash);
    arena_init(&a, SIP_MSG_ARENA_CAP);
    if (sip_msg_parse(&m, buf, size, &a, &err) == 0) {
        struct slice tags[4];

        if (m.is_request && m.call_id.len && peeked != 0)
            abort();

        sip_msg_assert_within(&m, buf, size);
        for (int id = 0; id < SIP_HDR__COUNT; id++)
            values(&m, (enum sip_hdr_id)id, buf, size);
        for (size_t i = 0; i < m.hdr_count; i++)
            if (sip_msg_hdr_name(&m, m.hdrs[i].name) == NULL)
                abort();
        if (m.is_request) {
            uri_check(m.ruri, buf, size);
            if (sip_request_check(&m, SLICE_LIT("path, outbound"), &err) < 0 &&
                (!err.reason || err.status < 400))
                abort();
            sip_unsupported_tags(&m, SLICE_LIT("path"), tags, 4);
        }
        uri_check(m.from.uri, buf, size);
        uri_check(m.to.uri, buf, size);
        if (m.max_forwards > 255 || m.cseq.num > 0x7fffffffu)
            abort();
        rebase_check(&m, buf, size);
    } else if (!err.reason || err.status < 400 || err.status > 599) {
        abort();
    }
    arena_fini(&a);

    skip = sip_skip_keepalive(buf, size);
    if (skip > size)
        abort();
    fr = sip_frame(buf, size, &ferr);
    if (fr > (long)size || (fr < 0 && !ferr.reason))
        abort();
    if (fr > 0) {
        /* What the stream framer cut must parse to exactly that length
         * whenever it parses at all. */
        arena_init(&a, SIP_MSG_ARENA_CAP);
        if (sip_msg_parse(&m, buf, (size_t)fr, &a, &err) == 0 &&
            m.len != (size_t)fr)
            abort();
        arena_fini(&a);
    }
    return 0;
}
