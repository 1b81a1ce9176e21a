/*
 * arena.c: the per-message arena (include/shopd/arena.h). Owns its chunks (or,
 * in the malloc build, its list of separate allocations) and the cleanup list;
 * knows nothing of messages: the dispatcher decides when an arena lives.
 *
 * Chunked build: the arena header and its first chunk are one malloc, kept by
 * arena_reset, so a worker that reuses an arena for each message allocates
 * nothing for a small request. Small allocations bump a pointer in the current
 * chunk; when it is full a new chunk twice the last (up to CHUNK_MAX) becomes
 * current. An allocation above a quarter of the next chunk's size gets a chunk
 * of its own, linked beside the others without becoming current.
 *
 * Malloc build (SHOPD_ARENA_MALLOC=1): each allocation is its own malloc of
 * exactly the size asked, remembered in a list node of its own, so the
 * sanitizer's redzones sit right at both ends of every allocation.
 *
 * Cleanup records are allocated from the arena itself; they stay valid while
 * the cleanups run because memory is released only after the last one.
 */
#include "shopd/arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shopd/common.h"

#if defined(SHOPD_ARENA_MALLOC) && SHOPD_ARENA_MALLOC
#define ARENA_MALLOC 1
#else
#define ARENA_MALLOC 0
#endif

#define ALIGN alignof(max_align_t)
#define CHUNK_MAX (64 * 1024)

typedef struct cleanup_s {
    struct cleanup_s *next; /* registered before this one */
    arena_cleanup_fn fn;
    void *ptr;
} cleanup_t;

#if ARENA_MALLOC
typedef struct block_s {
    struct block_s *next;
    void *p;
} block_t;
#else
typedef struct chunk_s {
    struct chunk_s *next;
    size_t size; /* usable bytes in data */
    size_t used;
    max_align_t data[]; /* aligned for anything */
} chunk_t;
#endif

struct arena_s {
    cleanup_t *cleanups; /* newest first: the order they run in */
    size_t ncleanups;
    size_t used;     /* bytes handed out since the last reset */
    size_t reserved; /* bytes held in blocks (chunk headers included) */
    size_t blocks;
#if ARENA_MALLOC
    block_t *allocs; /* newest first */
#else
    chunk_t *cur;      /* where small allocations bump */
    chunk_t *more;     /* every chunk but the first, newest first */
    size_t first_size; /* usable bytes of the first chunk */
    size_t next_size;  /* usable bytes of the next normal chunk */
    chunk_t *first;    /* in the same malloc, right after the header */
#endif
};

static void
too_big(size_t n)
{
    /* Same stance as shopd_malloc: nothing sensible continues without memory. */
    fprintf(stderr, "shopd: arena allocation of %zu bytes is impossible\n", n);
    abort();
}

/* n rounded up to ALIGN; sizes this close to SIZE_MAX cannot be allocated anyway. */
static size_t
round_up(size_t n)
{
    if (n > SIZE_MAX / 2)
        too_big(n);
    return (n + ALIGN - 1) & ~(ALIGN - 1);
}

bool
arena_malloc_mode(void)
{
    return ARENA_MALLOC;
}

#if ARENA_MALLOC

arena_t *
arena_new(size_t first_chunk)
{
    SHOPD_UNUSED(first_chunk);
    return shopd_calloc(1, sizeof(arena_t));
}

void *
arena_alloc(arena_t *a, size_t n)
{
    block_t *b = shopd_malloc(sizeof(*b));
    b->p = shopd_malloc(n ? n : 1); /* exactly n: the redzone starts at p + n */
    b->next = a->allocs;
    a->allocs = b;
    a->used += round_up(n);
    a->reserved += n;
    a->blocks++;
    return b->p;
}

/* Frees every allocation (the cleanups have run). */
static void
release(arena_t *a)
{
    block_t *b = a->allocs;
    while (b != NULL) {
        block_t *next = b->next;
        shopd_free(b->p);
        shopd_free(b);
        b = next;
    }
    a->allocs = NULL;
    a->used = a->reserved = a->blocks = 0;
}

static void
destroy(arena_t *a)
{
    release(a);
    shopd_free(a);
}

char *
arena_vsprintf(arena_t *a, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int len = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (len < 0)
        len = 0; /* an encoding error: an empty string, as snprintf would leave */
    char *s = arena_alloc(a, (size_t)len + 1);
    if (vsnprintf(s, (size_t)len + 1, fmt, ap) < 0)
        s[0] = '\0';
    return s;
}

#else /* chunked */

static void release(arena_t *a);

arena_t *
arena_new(size_t first_chunk)
{
    size_t size = round_up(first_chunk ? first_chunk : ARENA_FIRST_CHUNK);
    size_t head = round_up(sizeof(arena_t)) + sizeof(chunk_t);
    if (size > SIZE_MAX - head)
        too_big(size);
    arena_t *a = shopd_malloc(head + size);
    memset(a, 0, sizeof(*a));
    a->first = (chunk_t *)((unsigned char *)a + round_up(sizeof(arena_t)));
    a->first->next = NULL;
    a->first->size = size;
    a->first_size = size;
    release(a); /* the empty state: first chunk current, nothing else held */
    return a;
}

