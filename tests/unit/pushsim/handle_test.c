/*
 * handle_test: pushsim's request logic (psim_handle) without the network:
 * a table of APNs requests and the status/reason each must get, the FCM
 * OAuth + send flow, dead tokens, faults, token expiry faults, and the
 * push record the control API serves. Keys are made here with OpenSSL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/xmalloc.h"
#include "jose/jose.h"
#include "pushsim/pushsim_int.h"

#define TOKEN "0123456789abcdef0123456789abcdef"
#define TOKEN_URI "https://127.0.0.1:0/token"

struct fixture {
    struct psim ps;
    char jwt[1024];
};

static void
make_apns_jwt(EVP_PKEY *key, const char *kid, const char *team, long long iat,
              char *out, size_t cap)
{
    json_t *h = json_pack("{s:s,s:s}", "alg", "ES256", "kid", kid);
    json_t *c = json_pack("{s:s,s:I}", "iss", team, "iat", (json_int_t)iat);
    struct buf b;

    buf_init(&b, 0);
    assert_int_equal(jose_jwt_sign(JOSE_ES256, key, h, c, &b), 0);
    snprintf(out, cap, "bearer %s", b.data);
    buf_fini(&b);
    json_decref(h);
    json_decref(c);
}

static int
setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    struct psim_apns_key *k;
    struct psim_account *a;

    psim_init(&f->ps, NULL);
    f->ps.https_port = 4443;
    k = &f->ps.keys[f->ps.nkeys++];
    snprintf(k->kid, sizeof(k->kid), "KID1234567");
    snprintf(k->team, sizeof(k->team), "TEAM123456");
    k->key = EVP_EC_gen("P-256");
    f->ps.topics[f->ps.ntopics++] = xstrdup("com.example.phone");
    a = &f->ps.accounts[f->ps.naccounts++];
    a->project = xstrdup("demo-proj");
    a->client_email = xstrdup("sa@demo-proj.iam.gserviceaccount.com");
    a->token_uri = xstrdup(TOKEN_URI);
    a->key = EVP_RSA_gen(2048);
    make_apns_jwt(k->key, "KID1234567", "TEAM123456", (long long)time(NULL),
                  f->jwt, sizeof(f->jwt));
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    psim_fini(&f->ps);
    free(f);
    return 0;
}

/* One APNs request: voip to TOKEN with the fixture's JWT, then overrides
 * (header index -> value; NULL value = remove the header). */
struct apns_case {
    const char *name;
    int hdr;
    const char *value;
    const char *path;
    const char *body;
    int status;
    const char *reason; /* NULL: expect an empty body */
};

static void
run(struct fixture *f, struct psim_req *req, struct psim_resp *resp)
{
    psim_resp_init(resp);
    psim_handle(&f->ps, req, resp);
}

static void
apns_req(struct fixture *f, struct psim_req *req, const char *path,
         const char *body)
{
    memset(req, 0, sizeof(*req));
    req->hdr[PSIM_H_METHOD] = SLICE_LIT("POST");
    req->hdr[PSIM_H_PATH] = slice_cstr(path ? path : "/3/device/" TOKEN);
    req->hdr[PSIM_H_AUTH] = slice_cstr(f->jwt);
    req->hdr[PSIM_H_APNS_TOPIC] = SLICE_LIT("com.example.phone.voip");
    req->hdr[PSIM_H_APNS_PUSH_TYPE] = SLICE_LIT("voip");
    req->body = slice_cstr(body ? body : "{\"aps\":{},\"call_id\":\"c1\"}");
}

static void
expect(const struct psim_resp *resp, int status, const char *reason,
       const char *name)
{
    if (resp->status != status)
        fail_msg("%s: status %d, want %d (%s)", name, resp->status, status,
                 resp->body.data ? resp->body.data : "");
    if (reason == NULL) {
        assert_int_equal(resp->body.len, 0);
        return;
    }
    json_t *o = json_loadb(resp->body.data, resp->body.len, 0, NULL);
    const char *got = json_string_value(json_object_get(o, "reason"));
    if (got == NULL || strcmp(got, reason) != 0)
        fail_msg("%s: reason %s, want %s", name, got ? got : "(none)", reason);
    json_decref(o);
}

