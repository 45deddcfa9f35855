/*
 * apns_cert_test: reading and checking the APNs provider certificate
 * (push/apns_cert.h): good, key of another certificate, expired, not yet
 * valid, no UID, encrypted key, missing file, certificate and key in one
 * file; the topics and the one-line description. Certificates are made
 * here with OpenSSL and written to temporary files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "push/apns_cert.h"
#include "push/push.h"

#define BUNDLE "com.example.phone"

static char dir[] = "/tmp/apns_cert_testXXXXXX";

/* Self-signed certificate for key, valid from now+nb_s to now+na_s, with
 * subject UID uid (NULL: none) and CN. */
static X509 *
make_cert(EVP_PKEY *key, const char *uid, long nb_s, long na_s)
{
    X509 *x = X509_new();
    X509_NAME *n = X509_get_subject_name(x);

    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_gmtime_adj(X509_getm_notBefore(x), nb_s);
    X509_gmtime_adj(X509_getm_notAfter(x), na_s);
    X509_set_pubkey(x, key);
    if (uid)
        X509_NAME_add_entry_by_NID(n, NID_userId, MBSTRING_ASC,
                                   (const unsigned char *)uid, -1, -1, 0);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
                               (const unsigned char *)"Apple Push Services", -1,
                               -1, 0);
    X509_set_issuer_name(x, n);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    return x;
}

static const char *
path(const char *name)
{
    static char p[8][256];
    static int i;

    i = (i + 1) % 8;
    snprintf(p[i], sizeof(p[i]), "%s/%s", dir, name);
    return p[i];
}

static void
write_pem(const char *name, X509 *x, EVP_PKEY *key, bool encrypt)
{
    FILE *f = fopen(path(name), "w");

    assert_non_null(f);
    if (x)
        assert_int_equal(PEM_write_X509(f, x), 1);
    if (key)
        assert_int_equal(
            PEM_write_PrivateKey(f, key, encrypt ? EVP_aes_128_cbc() : NULL,
                                 (unsigned char *)(encrypt ? "pw" : NULL),
                                 encrypt ? 2 : 0, NULL, NULL),
            1);
    fclose(f);
}

static int
setup(void **state)
{
    EVP_PKEY *k1 = EVP_EC_gen("P-256"), *k2 = EVP_EC_gen("P-256");
    X509 *good, *expired, *future, *nouid;

    assert_non_null(mkdtemp(dir));
    good = make_cert(k1, BUNDLE, -3600, 100L * 86400 + 3600);
    expired = make_cert(k1, BUNDLE, -10L * 86400, -86400 + 3600); /* -1 d */
    future = make_cert(k1, BUNDLE, 86400, 10L * 86400);
    nouid = make_cert(k1, NULL, -3600, 86400 * 30);
    write_pem("good.pem", good, NULL, false);
    write_pem("expired.pem", expired, NULL, false);
    write_pem("future.pem", future, NULL, false);
    write_pem("nouid.pem", nouid, NULL, false);
    write_pem("key.pem", NULL, k1, false);
    write_pem("other.key", NULL, k2, false);
    write_pem("encrypted.key", NULL, k1, true);
    write_pem("both.pem", good, k1, false); /* pkcs12 -nodes style */
    X509_free(good);
    X509_free(expired);
    X509_free(future);
    X509_free(nouid);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
    return 0;
}

static int
teardown(void **state)
{
    const char *files[] = {"good.pem",      "expired.pem", "future.pem",
                           "nouid.pem",     "key.pem",     "other.key",
                           "encrypted.key", "both.pem"};

    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        unlink(path(files[i]));
    rmdir(dir);
    return 0;
}

static int
load(const char *cert, const char *key, struct push_apns_cert *c, char *err,
     size_t errlen)
{
    err[0] = '\0';
    return push_apns_cert_load(path(cert), path(key), (int64_t)time(NULL), c,
                               err, errlen);
}

