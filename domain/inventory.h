/* inventory.h - the device identity inventory as a deterministic state
 * machine over a store transaction.
 *
 * Every operation runs inside a store_txn the caller owns: writes (enroll)
 * need a write txn and the caller commits or aborts it, so a later Raft FSM
 * can apply one command - its inventory effect, its audit entry (issue 4)
 * and the applied index (issue 3) - in one LMDB transaction. Nothing here
 * reads a clock, a random source or the network (see dom.h). On any error
 * from a write operation the txn must be aborted: it may be poisoned and
 * partial writes must not be committed.
 *
 * Storage layout (docs/storage.md):
 *   db "inv.devices": device_id -> packed warden.v1.Device
 *   db "inv.meta":    "schema"  -> u32 big-endian schema version
 *
 * Ownership: Device objects handed out are heap-allocated protobuf-c
 * messages owned by the caller; free them with inv_device_free(). Request
 * messages are borrowed for the duration of the call. */
#ifndef WARDEN_DOMAIN_INVENTORY_H
#define WARDEN_DOMAIN_INVENTORY_H

#include <stddef.h>
#include <stdint.h>

#include "warden/v1/inventory.pb-c.h"

#include "../common/err.h"
#include "../storage/store.h"
#include "dom.h"

/* ---- limits (validation messages name them) ---------------------------- */
/* Device ids are LMDB keys, log/audit fields and CLI table cells. */
#define INV_DEVICE_ID_MAX 128
/* Labels: bounded so a record stays small (~5 KiB worst case) and a page of
 * INV_PAGE_SIZE_MAX records stays well under the 4 MiB gRPC message cap. */
#define INV_LABELS_MAX 16
#define INV_LABEL_KEY_MAX 63
#define INV_LABEL_VALUE_MAX 255
#define INV_FIRMWARE_MAX 64
#define INV_MODEL_MAX 128
/* A gateway id is a principal name (common/principal.h). */
#define INV_GATEWAY_MAX PRINCIPAL_NAME_MAX
#define INV_ATTESTATION_DIGEST_LEN 32 /* SHA-256 */
/* Reserved for issue 3's idempotency window; validated now so clients
 * cannot start sending unbounded keys. */
#define INV_IDEMPOTENCY_KEY_MAX 128

/* ListDevices paging. */
#define INV_PAGE_SIZE_DEFAULT 100
#define INV_PAGE_SIZE_MAX 1000
/* Records examined per ListDevices request. A selective filter over a big
 * fleet would otherwise make one request walk the whole table while holding
 * a read txn (which pins old pages and grows the file); instead we stop and
 * return a partial, possibly empty, page with a next_page_token. */
#define INV_LIST_SCAN_MAX 10000
/* Packed bytes of devices per page: keeps the reply under the gRPC message
 * limit (GRPC_MAX_MSG_DEFAULT, 4 MiB) with margin for framing. */
#define INV_LIST_BYTES_MAX ((size_t)2 << 20)
/* Page token: "d1." + base64url(last key), no padding. */
#define INV_PAGE_TOKEN_MAX (3 + ((INV_DEVICE_ID_MAX + 2) / 3) * 4)

/* Current on-disk schema. inv_open() refuses a newer one. */
#define INV_SCHEMA_VERSION 1u

struct inv;

/* Open the inventory's databases in s (creating them and writing the schema
 * version on first use). s is borrowed and must outlive the inv. Call at
 * start-up (it opens named databases; see store_dbi()). Returns 0,
 * WERR_CORRUPT if the stored schema is unknown, or a store error. */
int inv_open(struct inv **out, struct store *s, struct werr *e);
void inv_close(struct inv *inv);

/* Enroll a new device. t must be a write txn. On success the record is
 * written (visible once the caller commits) and *out, if out != NULL, is a
 * copy the caller frees with inv_device_free(). The new device is
 * PROVISIONED with key_epoch 1 and identity_epoch 1; created/updated
 * index and time come from ctx; enrolled_by is ctx->who->name. The public
 * key is stored in canonical form (devkey.h) with its SHA-256 fingerprint.
 * Errors: WERR_INVALID (validation; the message names the field and the
 * limit), WERR_EXISTS (id already enrolled), store errors. */
