/*
 * sip/build: outgoing responses, forwarded requests/responses, CANCEL and
 * ACK, built into a struct buf.
 *
 * Forwarding is splicing (style.md §6): the parser's hdrs[i].raw spans a
 * whole header line including its CRLF, so a forwarded message is the
 * original bytes copied range by range, with the few edited headers
 * replaced, skipped or preceded by new lines. Bytes we do not edit are
 * never re-serialised, which keeps unknown headers, odd spacing and
 * compact names exactly as the sender wrote them.
 *
 * Every builder appends to the caller's buffer and, if the buffer's cap is
 * hit, rolls it back to where it was, so a half-built message can never be
 * sent. One message is a few hundred bytes to a few KB; the cost is the
 * copy.
 */
#include "sip/build.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#ifndef PUSHPBX_VERSION
#define PUSHPBX_VERSION "0"
#endif

#define VIA_APPEND_MAX 8

/* Append writer: the first error sticks, later writes are skipped. */
struct wr {
    struct buf *b;
    size_t start;
    int rc;
};

static void
wr_init(struct wr *w, struct buf *b)
{
    w->b = b;
    w->start = b->len;
    w->rc = 0;
}

static void
put(struct wr *w, const char *p, size_t n)
{
    if (w->rc == 0 && n > 0)
        w->rc = buf_append(w->b, p, n);
}

static void
put_s(struct wr *w, struct slice s)
{
    put(w, s.ptr, s.len);
}

static void
put_c(struct wr *w, const char *s)
{
    put(w, s, strlen(s));
}

/* Copy the bytes [from, to) of the message. */
static void
put_range(struct wr *w, const char *from, const char *to)
{
    if (to > from)
        put(w, from, (size_t)(to - from));
}

static void
put_u(struct wr *w, unsigned long v)
{
    char tmp[20];

    put(w, tmp, fmt_u64(tmp, v)); /* no printf: two of these a response */
}

static int
wr_finish(struct wr *w)
{
    if (w->rc != 0) {
        w->b->len = w->start;
        if (w->b->data)
            w->b->data[w->start] = '\0';
    }
    return w->rc;
}

static bool
is_lws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static struct slice
trim(struct slice s)
{
    while (s.len > 0 && is_lws(s.ptr[0])) {
        s.ptr++;
        s.len--;
    }
    while (s.len > 0 && is_lws(s.ptr[s.len - 1]))
        s.len--;
    return s;
}

/* End of the first value of a comma-separated header value: the first ','
 * outside quotes and <> (a URI may hold ',' in its headers part). */
static const char *
first_value_end(struct slice v)
{
    const char *p = v.ptr, *end = v.ptr + v.len;
    bool quoted = false, angle = false;

    for (; p < end; p++) {
        if (quoted) {
            if (*p == '\\' && p + 1 < end)
                p++;
            else if (*p == '"')
                quoted = false;
        } else if (*p == '"') {
            quoted = true;
        } else if (*p == '<') {
            angle = true;
        } else if (*p == '>') {
            angle = false;
        } else if (*p == ',' && !angle) {
            return p;
        }
    }
    return end;
}

static const struct sip_hdr *
hdr_at(const struct sip_msg *m, enum sip_hdr_id id)
{
    int i = m->first[id];

    return (i >= 0 && (size_t)i < m->hdr_count) ? &m->hdrs[i] : NULL;
}

/* value must lie inside raw for the splicing arithmetic. */
static bool
hdr_sane(const struct sip_hdr *h)
{
    return h->value.ptr >= h->raw.ptr &&
           h->value.ptr + h->value.len <= h->raw.ptr + h->raw.len;
}

/* The top Via value, trimmed. */
static int
top_via(const struct sip_msg *m, struct slice *out)
{
    const struct sip_hdr *h = hdr_at(m, SIP_HDR_VIA);

    if (!h)
        return -EINVAL;
    const char *e = first_value_end(h->value);
    *out = trim(slice_make(h->value.ptr, (size_t)(e - h->value.ptr)));
    return out->len ? 0 : -EINVAL;
}

