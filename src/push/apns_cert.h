/*
 * apns_cert: the APNs provider certificate of certificate-based trust
 * ([apns] cert_file + cert_key_file), read and checked before any push so
 * that a broken one is a clear error at start, in the push check and in
 * push-send, rather than a TLS failure at the first call.
 *
 * Apple's "Apple Push Notification service SSL (Sandbox & Production)"
 * certificate names the app in its subject UID (OID 0.9.2342.19200300.
 * 100.1.1): the bundle id. Kept simple (as pushsim): its topics are
 * <UID>, <UID>.voip and <UID>.complication; the topics extension
 * 1.2.840.113635.100.6.3.6 is not read.
 */
#ifndef PUSHPBX_PUSH_APNS_CERT_H
#define PUSHPBX_PUSH_APNS_CERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Facts of one certificate, for messages and the push check. */
struct push_apns_cert {
    char subject[256];                 /* one line, "UID=..., CN=..., O=..." */
    char uid[128];                     /* subject UID = bundle id; "" = none */
    int64_t not_before_s, not_after_s; /* UNIX seconds */
};

/* Read cert_file (PEM; its first certificate is the client's, a chain or
 * the key may follow) and key_file (PEM private key, unencrypted; may be
 * the same file) and check them at time now_s: key matches certificate,
 * certificate valid now, subject has a UID. *out is filled as far as the
 * certificate could be read (also on validity and UID errors, so that a
 * check can show the facts). Returns 0; -ENOENT/-EACCES... (errno of an
 * unreadable file), -EINVAL (no certificate, no usable key, key does not
 * match, no UID), -EKEYEXPIRED (expired or not yet valid), each with
 * "file: reason" in err. Any thread. */
int push_apns_cert_load(const char *cert_file, const char *key_file,
                        int64_t now_s, struct push_apns_cert *out, char *err,
                        size_t errlen);

/* Is topic one of c's topics (<UID>, <UID>.voip, <UID>.complication)? */
bool push_apns_cert_topic_ok(const struct push_apns_cert *c, const char *topic);

/* Days from now_s to the end of validity, rounded down; negative once
 * expired. */
long push_apns_cert_days_left(const struct push_apns_cert *c, int64_t now_s);

/* One line for people: subject, topics, expiry date and days left, e.g.
 * "UID=com.example.phone, CN=...; topics com.example.phone(.voip,
 * .complication); expires 2027-01-02 00:00:00 UTC (25 days left)".
 * Always NUL-terminates out (truncating). */
void push_apns_cert_describe(const struct push_apns_cert *c, int64_t now_s,
                             char *out, size_t len);

#endif
