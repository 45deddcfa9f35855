/*
 * errmap_test: the provider answer -> action tables, row by row, as
 * protocols.md §2.7 (APNs) and §3.6 (FCM) and product.md rule 9 say.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "push/errmap.h"

static void
test_apns_table(void **state)
{
    static const struct {
        long status;
        const char *reason;
        enum push_action act;
    } v[] = {
        { 200, "", PUSH_ACT_DONE },
        { 410, "Unregistered", PUSH_ACT_DEAD },
        { 410, "ExpiredToken", PUSH_ACT_DEAD },
        { 400, "BadDeviceToken", PUSH_ACT_DEAD },
        { 400, "DeviceTokenNotForTopic", PUSH_ACT_DEAD },
        { 400, "BadTopic", PUSH_ACT_FAIL },
        { 400, "TopicDisallowed", PUSH_ACT_FAIL },
        { 400, "BadCollapseId", PUSH_ACT_FAIL },
        { 400, "PayloadEmpty", PUSH_ACT_FAIL },
        { 400, "IdleTimeout", PUSH_ACT_RETRY },
        { 403, "ExpiredProviderToken", PUSH_ACT_REAUTH },
        { 403, "InvalidProviderToken", PUSH_ACT_REAUTH },
        { 403, "MissingProviderToken", PUSH_ACT_FAIL },
        { 403, "BadCertificate", PUSH_ACT_FAIL },
        { 404, "BadPath", PUSH_ACT_FAIL },
        { 405, "MethodNotAllowed", PUSH_ACT_FAIL },
        { 413, "PayloadTooLarge", PUSH_ACT_FAIL },
        { 429, "TooManyRequests", PUSH_ACT_RETRY },
        { 429, "TooManyProviderTokenUpdates", PUSH_ACT_RETRY },
        { 500, "InternalServerError", PUSH_ACT_RETRY },
        { 503, "ServiceUnavailable", PUSH_ACT_RETRY },
        { 503, "Shutdown", PUSH_ACT_RETRY },
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        enum push_action a = push_apns_classify(v[i].status, v[i].reason);
        if (a != v[i].act)
            fail_msg("apns %ld %s: got %s want %s", v[i].status, v[i].reason,
                     push_action_name(a), push_action_name(v[i].act));
    }
}

static void
test_fcm_table(void **state)
{
    static const struct {
        long status;
        const char *reason;
        enum push_action act;
    } v[] = {
        { 200, "", PUSH_ACT_DONE },
        { 404, "UNREGISTERED", PUSH_ACT_DEAD },
        { 404, "", PUSH_ACT_DEAD },
        { 400, "UNREGISTERED", PUSH_ACT_DEAD },
        { 400, "INVALID_ARGUMENT", PUSH_ACT_FAIL },
        { 403, "SENDER_ID_MISMATCH", PUSH_ACT_FAIL },
        { 403, "PERMISSION_DENIED", PUSH_ACT_FAIL },
        { 401, "UNAUTHENTICATED", PUSH_ACT_REAUTH },
        { 401, "", PUSH_ACT_REAUTH },
        { 401, "THIRD_PARTY_AUTH_ERROR", PUSH_ACT_FAIL },
        { 429, "QUOTA_EXCEEDED", PUSH_ACT_RETRY },
        { 500, "INTERNAL", PUSH_ACT_RETRY },
        { 503, "UNAVAILABLE", PUSH_ACT_RETRY },
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        enum push_action a = push_fcm_classify(v[i].status, v[i].reason);
        if (a != v[i].act)
            fail_msg("fcm %ld %s: got %s want %s", v[i].status, v[i].reason,
                     push_action_name(a), push_action_name(v[i].act));
    }
}

static void
test_curl_table(void **state)
{
    assert_int_equal(push_curl_classify(CURLE_OK), PUSH_ACT_DONE);
    assert_int_equal(push_curl_classify(CURLE_OPERATION_TIMEDOUT),
                     PUSH_ACT_RETRY);
    assert_int_equal(push_curl_classify(CURLE_COULDNT_CONNECT),
                     PUSH_ACT_RETRY);
    assert_int_equal(push_curl_classify(CURLE_HTTP2_STREAM), PUSH_ACT_RETRY);
    assert_int_equal(push_curl_classify(CURLE_HTTP2), PUSH_ACT_RETRY);
    assert_int_equal(push_curl_classify(CURLE_RECV_ERROR), PUSH_ACT_RETRY);
    assert_int_equal(push_curl_classify(CURLE_GOT_NOTHING), PUSH_ACT_RETRY);
    assert_int_equal(push_curl_classify(CURLE_PEER_FAILED_VERIFICATION),
                     PUSH_ACT_FAIL);
    assert_int_equal(push_curl_classify(CURLE_SSL_CACERT_BADFILE),
                     PUSH_ACT_FAIL);
    assert_int_equal(push_curl_classify(CURLE_URL_MALFORMAT), PUSH_ACT_FAIL);
}

static void
test_reason_extraction(void **state)
{
    char r[64];
    const char *fcm =
        "{\"error\":{\"code\":404,\"message\":\"Requested entity was not "
        "found.\",\"status\":\"NOT_FOUND\",\"details\":[{\"@type\":\"type."
        "googleapis.com/google.firebase.fcm.v1.FcmError\",\"errorCode\":"
        "\"UNREGISTERED\"}]}}";
    const char *fcm_nodetail =
        "{\"error\":{\"code\":401,\"message\":\"x\",\"status\":"
        "\"UNAUTHENTICATED\"}}";
    const char *oauth = "{\"error\":\"invalid_grant\",\"error_description\""
                        ":\"bad sig\"}";
    const char *apns = "{\"reason\":\"Unregistered\",\"timestamp\":17}";

    push_apns_reason(apns, strlen(apns), r, sizeof(r));
    assert_string_equal(r, "Unregistered");
    push_apns_reason("", 0, r, sizeof(r));
    assert_string_equal(r, "");
    push_apns_reason("not json", 8, r, sizeof(r));
    assert_string_equal(r, "");
    push_fcm_reason(fcm, strlen(fcm), r, sizeof(r));
    assert_string_equal(r, "UNREGISTERED");
    push_fcm_reason(fcm_nodetail, strlen(fcm_nodetail), r, sizeof(r));
    assert_string_equal(r, "UNAUTHENTICATED");
    push_fcm_reason(oauth, strlen(oauth), r, sizeof(r));
    assert_string_equal(r, "invalid_grant");
    push_fcm_reason(apns, strlen(apns), r, 4); /* truncates, terminates */
    assert_string_equal(r, "");
    push_apns_reason(apns, strlen(apns), r, 4);
    assert_string_equal(r, "Unr");
}

