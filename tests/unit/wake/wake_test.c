/*
 * wake_test: the per-device decisions and call endings of src/wake
 * (product.md rules 3-8), driven through its proxy observer with a real
 * registrar and push-device table (bindings made by real REGISTERs), a
 * fake push sender that records every push, a manual timer queue for the
 * grace time, and a fake proxy: wake calls proxy.h directly, so this test
 * defines the proxy functions wake uses (180 sent, branch provisional,
 * late INVITE+CANCEL, release of a held call, observer registration) and
 * links no proxy object.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>

#include "base/tq.h"
#include "proxy/proxy.h"
#include "wake/wake.h"

struct sent {
    enum push_provider provider;
    char token[300];
    enum push_type type;
    char call_id[64];
    char from_name[64];
    int64_t expires_at;
    struct wake_job *job;
};

/* The wake side of the fixture; the registrar side is reg_harness.h's. */
#define REG_HARNESS_EXTRA_FIELDS                                               \
    struct wake *w;                                                            \
    struct tq tq;                                                              \
    uint64_t mono_ms;                                                          \
    struct sent sent[32];                                                      \
    size_t nsent;                                                              \
    int ringing;                                                               \
    bool provisional;                                                          \
    int late;                                                                  \
    char late_reason[96];                                                      \
    char late_uri[256];                                                        \
    char late_name[64];                                                        \
    int released;                                                              \
    int release_status;                                                        \
    unsigned release_worker;                                                   \
    char release_call_id[64];
#include "reg_harness.h" /* tests/unit/registrar, via CMake */

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

#define TOK_A "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
#define TOK_F "fcm-token:APA91b_1"
#define TOPIC_VOIP "TEAM.com.ex.app.voip"
#define RING_S 30

/* ---- fakes ------------------------------------------------------------- */

static int
fake_send(struct wake_job *j, const struct push_msg *m, void *arg)
{
    struct t *t = arg;
    assert_true(t->nsent < 32);
    struct sent *s = &t->sent[t->nsent++];
    s->provider = m->provider;
    snprintf(s->token, sizeof(s->token), "%s", m->token);
    s->type = m->type;
    snprintf(s->call_id, sizeof(s->call_id), "%s", m->call_id);
    snprintf(s->from_name, sizeof(s->from_name), "%s",
             m->from_name ? m->from_name : "(null)");
    s->expires_at = m->expires_at_s;
    s->job = j;
    return 0;
}

/* ---- the fake proxy (link-time: these are proxy.h's functions) ------- */

static struct t *the_t; /* the running test's fixture */
static int fake_sh;     /* stands for the proxy's shared part */

int
proxy_observer_add(struct proxy_shared *sh, const struct proxy_observer *ops,
                   void *arg)
{
    (void)sh;
    (void)ops;
    (void)arg;
    return 0;
}

int
proxy_call_ringing(struct proxy_call *call)
{
    (void)call;
    the_t->ringing++;
    return 0;
}

bool
proxy_call_branch_rang(const struct proxy_call *call, const char *uri)
{
    (void)call;
    (void)uri;
    return the_t->provisional;
}

int
proxy_late_cancel(struct proxy_shared *sh, const struct reg_contact *b,
                  const struct proxy_late *info)
{
    struct t *t = the_t;
    assert_ptr_equal(sh, (struct proxy_shared *)(void *)&fake_sh);
    t->late++;
    snprintf(t->late_reason, sizeof(t->late_reason), "%s", info->reason);
    snprintf(t->late_uri, sizeof(t->late_uri), "%s", b->uri);
    snprintf(t->late_name, sizeof(t->late_name), "%s", info->caller_name);
    return 0;
}

void
proxy_call_release(struct proxy_shared *sh, unsigned worker,
                   const char *call_id, const char *callee, int status)
{
    struct t *t = the_t;
    (void)sh;
    (void)callee;
    t->released++;
    t->release_status = status;
    t->release_worker = worker;
    snprintf(t->release_call_id, sizeof(t->release_call_id), "%s", call_id);
}

static uint64_t
mono(void *arg)
{
    return ((struct t *)arg)->mono_ms;
}

