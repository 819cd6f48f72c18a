/* freshness.c - telemetry anti-replay window (contract: freshness.h). */
#include "freshness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "canon.h"
#include "devkey.h"
#include "inv_int.h"
#include "lifecycle.h"

#define CTR_UNKNOWN "tlm.unknown"
#define BITMAP_BYTES (FRESH_BLOCKS * 8u)

/* RFC 6479 §2: blocks of 64 bits in a ring; the block of counter c is
 * (c / 64) mod FRESH_BLOCKS, its bit c mod 64. */
int fresh_window_check(struct fresh_window *w, uint64_t c)
{
    uint64_t block = c / 64u;
    if (c > w->highest) {
        uint64_t cur = w->highest / 64u;
        uint64_t diff = block - cur;
        if (diff > FRESH_BLOCKS) {
            diff = FRESH_BLOCKS;
        }
        /* Clear the blocks the window slides over. */
        for (uint64_t i = 1; i <= diff; i++) {
            w->bitmap[(cur + i) % FRESH_BLOCKS] = 0;
        }
        w->highest = c;
    } else if (w->highest - c >= FRESH_WINDOW) {
        return WARDEN__V1__TELEMETRY_RESULT__TELEMETRY_RESULT_TOO_OLD;
    }
    uint64_t bit = (uint64_t)1 << (c % 64u);
    uint64_t *b = &w->bitmap[block % FRESH_BLOCKS];
    if (*b & bit) {
        return WARDEN__V1__TELEMETRY_RESULT__TELEMETRY_RESULT_REPLAY;
    }
    *b |= bit;
    return WARDEN__V1__TELEMETRY_RESULT__TELEMETRY_RESULT_ACCEPTED;
}

size_t fresh_message(const char *device_id, uint64_t key_epoch,
                     uint64_t counter, const uint8_t digest[FRESH_DIGEST_LEN],
                     uint8_t *buf, size_t cap)
{
    size_t n = strlen(device_id);
    if (n > INV_DEVICE_ID_MAX) {
        return 0;
    }
    struct canon_w w;
    canon_w_init(&w, buf, cap);
    canon_raw(&w, FRESH_TAG, sizeof FRESH_TAG - 1);
    canon_bytes(&w, device_id, n);
    canon_u64(&w, key_epoch);
    canon_u64(&w, counter);
    canon_raw(&w, digest, FRESH_DIGEST_LEN);
    return w.overflow ? 0 : w.len;
}

int fresh_get(struct inv *inv, struct store_txn *t, const char *device_id,
              Warden__V1__TelemetryWindow **out, struct werr *e)
{
    struct store_val v;
    int rc = store_get(t, inv->fresh, device_id, strlen(device_id), &v, e);
    if (rc) {
        return rc;
    }
    Warden__V1__TelemetryWindow *w =
        warden__v1__telemetry_window__unpack(NULL, v.len, v.data);
    if (w == NULL || w->bitmap.len != BITMAP_BYTES) {
        if (w != NULL) {
            warden__v1__telemetry_window__free_unpacked(w, NULL);
        }
        return werr_set(e, WERR_CORRUPT, "telemetry window of %s is corrupt",
                        device_id);
    }
    *out = w;
    return 0;
}

int fresh_unknown_count(struct inv *inv, struct store_txn *t, uint64_t *out,
                        struct werr *e)
{
    return inv__counter_get(inv, t, CTR_UNKNOWN, strlen(CTR_UNKNOWN), out, e);
}

static int digest_ok(const ProtobufCBinaryData *payload, const uint8_t *want,
                     int *ok, struct werr *e)
{
    uint8_t h[FRESH_DIGEST_LEN];
    unsigned int olen = 0;
    if (EVP_Digest(payload->data, payload->len, h, &olen, EVP_sha256(), NULL) !=
            1 ||
        olen != FRESH_DIGEST_LEN) {
        ERR_clear_error();
        return werr_set(e, WERR_INTERNAL, "telemetry: SHA-256 failed");
    }
    *ok = memcmp(h, want, FRESH_DIGEST_LEN) == 0;
    return 0;
}

