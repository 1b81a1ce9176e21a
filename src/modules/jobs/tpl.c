/*
 * tpl.c: the e-mail templates' language, a small subset of Mustache: {{name}}
 * (escaped for the part: HTML entities, or control bytes made spaces in plain
 * text), {{{name}}} (as is), {{#name}}...{{/name}} (once per element of an
 * array, once with an object or any other true value as the context, never for
 * false, null, "", 0 or []), {{^name}}...{{/name}} (only when the value is one
 * of those), and Mustache's standalone rule: a line holding only a section tag
 * leaves no line in the output. Names are looked up from the innermost context
 * outwards. Templates are the repository's own (templates/email); values come
 * from customers and merchants and are always escaped unless {{{ }}} asks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shopd/jobs.h"

#define TPL_DEPTH 8

typedef struct out_s {
    char *p;
    size_t n, cap;
    bool oom;
} out_t;

static void
put(out_t *o, const char *s, size_t n)
{
    if (o->oom)
        return;
    if (o->n + n + 1 > o->cap) {
        size_t cap = (o->n + n + 1) * 2;
        char *p = realloc(o->p, cap);
        if (p == NULL) {
            o->oom = true;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->n, s, n);
    o->n += n;
    o->p[o->n] = '\0';
}

static void
put_escaped(out_t *o, const char *s, size_t n, bool html)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        const char *e = NULL;
        if (html) {
            e = ch == '&'    ? "&amp;"
                : ch == '<'  ? "&lt;"
                : ch == '>'  ? "&gt;"
                : ch == '"'  ? "&quot;"
                : ch == '\'' ? "&#39;"
                             : NULL;
        }
        if (e)
            put(o, e, strlen(e));
        else if (ch < 0x20 || ch == 0x7f)
            put(o, " ", 1); /* no header, line or markup break from a value */
        else
            put(o, s + i, 1);
    }
}

static const json_t *
lookup(const json_t *const *stack, int depth, const char *name, size_t n)
{
    char key[64];
    if (n == 0 || n >= sizeof(key))
        return NULL;
    memcpy(key, name, n);
    key[n] = '\0';
    if (n == 1 && key[0] == '.')
        return stack[depth - 1];
    for (int i = depth - 1; i >= 0; i--) {
        const json_t *v = json_is_object(stack[i]) ? json_object_get(stack[i], key) : NULL;
        if (v)
            return v;
    }
    return NULL;
}

static bool
truthy(const json_t *v)
{
    if (v == NULL || json_is_null(v) || json_is_false(v))
        return false;
    if (json_is_string(v))
        return json_string_length(v) > 0;
    if (json_is_integer(v))
        return json_integer_value(v) != 0;
    if (json_is_array(v))
        return json_array_size(v) > 0;
    return true;
}

static void
put_value(out_t *o, const json_t *v, bool raw, bool html)
{
    char num[48];
    const char *s = NULL;
    size_t n = 0;
    if (json_is_string(v)) {
        s = json_string_value(v);
        n = json_string_length(v);
    } else if (json_is_integer(v)) {
        n = (size_t)snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
        s = num;
    } else if (json_is_real(v)) {
        n = (size_t)snprintf(num, sizeof(num), "%g", json_real_value(v));
        s = num;
    } else if (json_is_true(v)) {
        s = "true";
        n = 4;
    }
    if (s == NULL)
        return;
    if (raw)
        put(o, s, n);
    else
        put_escaped(o, s, n, html);
}

/* A tag at [open, close) (close after its "}}"): its kind, name and extent. */
typedef struct tag_s {
    char kind; /* 0 variable, '{' raw, '#', '^', '/' */
    const char *name;
    size_t nlen;
    const char *start, *end; /* what the tag removes from the output */
} tag_t;

/* Finds the next tag at or after p; false at the end of the template. A tag
 * that is not closed is an error (*bad). */