/* Header end: where the blank line starts. */
static const char *
headers_end(const struct sip_msg *m, const char *after_start_line)
{
    if (m->hdr_count == 0)
        return after_start_line;
    const struct sip_hdr *h = &m->hdrs[m->hdr_count - 1];
    return h->raw.ptr + h->raw.len;
}

/* Start line of m as written, with its CRLF. */
static struct slice
start_line(const struct sip_msg *m)
{
    const char *s = m->is_request ? m->method_name.ptr : m->buf;
    const char *end = m->buf + m->len;

    if (!s)
        s = m->buf;
    /* Skip CRLF keep-alives the parser may have stepped over. */
    while (s < end && (*s == '\r' || *s == '\n'))
        s++;
    const char *nl = memchr(s, '\n', (size_t)(end - s));
    return slice_make(s, nl ? (size_t)(nl + 1 - s) : (size_t)(end - s));
}

/* ---- responses -------------------------------------------------------- */

struct vparam {
    struct slice name; /* trimmed */
    struct slice text; /* as written, without the ';' */
};

/* Split ";a=b;c" into at most max params. Returns the count or -1. */
static int
split_params(struct slice s, struct vparam *out, int max)
{
    const char *p = s.ptr, *end = s.ptr + s.len;
    int n = 0;

    while (p < end) {
        const char *q = p;
        bool quoted = false;
        while (q < end && (quoted || *q != ';')) {
            if (*q == '"')
                quoted = !quoted;
            q++;
        }
        struct slice text = slice_make(p, (size_t)(q - p));
        if (trim(text).len > 0) {
            const char *eq = memchr(text.ptr, '=', text.len);
            if (n == max)
                return -1;
            out[n].text = text;
            out[n].name = trim(
                slice_make(text.ptr, eq ? (size_t)(eq - text.ptr) : text.len));
            n++;
        }
        p = q < end ? q + 1 : end;
    }
    return n;
}

/* The top Via header with via_append merged into its first value. */
static int
put_top_via(struct wr *w, const struct sip_hdr *h, struct slice append)
{
    struct vparam add[VIA_APPEND_MAX];
    bool used[VIA_APPEND_MAX] = {false};
    int nadd = split_params(append, add, VIA_APPEND_MAX);

    if (nadd < 0 || !hdr_sane(h))
        return -EINVAL;
    const char *vend = first_value_end(h->value);
    struct slice top =
        trim(slice_make(h->value.ptr, (size_t)(vend - h->value.ptr)));
    const char *top_end = top.ptr + top.len;
    const char *semi = memchr(top.ptr, ';', top.len);
    if (!semi)
        semi = top_end;

    put_range(w, h->raw.ptr, semi); /* name, colon, sent-protocol, sent-by */
    const char *p = semi;
    while (p < top_end) {
        const char *q = p + 1;
        bool quoted = false;
        while (q < top_end && (quoted || *q != ';')) {
            if (*q == '"')
                quoted = !quoted;
            q++;
        }
        struct vparam one;
        bool replaced = false;
        if (split_params(slice_make(p + 1, (size_t)(q - p - 1)), &one, 1) ==
            1) {
            for (int i = 0; i < nadd; i++) {
                if (slice_eq_nocase(one.name, add[i].name)) {
                    if (!used[i]) {
                        put_c(w, ";");
                        put_s(w, add[i].text);
                        used[i] = true;
                    }
                    replaced = true;
                    break;
                }
            }
        }
        if (!replaced)
            put_range(w, p, q);
        p = q;
    }
    for (int i = 0; i < nadd; i++) {
        if (!used[i]) {
            put_c(w, ";");
            put_s(w, add[i].text);
        }
    }
    put_range(w, top_end, h->raw.ptr + h->raw.len);
    return 0;
}

