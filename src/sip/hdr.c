/*
 * sip/hdr: lazy value parsers for single header values (Via, name-addr,
 * CSeq, Contact) and parameter lists, plus the header-name table.
 *
 * Called on first use of a header (and by sip_msg_parse for the few headers
 * every message needs), so they run once per value per message. They are
 * small cursor functions over a slice: no allocation, no writes, and a
 * static reason naming the fault on error. Values may contain folding
 * (CRLF + WSP); see msg_int.h for why CR/LF count as white space here.
 */
#include <string.h>

#include "sip/msg.h"
#include "sip/msg_int.h"

/* Bits: 1 token, 2 LWS, 4 digit, 8 alpha, 16 hostname, 32 gen-value,
 * 64 scheme char. Generated once; see the enum in msg_int.h. */
/* clang-format off */
const unsigned char sip_ctype[256] = {
      0,  0,  0,  0,  0,  0,  0,  0,  0,  2,  2,  0,  0,  2,  0,  0,
      0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
      2, 33,  0,  0,  0, 33,  0, 33,  0,  0, 33, 97,  0,113,113,  0,
    117,117,117,117,117,117,117,117,117,117, 32,  0,  0,  0,  0,  0,
      0,121,121,121,121,121,121,121,121,121,121,121,121,121,121,121,
    121,121,121,121,121,121,121,121,121,121,121, 32,  0, 32,  0, 49,
     33,121,121,121,121,121,121,121,121,121,121,121,121,121,121,121,
    121,121,121,121,121,121,121,121,121,121,121,  0,  0,  0, 33,  0,
      0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
      0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
      0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
      0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
      0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
      0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
      0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
      0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
};
/* clang-format on */

static inline unsigned char
lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

/* Case-insensitive compare of n bytes against a lower-case literal. */
static inline bool
eq_lit(const char *p, const char *lit, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)p[i]) != (unsigned char)lit[i])
            return false;
    return true;
}

/*
 * Header names: switch on length, then on the first character, then one
 * case-insensitive compare. A name is looked at once per header, so this
 * is on the hot path; the table below covers every id in enum sip_hdr_id.
 */
