/*
 * stun_test: the STUN detector and Binding answer of transport/tp_stun.c on
 * hand-built bytes (RFC 5389 §6, §15.2, RFC 5769 §2.1 sample request), and
 * that SIP requests whose method starts with a digit or a token symbol
 * (RFC 4475 intmeth) are never taken for STUN.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "transport/tp.h"

static const uint8_t tid[12] = {0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
                                0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae};

/* A STUN message: type, body (len multiple of 4 unless testing), txid. */
static size_t
stun_msg(uint8_t *out, uint16_t type, const uint8_t *body, size_t blen)
{
    out[0] = (uint8_t)(type >> 8);
    out[1] = (uint8_t)type;
    out[2] = (uint8_t)(blen >> 8);
    out[3] = (uint8_t)blen;
    out[4] = 0x21;
    out[5] = 0x12;
    out[6] = 0xa4;
    out[7] = 0x42;
    memcpy(out + 8, tid, 12);
    if (blen)
        memcpy(out + 20, body, blen);
    return 20 + blen;
}

static void
test_classify(void **state)
{
    uint8_t m[64];
    size_t n;

    (void)state;
    n = stun_msg(m, 0x0001, NULL, 0);
    assert_int_equal(tp_stun_classify(m, n), TP_STUN_BINDING_REQUEST);
    /* Binding indication, success response, another method: STUN. */
    n = stun_msg(m, 0x0011, NULL, 0);
    assert_int_equal(tp_stun_classify(m, n), TP_STUN_OTHER);
    n = stun_msg(m, 0x0101, NULL, 0);
    assert_int_equal(tp_stun_classify(m, n), TP_STUN_OTHER);
    n = stun_msg(m, 0x0003, NULL, 0);
    assert_int_equal(tp_stun_classify(m, n), TP_STUN_OTHER);
    /* Wrong cookie (RFC 3489 style): not STUN for us. */
    n = stun_msg(m, 0x0001, NULL, 0);
    m[7] = 0x43;
    assert_int_equal(tp_stun_classify(m, n), TP_STUN_NONE);
    /* Length field must match the datagram and be a multiple of 4. */
    static const uint8_t four[4] = {0x80, 0x22, 0, 0};
    n = stun_msg(m, 0x0001, four, 4);
    assert_int_equal(tp_stun_classify(m, n), TP_STUN_BINDING_REQUEST);
    assert_int_equal(tp_stun_classify(m, n - 1), TP_STUN_NONE);
    assert_int_equal(tp_stun_classify(m, n + 4), TP_STUN_NONE);
    m[3] = 3;
    assert_int_equal(tp_stun_classify(m, 23), TP_STUN_NONE);
    /* First two bits set: not STUN. */
    n = stun_msg(m, 0x0001, NULL, 0);
    m[0] |= 0x40;
    assert_int_equal(tp_stun_classify(m, n), TP_STUN_NONE);
    /* Too short for a header. */
    assert_int_equal(tp_stun_classify(m, 19), TP_STUN_NONE);
    assert_int_equal(tp_stun_classify(m, 0), TP_STUN_NONE);
}

static void
test_sip_is_not_stun(void **state)
{
    static const char *const starts[] = {
        "!interesting-Method0123456789_*+`.%indeed'~ sip:a@b SIP/2.0\r\n",
        "0METHOD sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n",
        "%25 sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK2\r\n",
        "~x sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK3\r\n\r\n",
        "OPTIONS sip:a@b SIP/2.0\r\n\r\n\r\n\r\n\r\n",
        "\r\n\r\n",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++)
        assert_int_equal(tp_stun_classify(starts[i], strlen(starts[i])),
                         TP_STUN_NONE);
}

static void
check_header(const uint8_t *r, int n, uint16_t type)
{
    assert_true(n >= 20);
    assert_int_equal((r[0] << 8) | r[1], type);
    assert_int_equal((r[2] << 8) | r[3], n - 20);
    assert_memory_equal(r + 4, "\x21\x12\xa4\x42", 4);
    assert_memory_equal(r + 8, tid, 12);
}

static void
test_answer_ipv4(void **state)
{
    uint8_t m[64], r[TP_STUN_ANSWER_MAX];
    struct tp_addr a;
    size_t n = stun_msg(m, 0x0001, NULL, 0);

    (void)state;
    /* RFC 5769 §2.2's mapped address: 192.0.2.1:32853. */
    assert_int_equal(tp_addr_parse(slice_cstr("192.0.2.1:32853"), false, &a),
                     0);
    int k = tp_stun_answer(m, n, &a, r, sizeof(r));
    assert_int_equal(k, 32);
    check_header(r, k, 0x0101);
    /* XOR-MAPPED-ADDRESS: type 0x0020, len 8, family 1, port and address
     * as in RFC 5769 §2.2 (a1 47 / e1 12 a6 43). */
    static const uint8_t want[] = {0x00, 0x20, 0x00, 0x08, 0x00, 0x01,
                                   0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43};
    assert_memory_equal(r + 20, want, sizeof(want));
    assert_int_equal(tp_stun_classify(r, (size_t)k), TP_STUN_OTHER);
}

