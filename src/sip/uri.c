/*
 * sip/uri: URI parser and comparison (RFC 3261 §19.1, RFC 3966, RFC 8599).
 *
 * The parser validates the whole URI in one pass and hands out slices into
 * the caller's text; it never copies and never writes. Escapes stay as
 * written: the comparison functions decode %XX on the fly, so equality of
 * two URIs costs no allocation. Only sip_unescape() copies (into an arena).
 *
 * Load: a handful of URIs per message (R-URI, Contact, Route), most of them
 * short, so the code prefers plain loops over tables and the O(n*m)
 * parameter matching of sip_uri_equal() is fine for the few params a real
 * URI has. The parser caps params and headers at SIP_URI_MAX_PARAMS each,
 * so a hostile 64 KB Contact cannot make one comparison quadratic in the
 * message size.
 */
#include "sip/uri.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

/* Character classes of RFC 3261 §25.1. */
enum {
    CL_UNRESERVED = 1 << 0, /* alphanum / mark */
    CL_USER = 1 << 1,       /* user-unreserved */
    CL_PASSWORD = 1 << 2,   /* "&" / "=" / "+" / "$" / "," */
    CL_PARAM = 1 << 3,      /* param-unreserved */
    CL_HNV = 1 << 4,        /* hnv-unreserved */
    CL_RESERVED = 1 << 5,   /* reserved */
};

static bool
is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool
is_alnum(char c)
{
    return is_alpha(c) || is_digit(c);
}


/* RFC 3261 §25.1 classes per byte (bits above). Generated from:
 * unreserved = alphanum / "-_.!~*'()"; user-unreserved = "&=+$,;?/";
 * password adds "&=+$,"; param-unreserved = "[]/:&+$"; hnv-unreserved =
 * "[]/?:+$"; reserved = ";/?:@&=+$,". A table because the parser and
 * every comparison look up each byte. */
static const unsigned char uri_class[256] = {
    0,  0, 0, 0,  0, 0,  0, 0, 0, 0, 0, 0, 0, 0, 0,  0,  0,  0,  0, 0,  0,  0,
    0,  0, 0, 0,  0, 0,  0, 0, 0, 0, 0, 1, 0, 0, 62, 0,  46, 1,  1, 1,  1,  62,
    38, 1, 1, 58, 1, 1,  1, 1, 1, 1, 1, 1, 1, 1, 56, 34, 0,  38, 0, 50, 32, 1,
    1,  1, 1, 1,  1, 1,  1, 1, 1, 1, 1, 1, 1, 1, 1,  1,  1,  1,  1, 1,  1,  1,
    1,  1, 1, 24, 0, 24, 0, 1, 0, 1, 1, 1, 1, 1, 1,  1,  1,  1,  1, 1,  1,  1,
    1,  1, 1, 1,  1, 1,  1, 1, 1, 1, 1, 1, 1, 0, 0,  0,  1,  0,  0, 0,  0,  0,
    0,  0, 0, 0,  0, 0,  0, 0, 0, 0, 0, 0, 0, 0, 0,  0,  0,  0,  0, 0,  0,  0,
    0,  0, 0, 0,  0, 0,  0, 0, 0, 0, 0, 0, 0, 0, 0,  0,  0,  0,  0, 0,  0,  0,
    0,  0, 0, 0,  0, 0,  0, 0, 0, 0, 0, 0, 0, 0, 0,  0,  0,  0,  0, 0,  0,  0,
    0,  0, 0, 0,  0, 0,  0, 0, 0, 0, 0, 0, 0, 0, 0,  0,  0,  0,  0, 0,  0,  0,
    0,  0, 0, 0,  0, 0,  0, 0, 0, 0, 0, 0, 0, 0, 0,  0,  0,  0,  0, 0,  0,  0,
    0,  0, 0, 0,  0, 0,  0, 0, 0, 0, 0, 0, 0, 0,
};

static unsigned
char_class(char c)
{
    return uri_class[(unsigned char)c];
}

static char
lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Every char of s is in one of the classes in mask, or a %XX escape (the
 * escapes were validated for the whole URI before). */
static bool
chars_ok(struct slice s, unsigned mask)
{
    for (size_t i = 0; i < s.len; i++) {
        if (s.ptr[i] != '%' && !(char_class(s.ptr[i]) & mask))
            return false;
    }
    return true;
}