enum sip_hdr_id
sip_hdr_lookup(const char *p, size_t n)
{
#define NAME(lit, id)                                                          \
    do {                                                                       \
        if (eq_lit(p, lit, n))                                                 \
            return id;                                                         \
    } while (0)
    unsigned char c = lower((unsigned char)(n ? p[0] : 0));

    switch (n) {
    case 1:
        switch (c) {
        case 'v':
            return SIP_HDR_VIA;
        case 'f':
            return SIP_HDR_FROM;
        case 't':
            return SIP_HDR_TO;
        case 'i':
            return SIP_HDR_CALL_ID;
        case 'm':
            return SIP_HDR_CONTACT;
        case 'l':
            return SIP_HDR_CONTENT_LENGTH;
        case 'c':
            return SIP_HDR_CONTENT_TYPE;
        case 'e':
            return SIP_HDR_CONTENT_ENCODING;
        case 'k':
            return SIP_HDR_SUPPORTED;
        case 's':
            return SIP_HDR_SUBJECT;
        case 'o':
            return SIP_HDR_EVENT;
        case 'r':
            return SIP_HDR_REFER_TO;
        }
        break;
    case 2:
        if (c == 't')
            NAME("to", SIP_HDR_TO);
        break;
    case 3:
        if (c == 'v')
            NAME("via", SIP_HDR_VIA);
        break;
    case 4:
        switch (c) {
        case 'f':
            NAME("from", SIP_HDR_FROM);
            break;
        case 'c':
            NAME("cseq", SIP_HDR_CSEQ);
            break;
        case 'p':
            NAME("path", SIP_HDR_PATH);
            break;
        case 'd':
            NAME("date", SIP_HDR_DATE);
            break;
        }
        break;
    case 5:
        switch (c) {
        case 'r':
            NAME("route", SIP_HDR_ROUTE);
            break;
        case 'a':
            NAME("allow", SIP_HDR_ALLOW);
            break;
        case 'e':
            NAME("event", SIP_HDR_EVENT);
            break;
        }
        break;
    case 6:
        switch (c) {
        case 'a':
            NAME("accept", SIP_HDR_ACCEPT);
            break;
        case 's':
            NAME("server", SIP_HDR_SERVER);
            break;
        case 'r':
            NAME("reason", SIP_HDR_REASON);
            break;
        }
        break;
    case 7:
        switch (c) {
        case 'c':
            NAME("call-id", SIP_HDR_CALL_ID);
            NAME("contact", SIP_HDR_CONTACT);
            break;
        case 'e':
            NAME("expires", SIP_HDR_EXPIRES);
            break;
        case 'r':
            NAME("require", SIP_HDR_REQUIRE);
            break;
        case 's':
            NAME("subject", SIP_HDR_SUBJECT);
            break;
        }
        break;
    case 8:
        if (c == 'r')
            NAME("refer-to", SIP_HDR_REFER_TO);
        break;
    case 9:
        switch (c) {
        case 's':
            NAME("supported", SIP_HDR_SUPPORTED);
            break;
        case 't':
            NAME("timestamp", SIP_HDR_TIMESTAMP);
            break;
        }
        break;
    case 10:
        if (c == 'u')
            NAME("user-agent", SIP_HDR_USER_AGENT);
        break;
    case 11:
        switch (c) {
        case 'u':
            NAME("unsupported", SIP_HDR_UNSUPPORTED);
            break;
        case 'm':
            NAME("min-expires", SIP_HDR_MIN_EXPIRES);
            break;
        }
        break;
    case 12:
        switch (c) {
        case 'm':
            NAME("max-forwards", SIP_HDR_MAX_FORWARDS);
            break;
        case 'c':
            NAME("content-type", SIP_HDR_CONTENT_TYPE);
            break;
        case 'r':
            NAME("record-route", SIP_HDR_RECORD_ROUTE);
            break;
        case 'f':
            NAME("feature-caps", SIP_HDR_FEATURE_CAPS);
            break;
        }
        break;
    case 13:
        switch (c) {
        case 'a':
            NAME("authorization", SIP_HDR_AUTHORIZATION);
            break;
        case 'p':
            NAME("proxy-require", SIP_HDR_PROXY_REQUIRE);
            break;
        }
        break;
    case 14:
        if (c == 'c')
            NAME("content-length", SIP_HDR_CONTENT_LENGTH);
        break;
    case 16:
        switch (c) {
        case 'c':
            NAME("content-encoding", SIP_HDR_CONTENT_ENCODING);
            break;
        case 'w':
            NAME("www-authenticate", SIP_HDR_WWW_AUTHENTICATE);
            break;
        }
        break;
    case 18:
        if (c == 'p')
            NAME("proxy-authenticate", SIP_HDR_PROXY_AUTHENTICATE);
        break;
    case 19:
        if (c == 'p')
            NAME("proxy-authorization", SIP_HDR_PROXY_AUTHORIZATION);
        break;
    }
    return SIP_HDR_OTHER;
#undef NAME
}

