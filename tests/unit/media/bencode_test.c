/*
 * Tests for media/bencode: encoder/decoder round trips, a table of
 * malformed inputs with the reason each gets, the depth and node limits,
 * and that every decoded slice lies within the input.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/buf.h"
#include "media/bencode.h"

static struct media_benc nodes[256];

static int
dec(const char *s, size_t *count, const char **why)
{
    return media_benc_decode(s, strlen(s), nodes, 256, 0, count, why);
}

static void
test_round_trip(void **state)
{
    struct buf b;
    size_t n;
    const char *why;

    buf_init(&b, 4096);
    assert_int_equal(media_benc_dict(&b), 0);
    assert_int_equal(media_benc_kv(&b, "command", SLICE_LIT("offer")), 0);
    assert_int_equal(media_benc_cstr(&b, "n"), 0);
    assert_int_equal(media_benc_int(&b, INT64_MIN), 0);
    assert_int_equal(media_benc_cstr(&b, "m"), 0);
    assert_int_equal(media_benc_int(&b, INT64_MAX), 0);
    assert_int_equal(media_benc_cstr(&b, "list"), 0);
    assert_int_equal(media_benc_list(&b), 0);
    assert_int_equal(media_benc_cstr(&b, "a"), 0);
    assert_int_equal(media_benc_str(&b, slice_make("b\0c", 3)), 0);
    assert_int_equal(media_benc_str(&b, SLICE_LIT("")), 0);
    assert_int_equal(media_benc_dict(&b), 0);
    assert_int_equal(media_benc_end(&b), 0);
    assert_int_equal(media_benc_end(&b), 0);
    assert_int_equal(media_benc_end(&b), 0);
    assert_string_equal(b.data, "d7:command5:offer1:ni-9223372036854775808e"
                                "1:mi9223372036854775807e4:listl1:a3:b");

    assert_int_equal(media_benc_decode(b.data, b.len, nodes, 256, 0, &n, &why),
                     0);
    assert_int_equal(n, 13);
    const struct media_benc *root = &nodes[0];
    assert_int_equal(root->type, MEDIA_BENC_DICT);
    assert_int_equal(root->count, 4);
    assert_true(slice_eq_cstr(media_benc_get_str(nodes, root, "command"),
                              "offer"));
    int64_t v;
    assert_true(media_benc_get_int(nodes, root, "n", &v));
    assert_true(v == INT64_MIN);
    assert_true(media_benc_get_int(nodes, root, "m", &v));
    assert_true(v == INT64_MAX);
    assert_false(media_benc_get_int(nodes, root, "command", &v));
    assert_null(media_benc_get(nodes, root, "nope"));
    const struct media_benc *l =
        media_benc_get_type(nodes, root, "list", MEDIA_BENC_LIST);
    assert_non_null(l);
    assert_int_equal(l->count, 4);
    const struct media_benc *it = media_benc_first(nodes, l);
    assert_true(slice_eq_cstr(it->str, "a"));
    it = media_benc_next(nodes, it);
    assert_true(slice_eq(it->str, slice_make("b\0c", 3)));
    it = media_benc_next(nodes, it);
    assert_int_equal(it->str.len, 0);
    it = media_benc_next(nodes, it);
    assert_int_equal(it->type, MEDIA_BENC_DICT);
    assert_int_equal(it->count, 0);
    assert_null(media_benc_first(nodes, it));
    assert_null(media_benc_next(nodes, it));
    /* A container's slice is its whole encoding. */
    assert_int_equal(l->str.len, 14); /* l1:a3:b<NUL>c0:dee */
    assert_int_equal(l->str.ptr[0], 'l');
    assert_int_equal(l->str.ptr[13], 'e');
    buf_fini(&b);
}

static void
test_valid(void **state)
{
    static const char *const ok[] = {"i0e", "i-5e", "0:", "le", "de",
                                     "d1:al1:bi2eee", "3:abc",
                                     "d0:0:e", "i-9223372036854775808e"};
    size_t n;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        const char *why = NULL;
        int rc = dec(ok[i], &n, &why);
        if (rc != 0)
            fail_msg("'%s' refused: %s", ok[i], why);
    }
}

