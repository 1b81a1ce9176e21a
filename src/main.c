/*
 * main.c: shopd's entry point: commands (serve, migrate, create-super-admin), configuration,
 * start-up in dependency order, and the graceful stop on SIGTERM/SIGINT:
 * stop accepting, finish in-flight requests, drain the mailboxes, close the
 * pools, free everything in reverse order, exit 0.
 */
#include <event2/thread.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shopd/admin.h"
#include "shopd/api.h"
#include "shopd/auth.h"
#include "shopd/log.h"
#include "shopd/seal.h"

static int
cmd_migrate(cfg_t *cfg)
{
    char err[512];
    int n = db_migrate(cfg->database_url, cfg->sql_dir, err, sizeof(err));
    if (n < 0) {
        log_error("migration failed: %s", err);
        return 1;
    }
    log_info("migrations applied=%d dir=%s", n, cfg->sql_dir);
    return 0;
}

/* shopd create-super-admin --email E --password-stdin: creates a platform admin,
 * or sets the password of an existing one (and re-enables it). The password is
 * read from the first line of standard input so it never shows in ps. */
static int
cmd_create_super_admin(cfg_t *cfg, const char *email)
{
    char pw[1024], hash[AUTH_HASH_MAX], err[512];
    int status = 1;
    PGconn *pg = NULL;
    PGresult *r = NULL;

    if (email == NULL || !auth_email_valid(email)) {
        fprintf(stderr, "shopd: create-super-admin needs --email with an e-mail address\n");
        return 2;
    }
    if (fgets(pw, sizeof(pw), stdin) == NULL) {
        fprintf(stderr, "shopd: no password on standard input\n");
        return 2;
    }
    pw[strcspn(pw, "\r\n")] = '\0';
    const char *issue = auth_password_issue(pw, email);
    if (issue) {
        fprintf(stderr, "shopd: the password %s\n", issue);
        return 2;
    }
    if (cfg->migrate && cmd_migrate(cfg) != 0)
        return 1;
    if (auth_password_hash(pw, hash, sizeof(hash)) != 0) {
        fprintf(stderr, "shopd: password hashing failed\n");
        return 1;
    }
    pg = PQconnectdb(cfg->database_url);
    if (PQstatus(pg) != CONNECTION_OK) {
        snprintf(err, sizeof(err), "%s", PQerrorMessage(pg));
        err[strcspn(err, "\n")] = '\0';
        log_error("cannot connect to PostgreSQL: %s", err);
        goto out;
    }
    const char *p[2] = {email, hash};
    r = PQexecParams(
        pg,
        "WITH u AS (UPDATE users SET password_hash = $2, status = 'active', updated_at = now() "
        "WHERE store_id IS NULL AND lower(email) = lower($1) RETURNING id, false AS created), "
        "i AS (INSERT INTO users (store_id, email, password_hash, role) "
        "SELECT NULL, $1, $2, 'SUPER_ADMIN' WHERE NOT EXISTS (SELECT 1 FROM u) RETURNING id, true) "
        "SELECT * FROM u UNION ALL SELECT * FROM i",
        2, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        log_error("create-super-admin failed: %s", PQresultErrorMessage(r));
        goto out;
    }
    printf("super admin %s id=%s (%s)\n", email, PQgetvalue(r, 0, 0),
           PQgetvalue(r, 0, 1)[0] == 't' ? "created" : "existed; password updated");
    status = 0;
out:
    PQclear(r);
    PQfinish(pg);
    return status;
}

/* The key ring that seals secrets at rest: SHOPD_SECRETS_KEY, else the key
 * kept in SHOPD_SECRETS_KEY_FILE (made on first start, like run.sh's other
 * embedded defaults). Before the modules: their init re-seals stale rows. */
static int
secrets_setup(const cfg_t *cfg)
{
    char err[256], filekey[128];
    const char *cur = cfg->secrets_key;
    if (cur[0] == '\0') {
        if (cfg->secrets_key_file[0] == '\0') {
            log_error("cannot start: set SHOPD_SECRETS_KEY or SHOPD_SECRETS_KEY_FILE");
            return -1;
        }
        if (seal_key_file(cfg->secrets_key_file, filekey, sizeof(filekey), err, sizeof(err)) != 0) {
            log_error("cannot start: %s", err);
            return -1;
        }
        log_warn("msg=\"secrets sealed with the key kept in a file; production sets "
                 "SHOPD_SECRETS_KEY\" file=%s",
                 cfg->secrets_key_file);
        cur = filekey;
    }
    seal_keys_t *k = seal_keys_new(cur, cfg->secrets_key_old, err, sizeof(err));
    explicit_bzero(filekey, sizeof(filekey));
    if (k == NULL) {
        log_error("cannot start: %s", err);
        return -1;
    }
    log_info("msg=\"secrets sealing key\" kid=%s rotation=%s", seal_keys_kid(k),
             cfg->secrets_key_old[0] ? "yes" : "no");
    seal_process_set(k);
    return 0;
}

