/*
 * tests/unit/proxy/proxy_test: the proxy's pure parts through proxy.h:
 * §16.7 best-response choice, upstream status mapping, outcomes, the call
 * record ring (bounded, newest first, observers called) and the [proxy]
 * option table defaults. Calls on the wire are covered by
 * tests/integration/test_calls.py.
 */
#include <setjmp.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config/cfg.h"
#include "proxy/proxy.h"
#include "proxy/proxy_cfg.h"
#include "proxy/proxy_int.h"

static void
test_best_response(void **state)
{
    (void)state;
    assert_true(proxy_status_better(486, 0));
    assert_true(proxy_status_better(404, 503)); /* lower class wins */
    assert_false(proxy_status_better(503, 404));
    assert_false(proxy_status_better(480, 486)); /* first of class stays */
    assert_true(proxy_status_better(603, 404));  /* 6xx beats all */
    assert_false(proxy_status_better(404, 600));
    assert_false(proxy_status_better(603, 600));
    assert_true(proxy_status_better(302, 486));
}

static void
test_upstream_status(void **state)
{
    (void)state;
    assert_int_equal(proxy_status_upstream(0), 408);
    assert_int_equal(proxy_status_upstream(503), 500);
    assert_int_equal(proxy_status_upstream(486), 486);
    assert_int_equal(proxy_outcome_for(200), PROXY_OUT_ANSWERED);
    assert_int_equal(proxy_outcome_for(486), PROXY_OUT_BUSY);
    assert_int_equal(proxy_outcome_for(600), PROXY_OUT_BUSY);
    assert_int_equal(proxy_outcome_for(603), PROXY_OUT_DECLINED);
    assert_int_equal(proxy_outcome_for(487), PROXY_OUT_CANCELLED);
    assert_int_equal(proxy_outcome_for(404), PROXY_OUT_FAILED);
    assert_string_equal(proxy_outcome_name(PROXY_OUT_NO_ANSWER), "no-answer");
}

static unsigned ended_calls;
static int last_status;

static void
on_ended(const struct proxy_call_record *rec, void *arg)
{
    (void)arg;
    ended_calls++;
    last_status = rec->status;
}

