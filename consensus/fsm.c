/* fsm.c - open, apply and encode for warden's replicated state machine
 * (contract: fsm.h; layout: fsm_int.h; idempotency: fsm_idem.c; snapshot
 * and restore: fsm_snap.c).
 *
 * Apply, per committed entry (issue 3, "Commands and the state machine"):
 *   1. index <= applied index: skipped, nothing read or written (Raft
 *      re-applies entries after the last snapshot on every restart).
 *   2. Decode. An entry that does not decode is a result (WERR_INVALID),
 *      not an error: it was committed, every node sees the same bytes and
 *      reaches the same verdict, and refusing it would wedge the cluster on
 *      that index forever. The applied index advances past it.
 *   3. One write txn: cluster time = max(previous, proposed); idempotency
 *      lookup; the op; the idempotency record; bounded pruning; the applied
 *      index and cluster time. One commit, one fsync: effects and index land
 *      together or not at all (docs/storage.md, "Crash semantics").
 *   4. If the op fails as a command (validation, ALREADY_EXISTS, ...), that
 *      txn is aborted - whatever the op wrote is gone - and a second txn
 *      records only the index, the time and the failed result. A crash
 *      between the two leaves the index unchanged, so the entry is applied
 *      again on restart and fails the same way: still exactly once.
 *   Batched (fsm.h, "batches"): the txns of steps 3 and 4 are children of
 *   the batch txn instead of top-level txns. Their commit merges into the
 *   batch without I/O; the batch's one commit makes them durable together.
 *   A crash before it loses all of them, index included, and raft re-applies
 *   them: the same argument as step 4, over more entries.
 * Store failures (I/O, full, corrupt, out of memory) are returned
 * negative: they depend on this node, not on the log, so recording them as
 * the command's result would make nodes diverge. The node must stop.
 *
 * Nothing here reads a clock, a random source or the network: time and the
 * index come from the entry (dom.h). */
#include "fsm_int.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "../common/log.h"
#include "../domain/access.h"
#include "../domain/ctlsign.h"
#include "../domain/freshness.h"
#include "../domain/lifecycle.h"
#include "../domain/rollout.h"

/* fsm.meta keys. */
#define META_SCHEMA "schema"
#define META_APPLIED "applied_index"
#define META_TIME "cluster_time"

/* Length prefix of an entry (fsm.h). */
#define ENTRY_HDR 4u

void wfsm__put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xffu);
        v >>= 8;
    }
}

uint64_t wfsm__get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

void wfsm_result_free(struct wfsm_result *r)
{
    if (r == NULL) {
        return;
    }
    free(r->resp);
    r->resp = NULL;
    r->resp_len = 0;
}

/* ---- state: store, dbs, inventory, meta ---------------------------------*/

static int meta_get_u64(struct wfsm *f, struct store_txn *t, const char *key,
                        uint64_t *out, struct werr *e)
{
    struct store_val v;
    int rc = store_get(t, f->dbi_meta, key, strlen(key), &v, e);
    if (rc == WERR_NOTFOUND) {
        *out = 0;
        return 0;
    }
    if (rc) {
        return rc;
    }
    if (v.len != 8) {
        return werr_set(e, WERR_CORRUPT, "fsm.meta %s: %zu bytes, want 8",
                        key, v.len);
    }
    *out = wfsm__get_be64(v.data);
    return 0;
}

static int meta_put_u64(struct wfsm *f, struct store_txn *t, const char *key,
                        uint64_t v, struct werr *e)
{
    uint8_t b[8];
    wfsm__put_be64(b, v);
    return store_put(t, f->dbi_meta, key, strlen(key), b, sizeof b, 0, e);
}

/* Write the schema version on first use; refuse one we do not know, rather
 * than misread a newer build's records. */
static int meta_schema(struct wfsm *f, struct werr *e)
{
    struct store_txn *t;
    int rc = store_txn_begin(f->s, 1, &t, e);
    if (rc) {
        return rc;
    }
    struct store_val v;
    rc = store_get(t, f->dbi_meta, META_SCHEMA, strlen(META_SCHEMA), &v, e);
    if (rc == WERR_NOTFOUND) {
        uint8_t b[4];
        put_be32(b, WFSM_SCHEMA_VERSION);
        rc = store_put(t, f->dbi_meta, META_SCHEMA, strlen(META_SCHEMA), b,
                       sizeof b, 0, e);
        if (rc) {
            store_txn_abort(t);
            return rc;
        }
        return store_txn_commit(t, e);
    }
    if (rc) {
        store_txn_abort(t);
        return rc;
    }
    if (v.len != 4) {
        store_txn_abort(t);
        return werr_set(e, WERR_CORRUPT, "fsm.meta schema: %zu bytes", v.len);
    }
    uint32_t ver = get_be32(v.data);
    store_txn_abort(t);
    if (ver != WFSM_SCHEMA_VERSION) {
        return werr_set(e, WERR_UNSUPPORTED,
                        "fsm schema version %u, this build knows %u", ver,
                        WFSM_SCHEMA_VERSION);
    }
    return 0;
}

static int meta_load(struct wfsm *f, struct werr *e)
{
    struct store_txn *t;
    int rc = store_txn_begin(f->s, 0, &t, e);
    if (rc) {
        return rc;
    }
    rc = meta_get_u64(f, t, META_APPLIED, &f->applied, e);
    if (rc == 0) {
        rc = meta_get_u64(f, t, META_TIME, &f->ctime, e);
    }
    store_txn_abort(t);
    f->durable_applied = f->applied;
    f->durable_ctime = f->ctime;
    return rc;
}

int wfsm__state_open(struct wfsm *f, struct werr *e)
{
    /* Lazy meta sync: the Raft log, fsynced on a majority before any
     * entry commits, is the durability point; a commit a crash undoes is
     * re-applied from it (docs/storage.md, "Durability"). */
    struct store_config cfg = {.path = f->dir, .map_size = f->map_size,
                               .flags = STORE_LAZY_META};
    int rc = store_open(&f->s, &cfg, e);
    if (rc) {
        f->s = NULL;
        return rc;
    }
    if ((rc = store_dbi(f->s, "fsm.meta", &f->dbi_meta, e)) != 0 ||
        (rc = store_dbi(f->s, "fsm.idem", &f->dbi_idem, e)) != 0 ||
        (rc = store_dbi(f->s, "fsm.idem_by_index", &f->dbi_idem_idx, e)) != 0 ||
        (rc = meta_schema(f, e)) != 0 || (rc = meta_load(f, e)) != 0 ||
        (rc = acc_dbs_open(f->s, e)) != 0) { /* issue 5 (domain/access.h) */
        goto err_close_store;
    }
    rc = inv_open(&f->inv, f->s, e);
    if (rc) {
        goto err_close_store;
    }
    rc = audit_open(&f->audit, f->s, e);
    if (rc) {
        inv_close(f->inv);
        goto err_close_store;
    }
    rc = ro_open(&f->ro, f->s, f->inv, f->audit, e);
    if (rc) {
        audit_close(f->audit);
        inv_close(f->inv);
        goto err_close_store;
    }
    return 0;

err_close_store:
    store_close(f->s);
    f->s = NULL;
    f->inv = NULL;
    f->audit = NULL;
    return rc;
}

