/*
 * cli.c: shopctl's command line (cli.h). The friendly verbs are one table:
 * each names the operation it sends, the positional arguments it takes, and
 * its help page with an example; "shopctl help" is printed from the table.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

/* clang-format off */
typedef struct verb_s {
    const char *name;   /* "store create" */
    const char *op;     /* operation sent */
    const char *pos[2]; /* positional arguments, in order (become args) */
    const char *usage, *help, *example;
} verb_t;

static const verb_t verbs[] = {
    {"ping", "ping", {NULL, NULL}, "ping", "checks the connection and the token", "shopctl ping"},
    {"ops", "ops", {NULL, NULL}, "ops", "lists every operation the server has, with its arguments", "shopctl ops"},
    {"stats", "stats", {NULL, NULL}, "stats", "the /metrics figures, actor and admin counters", "shopctl stats --json"},
    {"config", "config.show", {NULL, NULL}, "config", "every setting and its value (secrets redacted)", "shopctl config"},
    {"actors", "actors.list", {NULL, NULL}, "actors [limit=N]", "live actors, deepest mailbox first", "shopctl actors limit=10"},
    {"migrations", "migrations.status", {NULL, NULL}, "migrations", "applied and pending migrations", "shopctl migrations"},
    {"stores", "stores.list", {NULL, NULL}, "stores [status=active|suspended] [limit=N] [cursor=C]", "lists stores", "shopctl stores status=suspended"},
    {"store get", "stores.get", {"id", NULL}, "store get ID|SLUG", "shows one store", "shopctl store get acme"},
    {"store create", "stores.create", {NULL, NULL}, "store create slug=S name=N currency=C [domain=D] [admin:={...}]", "creates a store (optionally with its first STORE_ADMIN)", "shopctl store create slug=acme name=Acme currency=EUR"},
    {"store update", "stores.update", {"id", NULL}, "store update ID|SLUG k=v...", "changes a store's name, currency, domain, settings or status", "shopctl store update acme name='Acme Ltd'"},
    {"store suspend", "stores.suspend", {"id", NULL}, "store suspend ID|SLUG", "suspends a store: its API answers 403 store_suspended", "shopctl store suspend acme"},
    {"store resume", "stores.resume", {"id", NULL}, "store resume ID|SLUG", "makes a suspended store active again", "shopctl store resume acme"},
    {"store delete", "stores.delete", {"id", NULL}, "store delete ID|SLUG", "deletes a store", "shopctl store delete acme"},
    {"users", "users.list", {"store", NULL}, "users STORE [role=R] [status=S] [limit=N]", "lists a store's users", "shopctl users acme role=STORE_ADMIN"},
    {"user create", "users.create", {"store", NULL}, "user create STORE email=E password=P name=N role=R", "creates a store admin or customer", "shopctl user create acme email=a@acme.test password=s3cret-pass name=Ann role=STORE_ADMIN"},
    {"tail", "events.tail", {NULL, NULL}, "tail [store=ID|SLUG] [kinds:='[\"access\",\"admin\",\"log\"]']", "follows the server's log lines (access, admin, the rest) until Ctrl-C", "shopctl tail store=acme kinds:='[\"access\"]'"},
    {"analytics rebuild", "analytics.rebuild", {NULL, NULL}, "analytics rebuild [--store ID|SLUG]", "recomputes the sales rollups from the orders: one store, or every store", "shopctl analytics rebuild --store acme"},
    {"products", "products.list", {"store", NULL}, "products STORE [status=S] [limit=N]", "lists a store's products", "shopctl products acme limit=5"},
};
/* clang-format on */

#define NVERBS (sizeof(verbs) / sizeof(verbs[0]))

size_t
shopctl_verb_names(const char **names, size_t max)
{
    size_t n = 0;
    for (size_t v = 0; v < NVERBS && n < max; v++)
        names[n++] = verbs[v].name;
    static const char *const more[] = {"help", "import products"};
    for (size_t i = 0; i < 2 && n < max; i++)
        names[n++] = more[i];
    return n;
}

