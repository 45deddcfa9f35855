/*
 * fcm: the Google side of the emulator: the OAuth 2.0 JWT-bearer token
 * endpoint (POST /token, RS256 assertions from service-account keys) and
 * FCM HTTP v1 send (POST /v1/projects/<p>/messages:send), with the error
 * bodies of protocols.md §3.6.
 *
 * Access tokens are random, kept in a map (loop thread only) with their
 * account and expiry, capped at PSIM_ACCESS_TOKENS_MAX; when full, expired
 * and revoked ones are swept first. The "expire_access_tokens" fault
 * revokes every token issued so far (compared via a generation counter
 * the control thread bumps).
 */
#include <errno.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "base/xmalloc.h"
#include "jose/jose.h"
#include "pushsim/pushsim_int.h"

#define FCM_SCOPE "https://www.googleapis.com/auth/firebase.messaging"
#define CLOUD_SCOPE "https://www.googleapis.com/auth/cloud-platform"
#define FCM_DATA_MAX 4096
#define FCM_TTL_MAX 2419200

struct access_token {
    size_t account;
    uint64_t expires_ms;
    bool revoked;
};

static const char *
canonical_status(int status)
{
    switch (status) {
    case 400:
        return "INVALID_ARGUMENT";
    case 401:
        return "UNAUTHENTICATED";
    case 403:
        return "PERMISSION_DENIED";
    case 404:
        return "NOT_FOUND";
    case 405:
        return "METHOD_NOT_ALLOWED";
    case 429:
        return "RESOURCE_EXHAUSTED";
    case 500:
        return "INTERNAL";
    case 503:
        return "UNAVAILABLE";
    default:
        return "UNKNOWN";
    }
}

static const char *
default_code(int status)
{
    switch (status) {
    case 400:
        return "INVALID_ARGUMENT";
    case 401:
        return NULL; /* an OAuth problem carries no FcmError */
    case 403:
        return "SENDER_ID_MISMATCH";
    case 404:
        return "UNREGISTERED";
    case 429:
        return "QUOTA_EXCEEDED";
    case 500:
        return "INTERNAL";
    case 503:
        return "UNAVAILABLE";
    default:
        return "UNSPECIFIED_ERROR";
    }
}

static void
set_body_json(struct psim_resp *resp, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);

    buf_reset(&resp->body);
    if (s != NULL)
        (void)buf_append_cstr(&resp->body, s);
    free(s);
    json_decref(o);
}

const char *
psim_fcm_error(struct psim_resp *resp, int status, const char *code,
               const char *message)
{
    const char *canon = canonical_status(status);
    json_t *err = json_object(), *top = json_object();

    if (code == NULL)
        code = default_code(status);
    else if (code[0] == '\0')
        code = NULL; /* caller wants no FcmError detail */
    resp->status = status;
    json_object_set_new(err, "code", json_integer(status));
    json_object_set_new(err, "message", json_string(message ? message : canon));
    json_object_set_new(err, "status", json_string(canon));
    if (code != NULL) {
        json_t *d = json_object();
        json_object_set_new(
            d, "@type",
            json_string("type.googleapis.com/google.firebase.fcm.v1.FcmError"));
        json_object_set_new(d, "errorCode", json_string(code));
        json_object_set_new(err, "details", json_pack("[o]", d));
    }
    json_object_set_new(top, "error", err);
    set_body_json(resp, top);
    return code ? code : canon;
}

static void
oauth_error(struct psim_resp *resp, const char *why)
{
    json_t *o = json_pack("{s:s,s:s}", "error", "invalid_grant",
                          "error_description", why);

    resp->status = 400;
    set_body_json(resp, o);
}


/* Percent-decode a form value ('+' is a space) into out (cap bytes). */
static int
form_decode(struct slice v, char *out, size_t cap)
{
    size_t n = 0;

    for (size_t i = 0; i < v.len; i++) {
        char c = v.ptr[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi, lo;
            if (i + 2 >= v.len)
                return -EINVAL;
            hi = hex_digit(v.ptr[i + 1]);
            lo = hex_digit(v.ptr[i + 2]);
            if (hi < 0 || lo < 0)
                return -EINVAL;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (n + 1 >= cap)
            return -EMSGSIZE;
        out[n++] = c;
    }
    out[n] = '\0';
    return 0;
}

/* Find "name=value" in an urlencoded body and decode the value. */
static int
form_get(struct slice body, const char *name, char *out, size_t cap)
{
    const char *p = body.ptr, *end = body.ptr + body.len;
    size_t nlen = strlen(name);

    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - p) > nlen && memcmp(p, name, nlen) == 0 &&
            p[nlen] == '=')
            return form_decode(
                slice_make(p + nlen + 1, (size_t)(stop - p - nlen - 1)), out,
                cap);
        p = stop + 1;
    }
    return -ENOENT;
}

