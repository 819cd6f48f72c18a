/* audit.c - the ledger over the store (contract: audit.h). */
#include "audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DB_LOG "audit.log"
#define DB_META "audit.meta"
#define META_HEAD "head"
#define HEAD_LEN (8 + AUDIT_HASH_LEN)

struct audit {
    struct store *s; /* borrowed */
    unsigned log;
    unsigned meta;
};

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xffu);
        v >>= 8;
    }
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

int audit_open(struct audit **out, struct store *s, struct werr *e)
{
    struct audit *a = calloc(1, sizeof *a);
    if (a == NULL) {
        return werr_set(e, WERR_NOMEM, "audit_open");
    }
    a->s = s;
    int rc;
    if ((rc = store_dbi(s, DB_LOG, &a->log, e)) != 0 ||
        (rc = store_dbi(s, DB_META, &a->meta, e)) != 0) {
        free(a);
        return werr_wrap(e, "audit_open");
    }
    *out = a;
    return 0;
}

void audit_close(struct audit *a)
{
    free(a);
}

int audit_head(struct audit *a, struct store_txn *t, uint64_t *seq,
               uint8_t hash[AUDIT_HASH_LEN], struct werr *e)
{
    struct store_val v;
    int rc = store_get(t, a->meta, META_HEAD, strlen(META_HEAD), &v, e);
    if (rc == WERR_NOTFOUND) {
        *seq = 0;
        memset(hash, 0, AUDIT_HASH_LEN);
        return 0;
    }
    if (rc) {
        return werr_wrap(e, "audit head");
    }
    if (v.len != HEAD_LEN) {
        return werr_set(e, WERR_CORRUPT, "audit head record is %zu bytes",
                        v.len);
    }
    *seq = get_be64(v.data);
    memcpy(hash, (const uint8_t *)v.data + 8, AUDIT_HASH_LEN);
    return 0;
}

/* Copy s into dst (cap bytes incl. NUL), cut to cap-1 bytes, with control
 * characters replaced. */
