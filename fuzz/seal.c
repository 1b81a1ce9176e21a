/*
 * libFuzzer driver: seal_open (src/core/seal.c) on any text, as a row changed
 * in the database would give it. Input: the sealed text; the key ring is fixed
 * (current + old key), so inputs that carry either key id reach GCM. Whatever
 * the input, seal_open answers OK or INVALID, NUL-terminates its output, and
 * reads nothing past the input's end.
 */
#include <stdlib.h>
#include <string.h>

#include "shopd/seal.h"

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static seal_keys_t *k;
    if (k == NULL) {
        char err[256];
        k = seal_keys_new("q1Jx0S3E2g6zvC9m1Xn4a0p8Vb7uYt5rWc2dEf6gHi8=",
                          "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGw=", err, sizeof(err));
        if (k == NULL)
            abort();
    }
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    char out[SEAL_MAX_PLAIN + 1];
    shopd_rc_t rc = seal_open(k, s, "fuzz", out, sizeof(out));
    if ((rc != SHOPD_OK && rc != SHOPD_INVALID) || strnlen(out, sizeof(out)) == sizeof(out) ||
        (rc != SHOPD_OK && out[0] != '\0'))
        abort();
    (void)seal_stale(k, s);
    (void)seal_known(k, s);
    rc = seal_open_or_plain(k, s, "fuzz", out, sizeof(out));
    if (rc != SHOPD_OK && rc != SHOPD_INVALID)
        abort();
    free(s);
    return 0;
}
