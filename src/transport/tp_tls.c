/*
 * transport/tp_tls: the [tls] option table, the server SSL_CTX shared by
 * every worker, its reload (SIGHUP), and the BIO that connects an SSL
 * object to a connection on a libuv loop.
 *
 * No thread per connection and no blocking handshake: OpenSSL never sees
 * a socket. Each TLS connection's SSL object gets one "memory" BIO of our
 * own (tls_bio_*): reads return the ciphertext libuv just read (a slice
 * set by tp.c for the duration of the read callback, never copied), and
 * writes append to the worker's output buffer, which tp.c hands to
 * uv_write after each SSL call. Unlike BIO_s_mem, the BIO keeps no buffer
 * of its own between reads, so an idle connection costs its SSL object,
 * not two grown memory buffers. OpenSSL's record buffers (~17 KiB each
 * way) stay while the connection is busy and are freed by tp.c once it
 * has been quiet for 200 ms (SSL_free_buffers); SSL_MODE_RELEASE_BUFFERS
 * would free and allocate them again for every record.
 *
 * Outbound connections (a request to a sips:/transport=tls next hop: another
 * cluster node) use a second, client SSL_CTX built from the same files: it
 * verifies the server's certificate (server_ca_file, else ca_file, else
 * the system's default CA store) and its name or IP address against the
 * host we connect to (tp_tls_client_new), and presents cert_file when the
 * server asks for a client certificate (nodes with ca_file set verify each
 * other both ways).
 *
 * Reload: tp_tls_reload builds complete new SSL_CTXs from the files and
 * swaps the pointers under a mutex; the workers take a reference (SSL_new
 * up-refs the context) under the same mutex once per connection. Open
 * connections keep the context they started with until they close; a
 * file that does not load leaves the old contexts in place.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "base/xmalloc.h"
#include "config/cfg.h"
#include "transport/tp.h"
#include "transport/tp_int.h"

/* Mozilla "intermediate" for TLS 1.2, ECDHE only (forward secrecy, no
 * DH parameters to manage). mbedtls-based phones (liblinphone 5.1) offer
 * ECDHE-ECDSA/RSA with AES-GCM; TLS 1.3 suites are OpenSSL's defaults. */
#define TP_TLS_DEFAULT_CIPHERS                                                 \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"               \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"               \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

static const char *const tls_versions[] = {"1.2", "1.3", NULL};

static const struct cfg_option tls_options[] = {
    {.key = "cert_file",
     .type = CFG_PATH,
     .def = "",
     .offset = offsetof(struct tp_tls_cfg, cert_file),
     .help = "PEM certificate chain for the tls: listeners, the server's "
             "certificate first, then the intermediates (an ACME "
             "fullchain.pem). Its name must be the host name phones are "
             "configured with. Required when [sip] listen has a tls: "
             "item; read again on SIGHUP."},
    {.key = "key_file",
     .type = CFG_PATH,
     .def = "",
     .offset = offsetof(struct tp_tls_cfg, key_file),
     .help = "PEM private key of cert_file (unencrypted). Read again on "
             "SIGHUP."},
    {.key = "ca_file",
     .type = CFG_PATH,
     .def = "",
     .offset = offsetof(struct tp_tls_cfg, ca_file),
     .help = "PEM CA certificates for client certificates. When set, "
             "every TLS client must present a certificate signed by one "
             "of them (mutual TLS); empty asks for none. Also verifies the "
             "servers pushpbx connects to when server_ca_file is empty."},
    {.key = "server_ca_file",
     .type = CFG_PATH,
     .def = "",
     .offset = offsetof(struct tp_tls_cfg, server_ca_file),
     .help = "PEM CA certificates that verify the servers pushpbx connects "
             "to over TLS (other [cluster] nodes with a sips: or "
             "transport=tls advertise URI): their certificate must be "
             "signed by one of them and name the address connected to "
             "(subjectAltName IP or DNS). Empty: ca_file when set, else the "
             "system's default CA store. Set this and leave ca_file empty "
             "to verify nodes without asking phones for client "
             "certificates. Read again on SIGHUP."},
    {.key = "min_version",
     .type = CFG_ENUM,
     .def = "1.2",
     .choices = tls_versions,
     .offset = offsetof(struct tp_tls_cfg, min_version),
     .help = "Oldest TLS version accepted: 1.2 or 1.3. TLS 1.0 and 1.1 "
             "are always refused. 1.3 locks out mbedtls-based clients "
             "such as liblinphone 5.1, which speak TLS 1.2 only."},
    {.key = "ciphers",
     .type = CFG_STRING,
     .def = TP_TLS_DEFAULT_CIPHERS,
     .offset = offsetof(struct tp_tls_cfg, ciphers),
     .help = "OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are "
             "OpenSSL's defaults). The default allows only ECDHE with "
             "AES-GCM or ChaCha20-Poly1305."},
};

