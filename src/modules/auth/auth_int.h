/*
 * auth_int.h: what the auth module's files share (not for other modules).
 */
#ifndef SHOPD_AUTH_INT_H
#define SHOPD_AUTH_INT_H

#include "shopd/api.h"
#include "shopd/auth.h"

/* PostgreSQL renders a user's public JSON (never the password hash). */
#define AUTH_USER_JSON_OF(t)                                                                       \
    "json_build_object('id', " t "id, 'store_id', " t "store_id, 'email', " t "email, 'name', " t  \
    "name, 'role', " t "role, 'status', " t "status, 'created_at', " t "created_at, "              \
    "'updated_at', " t "updated_at, 'last_login_at', " t "last_login_at)::text"
#define AUTH_USER_JSON AUTH_USER_JSON_OF("")
#define AUTH_USER_JSON_U AUTH_USER_JSON_OF("u.")

/** Which buckets one auth_rate_check call takes from. A request takes exactly one
 *  token from each bucket it is counted in, however many checks it passes. */
enum { AUTH_RL_IP = 1, AUTH_RL_ACCOUNT = 2 };
/** 429 with Retry-After if a bucket of `what` named in `buckets` is empty (the
 *  per-address one; the per-account one when account is not NULL); NULL if the
 *  attempt may go on. Each named bucket is taken from at most once. */
net_reply_t *auth_rate_check(api_ctx_t *ctx, const char *what, const char *account, int buckets);
/** The token reply: access token + new refresh token (inserted on c). */
net_reply_t *auth_issue(api_ctx_t *ctx, db_conn_t *c, shopd_rc_t rc, uint64_t uid, uint64_t sid,
                        int role, uint32_t ver, const char *family, const char *user_json);

#endif
