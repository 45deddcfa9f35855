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
 * The driver shares the cores with the server it measures, so what it
 * spends per registration narrows the gap between two servers: the reg
 * path avoids per-message snprintf (each connection's REGISTER is built
 * once, only the CSeq and the Authorization header change), parses a
 * response in one pass over its header lines, computes HA1 once per user
 * and realm and HA2 once, reuses one MD5 context, and reads with OpenSSL's
 * read-ahead (one read(2) per response instead of header, body and a
 * final EAGAIN), going back to epoll (level-triggered) when OpenSSL holds
 * nothing more.
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
#define TMPL 512 /* a connection's prebuilt REGISTER (~400 bytes) */

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
    /* The REGISTER without its CSeq numbers and Authorization, in three
     * pieces: [0, t_branch) ends with the branch prefix, [t_branch,
     * t_cseq) with "CSeq: ", [t_cseq, t_len) is the rest up to and with
     * User-Agent. Built once the local port is known (tmpl_build). */
    uint16_t t_branch, t_cseq, t_len;
    char tmpl[TMPL];
    char ha1[32];           /* MD5(user:realm:password), hex */
    unsigned ha1_realm_gen; /* realm_gen it was computed for; 0: none */
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
static unsigned self_pid; /* this process's, for branches */
static char req_uri[40];  /* sip:HOST:PORT of the target */
static size_t req_uri_len;
static char ha2[32];         /* MD5("REGISTER:" req_uri), hex */
static char realm_seen[128]; /* the last realm challenged with */
static size_t realm_seen_len;
static unsigned realm_gen; /* bumped when realm_seen changes */
static EVP_MD *md5;
static EVP_MD_CTX *md5_ctx;
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

static const char hexdig[] = "0123456789abcdef";

/* MD5 of s[0..n) as 32 lower-case hex digits (not terminated). */
static void
md5_hex(const char *s, size_t n, char out[32])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;

    if (!EVP_DigestInit_ex(md5_ctx, md5, NULL) ||
        !EVP_DigestUpdate(md5_ctx, s, n) ||
        !EVP_DigestFinal_ex(md5_ctx, d, &dl) || dl != 16)
        die("MD5 failed");
    for (unsigned i = 0; i < 16; i++) {
        out[2 * i] = hexdig[d[i] >> 4];
        out[2 * i + 1] = hexdig[d[i] & 15];
    }
}

/* Appenders for message building: each returns the new end. The callers'
 * buffers are sized for the largest message they build. */
