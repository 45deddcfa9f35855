/*
 * message_payload_test: the message push ([messages]). Every output is
 * parsed by jansson (valid JSON and valid UTF-8 checked by a parser). The
 * UTF-8 cleaner replaces exactly the bad bytes; the APNs alert and the
 * FCM data message have the documented shape; a long preview is cut at a
 * character boundary (ASCII, 2-, 3- and 4-byte characters, emoji) so the
 * payload fits 4096 bytes with "…" appended, and a payload that fits
 * exactly is not cut; a 64 KiB body is bounded; invalid UTF-8 in the
 * preview or the name is replaced, never refused; the collapse id is
 * one per conversation.
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
#include <jansson.h>

#include "push/payload.h"

#define ELLIPSIS "\xe2\x80\xa6"

static struct push_msg
msg(const char *preview)
{
    return (struct push_msg){
        .provider = PUSH_APNS,
        .token = "fcm-token-1",
        .type = PUSH_MESSAGE,
        .from = "101",
        .from_name = "Bob",
        .to = "100",
        .sent_at_s = 1764220800,
        .expires_at_s = 1764825600,
        .message_id = "42",
        .content_type = "text/plain",
        .preview = preview,
        .preview_len = preview ? strlen(preview) : 0,
    };
}

static json_t *
parse(const struct buf *b)
{
    json_error_t e;
    json_t *o = json_loadb(b->data, b->len, JSON_REJECT_DUPLICATES, &e);

    if (o == NULL)
        fail_msg("invalid JSON: %s in %s", e.text, b->data);
    return o;
}

static const char *
str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static json_t *
apns(const struct push_msg *m, size_t *len)
{
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(push_payload_apns(m, false, 0, &b), 0);
    if (len)
        *len = b.len;
    json_t *o = parse(&b);
    buf_fini(&b);
    return o;
}

/* FCM: the body and the bytes FCM counts (data keys + values). */
static json_t *
fcm(const struct push_msg *m, long *data_len)
{
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(push_payload_fcm(m, 0, 3600, &b), 0);
    if (data_len)
        *data_len = push_payload_fcm_data_len(b.data, b.len);
    json_t *o = parse(&b);
    buf_fini(&b);
    return o;
}

static void
clean_eq(const char *in, size_t len, const char *want)
{
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(push_utf8_clean(in, len, &b), 0);
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data ? b.data : "", want, b.len);
    buf_fini(&b);
}

#define R "\xef\xbf\xbd" /* U+FFFD */

static void
test_utf8_clean(void **state)
{
    (void)state;
    clean_eq("", 0, "");
    clean_eq("plain", 5, "plain");
    clean_eq("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9,
             "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"); /* é € 😀 */
    clean_eq("\xef\xbf\xbf\xf4\x8f\xbf\xbf", 7,
             "\xef\xbf\xbf\xf4\x8f\xbf\xbf"); /* U+FFFF, U+10FFFF */
    clean_eq("a\x80z", 3, "a" R "z");         /* lone continuation */
    clean_eq("\xc0\xaf", 2, R R);             /* overlong '/' */
    clean_eq("\xe0\x80\xaf", 3, R R R);       /* overlong 3-byte */
    clean_eq("\xed\xa0\x80", 3, R R R);       /* surrogate U+D800 */
    clean_eq("\xf4\x90\x80\x80", 4, R R R R); /* above U+10FFFF */
    clean_eq("\xf5\xff", 2, R R);
    clean_eq("ok\xe2\x82", 4, "ok" R R); /* cut short at the end */
    clean_eq("\xe2\x82z", 3, R R "z");   /* cut short inside */
    clean_eq("a\0b", 3, "a" R "b");      /* NUL */

    /* A capped buffer refuses, never overflows. */
    struct buf b;
    buf_init(&b, 4);
    assert_int_equal(push_utf8_clean("abcdef", 6, &b), -EMSGSIZE);
    buf_fini(&b);
}

static void
test_collapse_id(void **state)
{
    (void)state;
    char a[PUSH_MESSAGE_COLLAPSE_ID_LEN + 1], b[sizeof(a)], c[sizeof(a)],
        d[sizeof(a)];
    push_message_collapse_id("101", "100", a);
    push_message_collapse_id("101", "100", b);
    push_message_collapse_id("102", "100", c);
    push_message_collapse_id("101", "1001", d);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_string_not_equal(a, d);
    assert_int_equal(strlen(a), 34);
    assert_memory_equal(a, "m-", 2);
    /* "10" + "1\n100" and "101" + "\n100" must not collide. */
    push_message_collapse_id("10", "1\n100", c);
    assert_string_not_equal(a, c);
}

