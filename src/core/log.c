/*
 * log.c: one-line logs to stderr. Each line is formatted into a local buffer
 * and written with a single write(2) so lines from different threads never
 * interleave.
 */
#include "shopd/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Relaxed: the level is set once before threads start and only read afterwards. */
static _Atomic int log_min = LOG_LEVEL_INFO;

/* Set before threads start and cleared after they end, so plain reads suffice. */
static log_tap_fn log_tap;
static void *log_tap_ud;

void
log_set_tap(log_tap_fn fn, void *ud)
{
    log_tap = fn;
    log_tap_ud = ud;
}

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void
log_set_level(log_level_t lvl)
{
    atomic_store_explicit(&log_min, (int)lvl, memory_order_relaxed);
}

int
log_parse_level(const char *s, log_level_t *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (log_level_t)i;
            return 0;
        }
    }
    return -1;
}

void
log_write(log_level_t lvl, const char *fmt, ...)
{
    if ((int)lvl < atomic_load_explicit(&log_min, memory_order_relaxed))
        return;
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (long)(tv.tv_usec / 1000), level_names[lvl]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
    if (log_tap)
        log_tap(log_tap_ud, lvl, line, len - 1);
}
