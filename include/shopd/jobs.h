/*
 * jobs.h: background jobs, e-mail and outgoing webhooks (src/modules/jobs/).
 *
 * The outbox table (written in the transaction of each business change) is
 * turned into jobs rows by one relay per process (the leader of each step holds
 * a PostgreSQL advisory lock), pushed into one Redis Stream per job kind and run
 * by consumer groups on the blocking pool: at least once, deduplicated by the
 * job's row, retried with backoff, then kept as a dead letter for operators.
 * What other modules may call is below; the rest is the module descriptor.
 */
#ifndef SHOPD_JOBS_H
#define SHOPD_JOBS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shopd/api.h"

extern const api_module_t jobs_module;

/** The pause before retry number `attempt` (1 = the first retry) from a
 *  schedule "s,s,..." (seconds), with jitter r in [0, 1) spreading it +-20 %:
 *  milliseconds, or -1 when the schedule has no more retries (a dead letter),
 *  or the schedule is malformed. Pure. */
long long jobs_backoff_ms(const char *schedule, int attempt, double r);

/** True if schedule is a valid retry schedule (1 to 32 integers 1..604800,
 *  comma-separated). Pure. */
bool jobs_schedule_valid(const char *schedule);

/** The Shopd-Signature header value of a webhook body sent at unix time t:
 *  "t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>" into out (at least
 *  JOBS_SIG_MAX bytes). Any thread. */
#define JOBS_SIG_MAX 96
void jobs_sign(const char *secret, long long t, const char *body, size_t len, char *out);

/** A header-safe copy of s into out (CR, LF and other control bytes become
 *  spaces), RFC 2047-encoded (=?UTF-8?B?...?=) when it is not plain ASCII.
 *  For Subject lines. Pure. */
void jobs_mime_header(const char *s, char *out, size_t cap);

/** Renders an e-mail template (templates/email; a subset of Mustache:
 *  {{name}} escaped, {{{name}}} as is, {{#name}}..{{/name}} sections over arrays,
 *  objects and true values, {{^name}}..{{/name}} when false or empty, standalone
 *  section lines removed) with data. html escapes values as HTML, else control
 *  bytes in values become spaces. Returns malloc'd text, or NULL when the template
 *  is malformed (an unclosed tag or section). Pure. */
char *jobs_tpl_render(const char *tpl, const json_t *data, bool html);

/** The text of the embedded template file name (e.g. "order_shipped.html"), or
 *  NULL when there is none. */
const char *jobs_template(const char *name);

#endif