int
sip_build_via_append(struct buf *out, struct slice msg, struct slice append)
{
    const char *p = msg.ptr, *end = msg.ptr + msg.len;
    const char *nl = memchr(p, '\n', msg.len);
    struct wr w;

    if (!nl)
        return -EINVAL;
    /* Header lines after the start line, up to the blank line. */
    for (p = nl + 1; p < end && *p != '\r' && *p != '\n'; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return -EINVAL;
        const char *colon = memchr(p, ':', (size_t)(nl - p));
        if (!colon)
            continue;
        struct slice name = trim(slice_make(p, (size_t)(colon - p)));
        if (!slice_eq_nocase_cstr(name, "via") &&
            !slice_eq_nocase_cstr(name, "v"))
            continue;
        if (nl + 1 < end && (nl[1] == ' ' || nl[1] == '\t'))
            return -EINVAL; /* folded: leave it alone */
        struct sip_hdr h = {
            .id = SIP_HDR_VIA,
            .name = name,
            .value = trim(slice_make(colon + 1, (size_t)(nl - colon - 1))),
            .raw = slice_make(p, (size_t)(nl + 1 - p)),
        };
        wr_init(&w, out);
        put_range(&w, msg.ptr, p);
        if (put_top_via(&w, &h, append) < 0)
            w.rc = -EINVAL;
        put_range(&w, nl + 1, end);
        return wr_finish(&w);
    }
    return -EINVAL;
}

int
sip_build_response_opts(struct buf *out, const struct sip_msg *req, int status,
                        const char *reason, const struct sip_rsp_opts *o)
{
    static const struct sip_rsp_opts none;
    const struct sip_hdr *from = hdr_at(req, SIP_HDR_FROM);
    const struct sip_hdr *to = hdr_at(req, SIP_HDR_TO);
    const struct sip_hdr *cid = hdr_at(req, SIP_HDR_CALL_ID);
    const struct sip_hdr *cseq = hdr_at(req, SIP_HDR_CSEQ);
    const struct sip_hdr *ts = hdr_at(req, SIP_HDR_TIMESTAMP);
    struct wr w;
    bool top_done = false;

    if (!o)
        o = &none;
    if (status < 100 || status > 699 || !from || !to || !cid || !cseq ||
        !hdr_at(req, SIP_HDR_VIA) || !hdr_sane(to))
        return -EINVAL;
    if (!reason)
        reason = sip_reason_phrase(status);
    wr_init(&w, out);
    put_c(&w, "SIP/2.0 ");
    put_u(&w, (unsigned long)status);
    put_c(&w, " ");
    put_c(&w, reason ? reason : "");
    put_c(&w, "\r\n");
    for (size_t i = 0; i < req->hdr_count; i++) {
        const struct sip_hdr *h = &req->hdrs[i];
        if (h->id != SIP_HDR_VIA)
            continue;
        if (!top_done && o->via_append.len > 0) {
            if (put_top_via(&w, h, o->via_append) < 0) {
                w.rc = -EINVAL;
                break;
            }
        } else {
            put_s(&w, h->raw);
        }
        top_done = true;
    }
    put_s(&w, from->raw);
    if (o->to_tag.len > 0 && req->to.tag.len == 0) {
        const char *vend = to->value.ptr + to->value.len;
        put_range(&w, to->raw.ptr, vend);
        put_c(&w, ";tag=");
        put_s(&w, o->to_tag);
        put_range(&w, vend, to->raw.ptr + to->raw.len);
    } else {
        put_s(&w, to->raw);
    }
    put_s(&w, cid->raw);
    put_s(&w, cseq->raw);
    if (status == 100 && ts) /* RFC 3261 §8.2.6.1 */
        put_s(&w, ts->raw);
    put_c(&w, "Server: pushpbx/" PUSHPBX_VERSION "\r\n");
    put_s(&w, o->extra);
    put_c(&w, "Content-Length: ");
    put_u(&w, o->body.len);
    put_c(&w, "\r\n\r\n");
    put_s(&w, o->body);
    return wr_finish(&w);
}