void wfsm__state_close(struct wfsm *f)
{
    ro_close(f->ro);
    f->ro = NULL;
    audit_close(f->audit);
    inv_close(f->inv);
    store_close(f->s);
    f->audit = NULL;
    f->inv = NULL;
    f->s = NULL;
}

int wfsm_open(struct wfsm **out, const char *db_dir, size_t map_size,
              struct werr *e)
{
    if (db_dir == NULL || db_dir[0] == '\0') {
        return werr_set(e, WERR_INVALID, "wfsm_open: no db_dir");
    }
    size_t n = strlen(db_dir);
    if (n + WFSM_SUFFIX_MAX + sizeof "/data.mdb" > WFSM_PATH_MAX) {
        return werr_set(e, WERR_INVALID, "wfsm_open: db_dir longer than %d",
                        (int)(WFSM_PATH_MAX - WFSM_SUFFIX_MAX - 10));
    }
    struct wfsm *f = calloc(1, sizeof *f);
    if (f == NULL) {
        return werr_set(e, WERR_NOMEM, "wfsm_open: allocating");
    }
    memcpy(f->dir, db_dir, n + 1);
    /* Strip trailing slashes: "<db_dir>.old" must be a sibling, not a
     * child. */
    while (n > 1 && f->dir[n - 1] == '/') {
        f->dir[--n] = '\0';
    }
    const char *slash = strrchr(f->dir, '/');
    if (slash == NULL) {
        strcpy(f->parent, ".");
    } else if (slash == f->dir) {
        strcpy(f->parent, "/");
    } else {
        memcpy(f->parent, f->dir, (size_t)(slash - f->dir));
        f->parent[slash - f->dir] = '\0';
    }
    f->map_size = map_size ? map_size : STORE_MAP_SIZE_DEFAULT;
    f->idem_window = WFSM_IDEM_WINDOW;

    int rc = wfsm__recover(f, e);
    if (rc == 0) {
        rc = wfsm__state_open(f, e);
    }
    if (rc) {
        free(f);
        return werr_wrap(e, "wfsm_open %s", db_dir);
    }
    *out = f;
    return 0;
}

void wfsm_close(struct wfsm *f)
{
    if (f == NULL) {
        return;
    }
    /* An open batch is dropped, as in a crash (fsm.h): the caller that
     * wants it kept commits first. LMDB must not be closed with the write
     * txn still open. */
    wfsm_batch_abort(f);
    wfsm__state_close(f);
    free(f);
}

struct store *wfsm_store(struct wfsm *f)
{
    return f->s;
}

struct inv *wfsm_inv(struct wfsm *f)
{
    return f->inv;
}

struct audit *wfsm_audit(struct wfsm *f)
{
    return f->audit;
}

uint64_t wfsm_applied_index(const struct wfsm *f)
{
    return f->applied;
}

uint64_t wfsm_cluster_time(const struct wfsm *f)
{
    return f->ctime;
}

void wfsm_set_idem_window(struct wfsm *f, uint64_t entries)
{
    f->idem_window = entries ? entries : 1;
}

uint64_t wfsm_idem_window(const struct wfsm *f)
{
    return f->idem_window;
}

void wfsm_test_fail_op_at(struct wfsm *f, uint64_t index)
{
    f->fail_op_at = index;
}

/* ---- batches (fsm.h) ----------------------------------------------------*/

int wfsm_batch_begin(struct wfsm *f, struct werr *e)
{
    if (f->s == NULL) {
        return werr_set(e, WERR_PRECOND,
                        "wfsm_batch_begin: fsm unusable after a failed "
                        "restore");
    }
    if (f->batch != NULL) {
        return werr_set(e, WERR_PRECOND, "wfsm_batch_begin: already open");
    }
    int rc = store_txn_begin(f->s, 1, &f->batch, e);
    if (rc) {
        f->batch = NULL;
        return werr_wrap(e, "wfsm_batch_begin");
    }
    f->batch_entries = 0;
    return 0;
}

int wfsm_batch_commit(struct wfsm *f, struct werr *e)
{
    if (f->batch == NULL) {
        return 0;
    }
    struct store_txn *t = f->batch;
    uint64_t n = f->batch_entries;
    f->batch = NULL;
    f->batch_entries = 0;
    int rc = store_txn_commit(t, e); /* frees t whatever it returns */
    if (rc) {
        f->applied = f->durable_applied;
        f->ctime = f->durable_ctime;
        return werr_wrap(e, "wfsm_batch_commit (%llu entries)",
                         (unsigned long long)n);
    }
    f->durable_applied = f->applied;
    f->durable_ctime = f->ctime;
    return 0;
}

void wfsm_batch_abort(struct wfsm *f)
{
    if (f->batch == NULL) {
        return;
    }
    store_txn_abort(f->batch);
    f->batch = NULL;
    f->batch_entries = 0;
    f->applied = f->durable_applied;
    f->ctime = f->durable_ctime;
}

int wfsm_batch_active(const struct wfsm *f)
{
    return f->batch != NULL;
}

uint64_t wfsm_batch_entries(const struct wfsm *f)
{
    return f->batch != NULL ? f->batch_entries : 0;
}

uint64_t wfsm_store_bytes(struct wfsm *f)
{
    return f->s != NULL ? store_used_bytes(f->s) : 0;
}

uint64_t wfsm_committed_index(const struct wfsm *f)
{
    return f->durable_applied;
}

uint64_t wfsm_committed_cluster_time(const struct wfsm *f)
{
    return f->durable_ctime;
}

/* ---- encode / decode ----------------------------------------------------*/

int wfsm_cmd_encode(const Warden__V1__Command *cmd, uint8_t **buf,
                    size_t *len, struct werr *e)
{
    if (cmd == NULL) {
        return werr_set(e, WERR_INVALID, "wfsm_cmd_encode: no command");
    }
    size_t n = warden__v1__command__get_packed_size(cmd);
    if (n > WFSM_CMD_MAX - ENTRY_HDR) {
        return werr_set(e, WERR_LIMIT,
                        "wfsm_cmd_encode: command is %zu bytes, limit %zu", n,
                        WFSM_CMD_MAX - ENTRY_HDR);
    }
    size_t total = (ENTRY_HDR + n + WFSM_ENTRY_ALIGN - 1) /
                   WFSM_ENTRY_ALIGN * WFSM_ENTRY_ALIGN;
    uint8_t *b = calloc(1, total); /* calloc: the padding is zero */
    if (b == NULL) {
        return werr_set(e, WERR_NOMEM, "wfsm_cmd_encode: %zu bytes", total);
    }
    put_be32(b, (uint32_t)n);
    warden__v1__command__pack(cmd, b + ENTRY_HDR);
    *buf = b;
    *len = total;
    return 0;
}

/* protobuf-c returns NULL both for bad input and for a failed allocation.
 * The first is the command's verdict (the same on every node); the second
 * is this node's problem and must not become a result. This allocator
 * tells them apart. */
struct track_alloc {
    ProtobufCAllocator a;
    int failed;
};

