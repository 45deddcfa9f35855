/*
 * sip/msg: one-pass message splitter and the always-decoded headers; see
 * msg.h for the contract.
 *
 * The pass: skip leading CRLFs, cut the start line, then for each header
 * line find its end with memchr('\n'), extending over continuation lines
 * (a line starting with SP/HTAB is folding), recognise the name by length
 * and first character (hdr.c) and store three slices. The header array is
 * built on the stack (SIP_MAX_HEADERS entries, ~7 KB) and copied once into
 * the arena with its exact size, so a typical message (< 18 headers) costs
 * one bump allocation and no malloc. After the pass the required headers
 * are decoded in a fixed order (Via, From, To, Call-ID, CSeq, Max-Forwards,
 * Content-Length), so the reason for a message with several faults does
 * not depend on header order (RFC 4475 scalar02 answers "Bad CSeq").
 *
 * Load: every received message goes through here once; everything else is
 * lazy. Measured in bench/parse_bench.c.
 */
#include "sip/msg.h"

#include <stdlib.h>
#include <string.h>

#include "sip/msg_int.h"

static const struct {
    const char *name;
    size_t len;
} method_names[] = {
    [SIP_METHOD_UNKNOWN] = {"UNKNOWN", 7},
    [SIP_METHOD_INVITE] = {"INVITE", 6},
    [SIP_METHOD_ACK] = {"ACK", 3},
    [SIP_METHOD_BYE] = {"BYE", 3},
    [SIP_METHOD_CANCEL] = {"CANCEL", 6},
    [SIP_METHOD_REGISTER] = {"REGISTER", 8},
    [SIP_METHOD_OPTIONS] = {"OPTIONS", 7},
    [SIP_METHOD_INFO] = {"INFO", 4},
    [SIP_METHOD_UPDATE] = {"UPDATE", 6},
    [SIP_METHOD_PRACK] = {"PRACK", 5},
    [SIP_METHOD_SUBSCRIBE] = {"SUBSCRIBE", 9},
    [SIP_METHOD_NOTIFY] = {"NOTIFY", 6},
    [SIP_METHOD_MESSAGE] = {"MESSAGE", 7},
    [SIP_METHOD_REFER] = {"REFER", 5},
    [SIP_METHOD_PUBLISH] = {"PUBLISH", 7},
};

enum sip_method
sip_method_parse(struct slice s)
{
    /* Methods are case-sensitive (§7.1): plain memcmp after a cheap
     * length + first byte filter. */
    if (s.len < 3 || s.len > 9)
        return SIP_METHOD_UNKNOWN;
    for (size_t i = SIP_METHOD_INVITE;
         i < sizeof(method_names) / sizeof(method_names[0]); i++) {
        if (method_names[i].len == s.len &&
            method_names[i].name[0] == s.ptr[0] &&
            memcmp(method_names[i].name, s.ptr, s.len) == 0)
            return (enum sip_method)i;
    }
    return SIP_METHOD_UNKNOWN;
}

const char *
sip_method_name(enum sip_method m)
{
    if ((size_t)m >= sizeof(method_names) / sizeof(method_names[0]))
        return method_names[SIP_METHOD_UNKNOWN].name;
    return method_names[m].name;
}

