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

#endif
