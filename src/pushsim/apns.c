/*
 * apns: the Apple side of the emulator, POST /3/device/<token>, checked the
 * way protocols.md §2 describes APNs (headers, provider JWT, topic per push
 * type, payload limits) and answered with Apple's status codes and reason
 * strings.
 *
 * Provider tokens are verified once per distinct JWT text and the result
 * cached (jwt_cache, capped at PSIM_JWT_CACHE_MAX): a client sends the same
 * token on thousands of requests, and an ECDSA verify per push would cost
 * more than everything else together. Only iat age is re-checked per push.
 * The "expire_provider_tokens" fault marks every cached token expired;
 * marked entries survive cache trimming so they stay expired.
 *
 * Certificate-based trust (--apns-client-ca, protocols.md §2.6): on a
 * connection whose client certificate verified, the authorization header
 * is ignored and the certificate decides the topics. Kept simple: the
 * subject UID is the bundle id, and the topics are <UID>, <UID>.voip and
 * <UID>.complication (what Apple's "Sandbox & Production" certificates
 * cover; their topics extension 1.2.840.113635.100.6.3.6 is not read).
 * Another topic is 400 TopicDisallowed; no apns-topic means <UID>; a
 * verified certificate without a UID is 403 BadCertificate.
 */
#include <ctype.h>
#include <errno.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "base/xmalloc.h"
#include "jose/jose.h"
#include "pushsim/pushsim_int.h"

struct jwt_seen {
    const char *reason; /* NULL = signature, kid and iss fine */
    long long iat;
    bool expired; /* by the expire_provider_tokens fault */
};

static const char *
default_reason(int status)
{
    switch (status) {
    case 400:
        return "BadRequest";
    case 403:
        return "Forbidden";
    case 404:
        return "BadPath";
    case 405:
        return "MethodNotAllowed";
    case 410:
        return "Unregistered";
    case 413:
        return "PayloadTooLarge";
    case 429:
        return "TooManyRequests";
    case 503:
        return "ServiceUnavailable";
    default:
        return "InternalServerError";
    }
}

const char *
psim_apns_error(struct psim_resp *resp, int status, const char *reason)
{
    json_t *o;
    char *s;

    if (reason == NULL)
        reason = default_reason(status);
    resp->status = status;
    o = json_object();
    json_object_set_new(o, "reason", json_string(reason));
    if (status == 410)
        json_object_set_new(o, "timestamp",
                            json_integer((json_int_t)psim_now_ms()));
    s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    buf_reset(&resp->body);
    if (s != NULL)
        (void)buf_append_cstr(&resp->body, s);
    free(s);
    return reason;
}

static const char *const apns_rec_headers[] = {
    [PSIM_H_APNS_TOPIC] = "apns-topic",
    [PSIM_H_APNS_PUSH_TYPE] = "apns-push-type",
    [PSIM_H_APNS_PRIORITY] = "apns-priority",
    [PSIM_H_APNS_EXPIRATION] = "apns-expiration",
    [PSIM_H_APNS_COLLAPSE_ID] = "apns-collapse-id",
    [PSIM_H_APNS_ID] = "apns-id",
};

void
psim_apns_describe(const struct psim_req *req, struct slice token, json_t *rec)
{
    json_t *h = json_object();
    json_t *payload = NULL;

    json_object_set_new(rec, "token", json_stringn(token.ptr, token.len));
    json_object_set_new(
        rec, "auth",
        json_string(req->cert == PSIM_CERT_NONE ? "token" : "certificate"));
    if (req->cert == PSIM_CERT_OK)
        json_object_set_new(rec, "cert_uid",
                            json_stringn(req->cert_uid.ptr, req->cert_uid.len));
    for (int i = PSIM_H_APNS_TOPIC; i <= PSIM_H_APNS_ID; i++) {
        struct slice v = req->hdr[i];
        if (v.ptr != NULL)
            json_object_set_new(h, apns_rec_headers[i],
                                json_stringn(v.ptr, v.len));
    }
    json_object_set_new(rec, "headers", h);
    if (req->body.len > 0 && !req->body_too_large)
        payload = json_loadb(req->body.ptr, req->body.len, 0, NULL);
    json_object_set_new(rec, "payload", payload ? payload : json_null());
}

