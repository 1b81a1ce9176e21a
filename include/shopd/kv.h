/*
 * kv.h: Redis access through hiredis. A kv_conn_t is one synchronous
 * connection owned by one thread (each worker has its own). It connects
 * lazily, has connect and command timeouts, and reconnects after a lost
 * connection: a command on a broken connection reconnects once and retries;
 * if Redis is still down it returns NULL and the caller answers 503.
 */
#ifndef SHOPD_KV_H
#define SHOPD_KV_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "shopd/common.h"

typedef struct kv_conn_s kv_conn_t;

/** Parses a redis://[:password@]host[:port][/db] URL. Returns 0 or -1 (bad URL). */
int kv_parse_url(const char *url, char *host, size_t hostlen, int *port, int *db, char *password,
                 size_t pwlen);

/** New connection handle for url (not connected yet). NULL if the URL is invalid.
 *  timeout_ms bounds connect and each command. */
kv_conn_t *kv_conn_new(const char *url, unsigned timeout_ms);
/** Closes and frees. Accepts NULL. */
void kv_conn_free(kv_conn_t *kv);

/** Runs one command (printf-style like redisCommand). Returns the reply (caller frees
 *  with freeReplyObject) or NULL when Redis is unreachable. A REDIS_REPLY_ERROR reply
 *  is returned as is. */
redisReply *kv_command(kv_conn_t *kv, const char *fmt, ...);
/** Same with an argument vector (binary safe). */
redisReply *kv_commandv(kv_conn_t *kv, int argc, const char **argv, const size_t *argvlen);

/** Pipelining: queue commands with kv_append*, then read each reply with kv_get_reply
 *  in order. If the connection fails mid-way, kv_get_reply returns NULL for the rest. */
int kv_append(kv_conn_t *kv, const char *fmt, ...);
int kv_appendv(kv_conn_t *kv, int argc, const char **argv, const size_t *argvlen);
redisReply *kv_get_reply(kv_conn_t *kv);

/** PING; OK or UNAVAILABLE. */
shopd_rc_t kv_ping(kv_conn_t *kv);

#endif
