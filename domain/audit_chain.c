/* audit_chain.c - canonical encoding, hash and chain verification of audit
 * entries (contract: audit_chain.h; format: docs/audit.md). No store
 * calls: cli/ links this file. */
#include "audit_chain.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "canon.h"

static const uint8_t zeros[AUDIT_HASH_LEN];

size_t audit_canon_encode(const struct audit_rec *r, uint8_t *buf, size_t cap)
{
    if (strnlen(r->principal, sizeof r->principal) > PRINCIPAL_NAME_MAX ||
        strnlen(r->target, sizeof r->target) > AUDIT_TARGET_MAX ||
        strnlen(r->detail, sizeof r->detail) > AUDIT_DETAIL_MAX) {
        return 0;
    }
    struct canon_w w;
    canon_w_init(&w, buf, cap);
    canon_str(&w, AUDIT_DOMAIN_TAG);
    canon_u64(&w, r->seq);
    canon_u64(&w, r->raft_index);
    canon_u64(&w, r->time_ms);
    canon_str(&w, r->principal);
    canon_u32(&w, r->role);
    canon_u32(&w, r->action);
    canon_str(&w, r->target);
    canon_u32(&w, r->outcome);
    canon_u32(&w, (uint32_t)r->code);
    canon_u64(&w, r->count);
    canon_str(&w, r->detail);
    canon_raw(&w, r->request_digest, AUDIT_HASH_LEN);
    canon_raw(&w, r->prev_hash, AUDIT_HASH_LEN);
    return w.overflow ? 0 : w.len;
}

int audit_hash(const struct audit_rec *r, uint8_t out[AUDIT_HASH_LEN],
               struct werr *e)
{
    uint8_t buf[AUDIT_CANON_MAX];
    size_t n = audit_canon_encode(r, buf, sizeof buf);
    if (n == 0) {
        return werr_set(e, WERR_INVALID,
                        "audit entry %llu: a field is over its bound",
                        (unsigned long long)r->seq);
    }
    unsigned int olen = 0;
    if (EVP_Digest(buf, n, out, &olen, EVP_sha256(), NULL) != 1 ||
        olen != AUDIT_HASH_LEN) {
        ERR_clear_error();
        return werr_set(e, WERR_INTERNAL, "audit entry hash: SHA-256 failed");
    }
    return 0;
}

static int copy_str(char *dst, size_t cap, const char *src, const char *what,
                    struct werr *e)
{
    src = src ? src : "";
    size_t n = strlen(src);
    if (n >= cap) {
        return werr_set(e, WERR_INVALID, "audit entry %s is %zu bytes, max %zu",
                        what, n, cap - 1);
    }
    memcpy(dst, src, n + 1);
    return 0;
}

static int copy_digest(uint8_t *dst, ProtobufCBinaryData b, const char *what,
                       struct werr *e)
{
    if (b.len != AUDIT_HASH_LEN) {
        return werr_set(e, WERR_INVALID, "audit entry %s is %zu bytes, want %d",
                        what, b.len, AUDIT_HASH_LEN);
    }
    memcpy(dst, b.data, AUDIT_HASH_LEN);
    return 0;
}

int audit_rec_from_proto(const Warden__V1__AuditEntry *m, struct audit_rec *r,
                         struct werr *e)
{
    int rc;
    memset(r, 0, sizeof *r);
    r->seq = m->seq;
    r->raft_index = m->raft_index;
    r->time_ms = m->cluster_time_ms;
    r->role = m->principal_role;
    r->action = (uint32_t)m->action;
    r->outcome = (uint32_t)m->outcome;
    r->code = m->code;
    r->count = m->count;
    if ((rc = copy_str(r->principal, sizeof r->principal, m->principal_name,
                       "principal_name", e)) != 0 ||
        (rc = copy_str(r->target, sizeof r->target, m->target, "target", e)) !=
            0 ||
        (rc = copy_str(r->detail, sizeof r->detail, m->detail, "detail", e)) !=
            0 ||
        (rc = copy_digest(r->request_digest, m->request_digest,
                          "request_digest", e)) != 0 ||
        (rc = copy_digest(r->prev_hash, m->prev_hash, "prev_hash", e)) != 0 ||
        (rc = copy_digest(r->hash, m->entry_hash, "entry_hash", e)) != 0) {
        return werr_wrap(e, "audit entry %llu", (unsigned long long)m->seq);
    }
    return 0;
}

void audit_rec_to_proto(const struct audit_rec *r, Warden__V1__AuditEntry *m)
{
    warden__v1__audit_entry__init(m);
    m->seq = r->seq;
    m->raft_index = r->raft_index;
    m->cluster_time_ms = r->time_ms;
    m->principal_name = (char *)r->principal;
    m->principal_role = r->role;
    m->action = (Warden__V1__AuditAction)r->action;
    m->target = (char *)r->target;
    m->outcome = (Warden__V1__AuditOutcome)r->outcome;
    m->code = r->code;
    m->count = r->count;
    m->detail = (char *)r->detail;
    m->request_digest.data = (uint8_t *)r->request_digest;
    m->request_digest.len = AUDIT_HASH_LEN;
    m->prev_hash.data = (uint8_t *)r->prev_hash;
    m->prev_hash.len = AUDIT_HASH_LEN;
    m->entry_hash.data = (uint8_t *)r->hash;
    m->entry_hash.len = AUDIT_HASH_LEN;
}

int audit_verify_chain(const struct audit_rec *entries, size_t n,
                       const uint8_t *anchor, size_t *first_bad,
                       struct werr *e)
{
    for (size_t i = 0; i < n; i++) {
        const struct audit_rec *r = &entries[i];
        uint8_t h[AUDIT_HASH_LEN];
        *first_bad = i;
        struct werr he = {0};
        if (audit_hash(r, h, &he) != 0) {
            return werr_set(e, WERR_CORRUPT, "entry seq %llu: %s",
                            (unsigned long long)r->seq, he.msg);
        }
        if (memcmp(h, r->hash, AUDIT_HASH_LEN) != 0) {
            return werr_set(e, WERR_CORRUPT,
                            "entry seq %llu: entry_hash does not match its contents",
                            (unsigned long long)r->seq);
        }
        const uint8_t *want;
        if (i > 0) {
            if (r->seq != entries[i - 1].seq + 1) {
                return werr_set(e, WERR_CORRUPT,
                                "entry seq %llu follows seq %llu: gap or reorder",
                                (unsigned long long)r->seq,
                                (unsigned long long)entries[i - 1].seq);
            }
            want = entries[i - 1].hash;
        } else if (r->seq == 0) {
            return werr_set(e, WERR_CORRUPT, "entry has seq 0 (seqs start at 1)");
        } else if (r->seq == 1) {
            want = zeros; /* genesis */
        } else {
            want = anchor; /* NULL: the export starts mid-ledger, trust it */
        }
        if (want != NULL && memcmp(r->prev_hash, want, AUDIT_HASH_LEN) != 0) {
            return werr_set(e, WERR_CORRUPT,
                            "entry seq %llu: prev_hash does not link to %s",
                            (unsigned long long)r->seq,
                            i > 0 ? "the previous entry"
                                  : (r->seq == 1 ? "genesis (zeros)" : "the anchor"));
        }
    }
    *first_bad = n;
    return 0;
}