static void
test_apns_table(void **state)
{
    struct fixture *f = *state;
    char big[5200], huge[4200];
    static char stale[1024], future[1024], wrongteam[1024], wrongkid[1024];
    EVP_PKEY *k = f->ps.keys[0].key;
    long long now = (long long)time(NULL);

    memset(big, ' ', sizeof(big));
    memcpy(big, "{\"a\":1}", 7);
    big[5121] = '\0'; /* 5121 bytes: over the voip limit */
    memset(huge, ' ', sizeof(huge));
    memcpy(huge, "{\"a\":1}", 7);
    huge[4097] = '\0';
    make_apns_jwt(k, "KID1234567", "TEAM123456", now - 3700, stale,
                  sizeof(stale));
    make_apns_jwt(k, "KID1234567", "TEAM123456", now + 600, future,
                  sizeof(future));
    make_apns_jwt(k, "KID1234567", "OTHERTEAM1", now, wrongteam,
                  sizeof(wrongteam));
    make_apns_jwt(k, "NOSUCHKEY1", "TEAM123456", now, wrongkid,
                  sizeof(wrongkid));

    const struct apns_case cases[] = {
        {"ok voip", -1, NULL, NULL, NULL, 200, NULL},
        {"alert ok", PSIM_H_APNS_TOPIC, "com.example.phone", NULL,
         "{\"aps\":{\"alert\":\"x\"}}", 0, NULL},
        {"GET", PSIM_H_METHOD, "GET", NULL, NULL, 405, "MethodNotAllowed"},
        {"bad path", -1, NULL, "/3/devices/x", NULL, 404, "BadPath"},
        {"no token", -1, NULL, "/3/device/", NULL, 400, "MissingDeviceToken"},
        {"odd token", -1, NULL, "/3/device/0123456789abcdef0", NULL, 400,
         "BadDeviceToken"},
        {"short token", -1, NULL, "/3/device/0123456789abcd", NULL, 400,
         "BadDeviceToken"},
        {"non-hex token", -1, NULL, "/3/device/0123456789abcdeg", NULL, 400,
         "BadDeviceToken"},
        {"no auth", PSIM_H_AUTH, NULL, NULL, NULL, 403, "MissingProviderToken"},
        {"basic auth", PSIM_H_AUTH, "basic abc", NULL, NULL, 403,
         "InvalidProviderToken"},
        {"garbage jwt", PSIM_H_AUTH, "bearer a.b.c", NULL, NULL, 403,
         "InvalidProviderToken"},
        {"stale iat", PSIM_H_AUTH, stale, NULL, NULL, 403,
         "ExpiredProviderToken"},
        {"future iat", PSIM_H_AUTH, future, NULL, NULL, 403,
         "InvalidProviderToken"},
        {"wrong team", PSIM_H_AUTH, wrongteam, NULL, NULL, 403,
         "InvalidProviderToken"},
        {"unknown kid", PSIM_H_AUTH, wrongkid, NULL, NULL, 403,
         "InvalidProviderToken"},
        {"no topic", PSIM_H_APNS_TOPIC, NULL, NULL, NULL, 400, "MissingTopic"},
        {"other app", PSIM_H_APNS_TOPIC, "com.other.app.voip", NULL, NULL, 400,
         "TopicDisallowed"},
        {"voip to bundle", PSIM_H_APNS_TOPIC, "com.example.phone", NULL, NULL,
         400, "BadTopic"},
        {"bad push type", PSIM_H_APNS_PUSH_TYPE, "ringing", NULL, NULL, 400,
         "InvalidPushType"},
        {"alert to voip topic", PSIM_H_APNS_PUSH_TYPE, "alert", NULL, NULL, 400,
         "BadTopic"},
        {"priority 7", PSIM_H_APNS_PRIORITY, "7", NULL, NULL, 400,
         "BadPriority"},
        {"priority 5", PSIM_H_APNS_PRIORITY, "5", NULL, NULL, 200, NULL},
        {"expiration x", PSIM_H_APNS_EXPIRATION, "soon", NULL, NULL, 400,
         "BadExpirationDate"},
        {"expiration 0", PSIM_H_APNS_EXPIRATION, "0", NULL, NULL, 200, NULL},
        {"collapse 65", PSIM_H_APNS_COLLAPSE_ID,
         "12345678901234567890123456789012345678901234567890123456789012345",
         NULL, NULL, 400, "BadCollapseId"},
        {"bad apns-id", PSIM_H_APNS_ID, "not-a-uuid", NULL, NULL, 400,
         "BadMessageId"},
        {"good apns-id", PSIM_H_APNS_ID, "eabeae54-14a8-11e5-b60b-1697f925ec7b",
         NULL, NULL, 200, NULL},
        {"empty payload", -1, NULL, NULL, "", 400, "PayloadEmpty"},
        {"array payload", -1, NULL, NULL, "[1]", 400, "BadPayload"},
        {"broken json", -1, NULL, NULL, "{\"aps\":", 400, "BadPayload"},
        {"voip 5121", -1, NULL, NULL, big, 413, "PayloadTooLarge"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct apns_case *c = &cases[i];
        struct psim_req req;
        struct psim_resp resp;
        int want = c->status;

        apns_req(f, &req, c->path, c->body);
        if (c->hdr >= 0)
            req.hdr[c->hdr] = c->value ? slice_cstr(c->value) : SLICE_NULL;
        if (i == 1) { /* alert to the bundle topic */
            req.hdr[PSIM_H_APNS_PUSH_TYPE] = SLICE_LIT("alert");
            want = 200;
        }
        run(f, &req, &resp);
        expect(&resp, want, c->reason, c->name);
        if (c->hdr == PSIM_H_APNS_ID && want == 200)
            assert_string_equal(resp.apns_id, c->value);
        else if (c->path == NULL || want != 404)
            assert_int_equal(strlen(resp.apns_id), 36);
        psim_resp_fini(&resp);
    }

    /* 4097 bytes is too much for an alert even though voip would fit. */
    struct psim_req req;
    struct psim_resp resp;
    apns_req(f, &req, NULL, huge);
    req.hdr[PSIM_H_APNS_TOPIC] = SLICE_LIT("com.example.phone");
    req.hdr[PSIM_H_APNS_PUSH_TYPE] = SLICE_LIT("alert");
    run(f, &req, &resp);
    expect(&resp, 413, "PayloadTooLarge", "alert 4097");
    psim_resp_fini(&resp);
    apns_req(f, &req, NULL, huge);
    run(f, &req, &resp);
    expect(&resp, 200, NULL, "voip 4097");
    psim_resp_fini(&resp);
}

/* Certificate trust (--apns-client-ca): the connection's verified
 * certificate replaces the JWT and decides the topics. */
static void
test_apns_certificate(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *name;
        enum psim_cert cert;
        const char *uid, *topic, *type, *auth;
        int status;
        const char *reason;
    } cases[] = {
        {"voip, no jwt", PSIM_CERT_OK, "com.example.phone",
         "com.example.phone.voip", "voip", NULL, 200, NULL},
        {"jwt ignored", PSIM_CERT_OK, "com.example.phone",
         "com.example.phone.voip", "voip", "bearer a.b.c", 200, NULL},
        {"bundle alert", PSIM_CERT_OK, "com.example.phone", "com.example.phone",
         "alert", NULL, 200, NULL},
        {"complication", PSIM_CERT_OK, "com.example.phone",
         "com.example.phone.complication", "complication", NULL, 200, NULL},
        {"no topic: the UID", PSIM_CERT_OK, "com.example.phone", NULL, "alert",
         NULL, 200, NULL},
        {"no topic, voip", PSIM_CERT_OK, "com.example.phone", NULL, "voip",
         NULL, 400, "BadTopic"},
        {"other app", PSIM_CERT_OK, "com.other.app", "com.example.phone.voip",
         "voip", NULL, 400, "TopicDisallowed"},
        {"not a cert topic", PSIM_CERT_OK, "com.example.phone",
         "com.example.phone.location-query", "location", NULL, 400,
         "TopicDisallowed"},
        {"prefix of the UID", PSIM_CERT_OK, "com.example.phone",
         "com.example.pho", "alert", NULL, 400, "TopicDisallowed"},
        {"wrong type for topic", PSIM_CERT_OK, "com.example.phone",
         "com.example.phone.voip", "alert", NULL, 400, "BadTopic"},
        {"no UID", PSIM_CERT_NO_UID, NULL, "com.example.phone.voip", "voip",
         NULL, 403, "BadCertificate"},
        {"no cert, no jwt", PSIM_CERT_NONE, NULL, "com.example.phone.voip",
         "voip", NULL, 403, "MissingProviderToken"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct psim_req req;
        struct psim_resp resp;

        apns_req(f, &req, NULL, NULL);
        req.cert = cases[i].cert;
        req.cert_uid = cases[i].uid ? slice_cstr(cases[i].uid) : SLICE_NULL;
        req.hdr[PSIM_H_AUTH] =
            cases[i].auth ? slice_cstr(cases[i].auth) : SLICE_NULL;
        req.hdr[PSIM_H_APNS_TOPIC] =
            cases[i].topic ? slice_cstr(cases[i].topic) : SLICE_NULL;
        req.hdr[PSIM_H_APNS_PUSH_TYPE] = slice_cstr(cases[i].type);
        run(f, &req, &resp);
        expect(&resp, cases[i].status, cases[i].reason, cases[i].name);
        psim_resp_fini(&resp);
    }

    /* The push record says how the request was trusted. */
    size_t len;
    char *js = psim_state_pushes_json(&f->ps.state, 0, &len);
    json_t *all = json_loadb(js, len, 0, NULL);
    json_t *pushes = json_object_get(all, "pushes");
    json_t *first = json_array_get(pushes, 0);
    json_t *last = json_array_get(pushes, json_array_size(pushes) - 1);
    assert_string_equal(json_string_value(json_object_get(first, "auth")),
                        "certificate");
    assert_string_equal(json_string_value(json_object_get(first, "cert_uid")),
                        "com.example.phone");
    assert_string_equal(json_string_value(json_object_get(last, "auth")),
                        "token");
    assert_null(json_object_get(last, "cert_uid"));
    json_decref(all);
    free(js);
}

static void
test_apns_dead_and_faults(void **state)
{
    struct fixture *f = *state;
    struct psim_req req;
    struct psim_resp resp;
    struct psim_fault fault = {.provider = PSIM_FCM,
                               .action = PSIM_FAULT_STATUS,
                               .remaining = 1,
                               .status = 500,
                               .retry_after_s = -1};

    assert_int_equal(psim_state_add_dead(&f->ps.state, SLICE_LIT(TOKEN)), 0);
    apns_req(f, &req, NULL, NULL);
    run(f, &req, &resp);
    expect(&resp, 410, "Unregistered", "dead");
    assert_non_null(strstr(resp.body.data, "\"timestamp\":"));
    psim_resp_fini(&resp);
    psim_state_reset(&f->ps.state);

    /* An FCM fault does not touch APNs; an APNs one applies count times. */
    assert_int_equal(psim_state_add_fault(&f->ps.state, &fault), 0);
    fault.provider = PSIM_APNS;
    fault.status = 429;
    fault.remaining = 2;
    fault.retry_after_s = 3;
    assert_int_equal(psim_state_add_fault(&f->ps.state, &fault), 0);
    for (int i = 0; i < 3; i++) {
        apns_req(f, &req, NULL, NULL);
        run(f, &req, &resp);
        if (i < 2) {
            expect(&resp, 429, "TooManyRequests", "fault 429");
            assert_string_equal(resp.retry_after, "3");
        } else {
            expect(&resp, 200, NULL, "after fault");
        }
        psim_resp_fini(&resp);
    }
    fault = (struct psim_fault){
        .provider = -1, .action = PSIM_FAULT_HANG, .remaining = 1};
    assert_int_equal(psim_state_add_fault(&f->ps.state, &fault), 0);
    apns_req(f, &req, NULL, NULL);
    run(f, &req, &resp);
    assert_int_equal(resp.action, PSIM_ACT_HANG);
    psim_resp_fini(&resp);

    /* expire_provider_tokens: the seen JWT fails, a fresh one works. */
    atomic_fetch_add(&f->ps.state.apns_expire_gen, 1);
    apns_req(f, &req, NULL, NULL);
    run(f, &req, &resp);
    expect(&resp, 403, "ExpiredProviderToken", "expired by fault");
    psim_resp_fini(&resp);
    make_apns_jwt(f->ps.keys[0].key, "KID1234567", "TEAM123456",
                  (long long)time(NULL) - 1, f->jwt, sizeof(f->jwt));
    apns_req(f, &req, NULL, NULL);
    run(f, &req, &resp);
    expect(&resp, 200, NULL, "fresh jwt");
    psim_resp_fini(&resp);

    /* The record: every request above, in order, with since. */
    size_t len;
    char *all = psim_state_pushes_json(&f->ps.state, 0, &len);
    json_t *o = json_loadb(all, len, 0, NULL);
    json_t *list = json_object_get(o, "pushes");
    assert_int_equal(json_array_size(list), 6); /* reset cleared the 410 */
    json_t *first = json_array_get(list, 0);
    assert_string_equal(json_string_value(json_object_get(first, "provider")),
                        "apns");
    assert_string_equal(json_string_value(json_object_get(first, "token")),
                        TOKEN);
    assert_int_equal(json_integer_value(json_object_get(first, "status")), 429);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(first, "headers"),
                                          "apns-push-type")),
        "voip");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(first, "payload"), "call_id")),
                        "c1");
    json_int_t seq3 =
        json_integer_value(json_object_get(json_array_get(list, 2), "seq"));
    free(all);
    json_decref(o);
    all = psim_state_pushes_json(&f->ps.state, (uint64_t)seq3, &len);
    o = json_loadb(all, len, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(o, "pushes")), 3);
    free(all);
    json_decref(o);
}