static int
fail(char *err, size_t errlen, const char *msg, const char *a)
{
    snprintf(err, errlen, msg, a ? a : "");
    return SHOPCTL_USAGE;
}

static int
parse_addr(const char *s, char *host, size_t hostlen, int *port, bool *tls)
{
    if (strncmp(s, "tcp://", 6) == 0) {
        s += 6;
    } else if (strncmp(s, "tls://", 6) == 0) {
        s += 6;
        *tls = true;
    }
    const char *colon;
    size_t hl;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (rb == NULL || rb[1] != ':')
            return -1;
        s++;
        hl = (size_t)(rb - s);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -1;
        hl = (size_t)(colon - s);
    }
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (hl == 0 || hl >= hostlen || *end != '\0' || end == colon + 1 || p < 1 || p > 65535)
        return -1;
    memcpy(host, s, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
}

int
shopctl_arg(json_t *args, const char *kv, char *err, size_t errlen)
{
    const char *eq = strchr(kv, '=');
    if (eq == NULL || eq == kv) {
        snprintf(err, errlen, "argument '%s' is not key=value (or key:=json)", kv);
        return -1;
    }
    bool raw = eq > kv && eq[-1] == ':';
    size_t kl = (size_t)(eq - kv) - (raw ? 1 : 0);
    if (kl == 0 || kl >= 128) {
        snprintf(err, errlen, "argument '%s' has no key", kv);
        return -1;
    }
    char key[128];
    memcpy(key, kv, kl);
    key[kl] = '\0';
    json_t *v;
    if (raw) {
        json_error_t je;
        v = json_loads(eq + 1, JSON_DECODE_ANY, &je);
        if (v == NULL) {
            snprintf(err, errlen, "argument %s: the value is not JSON (%s)", key, je.text);
            return -1;
        }
    } else {
        v = json_string(eq + 1);
        if (v == NULL) {
            snprintf(err, errlen, "argument %s: the value is not UTF-8", key);
            return -1;
        }
    }
    json_object_set_new(args, key, v);
    return 0;
}

