/* auditfile.h - the audit export file: writing it (`wardenctl audit
 * export`), reading it back and verifying the hash chain offline
 * (`wardenctl audit verify`). Format: docs/cli.md, "Audit export file".
 *
 * Pure apart from stdio on caller-supplied FILEs: no sockets, no clock.
 * The hash and the chain rules are domain/audit_chain.h's (the same code
 * the server runs), so the verifier cannot drift from the ledger.
 *
 * The file is JSON Lines (RFC 8259 per line, '\n'-terminated):
 *   line 1   header: format name and version, hash algorithm, canonical
 *            encoding tag, the range, and the server's head when exported;
 *   line 2.. one entry per line, every AuditEntry field, in seq order.
 * Strings that are not valid UTF-8 are written as "<field>_hex" instead of
 * "<field>", so every byte that is hashed survives the round trip. */
#ifndef WARDEN_CLI_AUDITFILE_H
#define WARDEN_CLI_AUDITFILE_H

#include <stdint.h>
#include <stdio.h>

#include "../common/err.h"
#include "../domain/audit_chain.h"

#define CLI_AUDIT_FORMAT "warden.audit.export"
#define CLI_AUDIT_FORMAT_VERSION 1
#define CLI_AUDIT_HASH_ALG "sha-256"
/* Longest line read back. An entry's strings are bounded (audit_chain.h:
 * at most ~600 bytes of text), and JSON escaping grows a byte to at most
 * 6 ("\u001f"); 16 KiB holds the worst case with room to spare, and a
 * longer line is malformed rather than a reason to allocate. */
#define CLI_AUDIT_LINE_MAX (16u << 10)

struct cli_audit_header {
    uint64_t from_seq;     /* first seq in the file (1 = genesis) */
    uint64_t to_seq;       /* last seq; from_seq - 1 for an empty range */
    uint64_t count;        /* entries that follow: to_seq - from_seq + 1 */
    uint64_t head_seq;     /* the server's head when exported (0: empty) */
    uint8_t head_hash[AUDIT_HASH_LEN];
};

/* Exit codes of `audit verify` (docs/cli.md). */
enum cli_audit_verdict {
    CLI_AUDIT_INTACT = 0,
    CLI_AUDIT_BROKEN = 1,    /* the chain does not verify */
    CLI_AUDIT_MALFORMED = 2, /* not a readable v1 export (incl. truncated) */
};

/* Write the header line / one entry line. Return 0 or WERR_IO (ferror). */
int cli_audit_write_header(FILE *f, const struct cli_audit_header *h);
int cli_audit_write_entry(FILE *f, const struct audit_rec *r);

/* Parse one line (without its '\n'). 0, or WERR_INVALID/WERR_LIMIT with e
 * saying which field is wrong. parse_header also refuses another format,
 * version, hash algorithm or encoding tag. */
int cli_audit_parse_header(const char *line, size_t len,
                           struct cli_audit_header *h, struct werr *e);
int cli_audit_parse_entry(const char *line, size_t len, struct audit_rec *r,
                          struct werr *e);

struct cli_audit_report {
    enum cli_audit_verdict verdict;
    struct cli_audit_header hdr;   /* valid when hdr_ok */
    int hdr_ok;
    uint64_t entries;              /* entries that verified */
    uint64_t first_seq, last_seq;  /* of those entries */
    uint8_t first_prev[AUDIT_HASH_LEN]; /* the first entry's prev_hash */
    uint8_t last_hash[AUDIT_HASH_LEN];
    int head_checked;              /* head_seq was inside the file */
    /* BROKEN: the first bad entry (its seq as written) and which check
     * failed: "entry_hash", "seq", "prev_hash" or "head". MALFORMED: the
     * line, and check = "format". */
    uint64_t bad_seq;
    uint64_t bad_line;             /* 1-based line number */
    const char *check;
    char msg[WERR_MSG_MAX + 64];
};

/* Read an export from in and verify it, entry by entry in O(1) memory:
 * recompute each entry_hash with the canonical encoder, check that seqs
 * run from_seq..to_seq without gaps, that each prev_hash is the previous
 * entry's hash (zeros before seq 1; for a range starting later the first
 * prev_hash is taken as given and reported), that the entry at head_seq,
 * when in the file, has the head's hash, and that exactly `count` entries
 * follow. Stops at the first problem. Returns the verdict (also in
 * rep->verdict). */
int cli_audit_verify_file(FILE *in, struct cli_audit_report *rep);

#endif
