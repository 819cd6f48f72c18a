/* tmpl.h - request body templates: protobuf bytes built per call, so keys
 * and counters vary from call to call (a server's replay and duplicate
 * checks see honest traffic, and etcd writes are not all to one key).
 *
 * The protobuf is hand-encoded (proto3 wire format: varint tags, length-
 * delimited fields; protobuf.dev/programming-guides/encoding) so the same
 * code drives etcd's messages, which warden has no .proto for. Pure: no
 * clock, no I/O; randomness comes in as a caller-owned xorshift state. */
#ifndef WARDEN_BENCH_TMPL_H
#define WARDEN_BENCH_TMPL_H

#include <stddef.h>
#include <stdint.h>

/* Longest body a template may produce; --value-size is capped so every
 * template fits (warden's own per-field limits are lower still). */
#define LG_BODY_MAX 4096u
#define LG_KEY_MAX 128u
#define LG_VALUE_MAX 2048u
#define LG_PREFIX_MAX 48u

enum lg_tmpl {
    LG_TMPL_EMPTY,         /* zero-length message (e.g. Health/Check "") */
    LG_TMPL_ETCD_PUT,      /* etcdserverpb.PutRequest{key=1, value=2} */
    LG_TMPL_ETCD_RANGE,    /* etcdserverpb.RangeRequest{key=1}: linearizable */
    LG_TMPL_WARDEN_ENROLL, /* warden.v1.EnrollDeviceRequest, unique id+key */
    LG_TMPL_WARDEN_GET,    /* warden.v1.GetDeviceRequest, linearizable */
    LG_TMPL_RAW,           /* fixed bytes from --body-hex */
};

struct lg_tmpl_cfg {
    size_t key_size;                     /* total key / device id length */
    size_t value_size;                   /* etcd value; warden payload */
    char write_prefix[LG_PREFIX_MAX + 1];/* keys written: prefix + counter */
    char read_prefix[LG_PREFIX_MAX + 1]; /* keys read: prefix + [0,keyspace) */
    uint64_t keyspace;                   /* reads pick uniformly below it */
    uint64_t seed;                       /* varies enroll key material */
    const uint8_t *raw;                  /* LG_TMPL_RAW; borrowed */
    size_t raw_len;
};

/* "empty"/"health", "etcd-put", "etcd-range", "warden-enroll",
 * "warden-get", "raw". -1 when unknown. */
int lg_tmpl_parse(const char *name);
const char *lg_tmpl_name(int t);
/* Does the template write (uses write counters)? */
int lg_tmpl_is_write(int t);

/* The key for counter n: prefix then n in decimal, zero-padded so the key
 * is key_size bytes (longer if prefix and digits need more). Returns the
 * length written into out (cap >= LG_KEY_MAX + 1, NUL-terminated). */
size_t lg_tmpl_key(const char *prefix, size_t key_size, uint64_t n, char *out,
                   size_t cap);

/* Build one request body into out (cap >= LG_BODY_MAX). counter is the
 * call's write sequence number; *rng picks read keys. Returns the length,
 * or 0 with nothing written for LG_TMPL_EMPTY. */
size_t lg_tmpl_build(int t, const struct lg_tmpl_cfg *cfg, uint64_t counter,
                     uint64_t *rng, uint8_t *out, size_t cap);

/* xorshift64* (Vigna 2016); state must be non-zero. */
uint64_t lg_rand(uint64_t *s);

#endif
