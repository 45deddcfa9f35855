/*
 * client_test: the push client on a real libuv loop, without a provider:
 * configuration errors, message validation, queue limit, cancellation by
 * push_client_free, and the retry loop against a refused 127.0.0.1 port
 * (attempt limit and deadline). Every test closes the loop cleanly, so a
 * leaked handle or allocation fails under ASan. pushsim-based tests live
 * in tests/integration/push.
 */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "push/push.h"

static char key_path[] = "/tmp/pp_client_test_key_XXXXXX";
static char bad_json[] = "/tmp/pp_client_test_sa_XXXXXX";

struct seen {
    int calls;
    struct push_result last;
    char reason[128];
};

static void
on_done(const struct push_result *r, void *arg)
{
    struct seen *s = arg;

    s->calls++;
    s->last = *r;
    snprintf(s->reason, sizeof(s->reason), "%s", r->reason);
    s->last.reason = s->reason;
}

static int
setup(void **state)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    int fd = mkstemp(key_path);
    FILE *f = fdopen(fd, "w");

    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    EVP_PKEY_free(k);
    fd = mkstemp(bad_json);
    f = fdopen(fd, "w");
    fputs("{\"project_id\": \"p\",\n \"client_email\": }\n", f);
    fclose(f);
    return 0;
}

static int
teardown(void **state)
{
    unlink(key_path);
    unlink(bad_json);
    return 0;
}

/* A 127.0.0.1 port nobody listens on: bind, read the port, close. */
static int
closed_port(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static struct push_conf
apns_conf(char *url, size_t urlcap)
{
    struct push_conf c = { 0 };

    snprintf(url, urlcap, "https://127.0.0.1:%d", closed_port());
    c.apns.enabled = true;
    c.apns.base_url = url;
    c.apns.key_file = key_path;
    c.apns.key_id = "KEYID12345";
    c.apns.team_id = "TEAM123456";
    c.apns.topic = "com.example.phone";
    c.apns.timeout_ms = 2000;
    return c;
}

static struct push_msg
msg(void)
{
    return (struct push_msg){ .provider = PUSH_APNS,
                              .token = "0123456789abcdef0123",
                              .type = PUSH_CALL,
                              .call_id = "call-1",
                              .from = "101",
                              .to = "100" };
}

static void
close_loop(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT); /* runs close callbacks */
    assert_int_equal(uv_loop_close(loop), 0);
}

static void
test_config_errors(void **state)
{
    uv_loop_t loop;
    struct push_conf c = { 0 };
    char err[512];

    uv_loop_init(&loop);
    c.apns.enabled = true;
    c.apns.key_file = "/nonexistent/AuthKey_X.p8";
    c.apns.key_id = "K";
    c.apns.team_id = "T";
    assert_null(push_client_new(&loop, &c, err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/AuthKey_X.p8: "));

    c.apns.key_id = NULL; /* key without id */
    c.apns.key_file = key_path;
    assert_null(push_client_new(&loop, &c, err, sizeof(err)));
    assert_non_null(strstr(err, "key_id"));

    memset(&c, 0, sizeof(c));
    c.fcm.enabled = true;
    c.fcm.service_account_file = bad_json;
    assert_null(push_client_new(&loop, &c, err, sizeof(err)));
    assert_true(strncmp(err, bad_json, strlen(bad_json)) == 0);
    assert_non_null(strstr(err, ":2:")); /* line of the JSON error */

    c.fcm.service_account_file = key_path; /* PEM, not JSON */
    assert_null(push_client_new(&loop, &c, err, sizeof(err)));
    assert_true(strncmp(err, key_path, strlen(key_path)) == 0);
    close_loop(&loop);
}

static void
test_validation_and_queue_full(void **state)
{
    uv_loop_t loop;
    char url[64], err[256];
    struct push_conf c = apns_conf(url, sizeof(url));
    struct seen s[3] = { 0 };
    struct push_client *pc;
    struct push_msg m = msg();

    uv_loop_init(&loop);
    c.queue_max = 2;
    pc = push_client_new(&loop, &c, err, sizeof(err));
    assert_non_null(pc);
    m.provider = PUSH_FCM;
    assert_int_equal(push_send(pc, &m, on_done, &s[0]), -ENOTSUP);
    m = msg();
    m.token = "00ff/../x";
    assert_int_equal(push_send(pc, &m, on_done, &s[0]), -EINVAL);
    m = msg();
    m.from = NULL;
    assert_int_equal(push_send(pc, &m, on_done, &s[0]), -EINVAL);
    m = msg();
    assert_int_equal(push_send(pc, &m, on_done, &s[0]), 0);
    assert_int_equal(push_send(pc, &m, on_done, &s[1]), 0);
    assert_int_equal(push_send(pc, &m, on_done, &s[2]), -ENOBUFS);
    assert_string_equal(push_strerror(-ENOBUFS), "queue full");
    assert_int_equal(push_pending(pc, PUSH_APNS), 2);
    assert_int_equal(s[0].calls, 0); /* never from inside push_send */
    push_client_free(pc);
    assert_int_equal(s[0].calls, 1);
    assert_int_equal(s[1].calls, 1);
    assert_int_equal(s[2].calls, 0);
    assert_int_equal(s[0].last.status, PUSH_CANCELLED);
    close_loop(&loop);
}

static void
test_retry_exhausted_by_attempts(void **state)
{
    uv_loop_t loop;
    char url[64], err[256];
    struct push_conf c = apns_conf(url, sizeof(url));
    struct seen s = { 0 };
    struct push_client *pc;
    struct push_msg m = msg();

    uv_loop_init(&loop);
    c.max_attempts = 3;
    c.backoff_initial_ms = 20;
    pc = push_client_new(&loop, &c, err, sizeof(err));
    assert_non_null(pc);
    assert_int_equal(push_send(pc, &m, on_done, &s), 0);
    while (s.calls == 0 && uv_run(&loop, UV_RUN_ONCE))
        ;
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.last.status, PUSH_RETRY_EXHAUSTED);
    assert_int_equal(s.last.attempts, 3);
    assert_int_equal(s.last.http_status, 0);
    assert_true(strlen(s.reason) > 0); /* curl's text for "refused" */
    /* 2 backoffs of 10..20 then 20..40 ms happened */
    assert_true(s.last.latency_us >= 30000);
    push_client_free(pc);
    close_loop(&loop);
    assert_int_equal(s.calls, 1); /* not cancelled again */
}

static void
test_retry_stops_at_deadline(void **state)
{
    uv_loop_t loop;
    char url[64], err[256];
    struct push_conf c = apns_conf(url, sizeof(url));
    struct seen s = { 0 };
    struct push_client *pc;
    struct push_msg m = msg();

    uv_loop_init(&loop);
    c.max_attempts = 50;
    c.backoff_initial_ms = 4000; /* first backoff >= 2 s > ring time */
    pc = push_client_new(&loop, &c, err, sizeof(err));
    m.expires_at_s = (int64_t)time(NULL) + 1;
    assert_int_equal(push_send(pc, &m, on_done, &s), 0);
    while (s.calls == 0 && uv_run(&loop, UV_RUN_ONCE))
        ;
    assert_int_equal(s.last.status, PUSH_RETRY_EXHAUSTED);
    assert_int_equal(s.last.attempts, 1);
    assert_true(s.last.latency_us < 1000000); /* gave up at once */
    push_client_free(pc);
    close_loop(&loop);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_validation_and_queue_full),
        cmocka_unit_test(test_retry_exhausted_by_attempts),
        cmocka_unit_test(test_retry_stops_at_deadline),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
