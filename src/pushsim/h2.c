/*
 * h2: pushsim's HTTPS side: TCP on libuv, TLS 1.2+ with OpenSSL over
 * memory BIOs, HTTP/2 with nghttp2 doing no I/O of its own (we feed it
 * with nghttp2_session_mem_recv and drain nghttp2_session_mem_send; the
 * Debian 12 nghttp2 1.52 predates the ...2 variants). One loop thread owns
 * every connection and stream here.
 *
 * Per read: bytes -> SSL (rbio) -> plaintext -> nghttp2 -> callbacks; a
 * request is answered when its END_STREAM arrives (psim_handle). Then one
 * flush: nghttp2 output -> SSL_write -> wbio -> one uv_write. So a burst
 * of N requests costs one write, not N.
 *
 * Delayed answers ("delay" fault) wait in one list sorted by due time,
 * driven by a single uv_timer (style.md §8: no handle per request); the
 * insert walks from the tail, O(pending delays), fine for test-sized
 * delay counts. A "hang" stream simply never gets an answer. Streams are
 * owned by their connection (list), freed on stream close or with the
 * connection.
 *
 * Limits: SETTINGS_MAX_CONCURRENT_STREAMS 1000, connection receive
 * window 16 MiB (stream windows stay 64 KiB), request body 64 KiB
 * (beyond it the body is dropped and flagged), tracked header values
 * 8 KiB each; reading pauses while more than 8 MiB wait to be written.
 *
 * Client certificates (--apns-client-ca): asked for, never required,
 * since token-auth and FCM clients share the port, as on Apple's hosts. A
 * certificate that does not verify (other CA, expired, not yet valid)
 * fails the handshake with OpenSSL's alert for it; the connection then
 * sends FIN after the alert and drops input until the client closes
 * (bounded by TLS_DRAIN_MAX bytes, not by time: a test emulator), so the
 * alert is not lost to a TCP RST. A verified certificate's subject UID
 * goes with every request of the connection (struct psim_req.cert).
 *
 * RST_STREAM accounting: libcurl 7.88 (Debian 12) ends every transfer
 * with RST_STREAM(STREAM_CLOSED) on a stream we have already answered
 * and closed. nghttp2's rapid-reset guard (CVE-2023-44487, backported to
 * Debian's 1.52: burst 1000, 33/s) counts every received RST_STREAM, so
 * after ~1000 pushes it sent GOAWAY(INTERNAL_ERROR) and the client had to
 * reconnect and resend what the GOAWAY cut off (duplicate pushes). APNs
 * and FCM do not do that. So the library guard is opened wide and we keep
 * our own with the same budget counting only resets of streams that are
 * still open here (a request cancelled before its answer went out).
 */
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "base/log.h"
#include "base/xmalloc.h"
#include "pushsim/pushsim_int.h"

#define HDR_VALUE_MAX 8192
#define WRITE_HIGH (8u << 20)
#define WRITE_LOW (1u << 20)
/* Resets of open streams a connection may make: burst, then per second. */
#define RST_BURST 1000
#define RST_RATE 33
#define CONN_WINDOW (16 << 20)
/* Input dropped after a failed handshake before we close anyway. */
#define TLS_DRAIN_MAX (1u << 20)

struct psim_server {
    struct psim *ps;
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_timer_t timer; /* delayed answers + log flush */
    SSL_CTX *ssl_ctx;
    struct list_node conns;   /* struct conn.node */
    struct list_node delayed; /* struct stream.delay_node, by due_ms */
    uint64_t next_log_flush_ms;
    bool stopping;
};

struct conn {
    struct list_node node;
    struct psim_server *srv;
    uv_tcp_t tcp;
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    nghttp2_session *h2;
    struct list_node streams;
    bool handshake_done;
    bool tls_failed; /* handshake failed: alert sent, draining input */
    bool closing;
    bool close_after_write; /* GOAWAY fault */
    bool reading;
    uint64_t rst_tokens;  /* RST_STREAM budget (see top comment) */
    uint64_t rst_tick_ms; /* when rst_tokens was last refilled */
    size_t drained;       /* bytes read and dropped after tls_failed */
    uv_shutdown_t shutdown;
    enum psim_cert cert;
    char cert_uid[256];
};

struct hdr_ref {
    size_t off, len;
    bool set;
};

