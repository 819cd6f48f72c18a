/* audit.h - the append-only, hash-chained audit ledger over a store txn
 * (issue 4; format and policy: docs/audit.md; pure hashing and verifying:
 * audit_chain.h).
 *
 * audit_append() runs in the caller's write txn, the one that holds the
 * action's effect, so the two commit together or not at all. Nothing here
 * reads a clock or randomness: index and time come from dom_ctx. There is
 * no update or delete call; the only writer is audit_append().
 *
 * Storage layout (docs/storage.md):
 *   db "audit.log":  u64 BE seq -> packed warden.v1.AuditEntry
 *   db "audit.meta": "head"     -> u64 BE seq || 32-byte entry_hash
 * Ownership: pages from audit_read() are owned by the caller
 * (audit_page_free). Events and their strings are borrowed for the call. */
#ifndef WARDEN_DOMAIN_AUDIT_H
#define WARDEN_DOMAIN_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "../common/err.h"
#include "../storage/store.h"
#include "audit_chain.h"
#include "dom.h"

/* Read bounds: a page stays well under the 4 MiB gRPC message cap and a
 * read txn is held for a bounded time. */
#define AUDIT_READ_DEFAULT 100
#define AUDIT_READ_MAX_ENTRIES 1000
#define AUDIT_READ_MAX_BYTES ((size_t)2 << 20)

/* Rows per `denials` command (warden.v1.AuditDenials): bounds the apply
 * work and the entry burst one command can cause. A server holding more
 * rows flushes them over several commands; rows it could not even count
 * are summed into AuditDenials.dropped (docs/audit.md). */
#define AUDIT_DENIAL_ROWS_MAX 64

struct audit;

/* Open the ledger's dbs in s (borrowed; must outlive the handle). Start-up
 * only (store_dbi). Returns 0 or a store error. */
int audit_open(struct audit **out, struct store *s, struct werr *e);
void audit_close(struct audit *a);

/* What happened; the ledger adds seq, index, time and the chain. */
struct audit_event {
    uint32_t action;    /* Warden__V1__AuditAction */
    uint32_t outcome;   /* Warden__V1__AuditOutcome */
    int32_t code;       /* 0 or WERR_* */
    uint64_t count;     /* 0 is stored as 1 */
    const char *target; /* NULL = ""; cut to AUDIT_TARGET_MAX bytes */
    const char *detail; /* NULL = ""; cut to AUDIT_DETAIL_MAX bytes */
    const uint8_t *request_digest;  /* 32 bytes, or NULL = zeros */
    const struct principal *who;    /* NULL = ctx->who */
};

/* Append one entry in write txn t. Control bytes in target and detail are
 * replaced by '?' (entries end up in terminals and logs). On success
 * *seq_out (if non-NULL) is the new seq. Errors: store errors (the txn must
 * then be aborted), WERR_INTERNAL. */
int audit_append(struct audit *a, struct store_txn *t,
                 const struct dom_ctx *ctx, const struct audit_event *ev,
                 uint64_t *seq_out, struct werr *e);

/* Latest seq and hash (0 and zeros when empty). Any txn. */
int audit_head(struct audit *a, struct store_txn *t, uint64_t *seq,
               uint8_t hash[AUDIT_HASH_LEN], struct werr *e);

struct audit_page {
    Warden__V1__AuditEntry **entries; /* owned; n of them, in seq order */
    size_t n;
    uint64_t next_seq; /* first seq not returned */
};

/* Entries from seq `from` (0 = 1), at most max_entries (0 = default,
 * capped at AUDIT_READ_MAX_ENTRIES) and about max_bytes packed (0 or more
 * than AUDIT_READ_MAX_BYTES = AUDIT_READ_MAX_BYTES; at least one entry is
 * returned if any exists). Any txn. Errors: WERR_CORRUPT, store errors. */
int audit_read(struct audit *a, struct store_txn *t, uint64_t from,
               size_t max_entries, size_t max_bytes, struct audit_page *out,
               struct werr *e);
void audit_page_free(struct audit_page *p);

/* One entry by seq (WERR_NOTFOUND if absent), as a plain record. */
int audit_get(struct audit *a, struct store_txn *t, uint64_t seq,
              struct audit_rec *out, struct werr *e);

#endif
