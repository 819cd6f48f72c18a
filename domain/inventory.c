/* inventory.c - the device inventory state machine (contract: inventory.h).
 *
 * Pure over a store_txn: no clock, no randomness, no network, no globals
 * that change between calls. The same request against the same store state
 * with the same dom_ctx writes the same bytes on every node, which is what a
 * replicated state machine needs (Raft §5.1, state machine safety). */
#include "inventory.h"

#include <stdlib.h>
#include <string.h>

#include "devkey.h"
#include "inv_int.h"

#define DB_DEVICES "inv.devices"
#define DB_META "inv.meta"
#define META_SCHEMA "schema"
#define TOKEN_PREFIX "d1."
#define TOKEN_PREFIX_LEN 3

_Static_assert((int)DEVKEY_ED25519 ==
                       (int)WARDEN__V1__KEY_ALGORITHM__KEY_ALGORITHM_ED25519 &&
                   (int)DEVKEY_ECDSA_P256 ==
                       (int)WARDEN__V1__KEY_ALGORITHM__KEY_ALGORITHM_ECDSA_P256,
               "devkey algorithm ids mirror the proto enum");


/* ---- validation ----------------------------------------------------------- */

static const char *nz(const char *s)
{
    return s ? s : "";
}

static int id_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' ||
           c == '-';
}

/* Principal-name charset (common/principal.h): gateway ids are names. */
static int name_char(unsigned char c)
{
    return id_char(c) && c != ':';
}

static int label_key_char(unsigned char c)
{
    return name_char(c) || c == '/';
}

/* Free text: no ASCII control characters (they break logs, tables and
 * terminal output); bytes >= 0x80 pass so UTF-8 model names work. */
static int text_char(unsigned char c)
{
    return c >= 0x20 && c != 0x7f;
}

/* Check s is min..max bytes long and every byte passes ok(). */
static int check_str(const char *field, const char *s, size_t min, size_t max,
                     int (*ok)(unsigned char), const char *charset,
                     struct werr *e)
{
    s = nz(s);
    size_t n = strnlen(s, max + 1);
    if (n < min) {
        return werr_set(e, WERR_INVALID, "%s is required", field);
    }
    if (n > max) {
        return werr_set(e, WERR_INVALID, "%s is longer than %zu bytes", field,
                        max);
    }
    for (size_t i = 0; i < n; i++) {
        if (!ok((unsigned char)s[i])) {
            return werr_set(e, WERR_INVALID,
                            "%s has a byte 0x%02x at offset %zu outside %s",
                            field, (unsigned char)s[i], i, charset);
        }
    }
    return 0;
}

#define ID_CHARSET "[A-Za-z0-9._:-]"
#define NAME_CHARSET "[A-Za-z0-9._-]"
#define LABEL_KEY_CHARSET "[A-Za-z0-9._/-]"
#define TEXT_CHARSET "printable characters"

int inv_device_id_check(const char *id, struct werr *e)
{
    return check_str("device_id", id, 1, INV_DEVICE_ID_MAX, id_char,
                     ID_CHARSET, e);
}

static int check_labels(Warden__V1__Label *const *labels, size_t n,
                        struct werr *e)
{
    if (n > INV_LABELS_MAX) {
        return werr_set(e, WERR_INVALID, "%zu labels, max %d", n,
                        INV_LABELS_MAX);
    }
    for (size_t i = 0; i < n; i++) {
        const Warden__V1__Label *l = labels[i];
        if (l == NULL) {
            return werr_set(e, WERR_INVALID, "labels[%zu] is null", i);
        }
        int rc = check_str("label key", l->key, 1, INV_LABEL_KEY_MAX,
                           label_key_char, LABEL_KEY_CHARSET, e);
        if (rc == 0) {
            rc = check_str("label value", l->value, 0, INV_LABEL_VALUE_MAX,
                           text_char, TEXT_CHARSET, e);
        }
        if (rc != 0) {
            return werr_wrap(e, "labels[%zu]", i);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(labels[j]->key, l->key) == 0) {
                return werr_set(e, WERR_INVALID,
                                "labels[%zu]: duplicate label key \"%s\"", i,
                                l->key);
            }
        }
    }
    return 0;
}

