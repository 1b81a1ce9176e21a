/*
 * password.c: argon2id password hashes (libargon2) and the input rules for
 * passwords and e-mail addresses. Hashing costs tens of milliseconds and
 * 19 MiB on purpose; it runs on workers only, never on an I/O thread.
 */
#include <argon2.h>
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>

#include "shopd/auth.h"

/* ---- argon2's working memory: one mapping per thread, reused ----
 * Left to malloc, the 19 MiB block is a fresh mapping on every hash under
 * jemalloc (purged on free), and faulting its ~4,900 pages back in tripled the
 * cost of a login (measured: 27 ms -> 85 ms). Each worker keeps its mapping
 * (huge pages where the kernel allows) for the life of the thread. */

typedef struct arena_s {
    uint8_t *p;
    size_t len;
    bool busy;
} arena_t;

static pthread_key_t arena_key;
static pthread_once_t arena_once = PTHREAD_ONCE_INIT;

static void
arena_drop(void *v)
{
    arena_t *a = v;
    if (a && a->p)
        munmap(a->p, a->len);
    free(a);
}

static void
arena_init(void)
{
    pthread_key_create(&arena_key, arena_drop);
}

static int
arena_alloc(uint8_t **memory, size_t n)
{
    pthread_once(&arena_once, arena_init);
    arena_t *a = pthread_getspecific(arena_key);
    if (a == NULL) {
        a = calloc(1, sizeof(*a));
        if (a == NULL)
            return -1;
        pthread_setspecific(arena_key, a);
    }
    if (a->busy)
        return -1;
    if (a->len < n) {
        if (a->p)
            munmap(a->p, a->len);
        a->p = NULL;
        a->len = 0;
        /* Bounded: a stored hash asking for more than 256 MiB is refused. */
        if (n > (256u << 20))
            return -1;
        void *m = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return -1;
        madvise(m, n, MADV_HUGEPAGE);
        a->p = m;
        a->len = n;
    }
    a->busy = true;
    *memory = a->p;
    return 0;
}

static void
arena_free(uint8_t *memory, size_t n)
{
    arena_t *a = pthread_getspecific(arena_key);
    if (a && a->p == memory)
        a->busy = false;
}

/* ---- PHC string form: $argon2id$v=19$m=M,t=T,p=P$salt$hash (base64, no padding) ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t
b64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = b64[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = b64[v & 63];
    }
    out[o] = '\0';
    return o;
}

static long
b64_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        const char *c = memchr(b64, in[i], 64);
        if (c == NULL || in[i] == '\0')
            return -1;
        acc = acc << 6 | (uint32_t)(c - b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap)
                return -1;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return (long)o;
}

int
auth_password_hash(const char *password, char *out, size_t outlen)
{
    uint8_t salt[16], tag[32];
    if (shopd_random(salt, sizeof(salt)) != 0)
        return -1;
    argon2_context c = {
        .out = tag,
        .outlen = sizeof(tag),
        .pwd = (uint8_t *)password,
        .pwdlen = (uint32_t)strlen(password),
        .salt = salt,
        .saltlen = sizeof(salt),
        .t_cost = AUTH_ARGON2_T_COST,
        .m_cost = AUTH_ARGON2_M_COST_KIB,
        .lanes = AUTH_ARGON2_PARALLELISM,
        .threads = AUTH_ARGON2_PARALLELISM,
        .version = ARGON2_VERSION_13,
        .allocate_cbk = arena_alloc,
        .free_cbk = arena_free,
        .flags = ARGON2_DEFAULT_FLAGS,
    };
    if (argon2_ctx(&c, Argon2_id) != ARGON2_OK)
        return -1;
    char s64[32], h64[48];
    b64_encode(salt, sizeof(salt), s64);
    b64_encode(tag, sizeof(tag), h64);
    int n = snprintf(out, outlen, "$argon2id$v=%d$m=%u,t=%u,p=%u$%s$%s", ARGON2_VERSION_13,
                     AUTH_ARGON2_M_COST_KIB, AUTH_ARGON2_T_COST, AUTH_ARGON2_PARALLELISM, s64, h64);
    return n > 0 && (size_t)n < outlen ? 0 : -1;
}

bool
auth_password_verify(const char *encoded, const char *password)
{
    unsigned v, m, t, p;
    int off = 0;
    if (encoded == NULL ||
        sscanf(encoded, "$argon2id$v=%u$m=%u,t=%u,p=%u$%n", &v, &m, &t, &p, &off) != 4 || off == 0)
        return false;
    const char *s = encoded + off, *d = strchr(s, '$');
    if (d == NULL)
        return false;
    uint8_t salt[64], want[64], got[64];
    long sl = b64_decode(s, (size_t)(d - s), salt, sizeof(salt));
    long hl = b64_decode(d + 1, strlen(d + 1), want, sizeof(want));
    if (sl < 8 || hl < 16 || v != ARGON2_VERSION_13 || p < 1 || p > 16 || t < 1 || t > 16 ||
        m < 8 * p)
        return false;
    argon2_context c = {
        .out = got,
        .outlen = (uint32_t)hl,
        .pwd = (uint8_t *)password,
        .pwdlen = (uint32_t)strlen(password),
        .salt = salt,
        .saltlen = (uint32_t)sl,
        .t_cost = t,
        .m_cost = m,
        .lanes = p,
        .threads = p,
        .version = v,
        .allocate_cbk = arena_alloc,
        .free_cbk = arena_free,
        .flags = ARGON2_DEFAULT_FLAGS,
    };
    if (argon2_ctx(&c, Argon2_id) != ARGON2_OK)
        return false;
    return shopd_ct_equal(got, (size_t)hl, want, (size_t)hl);
}

static size_t
utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

/* The most common passwords of at least 8 characters; a real deployment would
 * check a breach corpus, this catches the obvious ones with a clear message. */
static const char *const common[] = {
    "password",   "password1", "password123", "12345678", "123456789", "1234567890",
    "qwertyuiop", "qwerty123", "iloveyou",    "11111111", "00000000",  "abcd1234",
    "letmein1",   "sunshine",  "princess",    "football", "baseball",  "welcome1",
    "admin123",   "changeme",  "passw0rd",    "trustno1", NULL,
};

const char *
auth_password_issue(const char *password, const char *email)
{
    size_t n = utf8_chars(password);
    if (n < AUTH_PASSWORD_MIN)
        return "must be at least 8 characters long";
    if (n > AUTH_PASSWORD_MAX || strlen(password) > 4 * AUTH_PASSWORD_MAX)
        return "must be at most 128 characters long";
    bool same = true;
    for (const char *p = password + 1; *p && same; p++)
        same = *p == password[0];
    if (same)
        return "is too weak: it repeats one character";
    for (const char *const *c = common; *c; c++)
        if (strcasecmp(*c, password) == 0)
            return "is too weak: it is one of the most common passwords";
    if (email && strcasecmp(email, password) == 0)
        return "is too weak: it equals the e-mail address";
    return NULL;
}

bool
auth_email_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 3 || n > 254)
        return false;
    const char *at = strchr(s, '@');
    if (at == NULL || at == s || strchr(at + 1, '@'))
        return false;
    const char *dot = strchr(at + 1, '.');
    if (dot == NULL || dot == at + 1 || dot[1] == '\0' || s[n - 1] == '.')
        return false;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '<' || *p == '>' || *p == ',' || *p == ';' ||
            *p == '"' || *p == '\\' || *p == 0x7f)
            return false;
    return true;
}
