/*
 * multipart.c: a multipart/form-data parser (RFC 7578 over RFC 2046) that takes
 * its body in pieces of any size and hands each part's bytes to a callback as
 * they come, so it never needs the whole body at once and never copies a
 * part's bytes: a piece points into the buffer that was fed, except for the
 * few bytes of a delimiter that started matching in an earlier piece and then
 * did not match (those come from the delimiter itself, which they equal).
 *
 * The body grammar it keeps to: a preamble (ignored), "--boundary", then per
 * part CRLF, header lines, an empty line, the bytes, "CRLF--boundary"; after
 * the last part "--" and an epilogue (ignored). Transport padding (spaces and
 * tabs) after a delimiter is allowed. A boundary cannot contain CR (RFC 2046
 * bchars), which is what lets a failed delimiter match restart at the byte
 * that broke it.
 *
 * Pure: no allocation, no I/O; fuzz/multipart.c feeds it arbitrary bytes.
 */
#include <ctype.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "shopd/media.h"

enum { ST_PREAMBLE, ST_AFTER, ST_DASH, ST_LF, ST_HEADERS, ST_BODY, ST_EPILOGUE, ST_DEAD };

#define NONE SIZE_MAX

static bool
bchar(int c)
{
    return isalnum(c) || strchr("'()+_,-./:=? ", c) != NULL;
}

/* Copies the value of parameter name (a token or a quoted string) from a
 * header's parameter list s (len bytes) into out; true if present. */
static bool
param(const char *s, size_t len, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name), i = 0;
    while (i < len) {
        while (i < len && s[i] != ';')
            i++;
        if (i >= len)
            break;
        i++;
        while (i < len && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (len - i > nl && strncasecmp(s + i, name, nl) == 0 && s[i + nl] == '=') {
            i += nl + 1;
            size_t o = 0;
            if (i < len && s[i] == '"') {
                i++;
                while (i < len && s[i] != '"') {
                    if (s[i] == '\\' && i + 1 < len)
                        i++;
                    if (o + 1 < cap)
                        out[o++] = s[i];
                    i++;
                }
            } else {
                while (i < len && s[i] != ';' && s[i] != ' ' && s[i] != '\t') {
                    if (o + 1 < cap)
                        out[o++] = s[i];
                    i++;
                }
            }
            out[o] = '\0';
            return true;
        }
    }
    return false;
}

