/* freshness.h - telemetry freshness: a per-device anti-replay window over
 * signed counters, held in replicated state (issue 4; docs/freshness.md).
 *
 * The window is RFC 6479's: a ring of FRESH_BLOCKS 64-bit blocks, one more
 * than the window needs, so advancing the highest counter clears whole
 * blocks instead of shifting bits (RFC 6479 §2). A counter c is
 *   ACCEPTED  if c > highest, or highest - c < FRESH_WINDOW and unseen;
 *   REPLAY    if highest - c < FRESH_WINDOW and already seen;
 *   TOO_OLD   if highest - c >= FRESH_WINDOW.
 * So with highest h, h - FRESH_WINDOW + 1 is the oldest acceptable counter
 * and h - FRESH_WINDOW is too old. A fresh window has highest 0 and nothing
 * seen: counter 0 is accepted once.
 *
 * Because the window lives in LMDB and changes only by applying committed
 * entries, every node holds the same window at the same index, and a
 * failover does not reopen it. Nothing here reads a clock. */
#ifndef WARDEN_DOMAIN_FRESHNESS_H
#define WARDEN_DOMAIN_FRESHNESS_H

#include <stddef.h>
#include <stdint.h>

#include "warden/v1/telemetry.pb-c.h"

#include "../common/err.h"
#include "../storage/store.h"
#include "dom.h"
#include "inventory.h"

/* Window width in counters. 1024 tolerates deep reordering across a
 * gateway's queues and retries, and costs 136 bytes per device. */
#define FRESH_WINDOW 1024u
#define FRESH_BLOCKS (FRESH_WINDOW / 64u + 1u)
/* Payload cap: telemetry goes through Raft, so it must stay small; larger
 * blobs belong in object storage with their digest here. */
#define FRESH_PAYLOAD_MAX ((size_t)64 << 10)
#define FRESH_DIGEST_LEN 32
#define FRESH_TAG "warden.telemetry.v1"
/* "warden.telemetry.v1" || u32 len || id || u64 epoch || u64 ctr || digest */
#define FRESH_MSG_MAX                                                      \
    (sizeof FRESH_TAG - 1 + 4 + INV_DEVICE_ID_MAX + 8 + 8 + FRESH_DIGEST_LEN)

struct fresh_window {
    uint64_t highest;
    uint64_t bitmap[FRESH_BLOCKS];
};

/* Check counter c against w and, if ACCEPTED, record it. Returns a
 * Warden__V1__TelemetryResult (ACCEPTED, REPLAY or TOO_OLD). Pure. */
int fresh_window_check(struct fresh_window *w, uint64_t c);

/* The message a device signs. Returns its length, or 0 if the id is too
 * long or cap too small. Pure. */
size_t fresh_message(const char *device_id, uint64_t key_epoch,
                     uint64_t counter, const uint8_t digest[FRESH_DIGEST_LEN],
                     uint8_t *buf, size_t cap);

/* SubmitTelemetry, in write txn t. The verdict is out->result, not an
 * error: replays and bad signatures are replicated outcomes. Errors are
 * reserved for malformed requests (WERR_INVALID: id, digest length,
 * payload over FRESH_PAYLOAD_MAX), callers not allowed to submit for the
 * device (WERR_PERM: role, or a gateway it is not bound to) and store
 * failures. Rejections are counted in the device's window record
 * (UNKNOWN_DEVICE in inv.counters "tlm.unknown"); acceptances are not
 * audited (volume; docs/audit.md). Devices in ACTIVE or QUARANTINED may
 * submit; PROVISIONED and REVOKED get NOT_ACTIVE. */
int fresh_submit(struct inv *inv, struct store_txn *t,
                 const struct dom_ctx *ctx,
                 const Warden__V1__SubmitTelemetryRequest *req,
                 Warden__V1__SubmitTelemetryResponse *out, struct werr *e);

/* The device's window record (owned by the caller:
 * warden__v1__telemetry_window__free_unpacked(w, NULL)); WERR_NOTFOUND if
 * it never submitted. Any txn. */
int fresh_get(struct inv *inv, struct store_txn *t, const char *device_id,
              Warden__V1__TelemetryWindow **out, struct werr *e);

#ifdef WARDEN_FAULTS
/* Negative-control fault (issue 7; docs/freshness.md "Fault builds"),
 * compiled only with -DWARDEN_FAULTS=ON: when on, fresh_submit() checks
 * counters against a process-local in-memory window per device instead of
 * the replicated record (which it still writes), so a restarted node -
 * and a restarted node that becomes leader - starts every window empty
 * and ACCEPTs counters again. Deliberately breaks the anti-replay
 * guarantee so the Jepsen counter-freshness checker can be shown to
 * catch it (`wardend --unsafe-fault fresh-window-volatile`). Set before
 * the node starts; not thread-safe. */
void fresh_fault_volatile_window(int on);
#endif

/* Submissions for unknown devices, cluster-wide. */
int fresh_unknown_count(struct inv *inv, struct store_txn *t, uint64_t *out,
                        struct werr *e);

#endif