static int check_enroll(const Warden__V1__EnrollDeviceRequest *r,
                        struct werr *e)
{
    int rc;
    if ((rc = inv_device_id_check(r->device_id, e)) != 0) {
        return rc;
    }
    if ((rc = check_str("gateway_id", r->gateway_id, 1, INV_GATEWAY_MAX,
                        name_char, NAME_CHARSET, e)) != 0) {
        return rc;
    }
    if ((rc = check_str("hardware_model", r->hardware_model, 0, INV_MODEL_MAX,
                        text_char, TEXT_CHARSET, e)) != 0) {
        return rc;
    }
    if ((rc = check_str("firmware_version", r->firmware_version, 0,
                        INV_FIRMWARE_MAX, text_char, TEXT_CHARSET, e)) != 0) {
        return rc;
    }
    if (r->attestation_digest.len != INV_ATTESTATION_DIGEST_LEN) {
        return werr_set(e, WERR_INVALID,
                        "attestation_digest must be %d bytes (SHA-256), got %zu",
                        INV_ATTESTATION_DIGEST_LEN, r->attestation_digest.len);
    }
    if ((rc = check_labels(r->labels, r->n_labels, e)) != 0) {
        return rc;
    }
    if ((rc = check_str("idempotency_key", r->idempotency_key, 0,
                        INV_IDEMPOTENCY_KEY_MAX, text_char, TEXT_CHARSET,
                        e)) != 0) {
        return rc;
    }
    return 0;
}

/* ---- open/close ----------------------------------------------------------- */

int inv_open(struct inv **out, struct store *s, struct werr *e)
{
    int rc;
    struct inv *inv = calloc(1, sizeof *inv);
    if (inv == NULL) {
        return werr_set(e, WERR_NOMEM, "inv_open: allocating handle");
    }
    inv->s = s;
    if ((rc = store_dbi(s, DB_DEVICES, &inv->devices, e)) != 0 ||
        (rc = store_dbi(s, DB_META, &inv->meta, e)) != 0 ||
        (rc = store_dbi(s, "inv.nonces", &inv->nonces, e)) != 0 ||
        (rc = store_dbi(s, "inv.fresh", &inv->fresh, e)) != 0 ||
        (rc = store_dbi(s, "inv.counters", &inv->counters, e)) != 0 ||
        (rc = store_dbi(s, "ctl.keys", &inv->ctl_keys, e)) != 0 ||
        (rc = store_dbi(s, "ctl.seq", &inv->ctl_seq, e)) != 0) {
        goto err_free;
    }

    struct store_txn *t;
    if ((rc = store_txn_begin(s, 1, &t, e)) != 0) {
        goto err_free;
    }
    struct store_val v;
    rc = store_get(t, inv->meta, META_SCHEMA, strlen(META_SCHEMA), &v, e);
    if (rc == WERR_NOTFOUND) {
        uint8_t be[4] = {(uint8_t)(INV_SCHEMA_VERSION >> 24),
                         (uint8_t)(INV_SCHEMA_VERSION >> 16),
                         (uint8_t)(INV_SCHEMA_VERSION >> 8),
                         (uint8_t)INV_SCHEMA_VERSION};
        rc = store_put(t, inv->meta, META_SCHEMA, strlen(META_SCHEMA), be,
                       sizeof be, 0, e);
    } else if (rc == 0) {
        if (v.len != 4) {
            rc = werr_set(e, WERR_CORRUPT, "inventory schema record is %zu bytes",
                          v.len);
        } else {
            const uint8_t *p = v.data;
            uint32_t ver = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
                           (uint32_t)p[2] << 8 | p[3];
            if (ver != INV_SCHEMA_VERSION) {
                rc = werr_set(e, WERR_UNSUPPORTED,
                              "inventory schema version %u, this build supports %u",
                              ver, INV_SCHEMA_VERSION);
            }
        }
    }
    if (rc != 0) {
        store_txn_abort(t);
        goto err_free;
    }
    if ((rc = store_txn_commit(t, e)) != 0) {
        goto err_free;
    }
    *out = inv;
    return 0;

err_free:
    free(inv);
    return werr_wrap(e, "inv_open");
}

void inv_close(struct inv *inv)
{
    free(inv);
}