static chunk_t *
chunk_new(arena_t *a, size_t size)
{
    if (size > SIZE_MAX - sizeof(chunk_t))
        too_big(size);
    chunk_t *c = shopd_malloc(sizeof(chunk_t) + size);
    c->size = size;
    c->used = 0;
    c->next = a->more;
    a->more = c;
    a->reserved += sizeof(chunk_t) + size;
    a->blocks++;
    return c;
}

static void *
bump(chunk_t *c, size_t need)
{
    void *p = (unsigned char *)c->data + c->used;
    c->used += need;
    return p;
}

void *
arena_alloc(arena_t *a, size_t n)
{
    size_t need = round_up(n ? n : 1);
    a->used += need;
    if (a->cur->size - a->cur->used >= need)
        return bump(a->cur, need);
    if (need > a->next_size / 4)
        return bump(chunk_new(a, need), need); /* a chunk of its own */
    a->cur = chunk_new(a, a->next_size);
    if (a->next_size < CHUNK_MAX)
        a->next_size = a->next_size * 2 < CHUNK_MAX ? a->next_size * 2 : CHUNK_MAX;
    return bump(a->cur, need);
}

/* Frees every chunk but the first and empties it (the cleanups have run). */
static void
release(arena_t *a)
{
    chunk_t *c = a->more;
    while (c != NULL) {
        chunk_t *next = c->next;
        shopd_free(c);
        c = next;
    }
    a->more = NULL;
    a->first->used = 0;
    a->cur = a->first;
    size_t size = a->first_size;
    a->next_size = size >= CHUNK_MAX ? size : size * 2 < CHUNK_MAX ? size * 2 : CHUNK_MAX;
    a->used = 0;
    a->reserved = round_up(sizeof(arena_t)) + sizeof(chunk_t) + size;
    a->blocks = 1;
}

static void
destroy(arena_t *a)
{
    release(a);
    shopd_free(a); /* the first chunk goes with the header */
}

char *
arena_vsprintf(arena_t *a, const char *fmt, va_list ap)
{
    /* Try the current chunk's free space first: most strings fit, one pass. */
    chunk_t *c = a->cur;
    size_t avail = c->size - c->used;
    char *dst = (char *)c->data + c->used;
    va_list ap2;
    va_copy(ap2, ap);
    int len = vsnprintf(dst, avail, fmt, ap2);
    va_end(ap2);
    if (len < 0) {
        len = 0; /* an encoding error: an empty string, as snprintf would leave */
    } else if ((size_t)len < avail) {
        /* avail is a multiple of ALIGN (sizes and offsets all are), so this fits */
        size_t need = round_up((size_t)len + 1);
        c->used += need;
        a->used += need;
        return dst;
    }
    char *s = arena_alloc(a, (size_t)len + 1);
    if (vsnprintf(s, (size_t)len + 1, fmt, ap) < 0)
        s[0] = '\0';
    return s;
}

#endif

/* Runs every cleanup once, newest first. A cleanup that registers another pushes
 * it on the head, so the loop runs it too. */
static void
run_cleanups(arena_t *a)
{
    cleanup_t *c;
    while ((c = a->cleanups) != NULL) {
        a->cleanups = c->next;
        a->ncleanups--;
        c->fn(c->ptr);
    }
}

void
arena_free(arena_t *a)
{
    if (a == NULL)
        return;
    run_cleanups(a);
    destroy(a);
}

void
arena_reset(arena_t *a)
{
    if (a == NULL)
        return;
    run_cleanups(a);
    release(a);
}

void *
arena_calloc(arena_t *a, size_t nmemb, size_t size)
{
    if (size != 0 && nmemb > SIZE_MAX / size)
        too_big(SIZE_MAX);
    void *p = arena_alloc(a, nmemb * size);
    memset(p, 0, nmemb * size);
    return p;
}

char *
arena_strndup(arena_t *a, const char *s, size_t n)
{
    if (s == NULL)
        return NULL;
    size_t len = strnlen(s, n);
    char *d = arena_alloc(a, len + 1);
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

char *
arena_strdup(arena_t *a, const char *s)
{
    return s == NULL ? NULL : arena_strndup(a, s, strlen(s));
}

char *
arena_sprintf(arena_t *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = arena_vsprintf(a, fmt, ap);
    va_end(ap);
    return s;
}

void
arena_cleanup(arena_t *a, arena_cleanup_fn fn, void *ptr)
{
    cleanup_t *c = arena_alloc(a, sizeof(*c));
    c->fn = fn;
    c->ptr = ptr;
    c->next = a->cleanups;
    a->cleanups = c;
    a->ncleanups++;
}

static void
clear_pgresult(void *r)
{
    PQclear(r);
}

static void
free_redis_reply(void *r)
{
    freeReplyObject(r);
}

PGresult *
arena_pgresult(arena_t *a, PGresult *r)
{
    if (r != NULL)
        arena_cleanup(a, clear_pgresult, r);
    return r;
}

redisReply *
arena_redis_reply(arena_t *a, redisReply *r)
{
    if (r != NULL)
        arena_cleanup(a, free_redis_reply, r);
    return r;
}

void
arena_stats(const arena_t *a, arena_stats_t *out)
{
    out->blocks = a->blocks;
    out->reserved = a->reserved;
    out->used = a->used;
    out->cleanups = a->ncleanups;
}
