/*
 * msg.c: encoding and decoding of the request envelope (see msg.h) with
 * msgpack-c. Decoding is zero-copy for strings: msgpack-c's unpacker points
 * str/bin objects into the input buffer, so only the map structure lives in the
 * temporary zone, which is released before returning.
 */
#include "shopd/msg.h"

#include <msgpack.h>
#include <string.h>

static void
pack_str(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void
pack_key(msgpack_packer *pk, const char *k)
{
    pack_str(pk, k, strlen(k));
}

char *
msg_encode(const msg_env_t *env, size_t *len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);

    msgpack_pack_map(&pk, 6 + (env->kind != MSG_KIND_REQUEST) + (env->body.n > 0) +
                              (env->ip.n > 0) + (env->tenant.n > 0) + (env->inm.n > 0) +
                              (env->cart.n > 0) + (env->idem.n > 0) + (env->sig.n > 0) +
                              (env->ct.n > 0) + (env->ae.n > 0));
    if (env->kind != MSG_KIND_REQUEST) {
        pack_key(&pk, "k");
        msgpack_pack_uint32(&pk, (uint32_t)env->kind);
    }
    pack_key(&pk, "t");
    pack_str(&pk, env->type.p, env->type.n);
    pack_key(&pk, "rid");
    pack_str(&pk, env->request_id.p, env->request_id.n);
    pack_key(&pk, "sid");
    msgpack_pack_uint64(&pk, env->store_id);
    pack_key(&pk, "caller");
    msgpack_pack_map(&pk, 4);
    pack_key(&pk, "uid");
    msgpack_pack_uint64(&pk, env->caller.user_id);
    pack_key(&pk, "sid");
    msgpack_pack_uint64(&pk, env->caller.store_id);
    pack_key(&pk, "role");
    msgpack_pack_int(&pk, env->caller.role);
    pack_key(&pk, "ver");
    msgpack_pack_uint32(&pk, env->caller.ver);
    pack_key(&pk, "params");
    msgpack_pack_map(&pk, env->nparams);
    for (size_t i = 0; i < env->nparams; i++) {
        pack_str(&pk, env->param_names[i].p, env->param_names[i].n);
        pack_str(&pk, env->param_values[i].p, env->param_values[i].n);
    }
    pack_key(&pk, "query");
    pack_str(&pk, env->query.p, env->query.n);
    if (env->ip.n > 0) {
        pack_key(&pk, "ip");
        pack_str(&pk, env->ip.p, env->ip.n);
    }
    if (env->tenant.n > 0) {
        pack_key(&pk, "tk");
        pack_str(&pk, env->tenant.p, env->tenant.n);
    }
    if (env->inm.n > 0) {
        pack_key(&pk, "inm");
        pack_str(&pk, env->inm.p, env->inm.n);
    }
    if (env->cart.n > 0) {
        pack_key(&pk, "cart");
        pack_str(&pk, env->cart.p, env->cart.n);
    }
    if (env->idem.n > 0) {
        pack_key(&pk, "idem");
        pack_str(&pk, env->idem.p, env->idem.n);
    }
    if (env->sig.n > 0) {
        pack_key(&pk, "sig");
        pack_str(&pk, env->sig.p, env->sig.n);
    }
    if (env->ct.n > 0) {
        pack_key(&pk, "ct");
        pack_str(&pk, env->ct.p, env->ct.n);
    }
    if (env->ae.n > 0) {
        pack_key(&pk, "ae");
        pack_str(&pk, env->ae.p, env->ae.n);
    }
    if (env->body.n > 0) {
        pack_key(&pk, "body");
        msgpack_pack_bin(&pk, env->body.n);
        msgpack_pack_bin_body(&pk, env->body.p, env->body.n);
    }
    /* Hand the sbuffer's memory to the caller; it came from malloc. */
    char *out = shopd_malloc(sb.size);
    memcpy(out, sb.data, sb.size);
    *len = sb.size;
    msgpack_sbuffer_destroy(&sb);
    return out;
}

static bool
key_is(const msgpack_object *k, const char *name)
{
    size_t n = strlen(name);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, name, n) == 0;
}

