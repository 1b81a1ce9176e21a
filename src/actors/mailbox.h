/*
 * mailbox.h: the actor mailbox, an intrusive multi-producer single-consumer
 * FIFO over act_msg_t's `next` link (private to src/actors).
 *
 * The queue is Vyukov's intrusive MPSC list with a stub node, plus Pony's
 * "marked empty" bit kept in the low bit of the head pointer. The bit is the
 * scheduling token: the consumer sets it (act_mailbox_mark_empty) only when the
 * queue is really empty, and the first push afterwards clears it and learns,
 * in the same atomic exchange, that it made the queue non-empty (was_empty).
 * So exactly one sender per idle period schedules the actor, and a push that
 * races with the consumer going idle can never be stranded.
 *
 * Threads: push from any thread; pop and mark_empty from the one consumer that
 * currently owns the actor (the scheduling token).
 */
#ifndef SHOPD_ACTORS_MAILBOX_H
#define SHOPD_ACTORS_MAILBOX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "shopd/actors.h"

typedef struct act_mailbox_s act_mailbox_t;
struct act_mailbox_s {
    /** Last pushed node, with bit 0 set while the queue is marked empty.
     *  Written by producers (exchange) and by the consumer (stub push, mark). */
    _Atomic(uintptr_t) head;
    /* Keeps the consumer's tail off the producers' cache line. Padding rather
     * than _Alignas: actors come from plain malloc, which only promises 16. */
    char pad_[64 - sizeof(uintptr_t)];
    /** Oldest node not yet popped (or the stub). Consumer only. */
    act_msg_t *tail;
    /** Placeholder node that keeps the list non-empty; never handed out. */
    act_msg_t stub;
};

/** Initialises an empty mailbox, already marked empty (no one owns it yet), so
 *  the first push returns true. */
void act_mailbox_init(act_mailbox_t *mb);

/** Appends m (any thread). Returns true when the mailbox was marked empty, i.e.
 *  this push made it non-empty and the caller must schedule its consumer. */
bool act_mailbox_push(act_mailbox_t *mb, act_msg_t *m);

/** Removes the oldest message (consumer only). NULL when the mailbox is empty,
 *  or when a producer has swapped itself in but not yet linked its node; in the
 *  second case act_mailbox_mark_empty() fails, so the consumer retries later. */
act_msg_t *act_mailbox_pop(act_mailbox_t *mb);

/** The message act_mailbox_pop would return next, left in place (consumer only).
 *  NULL when the mailbox is empty or its oldest push is not linked yet; a message
 *  peeked is the one the next pop returns, unless that pop finds a producer
 *  mid-push behind it and returns NULL. */
act_msg_t *act_mailbox_peek(act_mailbox_t *mb);

/** Consumer only. If the mailbox is empty, marks it so and returns true: the
 *  caller gives up ownership and must not touch the mailbox (or what embeds it)
 *  again, since the next pusher may schedule it elsewhere at once. Returns false
 *  when messages are queued or in flight: the caller keeps ownership. */
bool act_mailbox_mark_empty(act_mailbox_t *mb);

/** True while the mailbox is marked empty (no owner, nothing queued). Any thread;
 *  only stable while pushes are excluded by the caller (the registry shard lock). */
bool act_mailbox_is_marked_empty(act_mailbox_t *mb);

#endif