bool
media_mp_boundary(const char *ct, size_t ctlen, char *out)
{
    static const char type[] = "multipart/form-data";
    size_t tl = sizeof(type) - 1;
    if (ct == NULL || ctlen < tl || strncasecmp(ct, type, tl) != 0)
        return false;
    if (ctlen > tl && ct[tl] != ';' && ct[tl] != ' ' && ct[tl] != '\t')
        return false;
    char b[MEDIA_MP_MAX_BOUNDARY + 2];
    if (!param(ct + tl, ctlen - tl, "boundary", b, sizeof(b)))
        return false;
    size_t n = strlen(b);
    if (n == 0 || n > MEDIA_MP_MAX_BOUNDARY || b[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!bchar((unsigned char)b[i]))
            return false;
    memcpy(out, b, n + 1);
    return true;
}

void
media_mp_init(media_mp_t *p, const char *boundary, const media_mp_cb_t *cb)
{
    memset(p, 0, sizeof(*p));
    size_t bl = strlen(boundary);
    if (bl > MEDIA_MP_MAX_BOUNDARY)
        bl = MEDIA_MP_MAX_BOUNDARY;
    memcpy(p->delim, "\r\n--", 4);
    memcpy(p->delim + 4, boundary, bl);
    p->dlen = 4 + bl;
    p->state = ST_PREAMBLE;
    /* The first delimiter may open the body: read it as if a CRLF came before. */
    p->match = 2;
    p->cb = *cb;
}

static media_mp_rc_t
fail(media_mp_t *p, const char *why)
{
    p->state = ST_DEAD;
    p->err = why;
    return MEDIA_MP_ERROR;
}

/* Reads the header block (hbuf, CRLF-separated lines) into part. */
static bool
read_headers(media_mp_t *p, media_mp_part_t *part)
{
    memset(part, 0, sizeof(*part));
    const char *s = p->hbuf, *end = p->hbuf + p->hlen;
    bool disposition = false;
    while (s < end) {
        const char *eol = memmem(s, (size_t)(end - s), "\r\n", 2);
        if (eol == NULL)
            eol = end;
        const char *colon = memchr(s, ':', (size_t)(eol - s));
        if (eol > s && colon == NULL)
            return false; /* not a header line */
        if (colon) {
            size_t nl = (size_t)(colon - s);
            const char *v = colon + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            size_t vl = (size_t)(eol - v);
            while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                vl--;
            if (nl == 19 && strncasecmp(s, "Content-Disposition", nl) == 0) {
                if (vl < 9 || strncasecmp(v, "form-data", 9) != 0)
                    return false;
                disposition = true;
                param(v + 9, vl - 9, "name", part->name, sizeof(part->name));
                part->has_filename =
                    param(v + 9, vl - 9, "filename", part->filename, sizeof(part->filename));
            } else if (nl == 12 && strncasecmp(s, "Content-Type", nl) == 0) {
                size_t c =
                    vl < sizeof(part->content_type) - 1 ? vl : sizeof(part->content_type) - 1;
                memcpy(part->content_type, v, c);
                part->content_type[c] = '\0';
            }
        }
        s = eol + 2;
    }
    return disposition; /* RFC 7578 section 4.2: every part has one */
}

static int
emit(media_mp_t *p, const char *at, size_t n)
{
    return n == 0 || p->cb.data == NULL ? 0 : p->cb.data(p->cb.ud, at, n);
}

media_mp_rc_t
media_mp_feed(media_mp_t *p, const char *at, size_t n)
{
    if (p->state == ST_DEAD)
        return MEDIA_MP_ERROR;
    size_t rs = NONE; /* start of the run of part bytes in at */
    size_t ms = NONE; /* where the delimiter match started in at (NONE: before at) */
    for (size_t i = 0; i < n; i++) {
        char c = at[i];
        switch (p->state) {
        case ST_PREAMBLE:
            if (c == p->delim[p->match]) {
                if (++p->match == p->dlen) {
                    p->match = 0;
                    p->state = ST_AFTER;
                }
            } else {
                p->match = c == p->delim[0] ? 1 : 0;
            }
            break;
        case ST_AFTER: /* after a delimiter: padding, then CRLF or "--" */
            if (c == '-')
                p->state = ST_DASH;
            else if (c == '\r')
                p->state = ST_LF;
            else if (c != ' ' && c != '\t')
                return fail(p, "bad delimiter line");
            break;
        case ST_DASH:
            if (c != '-')
                return fail(p, "bad closing delimiter");
            p->state = ST_EPILOGUE;
            break;
        case ST_LF:
            if (c != '\n')
                return fail(p, "bad delimiter line");
            if (++p->parts > MEDIA_MP_MAX_PARTS)
                return fail(p, "too many parts");
            p->hlen = 0;
            p->state = ST_HEADERS;
            break;
        case ST_HEADERS:
            if (p->hlen >= MEDIA_MP_MAX_HEADERS)
                return fail(p, "part headers too long");
            p->hbuf[p->hlen++] = c;
            if ((p->hlen == 2 && memcmp(p->hbuf, "\r\n", 2) == 0) ||
                (p->hlen >= 4 && memcmp(p->hbuf + p->hlen - 4, "\r\n\r\n", 4) == 0)) {
                p->hlen -= 2; /* the empty line */
                p->hbuf[p->hlen] = '\0';
                media_mp_part_t part;
                if (!read_headers(p, &part))
                    return fail(p, "bad part headers");
                if (p->cb.begin && p->cb.begin(p->cb.ud, &part) != 0)
                    return fail(p, "stopped");
                p->match = 0;
                rs = NONE;
                p->state = ST_BODY;
            }
            break;
        case ST_BODY:
            if (c == p->delim[p->match]) {
                if (p->match == 0) {
                    if (rs != NONE && emit(p, at + rs, i - rs) != 0)
                        return fail(p, "stopped");
                    rs = NONE;
                    ms = i;
                }
                if (++p->match == p->dlen) {
                    p->match = 0;
                    ms = NONE;
                    if (p->cb.end && p->cb.end(p->cb.ud) != 0)
                        return fail(p, "stopped");
                    p->state = ST_AFTER;
                }
                break;
            }
            if (p->match > 0) {
                /* Not a delimiter after all: the held bytes are part bytes. */
                size_t held = p->match;
                p->match = 0;
                if (ms != NONE) {
                    rs = ms; /* they are in at, just before c */
                } else {
                    if (emit(p, p->delim, held) != 0)
                        return fail(p, "stopped");
                    rs = i;
                }
                ms = NONE;
                if (c == p->delim[0]) {
                    if (emit(p, at + rs, i - rs) != 0)
                        return fail(p, "stopped");
                    rs = NONE;
                    p->match = 1;
                    ms = i;
                    break;
                }
            }
            if (rs == NONE)
                rs = i;
            break;
        case ST_EPILOGUE:
            i = n; /* ignored */
            break;
        default:
            return fail(p, "dead");
        }
    }
    if (p->state == ST_BODY && rs != NONE && emit(p, at + rs, n - rs) != 0)
        return fail(p, "stopped");
    return MEDIA_MP_OK;
}

media_mp_rc_t
media_mp_finish(media_mp_t *p)
{
    if (p->state == ST_EPILOGUE)
        return MEDIA_MP_OK;
    if (p->state != ST_DEAD)
        return fail(p, "truncated body (no closing delimiter)");
    return MEDIA_MP_ERROR;
}
