/*
 * admin_util_test: bearer check, extension numbers, token redaction, random
 * tokens, QR encoders (PNG structure and CRCs, SVG shape) and the
 * provisioning table (put/get/replace/delete, survives reopening: its rows
 * live in the store's database).
 */
#include <setjmp.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "admin/admin.h"
#include "admin/admin_int.h"
#include "store/store.h"

static void
test_bearer(void **state)
{
    const char *tok = "0123456789abcdef";

    assert_true(admin_bearer_ok("Bearer 0123456789abcdef", tok));
    assert_true(admin_bearer_ok("bearer 0123456789abcdef", tok));
    assert_false(admin_bearer_ok("Bearer 0123456789abcdeX", tok));
    assert_false(admin_bearer_ok("Bearer 0123456789abcde", tok));
    assert_false(admin_bearer_ok("Bearer 0123456789abcdef0", tok));
    assert_false(admin_bearer_ok("Basic 0123456789abcdef", tok));
    assert_false(admin_bearer_ok("0123456789abcdef", tok));
    assert_false(admin_bearer_ok(NULL, tok));
    assert_false(admin_bearer_ok("Bearer ", ""));
}

static void
test_number(void **state)
{
    assert_true(admin_number_ok("100"));
    assert_true(admin_number_ok("alice.b-c_d+1"));
    assert_false(admin_number_ok(""));
    assert_false(admin_number_ok(NULL));
    assert_false(admin_number_ok("1 0"));
    assert_false(admin_number_ok("../x"));
    assert_false(admin_number_ok("a/b"));
    assert_true(admin_number_ok("12345678901234567890123456789012"));
    assert_false(admin_number_ok("123456789012345678901234567890123"));
}

static void
test_redact(void **state)
{
    char out[256];

    admin_redact_uri("sip:100@1.2.3.4;pn-provider=apns;pn-prid="
                     "ABCDEF0123456789ABCDEF;pn-param=x.voip",
                     out, sizeof(out));
    assert_string_equal(out, "sip:100@1.2.3.4;pn-provider=apns;pn-prid="
                             "ABCDEF01...;pn-param=x.voip");
    admin_redact_uri("<sip:1@h;pn-prid=SHORT>", out, sizeof(out));
    assert_string_equal(out, "<sip:1@h;pn-prid=SHORT>");
    admin_redact_uri("sip:1@h;xpn-prid=LONGLONGLONG", out, sizeof(out));
    assert_string_equal(out, "sip:1@h;xpn-prid=LONGLONGLONG");
    admin_redact_uri("sip:100@host", out, 6);
    assert_string_equal(out, "sip:1");
}

static void
test_random(void **state)
{
    char a[33], b[33];

    assert_int_equal(admin_random_hex(a, 16), 0);
    assert_int_equal(admin_random_hex(b, 16), 0);
    assert_int_equal(strlen(a), 32);
    assert_int_equal(strspn(a, "0123456789abcdef"), 32);
    assert_string_not_equal(a, b);
}

static uint32_t
be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

static uint32_t
crc(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
    }
    return ~c;
}

static void
test_qr_png(void **state)
{
    size_t len;
    unsigned char *png =
        admin_qr_png("http://127.0.0.1:8080/prov/0123456789abcdef", 4, &len);

    assert_non_null(png);
    assert_memory_equal(png, "\x89PNG\r\n\x1a\n", 8);
    /* walk the chunks: IHDR first, IEND last, every CRC right */
    size_t off = 8;
    int chunks = 0;
    while (off + 12 <= len) {
        uint32_t n = be32(png + off);
        assert_true(off + 12 + n <= len);
        assert_int_equal(be32(png + off + 8 + n), crc(png + off + 4, n + 4));
        if (chunks == 0) {
            assert_memory_equal(png + off + 4, "IHDR", 4);
            uint32_t w = be32(png + off + 8);
            assert_int_equal(w, be32(png + off + 12));
            assert_int_equal(w % 4, 0); /* scale 4 */
        }
        chunks++;
        if (memcmp(png + off + 4, "IEND", 4) == 0) {
            off += 12 + n;
            break;
        }
        off += 12 + n;
    }
    assert_int_equal(off, len);
    assert_int_equal(chunks, 3);
    free(png);
    assert_null(admin_qr_png("", 4, &len));
}

