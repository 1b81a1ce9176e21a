/*
 * libFuzzer driver: the msgpack envelope decoder. Any bytes must decode or be
 * refused without a crash, a leak or an out-of-bounds read; what decodes must
 * survive a re-encode and decode unchanged.
 */
#include <stdlib.h>
#include <string.h>

#include "shopd/msg.h"

static void
same(msg_str_t a, msg_str_t b)
{
    if (a.n != b.n || (a.n && memcmp(a.p, b.p, a.n) != 0))
        abort();
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    msg_env_t env, again;
    if (msg_decode((const char *)data, size, &env) != SHOPD_OK)
        return 0;
    size_t len;
    char *buf = msg_encode(&env, &len);
    if (msg_decode(buf, len, &again) != SHOPD_OK)
        abort();
    same(env.type, again.type);
    same(env.request_id, again.request_id);
    same(env.query, again.query);
    same(env.body, again.body);
    if (env.store_id != again.store_id || env.nparams != again.nparams)
        abort();
    if (env.caller.user_id != again.caller.user_id || env.caller.role != again.caller.role)
        abort();
    for (size_t i = 0; i < env.nparams; i++) {
        same(env.param_names[i], again.param_names[i]);
        same(env.param_values[i], again.param_values[i]);
    }
    free(buf);
    return 0;
}
