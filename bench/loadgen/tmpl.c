/* tmpl.c - see tmpl.h. */
#include "tmpl.h"

#include <stdio.h>
#include <string.h>

static const char *const names[] = {
    [LG_TMPL_EMPTY] = "empty",          [LG_TMPL_ETCD_PUT] = "etcd-put",
    [LG_TMPL_ETCD_RANGE] = "etcd-range", [LG_TMPL_WARDEN_ENROLL] = "warden-enroll",
    [LG_TMPL_WARDEN_GET] = "warden-get", [LG_TMPL_RAW] = "raw",
};

int lg_tmpl_parse(const char *name)
{
    if (strcmp(name, "health") == 0) {
        return LG_TMPL_EMPTY;  /* HealthCheckRequest{service=""} is 0 bytes */
    }
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++) {
        if (strcmp(name, names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

const char *lg_tmpl_name(int t)
{
    return (t >= 0 && t < (int)(sizeof names / sizeof names[0])) ? names[t] : "?";
}

int lg_tmpl_is_write(int t)
{
    return t == LG_TMPL_ETCD_PUT || t == LG_TMPL_WARDEN_ENROLL;
}

uint64_t lg_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* splitmix64's finalizer: a bijection, so distinct counters give distinct
 * key material. */
static uint64_t mix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

size_t lg_tmpl_key(const char *prefix, size_t key_size, uint64_t n, char *out,
                   size_t cap)
{
    char digits[24];
    int nd = snprintf(digits, sizeof digits, "%llu", (unsigned long long)n);
    size_t pl = strlen(prefix);
    size_t pad = 0;
    if (key_size > pl + (size_t)nd) {
        pad = key_size - pl - (size_t)nd;
    }
    size_t len = pl + pad + (size_t)nd;
    if (len + 1 > cap) {
        len = cap - 1;  /* cap >= LG_KEY_MAX + 1 and options are bounded */
    }
    size_t o = 0;
    for (size_t i = 0; i < pl && o < len; i++) {
        out[o++] = prefix[i];
    }
    for (size_t i = 0; i < pad && o < len; i++) {
        out[o++] = '0';
    }
    for (int i = 0; i < nd && o < len; i++) {
        out[o++] = digits[i];
    }
    out[o] = '\0';
    return o;
}

/* ---- proto3 wire encoding ------------------------------------------------- */

struct wbuf {
    uint8_t *p;
    size_t n, cap;
};

static void put_varint(struct wbuf *b, uint64_t v)
{
    while (b->n < b->cap) {
        uint8_t byte = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) {
            byte |= 0x80;
        }
        b->p[b->n++] = byte;
        if (!v) {
            return;
        }
    }
}

static void put_bytes(struct wbuf *b, unsigned field, const void *d, size_t len)
{
    put_varint(b, ((uint64_t)field << 3) | 2u);  /* wire type 2: LEN */
    put_varint(b, len);
    if (len > b->cap - b->n) {
        len = b->cap - b->n;
    }
    memcpy(b->p + b->n, d, len);
    b->n += len;
}

static void put_uint(struct wbuf *b, unsigned field, uint64_t v)
{
    put_varint(b, (uint64_t)field << 3);         /* wire type 0: VARINT */
    put_varint(b, v);
}

/* Printable filler derived from the counter, so values differ per call. */
static void fill_value(uint8_t *v, size_t len, uint64_t counter)
{
    static const char alpha[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    uint64_t x = mix64(counter);
    for (size_t i = 0; i < len; i++) {
        if ((i & 7u) == 0) {
            x = mix64(x + i);
        }
        v[i] = (uint8_t)alpha[(x >> ((i & 7u) * 8u)) % 62u];
    }
}

static void fill_bin(uint8_t *v, size_t len, uint64_t a, uint64_t b)
{
    uint64_t x = mix64(a ^ mix64(b));
    for (size_t i = 0; i < len; i += 8) {
        x = mix64(x + i);
        size_t n = len - i < 8 ? len - i : 8;
        memcpy(v + i, &x, n);
    }
}

size_t lg_tmpl_build(int t, const struct lg_tmpl_cfg *cfg, uint64_t counter,
                     uint64_t *rng, uint8_t *out, size_t cap)
{
    struct wbuf b = {.p = out, .n = 0, .cap = cap};
    char key[LG_KEY_MAX + 1];
    uint8_t val[LG_VALUE_MAX];
    size_t kl;
    size_t vs = cfg->value_size < LG_VALUE_MAX ? cfg->value_size : LG_VALUE_MAX;

    switch (t) {
    case LG_TMPL_ETCD_PUT:
        kl = lg_tmpl_key(cfg->write_prefix, cfg->key_size, counter, key, sizeof key);
        fill_value(val, vs, counter ^ cfg->seed);
        put_bytes(&b, 1, key, kl);  /* PutRequest.key */
        put_bytes(&b, 2, val, vs);  /* PutRequest.value */
        break;
    case LG_TMPL_ETCD_RANGE:
        kl = lg_tmpl_key(cfg->read_prefix, cfg->key_size,
                         cfg->keyspace ? lg_rand(rng) % cfg->keyspace : 0, key,
                         sizeof key);
        put_bytes(&b, 1, key, kl);  /* RangeRequest.key; serializable=false */
        break;
    case LG_TMPL_WARDEN_GET:
        kl = lg_tmpl_key(cfg->read_prefix, cfg->key_size,
                         cfg->keyspace ? lg_rand(rng) % cfg->keyspace : 0, key,
                         sizeof key);
        put_bytes(&b, 1, key, kl);  /* GetDeviceRequest.device_id; LINEARIZABLE=0 */
        break;
    case LG_TMPL_WARDEN_ENROLL: {
        /* EnrollDeviceRequest (proto/warden/v1/inventory.proto). The payload
         * is sized like an etcd value of value_size bytes: a unique Ed25519
         * key (32), an attestation digest (32), the gateway id, and one
         * label whose value pads the rest (INV_LABEL_VALUE_MAX is 255). */
        static const char gw[] = "gw-bench";
        uint8_t pk[32], att[32];
        kl = lg_tmpl_key(cfg->write_prefix, cfg->key_size, counter, key, sizeof key);
        fill_bin(pk, sizeof pk, counter, cfg->seed);
        fill_bin(att, sizeof att, counter, cfg->seed ^ 0xA77E57ULL);
        size_t fixed = sizeof pk + sizeof att + sizeof gw - 1;
        size_t pad = vs > fixed ? vs - fixed : 0;
        if (pad > 255) {
            pad = 255;
        }
        put_bytes(&b, 1, key, kl);              /* device_id */
        put_uint(&b, 2, 1);                     /* KEY_ALGORITHM_ED25519 */
        put_bytes(&b, 3, pk, sizeof pk);        /* public_key */
        put_bytes(&b, 4, att, sizeof att);      /* attestation_digest */
        put_bytes(&b, 8, gw, sizeof gw - 1);    /* gateway_id */
        if (pad > 0) {
            uint8_t lab[300];
            struct wbuf lb = {.p = lab, .n = 0, .cap = sizeof lab};
            fill_value(val, pad, counter);
            put_bytes(&lb, 1, "pad", 3);        /* Label.key */
            put_bytes(&lb, 2, val, pad);        /* Label.value */
            put_bytes(&b, 7, lab, lb.n);        /* labels */
        }
        break;
    }
    case LG_TMPL_RAW:
        if (cfg->raw_len <= cap) {
            memcpy(out, cfg->raw, cfg->raw_len);
            b.n = cfg->raw_len;
        }
        break;
    default:
        break;
    }
    return b.n;
}