void inv_device_free(Warden__V1__Device *d)
{
    if (d != NULL) {
        warden__v1__device__free_unpacked(d, NULL);
    }
}

/* ---- enroll --------------------------------------------------------------- */

int inv_enroll(struct inv *inv, struct store_txn *t, const struct dom_ctx *ctx,
               const Warden__V1__EnrollDeviceRequest *req,
               Warden__V1__Device **out, struct werr *e)
{
    int rc;
    if (ctx == NULL || ctx->who == NULL || req == NULL) {
        return werr_set(e, WERR_INTERNAL, "inv_enroll: missing ctx or request");
    }
    if ((rc = check_enroll(req, e)) != 0) {
        return werr_wrap(e, "enroll");
    }
    struct devkey key;
    if ((rc = devkey_parse((int)req->key_algorithm, req->public_key.data,
                           req->public_key.len, &key, e)) != 0) {
        return werr_wrap(e, "enroll %s: public_key", req->device_id);
    }

    const char *id = req->device_id;
    size_t idlen = strlen(id);
    struct store_val old;
    rc = store_get(t, inv->devices, id, idlen, &old, e);
    if (rc == 0) {
        return werr_set(e, WERR_EXISTS, "device %s is already enrolled", id);
    }
    if (rc != WERR_NOTFOUND) {
        return werr_wrap(e, "enroll %s", id);
    }

    /* The record borrows the request's strings and labels; it only lives
     * until it is packed below. */
    Warden__V1__Device d = WARDEN__V1__DEVICE__INIT;
    d.device_id = (char *)id;
    d.key_algorithm = req->key_algorithm;
    d.public_key.data = key.canon;
    d.public_key.len = key.canon_len;
    d.key_fingerprint.data = key.fingerprint;
    d.key_fingerprint.len = sizeof key.fingerprint;
    d.key_epoch = 1;
    d.attestation_digest = req->attestation_digest;
    d.hardware_model = (char *)nz(req->hardware_model);
    d.firmware_version = (char *)nz(req->firmware_version);
    d.n_labels = req->n_labels;
    d.labels = req->labels;
    d.gateway_id = req->gateway_id;
    d.state = WARDEN__V1__DEVICE_STATE__DEVICE_STATE_PROVISIONED;
    d.identity_epoch = 1;
    d.created_index = ctx->index;
    d.updated_index = ctx->index;
    d.created_time_ms = ctx->time_ms;
    d.updated_time_ms = ctx->time_ms;
    d.enrolled_by = (char *)ctx->who->name;

    size_t len = warden__v1__device__get_packed_size(&d);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) {
        return werr_set(e, WERR_NOMEM, "enroll %s: %zu-byte record", id, len);
    }
    warden__v1__device__pack(&d, buf);
    rc = store_put(t, inv->devices, id, idlen, buf, len, STORE_NOOVERWRITE, e);
    if (rc != 0) {
        free(buf);
        return werr_wrap(e, "enroll %s", id);
    }
    if (out != NULL) {
        *out = warden__v1__device__unpack(NULL, len, buf);
        if (*out == NULL) {
            free(buf);
            return werr_set(e, WERR_NOMEM, "enroll %s: copying result", id);
        }
    }
    free(buf);
    return 0;
}

/* ---- labels (issue 7) ----------------------------------------------------- */

