/*
 * payload: builders for the APNs and FCM bodies (see payload.h). jansson
 * does the escaping; the only policy here is what goes where and how a
 * too-long display name is cut. Called once per push attempt, so a build is
 * a few microseconds of jansson work, far below the network cost.
 */
#include "push/payload.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/sha.h>

void
push_collapse_id(const char *call_id, char out[PUSH_COLLAPSE_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[SHA256_DIGEST_LENGTH];

    SHA256((const unsigned char *)call_id, strlen(call_id), md);
    out[0] = 'c';
    out[1] = '-';
    for (int i = 0; i < 16; i++) {
        out[2 + 2 * i] = hex[md[i] >> 4];
        out[3 + 2 * i] = hex[md[i] & 15];
    }
    out[PUSH_COLLAPSE_ID_LEN] = '\0';
}

void
push_message_collapse_id(const char *from, const char *to,
                         char out[PUSH_MESSAGE_COLLAPSE_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[SHA256_DIGEST_LENGTH];
    size_t fl = strlen(from), tl = strlen(to);
    unsigned char *pair = malloc(fl + tl + 1);

    /* "\n" cannot occur in either (SIP user parts), so the pair is
     * unambiguous. */
    if (pair == NULL)
        abort(); /* style.md: out of memory is fatal */
    memcpy(pair, from, fl);
    pair[fl] = '\n';
    memcpy(pair + fl + 1, to, tl);
    SHA256(pair, fl + tl + 1, md);
    free(pair);
    out[0] = 'm';
    out[1] = '-';
    for (int i = 0; i < 16; i++) {
        out[2 + 2 * i] = hex[md[i] >> 4];
        out[3 + 2 * i] = hex[md[i] & 15];
    }
    out[PUSH_MESSAGE_COLLAPSE_ID_LEN] = '\0';
}

/* Length of the well-formed UTF-8 sequence at s[0..len) (RFC 3629 table
 * 3-7 of Unicode: exact second-byte ranges exclude overlongs, surrogates
 * and values above U+10FFFF), or 0 if none starts there. */
static size_t
utf8_seq(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf;

    if (c >= 0x01 && c <= 0x7f)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f; /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f; /* <= U+10FFFF */
    } else {
        return 0; /* NUL, continuation byte, 0xc0/0xc1, 0xf5.. */
    }
    if (len < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return n;
}

int
push_utf8_clean(const char *in, size_t len, struct buf *out)
{
    static const char repl[] = "\xef\xbf\xbd"; /* U+FFFD */
    const unsigned char *s = (const unsigned char *)in;
    size_t i = 0;
    int rc = 0;

    while (i < len && rc == 0) {
        size_t run = i, n;
        /* Copy the longest valid run in one append. */
        while (run < len && (n = utf8_seq(s + run, len - run)) > 0)
            run += n;
        if (run > i)
            rc = buf_append(out, in + i, run - i);
        i = run;
        if (i < len && rc == 0) {
            rc = buf_append(out, repl, 3);
            i++; /* one replacement per bad byte */
        }
    }
    return rc;
}

static const char *
alert_title(enum push_type t)
{
    switch (t) {
    case PUSH_CALL:
        return "Incoming call";
    case PUSH_MISSED:
        return "Missed call";
    case PUSH_ANSWERED_ELSEWHERE:
        return "Answered elsewhere";
    case PUSH_MESSAGE:
        return "New message";
    }
    return "";
}

static const char *
alert_loc_key(enum push_type t)
{
    switch (t) {
    case PUSH_CALL:
        return "CALL_INCOMING";
    case PUSH_MISSED:
        return "CALL_MISSED";
    case PUSH_ANSWERED_ELSEWHERE:
        return "CALL_ANSWERED_ELSEWHERE";
    case PUSH_MESSAGE:
        return "MESSAGE_NEW";
    }
    return "";
}

static bool
msg_valid(const struct push_msg *m)
{
    return m->call_id && *m->call_id && m->from && *m->from && m->to &&
           (unsigned)m->type <= PUSH_ANSWERED_ELSEWHERE;
}

/* Longest prefix of s[0..len) not above max bytes that ends on a UTF-8
 * character boundary. */
static size_t
utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
        max--;
    return max;
}

/* The common object, with from_name cut to name_len bytes. NULL on invalid
 * UTF-8 in a field. */
static json_t *
common_object(const struct push_msg *m, int64_t sent_at, size_t name_len)
{
    const char *name = m->from_name ? m->from_name : "";
    json_t *o = json_object();
    int bad = 0;

    bad |= json_object_set_new(o, "v", json_integer(PUSH_PAYLOAD_VERSION));
    bad |= json_object_set_new(o, "type", json_string(push_type_name(m->type)));
    bad |= json_object_set_new(o, "call_id", json_string(m->call_id));
    bad |= json_object_set_new(o, "from", json_string(m->from));
    bad |= json_object_set_new(o, "from_name", json_stringn(name, name_len));
    bad |= json_object_set_new(o, "to", json_string(m->to));
    bad |= json_object_set_new(o, "sent_at", json_integer(sent_at));
    bad |= json_object_set_new(o, "expires_at",
                               json_integer(m->expires_at_s));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *
apns_object(const struct push_msg *m, bool voip, int64_t sent_at,
            size_t name_len)
{
    json_t *o = common_object(m, sent_at, name_len);
    json_t *aps, *alert, *args;
    const char *who;
    size_t who_len;

    if (o == NULL)
        return NULL;
    aps = json_object();
    json_object_set_new(o, "aps", aps);
    if (voip)
        return o; /* PushKit: the call data is all the app needs */
    if (name_len > 0) {
        who = m->from_name;
        who_len = name_len;
    } else {
        who = m->from;
        who_len = strlen(m->from);
    }
    alert = json_object();
    args = json_array();
    json_array_append_new(args, json_stringn(who, who_len));
    json_object_set_new(alert, "title", json_string(alert_title(m->type)));
    json_object_set_new(alert, "body", json_stringn(who, who_len));
    json_object_set_new(alert, "loc-key",
                        json_string(alert_loc_key(m->type)));
    json_object_set_new(alert, "loc-args", args);
    json_object_set_new(aps, "alert", alert);
    if (m->type == PUSH_CALL)
        json_object_set_new(aps, "sound", json_string("default"));
    return o;
}

static json_t *
fcm_object(const struct push_msg *m, int64_t sent_at, long ttl_s,
           size_t name_len)
{
    const char *name = m->from_name ? m->from_name : "";
    char num[24], collapse[PUSH_COLLAPSE_ID_LEN + 1];
    json_t *data = json_object();
    json_t *android, *msg;
    int bad = 0;

    /* FCM reserves the data key "from" (and "message_type", "google.*",
     * "gcm.*"), so the caller's number is "caller" here. */
    bad |= json_object_set_new(data, "v", json_string("1"));
    bad |= json_object_set_new(data, "type",
                               json_string(push_type_name(m->type)));
    bad |= json_object_set_new(data, "call_id", json_string(m->call_id));
    bad |= json_object_set_new(data, "caller", json_string(m->from));
    bad |= json_object_set_new(data, "from_name",
                               json_stringn(name, name_len));
    bad |= json_object_set_new(data, "to", json_string(m->to));
    snprintf(num, sizeof(num), "%lld", (long long)sent_at);
    bad |= json_object_set_new(data, "sent_at", json_string(num));
    snprintf(num, sizeof(num), "%lld", (long long)m->expires_at_s);
    bad |= json_object_set_new(data, "expires_at", json_string(num));
    if (bad) {
        json_decref(data);
        return NULL;
    }
    push_collapse_id(m->call_id, collapse);
    android = json_pack("{s:s, s:s}", "priority", "HIGH", "collapse_key",
                        collapse);
    if (ttl_s >= 0) {
        snprintf(num, sizeof(num), "%lds", ttl_s);
        json_object_set_new(android, "ttl", json_string(num));
    }
    msg = json_pack("{s:s, s:o, s:o}", "token", m->token ? m->token : "",
                    "data", data, "android", android);
    if (msg == NULL)
        return NULL;
    return json_pack("{s:o}", "message", msg);
}

static long
data_len(json_t *data)
{
    const char *k;
    json_t *v;
    long n = 0;

    if (!json_is_object(data))
        return -EINVAL;
    json_object_foreach(data, k, v)
    {
        if (!json_is_string(v))
            return -EINVAL;
        n += (long)(strlen(k) + json_string_length(v));
    }
    return n;
}

long
push_payload_fcm_data_len(const char *body, size_t len)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    long n;

    n = data_len(json_object_get(json_object_get(root, "message"), "data"));
    json_decref(root);
    return n;
}

enum kind { APNS_ALERT, APNS_VOIP, FCM };

/* Build, measure, and shorten the display name until it fits. The first
 * cut removes exactly the excess; escaping can make a name longer in JSON
 * than raw, so loop (a handful of rounds at most). */
static int
build(const struct push_msg *m, enum kind k, int64_t sent_at, long ttl_s,
      struct buf *out)
{
    const char *name = m->from_name ? m->from_name : "";
    size_t name_len = strlen(name);
    size_t limit = k == APNS_VOIP   ? PUSH_APNS_MAX_VOIP_PAYLOAD
                   : k == APNS_ALERT ? PUSH_APNS_MAX_PAYLOAD
                                     : PUSH_FCM_MAX_DATA;

    if (!msg_valid(m))
        return -EINVAL;
    if (m->sent_at_s != 0)
        sent_at = m->sent_at_s;
    for (int round = 0; round < 16; round++) {
        json_t *o = k == FCM ? fcm_object(m, sent_at, ttl_s, name_len)
                             : apns_object(m, k == APNS_VOIP, sent_at,
                                           name_len);
        size_t size;
        char *s;
        int rc;

        if (o == NULL)
            return -EINVAL;
        if (k == FCM) {
            json_t *msg = json_object_get(o, "message");
            size = (size_t)data_len(json_object_get(msg, "data"));
        } else {
            size = json_dumpb(o, NULL, 0, JSON_COMPACT);
        }
        if (size <= limit) {
            s = json_dumps(o, JSON_COMPACT);
            json_decref(o);
            if (s == NULL)
                return -EINVAL;
            rc = buf_append_cstr(out, s);
            free(s);
            return rc;
        }
        json_decref(o);
        if (name_len == 0)
            return -EMSGSIZE; /* the ids alone are too long */
        size_t excess = size - limit;
        /* The name appears twice in an alert (body, loc-args) and thrice
         * counting from_name: cut enough for every copy. */
        size_t copies = k == APNS_ALERT ? 3 : 1;
        size_t cut = (excess + copies - 1) / copies;
        name_len = utf8_cut(name, name_len, cut >= name_len ? 0
                                                           : name_len - cut);
    }
    return -EMSGSIZE;
}

/* ---- message push ------------------------------------------------------
 * The preview and the display name arrive as untrusted bytes (a SIP body,
 * a From display name): both are cleaned into valid UTF-8 first, then the
 * preview is cut (and "…" appended) until the payload fits, and only if
 * the preview is empty and it still does not fit, the name. */

struct mtext {
    struct buf name, preview; /* cleaned */
    size_t name_len, preview_len; /* used prefix of each */
    bool cut;                 /* preview shortened: "…" appended */
};

static const char ellipsis[] = "\xe2\x80\xa6"; /* U+2026 */

/* The preview as sent: the used prefix, plus "…" when cut. Returned in a
 * buffer of the caller (small: at most 4 KiB + 3). */
static json_t *
preview_json(const struct mtext *t)
{
    struct buf b;
    json_t *v;

    buf_init(&b, 0);
    buf_append(&b, t->preview.data ? t->preview.data : "", t->preview_len);
    if (t->cut)
        buf_append(&b, ellipsis, 3);
    v = json_stringn(b.data ? b.data : "", b.len);
    buf_fini(&b);
    return v;
}

static json_t *
message_object(const struct push_msg *m, int64_t sent_at,
               const struct mtext *t, bool fcm)
{
    char num[24];
    json_t *o = json_object();
    int bad = 0;

#define NUMV(x) (snprintf(num, sizeof(num), "%lld", (long long)(x)), \
                 fcm ? json_string(num) : json_integer((json_int_t)(x)))
    bad |= json_object_set_new(o, "v", fcm ? json_string("1")
                                          : json_integer(PUSH_PAYLOAD_VERSION));
    bad |= json_object_set_new(o, "type", json_string("message"));
    bad |= json_object_set_new(o, "message_id", json_string(m->message_id));
    bad |= json_object_set_new(o, fcm ? "caller" : "from",
                               json_string(m->from));
    bad |= json_object_set_new(
        o, "from_name", json_stringn(t->name.data ? t->name.data : "",
                                     t->name_len));
    bad |= json_object_set_new(o, "to", json_string(m->to));
    bad |= json_object_set_new(
        o, "content_type",
        json_string(m->content_type ? m->content_type : ""));
    bad |= json_object_set_new(o, "preview", preview_json(t));
    bad |= json_object_set_new(o, "preview_truncated",
                               fcm ? json_string(t->cut ? "1" : "0")
                                   : json_boolean(t->cut));
    bad |= json_object_set_new(o, "sent_at", NUMV(sent_at));
    bad |= json_object_set_new(o, "expires_at", NUMV(m->expires_at_s));
#undef NUMV
    if (bad) {
        json_decref(o); /* invalid UTF-8 in an id */
        return NULL;
    }
    return o;
}