int inv_enroll(struct inv *inv, struct store_txn *t, const struct dom_ctx *ctx,
               const Warden__V1__EnrollDeviceRequest *req,
               Warden__V1__Device **out, struct werr *e);

/* UpdateDeviceLabels (admin, operator; issue 7): replace d's whole label
 * set with req->labels (validated like enroll's: INV_LABELS_MAX,
 * INV_LABEL_KEY_MAX, INV_LABEL_VALUE_MAX, no duplicate keys), as a
 * compare-and-set on Device.updated_index: req->expected_updated_index 0 is
 * unconditional, any other value must equal the stored updated_index.
 * t must be a write txn. On success updated_index/updated_time_ms become
 * ctx's, *prev_index (if non-NULL) is the updated_index before the write
 * (for the audit detail) and *out (if non-NULL) is the new record, owned
 * by the caller (inv_device_free). Label-selector locks and rollout
 * selectors read the record at check time, so they see the new labels
 * from the next command on. The state is not checked: labels are
 * metadata, and a REVOKED device may be relabelled.
 * Errors: WERR_INVALID (validation), WERR_PERM (role), WERR_NOTFOUND,
 * WERR_PRECOND ("version mismatch: have N, expected M"), WERR_CORRUPT,
 * store errors. Nothing is written on error (the caller aborts t anyway). */
int inv_update_labels(struct inv *inv, struct store_txn *t,
                      const struct dom_ctx *ctx,
                      const Warden__V1__UpdateDeviceLabelsRequest *req,
                      Warden__V1__Device **out, uint64_t *prev_index,
                      struct werr *e);

/* Look a device up. Any txn. *out is owned by the caller (inv_device_free).
 * Errors: WERR_INVALID (malformed id), WERR_NOTFOUND, WERR_CORRUPT
 * (undecodable record), store errors. */
int inv_get(struct inv *inv, struct store_txn *t, const char *device_id,
            Warden__V1__Device **out, struct werr *e);

/* One page of ListDevices. */
struct inv_page {
    Warden__V1__Device **devices; /* owned; n entries */
    size_t n;
    /* "" when the listing is complete; otherwise pass back as page_token.
     * A page may hold fewer than page_size devices (even zero) and still
     * have a token: the scan bound or byte bound was reached. */
    char next_token[INV_PAGE_TOKEN_MAX + 1];
    uint64_t scanned; /* records examined (for metrics and tests) */
};

/* List devices in device-id order, after req->page_token, matching every
 * filter set in req (state, gateway_id, firmware_version exact match; label:
 * key must be present, and equal to value when value is non-empty). Any txn.
 * On success *page is filled and the caller frees it with inv_page_free().
 * Errors: WERR_INVALID (page_size > INV_PAGE_SIZE_MAX, malformed token or
 * filter), WERR_CORRUPT, store errors. */
int inv_list(struct inv *inv, struct store_txn *t,
             const Warden__V1__ListDevicesRequest *req, struct inv_page *page,
             struct werr *e);
/* Free a page's devices and reset it; safe on a zeroed page. */
void inv_page_free(struct inv_page *page);

void inv_device_free(Warden__V1__Device *d);

/* Validate a device id (1..INV_DEVICE_ID_MAX of [A-Za-z0-9._:-]). Exposed
 * for the CLI and other domain modules. Returns 0 or WERR_INVALID. */
int inv_device_id_check(const char *id, struct werr *e);

/* Page-token codec, exposed for tests: encode a key, and decode a token
 * into a validated device id (buf of INV_DEVICE_ID_MAX + 1 bytes). */
int inv_page_token_encode(const char *key, size_t klen, char *out, size_t cap);
int inv_page_token_decode(const char *tok, char *id, size_t cap,
                          struct werr *e);

#endif
