/*
 * reg_test: the registrar's rules, driven through reg.h with REGISTER text
 * parsed by sip_msg_parse, answered by reg_handle and the answer parsed
 * again. A fake clock moves time for expiry, stale nonces and the
 * throttle's cool-down. Persistence is checked by restarting the registrar
 * on the same SQLite store and fetching the bindings.
 */
#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "config/cfg.h"
#include "registrar/reg_cfg.h"

#include "reg_harness.h"

static int
setup(void **state)
{
    struct t *t = rh_setup(false);
    assert_int_equal(reg_ext_set(t->r, "100", "Alice", "secret100", true, 1),
                     0);
    assert_int_equal(reg_ext_set(t->r, "101", "Bob", "secret101", true, 1), 0);
    *state = t;
    return 0;
}

#define C1 "Contact: <sip:100@192.0.2.7:5062>\r\n"

static void
test_challenge(void **state)
{
    struct t *t = *state;
    send_reg(t, &(struct req){.contacts = C1});
    assert_int_equal(t->status, 401);
    assert_int_equal(sip_msg_hdr_count(&t->m, SIP_HDR_WWW_AUTHENTICATE), 2);
    const char *sha = strstr(t->rsp.data, "algorithm=SHA-256");
    const char *md5 = strstr(t->rsp.data, "algorithm=MD5");
    assert_non_null(sha);
    assert_non_null(md5);
    assert_true(sha < md5); /* RFC 8760: most preferred first */
    assert_true(rsp_has(t, "qop=\"auth\""));
    assert_true(rsp_has(t, "realm=\"" REALM "\""));
    assert_false(rsp_has(t, "stale=true"));
    assert_int_equal(t->m.to.tag.len > 0, 1);
}

static int
row_source(const struct store_binding *b, void *arg)
{
    snprintf(arg, 64, "%s", b->source);
    return 0;
}

/* The challenge's exact text (both lines, and the stale one), and the
 * nonce: 16 hex digits of the time, 16 of a counter, 32 of the MAC, all
 * lowercase; the same nonce with its MAC in capitals, or one MAC digit
 * changed, is not ours (stale challenge for the right password). The
 * binding's store row names its source as "a.b.c.d:port". */

static void
test_challenge_text_and_nonce(void **state)
{
    struct t *t = *state;
    char line[512], nonce[128];

    send_reg(t, &(struct req){.contacts = C1});
    assert_int_equal(t->status, 401);
    assert_int_equal(strlen(t->nonce), 64);
    for (size_t i = 0; i < 64; i++)
        assert_non_null(strchr("0123456789abcdef", t->nonce[i]));
    snprintf(line, sizeof(line), "%016llx",
             (unsigned long long)(t->now_ms / 1000));
    assert_memory_equal(t->nonce, line, 16);
    for (int k = 0; k < 2; k++) {
        snprintf(line, sizeof(line),
                 "\r\nWWW-Authenticate: Digest realm=\"" REALM "\", "
                 "nonce=\"%s\", algorithm=%s, qop=\"auth\"\r\n",
                 t->nonce, k ? "MD5" : "SHA-256");
        assert_true(rsp_has(t, line));
    }

    snprintf(nonce, sizeof(nonce), "%s", t->nonce);
    bool letter = false;
    for (size_t i = 32; i < 64; i++)
        if (nonce[i] >= 'a') {
            nonce[i] = (char)(nonce[i] - 'a' + 'A');
            letter = true;
        }
    if (letter) { /* all 32 MAC digits 0-9: chance 2^-21 */
        send_reg(t, &(struct req){.contacts = C1, .auth = true,
                                  .nonce = nonce});
        assert_int_equal(t->status, 401);
        snprintf(line, sizeof(line),
                 "\r\nWWW-Authenticate: Digest realm=\"" REALM "\", "
                 "nonce=\"%s\", algorithm=MD5, qop=\"auth\", "
                 "stale=true\r\n",
                 t->nonce);
        assert_true(rsp_has(t, line));
    }
    snprintf(nonce, sizeof(nonce), "%s", t->nonce);
    nonce[63] = nonce[63] == '0' ? '1' : '0';
    send_reg(t, &(struct req){.contacts = C1, .auth = true, .nonce = nonce});
    assert_int_equal(t->status, 401);
    assert_true(rsp_has(t, "stale=true"));
    send_reg(t, &(struct req){.contacts = C1, .auth = true});
    assert_int_equal(t->status, 200);

    char src[64] = "";
    assert_int_equal(store_sync(t->st), 0);
    assert_int_equal(store_binding_load(t->st, 0, row_source, src), 0);
    assert_string_equal(src, "192.0.2.7:5062");
}

