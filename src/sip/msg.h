/*
 * sip/msg: zero-copy SIP message parser (RFC 3261 §7, §20, §25).
 *
 * sip_msg_parse() takes one framed message (a UDP datagram, or what the
 * stream transport cut by Content-Length) and splits it in one pass into a
 * start line and an array of headers, each a set of slices into the caller's
 * buffer. The buffer is never written to; anything normalised (unfolded,
 * unescaped) is copied into the arena. The header array itself lives in the
 * arena, so a message costs no malloc beyond the arena's chunks.
 *
 * Besides the split, the parse validates and decodes the headers every layer
 * needs (top Via, From/To tags, Call-ID, CSeq, Max-Forwards,
 * Content-Length), because a message without them cannot be answered or
 * matched to a transaction. Everything else (Contact, Route, Authorization,
 * URIs) is parsed on demand with the functions below and the ones in
 * sip/uri.h. sip_request_check() adds the checks a UAS or proxy makes
 * before acting on a request (R-URI scheme, Require, CSeq method).
 *
 * Errors are data: on failure the parser fills struct sip_error with the SIP
 * status that the RFC expects (400, 505, 416, ...) and a static reason
 * phrase naming the fault ("Bad CSeq", "Missing Call-ID"). Parsers never
 * log. For requests, err->status is what to answer; for responses, a
 * failure means "discard".
 *
 * Limits (answered, never fatal): SIP_MAX_HEADERS headers,
 * SIP_MAX_MSG_LEN bytes. Thread: any, no shared state.
 */
#ifndef PUSHPBX_SIP_MSG_H
#define PUSHPBX_SIP_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "base/slice.h"
#include "sip/uri.h"

#define SIP_MAX_HEADERS 128
#define SIP_MAX_MSG_LEN 65535
/* Arena cap that comfortably fits a parse of SIP_MAX_MSG_LEN bytes. */
#define SIP_MSG_ARENA_CAP (256 * 1024)

enum sip_method {
    SIP_METHOD_UNKNOWN = 0, /* extension method: see msg->method_name */
    SIP_METHOD_INVITE,
    SIP_METHOD_ACK,
    SIP_METHOD_BYE,
    SIP_METHOD_CANCEL,
    SIP_METHOD_REGISTER,
    SIP_METHOD_OPTIONS,
    SIP_METHOD_INFO,
    SIP_METHOD_UPDATE,
    SIP_METHOD_PRACK,
    SIP_METHOD_SUBSCRIBE,
    SIP_METHOD_NOTIFY,
    SIP_METHOD_MESSAGE,
    SIP_METHOD_REFER,
    SIP_METHOD_PUBLISH,
};

/* Known header names; compact forms map to the same id. */
enum sip_hdr_id {
    SIP_HDR_OTHER = 0,
    SIP_HDR_VIA,     /* v */
    SIP_HDR_FROM,    /* f */
    SIP_HDR_TO,      /* t */
    SIP_HDR_CALL_ID, /* i */
    SIP_HDR_CSEQ,
    SIP_HDR_MAX_FORWARDS,
    SIP_HDR_CONTACT, /* m */
    SIP_HDR_EXPIRES,
    SIP_HDR_MIN_EXPIRES,
    SIP_HDR_ROUTE,
    SIP_HDR_RECORD_ROUTE,
    SIP_HDR_PATH,
    SIP_HDR_AUTHORIZATION,
    SIP_HDR_PROXY_AUTHORIZATION,
    SIP_HDR_WWW_AUTHENTICATE,
    SIP_HDR_PROXY_AUTHENTICATE,
    SIP_HDR_CONTENT_LENGTH,   /* l */
    SIP_HDR_CONTENT_TYPE,     /* c */
    SIP_HDR_CONTENT_ENCODING, /* e */
    SIP_HDR_REQUIRE,
    SIP_HDR_PROXY_REQUIRE,
    SIP_HDR_SUPPORTED, /* k */
    SIP_HDR_UNSUPPORTED,
    SIP_HDR_ALLOW,
    SIP_HDR_ACCEPT,
    SIP_HDR_USER_AGENT,
    SIP_HDR_SERVER,
    SIP_HDR_DATE,
    SIP_HDR_FEATURE_CAPS,
    SIP_HDR_REASON,
    SIP_HDR_SUBJECT,  /* s */
    SIP_HDR_EVENT,    /* o */
    SIP_HDR_REFER_TO, /* r */
    SIP_HDR_TIMESTAMP,
    SIP_HDR__COUNT
};

struct sip_hdr {
    enum sip_hdr_id id;
    struct slice name;  /* as written, e.g. "v" or "Via" */
    struct slice value; /* trimmed; may contain folding (CRLF + WSP) */
    struct slice raw;   /* the whole header from name to its final CRLF */
};