static bool
scope_ok(const char *scope)
{
    const char *p = scope;

    while (p != NULL && *p != '\0') {
        const char *sp = strchr(p, ' ');
        size_t n = sp ? (size_t)(sp - p) : strlen(p);
        if ((n == strlen(FCM_SCOPE) && memcmp(p, FCM_SCOPE, n) == 0) ||
            (n == strlen(CLOUD_SCOPE) && memcmp(p, CLOUD_SCOPE, n) == 0))
            return true;
        p = sp ? sp + 1 : NULL;
    }
    return false;
}

static bool
aud_ok(const struct psim *ps, const struct psim_account *a, const char *aud)
{
    char own[96];

    if (aud == NULL)
        return false;
    if (a->token_uri != NULL && strcmp(aud, a->token_uri) == 0)
        return true;
    /* Also accept our own URL, so account files need not know the port
     * an ephemeral listener got. */
    snprintf(own, sizeof(own), "https://127.0.0.1:%d/token", ps->https_port);
    if (strcmp(aud, own) == 0)
        return true;
    snprintf(own, sizeof(own), "https://localhost:%d/token", ps->https_port);
    return strcmp(aud, own) == 0;
}

static bool
token_dead(void *val, void *arg)
{
    const struct access_token *t = val;
    return t->revoked || t->expires_ms <= *(const uint64_t *)arg;
}

static bool
token_revoke(void *val, void *arg)
{
    ((struct access_token *)val)->revoked = true;
    return false;
}

static void
sync_access_gen(struct psim *ps)
{
    unsigned gen = atomic_load(&ps->state.fcm_expire_gen);

    if (gen != ps->access_gen_seen) {
        psim_map_sweep(&ps->access_tokens, token_revoke, NULL);
        ps->access_gen_seen = gen;
    }
}

void
psim_fcm_token(struct psim *ps, const struct psim_req *req,
               struct psim_resp *resp)
{
    static char assertion[JOSE_JWT_MAX_LEN + 1];
    char grant[128], tok[80];
    const struct psim_account *acct = NULL;
    struct jose_jwt j;
    const char *iss, *why = NULL;
    long long iat, exp, now_s = (long long)(psim_now_ms() / 1000);
    unsigned char rnd[16];
    struct access_token *at;

