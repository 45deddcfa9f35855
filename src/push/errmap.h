/*
 * errmap: what to do with a provider's answer. One table per provider,
 * kept apart from the I/O so it can be tested row by row
 * (tests/unit/push/errmap_test.c) against protocols.md §2.7 and §3.6.
 */
#ifndef PUSHPBX_PUSH_ERRMAP_H
#define PUSHPBX_PUSH_ERRMAP_H

#include <stdbool.h>
#include <stddef.h>

enum push_action {
    PUSH_ACT_DONE,   /* delivered */
    PUSH_ACT_DEAD,   /* token gone: tell the caller to delete the device */
    PUSH_ACT_RETRY,  /* transient: back off and retry while time remains */
    PUSH_ACT_REAUTH, /* our credential was refused: refresh once, retry */
    PUSH_ACT_FAIL,   /* permanent: report with the reason */
};

/* APNs: HTTP status and the "reason" of the JSON body ("" if none). */
enum push_action push_apns_classify(long status, const char *reason);

/* FCM: HTTP status and the FcmError errorCode (else the error "status",
 * else ""), as extracted by push_fcm_reason. */
enum push_action push_fcm_classify(long status, const char *reason);

/* Transport failure (curl's CURLcode as int): retry, except errors that
 * only a configuration change can fix (TLS trust, bad URL, client cert). */
enum push_action push_curl_classify(int curl_code);

/* Did the server refuse our TLS client certificate? curl_err is curl's
 * error buffer of a failed transfer ("OpenSSL SSL_read: ...: tlsv1 alert
 * unknown ca, errno 0"). A TLS alert about the certificate (unknown ca,
 * certificate expired/revoked/unknown, bad or unsupported certificate,
 * certificate required, access denied) writes "certificate refused: <alert>"
 * into out (cap >= 1) and returns true: only a new certificate fixes that,
 * so the push fails rather than retries. */
bool push_tls_cert_refused(const char *curl_err, char *out, size_t cap);

/* Extract the reason from an APNs error body {"reason":".."} into out. */
void push_apns_reason(const char *body, size_t len, char *out, size_t cap);

/* Extract from an FCM/Google error body: details[].errorCode of the
 * FcmError if present, else error.status, else OAuth's "error" string. */
void push_fcm_reason(const char *body, size_t len, char *out, size_t cap);

const char *push_action_name(enum push_action a);

#endif