int
shopctl_parse(int argc, char **argv, const char *env_addr, const char *env_token, shopctl_opts_t *o,
              char *err, size_t errlen)
{
    memset(o, 0, sizeof(*o));
    snprintf(o->host, sizeof(o->host), "127.0.0.1");
    o->port = 8081;
    o->token = env_token && *env_token ? env_token : NULL;
    o->timeout_s = 30;
    if (env_addr && *env_addr &&
        parse_addr(env_addr, o->host, sizeof(o->host), &o->port, &o->tls) != 0)
        return fail(err, errlen, "SHOPCTL_ADDR='%s' is not host:port", env_addr);
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
        const char *a = argv[i];
        const char *val = strchr(a, '=') ? strchr(a, '=') + 1 : NULL;
        size_t nl = val ? (size_t)(val - 1 - a) : strlen(a);
        char name[32];
        if (nl >= sizeof(name))
            return fail(err, errlen, "unknown option '%s' (shopctl help)", a);
        memcpy(name, a, nl);
        name[nl] = '\0';
        if (!strcmp(name, "--")) {
            i++;
            break; /* the command follows */
        }
        bool takes = !strcmp(name, "--addr") || !strcmp(name, "--url") ||
                     !strcmp(name, "--token") || !strcmp(name, "--timeout") ||
                     !strcmp(name, "--watch") || !strcmp(name, "--tls-ca");
        if (takes && val == NULL) {
            if (i + 1 >= argc)
                return fail(err, errlen, "%s needs a value", name);
            val = argv[++i];
        } else if (!takes && val != NULL) {
            return fail(err, errlen, "%s takes no value", name);
        }
        if (!strcmp(name, "--addr") || !strcmp(name, "--url")) {
            if (parse_addr(val, o->host, sizeof(o->host), &o->port, &o->tls) != 0)
                return fail(err, errlen, "address '%s' is not host:port (or tcp://host:port)", val);
        } else if (!strcmp(name, "--token")) {
            o->token = val;
        } else if (!strcmp(name, "--timeout")) {
            char *end;
            long t = strtol(val, &end, 10);
            if (*end != '\0' || t < 1 || t > 86400)
                return fail(err, errlen, "--timeout '%s' is not a number of seconds (1-86400)",
                            val);
            o->timeout_s = (int)t;
        } else if (!strcmp(name, "--watch")) {
            char *end;
            long t = strtol(val, &end, 10);
            if (*end != '\0' || t < 1 || t > 3600)
                return fail(err, errlen, "--watch '%s' is not a number of seconds (1-3600)", val);
            o->watch_s = (int)t;
        } else if (!strcmp(name, "--tls-ca")) {
            o->tls_ca = val;
            o->tls = true;
        } else if (!strcmp(name, "--tls")) {
            o->tls = true;
        } else if (!strcmp(name, "--tls-insecure")) {
            o->tls = true;
            o->tls_insecure = true;
        } else if (!strcmp(name, "--json")) {
            o->json = true;
        } else if (!strcmp(name, "--msgpack")) {
            o->msgpack = true;
        } else if (!strcmp(name, "--help")) {
            o->help = true;
            return 0;
        } else {
            return fail(err, errlen, "unknown option '%s' (shopctl help)", a);
        }
    }
    if (i >= argc) {
        o->help = true;
        return 0;
    }
    if (!strcmp(argv[i], "help") || !strcmp(argv[i], "-h")) {
        o->help = true;
        size_t tl = 0;
        for (int j = i + 1; j < argc && tl < sizeof(o->topic_buf); j++)
            tl += (size_t)snprintf(o->topic_buf + tl, sizeof(o->topic_buf) - tl, "%s%s",
                                   j > i + 1 ? " " : "", argv[j]);
        o->topic = i + 1 < argc ? o->topic_buf : NULL;
        return 0;
    }
    if (!strcmp(argv[i], "import")) {
        /* import products --store S FILE (or store=S FILE) */
        if (i + 1 >= argc || strcmp(argv[i + 1], "products") != 0)
            return fail(err, errlen, "usage: shopctl import products --store S FILE%s", NULL);
        const char *store = NULL;
        for (i += 2; i < argc; i++) {
            if (!strcmp(argv[i], "--store") && i + 1 < argc)
                store = argv[++i];
            else if (!strncmp(argv[i], "--store=", 8))
                store = argv[i] + 8;
            else if (!strncmp(argv[i], "store=", 6))
                store = argv[i] + 6;
            else if (o->import_file == NULL)
                o->import_file = argv[i];
            else
                return fail(err, errlen, "import: unexpected argument '%s'", argv[i]);
        }
        if (store == NULL || o->import_file == NULL)
            return fail(err, errlen, "usage: shopctl import products --store S FILE%s", NULL);
        snprintf(o->op, sizeof(o->op), "import.products");
        o->args = json_pack("{s:s}", "store", store);
        return 0;
    }
    /* The longest verb that matches ("store create" before "store"). */
    const verb_t *verb = NULL;
    int used = 0;
    for (size_t v = 0; v < NVERBS; v++) {
        const char *name = verbs[v].name;
        const char *sp = strchr(name, ' ');
        if (sp == NULL && !strcmp(name, argv[i]) && used < 1) {
            verb = &verbs[v];
            used = 1;
        } else if (sp && i + 1 < argc && strlen(argv[i]) == (size_t)(sp - name) &&
                   !strncmp(name, argv[i], (size_t)(sp - name)) && !strcmp(sp + 1, argv[i + 1])) {
            verb = &verbs[v];
            used = 2;
        }
    }
    o->args = json_object();
    if (verb) {
        snprintf(o->op, sizeof(o->op), "%s", verb->op);
        i += used;
        for (int p = 0; p < 2 && verb->pos[p]; p++) {
            if (i >= argc || strchr(argv[i], '=')) {
                json_decref(o->args);
                o->args = NULL;
                snprintf(err, errlen, "usage: shopctl %s", verb->usage);
                return SHOPCTL_USAGE;
            }
            json_object_set_new(o->args, verb->pos[p], json_string(argv[i++]));
        }
    } else if (strchr(argv[i], '.') || !strcmp(argv[i], "ping")) {
        snprintf(o->op, sizeof(o->op), "%s", argv[i++]);
    } else {
        const char *names[64];
        const char *near = shopctl_nearest(argv[i], names, shopctl_verb_names(names, 64));
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "%s", argv[i]);
        json_decref(o->args);
        o->args = NULL;
        if (near)
            snprintf(err, errlen, "unknown command '%s'; did you mean '%s'? (shopctl help)", cmd,
                     near);
        else
            snprintf(err, errlen, "unknown command '%s' (shopctl help lists them)", cmd);
        return SHOPCTL_USAGE;
    }
    for (; i < argc; i++) {
        /* --store S (or --store=S) reads as store=S, as for import. */
        if (!strcmp(argv[i], "--store") && i + 1 < argc) {
            json_object_set_new(o->args, "store", json_string(argv[++i]));
            continue;
        }
        if (!strncmp(argv[i], "--store=", 8)) {
            json_object_set_new(o->args, "store", json_string(argv[i] + 8));
            continue;
        }
        if (shopctl_arg(o->args, argv[i], err, errlen) != 0) {
            json_decref(o->args);
            o->args = NULL;
            return SHOPCTL_USAGE;
        }
    }
    return 0;
}

