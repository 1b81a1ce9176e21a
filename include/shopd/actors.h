/*
 * actors.h: the actor runtime. One actor per store (store id 0 is the
 * platform actor), each with a bounded multi-producer single-consumer mailbox,
 * run by a pool of worker threads. An actor runs on at most one worker at a
 * time, so a store's messages are handled one turn after another, in the order
 * they were sent. A turn hands the handler up to `batch_max` queued messages at
 * once so it can commit them together (one transaction, one Redis pipeline).
 *
 * Threads: act_send() from any thread. Handlers run on workers. Actors are
 * created on first send and reclaimed after `idle_reclaim_ms` with an empty
 * mailbox.
 */
#ifndef SHOPD_ACTORS_H
#define SHOPD_ACTORS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "shopd/common.h"

/** Store id of the platform actor (cross-store work: store CRUD, tenant lookups). */
#define ACT_PLATFORM_ID 0u

/* Actor ids. The runtime only needs a distinct 64-bit key per actor; shopd gives
 * each store several: lane 0 is the store's actor proper (its mutations, in
 * order), lanes 1..255 are extra actors of the same store whose messages need no
 * order among themselves (reads), so one store can keep several workers busy
 * while the run queue still takes turns across stores. The low 56 bits are the
 * store id (the stores.id sequence stops below 2^56, migration 0006). */
#define ACT_LANE_SHIFT 56
#define ACT_STORE_MASK ((UINT64_C(1) << ACT_LANE_SHIFT) - 1)
#define ACT_MAX_LANES 256u
/** The actor id of lane `lane` (0..255) of store `store`. */
#define ACT_ID(store, lane)                                                                        \
    (((uint64_t)(lane) << ACT_LANE_SHIFT) | ((uint64_t)(store)&ACT_STORE_MASK))
/** The store an actor id belongs to. */
#define ACT_STORE_OF(id) ((uint64_t)(id)&ACT_STORE_MASK)
/** The lane of an actor id (0: the store's ordered actor). */
#define ACT_LANE_OF(id) ((unsigned)((uint64_t)(id) >> ACT_LANE_SHIFT))

typedef struct act_msg_s act_msg_t;
/** A message. Once act_send() accepts it, it belongs to the runtime, and then to
 *  the handler, which must free it with act_msg_free(). */
struct act_msg_s {
    _Atomic(act_msg_t *) next; /**< intrusive mailbox link; runtime only */
    uint32_t type;             /**< message type, defined by the application */
    uint64_t store_id; /**< destination actor id (ACT_ID(store, lane)); ACT_PLATFORM_ID for the
                          platform */
    char *data;        /**< payload (a msgpack envelope); owned, freed with the message */
    size_t len;
    void *reply_to;       /**< opaque reply route (the sending I/O thread), may be NULL */
    uint64_t reply_token; /**< opaque token for reply_to */
    uint64_t enqueued_us; /**< set by act_send (monotonic), for queue-time metrics */
    /** Called by the runtime, before freeing it, on a message it drops unhandled (left
     *  in a mailbox at stop), so a payload that owns more than its bytes (a handle,
     *  an answer route) can release it. NULL: nothing to do. */
    void (*on_drop)(act_msg_t *m);
};

/** New message; takes ownership of data (allocated with shopd_malloc, may be NULL). */
act_msg_t *act_msg_new(uint32_t type, uint64_t store_id, char *data, size_t len);
/** Frees the message and its data. Accepts NULL. */
void act_msg_free(act_msg_t *m);

typedef struct act_system_s act_system_t;
typedef struct act_worker_s act_worker_t;

/** One actor turn: msgs[0..n-1] (1 <= n <= the actor's batch limit) from the mailbox
 *  of actor store_id (an actor id: ACT_STORE_OF gives the store), oldest first. Runs
 *  on a worker thread; the handler owns and frees the messages. */
typedef void (*act_handler_fn)(act_worker_t *w, uint64_t store_id, act_msg_t **msgs, size_t n,
                               void *ud);
/** Called once on each worker thread before it runs anything; the result is that
 *  worker's private state (database/Redis connections...). */
typedef void *(*act_worker_init_fn)(int index, void *ud);
/** Called once on each worker thread as it exits. */
typedef void (*act_worker_fini_fn)(void *wstate, void *ud);
/** The most messages one turn of actor `id` may take (clamped to 1..batch_max).
 *  Lets an application give batching actors long turns and latency-sensitive ones
 *  short turns, so a worker returns to the run queue (other stores) sooner. Any
 *  worker thread; must be cheap and pure. */