static json_t *
message_apns(const struct push_msg *m, int64_t sent_at, const struct mtext *t)
{
    json_t *o = message_object(m, sent_at, t, false);
    char thread[PUSH_MESSAGE_COLLAPSE_ID_LEN + 1];

    if (o == NULL)
        return NULL;
    json_t *alert = json_object();
    if (t->name_len > 0)
        json_object_set_new(alert, "title",
                            json_stringn(t->name.data, t->name_len));
    else
        json_object_set_new(alert, "title", json_string(m->from));
    if (m->preview != NULL && (t->preview_len > 0 || t->cut))
        json_object_set_new(alert, "body", preview_json(t));
    else
        json_object_set_new(alert, "body", json_string("New message"));
    push_message_collapse_id(m->from, m->to, thread);
    /* mutable-content: the app's notification service extension may
     * fetch the whole message (or decrypt, or localise) before iOS shows
     * it; thread-id groups the conversation. */
    json_t *aps = json_pack("{s:o, s:i, s:s, s:s}", "alert", alert,
                            "mutable-content", 1, "sound", "default",
                            "thread-id", thread);
    json_object_set_new(o, "aps", aps);
    return o;
}

static json_t *
message_fcm(const struct push_msg *m, int64_t sent_at, long ttl_s,
            const struct mtext *t)
{
    char num[24], collapse[PUSH_MESSAGE_COLLAPSE_ID_LEN + 1];
    json_t *data = message_object(m, sent_at, t, true);

    if (data == NULL)
        return NULL;
    push_message_collapse_id(m->from, m->to, collapse);
    json_t *android = json_pack("{s:s, s:s}", "priority", "HIGH",
                                "collapse_key", collapse);
    if (ttl_s >= 0) {
        snprintf(num, sizeof(num), "%lds", ttl_s);
        json_object_set_new(android, "ttl", json_string(num));
    }
    json_t *msg = json_pack("{s:s, s:o, s:o}", "token",
                            m->token ? m->token : "", "data", data, "android",
                            android);
    return msg ? json_pack("{s:o}", "message", msg) : NULL;
}