static char *
put(char *p, const void *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define PUTS(p, lit) put((p), (lit), sizeof(lit) - 1)

static char *
put_u(char *p, unsigned v)
{
    char t[10];
    unsigned n = 0;

    do
        t[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    while (n)
        *p++ = t[--n];
    return p;
}

/* v as 8 lower-case hex digits, as "%08x". */
static char *
put_x8(char *p, uint32_t v)
{
    for (int i = 7; i >= 0; i--)
        *p++ = hexdig[(v >> (4 * i)) & 15];
    return p;
}

/* What on_response needs of a response, found in one pass over its
 * header lines (response_scan). */
struct resp {
    size_t body;                 /* Content-Length, 0 when absent */
    const char *auth, *auth_end; /* WWW-Authenticate value, or NULL */
};

/* Header NAME (lower case, with its ':') at p, case-insensitively: the
 * position after the ':', or NULL. */
static const char *
hdr_is(const char *p, const char *end, const char *name, size_t nl)
{
    if ((size_t)(end - p) < nl || strncasecmp(p, name, nl) != 0)
        return NULL;
    return p + nl;
}

/* The header lines of msg[0..hend) ("\r\n\r\n" at hend); the first line
 * (the status line) is skipped. */
static void
response_scan(const char *msg, const char *hend, struct resp *r)
{
    const char *p = msg, *v;

    r->body = 0;
    r->auth = r->auth_end = NULL;
    while ((p = memchr(p, '\n', (size_t)(hend - p))) != NULL) {
        p++;
        switch (*p | 0x20) {
        case 'c':
            if ((v = hdr_is(p, hend, "content-length:", 15)))
                r->body = strtoul(v, NULL, 10);
            break;
        case 'l':
            if ((v = hdr_is(p, hend, "l:", 2)))
                r->body = strtoul(v, NULL, 10);
            break;
        case 'w':
            if (!r->auth && (v = hdr_is(p, hend, "www-authenticate:", 17))) {
                const char *e = memchr(v, '\r', (size_t)(hend + 2 - v));
                r->auth = v;
                r->auth_end = e ? e : hend;
            }
            break;
        default:
            break;
        }
    }
}

/* The "\r\n\r\n" that ends the header of the message at buf[0..len), or
 * NULL. Line by line with memchr: glibc's memmem costs several times more
 * on a ~400-byte response. */
static char *
head_end(char *buf, size_t len)
{
    char *p = buf, *end = buf + len;

    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        if (p - buf >= 1 && p[-1] == '\r' && end - p >= 3 && p[1] == '\r' &&
            p[2] == '\n')
            return p - 1;
        p++;
    }
    return NULL;
}

/* The params of a Digest challenge we use; each a slice into the message,
 * NULL when absent. */
struct challenge {
    const char *realm, *nonce, *opaque;
    size_t realm_len, nonce_len, opaque_len;
    bool qop;
};

/* Parses `Digest name=value, name="value", ...` in [p, end). Returns false
 * when it is not a Digest challenge with a realm and a nonce. */
static bool
challenge_parse(const char *p, const char *end, struct challenge *ch)
{
    memset(ch, 0, sizeof(*ch));
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (end - p < 7 || strncasecmp(p, "Digest", 6) != 0)
        return false;
    p += 6;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *name = p;
        while (p < end && *p != '=' && *p != ',')
            p++;
        if (p >= end || *p != '=')
            continue;
        size_t nl = (size_t)(p - name);
        const char *val, *ve;
        p++;
        if (p < end && *p == '"') {
            val = ++p;
            ve = memchr(p, '"', (size_t)(end - p));
            if (!ve)
                return false;
            p = ve + 1;
        } else {
            val = p;
            while (p < end && *p != ',' && *p != ' ' && *p != '\t')
                p++;
            ve = p;
        }
        size_t vl = (size_t)(ve - val);
        if (nl == 5 && strncasecmp(name, "realm", 5) == 0)
            ch->realm = val, ch->realm_len = vl;
        else if (nl == 5 && strncasecmp(name, "nonce", 5) == 0)
            ch->nonce = val, ch->nonce_len = vl;
        else if (nl == 6 && strncasecmp(name, "opaque", 6) == 0)
            ch->opaque = val, ch->opaque_len = vl;
        else if (nl == 3 && strncasecmp(name, "qop", 3) == 0)
            ch->qop = true;
    }
    return ch->realm && ch->nonce;
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

/* The fixed parts of c's REGISTER (see struct conn), once c->lport is
 * known. */
static void
tmpl_build(struct conn *c)
{
    const char *host = req_uri + 4; /* "sip:" HOST:PORT */
    size_t hl = (size_t)(strchr(host, ':') - host);
    int a, b, n;

    a = snprintf(c->tmpl, TMPL,
                 "REGISTER %s SIP/2.0\r\n"
                 "Via: SIP/2.0/TLS 127.0.0.1:%d;branch=z9hG4bK-%u-%u-",
                 req_uri, c->lport, self_pid, c->idx);
    b = a + snprintf(c->tmpl + a, TMPL - (size_t)a,
                     ";rport;alias\r\n"
                     "Max-Forwards: 70\r\n"
                     "From: <sip:%u@%.*s>;tag=t%u\r\n"
                     "To: <sip:%u@%.*s>\r\n"
                     "Call-ID: %s\r\n"
                     "CSeq: ",
                     c->user, (int)hl, host, c->idx, c->user, (int)hl, host,
                     c->call_id);
    n = b + snprintf(c->tmpl + b, TMPL - (size_t)b,
                     " REGISTER\r\n"
                     "Contact: <sip:%u@127.0.0.1:%d;transport=tls>\r\n"
                     "Expires: 3600\r\n"
                     "User-Agent: tls_driver\r\n",
                     c->user, c->lport);
    if (n >= TMPL)
        die("REGISTER template too long");
    c->t_branch = (uint16_t)a;
    c->t_cseq = (uint16_t)b;
    c->t_len = (uint16_t)n;
}

/* Sends c's next REGISTER (CSeq + 1), with auth[0..alen) (whole header
 * lines) when alen > 0. */
static void
send_register(struct conn *c, const char *auth, size_t alen)
{
    char buf[TMPL + 1600];
    char *p = buf;

    c->cseq++;
    p = put(p, c->tmpl, c->t_branch);
    p = put_u(p, c->cseq);
    p = put(p, c->tmpl + c->t_branch, (size_t)(c->t_cseq - c->t_branch));
    p = put_u(p, c->cseq);
    p = put(p, c->tmpl + c->t_cseq, (size_t)(c->t_len - c->t_cseq));
    if (alen)
        p = put(p, auth, alen);
    p = PUTS(p, "Content-Length: 0\r\n\r\n");
    conn_send(c, buf, (int)(p - buf));
}

static void
answer_challenge(struct conn *c, const struct resp *rs)
{
    struct challenge ch;
    char user[12], r[512], resp[32], cnonce[16], auth[1400];
    char *p;

    if (!rs->auth || !challenge_parse(rs->auth, rs->auth_end, &ch) ||
        ch.realm_len > sizeof(realm_seen) || ch.nonce_len > 256 ||
        ch.opaque_len > 256) {
        conn_close(c, true);
        return;
    }
    size_t ul = (size_t)(put_u(user, c->user) - user);
    /* HA1 depends on the user and the realm only: once per connection
     * unless the server changes its realm */
    if (ch.realm_len != realm_seen_len ||
        memcmp(ch.realm, realm_seen, ch.realm_len) != 0 || !realm_gen) {
        memcpy(realm_seen, ch.realm, ch.realm_len);
        realm_seen_len = ch.realm_len;
        realm_gen++;
    }
    if (c->ha1_realm_gen != realm_gen) {
        int pl = snprintf(r, sizeof(r), "%.*s:%.*s:%s%u", (int)ul, user,
                          (int)ch.realm_len, ch.realm, opt.pw_prefix, c->user);
        if (pl < 0 || (size_t)pl >= sizeof(r)) {
            conn_close(c, true);
            return;
        }
        md5_hex(r, (size_t)pl, c->ha1);
        c->ha1_realm_gen = realm_gen;
    }
    /* a fresh cnonce per request (nc is 1: every nonce is new) */
    put_x8(put_x8(cnonce, (uint32_t)random()), c->cseq);
    p = put(r, c->ha1, 32);
    *p++ = ':';
    p = put(p, ch.nonce, ch.nonce_len);
    if (ch.qop) {
        p = PUTS(p, ":00000001:");
        p = put(p, cnonce, 16);
        p = PUTS(p, ":auth:");
    } else
        *p++ = ':';
    p = put(p, ha2, 32);
    md5_hex(r, (size_t)(p - r), resp);

    p = PUTS(auth, "Authorization: Digest username=\"");
    p = put(p, user, ul);
    p = PUTS(p, "\", realm=\"");
    p = put(p, ch.realm, ch.realm_len);
    p = PUTS(p, "\", nonce=\"");
    p = put(p, ch.nonce, ch.nonce_len);
    p = PUTS(p, "\", uri=\"");
    p = put(p, req_uri, req_uri_len);
    p = PUTS(p, "\", response=\"");
    p = put(p, resp, 32);
    p = PUTS(p, "\", algorithm=MD5");
    if (ch.qop) {
        p = PUTS(p, ", qop=auth, nc=00000001, cnonce=\"");
        p = put(p, cnonce, 16);
        *p++ = '"';
    }
    if (ch.opaque) {
        p = PUTS(p, ", opaque=\"");
        p = put(p, ch.opaque, ch.opaque_len);
        *p++ = '"';
    }
    p = PUTS(p, "\r\n");
    send_register(c, auth, (size_t)(p - auth));
}

static void
start_registration(struct conn *c)
{
    c->round = 1;
    c->t_start = now_us();
    send_register(c, NULL, 0);
}

/* One complete response in c->in[0..len), scanned into *rs. */
static void
on_response(struct conn *c, const char *msg, size_t len, const struct resp *rs)
{
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
        answer_challenge(c, rs);
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
            char *hend = head_end(c->in, c->in_len);
            if (!hend)
                break;
            struct resp rs;
            response_scan(c->in, hend, &rs);
            size_t hl = (size_t)(hend - c->in) + 4, body = rs.body;
            if (c->in_len < hl + body)
                break;
            int fd = c->fd;
            on_response(c, c->in, hl + body, &rs);
            if (c->fd != fd || c->fd < 0)
                return; /* closed */
            c->in_len -= hl + body;
            if (c->in_len)
                memmove(c->in, c->in + hl + body, c->in_len);
        }
        /* With read-ahead OpenSSL may hold more records than SSL_read
         * returned; when it holds none, the next read would only answer
         * WANT_READ: epoll (level-triggered) says when there is more. */
        if (!SSL_has_pending(c->ssl))
            return;
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
    if (opt.mode != M_HS)
        tmpl_build(c);
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
    self_pid = (unsigned)getpid();
    conns = calloc(n, sizeof(*conns));
    if (!conns)
        die("out of memory");
    for (unsigned i = 0; i < n; i++) {
        conns[i].fd = -1;
        conns[i].user = opt.user_first + (first + i) % opt.user_count;
        snprintf(conns[i].call_id, sizeof(conns[i].call_id), "tlsd-%u-%u",
                 first + i, self_pid);
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
    /* busy connections keep their record buffers; idle ones (-m idle, many
     * thousands) give them back */
    if (opt.mode == M_IDLE)
        SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(ctx, 1);

    uint32_t self = ntohl(opt.target.sin_addr.s_addr);
    snprintf(req_uri, sizeof(req_uri), "sip:%u.%u.%u.%u:%u", self >> 24,
             (self >> 16) & 255, (self >> 8) & 255, self & 255,
             (unsigned)ntohs(opt.target.sin_port));
    req_uri_len = strlen(req_uri);
    md5 = EVP_MD_fetch(NULL, "MD5", NULL);
    md5_ctx = EVP_MD_CTX_new();
    if (!md5 || !md5_ctx)
        die("MD5 is not available");
    char a2[64];
    md5_hex(a2, (size_t)snprintf(a2, sizeof(a2), "REGISTER:%s", req_uri), ha2);

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
