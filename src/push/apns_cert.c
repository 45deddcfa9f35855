/*
 * apns_cert: read and check the APNs provider certificate (apns_cert.h).
 * Runs once at start (push_client_new) and per push check, so nothing
 * here is cached.
 */
#include "push/apns_cert.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "push/push.h"

/* PEM password callback: no password. Without it OpenSSL would prompt on
 * the terminal for an encrypted key, and a daemon would hang or fail
 * obscurely. */
static int
no_password(char *buf, int size, int rwflag, void *u)
{
    return 0;
}

static int
open_file(const char *path, FILE **f, char *err, size_t errlen)
{
    *f = fopen(path, "r");
    if (*f == NULL) {
        int rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return rc;
    }
    return 0;
}

static int64_t
asn1_time_s(const ASN1_TIME *t)
{
    struct tm tm;

    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

static void
utc(int64_t s, char *out, size_t len)
{
    time_t t = (time_t)s;
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL ||
        strftime(out, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(out, len, "%lld", (long long)s);
}

static void
read_facts(X509 *x, struct push_apns_cert *out)
{
    X509_NAME *name = X509_get_subject_name(x);
    BIO *b = BIO_new(BIO_s_mem());
    unsigned long flags =
        (XN_FLAG_SEP_CPLUS_SPC | XN_FLAG_FN_SN | ASN1_STRFLGS_RFC2253) &
        ~(unsigned long)ASN1_STRFLGS_ESC_MSB;
    unsigned char *utf8 = NULL;
    int i, n;

    if (b != NULL && X509_NAME_print_ex(b, name, 0, flags) >= 0) {
        n = BIO_read(b, out->subject, (int)sizeof(out->subject) - 1);
        out->subject[n > 0 ? n : 0] = '\0';
    }
    BIO_free(b);
    i = X509_NAME_get_index_by_NID(name, NID_userId, -1);
    if (i >= 0) {
        n = ASN1_STRING_to_UTF8(
            &utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
        if (n > 0 && (size_t)n < sizeof(out->uid) &&
            memchr(utf8, '\0', (size_t)n) == NULL) {
            memcpy(out->uid, utf8, (size_t)n);
            out->uid[n] = '\0';
        }
        OPENSSL_free(utf8);
    }
    out->not_before_s = asn1_time_s(X509_get0_notBefore(x));
    out->not_after_s = asn1_time_s(X509_get0_notAfter(x));
}

int
push_apns_cert_load(const char *cert_file, const char *key_file, int64_t now_s,
                    struct push_apns_cert *out, char *err, size_t errlen)
{
    X509 *x = NULL;
    EVP_PKEY *key = NULL;
    FILE *f;
    char when[40];
    int rc;

    memset(out, 0, sizeof(*out));
    rc = open_file(cert_file, &f, err, errlen);
    if (rc < 0)
        return rc;
    x = PEM_read_X509(f, NULL, no_password, NULL);
    fclose(f);
    if (x == NULL) {
        snprintf(err, errlen,
                 "%s: no PEM certificate in it (convert a .p12 "
                 "with openssl pkcs12 -nodes -clcerts)",
                 cert_file);
        rc = -EINVAL;
        goto out;
    }
    read_facts(x, out);
    rc = open_file(key_file, &f, err, errlen);
    if (rc < 0)
        goto out;
    key = PEM_read_PrivateKey(f, NULL, no_password, NULL);
    fclose(f);
    rc = -EINVAL;
    if (key == NULL) {
        snprintf(err, errlen,
                 "%s: no unencrypted PEM private key in it "
                 "(export it with -nodes)",
                 key_file);
        goto out;
    }
    if (X509_check_private_key(x, key) != 1) {
        snprintf(err, errlen,
                 "%s: private key does not match the "
                 "certificate %s (%s)",
                 key_file, cert_file, out->subject);
        goto out;
    }
    if (out->uid[0] == '\0') {
        snprintf(err, errlen,
                 "%s: no UID (bundle id) in the subject (%s): "
                 "not an APNs provider certificate",
                 cert_file, out->subject);
        goto out;
    }
    rc = -EKEYEXPIRED;
    if (now_s >= out->not_after_s) {
        utc(out->not_after_s, when, sizeof(when));
        snprintf(err, errlen,
                 "%s: certificate expired on %s (%s): renew it "
                 "at developer.apple.com",
                 cert_file, when, out->subject);
        goto out;
    }
    if (now_s < out->not_before_s) {
        utc(out->not_before_s, when, sizeof(when));
        snprintf(err, errlen,
                 "%s: certificate not valid before %s (%s): "
                 "check the clock",
                 cert_file, when, out->subject);
        goto out;
    }
    rc = 0;
out:
    ERR_clear_error(); /* this thread's queue stays clean for curl */
    EVP_PKEY_free(key);
    X509_free(x);
    return rc;
}

bool
push_apns_cert_topic_ok(const struct push_apns_cert *c, const char *topic)
{
    static const char *const sfx[] = {"", ".voip", ".complication"};
    size_t u = strlen(c->uid);

    if (u == 0 || strncmp(topic, c->uid, u) != 0)
        return false;
    for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++)
        if (strcmp(topic + u, sfx[i]) == 0)
            return true;
    return false;
}

long
push_apns_cert_days_left(const struct push_apns_cert *c, int64_t now_s)
{
    int64_t d = c->not_after_s - now_s;

    /* Round towards minus infinity: 1 s after expiry is day -1. */
    return (long)(d >= 0 ? d / 86400 : -((-d + 86399) / 86400));
}

void
push_apns_cert_describe(const struct push_apns_cert *c, int64_t now_s,
                        char *out, size_t len)
{
    char when[40];
    long days = push_apns_cert_days_left(c, now_s);

    utc(c->not_after_s, when, sizeof(when));
    if (len == 0)
        return;
    if (c->uid[0])
        snprintf(out, len,
                 "%s; topics %s, %s.voip, %s.complication; "
                 "%s %s (%ld days %s)",
                 c->subject, c->uid, c->uid, c->uid,
                 days < 0 ? "expired" : "expires", when,
                 days < 0 ? -days : days, days < 0 ? "ago" : "left");
    else
        snprintf(out, len, "%s; no UID: no topics; %s %s", c->subject,
                 days < 0 ? "expired" : "expires", when);
}

void
push_apns_cert_note(const struct push_apns_conf *a, char *detail, size_t len)
{
    struct push_apns_cert ci;
    char err[512], facts[512];
    int64_t now = (int64_t)time(NULL);
    size_t n = strlen(detail);

    if (a->cert_file == NULL || n + 1 >= len)
        return;
    (void)push_apns_cert_load(
        a->cert_file, a->cert_key_file ? a->cert_key_file : a->cert_file, now,
        &ci, err, sizeof(err));
    if (ci.subject[0] == '\0')
        return; /* not even the certificate could be read */
    push_apns_cert_describe(&ci, now, facts, sizeof(facts));
    snprintf(detail + n, len - n, "; certificate %s", facts);
}