/* Complete every push not yet completed, with status st. */
static void
complete_all(struct t *t, enum push_status st)
{
    for (size_t i = 0; i < t->nsent; i++) {
        if (!t->sent[i].job)
            continue;
        struct push_result r = {
            .status = st,
            .provider = t->sent[i].provider,
            .http_status = st == PUSH_DEAD_TOKEN ? 410 : 200,
            .reason = st == PUSH_DEAD_TOKEN ? "Unregistered" : "",
            .id = "x",
            .attempts = 1,
            .latency_us = 1500};
        wake_job_done(t->sent[i].job, &r);
        t->sent[i].job = NULL;
    }
}

static void
bind_cb(const char *ext, const struct reg_contact *c, size_t n, void *arg)
{
    struct t *t = arg;
    if (t->w)
        wake_on_register(t->w, ext, c, n);
}

static int
wsetup(void **state)
{
    setup(state);
    struct t *t = *state;
    tq_init(&t->tq);
    t->mono_ms = 1000;
    struct wake_opts o = {
        .devices = t->pd,
        .reg = t->r,
        .grace_ms = 500,
        .ring_s = RING_S,
        .ringing = true,
        .recent_max = 4,
        .send = fake_send,
        .send_arg = t,
        .clock_ms = fake_clock,
        .clock_arg = t,
    };
    assert_int_equal(wake_new(&o, &t->w), 0);
    the_t = t;
    assert_int_equal(wake_attach(t->w, (struct proxy_shared *)(void *)&fake_sh),
                     0);
    wake_worker_set_tq(t->w, 0, &t->tq, mono, t);
    reg_set_bind_cb(t->r, bind_cb, t);
    return 0;
}

static int
wteardown(void **state)
{
    struct t *t = *state;
    complete_all(t, PUSH_CANCELLED);
    wake_worker_fini(t->w, 0);
    wake_free(t->w);
    t->w = NULL;
    tq_fini(&t->tq);
    return teardown(state);
}

/* ---- helpers ----------------------------------------------------------- */

static int dummy_calls[8];

static bool
start_call_named(struct t *t, int k, const char *call_id, const char *callee,
                 const char *name)
{
    /* The proxy's location lookup, which it hands to its observers. */
    struct arena a;
    struct reg_contact *bs = NULL;
    size_t nb = 0;
    arena_init(&a, 64 * 1024);
    if (reg_lookup(t->r, slice_cstr(callee), &a, &bs, &nb) < 0)
        nb = 0;
    struct proxy_call_info info = {
        .call = (struct proxy_call *)(void *)&dummy_calls[k],
        .call_id = call_id,
        .caller = "101",
        .callee = callee,
        .caller_name = name,
        .bindings = nb,
        .contacts = bs,
        .worker = 0,
    };
    bool held = wake_observer()->call_started(&info, t->w);
    arena_fini(&a);
    return held;
}

static bool
start_call(struct t *t, int k, const char *call_id, const char *callee)
{
    return start_call_named(t, k, call_id, callee, "");
}

static void
end_call(struct t *t, const char *call_id, const char *callee,
         enum proxy_outcome o, const char *answered_by)
{
    struct proxy_call_record rec = {.outcome = o};
    snprintf(rec.call_id, sizeof(rec.call_id), "%s", call_id);
    snprintf(rec.callee, sizeof(rec.callee), "%s", callee);
    snprintf(rec.caller, sizeof(rec.caller), "101");
    snprintf(rec.answered_by, sizeof(rec.answered_by), "%s",
             answered_by ? answered_by : "");
    wake_observer()->call_ended(&rec, t->w);
}

static void
advance(struct t *t, uint64_t ms)
{
    t->mono_ms += ms;
    tq_run(&t->tq, t->mono_ms, 0);
}

static char contact_buf[512];

static const char *
pn_contact(const char *host, const char *prov, const char *prid,
           const char *param, const char *transport)
{
    snprintf(contact_buf, sizeof(contact_buf),
             "Contact: <sip:100@%s:5062;transport=%s;pn-provider=%s;"
             "pn-prid=%s;pn-param=%s>\r\n",
             host, transport, prov, prid, param);
    return contact_buf;
}