struct stream {
    struct list_node node;       /* in conn->streams */
    struct list_node delay_node; /* in srv->delayed when delayed */
    struct conn *conn;
    int32_t id;
    struct hdr_ref hdr[PSIM_H_COUNT];
    struct buf hdrbuf; /* values of tracked headers */
    bool dup_header;
    struct buf body;
    bool body_too_large;
    bool answered;
    uint64_t due_ms;
    struct psim_resp resp;
    size_t resp_off;
};

struct wreq {
    uv_write_t req;
    struct conn *conn;
    size_t len;
    char data[];
};

static void conn_close(struct conn *c);
static void conn_flush(struct conn *c);

/* ---- streams ---------------------------------------------------------- */

static struct stream *
stream_new(struct conn *c, int32_t id)
{
    struct stream *s = xcalloc(1, sizeof(*s));

    s->conn = c;
    s->id = id;
    buf_init(&s->hdrbuf, PSIM_H_COUNT * HDR_VALUE_MAX);
    buf_init(&s->body, PSIM_BODY_MAX);
    psim_resp_init(&s->resp);
    list_init(&s->delay_node);
    list_push_back(&c->streams, &s->node);
    atomic_fetch_add(&c->srv->ps->state.streams, 1);
    return s;
}

static void
stream_free(struct stream *s)
{
    list_remove(&s->node);
    if (list_linked(&s->delay_node))
        list_remove(&s->delay_node);
    buf_fini(&s->hdrbuf);
    buf_fini(&s->body);
    psim_resp_fini(&s->resp);
    free(s);
}

static ssize_t
resp_read_cb(nghttp2_session *h2, int32_t id, uint8_t *dst, size_t len,
             uint32_t *flags, nghttp2_data_source *src, void *user)
{
    struct stream *s = src->ptr;
    size_t left = s->resp.body.len - s->resp_off;
    size_t n = left < len ? left : len;

    memcpy(dst, s->resp.body.data + s->resp_off, n);
    s->resp_off += n;
    if (s->resp_off == s->resp.body.len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

#define NV(n, v, vlen)                                                         \
    {                                                                          \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vlen),                 \
            NGHTTP2_NV_FLAG_NO_COPY_NAME                                       \
    }

static void
stream_submit(struct stream *s)
{
    char status[8];
    nghttp2_nv nv[5];
    size_t n = 0;
    nghttp2_data_provider prd = {.source.ptr = s,
                                 .read_callback = resp_read_cb};

    snprintf(status, sizeof(status), "%d", s->resp.status);
    nv[n++] = (nghttp2_nv)NV(":status", status, strlen(status));
    if (s->resp.apns_id[0])
        nv[n++] =
            (nghttp2_nv)NV("apns-id", s->resp.apns_id, strlen(s->resp.apns_id));
    if (s->resp.retry_after[0])
        nv[n++] = (nghttp2_nv)NV("retry-after", s->resp.retry_after,
                                 strlen(s->resp.retry_after));
    if (s->resp.body.len > 0)
        nv[n++] = (nghttp2_nv)NV("content-type", "application/json", 16);
    /* Names are literals (NO_COPY_NAME); values are copied at submit,
     * since status[] dies with this frame. */
    s->answered = true;
    nghttp2_submit_response(s->conn->h2, s->id, nv, n,
                            s->resp.body.len > 0 ? &prd : NULL);
}

static void
delay_insert(struct psim_server *srv, struct stream *s)
{
    struct list_node *pos = srv->delayed.prev;

    /* Walk back from the latest: new delays are usually the latest. */
    while (pos != &srv->delayed &&
           container_of(pos, struct stream, delay_node)->due_ms > s->due_ms)
        pos = pos->prev;
    list_insert_before(pos->next, &s->delay_node);
}

static void
stream_request_done(struct stream *s)
{
    struct conn *c = s->conn;
    struct psim_server *srv = c->srv;
    struct psim_req req = {0};

    for (int i = 0; i < PSIM_H_COUNT; i++)
        if (s->hdr[i].set)
            req.hdr[i] =
                slice_make(s->hdrbuf.data + s->hdr[i].off, s->hdr[i].len);
    req.cert = c->cert;
    if (c->cert == PSIM_CERT_OK)
        req.cert_uid = slice_cstr(c->cert_uid);
    req.dup_header = s->dup_header;
    req.body_too_large = s->body_too_large;
    req.body = slice_make(s->body.data, s->body.len);
    psim_handle(srv->ps, &req, &s->resp);

    switch (s->resp.action) {
    case PSIM_ACT_ANSWER:
        if (s->resp.delay_ms == 0) {
            stream_submit(s);
        } else {
            s->due_ms = uv_now(srv->loop) + s->resp.delay_ms;
            delay_insert(srv, s);
        }
        break;
    case PSIM_ACT_RESET:
        nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, s->id,
                                  NGHTTP2_INTERNAL_ERROR);
        break;
    case PSIM_ACT_GOAWAY: {
        static const char why[] = "{\"reason\":\"Shutdown\"}";
        /* Streams from this one on were not processed: safe to retry. */
        nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
                              s->id > 2 ? s->id - 2 : 0, NGHTTP2_NO_ERROR,
                              (const uint8_t *)why, sizeof(why) - 1);
        c->close_after_write = true;
        break;
    }
    case PSIM_ACT_HANG:
        break;
    }
}

