/*
 * xmalloc: allocation that never returns NULL. Running out of memory is
 * fatal (style.md §4): the process logs and aborts. Growth that input can
 * drive is capped elsewhere and answered, so this removes branches no test
 * could reach.
 */
#ifndef PUSHPBX_BASE_XMALLOC_H
#define PUSHPBX_BASE_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
