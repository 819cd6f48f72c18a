/* access.c - the access module's shared pieces: dbs, ids, records, index
 * keys and validators (contract: access.h; layout: access_int.h). */
#include "access_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const db_names[] = {"acc.meta", "acc.req",  "acc.grant",
                                       "acc.idx",  "acc.lock", "acc.rev"};
#define N_DBS (sizeof db_names / sizeof db_names[0])

static unsigned *db_slot(struct access *a, size_t i)
{
    unsigned *slots[N_DBS] = {&a->meta, &a->req,  &a->grant,
                              &a->idx,  &a->lock, &a->rev};
    return slots[i];
}

int acc_dbs_open(struct store *s, struct werr *e)
{
    for (size_t i = 0; i < N_DBS; i++) {
        unsigned dbi;
        int rc = store_dbi(s, db_names[i], &dbi, e);
        if (rc) {
            return werr_wrap(e, "access: open %s", db_names[i]);
        }
    }
    return 0;
}

int acc_bind(struct access *a, struct store *s, struct inv *inv,
             struct werr *e)
{
    memset(a, 0, sizeof *a);
    a->s = s;
    a->inv = inv;
    for (size_t i = 0; i < N_DBS; i++) {
        if (store_dbi_find(s, db_names[i], db_slot(a, i)) != 0) {
            return werr_set(e, WERR_NOTFOUND,
                            "access: db %s is not open (acc_dbs_open)",
                            db_names[i]);
        }
    }
    return 0;
}

void acc_msg_free(void *m)
{
    if (m != NULL) {
        protobuf_c_message_free_unpacked((ProtobufCMessage *)m, NULL);
    }
}

/* ---- ids and records ---------------------------------------------------- */

void acc__be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xffu);
        v >>= 8;
    }
}

uint64_t acc__get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

void acc__id(char *buf, const char *prefix, uint64_t n)
{
    snprintf(buf, ACC_ID_MAX + 1, "%s%llu", prefix, (unsigned long long)n);
}

int acc__id_parse(const char *id, const char *prefix, uint64_t *n,
                  struct werr *e)
{
    size_t pl = strlen(prefix);
    size_t len = id ? strnlen(id, ACC_ID_MAX + 1) : 0;
    if (len <= pl || len > ACC_ID_MAX || memcmp(id, prefix, pl) != 0 ||
        id[pl] == '0' || len - pl > 20) {
        return werr_set(e, WERR_INVALID, "id \"%.*s\" is not %s<number>",
                        (int)(len > ACC_ID_MAX ? ACC_ID_MAX : len),
                        id ? id : "", prefix);
    }
    uint64_t v = 0;
    for (size_t i = pl; i < len; i++) {
        unsigned d = (unsigned)(id[i] - '0');
        if (d > 9 || v > (UINT64_MAX - d) / 10) {
            return werr_set(e, WERR_INVALID, "id \"%s\" is not %s<number>", id,
                            prefix);
        }
        v = v * 10 + d;
    }
    *n = v;
    return 0;
}

int acc__get_msg(struct store_txn *t, unsigned dbi, uint64_t n,
                 const ProtobufCMessageDescriptor *d, ProtobufCMessage **out,
                 struct werr *e)
{
    uint8_t k[8];
    acc__be64(k, n);
    struct store_val v;
    int rc = store_get(t, dbi, k, sizeof k, &v, e);
    if (rc) {
        return rc;
    }
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, v.len, v.data);
    if (m == NULL) {
        return werr_set(e, WERR_CORRUPT, "%s record %llu (%zu bytes) does not decode",
                        d->short_name, (unsigned long long)n, v.len);
    }
    *out = m;
    return 0;
}

int acc__put_msg(struct store_txn *t, unsigned dbi, uint64_t n,
                 const ProtobufCMessage *m, struct werr *e)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) {
        return werr_set(e, WERR_NOMEM, "access: %zu-byte record", len);
    }
    protobuf_c_message_pack(m, buf);
    uint8_t k[8];
    acc__be64(k, n);
    int rc = store_put(t, dbi, k, sizeof k, buf, len, 0, e);
    free(buf);
    return rc;
}

/* ---- index keys ----------------------------------------------------------- */

size_t acc__key_dev(uint8_t *k, const char *device, const char *principal,
                    int with_grant, uint64_t grant)
{
    size_t dl = strnlen(device, INV_DEVICE_ID_MAX);
    size_t n = 0;
    k[n++] = ACC_IDX_DEV;
    memcpy(k + n, device, dl);
    n += dl;
    k[n++] = 0;
    if (principal == NULL) {
        return n;
    }
    size_t pl = strnlen(principal, PRINCIPAL_NAME_MAX);
    memcpy(k + n, principal, pl);
    n += pl;
    k[n++] = 0;
    if (with_grant) {
        acc__be64(k + n, grant);
        n += 8;
    }
    return n;
}

size_t acc__key_str64(uint8_t *k, char kind, const char *s, int with_n,
                      uint64_t v)
{
    size_t sl = strnlen(s, PRINCIPAL_NAME_MAX);
    size_t n = 0;
    k[n++] = (uint8_t)kind;
    memcpy(k + n, s, sl);
    n += sl;
    k[n++] = 0;
    if (with_n) {
        acc__be64(k + n, v);
        n += 8;
    }
    return n;
}

