/*
 * admin_ops.c: the admin protocol's process operations that block (PostgreSQL,
 * argon2) and have no HTTP twin: migrations.status, users.create-super-admin,
 * users.disable, users.enable. They run one at a time on a thread of their own
 * (never on an I/O thread, never taking a worker from the stores); each answer
 * is posted back like a worker's (net_reply_post) to the I/O thread that asked.
 *
 * Owns: the task thread, its queue (mutex + condition variable, bounded) and
 * the tasks in it. The admin server (src/net/admin.c) creates and frees it.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shopd/admin.h"
#include "shopd/analytics.h"
#include "shopd/api.h"
#include "shopd/auth.h"
#include "shopd/log.h"

#define TASKS_MAX 64 /* queued operations; beyond: 503 store_busy-like admin_busy */

typedef struct task_s {
    struct task_s *next;
    const struct op_s *op;
    json_t *args;
    void *reply_to;
    uint64_t token;
} task_t;

struct admin_tasks_s {
    app_t *app;
    pthread_t tid;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    task_t *head, *tail; /* guarded by lock */
    size_t n;            /* guarded by lock */
    bool stop;           /* guarded by lock */
};

typedef struct op_s {
    const char *name, *help;
    net_reply_t *(*run)(app_t *app, json_t *args);
    /** Instead of run, for an operation answered later by someone else (a
     *  store's actor): returns the answer now (an error), or NULL once the
     *  answer will be posted to reply_to with token. */
    net_reply_t *(*run_later)(app_t *app, json_t *args, void *reply_to, uint64_t token);
} op_t;

/* ------------------------------------------------------------ helpers */

static net_reply_t *
invalid(const char *field, const char *issue)
{
    return api_fail_field(SHOPD_INVALID, "validation_failed", "the request has invalid fields",
                          field, issue);
}

static net_reply_t *
only(json_t *args, const char *const *allowed)
{
    const char *k;
    json_t *v;
    json_object_foreach(args, k, v)
    {
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = !strcmp(*a, k);
        if (!ok)
            return invalid(k, "unknown argument");
    }
    return NULL;
}

/* ------------------------------------------------------------ migrations.status */

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The applied versions (schema_migrations) against the files of SHOPD_SQL_DIR. */
static net_reply_t *
op_migrations(app_t *app, json_t *args)
{
    static const char *const allowed[] = {NULL};
    net_reply_t *bad = only(args, allowed);
    if (bad)
        return bad;
    db_conn_t *c = db_acquire(app->db, 2000);
    if (c == NULL)
        return api_unavailable("database");
    PGresult *r =
        db_exec(c, NULL,
                "SELECT version, name, to_char(applied_at AT TIME ZONE 'UTC', "
                "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM schema_migrations ORDER BY version",
                0, NULL);
    if (db_result_rc(r) != SHOPD_OK) {
        PQclear(r);
        db_release(c);
        return api_unavailable("database");
    }
    json_t *applied = json_array(), *pending = json_array();
    for (int i = 0; i < PQntuples(r); i++)
        json_array_append_new(
            applied, json_pack("{s:i,s:s,s:s}", "version", atoi(PQgetvalue(r, i, 0)), "name",
                               PQgetvalue(r, i, 1), "applied_at", PQgetvalue(r, i, 2)));
    DIR *d = opendir(app->cfg->sql_dir);
    char *files[1024];
    size_t nf = 0;
    for (struct dirent *e = d ? readdir(d) : NULL; e && nf < 1024; e = readdir(d)) {
        size_t l = strlen(e->d_name);
        if (l > 9 && e->d_name[4] == '_' && !strcmp(e->d_name + l - 4, ".sql") &&
            strspn(e->d_name, "0123456789") == 4)
            files[nf++] = strdup(e->d_name);
    }
    if (d)
        closedir(d);
    qsort(files, nf, sizeof(files[0]), cmp_str);
    for (size_t f = 0; f < nf; f++) {
        int v = atoi(files[f]);
        bool done = false;
        for (int i = 0; i < PQntuples(r) && !done; i++)
            done = atoi(PQgetvalue(r, i, 0)) == v;
        if (!done)
            json_array_append_new(pending, json_pack("{s:i,s:s}", "version", v, "file", files[f]));
        free(files[f]);
    }
    PQclear(r);
    db_release(c);
    return api_json(SHOPD_OK, json_pack("{s:s,s:o,s:o}", "dir", app->cfg->sql_dir, "applied",
                                        applied, "pending", pending));
}