static void
test_answer_ipv6(void **state)
{
    uint8_t m[64], r[TP_STUN_ANSWER_MAX];
    struct tp_addr a;
    size_t n = stun_msg(m, 0x0001, NULL, 0);

    (void)state;
    /* RFC 5769 §2.3: 2001:db8:1234:5678:11:2233:4455:6677 port 32853. */
    assert_int_equal(
        tp_addr_parse(
            slice_cstr("[2001:db8:1234:5678:11:2233:4455:6677]:32853"), false,
            &a),
        0);
    int k = tp_stun_answer(m, n, &a, r, sizeof(r));
    assert_int_equal(k, 44);
    check_header(r, k, 0x0101);
    static const uint8_t want[] = {
        0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa,
        0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9};
    /* RFC 5769 uses its own transaction id; recompute with ours. */
    uint8_t exp[24];
    static const uint8_t ip[16] = {0x20, 0x01, 0x0d, 0xb8, 0x12, 0x34,
                                   0x56, 0x78, 0x00, 0x11, 0x22, 0x33,
                                   0x44, 0x55, 0x66, 0x77};
    static const uint8_t key[16] = {0x21, 0x12, 0xa4, 0x42};
    memcpy(exp, want, 8);
    for (int i = 0; i < 16; i++)
        exp[8 + i] = ip[i] ^ (i < 4 ? key[i] : tid[i - 4]);
    assert_memory_equal(r + 20, exp, sizeof(exp));
}

static void
test_answer_attributes(void **state)
{
    uint8_t m[96], r[TP_STUN_ANSWER_MAX];
    struct tp_addr a;

    (void)state;
    assert_int_equal(tp_addr_parse(slice_cstr("10.0.0.1:5060"), false, &a), 0);
    /* Comprehension-optional FINGERPRINT and SOFTWARE, known USERNAME:
     * answered with success. */
    static const uint8_t ok[] = {0x00, 0x06, 0x00, 0x03, 'a', 'b', 'c', 0,
                                 0x80, 0x22, 0x00, 0x01, 'x', 0,   0,   0,
                                 0x80, 0x28, 0x00, 0x04, 1,   2,   3,   4};
    size_t n = stun_msg(m, 0x0001, ok, sizeof(ok));
    int k = tp_stun_answer(m, n, &a, r, sizeof(r));
    assert_int_equal(k, 32);
    check_header(r, k, 0x0101);
    /* Unknown comprehension-required attributes: 420 listing them. */
    static const uint8_t unk[] = {0x00, 0x24, 0x00, 0x04, 1,    2,
                                  3,    4,    0x7f, 0x01, 0x00, 0x00};
    n = stun_msg(m, 0x0001, unk, sizeof(unk));
    k = tp_stun_answer(m, n, &a, r, sizeof(r));
    assert_true(k > 0);
    check_header(r, k, 0x0111);
    assert_memory_equal(r + 20, "\x00\x09\x00\x15\x00\x00\x04\x14", 8);
    assert_memory_equal(r + 28, "Unknown Attribute", 17);
    assert_memory_equal(r + 48, "\x00\x0a\x00\x04\x00\x24\x7f\x01", 8);
    assert_int_equal(k, 56);
    /* An attribute running past the message: no answer. */
    static const uint8_t bad[] = {0x80, 0x22, 0x00, 0x09, 'x', 0, 0, 0};
    n = stun_msg(m, 0x0001, bad, sizeof(bad));
    assert_int_equal(tp_stun_answer(m, n, &a, r, sizeof(r)), -EINVAL);
    /* Not a Binding Request, or a small buffer: no answer. */
    n = stun_msg(m, 0x0011, NULL, 0);
    assert_int_equal(tp_stun_answer(m, n, &a, r, sizeof(r)), -EINVAL);
    n = stun_msg(m, 0x0001, NULL, 0);
    assert_int_equal(tp_stun_answer(m, n, &a, r, 16), -EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_sip_is_not_stun),
        cmocka_unit_test(test_answer_ipv4),
        cmocka_unit_test(test_answer_ipv6),
        cmocka_unit_test(test_answer_attributes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
