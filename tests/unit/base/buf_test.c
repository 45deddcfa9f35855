/* Tests for base/buf: append, printf, the cap, NUL termination. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/buf.h"

static void
test_append_printf(void **state)
{
    struct buf b;

    (void)state;
    buf_init(&b, 0);
    assert_int_equal(buf_append_cstr(&b, "SIP/2.0 "), 0);
    assert_int_equal(buf_printf(&b, "%d %s", 200, "OK"), 0);
    assert_int_equal(buf_append_slice(&b, SLICE_LIT("\r\n")), 0);
    assert_string_equal(b.data, "SIP/2.0 200 OK\r\n");
    assert_int_equal(b.len, 16);
    for (int i = 0; i < 1000; i++) /* growth keeps content */
        assert_int_equal(buf_append(&b, "0123456789", 10), 0);
    assert_int_equal(b.len, 10016);
    assert_int_equal(b.data[b.len], '\0');
    assert_memory_equal(b.data, "SIP/2.0 200 OK\r\n0123", 20);
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    buf_fini(&b);
}

static void
test_cap(void **state)
{
    struct buf b;

    (void)state;
    buf_init(&b, 8);
    assert_int_equal(buf_append_cstr(&b, "12345"), 0);
    assert_int_equal(buf_append_cstr(&b, "6789"), -EMSGSIZE);
    assert_int_equal(b.len, 5); /* unchanged on failure */
    assert_string_equal(b.data, "12345");
    assert_int_equal(buf_printf(&b, "%s", "abcd"), -EMSGSIZE);
    assert_int_equal(b.len, 5);
    assert_int_equal(buf_append_cstr(&b, "678"), 0);
    assert_string_equal(b.data, "12345678");
    buf_fini(&b);
}

/* buf_printf writes straight into the room the buffer has, and formats
 * again after growing when the text does not fit; a failure leaves the
 * buffer as it was, NUL included. */
static void
test_printf_room(void **state)
{
    struct buf b;
    char big[600];

    (void)state;
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    buf_init(&b, 0);
    assert_int_equal(buf_printf(&b, "%s", "ab"), 0); /* first alloc: 256 */
    assert_int_equal(buf_printf(&b, "%u-%s", 7u, "cd"), 0); /* fits */
    assert_string_equal(b.data, "ab7-cd");
    assert_int_equal(buf_printf(&b, "<%s>", big), 0); /* grows, again */
    assert_int_equal(b.len, 6 + 2 + 599);
    assert_int_equal(b.data[b.len], '\0');
    assert_memory_equal(b.data + 6, "<xx", 3);
    assert_int_equal(b.data[b.len - 1], '>');
    buf_fini(&b);

    buf_init(&b, 10); /* fits the allocation, not the cap */
    assert_int_equal(buf_append_cstr(&b, "12345"), 0);
    assert_int_equal(buf_printf(&b, "%s", "abcdef"), -EMSGSIZE);
    assert_int_equal(b.len, 5);
    assert_string_equal(b.data, "12345");
    assert_int_equal(buf_printf(&b, "%s", "abcde"), 0);
    assert_string_equal(b.data, "12345abcde");
    buf_fini(&b);
}

static void
test_u64(void **state)
{
    struct buf b;
    char d[20];

    (void)state;
    assert_int_equal(fmt_u64(d, 0), 1);
    assert_memory_equal(d, "0", 1);
    assert_int_equal(fmt_u64(d, 18446744073709551615ULL), 20);
    assert_memory_equal(d, "18446744073709551615", 20);
    buf_init(&b, 8);
    assert_int_equal(buf_append_u64(&b, 200), 0);
    assert_int_equal(buf_append_u64(&b, 65535), 0);
    assert_string_equal(b.data, "20065535");
    assert_int_equal(buf_append_u64(&b, 1), -EMSGSIZE);
    assert_string_equal(b.data, "20065535");
    buf_fini(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_printf),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_printf_room),
        cmocka_unit_test(test_u64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
