/*
 * slice: a borrowed view of bytes (pointer + length). Never owns, never
 * NUL-terminated. The SIP parser hands out slices into the received buffer,
 * so a slice is valid only while that buffer lives.
 */
#ifndef PUSHPBX_BASE_SLICE_H
#define PUSHPBX_BASE_SLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

struct slice {
    const char *ptr;
    size_t len;
};

#define SLICE_LIT(s) ((struct slice){ (s), sizeof(s) - 1 })
#define SLICE_NULL ((struct slice){ NULL, 0 })
#define SLICE_FMT "%.*s"
#define SLICE_ARG(s) (int)(s).len, (s).ptr

static inline struct slice
slice_make(const char *p, size_t len)
{
    return (struct slice){ p, len };
}

static inline struct slice
slice_cstr(const char *s)
{
    return (struct slice){ s, s ? strlen(s) : 0 };
}

static inline bool
slice_empty(struct slice s)
{
    return s.len == 0;
}

static inline bool
slice_eq(struct slice a, struct slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static inline bool
slice_eq_cstr(struct slice a, const char *s)
{
    return slice_eq(a, slice_cstr(s));
}

/* Value of a hexadecimal digit (either case), or -1. */
static inline int
hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* ASCII case-insensitive comparison (SIP tokens, header names). */
bool slice_eq_nocase(struct slice a, struct slice b);

/* The same against a C string. Inline so that a literal's length is
 * known at compile time (no strlen) and a length mismatch costs no
 * call: header and parameter names are compared against literals on
 * every message. */
static inline bool
slice_eq_nocase_cstr(struct slice a, const char *s)
{
    size_t n = s ? strlen(s) : 0;

    return a.len == n && slice_eq_nocase(a, (struct slice){ s, n });
}

/* Trim SP, HTAB, CR, LF at both ends. */
struct slice slice_trim(struct slice s);

/* Parse an unsigned decimal with no sign, no spaces. Returns 0, or -ERANGE
 * above max, -EINVAL when s is empty or has a non-digit. */
int slice_to_u64(struct slice s, unsigned long long max,
                 unsigned long long *out);

/* Copy into a NUL-terminated buffer of size cap; truncates. Returns dst. */
char *slice_to_cstr(struct slice s, char *dst, size_t cap);

#endif