/* ------------------------------------------------------------ users */

typedef struct super_s {
    const char *email, *hash, *name;
    PGresult *r;
} super_t;

static shopd_rc_t
tx_super(db_conn_t *c, void *arg)
{
    super_t *s = arg;
    PQclear(s->r);
    const char *p[3] = {s->email, s->hash, s->name};
    s->r = db_exec(c, NULL,
                   "INSERT INTO users (store_id, email, password_hash, role, name) "
                   "VALUES (NULL, $1, $2, 'SUPER_ADMIN', $3) "
                   "RETURNING id, email, role, name, status, created_at",
                   3, p);
    return db_result_rc(s->r);
}

static json_t *
user_json(PGresult *r)
{
    return json_pack("{s:I,s:s,s:s,s:s,s:s}", "id", (json_int_t)atoll(PQgetvalue(r, 0, 0)), "email",
                     PQgetvalue(r, 0, 1), "role", PQgetvalue(r, 0, 2), "name", PQgetvalue(r, 0, 3),
                     "status", PQgetvalue(r, 0, 4));
}

/* users.create-super-admin {email, password, name?}: the admin port's twin of
 * `shopd create-super-admin`, with the same password rules. */
static net_reply_t *
op_create_super(app_t *app, json_t *args)
{
    static const char *const allowed[] = {"email", "password", "name", NULL};
    net_reply_t *bad = only(args, allowed);
    if (bad)
        return bad;
    const char *email = json_string_value(json_object_get(args, "email"));
    const char *pw = json_string_value(json_object_get(args, "password"));
    json_t *nm = json_object_get(args, "name");
    const char *name = nm ? json_string_value(nm) : "";
    if (email == NULL || !auth_email_valid(email))
        return invalid("email", "must be an e-mail address");
    if (pw == NULL)
        return invalid("password", "required");
    const char *issue = auth_password_issue(pw, email);
    if (issue)
        return invalid("password", issue);
    if (name == NULL || strlen(name) > 200)
        return invalid("name", "must be a string of at most 200 characters");
    char hash[AUTH_HASH_MAX];
    if (auth_password_hash(pw, hash, sizeof(hash)) != 0)
        return api_fail(SHOPD_ERR, "internal", "password hashing failed");
    db_conn_t *c = db_acquire(app->db, 2000);
    if (c == NULL)
        return api_unavailable("database");
    super_t s = {.email = email, .hash = hash, .name = name};
    shopd_rc_t rc = db_tx(c, tx_super, &s);
    net_reply_t *out;
    if (rc == SHOPD_OK)
        out = api_json(SHOPD_CREATED, user_json(s.r));
    else if (rc == SHOPD_CONFLICT)
        out = api_fail_field(SHOPD_CONFLICT, "email_taken", "a platform admin has this e-mail",
                             "email", "taken");
    else
        out = rc == SHOPD_UNAVAILABLE ? api_unavailable("database")
                                      : api_fail(SHOPD_ERR, "internal", "the insert failed");
    PQclear(s.r);
    db_release(c);
    return out;
}

typedef struct status_s {
    const char *id, *status;
    PGresult *r;
} status_t;

static shopd_rc_t
tx_status(db_conn_t *c, void *arg)
{
    status_t *s = arg;
    PQclear(s->r);
    const char *p[2] = {s->id, s->status};
    /* The trigger on users bumps token_version: the user's tokens stop working. */
    s->r = db_exec(c, NULL,
                   "UPDATE users SET status = $2, updated_at = now() WHERE id = $1::bigint "
                   "RETURNING id, email, role, name, status",
                   2, p);
    return db_result_rc(s->r);
}