const char *
sip_reason_phrase(int status)
{
    switch (status) {
    case 100:
        return "Trying";
    case 180:
        return "Ringing";
    case 181:
        return "Call Is Being Forwarded";
    case 182:
        return "Queued";
    case 183:
        return "Session Progress";
    case 199:
        return "Early Dialog Terminated";
    case 200:
        return "OK";
    case 202:
        return "Accepted";
    case 204:
        return "No Notification";
    case 300:
        return "Multiple Choices";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Moved Temporarily";
    case 305:
        return "Use Proxy";
    case 380:
        return "Alternative Service";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 407:
        return "Proxy Authentication Required";
    case 408:
        return "Request Timeout";
    case 410:
        return "Gone";
    case 412:
        return "Conditional Request Failed";
    case 413:
        return "Request Entity Too Large";
    case 414:
        return "Request-URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Unsupported URI Scheme";
    case 420:
        return "Bad Extension";
    case 421:
        return "Extension Required";
    case 423:
        return "Interval Too Brief";
    case 428:
        return "Use Identity Header";
    case 429:
        return "Provide Referrer Identity";
    case 430:
        return "Flow Failed";
    case 439:
        return "First Hop Lacks Outbound Support";
    case 440:
        return "Max-Breadth Exceeded";
    case 480:
        return "Temporarily Unavailable";
    case 481:
        return "Call/Transaction Does Not Exist";
    case 482:
        return "Loop Detected";
    case 483:
        return "Too Many Hops";
    case 484:
        return "Address Incomplete";
    case 485:
        return "Ambiguous";
    case 486:
        return "Busy Here";
    case 487:
        return "Request Terminated";
    case 488:
        return "Not Acceptable Here";
    case 489:
        return "Bad Event";
    case 491:
        return "Request Pending";
    case 493:
        return "Undecipherable";
    case 494:
        return "Security Agreement Required";
    case 500:
        return "Server Internal Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Server Time-out";
    case 505:
        return "Version Not Supported";
    case 513:
        return "Message Too Large";
    case 555:
        return "Push Notification Service Not Supported";
    case 580:
        return "Precondition Failure";
    case 600:
        return "Busy Everywhere";
    case 603:
        return "Decline";
    case 604:
        return "Does Not Exist Anywhere";
    case 606:
        return "Not Acceptable";
    case 607:
        return "Unwanted";
    }
    /* Unknown codes are treated as x00 of their class (§21). */
    switch (status / 100) {
    case 1:
        return "Trying";
    case 2:
        return "OK";
    case 3:
        return "Multiple Choices";
    case 4:
        return "Bad Request";
    case 5:
        return "Server Internal Error";
    case 6:
        return "Busy Everywhere";
    }
    return "Unknown";
}

/* --- start line --------------------------------------------------------- */

static bool
is_sip20(struct slice v)
{
    return v.len == 7 && slice_eq_nocase_cstr(v, "SIP/2.0");
}

static bool
is_sip_version(struct slice v)
{
    return v.len >= 4 && slice_eq_nocase_cstr(slice_make(v.ptr, 4), "SIP/");
}

static int
parse_status_line(struct sip_msg *m, struct slice line, struct sip_error *err)
{
    const char *p = line.ptr + 7, *e = line.ptr + line.len;

    /* "SIP/2.0" SP 3DIGIT SP Reason-Phrase; the reason may be empty
     * (RFC 4475 noreason) and we also take a missing SP after the code. */
    if (!is_sip20(slice_make(line.ptr, 7)))
        return sip_fail(err, 505, "Version Not Supported");
    if (p >= e || *p != ' ')
        return sip_fail(err, 400, "Bad status line");
    p++;
    if (e - p < 3 || !ct_is(p[0], SIP_CT_DIGIT) || !ct_is(p[1], SIP_CT_DIGIT) ||
        !ct_is(p[2], SIP_CT_DIGIT) || (e - p > 3 && p[3] != ' '))
        return sip_fail(err, 400, "Bad status code");
    m->status = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
    if (m->status < 100 || m->status > 699)
        return sip_fail(err, 400, "Bad status code");
    p += 3;
    if (p < e)
        p++;
    m->reason = slice_make(p, (size_t)(e - p));
    m->is_request = false;
    return 0;
}

/*
 * Request-Line = Method SP Request-URI SP SIP-Version. We tolerate runs of
 * SP between the elements and trailing SP (RFC 4475 lwsstart, trws: the
 * RFC allows either choice), but LWS inside the URI is an error
 * (lwsruri), which we find because the URI is then more than one word.
 */