typedef size_t (*act_batch_fn)(uint64_t id, void *ud);
/** Past the actor's batch_for limit, may its turn take one more message? `first` is
 *  the turn's first message, `next` the mailbox's oldest (still queued), n the
 *  messages taken so far (< batch_max). Lets a turn grow for messages that cost
 *  less together (a read lane's pages built in one pipeline) while other turns stay
 *  short. Any worker thread; must be cheap and pure. */
typedef bool (*act_more_fn)(uint64_t id, const act_msg_t *first, const act_msg_t *next, size_t n,
                            void *ud);
/** The group an actor belongs to (shopd: its store, ACT_STORE_OF). Pure, cheap. */
typedef uint64_t (*act_group_fn)(uint64_t id);

typedef struct act_config_s {
    int workers;              /**< worker threads, >= 1 */
    size_t mailbox_cap;       /**< max queued messages per actor; more is refused (SHOPD_BUSY) */
    size_t batch_max;         /**< max messages per turn (and per handler call) */
    unsigned idle_reclaim_ms; /**< an actor idle this long with an empty mailbox is freed */
    act_handler_fn handler;
    act_worker_init_fn worker_init; /**< may be NULL */
    act_worker_fini_fn worker_fini; /**< may be NULL */
    act_batch_fn batch_for;         /**< may be NULL: every actor takes up to batch_max */
    act_more_fn more;               /**< may be NULL: batch_for's limit is the limit */
    /** Fairness across groups (may be NULL/0: plain FIFO). A worker taking the next
     *  actor skips those whose group already runs group_cap actors, if an actor
     *  of another group is ready; when none is, it takes the head anyway, so the
     *  cap never leaves a worker idle. One store's lanes can then use every
     *  worker alone and at most group_cap of them while other stores wait. */
    act_group_fn group_of;
    unsigned group_cap;
    void *ud; /**< passed to the callbacks */
} act_config_t;

/** Counters summed over the runtime, read with relaxed atomics (approximate). */
typedef struct act_stats_s {
    uint64_t actors;       /**< live actors */
    uint64_t queued;       /**< messages in all mailboxes now */
    uint64_t max_depth;    /**< deepest mailbox now */
    uint64_t processed;    /**< messages handed to the handler so far */
    uint64_t turns;        /**< handler calls so far */
    uint64_t rejected;     /**< sends refused because a mailbox was full */
    uint64_t reclaimed;    /**< idle actors freed so far */
    uint64_t busy_workers; /**< workers running a turn now */
    int workers;
} act_stats_t;

/** Creates the runtime (no threads yet). Returns NULL on invalid config. */
/** One actor as act_system_visit sees it (approximate: read with relaxed atomics). */
typedef struct act_actor_info_s {
    uint64_t id;            /**< ACT_ID(store, lane) */
    size_t depth;           /**< messages in its mailbox */
    uint64_t idle_since_us; /**< monotonic time its last turn ended (or it was created) */
    uint64_t turns;         /**< turns it has run */
    uint64_t processed;     /**< messages its turns took */
    uint32_t last_batch;    /**< messages its last turn took */
} act_actor_info_t;

act_system_t *act_system_new(const act_config_t *cfg);
/** Starts the worker threads. Returns 0 or -1. */
int act_system_start(act_system_t *sys);
/** Queues m for the actor m->store_id, creating the actor if needed. On SHOPD_OK the
 *  runtime owns m. On SHOPD_BUSY (mailbox full) or SHOPD_UNAVAILABLE (stopping) the
 *  caller still owns m. Any thread, including handlers (to forward a message). */
shopd_rc_t act_send(act_system_t *sys, act_msg_t *m);
/** Stops accepting sends, lets the workers drain every mailbox until deadline_ms has
 *  passed, then joins the workers. Messages still queued at the deadline are freed
 *  unhandled; returns how many. Call once, from a non-worker thread. */
size_t act_system_stop(act_system_t *sys, unsigned deadline_ms);
/** Frees a stopped runtime. Accepts NULL. */
void act_system_free(act_system_t *sys);
/** Stats snapshot. Any thread. */
void act_system_stats(act_system_t *sys, act_stats_t *out);
/** Calls fn for every live actor, under the lock of its registry shard: fn must be
 *  quick and must not call into the runtime (an actor being created or reclaimed
 *  on that shard waits meanwhile). For the admin's actors.list. Any thread. */
void act_system_visit(act_system_t *sys, void (*fn)(void *ud, const act_actor_info_t *a), void *ud);

/** The worker's private state (from worker_init). Worker thread only. */
void *act_worker_state(act_worker_t *w);
/** The worker's index, 0..workers-1. */
int act_worker_index(act_worker_t *w);
/** The runtime a worker belongs to (to forward messages from a handler). */
act_system_t *act_worker_system(act_worker_t *w);

#endif