static void
test_malformed(void **state)
{
    static const struct {
        const char *in;
        int rc;
        const char *why;
    } bad[] = {
        {"", -EINVAL, "bencode: truncated"},
        {"i", -EINVAL, "bencode: truncated number"},
        {"ie", -EINVAL, "bencode: empty number"},
        {"i-e", -EINVAL, "bencode: empty number"},
        {"i-0e", -EINVAL, "bencode: negative zero"},
        {"i03e", -EINVAL, "bencode: leading zero"},
        {"i1x2e", -EINVAL, "bencode: bad digit"},
        {"i9223372036854775808e", -EINVAL, "bencode: number out of range"},
        {"i-9223372036854775809e", -EINVAL, "bencode: number out of range"},
        {"01:a", -EINVAL, "bencode: leading zero"},
        {"5:ab", -EINVAL, "bencode: string past the end"},
        {"99999999999:a", -EINVAL, "bencode: number out of range"},
        {"1:ab", -EINVAL, "bencode: trailing bytes"},
        {"i1ei2e", -EINVAL, "bencode: trailing bytes"},
        {"l", -EINVAL, "bencode: unterminated container"},
        {"l1:a", -EINVAL, "bencode: unterminated container"},
        {"d1:ae", -EINVAL, "bencode: dict key without value"},
        {"di1e1:ae", -EINVAL, "bencode: dict key is not a string"},
        {"dlee", -EINVAL, "bencode: dict key is not a string"},
        {"x", -EINVAL, "bencode: bad value type"},
        {"-1:a", -EINVAL, "bencode: bad value type"},
        {"e", -EINVAL, "bencode: bad value type"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n = 99;
        const char *why = NULL;
        int rc = dec(bad[i].in, &n, &why);
        if (rc != bad[i].rc || why == NULL || strcmp(why, bad[i].why) != 0)
            fail_msg("'%s': rc %d why '%s', expected %d '%s'", bad[i].in, rc,
                     why ? why : "(null)", bad[i].rc, bad[i].why);
        assert_int_equal(n, 0);
    }
    /* A NUL inside a string is data, not the end. */
    size_t n;
    assert_int_equal(media_benc_decode("3:a\0b", 5, nodes, 256, 0, &n, NULL),
                     0);
}

static void
test_depth(void **state)
{
    char in[2 * 40 + 1];
    size_t n;
    const char *why;

    for (size_t depth = 1; depth <= 40; depth++) {
        memset(in, 'l', depth);
        memset(in + depth, 'e', depth);
        in[2 * depth] = '\0';
        int rc = media_benc_decode(in, 2 * depth, nodes, 256, 0, &n, &why);
        if (depth <= MEDIA_BENC_MAX_DEPTH)
            assert_int_equal(rc, 0);
        else {
            assert_int_equal(rc, -E2BIG);
            assert_string_equal(why, "bencode: nested too deep");
        }
    }
    /* A scalar inside the deepest allowed list is one level too many. */
    assert_int_equal(media_benc_decode("li1ee", 5, nodes, 256, 1, &n, &why),
                     -E2BIG);
    assert_int_equal(media_benc_decode("i1e", 3, nodes, 256, 1, &n, &why), 0);
    assert_int_equal(media_benc_decode("le", 2, nodes, 256, 1, &n, &why), 0);
    assert_int_equal(media_benc_decode("li1ee", 5, nodes, 256, 2, &n, &why),
                     0);
}

static void
test_node_cap(void **state)
{
    struct media_benc small[4];
    size_t n;
    const char *why;

    assert_int_equal(media_benc_decode("li1ei2ei3ee", 11, small, 4, 0, &n, &why),
                     0);
    assert_int_equal(n, 4);
    assert_int_equal(
        media_benc_decode("li1ei2ei3ei4ee", 14, small, 4, 0, &n, &why),
        -E2BIG);
    assert_string_equal(why, "bencode: too many elements");
    assert_int_equal(media_benc_decode("i1e", 3, small, 0, 0, &n, &why),
                     -E2BIG);
}

static void
test_encoder_cap(void **state)
{
    struct buf b;
    buf_init(&b, 8);
    assert_int_equal(media_benc_cstr(&b, "abc"), 0);
    assert_int_equal(media_benc_cstr(&b, "abcdef"), -EMSGSIZE);
    buf_fini(&b);
}

static void
test_slices_inside(void **state)
{
    const char *in = "d3:sdp5:v=0\r\n4:listl2:abi7ed1:x0:eee";
    size_t n;
    assert_int_equal(dec(in, &n, NULL), 0);
    for (size_t i = 0; i < n; i++) {
        if (nodes[i].type == MEDIA_BENC_INT)
            continue;
        assert_true(nodes[i].str.ptr >= in);
        assert_true(nodes[i].str.ptr + nodes[i].str.len <= in + strlen(in));
        assert_true(nodes[i].child < n && nodes[i].next < n);
    }
    assert_true(nodes[0].str.ptr == in && nodes[0].str.len == strlen(in));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip), cmocka_unit_test(test_valid),
        cmocka_unit_test(test_malformed),  cmocka_unit_test(test_depth),
        cmocka_unit_test(test_node_cap),   cmocka_unit_test(test_encoder_cap),
        cmocka_unit_test(test_slices_inside),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
