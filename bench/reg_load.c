/*
 * reg_load: REGISTER load driver over UDP for bench/million-bench.py
 * (issue [perf] item 2: REGISTER/s with 1,000 vs 1,000,000 resident
 * bindings, the same driver both times).
 *
 * Closed loop: -c registrations in flight, each the whole exchange of a
 * phone refreshing its push binding (REGISTER, 401 with a digest
 * challenge, REGISTER with MD5 qop=auth credentials, 200). Users are
 * extensions FIRST..FIRST+N-1 with password "<prefix><user>", taken round
 * robin; each keeps its Call-ID and raises its CSeq, and its Contact
 * carries the APNs push parameters million-bench.py stored for it
 * (bench_token, bench_instance below), so a refresh changes neither the
 * binding's key nor the push device: the steady state of a million
 * phones. Spread over -s sockets so that SO_REUSEPORT spreads them over
 * the workers.
 *
 * Runs -w seconds of warm-up, then counts the 200s of -d seconds and
 * prints "registrations/s R" plus p50/p99 of the first REGISTER -> 200.
 * A registration without an answer for 2 s is counted lost and started
 * again. Loopback only (the target must be in 127.0.0.0/8); bounded by
 * -w + -d + 5 s.
 *
 *   reg_load -t 127.0.0.1:5080 -u 1000000 -n 1000 -c 64 -d 10 -D pbx.bench
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/arena.h"
#include "base/slice.h"
#include "sip/digest.h"
#include "sip/msg.h"

#define MAX_SOCKS 16
#define HIST_US 50
#define HIST_N 20000 /* 1 s */

struct user {
    uint32_t cseq;
    int slot; /* in flight in this slot, or -1 */
};

struct slot {
    unsigned user; /* index into users */
    int sock;
    double started, sent;
    bool active;
};

static struct {
    struct sockaddr_in target;
    unsigned first, count, inflight, secs, warm, nsocks;
    const char *domain, *pw_prefix;
} opt = {.count = 1000, .inflight = 64, .secs = 10, .warm = 2, .nsocks = 4,
         .domain = "pbx.bench", .pw_prefix = "pw"};

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned long
num(const char *s)
{
    unsigned long long v;
    if (slice_to_u64(slice_cstr(s), 100000000, &v) < 0) {
        fprintf(stderr, "reg_load: bad number %s\n", s);
        exit(2);
    }
    return (unsigned long)v;
}