const struct cfg_section tp_tls_cfg_section = {
    .name = "tls",
    .help = "SIP over TLS: the certificate of the tls: listeners.",
    .options = tls_options,
    .option_count = sizeof(tls_options) / sizeof(tls_options[0]),
    .size = sizeof(struct tp_tls_cfg),
};

struct tp_tls {
    pthread_mutex_t lock;
    SSL_CTX *ctx;  /* current server context; one reference is ours */
    SSL_CTX *cctx; /* current client context (outbound connections) */
    unsigned generation;
    char *cert_file, *key_file, *ca_file, *server_ca_file, *ciphers;
    int min_version;
};

/* The first OpenSSL error as text (and the queue cleared). */
static const char *
ssl_reason(char *buf, size_t cap)
{
    unsigned long e = ERR_get_error();

    if (e == 0)
        snprintf(buf, cap, "unknown error");
    else
        ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
    return buf;
}

static int
ctx_build(const struct tp_tls *t, SSL_CTX **out, char *err, size_t errlen)
{
    char why[256];
    SSL_CTX *ctx;

    ERR_clear_error();
    if (!t->cert_file[0] || !t->key_file[0]) {
        snprintf(err, errlen,
                 "[tls] cert_file and key_file are required for a tls: "
                 "listener");
        return -EINVAL;
    }
    ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "SSL_CTX_new: %s", ssl_reason(why, sizeof(why)));
        return -ENOMEM;
    }
    SSL_CTX_set_min_proto_version(ctx, t->min_version == 1 ? TLS1_3_VERSION
                                                           : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
    /* No SSL_MODE_RELEASE_BUFFERS: a busy connection keeps its record
     * buffers, a quiet one has them freed by tp.c (SSL_free_buffers). */
    /* No server-side session cache (its memory grows with clients);
     * resumption still works with stateless tickets. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"pushpbx", 7);
    SSL_CTX_set_num_tickets(ctx, 1);
    if (t->ciphers[0] && SSL_CTX_set_cipher_list(ctx, t->ciphers) != 1) {
        snprintf(err, errlen, "[tls] ciphers '%s': %s", t->ciphers,
                 ssl_reason(why, sizeof(why)));
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, t->cert_file) != 1) {
        snprintf(err, errlen, "%s: %s", t->cert_file,
                 ssl_reason(why, sizeof(why)));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, t->key_file, SSL_FILETYPE_PEM) != 1) {
        snprintf(err, errlen, "%s: %s", t->key_file,
                 ssl_reason(why, sizeof(why)));
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "%s does not match %s: %s", t->key_file,
                 t->cert_file, ssl_reason(why, sizeof(why)));
        goto fail;
    }
    if (t->ca_file[0]) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->ca_file);
        if (SSL_CTX_load_verify_locations(ctx, t->ca_file, NULL) != 1 ||
            !names) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            snprintf(err, errlen, "%s: %s", t->ca_file,
                     ssl_reason(why, sizeof(why)));
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(
            ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    *out = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    return -EINVAL;
}

/* The client context of outbound connections: the same versions and
 * ciphers; the server's certificate verified (server_ca_file, else ca_file,
 * else the system's store; the host is checked per connection); cert_file
 * presented when the server asks for a client certificate. */
static int
cctx_build(const struct tp_tls *t, SSL_CTX **out, char *err, size_t errlen)
{
    const char *ca = t->server_ca_file[0] ? t->server_ca_file : t->ca_file;
    char why[256];
    SSL_CTX *ctx;

    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "SSL_CTX_new: %s", ssl_reason(why, sizeof(why)));
        return -ENOMEM;
    }
    SSL_CTX_set_min_proto_version(ctx, t->min_version == 1 ? TLS1_3_VERSION
                                                           : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    if (t->ciphers[0] && SSL_CTX_set_cipher_list(ctx, t->ciphers) != 1) {
        snprintf(err, errlen, "[tls] ciphers '%s': %s", t->ciphers,
                 ssl_reason(why, sizeof(why)));
        goto fail;
    }
    if (ca[0] ? SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1
              : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        snprintf(err, errlen, "%s: %s", ca[0] ? ca : "default CA store",
                 ssl_reason(why, sizeof(why)));
        goto fail;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* Checked by ctx_build just before. */
    if (SSL_CTX_use_certificate_chain_file(ctx, t->cert_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, t->key_file, SSL_FILETYPE_PEM) != 1) {
        snprintf(err, errlen, "%s: %s", t->cert_file,
                 ssl_reason(why, sizeof(why)));
        goto fail;
    }
    *out = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    return -EINVAL;
}

/* Both contexts, or neither (err says why). */
static int
ctxs_build(const struct tp_tls *t, SSL_CTX **ctx, SSL_CTX **cctx, char *err,
           size_t errlen)
{
    int rc = ctx_build(t, ctx, err, errlen);

    if (rc < 0)
        return rc;
    rc = cctx_build(t, cctx, err, errlen);
    if (rc < 0) {
        SSL_CTX_free(*ctx);
        *ctx = NULL;
    }
    return rc;
}

int
tp_tls_new(const struct tp_tls_cfg *cfg, struct tp_tls **out, char *err,
           size_t errlen)
{
    struct tp_tls *t = xcalloc(1, sizeof(*t));
    int rc;

    pthread_mutex_init(&t->lock, NULL);
    t->cert_file = xstrdup(cfg->cert_file ? cfg->cert_file : "");
    t->key_file = xstrdup(cfg->key_file ? cfg->key_file : "");
    t->ca_file = xstrdup(cfg->ca_file ? cfg->ca_file : "");
    t->server_ca_file = xstrdup(cfg->server_ca_file ? cfg->server_ca_file : "");
    t->ciphers = xstrdup(cfg->ciphers ? cfg->ciphers : "");
    t->min_version = cfg->min_version;
    rc = ctxs_build(t, &t->ctx, &t->cctx, err, errlen);
    if (rc < 0) {
        tp_tls_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int
tp_tls_reload(struct tp_tls *t, char *err, size_t errlen)
{
    SSL_CTX *ctx, *cctx, *old, *cold;
    int rc = ctxs_build(t, &ctx, &cctx, err, errlen);

    if (rc < 0)
        return rc;
    pthread_mutex_lock(&t->lock);
    old = t->ctx;
    cold = t->cctx;
    t->ctx = ctx;
    t->cctx = cctx;
    t->generation++;
    pthread_mutex_unlock(&t->lock);
    SSL_CTX_free(old); /* open connections hold their own references */
    SSL_CTX_free(cold);
    return 0;
}

unsigned
tp_tls_generation(const struct tp_tls *t)
{
    return t->generation;
}

void
tp_tls_free(struct tp_tls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    SSL_CTX_free(t->cctx);
    pthread_mutex_destroy(&t->lock);
    free(t->cert_file);
    free(t->key_file);
    free(t->ca_file);
    free(t->server_ca_file);
    free(t->ciphers);
    free(t);
}

/* ---- the connection's BIO ------------------------------------------------ */

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static int
bio_write(BIO *b, const char *p, int len)
{
    struct tp_tls_io *io = BIO_get_data(b);

    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    io->out(io->arg, p, (size_t)len);
    return len;
}

static int
bio_read(BIO *b, char *p, int len)
{
    struct tp_tls_io *io = BIO_get_data(b);
    size_t n;

    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    if (io->in_len == 0) {
        BIO_set_retry_read(b); /* the next uv read brings more */
        return -1;
    }
    n = io->in_len < (size_t)len ? io->in_len : (size_t)len;
    memcpy(p, io->in, n);
    io->in += n;
    io->in_len -= n;
    return (int)n;
}

static long
bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    struct tp_tls_io *io = BIO_get_data(b);

    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        return io ? (long)io->in_len : 0;
    case BIO_CTRL_WPENDING:
        return 0;
    default:
        return 0;
    }
}

static int
bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void
bio_method_init(void)
{
    bio_method =
        BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "pushpbx-uv");
    if (!bio_method)
        abort(); /* out of memory at start-up */
    BIO_meth_set_write(bio_method, bio_write);
    BIO_meth_set_read(bio_method, bio_read);
    BIO_meth_set_ctrl(bio_method, bio_ctrl);
    BIO_meth_set_create(bio_method, bio_create);
}

