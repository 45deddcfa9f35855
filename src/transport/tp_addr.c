/*
 * transport/tp_addr: numeric socket addresses and listen specs. No DNS
 * here: listen addresses and Via received values are numeric; resolving
 * names (RFC 3263) belongs to a later layer.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "transport/tp.h"

#include "base/buf.h"

const char *
tp_proto_name(enum tp_proto p)
{
    switch (p) {
    case TP_UDP:
        return "udp";
    case TP_TCP:
        return "tcp";
    case TP_TLS:
        return "tls";
    }
    return "?";
}

int
tp_addr_from_ip(struct slice ip, uint16_t port, struct tp_addr *out)
{
    char host[INET6_ADDRSTRLEN + 1];

    memset(out, 0, sizeof(*out));
    if (ip.len >= 2 && ip.ptr[0] == '[' && ip.ptr[ip.len - 1] == ']') {
        ip.ptr++;
        ip.len -= 2;
    }
    if (ip.len == 0 || ip.len >= sizeof(host))
        return -EINVAL;
    memcpy(host, ip.ptr, ip.len);
    host[ip.len] = '\0';
    if (inet_pton(AF_INET, host, &out->u.in4.sin_addr) == 1) {
        out->u.in4.sin_family = AF_INET;
        out->u.in4.sin_port = htons(port);
        out->len = sizeof(out->u.in4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &out->u.in6.sin6_addr) == 1) {
        out->u.in6.sin6_family = AF_INET6;
        out->u.in6.sin6_port = htons(port);
        out->len = sizeof(out->u.in6);
        return 0;
    }
    memset(out, 0, sizeof(*out));
    return -EINVAL;
}

int
tp_addr_parse(struct slice s, bool allow_no_port, struct tp_addr *out)
{
    struct slice host = s, port = SLICE_NULL;
    unsigned long long p = 0;
    const char *colon;

    if (s.len == 0)
        return -EINVAL;
    if (s.ptr[0] == '[') {
        const char *close = memchr(s.ptr, ']', s.len);
        if (close == NULL)
            return -EINVAL;
        host = slice_make(s.ptr, (size_t)(close - s.ptr) + 1);
        size_t rest = s.len - host.len;
        if (rest > 0) {
            if (close[1] != ':')
                return -EINVAL;
            port = slice_make(close + 2, rest - 1);
        }
    } else {
        colon = memchr(s.ptr, ':', s.len);
        /* More than one colon without brackets: a bare IPv6 address. */
        if (colon != NULL &&
            memchr(colon + 1, ':', s.len - (size_t)(colon + 1 - s.ptr)) ==
                NULL) {
            host = slice_make(s.ptr, (size_t)(colon - s.ptr));
            port = slice_make(colon + 1, s.len - host.len - 1);
        }
    }
    if (port.ptr == NULL) {
        if (!allow_no_port)
            return -EINVAL;
    } else if (slice_to_u64(port, 65535, &p) != 0) {
        return -EINVAL;
    }
    return tp_addr_from_ip(host, (uint16_t)p, out);
}

/* Dotted quad of an IPv4 address, without inet_ntop's sprintf (it is
 * formatted for every response's received=). out has room for 16. */
static void
ipv4_text(const struct in_addr *ip, char *out)
{
    const unsigned char *b = (const unsigned char *)&ip->s_addr;
    size_t n = 0;

    for (int i = 0; i < 4; i++) {
        if (i)
            out[n++] = '.';
        n += fmt_u64(out + n, b[i]);
    }
    out[n] = '\0';
}

char *
tp_addr_host(const struct tp_addr *a, char *out, size_t cap)
{
    const void *src = NULL;

    if (cap == 0)
        return out;
    out[0] = '\0';
    if (a->u.sa.sa_family == AF_INET && cap >= INET_ADDRSTRLEN) {
        ipv4_text(&a->u.in4.sin_addr, out);
        return out;
    }
    if (a->u.sa.sa_family == AF_INET)
        src = &a->u.in4.sin_addr;
    else if (a->u.sa.sa_family == AF_INET6)
        src = &a->u.in6.sin6_addr;
    if (src == NULL ||
        inet_ntop(a->u.sa.sa_family, src, out, (socklen_t)cap) == NULL)
        snprintf(out, cap, "?");
    return out;
}