int
shopctl_csv_split(char *line, char **fields, int max)
{
    int n = 0;
    char *r = line, *w = line;
    for (;;) {
        if (n == max)
            return n;
        fields[n++] = w;
        if (*r == '"') {
            r++;
            for (;;) {
                if (*r == '\0')
                    return -1;
                if (*r == '"' && r[1] == '"') {
                    *w++ = '"';
                    r += 2;
                } else if (*r == '"') {
                    r++;
                    break;
                } else {
                    *w++ = *r++;
                }
            }
        }
        while (*r && *r != ',' && *r != '\n' && *r != '\r')
            *w++ = *r++;
        bool more = *r == ',';
        *w++ = '\0';
        if (!more)
            return n;
        r++;
    }
}

json_t *
shopctl_csv_row(char *const *header, char *const *cells, int n, char *err, size_t errlen)
{
    json_t *o = json_object();
    for (int i = 0; i < n; i++) {
        if (cells[i][0] == '\0')
            continue;
        size_t hl = strlen(header[i]);
        bool raw = hl > 2 && !strcmp(header[i] + hl - 2, ":=");
        char key[128];
        snprintf(key, sizeof(key), "%.*s", (int)(raw ? hl - 2 : hl), header[i]);
        json_t *v = raw ? json_loads(cells[i], JSON_DECODE_ANY, NULL) : json_string(cells[i]);
        if (v == NULL) {
            snprintf(err, errlen, "column %s: '%s' is not %s", key, cells[i],
                     raw ? "JSON" : "UTF-8 text");
            json_decref(o);
            return NULL;
        }
        json_object_set_new(o, key, v);
    }
    return o;
}

/* Levenshtein distance of two short strings (longer ones are never "near"). */
static size_t
distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 64;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j];
            size_t best = prev + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            prev = cur;
        }
    }
    return row[lb];
}

const char *
shopctl_nearest(const char *word, const char *const *names, size_t n)
{
    const char *best = NULL;
    size_t bd = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        size_t d = distance(word, names[i]);
        if (d < bd) {
            bd = d;
            best = names[i];
        }
    }
    /* A typo is a few edits away, relative to the word's length. */
    size_t limit = strlen(word) / 3 + 1;
    return best && bd <= limit ? best : NULL;
}

/* ------------------------------------------------------------ printing */

static char *
cell(const json_t *v)
{
    if (json_is_string(v))
        return strdup(json_string_value(v));
    if (json_is_null(v) || v == NULL)
        return strdup("-");
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s && strlen(s) > 40)
        strcpy(s + 37, "...");
    return s ? s : strdup("?");
}

