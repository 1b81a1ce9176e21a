/*
 * arena.h: a memory arena per request message (nginx's pool, in shopd's
 * words). Handlers allocate from it without freeing, and register the
 * non-memory things they hold (a PGresult, a redisReply) as cleanups; the
 * dispatcher frees the whole arena once the message's reply is posted, so no
 * path of a handler has to remember a PQclear.
 *
 * Two builds of the same contract:
 * - chunked (the default): a bump pointer in chunks, the first of 4 KiB,
 *   later ones doubling up to 64 KiB; an allocation too large for a normal
 *   chunk gets a chunk of its own, so it neither wastes the current chunk's
 *   tail nor makes the next chunks grow.
 * - malloc (CMake option SHOPD_ARENA_MALLOC, ON by itself in the Asan and Tsan
 *   builds and the fuzzers): every allocation is a separate malloc, tracked in
 *   a list and freed by arena_reset/arena_free, so AddressSanitizer sees an
 *   overflow of each allocation and any use after the arena let it go.
 * Code written against this header behaves the same in both.
 *
 * Every allocation is aligned for max_align_t. Allocation never returns NULL:
 * like shopd_malloc, exhaustion logs one line and aborts.
 *
 * Threads: an arena belongs to one thread at a time and has no lock. It may
 * change threads only through a hand-off that orders memory (a mailbox push,
 * a mutex), never be used by two at once. Cleanups run on the thread that
 * calls arena_reset or arena_free.
 *
 * Nothing allocated from an arena may outlive it: in particular a reply posted
 * to the I/O thread must copy what it needs (api_json, api_raw_json do).
 */
#ifndef SHOPD_ARENA_H
#define SHOPD_ARENA_H

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct arena_s arena_t;

/** A cleanup: called once with the pointer it was registered with. */
typedef void (*arena_cleanup_fn)(void *ptr);

/** Size of the first chunk when arena_new is given 0. */
#define ARENA_FIRST_CHUNK 4096

/** A new empty arena whose first chunk holds first_chunk bytes (0: ARENA_FIRST_CHUNK).
 *  The caller owns it and frees it with arena_free. Any thread. */
arena_t *arena_new(size_t first_chunk);

/** Runs the cleanups (last registered first, each once), then frees the arena and
 *  everything allocated from it. Accepts NULL. The owning thread. */
void arena_free(arena_t *a);

/** Runs the cleanups like arena_free, then forgets every allocation but keeps the
 *  arena for the next message: the first chunk is kept (and reused), later chunks
 *  are freed. Pointers from before the reset are dead. In the malloc build every
 *  allocation is freed, so a use after reset is caught. The owning thread. */
void arena_reset(arena_t *a);

/** n bytes (uninitialised), aligned for max_align_t, valid until the arena is reset
 *  or freed. n may be 0 (a unique pointer that must not be dereferenced). Never NULL. */
void *arena_alloc(arena_t *a, size_t n);

/** nmemb * size zeroed bytes, like calloc (an overflowing product aborts). Never NULL. */
void *arena_calloc(arena_t *a, size_t nmemb, size_t size);

/** A copy of the NUL-terminated s in the arena; NULL if s is NULL. */
char *arena_strdup(arena_t *a, const char *s);

/** A NUL-terminated copy of at most n bytes of s (stops at a NUL in s); NULL if s is NULL. */
char *arena_strndup(arena_t *a, const char *s, size_t n);

/** printf into the arena: the formatted, NUL-terminated string. Never NULL. */
char *arena_sprintf(arena_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** arena_sprintf with a va_list (ap is consumed). */
char *arena_vsprintf(arena_t *a, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/** Registers fn(ptr) to run when the arena is reset or freed. Cleanups run in reverse
 *  order of registration, each exactly once; a cleanup may allocate from the arena or
 *  register another cleanup (which then runs in the same pass). fn must not be NULL. */
void arena_cleanup(arena_t *a, arena_cleanup_fn fn, void *ptr);

/** Makes r the arena's: PQclear(r) runs at reset or free. Returns r (NULL stays NULL
 *  and registers nothing), so a statement reads
 *  `PGresult *r = arena_pgresult(ctx->arena, db_exec(...));` and no path clears it. */
PGresult *arena_pgresult(arena_t *a, PGresult *r);

/** Same for a hiredis reply: freeReplyObject(r) at reset or free. Returns r. */
redisReply *arena_redis_reply(arena_t *a, redisReply *r);

/** What an arena holds (for tests and metrics). */
typedef struct arena_stats_s {
    size_t blocks;   /**< chunks held (chunked) or allocations held (malloc build) */
    size_t reserved; /**< bytes obtained from malloc for those blocks */
    size_t used;     /**< bytes handed out since the last reset, alignment included */
    size_t cleanups; /**< cleanups registered and not yet run */
} arena_stats_t;

/** Fills *out with a's current figures. The owning thread. */
void arena_stats(const arena_t *a, arena_stats_t *out);

/** True in the malloc build (SHOPD_ARENA_MALLOC), false in the chunked one. */
bool arena_malloc_mode(void);

#endif
