/*
 * tq: timer queues for one worker, loop-agnostic (no libuv in base).
 *
 * Two kinds of queue share one struct tq:
 *  - FIFO queues (struct tq_fifo) for fixed timeouts. Every entry added to
 *    one FIFO gets due = now + the same timeout, and "now" is monotonic, so
 *    insertion order is deadline order: add and cancel are O(1) and only the
 *    head is ever looked at (sofia-sip's nta keeps one queue per transaction
 *    state the same way). Timers B, D, F, H, I, J, K, L, M and the TCP idle
 *    timeout live here.
 *  - A binary min-heap for arbitrary deadlines (doubling timers A, E, G).
 *    Ties are broken by insertion sequence, like libuv's timer start_id, so
 *    equal deadlines fire in the order they were set.
 *
 * The owner (a worker with one uv_timer) asks tq_next_due() for the earliest
 * deadline, sleeps until then and calls tq_run(). A notify hook tells it when
 * a newly added entry becomes the earliest, so it can re-arm its timer.
 *
 * Entries are intrusive: embed struct tq_entry, get back to the owner with
 * container_of. Nothing here allocates except the heap's pointer array
 * (amortised growth, xrealloc). Expected load: a few entries per live
 * transaction, tens of thousands per worker at most; next_due is
 * O(number of FIFOs), which is a handful.
 *
 * One owner thread; not thread-safe.
 */
#ifndef PUSHPBX_BASE_TQ_H
#define PUSHPBX_BASE_TQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/list.h"

#define TQ_NEVER UINT64_MAX

struct tq_entry;
struct tq;

/* Called when the entry is due. The entry is already disarmed, so the
 * callback may re-arm it, cancel other entries or free its owner. */
typedef void tq_cb(struct tq_entry *e);
/* Called when the earliest deadline of q may have moved earlier. */
typedef void tq_notify_cb(struct tq *q, void *arg);

struct tq_entry {          /* embedded; touch only through tq_* */
    struct list_node node; /* FIFO link */
    uint64_t due_ms;
    uint64_t seq;    /* heap tie-break */
    size_t heap_idx; /* position in the heap */
    struct tq *q;    /* queue that holds it, NULL when disarmed */
    bool in_heap;
    tq_cb *cb;
};

struct tq_fifo { /* embedded; one per fixed timeout */
    struct list_node entries;
    struct list_node link; /* in tq->fifos */
    uint64_t timeout_ms;
    struct tq *q;
};

struct tq {
    struct tq_entry **heap;
    size_t heap_count, heap_alloc;
    uint64_t seq;
    struct list_node fifos;
    tq_notify_cb *notify;
    void *notify_arg;
};

void tq_init(struct tq *q);
/* Disarms nothing: every entry must have been cancelled or fired, and every
 * FIFO removed with tq_fifo_fini, before tq_fini. */
void tq_fini(struct tq *q);
void tq_set_notify(struct tq *q, tq_notify_cb *cb, void *arg);

/* A FIFO with a fixed timeout, attached to q until tq_fifo_fini. */
void tq_fifo_init(struct tq *q, struct tq_fifo *f, uint64_t timeout_ms);
/* Cancels any entry still queued in f, then detaches f. */
void tq_fifo_fini(struct tq_fifo *f);

void tq_entry_init(struct tq_entry *e, tq_cb *cb);
static inline bool
tq_armed(const struct tq_entry *e)
{
    return e->q != NULL;
}

/* Arm e at now_ms + f->timeout_ms (re-arming moves it to the tail). now_ms
 * must not go backwards between calls (use the loop's monotonic time). */
void tq_fifo_add(struct tq_fifo *f, struct tq_entry *e, uint64_t now_ms);
/* Arm e at due_ms in the heap (re-arming replaces the old deadline). */
void tq_heap_add(struct tq *q, struct tq_entry *e, uint64_t due_ms);
/* Disarm e; does nothing if it is not armed. O(1) for FIFO, O(log n) heap. */
void tq_cancel(struct tq_entry *e);

/* Earliest deadline of any armed entry, TQ_NEVER when none. */
uint64_t tq_next_due(const struct tq *q);
/* Fire entries due at or before now_ms, earliest first, at most max of them
 * (0 = no bound). Entries armed by callbacks with a deadline <= now_ms fire
 * in the same call. Returns how many fired. */
size_t tq_run(struct tq *q, uint64_t now_ms, size_t max);

#endif
