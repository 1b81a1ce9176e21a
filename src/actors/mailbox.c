/*
 * mailbox.c: the actor mailbox (see mailbox.h): Vyukov's intrusive MPSC queue
 * with a stub node, and the "marked empty" bit in the low bit of head that
 * turns a push into "was the actor idle?" without a second atomic.
 *
 * Shape: producers append at head by exchanging it; the consumer walks from
 * tail along the `next` links. The stub keeps at least one node in the list so
 * the last real message can be handed out: when the consumer reaches the last
 * node it pushes the stub behind it first. A producer that has exchanged head
 * but not yet written the link leaves a short gap; the consumer sees NULL and
 * retries later (mark_empty refuses in that state, so nothing is lost).
 *
 * Nodes are at least 8-byte aligned (malloc'ed act_msg_t), so bit 0 of a node
 * address is free for the mark.
 */
#include "actors/mailbox.h"

#include <assert.h>

#define MARK ((uintptr_t)1)

static inline act_msg_t *
node_of(uintptr_t v)
{
    return (act_msg_t *)(v & ~MARK);
}

/* Appends m; returns the previous head word (node address and mark bit). */
static inline uintptr_t
push_node(act_mailbox_t *mb, act_msg_t *m)
{
    /* relaxed: published by the release half of the exchange below to whoever
     * links after m, and by the release link store to the consumer. */
    atomic_store_explicit(&m->next, NULL, memory_order_relaxed);
    /* acq_rel: release so the next producer, which gets m from this exchange,
     * writes m->next only after our NULL store above (else our NULL could land
     * after its link and cut the list); acquire for the same reason the other
     * way round: the previous node's NULL store happens before our link store.
     * Acquire also pairs with the consumer's release in mark_empty, so the
     * scheduler that we may wake sees everything the last turn wrote. */
    uintptr_t prev = atomic_exchange_explicit(&mb->head, (uintptr_t)m, memory_order_acq_rel);
    /* release: the consumer reaches m through this link with an acquire load,
     * and must see m's payload (type, data, ...) written before act_send. */
    atomic_store_explicit(&node_of(prev)->next, m, memory_order_release);
    return prev;
}

void
act_mailbox_init(act_mailbox_t *mb)
{
    /* relaxed: the mailbox is not shared yet; the registry's mutex publishes it. */
    atomic_store_explicit(&mb->stub.next, NULL, memory_order_relaxed);
    atomic_store_explicit(&mb->head, (uintptr_t)&mb->stub | MARK, memory_order_relaxed);
    mb->tail = &mb->stub;
}

bool
act_mailbox_push(act_mailbox_t *mb, act_msg_t *m)
{
    return (push_node(mb, m) & MARK) != 0;
}

act_msg_t *
act_mailbox_peek(act_mailbox_t *mb)
{
    act_msg_t *tail = mb->tail;
    /* acquire: as in act_mailbox_pop, the node's payload must be visible. */
    if (tail == &mb->stub)
        return atomic_load_explicit(&tail->next, memory_order_acquire);
    return tail; /* the oldest node not yet popped, linked before we saw it */
}

act_msg_t *
act_mailbox_pop(act_mailbox_t *mb)
{
    act_msg_t *tail = mb->tail;
    /* acquire (here and below): pairs with the producer's release link store,
     * so the node we hand out has its payload visible. */
    act_msg_t *next = atomic_load_explicit(&tail->next, memory_order_acquire);

    if (tail == &mb->stub) {
        if (next == NULL)
            return NULL; /* empty (or first push not linked yet) */
        /* Step over the stub; it is re-pushed when it is needed again. */
        mb->tail = next;
        tail = next;
        next = atomic_load_explicit(&next->next, memory_order_acquire);
    }
    if (next != NULL) {
        mb->tail = next;
        return tail;
    }

    /* tail is the last linked node. If it is also head, no producer is between
     * exchange and link, so park the stub behind tail and hand tail out.
     * relaxed: the value is only compared, never dereferenced; a stale value
     * equal to tail just leads to a stub push, which is safe in any state. */
    uintptr_t head = atomic_load_explicit(&mb->head, memory_order_relaxed);
    if (node_of(head) != tail)
        return NULL; /* a producer is mid-push: retry later */

    /* Only the owner pops, and an owned mailbox is never marked, so this
     * push cannot eat a mark meant for a sender. */
    uintptr_t prev = push_node(mb, &mb->stub);
    assert((prev & MARK) == 0);
    (void)prev;

    next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (next != NULL) {
        mb->tail = next;
        return tail;
    }
    return NULL; /* a producer slipped in between; its link will appear shortly */
}

bool
act_mailbox_mark_empty(act_mailbox_t *mb)
{
    /* Empty means the consumer stands on the stub and the stub is still the
     * last node pushed. tail == stub alone is not enough: a producer may have
     * exchanged head and not linked yet (then head != stub and the CAS fails);
     * head == stub alone is not enough either: the stub may have been pushed
     * behind a node whose own link is still pending (then tail != stub). */
    if (mb->tail != &mb->stub)
        return false;
    uintptr_t expect = (uintptr_t)&mb->stub;
    /* release on success: everything the owner did during its turn (tail,
     * actor fields) happens before the next pusher (acquire exchange) schedules
     * the actor again, and before a reclaimer (acquire load) frees it.
     * relaxed on failure: we keep ownership and learn nothing from the value. */
    return atomic_compare_exchange_strong_explicit(&mb->head, &expect, expect | MARK,
                                                   memory_order_release, memory_order_relaxed);
}

bool
act_mailbox_is_marked_empty(act_mailbox_t *mb)
{
    /* acquire: pairs with mark_empty's release, so a reclaimer that sees the
     * mark also sees the last owner's writes and may free the actor. */
    return (atomic_load_explicit(&mb->head, memory_order_acquire) & MARK) != 0;
}
