/*
 * tq: FIFO timer queues for fixed timeouts plus one binary heap for the
 * rest (see tq.h for why both). The heap is an array of entry pointers
 * with each entry remembering its index, so cancel is O(log n) without a
 * search; ordering is (due_ms, seq).
 */
#include "base/tq.h"

#include <assert.h>
#include <stdlib.h>

#include "base/xmalloc.h"

void
tq_init(struct tq *q)
{
    q->heap = NULL;
    q->heap_count = q->heap_alloc = 0;
    q->seq = 0;
    list_init(&q->fifos);
    q->notify = NULL;
    q->notify_arg = NULL;
}

void
tq_fini(struct tq *q)
{
    assert(q->heap_count == 0);
    free(q->heap);
    q->heap = NULL;
    q->heap_alloc = 0;
}

void
tq_set_notify(struct tq *q, tq_notify_cb *cb, void *arg)
{
    q->notify = cb;
    q->notify_arg = arg;
}

void
tq_fifo_init(struct tq *q, struct tq_fifo *f, uint64_t timeout_ms)
{
    list_init(&f->entries);
    f->timeout_ms = timeout_ms;
    f->q = q;
    list_push_back(&q->fifos, &f->link);
}

void
tq_fifo_fini(struct tq_fifo *f)
{
    struct list_node *n, *tmp;

    list_for_each_safe(n, tmp, &f->entries)
    {
        tq_cancel(container_of(n, struct tq_entry, node));
    }
    list_remove(&f->link);
}

void
tq_entry_init(struct tq_entry *e, tq_cb *cb)
{
    list_init(&e->node);
    e->due_ms = 0;
    e->seq = 0;
    e->heap_idx = 0;
    e->q = NULL;
    e->in_heap = false;
    e->cb = cb;
}

static bool
before(const struct tq_entry *a, const struct tq_entry *b)
{
    if (a->due_ms != b->due_ms)
        return a->due_ms < b->due_ms;
    return a->seq < b->seq;
}

static void
heap_set(struct tq *q, size_t i, struct tq_entry *e)
{
    q->heap[i] = e;
    e->heap_idx = i;
}

static void
sift_up(struct tq *q, size_t i)
{
    struct tq_entry *e = q->heap[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(e, q->heap[parent]))
            break;
        heap_set(q, i, q->heap[parent]);
        i = parent;
    }
    heap_set(q, i, e);
}

static void
sift_down(struct tq *q, size_t i)
{
    struct tq_entry *e = q->heap[i];

    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, min = i;
        const struct tq_entry *m = e;
        if (l < q->heap_count && before(q->heap[l], m)) {
            min = l;
            m = q->heap[l];
        }
        if (r < q->heap_count && before(q->heap[r], m))
            min = r;
        if (min == i)
            break;
        heap_set(q, i, q->heap[min]);
        i = min;
    }
    heap_set(q, i, e);
}

static void
heap_remove(struct tq *q, struct tq_entry *e)
{
    size_t i = e->heap_idx;

    assert(i < q->heap_count && q->heap[i] == e);
    q->heap_count--;
    if (i != q->heap_count) {
        heap_set(q, i, q->heap[q->heap_count]);
        /* The moved entry may belong above or below i; sift_up after a
         * sift_down that moved it is a no-op on the child now at i. */
        sift_down(q, i);
        sift_up(q, i);
    }
}

void
tq_cancel(struct tq_entry *e)
{
    if (e->q == NULL)
        return;
    if (e->in_heap)
        heap_remove(e->q, e);
    else
        list_remove(&e->node);
    e->q = NULL;
    e->in_heap = false;
}

static void
notify_if_first(struct tq *q, const struct tq_entry *e)
{
    if (q->notify != NULL && tq_next_due(q) == e->due_ms)
        q->notify(q, q->notify_arg);
}

void
tq_fifo_add(struct tq_fifo *f, struct tq_entry *e, uint64_t now_ms)
{
    tq_cancel(e);
    e->due_ms = now_ms + f->timeout_ms;
    /* Deadline order holds only if now never goes backwards. */
    assert(list_empty(&f->entries) ||
           container_of(f->entries.prev, struct tq_entry, node)->due_ms <=
               e->due_ms);
    list_push_back(&f->entries, &e->node);
    e->q = f->q;
    e->in_heap = false;
    notify_if_first(f->q, e);
}

void
tq_heap_add(struct tq *q, struct tq_entry *e, uint64_t due_ms)
{
    tq_cancel(e);
    if (q->heap_count == q->heap_alloc) {
        q->heap_alloc = q->heap_alloc ? 2 * q->heap_alloc : 64;
        q->heap = xrealloc(q->heap, q->heap_alloc * sizeof(*q->heap));
    }
    e->due_ms = due_ms;
    e->seq = q->seq++;
    e->q = q;
    e->in_heap = true;
    heap_set(q, q->heap_count, e);
    q->heap_count++;
    sift_up(q, e->heap_idx);
    notify_if_first(q, e);
}

/* Earliest entry: the heap top or one of the FIFO heads. O(#FIFOs). */
static struct tq_entry *
earliest(const struct tq *q)
{
    struct tq_entry *best = q->heap_count ? q->heap[0] : NULL;
    const struct list_node *n;

    for (n = q->fifos.next; n != &q->fifos; n = n->next) {
        const struct tq_fifo *f = container_of(n, struct tq_fifo, link);
        if (list_empty(&f->entries))
            continue;
        struct tq_entry *h =
            container_of(f->entries.next, struct tq_entry, node);
        if (best == NULL || h->due_ms < best->due_ms)
            best = h;
    }
    return best;
}

uint64_t
tq_next_due(const struct tq *q)
{
    const struct tq_entry *e = earliest(q);

    return e ? e->due_ms : TQ_NEVER;
}

size_t
tq_run(struct tq *q, uint64_t now_ms, size_t max)
{
    size_t fired = 0;

    while (max == 0 || fired < max) {
        struct tq_entry *e = earliest(q);
        if (e == NULL || e->due_ms > now_ms)
            break;
        tq_cancel(e);
        fired++;
        e->cb(e); /* may free e's owner: do not touch e after this */
    }
    return fired;
}