/* One Via value (RFC 3261 §20.42, RFC 3581). */
struct sip_via {
    struct slice transport; /* "UDP", "TCP", "TLS", ... */
    struct slice host;      /* IPv6 without brackets */
    uint16_t port;          /* 0 when absent */
    struct slice branch;    /* empty when absent */
    struct slice received;
    bool rport;           /* rport parameter present */
    uint16_t rport_value; /* 0 when rport has no value */
    struct slice params;  /* ";a=b;c" as written, after sent-by */
    struct slice raw;     /* the whole via-parm */
};

/* name-addr / addr-spec with header params (From, To, Contact, Route...). */
struct sip_name_addr {
    struct slice display; /* without quotes; may hold escapes */
    struct slice uri;     /* the URI text (inside <> when present) */
    struct slice params;  /* header params ";tag=..;expires=.." as written */
    struct slice tag;     /* "tag" param value, empty when absent */
};

struct sip_cseq {
    uint32_t num;
    enum sip_method method;
    struct slice method_name;
};

struct sip_error {
    int status;         /* SIP status to answer a request with */
    const char *reason; /* static text naming the fault */
};

/* A slice added here (or to a struct held here) must be added to the list
 * sip_msg_rebase moves (msg.c); unit/sip_torture_test compares a rebased
 * copy with a fresh parse, field by field, and must learn it too. */
struct sip_msg {
    const char *buf; /* the message bytes (borrowed) */
    size_t len;      /* bytes of buf this message used: leading CRLFs,
                        start line, headers, body (<= the len given) */
    bool is_request;

    /* request line */
    enum sip_method method;
    struct slice method_name;
    struct slice ruri;
    /* status line */
    int status;
    struct slice reason;

    struct sip_hdr *hdrs; /* in the arena, in message order */
    size_t hdr_count;
    int16_t first[SIP_HDR__COUNT]; /* index of the first such header, -1 */

    struct slice body;

    /* decoded by sip_msg_parse (always valid after success) */
    struct sip_via via;        /* top Via value */
    size_t via_count;          /* number of Via values in all Via headers */
    struct sip_name_addr from; /* from.tag may be empty (RFC 2543) */
    struct sip_name_addr to;
    struct slice call_id;
    struct sip_cseq cseq;
    int max_forwards;    /* -1 when absent */
    long content_length; /* -1 when absent */
    long expires;        /* Expires header, -1 when absent or not a
                            decimal; above 2^32-1 clamped to it */
};

/* Parse one message of len bytes at buf. Returns 0, or -1 with *err set.
 * m->buf/len and the slices borrow buf; the header array is allocated from
 * a (one allocation; an arena at its cap gives 513). A Content-Length
 * larger than the rest is an error (400); extra bytes after the body are
 * ignored (RFC 3261 §18.3, RFC 4475 dblreq): m->len tells how many bytes
 * the message used. Without Content-Length the body runs to the end of buf
 * (datagram rule). Leading CRLFs are skipped (§7.5); a buffer that ends
 * right after a complete header line is taken as having no body.
 * Statuses: 505 for a version other than SIP/2.0, 513 above
 * SIP_MAX_MSG_LEN, 400 otherwise ("Missing Via", "Bad CSeq", "Duplicate
 * To", "Too many headers", "CSeq method mismatch", ...). Request line:
 * runs of SP between elements and trailing SP are tolerated; LWS or <>
 * inside the Request-URI is a 400. On failure *m is partly filled and must
 * not be used. */
int sip_msg_parse(struct sip_msg *m, const char *buf, size_t len,
                  struct arena *a, struct sip_error *err);

/* Copy a parsed message onto a byte copy of its buffer without parsing
 * again: *dst becomes what sip_msg_parse(dst, buf, len, a, err) gives, with
 * src->buf[0..len) the bytes src was parsed from and buf[0..len) a copy of
 * them (every slice is moved by buf - src->buf; the header array is copied
 * into a). src must be a successful parse of exactly those len bytes and
 * stays untouched. Returns 0, or -1 (dst unusable; parse instead) when a
 * slice of src lies outside src->buf[0..len] or a is at its cap. */
int sip_msg_rebase(struct sip_msg *dst, const struct sip_msg *src,
                   const char *buf, size_t len, struct arena *a);

/* Stream framing: given bytes received on a stream, tell whether a whole
 * message is present. Returns its length (>0), 0 if more bytes are needed,
 * or -1 if the bytes can never form a message (missing, malformed or
 * duplicate Content-Length; headers or message over SIP_MAX_MSG_LEN),
 * setting err. The caller should consume leading CRLFs (keep-alives, and
 * answer a CRLFCRLF ping with a CRLF pong) with sip_skip_keepalive() first;
 * if it does not, they are counted in the returned length, which is then
 * still what sip_msg_parse(buf, length) will use. Only the Content-Length
 * header is looked at; the rest is sip_msg_parse()'s job. */