/* ---- nghttp2 callbacks ------------------------------------------------ */

static int
on_begin_headers(nghttp2_session *h2, const nghttp2_frame *f, void *user)
{
    struct conn *c = user;

    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    nghttp2_session_set_stream_user_data(h2, f->hd.stream_id,
                                         stream_new(c, f->hd.stream_id));
    return 0;
}

static int
on_header(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name,
          size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
          void *user)
{
    struct stream *s;
    int i;

    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    i = psim_hdr_index(slice_make((const char *)name, namelen));
    if (i < 0)
        return 0;
    s = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
    if (s == NULL)
        return 0;
    if (s->hdr[i].set) {
        s->dup_header = true;
        return 0;
    }
    if (valuelen > HDR_VALUE_MAX)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST this stream */
    s->hdr[i].off = s->hdrbuf.len;
    s->hdr[i].len = valuelen;
    s->hdr[i].set = true;
    /* Cannot fail: PSIM_H_COUNT values of at most HDR_VALUE_MAX fit. */
    (void)buf_append(&s->hdrbuf, value, valuelen);
    return 0;
}

static int
on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t id,
              const uint8_t *data, size_t len, void *user)
{
    struct stream *s = nghttp2_session_get_stream_user_data(h2, id);

    if (s == NULL || s->body_too_large)
        return 0;
    if (buf_append(&s->body, data, len) < 0) {
        s->body_too_large = true;
        buf_fini(&s->body); /* drop what we have; keep the memory bounded */
        buf_init(&s->body, PSIM_BODY_MAX);
    }
    return 0;
}

/* A peer cancelled a stream we still had open: charge the budget; when it
 * runs dry, GOAWAY(ENHANCE_YOUR_CALM) as a real front end would. Resets of
 * streams already closed here (libcurl's habit) cost nothing. */
static void
rst_charge(struct conn *c)
{
    uint64_t now = uv_now(c->srv->loop);
    uint64_t refill = (now - c->rst_tick_ms) * RST_RATE / 1000;

    if (refill > 0) {
        c->rst_tokens = c->rst_tokens + refill > RST_BURST
                            ? RST_BURST
                            : c->rst_tokens + refill;
        c->rst_tick_ms = now;
    }
    if (c->rst_tokens > 0) {
        c->rst_tokens--;
        return;
    }
    nghttp2_session_terminate_session(c->h2, NGHTTP2_ENHANCE_YOUR_CALM);
}

static int
on_frame_recv(nghttp2_session *h2, const nghttp2_frame *f, void *user)
{
    struct stream *s;

    if (f->hd.type == NGHTTP2_RST_STREAM) {
        /* Called before nghttp2 closes the stream: user data is set only
         * while the stream is open here. */
        if (nghttp2_session_get_stream_user_data(h2, f->hd.stream_id))
            rst_charge(user);
        return 0;
    }
    if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    s = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
    if (s != NULL && !s->answered && !list_linked(&s->delay_node))
        stream_request_done(s);
    return 0;
}

static int
on_stream_close(nghttp2_session *h2, int32_t id, uint32_t err, void *user)
{
    struct stream *s = nghttp2_session_get_stream_user_data(h2, id);

    if (s != NULL) {
        nghttp2_session_set_stream_user_data(h2, id, NULL);
        stream_free(s);
    }
    return 0;
}

