/*
 * auth.h: users, passwords, tokens and rate limits.
 *
 * Access tokens are JWTs (HS256, 15 minutes) signed with the first key of
 * SHOPD_JWT_KEYS and verified with any of them (the "kid" header picks the
 * key), so a key can be added and the old one retired without logging
 * everyone out. Verification is a cheap HMAC and runs on the I/O thread.
 * Refresh tokens are "<store_id>.<random secret>" (store 0: the platform):
 * the secret is stored as a SHA-256 hash under that store, rotated on every
 * use; replaying a rotated one revokes its whole family.
 * Passwords are argon2id (see AUTH_ARGON2_*); hashing runs on workers only.
 * Rate limits are token buckets in Redis (one Lua script per check).
 */
#ifndef SHOPD_AUTH_H
#define SHOPD_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shopd/common.h"
#include "shopd/config.h"
#include "shopd/kv.h"
#include "shopd/msg.h"

/* argon2id parameters for new hashes (OWASP's baseline: 19 MiB, 2 passes, 1 lane).
 * Verification reads the parameters stored in each hash, so they can be raised
 * later without invalidating existing passwords. */
#define AUTH_ARGON2_T_COST 2
#define AUTH_ARGON2_M_COST_KIB 19456
#define AUTH_ARGON2_PARALLELISM 1

#define AUTH_PASSWORD_MIN 8   /**< characters */
#define AUTH_PASSWORD_MAX 128 /**< characters; longer is refused (hashing cost bound) */
#define AUTH_ACCESS_TTL_S 900
#define AUTH_REFRESH_TTL_S (30 * 86400)
#define AUTH_CLOCK_SKEW_S 30
#define AUTH_HASH_MAX 160 /**< room for an encoded argon2id hash */
#define AUTH_JWT_MAX 1024

/** Loads the signing keys from cfg->jwt_keys ("kid:secret,kid:secret"; the first
 *  signs). An empty setting makes a random key for this process (tokens do not
 *  survive a restart; a warning says so). Returns 0, or -1 with one line in err.
 *  Call once at start, before any thread uses the keys. */
int auth_init(const cfg_t *cfg, char *err, size_t errlen);
/** Frees what auth_init loaded. */
void auth_fini(void);

/** Role names as in tokens and the database ("CUSTOMER", ...); NULL for others. */
const char *auth_role_name(int role);
/** msg_role_t for a name, or MSG_ROLE_ANONYMOUS if unknown. */
int auth_role_parse(const char *name);

/** Signs an access token for a user (store_id 0 = platform super admin) whose token
 *  version (users.token_version) is ver, into out. Returns the length, or 0 if
 *  out is too small. Any thread. */
size_t auth_jwt_sign_ver(uint64_t user_id, uint64_t store_id, int role, uint32_t ver, char *out,
                         size_t outlen);
/** auth_jwt_sign_ver with version 1 (a user never changed since creation). */
size_t auth_jwt_sign(uint64_t user_id, uint64_t store_id, int role, char *out, size_t outlen);

typedef enum auth_jwt_rc_e {
    AUTH_JWT_OK = 0,
    AUTH_JWT_MALFORMED, /**< not three base64url parts of JSON */
    AUTH_JWT_BAD_ALG,   /**< alg is not HS256 (including "none") */
    AUTH_JWT_BAD_KEY,   /**< unknown kid */
    AUTH_JWT_BAD_SIG,
    AUTH_JWT_EXPIRED,
    AUTH_JWT_BAD_CLAIMS,
} auth_jwt_rc_t;

/** Verifies token (not NUL-terminated, len bytes) and fills caller. Any thread. */
auth_jwt_rc_t auth_jwt_verify(const char *token, size_t len, msg_caller_t *caller);

/** Hashes password with argon2id into out (encoded form). 0 or -1. Workers only
 *  (tens of milliseconds of CPU and 19 MiB). */
