/*
 * media/bencode: zero-copy bencode decoder into a node array and a small
 * encoder onto struct buf (see bencode.h). The decoder is recursive with
 * the depth bounded by the caller (32 by default), so the stack it can use
 * is small and fixed; each byte of input is looked at once.
 */
#include "media/bencode.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

struct dec {
    const char *p, *end, *start;
    struct media_benc *nodes;
    size_t cap, used, max_depth;
    const char *why;
    int err;
};

static int
fail(struct dec *d, int err, const char *why)
{
    if (d->err == 0) {
        d->err = err;
        d->why = why;
    }
    return err;
}

/* Decimal digits up to stop; canonical (no leading zero unless the number
 * is 0), at most max. */
static int
read_uint(struct dec *d, char stop, uint64_t max, uint64_t *out)
{
    const char *s = d->p;
    uint64_t v = 0;

    while (d->p < d->end && *d->p != stop) {
        char c = *d->p;
        if (c < '0' || c > '9')
            return fail(d, -EINVAL, "bencode: bad digit");
        if (v > (max - (uint64_t)(c - '0')) / 10)
            return fail(d, -EINVAL, "bencode: number out of range");
        v = v * 10 + (uint64_t)(c - '0');
        d->p++;
    }
    if (d->p >= d->end)
        return fail(d, -EINVAL, "bencode: truncated number");
    if (d->p == s)
        return fail(d, -EINVAL, "bencode: empty number");
    if (*s == '0' && d->p - s > 1)
        return fail(d, -EINVAL, "bencode: leading zero");
    d->p++; /* stop */
    *out = v;
    return 0;
}

static int value(struct dec *d, size_t depth, uint32_t *idx);

static int
new_node(struct dec *d, enum media_benc_type t, uint32_t *idx)
{
    if (d->used >= d->cap)
        return fail(d, -E2BIG, "bencode: too many elements");
    *idx = (uint32_t)d->used++;
    d->nodes[*idx] = (struct media_benc){.type = t};
    return 0;
}

static int
string(struct dec *d, uint32_t *idx)
{
    uint64_t n;
    int rc;

    if ((rc = read_uint(d, ':', MEDIA_BENC_MAX_STR, &n)) < 0)
        return rc;
    if (n > (uint64_t)(d->end - d->p))
        return fail(d, -EINVAL, "bencode: string past the end");
    if ((rc = new_node(d, MEDIA_BENC_STR, idx)) < 0)
        return rc;
    d->nodes[*idx].str = slice_make(d->p, (size_t)n);
    d->p += n;
    return 0;
}