int
sip_build_error_response(struct buf *out, const struct sip_msg *req, int status,
                         const char *reason, struct slice to_tag)
{
    const struct sip_hdr *from = hdr_at(req, SIP_HDR_FROM);
    const struct sip_hdr *to = hdr_at(req, SIP_HDR_TO);
    const struct sip_hdr *cid = hdr_at(req, SIP_HDR_CALL_ID);
    const struct sip_hdr *cseq = hdr_at(req, SIP_HDR_CSEQ);
    struct wr w;

    if (status < 300 || status > 699 || !hdr_at(req, SIP_HDR_VIA))
        return -EINVAL;
    if (!reason)
        reason = sip_reason_phrase(status);
    wr_init(&w, out);
    put_c(&w, "SIP/2.0 ");
    put_u(&w, (unsigned long)status);
    put_c(&w, " ");
    put_c(&w, reason ? reason : "");
    put_c(&w, "\r\n");
    for (size_t i = 0; i < req->hdr_count; i++)
        if (req->hdrs[i].id == SIP_HDR_VIA)
            put_s(&w, req->hdrs[i].raw);
    if (from)
        put_s(&w, from->raw);
    if (to) {
        /* req->to may not have been decoded (the parse stopped earlier):
         * look at the value itself before adding a tag. */
        struct sip_name_addr na;
        struct sip_error e;
        struct slice tv;
        if (to_tag.len > 0 && hdr_sane(to) &&
            sip_name_addr_parse(to->value, &na, &e) == 0 &&
            !sip_param_get(na.params, "tag", &tv)) {
            const char *vend = to->value.ptr + to->value.len;
            put_range(&w, to->raw.ptr, vend);
            put_c(&w, ";tag=");
            put_s(&w, to_tag);
            put_range(&w, vend, to->raw.ptr + to->raw.len);
        } else {
            put_s(&w, to->raw);
        }
    }
    if (cid)
        put_s(&w, cid->raw);
    if (cseq)
        put_s(&w, cseq->raw);
    put_c(&w, "Server: pushpbx/" PUSHPBX_VERSION "\r\n");
    put_c(&w, "Content-Length: 0\r\n\r\n");
    return wr_finish(&w);
}

int
sip_build_response(struct buf *out, const struct sip_msg *req, int status,
                   const char *reason, struct slice to_tag, struct slice extra,
                   struct slice body)
{
    struct sip_rsp_opts o = {.to_tag = to_tag, .extra = extra, .body = body};

    return sip_build_response_opts(out, req, status, reason, &o);
}

/* ---- forwarding ------------------------------------------------------- */

/* Write header h without its first value (RFC 3261 §16.4 Route removal,
 * §16.7 Via removal): dropped entirely when it holds only that value. */
static int
put_without_first_values(struct wr *w, const struct sip_hdr *h, unsigned n,
                         unsigned *removed)
{
    if (!hdr_sane(h))
        return -EINVAL;
    const char *vend = h->value.ptr + h->value.len;
    const char *rest = h->value.ptr;
    *removed = 0;
    while (*removed < n && rest < vend) {
        const char *comma =
            first_value_end(slice_make(rest, (size_t)(vend - rest)));
        (*removed)++;
        if (comma == vend)
            return 0;
        rest = comma + 1;
        while (rest < vend && is_lws(*rest))
            rest++;
    }
    if (rest == vend) /* "Route: <a>," : nothing real after the comma */
        return 0;
    put_range(w, h->raw.ptr, h->value.ptr);
    put_range(w, rest, h->raw.ptr + h->raw.len);
    return 0;
}

static int
put_without_first_value(struct wr *w, const struct sip_hdr *h)
{
    unsigned removed;

    return put_without_first_values(w, h, 1, &removed);
}

static void
put_content_length(struct wr *w, const struct sip_msg *m)
{
    put_c(w, "Content-Length: ");
    put_u(w, m->body.len);
    put_c(w, "\r\n\r\n");
    put_s(w, m->body);
}