int auth_password_hash(const char *password, char *out, size_t outlen);
/** True if password matches the encoded hash. Workers only. */
bool auth_password_verify(const char *encoded, const char *password);
/** NULL if password is acceptable, else the issue text for the 422. */
const char *auth_password_issue(const char *password, const char *email);
/** True if s looks like an e-mail address (and fits 254 bytes). */
bool auth_email_valid(const char *s);

/** SHA-256 of s as 64 hex characters + NUL into out[65]. */
void auth_sha256_hex(const char *s, size_t n, char out[65]);

/** Takes one token from the bucket `key` (capacity burst, refilled at
 *  burst/period_s per second). Returns 0 if allowed, else the seconds to wait
 *  (>= 1). When Redis is unreachable the check fails open (returns 0) with a
 *  warning: a rate limit must not take logins down with it. burst 0 disables. */
int auth_rate_take(kv_conn_t *kv, const char *key, int burst, int period_s);

/** The worker half of the middleware: true if the token's claims in c still
 *  describe the user c->user_id: the account exists, is active, and its role,
 *  store and token version are the ones in the token. The version changes with
 *  every change of role, status, store or password (a trigger in the database),
 *  so no token issued before such a change works again, whatever happens later.
 *  Answers are cached per process for AUTH_USER_CACHE_S seconds (the window in
 *  which another process may still accept a token made stale by a change there);
 *  every cached answer is compared with the claims in full, never trusted alone.
 *  *unavailable is set when the database could not be asked. Workers only. */
#define AUTH_USER_CACHE_S 5
typedef struct db_pool_s db_pool_t;
bool auth_user_current(db_pool_t *db, const msg_caller_t *c, bool *unavailable);
/** Drops user_id from this process's cache (after any change to the user). */
void auth_user_forget(uint64_t user_id);

/** Input of POST /api/v1/stores's optional "admin" object, validated and hashed. */
typedef struct auth_admin_input_s {
    bool given;
    char email[256];
    char name[801];
    char hash[AUTH_HASH_MAX];
} auth_admin_input_t;

/* ---- handlers (route table). Those that run argon2 (register, login, password
 * changes, user creation) are of the blocking run class: they run on the blocking
 * pool's threads, never on the store's actor. */
typedef struct api_ctx_s api_ctx_t;
typedef struct net_reply_s net_reply_t;
net_reply_t *auth_h_register(api_ctx_t *ctx);
net_reply_t *auth_h_login(api_ctx_t *ctx);
net_reply_t *auth_h_platform_login(api_ctx_t *ctx);
net_reply_t *auth_h_refresh(api_ctx_t *ctx);
net_reply_t *auth_h_logout(api_ctx_t *ctx);
net_reply_t *auth_h_me(api_ctx_t *ctx);
net_reply_t *auth_h_me_update(api_ctx_t *ctx);
net_reply_t *auth_h_forgot(api_ctx_t *ctx);
net_reply_t *auth_h_reset(api_ctx_t *ctx);
net_reply_t *auth_h_users_list(api_ctx_t *ctx);
net_reply_t *auth_h_users_get(api_ctx_t *ctx);
net_reply_t *auth_h_users_create(api_ctx_t *ctx);
net_reply_t *auth_h_users_update(api_ctx_t *ctx);
net_reply_t *auth_h_users_delete(api_ctx_t *ctx);

typedef struct api_val_s api_val_t;
/** For POST /api/v1/stores: takes the optional "admin" object {email, password,
 *  name} out of ctx->body (so the store's own validation does not see it),
 *  validates it into v and hashes the password into out. Workers only. */
void auth_store_admin_take(api_ctx_t *ctx, api_val_t *v, auth_admin_input_t *out);

/** The module descriptor (routes, start and stop hooks); listed in src/modules/routes.c. */
typedef struct api_module_s api_module_t;
extern const api_module_t auth_module;

#endif