    if (!slice_eq_cstr(req->hdr[PSIM_H_METHOD], "POST")) {
        oauth_error(resp, "POST required");
        resp->status = 405;
        return;
    }
    if (req->body_too_large ||
        form_get(req->body, "grant_type", grant, sizeof(grant)) < 0 ||
        strcmp(grant, "urn:ietf:params:oauth:grant-type:jwt-bearer") != 0) {
        oauth_error(resp, "grant_type must be jwt-bearer");
        return;
    }
    if (form_get(req->body, "assertion", assertion, sizeof(assertion)) < 0 ||
        jose_jwt_parse(slice_cstr(assertion), &j) < 0) {
        oauth_error(resp, "assertion is not a JWT");
        return;
    }
    iss = jose_jwt_str(j.claims, "iss");
    for (size_t i = 0; iss != NULL && i < ps->naccounts; i++)
        if (strcmp(ps->accounts[i].client_email, iss) == 0)
            acct = &ps->accounts[i];
    if (j.alg != JOSE_RS256)
        why = "alg must be RS256";
    else if (acct == NULL)
        why = "unknown iss";
    else if (jose_jwt_verify(&j, acct->key) < 0)
        why = "Invalid JWT Signature.";
    else if (!aud_ok(ps, acct, jose_jwt_str(j.claims, "aud")))
        why = "Invalid JWT: aud does not match token_uri";
    else if (jose_jwt_str(j.claims, "scope") == NULL ||
             !scope_ok(jose_jwt_str(j.claims, "scope")))
        why = "Invalid JWT: scope lacks firebase.messaging";
    else if (jose_jwt_int(j.claims, "iat", &iat) < 0 ||
             jose_jwt_int(j.claims, "exp", &exp) < 0)
        why = "Invalid JWT: iat and exp required";
    else if (iat > now_s + 60 || exp <= now_s || exp <= iat || exp - iat > 3600)
        why = "Invalid JWT: Token must be a short-lived token (60 minutes) "
              "and in a reasonable timeframe. Check your iat and exp values "
              "in the JWT claim.";
    jose_jwt_fini(&j);
    if (why != NULL) {
        oauth_error(resp, why);
        return;
    }
    sync_access_gen(ps);
    if (ps->access_tokens.count >= PSIM_ACCESS_TOKENS_MAX) {
        uint64_t now = psim_now_ms();
        psim_map_sweep(&ps->access_tokens, token_dead, &now);
        if (ps->access_tokens.count >= PSIM_ACCESS_TOKENS_MAX) {
            oauth_error(resp, "too many live access tokens");
            return;
        }
    }
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        memset(rnd, 0x33, sizeof(rnd));
    int n = snprintf(tok, sizeof(tok), "ya29.psim-");
    for (size_t i = 0; i < sizeof(rnd); i++)
        n += snprintf(tok + n, sizeof(tok) - (size_t)n, "%02x", rnd[i]);
    at = xmalloc(sizeof(*at));
    at->account = (size_t)(acct - ps->accounts);
    at->expires_ms = psim_now_ms() + (uint64_t)ps->fcm_token_ttl_s * 1000;
    at->revoked = false;
    psim_map_put(&ps->access_tokens, slice_cstr(tok), at);
    atomic_fetch_add(&ps->state.tokens_issued, 1);
    resp->status = 200;
    set_body_json(resp,
                  json_pack("{s:s,s:i,s:s}", "access_token", tok, "expires_in",
                            (int)ps->fcm_token_ttl_s, "token_type", "Bearer"));
}

void
psim_fcm_describe(const struct psim_req *req, struct slice project, json_t *rec)
{
    json_t *payload = NULL, *token;

    if (req->body.len > 0 && !req->body_too_large)
        payload = json_loadb(req->body.ptr, req->body.len, 0, NULL);
    token = json_object_get(json_object_get(payload, "message"), "token");
    json_object_set_new(rec, "token",
                        json_is_string(token) ? json_copy(token) : json_null());
    json_object_set_new(rec, "project", json_stringn(project.ptr, project.len));
    json_object_set_new(rec, "headers", json_object());
    json_object_set_new(rec, "payload", payload ? payload : json_null());
}

static bool
valid_fcm_token(const char *t)
{
    size_t n = strlen(t);

    if (n == 0 || n > 4096)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_' || c == ':' ||
              c == '.'))
            return false;
    }
    return true;
}

/* data: map string -> string, no reserved keys, <= 4096 bytes. */
static const char *
check_data(json_t *data)
{
    const char *k;
    json_t *v;
    size_t total = 0;

    if (data == NULL)
        return NULL;
    if (!json_is_object(data))
        return "data must be a map of strings";
    json_object_foreach(data, k, v)
    {
        if (!json_is_string(v))
            return "data values must be strings";
        if (strcmp(k, "from") == 0 || strcmp(k, "message_type") == 0 ||
            strncmp(k, "google.", 7) == 0 || strncmp(k, "gcm.", 4) == 0 ||
            strcmp(k, "google") == 0 || strcmp(k, "gcm") == 0)
            return "data contains a reserved key";
        total += strlen(k) + json_string_length(v);
    }
    if (total > FCM_DATA_MAX)
        return "data payload exceeds 4096 bytes";
    return NULL;
}

/* google.protobuf.Duration "<n>[.frac]s", 0 .. 28 days. */
static bool
valid_ttl(const char *s)
{
    size_t n = strlen(s), i = 0;
    unsigned long long secs = 0;

    if (n < 2 || s[n - 1] != 's')
        return false;
    for (; i < n - 1 && s[i] >= '0' && s[i] <= '9'; i++) {
        secs = secs * 10 + (unsigned)(s[i] - '0');
        if (secs > FCM_TTL_MAX)
            return false;
    }
    if (i == 0)
        return false;
    if (i < n - 1) {
        size_t frac = 0;
        if (s[i++] != '.')
            return false;
        for (; i < n - 1; i++, frac++)
            if (s[i] < '0' || s[i] > '9')
                return false;
        if (frac == 0 || frac > 9)
            return false;
    }
    return true;
}