#ifdef WARDEN_FAULTS
/* ---- fault: fresh-window-volatile (freshness.h) ----------------------------
 * A fixed table, so even the broken mode stays bounded: devices hashing to
 * an occupied slot evict its window (which only breaks the guarantee more). */
#define FAULT_SLOTS 4096u

struct fault_slot {
    char id[INV_DEVICE_ID_MAX + 1]; /* "" = empty */
    uint64_t epoch;
    struct fresh_window w;
};

static int fault_on;
static struct fault_slot *fault_tab; /* FAULT_SLOTS, allocated on first use */

void fresh_fault_volatile_window(int on)
{
    fault_on = on;
}

static struct fault_slot *fault_slot_of(const char *id)
{
    if (fault_tab == NULL) {
        fault_tab = calloc(FAULT_SLOTS, sizeof *fault_tab);
        if (fault_tab == NULL) {
            return NULL;
        }
    }
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        h = (h ^ *p) * 16777619u;
    }
    return &fault_tab[h % FAULT_SLOTS];
}

/* Replace *w (loaded from the store) with this process's memory of it. */
static void fault_load(const char *id, uint64_t epoch, struct fresh_window *w)
{
    struct fault_slot *s = fault_on ? fault_slot_of(id) : NULL;
    if (s == NULL) {
        return;
    }
    if (strcmp(s->id, id) == 0 && s->epoch == epoch) {
        *w = s->w;
    } else {
        memset(w, 0, sizeof *w);
    }
}

static void fault_save(const char *id, uint64_t epoch,
                       const struct fresh_window *w)
{
    struct fault_slot *s = fault_on ? fault_slot_of(id) : NULL;
    if (s != NULL) {
        snprintf(s->id, sizeof s->id, "%s", id);
        s->epoch = epoch;
        s->w = *w;
    }
}
#endif