static bool
get_str(const msgpack_object *o, msg_str_t *out)
{
    if (o->type == MSGPACK_OBJECT_STR) {
        out->p = o->via.str.ptr;
        out->n = o->via.str.size;
        return true;
    }
    if (o->type == MSGPACK_OBJECT_BIN) {
        out->p = o->via.bin.ptr;
        out->n = o->via.bin.size;
        return true;
    }
    return false;
}

static bool
get_u64(const msgpack_object *o, uint64_t *out)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    *out = o->via.u64;
    return true;
}

static bool
decode_caller(const msgpack_object *o, msg_caller_t *c)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return false;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        if (key_is(&kv->key, "uid")) {
            if (!get_u64(&kv->val, &c->user_id))
                return false;
        } else if (key_is(&kv->key, "sid")) {
            if (!get_u64(&kv->val, &c->store_id))
                return false;
        } else if (key_is(&kv->key, "ver")) {
            uint64_t v;
            if (!get_u64(&kv->val, &v) || v > UINT32_MAX)
                return false;
            c->ver = (uint32_t)v;
        } else if (key_is(&kv->key, "role")) {
            if (kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER && kv->val.via.u64 <= 16)
                c->role = (int)kv->val.via.u64;
            else
                return false;
        }
    }
    return true;
}

/* msgpack-c sizes a map or array from its header before reading the elements,
 * so a 5-byte header claiming 2^32 entries costs gigabytes. Walk the encoding
 * once first and refuse any container that claims more elements than there
 * are bytes left (each element takes at least one). Linear, no recursion. */
static bool
sizes_plausible(const unsigned char *p, size_t len)
{
    size_t pos = 0;
    uint64_t pending = 1;
    while (pending > 0) {
        if (pos >= len)
            return false;
        unsigned char b = p[pos++];
        uint64_t skip = 0, items = 0;
        size_t left = len - pos;
#define NEED(n)                                                                                    \
    do {                                                                                           \
        if (left < (n))                                                                            \
            return false;                                                                          \
    } while (0)
#define BE(n)                                                                                      \
    (n == 1   ? (uint64_t)p[pos]                                                                   \
     : n == 2 ? ((uint64_t)p[pos] << 8 | p[pos + 1])                                               \
              : ((uint64_t)p[pos] << 24 | (uint64_t)p[pos + 1] << 16 | (uint64_t)p[pos + 2] << 8 | \
                 p[pos + 3]))
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
            skip = 0;
        } else if (b >= 0x80 && b <= 0x8f) {
            items = 2u * (b & 0x0f);
        } else if (b >= 0x90 && b <= 0x9f) {
            items = b & 0x0f;
        } else if (b >= 0xa0 && b <= 0xbf) {
            skip = b & 0x1f;
        } else {
            switch (b) {
            case 0xc4:
            case 0xd9:
                NEED(1);
                skip = 1 + BE(1);
                break;
            case 0xc5:
            case 0xda:
                NEED(2);
                skip = 2 + BE(2);
                break;
            case 0xc6:
            case 0xdb:
                NEED(4);
                skip = 4 + BE(4);
                break;
            case 0xc7:
                NEED(1);
                skip = 2 + BE(1);
                break;
            case 0xc8:
                NEED(2);
                skip = 3 + BE(2);
                break;
            case 0xc9:
                NEED(4);
                skip = 5 + BE(4);
                break;
            case 0xca:
                skip = 4;
                break;
            case 0xcb:
                skip = 8;
                break;
            case 0xcc:
            case 0xd0:
                skip = 1;
                break;
            case 0xcd:
            case 0xd1:
                skip = 2;
                break;
            case 0xce:
            case 0xd2:
                skip = 4;
                break;
            case 0xcf:
            case 0xd3:
                skip = 8;
                break;
            case 0xd4:
                skip = 2;
                break;
            case 0xd5:
                skip = 3;
                break;
            case 0xd6:
                skip = 5;
                break;
            case 0xd7:
                skip = 9;
                break;
            case 0xd8:
                skip = 17;
                break;
            case 0xdc:
                NEED(2);
                items = BE(2);
                skip = 2;
                break;
            case 0xdd:
                NEED(4);
                items = BE(4);
                skip = 4;
                break;
            case 0xde:
                NEED(2);
                items = 2 * BE(2);
                skip = 2;
                break;
            case 0xdf:
                NEED(4);
                items = 2 * BE(4);
                skip = 4;
                break;
            default:
                return false; /* 0xc1: never used */
            }
        }
#undef NEED
#undef BE
        if (skip > left)
            return false;
        pos += (size_t)skip;
        pending = pending - 1 + items;
        if (pending > len - pos)
            return false;
    }
    return true;
}

