/* buf: capped growable buffer; see buf.h. */
#include "base/buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/xmalloc.h"

void
buf_init(struct buf *b, size_t cap)
{
    memset(b, 0, sizeof(*b));
    b->cap = cap;
}

void
buf_fini(struct buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

void
buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

static int
reserve(struct buf *b, size_t n)
{
    size_t want;

    if (b->cap && (n > b->cap || b->len > b->cap - n))
        return -EMSGSIZE;
    want = b->len + n + 1;
    if (want <= b->alloc)
        return 0;
    size_t na = b->alloc ? b->alloc : 256;
    while (na < want)
        na *= 2;
    b->data = xrealloc(b->data, na);
    b->alloc = na;
    return 0;
}

int
buf_append(struct buf *b, const void *p, size_t n)
{
    int rc = reserve(b, n);
    if (rc < 0)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int
buf_append_slice(struct buf *b, struct slice s)
{
    return buf_append(b, s.ptr, s.len);
}

int
buf_append_cstr(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

/* One vsnprintf into the room the buffer already has; a second one only
 * when the text did not fit (it used to measure first, then write: every
 * call formatted twice). Failures put back the NUL at data[len]. */
int
buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
    size_t room = b->alloc > b->len ? b->alloc - b->len : 0;
    va_list ap2;
    int n, rc;

    va_copy(ap2, ap);
    n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap2);
    va_end(ap2);
    if (n >= 0 && (size_t)n < room &&
        !(b->cap && ((size_t)n > b->cap || b->len > b->cap - (size_t)n))) {
        b->len += (size_t)n;
        return 0;
    }
    if (room)
        b->data[b->len] = '\0';
    if (n < 0)
        return -EINVAL;
    rc = reserve(b, (size_t)n);
    if (rc < 0)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

size_t
fmt_u64(char *out, unsigned long long v)
{
    char tmp[20];
    size_t n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

int
buf_append_u64(struct buf *b, unsigned long long v)
{
    char d[20];

    return buf_append(b, d, fmt_u64(d, v));
}

int
buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}