/* The 200's Contact and Date lines, exactly; the Date follows the clock
 * (a new second, a new line). A refresh with the same Contact text, and
 * one spelled differently but equal by RFC 3261 §19.1.4, update the one
 * binding. */
static void
date_line(struct t *t, char *out, size_t cap)
{
    time_t now = (time_t)(t->now_ms / 1000);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, cap, "\r\nDate: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
}

static void
test_ok_lines_text(void **state)
{
    struct t *t = *state;
    char date[80];

    assert_int_equal(register_ok(t, (struct req){.contacts = C1}), 200);
    assert_true(rsp_has(
        t, "\r\nContact: <sip:100@192.0.2.7:5062>;expires=3600\r\n"));
    date_line(t, date, sizeof(date));
    assert_true(rsp_has(t, date));
    t->now_ms += 1000;
    send_reg(t, &(struct req){.contacts = C1, .auth = true});
    assert_int_equal(t->status, 200);
    date_line(t, date, sizeof(date));
    assert_true(rsp_has(t, date));
    assert_int_equal(contact_count(t), 1);
    send_reg(t, &(struct req){.contacts = "Contact: <sip:100@192.0.2.7:5062;"
                                          "transport=udp>\r\n",
                              .auth = true});
    assert_int_equal(t->status, 200);
    assert_int_equal(contact_count(t), 2);
    send_reg(t, &(struct req){.contacts = "Contact: <SIP:100@192.0.2.7:5062;"
                                          "Transport=UDP>;expires=60\r\n",
                              .auth = true});
    assert_int_equal(t->status, 200);
    assert_int_equal(contact_count(t), 2);
    assert_true(rsp_has(t, ";expires=60\r\n"));
}

static void
test_algorithm_choice(void **state)
{
    struct t *t = *state;
    t->cfg.algorithms = REG_ALGS_MD5;
    reg_free(t->r);
    start_reg(t);
    assert_int_equal(store_sync(t->st), 0);
    assert_int_equal(reg_load(t->r), 0); /* extensions from the store */
    send_reg(t, &(struct req){.contacts = C1});
    assert_int_equal(t->status, 401);
    assert_int_equal(sip_msg_hdr_count(&t->m, SIP_HDR_WWW_AUTHENTICATE), 1);
    assert_true(rsp_has(t, "algorithm=MD5"));
    /* SHA-256 was not offered: its credentials get a new challenge. */
    send_reg(t, &(struct req){.contacts = C1, .auth = true, .alg = "SHA-256"});
    assert_int_equal(t->status, 401);
    send_reg(t, &(struct req){.contacts = C1, .auth = true, .alg = "MD5"});
    assert_int_equal(t->status, 200);
}