uint16_t
tp_addr_port(const struct tp_addr *a)
{
    if (a->u.sa.sa_family == AF_INET)
        return ntohs(a->u.in4.sin_port);
    if (a->u.sa.sa_family == AF_INET6)
        return ntohs(a->u.in6.sin6_port);
    return 0;
}

char *
tp_addr_format(const struct tp_addr *a, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN];

    tp_addr_host(a, host, sizeof(host));
    if (a->u.sa.sa_family == AF_INET6)
        snprintf(out, cap, "[%s]:%u", host, tp_addr_port(a));
    else
        snprintf(out, cap, "%s:%u", host, tp_addr_port(a));
    return out;
}

bool
tp_addr_equal(const struct tp_addr *a, const struct tp_addr *b)
{
    if (a->u.sa.sa_family != b->u.sa.sa_family)
        return false;
    if (a->u.sa.sa_family == AF_INET)
        return a->u.in4.sin_port == b->u.in4.sin_port &&
               a->u.in4.sin_addr.s_addr == b->u.in4.sin_addr.s_addr;
    if (a->u.sa.sa_family == AF_INET6)
        return a->u.in6.sin6_port == b->u.in6.sin6_port &&
               memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr,
                      sizeof(a->u.in6.sin6_addr)) == 0;
    return false;
}

static bool
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',';
}

int
tp_listen_spec_parse(const char *spec, struct tp_listen_spec *out, size_t cap,
                     size_t *count, char *err, size_t errlen)
{
    const char *p = spec, *end = spec + strlen(spec);
    size_t n = 0;

    while (p < end) {
        while (p < end && is_space(*p))
            p++;
        if (p == end)
            break;
        const char *start = p;
        while (p < end && !is_space(*p))
            p++;
        struct slice item = slice_make(start, (size_t)(p - start));
        struct tp_listen_spec s;
        memset(&s, 0, sizeof(s));
        if (item.len > 4 &&
            slice_eq_nocase_cstr(slice_make(item.ptr, 4), "udp:"))
            s.proto = TP_UDP;
        else if (item.len > 4 &&
                 slice_eq_nocase_cstr(slice_make(item.ptr, 4), "tcp:"))
            s.proto = TP_TCP;
        else if (item.len > 4 &&
                 slice_eq_nocase_cstr(slice_make(item.ptr, 4), "tls:"))
            s.proto = TP_TLS;
        else {
            if (err)
                snprintf(err, errlen,
                         "'" SLICE_FMT "': expected udp:HOST:PORT, "
                         "tcp:HOST:PORT or tls:HOST:PORT",
                         SLICE_ARG(item));
            return -EINVAL;
        }
        if (tp_addr_parse(slice_make(item.ptr + 4, item.len - 4), false,
                          &s.addr) != 0) {
            if (err)
                snprintf(err, errlen,
                         "'" SLICE_FMT "': bad numeric address or port "
                         "(IPv6 in brackets: tcp:[::1]:5060)",
                         SLICE_ARG(item));
            return -EINVAL;
        }
        if (n == cap) {
            if (err)
                snprintf(err, errlen, "more than %zu listen addresses", cap);
            return -E2BIG;
        }
        out[n++] = s;
    }
    if (n == 0) {
        if (err)
            snprintf(err, errlen, "no listen address");
        return -EINVAL;
    }
    *count = n;
    return 0;
}

char *
tp_listen_spec_format(const struct tp_listen_spec *s, char *out, size_t cap)
{
    char a[TP_ADDRSTRLEN];

    snprintf(out, cap, "%s:%s", tp_proto_name(s->proto),
             tp_addr_format(&s->addr, a, sizeof(a)));
    return out;
}