bool
sip_parse_uint(struct slice s, unsigned long long max, unsigned long long *out,
               bool *overflow)
{
    unsigned long long v = 0;

    *overflow = false;
    if (s.len == 0)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        unsigned d = (unsigned)((unsigned char)s.ptr[i] - '0');
        if (d > 9)
            return false;
        if (v > (max - d) / 10) {
            /* Keep scanning: "123x" is malformed, not an overflow. */
            for (size_t j = i + 1; j < s.len; j++)
                if ((unsigned)((unsigned char)s.ptr[j] - '0') > 9)
                    return false;
            *overflow = true;
            return false;
        }
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

bool
sip_cur_quoted(struct cursor *c, struct slice *inner)
{
    const char *s;

    if (!cur_eat(c, '"'))
        return false;
    s = c->p;
    while (c->p < c->end) {
        if (*c->p == '\\') {
            /* quoted-pair: the next byte is taken literally */
            if (c->end - c->p < 2)
                return false;
            c->p += 2;
            continue;
        }
        if (*c->p == '"') {
            *inner = slice_make(s, (size_t)(c->p - s));
            c->p++;
            return true;
        }
        c->p++;
    }
    return false;
}

/*
 * One parameter of ";name[=value]" lists. Returns 1 with name/value set,
 * 0 at the end, -1 on malformed input. Strict mode is RFC 3261
 * generic-param (token names, token/host/quoted values, a leading ';' on
 * every param). Lenient mode is for lookups in URI params too, whose
 * values may hold any paramchar: a value ends at ';' or white space, and
 * the first ';' may be missing.
 */
static int
param_next(struct cursor *c, struct slice *name, struct slice *value,
           bool strict, bool first)
{
    const char *s;

    cur_skip_ws(c);
    if (c->p >= c->end)
        return 0;
    if (!cur_eat(c, ';') && (strict || !first))
        return -1;
    cur_skip_ws(c);
    if (strict) {
        if (!cur_run(c, SIP_CT_TOKEN, name))
            return -1;
    } else {
        s = c->p;
        while (c->p < c->end && *c->p != '=' && *c->p != ';' &&
               !ct_is(*c->p, SIP_CT_WS))
            c->p++;
        *name = slice_make(s, (size_t)(c->p - s));
        if (name->len == 0)
            return -1;
    }
    cur_skip_ws(c);
    *value = slice_make(c->p, 0);
    if (!cur_eat(c, '='))
        return 1;
    cur_skip_ws(c);
    s = c->p;
    if (c->p < c->end && *c->p == '"') {
        struct slice inner;
        if (!sip_cur_quoted(c, &inner))
            return -1;
        *value = slice_make(s, (size_t)(c->p - s)); /* quotes kept */
        return 1;
    }
    if (strict) {
        if (!cur_run(c, SIP_CT_PVAL, value))
            return -1;
        return 1;
    }
    while (c->p < c->end && *c->p != ';' && !ct_is(*c->p, SIP_CT_WS))
        c->p++;
    *value = slice_make(s, (size_t)(c->p - s));
    return 1;
}

bool
sip_param_get(struct slice params, const char *name, struct slice *value)
{
    struct cursor c = cur_of(params);
    struct slice want = slice_cstr(name), n, v;
    bool first = true;

    if (!params.ptr)
        return false;
    while (param_next(&c, &n, &v, false, first) > 0) {
        first = false;
        if (slice_eq_nocase(n, want)) {
            *value = v;
            return true;
        }
    }
    return false;
}

static struct slice
trim_end(const char *s, const char *e)
{
    while (e > s && ct_is(e[-1], SIP_CT_WS))
        e--;
    return slice_make(s, (size_t)(e - s));
}

/* --- Via (RFC 3261 §20.42, RFC 3581 §5) -------------------------------- */

static bool
ipv6_ref(struct cursor *c, struct slice *host)
{
    const char *s;

    if (!cur_eat(c, '['))
        return false;
    s = c->p;
    while (c->p < c->end && *c->p != ']') {
        char ch = *c->p;
        bool hex =
            ct_is(ch, SIP_CT_DIGIT) || (lower((unsigned char)ch) >= 'a' &&
                                        lower((unsigned char)ch) <= 'f');
        if (!hex && ch != ':' && ch != '.')
            return false;
        c->p++;
    }
    if (c->p == s || !cur_eat(c, ']'))
        return false;
    *host = slice_make(s, (size_t)(c->p - 1 - s));
    return memchr(host->ptr, ':', host->len) != NULL;
}

static bool
port_value(struct slice s, uint16_t *port)
{
    unsigned long long v;
    bool ovf;

    if (s.len > 5 || !sip_parse_uint(s, 65535, &v, &ovf) || v == 0)
        return false;
    *port = (uint16_t)v;
    return true;
}

int
sip_via_parse(struct slice value, struct sip_via *out, struct sip_error *err)
{
    struct cursor c = cur_of(value), pc;
    struct slice proto, ver, port, n, v;
    bool seen_branch = false, seen_received = false;
    const char *start;
    int rc;

    memset(out, 0, sizeof(*out));
    cur_skip_ws(&c);
    start = c.p;
    /* sent-protocol: SLASH is SWS "/" SWS, so LWS may surround '/' */
    if (!cur_run(&c, SIP_CT_TOKEN, &proto) ||
        !slice_eq_nocase_cstr(proto, "SIP"))
        return sip_fail(err, 400, "Bad Via protocol");
    cur_skip_ws(&c);
    if (!cur_eat(&c, '/'))
        return sip_fail(err, 400, "Bad Via protocol");
    cur_skip_ws(&c);
    if (!cur_run(&c, SIP_CT_TOKEN, &ver) || !slice_eq_cstr(ver, "2.0"))
        return sip_fail(err, 400, "Bad Via version");
    cur_skip_ws(&c);
    if (!cur_eat(&c, '/'))
        return sip_fail(err, 400, "Bad Via protocol");
    cur_skip_ws(&c);
    if (!cur_run(&c, SIP_CT_TOKEN, &out->transport))
        return sip_fail(err, 400, "Bad Via transport");
    if (c.p >= c.end || !ct_is(*c.p, SIP_CT_WS))
        return sip_fail(err, 400, "Bad Via sent-by");
    cur_skip_ws(&c);
    if (c.p < c.end && *c.p == '[') {
        if (!ipv6_ref(&c, &out->host))
            return sip_fail(err, 400, "Bad Via sent-by");
    } else if (!cur_run(&c, SIP_CT_HOST, &out->host)) {
        return sip_fail(err, 400, "Bad Via sent-by");
    }
    cur_skip_ws(&c);
    if (cur_eat(&c, ':')) {
        cur_skip_ws(&c);
        cur_run(&c, SIP_CT_DIGIT, &port);
        if (!port_value(port, &out->port))
            return sip_fail(err, 400, "Bad Via port");
    }
    cur_skip_ws(&c);
    out->params = trim_end(c.p, c.end);
    out->raw = trim_end(start, c.end);
    if (out->params.len && out->params.ptr[0] != ';')
        return sip_fail(err, 400, "Bad Via sent-by");
    /* One pass validates the params and picks the ones we decode (the
     * first of each, as sip_param_get would); this is the hot path. */
    pc = cur_of(out->params);
    while ((rc = param_next(&pc, &n, &v, true, false)) > 0) {
        if (n.len == 6 && eq_lit(n.ptr, "branch", 6) && !seen_branch) {
            seen_branch = true;
            if (v.len == 0)
                return sip_fail(err, 400, "Bad Via branch");
            out->branch = v;
        } else if (n.len == 8 && eq_lit(n.ptr, "received", 8) &&
                   !seen_received) {
            seen_received = true;
            out->received = v;
        } else if (n.len == 5 && eq_lit(n.ptr, "rport", 5) && !out->rport) {
            out->rport = true;
            if (v.len && !port_value(v, &out->rport_value))
                return sip_fail(err, 400, "Bad Via rport");
        }
    }
    if (rc < 0)
        return sip_fail(err, 400, "Bad Via params");
    return 0;
}

/* --- name-addr / addr-spec (RFC 3261 §20.10, §20.20, §25.1) ----------- */

/*
 * Plausible URI text: scheme ":" then no white space, quotes or angle
 * brackets. In addr-spec form (no <>) a ',' or '?' is not allowed either
 * (§20: such URIs MUST be in <>; RFC 4475 regbadct). Full URI syntax is
 * sip_uri_parse()'s job, on demand.
 */
static bool
uri_text_ok(struct slice u, bool in_angle)
{
    size_t i = 0;

    if (u.len == 0 || !ct_is(u.ptr[0], SIP_CT_ALPHA))
        return false;
    while (i < u.len && ct_is(u.ptr[i], SIP_CT_SCHEME))
        i++;
    if (i >= u.len || u.ptr[i] != ':')
        return false;
    for (; i < u.len; i++) {
        char ch = u.ptr[i];
        if (ct_is(ch, SIP_CT_WS) || ch == '<' || ch == '>' || ch == '"')
            return false;
        if (!in_angle && (ch == ',' || ch == '?'))
            return false;
    }
    return true;
}

int
sip_name_addr_parse(struct slice value, struct sip_name_addr *out,
                    struct sip_error *err)
{
    struct cursor c = cur_of(value);
    const char *s, *gt;
    struct slice params, n, v;
    int rc;

    memset(out, 0, sizeof(*out));
    cur_skip_ws(&c);
    s = c.p;
    if (c.p < c.end && *c.p == '"') {
        if (!sip_cur_quoted(&c, &out->display))
            return sip_fail(err, 400, "Unterminated quoted string");
        cur_skip_ws(&c);
        if (!cur_eat(&c, '<'))
            return sip_fail(err, 400, "Bad display name");
    } else {
        /* display-name as *(token LWS) right before '<' (RFC 4475
         * lwsdisp: no LWS needed before '<'); otherwise addr-spec. */
        while (c.p < c.end && ct_is(*c.p, SIP_CT_TOKEN | SIP_CT_WS))
            c.p++;
        if (c.p < c.end && *c.p == '<') {
            out->display = trim_end(s, c.p);
            c.p++;
        } else {
            const char *semi = memchr(s, ';', (size_t)(c.end - s));
            const char *e = semi ? semi : c.end;
            out->uri = trim_end(s, e);
            if (!uri_text_ok(out->uri, false))
                return sip_fail(err, 400, "Bad addr-spec");
            params = slice_make(e, (size_t)(c.end - e));
            goto params;
        }
    }
    gt = memchr(c.p, '>', (size_t)(c.end - c.p));
    if (!gt)
        return sip_fail(err, 400, "Missing >");
    out->uri = slice_make(c.p, (size_t)(gt - c.p));
    /* RFC 4475 badaspec: LWS inside <> is rejected (our choice). */
    if (!uri_text_ok(out->uri, true))
        return sip_fail(err, 400, "Bad URI in <>");
    c.p = gt + 1;
    cur_skip_ws(&c);
    params = slice_make(c.p, (size_t)(c.end - c.p));
    if (params.len && params.ptr[0] != ';')
        return sip_fail(err, 400, "Junk after >");
params:
    out->params = trim_end(params.ptr, params.ptr + params.len);
    /* validate and find the (first) tag in one pass */
    c = cur_of(out->params);
    while ((rc = param_next(&c, &n, &v, true, false)) > 0)
        if (n.len == 3 && eq_lit(n.ptr, "tag", 3) && !out->tag.ptr)
            out->tag = v;
    if (rc < 0)
        return sip_fail(err, 400, "Bad header params");
    return 0;
}

/* --- CSeq (RFC 3261 §20.16) ------------------------------------------- */

int
sip_cseq_parse(struct slice value, struct sip_cseq *out, struct sip_error *err)
{
    struct cursor c = cur_of(value);
    struct slice num;
    unsigned long long n;
    bool ovf;

    memset(out, 0, sizeof(*out));
    cur_skip_ws(&c);
    /* §8.1.1.5: the number MUST be less than 2^31 */
    if (!cur_run(&c, SIP_CT_DIGIT, &num) ||
        !sip_parse_uint(num, 0x7fffffffULL, &n, &ovf))
        return sip_fail(err, 400, "Bad CSeq");
    if (c.p >= c.end || !ct_is(*c.p, SIP_CT_WS))
        return sip_fail(err, 400, "Bad CSeq");
    cur_skip_ws(&c);
    if (!cur_run(&c, SIP_CT_TOKEN, &out->method_name))
        return sip_fail(err, 400, "Bad CSeq");
    cur_skip_ws(&c);
    if (c.p != c.end)
        return sip_fail(err, 400, "Bad CSeq");
    out->num = (uint32_t)n;
    out->method = sip_method_parse(out->method_name);
    return 0;
}

/* --- Contact (RFC 3261 §20.10, RFC 5626 §10, RFC 8599) ---------------- */

/* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ) */
static bool
qvalue(struct slice v, int *milli)
{
    int q, scale = 100;

    if (v.len == 0 || v.len > 5 || (v.ptr[0] != '0' && v.ptr[0] != '1'))
        return false;
    q = (v.ptr[0] - '0') * 1000;
    if (v.len == 1)
        goto done;
    if (v.ptr[1] != '.')
        return false;
    for (size_t i = 2; i < v.len; i++, scale /= 10) {
        if (!ct_is(v.ptr[i], SIP_CT_DIGIT))
            return false;
        q += (v.ptr[i] - '0') * scale;
    }
    if (q > 1000)
        return false;
done:
    *milli = q;
    return true;
}

int
sip_contact_parse(struct slice value, struct sip_contact *out,
                  struct sip_error *err)
{
    struct slice t = slice_trim(value), v;
    unsigned long long n;
    bool ovf;

    memset(out, 0, sizeof(*out));
    out->expires = -1;
    out->q_milli = -1;
    if (t.len == 1 && t.ptr[0] == '*') {
        out->star = true;
        return 0;
    }
    if (sip_name_addr_parse(t, &out->na, err) < 0)
        return sip_fail(err, 400, "Bad Contact");
    if (sip_param_get(out->na.params, "expires", &v)) {
        if (sip_parse_uint(v, 0xffffffffULL, &n, &ovf))
            out->expires = (long)n;
        else
            out->expires = ovf ? 0xffffffffL : 3600;
    }
    if (sip_param_get(out->na.params, "q", &v) && !qvalue(v, &out->q_milli))
        return sip_fail(err, 400, "Bad Contact q");
    if (sip_param_get(out->na.params, "+sip.instance", &v)) {
        if (v.len >= 2 && v.ptr[0] == '"' && v.ptr[v.len - 1] == '"')
            v = slice_make(v.ptr + 1, v.len - 2);
        if (v.len >= 2 && v.ptr[0] == '<' && v.ptr[v.len - 1] == '>')
            v = slice_make(v.ptr + 1, v.len - 2);
        out->instance = v;
    }
    if (sip_param_get(out->na.params, "reg-id", &v)) {
        if (!sip_parse_uint(v, 0x7fffffffULL, &n, &ovf) || n == 0)
            return sip_fail(err, 400, "Bad Contact reg-id");
        out->reg_id = (uint32_t)n;
    }
    return 0;
}