/* ---- TLS and I/O ------------------------------------------------------- */

static void
on_write_done(uv_write_t *req, int status)
{
    struct wreq *w = container_of(req, struct wreq, req);
    struct conn *c = w->conn;

    free(w);
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->closing)
        return;
    if (c->close_after_write &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) == 0) {
        conn_close(c);
        return;
    }
    if (!c->reading &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < WRITE_LOW)
        conn_flush(c); /* also resumes reading */
}

/* Move whatever TLS produced to the socket, in one write. */
static void
write_wbio(struct conn *c)
{
    size_t pending = BIO_ctrl_pending(c->wbio);
    struct wreq *w;
    uv_buf_t b;
    int n;

    if (pending == 0)
        return;
    w = xmalloc(sizeof(*w) + pending);
    w->conn = c;
    n = BIO_read(c->wbio, w->data, (int)pending);
    if (n <= 0) {
        free(w);
        return;
    }
    w->len = (size_t)n;
    b = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write_done) < 0) {
        free(w);
        conn_close(c);
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b);
static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b);
static void tls_fail(struct conn *c);
static void conn_peer(struct conn *c);

static void
conn_flush(struct conn *c)
{
    const uint8_t *data;
    ssize_t n;

    if (c->closing)
        return;
    while (c->h2 != NULL) {
        n = nghttp2_session_mem_send(c->h2, &data);
        if (n < 0) {
            conn_close(c);
            return;
        }
        if (n == 0)
            break;
        if (SSL_write(c->ssl, data, (int)n) <= 0) {
            conn_close(c);
            return;
        }
    }
    write_wbio(c);
    if (c->closing)
        return;
    if (c->h2 != NULL && !nghttp2_session_want_read(c->h2) &&
        !nghttp2_session_want_write(c->h2) &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) == 0) {
        conn_close(c);
        return;
    }
    /* Backpressure: a client that does not read stops being read. */
    size_t q = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    if (c->reading && q > WRITE_HIGH) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    } else if (!c->reading && q < WRITE_LOW) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
            c->reading = true;
    }
}

static int
start_h2(struct conn *c)
{
    nghttp2_session_callbacks *cb;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 64 * 1024},
    };
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    nghttp2_option *opt;
    int rc;

    SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
    if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0)
        return -EPROTO;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb,
                                                            on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb,
                                                              on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cb);
        return -ENOMEM;
    }
#ifdef PSIM_HAVE_RST_RATE_LIMIT
    /* Our own budget in rst_charge() replaces the library's, which also
     * counts resets of closed streams (see the top comment). The bucket
     * refills fast enough never to run dry; the rate stays far from
     * overflowing nghttp2's rate * elapsed-seconds arithmetic. */
    nghttp2_option_set_stream_reset_rate_limit(opt, UINT32_MAX, 1000000);
#endif
    rc = nghttp2_session_server_new2(&c->h2, cb, c, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (rc != 0)
        return -ENOMEM;
    c->rst_tokens = RST_BURST;
    c->rst_tick_ms = uv_now(c->srv->loop);
    nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv,
                            sizeof(iv) / sizeof(iv[0]));
    /* Connection window 16 MiB (WINDOW_UPDATE on stream 0) instead of the
     * default 64 KiB: 500 uploads in flight exhaust 64 KiB, and libcurl
     * 7.88 then stalls some request bodies for seconds (timeouts, resets,
     * resends). Memory stays bounded by the per-stream body limit. */
    nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0,
                                          CONN_WINDOW);
    return 0;
}

static void
on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    static char slab[64 * 1024]; /* loop thread only; consumed at once */

    b->base = slab;
    b->len = sizeof(slab);
}

