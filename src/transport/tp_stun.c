/*
 * transport/tp_stun: tell STUN datagrams from SIP ones and answer STUN
 * Binding Requests (RFC 5389); see tp.h.
 *
 * Why here: RFC 5626 §4.4.2 keeps UDP flows alive with STUN Binding
 * Requests sent to the SIP port itself, so the SIP listener must demultiplex
 * them (RFC 5389 §7.1 / RFC 7983: STUN's first two bits are zero and it
 * carries the magic cookie; a SIP message starts with a token or "SIP/",
 * printable ASCII). The answer carries the request's source as
 * XOR-MAPPED-ADDRESS, which is all a keep-alive needs. No authentication
 * (USERNAME / MESSAGE-INTEGRITY are ignored, §10 is a usage's choice and
 * SIP outbound uses none) and no FINGERPRINT (the SIP port is not
 * multiplexed with anything that needs it).
 *
 * Input is untrusted bytes: every read is bounded by len.
 */
#include <errno.h>
#include <string.h>

#include "transport/tp.h"

#define STUN_BINDING 0x0001u
#define STUN_BINDING_SUCCESS 0x0101u
#define STUN_BINDING_ERROR 0x0111u
#define STUN_ATTR_ERROR_CODE 0x0009u
#define STUN_ATTR_UNKNOWN 0x000Au
#define STUN_ATTR_XOR_MAPPED 0x0020u
/* UNKNOWN-ATTRIBUTES lists at most this many (keeps the answer small). */
#define STUN_MAX_UNKNOWN 8

static const char unknown_reason[] = "Unknown Attribute";

static uint16_t
get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t
get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static void
put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

enum tp_stun_kind
tp_stun_classify(const void *buf, size_t len)
{
    const uint8_t *p = buf;

    if (len < TP_STUN_HDR_LEN || (p[0] & 0xc0) != 0 ||
        get32(p + 4) != TP_STUN_COOKIE)
        return TP_STUN_NONE;
    uint16_t mlen = get16(p + 2);
    if (mlen % 4 != 0 || (size_t)mlen + TP_STUN_HDR_LEN != len)
        return TP_STUN_NONE;
    /* Type: method bits M0..M11 around the class bits C0 (0x0010) and C1
     * (0x0100); Binding request is method 1, class 0 (§6). */
    return get16(p) == STUN_BINDING ? TP_STUN_BINDING_REQUEST : TP_STUN_OTHER;
}

/* Comprehension-required attributes of RFC 5389 §18.2 (0x0000-0x7FFF). */
static bool
attr_known(uint16_t type)
{
    switch (type) {
    case 0x0001: /* MAPPED-ADDRESS */
    case 0x0006: /* USERNAME */
    case 0x0008: /* MESSAGE-INTEGRITY */
    case 0x0009: /* ERROR-CODE */
    case 0x000A: /* UNKNOWN-ATTRIBUTES */
    case 0x0014: /* REALM */
    case 0x0015: /* NONCE */
    case 0x0020: /* XOR-MAPPED-ADDRESS */
        return true;
    default:
        return false;
    }
}

/* Header of a response to req: type, length, cookie, req's transaction
 * id. */
static void
put_header(uint8_t *out, uint16_t type, size_t body_len, const uint8_t *req)
{
    put16(out, type);
    put16(out + 2, (uint16_t)body_len);
    memcpy(out + 4, req + 4, 16); /* cookie + transaction id */
}

static int
answer_unknown(const uint8_t *req, const uint16_t *unknown, size_t n,
               uint8_t *out)
{
    size_t rlen = sizeof(unknown_reason) - 1;
    size_t ec_len = 4 + rlen, ec_pad = (ec_len + 3) & ~(size_t)3;
    size_t ua_len = 2 * n, ua_pad = (ua_len + 3) & ~(size_t)3;
    size_t body = 4 + ec_pad + 4 + ua_pad;
    uint8_t *p = out + TP_STUN_HDR_LEN;

    memset(out, 0, TP_STUN_HDR_LEN + body);
    put_header(out, STUN_BINDING_ERROR, body, req);
    put16(p, STUN_ATTR_ERROR_CODE);
    put16(p + 2, (uint16_t)ec_len);
    p[6] = 4;  /* class: 420 */
    p[7] = 20; /* number */
    memcpy(p + 8, unknown_reason, rlen);
    p += 4 + ec_pad;
    put16(p, STUN_ATTR_UNKNOWN);
    put16(p + 2, (uint16_t)ua_len);
    for (size_t i = 0; i < n; i++)
        put16(p + 4 + 2 * i, unknown[i]);
    return (int)(TP_STUN_HDR_LEN + body);
}

int
tp_stun_answer(const void *buf, size_t len, const struct tp_addr *mapped,
               uint8_t *out, size_t cap)
{
    const uint8_t *req = buf;
    uint16_t unknown[STUN_MAX_UNKNOWN];
    size_t nunknown = 0, off = TP_STUN_HDR_LEN;

    if (cap < TP_STUN_ANSWER_MAX ||
        tp_stun_classify(buf, len) != TP_STUN_BINDING_REQUEST)
        return -EINVAL;
    /* Attributes: type, length, value padded to 4 bytes (§15). */
    while (off < len) {
        if (len - off < 4)
            return -EINVAL;
        uint16_t type = get16(req + off);
        size_t alen = get16(req + off + 2);
        size_t padded = (alen + 3) & ~(size_t)3;
        if (padded > len - off - 4)
            return -EINVAL;
        if (type < 0x8000 && !attr_known(type) && nunknown < STUN_MAX_UNKNOWN)
            unknown[nunknown++] = type;
        off += 4 + padded;
    }
    if (nunknown > 0)
        return answer_unknown(req, unknown, nunknown, out);

    /* XOR-MAPPED-ADDRESS (§15.2): port ^ the cookie's top 16 bits; IPv4
     * address ^ the cookie; IPv6 address ^ cookie || transaction id. */
    const uint8_t *key = req + 4; /* cookie, then transaction id */
    uint8_t *a = out + TP_STUN_HDR_LEN;
    size_t alen;
    uint16_t port = tp_addr_port(mapped);

    if (mapped->u.sa.sa_family == AF_INET &&
        mapped->len >= sizeof(mapped->u.in4)) {
        const uint8_t *ip = (const uint8_t *)&mapped->u.in4.sin_addr;
        alen = 8;
        a[4] = 0;
        a[5] = 0x01;
        for (int i = 0; i < 4; i++)
            a[8 + i] = ip[i] ^ key[i];
    } else if (mapped->u.sa.sa_family == AF_INET6 &&
               mapped->len >= sizeof(mapped->u.in6)) {
        const uint8_t *ip = (const uint8_t *)&mapped->u.in6.sin6_addr;
        alen = 20;
        a[4] = 0;
        a[5] = 0x02;
        for (int i = 0; i < 16; i++)
            a[8 + i] = ip[i] ^ key[i];
    } else {
        return -EINVAL;
    }
    put16(a, STUN_ATTR_XOR_MAPPED);
    put16(a + 2, (uint16_t)alen);
    put16(a + 6, (uint16_t)(port ^ (TP_STUN_COOKIE >> 16)));
    put_header(out, STUN_BINDING_SUCCESS, 4 + alen, req);
    return (int)(TP_STUN_HDR_LEN + 4 + alen);
}