shopd_rc_t
msg_decode(const char *buf, size_t len, msg_env_t *env)
{
    msgpack_unpacked up;
    size_t off = 0;
    shopd_rc_t rc = SHOPD_INVALID;
    bool have_type = false;

    memset(env, 0, sizeof(*env));
    msgpack_unpacked_init(&up);
    if (!sizes_plausible((const unsigned char *)buf, len))
        goto out;
    if (msgpack_unpack_next(&up, buf, len, &off) != MSGPACK_UNPACK_SUCCESS)
        goto out;
    if (off != len)
        goto out;
    const msgpack_object *root = &up.data;
    if (root->type != MSGPACK_OBJECT_MAP)
        goto out;
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        const msgpack_object_kv *kv = &root->via.map.ptr[i];
        if (key_is(&kv->key, "t")) {
            if (!get_str(&kv->val, &env->type))
                goto out;
            have_type = true;
        } else if (key_is(&kv->key, "rid")) {
            if (!get_str(&kv->val, &env->request_id))
                goto out;
        } else if (key_is(&kv->key, "sid")) {
            if (!get_u64(&kv->val, &env->store_id))
                goto out;
        } else if (key_is(&kv->key, "caller")) {
            if (!decode_caller(&kv->val, &env->caller))
                goto out;
        } else if (key_is(&kv->key, "params")) {
            const msgpack_object *m = &kv->val;
            if (m->type != MSGPACK_OBJECT_MAP || m->via.map.size > MSG_MAX_PARAMS)
                goto out;
            for (uint32_t j = 0; j < m->via.map.size; j++) {
                if (!get_str(&m->via.map.ptr[j].key, &env->param_names[j]) ||
                    !get_str(&m->via.map.ptr[j].val, &env->param_values[j]))
                    goto out;
            }
            env->nparams = m->via.map.size;
        } else if (key_is(&kv->key, "query")) {
            if (!get_str(&kv->val, &env->query))
                goto out;
        } else if (key_is(&kv->key, "body")) {
            if (!get_str(&kv->val, &env->body))
                goto out;
        } else if (key_is(&kv->key, "k")) {
            uint64_t k;
            if (!get_u64(&kv->val, &k) || k > MSG_KIND_CONTROL)
                goto out;
            env->kind = (int)k;
        } else if (key_is(&kv->key, "tk")) {
            if (!get_str(&kv->val, &env->tenant))
                goto out;
        } else if (key_is(&kv->key, "inm")) {
            if (!get_str(&kv->val, &env->inm))
                goto out;
        } else if (key_is(&kv->key, "cart")) {
            if (!get_str(&kv->val, &env->cart))
                goto out;
        } else if (key_is(&kv->key, "idem")) {
            if (!get_str(&kv->val, &env->idem))
                goto out;
        } else if (key_is(&kv->key, "sig")) {
            if (!get_str(&kv->val, &env->sig))
                goto out;
        } else if (key_is(&kv->key, "ct")) {
            if (!get_str(&kv->val, &env->ct))
                goto out;
        } else if (key_is(&kv->key, "ae")) {
            if (!get_str(&kv->val, &env->ae))
                goto out;
        } else if (key_is(&kv->key, "ip")) {
            /* Tolerant: a malformed address only loses the per-address limit. */
            if (!get_str(&kv->val, &env->ip))
                env->ip = msg_str(NULL);
        }
    }
    rc = have_type ? SHOPD_OK : SHOPD_INVALID;
out:
    /* Strings point into buf, not into the zone, so the zone can go now. */
    msgpack_unpacked_destroy(&up);
    return rc;
}

const char *
msg_param(const msg_env_t *env, const char *name, size_t *n)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < env->nparams; i++) {
        if (env->param_names[i].n == nl && memcmp(env->param_names[i].p, name, nl) == 0) {
            if (n)
                *n = env->param_values[i].n;
            return env->param_values[i].p;
        }
    }
    if (n)
        *n = 0;
    return NULL;
}

msg_str_t
msg_str(const char *s)
{
    msg_str_t r = {s ? s : "", s ? strlen(s) : 0};
    return r;
}