static void
test_record_ring(void **state)
{
    struct proxy_cfg cfg;
    struct proxy_shared *sh;
    struct proxy_call_record r = {0}, out[8];
    struct proxy_observer ops = {.call_ended = on_ended};
    (void)state;

    proxy_cfg_defaults(&cfg);
    cfg.call_records = 3;
    assert_int_equal(proxy_shared_new(&cfg, NULL, "", &sh), -22);
    assert_int_equal(proxy_shared_new(&cfg, NULL, "test.local", &sh), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(proxy_observer_add(sh, &ops, NULL), 0);
    assert_int_equal(proxy_observer_add(sh, &ops, NULL), -ENOSPC);
    assert_int_equal(proxy_records(sh, out, 8), 0);
    for (int i = 0; i < 5; i++) {
        r.status = 480 + i;
        r.outcome = PROXY_OUT_NO_ANSWER;
        proxy_record_add(sh, &r);
    }
    assert_int_equal(ended_calls, 5 * 4);
    assert_int_equal(last_status, 484);
    /* bounded at 3, newest first, ids increasing */
    assert_int_equal(proxy_records(sh, out, 8), 3);
    assert_int_equal(out[0].status, 484);
    assert_int_equal(out[2].status, 482);
    assert_true(out[0].id > out[1].id && out[1].id > out[2].id);
    assert_int_equal(proxy_records(sh, out, 1), 1);
    assert_int_equal(out[0].status, 484);
    /* no worker registered: a notification goes nowhere, harmlessly */
    proxy_binding_added(sh, slice_cstr("200"));
    proxy_shared_free(sh);
}

static void
on_recv_none(struct tp *tp, const struct tp_rx *rx, void *arg)
{
    (void)tp;
    (void)rx;
    (void)arg;
}

/* proxy_binding_added queues a note (and wakes the worker) only while a
 * call is waiting for bindings somewhere (sh->waiting); the usual
 * REGISTER with nothing ringing costs one atomic load. */
static void
test_binding_note_only_when_waiting(void **state)
{
    struct proxy_cfg cfg;
    struct proxy_shared *sh;
    struct proxy *p;
    struct tp *tp;
    struct tp_cfg tc;
    uv_loop_t loop;
    (void)state;

    assert_int_equal(uv_loop_init(&loop), 0);
    tp_cfg_defaults(&tc);
    tc.on_recv = on_recv_none;
    assert_int_equal(tp_new(&loop, &tc, &tp), 0);
    proxy_cfg_defaults(&cfg);
    assert_int_equal(proxy_shared_new(&cfg, NULL, "test.local", &sh), 0);
    assert_int_equal(proxy_new(sh, tp, NULL, &p), 0);
    proxy_binding_added(sh, slice_cstr("200"));
    assert_int_equal(p->note_count, 0);
    proxy_waiting_add(sh, slice_cstr("200"), 0);
    proxy_binding_added(sh, slice_cstr("200"));
    assert_int_equal(p->note_count, 1);
    proxy_waiting_done(sh, slice_cstr("200"), 0);
    proxy_binding_added(sh, slice_cstr("201"));
    assert_int_equal(p->note_count, 1);
    proxy_free(p); /* frees the queued note */
    tp_free(tp);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    proxy_shared_free(sh);
}

/* A woken phone's REGISTER is noted only to the worker(s) where a call
 * for its extension waits, not to every worker (each of which used to
 * look the bindings up again); two calls for one extension on two
 * workers reach both, and a call ending on one worker leaves the other. */
static void
test_binding_note_only_to_call_worker(void **state)
{
    struct proxy_cfg cfg;
    struct proxy_shared *sh;
    struct proxy *p[3];
    struct tp *tp[3];
    struct tp_cfg tc;
    uv_loop_t loop;
    (void)state;

    assert_int_equal(uv_loop_init(&loop), 0);
    proxy_cfg_defaults(&cfg);
    assert_int_equal(proxy_shared_new(&cfg, NULL, "test.local", &sh), 0);
    for (unsigned i = 0; i < 3; i++) {
        tp_cfg_defaults(&tc);
        tc.on_recv = on_recv_none;
        tc.worker = i;
        assert_int_equal(tp_new(&loop, &tc, &tp[i]), 0);
        assert_int_equal(proxy_new(sh, tp[i], NULL, &p[i]), 0);
    }
    proxy_waiting_add(sh, slice_cstr("200"), 1);
    proxy_waiting_add(sh, slice_cstr("201"), 0); /* another callee */
    proxy_binding_added(sh, slice_cstr("200"));
    assert_int_equal(p[0]->note_count, 0);
    assert_int_equal(p[1]->note_count, 1);
    assert_int_equal(p[2]->note_count, 0);
    proxy_waiting_add(sh, slice_cstr("200"), 2);
    proxy_waiting_add(sh, slice_cstr("200"), 2); /* two calls there */
    proxy_binding_added(sh, slice_cstr("200"));
    assert_int_equal(p[0]->note_count, 0);
    assert_int_equal(p[1]->note_count, 2);
    assert_int_equal(p[2]->note_count, 1); /* one note per worker */
    proxy_waiting_done(sh, slice_cstr("200"), 1);
    proxy_waiting_done(sh, slice_cstr("200"), 2);
    proxy_binding_added(sh, slice_cstr("200"));
    assert_int_equal(p[1]->note_count, 2);
    assert_int_equal(p[2]->note_count, 2); /* the second call still waits */
    proxy_waiting_done(sh, slice_cstr("200"), 2);
    proxy_waiting_done(sh, slice_cstr("201"), 0);
    proxy_binding_added(sh, slice_cstr("200"));
    assert_int_equal(p[2]->note_count, 2);
    for (unsigned i = 0; i < 3; i++) {
        proxy_free(p[i]);
        tp_free(tp[i]);
    }
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    proxy_shared_free(sh);
}

static void
test_cfg_defaults_match_table(void **state)
{
    const struct cfg_section *secs[] = {&proxy_cfg_section};
    struct proxy_cfg def;
    struct cfg *c = NULL;
    char err[256];
    (void)state;

    assert_int_equal(cfg_load(secs, 1, NULL, NULL, 0, &c, err, sizeof(err)), 0);
    const struct proxy_cfg *got = cfg_get(c, &proxy_cfg_section);
    proxy_cfg_defaults(&def);
    assert_int_equal(got->ring_timeout_s, def.ring_timeout_s);
    assert_int_equal(got->call_records, def.call_records);
    assert_int_equal(got->max_branches, def.max_branches);
    assert_int_equal(got->timer_c_s, def.timer_c_s);
    assert_true(def.timer_c_s > 180); /* RFC 3261 §16.6 step 11 */
    cfg_free(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_best_response),
        cmocka_unit_test(test_upstream_status),
        cmocka_unit_test(test_record_ring),
        cmocka_unit_test(test_binding_note_only_when_waiting),
        cmocka_unit_test(test_binding_note_only_to_call_worker),
        cmocka_unit_test(test_cfg_defaults_match_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