static char *
fcm_assertion(struct fixture *f, const char *aud, const char *scope,
              long long iat)
{
    json_t *h = json_pack("{s:s,s:s}", "alg", "RS256", "typ", "JWT");
    json_t *c =
        json_pack("{s:s,s:s,s:s,s:I,s:I}", "iss",
                  "sa@demo-proj.iam.gserviceaccount.com", "scope", scope, "aud",
                  aud, "iat", (json_int_t)iat, "exp", (json_int_t)(iat + 3600));
    struct buf b;

    buf_init(&b, 0);
    buf_append_cstr(&b, "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type"
                        "%3Ajwt-bearer&assertion=");
    assert_int_equal(
        jose_jwt_sign(JOSE_RS256, f->ps.accounts[0].key, h, c, &b), 0);
    json_decref(h);
    json_decref(c);
    return b.data;
}

/* POST /token; returns the access token (malloc'd) or NULL. */
static char *
get_token(struct fixture *f, const char *aud, const char *scope, int *status)
{
    char *form = fcm_assertion(f, aud, scope, (long long)time(NULL));
    struct psim_req req = {0};
    struct psim_resp resp;
    char *tok = NULL;

    req.hdr[PSIM_H_METHOD] = SLICE_LIT("POST");
    req.hdr[PSIM_H_PATH] = SLICE_LIT("/token");
    req.body = slice_cstr(form);
    run(f, &req, &resp);
    *status = resp.status;
    if (resp.status == 200) {
        json_t *o = json_loadb(resp.body.data, resp.body.len, 0, NULL);
        tok = xstrdup(json_string_value(json_object_get(o, "access_token")));
        assert_int_equal(json_integer_value(json_object_get(o, "expires_in")),
                         3600);
        json_decref(o);
    } else {
        assert_non_null(strstr(resp.body.data, "invalid_grant"));
    }
    psim_resp_fini(&resp);
    free(form);
    return tok;
}