int
sip_build_forward(struct buf *out, const struct sip_msg *req,
                  const struct sip_fwd *f)
{
    int via_i = req->first[SIP_HDR_VIA];
    int rr_i = req->first[SIP_HDR_RECORD_ROUTE];
    int mf_i = req->first[SIP_HDR_MAX_FORWARDS];
    int route_i = req->first[SIP_HDR_ROUTE];
    struct slice line = start_line(req);
    const char *pos = line.ptr + line.len;
    struct wr w;
    unsigned pop = (f->pop_route ? 1u : 0u) + (f->pop_route2 ? 1u : 0u);

    if (!req->is_request || via_i < 0 || req->max_forwards == 0 ||
        (pop && route_i < 0))
        return -EINVAL;
    wr_init(&w, out);
    if (f->ruri.len > 0) {
        put_s(&w, req->method_name);
        put_c(&w, " ");
        put_s(&w, f->ruri);
        put_c(&w, " SIP/2.0\r\n");
    } else {
        put_s(&w, line);
    }
    for (size_t i = 0; i < req->hdr_count; i++) {
        const struct sip_hdr *h = &req->hdrs[i];
        bool keep = true;

        if ((int)i == via_i) {
            put_range(&w, pos, h->raw.ptr);
            pos = h->raw.ptr;
            if (f->record_route.len > 0 && rr_i < 0) {
                put_c(&w, "Record-Route: ");
                put_s(&w, f->record_route);
                put_c(&w, "\r\n");
            }
            if (f->via.len > 0) {
                put_c(&w, "Via: ");
                put_s(&w, f->via);
                put_c(&w, "\r\n");
            }
        }
        if ((int)i == rr_i && f->record_route.len > 0) {
            put_range(&w, pos, h->raw.ptr);
            pos = h->raw.ptr;
            put_c(&w, "Record-Route: ");
            put_s(&w, f->record_route);
            put_c(&w, "\r\n");
        }
        if ((int)i == mf_i && req->max_forwards > 0) {
            put_range(&w, pos, h->raw.ptr);
            if (!hdr_sane(h)) {
                w.rc = -EINVAL;
                break;
            }
            put_range(&w, h->raw.ptr, h->value.ptr);
            put_u(&w, (unsigned long)(req->max_forwards - 1));
            put_range(&w, h->value.ptr + h->value.len, h->raw.ptr + h->raw.len);
            keep = false;
        } else if (h->id == SIP_HDR_ROUTE && pop > 0) {
            unsigned removed;
            put_range(&w, pos, h->raw.ptr);
            if (put_without_first_values(&w, h, pop, &removed) < 0) {
                w.rc = -EINVAL;
                break;
            }
            pop -= removed;
            keep = false;
        } else if (h->id == SIP_HDR_CONTENT_LENGTH) {
            put_range(&w, pos, h->raw.ptr);
            keep = false;
        }
        if (!keep)
            pos = h->raw.ptr + h->raw.len;
    }
    put_range(&w, pos, headers_end(req, line.ptr + line.len));
    if (mf_i < 0)
        put_c(&w, "Max-Forwards: 70\r\n");
    put_s(&w, f->extra);
    put_content_length(&w, req);
    return wr_finish(&w);
}

int
sip_build_response_forward(struct buf *out, const struct sip_msg *rsp)
{
    int via_i = rsp->first[SIP_HDR_VIA];
    struct slice line = start_line(rsp);
    const char *pos = line.ptr + line.len;
    struct wr w;

    if (rsp->is_request || via_i < 0 || rsp->via_count < 2)
        return -EINVAL;
    wr_init(&w, out);
    put_s(&w, line);
    for (size_t i = 0; i < rsp->hdr_count; i++) {
        const struct sip_hdr *h = &rsp->hdrs[i];

        if ((int)i == via_i) {
            put_range(&w, pos, h->raw.ptr);
            if (put_without_first_value(&w, h) < 0) {
                w.rc = -EINVAL;
                break;
            }
        } else if (h->id == SIP_HDR_CONTENT_LENGTH) {
            put_range(&w, pos, h->raw.ptr);
        } else {
            continue;
        }
        pos = h->raw.ptr + h->raw.len;
    }
    put_range(&w, pos, headers_end(rsp, line.ptr + line.len));
    put_content_length(&w, rsp);
    return wr_finish(&w);
}