static void
test_apns_shape(void **state)
{
    (void)state;
    struct push_msg m = msg("running late");
    json_t *o = apns(&m, NULL);
    char thread[PUSH_MESSAGE_COLLAPSE_ID_LEN + 1];

    push_message_collapse_id("101", "100", thread);
    assert_int_equal(json_integer_value(json_object_get(o, "v")), 1);
    assert_string_equal(str(o, "type"), "message");
    assert_string_equal(str(o, "message_id"), "42");
    assert_string_equal(str(o, "from"), "101");
    assert_string_equal(str(o, "from_name"), "Bob");
    assert_string_equal(str(o, "to"), "100");
    assert_string_equal(str(o, "content_type"), "text/plain");
    assert_string_equal(str(o, "preview"), "running late");
    assert_true(json_is_false(json_object_get(o, "preview_truncated")));
    assert_int_equal(json_integer_value(json_object_get(o, "sent_at")),
                     1764220800);
    assert_int_equal(json_integer_value(json_object_get(o, "expires_at")),
                     1764825600);
    assert_null(json_object_get(o, "call_id"));
    json_t *aps = json_object_get(o, "aps");
    json_t *alert = json_object_get(aps, "alert");
    assert_string_equal(str(alert, "title"), "Bob");
    assert_string_equal(str(alert, "body"), "running late");
    assert_int_equal(
        json_integer_value(json_object_get(aps, "mutable-content")), 1);
    assert_string_equal(str(aps, "thread-id"), thread);
    assert_string_equal(str(aps, "sound"), "default");
    json_decref(o);

    /* No name: the number is the title. No preview ([push]
     * message_preview = no): a generic body and an empty preview, so no
     * text of the message reaches Apple. */
    m = msg(NULL);
    m.from_name = NULL;
    o = apns(&m, NULL);
    alert = json_object_get(json_object_get(o, "aps"), "alert");
    assert_string_equal(str(alert, "title"), "101");
    assert_string_equal(str(alert, "body"), "New message");
    assert_string_equal(str(o, "preview"), "");
    assert_string_equal(str(o, "from_name"), "");
    json_decref(o);

    /* A VoIP form of a message push does not exist. */
    struct buf b;
    buf_init(&b, 0);
    m = msg("x");
    assert_int_equal(push_payload_apns(&m, true, 0, &b), -EINVAL);
    m.message_id = NULL;
    assert_int_equal(push_payload_apns(&m, false, 0, &b), -EINVAL);
    assert_int_equal(b.len, 0);
    buf_fini(&b);
}

static void
test_fcm_shape(void **state)
{
    (void)state;
    struct push_msg m = msg("running late");
    char collapse[PUSH_MESSAGE_COLLAPSE_ID_LEN + 1];
    const char *k;
    json_t *v;

    m.provider = PUSH_FCM;
    json_t *o = fcm(&m, NULL);
    json_t *mm = json_object_get(o, "message");
    json_t *data = json_object_get(mm, "data");
    json_t *android = json_object_get(mm, "android");
    json_object_foreach(data, k, v)
    {
        assert_true(json_is_string(v));
    }
    assert_null(json_object_get(data, "from"));
    assert_null(json_object_get(mm, "notification")); /* data only */
    assert_string_equal(str(data, "v"), "1");
    assert_string_equal(str(data, "type"), "message");
    assert_string_equal(str(data, "message_id"), "42");
    assert_string_equal(str(data, "caller"), "101");
    assert_string_equal(str(data, "from_name"), "Bob");
    assert_string_equal(str(data, "preview"), "running late");
    assert_string_equal(str(data, "preview_truncated"), "0");
    assert_string_equal(str(data, "content_type"), "text/plain");
    assert_string_equal(str(data, "expires_at"), "1764825600");
    assert_string_equal(str(android, "priority"), "HIGH");
    assert_string_equal(str(android, "ttl"), "3600s");
    push_message_collapse_id("101", "100", collapse);
    assert_string_equal(str(android, "collapse_key"), collapse);
    json_decref(o);
}

/* Does a cut of text after n bytes end between two characters? */
static bool
at_boundary(const char *text, size_t len, size_t n)
{
    return n < len && ((unsigned char)text[n] & 0xc0) != 0x80;
}

/* A preview of count copies of unit, cut: fits, valid, a prefix ending at a
 * character boundary, "…" at the end, flagged. */
static void
check_cut(const char *unit, size_t count)
{
    size_t ul = strlen(unit), len = ul * count, size;
    char *text = malloc(len + 1);
    for (size_t i = 0; i < count; i++)
        memcpy(text + i * ul, unit, ul);
    text[len] = '\0';

    struct push_msg m = msg(text);
    json_t *o = apns(&m, &size);
    assert_true(size <= 4096);
    assert_true(size > 4096 - 2 * (ul + 3) - 16); /* not cut much more */
    const char *p = str(o, "preview");
    size_t pl = strlen(p);
    assert_true(pl >= 3 && memcmp(p + pl - 3, ELLIPSIS, 3) == 0);
    assert_true(at_boundary(text, len, pl - 3));
    assert_memory_equal(p, text, pl - 3);
    assert_true(json_is_true(json_object_get(o, "preview_truncated")));
    assert_string_equal(
        str(json_object_get(json_object_get(o, "aps"), "alert"), "body"), p);
    json_decref(o);

    long dl;
    m.provider = PUSH_FCM;
    o = fcm(&m, &dl);
    assert_true(dl <= 4096 && dl > 4096 - (long)(ul + 3) - 16);
    json_t *data = json_object_get(json_object_get(o, "message"), "data");
    p = str(data, "preview");
    pl = strlen(p);
    assert_true(at_boundary(text, len, pl - 3));
    assert_memory_equal(p, text, pl - 3);
    assert_string_equal(str(data, "preview_truncated"), "1");
    json_decref(o);
    free(text);
}