static net_reply_t *
set_status(app_t *app, json_t *args, const char *status)
{
    static const char *const allowed[] = {"id", NULL};
    net_reply_t *bad = only(args, allowed);
    if (bad)
        return bad;
    json_t *id = json_object_get(args, "id");
    char buf[32];
    if (json_is_integer(id) && json_integer_value(id) > 0)
        snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(id));
    else if (json_is_string(id) && json_string_length(id) > 0 && json_string_length(id) < 19 &&
             strspn(json_string_value(id), "0123456789") == json_string_length(id))
        snprintf(buf, sizeof(buf), "%s", json_string_value(id));
    else
        return invalid("id", "must be a user id");
    db_conn_t *c = db_acquire(app->db, 2000);
    if (c == NULL)
        return api_unavailable("database");
    status_t s = {.id = buf, .status = status};
    shopd_rc_t rc = db_tx(c, tx_status, &s);
    net_reply_t *out;
    if (rc == SHOPD_OK && PQntuples(s.r) == 1)
        out = api_json(SHOPD_OK, user_json(s.r));
    else if (rc == SHOPD_OK)
        out = api_fail(SHOPD_NOTFOUND, "user_not_found", "no such user");
    else
        out = rc == SHOPD_UNAVAILABLE ? api_unavailable("database")
                                      : api_fail(SHOPD_ERR, "internal", "the update failed");
    PQclear(s.r);
    db_release(c);
    return out;
}

static net_reply_t *
op_disable(app_t *app, json_t *args)
{
    return set_status(app, args, "disabled");
}

static net_reply_t *
op_enable(app_t *app, json_t *args)
{
    return set_status(app, args, "active");
}

/* ------------------------------------------------------------ actors */

typedef struct visit_s {
    json_t *list;
    uint64_t store; /* 0: every store */
    const char *pool;
    uint64_t now_us;
} visit_t;

static void
visit_actor(void *ud, const act_actor_info_t *a)
{
    visit_t *v = ud;
    uint64_t store = ACT_STORE_OF(a->id);
    unsigned lane = ACT_LANE_OF(a->id);
    if (v->store && store != v->store)
        return;
    /* Lane 0 is the store's actor (ordered); the workers' other lanes are reads. */
    const char *kind = !strcmp(v->pool, "blocking") ? "blocking"
                       : a->id == ACT_PLATFORM_ID   ? "platform"
                       : lane == 0                  ? "ordered"
                                                    : "read";
    uint64_t idle = v->now_us > a->idle_since_us ? v->now_us - a->idle_since_us : 0;
    json_array_append_new(
        v->list, json_pack("{s:I,s:i,s:s,s:I,s:I,s:I,s:i,s:I}", "store", (json_int_t)store, "lane",
                           lane, "kind", kind, "depth", (json_int_t)a->depth, "turns",
                           (json_int_t)a->turns, "messages", (json_int_t)a->processed, "last_batch",
                           (int)a->last_batch, "idle_ms", (json_int_t)(idle / 1000)));
}

static int
by_depth(const void *x, const void *y)
{
    json_t *a = *(json_t *const *)x, *b = *(json_t *const *)y;
    json_int_t da = json_integer_value(json_object_get(a, "depth"));
    json_int_t db = json_integer_value(json_object_get(b, "depth"));
    if (da != db)
        return da < db ? 1 : -1;
    json_int_t ta = json_integer_value(json_object_get(a, "turns"));
    json_int_t tb = json_integer_value(json_object_get(b, "turns"));
    return ta < tb ? 1 : ta > tb ? -1 : 0;
}

/* The live actors of both runtimes, deepest mailbox first, then busiest. */
static net_reply_t *
actors(app_t *app, uint64_t store, size_t limit)
{
    visit_t v = {.list = json_array(), .store = store, .now_us = shopd_now_us()};
    v.pool = "workers";
    act_system_visit(app->actors, visit_actor, &v);
    v.pool = "blocking";
    act_system_visit(app->blocking, visit_actor, &v);
    size_t n = json_array_size(v.list);
    json_t **items = shopd_malloc((n ? n : 1) * sizeof(*items));
    for (size_t i = 0; i < n; i++)
        items[i] = json_incref(json_array_get(v.list, i));
    qsort(items, n, sizeof(*items), by_depth);
    json_t *out = json_array();
    for (size_t i = 0; i < n; i++) {
        if (i < limit)
            json_array_append(out, items[i]);
        json_decref(items[i]);
    }
    shopd_free(items);
    json_decref(v.list);
    return api_json(SHOPD_OK, json_pack("{s:o,s:I}", "actors", out, "total", (json_int_t)n));
}

static net_reply_t *
op_actors_list(app_t *app, json_t *args)
{
    static const char *const allowed[] = {"limit", NULL};
    net_reply_t *bad = only(args, allowed);
    if (bad)
        return bad;
    json_t *l = json_object_get(args, "limit");
    json_int_t limit = 50;
    if (json_is_string(l))
        limit = atoll(json_string_value(l));
    else if (l)
        limit = json_integer_value(l);
    if (l && (limit < 1 || limit > 100000))
        return invalid("limit", "must be from 1 to 100000");
    return actors(app, 0, (size_t)limit);
}

