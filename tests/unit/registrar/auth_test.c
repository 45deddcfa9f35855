/*
 * auth_test: the brute-force throttle and the digest check shared by
 * REGISTER (reg_handle) and the proxy (reg_auth_request), issue
 * [hardening] items 2 and 4 and [wake-room] item 4. Requests are SIP text
 * parsed by sip_msg_parse; REGISTERs go through the shared harness
 * (reg_harness.h), INVITEs through reg_auth_request as the proxy calls it.
 * The source address is changed between requests to play several hosts.
 */
#include <errno.h>

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

/* Restart the registrar with t->cfg (extensions 100 and 101 again). */
static void
restart(struct t *t)
{
    reg_free(t->r);
    start_reg(t);
    assert_int_equal(reg_ext_set(t->r, "100", "Alice", "secret100", true, 1),
                     0);
    assert_int_equal(reg_ext_set(t->r, "101", "Bob", "secret101", true, 1), 0);
}

static void
src_ip(struct t *t, const char *ip)
{
    memset(&t->src.addr, 0, sizeof(t->src.addr));
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&t->src.addr;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(5062);
        assert_int_equal(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&t->src.addr;
        in->sin_family = AF_INET;
        in->sin_port = htons(5062);
        assert_int_equal(inet_pton(AF_INET, ip, &in->sin_addr), 1);
    }
}

#define C1 "Contact: <sip:100@192.0.2.7:5062>\r\n"

/* A wrong password for 100 from ip; returns the status. */
static int
wrong_from(struct t *t, const char *ip)
{
    src_ip(t, ip);
    return send_reg(
        t, &(struct req){.contacts = C1, .auth = true, .password = "guess"});
}

/* Get a nonce from a source that is never blocked in these tests. */
static void
fresh_nonce(struct t *t)
{
    src_ip(t, "192.0.2.200");
    send_reg(t, &(struct req){.contacts = C1});
    assert_int_equal(t->status, 401);
}

/* Block ip: threshold - 1 challenges, then 403. */
static void
block(struct t *t, const char *ip)
{
    for (unsigned i = 1; i < t->cfg.auth_fail_threshold; i++)
        assert_int_equal(wrong_from(t, ip), 401);
    assert_int_equal(wrong_from(t, ip), 403);
}

/* 127.0.0.10 and 127.0.21.85 shared a slot of the old direct-mapped
 * table: a failure from one reset the other's entry, block included, so
 * alternating the two gave unlimited guesses. Now .10 stays blocked. */
static void
test_colliding_address_cannot_lift_block(void **state)
{
    struct t *t = *state;
    fresh_nonce(t);
    block(t, "127.0.0.10");
    assert_int_equal(wrong_from(t, "127.0.21.85"), 401);
    src_ip(t, "127.0.0.10");
    send_reg(t, &(struct req){.contacts = C1, .auth = true}); /* right pw */
    assert_int_equal(t->status, 403);
    assert_null(sip_msg_hdr(&t->m, SIP_HDR_WWW_AUTHENTICATE));

    /* Alternate: every answer to .10 is the blocked 403, so .10 gets no
     * guess at all; .21.85 gets its own threshold and no more. */
    unsigned guesses_10 = 0, guesses_2185 = 1;
    struct reg_stats s0, s1;
    for (int i = 0; i < 50; i++) {
        reg_get_stats(t->r, &s0);
        wrong_from(t, "127.0.21.85");
        reg_get_stats(t->r, &s1);
        guesses_2185 += (unsigned)(s1.auth_failures - s0.auth_failures);
        wrong_from(t, "127.0.0.10");
        reg_get_stats(t->r, &s0);
        guesses_10 += (unsigned)(s0.auth_failures - s1.auth_failures);
    }
    assert_int_equal(guesses_10, 0);
    assert_int_equal(guesses_2185, t->cfg.auth_fail_threshold);
    struct reg_stats s;
    reg_get_stats(t->r, &s);
    assert_int_equal(s.auth_failures, 2 * t->cfg.auth_fail_threshold);
    assert_int_equal(s.blocks, 2);
    /* The block ends on time for both. */
    t->now_ms += (int64_t)(t->cfg.auth_block_s + 1) * 1000;
    src_ip(t, "127.0.0.10");
    assert_int_equal(register_ok(t, (struct req){.contacts = C1}), 200);
}

/* One host owns a /64: its addresses share a counter; another /64 does
 * not. IPv4-mapped IPv6 counts as the IPv4 address. */
