/*
 * migrate.c: the schema migration runner. It owns the schema_migrations
 * table and the rule for migration files: sql_dir/NNNN_name.sql, applied in
 * ascending NNNN, each in its own transaction together with the row that
 * records it, so a file is either fully applied and recorded or not at all.
 *
 * It uses its own short-lived connection (not the pool) because it runs at
 * start-up or from `shopd migrate`, before or beside the pool, and because a
 * session advisory lock must live exactly as long as the run.
 *
 * Files must not contain BEGIN/COMMIT or statements that cannot run inside a
 * transaction (CREATE INDEX CONCURRENTLY, VACUUM).
 */
#include "shopd/db.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "db/db_priv.h"
#include "shopd/log.h"

/* Advisory lock key: "shopd" in ASCII, shared by every shopd process. */
#define MIGRATE_LOCK_KEY "495756448868"
/* A migration larger than this is a mistake (a dump), not a schema change. */
#define MIGRATE_MAX_FILE (16 * 1024 * 1024)

typedef struct mig_file_s {
    long version;
    char *name; /* file name, e.g. 0001_stores.sql */
} mig_file_t;

static int
mig_cmp(const void *a, const void *b)
{
    long va = ((const mig_file_t *)a)->version, vb = ((const mig_file_t *)b)->version;
    return (va > vb) - (va < vb);
}

/* Parses "NNNN_name.sql"; returns the version or -1 when the name does not fit. */
static long
mig_version(const char *fname)
{
    size_t len = strlen(fname);
    if (len < 6 || strcmp(fname + len - 4, ".sql") != 0)
        return -1;
    size_t digits = strspn(fname, "0123456789");
    if (digits == 0 || digits > 9 || fname[digits] != '_' || digits + 1 >= len - 4)
        return -1;
    return strtol(fname, NULL, 10);
}

static void
mig_files_free(mig_file_t *files, size_t n)
{
    for (size_t i = 0; i < n; i++)
        shopd_free(files[i].name);
    shopd_free(files);
}

/* Lists the migration files of dir sorted by version. Returns 0, or -1 with err. */
static int
mig_scan(const char *dir, mig_file_t **out, size_t *nout, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        snprintf(err, errlen, "cannot open migrations directory %s: %s", dir, strerror(errno));
        return -1;
    }
    mig_file_t *files = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        long v = mig_version(e->d_name);
        if (v < 0) {
            size_t len = strlen(e->d_name);
            if (len > 4 && strcmp(e->d_name + len - 4, ".sql") == 0)
                log_warn("msg=\"ignoring sql file not named NNNN_name.sql\" file=%s", e->d_name);
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            files = shopd_realloc(files, cap * sizeof(*files));
        }
        files[n++] = (mig_file_t){v, shopd_strdup(e->d_name)};
    }
    closedir(d);
    if (n > 0)
        qsort(files, n, sizeof(*files), mig_cmp);
    for (size_t i = 1; i < n; i++) {
        if (files[i].version == files[i - 1].version) {
            snprintf(err, errlen, "migrations %s and %s share version %ld", files[i - 1].name,
                     files[i].name, files[i].version);
            mig_files_free(files, n);
            return -1;
        }
    }
    *out = files;
    *nout = n;
    return 0;
}

static char *
read_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot read migration %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size > MIGRATE_MAX_FILE) {
        snprintf(err, errlen, "migration %s is unreadable or larger than %d bytes", path,
                 MIGRATE_MAX_FILE);
        fclose(f);
        return NULL;
    }
    char *buf = shopd_malloc((size_t)st.st_size + 1);
    size_t got = fread(buf, 1, (size_t)st.st_size, f);
    fclose(f);
    buf[got] = '\0';
    if (strlen(buf) != got) {
        snprintf(err, errlen, "migration %s contains a NUL byte", path);
        shopd_free(buf);
        return NULL;
    }
    return buf;
}

/* Line number (1-based) of the character at 1-based position pos in a UTF-8
 * text: PostgreSQL reports error positions in characters, not bytes. */
static int
line_of(const char *text, long pos)
{
    int line = 1;
    long chars = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if ((*p & 0xC0) == 0x80)
            continue; /* UTF-8 continuation byte */
        if (++chars >= pos)
            break;
        if (*p == '\n')
            line++;
    }
    return line;
}

/* Describes a failed result as "file:line: message (SQLSTATE)". */
static void
describe_failure(const PGresult *r, PGconn *pg, const char *fname, const char *text, char *err,
                 size_t errlen)
{
    char msg[512];
    const char *primary = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    db_first_line(primary ? primary : PQerrorMessage(pg), msg, sizeof(msg));
    const char *pos = r ? PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION) : NULL;
    const char *state = db_sqlstate(r);
    if (pos != NULL && text != NULL)
        snprintf(err, errlen, "migration %s failed at line %d: %s (%s)", fname,
                 line_of(text, atol(pos)), msg, state);
    else
        snprintf(err, errlen, "migration %s failed: %s%s%s%s", fname, msg, *state ? " (" : "",
                 state, *state ? ")" : "");
}

