/* fsm_idem.c - idempotency records: (principal, key) -> the first result,
 * remembered for a window counted in log entries (issue 3, "Client
 * retries"). Layout in fsm_int.h.
 *
 * Window rule: a record written at index r replays for a command at index i
 * when i - r <= window. The rule is checked at lookup, so whether an
 * expired record has been deleted yet never changes a result; deletion
 * (wfsm__idem_prune) only bounds the table's size, and does at most
 * WFSM_IDEM_PRUNE_MAX deletions per apply so no single apply pays for a
 * burst of expiries. */
#include "fsm_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Record value: u64 BE index, then the packed CommandResult. The prefix
 * lets pruning check which write a record belongs to without decoding. */
#define REC_HDR 8u

size_t wfsm__idem_key(const char *principal, const char *key,
                      uint8_t out[WFSM_IDEM_KEY_MAX])
{
    size_t pn = strlen(principal);
    size_t kn = strlen(key);
    if (pn > PRINCIPAL_NAME_MAX || kn == 0 || kn > INV_IDEMPOTENCY_KEY_MAX) {
        return 0;
    }
    memcpy(out, principal, pn);
    out[pn] = 0x00; /* principal names never contain NUL (principal.h) */
    memcpy(out + pn + 1, key, kn);
    return pn + 1 + kn;
}

int wfsm__idem_lookup(struct wfsm *f, struct store_txn *t, uint64_t index,
                      const uint8_t *k, size_t klen, struct wfsm_result *res,
                      struct werr *e)
{
    struct store_val v;
    int rc = store_get(t, f->dbi_idem, k, klen, &v, e);
    if (rc == WERR_NOTFOUND) {
        return 0;
    }
    if (rc) {
        return rc;
    }
    if (v.len < REC_HDR) {
        return werr_set(e, WERR_CORRUPT, "fsm.idem record of %zu bytes",
                        v.len);
    }
    uint64_t at = wfsm__get_be64(v.data);
    if (at >= index || index - at > f->idem_window) {
        return 0; /* expired (or from the future: impossible, ignore) */
    }
    Warden__V1__CommandResult *cr = warden__v1__command_result__unpack(
        NULL, v.len - REC_HDR, (const uint8_t *)v.data + REC_HDR);
    if (cr == NULL) {
        return werr_set(e, WERR_CORRUPT,
                        "fsm.idem record from index %llu does not decode",
                        (unsigned long long)at);
    }
    res->code = cr->code;
    snprintf(res->msg, sizeof res->msg, "%s", cr->message);
    if (cr->response.len > 0) {
        res->resp = malloc(cr->response.len);
        if (res->resp == NULL) {
            warden__v1__command_result__free_unpacked(cr, NULL);
            return werr_set(e, WERR_NOMEM, "copying a replayed response");
        }
        memcpy(res->resp, cr->response.data, cr->response.len);
        res->resp_len = cr->response.len;
    }
    res->replayed = 1;
    warden__v1__command_result__free_unpacked(cr, NULL);
    return 1;
}

int wfsm__idem_record(struct wfsm *f, struct store_txn *t, uint64_t index,
                      const uint8_t *k, size_t klen,
                      const struct wfsm_result *res, struct werr *e)
{
    Warden__V1__CommandResult cr = WARDEN__V1__COMMAND_RESULT__INIT;
    cr.code = res->code;
    cr.message = (char *)res->msg;
    if (res->code == 0 && res->resp != NULL) {
        cr.response.data = res->resp;
        cr.response.len = res->resp_len;
    }
    cr.index = index;
    size_t n = REC_HDR + warden__v1__command_result__get_packed_size(&cr);
    uint8_t *b = malloc(n);
    if (b == NULL) {
        return werr_set(e, WERR_NOMEM, "fsm.idem record of %zu bytes", n);
    }
    wfsm__put_be64(b, index);
    warden__v1__command_result__pack(&cr, b + REC_HDR);
    /* Overwrites an expired record for the same key; its by-index entry
     * stays behind and pruning recognises it by the index prefix. */
    int rc = store_put(t, f->dbi_idem, k, klen, b, n, 0, e);
    free(b);
    if (rc) {
        return rc;
    }
    uint8_t ik[8];
    wfsm__put_be64(ik, index);
    return store_put(t, f->dbi_idem_idx, ik, sizeof ik, k, klen, 0, e);
}

int wfsm__idem_prune(struct wfsm *f, struct store_txn *t, uint64_t index,
                     struct werr *e)
{
    if (index <= f->idem_window) {
        return 0; /* nothing can have expired yet */
    }
    /* Records written before `horizon` can no longer replay. */
    uint64_t horizon = index - f->idem_window;
    if (horizon <= 1) {
        return 0; /* indexes start at 1 */
    }
    uint64_t idx[WFSM_IDEM_PRUNE_MAX];
    uint8_t keys[WFSM_IDEM_PRUNE_MAX][WFSM_IDEM_KEY_MAX];
    size_t klens[WFSM_IDEM_PRUNE_MAX];
    unsigned n = 0;

    /* Collect first, delete after: the store API has no delete-at-cursor,
     * and deleting under an open cursor is not something to rely on. */
    struct store_cursor *c;
    int rc = store_cursor_open(t, f->dbi_idem_idx, &c, e);
    if (rc) {
        return rc;
    }
    struct store_val k, v;
    rc = store_cursor_seek(c, NULL, 0, &k, &v, e);
    while (rc == 0 && n < WFSM_IDEM_PRUNE_MAX) {
        if (k.len != 8 || v.len == 0 || v.len > WFSM_IDEM_KEY_MAX) {
            rc = werr_set(e, WERR_CORRUPT,
                          "fsm.idem_by_index entry: key %zu, value %zu bytes",
                          k.len, v.len);
            break;
        }
        uint64_t at = wfsm__get_be64(k.data);
        if (at >= horizon) {
            break;
        }
        idx[n] = at;
        memcpy(keys[n], v.data, v.len);
        klens[n] = v.len;
        n++;
        rc = store_cursor_next(c, &k, &v, e);
    }
    store_cursor_close(c);
    if (rc != 0 && rc != WERR_NOTFOUND) {
        return rc;
    }

    for (unsigned i = 0; i < n; i++) {
        struct store_val rec;
        rc = store_get(t, f->dbi_idem, keys[i], klens[i], &rec, e);
        if (rc == 0 && rec.len >= REC_HDR &&
            wfsm__get_be64(rec.data) == idx[i]) {
            rc = store_del(t, f->dbi_idem, keys[i], klens[i], e);
        } else if (rc == WERR_NOTFOUND || rc == 0) {
            rc = 0; /* the key was rewritten later: keep the newer record */
        }
        if (rc) {
            return rc;
        }
        uint8_t ik[8];
        wfsm__put_be64(ik, idx[i]);
        rc = store_del(t, f->dbi_idem_idx, ik, sizeof ik, e);
        if (rc) {
            return rc;
        }
    }
    return 0;
}
