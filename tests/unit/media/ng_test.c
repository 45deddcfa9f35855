/*
 * Tests for media/ng: request building (every flag NAT and SRTP bridging
 * need, and the refusals), datagram framing, answer parsing with the
 * per-leg figures and one-way detection, relay addresses, and the [media]
 * option table.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "base/buf.h"
#include "config/cfg.h"
#include "media/bencode.h"
#include "media/media_cfg.h"
#include "media/ng.h"

static struct media_benc nodes[1024];

static const struct media_benc *
decode(const struct buf *b)
{
    size_t n;
    const char *why = NULL;
    int rc = media_benc_decode(b->data, b->len, nodes, 1024, 0, &n, &why);
    if (rc != 0)
        fail_msg("request does not decode: %s", why);
    return &nodes[0];
}

static void
assert_list(const struct media_benc *d, const char *key, const char *a,
            const char *b)
{
    const struct media_benc *l =
        media_benc_get_type(nodes, d, key, MEDIA_BENC_LIST);
    assert_non_null(l);
    const struct media_benc *it = media_benc_first(nodes, l);
    assert_non_null(it);
    assert_true(slice_eq_cstr(it->str, a));
    it = media_benc_next(nodes, it);
    if (b == NULL) {
        assert_null(it);
        return;
    }
    assert_non_null(it);
    assert_true(slice_eq_cstr(it->str, b));
    assert_null(media_benc_next(nodes, it));
}

static void
test_build_offer(void **state)
{
    struct buf b;
    const char *why;
    struct media_ng_req r = {
        .cmd = MEDIA_NG_OFFER,
        .call_id = SLICE_LIT("abc@host"),
        .from_tag = SLICE_LIT("ft1"),
        .via_branch = SLICE_LIT("z9hG4bK1"),
        .sdp = SLICE_LIT("v=0\r\n"),
        .received_from = SLICE_LIT("203.0.113.7"),
        .sip_source = true,
        .replace_origin = true,
        .replace_session_connection = true,
        .ice = MEDIA_NG_ICE_REMOVE,
        .transport_protocol = SLICE_LIT("RTP/AVP"),
    };

    buf_init(&b, 4096);
    assert_int_equal(media_ng_build(&r, &b, &why), 0);
    const struct media_benc *d = decode(&b);
    assert_true(slice_eq_cstr(media_benc_get_str(nodes, d, "command"), "offer"));
    assert_true(
        slice_eq_cstr(media_benc_get_str(nodes, d, "call-id"), "abc@host"));
    assert_true(slice_eq_cstr(media_benc_get_str(nodes, d, "from-tag"), "ft1"));
    assert_null(media_benc_get(nodes, d, "to-tag"));
    assert_true(
        slice_eq_cstr(media_benc_get_str(nodes, d, "via-branch"), "z9hG4bK1"));
    assert_true(slice_eq_cstr(media_benc_get_str(nodes, d, "sdp"), "v=0\r\n"));
    assert_true(slice_eq_cstr(media_benc_get_str(nodes, d, "ICE"), "remove"));
    assert_true(slice_eq_cstr(
        media_benc_get_str(nodes, d, "transport-protocol"), "RTP/AVP"));
    assert_list(d, "received-from", "IP4", "203.0.113.7");
    assert_list(d, "flags", "SIP-source-address", NULL);
    assert_list(d, "replace", "origin", "session-connection");
    /* Never "asymmetric": it would turn endpoint learning off. */
    assert_null(strstr(b.data, "asymmetric"));

    /* IPv6 source, ICE force, only one replace, no flags. */
    buf_reset(&b);
    r.received_from = SLICE_LIT("2001:db8::7");
    r.ice = MEDIA_NG_ICE_FORCE;
    r.sip_source = false;
    r.replace_origin = false;
    r.transport_protocol = SLICE_NULL;
    r.cmd = MEDIA_NG_ANSWER;
    r.to_tag = SLICE_LIT("tt1");
    assert_int_equal(media_ng_build(&r, &b, &why), 0);
    d = decode(&b);
    assert_true(slice_eq_cstr(media_benc_get_str(nodes, d, "command"),
                              "answer"));
    assert_true(slice_eq_cstr(media_benc_get_str(nodes, d, "to-tag"), "tt1"));
    assert_list(d, "received-from", "IP6", "2001:db8::7");
    assert_list(d, "replace", "session-connection", NULL);
    assert_null(media_benc_get(nodes, d, "flags"));
    assert_null(media_benc_get(nodes, d, "transport-protocol"));
    assert_true(slice_eq_cstr(media_benc_get_str(nodes, d, "ICE"), "force"));
    buf_fini(&b);
}

