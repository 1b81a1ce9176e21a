/*
 * libFuzzer driver: the admin protocol's frame decoder (src/net/admin_codec.c).
 * The input is a byte stream as a connection would deliver it: frames are cut
 * with admin_frame_check (at most 4 KiB each), each decoded and read as a
 * request. Whatever decodes must re-encode to a frame that decodes to an equal
 * value; nothing may crash, leak or read out of bounds.
 */
#include <stdlib.h>
#include <string.h>

#include "shopd/admin.h"
#include "shopd/common.h"

static void
one_frame(const unsigned char *p, size_t n)
{
    char err[160];
    json_t *v = admin_decode(p, n, err, sizeof(err));
    if (v == NULL) {
        if (err[0] == '\0')
            abort(); /* a refusal always says why */
        return;
    }
    if (!json_is_object(v))
        abort();
    size_t len, body = 0;
    unsigned char *f = admin_encode_frame(v, &len);
    if (admin_frame_check(f, len, len, &body) != ADMIN_FRAME_OK || body + ADMIN_HEADER != len)
        abort();
    json_t *again = admin_decode(f + ADMIN_HEADER, body, err, sizeof(err));
    if (again == NULL || !json_equal(v, again))
        abort();
    admin_req_t rq;
    if (admin_req_read(v, &rq, err, sizeof(err)) == 0) {
        if (rq.op == NULL || !json_is_object(rq.args) || rq.id == NULL)
            abort();
        json_t *ans = admin_err(rq.id, "x", "y", NULL);
        json_decref(ans);
    }
    admin_req_clear(&rq);
    json_decref(again);
    shopd_free(f);
    json_decref(v);
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        size_t n = 0;
        admin_frame_rc_t rc = admin_frame_check(data + off, size - off, 4096, &n);
        if (rc != ADMIN_FRAME_OK)
            break; /* MORE: the stream ends mid-frame; TOO_BIG: the server closes */
        one_frame(data + off + ADMIN_HEADER, n);
        off += ADMIN_HEADER + n;
    }
    /* The whole input as one frame body too, so the decoder sees every byte. */
    one_frame(data, size);
    return 0;
}