int inv_update_labels(struct inv *inv, struct store_txn *t,
                      const struct dom_ctx *ctx,
                      const Warden__V1__UpdateDeviceLabelsRequest *req,
                      Warden__V1__Device **out, uint64_t *prev_index,
                      struct werr *e)
{
    int rc;
    if (ctx == NULL || ctx->who == NULL || req == NULL) {
        return werr_set(e, WERR_INTERNAL,
                        "inv_update_labels: missing ctx or request");
    }
    /* Role before existence: an unauthorised caller learns nothing about
     * which ids exist. */
    if ((ctx->who->role & (WROLE_ADMIN | WROLE_OPERATOR)) == 0) {
        return werr_set(e, WERR_PERM,
                        "%s may not update device labels (admin, operator)",
                        ctx->who->name);
    }
    if ((rc = inv_device_id_check(req->device_id, e)) != 0 ||
        (rc = check_labels(req->labels, req->n_labels, e)) != 0 ||
        (rc = check_str("idempotency_key", req->idempotency_key, 0,
                        INV_IDEMPOTENCY_KEY_MAX, text_char, TEXT_CHARSET,
                        e)) != 0) {
        return werr_wrap(e, "update labels");
    }
    Warden__V1__Device *d;
    if ((rc = inv_get(inv, t, req->device_id, &d, e)) != 0) {
        return rc;
    }
    uint64_t have = d->updated_index;
    if (req->expected_updated_index != 0 &&
        req->expected_updated_index != have) {
        inv_device_free(d);
        return werr_set(e, WERR_PRECOND, "version mismatch: have %llu, expected %llu",
                        (unsigned long long)have,
                        (unsigned long long)req->expected_updated_index);
    }
    /* Pack the record with the request's labels borrowed in place of its
     * own, then put the owned ones back so inv_device_free() frees them. */
    size_t n_old = d->n_labels;
    Warden__V1__Label **old = d->labels;
    d->n_labels = req->n_labels;
    d->labels = req->labels;
    d->updated_index = ctx->index;
    d->updated_time_ms = ctx->time_ms;
    size_t len = warden__v1__device__get_packed_size(d);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf != NULL) {
        warden__v1__device__pack(d, buf);
    }
    d->n_labels = n_old;
    d->labels = old;
    inv_device_free(d);
    if (buf == NULL) {
        return werr_set(e, WERR_NOMEM, "update labels %s: %zu-byte record",
                        req->device_id, len);
    }
    rc = store_put(t, inv->devices, req->device_id, strlen(req->device_id),
                   buf, len, 0, e);
    if (rc == 0 && out != NULL) {
        *out = warden__v1__device__unpack(NULL, len, buf);
        if (*out == NULL) {
            rc = werr_set(e, WERR_NOMEM, "update labels %s: copying result",
                          req->device_id);
        }
    }
    free(buf);
    if (rc != 0) {
        return werr_wrap(e, "update labels %s", req->device_id);
    }
    if (prev_index != NULL) {
        *prev_index = have;
    }
    return 0;
}

/* ---- get ------------------------------------------------------------------ */

/* Decode a stored record and check it is the one its key names. */
static int decode(const struct store_val *k, const struct store_val *v,
                  Warden__V1__Device **out, struct werr *e)
{
    Warden__V1__Device *d = warden__v1__device__unpack(NULL, v->len, v->data);
    if (d == NULL) {
        return werr_set(e, WERR_CORRUPT,
                        "device record %.*s (%zu bytes) does not decode",
                        (int)(k->len > INV_DEVICE_ID_MAX ? INV_DEVICE_ID_MAX
                                                         : k->len),
                        (const char *)k->data, v->len);
    }
    if (strlen(d->device_id) != k->len ||
        memcmp(d->device_id, k->data, k->len) != 0) {
        warden__v1__device__free_unpacked(d, NULL);
        return werr_set(e, WERR_CORRUPT,
                        "device record under key %.*s names another device",
                        (int)(k->len > INV_DEVICE_ID_MAX ? INV_DEVICE_ID_MAX
                                                         : k->len),
                        (const char *)k->data);
    }
    *out = d;
    return 0;
}

int inv_get(struct inv *inv, struct store_txn *t, const char *device_id,
            Warden__V1__Device **out, struct werr *e)
{
    int rc = inv_device_id_check(device_id, e);
    if (rc != 0) {
        return rc;
    }
    struct store_val k = {device_id, strlen(device_id)}, v;
    rc = store_get(t, inv->devices, k.data, k.len, &v, e);
    if (rc == WERR_NOTFOUND) {
        return werr_set(e, WERR_NOTFOUND, "device %s not found", device_id);
    }
    if (rc != 0) {
        return werr_wrap(e, "get %s", device_id);
    }
    return decode(&k, &v, out, e);
}