/* An SSL object on t's current server or client context with io as its
 * BIO. */
static SSL *
ssl_new(struct tp_tls *t, struct tp_tls_io *io, bool client)
{
    SSL *ssl;
    BIO *bio;

    pthread_once(&bio_once, bio_method_init);
    pthread_mutex_lock(&t->lock);
    ssl = SSL_new(client ? t->cctx : t->ctx); /* takes a reference */
    pthread_mutex_unlock(&t->lock);
    if (!ssl)
        return NULL;
    bio = BIO_new(bio_method);
    if (!bio) {
        SSL_free(ssl);
        return NULL;
    }
    BIO_set_data(bio, io);
    SSL_set_bio(ssl, bio, bio); /* one BIO both ways; ssl owns it */
    return ssl;
}

SSL *
tp_tls_ssl_new(struct tp_tls *t, struct tp_tls_io *io)
{
    SSL *ssl = ssl_new(t, io, false);

    if (ssl)
        SSL_set_accept_state(ssl);
    return ssl;
}

SSL *
tp_tls_client_new(struct tp_tls *t, struct tp_tls_io *io, const char *host)
{
    unsigned char ip[16];
    SSL *ssl = ssl_new(t, io, true);
    bool literal =
        inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;

    if (!ssl)
        return NULL;
    /* RFC 6066 §3: no SNI for an address literal; the certificate must
     * then name the address (subjectAltName IP, RFC 5922 §7.1 falls back
     * to it), else the host name (subjectAltName DNS). */
    if (literal ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1
                : (SSL_set_tlsext_host_name(ssl, host) != 1 ||
                   SSL_set1_host(ssl, host) != 1)) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_connect_state(ssl);
    return ssl;
}