static void *track_alloc_cb(void *data, size_t n)
{
    void *p = malloc(n);
    if (p == NULL) {
        ((struct track_alloc *)data)->failed = 1;
    }
    return p;
}

static void track_free_cb(void *data, void *p)
{
    (void)data;
    free(p);
}

static void track_init(struct track_alloc *ta)
{
    ta->a.alloc = track_alloc_cb;
    ta->a.free = track_free_cb;
    ta->a.allocator_data = ta;
    ta->failed = 0;
}

/* Decode an entry. Returns 0 with *out set, WERR_INVALID with `why` set
 * (malformed: a result), or a negative node error in e. */
static int cmd_decode(const uint8_t *b, size_t len, struct track_alloc *ta,
                      Warden__V1__Command **out, char *why, size_t why_cap,
                      struct werr *e)
{
    *out = NULL;
    if (b == NULL || len < ENTRY_HDR) {
        snprintf(why, why_cap, "entry of %zu bytes has no length prefix", len);
        return WERR_INVALID;
    }
    if (len > WFSM_CMD_MAX) {
        snprintf(why, why_cap, "entry of %zu bytes exceeds WFSM_CMD_MAX %zu",
                 len, WFSM_CMD_MAX);
        return WERR_INVALID;
    }
    size_t n = get_be32(b);
    size_t want = (ENTRY_HDR + n + WFSM_ENTRY_ALIGN - 1) / WFSM_ENTRY_ALIGN *
                  WFSM_ENTRY_ALIGN;
    if (n > len - ENTRY_HDR || want != len) {
        snprintf(why, why_cap,
                 "entry of %zu bytes does not fit length prefix %zu", len, n);
        return WERR_INVALID;
    }
    for (size_t i = ENTRY_HDR + n; i < len; i++) {
        if (b[i] != 0) {
            snprintf(why, why_cap, "non-zero padding at byte %zu", i);
            return WERR_INVALID;
        }
    }
    Warden__V1__Command *c = warden__v1__command__unpack(&ta->a, n, b + ENTRY_HDR);
    if (c == NULL) {
        if (ta->failed) {
            return werr_set(e, WERR_NOMEM, "decoding a %zu-byte command", n);
        }
        snprintf(why, why_cap, "command of %zu bytes does not decode", n);
        return WERR_INVALID;
    }
    *out = c;
    return 0;
}

/* ---- apply --------------------------------------------------------------*/

/* Failures that depend on this node (its disk, memory, build), not on the
 * log: they must stop the node rather than become a command's result. */
int wfsm__node_fatal(int code)
{
    switch (code) {
    case WERR_NOMEM:
    case WERR_IO:
    case WERR_CORRUPT:
    case WERR_FULL:
    case WERR_BUSY:
    case WERR_INTERNAL:
    case WERR_ABORTED:
    case WERR_UNSUPPORTED:
        return 1;
    default:
        return 0;
    }
}

/* The command's own failure: set res and say so. */
int wfsm__cmd_fail(struct wfsm_result *res, const struct werr *oe)
{
    res->code = oe->code;
    snprintf(res->msg, sizeof res->msg, "%s", oe->msg);
    wfsm_result_free(res);
    return WFSM__OP_FAILED;
}

/* ---- ops (issue 4: each critical op audits in its own txn) --------------*/

/* What a failed op leaves for the second txn (wfsm_apply step 4): the
 * op's writes are gone, but its rejection is audited there, together with
 * the index, and a refused state transition is counted. */
struct op_note {
    uint32_t action;      /* AuditAction; 0: a failure is not audited */
    int perm_only;        /* audit a failure only if it is WERR_PERM */
    char target[AUDIT_TARGET_MAX + 1];
    uint8_t digest[AUDIT_HASH_LEN]; /* SHA-256 of the packed request */
    int transition;       /* 1: count a refused (from, to) */
    int from, to;
    struct wfsm__ro_note ro; /* issue 6: a refused rollout transition */
};

#define OP_FAILED WFSM__OP_FAILED /* op_run: the command failed */

/* SHA-256 of a packed message (fsm_int.h). */
int wfsm__msg_digest(const ProtobufCMessage *m, uint8_t out[AUDIT_HASH_LEN],
                      struct werr *e)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(n ? n : 1);
    if (b == NULL) {
        return werr_set(e, WERR_NOMEM, "request digest: %zu bytes", n);
    }
    protobuf_c_message_pack(m, b);
    unsigned int olen = 0;
    int ok = EVP_Digest(b, n, out, &olen, EVP_sha256(), NULL) == 1 &&
             olen == AUDIT_HASH_LEN;
    free(b);
    if (!ok) {
        ERR_clear_error();
        return werr_set(e, WERR_INTERNAL, "request digest: SHA-256 failed");
    }
    return 0;
}

/* Pack a response message into res->resp. */
int wfsm__pack_resp(struct wfsm_result *res, const ProtobufCMessage *m,
                     struct werr *e)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    res->resp = malloc(n ? n : 1);
    if (res->resp == NULL) {
        return werr_set(e, WERR_NOMEM, "packing a %zu-byte response", n);
    }
    res->resp_len = protobuf_c_message_pack(m, res->resp);
    return 0;
}

/* A domain call's return: 0, the command's failure (OP_FAILED, res set),
 * or a node failure (negative, e set). A command failure whose oe carries
 * no code (a domain path that returned an error without werr_set) takes
 * rc as its result code: a failed command never reaches the client, the
 * audit ledger or the counters as code 0, i.e. as success. */
int wfsm__op_status(int rc, const struct werr *oe, struct wfsm_result *res,
                     struct werr *e)
{
    if (rc == 0) {
        return 0;
    }
    if (wfsm__node_fatal(rc)) {
        *e = *oe;
        if (e->code == 0)
            e->code = rc;
        return rc;
    }
    if (oe->code == 0) {
        struct werr coded = *oe;
        coded.code = rc;
        return wfsm__cmd_fail(res, &coded);
    }
    return wfsm__cmd_fail(res, oe);
}

static int audit_event(struct wfsm *f, struct store_txn *t,
                       const struct dom_ctx *ctx, const struct op_note *note,
                       const char *target, const uint8_t *digest,
                       const char *detail, struct werr *e)
{
    struct audit_event ev = {
        .action = note->action,
        .outcome = WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_OK,
        .target = target ? target : note->target,
        .detail = detail,
        .request_digest = digest ? digest : note->digest,
    };
    return audit_append(f->audit, t, ctx, &ev, NULL, e);
}