/* ---- page tokens: "d1." + base64url(key) (RFC 4648 §5, no padding) -------- */

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int inv_page_token_encode(const char *key, size_t klen, char *out, size_t cap)
{
    size_t need = TOKEN_PREFIX_LEN + (klen * 4 + 2) / 3 + 1;
    if (cap < need) {
        return WERR_LIMIT;
    }
    memcpy(out, TOKEN_PREFIX, TOKEN_PREFIX_LEN);
    char *o = out + TOKEN_PREFIX_LEN;
    const unsigned char *p = (const unsigned char *)key;
    size_t i = 0;
    for (; i + 3 <= klen; i += 3) {
        uint32_t w = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = b64url[(w >> 18) & 63];
        *o++ = b64url[(w >> 12) & 63];
        *o++ = b64url[(w >> 6) & 63];
        *o++ = b64url[w & 63];
    }
    if (klen - i == 1) {
        uint32_t w = (uint32_t)p[i] << 16;
        *o++ = b64url[(w >> 18) & 63];
        *o++ = b64url[(w >> 12) & 63];
    } else if (klen - i == 2) {
        uint32_t w = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *o++ = b64url[(w >> 18) & 63];
        *o++ = b64url[(w >> 12) & 63];
        *o++ = b64url[(w >> 6) & 63];
    }
    *o = '\0';
    return 0;
}

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '-') {
        return 62;
    }
    if (c == '_') {
        return 63;
    }
    return -1;
}

int inv_page_token_decode(const char *tok, char *id, size_t cap,
                          struct werr *e)
{
    size_t n = strnlen(tok, INV_PAGE_TOKEN_MAX + 1);
    if (n > INV_PAGE_TOKEN_MAX || n <= TOKEN_PREFIX_LEN ||
        memcmp(tok, TOKEN_PREFIX, TOKEN_PREFIX_LEN) != 0) {
        return werr_set(e, WERR_INVALID, "page_token is malformed");
    }
    const char *s = tok + TOKEN_PREFIX_LEN;
    n -= TOKEN_PREFIX_LEN;
    if (n % 4 == 1) {
        return werr_set(e, WERR_INVALID, "page_token is malformed (length)");
    }
    size_t out = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64val((unsigned char)s[i]);
        if (v < 0) {
            return werr_set(e, WERR_INVALID,
                            "page_token is malformed (character)");
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (out + 1 >= cap) {
                return werr_set(e, WERR_INVALID, "page_token is too long");
            }
            id[out++] = (char)((acc >> bits) & 0xff);
        }
    }
    /* Canonical encoding only: leftover bits must be zero, so each key has
     * exactly one token. */
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
        return werr_set(e, WERR_INVALID, "page_token is malformed (padding bits)");
    }
    id[out] = '\0';
    if (strlen(id) != out || inv_device_id_check(id, NULL) != 0) {
        return werr_set(e, WERR_INVALID,
                        "page_token does not name a device position");
    }
    return 0;
}

/* ---- list ----------------------------------------------------------------- */

struct filter {
    int state; /* 0 = any */
    const char *gateway;
    const char *firmware;
    const char *label_key; /* NULL = any */
    const char *label_value; /* "" = any value */
};

static int check_filter(const Warden__V1__ListDevicesRequest *r,
                        struct filter *f, struct werr *e)
{
    int rc;
    if (r->state < WARDEN__V1__DEVICE_STATE__DEVICE_STATE_UNSPECIFIED ||
        r->state > WARDEN__V1__DEVICE_STATE__DEVICE_STATE_REVOKED) {
        return werr_set(e, WERR_INVALID, "state filter %d is not a DeviceState",
                        (int)r->state);
    }
    f->state = (int)r->state;
    f->gateway = nz(r->gateway_id);
    f->firmware = nz(r->firmware_version);
    if (f->gateway[0] && (rc = check_str("gateway_id filter", f->gateway, 1,
                                         INV_GATEWAY_MAX, name_char,
                                         NAME_CHARSET, e)) != 0) {
        return rc;
    }
    if ((rc = check_str("firmware_version filter", f->firmware, 0,
                        INV_FIRMWARE_MAX, text_char, TEXT_CHARSET, e)) != 0) {
        return rc;
    }
    f->label_key = NULL;
    f->label_value = "";
    if (r->label != NULL) {
        if ((rc = check_str("label filter key", r->label->key, 1,
                            INV_LABEL_KEY_MAX, label_key_char,
                            LABEL_KEY_CHARSET, e)) != 0 ||
            (rc = check_str("label filter value", r->label->value, 0,
                            INV_LABEL_VALUE_MAX, text_char, TEXT_CHARSET,
                            e)) != 0) {
            return rc;
        }
        f->label_key = r->label->key;
        f->label_value = nz(r->label->value);
    }
    return 0;
}