static const char *
find_char(const char *p, const char *end, char c)
{
    const char *q = memchr(p, c, (size_t)(end - p));
    return q ? q : end;
}

/* First of several stop characters, or end. */
static const char *
find_any(const char *p, const char *end, const char *stops)
{
    for (; p < end; p++) {
        if (strchr(stops, *p))
            return p;
    }
    return end;
}

/* Absent parts are NULL slices; arithmetic on NULL is UB even for +0. */
static struct slice
nz(struct slice s)
{
    return s.ptr ? s : slice_make("", 0);
}

/* ---- host ------------------------------------------------------------ */

static bool
ipv4_ok(struct slice s)
{
    int parts = 0;
    const char *p = s.ptr, *end = s.ptr + s.len;

    for (;;) {
        const char *q = find_char(p, end, '.');
        size_t n = (size_t)(q - p);
        unsigned v = 0;

        if (n == 0 || n > 3)
            return false;
        for (size_t i = 0; i < n; i++) {
            if (!is_digit(p[i]))
                return false;
            v = v * 10 + (unsigned)(p[i] - '0');
        }
        if (v > 255 || ++parts > 4)
            return false;
        if (q == end)
            break;
        p = q + 1;
    }
    return parts == 4;
}

/* hostname = *( domainlabel "." ) toplabel [ "." ] / IPv4address. A name
 * whose last label starts with a digit can only be an IPv4 address. */
static const char *
host_check(struct slice h)
{
    struct slice name = h;

    if (h.len == 0)
        return "missing host";
    if (name.ptr[name.len - 1] == '.')
        name.len--;
    if (name.len == 0)
        return "bad host name";
    const char *p = name.ptr, *end = name.ptr + name.len;
    const char *last = p;
    for (;;) {
        const char *q = find_char(p, end, '.');
        size_t n = (size_t)(q - p);
        if (n == 0 || p[0] == '-' || p[n - 1] == '-')
            return "bad host name";
        for (size_t i = 0; i < n; i++) {
            if (!is_alnum(p[i]) && p[i] != '-')
                return "bad character in host";
        }
        last = p;
        if (q == end)
            break;
        p = q + 1;
    }
    if (is_digit(*last) && !ipv4_ok(name))
        return "bad IPv4 address";
    return NULL;
}

static bool
ipv6_bin(struct slice s, unsigned char out[16])
{
    char tmp[INET6_ADDRSTRLEN];

    if (s.len == 0 || s.len >= sizeof(tmp))
        return false;
    memcpy(tmp, s.ptr, s.len);
    tmp[s.len] = '\0';
    return inet_pton(AF_INET6, tmp, out) == 1;
}

/* ---- parameters and headers ------------------------------------------ */

/* Split the next ";name[=value]" (sep ';') or "name=value" (sep '&') off
 * *rest. Returns false at the end. */
static bool
next_pair(struct slice *rest, char sep, struct slice *name, struct slice *value,
          bool *has_value)
{
    *rest = nz(*rest);
    const char *p = rest->ptr, *end = rest->ptr + rest->len;

    while (p < end && *p == sep)
        p++;
    if (p >= end)
        return false;
    const char *q = find_char(p, end, sep);
    const char *eq = find_char(p, q, '=');
    *name = slice_make(p, (size_t)(eq - p));
    *has_value = eq < q;
    *value = *has_value ? slice_make(eq + 1, (size_t)(q - eq - 1))
                        : slice_make(q, 0);
    *rest = slice_make(q, (size_t)(end - q));
    return true;
}

/* ";a=b;c" with pname / pvalue of paramchar (RFC 3261) or, for tel, pname
 * of alphanum / "-" (RFC 3966). */
