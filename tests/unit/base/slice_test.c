/* Tests for base/slice: comparisons, trim, number parsing, copy out. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/slice.h"

static void
test_compare_trim(void **state)
{
    struct slice t;

    (void)state;
    assert_true(slice_eq(SLICE_LIT("abc"), slice_cstr("abc")));
    assert_false(slice_eq(SLICE_LIT("abc"), SLICE_LIT("abd")));
    assert_true(slice_eq(SLICE_NULL, SLICE_LIT("")));
    assert_true(slice_eq_nocase_cstr(SLICE_LIT("Call-ID"), "call-id"));
    assert_false(slice_eq_nocase_cstr(SLICE_LIT("Call-ID"), "call-i"));
    assert_true(slice_empty(slice_cstr(NULL)));
    t = slice_trim(SLICE_LIT(" \t\r\n x y \r\n"));
    assert_true(slice_eq_cstr(t, "x y"));
    t = slice_trim(SLICE_LIT(" \t "));
    assert_int_equal(t.len, 0);
}

static void
test_numbers(void **state)
{
    unsigned long long v = 7;
    char out[4];

    (void)state;
    assert_int_equal(slice_to_u64(SLICE_LIT("0042"), 100, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(slice_to_u64(SLICE_LIT("101"), 100, &v), -ERANGE);
    assert_int_equal(slice_to_u64(SLICE_LIT("18446744073709551616"), ~0ULL, &v),
                     -ERANGE);
    assert_int_equal(slice_to_u64(SLICE_LIT("18446744073709551615"), ~0ULL, &v),
                     0);
    assert_true(v == ~0ULL);
    assert_int_equal(slice_to_u64(SLICE_LIT(""), 100, &v), -EINVAL);
    assert_int_equal(slice_to_u64(SLICE_LIT("-1"), 100, &v), -EINVAL);
    assert_int_equal(slice_to_u64(SLICE_LIT("1 "), 100, &v), -EINVAL);
    assert_string_equal(slice_to_cstr(SLICE_LIT("abcdef"), out, sizeof(out)),
                        "abc");
    assert_string_equal(slice_to_cstr(SLICE_NULL, out, sizeof(out)), "");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compare_trim),
        cmocka_unit_test(test_numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
