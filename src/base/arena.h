/*
 * arena: a chunked bump allocator with a byte cap, for per-message work.
 * Everything allocated from it dies together at arena_reset/arena_fini, so
 * parsers need no frees. The cap bounds what one hostile message can make us
 * allocate: arena_alloc returns NULL only when the cap is reached, and the
 * caller answers that as a limit (e.g. 400/513), never as OOM.
 *
 * In the sanitizer build (PUSHPBX_SANITIZE) every allocation is a separate
 * malloc so ASan sees overflows past an allocation.
 *
 * One owner thread; not thread-safe.
 */
#ifndef PUSHPBX_BASE_ARENA_H
#define PUSHPBX_BASE_ARENA_H

#include <stddef.h>

#include "base/slice.h"

struct arena_chunk;

struct arena { /* embedded by owners; touch only through arena_* */
    char *cur, *end;
    struct arena_chunk *chunks;
    size_t used; /* bytes handed out since the last reset */
    size_t cap;  /* 0 = no cap */
};

#define ARENA_CHUNK_SIZE 4096

void arena_init(struct arena *a, size_t cap);
void arena_fini(struct arena *a);
/* Free everything but keep the first chunk for reuse. */
void arena_reset(struct arena *a);
/* 16-byte aligned; NULL only when the cap would be exceeded (or for an
 * absurd size above SIZE_MAX / 2). */
void *arena_alloc(struct arena *a, size_t size);
/* Copy bytes into the arena; NUL-terminated for convenience. NULL at cap. */
char *arena_strndup(struct arena *a, const char *s, size_t n);
/* Copy a slice into the arena; returns SLICE_NULL with ptr NULL at cap. */
struct slice arena_slice_dup(struct arena *a, struct slice s);

#endif
