/*
 * buf: an owned, growable byte buffer with a cap (like curl's dynbuf: it
 * cannot exist without a limit). Used to build outgoing messages.
 * Invariant: data[len] == '\0' whenever data != NULL, so a built message
 * can be printed in logs.
 */
#ifndef PUSHPBX_BASE_BUF_H
#define PUSHPBX_BASE_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "base/slice.h"

struct buf {
    char *data;
    size_t len;
    size_t alloc;
    size_t cap; /* maximum len; 0 = unlimited */
};

void buf_init(struct buf *b, size_t cap);
void buf_fini(struct buf *b);
void buf_reset(struct buf *b); /* len = 0, keeps memory */
/* Each returns 0, or -EMSGSIZE when the cap would be exceeded (b is then
 * unchanged). */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_append_slice(struct buf *b, struct slice s);
int buf_append_cstr(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* v in decimal, without printf (hot paths: status codes, lengths,
 * ports). */
int buf_append_u64(struct buf *b, unsigned long long v);

/* The decimal digits of v into out, which has room for 20; no NUL.
 * Returns how many (1..20). */
size_t fmt_u64(char *out, unsigned long long v);

static inline struct slice
buf_slice(const struct buf *b)
{
    return slice_make(b->data, b->len);
}

#endif