static const char *
params_check(struct slice params, bool tel)
{
    const char *p = params.ptr, *end = params.ptr + params.len;
    size_t count = 0;

    /* Every element must be non-empty: ";;" and a trailing ';' are junk. */
    while (p < end) {
        const char *q;
        if (*p != ';')
            return "bad URI parameter";
        if (++count > SIP_URI_MAX_PARAMS)
            return "too many URI parameters";
        p++;
        q = find_char(p, end, ';');
        const char *eq = find_char(p, q, '=');
        struct slice name = slice_make(p, (size_t)(eq - p));
        if (name.len == 0)
            return "empty URI parameter";
        if (tel) {
            for (size_t i = 0; i < name.len; i++) {
                if (!is_alnum(name.ptr[i]) && name.ptr[i] != '-')
                    return "bad tel parameter name";
            }
        } else if (!chars_ok(name, CL_UNRESERVED | CL_PARAM)) {
            return "bad character in URI parameter";
        }
        if (eq < q) {
            struct slice v = slice_make(eq + 1, (size_t)(q - eq - 1));
            if (!chars_ok(v, CL_UNRESERVED | CL_PARAM))
                return "bad character in URI parameter";
        }
        p = q;
    }
    return NULL;
}

static const char *
headers_check(struct slice h)
{
    const char *p = h.ptr, *end = h.ptr + h.len;
    size_t count = 0;

    if (h.len == 0)
        return "empty URI headers";
    for (;;) {
        if (++count > SIP_URI_MAX_PARAMS)
            return "too many URI headers";
        const char *q = find_char(p, end, '&');
        const char *eq = find_char(p, q, '=');
        if (eq == p || eq == q)
            return "bad URI header";
        struct slice n = slice_make(p, (size_t)(eq - p));
        struct slice v = slice_make(eq + 1, (size_t)(q - eq - 1));
        if (!chars_ok(n, CL_UNRESERVED | CL_HNV) ||
            !chars_ok(v, CL_UNRESERVED | CL_HNV))
            return "bad character in URI header";
        if (q == end)
            break;
        p = q + 1;
    }
    return NULL;
}

/* ---- parser ----------------------------------------------------------- */

static const char *
parse_sip(struct slice rest, struct sip_uri *u)
{
    const char *p = rest.ptr, *end = rest.ptr + rest.len;
    const char *why;

    /* '@' is legal only as the userinfo terminator (it is reserved in
     * params and headers), so the first one ends the userinfo even when
     * the user part holds ';' or '?' (RFC 4475 semiuri). */
    const char *at = memchr(p, '@', rest.len);
    if (at) {
        const char *colon = find_char(p, at, ':');
        u->user = slice_make(p, (size_t)(colon - p));
        if (colon < at)
            u->password = slice_make(colon + 1, (size_t)(at - colon - 1));
        if (u->user.len == 0)
            return "empty user part";
        if (!chars_ok(u->user, CL_UNRESERVED | CL_USER))
            return "bad character in user part";
        if (!chars_ok(u->password, CL_UNRESERVED | CL_PASSWORD))
            return "bad character in password";
        p = at + 1;
    }
    if (p >= end)
        return "missing host";
    if (*p == '[') {
        const char *rb = find_char(p, end, ']');
        unsigned char bin[16];
        if (rb == end)
            return "unterminated IPv6 reference";
        u->host = slice_make(p + 1, (size_t)(rb - p - 1));
        u->host_ipv6 = true;
        if (!ipv6_bin(u->host, bin))
            return "bad IPv6 address";
        p = rb + 1;
    } else {
        const char *h = p;
        while (h < end && (is_alnum(*h) || *h == '-' || *h == '.'))
            h++;
        if (h < end && *h != ':' && *h != ';' && *h != '?')
            return "bad character in host";
        u->host = slice_make(p, (size_t)(h - p));
        why = host_check(u->host);
        if (why)
            return why;
        p = h;
    }
    if (p < end && *p == ':') {
        const char *q = find_any(++p, end, ";?");
        unsigned long v = 0;
        if (q == p || q - p > 5)
            return "bad port";
        for (const char *d = p; d < q; d++) {
            if (!is_digit(*d))
                return "bad port";
            v = v * 10 + (unsigned long)(*d - '0');
        }
        if (v == 0 || v > 65535)
            return "bad port";
        u->port = (uint16_t)v;
        u->has_port = true;
        p = q;
    }
    if (p < end && *p == ';') {
        const char *q = find_char(p, end, '?');
        u->params = slice_make(p, (size_t)(q - p));
        why = params_check(u->params, false);
        if (why)
            return why;
        p = q;
    }
    if (p < end && *p == '?') {
        u->headers = slice_make(p + 1, (size_t)(end - p - 1));
        why = headers_check(u->headers);
        if (why)
            return why;
        p = end;
    }
    if (p != end)
        return "bad character after host";
    return NULL;
}