static bool
is_hex(struct slice s)
{
    for (size_t i = 0; i < s.len; i++)
        if (!isxdigit((unsigned char)s.ptr[i]))
            return false;
    return true;
}

static bool
is_uuid(struct slice s)
{
    if (s.len != 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s.ptr[i] != '-' : !isxdigit((unsigned char)s.ptr[i]))
            return false;
    }
    return true;
}

static bool
mark_expired(void *val, void *arg)
{
    ((struct jwt_seen *)val)->expired = true;
    return false;
}

static bool
unmarked(void *val, void *arg)
{
    return !((struct jwt_seen *)val)->expired;
}

/* Full check of a JWT not seen before. */
static const char *
jwt_check(struct psim *ps, struct slice text, long long *iat)
{
    struct jose_jwt j;
    const char *kid, *iss, *reason = "InvalidProviderToken";

    if (jose_jwt_parse(text, &j) < 0)
        return reason;
    kid = jose_jwt_str(j.header, "kid");
    iss = jose_jwt_str(j.claims, "iss");
    if (j.alg != JOSE_ES256 || kid == NULL || iss == NULL ||
        jose_jwt_int(j.claims, "iat", iat) < 0)
        goto out;
    for (size_t i = 0; i < ps->nkeys; i++) {
        if (strcmp(ps->keys[i].kid, kid) != 0)
            continue;
        if (strcmp(ps->keys[i].team, iss) == 0 &&
            jose_jwt_verify(&j, ps->keys[i].key) == 0)
            reason = NULL;
        break;
    }
out:
    jose_jwt_fini(&j);
    return reason;
}

static const char *
apns_auth(struct psim *ps, struct slice auth)
{
    unsigned gen = atomic_load(&ps->state.apns_expire_gen);
    struct jwt_seen *seen;
    struct slice tok;
    long long now_s;

    if (auth.ptr == NULL)
        return "MissingProviderToken";
    if (auth.len < 7 ||
        !slice_eq_nocase_cstr(slice_make(auth.ptr, 7), "bearer "))
        return "InvalidProviderToken";
    tok = slice_trim(slice_make(auth.ptr + 7, auth.len - 7));
    if (tok.len == 0)
        return "MissingProviderToken";
    if (gen != ps->jwt_gen_seen) {
        psim_map_sweep(&ps->jwt_cache, mark_expired, NULL);
        ps->jwt_gen_seen = gen;
    }
    seen = psim_map_get(&ps->jwt_cache, tok);
    if (seen == NULL) {
        if (ps->jwt_cache.count >= PSIM_JWT_CACHE_MAX)
            psim_map_sweep(&ps->jwt_cache, unmarked, NULL);
        if (ps->jwt_cache.count >= PSIM_JWT_CACHE_MAX)
            psim_map_clear(&ps->jwt_cache); /* all marked: start over */
        seen = xcalloc(1, sizeof(*seen));
        seen->reason = jwt_check(ps, tok, &seen->iat);
        psim_map_put(&ps->jwt_cache, tok, seen);
    }
    if (seen->reason != NULL)
        return seen->reason;
    if (seen->expired)
        return "ExpiredProviderToken";
    now_s = (long long)(psim_now_ms() / 1000);
    if (seen->iat < now_s - 3600)
        return "ExpiredProviderToken";
    if (seen->iat > now_s + 60)
        return "InvalidProviderToken";
    return NULL;
}

/* Apple's push types and the topic suffix each needs (protocols.md §2.3).
 * mdm topics are an MDM UID, not a bundle; accepted as is. */