static void
on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    struct conn *c = container_of((uv_tcp_t *)st, struct conn, tcp);
    char plain[16384];
    int n;

    if (nread == 0)
        return;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (c->tls_failed) {
        /* Lingering close: the client may still be sending (TLS 1.3 sends
         * its request right after its Finished, before it learns that its
         * certificate was refused). Closing with unread input would send
         * a TCP RST, which can overtake the alert; so drop input until
         * the client closes, within a bound. */
        c->drained += (size_t)nread;
        if (c->drained > TLS_DRAIN_MAX)
            conn_close(c);
        return;
    }
    if (BIO_write(c->rbio, b->base, (int)nread) != nread) {
        conn_close(c);
        return;
    }
    ERR_clear_error(); /* SSL_get_error must see only this call's errors */
    if (!c->handshake_done) {
        n = SSL_do_handshake(c->ssl);
        if (n != 1) {
            int err = SSL_get_error(c->ssl, n);
            write_wbio(c); /* handshake messages or an alert */
            if (err != SSL_ERROR_WANT_READ && !c->closing)
                tls_fail(c);
            return;
        }
        c->handshake_done = true;
        conn_peer(c);
        if (start_h2(c) < 0) {
            conn_close(c);
            return;
        }
    }
    for (;;) {
        ERR_clear_error(); /* JWT checks in the callbacks may queue some */
        n = SSL_read(c->ssl, plain, sizeof(plain));
        if (n <= 0) {
            int err = SSL_get_error(c->ssl, n);
            if (err == SSL_ERROR_WANT_READ)
                break;
            ERR_clear_error();
            conn_close(c); /* close_notify or a TLS error */
            return;
        }
        if (nghttp2_session_mem_recv(c->h2, (const uint8_t *)plain, (size_t)n) <
            0) {
            conn_close(c);
            return;
        }
        if (c->closing)
            return;
    }
    conn_flush(c);
}

static void
on_shutdown(uv_shutdown_t *req, int status)
{
    /* Nothing to do: the connection closes when the client does. */
}

/* The handshake failed and its alert is queued: say so on stderr (a
 * refused client certificate is what tests look for), send FIN after the
 * alert and keep reading until the client closes (see on_read). */
static void
tls_fail(struct conn *c)
{
    long v = SSL_get_verify_result(c->ssl);
    unsigned long e = ERR_peek_error();
    char why[256] = "";

    if (e != 0)
        ERR_error_string_n(e, why, sizeof(why));
    ERR_clear_error();
    if (v != X509_V_OK)
        fprintf(stderr,
                "pushsim: TLS handshake failed: client certificate: "
                "%s\n",
                X509_verify_cert_error_string(v));
    else if (c->srv->ps->apns_client_ca != NULL)
        fprintf(stderr, "pushsim: TLS handshake failed: %s\n", why);
    c->tls_failed = true;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
        conn_close(c);
}

/* After a successful handshake: what the client certificate (if any; it
 * was verified by then) says. Its subject UID is the app's bundle id, as
 * in Apple's push certificates. */