static void
test_good(void **state)
{
    struct push_apns_cert c;
    char err[512], line[512];
    int64_t now = (int64_t)time(NULL);

    assert_int_equal(load("good.pem", "key.pem", &c, err, sizeof(err)), 0);
    assert_string_equal(c.uid, BUNDLE);
    assert_string_equal(c.subject, "UID=" BUNDLE ", CN=Apple Push Services");
    assert_true(c.not_after_s > now + 100L * 86400 &&
                c.not_after_s <= now + 100L * 86400 + 3600 + 5);
    assert_int_equal(push_apns_cert_days_left(&c, now), 100);
    push_apns_cert_describe(&c, now, line, sizeof(line));
    assert_non_null(strstr(line, "UID=" BUNDLE ", CN=Apple Push Services; "
                                 "topics " BUNDLE ", " BUNDLE ".voip, " BUNDLE
                                 ".complication; expires 20"));
    assert_non_null(strstr(line, " UTC (100 days left)"));
    /* certificate and key in one file */
    assert_int_equal(load("both.pem", "both.pem", &c, err, sizeof(err)), 0);
    assert_string_equal(c.uid, BUNDLE);
}

static void
test_broken(void **state)
{
    static const struct {
        const char *cert, *key;
        int rc;
        const char *text;
    } cases[] = {
        {"good.pem", "other.key", -EINVAL,
         "other.key: private key does not match the certificate"},
        {"expired.pem", "key.pem", -EKEYEXPIRED,
         "expired.pem: certificate expired on 20"},
        {"future.pem", "key.pem", -EKEYEXPIRED,
         "future.pem: certificate not valid before 20"},
        {"nouid.pem", "key.pem", -EINVAL,
         "nouid.pem: no UID (bundle id) in the subject (CN=Apple Push "
         "Services): not an APNs provider certificate"},
        {"good.pem", "encrypted.key", -EINVAL,
         "encrypted.key: no unencrypted PEM private key in it"},
        {"missing.pem", "key.pem", -ENOENT,
         "missing.pem: No such file or directory"},
        {"key.pem", "key.pem", -EINVAL, "key.pem: no PEM certificate in it"},
    };
    struct push_apns_cert c;
    char err[512];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = load(cases[i].cert, cases[i].key, &c, err, sizeof(err));
        if (rc != cases[i].rc || strstr(err, cases[i].text) == NULL)
            fail_msg("%s + %s: rc %d err \"%s\", want %d \"%s\"", cases[i].cert,
                     cases[i].key, rc, err, cases[i].rc, cases[i].text);
    }
    /* The facts are there even when the certificate is refused. */
    assert_int_equal(load("expired.pem", "key.pem", &c, err, sizeof(err)),
                     -EKEYEXPIRED);
    assert_string_equal(c.uid, BUNDLE);
    assert_non_null(strstr(err, "(UID=" BUNDLE ", CN=Apple Push Services)"));
    assert_int_equal(push_apns_cert_days_left(&c, (int64_t)time(NULL)), -1);
}

static void
test_topics(void **state)
{
    struct push_apns_cert c = {.uid = BUNDLE};
    struct push_apns_cert none = {.uid = ""};

    assert_true(push_apns_cert_topic_ok(&c, BUNDLE));
    assert_true(push_apns_cert_topic_ok(&c, BUNDLE ".voip"));
    assert_true(push_apns_cert_topic_ok(&c, BUNDLE ".complication"));
    assert_false(push_apns_cert_topic_ok(&c, BUNDLE ".location-query"));
    assert_false(push_apns_cert_topic_ok(&c, BUNDLE "x"));
    assert_false(push_apns_cert_topic_ok(&c, "com.example.phon"));
    assert_false(push_apns_cert_topic_ok(&c, "com.other.app.voip"));
    assert_false(push_apns_cert_topic_ok(&none, ""));
    assert_false(push_apns_cert_topic_ok(&none, ".voip"));
}

/* The push check's note: appended after the detail, also for an expired
 * certificate; nothing when the file cannot be read. */
static void
test_note(void **state)
{
    struct push_apns_conf a = {.cert_file = path("expired.pem"),
                               .cert_key_file = path("key.pem")};
    char detail[768] = "no answer";

    push_apns_cert_note(&a, detail, sizeof(detail));
    assert_non_null(strstr(detail, "no answer; certificate UID=" BUNDLE));
    assert_non_null(strstr(detail, " UTC (1 days ago)"));
    a.cert_file = path("missing.pem");
    snprintf(detail, sizeof(detail), "x");
    push_apns_cert_note(&a, detail, sizeof(detail));
    assert_string_equal(detail, "x");
    a.cert_file = path("good.pem");
    char small[24] = "detail";
    push_apns_cert_note(&a, small, sizeof(small));
    assert_string_equal(small, "detail; certificate UID");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_broken),
        cmocka_unit_test(test_topics),
        cmocka_unit_test(test_note),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