static int
parse_request_line(struct sip_msg *m, struct slice line, struct sip_error *err)
{
    struct cursor c = cur_of(line);
    const char *e = c.end, *v, *u;
    struct slice ver, uri;

    if (!cur_run(&c, SIP_CT_TOKEN, &m->method_name) || c.p >= e || *c.p != ' ')
        return sip_fail(err, 400, "Bad request line");
    m->method = sip_method_parse(m->method_name);
    while (e > c.p && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    v = e;
    while (v > c.p && v[-1] != ' ' && v[-1] != '\t')
        v--;
    ver = slice_make(v, (size_t)(e - v));
    u = c.p;
    while (u < v && *u == ' ')
        u++;
    uri = slice_make(u, (size_t)(v - u));
    while (uri.len &&
           (uri.ptr[uri.len - 1] == ' ' || uri.ptr[uri.len - 1] == '\t'))
        uri.len--;
    if (!is_sip_version(ver))
        return sip_fail(err, 400, "Bad request line");
    if (!is_sip20(ver))
        return sip_fail(err, 505, "Version Not Supported");
    if (uri.len == 0)
        return sip_fail(err, 400, "Bad Request-URI");
    for (size_t i = 0; i < uri.len; i++)
        if (ct_is(uri.ptr[i], SIP_CT_WS) || uri.ptr[i] == '<' ||
            uri.ptr[i] == '>')
            return sip_fail(err, 400, "Bad Request-URI");
    /* scheme ":" ...; the full parse is sip_request_check()'s */
    {
        size_t i = 0;
        if (!ct_is(uri.ptr[0], SIP_CT_ALPHA))
            return sip_fail(err, 400, "Bad Request-URI");
        while (i < uri.len && ct_is(uri.ptr[i], SIP_CT_SCHEME))
            i++;
        if (i >= uri.len || uri.ptr[i] != ':')
            return sip_fail(err, 400, "Bad Request-URI");
    }
    m->ruri = uri;
    m->is_request = true;
    return 0;
}

/* --- header pass -------------------------------------------------------- */

/* Single-value headers: a second instance is a 400 (RFC 4475 multi01). */
static const char *const dup_reason[SIP_HDR__COUNT] = {
    [SIP_HDR_FROM] = "Duplicate From",
    [SIP_HDR_TO] = "Duplicate To",
    [SIP_HDR_CALL_ID] = "Duplicate Call-ID",
    [SIP_HDR_CSEQ] = "Duplicate CSeq",
    [SIP_HDR_MAX_FORWARDS] = "Duplicate Max-Forwards",
    [SIP_HDR_CONTENT_LENGTH] = "Duplicate Content-Length",
};

/*
 * Cut one header starting at p (not at a blank line). On success *next is
 * the start of the following line. Folding: a line break followed by SP or
 * HTAB continues the value. Returns 0, or -1 with err set.
 */
static int
cut_header(const char *p, const char *end, struct sip_hdr *h, const char **next,
           struct sip_error *err)
{
    struct cursor c = {p, end};
    const char *vstart, *lf, *vend;

    if (!cur_run(&c, SIP_CT_TOKEN, &h->name))
        return sip_fail(err, 400, "Bad header name");
    while (c.p < end && (*c.p == ' ' || *c.p == '\t'))
        c.p++;
    if (!cur_eat(&c, ':'))
        return sip_fail(err, 400, "Bad header line");
    vstart = c.p;
    for (;;) {
        lf = memchr(c.p, '\n', (size_t)(end - c.p));
        if (!lf)
            return sip_fail(err, 400, "Truncated header");
        c.p = lf + 1;
        if (c.p >= end || (*c.p != ' ' && *c.p != '\t'))
            break;
    }
    vend = lf;
    if (vend > vstart && vend[-1] == '\r')
        vend--;
    h->value = slice_trim(slice_make(vstart, (size_t)(vend - vstart)));
    if (h->value.len == 0)
        h->value.ptr = vstart; /* keep empty values inside the buffer */
    h->raw = slice_make(p, (size_t)(c.p - p));
    h->id = sip_hdr_lookup(h->name.ptr, h->name.len);
    *next = c.p;
    return 0;
}

/* Content-Length value: 1*DIGIT (leading zeros allowed). */
static int
content_length(struct slice v, long *out, struct sip_error *err)
{
    unsigned long long n;
    bool ovf;

    if (!sip_parse_uint(v, 0x7fffffffULL, &n, &ovf))
        return sip_fail(err, 400, "Malformed Content-Length");
    *out = (long)n;
    return 0;
}

static bool
call_id_ok(struct slice v)
{
    /* word ["@" word]: no white space or controls inside */
    if (v.len == 0)
        return false;
    for (size_t i = 0; i < v.len; i++) {
        unsigned char ch = (unsigned char)v.ptr[i];
        if (ch <= ' ' || ch == 0x7f)
            return false;
    }
    return true;
}

static const struct sip_hdr *
hdr_at(const struct sip_msg *m, enum sip_hdr_id id)
{
    int16_t i = m->first[id];
    return i < 0 ? NULL : &m->hdrs[i];
}

/* Decode the headers every layer needs; fixed order, see file comment. */
static int
decode_required(struct sip_msg *m, struct sip_error *err)
{
    const struct sip_hdr *h;
    struct sip_hdr_iter it;
    struct slice v;
    unsigned long long n;
    bool ovf;

    sip_hdr_iter_init(&it, m, SIP_HDR_VIA);
    if (!sip_hdr_iter_next(&it, &v))
        return sip_fail(err, 400, "Missing Via");
    if (sip_via_parse(v, &m->via, err) < 0)
        return -1;
    m->via_count = 1;
    while (sip_hdr_iter_next(&it, &v))
        m->via_count++;

    if (!(h = hdr_at(m, SIP_HDR_FROM)))
        return sip_fail(err, 400, "Missing From");
    if (sip_name_addr_parse(h->value, &m->from, err) < 0)
        return sip_fail(err, 400, "Bad From");
    if (!(h = hdr_at(m, SIP_HDR_TO)))
        return sip_fail(err, 400, "Missing To");
    if (sip_name_addr_parse(h->value, &m->to, err) < 0)
        return sip_fail(err, 400, "Bad To");
    if (!(h = hdr_at(m, SIP_HDR_CALL_ID)))
        return sip_fail(err, 400, "Missing Call-ID");
    if (!call_id_ok(h->value))
        return sip_fail(err, 400, "Bad Call-ID");
    m->call_id = h->value;
    if (!(h = hdr_at(m, SIP_HDR_CSEQ)))
        return sip_fail(err, 400, "Missing CSeq");
    if (sip_cseq_parse(h->value, &m->cseq, err) < 0)
        return -1;
    if (m->is_request && !slice_eq(m->cseq.method_name, m->method_name))
        return sip_fail(err, 400, "CSeq method mismatch");

    m->max_forwards = -1;
    if ((h = hdr_at(m, SIP_HDR_MAX_FORWARDS))) {
        if (!sip_parse_uint(h->value, 255, &n, &ovf))
            return sip_fail(err, 400, "Bad Max-Forwards");
        m->max_forwards = (int)n;
    }
    m->content_length = -1;
    if ((h = hdr_at(m, SIP_HDR_CONTENT_LENGTH)) &&
        content_length(h->value, &m->content_length, err) < 0)
        return -1;
    /* Expires is not required; garbage is "absent" (-1), huge values are
     * clamped (§20.19 allows 2^32-1 at most; RFC 4475 scalar02). */
    m->expires = -1;
    if ((h = hdr_at(m, SIP_HDR_EXPIRES))) {
        if (sip_parse_uint(h->value, 0xffffffffULL, &n, &ovf))
            m->expires = (long)n;
        else if (ovf)
            m->expires = 0xffffffffL;
    }
    return 0;
}

int
sip_msg_parse(struct sip_msg *m, const char *buf, size_t len, struct arena *a,
              struct sip_error *err)
{
    struct sip_hdr hdrs[SIP_MAX_HEADERS];
    const char *p = buf, *end = buf + len, *lf, *body;
    struct slice line;
    size_t n = 0, avail;
    int rc;

    memset(m, 0, sizeof(*m));
    memset(m->first, 0xff, sizeof(m->first)); /* all -1 */
    m->buf = buf;
    m->max_forwards = -1;
    m->content_length = -1;
    m->expires = -1;
    if (len > SIP_MAX_MSG_LEN)
        return sip_fail(err, 513, "Message Too Large");
    /* §7.5: CRLFs before the start line are ignored. */
    while (p < end && (*p == '\r' || *p == '\n'))
        p++;
    if (p == end)
        return sip_fail(err, 400, "Empty message");

    lf = memchr(p, '\n', (size_t)(end - p));
    if (!lf)
        return sip_fail(err, 400, "Truncated start line");
    line = slice_make(p, (size_t)(lf - p));
    if (line.len && line.ptr[line.len - 1] == '\r')
        line.len--;
    if (line.len >= 7 && memcmp(line.ptr, "SIP/", 4) == 0)
        rc = parse_status_line(m, line, err);
    else
        rc = parse_request_line(m, line, err);
    if (rc < 0)
        return rc;
    p = lf + 1;

    for (;;) {
        const char *next;

        if (p >= end) {
            /* Datagram that ends right after a complete header line with
             * no blank line: be lenient and take it as "no body". */
            body = end;
            break;
        }
        if (*p == '\n') {
            body = p + 1;
            break;
        }
        if (*p == '\r' && p + 1 < end && p[1] == '\n') {
            body = p + 2;
            break;
        }
        if (*p == ' ' || *p == '\t')
            return sip_fail(err, 400, "Bad header folding");
        if (n == SIP_MAX_HEADERS)
            return sip_fail(err, 400, "Too many headers");
        if (cut_header(p, end, &hdrs[n], &next, err) < 0)
            return -1;
        {
            enum sip_hdr_id id = hdrs[n].id;
            if (m->first[id] < 0)
                m->first[id] = (int16_t)n;
            else if (dup_reason[id])
                return sip_fail(err, 400, dup_reason[id]);
        }
        n++;
        p = next;
    }
    m->first[SIP_HDR_OTHER] = -1; /* "first unknown header" means nothing */

    m->hdrs = arena_alloc(a, (n ? n : 1) * sizeof(struct sip_hdr));
    if (!m->hdrs)
        return sip_fail(err, 513, "Message Too Large");
    memcpy(m->hdrs, hdrs, n * sizeof(struct sip_hdr));
    m->hdr_count = n;

    if (decode_required(m, err) < 0)
        return -1;

    /* §18.3 datagram framing (RFC 4475 dblreq, clerr). */
    avail = (size_t)(end - body);
    if (m->content_length >= 0) {
        if ((size_t)m->content_length > avail)
            return sip_fail(err, 400, "Body shorter than Content-Length");
        m->body = slice_make(body, (size_t)m->content_length);
    } else {
        m->body = slice_make(body, avail);
    }
    m->len = (size_t)(m->body.ptr + m->body.len - buf);
    return 0;
}

/* --- copy by rebasing ---------------------------------------------------- */

struct rebase {
    const char *from; /* the old buffer */
    size_t len;
    const char *to; /* the copy */
    bool bad;
};

/* Move s from the old buffer into the copy. An empty slice outside the
 * buffer (NULL, or a static "") is kept as it is: sip_msg_parse makes the
 * same one from the copy; a non-empty one outside cannot be rebased. */
static void
rebase(struct rebase *r, struct slice *s)
{
    uintptr_t p = (uintptr_t)s->ptr, b = (uintptr_t)r->from;

    if (p >= b && p - b <= r->len && s->len <= r->len - (p - b))
        s->ptr = r->to + (p - b);
    else if (s->len != 0)
        r->bad = true;
}

int
sip_msg_rebase(struct sip_msg *dst, const struct sip_msg *src,
               const char *buf, size_t len, struct arena *a)
{
    struct rebase r = {src->buf, len, buf, false};
    struct slice *s[] = {
        &dst->method_name,     &dst->ruri,          &dst->reason,
        &dst->body,            &dst->call_id,       &dst->cseq.method_name,
        &dst->via.transport,   &dst->via.host,      &dst->via.branch,
        &dst->via.received,    &dst->via.params,    &dst->via.raw,
        &dst->from.display,    &dst->from.uri,      &dst->from.params,
        &dst->from.tag,        &dst->to.display,    &dst->to.uri,
        &dst->to.params,       &dst->to.tag,
    };
    struct sip_hdr *h;

    if (src->len > len || src->hdr_count > SIP_MAX_HEADERS)
        return -1;
    h = arena_alloc(a, (src->hdr_count ? src->hdr_count : 1) * sizeof(*h));
    if (h == NULL)
        return -1;
    memcpy(dst, src, sizeof(*dst));
    dst->buf = buf;
    dst->hdrs = h;
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
        rebase(&r, s[i]);
    for (size_t i = 0; i < src->hdr_count; i++) {
        h[i] = src->hdrs[i];
        rebase(&r, &h[i].name);
        rebase(&r, &h[i].value);
        rebase(&r, &h[i].raw);
    }
    return r.bad ? -1 : 0;
}

/* --- lookup and iteration ------------------------------------------------ */

const struct sip_hdr *
sip_msg_hdr(const struct sip_msg *m, enum sip_hdr_id id)
{
    if ((unsigned)id >= SIP_HDR__COUNT || id == SIP_HDR_OTHER)
        return NULL;
    return hdr_at(m, id);
}

const struct sip_hdr *
sip_msg_hdr_name(const struct sip_msg *m, struct slice name)
{
    enum sip_hdr_id id = sip_hdr_lookup(name.ptr, name.len);

    if (id != SIP_HDR_OTHER)
        return hdr_at(m, id);
    for (size_t i = 0; i < m->hdr_count; i++)
        if (m->hdrs[i].id == SIP_HDR_OTHER &&
            slice_eq_nocase(m->hdrs[i].name, name))
            return &m->hdrs[i];
    return NULL;
}

size_t
sip_msg_hdr_count(const struct sip_msg *m, enum sip_hdr_id id)
{
    size_t n = 0;

    for (size_t i = 0; i < m->hdr_count; i++)
        n += m->hdrs[i].id == id;
    return n;
}

void
sip_hdr_iter_init(struct sip_hdr_iter *it, const struct sip_msg *m,
                  enum sip_hdr_id id)
{
    memset(it, 0, sizeof(*it));
    it->m = m;
    it->id = id;
    if (id != SIP_HDR_OTHER && (unsigned)id < SIP_HDR__COUNT &&
        m->first[id] >= 0)
        it->idx = (size_t)m->first[id];
}

/* Split off the next comma-separated element of *rest; commas inside
 * quoted strings and <...> do not split. */
static struct slice
split_comma(struct slice *rest)
{
    const char *p = rest->ptr, *e = rest->ptr + rest->len, *s = p;
    bool quoted = false, angle = false;

    /* Most values are one element (a Via, a Contact): no comma at all
     * means no split, found by memchr rather than byte by byte. */
    if (!memchr(p, ',', rest->len)) {
        *rest = slice_make(e, 0);
        return slice_make(s, (size_t)(e - s));
    }
    for (; p < e; p++) {
        char ch = *p;
        if (quoted) {
            if (ch == '\\' && p + 1 < e)
                p++;
            else if (ch == '"')
                quoted = false;
        } else if (ch == '"') {
            quoted = true;
        } else if (ch == '<') {
            angle = true;
        } else if (ch == '>') {
            angle = false;
        } else if (ch == ',' && !angle) {
            *rest = slice_make(p + 1, (size_t)(e - p - 1));
            return slice_make(s, (size_t)(p - s));
        }
    }
    *rest = slice_make(e, 0);
    return slice_make(s, (size_t)(e - s));
}

bool
sip_hdr_iter_next(struct sip_hdr_iter *it, struct slice *value)
{
    for (;;) {
        while (it->in_hdr && it->rest.len) {
            /* Empty elements ("a,,b") are skipped, as #rule allows. */
            struct slice v = slice_trim(split_comma(&it->rest));
            if (v.len) {
                *value = v;
                return true;
            }
        }
        it->in_hdr = false;
        while (it->idx < it->m->hdr_count && it->m->hdrs[it->idx].id != it->id)
            it->idx++;
        if (it->idx >= it->m->hdr_count)
            return false;
        it->rest = it->m->hdrs[it->idx].value;
        it->in_hdr = true;
        it->idx++;
    }
}

/* --- stream framing (RFC 3261 §18.3, RFC 5626 §4.4.1) -------------------- */

size_t
sip_skip_keepalive(const char *buf, size_t len)
{
    size_t i = 0;

    while (i < len && (buf[i] == '\r' || buf[i] == '\n'))
        i++;
    return i;
}

long
sip_frame(const char *buf, size_t len, struct sip_error *err)
{
    const char *p = buf, *end = buf + len, *hend = NULL, *lf;
    long cl = -1;
    unsigned long long n;
    bool ovf;

    p += sip_skip_keepalive(buf, len);
    if (p == end)
        return 0;
    /* Find the blank line: an LF followed by LF or CRLF. */
    for (const char *q = p; (lf = memchr(q, '\n', (size_t)(end - q)));
         q = lf + 1) {
        if (lf + 1 < end && lf[1] == '\n') {
            hend = lf + 2;
            break;
        }
        if (lf + 2 < end && lf[1] == '\r' && lf[2] == '\n') {
            hend = lf + 3;
            break;
        }
    }
    if (!hend) {
        if (len >= SIP_MAX_MSG_LEN) {
            sip_fail(err, 513, "Message Too Large");
            return -1;
        }
        return 0;
    }
    /* Scan header lines (skipping the start line) for Content-Length. */
    lf = memchr(p, '\n', (size_t)(hend - p));
    for (const char *line = lf + 1; line < hend;) {
        const char *nl = memchr(line, '\n', (size_t)(hend - line));
        const char *vend, *colon;
        struct cursor c = {line, nl};
        struct slice name;

        if (!nl)
            break;
        /* extend over continuation lines */
        while (nl && nl + 1 < hend && (nl[1] == ' ' || nl[1] == '\t'))
            nl = memchr(nl + 1, '\n', (size_t)(hend - nl - 1));
        if (!nl)
            break; /* cannot happen: hend - 1 is an LF */
        vend = nl;
        if (cur_run(&c, SIP_CT_TOKEN, &name) &&
            sip_hdr_lookup(name.ptr, name.len) == SIP_HDR_CONTENT_LENGTH) {
            while (c.p < vend && (*c.p == ' ' || *c.p == '\t'))
                c.p++;
            colon = c.p;
            if (colon < vend && *colon == ':') {
                struct slice v = slice_trim(
                    slice_make(colon + 1, (size_t)(vend - colon - 1)));
                if (cl >= 0) {
                    sip_fail(err, 400, "Duplicate Content-Length");
                    return -1;
                }
                if (!sip_parse_uint(v, SIP_MAX_MSG_LEN, &n, &ovf)) {
                    sip_fail(err, ovf ? 513 : 400,
                             ovf ? "Message Too Large"
                                 : "Malformed Content-Length");
                    return -1;
                }
                cl = (long)n;
            }
        }
        line = nl + 1;
    }
    if (cl < 0) {
        sip_fail(err, 400, "Missing Content-Length");
        return -1;
    }
    if ((size_t)(hend - buf) + (size_t)cl > SIP_MAX_MSG_LEN) {
        sip_fail(err, 513, "Message Too Large");
        return -1;
    }
    if ((size_t)(end - hend) < (size_t)cl)
        return 0;
    return (long)((size_t)(hend - buf) + (size_t)cl);
}

/* --- fuzzing invariant -----------------------------------------------------
 */

static void
check_in(struct slice s, const char *buf, size_t len)
{
    if (s.len == 0)
        return;
    if (!s.ptr || s.ptr < buf || s.len > len ||
        (size_t)(s.ptr - buf) > len - s.len)
        abort();
}

void
sip_msg_assert_within(const struct sip_msg *m, const char *buf, size_t len)
{
    if (m->buf != buf || m->len > len)
        abort();
    check_in(m->method_name, buf, len);
    check_in(m->ruri, buf, len);
    check_in(m->reason, buf, len);
    check_in(m->body, buf, len);
    check_in(m->call_id, buf, len);
    check_in(m->cseq.method_name, buf, len);
    check_in(m->via.transport, buf, len);
    check_in(m->via.host, buf, len);
    check_in(m->via.branch, buf, len);
    check_in(m->via.received, buf, len);
    check_in(m->via.params, buf, len);
    check_in(m->via.raw, buf, len);
    const struct sip_name_addr *na[2] = {&m->from, &m->to};
    for (int i = 0; i < 2; i++) {
        check_in(na[i]->display, buf, len);
        check_in(na[i]->uri, buf, len);
        check_in(na[i]->params, buf, len);
        check_in(na[i]->tag, buf, len);
    }
    if (m->hdr_count > SIP_MAX_HEADERS)
        abort();
    for (size_t i = 0; i < m->hdr_count; i++) {
        const struct sip_hdr *h = &m->hdrs[i];
        if ((unsigned)h->id >= SIP_HDR__COUNT)
            abort();
        check_in(h->name, buf, len);
        check_in(h->value, buf, len);
        check_in(h->raw, buf, len);
        /* name and value lie inside raw, raw ends before the body */
        if (h->name.ptr != h->raw.ptr || h->value.ptr < h->raw.ptr ||
            h->value.ptr + h->value.len > h->raw.ptr + h->raw.len ||
            h->raw.ptr + h->raw.len > m->body.ptr)
            abort();
    }
    for (int id = 1; id < SIP_HDR__COUNT; id++)
        if (m->first[id] >= 0 && ((size_t)m->first[id] >= m->hdr_count ||
                                  (int)m->hdrs[m->first[id]].id != id))
            abort();
}
