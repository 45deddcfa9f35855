/*
 * tls_driver: SIP-over-TLS load driver for bench/tls-bench.sh. The same
 * binary drives pushpbx and Kamailio, on loopback only.
 *
 * Modes (-m):
 *   reg   -c N long-lived TLS connections, each registering its own user
 *         (REGISTER, 401 with a digest challenge, REGISTER with MD5
 *         qop=auth credentials, 200) over and over on the same connection
 *         for -d seconds, after all N are connected and registered once.
 *         One "registration" is the whole REGISTER/401/REGISTER/200
 *         exchange (2 transactions), as in the shared SIPp UDP bench.
 *         Prints registrations/s and the p50/p99 of first REGISTER -> 200.
 *   hs    keeps -c handshakes in flight for -d seconds: connect, full
 *         handshake (no session resumption), close_notify, close with RST
 *         (no TIME_WAIT to exhaust the ports). Prints handshakes/s.
 *   idle  opens -c connections, registers each once, then holds them for
 *         -d seconds; with -p PID (repeatable) it prints the servers' memory
 *         (sum of Pss of the PIDs and their children) before and after,
 *         per connection.
 *
 * Connections are spread over -P processes (fork) so that each stays under
 * its RLIMIT_NOFILE, and over -s source addresses 127.0.0.1..127.0.0.S so
 * that 100,000 connections do not run out of ephemeral ports. Every run is
 * bounded by -d and by a hard deadline (-d + 120 s); the target must be in
 * 127.0.0.0/8.
 *
 *   tls_driver -m reg -t 127.0.0.1:5061 -c 200 -d 10 -u 100000 -n 20000
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

enum mode { M_REG, M_HS, M_IDLE };
enum state { S_CONNECTING, S_HANDSHAKE, S_WAIT, S_IDLE };

#define HIST_US 100    /* histogram bucket width */
#define HIST_N 100000  /* 10 s */
#define INBUF 8192

struct conn {
    int fd;
    SSL *ssl;
    enum state st;
    unsigned user;
    unsigned cseq;
    unsigned idx;
    int lport;
    int round; /* 1: waiting for the 401, 2: waiting for the 200 */
    uint64_t t_start;
    char call_id[48];
    size_t in_len;
    char in[INBUF];
};

/* Counters of one process, sent to the parent through a pipe. */
struct stats {
    uint64_t regs;        /* complete registrations in the window */
    uint64_t reqs;        /* REGISTER requests answered in the window */
    uint64_t handshakes;  /* full handshakes in the window */
    uint64_t errors;      /* connections lost, bad answers */
    uint64_t connected;   /* connections up (idle/reg set-up) */
    uint64_t setup_us;    /* time to connect+register all */
    uint64_t window_us;
    uint32_t hist[HIST_N + 1];
};

static struct {
    enum mode mode;
    struct sockaddr_in target;
    unsigned conns, duration, procs, sources, user_first, user_count;
    const char *pw_prefix, *tls_version;
    pid_t pids[16];
    unsigned npids;
    unsigned inflight; /* handshakes being set up at once (reg/idle) */
} opt = {.conns = 100,
         .duration = 10,
         .procs = 1,
         .sources = 1,
         .user_first = 100000,
         .user_count = 20000,
         .pw_prefix = "pw",
         .tls_version = "1.2",
         .inflight = 200};

static SSL_CTX *ctx;
static int ep;
static struct stats st;
static bool measuring;
static unsigned live, pending_setup;

static void
die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "tls_driver: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

/* A decimal number at the start of s (0 when none). */
static unsigned long
num(const char *s)
{
    return strtoul(s, NULL, 10);
}

