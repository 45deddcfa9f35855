/*
 * peek_test: sip_peek_call_id, the Call-ID hash the UDP receive path uses
 * to pick a request's worker before the full parse. What matters is that
 * the same Call-ID gives the same hash however the header is written
 * (long or compact name, any case, spaces, folding, CRLF or LF), that
 * other Call-IDs differ, and that input without a readable Call-ID is
 * refused (-ENOENT) without reading past the buffer (ASan).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sip/peek.h"

#define HEAD                                                                   \
    "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP "                    \
    "h;branch=z9hG4bK1\r\n"

/* Peek at a heap copy of exactly strlen(s) bytes (ASan sees overreads). */
static int
peek(const char *s, uint32_t *h)
{
    size_t n = strlen(s);
    char *copy = malloc(n ? n : 1);
    memcpy(copy, s, n);
    int rc = sip_peek_call_id(copy, n, h);
    free(copy);
    return rc;
}

static uint32_t
hash_of(const char *s)
{
    uint32_t h = 0;
    assert_int_equal(peek(s, &h), 0);
    return h;
}

static void
test_forms_agree(void **state)
{
    (void)state;
    uint32_t want =
        hash_of(HEAD "Call-ID: abc@host\r\nCSeq: 1 REGISTER\r\n\r\n");
    static const char *const same[] = {
        HEAD "i: abc@host\r\n\r\n",
        HEAD "I:abc@host\r\n\r\n",
        HEAD "call-id  :   abc@host   \r\n\r\n",
        HEAD "CALL-ID:\tabc@host\r\n\r\n",
        HEAD "Call-ID: abc\r\n @host\r\n\r\n", /* folded */
        HEAD "Call-ID:\r\n\tabc@host\r\n\r\n", /* folded, empty first */
        "REGISTER sip:x SIP/2.0\nCall-ID: abc@host\n\n", /* bare LF */
        HEAD "Call-ID: abc@host", /* cut after the value */
        HEAD
        "Contact: <sip:i@x>\r\nCall-Info: <x>\r\nCall-ID: abc@host\r\n\r\n",
        "SIP/2.0 200 OK\r\nCall-ID: abc@host\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++)
        assert_int_equal(hash_of(same[i]), want);
    /* The first Call-ID counts. */
    assert_int_equal(hash_of(HEAD "Call-ID: abc@host\r\nCall-ID: z\r\n\r\n"),
                     want);
}

static void
test_values_differ(void **state)
{
    (void)state;
    char buf[128];
    uint32_t h[64];
    unsigned odd = 0;

    assert_int_not_equal(hash_of(HEAD "Call-ID: abc@host\r\n\r\n"),
                         hash_of(HEAD "Call-ID: abd@host\r\n\r\n"));
    /* SIPp's Call-IDs (N-pid@ip) spread over two workers. */
    for (int i = 0; i < 64; i++) {
        snprintf(buf, sizeof(buf), HEAD "Call-ID: %d-4242@127.0.0.1\r\n\r\n",
                 i + 1);
        h[i] = hash_of(buf);
        odd += h[i] & 1;
    }
    assert_true(odd > 16 && odd < 48);
}

static void
test_refused(void **state)
{
    (void)state;
    uint32_t h = 7;
    static const char *const bad[] = {
        "",
        "REGISTER sip:x SIP/2.0",     /* no header line */
        HEAD "\r\nCall-ID: abc\r\n",  /* in the body */
        HEAD "\nCall-ID: abc\r\n",    /* in the body (LF) */
        HEAD "Call-ID:\r\n\r\n",      /* empty */
        HEAD "Call-ID:   \t \r\n",    /* blank */
        HEAD "Call-IDx: abc\r\n\r\n", /* other name */
        HEAD "Call-I: abc\r\n\r\n",
        HEAD "ii: abc\r\n\r\n",
        HEAD "Call-ID abc\r\n\r\n",   /* no colon */
        HEAD " Call-ID: abc\r\n\r\n", /* continuation */
        HEAD "i",
        HEAD "Call-ID",
        HEAD "Call-ID  ",
        "\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(peek(bad[i], &h), -ENOENT);
        assert_int_equal(h, 7); /* untouched */
    }
}

/* Every prefix of a valid message: no overread, and a Call-ID found only
 * once some of its value is in. */
static void
test_prefixes(void **state)
{
    (void)state;
    const char *msg = HEAD "From: <sip:a@b>;tag=1\r\ni: xyz\r\n\r\nbody";
    size_t n = strlen(msg), at = (size_t)(strstr(msg, "i: xyz") - msg);
    uint32_t h;

    for (size_t len = 0; len <= n; len++) {
        char *copy = malloc(len ? len : 1);
        memcpy(copy, msg, len);
        int rc = sip_peek_call_id(copy, len, &h);
        assert_int_equal(rc, len > at + 3 ? 0 : -ENOENT);
        free(copy);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms_agree),
        cmocka_unit_test(test_values_differ),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_prefixes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
