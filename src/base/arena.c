/*
 * arena: chunked bump allocator; see arena.h. Chunks are singly linked, the
 * newest first. A request larger than a chunk gets a chunk of its own, so
 * large bodies do not waste the rest of the current chunk.
 */
#include "base/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/xmalloc.h"

struct arena_chunk {
    struct arena_chunk *next;
    size_t size;
    _Alignas(16) char data[];
};

void
arena_init(struct arena *a, size_t cap)
{
    memset(a, 0, sizeof(*a));
    a->cap = cap;
}

static void
free_chunks(struct arena_chunk *c)
{
    while (c) {
        struct arena_chunk *next = c->next;
        free(c);
        c = next;
    }
}

void
arena_fini(struct arena *a)
{
    free_chunks(a->chunks);
    memset(a, 0, sizeof(*a));
}

void
arena_reset(struct arena *a)
{
#ifdef PUSHPBX_SANITIZE
    free_chunks(a->chunks);
    a->chunks = NULL;
    a->cur = a->end = NULL;
#else
    struct arena_chunk *keep = NULL;

    /* Keep the oldest standard-size chunk: it is the one steady load uses. */
    for (struct arena_chunk *c = a->chunks, *next; c; c = next) {
        next = c->next;
        if (!keep && c->size == ARENA_CHUNK_SIZE && !next) {
            keep = c;
            continue;
        }
        free(c);
    }
    a->chunks = keep;
    if (keep) {
        keep->next = NULL;
        a->cur = keep->data;
        a->end = keep->data + keep->size;
    } else {
        a->cur = a->end = NULL;
    }
#endif
    a->used = 0;
}

void *
arena_alloc(struct arena *a, size_t size)
{
    size_t need;
    struct arena_chunk *c;

    if (size > SIZE_MAX / 2) /* no message asks for this: refuse, not wrap */
        return NULL;
    need = (size + 15) & ~(size_t)15;
    if (need == 0)
        need = 16;
    if (a->cap && (need > a->cap || a->used > a->cap - need))
        return NULL;
    a->used += need;
#ifndef PUSHPBX_SANITIZE
    if ((size_t)(a->end - a->cur) >= need) {
        void *p = a->cur;
        a->cur += need;
        return p;
    }
    if (need <= ARENA_CHUNK_SIZE / 4) {
        c = xmalloc(sizeof(*c) + ARENA_CHUNK_SIZE);
        c->size = ARENA_CHUNK_SIZE;
        c->next = a->chunks;
        a->chunks = c;
        a->cur = c->data + need;
        a->end = c->data + c->size;
        return c->data;
    }
#endif
    /* Large (or sanitizer build): a chunk of its own, linked behind the
     * current one so the bump pointer keeps its chunk. */
    c = xmalloc(sizeof(*c) + need);
    c->size = need;
    if (a->chunks) {
        c->next = a->chunks->next;
        a->chunks->next = c;
    } else {
        c->next = NULL;
        a->chunks = c;
    }
    return c->data;
}

char *
arena_strndup(struct arena *a, const char *s, size_t n)
{
    char *p = arena_alloc(a, n + 1);
    if (!p)
        return NULL;
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

struct slice
arena_slice_dup(struct arena *a, struct slice s)
{
    char *p = arena_strndup(a, s.ptr, s.len);
    return p ? slice_make(p, s.len) : SLICE_NULL;
}