/* ---- CANCEL and ACK --------------------------------------------------- */

/* The common shape of CANCEL and non-2xx ACK (RFC 3261 §9.1, §17.1.1.3):
 * both are hop-by-hop copies of the INVITE's transaction identifiers. */
static int
build_hop_request(struct buf *out, const struct sip_msg *req,
                  const char *method, const struct sip_hdr *to,
                  struct slice extra)
{
    const struct sip_hdr *from = hdr_at(req, SIP_HDR_FROM);
    const struct sip_hdr *cid = hdr_at(req, SIP_HDR_CALL_ID);
    struct slice via;
    struct wr w;

    if (!req->is_request || !from || !cid || !to || top_via(req, &via) < 0)
        return -EINVAL;
    wr_init(&w, out);
    put_c(&w, method);
    put_c(&w, " ");
    put_s(&w, req->ruri);
    put_c(&w, " SIP/2.0\r\nVia: ");
    put_s(&w, via);
    put_c(&w, "\r\n");
    for (size_t i = 0; i < req->hdr_count; i++) {
        if (req->hdrs[i].id == SIP_HDR_ROUTE)
            put_s(&w, req->hdrs[i].raw);
    }
    put_c(&w, "Max-Forwards: 70\r\n");
    put_s(&w, from->raw);
    put_s(&w, to->raw);
    put_s(&w, cid->raw);
    put_c(&w, "CSeq: ");
    put_u(&w, req->cseq.num);
    put_c(&w, " ");
    put_c(&w, method);
    put_c(&w, "\r\n");
    put_s(&w, extra);
    put_c(&w, "Content-Length: 0\r\n\r\n");
    return wr_finish(&w);
}

int
sip_build_cancel(struct buf *out, const struct sip_msg *req, struct slice extra)
{
    return build_hop_request(out, req, "CANCEL", hdr_at(req, SIP_HDR_TO),
                             extra);
}

int
sip_build_ack(struct buf *out, const struct sip_msg *req,
              const struct sip_msg *rsp)
{
    if (rsp->is_request)
        return -EINVAL;
    return build_hop_request(out, req, "ACK", hdr_at(rsp, SIP_HDR_TO),
                             SLICE_NULL);
}

/* ---- random tokens ---------------------------------------------------- */

/* CSPRNG bytes, drawn from RAND_bytes 512 at a time per thread: one
 * RAND_bytes call per tag or branch cost ~6 % of a REGISTER (OpenSSL 3
 * takes locks and walks its DRBG tree per call). The bytes are the same
 * CSPRNG output, only fetched in bulk; each is handed out once. */
static void
rand_take(unsigned char *out, size_t n)
{
    static _Thread_local unsigned char pool[512];
    static _Thread_local size_t left;

    if (n > sizeof(pool))
        abort();
    if (left < n) {
        if (RAND_bytes(pool, (int)sizeof(pool)) != 1)
            abort(); /* no CSPRNG: as fatal as OOM (style.md §4) */
        left = sizeof(pool);
    }
    memcpy(out, pool + sizeof(pool) - left, n);
    memset(pool + sizeof(pool) - left, 0, n);
    left -= n;
}

static void
rand_hex(char *out, size_t nbytes)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char r[16];

    if (nbytes > sizeof(r))
        abort();
    rand_take(r, nbytes);
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = hex[r[i] >> 4];
        out[2 * i + 1] = hex[r[i] & 15];
    }
    out[2 * nbytes] = '\0';
}

void
sip_new_branch(char *out)
{
    memcpy(out, "z9hG4bK", 7);
    rand_hex(out + 7, 11);
}

void
sip_new_tag(char *out)
{
    rand_hex(out, 8);
}