static void
test_ipv6_counted_per_prefix(void **state)
{
    struct t *t = *state;
    fresh_nonce(t);
    block(t, "2001:db8:1:2::1");
    assert_int_equal(wrong_from(t, "2001:db8:1:2:ffff:ffff:ffff:fffe"), 403);
    src_ip(t, "2001:db8:1:2::77");
    send_reg(t, &(struct req){.contacts = C1, .auth = true});
    assert_int_equal(t->status, 403);
    /* The next /64 is someone else. */
    assert_int_equal(wrong_from(t, "2001:db8:1:3::1"), 401);
    src_ip(t, "2001:db8:1:3::1");
    assert_int_equal(register_ok(t, (struct req){.contacts = C1}), 200);

    fresh_nonce(t);
    block(t, "198.51.100.20");
    assert_int_equal(wrong_from(t, "::ffff:198.51.100.20"), 403);
}

static void
test_ipv6_prefix_option(void **state)
{
    struct t *t = *state;
    t->cfg.throttle_ipv6_prefix = 128; /* each address its own counter */
    restart(t);
    fresh_nonce(t);
    block(t, "2001:db8:1:2::1");
    assert_int_equal(wrong_from(t, "2001:db8:1:2::2"), 401);

    t->cfg.throttle_ipv6_prefix = 48;
    restart(t);
    fresh_nonce(t);
    block(t, "2001:db8:1:2::1");
    assert_int_equal(wrong_from(t, "2001:db8:1:ffff::2"), 403);
    assert_int_equal(wrong_from(t, "2001:db8:2::1"), 401);
}

/* A full table forgets the least recently failed unblocked source. */
static void
test_full_table_evicts_oldest_unblocked(void **state)
{
    struct t *t = *state;
    t->cfg.throttle_table_size = 16;
    t->cfg.auth_fail_threshold = 2;
    restart(t);
    fresh_nonce(t);
    assert_int_equal(wrong_from(t, "10.0.0.1"), 401); /* oldest */
    assert_int_equal(wrong_from(t, "10.0.1.1"), 401);
    block(t, "10.0.2.1"); /* blocked: never evicted */
    char ip[32];
    for (int i = 0; i < 14; i++) {
        snprintf(ip, sizeof(ip), "10.1.0.%d", i + 1);
        assert_int_equal(wrong_from(t, ip), 401);
    }
    /* 10.0.0.1 (oldest) was forgotten: its next failure is its first. */
    assert_int_equal(wrong_from(t, "10.0.0.1"), 401);
    /* That took 10.0.1.1's entry, the oldest unblocked one. */
    assert_int_equal(wrong_from(t, "10.0.1.1"), 401);
    /* The blocked source outlived both evictions. */
    src_ip(t, "10.0.2.1");
    send_reg(t, &(struct req){.contacts = C1, .auth = true});
    assert_int_equal(t->status, 403);
    /* The most recent one is remembered. */
    assert_int_equal(wrong_from(t, "10.1.0.14"), 403);
    struct reg_stats s;
    reg_get_stats(t->r, &s);
    assert_int_equal(s.throttle_overflows, 0);
}

/* A table full of blocks: blocks stay; other sources share one counter,
 * and once it blocks they all get 403 until that block ends. */
static void
test_full_table_of_blocks_fails_closed(void **state)
{
    struct t *t = *state;
    t->cfg.throttle_table_size = 16;
    t->cfg.auth_fail_threshold = 2;
    restart(t);
    fresh_nonce(t);
    char ip[32];
    for (int i = 0; i < 16; i++) {
        snprintf(ip, sizeof(ip), "10.2.0.%d", i + 1);
        block(t, ip);
    }
    t->now_ms += 10 * 1000;
    fresh_nonce(t); /* 192.0.2.200 never failed: not in the table */
    assert_int_equal(wrong_from(t, "10.3.0.1"), 401); /* overflow: 1 */
    assert_int_equal(wrong_from(t, "10.3.0.2"), 403); /* overflow: 2 */
    struct reg_stats s;
    reg_get_stats(t->r, &s);
    assert_int_equal(s.throttle_overflows, 2);
    /* Every source not in the table is blocked now, right password too. */
    src_ip(t, "10.3.0.3");
    send_reg(t, &(struct req){.contacts = C1, .auth = true});
    assert_int_equal(t->status, 403);
    /* The first blocks are still there. */
    assert_int_equal(wrong_from(t, "10.2.0.1"), 403);
    /* The first 16 blocks end; the overflow's (10 s later) has not. */
    t->now_ms += (int64_t)(t->cfg.auth_block_s - 9) * 1000;
    src_ip(t, "10.2.0.1");
    assert_int_equal(register_ok(t, (struct req){.contacts = C1}), 200);
    assert_int_equal(wrong_from(t, "10.4.0.1"), 403); /* not in the table */
    /* When the overflow block ends, fresh sources are back... */
    t->now_ms += 10 * 1000;
    src_ip(t, "10.3.0.3");
    assert_int_equal(register_ok(t, (struct req){.contacts = C1}), 200);
    /* ...and take the entries of ended blocks: counted on their own. */
    assert_int_equal(wrong_from(t, "10.4.0.1"), 401);
    assert_int_equal(wrong_from(t, "10.4.0.1"), 403);
    reg_get_stats(t->r, &s);
    assert_int_equal(s.throttle_overflows, 2);
}

