/*
 * remote_test: the registrar's remote bindings ([cluster], reg.h
 * reg_remote_set and friends): bindings another node holds, applied from
 * store rows, looked up like local ones with their node and the node's
 * address, never written back; a new one fires the bind callback like a
 * local REGISTER, a known one does not; a node's bindings dropped when it
 * dies; a local binding newer than a row wins, an older one is replaced
 * (the phone moved to the other node); a remote binding is not expired
 * by its expiry as read (its node's refreshes are silent), and a local
 * one's expiry deletes its row in a cluster.
 */
#include <errno.h>

#include "reg_harness.h"

static int
setup(void **state)
{
    struct t *t = rh_setup(false);
    assert_int_equal(reg_ext_set(t->r, "100", "Alice", "secret100", true, 1),
                     0);
    *state = t;
    return 0;
}

struct seen {
    int calls;
    size_t count;
    char uri[128], node[64];
};

static void
on_bind(const char *ext, const struct reg_contact *c, size_t n, void *arg)
{
    struct seen *s = arg;
    (void)ext;
    s->calls++;
    s->count = n;
    snprintf(s->uri, sizeof(s->uri), "%s", c[0].uri);
    snprintf(s->node, sizeof(s->node), "%s", c[0].node);
}

static struct store_binding
row(const struct t *t, const char *key, const char *uri, const char *node,
    int64_t updated_at)
{
    return (struct store_binding){
        .ext = "100",
        .key = key,
        .uri = uri,
        .params = "",
        .instance = "",
        .call_id = "cid",
        .cseq = 1,
        .expires_at = t->now_ms / 1000 + 300,
        .updated_at = updated_at,
        .path = "",
        .source = "10.0.0.6:5070",
        .transport = REG_TP_UDP,
        .user_agent = "ua",
        .node = node,
    };
}

static size_t
lookup(struct t *t, struct reg_contact **bs)
{
    size_t n = 0;
    arena_reset(&t->a);
    assert_int_equal(reg_lookup(t->r, SLICE_LIT("100"), &t->a, bs, &n), 0);
    return n;
}

static void
test_remote_added_once(void **state)
{
    struct t *t = *state;
    struct seen s = {0};
    struct reg_contact *bs;
    int64_t now = t->now_ms / 1000;
    reg_set_bind_cb(t->r, on_bind, &s);

    struct store_binding rows[] = {
        row(t, "k1", "sip:100@192.0.2.9:5080", "B", now),
        row(t, "k2", "sip:100@192.0.2.9:5081", "", now), /* no node: skip */
    };
    assert_int_equal(reg_remote_set(t->r, "100", rows, 2), 1);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.count, 1);
    assert_string_equal(s.uri, "sip:100@192.0.2.9:5080");
    assert_string_equal(s.node, "B");
    assert_int_equal(lookup(t, &bs), 1);
    assert_string_equal(bs[0].node, "B");
    assert_int_equal(bs[0].transport, REG_TP_UDP);
    const struct sockaddr_in *in = (const struct sockaddr_in *)&bs[0].addr;
    assert_int_equal(ntohs(in->sin_port), 5070); /* the node's address */

    /* The same rows again: nothing new, no callback. */
    assert_int_equal(reg_remote_set(t->r, "100", rows, 2), 0);
    assert_int_equal(s.calls, 1);
    /* A new Contact for the same key: new. */
    rows[0].uri = "sip:100@192.0.2.9:5090";
    assert_int_equal(reg_remote_set(t->r, "100", rows, 1), 1);
    assert_int_equal(s.calls, 2);
    assert_int_equal(lookup(t, &bs), 1);
    assert_int_equal(reg_count_node(t->r, "B"), 1);
    assert_int_equal(reg_count_node(t->r, ""), 0);
    /* No rows: the remote binding goes. */
    assert_int_equal(reg_remote_set(t->r, "100", NULL, 0), 0);
    assert_int_equal(lookup(t, &bs), 0);
    assert_int_equal(reg_remote_set(t->r, "999", NULL, 0), -ENOENT);
}

static void
test_local_kept_and_drop_node(void **state)
{
    struct t *t = *state;
    struct reg_contact *bs;
    int64_t now = t->now_ms / 1000;

    assert_int_equal(
        register_ok(t, (struct req){
                           .contacts = "Contact: <sip:100@192.0.2.7:5062>\r\n"}),
        200);
    struct store_binding rows[] = {
        row(t, "k1", "sip:100@192.0.2.9:5080", "B", now),
        row(t, "k3", "sip:100@192.0.2.9:5082", "C", now),
    };
    assert_int_equal(reg_remote_set(t->r, "100", rows, 2), 2);
    assert_int_equal(lookup(t, &bs), 3);
    assert_int_equal(reg_count_node(t->r, ""), 1);
    assert_int_equal(reg_remote_drop_node(t->r, "B"), 1);
    assert_int_equal(lookup(t, &bs), 2);
    assert_int_equal(reg_count_node(t->r, "C"), 1);
    assert_int_equal(reg_remote_drop_node(t->r, ""), 0); /* never ours */
    /* Remote bindings are not persisted: a restart has the local only. */
    assert_int_equal(store_sync(t->st), 0);
    reg_free(t->r);
    start_reg(t);
    assert_int_equal(reg_load(t->r), 0);
    assert_int_equal(lookup(t, &bs), 1);
    assert_string_equal(bs[0].node, "");
}