static int matches(const struct filter *f, const Warden__V1__Device *d)
{
    if (f->state && (int)d->state != f->state) {
        return 0;
    }
    if (f->gateway[0] && strcmp(f->gateway, nz(d->gateway_id)) != 0) {
        return 0;
    }
    if (f->firmware[0] && strcmp(f->firmware, nz(d->firmware_version)) != 0) {
        return 0;
    }
    if (f->label_key != NULL) {
        for (size_t i = 0; i < d->n_labels; i++) {
            const Warden__V1__Label *l = d->labels[i];
            if (strcmp(nz(l->key), f->label_key) == 0) {
                return f->label_value[0] == '\0' ||
                       strcmp(nz(l->value), f->label_value) == 0;
            }
        }
        return 0;
    }
    return 1;
}

void inv_page_free(struct inv_page *page)
{
    for (size_t i = 0; i < page->n; i++) {
        inv_device_free(page->devices[i]);
    }
    free(page->devices);
    memset(page, 0, sizeof *page);
}

int inv_list(struct inv *inv, struct store_txn *t,
             const Warden__V1__ListDevicesRequest *req, struct inv_page *page,
             struct werr *e)
{
    int rc;
    memset(page, 0, sizeof *page);
    size_t page_size = req->page_size ? req->page_size : INV_PAGE_SIZE_DEFAULT;
    if (req->page_size > INV_PAGE_SIZE_MAX) {
        return werr_set(e, WERR_INVALID, "page_size %u exceeds the maximum %d",
                        req->page_size, INV_PAGE_SIZE_MAX);
    }
    struct filter f = {0};
    if ((rc = check_filter(req, &f, e)) != 0) {
        return rc;
    }
    char start[INV_DEVICE_ID_MAX + 1] = "";
    const char *tok = nz(req->page_token);
    if (tok[0] && (rc = inv_page_token_decode(tok, start, sizeof start, e)) != 0) {
        return rc;
    }

    page->devices = calloc(page_size, sizeof *page->devices);
    if (page->devices == NULL) {
        return werr_set(e, WERR_NOMEM, "list: page of %zu", page_size);
    }
    struct store_cursor *c;
    if ((rc = store_cursor_open(t, inv->devices, &c, e)) != 0) {
        goto err_free_page;
    }

    size_t startlen = strlen(start);
    struct store_val k, v;
    rc = store_cursor_seek(c, start, startlen, &k, &v, e);
    /* The token names the last key already examined: resume after it. */
    if (rc == 0 && startlen && k.len == startlen &&
        memcmp(k.data, start, startlen) == 0) {
        rc = store_cursor_next(c, &k, &v, e);
    }

    char last[INV_DEVICE_ID_MAX + 1];
    size_t lastlen = 0;
    size_t bytes = 0;
    int more = 0;
    while (rc == 0) {
        if (page->n == page_size || page->scanned == INV_LIST_SCAN_MAX) {
            more = 1; /* a record exists past the last one examined */
            break;
        }
        if (k.len == 0 || k.len > INV_DEVICE_ID_MAX) {
            rc = werr_set(e, WERR_CORRUPT, "device key of %zu bytes", k.len);
            goto err_close_cursor;
        }
        Warden__V1__Device *d;
        if ((rc = decode(&k, &v, &d, e)) != 0) {
            goto err_close_cursor;
        }
        int keep = matches(&f, d);
        if (keep && page->n > 0 && bytes + v.len > INV_LIST_BYTES_MAX) {
            inv_device_free(d);
            more = 1; /* resume with this record next time */
            break;
        }
        page->scanned++;
        memcpy(last, k.data, k.len);
        lastlen = k.len;
        if (keep) {
            page->devices[page->n++] = d;
            bytes += v.len;
        } else {
            inv_device_free(d);
        }
        rc = store_cursor_next(c, &k, &v, e);
    }
    if (rc != 0 && rc != WERR_NOTFOUND) {
        goto err_close_cursor;
    }
    store_cursor_close(c);
    if (more && lastlen > 0) {
        if (inv_page_token_encode(last, lastlen, page->next_token,
                                  sizeof page->next_token) != 0) {
            rc = werr_set(e, WERR_INTERNAL, "list: page token overflow");
            inv_page_free(page);
            return rc;
        }
    }
    return 0;

err_close_cursor:
    store_cursor_close(c);
err_free_page:
    inv_page_free(page);
    return werr_wrap(e, "list");
}

