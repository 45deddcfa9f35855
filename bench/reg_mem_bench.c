/*
 * reg_mem_bench: memory per registration and REGISTER handling cost of the
 * registrar, network excluded. Creates N extensions, registers one binding
 * for each through reg_handle() exactly as a phone would (REGISTER → 401 →
 * REGISTER with an MD5 digest answer → 200; Contact with RFC 8599 pn-*
 * params, +sip.instance and a User-Agent), and reports the resident memory
 * growth per extension and per binding (from /proc/self/statm) and the
 * complete registrations per second on this one thread.
 *
 *   build/bench/reg_mem_bench [N]        (default 100000)
 *
 * No store (persistence is measured by the integration tests); Release
 * build only: sanitizer builds measure the sanitizer.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/arena.h"
#include "base/buf.h"
#include "registrar/reg.h"
#include "sip/digest.h"
#include "sip/msg.h"

#define DOMAIN "pbx.bench"

static long
rss_kib(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One REGISTER through reg_handle; returns the status, and the nonce of a
 * 401 in nonce. */
static int
send_register(struct reg *r, const struct reg_src *src, unsigned ext,
              unsigned cseq, const char *nonce, char *out_nonce,
              size_t noncecap, struct buf *rsp, struct arena *a)
{
    char msg[2048], auth[512] = "";

    if (nonce) {
        char user[16], pw[24], ha1[65], resp[65];
        snprintf(user, sizeof(user), "%u", ext);
        snprintf(pw, sizeof(pw), "pw%u", ext);
        sip_digest_ha1(SIP_DIGEST_MD5, slice_cstr(user), SLICE_LIT(DOMAIN),
                       slice_cstr(pw), ha1);
        if (sip_digest_response(SIP_DIGEST_MD5, slice_cstr(ha1),
                                slice_cstr(nonce), SLICE_LIT("00000001"),
                                SLICE_LIT("0a4f113b"), SLICE_LIT("auth"),
                                SLICE_LIT("REGISTER"), SLICE_LIT("sip:" DOMAIN),
                                SLICE_NULL, resp) < 0)
            return -1;
        snprintf(auth, sizeof(auth),
                 "Authorization: Digest username=\"%u\", realm=\"" DOMAIN
                 "\", nonce=\"%s\", uri=\"sip:" DOMAIN "\", response=\"%s\", "
                 "algorithm=MD5, cnonce=\"0a4f113b\", qop=auth, "
                 "nc=00000001\r\n",
                 ext, nonce, resp);
    }
    int n = snprintf(
        msg, sizeof(msg),
        "REGISTER sip:" DOMAIN " SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.1.%u.%u:5062;branch=z9hG4bK%u.%u;rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:%u@" DOMAIN ">;tag=f%u\r\n"
        "To: <sip:%u@" DOMAIN ">\r\n"
        "Call-ID: reg-%u@bench\r\n"
        "CSeq: %u REGISTER\r\n"
        "Contact: <sip:%u@10.1.%u.%u:5062;transport=udp;pn-provider=fcm;"
        "pn-param=pushpbx-bench;pn-prid=dGVzdC10b2tlbi0%08u:APA91bHq>;"
        "+sip.instance=\"<urn:uuid:00000000-0000-4000-8000-%012u>\"\r\n"
        "Expires: 3600\r\n"
        "User-Agent: LinphoneAndroid/5.1 (bench) LinphoneSDK/5.1\r\n"
        "%s"
        "Content-Length: 0\r\n\r\n",
        (ext >> 8) & 255, ext & 255, ext, cseq, ext, ext, ext, ext, cseq, ext,
        (ext >> 8) & 255, ext & 255, ext, ext, auth);
    struct sip_msg m;
    struct sip_error err;

    arena_reset(a);
    if (sip_msg_parse(&m, msg, (size_t)n, a, &err) < 0)
        return -1;
    buf_reset(rsp);
    int status = reg_handle(r, &m, src, rsp);
    if (status == 401 && out_nonce) {
        struct sip_msg rm;
        struct sip_auth ch;
        const char *why;
        if (sip_msg_parse(&rm, rsp->data, rsp->len, a, &err) < 0)
            return -1;
        const struct sip_hdr *h = sip_msg_hdr(&rm, SIP_HDR_WWW_AUTHENTICATE);
        if (!h || sip_auth_parse(h->value, &ch, &why) < 0)
            return -1;
        slice_to_cstr(ch.nonce, out_nonce, noncecap);
    }
    return status;
}

int
main(int argc, char **argv)
{
    unsigned n = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 100000;
    struct reg_cfg cfg;
    struct reg *r;
    struct reg_src src = {.transport = REG_TP_UDP};
    struct sockaddr_in *in = (struct sockaddr_in *)&src.addr;
    struct buf rsp;
    struct arena a;
    char nonce[160];

    if (n == 0 || n > 10000000) {
        fprintf(stderr, "usage: reg_mem_bench [N (1..10000000)]\n");
        return 2;
    }
    reg_cfg_defaults(&cfg);
    cfg.algorithms = REG_ALGS_MD5;
    cfg.max_expires_s = 7200;
    struct reg_opts o = {.cfg = &cfg, .domain = DOMAIN, .realm = DOMAIN};
    if (reg_new(&o, &r) < 0)
        return 1;
    in->sin_family = AF_INET;
    in->sin_port = htons(5062);
    inet_pton(AF_INET, "10.1.0.1", &in->sin_addr);
    buf_init(&rsp, 65536);
    arena_init(&a, SIP_MSG_ARENA_CAP);

    long rss0 = rss_kib();
    for (unsigned i = 0; i < n; i++) {
        char num[16], pw[24];
        snprintf(num, sizeof(num), "%u", 100000 + i);
        snprintf(pw, sizeof(pw), "pw%u", 100000 + i);
        if (reg_ext_set(r, num, "Bench User", pw, true, 1) < 0) {
            fprintf(stderr, "reg_ext_set %s failed\n", num);
            return 1;
        }
    }
    long rss1 = rss_kib();
    double t0 = now_s();
    for (unsigned i = 0; i < n; i++) {
        unsigned ext = 100000 + i;
        /* Each phone its own source address, as on a real network (the
         * throttle counts failures per address; there are none here). */
        in->sin_addr.s_addr = htonl(0x0a010000u | (i & 0xffff));
        if (send_register(r, &src, ext, 1, NULL, nonce, sizeof(nonce), &rsp,
                          &a) != 401 ||
            send_register(r, &src, ext, 2, nonce, NULL, 0, &rsp, &a) != 200) {
            fprintf(stderr, "registration of %u failed:\n%s\n", ext, rsp.data);
            return 1;
        }
    }
    double secs = now_s() - t0;
    long rss2 = rss_kib();
    struct reg_stats st;
    reg_get_stats(r, &st);

    printf("extensions %u, bindings %zu\n", n, st.bindings);
    printf("RSS per extension          %6.0f B\n",
           (double)(rss1 - rss0) * 1024.0 / n);
    printf("RSS per binding            %6.0f B\n",
           (double)(rss2 - rss1) * 1024.0 / n);
    printf("RSS per extension+binding  %6.0f B (goal <= 1024 B)\n",
           (double)(rss2 - rss0) * 1024.0 / n);
    printf("registrations (401 + 200) %8.0f /s on one thread, %.2f us each\n",
           n / secs, secs * 1e6 / n);
    reg_free(r);
    buf_fini(&rsp);
    arena_fini(&a);
    return st.bindings == n ? 0 : 1;
}