/* The responses dev_resp() builds through EnrollDeviceResponse's layout. */
#define SAME_LAYOUT(T)                                                      \
    _Static_assert(sizeof(T) == sizeof(Warden__V1__EnrollDeviceResponse) &&  \
                       offsetof(T, device) ==                               \
                           offsetof(Warden__V1__EnrollDeviceResponse, device), \
                   #T " is { Device device = 1; }")
SAME_LAYOUT(Warden__V1__SetDeviceStateResponse);
SAME_LAYOUT(Warden__V1__ReEnrollDeviceResponse);
SAME_LAYOUT(Warden__V1__RebindDeviceResponse);
SAME_LAYOUT(Warden__V1__RotateDeviceKeyResponse);
SAME_LAYOUT(Warden__V1__UpdateDeviceLabelsResponse);

static int dev_resp(struct wfsm_result *res, Warden__V1__Device *dev,
                    const ProtobufCMessageDescriptor *desc, struct werr *e)
{
    /* Every Device-carrying response here is { Device device = 1; }, so
     * one packer serves them all: build it through the descriptor. */
    Warden__V1__EnrollDeviceResponse r = WARDEN__V1__ENROLL_DEVICE_RESPONSE__INIT;
    r.base.descriptor = desc;
    r.device = dev;
    int rc = wfsm__pack_resp(res, &r.base, e);
    inv_device_free(dev);
    return rc;
}

static int require_role(const struct dom_ctx *ctx, unsigned roles,
                        const char *what, struct wfsm_result *res)
{
    struct werr oe = {0};
    if (lc_may_act(ctx->who, NULL, roles, what, &oe) != 0) {
        return wfsm__cmd_fail(res, &oe);
    }
    return 0;
}

/* The tail every Device-returning op shares: audit the success in t with
 * `detail`, then pack dev as a `desc` response. Takes dev (freed on every
 * path). */
static int dev_done(struct wfsm *f, struct store_txn *t,
                    const struct dom_ctx *ctx, const struct op_note *note,
                    const char *detail, Warden__V1__Device *dev,
                    const ProtobufCMessageDescriptor *desc,
                    struct wfsm_result *res, struct werr *e)
{
    int rc = audit_event(f, t, ctx, note, NULL, NULL, detail, e);
    if (rc) {
        inv_device_free(dev);
        return rc;
    }
    return dev_resp(res, dev, desc, e);
}

static int op_enroll(struct wfsm *f, struct store_txn *t,
                     const struct dom_ctx *ctx,
                     const Warden__V1__EnrollDeviceRequest *req,
                     struct op_note *note, struct wfsm_result *res,
                     struct werr *e)
{
    int rc = require_role(ctx, WROLE_ADMIN | WROLE_OPERATOR, "enroll devices",
                          res);
    if (rc) {
        return rc;
    }
    struct werr oe = {0};
    Warden__V1__Device *dev = NULL;
    rc = wfsm__op_status(inv_enroll(f->inv, t, ctx, req, &dev, &oe), &oe, res,
                         e);
    return rc ? rc
              : dev_done(f, t, ctx, note, "key_epoch 1", dev,
                         &warden__v1__enroll_device_response__descriptor, res,
                         e);
}

/* EnrollDevices: all or nothing. The first failing item fails the command
 * (its writes roll back with the others) and names the item. */
static int op_enroll_devices(struct wfsm *f, struct store_txn *t,
                             const struct dom_ctx *ctx,
                             const Warden__V1__EnrollDevicesRequest *req,
                             struct op_note *note, struct wfsm_result *res,
                             struct werr *e)
{
    int rc = require_role(ctx, WROLE_ADMIN | WROLE_OPERATOR, "enroll devices",
                          res);
    if (rc) {
        return rc;
    }
    struct werr oe = {0};
    if (req->n_devices == 0 || req->n_devices > WFSM_ENROLL_BATCH_MAX) {
        werr_set(&oe, WERR_INVALID, "EnrollDevices takes 1..%u devices, got %zu",
                 WFSM_ENROLL_BATCH_MAX, req->n_devices);
        return wfsm__op_status(WERR_INVALID, &oe, res, e);
    }
    Warden__V1__Device **devs = calloc(req->n_devices, sizeof *devs);
    if (devs == NULL) {
        return werr_set(e, WERR_NOMEM, "EnrollDevices: %zu devices",
                        req->n_devices);
    }
    size_t done = 0;
    for (; done < req->n_devices; done++) {
        const Warden__V1__EnrollDeviceRequest *item = req->devices[done];
        snprintf(note->target, sizeof note->target, "%s", item->device_id);
        rc = inv_enroll(f->inv, t, ctx, item, &devs[done], &oe);
        if (rc) {
            werr_wrap(&oe, "devices[%zu] of %zu", done, req->n_devices);
            rc = wfsm__op_status(rc, &oe, res, e);
            goto out_free;
        }
        uint8_t dg[AUDIT_HASH_LEN];
        if ((rc = wfsm__msg_digest(&item->base, dg, e)) != 0 ||
            (rc = audit_event(f, t, ctx, note, item->device_id, dg,
                              "key_epoch 1 (batch)", e)) != 0) {
            done++;
            goto out_free;
        }
    }
    Warden__V1__EnrollDevicesResponse r = WARDEN__V1__ENROLL_DEVICES_RESPONSE__INIT;
    r.n_devices = done;
    r.devices = devs;
    rc = wfsm__pack_resp(res, &r.base, e);
out_free:
    for (size_t i = 0; i < req->n_devices; i++) {
        inv_device_free(devs[i]);
    }
    free(devs);
    return rc;
}

static int op_set_state(struct wfsm *f, struct store_txn *t,
                        const struct dom_ctx *ctx,
                        const Warden__V1__SetDeviceStateRequest *req,
                        struct op_note *note, struct wfsm_result *res,
                        struct werr *e)
{
    struct werr oe = {0};
    Warden__V1__Device *dev = NULL;
    int from = 0;
    int rc = lc_set_state(f->inv, t, ctx, req, &dev, &from, &oe);
    if (rc == WERR_PRECOND) {
        note->transition = 1;
        note->from = from;
        note->to = (int)req->state;
    }
    if ((rc = wfsm__op_status(rc, &oe, res, e)) != 0) {
        return rc;
    }
    char detail[AUDIT_DETAIL_MAX + 1];
    snprintf(detail, sizeof detail, "%s -> %s: %s", lc_state_name(from),
             lc_state_name((int)req->state), req->reason);
    return dev_done(f, t, ctx, note, detail, dev,
                    &warden__v1__set_device_state_response__descriptor, res, e);
}

static int op_reenroll(struct wfsm *f, struct store_txn *t,
                       const struct dom_ctx *ctx,
                       const Warden__V1__ReEnrollDeviceRequest *req,
                       struct op_note *note, struct wfsm_result *res,
                       struct werr *e)
{
    struct werr oe = {0};
    Warden__V1__Device *dev = NULL;
    int rc = wfsm__op_status(lc_reenroll(f->inv, t, ctx, req, &dev, &oe), &oe,
                             res, e);
    if (rc) {
        return rc;
    }
    char detail[64];
    snprintf(detail, sizeof detail, "identity_epoch %llu",
             (unsigned long long)dev->identity_epoch);
    return dev_done(f, t, ctx, note, detail, dev,
                    &warden__v1__re_enroll_device_response__descriptor, res, e);
}

static int op_rebind(struct wfsm *f, struct store_txn *t,
                     const struct dom_ctx *ctx,
                     const Warden__V1__RebindDeviceRequest *req,
                     struct op_note *note, struct wfsm_result *res,
                     struct werr *e)
{
    struct werr oe = {0};
    Warden__V1__Device *dev = NULL;
    int rc = wfsm__op_status(lc_rebind(f->inv, t, ctx, req, &dev, &oe), &oe,
                             res, e);
    if (rc) {
        return rc;
    }
    char detail[AUDIT_DETAIL_MAX + 1];
    snprintf(detail, sizeof detail, "gateway %s", req->gateway_id);
    return dev_done(f, t, ctx, note, detail, dev,
                    &warden__v1__rebind_device_response__descriptor, res, e);
}

/* UpdateDeviceLabels (issue 7): a CAS on the device's updated_index. */
static int op_labels(struct wfsm *f, struct store_txn *t,
                     const struct dom_ctx *ctx,
                     const Warden__V1__UpdateDeviceLabelsRequest *req,
                     struct op_note *note, struct wfsm_result *res,
                     struct werr *e)
{
    struct werr oe = {0};
    Warden__V1__Device *dev = NULL;
    uint64_t prev = 0;
    int rc = wfsm__op_status(
        inv_update_labels(f->inv, t, ctx, req, &dev, &prev, &oe), &oe, res, e);
    if (rc) {
        return rc;
    }
    char detail[AUDIT_DETAIL_MAX + 1];
    snprintf(detail, sizeof detail, "%zu labels, version %llu -> %llu",
             dev->n_labels, (unsigned long long)prev,
             (unsigned long long)dev->updated_index);
    return dev_done(f, t, ctx, note, detail, dev,
                    &warden__v1__update_device_labels_response__descriptor, res,
                    e);
}

static int op_issue_nonce(struct wfsm *f, struct store_txn *t,
                          const struct dom_ctx *ctx,
                          const Warden__V1__IssueRotationNonceRequest *req,
                          struct wfsm_result *res, struct werr *e)
{
    struct werr oe = {0};
    Warden__V1__IssueRotationNonceResponse r;
    int rc = wfsm__op_status(lc_issue_nonce(f->inv, t, ctx, req, &r, &oe), &oe,
                             res, e);
    return rc ? rc : wfsm__pack_resp(res, &r.base, e);
}

static int op_rotate_key(struct wfsm *f, struct store_txn *t,
                         const struct dom_ctx *ctx,
                         const Warden__V1__RotateDeviceKeyRequest *req,
                         struct op_note *note, struct wfsm_result *res,
                         struct werr *e)
{
    struct werr oe = {0};
    Warden__V1__Device *dev = NULL;
    int rc = wfsm__op_status(lc_rotate_key(f->inv, t, ctx, req, &dev, &oe), &oe,
                             res, e);
    if (rc) {
        return rc;
    }
    char detail[64];
    snprintf(detail, sizeof detail, "key_epoch %llu",
             (unsigned long long)dev->key_epoch);
    return dev_done(f, t, ctx, note, detail, dev,
                    &warden__v1__rotate_device_key_response__descriptor, res, e);
}

static int op_telemetry(struct wfsm *f, struct store_txn *t,
                        const struct dom_ctx *ctx,
                        const Warden__V1__SubmitTelemetryRequest *req,
                        struct wfsm_result *res, struct werr *e)
{
    struct werr oe = {0};
    Warden__V1__SubmitTelemetryResponse r;
    int rc = wfsm__op_status(fresh_submit(f->inv, t, ctx, req, &r, &oe), &oe,
                             res, e);
    return rc ? rc : wfsm__pack_resp(res, &r.base, e);
}

static int op_rotate_cmd_key(struct wfsm *f, struct store_txn *t,
                             const struct dom_ctx *ctx,
                             const Warden__V1__RotateCommandKeyOp *op,
                             struct op_note *note, struct wfsm_result *res,
                             struct werr *e)
{
    struct werr oe = {0};
    uint8_t pub[CTL_PUBKEY_LEN];
    int rc = wfsm__op_status(ctl_rotate_key(f->inv, t, ctx, op, pub, &oe), &oe,
                             res, e);
    if (rc) {
        return rc;
    }
    if ((rc = audit_event(f, t, ctx, note, NULL, NULL, "Ed25519", e)) != 0) {
        return rc;
    }
    Warden__V1__RotateCommandKeyResponse r =
        WARDEN__V1__ROTATE_COMMAND_KEY_RESPONSE__INIT;
    r.key_id = op->key_id;
    r.public_key.data = pub;
    r.public_key.len = sizeof pub;
    r.created_index = ctx->index;
    return wfsm__pack_resp(res, &r.base, e);
}

static int op_issue_cmd(struct wfsm *f, struct store_txn *t,
                        const struct dom_ctx *ctx,
                        const Warden__V1__IssueCommandRequest *req,
                        struct op_note *note, struct wfsm_result *res,
                        struct werr *e)
{
    struct werr oe = {0};
    struct ctl_issued ci;
    int rc = wfsm__op_status(ctl_issue(f->inv, t, ctx, req, &ci, &oe), &oe, res,
                             e);
    if (rc) {
        return rc;
    }
    char detail[AUDIT_DETAIL_MAX + 1];
    snprintf(detail, sizeof detail, "seq %llu key %s epoch %llu",
             (unsigned long long)ci.seq, ci.key_id,
             (unsigned long long)ci.key_epoch);
    if ((rc = audit_event(f, t, ctx, note, NULL, NULL, detail, e)) == 0) {
        Warden__V1__IssueCommandResponse r =
            WARDEN__V1__ISSUE_COMMAND_RESPONSE__INIT;
        r.envelope.data = ci.envelope;
        r.envelope.len = ci.envelope_len;
        r.signature.data = ci.sig;
        r.signature.len = sizeof ci.sig;
        r.key_id = ci.key_id;
        r.seq = ci.seq;
        r.key_epoch = ci.key_epoch;
        rc = wfsm__pack_resp(res, &r.base, e);
    }
    ctl_issued_free(&ci);
    return rc;
}

static int text_ok(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n > max) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            return 0;
        }
    }
    return 1;
}