static int
cmd_serve(cfg_t *cfg)
{
    char err[512];
    int status = 1;
    app_t app = {.cfg = cfg};
    admin_server_t *admin = NULL;
    size_t modules_up = 0; /* modules whose init succeeded, stopped in reverse */
    sigset_t sigs;

    if (cfg->migrate && cmd_migrate(cfg) != 0)
        return 1;

    /* Block the stop signals in every thread; main waits for them with sigwait. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (evthread_use_pthreads() != 0) {
        log_error("libevent has no pthreads support");
        return 1;
    }
    if (secrets_setup(cfg) != 0)
        goto out;
    app.db = db_pool_new(cfg->database_url, cfg->db_pool_size, err, sizeof(err));
    if (app.db == NULL) {
        log_error("cannot start: %s", err);
        goto out;
    }
    for (; modules_up < api_nmodules; modules_up++) {
        const api_module_t *mod = api_modules[modules_up];
        if (mod->init && mod->init(&app, err, sizeof(err)) != 0) {
            log_error("cannot start: module %s: %s", mod->name, err);
            goto out;
        }
    }
    act_config_t acfg = {
        .workers = cfg->workers,
        .mailbox_cap = (size_t)cfg->mailbox_cap,
        .batch_max =
            (size_t)(cfg->actor_batch > cfg->read_pipeline ? cfg->actor_batch : cfg->read_pipeline),
        .idle_reclaim_ms = (unsigned)cfg->actor_idle_ms,
        .handler = api_actor_turn,
        .worker_init = api_worker_init,
        .worker_fini = api_worker_fini,
        .ud = &app};
    acfg.batch_for = api_batch_for;
    acfg.more = api_more_for;
    acfg.group_of = api_store_of;
    acfg.group_cap = (unsigned)cfg->store_workers;
    app.actors = act_system_new(&acfg);
    /* The blocking pool is a runtime of its own: its threads are the only ones
     * that run argon2 (and, later, outbound calls), so the workers stay free for
     * the stores' actors and reads. Same handler, same worker state. */
    act_config_t bcfg = acfg;
    bcfg.workers = cfg->blocking_threads;
    bcfg.mailbox_cap = (size_t)cfg->blocking_queue;
    bcfg.batch_max = 1;
    bcfg.batch_for = api_blocking_batch_for;
    bcfg.more = NULL;
    bcfg.worker_init = api_blocking_worker_init;
    bcfg.group_cap = (unsigned)(cfg->blocking_threads + 1) / 2; /* as many as a store's lanes */
    app.blocking = app.actors ? act_system_new(&bcfg) : NULL;
    if (app.actors == NULL || app.blocking == NULL) {
        log_error("cannot start: invalid actor configuration");
        goto out;
    }
    api_init();
    net_config_t ncfg = {.host = cfg->listen_host,
                         .port = cfg->listen_port,
                         .threads = cfg->io_threads,
                         .flood_lane = cfg->io_flood_lane,
                         .max_body = (size_t)cfg->max_body,
                         .max_header = (size_t)cfg->max_header,
                         .max_output = (size_t)cfg->max_output,
                         .max_conns = cfg->max_conns,
                         .idle_timeout_s = cfg->idle_timeout,
                         .request_timeout_ms = cfg->request_timeout,
                         .access_log = cfg->access_log,
                         .nlabels = api_nroutes,
                         .labels = api_route_names(),
                         .tls_cert = cfg->tls_cert,
                         .tls_key = cfg->tls_key,
                         .on_request = api_on_request,
                         .on_reply = api_on_reply,
                         .body_cap = api_body_cap,
                         .ud = &app};
    app.net = net_server_new(&ncfg, err, sizeof(err));
    if (app.net == NULL) {
        log_error("cannot start: %s", err);
        goto out;
    }
    /* The admin protocol rides on the same I/O threads (their event bases). */
    if (cfg->admin_listen[0] != '\0') {
        admin = admin_server_new(&app, err, sizeof(err));
        if (admin == NULL) {
            log_error("cannot start: %s", err);
            goto out;
        }
    }
    if (act_system_start(app.actors) != 0 || act_system_start(app.blocking) != 0 ||
        net_server_start(app.net) != 0 || api_ticker_start(&app) != 0) {
        log_error("cannot start threads");
        goto out;
    }
    log_info("shopd listening addr=%s tls=%s admin=%s io_threads=%d workers=%d "
             "blocking_threads=%d db_pool=%d",
             cfg->listen, cfg->tls_cert[0] ? "on" : "off", admin ? cfg->admin_listen : "off",
             cfg->io_threads, cfg->workers, cfg->blocking_threads, cfg->db_pool_size);

    int sig = 0;
    for (;;) {
        sigwait(&sigs, &sig);
        if (sig != SIGHUP)
            break;
        /* A renewed certificate: new connections get it, open ones keep theirs. */
        if (net_server_reload_tls(app.net, err, sizeof(err)) != 0)
            log_error("tls reload failed, keeping the old certificate: %s", err);
        else
            log_info("tls reload done cert=%s", cfg->tls_cert[0] ? cfg->tls_cert : "(none)");
    }
    log_info("stopping signal=%s deadline_ms=%d", sig == SIGINT ? "SIGINT" : "SIGTERM",
             cfg->shutdown_timeout);

    uint64_t deadline = shopd_now_us() + (uint64_t)cfg->shutdown_timeout * 1000u;
    admin_server_drain(admin); /* first: net_server_drain wakes each thread for both */
    net_server_drain(app.net);
    api_ticker_stop(); /* no sweeper sends to the actors from here on */
    while (net_server_inflight(app.net) + admin_server_inflight(admin) > 0 &&
           shopd_now_us() < deadline)
        usleep(5000);
    uint64_t now = shopd_now_us();
    unsigned left_ms = now < deadline ? (unsigned)((deadline - now) / 1000u) : 0;
    /* The blocking pool first: its tasks may still forward to the actors. */
    size_t dropped = act_system_stop(app.blocking, left_ms);
    now = shopd_now_us();
    left_ms = now < deadline ? (unsigned)((deadline - now) / 1000u) : 0;
    dropped += act_system_stop(app.actors, left_ms);
    net_server_stop(app.net);
    admin_server_free(admin); /* its connections live on the ended loops' bases */
    admin = NULL;
    log_info("stopped inflight_left=%llu dropped_messages=%zu",
             (unsigned long long)net_server_inflight(app.net), dropped);
    status = 0;
out:
    api_ticker_stop();
    if (status != 0) {
        /* No thread may run (or log into the admin's tap) while the admin side is freed. */
        if (app.net)
            net_server_stop(app.net);
        if (app.blocking)
            act_system_stop(app.blocking, 0);
        if (app.actors)
            act_system_stop(app.actors, 0);
    }
    admin_server_free(admin);
    net_server_free(app.net);
    act_system_free(app.blocking);
    act_system_free(app.actors);
    while (modules_up > 0) {
        const api_module_t *mod = api_modules[--modules_up];
        if (mod->fini)
            mod->fini(&app);
    }
    db_pool_free(app.db);
    seal_process_set(NULL);
    return status;
}