const char *
tp_tls_fail_reason(SSL *ssl, char *buf, size_t cap)
{
    long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    unsigned long e = ERR_peek_last_error();

    if (v != X509_V_OK) {
        snprintf(buf, cap, "certificate verify failed: %s",
                 X509_verify_cert_error_string(v));
    } else {
        const char *r = e ? ERR_reason_error_string(e) : NULL;
        snprintf(buf, cap, "%s", r ? r : "protocol error");
    }
    ERR_clear_error();
    return buf;
}

int
tp_tls_check(const struct tp_tls_cfg *cfg, char *err, size_t errlen)
{
    struct tp_tls *t;
    int rc = tp_tls_new(cfg, &t, err, errlen);

    if (rc < 0)
        return rc;
    X509 *leaf = SSL_CTX_get0_certificate(t->ctx);
    if (!leaf) {
        snprintf(err, errlen, "%s: no certificate", t->cert_file);
        rc = -EINVAL;
    } else if (X509_cmp_current_time(X509_get0_notAfter(leaf)) <= 0) {
        snprintf(err, errlen, "%s: the certificate has expired",
                 t->cert_file);
        rc = -EINVAL;
    } else if (X509_cmp_current_time(X509_get0_notBefore(leaf)) >= 0) {
        snprintf(err, errlen, "%s: the certificate is not valid yet",
                 t->cert_file);
        rc = -EINVAL;
    }
    tp_tls_free(t);
    return rc;
}