static int op_audit_note(struct wfsm *f, struct store_txn *t,
                         const struct dom_ctx *ctx,
                         const Warden__V1__AuditNote *n, struct op_note *note,
                         struct wfsm_result *res, struct werr *e)
{
    int rc = require_role(ctx, WROLE_PEER | WROLE_ADMIN, "write audit notes", res);
    if (rc) {
        return rc;
    }
    struct werr oe = {0};
    if (n->action != WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_MEMBERSHIP &&
        n->action != WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_NOTE) {
        werr_set(&oe, WERR_INVALID, "audit_note action %d: only MEMBERSHIP or NOTE",
                 (int)n->action);
    } else if (n->outcome < WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_OK ||
               n->outcome > WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_REJECTED) {
        werr_set(&oe, WERR_INVALID, "audit_note outcome %d", (int)n->outcome);
    } else if (!text_ok(n->target, AUDIT_TARGET_MAX) ||
               !text_ok(n->detail, AUDIT_DETAIL_MAX)) {
        werr_set(&oe, WERR_INVALID,
                 "audit_note target/detail: at most %d/%d printable bytes",
                 AUDIT_TARGET_MAX, AUDIT_DETAIL_MAX);
    }
    if (oe.code) {
        return wfsm__op_status(oe.code, &oe, res, e);
    }
    struct audit_event ev = {
        .action = (uint32_t)n->action,
        .outcome = (uint32_t)n->outcome,
        .code = n->code,
        .target = n->target,
        .detail = n->detail,
        .request_digest = note->digest,
    };
    return audit_append(f->audit, t, ctx, &ev, NULL, e);
}

