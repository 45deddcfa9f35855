/*
 * pushdev_test: push devices ([wake] item 1). First the table alone
 * (validation, matching, max per extension, durability across a reopen,
 * idle expiry with a fake clock, dead tokens), then through the registrar:
 * REGISTER text parsed by sip_msg_parse, answered by reg_handle, the
 * answer parsed again, and the table inspected (the same harness as
 * tests/unit/registrar/reg_test.c, in reg_harness.h).
 *
 * test_locked_database: another process holds the database's write lock
 * (BEGIN IMMEDIATE from python3's sqlite3 module, the kind of thing an
 * operator's sqlite3 shell does); a put must give up after its commit
 * timeout with a clear error, and lookups on other threads must answer at
 * once meanwhile ([wake-room] item 2: the table mutex is never held
 * across a wait for the disk).
 *
 * test_async_locked: the same lock, the SIP worker's way
 * (pushdev_put_async, reg_handle_async): nothing waits; the REGISTER is
 * left pending with its 200 built, the callbacks come once the lock is
 * released, and the devices are then on disk.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "reg_harness.h"

static int
setup(void **state)
{
    struct t *t = rh_setup(true);
    assert_int_equal(reg_ext_set(t->r, "100", "Alice", "secret100", true, 1),
                     0);
    assert_int_equal(reg_ext_set(t->r, "101", "Bob", "secret101", true, 2), 0);
    assert_int_equal(reg_ext_set(t->r, "102", "Carol", "secret102", true, 1),
                     0);
    *state = t;
    return 0;
}

#define APNS_TOK                                                               \
    "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
#define APNS_TOK2                                                              \
    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define FCM_TOK "dXk3:APA91bH-tok_en.1"

static struct pushdev
dev(const char *ext, const char *prov, const char *prid, const char *param,
    const char *inst)
{
    struct pushdev d;
    memset(&d, 0, sizeof(d));
    snprintf(d.ext, sizeof(d.ext), "%s", ext);
    snprintf(d.provider, sizeof(d.provider), "%s", prov);
    snprintf(d.prid, sizeof(d.prid), "%s", prid);
    snprintf(d.param, sizeof(d.param), "%s", param);
    snprintf(d.instance, sizeof(d.instance), "%s", inst);
    return d;
}

static int64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Another process holding BEGIN IMMEDIATE on path until lock_release. */
struct locker {
    pid_t pid;
    int to_child, from_child;
};

