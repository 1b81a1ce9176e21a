/*
 * cli.h: shopctl's command line, apart from the network so it can be unit
 * tested (tests/unit/test_shopctl.c): global options, the friendly verbs
 * ("stores", "store create ...") turned into an operation and its arguments,
 * k=v / k:=json arguments, the nearest command for a typo, and the tables.
 */
#ifndef SHOPCTL_CLI_H
#define SHOPCTL_CLI_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

enum {
    SHOPCTL_OK = 0,      /**< the answer was ok */
    SHOPCTL_ERROR = 1,   /**< an error answer */
    SHOPCTL_USAGE = 2,   /**< the command line is wrong */
    SHOPCTL_CONNECT = 3, /**< cannot connect or authenticate */
};

typedef struct shopctl_opts_s {
    char host[256];
    int port;
    const char *token; /**< points into argv or the environment; NULL: none */
    bool json;
    bool msgpack;       /**< --msgpack: the result as one msgpack value on stdout */
    bool tls;           /**< --tls or a tls:// address */
    const char *tls_ca; /**< --tls-ca FILE: the CA that signed the server's certificate */
    bool tls_insecure;  /**< --tls-insecure: no certificate check (tests, first contact) */
    int timeout_s;
    int watch_s;       /**< --watch: repeat every so many seconds (0: once) */
    bool help;         /**< "help [COMMAND]" or --help */
    const char *topic; /**< help's COMMAND (its words joined), or NULL */
    char topic_buf[80];
    /** The operation to send and its arguments (new reference). NULL with help. */
    char op[80];
    /** import: the file of rows (CSV or JSON lines), each sent as op with args. */
    const char *import_file;
    json_t *args;
} shopctl_opts_t;

/** Parses argv (argv[0] is the program). env_addr and env_token come from the
 *  environment (may be NULL). 0, or SHOPCTL_USAGE with one line in err. On
 *  success the caller releases opts->args (json_decref). */
int shopctl_parse(int argc, char **argv, const char *env_addr, const char *env_token,
                  shopctl_opts_t *opts, char *err, size_t errlen);

/** Adds one "k=v" (a string) or "k:=json" (any JSON value) argument to args.
 *  0, or -1 with one line in err. */
int shopctl_arg(json_t *args, const char *kv, char *err, size_t errlen);

/** The name in names (n of them) nearest to word (edit distance), or NULL when
 *  none is close enough to be a likely typo. */
const char *shopctl_nearest(const char *word, const char *const *names, size_t n);

/** One CSV record (RFC 4180 quoting, one line) into at most max fields, written
 *  NUL-terminated into line itself (unquoted in place). Returns the number of
 *  fields, or -1 for an unterminated quote. */
int shopctl_csv_split(char *line, char **fields, int max);

/** A CSV row as an operation's arguments: header "name" gives a string, "name:="
 *  the cell as JSON (empty cells are left out). NULL with a line in err. */
json_t *shopctl_csv_row(char *const *header, char *const *cells, int n, char *err, size_t errlen);

/** Prints a result for people: a list of objects as an aligned table (with the
 *  other fields of its object below it), an object as "key  value" lines. */
void shopctl_print(FILE *out, const json_t *result);

/** Prints help: the overview (topic NULL) or one command's page. Returns 0, or
 *  -1 when topic names no command. */
int shopctl_help(FILE *out, const char *topic);

/** The commands' names (for suggestions), from the verb table: at most max into
 *  names (static strings); returns how many. */
size_t shopctl_verb_names(const char **names, size_t max);

#endif
