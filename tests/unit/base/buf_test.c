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

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_printf),
        cmocka_unit_test(test_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