static bool
visual_sep(char c)
{
    return c == '-' || c == '.' || c == '(' || c == ')';
}

/* RFC 3966 §3. A local number should carry phone-context; many UAs omit
 * it in From/To, so it is not required here (a registrar that cares can
 * look it up with sip_uri_param). */
static const char *
parse_tel(struct slice rest, struct sip_uri *u)
{
    const char *end = rest.ptr + rest.len;
    const char *semi = find_char(rest.ptr, end, ';');
    bool global;
    int digits = 0;

    u->user = slice_make(rest.ptr, (size_t)(semi - rest.ptr));
    if (u->user.len == 0)
        return "empty tel number";
    global = u->user.ptr[0] == '+';
    for (size_t i = global ? 1 : 0; i < u->user.len; i++) {
        char c = u->user.ptr[i];
        if (is_digit(c) ||
            (!global && (hex_digit(c) >= 0 || c == '*' || c == '#')))
            digits++;
        else if (!visual_sep(c))
            return "bad character in tel number";
    }
    if (digits == 0)
        return "tel number without digits";
    u->params = slice_make(semi, (size_t)(end - semi));
    return params_check(u->params, true);
}

int
sip_uri_parse(struct slice text, struct sip_uri *out, const char **reason)
{
    const char *why = NULL;
    const char *p = text.ptr, *end = text.ptr + text.len;

    memset(out, 0, sizeof(*out));
    out->raw = text;
    if (text.len == 0) {
        why = "empty URI";
        goto fail;
    }
    /* One pass over the whole text rejects what no scheme allows: RFC
     * 4475 ltgtruri and lwsruri must fail here, whatever the scheme. */
    for (size_t i = 0; i < text.len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c == 0x7f) {
            why = "space or control character in URI";
            goto fail;
        }
        if (c == '<' || c == '>') {
            why = "'<' or '>' in URI";
            goto fail;
        }
        if (c == '"') {
            why = "quote in URI";
            goto fail;
        }
        if (c == '%' && (i + 2 >= text.len || hex_digit(p[i + 1]) < 0 ||
                         hex_digit(p[i + 2]) < 0)) {
            why = "bad escape in URI";
            goto fail;
        }
    }
    if (!is_alpha(*p)) {
        why = "bad URI scheme";
        goto fail;
    }
    const char *colon = p;
    while (colon < end && (is_alnum(*colon) || *colon == '+' || *colon == '-' ||
                           *colon == '.'))
        colon++;
    if (colon == end || *colon != ':') {
        why = "missing URI scheme";
        goto fail;
    }
    out->scheme_name = slice_make(p, (size_t)(colon - p));
    struct slice rest = slice_make(colon + 1, (size_t)(end - colon - 1));
    if (slice_eq_nocase_cstr(out->scheme_name, "sip"))
        out->scheme = SIP_URI_SIP;
    else if (slice_eq_nocase_cstr(out->scheme_name, "sips"))
        out->scheme = SIP_URI_SIPS;
    else if (slice_eq_nocase_cstr(out->scheme_name, "tel"))
        out->scheme = SIP_URI_TEL;
    else
        out->scheme = SIP_URI_OTHER;

    switch (out->scheme) {
    case SIP_URI_SIP:
    case SIP_URI_SIPS:
        why = parse_sip(rest, out);
        break;
    case SIP_URI_TEL:
        why = parse_tel(rest, out);
        break;
    default:
        if (rest.len == 0)
            why = "empty URI after scheme";
        break;
    }
    if (!why)
        return 0;
fail:
    if (reason)
        *reason = why;
    return -1;
}

/* ---- comparison ------------------------------------------------------- */

/* Next logical char of an escaped text. *esc_reserved is set when it came
 * from an escape of a reserved char, which RFC 3261 §19.1.4 keeps distinct
 * from the literal char. A '%' that starts no escape counts as itself. */
static int
dec_next(const char **pp, const char *end, bool *esc_reserved)
{
    const char *p = *pp;
    int c = (unsigned char)*p;

    *esc_reserved = false;
    if (c == '%' && end - p >= 3 && hex_digit(p[1]) >= 0 && hex_digit(p[2]) >= 0) {
        c = hex_digit(p[1]) * 16 + hex_digit(p[2]);
        *esc_reserved = (char_class((char)c) & CL_RESERVED) != 0;
        *pp = p + 3;
        return c;
    }
    *pp = p + 1;
    return c;
}