/* The columns: the first row's keys, then any new keys of later rows. */
static void
print_table(FILE *out, const json_t *rows)
{
    const char *cols[32];
    size_t ncols = 0, nrows = json_array_size(rows);
    for (size_t r = 0; r < nrows; r++) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)json_array_get(rows, r), k, v)
        {
            size_t c = 0;
            while (c < ncols && strcmp(cols[c], k))
                c++;
            if (c == ncols && ncols < 32)
                cols[ncols++] = k;
        }
    }
    size_t width[32];
    for (size_t c = 0; c < ncols; c++) {
        width[c] = strlen(cols[c]);
        for (size_t r = 0; r < nrows; r++) {
            char *s = cell(json_object_get(json_array_get(rows, r), cols[c]));
            if (strlen(s) > width[c])
                width[c] = strlen(s);
            free(s);
        }
    }
    for (size_t c = 0; c < ncols; c++) {
        char up[64];
        size_t l = strlen(cols[c]) < 63 ? strlen(cols[c]) : 63;
        for (size_t j = 0; j < l; j++)
            up[j] = (char)(cols[c][j] >= 'a' && cols[c][j] <= 'z' ? cols[c][j] - 32 : cols[c][j]);
        up[l] = '\0';
        if (c + 1 < ncols)
            fprintf(out, "%-*s  ", (int)width[c], up);
        else
            fprintf(out, "%s\n", up);
    }
    for (size_t r = 0; r < nrows; r++) {
        for (size_t c = 0; c < ncols; c++) {
            char *s = cell(json_object_get(json_array_get(rows, r), cols[c]));
            if (c + 1 < ncols)
                fprintf(out, "%-*s  ", (int)width[c], s);
            else
                fprintf(out, "%s\n", s);
            free(s);
        }
    }
    if (nrows == 0)
        fprintf(out, "(none)\n");
}

static bool
is_rows(const json_t *v)
{
    if (!json_is_array(v))
        return false;
    for (size_t i = 0; i < json_array_size(v); i++)
        if (!json_is_object(json_array_get(v, i)))
            return false;
    return true;
}

/* "key  value" lines; a nested object becomes its own indented block. */
static void
print_fields(FILE *out, const json_t *obj, const char *skip, int indent)
{
    size_t w = 0;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v)
    {
        if ((!skip || strcmp(k, skip)) && !json_is_object(v) && strlen(k) > w)
            w = strlen(k);
    }
    json_object_foreach((json_t *)obj, k, v)
    {
        if ((skip && !strcmp(k, skip)) || json_is_object(v))
            continue;
        char *s = json_is_string(v) ? strdup(json_string_value(v))
                                    : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        fprintf(out, "%*s%-*s  %s\n", indent, "", (int)w, k, s ? s : "?");
        free(s);
    }
    json_object_foreach((json_t *)obj, k, v)
    {
        if (!json_is_object(v) || (skip && !strcmp(k, skip)))
            continue;
        fprintf(out, "%*s%s:\n", indent, "", k);
        if (json_object_size(v) == 0)
            fprintf(out, "%*s(empty)\n", indent + 2, "");
        print_fields(out, v, NULL, indent + 2);
    }
}

void
shopctl_print(FILE *out, const json_t *res)
{
    if (is_rows(res)) {
        print_table(out, res);
        return;
    }
    if (json_is_object(res)) {
        const char *k, *list = NULL;
        json_t *v;
        json_object_foreach((json_t *)res, k, v)
        {
            if (list == NULL && json_is_array(v) && is_rows(v))
                list = k;
        }
        if (list) {
            print_table(out, json_object_get(res, list));
            if (json_object_size(res) > 1) {
                fprintf(out, "\n");
                print_fields(out, res, list, 0);
            }
            return;
        }
        print_fields(out, res, NULL, 0);
        return;
    }
    char *s = json_is_string(res) ? strdup(json_string_value(res))
                                  : json_dumps(res, JSON_COMPACT | JSON_ENCODE_ANY);
    fprintf(out, "%s\n", s ? s : "null");
    free(s);
}