static void clean_copy(char *dst, size_t cap, const char *s)
{
    size_t i = 0;
    for (s = s ? s : ""; s[i] != '\0' && i + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        dst[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    dst[i] = '\0';
}

int audit_append(struct audit *a, struct store_txn *t,
                 const struct dom_ctx *ctx, const struct audit_event *ev,
                 uint64_t *seq_out, struct werr *e)
{
    struct audit_rec r;
    memset(&r, 0, sizeof r);
    int rc = audit_head(a, t, &r.seq, r.prev_hash, e);
    if (rc) {
        return rc;
    }
    r.seq++;
    r.raft_index = ctx->index;
    r.time_ms = ctx->time_ms;
    const struct principal *who = ev->who ? ev->who : ctx->who;
    if (who != NULL) {
        clean_copy(r.principal, sizeof r.principal, who->name);
        r.role = who->role;
    }
    r.action = ev->action;
    r.outcome = ev->outcome;
    r.code = ev->code;
    r.count = ev->count ? ev->count : 1;
    clean_copy(r.target, sizeof r.target, ev->target);
    clean_copy(r.detail, sizeof r.detail, ev->detail);
    if (ev->request_digest != NULL) {
        memcpy(r.request_digest, ev->request_digest, AUDIT_HASH_LEN);
    }
    if ((rc = audit_hash(&r, r.hash, e)) != 0) {
        return rc;
    }

    Warden__V1__AuditEntry m;
    audit_rec_to_proto(&r, &m);
    uint8_t buf[AUDIT_CANON_MAX + 128]; /* protobuf is never longer than
                                           the canonical form plus tags */
    size_t n = warden__v1__audit_entry__get_packed_size(&m);
    if (n > sizeof buf) {
        return werr_set(e, WERR_INTERNAL, "audit entry packs to %zu bytes", n);
    }
    warden__v1__audit_entry__pack(&m, buf);
    uint8_t k[8];
    put_be64(k, r.seq);
    /* NOOVERWRITE: append-only is enforced here too, not only by the API. */
    if ((rc = store_put(t, a->log, k, sizeof k, buf, n, STORE_NOOVERWRITE,
                        e)) != 0) {
        if (rc == WERR_EXISTS) {
            rc = werr_set(e, WERR_CORRUPT,
                          "audit seq %llu exists past the head",
                          (unsigned long long)r.seq);
        }
        return werr_wrap(e, "audit append");
    }
    uint8_t head[HEAD_LEN];
    put_be64(head, r.seq);
    memcpy(head + 8, r.hash, AUDIT_HASH_LEN);
    if ((rc = store_put(t, a->meta, META_HEAD, strlen(META_HEAD), head,
                        sizeof head, 0, e)) != 0) {
        return werr_wrap(e, "audit append: head");
    }
    if (seq_out != NULL) {
        *seq_out = r.seq;
    }
    return 0;
}

void audit_page_free(struct audit_page *p)
{
    for (size_t i = 0; i < p->n; i++) {
        warden__v1__audit_entry__free_unpacked(p->entries[i], NULL);
    }
    free(p->entries);
    memset(p, 0, sizeof *p);
}

static int decode_at(const struct store_val *k, const struct store_val *v,
                     Warden__V1__AuditEntry **out, struct werr *e)
{
    if (k->len != 8) {
        return werr_set(e, WERR_CORRUPT, "audit key of %zu bytes", k->len);
    }
    uint64_t seq = get_be64(k->data);
    Warden__V1__AuditEntry *m =
        warden__v1__audit_entry__unpack(NULL, v->len, v->data);
    if (m == NULL) {
        return werr_set(e, WERR_CORRUPT, "audit entry %llu does not decode",
                        (unsigned long long)seq);
    }
    if (m->seq != seq) {
        warden__v1__audit_entry__free_unpacked(m, NULL);
        return werr_set(e, WERR_CORRUPT, "audit entry under %llu says seq %llu",
                        (unsigned long long)seq, (unsigned long long)m->seq);
    }
    *out = m;
    return 0;
}

int audit_read(struct audit *a, struct store_txn *t, uint64_t from,
               size_t max_entries, size_t max_bytes, struct audit_page *out,
               struct werr *e)
{
    memset(out, 0, sizeof *out);
    if (from == 0) {
        from = 1;
    }
    if (max_entries == 0) {
        max_entries = AUDIT_READ_DEFAULT;
    }
    if (max_entries > AUDIT_READ_MAX_ENTRIES) {
        max_entries = AUDIT_READ_MAX_ENTRIES;
    }
    if (max_bytes == 0 || max_bytes > AUDIT_READ_MAX_BYTES) {
        max_bytes = AUDIT_READ_MAX_BYTES;
    }
    out->next_seq = from;
    out->entries = calloc(max_entries, sizeof *out->entries);
    if (out->entries == NULL) {
        return werr_set(e, WERR_NOMEM, "audit read: %zu entries", max_entries);
    }
    struct store_cursor *c;
    int rc = store_cursor_open(t, a->log, &c, e);
    if (rc) {
        goto err_free;
    }
    uint8_t k0[8];
    put_be64(k0, from);
    struct store_val k, v;
    size_t bytes = 0;
    rc = store_cursor_seek(c, k0, sizeof k0, &k, &v, e);
    while (rc == 0 && out->n < max_entries) {
        if (out->n > 0 && bytes + v.len > max_bytes) {
            break;
        }
        Warden__V1__AuditEntry *m;
        if ((rc = decode_at(&k, &v, &m, e)) != 0) {
            store_cursor_close(c);
            goto err_free;
        }
        if (m->seq != out->next_seq) {
            warden__v1__audit_entry__free_unpacked(m, NULL);
            store_cursor_close(c);
            rc = werr_set(e, WERR_CORRUPT, "audit log has a gap before %llu",
                          (unsigned long long)out->next_seq);
            goto err_free;
        }
        out->entries[out->n++] = m;
        bytes += v.len;
        out->next_seq++;
        rc = store_cursor_next(c, &k, &v, e);
    }
    store_cursor_close(c);
    if (rc != 0 && rc != WERR_NOTFOUND) {
        goto err_free;
    }
    return 0;

err_free:
    audit_page_free(out);
    return werr_wrap(e, "audit read from %llu", (unsigned long long)from);
}

int audit_get(struct audit *a, struct store_txn *t, uint64_t seq,
              struct audit_rec *out, struct werr *e)
{
    uint8_t kb[8];
    put_be64(kb, seq);
    struct store_val k = {kb, sizeof kb}, v;
    int rc = store_get(t, a->log, kb, sizeof kb, &v, e);
    if (rc) {
        return rc;
    }
    Warden__V1__AuditEntry *m;
    if ((rc = decode_at(&k, &v, &m, e)) != 0) {
        return rc;
    }
    struct werr ce = {0};
    rc = audit_rec_from_proto(m, out, &ce);
    warden__v1__audit_entry__free_unpacked(m, NULL);
    if (rc) {
        return werr_set(e, WERR_CORRUPT, "%s", ce.msg);
    }
    return 0;
}