static void
test_register_sha256_and_md5(void **state)
{
    struct t *t = *state;
    assert_int_equal(register_ok(t, (struct req){.contacts = C1}), 200);
    assert_int_equal(contact_count(t), 1);
    assert_true(rsp_has(t, "Contact: <sip:100@192.0.2.7:5062>;expires=3600"));
    assert_non_null(sip_msg_hdr(&t->m, SIP_HDR_DATE));
    assert_true(rsp_has(t, " GMT\r\n"));

    struct req q = {.to_user = "101",
                    .contacts = "Contact: <sip:101@192.0.2.7:5062>\r\n",
                    .alg = "MD5",
                    .call_id = "cid-b"};
    assert_int_equal(register_ok(t, q), 200);

    struct arena a;
    arena_init(&a, 65536);
    struct reg_contact *c;
    size_t n;
    assert_int_equal(reg_lookup(t->r, SLICE_LIT("100"), &a, &c, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(c[0].uri, "sip:100@192.0.2.7:5062");
    assert_int_equal(c[0].transport, REG_TP_UDP);
    const struct sockaddr_in *in = (const struct sockaddr_in *)&c[0].addr;
    assert_int_equal(in->sin_family, AF_INET);
    assert_int_equal(ntohs(in->sin_port), 5062);
    assert_int_equal(c[0].expires_at, t->now_ms / 1000 + 3600);
    assert_int_equal(reg_lookup(t->r, SLICE_LIT("999"), &a, &c, &n), -ENOENT);
    arena_fini(&a);
}

static void
test_wrong_password_then_throttled(void **state)
{
    struct t *t = *state;
    t->cfg.auth_fail_threshold = 3;
    reg_free(t->r);
    start_reg(t);
    reg_ext_set(t->r, "100", "Alice", "secret100", true, 1);

    send_reg(t, &(struct req){.contacts = C1});
    assert_int_equal(t->status, 401);
    for (int i = 0; i < 2; i++) {
        send_reg(t, &(struct req){
                        .contacts = C1, .auth = true, .password = "guess"});
        assert_int_equal(t->status, 401); /* re-challenged, not stale */
        assert_false(rsp_has(t, "stale=true"));
    }
    send_reg(t,
             &(struct req){.contacts = C1, .auth = true, .password = "guess"});
    assert_int_equal(t->status, 403);
    /* Blocked: even the right password gets 403 now, without challenge */
    send_reg(t, &(struct req){.contacts = C1, .auth = true});
    assert_int_equal(t->status, 403);
    struct reg_stats s;
    reg_get_stats(t->r, &s);
    assert_int_equal(s.auth_failures, 3);
    assert_int_equal(s.blocks, 1);
    assert_true(s.throttled >= 1);
    /* Another source is not affected. */
    struct reg_src keep = t->src;
    ((struct sockaddr_in *)&t->src.addr)->sin_addr.s_addr = htonl(0xc0000208);
    assert_int_equal(register_ok(t, (struct req){.contacts = C1}), 200);
    t->src = keep;
    /* After the cool-down the source may register again. */
    t->now_ms += (int64_t)(t->cfg.auth_block_s + 1) * 1000;
    assert_int_equal(
        register_ok(t, (struct req){.contacts = C1, .call_id = "cid-2"}), 200);
}

static void
test_unknown_extension_policies(void **state)
{
    struct t *t = *state;
    /* Default: indistinguishable from a wrong password. */
    send_reg(t, &(struct req){.to_user = "555", .contacts = C1});
    assert_int_equal(t->status, 401);
    send_reg(t, &(struct req){.to_user = "555", .contacts = C1, .auth = true});
    assert_int_equal(t->status, 401);
    send_reg(t, &(struct req){.to_user = "100",
                              .contacts = C1,
                              .auth = true,
                              .password = "nope"});
    assert_int_equal(t->status, 401);

    t->cfg.unknown_ext = REG_UNKNOWN_404;
    reg_free(t->r);
    start_reg(t);
    send_reg(t, &(struct req){.to_user = "555", .contacts = C1});
    assert_int_equal(t->status, 401);
    send_reg(t, &(struct req){.to_user = "555", .contacts = C1, .auth = true});
    assert_int_equal(t->status, 404);
}

static void
test_identity_checks(void **state)
{
    struct t *t = *state;
    send_reg(t, &(struct req){.contacts = C1});
    /* Credentials of 101 for AOR 100 → 403. */
    send_reg(t, &(struct req){.contacts = C1, .auth = true, .user = "101"});
    assert_int_equal(t->status, 403);
    /* From names someone else → 403 even with valid credentials. */
    send_reg(t, &(struct req){.contacts = C1});
    send_reg(t,
             &(struct req){.contacts = C1, .auth = true, .from_user = "101"});
    assert_int_equal(t->status, 403);
    /* Foreign domain → 404; tel: AOR → 400 */
    send_reg(t, &(struct req){.contacts = C1, .to_host = "evil.example"});
    assert_int_equal(t->status, 404);
    /* A numeric IP host is accepted as ours. */
    send_reg(t, &(struct req){.contacts = C1, .to_host = "192.0.2.1"});
    assert_int_equal(t->status, 401);
}

static void
test_stale_and_replay(void **state)
{
    struct t *t = *state;
    assert_int_equal(register_ok(t, (struct req){.contacts = C1}), 200);
    /* Same nonce, same nc: replay → stale challenge. */
    send_reg(t, &(struct req){.contacts = C1, .auth = true, .nc = 1});
    assert_int_equal(t->status, 401);
    assert_true(rsp_has(t, "stale=true"));
    /* Fresh nonce from that challenge, nc 1 and 2 → fine. */
    send_reg(t, &(struct req){.contacts = C1, .auth = true});
    assert_int_equal(t->status, 200);
    send_reg(t, &(struct req){.contacts = C1, .auth = true});
    assert_int_equal(t->status, 200);
    /* Time passes beyond nonce_ttl → stale. */
    t->now_ms += (int64_t)(t->cfg.nonce_ttl_s + 1) * 1000;
    send_reg(t, &(struct req){.contacts = C1, .auth = true});
    assert_int_equal(t->status, 401);
    assert_true(rsp_has(t, "stale=true"));
    /* A nonce that is not ours (bad MAC) with a right password → stale */
    send_reg(t, &(struct req){.contacts = C1,
                              .auth = true,
                              .nonce = "00000000000000000000000000000000"
                                       "0123456789abcdef0123456789abcdef"});
    assert_int_equal(t->status, 401);
    assert_true(rsp_has(t, "stale=true"));
}

/* More nonces in use than the table holds, all within one second: fresh
 * nonces still work; an evicted one is never accepted again. */
static void
test_nonce_table_burst(void **state)
{
    struct t *t = *state;
    t->cfg.nonce_table_size = 4;
    reg_free(t->r);
    start_reg(t);
    assert_int_equal(store_sync(t->st), 0);
    assert_int_equal(reg_load(t->r), 0);
    char first[128] = "";
    for (int i = 0; i < 8; i++) {
        assert_int_equal(register_ok(t, (struct req){.contacts = C1}), 200);
        if (i == 0)
            snprintf(first, sizeof(first), "%s", t->nonce);
    }
    /* first was evicted long ago: nc=2 on it must not pass. */
    send_reg(t, &(struct req){
                    .contacts = C1, .auth = true, .nonce = first, .nc = 2});
    assert_int_equal(t->status, 401);
    assert_true(rsp_has(t, "stale=true"));
}

static void
test_bad_input(void **state)
{
    struct t *t = *state;
    send_reg(t, &(struct req){.contacts = C1,
                              .raw_auth = "Authorization: Digest "
                                          "username=\"100, realm=x\r\n"});
    assert_int_equal(t->status, 400);
    send_reg(t, &(struct req){.contacts = C1});
    send_reg(t, &(struct req){.contacts = C1, .expires = "soon", .auth = true});
    assert_int_equal(t->status, 400);
    send_reg(t, &(struct req){.contacts = "Contact: <sip:100@h>;expires=x\r\n",
                              .auth = true});
    assert_int_equal(t->status, 400);
    send_reg(t, &(struct req){.contacts = "Contact: *\r\n", .auth = true});
    assert_int_equal(t->status, 400); /* * without Expires: 0 */
    send_reg(t, &(struct req){.contacts = "Contact: *\r\n" C1,
                              .expires = "0",
                              .auth = true});
    assert_int_equal(t->status, 400); /* * with another contact */
    send_reg(t, &(struct req){.contacts = C1,
                              .auth = true,
                              .extra = "Require: foo, bar\r\n"});
    assert_int_equal(t->status, 420);
    assert_true(rsp_has(t, "Unsupported: foo, bar\r\n"));
    struct reg_stats s;
    reg_get_stats(t->r, &s);
    assert_int_equal(s.bindings, 0);
}

static void
test_expires_rules(void **state)
{
    struct t *t = *state;
    send_reg(t, &(struct req){.contacts = C1});
    send_reg(t, &(struct req){.contacts = C1, .expires = "30", .auth = true});
    assert_int_equal(t->status, 423);
    assert_true(rsp_has(t, "Min-Expires: 60\r\n"));
    /* Contact param beats the header; the max clamps. */
    send_reg(t, &(struct req){.contacts = "Contact: <sip:100@192.0.2.7:5062>"
                                          ";expires=100000\r\n",
                              .expires = "30",
                              .auth = true});
    assert_int_equal(t->status, 200);
    assert_true(rsp_has(t, ";expires=7200\r\n"));
    send_reg(t, &(struct req){.contacts = C1, .expires = "120", .auth = true});
    assert_int_equal(t->status, 200);
    assert_true(rsp_has(t, ";expires=120\r\n"));
    /* Expiry: sweep and lookups drop it. */
    t->now_ms += 121 * 1000;
    struct arena a;
    arena_init(&a, 65536);
    struct reg_contact *c;
    size_t n;
    assert_int_equal(reg_lookup(t->r, SLICE_LIT("100"), &a, &c, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(reg_expire(t->r), 1);
    assert_int_equal(reg_expire(t->r), 0);
    arena_fini(&a);
}

#define C2 "Contact: <sip:100@198.51.100.9:5070;transport=tcp>\r\n"

static void
test_contacts_unregister(void **state)
{
    struct t *t = *state;
    assert_int_equal(register_ok(t, (struct req){.contacts = C1 C2}), 200);
    assert_int_equal(contact_count(t), 2);
    /* A second device (other Call-ID) adds a third binding. */
    send_reg(t, &(struct req){.contacts = "Contact: <sip:100@10.0.0.3>\r\n",
                              .call_id = "cid-other",
                              .auth = true});
    assert_int_equal(t->status, 200);
    assert_int_equal(contact_count(t), 3);
    /* Fetch: no Contact → lists all. */
    send_reg(t, &(struct req){.auth = true});
    assert_int_equal(t->status, 200);
    assert_int_equal(contact_count(t), 3);
    /* Unregister one. */
    send_reg(t, &(struct req){.contacts = "Contact: <sip:100@198.51.100.9:5070"
                                          ";transport=tcp>;expires=0\r\n",
                              .auth = true});
    assert_int_equal(t->status, 200);
    assert_int_equal(contact_count(t), 2);
    assert_false(rsp_has(t, "198.51.100.9"));
    /* Out-of-order CSeq on the same Call-ID → 400, nothing changed. */
    uint32_t keep = t->cseq;
    t->cseq = 1;
    send_reg(t, &(struct req){.contacts = C1, .expires = "0", .auth = true});
    assert_int_equal(t->status, 400);
    t->cseq = keep;
    send_reg(t, &(struct req){.auth = true});
    assert_int_equal(contact_count(t), 2);
    /* Unregister all. */
    send_reg(t, &(struct req){.contacts = "Contact: *\r\n",
                              .expires = "0",
                              .auth = true});
    assert_int_equal(t->status, 200);
    assert_int_equal(contact_count(t), 0);
    struct reg_stats s;
    reg_get_stats(t->r, &s);
    assert_int_equal(s.bindings, 0);
}

static void
test_instance_replaces(void **state)
{
    struct t *t = *state;
    const char *c1 =
        "Contact: <sip:100@192.0.2.7:5062;pn-provider=apns;"
        "pn-param=ABCD.com.ex.voip;pn-prid=AAAA;transport=udp>;"
        "+sip.instance=\"<urn:uuid:1111>\";reg-id=1;expires=600\r\n";
    const char *c2 = "Contact: <sip:100@192.0.2.99:6000;pn-provider=apns;"
                     "pn-param=ABCD.com.ex.voip;pn-prid=BBBB;transport=udp>;"
                     "+sip.instance=\"<urn:uuid:1111>\";reg-id=1\r\n";
    assert_int_equal(register_ok(t, (struct req){.contacts = c1}), 200);
    assert_true(rsp_has(t, "pn-prid=AAAA"));
    assert_true(rsp_has(t, "+sip.instance=\"<urn:uuid:1111>\""));
    /* liblinphone: new token, new Call-ID, same instance → replaced. */
    assert_int_equal(
        register_ok(t, (struct req){.contacts = c2, .call_id = "cid-new"}),
        200);
    assert_int_equal(contact_count(t), 1);
    assert_true(rsp_has(t, "pn-prid=BBBB"));
    assert_false(rsp_has(t, "pn-prid=AAAA"));

    struct arena a;
    arena_init(&a, 65536);
    struct reg_contact *c;
    size_t n;
    assert_int_equal(reg_lookup(t->r, SLICE_LIT("100"), &a, &c, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(c[0].instance, "urn:uuid:1111");
    assert_int_equal(c[0].reg_id, 1);
    assert_non_null(strstr(c[0].uri, "pn-param=ABCD.com.ex.voip"));
    assert_null(strstr(c[0].params, "expires"));
    arena_fini(&a);
}

static void
test_max_contacts_evicts_oldest(void **state)
{
    struct t *t = *state;
    t->cfg.max_contacts = 2;
    reg_free(t->r);
    start_reg(t);
    reg_ext_set(t->r, "100", "Alice", "secret100", true, 1);
    char contact[128], cid[32];
    for (int i = 0; i < 3; i++) {
        snprintf(contact, sizeof(contact), "Contact: <sip:100@10.0.0.%d>\r\n",
                 i + 1);
        snprintf(cid, sizeof(cid), "cid-%d", i);
        assert_int_equal(
            register_ok(t, (struct req){.contacts = contact, .call_id = cid}),
            200);
        t->now_ms += 1000;
    }
    assert_int_equal(contact_count(t), 2);
    assert_false(rsp_has(t, "10.0.0.1>"));
    assert_true(rsp_has(t, "10.0.0.3>"));
}

static void
test_restart_restores(void **state)
{
    struct t *t = *state;
    assert_int_equal(
        register_ok(t, (struct req){.contacts = C1 C2, .expires = "600"}), 200);
    send_reg(t, &(struct req){.to_user = "101",
                              .contacts = "Contact: <sip:101@10.1.1.1>;"
                                          "expires=60\r\n",
                              .call_id = "cid-b"});
    send_reg(t, &(struct req){.to_user = "101",
                              .contacts = "Contact: <sip:101@10.1.1.1>;"
                                          "expires=60\r\n",
                              .call_id = "cid-b",
                              .auth = true});
    assert_int_equal(t->status, 200);

    /* Restart: a new registrar on a reopened store. */
    reg_free(t->r);
    store_close(t->st);
    t->now_ms += 100 * 1000; /* 101's binding expired meanwhile */
    open_store(t);
    start_reg(t);
    assert_int_equal(reg_load(t->r), 0);
    struct reg_stats s;
    reg_get_stats(t->r, &s);
    assert_int_equal(s.extensions, 2);
    assert_int_equal(s.bindings, 2);
    /* Old nonces are from the previous process: stale, then OK with
     * the stored HA1 (no password given to this registrar). */
    send_reg(t, &(struct req){.auth = true});
    assert_int_equal(t->status, 401);
    assert_true(rsp_has(t, "stale=true"));
    send_reg(t, &(struct req){.auth = true});
    assert_int_equal(t->status, 200);
    assert_int_equal(contact_count(t), 2);
    assert_true(rsp_has(t, ";expires=500\r\n"));
}

struct bind_seen {
    int calls;
    size_t count;
    char ext[16];
    char uri[128];
    bool lookup_ok;
    struct reg *r;
};

static void
on_bind(const char *ext, const struct reg_contact *c, size_t count, void *arg)
{
    struct bind_seen *s = arg;
    s->calls++;
    s->count = count;
    snprintf(s->ext, sizeof(s->ext), "%s", ext);
    snprintf(s->uri, sizeof(s->uri), "%s", c[0].uri);
    /* No registrar lock is held: looking up from the callback works. */
    struct arena a;
    struct reg_contact *v;
    size_t n;
    arena_init(&a, 65536);
    s->lookup_ok = reg_lookup(s->r, slice_cstr(ext), &a, &v, &n) == 0;
    arena_fini(&a);
}

static void
test_bind_callback(void **state)
{
    struct t *t = *state;
    struct bind_seen seen = {.r = t->r};
    reg_set_bind_cb(t->r, on_bind, &seen);
    send_reg(t, &(struct req){.contacts = C1});
    assert_int_equal(seen.calls, 0); /* a challenge binds nothing */
    send_reg(t, &(struct req){.contacts = C1, .auth = true});
    assert_int_equal(t->status, 200);
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.count, 1);
    assert_string_equal(seen.ext, "100");
    assert_string_equal(seen.uri, "sip:100@192.0.2.7:5062");
    assert_true(seen.lookup_ok);
    /* Fetch and unregister add no binding: no notification. */
    send_reg(t, &(struct req){.auth = true});
    send_reg(t, &(struct req){.contacts = C1, .expires = "0", .auth = true});
    assert_int_equal(t->status, 200);
    assert_int_equal(seen.calls, 1);
}

/* Several worker threads registering at once, two per extension, each
 * with its own Call-ID and contact: every REGISTER succeeds, counters add
 * up, and each extension ends with exactly its two live bindings. */
struct worker {
    struct t t; /* private copy: own buffers, nonce, CSeq */
    int idx;
    int ok;
};

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    char contact[96], cid[32];
    const char *ext = w->idx < 2 ? "100" : "101";
    snprintf(contact, sizeof(contact), "Contact: <sip:%s@10.9.9.%d>\r\n", ext,
             w->idx);
    snprintf(cid, sizeof(cid), "cid-thread-%d", w->idx);
    for (int i = 0; i < 100; i++)
        if (register_ok(&w->t, (struct req){.to_user = ext,
                                            .contacts = contact,
                                            .call_id = cid}) == 200)
            w->ok++;
    return NULL;
}

static void
test_threads(void **state)
{
    struct t *t = *state;
    struct worker w[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].t.r = t->r;
        w[i].t.src = t->src;
        w[i].t.cseq = 1;
        w[i].idx = i;
        buf_init(&w[i].t.rsp, 65536);
        arena_init(&w[i].t.a, SIP_MSG_ARENA_CAP);
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        buf_fini(&w[i].t.rsp);
        arena_fini(&w[i].t.a);
        assert_int_equal(w[i].ok, 100);
    }
    struct reg_stats s;
    reg_get_stats(t->r, &s);
    assert_int_equal(s.ok, 400);
    assert_int_equal(s.registers, 800);
    assert_int_equal(s.bindings, 4);
    struct arena a;
    arena_init(&a, 65536);
    struct reg_contact *c;
    size_t n;
    assert_int_equal(reg_lookup(t->r, SLICE_LIT("101"), &a, &c, &n), 0);
    assert_int_equal(n, 2);
    arena_fini(&a);
}

/* The option table's defaults (what a config without [registrar] gives)
 * equal reg_cfg_defaults(). */
static void
test_cfg_defaults(void **state)
{
    (void)state;
    const struct cfg_section *secs[] = {&reg_cfg_section, &reg_ext_cfg_section};
    struct cfg *cfg;
    char err[256];
    assert_int_equal(cfg_load(secs, 2, NULL, NULL, 0, &cfg, err, sizeof(err)),
                     0);
    const struct reg_cfg *got = cfg_get(cfg, &reg_cfg_section);
    struct reg_cfg want;
    reg_cfg_defaults(&want);
    assert_memory_equal(got, &want, sizeof(want));
    cfg_free(cfg);

    /* An extension without a password is refused with a reason. */
    const char *sets[] = {"extension.100.name=Alice"};
    assert_int_equal(cfg_load(secs, 2, NULL, sets, 1, &cfg, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "password"));
    const char *sets2[] = {"extension.100.password=pw",
                           "registrar.unknown_extension=404"};
    assert_int_equal(cfg_load(secs, 2, NULL, sets2, 2, &cfg, err, sizeof(err)),
                     0);
    got = cfg_get(cfg, &reg_cfg_section);
    assert_int_equal(got->unknown_ext, REG_UNKNOWN_404);
    assert_int_equal(cfg_instance_count(cfg, &reg_ext_cfg_section), 1);
    const char *name;
    const struct reg_ext_cfg *e =
        cfg_instance(cfg, &reg_ext_cfg_section, 0, &name);
    assert_string_equal(name, "100");
    assert_string_equal(e->password, "pw");
    assert_true(e->enabled);
    assert_int_equal(e->max_push_devices, 1);
    cfg_free(cfg);
}

/* The digest arithmetic the registrar relies on, against the published
 * RFC 7616 §3.9.1 vectors (independent of our nonces). */
static void
test_digest_rfc7616_vectors(void **state)
{
    (void)state;
    static const struct {
        enum sip_digest_alg alg;
        const char *want;
    } v[] = {
        {SIP_DIGEST_MD5, "8ca523f5e9506fed4657c9700eebdbec"},
        {SIP_DIGEST_SHA256, "753927fa0e85d155564e2e272a28d1802ca10daf449679"
                            "4697cf8db5856cb6c1"},
    };
    for (size_t i = 0; i < 2; i++) {
        char ha1[65], out[65];
        sip_digest_ha1(v[i].alg, SLICE_LIT("Mufasa"),
                       SLICE_LIT("http-auth@example.org"),
                       SLICE_LIT("Circle of Life"), ha1);
        assert_int_equal(
            sip_digest_response(
                v[i].alg, slice_cstr(ha1),
                SLICE_LIT("7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"),
                SLICE_LIT("00000001"),
                SLICE_LIT("f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"),
                SLICE_LIT("auth"), SLICE_LIT("GET"),
                SLICE_LIT("/dir/index.html"), SLICE_NULL, out),
            0);
        assert_string_equal(out, v[i].want);
    }
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_challenge),
        T(test_register_sha256_and_md5),
        T(test_algorithm_choice),
        T(test_wrong_password_then_throttled),
        T(test_unknown_extension_policies),
        T(test_identity_checks),
        T(test_stale_and_replay),
        T(test_challenge_text_and_nonce),
        T(test_ok_lines_text),
        T(test_bad_input),
        T(test_nonce_table_burst),
        T(test_expires_rules),
        T(test_contacts_unregister),
        T(test_instance_replaces),
        T(test_max_contacts_evicts_oldest),
        T(test_restart_restores),
        T(test_threads),
        T(test_bind_callback),
        cmocka_unit_test(test_cfg_defaults),
        cmocka_unit_test(test_digest_rfc7616_vectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