enum cmp_mode {
    CMP_CASE,   /* userinfo: case-sensitive, reserved escapes distinct */
    CMP_NOCASE, /* the rest of a SIP URI */
    CMP_BYTES,  /* pn-*: every escape decoded, then byte-exact */
};

static bool
seq_equal(struct slice a, struct slice b, enum cmp_mode mode)
{
    a = nz(a);
    b = nz(b);
    /* Fast path: without escapes the lengths must agree. Most calls are
     * param-name lookups that fail here. */
    if (!memchr(a.ptr, '%', a.len) && !memchr(b.ptr, '%', b.len)) {
        if (a.len != b.len)
            return false;
        if (mode == CMP_NOCASE)
            return slice_eq_nocase(a, b);
        return a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0;
    }
    const char *p = a.ptr, *pe = a.ptr + a.len;
    const char *q = b.ptr, *qe = b.ptr + b.len;

    while (p < pe && q < qe) {
        bool ea, eb;
        int ca = dec_next(&p, pe, &ea);
        int cb = dec_next(&q, qe, &eb);
        if (mode == CMP_NOCASE) {
            ca = lower((char)ca) & 0xff;
            cb = lower((char)cb) & 0xff;
        }
        if (ca != cb || (mode != CMP_BYTES && ea != eb))
            return false;
    }
    return p == pe && q == qe;
}

/* Find the first element named name (escape-aware, case-insensitive). */
static bool
pair_find(struct slice list, char sep, struct slice name, struct slice *value)
{
    struct slice n, v;
    bool hv;

    while (next_pair(&list, sep, &n, &v, &hv)) {
        if (seq_equal(n, name, CMP_NOCASE)) {
            *value = v;
            return true;
        }
    }
    return false;
}

/* Is the element that starts at n.ptr the first with its name? */
static bool
pair_first(struct slice list, char sep, struct slice name)
{
    struct slice n, v;
    bool hv;

    while (next_pair(&list, sep, &n, &v, &hv)) {
        if (n.ptr == name.ptr)
            return true;
        if (seq_equal(n, name, CMP_NOCASE))
            return false;
    }
    return true;
}

bool
sip_uri_param(const struct sip_uri *u, const char *name, struct slice *value)
{
    struct slice v;

    if (!pair_find(u->params, ';', slice_cstr(name), &v))
        return false;
    if (value)
        *value = v;
    return true;
}

/* The params that must be on both sides if on one (RFC 3261 §19.1.4). */
static bool
param_must_match(struct slice name)
{
    static const char *const names[] = {"user", "ttl", "method", "maddr",
                                        "transport"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (seq_equal(name, slice_cstr(names[i]), CMP_NOCASE))
            return true;
    }
    return false;
}

/* One direction of the parameter rule. strict: every param of a must be
 * in b (tel, URI headers); else only param_must_match() ones. */
static bool
pairs_subset(struct slice a, struct slice b, char sep, bool strict,
             enum cmp_mode mode)
{
    struct slice rest = a, n, v, bv;
    bool hv;

    while (next_pair(&rest, sep, &n, &v, &hv)) {
        if (!pair_first(a, sep, n))
            continue;
        if (pair_find(b, sep, n, &bv)) {
            if (!seq_equal(v, bv, mode))
                return false;
        } else if (strict || param_must_match(n)) {
            return false;
        }
    }
    return true;
}

static bool
host_equal(const struct sip_uri *a, const struct sip_uri *b)
{
    if (a->host_ipv6 != b->host_ipv6)
        return false;
    if (a->host_ipv6) {
        unsigned char x[16], y[16];
        if (ipv6_bin(a->host, x) && ipv6_bin(b->host, y))
            return memcmp(x, y, sizeof(x)) == 0;
    }
    return slice_eq_nocase(a->host, b->host);
}