static const char *
fcm_send(struct fixture *f, const char *bearer, const char *project,
         const char *body, int *status)
{
    static char code[64];
    char auth[256], path[128];
    struct psim_req req = {0};
    struct psim_resp resp;

    snprintf(auth, sizeof(auth), "Bearer %s", bearer);
    snprintf(path, sizeof(path), "/v1/projects/%s/messages:send", project);
    req.hdr[PSIM_H_METHOD] = SLICE_LIT("POST");
    req.hdr[PSIM_H_PATH] = slice_cstr(path);
    req.hdr[PSIM_H_AUTH] = slice_cstr(auth);
    req.body = slice_cstr(body);
    run(f, &req, &resp);
    *status = resp.status;
    json_t *o = json_loadb(resp.body.data, resp.body.len, 0, NULL);
    json_t *err = json_object_get(o, "error");
    json_t *d = json_array_get(json_object_get(err, "details"), 0);
    const char *s = json_string_value(json_object_get(d, "errorCode"));
    if (s == NULL)
        s = json_string_value(json_object_get(err, "status"));
    if (s == NULL)
        s = json_string_value(json_object_get(o, "name")) ? "OK" : "?";
    snprintf(code, sizeof(code), "%s", s);
    json_decref(o);
    psim_resp_fini(&resp);
    return code;
}

