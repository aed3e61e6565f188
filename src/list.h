/* list.h — the one intrusive doubly linked list of src/: each member embeds
 * an sk_list node, the head is a pointer to the first node (NULL when
 * empty), and unlinking is O(1) from the node alone. Every per-loop list of
 * handles (connections, servers, datagram sockets, processes, io, signal and
 * async watchers) uses it instead of its own copy of the pointer surgery. */
#ifndef SOCKIT_LIST_H
#define SOCKIT_LIST_H

#include <stddef.h>

typedef struct sk_list {
    struct sk_list *prev, *next;
} sk_list;

/* The member that holds node, or NULL for a NULL node (the end of a list). */
#define SK_LIST_ITEM(node, type, member)                                                           \
    ((node) ? (type *)(void *)((char *)(node)-offsetof(type, member)) : (type *)NULL)

/* Puts n first in the list at *head. */
static inline void sk__list_push(sk_list **head, sk_list *n)
{
    n->prev = NULL;
    n->next = *head;
    if (*head)
        (*head)->prev = n;
    *head = n;
}

/* Takes n out of the list at *head. A node that is first in no list (its
 * list was dropped wholesale) leaves the head alone. */
static inline void sk__list_remove(sk_list **head, sk_list *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else if (*head == n)
        *head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    n->prev = n->next = NULL;
}

#endif