static const struct {
    const char *type, *suffix;
} push_types[] = {
    {"alert", ""},
    {"background", ""},
    {"voip", ".voip"},
    {"location", ".location-query"},
    {"complication", ".complication"},
    {"fileprovider", ".pushkit.fileprovider"},
    {"mdm", NULL},
    {"liveactivity", ".push-type.liveactivity"},
    {"pushtotalk", ".voip-ptt"},
    {"widgets", ".push-type.widgets"},
    {"controls", ".push-type.controls"},
};

static bool
bundle_allowed(const struct psim *ps, const struct psim_req *req,
               struct slice bundle)
{
    if (req->cert == PSIM_CERT_OK)
        return slice_eq(bundle, req->cert_uid);
    if (ps->ntopics == 0)
        return bundle.len > 0; /* no --apns-topic: any bundle */
    for (size_t i = 0; i < ps->ntopics; i++)
        if (slice_eq_cstr(bundle, ps->topics[i]))
            return true;
    return false;
}

/* Strip whichever known suffix topic ends with (longest first is not
 * needed: no suffix is a suffix of another). */
static struct slice
topic_base(struct slice topic)
{
    for (size_t i = 0; i < sizeof(push_types) / sizeof(push_types[0]); i++) {
        const char *sfx = push_types[i].suffix;
        size_t n = sfx ? strlen(sfx) : 0;
        if (n > 0 && topic.len > n &&
            memcmp(topic.ptr + topic.len - n, sfx, n) == 0)
            return slice_make(topic.ptr, topic.len - n);
    }
    return topic;
}

/* With certificate trust: is topic one of the certificate's topics? */
static bool
cert_topic(const struct psim_req *req, struct slice topic)
{
    static const char *const sfx[] = {"", ".voip", ".complication"};
    struct slice uid = req->cert_uid;

    for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
        size_t n = strlen(sfx[i]);
        if (topic.len == uid.len + n &&
            memcmp(topic.ptr, uid.ptr, uid.len) == 0 &&
            memcmp(topic.ptr + uid.len, sfx[i], n) == 0)
            return true;
    }
    return false;
}

/* Returns the 400 reason, or NULL when topic and push type fit. */
static const char *
apns_topic(const struct psim *ps, const struct psim_req *req, bool *voip)
{
    struct slice topic = req->hdr[PSIM_H_APNS_TOPIC];
    struct slice type = req->hdr[PSIM_H_APNS_PUSH_TYPE];
    int t = -1;

    if (type.ptr == NULL)
        type = slice_cstr("alert"); /* Apple's default outside watchOS */
    for (size_t i = 0; i < sizeof(push_types) / sizeof(push_types[0]); i++)
        if (slice_eq_cstr(type, push_types[i].type))
            t = (int)i;
    if (t < 0)
        return "InvalidPushType";
    *voip = strcmp(push_types[t].type, "voip") == 0;
    if ((topic.ptr == NULL || topic.len == 0) && req->cert == PSIM_CERT_OK)
        topic = req->cert_uid; /* the certificate's own topic */
    if (topic.ptr == NULL || topic.len == 0)
        return "MissingTopic";
    if (req->cert == PSIM_CERT_OK && !cert_topic(req, topic))
        return "TopicDisallowed";
    if (push_types[t].suffix == NULL)
        return NULL;
    size_t n = strlen(push_types[t].suffix);
    bool fits = topic.len > n &&
                memcmp(topic.ptr + topic.len - n, push_types[t].suffix, n) == 0;
    struct slice base = fits && n > 0 ? slice_make(topic.ptr, topic.len - n)
                                      : topic_base(topic);
    if (!bundle_allowed(ps, req, base))
        return "TopicDisallowed";
    if (!fits || (n == 0 && base.len != topic.len))
        return "BadTopic"; /* allowed app, wrong topic for this type */
    return NULL;
}

static void
make_uuid(char out[40])
{
    unsigned char r[16];

    if (RAND_bytes(r, sizeof(r)) != 1)
        memset(r, 0x5a, sizeof(r));
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    snprintf(out, 40,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x",
             r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10],
             r[11], r[12], r[13], r[14], r[15]);
}

