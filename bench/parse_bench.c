/*
 * parse_bench: how many messages per second one core parses.
 *
 * Two typical messages: a push REGISTER (RFC 8599 Contact, digest
 * Authorization) and an INVITE (SDP body, Record-Route, three Vias). For
 * each it times the one-pass sip_msg_parse alone, then the parse plus the
 * lazy work a registrar or proxy does next (Contact + its URI + pn-prid
 * lookup + Authorization for REGISTER; Request-URI, To URI and every
 * Record-Route/Via value for INVITE). The arena is reset per message, as a
 * worker does. Usage: parse_bench [iterations] (default 1000000).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/arena.h"
#include "sip/digest.h"
#include "sip/msg.h"
#include "sip/uri.h"

static const char register_msg[] =
    "REGISTER sip:example.com SIP/2.0\r\n"
    "Via: SIP/2.0/TCP 192.0.2.10:50612;branch=z9hG4bK776asdhds;rport\r\n"
    "Max-Forwards: 70\r\n"
    "To: <sip:100@example.com>\r\n"
    "From: \"Alice\" <sip:100@example.com>;tag=456248\r\n"
    "Call-ID: 843817637684230@998sdasdh09\r\n"
    "CSeq: 1826 REGISTER\r\n"
    "Contact: <sip:100@192.0.2.10:50612;transport=tcp;pn-provider=apns;"
    "pn-param=ABCD1234.com.example.voip;pn-prid=00fc13adff785122b4ad28809a3"
    "420982341241421348097878e577c991de8f0>;+sip.instance=\"<urn:uuid:"
    "00000000-0000-1000-8000-AABBCCDDEEFF>\";reg-id=1;expires=600\r\n"
    "Supported: outbound, path, gruu\r\n"
    "User-Agent: LinphoneiOS/5.1.0 (iPhone) LinphoneSDK/5.1.0\r\n"
    "Authorization: Digest username=\"100\", realm=\"example.com\", "
    "nonce=\"5a1f0b2c\", uri=\"sip:example.com\", "
    "response=\"7c6be37167ef6f7c3a243c47490d29f2\", algorithm=MD5, "
    "cnonce=\"0a4f113b\", qop=auth, nc=00000001\r\n"
    "Expires: 600\r\n"
    "Content-Length: 0\r\n"
    "\r\n";

static const char invite_msg[] =
    "INVITE sip:100@pbx.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK74bf9;received=203.0."
    "113.5\r\n"
    "Via: SIP/2.0/TCP 198.51.100.7:5060;branch=z9hG4bKnashds8\r\n"
    "Via: SIP/2.0/UDP 192.0.2.44:5062;branch=z9hG4bK1e4a;rport=5062\r\n"
    "Record-Route: <sip:203.0.113.5;lr>\r\n"
    "Record-Route: <sip:198.51.100.7;lr;transport=tcp>\r\n"
    "Max-Forwards: 68\r\n"
    "From: \"Bob\" <sip:101@pbx.example.com>;tag=9fxced76sl\r\n"
    "To: <sip:100@pbx.example.com>\r\n"
    "Call-ID: 3848276298220188511@192.0.2.44\r\n"
    "CSeq: 2 INVITE\r\n"
    "Contact: <sip:101@192.0.2.44:5062;transport=udp>\r\n"
    "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, NOTIFY\r\n"
    "Supported: replaces, timer, 100rel\r\n"
    "User-Agent: baresip v1.0.0 (x86_64/linux)\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 207\r\n"
    "\r\n"
    "v=0\r\n"
    "o=bob 2890844526 2890844526 IN IP4 192.0.2.44\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.44\r\n"
    "t=0 0\r\n"
    "m=audio 49170 RTP/AVP 0 8 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=sendrecv\r\n";

static volatile size_t sink;

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
lazy_register(const struct sip_msg *m)
{
    struct sip_error err;
    struct sip_contact c;
    struct sip_uri u;
    struct sip_auth au;
    struct slice v;
    const char *why;
    const struct sip_hdr *h = sip_msg_hdr(m, SIP_HDR_CONTACT);
    const struct sip_hdr *auth = sip_msg_hdr(m, SIP_HDR_AUTHORIZATION);

    if (!h || !auth || sip_contact_parse(h->value, &c, &err) != 0 ||
        sip_uri_parse(c.na.uri, &u, &why) != 0 ||
        !sip_uri_param(&u, "pn-prid", &v) ||
        sip_auth_parse(auth->value, &au, &why) != 0)
        return -1;
    sink += v.len + au.response.len + c.instance.len;
    return 0;
}

static int
lazy_invite(const struct sip_msg *m)
{
    struct sip_error err;
    struct sip_uri ruri, to;
    struct sip_hdr_iter it;
    struct sip_name_addr na;
    struct sip_via via;
    struct slice v;
    const char *why;

    if (sip_uri_parse(m->ruri, &ruri, &why) != 0 ||
        sip_uri_parse(m->to.uri, &to, &why) != 0)
        return -1;
    sip_hdr_iter_init(&it, m, SIP_HDR_RECORD_ROUTE);
    while (sip_hdr_iter_next(&it, &v)) {
        if (sip_name_addr_parse(v, &na, &err) != 0)
            return -1;
        sink += na.uri.len;
    }
    sip_hdr_iter_init(&it, m, SIP_HDR_VIA);
    while (sip_hdr_iter_next(&it, &v)) {
        if (sip_via_parse(v, &via, &err) != 0)
            return -1;
        sink += via.branch.len;
    }
    sink += ruri.host.len + to.user.len;
    return 0;
}

static int
run(const char *name, const char *msg, size_t len, unsigned long n,
    int (*lazy)(const struct sip_msg *))
{
    struct arena a;
    struct sip_msg m;
    struct sip_error err;

    arena_init(&a, SIP_MSG_ARENA_CAP);
    for (int pass = 0; pass < 2; pass++) {
        double t0 = now_s();
        for (unsigned long i = 0; i < n; i++) {
            arena_reset(&a);
            if (sip_msg_parse(&m, msg, len, &a, &err) != 0 ||
                (pass == 1 && lazy(&m) != 0)) {
                fprintf(stderr, "%s: parse failed: %s\n", name,
                        err.reason ? err.reason : "lazy parse");
                arena_fini(&a);
                return -1;
            }
            sink += m.hdr_count;
        }
        double dt = now_s() - t0;
        printf("%-8s %-13s %4zu bytes  %10.0f msg/s  %7.1f ns/msg\n", name,
               pass ? "parse+lazy" : "parse", len, (double)n / dt,
               dt * 1e9 / (double)n);
    }
    arena_fini(&a);
    return 0;
}

int
main(int argc, char **argv)
{
    unsigned long n = 1000000;

    if (argc > 1) {
        char *end;
        n = strtoul(argv[1], &end, 10);
        if (*end || n == 0) {
            fprintf(stderr, "usage: %s [iterations]\n", argv[0]);
            return 2;
        }
    }
#ifdef PUSHPBX_SANITIZE
    fprintf(stderr, "warning: sanitizer build, figures are meaningless\n");
#endif
    printf("%lu iterations per row\n", n);
    if (run("REGISTER", register_msg, sizeof(register_msg) - 1, n,
            lazy_register) != 0 ||
        run("INVITE", invite_msg, sizeof(invite_msg) - 1, n, lazy_invite) != 0)
        return 1;
    return 0;
}