int
shopctl_help(FILE *out, const char *topic)
{
    if (topic) {
        for (size_t v = 0; v < NVERBS; v++) {
            if (strcmp(verbs[v].name, topic) && strcmp(verbs[v].op, topic))
                continue;
            fprintf(out, "usage: shopctl %s\n\n  %s (operation %s)\n\nexample:\n  %s\n",
                    verbs[v].usage, verbs[v].help, verbs[v].op, verbs[v].example);
            return 0;
        }
        if (!strcmp(topic, "import") || !strcmp(topic, "import products")) {
            fprintf(out,
                    "usage: shopctl import products --store S FILE.csv|FILE.jsonl\n\n"
                    "  sends the rows in import.products requests of up to 2000 (the server\n"
                    "  loads them in batches of one transaction on the store's actor, with\n"
                    "  products.create's validation); a progress bar on a terminal; then a\n"
                    "  summary of the rows refused with their reasons (exit status 1 if any).\n\n"
                    "  JSON lines: one product per line, variants in it\n"
                    "  "
                    "({\"name\",\"base_price\",\"variants\":[{\"sku\",\"options\",\"price\","
                    "\"stock\"}]}).\n"
                    "  CSV: a header row; a column \"name\" is a string, \"name:=\" JSON\n"
                    "  (base_price:=, attributes:=, variants:=).\n\n"
                    "example:\n  printf 'name,base_price:=\\nMug,1200\\n' > p.csv\n"
                    "  shopctl import products --store acme p.csv\n");
            return 0;
        }
        /* "help store": every "store ..." command. */
        bool any = false;
        size_t tl = strlen(topic);
        for (size_t v = 0; v < NVERBS; v++) {
            if (strncmp(verbs[v].name, topic, tl) || verbs[v].name[tl] != ' ')
                continue;
            if (!any)
                fprintf(out, "commands of %s:\n", topic);
            any = true;
            fprintf(out, "  shopctl %-60s %s\n", verbs[v].usage, verbs[v].help);
        }
        if (any)
            return 0;
        if (strchr(topic, '.')) {
            fprintf(out,
                    "usage: shopctl %s [key=value | key:=json ...]\n\n"
                    "  sends operation %s; `shopctl ops` lists every operation and its "
                    "arguments\n",
                    topic, topic);
            return 0;
        }
        return -1;
    }
    fprintf(out, "usage: shopctl [--addr host:port] [--token T] [--json|--msgpack] [--timeout S] "
                 "[--watch S]\n"
                 "               [--tls] [--tls-ca FILE] [--tls-insecure] COMMAND [ARGS]\n\n"
                 "Talks to shopd's admin port (SHOPD_ADMIN_LISTEN, default 127.0.0.1:8081).\n"
                 "The token comes from --token, SHOPD_ADMIN_TOKEN or SHOPCTL_TOKEN (an admin\n"
                 "token of the server, or a SUPER_ADMIN's access token); the address from\n"
                 "--addr or SHOPCTL_ADDR (tls://host:port or --tls for a TLS port; --tls-ca FILE\n"
                 "names the CA to trust, --tls-insecure checks nothing). --watch S repeats\n"
                 "the command every S seconds.\n\ncommands:\n");
    for (size_t v = 0; v < NVERBS; v++)
        fprintf(out, "  %-15s %s\n", verbs[v].name, verbs[v].help);
    fprintf(out, "  %-15s %s\n", "OP [k=v ...]",
            "any operation by name (stores.list, products.create...); k:=json for typed values");
    fprintf(out, "  %-15s %s\n", "import products",
            "--store S FILE.csv|FILE.jsonl: bulk load (import.products), rejected rows summed up");
    fprintf(out, "  %-15s %s\n", "help [COMMAND]", "this text, or one command's page");
    fprintf(out, "\nexit status: 0 ok, 1 an error answer, 2 usage, 3 cannot connect or "
                 "authenticate\n\nexamples:\n  shopctl stores\n  shopctl store create slug=acme "
                 "name=Acme currency=EUR\n  shopctl --json products acme limit=5\n  shopctl "
                 "inventory.adjust store=acme id=42 adjust:=5 reason=restock\n");
    return 0;
}