/* ---- same work for unknown and known extensions (item 4) -------------- */

static uint64_t
digests(struct t *t)
{
    struct reg_stats s;
    reg_get_stats(t->r, &s);
    return s.digests;
}

/* A wrong password for 100 and any password for the unknown 555 cost one
 * digest computation each and get the same answer. */
static void
test_unknown_extension_same_work(void **state)
{
    struct t *t = *state;
    t->cfg.auth_fail_threshold = 0;
    restart(t);
    static const char *const algs[] = {"SHA-256", "MD5"};
    for (size_t i = 0; i < 2; i++) {
        fresh_nonce(t);
        uint64_t d0 = digests(t);
        send_reg(t, &(struct req){.contacts = C1,
                                  .auth = true,
                                  .alg = algs[i],
                                  .password = "guess"});
        assert_int_equal(t->status, 401);
        size_t known_hdrs = t->m.hdr_count;
        uint64_t d1 = digests(t);
        send_reg(t, &(struct req){.to_user = "555",
                                  .contacts = C1,
                                  .auth = true,
                                  .alg = algs[i]});
        assert_int_equal(t->status, 401);
        assert_int_equal(t->m.hdr_count, known_hdrs);
        assert_false(rsp_has(t, "stale"));
        uint64_t d2 = digests(t);
        assert_int_equal(d1 - d0, 1);
        assert_int_equal(d2 - d1, d1 - d0);
    }
}

/* ---- the proxy's path: reg_auth_request -------------------------------- */

/* Send an INVITE from 100 (or user) to 101 through reg_auth_request.
 * With a nonce, it carries Proxy-Authorization for user/password. */
static int
invite(struct t *t, const char *user, const char *password, const char *nonce,
       uint32_t nc, struct buf *hdrs, char *ext)
{
    char auth[1024] = "", msg[4096];

    if (nonce) {
        char ha1[65], resp[65], ncs[9];
        snprintf(ncs, sizeof(ncs), "%08x", nc);
        sip_digest_ha1(SIP_DIGEST_SHA256, slice_cstr(user), SLICE_LIT(REALM),
                       slice_cstr(password), ha1);
        assert_int_equal(
            sip_digest_response(SIP_DIGEST_SHA256, slice_cstr(ha1),
                                slice_cstr(nonce), slice_cstr(ncs),
                                SLICE_LIT("c0ffee"), SLICE_LIT("auth"),
                                SLICE_LIT("INVITE"),
                                SLICE_LIT("sip:101@" DOMAIN), SLICE_NULL, resp),
            0);
        snprintf(auth, sizeof(auth),
                 "Proxy-Authorization: Digest username=\"%s\", "
                 "realm=\"" REALM "\", nonce=\"%s\", uri=\"sip:101@" DOMAIN
                 "\", response=\"%s\", algorithm=SHA-256, cnonce=\"c0ffee\", "
                 "qop=auth, nc=%s\r\n",
                 user, nonce, resp, ncs);
    }
    int n = snprintf(msg, sizeof(msg),
                     "INVITE sip:101@" DOMAIN " SIP/2.0\r\n"
                     "Via: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bKinv%u\r\n"
                     "Max-Forwards: 70\r\n"
                     "From: <sip:%s@" DOMAIN ">;tag=i1\r\n"
                     "To: <sip:101@" DOMAIN ">\r\n"
                     "Call-ID: inv-1\r\n"
                     "CSeq: %u INVITE\r\n"
                     "%s"
                     "Content-Length: 0\r\n\r\n",
                     t->cseq, user, t->cseq, auth);
    t->cseq++;
    struct arena a;
    struct sip_msg req;
    struct sip_error err;
    arena_init(&a, SIP_MSG_ARENA_CAP);
    assert_int_equal(sip_msg_parse(&req, msg, (size_t)n, &a, &err), 0);
    buf_reset(hdrs);
    int st = reg_auth_request(t->r, &req, &t->src, ext, 33, hdrs);
    arena_fini(&a);
    return st;
}