/* actors.get {store}: every lane of one store (id, or a slug the tenant cache knows). */
static net_reply_t *
op_actors_get(app_t *app, json_t *args)
{
    static const char *const allowed[] = {"store", NULL};
    net_reply_t *bad = only(args, allowed);
    if (bad)
        return bad;
    json_t *s = json_object_get(args, "store");
    uint64_t id = 0;
    char key[STORE_KEY_MAX];
    store_snap_t snap;
    if (json_is_integer(s) && json_integer_value(s) > 0)
        id = (uint64_t)json_integer_value(s);
    else if (json_is_string(s) &&
             store_tenant_key(json_string_value(s), NULL, NULL, key, sizeof(key)) == 0)
        id = !strncmp(key, "id:", 3) ? strtoull(key + 3, NULL, 10)
             : store_cache_get(app->stores, key, &snap) && snap.id != 0 ? snap.id
                                                                        : 0;
    if (id == 0)
        return invalid("store", "must be a store id (or the slug of a store in use)");
    return actors(app, id, (size_t)-1);
}

/* ------------------------------------------------------------ cache.flush */

/* cache.flush {store}: a control message to the store's actor, which runs every
 * module's flush hook (the tenant entry here; the catalog pages here and, by the
 * version bump, in every process) after the mutations queued before it, then
 * answers. The store: an id, a slug or a host name (looked up in PostgreSQL
 * when this process has not cached it: this thread may block). */
static net_reply_t *
op_cache_flush(app_t *app, json_t *args, void *reply_to, uint64_t token)
{
    static const char *const allowed[] = {"store", NULL};
    net_reply_t *bad = only(args, allowed);
    if (bad)
        return bad;
    json_t *s = json_object_get(args, "store");
    char key[STORE_KEY_MAX];
    int krc = -1;
    if (json_is_integer(s) && json_integer_value(s) > 0) {
        snprintf(key, sizeof(key), "id:%lld", (long long)json_integer_value(s));
        krc = 0;
    } else if (json_is_string(s)) {
        const char *v = json_string_value(s);
        krc = strchr(v, '.') ? store_tenant_key(NULL, v, app->cfg->base_domain, key, sizeof(key))
                             : store_tenant_key(v, NULL, NULL, key, sizeof(key));
    }
    if (krc != 0)
        return invalid("store", "required: a store id, slug or host name");
    store_snap_t snap;
    shopd_rc_t rc = store_lookup(app, key, &snap);
    if (rc == SHOPD_UNAVAILABLE)
        return api_unavailable("database");
    if (rc != SHOPD_OK || snap.id == 0)
        return api_fail(SHOPD_NOTFOUND, "store_not_found", "no such store");
    rc = api_control_send(app, snap.id, API_CONTROL_FLUSH, reply_to, token);
    if (rc == SHOPD_BUSY)
        return api_fail(SHOPD_BUSY, "store_busy", "too many requests are queued for this store");
    if (rc != SHOPD_OK)
        return api_fail(SHOPD_UNAVAILABLE, "shutting_down", "the server is shutting down");
    return NULL;
}

/* ------------------------------------------------------------ analytics */

/* analytics.rebuild {store?}: recomputes one store's sales rollups (an id, or
 * a slug the tenant cache knows) or every store's, in one transaction. */
static net_reply_t *
op_analytics_rebuild(app_t *app, json_t *args)
{
    static const char *const allowed[] = {"store", NULL};
    net_reply_t *bad = only(args, allowed);
    if (bad)
        return bad;
    json_t *s = json_object_get(args, "store");
    uint64_t id = 0;
    if (s && !json_is_null(s)) {
        char key[STORE_KEY_MAX];
        store_snap_t snap;
        if (json_is_integer(s) && json_integer_value(s) > 0)
            id = (uint64_t)json_integer_value(s);
        else if (json_is_string(s) &&
                 store_tenant_key(json_string_value(s), NULL, NULL, key, sizeof(key)) == 0)
            id = !strncmp(key, "id:", 3) ? strtoull(key + 3, NULL, 10)
                 : store_cache_get(app->stores, key, &snap) && snap.id != 0 ? snap.id
                                                                            : 0;
        if (id == 0)
            return invalid("store", "must be a store id (or the slug of a store in use)");
    }
    db_conn_t *c = db_acquire(app->db, 2000);
    if (c == NULL)
        return api_unavailable("database");
    uint64_t t0 = shopd_now_us();
    size_t n = 0;
    shopd_rc_t rc = analytics_rebuild(c, id, &n);
    db_release(c);
    if (rc != SHOPD_OK)
        return rc == SHOPD_UNAVAILABLE ? api_unavailable("database")
                                       : api_fail(SHOPD_ERR, "internal", "the rebuild failed");
    if (id && n == 0)
        return api_fail(SHOPD_NOTFOUND, "store_not_found", "no such store");
    return api_json(SHOPD_OK, json_pack("{s:I,s:I}", "stores", (json_int_t)n, "ms",
                                        (json_int_t)((shopd_now_us() - t0) / 1000)));
}

