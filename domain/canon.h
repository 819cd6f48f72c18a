/* canon.h - the canonical byte encodings that warden signs and hashes:
 * fixed-width big-endian integers and u32-length-prefixed byte strings,
 * written in a fixed field order (docs/audit.md, docs/freshness.md).
 * Protobuf bytes are never signed or hashed: protobuf has no canonical
 * encoding, so two correct encoders may disagree.
 *
 * Writer: appends into a caller buffer; overflow is sticky (later writes do
 * nothing) and the caller checks it once at the end. Reader: a
 * bounds-checked cursor {ptr, remaining}; short input sets `bad`, the way
 * dqlite's serialize.h treats short input as a parse error.
 *
 * Header-only and pure: linkable from domain/, cli/ and tests alike. */
#ifndef WARDEN_DOMAIN_CANON_H
#define WARDEN_DOMAIN_CANON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct canon_w {
    uint8_t *p;  /* borrowed; cap bytes */
    size_t cap;
    size_t len;
    int overflow;
};

static inline void canon_w_init(struct canon_w *w, uint8_t *buf, size_t cap)
{
    w->p = buf;
    w->cap = cap;
    w->len = 0;
    w->overflow = 0;
}

static inline void canon_raw(struct canon_w *w, const void *d, size_t n)
{
    if (w->overflow || n > w->cap - w->len) {
        w->overflow = 1;
        return;
    }
    if (n > 0) {
        memcpy(w->p + w->len, d, n);
    }
    w->len += n;
}

static inline void canon_u32(struct canon_w *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
                    (uint8_t)v};
    canon_raw(w, b, sizeof b);
}

static inline void canon_u64(struct canon_w *w, uint64_t v)
{
    uint8_t b[8];
    for (int i = 7; i >= 0; i--) {
        b[i] = (uint8_t)(v & 0xffu);
        v >>= 8;
    }
    canon_raw(w, b, sizeof b);
}

/* u32 BE length, then the bytes. */
static inline void canon_bytes(struct canon_w *w, const void *d, size_t n)
{
    if (n > UINT32_MAX) {
        w->overflow = 1;
        return;
    }
    canon_u32(w, (uint32_t)n);
    canon_raw(w, d, n);
}

static inline void canon_str(struct canon_w *w, const char *s)
{
    s = s ? s : "";
    canon_bytes(w, s, strlen(s));
}

struct canon_r {
    const uint8_t *p; /* borrowed */
    size_t left;
    int bad;
};

static inline void canon_r_init(struct canon_r *r, const void *buf, size_t n)
{
    r->p = buf;
    r->left = n;
    r->bad = 0;
}

static inline const uint8_t *canon_take(struct canon_r *r, size_t n)
{
    if (r->bad || n > r->left) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *at = r->p;
    r->p += n;
    r->left -= n;
    return at;
}

static inline uint32_t canon_get_u32(struct canon_r *r)
{
    const uint8_t *b = canon_take(r, 4);
    if (b == NULL) {
        return 0;
    }
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) |
           ((uint32_t)b[2] << 8) | (uint32_t)b[3];
}

static inline uint64_t canon_get_u64(struct canon_r *r)
{
    const uint8_t *b = canon_take(r, 8);
    uint64_t v = 0;
    if (b == NULL) {
        return 0;
    }
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | b[i];
    }
    return v;
}

/* A length-prefixed string of at most max bytes; *n its length. */
static inline const uint8_t *canon_get_bytes(struct canon_r *r, size_t max,
                                             size_t *n)
{
    uint32_t len = canon_get_u32(r);
    *n = 0;
    if (r->bad || len > max) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *d = canon_take(r, len);
    if (d != NULL) {
        *n = len;
    }
    return d;
}

#endif