/* curl's error buffer after APNs ended the TLS handshake with an alert:
 * TLS 1.3 reports it on the first read, TLS 1.2 during the connect. */
static void
test_tls_cert_refused(void **state)
{
    static const struct {
        const char *err, *want; /* want NULL: not a certificate refusal */
    } cases[] = {
        {"OpenSSL SSL_read: OpenSSL/3.0.19: error:0A000418:SSL routines::"
         "tlsv1 alert unknown ca, errno 0",
         "certificate refused: unknown ca"},
        {"OpenSSL SSL_read: OpenSSL/3.0.19: error:0A000415:SSL routines::"
         "sslv3 alert certificate expired, errno 0",
         "certificate refused: certificate expired"},
        {"OpenSSL/3.0.19: error:0A000412:SSL routines::sslv3 alert bad "
         "certificate",
         "certificate refused: bad certificate"},
        {"error:0A000414:SSL routines::sslv3 alert certificate revoked",
         "certificate refused: certificate revoked"},
        {"error:0A00045C:SSL routines::tlsv13 alert certificate required, "
         "errno 0",
         "certificate refused: certificate required"},
        {"OpenSSL SSL_read: error:0A000438:SSL routines::tlsv1 alert "
         "internal error, errno 0",
         NULL},
        {"SSL certificate problem: unable to get local issuer certificate",
         NULL},
        {"Failure when receiving data from the peer", NULL},
        {"", NULL},
        {NULL, NULL},
    };
    char r[48];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(r, sizeof(r), "untouched");
        bool got = push_tls_cert_refused(cases[i].err, r, sizeof(r));
        if (cases[i].want == NULL) {
            assert_false(got);
            assert_string_equal(r, "untouched");
        } else {
            assert_true(got);
            assert_string_equal(r, cases[i].want);
        }
    }
    /* Truncated to the caller's buffer, terminated. */
    char small[12];
    assert_true(push_tls_cert_refused(cases[0].err, small, sizeof(small)));
    assert_string_equal(small, "certificate");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apns_table),
        cmocka_unit_test(test_fcm_table),
        cmocka_unit_test(test_curl_table),
        cmocka_unit_test(test_reason_extraction),
        cmocka_unit_test(test_tls_cert_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
