/*
 * xfer.h: libcurl handles kept per thread and per use (Stripe, SMTP), so each
 * blocking thread reuses its connections (keep-alive to Stripe, one SMTP
 * session for many messages) instead of a TCP and TLS handshake per call.
 */
#ifndef SHOPD_XFER_H
#define SHOPD_XFER_H

#include <curl/curl.h>

/** What a handle is for: each use has its own handle (and connection cache). */
typedef enum xfer_use_e { XFER_STRIPE = 0, XFER_SMTP = 1, XFER_USES = 2 } xfer_use_t;

/** The calling thread's handle for use, reset to libcurl's defaults (its live
 *  connections kept), or NULL when libcurl cannot make one. Owned by the thread:
 *  never cleaned up by the caller; cleaned up when the thread ends (the blocking
 *  pool joins its threads at stop, so LeakSanitizer sees nothing left). */
CURL *xfer_handle(xfer_use_t use);

#endif