static void
test_qr_svg(void **state)
{
    size_t len;
    char *svg = admin_qr_svg("hello", &len);

    assert_non_null(svg);
    assert_int_equal(strlen(svg), len);
    assert_non_null(strstr(svg, "<svg "));
    assert_non_null(strstr(svg, "</svg>"));
    /* version 1 code (21 modules) plus 4 quiet modules each side */
    assert_non_null(strstr(svg, "viewBox=\"0 0 29 29\""));
    free(svg);
}

static void
test_prov_table(void **state)
{
    char dir[] = "/tmp/admin_prov_testXXXXXX";
    char path[64], legacy[64];
    struct admin_prov *p;
    struct admin_prov_row row = {.created_at = 42}, got;
    char err[256];
    struct store *st;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/pbx.db", dir);
    snprintf(legacy, sizeof(legacy), "%s/admin.db", dir); /* absent */
    struct store_cfg sc = {.path = path, .flush_ms = 1000, .max_queue = 1000};
    assert_int_equal(store_open(&sc, &st, err, sizeof(err)), 0);
    assert_int_equal(admin_prov_open(st, legacy, &p, err, sizeof(err)), 0);
    assert_int_equal(admin_prov_by_ext(p, "100", &got), -ENOENT);
    snprintf(row.ext, sizeof(row.ext), "100");
    snprintf(row.token, sizeof(row.token), "%032d", 1);
    snprintf(row.password, sizeof(row.password), "pw-one");
    assert_int_equal(admin_prov_put(p, &row), 0);
    assert_int_equal(admin_prov_by_token(p, row.token, &got), 0);
    assert_string_equal(got.ext, "100");
    assert_string_equal(got.password, "pw-one");
    assert_int_equal(got.created_at, 42);
    /* regenerate: the old token stops working */
    snprintf(row.token, sizeof(row.token), "%032d", 2);
    assert_int_equal(admin_prov_put(p, &row), 0);
    char old[33];
    snprintf(old, sizeof(old), "%032d", 1);
    assert_int_equal(admin_prov_by_token(p, old, &got), -ENOENT);
    /* A fetch is counted while the link may serve, then refused. */
    row.expires_at = 4102444800; /* 2100 */
    row.max_fetches = 1;
    assert_int_equal(admin_prov_put(p, &row), 0);
    assert_int_equal(admin_prov_count_fetch(p, &row, 1000), 0);
    assert_int_equal(row.fetches, 1);
    assert_int_equal(admin_prov_count_fetch(p, &row, 1000), -EACCES);
    assert_int_equal(row.fetches, 1);
    got = row;
    snprintf(got.token, sizeof(got.token), "%s", old);
    assert_int_equal(admin_prov_count_fetch(p, &got, 1000), -ENOENT);
    admin_prov_close(p);

    /* Committed before each call returned (flush_ms is 1 s here, so a
     * write-behind would not be on disk yet): a fresh index sees it. */
    assert_int_equal(admin_prov_open(st, legacy, &p, err, sizeof(err)), 0);
    assert_int_equal(admin_prov_by_ext(p, "100", &got), 0);
    assert_string_equal(got.token, row.token);
    assert_int_equal(got.fetches, 1);
    assert_int_equal(admin_prov_del(p, "100"), 0);
    assert_int_equal(admin_prov_del(p, "100"), -ENOENT);
    admin_prov_close(p);
    assert_int_equal(admin_prov_open(st, legacy, &p, err, sizeof(err)), 0);
    assert_int_equal(admin_prov_by_ext(p, "100", &got), -ENOENT);
    admin_prov_close(p);
    store_close(st);
    static const char *const sfx[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(legacy, sizeof(legacy), "%s%s", path, sfx[i]);
        unlink(legacy);
    }
    rmdir(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bearer),     cmocka_unit_test(test_number),
        cmocka_unit_test(test_redact),     cmocka_unit_test(test_random),
        cmocka_unit_test(test_qr_png),     cmocka_unit_test(test_qr_svg),
        cmocka_unit_test(test_prov_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
