/*
 * msg.h: the msgpack envelope every request travels in, from the I/O thread
 * that parsed it to the actor that handles it.
 *
 * Wire form: a msgpack map
 *   { "k": uint kind (msg_kind_t; absent: a request),
 *     "t": str type, "rid": str request id, "sid": uint store id,
 *     "caller": { "uid": uint, "sid": uint, "role": int, "ver": uint },
 *     "params": { str: str, ... },   path parameters (":id" -> "42"), nothing else
 *     "query": str,                  canonical query string (without '?')
 *     "tk": str,                     tenant key ("slug:acme") while the store is unknown
 *     "inm": str,                    If-None-Match, may be absent
 *     "ip": str,                     client address (rate limits), may be absent
 *     "cart": str,                   X-Cart-Id (a guest cart), may be absent
 *     "idem": str,                   Idempotency-Key, may be absent
 *     "sig": str,                    a webhook's signature header (API_SIGNED routes)
 *     "ae": str,                     the content coding the answer may use ("gzip"), may be absent
 *     "body": bin }                  raw request body (JSON), may be absent
 * Unknown keys are ignored so later versions can add fields.
 */
#ifndef SHOPD_MSG_H
#define SHOPD_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "shopd/common.h"

#define MSG_MAX_PARAMS 8

/** Who is calling. role: see msg_role_t. */
typedef enum msg_role_e {
    MSG_ROLE_ANONYMOUS = 0,
    MSG_ROLE_CUSTOMER = 1,
    MSG_ROLE_STORE_ADMIN = 2,
    MSG_ROLE_SUPER_ADMIN = 3,
    MSG_ROLE_PLATFORM = 4, /**< the configured platform token */
} msg_role_t;

/** What a message is. Requests come from the HTTP edge (and, later, the admin
 *  protocol); jobs from the job streams; timers from a store's own schedule
 *  (sweepers); control from the process (stop, reload). */
typedef enum msg_kind_e {
    MSG_KIND_REQUEST = 0,
    MSG_KIND_JOB = 1,
    MSG_KIND_TIMER = 2,
    MSG_KIND_CONTROL = 3,
} msg_kind_t;

typedef struct msg_caller_s {
    uint64_t user_id;
    uint64_t store_id;
    int role;
    uint32_t
        ver; /**< the user's token version in the token (0: no user, e.g. the platform token) */
} msg_caller_t;

typedef struct msg_str_s {
    const char *p;
    size_t n;
} msg_str_t;

/** A decoded envelope. Strings point into the buffer given to msg_decode (which must
 *  outlive the envelope); they are not NUL-terminated. */
typedef struct msg_env_s {
    int kind; /**< msg_kind_t */
    msg_str_t type;
    msg_str_t request_id;
    uint64_t store_id;
    msg_caller_t caller;
    msg_str_t param_names[MSG_MAX_PARAMS];
    msg_str_t param_values[MSG_MAX_PARAMS];
    size_t nparams;
    msg_str_t query;
    msg_str_t body;
    msg_str_t ip;     /**< client address, "" if unknown */
    msg_str_t tenant; /**< tenant key for the platform actor to resolve, "" once resolved */
    msg_str_t inm;    /**< If-None-Match of a conditional GET, "" if none */
    msg_str_t cart;   /**< X-Cart-Id: a guest cart's id, "" if none */
    msg_str_t idem;   /**< Idempotency-Key of a mutating request, "" if none */
    msg_str_t sig;    /**< Stripe-Signature of a signed webhook route, "" if none */
    msg_str_t ct;     /**< Content-Type of an upload route's raw body, "" if none */
    msg_str_t ae;     /**< "gzip" when the client accepts it (Accept-Encoding), else "" */
} msg_env_t;

/** Encodes env into a new buffer (shopd_malloc; caller frees). Never fails. */
char *msg_encode(const msg_env_t *env, size_t *len);
/** Decodes buf into env without copying. Returns SHOPD_OK or SHOPD_INVALID for
 *  malformed input (wrong types, truncated, too many params). Any thread. */
shopd_rc_t msg_decode(const char *buf, size_t len, msg_env_t *env);

/** Looks up a path parameter by name; returns NULL (and *n = 0) when absent. */
const char *msg_param(const msg_env_t *env, const char *name, size_t *n);

/** Helper to build a msg_str_t from a C string (NULL -> empty). */
msg_str_t msg_str(const char *s);

#endif
