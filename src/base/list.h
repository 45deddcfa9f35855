/*
 * list: intrusive doubly linked list (circular, with a head node), plus
 * container_of. Nodes are embedded in their owners, so linking and
 * unlinking never allocate and removal is O(1).
 */
#ifndef PUSHPBX_BASE_LIST_H
#define PUSHPBX_BASE_LIST_H

#include <stdbool.h>
#include <stddef.h>

#define container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

struct list_node {
    struct list_node *prev, *next;
};

static inline void
list_init(struct list_node *head)
{
    head->prev = head->next = head;
}

static inline bool
list_empty(const struct list_node *head)
{
    return head->next == head;
}

/* A node that was initialised or removed is not linked. */
static inline bool
list_linked(const struct list_node *n)
{
    return n->next != NULL && n->next != n;
}

static inline void
list_insert_before(struct list_node *pos, struct list_node *n)
{
    n->prev = pos->prev;
    n->next = pos;
    pos->prev->next = n;
    pos->prev = n;
}

static inline void
list_push_back(struct list_node *head, struct list_node *n)
{
    list_insert_before(head, n);
}

static inline void
list_push_front(struct list_node *head, struct list_node *n)
{
    list_insert_before(head->next, n);
}

static inline void
list_remove(struct list_node *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

#define list_for_each_safe(pos, tmp, head)                         \
    for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); \
         (pos) = (tmp), (tmp) = (pos)->next)

#endif