static void
test_build_simple(void **state)
{
    struct buf b;
    const char *why;

    buf_init(&b, 4096);
    struct media_ng_req ping = {.cmd = MEDIA_NG_PING};
    assert_int_equal(media_ng_build(&ping, &b, &why), 0);
    assert_string_equal(b.data, "d7:command4:pinge");

    buf_reset(&b);
    struct media_ng_req del = {.cmd = MEDIA_NG_DELETE,
                               .call_id = SLICE_LIT("c1"),
                               .from_tag = SLICE_LIT("f1"),
                               .sdp = SLICE_LIT("ignored"),
                               .received_from = SLICE_LIT("10.0.0.1")};
    assert_int_equal(media_ng_build(&del, &b, &why), 0);
    assert_string_equal(b.data,
                        "d7:command6:delete7:call-id2:c18:from-tag2:f1e");

    buf_reset(&b);
    struct media_ng_req q = {.cmd = MEDIA_NG_QUERY, .call_id = SLICE_LIT("c")};
    assert_int_equal(media_ng_build(&q, &b, &why), 0);
    assert_string_equal(b.data, "d7:command5:query7:call-id1:ce");

    buf_reset(&b);
    struct media_ng_req l = {.cmd = MEDIA_NG_LIST, .list_limit = 10};
    assert_int_equal(media_ng_build(&l, &b, &why), 0);
    assert_string_equal(b.data, "d7:command4:list5:limiti10ee");
    buf_fini(&b);
}

static void
test_build_refused(void **state)
{
    struct buf b;
    const char *why;
    static const struct {
        struct media_ng_req r;
        const char *why;
    } bad[] = {
        {{.cmd = MEDIA_NG_OFFER, .from_tag = SLICE_LIT("f"),
          .sdp = SLICE_LIT("v")},
         "missing call-id"},
        {{.cmd = MEDIA_NG_OFFER, .call_id = SLICE_LIT("c"),
          .sdp = SLICE_LIT("v")},
         "missing from-tag"},
        {{.cmd = MEDIA_NG_OFFER, .call_id = SLICE_LIT("c"),
          .from_tag = SLICE_LIT("f")},
         "missing sdp"},
        {{.cmd = MEDIA_NG_ANSWER, .call_id = SLICE_LIT("c"),
          .from_tag = SLICE_LIT("f"), .sdp = SLICE_LIT("v")},
         "answer needs to-tag"},
        {{.cmd = MEDIA_NG_DELETE}, "missing call-id"},
        {{.cmd = MEDIA_NG_OFFER, .call_id = SLICE_LIT("c"),
          .from_tag = SLICE_LIT("f"), .sdp = SLICE_LIT("v"),
          .received_from = SLICE_LIT("host.example")},
         "received-from is not an IP address"},
        {{.cmd = (enum media_ng_cmd)42}, "unknown command"},
    };

    buf_init(&b, 4096);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        assert_int_equal(media_ng_build(&bad[i].r, &b, &why), -EINVAL);
        assert_string_equal(why, bad[i].why);
        assert_int_equal(b.len, 0);
    }
    buf_fini(&b);

    /* The cap is an answer, not a crash. */
    buf_init(&b, 32);
    struct media_ng_req big = {.cmd = MEDIA_NG_OFFER,
                               .call_id = SLICE_LIT("c"),
                               .from_tag = SLICE_LIT("f"),
                               .sdp = SLICE_LIT("v=0 and much more than 32")};
    assert_int_equal(media_ng_build(&big, &b, &why), -EMSGSIZE);
    buf_fini(&b);
}