static uint64_t
splitmix64(uint64_t x)
{
    uint64_t z = x + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The push token and instance million-bench.py stores for user u: 64 hex
 * digits that look random, as APNs tokens do. */
static void
bench_token(unsigned u, char *out, size_t cap)
{
    uint64_t x = (uint64_t)u * 4;
    snprintf(out, cap, "%016llx%016llx%016llx%016llx",
             (unsigned long long)splitmix64(x),
             (unsigned long long)splitmix64(x + 1),
             (unsigned long long)splitmix64(x + 2),
             (unsigned long long)splitmix64(x + 3));
}

static void
bench_instance(unsigned u, char *out, size_t cap)
{
    snprintf(out, cap, "urn:uuid:00000000-0000-4000-8000-%012u", u);
}

static int socks[MAX_SOCKS];
static struct user *users;
static struct slot *slots;
static unsigned next_user;
static uint64_t hist[HIST_N + 1];
static uint64_t ok_count, lost, other;
static bool counting;

static void
send_register(unsigned si, const char *authz)
{
    struct slot *s = &slots[si];
    unsigned u = opt.first + s->user;
    char msg[2048], tok[80], inst[64];
    struct sockaddr_in me;
    socklen_t ml = sizeof(me);

    getsockname(socks[s->sock], (struct sockaddr *)&me, &ml);
    bench_token(u, tok, sizeof(tok));
    bench_instance(u, inst, sizeof(inst));
    uint32_t cseq = ++users[s->user].cseq;
    int n = snprintf(
        msg, sizeof(msg),
        "REGISTER sip:%s SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKrl%u.%u;rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:%u@%s>;tag=rl%u\r\n"
        "To: <sip:%u@%s>\r\n"
        "Call-ID: rl-%u@bench\r\n"
        "CSeq: %u REGISTER\r\n"
        "Contact: <sip:%u@127.0.0.1:%u;pn-provider=apns;pn-prid=%s;"
        "pn-param=DEMOTEAM01.com.example.pushpbx.voip>;"
        "+sip.instance=\"<%s>\"\r\n"
        "Expires: 3600\r\n"
        "User-Agent: reg_load (pushpbx bench)\r\n"
        "%s"
        "Content-Length: 0\r\n\r\n",
        opt.domain, ntohs(me.sin_port), u, cseq, u, opt.domain, u, u,
        opt.domain, u, cseq, u, ntohs(me.sin_port), tok, inst, authz);
    s->sent = now_s();
    if (sendto(socks[s->sock], msg, (size_t)n, 0,
               (struct sockaddr *)&opt.target, sizeof(opt.target)) < 0 &&
        errno != EAGAIN)
        perror("sendto");
}

static void
start_slot(unsigned si)
{
    struct slot *s = &slots[si];

    /* the next user not already in flight */
    for (unsigned k = 0; k < opt.count; k++) {
        unsigned u = next_user++ % opt.count;
        if (users[u].slot < 0) {
            s->user = u;
            break;
        }
    }
    users[s->user].slot = (int)si;
    s->active = true;
    s->started = now_s();
    send_register(si, "");
}

static void
finish_slot(unsigned si, bool ok)
{
    struct slot *s = &slots[si];

    users[s->user].slot = -1;
    s->active = false;
    if (counting) {
        if (ok) {
            ok_count++;
            size_t b = (size_t)((now_s() - s->started) * 1e6 / HIST_US);
            hist[b < HIST_N ? b : HIST_N]++;
        } else {
            other++;
        }
    }
    start_slot(si);
}

static void
on_datagram(const char *buf, size_t len, struct arena *a)
{
    struct sip_msg m;
    struct sip_error err;

    arena_reset(a);
    if (sip_msg_parse(&m, buf, len, a, &err) < 0 || m.is_request)
        return;
    /* Call-ID rl-<user>@bench */
    const char *p = m.call_id.ptr + 3;
    unsigned long long u = 0;
    const char *at = memchr(p, '@', m.call_id.len > 3 ? m.call_id.len - 3 : 0);
    if (m.call_id.len < 4 || !at ||
        slice_to_u64((struct slice){p, (size_t)(at - p)}, UINT32_MAX, &u) <
            0 ||
        u < opt.first || u - opt.first >= opt.count)
        return;
    struct user *us = &users[u - opt.first];
    if (us->slot < 0 || m.cseq.num != us->cseq)
        return; /* late answer of a restarted registration */
    unsigned si = (unsigned)us->slot;
    if (m.status == 401) {
        const struct sip_hdr *h = sip_msg_hdr(&m, SIP_HDR_WWW_AUTHENTICATE);
        struct sip_auth ch;
        const char *why;
        char user[16], pw[64], ha1[65], resp[65], nonce[160], authz[640];
        if (!h || sip_auth_parse(h->value, &ch, &why) < 0) {
            finish_slot(si, false);
            return;
        }
        slice_to_cstr(ch.nonce, nonce, sizeof(nonce));
        snprintf(user, sizeof(user), "%llu", u);
        snprintf(pw, sizeof(pw), "%s%llu", opt.pw_prefix, u);
        char ruri[160];
        snprintf(ruri, sizeof(ruri), "sip:%s", opt.domain);
        sip_digest_ha1(SIP_DIGEST_MD5, slice_cstr(user), ch.realm,
                       slice_cstr(pw), ha1);
        if (sip_digest_response(SIP_DIGEST_MD5, slice_cstr(ha1), ch.nonce,
                                SLICE_LIT("00000001"), SLICE_LIT("0a4f113b"),
                                SLICE_LIT("auth"), SLICE_LIT("REGISTER"),
                                slice_cstr(ruri), SLICE_NULL, resp) < 0) {
            finish_slot(si, false);
            return;
        }
        snprintf(authz, sizeof(authz),
                 "Authorization: Digest username=\"%s\", realm=\"" SLICE_FMT
                 "\", nonce=\"%s\", uri=\"%s\", response=\"%s\", "
                 "algorithm=MD5, cnonce=\"0a4f113b\", qop=auth, "
                 "nc=00000001\r\n",
                 user, SLICE_ARG(ch.realm), nonce, ruri, resp);
        send_register(si, authz);
        return;
    }
    if (m.status >= 200)
        finish_slot(si, m.status == 200);
}

int
main(int argc, char **argv)
{
    int o;
    char host[64] = "";

    while ((o = getopt(argc, argv, "t:u:n:c:d:w:s:D:p:")) != -1) {
        switch (o) {
        case 't': {
            const char *colon = strrchr(optarg, ':');
            if (!colon || (size_t)(colon - optarg) >= sizeof(host))
                return 2;
            memcpy(host, optarg, (size_t)(colon - optarg));
            opt.target.sin_family = AF_INET;
            opt.target.sin_port = htons((uint16_t)num(colon + 1));
            if (inet_pton(AF_INET, host, &opt.target.sin_addr) != 1 ||
                (ntohl(opt.target.sin_addr.s_addr) >> 24) != 127) {
                fprintf(stderr, "reg_load: target must be 127.x.x.x\n");
                return 2;
            }
            break;
        }
        case 'u': opt.first = (unsigned)num(optarg); break;
        case 'n': opt.count = (unsigned)num(optarg); break;
        case 'c': opt.inflight = (unsigned)num(optarg); break;
        case 'd': opt.secs = (unsigned)num(optarg); break;
        case 'w': opt.warm = (unsigned)num(optarg); break;
        case 's': opt.nsocks = (unsigned)num(optarg); break;
        case 'D': opt.domain = optarg; break;
        case 'p': opt.pw_prefix = optarg; break;
        default:
            fprintf(stderr, "usage: reg_load -t 127.0.0.1:PORT -u FIRST -n "
                            "COUNT [-c inflight] [-d secs] [-w warmup] [-s "
                            "sockets] [-D domain] [-p pwprefix]\n");
            return 2;
        }
    }
    if (!host[0] || opt.count == 0 || opt.inflight == 0 || opt.nsocks == 0 ||
        opt.nsocks > MAX_SOCKS || opt.inflight > opt.count) {
        fprintf(stderr, "reg_load: need -t, and 1 <= -c <= -n, -s <= 16\n");
        return 2;
    }
    users = calloc(opt.count, sizeof(*users));
    slots = calloc(opt.inflight, sizeof(*slots));
    if (!users || !slots)
        return 1;
    for (unsigned i = 0; i < opt.count; i++)
        users[i].slot = -1;
    struct pollfd pfd[MAX_SOCKS];
    for (unsigned i = 0; i < opt.nsocks; i++) {
        struct sockaddr_in lo = {.sin_family = AF_INET};
        int rb = 4 << 20;
        lo.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socks[i] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        if (socks[i] < 0 ||
            bind(socks[i], (struct sockaddr *)&lo, sizeof(lo)) < 0) {
            perror("socket");
            return 1;
        }
        setsockopt(socks[i], SOL_SOCKET, SO_RCVBUF, &rb, sizeof(rb));
        pfd[i] = (struct pollfd){.fd = socks[i], .events = POLLIN};
    }
    struct arena a;
    arena_init(&a, SIP_MSG_ARENA_CAP);
    for (unsigned i = 0; i < opt.inflight; i++) {
        slots[i].sock = (int)(i % opt.nsocks);
        start_slot(i);
    }
    double t0 = now_s(), t_count = t0 + opt.warm,
           t_end = t_count + opt.secs, last_sweep = t0;
    char buf[65536];
    for (;;) {
        double t = now_s();
        if (!counting && t >= t_count) {
            counting = true;
            t_count = t;
        }
        if (t >= t_end)
            break;
        if (poll(pfd, opt.nsocks, 100) < 0 && errno != EINTR)
            break;
        for (unsigned i = 0; i < opt.nsocks; i++) {
            if (!(pfd[i].revents & POLLIN))
                continue;
            for (int k = 0; k < 64; k++) {
                ssize_t n = recv(socks[i], buf, sizeof(buf) - 1, 0);
                if (n <= 0)
                    break;
                on_datagram(buf, (size_t)n, &a);
            }
        }
        if (t - last_sweep > 0.5) {
            last_sweep = t;
            for (unsigned i = 0; i < opt.inflight; i++)
                if (slots[i].active && t - slots[i].sent > 2.0) {
                    if (counting)
                        lost++;
                    users[slots[i].user].slot = -1;
                    start_slot(i);
                }
        }
    }
    double secs = now_s() - t_count;
    uint64_t seen = 0, p50 = 0, p99 = 0;
    for (size_t b = 0; b <= HIST_N; b++) {
        seen += hist[b];
        if (!p50 && seen * 2 >= ok_count)
            p50 = b + 1;
        if (!p99 && seen * 100 >= ok_count * 99)
            p99 = b + 1;
    }
    printf("registrations/s %.0f ok %llu failed %llu lost %llu p50_ms %.2f "
           "p99_ms %.2f users %u inflight %u\n",
           ok_count / secs, (unsigned long long)ok_count,
           (unsigned long long)other, (unsigned long long)lost,
           p50 * HIST_US / 1000.0, p99 * HIST_US / 1000.0, opt.count,
           opt.inflight);
    arena_fini(&a);
    free(users);
    free(slots);
    return ok_count ? 0 : 1;
}