static int
integer(struct dec *d, uint32_t *idx)
{
    bool neg = false;
    uint64_t v;
    int rc;

    d->p++; /* 'i' */
    if (d->p < d->end && *d->p == '-') {
        neg = true;
        d->p++;
    }
    if ((rc = read_uint(d, 'e', neg ? (uint64_t)INT64_MAX + 1 : INT64_MAX,
                        &v)) < 0)
        return rc;
    if (neg && v == 0)
        return fail(d, -EINVAL, "bencode: negative zero");
    if ((rc = new_node(d, MEDIA_BENC_INT, idx)) < 0)
        return rc;
    d->nodes[*idx].num = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

static int
container(struct dec *d, size_t depth, enum media_benc_type t, uint32_t *idx)
{
    const char *begin = d->p;
    uint32_t me, prev = 0, kid;
    size_t items = 0;
    int rc;

    if (depth >= d->max_depth)
        return fail(d, -E2BIG, "bencode: nested too deep");
    if ((rc = new_node(d, t, &me)) < 0)
        return rc;
    d->p++; /* 'l' or 'd' */
    for (;;) {
        if (d->p >= d->end)
            return fail(d, -EINVAL, "bencode: unterminated container");
        if (*d->p == 'e')
            break;
        if (t == MEDIA_BENC_DICT && (items % 2) == 0 &&
            (*d->p < '0' || *d->p > '9'))
            return fail(d, -EINVAL, "bencode: dict key is not a string");
        if ((rc = value(d, depth + 1, &kid)) < 0)
            return rc;
        if (prev == 0)
            d->nodes[me].child = kid;
        else
            d->nodes[prev].next = kid;
        prev = kid;
        items++;
    }
    d->p++; /* 'e' */
    if (t == MEDIA_BENC_DICT && items % 2 != 0)
        return fail(d, -EINVAL, "bencode: dict key without value");
    d->nodes[me].count = (uint32_t)(t == MEDIA_BENC_DICT ? items / 2 : items);
    d->nodes[me].str = slice_make(begin, (size_t)(d->p - begin));
    *idx = me;
    return 0;
}

static int
value(struct dec *d, size_t depth, uint32_t *idx)
{
    if (d->p >= d->end)
        return fail(d, -EINVAL, "bencode: truncated");
    switch (*d->p) {
    case 'i':
        if (depth >= d->max_depth)
            return fail(d, -E2BIG, "bencode: nested too deep");
        return integer(d, idx);
    case 'l':
        return container(d, depth, MEDIA_BENC_LIST, idx);
    case 'd':
        return container(d, depth, MEDIA_BENC_DICT, idx);
    default:
        if (*d->p >= '0' && *d->p <= '9') {
            if (depth >= d->max_depth)
                return fail(d, -E2BIG, "bencode: nested too deep");
            return string(d, idx);
        }
        return fail(d, -EINVAL, "bencode: bad value type");
    }
}

int
media_benc_decode(const char *p, size_t len, struct media_benc *nodes,
                  size_t cap, size_t max_depth, size_t *count,
                  const char **why)
{
    struct dec d = {
        .p = p,
        .end = p + len,
        .start = p,
        .nodes = nodes,
        .cap = cap > UINT32_MAX ? UINT32_MAX : cap,
        .max_depth = max_depth ? max_depth : MEDIA_BENC_MAX_DEPTH,
    };
    uint32_t root;

    *count = 0;
    if (why)
        *why = NULL;
    if (p == NULL && len > 0)
        return -EINVAL;
    if (value(&d, 0, &root) == 0 && d.p != d.end)
        fail(&d, -EINVAL, "bencode: trailing bytes");
    if (d.err) {
        if (why)
            *why = d.why;
        return d.err;
    }
    *count = d.used;
    return 0;
}

const struct media_benc *
media_benc_first(const struct media_benc *nodes, const struct media_benc *c)
{
    if (c == NULL || (c->type != MEDIA_BENC_LIST && c->type != MEDIA_BENC_DICT)
        || c->child == 0)
        return NULL;
    return &nodes[c->child];
}

const struct media_benc *
media_benc_next(const struct media_benc *nodes, const struct media_benc *n)
{
    if (n == NULL || n->next == 0)
        return NULL;
    return &nodes[n->next];
}

const struct media_benc *
media_benc_get(const struct media_benc *nodes, const struct media_benc *d,
               const char *key)
{
    if (d == NULL || d->type != MEDIA_BENC_DICT)
        return NULL;
    struct slice k = slice_cstr(key);
    for (const struct media_benc *n = media_benc_first(nodes, d); n;) {
        const struct media_benc *v = media_benc_next(nodes, n);
        if (v == NULL)
            return NULL;
        if (slice_eq(n->str, k))
            return v;
        n = media_benc_next(nodes, v);
    }
    return NULL;
}

const struct media_benc *
media_benc_get_type(const struct media_benc *nodes, const struct media_benc *d,
                    const char *key, enum media_benc_type t)
{
    const struct media_benc *v = media_benc_get(nodes, d, key);
    return v && v->type == t ? v : NULL;
}

struct slice
media_benc_get_str(const struct media_benc *nodes, const struct media_benc *d,
                   const char *key)
{
    const struct media_benc *v =
        media_benc_get_type(nodes, d, key, MEDIA_BENC_STR);
    return v ? v->str : SLICE_NULL;
}

bool
media_benc_get_int(const struct media_benc *nodes, const struct media_benc *d,
                   const char *key, int64_t *out)
{
    const struct media_benc *v =
        media_benc_get_type(nodes, d, key, MEDIA_BENC_INT);
    if (v == NULL)
        return false;
    *out = v->num;
    return true;
}

int
media_benc_str(struct buf *b, struct slice s)
{
    int rc = buf_printf(b, "%zu:", s.len);
    return rc < 0 ? rc : buf_append(b, s.ptr, s.len);
}

int
media_benc_cstr(struct buf *b, const char *s)
{
    return media_benc_str(b, slice_cstr(s));
}

int
media_benc_int(struct buf *b, int64_t v)
{
    return buf_printf(b, "i%" PRId64 "e", v);
}

int
media_benc_list(struct buf *b)
{
    return buf_append(b, "l", 1);
}

int
media_benc_dict(struct buf *b)
{
    return buf_append(b, "d", 1);
}

int
media_benc_end(struct buf *b)
{
    return buf_append(b, "e", 1);
}

int
media_benc_kv(struct buf *b, const char *key, struct slice value)
{
    int rc = media_benc_cstr(b, key);
    return rc < 0 ? rc : media_benc_str(b, value);
}