static uint64_t
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void
md5_hex(const char *s, size_t n, char out[33])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;

    EVP_Digest(s, n, d, &dl, EVP_md5(), NULL);
    for (unsigned i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* The value of param NAME in a Digest challenge (quoted or not). */
static bool
digest_param(const char *hdr, const char *end, const char *name, char *out,
             size_t cap)
{
    size_t nl = strlen(name);

    for (const char *p = hdr; p + nl < end; p++) {
        if (strncasecmp(p, name, nl) != 0 || p[nl] != '=')
            continue;
        if (p > hdr && p[-1] != ' ' && p[-1] != ',' && p[-1] != '\t')
            continue;
        p += nl + 1;
        bool q = *p == '"';
        if (q)
            p++;
        size_t i = 0;
        while (p < end && i + 1 < cap &&
               (q ? *p != '"' : (*p != ',' && *p != '\r' && *p != ' ')))
            out[i++] = *p++;
        out[i] = 0;
        return true;
    }
    return false;
}

static const char *
find_header(const char *msg, const char *end, const char *name)
{
    size_t nl = strlen(name);

    for (const char *p = msg; p && p + nl < end;) {
        p = memchr(p, '\n', (size_t)(end - p));
        if (!p)
            return NULL;
        p++;
        if (p + nl < end && strncasecmp(p, name, nl) == 0 && p[nl] == ':')
            return p + nl + 1;
    }
    return NULL;
}

static void conn_close(struct conn *c, bool error);
static void conn_start(unsigned idx);

static bool
conn_send(struct conn *c, const char *buf, int len)
{
    int n = SSL_write(c->ssl, buf, len);

    if (n != len) {
        /* Small messages into a loopback socket with room: anything else
         * is an error for this benchmark. */
        conn_close(c, true);
        return false;
    }
    return true;
}

static void
send_register(struct conn *c, const char *auth)
{
    char buf[2048];
    char host[16];
    int port = ntohs(opt.target.sin_port);
    uint32_t self = ntohl(opt.target.sin_addr.s_addr);

    snprintf(host, sizeof(host), "%u.%u.%u.%u", self >> 24, (self >> 16) & 255,
             (self >> 8) & 255, self & 255);
    c->cseq++;
    int n = snprintf(
        buf, sizeof(buf),
        "REGISTER sip:%s:%d SIP/2.0\r\n"
        "Via: SIP/2.0/TLS 127.0.0.1:%d;branch=z9hG4bK-%u-%u-%u;rport;alias\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:%u@%s>;tag=t%u\r\n"
        "To: <sip:%u@%s>\r\n"
        "Call-ID: %s\r\n"
        "CSeq: %u REGISTER\r\n"
        "Contact: <sip:%u@127.0.0.1:%d;transport=tls>\r\n"
        "Expires: 3600\r\n"
        "User-Agent: tls_driver\r\n"
        "%s"
        "Content-Length: 0\r\n\r\n",
        host, port, c->lport, (unsigned)getpid(), c->idx, c->cseq, c->user,
        host, c->idx, c->user, host, c->call_id, c->cseq, c->user, c->lport,
        auth ? auth : "");
    conn_send(c, buf, n);
}

static void
answer_challenge(struct conn *c, const char *msg, const char *end)
{
    const char *h = find_header(msg, end, "WWW-Authenticate");
    char realm[128], nonce[256], opaque[256], qop[64], pw[64], user[16];
    char a1[512], ha1[33], a2[256], ha2[33], r[1024], resp[33];
    char cnonce[17], auth[1400], uri[64];
    const char *eol;

    if (!h) {
        conn_close(c, true);
        return;
    }
    eol = memchr(h, '\n', (size_t)(end - h));
    if (!eol)
        eol = end;
    if (!digest_param(h, eol, "realm", realm, sizeof(realm)) ||
        !digest_param(h, eol, "nonce", nonce, sizeof(nonce))) {
        conn_close(c, true);
        return;
    }
    bool has_opaque = digest_param(h, eol, "opaque", opaque, sizeof(opaque));
    bool has_qop = digest_param(h, eol, "qop", qop, sizeof(qop));
    uint32_t self = ntohl(opt.target.sin_addr.s_addr);
    snprintf(uri, sizeof(uri), "sip:%u.%u.%u.%u:%d", self >> 24,
             (self >> 16) & 255, (self >> 8) & 255, self & 255,
             ntohs(opt.target.sin_port));
    snprintf(user, sizeof(user), "%u", c->user);
    snprintf(pw, sizeof(pw), "%s%u", opt.pw_prefix, c->user);
    md5_hex(a1, (size_t)snprintf(a1, sizeof(a1), "%s:%s:%s", user, realm, pw),
            ha1);
    md5_hex(a2, (size_t)snprintf(a2, sizeof(a2), "REGISTER:%s", uri), ha2);
    snprintf(cnonce, sizeof(cnonce), "%08x%08x", (unsigned)random(),
             c->cseq);
    if (has_qop)
        md5_hex(r,
                (size_t)snprintf(r, sizeof(r), "%s:%s:00000001:%s:auth:%s",
                                 ha1, nonce, cnonce, ha2),
                resp);
    else
        md5_hex(r, (size_t)snprintf(r, sizeof(r), "%s:%s:%s", ha1, nonce, ha2),
                resp);
    int n = snprintf(auth, sizeof(auth),
                     "Authorization: Digest username=\"%s\", realm=\"%s\", "
                     "nonce=\"%s\", uri=\"%s\", response=\"%s\", "
                     "algorithm=MD5",
                     user, realm, nonce, uri, resp);
    if (has_qop)
        n += snprintf(auth + n, sizeof(auth) - (size_t)n,
                      ", qop=auth, nc=00000001, cnonce=\"%s\"", cnonce);
    if (has_opaque)
        n += snprintf(auth + n, sizeof(auth) - (size_t)n, ", opaque=\"%s\"",
                      opaque);
    snprintf(auth + n, sizeof(auth) - (size_t)n, "\r\n");
    send_register(c, auth);
}

static void
start_registration(struct conn *c)
{
    c->round = 1;
    c->t_start = now_us();
    send_register(c, NULL);
}

/* One complete response in c->in[0..len). */
static void
on_response(struct conn *c, const char *msg, size_t len)
{
    const char *end = msg + len;
    int code;

    if (len < 12 || strncmp(msg, "SIP/2.0 ", 8) != 0) {
        conn_close(c, true);
        return;
    }
    code = (int)num(msg + 8);
    if (code < 200)
        return; /* provisional: wait on */
    if (measuring)
        st.reqs++;
    if (code == 401 && c->round == 1) {
        c->round = 2;
        answer_challenge(c, msg, end);
        return;
    }
    if (code != 200 || c->round != 2) {
        fprintf(stderr, "tls_driver: user %u: unexpected %d\n", c->user,
                code);
        conn_close(c, true);
        return;
    }
    uint64_t dt = now_us() - c->t_start;
    if (measuring) {
        st.regs++;
        uint64_t b = dt / HIST_US;
        st.hist[b > HIST_N ? HIST_N : b]++;
    }
    if (c->st != S_IDLE && (opt.mode == M_IDLE || !measuring)) {
        /* first registration done: set-up counts it */
        c->st = S_IDLE;
        st.connected++;
        pending_setup--;
        if (opt.mode == M_IDLE)
            return;
    }
    if (measuring && opt.mode == M_REG)
        start_registration(c);
}

static void
on_readable(struct conn *c)
{
    for (;;) {
        if (c->in_len >= sizeof(c->in)) {
            conn_close(c, true);
            return;
        }
        int n = SSL_read(c->ssl, c->in + c->in_len,
                         (int)(sizeof(c->in) - c->in_len));
        if (n <= 0) {
            int e = SSL_get_error(c->ssl, n);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return;
            conn_close(c, true);
            return;
        }
        c->in_len += (size_t)n;
        for (;;) {
            char *hend = memmem(c->in, c->in_len, "\r\n\r\n", 4);
            if (!hend)
                break;
            size_t hl = (size_t)(hend - c->in) + 4, body = 0;
            const char *cl = find_header(c->in, hend, "Content-Length");
            if (!cl)
                cl = find_header(c->in, hend, "l");
            if (cl)
                body = strtoul(cl, NULL, 10);
            if (c->in_len < hl + body)
                break;
            int fd = c->fd;
            on_response(c, c->in, hl + body);
            if (c->fd != fd || c->fd < 0)
                return; /* closed */
            memmove(c->in, c->in + hl + body, c->in_len - hl - body);
            c->in_len -= hl + body;
        }
    }
}

static struct conn *conns;

static void
conn_close(struct conn *c, bool error)
{
    struct linger lg = {1, 0};

    if (c->fd < 0)
        return;
    if (error) {
        st.errors++;
        if (c->st != S_IDLE && opt.mode != M_HS && !measuring)
            pending_setup--;
    }
    if (c->ssl) {
        if (!error)
            SSL_shutdown(c->ssl); /* close_notify */
        SSL_free(c->ssl);
    }
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(c->fd);
    c->ssl = NULL;
    c->fd = -1;
    live--;
}

static void
handshake_step(struct conn *c)
{
    int r = SSL_do_handshake(c->ssl);
    struct epoll_event ev = {.data.ptr = c};

    if (r == 1) {
        if (opt.mode == M_HS) {
            if (measuring)
                st.handshakes++;
            unsigned idx = c->idx;
            conn_close(c, false);
            if (measuring)
                conn_start(idx);
            return;
        }
        c->st = S_WAIT;
        ev.events = EPOLLIN;
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        start_registration(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        ev.events = EPOLLIN;
    else if (e == SSL_ERROR_WANT_WRITE)
        ev.events = EPOLLOUT;
    else {
        char why[200];
        ERR_error_string_n(ERR_get_error(), why, sizeof(why));
        if (st.errors < 5)
            fprintf(stderr, "tls_driver: handshake: %s\n", why);
        ERR_clear_error();
        conn_close(c, true);
        return;
    }
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void
conn_start(unsigned idx)
{
    struct conn *c = &conns[idx];
    struct sockaddr_in src = {.sin_family = AF_INET};
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    int one = 1;

    c->idx = idx;
    c->in_len = 0;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket: %s (raise ulimit -n or use more -P)", strerror(errno));
    live++;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    src.sin_addr.s_addr = htonl(0x7f000001u + idx % opt.sources);
    if (opt.sources > 1) {
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
                   sizeof(one));
        if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) < 0)
            die("bind 127.0.0.%u: %s", 1 + idx % opt.sources,
                strerror(errno));
    }
    if (connect(c->fd, (struct sockaddr *)&opt.target, sizeof(opt.target)) <
            0 &&
        errno != EINPROGRESS) {
        if (st.errors < 5)
            fprintf(stderr, "tls_driver: connect: %s\n", strerror(errno));
        conn_close(c, true);
        return;
    }
    struct sockaddr_in me;
    socklen_t ml = sizeof(me);
    getsockname(c->fd, (struct sockaddr *)&me, &ml);
    c->lport = ntohs(me.sin_port);
    c->ssl = SSL_new(ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_connect_state(c->ssl);
    c->st = S_CONNECTING;
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void
on_event(struct conn *c, uint32_t events)
{
    if (c->fd < 0)
        return;
    if (c->st == S_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err || (events & (EPOLLERR | EPOLLHUP) && !(events & EPOLLOUT))) {
            if (st.errors < 5)
                fprintf(stderr, "tls_driver: connect: %s\n", strerror(err));
            conn_close(c, true);
            return;
        }
        c->st = S_HANDSHAKE;
    }
    if (c->st == S_HANDSHAKE) {
        handshake_step(c);
        return;
    }
    on_readable(c);
}

static void
loop_until(uint64_t deadline, bool (*done)(void))
{
    struct epoll_event evs[256];

    while (now_us() < deadline && !(done && done())) {
        int n = epoll_wait(ep, evs, 256, 50);
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events);
    }
}

static bool
setup_done(void)
{
    return pending_setup == 0;
}

/* One process's share: connections [first, first+n). */
static void
child_run(unsigned first, unsigned n, int out_fd, int go_fd)
{
    uint64_t t0 = now_us(), hard = t0 + (opt.duration + 120) * 1000000ull;

    ep = epoll_create1(EPOLL_CLOEXEC);
    conns = calloc(n, sizeof(*conns));
    if (!conns)
        die("out of memory");
    for (unsigned i = 0; i < n; i++) {
        conns[i].fd = -1;
        conns[i].user = opt.user_first + (first + i) % opt.user_count;
        snprintf(conns[i].call_id, sizeof(conns[i].call_id), "tlsd-%u-%u",
                 first + i, (unsigned)getpid());
    }
    if (opt.mode == M_HS) {
        char go;
        if (read(go_fd, &go, 1) != 1)
            exit(3);
        measuring = true;
        t0 = now_us();
        for (unsigned i = 0; i < n; i++)
            conn_start(i);
        loop_until(t0 + opt.duration * 1000000ull, NULL);
        st.window_us = now_us() - t0;
    } else {
        /* set-up: connect and register every connection once, with at most
         * opt.inflight set-ups at a time */
        unsigned next = 0;
        while (next < n || pending_setup > 0) {
            while (next < n && pending_setup < opt.inflight) {
                pending_setup++;
                conn_start(next++);
            }
            struct epoll_event evs[256];
            int k = epoll_wait(ep, evs, 256, 50);
            for (int i = 0; i < k; i++)
                on_event(evs[i].data.ptr, evs[i].events);
            if (now_us() > hard)
                die("set-up did not finish in time");
        }
        st.setup_us = now_us() - t0;
        /* tell the parent, wait for the go */
        if (write(out_fd, "R", 1) != 1)
            exit(3);
        char go;
        if (read(go_fd, &go, 1) != 1)
            exit(3);
        measuring = true;
        uint64_t t1 = now_us();
        if (opt.mode == M_REG)
            for (unsigned i = 0; i < n; i++)
                if (conns[i].fd >= 0)
                    start_registration(&conns[i]);
        loop_until(t1 + opt.duration * 1000000ull, NULL);
        st.window_us = now_us() - t1;
        measuring = false;
    }
    (void)setup_done;
    if (write(out_fd, &st, sizeof(st)) != (ssize_t)sizeof(st))
        exit(3);
    exit(0);
}

/* Sum of Pss (KiB) of pid and its direct children. */
static long
pss_kib(pid_t pid)
{
    long total = 0;
    char path[64], line[256];
    pid_t pids[64];
    unsigned np = 0;

    pids[np++] = pid;
    FILE *f;
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", pid, pid);
    if ((f = fopen(path, "r"))) {
        int c;
        while (np < 64 && fscanf(f, "%d", &c) == 1)
            pids[np++] = c;
        fclose(f);
    }
    for (unsigned i = 0; i < np; i++) {
        snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pids[i]);
        if (!(f = fopen(path, "r")))
            continue;
        while (fgets(line, sizeof(line), f))
            if (strncmp(line, "Pss:", 4) == 0)
                total += strtol(line + 4, NULL, 10);
        fclose(f);
    }
    return total;
}

