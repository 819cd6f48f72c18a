/* audit_chain.h - the audit ledger's canonical entry encoding, entry hash
 * and chain verifier (docs/audit.md). Pure: no store, no clock; depends
 * only on OpenSSL's SHA-256 and the generated AuditEntry proto, so cli/
 * links it for `wardenctl audit verify` and checks an export offline.
 *
 * Hash: entry_hash = SHA-256(canonical encoding v1), where the encoding is
 *   str  "warden.audit.entry.v1"      (domain separation + version)
 *   u64  seq
 *   u64  raft_index
 *   u64  cluster_time_ms
 *   str  principal_name
 *   u32  principal_role
 *   u32  action
 *   str  target
 *   u32  outcome
 *   u32  code (two's complement of the int32)
 *   u64  count
 *   str  detail
 *   raw  request_digest (32)
 *   raw  prev_hash (32)
 * with u32/u64 big-endian and str = u32 BE length || bytes. Genesis:
 * the prev_hash of seq 1 is 32 zero bytes. */
#ifndef WARDEN_DOMAIN_AUDIT_CHAIN_H
#define WARDEN_DOMAIN_AUDIT_CHAIN_H

#include <stddef.h>
#include <stdint.h>

#include "warden/v1/audit.pb-c.h"

#include "../common/err.h"
#include "../common/principal.h"

#define AUDIT_HASH_LEN 32
#define AUDIT_DOMAIN_TAG "warden.audit.entry.v1"
/* Field bounds: an entry stays under ~1 KiB, and every bound is checked on
 * append and on verify so a forged export cannot make the verifier
 * allocate or hash without limit. */
#define AUDIT_TARGET_MAX 256
#define AUDIT_DETAIL_MAX 256
/* Largest canonical encoding: the fixed fields plus the bounded strings. */
#define AUDIT_CANON_MAX                                                     \
    (4 + sizeof AUDIT_DOMAIN_TAG + 8 * 3 + 4 + PRINCIPAL_NAME_MAX + 4 +     \
     4 + 4 + AUDIT_TARGET_MAX + 4 + 4 + 8 + 4 + AUDIT_DETAIL_MAX +          \
     AUDIT_HASH_LEN * 2)

/* One entry, as plain C. Strings are NUL-terminated copies. */
struct audit_rec {
    uint64_t seq;
    uint64_t raft_index;
    uint64_t time_ms;
    char principal[PRINCIPAL_NAME_MAX + 1];
    uint32_t role;
    uint32_t action;  /* Warden__V1__AuditAction */
    char target[AUDIT_TARGET_MAX + 1];
    uint32_t outcome; /* Warden__V1__AuditOutcome */
    int32_t code;     /* 0 or WERR_* */
    uint64_t count;
    char detail[AUDIT_DETAIL_MAX + 1];
    uint8_t request_digest[AUDIT_HASH_LEN];
    uint8_t prev_hash[AUDIT_HASH_LEN];
    uint8_t hash[AUDIT_HASH_LEN];
};

/* Canonical encoding of r (all fields but r->hash) into buf
 * (AUDIT_CANON_MAX bytes). Returns its length, or 0 if a string is over
 * its bound. */
size_t audit_canon_encode(const struct audit_rec *r, uint8_t *buf, size_t cap);

/* entry_hash of r into out. Returns 0, WERR_INVALID (a field over its
 * bound) or WERR_INTERNAL (OpenSSL). */
int audit_hash(const struct audit_rec *r, uint8_t out[AUDIT_HASH_LEN],
               struct werr *e);

/* Convert between the stored/wire proto and the plain record. from_proto
 * refuses over-long strings and digests that are not 32 bytes
 * (WERR_INVALID). to_proto's strings and bytes borrow from r: r must
 * outlive *m. */
int audit_rec_from_proto(const Warden__V1__AuditEntry *m, struct audit_rec *r,
                         struct werr *e);
void audit_rec_to_proto(const struct audit_rec *r, Warden__V1__AuditEntry *m);

/* Verify a run of consecutive entries: seqs increase by one, each
 * prev_hash is the previous entry's hash (the first entry's prev_hash must
 * be zeros when its seq is 1, or equal *anchor when anchor != NULL), and
 * each stored hash equals the recomputed one. Entries are checked in order
 * and, within one, the hash before the link, so tampering with any byte of
 * entry k reports k.
 * Returns 0 (all good), or WERR_CORRUPT with *first_bad = the array index
 * of the first bad entry and e saying why. */
int audit_verify_chain(const struct audit_rec *entries, size_t n,
                       const uint8_t *anchor, size_t *first_bad,
                       struct werr *e);

#endif
