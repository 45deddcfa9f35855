/*
 * errmap: provider answers -> actions (see errmap.h). The APNs and FCM
 * tables follow protocols.md §2.7/§3.6 and pushpbx's policy (rule 9 of
 * product.md): a ringing call retries transient errors briefly, dead
 * tokens delete the device, everything else fails loudly with its reason.
 */
#include "push/errmap.h"

#include <stdio.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

static const char *const apns_dead[] = {
    "BadDeviceToken",
    "DeviceTokenNotForTopic",
    "Unregistered",
    "ExpiredToken",
};

enum push_action
push_apns_classify(long status, const char *reason)
{
    if (reason == NULL)
        reason = "";
    if (status == 200)
        return PUSH_ACT_DONE;
    if (status == 410)
        return PUSH_ACT_DEAD;
    if (status == 400) {
        for (size_t i = 0; i < sizeof(apns_dead) / sizeof(apns_dead[0]); i++)
            if (strcmp(reason, apns_dead[i]) == 0)
                return PUSH_ACT_DEAD;
        if (strcmp(reason, "IdleTimeout") == 0)
            return PUSH_ACT_RETRY;
        return PUSH_ACT_FAIL;
    }
    if (status == 403 && (strcmp(reason, "ExpiredProviderToken") == 0 ||
                          strcmp(reason, "InvalidProviderToken") == 0))
        return PUSH_ACT_REAUTH;
    if (status == 429 || status == 500 || status == 502 || status == 503 ||
        status == 504)
        return PUSH_ACT_RETRY;
    return PUSH_ACT_FAIL;
}

enum push_action
push_fcm_classify(long status, const char *reason)
{
    if (reason == NULL)
        reason = "";
    if (status == 200)
        return PUSH_ACT_DONE;
    if (strcmp(reason, "UNREGISTERED") == 0 || status == 404)
        return PUSH_ACT_DEAD;
    if (status == 401 && strcmp(reason, "THIRD_PARTY_AUTH_ERROR") != 0)
        return PUSH_ACT_REAUTH; /* our access token expired or revoked */
    if (status == 429 || status == 500 || status == 502 || status == 503 ||
        status == 504)
        return PUSH_ACT_RETRY;
    return PUSH_ACT_FAIL; /* INVALID_ARGUMENT, SENDER_ID_MISMATCH, 403.. */
}

enum push_action
push_curl_classify(int curl_code)
{
    switch ((CURLcode)curl_code) {
    case CURLE_OK:
        return PUSH_ACT_DONE;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_FAILED_INIT:
    case CURLE_OUT_OF_MEMORY:
        return PUSH_ACT_FAIL;
    default:
        return PUSH_ACT_RETRY; /* resets, timeouts, refused, GOAWAY */
    }
}

bool
push_tls_cert_refused(const char *curl_err, char *out, size_t cap)
{
    static const char *const alerts[] = {
        "unknown ca",           "bad certificate",
        "certificate expired",  "certificate revoked",
        "certificate unknown",  "unsupported certificate",
        "certificate required", "access denied",
    };
    const char *a = curl_err ? strstr(curl_err, "alert ") : NULL;

    if (a == NULL)
        return false;
    a += 6;
    for (size_t i = 0; i < sizeof(alerts) / sizeof(alerts[0]); i++) {
        size_t n = strlen(alerts[i]);
        if (strncmp(a, alerts[i], n) == 0 &&
            (a[n] == '\0' || a[n] == ',' || a[n] == ' ')) {
            snprintf(out, cap, "certificate refused: %s", alerts[i]);
            return true;
        }
    }
    return false;
}

static void
copy_str(json_t *v, char *out, size_t cap)
{
    const char *s = json_string_value(v);
    size_t n;

    if (s == NULL || cap == 0)
        return;
    n = strlen(s);
    if (n >= cap)
        n = cap - 1;
    memcpy(out, s, n);
    out[n] = '\0';
}

void
push_apns_reason(const char *body, size_t len, char *out, size_t cap)
{
    json_t *root;

    if (cap)
        out[0] = '\0';
    if (len == 0)
        return;
    root = json_loadb(body, len, 0, NULL);
    copy_str(json_object_get(root, "reason"), out, cap);
    json_decref(root);
}

void
push_fcm_reason(const char *body, size_t len, char *out, size_t cap)
{
    json_t *root, *err, *d;
    size_t i;

    if (cap)
        out[0] = '\0';
    if (len == 0)
        return;
    root = json_loadb(body, len, 0, NULL);
    err = json_object_get(root, "error");
    if (json_is_string(err)) { /* OAuth: {"error":"invalid_grant",..} */
        copy_str(err, out, cap);
        goto out;
    }
    json_array_foreach(json_object_get(err, "details"), i, d)
    {
        json_t *code = json_object_get(d, "errorCode");
        if (json_is_string(code)) {
            copy_str(code, out, cap);
            goto out;
        }
    }
    copy_str(json_object_get(err, "status"), out, cap);
out:
    json_decref(root);
}

const char *
push_action_name(enum push_action a)
{
    switch (a) {
    case PUSH_ACT_DONE:
        return "done";
    case PUSH_ACT_DEAD:
        return "dead";
    case PUSH_ACT_RETRY:
        return "retry";
    case PUSH_ACT_REAUTH:
        return "reauth";
    case PUSH_ACT_FAIL:
        return "fail";
    }
    return "?";
}