/* ---- internals shared with lifecycle.c, freshness.c, ctlsign.c ----------- */

void inv__put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xffu);
        v >>= 8;
    }
}

uint64_t inv__get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

int inv__check_text(const char *field, const char *s, size_t max,
                    struct werr *e)
{
    return check_str(field, s, 0, max, text_char, TEXT_CHARSET, e);
}

int inv__check_gateway(const char *field, const char *s, struct werr *e)
{
    return check_str(field, s, 1, INV_GATEWAY_MAX, name_char, NAME_CHARSET, e);
}

int inv__load(struct inv *inv, struct store_txn *t, const char *id,
              Warden__V1__Device **out, struct werr *e)
{
    return inv_get(inv, t, id, out, e);
}

int inv__store(struct inv *inv, struct store_txn *t,
               const Warden__V1__Device *d, struct werr *e)
{
    size_t len = warden__v1__device__get_packed_size(d);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) {
        return werr_set(e, WERR_NOMEM, "device %s: %zu-byte record",
                        d->device_id, len);
    }
    warden__v1__device__pack(d, buf);
    int rc = store_put(t, inv->devices, d->device_id, strlen(d->device_id),
                       buf, len, 0, e);
    free(buf);
    return rc ? werr_wrap(e, "store device %s", d->device_id) : 0;
}

static int dup_bytes(ProtobufCBinaryData *b, const uint8_t *d, size_t n,
                     struct werr *e)
{
    uint8_t *p = malloc(n ? n : 1);
    if (p == NULL) {
        return werr_set(e, WERR_NOMEM, "copying %zu bytes", n);
    }
    if (n > 0) {
        memcpy(p, d, n);
    }
    free(b->data);
    b->data = p;
    b->len = n;
    return 0;
}

int inv__set_key(Warden__V1__Device *d, int alg, const uint8_t *canon,
                 size_t canon_len, const uint8_t *fp, size_t fp_len,
                 struct werr *e)
{
    int rc = dup_bytes(&d->public_key, canon, canon_len, e);
    if (rc == 0) {
        rc = dup_bytes(&d->key_fingerprint, fp, fp_len, e);
    }
    if (rc == 0) {
        d->key_algorithm = (Warden__V1__KeyAlgorithm)alg;
    }
    return rc;
}

int inv__set_str(char **field, const char *v, struct werr *e)
{
    char *p = strdup(v ? v : "");
    if (p == NULL) {
        return werr_set(e, WERR_NOMEM, "copying a string");
    }
    /* protobuf-c points unset strings at a shared empty default. */
    if (*field != NULL && *field != protobuf_c_empty_string) {
        free(*field);
    }
    *field = p;
    return 0;
}

int inv__counter_get(struct inv *inv, struct store_txn *t, const void *name,
                     size_t nlen, uint64_t *out, struct werr *e)
{
    struct store_val v;
    int rc = store_get(t, inv->counters, name, nlen, &v, e);
    if (rc == WERR_NOTFOUND) {
        *out = 0;
        return 0;
    }
    if (rc) {
        return rc;
    }
    if (v.len != 8) {
        return werr_set(e, WERR_CORRUPT, "counter record of %zu bytes", v.len);
    }
    *out = inv__get_be64(v.data);
    return 0;
}

int inv__counter_add(struct inv *inv, struct store_txn *t, const void *name,
                     size_t nlen, uint64_t delta, struct werr *e)
{
    uint64_t n = 0;
    int rc = inv__counter_get(inv, t, name, nlen, &n, e);
    if (rc) {
        return rc;
    }
    uint8_t b[8];
    inv__put_be64(b, n + delta);
    return store_put(t, inv->counters, name, nlen, b, sizeof b, 0, e);
}