/* clang-format off */
static const op_t ops[] = {
    {"analytics.rebuild", "recomputes the sales rollups from the orders {store?}: one store, or every store without it", op_analytics_rebuild},
    {"actors.list", "live actors, deepest mailbox first {limit?}: store, lane, kind, depth, turns, messages, last batch, idle ms", op_actors_list},
    {"actors.get", "every actor (lane) of one store {store}", op_actors_get},
    {"cache.flush", "the store's actor drops every cached copy of the store, after its queued mutations {store}: id, slug or host", NULL, op_cache_flush},
    {"migrations.status", "applied migrations and the pending files of SHOPD_SQL_DIR", op_migrations},
    {"users.create-super-admin", "creates a platform admin {email, password, name?}", op_create_super},
    {"users.disable", "disables any user {id}: signed out everywhere (token version bumped)", op_disable},
    {"users.enable", "makes a disabled user active again {id}", op_enable},
};
/* clang-format on */

/* ------------------------------------------------------------ the thread */

static void *
tasks_main(void *arg)
{
    admin_tasks_t *q = arg;
    for (;;) {
        pthread_mutex_lock(&q->lock);
        while (q->head == NULL && !q->stop)
            pthread_cond_wait(&q->cond, &q->lock);
        task_t *t = q->head;
        if (t) {
            q->head = t->next;
            if (q->head == NULL)
                q->tail = NULL;
            q->n--;
        }
        pthread_mutex_unlock(&q->lock);
        if (t == NULL)
            return NULL; /* stop, and nothing left */
        net_reply_t *r = t->op->run ? t->op->run(q->app, t->args)
                                    : t->op->run_later(q->app, t->args, t->reply_to, t->token);
        if (r)
            net_reply_post(t->reply_to, t->token, r);
        json_decref(t->args);
        shopd_free(t);
    }
}

admin_tasks_t *
admin_tasks_new(app_t *app)
{
    admin_tasks_t *q = shopd_calloc(1, sizeof(*q));
    q->app = app;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    q->started = pthread_create(&q->tid, NULL, tasks_main, q) == 0;
    return q;
}

const char *
admin_tasks_help(size_t i, const char **help)
{
    if (i >= SHOPD_ARRAY_LEN(ops))
        return NULL;
    *help = ops[i].help;
    return ops[i].name;
}

int
admin_tasks_submit(admin_tasks_t *q, const char *op, json_t *args, void *reply_to, uint64_t token)
{
    const op_t *o = NULL;
    for (size_t i = 0; i < SHOPD_ARRAY_LEN(ops) && !o; i++)
        if (!strcmp(ops[i].name, op))
            o = &ops[i];
    if (o == NULL)
        return -1;
    pthread_mutex_lock(&q->lock);
    bool full = q->n >= TASKS_MAX || q->stop || !q->started;
    if (!full) {
        task_t *t = shopd_calloc(1, sizeof(*t));
        t->op = o;
        t->args = json_deep_copy(args);
        t->reply_to = reply_to;
        t->token = token;
        if (q->tail)
            q->tail->next = t;
        else
            q->head = t;
        q->tail = t;
        q->n++;
        pthread_cond_signal(&q->cond);
    }
    pthread_mutex_unlock(&q->lock);
    return full ? 1 : 0;
}

void
admin_tasks_free(admin_tasks_t *q)
{
    if (q == NULL)
        return;
    pthread_mutex_lock(&q->lock);
    q->stop = true;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
    if (q->started)
        pthread_join(q->tid, NULL); /* finishes what is queued (bounded: TASKS_MAX) */
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
    shopd_free(q);
}