static void
test_split(void **state)
{
    struct slice cookie, body;
    const char *why;
    char long_cookie[80];

    assert_int_equal(media_ng_split("c1 d6:result2:oke", 17, &cookie, &body,
                                    &why),
                     0);
    assert_true(slice_eq_cstr(cookie, "c1"));
    assert_true(slice_eq_cstr(body, "d6:result2:oke"));
    assert_int_equal(media_ng_split("c1 ", 3, &cookie, &body, &why), 0);
    assert_int_equal(body.len, 0);
    assert_int_equal(media_ng_split("nospace", 7, &cookie, &body, &why),
                     -EINVAL);
    assert_string_equal(why, "ng: no cookie");
    assert_int_equal(media_ng_split(" d", 2, &cookie, &body, &why), -EINVAL);
    assert_int_equal(media_ng_split("", 0, &cookie, &body, &why), -EINVAL);
    assert_int_equal(media_ng_split("a\tb c", 5, &cookie, &body, &why),
                     -EINVAL);
    assert_string_equal(why, "ng: bad byte in cookie");
    memset(long_cookie, 'x', sizeof(long_cookie));
    long_cookie[70] = ' ';
    assert_int_equal(media_ng_split(long_cookie, sizeof(long_cookie), &cookie,
                                    &body, &why),
                     -EINVAL);
    assert_string_equal(why, "ng: cookie too long");
}

/* The shape of rtpengine 10.5's delete answer (trimmed): two tags, an RTP
 * and an RTCP stream each, and the SSRC dict with RTCP-derived figures. */
#define STREAM(port, flag, pk, by, ssrc)                                      \
    "d10:local porti" #port "e5:flagsl" flag "e5:statsd7:packetsi" #pk        \
    "e5:bytesi" #by "e6:errorsi0ee" ssrc "e"
static const char delete_answer[] =
    "d6:result2:ok7:createdi1e4:SSRCd4:1234d15:cumulative lossi3e"
    "11:average MOSd3:MOSi43e6:jitteri7eeee"
    "4:tagsd"
    "2:ftd3:tag2:ft6:mediasld7:streamsl" STREAM(23010, "3:RTP", 5, 860,
                                                "4:SSRCi1234e")
        STREAM(23011, "4:RTCP", 1, 32, "") "eeee"
    "2:ttd3:tag2:tt6:mediasld7:streamsl" STREAM(23000, "3:RTP", 0, 0, "")
        STREAM(23001, "4:RTCP", 0, 0, "") "eeee"
    "0:d3:tag0:e"
    "e"
    "6:totalsd3:RTPd7:packetsi5eee"
    "e";

static void
test_answer_stats(void **state)
{
    struct media_ng_answer a;
    const char *why = NULL;

    int rc = media_ng_parse_answer(delete_answer, sizeof(delete_answer) - 1,
                                   nodes, 1024, &a, &why);
    if (rc != 0)
        fail_msg("canned answer refused: %s", why);
    assert_true(a.ok);
    assert_true(a.has_stats);
    assert_int_equal(a.stats.leg_count, 2); /* the "" tag is no leg */
    const struct media_ng_leg *ft = &a.stats.legs[0], *tt = &a.stats.legs[1];
    assert_true(slice_eq_cstr(ft->tag, "ft"));
    assert_int_equal(ft->rtp_packets, 5);
    assert_int_equal(ft->rtp_bytes, 860);
    assert_int_equal(ft->rtcp_packets, 1);
    assert_int_equal(ft->rtcp_bytes, 32);
    assert_true(ft->has_lost && ft->lost == 3);
    assert_true(ft->has_jitter && ft->jitter == 7);
    assert_true(slice_eq_cstr(tt->tag, "tt"));
    assert_int_equal(tt->rtp_packets, 0);
    assert_false(tt->has_lost);
    assert_false(tt->has_jitter);
    assert_true(a.stats.one_way);
    assert_false(a.stats.no_media);
}