static void
test_phone_moved(void **state)
{
    struct t *t = *state;
    struct reg_contact *bs;
    const char *uri = "sip:100@192.0.2.7:5062";

    assert_int_equal(
        register_ok(t, (struct req){
                           .contacts = "Contact: <sip:100@192.0.2.7:5062>\r\n"}),
        200);
    int64_t now = t->now_ms / 1000;
    /* The local binding's key is its URI. A row of B as old as it: ours
     * wins (its write is on the way). */
    struct store_binding r1 = row(t, uri, uri, "B", now);
    assert_int_equal(reg_remote_set(t->r, "100", &r1, 1), 0);
    assert_int_equal(lookup(t, &bs), 1);
    assert_string_equal(bs[0].node, "");
    /* Newer at B: the phone moved there. */
    r1.updated_at = now + 5;
    assert_int_equal(reg_remote_set(t->r, "100", &r1, 1), 1);
    assert_int_equal(lookup(t, &bs), 1);
    assert_string_equal(bs[0].node, "B");
}

/* Refreshes at the holding node are silent (schema version 6): a remote
 * binding past the expiry its row had when read stays routable, listed
 * and counted, and reg_expire keeps it; it goes when its node stops
 * beating (or deletes the row: reg_remote_set without it). */
static void
test_remote_outlives_its_expiry(void **state)
{
    struct t *t = *state;
    struct reg_contact *bs;
    int64_t now = t->now_ms / 1000;

    assert_int_equal(
        register_ok(t, (struct req){
                           .contacts = "Contact: <sip:100@192.0.2.7:5062>\r\n",
                           .expires = "60"}),
        200);
    struct store_binding r1 = row(t, "k1", "sip:100@192.0.2.9:5080", "B", now);
    assert_int_equal(reg_remote_set(t->r, "100", &r1, 1), 1);
    t->now_ms += 400 * 1000; /* both past their expiry */
    assert_int_equal(lookup(t, &bs), 1);
    assert_string_equal(bs[0].node, "B");
    /* Shown moved on by its period (300 s): now + 200. */
    assert_int_equal(bs[0].expires_at, now + 600);
    assert_int_equal(reg_count_node(t->r, "B"), 1);
    assert_int_equal(reg_expire(t->r), 1); /* the local one only */
    assert_int_equal(lookup(t, &bs), 1);
    assert_int_equal(reg_remote_drop_node(t->r, "B"), 1);
    assert_int_equal(lookup(t, &bs), 0);
}

static size_t
binding_rows(struct t *t)
{
    size_t n = 0;
    assert_int_equal(store_sync(t->st), 0);
    assert_int_equal(store_count(t->st, "bindings", &n), 0);
    return n;
}

/* The holding node's expiry deletes the row in a cluster (the delete
 * notifies the other nodes, which keep their copy until then); one node
 * keeps it until the next start, as before. */
static void
test_expiry_deletes_the_row_in_a_cluster(void **state)
{
    struct t *t = *state;
    struct req q = {.contacts = "Contact: <sip:100@192.0.2.7:5062>\r\n",
                    .expires = "60"};

    assert_int_equal(register_ok(t, q), 200);
    assert_int_equal(binding_rows(t), 1);
    t->now_ms += 61 * 1000;
    assert_int_equal(reg_expire(t->r), 1);
    assert_int_equal(binding_rows(t), 1); /* one node: memory only */

    reg_free(t->r);
    struct reg_opts o = {.cfg = &t->cfg,
                         .domain = DOMAIN,
                         .realm = REALM,
                         .store = t->st,
                         .node = "A",
                         .clock_ms = fake_clock,
                         .clock_arg = t};
    assert_int_equal(reg_new(&o, &t->r), 0);
    assert_int_equal(reg_ext_set(t->r, "100", "Alice", "secret100", true, 1),
                     0);
    q.call_id = "cid-2";
    assert_int_equal(register_ok(t, q), 200);
    assert_int_equal(binding_rows(t), 1);
    t->now_ms += 61 * 1000;
    assert_int_equal(reg_expire(t->r), 1);
    assert_int_equal(binding_rows(t), 0);
}

static void
test_ext_apply_forget(void **state)
{
    struct t *t = *state;
    struct reg_ext_info info;
    struct store_ext e = {.number = "300",
                          .display = "Carol",
                          .realm = REALM,
                          .ha1_md5 = "0123456789abcdef0123456789abcdef",
                          .ha1_sha256 = "0123456789abcdef0123456789abcdef"
                                        "0123456789abcdef0123456789abcdef",
                          .enabled = true,
                          .max_push_devices = 2};
    assert_int_equal(reg_ext_apply(t->r, &e), 0);
    assert_int_equal(reg_ext_get(t->r, "300", &info), 0);
    assert_string_equal(info.display, "Carol");
    assert_int_equal(info.max_push_devices, 2);
    assert_int_equal(reg_ext_forget(t->r, "300"), 0);
    assert_int_equal(reg_ext_get(t->r, "300", &info), -ENOENT);
    assert_int_equal(reg_ext_forget(t->r, "300"), -ENOENT);
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_remote_added_once),
        T(test_local_kept_and_drop_node),
        T(test_phone_moved),
        T(test_remote_outlives_its_expiry),
        T(test_expiry_deletes_the_row_in_a_cluster),
        T(test_ext_apply_forget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