/* Register the device (binding + push device), then background it. */
static void
device_background(struct t *t, const char *prov, const char *prid,
                  const char *param)
{
    const char *c = pn_contact("192.0.2.7", prov, prid, param, "udp");
    assert_int_equal(register_ok(t, (struct req){.contacts = c}), 200);
    assert_int_equal(
        register_ok(t, (struct req){.contacts = c, .expires = "0"}), 200);
}

/* ---- tests ------------------------------------------------------------- */

/* The registrar parses a binding's RFC 8599 params once, when it stores
 * it (unescaped), so that wake compares strings: a token with an escaped
 * ':' is matched to its push device without parsing the Contact again. */
static void
test_binding_pn_parsed(void **state)
{
    struct t *t = *state;
    const char *c =
        pn_contact("192.0.2.9", "fcm", "fcm-token%3AAPA91b_1", "proj", "udp");
    assert_int_equal(register_ok(t, (struct req){.contacts = c}), 200);
    struct arena a;
    struct reg_contact *bs;
    size_t n;
    arena_init(&a, 64 * 1024);
    assert_int_equal(reg_lookup(t->r, slice_cstr("100"), &a, &bs, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(bs[0].pn_provider, "fcm");
    assert_string_equal(bs[0].pn_prid, TOK_F);
    assert_string_equal(bs[0].pn_param, "proj");
    arena_fini(&a);
    /* ... and wake finds the device's binding by them: a UDP binding is
     * tried directly first (grace), not pushed at once. */
    assert_true(start_call(t, 0, "call-pn", "100"));
    assert_int_equal(t->nsent, 0);
    advance(t, 500);
    assert_int_equal(t->nsent, 1);
    assert_string_equal(t->sent[0].token, TOK_F);
}

/* Rule 5/6/7: no binding → pushed at once; cancelled → missed push; the
 * VoIP device registering afterwards gets INVITE+CANCEL (cause=487),
 * exactly once. */
static void
test_push_cancel_voip(void **state)
{
    struct t *t = *state;
    device_background(t, "apns", TOK_A, TOPIC_VOIP);
    assert_int_equal(contact_count(t), 0);

    assert_true(start_call(t, 0, "call-1", "100"));
    assert_int_equal(t->nsent, 1);
    assert_int_equal(t->sent[0].type, PUSH_CALL);
    assert_int_equal(t->sent[0].provider, PUSH_APNS);
    assert_string_equal(t->sent[0].token, TOK_A);
    assert_int_equal(t->sent[0].expires_at, t->now_ms / 1000 + RING_S);
    assert_int_equal(t->ringing, 1);
    advance(t, 1000); /* no grace timer for a device without binding */
    assert_int_equal(t->nsent, 1);
    struct wake_pending pend[4];
    assert_int_equal(wake_pending_list(t->w, pend, 4), 1);
    assert_string_equal(pend[0].call_id, "call-1");
    assert_string_equal(pend[0].callee, "100");
    assert_int_equal(pend[0].pushed, 1);
    assert_int_equal(pend[0].expires_at, t->now_ms / 1000 + RING_S);

    end_call(t, "call-1", "100", PROXY_OUT_CANCELLED, NULL);
    assert_int_equal(t->nsent, 2);
    assert_int_equal(t->sent[1].type, PUSH_MISSED);
    assert_string_equal(t->sent[1].call_id, "call-1");
    assert_int_equal(t->sent[1].expires_at, 0);

    /* The device wakes: challenged REGISTER first (nothing), then OK. */
    const char *c = pn_contact("192.0.2.9", "apns", TOK_A, TOPIC_VOIP, "udp");
    send_reg(t, &(struct req){.contacts = c});
    assert_int_equal(t->status, 401);
    assert_int_equal(t->late, 0);
    assert_int_equal(send_reg(t, &(struct req){.contacts = c, .auth = true}),
                     200);
    assert_int_equal(t->late, 1);
    assert_string_equal(t->late_reason,
                        "SIP;cause=487;text=\"Call cancelled\"");
    assert_non_null(strstr(t->late_uri, "192.0.2.9"));
    /* A refresh does not repeat it. */
    assert_int_equal(register_ok(t, (struct req){.contacts = c}), 200);
    assert_int_equal(t->late, 1);
    struct wake_stats st;
    wake_stats_get(t->w, &st);
    assert_int_equal(st.sent, 2);
    assert_int_equal(st.late_cancels, 1);
    assert_int_equal(st.pending_calls, 0);
}

/* FCM device: missed push, and registering afterwards gets nothing. Also
 * a VoIP device registering after its push expired gets nothing. */
static void
test_push_cancel_fcm_and_expiry(void **state)
{
    struct t *t = *state;
    device_background(t, "fcm", TOK_F, "proj");
    assert_true(start_call(t, 0, "call-2", "100"));
    end_call(t, "call-2", "100", PROXY_OUT_NO_ANSWER, NULL);
    assert_int_equal(t->nsent, 2);
    assert_int_equal(t->sent[0].provider, PUSH_FCM);
    assert_int_equal(t->sent[1].type, PUSH_MISSED);
    const char *c = pn_contact("192.0.2.9", "fcm", TOK_F, "proj", "udp");
    assert_int_equal(register_ok(t, (struct req){.contacts = c}), 200);
    assert_int_equal(t->late, 0);

    /* VoIP, but too late. */
    device_background(t, "apns", TOK_A, TOPIC_VOIP);
    assert_true(start_call(t, 1, "call-3", "100"));
    end_call(t, "call-3", "100", PROXY_OUT_CANCELLED, NULL);
    t->now_ms += (RING_S + 5) * 1000LL;
    c = pn_contact("192.0.2.9", "apns", TOK_A, TOPIC_VOIP, "udp");
    assert_int_equal(register_ok(t, (struct req){.contacts = c}), 200);
    assert_int_equal(t->late, 0);
}

/* Rule 3: live TCP binding → no push, nothing held. */
static void
test_live_tcp(void **state)
{
    struct t *t = *state;
    t->src.transport = REG_TP_TCP;
    t->src.flow_id = 42;
    const char *c = pn_contact("192.0.2.7", "fcm", TOK_F, "proj", "tcp");
    assert_int_equal(register_ok(t, (struct req){.contacts = c}), 200);
    assert_false(start_call(t, 0, "call-4", "100"));
    advance(t, 2000);
    assert_int_equal(t->nsent, 0);
    assert_int_equal(t->ringing, 0);
    end_call(t, "call-4", "100", PROXY_OUT_ANSWERED, "sip:x");
    assert_int_equal(t->nsent, 0);
    struct wake_stats st;
    wake_stats_get(t->w, &st);
    assert_int_equal(st.suppressed_live, 1);
}

/* Rule 3/8: UDP binding; a provisional within the grace time → no push;
 * a silent branch → pushed after the grace time, not before. */
static void
test_udp_grace(void **state)
{
    struct t *t = *state;
    const char *c = pn_contact("192.0.2.7", "fcm", TOK_F, "proj", "udp");
    assert_int_equal(register_ok(t, (struct req){.contacts = c}), 200);

    t->provisional = true;
    assert_true(start_call(t, 0, "call-5", "100"));
    assert_int_equal(t->nsent, 0);
    advance(t, 600);
    assert_int_equal(t->nsent, 0);
    end_call(t, "call-5", "100", PROXY_OUT_CANCELLED, NULL);
    assert_int_equal(t->nsent, 0); /* never pushed: no missed push */

    t->provisional = false;
    assert_true(start_call(t, 1, "call-6", "100"));
    advance(t, 499);
    assert_int_equal(t->nsent, 0);
    advance(t, 1);
    assert_int_equal(t->nsent, 1);
    assert_int_equal(t->sent[0].type, PUSH_CALL);
    assert_int_equal(t->ringing, 1);
    struct wake_stats st;
    wake_stats_get(t->w, &st);
    assert_int_equal(st.suppressed_grace, 1);
    /* A call ending before its grace timer fires pushes nothing. */
    assert_true(start_call(t, 2, "call-7", "100"));
    end_call(t, "call-7", "100", PROXY_OUT_CANCELLED, NULL);
    advance(t, 1000);
    assert_int_equal(t->nsent, 1);
    end_call(t, "call-6", "100", PROXY_OUT_CANCELLED, NULL);
    assert_int_equal(t->nsent, 2);
}

/* Rule 6: answered on another device → answered_elsewhere; the woken
 * device that answered itself gets nothing; a woken VoIP device is not
 * INVITE+CANCELled later (the proxy CANCELs its branch). */
static void
test_answered(void **state)
{
    struct t *t = *state;
    device_background(t, "apns", TOK_A, TOPIC_VOIP);
    assert_true(start_call(t, 0, "call-8", "100"));
    end_call(t, "call-8", "100", PROXY_OUT_ANSWERED, "sip:100@192.0.2.50");
    assert_int_equal(t->nsent, 2);
    assert_int_equal(t->sent[1].type, PUSH_ANSWERED_ELSEWHERE);
    const char *c = pn_contact("192.0.2.9", "apns", TOK_A, TOPIC_VOIP, "udp");
    assert_int_equal(register_ok(t, (struct req){.contacts = c}), 200);
    assert_int_equal(t->late, 1);
    assert_string_equal(t->late_reason,
                        "SIP;cause=200;text=\"Call completed elsewhere\"");

    /* Woken during the call and answered on it: no more pushes. */
    assert_int_equal(
        register_ok(t, (struct req){.contacts = c, .expires = "0"}), 200);
    assert_true(start_call(t, 1, "call-9", "100"));
    assert_int_equal(t->nsent, 3);
    assert_int_equal(register_ok(t, (struct req){.contacts = c}), 200);
    char uri[256];
    snprintf(uri, sizeof(uri),
             "sip:100@192.0.2.9:5062;transport=udp;pn-provider=apns;"
             "pn-prid=%s;pn-param=%s",
             TOK_A, TOPIC_VOIP);
    end_call(t, "call-9", "100", PROXY_OUT_ANSWERED, uri);
    assert_int_equal(t->nsent, 3);
    struct wake_stats st;
    wake_stats_get(t->w, &st);
    assert_int_equal(st.woken, 1);
    /* Woken + cancelled elsewhere: no late INVITE+CANCEL either. */
    assert_int_equal(
        register_ok(t, (struct req){.contacts = c, .expires = "0"}), 200);
    assert_true(start_call(t, 2, "call-10", "100"));
    assert_int_equal(register_ok(t, (struct req){.contacts = c}), 200);
    end_call(t, "call-10", "100", PROXY_OUT_CANCELLED, NULL);
    assert_int_equal(t->nsent, 5); /* call + missed */
    assert_int_equal(register_ok(t, (struct req){.contacts = c}), 200);
    assert_int_equal(t->late, 1);
}

/* Max 2 devices: both pushed; two calls to one device: one push each;
 * one call never pushes one device twice (grace + no-binding paths). */
static void
test_two_devices_two_calls(void **state)
{
    struct t *t = *state;
    for (int i = 0; i < 2; i++) {
        char c[256], cid[16], tok[32];
        snprintf(tok, sizeof(tok), "tok-%d", i);
        snprintf(c, sizeof(c),
                 "Contact: <sip:101@192.0.2.%d:5062;pn-provider=fcm;"
                 "pn-prid=%s;pn-param=proj>\r\n",
                 10 + i, tok);
        snprintf(cid, sizeof(cid), "c101-%d", i);
        assert_int_equal(register_ok(t, (struct req){.to_user = "101",
                                                     .call_id = cid,
                                                     .contacts = c,
                                                     .expires = "0"}),
                         200);
    }
    assert_true(start_call(t, 0, "call-11", "101"));
    assert_true(start_call(t, 1, "call-12", "101"));
    assert_int_equal(t->nsent, 4);
    advance(t, 5000);
    assert_int_equal(t->nsent, 4);
    assert_int_equal(t->ringing, 2); /* one 180 per call */
    assert_string_not_equal(t->sent[0].token, t->sent[1].token);
    assert_string_equal(t->sent[2].call_id, "call-12");
}

/* Dead token removes the device; results land in the bounded ring. */
static void
test_dead_token_and_recent(void **state)
{
    struct t *t = *state;
    device_background(t, "fcm", TOK_F, "proj");
    assert_true(start_call(t, 0, "call-13", "100"));
    complete_all(t, PUSH_DEAD_TOKEN);
    struct pushdev d;
    assert_false(pushdev_match(t->pd, "100", "fcm", TOK_F, "", &d));
    /* The only wake-up failed for good: the held call is let go with 480
     * (RFC 8599 §5.6.2 step 5). */
    assert_int_equal(t->released, 1);
    assert_int_equal(t->release_status, 480);
    assert_string_equal(t->release_call_id, "call-13");
    end_call(t, "call-13", "100", PROXY_OUT_UNAVAILABLE, NULL);
    /* No missed push to a dead token. */
    assert_int_equal(t->nsent, 1);
    /* The next call finds no device: nothing held, nothing sent. */
    assert_false(start_call(t, 1, "call-14", "100"));
    assert_int_equal(t->nsent, 1);
    assert_int_equal(t->released, 1);

    struct wake_push_entry e[8];
    assert_int_equal(wake_recent(t->w, e, 8), 1);
    assert_string_equal(e[0].type, "call");
    assert_string_equal(e[0].result, "dead_token");
    assert_int_equal(e[0].http_status, 410);
    assert_string_equal(e[0].token, "fcm-toke"); /* first 8 chars */
    assert_string_equal(e[0].ext, "100");
    struct wake_stats st;
    wake_stats_get(t->w, &st);
    assert_int_equal(st.dead, 1);
    assert_int_equal(st.delivered, 0);
    assert_int_equal(st.sent_by[PUSH_FCM], 1);
    assert_int_equal(st.sent_by[PUSH_APNS], 0);
    assert_int_equal(st.dead_by[PUSH_FCM], 1);
    assert_int_equal(st.latency_count, 1); /* 1.5 ms */
    assert_int_equal(st.latency_le[0], 1);
    assert_int_equal(st.latency_le[WAKE_LATENCY_BUCKETS - 1], 1);
    /* Bounded: 4 entries at most, newest first. */
    device_background(t, "fcm", TOK_F, "proj");
    for (int i = 0; i < 3; i++) {
        char cid[16];
        snprintf(cid, sizeof(cid), "call-r%d", i);
        assert_true(start_call(t, 2, cid, "100"));
        end_call(t, cid, "100", PROXY_OUT_CANCELLED, NULL);
    }
    complete_all(t, PUSH_DELIVERED);
    assert_int_equal(wake_recent(t->w, e, 8), 4);
    assert_string_equal(e[0].call_id, "call-r2");
}

/* Holding: the call stays held while a wake-up is pending and is let go
 * once, when the last one ends: woken (status 0), or failed (480 only if
 * nobody woke). A delivered push alone does not release it. */
static void
test_release(void **state)
{
    struct t *t = *state;
    device_background(t, "apns", TOK_A, TOPIC_VOIP);
    assert_true(start_call(t, 0, "call-20", "100"));
    complete_all(t, PUSH_DELIVERED);
    advance(t, 5000);
    assert_int_equal(t->released, 0);
    const char *c = pn_contact("192.0.2.9", "apns", TOK_A, TOPIC_VOIP, "udp");
    assert_int_equal(register_ok(t, (struct req){.contacts = c}), 200);
    assert_int_equal(t->released, 1);
    assert_int_equal(t->release_status, 0);
    assert_int_equal(t->release_worker, 0);
    assert_string_equal(t->release_call_id, "call-20");
    assert_int_equal(register_ok(t, (struct req){.contacts = c}), 200);
    assert_int_equal(t->released, 1); /* once */
    end_call(t, "call-20", "100", PROXY_OUT_ANSWERED, NULL);

    /* Retries exhausted: released with 480, no rule 7 later (the VoIP
     * push never arrived), but a missed push is still tried. */
    assert_int_equal(
        register_ok(t, (struct req){.contacts = c, .expires = "0"}), 200);
    size_t before = t->nsent;
    assert_true(start_call(t, 1, "call-21", "100"));
    assert_int_equal(t->nsent, before + 1);
    complete_all(t, PUSH_RETRY_EXHAUSTED);
    assert_int_equal(t->released, 2);
    assert_int_equal(t->release_status, 480);
    assert_string_equal(t->release_call_id, "call-21");
    end_call(t, "call-21", "100", PROXY_OUT_UNAVAILABLE, NULL);
    assert_int_equal(t->nsent, before + 2);
    assert_int_equal(t->sent[before + 1].type, PUSH_MISSED);
    assert_int_equal(register_ok(t, (struct req){.contacts = c}), 200);
    assert_int_equal(t->late, 0);
}

/* UDP device that rang within the grace time: not pushed, and the hold
 * ends with the grace time (its branch decides from then on). A silent
 * one is pushed and the hold stays. */
static void
test_release_after_grace(void **state)
{
    struct t *t = *state;
    const char *c = pn_contact("192.0.2.7", "fcm", TOK_F, "proj", "udp");
    assert_int_equal(register_ok(t, (struct req){.contacts = c}), 200);
    t->provisional = true;
    assert_true(start_call(t, 0, "call-22", "100"));
    assert_int_equal(t->released, 0);
    advance(t, 500);
    assert_int_equal(t->nsent, 0);
    assert_int_equal(t->released, 1);
    assert_int_equal(t->release_status, 0);
    end_call(t, "call-22", "100", PROXY_OUT_BUSY, NULL);

    t->provisional = false;
    assert_true(start_call(t, 1, "call-23", "100"));
    advance(t, 500);
    assert_int_equal(t->nsent, 1);
    assert_int_equal(t->released, 1);
    end_call(t, "call-23", "100", PROXY_OUT_CANCELLED, NULL);
}

/* The caller's display name reaches every push of the call and the late
 * INVITE (rule 7). */
static void
test_from_name(void **state)
{
    struct t *t = *state;
    device_background(t, "apns", TOK_A, TOPIC_VOIP);
    assert_true(start_call_named(t, 0, "call-24", "100", "Alice Ä"));
    assert_int_equal(t->nsent, 1);
    assert_string_equal(t->sent[0].from_name, "Alice Ä");
    end_call(t, "call-24", "100", PROXY_OUT_ANSWERED, "sip:100@192.0.2.50");
    assert_int_equal(t->nsent, 2);
    assert_int_equal(t->sent[1].type, PUSH_ANSWERED_ELSEWHERE);
    assert_string_equal(t->sent[1].from_name, "Alice Ä");
    const char *c = pn_contact("192.0.2.9", "apns", TOK_A, TOPIC_VOIP, "udp");
    assert_int_equal(register_ok(t, (struct req){.contacts = c}), 200);
    assert_int_equal(t->late, 1);
    assert_string_equal(t->late_name, "Alice Ä");
    /* No name: an empty string, never NULL (the payload has the key). */
    assert_true(start_call(t, 1, "call-25", "100"));
    assert_string_equal(t->sent[2].from_name, "");
}

/* Register the device with a +sip.instance: contact on host, REGISTER
 * Call-ID cid (liblinphone sends a new token with a new Call-ID). */
#define INSTANCE "urn:uuid:0a1b2c3d-0000-4000-8000-00000000abcd"
#define TOK_B "b1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
#define TOK_C "c1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"

static void
register_instance(struct t *t, const char *host, const char *prid,
                  const char *cid, const char *expires)
{
    char c[512];
    snprintf(c, sizeof(c),
             "Contact: <sip:100@%s:5062;transport=udp;pn-provider=apns;"
             "pn-prid=%s;pn-param=%s>;+sip.instance=\"<%s>\"\r\n",
             host, prid, TOPIC_VOIP, INSTANCE);
    assert_int_equal(
        register_ok(
            t, (struct req){.contacts = c, .call_id = cid, .expires = expires}),
        200);
}

/* A woken app registers a new token (same instance, new Call-ID): the
 * device is replaced, and the call's ending push goes to the new token,
 * missed or answered_elsewhere; one ending push, no second call push. */
static void
test_rotated_token_endings(void **state)
{
    struct t *t = *state;
    struct pushdev d;
    register_instance(t, "192.0.2.7", TOK_A, "cid-a", NULL);
    register_instance(t, "192.0.2.7", TOK_A, "cid-a", "0");
    assert_true(start_call(t, 0, "call-30", "100"));
    assert_int_equal(t->nsent, 1);
    assert_string_equal(t->sent[0].token, TOK_A);
    register_instance(t, "192.0.2.9", TOK_B, "cid-b", NULL);
    assert_false(pushdev_match(t->pd, "100", "apns", TOK_A, NULL, &d));
    assert_true(pushdev_match(t->pd, "100", NULL, NULL, INSTANCE, &d));
    assert_string_equal(d.prid, TOK_B);
    assert_int_equal(t->nsent, 1); /* no call push to the "new" device */
    end_call(t, "call-30", "100", PROXY_OUT_CANCELLED, NULL);
    assert_int_equal(t->nsent, 2);
    assert_int_equal(t->sent[1].type, PUSH_MISSED);
    assert_string_equal(t->sent[1].call_id, "call-30");
    assert_string_equal(t->sent[1].token, TOK_B);

    /* Answered on a desk after the app rotated again: to the newest. */
    register_instance(t, "192.0.2.9", TOK_B, "cid-b", "0");
    assert_true(start_call(t, 1, "call-31", "100"));
    assert_int_equal(t->nsent, 3);
    assert_string_equal(t->sent[2].token, TOK_B);
    register_instance(t, "192.0.2.11", TOK_C, "cid-c", NULL);
    end_call(t, "call-31", "100", PROXY_OUT_ANSWERED, "sip:100@192.0.2.50");
    assert_int_equal(t->nsent, 4);
    assert_int_equal(t->sent[3].type, PUSH_ANSWERED_ELSEWHERE);
    assert_string_equal(t->sent[3].token, TOK_C);
    /* Woken (by instance) during the call: no rule 7 afterwards. */
    register_instance(t, "192.0.2.11", TOK_C, "cid-c", NULL);
    assert_int_equal(t->late, 0);
    struct wake_stats st;
    wake_stats_get(t->w, &st);
    assert_int_equal(st.woken, 2);
}

/* A device removed while the call rings (signed out) gets no ending push;
 * one removed during its grace time is not pushed, and the hold ends
 * with 480 (it cannot wake). */
static void
test_gone_device_no_push(void **state)
{
    struct t *t = *state;
    device_background(t, "apns", TOK_A, TOPIC_VOIP);
    assert_true(start_call(t, 0, "call-32", "100"));
    assert_int_equal(t->nsent, 1);
    assert_int_equal(pushdev_remove_ext(t->pd, "100"), 1);
    end_call(t, "call-32", "100", PROXY_OUT_CANCELLED, NULL);
    assert_int_equal(t->nsent, 1);

    const char *c = pn_contact("192.0.2.7", "fcm", TOK_F, "proj", "udp");
    assert_int_equal(register_ok(t, (struct req){.contacts = c}), 200);
    assert_true(start_call(t, 1, "call-33", "100"));
    assert_int_equal(pushdev_remove_ext(t->pd, "100"), 1);
    advance(t, 500);
    assert_int_equal(t->nsent, 1);
    assert_int_equal(t->released, 1);
    assert_int_equal(t->release_status, 480);
    assert_string_equal(t->release_call_id, "call-33");
    end_call(t, "call-33", "100", PROXY_OUT_CANCELLED, NULL);
    assert_int_equal(t->nsent, 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_binding_pn_parsed, wsetup,
                                        wteardown),
        cmocka_unit_test_setup_teardown(test_push_cancel_voip, wsetup,
                                        wteardown),
        cmocka_unit_test_setup_teardown(test_push_cancel_fcm_and_expiry, wsetup,
                                        wteardown),
        cmocka_unit_test_setup_teardown(test_live_tcp, wsetup, wteardown),
        cmocka_unit_test_setup_teardown(test_udp_grace, wsetup, wteardown),
        cmocka_unit_test_setup_teardown(test_answered, wsetup, wteardown),
        cmocka_unit_test_setup_teardown(test_two_devices_two_calls, wsetup,
                                        wteardown),
        cmocka_unit_test_setup_teardown(test_dead_token_and_recent, wsetup,
                                        wteardown),
        cmocka_unit_test_setup_teardown(test_release, wsetup, wteardown),
        cmocka_unit_test_setup_teardown(test_release_after_grace, wsetup,
                                        wteardown),
        cmocka_unit_test_setup_teardown(test_from_name, wsetup, wteardown),
        cmocka_unit_test_setup_teardown(test_rotated_token_endings, wsetup,
                                        wteardown),
        cmocka_unit_test_setup_teardown(test_gone_device_no_push, wsetup,
                                        wteardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