int
main(int argc, char **argv)
{
    cfg_t cfg;
    char err[512];
    int first = 1;
    const char *cmd = "serve";

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            cfg_usage(stdout);
            return 0;
        }
    }
    if (argc > 1 && argv[1][0] != '-') {
        cmd = argv[1];
        first = 2;
    }
    if (strcmp(cmd, "serve") && strcmp(cmd, "migrate") && strcmp(cmd, "create-super-admin")) {
        fprintf(stderr, "shopd: unknown command '%s' (try --help)\n", cmd);
        return 2;
    }
    /* create-super-admin's own flags are taken out before the configuration sees argv. */
    const char *email = NULL;
    bool pw_stdin = false;
    if (strcmp(cmd, "create-super-admin") == 0) {
        int o = first;
        for (int i = first; i < argc; i++) {
            if (!strcmp(argv[i], "--email") && i + 1 < argc)
                email = argv[++i];
            else if (!strncmp(argv[i], "--email=", 8))
                email = argv[i] + 8;
            else if (!strcmp(argv[i], "--password-stdin"))
                pw_stdin = true;
            else
                argv[o++] = argv[i];
        }
        argc = o;
        if (!pw_stdin) {
            fprintf(stderr, "shopd: create-super-admin needs --email E --password-stdin\n");
            return 2;
        }
    }
    if (cfg_load(&cfg, argc, argv, first, err, sizeof(err)) != 0) {
        fprintf(stderr, "shopd: %s\n", err);
        cfg_free(&cfg);
        return 2;
    }
    log_level_t lvl;
    if (log_parse_level(cfg.log_level, &lvl) == 0)
        log_set_level(lvl);

    int rc = strcmp(cmd, "migrate") == 0              ? cmd_migrate(&cfg)
             : strcmp(cmd, "create-super-admin") == 0 ? cmd_create_super_admin(&cfg, email)
                                                      : cmd_serve(&cfg);
    cfg_free(&cfg);
    return rc;
}