static void
test_answer_simple(void **state)
{
    struct media_ng_answer a;
    const char *why = NULL;
    static const char pong[] = "d6:result4:ponge";
    static const char err[] =
        "d6:result5:error12:error-reason20:Unrecognized commande";
    static const char offer[] = "d3:sdp5:v=0\r\n6:result2:ok7:warning1:we";

    assert_int_equal(media_ng_parse_answer(pong, strlen(pong), nodes, 1024,
                                           &a, &why),
                     0);
    assert_true(a.ok);
    assert_false(a.has_stats);
    assert_int_equal(media_ng_parse_answer(err, strlen(err), nodes, 1024, &a,
                                           &why),
                     0);
    assert_false(a.ok);
    assert_true(slice_eq_cstr(a.error_reason, "Unrecognized command"));
    assert_int_equal(media_ng_parse_answer(offer, strlen(offer), nodes, 1024,
                                           &a, &why),
                     0);
    assert_true(slice_eq_cstr(a.sdp, "v=0\r\n"));
    assert_true(slice_eq_cstr(a.warning, "w"));

    /* No result, not a dict, result of the wrong type, broken bencode. */
    static const char *const bad[] = {"d3:sdp1:xe", "l6:resulte",
                                      "d6:resulti1ee", "d6:result2:ok",
                                      "garbage"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(media_ng_parse_answer(bad[i], strlen(bad[i]), nodes,
                                               1024, &a, &why),
                         -EINVAL);

    /* Nobody sent anything: no_media, not one-way. */
    static const char quiet[] =
        "d6:result2:ok4:tagsd1:ad6:mediasld7:streamsl" STREAM(
            1, "3:RTP", 0, 0, "") "eeee1:bde"
        "ee";
    assert_int_equal(media_ng_parse_answer(quiet, strlen(quiet), nodes, 1024,
                                           &a, &why),
                     0);
    assert_int_equal(a.stats.leg_count, 2);
    assert_true(a.stats.no_media);
    assert_false(a.stats.one_way);
}

static void
test_addr(void **state)
{
    struct sockaddr_storage ss;
    socklen_t len;
    const char *why;

    assert_int_equal(media_ng_addr_parse("udp:127.0.0.1:2223", &ss, &len, &why),
                     0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 2223);
    assert_int_equal(media_ng_addr_parse("10.1.2.3:9", &ss, &len, &why), 0);
    assert_int_equal(media_ng_addr_parse("udp:[::1]:2223", &ss, &len, &why),
                     0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(len, sizeof(struct sockaddr_in6));
    static const char *const bad[] = {"udp:rtp.example:2223", "127.0.0.1",
                                      "127.0.0.1:0", "127.0.0.1:65536",
                                      "[::1:2223", "udp::2223", ":x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(media_ng_addr_parse(bad[i], &ss, &len, &why),
                         -EINVAL);
}

static void
test_cfg(void **state)
{
    const struct cfg_section *secs[] = {&media_cfg_section};
    struct cfg *c = NULL;
    char err[256];

    /* Defaults: no rtpengine, so no relay whatever relay says. */
    assert_int_equal(cfg_load(secs, 1, NULL, NULL, 0, &c, err, sizeof(err)),
                     0);
    const struct media_cfg *m = cfg_get(c, &media_cfg_section);
    assert_int_equal(m->rtpengine.count, 0);
    assert_int_equal(m->relay, MEDIA_RELAY_OFF);
    assert_int_equal(m->timeout_ms, 500);
    assert_int_equal(m->retries, 1);
    assert_int_equal(m->on_failure, MEDIA_ON_FAILURE_PASS);
    assert_int_equal(m->ice, MEDIA_ICE_REMOVE);
    cfg_free(c);

    const char *sets[] = {
        "media.rtpengine=udp:127.0.0.1:2223 udp:[::1]:2224",
        "media.relay=nat", "media.on_failure=reject", "media.ice=force"};
    assert_int_equal(cfg_load(secs, 1, NULL, sets, 4, &c, err, sizeof(err)),
                     0);
    m = cfg_get(c, &media_cfg_section);
    assert_int_equal(m->rtpengine.count, 2);
    assert_int_equal(m->relay, MEDIA_RELAY_NAT);
    assert_int_equal(m->on_failure, MEDIA_ON_FAILURE_REJECT);
    assert_int_equal(m->ice, MEDIA_ICE_FORCE);
    cfg_free(c);

    const char *bad[] = {"media.rtpengine=udp:rtp.example.com:2223"};
    assert_int_equal(cfg_load(secs, 1, NULL, bad, 1, &c, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "'rtpengine': bad item "
                                "'udp:rtp.example.com:2223'"));
    const char *bad2[] = {"media.timeout_ms=5"};
    assert_int_equal(cfg_load(secs, 1, NULL, bad2, 1, &c, err, sizeof(err)),
                     -EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_offer),
        cmocka_unit_test(test_build_simple),
        cmocka_unit_test(test_build_refused),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_answer_stats),
        cmocka_unit_test(test_answer_simple),
        cmocka_unit_test(test_addr),
        cmocka_unit_test(test_cfg),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