static void
test_truncation_boundaries(void **state)
{
    (void)state;
    check_cut("a", 5000);
    check_cut("\xc3\xa9", 3000);                             /* é */
    check_cut("\xe2\x82\xac", 2000);                         /* € */
    check_cut("\xf0\x9f\x98\x80", 1500);                     /* 😀 */
    check_cut("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 600); /* mixed */
}

/* The longest ASCII preview that fits is sent whole; one byte more is
 * cut (and still fits). */
static void
test_exact_fit(void **state)
{
    (void)state;
    struct push_msg m = msg("x");
    size_t size1;
    json_decref(apns(&m, &size1));
    /* APNs: the preview is there twice, so size(L) = size1 + 2 (L - 1);
     * make the room even by lengthening the content type by one. */
    if ((4096 - size1) % 2) {
        m.content_type = "text/plainx";
        json_decref(apns(&m, &size1));
    }
    size_t L = (4096 - size1) / 2 + 1;
    char *text = malloc(L + 2);
    memset(text, 'y', L + 1);
    text[L] = '\0';
    m.preview = text;
    m.preview_len = L;
    size_t size;
    json_t *o = apns(&m, &size);
    assert_int_equal(size, 4096);
    assert_int_equal(strlen(str(o, "preview")), L);
    assert_true(json_is_false(json_object_get(o, "preview_truncated")));
    json_decref(o);
    m.preview_len = L + 1;
    o = apns(&m, &size);
    assert_true(size <= 4096);
    assert_true(json_is_true(json_object_get(o, "preview_truncated")));
    json_decref(o);

    /* FCM counts data keys + values; the preview is there once. */
    long d1;
    m = msg("x");
    m.provider = PUSH_FCM;
    json_decref(fcm(&m, &d1));
    size_t F = (size_t)(4096 - d1) + 1;
    char *ftext = malloc(F + 2);
    memset(ftext, 'z', F + 1);
    m.preview = ftext;
    m.preview_len = F;
    long dl;
    o = fcm(&m, &dl);
    assert_int_equal(dl, 4096);
    json_t *data = json_object_get(json_object_get(o, "message"), "data");
    assert_int_equal(strlen(str(data, "preview")), F);
    assert_string_equal(str(data, "preview_truncated"), "0");
    json_decref(o);
    m.preview_len = F + 1;
    o = fcm(&m, &dl);
    assert_true(dl <= 4096);
    data = json_object_get(json_object_get(o, "message"), "data");
    assert_string_equal(str(data, "preview_truncated"), "1");
    json_decref(o);
    free(text);
    free(ftext);
}

static void
test_invalid_utf8_replaced(void **state)
{
    (void)state;
    static const char bad[] = "hi \xff\xfe there \xe2\x82";
    struct push_msg m = msg(NULL);
    m.preview = bad;
    m.preview_len = sizeof(bad) - 1;
    m.from_name = "Bo\xc0\xaf"
                  "b"; /* a SIP display name is untrusted too */
    json_t *o = apns(&m, NULL);
    assert_string_equal(str(o, "preview"), "hi " R R " there " R R);
    assert_string_equal(str(o, "from_name"), "Bo" R R "b");
    json_decref(o);

    /* A 64 KiB body: only its head is considered, the payload fits, and
     * the cut is said. A cut made while cleaning never leaves half a
     * character: the input cap falls inside an emoji here. */
    size_t n = 65536;
    char *big = malloc(n);
    for (size_t i = 0; i + 4 <= n; i += 4)
        memcpy(big + i, "\xf0\x9f\x98\x80", 4);
    m = msg(NULL);
    m.preview = big + 1; /* starts inside a sequence */
    m.preview_len = n - 1;
    size_t size;
    o = apns(&m, &size);
    assert_true(size <= 4096);
    assert_true(json_is_true(json_object_get(o, "preview_truncated")));
    json_decref(o);
    free(big);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_clean),
        cmocka_unit_test(test_collapse_id),
        cmocka_unit_test(test_apns_shape),
        cmocka_unit_test(test_fcm_shape),
        cmocka_unit_test(test_truncation_boundaries),
        cmocka_unit_test(test_exact_fit),
        cmocka_unit_test(test_invalid_utf8_replaced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