static void
conn_peer(struct conn *c)
{
    X509 *peer = SSL_get0_peer_certificate(c->ssl);
    X509_NAME *name;
    unsigned char *utf8 = NULL;
    int i, len;

    if (peer == NULL)
        return;
    c->cert = PSIM_CERT_NO_UID;
    name = X509_get_subject_name(peer);
    i = X509_NAME_get_index_by_NID(name, NID_userId, -1);
    if (i < 0)
        return;
    len = ASN1_STRING_to_UTF8(
        &utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
    if (len > 0 && (size_t)len < sizeof(c->cert_uid) &&
        memchr(utf8, '\0', (size_t)len) == NULL) {
        memcpy(c->cert_uid, utf8, (size_t)len);
        c->cert_uid[len] = '\0';
        c->cert = PSIM_CERT_OK;
    }
    OPENSSL_free(utf8);
}

static void
on_conn_closed(uv_handle_t *h)
{
    struct conn *c = container_of((uv_tcp_t *)h, struct conn, tcp);
    struct list_node *n, *tmp;

    nghttp2_session_del(c->h2);
    list_for_each_safe(n, tmp, &c->streams)
    {
        stream_free(container_of(n, struct stream, node));
    }
    SSL_free(c->ssl);
    free(c);
}

static void
conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    list_remove(&c->node);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void
on_connection(uv_stream_t *server, int status)
{
    struct psim_server *srv =
        container_of((uv_tcp_t *)server, struct psim_server, listener);
    struct conn *c;

    if (status < 0)
        return;
    c = xcalloc(1, sizeof(*c));
    c->srv = srv;
    list_init(&c->streams);
    uv_tcp_init(srv->loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->ssl = SSL_new(srv->ssl_ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_accept_state(c->ssl);
    list_push_back(&srv->conns, &c->node);
    atomic_fetch_add(&srv->ps->state.connections, 1);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = true;
    else
        conn_close(c);
}

/* ---- timer: delayed answers and log flushing --------------------------- */

static void
on_timer(uv_timer_t *t)
{
    struct psim_server *srv = container_of(t, struct psim_server, timer);
    uint64_t now = uv_now(srv->loop);

    while (!list_empty(&srv->delayed)) {
        struct stream *s =
            container_of(srv->delayed.next, struct stream, delay_node);
        if (s->due_ms > now)
            break;
        list_remove(&s->delay_node);
        stream_submit(s);
        conn_flush(s->conn); /* s may be gone after this */
    }
    if (now >= srv->next_log_flush_ms) {
        psim_state_flush_log(&srv->ps->state);
        srv->next_log_flush_ms = now + 200;
    }
}

/* ---- TLS context ------------------------------------------------------- */

static int
alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
            const unsigned char *in, unsigned inlen, void *arg)
{
    for (unsigned i = 0; i < inlen; i += 1u + in[i]) {
        if (in[i] == 2 && i + 3 <= inlen && memcmp(in + i + 1, "h2", 2) == 0) {
            *out = in + i + 1;
            *outlen = 2;
            return SSL_TLSEXT_ERR_OK;
        }
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL; /* h2 only, like APNs */
}

/* Ask for a client certificate (optional: token-auth and FCM clients
 * send none) and verify the one given against client_ca, as APNs does for
 * certificate-based trust. A failed verification fails the handshake with
 * OpenSSL's alert for it (unknown ca, certificate expired...). */
static int
want_client_cert(SSL_CTX *ctx, const char *client_ca)
{
    static const unsigned char sid[] = "pushsim";
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca);

    if (names == NULL ||
        SSL_CTX_load_verify_locations(ctx, client_ca, NULL) != 1) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        return -EINVAL;
    }
    SSL_CTX_set_client_CA_list(ctx, names); /* takes names */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_verify_depth(ctx, 4);
    /* Resumed sessions keep their peer certificate; OpenSSL refuses to
     * resume with SSL_VERIFY_PEER unless a session id context is set. */
    SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
    return 0;
}

static SSL_CTX *
make_ssl_ctx(X509 *cert, EVP_PKEY *key, const char *client_ca)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    if (SSL_CTX_use_certificate(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, key) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1 ||
        (client_ca != NULL && want_client_cert(ctx, client_ca) < 0)) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* ---- public ------------------------------------------------------------ */

int
psim_server_start(struct psim *ps, void *uv_loop, const char *addr, X509 *cert,
                  EVP_PKEY *key, struct psim_server **out, int *port)
{
    struct psim_server *srv;
    struct sockaddr_storage ss;
    int len = sizeof(ss), rc;

    if (psim_parse_addr(addr, &ss) < 0)
        return -EINVAL;
    srv = xcalloc(1, sizeof(*srv));
    srv->ps = ps;
    srv->loop = uv_loop;
    list_init(&srv->conns);
    list_init(&srv->delayed);
    srv->ssl_ctx = make_ssl_ctx(cert, key, ps->apns_client_ca);
    if (srv->ssl_ctx == NULL) {
        free(srv);
        return -EINVAL;
    }
    uv_tcp_init(srv->loop, &srv->listener);
    uv_timer_init(srv->loop, &srv->timer);
    rc = uv_tcp_bind(&srv->listener, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&srv->listener, 1024, on_connection);
    if (rc == 0)
        rc = uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &len);
    if (rc < 0) {
        psim_server_stop(srv);
        uv_run(srv->loop, UV_RUN_DEFAULT); /* let the handles close */
        psim_server_free(srv);
        return rc;
    }
    *port =
        ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                       : ((struct sockaddr_in *)&ss)->sin_port);
    /* 5 ms granularity is plenty for "delay" faults. */
    uv_timer_start(&srv->timer, on_timer, 5, 5);
    *out = srv;
    return 0;
}

void
psim_server_stop(struct psim_server *srv)
{
    struct list_node *n, *tmp;

    if (srv->stopping)
        return;
    srv->stopping = true;
    uv_close((uv_handle_t *)&srv->listener, NULL);
    uv_close((uv_handle_t *)&srv->timer, NULL);
    list_for_each_safe(n, tmp, &srv->conns)
    {
        conn_close(container_of(n, struct conn, node));
    }
}

void
psim_server_free(struct psim_server *srv)
{
    if (srv == NULL)
        return;
    SSL_CTX_free(srv->ssl_ctx);
    free(srv);
}