long sip_frame(const char *buf, size_t len, struct sip_error *err);
/* Number of leading CR/LF bytes (RFC 5626 keep-alive pings are CRLFCRLF). */
size_t sip_skip_keepalive(const char *buf, size_t len);

/* Header lookup. */
const struct sip_hdr *sip_msg_hdr(const struct sip_msg *m, enum sip_hdr_id id);
/* By name (case-insensitive, compact forms of known names honoured). */
const struct sip_hdr *sip_msg_hdr_name(const struct sip_msg *m,
                                       struct slice name);
size_t sip_msg_hdr_count(const struct sip_msg *m, enum sip_hdr_id id);

/* Iterate the comma-separated values of every header with this id, in
 * order (Via, Contact, Route, Record-Route, Allow, Supported, Require...).
 * Commas inside quotes and <> do not split. Values are trimmed. */
struct sip_hdr_iter {
    const struct sip_msg *m;
    enum sip_hdr_id id;
    size_t idx; /* next header index to look at */
    struct slice rest;
    bool in_hdr;
};
void sip_hdr_iter_init(struct sip_hdr_iter *it, const struct sip_msg *m,
                       enum sip_hdr_id id);
bool sip_hdr_iter_next(struct sip_hdr_iter *it, struct slice *value);

/* Method names. sip_method_parse returns SIP_METHOD_UNKNOWN for extension
 * methods (case-sensitive, as RFC 3261 §7.1 says). */
enum sip_method sip_method_parse(struct slice s);
const char *sip_method_name(enum sip_method m);
/* Default reason phrase for a status code ("OK", "Trying", ...). */
const char *sip_reason_phrase(int status);

/* Value parsers for single header values (as returned by the iterator or
 * hdr->value). Each returns 0, or -1 with err->status 400 and a reason. */
int sip_via_parse(struct slice value, struct sip_via *out,
                  struct sip_error *err);
int sip_name_addr_parse(struct slice value, struct sip_name_addr *out,
                        struct sip_error *err);
int sip_cseq_parse(struct slice value, struct sip_cseq *out,
                   struct sip_error *err);

/* Header/URI parameter lookup in a ";a=b;c;d=\"q\"" string (params of a
 * Via, name-addr, or URI). Names compare case-insensitively. Returns true if
 * present; *value is empty for a flag param. Quotes are kept. */
bool sip_param_get(struct slice params, const char *name, struct slice *value);

/* Contact value (RFC 3261 §20.10) with its header params decoded. */
struct sip_contact {
    bool star;               /* "*" */
    struct sip_name_addr na; /* na.params holds the contact-params */
    long expires;            /* -1 when no expires param; above 2^32-1
                                clamped; malformed -> 3600 (§20.19) */
    int q_milli;             /* q * 1000; -1 when absent */
    struct slice instance;   /* +sip.instance value, quotes and <> removed */
    uint32_t reg_id;         /* 0 when absent */
};
int sip_contact_parse(struct slice value, struct sip_contact *out,
                      struct sip_error *err);

/* Checks a UAS/proxy makes on a parsed request before acting on it
 * (RFC 3261 §8.2.2, §16.3), in this order:
 *   R-URI scheme not sip/sips/tel                       -> 416
 *   R-URI unparseable or carrying ?headers (RFC 4475
 *   escruri: we reject rather than ignore them)         -> 400 Bad Request-URI
 *   CSeq method differs from the request method         -> 400
 *   top Via branch is the bare magic cookie "z9hG4bK"   -> 400 Bad Via branch
 *   Require / Proxy-Require tag not in supported_ext    -> 420
 * supported_ext is a comma-separated list of option tags we implement
 * (e.g. "path, outbound, gruu"); tags compare case-insensitively. Require
 * is not checked for ACK and CANCEL (they get no 420, §8.2.2.3). On 420,
 * list the offending tags for the Unsupported header with
 * sip_unsupported_tags(). Returns 0, or -1 with *err set. Any thread. */
int sip_request_check(const struct sip_msg *m, struct slice supported_ext,
                      struct sip_error *err);

/* Collect the Require and Proxy-Require option tags of m that are not in
 * supported_ext, in message order, without duplicates. Writes at most cap
 * slices (into m's buffer) to out and returns how many tags are
 * unsupported in total (may exceed cap). Require is skipped for ACK and
 * CANCEL, as in sip_request_check(). */
size_t sip_unsupported_tags(const struct sip_msg *m, struct slice supported_ext,
                            struct slice *out, size_t cap);

/* Invariant check for fuzzing: every slice in m points inside
 * buf[0..len). Aborts if not. */
void sip_msg_assert_within(const struct sip_msg *m, const char *buf,
                           size_t len);

#endif