/* CPU ticks (utime + stime) of pid and its direct children. */
static unsigned long long
cpu_ticks(pid_t pid)
{
    unsigned long long total = 0;
    char path[64], buf[1024];
    pid_t pids[64];
    unsigned np = 0;
    FILE *f;

    pids[np++] = pid;
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", pid, pid);
    if ((f = fopen(path, "r"))) {
        int c;
        while (np < 64 && fscanf(f, "%d", &c) == 1)
            pids[np++] = c;
        fclose(f);
    }
    for (unsigned i = 0; i < np; i++) {
        snprintf(path, sizeof(path), "/proc/%d/stat", pids[i]);
        if (!(f = fopen(path, "r")))
            continue;
        if (fgets(buf, sizeof(buf), f)) {
            char *p = strrchr(buf, ')');
            unsigned long long ut = 0, stt = 0;
            /* after ") ": state, then fields 4..13, utime(14) stime(15) */
            if (p) {
                char *q = p + 2;
                for (int f = 3; f < 14 && q; f++) {
                    q = strchr(q, ' ');
                    if (q)
                        q++;
                }
                if (q) {
                    char *e;
                    ut = strtoull(q, &e, 10);
                    stt = strtoull(e, NULL, 10);
                }
            }
            if (p)
                total += ut + stt;
        }
        fclose(f);
    }
    return total;
}

