/* inv_int.h - internals shared by the inventory's files: inventory.c
 * (enroll, get, list), lifecycle.c (state table, re-enroll, rebind, key
 * rotation), freshness.c (telemetry window) and ctlsign.c (control
 * commands). Not a public header: only domain/ sources include it.
 *
 * Storage layout (docs/storage.md):
 *   db "inv.devices":  device_id -> packed warden.v1.Device
 *   db "inv.meta":     "schema"  -> u32 BE schema version
 *   db "inv.nonces":   device_id -> nonce(32) || u64 BE issued index
 *                                   || u64 BE key epoch it was issued for
 *   db "inv.fresh":    device_id -> packed warden.v1.TelemetryWindow
 *   db "inv.counters": counter name (bytes) -> u64 BE
 *   db "ctl.keys":     "current" | "kid/<key_id>" -> packed CommandKeyRecord
 *   db "ctl.seq":      device_id -> u64 BE last issued command seq */
#ifndef WARDEN_DOMAIN_INV_INT_H
#define WARDEN_DOMAIN_INV_INT_H

#include "inventory.h"

struct inv {
    struct store *s; /* borrowed */
    unsigned devices;
    unsigned meta;
    unsigned nonces;
    unsigned fresh;
    unsigned counters;
    unsigned ctl_keys;
    unsigned ctl_seq;
};

/* Validators shared with the other inventory files (same rules, same
 * messages as enroll). */
int inv__check_text(const char *field, const char *s, size_t max,
                    struct werr *e);
int inv__check_gateway(const char *field, const char *s, struct werr *e);

/* Read device id into *out (owned: inv_device_free). WERR_NOTFOUND when
 * absent, with a message naming it. */
int inv__load(struct inv *inv, struct store_txn *t, const char *id,
              Warden__V1__Device **out, struct werr *e);
/* Overwrite the record of d->device_id in write txn t. */
int inv__store(struct inv *inv, struct store_txn *t,
               const Warden__V1__Device *d, struct werr *e);
/* Replace d's key fields with a parsed key; the old bytes d owned are
 * freed (d must be unpacked with the default allocator). Returns 0 or
 * WERR_NOMEM. */
int inv__set_key(Warden__V1__Device *d, int alg, const uint8_t *canon,
                 size_t canon_len, const uint8_t *fp, size_t fp_len,
                 struct werr *e);
/* Replace a string field of d (owned, default allocator). */
int inv__set_str(char **field, const char *v, struct werr *e);

/* Counters in inv.counters: add delta (write txn), or read (0 if absent). */
int inv__counter_add(struct inv *inv, struct store_txn *t, const void *name,
                     size_t nlen, uint64_t delta, struct werr *e);
int inv__counter_get(struct inv *inv, struct store_txn *t, const void *name,
                     size_t nlen, uint64_t *out, struct werr *e);

void inv__put_be64(uint8_t *p, uint64_t v);
uint64_t inv__get_be64(const uint8_t *p);

#endif