static bool
next_tag(const char *p, const char *lim, const char *base, tag_t *t, bool *bad)
{
    const char *o = NULL;
    for (const char *q = p; q + 1 < lim; q++)
        if (q[0] == '{' && q[1] == '{') {
            o = q;
            break;
        }
    if (o == NULL)
        return false;
    const char *s = o + 2;
    t->kind = 0;
    const char *closing = "}}";
    if (s < lim && (*s == '#' || *s == '^' || *s == '/' || *s == '{')) {
        t->kind = *s++;
        if (t->kind == '{')
            closing = "}}}";
    }
    while (s < lim && *s == ' ')
        s++;
    const char *c = NULL;
    size_t cl = strlen(closing);
    for (const char *q = s; q + cl <= lim; q++)
        if (memcmp(q, closing, cl) == 0) {
            c = q;
            break;
        }
    if (c == NULL) {
        *bad = true;
        return false;
    }
    const char *e = c;
    while (e > s && e[-1] == ' ')
        e--;
    t->name = s;
    t->nlen = (size_t)(e - s);
    t->start = o;
    t->end = c + cl;
    /* Standalone: a section tag alone on its line takes the line with it. */
    if (t->kind == '#' || t->kind == '^' || t->kind == '/') {
        const char *ls = o;
        while (ls > base && (ls[-1] == ' ' || ls[-1] == '\t'))
            ls--;
        const char *le = t->end;
        while (le < lim && (*le == ' ' || *le == '\t'))
            le++;
        bool at_start = ls == base || ls[-1] == '\n';
        bool at_end = le == lim || *le == '\n' || (*le == '\r' && le + 1 < lim && le[1] == '\n');
        if (at_start && at_end) {
            t->start = ls;
            t->end = le == lim ? le : le + (*le == '\r' ? 2 : 1);
        }
    }
    return true;
}

/* The tag closing the section opened by `open`, at or after p (same name, with
 * nesting); false when there is none. */
static bool
find_close(const char *p, const char *lim, const char *base, const tag_t *open, tag_t *close)
{
    int level = 0;
    bool bad = false;
    tag_t t;
    while (next_tag(p, lim, base, &t, &bad)) {
        bool same = t.nlen == open->nlen && memcmp(t.name, open->name, t.nlen) == 0;
        if ((t.kind == '#' || t.kind == '^') && same)
            level++;
        else if (t.kind == '/' && same && level-- == 0) {
            *close = t;
            return true;
        }
        p = t.end;
    }
    return false;
}

static bool
render(out_t *o, const char *p, const char *lim, const char *base, const json_t **stack, int depth,
       bool html)
{
    tag_t t;
    bool bad = false;
    while (next_tag(p, lim, base, &t, &bad)) {
        put(o, p, (size_t)(t.start - p));
        const json_t *v = lookup(stack, depth, t.name, t.nlen);
        if (t.kind == 0 || t.kind == '{') {
            put_value(o, v, t.kind == '{', html);
            p = t.end;
            continue;
        }
        if (t.kind == '/')
            return false; /* a close without its open */
        tag_t c;
        if (!find_close(t.end, lim, base, &t, &c))
            return false;
        if (t.kind == '^') {
            if (!truthy(v) && !render(o, t.end, c.start, base, stack, depth, html))
                return false;
        } else if (truthy(v)) {
            if (depth == TPL_DEPTH)
                return false;
            if (json_is_array(v)) {
                size_t i;
                const json_t *e;
                json_array_foreach(v, i, e)
                {
                    stack[depth] = e;
                    if (!render(o, t.end, c.start, base, stack, depth + 1, html))
                        return false;
                }
            } else {
                stack[depth] = v;
                if (!render(o, t.end, c.start, base, stack, depth + 1, html))
                    return false;
            }
        }
        p = c.end;
    }
    if (bad)
        return false;
    put(o, p, (size_t)(lim - p));
    return true;
}

char *
jobs_tpl_render(const char *tpl, const json_t *data, bool html)
{
    const json_t *stack[TPL_DEPTH + 1] = {data};
    out_t o = {0};
    put(&o, "", 0);
    size_t n = strlen(tpl);
    if (!render(&o, tpl, tpl + n, tpl, stack, 1, html) || o.oom) {
        free(o.p);
        return NULL;
    }
    return o.p;
}