static void
test_fcm(void **state)
{
    struct fixture *f = *state;
    const char *fm = "https://www.googleapis.com/auth/firebase.messaging";
    int st;
    char *tok;

    assert_null(get_token(f, "https://example.com/token", fm, &st));
    assert_int_equal(st, 400);
    assert_null(get_token(f, TOKEN_URI, "https://x/other", &st));
    assert_int_equal(st, 400);
    tok = get_token(f, "https://127.0.0.1:4443/token", fm, &st);
    assert_non_null(tok);
    free(tok);
    tok = get_token(f, TOKEN_URI,
                    "openid "
                    "https://www.googleapis.com/auth/firebase.messaging",
                    &st);
    assert_non_null(tok);

    static const struct {
        const char *project, *body, *code;
        int status;
    } cases[] = {
        {"demo-proj",
         "{\"message\":{\"token\":\"dev-1:APA91b\",\"data\":{\"a\":\"b\"},"
         "\"android\":{\"priority\":\"HIGH\",\"ttl\":\"30s\","
         "\"collapse_key\":\"c\"}}}",
         "OK", 200},
        {"other-proj", "{\"message\":{\"token\":\"dev-1\"}}",
         "PERMISSION_DENIED", 403},
        {"demo-proj", "{\"message\":{\"token\":\"dev-1\",\"data\":{\"a\":1}}}",
         "INVALID_ARGUMENT", 400},
        {"demo-proj",
         "{\"message\":{\"token\":\"dev-1\",\"data\":{\"google.x\":\"1\"}}}",
         "INVALID_ARGUMENT", 400},
        {"demo-proj",
         "{\"message\":{\"token\":\"dev-1\",\"android\":{\"priority\":"
         "\"URGENT\"}}}",
         "INVALID_ARGUMENT", 400},
        {"demo-proj",
         "{\"message\":{\"token\":\"dev-1\",\"android\":{\"ttl\":\"30\"}}}",
         "INVALID_ARGUMENT", 400},
        {"demo-proj",
         "{\"message\":{\"token\":\"dev-1\",\"android\":{\"ttl\":"
         "\"2419201s\"}}}",
         "INVALID_ARGUMENT", 400},
        {"demo-proj",
         "{\"message\":{\"token\":\"dev-1\",\"android\":{\"ttl\":\"0.5s\"}}}",
         "OK", 200},
        {"demo-proj", "{\"message\":{}}", "INVALID_ARGUMENT", 400},
        {"demo-proj", "not json", "INVALID_ARGUMENT", 400},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *code =
            fcm_send(f, tok, cases[i].project, cases[i].body, &st);
        if (st != cases[i].status || strcmp(code, cases[i].code) != 0)
            fail_msg("fcm case %zu: %d %s, want %d %s", i, st, code,
                     cases[i].status, cases[i].code);
    }
    assert_string_equal(fcm_send(f, "ya29.unknown", "demo-proj",
                                 "{\"message\":{\"token\":\"dev-1\"}}", &st),
                        "UNAUTHENTICATED");
    assert_int_equal(st, 401);

    psim_state_add_dead(&f->ps.state, SLICE_LIT("dev-1"));
    assert_string_equal(fcm_send(f, tok, "demo-proj",
                                 "{\"message\":{\"token\":\"dev-1\"}}", &st),
                        "UNREGISTERED");
    assert_int_equal(st, 404);

    atomic_fetch_add(&f->ps.state.fcm_expire_gen, 1);
    assert_string_equal(fcm_send(f, tok, "demo-proj",
                                 "{\"message\":{\"token\":\"dev-2\"}}", &st),
                        "UNAUTHENTICATED");
    free(tok);
    tok = get_token(f, TOKEN_URI, fm, &st);
    assert_string_equal(fcm_send(f, tok, "demo-proj",
                                 "{\"message\":{\"token\":\"dev-2\"}}", &st),
                        "OK");
    free(tok);

    size_t len;
    char *stats = psim_state_stats_json(&f->ps.state, &len);
    json_t *o = json_loadb(stats, len, 0, NULL);
    json_t *fcm = json_object_get(json_object_get(o, "pushes"), "fcm");
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(fcm, "by_status"), "200")),
                     3);
    assert_int_equal(json_integer_value(json_object_get(o, "tokens_issued")),
                     3);
    json_decref(o);
    free(stats);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_apns_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apns_certificate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apns_dead_and_faults, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fcm, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