static const char *
apns_validate(struct psim *ps, const struct psim_req *req, struct slice token,
              json_t *rec, int *status)
{
    struct slice pri = req->hdr[PSIM_H_APNS_PRIORITY];
    struct slice exp = req->hdr[PSIM_H_APNS_EXPIRATION];
    struct slice cid = req->hdr[PSIM_H_APNS_COLLAPSE_ID];
    struct slice id = req->hdr[PSIM_H_APNS_ID];
    const char *reason;
    unsigned long long v;
    bool voip = false;
    size_t limit;

    *status = 405;
    if (!slice_eq_cstr(req->hdr[PSIM_H_METHOD], "POST"))
        return "MethodNotAllowed";
    *status = 400;
    if (req->dup_header)
        return "DuplicateHeaders";
    if (token.len == 0)
        return "MissingDeviceToken";
    if (token.len < 16 || token.len > 200 || token.len % 2 || !is_hex(token))
        return "BadDeviceToken";
    *status = 403;
    if (req->cert == PSIM_CERT_NO_UID)
        return "BadCertificate";
    if (req->cert == PSIM_CERT_NONE) {
        reason = apns_auth(ps, req->hdr[PSIM_H_AUTH]);
        if (reason != NULL)
            return reason;
    } /* else certificate trust: authorization is ignored, as by APNs */
    *status = 400;
    reason = apns_topic(ps, req, &voip);
    if (reason != NULL)
        return reason;
    if (pri.ptr != NULL && !slice_eq_cstr(pri, "10") &&
        !slice_eq_cstr(pri, "5") && !slice_eq_cstr(pri, "1"))
        return "BadPriority";
    if (slice_eq_cstr(req->hdr[PSIM_H_APNS_PUSH_TYPE], "background") &&
        slice_eq_cstr(pri, "10"))
        return "BadPriority"; /* background pushes must use 5 */
    if (exp.ptr != NULL && slice_to_u64(exp, UINT32_MAX * 4ull, &v) < 0)
        return "BadExpirationDate";
    if (cid.ptr != NULL && cid.len > 64)
        return "BadCollapseId";
    if (id.ptr != NULL && !is_uuid(id))
        return "BadMessageId";
    limit = voip ? 5120 : 4096;
    if (req->body_too_large || req->body.len > limit) {
        *status = 413;
        return "PayloadTooLarge";
    }
    if (req->body.len == 0)
        return "PayloadEmpty";
    if (!json_is_object(json_object_get(rec, "payload")))
        return "BadPayload";
    return NULL;
}

void
psim_apns_set_id(const struct psim_req *req, struct psim_resp *resp)
{
    struct slice id = req->hdr[PSIM_H_APNS_ID];

    /* apns-id is echoed on every answer, as APNs does. */
    if (id.ptr != NULL && is_uuid(id))
        slice_to_cstr(id, resp->apns_id, sizeof(resp->apns_id));
    else
        make_uuid(resp->apns_id);
}

void
psim_apns_handle(struct psim *ps, const struct psim_req *req,
                 struct slice token, json_t *rec, struct psim_resp *resp)
{
    const char *reason;
    uint64_t dead_ms;
    int status;

    reason = apns_validate(ps, req, token, rec, &status);
    if (reason == NULL && psim_state_is_dead(&ps->state, token, &dead_ms)) {
        psim_apns_error(resp, 410, "Unregistered");
        /* timestamp = when the token was declared dead */
        buf_reset(&resp->body);
        (void)buf_printf(&resp->body,
                         "{\"reason\":\"Unregistered\",\"timestamp\":%llu}",
                         (unsigned long long)dead_ms);
        reason = "Unregistered";
    } else if (reason != NULL) {
        psim_apns_error(resp, status, reason);
    } else {
        resp->status = 200;
    }
    psim_apns_set_id(req, resp);
    json_object_set_new(rec, "status", json_integer(resp->status));
    json_object_set_new(rec, "reason",
                        reason ? json_string(reason) : json_null());
}