/* Runs sql and returns true when it succeeded; otherwise describes the failure. */
static bool
run(PGconn *pg, const char *sql, const char *what, char *err, size_t errlen)
{
    PGresult *r = PQexec(pg, sql);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
    if (!ok)
        describe_failure(r, pg, what, NULL, err, errlen);
    PQclear(r);
    return ok;
}

/* Applies one file in its own transaction with its record. Returns true on success. */
static bool
apply_one(PGconn *pg, const char *dir, const mig_file_t *m, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, m->name);
    char *text = read_file(path, err, errlen);
    if (text == NULL)
        return false;

    bool ok = false;
    if (!run(pg, "BEGIN", m->name, err, errlen))
        goto out;
    /* PQexec runs a multi-statement file in one call; it stops at the first
     * failing statement and returns that error. */
    PGresult *r = PQexec(pg, text);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
        describe_failure(r, pg, m->name, text, err, errlen);
        PQclear(r);
        PQclear(PQexec(pg, "ROLLBACK"));
        goto out;
    }
    PQclear(r);
    if (PQtransactionStatus(pg) != PQTRANS_INTRANS) {
        /* The file committed on its own; its effects are in, so record it
         * anyway (outside a transaction) rather than apply it twice later. */
        log_warn("msg=\"migration ended its own transaction; files must not contain COMMIT\" "
                 "file=%s",
                 m->name);
    }
    char ver[24];
    snprintf(ver, sizeof(ver), "%ld", m->version);
    const char *params[2] = {ver, m->name};
    r = PQexecParams(pg, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2, NULL,
                     params, NULL, NULL, 0);
    if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK) {
        describe_failure(r, pg, m->name, NULL, err, errlen);
        PQclear(r);
        PQclear(PQexec(pg, "ROLLBACK"));
        goto out;
    }
    PQclear(r);
    if (PQtransactionStatus(pg) == PQTRANS_INTRANS && !run(pg, "COMMIT", m->name, err, errlen))
        goto out;
    ok = true;
out:
    shopd_free(text);
    return ok;
}

/* True when version is among the n sorted applied versions. */
static bool
is_applied(const long *applied, size_t n, long version)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (applied[mid] == version)
            return true;
        if (applied[mid] < version)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

int
db_migrate(const char *conninfo, const char *sql_dir, char *err, size_t errlen)
{
    int applied_now = -1;
    mig_file_t *files = NULL;
    size_t nfiles = 0;
    long *applied = NULL;
    size_t napplied = 0;
    bool locked = false;
    PGconn *pg = NULL;

    if (mig_scan(sql_dir, &files, &nfiles, err, errlen) != 0)
        goto out;

    pg = db_connect(conninfo);
    if (pg == NULL || PQstatus(pg) != CONNECTION_OK) {
        char line[256];
        db_first_line(pg ? PQerrorMessage(pg) : "out of memory", line, sizeof(line));
        snprintf(err, errlen, "cannot connect to PostgreSQL: %s", line);
        goto out;
    }
    /* Quiet "already exists, skipping" notices from idempotent DDL. */
    if (!run(pg, "SET client_min_messages = warning", "session setup", err, errlen))
        goto out;
    /* Two processes starting together: one migrates, the other waits, then
     * finds everything applied. */
    if (!run(pg, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", "advisory lock", err, errlen))
        goto out;
    locked = true;
    if (!run(pg,
             "CREATE TABLE IF NOT EXISTS schema_migrations ("
             " version int PRIMARY KEY,"
             " name text NOT NULL,"
             " applied_at timestamptz NOT NULL DEFAULT now())",
             "schema_migrations", err, errlen))
        goto out;

    PGresult *r = PQexec(pg, "SELECT version FROM schema_migrations ORDER BY version");
    if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK) {
        describe_failure(r, pg, "schema_migrations", NULL, err, errlen);
        PQclear(r);
        goto out;
    }
    napplied = (size_t)PQntuples(r);
    applied = shopd_calloc(napplied, sizeof(*applied));
    for (size_t i = 0; i < napplied; i++)
        applied[i] = atol(PQgetvalue(r, (int)i, 0));
    PQclear(r);

    int count = 0;
    for (size_t i = 0; i < nfiles; i++) {
        if (is_applied(applied, napplied, files[i].version))
            continue;
        uint64_t t0 = shopd_now_us();
        if (!apply_one(pg, sql_dir, &files[i], err, errlen))
            goto out;
        log_info("msg=\"migration applied\" file=%s ms=%llu", files[i].name,
                 (unsigned long long)((shopd_now_us() - t0) / 1000));
        count++;
    }
    if (napplied > 0 && (nfiles == 0 || applied[napplied - 1] > files[nfiles - 1].version))
        log_warn("msg=\"database has migrations newer than this build\" latest=%ld",
                 applied[napplied - 1]);
    applied_now = count;
out:
    if (locked)
        PQclear(PQexec(pg, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")"));
    if (pg != NULL)
        PQfinish(pg);
    shopd_free(applied);
    mig_files_free(files, nfiles);
    return applied_now;
}
