/*
 * The OpenAPI document follows the route table: every route of api_routes has
 * its path (":id" written "{id}") and method in docs/openapi.yaml, with the
 * route's name as operationId, and the document names no path the table lacks.
 * Each operation's `security` line is the one for its route's access level
 * (public routes `security: []`, protected ones exactly the schemes that the
 * access check in src/modules/api.c admits), and protected operations document
 * 401 and 403.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <strings.h>
#include <cmocka.h>

#include "shopd/api.h"

static char *
read_spec(void)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/docs/openapi.yaml", SHOPD_SOURCE_DIR);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* "/api/v1/stores/:id" -> "  /api/v1/stores/{id}:\n" */
static void
spec_path(const char *pattern, char *out, size_t n)
{
    size_t o = 0;
    o += (size_t)snprintf(out, n, "  ");
    for (const char *p = pattern; *p && o + 4 < n;) {
        if (*p == ':') {
            out[o++] = '{';
            p++;
            while (*p && *p != '/' && o + 3 < n)
                out[o++] = *p++;
            out[o++] = '}';
        } else {
            out[o++] = *p++;
        }
    }
    snprintf(out + o, n - o, ":\n");
}

static void
test_routes_documented(void **state)
{
    char *spec = read_spec();
    for (size_t i = 0; i < api_nroutes; i++) {
        const api_route_t *r = &api_routes[i];
        char path[512];
        spec_path(r->pattern, path, sizeof(path));
        char *block = strstr(spec, path);
        if (block == NULL)
            fail_msg("docs/openapi.yaml lacks path %s (route %s)", r->pattern, r->name);
        /* The block of this path ends at the next line starting with two spaces and '/'. */
        char *end = strstr(block + strlen(path), "\n  /");
        size_t blen = end ? (size_t)(end - block) : strlen(block);
        char *b = strndup(block, blen);
        char method[32], opid[160];
        snprintf(method, sizeof(method), "\n    %s:", r->method);
        for (char *c = method; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        if (strstr(b, method) == NULL)
            fail_msg("docs/openapi.yaml: %s lacks %s", r->pattern, r->method);
        snprintf(opid, sizeof(opid), "operationId: %s\n", r->name);
        if (strstr(b, opid) == NULL)
            fail_msg("docs/openapi.yaml: %s %s lacks operationId %s", r->method, r->pattern,
                     r->name);
        free(b);
    }
    free(spec);
}

/* The security requirement each access level is written with (one line, flow style). */
static const char *
security_for(api_access_t access)
{
    switch (access) {
    case API_PUBLIC:
        return "[]";
    case API_PLATFORM:
        return "[{platformToken: []}]";
    case API_CUSTOMER:
        return "[{customerToken: []}, {storeAdminToken: []}, {superAdminToken: []}, "
               "{platformToken: []}]";
    case API_STORE_ADMIN:
        return "[{storeAdminToken: []}, {superAdminToken: []}, {platformToken: []}]";
    case API_SUPER_ADMIN:
        return "[{superAdminToken: []}, {platformToken: []}]";
    }
    return NULL;
}

/* The text of one operation: from "\n    <method>:" to the next operation or path. */
static char *
operation_block(const char *spec, const api_route_t *r)
{
    char path[512], method[32];
    spec_path(r->pattern, path, sizeof(path));
    const char *block = strstr(spec, path);
    if (block == NULL)
        return NULL;
    const char *pend = strstr(block + strlen(path), "\n  /");
    if (pend == NULL)
        pend = block + strlen(block);
    snprintf(method, sizeof(method), "\n    %s:", r->method);
    for (char *c = method; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    const char *op = strstr(block, method);
    if (op == NULL || op > pend)
        return NULL;
    /* The next sibling key at four spaces (another method, or path-level parameters). */
    const char *oend = op + strlen(method);
    for (;;) {
        oend = strstr(oend, "\n    ");
        if (oend == NULL || oend >= pend) {
            oend = pend;
            break;
        }
        if (oend[5] != ' ')
            break;
        oend++;
    }
    return strndup(op, (size_t)(oend - op));
}

static void
test_security_matches_access(void **state)
{
    char *spec = read_spec();
    /* No document-wide default: each operation says who may call it. */
    if (strstr(spec, "\nsecurity:") != NULL)
        fail_msg("docs/openapi.yaml has a top-level security; give it per operation");
    for (size_t i = 0; i < api_nroutes; i++) {
        const api_route_t *r = &api_routes[i];
        char *op = operation_block(spec, r);
        if (op == NULL)
            fail_msg("docs/openapi.yaml: no operation for %s %s", r->method, r->pattern);
        const char *want = security_for(r->access);
        if (want == NULL)
            fail_msg("route %s has an access level this test does not know", r->name);
        char line[256];
        snprintf(line, sizeof(line), "\n      security: %s\n", want);
        const char *at = strstr(op, "\n      security:");
        if (at == NULL)
            fail_msg("%s %s (%s) has no security; want %s", r->method, r->pattern, r->name, want);
        if (strncmp(at, line, strlen(line)) != 0) {
            const char *eol = strchr(at + 1, '\n');
            fail_msg("%s %s (%s): %.*s, but its access level wants security: %s", r->method,
                     r->pattern, r->name, (int)(eol ? eol - at - 1 : 80), at + 1, want);
        }
        if (strstr(at + 1, "\n      security:") != NULL)
            fail_msg("%s %s (%s) has two security keys", r->method, r->pattern, r->name);
        if (r->access != API_PUBLIC) {
            if (strstr(op, "\n        '401':") == NULL)
                fail_msg("%s %s (%s) is protected but documents no 401", r->method, r->pattern,
                         r->name);
            if (strstr(op, "\n        '403':") == NULL)
                fail_msg("%s %s (%s) is protected but documents no 403", r->method, r->pattern,
                         r->name);
        }
        free(op);
    }
    free(spec);
}

/* The query parameters each operation documents are exactly the ones its route
 * declares (api_route_t.query, which the edge enforces with 400 invalid_query),
 * and every operation the edge can refuse a query on documents that 400. */
static void
test_query_matches_route(void **state)
{
    char *spec = read_spec();
    for (size_t i = 0; i < api_nroutes; i++) {
        const api_route_t *r = &api_routes[i];
        char *op = operation_block(spec, r);
        if (op == NULL)
            fail_msg("docs/openapi.yaml: no operation for %s %s", r->method, r->pattern);
        size_t declared = 0;
        for (const char *const *q = r->query; q && *q; q++, declared++) {
            char needle[128];
            snprintf(needle, sizeof(needle), "{name: %s, in: query", *q);
            if (strstr(op, needle) == NULL)
                fail_msg("%s %s (%s) reads query parameter %s but does not document it", r->method,
                         r->pattern, r->name, *q);
        }
        size_t documented = 0;
        for (const char *at = op; (at = strstr(at, ", in: query")) != NULL; at++)
            documented++;
        if (documented != declared)
            fail_msg("%s %s (%s) documents %zu query parameters; the route declares %zu", r->method,
                     r->pattern, r->name, documented, declared);
        if (!(r->flags & API_INLINE) && strstr(op, "\n        '400':") == NULL)
            fail_msg("%s %s (%s) can answer 400 invalid_query but does not document it", r->method,
                     r->pattern, r->name);
        free(op);
    }
    free(spec);
}

static void
test_no_stale_paths(void **state)
{
    char *spec = read_spec();
    char *paths = strstr(spec, "\npaths:\n");
    assert_non_null(paths);
    for (char *line = paths + 8; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, "  /", 3) != 0)
            continue;
        char *eol = strchr(line, '\n');
        size_t n = eol ? (size_t)(eol - line) : strlen(line);
        bool found = false;
        for (size_t i = 0; i < api_nroutes && !found; i++) {
            char want[512];
            spec_path(api_routes[i].pattern, want, sizeof(want));
            found = strlen(want) == n + 1 && strncmp(want, line, n) == 0;
        }
        if (!found)
            fail_msg("docs/openapi.yaml documents %.*s, which no route serves", (int)n, line);
    }
    free(spec);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes_documented),
        cmocka_unit_test(test_query_matches_route),
        cmocka_unit_test(test_no_stale_paths),
        cmocka_unit_test(test_security_matches_access),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