/* Aggregated authorization denials (docs/audit.md): one entry per row,
 * attributed to the denied principal, with its count. */
static int op_denials(struct wfsm *f, struct store_txn *t,
                      const struct dom_ctx *ctx, const Warden__V1__AuditDenials *d,
                      struct op_note *note, struct wfsm_result *res,
                      struct werr *e)
{
    int rc = require_role(ctx, WROLE_PEER | WROLE_ADMIN, "record denials", res);
    if (rc) {
        return rc;
    }
    struct werr oe = {0};
    if (d->n_rows > AUDIT_DENIAL_ROWS_MAX) {
        werr_set(&oe, WERR_INVALID, "denials: %zu rows, max %d", d->n_rows,
                 AUDIT_DENIAL_ROWS_MAX);
    } else if (!text_ok(d->node, AUDIT_TARGET_MAX)) {
        werr_set(&oe, WERR_INVALID, "denials: node is not printable or too long");
    }
    for (size_t i = 0; oe.code == 0 && i < d->n_rows; i++) {
        const Warden__V1__AuditDenialRow *r = d->rows[i];
        unsigned role = r->principal_role;
        if (r->count == 0 || !text_ok(r->method, AUDIT_TARGET_MAX) ||
            !text_ok(r->principal_name, PRINCIPAL_NAME_MAX) ||
            (role & (role - 1)) != 0) {
            werr_set(&oe, WERR_INVALID,
                     "denials: rows[%zu] needs count >= 1, a printable method "
                     "and principal, and at most one role bit", i);
        }
    }
    if (oe.code) {
        return wfsm__op_status(oe.code, &oe, res, e);
    }
    char detail[AUDIT_DETAIL_MAX + 1];
    snprintf(detail, sizeof detail, "aggregated by %s", ctx->who->name);
    for (size_t i = 0; i < d->n_rows; i++) {
        const Warden__V1__AuditDenialRow *r = d->rows[i];
        struct principal who = {.role = r->principal_role};
        snprintf(who.name, sizeof who.name, "%s", r->principal_name);
        struct audit_event ev = {
            .action = WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_AUTHZ_DENIAL,
            .outcome = WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_DENIED,
            .code = WERR_PERM,
            .count = r->count,
            .target = r->method,
            .detail = detail,
            .request_digest = note->digest,
            .who = &who,
        };
        if ((rc = audit_append(f->audit, t, ctx, &ev, NULL, e)) != 0) {
            return rc;
        }
    }
    if (d->dropped > 0) {
        struct principal anyone = {.role = 0, .name = "*"};
        struct audit_event ev = {
            .action = WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_AUTHZ_DENIAL,
            .outcome = WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_DENIED,
            .code = WERR_PERM,
            .count = d->dropped,
            .target = d->node,
            .detail = "denials not itemised: the server's table was full",
            .request_digest = note->digest,
            .who = &anyone,
        };
        rc = audit_append(f->audit, t, ctx, &ev, NULL, e);
    }
    return rc;
}

/* Which audit action and target an op has, and its request digest. The
 * command key's private half is cleared before digesting: the digest is
 * exported with the ledger. */
static int note_of(const Warden__V1__Command *cmd, struct op_note *note,
                   struct werr *e)
{
    const ProtobufCMessage *m = NULL;
    const char *target = "";
    uint32_t a = 0;
    Warden__V1__RotateCommandKeyOp redacted;
    switch (cmd->op_case) {
    case WARDEN__V1__COMMAND__OP_ENROLL_DEVICE:
        a = WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_ENROLL;
        m = &cmd->enroll_device->base;
        target = cmd->enroll_device->device_id;
        break;
    case WARDEN__V1__COMMAND__OP_ENROLL_DEVICES:
        a = WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_ENROLL;
        m = &cmd->enroll_devices->base;
        break;
    case WARDEN__V1__COMMAND__OP_SET_DEVICE_STATE:
        a = WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_STATE_CHANGE;
        m = &cmd->set_device_state->base;
        target = cmd->set_device_state->device_id;
        break;
    case WARDEN__V1__COMMAND__OP_REENROLL_DEVICE:
        a = WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_REENROLL;
        m = &cmd->reenroll_device->base;
        target = cmd->reenroll_device->device_id;
        break;
    case WARDEN__V1__COMMAND__OP_REBIND_DEVICE:
        a = WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_REBIND;
        m = &cmd->rebind_device->base;
        target = cmd->rebind_device->device_id;
        break;
    case WARDEN__V1__COMMAND__OP_UPDATE_DEVICE_LABELS:
        a = WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_LABELS;
        m = &cmd->update_device_labels->base;
        target = cmd->update_device_labels->device_id;
        break;
    case WARDEN__V1__COMMAND__OP_ISSUE_ROTATION_NONCE:
        a = WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_AUTHZ_DENIAL;
        note->perm_only = 1;
        m = &cmd->issue_rotation_nonce->base;
        target = cmd->issue_rotation_nonce->device_id;
        break;
    case WARDEN__V1__COMMAND__OP_ROTATE_DEVICE_KEY:
        a = WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_KEY_ROTATE;
        m = &cmd->rotate_device_key->base;
        target = cmd->rotate_device_key->device_id;
        break;
    case WARDEN__V1__COMMAND__OP_SUBMIT_TELEMETRY:
        a = WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_AUTHZ_DENIAL;
        note->perm_only = 1;
        m = &cmd->submit_telemetry->base;
        target = cmd->submit_telemetry->device_id;
        break;
    case WARDEN__V1__COMMAND__OP_ROTATE_COMMAND_KEY:
        a = WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_COMMAND_KEY_ROTATE;
        redacted = *cmd->rotate_command_key;
        redacted.private_key.data = NULL;
        redacted.private_key.len = 0;
        m = &redacted.base;
        target = cmd->rotate_command_key->key_id;
        break;
    case WARDEN__V1__COMMAND__OP_ISSUE_COMMAND:
        a = WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_COMMAND_ISSUE;
        m = &cmd->issue_command->base;
        target = cmd->issue_command->device_id;
        break;
    case WARDEN__V1__COMMAND__OP_AUDIT_NOTE:
        a = WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_NOTE;
        m = &cmd->audit_note->base;
        target = "audit_note";
        break;
    case WARDEN__V1__COMMAND__OP_DENIALS:
        a = WARDEN__V1__AUDIT_ACTION__AUDIT_ACTION_NOTE;
        m = &cmd->denials->base;
        target = "denials";
        break;
    case WARDEN__V1__COMMAND__OP_SET_ACCESS_POLICY:
    case WARDEN__V1__COMMAND__OP_REQUEST_ACCESS:
    case WARDEN__V1__COMMAND__OP_APPROVE_ACCESS:
    case WARDEN__V1__COMMAND__OP_DENY_ACCESS:
    case WARDEN__V1__COMMAND__OP_CHECK_ACCESS:
    case WARDEN__V1__COMMAND__OP_REVOKE_GRANT:
    case WARDEN__V1__COMMAND__OP_LOCK:
    case WARDEN__V1__COMMAND__OP_UNLOCK:
        return wfsm__access_note(cmd, &note->action, note->target,
                                 sizeof note->target, note->digest, e);
    default:
        return wfsm__rollout_note(cmd, &note->action, note->target,
                                  sizeof note->target, note->digest,
                                  &note->perm_only, e);
    }
    note->action = a;
    snprintf(note->target, sizeof note->target, "%s", target ? target : "");
    return wfsm__msg_digest(m, note->digest, e);
}