static bool
tel_number_equal(struct slice a, struct slice b)
{
    size_t i = 0, j = 0;

    for (;;) {
        while (i < a.len && visual_sep(a.ptr[i]))
            i++;
        while (j < b.len && visual_sep(b.ptr[j]))
            j++;
        if (i == a.len || j == b.len)
            return i == a.len && j == b.len;
        if (lower(a.ptr[i++]) != lower(b.ptr[j++]))
            return false;
    }
}

bool
sip_uri_equal(const struct sip_uri *a, const struct sip_uri *b)
{
    if (a->scheme != b->scheme)
        return false;
    switch (a->scheme) {
    case SIP_URI_SIP:
    case SIP_URI_SIPS:
        break;
    case SIP_URI_TEL:
        return tel_number_equal(a->user, b->user) &&
               pairs_subset(a->params, b->params, ';', true, CMP_NOCASE) &&
               pairs_subset(b->params, a->params, ';', true, CMP_NOCASE);
    default:
        return slice_eq_nocase(a->raw, b->raw);
    }
    if (!seq_equal(a->user, b->user, CMP_CASE) ||
        !seq_equal(a->password, b->password, CMP_CASE))
        return false;
    if (!host_equal(a, b))
        return false;
    if (a->has_port != b->has_port || a->port != b->port)
        return false;
    if (!pairs_subset(a->params, b->params, ';', false, CMP_NOCASE) ||
        !pairs_subset(b->params, a->params, ';', false, CMP_NOCASE))
        return false;
    /* Header values are compared like userinfo: they carry Call-IDs and
     * other case-sensitive values, and the RFC never ignores them. */
    return pairs_subset(a->headers, b->headers, '&', true, CMP_CASE) &&
           pairs_subset(b->headers, a->headers, '&', true, CMP_CASE);
}

static const char *const pn_names[] = {"pn-provider", "pn-prid", "pn-param"};

static bool
pn_match(const struct sip_uri *a, const struct sip_uri *b)
{
    for (size_t i = 0; i < sizeof(pn_names) / sizeof(pn_names[0]); i++) {
        struct slice va, vb;
        bool ha = sip_uri_param(a, pn_names[i], &va);
        bool hb = sip_uri_param(b, pn_names[i], &vb);
        if (ha != hb)
            return false;
        if (ha && !seq_equal(va, vb, CMP_BYTES))
            return false;
    }
    return true;
}

bool
sip_uri_pn_equal(const struct sip_uri *a, const struct sip_uri *b)
{
    return sip_uri_equal(a, b) && pn_match(a, b);
}

bool
sip_uri_pn_params_equal(const struct sip_uri *a, const struct sip_uri *b)
{
    if (!sip_uri_param(a, "pn-provider", NULL) ||
        !sip_uri_param(a, "pn-prid", NULL))
        return false;
    return pn_match(a, b);
}

/* ---- escapes ---------------------------------------------------------- */

int
sip_unescape_to(struct slice s, char *dst, size_t cap, size_t *len)
{
    size_t j = 0;

    for (size_t i = 0; i < s.len; j++) {
        char c = s.ptr[i];
        if (c == '%') {
            if (i + 2 >= s.len || hex_digit(s.ptr[i + 1]) < 0 ||
                hex_digit(s.ptr[i + 2]) < 0)
                return -EINVAL;
            c = (char)(hex_digit(s.ptr[i + 1]) * 16 + hex_digit(s.ptr[i + 2]));
            i += 3;
        } else {
            i++;
        }
        if (j + 1 >= cap)
            return -ENOSPC;
        dst[j] = c;
    }
    if (cap == 0)
        return -ENOSPC;
    dst[j] = '\0';
    *len = j;
    return 0;
}

int
sip_unescape(struct slice s, struct arena *a, struct slice *out)
{
    size_t n = 0, len;
    char *dst;

    /* Decoded length first: never more than the escaped length. */
    for (size_t i = 0; i < s.len; i++, n++)
        if (s.ptr[i] == '%')
            i += 2;
    dst = arena_alloc(a, n + 1);
    if (!dst)
        return -ENOMEM;
    int rc = sip_unescape_to(s, dst, n + 1, &len);
    if (rc < 0)
        return rc == -ENOSPC ? -EINVAL : rc;
    *out = slice_make(dst, len);
    return 0;
}

bool
sip_uri_user_char(char c)
{
    return (char_class(c) & (CL_UNRESERVED | CL_USER)) != 0;
}
