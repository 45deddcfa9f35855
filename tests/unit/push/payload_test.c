/*
 * payload_test: the bodies apps receive. Each case parses our output with
 * jansson (so "valid JSON" and "valid UTF-8" are checked by a parser, not
 * by us) and checks fields, sizes and truncation.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "push/payload.h"

static struct push_msg
msg(enum push_type t)
{
    return (struct push_msg){
        .provider = PUSH_APNS,
        .token = "a1b2c3d4e5f60718",
        .type = t,
        .call_id = "a84b4c76e66710@pbx.example",
        .from = "101",
        .from_name = "Alice",
        .to = "100",
        .sent_at_s = 1764220800,
        .expires_at_s = 1764220830,
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

static void
check_common(json_t *o, const char *type)
{
    assert_int_equal(json_integer_value(json_object_get(o, "v")), 1);
    assert_string_equal(str(o, "type"), type);
    assert_string_equal(str(o, "call_id"), "a84b4c76e66710@pbx.example");
    assert_string_equal(str(o, "from"), "101");
    assert_string_equal(str(o, "to"), "100");
    assert_int_equal(json_integer_value(json_object_get(o, "sent_at")),
                     1764220800);
    assert_int_equal(json_integer_value(json_object_get(o, "expires_at")),
                     1764220830);
}

static void
test_collapse_id(void **state)
{
    char a[PUSH_COLLAPSE_ID_LEN + 1], b[PUSH_COLLAPSE_ID_LEN + 1];
    char big[1000];

    push_collapse_id("call-1", a);
    push_collapse_id("call-1", b);
    assert_string_equal(a, b);
    assert_int_equal(strlen(a), 34);
    assert_true(strncmp(a, "c-", 2) == 0);
    push_collapse_id("call-2", b);
    assert_string_not_equal(a, b);
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    push_collapse_id(big, b); /* any Call-ID length gives <= 64 bytes */
    assert_int_equal(strlen(b), 34);
}

static void
test_apns_voip(void **state)
{
    struct push_msg m = msg(PUSH_CALL);
    struct buf b;
    json_t *o;

    buf_init(&b, 0);
    assert_int_equal(push_payload_apns(&m, true, 0, &b), 0);
    o = parse(&b);
    check_common(o, "call");
    assert_string_equal(str(o, "from_name"), "Alice");
    assert_true(json_is_object(json_object_get(o, "aps")));
    assert_int_equal(json_object_size(json_object_get(o, "aps")), 0);
    json_decref(o);
    buf_fini(&b);
}

static void
test_apns_alert(void **state)
{
    static const struct {
        enum push_type t;
        const char *type, *loc, *title;
    } v[] = {
        { PUSH_CALL, "call", "CALL_INCOMING", "Incoming call" },
        { PUSH_MISSED, "missed", "CALL_MISSED", "Missed call" },
        { PUSH_ANSWERED_ELSEWHERE, "answered_elsewhere",
          "CALL_ANSWERED_ELSEWHERE", "Answered elsewhere" },
    };
    for (size_t i = 0; i < 3; i++) {
        struct push_msg m = msg(v[i].t);
        struct buf b;
        buf_init(&b, 0);
        assert_int_equal(push_payload_apns(&m, false, 0, &b), 0);
        json_t *o = parse(&b);
        check_common(o, v[i].type);
        json_t *alert = json_object_get(json_object_get(o, "aps"), "alert");
        assert_string_equal(str(alert, "loc-key"), v[i].loc);
        assert_string_equal(str(alert, "title"), v[i].title);
        assert_string_equal(str(alert, "body"), "Alice");
        assert_string_equal(
            json_string_value(json_array_get(json_object_get(alert,
                                                             "loc-args"),
                                             0)),
            "Alice");
        json_decref(o);
        buf_fini(&b);
    }
    /* No display name: the number is shown. */
    struct push_msg m = msg(PUSH_MISSED);
    struct buf b;
    m.from_name = NULL;
    buf_init(&b, 0);
    assert_int_equal(push_payload_apns(&m, false, 0, &b), 0);
    json_t *o = parse(&b);
    assert_string_equal(str(o, "from_name"), "");
    assert_string_equal(
        str(json_object_get(json_object_get(o, "aps"), "alert"), "body"),
        "101");
    json_decref(o);
    buf_fini(&b);
}

/* A name of 3000 two-byte characters (6000 bytes) must be cut to fit, at a
 * character boundary, keeping every id. */
