/*
 * media/bencode: the encoding of rtpengine's ng control protocol (the
 * BitTorrent bencode: 4:spam, i42e, l...e, d...e).
 *
 * The decoder parses network input (an rtpengine answer, or anything that
 * reaches the client's socket), so it is zero-copy and bounded: it writes
 * nodes into a caller-supplied array (no allocation), strings are slices
 * into the input, nesting is limited to depth levels and the node count to
 * the array's size. Any violation is an error with a static reason; the
 * input is never written. Every node lies within the input
 * (tests/fuzz/fuzz_bencode.c checks it).
 *
 * The encoder appends to a capped struct buf; containers are opened with
 * media_benc_list/media_benc_dict and closed with media_benc_end. Keys are
 * written in the order given (rtpengine looks keys up; it does not need the
 * canonical sorted order).
 *
 * No libuv, no I/O: this file and ng.c form the libuv-free codec library
 * (pp_media_codec) that the fuzz target links. Any thread.
 */
#ifndef PUSHPBX_MEDIA_BENCODE_H
#define PUSHPBX_MEDIA_BENCODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/slice.h"

enum media_benc_type {
    MEDIA_BENC_STR,
    MEDIA_BENC_INT,
    MEDIA_BENC_LIST,
    MEDIA_BENC_DICT,
};

/* One decoded value. Children are other nodes of the same array, linked by
 * index; index 0 is the root, so 0 also means "none" for child and next. A
 * dict's children alternate key (always a string) and value. */
struct media_benc {
    enum media_benc_type type;
    struct slice str; /* STR: the bytes; LIST/DICT: the whole encoding */
    int64_t num;      /* INT */
    uint32_t child;   /* LIST/DICT: first child, 0 when empty */
    uint32_t next;    /* next sibling, 0 at the end */
    uint32_t count;   /* LIST: items; DICT: key/value pairs */
};

/* Limits of a decode (also the defaults the ng client uses). */
#define MEDIA_BENC_MAX_DEPTH 32
#define MEDIA_BENC_MAX_STR (1u << 20) /* one string, bytes */

/* Decode exactly one value filling all of p[0..len). nodes[0..cap) receives
 * the tree (root at index 0) and *count the number used. max_depth bounds
 * nesting (1: a bare string or integer or an empty container; 0 means
 * MEDIA_BENC_MAX_DEPTH). Returns 0, or -EINVAL with *why (may be NULL) set
 * to a static reason for malformed input or trailing bytes, -E2BIG when
 * more than cap nodes or deeper than max_depth. Integers must fit int64
 * and be canonical ("i-0e", "i03e" are refused); string lengths too
 * ("03:abc" is refused). */
int media_benc_decode(const char *p, size_t len, struct media_benc *nodes,
                      size_t cap, size_t max_depth, size_t *count,
                      const char **why);

/* The value of key in dict d (NULL when d is not a dict or has no such key;
 * the first match wins). Linear in the dict's size, which is small for ng
 * answers. nodes is the array d lives in. */
const struct media_benc *media_benc_get(const struct media_benc *nodes,
                                        const struct media_benc *d,
                                        const char *key);
/* The same, and only when the value has type t. */
const struct media_benc *media_benc_get_type(const struct media_benc *nodes,
                                             const struct media_benc *d,
                                             const char *key,
                                             enum media_benc_type t);
/* A child by link: media_benc_first(nodes, c) is the first child of a list
 * or dict (NULL when empty or not a container), media_benc_next the
 * following sibling (NULL at the end). */
const struct media_benc *media_benc_first(const struct media_benc *nodes,
                                          const struct media_benc *c);
const struct media_benc *media_benc_next(const struct media_benc *nodes,
                                         const struct media_benc *n);
/* String value of key in d, or SLICE_NULL (with ptr NULL) when absent or
 * not a string. */
struct slice media_benc_get_str(const struct media_benc *nodes,
                                const struct media_benc *d, const char *key);
/* Integer value of key in d; false when absent or not an integer. */
bool media_benc_get_int(const struct media_benc *nodes,
                        const struct media_benc *d, const char *key,
                        int64_t *out);

/* Encoder. Each returns 0 or -EMSGSIZE when b's cap would be exceeded (b
 * may then hold a partial value: the caller discards it). */
int media_benc_str(struct buf *b, struct slice s);
int media_benc_cstr(struct buf *b, const char *s);
int media_benc_int(struct buf *b, int64_t v);
int media_benc_list(struct buf *b);
int media_benc_dict(struct buf *b);
int media_benc_end(struct buf *b);
/* key then string value: the common dict entry. */
int media_benc_kv(struct buf *b, const char *key, struct slice value);

#endif
