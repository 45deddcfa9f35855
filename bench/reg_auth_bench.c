/*
 * reg_auth_bench: does a wrong password cost the registrar the same time
 * for an existing extension as for an unknown one? (A difference tells a
 * scanner which extensions exist, issue [hardening] item 4.)
 *
 * One registrar, extension 100, throttle off. A 401 gives a nonce; then
 * two REGISTERs are parsed once and handed to reg_handle() N times each,
 * interleaved: a wrong password for 100 and a (wrong) password for the
 * unknown 999, per algorithm (SHA-256 and MD5). Only reg_handle() is
 * timed; the median and mean per request are printed in µs.
 *
 *   build-rel/bench/reg_auth_bench [N]      (default 200000)
 *
 * Release build only: sanitizer builds measure the sanitizer.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/arena.h"
#include "base/buf.h"
#include "registrar/reg.h"
#include "sip/digest.h"
#include "sip/msg.h"

#define DOMAIN "pbx.bench"

static int64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int
cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Build and parse a REGISTER for user (auth with a wrong password when
 * nonce is given). msg must outlive m. */
static int
build(const char *user, const char *alg, const char *nonce, char *msg,
      size_t cap, struct arena *a, struct sip_msg *m)
{
    char auth[512] = "";

    if (nonce) {
        enum sip_digest_alg da = sip_digest_alg_parse(slice_cstr(alg));
        char ha1[65], resp[65];
        sip_digest_ha1(da, slice_cstr(user), SLICE_LIT(DOMAIN),
                       SLICE_LIT("not-the-password"), ha1);
        if (sip_digest_response(da, slice_cstr(ha1), slice_cstr(nonce),
                                SLICE_LIT("00000001"), SLICE_LIT("0a4f113b"),
                                SLICE_LIT("auth"), SLICE_LIT("REGISTER"),
                                SLICE_LIT("sip:" DOMAIN), SLICE_NULL, resp) < 0)
            return -1;
        snprintf(auth, sizeof(auth),
                 "Authorization: Digest username=\"%s\", realm=\"" DOMAIN
                 "\", nonce=\"%s\", uri=\"sip:" DOMAIN "\", response=\"%s\", "
                 "algorithm=%s, cnonce=\"0a4f113b\", qop=auth, "
                 "nc=00000001\r\n",
                 user, nonce, resp, alg);
    }
    int n = snprintf(msg, cap,
                     "REGISTER sip:" DOMAIN " SIP/2.0\r\n"
                     "Via: SIP/2.0/UDP 10.1.0.1:5062;branch=z9hG4bKb1;rport\r\n"
                     "Max-Forwards: 70\r\n"
                     "From: <sip:%s@" DOMAIN ">;tag=f1\r\n"
                     "To: <sip:%s@" DOMAIN ">\r\n"
                     "Call-ID: bench-%s\r\n"
                     "CSeq: 1 REGISTER\r\n"
                     "Contact: <sip:%s@10.1.0.1:5062>\r\n"
                     "%s"
                     "Content-Length: 0\r\n\r\n",
                     user, user, user, user, auth);
    struct sip_error err;
    return sip_msg_parse(m, msg, (size_t)n, a, &err);
}

int
main(int argc, char **argv)
{
    unsigned n = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 200000;
    struct reg_cfg cfg;
    struct reg *r;
    struct reg_src src = {.transport = REG_TP_UDP};
    struct sockaddr_in *in = (struct sockaddr_in *)&src.addr;
    struct buf rsp;

    if (n == 0 || n > 10000000) {
        fprintf(stderr, "usage: reg_auth_bench [N (1..10000000)]\n");
        return 2;
    }
    reg_cfg_defaults(&cfg);
    cfg.auth_fail_threshold = 0; /* never block: we fail on purpose */
    struct reg_opts o = {.cfg = &cfg, .domain = DOMAIN, .realm = DOMAIN};
    if (reg_new(&o, &r) < 0 ||
        reg_ext_set(r, "100", "Bench", "pw100", true, 1) < 0)
        return 1;
    in->sin_family = AF_INET;
    in->sin_port = htons(5062);
    inet_pton(AF_INET, "10.1.0.1", &in->sin_addr);
    buf_init(&rsp, 65536);

    /* A challenge for the nonce. */
    struct arena a0;
    struct sip_msg m0;
    static char msg0[4096];
    arena_init(&a0, SIP_MSG_ARENA_CAP);
    if (build("100", NULL, NULL, msg0, sizeof(msg0), &a0, &m0) < 0 ||
        reg_handle(r, &m0, &src, &rsp) != 401)
        return 1;
    struct sip_msg rm;
    struct sip_error err;
    struct sip_auth ch;
    const char *why;
    char nonce[160];
    if (sip_msg_parse(&rm, rsp.data, rsp.len, &a0, &err) < 0)
        return 1;
    const struct sip_hdr *h = sip_msg_hdr(&rm, SIP_HDR_WWW_AUTHENTICATE);
    if (!h || sip_auth_parse(h->value, &ch, &why) < 0)
        return 1;
    slice_to_cstr(ch.nonce, nonce, sizeof(nonce));

    int64_t *tk = malloc(n * sizeof(*tk)), *tu = malloc(n * sizeof(*tu));
    if (!tk || !tu)
        return 1;
    static const char *const algs[] = {"SHA-256", "MD5"};
    int rc = 0;
    for (size_t ai = 0; ai < 2; ai++) {
        static char mk_text[4096], mu_text[4096];
        struct arena ak, au;
        struct sip_msg mk, mu;
        arena_init(&ak, SIP_MSG_ARENA_CAP);
        arena_init(&au, SIP_MSG_ARENA_CAP);
        if (build("100", algs[ai], nonce, mk_text, sizeof(mk_text), &ak, &mk) <
                0 ||
            build("999", algs[ai], nonce, mu_text, sizeof(mu_text), &au, &mu) <
                0)
            return 1;
        /* Warm-up, and check both answers are the same 401. */
        for (unsigned i = 0; i < 1000; i++) {
            buf_reset(&rsp);
            int sk = reg_handle(r, &mk, &src, &rsp);
            buf_reset(&rsp);
            int su = reg_handle(r, &mu, &src, &rsp);
            if (sk != 401 || su != 401) {
                fprintf(stderr, "unexpected answers %d / %d\n", sk, su);
                return 1;
            }
        }
        double sum_k = 0, sum_u = 0;
        for (unsigned i = 0; i < n; i++) {
            buf_reset(&rsp);
            int64_t t0 = now_ns();
            reg_handle(r, &mk, &src, &rsp);
            int64_t t1 = now_ns();
            buf_reset(&rsp);
            reg_handle(r, &mu, &src, &rsp);
            int64_t t2 = now_ns();
            tk[i] = t1 - t0;
            tu[i] = t2 - t1;
            sum_k += (double)tk[i];
            sum_u += (double)tu[i];
        }
        qsort(tk, n, sizeof(*tk), cmp_i64);
        qsort(tu, n, sizeof(*tu), cmp_i64);
        printf("%-7s wrong password, existing ext: median %.2f us, mean "
               "%.2f us\n",
               algs[ai], tk[n / 2] / 1e3, sum_k / n / 1e3);
        printf("%-7s wrong password, unknown ext:  median %.2f us, mean "
               "%.2f us\n",
               algs[ai], tu[n / 2] / 1e3, sum_u / n / 1e3);
        arena_fini(&ak);
        arena_fini(&au);
    }
    free(tk);
    free(tu);
    arena_fini(&a0);
    buf_fini(&rsp);
    reg_free(r);
    return rc;
}