size_t acc__key_64_64(uint8_t *k, char kind, uint64_t x, uint64_t y)
{
    k[0] = (uint8_t)kind;
    acc__be64(k + 1, x);
    acc__be64(k + 9, y);
    return 17;
}

int acc__idx_put(struct access *a, struct store_txn *t, const uint8_t *k,
                 size_t n, struct werr *e)
{
    return store_put(t, a->idx, k, n, "", 0, 0, e);
}

int acc__idx_del(struct access *a, struct store_txn *t, const uint8_t *k,
                 size_t n, struct werr *e)
{
    int rc = store_del(t, a->idx, k, n, e);
    return rc == WERR_NOTFOUND ? 0 : rc;
}

int acc__idx_count(struct access *a, struct store_txn *t, const uint8_t *k,
                   size_t n, uint64_t cap, uint64_t *out, struct werr *e)
{
    struct store_cursor *c;
    *out = 0;
    int rc = store_cursor_open(t, a->idx, &c, e);
    if (rc) {
        return rc;
    }
    struct store_val kk, v;
    rc = store_cursor_seek(c, k, n, &kk, &v, e);
    while (rc == 0 && *out < cap && kk.len >= n && memcmp(kk.data, k, n) == 0) {
        (*out)++;
        rc = store_cursor_next(c, &kk, &v, e);
    }
    store_cursor_close(c);
    return rc == WERR_NOTFOUND ? 0 : rc;
}

/* ---- validation ------------------------------------------------------------- */

static int name_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

int acc__check_principal(const char *field, const char *s, struct werr *e)
{
    size_t n = s ? strnlen(s, PRINCIPAL_NAME_MAX + 1) : 0;
    if (n == 0 || n > PRINCIPAL_NAME_MAX) {
        return werr_set(e, WERR_INVALID, "%s must be 1..%d bytes", field,
                        PRINCIPAL_NAME_MAX);
    }
    for (size_t i = 0; i < n; i++) {
        if (!name_char((unsigned char)s[i])) {
            return werr_set(e, WERR_INVALID,
                            "%s has a byte 0x%02x outside [A-Za-z0-9._-]", field,
                            (unsigned char)s[i]);
        }
    }
    return 0;
}

int acc__check_text(const char *field, const char *s, size_t max,
                    int required, struct werr *e)
{
    int rc = inv__check_text(field, s ? s : "", max, e);
    if (rc == 0 && required && (s == NULL || s[0] == '\0')) {
        return werr_set(e, WERR_INVALID, "%s is required", field);
    }
    return rc;
}

int acc__check_selector(Warden__V1__Label *const *l, size_t n, int required,
                        struct werr *e)
{
    if (n > ACC_SELECTOR_LABELS_MAX) {
        return werr_set(e, WERR_INVALID, "selector has %zu labels, max %d", n,
                        ACC_SELECTOR_LABELS_MAX);
    }
    if (required && n == 0) {
        return werr_set(e, WERR_INVALID, "selector is required");
    }
    for (size_t i = 0; i < n; i++) {
        size_t kl = l[i]->key ? strnlen(l[i]->key, INV_LABEL_KEY_MAX + 1) : 0;
        if (kl == 0 || kl > INV_LABEL_KEY_MAX) {
            return werr_set(e, WERR_INVALID, "selector[%zu].key must be 1..%d bytes",
                            i, INV_LABEL_KEY_MAX);
        }
        for (size_t j = 0; j < kl; j++) {
            unsigned char c = (unsigned char)l[i]->key[j];
            if (!name_char(c) && c != '/') {
                return werr_set(e, WERR_INVALID,
                                "selector[%zu].key has a byte 0x%02x outside "
                                "[A-Za-z0-9._/-]", i, c);
            }
        }
        if (acc__check_text("selector value", l[i]->value, INV_LABEL_VALUE_MAX,
                            0, e) != 0) {
            return werr_wrap(e, "selector[%zu]", i);
        }
    }
    return 0;
}

int acc__selector_match(Warden__V1__Label *const *l, size_t n,
                        const Warden__V1__Device *d)
{
    for (size_t i = 0; i < n; i++) {
        int hit = 0;
        for (size_t j = 0; j < d->n_labels && !hit; j++) {
            const Warden__V1__Label *dl = d->labels[j];
            hit = strcmp(dl->key, l[i]->key) == 0 &&
                  (l[i]->value[0] == '\0' || strcmp(dl->value, l[i]->value) == 0);
        }
        if (!hit) {
            return 0;
        }
    }
    return 1;
}

int acc__may(const struct dom_ctx *ctx, unsigned roles, const char *what,
             struct werr *e)
{
    const struct principal *w = ctx->who;
    if (w == NULL || (w->role & roles) == 0 || (w->role & (w->role - 1)) != 0) {
        return werr_set(e, WERR_PERM, "role %s may not %s",
                        w ? principal_role_name(w->role) : "none", what);
    }
    return 0;
}