static const char *
check_message(json_t *payload)
{
    json_t *msg = json_object_get(payload, "message");
    json_t *token, *android, *v;
    const char *why;

    if (!json_is_object(payload) || !json_is_object(msg))
        return "message is required";
    token = json_object_get(msg, "token");
    if (token == NULL && (json_object_get(msg, "topic") != NULL ||
                          json_object_get(msg, "condition") != NULL))
        return "pushsim supports only token targets";
    if (!json_is_string(token) || !valid_fcm_token(json_string_value(token)))
        return "The registration token is not a valid FCM registration token";
    why = check_data(json_object_get(msg, "data"));
    if (why != NULL)
        return why;
    android = json_object_get(msg, "android");
    if (android == NULL)
        return NULL;
    if (!json_is_object(android))
        return "android must be an object";
    v = json_object_get(android, "priority");
    if (v != NULL) {
        const char *p = json_string_value(v);
        if (p == NULL || (strcmp(p, "HIGH") && strcmp(p, "NORMAL") &&
                          strcmp(p, "high") && strcmp(p, "normal")))
            return "android.priority must be HIGH or NORMAL";
    }
    v = json_object_get(android, "ttl");
    if (v != NULL && (!json_is_string(v) || !valid_ttl(json_string_value(v))))
        return "android.ttl must be a duration like \"30s\" up to 28 days";
    v = json_object_get(android, "collapse_key");
    if (v != NULL && !json_is_string(v))
        return "android.collapse_key must be a string";
    return check_data(json_object_get(android, "data"));
}

void
psim_fcm_send(struct psim *ps, const struct psim_req *req, struct slice project,
              json_t *rec, struct psim_resp *resp)
{
    struct slice auth = req->hdr[PSIM_H_AUTH], tok;
    json_t *payload = json_object_get(rec, "payload");
    const struct access_token *at = NULL;
    const char *reason, *why;
    uint64_t dead_ms;

    if (!slice_eq_cstr(req->hdr[PSIM_H_METHOD], "POST")) {
        reason = psim_fcm_error(resp, 405, NULL, "POST required");
        goto out;
    }
    sync_access_gen(ps);
    if (auth.len > 7 &&
        slice_eq_nocase_cstr(slice_make(auth.ptr, 7), "bearer ")) {
        tok = slice_trim(slice_make(auth.ptr + 7, auth.len - 7));
        at = psim_map_get(&ps->access_tokens, tok);
    }
    if (at == NULL || at->revoked || at->expires_ms <= psim_now_ms()) {
        reason = psim_fcm_error(
            resp, 401, NULL,
            "Request had invalid authentication credentials. Expected OAuth "
            "2 access token, login cookie or other valid authentication "
            "credential.");
        goto out;
    }
    if (!slice_eq_cstr(project, ps->accounts[at->account].project)) {
        reason = psim_fcm_error(resp, 403, "",
                                "Permission 'cloudmessaging.messages.create' "
                                "denied on resource");
        goto out;
    }
    if (req->body_too_large) {
        reason = psim_fcm_error(resp, 400, NULL, "Request is too large");
        goto out;
    }
    why = check_message(payload);
    if (why != NULL) {
        reason = psim_fcm_error(resp, 400, NULL, why);
        goto out;
    }
    if (psim_state_is_dead(&ps->state,
                           slice_cstr(json_string_value(json_object_get(
                               json_object_get(payload, "message"), "token"))),
                           &dead_ms)) {
        reason = psim_fcm_error(resp, 404, "UNREGISTERED",
                                "Requested entity was not found.");
        goto out;
    }
    resp->status = 200;
    reason = NULL;
    buf_reset(&resp->body);
    (void)buf_printf(&resp->body,
                     "{\"name\":\"projects/" SLICE_FMT
                     "/messages/0:%llu%%%08llx\"}",
                     SLICE_ARG(project), (unsigned long long)psim_now_ms(),
                     (unsigned long long)++ps->msg_counter);
out:
    json_object_set_new(rec, "status", json_integer(resp->status));
    json_object_set_new(rec, "reason",
                        reason ? json_string(reason) : json_null());
}