static void
lock_db(struct locker *l, const char *path)
{
    static const char script[] =
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)\n"
        "c.execute('BEGIN IMMEDIATE')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
        "c.execute('ROLLBACK')\n";
    int in[2], out[2];

    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(out), 0);
    l->pid = fork();
    assert_true(l->pid >= 0);
    if (l->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execlp("python3", "python3", "-c", script, path, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    l->to_child = in[1];
    l->from_child = out[0];
    /* Until the newline: a pipe may deliver the line in pieces. */
    char line[16] = "";
    ssize_t n = 0, got;
    while (n < (ssize_t)sizeof(line) - 1 && !memchr(line, '\n', (size_t)n)) {
        got = read(l->from_child, line + n, sizeof(line) - 1 - (size_t)n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        n += got;
    }
    if (n != 7 || strncmp(line, "locked\n", 7) != 0)
        fail_msg("python3 could not lock %s: read %zd (%s) \"%s\" (python3 "
                 "with sqlite3 is a prerequisite of this test)",
                 path, n, n < 0 ? strerror(errno) : "", line);
}

static void
lock_release(struct locker *l)
{
    int status;
    close(l->to_child);
    close(l->from_child);
    assert_int_equal(waitpid(l->pid, &status, 0), l->pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

struct putter {
    struct pushdev_table *pd;
    struct pushdev d;
    int rc;
    int64_t took_ms;
    volatile bool done;
};

static void *
put_thread(void *arg)
{
    struct putter *p = arg;
    int64_t t0 = mono_ms();
    p->rc = pushdev_put(p->pd, &p->d, 1, NULL);
    p->took_ms = mono_ms() - t0;
    __atomic_store_n(&p->done, true, __ATOMIC_RELEASE);
    return NULL;
}

static void
test_check(void **state)
{
    (void)state;
    assert_null(pushdev_check("apns", APNS_TOK, "TEAM.com.ex.app.voip"));
    assert_null(pushdev_check("fcm", FCM_TOK, "my-project"));
    assert_string_equal(pushdev_check("webpush", "x", "y"),
                        "Unknown pn-provider");
    assert_string_equal(pushdev_check("apns", "", "T.b"), "Empty pn-prid");
    assert_string_equal(pushdev_check("apns", "xyz0", "T.b"),
                        "Bad pn-prid For apns");
    assert_string_equal(pushdev_check("apns", "abc", "T.b"),
                        "Bad pn-prid For apns"); /* odd, short */
    assert_string_equal(pushdev_check("fcm", "a b", "p"),
                        "Bad pn-prid For fcm");
    assert_string_equal(pushdev_check("fcm", FCM_TOK, ""), "Missing pn-param");
    assert_string_equal(pushdev_check("apns", APNS_TOK, NULL),
                        "Missing pn-param");
    assert_string_equal(pushdev_check("apns", APNS_TOK, "nodot"),
                        "Bad pn-param For apns");
    char longtok[PUSHDEV_PRID_MAX + 8];
    memset(longtok, 'a', sizeof(longtok) - 1);
    longtok[sizeof(longtok) - 1] = '\0';
    assert_string_equal(pushdev_check("fcm", longtok, "p"), "pn-prid Too Long");
    struct pushdev v = dev("1", "apns", APNS_TOK, "T.com.ex.voip", "");
    assert_true(pushdev_is_voip(&v));
    v = dev("1", "apns", APNS_TOK, "T.com.ex", "");
    assert_false(pushdev_is_voip(&v));
    v = dev("1", "fcm", FCM_TOK, "voip", "");
    assert_false(pushdev_is_voip(&v));
}

static void
test_table(void **state)
{
    struct t *t = *state;
    struct pushdev out[4], d;
    bool created;

    d = dev("100", "apns", APNS_TOK, "T.com.ex.voip", "urn:uuid:1");
    assert_int_equal(pushdev_put(t->pd, &d, 1, &created), 0);
    assert_true(created);
    /* Refresh: same device, not created again. */
    assert_int_equal(pushdev_put(t->pd, &d, 1, &created), 0);
    assert_false(created);
    assert_int_equal(pushdev_count(t->pd), 1);

    /* New token, same instance (liblinphone token change): replaced. */
    d = dev("100", "apns", APNS_TOK2, "T.com.ex.voip", "urn:uuid:1");
    assert_int_equal(pushdev_put(t->pd, &d, 4, &created), 0);
    assert_int_equal(pushdev_find_ext(t->pd, "100", out, 4), 1);
    assert_string_equal(out[0].prid, APNS_TOK2);

    /* Max 1: a second device replaces the first. */
    t->now_ms += 1000;
    d = dev("100", "fcm", FCM_TOK, "proj", "urn:uuid:2");
    assert_int_equal(pushdev_put(t->pd, &d, 1, &created), 0);
    assert_true(created);
    assert_int_equal(pushdev_find_ext(t->pd, "100", out, 4), 1);
    assert_string_equal(out[0].provider, "fcm");

    /* Max 2 on another extension: both kept, newest first. */
    d = dev("101", "apns", APNS_TOK, "T.com.ex", "");
    assert_int_equal(pushdev_put(t->pd, &d, 2, NULL), 0);
    t->now_ms += 1000;
    d = dev("101", "apns", APNS_TOK2, "T.com.ex", "");
    assert_int_equal(pushdev_put(t->pd, &d, 2, NULL), 0);
    assert_int_equal(pushdev_find_ext(t->pd, "101", out, 4), 2);
    assert_string_equal(out[0].prid, APNS_TOK2);
    assert_string_equal(out[1].prid, APNS_TOK);
    /* A third with max 2 evicts the least recently seen (APNS_TOK). */
    t->now_ms += 1000;
    d = dev("101", "fcm", "other-token", "proj", "");
    assert_int_equal(pushdev_put(t->pd, &d, 2, NULL), 0);
    assert_int_equal(pushdev_find_ext(t->pd, "101", out, 4), 2);
    assert_string_equal(out[0].prid, "other-token");
    assert_string_equal(out[1].prid, APNS_TOK2);

    /* Matching a REGISTER: by token, or by instance. */
    assert_true(pushdev_match(t->pd, "100", "fcm", FCM_TOK, "", &d));
    assert_true(pushdev_match(t->pd, "100", "fcm", "new", "urn:uuid:2", &d));
    assert_string_equal(d.prid, FCM_TOK);
    assert_false(pushdev_match(t->pd, "100", "apns", APNS_TOK2, "", &d));
    assert_false(pushdev_match(t->pd, "101", "fcm", FCM_TOK, "", &d));

    /* Durable: a reopened table has the same devices. */
    pushdev_close(t->pd);
    open_pd(t);
    assert_int_equal(pushdev_count(t->pd), 3);
    assert_int_equal(pushdev_find_ext(t->pd, "101", out, 4), 2);
    assert_string_equal(out[0].prid, "other-token");

    /* A token moves with its app to another extension. */
    d = dev("102", "fcm", FCM_TOK, "proj", "");
    assert_int_equal(pushdev_put(t->pd, &d, 1, &created), 0);
    assert_true(created);
    assert_int_equal(pushdev_find_ext(t->pd, "100", out, 4), 0);

    /* Dead token. */
    assert_int_equal(pushdev_remove_token(t->pd, "fcm", FCM_TOK), 1);
    assert_int_equal(pushdev_remove_token(t->pd, "fcm", FCM_TOK), 0);
    assert_int_equal(pushdev_find_ext(t->pd, "102", out, 4), 0);
    assert_int_equal(pushdev_remove_ext(t->pd, "101"), 2);
    assert_int_equal(pushdev_count(t->pd), 0);
    pushdev_close(t->pd);
    open_pd(t);
    assert_int_equal(pushdev_count(t->pd), 0);
}

static void
test_idle_expiry(void **state)
{
    struct t *t = *state;
    struct pushdev d = dev("100", "fcm", FCM_TOK, "proj", "");
    struct pushdev d2 = dev("101", "fcm", "tok2", "proj", "");

    assert_int_equal(pushdev_put(t->pd, &d, 1, NULL), 0);
    t->now_ms += 80000LL * 1000;
    assert_int_equal(pushdev_put(t->pd, &d2, 1, NULL), 0);
    assert_int_equal(pushdev_expire(t->pd), 0);
    t->now_ms += 7000LL * 1000; /* d idle 87000 s > 86400 */
    assert_int_equal(pushdev_expire(t->pd), 1);
    assert_false(pushdev_match(t->pd, "100", "fcm", FCM_TOK, "", &d));
    /* The database agrees; and d2 expires on load once idle. */
    pushdev_close(t->pd);
    open_pd(t);
    assert_int_equal(pushdev_count(t->pd), 1);
    pushdev_close(t->pd);
    t->now_ms += 90000LL * 1000;
    open_pd(t);
    assert_int_equal(pushdev_count(t->pd), 0);
}

#define C1_PLAIN "Contact: <sip:100@192.0.2.7:5062>\r\n"

#define PN_APNS                                                                \
    "Contact: <sip:100@192.0.2.7:5062;transport=udp;pn-provider=apns;"         \
    "pn-prid=" APNS_TOK ";pn-param=TEAM.com.ex.app.voip>"                      \
    ";+sip.instance=\"<urn:uuid:aaaa>\"\r\n"

static void
test_register_push(void **state)
{
    struct t *t = *state;
    struct pushdev out[2];

    assert_int_equal(register_ok(t, (struct req){.contacts = PN_APNS}), 200);
    assert_true(rsp_has(t, "Feature-Caps: *;+sip.pns=\"apns\"\r\n"));
    assert_int_equal(pushdev_find_ext(t->pd, "100", out, 2), 1);
    assert_string_equal(out[0].prid, APNS_TOK);
    assert_string_equal(out[0].param, "TEAM.com.ex.app.voip");
    assert_string_equal(out[0].instance, "urn:uuid:aaaa");
    assert_int_equal(contact_count(t), 1);

    /* Background mode: Expires 0 removes the binding, keeps the device. */
    assert_int_equal(
        register_ok(t, (struct req){.contacts = PN_APNS, .expires = "0"}), 200);
    assert_int_equal(contact_count(t), 0);
    assert_int_equal(pushdev_find_ext(t->pd, "100", out, 2), 1);
    /* Durable at once (no write-behind): a fresh table sees it. */
    struct pushdev_table *again;
    struct pushdev_opts o = {
        .store = t->st, .clock_ms = fake_clock, .clock_arg = t};
    char err[256];
    assert_int_equal(pushdev_open(&o, &again, err, sizeof(err)), 0);
    assert_int_equal(pushdev_count(again), 1);
    pushdev_close(again);

    /* Contact: * signs out completely. */
    assert_int_equal(register_ok(t, (struct req){.contacts = "Contact: *\r\n",
                                                 .expires = "0"}),
                     200);
    assert_int_equal(pushdev_find_ext(t->pd, "100", out, 2), 0);
}

static void
test_register_bad_push(void **state)
{
    struct t *t = *state;

    /* fcm not served here → 555 and nothing stored (no binding either). */
    struct reg_push_opts po = {.table = t->pd,
                               .apns = true,
                               .fcm = false,
                               .push_enabled = push_enabled};
    reg_set_push(t->r, &po);
    assert_int_equal(
        register_ok(t,
                    (struct req){.contacts = "Contact: <sip:100@192.0.2.7:5062;"
                                             "pn-provider=fcm;pn-prid=tok;"
                                             "pn-param=proj>\r\n"}),
        555);
    assert_true(rsp_has(t, "555 Push Notification Service Not Supported"));
    assert_int_equal(pushdev_count(t->pd), 0);
    assert_int_equal(register_ok(t, (struct req){.contacts = C1_PLAIN}), 200);
    assert_int_equal(contact_count(t), 1); /* only the plain one */

    static const struct {
        const char *contact, *reason;
    } bad[] = {
        {"Contact: <sip:100@h;pn-provider=apns;pn-prid=;pn-param=T.b>\r\n",
         "Empty pn-prid"},
        {"Contact: <sip:100@h;pn-provider=apns;pn-prid=zz11;pn-param=T.b>\r\n",
         "Bad pn-prid For apns"},
        {"Contact: <sip:100@h;pn-provider=apns;pn-prid=" APNS_TOK ">\r\n",
         "Missing pn-param"},
        {"Contact: <sip:100@h;pn-provider=apns;pn-prid=%00ab;pn-param=T.b>\r\n",
         "Bad pn-prid"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(
            register_ok(t, (struct req){.contacts = bad[i].contact}), 400);
        char line[128];
        snprintf(line, sizeof(line), "SIP/2.0 400 %s\r\n", bad[i].reason);
        if (!rsp_has(t, line))
            fprintf(stderr, "case %zu: %.60s\n", i, t->rsp.data);
        assert_true(rsp_has(t, line));
    }
    assert_int_equal(pushdev_count(t->pd), 0);

    /* Capability query: pn-provider alone (empty = all served). */
    assert_int_equal(
        register_ok(t, (struct req){.contacts = "Contact: <sip:100@192.0.2.7:"
                                                "5062;pn-provider>\r\n"}),
        200);
    assert_true(rsp_has(t, "Feature-Caps: *;+sip.pns=\"apns\"\r\n"));
    assert_false(rsp_has(t, "sip.pns=\"fcm\""));
    assert_int_equal(pushdev_count(t->pd), 0);
}

static void
test_register_push_disabled(void **state)
{
    struct t *t = *state;
    assert_int_equal(
        register_ok(t,
                    (struct req){.to_user = "102",
                                 .contacts = "Contact: <sip:102@192.0.2.7:5062;"
                                             "pn-provider=fcm;pn-prid=tok;"
                                             "pn-param=proj>\r\n"}),
        200);
    assert_false(rsp_has(t, "Feature-Caps"));
    assert_true(rsp_has(t, "Warning: 399 pushpbx"));
    assert_int_equal(contact_count(t), 1);
    assert_int_equal(pushdev_count(t->pd), 0);
}

static void
test_register_max_devices(void **state)
{
    struct t *t = *state;
    struct pushdev out[4];
    /* 100: max 1, the second app installation replaces the first. */
    assert_int_equal(register_ok(t, (struct req){.contacts = PN_APNS}), 200);
    assert_int_equal(
        register_ok(t,
                    (struct req){.call_id = "cid-2",
                                 .contacts = "Contact: <sip:100@192.0.2.8:5062;"
                                             "pn-provider=fcm;pn-prid=tok2;"
                                             "pn-param=proj>\r\n"}),
        200);
    assert_true(rsp_has(t, "Feature-Caps: *;+sip.pns=\"fcm\"\r\n"));
    assert_int_equal(pushdev_find_ext(t->pd, "100", out, 4), 1);
    assert_string_equal(out[0].prid, "tok2");
    /* 101: max 2, both stay. */
    for (int i = 0; i < 2; i++) {
        char c[256], cid[16];
        snprintf(c, sizeof(c),
                 "Contact: <sip:101@192.0.2.%d:5062;pn-provider=fcm;"
                 "pn-prid=t101-%d;pn-param=proj>\r\n",
                 10 + i, i);
        snprintf(cid, sizeof(cid), "c101-%d", i);
        assert_int_equal(register_ok(t, (struct req){.to_user = "101",
                                                     .call_id = cid,
                                                     .contacts = c}),
                         200);
    }
    assert_int_equal(pushdev_find_ext(t->pd, "101", out, 4), 2);
}

/* Long enough that a scheduling pause of the loaded, sanitized test
 * machine (ctest -j2 beside other builds) cannot pass for a blocked
 * lookup: the old code held every lookup for the whole busy timeout
 * (2.5 s measured), the new one answers in milliseconds. */
#define LOCKED_TIMEOUT_MS 2000

/* Replace the fixture's table by one with a short commit timeout, wired
 * into the registrar. */
static void
reopen_pd_short(struct t *t)
{
    pushdev_close(t->pd);
    struct pushdev_opts o = {.store = t->st,
                             .idle_expiry_s = 86400,
                             .commit_timeout_ms = LOCKED_TIMEOUT_MS,
                             .clock_ms = fake_clock,
                             .clock_arg = t};
    char err[256];
    assert_int_equal(pushdev_open(&o, &t->pd, err, sizeof(err)), 0);
    struct reg_push_opts po = {.table = t->pd,
                               .apns = true,
                               .fcm = true,
                               .push_enabled = push_enabled};
    reg_set_push(t->r, &po);
}

static void
test_locked_database(void **state)
{
    struct t *t = *state;
    struct pushdev out[4];
    struct locker l;

    reopen_pd_short(t);
    struct pushdev d101 = dev("101", "apns", APNS_TOK, "T.com.ex", "");
    assert_int_equal(pushdev_put(t->pd, &d101, 2, NULL), 0);
    assert_int_equal(store_sync(t->st), 0); /* the writer is idle */

    lock_db(&l, t->path);
    struct putter p = {.pd = t->pd,
                       .d = dev("100", "fcm", FCM_TOK, "proj", "urn:uuid:9")};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, put_thread, &p), 0);
    /* While the put waits, lookups (an INVITE to a push extension on
     * another worker) answer at once, every time. */
    int64_t worst_ms = 0;
    unsigned lookups = 0;
    while (!__atomic_load_n(&p.done, __ATOMIC_ACQUIRE)) {
        int64_t t0 = mono_ms();
        size_t n = pushdev_find_ext(t->pd, "101", out, 4);
        int64_t took = mono_ms() - t0;
        assert_int_equal(n, 1);
        assert_string_equal(out[0].prid, APNS_TOK);
        if (took > worst_ms)
            worst_ms = took;
        lookups++;
    }
    pthread_join(th, NULL);
    fprintf(stderr, "locked put: rc=%d after %lld ms; %u lookups meanwhile, "
                    "slowest %lld ms\n",
            p.rc, (long long)p.took_ms, lookups, (long long)worst_ms);
    assert_true(worst_ms < LOCKED_TIMEOUT_MS / 2);
    /* The put gave up after its own timeout, with a clear error. */
    assert_int_equal(p.rc, -ETIMEDOUT);
    assert_true(p.took_ms >= LOCKED_TIMEOUT_MS - 10);
    assert_true(p.took_ms < LOCKED_TIMEOUT_MS + 1000);
    /* A push REGISTER meanwhile: 500 within the timeout, not a hang. */
    int64_t t0 = mono_ms();
    assert_int_equal(
        register_ok(t, (struct req){.to_user = "102",
                                    .contacts =
                                        "Contact: <sip:102@192.0.2.7:5062;"
                                        "pn-provider=apns;pn-prid=" APNS_TOK2
                                        ";pn-param=T.com.ex>\r\n"}),
        200); /* 102 has push disabled by policy: no device, no wait */
    assert_int_equal(
        register_ok(t, (struct req){.contacts = PN_APNS, .call_id = "cid-l"}),
        500);
    assert_true(mono_ms() - t0 < LOCKED_TIMEOUT_MS + 1000);
    lock_release(&l);

    /* The unsynced device is written again by the next put even though
     * nothing changed (no refresh shortcut), and is then on disk. */
    assert_int_equal(pushdev_put(t->pd, &p.d, 1, NULL), 0);
    assert_int_equal(register_ok(t, (struct req){.contacts = PN_APNS,
                                                 .call_id = "cid-l"}),
                     200);
    pushdev_close(t->pd);
    open_pd(t);
    reg_set_push(t->r, &(struct reg_push_opts){.table = t->pd,
                                                .apns = true,
                                                .fcm = true,
                                                .push_enabled = push_enabled});
    assert_true(pushdev_match(t->pd, "100", "apns", APNS_TOK, NULL, &out[0]));
    assert_int_equal(pushdev_find_ext(t->pd, "101", out, 4), 0);
}

/* A commit callback's result, awaited with a bound. */
struct done {
    pthread_mutex_t m;
    pthread_cond_t c;
    int calls;
    int rc;
};

static void
done_init(struct done *d)
{
    pthread_mutex_init(&d->m, NULL);
    pthread_cond_init(&d->c, NULL);
    d->calls = 0;
    d->rc = 1;
}

static void
done_fini(struct done *d)
{
    pthread_cond_destroy(&d->c);
    pthread_mutex_destroy(&d->m);
}

static void
on_done(int rc, void *arg)
{
    struct done *d = arg;
    pthread_mutex_lock(&d->m);
    d->calls++;
    d->rc = rc;
    pthread_cond_broadcast(&d->c);
    pthread_mutex_unlock(&d->m);
}

static int
done_calls(struct done *d)
{
    pthread_mutex_lock(&d->m);
    int n = d->calls;
    pthread_mutex_unlock(&d->m);
    return n;
}

/* Wait (at most 10 s) for the callback; returns its rc. */
static int
done_wait(struct done *d)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&d->m);
    while (d->calls == 0 &&
           pthread_cond_timedwait(&d->c, &d->m, &until) != ETIMEDOUT)
        ;
    int calls = d->calls, rc = d->rc;
    pthread_mutex_unlock(&d->m);
    assert_int_equal(calls, 1);
    return rc;
}

static void
test_async_locked(void **state)
{
    struct t *t = *state;
    struct pushdev out[4];
    struct locker l;
    struct done put, regd;

    done_init(&put);
    done_init(&regd);
    struct pushdev d101 = dev("101", "apns", APNS_TOK, "T.com.ex", "");
    assert_int_equal(pushdev_put(t->pd, &d101, 2, NULL), 0);
    assert_int_equal(store_sync(t->st), 0); /* the writer is idle */

    lock_db(&l, t->path);
    /* A put does not wait for the disk: pending at once, in memory. */
    struct pushdev d = dev("101", "fcm", FCM_TOK, "proj", "urn:uuid:9");
    int64_t t0 = mono_ms();
    assert_int_equal(pushdev_put_async(t->pd, &d, 2, NULL, on_done, &put),
                     PUSHDEV_PENDING);
    /* A refresh that changes nothing of a synced device needs no commit. */
    assert_int_equal(pushdev_put_async(t->pd, &d101, 2, NULL, on_done, &put),
                     0);
    assert_true(pushdev_match(t->pd, "101", "fcm", FCM_TOK, NULL, &out[0]));

    /* A push REGISTER the worker's way: accepted, its 200 built, and left
     * pending until the commit; nothing waited. */
    t->async_cb = on_done;
    t->async_arg = &regd;
    assert_int_equal(
        register_ok(t, (struct req){.contacts = PN_APNS, .call_id = "cid-a"}),
        REG_PENDING);
    assert_true(rsp_has(t, "SIP/2.0 200 OK\r\n"));
    assert_true(rsp_has(t, "Feature-Caps: *;+sip.pns=\"apns\"\r\n"));
    assert_int_equal(contact_count(t), 1);
    int64_t took = mono_ms() - t0;
    fprintf(stderr, "async put + pending REGISTER with the database locked: "
                    "%lld ms\n",
            (long long)took);
    assert_true(took < LOCKED_TIMEOUT_MS / 2);
    /* The lock holds: no commit could have been reported. */
    assert_int_equal(done_calls(&put), 0);
    assert_int_equal(done_calls(&regd), 0);

    lock_release(&l);
    assert_int_equal(done_wait(&put), 0);
    assert_int_equal(done_wait(&regd), 0);

    /* The answer once the commit is known: the 200 built before, or a 500
     * built from the request. */
    struct arena a;
    struct sip_msg req;
    struct sip_error err;
    struct buf b;
    arena_init(&a, SIP_MSG_ARENA_CAP);
    buf_init(&b, 65536);
    assert_int_equal(
        sip_msg_parse(&req, t->last_req, t->last_req_len, &a, &err), 0);
    assert_int_equal(reg_handle_done(t->r, 0, &req, &b), 200);
    assert_int_equal(b.len, 0);
    assert_int_equal(reg_handle_done(t->r, -EIO, &req, &b), 500);
    assert_non_null(strstr(b.data, "SIP/2.0 500 Push Device Not Stored\r\n"));
    assert_non_null(strstr(b.data, "CSeq: "));
    buf_fini(&b);
    arena_fini(&a);

    /* Contact: * the same way: pending, then the devices are gone. */
    struct done star;
    done_init(&star);
    t->async_arg = &star;
    int st = register_ok(t, (struct req){.contacts = "Contact: *\r\n",
                                         .expires = "0",
                                         .call_id = "cid-a"});
    assert_int_equal(st, REG_PENDING);
    assert_int_equal(done_wait(&star), 0);
    assert_int_equal(pushdev_find_ext(t->pd, "100", out, 4), 0);
    t->async_cb = NULL;

    /* Durable: a reopened table has 101's FCM device (its APNs token moved
     * to 100 with the REGISTER) and none of 100 (signed out). */
    pushdev_close(t->pd);
    open_pd(t);
    reg_set_push(t->r, &(struct reg_push_opts){.table = t->pd,
                                                .apns = true,
                                                .fcm = true,
                                                .push_enabled = push_enabled});
    assert_int_equal(pushdev_find_ext(t->pd, "101", out, 4), 1);
    assert_string_equal(out[0].prid, FCM_TOK);
    assert_int_equal(pushdev_find_ext(t->pd, "100", out, 4), 0);
    done_fini(&put);
    done_fini(&regd);
    done_fini(&star);
}

/* Every field at its longest, and the shortest: a device is stored as
 * its strings packed after the node (pushdev.c struct node); each comes
 * back whole through every read (find_ext, match, list) and a reopen. */
struct listed {
    struct pushdev v[4];
    size_t n;
};

static void
on_listed(const struct pushdev *d, void *arg)
{
    struct listed *l = arg;
    if (l->n < 4)
        l->v[l->n] = *d;
    l->n++;
}

static void
check_same(const struct pushdev *a, const struct pushdev *b)
{
    assert_string_equal(a->ext, b->ext);
    assert_string_equal(a->provider, b->provider);
    assert_string_equal(a->prid, b->prid);
    assert_string_equal(a->param, b->param);
    assert_string_equal(a->instance, b->instance);
}

static void
test_longest_values(void **state)
{
    struct t *t = *state;
    struct pushdev big, small, out[4], m;
    char ext[PUSHDEV_EXT_MAX + 1], prid[PUSHDEV_PRID_MAX + 1];
    char param[PUSHDEV_PARAM_MAX + 1], inst[PUSHDEV_INSTANCE_MAX + 1];

    memset(ext, '7', sizeof(ext) - 1);
    ext[sizeof(ext) - 1] = '\0';
    for (size_t i = 0; i < sizeof(prid) - 1; i++)
        prid[i] = "ab:-_.0123456789"[i % 16];
    prid[sizeof(prid) - 1] = '\0';
    for (size_t i = 0; i < sizeof(param) - 1; i++)
        param[i] = i % 8 == 7 ? '.' : (char)('a' + i % 26);
    param[sizeof(param) - 1] = '\0';
    memset(inst, 'u', sizeof(inst) - 1);
    inst[sizeof(inst) - 1] = '\0';
    big = dev(ext, "fcm", prid, param, inst);
    assert_string_equal(big.ext, ext); /* dev() cut nothing */
    assert_string_equal(big.prid, prid);
    assert_string_equal(big.param, param);
    assert_string_equal(big.instance, inst);
    small = dev("1", "apns", APNS_TOK, "T.b", "");
    assert_int_equal(pushdev_put(t->pd, &big, 1, NULL), 0);
    assert_int_equal(pushdev_put(t->pd, &small, 1, NULL), 0);

    for (int round = 0; round < 2; round++) {
        assert_int_equal(pushdev_find_ext(t->pd, ext, out, 4), 1);
        check_same(&out[0], &big);
        assert_int_equal(out[0].created_at, t->now_ms / 1000);
        assert_int_equal(out[0].last_seen, t->now_ms / 1000);
        assert_true(pushdev_match(t->pd, ext, NULL, NULL, inst, &m));
        check_same(&m, &big);
        assert_true(pushdev_match(t->pd, "1", "apns", APNS_TOK, NULL, &m));
        check_same(&m, &small);
        struct listed l = {0};
        pushdev_list(t->pd, on_listed, &l);
        assert_int_equal(l.n, 2);
        check_same(strcmp(l.v[0].ext, "1") == 0 ? &l.v[1] : &l.v[0], &big);
        /* The same from the database. */
        pushdev_close(t->pd);
        open_pd(t);
    }
    /* A stored row too long for a struct pushdev is skipped at load, not
     * cut (a cut token would be pushed to, and fail, for ever). */
    char over_prid[PUSHDEV_PRID_MAX + 2];
    memset(over_prid, 'c', sizeof(over_prid) - 1);
    over_prid[sizeof(over_prid) - 1] = '\0';
    struct store_pushdev row = {.ext = "5",
                                .provider = "fcm",
                                .prid = over_prid,
                                .param = "p",
                                .instance = "",
                                .created_at = t->now_ms / 1000,
                                .last_seen = t->now_ms / 1000};
    assert_int_equal(store_pushdev_put(t->st, &row), 0);
    assert_int_equal(store_sync(t->st), 0);
    pushdev_close(t->pd);
    open_pd(t);
    assert_int_equal(pushdev_find_ext(t->pd, "5", out, 4), 0);
    assert_int_equal(pushdev_count(t->pd), 2);

    /* One character more is refused, not cut. */
    struct pushdev over = big;
    memset(over.instance, 'u', sizeof(over.instance)); /* no NUL left */
    assert_int_equal(pushdev_put(t->pd, &over, 1, NULL), -EINVAL);
    over = big;
    memset(over.provider, 'p', sizeof(over.provider));
    assert_int_equal(pushdev_put(t->pd, &over, 1, NULL), -EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check),
        cmocka_unit_test_setup_teardown(test_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_register_push, setup, teardown),
        cmocka_unit_test_setup_teardown(test_register_bad_push, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_register_push_disabled, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_register_max_devices, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_locked_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_locked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_longest_values, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