static int
build_message(const struct push_msg *m, bool fcm, int64_t sent_at,
              long ttl_s, struct buf *out)
{
    size_t limit = fcm ? PUSH_FCM_MAX_DATA : PUSH_APNS_MAX_PAYLOAD;
    struct mtext t = {0};
    int rc = -EMSGSIZE;

    if (!m->message_id || !*m->message_id || !m->from || !*m->from ||
        !m->to)
        return -EINVAL;
    if (m->sent_at_s != 0)
        sent_at = m->sent_at_s;
    buf_init(&t.name, 0);
    buf_init(&t.preview, 0);
    if (m->from_name)
        push_utf8_clean(m->from_name, strlen(m->from_name), &t.name);
    t.name_len = t.name.len;
    if (m->preview) {
        size_t in = m->preview_len;
        if (in > PUSH_PREVIEW_MAX_IN) {
            in = PUSH_PREVIEW_MAX_IN;
            t.cut = true;
        }
        push_utf8_clean(m->preview, in, &t.preview);
        t.preview_len = t.preview.len;
    }
    /* Each round removes at least the excess from every copy of the text
     * being cut (a raw byte is at least one JSON byte), so a few rounds
     * suffice; the first cut may add "…" (3 bytes per copy). */
    for (int round = 0; round < 24; round++) {
        json_t *o = fcm ? message_fcm(m, sent_at, ttl_s, &t)
                        : message_apns(m, sent_at, &t);
        size_t size;

        if (o == NULL) {
            rc = -EINVAL;
            break;
        }
        if (fcm)
            size = (size_t)data_len(
                json_object_get(json_object_get(o, "message"), "data"));
        else
            size = json_dumpb(o, NULL, 0, JSON_COMPACT);
        if (size <= limit) {
            char *s = json_dumps(o, JSON_COMPACT);
            json_decref(o);
            rc = s ? buf_append_cstr(out, s) : -EINVAL;
            free(s);
            break;
        }
        json_decref(o);
        size_t excess = size - limit;
        if (t.preview_len > 0) {
            /* APNs carries the preview twice (alert body, "preview"). */
            size_t copies = fcm ? 1 : 2;
            size_t cut = (excess + copies - 1) / copies + (t.cut ? 0 : 3);
            t.cut = true;
            t.preview_len = utf8_cut(t.preview.data, t.preview_len,
                                     cut >= t.preview_len
                                         ? 0
                                         : t.preview_len - cut);
        } else if (t.name_len > 0) {
            size_t copies = fcm ? 1 : 2; /* from_name, alert title */
            size_t cut = (excess + copies - 1) / copies;
            t.name_len = utf8_cut(t.name.data, t.name_len,
                                  cut >= t.name_len ? 0 : t.name_len - cut);
        } else {
            break; /* the ids alone are too long */
        }
    }
    buf_fini(&t.name);
    buf_fini(&t.preview);
    return rc;
}

int
push_payload_apns(const struct push_msg *m, bool voip, int64_t sent_at_s,
                  struct buf *out)
{
    if (m->type == PUSH_MESSAGE)
        return voip ? -EINVAL : build_message(m, false, sent_at_s, -1, out);
    return build(m, voip ? APNS_VOIP : APNS_ALERT, sent_at_s, -1, out);
}

int
push_payload_fcm(const struct push_msg *m, int64_t sent_at_s, long ttl_s,
                 struct buf *out)
{
    if (m->token == NULL || *m->token == '\0')
        return -EINVAL;
    if (m->type == PUSH_MESSAGE)
        return build_message(m, true, sent_at_s, ttl_s, out);
    return build(m, FCM, sent_at_s, ttl_s, out);
}
