/* Tests for base/arena: alignment, the byte cap, large blocks, reset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/arena.h"

static void
test_alloc_align_cap(void **state)
{
    struct arena a;
    char *p, *q;

    (void)state;
    arena_init(&a, 1024);
    p = arena_alloc(&a, 1);
    q = arena_alloc(&a, 3);
    assert_non_null(p);
    assert_non_null(q);
    assert_int_equal((uintptr_t)p % 16, 0);
    assert_int_equal((uintptr_t)q % 16, 0);
    assert_true(p != q);
    memset(q, 'x', 3);
    /* 32 used; 992 fit exactly, then the cap answers NULL */
    assert_non_null(arena_alloc(&a, 992));
    assert_null(arena_alloc(&a, 1));
    arena_reset(&a);
    assert_int_equal(a.used, 0);
    assert_non_null(arena_alloc(&a, 1000));
    arena_fini(&a);
}

static void
test_large_and_dup(void **state)
{
    struct arena a;
    char *big;
    struct slice s;

    (void)state;
    arena_init(&a, 0); /* no cap */
    big = arena_alloc(&a, 3 * ARENA_CHUNK_SIZE);
    assert_non_null(big);
    memset(big, 1, 3 * ARENA_CHUNK_SIZE);
    for (int i = 0; i < 100; i++)
        assert_non_null(arena_alloc(&a, 100));
    s = arena_slice_dup(&a, SLICE_LIT("hello"));
    assert_true(slice_eq_cstr(s, "hello"));
    assert_int_equal(s.ptr[5], '\0');
    assert_string_equal(arena_strndup(&a, "abcdef", 3), "abc");
    arena_reset(&a);
    arena_reset(&a); /* twice is fine */
    assert_non_null(arena_alloc(&a, 10));
    arena_fini(&a);
    arena_fini(&a); /* fini of a finished arena frees nothing twice */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_align_cap),
        cmocka_unit_test(test_large_and_dup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