static void
test_truncation(void **state)
{
    char *name = malloc(6001);
    struct push_msg m = msg(PUSH_CALL);
    struct buf b;

    for (int i = 0; i < 3000; i++)
        memcpy(name + 2 * i, "\xc3\xa9", 2); /* é */
    name[6000] = '\0';
    m.from_name = name;
    for (int voip = 0; voip < 2; voip++) {
        size_t limit = voip ? 5120 : 4096;
        buf_init(&b, 0);
        assert_int_equal(push_payload_apns(&m, voip, 0, &b), 0);
        assert_true(b.len <= limit);
        assert_true(b.len > limit - 64); /* cut no more than needed */
        json_t *o = parse(&b); /* also proves the cut kept UTF-8 valid */
        check_common(o, "call");
        const char *fn = str(o, "from_name");
        assert_true(strlen(fn) > 0 && strlen(fn) % 2 == 0);
        assert_memory_equal(fn, name, strlen(fn));
        json_decref(o);
        buf_fini(&b);
    }
    buf_init(&b, 0);
    assert_int_equal(push_payload_fcm(&m, 0, 30, &b), 0);
    long dl = push_payload_fcm_data_len(b.data, b.len);
    assert_true(dl > 4000 && dl <= 4096);
    buf_fini(&b);
    free(name);
}

static void
test_limits_and_errors(void **state)
{
    char *big = malloc(6000);
    struct push_msg m = msg(PUSH_CALL);
    struct buf b;

    memset(big, 'x', 5999);
    big[5999] = '\0';
    buf_init(&b, 0);
    m.call_id = big; /* ids are never cut */
    assert_int_equal(push_payload_apns(&m, true, 0, &b), -EMSGSIZE);
    assert_int_equal(push_payload_fcm(&m, 0, 30, &b), -EMSGSIZE);
    m = msg(PUSH_CALL);
    m.call_id = NULL;
    assert_int_equal(push_payload_apns(&m, false, 0, &b), -EINVAL);
    m = msg(PUSH_CALL);
    m.from_name = "bad \xff utf8";
    assert_int_equal(push_payload_apns(&m, false, 0, &b), -EINVAL);
    m = msg(PUSH_CALL);
    m.token = NULL;
    assert_int_equal(push_payload_fcm(&m, 0, 30, &b), -EINVAL);
    assert_int_equal(b.len, 0);
    buf_fini(&b);
    free(big);
}

static void
test_fcm(void **state)
{
    struct push_msg m = msg(PUSH_MISSED);
    char collapse[PUSH_COLLAPSE_ID_LEN + 1];
    struct buf b;
    const char *k;
    json_t *v;

    m.provider = PUSH_FCM;
    m.token = "fcm-token:APA91b";
    buf_init(&b, 0);
    assert_int_equal(push_payload_fcm(&m, 0, 30, &b), 0);
    json_t *o = parse(&b);
    json_t *msg_ = json_object_get(o, "message");
    json_t *data = json_object_get(msg_, "data");
    json_t *android = json_object_get(msg_, "android");
    assert_string_equal(str(msg_, "token"), "fcm-token:APA91b");
    json_object_foreach(data, k, v)
    {
        assert_true(json_is_string(v)); /* FCM: strings only */
    }
    assert_null(json_object_get(data, "from")); /* reserved by FCM */
    assert_string_equal(str(data, "v"), "1");
    assert_string_equal(str(data, "type"), "missed");
    assert_string_equal(str(data, "caller"), "101");
    assert_string_equal(str(data, "from_name"), "Alice");
    assert_string_equal(str(data, "to"), "100");
    assert_string_equal(str(data, "call_id"), "a84b4c76e66710@pbx.example");
    assert_string_equal(str(data, "sent_at"), "1764220800");
    assert_string_equal(str(data, "expires_at"), "1764220830");
    assert_string_equal(str(android, "priority"), "HIGH");
    assert_string_equal(str(android, "ttl"), "30s");
    push_collapse_id(m.call_id, collapse);
    assert_string_equal(str(android, "collapse_key"), collapse);
    json_decref(o);
    buf_reset(&b);
    assert_int_equal(push_payload_fcm(&m, 0, -1, &b), 0);
    o = parse(&b);
    assert_null(json_object_get(
        json_object_get(json_object_get(o, "message"), "android"), "ttl"));
    json_decref(o);
    buf_fini(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_collapse_id),
        cmocka_unit_test(test_apns_voip),
        cmocka_unit_test(test_apns_alert),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_limits_and_errors),
        cmocka_unit_test(test_fcm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
