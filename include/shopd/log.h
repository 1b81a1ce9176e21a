/*
 * log.h: one-line structured logs to stderr, safe from any thread.
 * Lines look like: 2026-11-24T01:02:03.123Z level=info msg="..." key=value ...
 * Secrets (tokens, passwords) must never be passed here.
 */
#ifndef SHOPD_LOG_H
#define SHOPD_LOG_H

#include <stdarg.h>
#include <stddef.h>

typedef enum log_level_e {
    LOG_LEVEL_DEBUG = 0,
    LOG_LEVEL_INFO,
    LOG_LEVEL_WARN,
    LOG_LEVEL_ERROR
} log_level_t;

/** Set the minimum level written; default info. Call before threads start. */
void log_set_level(log_level_t lvl);
/** Parse "debug|info|warn|error"; returns -1 on unknown. */
int log_parse_level(const char *s, log_level_t *out);
/** Write one line: timestamp, level, then the formatted text. Thread-safe (one write(2)). */
void log_write(log_level_t lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** A tap sees every line written (level, text without the newline). It runs on the
 *  writing thread, after the write, and must not log itself. */
typedef void (*log_tap_fn)(void *ud, log_level_t lvl, const char *line, size_t len);
/** Installs the tap (NULL: none). Before threads start, or after they have ended. */
void log_set_tap(log_tap_fn fn, void *ud);

#define log_debug(...) log_write(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...) log_write(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...) log_write(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
