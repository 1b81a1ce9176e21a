/*
 * seal.h: secrets sealed at rest. A secret shopd must give back to a third
 * party (a store's Stripe secret key and webhook signing secrets, the secret
 * of an outgoing-webhook endpoint) is kept in PostgreSQL sealed with
 * AES-256-GCM under a key that lives outside the database
 * (SHOPD_SECRETS_KEY), so a dump, a replica or a backup alone reveals none.
 *
 * The sealed form is text, so it fits the columns that held the plain text:
 *
 *     seal1.<kid>.<base64url(nonce 12 bytes || ciphertext || tag 16 bytes)>
 *
 * "seal1" is the scheme's version. kid is 8 hex digits naming the key (the
 * first 4 bytes of SHA-256("shopd-seal-kid" || key)): opening picks the key by
 * its id, never by trial, and a row sealed under the old key is found by a
 * string compare. The nonce is random per seal (96 bits from getrandom). The
 * caller's context string (say "stripe_accounts.secret_key:42") is the GCM
 * additional data: a sealed value copied to another column or another store's
 * row does not open.
 *
 * Rotation: start every process with SHOPD_SECRETS_KEY = the new key and
 * SHOPD_SECRETS_KEY_OLD = the previous one. Values sealed under either open;
 * new seals use the new key only; at start-up each module re-seals its rows
 * that are plain text or under the old key (seal_stale says which). Once that
 * has run, the old key may be dropped.
 *
 * Thread safety: a seal_keys_t is immutable once made; every function below
 * may be called from any thread at once.
 */
#ifndef SHOPD_SEAL_H
#define SHOPD_SEAL_H

#include <stdbool.h>
#include <stddef.h>

#include "shopd/common.h"

/** The longest secret seal_seal takes (bytes): its sealed form is then at most
 *  SEAL_MAX_TEXT characters, which fits the 255-character columns of 0013. */
#define SEAL_MAX_PLAIN 128
/** The longest sealed text: prefix (15) + base64url of 12 + 128 + 16 bytes. */
#define SEAL_MAX_TEXT 223

/** A key ring: the current key (seals and opens) and optionally the previous
 *  one (opens only). */
typedef struct seal_keys_s seal_keys_t;

/** Makes a key ring from base64 text (standard or URL alphabet, padding
 *  optional) of exactly 32 bytes each; old may be NULL or "". NULL with err on a
 *  key that is not 32 bytes of base64, or old equal to cur. Caller owns it
 *  (seal_keys_free). */
seal_keys_t *seal_keys_new(const char *cur_b64, const char *old_b64, char *err, size_t errlen);

/** Frees k (NULL is fine); its key bytes are wiped first. */
void seal_keys_free(seal_keys_t *k);

/** The current key's id (8 hex digits and a NUL). */
const char *seal_keys_kid(const seal_keys_t *k);

/** Seals plain (at most SEAL_MAX_PLAIN bytes, NUL-terminated) under k's current
 *  key with context aad. Returns the sealed text (caller frees with shopd_free),
 *  or NULL if plain is too long or the random source failed. */
char *seal_seal(const seal_keys_t *k, const char *plain, const char *aad);

/** Opens text (NUL-terminated, any bytes) sealed with context aad into out
 *  (outlen bytes, NUL-terminated on success). SHOPD_OK, or SHOPD_INVALID for
 *  anything else (not sealed text, a key this ring does not have, a changed
 *  byte, another context, out too small); out is then "". Never reads past
 *  text's NUL; safe on any input (fuzzed). */
shopd_rc_t seal_open(const seal_keys_t *k, const char *text, const char *aad, char *out,
                     size_t outlen);

/** True if text has the sealed form's prefix (it may still fail to open). */
bool seal_is_sealed(const char *text);

/** True if text should be sealed again under k's current key: plain text from
 *  before sealing, or sealed under another key id. */
bool seal_stale(const seal_keys_t *k, const char *text);

/** True if text is sealed under a key of k (current or old): it opens unless
 *  changed. A sealed value under an unknown key means the process was started
 *  with the wrong key: the start-up step refuses to go on. */
bool seal_known(const seal_keys_t *k, const char *text);

/** Opens text if sealed, else copies it (plain text kept from before sealing,
 *  re-sealed by the start-up step). SHOPD_OK or SHOPD_INVALID as seal_open. */
shopd_rc_t seal_open_or_plain(const seal_keys_t *k, const char *text, const char *aad, char *out,
                              size_t outlen);

/** The key file of the embedded default: reads the base64 key kept in path, or
 *  makes one (32 random bytes, mode 0600) if path does not exist. The base64
 *  text goes into out (at least 45 bytes). 0, or -1 with err. */
int seal_key_file(const char *path, char *out, size_t outlen, char *err, size_t errlen);

/** The process's key ring, set once at start-up (seal_process_set) before any
 *  thread that seals starts; NULL until then. */
const seal_keys_t *seal_process(void);

/** Sets the process's key ring (takes ownership; frees the previous one).
 *  Start-up and shutdown only, single-threaded. */
void seal_process_set(seal_keys_t *k);

#endif
