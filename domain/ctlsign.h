/* ctlsign.h - the cluster command key and control-command issuing, over a
 * store txn (issue 4; docs/freshness.md). Envelope format and the device
 * side verifier: ctl_envelope.h.
 *
 * The command key is an Ed25519 key. The proposing leader generates the
 * 32-byte private seed and carries it in the Command
 * (RotateCommandKeyOp); apply only stores it, so every node holds the
 * same key. Ed25519 signing is deterministic (RFC 8032 §5.1.6), so every
 * node computes the same signature for the same envelope and the
 * replicated result is identical everywhere.
 *
 * At rest: the private key is in LMDB on every node (db ctl.keys), as
 * protected as the data directory (0700) and file (0600) are. It is NOT
 * encrypted; wrapping it with a KEK from a file or an HSM is future work
 * (docs/freshness.md). It also travels in the Raft log and snapshots. */
#ifndef WARDEN_DOMAIN_CTLSIGN_H
#define WARDEN_DOMAIN_CTLSIGN_H

#include <stddef.h>
#include <stdint.h>

#include "warden/v1/control.pb-c.h"

#include "../common/err.h"
#include "../storage/store.h"
#include "ctl_envelope.h"
#include "dom.h"
#include "inventory.h"

/* RotateCommandKey (admin, or peer: the server proposes the bootstrap key
 * as its node principal). key_id: 1..CTL_KEY_ID_MAX of [A-Za-z0-9._-],
 * never used before (WERR_EXISTS). private_key: CTL_PRIVKEY_LEN bytes.
 * Fills pub with the public key. */
int ctl_rotate_key(struct inv *inv, struct store_txn *t,
                   const struct dom_ctx *ctx,
                   const Warden__V1__RotateCommandKeyOp *op,
                   uint8_t pub[CTL_PUBKEY_LEN], struct werr *e);

struct ctl_issued {
    uint8_t *envelope; /* malloc'd, owned: ctl_issued_free() */
    size_t envelope_len;
    uint8_t sig[CTL_SIG_LEN];
    char key_id[CTL_KEY_ID_MAX + 1];
    uint64_t seq;
    uint64_t key_epoch;
};
void ctl_issued_free(struct ctl_issued *c);

/* IssueCommand (admin, operator, rollout): the device must be ACTIVE or
 * QUARANTINED (remediation commands reach quarantined devices) and a
 * command key must exist (else WERR_PRECOND). Its sequence goes up by one
 * (never reset, not even by ReEnroll, so an old envelope stays a replay).
 * Errors: WERR_INVALID (payload over CTL_PAYLOAD_MAX), WERR_NOTFOUND,
 * WERR_PERM, WERR_PRECOND, store errors. */
int ctl_issue(struct inv *inv, struct store_txn *t, const struct dom_ctx *ctx,
              const Warden__V1__IssueCommandRequest *req,
              struct ctl_issued *out, struct werr *e);

/* Public half of a command key: key_id "" or NULL = the current one.
 * WERR_NOTFOUND if there is none. Any txn. */
int ctl_get_key(struct inv *inv, struct store_txn *t, const char *key_id,
                char key_id_out[CTL_KEY_ID_MAX + 1],
                uint8_t pub[CTL_PUBKEY_LEN], uint64_t *created_index,
                int *current, struct werr *e);

/* Last issued seq for a device (0 if none). */
int ctl_last_seq(struct inv *inv, struct store_txn *t, const char *device_id,
                 uint64_t *out, struct werr *e);

#endif