/* The domain context of cmd at (index, ctime); who is filled and borrowed
 * by the result. */
static struct dom_ctx ctx_of(const Warden__V1__Command *cmd, uint64_t index,
                             uint64_t ctime, struct principal *who)
{
    *who = (struct principal){.role = cmd->principal_role};
    snprintf(who->name, sizeof who->name, "%s", cmd->principal_name);
    return (struct dom_ctx){.index = index, .time_ms = ctime, .who = who};
}

/* Run the command's op in t. 0: done (res->resp may be set); OP_FAILED: the
 * command failed (res->code/msg), t holds writes that must be dropped;
 * negative: node failure. */
static int op_run(struct wfsm *f, struct store_txn *t, uint64_t index,
                  uint64_t ctime, const Warden__V1__Command *cmd,
                  struct op_note *note, struct wfsm_result *res,
                  struct werr *e)
{
    struct principal who;
    struct dom_ctx ctx = ctx_of(cmd, index, ctime, &who);
    int rc = note_of(cmd, note, e);
    if (rc) {
        return rc;
    }
    switch (cmd->op_case) {
    case WARDEN__V1__COMMAND__OP_TICK:
        rc = wfsm__rollout_tick(f, t, &ctx, e);
        break;
    case WARDEN__V1__COMMAND__OP_REGISTER_RELEASE_KEY:
    case WARDEN__V1__COMMAND__OP_REVOKE_RELEASE_KEY:
    case WARDEN__V1__COMMAND__OP_CREATE_RELEASE:
    case WARDEN__V1__COMMAND__OP_CREATE_ROLLOUT:
    case WARDEN__V1__COMMAND__OP_START_ROLLOUT:
    case WARDEN__V1__COMMAND__OP_PAUSE_ROLLOUT:
    case WARDEN__V1__COMMAND__OP_RESUME_ROLLOUT:
    case WARDEN__V1__COMMAND__OP_ADVANCE_ROLLOUT:
    case WARDEN__V1__COMMAND__OP_ABORT_ROLLOUT:
    case WARDEN__V1__COMMAND__OP_GET_DESIRED_STATE:
    case WARDEN__V1__COMMAND__OP_REPORT_UPDATE_STATUS:
        rc = wfsm__rollout_run(f, t, &ctx, cmd, &note->ro, res, e);
        break;
    case WARDEN__V1__COMMAND__OP_SET_ACCESS_POLICY:
    case WARDEN__V1__COMMAND__OP_REQUEST_ACCESS:
    case WARDEN__V1__COMMAND__OP_APPROVE_ACCESS:
    case WARDEN__V1__COMMAND__OP_DENY_ACCESS:
    case WARDEN__V1__COMMAND__OP_CHECK_ACCESS:
    case WARDEN__V1__COMMAND__OP_REVOKE_GRANT:
    case WARDEN__V1__COMMAND__OP_LOCK:
    case WARDEN__V1__COMMAND__OP_UNLOCK:
        rc = wfsm__access_run(f, t, &ctx, cmd, res, e); /* issue 5 */
        break;
    case WARDEN__V1__COMMAND__OP_ENROLL_DEVICE:
        rc = op_enroll(f, t, &ctx, cmd->enroll_device, note, res, e);
        break;
    case WARDEN__V1__COMMAND__OP_ENROLL_DEVICES:
        rc = op_enroll_devices(f, t, &ctx, cmd->enroll_devices, note, res, e);
        break;
    case WARDEN__V1__COMMAND__OP_SET_DEVICE_STATE:
        rc = op_set_state(f, t, &ctx, cmd->set_device_state, note, res, e);
        break;
    case WARDEN__V1__COMMAND__OP_REENROLL_DEVICE:
        rc = op_reenroll(f, t, &ctx, cmd->reenroll_device, note, res, e);
        break;
    case WARDEN__V1__COMMAND__OP_REBIND_DEVICE:
        rc = op_rebind(f, t, &ctx, cmd->rebind_device, note, res, e);
        break;
    case WARDEN__V1__COMMAND__OP_UPDATE_DEVICE_LABELS:
        rc = op_labels(f, t, &ctx, cmd->update_device_labels, note, res, e);
        break;
    case WARDEN__V1__COMMAND__OP_ISSUE_ROTATION_NONCE:
        rc = op_issue_nonce(f, t, &ctx, cmd->issue_rotation_nonce, res, e);
        break;
    case WARDEN__V1__COMMAND__OP_ROTATE_DEVICE_KEY:
        rc = op_rotate_key(f, t, &ctx, cmd->rotate_device_key, note, res, e);
        break;
    case WARDEN__V1__COMMAND__OP_SUBMIT_TELEMETRY:
        rc = op_telemetry(f, t, &ctx, cmd->submit_telemetry, res, e);
        break;
    case WARDEN__V1__COMMAND__OP_ROTATE_COMMAND_KEY:
        rc = op_rotate_cmd_key(f, t, &ctx, cmd->rotate_command_key, note, res, e);
        break;
    case WARDEN__V1__COMMAND__OP_ISSUE_COMMAND:
        rc = op_issue_cmd(f, t, &ctx, cmd->issue_command, note, res, e);
        break;
    case WARDEN__V1__COMMAND__OP_AUDIT_NOTE:
        rc = op_audit_note(f, t, &ctx, cmd->audit_note, note, res, e);
        break;
    case WARDEN__V1__COMMAND__OP_DENIALS:
        rc = op_denials(f, t, &ctx, cmd->denials, note, res, e);
        break;
    case WARDEN__V1__COMMAND__OP__NOT_SET:
    default:
        if (cmd->base.n_unknown_fields > 0) {
            /* A newer build's op. Applying it as a no-op here while newer
             * nodes apply it would fork the state; stopping is the safe
             * answer (upgrade this node). */
            return werr_set(e, WERR_UNSUPPORTED,
                            "entry %llu carries an op this build does not "
                            "know (%u unknown fields)",
                            (unsigned long long)index,
                            (unsigned)cmd->base.n_unknown_fields);
        }
        res->code = WERR_INVALID;
        snprintf(res->msg, sizeof res->msg, "command has no op");
        return 0; /* nothing written: no need to drop t */
    }
    if (rc == 0 && f->fail_op_at == index) {
        struct werr oe;
        werr_set(&oe, WERR_PRECOND, "injected failure after the op (test)");
        return wfsm__cmd_fail(res, &oe);
    }
    return rc;
}