/* The nonce of the first Proxy-Authenticate line in hdrs. */
static void
proxy_nonce(struct buf *hdrs, char *out, size_t cap)
{
    const char *p = strstr(hdrs->data, "nonce=\"");
    assert_non_null(p);
    p += 7;
    const char *q = strchr(p, '"');
    assert_non_null(q);
    snprintf(out, cap, "%.*s", (int)(q - p), p);
}

static void
test_proxy_auth_same_rules(void **state)
{
    struct t *t = *state;
    struct buf h;
    char ext[33], nonce[128];
    buf_init(&h, 4096);

    /* No credentials: 407, one Proxy-Authenticate per algorithm. */
    assert_int_equal(invite(t, "100", NULL, NULL, 0, &h, ext), 407);
    const char *sha =
        strstr(h.data, "Proxy-Authenticate: Digest realm=\"" REALM "\"");
    assert_non_null(sha);
    assert_non_null(strstr(h.data, "algorithm=MD5"));
    assert_true(strstr(h.data, "algorithm=SHA-256") <
                strstr(h.data, "algorithm=MD5"));
    proxy_nonce(&h, nonce, sizeof(nonce));

    /* Right password: the extension. */
    assert_int_equal(invite(t, "100", "secret100", nonce, 1, &h, ext), 0);
    assert_string_equal(ext, "100");
    /* Replayed nc: 407 stale=true. */
    assert_int_equal(invite(t, "100", "secret100", nonce, 1, &h, ext), 407);
    assert_non_null(strstr(h.data, "stale=true"));

    /* Unknown and known-wrong: one digest each, the same 407. */
    uint64_t d0 = digests(t);
    assert_int_equal(invite(t, "100", "guess", nonce, 2, &h, ext), 407);
    uint64_t d1 = digests(t);
    assert_int_equal(invite(t, "555", "guess", nonce, 3, &h, ext), 407);
    uint64_t d2 = digests(t);
    assert_int_equal(d1 - d0, 1);
    assert_int_equal(d2 - d1, 1);

    /* The 404 policy is REGISTER's: an INVITE still gets 407. */
    t->cfg.unknown_ext = REG_UNKNOWN_404;
    restart(t);
    assert_int_equal(invite(t, "100", NULL, NULL, 0, &h, ext), 407);
    proxy_nonce(&h, nonce, sizeof(nonce));
    assert_int_equal(invite(t, "555", "guess", nonce, 1, &h, ext), 407);

    /* Too long a username: 400. */
    assert_int_equal(
        invite(t, "123456789012345678901234567890123", "x", nonce, 2, &h, ext),
        400);
    /* Disabled extension, right password: 403. */
    assert_int_equal(reg_ext_update(t->r, "101", NULL, false, 0), 0);
    assert_int_equal(invite(t, "101", "secret101", nonce, 4, &h, ext), 403);
    buf_fini(&h);
}

/* REGISTER failures and INVITE failures feed the same counter. */
static void
test_proxy_and_register_share_throttle(void **state)
{
    struct t *t = *state;
    struct buf h;
    char ext[33], nonce[128];
    buf_init(&h, 4096);
    t->cfg.auth_fail_threshold = 4;
    restart(t);
    fresh_nonce(t);
    src_ip(t, "203.0.113.5");
    assert_int_equal(invite(t, "100", NULL, NULL, 0, &h, ext), 407);
    proxy_nonce(&h, nonce, sizeof(nonce));
    assert_int_equal(wrong_from(t, "203.0.113.5"), 401);
    assert_int_equal(wrong_from(t, "203.0.113.5"), 401);
    assert_int_equal(invite(t, "100", "guess", nonce, 1, &h, ext), 407);
    assert_int_equal(invite(t, "100", "guess", nonce, 2, &h, ext), 403);
    /* Blocked for REGISTER too, and for the right password. */
    assert_int_equal(invite(t, "100", "secret100", nonce, 3, &h, ext), 403);
    assert_int_equal(wrong_from(t, "203.0.113.5"), 403);
    struct reg_stats s;
    reg_get_stats(t->r, &s);
    assert_int_equal(s.blocks, 1);
    buf_fini(&h);
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_colliding_address_cannot_lift_block),
        T(test_ipv6_counted_per_prefix),
        T(test_ipv6_prefix_option),
        T(test_full_table_evicts_oldest_unblocked),
        T(test_full_table_of_blocks_fails_closed),
        T(test_unknown_extension_same_work),
        T(test_proxy_auth_same_rules),
        T(test_proxy_and_register_share_throttle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