static unsigned long long
servers_ticks(void)
{
    unsigned long long t = 0;

    for (unsigned i = 0; i < opt.npids; i++)
        t += cpu_ticks(opt.pids[i]);
    return t;
}

static long
servers_kib(void)
{
    long t = 0;

    for (unsigned i = 0; i < opt.npids; i++)
        t += pss_kib(opt.pids[i]);
    return t;
}

static void
usage(void)
{
    fprintf(stderr,
            "usage: tls_driver -m reg|hs|idle -t 127.0.0.1:PORT [-c conns] "
            "[-d secs] [-P procs] [-s sources] [-u first_user] "
            "[-n user_count] [-w pw_prefix] [-V 1.2|1.3] [-p server_pid]...\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    int o;
    char *colon;

    while ((o = getopt(argc, argv, "m:t:c:d:P:s:u:n:w:V:p:i:")) != -1) {
        switch (o) {
        case 'm':
            opt.mode = !strcmp(optarg, "reg")    ? M_REG
                       : !strcmp(optarg, "hs")   ? M_HS
                       : !strcmp(optarg, "idle") ? M_IDLE
                                                 : (usage(), M_REG);
            break;
        case 't':
            colon = strrchr(optarg, ':');
            if (!colon)
                usage();
            *colon = 0;
            opt.target.sin_family = AF_INET;
            if (inet_pton(AF_INET, optarg, &opt.target.sin_addr) != 1)
                usage();
            opt.target.sin_port = htons((uint16_t)num(colon + 1));
            break;
        case 'c': opt.conns = (unsigned)num(optarg); break;
        case 'd': opt.duration = (unsigned)num(optarg); break;
        case 'P': opt.procs = (unsigned)num(optarg); break;
        case 's': opt.sources = (unsigned)num(optarg); break;
        case 'u': opt.user_first = (unsigned)num(optarg); break;
        case 'n': opt.user_count = (unsigned)num(optarg); break;
        case 'w': opt.pw_prefix = optarg; break;
        case 'V': opt.tls_version = optarg; break;
        case 'i': opt.inflight = (unsigned)num(optarg); break;
        case 'p':
            if (opt.npids < 16)
                opt.pids[opt.npids++] = (pid_t)num(optarg);
            break;
        default: usage();
        }
    }
    if (!opt.target.sin_port)
        usage();
    if ((ntohl(opt.target.sin_addr.s_addr) >> 24) != 127)
        die("the target must be in 127.0.0.0/8 (loopback only)");
    if (opt.procs < 1 || opt.procs > 64 || opt.sources < 1 ||
        opt.sources > 250 || opt.conns < 1 || opt.duration < 1 ||
        opt.duration > 600 || opt.user_count < 1)
        usage();

    /* descriptors: this process's share plus a margin, up to the hard
     * limit */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rlim_t want = opt.conns / opt.procs + 64;
    rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
    if (rl.rlim_cur < want)
        die("%u connections per process need %lu descriptors, the hard "
            "limit is %lu: use more -P",
            opt.conns / opt.procs, (unsigned long)want,
            (unsigned long)rl.rlim_max);
    setrlimit(RLIMIT_NOFILE, &rl);
    signal(SIGPIPE, SIG_IGN);

    ctx = SSL_CTX_new(TLS_client_method());
    int v = !strcmp(opt.tls_version, "1.3") ? TLS1_3_VERSION : TLS1_2_VERSION;
    SSL_CTX_set_min_proto_version(ctx, v);
    SSL_CTX_set_max_proto_version(ctx, v);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);

    long mem0 = servers_kib();
    /* One result pipe per process: the stats (400 KB, more than PIPE_BUF)
     * of processes writing at once into one pipe would interleave. */
    int res[64][2], go[2];
    if (pipe(go) < 0)
        die("pipe");
    pid_t kids[64];
    for (unsigned p = 0; p < opt.procs; p++) {
        unsigned first = opt.conns * p / opt.procs;
        unsigned last = opt.conns * (p + 1) / opt.procs;
        if (pipe(res[p]) < 0)
            die("pipe");
        kids[p] = fork();
        if (kids[p] < 0)
            die("fork");
        if (kids[p] == 0) {
            for (unsigned q = 0; q <= p; q++)
                close(res[q][0]);
            close(go[1]);
            srandom((unsigned)getpid());
            child_run(first, last - first, res[p][1], go[0]);
        }
        close(res[p][1]);
    }
    close(go[0]);
    uint64_t t0 = now_us();
    if (opt.mode != M_HS) {
        for (unsigned p = 0; p < opt.procs; p++) {
            char r;
            if (read(res[p][0], &r, 1) != 1)
                die("a driver process failed during set-up");
        }
        printf("set-up: %u connections connected and registered in %.1f s\n",
               opt.conns, (double)(now_us() - t0) / 1e6);
        fflush(stdout);
    }
    long mem1 = 0;
    if (opt.mode == M_IDLE && opt.npids) {
        sleep(2);
        mem1 = servers_kib();
    }
    unsigned long long cpu0 = servers_ticks();
    uint64_t tgo = now_us();
    for (unsigned p = 0; p < opt.procs; p++)
        if (write(go[1], "G", 1) != 1)
            die("write");
    struct stats *all = calloc(1, sizeof(*all));
    struct stats *one = malloc(sizeof(*one));
    double window = 0;
    for (unsigned p = 0; p < opt.procs; p++) {
        size_t got = 0;
        while (got < sizeof(*one)) {
            ssize_t k =
                read(res[p][0], (char *)one + got, sizeof(*one) - got);
            if (k <= 0)
                die("a driver process failed");
            got += (size_t)k;
        }
        all->regs += one->regs;
        all->reqs += one->reqs;
        all->handshakes += one->handshakes;
        all->errors += one->errors;
        all->connected += one->connected;
        if ((double)one->window_us / 1e6 > window)
            window = (double)one->window_us / 1e6;
        for (unsigned i = 0; i <= HIST_N; i++)
            all->hist[i] += one->hist[i];
    }
    double cpu_pct = (double)(servers_ticks() - cpu0) * 100.0 /
                     (double)sysconf(_SC_CLK_TCK) /
                     ((double)(now_us() - tgo) / 1e6);
    for (unsigned p = 0; p < opt.procs; p++)
        waitpid(kids[p], NULL, 0);
    char cpu[64] = "";
    if (opt.npids)
        snprintf(cpu, sizeof(cpu), ", server CPU %.0f %%", cpu_pct);

    if (opt.mode == M_REG) {
        uint64_t p50 = 0, p99 = 0, acc = 0;
        for (unsigned i = 0; i <= HIST_N; i++) {
            acc += all->hist[i];
            if (!p50 && acc * 2 >= all->regs)
                p50 = (uint64_t)(i + 1) * HIST_US;
            if (!p99 && acc * 100 >= all->regs * 99) {
                p99 = (uint64_t)(i + 1) * HIST_US;
                break;
            }
        }
        printf("RESULT reg: connections %u, %.0f registrations/s (%.0f "
               "REGISTER/s), p50 %.1f ms, p99 %.1f ms, errors %" PRIu64
               ", %.1f s%s\n",
               opt.conns, (double)all->regs / window,
               (double)all->reqs / window, (double)p50 / 1000.0,
               (double)p99 / 1000.0, all->errors, window, cpu);
    } else if (opt.mode == M_HS) {
        printf("RESULT hs: %.0f full TLS %s handshakes/s (%u in flight), "
               "errors %" PRIu64 ", %.1f s%s\n",
               (double)all->handshakes / window, opt.tls_version, opt.conns,
               all->errors, window, cpu);
    } else {
        printf("RESULT idle: connections %" PRIu64 " registered and idle, "
               "errors %" PRIu64,
               all->connected, all->errors);
        if (opt.npids)
            printf(", server memory (Pss) %ld -> %ld KiB, %.1f KiB per "
                   "connection",
                   mem0, mem1,
                   (double)(mem1 - mem0) / (double)(all->connected ?: 1));
        printf("\n");
    }
    return all->errors ? 1 : 0;
}
