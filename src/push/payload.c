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

int
push_payload_apns(const struct push_msg *m, bool voip, int64_t sent_at_s,
                  struct buf *out)
{
    return build(m, voip ? APNS_VOIP : APNS_ALERT, sent_at_s, -1, out);
}

int
push_payload_fcm(const struct push_msg *m, int64_t sent_at_s, long ttl_s,
                 struct buf *out)
{
    if (m->token == NULL || *m->token == '\0')
        return -EINVAL;
    return build(m, FCM, sent_at_s, ttl_s, out);
}