/* Second txn of a failed op: audit the rejection (DENIED for WERR_PERM,
 * REJECTED otherwise) and count a refused state transition. The op's own
 * writes are gone; this record is what stays. */
static int note_failure(struct wfsm *f, struct store_txn *t, uint64_t index,
                        uint64_t ctime, const Warden__V1__Command *cmd,
                        const struct op_note *note,
                        const struct wfsm_result *res, struct werr *e)
{
    if (note->action == 0 || res->code == 0 ||
        (note->perm_only && res->code != WERR_PERM)) {
        return 0;
    }
    struct principal who;
    struct dom_ctx ctx = ctx_of(cmd, index, ctime, &who);
    struct audit_event ev = {
        .action = note->action,
        .outcome = res->code == WERR_PERM
                       ? WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_DENIED
                       : WARDEN__V1__AUDIT_OUTCOME__AUDIT_OUTCOME_REJECTED,
        .code = res->code,
        .target = note->target,
        .detail = res->msg,
        .request_digest = note->digest,
    };
    int rc = audit_append(f->audit, t, &ctx, &ev, NULL, e);
    if (rc == 0 && note->transition) {
        rc = lc_reject_count_add(f->inv, t, note->from, note->to, e);
    }
    if (rc == 0 && note->ro.refused) {
        rc = wfsm__rollout_failed(f, t, &note->ro, e);
    }
    return rc;
}

/* Check the principal and key sizes; build the fsm.idem key. Returns 0 (no
 * key, *klen = 0), 1 (key built) or sets res to WERR_INVALID and returns
 * -1. */
static int idem_key_of(const Warden__V1__Command *cmd, uint8_t *k,
                       size_t *klen, struct wfsm_result *res)
{
    *klen = 0;
    if (strlen(cmd->principal_name) > PRINCIPAL_NAME_MAX) {
        res->code = WERR_INVALID;
        snprintf(res->msg, sizeof res->msg,
                 "principal_name longer than %d bytes", PRINCIPAL_NAME_MAX);
        return -1;
    }
    if (cmd->idempotency_key[0] == '\0') {
        return 0;
    }
    *klen = wfsm__idem_key(cmd->principal_name, cmd->idempotency_key, k);
    if (*klen == 0) {
        res->code = WERR_INVALID;
        snprintf(res->msg, sizeof res->msg,
                 "idempotency_key longer than %d bytes",
                 INV_IDEMPOTENCY_KEY_MAX);
        return -1;
    }
    return 1;
}

/* One attempt at applying `cmd` (NULL: malformed, res already says so) at
 * `index` in one write txn: top-level (durable on commit) without a batch,
 * a child of the batch txn with one. run_op = 0 is the second attempt after
 * the op failed: record the failure in res, nothing else. Returns 0
 * (committed), OP_FAILED (nothing committed; retry with run_op = 0) or
 * negative. */
static int apply_txn(struct wfsm *f, uint64_t index,
                     const Warden__V1__Command *cmd, int run_op,
                     struct op_note *note, struct wfsm_result *res,
                     struct werr *e)
{
    struct store_txn *t;
    int rc = f->batch != NULL ? store_txn_begin_child(f->batch, &t, e)
                              : store_txn_begin(f->s, 1, &t, e);
    if (rc) {
        return rc;
    }
    uint64_t ctime = f->ctime;
    uint8_t k[WFSM_IDEM_KEY_MAX];
    size_t klen = 0;
    if (cmd != NULL) {
        /* Cluster time never goes backwards (issue 3). */
        if (cmd->cluster_time_ms > ctime) {
            ctime = cmd->cluster_time_ms;
        }
        /* On the second attempt the key was valid (the op ran), so this
         * only rebuilds k and leaves res alone. */
        int has_key = idem_key_of(cmd, k, &klen, res);
        if (run_op && has_key > 0) {
            rc = wfsm__idem_lookup(f, t, index, k, klen, res, e);
            if (rc < 0) {
                goto err_abort;
            }
        }
        if (run_op && has_key >= 0 && !res->replayed) {
            rc = op_run(f, t, index, ctime, cmd, note, res, e);
            if (rc != 0) {
                store_txn_abort(t);
                return rc; /* OP_FAILED or negative */
            }
        }
        if (!run_op && (rc = note_failure(f, t, index, ctime, cmd, note, res,
                                          e)) != 0) {
            goto err_abort;
        }
        if (klen > 0 && !res->replayed) {
            rc = wfsm__idem_record(f, t, index, k, klen, res, e);
            if (rc) {
                goto err_abort;
            }
        }
    }
    if ((rc = wfsm__idem_prune(f, t, index, e)) != 0 ||
        (rc = meta_put_u64(f, t, META_APPLIED, index, e)) != 0 ||
        (rc = meta_put_u64(f, t, META_TIME, ctime, e)) != 0) {
        goto err_abort;
    }
    rc = store_txn_commit(t, e);
    if (rc) {
        return rc;
    }
    f->applied = index;
    f->ctime = ctime;
    if (f->batch != NULL) {
        f->batch_entries++;
    } else {
        f->durable_applied = index;
        f->durable_ctime = ctime;
    }
    return 0;

err_abort:
    store_txn_abort(t);
    return rc;
}

int wfsm_apply(struct wfsm *f, uint64_t index, const void *buf, size_t len,
               struct wfsm_result *res, struct werr *e)
{
    struct werr e_local;
    if (e == NULL) {
        e = &e_local; /* e is optional (err.h); we copy into it below */
    }
    memset(res, 0, sizeof *res);
    if (f->s == NULL) {
        return werr_set(e, WERR_PRECOND,
                        "wfsm_apply: fsm unusable after a failed restore");
    }
    if (index <= f->applied) {
        res->skipped = 1;
        return 0;
    }
    struct track_alloc ta;
    track_init(&ta);
    Warden__V1__Command *cmd = NULL;
    char why[WERR_MSG_MAX];
    int rc = cmd_decode(buf, len, &ta, &cmd, why, sizeof why, e);
    if (rc == WERR_INVALID) {
        char idx[24];
        snprintf(idx, sizeof idx, "%llu", (unsigned long long)index);
        wlog(WLOG_ERROR, "fsm: committed entry is malformed; skipped",
             "index", idx, "error", why, NULL);
        res->code = WERR_INVALID;
        snprintf(res->msg, sizeof res->msg, "malformed entry %s: %.200s", idx,
                 why);
    } else if (rc) {
        return werr_wrap(e, "wfsm_apply %llu", (unsigned long long)index);
    }

    struct op_note note;
    memset(&note, 0, sizeof note);
    rc = apply_txn(f, index, cmd, 1, &note, res, e);
    if (rc == OP_FAILED) {
        /* Drop the op's writes; keep its verdict, the index and the time,
         * and audit the rejection (issue 4). */
        rc = apply_txn(f, index, cmd, 0, &note, res, e);
    }
    if (cmd != NULL) {
        warden__v1__command__free_unpacked(cmd, &ta.a);
    }
    if (rc) {
        wfsm_result_free(res);
        return werr_wrap(e, "wfsm_apply %llu", (unsigned long long)index);
    }
    return 0;
}
