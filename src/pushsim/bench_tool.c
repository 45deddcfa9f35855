/*
 * pushsim-bench: throughput check of pushsim's APNs endpoint over ONE
 * HTTP/2 connection (the way a push client uses it): N pushes, at most W
 * streams in flight, prints pushes/s and status counts. Blocking socket,
 * single thread; nghttp2 writes through a send callback, reads are fed
 * with nghttp2_session_mem_recv.
 *
 *   pushsim-bench PORT CAFILE JWT TOPIC N W [--rst-closed]
 *
 * --rst-closed sends RST_STREAM(STREAM_CLOSED) for every stream once it
 * has closed, as libcurl 7.88 does when a transfer ends; pushsim must
 * take that without tearing the connection down (regression test of
 * tests/integration/pushsim). Exit 0 only if all N got 200 on the one
 * connection.
 *
 * A measuring tool, not part of the emulator; errors just exit 1.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/slice.h"

struct bench {
    SSL *ssl;
    unsigned long long done, ok, other;
    bool rst_closed;
};

static ssize_t
send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags,
        void *user)
{
    struct bench *b = user;
    int n = SSL_write(b->ssl, data, (int)len);

    return n > 0 ? n : NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int
header_cb(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
          size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
          void *user)
{
    struct bench *b = user;

    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        if (valuelen == 3 && memcmp(value, "200", 3) == 0)
            b->ok++;
        else
            b->other++;
    }
    return 0;
}

static int
close_cb(nghttp2_session *s, int32_t id, uint32_t err, void *user)
{
    struct bench *b = user;

    free(nghttp2_session_get_stream_user_data(s, id)); /* body offset */
    b->done++;
    /* Queued now, written by the next nghttp2_session_send. */
    if (b->rst_closed && nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id,
                                                   NGHTTP2_STREAM_CLOSED) != 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return 0;
}

static const char BODY[] = "{\"aps\":{},\"call_id\":\"a84b4c76e66710\"}";

/* Flow control may offer less than the whole body: keep an offset. */
static ssize_t
body_cb(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
        uint32_t *flags, nghttp2_data_source *src, void *user)
{
    size_t *off = src->ptr, left = sizeof(BODY) - 1 - *off;
    size_t n = left < len ? left : len;

    memcpy(buf, BODY + *off, n);
    *off += n;
    if (*off == sizeof(BODY) - 1)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
    unsigned long long port, n, w, sent = 0;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    struct bench b = {0};
    nghttp2_session_callbacks *cb;
    nghttp2_session *h2;
    char auth[8192], path[160], rbuf[65536];
    int fd, one = 1;
    double t0, t1;

    if (argc == 8 && strcmp(argv[7], "--rst-closed") == 0) {
        b.rst_closed = true;
        argc--;
    }
    if (argc != 7 || slice_to_u64(slice_cstr(argv[1]), 65535, &port) < 0 ||
        slice_to_u64(slice_cstr(argv[5]), 1ull << 32, &n) < 0 ||
        slice_to_u64(slice_cstr(argv[6]), 1000, &w) < 0 || w == 0) {
        fprintf(stderr, "usage: pushsim-bench PORT CAFILE JWT TOPIC N W "
                        "[--rst-closed]\n");
        return 2;
    }
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(ctx, argv[2], NULL);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x02h2", 3);
    b.ssl = SSL_new(ctx);
    SSL_set_fd(b.ssl, fd);
    SSL_set1_host(b.ssl, "127.0.0.1");
    if (SSL_connect(b.ssl) != 1) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_send_callback(cb, send_cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, header_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, close_cb);
    nghttp2_session_client_new(&h2, cb, &b);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(h2, NGHTTP2_FLAG_NONE, NULL, 0);
    snprintf(auth, sizeof(auth), "bearer %s", argv[3]);

    t0 = now_s();
    while (b.done < n) {
        while (sent < n && sent - b.done < w) {
            char tok[80];
            snprintf(tok, sizeof(tok), "%064llx", sent);
            snprintf(path, sizeof(path), "/3/device/%s", tok);
            nghttp2_nv nv[] = {
#define H(k, v) {(uint8_t *)(k), (uint8_t *)(v), strlen(k), strlen(v), 0}
                H(":method", "POST"),         H(":scheme", "https"),
                H(":authority", "127.0.0.1"), H(":path", path),
                H("authorization", auth),     H("apns-topic", argv[4]),
                H("apns-push-type", "voip"),  H("apns-priority", "10"),
                H("apns-expiration", "0"),
#undef H
            };
            size_t *off = calloc(1, sizeof(*off));
            nghttp2_data_provider prd = {.source.ptr = off,
                                         .read_callback = body_cb};
            if (nghttp2_submit_request(h2, NULL, nv, sizeof(nv) / sizeof(nv[0]),
                                       &prd, off) < 0) {
                fprintf(stderr, "submit failed\n");
                return 1;
            }
            sent++;
        }
        int rv = nghttp2_session_send(h2);
        if (rv != 0) {
            fprintf(stderr, "send: %s\n", nghttp2_strerror(rv));
            return 1;
        }
        int r = SSL_read(b.ssl, rbuf, sizeof(rbuf));
        if (r <= 0 ||
            nghttp2_session_mem_recv(h2, (uint8_t *)rbuf, (size_t)r) < 0) {
            fprintf(stderr, "connection lost after %llu\n", b.done);
            return 1;
        }
    }
    t1 = now_s();
    printf("pushes=%llu window=%llu seconds=%.3f pushes_per_s=%.0f ok=%llu "
           "other=%llu\n",
           n, w, t1 - t0, (double)n / (t1 - t0), b.ok, b.other);
    nghttp2_session_del(h2);
    SSL_free(b.ssl);
    SSL_CTX_free(ctx);
    close(fd);
    return b.ok == n ? 0 : 1;
}