int fresh_submit(struct inv *inv, struct store_txn *t,
                 const struct dom_ctx *ctx,
                 const Warden__V1__SubmitTelemetryRequest *req,
                 Warden__V1__SubmitTelemetryResponse *out, struct werr *e)
{
    int rc;
    warden__v1__submit_telemetry_response__init(out);
    if ((rc = inv_device_id_check(req->device_id, e)) != 0) {
        return rc;
    }
    if (req->payload_digest.len != FRESH_DIGEST_LEN) {
        return werr_set(e, WERR_INVALID, "payload_digest must be %d bytes, got %zu",
                        FRESH_DIGEST_LEN, req->payload_digest.len);
    }
    if (req->payload.len > FRESH_PAYLOAD_MAX) {
        return werr_set(e, WERR_INVALID, "payload is %zu bytes, max %zu",
                        req->payload.len, FRESH_PAYLOAD_MAX);
    }
    Warden__V1__Device *d;
    rc = inv__load(inv, t, req->device_id, &d, e);
    if (rc == WERR_NOTFOUND) {
        out->result = WARDEN__V1__TELEMETRY_RESULT__TELEMETRY_RESULT_UNKNOWN_DEVICE;
        return inv__counter_add(inv, t, CTR_UNKNOWN, strlen(CTR_UNKNOWN), 1, e);
    }
    if (rc) {
        return rc;
    }
    if ((rc = lc_may_act(ctx->who, d, WROLE_GATEWAY | WROLE_ADMIN | WROLE_OPERATOR,
                         "submit telemetry", e)) != 0) {
        inv_device_free(d);
        return rc;
    }

    /* The device's window, reset when its identity epoch changed
     * (ReEnroll: a new identity starts counting afresh). */
    struct fresh_window win;
    memset(&win, 0, sizeof win);
    Warden__V1__TelemetryWindow rec = WARDEN__V1__TELEMETRY_WINDOW__INIT;
    Warden__V1__TelemetryWindow *old = NULL;
    rc = fresh_get(inv, t, req->device_id, &old, e);
    if (rc != 0 && rc != WERR_NOTFOUND) {
        inv_device_free(d);
        return rc;
    }
    if (old != NULL && old->identity_epoch == d->identity_epoch) {
        rec.accepted = old->accepted;
        rec.replayed = old->replayed;
        rec.too_old = old->too_old;
        rec.bad_signature = old->bad_signature;
        rec.stale_epoch = old->stale_epoch;
        rec.not_active = old->not_active;
        win.highest = old->highest;
        for (unsigned i = 0; i < FRESH_BLOCKS; i++) {
            win.bitmap[i] = inv__get_be64(old->bitmap.data + 8u * i);
        }
    }
    rec.identity_epoch = d->identity_epoch;

    int res;
    if (d->state != WARDEN__V1__DEVICE_STATE__DEVICE_STATE_ACTIVE &&
        d->state != WARDEN__V1__DEVICE_STATE__DEVICE_STATE_QUARANTINED) {
        res = WARDEN__V1__TELEMETRY_RESULT__TELEMETRY_RESULT_NOT_ACTIVE;
        rec.not_active++;
    } else if (req->key_epoch != d->key_epoch) {
        /* Checked before the signature: an old epoch was signed by a key
         * we no longer hold, and the answer the device needs is "stale". */
        res = WARDEN__V1__TELEMETRY_RESULT__TELEMETRY_RESULT_STALE_EPOCH;
        rec.stale_epoch++;
    } else {
        int ok = 0;
        if ((rc = digest_ok(&req->payload, req->payload_digest.data, &ok, e)) !=
            0) {
            goto out_free;
        }
        uint8_t msg[FRESH_MSG_MAX];
        size_t mlen = fresh_message(req->device_id, req->key_epoch, req->counter,
                                    req->payload_digest.data, msg, sizeof msg);
        struct werr ve = {0};
        int vrc = ok ? devkey_verify((int)d->key_algorithm, d->public_key.data,
                                     d->public_key.len, msg, mlen,
                                     req->signature.data, req->signature.len,
                                     &ve)
                     : WERR_PERM;
        if (vrc == WERR_NOMEM) {
            rc = werr_set(e, WERR_NOMEM, "%s", ve.msg);
            goto out_free;
        }
        if (vrc != 0) {
            res = WARDEN__V1__TELEMETRY_RESULT__TELEMETRY_RESULT_BAD_SIGNATURE;
            rec.bad_signature++;
        } else {
#ifdef WARDEN_FAULTS
            fault_load(req->device_id, d->identity_epoch, &win);
#endif
            res = fresh_window_check(&win, req->counter);
#ifdef WARDEN_FAULTS
            fault_save(req->device_id, d->identity_epoch, &win);
#endif
            if (res == WARDEN__V1__TELEMETRY_RESULT__TELEMETRY_RESULT_ACCEPTED) {
                rec.accepted++;
            } else if (res == WARDEN__V1__TELEMETRY_RESULT__TELEMETRY_RESULT_REPLAY) {
                rec.replayed++;
            } else {
                rec.too_old++;
            }
        }
    }
    uint8_t bm[BITMAP_BYTES];
    for (unsigned i = 0; i < FRESH_BLOCKS; i++) {
        inv__put_be64(bm + 8u * i, win.bitmap[i]);
    }
    rec.highest = win.highest;
    rec.bitmap.data = bm;
    rec.bitmap.len = sizeof bm;
    uint8_t buf[BITMAP_BYTES + 128];
    size_t n = warden__v1__telemetry_window__get_packed_size(&rec);
    if (n > sizeof buf) {
        rc = werr_set(e, WERR_INTERNAL, "telemetry window packs to %zu", n);
        goto out_free;
    }
    warden__v1__telemetry_window__pack(&rec, buf);
    rc = store_put(t, inv->fresh, req->device_id, strlen(req->device_id), buf,
                   n, 0, e);
    out->result = (Warden__V1__TelemetryResult)res;
    out->highest_counter = win.highest;

out_free:
    if (old != NULL) {
        warden__v1__telemetry_window__free_unpacked(old, NULL);
    }
    inv_device_free(d);
    return rc;
}
