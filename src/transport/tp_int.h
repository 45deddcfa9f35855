/*
 * transport/tp_int: declarations shared by tp.c and tp_tls.c only.
 */
#ifndef PUSHPBX_TRANSPORT_TP_INT_H
#define PUSHPBX_TRANSPORT_TP_INT_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "transport/tp.h"

/* What a connection's BIO reads from and writes to (embedded in the
 * connection, borrowed by the BIO for the SSL object's lifetime). in/in_len
 * is the ciphertext of the current read callback, consumed by SSL; out is
 * called with every ciphertext chunk SSL writes. */
struct tp_tls_io {
    const char *in;
    size_t in_len;
    void (*out)(void *arg, const char *p, size_t len);
    void *arg;
};

/* A server-side SSL object on t's current context with io as its BIO.
 * Returns NULL on allocation failure. Any thread. */
SSL *tp_tls_ssl_new(struct tp_tls *t, struct tp_tls_io *io);
/* A client-side SSL object on t's current client context, io as its BIO,
 * for a connection to host (numeric address or DNS name): the server's
 * certificate must chain to the configured CAs and name host (an IP
 * literal is checked against the subjectAltName IP entries and sent no
 * SNI; a name is sent as SNI and checked against the DNS entries).
 * Returns NULL on allocation failure or a host OpenSSL refuses. Any
 * thread. */
SSL *tp_tls_client_new(struct tp_tls *t, struct tp_tls_io *io,
                       const char *host);
/* Why a handshake on ssl (may be NULL) failed, into buf: the certificate
 * verification's error when that failed, else the last OpenSSL error.
 * Clears the thread's error queue. Returns buf. */
const char *tp_tls_fail_reason(SSL *ssl, char *buf, size_t cap);

#endif
