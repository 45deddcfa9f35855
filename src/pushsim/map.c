/*
 * map: a chained hash map from byte strings to owned values, for pushsim's
 * token sets (dead tokens, seen JWTs, issued access tokens). These are
 * looked up on every push, so lookups are O(1); the table doubles when it
 * holds as many entries as buckets. Callers cap the entry count. Not
 * thread-safe: each map has one owner (or is used under a lock).
 */
#include <stdlib.h>
#include <string.h>

#include "base/xmalloc.h"
#include "pushsim/pushsim_int.h"

static uint64_t
hash_bytes(struct slice s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */

    for (size_t i = 0; i < s.len; i++) {
        h ^= (unsigned char)s.ptr[i];
        h *= 1099511628211ull;
    }
    return h;
}

void
psim_map_init(struct psim_map *m, psim_map_free_fn *free_val)
{
    m->nbuckets = 64;
    m->buckets = xcalloc(m->nbuckets, sizeof(*m->buckets));
    m->count = 0;
    m->free_val = free_val;
}

static void
entry_free(struct psim_map *m, struct psim_map_entry *e)
{
    if (m->free_val != NULL)
        m->free_val(e->val);
    free(e->key);
    free(e);
}

void
psim_map_clear(struct psim_map *m)
{
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct psim_map_entry *e = m->buckets[i];
        while (e != NULL) {
            struct psim_map_entry *next = e->next;
            entry_free(m, e);
            e = next;
        }
        m->buckets[i] = NULL;
    }
    m->count = 0;
}

void
psim_map_fini(struct psim_map *m)
{
    if (m->buckets == NULL)
        return;
    psim_map_clear(m);
    free(m->buckets);
    m->buckets = NULL;
}

static struct psim_map_entry **
find_slot(const struct psim_map *m, struct slice key, uint64_t h)
{
    struct psim_map_entry **pp = &m->buckets[h & (m->nbuckets - 1)];

    for (; *pp != NULL; pp = &(*pp)->next) {
        struct psim_map_entry *e = *pp;
        if (e->hash == h && e->key_len == key.len &&
            memcmp(e->key, key.ptr, key.len) == 0)
            break;
    }
    return pp;
}

void *
psim_map_get(const struct psim_map *m, struct slice key)
{
    struct psim_map_entry *e = *find_slot(m, key, hash_bytes(key));

    return e != NULL ? e->val : NULL;
}

static void
grow(struct psim_map *m)
{
    size_t n = m->nbuckets * 2;
    struct psim_map_entry **b = xcalloc(n, sizeof(*b));

    for (size_t i = 0; i < m->nbuckets; i++) {
        struct psim_map_entry *e = m->buckets[i];
        while (e != NULL) {
            struct psim_map_entry *next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = n;
}

void
psim_map_put(struct psim_map *m, struct slice key, void *val)
{
    uint64_t h = hash_bytes(key);
    struct psim_map_entry **pp = find_slot(m, key, h);
    struct psim_map_entry *e = *pp;

    if (e != NULL) {
        if (m->free_val != NULL)
            m->free_val(e->val);
        e->val = val;
        return;
    }
    e = xmalloc(sizeof(*e));
    e->hash = h;
    e->key = xstrndup(key.ptr, key.len);
    e->key_len = key.len;
    e->val = val;
    e->next = NULL;
    *pp = e;
    m->count++;
    if (m->count > m->nbuckets)
        grow(m);
}

void
psim_map_del(struct psim_map *m, struct slice key)
{
    struct psim_map_entry **pp = find_slot(m, key, hash_bytes(key));
    struct psim_map_entry *e = *pp;

    if (e == NULL)
        return;
    *pp = e->next;
    entry_free(m, e);
    m->count--;
}

void
psim_map_sweep(struct psim_map *m, bool (*fn)(void *val, void *arg), void *arg)
{
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct psim_map_entry **pp = &m->buckets[i];
        while (*pp != NULL) {
            struct psim_map_entry *e = *pp;
            if (fn(e->val, arg)) {
                *pp = e->next;
                entry_free(m, e);
                m->count--;
            } else {
                pp = &e->next;
            }
        }
    }
}
